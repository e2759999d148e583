/* The CUDA slots of the pseudo-labels (maths in losses/pseudo_label.h; the CPU slots
 * are in losses/pseudo_label.c). Logits are 4-d activations stored NHWC, so pixel
 * b hw + i is the same index as on the CPU. One thread per pixel; the confident-pixel
 * count is a sum of 0/1 values in double, exact in any order, so it needs no fixed
 * reduction geometry. Both counts are reduced over ranks on the host, as on the CPU. */
#include <math.h>

#include "core/cuda/kernels.cuh"
extern "C" {
#include "losses/batch_stats.h"
#include "losses/pseudo_label.h"
}

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

/* yhat[i] = argmax_c (first maximum), max_prob[i] (may be NULL) = 1 / sum_c exp(z_c -
 * z_max), *confident_host = #{i: max_prob_i >= threshold} (host, after a synchronising
 * copy; confident_host NULL: not counted, no copy), over the `pixels` = N H W pixels. */
t2s_status label_pixels(t2s_ctx *ctx, const float *logits, int64_t pixels, int64_t classes,
                        float threshold, uint8_t *yhat, float *max_prob, double *confident_host) {
  cudaStream_t stream = t2s_cuda_be(ctx)->stream;
  double *flags = scratch_doubles(ctx, pixels + 1);
  if (flags == NULL) return ctx->err.status;
  double *count = flags + pixels;
  t2s_status st = launch_each(ctx, NULL, pixels,
                              pseudo_label_f{logits, classes, threshold, yhat, max_prob, flags});
  if (st != T2S_OK || confident_host == NULL) return st;
  count_kernel<<<1, 256, 0, stream>>>(pixels, flags, count);
  T2S_CU_LAUNCHED(ctx, NULL, "count_kernel (pseudo_labels)");
  t2s_host_sync_note(T2S_SITE, 1);
  T2S_CU(ctx, NULL, cudaMemcpyAsync(confident_host, count, sizeof(double),
                                    cudaMemcpyDeviceToHost, stream));
  T2S_CU(ctx, NULL, cudaStreamSynchronize(stream));
  return T2S_OK;
}

}  // namespace

t2s_status t2s_pseudo_labels_cuda(t2s_ctx *ctx, const t2s_pseudo_label_cfg *cfg,
                                  const t2s_tensor *logits, t2s_tensor *yhat,
                                  t2s_tensor *pixel_weight, t2s_tensor *max_prob, double *q_out) {
  int64_t n = logits->shape[0], C = logits->shape[1], H = logits->shape[2], W = logits->shape[3];
  double counts[2] = {0.0, (double)(n * H * W)};
  t2s_status st = label_pixels(ctx, t2s_f32(logits), n * H * W, C, cfg->threshold, t2s_u8(yhat),
                               max_prob ? t2s_f32(max_prob) : NULL, &counts[0]);
  if (st != T2S_OK || (st = t2s_batch_stats_reduce(ctx, counts, 2)) != T2S_OK) return st;
  double q = counts[1] > 0.0 ? counts[0] / counts[1] : 0.0;
  int64_t top, bottom;
  t2s_pseudo_label_rows(cfg, H, &top, &bottom);
  st = launch_each(ctx, NULL, n * H * W, weight_rows_f{t2s_f32(pixel_weight), H, W, top, bottom,
                                                       (float)q});
  if (st == T2S_OK && q_out) *q_out = q;
  return st;
}

t2s_status t2s_class_map_cuda(t2s_ctx *ctx, const t2s_tensor *logits, uint8_t *pred) {
  int64_t n = logits->shape[0], C = logits->shape[1], hw = logits->shape[2] * logits->shape[3];
  uint8_t *pred_dev = (uint8_t *)t2s_scratch(ctx, (size_t)(n * hw) + 1);
  if (pred_dev == NULL) return ctx->err.status;
  /* only the argmax map is wanted: no confidence count (and no read-back of it) */
  t2s_status st = label_pixels(ctx, t2s_f32(logits), n * hw, C, 2.0f, pred_dev, NULL, NULL);
  if (st == T2S_OK)
    st = t2s_device_copy(T2S_DEV_CPU, pred, logits->device, pred_dev, (size_t)(n * hw), &ctx->err);
  return st;
}
