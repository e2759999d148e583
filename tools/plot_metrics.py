#!/usr/bin/env python3
"""Curves of one or several training runs from their metrics.jsonl, to a PNG.

    tools/plot_metrics.py RUN [RUN ...] [-k loss,mIoU] [-o curves.png] [--smooth 0.6]

RUN is a work_dir or its metrics.jsonl; a run's label is its folder name. Each
key gets one panel (default: loss and mIoU, the keys the trainer always
writes), with one line per run over the iteration. Training lines and
evaluation lines share the file: a key is drawn from the lines that have it.
--smooth applies TensorBoard's exponential moving average to the training keys
(the raw curve stays, faint). Needs matplotlib (tools/setup.sh --python).
"""
import argparse
import json
import math
import os
import sys


def load(run):
    path = os.path.join(run, "metrics.jsonl") if os.path.isdir(run) else run
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                # a run killed mid-write leaves a last partial line: skip it, say so
                print(f"plot_metrics: {path}:{n}: skipped a line that is not JSON ({e.msg})",
                      file=sys.stderr)
    label = os.path.basename(os.path.dirname(os.path.abspath(path)))
    return label, path, rows


def series(rows, key):
    pts = [(r["iteration"], r[key]) for r in rows
           if "iteration" in r and isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    return [p[0] for p in pts], [p[1] for p in pts]


def ema(values, weight):
    out, last = [], None
    for v in values:
        last = v if last is None else last * weight + (1 - weight) * v
        out.append(last)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", help="work_dir or metrics.jsonl, one or more")
    ap.add_argument("-k", "--keys", default="loss,mIoU", help="comma-separated keys (default loss,mIoU)")
    ap.add_argument("-o", "--out", default="curves.png")
    ap.add_argument("--smooth", type=float, default=0.0, help="EMA weight in [0, 1) for training keys")
    a = ap.parse_args()
    if not 0 <= a.smooth < 1:
        sys.exit("plot_metrics: --smooth takes a weight in [0, 1), e.g. 0.6")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("plot_metrics: needs matplotlib (tools/setup.sh --python installs python3-matplotlib)")
    runs = []
    for r in a.runs:
        try:
            runs.append(load(r))
        except OSError as e:
            sys.exit(f"plot_metrics: cannot read {r}: {e.strerror}; pass a work_dir or its metrics.jsonl")
    keys = [k for k in a.keys.split(",") if k]
    fig, axes = plt.subplots(len(keys), 1, figsize=(8, 3 * len(keys)), squeeze=False)
    drawn = 0
    for ax, key in zip(axes[:, 0], keys):
        for label, _, rows in runs:
            x, y = series(rows, key)
            if not x:
                continue
            eval_key = not any("loss" in r for r in rows if key in r)
            if a.smooth and not eval_key:
                line, = ax.plot(x, y, alpha=0.25)
                ax.plot(x, ema(y, a.smooth), color=line.get_color(), label=label)
            else:
                ax.plot(x, y, marker="o" if eval_key else None, markersize=3, label=label)
            drawn += 1
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, f"no run has '{key}'", transform=ax.transAxes, ha="center", color="gray")
    axes[-1, 0].set_xlabel("iteration")
    if drawn == 0:
        have = sorted({k for _, _, rows in runs for r in rows for k in r if k != "iteration"})
        sys.exit(f"plot_metrics: no run has any of the keys {keys}; they have: {', '.join(have)}")
    fig.tight_layout()
    fig.savefig(a.out, dpi=100)
    print(f"plot_metrics: {drawn} curve(s) of {len(runs)} run(s) -> {a.out}")


if __name__ == "__main__":
    main()
