/* Multi-head attention of the Mix Transformer: the argument struct shared by
 * core/ops/attention.c and core/cuda/attention.cu, and the public call. Token
 * sequences are 3-d (N, L, C) tensors, C innermost. */
#pragma once
#include "core/engine.h"

typedef struct t2s_attention_args {
  int64_t n, l, s, c;
  int heads;
} t2s_attention_args;
/* q (N, L, C) and kv (N, S, 2C) -- the output of one key-value projection, keys in
 * columns [0, C), values in [C, 2C) -- with `heads` heads of d = C / heads
 * channels (head h owns columns [h d, (h+1) d) of q, k and v) ->
 *   out_h = softmax(q_h k_h^T / sqrt(d)) v_h     (N, L, C), heads side by side.
 * The L x S probabilities of one (sample, head) are the only quadratic buffer; the
 * spatial reduction of MiT keeps S = L / sr^2 small. */
t2s_tensor *t2s_attention(t2s_ctx *ctx, t2s_tensor *q, t2s_tensor *kv, int heads);
