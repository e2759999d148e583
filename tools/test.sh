#!/usr/bin/env bash
# Sets up the Debian packages, builds everything (the CUDA backend too when nvcc
# is present, warnings as errors) and runs the whole test suite with ctest; then
# rebuilds the CPU tree with AddressSanitizer + UBSan and runs the tests that
# read untrusted files (weights, checkpoints, shards, configs) under it.
# Extra arguments go to the main ctest run, e.g. `tools/test.sh -L grad`;
# T2S_SKIP_ASAN=1 skips the sanitizer stage. Then the libFuzzer harnesses run 5 s
# each over their seed corpus (tools/fuzz.sh); T2S_SKIP_FUZZ=1 skips that stage.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
build=${T2S_BUILD_DIR:-build}
jobs=$(nproc)
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DT2S_WERROR=ON
cmake --build "$build" -j"$jobs"
ctest --test-dir "$build" --output-on-failure -j"$jobs" "$@"

if [[ "${T2S_SKIP_ASAN:-0}" != 1 && $# -eq 0 ]]; then
  asan="$build-asan"
  echo "== sanitizer stage: malformed and hostile inputs under ASan/UBSan ($asan)"
  cmake -S . -B "$asan" -DCMAKE_BUILD_TYPE=Debug -DT2S_CUDA=OFF -DT2S_ASAN=ON -DT2S_WERROR=ON > /dev/null
  targets=(test_convert_safetensors test_convert_pth test_convert_import test_checkpoint test_config
           test_shard test_shards_import test_eval_errors
           test_png_limits)
  # executables that those tests drive (t2sda_eval's error paths must not leak)
  cmake --build "$asan" -j"$jobs" --target "${targets[@]}" t2sda_eval > /dev/null
  regex=$(IFS='|'; echo "${targets[*]}")
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    ctest --test-dir "$asan" --output-on-failure -j"$jobs" -R "^($regex)\$"
fi

if [[ "${T2S_SKIP_FUZZ:-0}" != 1 && $# -eq 0 ]]; then
  echo "== fuzz stage: libFuzzer harnesses of the untrusted-input parsers, 5 s each (build-fuzz)"
  bash tools/fuzz.sh -t 5
fi
