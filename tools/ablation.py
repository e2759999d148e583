#!/usr/bin/python3
"""Ablation on the synthetic domain-shift benchmark (configs/synthetic_t2sda.yaml).

--bench t2s (default): source only, dacs, t2sda without re-weighting and t2sda for
several seeds, plus a target oracle (the same network trained on labelled target
images) that bounds what adaptation can reach.
--bench hrda: the thin-object variant (t2sda_synth --thin, 192 x 192 scenes, 128 x 128
crops) where poles, signs and lights need high resolution: dacs and t2sda without and
with HRDA (context 0.5, 64 x 64 detail crops), plus the oracle.
Writes a markdown table (mean +- std of the final target mIoU) and a PNG plot of mIoU
against iteration.

    /usr/bin/python3 tools/ablation.py [--bench t2s|hrda] [--iters 3000] [--seeds 0 1 2]
        [--jobs 2] [--out results/ablation] [--build build]

Needs the build (build/bin/t2sda_train, t2sda_synth) and matplotlib
(tools/setup.sh --python installs python3-matplotlib).
"""
import argparse
import concurrent.futures as cf
import json
import math
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

METHODS = [
    ("source only", ["uda.type=source_only"]),
    ("dacs", ["uda.type=dacs"]),
    ("t2sda w/o re-weighting", ["uda.type=t2sda", "uda.reweight.enabled=false"]),
    ("t2sda", ["uda.type=t2sda"]),
]


# HRDA on the thin-object data: context crop 64 of the 128 crop, detail crop 64
HRDA = ["model.hrda.enabled=true", "model.hrda.hr_crop_size=[64,64]", "model.hrda.slide_stride=[32,32]"]

# bench -> (t2sda_synth options, scene size, overrides of every run, methods, data folder)
BENCHES = {
    "t2s": ([], 96, [], METHODS, "synthetic"),
    "hrda": (["--thin"], 192, ["data.crop=[128,128]"],
             [("dacs", ["uda.type=dacs"]),
              ("dacs + HRDA", ["uda.type=dacs"] + HRDA),
              ("t2sda", ["uda.type=t2sda"]),
              ("t2sda + HRDA", ["uda.type=t2sda"] + HRDA)],
             "synthetic_thin192"),
}


def synth(build, data, size, options, seed=0):
    """The demo's data (same arguments as tools/demo.sh; --bench hrda: thin objects at
    192 x 192) and a labelled target set for the oracle, drawn with another seed so it
    never overlaps the validation set."""
    exe = os.path.join(build, "bin", "t2sda_synth")
    if not os.path.exists(os.path.join(data, "val-00000-of-00001.h5")):
        subprocess.run([exe, data, "--source", "1000", "--target", "1000", "--val", "200",
                        "--size", str(size), str(size), "--seed", str(seed)] + options, check=True)
    oracle = data + "_oracle"
    if not os.path.exists(os.path.join(oracle, "val-00000-of-00001.h5")):
        subprocess.run([exe, oracle, "--source", "0", "--target", "0", "--val", "1000",
                        "--size", str(size), str(size), "--seed", str(seed + 100)] + options, check=True)
    return oracle


def pyplot():
    """matplotlib.pyplot on the Agg backend, or None (with a note) where it is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing (tools/setup.sh --python installs it): no plot", file=sys.stderr)
        return None
    return plt


def run(build, out, name, seed, iters, data, extra):
    wd = os.path.join(out, "runs", f"{name.replace(' ', '_').replace('/', '')}_seed{seed}")
    metrics = os.path.join(wd, "metrics.jsonl")
    if not (os.path.exists(metrics) and any('"mIoU"' in l for l in open(metrics))
            and final_iteration(metrics) >= iters):
        cmd = [os.path.join(build, "bin", "t2sda_train"), os.path.join(ROOT, "configs", "synthetic_t2sda.yaml"),
               "--quiet", f"seed={seed}", f"work_dir={wd}", f"runner.max_iters={iters}",
               f"evaluation.interval={max(iters // 10, 1)}", f"checkpoint.interval=0",
               f"data.source.shards={data}/source-*.h5", f"data.target.shards={data}/target-*.h5",
               f"data.val.shards={data}/val-*.h5"] + extra
        if os.path.exists(wd):
            subprocess.run(["rm", "-rf", wd], check=True)
        os.makedirs(os.path.dirname(wd), exist_ok=True)
        t0 = time.time()
        with open(wd + ".log", "w") as log:
            subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT,
                           env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
        print(f"  {name:24s} seed {seed}: {time.time() - t0:.0f} s", flush=True)
    return curve(metrics)


def final_iteration(metrics):
    its = [json.loads(l)["iteration"] for l in open(metrics) if '"mIoU"' in l]
    return max(its) if its else 0


def curve(metrics):
    pts = []
    for line in open(metrics):
        r = json.loads(line)
        if "mIoU" in r and r["mIoU"] is not None:
            pts.append((r["iteration"], 100.0 * r["mIoU"]))
    return sorted(pts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=3000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=2, help="runs in parallel (one core each)")
    ap.add_argument("--out", default=os.path.join(ROOT, "results", "ablation"))
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--bench", choices=sorted(BENCHES), default="t2s")
    ap.add_argument("--data", default=None, help="data folder (default datasets/synthetic, "
                    "datasets/synthetic_thin192 for --bench hrda)")
    args = ap.parse_args()
    synth_options, size, common, methods, folder = BENCHES[args.bench]
    args.data = args.data or os.path.join(ROOT, "datasets", folder)
    os.makedirs(args.out, exist_ok=True)
    oracle = synth(args.build, args.data, size, synth_options)

    jobs = {}
    with cf.ThreadPoolExecutor(max_workers=args.jobs) as ex:
        for name, extra in methods:
            for seed in args.seeds:
                jobs[(name, seed)] = ex.submit(run, args.build, args.out, name, seed, args.iters, args.data,
                                               common + extra)
        for seed in args.seeds:
            # the oracle trains on labelled target images and is evaluated on the same val set
            extra = common + ["uda.type=source_only", f"data.source.shards={oracle}/val-*.h5"]
            jobs[("target oracle", seed)] = ex.submit(run, args.build, args.out, "target oracle", seed,
                                                      args.iters, args.data, extra)
        curves = {k: f.result() for k, f in jobs.items()}

    names = [n for n, _ in methods] + ["target oracle"]
    variant = ", thin objects, 128x128 crops" if args.bench == "hrda" else ""
    lines = [f"Synthetic benchmark (tools/t2sda_synth, {size}x{size}{variant}, 11 classes), "
             f"ResNet-18 DeepLab-V2 (base 16), "
             f"{args.iters} iterations, batch 2+2, seeds {', '.join(map(str, args.seeds))}; "
             f"final target-val mIoU (%).", "",
             "| method | mIoU mean | std | per seed |", "| --- | --- | --- | --- |"]
    summary = {}
    for n in names:
        finals = [curves[(n, s)][-1][1] for s in args.seeds if curves[(n, s)]]
        m = statistics.mean(finals)
        sd = statistics.stdev(finals) if len(finals) > 1 else 0.0
        summary[n] = (m, sd)
        lines.append(f"| {n} | {m:.2f} | {sd:.2f} | {', '.join(f'{v:.2f}' for v in finals)} |")
    table = "\n".join(lines) + "\n"
    open(os.path.join(args.out, "ablation.md"), "w").write(table)
    json.dump({f"{k[0]}|{k[1]}": v for k, v in curves.items()}, open(os.path.join(args.out, "curves.json"), "w"))
    print(table)
    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for n in names:
        its = sorted({i for s in args.seeds for i, _ in curves[(n, s)]})
        mean = [statistics.mean(v for s in args.seeds for i2, v in curves[(n, s)] if i2 == i) for i in its]
        ax.plot(its, mean, marker="o", ms=3, label=f"{n} ({summary[n][0]:.1f})")
    ax.set_xlabel("iteration")
    ax.set_ylabel("target val mIoU (%)")
    ax.set_title(f"{'HRDA' if args.bench == 'hrda' else 'T2S-DA'} ablation, synthetic domain shift "
                 "(mean over seeds)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "ablation.png"), dpi=120)
    print("wrote", os.path.join(args.out, "ablation.png"))


if __name__ == "__main__":
    main()
