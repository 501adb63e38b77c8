#!/usr/bin/env bash
# The main job: install what is missing, build, and train with 4 ranks.
# Extra arguments go to ddptrain, e.g. ./train.sh --model keras-cnn --epochs 5
# Ranks: RANKS=2 ./train.sh
set -euo pipefail
cd "$(dirname "$0")"
scripts/install-deps.sh
swift build -c release
data_args=()
case " $* " in
    *" --data "*) ;;
    *)
        if [ -n "${CIFAR10_DIR:-}" ] || [ -f data/cifar-10-batches-bin/data_batch_1.bin ]; then
            : # ddptrain finds it by itself
        elif [ -f ../shared/cifar10-sample/data_batch_1.bin ]; then
            data_args=(--data ../shared/cifar10-sample)
        else
            if [ ! -f data/synthetic/data_batch_1.bin ]; then
                echo "no CIFAR-10 found (see README: cluster/fetch-cifar10.sh); making a synthetic set in data/synthetic"
                .build/release/ddptrain synth --out data/synthetic
            fi
            data_args=(--data data/synthetic)
        fi
        ;;
esac
exec cluster/ddprun -n "${RANKS:-4}" .build/release/ddptrain "${data_args[@]}" "$@"
