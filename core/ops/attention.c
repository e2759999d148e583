/* Multi-head attention on the CPU: per (sample, head) two GEMMs and a row
 * softmax, reading the heads in place through sgemm leading dimensions (no
 * permute of q, k or v).
 *
 * Per sample n and head h, with d = C / heads, Q (L x d), K and V (S x d):
 *   A = s Q K^T (s = d^-1/2),  P = softmax_rows(A),  O = P V.
 * Backward, with dO given:
 *   dV = P^T dO,  dP = dO V^T,  dA = P o (dP - rowsum(P o dP)),
 *   dQ = s dA K,  dK = s dA^T Q.
 * P (L x S per head) is saved for backward while recording; dP reuses one L x S
 * scratch block. rowsum(P o dP) equals rowsum(O o dO) (O = P V), which needs d
 * instead of S products per row. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "core/ops/attention.h"

typedef t2s_attention_args attention_args;

typedef struct attention_saved {
  float *p;  /* (N, heads, L, S) probabilities */
} attention_saved;

t2s_tensor *t2s_attention(t2s_ctx *ctx, t2s_tensor *q, t2s_tensor *kv, int heads) {
  if (!t2s_ctx_ok(ctx) || q == NULL || kv == NULL) return NULL;
  char sq[96], skv[96];
  if (!t2s_is_float(q) || !t2s_is_float(kv) || q->ndim != 3 || kv->ndim != 3 ||
      kv->shape[0] != q->shape[0] || kv->shape[2] != 2 * q->shape[2] || heads < 1 ||
      q->shape[2] % heads != 0 || kv->shape[1] < 1)
    return t2s_ctx_fail(ctx, T2S_ERR_INVALID,
                        "attention: q %s, kv %s and %d heads do not fit (need float32 q (N, L, "
                        "C), kv (N, S, 2C), S >= 1, C divisible by the heads)",
                        t2s_shape_str(q, sq, sizeof sq), t2s_shape_str(kv, skv, sizeof skv),
                        heads);
  attention_args a = {q->shape[0], q->shape[1], kv->shape[1], q->shape[2], heads};
  t2s_tensor *in[2] = {q, kv};
  return t2s_op_apply(ctx, T2S_OP_attention, in, 2, t2s_tensor_new(ctx, t2s_follow_dtype(q, kv), 3, q->shape),
                      &a, sizeof a);
}

/* Row softmax of an rows x cols block in place (max-shifted, sum in double). */
static void softmax_rows(float *a, int64_t rows, int64_t cols) {
  /* rows are independent: a thread owns whole rows (same sums for any thread count) */
  #pragma omp parallel for schedule(static) if (rows * cols > (1 << 15))
  for (int64_t i = 0; i < rows; i++) {
    float *r = a + i * cols;
    float mx = r[0];
    for (int64_t j = 1; j < cols; j++) mx = r[j] > mx ? r[j] : mx;
    double sum = 0.0;
    for (int64_t j = 0; j < cols; j++) {
      r[j] = expf(r[j] - mx);
      sum += r[j];
    }
    float inv = (float)(1.0 / sum);
    for (int64_t j = 0; j < cols; j++) r[j] *= inv;
  }
}

t2s_status t2s_attention_cpu_forward(t2s_ctx *ctx, t2s_node *node) {
  const attention_args *a = node->args;
  int64_t d = a->c / a->heads, ls = a->l * a->s;
  float scale = (float)(1.0 / sqrt((double)d));
  t2s_arena_mark mark = t2s_scratch_mark(ctx);
  float *p_all = NULL;
  if (node->recording) {
    attention_saved *sv = t2s_scratch(ctx, sizeof *sv);
    if (sv == NULL) return ctx->err.status;
    sv->p = p_all = t2s_scratch(ctx, (size_t)(a->n * a->heads * ls) * sizeof(float));
    node->saved = sv;
  } else {
    p_all = t2s_scratch(ctx, (size_t)ls * sizeof(float));
  }
  if (p_all == NULL) return ctx->err.status;
  int lc = (int)a->c, lkv = (int)(2 * a->c), ld = (int)d, l = (int)a->l, s = (int)a->s;
  for (int64_t n = 0; n < a->n; n++)
    for (int h = 0; h < a->heads; h++) {
      const float *qh = t2s_f32(node->in[0]) + n * a->l * a->c + h * d;
      const float *kh = t2s_f32(node->in[1]) + n * a->s * 2 * a->c + h * d;
      const float *vh = kh + a->c;
      float *oh = t2s_f32(node->out) + n * a->l * a->c + h * d;
      float *p = node->recording ? p_all + (n * a->heads + h) * ls : p_all;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, l, s, ld, scale, qh, lc, kh, lkv,
                  0.0f, p, s);
      softmax_rows(p, a->l, a->s);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, l, ld, s, 1.0f, p, s, vh, lkv, 0.0f,
                  oh, lc);
    }
  if (!node->recording) t2s_scratch_release(ctx, mark);
  ctx->flops += 4.0 * (double)a->n * (double)ls * (double)a->c;
  return T2S_OK;
}

/* dA = P o (dP - rowsum(O o dO)) in place over dP, for one (sample, head). */
static void softmax_backward_rows(float *dp, const float *p, const float *o, const float *dout,
                                  int64_t rows, int64_t cols, int64_t d, int64_t ld_o) {
  #pragma omp parallel for schedule(static) if (rows * cols > (1 << 15))
  for (int64_t i = 0; i < rows; i++) {
    double dot = 0.0;
    for (int64_t k = 0; k < d; k++) dot += (double)o[i * ld_o + k] * dout[i * ld_o + k];
    float fdot = (float)dot;
    float *r = dp + i * cols;
    const float *pr = p + i * cols;
    for (int64_t j = 0; j < cols; j++) r[j] = pr[j] * (r[j] - fdot);
  }
}

t2s_status t2s_attention_cpu_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  const attention_args *a = node->args;
  const attention_saved *sv = node->saved;
  t2s_tensor *q = node->in[0], *kv = node->in[1];
  int want_q = t2s_wants_grad(q), want_kv = t2s_wants_grad(kv);
  int64_t d = a->c / a->heads, ls = a->l * a->s;
  float scale = (float)(1.0 / sqrt((double)d));
  t2s_arena_mark mark = t2s_scratch_mark(ctx);
  float *dp = t2s_scratch(ctx, (size_t)ls * sizeof(float));
  if (dp == NULL) return ctx->err.status;
  int lc = (int)a->c, lkv = (int)(2 * a->c), ld = (int)d, l = (int)a->l, s = (int)a->s;
  for (int64_t n = 0; n < a->n; n++)
    for (int h = 0; h < a->heads; h++) {
      int64_t qoff = n * a->l * a->c + h * d, kvoff = n * a->s * 2 * a->c + h * d;
      const float *qh = t2s_f32(q) + qoff, *kh = t2s_f32(kv) + kvoff, *vh = kh + a->c;
      const float *oh = t2s_f32(node->out) + qoff, *doh = node->out->grad + qoff;
      const float *p = sv->p + (n * a->heads + h) * ls;
      if (want_kv) /* dV = P^T dO */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, s, ld, l, 1.0f, p, s, doh, lc,
                    beta[1], kv->grad + kvoff + a->c, lkv);
      /* dP = dO V^T, then dA in place */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, l, s, ld, 1.0f, doh, lc, vh, lkv,
                  0.0f, dp, s);
      softmax_backward_rows(dp, p, oh, doh, a->l, a->s, d, a->c);
      if (want_q) /* dQ = s dA K */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, l, ld, s, scale, dp, s, kh, lkv,
                    beta[0], q->grad + qoff, lc);
      if (want_kv) /* dK = s dA^T Q */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, s, ld, l, scale, dp, s, qh, lc,
                    beta[1], kv->grad + kvoff, lkv);
    }
  t2s_scratch_release(ctx, mark);
  return T2S_OK;
}
