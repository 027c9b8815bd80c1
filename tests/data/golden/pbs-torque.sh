#!/bin/bash
#PBS -N golden
#PBS -l nodes=1:ppn=4:gpus=2
#PBS -l mem=8192mb
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
# Debian's slurm-wlm-torque wrappers set no PBS_* variable: fall back to SLURM's.
export PBS_ARRAYID="${PBS_ARRAYID:-${SLURM_ARRAY_TASK_ID:-}}"
exec python train.py --epochs 10

