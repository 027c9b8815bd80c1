#!/bin/bash
#BSUB -J 'golden[1-5]%2'
#BSUB -n 1
#BSUB -R 'span[hosts=1]'
#BSUB -M 1024
#BSUB -R 'rusage[mem=1024]'
#BSUB -W 0:10
# Rendered by hpcpar 0.1.0 for job golden.
# One array task per line of the array file; the line is run by bash (GNU parallel style).
line=$(sed -n "$(( ${LSB_JOBINDEX} + ${HPCPAR_INDEX_OFFSET:-0} - 1 + 1 ))p" CMDS)
exec bash -c "$line"
