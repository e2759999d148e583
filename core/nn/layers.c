#include "core/nn/layers.h"

#include <stdio.h>

t2s_tensor *t2s_param_add_named(t2s_params *p, const char *prefix, const char *suffix,
                                t2s_param_kind kind, int ndim, const int64_t *shape, t2s_init init,
                                float scale, t2s_error *err) {
  char name[160];
  snprintf(name, sizeof name, "%s.%s", prefix, suffix);
  t2s_tensor *t = t2s_params_add(p, name, kind, ndim, shape, init, scale);
  if (t == NULL) t2s_error_set(err, T2S_ERR_NOMEM, "could not register parameter '%s'", name);
  return t;
}

t2s_status t2s_conv_build(t2s_conv *c, t2s_params *p, const char *name, int64_t cin, int64_t cout,
                          int k, int stride, int pad, int dil, int groups, int bias,
                          t2s_init init, float init_scale, t2s_error *err) {
  if (groups < 1 || cin % groups || cout % groups)
    return t2s_error_set(err, T2S_ERR_INVALID, "%s: %lld -> %lld channels are not divisible by %d groups",
                         name, (long long)cin, (long long)cout, groups);
  int64_t wshape[4] = {cout, cin / groups, k, k};
  c->w = t2s_param_add_named(p, name, "weight", T2S_PARAM_WEIGHT, 4, wshape, init, init_scale,
                             err);
  c->b = NULL;
  if (bias)
    c->b = t2s_param_add_named(p, name, "bias", T2S_PARAM_BIAS, 1, &cout, T2S_INIT_ZEROS, 0, err);
  c->a = (t2s_conv2d_args){stride, stride, pad, pad, dil, dil, groups};
  return (c->w && (!bias || c->b)) ? T2S_OK : T2S_ERR_NOMEM;
}

t2s_tensor *t2s_conv_forward(t2s_ctx *ctx, const t2s_conv *c, t2s_tensor *x) {
  return t2s_conv2d(ctx, x, c->w, c->b, &c->a);
}

t2s_status t2s_bn_build(t2s_bn *bn, t2s_params *p, const char *name, int64_t channels,
                        t2s_norm_kind kind, int norm_eval, t2s_error *err) {
  bn->gamma = t2s_param_add_named(p, name, "weight", T2S_PARAM_NORM, 1, &channels,
                                  T2S_INIT_ONES, 0, err);
  bn->beta = t2s_param_add_named(p, name, "bias", T2S_PARAM_NORM, 1, &channels,
                                 T2S_INIT_ZEROS, 0, err);
  bn->mean = t2s_param_add_named(p, name, "running_mean", T2S_PARAM_BUFFER, 1, &channels,
                                 T2S_INIT_ZEROS, 0, err);
  bn->var = t2s_param_add_named(p, name, "running_var", T2S_PARAM_BUFFER, 1, &channels,
                                T2S_INIT_ONES, 0, err);
  bn->kind = kind;
  bn->norm_eval = norm_eval;
  bn->momentum = 0.1f;
  bn->eps = 1e-5f;
  if (kind == T2S_NORM_FROZEN && bn->gamma && bn->beta) {
    /* frozen: not trained, so the optimizer must not touch them either */
    bn->gamma->requires_grad = bn->beta->requires_grad = 0;
  }
  return (bn->gamma && bn->beta && bn->mean && bn->var) ? T2S_OK : T2S_ERR_NOMEM;
}

t2s_tensor *t2s_bn_forward(t2s_ctx *ctx, const t2s_bn *bn, t2s_tensor *x) {
  t2s_bn_mode mode;
  if (bn->kind == T2S_NORM_FROZEN) mode = T2S_BN_FROZEN;
  else if (!ctx->training || bn->norm_eval) mode = T2S_BN_EVAL;
  else mode = T2S_BN_TRAIN;
  return t2s_batch_norm(ctx, x, bn->gamma, bn->beta, bn->mean, bn->var, mode, bn->momentum, bn->eps);
}

t2s_tensor *t2s_conv_bn_act(t2s_ctx *ctx, const t2s_conv *c, const t2s_bn *bn, t2s_tensor *x,
                            int relu) {
  t2s_tensor *y = t2s_bn_forward(ctx, bn, t2s_conv_forward(ctx, c, x));
  return relu ? t2s_relu(ctx, y) : y;
}
