#!/usr/bin/env bash
# The one script to run on a GPU machine: builds t2sda with the CUDA backend, runs
# the CUDA tests (ctest -L cuda: every CUDA op against the CPU reference) and the
# benchmarks, keeps every log in one folder and prints a short table last.
#
#   tools/gpu_check.sh                 logs in gpu_logs/<date>/ (or $OUT when set)
#   T2S_GPU_BUILD=build-gpu            build directory (default build-gpu)
#   T2S_GPU_WERROR=OFF                 ON: warnings as errors (CI checks them already)
#   T2S_GPU_JOBS=<n>                   parallel build jobs (default: all cores)
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
      cmake --build "$build" -j"$jobs" --target t2s_core test_cuda_ops; then
    built=1
  fi
  run_stage "build (whole tree)" 420 build_all.log cmake --build "$build" -j"$jobs" -- -k
else
  add_row build skip "" "configure failed"
fi

# ---- CUDA tests -----------------------------------------------------------------------
if ((built)); then
  run_stage "ctest -L cuda" 420 ctest_cuda.log \
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
# BENCHMARK: t2sda step on CUDA (placeholder, added by the step-benchmark issue).
#   Expected shape: run_stage "bench: t2sda step (cuda)" 240 bench_t2sda.log \
#     "$build/bin/t2sda_bench" step --device cuda ... --json "$logs/bench_t2sda.json"
#   then put images/s and GFLOP/s from the JSON into this stage's note.
add_row "bench: t2sda step (cuda)" todo "" "placeholder: not wired yet"
# BENCHMARK: PyTorch step on the same GPU (placeholder, added by the same issue).
#   Expected shape: run_stage "bench: pytorch step (cuda)" 240 bench_torch.log \
#     /usr/bin/python3 tools/bench_step_pytorch.py --device cuda ... > "$logs/bench_torch.json"
add_row "bench: pytorch step (cuda)" todo "" "placeholder: not wired yet"
# BENCHMARK: ratio t2sda / PyTorch images/s (placeholder): computed from the two JSONs.

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
exit "$failed"
