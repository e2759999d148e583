/* Shape ops on the CPU: concatenation along any dimension.
 *
 * A contiguous tensor split at dim d is outer x size[d] x inner, with
 * outer = prod(shape[0..d)) and inner = prod(shape[d+1..]). Concatenation
 * copies, for every outer index, one size_k[d] * inner block of each input in
 * turn; backward copies the same blocks of the output gradient back. */
#include <string.h>

#include "core/ops/shape.h"

typedef t2s_concat_args concat_args;

/* Elements before and after dim (the dim itself excluded). */
static void split_at(const t2s_tensor *t, int dim, int64_t *outer, int64_t *inner) {
  *outer = 1;
  *inner = 1;
  for (int i = 0; i < dim; i++) *outer *= t->shape[i];
  for (int i = dim + 1; i < t->ndim; i++) *inner *= t->shape[i];
}

static int concat_check(t2s_ctx *ctx, t2s_tensor **xs, int n, int dim) {
  char s0[96], sk[96];
  for (int k = 1; k < n; k++) {
    const t2s_tensor *a = xs[0], *b = xs[k];
    int same = a->ndim == b->ndim && a->dtype == b->dtype;
    for (int i = 0; same && i < a->ndim; i++)
      if (i != dim && a->shape[i] != b->shape[i]) same = 0;
    if (!same) {
      t2s_ctx_fail(ctx, T2S_ERR_INVALID,
                   "concat along dim %d: input %d is %s %s but input 0 is %s %s (all sizes "
                   "except dim %d and the dtype must agree)",
                   dim, k, t2s_dtype_name(b->dtype), t2s_shape_str(b, sk, sizeof sk),
                   t2s_dtype_name(a->dtype), t2s_shape_str(a, s0, sizeof s0), dim);
      return 0;
    }
    if (b->requires_grad && b->dtype != T2S_F32 && b->dtype != T2S_BF16) { /* f32 gradients */
      t2s_ctx_fail(ctx, T2S_ERR_INVALID, "concat: input %d wants a gradient but is %s", k,
                   t2s_dtype_name(b->dtype));
      return 0;
    }
  }
  return 1;
}

t2s_tensor *t2s_concat(t2s_ctx *ctx, t2s_tensor **xs, int n, int dim) {
  if (!t2s_ctx_ok(ctx)) return NULL;
  if (xs == NULL || n < 1 || n > T2S_MAX_INPUTS)
    return t2s_ctx_fail(ctx, T2S_ERR_INVALID, "concat: %d inputs (1 to %d allowed)", n,
                        T2S_MAX_INPUTS);
  for (int k = 0; k < n; k++)
    if (xs[k] == NULL)
      return t2s_ctx_fail(ctx, T2S_ERR_INVALID, "concat: input %d is missing", k);
  int ndim = xs[0]->ndim;
  int d = dim < 0 ? dim + ndim : dim;
  if (d < 0 || d >= ndim)
    return t2s_ctx_fail(ctx, T2S_ERR_INVALID, "concat: dim %d is out of range for %d-d inputs",
                        dim, ndim);
  if (!concat_check(ctx, xs, n, d)) return NULL;
  int64_t shape[T2S_MAX_DIMS];
  for (int i = 0; i < ndim; i++) shape[i] = xs[0]->shape[i];
  for (int k = 1; k < n; k++) shape[d] += xs[k]->shape[d];
  concat_args a = {d};
  return t2s_op_apply(ctx, T2S_OP_concat, xs, n, t2s_tensor_new(ctx, xs[0]->dtype, ndim, shape),
                      &a, sizeof a);
}

t2s_status t2s_concat_cpu_forward(t2s_ctx *ctx, t2s_node *node) {
  int dim = ((const concat_args *)node->args)->dim;
  size_t esize = t2s_dtype_size(node->out->dtype);
  int64_t outer, inner;
  split_at(node->out, dim, &outer, &inner);
  char *y = node->out->data;
  for (int64_t o = 0; o < outer; o++)
    for (int k = 0; k < node->n_in; k++) {
      size_t block = (size_t)(node->in[k]->shape[dim] * inner) * esize;
      memcpy(y, (const char *)node->in[k]->data + (size_t)o * block, block);
      y += block;
    }
  return T2S_OK;
}

t2s_status t2s_concat_cpu_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  int dim = ((const concat_args *)node->args)->dim;
  int64_t outer, inner;
  split_at(node->out, dim, &outer, &inner);
  const float *dy = node->out->grad;
  for (int64_t o = 0; o < outer; o++)
    for (int k = 0; k < node->n_in; k++) {
      int64_t block = node->in[k]->shape[dim] * inner;
      if (t2s_wants_grad(node->in[k])) {
        float *dx = node->in[k]->grad + o * block;
        if (beta[k] != 0.0f)
          for (int64_t i = 0; i < block; i++) dx[i] += dy[i];
        else
          memcpy(dx, dy, (size_t)block * sizeof(float));
      }
      dy += block;
    }
  return T2S_OK;
}
