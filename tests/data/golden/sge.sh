#!/bin/bash
#$ -N golden
#$ -S /bin/bash
#$ -pe smp 4
#$ -l h_vmem=2048M
#$ -l h_rt=01:30:00
#$ -l gpu=2
#$ -q debug
#$ -A acct
#$ -m n
# Rendered by hpcpar 0.1.0 for job golden.
exec python train.py --epochs 10

