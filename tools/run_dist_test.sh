#!/usr/bin/env bash
# Runs a test binary under MPI for ctest: tools/run_dist_test.sh NP BINARY [ARGS...]
#
# CI runs as root on 2 cores, so Open MPI needs --allow-run-as-root and
# --oversubscribe (more ranks than cores is fine for correctness tests), and
# --bind-to none keeps two ranks from being pinned to one core. Containers without
# ptrace permission cannot use cross-memory attach: the shared-memory transport
# then copies through a buffer instead of warning on every message. The job's exit
# code is mpirun's: non-zero when any rank fails.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 NP BINARY [ARGS...]" >&2
  exit 2
fi
np=$1
shift
mpirun=${MPIEXEC:-mpirun}
if ! command -v "$mpirun" >/dev/null 2>&1; then
  echo "$0: $mpirun not found: install openmpi-bin (tools/setup.sh does)" >&2
  exit 1
fi
export OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}
exec "$mpirun" -np "$np" --oversubscribe --allow-run-as-root --bind-to none "$@"
