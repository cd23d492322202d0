#!/usr/bin/env bash
# Regenerates the committed results from the current build, so that every number under results/
# and in README.md's result tables is what the current code measures:
#   results/default/      the main job (experiments/default.json) and its plots
#   results/all-schemes/  every registered scheme (experiments/all-schemes.json) and its plots
#   results/baselines/    the tiny baseline of the compare tests (QBENCH_UPDATE_BASELINES=1)
# Then rewrites README.md's result tables (the blocks tests/harness/test_docs.cc checks).
# Run it on an idle machine: the speed columns are measured. Takes about 3 minutes on 2 cores.
#
#   scripts/regen-results.sh [NAME...]   only these experiments (default: default all-schemes);
#       `scripts/regen-results.sh qat` regenerates results/qat/ (QAT beside PTQ, about 30 minutes),
#       `qat-budget` results/qat-budget/ (QAT's steps curve, about 50 minutes), `kv-cache`
#       results/kv-cache/ (the KV cache in llama.cpp's cache types, about 1 minute)
set -euo pipefail
cd "$(dirname "$0")/.."
qbench=build/harness/qbench
cmake --build build -j"${QBENCH_JOBS:-2}" >/dev/null
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(default all-schemes)
for name in "${names[@]}"; do
  rm -rf "results/$name/$name.json" "results/$name/$name.items"
  "$qbench" run --config "experiments/$name.json" --out "results/$name/$name.json" --quiet
  /usr/bin/python3 scripts/plot.py "results/$name/$name.json" --out "results/$name/"
done
rm -f results/*/*.json.lock
QBENCH_UPDATE_BASELINES=1 build/tests/test_run --gtest_filter=Run.CompareAgainstStoredBaseline >/dev/null
rm -f results/baselines/*.json.lock
# README.md's checked blocks (tests/harness/test_docs.cc): the whole summary of each file, or the
# rows a block quotes, as the current report prints them.
/usr/bin/python3 - "$qbench" <<'PY'
import re, subprocess, sys
qbench = sys.argv[1]
text = open("README.md").read()
def report(path):
    return subprocess.run([qbench, "report", path, "--summary"], check=True, capture_output=True, text=True).stdout
def exact(m):
    return m.group(1) + report(m.group(2)) + "<!-- end -->"
text = re.sub(r"(<!-- qbench report (\S+) --summary -->\n)(?:.*?\n)?<!-- end -->", exact, text, flags=re.S)
def rows(m):
    printed = {line.split(" | ")[0]: line for line in report(m.group(2)).splitlines() if line.startswith("| ")}
    body = [printed.get(line.split(" | ")[0], line) for line in m.group(3).splitlines()]
    return m.group(1) + "\n".join(body) + "\n<!-- end -->"
text = re.sub(r"(<!-- rows of: qbench report (\S+) --summary -->\n)(.*?)\n<!-- end -->", rows, text, flags=re.S)
open("README.md", "w").write(text)
PY
echo "regenerated results/ and README.md's result tables; check the prose around them (git diff README.md)"
