#!/usr/bin/env bash
# Sets up the Debian packages, builds everything (the CUDA backend too when nvcc
# is present, warnings as errors) and runs the whole test suite with ctest.
# Extra arguments go to ctest, e.g. `tools/test.sh -L grad` or `-R config`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
build=${T2S_BUILD_DIR:-build}
jobs=$(nproc)
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DT2S_WERROR=ON
cmake --build "$build" -j"$jobs"
ctest --test-dir "$build" --output-on-failure -j"$jobs" "$@"
