/* Public op functions. Each builds its output in the pass arena, runs the op
 * through the descriptor table (core/engine.h) and returns the output, or NULL
 * with ctx->err set. Activations are (N, C, H, W) logically. Inputs that do not
 * need gradients (labels, weights, constant masks) have requires_grad = 0. */
#pragma once
#include "core/engine.h"

/* ---- convolution (core/ops/conv2d.c): im2col + sgemm ------------------------ */
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

/* ---- batch norm (core/ops/batch_norm.c) ------------------------------------ */
typedef enum t2s_bn_mode {
  T2S_BN_TRAIN = 0,  /* batch statistics; running stats updated; grads to x, gamma, beta */
  T2S_BN_EVAL,       /* running statistics; grads to x, gamma, beta */
  T2S_BN_FROZEN,     /* running statistics; gamma/beta get no gradient (mmseg frozen BN) */
} t2s_bn_mode;
/* Running statistics follow PyTorch: running = (1 - momentum) running + momentum batch,
 * with the unbiased batch variance. With ctx->sync_bn and ctx->stat_allreduce the
 * per-channel sums are reduced over ranks (forward and backward). */
t2s_tensor *t2s_batch_norm(t2s_ctx *ctx, t2s_tensor *x, t2s_tensor *gamma, t2s_tensor *beta,
                           t2s_tensor *running_mean, t2s_tensor *running_var, t2s_bn_mode mode,
                           float momentum, float eps);

/* ---- element-wise (core/ops/elementwise.c) -------------------------------- */
typedef struct t2s_scale_args {
  float s;
} t2s_scale_args;
typedef struct t2s_dropout_args {
  float p;
  t2s_rng_key key;
} t2s_dropout_args;
t2s_tensor *t2s_relu(t2s_ctx *ctx, t2s_tensor *x);
t2s_tensor *t2s_gelu(t2s_ctx *ctx, t2s_tensor *x);  /* exact (erf) GELU */
t2s_tensor *t2s_add(t2s_ctx *ctx, t2s_tensor *a, t2s_tensor *b);  /* same shapes */
t2s_tensor *t2s_mul(t2s_ctx *ctx, t2s_tensor *a, t2s_tensor *b);  /* same shapes */
t2s_tensor *t2s_scale(t2s_ctx *ctx, t2s_tensor *x, float s);
/* sum(x * r) as a scalar; r is a constant of x's shape (loss probes, tests). */
t2s_tensor *t2s_weighted_sum(t2s_ctx *ctx, t2s_tensor *x, t2s_tensor *r);
/* Inverted dropout: zero with probability p, scale the rest by 1/(1-p). Only
 * while ctx->training; the mask bit of element i comes from (key, i). */
t2s_tensor *t2s_dropout(t2s_ctx *ctx, t2s_tensor *x, float p, t2s_rng_key key);

/* ---- pooling (core/ops/pool.c) -------------------------------------------- */
typedef struct t2s_pool2d_args {
  int kernel_h, kernel_w;
  int stride_h, stride_w;
  int pad_h, pad_w;
  int ceil_mode;          /* PyTorch ceil_mode */
  int count_include_pad;  /* average pooling: PyTorch count_include_pad */
} t2s_pool2d_args;
t2s_tensor *t2s_max_pool2d(t2s_ctx *ctx, t2s_tensor *x, const t2s_pool2d_args *a);
t2s_tensor *t2s_avg_pool2d(t2s_ctx *ctx, t2s_tensor *x, const t2s_pool2d_args *a);

/* ---- shape (core/ops/shape.c) ---------------------------------------------- */
/* Concatenates 1..T2S_MAX_INPUTS tensors along dim (all other sizes equal). */
t2s_tensor *t2s_concat(t2s_ctx *ctx, t2s_tensor **xs, int n, int dim);

/* ---- resize (core/ops/resize.c) ------------------------------------------- */
/* PyTorch F.interpolate(mode='bilinear', align_corners=...) semantics. */
t2s_tensor *t2s_resize_bilinear(t2s_ctx *ctx, t2s_tensor *x, int out_h, int out_w,
                                int align_corners);
/* Nearest neighbour, PyTorch mode='nearest' (src = floor(dst * in / out)); for labels:
 * x is uint8 (N, H, W) or (N, 1, H, W), or f32 (N, C, H, W); never takes a gradient. */
t2s_tensor *t2s_resize_nearest(t2s_ctx *ctx, t2s_tensor *x, int out_h, int out_w);

/* ---- GEMM-shaped (core/ops/linear.c) -------------------------------------- */
/* x (..., K), w (N, K) as in torch.nn.Linear, bias (N) or NULL -> (..., N). */
t2s_tensor *t2s_linear(t2s_ctx *ctx, t2s_tensor *x, t2s_tensor *w, t2s_tensor *bias);
/* Batched: a (B, M, K) or (B, K, M) when trans_a; b (B, K, N) or (B, N, K) when trans_b
 * -> (B, M, N). 2-d inputs are a batch of one. */
t2s_tensor *t2s_matmul(t2s_ctx *ctx, t2s_tensor *a, t2s_tensor *b, int trans_a, int trans_b);

/* ---- normalisation (core/ops/norm.c) -------------------------------------- */
/* Over the last dimension (C): x (..., C), gamma and beta (C). */
t2s_tensor *t2s_layer_norm(t2s_ctx *ctx, t2s_tensor *x, t2s_tensor *gamma, t2s_tensor *beta,
                           float eps);
t2s_tensor *t2s_softmax(t2s_ctx *ctx, t2s_tensor *x, int dim);
/* x / max(||x||_2, eps) along dim (dim 1 = per pixel over channels, F.normalize). */
t2s_tensor *t2s_l2_normalize(t2s_ctx *ctx, t2s_tensor *x, int dim, float eps);

/* ---- loss (core/ops/cross_entropy.c) -------------------------------------- */
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
