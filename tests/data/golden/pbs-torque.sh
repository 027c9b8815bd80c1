#!/bin/bash
#PBS -N golden
#PBS -l nodes=1:ppn=4:gpus=2
#PBS -l mem=8192mb
#PBS -l walltime=01:30:00
#PBS -q debug
#PBS -A acct
#PBS -m n
# Rendered by hpcpar 0.1.0 for job golden.
# Debian's slurm-wlm-torque wrappers set no PBS_* variable: fall back to SLURM's.
export PBS_ARRAYID="${PBS_ARRAYID:-${SLURM_ARRAY_TASK_ID:-}}"
exec python train.py --epochs 10

