#!/usr/bin/env bash
# One workstation with several GPUs: plain mpirun, one rank per GPU.
#
#   launch/templates/mpirun_workstation.sh configs/gta2cs_t2sda_deeplabv2.yaml [key.path=value ...]
#   NP=4 launch/templates/mpirun_workstation.sh ...      # use 4 GPUs
#   T2SDA_TRAIN=build/bin/t2sda_train launch/templates/mpirun_workstation.sh ...   # not installed
#
# Each rank picks the GPU of its local rank (OMPI_COMM_WORLD_LOCAL_RANK, dist/comm.h),
# so leave CUDA_VISIBLE_DEVICES listing all GPUs (or the subset to use). Without GPUs
# (device: cpu in the config) the same command trains with MPI host collectives.
# A single GPU needs no launcher at all: `t2sda_train CONFIG.yaml`.
set -euo pipefail
config=${1:?usage: $0 CONFIG.yaml [key.path=value ...]}
shift
train=${T2SDA_TRAIN:-t2sda_train}
np=${NP:-$(nvidia-smi -L 2>/dev/null | wc -l)}
[ "$np" -ge 1 ] || np=1
cores=$(nproc)

# --bind-to none: each rank runs data-loading threads; pinning a rank to one core
#   (Open MPI's default for np <= 2) would starve them.
# --map-by slot:PE=N would reserve N cores per rank instead; with --bind-to none the
#   kernel spreads threads, and OMP/OPENBLAS threads are capped per rank below.
# -x forwards the variables to every rank.
export OMP_NUM_THREADS=$(( cores / np > 0 ? cores / np : 1 ))
export OPENBLAS_NUM_THREADS=1
# A collective that takes longer than this (seconds) stops the job with a message naming
# the rank, instead of hanging; it replaces the config's dist.timeout (docs/distributed.md).
export T2S_COMM_TIMEOUT=${T2S_COMM_TIMEOUT:-600}
# TCP keepalive on Open MPI's control connections: a silent peer is given up after
# 60 s + 6 x 10 s instead of 300 s + 9 x 20 s (matters when -H spans machines).
export OMPI_MCA_oob_tcp_keepalive_time=${OMPI_MCA_oob_tcp_keepalive_time:-60}
export OMPI_MCA_oob_tcp_keepalive_intvl=${OMPI_MCA_oob_tcp_keepalive_intvl:-10}
export OMPI_MCA_oob_tcp_keepalive_probes=${OMPI_MCA_oob_tcp_keepalive_probes:-6}
# Data or work_dir on an NFS mount: HDF5's file locks fail or hang there.
export HDF5_USE_FILE_LOCKING=${HDF5_USE_FILE_LOCKING:-FALSE}
# NCCL_DEBUG=INFO prints the transports NCCL chose once (NVLink "P2P", "SHM", or network);
# within one machine NCCL_SOCKET_IFNAME and NCCL_IB_HCA do not matter.
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}
# Stopping: `kill -TERM` of this script (or of a job manager that sends it SIGTERM) is
# handed to mpirun as SIGUSR1, which Open MPI forwards to every rank: they save one
# checkpoint and exit 0, and so does mpirun, so this script exits 0 (mpirun given SIGTERM
# itself exits 1 even when every rank saved). Hence mpirun runs in the background, and
# `wait`, cut short by the trap, waits again until mpirun has exited.
mpirun -np "$np" --bind-to none --map-by slot \
  -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS -x T2S_COMM_TIMEOUT -x HDF5_USE_FILE_LOCKING \
  -x NCCL_DEBUG \
  "$train" "$config" "$@" &
pid=$!
trap 'kill -USR1 "$pid" 2>/dev/null || true' TERM USR1
rc=0
wait "$pid" || rc=$?
while ((rc > 128)) && kill -0 "$pid" 2>/dev/null; do
  rc=0
  wait "$pid" || rc=$?
done
exit "$rc"
