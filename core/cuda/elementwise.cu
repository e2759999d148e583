/* Element-wise ops on CUDA: relu, gelu, add, mul, scale, to_f32, dropout, and the
 * deterministic weighted sum. The semantics are core/ops/elementwise.c's, element
 * for element: products that feed an accumulation use __fmul_rn so that no FMA
 * contraction changes the rounding (the CPU reference builds with
 * -ffp-contract=off), and dropout draws the identical Philox mask.
 *
 * Activations may be bf16 (precision bf16): the functors read and write them through
 * t2s_act_in / t2s_act_out and compute in float (double for GELU), as for f32.
 *
 * Backward honours the write/accumulate contract of core/engine.h: with beta 0 the
 * old gradient is never read (it may hold garbage or NaN), with beta 1 it is added to. */
#include "core/cuda/kernels.cuh"

namespace {

using t2s_cuda::launch_each;
using t2s_cuda::put;

constexpr double kSqrtHalf = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.3989422804014327;

/* ---- functors ------------------------------------------------------------ */
/* Activations (x, y, the other factor) are t2s_act_in / t2s_act_out: f32 or bf16 (precision
 * bf16), values in float; gradients are always f32. */
typedef t2s_act_in act_in;
typedef t2s_act_out act_out;

struct relu_fwd {
  act_in x; act_out y;
  __device__ void operator()(int64_t i) const {
    float v = x[i];
    y.set(i, v > 0.0f ? v : 0.0f);
  }
};
struct relu_bwd {
  act_in y; const float *dy; float *dx; bool acc;
  __device__ void operator()(int64_t i) const { put(dx, i, y[i] > 0.0f ? dy[i] : 0.0f, acc); }
};
/* GELU in double, as the CPU reference: y = x Phi(x), dy/dx = Phi(x) + x phi(x). */
struct gelu_fwd {
  act_in x; act_out y;
  __device__ void operator()(int64_t i) const {
    double v = x[i];
    y.set(i, (float)(0.5 * v * (1.0 + erf(v * kSqrtHalf))));
  }
};
struct gelu_bwd {
  act_in x; const float *dy; float *dx; bool acc;
  __device__ void operator()(int64_t i) const {
    double v = x[i];
    double cdf = 0.5 * (1.0 + erf(v * kSqrtHalf));
    double pdf = exp(-0.5 * v * v) * kInvSqrt2Pi;
    put(dx, i, (float)__dmul_rn((double)dy[i], __dadd_rn(cdf, __dmul_rn(v, pdf))), acc);
  }
};
struct add_fwd {
  act_in a, b; act_out y;
  __device__ void operator()(int64_t i) const { y.set(i, a[i] + b[i]); }
};
/* dx = dy * s (mul: s is the other factor, per element; scale: one constant). */
struct mul_fwd {
  act_in a, b; act_out y;
  __device__ void operator()(int64_t i) const { y.set(i, __fmul_rn(a[i], b[i])); }
};
struct times_bwd {
  const float *dy; act_in other; bool has_other; float s; float *dx; bool acc;
  __device__ void operator()(int64_t i) const {
    put(dx, i, __fmul_rn(has_other ? other[i] : s, dy[i]), acc);
  }
};
struct scale_fwd {
  act_in x; float s; act_out y;
  __device__ void operator()(int64_t i) const { y.set(i, __fmul_rn(s, x[i])); }
};
/* to_f32: bf16 (or f32) -> f32; backward passes the f32 gradient through. */
struct to_f32_fwd {
  act_in x; float *y;
  __device__ void operator()(int64_t i) const { y[i] = x[i]; }
};
struct pass_bwd {
  const float *dy; float *dx; bool acc;
  __device__ void operator()(int64_t i) const { put(dx, i, dy[i], acc); }
};
/* weighted_sum backward: dx = g r with the scalar g read on the device (no sync). */
struct wsum_bwd {
  const float *g, *r; float *dx; bool acc;
  __device__ void operator()(int64_t i) const { put(dx, i, __fmul_rn(g[0], r[i]), acc); }
};

/* Philox: t2s_cuda_philox4x32 (core/cuda/backend.h), bit for bit core/rng.c's. */

/* Inverted dropout. The mask bit of element j (the LOGICAL row-major index, NCHW
 * for activations) is t2s_rng_uniform(key, j) = (word j%4 of Philox(key, j/4)) >> 8
 * / 2^24 < p, exactly as on the CPU, so both backends drop the same elements
 * whatever the memory layout. Forward: src = x, dst = y; backward: src = dy, dst = dx. */
__device__ __forceinline__ float uniform_of(uint32_t word) {
  return (float)(word >> 8) * (1.0f / 16777216.0f);
}
struct dropout_mask {
  act_in src; act_out dst; int64_t n; t2s_rng_key key; float p, keep_scale; bool acc;
  __device__ void apply(int64_t i, uint32_t word) const {
    float factor = uniform_of(word) < p ? 0.0f : keep_scale;
    dst.put(i, __fmul_rn(src[i], factor), acc);
  }
};
/* Memory order = logical order: item g covers elements 4g..4g+3, one Philox call. */
struct dropout_linear {
  dropout_mask m;
  __device__ void operator()(int64_t g) const {
    uint32_t w[4];
    t2s_cuda_philox4x32(m.key, (uint64_t)g, w);
    for (int j = 0; j < 4 && 4 * g + j < m.n; j++) m.apply(4 * g + j, w[j]);
  }
};
/* NHWC activation: memory index i = ((b HW) + s) C + c holds logical element
 * j = (b C + c) HW + s; one Philox call per element. */
struct dropout_nhwc {
  dropout_mask m; int64_t c, hw;
  __device__ void operator()(int64_t i) const {
    int64_t ch = i % c, t = i / c, s = t % hw, b = t / hw;
    uint64_t j = (uint64_t)((b * c + ch) * hw + s);
    uint32_t w[4];
    t2s_cuda_philox4x32(m.key, j >> 2, w);
    m.apply(i, w[j & 3]);
  }
};

/* ---- deterministic dot product: fixed-geometry two-pass tree -------------- */
/* Pass 1: block b sums x_i r_i (in double) over i = b*T + t + k*B*T in a fixed
 * order per thread, then a shared-memory tree; pass 2 folds the B partials with the
 * same tree. B and T are constants, so the result is bitwise the same on every run
 * and every GPU. */
__device__ void block_tree(double *s) {
  for (int stride = T2S_CUDA_REDUCE_THREADS / 2; stride > 0; stride /= 2) {
    __syncthreads();
    if ((int)threadIdx.x < stride) s[threadIdx.x] += s[threadIdx.x + stride];
  }
  __syncthreads();
}
__global__ void dot_partial_kernel(int64_t n, act_in x, const float *r, double *partial) {
  __shared__ double s[T2S_CUDA_REDUCE_THREADS];
  double acc = 0.0;
  const int64_t step = (int64_t)T2S_CUDA_REDUCE_BLOCKS * T2S_CUDA_REDUCE_THREADS;
  for (int64_t i = (int64_t)blockIdx.x * T2S_CUDA_REDUCE_THREADS + threadIdx.x; i < n; i += step)
    acc = __dadd_rn(acc, (double)x[i] * (double)r[i]);  /* the product is exact in double */
  s[threadIdx.x] = acc;
  block_tree(s);
  if (threadIdx.x == 0) partial[blockIdx.x] = s[0];
}
__global__ void dot_final_kernel(const double *partial, float *out) {
  __shared__ double s[T2S_CUDA_REDUCE_THREADS];
  s[threadIdx.x] = threadIdx.x < T2S_CUDA_REDUCE_BLOCKS ? partial[threadIdx.x] : 0.0;
  block_tree(s);
  if (threadIdx.x == 0) out[0] = (float)s[0];
}
static_assert(T2S_CUDA_REDUCE_BLOCKS <= T2S_CUDA_REDUCE_THREADS,
              "the final pass folds every partial in one block");

/* ---- op slots ------------------------------------------------------------- */
inline const float *in_f32(const t2s_node *node, int k) { return t2s_f32(node->in[k]); }
inline act_in in_act(const t2s_node *node, int k) { return t2s_cuda_in(node->in[k]); }
inline act_out out_act(const t2s_node *node) { return t2s_cuda_out(node->out); }
inline int64_t out_numel(const t2s_node *node) { return t2s_numel(node->out); }
inline bool acc_of(const float *beta, int k) { return beta[k] != 0.0f; }

t2s_status relu_forward(t2s_ctx *ctx, t2s_node *node) {
  return launch_each(ctx, node, out_numel(node), relu_fwd{in_act(node, 0), out_act(node)});
}
t2s_status relu_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  return launch_each(ctx, node, out_numel(node),
                     relu_bwd{t2s_cuda_in(node->out), node->out->grad, node->in[0]->grad,
                              acc_of(beta, 0)});
}
t2s_status gelu_forward(t2s_ctx *ctx, t2s_node *node) {
  return launch_each(ctx, node, out_numel(node), gelu_fwd{in_act(node, 0), out_act(node)});
}
t2s_status gelu_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  return launch_each(ctx, node, out_numel(node),
                     gelu_bwd{in_act(node, 0), node->out->grad, node->in[0]->grad,
                              acc_of(beta, 0)});
}
t2s_status add_forward(t2s_ctx *ctx, t2s_node *node) {
  return launch_each(ctx, node, out_numel(node),
                     add_fwd{in_act(node, 0), in_act(node, 1), out_act(node)});
}
/* add: dx_k = dy; mul: dx_k = dy * x_{1-k}. The same tensor in both slots gets
 * beta[1] = 1 from the engine, so the two launches (in order on one stream) add up. */
t2s_status binary_backward(t2s_ctx *ctx, t2s_node *node, const float *beta, bool is_mul) {
  for (int k = 0; k < 2; k++) {
    if (!t2s_wants_grad(node->in[k])) continue;
    act_in other = is_mul ? in_act(node, 1 - k) : t2s_cuda_in((const float *)NULL);
    t2s_status st = launch_each(ctx, node, out_numel(node),
                                times_bwd{node->out->grad, other, is_mul, 1.0f, node->in[k]->grad,
                                          acc_of(beta, k)});
    if (st != T2S_OK) return st;
  }
  return T2S_OK;
}
t2s_status add_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  return binary_backward(ctx, node, beta, false);
}
t2s_status mul_forward(t2s_ctx *ctx, t2s_node *node) {
  return launch_each(ctx, node, out_numel(node),
                     mul_fwd{in_act(node, 0), in_act(node, 1), out_act(node)});
}
t2s_status mul_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  return binary_backward(ctx, node, beta, true);
}
t2s_status scale_forward(t2s_ctx *ctx, t2s_node *node) {
  float s = ((const t2s_scale_args *)node->args)->s;
  return launch_each(ctx, node, out_numel(node), scale_fwd{in_act(node, 0), s, out_act(node)});
}
t2s_status scale_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  float s = ((const t2s_scale_args *)node->args)->s;
  return launch_each(ctx, node, out_numel(node),
                     times_bwd{node->out->grad, t2s_cuda_in((const float *)NULL), false, s, node->in[0]->grad,
                              acc_of(beta, 0)});
}

t2s_status to_f32_forward(t2s_ctx *ctx, t2s_node *node) {
  return launch_each(ctx, node, out_numel(node), to_f32_fwd{in_act(node, 0), t2s_f32(node->out)});
}
t2s_status to_f32_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  return launch_each(ctx, node, out_numel(node), pass_bwd{node->out->grad, node->in[0]->grad, acc_of(beta, 0)});
}

t2s_status weighted_sum_forward(t2s_ctx *ctx, t2s_node *node) {
  t2s_cuda_backend *be = t2s_cuda_be(ctx);
  int64_t n = t2s_numel(node->in[0]);
  dot_partial_kernel<<<T2S_CUDA_REDUCE_BLOCKS, T2S_CUDA_REDUCE_THREADS, 0, be->stream>>>(
      n, in_act(node, 0), in_f32(node, 1), be->reduce);
  T2S_CU_LAUNCHED(ctx, node, "dot_partial_kernel");
  dot_final_kernel<<<1, T2S_CUDA_REDUCE_THREADS, 0, be->stream>>>(be->reduce, t2s_f32(node->out));
  T2S_CU_LAUNCHED(ctx, node, "dot_final_kernel");
  return T2S_OK;
}
t2s_status weighted_sum_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  return launch_each(ctx, node, t2s_numel(node->in[0]),
                     wsum_bwd{node->out->grad, in_f32(node, 1), node->in[0]->grad,
                              acc_of(beta, 0)});
}

t2s_status dropout_run(t2s_ctx *ctx, t2s_node *node, act_in src, act_out dst, bool acc) {
  const t2s_dropout_args *a = (const t2s_dropout_args *)node->args;
  const t2s_tensor *y = node->out;
  int64_t n = t2s_numel(y);
  float keep_scale = 1.0f / (1.0f - a->p);  /* the CPU's float expression */
  dropout_mask m{src, dst, n, a->key, a->p, keep_scale, acc};
  if (y->ndim == 4 && y->layout == T2S_LAYOUT_NHWC)
    return launch_each(ctx, node, n, dropout_nhwc{m, y->shape[1], y->shape[2] * y->shape[3]});
  return launch_each(ctx, node, (n + 3) / 4, dropout_linear{m});
}
t2s_status dropout_forward(t2s_ctx *ctx, t2s_node *node) {
  return dropout_run(ctx, node, in_act(node, 0), out_act(node), false);
}
t2s_status dropout_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  return dropout_run(ctx, node, t2s_cuda_in(node->out->grad), t2s_cuda_out(node->in[0]->grad),
                     acc_of(beta, 0));
}

}  // namespace

T2S_CUDA_OP(relu)
T2S_CUDA_OP(gelu)
T2S_CUDA_OP(add)
T2S_CUDA_OP(mul)
T2S_CUDA_OP(scale)
T2S_CUDA_OP(to_f32)
T2S_CUDA_OP(weighted_sum)
T2S_CUDA_OP(dropout)
