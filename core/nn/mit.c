#include "core/nn/mit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The published MiT variants (SegFormer, Table 6): widths, heads and spatial
 * reductions are shared by B1..B5, only the depths grow; B0 is half as wide. */
static const struct {
  const char *name;
  int dims[4], heads[4], depths[4], sr[4];
} variants[] = {
    {"mit_b0", {32, 64, 160, 256}, {1, 2, 5, 8}, {2, 2, 2, 2}, {8, 4, 2, 1}},
    {"mit_b1", {64, 128, 320, 512}, {1, 2, 5, 8}, {2, 2, 2, 2}, {8, 4, 2, 1}},
    {"mit_b2", {64, 128, 320, 512}, {1, 2, 5, 8}, {3, 4, 6, 3}, {8, 4, 2, 1}},
    {"mit_b3", {64, 128, 320, 512}, {1, 2, 5, 8}, {3, 4, 18, 3}, {8, 4, 2, 1}},
    {"mit_b4", {64, 128, 320, 512}, {1, 2, 5, 8}, {3, 8, 27, 3}, {8, 4, 2, 1}},
    {"mit_b5", {64, 128, 320, 512}, {1, 2, 5, 8}, {3, 6, 40, 3}, {8, 4, 2, 1}},
};

/* Purpose tag of the drop-path RNG keys ("MiTd"). */
#define DROP_PATH_PURPOSE 0x4d695464u

t2s_status t2s_mit_cfg_by_name(const char *name, t2s_mit_cfg *cfg, t2s_error *err) {
  for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
    if (strcmp(name, variants[v].name) != 0) continue;
    memset(cfg, 0, sizeof *cfg);
    for (int i = 0; i < T2S_MIT_STAGES; i++) {
      cfg->embed_dims[i] = variants[v].dims[i];
      cfg->heads[i] = variants[v].heads[i];
      cfg->depths[i] = variants[v].depths[i];
      cfg->sr_ratios[i] = variants[v].sr[i];
      cfg->patch_sizes[i] = i == 0 ? 7 : 3;
      cfg->strides[i] = i == 0 ? 4 : 2;
    }
    cfg->mlp_ratio = 4;
    cfg->in_channels = 3;
    cfg->ln_eps = 1e-6f;
    cfg->ln_eps_embed = 1e-5f;
    cfg->drop_path_rate = 0.1f;
    return T2S_OK;
  }
  return t2s_error_set(err, T2S_ERR_INVALID,
                       "model.backbone.type: '%s' is not a Mix Transformer (use mit_b0, mit_b1, "
                       "mit_b2, mit_b3, mit_b4 or mit_b5)", name);
}

t2s_status t2s_linear_layer_build(t2s_linear_layer *l, t2s_params *p, const char *name,
                                  int64_t in, int64_t out, t2s_error *err) {
  int64_t shape[2] = {out, in};
  l->w = t2s_param_add_named(p, name, "weight", T2S_PARAM_WEIGHT, 2, shape,
                             T2S_INIT_TRUNC_NORMAL, 0.02f, err);
  l->b = t2s_param_add_named(p, name, "bias", T2S_PARAM_BIAS, 1, &out, T2S_INIT_ZEROS, 0, err);
  return l->w && l->b ? T2S_OK : T2S_ERR_NOMEM;
}

t2s_status t2s_ln_layer_build(t2s_ln_layer *l, t2s_params *p, const char *name, int64_t c,
                              float eps, t2s_error *err) {
  l->w = t2s_param_add_named(p, name, "weight", T2S_PARAM_NORM, 1, &c, T2S_INIT_ONES, 0, err);
  l->b = t2s_param_add_named(p, name, "bias", T2S_PARAM_NORM, 1, &c, T2S_INIT_ZEROS, 0, err);
  l->eps = eps;
  return l->w && l->b ? T2S_OK : T2S_ERR_NOMEM;
}

/* SegFormer's conv init: normal(0, sqrt(2 / fan_out)), fan_out = k^2 out / groups. */
static t2s_status conv_build(t2s_conv *c, t2s_params *p, const char *name, int64_t cin,
                             int64_t cout, int k, int stride, int pad, int groups, t2s_error *err) {
  float std = sqrtf(2.0f / (float)((int64_t)k * k * cout / groups));
  return t2s_conv_build(c, p, name, cin, cout, k, stride, pad, 1, groups, 1, T2S_INIT_NORMAL, std,
                        err);
}

static t2s_status block_build(t2s_mit_block *b, t2s_params *p, const char *name, int64_t c,
                              const t2s_mit_cfg *cfg, int stage, float drop_path, t2s_error *err) {
  char n[160];
  int64_t hidden = (int64_t)cfg->mlp_ratio * c;
  b->heads = cfg->heads[stage];
  b->sr_ratio = cfg->sr_ratios[stage];
  b->drop_path = drop_path;
  t2s_status st;
#define STEP(call) \
  if ((st = (call)) != T2S_OK) return st
#define NAME(suffix) (snprintf(n, sizeof n, "%s.%s", name, suffix), n)
  STEP(t2s_ln_layer_build(&b->norm1, p, NAME("norm1"), c, cfg->ln_eps, err));
  STEP(t2s_linear_layer_build(&b->q, p, NAME("attn.q"), c, c, err));
  if (b->sr_ratio > 1) {
    STEP(conv_build(&b->sr, p, NAME("attn.sr"), c, c, b->sr_ratio, b->sr_ratio, 0, 1, err));
    STEP(t2s_ln_layer_build(&b->attn_norm, p, NAME("attn.norm"), c, cfg->ln_eps_embed, err));
  }
  STEP(t2s_linear_layer_build(&b->kv, p, NAME("attn.kv"), c, 2 * c, err));
  STEP(t2s_linear_layer_build(&b->proj, p, NAME("attn.proj"), c, c, err));
  STEP(t2s_ln_layer_build(&b->norm2, p, NAME("norm2"), c, cfg->ln_eps, err));
  STEP(t2s_linear_layer_build(&b->fc1, p, NAME("mlp.fc1"), c, hidden, err));
  STEP(conv_build(&b->dwconv, p, NAME("mlp.dwconv.dwconv"), hidden, hidden, 3, 1, 1, (int)hidden,
                  err));
  STEP(t2s_linear_layer_build(&b->fc2, p, NAME("mlp.fc2"), hidden, c, err));
#undef NAME
#undef STEP
  return T2S_OK;
}

static t2s_status check_cfg(const t2s_mit_cfg *cfg, t2s_error *err) {
  for (int i = 0; i < T2S_MIT_STAGES; i++)
    if (cfg->embed_dims[i] < 1 || cfg->heads[i] < 1 || cfg->embed_dims[i] % cfg->heads[i] ||
        cfg->depths[i] < 0 || cfg->sr_ratios[i] < 1 || cfg->patch_sizes[i] < 1 ||
        cfg->strides[i] < 1)
      return t2s_error_set(err, T2S_ERR_INVALID,
                           "MiT stage %d: width %d, %d heads (must divide the width), depth %d, "
                           "sr %d, patch %d, stride %d are not a valid stage",
                           i + 1, cfg->embed_dims[i], cfg->heads[i], cfg->depths[i],
                           cfg->sr_ratios[i], cfg->patch_sizes[i], cfg->strides[i]);
  if (cfg->mlp_ratio < 1 || cfg->in_channels < 1 || !(cfg->drop_path_rate >= 0.0f &&
                                                      cfg->drop_path_rate < 1.0f))
    return t2s_error_set(err, T2S_ERR_INVALID,
                         "MiT: mlp ratio %d, %d input channels, drop path rate %g (needs >= 1, "
                         ">= 1, [0, 1))", cfg->mlp_ratio, cfg->in_channels, cfg->drop_path_rate);
  return T2S_OK;
}

t2s_status t2s_mit_build(t2s_mit *net, t2s_params *p, const char *prefix, const t2s_mit_cfg *cfg,
                         t2s_error *err) {
  memset(net, 0, sizeof *net);
  net->cfg = *cfg;
  t2s_status st = check_cfg(cfg, err);
  if (st != T2S_OK) return st;
  int total = 0, cur = 0;
  for (int i = 0; i < T2S_MIT_STAGES; i++) total += cfg->depths[i];
  int64_t cin = cfg->in_channels;
  char n[160];
  for (int i = 0; i < T2S_MIT_STAGES && st == T2S_OK; i++) {
    t2s_mit_stage *s = &net->stage[i];
    int64_t c = cfg->embed_dims[i];
    int k = cfg->patch_sizes[i];
    snprintf(n, sizeof n, "%s.patch_embed%d.proj", prefix, i + 1);
    st = conv_build(&s->patch, p, n, cin, c, k, cfg->strides[i], k / 2, 1, err);
    snprintf(n, sizeof n, "%s.patch_embed%d.norm", prefix, i + 1);
    if (st == T2S_OK) st = t2s_ln_layer_build(&s->patch_norm, p, n, c, cfg->ln_eps_embed, err);
    s->depth = cfg->depths[i];
    s->blocks = calloc((size_t)(s->depth > 0 ? s->depth : 1), sizeof *s->blocks);
    if (s->blocks == NULL)
      return t2s_error_set(err, T2S_ERR_NOMEM, "MiT stage %d: no memory for %d blocks", i + 1,
                           s->depth);
    for (int j = 0; j < s->depth && st == T2S_OK; j++, cur++) {
      /* stochastic depth grows linearly over all blocks: torch.linspace(0, rate, total) */
      float dp = total > 1 ? cfg->drop_path_rate * (float)cur / (float)(total - 1) : 0.0f;
      snprintf(n, sizeof n, "%s.block%d.%d", prefix, i + 1, j);
      st = block_build(&s->blocks[j], p, n, c, cfg, i, dp, err);
    }
    snprintf(n, sizeof n, "%s.norm%d", prefix, i + 1);
    if (st == T2S_OK) st = t2s_ln_layer_build(&s->norm, p, n, c, cfg->ln_eps, err);
    net->out_channels[i] = c;
    cin = c;
  }
  return st;
}

void t2s_mit_free(t2s_mit *net) {
  for (int i = 0; i < T2S_MIT_STAGES; i++) {
    free(net->stage[i].blocks);
    net->stage[i].blocks = NULL;
  }
}

static t2s_tensor *ln(t2s_ctx *ctx, const t2s_ln_layer *l, t2s_tensor *x) {
  return t2s_layer_norm(ctx, x, l->w, l->b, l->eps);
}
static t2s_tensor *lin(t2s_ctx *ctx, const t2s_linear_layer *l, t2s_tensor *x) {
  return t2s_linear(ctx, x, l->w, l->b);
}
static t2s_tensor *drop_path(t2s_ctx *ctx, t2s_tensor *x, float p) {
  if (!ctx->training || ctx->no_dropout || p == 0.0f || x == NULL) return x;
  return t2s_drop_path(ctx, x, p, t2s_ctx_rng_key(ctx, DROP_PATH_PURPOSE));
}

/* Efficient self-attention: queries on all L tokens, keys and values on the
 * sr-reduced grid. x: LN1 output (N, L, C). */
static t2s_tensor *attention(t2s_ctx *ctx, const t2s_mit_block *b, t2s_tensor *x, int h, int w) {
  t2s_tensor *q = lin(ctx, &b->q, x), *src = x;
  if (b->sr_ratio > 1) {
    t2s_tensor *img = t2s_conv_forward(ctx, &b->sr, t2s_tokens_to_nchw(ctx, x, h, w));
    src = ln(ctx, &b->attn_norm, t2s_nchw_to_tokens(ctx, img));
  }
  return lin(ctx, &b->proj, t2s_attention(ctx, q, lin(ctx, &b->kv, src), b->heads));
}

/* Mix-FFN: fc1, 3x3 depthwise conv (the position information), GELU, fc2. */
static t2s_tensor *mix_ffn(t2s_ctx *ctx, const t2s_mit_block *b, t2s_tensor *x, int h, int w) {
  t2s_tensor *y = t2s_tokens_to_nchw(ctx, lin(ctx, &b->fc1, x), h, w);
  y = t2s_nchw_to_tokens(ctx, t2s_conv_forward(ctx, &b->dwconv, y));
  return lin(ctx, &b->fc2, t2s_gelu(ctx, y));
}

/* One transformer block in a liveness scope (core/engine.h): its intermediates go back
 * to the pass arena when it ends, except what its backward reads. */
static t2s_tensor *block_forward(t2s_ctx *ctx, const t2s_mit_block *b, t2s_tensor *x, int h,
                                 int w) {
  t2s_scope scope = t2s_scope_begin(ctx);
  x = t2s_add(ctx, x, drop_path(ctx, attention(ctx, b, ln(ctx, &b->norm1, x), h, w), b->drop_path));
  x = t2s_add(ctx, x, drop_path(ctx, mix_ffn(ctx, b, ln(ctx, &b->norm2, x), h, w), b->drop_path));
  t2s_scope_end(ctx, scope, &x, 1);
  return x;
}

t2s_status t2s_mit_forward(t2s_ctx *ctx, const t2s_mit *net, t2s_tensor *image,
                           t2s_tensor *outs[T2S_MIT_STAGES]) {
  t2s_tensor *x = image;
  for (int i = 0; i < T2S_MIT_STAGES; i++) {
    const t2s_mit_stage *s = &net->stage[i];
    t2s_scope scope = t2s_scope_begin(ctx);
    t2s_tensor *img = t2s_conv_forward(ctx, &s->patch, x);
    if (img == NULL) return ctx->err.status;
    int h = (int)img->shape[2], w = (int)img->shape[3];
    t2s_tensor *tok = ln(ctx, &s->patch_norm, t2s_nchw_to_tokens(ctx, img));
    for (int j = 0; j < s->depth; j++) tok = block_forward(ctx, &s->blocks[j], tok, h, w);
    x = outs[i] = t2s_tokens_to_nchw(ctx, ln(ctx, &s->norm, tok), h, w);
    t2s_scope_end(ctx, scope, &x, 1);
  }
  return ctx->err.status;
}
