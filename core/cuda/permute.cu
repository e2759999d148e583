/* Image <-> token layout on CUDA (the op tokens_transpose); semantics of
 * core/ops/permute.c.
 *
 * On this backend a 4-d (N, C, H, W) activation is stored NHWC, i.e. exactly the
 * (N, HW, C) token sequence, so nchw_to_tokens and tokens_to_nchw are copies (their
 * CPU versions are real transposes of NCHW memory). A pair of row-major tensors (not
 * reachable through the public functions) gets a real batched transpose, so the op
 * means the same on every input. Activations may be bf16 (precision bf16): the copy
 * keeps the dtype; gradients are f32. */
#include "core/cuda/kernels.cuh"

using namespace t2s_cuda;

namespace {

typedef t2s_transpose_args transpose_args;

bool stored_nhwc(const t2s_tensor *t) { return t->ndim == 4 && t->layout == T2S_LAYOUT_NHWC; }

/* dst (+)= src, element for element (the layout change is the identity on NHWC). */
struct copy_put {
  t2s_act_in src; t2s_act_out dst; bool acc;
  __device__ void operator()(int64_t i) const { dst.put(i, src[i], acc); }
};
/* dst[k][j][i] (+)= src[k][i][j] for (a, b) blocks of src. */
struct transpose_put {
  t2s_act_in src; t2s_act_out dst; int64_t a, b; bool acc;
  __device__ void operator()(int64_t e) const {
    int64_t i = e % a, t = e / a, j = t % b, k = t / b;  /* e indexes dst (k, j, i) */
    dst.put(e, src[(k * a + i) * b + j], acc);
  }
};

/* src and dst have one dtype: bf16 (forward under precision bf16) or f32. */
t2s_status transpose_run(t2s_ctx *ctx, const t2s_node *node, const void *src, void *dst, bool bf16,
                         int64_t a, int64_t b, bool acc) {
  t2s_act_in in{src, bf16};
  t2s_act_out out{dst, bf16};
  const transpose_args *ar = (const transpose_args *)node->args;
  int64_t n = ar->n * ar->a * ar->b;
  if (stored_nhwc(node->in[0]) || stored_nhwc(node->out)) {
    if (!acc) {
      T2S_CU(ctx, node, cudaMemcpyAsync(dst, src, (size_t)n * (bf16 ? sizeof(t2s_bf16) : sizeof(float)),
                                        cudaMemcpyDeviceToDevice, t2s_cuda_be(ctx)->stream));
      return T2S_OK;
    }
    return launch_each(ctx, node, n, copy_put{in, out, true});
  }
  return launch_each(ctx, node, n, transpose_put{in, out, a, b, acc});
}

t2s_status tokens_transpose_forward(t2s_ctx *ctx, t2s_node *node) {
  const transpose_args *a = (const transpose_args *)node->args;
  if (node->in[0]->dtype != node->out->dtype) {
    t2s_ctx_fail(ctx, T2S_ERR_INVALID, "op 'tokens_transpose' on cuda: input %s, output %s (one "
                 "dtype expected)", t2s_dtype_name(node->in[0]->dtype),
                 t2s_dtype_name(node->out->dtype));
    return T2S_ERR_INVALID;
  }
  return transpose_run(ctx, node, node->in[0]->data, node->out->data,
                       node->out->dtype == T2S_BF16, a->a, a->b, false);
}

t2s_status tokens_transpose_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  const transpose_args *a = (const transpose_args *)node->args;
  /* the output gradient is (n, b, a); its transpose is the input's (n, a, b) */
  return transpose_run(ctx, node, node->out->grad, node->in[0]->grad, false, a->b, a->a,
                       beta[0] != 0.0f);
}

}  // namespace

T2S_CUDA_OP(tokens_transpose)
