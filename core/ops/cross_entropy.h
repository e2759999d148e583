/* Softmax cross-entropy: the argument struct shared by core/ops/cross_entropy.c and
 * core/cuda/cross_entropy.cu, and the public call. */
#pragma once
#include "core/engine.h"

typedef enum t2s_ce_reduction {
  T2S_CE_MEAN_VALID = 0,  /* sum / number of non-ignored pixels */
  T2S_CE_MEAN_WEIGHT,     /* sum / sum of class weights over non-ignored pixels (PyTorch) */
  T2S_CE_SUM,
} t2s_ce_reduction;
typedef struct t2s_ce_args {
  int ignore_index;          /* 255 */
  t2s_ce_reduction reduction;
  double normaliser;         /* > 0: divide by this instead (a global count from all ranks) */
} t2s_ce_args;
/* Softmax cross-entropy over classes (dim 1): logits (N, C, H, W) f32, labels (N, H, W)
 * uint8, pixel_weight (N, H, W) f32 or NULL, class_weight (C) f32 or NULL -> scalar
 * sum_i pw_i cw_{y_i} (-log softmax(z_i)[y_i]) / normaliser. */
t2s_tensor *t2s_cross_entropy(t2s_ctx *ctx, t2s_tensor *logits, t2s_tensor *labels,
                              t2s_tensor *pixel_weight, t2s_tensor *class_weight,
                              const t2s_ce_args *a);
