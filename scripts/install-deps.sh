#!/usr/bin/env bash
# Installs what ddptrain needs beyond Swift: Open MPI (runtime and headers).
set -euo pipefail
if command -v mpirun >/dev/null 2>&1 && pkg-config --exists ompi-c 2>/dev/null; then
    exit 0
fi
echo "installing Open MPI (libopenmpi-dev, openmpi-bin)..."
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq libopenmpi-dev openmpi-bin pkg-config >/dev/null
