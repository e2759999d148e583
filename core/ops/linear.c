/* GEMM-shaped ops on the CPU, through cblas_sgemm (row-major throughout).
 *
 * linear: Y (M, N) = X (M, K) W(N, K)^T + b, with M = every leading dim of x.
 *   dX = dY W,  dW = dY^T X,  db = sum over rows of dY.
 * matmul: C_b = op(A_b) op(B_b) per batch, op = identity or transpose.
 *   dop(A) = dC op(B)^T, dop(B) = op(A)^T dC, then transposed back to A's or B's
 *   stored layout when that input was given transposed.
 * The backward beta goes straight into sgemm's beta (0: overwrite, 1: add), so
 * the write/accumulate contract costs nothing. A 2-d operand of matmul is a
 * batch of one, broadcast over the other operand's batch (its gradient sums). */
#include <cblas.h>
#include <string.h>

#include "core/ops/linear.h"

typedef t2s_matmul_args matmul_args;

/* ---- linear ---- */
t2s_tensor *t2s_linear(t2s_ctx *ctx, t2s_tensor *x, t2s_tensor *w, t2s_tensor *bias) {
  if (!t2s_ctx_ok(ctx) || x == NULL || w == NULL) return NULL;
  char sx[96], sw[96], sb[96];
  if (!t2s_is_float(x) || w->dtype != T2S_F32 || x->ndim < 1 || w->ndim != 2 ||
      x->shape[x->ndim - 1] != w->shape[1])
    return t2s_ctx_fail(ctx, T2S_ERR_INVALID,
                        "linear: x %s and weight %s do not fit (need float32 x (..., K) and "
                        "weight (N, K))",
                        t2s_shape_str(x, sx, sizeof sx), t2s_shape_str(w, sw, sizeof sw));
  if (w->shape[1] == 0)
    return t2s_ctx_fail(ctx, T2S_ERR_INVALID, "linear: weight %s has no input features",
                        t2s_shape_str(w, sw, sizeof sw));
  if (bias != NULL && (bias->dtype != T2S_F32 || bias->ndim != 1 || bias->shape[0] != w->shape[0]))
    return t2s_ctx_fail(ctx, T2S_ERR_INVALID, "linear: bias %s does not match weight %s",
                        t2s_shape_str(bias, sb, sizeof sb), t2s_shape_str(w, sw, sizeof sw));
  int64_t shape[T2S_MAX_DIMS];
  for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
  shape[x->ndim - 1] = w->shape[0];
  t2s_tensor *in[3] = {x, w, bias};
  return t2s_op_apply(ctx, T2S_OP_linear, in, 3, t2s_tensor_new(ctx, t2s_act_dtype(ctx), x->ndim, shape),
                      NULL, 0);
}

t2s_status t2s_linear_cpu_forward(t2s_ctx *ctx, t2s_node *node) {
  const t2s_tensor *x = node->in[0], *w = node->in[1], *b = node->in[2];
  int64_t n = w->shape[0], k = w->shape[1], m = t2s_numel(x) / k;
  float *y = t2s_f32(node->out);
  if (m > 0 && n > 0)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k, 1.0f,
                t2s_f32(x), (int)k, t2s_f32(w), (int)k, 0.0f, y, (int)n);
  if (b != NULL)
    for (int64_t r = 0; r < m; r++)
      for (int64_t j = 0; j < n; j++) y[r * n + j] += t2s_f32(b)[j];
  ctx->flops += 2.0 * (double)m * (double)n * (double)k;
  return T2S_OK;
}

t2s_status t2s_linear_cpu_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  t2s_tensor *x = node->in[0], *w = node->in[1], *b = node->in[2];
  int64_t n = w->shape[0], k = w->shape[1], m = t2s_numel(x) / k;
  const float *dy = node->out->grad;
  if (m == 0 || n == 0) {
    /* sgemm rejects zero sizes; the gradient is zero (or unchanged) */
    for (int i = 0; i < 3; i++)
      if (t2s_wants_grad(node->in[i]) && beta[i] == 0.0f)
        memset(node->in[i]->grad, 0, (size_t)t2s_numel(node->in[i]) * sizeof(float));
    return T2S_OK;
  }
  if (t2s_wants_grad(x))
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)k, (int)n, 1.0f, dy,
                (int)n, t2s_f32(w), (int)k, beta[0], x->grad, (int)k);
  if (t2s_wants_grad(w))
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, (int)k, (int)m, 1.0f, dy,
                (int)n, t2s_f32(x), (int)k, beta[1], w->grad, (int)k);
  if (t2s_wants_grad(b)) {
    if (beta[2] == 0.0f) memset(b->grad, 0, (size_t)n * sizeof(float));
    for (int64_t r = 0; r < m; r++)
      for (int64_t j = 0; j < n; j++) b->grad[j] += dy[r * n + j];
  }
  return T2S_OK;
}

/* ---- matmul ---- */
static int64_t batch_of(const t2s_tensor *t) { return t->ndim == 3 ? t->shape[0] : 1; }
static int64_t rows_of(const t2s_tensor *t) { return t->shape[t->ndim - 2]; }
static int64_t cols_of(const t2s_tensor *t) { return t->shape[t->ndim - 1]; }

t2s_tensor *t2s_matmul(t2s_ctx *ctx, t2s_tensor *a, t2s_tensor *b, int trans_a, int trans_b) {
  if (!t2s_ctx_ok(ctx) || a == NULL || b == NULL) return NULL;
  char sa[96], sb[96];
  if (!t2s_is_float(a) || !t2s_is_float(b) || a->ndim < 2 || a->ndim > 3 || b->ndim < 2 ||
      b->ndim > 3)
    return t2s_ctx_fail(ctx, T2S_ERR_INVALID, "matmul: a %s and b %s must be float32, 2-d or 3-d",
                        t2s_shape_str(a, sa, sizeof sa), t2s_shape_str(b, sb, sizeof sb));
  matmul_args g = {trans_a != 0, trans_b != 0, 0, 0, 0, 0, batch_of(a), batch_of(b)};
  g.m = g.trans_a ? cols_of(a) : rows_of(a);
  g.k = g.trans_a ? rows_of(a) : cols_of(a);
  int64_t kb = g.trans_b ? cols_of(b) : rows_of(b);
  g.n = g.trans_b ? rows_of(b) : cols_of(b);
  g.batch = g.batch_a > g.batch_b ? g.batch_a : g.batch_b;
  if (kb != g.k || (g.batch_a != g.batch && g.batch_a != 1) || (g.batch_b != g.batch && g.batch_b != 1))
    return t2s_ctx_fail(ctx, T2S_ERR_INVALID,
                        "matmul: a %s%s and b %s%s do not fit (inner sizes %lld and %lld, "
                        "batches must agree or be 1)",
                        t2s_shape_str(a, sa, sizeof sa), g.trans_a ? " (transposed)" : "",
                        t2s_shape_str(b, sb, sizeof sb), g.trans_b ? " (transposed)" : "",
                        (long long)g.k, (long long)kb);
  int64_t shape[3] = {g.batch, g.m, g.n};
  int three = a->ndim == 3 || b->ndim == 3;
  t2s_tensor *out = three ? t2s_tensor_new(ctx, t2s_act_dtype(ctx), 3, shape)
                          : t2s_tensor_new(ctx, t2s_act_dtype(ctx), 2, shape + 1);
  t2s_tensor *in[2] = {a, b};
  return t2s_op_apply(ctx, T2S_OP_matmul, in, 2, out, &g, sizeof g);
}

t2s_status t2s_matmul_cpu_forward(t2s_ctx *ctx, t2s_node *node) {
  const matmul_args *g = node->args;
  int m = (int)g->m, n = (int)g->n, k = (int)g->k;
  int lda = g->trans_a ? m : k, ldb = g->trans_b ? k : n;
  int64_t size_a = g->batch_a > 1 ? g->m * g->k : 0, size_b = g->batch_b > 1 ? g->k * g->n : 0;
  if (g->m == 0 || g->n == 0) return T2S_OK;
  for (int64_t i = 0; i < g->batch; i++) {
    float *c = t2s_f32(node->out) + i * g->m * g->n;
    if (k == 0) {
      memset(c, 0, (size_t)(g->m * g->n) * sizeof(float));
      continue;
    }
    cblas_sgemm(CblasRowMajor, g->trans_a ? CblasTrans : CblasNoTrans,
                g->trans_b ? CblasTrans : CblasNoTrans, m, n, k, 1.0f,
                t2s_f32(node->in[0]) + i * size_a, lda, t2s_f32(node->in[1]) + i * size_b, ldb,
                0.0f, c, n);
  }
  ctx->flops += 2.0 * (double)g->batch * (double)g->m * (double)g->n * (double)g->k;
  return T2S_OK;
}

/* dA for one batch: A stored (M, K) gets dC op(B)^T; stored (K, M) gets op(B) dC^T. */
static void matmul_grad_a(const matmul_args *g, const float *dc, const float *b, float *da,
                          float beta) {
  int m = (int)g->m, n = (int)g->n, k = (int)g->k, ldb = g->trans_b ? k : n;
  if (!g->trans_a)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, g->trans_b ? CblasNoTrans : CblasTrans, m, k, n,
                1.0f, dc, n, b, ldb, beta, da, k);
  else
    cblas_sgemm(CblasRowMajor, g->trans_b ? CblasTrans : CblasNoTrans, CblasTrans, k, m, n,
                1.0f, b, ldb, dc, n, beta, da, m);
}

/* dB for one batch: B stored (K, N) gets op(A)^T dC; stored (N, K) gets dC^T op(A). */
static void matmul_grad_b(const matmul_args *g, const float *dc, const float *a, float *db,
                          float beta) {
  int m = (int)g->m, n = (int)g->n, k = (int)g->k, lda = g->trans_a ? m : k;
  if (!g->trans_b)
    cblas_sgemm(CblasRowMajor, g->trans_a ? CblasNoTrans : CblasTrans, CblasNoTrans, k, n, m,
                1.0f, a, lda, dc, n, beta, db, n);
  else
    cblas_sgemm(CblasRowMajor, CblasTrans, g->trans_a ? CblasTrans : CblasNoTrans, n, k, m,
                1.0f, dc, n, a, lda, beta, db, k);
}

t2s_status t2s_matmul_cpu_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  const matmul_args *g = node->args;
  t2s_tensor *a = node->in[0], *b = node->in[1];
  int64_t size_a = g->batch_a > 1 ? g->m * g->k : 0, size_b = g->batch_b > 1 ? g->k * g->n : 0;
  int want_a = t2s_wants_grad(a), want_b = t2s_wants_grad(b);
  if (g->m == 0 || g->n == 0 || g->k == 0) {
    /* sgemm rejects zero leading dimensions; the gradient is zero (or unchanged) */
    if (want_a && beta[0] == 0.0f) memset(a->grad, 0, (size_t)t2s_numel(a) * sizeof(float));
    if (want_b && beta[1] == 0.0f) memset(b->grad, 0, (size_t)t2s_numel(b) * sizeof(float));
    return T2S_OK;
  }
  for (int64_t i = 0; i < g->batch; i++) {
    const float *dc = node->out->grad + i * g->m * g->n;
    /* a broadcast operand's gradient sums over the batch: only the first batch honours beta */
    if (want_a)
      matmul_grad_a(g, dc, t2s_f32(b) + i * size_b, a->grad + i * size_a,
                    size_a == 0 && i > 0 ? 1.0f : beta[0]);
    if (want_b)
      matmul_grad_b(g, dc, t2s_f32(a) + i * size_a, b->grad + i * size_b,
                    size_b == 0 && i > 0 ? 1.0f : beta[1]);
  }
  return T2S_OK;
}
