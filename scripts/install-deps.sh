#!/usr/bin/env bash
# Installs what ddptrain needs beyond Swift: Open MPI (runtime and headers), libpng and
# libjpeg-turbo (headers; `predict` decodes images with them), and for the tests Python's
# safetensors and numpy (to prove Python users can load our checkpoints), tensorboard (to prove
# TensorBoard reads our event files), Pillow (to write the JPEG renderings `predict` is tested
# on), onnx and onnxruntime (the ONNX checker and runtime the exported models must pass), and
# Slurm with munge (a real one-node cluster for the Slurm tests).
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
if ! command -v mpirun >/dev/null 2>&1 || ! pkg-config --exists ompi-c 2>/dev/null; then
    echo "installing Open MPI (libopenmpi-dev, openmpi-bin)..."
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq libopenmpi-dev openmpi-bin pkg-config >/dev/null
fi
if [ ! -f /usr/include/png.h ] || [ ! -f /usr/include/jpeglib.h ]; then
    echo "installing libpng and libjpeg-turbo headers (libpng-dev, libjpeg-dev)..."
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq libpng-dev libjpeg-dev >/dev/null
fi
# pip_for_tests "MODULES" "PACKAGES" "WHY": installs PACKAGES unless python3 imports MODULES.
pip_for_tests() {
    [ "${tests:-no}" = yes ] || return 0
    python3 -c "import $1" 2>/dev/null && return 0
    echo "installing Python $2 ($3)..."
    # shellcheck disable=SC2086
    python3 -m pip install --quiet --disable-pip-version-check $2
}
tests=no; [ "${1:-}" = "--tests" ] && tests=yes
# The Slurm tests start a one-node cluster of their own (cluster/slurm-local.sh) from Debian's
# packages; installing them starts no daemon here (no systemd), and SlurmTests skip themselves
# with the reason where they are missing or not root.
if [ "$tests" = yes ] && { ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; }; then
    echo "installing Slurm and munge (slurm-wlm, munge) for the Slurm tests..."
    export DEBIAN_FRONTEND=noninteractive
    if $SUDO apt-get update -qq && $SUDO apt-get install -y -qq slurm-wlm munge >/dev/null; then :; else
        echo "warning: could not install slurm-wlm and munge; the Slurm tests will be skipped" >&2
    fi
fi
pip_for_tests "safetensors, numpy" "safetensors numpy" "for the checkpoint interoperability test"
pip_for_tests "tensorboard" "tensorboard" "the tests read our event files with it"
pip_for_tests "PIL" "pillow" "writes the JPEG test images for predict"
pip_for_tests "onnx, onnxruntime" "onnx onnxruntime" "for the ONNX export tests"
