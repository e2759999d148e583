/* Concatenation on CUDA; semantics of core/ops/shape.c.
 *
 * The logical dim maps to a memory dim (NHWC: N->0, C->3, H->1, W->2), so every
 * input is an outer x (len_k inner) block copy in memory; one kernel per input
 * copies its blocks (any element size), backward copies them back. */
#include "core/cuda/kernels.cuh"

using namespace t2s_cuda;

namespace {

typedef t2s_concat_args concat_args;

/* The memory position of logical dim d and the outer / inner sizes around it. */
void memory_split(const t2s_tensor *t, int d, int64_t *outer, int64_t *len, int64_t *inner) {
  int64_t mshape[T2S_MAX_DIMS];
  int md = d;
  if (t->ndim == 4 && t->layout == T2S_LAYOUT_NHWC) {
    const int pos[4] = {0, 3, 1, 2};
    mshape[0] = t->shape[0], mshape[1] = t->shape[2], mshape[2] = t->shape[3];
    mshape[3] = t->shape[1];
    md = pos[d];
  } else {
    for (int i = 0; i < t->ndim; i++) mshape[i] = t->shape[i];
  }
  *outer = 1, *inner = 1, *len = mshape[md];
  for (int i = 0; i < md; i++) *outer *= mshape[i];
  for (int i = md + 1; i < t->ndim; i++) *inner *= mshape[i];
}

/* dst block o of input k: out[o (total inner) + off inner + r] <-> in[o (len inner) + r] */
template <class T>
struct concat_copy {
  const T *src; T *dst; int64_t block, out_block, offset; bool to_out, acc;
  __device__ void operator()(int64_t i) const {
    int64_t o = i / block, r = i % block, j = o * out_block + offset + r;
    if (to_out) dst[j] = src[i];
    else dst[i] = acc ? (T)(dst[i] + src[j]) : src[j];
  }
};

template <class T>
t2s_status concat_run(t2s_ctx *ctx, t2s_node *node, const float *beta, bool forward) {
  int dim = ((const concat_args *)node->args)->dim;
  int64_t outer, total, inner;
  memory_split(node->out, dim, &outer, &total, &inner);
  int64_t offset = 0;
  for (int k = 0; k < node->n_in; k++) {
    t2s_tensor *x = node->in[k];
    int64_t o2, len, in2;
    memory_split(x, dim, &o2, &len, &in2);
    int64_t block = len * inner;
    t2s_status st = T2S_OK;
    if (forward)
      st = launch_each(ctx, node, outer * block,
                       concat_copy<T>{(const T *)x->data, (T *)node->out->data, block,
                                      total * inner, offset, true, false});
    else if (t2s_wants_grad(x))
      st = launch_each(ctx, node, outer * block,
                       concat_copy<T>{(const T *)node->out->grad, (T *)x->grad, block,
                                      total * inner, offset, false, beta[k] != 0.0f});
    if (st != T2S_OK) return st;
    offset += block;
  }
  return T2S_OK;
}

t2s_status concat_forward(t2s_ctx *ctx, t2s_node *node) {
  switch (t2s_dtype_size(node->out->dtype)) {
    case 1: return concat_run<uint8_t>(ctx, node, NULL, true);
    case 2: return concat_run<uint16_t>(ctx, node, NULL, true);
    case 4: return concat_run<float>(ctx, node, NULL, true);  /* f32 and i32: a bit copy */
    default: return concat_run<double>(ctx, node, NULL, true);
  }
}

t2s_status concat_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  return concat_run<float>(ctx, node, beta, false);  /* gradients are f32 */
}

}  // namespace

T2S_CUDA_OP(concat)
