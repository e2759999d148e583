/* Structured dropout on the CPU: one keep/drop draw per block of elements that
 * share their first mask_dims indices (stochastic depth per sample, channel
 * dropout per (sample, channel)). y = x m_b / (1 - p) with m_b = [u(key, b) >= p];
 * backward applies the same factor to dy. Nothing is saved: the factor of block b
 * is recomputed from (key, b), as the counter-based RNG allows. */
#include "core/ops/drop_path.h"

typedef t2s_drop_path_args drop_args;

t2s_tensor *t2s_drop_blocks(t2s_ctx *ctx, t2s_tensor *x, float p, t2s_rng_key key,
                            int mask_dims) {
  if (!t2s_ctx_ok(ctx) || x == NULL) return NULL;
  char s[96];
  if (!(p >= 0.0f && p < 1.0f) || !t2s_is_float(x) || mask_dims < 1 || mask_dims > x->ndim)
    return t2s_ctx_fail(ctx, T2S_ERR_INVALID,
                        "drop_path: probability %g (needs [0, 1)), %d mask dims of %s %s",
                        p, mask_dims, t2s_dtype_name(x->dtype), t2s_shape_str(x, s, sizeof s));
  if (!ctx->training || ctx->no_dropout || p == 0.0f) return x;
  drop_args a = {p, key, 1, ctx->sample_offset};
  for (int i = mask_dims; i < x->ndim; i++) a.block *= x->shape[i];
  for (int i = 1; i < mask_dims; i++) a.first *= x->shape[i];
  t2s_tensor *in[1] = {x};
  t2s_tensor *out = t2s_tensor_new(ctx, t2s_follow_dtype(x, NULL), x->ndim, x->shape);
  return t2s_op_apply(ctx, T2S_OP_drop_path, in, 1, out, &a, sizeof a);
}

static void scale_blocks(const drop_args *a, const float *x, float *y, int64_t n, float beta) {
  float keep = 1.0f / (1.0f - a->p);
  for (int64_t b0 = 0, blk = 0; b0 < n; b0 += a->block, blk++) {
    float f = t2s_rng_uniform(a->key, (uint64_t)(a->first + blk)) < a->p ? 0.0f : keep;
    for (int64_t i = b0; i < b0 + a->block; i++) y[i] = beta != 0.0f ? y[i] + f * x[i] : f * x[i];
  }
}

t2s_status t2s_drop_path_cpu_forward(t2s_ctx *ctx, t2s_node *node) {
  scale_blocks(node->args, t2s_f32(node->in[0]), t2s_f32(node->out), t2s_numel(node->out), 0.0f);
  return T2S_OK;
}

t2s_status t2s_drop_path_cpu_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  scale_blocks(node->args, node->out->grad, node->in[0]->grad, t2s_numel(node->out), beta[0]);
  return T2S_OK;
}
