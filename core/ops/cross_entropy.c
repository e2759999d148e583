/* Softmax cross-entropy over the class dim on the CPU, fused with log-softmax.
 *
 * For pixel i with label y_i != ignore_index and weight w_i = pw_i cw[y_i]:
 *   l_i = lse_i - z_i[y_i],  lse_i = max_c z_ic + log sum_c exp(z_ic - max_c z_ic),
 *   loss = sum_i w_i l_i / D,
 * with D = number of valid pixels (MEAN_VALID), sum_i cw[y_i] over valid pixels
 * (MEAN_WEIGHT, PyTorch's weighted mean), 1 (SUM), or args->normaliser when > 0.
 * Backward: dz_ic = g w_i (softmax(z_i)_c - [c == y_i]) / D, 0 at ignored pixels.
 * Forward keeps only lse_i (one float per pixel); the probabilities are recomputed
 * in backward as exp(z - lse), never stored. The loss sums in double. With no
 * valid pixel every term is 0; with D == 0 the loss and gradient are set to 0
 * rather than 0/0. */
#include <math.h>
#include <string.h>

#include "core/ops/cross_entropy.h"

typedef struct ce_saved {
  float *lse;    /* N * H * W */
  double denom;  /* 0: the loss is identically 0 */
} ce_saved;

static inline void put(float *out, int64_t i, float v, float beta) {
  out[i] = beta != 0.0f ? out[i] + v : v;
}

/* labels and pixel weights are (N, H, W) or (N, 1, H, W) */
static int is_pixel_map(const t2s_tensor *t, const t2s_tensor *logits, t2s_dtype dtype) {
  const int64_t *s = logits->shape;
  if (t->dtype != dtype) return 0;
  if (t->ndim == 3) return t->shape[0] == s[0] && t->shape[1] == s[2] && t->shape[2] == s[3];
  return t->ndim == 4 && t->shape[0] == s[0] && t->shape[1] == 1 && t->shape[2] == s[2] &&
         t->shape[3] == s[3];
}

static int ce_check(t2s_ctx *ctx, const t2s_tensor *z, const t2s_tensor *lab, const t2s_tensor *pw,
                    const t2s_tensor *cw, const t2s_ce_args *a) {
  char sz[96], so[96];
  const char *what = NULL;
  const t2s_tensor *bad = NULL;
  if (!t2s_is_float(z) || z->ndim != 4)
    what = "logits must be float32 (N, C, H, W) (bfloat16 under precision bf16)", bad = z;
  else if (!is_pixel_map(lab, z, T2S_U8)) what = "labels must be uint8 (N, H, W)", bad = lab;
  else if (pw && !is_pixel_map(pw, z, T2S_F32))
    what = "pixel_weight must be float32 (N, H, W)", bad = pw;
  else if (cw && (cw->dtype != T2S_F32 || cw->ndim != 1 || cw->shape[0] != z->shape[1]))
    what = "class_weight must be float32 (C)", bad = cw;
  else if (lab->requires_grad) what = "labels must be a constant", bad = lab;
  else if (pw && pw->requires_grad)
    what = "pixel_weight must be a constant (compute it with gradients off)", bad = pw;
  else if (cw && cw->requires_grad)
    what = "class_weight must be a constant (compute it with gradients off)", bad = cw;
  else if (a->reduction < T2S_CE_MEAN_VALID || a->reduction > T2S_CE_SUM)
    what = "unknown reduction", bad = z;
  if (what == NULL) return 1;
  t2s_ctx_fail(ctx, T2S_ERR_INVALID, "cross_entropy: %s; got %s %s with logits %s", what,
               t2s_dtype_name(bad->dtype), t2s_shape_str(bad, so, sizeof so),
               t2s_shape_str(z, sz, sizeof sz));
  return 0;
}

t2s_tensor *t2s_cross_entropy(t2s_ctx *ctx, t2s_tensor *logits, t2s_tensor *labels,
                              t2s_tensor *pixel_weight, t2s_tensor *class_weight,
                              const t2s_ce_args *a) {
  if (!t2s_ctx_ok(ctx) || logits == NULL || labels == NULL || a == NULL) return NULL;
  if (!ce_check(ctx, logits, labels, pixel_weight, class_weight, a)) return NULL;
  int64_t one = 1;
  t2s_tensor *in[4] = {logits, labels, pixel_weight, class_weight};
  return t2s_op_apply(ctx, T2S_OP_cross_entropy, in, 4, t2s_tensor_new(ctx, T2S_F32, 1, &one), a,
                      sizeof *a);
}

/* Fails (naming the value and where) on a label that is neither a class nor ignored. */
static t2s_status ce_check_labels(t2s_ctx *ctx, const t2s_node *node) {
  const t2s_ce_args *a = node->args;
  const uint8_t *lab = t2s_u8(node->in[1]);
  int64_t n = t2s_numel(node->in[1]), c = node->in[0]->shape[1];
  int64_t hw = node->in[0]->shape[2] * node->in[0]->shape[3];
  for (int64_t i = 0; i < n; i++)
    if ((int)lab[i] != a->ignore_index && lab[i] >= c) {
      t2s_ctx_fail(ctx, T2S_ERR_INVALID,
                   "cross_entropy: label %d at image %lld pixel %lld is not a class (0..%lld) "
                   "nor ignore_index %d; check the dataset's train ids and model.num_classes",
                   lab[i], (long long)(i / hw), (long long)(i % hw), (long long)(c - 1),
                   a->ignore_index);
      return T2S_ERR_INVALID;
    }
  return T2S_OK;
}

static inline double ce_weight(const t2s_node *node, int64_t pixel, int label) {
  double w = node->in[2] ? t2s_f32(node->in[2])[pixel] : 1.0;
  return node->in[3] ? w * t2s_f32(node->in[3])[label] : w;
}

/* Pixels per block of ce_lse: the blocks are independent (OpenMP), and within one the
 * class loop walks rows of CE_BLOCK values of each plane. */
enum { CE_BLOCK = 1024 };

/* lse of every pixel of image n into lse[0..hw), with scratch rows mx and sum of hw
 * values. Each pixel's max and sum see the classes in order, so the result does not
 * depend on the blocking or the threads. */
static void ce_lse(const float *z, int64_t c, int64_t hw, float *mx, double *sum, float *lse) {
  #pragma omp parallel for schedule(static) if (c * hw > (1 << 16))
  for (int64_t p0 = 0; p0 < hw; p0 += CE_BLOCK) {
    int64_t p1 = p0 + CE_BLOCK < hw ? p0 + CE_BLOCK : hw;
    for (int64_t p = p0; p < p1; p++) mx[p] = z[p];
    for (int64_t k = 1; k < c; k++)
      for (int64_t p = p0; p < p1; p++) mx[p] = fmaxf(mx[p], z[k * hw + p]);
    for (int64_t p = p0; p < p1; p++) sum[p] = 0.0;
    for (int64_t k = 0; k < c; k++)
      for (int64_t p = p0; p < p1; p++) sum[p] += exp((double)z[k * hw + p] - mx[p]);
    for (int64_t p = p0; p < p1; p++) lse[p] = (float)(mx[p] + log(sum[p]));
  }
}

t2s_status t2s_cross_entropy_cpu_forward(t2s_ctx *ctx, t2s_node *node) {
  const t2s_ce_args *a = node->args;
  const t2s_tensor *zt = node->in[0];
  int64_t n = zt->shape[0], c = zt->shape[1], hw = zt->shape[2] * zt->shape[3];
  if (ce_check_labels(ctx, node) != T2S_OK) return T2S_ERR_INVALID;
  ce_saved *sv = t2s_scratch(ctx, sizeof *sv);
  float *lse = t2s_scratch(ctx, (size_t)(n * hw) * sizeof(float));
  float *mx = t2s_scratch(ctx, (size_t)hw * sizeof(float));
  double *sum = t2s_scratch(ctx, (size_t)hw * sizeof(double));
  if (sv == NULL || lse == NULL || mx == NULL || sum == NULL) return ctx->err.status;
  const uint8_t *lab = t2s_u8(node->in[1]);
  double loss = 0.0, count = 0.0, wsum = 0.0;
  for (int64_t b = 0; b < n; b++) {
    const float *z = t2s_f32(zt) + b * c * hw;
    ce_lse(z, c, hw, mx, sum, lse + b * hw);
    for (int64_t p = 0; p < hw; p++) {
      int64_t i = b * hw + p;
      int y = lab[i];
      if (y == a->ignore_index) continue;
      loss += ce_weight(node, i, y) * ((double)lse[i] - z[(int64_t)y * hw + p]);
      count += 1.0;
      wsum += node->in[3] ? t2s_f32(node->in[3])[y] : 1.0;
    }
  }
  double denom = a->reduction == T2S_CE_MEAN_VALID ? count
                 : a->reduction == T2S_CE_MEAN_WEIGHT ? wsum
                                                      : 1.0;
  if (a->normaliser > 0.0) denom = a->normaliser;
  t2s_f32(node->out)[0] = denom != 0.0 ? (float)(loss / denom) : 0.0f;
  sv->lse = lse;
  sv->denom = denom;
  node->saved = sv;
  return T2S_OK;
}

t2s_status t2s_cross_entropy_cpu_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  const t2s_ce_args *a = node->args;
  const ce_saved *sv = node->saved;
  t2s_tensor *zt = node->in[0];
  int64_t n = zt->shape[0], c = zt->shape[1], hw = zt->shape[2] * zt->shape[3];
  const uint8_t *lab = t2s_u8(node->in[1]);
  double scale = sv->denom != 0.0 ? node->out->grad[0] / sv->denom : 0.0;
  const float accumulate = beta[0];
  /* every gradient value depends on its own pixel only: the planes in parallel */
  #pragma omp parallel for collapse(2) schedule(static) if (n * c * hw > (1 << 16))
  for (int64_t b = 0; b < n; b++)
    for (int64_t k = 0; k < c; k++) {
      int64_t base = (b * c + k) * hw;
      const float *z = t2s_f32(zt) + base;
      for (int64_t p = 0; p < hw; p++) {
        int64_t i = b * hw + p;
        int y = lab[i];
        double g = 0.0;
        if (y != a->ignore_index && scale != 0.0) {
          double prob = exp((double)z[p] - sv->lse[i]);
          g = scale * ce_weight(node, i, y) * (prob - (k == y ? 1.0 : 0.0));
        }
        put(zt->grad, base + p, (float)g, accumulate);
      }
    }
  return T2S_OK;
}
