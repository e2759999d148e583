/* The CUDA slots of the pulling loss (maths in losses/pull_loss.c).
 *
 * The host half is the CPU slot's: it downloads the small label map, the present
 * mask and the class weights, draws the identical plan (t2s_pull_loss_plan) and the
 * per-group normalisers reduced over ranks (t2s_pull_group_scales), and uploads
 * them. Features on CUDA are 4-d activations stored NHWC: the D-vector of pixel i of
 * image b starts at (b hw + i) D.
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

#include <string.h>

#include "core/cuda/kernels.cuh"
extern "C" {
#include "losses/pull_loss.h"
}

using namespace t2s_cuda;

namespace {

/* The plan and buffers of one forward on the device (every pointer device memory). */
typedef struct pull_batch {
  const float *q, *k;              /* (N, hw, D) NHWC storage of the (N, D, h, w) features */
  const float *proto;              /* (C, D) prototypes */
  int64_t hw, dim;
  int negatives_are_keys;          /* negatives index key pixels (else prototypes) */
  float tau;
  int n_groups;
  int64_t n_queries, n_negs;
  const t2s_pull_group *groups;    /* the plan's groups, copied to the device */
  const int32_t *query_pixel;      /* (n_queries) */
  const int32_t *neg_index;        /* (n_negs) */
  const int32_t *query_group;      /* (n_queries) the group of each query */
  const double *group_scale;       /* (n_groups) world_size w_c / (sum_c' w_c' Q_c) */
  float *prob;                     /* (n_queries + n_negs) softmax per query, forward output */
  double *work;                    /* (n_queries + n_groups) scratch */
} pull_batch;

struct pull_view {
  pull_batch b;
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

/* loss[0] = sum_g group_scale[g] sum_{i in g} l_i (one float on the device); fills prob. */
t2s_status launch_forward(t2s_ctx *ctx, const t2s_node *node, const pull_batch *b, float *loss) {
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

/* dq (N, hw, D) (+)= dloss[0] group_scale / tau ((p_0 - 1) k_c + sum_n p_n k_n) at each
 * query pixel; with accumulate 0 every other element is set to 0 first. */
t2s_status launch_backward(t2s_ctx *ctx, const t2s_node *node, const pull_batch *b,
                           const float *dloss, float *dq, int64_t dq_numel, int accumulate) {
  if (!accumulate)
    T2S_CU(ctx, node, cudaMemsetAsync(dq, 0, (size_t)dq_numel * sizeof(float),
                                      t2s_cuda_be(ctx)->stream));
  return launch_each(ctx, node, b->n_queries * b->dim, pull_grad{pull_view{*b}, dloss, dq});
}

/* A host copy of a (small) device tensor's bytes, in the pass's host scratch. */
void *download(t2s_ctx *ctx, const t2s_tensor *t) {
  size_t bytes = (size_t)t2s_numel(t) * t2s_dtype_size(t->dtype);
  void *h = t2s_host_scratch(ctx, bytes + 1);
  if (h == NULL || t2s_device_copy(T2S_DEV_CPU, h, t->device, t->data, bytes, &ctx->err) != T2S_OK)
    return NULL;
  return h;
}

/* A device copy of host bytes, in the pass arena. */
template <class T>
const T *upload(t2s_ctx *ctx, const T *host, int64_t count) {
  size_t bytes = sizeof(T) * (size_t)count;
  void *d = t2s_scratch(ctx, bytes + 1);
  if (d == NULL || t2s_device_copy(ctx->device, d, T2S_DEV_CPU, host, bytes, &ctx->err) != T2S_OK)
    return NULL;
  return (const T *)d;
}

/* The device copy of the plan: the group of every query, the scales, the buffers. */
t2s_status upload_plan(t2s_ctx *ctx, const t2s_pull_plan &plan, const double *scale,
                       pull_batch *b) {
  int32_t *qgroup = (int32_t *)t2s_host_scratch(ctx, sizeof(int32_t) * (size_t)plan.n_queries + 1);
  if (qgroup == NULL) return ctx->err.status;
  for (int g = 0; g < plan.n_groups; g++)
    for (int32_t i = 0; i < plan.groups[g].n_query; i++) qgroup[plan.groups[g].query_off + i] = g;
  b->n_groups = plan.n_groups;
  b->n_queries = plan.n_queries;
  b->n_negs = plan.n_negs;
  b->groups = upload(ctx, plan.groups, plan.n_groups);
  b->query_pixel = upload(ctx, plan.query_pixel, plan.n_queries);
  b->neg_index = upload(ctx, plan.neg_index, plan.n_negs);
  b->query_group = upload(ctx, qgroup, plan.n_queries);
  b->group_scale = upload(ctx, scale, plan.n_groups);
  b->prob = (float *)t2s_scratch(ctx, sizeof(float) * (size_t)(plan.n_queries + plan.n_negs) + 1);
  b->work = (double *)t2s_scratch(ctx, sizeof(double) * (size_t)(plan.n_queries + plan.n_groups) + 1);
  if (!b->groups || !b->query_pixel || !b->neg_index || !b->query_group || !b->group_scale ||
      !b->prob || !b->work)
    return ctx->err.status;
  return T2S_OK;
}

}  // namespace

/* The same plan and normalisers as the CPU slot (from host copies of the labels, the
 * present mask and the class weights: the caller's (t2s_pull_host), else read back), then
 * the arithmetic on the device. */
t2s_status t2s_pull_loss_cuda_forward(t2s_ctx *ctx, t2s_node *node) {
  const t2s_pull_args *a = (const t2s_pull_args *)node->args;
  t2s_tensor *qt = node->in[0];
  int C = (int)node->in[4]->shape[0];
  t2s_tensor labels = *node->in[2], present = *node->in[5];
  const t2s_pull_host *h = &a->host;
  labels.data = h->labels ? h->labels->data : download(ctx, node->in[2]);
  present.data = h->present ? h->present->data : download(ctx, node->in[5]);
  labels.device = present.device = T2S_DEV_CPU;
  const float *cw = !node->in[3]          ? NULL
                    : h->class_weight ? (const float *)h->class_weight->data
                                      : (const float *)download(ctx, node->in[3]);
  pull_batch *b = (pull_batch *)t2s_host_scratch(ctx, sizeof *b);
  if (labels.data == NULL || present.data == NULL || (node->in[3] && cw == NULL) || b == NULL)
    return ctx->err.status;
  t2s_pull_plan plan;
  t2s_status st = t2s_pull_loss_plan(ctx, &labels, &present, C, &a->cfg, a->seed, a->iter,
                                     a->global_offset, &plan);
  if (st != T2S_OK) return st;
  double *scale = (double *)t2s_host_scratch(ctx, sizeof(double) * (size_t)plan.n_groups + 1);
  if (scale == NULL) return ctx->err.status;
  if ((st = t2s_pull_group_scales(ctx, a, &plan, cw, C, scale)) != T2S_OK) return st;
  memset(b, 0, sizeof *b);
  b->q = t2s_f32(qt);
  b->k = t2s_f32(node->in[1]);
  b->proto = t2s_f32(node->in[4]);
  b->hw = qt->shape[2] * qt->shape[3];
  b->dim = qt->shape[1];
  b->negatives_are_keys = a->cfg.negatives == T2S_PULL_NEG_KEYS;
  b->tau = a->cfg.tau;
  if ((st = upload_plan(ctx, plan, scale, b)) != T2S_OK) return st;
  if ((st = launch_forward(ctx, node, b, t2s_f32(node->out))) != T2S_OK) return st;
  node->saved = b;
  return T2S_OK;
}

t2s_status t2s_pull_loss_cuda_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  const pull_batch *b = (const pull_batch *)node->saved;
  if (b == NULL)
    return t2s_error_set(&ctx->err, T2S_ERR_INVALID, "pull_loss backward on cuda: no saved plan "
                         "(the forward did not run on this node)");
  return launch_backward(ctx, node, b, node->out->grad, node->in[0]->grad,
                         t2s_numel(node->in[0]), beta[0] != 0.0f);
}
