#!/bin/bash
#$ -N golden
#$ -S /bin/bash
#$ -pe smp 4
#$ -l h_vmem=2048M
#$ -l h_rt=01:30:00
#$ -l gpu=2
#$ -q debug
#$ -A acct
#$ -m n
# Rendered by hpcpar 0.1.0 for job golden.
# Thread pools sized to the allocation (4 CPU(s)) unless already set.
[ -n "${OMP_NUM_THREADS:-}" ] || export OMP_NUM_THREADS=4
[ -n "${OPENBLAS_NUM_THREADS:-}" ] || export OPENBLAS_NUM_THREADS=4
[ -n "${MKL_NUM_THREADS:-}" ] || export MKL_NUM_THREADS=4
[ -n "${VECLIB_MAXIMUM_THREADS:-}" ] || export VECLIB_MAXIMUM_THREADS=4
[ -n "${NUMEXPR_NUM_THREADS:-}" ] || export NUMEXPR_NUM_THREADS=4
[ -n "${LOKY_MAX_CPU_COUNT:-}" ] || export LOKY_MAX_CPU_COUNT=4
exec python train.py --epochs 10

