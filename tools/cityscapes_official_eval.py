#!/usr/bin/env python3
"""Runs the official Cityscapes evaluator on t2sda_eval --format cityscapes output.

  cityscapes_official_eval.py CITYSCAPES_ROOT RESULTS_DIR EXPORT_DIR [OURS.json]

CITYSCAPES_ROOT holds gtFine/val/<city>/*_gtFine_labelIds.png (and *_instanceIds.png,
which the script opens for its instance-level scores); RESULTS_DIR the label-id PNGs
that `t2sda_eval CONFIG --checkpoint CK --format cityscapes --out-dir RESULTS_DIR`
wrote. The evaluator is cityscapesscripts' evalPixelLevelSemanticLabeling (PyPI
`cityscapesscripts`), run unchanged as its own main with CITYSCAPES_DATASET,
CITYSCAPES_RESULTS and CITYSCAPES_EXPORT_DIR set; it writes
EXPORT_DIR/resultPixelLevelSemanticLabeling.json. One shim: NumPy 2.4 removed
np.in1d, which cityscapesscripts (up to 2.3) still calls; it is aliased to np.isin,
its documented replacement with the same results.

With OURS.json (t2sda_eval's metrics file) the per-class IoU of both are compared
and the process exits 1 when mIoU ("averageScoreClasses") or any class IoU differ
by more than 1e-3. Both count the same pixels only when the shards were imported at
the source resolution (t2sda_eval's metrics use the shard's labels; see
docs/datasets.md "Official Cityscapes results"). Exit 77: cityscapesscripts missing.
"""
import json
import math
import os
import runpy
import sys

TOL = 1e-3


def run_official(root, results, export):
    os.environ["CITYSCAPES_DATASET"] = root
    os.environ["CITYSCAPES_RESULTS"] = results
    os.makedirs(export, exist_ok=True)
    os.environ["CITYSCAPES_EXPORT_DIR"] = export
    import numpy as np
    if not hasattr(np, "in1d"):
        np.in1d = np.isin
    saved = sys.argv
    sys.argv = ["evalPixelLevelSemanticLabeling"]
    try:
        runpy.run_module("cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling",
                         run_name="__main__")
    finally:
        sys.argv = saved
    with open(os.path.join(export, "resultPixelLevelSemanticLabeling.json")) as f:
        return json.load(f)


def same(a, b):
    a = float("nan") if a is None else float(a)
    b = float("nan") if b is None else float(b)
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= TOL


def compare(official, ours_path):
    with open(ours_path) as f:
        ours = json.load(f)
    bad = []
    if not same(official["averageScoreClasses"], ours["mIoU"]):
        bad.append("mIoU: official %r, t2sda_eval %r" % (official["averageScoreClasses"], ours["mIoU"]))
    for name, iou in official["classScores"].items():
        if not same(iou, ours.get("IoU." + name)):
            bad.append("IoU.%s: official %r, t2sda_eval %r" % (name, iou, ours.get("IoU." + name)))
    print("official mIoU (classes average) %.6f, t2sda_eval mIoU %s" %
          (official["averageScoreClasses"], ours["mIoU"]))
    if bad:
        print("MISMATCH: " + "; ".join(bad))
        return 1
    evaluated = [n for n in official["classScores"] if "IoU." + n in ours]
    print("official evaluator and t2sda_eval agree on mIoU and the IoU of all %d classes (to %g)"
          % (len(evaluated), TOL))
    return 0


def main(argv):
    if len(argv) not in (4, 5):
        print(__doc__)
        return 2
    try:
        import cityscapesscripts  # noqa: F401
    except ImportError:
        print("cityscapesscripts is not installed (python3 -m pip install cityscapesscripts)")
        return 77
    official = run_official(*argv[1:4])
    if len(argv) == 5:
        return compare(official, argv[4])
    print("official mIoU (classes average) %.6f" % official["averageScoreClasses"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
