#!/usr/bin/env bash
# Run every peer benchmark (PyTorch eager, TensorFlow tf.function with oneDNN on and off,
# PyTorch DDP gloo 2x1) on the chosen models, batch 64, 2 cores; print a summary table and
# the JSON lines. About 3.5-4 minutes per model on a 2-core machine.
#
#   bench/peers/run_peers.sh                 # full run, tf-tutorial and keras-cnn
#   QUICK=1 bench/peers/run_peers.sh         # smoke test: tiny windows, 2 repeats
#   TORCH_PASSIVE=0 bench/peers/run_peers.sh # skip the extra OMP_WAIT_POLICY=PASSIVE row
#   MODELS="resnet20 vgg11" bench/peers/run_peers.sh
#   AVX2=1 bench/peers/run_peers.sh          # cap the peers at AVX2 (see below)
#
# MODELS: any of tf-tutorial keras-cnn lenet5 alexnet vgg11 resnet20 resnet56 (the ddptrain
# zoo, torch_models.py / keras_models.py); default "tf-tutorial keras-cnn".
# AVX2=1 sets ONEDNN_MAX_CPU_ISA=AVX2 (oneDNN in TF and PyTorch), ATEN_CPU_CAPABILITY=avx2
# (PyTorch's own kernels) and MKL_ENABLE_INSTRUCTIONS=AVX2 (PyTorch's BLAS), so an AVX-512
# machine runs the peers as a Zen3 node would (ddptrain's side: DDPTRAIN_KERNELS=avx2, see
# ../compare.sh). TF's non-oneDNN (Eigen) kernels are compiled in and cannot be capped. On
# a CPU without AVX-512 (e.g. this Zen3 machine) it changes nothing.
#
# Steps per window are chosen for ~5-9 s windows on Zen3/Zen4 (2 cores) by model cost;
# override them for every model with TORCH_STEPS, TF1_STEPS, TF0_STEPS, DDP_STEPS, WARMUP,
# or for the two reference models with the older TORCH_S_STEPS, TORCH_M_STEPS, ... below.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv"
PY="$VENV/bin/python"
cd "$HERE"

# --- environment -------------------------------------------------------------------
if [ ! -x "$PY" ]; then
    echo "creating venv at $VENV" >&2
    python3 -m venv "$VENV"
fi
# Quiet when everything is already installed. The CPU-only torch wheel is used when an
# index or find-links dir offers it (pip's config here points find-links at one).
"$PY" -m pip install -q --disable-pip-version-check -r requirements.txt >&2

# Peers run with the machine's defaults, not the OpenBLAS overrides some shells export.
PEER_ENV=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE -u OMP_NUM_THREADS -u OMP_WAIT_POLICY
          -u TF_ENABLE_ONEDNN_OPTS -u ONEDNN_MAX_CPU_ISA -u ATEN_CPU_CAPABILITY
          -u MKL_ENABLE_INSTRUCTIONS PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2)
AVX2="${AVX2:-0}"
if [ "$AVX2" = 1 ]; then
    PEER_ENV+=(ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2)
fi

MODELS="${MODELS:-tf-tutorial keras-cnn}"
KNOWN_MODELS="tf-tutorial keras-cnn lenet5 alexnet vgg11 resnet20 resnet56"
for M in $MODELS; do
    case " $KNOWN_MODELS " in
        *" $M "*) ;;
        *) echo "unknown model '$M' in MODELS (known: $KNOWN_MODELS)" >&2; exit 2 ;;
    esac
done
BATCH=64
THREADS=2
REPEATS="${REPEATS:-5}"
# steps per timed window of the two reference models (the other models: steps_for below)
#                                       S (tf-tutorial)          M (keras-cnn)
TORCH_S_STEPS="${TORCH_S_STEPS:-250}"; TORCH_M_STEPS="${TORCH_M_STEPS:-80}"
TF1_S_STEPS="${TF1_S_STEPS:-450}";     TF1_M_STEPS="${TF1_M_STEPS:-100}"   # oneDNN on
TF0_S_STEPS="${TF0_S_STEPS:-200}";     TF0_M_STEPS="${TF0_M_STEPS:-50}"    # oneDNN off
DDP_S_STEPS="${DDP_S_STEPS:-250}";     DDP_M_STEPS="${DDP_M_STEPS:-60}"
WARM_S=20; WARM_M=10
TORCH_PASSIVE="${TORCH_PASSIVE:-1}"
# A window stops early after CAP seconds (slow phases of the shared host would otherwise
# stretch the run far past its budget); its images/s uses the steps actually done.
CAP="${CAP:-15}"
QUICK="${QUICK:-0}"
if [ "$QUICK" = 1 ]; then
    REPEATS=2; WARM_S=3; WARM_M=2
    TORCH_S_STEPS=10; TORCH_M_STEPS=5; TF1_S_STEPS=10; TF1_M_STEPS=5
    TF0_S_STEPS=10; TF0_M_STEPS=5; DDP_S_STEPS=10; DDP_M_STEPS=5
fi

# steps_for MODEL: sets T (PyTorch eager), F1 (TF oneDNN on), F0 (TF oneDNN off), D (DDP),
# W (warm-up steps). Forward multiply-adds per image: lenet5 0.65 M, tf-tutorial 4.5 M,
# keras-cnn 21 M, resnet20 41 M, alexnet 66 M, resnet56 126 M, vgg11 152 M.
steps_for() {
    case "$1" in
        tf-tutorial|lenet5)
            T=$TORCH_S_STEPS; F1=$TF1_S_STEPS; F0=$TF0_S_STEPS; D=$DDP_S_STEPS; W=$WARM_S ;;
        keras-cnn)
            T=$TORCH_M_STEPS; F1=$TF1_M_STEPS; F0=$TF0_M_STEPS; D=$DDP_M_STEPS; W=$WARM_M ;;
        resnet20|alexnet)
            T=30; F1=40; F0=20; D=25; W=5 ;;
        vgg11|resnet56)
            T=10; F1=14; F0=7; D=8; W=3 ;;
    esac
    if [ "$QUICK" = 1 ]; then
        case "$1" in tf-tutorial|lenet5|keras-cnn) ;; *) T=2; F1=2; F0=2; D=2; W=1 ;; esac
    fi
    T="${TORCH_STEPS:-$T}"; F1="${TF1_STEPS:-$F1}"; F0="${TF0_STEPS:-$F0}"; D="${DDP_STEPS:-$D}"
    W="${WARMUP:-$W}"
}

OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
JSONL="$OUT/results.jsonl"
: > "$JSONL"

# --- header ------------------------------------------------------------------------
CPU="$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)"
if grep -qw avx512f /proc/cpuinfo; then
    AVX512="yes ($(grep -m1 -ow 'avx512_bf16\|avx512_vnni' /proc/cpuinfo | sort -u | tr '\n' ' ')present) -> Zen4-class machine"
else
    AVX512="no (AVX2+FMA only) -> Zen3-class machine"
fi
TF_DEFAULT="$("${PEER_ENV[@]}" TF_CPP_MIN_LOG_LEVEL=3 "$PY" -c \
    'from tensorflow.python.util import _pywrap_util_port as p; print("ON" if p.IsMklEnabled() else "OFF")' 2>/dev/null)"
echo "== ddptrain peer benchmarks =="
echo "date:      $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "host:      $(hostname)  cores: $(nproc)  load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "cpu:       $CPU"
echo "AVX-512:   $AVX512"
echo "python:    $("$PY" -c 'import platform; print(platform.python_version())')"
echo "versions:  $("$PY" -m pip freeze 2>/dev/null | grep -iE '^(torch|tensorflow|keras|numpy)==' | tr '\n' ' ')"
echo "TF oneDNN default on this CPU (TF_ENABLE_ONEDNN_OPTS unset): $TF_DEFAULT"
if [ "$AVX2" = 1 ]; then
    echo "ISA cap:   AVX2=1 -> ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2$(grep -qw avx512f /proc/cpuinfo || echo ' (no AVX-512 here: no effect)')"
else
    echo "ISA cap:   none (each peer uses the best ISA it finds; AVX2=1 caps at AVX2)"
fi
echo "models:    $MODELS"
echo "protocol:  batch $BATCH, $THREADS threads, random CIFAR-shaped data, SGD lr 0.01 momentum 0.9;"
echo "           $REPEATS timed windows per run (each capped at ${CAP}s), median images/s reported"
echo

# run LABEL -- command...   (stdout shown, stderr kept and shown only on failure)
FAILED=()
run() {
    local label="$1"; shift; shift
    echo "--- $label"
    local log="$OUT/stderr.log"
    set +e
    "$@" --json 2>"$log" | tee "$OUT/stdout.log" | grep -v '^JSON '
    local rc=${PIPESTATUS[0]}
    set -e
    if [ "$rc" != 0 ] || ! grep -q '^JSON ' "$OUT/stdout.log"; then
        echo "!!! FAILED (exit $rc): $label"; tail -20 "$log"; FAILED+=("$label")
        return 0
    fi
    grep '^JSON ' "$OUT/stdout.log" | sed 's/^JSON //' |
        "$PY" -c 'import json,sys; r=json.loads(sys.stdin.read()); r["label"]=sys.argv[1]; print(json.dumps(r))' "$label" >> "$JSONL"
}

for M in $MODELS; do
    steps_for "$M"
    run "PyTorch eager" -- "${PEER_ENV[@]}" "$PY" torch_bench.py --model "$M" \
        --batch $BATCH --threads $THREADS --steps "$T" --warmup "$W" --repeats "$REPEATS" --max-window-seconds "$CAP"
    run "TensorFlow tf.function, oneDNN=1" -- "${PEER_ENV[@]}" TF_ENABLE_ONEDNN_OPTS=1 \
        "$PY" tf_bench.py --model "$M" --batch $BATCH --threads $THREADS --steps "$F1" \
        --warmup "$W" --repeats "$REPEATS" --max-window-seconds "$CAP"
    run "TensorFlow tf.function, oneDNN=0" -- "${PEER_ENV[@]}" TF_ENABLE_ONEDNN_OPTS=0 \
        "$PY" tf_bench.py --model "$M" --batch $BATCH --threads $THREADS --steps "$F0" \
        --warmup "$W" --repeats "$REPEATS" --max-window-seconds "$CAP"
    run "PyTorch DDP gloo 2x1" -- "${PEER_ENV[@]}" "$PY" torch_ddp_bench.py --model "$M" \
        --global-batch $BATCH --nproc 2 --threads 1 --steps "$D" --warmup "$W" \
        --repeats "$REPEATS" --max-window-seconds "$CAP"
    if [ "$TORCH_PASSIVE" = 1 ]; then
        run "PyTorch eager, OMP_WAIT_POLICY=PASSIVE" -- "${PEER_ENV[@]}" OMP_WAIT_POLICY=PASSIVE \
            "$PY" torch_bench.py --model "$M" --batch $BATCH --threads $THREADS --steps "$T" \
            --warmup "$W" --repeats "$REPEATS" --max-window-seconds "$CAP"
    fi
done

# --- summary -----------------------------------------------------------------------
echo
echo "== summary: median images/s (batch $BATCH, 2 cores; min-max of the windows)$([ "$AVX2" = 1 ] && echo ', peers capped at AVX2') =="
"$PY" - "$JSONL" "$TF_DEFAULT" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
tf_default = sys.argv[2]
labels, models = [], []
for r in rows:
    if r["label"] not in labels: labels.append(r["label"])
    if r["model"] not in models: models.append(r["model"])
def cell(label, model):
    for r in rows:
        if r["label"] == label and r["model"] == model:
            s = r["samples"]
            return f'{r["images_per_sec_median"]:8.0f} ({min(s):.0f}-{max(s):.0f})'
    return "      n/a"
def name(label):
    if label.startswith("TensorFlow") and label.endswith(f'={1 if tf_default == "ON" else 0}'):
        return label + " [TF default here]"
    return label
w = max([len(name(l)) for l in labels] + [4])
print("| " + "peer".ljust(w) + " | " + " | ".join(f"{m:>22}" for m in models) + " |")
print("|-" + "-" * w + "-|" + "|".join("-" * 24 for _ in models) + "|")
for l in labels:
    print("| " + name(l).ljust(w) + " | " + " | ".join(f"{cell(l, m):>22}" for m in models) + " |")
print()
print("params: " + ", ".join(f'{m} = {next(r["params"] for r in rows if r["model"] == m):,}' for m in models))
EOF
echo
echo "== JSON lines =="
cat "$JSONL"
echo
echo "finished: $(date -u '+%Y-%m-%d %H:%M:%S UTC')  load: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "${#FAILED[@]}" -gt 0 ]; then
    echo "FAILED: ${FAILED[*]}"
    exit 1
fi
