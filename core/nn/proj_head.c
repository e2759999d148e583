#include "core/nn/proj_head.h"

#include <stdio.h>

t2s_status t2s_proj_head_build(t2s_proj_head *h, t2s_params *p, const char *prefix,
                               int64_t in_channels, int dim, t2s_norm_kind norm, t2s_error *err) {
  char name[160];
  h->dim = dim;
  int64_t mid = dim;  /* the hidden width equals the output width D */
  snprintf(name, sizeof name, "%s.0", prefix);
  t2s_status st = t2s_conv_build(&h->conv1, p, name, in_channels, mid, 3, 1, 1, 1, 1, 0,
                                 T2S_INIT_KAIMING_FAN_OUT, 0, err);
  snprintf(name, sizeof name, "%s.1", prefix);
  if (!st) st = t2s_bn_build(&h->bn, p, name, mid, norm == T2S_NORM_FROZEN ? T2S_NORM_BN : norm, 0, err);
  snprintf(name, sizeof name, "%s.3", prefix);
  if (!st) st = t2s_conv_build(&h->conv2, p, name, mid, dim, 1, 1, 0, 1, 1, 1, T2S_INIT_KAIMING_FAN_OUT, 0, err);
  return st;
}

t2s_tensor *t2s_proj_head_forward(t2s_ctx *ctx, const t2s_proj_head *h, t2s_tensor *features) {
  t2s_tensor *x = t2s_conv_bn_act(ctx, &h->conv1, &h->bn, features, 1);
  return t2s_l2_normalize(ctx, t2s_conv_forward(ctx, &h->conv2, x), 1, 1e-12f);
}
