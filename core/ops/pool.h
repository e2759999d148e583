/* Max and average 2-d pooling: the argument struct shared by core/ops/pool.c and
 * core/cuda/pool.cu, and the public calls. */
#pragma once
#include "core/engine.h"

typedef struct t2s_pool2d_args {
  int kernel_h, kernel_w;
  int stride_h, stride_w;
  int pad_h, pad_w;
  int ceil_mode;          /* PyTorch ceil_mode */
  int count_include_pad;  /* average pooling: PyTorch count_include_pad */
} t2s_pool2d_args;
t2s_tensor *t2s_max_pool2d(t2s_ctx *ctx, t2s_tensor *x, const t2s_pool2d_args *a);
t2s_tensor *t2s_avg_pool2d(t2s_ctx *ctx, t2s_tensor *x, const t2s_pool2d_args *a);
