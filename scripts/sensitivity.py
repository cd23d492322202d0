#!/usr/bin/python3
"""The default model's first sensitivity table: schemes x (arithmetic exact match, chat reply
selection accuracy, held-out perplexity), each with its standard error, measured with the
qbench binary. Usage: scripts/sensitivity.py MODEL.gguf [--qbench build/harness/qbench] [--limit N]
Prints a Markdown table on stdout; progress on stderr."""
import argparse
import json
import os
import subprocess
import sys
import tempfile

SCHEMES = [
    ("FP32", None),
    ("INT8 per-channel", "rtn:int8,group=channel"),
    ("INT4 group-128", "rtn:int4,group=128"),
    ("INT4 per-tensor", "rtn:int4,group=tensor"),
    ("INT3 group-32", "rtn:int3,group=32"),
]
ARITH = ["add2", "add3", "sub2", "sub3"]


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"sensitivity: {' '.join(cmd)} failed: {r.stderr.strip()}")
    return json.loads(r.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--qbench", default=os.path.join(os.path.dirname(__file__), "..", "build", "harness", "qbench"))
    ap.add_argument("--limit", type=int, default=300)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        text = os.path.join(tmp, "heldout.txt")
        subprocess.run([a.qbench, "datagen", "-g", "story,dialogue", "-n", "400", "--out", text], check=True)
        rows = []
        for name, scheme in SCHEMES:
            print(f"sensitivity: {name}", file=sys.stderr)
            extra = ["--scheme", scheme] if scheme else []
            ev = run([a.qbench, "eval", "--model", a.model, "--tasks", ",".join(ARITH + ["reply_select"]),
                      "--limit", str(a.limit), "--json"] + extra)
            pp = run([a.qbench, "perplexity", "--model", a.model, "--text", text, "--ctx", "128", "--json"] + extra)
            tasks = {t["task"]: t for t in ev["tasks"]}
            # arithmetic: exact match pooled over the four tasks (equal item counts)
            em = [tasks[t]["metrics"]["exact_match"] for t in ARITH]
            mean = sum(m["value"] for m in em) / len(em)
            se = (sum(m["stderr"] ** 2 for m in em)) ** 0.5 / len(em)
            rs = tasks["reply_select"]["metrics"]["acc"]
            bpw = ev["quantization"]["bits_per_weight"] if scheme else 32.0
            rows.append((name, scheme or "-", bpw, mean, se, {t: tasks[t]["metrics"]["exact_match"]["value"] for t in ARITH},
                         rs["value"], rs["stderr"], pp["ppl"], pp["ppl_stderr"]))
    print("| scheme | spec | bits/weight | arithmetic EM | add2 | add3 | sub2 | sub3 | reply selection acc | perplexity |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, spec, bpw, m, se, per, rv, rse, ppl, pse in rows:
        print(f"| {name} | `{spec}` | {bpw:.2f} | {100*m:.1f}% ± {100*se:.1f} | "
              + " | ".join(f"{100*per[t]:.1f}%" for t in ARITH)
              + f" | {100*rv:.1f}% ± {100*rse:.1f} | {ppl:.4f} ± {pse:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
