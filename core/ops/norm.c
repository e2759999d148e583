/* Normalisation ops on the CPU: layer norm (last dim), softmax and L2
 * normalisation (any dim).
 *
 * A contiguous tensor reduced along dim d is outer x D x inner (D = shape[d]);
 * element (o, j, i) sits at (o * D + j) * inner + i. Loops run with i innermost
 * so that the common case (dim 1 of NCHW: channels, inner = H * W) reads memory
 * in order; per-(o, i) statistics live in scratch rows of length inner.
 * Reductions are accumulated in double. */
#include <math.h>
#include <string.h>

#include "core/ops/norm.h"

typedef t2s_layer_norm_args layer_norm_args;
typedef struct layer_norm_saved {
  float *mean, *rstd;  /* per row */
} layer_norm_saved;
typedef t2s_softmax_args softmax_args;
typedef t2s_l2_normalize_args l2_args;

static inline void put(float *out, int64_t i, float v, float beta) {
  out[i] = beta != 0.0f ? out[i] + v : v;
}

static void split_at(const t2s_tensor *t, int dim, int64_t *outer, int64_t *len, int64_t *inner) {
  *outer = 1;
  *inner = 1;
  for (int i = 0; i < dim; i++) *outer *= t->shape[i];
  for (int i = dim + 1; i < t->ndim; i++) *inner *= t->shape[i];
  *len = t->shape[dim];
}

/* Resolves a possibly negative dim; 0 (and ctx->err) when out of range or x is not f32. */
static int dim_check(t2s_ctx *ctx, const char *op, const t2s_tensor *x, int dim, int *out) {
  char s[96];
  int d = dim < 0 ? dim + x->ndim : dim;
  if (!t2s_is_float(x) || d < 0 || d >= x->ndim) {
    t2s_ctx_fail(ctx, T2S_ERR_INVALID, "%s: dim %d of %s %s (needs float32 and a dim in range)",
                 op, dim, t2s_dtype_name(x->dtype), t2s_shape_str(x, s, sizeof s));
    return 0;
  }
  *out = d;
  return 1;
}

static t2s_tensor *like(t2s_ctx *ctx, const t2s_tensor *x) {
  return t2s_tensor_new(ctx, t2s_follow_dtype(x, NULL), x->ndim, x->shape);
}

/* ---- layer norm: y = (x - mean) * rstd * gamma + beta over the last dim ----
 * With xhat = (x - mean) rstd and g = dy * gamma, the input gradient is
 *   dx = rstd (g - mean(g) - xhat mean(g xhat)),
 * and dgamma = sum_rows dy xhat, dbeta = sum_rows dy. */
t2s_tensor *t2s_layer_norm(t2s_ctx *ctx, t2s_tensor *x, t2s_tensor *gamma, t2s_tensor *beta,
                           float eps) {
  if (!t2s_ctx_ok(ctx) || x == NULL) return NULL;
  char sx[96], sp[96];
  if (!t2s_is_float(x) || x->ndim < 1 || x->shape[x->ndim - 1] < 1)
    return t2s_ctx_fail(ctx, T2S_ERR_INVALID, "layer_norm: input %s %s needs float32 (..., C)",
                        t2s_dtype_name(x->dtype), t2s_shape_str(x, sx, sizeof sx));
  const t2s_tensor *params[2] = {gamma, beta};
  for (int k = 0; k < 2; k++) {
    const t2s_tensor *p = params[k];
    if (p != NULL && (p->dtype != T2S_F32 || p->ndim != 1 || p->shape[0] != x->shape[x->ndim - 1]))
      return t2s_ctx_fail(ctx, T2S_ERR_INVALID, "layer_norm: %s %s does not match input %s",
                          k ? "beta" : "gamma", t2s_shape_str(p, sp, sizeof sp),
                          t2s_shape_str(x, sx, sizeof sx));
  }
  if (!(eps >= 0.0f))
    return t2s_ctx_fail(ctx, T2S_ERR_INVALID, "layer_norm: eps %g must be >= 0", eps);
  layer_norm_args a = {eps};
  t2s_tensor *in[3] = {x, gamma, beta};
  return t2s_op_apply(ctx, T2S_OP_layer_norm, in, 3, like(ctx, x), &a, sizeof a);
}

t2s_status t2s_layer_norm_cpu_forward(t2s_ctx *ctx, t2s_node *node) {
  float eps = ((const layer_norm_args *)node->args)->eps;
  const t2s_tensor *x = node->in[0];
  const float *gamma = node->in[1] ? t2s_f32(node->in[1]) : NULL;
  const float *shift = node->in[2] ? t2s_f32(node->in[2]) : NULL;
  int64_t c = x->shape[x->ndim - 1], rows = t2s_numel(x) / c;
  layer_norm_saved *sv = NULL;
  if (node->recording) {
    sv = t2s_scratch(ctx, sizeof *sv);
    if (sv == NULL || (sv->mean = t2s_scratch(ctx, (size_t)rows * sizeof(float))) == NULL ||
        (sv->rstd = t2s_scratch(ctx, (size_t)rows * sizeof(float))) == NULL)
      return ctx->err.status;
    node->saved = sv;
  }
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = t2s_f32(x) + r * c;
    float *yr = t2s_f32(node->out) + r * c;
    double sum = 0.0, sq = 0.0;
    for (int64_t j = 0; j < c; j++) sum += xr[j];
    double mean = sum / (double)c;
    for (int64_t j = 0; j < c; j++) sq += (xr[j] - mean) * (xr[j] - mean);
    double rstd = 1.0 / sqrt(sq / (double)c + eps);
    for (int64_t j = 0; j < c; j++) {
      double v = (xr[j] - mean) * rstd;
      if (gamma) v *= gamma[j];
      if (shift) v += shift[j];
      yr[j] = (float)v;
    }
    if (sv) {
      sv->mean[r] = (float)mean;
      sv->rstd[r] = (float)rstd;
    }
  }
  return T2S_OK;
}

t2s_status t2s_layer_norm_cpu_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  const layer_norm_saved *sv = node->saved;
  t2s_tensor *x = node->in[0], *gt = node->in[1], *bt = node->in[2];
  const float *gamma = gt ? t2s_f32(gt) : NULL;
  int64_t c = x->shape[x->ndim - 1], rows = t2s_numel(x) / c;
  int want_g = t2s_wants_grad(gt), want_b = t2s_wants_grad(bt);
  double *acc = t2s_scratch(ctx, (size_t)(2 * c) * sizeof(double)); /* dgamma, dbeta */
  if (acc == NULL) return ctx->err.status;
  memset(acc, 0, (size_t)(2 * c) * sizeof(double));
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = t2s_f32(x) + r * c, *dy = node->out->grad + r * c;
    double mean = sv->mean[r], rstd = sv->rstd[r], mg = 0.0, mgx = 0.0;
    for (int64_t j = 0; j < c; j++) {
      double xhat = (xr[j] - mean) * rstd, g = gamma ? dy[j] * (double)gamma[j] : dy[j];
      mg += g;
      mgx += g * xhat;
      acc[j] += dy[j] * xhat;
      acc[c + j] += dy[j];
    }
    mg /= (double)c;
    mgx /= (double)c;
    if (t2s_wants_grad(x))
      for (int64_t j = 0; j < c; j++) {
        double xhat = (xr[j] - mean) * rstd, g = gamma ? dy[j] * (double)gamma[j] : dy[j];
        put(x->grad, r * c + j, (float)(rstd * (g - mg - xhat * mgx)), beta[0]);
      }
  }
  for (int64_t j = 0; j < c; j++) {
    if (want_g) put(gt->grad, j, (float)acc[j], beta[1]);
    if (want_b) put(bt->grad, j, (float)acc[c + j], beta[2]);
  }
  return T2S_OK;
}

/* ---- softmax: y_j = exp(x_j - max) / sum_k exp(x_k - max); dx_j = y_j (dy_j - sum_k dy_k y_k) ---- */
t2s_tensor *t2s_softmax(t2s_ctx *ctx, t2s_tensor *x, int dim) {
  if (!t2s_ctx_ok(ctx) || x == NULL) return NULL;
  softmax_args a;
  if (!dim_check(ctx, "softmax", x, dim, &a.dim)) return NULL;
  t2s_tensor *in[1] = {x};
  return t2s_op_apply(ctx, T2S_OP_softmax, in, 1, like(ctx, x), &a, sizeof a);
}

t2s_status t2s_softmax_cpu_forward(t2s_ctx *ctx, t2s_node *node) {
  int64_t outer, len, inner;
  split_at(node->in[0], ((const softmax_args *)node->args)->dim, &outer, &len, &inner);
  float *mx = t2s_scratch(ctx, (size_t)inner * sizeof(float));
  double *sum = t2s_scratch(ctx, (size_t)inner * sizeof(double));
  if (mx == NULL || sum == NULL) return ctx->err.status;
  for (int64_t o = 0; o < outer; o++) {
    const float *x = t2s_f32(node->in[0]) + o * len * inner;
    float *y = t2s_f32(node->out) + o * len * inner;
    for (int64_t i = 0; i < inner; i++) {
      mx[i] = x[i];
      sum[i] = 0.0;
    }
    for (int64_t j = 1; j < len; j++)
      for (int64_t i = 0; i < inner; i++) mx[i] = fmaxf(mx[i], x[j * inner + i]);
    for (int64_t j = 0; j < len; j++)
      for (int64_t i = 0; i < inner; i++) {
        float e = expf(x[j * inner + i] - mx[i]);
        y[j * inner + i] = e;
        sum[i] += e;
      }
    for (int64_t j = 0; j < len; j++)
      for (int64_t i = 0; i < inner; i++) y[j * inner + i] = (float)(y[j * inner + i] / sum[i]);
  }
  return T2S_OK;
}

t2s_status t2s_softmax_cpu_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  int64_t outer, len, inner;
  split_at(node->in[0], ((const softmax_args *)node->args)->dim, &outer, &len, &inner);
  double *dot = t2s_scratch(ctx, (size_t)inner * sizeof(double));
  if (dot == NULL) return ctx->err.status;
  for (int64_t o = 0; o < outer; o++) {
    int64_t base = o * len * inner;
    const float *y = t2s_f32(node->out) + base, *dy = node->out->grad + base;
    memset(dot, 0, (size_t)inner * sizeof(double));
    for (int64_t j = 0; j < len; j++)
      for (int64_t i = 0; i < inner; i++) dot[i] += (double)dy[j * inner + i] * y[j * inner + i];
    for (int64_t j = 0; j < len; j++)
      for (int64_t i = 0; i < inner; i++) {
        int64_t e = j * inner + i;
        put(node->in[0]->grad, base + e, (float)(y[e] * (dy[e] - dot[i])), beta[0]);
      }
  }
  return T2S_OK;
}

/* ---- l2 normalize: y = x / max(n, eps), n = ||x||_2 along dim (F.normalize) ----
 * Where n >= eps: dx = (dy - y sum(dy y)) / n. Where n < eps the divisor is the
 * constant eps (clamp_min passes no gradient to n): dx = dy / eps. */
t2s_tensor *t2s_l2_normalize(t2s_ctx *ctx, t2s_tensor *x, int dim, float eps) {
  if (!t2s_ctx_ok(ctx) || x == NULL) return NULL;
  l2_args a = {0, eps};
  if (!dim_check(ctx, "l2_normalize", x, dim, &a.dim)) return NULL;
  if (!(eps > 0.0f))
    return t2s_ctx_fail(ctx, T2S_ERR_INVALID,
                        "l2_normalize: eps %g must be > 0 (F.normalize uses 1e-12)", eps);
  t2s_tensor *in[1] = {x};
  return t2s_op_apply(ctx, T2S_OP_l2_normalize, in, 1, like(ctx, x), &a, sizeof a);
}

/* Per-(o, i) norms of x along the dim, in double, into norm[outer * inner]. */
static void l2_norms(const t2s_tensor *x, int64_t outer, int64_t len, int64_t inner, double *norm) {
  for (int64_t o = 0; o < outer; o++) {
    const float *xo = t2s_f32(x) + o * len * inner;
    double *no = norm + o * inner;
    for (int64_t i = 0; i < inner; i++) no[i] = 0.0;
    for (int64_t j = 0; j < len; j++)
      for (int64_t i = 0; i < inner; i++) no[i] += (double)xo[j * inner + i] * xo[j * inner + i];
    for (int64_t i = 0; i < inner; i++) no[i] = sqrt(no[i]);
  }
}

t2s_status t2s_l2_normalize_cpu_forward(t2s_ctx *ctx, t2s_node *node) {
  const l2_args *a = node->args;
  int64_t outer, len, inner;
  split_at(node->in[0], a->dim, &outer, &len, &inner);
  double *norm = t2s_scratch(ctx, (size_t)(outer * inner) * sizeof(double));
  if (norm == NULL) return ctx->err.status;
  l2_norms(node->in[0], outer, len, inner, norm);
  for (int64_t o = 0; o < outer; o++)
    for (int64_t j = 0; j < len; j++)
      for (int64_t i = 0; i < inner; i++) {
        int64_t e = (o * len + j) * inner + i;
        double d = fmax(norm[o * inner + i], a->eps);
        t2s_f32(node->out)[e] = (float)(t2s_f32(node->in[0])[e] / d);
      }
  if (node->recording) node->saved = norm;
  return T2S_OK;
}

t2s_status t2s_l2_normalize_cpu_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  const l2_args *a = node->args;
  const double *norm = node->saved;
  int64_t outer, len, inner;
  split_at(node->in[0], a->dim, &outer, &len, &inner);
  double *dot = t2s_scratch(ctx, (size_t)inner * sizeof(double));
  if (dot == NULL) return ctx->err.status;
  for (int64_t o = 0; o < outer; o++) {
    int64_t base = o * len * inner;
    const float *y = t2s_f32(node->out) + base, *dy = node->out->grad + base;
    const double *no = norm + o * inner;
    memset(dot, 0, (size_t)inner * sizeof(double));
    for (int64_t j = 0; j < len; j++)
      for (int64_t i = 0; i < inner; i++) dot[i] += (double)dy[j * inner + i] * y[j * inner + i];
    for (int64_t j = 0; j < len; j++)
      for (int64_t i = 0; i < inner; i++) {
        int64_t e = j * inner + i;
        double g = no[i] >= a->eps ? (dy[e] - y[e] * dot[i]) / no[i] : dy[e] / a->eps;
        put(node->in[0]->grad, base + e, (float)g, beta[0]);
      }
  }
  return T2S_OK;
}
