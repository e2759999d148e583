/* The CUDA slots of the ImageNet feature distance (maths in losses/feature_distance.h).
 *
 * Forward: one warp per pixel, ||f_i - g_i|| over its C contiguous channels (NHWC)
 * in double; then one block folds the distances and the counted pixels with a fixed
 * geometry (thread t takes pixels t, t + 256, ..., then a shared-memory tree), so the
 * sum is the same on every run. The count crosses to the host for the cross-rank
 * reduction (t2s_batch_stats_reduce, as on the CPU) and the normaliser. Backward: one
 * thread per element. Features are 4-d activations stored NHWC. */
#include <math.h>
#include <string.h>

#include "core/cuda/kernels.cuh"
extern "C" {
#include "losses/batch_stats.h"
#include "losses/feature_distance.h"
}

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

/* dist[i] = ||f_i - g_i|| over the C channels of pixel i (0 where things[label_i] is 0)
 * for the `pixels` = N hw pixels; sums_host[0] = sum of dist, sums_host[1] = the number
 * of counted pixels (host doubles, after a synchronising copy). things: host, 256 flags. */
t2s_status distance_sums(t2s_ctx *ctx, const t2s_node *node, const float *f, const float *g,
                         const uint8_t *labels, const uint8_t *things, int64_t pixels,
                         int64_t channels, double *dist, double sums_host[2]) {
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
  t2s_host_sync_note(T2S_SITE, 1);
  T2S_CU(ctx, node, cudaMemcpyAsync(sums_host, sums, 2 * sizeof(double), cudaMemcpyDeviceToHost,
                                    stream));
  T2S_CU(ctx, node, cudaStreamSynchronize(stream));
  return T2S_OK;
}

}  // namespace

/* The distances and the two sums on the device, the count reduced over ranks on the
 * host exactly as in the CPU slot. */
t2s_status t2s_feature_distance_cuda_forward(t2s_ctx *ctx, t2s_node *node) {
  const t2s_fd_args *a = (const t2s_fd_args *)node->args;
  const t2s_tensor *ft = node->in[0];
  int64_t pixels = ft->shape[0] * ft->shape[2] * ft->shape[3], C = ft->shape[1];
  t2s_fd_saved *sv = (t2s_fd_saved *)t2s_host_scratch(ctx, sizeof *sv);
  if (sv == NULL) return ctx->err.status;
  sv->dist = (double *)t2s_scratch(ctx, sizeof(double) * (size_t)pixels + 1);
  if (sv->dist == NULL) return ctx->err.status;
  double sums[2];
  t2s_status st = distance_sums(ctx, node, t2s_f32(ft), t2s_f32(node->in[1]), t2s_u8(node->in[2]),
                                a->things, pixels, C, sv->dist, sums);
  if (st != T2S_OK) return st;
  double count = sums[1];
  if ((st = t2s_batch_stats_reduce(ctx, &count, 1)) != T2S_OK) return st;
  sv->scale = t2s_rank_loss_scale(count, a->world_size);
  float loss = (float)(sums[0] * sv->scale);
  st = t2s_device_copy(ctx->device, node->out->data, T2S_DEV_CPU, &loss, sizeof loss, &ctx->err);
  if (st != T2S_OK) return st;
  node->saved = sv;
  return T2S_OK;
}

/* df (+)= dloss[0] scale (f - g) / dist per pixel (0 where dist is 0). */
t2s_status t2s_feature_distance_cuda_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  const t2s_fd_saved *sv = (const t2s_fd_saved *)node->saved;
  const t2s_tensor *ft = node->in[0];
  int64_t pixels = ft->shape[0] * ft->shape[2] * ft->shape[3], channels = ft->shape[1];
  return launch_each(ctx, node, pixels * channels,
                     fd_grad{t2s_f32(ft), t2s_f32(node->in[1]), sv->dist, channels,
                             node->out->grad, sv->scale, ft->grad, beta[0] != 0.0f});
}
