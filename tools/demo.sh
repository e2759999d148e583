#!/usr/bin/env bash
# Sets up the Debian packages, builds, and runs the built-in default job on the
# CPU. Until the dataset and training issues land this is the engine self-check:
# a small ResNet-DeepLab-V2 learns procedurally drawn scenes, and a checkpoint
# round trip must reproduce its predictions.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
build=${T2S_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build "$build" -j"$(nproc)" > /dev/null
"$build/bin/t2sda_bench" selfcheck "$@"
