#!/bin/bash
#$ -pe smp 4 -l h_vmem=2G,h_rt=1:30:00 -q all.q -P hpcproj -A acct -t 1-10 -tc 5 -N name
echo hi
