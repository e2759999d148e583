#include "losses/pseudo_label.h"

#include <math.h>
#include <string.h>

#include "core/device.h"
#include "losses/batch_stats.h"

t2s_pseudo_label_cfg t2s_pseudo_label_cfg_defaults(void) {
  t2s_pseudo_label_cfg c = {0.968f, 15, 120, 512};
  return c;
}

const char *t2s_pseudo_label_cfg_check(const t2s_pseudo_label_cfg *c) {
  if (!(c->threshold >= 0.0f && c->threshold <= 1.0f))
    return "pseudo labels: threshold must be in [0, 1]";
  if (c->ignore_top < 0 || c->ignore_bottom < 0)
    return "pseudo labels: ignore_top and ignore_bottom must be >= 0";
  if (c->ref_height < 1) return "pseudo labels: ref_height must be >= 1";
  return NULL;
}

void t2s_pseudo_label_rows(const t2s_pseudo_label_cfg *cfg, int64_t H, int64_t *top,
                           int64_t *bottom) {
  *top = (int64_t)floor((double)cfg->ignore_top * H / cfg->ref_height + 0.5);
  *bottom = (int64_t)floor((double)cfg->ignore_bottom * H / cfg->ref_height + 0.5);
  if (*top > H) *top = H;
  if (*bottom > H) *bottom = H;
}

static int is_map(const t2s_tensor *t, t2s_dtype dtype, const t2s_tensor *z) {
  return t != NULL && t->dtype == dtype && t->ndim == 3 && t->device == z->device &&
         t->shape[0] == z->shape[0] && t->shape[1] == z->shape[2] && t->shape[2] == z->shape[3];
}

/* The CPU slot (logits NCHW on the host). */
static t2s_status pseudo_labels_cpu(t2s_ctx *ctx, const t2s_pseudo_label_cfg *cfg,
                                    const t2s_tensor *logits, t2s_tensor *yhat,
                                    t2s_tensor *pixel_weight, t2s_tensor *max_prob, double *q_out) {
  int64_t n = logits->shape[0], C = logits->shape[1], H = logits->shape[2], W = logits->shape[3];
  int64_t hw = H * W;
  const float *z = t2s_f32(logits);
  uint8_t *y = t2s_u8(yhat);
  /* counts[0] confident pixels, counts[1] all pixels */
  double counts[2] = {0.0, (double)(n * hw)};
  for (int64_t b = 0; b < n; b++)
    for (int64_t i = 0; i < hw; i++) {
      const float *zi = z + b * C * hw + i;
      int64_t best = 0;
      for (int64_t c = 1; c < C; c++)
        if (zi[c * hw] > zi[best * hw]) best = c;
      /* max softmax = 1 / sum_c exp(z_c - z_max) */
      double s = 0.0;
      for (int64_t c = 0; c < C; c++) s += exp((double)zi[c * hw] - zi[best * hw]);
      double pmax = 1.0 / s;
      y[b * hw + i] = (uint8_t)best;
      if (max_prob) t2s_f32(max_prob)[b * hw + i] = (float)pmax;
      counts[0] += pmax >= cfg->threshold;
    }
  t2s_status st = t2s_batch_stats_reduce(ctx, counts, 2);
  if (st != T2S_OK) return st;
  double q = counts[1] > 0.0 ? counts[0] / counts[1] : 0.0;
  int64_t top, bottom;
  t2s_pseudo_label_rows(cfg, H, &top, &bottom);
  float *pw = t2s_f32(pixel_weight);
  for (int64_t b = 0; b < n; b++)
    for (int64_t r = 0; r < H; r++) {
      float v = r < top || r >= H - bottom ? 0.0f : (float)q;
      for (int64_t x = 0; x < W; x++) pw[(b * H + r) * W + x] = v;
    }
  if (q_out) *q_out = q;
  return T2S_OK;
}

typedef t2s_status (*pseudo_labels_fn)(t2s_ctx *ctx, const t2s_pseudo_label_cfg *cfg,
                                       const t2s_tensor *logits, t2s_tensor *yhat,
                                       t2s_tensor *pixel_weight, t2s_tensor *max_prob,
                                       double *q_out);
static const pseudo_labels_fn pseudo_labels_slots[T2S_DEV_COUNT] = {
    [T2S_DEV_CPU] = pseudo_labels_cpu, [T2S_DEV_CUDA] = T2S_CUDA_SLOT(t2s_pseudo_labels_cuda)};

t2s_status t2s_pseudo_labels(t2s_ctx *ctx, const t2s_pseudo_label_cfg *cfg,
                             const t2s_tensor *logits, t2s_tensor *yhat,
                             t2s_tensor *pixel_weight, t2s_tensor *max_prob, double *q_out) {
  if (!t2s_ctx_ok(ctx)) return ctx->err.status;
  const char *bad = t2s_pseudo_label_cfg_check(cfg);
  if (bad) return t2s_error_set(&ctx->err, T2S_ERR_INVALID, "%s", bad);
  char sz[96];
  if (logits == NULL || logits->dtype != T2S_F32 || logits->ndim != 4 ||
      logits->shape[1] > 256 || !is_map(yhat, T2S_U8, logits) ||
      !is_map(pixel_weight, T2S_F32, logits) || (max_prob && !is_map(max_prob, T2S_F32, logits)))
    return t2s_error_set(&ctx->err, T2S_ERR_INVALID,
                         "pseudo_labels: logits must be float32 (N, C<=256, H, W) and the "
                         "outputs (N, H, W) on the same device: yhat uint8, pixel_weight and "
                         "max_prob float32; logits %s",
                         logits ? t2s_shape_str(logits, sz, sizeof sz) : "NULL");
  return T2S_DISPATCH(pseudo_labels_slots, logits->device, &ctx->err, "pseudo_labels", ctx, cfg,
                      logits, yhat, pixel_weight, max_prob, q_out);
}
