#!/usr/bin/env bash
# All tests: unit tests of every layer and module, and multi-rank tests under real mpirun.
# The multi-rank tests run the release binary, so it is built first, with the tests in the same
# build (a separate `swift build` would be rebuilt for testing by `swift test`).
set -euo pipefail
cd "$(dirname "$0")"
scripts/install-deps.sh --tests
swift build -c release --build-tests --disable-xctest
# Everything the tests and their mpirun jobs write goes to one directory, removed at the end
# even if a test process dies (killed ranks leave Open MPI session directories behind).
TMPDIR=$(mktemp -d "${TMPDIR:-/tmp}/ddptrain-tests.XXXXXX")
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT
swift test -c release --disable-xctest --skip-build "$@"
