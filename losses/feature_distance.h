/* ImageNet feature distance (docs/method.md step 6, DAFormer's FD regulariser).
 *
 *   L_fd = sum_{pixels i with y_i in things} || f_i - g_i ||_2 / #{such pixels, all ranks}
 *
 * f = the student's last encoder features on x_s (N, C, h, w), requires grad;
 * g = the frozen ImageNet copy's (no grad); y = the source labels downsampled to
 * (h, w) (t2s_labels_downsample). The count is reduced over ranks and each rank
 * returns its share times world_size. dL/df_i = (f_i - g_i) / ||f_i - g_i|| / count
 * (0 where f_i = g_i). The caller multiplies by lambda (0.005), e.g. as the scale of
 * t2s_backward. A fused op (CPU and CUDA slots; on CUDA every input is a device tensor). */
#pragma once
#include <stdint.h>

#include "core/engine.h"
#include "losses/pull_loss.h"

typedef struct t2s_feature_distance_cfg {
  int enabled;              /* 0 by default (optional term) */
  float lambda;             /* 0.005; applied by the caller */
  uint8_t things[256];      /* things[c] = 1: class c counts; Cityscapes 6, 7, 11..18 */
  t2s_label_down label_down;/* nearest (DAFormer: majority with ratio 0.75) */
  float majority_ratio;     /* 0.75 */
  int ignore_index;         /* 255 */
} t2s_feature_distance_cfg;

t2s_feature_distance_cfg t2s_feature_distance_cfg_defaults(void);

/* labels (N, h, w) u8 at the feature size. Returns a scalar, or NULL with ctx->err. */
t2s_tensor *t2s_feature_distance(t2s_ctx *ctx, t2s_tensor *f_student, t2s_tensor *f_imnet,
                                 t2s_tensor *labels, const t2s_feature_distance_cfg *cfg,
                                 int world_size);

/* ---- the fused op's slots ------------------------------------------------------------- */
/* Shared by the CPU slots (losses/feature_distance.c) and the CUDA slots
 * (losses/cuda/feature_distance.cu), which the op's descriptor holds. */
typedef struct t2s_fd_args {
  uint8_t things[256];  /* things[c] = 1: class c counts (ignore_index cleared) */
  int world_size;
} t2s_fd_args;
typedef struct t2s_fd_saved {
  double scale;  /* world_size / global count */
  double *dist;  /* CUDA: per-pixel distances (device), -1 where not counted */
} t2s_fd_saved;
t2s_status t2s_feature_distance_cuda_forward(t2s_ctx *ctx, t2s_node *node);
t2s_status t2s_feature_distance_cuda_backward(t2s_ctx *ctx, t2s_node *node, const float *beta);
