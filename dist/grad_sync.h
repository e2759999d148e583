/* Gradient averaging over ranks in buckets that start while backward is still running.
 *
 * The flat gradient buffer (core/params.h) holds the parameters in reverse registration
 * order, i.e. the order in which backward finishes them, so buckets are contiguous
 * slices of it, cut at parameter boundaries once they reach bucket_bytes. A parameter's
 * gradient is final once every tape node that takes it as an input has run backward:
 * t2s_grad_sync_begin counts those uses on the tape, the ctx->after_backward_node hook
 * counts them down, and a bucket whose parameters are all final is started at once
 * (MPI_Iallreduce on the CPU; ncclAllReduce with ncclAvg on a side stream ordered by
 * CUDA events on the GPU). Buckets start strictly in order, so every rank issues the
 * same collectives in the same sequence whatever its tape does. Frozen parameters
 * (requires_grad 0) and parameters the last loss does not reach are final from the
 * start: nothing waits for them.
 *
 * Use, per iteration and per trained network:
 *
 *   for each loss term k of n:
 *     forward ...;
 *     t2s_grad_sync_begin(sync, ctx, k == n - 1, &err);  // arms only before the last
 *     t2s_backward(ctx, loss_k, 1.0f);                      // buckets start in here
 *   t2s_grad_sync_finish(sync, &err);   // waits, grads /= world: the average
 *   t2s_optim_step(...);
 *
 * Each sync object has its own duplicate of the MPI communicator, so the bucket
 * all-reduces never reorder against the statistic all-reduces (SyncBN) issued in the
 * same backward. Several sync objects may be armed on one ctx: the hook chains, and
 * they must finish in the reverse order of begin. */
#pragma once
#include <stddef.h>

#include "core/engine.h"
#include "core/params.h"
#include "dist/comm.h"

#define T2S_GRAD_BUCKET_BYTES_DEFAULT ((size_t)25 << 20)  /* PyTorch DDP's 25 MiB */

typedef struct t2s_grad_sync t2s_grad_sync;

/* p must be finalised; bucket_bytes 0 means the default. Collective over ranks. */
t2s_status t2s_grad_sync_create(t2s_grad_sync **out, t2s_comm *c, t2s_params *p,
                                size_t bucket_bytes, t2s_error *err);
void t2s_grad_sync_destroy(t2s_grad_sync *s);

/* Call right before each backward of the iteration with last = 1 before the last one
 * (earlier calls, last = 0, do nothing: their gradients accumulate locally). Counts the
 * parameter uses on ctx's tape and installs the hook. */
t2s_status t2s_grad_sync_begin(t2s_grad_sync *s, t2s_ctx *ctx, int last, t2s_error *err);
/* After the last backward: starts what is left, waits for every bucket (with the
 * communicator's deadline) and divides by the world size; removes the hook. On the GPU
 * the compute stream waits for the side stream (no host synchronisation). */
t2s_status t2s_grad_sync_finish(t2s_grad_sync *s, t2s_error *err);

int t2s_grad_sync_buckets(const t2s_grad_sync *s);
/* Buckets of the last iteration that started inside backward (the overlap). */
int t2s_grad_sync_started_early(const t2s_grad_sync *s);
/* Seconds spent inside t2s_grad_sync_finish since create: the communication that
 * backward did not hide (summed over iterations; divide by the step time for the share).
 * On NCCL runs finish only queues a wait on the GPU stream, so this host time stays near
 * zero: the exposed time there shows up as a longer step (t2sda_bench scaling measures
 * it with device synchronisation). */
double t2s_grad_sync_wait_seconds(const t2s_grad_sync *s);
