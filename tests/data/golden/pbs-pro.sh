#!/bin/bash
#PBS -N golden
#PBS -l select=1:ncpus=4:mem=8192mb:ngpus=2
#PBS -l walltime=01:30:00
#PBS -q debug
#PBS -A acct
#PBS -m n
# Rendered by hpcpar 0.1.0 for job golden.
# Thread pools sized to the allocation (4 CPU(s)) unless already set.
[ -n "${OMP_NUM_THREADS:-}" ] || export OMP_NUM_THREADS=4
[ -n "${OPENBLAS_NUM_THREADS:-}" ] || export OPENBLAS_NUM_THREADS=4
[ -n "${MKL_NUM_THREADS:-}" ] || export MKL_NUM_THREADS=4
[ -n "${VECLIB_MAXIMUM_THREADS:-}" ] || export VECLIB_MAXIMUM_THREADS=4
[ -n "${NUMEXPR_NUM_THREADS:-}" ] || export NUMEXPR_NUM_THREADS=4
[ -n "${LOKY_MAX_CPU_COUNT:-}" ] || export LOKY_MAX_CPU_COUNT=4
# A one-chunk submission is a plain job: hpcpar passes its index as HPCPAR_ARRAY_INDEX.
export PBS_ARRAY_INDEX="${PBS_ARRAY_INDEX:-${HPCPAR_ARRAY_INDEX:-}}"
exec python train.py --epochs 10

