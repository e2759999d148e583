/* Public op functions added for the Mix Transformer (MiT) and its heads; same
 * conventions as core/ops.h (outputs in the pass arena, NULL with ctx->err set
 * on error). Token sequences are 3-d (N, L, C) tensors, C innermost. */
#pragma once
#include "core/ops.h"

/* ---- multi-head attention (core/ops/attention.c) ---------------------------- */
/* q (N, L, C) and kv (N, S, 2C) -- the output of one key-value projection, keys in
 * columns [0, C), values in [C, 2C) -- with `heads` heads of d = C / heads
 * channels (head h owns columns [h d, (h+1) d) of q, k and v) ->
 *   out_h = softmax(q_h k_h^T / sqrt(d)) v_h     (N, L, C), heads side by side.
 * The L x S probabilities of one (sample, head) are the only quadratic buffer; the
 * spatial reduction of MiT keeps S = L / sr^2 small. */
t2s_tensor *t2s_attention(t2s_ctx *ctx, t2s_tensor *q, t2s_tensor *kv, int heads);

/* ---- token layout (core/ops/permute.c) ------------------------------------- */
/* (N, C, H, W) -> (N, H W, C): image to token sequence (flatten(2).transpose(1, 2)). */
t2s_tensor *t2s_nchw_to_tokens(t2s_ctx *ctx, t2s_tensor *x);
/* (N, L, C) with L = h w -> (N, C, h, w): token sequence back to an image. */
t2s_tensor *t2s_tokens_to_nchw(t2s_ctx *ctx, t2s_tensor *x, int h, int w);

/* ---- structured dropout (core/ops/drop_path.c) ------------------------------ */
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
