/* Batch normalisation on the CPU (x (N, C, *) contiguous, float32; statistics in double).
 *
 * Per channel c over the M = N * (H W ...) values of x:
 *   mean = sum(x) / M,  var = sum(x^2) / M - mean^2 (biased, used to normalise)
 *   xhat = (x - mean) invstd,  invstd = 1 / sqrt(var + eps),  y = gamma xhat + beta
 * TRAIN uses the batch statistics and updates the running ones as PyTorch does:
 *   running_mean = (1 - m) running_mean + m mean
 *   running_var  = (1 - m) running_var  + m var M / (M - 1)   (unbiased)
 * EVAL and FROZEN use the running statistics (mean, invstd are constants).
 * Backward, with dgamma = sum(dy xhat) and dbeta = sum(dy) per channel:
 *   TRAIN:        dx = gamma invstd (dy - sum(dy) / M - xhat sum(dy xhat) / M)
 *   EVAL, FROZEN: dx = gamma invstd dy
 * SyncBN (ctx->sync_bn with ctx->stat_allreduce): forward sums [sum x, sum x^2, M]
 * and backward sums [sum dy, sum dy xhat] over ranks, so the ranks normalise with the
 * statistics of the concatenated batch. dgamma and dbeta stay local: they are
 * parameter gradients, reduced over ranks with all the others. */
#include <math.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "core/ops/batch_norm.h"

typedef t2s_bn_args bn_args;

/* What backward needs: per-channel mean and invstd, and the (global) count M. */
typedef struct bn_saved {
  double *mean, *invstd;
  double count;
} bn_saved;

typedef struct bn_geom {
  int64_t n, c, inner; /* x viewed as (n, c, inner) */
} bn_geom;

static bn_geom bn_geom_of(const t2s_tensor *x) {
  bn_geom g = {x->shape[0], x->shape[1], 1};
  for (int i = 2; i < x->ndim; i++) g.inner *= x->shape[i];
  return g;
}

static const char *bn_mode_name(t2s_bn_mode m) {
  return m == T2S_BN_TRAIN ? "train" : m == T2S_BN_EVAL ? "eval" : "frozen";
}

/* A (C) float32 vector or NULL where optional. */
static int bn_check_vec(t2s_ctx *ctx, const t2s_tensor *v, const char *what, const t2s_tensor *x,
                        t2s_bn_mode mode, int required) {
  char sx[96], sv[96];
  if (v == NULL) {
    if (required)
      t2s_ctx_fail(ctx, T2S_ERR_INVALID, "batch_norm: %s mode needs %s (x %s)", bn_mode_name(mode),
                   what, t2s_shape_str(x, sx, sizeof sx));
    return !required;
  }
  if (v->dtype != T2S_F32 || v->ndim != 1 || v->shape[0] != x->shape[1]) {
    t2s_ctx_fail(ctx, T2S_ERR_INVALID,
                 "batch_norm: %s %s (%s) must be float32 (C) = (%lld) for x %s", what,
                 t2s_shape_str(v, sv, sizeof sv), t2s_dtype_name(v->dtype), (long long)x->shape[1],
                 t2s_shape_str(x, sx, sizeof sx));
    return 0;
  }
  return 1;
}

t2s_tensor *t2s_batch_norm(t2s_ctx *ctx, t2s_tensor *x, t2s_tensor *gamma, t2s_tensor *beta,
                           t2s_tensor *running_mean, t2s_tensor *running_var, t2s_bn_mode mode,
                           float momentum, float eps) {
  if (!t2s_ctx_ok(ctx) || x == NULL) return NULL;
  char sx[96];
  if (!t2s_is_float(x) || x->ndim < 2)
    return t2s_ctx_fail(ctx, T2S_ERR_INVALID, "batch_norm: x %s (%s) must be float32 (N, C, ...)",
                        t2s_shape_str(x, sx, sizeof sx), t2s_dtype_name(x->dtype));
  if (mode != T2S_BN_TRAIN && mode != T2S_BN_EVAL && mode != T2S_BN_FROZEN)
    return t2s_ctx_fail(ctx, T2S_ERR_INVALID, "batch_norm: unknown mode %d", (int)mode);
  if (!(eps > 0.0f) || !(momentum >= 0.0f && momentum <= 1.0f))
    return t2s_ctx_fail(ctx, T2S_ERR_INVALID,
                        "batch_norm: eps %g must be > 0 and momentum %g in [0, 1]", eps, momentum);
  int needs_running = mode != T2S_BN_TRAIN;
  if (!bn_check_vec(ctx, gamma, "gamma", x, mode, 0) ||
      !bn_check_vec(ctx, beta, "beta", x, mode, 0) ||
      !bn_check_vec(ctx, running_mean, "running_mean", x, mode, needs_running) ||
      !bn_check_vec(ctx, running_var, "running_var", x, mode, needs_running))
    return NULL;
  if ((running_mean == NULL) != (running_var == NULL))
    return t2s_ctx_fail(ctx, T2S_ERR_INVALID,
                        "batch_norm: give both running_mean and running_var or neither (x %s)",
                        t2s_shape_str(x, sx, sizeof sx));
  /* Frozen: gamma and beta enter as constants, so the tape never allocates or
   * touches their gradients even when they require one. */
  if (mode == T2S_BN_FROZEN) {
    t2s_tensor *g2 = gamma ? t2s_scratch(ctx, sizeof *g2) : NULL;
    t2s_tensor *b2 = beta ? t2s_scratch(ctx, sizeof *b2) : NULL;
    if ((gamma && !g2) || (beta && !b2)) return NULL;
    if (g2) *g2 = *gamma, g2->requires_grad = 0, g2->grad = NULL;
    if (b2) *b2 = *beta, b2->requires_grad = 0, b2->grad = NULL;
    gamma = g2, beta = b2;
  }
  bn_args a = {mode, momentum, eps};
  t2s_tensor *in[5] = {x, gamma, beta, running_mean, running_var};
  return t2s_op_apply(ctx, T2S_OP_batch_norm, in, 5,
                      t2s_tensor_new(ctx, t2s_follow_dtype(x, NULL), x->ndim, x->shape), &a, sizeof a);
}

/* The per-channel sums run in BN_LANES interleaved double accumulators (element i of a
 * row goes to lane i % BN_LANES, the row's tail to lane 0; the lanes are added pairwise
 * at the end). One accumulator made each sum a chain of dependent double additions,
 * bound by the adder's latency (scalar, 4 cycles an element); independent lanes
 * vectorise and overlap. The order of the additions depends only on the shape, never
 * on the thread count, so results stay reproducible. */
enum { BN_LANES = 8 };

static inline double bn_lanes_sum(const double *l) {
  return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
}

/* Adds row p[0..n) into the lanes of s (values) and ss (squares). */
static inline void bn_row_moments(const float *p, int64_t n, double *s, double *ss) {
  int64_t i = 0;
#ifdef __SSE2__
  /* the same lanes two to a register: lane-wise IEEE adds, so bit-identical to the loop
   * below (the compiler does not vectorise that one by itself: float -> double widening) */
  __m128d s0 = _mm_loadu_pd(s), s1 = _mm_loadu_pd(s + 2), s2 = _mm_loadu_pd(s + 4), s3 = _mm_loadu_pd(s + 6);
  __m128d q0 = _mm_loadu_pd(ss), q1 = _mm_loadu_pd(ss + 2), q2 = _mm_loadu_pd(ss + 4), q3 = _mm_loadu_pd(ss + 6);
  for (; i + BN_LANES <= n; i += BN_LANES) {
    __m128 a = _mm_loadu_ps(p + i), b = _mm_loadu_ps(p + i + 4);
    __m128d v0 = _mm_cvtps_pd(a), v1 = _mm_cvtps_pd(_mm_movehl_ps(a, a));
    __m128d v2 = _mm_cvtps_pd(b), v3 = _mm_cvtps_pd(_mm_movehl_ps(b, b));
    s0 = _mm_add_pd(s0, v0), q0 = _mm_add_pd(q0, _mm_mul_pd(v0, v0));
    s1 = _mm_add_pd(s1, v1), q1 = _mm_add_pd(q1, _mm_mul_pd(v1, v1));
    s2 = _mm_add_pd(s2, v2), q2 = _mm_add_pd(q2, _mm_mul_pd(v2, v2));
    s3 = _mm_add_pd(s3, v3), q3 = _mm_add_pd(q3, _mm_mul_pd(v3, v3));
  }
  _mm_storeu_pd(s, s0), _mm_storeu_pd(s + 2, s1), _mm_storeu_pd(s + 4, s2), _mm_storeu_pd(s + 6, s3);
  _mm_storeu_pd(ss, q0), _mm_storeu_pd(ss + 2, q1), _mm_storeu_pd(ss + 4, q2), _mm_storeu_pd(ss + 6, q3);
#endif
  for (; i + BN_LANES <= n; i += BN_LANES)
    for (int l = 0; l < BN_LANES; l++) {
      double v = p[i + l];
      s[l] += v;
      ss[l] += v * v;
    }
  for (; i < n; i++) {
    double v = p[i];
    s[0] += v;
    ss[0] += v * v;
  }
}

/* Adds the row's dy (dp) and dy xhat, xhat = (x - mean) invstd, into the lanes of sd, sdx. */
static inline void bn_row_dy_sums(const float *dp, const float *xp, int64_t n, double mean,
                                  double invstd, double *sd, double *sdx) {
  int64_t i = 0;
#ifdef __SSE2__
  __m128d d0 = _mm_loadu_pd(sd), d1 = _mm_loadu_pd(sd + 2), d2 = _mm_loadu_pd(sd + 4), d3 = _mm_loadu_pd(sd + 6);
  __m128d e0 = _mm_loadu_pd(sdx), e1 = _mm_loadu_pd(sdx + 2), e2 = _mm_loadu_pd(sdx + 4), e3 = _mm_loadu_pd(sdx + 6);
  const __m128d mv = _mm_set1_pd(mean), iv = _mm_set1_pd(invstd);
  for (; i + BN_LANES <= n; i += BN_LANES) {
    __m128 a = _mm_loadu_ps(dp + i), b = _mm_loadu_ps(dp + i + 4);
    __m128 xa = _mm_loadu_ps(xp + i), xb = _mm_loadu_ps(xp + i + 4);
    __m128d g0 = _mm_cvtps_pd(a), g1 = _mm_cvtps_pd(_mm_movehl_ps(a, a));
    __m128d g2 = _mm_cvtps_pd(b), g3 = _mm_cvtps_pd(_mm_movehl_ps(b, b));
    __m128d h0 = _mm_mul_pd(_mm_sub_pd(_mm_cvtps_pd(xa), mv), iv);
    __m128d h1 = _mm_mul_pd(_mm_sub_pd(_mm_cvtps_pd(_mm_movehl_ps(xa, xa)), mv), iv);
    __m128d h2 = _mm_mul_pd(_mm_sub_pd(_mm_cvtps_pd(xb), mv), iv);
    __m128d h3 = _mm_mul_pd(_mm_sub_pd(_mm_cvtps_pd(_mm_movehl_ps(xb, xb)), mv), iv);
    d0 = _mm_add_pd(d0, g0), e0 = _mm_add_pd(e0, _mm_mul_pd(g0, h0));
    d1 = _mm_add_pd(d1, g1), e1 = _mm_add_pd(e1, _mm_mul_pd(g1, h1));
    d2 = _mm_add_pd(d2, g2), e2 = _mm_add_pd(e2, _mm_mul_pd(g2, h2));
    d3 = _mm_add_pd(d3, g3), e3 = _mm_add_pd(e3, _mm_mul_pd(g3, h3));
  }
  _mm_storeu_pd(sd, d0), _mm_storeu_pd(sd + 2, d1), _mm_storeu_pd(sd + 4, d2), _mm_storeu_pd(sd + 6, d3);
  _mm_storeu_pd(sdx, e0), _mm_storeu_pd(sdx + 2, e1), _mm_storeu_pd(sdx + 4, e2), _mm_storeu_pd(sdx + 6, e3);
#endif
  for (; i + BN_LANES <= n; i += BN_LANES)
    for (int l = 0; l < BN_LANES; l++) {
      double d = dp[i + l];
      sd[l] += d;
      sdx[l] += d * ((xp[i + l] - mean) * invstd);
    }
  for (; i < n; i++) {
    double d = dp[i];
    sd[0] += d;
    sdx[0] += d * ((xp[i] - mean) * invstd);
  }
}

/* Whether a loop over the channels runs on OpenMP threads. */
static int bn_parallel(const bn_geom *g) { return g->c * g->n * g->inner > (1 << 15); }

/* stats[c] = sum of channel c of x, stats[C + c] = sum of its squares. */
static void bn_channel_moments(const bn_geom *g, const float *x, int64_t c, double *stats) {
  double s[BN_LANES] = {0}, ss[BN_LANES] = {0};
  for (int64_t n = 0; n < g->n; n++) bn_row_moments(x + (n * g->c + c) * g->inner, g->inner, s, ss);
  stats[c] = bn_lanes_sum(s);
  stats[g->c + c] = bn_lanes_sum(ss);
}

static int bn_sync(const t2s_ctx *ctx) { return ctx->sync_bn && ctx->stat_allreduce != NULL; }

static t2s_status bn_sync_failed(t2s_ctx *ctx, const char *pass, const t2s_tensor *x) {
  char sx[96];
  if (t2s_ctx_ok(ctx))
    t2s_ctx_fail(ctx, T2S_ERR_COMM, "batch_norm %s: the SyncBN statistic all-reduce failed (x %s)",
                 pass, t2s_shape_str(x, sx, sizeof sx));
  return ctx->err.status;
}

/* Channel c's mean and invstd from its sums over m values (stats as bn_channel_moments
 * leaves them), into s; updates its running statistics. */
static void bn_channel_stats(const bn_args *a, const bn_geom *g, const double *stats, double m,
                             int64_t c, bn_saved *s, float *rm, float *rv) {
  double mean = stats[c] / m;
  double var = stats[g->c + c] / m - mean * mean;
  if (var < 0.0) var = 0.0; /* rounding when all values are (nearly) equal */
  s->mean[c] = mean;
  s->invstd[c] = 1.0 / sqrt(var + a->eps);
  if (rm) {
    rm[c] = (float)((1.0 - a->momentum) * rm[c] + a->momentum * mean);
    rv[c] = (float)((1.0 - a->momentum) * rv[c] + a->momentum * var * m / (m - 1.0));
  }
}

/* y = (x - mean) scale + beta over channel c, scale = gamma invstd (centred first: a large
 * mean would cancel in x scale + (beta - mean scale)). */
static void bn_channel_normalize(const bn_geom *g, const bn_saved *s, const float *x,
                                 const float *gamma, const float *beta, int64_t c, float *y) {
  float sc = (float)((gamma ? gamma[c] : 1.0) * s->invstd[c]);
  float mu = (float)s->mean[c], sh = beta ? beta[c] : 0.0f;
  for (int64_t n = 0; n < g->n; n++) {
    int64_t off = (n * g->c + c) * g->inner;
    for (int64_t i = 0; i < g->inner; i++) y[off + i] = (x[off + i] - mu) * sc + sh;
  }
}

static t2s_status bn_too_few(t2s_ctx *ctx, const t2s_tensor *x, double m) {
  char sx[96];
  t2s_ctx_fail(ctx, T2S_ERR_INVALID,
               "batch_norm: training mode needs more than one value per channel, x %s gives %g "
               "(use a larger batch or crop, or frozen batch norm)",
               t2s_shape_str(x, sx, sizeof sx), m);
  return T2S_ERR_INVALID;
}

/* Training forward: batch statistics into s, running statistics updated, y written.
 * Without SyncBN each channel is done start to end by one thread (moments, statistics,
 * normalisation), so the second read of its values comes from cache rather than memory;
 * SyncBN needs every channel's sums of every rank before any normalisation. Both give
 * the same bits: the same sums, the same formulas. */
static t2s_status bn_train_forward(t2s_ctx *ctx, const t2s_node *node, const bn_geom *g,
                                   bn_saved *s) {
  const bn_args *a = node->args;
  const float *x = t2s_f32(node->in[0]);
  const float *gamma = node->in[1] ? t2s_f32(node->in[1]) : NULL;
  const float *beta = node->in[2] ? t2s_f32(node->in[2]) : NULL;
  float *rm = node->in[3] ? t2s_f32(node->in[3]) : NULL,
        *rv = node->in[4] ? t2s_f32(node->in[4]) : NULL;
  float *y = t2s_f32(node->out);
  double *stats = t2s_scratch(ctx, (size_t)(2 * g->c + 1) * sizeof(double));
  if (stats == NULL) return ctx->err.status;
  double m = (double)(g->n * g->inner);
  if (!bn_sync(ctx)) {
    if (m <= 1.0) return bn_too_few(ctx, node->in[0], m);
    #pragma omp parallel for schedule(static) if (bn_parallel(g))
    for (int64_t c = 0; c < g->c; c++) {
      bn_channel_moments(g, x, c, stats);
      bn_channel_stats(a, g, stats, m, c, s, rm, rv);
      bn_channel_normalize(g, s, x, gamma, beta, c, y);
    }
    s->count = m;
    return T2S_OK;
  }
  #pragma omp parallel for schedule(static) if (bn_parallel(g))
  for (int64_t c = 0; c < g->c; c++) bn_channel_moments(g, x, c, stats);
  stats[2 * g->c] = m;
  if (ctx->stat_allreduce(ctx->stat_user, stats, (size_t)(2 * g->c + 1), &ctx->err) != T2S_OK)
    return bn_sync_failed(ctx, "forward", node->in[0]);
  m = stats[2 * g->c];
  if (m <= 1.0) return bn_too_few(ctx, node->in[0], m);
  for (int64_t c = 0; c < g->c; c++) bn_channel_stats(a, g, stats, m, c, s, rm, rv);
  s->count = m;
  #pragma omp parallel for schedule(static) if (bn_parallel(g))
  for (int64_t c = 0; c < g->c; c++) bn_channel_normalize(g, s, x, gamma, beta, c, y);
  return T2S_OK;
}

t2s_status t2s_batch_norm_cpu_forward(t2s_ctx *ctx, t2s_node *node) {
  const bn_args *a = node->args;
  bn_geom g = bn_geom_of(node->in[0]);
  bn_saved *s = t2s_scratch(ctx, sizeof *s);
  if (s == NULL) return ctx->err.status;
  s->mean = t2s_scratch(ctx, (size_t)g.c * sizeof(double));
  s->invstd = t2s_scratch(ctx, (size_t)g.c * sizeof(double));
  if (s->mean == NULL || s->invstd == NULL) return ctx->err.status;
  if (a->mode == T2S_BN_TRAIN) {
    t2s_status st = bn_train_forward(ctx, node, &g, s);
    if (st != T2S_OK) return st;
  } else {
    const float *rm = t2s_f32(node->in[3]), *rv = t2s_f32(node->in[4]);
    for (int64_t c = 0; c < g.c; c++) {
      s->mean[c] = rm[c];
      s->invstd[c] = 1.0 / sqrt((double)rv[c] + a->eps);
    }
    s->count = (double)(g.n * g.inner);
    const float *gamma = node->in[1] ? t2s_f32(node->in[1]) : NULL;
    const float *beta = node->in[2] ? t2s_f32(node->in[2]) : NULL;
    /* channels are independent: parallel without changing any value */
    #pragma omp parallel for schedule(static) if (bn_parallel(&g))
    for (int64_t c = 0; c < g.c; c++)
      bn_channel_normalize(&g, s, t2s_f32(node->in[0]), gamma, beta, c, t2s_f32(node->out));
  }
  node->saved = node->recording ? s : NULL;
  return T2S_OK;
}

static inline void bn_put(float *out, int64_t i, float v, float beta) {
  out[i] = beta != 0.0f ? out[i] + v : v;
}

/* dx over channel c, from its sums (local, or over all ranks under SyncBN):
 *   TRAIN: dx = k dy - k sum(dy)/M - k invstd sum(dy xhat)/M (x - mean), k = gamma invstd,
 *          = ca dy + cb (x - mean) + cd
 *   EVAL, FROZEN: dx = k dy (cb = cd = 0).
 * accumulate: dx += instead of dx = (the write/accumulate contract). */
static void bn_channel_dx(const bn_geom *g, const bn_saved *s, const float *x, const float *dy,
                          const float *gamma, const double *sums, int train, int64_t c,
                          int accumulate, float *dx) {
  double k = (gamma ? gamma[c] : 1.0) * s->invstd[c];
  double mdy = train ? sums[c] / s->count : 0.0;
  double mdyx = train ? sums[g->c + c] / s->count : 0.0;
  float ca = (float)k, cb = (float)(-k * mdyx * s->invstd[c]), cd = (float)(-k * mdy);
  float mu = (float)s->mean[c];
  for (int64_t n = 0; n < g->n; n++) {
    int64_t off = (n * g->c + c) * g->inner;
    if (accumulate)
      for (int64_t i = 0; i < g->inner; i++)
        dx[off + i] += ca * dy[off + i] + cb * (x[off + i] - mu) + cd;
    else
      for (int64_t i = 0; i < g->inner; i++)
        dx[off + i] = ca * dy[off + i] + cb * (x[off + i] - mu) + cd;
  }
}

/* sums[c] = sum(dy), sums[C + c] = sum(dy xhat) over channel c. */
static void bn_channel_dy_sums(const bn_geom *g, const bn_saved *s, const float *x,
                               const float *dy, int64_t c, double *sums) {
  double sd[BN_LANES] = {0}, sdx[BN_LANES] = {0};
  for (int64_t n = 0; n < g->n; n++) {
    int64_t off = (n * g->c + c) * g->inner;
    bn_row_dy_sums(dy + off, x + off, g->inner, s->mean[c], s->invstd[c], sd, sdx);
  }
  sums[c] = bn_lanes_sum(sd);
  sums[g->c + c] = bn_lanes_sum(sdx);
}

t2s_status t2s_batch_norm_cpu_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  const bn_args *a = node->args;
  const bn_saved *s = node->saved;
  bn_geom g = bn_geom_of(node->in[0]);
  t2s_tensor *xt = node->in[0], *gt = node->in[1], *bt = node->in[2];
  const float *x = t2s_f32(xt), *dy = node->out->grad;
  const float *gamma = gt ? t2s_f32(gt) : NULL;
  int train = a->mode == T2S_BN_TRAIN, want_dx = t2s_wants_grad(xt), accumulate = beta[0] != 0.0f;
  /* Without SyncBN a channel's dx needs only its own sums: one thread does the channel
   * start to end, and dx's second read of x and dy comes from cache. SyncBN reduces
   * the sums over ranks first. */
  int fused = want_dx && !(train && bn_sync(ctx));
  /* sums[0..c) = sum(dy), sums[c..2c) = sum(dy xhat), per channel, local */
  double *sums = t2s_scratch(ctx, (size_t)(2 * g.c) * sizeof(double));
  if (sums == NULL) return ctx->err.status;
  /* channels are independent: parallel without changing any sum */
  #pragma omp parallel for schedule(static) if (bn_parallel(&g))
  for (int64_t c = 0; c < g.c; c++) {
    bn_channel_dy_sums(&g, s, x, dy, c, sums);
    if (fused) bn_channel_dx(&g, s, x, dy, gamma, sums, train, c, accumulate, xt->grad);
  }
  for (int64_t c = 0; c < g.c; c++) {
    if (t2s_wants_grad(gt)) bn_put(gt->grad, c, (float)sums[g.c + c], beta[1]);
    if (t2s_wants_grad(bt)) bn_put(bt->grad, c, (float)sums[c], beta[2]);
  }
  if (!want_dx || fused) return T2S_OK;
  if (ctx->stat_allreduce(ctx->stat_user, sums, (size_t)(2 * g.c), &ctx->err) != T2S_OK)
    return bn_sync_failed(ctx, "backward", xt);
  #pragma omp parallel for schedule(static) if (bn_parallel(&g))
  for (int64_t c = 0; c < g.c; c++)
    bn_channel_dx(&g, s, x, dy, gamma, sums, train, c, accumulate, xt->grad);
  return T2S_OK;
}
