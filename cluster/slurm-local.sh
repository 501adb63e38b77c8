#!/usr/bin/env bash
# A real Slurm cluster on this machine (Debian's slurm-wlm and munge), for the tests and for
# trying cluster/slurm.sbatch by hand. Everything lives in one state directory with its own
# munge socket, ports and configuration, so it never touches /etc/slurm or a system Slurm.
#   cluster/slurm-local.sh up            # one node: munged, slurmctld, slurmd on 127.0.0.1
#   cluster/slurm-local.sh up --hosts N  # N nodes: a simulated multi-host cluster
#                                        # (cluster/netns-cluster.sh up N) with one slurmd per host
#   cluster/slurm-local.sh run COMMAND…  # a Slurm command against the cluster (sbatch, srun, squeue…)
#   cluster/slurm-local.sh env           # the environment of those commands (one node: SLURM_CONF=…)
#   cluster/slurm-local.sh down          # stops the daemons and jobs it started, removes the state
#                                        # (and the simulated hosts)
# DDP_SLURM_NAME (default ddpslurm) names the state directory (/tmp/$DDP_SLURM_NAME) and picks
# the ports, so concurrent test runs each get a cluster of their own. Needs root (slurmd runs
# jobs as their user) and the packages: scripts/install-deps.sh --tests installs them.
# Exit status 2 with one line on stderr: Slurm cannot start here (and why).
#
# N nodes: host K is the network namespace PREFIX-hK at NET.K (DDP_NETNS_PREFIX, default the
# cluster's name; DDP_NETNS_NET, default 10.77.0; see cluster/netns-cluster.sh), and its Slurm
# node is named PREFIX-hK too. Each slurmd runs inside its host's network namespace (entered with
# nsenter: `ip netns exec` would also remount /sys, hiding the cgroup file system slurmd needs),
# and in a UTS namespace of its own whose hostname is the node's name, so a job's tasks see the
# hostname of the node they run on (the hosts share this machine's hostname otherwise; Open MPI
# tells nodes apart by it). Debian's slurmd runs several to a machine with `-N NODE`, and the
# configuration's %n gives each node its own spool, pid, log and PMIx directories. slurmctld
# runs on host 1, which is also the login node: the root namespace has no link to the cluster's
# network, so `run` enters host 1 for every Slurm command. munged stays outside; its socket is a
# file, which every namespace sees. Jobs get DDP_IFACE=NET.0/24, which cluster/ddprun (started
# by cluster/slurm.sbatch) passes to Open MPI as the network to use.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
name=${DDP_SLURM_NAME:-ddpslurm}
dir=/tmp/$name
conf=$dir/slurm.conf
# Ports from the name, in 17000–26999, away from Slurm's defaults (6817/6818).
port=$((17000 + $(printf '%s' "$name" | cksum | cut -d' ' -f1) % 5000 * 2))
net=${DDP_NETNS_NET:-10.77.0}
hosts=1
# A multi-node cluster records its namespace prefix here when it comes up (down needs it).
prefix=$(cat "$dir/netns-prefix" 2>/dev/null || echo "${DDP_NETNS_PREFIX:-$name}")

cannot() { echo "slurm-local: cannot start Slurm here: $*" >&2; exit 2; }

netns_cluster() { DDP_NETNS_PREFIX=$prefix DDP_NETNS_NET=$net "$here/netns-cluster.sh" "$@"; }
multinode() { [ -f "$dir/netns-prefix" ]; }

# on_node K COMMAND...: becomes COMMAND on node K: in its host's network namespace, with the
# node's name as hostname (in a UTS namespace of its own). One node: here, as it is.
on_node() {
    local k=$1; shift
    if multinode; then
        exec nsenter --net="/run/netns/$prefix-h$k" unshare --uts sh -c 'hostname "$0" && exec "$@"' "$prefix-h$k" "$@"
    fi
    exec "$@"
}

# The environment of Slurm commands, and so of the jobs they submit.
slurm_env() {
    echo "SLURM_CONF=$conf"
    if multinode; then echo "DDP_IFACE=$net.0/24"; fi
}

# run COMMAND...: a Slurm command against this cluster, on host 1 (the login node) when the
# cluster has several.
run() {
    [ -f "$conf" ] || { echo "slurm-local: not running (cluster/slurm-local.sh up)" >&2; exit 1; }
    local vars
    mapfile -t vars < <(slurm_env)
    if multinode; then exec nsenter --net="/run/netns/$prefix-h1" env "${vars[@]}" "$@"; fi
    exec env "${vars[@]}" "$@"
}

# stop_pidfiles FILE...: SIGTERM to the daemons the files name, all at once (each takes about
# 2 s to exit), SIGKILL to those still there 5 s later.
stop_pidfiles() {
    local file pid pids=()
    for file in "$@"; do
        [ -f "$file" ] || continue
        pid=$(cat "$file" 2>/dev/null || true)
        if [ -n "$pid" ] && kill "$pid" 2>/dev/null; then pids+=("$pid"); fi
        rm -f "$file"
    done
    for _ in $(seq 50); do
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && break; pid=; done
        [ -z "${pid:-}" ] && return 0
        sleep 0.1
    done
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
}

down() {
    [ -d "$dir" ] || return 0
    # Jobs first (their processes are slurmstepd's children), then the daemons.
    if [ -f "$dir/slurmctld.pid" ] && command -v scancel >/dev/null; then
        (run timeout 10 scancel --quiet --full --user root) >/dev/null 2>&1 || true
        sleep 1
    fi
    local pid
    stop_pidfiles "$dir"/slurmd-*.pid "$dir/slurmctld.pid" "$dir/munged.pid"
    # slurmstepd outlives slurmd; end the ones of this cluster (they name its configuration).
    for pid in $(pgrep -f "slurmstepd" 2>/dev/null || true); do
        if tr '\0' ' ' < "/proc/$pid/environ" 2>/dev/null | grep -q "SLURM_CONF=$conf"; then kill -9 "$pid" 2>/dev/null || true; fi
    done
    # Whatever is still in the simulated hosts ends with them.
    if multinode; then netns_cluster down >&2; fi
    rm -rf "$dir"
}

# detached COMMAND...: a daemon (COMMAND, or a function that execs it) holding none of our descriptors but /dev/null, so that whoever
# waits for this script's output or exit (a test harness watching a pipe or socket) is not
# kept waiting by the daemon.
detached() {
    (
        for fd in /proc/$BASHPID/fd/*; do
            fd=${fd##*/}
            if [ "$fd" -gt 2 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
        done
        exec </dev/null >/dev/null 2>&1
        "$@"
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

controller_up() { (run scontrol ping); }
all_idle() { [ "$( (run sinfo -h -N -o %T) | grep -c -x idle)" = "$hosts" ]; }

up() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --hosts) hosts=${2:-}; shift; shift || true ;;
            *) echo "slurm-local: unknown option $1 (usage: up [--hosts N])" >&2; exit 64 ;;
        esac
    done
    [[ "$hosts" =~ ^[0-9]+$ ]] && [ "$hosts" -ge 1 ] || { echo "slurm-local: --hosts needs a number ≥ 1" >&2; exit 64; }
    [ "$(id -u)" = 0 ] || cannot "not root (slurmd must run as root to start jobs)"
    for tool in munged slurmctld slurmd sbatch srun scontrol; do
        command -v "$tool" >/dev/null || cannot "$tool not found (apt-get install slurm-wlm munge; or scripts/install-deps.sh --tests)"
    done
    down
    prefix=${DDP_NETNS_PREFIX:-$name}
    mkdir -p "$dir/state" "$dir/spool" "$dir/munge"
    chmod 755 "$dir"
    chmod 700 "$dir/munge"
    local k nodes=() addrs=() controller
    if [ "$hosts" -gt 1 ]; then
        for tool in unshare nsenter; do
            command -v "$tool" >/dev/null || { down; cannot "$tool not found (util-linux)"; }
        done
        echo "$prefix" > "$dir/netns-prefix"
        netns_cluster up "$hosts" >&2 || { down; cannot "no simulated hosts (cluster/netns-cluster.sh up $hosts failed)"; }
        for ((k = 1; k <= hosts; k++)); do nodes+=("$prefix-h$k"); addrs+=("$net.$k"); done
    else
        nodes=("$(hostname -s)")
        addrs=(127.0.0.1)
    fi
    controller="${nodes[0]}(${addrs[0]})"
    dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$dir/munge/munge.key"
    detached munged --force --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
        --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" --seed-file="$dir/munge/seed"
    wait_for 10 munged test -S "$dir/munge/munge.socket"
    cat > "$conf" <<EOF
# Written by cluster/slurm-local.sh: a $hosts-node cluster for ddptrain's tests.
ClusterName=$name
SlurmctldHost=$controller
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
# A requeued job waits cred_expire + 1 s before it may start again (Slurm default 120 s).
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=10
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
# %n: the node's name; the nodes share this file system.
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd-%n.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd-%n.log
# Where the PMIx plugin puts its per-step directories (srun --mpi=pmix), named by job and step
# alone: two nodes writing them in one /tmp would clash.
TmpFS=$dir/tmp/%n
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
EOF
    # Simulated hosts share this machine's cores: each node offers all of them.
    for ((k = 0; k < hosts; k++)); do
        echo "NodeName=${nodes[$k]} NodeAddr=${addrs[$k]} CPUs=$(nproc) State=UNKNOWN" >> "$conf"
    done
    echo "PartitionName=debug Nodes=$(IFS=,; echo "${nodes[*]}") Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES" >> "$conf"
    SLURM_CONF=$conf detached on_node 1 slurmctld -i -f "$conf"
    wait_for 20 slurmctld controller_up
    for ((k = 1; k <= hosts; k++)); do
        mkdir -p "$dir/spool/${nodes[$((k - 1))]}" "$dir/tmp/${nodes[$((k - 1))]}"
        SLURM_CONF=$conf detached on_node "$k" slurmd -f "$conf" -N "${nodes[$((k - 1))]}"
    done
    wait_for 30 "slurmd ($hosts node(s) idle)" all_idle
    slurm_env | sed 's/^/export /'
}

case "${1:-}" in
    up) shift; up "$@" ;;
    down) down ;;
    run) shift; [ $# -ge 1 ] || { echo "usage: cluster/slurm-local.sh run COMMAND..." >&2; exit 64; }; run "$@" ;;
    env) [ -f "$conf" ] || { echo "slurm-local: not running (cluster/slurm-local.sh up)" >&2; exit 1; }; slurm_env | sed 's/^/export /' ;;
    conf) echo "$conf" ;;
    *) echo "usage: cluster/slurm-local.sh up [--hosts N] | run COMMAND... | env | conf | down" >&2; exit 64 ;;
esac
