/* Per-sample augmentation (data/augment.h). */
#include "data/augment.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/device.h"
#include "core/rng.h"

const float t2s_norm_mean[3] = {123.675f, 116.28f, 103.53f};
const float t2s_norm_std[3] = {58.395f, 57.12f, 57.375f};

static t2s_rng_key aug_key(t2s_aug_key k, uint64_t purpose) {
  return t2s_rng_key_make(k.seed, (purpose << 32) | k.stream, (uint64_t)k.iteration,
                          (uint64_t)k.sample);
}

static float uniform_in(t2s_rng_key key, uint64_t ctr, double lo, double hi) {
  return (float)(lo + (hi - lo) * (double)t2s_rng_uniform(key, ctr));
}

t2s_augment_cfg t2s_augment_cfg_default(void) {
  t2s_augment_cfg c = {.crop_w = 512, .crop_h = 512, .cat_max_ratio = 0.75, .ignore_index = 255,
                       .flip_prob = 0.5, .rescale = 0, .ratio_lo = 0.5, .ratio_hi = 2.0,
                       .rcs_min_crop_pixels = 1500};
  return c;
}

void t2s_aug_scratch_free(t2s_aug_scratch *s) {
  free(s->rgb);
  free(s->label);
  memset(s, 0, sizeof *s);
}

/* ---- geometry ---------------------------------------------------------------- */

/* mmseg's acceptance test: at least two labelled classes and the largest below
 * cat_max_ratio of the labelled pixels (255 = ignore is not counted). */
static int crop_acceptable(const t2s_augment_cfg *cfg, const uint8_t *label, int w,
                           const t2s_geometry *g) {
  int64_t hist[256] = {0};
  for (int y = 0; y < g->h; y++) {
    const uint8_t *row = label + (size_t)(g->y + y) * w + g->x;
    for (int x = 0; x < g->w; x++) hist[row[x]]++;
  }
  int64_t total = 0, top = 0;
  int classes = 0;
  for (int c = 0; c < 256; c++) {
    if (c == cfg->ignore_index || hist[c] == 0) continue;
    classes++;
    total += hist[c];
    if (hist[c] > top) top = hist[c];
  }
  return classes > 1 && (double)top / (double)total < cfg->cat_max_ratio;
}

void t2s_crop_choose(const t2s_augment_cfg *cfg, t2s_aug_key key, int attempt,
                     const uint8_t *label, int w, int h, t2s_geometry *g) {
  t2s_rng_key rk = aug_key(key, T2S_PURPOSE_CROP);
  int margin_w = w > cfg->crop_w ? w - cfg->crop_w : 0;
  int margin_h = h > cfg->crop_h ? h - cfg->crop_h : 0;
  g->src_w = w;
  g->src_h = h;
  g->w = w < cfg->crop_w ? w : cfg->crop_w;
  g->h = h < cfg->crop_h ? h : cfg->crop_h;
  int check = label != NULL && cfg->cat_max_ratio < 1.0;
  for (int t = 0;; t++) {
    uint64_t ctr = (uint64_t)attempt * 32 + (uint64_t)t * 2;
    g->y = (int)t2s_rng_below(rk, ctr, (uint32_t)margin_h + 1);
    g->x = (int)t2s_rng_below(rk, ctr + 1, (uint32_t)margin_w + 1);
    /* mmseg checks T2S_CROP_TRIES boxes and keeps the draw after the last failure */
    if (!check || t == T2S_CROP_TRIES || crop_acceptable(cfg, label, w, g)) break;
  }
}

static int grow(uint8_t **buf, size_t *cap, size_t need) {
  if (*cap >= need) return 1;
  uint8_t *b = realloc(*buf, need);
  if (b == NULL) return 0;
  *buf = b;
  *cap = need;
  return 1;
}

/* Bilinear with half-pixel centres (cv2 INTER_LINEAR / align_corners=False). */
static void resize_rgb(const uint8_t *src, int w, int h, uint8_t *dst, int nw, int nh) {
  double sx = (double)w / nw, sy = (double)h / nh;
  for (int y = 0; y < nh; y++) {
    double fy = fmax((y + 0.5) * sy - 0.5, 0.0);
    int y0 = (int)fy, y1 = y0 + 1 < h ? y0 + 1 : h - 1;
    double ay = fy - y0;
    for (int x = 0; x < nw; x++) {
      double fx = fmax((x + 0.5) * sx - 0.5, 0.0);
      int x0 = (int)fx, x1 = x0 + 1 < w ? x0 + 1 : w - 1;
      double ax = fx - x0;
      for (int c = 0; c < 3; c++) {
        double top = (1 - ax) * src[((size_t)y0 * w + x0) * 3 + c] + ax * src[((size_t)y0 * w + x1) * 3 + c];
        double bot = (1 - ax) * src[((size_t)y1 * w + x0) * 3 + c] + ax * src[((size_t)y1 * w + x1) * 3 + c];
        dst[((size_t)y * nw + x) * 3 + c] = (uint8_t)lround((1 - ay) * top + ay * bot);
      }
    }
  }
}

/* Nearest as cv2 INTER_NEAREST: source index floor(dst * in / out). */
static void resize_label(const uint8_t *src, int w, int h, uint8_t *dst, int nw, int nh) {
  for (int y = 0; y < nh; y++) {
    int sy = (int)((int64_t)y * h / nh);
    for (int x = 0; x < nw; x++) dst[(size_t)y * nw + x] = src[(size_t)sy * w + (int64_t)x * w / nw];
  }
}

static t2s_status rescale(const t2s_augment_cfg *cfg, t2s_aug_key key, int attempt,
                          const uint8_t **rgb, const uint8_t **label, int *w, int *h,
                          t2s_aug_scratch *s, t2s_error *err) {
  float r = uniform_in(aug_key(key, T2S_PURPOSE_RESCALE), (uint64_t)attempt, cfg->ratio_lo,
                       cfg->ratio_hi);
  int nw = (int)(*w * (double)r + 0.5), nh = (int)(*h * (double)r + 0.5);
  if (nw < 1) nw = 1;
  if (nh < 1) nh = 1;
  if (!grow(&s->rgb, &s->rgb_cap, (size_t)nw * nh * 3) ||
      (*label != NULL && !grow(&s->label, &s->label_cap, (size_t)nw * nh)))
    return t2s_error_set(err, T2S_ERR_NOMEM, "augment: out of memory rescaling %dx%d to %dx%d",
                         *w, *h, nw, nh);
  resize_rgb(*rgb, *w, *h, s->rgb, nw, nh);
  if (*label != NULL) resize_label(*label, *w, *h, s->label, nw, nh);
  *rgb = s->rgb;
  if (*label != NULL) *label = s->label;
  *w = nw;
  *h = nh;
  return T2S_OK;
}

static int64_t class_pixels_in(const uint8_t *label, int w, const t2s_geometry *g, int c) {
  int64_t n = 0;
  for (int y = 0; y < g->h; y++) {
    const uint8_t *row = label + (size_t)(g->y + y) * w + g->x;
    for (int x = 0; x < g->w; x++) n += row[x] == c;
  }
  return n;
}

/* HWC u8 crop -> CHW f32, flipped, padded right/bottom (mean colour, ignore label). */
static void write_crop(const t2s_augment_cfg *cfg, const t2s_geometry *g, const uint8_t *rgb,
                       const uint8_t *label, float *out_img, uint8_t *out_label) {
  int cw = cfg->crop_w, ch = cfg->crop_h;
  size_t plane = (size_t)cw * ch;
  for (int y = 0; y < ch; y++) {
    float *o[3] = {out_img + (size_t)y * cw, out_img + plane + (size_t)y * cw,
                   out_img + 2 * plane + (size_t)y * cw};
    uint8_t *ol = out_label != NULL ? out_label + (size_t)y * cw : NULL;
    const uint8_t *row = y < g->h ? rgb + ((size_t)(g->y + y) * g->src_w) * 3 : NULL;
    const uint8_t *lrow = y < g->h && label != NULL ? label + (size_t)(g->y + y) * g->src_w : NULL;
    for (int x = 0; x < cw; x++) {
      if (row == NULL || x >= g->w) {
        for (int c = 0; c < 3; c++) o[c][x] = t2s_norm_mean[c];
        if (ol != NULL) ol[x] = (uint8_t)cfg->ignore_index;
        continue;
      }
      int sx = g->x + (g->flip ? g->w - 1 - x : x);
      for (int c = 0; c < 3; c++) o[c][x] = (float)row[(size_t)sx * 3 + c];
      if (ol != NULL) ol[x] = lrow != NULL ? lrow[sx] : (uint8_t)cfg->ignore_index;
    }
  }
}

t2s_status t2s_augment_sample(const t2s_augment_cfg *cfg, t2s_aug_key key, const uint8_t *rgb,
                              const uint8_t *label, int w, int h, int required_class,
                              float *out_img, uint8_t *out_label, t2s_aug_scratch *scratch,
                              t2s_geometry *g_out, t2s_error *err) {
  if (cfg->crop_w < 1 || cfg->crop_h < 1 || w < 1 || h < 1)
    return t2s_error_set(err, T2S_ERR_INVALID, "augment: crop %dx%d of a %dx%d image is not valid",
                         cfg->crop_w, cfg->crop_h, w, h);
  int rcs = required_class >= 0 && label != NULL && cfg->rcs_min_crop_pixels > 0;
  t2s_geometry g;
  const uint8_t *src = rgb, *lab = label;
  int sw = w, sh = h;
  /* DAFormer re-draws the whole pipeline until the crop shows the rare class,
   * checking T2S_RCS_CROP_TRIES times; the draw after the last failure stands. */
  for (int attempt = 0;; attempt++) {
    src = rgb;
    lab = label;
    sw = w;
    sh = h;
    if (cfg->rescale) {
      t2s_status st = rescale(cfg, key, attempt, &src, &lab, &sw, &sh, scratch, err);
      if (st != T2S_OK) return st;
    }
    t2s_crop_choose(cfg, key, attempt, lab, sw, sh, &g);
    if (!rcs || attempt == T2S_RCS_CROP_TRIES ||
        class_pixels_in(lab, sw, &g, required_class) > cfg->rcs_min_crop_pixels)
      break;
  }
  g.flip = t2s_rng_uniform(aug_key(key, T2S_PURPOSE_FLIP), 0) < cfg->flip_prob;
  write_crop(cfg, &g, src, lab, out_img, label != NULL ? out_label : NULL);
  if (g_out != NULL) *g_out = g;
  return T2S_OK;
}

/* ---- colour jitter (torchvision semantics on [0, 1]) ------------------------- */

t2s_jitter_cfg t2s_jitter_cfg_default(void) {
  t2s_jitter_cfg c = {.brightness = 0.2, .contrast = 0.2, .saturation = 0.2, .hue = 0.2,
                      .prob = 0.8};
  return c;
}

t2s_jitter_params t2s_jitter_draw(const t2s_jitter_cfg *cfg, t2s_aug_key key) {
  t2s_rng_key rk = aug_key(key, T2S_PURPOSE_JITTER);
  t2s_jitter_params p;
  p.apply = t2s_rng_uniform(rk, 0) < cfg->prob;
  /* torch.randperm(4) as a Fisher-Yates shuffle */
  for (int i = 0; i < 4; i++) p.order[i] = i;
  for (int i = 3; i > 0; i--) {
    int j = (int)t2s_rng_below(rk, 8 + (uint64_t)i, (uint32_t)i + 1);
    int t = p.order[i];
    p.order[i] = p.order[j];
    p.order[j] = t;
  }
  p.brightness = uniform_in(rk, 1, fmax(0.0, 1.0 - cfg->brightness), 1.0 + cfg->brightness);
  p.contrast = uniform_in(rk, 2, fmax(0.0, 1.0 - cfg->contrast), 1.0 + cfg->contrast);
  p.saturation = uniform_in(rk, 3, fmax(0.0, 1.0 - cfg->saturation), 1.0 + cfg->saturation);
  p.hue = uniform_in(rk, 4, -cfg->hue, cfg->hue);
  return p;
}

static float clamp01(float v) { return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v); }
static float gray(float r, float g, float b) { return 0.2989f * r + 0.587f * g + 0.114f * b; }

/* torchvision _blend: clamp(ratio * a + (1 - ratio) * b, 0, 1). */
static float blend(float a, float b, float ratio) { return clamp01(ratio * a + (1.0f - ratio) * b); }

/* torchvision _rgb2hsv / _hsv2rgb, per pixel. */
static void rgb2hsv(float r, float g, float b, float *h, float *s, float *v) {
  float maxc = fmaxf(r, fmaxf(g, b)), minc = fminf(r, fminf(g, b));
  int eqc = maxc == minc;
  float cr = maxc - minc;
  *s = cr / (eqc ? 1.0f : maxc);
  float div = eqc ? 1.0f : cr;
  float rc = (maxc - r) / div, gc = (maxc - g) / div, bc = (maxc - b) / div;
  float hh;
  if (maxc == r) hh = bc - gc;
  else if (maxc == g) hh = 2.0f + rc - bc;
  else hh = 4.0f + gc - rc;
  *h = fmodf(hh / 6.0f + 1.0f, 1.0f);
  *v = maxc;
}

static void hsv2rgb(float h, float s, float v, float *r, float *g, float *b) {
  float i = floorf(h * 6.0f), f = h * 6.0f - i;
  int k = ((int)i % 6 + 6) % 6;
  float p = clamp01(v * (1.0f - s)), q = clamp01(v * (1.0f - s * f)),
        t = clamp01(v * (1.0f - s * (1.0f - f)));
  const float rr[6] = {v, q, p, p, t, v}, gg[6] = {t, v, v, q, p, p}, bb[6] = {p, p, t, v, v, q};
  *r = rr[k];
  *g = gg[k];
  *b = bb[k];
}

static void jitter_one(float *R, float *G, float *B, size_t n, int op, const t2s_jitter_params *p) {
  if (op == 0) {
    for (size_t i = 0; i < n; i++) {
      R[i] = blend(R[i], 0.0f, p->brightness);
      G[i] = blend(G[i], 0.0f, p->brightness);
      B[i] = blend(B[i], 0.0f, p->brightness);
    }
  } else if (op == 1) {
    double acc = 0; /* mean of the grey image over all pixels */
    for (size_t i = 0; i < n; i++) acc += gray(R[i], G[i], B[i]);
    float mean = (float)(acc / (double)n);
    for (size_t i = 0; i < n; i++) {
      R[i] = blend(R[i], mean, p->contrast);
      G[i] = blend(G[i], mean, p->contrast);
      B[i] = blend(B[i], mean, p->contrast);
    }
  } else if (op == 2) {
    for (size_t i = 0; i < n; i++) {
      float l = gray(R[i], G[i], B[i]);
      R[i] = blend(R[i], l, p->saturation);
      G[i] = blend(G[i], l, p->saturation);
      B[i] = blend(B[i], l, p->saturation);
    }
  } else {
    for (size_t i = 0; i < n; i++) {
      float h, s, v;
      rgb2hsv(R[i], G[i], B[i], &h, &s, &v);
      h = h + p->hue;
      h = h - floorf(h); /* Python's % 1.0 */
      hsv2rgb(h, s, v, &R[i], &G[i], &B[i]);
    }
  }
}

void t2s_jitter_apply(float *img, int h, int w, const t2s_jitter_params *p) {
  if (!p->apply) return;
  size_t n = (size_t)h * w;
  for (size_t i = 0; i < 3 * n; i++) img[i] *= 1.0f / 255.0f;
  for (int k = 0; k < 4; k++) jitter_one(img, img + n, img + 2 * n, n, p->order[k], p);
  for (size_t i = 0; i < 3 * n; i++) img[i] *= 255.0f;
}

void t2s_color_jitter(float *img, int n, int h, int w, const t2s_jitter_cfg *cfg,
                      t2s_aug_key key) {
  for (int i = 0; i < n; i++) {
    t2s_aug_key k = key;
    k.sample = key.sample + i;
    t2s_jitter_params p = t2s_jitter_draw(cfg, k);
    t2s_jitter_apply(img + (size_t)i * 3 * h * w, h, w, &p);
  }
}

/* ---- Gaussian blur (DACS / kornia) ------------------------------------------- */

t2s_blur_cfg t2s_blur_cfg_default(void) {
  t2s_blur_cfg c = {.prob = 0.5, .sigma_lo = 0.15, .sigma_hi = 1.15};
  return c;
}

t2s_blur_params t2s_blur_draw(const t2s_blur_cfg *cfg, t2s_aug_key key) {
  t2s_rng_key rk = aug_key(key, T2S_PURPOSE_BLUR);
  t2s_blur_params p;
  p.apply = t2s_rng_uniform(rk, 0) < cfg->prob;
  p.sigma = uniform_in(rk, 1, cfg->sigma_lo, cfg->sigma_hi);
  return p;
}

int t2s_blur_kernel_size(int side) {
  int k = (int)ceil(0.1 * side);
  return k % 2 == 1 ? k : (k > 1 ? k - 1 : 1);
}

/* torch 'reflect' padding index, repeated for kernels wider than the image. */
static int reflect(int i, int n) {
  if (n == 1) return 0;
  int period = 2 * (n - 1);
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - i;
}

int t2s_blur_kernel1d(int k, float sigma, float *wts) {
  float sum = 0.0f;
  for (int i = 0; i < k; i++) {
    float x = (float)(i - k / 2);
    wts[i] = expf(-(x * x) / (2.0f * sigma * sigma));
    sum += wts[i];
  }
  for (int i = 0; i < k; i++) wts[i] /= sum;
  int r = k / 2;
  while (r > 0 && wts[k / 2 + r] == 0.0f && wts[k / 2 - r] == 0.0f) r--;
  return r;
}

static void blur_plane(float *img, float *tmp, int h, int w, const float *kx, int rx, int cx,
                       const float *ky, int ry, int cy) {
  for (int y = 0; y < h; y++) {
    const float *row = img + (size_t)y * w;
    for (int x = 0; x < w; x++) {
      float acc = 0.0f;
      for (int d = -rx; d <= rx; d++) acc += kx[cx + d] * row[reflect(x + d, w)];
      tmp[(size_t)y * w + x] = acc;
    }
  }
  for (int y = 0; y < h; y++) {
    for (int x = 0; x < w; x++) {
      float acc = 0.0f;
      for (int d = -ry; d <= ry; d++) acc += ky[cy + d] * tmp[(size_t)reflect(y + d, h) * w + x];
      img[(size_t)y * w + x] = acc;
    }
  }
}

t2s_status t2s_blur_apply(float *img, int h, int w, const t2s_blur_params *p, t2s_error *err) {
  if (!p->apply) return T2S_OK;
  int kh = t2s_blur_kernel_size(h), kw = t2s_blur_kernel_size(w);
  float *ky = malloc(sizeof(float) * (size_t)(kh + kw)), *kx = ky + kh;
  float *tmp = malloc(sizeof(float) * (size_t)h * w);
  if (ky == NULL || tmp == NULL) {
    free(ky);
    free(tmp);
    return t2s_error_set(err, T2S_ERR_NOMEM, "gaussian blur: out of memory for a %dx%d image", w,
                         h);
  }
  int ry = t2s_blur_kernel1d(kh, p->sigma, ky), rx = t2s_blur_kernel1d(kw, p->sigma, kx);
  for (int c = 0; c < 3; c++)
    blur_plane(img + (size_t)c * h * w, tmp, h, w, kx, rx, kw / 2, ky, ry, kh / 2);
  free(ky);
  free(tmp);
  return T2S_OK;
}

t2s_status t2s_gaussian_blur(float *img, int n, int h, int w, const t2s_blur_cfg *cfg,
                             t2s_aug_key key, t2s_error *err) {
  for (int i = 0; i < n; i++) {
    t2s_aug_key k = key;
    k.sample = key.sample + i;
    t2s_blur_params p = t2s_blur_draw(cfg, k);
    t2s_status st = t2s_blur_apply(img + (size_t)i * 3 * h * w, h, w, &p, err);
    if (st != T2S_OK) return st;
  }
  return T2S_OK;
}

static void normalize_planes(float *img, int64_t n, int64_t plane, const float mean[3],
                             const float std[3]) {
  for (int64_t i = 0; i < n; i++)
    for (int c = 0; c < 3; c++) {
      float *p = img + (i * 3 + c) * plane;
      float m = mean[c], sd = std[c];
      for (int64_t k = 0; k < plane; k++) p[k] = (p[k] - m) / sd;
    }
}

void t2s_normalize(float *img, int n, int h, int w) {
  normalize_planes(img, n, (int64_t)h * w, t2s_norm_mean, t2s_norm_std);
}

/* ---- batch image steps of a context: the CPU slots (NCHW host images) and dispatch ---- */

static t2s_status images_layout_cpu(t2s_ctx *ctx, const float *src, float *dst, int64_t n,
                                    int64_t channels, int64_t hw, int to_nhwc) {
  for (int64_t b = 0; b < n; b++)
    for (int64_t c = 0; c < channels; c++)
      for (int64_t p = 0; p < hw; p++) {
        int64_t nchw = (b * channels + c) * hw + p, nhwc = (b * hw + p) * channels + c;
        if (to_nhwc) dst[nhwc] = src[nchw];
        else dst[nchw] = src[nhwc];
      }
  return T2S_OK;
}

static t2s_status images_normalize_cpu(t2s_ctx *ctx, float *x, int64_t n, int64_t hw,
                                       const float mean[3], const float std[3]) {
  normalize_planes(x, n, hw, mean, std);
  return T2S_OK;
}

static t2s_status images_jitter_cpu(t2s_ctx *ctx, float *x, int64_t n, int64_t hw,
                                    const t2s_jitter_params *params) {
  /* t2s_jitter_apply only needs the plane size h w */
  for (int64_t b = 0; b < n; b++) t2s_jitter_apply(x + b * 3 * hw, 1, (int)hw, &params[b]);
  return T2S_OK;
}

static t2s_status images_blur_cpu(t2s_ctx *ctx, float *x, int h, int w, const float *ky, int kh,
                                  int ry, const float *kx, int kw, int rx) {
  float *tmp = t2s_scratch(ctx, sizeof(float) * (size_t)h * w);
  if (tmp == NULL) return ctx->err.status;
  for (int c = 0; c < 3; c++)
    blur_plane(x + (size_t)c * h * w, tmp, h, w, kx, rx, kw / 2, ky, ry, kh / 2);
  return T2S_OK;
}

static t2s_images_layout_fn *const layout_slots[T2S_DEV_COUNT] = {
    [T2S_DEV_CPU] = images_layout_cpu, [T2S_DEV_CUDA] = T2S_CUDA_SLOT(t2s_images_layout_cuda)};
static t2s_images_normalize_fn *const normalize_slots[T2S_DEV_COUNT] = {
    [T2S_DEV_CPU] = images_normalize_cpu,
    [T2S_DEV_CUDA] = T2S_CUDA_SLOT(t2s_images_normalize_cuda)};
static t2s_images_jitter_fn *const jitter_slots[T2S_DEV_COUNT] = {
    [T2S_DEV_CPU] = images_jitter_cpu, [T2S_DEV_CUDA] = T2S_CUDA_SLOT(t2s_images_jitter_cuda)};
static t2s_images_blur_fn *const blur_slots[T2S_DEV_COUNT] = {
    [T2S_DEV_CPU] = images_blur_cpu, [T2S_DEV_CUDA] = T2S_CUDA_SLOT(t2s_images_blur_cuda)};

t2s_status t2s_images_layout(t2s_ctx *ctx, const float *src, float *dst, int64_t n,
                             int64_t channels, int64_t hw, int to_nhwc) {
  return T2S_DISPATCH(layout_slots, ctx->device, &ctx->err, "images_layout", ctx, src, dst, n,
                      channels, hw, to_nhwc);
}

t2s_status t2s_images_normalize(t2s_ctx *ctx, float *x, int64_t n, int64_t hw,
                                const float mean[3], const float std[3]) {
  return T2S_DISPATCH(normalize_slots, ctx->device, &ctx->err, "images_normalize", ctx, x, n, hw,
                      mean, std);
}

t2s_status t2s_images_jitter(t2s_ctx *ctx, float *x, int64_t n, int64_t hw,
                             const t2s_jitter_params *params) {
  return T2S_DISPATCH(jitter_slots, ctx->device, &ctx->err, "images_jitter", ctx, x, n, hw, params);
}

t2s_status t2s_images_blur(t2s_ctx *ctx, float *x, int h, int w, const float *ky_host, int kh,
                           int ry, const float *kx_host, int kw, int rx) {
  return T2S_DISPATCH(blur_slots, ctx->device, &ctx->err, "images_blur", ctx, x, h, w, ky_host, kh,
                      ry, kx_host, kw, rx);
}
