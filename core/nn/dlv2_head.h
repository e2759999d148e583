/* DeepLab-V2 head (DAFormer's DLV2Head): the sum of dilated 3x3 convolutions
 * from the backbone's last feature map straight to class logits (a 1x1 conv for
 * dilation 1). Names: decode_head.aspp_modules.<i>.conv.weight / .bias. */
#pragma once
#include "core/nn/layers.h"

#define T2S_DLV2_MAX_BRANCHES 8

typedef struct t2s_dlv2_head {
  t2s_conv branch[T2S_DLV2_MAX_BRANCHES];
  int n_branches;
} t2s_dlv2_head;

t2s_status t2s_dlv2_head_build(t2s_dlv2_head *h, t2s_params *p, const char *prefix,
                               int64_t in_channels, int num_classes, const int *dilations,
                               int n_dilations, t2s_error *err);
t2s_tensor *t2s_dlv2_head_forward(t2s_ctx *ctx, const t2s_dlv2_head *h, t2s_tensor *x);
