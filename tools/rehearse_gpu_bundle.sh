#!/usr/bin/env bash
# Rehearses tools/gpu_check.sh with the bundle on a bare machine, here, before a rare GPU
# session spends its minutes on it. The stand-in for the GPU machine is a Debian minbase
# root (debootstrap; no HDF5, libyaml, OpenBLAS, Open MPI, FFTW or libpng, no Python,
# no compiler) holding only the CUDA runtime libraries, in the layout of the GPU
# machine's Python nvidia.* packages (/opt/torch/.venv/.../site-packages/nvidia/cudnn/lib/
# libcudnn.so.9, nvidia/nccl/lib, nvidia/cu13/lib), taken from this machine's toolkit.
# The working tree (what the device tool sends) and the bundle go to /work/t2sda there,
# and gpu_check.sh runs inside it (chroot in a private mount and PID namespace).
#
# Expected, and checked: every library resolves; the bundle's CPU executables train 2
# iterations on synthetic data; the cuda tests report the missing GPU as skipped; the
# table says "no GPU" (exit 3) within a minute. Then one CUDA library is hidden, and the
# check must name it and stop within seconds (exit 1).
#
#   sudo tools/rehearse_gpu_bundle.sh      needs root and debootstrap (apt-get install
#                                          debootstrap); the root is cached in
#                                          gpu_rehearsal/ (git-ignored), the first run
#                                          downloads it (a few minutes)
#   T2S_REHEARSE_MIRROR=URL                Debian mirror (default deb.debian.org)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
cache=$root/gpu_rehearsal
base=$cache/rootfs
bundle=$root/gpu_bundle/t2sda-gpu-bundle.tar.xz
mirror=${T2S_REHEARSE_MIRROR:-http://deb.debian.org/debian}

die() { echo "rehearse: $*" >&2; exit 1; }
(($(id -u) == 0)) || die "needs root (debootstrap, chroot, mount namespaces)"
[[ -f $bundle ]] || die "no bundle at $bundle: run tools/gpu_bundle.sh first"
[[ -f $root/gpu_bundle/MANIFEST ]] || die "no gpu_bundle/MANIFEST: run tools/gpu_bundle.sh again"

# ---- the bare root (cached) --------------------------------------------------------------
if [[ ! -f $base/.t2s-complete ]]; then
  command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install debootstrap"
  rm -rf "$base" && mkdir -p "$cache"
  echo "rehearse: debootstrap --variant=minbase bookworm $base (once; cached)"
  # xz-utils: the GPU machine's image has it (tar -J); minbase does not
  debootstrap --variant=minbase --include=xz-utils bookworm "$base" "$mirror" \
    >"$cache/debootstrap.log" 2>&1 || die "debootstrap failed: see $cache/debootstrap.log"
  touch "$base/.t2s-complete"
fi
present=$(find "$base/usr/lib" "$base/lib" -name 'libhdf5*' -o -name 'libyaml*' -o -name 'libopenblas*' \
          -o -name 'libmpi*' -o -name 'libfftw3*' -o -name 'libpng*' -o -name 'libgomp*' 2>/dev/null | head -3)
[[ -z $present ]] || die "the root is not bare: $present"
for tool in python3 cmake gcc nvcc; do
  [[ ! -e $base/usr/bin/$tool ]] || die "the root has $tool: it is meant to have none"
done

# ---- CUDA runtime libraries in the nvidia.* wheel layout ----------------------------------
site=$base/opt/torch/.venv/lib/python3.12/site-packages/nvidia
rm -rf "$site" && mkdir -p "$site"
wheel_dir() { # the nvidia.* package that ships SONAME
  case $1 in libcudnn*) echo cudnn/lib ;; libnccl*) echo nccl/lib ;; *) echo cu13/lib ;; esac
}
while read -r kind so; do
  [[ $kind == cuda || $kind == cuda-runtime ]] || continue
  src=$(ldconfig -p | awk -v s="$so" '$1 == s {print $NF; exit}')
  [[ -n $src ]] || for d in /usr/local/cuda/lib64 /usr/local/cuda/lib; do
    [[ -e $d/$so ]] && { src=$d/$so; break; }
  done
  [[ -n $src ]] || die "this machine has no $so to put in the rehearsal root"
  mkdir -p "$site/$(wheel_dir "$so")"
  # a hard link where the file system allows (the libraries are large), else a copy
  cp -l "$(readlink -f "$src")" "$site/$(wheel_dir "$so")/$so" 2>/dev/null ||
    cp "$(readlink -f "$src")" "$site/$(wheel_dir "$so")/$so"
done <"$root/gpu_bundle/MANIFEST"
echo "rehearse: CUDA libraries in the wheel layout:"
(cd "$base" && find opt -name '*.so*' | sort | sed 's/^/  \//')

# ---- the working tree, as the device tool sends it, and the bundle ------------------------
dest=$base/work/t2sda
rm -rf "$base/work" && mkdir -p "$dest/gpu_bundle" "$base/work/out"
git ls-files -z --cached --others --exclude-standard | tar -C "$root" --null -T - -cf - | tar -C "$dest" -xf -
cp "$bundle" "$dest/gpu_bundle/"

# run_check NAME EXPECTED_EXIT MAX_SECONDS: gpu_check.sh inside the root, a clean
# environment, /proc and /dev of a private mount namespace.
run_check() {
  local name=$1 want=$2 max=$3 t0=$SECONDS rc
  echo "rehearse: [$name] tools/gpu_check.sh in the bare root"
  set +e
  unshare --mount --pid --fork bash -c '
    set -e
    mount --make-rprivate /
    mount -t proc proc "$1/proc"
    mount --rbind /dev "$1/dev"
    exec chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
      OUT=/work/out bash /work/t2sda/tools/gpu_check.sh' _ "$base" 2>&1 | tee "$cache/$name.log"
  rc=${PIPESTATUS[0]}
  set -e
  local dt=$((SECONDS - t0))
  echo "rehearse: [$name] exit $rc after ${dt}s (expected exit $want within ${max}s)"
  ((rc == want && dt <= max)) || die "[$name] did not behave as expected (log $cache/$name.log)"
}

run_check no-gpu 3 60
summary=$base/work/out/summary.txt
grep -qE '^libraries +ok' "$summary" || die "the libraries did not resolve"
grep -qE '^cpu train.* +ok' "$summary" || die "the CPU training from the bundle failed"
grep -qE '^1 smoke.* skip .*skipped' "$summary" || die "the smoke tests did not report a skip"
grep -qE '^2 cuda tests +skip .*skipped' "$summary" || die "the cuda tests did not report a skip"
grep -q 'RESULT: no GPU' "$summary" || die "the table does not say no GPU"
grep -q 'found   libcudnn.so.9 -> /opt/torch/.venv/lib/python3.12/site-packages/nvidia/cudnn/lib/' \
  "$cache/no-gpu.log" || die "libcudnn.so.9 was not found in the nvidia.cudnn package folder"
for f in summary.txt summary.json gpu_logs.tar.gz; do
  [[ -s $base/work/out/$f ]] || die "no $f in OUT"
done

# A missing CUDA library: named at once, nothing else runs.
hidden=$site/nccl/lib/libnccl.so.2
mv "$hidden" "$hidden.hidden"
trap 'mv "$hidden.hidden" "$hidden" 2>/dev/null || true' EXIT
run_check missing-nccl 1 20
grep -q 'MISSING libnccl.so.2' "$cache/missing-nccl.log" || die "the missing libnccl.so.2 was not named"
echo "rehearse: PASSED (logs in $cache)"
