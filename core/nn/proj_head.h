/* Projection head of the pulling loss (docs/method.md "Networks"): conv3x3 -> BN ->
 * ReLU -> conv1x1 to D, then L2 normalisation per pixel. It reads the decoder
 * feature (DeepLab-V2: layer4; DAFormer: the fused 256-channel map). Names:
 * proj_head.0.weight (conv3x3), proj_head.1.* (BN), proj_head.3.weight/.bias. */
#pragma once
#include "core/nn/layers.h"

typedef struct t2s_proj_head {
  t2s_conv conv1, conv2;
  t2s_bn bn;
  int dim;
} t2s_proj_head;

t2s_status t2s_proj_head_build(t2s_proj_head *h, t2s_params *p, const char *prefix,
                               int64_t in_channels, int dim, t2s_norm_kind norm, t2s_error *err);
/* (N, C, h, w) -> (N, D, h, w) with unit L2 norm per pixel. */
t2s_tensor *t2s_proj_head_forward(t2s_ctx *ctx, const t2s_proj_head *h, t2s_tensor *features);
