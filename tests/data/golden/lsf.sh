#!/bin/bash
#BSUB -J golden
#BSUB -n 4
#BSUB -R 'span[hosts=1]'
#BSUB -M 8192
#BSUB -R 'rusage[mem=8192]'
#BSUB -W 1:30
#BSUB -gpu num=2
#BSUB -q debug
#BSUB -P acct
#BSUB -L /bin/bash
# Rendered by hpcpar 0.1.0 for job golden.
exec python train.py --epochs 10
