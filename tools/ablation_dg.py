#!/usr/bin/python3
"""Domain-generalisation ablation on the synthetic benchmark (configs/synthetic_dg.yaml).

Trains on the labelled source domain only and evaluates on domains never seen in
training: the target domain's own look (val) and the weather/light styles of
t2sda_synth --styles (fog, night, snow, storm). Three methods, several seeds each:

    source_only    supervised on source crops
    augmentation   + CE on the stylised source crop (uda.type t2sda_dg with the pull off:
                   uda.t2s.lambda 0, no re-weighting): the style augmentation alone
    t2sda_dg       + the pull of the stylised crop's features to the teacher's source
                   class prototypes, re-weighted by the student's IoU on the stylised crop

All three see exactly the same data, network, schedule and evaluation; only the method
keys differ. Writes results/ablation_dg/ablation_dg.md (mIoU per unseen set and their
mean, mean +- std over seeds), ablation_dg.json (every run's numbers) and
ablation_dg.png (per-set bars with the seeds' spread).

    /usr/bin/python3 tools/ablation_dg.py [--iters 400] [--eval-interval 0] [--seeds 0 1 2]
        [--jobs 9] [--crop 64] [--beta 0.05] [--pseudo-target fourier_source] [--val 60]
        [--out results/ablation_dg] [--build build] [--data datasets/synthetic_dg]
        [--set KEY=VALUE ...] [--report-only]

--set adds config overrides to every run (e.g. a narrower network to fit a time budget);
they are recorded in the table's header. Needs the build (build/bin/t2sda_train,
t2sda_synth) and matplotlib for the plot.
"""
import argparse
import concurrent.futures as cf
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ablation  # noqa: E402  (pyplot(): matplotlib or a note that it is missing)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETS = ["val", "fog_val", "night_val", "snow_val", "storm_val"]


def methods(pseudo_target):
    dg = ["uda.type=t2sda_dg", f"uda.pseudo_target.type={pseudo_target}"]
    return [
        ("source_only", ["uda.type=source_only"]),
        ("augmentation", dg + ["uda.t2s.lambda=0", "uda.reweight.enabled=false"]),
        ("t2sda_dg", dg),
    ]


def synth(build, data, val):
    """Source images and the labelled unseen sets (seed 0 as configs/synthetic_dg.yaml)."""
    if not os.path.exists(os.path.join(data, "storm_val-00000-of-00001.h5")):
        subprocess.run([os.path.join(build, "bin", "t2sda_synth"), data, "--source", "1000", "--target", "0",
                        "--val", str(val), "--size", "96", "96", "--seed", "0", "--styles", "4"], check=True)


def last_eval(metrics):
    """The last evaluation line of a run, or None."""
    rows = [json.loads(l) for l in open(metrics) if '"mIoU"' in l] if os.path.exists(metrics) else []
    return rows[-1] if rows else None


def run(a, name, seed, extra):
    wd = os.path.join(a.out, "runs", f"{name}_seed{seed}")
    metrics = os.path.join(wd, "metrics.jsonl")
    if a.report_only:
        return evals(metrics)
    row = last_eval(metrics)
    if row is None or row["iteration"] < a.iters:
        sets = "[" + ", ".join(f"{{name: {s}, shards: [{a.data}/{s}-*.h5]}}" for s in SETS) + "]"
        cmd = [os.path.join(a.build, "bin", "t2sda_train"), os.path.join(ROOT, "configs", "synthetic_dg.yaml"),
               "--quiet", f"seed={seed}", f"work_dir={wd}", f"runner.max_iters={a.iters}",
               f"evaluation.interval={a.eval_interval or a.iters}", "checkpoint.interval=0",
               f"data.source.shards={a.data}/source-*.h5", f"data.val_sets={sets}",
               f"uda.pseudo_target.beta={a.beta}", f"data.crop=[{a.crop},{a.crop}]"] + a.set + extra
        subprocess.run(["rm", "-rf", wd], check=True)
        os.makedirs(os.path.dirname(wd), exist_ok=True)
        t0 = time.time()
        with open(wd + ".log", "w") as log:
            subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT,
                           env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
        print(f"  {name:14s} seed {seed}: {time.time() - t0:.0f} s", flush=True)
        row = last_eval(metrics)
    return evals(metrics)


def evals(metrics):
    """{iteration: {set: mIoU %}} of every evaluation of a run."""
    rows = [json.loads(l) for l in open(metrics) if '"mIoU"' in l] if os.path.exists(metrics) else []
    return {r["iteration"]: {s: 100.0 * r[f"mIoU.{s}"] for s in SETS} for r in rows}


def mean_sd(v):
    return statistics.mean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)


def table(a, names, res):
    head = (f"Synthetic DG benchmark (t2sda_synth 96x96, 11 classes, --styles 4, {a.val} images per set): "
            f"trained on the source domain only, {a.reported} of {a.iters} iterations, batch 2, crop {a.crop}x{a.crop}, "
            f"pseudo_target {a.pseudo_target} (beta {a.beta}), seeds {', '.join(map(str, a.seeds))}"
            + (f", overrides {' '.join(a.set)}" if a.set else "") + ". mIoU (%) on each unseen set, "
            "mean +- std over seeds; 'mean' is the mean over the five sets.")
    lines = [head, "", "| method | " + " | ".join(SETS) + " | mean |", "|---" * (len(SETS) + 2) + "|"]
    summary = {}
    for n in names:
        cells, summary[n] = [], {}
        for s in SETS + ["mean"]:
            v = [r[s] if s != "mean" else statistics.mean(r[x] for x in SETS) for r in res[n]]
            m, sd = mean_sd(v)
            summary[n][s] = {"mean": m, "std": sd, "per_seed": v}
            cells.append(f"{m:.2f} ± {sd:.2f}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n", summary


def plot(a, names, summary):
    plt = ablation.pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(8, 4.5))
    cols = SETS + ["mean"]
    w = 0.8 / len(names)
    for k, n in enumerate(names):
        xs = [i + (k - (len(names) - 1) / 2) * w for i in range(len(cols))]
        ax.bar(xs, [summary[n][c]["mean"] for c in cols], w, yerr=[summary[n][c]["std"] for c in cols],
               capsize=3, label=n)
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels(cols)
    ax.set_ylabel("mIoU (%)")
    ax.set_title(f"Synthetic DG: source-only training, unseen sets ({len(a.seeds)} seeds, mean ± std)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(a.out, "ablation_dg.png"), dpi=120)
    print("wrote", os.path.join(a.out, "ablation_dg.png"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=400)
    ap.add_argument("--eval-interval", type=int, default=0, help="0 = evaluate at the end only")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=9, help="runs in parallel")
    ap.add_argument("--pseudo-target", default="fourier_source")
    ap.add_argument("--crop", type=int, default=64, help="training crop (square) from the 96x96 scenes")
    ap.add_argument("--beta", type=float, default=0.05, help="FDA square: b = floor(beta x crop), 3 at 64")
    ap.add_argument("--report-only", action="store_true",
                    help="no training: the table from the runs' evaluations at the last iteration all share")
    ap.add_argument("--val", type=int, default=60, help="images per unseen set")
    ap.add_argument("--set", nargs="*", default=[], help="KEY=VALUE overrides for every run")
    ap.add_argument("--out", default=os.path.join(ROOT, "results", "ablation_dg"))
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--data", default=os.path.join(ROOT, "datasets", "synthetic_dg"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    synth(a.build, a.data, a.val)
    meth = methods(a.pseudo_target)
    t0 = time.time()
    with cf.ThreadPoolExecutor(max_workers=a.jobs) as ex:
        jobs = {(n, s): ex.submit(run, a, n, s, extra) for n, extra in meth for s in a.seeds}
        runs = {k: f.result() for k, f in jobs.items()}
    names = [n for n, _ in meth]
    # the last iteration every run has evaluated (the end, unless --report-only cut it short)
    common = set.intersection(*(set(r) for r in runs.values()))
    if not common:
        sys.exit("no evaluation iteration common to all runs")
    a.reported = max(common)
    runs = {k: {"iteration": a.reported, **r[a.reported]} for k, r in runs.items()}
    res = {n: [runs[(n, s)] for s in a.seeds] for n in names}
    text, summary = table(a, names, res)
    text += f"\nCommand: /usr/bin/python3 tools/ablation_dg.py {' '.join(sys.argv[1:])} ({time.time() - t0:.0f} s)\n"
    open(os.path.join(a.out, "ablation_dg.md"), "w").write(text)
    json.dump({"sets": SETS, "iters": a.iters, "reported_iteration": a.reported, "crop": a.crop, "seeds": a.seeds, "overrides": a.set,
               "pseudo_target": a.pseudo_target, "beta": a.beta, "summary": summary,
               "runs": {f"{n}|{s}": runs[(n, s)] for n, s in runs}},
              open(os.path.join(a.out, "ablation_dg.json"), "w"), indent=1)
    print(text)
    plot(a, names, summary)


if __name__ == "__main__":
    main()
