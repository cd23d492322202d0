#!/usr/bin/python3
"""Plots of a qbench results file (qbench run; schema in results/SCHEMA.md).

usage: scripts/plot.py RESULTS.json --out DIR   (Debian's /usr/bin/python3 with python3-matplotlib)

Writes, as PNG and PDF:
  pareto.{png,pdf}       bits per weight (x) vs perplexity (y), one point per scheme, point area
                         proportional to decode tokens/s, error bars = perplexity stderr;
  degradation.{png,pdf}  quality as % of the baseline run for the math and chat suites
                         (grouped bars per scheme, error bars = stderr of the %);
  qat.{png,pdf}          only for files with qat:... schemes: mean KL divergence (log scale) per
                         integer format, one bar per method (rtn, gptq, awq, and qat by its start),
                         error bars = its stderr.
Exit status 2 on a file that is not a qbench results document.
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        sys.exit(f"plot.py: error: {path}: {e}")
    if doc.get("schema") != "qbench.results" or doc.get("schema_version") != 2:
        print(f"plot.py: error: {path}: not a qbench results file of schema version 2", file=sys.stderr)
        sys.exit(2)
    return doc


def ok_result(run, unit):
    u = run.get("units", {}).get(unit)
    return u["result"] if u and u.get("status") == "ok" else None


def save(fig, out, name):
    for ext in ("png", "pdf"):
        fig.savefig(os.path.join(out, f"{name}.{ext}"), dpi=150, bbox_inches="tight")
    plt.close(fig)


def pareto(doc, out):
    rows = {r["scheme_canonical"]: r for r in doc["relative"]["rows"]}
    xs, ys, es, sizes, labels = [], [], [], [], []
    for run in doc["runs"]:
        ppl = ok_result(run, "perplexity")
        mem = run.get("memory")
        if ppl is None or not mem:
            continue
        tps = rows.get(run["scheme_canonical"], {}).get("tokens_per_second", {}).get("decode")
        xs.append(mem["bits_per_weight"])
        ys.append(ppl["ppl"])
        es.append(ppl["ppl_stderr"])
        sizes.append(tps)
        labels.append(run["scheme"])
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    known = [s for s in sizes if s]
    top = max(known) if known else 1.0
    area = [40 + 360 * (s / top) if s else 40 for s in sizes]
    ax.errorbar(xs, ys, yerr=es, fmt="none", ecolor="0.6", zorder=1)
    ax.scatter(xs, ys, s=area, alpha=0.7, zorder=2)
    for x, y, label in zip(xs, ys, labels):
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xlabel("bits per weight (scales included)")
    ax.set_ylabel("perplexity (lower is better)")
    ax.set_title(f"{doc['model'].get('name', '')}: size vs quality (area: decode tokens/s)")
    ax.grid(alpha=0.3)
    save(fig, out, "pareto")


def degradation(doc, out):
    suites = doc["meta"]["experiment"].get("suites", [])
    rows = [r for r in doc["relative"]["rows"] if r.get("status") != "failed"]
    fig, ax = plt.subplots(figsize=(max(6.4, 0.9 * len(rows) + 2), 4.4))
    width = 0.8 / max(1, len(suites))
    for k, suite in enumerate(suites):
        vals, errs = [], []
        for r in rows:
            e = r["quality"].get("suites", {}).get(suite, {})
            vals.append(e.get("pct") if e.get("pct") is not None else 0.0)
            errs.append(e.get("pct_stderr") if e.get("pct_stderr") is not None else 0.0)
        pos = [i + (k - (len(suites) - 1) / 2) * width for i in range(len(rows))]
        ax.bar(pos, vals, width, yerr=errs, capsize=3, label=suite)
    ax.axhline(100, color="0.3", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r["scheme"] for r in rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"quality, % of {doc['relative'].get('baseline')}")
    ax.set_title("degradation by suite (missing bar: baseline score is 0)")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    save(fig, out, "degradation")


def scheme_options(canonical):
    """('rtn', {'bits': '4', 'group': '128', ...}) from a canonical spec 'rtn:int4,group=128,...'."""
    method, _, rest = canonical.partition(":")
    opts = {}
    for i, part in enumerate(rest.split(",") if rest else []):
        if i == 0 and part.startswith("int"):
            opts["bits"] = part[3:]
        elif "=" in part:
            k, _, v = part.partition("=")
            opts[k] = v
    return method, opts


def qat(doc, out):
    """KLD per integer format and method; False when the file has no qat run."""
    bars = {}  # format label -> method label -> (kld, stderr)
    formats, methods = [], []
    for run in doc["runs"]:
        method, o = scheme_options(run["scheme_canonical"])
        kl = ok_result(run, "kl")
        if method not in ("rtn", "gptq", "awq", "qat") or "bits" not in o or kl is None:
            continue
        group = o.get("group", "")
        fmt = f"int{o['bits']} " + (f"g{group}" if group.isdigit() else group)
        fmt += "" if o.get("sym", "true") == "true" else " asym"
        label = f"qat from {o['init']}" if method == "qat" else method
        if fmt not in formats:
            formats.append(fmt)
        if label not in methods:
            methods.append(label)
        bars.setdefault(fmt, {})[label] = (kl["kld_mean"], kl["kld_stderr"])
    if not any(m.startswith("qat") for m in methods):
        return False
    fig, ax = plt.subplots(figsize=(max(6.4, 1.6 * len(formats) + 2), 4.4))
    width = 0.8 / len(methods)
    for k, m in enumerate(methods):
        pos = [i + (k - (len(methods) - 1) / 2) * width for i in range(len(formats))]
        vals = [bars[f].get(m, (0.0, 0.0))[0] for f in formats]
        errs = [bars[f].get(m, (0.0, 0.0))[1] for f in formats]
        ax.bar(pos, vals, width, yerr=errs, capsize=2, label=m)
    ax.set_yscale("log")
    ax.set_xticks(range(len(formats)))
    ax.set_xticklabels(formats)
    ax.set_ylabel(f"mean KL divergence from {doc['relative'].get('baseline') or 'the FP model'} (nats)")
    ax.set_title("post-training quantization vs quantization-aware training")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3, which="both")
    save(fig, out, "qat")
    return True


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results")
    p.add_argument("--out", required=True, help="output folder (created)")
    a = p.parse_args()
    doc = load(a.results)
    os.makedirs(a.out, exist_ok=True)
    pareto(doc, a.out)
    degradation(doc, a.out)
    extra = f" and {a.out}/qat.{{png,pdf}}" if qat(doc, a.out) else ""
    print(f"wrote {a.out}/pareto.{{png,pdf}} and {a.out}/degradation.{{png,pdf}}{extra}")


if __name__ == "__main__":
    main()
