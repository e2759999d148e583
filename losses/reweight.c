#include "losses/reweight.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/device.h"
#include "losses/batch_stats.h"
#include "losses/host_view.h"
#include "losses/pseudo_label.h"

t2s_reweight_cfg t2s_reweight_cfg_defaults(void) {
  t2s_reweight_cfg c = {1, 0.99, 1.0, T2S_REWEIGHT_T2S_ONLY, 255};
  return c;
}

const char *t2s_reweight_cfg_check(const t2s_reweight_cfg *c) {
  if (!(c->momentum >= 0.0 && c->momentum < 1.0)) return "reweight: momentum must be in [0, 1)";
  if (!(c->gamma >= 0.0)) return "reweight: gamma must be >= 0";
  if (c->apply_to != T2S_REWEIGHT_T2S_ONLY && c->apply_to != T2S_REWEIGHT_ALL)
    return "reweight: apply_to must be 't2s_only' or 'all'";
  if (c->ignore_index < 0 || c->ignore_index > 255) return "reweight: ignore_index must be 0..255";
  return NULL;
}

t2s_status t2s_reweight_init(t2s_reweight_state *s, int C, t2s_error *err) {
  memset(s, 0, sizeof *s);
  if (C < 1 || C > 255)
    return t2s_error_set(err, T2S_ERR_INVALID, "reweight: %d classes (need 1..255)", C);
  s->num_classes = C;
  s->score = calloc((size_t)C, sizeof(double));
  s->weight = malloc((size_t)C * sizeof(float));
  s->present = calloc((size_t)C, 1);
  s->iou = calloc((size_t)C, sizeof(double));
  if (!s->score || !s->weight || !s->present || !s->iou) {
    t2s_reweight_free(s);
    return t2s_error_set(err, T2S_ERR_NOMEM, "reweight: out of host memory");
  }
  for (int c = 0; c < C; c++) s->weight[c] = 1.0f;
  return T2S_OK;
}

void t2s_reweight_free(t2s_reweight_state *s) {
  free(s->score);
  free(s->weight);
  free(s->present);
  free(s->iou);
  memset(s, 0, sizeof *s);
}

/* argmax over classes of every logit pixel (first maximum wins, as torch.argmax on CPU) */
static void argmax_map(const float *z, int64_t n, int64_t C, int64_t hw, uint8_t *pred) {
  for (int64_t b = 0; b < n; b++)
    for (int64_t i = 0; i < hw; i++) {
      const float *zb = z + b * C * hw + i;
      int best = 0;
      for (int64_t c = 1; c < C; c++)
        if (zb[c * hw] > zb[best * hw]) best = (int)c;
      pred[b * hw + i] = (uint8_t)best;
    }
}

/* I, U, label count (3C) of one batch, local. */
static void confusion_counts(const uint8_t *pred, int64_t n, int64_t h, int64_t w,
                             const uint8_t *y, int64_t H, int64_t W, int C, int ignore,
                             double *buf) {
  double *inter = buf, *uni = buf + C, *cnt = buf + 2 * C;
  for (int64_t b = 0; b < n; b++)
    for (int64_t r = 0; r < H; r++)
      for (int64_t x = 0; x < W; x++) {
        int t = y[(b * H + r) * W + x];
        if (t == ignore) continue;
        int p = pred[(b * h + r * h / H) * w + x * w / W];
        cnt[t] += 1.0;
        if (p == t) {
          inter[t] += 1.0;
          uni[t] += 1.0;
        } else {
          uni[t] += 1.0;
          uni[p] += 1.0;
        }
      }
}

static void update_weights(const t2s_reweight_cfg *cfg, const double *buf, t2s_reweight_state *s) {
  int C = s->num_classes;
  double wsum = 0.0;
  int n_present = 0;
  for (int c = 0; c < C; c++) {
    s->present[c] = buf[2 * C + c] > 0.0;
    s->iou[c] = buf[C + c] > 0.0 ? buf[c] / buf[C + c] : 0.0;
    if (!s->present[c]) continue;
    s->score[c] = cfg->momentum * s->score[c] + (1.0 - cfg->momentum) * s->iou[c];
    wsum += pow(1.0 - s->score[c], cfg->gamma);
    n_present++;
  }
  /* all present classes perfect (w = 0 everywhere): nothing to prefer, uniform */
  for (int c = 0; c < C; c++)
    s->weight[c] = !s->present[c] || wsum <= 0.0
                       ? 1.0f
                       : (float)(pow(1.0 - s->score[c], cfg->gamma) * n_present / wsum);
}

/* The class map (N h w) in host memory: argmax on the host for host logits (the CPU
 * slot); on CUDA the per-pixel argmax of the pseudo-label kernel (first maximum, as
 * here; stored NHWC, so pixel b hw + i is the same index) and one byte per pixel comes
 * back instead of C floats. */
static t2s_status class_map_cpu(t2s_ctx *ctx, const t2s_tensor *logits, uint8_t *pred) {
  int64_t n = logits->shape[0], C = logits->shape[1], hw = logits->shape[2] * logits->shape[3];
  argmax_map(t2s_f32(logits), n, C, hw, pred);
  return T2S_OK;
}

typedef t2s_status (*class_map_fn)(t2s_ctx *ctx, const t2s_tensor *logits, uint8_t *pred);
static const class_map_fn class_map_slots[T2S_DEV_COUNT] = {
    [T2S_DEV_CPU] = class_map_cpu, [T2S_DEV_CUDA] = T2S_CUDA_SLOT(t2s_class_map_cuda)};

static t2s_status predicted_classes(t2s_ctx *ctx, const t2s_tensor *logits, uint8_t *pred) {
  return T2S_DISPATCH(class_map_slots, logits->device, &ctx->err, "reweight class map", ctx,
                      logits, pred);
}

t2s_status t2s_reweight_update(t2s_ctx *ctx, const t2s_reweight_cfg *cfg,
                               const t2s_tensor *logits, const t2s_tensor *labels,
                               t2s_reweight_state *s) {
  if (!t2s_ctx_ok(ctx)) return ctx->err.status;
  const char *bad = t2s_reweight_cfg_check(cfg);
  if (bad) return t2s_error_set(&ctx->err, T2S_ERR_INVALID, "%s", bad);
  char sz[96], sl[96];
  int C = s->num_classes;
  if (logits->dtype != T2S_F32 || logits->ndim != 4 || logits->shape[1] != C ||
      labels->dtype != T2S_U8 || labels->ndim != 3 || labels->shape[0] != logits->shape[0] ||
      (logits->device != T2S_DEV_CPU && logits->device != ctx->device) || labels->device != T2S_DEV_CPU)
    return t2s_error_set(&ctx->err, T2S_ERR_INVALID,
                         "reweight: logits must be float32 (N, %d, h, w) on the host or the run's "
                         "device and labels uint8 (N, H, W) in host memory; got %s on %s and %s on %s",
                         C, t2s_shape_str(logits, sz, sizeof sz), t2s_device_name(logits->device),
                         t2s_shape_str(labels, sl, sizeof sl), t2s_device_name(labels->device));
  int64_t n = logits->shape[0], h = logits->shape[2], w = logits->shape[3];
  int64_t H = labels->shape[1], W = labels->shape[2];
  uint8_t *pred = malloc((size_t)(n * h * w) + 1);
  double *buf = calloc((size_t)3 * C, sizeof(double));
  if (pred == NULL || buf == NULL) {
    free(pred);
    free(buf);
    return t2s_error_set(&ctx->err, T2S_ERR_NOMEM, "reweight: out of host memory");
  }
  t2s_status st = T2S_OK;
  const uint8_t *y = t2s_u8(labels);
  for (int64_t i = 0; st == T2S_OK && i < n * H * W; i++)
    if (y[i] != cfg->ignore_index && y[i] >= C)
      st = t2s_error_set(&ctx->err, T2S_ERR_INVALID,
                         "reweight: label %d at element %lld is neither a class nor ignore",
                         y[i], (long long)i);
  if (st == T2S_OK) st = predicted_classes(ctx, logits, pred);
  if (st == T2S_OK) {
    confusion_counts(pred, n, h, w, y, H, W, C, cfg->ignore_index, buf);
    st = t2s_batch_stats_reduce(ctx, buf, (size_t)3 * C);
  }
  if (st == T2S_OK && cfg->enabled) update_weights(cfg, buf, s);
  free(pred);
  free(buf);
  return st;
}

t2s_tensor *t2s_reweight_tensor(t2s_ctx *ctx, t2s_reweight_state *s) {
  int64_t c = s->num_classes;
  return t2s_host_view(ctx, T2S_F32, 1, &c, s->weight);
}
