#!/bin/bash
#$ -N golden
#$ -t 1-5
#$ -tc 2
#$ -S /bin/bash
#$ -l h_vmem=1024M
#$ -l h_rt=00:10:00
# Rendered by hpcpar 0.1.0 for job golden.
# One array task per line of the array file; the line is run by bash (GNU parallel style).
line=$(sed -n "$(( ${SGE_TASK_ID} + ${HPCPAR_INDEX_OFFSET:-0} - 1 + 1 ))p" CMDS)
exec bash -c "$line"

