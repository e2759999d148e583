/* Source-style pseudo-targets for domain generalisation (docs/method.md "Domain
 * generalisation"): without target images, each source crop x_s is restyled with a
 * random style drawn from the source batch itself. The result is pixel-aligned with
 * x_s, so it keeps the source label.
 *
 *   fourier_source  the low-frequency amplitudes (losses/pseudo_target.h, fourier) of
 *                   ANOTHER image of the global source batch, each multiplied by
 *                   (1 + eps), eps ~ U(-a, a) per frequency and channel
 *                   (a = amplitude_jitter); the phase of x_s is kept.
 *   color_random    per channel of the colour space, the mean and standard deviation of
 *                   x_s set to mu' = mu_B + m sd_B u1 and sd' = sd_B (1 + s u2),
 *                   u1, u2 ~ U(-1, 1), where mu_B and sd_B are the global batch's
 *                   averages of the images' means and standard deviations
 *                   (m = color_mean_jitter, s = color_std_jitter).
 *
 * Every draw is keyed by (seed, iteration, global sample index): the styles of the
 * global batch are gathered (t2s_pseudo_target_gather_styles), then each rank computes
 * the styles of its own images, so the result does not depend on the split over ranks. */
#pragma once
#include <stdint.h>

#include "losses/pseudo_target.h"

/* The other image of a global batch of n whose style image g takes: uniform over the
 * n - 1 others (g itself when n = 1). */
int64_t t2s_pseudo_target_other(uint64_t seed, int64_t iter, int64_t global_index, int64_t n);

/* fourier_source: out[k] (style_size floats) for local image k (global index offset + k)
 * = global[other(offset + k)] x (1 + eps). pt is a fourier pseudo target. */
t2s_status t2s_pseudo_target_source_styles(const t2s_pseudo_target *pt, const float *global,
                                           int64_t n_global, int64_t n_local, int64_t offset,
                                           float amplitude_jitter, uint64_t seed, int64_t iter,
                                           float *out, t2s_error *err);

/* color_random: out[6 k .. 6 k + 5] (mean[3], std[3]) for local image k from the colour
 * moments of the global batch (global, 6 floats per image; pt is a color pseudo target). */
t2s_status t2s_pseudo_target_random_colors(const t2s_pseudo_target *pt, const float *global,
                                           int64_t n_global, int64_t n_local, int64_t offset,
                                           float mean_jitter, float std_jitter, uint64_t seed,
                                           int64_t iter, float *out, t2s_error *err);

/* x_st[k] = x_s[k] restyled with styles[k] (one style per image, no pairing); images
 * where pt's method has a slot (t2s_pseudo_target_apply, image by image). */
t2s_status t2s_pseudo_target_apply_each(t2s_ctx *ctx, t2s_pseudo_target *pt, const t2s_tensor *x_s,
                                        const float *styles, t2s_tensor *x_st);
