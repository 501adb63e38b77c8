#!/usr/bin/env bash
# All tests: unit tests of every layer and module, and multi-rank tests under real mpirun.
# The multi-rank tests run the release binary, so it is built first.
set -euo pipefail
cd "$(dirname "$0")"
scripts/install-deps.sh --tests
swift build -c release
swift test -c release --disable-xctest "$@"
