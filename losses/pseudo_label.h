/* Pseudo-labels of the target images (docs/method.md step 4).
 *
 * p = softmax(teacher logits) per pixel; yhat = argmax p; the confidence weight
 *   q = #{pixels with max p >= threshold} / #{pixels}
 * is one number for the global batch (both counts reduced over ranks). The pixel
 * weight map is q everywhere except the top and bottom rows (the ego-car and the
 * sky border of driving crops), which get 0; their counts are given for a crop of
 * ref_height rows and scaled to H: rows = floor(count H / ref_height + 0.5). */
#pragma once
#include "core/engine.h"

typedef struct t2s_pseudo_label_cfg {
  float threshold;  /* 0.968 */
  int ignore_top;   /* 15 rows at ref_height */
  int ignore_bottom;/* 120 rows at ref_height */
  int ref_height;   /* 512 */
} t2s_pseudo_label_cfg;

t2s_pseudo_label_cfg t2s_pseudo_label_cfg_defaults(void);
const char *t2s_pseudo_label_cfg_check(const t2s_pseudo_label_cfg *cfg);

/* Rows zeroed at the top and bottom of an H-row map. */
void t2s_pseudo_label_rows(const t2s_pseudo_label_cfg *cfg, int64_t H, int64_t *top,
                           int64_t *bottom);

/* logits (N, C, H, W) f32 (host). Writes the caller's tensors: yhat (N, H, W) u8,
 * pixel_weight (N, H, W) f32, max_prob (N, H, W) f32 or NULL; *q_out (may be NULL)
 * the global confidence fraction. */
t2s_status t2s_pseudo_labels(t2s_ctx *ctx, const t2s_pseudo_label_cfg *cfg,
                             const t2s_tensor *logits, t2s_tensor *yhat,
                             t2s_tensor *pixel_weight, t2s_tensor *max_prob, double *q_out);

/* The CUDA slots (losses/cuda/pseudo_label.cu), picked by the device of the logits:
 * t2s_pseudo_labels on device logits (stored NHWC), and the per-pixel argmax map
 * (first maximum) of device logits into host memory pred (N H W bytes), the class
 * map of losses/reweight.c. */
t2s_status t2s_pseudo_labels_cuda(t2s_ctx *ctx, const t2s_pseudo_label_cfg *cfg,
                                  const t2s_tensor *logits, t2s_tensor *yhat,
                                  t2s_tensor *pixel_weight, t2s_tensor *max_prob, double *q_out);
t2s_status t2s_class_map_cuda(t2s_ctx *ctx, const t2s_tensor *logits, uint8_t *pred);
