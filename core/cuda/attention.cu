/* Multi-head attention on CUDA; semantics of core/ops/attention.c.
 *
 * Per sample n and head h (d = C / heads, s = d^-1/2), as on the CPU:
 *   A = s Q K^T,  P = softmax_rows(A),  O = P V;
 *   dV = P^T dO,  dP = dO V^T,  dA = P o (dP - rowsum(O o dO)),  dQ = s dA K,  dK = s dA^T Q.
 * Every product is one cuBLAS strided-batched SGEMM over the heads of one sample
 * (head h starts h d columns further; row strides C for q/out, 2C for kv), so q, k
 * and v are read in place. cuBLAS is column-major: a row-major (r x c, ld) matrix is
 * its column-major transpose, so row-major Y = op(A) op(B) is computed as
 * column-major Y^T = op(B)^T op(A)^T. Only P (L x S per head, S = L / sr^2 after the
 * spatial reduction) is quadratic; it is saved for backward while recording, and
 * dP reuses one (heads, L, S) block per sample.
 *
 * bf16 q / kv / out (precision bf16) are stored bf16 but computed in f32: the op widens
 * them into the pass arena (released when it returns), runs the SGEMMs above and
 * rounds O once into the bf16 output. The products stay fp32 SGEMMs here; a bf16
 * tensor-core path (bf16 P, as fused attention kernels keep it) is left for later. */
#include <math.h>

#include "core/cuda/kernels.cuh"

using namespace t2s_cuda;

namespace {

typedef t2s_attention_args attention_args;

typedef struct attention_saved {
  float *p;  /* (N, heads, L, S) probabilities, device */
} attention_saved;

/* One row-major product batched over the heads of a sample, in column-major terms:
 * C (m x n, ldc) = alpha op(A) op(B) + beta C, batch stride sa/sb/sc. */
struct heads_gemm {
  cublasOperation_t ta, tb;
  int m, n, k;
  float alpha;
  const float *a; int lda; long long sa;
  const float *b; int ldb; long long sb;
  float beta;
  float *c; int ldc; long long sc;
};

t2s_status gemm_heads(t2s_ctx *ctx, const t2s_node *node, const heads_gemm &g, int heads) {
  /* beta 0: cuBLAS does not read C, so a NaN-filled gradient stays harmless */
  T2S_CU(ctx, node, cublasSgemmStridedBatched(t2s_cuda_be(ctx)->cublas, g.ta, g.tb, g.m, g.n, g.k,
                                              &g.alpha, g.a, g.lda, g.sa, g.b, g.ldb, g.sb,
                                              &g.beta, g.c, g.ldc, g.sc, heads));
  return T2S_OK;
}

/* Row softmax in place over rows of `cols` contiguous floats, one warp per row, with
 * the CPU's arithmetic: float max shift, expf, the sum in double, one float factor. */
__global__ void softmax_rows_kernel(int64_t rows, int64_t cols, float *a) {
  int lane = threadIdx.x & 31;
  for (int64_t r = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5; r < rows;
       r += ((int64_t)gridDim.x * blockDim.x) >> 5) {
    float *x = a + r * cols;
    float mx = -INFINITY;
    for (int64_t j = lane; j < cols; j += 32) mx = fmaxf(mx, x[j]);
    mx = warp_max(mx);
    double sum = 0.0;
    for (int64_t j = lane; j < cols; j += 32) {
      float e = expf(__fsub_rn(x[j], mx));
      x[j] = e;
      sum += e;
    }
    float inv = (float)(1.0 / warp_sum(sum));
    for (int64_t j = lane; j < cols; j += 32) x[j] = __fmul_rn(x[j], inv);
  }
}

/* dA = P o (dP - rowsum(O o dO)) in place over dP, for the (heads, L) rows of one
 * sample: row (h, i) dots O and dO over the d columns of head h at token i. */
__global__ void softmax_backward_kernel(int heads, int64_t l, int64_t s, int64_t d, int64_t c,
                                        const float *p, const float *o, const float *dout,
                                        float *dp) {
  int lane = threadIdx.x & 31;
  int64_t rows = (int64_t)heads * l;
  for (int64_t r = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5; r < rows;
       r += ((int64_t)gridDim.x * blockDim.x) >> 5) {
    int64_t h = r / l, i = r % l, off = i * c + h * d;
    double dot = 0.0;
    for (int64_t k = lane; k < d; k += 32) dot += (double)o[off + k] * dout[off + k];
    float fdot = (float)warp_sum(dot);
    for (int64_t j = lane; j < s; j += 32)
      dp[r * s + j] = __fmul_rn(p[r * s + j], __fsub_rn(dp[r * s + j], fdot));
  }
}

unsigned warp_blocks(int64_t rows) {
  int64_t b = (rows + 7) / 8;  /* 8 warps of 256 threads */
  if (b < 1) b = 1;
  if (b > 65535 * 8) b = 65535 * 8;
  return (unsigned)b;
}

t2s_status attention_forward(t2s_ctx *ctx, t2s_node *node) {
  const attention_args *a = (const attention_args *)node->args;
  int64_t d = a->c / a->heads, ls = a->l * a->s;
  float scale = (float)(1.0 / sqrt((double)d));
  cudaStream_t stream = t2s_cuda_be(ctx)->stream;
  float *p_all = NULL;
  if (node->recording) { /* saved: below the mark, so it outlives the temporaries */
    attention_saved *sv = (attention_saved *)t2s_host_scratch(ctx, sizeof *sv);
    if (sv == NULL) return ctx->err.status;
    sv->p = p_all = (float *)t2s_scratch(ctx, (size_t)(a->n * a->heads * ls) * sizeof(float));
    if (p_all == NULL) return ctx->err.status;
    node->saved = sv;
  }
  t2s_arena_mark mark = t2s_scratch_mark(ctx);
  if (!node->recording &&
      (p_all = (float *)t2s_scratch(ctx, (size_t)(a->heads * ls) * sizeof(float))) == NULL)
    return ctx->err.status;
  bool out16 = node->out->dtype == T2S_BF16;
  const float *q_all = t2s_cuda_f32_of(ctx, node, node->in[0]);
  const float *kv_all = q_all ? t2s_cuda_f32_of(ctx, node, node->in[1]) : NULL;
  float *o_all = out16 ? (float *)t2s_scratch(ctx, (size_t)t2s_numel(node->out) * sizeof(float))
                       : t2s_f32(node->out);
  if (q_all == NULL || kv_all == NULL || o_all == NULL) return ctx->err.status;
  int c = (int)a->c, c2 = (int)(2 * a->c), id = (int)d, l = (int)a->l, s = (int)a->s;
  for (int64_t n = 0; n < a->n; n++) {
    const float *q = q_all + n * a->l * a->c;
    const float *k = kv_all + n * a->s * 2 * a->c, *v = k + a->c;
    float *o = o_all + n * a->l * a->c;
    float *p = node->recording ? p_all + n * a->heads * ls : p_all;
    /* P^T (S x L) = s K (S x d) Q^T (d x L) */
    heads_gemm g1 = {CUBLAS_OP_T, CUBLAS_OP_N, s, l, id, scale, k, c2, d, q, c, d,
                     0.0f, p, s, ls};
    t2s_status st = gemm_heads(ctx, node, g1, a->heads);
    if (st != T2S_OK) return st;
    softmax_rows_kernel<<<warp_blocks(a->heads * a->l), 256, 0, stream>>>(a->heads * a->l, a->s, p);
    T2S_CU_LAUNCHED(ctx, node, "softmax_rows_kernel");
    /* O^T (d x L) = V^T (d x S) P^T (S x L) */
    heads_gemm g2 = {CUBLAS_OP_N, CUBLAS_OP_N, id, l, s, 1.0f, v, c2, d, p, s, ls,
                     0.0f, o, c, d};
    if ((st = gemm_heads(ctx, node, g2, a->heads)) != T2S_OK) return st;
  }
  if (out16) {
    t2s_status st = t2s_cuda_f32_to_bf16(ctx, node, o_all, (t2s_bf16 *)node->out->data,
                                         t2s_numel(node->out));
    if (st != T2S_OK) return st;
  }
  t2s_scratch_release(ctx, mark);  /* stream order: later kernels run after these */
  ctx->flops += 4.0 * (double)a->n * (double)ls * (double)a->c;
  return T2S_OK;
}

t2s_status attention_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  const attention_args *a = (const attention_args *)node->args;
  const attention_saved *sv = (const attention_saved *)node->saved;
  if (sv == NULL) {
    t2s_ctx_fail(ctx, T2S_ERR_INVALID, "op 'attention' on cuda: backward without the forward's "
                 "probabilities (the forward ran with gradients off)");
    return T2S_ERR_INVALID;
  }
  t2s_tensor *qt = node->in[0], *kvt = node->in[1];
  bool want_q = t2s_wants_grad(qt), want_kv = t2s_wants_grad(kvt);
  int64_t d = a->c / a->heads, ls = a->l * a->s;
  float scale = (float)(1.0 / sqrt((double)d));
  cudaStream_t stream = t2s_cuda_be(ctx)->stream;
  t2s_arena_mark mark = t2s_scratch_mark(ctx);
  float *dp = (float *)t2s_scratch(ctx, (size_t)(a->heads * ls) * sizeof(float));
  const float *q_all = dp ? t2s_cuda_f32_of(ctx, node, qt) : NULL;
  const float *kv_all = q_all ? t2s_cuda_f32_of(ctx, node, kvt) : NULL;
  const float *o_all = kv_all ? t2s_cuda_f32_of(ctx, node, node->out) : NULL;
  if (o_all == NULL) return ctx->err.status;
  int c = (int)a->c, c2 = (int)(2 * a->c), id = (int)d, l = (int)a->l, s = (int)a->s;
  t2s_status st = T2S_OK;
  for (int64_t n = 0; n < a->n && st == T2S_OK; n++) {
    int64_t qoff = n * a->l * a->c, kvoff = n * a->s * 2 * a->c;
    const float *q = q_all + qoff, *k = kv_all + kvoff, *v = k + a->c;
    const float *o = o_all + qoff, *dout = node->out->grad + qoff;
    const float *p = sv->p + n * a->heads * ls;
    if (want_kv) { /* dV^T (d x S) = dO^T (d x L) P (L x S) */
      heads_gemm g = {CUBLAS_OP_N, CUBLAS_OP_T, id, s, l, 1.0f, dout, c, d, p, s, ls,
                      beta[1], kvt->grad + kvoff + a->c, c2, d};
      if ((st = gemm_heads(ctx, node, g, a->heads)) != T2S_OK) break;
    }
    /* dP^T (S x L) = V (S x d) dO^T (d x L), then dA in place */
    heads_gemm gp = {CUBLAS_OP_T, CUBLAS_OP_N, s, l, id, 1.0f, v, c2, d, dout, c, d,
                     0.0f, dp, s, ls};
    if ((st = gemm_heads(ctx, node, gp, a->heads)) != T2S_OK) break;
    softmax_backward_kernel<<<warp_blocks(a->heads * a->l), 256, 0, stream>>>(
        a->heads, a->l, a->s, d, a->c, p, o, dout, dp);
    T2S_CU_LAUNCHED(ctx, node, "softmax_backward_kernel");
    if (want_q) { /* dQ^T (d x L) = s K^T (d x S) dA^T (S x L) */
      heads_gemm g = {CUBLAS_OP_N, CUBLAS_OP_N, id, l, s, scale, k, c2, d, dp, s, ls,
                      beta[0], qt->grad + qoff, c, d};
      if ((st = gemm_heads(ctx, node, g, a->heads)) != T2S_OK) break;
    }
    if (want_kv) { /* dK^T (d x S) = s Q^T (d x L) dA (L x S) */
      heads_gemm g = {CUBLAS_OP_N, CUBLAS_OP_T, id, s, l, scale, q, c, d, dp, s, ls,
                      beta[1], kvt->grad + kvoff, c2, d};
      st = gemm_heads(ctx, node, g, a->heads);
    }
  }
  t2s_scratch_release(ctx, mark);
  return st;
}

}  // namespace

T2S_CUDA_OP(attention)
