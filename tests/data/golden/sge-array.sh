#!/bin/bash
#$ -N golden
#$ -t 1-5
#$ -tc 2
#$ -S /bin/bash
#$ -l h_vmem=1024M
#$ -l h_rt=00:10:00
# Rendered by hpcpar 0.1.0 for job golden.
# Thread pools sized to the allocation (1 CPU(s)) unless already set.
[ -n "${OMP_NUM_THREADS:-}" ] || export OMP_NUM_THREADS=1
[ -n "${OPENBLAS_NUM_THREADS:-}" ] || export OPENBLAS_NUM_THREADS=1
[ -n "${MKL_NUM_THREADS:-}" ] || export MKL_NUM_THREADS=1
[ -n "${VECLIB_MAXIMUM_THREADS:-}" ] || export VECLIB_MAXIMUM_THREADS=1
[ -n "${NUMEXPR_NUM_THREADS:-}" ] || export NUMEXPR_NUM_THREADS=1
[ -n "${LOKY_MAX_CPU_COUNT:-}" ] || export LOKY_MAX_CPU_COUNT=1
# One array task per line of the array file; the line is run by bash (GNU parallel style).
line=$(sed -n "$(( ${SGE_TASK_ID} + ${HPCPAR_INDEX_OFFSET:-0} - 1 + 1 ))p" CMDS)
exec bash -c "$line"

