/* ResNet V1c (mmseg ResNetV1c): deep stem of three 3x3 convs, BasicBlock (depth
 * 18/34) or Bottleneck (50/101/152, stride on the 3x3 conv, "pytorch" style),
 * dilated stages for output stride 8 (strides 1,2,1,1 and dilations 1,1,2,4 by
 * default). Parameter names follow mmseg: backbone.stem.0.weight,
 * backbone.layer1.0.conv1.weight, backbone.layer1.0.downsample.1.running_mean... */
#pragma once
#include "core/nn/layers.h"

typedef struct t2s_resnet_cfg {
  int depth;            /* 18, 34, 50, 101, 152 */
  int base_channels;    /* planes of stage 1 (64); stage i has base * 2^i */
  int stem_channels;    /* 64 */
  int strides[4];
  int dilations[4];
  int contract_dilation;  /* first block of a dilated stage uses dilation / 2 */
  t2s_norm_kind norm;
  int norm_eval;
} t2s_resnet_cfg;

typedef struct t2s_resnet_block {
  int bottleneck;
  t2s_conv conv1, conv2, conv3;
  t2s_bn bn1, bn2, bn3;
  int has_downsample;
  t2s_conv down;
  t2s_bn down_bn;
} t2s_resnet_block;

typedef struct t2s_resnet {
  t2s_resnet_cfg cfg;
  t2s_conv stem[3];
  t2s_bn stem_bn[3];
  t2s_resnet_block *blocks;  /* all stages, in order */
  int n_blocks[4];
  int64_t out_channels[4];
} t2s_resnet;

t2s_resnet_cfg t2s_resnet_default_cfg(int depth);
/* Registers every tensor under `prefix` ("backbone"). */
t2s_status t2s_resnet_build(t2s_resnet *net, t2s_params *p, const char *prefix,
                            const t2s_resnet_cfg *cfg, t2s_error *err);
void t2s_resnet_free(t2s_resnet *net);
/* image (N, 3, H, W) -> the four stage outputs (strides 4, 8, 8, 8 by default). */
t2s_status t2s_resnet_forward(t2s_ctx *ctx, const t2s_resnet *net, t2s_tensor *image,
                              t2s_tensor *outs[4]);
