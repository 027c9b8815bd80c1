#!/bin/bash
# Entrypoint of the hpcpar Grid Engine container (runs as root under tini).
#  1. point act_qmaster at this container's hostname, start sge_qmaster
#  2. register this host as admin/submit/exec host, start sge_execd
#  3. configure: scheduler interval, accounting flush, h_vmem consumable,
#     PE "smp" ($pe_slots), queue all.q (slots = nproc), project "hpcpar"
#  4. install /src (if it has a pyproject.toml) into /opt/hpcpar-venv
#  5. wait until `qstat -f` shows all.q@host without error/alarm state, then
#     touch /run/hpcpar-sge.ready and sleep until stopped.
# Logs: /var/log/hpcpar-sge.log (also on stdout: `docker logs hpcpar-sge`).
set -uo pipefail

export SGE_ROOT=${SGE_ROOT:-/var/lib/gridengine} SGE_CELL=${SGE_CELL:-default}
CONF=/etc/hpcpar-sge
READY=/run/hpcpar-sge.ready
T0=$(date +%s.%N)
rm -f "$READY"
log() { printf '[sge-entrypoint %5.1fs] %s\n' "$(awk -v a="$(date +%s.%N)" -v b="$T0" 'BEGIN{print a-b}')" "$*"; }
die() { log "FATAL: $*"; touch /run/hpcpar-sge.failed; exec sleep infinity; }
# shellcheck disable=SC1091
. "$CONF/tuning.env"

HOST=$(hostname)
COMMON=$SGE_ROOT/$SGE_CELL/common
SPOOL=/var/spool/gridengine

stop_all() {
    log "stopping sge_execd / sge_qmaster"
    pkill -TERM -x sge_execd 2>/dev/null
    pkill -TERM -x sge_qmaster 2>/dev/null
    sleep 1
    exit 0
}
trap stop_all TERM INT

# ---- 1. qmaster ---------------------------------------------------------------
echo "$HOST" > "$COMMON/act_qmaster"
chown sgeadmin:sgeadmin "$COMMON/act_qmaster"
mkdir -p /var/run/gridengine "$SPOOL/qmaster" "$SPOOL/execd"
chown sgeadmin:sgeadmin /var/run/gridengine "$SPOOL/qmaster" "$SPOOL/execd"
# a restarted container keeps its spool; drop stale lock/pid files
rm -f "$SPOOL/qmaster/lock" "$SPOOL/qmaster/qmaster.pid"
log "starting sge_qmaster on $HOST"
/usr/sbin/sge_qmaster || die "sge_qmaster failed to start"
for _ in $(seq 1 100); do qstat -f >/dev/null 2>&1 && break; sleep 0.2; done
qstat -f >/dev/null 2>&1 || die "qmaster does not answer"
log "qmaster up"

# root is not an SGE manager by default (sgeadmin is); run qconf as sgeadmin
asadmin() { su -s /bin/sh sgeadmin -c "$(printf '%q ' "$@")"; }
asadmin qconf -am root >/dev/null 2>&1 || true
qconf -ah "$HOST" >/dev/null 2>&1 || true
qconf -as "$HOST" >/dev/null 2>&1 || true

# ---- 3a. global config + scheduler (before execd, so it reads them) -------------
TMP=$(mktemp -d)
# join backslash-continued lines first (qconf prints long values wrapped)
qconf -sconf global | sed -e ':a' -e '/\\$/{N;s/\\\n[[:space:]]*/ /;ba' -e '}' > "$TMP/global"
sed -i -E "s/^(reporting_params[[:space:]]+).*/\1accounting=true reporting=false flush_time=00:00:15 joblog=false sharelog=00:00:00 accounting_flush_time=${SGE_ACCOUNTING_FLUSH_TIME}/" "$TMP/global"
qconf -Mconf "$TMP/global" >/dev/null || log "WARN: qconf -Mconf failed"
qconf -ssconf > "$TMP/sched"
sed -i -E "s/^(schedule_interval[[:space:]]+).*/\1${SGE_SCHEDULE_INTERVAL}/; s/^(flush_submit_sec[[:space:]]+).*/\11/; s/^(flush_finish_sec[[:space:]]+).*/\11/" "$TMP/sched"
qconf -Msconf "$TMP/sched" >/dev/null || log "WARN: qconf -Msconf failed"

# h_vmem: requestable (default complex) so `-l h_vmem=2G` sets a per-job limit
# that execd/qmaster enforce.  Making it consumable is opt-in
# (SGE_HVMEM_CONSUMABLE=1): a consumable's *default* is booked by every job that
# does not request it, and with the stock default 0 every such job is killed at
# once (qacct: failed 37 "qmaster enforced h_rt, h_cpu, or h_vmem limit", exit 137).
if [ "$SGE_HVMEM_CONSUMABLE" = 1 ]; then
    qconf -sc > "$TMP/complex"
    sed -i -E "s/^h_vmem[[:space:]].*/h_vmem              h_vmem     MEMORY      <=    YES         YES        ${SGE_HVMEM_DEFAULT}        0/" "$TMP/complex"
    qconf -Mc "$TMP/complex" >/dev/null 2>&1 || log "WARN: qconf -Mc (h_vmem consumable) failed"
fi

# ---- 2. execd -----------------------------------------------------------------
log "starting sge_execd"
/usr/sbin/sge_execd || die "sge_execd failed to start"
for _ in $(seq 1 100); do qconf -sel 2>/dev/null | grep -qx "$HOST" && break; sleep 0.2; done
qconf -sel 2>/dev/null | grep -qx "$HOST" || die "execd did not register as exec host"
log "execd registered"

if [ "$SGE_HVMEM_CONSUMABLE" = 1 ]; then
    MEM_KB=$(awk '/^MemTotal:/{print $2}' /proc/meminfo)
    qconf -mattr exechost complex_values "h_vmem=${MEM_KB}K" "$HOST" >/dev/null 2>&1 \
        || qconf -aattr exechost complex_values "h_vmem=${MEM_KB}K" "$HOST" >/dev/null 2>&1 \
        || log "WARN: could not set h_vmem capacity on $HOST"
fi

# ---- 3b. PE, queue, project ----------------------------------------------------
SLOTS=${SGE_SLOTS:-$(nproc)}
if qconf -sp smp >/dev/null 2>&1; then qconf -Mp "$CONF/smp.pe.conf" >/dev/null
else qconf -Ap "$CONF/smp.pe.conf" >/dev/null || die "qconf -Ap smp failed"; fi
sed -e "s/@HOSTNAME@/$HOST/" -e "s/@SLOTS@/$SLOTS/" "$CONF/all.q.conf.in" > "$TMP/all.q"
if qconf -sq all.q >/dev/null 2>&1; then qconf -Mq "$TMP/all.q" >/dev/null
else qconf -Aq "$TMP/all.q" >/dev/null || die "qconf -Aq all.q failed"; fi
if [ "$SGE_DEFINE_PROJECT" = 1 ] && ! qconf -sprj hpcproj >/dev/null 2>&1; then
    qconf -Aprj "$CONF/hpcproj.prj.conf" >/dev/null || log "WARN: qconf -Aprj hpcproj failed"
fi
rm -rf "$TMP"
log "configured: all.q@$HOST slots=$SLOTS, pe smp, schedule_interval=$SGE_SCHEDULE_INTERVAL, accounting_flush_time=$SGE_ACCOUNTING_FLUSH_TIME, h_vmem consumable=$SGE_HVMEM_CONSUMABLE"

# ---- 4. install the checkout -----------------------------------------------------
/usr/local/sbin/hpcpar-install-src || log "WARN: installing /src failed (see above)"

# ---- 5. wait for the queue instance -----------------------------------------------
ok=0
for _ in $(seq 1 150); do
    # queue line: "all.q@sge  BIP  0/0/2  0.01  lx-amd64  [states]"
    line=$(qstat -f -q "all.q@$HOST" 2>/dev/null | awk -v q="all.q@$HOST" '$1==q')
    if [ -n "$line" ] && [ "$(echo "$line" | awk '{print NF}')" -eq 5 ] \
       && ! echo "$line" | awk '{print $4}' | grep -q -- '-NA-'; then ok=1; break; fi
    sleep 0.2
done
[ "$ok" = 1 ] || die "queue all.q@$HOST not OK: $(qstat -f 2>&1 | tail -n 3)"
log "READY: $(qstat -f | awk -v q="all.q@$HOST" '$1==q')"
touch "$READY"

sleep infinity &
wait $!
