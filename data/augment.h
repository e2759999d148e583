/* Per-sample augmentation (mmseg / DAFormer semantics), every random choice keyed
 * by (seed, stream, iteration, global sample index, purpose) — core/rng.h — so a
 * sample gets the same crop, flip, jitter and blur on any rank count and any
 * thread count.
 *
 * Geometric (in the loader), in mmseg's pipeline order:
 *   optional random rescale (ratio ~ U(lo, hi), bilinear image / nearest label;
 *   off by default as in DAFormer, where the shard builder did the fixed resize)
 *   -> RandomCrop to crop_w x crop_h with cat_max_ratio (source 0.75)
 *   -> horizontal flip with flip_prob (0.5)
 *   -> Pad to the crop size when the image is smaller (label 255; image the mean
 *      colour, which is what mmseg's pad value 0 after Normalize is in raw values).
 * Output: image f32 CHW RGB in [0, 255] (not normalised), label u8 H x W.
 *
 * Photometric (called by the training step on f32 NCHW [0, 255] batches):
 *   colour jitter  (torchvision ColorJitter on x/255: brightness, contrast,
 *                   saturation, hue; random order as torchvision; probability p)
 *   Gaussian blur  (probability p, sigma ~ U(lo, hi), kernel size from the image
 *                   size as DACS: ceil(0.1 * side) made odd, reflect borders as kornia)
 *   normalisation  ((x - mean) / std per channel, MMSeg's ImageNet values). */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "core/engine.h"
#include "core/status.h"

/* Purposes of the random draws (data/sampler.c uses 1 and 2). */
enum {
  T2S_PURPOSE_CROP = 3,
  T2S_PURPOSE_FLIP = 4,
  T2S_PURPOSE_RESCALE = 5,
  T2S_PURPOSE_JITTER = 6,
  T2S_PURPOSE_BLUR = 7,
};

#define T2S_CROP_TRIES 10     /* mmseg RandomCrop: cat_max_ratio re-draws */
#define T2S_RCS_CROP_TRIES 10 /* DAFormer: re-draws until the crop shows the rare class */

/* Identifies one sample's random choices. */
typedef struct t2s_aug_key {
  uint64_t seed;
  uint32_t stream;      /* source / target / mixed: distinct streams of one run */
  int64_t iteration;
  int64_t sample;       /* global batch position (rank * samples_per_gpu + k) */
} t2s_aug_key;

typedef struct t2s_augment_cfg {
  int crop_w, crop_h;
  double cat_max_ratio;       /* >= 1: off; source 0.75 */
  int ignore_index;           /* 255 */
  double flip_prob;           /* 0.5 */
  int rescale;                /* 0: off (DAFormer); 1: ratio ~ U(ratio_lo, ratio_hi) */
  double ratio_lo, ratio_hi;
  /* With rare class sampling: redraw the geometry (up to T2S_RCS_CROP_TRIES times)
   * until the crop holds more than this many pixels of the drawn class (DAFormer's
   * rcs_min_crop_ratio x rcs_min_pixels = 0.5 x 3000); 0 = off. */
  int64_t rcs_min_crop_pixels;
} t2s_augment_cfg;

/* crop 512x512, cat_max_ratio 0.75, ignore 255, flip 0.5, no rescale, rcs 1500. */
t2s_augment_cfg t2s_augment_cfg_default(void);

/* Reused buffers of one thread (the rescaled image); zero-initialise, free once. */
typedef struct t2s_aug_scratch {
  uint8_t *rgb, *label;
  size_t rgb_cap, label_cap;
} t2s_aug_scratch;
void t2s_aug_scratch_free(t2s_aug_scratch *s);

/* The geometric choices for one sample (exposed for tests). */
typedef struct t2s_geometry {
  int src_w, src_h;     /* image size after the rescale */
  int x, y;             /* crop origin in the rescaled image */
  int w, h;             /* crop extent (< crop size where the image is smaller: padded) */
  int flip;
} t2s_geometry;

/* mmseg RandomCrop on a label map (w x h, may be NULL: no cat_max_ratio check):
 * draw a box; while fewer than 2 labelled classes or the largest covers >=
 * cat_max_ratio of the labelled pixels, redraw, at most T2S_CROP_TRIES checks
 * (after which the last draw stands). `attempt` separates DAFormer's re-draws. */
void t2s_crop_choose(const t2s_augment_cfg *cfg, t2s_aug_key key, int attempt,
                     const uint8_t *label, int w, int h, t2s_geometry *g);

/* Geometric augmentation of one image: rgb h x w x 3 (HWC u8), label h x w or NULL.
 * required_class: the class drawn by rare class sampling, or -1.
 * out_img: 3 x crop_h x crop_w f32; out_label: crop_h x crop_w (ignored when label
 * is NULL). g (may be NULL) receives the choice made. */
t2s_status t2s_augment_sample(const t2s_augment_cfg *cfg, t2s_aug_key key, const uint8_t *rgb,
                              const uint8_t *label, int w, int h, int required_class,
                              float *out_img, uint8_t *out_label, t2s_aug_scratch *scratch,
                              t2s_geometry *g, t2s_error *err);

/* ---- photometric, on f32 NCHW [0, 255] ---- */

typedef struct t2s_jitter_cfg {
  double brightness, contrast, saturation, hue; /* 0.2 each (DACS / DAFormer) */
  double prob;                                  /* 0.8 */
} t2s_jitter_cfg;
t2s_jitter_cfg t2s_jitter_cfg_default(void);

/* One sample's draw: torchvision ColorJitter.get_params (factors uniform in
 * [max(0, 1 - s), 1 + s], hue in [-h, h], a random order of the four). */
typedef struct t2s_jitter_params {
  int apply;
  int order[4];          /* 0 brightness, 1 contrast, 2 saturation, 3 hue */
  float brightness, contrast, saturation, hue;
} t2s_jitter_params;
t2s_jitter_params t2s_jitter_draw(const t2s_jitter_cfg *cfg, t2s_aug_key key);
/* Applies p to one CHW image in [0, 255] in place (nothing when !p->apply). */
void t2s_jitter_apply(float *img, int h, int w, const t2s_jitter_params *p);
/* Batch n x 3 x h x w; sample i is global sample key.sample + i. */
void t2s_color_jitter(float *img, int n, int h, int w, const t2s_jitter_cfg *cfg,
                      t2s_aug_key key);

typedef struct t2s_blur_cfg {
  double prob;                  /* 0.5 */
  double sigma_lo, sigma_hi;    /* 0.15, 1.15 */
} t2s_blur_cfg;
t2s_blur_cfg t2s_blur_cfg_default(void);
typedef struct t2s_blur_params {
  int apply;
  float sigma;
} t2s_blur_params;
t2s_blur_params t2s_blur_draw(const t2s_blur_cfg *cfg, t2s_aug_key key);
/* DACS: floor(ceil(0.1 * side) - 0.5 + ceil(0.1 * side) % 2), i.e. ceil(0.1 * side)
 * and one less when that is even. */
int t2s_blur_kernel_size(int side);
/* The k Gaussian taps (kornia get_gaussian_kernel1d in float, normalised to sum 1) into
 * wts; returns the radius that matters (taps that underflow to 0 are dropped, adding
 * them changes no sum). The CPU blur and the device blur share these taps. */
int t2s_blur_kernel1d(int k, float sigma, float *wts);
/* Separable Gaussian blur of one CHW image in place; scratch holds h*w floats.
 * Kernel taps x - k/2 (x = 0..k-1), weights exp(-x^2 / (2 sigma^2)) normalised in
 * float as kornia does; reflect borders (torch 'reflect': no edge repeat). */
t2s_status t2s_blur_apply(float *img, int h, int w, const t2s_blur_params *p, t2s_error *err);
t2s_status t2s_gaussian_blur(float *img, int n, int h, int w, const t2s_blur_cfg *cfg,
                             t2s_aug_key key, t2s_error *err);

/* In place, n x 3 x h x w: (x - mean_c) / std_c with mean (123.675, 116.28, 103.53)
 * and std (58.395, 57.12, 57.375). */
void t2s_normalize(float *img, int n, int h, int w);
extern const float t2s_norm_mean[3], t2s_norm_std[3];

/* ---- batch image steps of a context --------------------------------------------------- */
/* Images of the context's device in its layout: (N, 3, hw) NCHW on the CPU, (N, hw, 3)
 * NHWC on CUDA. The random draws stay with the caller (t2s_jitter_draw, t2s_blur_draw);
 * each call dispatches on ctx->device to its CPU slot (data/augment.c) or CUDA slot
 * (data/cuda/augment.cu), which compute the same floats. Every pointer is memory of the
 * context's device unless the comment says host. */
/* Each step's signature is one function type; the call (the dispatcher), its CPU slot and
 * its CUDA slot (data/cuda/augment.cu) are declared with it. */
/* dst (N, hw, C) = src (N, C, hw) when to_nhwc, else the inverse. */
typedef t2s_status t2s_images_layout_fn(t2s_ctx *ctx, const float *src, float *dst, int64_t n,
                                        int64_t channels, int64_t hw, int to_nhwc);
/* x in place: (x - mean_c) / std_c (host arrays of 3). */
typedef t2s_status t2s_images_normalize_fn(t2s_ctx *ctx, float *x, int64_t n, int64_t hw,
                                           const float mean[3], const float std[3]);
/* x in [0, 255] in place: sample i gets params[i] (host, N entries), as t2s_jitter_apply. */
typedef t2s_status t2s_images_jitter_fn(t2s_ctx *ctx, float *x, int64_t n, int64_t hw,
                                        const t2s_jitter_params *params);
/* One image x (h, w) of 3 channels in place: the separable blur of t2s_blur_apply with
 * the host taps ky (kh taps, used radius ry) and kx (kw taps, radius rx). */
typedef t2s_status t2s_images_blur_fn(t2s_ctx *ctx, float *x, int h, int w, const float *ky_host,
                                      int kh, int ry, const float *kx_host, int kw, int rx);
t2s_images_layout_fn t2s_images_layout, t2s_images_layout_cuda;
t2s_images_normalize_fn t2s_images_normalize, t2s_images_normalize_cuda;
t2s_images_jitter_fn t2s_images_jitter, t2s_images_jitter_cuda;
t2s_images_blur_fn t2s_images_blur, t2s_images_blur_cuda;
