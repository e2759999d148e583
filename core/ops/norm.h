/* Normalisation ops: the argument structs shared by core/ops/norm.c and
 * core/cuda/norm.cu, and the public calls. */
#pragma once
#include "core/engine.h"

typedef struct t2s_layer_norm_args {
  float eps;
} t2s_layer_norm_args;
typedef struct t2s_softmax_args {
  int dim;
} t2s_softmax_args;
typedef struct t2s_l2_normalize_args {
  int dim;
  float eps;
} t2s_l2_normalize_args;
/* Over the last dimension (C): x (..., C), gamma and beta (C). */
t2s_tensor *t2s_layer_norm(t2s_ctx *ctx, t2s_tensor *x, t2s_tensor *gamma, t2s_tensor *beta,
                           float eps);
t2s_tensor *t2s_softmax(t2s_ctx *ctx, t2s_tensor *x, int dim);
/* x / max(||x||_2, eps) along dim (dim 1 = per pixel over channels, F.normalize). */
t2s_tensor *t2s_l2_normalize(t2s_ctx *ctx, t2s_tensor *x, int dim, float eps);
