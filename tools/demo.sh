#!/usr/bin/env bash
# The built-in default job: sets up the Debian packages, builds, draws the
# synthetic domain-shift benchmark (labelled "game-like" source, unlabelled
# muted/hazy target, labelled target validation; tools/t2sda_synth) if it is not
# there yet, trains T2S-DA with configs/synthetic_t2sda.yaml on the CPU (a few
# minutes on 2 cores) and prints the evaluation table of the target validation set.
# Extra arguments are config overrides, e.g. `tools/demo.sh runner.max_iters=500`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
build=${T2S_BUILD_DIR:-build}
echo "demo: building (first time: a few minutes) ..."
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release > "$build.configure.log" 2>&1 || { cat "$build.configure.log"; exit 1; }
cmake --build "$build" -j"$(nproc)" > "$build.build.log" 2>&1 || { tail -50 "$build.build.log"; exit 1; }
data=datasets/synthetic
if [[ ! -f $data/val-00000-of-00001.h5 ]]; then
  mkdir -p "$data"
  "$build/bin/t2sda_synth" "$data" --source 1000 --target 1000 --val 200 --size 96 96 --seed 0
fi
"$build/bin/t2sda_train" configs/synthetic_t2sda.yaml device=cpu work_dir=work_dirs/synthetic_t2sda --resume auto "$@"
