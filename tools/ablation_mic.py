#!/usr/bin/python3
"""MIC ablation on the synthetic domain-shift benchmark (issue 16; docs/method.md step 5b).

Trains dacs, dacs + MIC, t2sda and t2sda + MIC (configs/synthetic_t2sda.yaml with
uda.mic.enabled) for several seeds and reports the final target-val mIoU as mean +- std,
a markdown table, a JSON summary and a plot of mIoU against iteration. --hrda adds the
same four on the HRDA base (model.hrda.enabled=true, the keys of the HRDA work: the flag
only passes that override). Every setting that differs from the shipped config is given
with --set and written into the table's caption, so a reduced run says what it is.

    /usr/bin/python3 tools/ablation_mic.py [--iters 3000] [--seeds 0 1 2] [--jobs 2]
        [--set data.crop=[32,32] ...] [--hrda] [--data datasets/synthetic]
        [--synth "--size 96 96"] [--out results/ablation_mic] [--build build]

The data set is drawn by t2sda_synth into --data on first use with --synth's arguments
(for the small-object variant, e.g. --synth "--size 192 192 --thin" once the generator
has it). Runs whose metrics are complete are reused. Needs the build (build/bin/
t2sda_train, t2sda_synth) and, for the plot, matplotlib (tools/setup.sh --python).
"""
import argparse
import concurrent.futures as cf
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ablation  # noqa: E402  (run(), curve(): one training run and its mIoU curve)

ROOT = ablation.ROOT

METHODS = [
    ("dacs", ["uda.type=dacs"]),
    ("dacs + MIC", ["uda.type=dacs", "uda.mic.enabled=true"]),
    ("t2sda", ["uda.type=t2sda"]),
    ("t2sda + MIC", ["uda.type=t2sda", "uda.mic.enabled=true"]),
]
HRDA = ["model.hrda.enabled=true"]


def methods(hrda):
    out = list(METHODS)
    if hrda:
        out += [(f"HRDA {n}", extra + HRDA) for n, extra in METHODS]
    return out


def synth(build, data, synth_args, seed=0):
    """Draws the benchmark into data unless it is there (1000 source, 1000 target, 200 val)."""
    if os.path.exists(os.path.join(data, "val-00000-of-00001.h5")):
        return
    cmd = [os.path.join(build, "bin", "t2sda_synth"), data, "--source", "1000", "--target", "1000",
           "--val", "200", "--seed", str(seed)] + shlex.split(synth_args)
    print("drawing the data set:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def finished(out, todo, seeds, at):
    """The curves, up to iteration `at`, of the runs evaluated at `at`; a run that did not get
    there (cut short by a deadline) is left out, and each method's row lists its seeds."""
    curves = {}
    for n, _ in todo:
        for seed in seeds:
            p = os.path.join(out, "runs", f"{n.replace(' ', '_').replace('/', '')}_seed{seed}", "metrics.jsonl")
            c = [(i, v) for i, v in ablation.curve(p) if i <= at] if os.path.exists(p) else []
            curves[(n, seed)] = c if c and c[-1][0] == at else []
    if not any(curves.values()):
        sys.exit(f"ablation_mic: no complete run in {out}/runs")
    return curves


def summarise(curves, names, seeds):
    """{method: {mean, std, per_seed, curve}} of the final target-val mIoU (%)."""
    out = {}
    for n in names:
        done = [s for s in seeds if curves[(n, s)]]
        finals = [curves[(n, s)][-1][1] for s in done]
        its = sorted({i for s in done for i, _ in curves[(n, s)]})
        mean_curve = [(i, statistics.mean(v for s in done for i2, v in curves[(n, s)] if i2 == i)) for i in its]
        out[n] = {"mean": statistics.mean(finals) if finals else float("nan"),
                  "std": statistics.stdev(finals) if len(finals) > 1 else 0.0,
                  "seeds": done, "per_seed": finals, "curve": mean_curve}
    return out


def table(summary, caption):
    lines = [caption, "", "| method | mIoU mean | std | per seed |", "| --- | --- | --- | --- |"]
    for n, r in summary.items():
        if not r["seeds"]:
            lines.append(f"| {n} | no run got this far | | |")
            continue
        per_seed = ", ".join(f"{v:.2f} (seed {s})" for s, v in zip(r["seeds"], r["per_seed"]))
        lines.append(f"| {n} | {r['mean']:.2f} | {r['std']:.2f} | {per_seed} |")
    return "\n".join(lines) + "\n"


def plot(summary, out):
    plt = ablation.pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for n, r in summary.items():
        if not r["curve"]:
            continue
        ax.plot([i for i, _ in r["curve"]], [v for _, v in r["curve"]], marker="o", ms=3,
                ls="--" if "MIC" not in n else "-", label=f"{n} ({r['mean']:.1f} +- {r['std']:.1f})")
    ax.set_xlabel("iteration")
    ax.set_ylabel("target val mIoU (%)")
    ax.set_title("MIC ablation, synthetic domain shift (mean over seeds)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = os.path.join(out, "ablation_mic.png")
    fig.savefig(path, dpi=120)
    print("wrote", path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=3000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=2, help="runs in parallel (one core each)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="config overrides for every run (a reduced run says so in the caption)")
    ap.add_argument("--hrda", action="store_true", help="add the HRDA variants (model.hrda.enabled=true)")
    ap.add_argument("--out", default=os.path.join(ROOT, "results", "ablation_mic"))
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--data", default=os.path.join(ROOT, "datasets", "synthetic"))
    ap.add_argument("--synth", default="--size 96 96", help="t2sda_synth arguments when --data is drawn")
    ap.add_argument("--report-only", action="store_true",
                    help="train nothing: tabulate the runs that are complete (a method's row lists its seeds)")
    ap.add_argument("--at", type=int, default=None,
                    help="with --report-only: the mIoU at this evaluated iteration instead of --iters "
                         "(runs stopped before the end; the caption says so)")
    args = ap.parse_args()
    for kv in args.set:
        if "=" not in kv:
            sys.exit(f"ablation_mic: --set '{kv}' is not KEY=VALUE (e.g. --set data.crop=[32,32])")
    os.makedirs(args.out, exist_ok=True)
    if not args.report_only:
        synth(args.build, args.data, args.synth)

    todo = methods(args.hrda)
    t0 = time.time()
    if args.report_only:
        curves = finished(args.out, todo, args.seeds, args.at or args.iters)
    else:
        jobs = {}
        with cf.ThreadPoolExecutor(max_workers=args.jobs) as ex:
            for seed in args.seeds:  # seed-major: a cut-short run still has whole seeds
                for name, extra in todo:
                    jobs[(name, seed)] = ex.submit(ablation.run, args.build, args.out, name, seed, args.iters,
                                                   args.data, extra + args.set)
            curves = {k: f.result() for k, f in jobs.items()}
    wall = time.time() - t0

    names = [n for n, _ in todo]
    summary = summarise(curves, names, args.seeds)
    cmd = "/usr/bin/python3 tools/ablation_mic.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    caption = (f"Synthetic benchmark (t2sda_synth {args.synth}, 11 classes), configs/synthetic_t2sda.yaml "
               f"(ResNet-18 DeepLab-V2) with {' '.join(args.set) if args.set else 'no overrides'}; "
               f"{args.iters} iterations, seeds {', '.join(map(str, args.seeds))}; "
               + (f"target-val mIoU (%) at iteration {args.at} (the runs were stopped there, before the "
                  f"end of their {args.iters}-iteration schedule). " if args.report_only and args.at
                  else "final target-val mIoU (%). ")
               + f"MIC: uda.mic defaults (block 64 at a 512 crop, ratio 0.7, lambda 1). "
               f"Command: `{cmd}`; "
               + ("tabulated from the complete runs." if args.report_only
                  else f"{wall / 60:.0f} min wall on {platform.node()} ({os.cpu_count()} cores)."))
    text = table(summary, caption)
    open(os.path.join(args.out, "ablation_mic.md"), "w").write(text)
    json.dump({"caption": caption, "command": cmd, "iters": args.iters, "seeds": args.seeds, "overrides": args.set,
               "synth": args.synth, "wall_s": wall, "methods": summary},
              open(os.path.join(args.out, "ablation_mic.json"), "w"), indent=1)
    print(text)
    plot(summary, args.out)


if __name__ == "__main__":
    main()
