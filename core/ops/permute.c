/* Image <-> token layout on the CPU: a batched transpose of the last two axes of
 * a contiguous (N, A, B) block into (N, B, A).
 *   (N, C, H, W) -> (N, HW, C): A = C,  B = HW   (t2s_nchw_to_tokens)
 *   (N, L, C) -> (N, C, h, w):  A = L,  B = C    (t2s_tokens_to_nchw)
 * The backward of a transpose is the transpose of the gradient. Tiles of 32 x 32
 * keep both the reads and the writes within a few cache lines. */
#include <string.h>

#include "core/ops/permute.h"

typedef t2s_transpose_args transpose_args;

#define TILE 32

/* out[n][j][i] = beta * out[n][j][i] + in[n][i][j] for an (a, b) input per n. */
static void transpose_blocks(const float *in, float *out, int64_t n, int64_t a, int64_t b,
                             float beta) {
  for (int64_t k = 0; k < n; k++) {
    const float *x = in + k * a * b;
    float *y = out + k * a * b;
    for (int64_t i0 = 0; i0 < a; i0 += TILE)
      for (int64_t j0 = 0; j0 < b; j0 += TILE) {
        int64_t i1 = i0 + TILE < a ? i0 + TILE : a, j1 = j0 + TILE < b ? j0 + TILE : b;
        for (int64_t j = j0; j < j1; j++)
          for (int64_t i = i0; i < i1; i++) {
            float v = x[i * b + j];
            y[j * a + i] = beta != 0.0f ? y[j * a + i] + v : v;
          }
      }
  }
}

static t2s_tensor *transpose(t2s_ctx *ctx, t2s_tensor *x, transpose_args a, int ndim,
                             const int64_t *shape) {
  t2s_tensor *in[1] = {x};
  return t2s_op_apply(ctx, T2S_OP_tokens_transpose, in, 1,
                      t2s_tensor_new(ctx, t2s_follow_dtype(x, NULL), ndim, shape), &a, sizeof a);
}

t2s_tensor *t2s_nchw_to_tokens(t2s_ctx *ctx, t2s_tensor *x) {
  if (!t2s_ctx_ok(ctx) || x == NULL) return NULL;
  char s[96];
  if (!t2s_is_float(x) || x->ndim != 4)
    return t2s_ctx_fail(ctx, T2S_ERR_INVALID, "nchw_to_tokens: input %s %s must be float32 "
                        "(N, C, H, W)", t2s_dtype_name(x->dtype), t2s_shape_str(x, s, sizeof s));
  int64_t hw = x->shape[2] * x->shape[3];
  int64_t shape[3] = {x->shape[0], hw, x->shape[1]};
  return transpose(ctx, x, (transpose_args){x->shape[0], x->shape[1], hw}, 3, shape);
}

t2s_tensor *t2s_tokens_to_nchw(t2s_ctx *ctx, t2s_tensor *x, int h, int w) {
  if (!t2s_ctx_ok(ctx) || x == NULL) return NULL;
  char s[96];
  if (!t2s_is_float(x) || x->ndim != 3 || h < 1 || w < 1 || x->shape[1] != (int64_t)h * w)
    return t2s_ctx_fail(ctx, T2S_ERR_INVALID, "tokens_to_nchw: input %s %s is not float32 "
                        "(N, L, C) with L = %d x %d", t2s_dtype_name(x->dtype),
                        t2s_shape_str(x, s, sizeof s), h, w);
  int64_t shape[4] = {x->shape[0], x->shape[2], h, w};
  return transpose(ctx, x, (transpose_args){x->shape[0], x->shape[1], x->shape[2]}, 4, shape);
}

t2s_status t2s_tokens_transpose_cpu_forward(t2s_ctx *ctx, t2s_node *node) {
  const transpose_args *a = node->args;
  transpose_blocks(t2s_f32(node->in[0]), t2s_f32(node->out), a->n, a->a, a->b, 0.0f);
  return T2S_OK;
}

t2s_status t2s_tokens_transpose_cpu_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  const transpose_args *a = node->args;
  /* the output gradient is (n, b, a); its transpose is the input's (n, a, b) */
  transpose_blocks(node->out->grad, node->in[0]->grad, a->n, a->b, a->a, beta[0]);
  return T2S_OK;
}
