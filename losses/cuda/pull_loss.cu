/* The pulling loss over the sampled queries on CUDA (the host plans; see
 * losses/losses_cuda.h and losses/pull_loss.c for the maths).
 *
 * Forward: one warp per query. The scores s_0 = q.k_c / tau (positive) and
 * s_j = q.k_j / tau (negatives) are warp dot products in double; then, as on the CPU,
 *   p_j = exp(s_j - max) / z,  z = sum_j exp(s_j - max),  l = max + log z - s_0.
 * The per-query losses are folded per group in query order, then over the groups in
 * plan order, by single threads: the same association as the CPU loop, and the same
 * bits on every run.
 * Backward: one thread per (query, channel); a pixel is the query of at most one
 * group, so the scatter into dq has no collisions and needs no atomics. */
#include <math.h>

extern "C" {
#include "losses/losses_cuda.h"
}
#include "core/cuda/kernels.cuh"

using namespace t2s_cuda;

namespace {

struct pull_view {
  t2s_pull_cuda_batch b;
  __device__ const float *query(int64_t qi) const {
    const t2s_pull_group &g = b.groups[b.query_group[qi]];
    return b.q + ((int64_t)g.image * b.hw + b.query_pixel[qi]) * b.dim;
  }
  /* the vector of entry j of query qi: j = 0 the positive, j >= 1 negative j - 1 */
  __device__ const float *vec(int64_t qi, int j) const {
    const t2s_pull_group &g = b.groups[b.query_group[qi]];
    if (j == 0) return b.proto + (int64_t)g.cls * b.dim;
    int32_t idx = b.neg_index[g.neg_off + (qi - g.query_off) * g.n_neg + (j - 1)];
    return b.negatives_are_keys ? b.k + ((int64_t)g.image * b.hw + idx) * b.dim
                                : b.proto + (int64_t)idx * b.dim;
  }
  /* first entry of query qi in prob (1 + n_neg per query, in query order) */
  __device__ int64_t prob_off(int64_t qi) const {
    const t2s_pull_group &g = b.groups[b.query_group[qi]];
    return qi + g.neg_off + (qi - g.query_off) * g.n_neg;
  }
};

/* s[prob_off + j] holds s_j while the warp works on query qi; its loss goes to loss_q[qi]. */
__global__ void pull_forward_kernel(pull_view v, double *s, double *loss_q) {
  int lane = threadIdx.x & 31;
  double inv_tau = 1.0 / v.b.tau;
  for (int64_t qi = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5; qi < v.b.n_queries;
       qi += ((int64_t)gridDim.x * blockDim.x) >> 5) {
    const float *q = v.query(qi);
    int n = 1 + v.b.groups[v.b.query_group[qi]].n_neg;
    int64_t off = v.prob_off(qi);
    double mx = -INFINITY;
    for (int j = 0; j < n; j++) {
      const float *kv = v.vec(qi, j);
      double acc = 0.0;
      for (int64_t d = lane; d < v.b.dim; d += 32) acc += (double)q[d] * kv[d];
      double sj = warp_sum(acc) * inv_tau;  /* identical on every lane */
      if (lane == 0) s[off + j] = sj;
      mx = fmax(mx, sj);
    }
    __syncwarp();
    double z = 0.0;
    for (int j = lane; j < n; j += 32) z += exp(s[off + j] - mx);
    z = warp_sum(z);
    for (int j = lane; j < n; j += 32) v.b.prob[off + j] = (float)(exp(s[off + j] - mx) / z);
    if (lane == 0) loss_q[qi] = mx + log(z) - s[off];
    __syncwarp();
  }
}

/* group_sum[g] = group_scale[g] sum of its queries' losses, in query order */
__global__ void pull_group_kernel(pull_view v, const double *loss_q, double *group_sum) {
  for (int g = blockIdx.x * blockDim.x + threadIdx.x; g < v.b.n_groups;
       g += gridDim.x * blockDim.x) {
    const t2s_pull_group &gr = v.b.groups[g];
    double sum = 0.0;
    for (int32_t i = 0; i < gr.n_query; i++) sum += loss_q[gr.query_off + i];
    group_sum[g] = v.b.group_scale[g] * sum;
  }
}

__global__ void pull_total_kernel(int n_groups, const double *group_sum, float *loss) {
  double total = 0.0;
  for (int g = 0; g < n_groups; g++) total += group_sum[g];
  loss[0] = (float)total;
}

/* dq[pixel of qi, d] += dloss g_scale / tau ((p_0 - 1) k_c[d] + sum_j p_j k_j[d]) */
struct pull_grad {
  pull_view v; const float *dloss; float *dq;
  __device__ void operator()(int64_t e) const {
    int64_t qi = e / v.b.dim, d = e % v.b.dim;
    int32_t gi = v.b.query_group[qi];
    int n = 1 + v.b.groups[gi].n_neg;
    const float *p = v.b.prob + v.prob_off(qi);
    double acc = ((double)p[0] - 1.0) * v.vec(qi, 0)[d];
    for (int j = 1; j < n; j++) acc += (double)p[j] * v.vec(qi, j)[d];
    double f = (double)dloss[0] * v.b.group_scale[gi] * (1.0 / v.b.tau);
    int64_t at = (v.query(qi) - v.b.q) + d;
    dq[at] += (float)(f * acc);
  }
};

}  // namespace

extern "C" t2s_status t2s_pull_loss_cuda_forward(t2s_ctx *ctx, const t2s_node *node,
                                                 const t2s_pull_cuda_batch *b, float *loss) {
  cudaStream_t stream = t2s_cuda_be(ctx)->stream;
  double *loss_q = b->work, *group_sum = b->work + b->n_queries;
  double *s = (double *)t2s_scratch(ctx, sizeof(double) * (size_t)(b->n_queries + b->n_negs + 1));
  if (s == NULL) return ctx->err.status;
  pull_view v = {*b};
  if (b->n_queries > 0) {
    int64_t blocks = (b->n_queries + 7) / 8;
    if (blocks > 65535 * 8) blocks = 65535 * 8;
    pull_forward_kernel<<<(unsigned)blocks, 256, 0, stream>>>(v, s, loss_q);
    T2S_CU_LAUNCHED(ctx, node, "pull_forward_kernel");
    pull_group_kernel<<<(unsigned)((b->n_groups + 127) / 128), 128, 0, stream>>>(v, loss_q,
                                                                                  group_sum);
    T2S_CU_LAUNCHED(ctx, node, "pull_group_kernel");
  }
  pull_total_kernel<<<1, 1, 0, stream>>>(b->n_groups, group_sum, loss);
  T2S_CU_LAUNCHED(ctx, node, "pull_total_kernel");
  return T2S_OK;
}

extern "C" t2s_status t2s_pull_loss_cuda_backward(t2s_ctx *ctx, const t2s_node *node,
                                                  const t2s_pull_cuda_batch *b,
                                                  const float *dloss, float *dq,
                                                  int64_t dq_numel, int accumulate) {
  if (!accumulate)
    T2S_CU(ctx, node, cudaMemsetAsync(dq, 0, (size_t)dq_numel * sizeof(float),
                                      t2s_cuda_be(ctx)->stream));
  return launch_each(ctx, node, b->n_queries * b->dim, pull_grad{pull_view{*b}, dloss, dq});
}
