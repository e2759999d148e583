/* ClassMix (docs/method.md step 5), as DACS/DAFormer do it.
 *
 * For each source image: classes = the sorted unique labels without ignore,
 * n = their number; ceil(n / 2) = (n + n % 2) / 2 of them are taken by a random
 * permutation (DACS: classes[torch.randperm(n)[:(n + n % 2) / 2]]); M = 1 on the
 * pixels of those classes. Then
 *   x_mix = M x_s + (1 - M) x_t,  y_mix = M y_s + (1 - M) yhat,
 *   w_mix = 1 where M = 1, the pseudo-label weight elsewhere.
 * The permutation is a Fisher-Yates shuffle keyed by (seed, iter, global image,
 * purpose), so the chosen classes depend only on the image's global index.
 * Colour jitter and blur follow in data/augment.h. */
#pragma once
#include <stdint.h>

#include "core/engine.h"

/* The classes chosen for one image: writes them (ascending) to chosen[] (room for
 * 256) and returns their number. labels: the image's hw source labels. */
int t2s_classmix_choose(const uint8_t *labels, int64_t hw, int ignore_index, uint64_t seed,
                        int64_t iter, int64_t global_index, uint8_t *chosen);

/* src_labels (N, H, W) u8 -> mask (N, H, W) u8 (caller's tensor) with 1 on the
 * chosen classes' pixels. */
t2s_status t2s_classmix_masks(t2s_ctx *ctx, const t2s_tensor *src_labels, int ignore_index,
                              uint64_t seed, int64_t iter, int64_t global_offset, t2s_tensor *mask);
/* The same, with src_labels_host a host (N, H, W) u8 copy of device labels (the loader's
 * batch; NULL: none): the class choice reads it instead of reading the labels back. */
t2s_status t2s_classmix_masks_hosted(t2s_ctx *ctx, const t2s_tensor *src_labels,
                                     const t2s_tensor *src_labels_host, int ignore_index, uint64_t seed,
                                     int64_t iter, int64_t global_offset, t2s_tensor *mask);

/* Mixes with mask (N, H, W) u8: x_s, x_t (N, 3, H, W) f32 -> x_mix; y_s, yhat (N, H, W) u8 ->
 * y_mix; pl_weight (N, H, W) f32 -> w_mix. All outputs are the caller's tensors. */
t2s_status t2s_classmix_apply(t2s_ctx *ctx, const t2s_tensor *mask, const t2s_tensor *x_s,
                              const t2s_tensor *x_t, const t2s_tensor *y_s, const t2s_tensor *yhat,
                              const t2s_tensor *pl_weight, t2s_tensor *x_mix, t2s_tensor *y_mix,
                              t2s_tensor *w_mix);

/* The CUDA slots of the two calls above (losses/cuda/classmix.cu), picked by the device
 * of the tensors; the arguments are already checked. */
t2s_status t2s_classmix_masks_cuda(t2s_ctx *ctx, const t2s_tensor *src_labels,
                                   const uint8_t *host_labels, int ignore_index, uint64_t seed,
                                   int64_t iter, int64_t global_offset, t2s_tensor *mask);
t2s_status t2s_classmix_apply_cuda(t2s_ctx *ctx, const t2s_tensor *mask, const t2s_tensor *x_s,
                                   const t2s_tensor *x_t, const t2s_tensor *y_s,
                                   const t2s_tensor *yhat, const t2s_tensor *pl_weight,
                                   t2s_tensor *x_mix, t2s_tensor *y_mix, t2s_tensor *w_mix);
