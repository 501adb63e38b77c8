#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine (Debian's slurm-wlm and munge), for the tests
# and for trying cluster/slurm.sbatch by hand. Everything lives in one state directory with its
# own munge socket, ports and configuration, so it never touches /etc/slurm or a system Slurm.
#   cluster/slurm-local.sh up      # munged, slurmctld, slurmd; prints `export SLURM_CONF=…`
#   cluster/slurm-local.sh env     # the same export line, for an already running cluster
#   cluster/slurm-local.sh down    # stops the daemons it started and removes the state
#   SLURM_CONF=$(cluster/slurm-local.sh conf) sbatch …
# DDP_SLURM_NAME (default ddpslurm) names the state directory (/tmp/$DDP_SLURM_NAME) and picks
# the ports, so concurrent test runs each get a cluster of their own. Needs root (slurmd runs
# jobs as their user) and the packages: scripts/install-deps.sh --tests installs them.
# Exit status 2 with one line on stderr: Slurm cannot start here (and why).
set -euo pipefail

name=${DDP_SLURM_NAME:-ddpslurm}
dir=/tmp/$name
conf=$dir/slurm.conf
# Ports from the name, in 17000–26999, away from Slurm's defaults (6817/6818).
port=$((17000 + $(printf '%s' "$name" | cksum | cut -d' ' -f1) % 5000 * 2))
host=$(hostname -s)

cannot() { echo "slurm-local: cannot start Slurm here: $*" >&2; exit 2; }

stop_pidfile() {
    local file=$1 pid
    [ -f "$file" ] || return 0
    pid=$(cat "$file" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
}

down() {
    [ -d "$dir" ] || return 0
    # Jobs first (their processes are slurmstepd's children), then the daemons.
    if [ -f "$dir/slurmctld.pid" ] && command -v scancel >/dev/null; then
        SLURM_CONF=$conf timeout 10 scancel --quiet --full --user root 2>/dev/null || true
        sleep 1
    fi
    stop_pidfile "$dir/slurmd.pid"
    stop_pidfile "$dir/slurmctld.pid"
    # slurmstepd outlives slurmd; end the ones of this cluster (they name its spool directory).
    for pid in $(pgrep -f "slurmstepd" 2>/dev/null || true); do
        if tr '\0' ' ' < "/proc/$pid/environ" 2>/dev/null | grep -q "SLURM_CONF=$conf"; then kill -9 "$pid" 2>/dev/null || true; fi
    done
    stop_pidfile "$dir/munged.pid"
    rm -rf "$dir"
}

# detached COMMAND...: a daemon holding none of our descriptors but /dev/null, so that whoever
# waits for this script's output or exit (a test harness watching a pipe or socket) is not
# kept waiting by the daemon.
detached() {
    (
        for fd in /proc/$BASHPID/fd/*; do
            fd=${fd##*/}
            if [ "$fd" -gt 2 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
        done
        exec "$@" </dev/null >/dev/null 2>&1
    )
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local seconds=$1 what=$2; shift 2
    for _ in $(seq $((seconds * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "slurm-local: $what did not come up within $seconds s; see $dir/*.log" >&2
    tail -5 "$dir"/*.log >&2 || true
    down
    exit 1
}

up() {
    [ "$(id -u)" = 0 ] || cannot "not root (slurmd must run as root to start jobs)"
    for tool in munged slurmctld slurmd sbatch srun scontrol; do
        command -v "$tool" >/dev/null || cannot "$tool not found (apt-get install slurm-wlm munge; or scripts/install-deps.sh --tests)"
    done
    down
    mkdir -p "$dir/state" "$dir/spool" "$dir/munge"
    chmod 755 "$dir"
    chmod 700 "$dir/munge"
    dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$dir/munge/munge.key"
    detached munged --force --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
        --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" --seed-file="$dir/munge/seed"
    wait_for 10 munged test -S "$dir/munge/munge.socket"
    cat > "$conf" <<EOF
# Written by cluster/slurm-local.sh: a one-node cluster for ddptrain's tests.
ClusterName=$name
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
# A requeued job waits cred_expire + 1 s before it may start again (Slurm default 120 s).
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=10
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
# Pending jobs (a requeued one) are looked at every 2 s, not every 30–60 s.
SchedulerParameters=sched_interval=2,bf_interval=2
MpiDefault=none
ReturnToService=2
JobRequeue=1
# Time limits and warning signals are checked this often (seconds); the tests use both.
KillWait=20
OverTimeLimit=0
MinJobAge=300
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
    echo "SLURM_CONF=$conf" > "$dir/env"
    SLURM_CONF=$conf detached slurmctld -i -f "$conf"
    wait_for 20 slurmctld env SLURM_CONF="$conf" scontrol ping
    SLURM_CONF=$conf detached slurmd -f "$conf" -N "$host"
    wait_for 30 "slurmd (node $host idle)" \
        bash -c "SLURM_CONF='$conf' sinfo -h -N -o %T | grep -q -E '^idle'"
    echo "export SLURM_CONF=$conf"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    env) [ -f "$conf" ] || { echo "slurm-local: not running (cluster/slurm-local.sh up)" >&2; exit 1; }; echo "export SLURM_CONF=$conf" ;;
    conf) echo "$conf" ;;
    *) echo "usage: cluster/slurm-local.sh up|down|env|conf" >&2; exit 64 ;;
esac
