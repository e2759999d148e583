/* The NCCL backend: GPU collectives for runs with more than one rank on GPUs (and for
 * one rank when t2s_dist_cfg.nccl_one_rank asks for it).
 *
 * Bootstrap: rank 0 creates the unique id, MPI broadcasts it (one rank: no MPI), every
 * rank joins with ncclCommInitRank on the GPU that comm.c chose. Blocking helpers run on a private
 * stream and poll it against the communicator's deadline (cudaStreamQuery +
 * ncclCommGetAsyncError), aborting the NCCL communicator on a timeout, so a dead peer
 * becomes a message, not a hang. Gradient buckets run on a side stream that waits for
 * an event recorded on the compute stream after the bucket's last backward node; the
 * compute stream waits for the side stream once at the end (no host synchronisation).
 * ncclAvg averages in the reduction itself. */
#include <stdio.h>
#include <time.h>

#include <nccl.h>

#include "core/cuda/backend.h"
#include "dist/comm_internal.h"

#if NCCL_VERSION_CODE < NCCL_VERSION(2, 10, 0)
#error "t2sda needs NCCL 2.10 or newer (ncclAvg)"
#endif

struct t2s_nccl {
  ncclComm_t comm;
  cudaStream_t stream;   /* blocking helpers and started all-reduces */
  cudaStream_t side;     /* gradient buckets */
  cudaEvent_t ready;     /* recorded on the compute stream before each bucket */
  cudaEvent_t done;      /* recorded on the side stream at the end of the buckets */
};

static t2s_status cuda_fail(const t2s_comm *c, const char *call, cudaError_t e, t2s_error *err) {
  char who[128];
  return t2s_error_set(err, T2S_ERR_BACKEND, "%s: %s failed (%s)",
                       t2s__comm_who(c, who, sizeof who), call, cudaGetErrorString(e));
}

static t2s_status nccl_fail(const t2s_comm *c, const char *call, ncclResult_t r, t2s_error *err) {
  char who[128];
  const char *detail = ncclGetLastError(NULL);
  return t2s_error_set(err, T2S_ERR_COMM, "%s: %s failed (%s%s%s); another rank may have died",
                       t2s__comm_who(c, who, sizeof who), call, ncclGetErrorString(r),
                       detail && *detail ? ": " : "", detail ? detail : "");
}

#define CU(c, call, err)                                                         \
  do {                                                                           \
    cudaError_t e_ = (call);                                                     \
    if (e_ != cudaSuccess) return cuda_fail((c), #call, e_, (err));              \
  } while (0)
#define NC(c, call, err)                                                         \
  do {                                                                           \
    ncclResult_t r_ = (call);                                                    \
    if (r_ != ncclSuccess) return nccl_fail((c), #call, r_, (err));              \
  } while (0)

/* Waits for `stream` with the deadline; on a NCCL error or a timeout the NCCL
 * communicator is aborted (its kernels would never finish) and the error names us. */
static t2s_status nccl_wait(t2s_comm *c, cudaStream_t stream, const char *what, t2s_error *err) {
  t2s_nccl *n = c->nccl;
  double start = t2s_dist_now();
  for (;;) {
    cudaError_t q = cudaStreamQuery(stream);
    if (q == cudaSuccess) return T2S_OK;
    if (q != cudaErrorNotReady) return cuda_fail(c, what, q, err);
    ncclResult_t async = ncclSuccess;
    NC(c, ncclCommGetAsyncError(n->comm, &async), err);
    int late = c->timeout_s > 0 && t2s_dist_now() - start > c->timeout_s;
    if (async != ncclSuccess || late) {
      ncclCommAbort(n->comm);
      n->comm = NULL;
      if (async != ncclSuccess) return nccl_fail(c, what, async, err);
      return t2s__comm_timeout(c, what, err);  /* names the ranks that never arrived */
    }
    struct timespec nap = {0, 20000};
    nanosleep(&nap, NULL);
  }
}

extern "C" t2s_status t2s__nccl_create(t2s_comm *c, t2s_error *err) {
  t2s_nccl *n = (t2s_nccl *)calloc(1, sizeof *n);
  if (n == NULL) return t2s_error_set(err, T2S_ERR_NOMEM, "dist: out of host memory");
  c->nccl = n;
  ncclUniqueId id;
  if (c->rank == 0) NC(c, ncclGetUniqueId(&id), err);
  t2s_status st = t2s_dist_bcast(c, &id, sizeof id, 0, err);
  if (st != T2S_OK) return st;
  NC(c, ncclCommInitRank(&n->comm, c->world, id, c->rank), err);
  CU(c, cudaStreamCreateWithFlags(&n->stream, cudaStreamNonBlocking), err);
  CU(c, cudaStreamCreateWithFlags(&n->side, cudaStreamNonBlocking), err);
  CU(c, cudaEventCreateWithFlags(&n->ready, cudaEventDisableTiming), err);
  CU(c, cudaEventCreateWithFlags(&n->done, cudaEventDisableTiming), err);
  return T2S_OK;
}

extern "C" void t2s__nccl_destroy(t2s_nccl *n) {
  if (n == NULL) return;
  if (n->comm) ncclCommDestroy(n->comm);
  if (n->stream) cudaStreamDestroy(n->stream);
  if (n->side) cudaStreamDestroy(n->side);
  if (n->ready) cudaEventDestroy(n->ready);
  if (n->done) cudaEventDestroy(n->done);
  free(n);
}

static t2s_status usable(t2s_comm *c, t2s_error *err) {
  if (c->nccl != NULL && c->nccl->comm != NULL) return T2S_OK;
  char who[128];
  return t2s_error_set(err, T2S_ERR_COMM, "%s: the NCCL communicator is %s",
                       t2s__comm_who(c, who, sizeof who),
                       c->nccl ? "aborted after an earlier failure" : "not initialised");
}

extern "C" t2s_status t2s__nccl_allreduce_start(t2s_comm *c, float *dev, size_t n,
                                                t2s_error *err) {
  if (usable(c, err) != T2S_OK) return err->status;
  NC(c, ncclAllReduce(dev, dev, n, ncclFloat, ncclSum, c->nccl->comm, c->nccl->stream), err);
  return T2S_OK;
}

extern "C" t2s_status t2s__nccl_wait(t2s_comm *c, t2s_error *err) {
  if (usable(c, err) != T2S_OK) return err->status;
  return nccl_wait(c, c->nccl->stream, "ncclAllReduce", err);
}

extern "C" t2s_status t2s__nccl_bcast(t2s_comm *c, void *dev, size_t bytes, int root,
                                      t2s_error *err) {
  if (usable(c, err) != T2S_OK) return err->status;
  NC(c, ncclBroadcast(dev, dev, bytes, ncclChar, root, c->nccl->comm, c->nccl->stream), err);
  return nccl_wait(c, c->nccl->stream, "ncclBroadcast", err);
}

extern "C" t2s_status t2s__nccl_bucket_start(t2s_comm *c, t2s_ctx *ctx, float *dev, size_t n,
                                             t2s_error *err) {
  if (usable(c, err) != T2S_OK) return err->status;
  t2s_nccl *nc = c->nccl;
  CU(c, cudaEventRecord(nc->ready, t2s_cuda_be(ctx)->stream), err);
  CU(c, cudaStreamWaitEvent(nc->side, nc->ready, 0), err);
  NC(c, ncclAllReduce(dev, dev, n, ncclFloat, ncclAvg, nc->comm, nc->side), err);
  return T2S_OK;
}

extern "C" t2s_status t2s__nccl_buckets_join(t2s_comm *c, t2s_ctx *ctx, t2s_error *err) {
  if (usable(c, err) != T2S_OK) return err->status;
  t2s_nccl *nc = c->nccl;
  ncclResult_t async = ncclSuccess;
  NC(c, ncclCommGetAsyncError(nc->comm, &async), err);
  if (async != ncclSuccess) return nccl_fail(c, "gradient all-reduce", async, err);
  CU(c, cudaEventRecord(nc->done, nc->side), err);
  CU(c, cudaStreamWaitEvent(t2s_cuda_be(ctx)->stream, nc->done, 0), err);
  return T2S_OK;
}
