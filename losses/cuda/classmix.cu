/* The CUDA slots of ClassMix (maths in losses/classmix.h; the CPU slots are in
 * losses/classmix.c). The classes are drawn on the host from a copy of the labels
 * (the same draws as the CPU); the mask is a table lookup and the mix a select on the
 * device, one thread per pixel or element. */
#include <stdlib.h>
#include <string.h>

#include "core/cuda/kernels.cuh"
extern "C" {
#include "losses/classmix.h"
}

using namespace t2s_cuda;

namespace {

struct mask_f {
  const uint8_t *labels, *take; int64_t hw; uint8_t *mask;
  __device__ void operator()(int64_t i) const { mask[i] = take[(i / hw) * 256 + labels[i]]; }
};

struct mix_image_f {
  const uint8_t *mask; const float *xs, *xt; float *out; int64_t channels, hw; bool nhwc;
  __device__ void operator()(int64_t e) const {
    int64_t p = nhwc ? e / channels : (e / (channels * hw)) * hw + e % hw;
    out[e] = mask[p] ? xs[e] : xt[e];
  }
};

struct mix_maps_f {
  const uint8_t *mask, *ys, *yhat; const float *plw; uint8_t *ymix; float *wmix;
  __device__ void operator()(int64_t i) const {
    ymix[i] = mask[i] ? ys[i] : yhat[i];
    wmix[i] = mask[i] ? 1.0f : plw[i];
  }
};

}  // namespace

/* The class choice is host code: it reads host_labels (the loader's copy) when given,
 * else a read-back of the labels. */
t2s_status t2s_classmix_masks_cuda(t2s_ctx *ctx, const t2s_tensor *src_labels,
                                   const uint8_t *host_labels, int ignore_index, uint64_t seed,
                                   int64_t iter, int64_t global_offset, t2s_tensor *mask) {
  int64_t n = src_labels->shape[0], hw = src_labels->shape[1] * src_labels->shape[2];
  uint8_t *y = (uint8_t *)malloc((size_t)(n * hw + n * 256) + 1);
  if (y == NULL)
    return t2s_error_set(&ctx->err, T2S_ERR_NOMEM, "classmix_masks: no host memory for a copy "
                         "of the %lld labels", (long long)(n * hw));
  uint8_t *take = y + n * hw;
  memset(take, 0, (size_t)(n * 256));
  uint8_t *take_dev = (uint8_t *)t2s_scratch(ctx, (size_t)(n * 256));
  t2s_status st = take_dev == NULL ? ctx->err.status
                  : host_labels != NULL ? T2S_OK
                                        : t2s_device_copy(T2S_DEV_CPU, y, src_labels->device,
                                                          src_labels->data, (size_t)(n * hw), &ctx->err);
  const uint8_t *labels = host_labels != NULL ? host_labels : y;
  for (int64_t b = 0; b < n && st == T2S_OK; b++) {
    uint8_t chosen[256];
    int m = t2s_classmix_choose(labels + b * hw, hw, ignore_index, seed, iter, global_offset + b, chosen);
    for (int j = 0; j < m; j++) take[b * 256 + chosen[j]] = 1;
  }
  if (st == T2S_OK)
    st = t2s_device_copy(src_labels->device, take_dev, T2S_DEV_CPU, take, (size_t)(n * 256),
                         &ctx->err);
  free(y);
  if (st != T2S_OK) return st;
  return launch_each(ctx, NULL, n * hw, mask_f{t2s_u8(src_labels), take_dev, hw, t2s_u8(mask)});
}

t2s_status t2s_classmix_apply_cuda(t2s_ctx *ctx, const t2s_tensor *mask, const t2s_tensor *x_s,
                                   const t2s_tensor *x_t, const t2s_tensor *y_s,
                                   const t2s_tensor *yhat, const t2s_tensor *pl_weight,
                                   t2s_tensor *x_mix, t2s_tensor *y_mix, t2s_tensor *w_mix) {
  int64_t n = x_s->shape[0], channels = x_s->shape[1], hw = x_s->shape[2] * x_s->shape[3];
  bool nhwc = x_s->layout == T2S_LAYOUT_NHWC;
  t2s_status st = launch_each(ctx, NULL, n * channels * hw,
                              mix_image_f{t2s_u8(mask), t2s_f32(x_s), t2s_f32(x_t), t2s_f32(x_mix),
                                          channels, hw, nhwc});
  if (st != T2S_OK) return st;
  return launch_each(ctx, NULL, n * hw,
                     mix_maps_f{t2s_u8(mask), t2s_u8(y_s), t2s_u8(yhat), t2s_f32(pl_weight),
                                t2s_u8(y_mix), t2s_f32(w_mix)});
}
