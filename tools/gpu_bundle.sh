#!/usr/bin/env bash
# Builds the GPU bundle here, so that a lent GPU machine (no package registry, none of
# our Debian libraries: see README "Checking on a GPU machine") runs tools/gpu_check.sh
# without building or installing anything:
#   - Release build with the CUDA backend (sm_80 and sm_90, core/CMakeLists.txt), of
#     every t2sda_* executable and every test labelled `cuda`, found through CMake
#     (targets and ctest labels), never by listing source files;
#   - every shared library they load that a bare machine may lack (ldd), except glibc,
#     libstdc++/libgcc_s, the NVIDIA driver and the CUDA libraries (cudart, cuBLAS,
#     cuDNN, NCCL, cuFFT, ...): the GPU machine brings those, in its CUDA folders or in
#     its Python's nvidia.* packages, and tools/gpu_check.sh finds them there;
#   - h5diff (test_cuda_train compares checkpoints with it) and its libraries;
#   - MANIFEST: the CUDA sonames the binaries need (ldd) and the cuDNN sub-libraries
#     cuDNN opens at run time, the newest glibc symbol version the binaries use, the
#     commit and a hash of the sources (tools/gpu_source_hash.sh).
# One compressed archive in gpu_bundle/ (git-ignored): gpu_bundle/t2sda-gpu-bundle.tar.xz.
#
#   tools/gpu_bundle.sh               T2S_BUNDLE_BUILD=build-bundle (build folder)
#                                     T2S_BUNDLE_JOBS=2 (parallel build jobs)
#
# Open MPI: the executables link libmpi, so libmpi and the libraries it links (open-pal,
# open-rte, hwloc, libevent, ...) are in the bundle; mpirun and Open MPI's plugins are
# not: the GPU machine has one GPU, a run there is one process, and one process never
# initialises MPI (dist/comm.h: launcher detection). The NCCL check runs a one-rank NCCL
# communicator without MPI (t2s_dist_cfg.nccl_one_rank).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build=${T2S_BUNDLE_BUILD:-build-bundle}
jobs=${T2S_BUNDLE_JOBS:-2}
out=$root/gpu_bundle
archive=$out/t2sda-gpu-bundle.tar.xz

die() { echo "gpu_bundle: $*" >&2; exit 1; }
command -v ldd >/dev/null || die "ldd is missing (libc-bin)"
command -v objdump >/dev/null || die "objdump is missing: install binutils"
command -v nvcc >/dev/null || [[ -x /usr/local/cuda/bin/nvcc ]] ||
  die "nvcc is missing: the bundle needs the CUDA toolkit here (the GPU machine has its own)"

mkdir -p "$out"
echo "gpu_bundle: configure $build (Release, CUDA on)"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DT2S_CUDA=ON -DT2S_WERROR=OFF >"$out/configure.log" 2>&1 ||
  { cat "$out/configure.log" >&2; die "configure failed (log above)"; }

# The executables are the t2sda_* targets, the tests those ctest labels `cuda`.
mapfile -t exes < <(cmake --build "$build" --target help | sed -n 's/^\.\.\. \(t2sda_[a-z_]*\).*/\1/p' | sort -u)
mapfile -t tests < <(ctest --test-dir "$build" -N -L cuda | sed -n 's/^ *Test *#[0-9]*: *\([A-Za-z0-9_]*\).*/\1/p')
((${#exes[@]} > 0)) || die "no t2sda_* target found in $build"
((${#tests[@]} > 0)) || die "no test labelled cuda found in $build"
echo "gpu_bundle: build ${exes[*]} ${tests[*]}"
cmake --build "$build" -j"$jobs" --target "${exes[@]}" "${tests[@]}"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/tests" "$stage/lib"
for e in "${exes[@]}"; do cp "$build/bin/$e" "$stage/bin/"; done
for t in "${tests[@]}"; do cp "$build/tests/$t" "$stage/tests/"; done
h5diff=$(command -v h5diff) || die "h5diff is missing (hdf5-tools, tools/setup.sh installs it)"
cp "$h5diff" "$stage/bin/"
printf '%s\n' "${tests[@]}" >"$stage/cuda_tests.txt"

# A library is left to the machine when it is part of glibc or the compiler runtime
# (every Linux has them, and a copy could not match the machine's loader), or when it
# is the driver or a CUDA library (the machine's own must match its driver).
is_system() {
  case $1 in
    ld-linux*|libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|libresolv.so.*|\
    libutil.so.*|libanl.so.*|libnsl.so.*|libmvec.so.*|libstdc++.so.*|libgcc_s.so.*|linux-vdso*)
      return 0 ;;
  esac
  return 1
}
is_cuda() {
  case $1 in
    libcuda.so.*|libnvidia-*|libcudart.so.*|libcublas*.so.*|libcudnn*.so.*|libnccl.so.*|\
    libcufft*.so.*|libcurand.so.*|libcusolver*.so.*|libcusparse*.so.*|libnvJitLink.so.*|\
    libnvrtc*.so.*|libcupti.so.*|libnvToolsExt.so.*|libnvblas.so.*)
      return 0 ;;
  esac
  return 1
}

declare -A cuda_need=()
glibc_max=0
for bin in "$stage"/bin/* "$stage"/tests/*; do
  [[ -x $bin && ! -d $bin ]] || continue
  while read -r name arrow path _; do
    [[ $arrow == "=>" ]] || continue
    if is_system "$name"; then continue; fi
    if is_cuda "$name"; then cuda_need[$name]=1; continue; fi
    [[ $path == /* ]] || die "$(basename "$bin") needs $name, which is not found here"
    [[ -e $stage/lib/$name ]] || cp -L "$path" "$stage/lib/$name"
  done < <(ldd "$bin")
  v=$(objdump -T "$bin" | grep -o 'GLIBC_2\.[0-9]*' | sed 's/GLIBC_2\.//' | sort -n | tail -1)
  ((${v:-0} > glibc_max)) && glibc_max=$v
done
# The copied libraries may use newer glibc symbols than the binaries themselves.
for lib in "$stage"/lib/*; do
  v=$(objdump -T "$lib" | grep -o 'GLIBC_2\.[0-9]*' | sed 's/GLIBC_2\.//' | sort -n | tail -1)
  ((${v:-0} > glibc_max)) && glibc_max=$v
done

# cuDNN opens its sub-libraries (graph, ops, cnn, engines) by name at run time, from
# where libcudnn.so.9 is: those present beside it here are expected beside it there.
cudnn_dir=$(ldd "$stage/bin/t2sda_train" | awk '$1 ~ /^libcudnn\.so/ {print $3}' | xargs -r dirname)
cudnn_subs=()
if [[ -n $cudnn_dir ]]; then
  for f in "$cudnn_dir"/libcudnn_*.so.[0-9]; do [[ -e $f ]] && cudnn_subs+=("$(basename "$f")"); done
fi

{
  echo "# t2sda GPU bundle: read by tools/gpu_check.sh"
  echo "commit $(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')"
  echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(. /etc/os-release && echo "$PRETTY_NAME"), nvcc $(nvcc --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
  echo "sources $(bash tools/gpu_source_hash.sh)"
  echo "glibc 2.$glibc_max"
  for s in $(printf '%s\n' "${!cuda_need[@]}" | sort); do echo "cuda $s"; done
  for s in "${cudnn_subs[@]}"; do echo "cuda-runtime $s"; done
  for f in "$stage"/lib/*; do echo "bundled $(basename "$f")"; done
} >"$stage/MANIFEST"

rm -f "$out"/t2sda-gpu-bundle.tar.*
tar -C "$stage" -cf - . | xz -T2 -6 >"$archive"
cp "$stage/MANIFEST" "$out/MANIFEST"

tree_bytes=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
arch_bytes=$(stat -c %s "$archive")
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
echo "gpu_bundle: $archive: $(mib "$arch_bytes") (${#exes[@]} executables + h5diff, ${#tests[@]} cuda tests, $(ls "$stage/lib" | wc -l) libraries)"
echo "gpu_bundle: CUDA sonames the machine must provide: ${!cuda_need[*]} (+ ${#cudnn_subs[@]} cuDNN sub-libraries)"
echo "gpu_bundle: carried with the working tree: $(mib $((tree_bytes + arch_bytes))) of the device tool's 64 MiB"
if ((tree_bytes + arch_bytes > 48 * 1048576)); then
  die "bundle + working tree exceed 48 MiB: too close to the 64 MiB carry limit"
fi
