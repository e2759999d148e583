#include "core/nn/dlv2_head.h"

#include <stdio.h>

t2s_status t2s_dlv2_head_build(t2s_dlv2_head *h, t2s_params *p, const char *prefix,
                               int64_t in_channels, int num_classes, const int *dilations,
                               int n_dilations, t2s_error *err) {
  if (n_dilations < 1 || n_dilations > T2S_DLV2_MAX_BRANCHES)
    return t2s_error_set(err, T2S_ERR_INVALID,
                         "model.decode_head.dilations: %d values given, the DeepLab-V2 head takes 1 to %d",
                         n_dilations, T2S_DLV2_MAX_BRANCHES);
  h->n_branches = n_dilations;
  for (int i = 0; i < n_dilations; i++) {
    int d = dilations[i];
    char name[160];
    snprintf(name, sizeof name, "%s.aspp_modules.%d.conv", prefix, i);
    /* mmseg's decode heads initialise the classifier with normal(0, 0.01) */
    t2s_status st = t2s_conv_build(&h->branch[i], p, name, in_channels, num_classes, d == 1 ? 1 : 3,
                                   1, d == 1 ? 0 : d, d, 1, 1, T2S_INIT_NORMAL, 0.01f, err);
    if (st != T2S_OK) return st;
  }
  return T2S_OK;
}

t2s_tensor *t2s_dlv2_head_forward(t2s_ctx *ctx, const t2s_dlv2_head *h, t2s_tensor *x) {
  t2s_tensor *sum = t2s_conv_forward(ctx, &h->branch[0], x);
  for (int i = 1; i < h->n_branches; i++) sum = t2s_add(ctx, sum, t2s_conv_forward(ctx, &h->branch[i], x));
  return sum;
}
