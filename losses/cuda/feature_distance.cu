/* The ImageNet feature distance on CUDA (maths in losses/feature_distance.h).
 *
 * Forward: one warp per pixel, ||f_i - g_i|| over its C contiguous channels (NHWC)
 * in double; then one block folds the distances and the counted pixels with a fixed
 * geometry (thread t takes pixels t, t + 256, ..., then a shared-memory tree), so the
 * sum is the same on every run. The count crosses to the host for the cross-rank
 * reduction and the normaliser. Backward: one thread per element. */
#include <math.h>
#include <string.h>

extern "C" {
#include "losses/losses_cuda.h"
}
#include "core/cuda/kernels.cuh"

using namespace t2s_cuda;

namespace {

struct things_mask {
  uint8_t on[256];
};

__global__ void fd_dist_kernel(const float *f, const float *g, const uint8_t *labels,
                               things_mask things, int64_t pixels, int64_t channels,
                               double *dist) {
  int lane = threadIdx.x & 31;
  for (int64_t i = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5; i < pixels;
       i += ((int64_t)gridDim.x * blockDim.x) >> 5) {
    if (!things.on[labels[i]]) {
      if (lane == 0) dist[i] = -1.0;  /* not counted */
      continue;
    }
    double s = 0.0;
    for (int64_t c = lane; c < channels; c += 32) {
      double d = (double)f[i * channels + c] - g[i * channels + c];
      s += d * d;
    }
    s = warp_sum(s);
    if (lane == 0) dist[i] = sqrt(s);
  }
}

__global__ void fd_sum_kernel(int64_t pixels, const double *dist, double *out) {
  __shared__ double sum[256], count[256];
  double s = 0.0, c = 0.0;
  for (int64_t i = threadIdx.x; i < pixels; i += 256)
    if (dist[i] >= 0.0) s += dist[i], c += 1.0;
  sum[threadIdx.x] = s;
  count[threadIdx.x] = c;
  for (int stride = 128; stride > 0; stride >>= 1) {
    __syncthreads();
    if ((int)threadIdx.x < stride) {
      sum[threadIdx.x] += sum[threadIdx.x + stride];
      count[threadIdx.x] += count[threadIdx.x + stride];
    }
  }
  if (threadIdx.x == 0) out[0] = sum[0], out[1] = count[0];
}

struct fd_grad {
  const float *f, *g; const double *dist; int64_t channels; const float *dloss; double scale;
  float *df; bool acc;
  __device__ void operator()(int64_t e) const {
    double d = dist[e / channels];
    double k = d > 0.0 ? (double)dloss[0] * scale / d : 0.0;
    put(df, e, (float)(k * ((double)f[e] - g[e])), acc);
  }
};

}  // namespace

extern "C" t2s_status t2s_feature_distance_cuda_sums(t2s_ctx *ctx, const t2s_node *node,
                                                     const float *f, const float *g,
                                                     const uint8_t *labels, const uint8_t *things,
                                                     int64_t pixels, int64_t channels,
                                                     double *dist, double sums_host[2]) {
  cudaStream_t stream = t2s_cuda_be(ctx)->stream;
  things_mask mask;
  memcpy(mask.on, things, sizeof mask.on);
  double *sums = scratch_doubles(ctx, 2);
  if (sums == NULL) return ctx->err.status;
  if (pixels > 0) {
    int64_t blocks = (pixels + 7) / 8;
    if (blocks > 65535 * 8) blocks = 65535 * 8;
    fd_dist_kernel<<<(unsigned)blocks, 256, 0, stream>>>(f, g, labels, mask, pixels, channels,
                                                         dist);
    T2S_CU_LAUNCHED(ctx, node, "fd_dist_kernel");
  }
  fd_sum_kernel<<<1, 256, 0, stream>>>(pixels, dist, sums);
  T2S_CU_LAUNCHED(ctx, node, "fd_sum_kernel");
  T2S_CU(ctx, node, cudaMemcpyAsync(sums_host, sums, 2 * sizeof(double), cudaMemcpyDeviceToHost,
                                    stream));
  T2S_CU(ctx, node, cudaStreamSynchronize(stream));
  return T2S_OK;
}

extern "C" t2s_status t2s_feature_distance_cuda_backward(t2s_ctx *ctx, const t2s_node *node,
                                                         const float *f, const float *g,
                                                         const double *dist, int64_t pixels,
                                                         int64_t channels, const float *dloss,
                                                         double scale, float *df,
                                                         int accumulate) {
  return launch_each(ctx, node, pixels * channels,
                     fd_grad{f, g, dist, channels, dloss, scale, df, accumulate != 0});
}
