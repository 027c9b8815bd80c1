#!/bin/bash
# Entrypoint for every container of the SLURM mini-cluster.
#   hpcpar-slurm-entrypoint slurmdbd|slurmctld|slurmd|CMD...
# Config files come from the read-only bind mount /etc/slurm-src (= docker/slurm/).
set -euo pipefail
ROLE=${1:-bash}
log() { echo "[entrypoint:$ROLE $(date +%T)] $*" >&2; }

wait_tcp() {  # host port timeout
    local i
    for ((i = 0; i < $3; i++)); do
        (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
        sleep 1
    done
    log "timeout waiting for $1:$2"; return 1
}

# ---- cgroup mode --------------------------------------------------------------
# HPCPAR_SLURM_CGROUP=auto|v1|off
#  v1 : host uses cgroup v1 (like this dev sandbox). Compute nodes run slurmd in
#       a private cgroup namespace with freshly mounted rw v1 hierarchies (needs
#       CAP_SYS_ADMIN; --privileged is not needed and does not work here), so
#       proctrack/cgroup + task/cgroup enforce --mem per job.
#  off: cgroup v2 hosts (GitHub-hosted runners) or anything else: Slurm 22.05's
#       cgroup/v2 plugin wants systemd/dbus, absent in these containers, so use
#       proctrack/linuxproc and memory enforcement by polling (OverMemoryKill).
cgroup_mode() {
    local m=${HPCPAR_SLURM_CGROUP:-auto}
    if [ "$m" = auto ]; then
        if [ -e /sys/fs/cgroup/cgroup.controllers ]; then m=off
        elif [ -e /sys/fs/cgroup/memory/memory.limit_in_bytes ] && [ -d /sys/fs/cgroup/freezer ]; then m=v1
        else m=off; fi
    fi
    echo "$m"
}

setup_config() {
    local mode; mode=$(cgroup_mode)
    # symlinks, so that after editing docker/slurm/slurm.conf on the host a
    # `docker/slurm/exec scontrol reconfigure` applies it (node changes need a restart)
    ln -sfn /etc/slurm-src/slurm.conf /etc/slurm/slurm.conf
    ln -sfn /etc/slurm-src/cgroup.conf /etc/slurm/cgroup.conf
    case "$mode" in
        v1)  ln -sfn /etc/slurm-src/slurm-mode-cgroup.conf /etc/slurm/slurm-mode.conf ;;
        off) ln -sfn /etc/slurm-src/slurm-mode-nocgroup.conf /etc/slurm/slurm-mode.conf ;;
        *) log "bad HPCPAR_SLURM_CGROUP=$mode"; exit 1 ;;
    esac
    log "cgroup mode: $mode"
    echo "$mode" >/etc/slurm/cgroup-mode
}

start_munge() {
    mkdir -p /run/munge && chown munge:munge /run/munge
    runuser -u munge -- /usr/sbin/munged --num-threads=4
    munge -n | unmunge >/dev/null || { log "munge self-test failed"; exit 1; }
}

shared_dirs() {
    mkdir -p /shared/runs
    chmod 1777 /shared /shared/runs 2>/dev/null || true
}

mount_cgroups_v1() {  # run inside `unshare -C -m`
    mount --make-rprivate / 2>/dev/null || true
    mount -t tmpfs -o mode=755,nosuid,nodev,noexec cgroup_root /sys/fs/cgroup
    local c
    for c in cpuset memory freezer devices cpu cpuacct pids; do
        mkdir -p "/sys/fs/cgroup/$c"
        mount -t cgroup -o "rw,nosuid,nodev,noexec,$c" "cgroup_$c" "/sys/fs/cgroup/$c" \
            || log "warning: could not mount cgroup controller $c"
    done
}

case "$ROLE" in
slurmdbd)
    setup_config
    install -m 600 -o slurm -g slurm /etc/slurm-src/slurmdbd.conf /etc/slurm/slurmdbd.conf
    start_munge
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    log "starting mariadb"
    /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 --skip-name-resolve \
        --innodb-buffer-pool-size=128M --innodb-log-file-size=64M --innodb-lock-wait-timeout=900 \
        >/var/log/mariadb.log 2>&1 &
    for _ in $(seq 60); do mariadb-admin ping >/dev/null 2>&1 && break; sleep 0.5; done
    mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmdbpass';
                GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
    log "starting slurmdbd"
    exec slurmdbd -D
    ;;
slurmctld)
    setup_config
    start_munge
    shared_dirs
    hpcpar-install-src /src || true
    wait_tcp slurmdbd 6819 120
    log "starting slurmctld"
    exec slurmctld -D -i
    ;;
slurmd)
    setup_config
    start_munge
    shared_dirs
    hpcpar-install-src /src || true
    wait_tcp slurmctld 6817 180
    if [ "$(cat /etc/slurm/cgroup-mode)" = v1 ]; then
        exec unshare -C -m --propagation private "$0" slurmd-ns
    fi
    log "starting slurmd"
    exec slurmd -D
    ;;
slurmd-ns)   # internal: slurmd inside its own cgroup + mount namespace
    mount_cgroups_v1
    log "starting slurmd (cgroup v1 namespace)"
    exec slurmd -D
    ;;
*)
    exec "$@"
    ;;
esac
