#!/usr/bin/env bash
# Prints a short hash of the sources the GPU bundle is built from (every .c, .h, .cu,
# .cuh and CMakeLists.txt of the tree, by path and content), without git: the GPU
# machine's copy of the tree has no .git. tools/gpu_bundle.sh records it in the bundle's
# MANIFEST and tools/gpu_check.sh compares it with the tree it runs in, so that a bundle
# built from other sources is named as such instead of testing old code.
set -euo pipefail
cd "$(dirname "$0")/.."
find CMakeLists.txt core dist data losses launch tools tests -type f \
  \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' -o -name CMakeLists.txt \) \
  -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16
