#!/usr/bin/env bash
# ddptrain against its peers, back to back on this machine (it is shared: numbers measured at
# different times are not comparable). ddptrain runs before and after the peers, so drift shows.
# Usage: bench/compare.sh [OUT]   (default bench/results/<date>.txt); needs a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-bench/results/$(date -u +%Y-%m-%dT%H%M).txt}"
mkdir -p "$(dirname "$out")"
B=.build/release/ddptrain
ours() {
    for model in tf-tutorial keras-cnn; do
        echo "== ddptrain bench --model $model (1 rank x 2 threads)"
        $B bench --model "$model" --batch-size 64 --steps 20 --repeats 7 | grep -E "images/s|peak memory"
        echo "== ddptrain bench --model $model (2 ranks x 1 thread, global batch 64)"
        cluster/ddprun -n 2 $B bench --model "$model" --batch-size 64 --steps 20 --repeats 7 --threads 1 | grep -E "images/s|scaling efficiency|all-reduce of"
    done
}
{
    echo "date: $(date -u)"
    echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'); AVX-512: $(grep -q avx512f /proc/cpuinfo && echo yes || echo no); load: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "--- ddptrain (before the peers)"
    ours
    echo "--- peers"
    TORCH_PASSIVE=1 bench/peers/run_peers.sh 2>&1 | sed -n '/== summary/,/^params/p'
    echo "--- ddptrain (after the peers)"
    ours
    echo "finished: $(date -u); load: $(cut -d' ' -f1-3 /proc/loadavg)"
} 2>&1 | tee "$out"
