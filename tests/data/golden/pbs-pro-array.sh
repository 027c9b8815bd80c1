#!/bin/bash
#PBS -N golden
#PBS -J 0-4%2
#PBS -l select=1:ncpus=1:mem=1024mb
#PBS -l walltime=00:10:00
# Rendered by hpcpar 0.1.0 for job golden.
# A one-chunk submission is a plain job: hpcpar passes its index as HPCPAR_ARRAY_INDEX.
export PBS_ARRAY_INDEX="${PBS_ARRAY_INDEX:-${HPCPAR_ARRAY_INDEX:-}}"
# One array task per line of the array file; the line is run by bash (GNU parallel style).
line=$(sed -n "$(( ${PBS_ARRAY_INDEX} + ${HPCPAR_INDEX_OFFSET:-0} - 0 + 1 ))p" CMDS)
exec bash -c "$line"

