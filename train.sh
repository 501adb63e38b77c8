#!/usr/bin/env bash
# The main job: install what is missing, build, and train with 4 ranks.
# Extra arguments go to ddptrain, e.g. ./train.sh --model keras-cnn --epochs 5
# Ranks: RANKS=2 ./train.sh
set -euo pipefail
cd "$(dirname "$0")"
scripts/install-deps.sh
swift build -c release
# The data, in this order: --data; $CIFAR10_DIR; data/cifar-10-batches-bin; CIFAR-10 downloaded
# (checksum verified) into data/; the real 5,085-image sample in ../shared; a synthetic set.
# One line says which and why.
data_args=()
case " $* " in
    *" --data "*) ;;
    *)
        if [ -n "${CIFAR10_DIR:-}" ]; then
            echo "train.sh: training on \$CIFAR10_DIR ($CIFAR10_DIR)"
        elif [ -f data/cifar-10-batches-bin/data_batch_1.bin ]; then
            echo "train.sh: training on CIFAR-10 in data/cifar-10-batches-bin"
        elif echo "train.sh: no CIFAR-10 in data/; downloading it (cluster/fetch-cifar10.sh, 163 MB)..." &&
             cluster/fetch-cifar10.sh data >/dev/null 2>&1; then
            echo "train.sh: training on CIFAR-10, downloaded and checksum-verified into data/cifar-10-batches-bin"
        elif [ -f ../shared/cifar10-sample/data_batch_1.bin ]; then
            echo "train.sh: training on the 5,085-image real sample in ../shared/cifar10-sample (the download failed: no network?)"
            data_args=(--data ../shared/cifar10-sample)
        else
            echo "train.sh: training on a synthetic set in data/synthetic, not real images (the download failed: no network?, and there is no ../shared/cifar10-sample)"
            [ -f data/synthetic/data_batch_1.bin ] || .build/release/ddptrain synth --out data/synthetic
            data_args=(--data data/synthetic)
        fi
        ;;
esac
exec cluster/ddprun -n "${RANKS:-4}" .build/release/ddptrain "${data_args[@]}" "$@"
