#!/usr/bin/env bash
# Times the identical ResNet-V1c DeepLab-V2 training step in t2sda and in PyTorch
# (CPU, same machine, same thread count) and prints both, the ratio, and each process's
# peak resident memory (/usr/bin/time; PyTorch's includes the Python interpreter).
#   tools/bench_vs_pytorch.sh [--depth 50] [--batch 2] [--crop 256 256] [--threads 2] [--iters 5]
# Needs the build (build/bin/t2sda_bench) and python3-torch (tools/setup.sh --python).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${T2S_BUILD_DIR:-build}
args=("$@")
[[ ${#args[@]} -gt 0 ]] || args=(--depth 50 --batch 2 --crop 256 256 --threads 2 --iters 5)
rss=$(mktemp)
trap 'rm -f "$rss" "$rss.py"' EXIT
ours=$(/usr/bin/time -f %M -o "$rss" "$build/bin/t2sda_bench" step "${args[@]}" | tail -n 1)
theirs=$(/usr/bin/time -f %M -o "$rss.py" /usr/bin/python3 tools/bench_step_pytorch.py "${args[@]}" | tail -n 1)
/usr/bin/python3 - "$ours" "$theirs" "$(tail -n 1 "$rss")" "$(tail -n 1 "$rss.py")" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
a["rss"], b["rss"] = int(sys.argv[3]) / 1024, int(sys.argv[4]) / 1024
print(f"{'impl':10s} {'ms/iter':>10s} {'images/s':>10s} {'GFLOP/s':>10s} {'peak RSS MiB':>13s}")
for name, r in (("t2sda", a), ("pytorch", b)):
    print(f"{name:10s} {r['ms_per_iter']:10.1f} {r['images_per_s']:10.3f} {r['gflop_per_s']:10.1f} {r['rss']:13.0f}")
print(f"speed-up of t2sda over PyTorch CPU: {b['ms_per_iter'] / a['ms_per_iter']:.2f}x")
print(f"peak RSS of t2sda / PyTorch: {a['rss'] / b['rss']:.2f}x")
PY
