#!/usr/bin/env bash
# Builds if needed and runs every test through ctest. Non-zero exit on any failure.
# Tests that read ../shared find it through QBENCH_SHARED (default: ../shared beside the
# checkout); when CI=true a missing shared file is a failure, elsewhere the test is skipped and
# a summary line at the end says how many were.
set -euo pipefail
cd "$(dirname "$0")/.."
QBENCH_SHARED=${QBENCH_SHARED:-../shared}
# ctest runs tests from build/: make the path absolute.
if [ -d "$QBENCH_SHARED" ]; then QBENCH_SHARED=$(cd "$QBENCH_SHARED" && pwd); fi
export QBENCH_SHARED
jobs=${QBENCH_JOBS:-2}
dir=build
[ -f "$dir/CMakeCache.txt" ] || cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release
cmake --build "$dir" -j"$jobs"
rc=0
ctest --test-dir "$dir" --output-on-failure -j"$jobs" "$@" || rc=$?
# Every test skipped for a missing shared file says so with this marker (tests/test_util.h).
log="$dir/Testing/Temporary/LastTest.log"
if [ -f "$log" ]; then
  skipped=$(grep -c '\[oracle test skipped\]' "$log" || true)
  if [ "$skipped" -gt 0 ]; then
    echo "test.sh: $skipped oracle tests SKIPPED: shared files not found under QBENCH_SHARED=$QBENCH_SHARED" \
      "(put the shared folder beside the checkout or set QBENCH_SHARED; CI=true makes this a failure)"
  fi
fi
exit "$rc"
