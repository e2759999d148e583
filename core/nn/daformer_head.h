/* The multi-level decode heads of DAFormer (daformer_head.py, segformer_head.py).
 * All three embed each of the four encoder levels to `channels` with a linear
 * layer per token, upsample levels 2..4 bilinearly (align_corners = False) to the
 * stride-4 grid of level 1, concatenate (level 1 first) and fuse to `channels`:
 *   daformer_sepaspp: ASPPWrapper(sep=True, dilations 1, 6, 12, 18, no pooling):
 *       branch d = 1 : conv1x1 + BN + ReLU                    fuse_layer.aspp_modules.0.conv/.bn
 *       branch d > 1 : depthwise 3x3 (dilation d) + BN + ReLU, fuse_layer.aspp_modules.<k>.
 *                      pointwise 1x1 + BN + ReLU                 depthwise_conv/pointwise_conv
 *       concat of the branches -> conv3x3 + BN + ReLU           fuse_layer.bottleneck.conv/.bn
 *       embeddings: decode_head.embed_layers.<i>.proj
 *   daformer_conv1:   conv1x1 + BN + ReLU                      fuse_layer.conv/.bn
 *   segformer_mlp:    conv1x1 + BN + ReLU                      linear_fuse.conv/.bn
 *       embeddings: decode_head.linear_c.<i>.proj
 * then channel dropout (nn.Dropout2d) and a 1x1 classifier with bias (conv_seg, or
 * linear_pred for segformer_mlp). Convolutions followed by BN have no bias
 * (mmcv ConvModule). The fused map (N, channels, H/4, W/4) is what the projection
 * head of the pulling loss reads. */
#pragma once
#include "core/nn/mit.h"

#define T2S_DAF_LEVELS 4
#define T2S_DAF_MAX_DILATIONS 8

typedef enum t2s_daf_kind {
  T2S_DAF_SEPASPP = 0,
  T2S_DAF_CONV1,
  T2S_DAF_SEGFORMER_MLP,
} t2s_daf_kind;

typedef struct t2s_daf_cfg {
  t2s_daf_kind kind;
  int channels;                          /* 256 */
  float dropout;                         /* 0.1 */
  t2s_norm_kind norm;                    /* syncbn in DAFormer */
  int dilations[T2S_DAF_MAX_DILATIONS];  /* 1, 6, 12, 18 */
  int n_dilations;
} t2s_daf_cfg;

typedef struct t2s_daf_branch {
  int separable;
  t2s_conv conv, pw;  /* conv: the 1x1 (d = 1) or the depthwise 3x3; pw: pointwise */
  t2s_bn bn, pw_bn;
} t2s_daf_branch;

typedef struct t2s_daformer_head {
  t2s_daf_cfg cfg;
  t2s_linear_layer embed[T2S_DAF_LEVELS];
  t2s_daf_branch branch[T2S_DAF_MAX_DILATIONS];  /* sepaspp */
  t2s_conv fuse;                                 /* sepaspp: the bottleneck */
  t2s_bn fuse_bn;
  t2s_conv cls;
} t2s_daformer_head;

t2s_daf_cfg t2s_daf_default_cfg(t2s_daf_kind kind);
t2s_status t2s_daformer_head_build(t2s_daformer_head *h, t2s_params *p, const char *prefix,
                                   const int64_t in_channels[T2S_DAF_LEVELS], int num_classes,
                                   const t2s_daf_cfg *cfg, t2s_error *err);
/* feats: the four encoder levels. Returns the logits (N, classes, H1, W1); *fused gets
 * the fused map before dropout when non-NULL. */
t2s_tensor *t2s_daformer_head_forward(t2s_ctx *ctx, const t2s_daformer_head *h,
                                      t2s_tensor *feats[T2S_DAF_LEVELS], t2s_tensor **fused);
