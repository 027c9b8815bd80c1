#!/bin/bash
#PBS -N golden
#PBS -t 0-4%2
#PBS -l nodes=1:ppn=1
#PBS -l mem=1024mb
#PBS -l walltime=00:10:00
# Rendered by hpcpar 0.1.0 for job golden.
# Debian's slurm-wlm-torque wrappers set no PBS_* variable: fall back to SLURM's.
export PBS_ARRAYID="${PBS_ARRAYID:-${SLURM_ARRAY_TASK_ID:-}}"
# One array task per line of the array file; the line is run by bash (GNU parallel style).
line=$(sed -n "$(( ${PBS_ARRAYID} + ${HPCPAR_INDEX_OFFSET:-0} - 0 + 1 ))p" CMDS)
exec bash -c "$line"

