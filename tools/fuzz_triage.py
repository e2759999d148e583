#!/usr/bin/env python3
"""Replays the inputs a libFuzzer run saved (crash-*, leak-*, timeout-*, oom-*) and
sorts each by where it fails: in this project's code ("ours") or inside a system
library it calls (libhdf5, libpng, libyaml, zlib), taken from the first stack
frame that is neither the sanitizer/libFuzzer runtime nor libc. Writes one JSON
summary per harness (tools/fuzz.sh calls it; tools/reliability_report.py reads it).

    fuzz_triage.py --binary B --log L --target T --seconds S --out J ARTIFACT...
"""
import argparse
import json
import os
import re
import subprocess
import sys

RUNTIME = re.compile(r"(__interceptor_|__asan|__sanitizer|__ubsan|__lsan|fuzzer::|"
                     r"libc\.so|libstdc\+\+|/sanitizer_common/|_start\b|__libc_start|"
                     r"\bmalloc\b|\bcalloc\b|\brealloc\b|\bfree\b|LLVMFuzzerTestOneInput)")
LIBS = (("libhdf5", "libhdf5"), ("libpng", "libpng"), ("libyaml", "libyaml"), ("libz.so", "zlib"))
FRAME = re.compile(r"^\s+#\d+ 0x[0-9a-f]+ in (\S+) (.*)$|^\s+#\d+ 0x[0-9a-f]+ \((.*)\)")


def first_frame(report, root=os.getcwd()):
    """(library or 'ours', function) of the first frame in project code or in a known
    system library; frames of the sanitizer runtime, libFuzzer and libc (whose
    memcpy a library calls) are passed over."""
    for line in report.splitlines():
        m = FRAME.match(line)
        if not m:
            continue
        func, where = (m.group(1) or "?"), (m.group(2) or m.group(3) or "")
        if RUNTIME.search(func) or RUNTIME.search(where):
            continue
        for needle, lib in LIBS:
            if needle in where:
                return lib, func
        if where.startswith(root + "/"):
            return "ours", f"{func} {os.path.relpath(where.split()[0], root)}"
    return "unknown", ""


def replay(binary, path, kind):
    # max_allocation_size_mb: a huge malloc fails with its stack (not a bare RSS kill)
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:fast_unwind_on_malloc=0:max_allocation_size_mb=2048",
               UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")
    try:
        p = subprocess.run([binary, "-timeout=10", "-rss_limit_mb=2048", path], env=env,
                           capture_output=True, text=True, errors="replace", timeout=120)
        report = p.stdout + p.stderr
        if p.returncode == 0:
            # Fork mode also saves inputs of jobs that died around an input (an empty
            # file, a leak that needs the earlier inputs' state): replayed alone they
            # pass. Listed, not counted as a failure of project code.
            return {"file": path, "kind": kind, "what": "does not reproduce alone",
                    "in": "not reproduced", "frame": ""}
    except subprocess.TimeoutExpired as e:
        report = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else ""
    lib, func = first_frame(report)
    m = re.search(r"ERROR: (?:AddressSanitizer|LeakSanitizer|libFuzzer|UndefinedBehaviorSanitizer)"
                  r": ([\w -]+)", report)
    what = m.group(1).strip() if m else ("runtime error" if "runtime error" in report else kind)
    if "runtime error:" in report and lib == "unknown":
        lib = "ours"
    return {"file": path, "kind": kind, "what": what, "in": lib, "frame": func}


def stats(log):
    """Executions, coverage and features from the last status line of the run."""
    last = {}
    for line in open(log, errors="replace"):
        m = re.match(r"^#(\d+):?\s+(?:\w+\s+)?cov: (\d+) ft: (\d+) corp: (\d+)", line)
        if m:
            last = {"execs": int(m.group(1)), "cov": int(m.group(2)), "ft": int(m.group(3)),
                    "corpus": int(m.group(4))}
    return last


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("artifacts", nargs="*")
    a = ap.parse_args()
    found = [replay(a.binary, p, os.path.basename(p).split("-")[0])
             for p in a.artifacts]
    summary = {"target": a.target, "seconds": a.seconds, **stats(a.log), "artifacts": found,
               "ours": sum(f["in"] in ("ours", "unknown") for f in found),
               "third_party": sum(f["in"] not in ("ours", "unknown") for f in found)}
    with open(a.out, "w") as f:
        json.dump(summary, f, indent=1)
    for f_ in found:
        print(f"  {f_['kind']}: {f_['what']} in {f_['in']} ({f_['frame']}) {f_['file']}")
    sys.exit(1 if summary["ours"] else 0)


if __name__ == "__main__":
    main()
