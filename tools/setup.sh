#!/usr/bin/env bash
# Installs the Debian packages t2sda needs. Idempotent: when every package is
# already present it does nothing (no apt-get update, no root needed).
#   tools/setup.sh            build + runtime dependencies
#   tools/setup.sh --python   also the Python helpers for fixtures and PyTorch
#                             comparisons (python3-torch, numpy, h5py)
set -euo pipefail

pkgs=(cmake pkg-config libopenblas-dev libopenblas-openmp-dev libhdf5-dev hdf5-tools libyaml-dev
      libopenmpi-dev openmpi-bin libfftw3-dev libpng-dev libjpeg62-turbo-dev
      zlib1g-dev python3-h5py python3-numpy
      clang libclang-rt-dev libomp-dev   # clang + libFuzzer runtime: tools/fuzz.sh
      iproute2)                          # ip netns / veth: tests/dist_netns.sh
if [[ "${1:-}" == "--python" ]]; then
  pkgs+=(python3-torch python3-matplotlib)
fi

# tensorboard (PyPI, no Debian package): test_tb_events reads the trainer's event
# files back with it. Installed for the python3 on PATH, which the tests run.
if ! python3 -c "import tensorboard" 2>/dev/null; then
  echo "setup: pip install tensorboard"
  python3 -m pip install --quiet tensorboard 2>/dev/null ||
    python3 -m pip install --quiet --break-system-packages tensorboard ||
    echo "setup: tensorboard not installed: test_tb_events will be skipped" >&2
fi

# cityscapesscripts (PyPI): test_cityscapes_eval runs the official Cityscapes evaluator on
# t2sda_eval --format cityscapes output (tools/cityscapes_official_eval.py).
if ! python3 -c "import cityscapesscripts" 2>/dev/null; then
  echo "setup: pip install cityscapesscripts"
  python3 -m pip install --quiet cityscapesscripts 2>/dev/null ||
    python3 -m pip install --quiet --break-system-packages cityscapesscripts ||
    echo "setup: cityscapesscripts not installed: test_cityscapes_eval will skip the official evaluator" >&2
fi

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "setup: installing ${missing[*]}"
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null; then sudo_cmd=(sudo); else
    echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
