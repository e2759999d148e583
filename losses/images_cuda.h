/* Device halves of the image steps of the UDA iteration (plain C interface): the
 * batch layout change at upload (NCHW host order -> NHWC, the CUDA backend's
 * activation layout) and the photometric augmentation of data/augment.h (colour
 * jitter, Gaussian blur, normalisation) on NHWC f32 images with 3 channels.
 *
 * The random draws stay on the host (t2s_jitter_draw, t2s_blur_draw with the same
 * keys as the CPU path); only the per-pixel arithmetic runs here, written with
 * round-to-nearest intrinsics in the CPU reference's order of operations (the CPU
 * build uses -ffp-contract=off), so a pixel gets the same float as on the CPU. The
 * one reduction (the grey mean of contrast) is a fixed-geometry sum in double.
 *
 * The kernels live in losses/cuda/images.cu because losses/ is the library whose
 * build compiles CUDA files next to the data-side code of the method; a build
 * without CUDA links losses/images_cuda_absent.c, whose launchers answer
 * T2S_ERR_UNSUPPORTED (unreachable there: no CUDA context can be created). Every
 * pointer is device memory unless the comment says host. */
#pragma once
#include <stdint.h>

#include "core/engine.h"
#include "data/augment.h"

/* dst (N, hw, C) = src (N, C, hw) when to_nhwc, else the inverse. */
t2s_status t2s_images_layout_cuda(t2s_ctx *ctx, const float *src, float *dst, int64_t n,
                                  int64_t channels, int64_t hw, int to_nhwc);
/* x (N, hw, 3) in place: (x - mean_c) / std_c (host arrays of 3). */
t2s_status t2s_images_normalize_cuda(t2s_ctx *ctx, float *x, int64_t n, int64_t hw,
                                     const float mean[3], const float std[3]);
/* x (N, hw, 3) in [0, 255] in place: sample i gets params[i] (host, N entries), as
 * t2s_jitter_apply. */
t2s_status t2s_images_jitter_cuda(t2s_ctx *ctx, float *x, int64_t n, int64_t hw,
                                  const t2s_jitter_params *params);
/* One image x (h, w, 3) in place: the separable blur of t2s_blur_apply with the host
 * kernels ky (taps kh, used radius ry) and kx (taps kw, radius rx). */
t2s_status t2s_images_blur_cuda(t2s_ctx *ctx, float *x, int h, int w, const float *ky_host,
                                int kh, int ry, const float *kx_host, int kw, int rx);
