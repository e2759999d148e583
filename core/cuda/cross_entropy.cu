/* Fused softmax cross-entropy on CUDA; the maths of core/ops/cross_entropy.c.
 *
 * Logits (N, C, H, W) are NHWC, so the C logits of a pixel are contiguous. Forward:
 * one warp per pixel computes lse = max + log sum exp(z - max) (sum in double),
 * keeps lse (one float per pixel, the only saved state) and the pixel's loss
 * term w (lse - z_y), its count and its class weight. The three sums are reduced
 * deterministically: a fixed grid (T2S_CUDA_REDUCE_BLOCKS blocks of 8 warps) where
 * each warp visits its pixels in a fixed order, the 8 warps of a block fold in
 * order, and one final block folds the per-block partials with a fixed tree; the
 * same kernel divides by the normaliser and writes the loss and the denominator
 * (device memory), so forward never synchronises except for the label check.
 * Backward recomputes the probabilities as exp(z - lse): they are never stored.
 *
 * Labels that are neither a class nor ignore_index are an error, as on the CPU: the
 * kernel records the first such pixel (an integer atomicMin: order-free) and the
 * host reads that one word back after the forward (one small synchronisation).
 *
 * bf16 logits (precision bf16) are read through t2s_act_in; everything else (the
 * sums, lse, the loss, dz) is computed and stored as for f32. */
#include <math.h>

#include "core/cuda/kernels.cuh"

using namespace t2s_cuda;

namespace {

typedef struct ce_saved {
  float *lse;      /* device, one per pixel */
  double *denom;   /* device, one: 0 means the loss is identically 0 */
} ce_saved;

constexpr int kWarps = 8;

struct ce_inputs {
  t2s_act_in z; const uint8_t *lab; const float *pw, *cw;  /* z: f32 or bf16 logits */
  int64_t pixels, c;
  int ignore;
  __device__ double weight(int64_t p, int y) const {
    double w = pw ? (double)pw[p] : 1.0;
    return cw ? w * cw[y] : w;
  }
};

/* sums per block: partial[3 b + {0: loss, 1: count, 2: class-weight sum}] */
__global__ void ce_forward_kernel(ce_inputs in, float *lse, double *partial,
                                  unsigned long long *bad) {
  __shared__ double s[3][kWarps];
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  double acc[3] = {0.0, 0.0, 0.0};
  for (int64_t p = (int64_t)blockIdx.x * kWarps + warp; p < in.pixels;
       p += (int64_t)gridDim.x * kWarps) {
    const int64_t z0 = p * in.c;
    float mx = -INFINITY;
    for (int64_t k = lane; k < in.c; k += 32) mx = fmaxf(mx, in.z[z0 + k]);
    mx = warp_max(mx);
    double sum = 0.0;
    for (int64_t k = lane; k < in.c; k += 32) sum += exp((double)in.z[z0 + k] - mx);
    sum = warp_sum(sum);
    float l = (float)(mx + log(sum));
    if (lane != 0) continue;
    lse[p] = l;
    int y = in.lab[p];
    if (y == in.ignore) continue;
    if (y >= in.c) {
      atomicMin(bad, (unsigned long long)p);
      continue;
    }
    acc[0] += in.weight(p, y) * ((double)l - in.z[z0 + y]);
    acc[1] += 1.0;
    acc[2] += in.cw ? (double)in.cw[y] : 1.0;
  }
  if (lane == 0)
    for (int v = 0; v < 3; v++) s[v][warp] = acc[v];
  __syncthreads();
  if (threadIdx.x < 3) {
    double t = 0.0;
    for (int w = 0; w < kWarps; w++) t += s[threadIdx.x][w];
    partial[3 * blockIdx.x + threadIdx.x] = t;
  }
}

/* Folds the partials with a fixed tree; loss = sum / D (0 when D is 0). */
__global__ void ce_final_kernel(const double *partial, int reduction, double normaliser,
                                float *loss, double *denom_out) {
  __shared__ double s[3][T2S_CUDA_REDUCE_THREADS];
  for (int v = 0; v < 3; v++)
    s[v][threadIdx.x] = threadIdx.x < T2S_CUDA_REDUCE_BLOCKS ? partial[3 * threadIdx.x + v] : 0.0;
  for (int stride = T2S_CUDA_REDUCE_THREADS / 2; stride > 0; stride /= 2) {
    __syncthreads();
    if ((int)threadIdx.x < stride)
      for (int v = 0; v < 3; v++) s[v][threadIdx.x] += s[v][threadIdx.x + stride];
  }
  __syncthreads();
  if (threadIdx.x != 0) return;
  double denom = reduction == T2S_CE_MEAN_VALID ? s[1][0]
                 : reduction == T2S_CE_MEAN_WEIGHT ? s[2][0]
                                                   : 1.0;
  if (normaliser > 0.0) denom = normaliser;
  loss[0] = denom != 0.0 ? (float)(s[0][0] / denom) : 0.0f;
  *denom_out = denom;
}

struct ce_backward_f {
  ce_inputs in; const float *lse; const float *dloss; const double *denom; float *dz; bool acc;
  __device__ void operator()(int64_t i) const {
    int64_t p = i / in.c, k = i % in.c;
    int y = in.lab[p];
    double scale = *denom != 0.0 ? dloss[0] / *denom : 0.0, g = 0.0;
    if (y != in.ignore && scale != 0.0) {
      double prob = exp((double)in.z[i] - lse[p]);
      g = scale * in.weight(p, y) * (prob - (k == y ? 1.0 : 0.0));
    }
    put(dz, i, (float)g, acc);
  }
};

ce_inputs inputs_of(const t2s_node *node) {
  const t2s_tensor *z = node->in[0];
  const t2s_ce_args *a = (const t2s_ce_args *)node->args;
  ce_inputs in = {t2s_cuda_in(z), t2s_u8(node->in[1]), node->in[2] ? t2s_f32(node->in[2]) : NULL,
                  node->in[3] ? t2s_f32(node->in[3]) : NULL, z->shape[0] * z->shape[2] * z->shape[3],
                  z->shape[1], a->ignore_index};
  return in;
}

/* Reads the first bad pixel back; fails naming it like the CPU does. */
t2s_status check_labels(t2s_ctx *ctx, const t2s_node *node, const unsigned long long *bad_dev) {
  cudaStream_t s = t2s_cuda_be(ctx)->stream;
  unsigned long long *bad = (unsigned long long *)t2s_host_scratch(ctx, sizeof *bad);
  if (bad == NULL) return ctx->err.status;
  t2s_host_sync_note(T2S_SITE, 1);
  T2S_CU(ctx, node, cudaMemcpyAsync(bad, bad_dev, sizeof *bad, cudaMemcpyDeviceToHost, s));
  T2S_CU(ctx, node, cudaStreamSynchronize(s));
  if (*bad == ~0ull) return T2S_OK;
  uint8_t label = 0;
  T2S_CU(ctx, node, cudaMemcpy(&label, t2s_u8(node->in[1]) + *bad, 1, cudaMemcpyDeviceToHost));
  const t2s_tensor *z = node->in[0];
  int64_t hw = z->shape[2] * z->shape[3];
  t2s_ctx_fail(ctx, T2S_ERR_INVALID,
               "cross_entropy: label %d at image %lld pixel %lld is not a class (0..%lld) nor "
               "ignore_index %d; check the dataset's train ids and model.num_classes",
               label, (long long)(*bad / hw), (long long)(*bad % hw), (long long)(z->shape[1] - 1),
               ((const t2s_ce_args *)node->args)->ignore_index);
  return T2S_ERR_INVALID;
}

t2s_status cross_entropy_forward(t2s_ctx *ctx, t2s_node *node) {
  const t2s_ce_args *a = (const t2s_ce_args *)node->args;
  t2s_cuda_backend *be = t2s_cuda_be(ctx);
  if (node->in[0]->layout != T2S_LAYOUT_NHWC) {
    t2s_ctx_fail(ctx, T2S_ERR_INVALID, "op 'cross_entropy' on cuda: the logits must be an NHWC "
                 "activation");
    return T2S_ERR_INVALID;
  }
  ce_inputs in = inputs_of(node);
  ce_saved *sv = (ce_saved *)t2s_host_scratch(ctx, sizeof *sv);
  if (sv == NULL) return ctx->err.status;
  sv->lse = (float *)t2s_scratch(ctx, (size_t)(in.pixels ? in.pixels : 1) * sizeof(float));
  sv->denom = scratch_doubles(ctx, 1);
  double *partial = scratch_doubles(ctx, 3 * T2S_CUDA_REDUCE_BLOCKS);
  unsigned long long *bad = (unsigned long long *)t2s_scratch(ctx, sizeof *bad);
  if (sv->lse == NULL || sv->denom == NULL || partial == NULL || bad == NULL)
    return ctx->err.status;
  T2S_CU(ctx, node, cudaMemsetAsync(bad, 0xff, sizeof *bad, be->stream));
  ce_forward_kernel<<<T2S_CUDA_REDUCE_BLOCKS, 32 * kWarps, 0, be->stream>>>(in, sv->lse, partial,
                                                                           bad);
  T2S_CU_LAUNCHED(ctx, node, "ce_forward_kernel");
  ce_final_kernel<<<1, T2S_CUDA_REDUCE_THREADS, 0, be->stream>>>(
      partial, (int)a->reduction, a->normaliser, t2s_f32(node->out), sv->denom);
  T2S_CU_LAUNCHED(ctx, node, "ce_final_kernel");
  node->saved = sv;
  return check_labels(ctx, node, bad);
}

t2s_status cross_entropy_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  const ce_saved *sv = (const ce_saved *)node->saved;
  t2s_tensor *z = node->in[0];
  return launch_each(ctx, node, t2s_numel(z),
                     ce_backward_f{inputs_of(node), sv->lse, node->out->grad, sv->denom, z->grad,
                                   beta[0] != 0.0f});
}

}  // namespace

T2S_CUDA_OP(cross_entropy)
