/* 2-d convolution: the argument struct shared by core/ops/conv2d.c (im2col + sgemm)
 * and core/cuda/conv2d.cu (cuDNN), and the public call. */
#pragma once
#include "core/engine.h"

typedef struct t2s_conv2d_args {
  int stride_h, stride_w;
  int pad_h, pad_w;
  int dil_h, dil_w;
  int groups;
} t2s_conv2d_args;
/* x (N, Cin, H, W), w (Cout, Cin/groups, kh, kw), bias (Cout) or NULL. */
t2s_tensor *t2s_conv2d(t2s_ctx *ctx, t2s_tensor *x, t2s_tensor *w, t2s_tensor *bias,
                       const t2s_conv2d_args *a);
/* Square-kernel shorthand: stride s, padding p, dilation d, groups 1. */
t2s_conv2d_args t2s_conv_args(int stride, int pad, int dil);
