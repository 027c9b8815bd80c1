#!/bin/bash
#SBATCH --job-name=golden
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=4
#SBATCH --mem=8192M
#SBATCH --time=0-01:30:00
#SBATCH --gpus-per-task=2
#SBATCH --partition=debug
#SBATCH --account=acct
#SBATCH --mail-type=NONE
# Rendered by hpcpar 0.1.0 for job golden.
# Thread pools sized to the allocation (4 CPU(s)) unless already set.
[ -n "${OMP_NUM_THREADS:-}" ] || export OMP_NUM_THREADS=4
[ -n "${OPENBLAS_NUM_THREADS:-}" ] || export OPENBLAS_NUM_THREADS=4
[ -n "${MKL_NUM_THREADS:-}" ] || export MKL_NUM_THREADS=4
[ -n "${VECLIB_MAXIMUM_THREADS:-}" ] || export VECLIB_MAXIMUM_THREADS=4
[ -n "${NUMEXPR_NUM_THREADS:-}" ] || export NUMEXPR_NUM_THREADS=4
[ -n "${LOKY_MAX_CPU_COUNT:-}" ] || export LOKY_MAX_CPU_COUNT=4
exec python train.py --epochs 10
