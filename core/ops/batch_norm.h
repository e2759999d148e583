/* Batch normalisation: the argument struct shared by core/ops/batch_norm.c and
 * core/cuda/batch_norm.cu, and the public call. */
#pragma once
#include "core/engine.h"

typedef enum t2s_bn_mode {
  T2S_BN_TRAIN = 0,  /* batch statistics; running stats updated; grads to x, gamma, beta */
  T2S_BN_EVAL,       /* running statistics; grads to x, gamma, beta */
  T2S_BN_FROZEN,     /* running statistics; gamma/beta get no gradient (mmseg frozen BN) */
} t2s_bn_mode;
typedef struct t2s_bn_args {
  t2s_bn_mode mode;
  float momentum, eps;
} t2s_bn_args;
/* Running statistics follow PyTorch: running = (1 - momentum) running + momentum batch,
 * with the unbiased batch variance. With ctx->sync_bn and ctx->stat_allreduce the
 * per-channel sums are reduced over ranks (forward and backward). */
t2s_tensor *t2s_batch_norm(t2s_ctx *ctx, t2s_tensor *x, t2s_tensor *gamma, t2s_tensor *beta,
                           t2s_tensor *running_mean, t2s_tensor *running_var, t2s_bn_mode mode,
                           float momentum, float eps);
