#!/usr/bin/env bash
# A chaos soak: trains with ddptrain while faults are injected at random moments drawn from a seed,
# reruns the same command after each fault until the run completes, and checks the promises:
# every fault ends the job with a message within a bound, nothing is left running, `latest`
# always names a valid checkpoint, and the final weights are bit-identical to an uninterrupted
# run of the same command.
#
#   cluster/chaos.sh [options] -- DDPTRAIN_ARGS...     (DDPTRAIN_ARGS without --run-dir)
#   e.g. cluster/chaos.sh --seed 7 --faults 20 -- --data ../shared/cifar10-sample --epochs 3
#
# Options:
#   --seed N                  the random moments, kinds and victims (default 1)
#   --faults N                how many faults to inject (default 10)
#   --kinds LIST              comma-separated, in rounds of a seeded shuffle, so that every kind
#                             comes once per len(LIST) faults (default: all available):
#                               kill         kill -9 of a random rank
#                               stop         SIGSTOP of a random rank (the watchdog must end the job)
#                               kill-writer  kill -9 of rank 0 halfway through a checkpoint write
#                               disk-full    the run directory's file system fills up (a small tmpfs),
#                                            freed before the rerun
#                               cut          a host's link is cut, restored before the rerun (--hosts)
#   --ranks R                 ranks in total (default 4)
#   --hosts H                 0: one machine, through cluster/ddprun (default); H >= 2: the simulated
#                             cluster of cluster/netns-cluster.sh with R/H ranks per host
#   --collective-timeout S    passed to ddptrain (default 20)
#   --window MIN:MAX          a fault comes MIN to MAX milliseconds after the job starts training
#                             (default 300:2800)
#   --bound S                 a job still running S seconds after its fault is a hang (default:
#                             collective timeout + 60)
#   --work DIR                where the runs and logs go (default: a new directory under /tmp)
#   --binary PATH             ddptrain (default: .build/release/ddptrain)
#
# One line per fault (kind, victim, moment, seconds until the job ended, exit status, the
# checkpoint `latest` named afterwards and how the next run resumed), then a summary with the
# longest fault-to-end time per kind. Exit status 0 only if every promise held.
# Needs root for disk-full (a tmpfs mount) and cut (network namespaces); without it those
# kinds are left out with a note.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
seed=1 faults=10 kinds="" window=300:2800 ranks=4 hosts=0 timeout=20 bound="" work="" binary="$root/.build/release/ddptrain"
while [ $# -gt 0 ]; do
    case "$1" in
        --seed) seed="$2"; shift 2 ;;
        --faults) faults="$2"; shift 2 ;;
        --kinds) kinds="$2"; shift 2 ;;
        --window) window="$2"; shift 2 ;;
        --ranks) ranks="$2"; shift 2 ;;
        --hosts) hosts="$2"; shift 2 ;;
        --collective-timeout) timeout="$2"; shift 2 ;;
        --bound) bound="$2"; shift 2 ;;
        --work) work="$2"; shift 2 ;;
        --binary) binary="$2"; shift 2 ;;
        --) shift; break ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "chaos: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
train_args=("$@")
die() { echo "chaos: $*" >&2; exit 2; }
[ -x "$binary" ] || die "no ddptrain at $binary (swift build -c release)"
[[ "$faults" =~ ^[0-9]+$ ]] || die "--faults must be a number"
[[ "$window" =~ ^([0-9]+):([0-9]+)$ ]] && [ "${BASH_REMATCH[2]}" -gt "${BASH_REMATCH[1]}" ] || die "--window must be MIN:MAX in ms, MIN < MAX"
window_min="${BASH_REMATCH[1]}" window_span=$((BASH_REMATCH[2] - BASH_REMATCH[1]))
[[ "$ranks" =~ ^[0-9]+$ ]] && [ "$ranks" -ge 1 ] || die "--ranks must be a positive number"
bound="${bound:-$((timeout + 60))}"
limit=$((bound + 600))   # a job's whole life; the bound itself is checked from the fault on
for a in "${train_args[@]}"; do [ "$a" != --run-dir ] || die "chaos chooses the run directory; leave --run-dir out"; done
is_root=no; [ "$(id -u)" = 0 ] && is_root=yes

RANDOM=$seed   # every draw below comes from bash's generator, seeded: the same seed, the same soak
work="${work:-$(mktemp -d /tmp/ddptrain-chaos.XXXXXX)}"
mkdir -p "$work/logs"
run="$work/run" reference="$work/reference"
mkdir -p "$run"

# ---- the world: one machine or the simulated cluster -------------------------------------------
prefix="ddpc$$"
# Every process of the current job (launcher, mpirun, ranks): their command lines name the run dir.
job_pids() { pgrep -f -- "--run-dir $run" || true; }
cleanup() {
    local pids
    pids="$(job_pids)"
    [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
    if [ "$hosts" -ge 2 ]; then DDP_NETNS_PREFIX=$prefix "$here/netns-cluster.sh" down >/dev/null 2>&1 || true; fi
    if mountpoint -q "$run" 2>/dev/null; then umount "$run" 2>/dev/null || umount -l "$run" || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# launch LOGFILE ARGS...: one job in the background; sets $job. The job is killed $limit seconds
# after its start whatever happens, so the soak itself never hangs.
launch() {
    local logfile="$1"; shift
    if [ "$hosts" -ge 2 ]; then
        DDP_NETNS_PREFIX=$prefix timeout --kill-after=10 "$limit" "$here/netns-cluster.sh" run \
            --per-host $((ranks / hosts)) --timeout "$limit" -- "$binary" "$@" >"$logfile" 2>&1 &
    elif [ "$ranks" = 1 ]; then
        timeout --kill-after=10 "$limit" "$binary" "$@" >"$logfile" 2>&1 &
    else
        timeout --kill-after=10 "$limit" "$here/ddprun" -n "$ranks" "$binary" "$@" >"$logfile" 2>&1 &
    fi
    job=$!
}

available="kill,stop,kill-writer"
if [ "$is_root" = yes ] && mount -t tmpfs -o size=256m chaos-run "$run" 2>/dev/null; then
    available+=",disk-full"
else
    echo "chaos: disk-full left out (mounting a tmpfs needs root)"
fi
if [ "$hosts" -ge 2 ]; then
    [ $((ranks % hosts)) = 0 ] || die "--ranks $ranks is not a multiple of --hosts $hosts"
    DDP_NETNS_PREFIX=$prefix "$here/netns-cluster.sh" up "$hosts" >/dev/null || die "could not bring the simulated cluster up"
    available+=",cut"
fi
kinds="${kinds:-$available}"
IFS=, read -r -a kind_list <<<"$kinds"
for k in "${kind_list[@]}"; do
    [[ ",$available," == *",$k,"* ]] || die "fault kind $k is not available here (available: $available)"
done

args=("${train_args[@]}" --run-dir "$run" --collective-timeout "$timeout")
echo "chaos: seed $seed, $faults fault(s) of kinds $kinds, $ranks rank(s)$([ "$hosts" -ge 2 ] && echo " on $hosts simulated hosts"), collective timeout $timeout s, bound $bound s"
echo "chaos: ddptrain ${train_args[*]}   (work: $work)"

# ---- the uninterrupted reference -----------------------------------------------------------------
launch "$work/logs/reference.log" "${train_args[@]}" --run-dir "$reference" --collective-timeout "$timeout"
if ! wait "$job"; then
    tail -20 "$work/logs/reference.log" >&2
    die "the uninterrupted reference run failed (log: $work/logs/reference.log)"
fi

# ---- helpers -------------------------------------------------------------------------------------
now() { date +%s.%N; }
seconds_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# PID of the ddptrain process of rank R of the current job (from its environment).
rank_pid() {
    local pid
    for pid in $(job_pids); do
        [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$(readlink -f "$binary")" ] || continue
        if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1"; then echo "$pid"; return; fi
        if [ "$ranks" = 1 ]; then echo "$pid"; return; fi
    done
}

# "valid" when latest names a checkpoint whose checksum holds (or there is none yet).
check_latest() {
    [ -e "$run/latest" ] || { echo "none yet"; return 0; }
    local file="$run/$(cat "$run/latest")"
    if "$binary" inspect "$file" >/dev/null 2>&1; then echo "$(basename "$file") valid"; else echo "$(basename "$file") INVALID"; return 1; fi
}

# Waits until the job trains (its replicas were compared), or it has ended; 0 if training.
wait_until_training() {
    local log="$1" i
    for ((i = 0; i < 1200; i++)); do
        grep -q "replicas identical \(at start\|after resume\)" "$log" 2>/dev/null && return 0
        kill -0 "$job" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# ---- the soak ------------------------------------------------------------------------------------
declare -A worst count
hangs=0 crashes=0 leftovers=0 invalid=0 failures=0 injected=0 segment=0 completed=no
for ((f = 1; f <= faults; f++)); do
    # Kinds come in rounds, each a seeded shuffle of --kinds: any len(kinds) faults in a row
    # cover every kind.
    if [ $(((f - 1) % ${#kind_list[@]})) = 0 ]; then
        round=("${kind_list[@]}")
        for ((i = ${#round[@]} - 1; i > 0; i--)); do
            j=$((RANDOM % (i + 1))); t="${round[$i]}"; round[$i]="${round[$j]}"; round[$j]="$t"
        done
    fi
    kind="${round[$(((f - 1) % ${#kind_list[@]}))]}"
    victim=$((RANDOM % ranks))
    delay_ms=$((window_min + (RANDOM * 32768 + RANDOM) % window_span))
    segment=$((segment + 1))
    log="$work/logs/run-$segment.log"
    [ "$kind" = cut ] && victim=$((2 + RANDOM % (hosts - 1)))   # a host other than mpirun's
    # The writer pauses halfway through each checkpoint only in the run that gets this fault (the
    # ranks inherit mpirun's environment, on the simulated hosts too).
    if [ "$kind" = kill-writer ]; then victim=0; export DDPTRAIN_CHAOS_WRITE_PAUSE_MS=1000; fi
    launch "$log" "${args[@]}"
    unset DDPTRAIN_CHAOS_WRITE_PAUSE_MS
    if ! wait_until_training "$log"; then
        wait "$job" && status=0 || status=$?
        if grep -q "^wrote .*model.safetensors" "$log"; then completed=yes; echo "chaos: run $segment completed before fault $f could be injected"; break; fi
        echo "chaos: run $segment failed before training began (exit $status; log: $log)"; failures=$((failures + 1)); continue
    fi
    resumed="$(sed -n 's/^resumed from .*global step \([0-9]*\).*/resumed from step \1/p' "$log" | head -1)"
    resumed="${resumed:-started fresh}"
    sleep "$(awk -v ms="$delay_ms" 'BEGIN { printf "%.3f", ms / 1000 }')"
    if ! kill -0 "$job" 2>/dev/null; then
        wait "$job" && status=0 || status=$?
        if grep -q "^wrote .*model.safetensors" "$log"; then completed=yes; echo "chaos: run $segment completed before fault $f"; break; fi
        echo "chaos: run $segment ended by itself before fault $f (exit $status; log: $log)"; failures=$((failures + 1)); continue
    fi

    what="" tmp_left=""
    case "$kind" in
        kill|stop)
            pid="$(rank_pid "$victim")"
            if [ -z "$pid" ]; then
                echo "chaos: no process for rank $victim in run $segment"; failures=$((failures + 1))
                kill -KILL $(job_pids) 2>/dev/null || true; wait "$job" || true; continue
            fi
            kill "$([ "$kind" = kill ] && echo -KILL || echo -STOP)" "$pid"
            what="rank $victim (pid $pid)" ;;
        kill-writer)
            # The checkpoint being written is a temporary file beside the others; the pause holds
            # it there. The writer's PID is looked up first, so the kill follows the sight at once.
            pid="$(rank_pid 0)"
            for ((i = 0; i < 600; i++)); do
                compgen -G "$run/checkpoints/*.tmp-*" >/dev/null && break
                kill -0 "$job" 2>/dev/null || break
                sleep 0.02
            done
            [ -n "$pid" ] && kill -KILL "$pid"
            tmp_left="$(compgen -G "$run/checkpoints/*.tmp-*" >/dev/null && echo "a half-written checkpoint left behind" || echo "no write in progress at the kill")"
            what="rank 0 (pid ${pid:-?}) during a checkpoint write" ;;
        disk-full)
            dd if=/dev/zero of="$run/.chaos-filler" bs=1M status=none 2>/dev/null || true
            what="run directory full ($(df -h --output=avail "$run" | tail -1 | tr -d ' ') left)" ;;
        cut)
            DDP_NETNS_PREFIX=$prefix "$here/netns-cluster.sh" cut "$victim" >/dev/null
            what="host $victim's link cut" ;;
    esac
    injected=$((injected + 1))
    at="$(now)"
    wait "$job" && status=0 || status=$?
    took="$(seconds_since "$at")"
    note=""
    if awk -v t="$took" -v b="$bound" 'BEGIN { exit !(t > b) }'; then
        hangs=$((hangs + 1)); note=" HANG (beyond the $bound s bound)"
    fi
    if [ "$status" = 0 ] && grep -q "^wrote .*model.safetensors" "$log"; then completed=yes; note+=" (the run completed first)"; fi
    # A fault must end the job with a message, never with a trap's backtrace.
    if grep -q "Fatal error\|Program crashed" "$log"; then crashes=$((crashes + 1)); note+=" CRASH"; fi
    # Whatever the fault, nothing of the job may outlive it.
    sleep 1
    left="$(job_pids)"
    if [ -n "$left" ]; then leftovers=$((leftovers + 1)); note+=" LEFTOVER pids $(echo $left)"; kill -KILL $left 2>/dev/null || true; fi
    case "$kind" in
        disk-full) rm -f "$run/.chaos-filler" ;;
        cut) DDP_NETNS_PREFIX=$prefix "$here/netns-cluster.sh" restore "$victim" >/dev/null ;;
    esac
    latest="$(check_latest)" || { invalid=$((invalid + 1)); }
    message="$(grep -m1 -E "^error|noticed that process|ORTE was|No space|could not" "$log" | cut -c1-100 || true)"
    printf 'fault %2d/%d  %-11s %s at %.1f s into run %d (%s): ended after %s s, exit %s%s; latest: %s%s\n' \
        "$f" "$faults" "$kind" "$what" "$(awk -v ms="$delay_ms" 'BEGIN { print ms / 1000 }')" "$segment" "$resumed" \
        "$took" "$status" "${tmp_left:+, $tmp_left}" "$latest" "$note"
    [ -z "$message" ] || echo "           message: $message"
    count[$kind]=$((${count[$kind]:-0} + 1))
    worst[$kind]="$(awk -v a="${worst[$kind]:-0}" -v b="$took" 'BEGIN { print (b > a ? b : a) }')"
    [ "$completed" = no ] || break
done

# ---- the run completes ---------------------------------------------------------------------------
attempts=0
while [ "$completed" = no ] && [ $attempts -lt 3 ]; do
    attempts=$((attempts + 1)); segment=$((segment + 1))
    log="$work/logs/run-$segment.log"
    launch "$log" "${args[@]}"
    if wait "$job" && grep -q "^wrote .*model.safetensors" "$log"; then
        completed=yes
        echo "chaos: run $segment $(sed -n 's/^resumed from .*global step \([0-9]*\).*/resumed from step \1/p' "$log" | head -1) and completed"
    else
        echo "chaos: run $segment did not complete (log: $log)"
    fi
done

identical=no
if [ "$completed" = yes ] && cmp -s "$run/model.safetensors" "$reference/model.safetensors"; then identical=yes; fi

echo "chaos: summary: $injected fault(s) injected in $segment run(s); hangs $hangs, crashes $crashes, leftover processes $leftovers, invalid latest $invalid, other failures $failures"
for k in "${!count[@]}"; do echo "chaos:   $k: ${count[$k]} fault(s), longest fault-to-end ${worst[$k]} s"; done | sort
if [ "$identical" = yes ]; then
    echo "chaos: final weights bit-identical to the uninterrupted run"
else
    echo "chaos: final weights NOT identical to the uninterrupted run (or the run never completed)"
fi
[ "$completed" = yes ] && [ "$identical" = yes ] && [ $hangs = 0 ] && [ $crashes = 0 ] && [ $leftovers = 0 ] && [ $invalid = 0 ] && [ $failures = 0 ]
