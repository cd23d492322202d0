#!/usr/bin/env bash
# Builds if needed and runs every test through ctest. Non-zero exit on any failure.
# Tests that read ../shared find it through QBENCH_SHARED (default: ../shared beside the
# checkout); when CI=true a missing shared file is a failure, elsewhere the test is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
QBENCH_SHARED=${QBENCH_SHARED:-../shared}
# ctest runs tests from build/: make the path absolute.
if [ -d "$QBENCH_SHARED" ]; then QBENCH_SHARED=$(cd "$QBENCH_SHARED" && pwd); fi
export QBENCH_SHARED
jobs=${QBENCH_JOBS:-2}
[ -f build/CMakeCache.txt ] || cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs" "$@"
