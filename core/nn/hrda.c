/* HRDA's multi-resolution forward passes (core/nn/hrda.h). */
#include "core/nn/hrda.h"

#include <math.h>

/* os / s: full-resolution pixels per context logit (8 for os 4, s 0.5); 0 when not an
 * integer. */
static int context_stride(int os, float s) {
  float a = (float)os / s;
  int r = (int)lroundf(a);
  return r >= 1 && fabsf(a - (float)r) < 1e-4f ? r : 0;
}

t2s_status t2s_hrda_check(const t2s_hrda_cfg *cfg, int os, int h, int w, t2s_error *err) {
  int a = context_stride(os, cfg->context_scale);
  if (a == 0)
    return t2s_error_set(err, T2S_ERR_INVALID, "model.hrda.context_scale %g: the head's output stride %d "
                         "divided by it is not a whole number of pixels; use 0.5 (HRDA) or 0.25",
                         cfg->context_scale, os);
  if (h % a != 0 || w % a != 0)
    return t2s_error_set(err, T2S_ERR_INVALID, "model.hrda: a %dx%d image is not a multiple of %d "
                         "pixels (the output stride %d / model.hrda.context_scale %g) on both sides; "
                         "use crops and images whose sides are multiples of %d", w, h, a, os,
                         cfg->context_scale, a);
  for (int k = 0; k < 2; k++) {
    if (cfg->hr_crop[k] % a != 0)
      return t2s_error_set(err, T2S_ERR_INVALID, "model.hrda.hr_crop_size [%d, %d] is not a multiple of "
                           "%d (output stride / context scale); the detail box must fall on the context "
                           "grid", cfg->hr_crop[0], cfg->hr_crop[1], a);
    if (cfg->slide_stride[k] % os != 0)
      return t2s_error_set(err, T2S_ERR_INVALID, "model.hrda.slide_stride [%d, %d] is not a multiple of "
                           "the output stride %d", cfg->slide_stride[0], cfg->slide_stride[1], os);
  }
  return T2S_OK;
}

t2s_hrda_box t2s_hrda_draw_box(const t2s_hrda_cfg *cfg, int os, int h, int w, t2s_rng_key key) {
  int a = context_stride(os, cfg->context_scale);
  t2s_hrda_box b = {0, 0, cfg->hr_crop[1] < h ? cfg->hr_crop[1] : h, cfg->hr_crop[0] < w ? cfg->hr_crop[0] : w};
  if (b.h == h && b.w == w) return b;
  /* get_crop_bbox: offset = randint(0, (margin + 1) // divisible) * divisible */
  int ny = (h - b.h + 1) / a, nx = (w - b.w + 1) / a;
  b.y0 = (int)t2s_rng_below(key, 0, (uint32_t)(ny > 0 ? ny : 1)) * a;
  b.x0 = (int)t2s_rng_below(key, 1, (uint32_t)(nx > 0 ? nx : 1)) * a;
  return b;
}

t2s_tensor *t2s_hrda_fuse_logits(t2s_ctx *ctx, t2s_tensor *l, t2s_tensor *z, t2s_tensor *d,
                                 const t2s_hrda_gate_args *m, int y0, int x0, float scale) {
  l = t2s_as_f32(ctx, l);
  z = t2s_as_f32(ctx, z);
  d = t2s_as_f32(ctx, d);
  t2s_tensor *g = t2s_hrda_gate(ctx, z, l, m);
  if (g == NULL) return NULL;
  /* HRDAHead.resize(x, hr_scale / lr_scale): bilinear, align_corners False */
  int out_h = (int)lroundf((float)g->shape[2] / scale), out_w = (int)lroundf((float)g->shape[3] / scale);
  return t2s_hrda_fuse(ctx, t2s_resize_bilinear(ctx, g, out_h, out_w, 0), d, y0, x0);
}

/* The context pass: x resized by s, logits, features and attention logits. */
static t2s_status context_pass(t2s_ctx *ctx, const t2s_segmentor *m, const t2s_hrda_cfg *cfg, t2s_tensor *x,
                               t2s_seg_out *co) {
  int hc = (int)lroundf((float)x->shape[2] * cfg->context_scale);
  int wc = (int)lroundf((float)x->shape[3] * cfg->context_scale);
  return t2s_segmentor_forward_attention(ctx, m, t2s_resize_bilinear(ctx, x, hc, wc, 0), co);
}

static t2s_status check_input(t2s_ctx *ctx, const t2s_segmentor *m, const t2s_hrda_cfg *cfg, t2s_tensor *x) {
  if (!t2s_ctx_ok(ctx)) return ctx->err.status;
  if (x == NULL || x->ndim != 4) {
    t2s_ctx_fail(ctx, T2S_ERR_INVALID, "hrda: the input must be an image batch (N, 3, H, W)");
    return ctx->err.status;
  }
  return t2s_hrda_check(cfg, t2s_segmentor_output_stride(m), (int)x->shape[2], (int)x->shape[3], &ctx->err);
}

t2s_status t2s_hrda_forward_train(t2s_ctx *ctx, const t2s_segmentor *m, const t2s_hrda_cfg *cfg,
                                  t2s_tensor *x, const t2s_hrda_box *box, t2s_hrda_out *out) {
  *out = (t2s_hrda_out){0};
  if (check_input(ctx, m, cfg, x) != T2S_OK) return ctx->err.status;
  int os = t2s_segmentor_output_stride(m), a = context_stride(os, cfg->context_scale);
  t2s_seg_out co, dout;
  if (context_pass(ctx, m, cfg, x, &co) != T2S_OK ||
      t2s_segmentor_forward(ctx, m, t2s_crop(ctx, x, box->y0, box->x0, box->h, box->w), &dout) != T2S_OK)
    return ctx->err.status;
  t2s_hrda_gate_args mask = {box->y0 / a, box->x0 / a, box->h / a, box->w / a};
  out->context = co.logits;
  out->context_features = co.features;
  out->detail = dout.logits;
  out->detail_features = dout.features;
  out->fused = t2s_hrda_fuse_logits(ctx, co.logits, co.attention, dout.logits, &mask, box->y0 / os,
                                    box->x0 / os, cfg->context_scale);
  return ctx->err.status;
}

/* The detail windows of the grid cut from x and stacked window-major: row k N + b is
 * window k of image b (what slide_merge reads). */
static t2s_tensor *stack_windows(t2s_ctx *ctx, t2s_tensor *x, const t2s_slide_grid *g, int os) {
  int K = t2s_slide_grid_count(g), y0, x0, wh, ww;
  t2s_slide_grid_box(g, 0, &y0, &x0, &wh, &ww);
  int64_t N = x->shape[0], C = x->shape[1];
  t2s_tensor *stack = t2s_tensor_new4(ctx, T2S_F32, K * N, C, (int64_t)wh * os, (int64_t)ww * os);
  size_t block = (size_t)(N * C * wh * os * ww * os) * sizeof(float);
  for (int k = 0; k < K && stack != NULL && t2s_ctx_ok(ctx); k++) {
    t2s_slide_grid_box(g, k, &y0, &x0, &wh, &ww);
    t2s_tensor *w = t2s_crop(ctx, x, y0 * os, x0 * os, wh * os, ww * os);
    if (w == NULL) return NULL;
    t2s_device_copy(ctx->device, (char *)stack->data + k * block, ctx->device, w->data, block, &ctx->err);
  }
  return t2s_ctx_ok(ctx) ? stack : NULL;
}

t2s_status t2s_hrda_infer(t2s_ctx *ctx, const t2s_segmentor *m, const t2s_hrda_cfg *cfg, t2s_tensor *x,
                          t2s_hrda_out *out) {
  *out = (t2s_hrda_out){0};
  if (check_input(ctx, m, cfg, x) != T2S_OK) return ctx->err.status;
  int os = t2s_segmentor_output_stride(m), H = (int)x->shape[2], W = (int)x->shape[3];
  t2s_seg_out co, dout;
  if (context_pass(ctx, m, cfg, x, &co) != T2S_OK) return ctx->err.status;
  /* the grid on the logits' grid, so every window and step is a whole number of logits */
  t2s_slide_grid g = {H / os, W / os, cfg->hr_crop[1] / os, cfg->hr_crop[0] / os,
                      cfg->slide_stride[1] / os, cfg->slide_stride[0] / os};
  int K = t2s_slide_grid_count(&g);
  if (K < 1 || K > T2S_SLIDE_MAX_WINDOWS) {
    t2s_ctx_fail(ctx, T2S_ERR_INVALID, "hrda inference: a %dx%d image takes %d detail windows of "
                 "model.hrda.hr_crop_size at model.hrda.slide_stride; at most %d fit: use a larger "
                 "slide_stride", W, H, K, T2S_SLIDE_MAX_WINDOWS);
    return ctx->err.status;
  }
  if (t2s_segmentor_forward(ctx, m, stack_windows(ctx, x, &g, os), &dout) != T2S_OK) return ctx->err.status;
  t2s_tensor *hr = t2s_slide_merge(ctx, t2s_as_f32(ctx, dout.logits), (int)x->shape[0], &g);
  if (hr == NULL) return ctx->err.status;
  t2s_hrda_gate_args all = {0, 0, (int)co.logits->shape[2], (int)co.logits->shape[3]};
  out->context = co.logits;
  out->context_features = co.features;
  out->fused = t2s_hrda_fuse_logits(ctx, co.logits, co.attention, hr, &all, 0, 0, cfg->context_scale);
  return ctx->err.status;
}
