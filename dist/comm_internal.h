/* Private to dist/: the MPI plumbing shared by comm.c and grad_sync.c,
 * and the C interface of the NCCL backend (dist/nccl_comm.cu in CUDA builds; NULL slots in
 * comm.c otherwise). Names with a double underscore are not part of the public API. */
#pragma once
#include <mpi.h>

#include "dist/comm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The communicator's MPI_Comm (valid for the MPI and NCCL backends). */
static inline MPI_Comm t2s__comm_mpi(const t2s_comm *c) { return *(MPI_Comm *)c->mpi_comm; }

/* "rank R of N (host H)": every error message starts with it. */
const char *t2s__comm_who(const t2s_comm *c, char *buf, size_t size);

/* Turns an MPI error code from `call` into a message naming this rank. */
t2s_status t2s__mpi_fail(const t2s_comm *c, int rc, const char *call, t2s_error *err);

/* Polls requests until all complete, or fails after c->timeout_s with a message
 * naming this rank and `what`. Busy-polls briefly, then sleeps between polls. */
t2s_status t2s__mpi_wait(const t2s_comm *c, MPI_Comm comm, MPI_Request *reqs, int n,
                         const char *what, t2s_error *err);

/* The message of a collective `what` that passed c->timeout_s: names the ranks that did
 * not reach it (a presence exchange among the waiting ranks, a few seconds) and how to
 * allow more time. Needs MPI (every multi-rank backend has it). */
t2s_status t2s__comm_timeout(const t2s_comm *c, const char *what, t2s_error *err);

/* In-place non-blocking sum over `comm`, waited for with the deadline. */
t2s_status t2s__mpi_allreduce(const t2s_comm *c, MPI_Comm comm, void *buf, size_t n,
                              MPI_Datatype type, MPI_Op op, const char *what, t2s_error *err);

/* NCCL backend. */
t2s_status t2s__nccl_create(t2s_comm *c, t2s_error *err);
void t2s__nccl_destroy(t2s_nccl *n);
/* Blocking (with the deadline) broadcast of device memory on the backend's stream. */
t2s_status t2s__nccl_bcast(t2s_comm *c, void *dev, size_t bytes, int root, t2s_error *err);
/* Queues a sum of dev[0..n) on the backend's stream; wait waits (with the deadline) for
 * everything queued there. */
t2s_status t2s__nccl_allreduce_start(t2s_comm *c, float *dev, size_t n, t2s_error *err);
t2s_status t2s__nccl_wait(t2s_comm *c, t2s_error *err);
/* Gradient buckets: start averages dev[0..n) on the side stream once everything queued
 * so far on ctx's compute stream is done (an event, no host synchronisation); join makes
 * the compute stream wait for every started bucket. */
t2s_status t2s__nccl_bucket_start(t2s_comm *c, t2s_ctx *ctx, float *dev, size_t n,
                                  t2s_error *err);
t2s_status t2s__nccl_buckets_join(t2s_comm *c, t2s_ctx *ctx, t2s_error *err);

/* The NCCL entry points as the project's one CPU-only mechanism sees them: a table whose
 * members are T2S_CUDA_SLOT(fn), so NULL in a build without CUDA (dist/nccl_comm.cu is not
 * compiled there and no stand-in functions exist). Only `create` is ever reached through an
 * empty slot (the backend is NCCL only after create succeeded); it answers with
 * t2s_slot_missing. */
typedef struct t2s_nccl_slots {
  t2s_status (*create)(t2s_comm *c, t2s_error *err);
  void (*destroy)(t2s_nccl *n);
  t2s_status (*bcast)(t2s_comm *c, void *dev, size_t bytes, int root, t2s_error *err);
  t2s_status (*allreduce_start)(t2s_comm *c, float *dev, size_t n, t2s_error *err);
  t2s_status (*wait)(t2s_comm *c, t2s_error *err);
  t2s_status (*bucket_start)(t2s_comm *c, t2s_ctx *ctx, float *dev, size_t n, t2s_error *err);
  t2s_status (*buckets_join)(t2s_comm *c, t2s_ctx *ctx, t2s_error *err);
} t2s_nccl_slots;
extern const t2s_nccl_slots t2s__nccl;

#ifdef __cplusplus
}
#endif
