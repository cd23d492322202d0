#!/usr/bin/python3
"""Plots a `qbench train` log (CSV): training loss (smoothed), held-out loss, and the periodic
held-out accuracies, against the step. Usage: scripts/plot_training.py LOG.csv OUT.png"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    log, out = sys.argv[1], sys.argv[2]
    steps, loss, ev_steps, heldout = [], [], [], []
    acc = {"add2_em": [], "add3_em": [], "sub3_em": [], "reply_select_acc": []}
    try:
        with open(log, newline="") as f:
            for row in csv.DictReader(f):
                steps.append(int(row["step"]))
                loss.append(float(row["loss"]))
                if row.get("heldout_loss"):
                    ev_steps.append(int(row["step"]))
                    heldout.append(float(row["heldout_loss"]))
                    for k in acc:
                        acc[k].append(float(row[k]))
    except (OSError, KeyError, ValueError) as e:
        print(f"plot_training: {log}: {e}", file=sys.stderr)
        return 2
    if not steps:
        print(f"plot_training: {log}: no rows", file=sys.stderr)
        return 2
    window = 50
    smooth = [sum(loss[max(0, i - window + 1): i + 1]) / (i - max(0, i - window + 1) + 1) for i in range(len(loss))]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    a1.plot(steps, smooth, label=f"training loss ({window}-step mean)")
    a1.plot(ev_steps, heldout, "o-", ms=3, label="held-out loss")
    a1.set_xlabel("step")
    a1.set_ylabel("cross-entropy (nats per token)")
    a1.set_yscale("log")
    a1.legend()
    a1.grid(alpha=0.3)
    for k, v in acc.items():
        a2.plot(ev_steps, v, "o-", ms=3, label=k)
    a2.set_xlabel("step")
    a2.set_ylabel("held-out accuracy (60 items each)")
    a2.set_ylim(-0.02, 1.02)
    a2.legend()
    a2.grid(alpha=0.3)
    fig.suptitle("qbench default model training")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
