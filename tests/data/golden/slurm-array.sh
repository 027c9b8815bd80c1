#!/bin/bash
#SBATCH --job-name=golden
#SBATCH --array=0-4%2
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=1
#SBATCH --mem=1024M
#SBATCH --time=0-00:10:00
# Rendered by hpcpar 0.1.0 for job golden.
# One array task per line of the array file; the line is run by bash (GNU parallel style).
line=$(sed -n "$(( ${SLURM_ARRAY_TASK_ID} + ${HPCPAR_INDEX_OFFSET:-0} - 0 + 1 ))p" CMDS)
exec bash -c "$line"
