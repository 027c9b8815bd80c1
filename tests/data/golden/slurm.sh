#!/bin/bash
#SBATCH --job-name=golden
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=4
#SBATCH --mem=8192M
#SBATCH --time=0-01:30:00
#SBATCH --gpus-per-task=2
#SBATCH --partition=debug
#SBATCH --account=acct
#SBATCH --mail-type=NONE
# Rendered by hpcpar 0.1.0 for job golden.
exec python train.py --epochs 10
