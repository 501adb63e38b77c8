#!/usr/bin/env bash
# Figures for the graceful stop (BENCHMARKS.md, "Graceful stop"), 4 ranks on this machine:
#   bench/stop.sh latency MODEL [REPEATS]   seconds from `kill -TERM <ddprun>` (4 s into training)
#                                           to ddprun's exit, with the step and the stop message
#   bench/stop.sh cost MODEL BASELINE [REPEATS] [STEPS]
#                                           wall time of STEPS steps with BASELINE (a ddptrain
#                                           binary without the per-step stop agreement) and with
#                                           this tree's binary, alternating
# Data: ../shared/cifar10-sample (or $DATA); the model's recipe otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${DATA:-../shared/cifar10-sample}
binary=.build/release/ddptrain
now() { date +%s.%N; }

latency() {
    local model=$1 repeats=${2:-3} dir pid t0 rc
    for i in $(seq "$repeats"); do
        dir=$(mktemp -d)
        cluster/ddprun -n 4 "$binary" --data "$data" --run-dir "$dir/run" --model "$model" --epochs 3 \
            --progress plain --log-every 5 --checkpoint-every 0 >"$dir/out" 2>&1 &
        pid=$!
        for _ in $(seq 1200); do grep -q "^ep " "$dir/out" 2>/dev/null && break; sleep 0.05; done
        sleep 4
        t0=$(now)
        kill -TERM "$pid"
        rc=0; wait "$pid" || rc=$?
        printf '%s run %d: exit %d after %.2f s; %s; last progress: %s\n' "$model" "$i" "$rc" "$(echo "$(now) - $t0" | bc)" \
            "$(grep -o 'stopped on .* at global step [0-9]*' "$dir/out" | grep -v rank | head -1)" "$(grep '^ep ' "$dir/out" | tail -1)"
        rm -rf "$dir"
    done
}

cost() {
    local model=$1 baseline=$2 repeats=${3:-3} steps=${4:-150} dir t0 b
    for i in $(seq "$repeats"); do
        for b in "$baseline" "$binary"; do
            dir=$(mktemp -d)
            t0=$(now)
            cluster/ddprun -n 4 "$b" --data "$data" --run-dir "$dir" --model "$model" --max-steps "$steps" \
                --checkpoint-every 0 --verify-every 0 --progress plain --log-every 100000 >"$dir.out" 2>&1
            printf '%s %s run %d: %.2f s\n' "$model" "$b" "$i" "$(echo "$(now) - $t0" | bc)"
            rm -rf "$dir" "$dir.out"
        done
    done
}

case "${1:-}" in
    latency) shift; latency "$@" ;;
    cost) shift; cost "$@" ;;
    *) echo "usage: bench/stop.sh latency MODEL [REPEATS] | cost MODEL BASELINE [REPEATS] [STEPS]" >&2; exit 64 ;;
esac
