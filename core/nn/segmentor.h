/* An encoder-decoder segmentation network: backbone + decode head, with its own
 * parameter set. The student, the EMA teacher and the frozen ImageNet copy are
 * three segmentors built from one model config. */
#pragma once
#include "core/nn/daformer_head.h"
#include "core/nn/dlv2_head.h"
#include "core/nn/proj_head.h"
#include "core/nn/mit.h"
#include "core/nn/resnet.h"

typedef enum t2s_backbone_type {
  T2S_BACKBONE_RESNET_V1C = 0,
  T2S_BACKBONE_MIT,  /* cfg.mit: t2s_mit_cfg_by_name("mit_b5", ...) or a custom table */
} t2s_backbone_type;
typedef enum t2s_head_type {
  T2S_HEAD_DLV2 = 0,
  T2S_HEAD_DAFORMER_SEPASPP,  /* the four multi-level heads read cfg.daformer */
  T2S_HEAD_DAFORMER_CONV1,
  T2S_HEAD_SEGFORMER_MLP,
} t2s_head_type;

typedef struct t2s_model_cfg {
  int num_classes;
  t2s_backbone_type backbone;
  t2s_resnet_cfg resnet;
  t2s_head_type head;
  int head_dilations[T2S_DLV2_MAX_BRANCHES];
  int n_head_dilations;
  t2s_mit_cfg mit;
  t2s_daf_cfg daformer;   /* kind follows `head` */
  float head_lr_mult;     /* lr_mult of every decode_head.* tensor (1 = none) */
  int proj_dim;           /* > 0: a projection head of this width on the decoder feature (T2S) */
  int scale_attention;    /* HRDA: a scale-attention head decode_head.scale_attention.* (a
                           * lighter copy of the decode head, core/nn/hrda.h) */
} t2s_model_cfg;

typedef struct t2s_segmentor {
  t2s_model_cfg cfg;
  t2s_params params;
  t2s_resnet resnet;
  t2s_dlv2_head dlv2;
  t2s_mit mit;
  t2s_daformer_head daformer;
  t2s_proj_head proj;      /* when cfg.proj_dim > 0 (names proj_head.*) */
  t2s_daformer_head att_daformer;  /* cfg.scale_attention with a DAFormer/SegFormer head */
  t2s_dlv2_head att_dlv2;          /* cfg.scale_attention with DeepLab-V2 */
  double flops_per_image;  /* forward FLOPs at the size of the last t2s_segmentor_count_flops */
} t2s_segmentor;

typedef struct t2s_seg_out {
  t2s_tensor *logits;    /* (N, classes, H/8, W/8) DeepLab-V2, (H/4, W/4) DAFormer/SegFormer */
  t2s_tensor *features;  /* for the projection head: layer4 (DeepLab-V2), the fused
                          * 256-channel stride-4 map (DAFormer/SegFormer heads) */
  t2s_tensor *attention; /* the scale-attention logits (N, classes, like logits), only from
                          * t2s_segmentor_forward_attention */
} t2s_seg_out;

t2s_model_cfg t2s_model_default_cfg(void);
/* Registers and initialises every tensor on `device` from `seed`. */
t2s_status t2s_segmentor_build(t2s_segmentor *m, const t2s_model_cfg *cfg, t2s_device device,
                               uint64_t seed, t2s_error *err);
void t2s_segmentor_free(t2s_segmentor *m);
t2s_status t2s_segmentor_forward(t2s_ctx *ctx, const t2s_segmentor *m, t2s_tensor *image,
                                 t2s_seg_out *out);
/* As t2s_segmentor_forward, plus out->attention from the scale-attention head on the
 * same encoder features (HRDA's context forward). Needs cfg.scale_attention. */
t2s_status t2s_segmentor_forward_attention(t2s_ctx *ctx, const t2s_segmentor *m, t2s_tensor *image,
                                           t2s_seg_out *out);
/* Pixels of the input per pixel of the logits: 4 for the DAFormer/SegFormer heads, the
 * backbone's stride for DeepLab-V2 (8 for ResNet V1c with DeepLab strides, 32 for MiT). */
int t2s_segmentor_output_stride(const t2s_segmentor *m);
/* Projection of t2s_seg_out.features for the pulling loss: (N, D, h, w) with unit L2
 * norm per pixel. Needs cfg.proj_dim > 0. */
t2s_tensor *t2s_segmentor_project(t2s_ctx *ctx, const t2s_segmentor *m, t2s_tensor *features);
