/* Mix Transformer encoder (SegFormer's MiT-B0..B5, as in DAFormer's
 * mix_transformer.py). Four stages; stage i:
 *   overlapping patch embedding: conv k_i x k_i, stride s_i, padding k_i / 2, then
 *     layer norm over channels (tokens (N, L, C), L = H_i W_i)
 *   depth_i blocks, each   x += drop_path(proj(attention(q(LN1 x), kv(reduce(LN1 x)))))
 *                          x += drop_path(fc2(gelu(dwconv3x3(fc1(LN2 x)))))
 *     reduce = conv sr x sr stride sr + layer norm when sr_i > 1 (keys/values on
 *     an L / sr^2 grid), identity otherwise
 *   layer norm, then back to (N, C_i, H_i, W_i): the stage's output.
 * Strides 4, 8, 16, 32. Names (DAFormer / original SegFormer):
 *   backbone.patch_embed{i}.proj/.norm, backbone.block{i}.{j}.norm1,
 *   .attn.q/.kv/.proj/.sr/.norm, .norm2, .mlp.fc1/.mlp.dwconv.dwconv/.mlp.fc2,
 *   backbone.norm{i}   (i = 1..4, j = 0..depth_i-1). */
#pragma once
#include "core/nn/layers.h"
#include "core/ops.h"

#define T2S_MIT_STAGES 4

typedef struct t2s_mit_cfg {
  int embed_dims[T2S_MIT_STAGES];
  int heads[T2S_MIT_STAGES];
  int depths[T2S_MIT_STAGES];
  int sr_ratios[T2S_MIT_STAGES];
  int patch_sizes[T2S_MIT_STAGES];  /* 7, 3, 3, 3 */
  int strides[T2S_MIT_STAGES];      /* 4, 2, 2, 2 */
  int mlp_ratio;                    /* 4 */
  int in_channels;                  /* 3 */
  float ln_eps;                     /* block and stage norms: 1e-6 */
  float ln_eps_embed;               /* patch-embedding and key/value norms: 1e-5 (these use
                                     * nn.LayerNorm's default in mix_transformer.py) */
  float drop_path_rate;             /* stochastic depth of the last block; linear from 0 */
} t2s_mit_cfg;

typedef struct t2s_linear_layer {
  t2s_tensor *w, *b;  /* (out, in) as torch.nn.Linear, bias (out) */
} t2s_linear_layer;

typedef struct t2s_ln_layer {
  t2s_tensor *w, *b;
  float eps;
} t2s_ln_layer;

typedef struct t2s_mit_block {
  t2s_ln_layer norm1, norm2, attn_norm;
  t2s_linear_layer q, kv, proj, fc1, fc2;
  t2s_conv sr, dwconv;
  int heads, sr_ratio;
  float drop_path;
} t2s_mit_block;

typedef struct t2s_mit_stage {
  t2s_conv patch;
  t2s_ln_layer patch_norm, norm;
  t2s_mit_block *blocks;
  int depth;
} t2s_mit_stage;

typedef struct t2s_mit {
  t2s_mit_cfg cfg;
  t2s_mit_stage stage[T2S_MIT_STAGES];
  int64_t out_channels[T2S_MIT_STAGES];
} t2s_mit;

/* The published variants by name ("mit_b0" .. "mit_b5"); T2S_ERR_INVALID naming the
 * accepted names otherwise. drop_path_rate starts at 0.1 (DAFormer). */
t2s_status t2s_mit_cfg_by_name(const char *name, t2s_mit_cfg *cfg, t2s_error *err);

/* Registers every tensor under `prefix` ("backbone") in forward order. */
t2s_status t2s_mit_build(t2s_mit *net, t2s_params *p, const char *prefix, const t2s_mit_cfg *cfg,
                         t2s_error *err);
void t2s_mit_free(t2s_mit *net);
/* image (N, in_channels, H, W) -> the four stage outputs (N, C_i, H_i, W_i). */
t2s_status t2s_mit_forward(t2s_ctx *ctx, const t2s_mit *net, t2s_tensor *image,
                           t2s_tensor *outs[T2S_MIT_STAGES]);

/* Shared with the heads: a torch.nn.Linear (trunc_normal(0.02) weight, zero bias) and a
 * LayerNorm (ones, zeros; T2S_PARAM_NORM, so no weight decay). name is the full prefix. */
t2s_status t2s_linear_layer_build(t2s_linear_layer *l, t2s_params *p, const char *name,
                                  int64_t in, int64_t out, t2s_error *err);
t2s_status t2s_ln_layer_build(t2s_ln_layer *l, t2s_params *p, const char *name, int64_t c,
                              float eps, t2s_error *err);
