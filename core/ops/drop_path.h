/* Structured dropout (the op drop_path): the argument struct shared by
 * core/ops/drop_path.c and core/cuda/drop_path.cu, and the public calls. */
#pragma once
#include "core/engine.h"

typedef struct t2s_drop_path_args {
  float p;
  t2s_rng_key key;
  int64_t block;  /* elements per block in LOGICAL order: prod(shape[mask_dims..]) */
  int64_t first;  /* global index of the first block (ctx->sample_offset x blocks per sample) */
} t2s_drop_path_args;
/* Zeroes whole blocks: every element whose first `mask_dims` indices are equal
 * shares one Bernoulli(1 - p) draw (from key and the block's flat index); kept
 * blocks are scaled by 1 / (1 - p). Only while ctx->training and p > 0; otherwise
 * returns x itself. mask_dims 1: stochastic depth (timm drop_path, one draw per
 * sample); 2 on (N, C, H, W): channel dropout (torch.nn.Dropout2d). */
t2s_tensor *t2s_drop_blocks(t2s_ctx *ctx, t2s_tensor *x, float p, t2s_rng_key key,
                            int mask_dims);
static inline t2s_tensor *t2s_drop_path(t2s_ctx *ctx, t2s_tensor *x, float p, t2s_rng_key key) {
  return t2s_drop_blocks(ctx, x, p, key, 1);
}
static inline t2s_tensor *t2s_dropout2d(t2s_ctx *ctx, t2s_tensor *x, float p, t2s_rng_key key) {
  return t2s_drop_blocks(ctx, x, p, key, 2);
}
