#!/usr/bin/env bash
# Installs what ddptrain needs beyond Swift: Open MPI (runtime and headers), libpng and
# libjpeg-turbo (headers; `predict` decodes images with them), and for the tests Python's
# safetensors and numpy (to prove Python users can load our checkpoints), Pillow (to write
# the JPEG renderings `predict` is tested on) and onnx and onnxruntime (the ONNX checker and
# runtime the exported models must pass).
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
if [ "${1:-}" = "--tests" ] && ! python3 -c "import safetensors, numpy" 2>/dev/null; then
    echo "installing Python safetensors and numpy (for the checkpoint interoperability test)..."
    python3 -m pip install --quiet --disable-pip-version-check safetensors numpy
fi
if [ "${1:-}" = "--tests" ] && ! python3 -c "import PIL" 2>/dev/null; then
    echo "installing Python Pillow (writes the JPEG test images for predict)..."
    python3 -m pip install --quiet --disable-pip-version-check pillow
fi
if [ "${1:-}" = "--tests" ] && ! python3 -c "import onnx, onnxruntime" 2>/dev/null; then
    echo "installing Python onnx and onnxruntime (for the ONNX export tests)..."
    python3 -m pip install --quiet --disable-pip-version-check onnx onnxruntime
fi
