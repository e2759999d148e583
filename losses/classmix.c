#include "losses/classmix.h"

#include <stdlib.h>
#include <string.h>

#include "core/device.h"
#include "core/rng.h"

enum { PURPOSE_CLASSMIX = 0x434d }; /* "CM" */

int t2s_classmix_choose(const uint8_t *labels, int64_t hw, int ignore_index, uint64_t seed,
                        int64_t iter, int64_t global_index, uint8_t *chosen) {
  uint8_t seen[256] = {0}, classes[256];
  for (int64_t i = 0; i < hw; i++) seen[labels[i]] = 1;
  int n = 0;
  for (int v = 0; v < 256; v++)
    if (seen[v] && v != ignore_index) classes[n++] = (uint8_t)v;
  /* a permutation of 0..n-1 by Fisher-Yates from the top: swap j with U[0, j] */
  int perm[256];
  for (int j = 0; j < n; j++) perm[j] = j;
  t2s_rng_key key = t2s_rng_key_make(seed, (uint64_t)iter, (uint64_t)global_index, PURPOSE_CLASSMIX);
  for (int j = n - 1; j > 0; j--) {
    int r = (int)t2s_rng_below(key, (uint64_t)j, (uint32_t)(j + 1));
    int t = perm[j];
    perm[j] = perm[r];
    perm[r] = t;
  }
  int k = (n + n % 2) / 2;
  uint8_t take[256] = {0};
  for (int j = 0; j < k; j++) take[classes[perm[j]]] = 1;
  int m = 0;
  for (int v = 0; v < 256; v++)
    if (take[v]) chosen[m++] = (uint8_t)v;
  return m;
}

static int same_map(const t2s_tensor *t, const t2s_tensor *ref, t2s_dtype dtype) {
  return t != NULL && t->dtype == dtype && t->ndim == 3 && t->device == ref->device &&
         t2s_same_shape(t, ref);
}

/* The CPU slot of t2s_classmix_masks. */
static t2s_status classmix_masks_cpu(t2s_ctx *ctx, const t2s_tensor *src_labels,
                                     const uint8_t *host_labels, int ignore_index, uint64_t seed,
                                     int64_t iter, int64_t global_offset, t2s_tensor *mask) {
  (void)host_labels;  /* the labels are host memory already */
  int64_t n = src_labels->shape[0], hw = src_labels->shape[1] * src_labels->shape[2];
  for (int64_t b = 0; b < n; b++) {
    const uint8_t *y = t2s_u8(src_labels) + b * hw;
    uint8_t chosen[256], take[256] = {0};
    int m = t2s_classmix_choose(y, hw, ignore_index, seed, iter, global_offset + b, chosen);
    for (int j = 0; j < m; j++) take[chosen[j]] = 1;
    uint8_t *mb = t2s_u8(mask) + b * hw;
    for (int64_t i = 0; i < hw; i++) mb[i] = take[y[i]];
  }
  return T2S_OK;
}

/* The CPU slot of t2s_classmix_apply (NCHW images). */
static t2s_status classmix_apply_cpu(t2s_ctx *ctx, const t2s_tensor *mask, const t2s_tensor *x_s,
                                     const t2s_tensor *x_t, const t2s_tensor *y_s,
                                     const t2s_tensor *yhat, const t2s_tensor *pl_weight,
                                     t2s_tensor *x_mix, t2s_tensor *y_mix, t2s_tensor *w_mix) {
  int64_t n = x_s->shape[0], ch = x_s->shape[1], hw = x_s->shape[2] * x_s->shape[3];
  const uint8_t *m = t2s_u8(mask);
  for (int64_t b = 0; b < n; b++)
    for (int64_t c = 0; c < ch; c++) {
      int64_t base = (b * ch + c) * hw;
      for (int64_t i = 0; i < hw; i++)
        t2s_f32(x_mix)[base + i] = m[b * hw + i] ? t2s_f32(x_s)[base + i] : t2s_f32(x_t)[base + i];
    }
  for (int64_t i = 0; i < n * hw; i++) {
    t2s_u8(y_mix)[i] = m[i] ? t2s_u8(y_s)[i] : t2s_u8(yhat)[i];
    t2s_f32(w_mix)[i] = m[i] ? 1.0f : t2s_f32(pl_weight)[i];
  }
  return T2S_OK;
}

typedef t2s_status (*masks_fn)(t2s_ctx *ctx, const t2s_tensor *src_labels, const uint8_t *host_labels,
                               int ignore_index, uint64_t seed, int64_t iter, int64_t global_offset,
                               t2s_tensor *mask);
typedef t2s_status (*apply_fn)(t2s_ctx *ctx, const t2s_tensor *mask, const t2s_tensor *x_s,
                               const t2s_tensor *x_t, const t2s_tensor *y_s, const t2s_tensor *yhat,
                               const t2s_tensor *pl_weight, t2s_tensor *x_mix, t2s_tensor *y_mix,
                               t2s_tensor *w_mix);
static const masks_fn masks_slots[T2S_DEV_COUNT] = {
    [T2S_DEV_CPU] = classmix_masks_cpu, [T2S_DEV_CUDA] = T2S_CUDA_SLOT(t2s_classmix_masks_cuda)};
static const apply_fn apply_slots[T2S_DEV_COUNT] = {
    [T2S_DEV_CPU] = classmix_apply_cpu, [T2S_DEV_CUDA] = T2S_CUDA_SLOT(t2s_classmix_apply_cuda)};

t2s_status t2s_classmix_masks(t2s_ctx *ctx, const t2s_tensor *src_labels, int ignore_index,
                              uint64_t seed, int64_t iter, int64_t global_offset,
                              t2s_tensor *mask) {
  return t2s_classmix_masks_hosted(ctx, src_labels, NULL, ignore_index, seed, iter, global_offset, mask);
}

t2s_status t2s_classmix_masks_hosted(t2s_ctx *ctx, const t2s_tensor *src_labels,
                                     const t2s_tensor *src_labels_host, int ignore_index, uint64_t seed,
                                     int64_t iter, int64_t global_offset, t2s_tensor *mask) {
  if (!t2s_ctx_ok(ctx)) return ctx->err.status;
  char s[96];
  if (src_labels_host != NULL && src_labels != NULL &&
      (src_labels_host->device != T2S_DEV_CPU || src_labels_host->dtype != T2S_U8 ||
       !t2s_same_shape(src_labels_host, src_labels)))
    return t2s_error_set(&ctx->err, T2S_ERR_INVALID,
                         "classmix_masks: the host copy of the labels must be uint8 %s in host memory",
                         t2s_shape_str(src_labels, s, sizeof s));
  if (src_labels == NULL || src_labels->dtype != T2S_U8 || src_labels->ndim != 3 ||
      !same_map(mask, src_labels, T2S_U8))
    return t2s_error_set(&ctx->err, T2S_ERR_INVALID,
                         "classmix_masks: labels and mask must be uint8 (N, H, W) of one shape "
                         "on one device; labels %s",
                         src_labels ? t2s_shape_str(src_labels, s, sizeof s) : "NULL");
  return T2S_DISPATCH(masks_slots, src_labels->device, &ctx->err, "classmix_masks", ctx, src_labels,
                      src_labels_host ? t2s_u8(src_labels_host) : NULL, ignore_index, seed, iter,
                      global_offset, mask);
}

t2s_status t2s_classmix_apply(t2s_ctx *ctx, const t2s_tensor *mask, const t2s_tensor *x_s,
                              const t2s_tensor *x_t, const t2s_tensor *y_s, const t2s_tensor *yhat,
                              const t2s_tensor *pl_weight, t2s_tensor *x_mix, t2s_tensor *y_mix,
                              t2s_tensor *w_mix) {
  if (!t2s_ctx_ok(ctx)) return ctx->err.status;
  char sm[96], sx[96];
  int ok = mask != NULL && mask->dtype == T2S_U8 && mask->ndim == 3 && x_s != NULL &&
           x_s->dtype == T2S_F32 && x_s->ndim == 4 &&
           x_s->device == mask->device && x_s->shape[0] == mask->shape[0] &&
           x_s->shape[2] == mask->shape[1] && x_s->shape[3] == mask->shape[2];
  ok = ok && x_t && x_t->dtype == T2S_F32 && x_t->device == mask->device &&
       x_t->layout == x_s->layout && t2s_same_shape(x_t, x_s);
  ok = ok && x_mix && x_mix->dtype == T2S_F32 && x_mix->device == mask->device &&
       x_mix->layout == x_s->layout && t2s_same_shape(x_mix, x_s);
  ok = ok && same_map(y_s, mask, T2S_U8) && same_map(yhat, mask, T2S_U8) &&
       same_map(pl_weight, mask, T2S_F32) && same_map(y_mix, mask, T2S_U8) &&
       same_map(w_mix, mask, T2S_F32);
  if (!ok)
    return t2s_error_set(&ctx->err, T2S_ERR_INVALID,
                         "classmix_apply: need images f32 (N, C, H, W) and maps (N, H, W) "
                         "(mask, labels u8; weights f32) of one size on one device; mask %s, "
                         "x_s %s",
                         mask ? t2s_shape_str(mask, sm, sizeof sm) : "NULL",
                         x_s ? t2s_shape_str(x_s, sx, sizeof sx) : "NULL");
  return T2S_DISPATCH(apply_slots, mask->device, &ctx->err, "classmix_apply", ctx, mask, x_s, x_t,
                      y_s, yhat, pl_weight, x_mix, y_mix, w_mix);
}
