#!/usr/bin/env bash
# The one script to run on a GPU machine: builds t2sda with the CUDA backend, runs
# the CUDA tests (ctest -L cuda: every CUDA op against the CPU reference: core ops,
# optimizers, the MiT ops, the fused losses of the method; and test_cuda_train: three
# full T2S-DA iterations of t2sda_train device=cuda against device=cpu, and two CUDA
# runs bit-identical) and the
# benchmarks, keeps every log in one folder and prints a short table last.
#
#   tools/gpu_check.sh                 logs in gpu_logs/<date>/ (or $OUT when set)
#   T2S_GPU_BUILD=build-gpu            build directory (default build-gpu)
#   T2S_GPU_WERROR=OFF                 ON: warnings as errors (CI checks them already)
#   T2S_GPU_JOBS=<n>                   parallel build jobs (default: all cores)
#   T2S_GPU_FULL=1                     also build the whole tree (not needed by the checks)
#
# Every stage runs under a timeout and the script goes on past a failing stage,
# so one broken piece never hides the results of the others. The exit status is
# 0 only when every stage that ran passed. The whole run fits in well under ten
# minutes on one GPU.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
root=$(pwd)
build=${T2S_GPU_BUILD:-build-gpu}
werror=${T2S_GPU_WERROR:-OFF}
jobs=${T2S_GPU_JOBS:-$(nproc 2>/dev/null || echo 4)}
logs=${OUT:-$root/gpu_logs/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$logs" || { echo "gpu_check: cannot create log folder $logs" >&2; exit 2; }

# One row per stage: name | status | seconds | note. Status: ok, FAIL, skip, todo.
rows=()
failed=0

# run_stage NAME TIMEOUT_S LOGFILE CMD...: runs CMD with its output in LOGFILE,
# records the row and returns CMD's status (124 = timed out).
run_stage() {
  local name=$1 limit=$2 log=$3
  shift 3
  local t0=$SECONDS
  echo "gpu_check: [$name] $* (log: $log)"
  timeout --kill-after=10 "$limit" "$@" >"$logs/$log" 2>&1
  local rc=$?
  local dt=$((SECONDS - t0)) status=ok note="log $log"
  if ((rc == 124 || rc == 137)); then
    status=FAIL note="timed out after ${limit}s, log $log"
  elif ((rc != 0)); then
    status=FAIL note="exit $rc, log $log"
  fi
  [[ $status == FAIL ]] && failed=1
  rows+=("$name|$status|$dt|$note")
  return $rc
}

add_row() { rows+=("$1|$2|${3:-}|${4:-}"); }

# ---- environment ----------------------------------------------------------------
{
  echo "date: $(date -Is)"
  echo "host: $(hostname)"
  echo "commit: $(git rev-parse HEAD 2>/dev/null) $(git status --porcelain 2>/dev/null | wc -l) changed file(s)"
  echo "--- nvidia-smi"; nvidia-smi 2>&1
  echo "--- nvcc"; nvcc --version 2>&1 || /usr/local/cuda/bin/nvcc --version 2>&1
  echo "--- cudnn"; grep -h "define CUDNN_MAJOR\|define CUDNN_MINOR\|define CUDNN_PATCHLEVEL" \
    /usr/include/cudnn_version*.h /usr/local/cuda/include/cudnn_version*.h 2>/dev/null
  echo "--- cmake"; cmake --version 2>&1 | head -1
} >"$logs/environment.log" 2>&1
gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
if [[ -n $gpu ]]; then add_row environment ok "" "$gpu"
else add_row environment FAIL "" "nvidia-smi shows no GPU: the CUDA tests will skip"; failed=1; fi

# ---- dependencies (idempotent; needs no network when everything is present) -------
run_stage dependencies 300 setup.log bash tools/setup.sh

# ---- configure and build -----------------------------------------------------------
built=0
if run_stage configure 180 configure.log \
    cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DT2S_CUDA=ON -DT2S_WERROR="$werror"; then
  # Build what the checks need first, so a half-written file elsewhere in the tree
  # (another executable) cannot stop them; then the rest, as its own stage.
  if run_stage "build (core + cuda test)" 420 build_core.log \
      cmake --build "$build" -j"$jobs" --target t2s_core test_cuda_ops test_cuda_optim \
      test_cuda_mit_ops test_cuda_losses test_cuda_train t2sda_train t2sda_synth; then
    built=1
  fi
  run_stage "build (t2sda_bench)" 300 build_bench.log cmake --build "$build" -j"$jobs" \
    --target t2sda_bench
  # the rest of the tree only on request: the whole check must stay under 8 minutes
  if [[ ${T2S_GPU_FULL:-0} == 1 ]]; then
    run_stage "build (whole tree)" 420 build_all.log cmake --build "$build" -j"$jobs" -- -k
  fi
else
  add_row build skip "" "configure failed"
fi

# ---- CUDA tests -----------------------------------------------------------------------
if ((built)); then
  run_stage "ctest -L cuda" 300 ctest_cuda.log \
    ctest --test-dir "$build" -L cuda --output-on-failure
  # ctest's own count: "100% tests passed, 0 tests failed out of 3"
  counts=$(grep -E "tests passed, [0-9]+ tests? failed out of" "$logs/ctest_cuda.log" | tail -1)
  skipped=$(grep -c "(Skipped)" "$logs/ctest_cuda.log" 2>/dev/null)
  last=$((${#rows[@]} - 1))
  IFS='|' read -r n s d _ <<<"${rows[$last]}"
  rows[$last]="$n|$s|$d|${counts:-no ctest summary} (${skipped:-0} skipped), log ctest_cuda.log"
  if [[ ${skipped:-0} != 0 ]]; then
    # a skipped CUDA test on a GPU machine means the GPU was not usable: a failure here
    rows[$last]="$n|FAIL|$d|${counts:-?}, ${skipped} SKIPPED (no usable GPU?), log ctest_cuda.log"
    failed=1
  fi
else
  add_row "ctest -L cuda" skip "" "build failed"
fi

# ---- benchmarks -------------------------------------------------------------------------
# One training step (forward, loss, backward, SGD) of ResNet-101-V1c DeepLab-V2 on random
# data, batch 2, crop 512x512: t2sda on CUDA in fp32 and TF32, PyTorch eager on the same
# GPU in fp32 (TF32 off), TF32 and AMP bf16. Each result is one JSON line in
# bench_<name>.json; the table at the end compares them with PyTorch fp32.
bench_args=(--depth 101 --batch 2 --crop 512 512 --iters 10 --warmup 3)
bench_names=()
t2sda_bench() { # NAME PRECISION
  local name=$1 precision=$2
  if ((built)) && [[ -x $build/bin/t2sda_bench ]]; then
    run_stage "bench: $name" 90 "bench_$name.log" "$build/bin/t2sda_bench" step --device cuda \
      --precision "$precision" "${bench_args[@]}" --json "$logs/bench_$name.json"
    bench_names+=("$name")
  else
    add_row "bench: $name" skip "" "t2sda_bench was not built"
  fi
}
# PyTorch modes without touching tools/bench_step_pytorch.py: TF32 switched off or on
# explicitly (PyTorch lets cuDNN use TF32 by default), AMP as a process-wide autocast.
torch_bench() { # NAME MODE
  local name=$1 mode=$2
  export T2S_TORCH_MODE=$mode
  run_stage "bench: $name" 90 "bench_$name.log" python3 -c '
import os, runpy, sys
import torch
mode = os.environ["T2S_TORCH_MODE"]
torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
torch.backends.cudnn.allow_tf32 = mode == "tf32"
if mode == "amp_bf16":
    torch.autocast("cuda", dtype=torch.bfloat16).__enter__()
sys.path.insert(0, "tools")
sys.argv = ["tools/bench_step_pytorch.py"] + sys.argv[1:]
runpy.run_path("tools/bench_step_pytorch.py", run_name="__main__")
' --device cuda "${bench_args[@]}"
  grep -h '^{' "$logs/bench_$name.log" | tail -1 >"$logs/bench_$name.json"
  bench_names+=("$name")
}
t2sda_bench t2sda_fp32 fp32
t2sda_bench t2sda_tf32 tf32
torch_bench torch_fp32 fp32
torch_bench torch_tf32 tf32
torch_bench torch_amp_bf16 amp_bf16
python3 - "$logs" "${bench_names[@]}" >"$logs/bench_table.txt" 2>&1 <<'PY'
import json, os, sys
logs, names = sys.argv[1], sys.argv[2:]
rows = {}
for n in names:
    try:
        with open(os.path.join(logs, "bench_%s.json" % n)) as f:
            lines = [l for l in f if l.strip().startswith("{")]
        rows[n] = json.loads(lines[-1])
    except (OSError, ValueError, IndexError):
        rows[n] = None
base = rows.get("torch_fp32")
print("step benchmark: resnet101-v1c deeplabv2, batch 2, crop 512x512 (median of 10 iters)")
print("%-16s %10s %10s %9s %10s" % ("run", "ms/iter", "images/s", "TFLOP/s", "vs torch fp32"))
for n in names:
    r = rows[n]
    if r is None:
        print("%-16s %10s" % (n, "no result"))
        continue
    tflops = r.get("gflop_per_s", 0.0) / 1e3
    speed = "%.2fx" % (r["images_per_s"] / base["images_per_s"]) if base else "-"
    print("%-16s %10.1f %10.2f %9.2f %10s" % (n, r["ms_per_iter"], r["images_per_s"], tflops, speed))
PY
add_row "bench table" ok "" "see bench_table.txt (printed below)"

# ---- the full T2S-DA iteration on CUDA ---------------------------------------------------
# 2 source + 2 target crops of 512x512 through every step of docs/method.md
# (configs/gta2cs_t2sda_deeplabv2.yaml, random init, synthetic 1024x512 scenes): the
# images/s of t2sda_train's last progress line.
if ((built)); then
  run_stage "data: synthetic 1024x512" 60 synth.log "$build/bin/t2sda_synth" "$logs/syn" \
    --source 16 --target 16 --val 2 --size 1024 512 --seed 0
  if run_stage "t2sda iteration (cuda)" 180 t2sda_iteration.log "$build/bin/t2sda_train" \
      configs/gta2cs_t2sda_deeplabv2.yaml device=cuda 'model.pretrained=""' model.num_classes=11 \
      "data.source.shards=$logs/syn/source-*.h5" "data.target.shards=$logs/syn/target-*.h5" \
      "data.val.shards=$logs/syn/val-*.h5" data.rare_class_sampling.min_pixels=300 \
      runner.max_iters=20 log.interval=5 evaluation.interval=0 checkpoint.interval=0 \
      "work_dir=$logs/t2sda_iteration"; then
    ips=$(grep -o '[0-9.]* img/s' "$logs/t2sda_iteration.log" | tail -1)
    echo "full T2S-DA iteration (DLv2-R101, 2+2 crops 512x512, fp32): ${ips:-no figure}" \
      >>"$logs/bench_table.txt"
  fi
fi

# ---- summary ----------------------------------------------------------------------------
summary() {
  echo
  echo "t2sda GPU check — logs in $logs"
  printf '%-30s %-6s %7s  %s\n' stage status seconds note
  printf '%-30s %-6s %7s  %s\n' ----- ------ ------- ----
  local r name status secs note
  for r in "${rows[@]}"; do
    IFS='|' read -r name status secs note <<<"$r"
    printf '%-30s %-6s %7s  %s\n' "$name" "$status" "$secs" "$note"
  done
  echo
  if ((failed)); then echo "RESULT: FAIL (see the logs named above)"; else echo "RESULT: ok"; fi
}
summary | tee "$logs/summary.txt"
echo
cat "$logs/bench_table.txt" 2>/dev/null | tee -a "$logs/summary.txt"
exit "$failed"
