#!/bin/bash
#BSUB -J 'golden[1-5]%2'
#BSUB -n 1
#BSUB -R 'span[hosts=1]'
#BSUB -M 1024
#BSUB -R 'rusage[mem=1024]'
#BSUB -W 0:10
# Rendered by hpcpar 0.1.0 for job golden.
# Thread pools sized to the allocation (1 CPU(s)) unless already set.
[ -n "${OMP_NUM_THREADS:-}" ] || export OMP_NUM_THREADS=1
[ -n "${OPENBLAS_NUM_THREADS:-}" ] || export OPENBLAS_NUM_THREADS=1
[ -n "${MKL_NUM_THREADS:-}" ] || export MKL_NUM_THREADS=1
[ -n "${VECLIB_MAXIMUM_THREADS:-}" ] || export VECLIB_MAXIMUM_THREADS=1
[ -n "${NUMEXPR_NUM_THREADS:-}" ] || export NUMEXPR_NUM_THREADS=1
[ -n "${LOKY_MAX_CPU_COUNT:-}" ] || export LOKY_MAX_CPU_COUNT=1
# One array task per line of the array file; the line is run by bash (GNU parallel style).
line=$(sed -n "$(( ${LSB_JOBINDEX} + ${HPCPAR_INDEX_OFFSET:-0} - 1 + 1 ))p" CMDS)
exec bash -c "$line"
