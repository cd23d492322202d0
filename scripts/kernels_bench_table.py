#!/usr/bin/env python3
# Markdown table of bench_matmul --benchmark_out=FILE.json (docs/kernels.md): kernel vs
# dequantize path per format and shape. Usage: scripts/kernels_bench_table.py FILE.json
import json, re, sys
d = json.load(open(sys.argv[1]))
rows = {}
kernels = {}
# With --benchmark_repetitions, only the median aggregate of each benchmark is used.
has_median = any(b.get("aggregate_name") == "median" for b in d["benchmarks"])
for b in d["benchmarks"]:
    if has_median and b.get("aggregate_name") != "median":
        continue
    k = re.match(r"BM_Kernel/(\w+)/(\w+)/rows:(\d+)/cols:(\d+)/tokens:(\d+)", b["name"])
    if k:
        fmt, isa, r, c, t = k.groups()
        kernels[(fmt, isa, t)] = (b["real_time"], b["weight_GB/s"], b["GFLOP/s"])
        continue
    m = re.match(r"BM_Matmul/(\w+)/(kernel|dequant)/rows:(\d+)/cols:(\d+)/tokens:(\d+)", b["name"])
    if not m:
        continue
    fmt, path, r, c, t = m.groups()
    rows[(fmt, path, r, t)] = (b["real_time"], b["weight_GB/s"], b["GFLOP/s"], b.get("label", ""))
fmts = ["f32","f16","bf16","q8_0","q5_1","q5_0","q4_1","q4_0","q6_K","q5_K","q4_K","q3_K","q2_K"]
if rows:
    base = {}
    for shape in ["2048", "5632"]:
        for t in ["1", "128"]:
            base[(shape, t)] = rows[("f32", "dequant", shape, t)][0]
    print("| format | rows×2048 | tokens | kernel path | ms | weight GB/s | GFLOP/s | dequant+Eigen ms | speed-up vs dequant | vs F32 Eigen |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for t in ["1", "128"]:
        for shape in ["2048", "5632"]:
            for f in fmts:
                k = rows[(f, "kernel", shape, t)]; dq = rows[(f, "dequant", shape, t)]
                print(f"| {f} | {shape} | {t} | {k[3]} | {k[0]:.3f} | {k[1]:.1f} | {k[2]:.1f} | {dq[0]:.3f} | {dq[0]/k[0]:.2f}× | {base[(shape, t)]/k[0]:.2f}× |")
if kernels:
    isas = [i for i in ["scalar", "avx2", "avx512"] if any(k[1] == i for k in kernels)]
    toks = sorted({k[2] for k in kernels}, key=int)
    print("\nOne kernel, one thread, 2048 x 2048 (GFLOP/s; weight GB/s in parentheses):\n")
    print("| format | " + " | ".join(f"{i}, {t} tok" for t in toks for i in isas) + " |")
    print("| --- |" + " --- |" * (len(isas) * len(toks)))
    for f in fmts:
        cells = []
        for t in toks:
            for i in isas:
                v = kernels.get((f, i, t))
                cells.append(f"{v[2]:.1f} ({v[1]:.1f})" if v else "—")
        print(f"| {f} | " + " | ".join(cells) + " |")
ctx = d["context"]
print(f"\n_{ctx['date']}, {ctx['num_cpus']} CPUs at {ctx['mhz_per_cpu']} MHz, kernel ISA {ctx.get('kernel_isa')}, load average at start {ctx.get('load_avg')}" + (", median of repetitions" if has_median else "") + "_")
