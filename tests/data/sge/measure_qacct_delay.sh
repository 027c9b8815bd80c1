#!/bin/bash
id=$(qsub -terse -S /bin/bash -o /dev/null -j y -b y sleep 1)
t0=$(date +%s.%N)
while qstat -j $id >/dev/null 2>&1; do sleep 0.1; done; t1=$(date +%s.%N)
until qacct -j $id >/dev/null 2>&1; do sleep 0.1; done; t2=$(date +%s.%N)
awk -v a=$t0 -v b=$t1 -v c=$t2 -v f="$1" 'BEGIN{printf "flush=%s submit->gone_from_qstat=%.1fs gone->in_qacct=%.1fs\n", f, b-a, c-b}'
