#!/bin/bash
#BSUB -J golden
#BSUB -n 4
#BSUB -R 'span[hosts=1]'
#BSUB -M 8192
#BSUB -R 'rusage[mem=8192]'
#BSUB -W 1:30
#BSUB -gpu num=2
#BSUB -q debug
#BSUB -P acct
#BSUB -L /bin/bash
# Rendered by hpcpar 0.1.0 for job golden.
# Thread pools sized to the allocation (4 CPU(s)) unless already set.
[ -n "${OMP_NUM_THREADS:-}" ] || export OMP_NUM_THREADS=4
[ -n "${OPENBLAS_NUM_THREADS:-}" ] || export OPENBLAS_NUM_THREADS=4
[ -n "${MKL_NUM_THREADS:-}" ] || export MKL_NUM_THREADS=4
[ -n "${VECLIB_MAXIMUM_THREADS:-}" ] || export VECLIB_MAXIMUM_THREADS=4
[ -n "${NUMEXPR_NUM_THREADS:-}" ] || export NUMEXPR_NUM_THREADS=4
[ -n "${LOKY_MAX_CPU_COUNT:-}" ] || export LOKY_MAX_CPU_COUNT=4
exec python train.py --epochs 10
