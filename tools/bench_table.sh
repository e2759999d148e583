#!/usr/bin/env bash
# The CPU benchmark table of docs/performance.md in one command: the machine's fp32 peak,
# then ours vs PyTorch side by side (tools/bench_vs_pytorch.sh) for each row, with the
# load average before and after every row. Writes OUT/table.md and one log per row.
#   tools/bench_table.sh [--out DIR] [--rows r50,mitb0,mitb5] [--threads 2]
# Rows: r50   DeepLab-V2 ResNet-50-V1c, batch 2, 256x256 (3 timed steps after 1 warm-up)
#       mitb0 MiT-B0 + DAFormer head, batch 2, 256x256 (2 after 1)
#       mitb5 MiT-B5 + DAFormer head, batch 2, 512x512 (1 after 1; ~10 min per side on 2 cores)
# Only ratios measured in one run on a quiet machine mean anything: check the loads.
set -euo pipefail
cd "$(dirname "$0")/.."
out="results/bench_cpu_$(date -u +%Y-%m-%d)"
rows=r50,mitb0,mitb5
threads=2
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --rows) rows=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    -h|--help) sed -n 2,9p "$0"; exit 0 ;;
    *) echo "bench_table.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
build=${T2S_BUILD_DIR:-build}
[[ -x "$build/bin/t2sda_bench" ]] || { echo "bench_table.sh: $build/bin/t2sda_bench is missing: build first (README)" >&2; exit 1; }
mkdir -p "$out"
load() { cut -d' ' -f1 /proc/loadavg; }
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)
isa=$(grep -o -w -E 'avx512f|avx2|fma|amx_tile' /proc/cpuinfo | sort -u | tr '\n' ' ')
peak_json=$("$build/bin/t2sda_bench" peak --threads "$threads" | tail -n 1)
peak=$(/usr/bin/python3 -c 'import json,sys; print(json.loads(sys.argv[1])["fma_gflop_per_s"])' "$peak_json")
{
  echo "Machine: $cpu ($isa), $(nproc) cores, $threads threads; measured fp32 FMA peak $peak GFLOP/s"
  echo "(\`$build/bin/t2sda_bench peak --threads $threads\`); $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD)."
  echo
  echo "| step | command | load before / after | t2sda ms, GFLOP/s (share of peak), peak RSS | PyTorch 1.13 CPU | speed-up | memory ratio |"
  echo "| --- | --- | --- | --- | --- | --- | --- |"
} > "$out/table.md"
for row in ${rows//,/ }; do
  case "$row" in
    r50) what="DeepLab-V2 R50-V1c, batch 2, 256x256"; args=(--depth 50 --batch 2 --crop 256 256 --threads "$threads" --iters 3 --warmup 1) ;;
    mitb0) what="MiT-B0 + DAFormer, batch 2, 256x256"; args=(--backbone mit_b0 --batch 2 --crop 256 256 --threads "$threads" --iters 2 --warmup 1) ;;
    mitb5) what="MiT-B5 + DAFormer, batch 2, 512x512"; args=(--backbone mit_b5 --batch 2 --crop 512 512 --threads "$threads" --iters 1 --warmup 1) ;;
    *) echo "bench_table.sh: unknown row '$row' (r50, mitb0, mitb5)" >&2; exit 2 ;;
  esac
  before=$(load)
  bash tools/bench_vs_pytorch.sh "${args[@]}" | tee "$out/$row.log"
  after=$(load)
  /usr/bin/python3 - "$out/$row.log" "$what" "${args[*]}" "$before" "$after" "$peak" >> "$out/table.md" <<'PY'
import sys
log, what, args, before, after, peak = sys.argv[1:]
rows = {}
for line in open(log):
    f = line.split()
    if f and f[0] in ("t2sda", "pytorch") and len(f) == 5:
        rows[f[0]] = [float(v) for v in f[1:]]
a, b = rows["t2sda"], rows["pytorch"]
share = lambda g: f"{100 * g / float(peak):.0f} %"
print(f"| {what} | `tools/bench_vs_pytorch.sh {args}` | {before} / {after} | "
      f"{a[0]:.0f} ms, {a[2]:.1f} ({share(a[2])}), {a[3]:.0f} MiB | "
      f"{b[0]:.0f} ms, {b[2]:.1f} ({share(b[2])}), {b[3]:.0f} MiB | "
      f"**{b[0] / a[0]:.2f}x** | {a[3] / b[3]:.2f}x |")
PY
done
cat "$out/table.md"
