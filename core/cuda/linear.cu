/* GEMM-shaped ops on CUDA through cuBLASLt: linear and matmul, with the maths of
 * core/ops/linear.c.
 *
 * Everything is row-major. cuBLASLt is column-major, so a row-major product
 * C (M, N) = op(A) op(B) is computed as the column-major C^T (N, M) = op(B)^T op(A)^T:
 * the operands swap places and keep their transpose flags (a row-major matrix read
 * column-major is its transpose). The linear bias is cuBLASLt's BIAS epilogue: in
 * the column-major D (N rows) it adds bias[row], i.e. bias[n] to every row-major row.
 *
 * Precision (t2s_cuda_set_precision): fp32 uses CUBLAS_COMPUTE_32F (no TF32: the
 * result stays within 1e-4 of the CPU reference), tf32 CUBLAS_COMPUTE_32F_FAST_TF32.
 * With ctx->deterministic the heuristic may only offer algorithms without split-K
 * reductions across CTAs (reduction scheme NONE), so repeated runs agree bitwise.
 *
 * A plan (descriptors and the algorithm) is cached per distinct problem (sizes,
 * leading dims, batch strides, epilogue, beta == 0, pointer alignment, precision,
 * determinism) in the backend's list; the steady state makes no heuristic call.
 * The backward beta goes straight into cuBLASLt's beta (0: C is not read, 1: add).
 * The bias gradient is the deterministic column sum (kernels.cuh).
 *
 * bf16 (the output is T2S_BF16, precision bf16; note in core/cuda/backend.h): A and B
 * are bf16 (f32 operands, the weight and the bias included, are cast into the pass
 * arena on every call; backward casts again rather than keeping forward's copies
 * alive through the pass), CUBLAS_COMPUTE_32F accumulates in fp32, the forward output
 * is bf16 and the backward writes the f32 gradients directly (bf16 A/B, f32 C/D). */
#include <stdlib.h>
#include <string.h>

#include "core/cuda/kernels.cuh"

using namespace t2s_cuda;

enum { GEMM_KEY_LEN = 20 };

struct t2s_gemm_plan {
  t2s_gemm_plan *next;
  int64_t key[GEMM_KEY_LEN];
  cublasLtMatmulDesc_t desc;
  cublasLtMatrixLayout_t la, lb, lc;
  cublasLtMatmulAlgo_t algo;
  size_t workspace;
};

namespace {

typedef t2s_matmul_args matmul_args;

/* One row-major problem: C = op(A) op(B) [+ bias per column], batch strides in
 * elements (0: the operand is shared by every batch). ab16: A, B (and the bias) are
 * bf16, else f32; c16: C is bf16, else f32. */
struct gemm_rm {
  int ta, tb;
  int64_t m, n, k;
  const void *a; int64_t lda, sa;
  const void *b; int64_t ldb, sb;
  void *c; int64_t ldc, sc;
  int64_t batch;
  const void *bias;
  float beta;
  bool ab16 = false, c16 = false;
};

cudaDataType_t type_of(bool bf16) { return bf16 ? CUDA_R_16BF : CUDA_R_32F; }
size_t size_of(bool bf16) { return bf16 ? sizeof(t2s_bf16) : sizeof(float); }
/* p advanced by i elements of the given type */
const void *advance(const void *p, int64_t i, bool bf16) {
  return (const char *)p + i * (int64_t)size_of(bf16);
}

int alignment_of(const void *p) {
  uintptr_t v = (uintptr_t)p;
  int al = 256;
  while (al > 2 && (v % (uintptr_t)al) != 0) al /= 2;  /* bf16 rows may be 2-aligned */
  return al;
}

void plan_free(t2s_gemm_plan *p) {
  /* Teardown: statuses are not actionable. */
  if (p->desc) (void)cublasLtMatmulDescDestroy(p->desc);
  if (p->la) (void)cublasLtMatrixLayoutDestroy(p->la);
  if (p->lb) (void)cublasLtMatrixLayoutDestroy(p->lb);
  if (p->lc) (void)cublasLtMatrixLayoutDestroy(p->lc);
  free(p);
}

/* A column-major layout (rows, cols, ld) with the batch geometry. */
t2s_status make_layout(t2s_ctx *ctx, const t2s_node *node, cublasLtMatrixLayout_t *l, bool bf16,
                       int64_t rows, int64_t cols, int64_t ld, int64_t batch, int64_t stride) {
  T2S_CU(ctx, node, cublasLtMatrixLayoutCreate(l, type_of(bf16), (uint64_t)rows, (uint64_t)cols, ld));
  if (batch > 1) {
    int32_t count = (int32_t)batch;
    T2S_CU(ctx, node, cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                                                        &count, sizeof count));
    T2S_CU(ctx, node, cublasLtMatrixLayoutSetAttribute(
                          *l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride));
  }
  return T2S_OK;
}

t2s_status no_algorithm(t2s_ctx *ctx, const t2s_node *node, const gemm_rm &g) {
  t2s_ctx_fail(ctx, T2S_ERR_UNSUPPORTED,
               "op '%s' on cuda: cuBLASLt offers no%s algorithm for the row-major product "
               "(%lld x %lld) = op(A) (%lld x %lld) op(B), batch %lld%s",
               node ? t2s_ops[node->op].name : "gemm", ctx->deterministic ? " deterministic" : "",
               (long long)g.m, (long long)g.n, (long long)g.m, (long long)g.k, (long long)g.batch,
               ctx->deterministic ? " (try deterministic: false)" : "");
  return T2S_ERR_UNSUPPORTED;
}

/* Descriptors and heuristic algorithm for g (column-major view: A' = B, B' = A). */
t2s_status plan_make(t2s_ctx *ctx, const t2s_node *node, const gemm_rm &g, int al,
                     t2s_gemm_plan *p) {
  t2s_cuda_backend *be = t2s_cuda_be(ctx);
  /* bf16 operands: fp32 accumulation (tensor cores take bf16 without a fast mode) */
  cublasComputeType_t compute = be->precision == T2S_PRECISION_TF32 && !g.ab16
                                    ? CUBLAS_COMPUTE_32F_FAST_TF32
                                    : CUBLAS_COMPUTE_32F;
  T2S_CU(ctx, node, cublasLtMatmulDescCreate(&p->desc, compute, CUDA_R_32F));
  cublasOperation_t opa = g.tb ? CUBLAS_OP_T : CUBLAS_OP_N, opb = g.ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  T2S_CU(ctx, node, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa,
                                                    sizeof opa));
  T2S_CU(ctx, node, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb,
                                                    sizeof opb));
  if (g.bias != NULL) {
    cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    cudaDataType_t bt = type_of(g.ab16);
    T2S_CU(ctx, node, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi,
                                                      sizeof epi));
    T2S_CU(ctx, node, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                                      &bt, sizeof bt));
  }
  /* A' = B stored row-major (K, N) [tb: (N, K)] = column-major (N, K) [(K, N)] */
  t2s_status st = make_layout(ctx, node, &p->la, g.ab16, g.tb ? g.k : g.n, g.tb ? g.n : g.k,
                              g.ldb, g.batch, g.sb);
  if (st == T2S_OK)
    st = make_layout(ctx, node, &p->lb, g.ab16, g.ta ? g.m : g.k, g.ta ? g.k : g.m, g.lda,
                     g.batch, g.sa);
  if (st == T2S_OK) st = make_layout(ctx, node, &p->lc, g.c16, g.n, g.m, g.ldc, g.batch, g.sc);
  if (st != T2S_OK) return st;
  cublasLtMatmulPreference_t pref;
  T2S_CU(ctx, node, cublasLtMatmulPreferenceCreate(&pref));
  uint64_t ws = be->workspace_bytes;
  uint32_t scheme = ctx->deterministic ? CUBLASLT_REDUCTION_SCHEME_NONE : CUBLASLT_REDUCTION_SCHEME_MASK;
  uint32_t al32 = (uint32_t)al;
  cublasStatus_t s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                          &ws, sizeof ws);
  if (s == CUBLAS_STATUS_SUCCESS)
    s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK,
                                             &scheme, sizeof scheme);
  const cublasLtMatmulPreferenceAttributes_t align_attr[4] = {
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
  for (int i = 0; i < 4 && s == CUBLAS_STATUS_SUCCESS; i++)
    s = cublasLtMatmulPreferenceSetAttribute(pref, align_attr[i], &al32, sizeof al32);
  cublasLtMatmulHeuristicResult_t res[8];
  int got = 0;
  if (s == CUBLAS_STATUS_SUCCESS)
    s = cublasLtMatmulAlgoGetHeuristic(be->cublaslt, p->desc, p->la, p->lb, p->lc, p->lc, pref, 8,
                                       res, &got);
  (void)cublasLtMatmulPreferenceDestroy(pref);
  if (s == CUBLAS_STATUS_NOT_SUPPORTED || (s == CUBLAS_STATUS_SUCCESS && got == 0))
    return no_algorithm(ctx, node, g);
  T2S_CU(ctx, node, s);
  p->algo = res[0].algo;
  p->workspace = res[0].workspaceSize;
  return T2S_OK;
}

t2s_gemm_plan *plan_get(t2s_ctx *ctx, const t2s_node *node, const gemm_rm &g) {
  t2s_cuda_backend *be = t2s_cuda_be(ctx);
  int al = alignment_of(g.a);
  int ab = alignment_of(g.b), ac = alignment_of(g.c), abias = g.bias ? alignment_of(g.bias) : 256;
  if (ab < al) al = ab;
  if (ac < al) al = ac;
  if (abias < al) al = abias;
  int64_t key[GEMM_KEY_LEN] = {g.ta, g.tb, g.m, g.n, g.k, g.lda, g.ldb, g.ldc, g.sa, g.sb, g.sc,
                               g.batch, g.bias != NULL, g.beta != 0.0f, al, be->precision,
                               ctx->deterministic != 0, (int64_t)be->workspace_bytes, g.ab16,
                               g.c16};
  for (t2s_gemm_plan *p = be->gemm_plans; p != NULL; p = p->next)
    if (memcmp(p->key, key, sizeof key) == 0) return p;
  t2s_gemm_plan *p = (t2s_gemm_plan *)calloc(1, sizeof *p);
  if (p == NULL) {
    t2s_ctx_fail(ctx, T2S_ERR_NOMEM, "cuda gemm: out of host memory for a plan");
    return NULL;
  }
  memcpy(p->key, key, sizeof key);
  if (plan_make(ctx, node, g, al, p) != T2S_OK) {
    plan_free(p);
    return NULL;
  }
  p->next = be->gemm_plans;
  be->gemm_plans = p;
  return p;
}

t2s_status gemm_run(t2s_ctx *ctx, const t2s_node *node, const gemm_rm &g) {
  t2s_cuda_backend *be = t2s_cuda_be(ctx);
  if (g.m == 0 || g.n == 0 || g.batch == 0) return T2S_OK;
  if (g.k == 0) {
    /* an empty sum: C = beta C (+ bias, which no caller passes with K = 0) */
    if (g.beta == 0.0f)
      for (int64_t i = 0; i < g.batch; i++)
        T2S_CU(ctx, node, cudaMemsetAsync((void *)advance(g.c, i * g.sc, g.c16), 0,
                                          (size_t)(g.m * g.ldc) * size_of(g.c16), be->stream));
    return T2S_OK;
  }
  t2s_gemm_plan *p = plan_get(ctx, node, g);
  if (p == NULL) return ctx->err.status;
  if (g.bias != NULL)
    T2S_CU(ctx, node, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                      &g.bias, sizeof g.bias));
  const float one = 1.0f;
  T2S_CU(ctx, node, cublasLtMatmul(be->cublaslt, p->desc, &one, g.b, p->la, g.a, p->lb, &g.beta,
                                   g.c, p->lc, g.c, p->lc, &p->algo, be->workspace, p->workspace,
                                   be->stream));
  return T2S_OK;
}

/* ---- linear: Y (M, N) = X (M, K) W^T + b ------------------------------------- */

struct bias_grad_f {
  const float *dy; int n;
  __device__ void operator()(int64_t p, int c, double *v) const { v[0] = dy[p * n + c]; }
};
struct put_from_double {
  const double *src; float *dst; bool acc;
  __device__ void operator()(int64_t i) const { put(dst, i, (float)src[i], acc); }
};

t2s_status linear_forward(t2s_ctx *ctx, t2s_node *node) {
  const t2s_tensor *x = node->in[0], *w = node->in[1], *b = node->in[2];
  int64_t n = w->shape[0], k = w->shape[1], m = t2s_numel(x) / k;
  if (x->ndim == 4 && x->layout == T2S_LAYOUT_NHWC) {
    /* the logical last dim (W) of an NHWC activation is not contiguous */
    t2s_ctx_fail(ctx, T2S_ERR_INVALID, "op 'linear' on cuda: x is a 4-d NHWC activation; flatten "
                 "it to tokens (N, HW, C) first");
    return T2S_ERR_INVALID;
  }
  gemm_rm g = {0, 1, m, n, k, x->data, k, 0, w->data, k, 0, node->out->data, n, 0, 1,
               b ? b->data : NULL, 0.0f};
  ctx->flops += 2.0 * (double)m * (double)n * (double)k;
  if (node->out->dtype != T2S_BF16)
    return t2s_cuda_expect_f32(ctx, node) == T2S_OK ? gemm_run(ctx, node, g) : ctx->err.status;
  g.ab16 = g.c16 = true;
  g.a = t2s_cuda_bf16_of(ctx, node, x);
  g.b = t2s_cuda_bf16_of(ctx, node, w);
  if (b != NULL) g.bias = t2s_cuda_bf16_of(ctx, node, b);
  if (g.a == NULL || g.b == NULL || (b != NULL && g.bias == NULL)) return ctx->err.status;
  return gemm_run(ctx, node, g);
}

/* The backward operands of a bf16 GEMM: dy cast to bf16, the inputs as bf16 (cast
 * when f32). f32: the tensors' own data. NULL entries with ctx->err set on failure. */
struct grad_operands {
  const void *dy, *in0, *in1;
  bool ab16;
};
grad_operands grad_operands_of(t2s_ctx *ctx, const t2s_node *node) {
  const t2s_tensor *x0 = node->in[0], *x1 = node->in[1];
  if (node->out->dtype != T2S_BF16) return grad_operands{node->out->grad, x0->data, x1->data, false};
  grad_operands o;
  o.ab16 = true;
  o.dy = t2s_cuda_bf16_cast(ctx, node, node->out->grad, t2s_numel(node->out));
  o.in0 = o.dy ? t2s_cuda_bf16_of(ctx, node, x0) : NULL;
  o.in1 = o.in0 ? t2s_cuda_bf16_of(ctx, node, x1) : NULL;
  return o;
}

t2s_status linear_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  t2s_tensor *x = node->in[0], *w = node->in[1], *b = node->in[2];
  int64_t n = w->shape[0], k = w->shape[1], m = t2s_numel(x) / k;
  const float *dy = node->out->grad;
  t2s_status st = T2S_OK;
  grad_operands o = grad_operands_of(ctx, node);
  if (o.in1 == NULL) return ctx->err.status;
  if (t2s_wants_grad(x)) /* dX (M, K) = dY (M, N) W (N, K) */
    st = gemm_run(ctx, node, gemm_rm{0, 0, m, k, n, o.dy, n, 0, o.in1, k, 0, x->grad, k, 0, 1,
                                     NULL, beta[0], o.ab16});
  if (st == T2S_OK && t2s_wants_grad(w)) { /* dW (N, K) = dY^T X */
    if (m == 0) {
      if (beta[1] == 0.0f)
        T2S_CU(ctx, node, cudaMemsetAsync(w->grad, 0, (size_t)(n * k) * sizeof(float),
                                          t2s_cuda_be(ctx)->stream));
    } else {
      st = gemm_run(ctx, node, gemm_rm{1, 0, n, k, m, o.dy, n, 0, o.in0, k, 0, w->grad, k, 0, 1,
                                       NULL, beta[1], o.ab16});
    }
  }
  if (st == T2S_OK && t2s_wants_grad(b)) {
    double *sums = scratch_doubles(ctx, n);
    if (sums == NULL) return ctx->err.status;
    st = colsum<1>(ctx, node, m, (int)n, bias_grad_f{dy, (int)n}, sums);
    if (st == T2S_OK) st = launch_each(ctx, node, n, put_from_double{sums, b->grad, beta[2] != 0.0f});
  }
  return st;
}

/* ---- matmul ------------------------------------------------------------------- */

t2s_status matmul_forward(t2s_ctx *ctx, t2s_node *node) {
  const matmul_args *a = (const matmul_args *)node->args;
  int64_t lda = a->trans_a ? a->m : a->k, ldb = a->trans_b ? a->k : a->n;
  int64_t sa = a->batch_a > 1 ? a->m * a->k : 0, sb = a->batch_b > 1 ? a->k * a->n : 0;
  gemm_rm g = {a->trans_a, a->trans_b, a->m, a->n, a->k, node->in[0]->data, lda, sa,
               node->in[1]->data, ldb, sb, node->out->data, a->n, a->m * a->n, a->batch,
               NULL, 0.0f};
  ctx->flops += 2.0 * (double)a->batch * (double)a->m * (double)a->n * (double)a->k;
  if (node->out->dtype != T2S_BF16)
    return t2s_cuda_expect_f32(ctx, node) == T2S_OK ? gemm_run(ctx, node, g) : ctx->err.status;
  g.ab16 = g.c16 = true;
  g.a = t2s_cuda_bf16_of(ctx, node, node->in[0]);
  g.b = g.a ? t2s_cuda_bf16_of(ctx, node, node->in[1]) : NULL;
  return g.b ? gemm_run(ctx, node, g) : ctx->err.status;
}

/* The gradient of one operand: g describes batch 0 with the strides of a batched
 * call. A broadcast operand (its stride sc is 0) sums over the batch: one call per
 * batch, the first with the caller's beta and the rest accumulating, in order. */
t2s_status grad_gemm(t2s_ctx *ctx, const t2s_node *node, gemm_rm g) {
  if (g.sc != 0 || g.batch <= 1) return gemm_run(ctx, node, g);
  int64_t batch = g.batch;
  gemm_rm one = g;
  one.batch = 1;
  for (int64_t i = 0; i < batch; i++) {
    one.a = advance(g.a, i * g.sa, g.ab16);
    one.b = advance(g.b, i * g.sb, g.ab16);
    one.beta = i > 0 ? 1.0f : g.beta;
    t2s_status st = gemm_run(ctx, node, one);
    if (st != T2S_OK) return st;
  }
  return T2S_OK;
}

t2s_status matmul_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  const matmul_args *g = (const matmul_args *)node->args;
  t2s_tensor *at = node->in[0], *bt = node->in[1];
  int64_t m = g->m, n = g->n, k = g->k, mn = m * n;
  int64_t lda = g->trans_a ? m : k, ldb = g->trans_b ? k : n;
  int64_t sa = g->batch_a > 1 ? m * k : 0, sb = g->batch_b > 1 ? k * n : 0;
  cudaStream_t s = t2s_cuda_be(ctx)->stream;
  if (m == 0 || n == 0 || k == 0) {
    if (t2s_wants_grad(at) && beta[0] == 0.0f)
      T2S_CU(ctx, node, cudaMemsetAsync(at->grad, 0, (size_t)t2s_numel(at) * sizeof(float), s));
    if (t2s_wants_grad(bt) && beta[1] == 0.0f)
      T2S_CU(ctx, node, cudaMemsetAsync(bt->grad, 0, (size_t)t2s_numel(bt) * sizeof(float), s));
    return T2S_OK;
  }
  grad_operands o = grad_operands_of(ctx, node);
  if (o.in1 == NULL) return ctx->err.status;
  const void *dc = o.dy, *a = o.in0, *b = o.in1;
  t2s_status st = T2S_OK;
  if (t2s_wants_grad(at)) {
    /* A (M, K): dC op(B)^T;  A stored (K, M): op(B) dC^T */
    gemm_rm ga = !g->trans_a
                     ? gemm_rm{0, g->trans_b ? 0 : 1, m, k, n, dc, n, mn, b, ldb, sb, at->grad, k,
                               sa, g->batch, NULL, beta[0], o.ab16}
                     : gemm_rm{g->trans_b ? 1 : 0, 1, k, m, n, b, ldb, sb, dc, n, mn, at->grad, m,
                               sa, g->batch, NULL, beta[0], o.ab16};
    st = grad_gemm(ctx, node, ga);
  }
  if (st == T2S_OK && t2s_wants_grad(bt)) {
    /* B (K, N): op(A)^T dC;  B stored (N, K): dC^T op(A) */
    gemm_rm gb = !g->trans_b
                     ? gemm_rm{g->trans_a ? 0 : 1, 0, k, n, m, a, lda, sa, dc, n, mn, bt->grad, n,
                               sb, g->batch, NULL, beta[1], o.ab16}
                     : gemm_rm{1, g->trans_a ? 1 : 0, n, k, m, dc, n, mn, a, lda, sa, bt->grad, k,
                               sb, g->batch, NULL, beta[1], o.ab16};
    st = grad_gemm(ctx, node, gb);
  }
  return st;
}

}  // namespace

void t2s_cuda_gemm_plans_free(t2s_cuda_backend *be) {
  for (t2s_gemm_plan *p = be->gemm_plans; p != NULL;) {
    t2s_gemm_plan *next = p->next;
    plan_free(p);
    p = next;
  }
  be->gemm_plans = NULL;
}

T2S_CUDA_OP(linear)
T2S_CUDA_OP(matmul)
