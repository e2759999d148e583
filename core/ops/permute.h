/* Image <-> token layout (the op tokens_transpose): the argument struct shared by
 * core/ops/permute.c and core/cuda/permute.cu, and the public calls. */
#pragma once
#include "core/engine.h"

typedef struct t2s_transpose_args {
  int64_t n, a, b;  /* the input viewed as (n, a, b) row-major, the output as (n, b, a) */
} t2s_transpose_args;
/* (N, C, H, W) -> (N, H W, C): image to token sequence (flatten(2).transpose(1, 2)). */
t2s_tensor *t2s_nchw_to_tokens(t2s_ctx *ctx, t2s_tensor *x);
/* (N, L, C) with L = h w -> (N, C, h, w): token sequence back to an image. */
t2s_tensor *t2s_tokens_to_nchw(t2s_ctx *ctx, t2s_tensor *x, int h, int w);
