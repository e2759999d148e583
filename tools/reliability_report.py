#!/usr/bin/env python3
"""Regenerates docs/reliability.md: what every kind of bad input does to t2sda.

Runs each bad-input test of the ctest suite alone, with T2S_ERROR_LOG pointing at
a fresh file (core/status.c appends every error message the libraries and
executables raise), and reads the fuzz summaries tools/fuzz.sh wrote. Per row:

  cases        error messages the test provoked (one per refused input; the
               executables the e2e tests start log theirs too); for a fuzz row,
               the inputs libFuzzer executed
  clear error  of those, messages that name their subject (a file, key, value,
               tensor or rank) and say what is expected or what to do
  crash        the test died on a signal / sanitizer report; fuzz: crashes,
               leaks and out-of-memory inputs in project code (in system
               libraries: the last column)
  hang         the test hit its ctest timeout; fuzz: inputs over 10 s
  data lost    failed checks of a test that verifies earlier outputs survive
               (checkpoints, shards, logs); "-" where a test writes nothing

    tools/reliability_report.py --build build [--fuzz build-fuzz-long] [--tests a,b]
                                [--out docs/reliability.md]
    tools/reliability_report.py --build build --update test_a,test_b

--update reruns only the named tests and keeps every other row of the existing page
as it is (the fuzz rows come from long runs that are not redone for a change to one
test); the page then names the rows rerun and when.
"""
import argparse
import datetime
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

# test -> (category, writes outputs whose survival it checks)
TESTS = [
    ("test_config", "YAML config and command-line overrides", False),
    ("test_checkpoint", "checkpoints (HDF5): truncated, wrong network, interrupted writes", True),
    ("test_shard", "dataset shards (HDF5): attributes, shapes, commit/abort", True),
    ("test_shards_import", "PNG import and label mapping tables", True),
    ("test_convert_safetensors", "pretrained weights: safetensors", False),
    ("test_convert_pth", "pretrained weights: PyTorch .pth (zip + pickle)", False),
    ("test_convert_import", "pretrained weights: name mapping and import", False),
    ("test_convert_mit", "pretrained weights: MiT (SegFormer) import", False),
    ("test_png_limits", "PNG headers claiming huge images", False),
    ("test_eval_errors", "evaluation: bad options, config, checkpoint, shards", False),
    ("test_dist_failure", "distributed runs: a rank killed, hung or failing", False),
    ("test_dist_netns", "distributed faults between hosts (netns)", False),
    ("test_train_dist_e2e", "multi-rank training: differing configs, signals, world-size change", True),
    ("test_train_e2e", "training runs: resume, SIGTERM, NaN, bad keys, missing shards", True),
    ("test_infer", "inference on image folders (t2sda_infer)", True),
    ("test_full_disk", "disk full under a training run (ENOSPC on a checkpoint write)", True),
    ("test_fault_kill", "kill -9 during checkpoint writes (24 rounds), then --resume auto", True),
    ("test_fault_shard", "corrupt shard chunk during training (data.on_corrupt error / skip)", True),
    ("test_fault_mpirun_term", "SIGTERM to mpirun (2 ranks, launch/templates/mpirun_workstation.sh)", True),
]

SUBJECT = re.compile(r"(/|--[a-z][a-z-]+|\.(h5|yaml|yml|pth|png|safetensors|txt|json|jsonl)\b|'[^']+'|\"[^\"]+\"|"
                     r"\b(key|rank|tensor|iteration|line|column|shard|checkpoint|attribute)\b|:\d+)")
NEXT = re.compile(r"(expected|expects|use |set |run |re-?|remove|delete|check|convert|pass |"
                  r"did you mean|must|should|try|give|add |rename|install|lower|raise|increase|"
                  r"reduce|only|allowed|needs?|at most|at least|between|one of|instead|write|indent|drop|"
                  r"replace|choose|fix|regenerate|re-export|make|do not|outside)", re.I)


def clear(msg):
    return bool(SUBJECT.search(msg)) and bool(NEXT.search(msg))


def normalise(msg, build):
    """Paths of this machine and mkdtemp names out, so that the page changes only
    when the behaviour does."""
    msg = msg.replace(os.path.abspath(build), "BUILD").replace(os.getcwd(), "SRC")
    return re.sub(r"(_test_|_work_|tmp)[A-Za-z0-9]{6}\b", r"\1XXXXXX", msg)


def run_test(build, name, timeout_pad=60):
    log = tempfile.NamedTemporaryFile(prefix=f"t2s_errlog_{name}_", delete=False).name
    env = dict(os.environ, T2S_ERROR_LOG=log)
    p = subprocess.run(["ctest", "--test-dir", build, "-R", f"^{name}$", "--output-on-failure"],
                       env=env, capture_output=True, text=True, errors="replace")
    out = p.stdout + p.stderr
    if re.search(r"No tests were found", out):
        os.unlink(log)
        return None
    status = "passed"
    if "***Timeout" in out:
        status = "timeout"
    elif re.search(r"(SEGFAULT|Exception|Child aborted|Subprocess aborted|AddressSanitizer|"
                   r"runtime error:)", out):
        status = "crash"
    elif "***Skipped" in out or "Not Run" in out:
        status = "skipped"
    elif p.returncode != 0:
        status = "failed"
    failed = re.search(r"(\d+) check\(s\) failed", out)
    msgs = []
    if os.path.exists(log):
        with open(log, errors="replace") as f:
            msgs = [normalise(l.rstrip("\n").split("\t", 1)[-1], build) for l in f if l.strip()]
        os.unlink(log)
    return {"status": status, "failed_checks": int(failed.group(1)) if failed else 0,
            "messages": msgs, "output": out[-3000:]}


def fuzz_rows(fuzz_dir):
    rows = []
    for path in sorted(glob.glob(os.path.join(fuzz_dir, "fuzz-*.json"))):
        with open(path) as f:
            s = json.load(f)
        arts = s.get("artifacts", [])
        ours = [a for a in arts if a["in"] in ("ours", "unknown")]
        third = [a for a in arts if a not in ours]
        rows.append({"target": s["target"], "seconds": s["seconds"], "execs": s.get("execs", 0),
                     "cov": s.get("cov", 0), "ft": s.get("ft", 0),
                     "crash": sum(a["kind"] != "timeout" for a in ours),
                     "hang": sum(a["kind"] == "timeout" for a in ours), "third": third})
    return rows


def table(results, fuzz):
    lines = ["| category | test | result | cases | clear error | crash | hang | data lost |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for name, cat, keeps in TESTS:
        r = results.get(name)
        if r is None:
            continue
        n = len(set(r["messages"]))
        c = len({m for m in r["messages"] if clear(m)})
        crash = 1 if r["status"] == "crash" else 0
        hang = 1 if r["status"] == "timeout" else 0
        lost = (str(r["failed_checks"]) if r["status"] == "failed" else "0") if keeps else "-"
        lines.append(f"| {cat} | `{name}` | {r['status']} | {n} | {c} | {crash} | {hang} | {lost} |")
    for f in fuzz:
        libs = sum(t["in"] != "not reproduced" for t in f["third"])
        result = "passed" if not (f["crash"] or f["hang"]) else "FAILED"
        if libs:
            result += f", {libs} in libhdf5" if all(t["in"] in ("libhdf5", "not reproduced")
                                                    for t in f["third"]) else f", {libs} in libraries"
        lines.append(f"| fuzzing `{f['target']}` ({f['seconds']:.0f} s) | `fuzz_{f['target']}` | "
                     f"{result} | {f['execs']} inputs | n/a | {f['crash']} | {f['hang']} | - |")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--fuzz", default=None, help="directory with fuzz-*.json (tools/fuzz.sh)")
    ap.add_argument("--tests", default=None, help="comma-separated subset of the tests")
    ap.add_argument("--out", default="docs/reliability.md")
    ap.add_argument("--update", default=None, metavar="a,b",
                    help="rerun only these tests; keep the other rows of --out")
    a = ap.parse_args()
    if a.update and (a.tests or a.fuzz):
        ap.error("--update reruns the named tests only: leave out --tests and --fuzz")
    known = {name for name, _, _ in TESTS}
    wanted = set((a.update or a.tests).split(",")) if (a.update or a.tests) else None
    if wanted and wanted - known:
        ap.error(f"unknown test(s) {', '.join(sorted(wanted - known))}; known: {', '.join(sorted(known))}")
    old = None
    if a.update:
        if not os.path.exists(a.out):
            ap.error(f"--update needs the existing page {a.out} (generate it first without --update)")
        with open(a.out) as f:
            old = parse_page(f.read())
    results = {}
    for name, _, _ in TESTS:
        if wanted and name not in wanted:
            continue
        print(f"reliability: running {name}", file=sys.stderr, flush=True)
        r = run_test(a.build, name)
        if r is not None:
            results[name] = r
    fuzz = fuzz_rows(a.fuzz) if a.fuzz else []
    write(a, results, fuzz, old)
    bad = [n for n, r in results.items() if r["status"] not in ("passed", "skipped")]
    bad += [f"fuzz_{f['target']}" for f in fuzz if f["crash"] or f["hang"]]
    if bad:
        print("reliability: not clean: " + ", ".join(bad), file=sys.stderr)
    return 1 if bad else 0


UPDATED = re.compile(r"Rows rerun since with `--update`: (.*)\.$")


def parse_page(text):
    """What --update keeps of an existing page: the generation line, the table rows by
    test name, the sections that come from the fuzz runs, and the unclear messages."""
    lines = text.split("\n")
    page = {"generated": None, "updated": {}, "rows": {}, "sections": {}, "unclear": {}}
    section = None
    for line in lines:
        if line.startswith("Generated ") and page["generated"] is None:
            page["generated"] = line
        m = UPDATED.match(line)
        if m:
            for name, when in re.findall(r"`([^`]+)` \(([^)]+)\)", m.group(1)):
                page["updated"][name] = when
        if line.startswith("## "):
            section = line[3:]
            if section in ("Findings outside project code", "Fuzzing coverage"):
                page["sections"][section] = []
        if section in page["sections"]:
            page["sections"][section].append(line)
        elif section is None and line.startswith("| ") and "| `" in line:
            name = line.split("|")[2].strip().strip("`")  # the test column
            page["rows"][name] = line
        elif section == "Messages graded unclear" and line.startswith("- `"):
            page["unclear"].setdefault(line.split("`")[1], []).append(line)
    for sec in page["sections"].values():  # the blank line before the next section
        while sec and sec[-1] == "":
            sec.pop()
    return page


def write(a, results, fuzz, old=None):
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    generated = (f"Generated {when} by `tools/reliability_report.py --build {a.build}"
                 + (f" --fuzz {a.fuzz}" if a.fuzz else "") + "` from the tests below, each run alone ")
    if old and old["generated"]:
        generated = old["generated"].split("from the tests below, each run alone ")[0] + \
            "from the tests below, each run alone "
    out = ["# Reliability: what bad input does", "",
           "<!-- generated by tools/reliability_report.py; do not edit by hand -->", "",
           generated +
           "through ctest with `T2S_ERROR_LOG` set, so that every error message the libraries "
           "and the executables raised while it ran is counted (core/status.c), and from the "
           "fuzz summaries of `tools/fuzz.sh`.", "",
           "- **cases**: distinct error messages the test provoked, one per refused bad input "
           "(fuzz rows: inputs executed). Only messages made with the libraries' error type "
           "count: a usage error an executable prints itself, or a rank killed outright, is "
           "checked by its test but not counted here.",
           "- **clear error**: of those, the messages that name their subject (a file, key, "
           "value, tensor or rank) *and* say what is expected or what to do next.",
           "- **crash** / **hang**: the test died on a signal or sanitizer report / hit its "
           "ctest timeout; fuzz rows: inputs that crash, leak, exhaust memory or run over 10 s "
           "in project code.",
           "- **data lost**: failed checks of a test that verifies earlier outputs survive the "
           "failure (`-`: the test writes nothing that could be lost).", ""]
    if old:
        updated = dict(old["updated"], **{n: when for n in results})
        order = [n for n, _, _ in TESTS if n in updated]
        out += ["Rows rerun since with `--update`: "
                + ", ".join(f"`{n}` ({updated[n]})" for n in order) + ".", ""]
    rows = table(results, fuzz)
    if old:  # the rows of tests not rerun, and the fuzz rows, as they were
        new_rows = {r.split("|")[2].strip().strip("`"): r for r in rows[2:]}
        rows = rows[:2] + [new_rows.get(n) or old["rows"][n] for n, _, _ in TESTS
                           if n in new_rows or n in old["rows"]]
        rows += [r for n, r in old["rows"].items() if n.startswith("fuzz_")]
    out += rows
    third = [(f["target"], t) for f in fuzz for t in f["third"]]
    if old:
        for name in ("Findings outside project code", "Fuzzing coverage"):
            if name in old["sections"]:
                out += [""] + old["sections"][name]
    elif third:
        out += ["", "## Findings outside project code", "",
                "Inputs the fuzzers saved whose fault lies in a library t2sda calls, not in "
                "project code (first stack frame outside the sanitizer runtime, "
                "tools/fuzz_triage.py), and inputs that fork mode saved but that pass when "
                "replayed alone. Every library finding is in libhdf5 (Debian's 1.10.8) while it "
                "parses a damaged file's own structure (object headers, the global heap of "
                "variable-length strings, the metadata cache), below any check t2sda can make "
                "first: such a shard or checkpoint is already corrupt (t2sda writes both through "
                "a temporary name and a rename, so its own crashes do not leave one), but reading "
                "it can crash, hang or exhaust memory instead of being refused. Remedies: a "
                "libhdf5 with these faults fixed, or reading untrusted HDF5 files in a child "
                "process; neither is done yet.", "",
                "| harness | kind | what | where | inputs |", "|---|---|---|---|---:|"]
        counts = {}
        for tgt, t in third:
            what = re.sub(r" on address.*| 0x[0-9a-f]+.*|after \d+ seconds", "", t["what"]).strip()
            key = (tgt, t["kind"], what, t["in"], t["frame"])
            counts[key] = counts.get(key, 0) + 1
        for (tgt, kind, what, lib, frame), n in counts.items():
            where = f"{lib} `{frame}`" if frame else lib
            out.append(f"| `fuzz_{tgt}` | {kind} | {what} | {where} | {n} |")
    if fuzz and not old:
        out += ["", "## Fuzzing coverage", "", "| harness | seconds | inputs | cov | features |",
                "|---|---:|---:|---:|---:|"]
        out += [f"| `fuzz_{f['target']}` | {f['seconds']:.0f} | {f['execs']} | {f['cov']} | {f['ft']} |"
                for f in fuzz]
        out += ["", "`cov` counts the instrumented edges of project code reached (system "
                "libraries are not instrumented)."]
    unclear = sorted({(n, m) for n, r in results.items() for m in r["messages"] if not clear(m)})
    out += ["", "## Messages graded unclear", "",
            "Every message counted above that names no subject or gives no next step, to fix "
            "or to recognise as a false negative of the grading:", ""]
    shown = {}
    for n, m in unclear:  # at most 12 per test: byte-flip tests raise hundreds of variants
        shown.setdefault(n, []).append(m)
    listed = []
    for n, ms in shown.items():
        listed += [f"- `{n}`: {m[:300].replace('|', '/')}" for m in ms[:12]]
        if len(ms) > 12:
            listed.append(f"- `{n}`: ... and {len(ms) - 12} more of the same kinds")
    if old:  # by test name as always: the kept tests' lines as they were, the rerun tests' anew
        mine = {}
        for line in listed:
            mine.setdefault(line.split("`")[1], []).append(line)
        kept = {n: ls for n, ls in old["unclear"].items() if n not in results}
        merged = dict(kept, **mine)
        listed = [l for n in sorted(merged) for l in merged[n]]
    out += listed or ["- none"]
    out += ["", "## Regenerating", "",
            "    cmake -S . -B build -DT2S_WERROR=ON && cmake --build build -j",
            "    tools/fuzz.sh -t 240 && tools/reliability_report.py --build build --fuzz build-fuzz", "",
            "After a change that touches a few tests, rerun only those and keep the other rows "
            "(the fuzz rows come from long runs):", "",
            "    tools/reliability_report.py --build build --update test_fault_kill,test_train_e2e", "",
            "The fault-injection rows (`test_full_disk`, `test_fault_kill`, `test_fault_shard`, "
            "`test_fault_mpirun_term`, ctest label `fault`) run the real "
            "executables: a full tmpfs under a checkpoint write, 24 `kill -9` at seeded random "
            "moments (most inside a checkpoint write) each followed by `--resume auto`, a flipped "
            "byte inside a shard chunk met during training, and SIGTERM to a 2-rank mpirun job. "
            "Their \"data lost\" counts failed checks that earlier checkpoints, metrics lines and "
            "logs survived intact.", "",
            "The table is only as good as the tests behind it: a category with few cases has few "
            "bad-input tests, and the grading of messages is a pattern match (the last section "
            "lists every message it found wanting)."]
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"reliability: wrote {a.out}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
