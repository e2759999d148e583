/* Structured dropout on CUDA (stochastic depth, channel dropout); semantics of
 * core/ops/drop_path.c.
 *
 * The block of an element is its LOGICAL row-major index / block (an NHWC element is
 * mapped back to its NCHW index first), and its factor is drawn with the CPU's
 * Philox key and counter, so both backends drop the same blocks. x and y may be bf16
 * (precision bf16, through t2s_act_in / t2s_act_out); gradients are f32. */
#include "core/cuda/kernels.cuh"

using namespace t2s_cuda;

namespace {

typedef t2s_drop_path_args drop_args;

bool stored_nhwc(const t2s_tensor *t) { return t->ndim == 4 && t->layout == T2S_LAYOUT_NHWC; }

/* y (+)= x f_b with f_b = 0 when u(key, b) < p, else 1 / (1 - p); b is the block of
 * the element's logical index. nhwc: memory index i = ((n HW) + s) C + c holds
 * logical j = (n C + c) HW + s. */
struct drop_put {
  t2s_act_in x; t2s_act_out y; t2s_rng_key key; float p, keep; int64_t block, first, c, hw; bool nhwc, acc;
  __device__ void operator()(int64_t i) const {
    int64_t j = i;
    if (nhwc) {
      int64_t ch = i % c, t = i / c, s = t % hw, b = t / hw;
      j = (b * c + ch) * hw + s;
    }
    float f = t2s_cuda_rng_uniform(key, (uint64_t)(first + j / block)) < p ? 0.0f : keep;
    y.put(i, __fmul_rn(f, x[i]), acc);
  }
};

t2s_status drop_run(t2s_ctx *ctx, const t2s_node *node, t2s_act_in src, t2s_act_out dst, bool acc) {
  const drop_args *a = (const drop_args *)node->args;
  const t2s_tensor *x = node->in[0];
  bool nhwc = stored_nhwc(x);
  drop_put f = {src, dst, a->key, a->p, 1.0f / (1.0f - a->p), a->block, a->first,
                nhwc ? x->shape[1] : 1, nhwc ? x->shape[2] * x->shape[3] : 1, nhwc, acc};
  return launch_each(ctx, node, t2s_numel(x), f);
}

t2s_status drop_path_forward(t2s_ctx *ctx, t2s_node *node) {
  return drop_run(ctx, node, t2s_cuda_in(node->in[0]), t2s_cuda_out(node->out), false);
}

t2s_status drop_path_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  return drop_run(ctx, node, t2s_cuda_in(node->out->grad), t2s_cuda_out(node->in[0]->grad),
                  beta[0] != 0.0f);
}

}  // namespace

T2S_CUDA_OP(drop_path)
