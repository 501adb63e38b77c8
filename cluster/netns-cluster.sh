#!/usr/bin/env bash
# A simulated multi-host cluster on one machine, for testing ddptrain over real TCP links that
# can be slowed down and cut. Needs root (or CAP_NET_ADMIN + CAP_SYS_ADMIN), iproute2 (ip, tc).
#
#   cluster/netns-cluster.sh up N               N hosts: namespaces PREFIX-h1..N, 10.77.0.1..N/24
#   cluster/netns-cluster.sh run [--per-host R] [--hosts H] [--timeout S] [--up N] [mpirun options] -- PROGRAM ARGS...
#                                               mpirun in host 1 across the hosts (see cmd_run)
#   cluster/netns-cluster.sh cap HOST RATE [DELAY]   e.g. cap 2 1gbit 1ms (both directions)
#   cluster/netns-cluster.sh uncap HOST
#   cluster/netns-cluster.sh cut HOST           the host's cable is pulled (link down, no RST)
#   cluster/netns-cluster.sh restore HOST
#   cluster/netns-cluster.sh status             hosts, addresses, links, qdiscs, processes
#   cluster/netns-cluster.sh down               kill everything in the namespaces, delete them
# HOST is K, PREFIX-hK or 10.77.0.K.
#
# Topology: a switch namespace PREFIX-sw holds a bridge br0 with one port hK per host; each
# host namespace PREFIX-hK holds the other end of that veth pair as eth0 with 10.77.0.K/24.
# Everything is created inside those namespaces (veth ends are created directly in them), so the
# root namespace gets no interface, address or route, and the cluster's traffic cannot reach any
# other network: the namespaces have no other interface and no default route. mpirun itself
# runs inside PREFIX-h1, like a login on the first node. All namespaces share this machine's
# cores, file system and /tmp (so ranks see the same binary and data paths, as on a cluster
# with a shared file system).
#
# Environment: DDP_NETNS_PREFIX (default ddp) names the namespaces, so several clusters (e.g.
# the tests' and yours) can coexist; DDP_NETNS_NET (default 10.77.0) is the /24 inside them.
# Addresses are private to each cluster's namespaces, so even two clusters on the same /24
# cannot clash. DDP_NETNS_TCP_RETRIES2 (default 5; Linux's is 15) is how many retransmissions
# a host's TCP makes before giving up on a silent peer (see cmd_up).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
prefix="${DDP_NETNS_PREFIX:-ddp}"
net="${DDP_NETNS_NET:-10.77.0}"
export DDP_NETNS_PREFIX="$prefix" DDP_NETNS_NET="$net"   # for netns-rsh, started by mpirun
sw="$prefix-sw"
tcp_retries2="${DDP_NETNS_TCP_RETRIES2:-5}"   # 15 is Linux's default; see cmd_up

die() { echo "netns-cluster: $*" >&2; exit 1; }
note() { echo "netns-cluster: $*" >&2; }

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'
    exit "${1:-0}"
}

# Namespaces of this cluster that exist now: the switch, then the hosts in order.
cluster_namespaces() {
    ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$prefix-(sw|h[0-9]+)\$" | sort -V || true
}
host_namespaces() { cluster_namespaces | grep -E "^$prefix-h[0-9]+\$" || true; }

# PIDs of every process in our namespaces (ip netns pids looks at /proc/*/ns/net).
cluster_pids() {
    local ns
    for ns in $(cluster_namespaces); do ip netns pids "$ns" 2>/dev/null || true; done
}

# TERM, then KILL after a grace period, every process in the namespaces. Never touches
# processes elsewhere: each PID comes from ip netns pids of one of our namespaces.
kill_cluster_processes() {
    local pids i
    pids="$(cluster_pids | tr '\n' ' ')"
    [ -n "${pids// /}" ] || return 0
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    for i in 1 2 3 4 5 6 7 8 9 10; do
        pids="$(cluster_pids | tr '\n' ' ')"
        [ -n "${pids// /}" ] || return 0
        sleep 0.2
    done
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    for i in 1 2 3 4 5 6 7 8 9 10; do
        [ -z "$(cluster_pids)" ] && return 0
        sleep 0.1
    done
    note "processes still in the namespaces after SIGKILL: $(cluster_pids | tr '\n' ' ')"
}

# Deleting a namespace deletes the veth ends inside it, and with them their peers.
delete_namespaces() {
    local ns
    for ns in $(cluster_namespaces); do ip netns delete "$ns" 2>/dev/null || true; done
}

cmd_down() {
    kill_cluster_processes
    delete_namespaces
    [ -z "$(cluster_namespaces)" ] || die "could not delete: $(cluster_namespaces | tr '\n' ' ')"
}

# HOST (K, PREFIX-hK or NET.K) -> K
host_index() {
    local h="$1" k
    case "$h" in
        "$prefix"-h[0-9]*) k="${h#"$prefix"-h}" ;;
        "$net".*) k="${h##*.}" ;;
        *) k="$h" ;;
    esac
    [[ "$k" =~ ^[0-9]+$ ]] && [ -e "/run/netns/$prefix-h$k" ] || die "no host $h in the cluster (hosts: $(host_namespaces | tr '\n' ' '); is it up?)"
    echo "$k"
}

check_tools() {
    command -v ip >/dev/null 2>&1 || die "ip not found (Debian: apt-get install iproute2)"
    command -v tc >/dev/null 2>&1 || die "tc not found (Debian: apt-get install iproute2)"
    command -v timeout >/dev/null 2>&1 || die "timeout not found (coreutils)"
    [ "$(id -u)" = 0 ] || die "network namespaces need root (or CAP_NET_ADMIN and CAP_SYS_ADMIN)"
}

cmd_up() {
    local n="${1:-}" k h ns busy
    [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 254 ] || die "usage: up N (1 to 254 hosts)"
    check_tools
    if [ -n "$(cluster_namespaces)" ]; then
        busy="$(cluster_pids | tr '\n' ' ')"
        if [ -n "${busy// /}" ]; then
            die "namespaces $(cluster_namespaces | tr '\n' ' ')already exist and are in use (pids $busy); \
stop that job or run: DDP_NETNS_PREFIX=$prefix $0 down"
        fi
        note "removing idle namespaces left from an earlier cluster: $(cluster_namespaces | tr '\n' ' ')"
        delete_namespaces
    fi
    # From here on a failure must not leave a half-built cluster behind.
    trap 'status=$?; if [ $status != 0 ]; then note "up failed; removing what was built"; cmd_down || true; fi' EXIT

    ip netns add "$sw"
    ip -n "$sw" link set lo up
    ip -n "$sw" link add br0 type bridge   # no STP: ports forward at once
    ip -n "$sw" link set br0 up
    for ((k = 1; k <= n; k++)); do
        h="$prefix-h$k"
        ip netns add "$h"
        # IPv4 only: no IPv6 link-local chatter, no second address family for MPI to try.
        ip netns exec "$h" sh -c 'echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6' 2>/dev/null || true
        # A TCP connection whose data goes unacknowledged is given up after ~13 s (5 doubling
        # retransmissions from 200 ms) instead of Linux's default ~15 min (tcp_retries2=15);
        # likewise a connect() after ~7 s instead of ~2 min. This is what lets mpirun end a job
        # whose host was cut off: after a rank's watchdog exits, mpirun must tell every
        # daemon to kill its ranks and waits until it hears back or its connection to the daemon
        # fails; with the default it would wait up to 15 minutes (it does so on a real cluster
        # too; see README). These are per-namespace settings: nothing outside changes.
        ip netns exec "$h" sh -c "echo $tcp_retries2 > /proc/sys/net/ipv4/tcp_retries2; echo 2 > /proc/sys/net/ipv4/tcp_syn_retries"
        ip -n "$h" link set lo up
        # Created in the switch namespace with the peer moved straight into the host: the root
        # namespace never sees either end.
        ip -n "$sw" link add "h$k" type veth peer name eth0 netns "$h"
        ip -n "$sw" link set "h$k" master br0 up
        ip -n "$h" addr add "$net.$k/24" dev eth0
        ip -n "$h" link set eth0 up
    done
    # Every host reaches host 1 before we say so (when ping is installed; it is optional).
    if command -v ping >/dev/null 2>&1; then
        for ((k = 2; k <= n; k++)); do
            ip netns exec "$prefix-h$k" ping -q -c 1 -W 2 "$net.1" >/dev/null 2>&1 ||
                die "host $k cannot reach $net.1"
        done
    fi
    trap - EXIT
    echo "cluster up: $n host(s) $prefix-h1..$n at $net.1..$n/24, switch $sw (down: $0 down)"
}

# cap HOST RATE [DELAY]: shape both directions of the host's link, at the host's eth0 (egress
# to the switch) and at its switch port (egress towards the host). netem gives rate + delay;
# kernels without it (CONFIG_NET_SCH_NETEM unset, as on some VMs) get a token bucket (tbf):
# the rate, but no delay, which is said loudly.
cmd_cap() {
    local k rate="${2:-}" delay="${3:-0ms}" no_netem=""
    [ -n "$rate" ] || die "usage: cap HOST RATE [DELAY]   e.g. cap 2 1gbit 1ms"
    k="$(host_index "$1")"
    local dev
    for dev in "$prefix-h$k eth0" "$sw h$k"; do
        set -- $dev
        tc -n "$1" qdisc del dev "$2" root 2>/dev/null || true
        # limit in packets: room for ~20 ms at the rate, so TCP is paced, not dropped.
        if tc -n "$1" qdisc add dev "$2" root netem rate "$rate" delay "$delay" limit 10000 2>/dev/null; then
            :
        else
            # burst: several 64 KB GSO segments (veth offloads); latency: queue of 20 ms.
            tc -n "$1" qdisc add dev "$2" root tbf rate "$rate" burst 256kb latency 20ms ||
                die "tc could not shape $2 in $1"
            no_netem=yes
        fi
    done
    if [ "$no_netem" = yes ] && [ "$delay" != 0ms ] && [ "$delay" != 0 ]; then
        note "WARNING: this kernel has no netem qdisc; host $k capped at $rate with tbf, but the $delay delay is NOT applied"
    fi
    echo "host $k: $(tc -n "$prefix-h$k" qdisc show dev eth0 | head -1)"
}

cmd_uncap() {
    local k
    k="$(host_index "$1")"
    tc -n "$prefix-h$k" qdisc del dev eth0 root 2>/dev/null || true
    tc -n "$sw" qdisc del dev "h$k" root 2>/dev/null || true
    echo "host $k: link unshaped"
}

# A cut takes the switch port down: the host's eth0 loses carrier and every packet to or from
# it is dropped silently, as when a cable is pulled. TCP peers see no reset; they retransmit
# until a timeout gives up, which is what a watchdog has to catch.
cmd_cut() {
    local k
    k="$(host_index "$1")"
    ip -n "$sw" link set "h$k" down
    echo "host $k: link cut"
}

# While the cable was out, every packet towards or from the host started an ARP resolution that
# failed (the neighbour entry goes INCOMPLETE, then FAILED), and the kernel keeps retransmitting
# for sockets of processes long gone. A connection attempted in the seconds after the restore
# can join such a resolution that began before it and fail with "No route to host" when it
# runs out of probes: that is how a rerun's Open MPI daemon once failed to call back to mpirun
# (1 rerun in ~15 on a loaded machine). A real switch port coming back has the same window; the
# simulated one flushes the stale entries so the cable is fully back when restore returns.
cmd_restore() {
    local k ns
    k="$(host_index "$1")"
    ip -n "$sw" link set "h$k" up
    for ns in $(host_namespaces); do ip -n "$ns" neigh flush dev eth0 2>/dev/null || true; done
    echo "host $k: link restored"
}

cmd_status() {
    local ns
    [ -n "$(cluster_namespaces)" ] || { echo "no cluster (prefix $prefix)"; return 0; }
    for ns in $(host_namespaces); do
        echo "$ns: $(ip -n "$ns" -br addr show dev eth0 2>/dev/null | tr -s ' ')"
        echo "    qdisc: $(tc -n "$ns" qdisc show dev eth0 | head -1)"
        echo "    pids: $(ip netns pids "$ns" | tr '\n' ' ')"
    done
    echo "$sw: $(ip -n "$sw" -br link show master br0 2>/dev/null | awk '{print $1 " " $2}' | tr '\n' ' ')"
}

# run [--hosts H] [--per-host R] [--timeout S] [mpirun options] -- PROGRAM ARGS...
# Starts mpirun in host 1 with R ranks on each of the first H hosts (default: every host, 1
# rank each), TCP only, bounded by --timeout seconds (default 1800; then SIGTERM, SIGKILL 10 s
# later). Whatever happens (success, failure, timeout, Ctrl-C), every process left in the
# namespaces is killed on the way out; a cluster this command brought up itself (it was not up
# and --up N was given) is also deleted. Exit status: mpirun's, or 124 on timeout.
cmd_run() {
    local hosts="" per=1 limit=1800 autoup="" mpiopts=() k
    while [ $# -gt 0 ]; do
        case "$1" in
            --hosts) hosts="$2"; shift 2 ;;
            --per-host) per="$2"; shift 2 ;;
            --timeout) limit="$2"; shift 2 ;;
            --up) autoup="$2"; shift 2 ;;
            --) shift; break ;;
            *) mpiopts+=("$1"); shift ;;
        esac
    done
    [ $# -ge 1 ] || die "usage: run [--hosts H] [--per-host R] [--timeout S] [--up N] [mpirun options] -- PROGRAM ARGS..."
    check_tools
    command -v mpirun >/dev/null 2>&1 || die "mpirun not found (Debian: apt-get install openmpi-bin)"
    if [ -n "$autoup" ]; then
        cmd_up "$autoup"
        trap 'kill_cluster_processes; delete_namespaces' EXIT
        trap 'exit 130' INT
        trap 'exit 143' TERM
    else
        [ -n "$(host_namespaces)" ] || die "the cluster is not up: $0 up N (or run --up N)"
        local busy
        busy="$(cluster_pids | tr '\n' ' ')"
        [ -z "${busy// /}" ] || die "the cluster is busy (pids $busy): one job at a time"
        # Cleanup of this job's processes only; the namespaces stay for the next command.
        trap 'kill_cluster_processes' EXIT
        trap 'exit 130' INT
        trap 'exit 143' TERM
    fi
    local available
    available="$(host_namespaces | wc -l)"
    hosts="${hosts:-$available}"
    [ "$hosts" -le "$available" ] || die "--hosts $hosts but the cluster has $available"

    # The hostfile lives in /tmp, which every namespace sees (one file system).
    local hostfile
    hostfile="$(mktemp /tmp/netns-cluster-hosts.XXXXXX)"
    for ((k = 1; k <= hosts; k++)); do echo "$net.$k slots=$per"; done >"$hostfile"

    local opts=(
        --hostfile "$hostfile" -n $((hosts * per))
        # Remote hosts are started through our agent, which enters their namespace instead of
        # ssh'ing. mpirun treats a hostfile entry as local when it is one of the addresses of
        # its own namespace (host 1) and launches it directly; every other host goes
        # through the agent. No tree spawn: all orteds are started from host 1.
        --mca plm_rsh_agent "$here/netns-rsh" --mca plm_rsh_no_tree_spawn 1
        # TCP only, on the cluster's network. ob1 is forced because UCX (built into Debian's
        # Open MPI) would otherwise pick its own transports, shared memory among them; vader
        # (shared memory) is excluded for the same reason: it would connect ranks on different
        # "hosts" through /dev/shm, which all namespaces share.
        --mca pml ob1 --mca btl tcp,self
        --mca btl_tcp_if_include "$net.0/24" --mca oob_tcp_if_include "$net.0/24"
        # mpirun and its daemons notice a silent host within ~16 s even when they have
        # nothing to send (keepalive probes; the default is 300 s idle, then 9 probes 20 s apart),
        # and then end the job: the last line of defence when ranks themselves wait forever
        # (--collective-timeout 0).
        --mca oob_tcp_keepalive_time 10 --mca oob_tcp_keepalive_intvl 2 --mca oob_tcp_keepalive_probes 3
        # Daemons stay attached to their launch agent instead of daemonising: a daemon that cannot
        # call back to mpirun then ends its agent with an error, and mpirun ends the job with a
        # message. Daemonised, it dies unseen and mpirun waits forever (see cluster/ddprun).
        --leave-session-attached
        # The hosts share this machine's cores: slots are a fiction, and Open MPI's default
        # binding (each host binds its rank 0 to core 0) would stack ranks of different hosts
        # on one core.
        --oversubscribe --bind-to none
    )
    [ "$(id -u)" = 0 ] && opts+=(--allow-run-as-root)

    note "mpirun in $prefix-h1: $((hosts * per)) rank(s), $per on each of $net.1..$hosts (timeout ${limit} s)"
    # In the background and waited for, so that a SIGTERM or Ctrl-C to this script runs its
    # trap at once (bash defers traps while a foreground child runs).
    local status=0
    ip netns exec "$prefix-h1" timeout --kill-after=10 "$limit" \
        mpirun "${opts[@]}" "${mpiopts[@]}" "$here/netns-rank" "$@" &
    wait $! || status=$?
    rm -f "$hostfile"
    if [ "$status" = 124 ] || [ "$status" = 137 ]; then
        note "the job did not finish within --timeout $limit s and was killed"
    fi
    return "$status"
}

[ $# -ge 1 ] || usage 2
cmd="$1"
shift
case "$cmd" in
    up) cmd_up "$@" ;;
    down) cmd_down ;;
    cap) cmd_cap "$@" ;;
    uncap) cmd_uncap "$@" ;;
    cut) cmd_cut "$@" ;;
    restore) cmd_restore "$@" ;;
    status) cmd_status ;;
    run) cmd_run "$@" ;;
    -h|--help|help) usage 0 ;;
    *) note "unknown command $cmd"; usage 2 ;;
esac
