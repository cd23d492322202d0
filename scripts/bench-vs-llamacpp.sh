#!/usr/bin/env bash
# qbench's and llama.cpp's prefill/decode speed on the same bytes, side by side (docs/kernels.md,
# "Side by side with llama.cpp"). For each type, the random-weight model of a published shape is
# written once as a GGUF (`qbench bench --shape SHAPE --scheme S --save FILE`); then, round after
# round, llama-bench and `qbench bench --model FILE` measure that file one after the other (the
# order alternates between rounds), so both see the same machine state. Prints a Markdown table:
# per-round medians of tokens/s, and qbench / llama.cpp as the median of the per-round ratios
# with their min-max spread. Needs python3 (JSON parsing) and a built qbench.
#
# Usage: scripts/bench-vs-llamacpp.sh [--types "F16 Q8_0 Q4_0 Q4_K_M"] [--shape tinyllama-1.1b]
#          [--threads 2] [--rounds 2] [--reps 3] [-p 128] [-n 32] [--out DIR | --keep]
# llama-bench: $QBENCH_LLAMA_BENCH, else ../shared/tools/llama.cpp/llama-bench beside the checkout.
# qbench: $QBENCH_BINARY, else build/harness/qbench. The machine should be otherwise idle: each
# model is measured 2 x rounds times; the default (4 types, TinyLlama shape) takes several minutes.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
me="bench-vs-llamacpp"
types="F16 Q8_0 Q4_0 Q4_K_M"
shape="tinyllama-1.1b"
threads=2
rounds=2
reps=3
prefill=128
decode=32
out=""
keep=0

usage() {  # the comment block above
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}
die() {  # one line, exit 2: bad input or a missing tool
  echo "$me: $*" >&2
  exit 2
}
fail() {  # one line, exit 1: a program failed
  echo "$me: $*" >&2
  exit 1
}
need_value() { [ $# -ge 2 ] && [ -n "$2" ] || die "option $1 needs a value"; }
positive() { [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive integer, got '$2'"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --types) need_value "$@"; types="${2//,/ }"; shift 2 ;;
    --shape) need_value "$@"; shape="$2"; shift 2 ;;
    --threads|-t) need_value "$@"; positive "$1" "$2"; threads="$2"; shift 2 ;;
    --rounds) need_value "$@"; positive "$1" "$2"; rounds="$2"; shift 2 ;;
    --reps|-r) need_value "$@"; positive "$1" "$2"; reps="$2"; shift 2 ;;
    --prefill|-p) need_value "$@"; positive "$1" "$2"; prefill="$2"; shift 2 ;;
    --decode|-n) need_value "$@"; positive "$1" "$2"; decode="$2"; shift 2 ;;
    --out) need_value "$@"; out="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option '$1' (--help lists them)" ;;
  esac
done
[ -n "${types// /}" ] || die "--types lists no type"

llama_bench="${QBENCH_LLAMA_BENCH:-$root/../shared/tools/llama.cpp/llama-bench}"
[ -x "$llama_bench" ] || die "llama-bench not found at $llama_bench (set QBENCH_LLAMA_BENCH to llama.cpp's llama-bench)"
qbench="${QBENCH_BINARY:-$root/build/harness/qbench}"
[ -x "$qbench" ] || die "qbench not found at $qbench (build it: scripts/setup.sh, or set QBENCH_BINARY)"
command -v python3 >/dev/null || die "python3 is needed to read the JSON of both programs"

if [ -n "$out" ]; then
  mkdir -p "$out" || die "cannot create --out $out"
  dir="$(cd "$out" && pwd)"
else
  dir="$(mktemp -d "${TMPDIR:-/tmp}/bench-vs-llamacpp.XXXXXX")"
  if [ "$keep" = 0 ]; then
    trap 'rm -rf "$dir"' EXIT
  fi
fi

# GGUF file type -> qbench scheme: llama.cpp's mixes (Q4_K_M, Q5_K_S, ...) as written, the others
# in lower case (f16, q8_0, q4_0, q4_K = llama-quantize's file type of that name).
scheme_of() {
  case "$1" in
    *_[Kk]_[SsMmLl]) echo "$1" ;;
    *) echo "$1" | tr '[:upper:]' '[:lower:]' ;;
  esac
}

load() { cut -d' ' -f1-3 /proc/loadavg; }
echo "$me: shape $shape, types $types, $threads threads, $rounds rounds of -p $prefill -n $decode x $reps reps; files in $dir" >&2
echo "$me: load average at start $(load)" >&2
if awk -v l="$(cut -d' ' -f1 /proc/loadavg)" 'BEGIN { exit !(l > 0.5) }'; then
  echo "$me: warning: the machine is busy; llama-bench's spinning worker threads suffer more from other processes" \
       "than qbench's, so rounds measured now may be far off (see the ratios' min-max)" >&2
fi
for type in $types; do
  file="$dir/$shape-$type.gguf"
  [ -s "$file" ] && continue
  echo "$me: writing $file" >&2
  "$qbench" bench --shape "$shape" --scheme "$(scheme_of "$type")" --threads "$threads" --save "$file" >&2 \
    || fail "qbench could not write $shape as $type (scheme $(scheme_of "$type"); its message is above)"
done

run_llama() {  # type round
  local f="$dir/$shape-$1.gguf" o="$dir/llama-$1-r$2.json"
  "$llama_bench" -m "$f" -t "$threads" -p "$prefill" -n "$decode" -r "$reps" -o json >"$o" 2>"$o.log" \
    || fail "llama-bench failed on $f (log: $o.log; --keep keeps it)"
}
run_qbench() {  # type round
  local f="$dir/$shape-$1.gguf" o="$dir/qbench-$1-r$2.json"
  "$qbench" bench --model "$f" --threads "$threads" --prefill "$prefill" --decode "$decode" --reps "$reps" --json \
    >"$o" 2>"$o.log" || fail "qbench bench failed on $f (log: $o.log; --keep keeps it)"
}
for round in $(seq 1 "$rounds"); do
  for type in $types; do
    echo "$me: round $round/$rounds, $type" >&2
    if [ $((round % 2)) = 1 ]; then
      run_llama "$type" "$round"; run_qbench "$type" "$round"
    else
      run_qbench "$type" "$round"; run_llama "$type" "$round"
    fi
  done
done
echo "$me: load average at end $(load)" >&2

python3 - "$dir" "$shape" "$rounds" "$threads" "$prefill" "$decode" "$reps" $types <<'PY'
import json, statistics, sys

d, shape, rounds, threads, prefill, decode, reps = sys.argv[1:8]
types, rounds = sys.argv[8:], int(rounds)

def median(v):
    return statistics.median(v) if v else float("nan")

def llama(t, r):
    """Median tokens/s of llama-bench's pp and tg tests (its samples_ts)."""
    tests = json.load(open(f"{d}/llama-{t}-r{r}.json"))
    pp = [x for x in tests if x.get("n_prompt", 0) > 0 and x.get("n_gen", 0) == 0]
    tg = [x for x in tests if x.get("n_gen", 0) > 0 and x.get("n_prompt", 0) == 0]
    if not pp or not tg:
        sys.exit(f"bench-vs-llamacpp: {d}/llama-{t}-r{r}.json lacks a pp or tg test")
    pick = lambda x: median(x.get("samples_ts") or [x["avg_ts"]])
    return pick(pp[0]), pick(tg[0]), tests[0].get("build_commit", "?"), tests[0].get("cpu_info", "?")

def qbench(t, r):
    j = json.load(open(f"{d}/qbench-{t}-r{r}.json"))
    s = j["speed"]
    frac = (j.get("decode_bandwidth") or {}).get("fraction_of_read_bandwidth")
    bw = (j.get("read_bandwidth") or {}).get("best_gb_per_s")
    return (s["prefill"]["tokens_per_second_median"], s["decode"]["tokens_per_second_median"], frac, bw,
            j.get("simd_path", "?"))

def rates(v):
    return " / ".join(f"{x:.2f}" for x in v)

def ratio(q, l):
    rs = [a / b for a, b in zip(q, l) if b > 0]
    if not rs:
        return "-"
    return f"{median(rs):.2f}x ({min(rs):.2f}-{max(rs):.2f})"

rows, commit, cpu, simd, bws = [], "?", "?", "?", []
for t in types:
    L = [llama(t, r) for r in range(1, rounds + 1)]
    Q = [qbench(t, r) for r in range(1, rounds + 1)]
    commit, cpu, simd = L[0][2], L[0][3], Q[0][4]
    fr = [q[2] for q in Q if q[2] is not None]
    bws += [q[3] for q in Q if q[3] is not None]
    rows.append([t, rates([l[0] for l in L]), rates([l[1] for l in L]), rates([q[0] for q in Q]), rates([q[1] for q in Q]),
                 ratio([q[0] for q in Q], [l[0] for l in L]), ratio([q[1] for q in Q], [l[1] for l in L]),
                 f"{100 * median(fr):.0f}%" if fr else "-"])

print(f"{shape} (random weights, the same GGUF file for both), {threads} threads, pp{prefill} / tg{decode}, "
      f"{reps} reps per round, {rounds} rounds; llama.cpp build {commit}, qbench simd path {simd}; CPU {cpu}"
      + (f"; read bandwidth {min(bws):.1f}-{max(bws):.1f} GB/s" if bws else ""))
print()
print(f"| type | llama.cpp pp{prefill} t/s | llama.cpp tg{decode} t/s | qbench pp{prefill} t/s | qbench tg{decode} t/s "
      "| prefill qbench/llama.cpp | decode qbench/llama.cpp | qbench decode % of bandwidth |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for r in rows:
    print("| " + " | ".join(r) + " |")
print()
print("t/s: median of each round's repetitions, rounds separated by /; ratios: median of the per-round ratios "
      "(min-max); % of bandwidth: weights read per decoded token x tokens/s over qbench's read-bandwidth probe, "
      "median over rounds.")
PY
if [ "$keep" = 1 ] || [ -n "$out" ]; then echo "$me: files kept in $dir" >&2; fi
