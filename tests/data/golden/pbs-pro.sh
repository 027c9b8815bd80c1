#!/bin/bash
#PBS -N golden
#PBS -l select=1:ncpus=4:mem=8192mb:ngpus=2
#PBS -l walltime=01:30:00
#PBS -q debug
#PBS -A acct
#PBS -m n
# Rendered by hpcpar 0.1.0 for job golden.
# A one-chunk submission is a plain job: hpcpar passes its index as HPCPAR_ARRAY_INDEX.
export PBS_ARRAY_INDEX="${PBS_ARRAY_INDEX:-${HPCPAR_ARRAY_INDEX:-}}"
exec python train.py --epochs 10

