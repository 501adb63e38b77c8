#!/usr/bin/env bash
# ddptrain against its peers, back to back on this machine (it is shared: numbers measured at
# different times are not comparable). ddptrain runs before and after the peers, so drift shows.
# Usage: bench/compare.sh [OUT]   (default bench/results/<date>.txt); needs a release build.
#
#   MODELS="resnet20 vgg11" bench/compare.sh OUT   # models (default: tf-tutorial keras-cnn);
#                                                  # any of the zoo, see bench/peers/README.md
#   AVX2=1 bench/compare.sh OUT                    # AVX2 only: DDPTRAIN_KERNELS=avx2 for
#                                                  # ddptrain, ONEDNN_MAX_CPU_ISA=AVX2 etc.
#                                                  # for the peers (no-op without AVX-512)
#   QUICK=1 bench/compare.sh OUT                   # smoke test of the whole script
#
# Peers: PyTorch eager, TensorFlow tf.function with oneDNN on and off, PyTorch DDP gloo 2x1
# (bench/peers/run_peers.sh), batch 64, 2 threads, SGD momentum training step.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-bench/results/$(date -u +%Y-%m-%dT%H%M).txt}"
mkdir -p "$(dirname "$out")"
B=.build/release/ddptrain
MODELS="${MODELS:-tf-tutorial keras-cnn}"
AVX2="${AVX2:-0}"
QUICK="${QUICK:-0}"
export MODELS AVX2 QUICK
if [ ! -x "$B" ]; then
    echo "no $B: build it first (swift build -c release)" >&2
    exit 1
fi
if [ "$AVX2" = 1 ]; then
    export DDPTRAIN_KERNELS=avx2
else
    unset DDPTRAIN_KERNELS
fi

# Steps per timed window, by model cost (forward multiply-adds per image: lenet5 0.65 M,
# tf-tutorial 4.5 M, keras-cnn 21 M, resnet20 41 M, alexnet 66 M, resnet56 126 M, vgg11 152 M),
# so each model's 7 windows take about as long.
ddp_steps() {
    if [ "$QUICK" = 1 ]; then echo 2; return; fi
    case "$1" in
        vgg11|resnet56) echo 5 ;;
        resnet20|alexnet) echo 10 ;;
        *) echo 20 ;;
    esac
}
REPEATS=7
[ "$QUICK" = 1 ] && REPEATS=2

ours() {
    for model in $MODELS; do
        local steps; steps="$(ddp_steps "$model")"
        echo "== ddptrain bench --model $model (1 rank x 2 threads)${DDPTRAIN_KERNELS:+ DDPTRAIN_KERNELS=$DDPTRAIN_KERNELS}"
        $B bench --model "$model" --batch-size 64 --steps "$steps" --repeats $REPEATS | grep -E "images/s|peak memory"
        echo "== ddptrain bench --model $model (2 ranks x 1 thread, global batch 64)${DDPTRAIN_KERNELS:+ DDPTRAIN_KERNELS=$DDPTRAIN_KERNELS}"
        cluster/ddprun -n 2 $B bench --model "$model" --batch-size 64 --steps "$steps" --repeats $REPEATS --threads 1 | grep -E "images/s|scaling efficiency|all-reduce of"
    done
}
{
    echo "date: $(date -u)"
    echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), family $(lscpu | sed -n 's/^CPU family: *//p') model $(lscpu | sed -n 's/^Model: *//p'); AVX-512: $(grep -q avx512f /proc/cpuinfo && echo yes || echo no); avx512_bf16: $(grep -q avx512_bf16 /proc/cpuinfo && echo yes || echo no); load: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "models: $MODELS"
    if [ "$AVX2" = 1 ]; then
        echo "AVX2 only: DDPTRAIN_KERNELS=avx2; peers ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2$(grep -q avx512f /proc/cpuinfo || echo ' (no AVX-512 on this CPU: same as without)')"
    fi
    echo "--- ddptrain (before the peers)"
    ours
    echo "--- peers"
    TORCH_PASSIVE=1 bench/peers/run_peers.sh 2>&1 | sed -n '/^ISA cap:/p; /== summary/,/^params/p; /^FAILED/p' ||
        echo "!!! bench/peers/run_peers.sh failed (rows above marked FAILED, if any)"
    echo "--- ddptrain (after the peers)"
    ours
    echo "finished: $(date -u); load: $(cut -d' ' -f1-3 /proc/loadavg)"
} 2>&1 | tee "$out"
