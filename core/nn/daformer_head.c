#include "core/nn/daformer_head.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Purpose tag of the head's channel-dropout RNG keys ("DAFd"). */
#define DROPOUT_PURPOSE 0x44414664u

t2s_daf_cfg t2s_daf_default_cfg(t2s_daf_kind kind) {
  t2s_daf_cfg c;
  memset(&c, 0, sizeof c);
  c.kind = kind;
  c.channels = 256;
  c.dropout = 0.1f;
  c.norm = T2S_NORM_SYNCBN;
  int d[4] = {1, 6, 12, 18};
  memcpy(c.dilations, d, sizeof d);
  c.n_dilations = 4;
  return c;
}

/* mmcv ConvModule: conv without bias (kaiming normal, fan_out) + BN (+ ReLU at use). */
static t2s_status conv_module(t2s_conv *c, t2s_bn *bn, t2s_params *p, const char *prefix,
                              int64_t cin, int64_t cout, int k, int dil, int groups,
                              t2s_norm_kind norm, t2s_error *err) {
  char n[160];
  int pad = k == 1 ? 0 : dil * (k / 2);
  float std = sqrtf(2.0f / (float)((int64_t)k * k * cout / groups));
  snprintf(n, sizeof n, "%s.conv", prefix);
  t2s_status st = t2s_conv_build(c, p, n, cin, cout, k, 1, pad, dil, groups, 0, T2S_INIT_NORMAL,
                                 std, err);
  snprintf(n, sizeof n, "%s.bn", prefix);
  return st == T2S_OK ? t2s_bn_build(bn, p, n, cout, norm, 0, err) : st;
}

static t2s_status build_sepaspp(t2s_daformer_head *h, t2s_params *p, const char *prefix,
                                int64_t cin, t2s_error *err) {
  const t2s_daf_cfg *cfg = &h->cfg;
  int64_t ch = cfg->channels;
  char n[160];
  t2s_status st = T2S_OK;
  for (int k = 0; k < cfg->n_dilations && st == T2S_OK; k++) {
    t2s_daf_branch *b = &h->branch[k];
    int d = cfg->dilations[k];
    b->separable = d > 1;
    if (!b->separable) {
      snprintf(n, sizeof n, "%s.fuse_layer.aspp_modules.%d", prefix, k);
      st = conv_module(&b->conv, &b->bn, p, n, cin, ch, 1, 1, 1, cfg->norm, err);
      continue;
    }
    snprintf(n, sizeof n, "%s.fuse_layer.aspp_modules.%d.depthwise_conv", prefix, k);
    st = conv_module(&b->conv, &b->bn, p, n, cin, cin, 3, d, (int)cin, cfg->norm, err);
    snprintf(n, sizeof n, "%s.fuse_layer.aspp_modules.%d.pointwise_conv", prefix, k);
    if (st == T2S_OK) st = conv_module(&b->pw, &b->pw_bn, p, n, cin, ch, 1, 1, 1, cfg->norm, err);
  }
  snprintf(n, sizeof n, "%s.fuse_layer.bottleneck", prefix);
  if (st == T2S_OK)
    st = conv_module(&h->fuse, &h->fuse_bn, p, n, cfg->n_dilations * ch, ch, 3, 1, 1, cfg->norm,
                     err);
  return st;
}

t2s_status t2s_daformer_head_build(t2s_daformer_head *h, t2s_params *p, const char *prefix,
                                   const int64_t in_channels[T2S_DAF_LEVELS], int num_classes,
                                   const t2s_daf_cfg *cfg, t2s_error *err) {
  memset(h, 0, sizeof *h);
  h->cfg = *cfg;
  if (cfg->channels < 1 || !(cfg->dropout >= 0.0f && cfg->dropout < 1.0f) ||
      (cfg->kind == T2S_DAF_SEPASPP &&
       (cfg->n_dilations < 1 || cfg->n_dilations > T2S_DAF_MAX_DILATIONS)))
    return t2s_error_set(err, T2S_ERR_INVALID,
                         "model.decode_head: %d channels, dropout %g, %d dilations (needs >= 1 "
                         "channel, dropout in [0, 1), 1 to %d dilations for daformer_sepaspp)",
                         cfg->channels, cfg->dropout, cfg->n_dilations, T2S_DAF_MAX_DILATIONS);
  int mlp = cfg->kind == T2S_DAF_SEGFORMER_MLP;
  char n[160];
  t2s_status st = T2S_OK;
  for (int i = 0; i < T2S_DAF_LEVELS && st == T2S_OK; i++) {
    snprintf(n, sizeof n, "%s.%s.%d.proj", prefix, mlp ? "linear_c" : "embed_layers", i);
    st = t2s_linear_layer_build(&h->embed[i], p, n, in_channels[i], cfg->channels, err);
  }
  int64_t cat = (int64_t)T2S_DAF_LEVELS * cfg->channels;
  if (st == T2S_OK && cfg->kind == T2S_DAF_SEPASPP) st = build_sepaspp(h, p, prefix, cat, err);
  if (st == T2S_OK && cfg->kind != T2S_DAF_SEPASPP) {
    snprintf(n, sizeof n, "%s.%s", prefix, mlp ? "linear_fuse" : "fuse_layer");
    st = conv_module(&h->fuse, &h->fuse_bn, p, n, cat, cfg->channels, 1, 1, 1, cfg->norm, err);
  }
  /* mmseg decode heads: classifier normal(0, 0.01), zero bias */
  snprintf(n, sizeof n, "%s.%s", prefix, mlp ? "linear_pred" : "conv_seg");
  if (st == T2S_OK)
    st = t2s_conv_build(&h->cls, p, n, cfg->channels, num_classes, 1, 1, 0, 1, 1, 1,
                        T2S_INIT_NORMAL, 0.01f, err);
  return st;
}

/* Linear embedding per token, back to an image, resized to the level-1 grid. */
static t2s_tensor *embed(t2s_ctx *ctx, const t2s_linear_layer *l, t2s_tensor *x, int oh, int ow) {
  if (x == NULL) return NULL;
  int h = (int)x->shape[2], w = (int)x->shape[3];
  t2s_tensor *y = t2s_linear(ctx, t2s_nchw_to_tokens(ctx, x), l->w, l->b);
  y = t2s_tokens_to_nchw(ctx, y, h, w);
  return h == oh && w == ow ? y : t2s_resize_bilinear(ctx, y, oh, ow, 0);
}

static t2s_tensor *sepaspp(t2s_ctx *ctx, const t2s_daformer_head *h, t2s_tensor *x) {
  t2s_tensor *outs[T2S_DAF_MAX_DILATIONS];
  for (int k = 0; k < h->cfg.n_dilations; k++) {
    const t2s_daf_branch *b = &h->branch[k];
    outs[k] = t2s_conv_bn_act(ctx, &b->conv, &b->bn, x, 1);
    if (b->separable) outs[k] = t2s_conv_bn_act(ctx, &b->pw, &b->pw_bn, outs[k], 1);
  }
  return t2s_conv_bn_act(ctx, &h->fuse, &h->fuse_bn, t2s_concat(ctx, outs, h->cfg.n_dilations, 1),
                         1);
}

t2s_tensor *t2s_daformer_head_forward(t2s_ctx *ctx, const t2s_daformer_head *h,
                                      t2s_tensor *feats[T2S_DAF_LEVELS], t2s_tensor **fused) {
  if (!t2s_ctx_ok(ctx) || feats[0] == NULL) return NULL;
  int oh = (int)feats[0]->shape[2], ow = (int)feats[0]->shape[3];
  t2s_tensor *levels[T2S_DAF_LEVELS];
  for (int i = 0; i < T2S_DAF_LEVELS; i++) levels[i] = embed(ctx, &h->embed[i], feats[i], oh, ow);
  t2s_tensor *x = t2s_concat(ctx, levels, T2S_DAF_LEVELS, 1);
  x = h->cfg.kind == T2S_DAF_SEPASPP ? sepaspp(ctx, h, x)
                                     : t2s_conv_bn_act(ctx, &h->fuse, &h->fuse_bn, x, 1);
  if (fused) *fused = x;
  if (ctx->training && !ctx->no_dropout && h->cfg.dropout > 0.0f)
    x = t2s_dropout2d(ctx, x, h->cfg.dropout, t2s_ctx_rng_key(ctx, DROPOUT_PURPOSE));
  return t2s_conv_forward(ctx, &h->cls, x);
}
