/* A tensor header over host memory, whatever the run's device: how the losses hand
 * their host-side state (prototypes, class weights) to the caller, and how the
 * training step (launch/device_batch.h) views the loader's host batch. Moving such
 * a view to the run's device is the caller's business (launch/device_batch.h). */
#pragma once
#include "core/engine.h"

/* The header lives in the pass's host scratch; the data is the caller's. NULL with
 * ctx->err when ctx already failed or scratch runs out. 4-d views are NCHW. */
static inline t2s_tensor *t2s_host_view(t2s_ctx *ctx, t2s_dtype dtype, int ndim,
                                        const int64_t *shape, void *data) {
  if (!t2s_ctx_ok(ctx)) return NULL;
  t2s_tensor *t = t2s_host_scratch(ctx, sizeof *t);
  if (t == NULL) return NULL;
  t2s_tensor_init(t, dtype, T2S_DEV_CPU, ndim, shape, data);
  return t;
}
