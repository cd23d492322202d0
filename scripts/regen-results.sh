#!/usr/bin/env bash
# Regenerates the committed results from the current build, so that every number under results/
# and in README.md's result tables is what the current code measures:
#   results/default/      the main job (experiments/default.json) and its plots
#   results/all-schemes/  every registered scheme (experiments/all-schemes.json) and its plots
#   results/baselines/    the tiny baseline of the compare tests (QBENCH_UPDATE_BASELINES=1)
# Then prints the summary tables to paste into README.md (tests/harness/test_docs.cc checks them).
# Run it on an idle machine: the speed columns are measured. Takes about 3 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
qbench=build/harness/qbench
cmake --build build -j"${QBENCH_JOBS:-2}" >/dev/null
for name in default all-schemes; do
  rm -rf "results/$name/$name.json" "results/$name/$name.items"
  "$qbench" run --config "experiments/$name.json" --out "results/$name/$name.json" --quiet
  /usr/bin/python3 scripts/plot.py "results/$name/$name.json" --out "results/$name/"
done
rm -f results/*/*.json.lock
QBENCH_UPDATE_BASELINES=1 build/tests/test_run --gtest_filter=Run.CompareAgainstStoredBaseline >/dev/null
rm -f results/baselines/*.json.lock
for name in default all-schemes; do
  echo "<!-- qbench report results/$name/$name.json --summary -->"
  "$qbench" report "results/$name/$name.json" --summary
  echo "<!-- end -->"
done
