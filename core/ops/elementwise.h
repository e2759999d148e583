/* Element-wise ops: the argument structs shared by core/ops/elementwise.c and
 * core/cuda/elementwise.cu, and the public calls. */
#pragma once
#include "core/engine.h"

typedef struct t2s_scale_args {
  float s;
} t2s_scale_args;
typedef struct t2s_dropout_args {
  float p;
  t2s_rng_key key;
} t2s_dropout_args;
t2s_tensor *t2s_relu(t2s_ctx *ctx, t2s_tensor *x);
t2s_tensor *t2s_gelu(t2s_ctx *ctx, t2s_tensor *x);  /* exact (erf) GELU */
t2s_tensor *t2s_add(t2s_ctx *ctx, t2s_tensor *a, t2s_tensor *b);  /* same shapes */
t2s_tensor *t2s_mul(t2s_ctx *ctx, t2s_tensor *a, t2s_tensor *b);  /* same shapes */
t2s_tensor *t2s_scale(t2s_ctx *ctx, t2s_tensor *x, float s);
/* sum(x * r) as a scalar; r is a constant of x's shape (loss probes, tests). */
t2s_tensor *t2s_weighted_sum(t2s_ctx *ctx, t2s_tensor *x, t2s_tensor *r);
/* Inverted dropout: zero with probability p, scale the rest by 1/(1-p). Only
 * while ctx->training; the mask bit of element i comes from (key, i). */
t2s_tensor *t2s_dropout(t2s_ctx *ctx, t2s_tensor *x, float p, t2s_rng_key key);
