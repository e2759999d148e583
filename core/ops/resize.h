/* Resizing: the argument struct shared by core/ops/resize.c and core/cuda/resize.cu
 * (bilinear and nearest), and the public calls. */
#pragma once
#include "core/engine.h"

typedef struct t2s_resize_args {
  int out_h, out_w;
  int align_corners;
} t2s_resize_args;
/* PyTorch F.interpolate(mode='bilinear', align_corners=...) semantics. */
t2s_tensor *t2s_resize_bilinear(t2s_ctx *ctx, t2s_tensor *x, int out_h, int out_w,
                                int align_corners);
/* Nearest neighbour, PyTorch mode='nearest' (src = floor(dst * in / out)); for labels:
 * x is uint8 (N, H, W) or (N, 1, H, W), or f32 (N, C, H, W); never takes a gradient. */
t2s_tensor *t2s_resize_nearest(t2s_ctx *ctx, t2s_tensor *x, int out_h, int out_w);
