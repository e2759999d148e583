/* The T2S pulling loss, its prototypes and the labels at feature resolution (CPU).
 *
 * Gradient of one query's loss (s_0 = q.k_c / tau the positive, s_n = q.k_n / tau):
 *   l = lse(s_0, s_1..s_N) - s_0,  dl/dq = ((p_0 - 1) k_c + sum_n p_n k_n) / tau,
 * p = softmax(s_0, s_1..s_N). Forward keeps p per query (1 + N_n floats) so backward
 * only gathers the vectors again. A pixel is the query of at most one group (it has
 * one label), so backward scatters without collisions.
 *
 * On a CUDA context the features, labels, class weights, prototypes and present mask
 * are device tensors (t2s_prototypes_tensor copies the prototypes there). The CUDA
 * slot downloads the small label map and mask, draws the identical plan on the host,
 * and runs the loss and its gradient over the sampled pixels on the GPU
 * (losses/cuda/pull_loss.cu). t2s_class_prototypes reads device keys through a host copy. */
#include "losses/pull_loss.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/device.h"
#include "core/ops.h"
#include "losses/batch_stats.h"
#include "losses/host_view.h"

enum { PURPOSE_QUERY = 1, PURPOSE_NEGATIVE = 2 };

t2s_pull_cfg t2s_pull_cfg_defaults(void) {
  t2s_pull_cfg c = {256, 50, 0.5f, T2S_PULL_NEG_KEYS, T2S_LABEL_DOWN_NEAREST, 0.75f, 0.0f, 255};
  return c;
}

const char *t2s_pull_cfg_check(const t2s_pull_cfg *c) {
  if (c->num_queries < 1) return "pull loss: num_queries must be at least 1";
  if (c->num_negatives < 0) return "pull loss: num_negatives must be >= 0";
  if (!(c->tau > 0.0f)) return "pull loss: tau must be > 0";
  if (c->negatives != T2S_PULL_NEG_KEYS && c->negatives != T2S_PULL_NEG_PROTOTYPES)
    return "pull loss: negatives must be 'keys' or 'prototypes'";
  if (c->label_down != T2S_LABEL_DOWN_NEAREST && c->label_down != T2S_LABEL_DOWN_MAJORITY)
    return "pull loss: label_down must be 'nearest' or 'majority'";
  if (!(c->majority_ratio > 0.0f && c->majority_ratio <= 1.0f))
    return "pull loss: majority_ratio must be in (0, 1]";
  if (!(c->proto_momentum >= 0.0f && c->proto_momentum < 1.0f))
    return "pull loss: proto_momentum must be in [0, 1)";
  if (c->ignore_index < 0 || c->ignore_index > 255) return "pull loss: ignore_index must be 0..255";
  return NULL;
}

static int is_host(const t2s_tensor *t) { return t != NULL && t->device == T2S_DEV_CPU; }

/* ---- labels at feature resolution ------------------------------------------------ */

static uint8_t majority_cell(const uint8_t *y, int64_t W, int64_t r0, int64_t r1, int64_t c0,
                             int64_t c1, double ratio, int ignore) {
  int32_t hist[256] = {0};
  for (int64_t r = r0; r < r1; r++)
    for (int64_t c = c0; c < c1; c++) hist[y[r * W + c]]++;
  double need = ratio * (double)((r1 - r0) * (c1 - c0));
  for (int v = 0; v < 256; v++)
    if (v != ignore && hist[v] > 0 && (double)hist[v] >= need) return (uint8_t)v;
  return (uint8_t)ignore;
}

t2s_tensor *t2s_labels_downsample(t2s_ctx *ctx, t2s_tensor *labels, int out_h, int out_w,
                                  t2s_label_down mode, float ratio, int ignore_index) {
  if (!t2s_ctx_ok(ctx) || labels == NULL) return NULL;
  char s[96];
  if (labels->dtype != T2S_U8 || labels->ndim != 3 || out_h < 1 || out_w < 1 ||
      (mode == T2S_LABEL_DOWN_MAJORITY && !is_host(labels)))
    return t2s_ctx_fail(ctx, T2S_ERR_INVALID,
                        "labels_downsample: labels must be uint8 (N, H, W) (in host memory for "
                        "majority) and the size positive; got %s %s to %dx%d",
                        t2s_dtype_name(labels->dtype), t2s_shape_str(labels, s, sizeof s), out_h,
                        out_w);
  /* nearest is the core op: PyTorch's float index arithmetic, and a CUDA slot */
  if (mode == T2S_LABEL_DOWN_NEAREST) return t2s_resize_nearest(ctx, labels, out_h, out_w);
  int64_t n = labels->shape[0], H = labels->shape[1], W = labels->shape[2];
  int64_t shape[3] = {n, out_h, out_w};
  t2s_tensor *out = t2s_tensor_new(ctx, T2S_U8, 3, shape);
  if (out == NULL) return NULL;
  const uint8_t *y = t2s_u8(labels);
  uint8_t *o = t2s_u8(out);
  for (int64_t b = 0; b < n; b++)
    for (int64_t i = 0; i < out_h; i++)
      for (int64_t j = 0; j < out_w; j++) {
        int64_t r0 = i * H / out_h, c0 = j * W / out_w;
        int64_t r1 = (i + 1) * H / out_h, c1 = (j + 1) * W / out_w;
        if (r1 <= r0) r1 = r0 + 1;  /* upsampling: a cell of one pixel */
        if (c1 <= c0) c1 = c0 + 1;
        o[(b * out_h + i) * out_w + j] =
            majority_cell(y + b * H * W, W, r0, r1, c0, c1, ratio, ignore_index);
      }
  return out;
}

/* ---- prototypes -------------------------------------------------------------------- */

t2s_status t2s_prototypes_init(t2s_prototypes *p, int num_classes, int dim, float momentum,
                               t2s_error *err) {
  memset(p, 0, sizeof *p);
  if (num_classes < 1 || num_classes > 255 || dim < 1 || !(momentum >= 0.0f && momentum < 1.0f))
    return t2s_error_set(err, T2S_ERR_INVALID,
                         "prototypes: need 1..255 classes, dim >= 1 and momentum in [0, 1); got "
                         "%d classes, dim %d, momentum %g",
                         num_classes, dim, momentum);
  p->num_classes = num_classes;
  p->dim = dim;
  p->momentum = momentum;
  p->proto = calloc((size_t)num_classes * dim, sizeof(float));
  p->seen = calloc((size_t)num_classes, 1);
  p->present = calloc((size_t)num_classes, 1);
  p->count = calloc((size_t)num_classes, sizeof(double));
  if (!p->proto || !p->seen || !p->present || !p->count) {
    t2s_prototypes_free(p);
    return t2s_error_set(err, T2S_ERR_NOMEM, "prototypes: out of host memory for %d x %d",
                         num_classes, dim);
  }
  return T2S_OK;
}

void t2s_prototypes_free(t2s_prototypes *p) {
  free(p->proto);
  free(p->seen);
  free(p->present);
  free(p->count);
  memset(p, 0, sizeof *p);
}

/* Labels must be classes (< C) or ignore; names the first offender. */
static int check_label_values(t2s_ctx *ctx, const char *op, const t2s_tensor *labels, int C,
                              int ignore) {
  const uint8_t *y = t2s_u8(labels);
  int64_t n = t2s_numel(labels);
  for (int64_t i = 0; i < n; i++)
    if (y[i] != ignore && y[i] >= C) {
      t2s_ctx_fail(ctx, T2S_ERR_INVALID,
                   "%s: label %d at element %lld is neither a class (0..%d) nor ignore (%d)", op,
                   y[i], (long long)i, C - 1, ignore);
      return 0;
    }
  return 1;
}

/* Features float32 (N, D, h, w) and labels uint8 (N, h, w) at the feature size, both
 * on `dev`. */
static int check_feature_labels(t2s_ctx *ctx, const char *op, const t2s_tensor *f,
                                const t2s_tensor *labels, t2s_device dev) {
  char sf[96], sl[96];
  if (f->dtype == T2S_F32 && f->ndim == 4 && f->device == dev && labels->dtype == T2S_U8 &&
      labels->ndim == 3 && labels->device == dev && labels->shape[0] == f->shape[0] &&
      labels->shape[1] == f->shape[2] && labels->shape[2] == f->shape[3])
    return 1;
  t2s_ctx_fail(ctx, T2S_ERR_INVALID,
               "%s: features must be float32 (N, D, h, w) and labels uint8 (N, h, w) at the "
               "feature size, both in %s memory; got features %s %s, labels %s %s (downsample "
               "the labels with t2s_labels_downsample)",
               op, t2s_device_name(dev), t2s_dtype_name(f->dtype), t2s_shape_str(f, sf, sizeof sf),
               t2s_dtype_name(labels->dtype), t2s_shape_str(labels, sl, sizeof sl));
  return 0;
}

t2s_status t2s_class_prototypes(t2s_ctx *ctx, const t2s_tensor *keys, const t2s_tensor *labels,
                                int ignore_index, t2s_prototypes *p) {
  if (!t2s_ctx_ok(ctx)) return ctx->err.status;
  if (keys == NULL || labels == NULL || p == NULL || p->proto == NULL)
    return t2s_error_set(&ctx->err, T2S_ERR_INVALID, "class_prototypes: NULL argument");
  if (!check_feature_labels(ctx, "class_prototypes", keys, labels, T2S_DEV_CPU))
    return ctx->err.status;
  int C = p->num_classes, D = p->dim;
  if (keys->shape[1] != D)
    return t2s_error_set(&ctx->err, T2S_ERR_INVALID,
                         "class_prototypes: keys have %lld channels, the prototypes %d",
                         (long long)keys->shape[1], D);
  int64_t n = keys->shape[0], hw = keys->shape[2] * keys->shape[3];
  /* Host keys (NCHW) and labels: the sums are C x D numbers over the whole batch and
   * the host loop keeps one summation order, so every backend gives the same
   * prototypes (the training step hands device keys over as host copies). */
  const uint8_t *y = t2s_u8(labels);
  const float *k = t2s_f32(keys);
  if (!check_label_values(ctx, "class_prototypes", labels, C, ignore_index)) return ctx->err.status;
  /* one buffer, one reduction: sums (C x D) then counts (C) */
  double *buf = calloc((size_t)C * D + C, sizeof(double));
  if (buf == NULL) return t2s_error_set(&ctx->err, T2S_ERR_NOMEM, "class_prototypes: no memory");
  double *count = buf + (size_t)C * D;
  for (int64_t b = 0; b < n; b++)
    for (int64_t d = 0; d < D; d++) {
      const float *kd = k + (b * D + d) * hw;
      const uint8_t *yb = y + b * hw;
      for (int64_t i = 0; i < hw; i++)
        if (yb[i] != ignore_index) buf[(size_t)yb[i] * D + d] += kd[i];
    }
  for (int64_t i = 0; i < n * hw; i++)
    if (y[i] != ignore_index) count[y[i]] += 1.0;
  t2s_status st = t2s_batch_stats_reduce(ctx, buf, (size_t)C * D + C);
  if (st == T2S_OK)
    for (int c = 0; c < C; c++) {
      p->count[c] = count[c];
      p->present[c] = count[c] > 0.0;
      if (!p->present[c]) continue;
      double m = p->seen[c] ? p->momentum : 0.0;
      for (int d = 0; d < D; d++) {
        float *v = &p->proto[(size_t)c * D + d];
        *v = (float)(m * *v + (1.0 - m) * buf[(size_t)c * D + d] / count[c]);
      }
      p->seen[c] = 1;
    }
  free(buf);
  return st;
}

t2s_tensor *t2s_prototypes_tensor(t2s_ctx *ctx, t2s_prototypes *p) {
  int64_t shape[2] = {p->num_classes, p->dim};
  return t2s_host_view(ctx, T2S_F32, 2, shape, p->proto);
}

t2s_tensor *t2s_prototypes_present_tensor(t2s_ctx *ctx, t2s_prototypes *p) {
  int64_t c = p->num_classes;
  return t2s_host_view(ctx, T2S_U8, 1, &c, p->present);
}

/* ---- sampling ----------------------------------------------------------------------- */

/* The first k entries of a partial Fisher-Yates shuffle of list[0..m) into out, with
 * draws at counters ctr0 + j; list is restored afterwards (swaps undone in reverse),
 * so the draws of one query never depend on those of another. */
static void draw_without_replacement(int32_t *list, int64_t m, int64_t k, t2s_rng_key key,
                                     uint64_t ctr0, int32_t *out, int64_t *swaps) {
  for (int64_t j = 0; j < k; j++) {
    int64_t r = j + (int64_t)t2s_rng_below(key, ctr0 + (uint64_t)j, (uint32_t)(m - j));
    int32_t t = list[j];
    list[j] = list[r];
    list[r] = t;
    swaps[j] = r;
    out[j] = list[j];
  }
  for (int64_t j = k - 1; j >= 0; j--) {
    int32_t t = list[j];
    list[j] = list[swaps[j]];
    list[swaps[j]] = t;
  }
}

/* Pixels of image labels yb[0..hw) equal to c (want == 1) or other valid classes. */
static int64_t pixel_list(const uint8_t *yb, int64_t hw, int c, int want, int ignore,
                          int32_t *out) {
  int64_t m = 0;
  for (int64_t i = 0; i < hw; i++) {
    if (yb[i] == ignore) continue;
    if ((yb[i] == c) == (want == 1)) out[m++] = (int32_t)i;
  }
  return m;
}

static int64_t negative_candidates(const t2s_pull_cfg *cfg, const uint8_t *yb, int64_t hw, int c,
                                   const uint8_t *present, int C, int32_t *out) {
  if (cfg->negatives == T2S_PULL_NEG_KEYS) return pixel_list(yb, hw, c, 0, cfg->ignore_index, out);
  int64_t m = 0;
  for (int o = 0; o < C; o++)
    if (o != c && present[o]) out[m++] = o;
  return m;
}

/* Sizes of the plan: per (image, class) class pixel counts, then exact totals. */
static int plan_sizes(const uint8_t *y, int64_t n, int64_t hw, int C, const t2s_pull_cfg *cfg,
                      const uint8_t *present, int64_t *counts, int *n_groups, int64_t *n_q,
                      int64_t *n_neg) {
  int n_present = 0;
  for (int c = 0; c < C; c++) n_present += present[c] != 0;
  *n_groups = 0;
  *n_q = *n_neg = 0;
  for (int64_t b = 0; b < n; b++) {
    int64_t *cb = counts + b * C, valid = 0;
    memset(cb, 0, (size_t)C * sizeof(int64_t));
    for (int64_t i = 0; i < hw; i++)
      if (y[b * hw + i] != cfg->ignore_index) cb[y[b * hw + i]]++, valid++;
    for (int c = 0; c < C; c++) {
      if (cb[c] == 0) continue;
      if (!present[c]) return c;
      int64_t q = cb[c] < cfg->num_queries ? cb[c] : cfg->num_queries;
      int64_t m = cfg->negatives == T2S_PULL_NEG_KEYS ? valid - cb[c] : n_present - 1;
      int64_t k = m < cfg->num_negatives ? m : cfg->num_negatives;
      (*n_groups)++;
      *n_q += q;
      *n_neg += q * k;
    }
  }
  return -1;
}

static void plan_group(const t2s_pull_cfg *cfg, const uint8_t *yb, int64_t hw, int c,
                       const uint8_t *present, int C, t2s_rng_key kq, t2s_rng_key kn,
                       int32_t *list, int32_t *cand, int64_t *swaps, t2s_pull_plan *plan,
                       t2s_pull_group *g) {
  int64_t m = pixel_list(yb, hw, c, 1, cfg->ignore_index, list);
  int32_t *qp = plan->query_pixel + g->query_off;
  if (m <= cfg->num_queries) memcpy(qp, list, (size_t)m * sizeof(int32_t));
  else draw_without_replacement(list, m, cfg->num_queries, kq, 0, qp, swaps);
  g->n_query = (int32_t)(m < cfg->num_queries ? m : cfg->num_queries);
  int64_t mc = negative_candidates(cfg, yb, hw, c, present, C, cand);
  int64_t k = mc < cfg->num_negatives ? mc : cfg->num_negatives;
  g->n_neg = (int32_t)k;
  for (int64_t i = 0; i < g->n_query; i++) {
    int32_t *ni = plan->neg_index + g->neg_off + i * k;
    if (mc <= cfg->num_negatives) memcpy(ni, cand, (size_t)mc * sizeof(int32_t));
    else draw_without_replacement(cand, mc, k, kn, (uint64_t)(i * cfg->num_negatives), ni, swaps);
  }
}

t2s_status t2s_pull_loss_plan(t2s_ctx *ctx, const t2s_tensor *labels, const t2s_tensor *present,
                              int C, const t2s_pull_cfg *cfg, uint64_t seed, int64_t iter,
                              int64_t global_offset, t2s_pull_plan *plan) {
  memset(plan, 0, sizeof *plan);
  if (!t2s_ctx_ok(ctx)) return ctx->err.status;
  if (labels->dtype != T2S_U8 || labels->ndim != 3 || present->dtype != T2S_U8 ||
      t2s_numel(present) != C || !is_host(labels) || !is_host(present))
    return t2s_error_set(&ctx->err, T2S_ERR_INVALID,
                         "pull_loss: labels must be host uint8 (N, h, w) and the present mask "
                         "host uint8 (%d)", C);
  if (!check_label_values(ctx, "pull_loss", labels, C, cfg->ignore_index)) return ctx->err.status;
  int64_t n = labels->shape[0], hw = labels->shape[1] * labels->shape[2];
  const uint8_t *y = t2s_u8(labels), *pr = t2s_u8(present);
  int64_t *counts = malloc((size_t)(n * C) * sizeof(int64_t));
  int32_t *list = malloc((size_t)(2 * hw + C + 1) * sizeof(int32_t));
  int64_t *swaps = malloc((size_t)(hw + C + cfg->num_queries + 1) * sizeof(int64_t));
  t2s_status st = T2S_OK;
  if (counts == NULL || list == NULL || swaps == NULL) {
    st = t2s_error_set(&ctx->err, T2S_ERR_NOMEM, "pull_loss: no host memory to plan the draws");
    goto done;
  }
  int64_t nq, nn;
  int missing = plan_sizes(y, n, hw, C, cfg, pr, counts, &plan->n_groups, &nq, &nn);
  if (missing >= 0) {
    st = t2s_error_set(&ctx->err, T2S_ERR_INVALID,
                       "pull_loss: class %d has labelled pixels but is not in the present mask; "
                       "compute the prototypes from the same downsampled labels",
                       missing);
    goto done;
  }
  plan->groups = t2s_host_scratch(ctx, (size_t)plan->n_groups * sizeof(t2s_pull_group) + 1);
  plan->query_pixel = t2s_host_scratch(ctx, (size_t)nq * sizeof(int32_t) + 1);
  plan->neg_index = t2s_host_scratch(ctx, (size_t)nn * sizeof(int32_t) + 1);
  if (!plan->groups || !plan->query_pixel || !plan->neg_index) {
    st = ctx->err.status;
    goto done;
  }
  int gi = 0;
  int64_t qoff = 0, noff = 0;
  for (int64_t b = 0; b < n; b++)
    for (int c = 0; c < C; c++) {
      if (counts[b * C + c] == 0) continue;
      uint64_t gb = (uint64_t)(global_offset + b);
      t2s_rng_key kq = t2s_rng_key_make(seed, (uint64_t)iter, gb, ((uint64_t)PURPOSE_QUERY << 16) | c);
      t2s_rng_key kn =
          t2s_rng_key_make(seed, (uint64_t)iter, gb, ((uint64_t)PURPOSE_NEGATIVE << 16) | c);
      t2s_pull_group *g = &plan->groups[gi++];
      g->image = (int32_t)b;
      g->cls = c;
      g->query_off = qoff;
      g->neg_off = noff;
      plan_group(cfg, y + b * hw, hw, c, pr, C, kq, kn, list, list + hw, swaps, plan, g);
      qoff += g->n_query;
      noff += (int64_t)g->n_query * g->n_neg;
    }
  plan->n_queries = qoff;
  plan->n_negs = noff;
done:
  free(counts);
  free(list);
  free(swaps);
  return st;
}

/* ---- the fused op ------------------------------------------------------------------ */

typedef t2s_pull_args pull_args;

typedef struct pull_saved {
  t2s_pull_plan plan;
  double *group_scale;  /* world_size w_c / (sum_c' w_c' Q_c), per group */
  float *prob;          /* per query: softmax over (positive, negatives), 1 + n_neg floats */
} pull_saved;

/* (D, hw) plane of image b -> rows (hw, D), so a key is one contiguous vector; in
 * 32 x 32 tiles, since a plain loop writes with a stride of D floats. */
static void to_rows(const float *x, int64_t D, int64_t hw, float *rows) {
  enum { T = 32 };
  for (int64_t d0 = 0; d0 < D; d0 += T)
    for (int64_t i0 = 0; i0 < hw; i0 += T) {
      int64_t d1 = d0 + T < D ? d0 + T : D, i1 = i0 + T < hw ? i0 + T : hw;
      for (int64_t i = i0; i < i1; i++)
        for (int64_t d = d0; d < d1; d++) rows[i * D + d] = x[d * hw + i];
    }
}

/* The query vector of pixel p (stride hw in the plane) into a contiguous row. */
static void gather_row(const float *x, int64_t D, int64_t hw, int64_t p, float *row) {
  for (int64_t d = 0; d < D; d++) row[d] = x[d * hw + p];
}

/* Four partial sums break the add chain (strict FP order forbids the compiler to);
 * the order is fixed, so the result is the same on every run and rank split. */
static double dot(const float *a, const float *b, int64_t D) {
  double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
  int64_t d = 0;
  for (; d + 4 <= D; d += 4) {
    s0 += (double)a[d] * b[d];
    s1 += (double)a[d + 1] * b[d + 1];
    s2 += (double)a[d + 2] * b[d + 2];
    s3 += (double)a[d + 3] * b[d + 3];
  }
  for (; d < D; d++) s0 += (double)a[d] * b[d];
  return (s0 + s1) + (s2 + s3);
}

/* The vector of negative `idx` of a group: a key row or a prototype. */
static const float *negative_vec(const pull_args *a, const float *krows, const float *proto,
                                 int64_t D, int32_t idx) {
  return a->cfg.negatives == T2S_PULL_NEG_KEYS ? krows + (int64_t)idx * D : proto + (int64_t)idx * D;
}

/* Loss of one query; fills p[0..1+n_neg). */
static double query_loss(const pull_args *a, const float *q, const float *pos, const float *krows,
                         const float *proto, const int32_t *neg, int n_neg, int64_t D, float *p) {
  double inv_tau = 1.0 / a->cfg.tau, s0 = dot(q, pos, D) * inv_tau, mx = s0;
  double s[1 + 1024];
  double *sv = n_neg < 1024 ? s : malloc(sizeof(double) * (size_t)(1 + n_neg));
  sv[0] = s0;
  for (int j = 0; j < n_neg; j++) {
    sv[1 + j] = dot(q, negative_vec(a, krows, proto, D, neg[j]), D) * inv_tau;
    if (sv[1 + j] > mx) mx = sv[1 + j];
  }
  double z = 0.0;
  for (int j = 0; j <= n_neg; j++) z += exp(sv[j] - mx);
  for (int j = 0; j <= n_neg; j++) p[j] = (float)(exp(sv[j] - mx) / z);
  double loss = mx + log(z) - s0;
  if (sv != s) free(sv);
  return loss;
}

static int check_pull_inputs(t2s_ctx *ctx, t2s_tensor *q, t2s_tensor *k, t2s_tensor *labels,
                             t2s_tensor *cw, t2s_tensor *proto, t2s_tensor *present) {
  char sq[96], sk[96], sp[96];
  t2s_device dev = ctx->device;
  if (!check_feature_labels(ctx, "pull_loss", q, labels, dev)) return 0;
  int64_t C = proto->ndim == 2 ? proto->shape[0] : -1;
  const char *what = NULL;
  if (!t2s_same_shape(q, k) || k->dtype != T2S_F32 || k->device != dev)
    what = "keys must be float32 of the queries' shape, on the run's device";
  else if (k->requires_grad || labels->requires_grad || (cw && cw->requires_grad) ||
           proto->requires_grad)
    what = "only the queries may require a gradient (the pull is one-directional)";
  else if (proto->dtype != T2S_F32 || C < 1 || C > 255 || proto->shape[1] != q->shape[1] ||
           proto->device != dev)
    what = "prototypes must be float32 (C, D) on the run's device (t2s_prototypes_tensor)";
  else if (present->dtype != T2S_U8 || t2s_numel(present) != C || present->device != dev)
    what = "present must be uint8 (C) on the run's device";
  else if (cw && (cw->dtype != T2S_F32 || t2s_numel(cw) != C || cw->device != dev))
    what = "class_weight must be float32 (C) on the run's device";
  if (what == NULL) return 1;
  t2s_ctx_fail(ctx, T2S_ERR_INVALID, "pull_loss: %s; got queries %s, keys %s, prototypes %s", what,
               t2s_shape_str(q, sq, sizeof sq), t2s_shape_str(k, sk, sizeof sk),
               t2s_shape_str(proto, sp, sizeof sp));
  return 0;
}

t2s_status t2s_pull_group_scales(t2s_ctx *ctx, const t2s_pull_args *a, const t2s_pull_plan *plan,
                                 const float *cw, int C, double *scale) {
  double qc[256] = {0};
  for (int g = 0; g < plan->n_groups; g++) qc[plan->groups[g].cls] += plan->groups[g].n_query;
  t2s_status st = t2s_batch_stats_reduce(ctx, qc, (size_t)C);
  if (st != T2S_OK) return st;
  double wsum = 0.0;
  for (int c = 0; c < C; c++)
    if (qc[c] > 0.0) wsum += cw ? cw[c] : 1.0;
  for (int g = 0; g < plan->n_groups; g++) {
    int c = plan->groups[g].cls;
    double w = cw ? cw[c] : 1.0;
    scale[g] = wsum > 0.0 ? (double)a->world_size * w / (wsum * qc[c]) : 0.0;
  }
  return T2S_OK;
}

static t2s_status pull_forward(t2s_ctx *ctx, t2s_node *node) {
  const pull_args *a = node->args;
  t2s_tensor *qt = node->in[0], *kt = node->in[1];
  int C = (int)node->in[4]->shape[0];
  int64_t D = qt->shape[1], hw = qt->shape[2] * qt->shape[3];
  pull_saved *sv = t2s_host_scratch(ctx, sizeof *sv);
  if (sv == NULL) return ctx->err.status;
  t2s_status st = t2s_pull_loss_plan(ctx, node->in[2], node->in[5], C, &a->cfg, a->seed, a->iter,
                                     a->global_offset, &sv->plan);
  if (st != T2S_OK) return st;
  const t2s_pull_plan *plan = &sv->plan;
  sv->group_scale = t2s_host_scratch(ctx, sizeof(double) * (size_t)plan->n_groups + 1);
  sv->prob = t2s_scratch(ctx, sizeof(float) * (size_t)(plan->n_queries + plan->n_negs) + 1);
  if (sv->group_scale == NULL || sv->prob == NULL) return ctx->err.status;
  const float *cw = node->in[3] ? t2s_f32(node->in[3]) : NULL;
  if ((st = t2s_pull_group_scales(ctx, a, plan, cw, C, sv->group_scale)) != T2S_OK) return st;
  const float *proto = t2s_f32(node->in[4]);
  double total = 0.0;
  int64_t poff = 0;
  for (int g0 = 0; g0 < plan->n_groups;) {
    int32_t b = plan->groups[g0].image;
    t2s_arena_mark mark = t2s_scratch_mark(ctx);
    /* keys as rows only when they are the negatives; queries are gathered one by one */
    int keys = a->cfg.negatives == T2S_PULL_NEG_KEYS;
    float *q = t2s_scratch(ctx, sizeof(float) * (size_t)((keys ? hw * D : 0) + D));
    if (q == NULL) return ctx->err.status;
    float *krows = q + D;
    if (keys) to_rows(t2s_f32(kt) + b * D * hw, D, hw, krows);
    for (; g0 < plan->n_groups && plan->groups[g0].image == b; g0++) {
      const t2s_pull_group *g = &plan->groups[g0];
      double sum = 0.0;
      for (int32_t i = 0; i < g->n_query; i++) {
        gather_row(t2s_f32(qt) + b * D * hw, D, hw, plan->query_pixel[g->query_off + i], q);
        sum += query_loss(a, q, proto + (int64_t)g->cls * D, krows, proto,
                          plan->neg_index + g->neg_off + (int64_t)i * g->n_neg, g->n_neg, D,
                          sv->prob + poff);
        poff += 1 + g->n_neg;
      }
      total += sv->group_scale[g0] * sum;
    }
    t2s_scratch_release(ctx, mark);
  }
  t2s_f32(node->out)[0] = (float)total;
  node->saved = sv;
  return T2S_OK;
}

static t2s_status pull_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  const pull_args *a = node->args;
  const pull_saved *sv = node->saved;
  const t2s_pull_plan *plan = &sv->plan;
  t2s_tensor *qt = node->in[0];
  int64_t D = qt->shape[1], hw = qt->shape[2] * qt->shape[3];
  float *dq = qt->grad;
  if (beta[0] == 0.0f) memset(dq, 0, sizeof(float) * (size_t)t2s_numel(qt));
  const float *proto = t2s_f32(node->in[4]);
  double g_out = node->out->grad[0], inv_tau = 1.0 / a->cfg.tau;
  double *acc = malloc(sizeof(double) * (size_t)D);
  if (acc == NULL) return t2s_error_set(&ctx->err, T2S_ERR_NOMEM, "pull_loss backward: no memory");
  int64_t poff = 0;
  for (int g0 = 0; g0 < plan->n_groups;) {
    int32_t b = plan->groups[g0].image;
    t2s_arena_mark mark = t2s_scratch_mark(ctx);
    int keys = a->cfg.negatives == T2S_PULL_NEG_KEYS;
    float *krows = keys ? t2s_scratch(ctx, sizeof(float) * (size_t)(hw * D)) : NULL;
    if (keys && krows == NULL) {
      free(acc);
      return ctx->err.status;
    }
    if (keys) to_rows(t2s_f32(node->in[1]) + b * D * hw, D, hw, krows);
    for (; g0 < plan->n_groups && plan->groups[g0].image == b; g0++) {
      const t2s_pull_group *g = &plan->groups[g0];
      const float *pos = proto + (int64_t)g->cls * D;
      double f = g_out * sv->group_scale[g0] * inv_tau;
      for (int32_t i = 0; i < g->n_query; i++) {
        const float *p = sv->prob + poff;
        const int32_t *neg = plan->neg_index + g->neg_off + (int64_t)i * g->n_neg;
        for (int64_t d = 0; d < D; d++) acc[d] = ((double)p[0] - 1.0) * pos[d];
        for (int j = 0; j < g->n_neg; j++) {
          const float *kn = negative_vec(a, krows, proto, D, neg[j]);
          for (int64_t d = 0; d < D; d++) acc[d] += (double)p[1 + j] * kn[d];
        }
        float *dqb = dq + b * D * hw + plan->query_pixel[g->query_off + i];
        for (int64_t d = 0; d < D; d++) dqb[d * hw] += (float)(f * acc[d]);
        poff += 1 + g->n_neg;
      }
    }
    t2s_scratch_release(ctx, mark);
  }
  free(acc);
  return T2S_OK;
}

static const t2s_op pull_op = T2S_OP_DESCRIPTOR("pull_loss", pull_forward, pull_backward,
                                                t2s_pull_loss_cuda_forward,
                                                t2s_pull_loss_cuda_backward);

t2s_tensor *t2s_pull_loss(t2s_ctx *ctx, t2s_tensor *q, t2s_tensor *k, t2s_tensor *labels,
                          t2s_tensor *class_weight, t2s_tensor *prototypes, t2s_tensor *present,
                          const t2s_pull_cfg *cfg, uint64_t seed, int64_t iter,
                          int64_t global_offset, int world_size) {
  return t2s_pull_loss_hosted(ctx, q, k, labels, class_weight, prototypes, present, cfg, seed, iter,
                              global_offset, world_size, NULL);
}

/* A host copy h of tensor t (h NULL: none) is t's dtype and shape
 * in host memory. */
static int check_host_copy(t2s_ctx *ctx, const char *what, const t2s_tensor *h, const t2s_tensor *t) {
  if (h == NULL) return 1;
  if (t == NULL) {
    t2s_ctx_fail(ctx, T2S_ERR_INVALID, "pull_loss: a host copy of %s is given but not %s itself", what, what);
    return 0;
  }
  if (h->device == T2S_DEV_CPU && h->dtype == t->dtype && t2s_same_shape(h, t)) return 1;
  char sh[96], st[96];
  t2s_ctx_fail(ctx, T2S_ERR_INVALID, "pull_loss: the host copy of %s is %s %s on %s; expected %s %s in host memory",
               what, t2s_dtype_name(h->dtype), t2s_shape_str(h, sh, sizeof sh), t2s_device_name(h->device),
               t2s_dtype_name(t->dtype), t2s_shape_str(t, st, sizeof st));
  return 0;
}

t2s_tensor *t2s_pull_loss_hosted(t2s_ctx *ctx, t2s_tensor *q, t2s_tensor *k, t2s_tensor *labels,
                                 t2s_tensor *class_weight, t2s_tensor *prototypes, t2s_tensor *present,
                                 const t2s_pull_cfg *cfg, uint64_t seed, int64_t iter,
                                 int64_t global_offset, int world_size, const t2s_pull_host *host) {
  if (!t2s_ctx_ok(ctx) || q == NULL || k == NULL || labels == NULL || prototypes == NULL ||
      present == NULL || cfg == NULL)
    return t2s_ctx_ok(ctx) ? t2s_ctx_fail(ctx, T2S_ERR_INVALID, "pull_loss: NULL argument") : NULL;
  const char *bad = t2s_pull_cfg_check(cfg);
  if (bad != NULL) return t2s_ctx_fail(ctx, T2S_ERR_INVALID, "%s", bad);
  if (world_size < 1 || global_offset < 0)
    return t2s_ctx_fail(ctx, T2S_ERR_INVALID, "pull_loss: world_size %d, global_offset %lld",
                        world_size, (long long)global_offset);
  if (!check_pull_inputs(ctx, q, k, labels, class_weight, prototypes, present)) return NULL;
  t2s_pull_host h = host ? *host : (t2s_pull_host){NULL, NULL, NULL};
  if (!check_host_copy(ctx, "the labels", h.labels, labels) ||
      !check_host_copy(ctx, "the class weights", h.class_weight, class_weight) ||
      !check_host_copy(ctx, "the present mask", h.present, present))
    return NULL;
  pull_args a = {*cfg, seed, iter, global_offset, world_size, h};
  int64_t one = 1;
  t2s_tensor *in[6] = {q, k, labels, class_weight, prototypes, present};
  return t2s_op_apply_desc(ctx, &pull_op, in, 6, t2s_tensor_new(ctx, T2S_F32, 1, &one), &a,
                           sizeof a);
}
