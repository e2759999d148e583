/* GEMM-shaped ops: the argument struct shared by core/ops/linear.c (cblas) and
 * core/cuda/linear.cu (cuBLASLt), and the public calls. */
#pragma once
#include "core/engine.h"

typedef struct t2s_matmul_args {
  int trans_a, trans_b;
  int64_t batch, m, n, k;
  int64_t batch_a, batch_b;  /* 1 when broadcast */
} t2s_matmul_args;
/* x (..., K), w (N, K) as in torch.nn.Linear, bias (N) or NULL -> (..., N). */
t2s_tensor *t2s_linear(t2s_ctx *ctx, t2s_tensor *x, t2s_tensor *w, t2s_tensor *bias);
/* Batched: a (B, M, K) or (B, K, M) when trans_a; b (B, K, N) or (B, N, K) when trans_b
 * -> (B, M, N). 2-d inputs are a batch of one. */
t2s_tensor *t2s_matmul(t2s_ctx *ctx, t2s_tensor *a, t2s_tensor *b, int trans_a, int trans_b);
