#!/usr/bin/env bash
# Builds if needed and runs the tests through ctest. Non-zero exit on any failure.
#
#   scripts/test.sh [CTEST OPTIONS...]             every test, in build/
#   scripts/test.sh --sanitize [CTEST OPTIONS...]  AddressSanitizer + UndefinedBehaviorSanitizer
#       build in build-asan/ (QBENCH_SANITIZE=ON, -O0 -g1 but -O1 for engine/ and quantizers/,
#       no benchmarks); any report fails the test that triggered it. To fit CI's time it builds
#       and runs the engine, formats and
#       kernels, tasks, quantizer and calibration programs (the fuzz cases are in test_engine)
#       and the build checks, without the full-text perplexity oracle (5+ min under ASan; its
#       12-chunk sibling runs) and its checks of the other file forms (tokenizing the whole text
#       again), the portable-binary check (the Release build runs it on the shipped binary),
#       the llama.cpp-file agreement tests but stories260K F16 and Q8_0
#       (about 8 s each under ASan; the same code paths) and the Llama 3 / Qwen2 tokenizer.json
#       round trips (the other two files run). QBENCH_SANITIZE_ALL=1 builds and runs every test.
#
# Tests that read ../shared find it through QBENCH_SHARED (default: ../shared beside the
# checkout); when CI=true a missing shared file is a failure, elsewhere the test is skipped and
# a summary line at the end says how many were.
set -euo pipefail
cd "$(dirname "$0")/.."
sanitize=0
if [ "${1:-}" = "--sanitize" ]; then
  sanitize=1
  shift
fi
QBENCH_SHARED=${QBENCH_SHARED:-../shared}
# ctest runs tests from the build folder: make the path absolute.
if [ -d "$QBENCH_SHARED" ]; then QBENCH_SHARED=$(cd "$QBENCH_SHARED" && pwd); fi
export QBENCH_SHARED
jobs=${QBENCH_JOBS:-2}

select=()
targets=()
if ((sanitize)); then
  dir=build-asan
  # -O0 -g1 with the engine and quantizers at -O1 (QBENCH_HOT_OPT, CMakeLists.txt): the quickest
  # build + test time; keeps the debug-only checks and line numbers.
  [ -f "$dir/CMakeCache.txt" ] || cmake -G Ninja -S . -B "$dir" -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_CXX_FLAGS_DEBUG="-O0 -g1" -DQBENCH_HOT_OPT=-O1 -DQBENCH_SANITIZE=ON -DQBENCH_BUILD_BENCH=OFF
  # A sanitizer report is an error (exit code != 0) with a stack trace; leaks are reported too.
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  if [ "${QBENCH_SANITIZE_ALL:-0}" != 1 ]; then
    programs=(test_engine test_formats test_tasks test_quantizers test_calib)
    targets=(--target qbench "${programs[@]}")
    select=(-L "^($(IFS='|'; echo "${programs[*]}")|build_checks)\$"
      -E "^Perplexity\.Stories260KOnTinyStoriesAtCtx256|^Stories260K/|^PortableBuild\.|^Files/PerplexityLlamaCppFileTest\..*/(kquant_test|stories260K_Q[45])|^Files/HfToHf\..*/(llama3|qwen2)")
  fi
else
  dir=build
  [ -f "$dir/CMakeCache.txt" ] || cmake -G Ninja -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release
fi
cmake --build "$dir" -j"$jobs" "${targets[@]}"

start=$(date +%s)
rc=0
ctest --test-dir "$dir" --output-on-failure -j"$jobs" "${select[@]}" "$@" || rc=$?
echo "test.sh: ctest in $dir/ took $(($(date +%s) - start)) s"

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
