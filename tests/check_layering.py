#!/usr/bin/env python3
"""The layering rules of docs/architecture.md, checked on the sources and the build.

  check_layering.py SOURCE_DIR LINKS_FILE

1. Includes: a file may include (with #include "dir/file.h") only headers of the
   layers its own layer may depend on (LAYERS below). System headers of a format
   or transport a layer must not use (HDF5 in the engine, ...) count as well.
2. Links: LINKS_FILE (written by tests/CMakeLists.txt at configure time: one line
   "target<TAB>type<TAB>link;libraries") must give each t2s_* library only the
   project libraries below it, the engine no HDF5/YAML/MPI, and t2s_bench to
   BENCH_TARGETS alone.
3. Pointers out of the repository: no project file may send its reader to files
   that are not part of it (the design notes next to the checkout).

Prints every violation with the file and line (or target) and exits 1, else 0.
"""
import os
import re
import subprocess
import sys

# layer -> the layers its files may include. A file's layer is the longest of
# these prefixes that its path starts with.
LAYERS = {
    "core": {"core"},
    "core/formats": {"core", "core/formats"},
    "dist": {"core", "dist"},
    "data": {"core", "core/formats", "data"},
    "losses": {"core", "losses"},
    "launch": {"core", "core/formats", "dist", "data", "losses", "launch"},
    "tools/bench": {"core", "core/formats", "dist", "data", "losses", "launch", "tools/bench"},
    "tools": {"core", "core/formats", "dist", "data", "losses", "launch", "tools"},
    "tests": {"core", "core/formats", "dist", "data", "losses", "launch", "tests"},
}
# Only these files outside tools/bench may include the benchmarks, and only these
# targets link them: the program, the test that checks every op of the table has a
# benchmark entry (tools/bench/bench_ops.c) and runs each once, and the test that runs
# the iteration benchmark's full T2S-DA iteration with liveness on and off.
BENCH_USERS = {"tools/t2sda_bench.c", "tests/test_op_table.c", "tests/test_liveness.c"}
BENCH_TARGETS = {"t2sda_bench", "test_op_table", "test_liveness"}
# System headers a layer must not include: the engine links no file-format or MPI
# library, and the method's losses and the communicator read no files.
FORBIDDEN_SYSTEM = {
    "core": re.compile(r"^(hdf5|H5[A-Za-z]*|yaml|mpi)\.h$"),
    "dist": re.compile(r"^(hdf5|H5[A-Za-z]*|yaml)\.h$"),
    "losses": re.compile(r"^(hdf5|H5[A-Za-z]*|yaml|mpi)\.h$"),
}
# Known departures, each with why it is tolerated and what removes it. An entry
# that no longer matches anything is itself reported, so the list only shrinks.
EXCEPTIONS = {}

# The project libraries each library may link; executables may link all of them
# except t2s_bench, which only t2sda_bench links.
LINKS = {
    "t2s_core": set(),
    "t2s_formats": {"t2s_core"},
    "t2s_dist": {"t2s_core"},
    "t2s_data": {"t2s_formats", "t2s_core"},
    "t2s_losses": {"t2s_core"},
    "t2s_launch": {"t2s_losses", "t2s_data", "t2s_dist", "t2s_formats", "t2s_core"},
    "t2s_bench": {"t2s_launch", "t2s_losses", "t2s_data", "t2s_dist", "t2s_formats", "t2s_core"},
}
ENGINE_FORBIDDEN_LIBS = re.compile(r"hdf5|yaml|MPI::|libmpi", re.IGNORECASE)

SOURCE_EXT = (".c", ".h", ".cu", ".cuh")
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')
# Split so that this file does not match itself.
OUTSIDE = re.compile("|".join([r"\.\./" + "shared", "shared/" + r"[A-Z]+\.md",
                               r"\b(DESIGN|METHOD|STYLE)" + r"\.md\b"]))


def layer_of(path):
    best = None
    for layer in LAYERS:
        if path == layer or path.startswith(layer + "/"):
            if best is None or len(layer) > len(best):
                best = layer
    return best


def project_files(root):
    """The files git tracks or would track; every file below root without git."""
    try:
        out = subprocess.run(["git", "-C", root, "ls-files", "-co", "--exclude-standard"],
                             capture_output=True, text=True, check=True).stdout
        return sorted(p for p in out.splitlines() if os.path.isfile(os.path.join(root, p)))
    except (OSError, subprocess.CalledProcessError):
        files = []
        for d, dirs, names in os.walk(root):
            # skip hidden folders, build trees and the data a run writes (.gitignore)
            dirs[:] = [x for x in dirs if not x.startswith(".") and
                       x not in ("datasets", "work_dirs", "__pycache__") and
                       not os.path.exists(os.path.join(d, x, "CMakeCache.txt"))]
            files += [os.path.relpath(os.path.join(d, n), root) for n in names]
        return sorted(files)


def check_includes(root, files, used_exceptions):
    problems = []
    for path in files:
        layer = layer_of(path)
        if layer is None or not path.endswith(SOURCE_EXT):
            continue
        with open(os.path.join(root, path), encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, 1):
                m = INCLUDE.match(line)
                if not m:
                    continue
                kind, header = m.groups()
                if kind == "<":
                    bad = FORBIDDEN_SYSTEM.get(layer)
                    if bad and bad.match(header):
                        problems.append(f"{path}:{n}: <{header}> is not allowed in {layer}/")
                    continue
                target = layer_of(header)
                if target is None:
                    continue  # a header next to the file, or a generated one
                if target == "tools/bench" and (layer == "tools/bench" or path in BENCH_USERS):
                    continue
                if target in LAYERS[layer] and target != "tools/bench":
                    continue
                if (path, header) in EXCEPTIONS:
                    used_exceptions.add((path, header))
                    continue
                allowed = ", ".join(sorted(x + "/" for x in LAYERS[layer]))
                problems.append(f'{path}:{n}: includes "{header}" ({target}/), but {layer}/ '
                                f"may include only {allowed}")
    return problems


def check_links(links_file):
    problems = []
    with open(links_file, encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    seen = set()
    for target, kind, libs in rows:
        seen.add(target)
        libs = [x for x in libs.split(";") if x]
        ours = {re.sub(r"^\$<LINK_ONLY:(.*)>$", r"\1", x) for x in libs}
        ours = {x for x in ours if x.startswith("t2s_")}
        if target in LINKS:
            extra = ours - LINKS[target]
            if extra:
                problems.append(f"target {target} links {', '.join(sorted(extra))}; it may link only "
                                f"{', '.join(sorted(LINKS[target])) or 'no project library'}")
            if target == "t2s_core":
                for lib in libs:
                    if ENGINE_FORBIDDEN_LIBS.search(lib):
                        problems.append(f"target t2s_core links {lib}: the engine links no "
                                        "HDF5, YAML or MPI (that belongs in t2s_formats / t2s_dist)")
        elif "t2s_bench" in ours and target not in BENCH_TARGETS:
            problems.append(f"target {target} links t2s_bench; only {sorted(BENCH_TARGETS)} may")
    for lib in LINKS:
        if lib not in seen:
            problems.append(f"{links_file}: no line for {lib} (was the library renamed? update "
                            "LINKS in tests/check_layering.py)")
    return problems


def check_outside_pointers(root, files):
    problems = []
    me = os.path.relpath(os.path.abspath(__file__), os.path.abspath(root))
    for path in files:
        if path == me:
            continue
        try:
            with open(os.path.join(root, path), "rb") as f:
                data = f.read(1 << 20)
        except OSError:
            continue
        if b"\0" in data:
            continue  # binary (fixtures, images)
        for n, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            m = OUTSIDE.search(line)
            if m:
                problems.append(f"{path}:{n}: '{m.group(0)}' points outside the repository; "
                                "point to the docs/ file that covers it")
    return problems


def main():
    if len(sys.argv) != 3:
        print("usage: check_layering.py SOURCE_DIR LINKS_FILE", file=sys.stderr)
        return 2
    root, links_file = sys.argv[1], sys.argv[2]
    files = project_files(root)
    used = set()
    problems = check_includes(root, files, used)
    problems += [f"{p} includes {h}: listed in EXCEPTIONS of tests/check_layering.py but no "
                 "longer needed; remove the entry" for p, h in EXCEPTIONS if (p, h) not in used]
    problems += check_links(links_file)
    problems += check_outside_pointers(root, files)
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} layering problem(s); the rules are in docs/architecture.md "
              "and tests/check_layering.py")
        return 1
    print(f"layering: {len(files)} files, {len(LINKS)} libraries checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
