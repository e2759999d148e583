/* Shape ops: the argument struct shared by core/ops/shape.c and core/cuda/shape.cu,
 * and the public call. */
#pragma once
#include "core/engine.h"

typedef struct t2s_concat_args {
  int dim;
} t2s_concat_args;
/* Concatenates 1..T2S_MAX_INPUTS tensors along dim (all other sizes equal). */
t2s_tensor *t2s_concat(t2s_ctx *ctx, t2s_tensor **xs, int n, int dim);
