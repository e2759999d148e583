/* Per-pixel maps of the UDA step on CUDA: pseudo-labels from the teacher's logits and
 * the ClassMix mask and mix (maths in losses/pseudo_label.h and losses/classmix.h; the
 * host decides what needs a random draw or a cross-rank sum, see losses/losses_cuda.h).
 * One thread per pixel or element. The confident-pixel count is a sum of 0/1 values in
 * double, exact in any order, so it needs no fixed reduction geometry. */
#include <math.h>

extern "C" {
#include "losses/losses_cuda.h"
}
#include "core/cuda/kernels.cuh"

using namespace t2s_cuda;

namespace {

/* The CPU's arithmetic: first maximum, the sum of exp(z_c - z_max) in double. */
struct pseudo_label_f {
  const float *z; int64_t classes; float threshold; uint8_t *yhat; float *max_prob;
  double *confident;
  __device__ void operator()(int64_t i) const {
    const float *zi = z + i * classes;
    int64_t best = 0;
    for (int64_t c = 1; c < classes; c++)
      if (zi[c] > zi[best]) best = c;
    double s = 0.0;
    for (int64_t c = 0; c < classes; c++) s += exp((double)zi[c] - zi[best]);
    double pmax = 1.0 / s;
    yhat[i] = (uint8_t)best;
    if (max_prob) max_prob[i] = (float)pmax;
    confident[i] = pmax >= threshold ? 1.0 : 0.0;
  }
};

__global__ void count_kernel(int64_t n, const double *flags, double *out) {
  __shared__ double s[256];
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += 256) acc += flags[i];
  s[threadIdx.x] = acc;
  for (int stride = 128; stride > 0; stride >>= 1) {
    __syncthreads();
    if ((int)threadIdx.x < stride) s[threadIdx.x] += s[threadIdx.x + stride];
  }
  if (threadIdx.x == 0) out[0] = s[0];
}

struct weight_rows_f {
  float *w; int64_t h, wd, top, bottom; float q;
  __device__ void operator()(int64_t i) const {
    int64_t r = (i / wd) % h;
    w[i] = r < top || r >= h - bottom ? 0.0f : q;
  }
};

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

extern "C" t2s_status t2s_pseudo_labels_cuda(t2s_ctx *ctx, const float *logits, int64_t pixels,
                                             int64_t classes, float threshold, uint8_t *yhat,
                                             float *max_prob, double *confident_host) {
  cudaStream_t stream = t2s_cuda_be(ctx)->stream;
  double *flags = scratch_doubles(ctx, pixels + 1);
  if (flags == NULL) return ctx->err.status;
  double *count = flags + pixels;
  t2s_status st = launch_each(ctx, NULL, pixels,
                              pseudo_label_f{logits, classes, threshold, yhat, max_prob, flags});
  if (st != T2S_OK) return st;
  count_kernel<<<1, 256, 0, stream>>>(pixels, flags, count);
  T2S_CU_LAUNCHED(ctx, NULL, "count_kernel (pseudo_labels)");
  T2S_CU(ctx, NULL, cudaMemcpyAsync(confident_host, count, sizeof(double),
                                    cudaMemcpyDeviceToHost, stream));
  T2S_CU(ctx, NULL, cudaStreamSynchronize(stream));
  return T2S_OK;
}

extern "C" t2s_status t2s_pseudo_weights_cuda(t2s_ctx *ctx, float *weight, int64_t n, int64_t h,
                                              int64_t w, int64_t top, int64_t bottom, float q) {
  return launch_each(ctx, NULL, n * h * w, weight_rows_f{weight, h, w, top, bottom, q});
}

extern "C" t2s_status t2s_classmix_mask_cuda(t2s_ctx *ctx, const uint8_t *labels,
                                             const uint8_t *take, int64_t n, int64_t hw,
                                             uint8_t *mask) {
  return launch_each(ctx, NULL, n * hw, mask_f{labels, take, hw, mask});
}

extern "C" t2s_status t2s_classmix_apply_cuda(t2s_ctx *ctx, const uint8_t *mask, const float *x_s,
                                              const float *x_t, float *x_mix, int64_t n,
                                              int64_t channels, int64_t hw, int nhwc,
                                              const uint8_t *y_s, const uint8_t *yhat,
                                              const float *pl_weight, uint8_t *y_mix,
                                              float *w_mix) {
  t2s_status st = launch_each(ctx, NULL, n * channels * hw,
                              mix_image_f{mask, x_s, x_t, x_mix, channels, hw, nhwc != 0});
  if (st != T2S_OK) return st;
  return launch_each(ctx, NULL, n * hw, mix_maps_f{mask, y_s, yhat, pl_weight, y_mix, w_mix});
}
