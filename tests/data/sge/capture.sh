#!/bin/bash
# Re-capture the real Grid Engine outputs in this directory.
# Run INSIDE the container as the job user, from a writable dir:
#   docker/sge/up
#   D=/tmp/hpcpar-sge-shared/cap; mkdir -p $D && chmod 1777 $D
#   docker/sge/exec -w $D bash /src/tests/data/sge/capture.sh $D/out
# then copy $D/out/* here.  Job ids in the files are whatever the qmaster hands out.
set -u
OUT=${1:-$PWD/out}; mkdir -p "$OUT"; cd "$OUT"
S=$OUT/job.sh
cat > "$S" <<'EOS'
#!/bin/bash
echo "JOB_ID=$JOB_ID SGE_TASK_ID=$SGE_TASK_ID NSLOTS=$NSLOTS"
sleep ${SLEEP:-0}
if [ -n "${ALLOC_MB:-}" ]; then python3 -c "import sys; b=bytearray(${ALLOC_MB}*1024*1024); print('allocated', len(b))"; exit $?; fi
exit ${RC:-0}
EOS
chmod +x "$S"
sub() { qsub -terse -S /bin/bash -cwd -j y -o /dev/null "$@" "$S"; }

# time until `qacct -j` knows a job once it has left qstat
wait_acct() {  # $1 = job id; prints seconds between "gone from qstat" and "in qacct"
    local id=$1 t0 n=0
    while qstat -j "$id" >/dev/null 2>&1; do sleep 0.2; done
    t0=$(date +%s.%N)
    until qacct -j "$id" >/dev/null 2>&1; do
        sleep 0.2; n=$((n+1)); [ $n -lt 150 ] || { echo "never(>30s)"; return; }
    done
    awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN{printf "%.1f\n", a-b}'
}

ok=$(sub);                                        echo "ok=$ok"
fail=$(sub -v RC=3);                              echo "fail=$fail"
hrt=$(sub -v SLEEP=60 -l h_rt=0:0:5);             echo "hrt=$hrt"
srt=$(sub -v SLEEP=60 -l s_rt=0:0:5,h_rt=0:0:15); echo "srt=$srt"
mem=$(sub -v ALLOC_MB=800 -l h_vmem=300M);        echo "mem=$mem"
delr=$(sub -v SLEEP=60);                          echo "delr=$delr"
held=$(sub -h -v SLEEP=60);                       echo "held=$held"
arr=$(sub -t 1-3 -v RC=0);                        echo "arr=$arr"
sleep 4
qstat -xml -u '*' > qstat_xml_mixed.xml 2>&1
qstat -u '*' > qstat_plain_mixed.txt 2>&1
# wait until delr is running, then delete it (a job deleted while still
# pending never gets an accounting record: see qacct_held.txt)
until qstat -u '*' | awk -v j="$delr" '$1==j && $5 ~ /r/' | grep -q .; do sleep 0.5; done
qstat -xml -u '*' > qstat_xml_before_qdel.xml 2>&1
qdel "$delr" > qdel_running.out 2>&1
qdel "$held" > qdel_pending.out 2>&1
for v in ok fail hrt srt mem delr held; do
    id=${!v}; d=$(wait_acct "$id"); echo "$v $id qacct_delay_s=$d" | tee -a qacct_delays.txt
    qacct -j "$id" > "qacct_${v}.txt" 2>&1
done
aid=${arr%%.*}; d=$(wait_acct "$aid"); echo "arr $aid qacct_delay_s=$d" | tee -a qacct_delays.txt
qacct -j "$aid" > qacct_array.txt 2>&1
qstat -j "$ok" > qstat_j_finished.txt 2>&1; echo "rc=$?" >> qstat_j_finished.txt
qacct -j 999999 > qacct_unknown.txt 2>&1; echo "rc=$?" >> qacct_unknown.txt
qstat -xml -j 999999 > qstat_xml_j_unknown.xml 2>&1
qstat -xml -u '*' > qstat_xml_empty.xml 2>&1
