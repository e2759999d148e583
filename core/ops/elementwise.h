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
/* An f32 copy of an activation: bf16 (precision bf16 on CUDA) widened exactly, f32
 * copied. The gradient (always f32) passes through unchanged. This is where the network's
 * bf16 outputs enter the method's losses (losses/), which compute in f32. */
t2s_tensor *t2s_to_f32(t2s_ctx *ctx, t2s_tensor *x);
/* x itself when it is already f32 (or NULL), else t2s_to_f32(x): no copy in fp32 runs. */
t2s_tensor *t2s_as_f32(t2s_ctx *ctx, t2s_tensor *x);
/* sum(x * r) as a scalar; r is a constant of x's shape (loss probes, tests). */
t2s_tensor *t2s_weighted_sum(t2s_ctx *ctx, t2s_tensor *x, t2s_tensor *r);
/* Inverted dropout: zero with probability p, scale the rest by 1/(1-p). Only
 * while ctx->training; the mask bit of element i comes from (key, i). */
t2s_tensor *t2s_dropout(t2s_ctx *ctx, t2s_tensor *x, float p, t2s_rng_key key);
