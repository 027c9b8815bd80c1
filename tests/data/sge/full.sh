#!/bin/bash
#$ -S /bin/bash
#$ -pe smp 2 -l h_vmem=1G,h_rt=0:1:0 -q all.q -P hpcproj -A acct-free-form -t 1-2 -tc 1 -N name -cwd -j y -o full.$TASK_ID.out
echo "task=$SGE_TASK_ID nslots=$NSLOTS pe=$PE queue=$QUEUE"; ulimit -v; sleep 3
