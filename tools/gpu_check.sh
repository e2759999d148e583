#!/usr/bin/env bash
# The one script to run on a GPU machine. It installs nothing: the lent GPU machines
# reach no package registry and lack our Debian libraries, so the binaries come
# prebuilt in the bundle of tools/gpu_bundle.sh (gpu_bundle/t2sda-gpu-bundle.tar.xz),
# and the CUDA libraries are the machine's own, found wherever it keeps them.
#
#   tools/gpu_bundle.sh && tools/gpu_check.sh      here (no GPU: ends in seconds, "no GPU")
#   README "Checking on a GPU machine"             on a lent GPU machine (device tool)
#
# Stages, each with its own timeout and a row in the final table, the whole run capped
# at 8 minutes (T2S_GPU_BUDGET_S, default 480: a stage that would pass the cap is cut
# short or skipped, never the table):
#   libraries   unpack the bundle; find each CUDA soname of its MANIFEST in the CUDA
#               toolkit folders, `ldconfig -p` and the Python nvidia.* packages; print
#               which file satisfied it; stop at once, naming it, when one is missing
#   cpu train   the bundle's CPU executables: synthetic data and 2 CPU iterations
#   1 smoke     (90 s) test_cuda_ops (every op family, forward and backward, CUDA vs
#               CPU) and test_cuda_train (three T2S-DA iterations, CUDA vs CPU)
#   2 cuda tests  the other tests labelled cuda, but test_cuda_comm (one row; each
#               test's result in its log)
#   3 memcheck  compute-sanitizer --tool memcheck over the op tests (skipped, with a
#               note, where the tool is missing or refuses the device)
#   4 bench     one training step of DLv2-R101 (batch 2, 512x512): t2sda fp32 / TF32 /
#               bf16 against PyTorch eager fp32, TF32, AMP bf16
#               and AMP bf16 channels_last on the same GPU, MFU against a bf16 matmul
#               peak measured in this run
#   5 iteration the full T2S-DA iteration (DLv2-R101; MiT-B5 + DAFormer head), 512x512,
#               2+2 crops, images/s and peak GPU memory (nvidia-smi, sampled)
#   6 nccl      test_cuda_comm (a one-rank NCCL communicator: real NCCL all-reduces, no
#               MPI) and `t2sda_bench allreduce --device cuda`
# Without the bundle it falls back to building here with CMake (which needs the Debian
# libraries: tools/setup.sh, run by hand; this script never installs anything).
#
#   T2S_GPU_BUNDLE=FILE   the bundle (default gpu_bundle/t2sda-gpu-bundle.tar.xz)
#   T2S_GPU_BUILD=DIR     fallback build folder (default build-gpu)
#   OUT=DIR               results: summary.txt, summary.json, bench_table.txt and
#                         gpu_logs.tar.gz (every log); without OUT the logs stay in
#                         gpu_logs/<date>/
# Exit status: 0 every stage that ran passed on a GPU; 1 a stage failed or a library is
# missing; 3 no GPU (everything that needs none passed, the CUDA stages were skipped).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
root=$(pwd)
t_start=$SECONDS
budget=${T2S_GPU_BUDGET_S:-480}
deadline=$((t_start + budget))
bundle=${T2S_GPU_BUNDLE:-$root/gpu_bundle/t2sda-gpu-bundle.tar.xz}
work=$root/gpu_logs/$(date +%Y%m%d-%H%M%S)
logs=$work/logs
mkdir -p "$logs" || { echo "gpu_check: cannot create $logs" >&2; exit 2; }

# ---- rows of the final table ---------------------------------------------------------
# name | status | seconds | note. Status: ok, FAIL, skip, part (cut short, no error).
rows=()
failed=0
gpu=0
reserve=0  # seconds kept for the stages after this one (keep S: S seconds of an 8-minute run)
keep() { reserve=$(($1 * budget / 480)); }
add_row() { rows+=("$1|$2|${3:-}|${4:-}"); [[ $2 == FAIL ]] && failed=1; return 0; }
set_last_row() { rows[${#rows[@]}-1]="$1|$2|$3|$4"; [[ $2 == FAIL ]] && failed=1; return 0; }

# run_stage NAME LIMIT LOG CMD...: CMD under a timeout of LIMIT seconds, cut to what the
# 8-minute cap leaves (minus `reserve`); its output in LOG and a row. Returns CMD's
# status; 124 timed out; 125 not started (no time left). Exit 77 reads as skipped.
run_stage() {
  local name=$1 limit=$2 log=$3
  shift 3
  local left=$((deadline - SECONDS - reserve))
  ((limit > left)) && limit=$left
  if ((limit < 5)); then add_row "$name" skip "" "no time left (8-minute cap)"; return 125; fi
  local t0=$SECONDS
  echo "gpu_check: [$name] up to ${limit}s, log $log"
  timeout --kill-after=5 "$limit" "$@" >"$logs/$log" 2>&1
  local rc=$?
  local dt=$((SECONDS - t0))
  case $rc in
    0) add_row "$name" ok "$dt" "log $log" ;;
    77) add_row "$name" skip "$dt" "$(tail -1 "$logs/$log" | cut -c1-80)" ;;
    124|137) add_row "$name" FAIL "$dt" "timed out after ${limit}s, log $log" ;;
    *) add_row "$name" FAIL "$dt" "exit $rc, log $log" ;;
  esac
  return $rc
}

# ---- environment ----------------------------------------------------------------------
{
  echo "date: $(date -Is)"
  echo "host: $(hostname 2>/dev/null || cat /etc/hostname 2>/dev/null)"
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo '(no git)')"
  echo "os: $(. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-?}"), $(getconf GNU_LIBC_VERSION 2>/dev/null)"
  echo "--- nvidia-smi"; nvidia-smi 2>&1
  echo "--- nvcc"; nvcc --version 2>&1 || /usr/local/cuda/bin/nvcc --version 2>&1
  echo "--- python3"; command -v python3 && python3 --version 2>&1
} >"$logs/environment.log" 2>&1
command -v nvidia-smi >/dev/null || PATH=$PATH:/usr/local/nvidia/bin
gpu_name=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
if [[ -n $gpu_name ]]; then gpu=1; add_row environment ok "" "$gpu_name"
elif [[ -e /dev/nvidia0 ]]; then
  gpu=1 gpu_name="a GPU (/dev/nvidia0)"
  add_row environment ok "" "/dev/nvidia0 is there but nvidia-smi is not: no peak memory figures"
else add_row environment skip "" "no GPU (nvidia-smi shows none): CUDA stages will skip"; fi

# ---- the CUDA libraries ---------------------------------------------------------------
# Folders where a machine keeps CUDA libraries, in the order they are tried: the
# toolkit, then the Python nvidia.* wheels (nvidia/cudnn/lib, nvidia/nccl/lib,
# nvidia/cu13/lib, ...). Never a stubs folder: a stub libcuda fails every call.
cuda_dirs() {
  local d p
  for d in ${CUDA_HOME:+$CUDA_HOME/lib64} /usr/local/cuda/lib64 /usr/local/cuda/lib \
           /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-*/lib64 \
           /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do
    [[ -d $d ]] && echo "$d"
  done
  {
    if command -v python3 >/dev/null; then
      timeout 20 python3 -c 'import nvidia; print("\n".join(nvidia.__path__))' 2>/dev/null
    fi
    for p in /usr/lib/python3*/dist-packages /usr/local/lib/python3*/dist-packages \
             /usr/local/lib/python3*/site-packages /opt/*/lib/python3*/site-packages \
             /opt/*/.venv/lib/python3*/site-packages /root/.local/lib/python3*/site-packages; do
      [[ -d $p/nvidia ]] && echo "$p/nvidia"
    done
  } | while read -r p; do
    for d in "$p"/*/lib "$p"/*/lib64; do [[ -d $d ]] && echo "$d"; done
  done
}

# find_lib SONAME: prints the file that satisfies it (folders above, then ldconfig -p).
find_lib() {
  local d f
  for d in "${search[@]}"; do
    [[ $d == */stubs* ]] && continue
    f=$d/$1
    if [[ -e $f ]]; then echo "$f"; return 0; fi
  done
  f=$(ldconfig -p 2>/dev/null | awk -v s="$1" '$1 == s && $0 ~ /x86-64/ {print $NF; exit}')
  [[ -n $f && $f != */stubs/* ]] && { echo "$f"; return 0; }
  return 1
}

bdir=""         # folder with bin/ and tests/ (the unpacked bundle, or the fallback build)
ld_path=""      # LD_LIBRARY_PATH for our binaries only (never for python3 or the tools)
cuda_tests=()
libs_ok=0
resolve_bundle() {
  local t0=$SECONDS unpack=$work/bundle log=$logs/libraries.log
  rm -rf "$unpack" && mkdir -p "$unpack" || { add_row libraries FAIL "" "cannot write $unpack"; return 1; }
  if ! tar -C "$unpack" -xJf "$bundle" 2>"$log"; then
    # no xz on the machine: Python reads .tar.xz too
    if ! python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
        "$bundle" "$unpack" 2>>"$log"; then
      add_row libraries FAIL "$((SECONDS - t0))" "cannot unpack $bundle (tar xz, python3): log libraries.log"
      return 1
    fi
  fi
  bdir=$unpack
  mapfile -t search < <(cuda_dirs | awk '!seen[$0]++')
  local missing=() dirs=() line kind so f have want
  {
    echo "bundle: $bundle"
    grep -E '^(commit|built|glibc) ' "$unpack/MANIFEST"
    echo "searched, in order: ${search[*]:-(no CUDA folder)} then ldconfig -p"
    have=$(getconf GNU_LIBC_VERSION 2>/dev/null | sed -n 's/glibc 2\.\([0-9]*\).*/\1/p')
    want=$(sed -n 's/^glibc 2\.\([0-9]*\)$/\1/p' "$unpack/MANIFEST")
    if [[ -n $have && -n $want ]] && ((have < want)); then
      echo "MISSING glibc 2.$want: this machine has 2.$have (build the bundle on an older system)"
      missing+=("glibc 2.$want")
    fi
    while read -r kind so; do
      [[ $kind == cuda || $kind == cuda-runtime ]] || continue
      if f=$(find_lib "$so"); then
        echo "found   $so -> $(readlink -f "$f") ($kind)"
        dirs+=("$(dirname "$f")")
      else
        echo "MISSING $so (needed by the bundle's binaries; $kind)"
        missing+=("$so")
      fi
    done <"$unpack/MANIFEST"
    if f=$(find_lib libcuda.so.1); then echo "driver  libcuda.so.1 -> $(readlink -f "$f")"
      dirs+=("$(dirname "$f")")
    else echo "driver  libcuda.so.1 not found (no NVIDIA driver: the CUDA tests will skip)"; fi
  } >>"$log" 2>&1
  # The folders go on the path after the bundle's own, in the order they were searched
  # (so the loader picks the very files found above); the loader's defaults stay off it.
  ld_path=$unpack/lib
  local d used=" ${dirs[*]} "
  for d in "${search[@]}" $(printf '%s\n' "${dirs[@]}" | awk '!seen[$0]++'); do
    [[ $used == *" $d "* && ":$ld_path:" != *":$d:"* ]] || continue
    case $d in /lib|/lib64|/usr/lib|/usr/lib64|/lib/x86_64-linux-gnu|/usr/lib/x86_64-linux-gnu) ;;
      *) ld_path=$ld_path:$d ;; esac
  done
  {
    echo "LD_LIBRARY_PATH (our binaries only): $ld_path"
    echo "the loader's choice for t2sda_train (ldd):"
    LD_LIBRARY_PATH=$ld_path ldd "$unpack/bin/t2sda_train" 2>&1 |
      grep -E 'libcuda|libcudart|libcublas|libcudnn|libcufft|libnccl|not found' | sed 's/^[[:space:]]*/  /'
  } >>"$log"
  # The loader's own verdict on every binary, so that nothing is left to the first run.
  for f in "$unpack"/bin/* "$unpack"/tests/*; do
    while read -r line; do
      missing+=("$line")
      echo "MISSING $line (ldd $(basename "$f"))" >>"$log"
    done < <(LD_LIBRARY_PATH=$ld_path ldd "$f" 2>&1 | awk '/not found/ {print $1}')
  done
  mapfile -t cuda_tests <"$unpack/cuda_tests.txt"
  cat "$log"
  if ((${#missing[@]})); then
    add_row libraries FAIL "$((SECONDS - t0))" "MISSING: $(printf '%s\n' "${missing[@]}" | sort -u | head -4 | tr '\n' ' ')(log libraries.log)"
    return 1
  fi
  add_row libraries ok "$((SECONDS - t0))" "$(grep -c '^found' "$log") CUDA libraries found; bundle $(sed -n 's/^commit //p' "$unpack/MANIFEST" | cut -c1-12)"
  libs_ok=1
  # A bundle of other sources would test old code: said, and the run goes on.
  local built_from here
  built_from=$(sed -n 's/^sources //p' "$unpack/MANIFEST")
  here=$(bash tools/gpu_source_hash.sh 2>/dev/null)
  if [[ $built_from != "$here" ]]; then
    add_row "bundle sources" FAIL "" "built from sources ${built_from:-?}, this tree is ${here:-?}: run tools/gpu_bundle.sh again"
  fi
}

fallback_build() {
  local build=${T2S_GPU_BUILD:-$root/build-gpu} jobs
  jobs=$(nproc 2>/dev/null || echo 4)
  add_row bundle skip "" "no $bundle: building here (tools/gpu_bundle.sh avoids this)"
  run_stage configure 120 configure.log cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release \
    -DT2S_CUDA=ON -DT2S_WERROR=OFF || return 1
  mapfile -t cuda_tests < <(ctest --test-dir "$build" -N -L cuda | sed -n 's/^ *Test *#[0-9]*: *\([A-Za-z0-9_]*\).*/\1/p')
  run_stage build 300 build.log cmake --build "$build" -j"$jobs" --target t2sda_train \
    t2sda_synth t2sda_bench "${cuda_tests[@]}" || return 1
  mkdir -p "$build/bin" && ln -sf "$(command -v h5diff)" "$build/bin/h5diff" 2>/dev/null
  bdir=$build
  libs_ok=1
}

if [[ -f $bundle ]]; then resolve_bundle; else fallback_build; fi

# Our binaries run with these; python3 and the NVIDIA tools run without them.
ours=(env "LD_LIBRARY_PATH=$ld_path" "PATH=$bdir/bin:$PATH" "T2S_SOURCE_DIR=$root"
      "T2S_BINARY_DIR=$bdir" OMP_NUM_THREADS=8 OPENBLAS_NUM_THREADS=1)

# run_tests NAME LIMIT LOG TEST...: the tests one after another under one timeout; each
# one's exit status lands in the log as "== TEST rc SECONDS"; the row counts them.
run_tests() {
  local name=$1 limit=$2 log=$3
  shift 3
  run_stage "$name" "$limit" "$log" "${ours[@]}" bash -c '
    for t in "$@"; do
      s=$SECONDS; echo "== start $t"; "$T2S_BINARY_DIR/tests/$t"; rc=$?
      echo "== $t $rc $((SECONDS - s))"
    done' _ "$@"
  local rc=$? pass skip fail
  ((rc == 125)) && return 0
  pass=$(grep -cE '^== [a-z_0-9]+ 0 ' "$logs/$log")
  skip=$(grep -cE '^== [a-z_0-9]+ 77 ' "$logs/$log")
  fail=$(grep -E '^== [a-z_0-9]+ [0-9]+ ' "$logs/$log" | awk '$3 != 0 && $3 != 77 {printf "%s ", $2}')
  local ran=$((pass + skip)) status=ok note
  note="$pass passed, $skip skipped of $#${fail:+, FAILED: $fail}"
  ((skip > 0 && gpu)) && status=FAIL note="$note (a skip on a GPU machine: GPU not usable?)"
  ((skip > 0 && !gpu && pass == 0)) && status=skip note="$note: no GPU"
  [[ -n $fail ]] && status=FAIL
  ((rc == 124 || rc == 137)) && status=FAIL note="$note; timed out at $(grep '^== start' "$logs/$log" | tail -1 | cut -d' ' -f3)"
  ((ran + ${#fail} == 0 && rc != 0)) && status=FAIL
  IFS='|' read -r _ _ secs _ <<<"${rows[${#rows[@]}-1]}"
  set_last_row "$name" "$status" "$secs" "$note, log $log"
}

# ---- CPU: the bundle's executables train without a GPU --------------------------------
if ((libs_ok)); then
  syn=$work/syn
  run_stage "cpu train (2 iterations)" 60 cpu_train.log "${ours[@]}" bash -c '
    set -e
    t2sda_synth "$1" --source 4 --target 4 --val 2 --size 48 48 --seed 1
    t2sda_train configs/synthetic_t2sda.yaml device=cpu "data.source.shards=$1/source-*.h5" \
      "data.target.shards=$1/target-*.h5" "data.val.shards=[$1/val-*.h5]" data.crop=[32,32] \
      runner.max_iters=2 log.interval=1 evaluation.interval=2 evaluation.mode=whole \
      checkpoint.interval=0 "work_dir=$1/run"' _ "$syn"
fi

# ---- 1 smoke, 2 cuda tests ------------------------------------------------------------
smoke=()
others=()
for t in "${cuda_tests[@]}"; do
  case $t in
    test_cuda_ops|test_cuda_train) smoke+=("$t") ;;
    test_cuda_comm) ;; # stage 6
    *) others+=("$t") ;;
  esac
done
if ((libs_ok)); then
  keep 200
  run_tests "1 smoke (ops, 3 iterations)" 90 smoke.log "${smoke[@]}"
  # a smoke test cut off by the smoke's time limit runs again here, with more time
  for t in "${smoke[@]}"; do
    grep -qE "^== $t [0-9]+ " "$logs/smoke.log" || others+=("$t")
  done
  keep 170
  run_tests "2 cuda tests" 150 cuda_tests.log "${others[@]}"
else
  add_row "1 smoke" skip "" "libraries not resolved"
  add_row "2 cuda tests" skip "" "libraries not resolved"
fi

# ---- 3 memcheck -----------------------------------------------------------------------
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
if ((!gpu || !libs_ok)); then add_row "3 memcheck" skip "" "no GPU"
elif [[ -z $sanitizer ]]; then add_row "3 memcheck" skip "" "compute-sanitizer not installed"
else
  keep 150
  op_tests=()
  for t in "${cuda_tests[@]}"; do [[ $t == *ops* || $t == *losses* ]] && op_tests+=("$t"); done
  run_stage "3 memcheck (op tests)" 90 memcheck.log "${ours[@]}" bash -c '
    for t in "$@"; do
      echo "== start $t"
      "$0" --tool memcheck --error-exitcode 99 --print-limit 20 "$T2S_BINARY_DIR/tests/$t"
      rc=$?; echo "== $t $rc"; [ $rc = 0 ] || exit $rc
    done' "$sanitizer" "${op_tests[@]}"
  rc=$?
  IFS='|' read -r n _ secs _ <<<"${rows[${#rows[@]}-1]}"
  if grep -qiE 'Device not supported|unable to (initialize|launch)|error 999' "$logs/memcheck.log"; then
    set_last_row "$n" skip "$secs" "compute-sanitizer refused the device (log memcheck.log)"
  elif ((rc == 124 || rc == 137)); then
    done_n=$(grep -cE '^== [a-z_0-9]+ 0$' "$logs/memcheck.log")
    set_last_row "$n" part "$secs" "cut at the time limit: $done_n of ${#op_tests[@]} clean, no error seen"
  fi
fi
# a refusal above was first a FAIL row (run_stage): recompute from the rows
failed=0
for r in "${rows[@]}"; do [[ $(cut -d'|' -f2 <<<"$r") == FAIL ]] && failed=1; done

# ---- 4 step benchmarks against PyTorch ------------------------------------------------
bench_args=(--depth 101 --batch 2 --crop 512 512 --iters 8 --warmup 3)
bench_names=()
if ((gpu && libs_ok)); then
  keep 100
  run_stage "4 bench: bf16 matmul peak" 40 bench_peak.log env -u LD_LIBRARY_PATH python3 -c '
import json, torch
n = 8192
a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
for _ in range(3): a @ b
torch.cuda.synchronize()
s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
s.record()
for _ in range(10): a @ b
e.record(); torch.cuda.synchronize()
print(json.dumps({"bench": "bf16_matmul_peak", "n": n,
                  "tflops": 2 * n ** 3 * 10 / (s.elapsed_time(e) / 1e3) / 1e12}))'
  grep -h '^{' "$logs/bench_peak.log" | tail -1 >"$logs/bench_peak.json"
  precisions=(fp32 tf32 bf16)
  for p in "${precisions[@]}"; do
    run_stage "4 bench: t2sda $p" 60 "bench_t2sda_$p.log" "${ours[@]}" t2sda_bench step \
      --device cuda --precision "$p" "${bench_args[@]}" --json "$logs/bench_t2sda_$p.json"
    bench_names+=("t2sda_$p")
  done
  for m in fp32 tf32 amp_bf16 amp_bf16_channels_last; do
    run_stage "4 bench: torch $m" 60 "bench_torch_$m.log" env -u LD_LIBRARY_PATH python3 \
      tools/bench_step_pytorch.py --device cuda --mode "$m" "${bench_args[@]}"
    grep -h '^{' "$logs/bench_torch_$m.log" | tail -1 >"$logs/bench_torch_$m.json"
    bench_names+=("torch_$m")
  done
else
  add_row "4 bench" skip "" "no GPU"
fi

# ---- 5 the full T2S-DA iteration -------------------------------------------------------
# peak_watch LOG CMD...: CMD while nvidia-smi samples the used GPU memory every 200 ms;
# the peak above the level before the start lands in LOG.peak (MiB).
peak_watch() {
  local log=$1; shift
  local base
  base=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1)
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >"$log.samples" 2>/dev/null &
  local watcher=$!
  "$@"
  local rc=$?
  kill "$watcher" 2>/dev/null; wait "$watcher" 2>/dev/null
  sort -n "$log.samples" | tail -1 | awk -v b="${base:-0}" '{print $1 - b}' >"$log.peak"
  return $rc
}
export -f peak_watch
iter_rows=()
if ((gpu && libs_ok)); then
  keep 40
  run_stage "5 data: synthetic 1024x512" 40 synth_1024.log "${ours[@]}" t2sda_synth \
    "$work/syn1024" --source 8 --target 8 --val 2 --size 1024 512 --seed 0
  for cfg in deeplabv2 daformer_mitb5; do
    log=iteration_$cfg.log
    run_stage "5 iteration: $cfg" 75 "$log" "${ours[@]}" bash -c 'peak_watch "$@"' _ \
      "$logs/$log" t2sda_train "configs/gta2cs_t2sda_$cfg.yaml" device=cuda 'model.pretrained=""' \
      model.num_classes=11 "data.source.shards=$work/syn1024/source-*.h5" \
      "data.target.shards=$work/syn1024/target-*.h5" "data.val.shards=$work/syn1024/val-*.h5" \
      data.samples_per_gpu=2 data.crop=[512,512] data.rare_class_sampling.min_pixels=300 \
      runner.max_iters=12 log.interval=4 evaluation.interval=0 checkpoint.interval=0 \
      "work_dir=$work/iteration_$cfg"
    ips=$(grep -o '[0-9.]* img/s' "$logs/$log" | tail -1)
    peak=$(cat "$logs/$log.peak" 2>/dev/null)
    iter_rows+=("$cfg|${ips:-no figure}|${peak:-?}")
    IFS='|' read -r n s secs note <<<"${rows[${#rows[@]}-1]}"
    [[ $s == ok ]] && set_last_row "$n" ok "$secs" "${ips:-no img/s}, peak ${peak:-?} MiB GPU memory"
  done
else
  add_row "5 iteration" skip "" "no GPU"
fi

# ---- 6 NCCL -----------------------------------------------------------------------------
if ((libs_ok)) && [[ " ${cuda_tests[*]} " == *" test_cuda_comm "* ]]; then
  keep $((gpu ? 30 : 0))
  run_tests "6 nccl: communicator, 1 rank" 40 nccl_comm.log test_cuda_comm
fi
if ((gpu && libs_ok)); then
  keep 0
  run_stage "6 nccl: t2sda_bench allreduce" 60 nccl_allreduce.log "${ours[@]}" t2sda_bench \
    allreduce --device cuda --max-bytes 256M --iters 20 --json "$logs/nccl_allreduce.json"
else
  add_row "6 nccl: allreduce" skip "" "no GPU"
fi

# ---- tables, JSON, results --------------------------------------------------------------
python_ok=0
command -v python3 >/dev/null && python_ok=1
if ((python_ok && ${#bench_names[@]})); then
  env -u LD_LIBRARY_PATH python3 - "$logs" "${bench_names[@]}" >"$work/bench_table.txt" 2>&1 <<'PY'
import json, os, sys
logs, names = sys.argv[1], sys.argv[2:]
def load(n):
    try:
        with open(os.path.join(logs, "bench_%s.json" % n)) as f:
            return json.loads([l for l in f if l.strip().startswith("{")][-1])
    except (OSError, ValueError, IndexError):
        return None
peak = load("peak")
peak_tf = peak["tflops"] if peak else None
base = load("torch_fp32")
print("step benchmark: resnet101-v1c deeplabv2, batch 2, crop 512x512 (median of 8 iters)")
print("bf16 matmul peak measured in this run: %s" % ("%.0f TFLOP/s" % peak_tf if peak_tf else "none"))
print("%-30s %9s %9s %9s %7s %12s" % ("run", "ms/iter", "images/s", "TFLOP/s", "MFU", "vs torch fp32"))
for n in names:
    r = load(n)
    if r is None:
        print("%-30s %9s" % (n, "no result"))
        continue
    tf = r.get("gflop_per_s", 0.0) / 1e3
    mfu = "%.1f%%" % (100 * tf / peak_tf) if peak_tf else "-"
    speed = "%.2fx" % (r["images_per_s"] / base["images_per_s"]) if base else "-"
    print("%-30s %9.1f %9.2f %9.2f %7s %12s" % (n, r["ms_per_iter"], r["images_per_s"], tf, mfu, speed))
PY
fi
for r in "${iter_rows[@]}"; do
  IFS='|' read -r cfg ips peak <<<"$r"
  echo "full T2S-DA iteration ($cfg, 2+2 crops 512x512, fp32): $ips, peak GPU memory $peak MiB" >>"$work/bench_table.txt"
done

if ((failed)); then result="FAIL (see the logs named above)"; code=1
elif ((!gpu)); then result="no GPU: libraries resolved and CPU stages passed; CUDA stages skipped"; code=3
else result="ok"; code=0; fi
summary() {
  echo
  echo "t2sda GPU check ($((SECONDS - t_start)) s) — logs in $logs"
  printf '%-34s %-6s %7s  %s\n' stage status seconds note
  printf '%-34s %-6s %7s  %s\n' ----- ------ ------- ----
  local r name status secs note
  for r in "${rows[@]}"; do
    IFS='|' read -r name status secs note <<<"$r"
    printf '%-34s %-6s %7s  %s\n' "$name" "$status" "$secs" "$note"
  done
  echo
  echo "RESULT: $result"
}
summary | tee "$work/summary.txt"
[[ -s $work/bench_table.txt ]] && { echo; tee -a "$work/summary.txt" <"$work/bench_table.txt"; }

# One JSON summary (no python3 needed: the rows are plain text).
json_str() { local s=${1//\\/\\\\}; s=${s//\"/\\\"}; printf '"%s"' "${s//$'\t'/ }"; }
{
  printf '{"result": %s, "exit": %d, "gpu": %s, "seconds": %d, "stages": [' \
    "$(json_str "$result")" "$code" "$(json_str "${gpu_name:-none}")" "$((SECONDS - t_start))"
  sep=""
  for r in "${rows[@]}"; do
    IFS='|' read -r name status secs note <<<"$r"
    printf '%s\n  {"stage": %s, "status": %s, "seconds": %s, "note": %s}' "$sep" "$(json_str "$name")" \
      "$(json_str "$status")" "${secs:-null}" "$(json_str "$note")"
    sep=","
  done
  printf '],\n "bench": ['
  sep=""
  for f in "$logs"/bench_*.json "$logs"/nccl_allreduce.json; do
    [[ -s $f ]] || continue
    while read -r line; do [[ $line == "{"* ]] && { printf '%s\n  %s' "$sep" "$line"; sep=","; }; done <"$f"
  done
  printf ']}\n'
} >"$work/summary.json"

if [[ -n ${OUT:-} ]]; then
  mkdir -p "$OUT"
  # the logs only: not the unpacked bundle, the synthetic data or the work folders
  tar -C "$work" -czf "$OUT/gpu_logs.tar.gz" logs summary.txt summary.json \
    $( [[ -s $work/bench_table.txt ]] && echo bench_table.txt)
  cp "$work/summary.txt" "$work/summary.json" "$OUT/"
  [[ -s $work/bench_table.txt ]] && cp "$work/bench_table.txt" "$OUT/"
  echo "gpu_check: results in $OUT (summary.txt, summary.json, gpu_logs.tar.gz)"
fi
exit "$code"
