#include "launch/device_batch.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/device.h"
#include "core/ops.h"
#include "data/augment.h"

static int on_host(const t2s_ctx *ctx) { return ctx->device == T2S_DEV_CPU; }

/* Host f32 NCHW -> a 4-d f32 tensor of the context: a copy on the CPU; on CUDA the
 * NCHW bytes go to scratch and are transposed into the NHWC tensor on the device. */
static t2s_tensor *upload_nchw(t2s_ctx *ctx, const float *src, const int64_t shape[4]) {
  t2s_tensor *x = t2s_tensor_new(ctx, T2S_F32, 4, shape);
  if (x == NULL) return NULL;
  size_t bytes = (size_t)t2s_numel(x) * sizeof(float);
  if (on_host(ctx)) {
    memcpy(x->data, src, bytes);
    return x;
  }
  float *staging = t2s_scratch(ctx, bytes);
  if (staging == NULL ||
      t2s_device_copy(ctx->device, staging, T2S_DEV_CPU, src, bytes, &ctx->err) != T2S_OK ||
      t2s_images_layout(ctx, staging, t2s_f32(x), shape[0], shape[1], shape[2] * shape[3], 1) !=
          T2S_OK)
    return NULL;
  return x;
}

t2s_tensor *t2s_batch_images(t2s_ctx *ctx, const float *host_nchw, int n, int h, int w) {
  if (!t2s_ctx_ok(ctx)) return NULL;
  int64_t shape[4] = {n, 3, h, w};
  return upload_nchw(ctx, host_nchw, shape);
}

t2s_tensor *t2s_batch_labels(t2s_ctx *ctx, const uint8_t *host, int n, int h, int w) {
  int64_t shape[3] = {n, h, w};
  t2s_tensor *y = t2s_tensor_new(ctx, T2S_U8, 3, shape);
  if (y == NULL || host == NULL) return y;
  if (t2s_device_copy(ctx->device, y->data, T2S_DEV_CPU, host, (size_t)n * h * w, &ctx->err) != T2S_OK)
    return NULL;
  return y;
}

/* What a download hands back: bf16 activations (precision bf16) come back as f32. */
static t2s_dtype host_dtype(const t2s_tensor *t) { return t->dtype == T2S_BF16 ? T2S_F32 : t->dtype; }

/* An f32 copy of a bf16 activation in the pass arena, off the tape (a read-back). */
static const t2s_tensor *widened(t2s_ctx *ctx, const t2s_tensor *t) {
  int prev = t2s_set_grad_enabled(ctx, 0);
  t2s_tensor *w = t2s_to_f32(ctx, (t2s_tensor *)t);
  t2s_set_grad_enabled(ctx, prev);
  return w;
}

t2s_status t2s_tensor_download(t2s_ctx *ctx, const t2s_tensor *t, void *host) {
  if (!t2s_ctx_ok(ctx)) return ctx->err.status;
  if (t->dtype == T2S_BF16 && (t = widened(ctx, t)) == NULL) return ctx->err.status;
  size_t bytes = (size_t)t2s_numel(t) * t2s_dtype_size(t->dtype);
  if (t->device == T2S_DEV_CPU) {
    memcpy(host, t->data, bytes);
    return T2S_OK;
  }
  if (t->ndim == 4 && t->layout == T2S_LAYOUT_NHWC && t->dtype == T2S_F32) {
    /* transpose on the device, then one copy */
    float *staging = t2s_scratch(ctx, bytes);
    if (staging == NULL ||
        t2s_images_layout(ctx, t2s_f32(t), staging, t->shape[0], t->shape[1],
                               t->shape[2] * t->shape[3], 0) != T2S_OK)
      return ctx->err.status;
    return t2s_device_copy(T2S_DEV_CPU, host, t->device, staging, bytes, &ctx->err);
  }
  if (t->ndim == 4 && t->layout == T2S_LAYOUT_NHWC && t->shape[1] != 1)
    return t2s_error_set(&ctx->err, T2S_ERR_UNSUPPORTED,
                         "tensor_download: a 4-d NHWC %s tensor (only f32 and bf16 activations are "
                         "transposed)", t2s_dtype_name(t->dtype));
  return t2s_device_copy(T2S_DEV_CPU, host, t->device, t->data, bytes, &ctx->err);
}

t2s_tensor *t2s_tensor_upload(t2s_ctx *ctx, const t2s_tensor *host) {
  if (!t2s_ctx_ok(ctx) || host == NULL) return NULL;
  if (host->ndim == 4 && host->dtype == T2S_F32) return upload_nchw(ctx, t2s_f32(host), host->shape);
  t2s_tensor *t = t2s_tensor_new(ctx, host->dtype, host->ndim, host->shape);
  if (t == NULL) return NULL;
  size_t bytes = (size_t)t2s_numel(t) * t2s_dtype_size(t->dtype);
  return t2s_device_copy(ctx->device, t->data, T2S_DEV_CPU, host->data, bytes, &ctx->err) == T2S_OK ? t
                                                                                                 : NULL;
}

double t2s_tensor_scalar(t2s_ctx *ctx, const t2s_tensor *t) {
  if (t == NULL) return NAN;
  float v = NAN;
  if (t->device == T2S_DEV_CPU) return (double)t2s_f32(t)[0];
  if (t2s_device_copy(T2S_DEV_CPU, &v, t->device, t->data, sizeof v, &ctx->err) != T2S_OK) return NAN;
  return (double)v;
}

/* ---- the host halves of the training step ---- */

t2s_tensor *t2s_batch_host_labels(t2s_ctx *ctx, t2s_tensor *y, const uint8_t *host, int n, int h,
                                  int w) {
  if (on_host(ctx) || y == NULL) return y;
  int64_t shape[3] = {n, h, w};
  return t2s_host_view(ctx, T2S_U8, 3, shape, (void *)host);
}

t2s_tensor *t2s_batch_host_images(t2s_ctx *ctx, t2s_tensor *x, const float *host, int n, int h,
                                  int w) {
  if (on_host(ctx) || x == NULL) return x;
  int64_t shape[4] = {n, 3, h, w};
  return t2s_host_view(ctx, T2S_F32, 4, shape, (void *)host);
}

t2s_tensor *t2s_host_batch_new(t2s_ctx *ctx, int64_t n, int64_t c, int64_t h, int64_t w) {
  if (on_host(ctx)) return t2s_tensor_new4(ctx, T2S_F32, n, c, h, w);
  int64_t shape[4] = {n, c, h, w};
  void *data = t2s_host_scratch(ctx, (size_t)(n * c * h * w) * sizeof(float));
  return data ? t2s_host_view(ctx, T2S_F32, 4, shape, data) : NULL;
}

t2s_tensor *t2s_tensor_to_device(t2s_ctx *ctx, t2s_tensor *host) {
  return on_host(ctx) ? host : t2s_tensor_upload(ctx, host);
}

const void *t2s_tensor_host_data(t2s_ctx *ctx, const t2s_tensor *t) {
  if (!t2s_ctx_ok(ctx) || t == NULL) return NULL;
  if (t->device == T2S_DEV_CPU) return t->data;
  void *h = t2s_host_scratch(ctx, (size_t)t2s_numel(t) * t2s_dtype_size(host_dtype(t)) + 1);
  return h && t2s_tensor_download(ctx, t, h) == T2S_OK ? h : NULL;
}

t2s_tensor *t2s_tensor_host(t2s_ctx *ctx, const t2s_tensor *t) {
  if (t != NULL && t->device == T2S_DEV_CPU) return (t2s_tensor *)t;
  const void *data = t2s_tensor_host_data(ctx, t);
  return data ? t2s_host_view(ctx, host_dtype(t), t->ndim, t->shape, (void *)data) : NULL;
}

t2s_tensor *t2s_batch_normalized(t2s_ctx *ctx, const t2s_tensor *raw) {
  if (raw == NULL) return NULL;
  t2s_tensor *x = t2s_tensor_new(ctx, T2S_F32, 4, raw->shape);
  if (x == NULL || t2s_device_copy(ctx->device, x->data, raw->device, raw->data,
                                   (size_t)t2s_numel(raw) * sizeof(float), &ctx->err) != T2S_OK)
    return NULL;
  return t2s_batch_normalize(ctx, x) == T2S_OK ? x : NULL;
}

t2s_tensor *t2s_batch_labels_down(t2s_ctx *ctx, t2s_tensor *y, t2s_tensor *y_host, int h, int w,
                                  t2s_label_down mode, float ratio, int ignore_index,
                                  t2s_tensor **host_out) {
  if (host_out) *host_out = NULL;
  if (on_host(ctx) || mode == T2S_LABEL_DOWN_NEAREST) {
    t2s_tensor *out = t2s_labels_downsample(ctx, y, h, w, mode, ratio, ignore_index);
    if (host_out && on_host(ctx)) *host_out = out;
    return out;
  }
  if (!t2s_ctx_ok(ctx) || y_host == NULL) return NULL;
  t2s_error e = {0};
  t2s_ctx *host = t2s_ctx_create(T2S_DEV_CPU, (size_t)1 << 20, &e);
  if (host == NULL) return t2s_ctx_fail(ctx, e.status, "labels_downsample on the host: %s", e.msg);
  t2s_tensor *small = t2s_labels_downsample(host, y_host, h, w, mode, ratio, ignore_index);
  t2s_tensor *out = small ? t2s_tensor_upload(ctx, small) : t2s_ctx_fail(ctx, host->err.status, "%s", host->err.msg);
  /* the host result outlives the short-lived context in the pass's host scratch, so the
   * host code after us (class prototypes) need not read the labels back */
  size_t bytes = out ? (size_t)t2s_numel(small) : 0;
  void *keep = host_out && out ? t2s_host_scratch(ctx, bytes + 1) : NULL;
  if (keep) {
    memcpy(keep, small->data, bytes);
    *host_out = t2s_host_view(ctx, T2S_U8, 3, small->shape, keep);
  }
  t2s_ctx_destroy(host);
  return out;
}

/* ---- photometric ---- */

static int is_image_batch(t2s_ctx *ctx, const char *op, const t2s_tensor *x) {
  char s[96];
  if (x != NULL && x->dtype == T2S_F32 && x->ndim == 4 && x->shape[1] == 3 && x->device == ctx->device)
    return 1;
  if (x == NULL) return 0;
  t2s_ctx_fail(ctx, T2S_ERR_INVALID, "%s: images must be float32 (N, 3, H, W) on the run's device (%s); got %s %s on %s",
               op, t2s_device_name(ctx->device), t2s_dtype_name(x->dtype), t2s_shape_str(x, s, sizeof s),
               t2s_device_name(x->device));
  return 0;
}

t2s_status t2s_batch_color_jitter(t2s_ctx *ctx, t2s_tensor *x, const t2s_jitter_cfg *cfg,
                                  t2s_aug_key key) {
  if (!t2s_ctx_ok(ctx)) return ctx->err.status;
  if (!is_image_batch(ctx, "color_jitter", x)) return t2s_ctx_ok(ctx) ? T2S_ERR_INVALID : ctx->err.status;
  int n = (int)x->shape[0], h = (int)x->shape[2], w = (int)x->shape[3];
  if (on_host(ctx)) {
    t2s_color_jitter(t2s_f32(x), n, h, w, cfg, key);
    return T2S_OK;
  }
  t2s_jitter_params *p = t2s_host_scratch(ctx, (size_t)n * sizeof *p + 1);
  if (p == NULL) return ctx->err.status;
  for (int i = 0; i < n; i++) {
    t2s_aug_key k = key;
    k.sample = key.sample + i;
    p[i] = t2s_jitter_draw(cfg, k);
  }
  return t2s_images_jitter(ctx, t2s_f32(x), n, (int64_t)h * w, p);
}

t2s_status t2s_batch_gaussian_blur(t2s_ctx *ctx, t2s_tensor *x, const t2s_blur_cfg *cfg,
                                   t2s_aug_key key) {
  if (!t2s_ctx_ok(ctx)) return ctx->err.status;
  if (!is_image_batch(ctx, "gaussian_blur", x)) return t2s_ctx_ok(ctx) ? T2S_ERR_INVALID : ctx->err.status;
  int n = (int)x->shape[0], h = (int)x->shape[2], w = (int)x->shape[3];
  if (on_host(ctx)) return t2s_gaussian_blur(t2s_f32(x), n, h, w, cfg, key, &ctx->err);
  int kh = t2s_blur_kernel_size(h), kw = t2s_blur_kernel_size(w);
  for (int i = 0; i < n; i++) {
    t2s_aug_key k = key;
    k.sample = key.sample + i;
    t2s_blur_params p = t2s_blur_draw(cfg, k);
    if (!p.apply) continue;
    /* taps of their own per image: the upload may still read them after we return */
    float *ky = t2s_host_scratch(ctx, sizeof(float) * (size_t)(kh + kw));
    if (ky == NULL) return ctx->err.status;
    float *kx = ky + kh;
    int ry = t2s_blur_kernel1d(kh, p.sigma, ky), rx = t2s_blur_kernel1d(kw, p.sigma, kx);
    /* the taps and the row buffer die with the launch: give the scratch back */
    t2s_arena_mark mark = t2s_scratch_mark(ctx);
    t2s_status st = t2s_images_blur(ctx, t2s_f32(x) + (size_t)i * 3 * h * w, h, w, ky, kh, ry, kx, kw, rx);
    t2s_scratch_release(ctx, mark);
    if (st != T2S_OK) return st;
  }
  return T2S_OK;
}

t2s_status t2s_batch_normalize(t2s_ctx *ctx, t2s_tensor *x) {
  if (!t2s_ctx_ok(ctx)) return ctx->err.status;
  if (!is_image_batch(ctx, "normalize", x)) return t2s_ctx_ok(ctx) ? T2S_ERR_INVALID : ctx->err.status;
  int n = (int)x->shape[0], h = (int)x->shape[2], w = (int)x->shape[3];
  if (on_host(ctx)) {
    t2s_normalize(t2s_f32(x), n, h, w);
    return T2S_OK;
  }
  return t2s_images_normalize(ctx, t2s_f32(x), n, (int64_t)h * w, t2s_norm_mean, t2s_norm_std);
}
