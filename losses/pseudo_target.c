/* Pseudo-target images on the CPU: FDA with FFTW (single precision), colour moments.
 *
 * FFT layout: FFTW's r2c output is H x (W/2 + 1); entry (r, c) is frequency
 * (k_y, k_x) = (r <= H/2 ? r : r - H, c). The square |k_y| < b, |k_x| < b is, in that
 * half, rows k_y = -(b-1)..b-1 and columns 0..b-1; the other half follows by Hermitian
 * symmetry inside c2r. A style lists the target amplitudes there, per channel, rows
 * in k_y order, columns in k_x order. c2r(r2c(x)) = H W x, hence the 1 / (H W).
 * These are the CPU slots of style and apply; device images go to the CUDA slots
 * (losses/cuda/pseudo_target.cu, cuFFT with the same layout and arithmetic). */
#include "losses/pseudo_target.h"

#include <fftw3.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/device.h"
#include "core/rng.h"
#include "losses/batch_stats.h"

enum { PURPOSE_PAIR = 0x5054 }; /* "PT" */

struct t2s_pseudo_target {
  t2s_pseudo_target_cfg cfg;
  int H, W, b;
  float *real;           /* H x W */
  fftwf_complex *freq;   /* H x (W/2 + 1) */
  fftwf_plan forward, inverse;
  t2s_pt_cuda *cuda;     /* cuFFT plans, made by the CUDA slot on first use */
};

t2s_pseudo_target_cfg t2s_pseudo_target_cfg_defaults(void) {
  t2s_pseudo_target_cfg c = {T2S_PT_FOURIER, 0.01f, T2S_PT_LAB};
  return c;
}

const char *t2s_pseudo_target_cfg_check(const t2s_pseudo_target_cfg *c) {
  if (c->method != T2S_PT_FOURIER && c->method != T2S_PT_COLOR && c->method != T2S_PT_NONE)
    return "pseudo target: method must be 'fourier', 'color' or 'none'";
  if (!(c->beta >= 0.0f && c->beta < 0.5f)) return "pseudo target: beta must be in [0, 0.5)";
  if (c->color_space != T2S_PT_LAB && c->color_space != T2S_PT_RGB)
    return "pseudo target: color_space must be 'lab' or 'rgb'";
  return NULL;
}

int t2s_pseudo_target_half_width(float beta, int height, int width) {
  return (int)floor((double)beta * (height < width ? height : width));
}

t2s_status t2s_pseudo_target_create(t2s_pseudo_target **out, const t2s_pseudo_target_cfg *cfg,
                                    int H, int W, t2s_error *err) {
  *out = NULL;
  const char *bad = t2s_pseudo_target_cfg_check(cfg);
  if (bad) return t2s_error_set(err, T2S_ERR_INVALID, "%s", bad);
  if (H < 1 || W < 1)
    return t2s_error_set(err, T2S_ERR_INVALID, "pseudo target: image size %dx%d", H, W);
  t2s_pseudo_target *pt = calloc(1, sizeof *pt);
  if (pt == NULL) return t2s_error_set(err, T2S_ERR_NOMEM, "pseudo target: no host memory");
  pt->cfg = *cfg;
  pt->H = H;
  pt->W = W;
  pt->b = t2s_pseudo_target_half_width(cfg->beta, H, W);
  if (cfg->method == T2S_PT_FOURIER) {
    pt->real = fftwf_malloc(sizeof(float) * (size_t)H * W);
    pt->freq = fftwf_malloc(sizeof(fftwf_complex) * (size_t)H * (W / 2 + 1));
    if (pt->real && pt->freq) {
      pt->forward = fftwf_plan_dft_r2c_2d(H, W, pt->real, pt->freq, FFTW_ESTIMATE);
      pt->inverse = fftwf_plan_dft_c2r_2d(H, W, pt->freq, pt->real, FFTW_ESTIMATE);
    }
    if (!pt->forward || !pt->inverse) {
      t2s_pseudo_target_destroy(pt);
      return t2s_error_set(err, T2S_ERR_BACKEND,
                           "pseudo target: FFTW could not plan a %dx%d real transform", H, W);
    }
  }
  *out = pt;
  return T2S_OK;
}

/* NULL in a build without the CUDA backend, where pt->cuda stays NULL too. */
static void (*const cuda_release)(t2s_pt_cuda *) = T2S_CUDA_SLOT(t2s_pseudo_target_cuda_release);

void t2s_pseudo_target_destroy(t2s_pseudo_target *pt) {
  if (pt == NULL) return;
  if (pt->cuda != NULL && cuda_release != NULL) cuda_release(pt->cuda);
  if (pt->forward) fftwf_destroy_plan(pt->forward);
  if (pt->inverse) fftwf_destroy_plan(pt->inverse);
  fftwf_free(pt->real);
  fftwf_free(pt->freq);
  free(pt);
}

int64_t t2s_pseudo_target_style_size(const t2s_pseudo_target *pt) {
  switch (pt->cfg.method) {
    case T2S_PT_FOURIER: return pt->b > 0 ? 3 * (int64_t)(2 * pt->b - 1) * pt->b : 0;
    case T2S_PT_COLOR: return 6;
    default: return 0;
  }
}

t2s_pt_geometry t2s_pseudo_target_geometry(t2s_pseudo_target *pt) {
  t2s_pt_geometry g = {pt->cfg, pt->H, pt->W, pt->b, t2s_pseudo_target_style_size(pt), &pt->cuda};
  return g;
}

int64_t t2s_pseudo_target_pair(uint64_t seed, int64_t iter, int64_t global_index,
                               int64_t n_styles) {
  if (n_styles <= 1) return 0;
  t2s_rng_key key = t2s_rng_key_make(seed, (uint64_t)iter, (uint64_t)global_index, PURPOSE_PAIR);
  return (int64_t)t2s_rng_below(key, 0, (uint32_t)n_styles);
}

static int check_images(t2s_ctx *ctx, const char *op, const t2s_pseudo_target *pt,
                        const t2s_tensor *x) {
  char s[96];
  if (x != NULL && x->dtype == T2S_F32 && x->ndim == 4 && (unsigned)x->device < T2S_DEV_COUNT &&
      x->shape[1] == 3 && x->shape[2] == pt->H && x->shape[3] == pt->W)
    return 1;
  t2s_ctx_fail(ctx, T2S_ERR_INVALID,
               "%s: images must be float32 (N, 3, %d, %d) RGB (the size the pseudo target "
               "was created for); got %s",
               op, pt->H, pt->W, x ? t2s_shape_str(x, s, sizeof s) : "NULL");
  return 0;
}

/* ---- FDA ---- */

static inline int64_t freq_row(int ky, int H) { return ky >= 0 ? ky : ky + H; }

/* r2c of one channel plane into pt->freq. */
static void spectrum(t2s_pseudo_target *pt, const float *plane) {
  memcpy(pt->real, plane, sizeof(float) * (size_t)pt->H * pt->W);
  fftwf_execute(pt->forward);
}

static void fda_style(t2s_pseudo_target *pt, const float *img, float *style) {
  int b = pt->b, wc = pt->W / 2 + 1;
  for (int ch = 0; ch < 3; ch++) {
    spectrum(pt, img + (int64_t)ch * pt->H * pt->W);
    for (int ky = -(b - 1); ky <= b - 1; ky++)
      for (int kx = 0; kx < b; kx++) {
        const float *z = pt->freq[freq_row(ky, pt->H) * wc + kx];
        *style++ = hypotf(z[0], z[1]);
      }
  }
}

/* Source amplitude -> style amplitude, phase kept (a zero source value has no phase:
 * it takes the amplitude as a real number, which keeps the DC term real). */
static void fda_apply(t2s_pseudo_target *pt, const float *src, const float *style, float *dst) {
  int b = pt->b, wc = pt->W / 2 + 1;
  int64_t hw = (int64_t)pt->H * pt->W;
  for (int ch = 0; ch < 3; ch++) {
    spectrum(pt, src + ch * hw);
    for (int ky = -(b - 1); ky <= b - 1; ky++)
      for (int kx = 0; kx < b; kx++) {
        float *z = pt->freq[freq_row(ky, pt->H) * wc + kx];
        float amp = hypotf(z[0], z[1]), want = *style++;
        if (amp > 0.0f) {
          z[0] *= want / amp;
          z[1] *= want / amp;
        } else {
          z[0] = want;
          z[1] = 0.0f;
        }
      }
    fftwf_execute(pt->inverse);
    float inv = 1.0f / (float)hw;
    for (int64_t i = 0; i < hw; i++) {
      float v = pt->real[i] * inv;
      dst[ch * hw + i] = v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v;
    }
  }
}

/* ---- colour moments ---- */

static double srgb_to_linear(double c) {
  return c <= 0.04045 ? c / 12.92 : pow((c + 0.055) / 1.055, 2.4);
}
static double linear_to_srgb(double c) {
  if (c <= 0.0) return 0.0;
  return c <= 0.0031308 ? 12.92 * c : 1.055 * pow(c, 1.0 / 2.4) - 0.055;
}
static double lab_f(double t) {
  const double d = 6.0 / 29.0;
  return t > d * d * d ? cbrt(t) : t / (3.0 * d * d) + 4.0 / 29.0;
}
static double lab_finv(double t) {
  const double d = 6.0 / 29.0;
  return t > d ? t * t * t : 3.0 * d * d * (t - 4.0 / 29.0);
}
static const double WHITE[3] = {0.95047, 1.0, 1.08883};

/* RGB in [0, 255] -> CIE Lab (D65). */
static void rgb_to_lab(const double rgb[3], double lab[3]) {
  double r = srgb_to_linear(rgb[0] / 255.0), g = srgb_to_linear(rgb[1] / 255.0),
         b = srgb_to_linear(rgb[2] / 255.0);
  double x = (0.4124564 * r + 0.3575761 * g + 0.1804375 * b) / WHITE[0];
  double y = (0.2126729 * r + 0.7151522 * g + 0.0721750 * b) / WHITE[1];
  double z = (0.0193339 * r + 0.1191920 * g + 0.9503041 * b) / WHITE[2];
  double fx = lab_f(x), fy = lab_f(y), fz = lab_f(z);
  lab[0] = 116.0 * fy - 16.0;
  lab[1] = 500.0 * (fx - fy);
  lab[2] = 200.0 * (fy - fz);
}

static void lab_to_rgb(const double lab[3], double rgb[3]) {
  double fy = (lab[0] + 16.0) / 116.0, fx = fy + lab[1] / 500.0, fz = fy - lab[2] / 200.0;
  double x = WHITE[0] * lab_finv(fx), y = WHITE[1] * lab_finv(fy), z = WHITE[2] * lab_finv(fz);
  double r = 3.2404542 * x - 1.5371385 * y - 0.4985314 * z;
  double g = -0.9692660 * x + 1.8760108 * y + 0.0415560 * z;
  double b = 0.0556434 * x - 0.2040259 * y + 1.0572252 * z;
  rgb[0] = 255.0 * linear_to_srgb(r);
  rgb[1] = 255.0 * linear_to_srgb(g);
  rgb[2] = 255.0 * linear_to_srgb(b);
}

/* Pixel i of a planar image in the working space. */
static void load_pixel(const t2s_pseudo_target *pt, const float *img, int64_t hw, int64_t i,
                       double v[3]) {
  double rgb[3] = {img[i], img[hw + i], img[2 * hw + i]};
  if (pt->cfg.color_space == T2S_PT_LAB) rgb_to_lab(rgb, v);
  else memcpy(v, rgb, sizeof rgb);
}

/* mean[3], std[3] (population) in the working space, summed in double */
static void color_moments(const t2s_pseudo_target *pt, const float *img, float *style) {
  int64_t hw = (int64_t)pt->H * pt->W;
  double s[3] = {0}, s2[3] = {0}, v[3];
  for (int64_t i = 0; i < hw; i++) {
    load_pixel(pt, img, hw, i, v);
    for (int c = 0; c < 3; c++) s[c] += v[c], s2[c] += v[c] * v[c];
  }
  for (int c = 0; c < 3; c++) {
    double mean = s[c] / hw, var = s2[c] / hw - mean * mean;
    style[c] = (float)mean;
    style[3 + c] = (float)sqrt(var > 0.0 ? var : 0.0);
  }
}

static void color_apply(const t2s_pseudo_target *pt, const float *src, const float *style,
                        float *dst) {
  int64_t hw = (int64_t)pt->H * pt->W;
  float own[6];
  color_moments(pt, src, own);
  double v[3], rgb[3];
  for (int64_t i = 0; i < hw; i++) {
    load_pixel(pt, src, hw, i, v);
    for (int c = 0; c < 3; c++)
      v[c] = own[3 + c] > 0.0f ? (v[c] - own[c]) / own[3 + c] * style[3 + c] + style[c] : style[c];
    if (pt->cfg.color_space == T2S_PT_LAB) lab_to_rgb(v, rgb);
    else memcpy(rgb, v, sizeof rgb);
    for (int c = 0; c < 3; c++)
      dst[c * hw + i] = (float)(rgb[c] < 0.0 ? 0.0 : rgb[c] > 255.0 ? 255.0 : rgb[c]);
  }
}

/* ---- the CPU slots (host images) ---- */

static t2s_status style_cpu(t2s_ctx *ctx, t2s_pseudo_target *pt, const t2s_tensor *x_t,
                            float *styles) {
  int64_t n = x_t->shape[0], size = t2s_pseudo_target_style_size(pt), chw = 3 * (int64_t)pt->H * pt->W;
  for (int64_t b = 0; b < n && size > 0; b++) {
    const float *img = t2s_f32(x_t) + b * chw;
    if (pt->cfg.method == T2S_PT_FOURIER) fda_style(pt, img, styles + b * size);
    else color_moments(pt, img, styles + b * size);
  }
  return T2S_OK;
}

static t2s_status apply_cpu(t2s_ctx *ctx, t2s_pseudo_target *pt, const t2s_tensor *x_s,
                            const float *styles, int64_t n_styles, uint64_t seed, int64_t iter,
                            int64_t global_offset, t2s_tensor *x_st) {
  int64_t n = x_s->shape[0], chw = 3 * (int64_t)pt->H * pt->W;
  int64_t size = t2s_pseudo_target_style_size(pt);
  for (int64_t b = 0; b < n; b++) {
    const float *src = t2s_f32(x_s) + b * chw;
    float *dst = t2s_f32(x_st) + b * chw;
    if (size == 0) {
      memcpy(dst, src, sizeof(float) * (size_t)chw);
      continue;
    }
    const float *style = styles + t2s_pseudo_target_pair(seed, iter, global_offset + b, n_styles) * size;
    if (pt->cfg.method == T2S_PT_FOURIER) fda_apply(pt, src, style, dst);
    else color_apply(pt, src, style, dst);
  }
  return T2S_OK;
}

typedef t2s_status (*style_fn)(t2s_ctx *ctx, t2s_pseudo_target *pt, const t2s_tensor *x_t,
                               float *styles);
typedef t2s_status (*apply_fn)(t2s_ctx *ctx, t2s_pseudo_target *pt, const t2s_tensor *x_s,
                               const float *styles, int64_t n_styles, uint64_t seed, int64_t iter,
                               int64_t global_offset, t2s_tensor *x_st);
static const style_fn style_slots[T2S_DEV_COUNT] = {
    [T2S_DEV_CPU] = style_cpu, [T2S_DEV_CUDA] = T2S_CUDA_SLOT(t2s_pseudo_target_style_cuda)};
static const apply_fn apply_slots[T2S_DEV_COUNT] = {
    [T2S_DEV_CPU] = apply_cpu, [T2S_DEV_CUDA] = T2S_CUDA_SLOT(t2s_pseudo_target_apply_cuda)};

/* ---- public: checks, then the slot of the images' device ---- */

t2s_status t2s_pseudo_target_style(t2s_ctx *ctx, t2s_pseudo_target *pt, const t2s_tensor *x_t,
                                   float *styles) {
  if (!t2s_ctx_ok(ctx)) return ctx->err.status;
  if (!check_images(ctx, "pseudo_target_style", pt, x_t)) return ctx->err.status;
  return T2S_DISPATCH(style_slots, x_t->device, &ctx->err, "pseudo_target_style", ctx, pt, x_t,
                      styles);
}

t2s_status t2s_pseudo_target_gather_styles(t2s_ctx *ctx, const t2s_pseudo_target *pt,
                                           const float *local, int64_t n_local, int64_t offset,
                                           int64_t n_global, float *global) {
  if (!t2s_ctx_ok(ctx)) return ctx->err.status;
  if (n_local < 0 || offset < 0 || offset + n_local > n_global)
    return t2s_error_set(&ctx->err, T2S_ERR_INVALID,
                         "pseudo_target_gather_styles: local images %lld..%lld outside the global "
                         "batch of %lld",
                         (long long)offset, (long long)(offset + n_local), (long long)n_global);
  int64_t size = t2s_pseudo_target_style_size(pt), total = n_global * size;
  double *buf = calloc((size_t)total + 1, sizeof(double));
  if (buf == NULL) return t2s_error_set(&ctx->err, T2S_ERR_NOMEM, "pseudo target: no memory");
  for (int64_t i = 0; i < n_local * size; i++) buf[offset * size + i] = local[i];
  t2s_status st = t2s_batch_stats_reduce(ctx, buf, (size_t)total);
  if (st == T2S_OK)
    for (int64_t i = 0; i < total; i++) global[i] = (float)buf[i];
  free(buf);
  return st;
}

t2s_status t2s_pseudo_target_apply(t2s_ctx *ctx, t2s_pseudo_target *pt, const t2s_tensor *x_s,
                                   const float *styles, int64_t n_styles, uint64_t seed,
                                   int64_t iter, int64_t global_offset, t2s_tensor *x_st) {
  if (!t2s_ctx_ok(ctx)) return ctx->err.status;
  if (!check_images(ctx, "pseudo_target_apply", pt, x_s) ||
      !check_images(ctx, "pseudo_target_apply", pt, x_st))
    return ctx->err.status;
  if (x_st->shape[0] != x_s->shape[0] || x_st->data == x_s->data || x_st->device != x_s->device)
    return t2s_error_set(&ctx->err, T2S_ERR_INVALID,
                         "pseudo_target_apply: the output must be a separate tensor of the "
                         "source batch's size on its device (source on %s, output on %s)",
                         t2s_device_name(x_s->device), t2s_device_name(x_st->device));
  int64_t size = t2s_pseudo_target_style_size(pt);
  if (size > 0 && n_styles < 1)
    return t2s_error_set(&ctx->err, T2S_ERR_INVALID,
                         "pseudo_target_apply: no target styles to pair with (n_styles = %lld)",
                         (long long)n_styles);
  return T2S_DISPATCH(apply_slots, x_s->device, &ctx->err, "pseudo_target_apply", ctx, pt, x_s,
                      styles, n_styles, seed, iter, global_offset, x_st);
}
