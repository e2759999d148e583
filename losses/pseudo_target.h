/* Pseudo-target images (docs/method.md step 2): a source crop x_s restyled like a
 * target image, pixel-aligned so that it keeps the source labels.
 *
 *   fourier  FDA (Yang & Soatto 2020), per channel: the amplitude spectrum of x_s
 *            inside the centred low-frequency square |k_y| < b, |k_x| < b,
 *            b = floor(beta min(H, W)), is replaced by the paired target image's, the
 *            phase is kept, the inverse is clipped to [0, 255]. The square is the
 *            FDA reference's 2b-wide square (frequencies -b..b-1) without its unpaired
 *            -b row and column: a set symmetric about DC keeps the spectrum Hermitian,
 *            so the inverse is exactly real, and beta = 0 (b = 0) is the identity.
 *   color    per channel, mean and standard deviation of x_s matched to the target's,
 *            in CIE Lab (D65, sRGB) or RGB; clipped to [0, 255].
 *   none     x_st = x_s.
 *
 * Pairing without moving images between ranks: each rank computes a small "style"
 * of each of its target images (the low-frequency amplitudes, 3 (2b - 1) b floats,
 * or the 6 colour moments), the styles of the global batch are gathered through
 * t2s_batch_stats_reduce (each rank fills its own slots, the sum is the gather), and
 * source image g (global index) takes style t2s_pseudo_target_pair(seed, iter, g, n).
 * The result depends only on the global batch, never on the split over ranks.
 *
 * Images are f32 (N, 3, H, W) RGB in [0, 255]. style and apply run where the images
 * are, through a slot table (core/device.h): host images on the CPU slot (FFTW,
 * colour moments), device images of a CUDA context on the CUDA slot
 * (losses/cuda/pseudo_target.cu: cuFFT, in either layout, the images never leave the
 * device; methods fourier and none). Styles are host floats on both: they are small
 * and the gather reduces them on the host. One t2s_pseudo_target object per image size
 * holds the FFTW plans (FFTW_ESTIMATE: the same algorithm on every rank and run) and,
 * once the CUDA slot has run, its cuFFT plans. Create and destroy it on one thread
 * (FFTW's planner is not thread-safe); an object is used by one thread at a time. */
#pragma once
#include <stdint.h>

#include "core/engine.h"

/* FOURIER, COLOR and NONE are the methods of a t2s_pseudo_target object; the source
 * styles of domain generalisation (losses/pseudo_target_dg.h) build on them and are
 * listed here so that one config key names every pseudo-target. */
typedef enum t2s_pt_method {
  T2S_PT_FOURIER = 0, T2S_PT_COLOR, T2S_PT_NONE,
  T2S_PT_FOURIER_SOURCE, T2S_PT_COLOR_RANDOM, T2S_PT_FOURIER_SOURCE_COLOR_RANDOM
} t2s_pt_method;
typedef enum t2s_pt_space { T2S_PT_LAB = 0, T2S_PT_RGB } t2s_pt_space;

typedef struct t2s_pseudo_target_cfg {
  t2s_pt_method method;      /* fourier */
  float beta;                /* 0.01, in [0, 0.5) */
  t2s_pt_space color_space;  /* lab (method = color) */
} t2s_pseudo_target_cfg;

t2s_pseudo_target_cfg t2s_pseudo_target_cfg_defaults(void);
const char *t2s_pseudo_target_cfg_check(const t2s_pseudo_target_cfg *cfg);

typedef struct t2s_pseudo_target t2s_pseudo_target;

t2s_status t2s_pseudo_target_create(t2s_pseudo_target **out, const t2s_pseudo_target_cfg *cfg,
                                    int height, int width, t2s_error *err);
void t2s_pseudo_target_destroy(t2s_pseudo_target *pt);

/* b = floor(beta min(H, W)), the half-width of the square. */
int t2s_pseudo_target_half_width(float beta, int height, int width);
/* Floats in one image's style (0 for none). */
int64_t t2s_pseudo_target_style_size(const t2s_pseudo_target *pt);
/* The style index in [0, n_styles) paired with source image global_index. */
int64_t t2s_pseudo_target_pair(uint64_t seed, int64_t iter, int64_t global_index,
                               int64_t n_styles);

/* x_t (N, 3, H, W) -> styles[N * style_size]. */
t2s_status t2s_pseudo_target_style(t2s_ctx *ctx, t2s_pseudo_target *pt, const t2s_tensor *x_t,
                                   float *styles);
/* The styles of the global target batch: local (n_local styles, the rank's images
 * starting at global index offset) -> global (n_global styles), equal on all ranks. */
t2s_status t2s_pseudo_target_gather_styles(t2s_ctx *ctx, const t2s_pseudo_target *pt,
                                           const float *local, int64_t n_local, int64_t offset,
                                           int64_t n_global, float *global);
/* x_s (N, 3, H, W) -> x_st (caller's tensor, same shape; may not alias x_s). */
t2s_status t2s_pseudo_target_apply(t2s_ctx *ctx, t2s_pseudo_target *pt, const t2s_tensor *x_s,
                                   const float *styles, int64_t n_styles, uint64_t seed,
                                   int64_t iter, int64_t global_offset, t2s_tensor *x_st);

/* ---- the CUDA slots (losses/cuda/pseudo_target.cu) ------------------------------ */
/* What the slots need of an object: its configuration and size, and its cache of cuFFT
 * plans (created by the CUDA slot, released by t2s_pseudo_target_destroy). */
typedef struct t2s_pt_cuda t2s_pt_cuda;
typedef struct t2s_pt_geometry {
  t2s_pseudo_target_cfg cfg;
  int H, W, b;
  int64_t style_size;
  t2s_pt_cuda **cuda;
} t2s_pt_geometry;
t2s_pt_geometry t2s_pseudo_target_geometry(t2s_pseudo_target *pt);

/* The arguments are checked (shape, size, n_styles); the images are device tensors.
 * The slot itself refuses a context that is not CUDA and the colour method. */
t2s_status t2s_pseudo_target_style_cuda(t2s_ctx *ctx, t2s_pseudo_target *pt,
                                        const t2s_tensor *x_t, float *styles);
t2s_status t2s_pseudo_target_apply_cuda(t2s_ctx *ctx, t2s_pseudo_target *pt,
                                        const t2s_tensor *x_s, const float *styles,
                                        int64_t n_styles, uint64_t seed, int64_t iter,
                                        int64_t global_offset, t2s_tensor *x_st);
void t2s_pseudo_target_cuda_release(t2s_pt_cuda *plans);
