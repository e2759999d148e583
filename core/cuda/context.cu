/* Backend state of one execution context: the stream all ops run on, the cuBLAS,
 * cuBLASLt and cuDNN handles bound to it, a workspace and the reduction buffer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cuda/backend.h"

t2s_status t2s_cuda_fail(t2s_ctx *ctx, const t2s_node *node, const char *call, const char *why,
                         const char *file, int line) {
  char shapes[512] = "";
  if (node != NULL) {
    size_t used = 0;
    for (int i = 0; i < node->n_in && used < sizeof shapes; i++) {
      char s[96] = "none";
      if (node->in[i] != NULL) t2s_shape_str(node->in[i], s, sizeof s);
      used += (size_t)snprintf(shapes + used, sizeof shapes - used, "%s%s", i ? ", " : "", s);
    }
    if (node->out != NULL && used < sizeof shapes) {
      char s[96];
      snprintf(shapes + used, sizeof shapes - used, " -> %s", t2s_shape_str(node->out, s, sizeof s));
    }
  }
  /* ops defined outside the core table (losses/) have node->op == T2S_OP_COUNT */
  const char *op = node == NULL ? "(backend)" : node->desc ? node->desc->name : t2s_ops[node->op].name;
  t2s_ctx_fail(ctx, T2S_ERR_BACKEND, "op '%s' on cuda: %s failed (%s) with inputs %s at %s:%d", op,
               call, why, shapes, file, line);
  return T2S_ERR_BACKEND;
}

t2s_status t2s_cuda_workspace_reserve(t2s_ctx *ctx, const t2s_node *node, size_t bytes) {
  t2s_cuda_backend *be = t2s_cuda_be(ctx);
  if (bytes <= be->workspace_bytes) return T2S_OK;
  /* Earlier ops may still be using the old workspace on the stream. */
  T2S_CU(ctx, node, cudaStreamSynchronize(be->stream));
  T2S_CU(ctx, node, cudaFree(be->workspace));
  be->workspace = NULL;
  be->workspace_bytes = 0;
  T2S_CU(ctx, node, cudaMalloc(&be->workspace, bytes));
  be->workspace_bytes = bytes;
  return T2S_OK;
}

static void backend_free(t2s_cuda_backend *be) {
  if (be == NULL) return;
  t2s_cuda_conv_plans_free(be);
  t2s_cuda_gemm_plans_free(be);
  /* Teardown: statuses are not actionable, the handles are gone either way. */
  if (be->stream) (void)cudaStreamSynchronize(be->stream);
  if (be->cudnn) (void)cudnnDestroy(be->cudnn);
  if (be->cublaslt) (void)cublasLtDestroy(be->cublaslt);
  if (be->cublas) (void)cublasDestroy(be->cublas);
  if (be->workspace) (void)cudaFree(be->workspace);
  if (be->reduce) (void)cudaFree(be->reduce);
  if (be->stream) (void)cudaStreamDestroy(be->stream);
  free(be);
}

/* Checked call during initialisation: no node yet, the message goes to err. */
#define INIT_CHECK(call)                                                                    \
  do {                                                                                      \
    auto st_ = (call);                                                                      \
    if (!t2s_cuda_ok(st_)) {                                                                \
      t2s_error_set(err, T2S_ERR_BACKEND,                                                   \
                    "creating the CUDA context on device %d: %s failed (%s); check that the " \
                    "driver matches the CUDA %d toolkit this build used",                   \
                    be->device, #call, t2s_cuda_errstr(st_), CUDART_VERSION / 1000);        \
      backend_free(be);                                                                     \
      return T2S_ERR_BACKEND;                                                               \
    }                                                                                       \
  } while (0)

t2s_status t2s_cuda__ctx_init(t2s_ctx *ctx, t2s_error *err) {
  if (t2s_cuda__device_count() == 0)
    return t2s_error_set(err, T2S_ERR_UNSUPPORTED,
                         "no CUDA device is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES), "
                         "or run with device: cpu");
  t2s_cuda_backend *be = (t2s_cuda_backend *)calloc(1, sizeof *be);
  if (be == NULL)
    return t2s_error_set(err, T2S_ERR_NOMEM, "out of host memory creating the CUDA backend");
  INIT_CHECK(cudaGetDevice(&be->device));
  /* A blocking stream: it stays ordered with the legacy default stream, on which
   * t2s_device_copy (core/cuda/memory.cu) runs, so host copies see every finished op. */
  INIT_CHECK(cudaStreamCreateWithFlags(&be->stream, cudaStreamDefault));
  INIT_CHECK(cublasCreate(&be->cublas));
  INIT_CHECK(cublasSetStream(be->cublas, be->stream));
  /* Default math keeps fp32 GEMMs in fp32 (TF32 needs CUBLAS_TF32_TENSOR_OP_MATH), so
   * the CUDA ops stay comparable with the CPU reference at 1e-5. */
  INIT_CHECK(cublasSetMathMode(be->cublas, CUBLAS_DEFAULT_MATH));
  INIT_CHECK(cublasLtCreate(&be->cublaslt));
  INIT_CHECK(cudnnCreate(&be->cudnn));
  INIT_CHECK(cudnnSetStream(be->cudnn, be->stream));
  INIT_CHECK(cudaMalloc((void **)&be->reduce, T2S_CUDA_REDUCE_BLOCKS * sizeof(double)));
  be->workspace_bytes = (size_t)32 << 20;
  INIT_CHECK(cudaMalloc(&be->workspace, be->workspace_bytes));
  ctx->backend = be;
  return T2S_OK;
}

void t2s_cuda__ctx_destroy(t2s_ctx *ctx) {
  if (ctx == NULL) return;
  backend_free(t2s_cuda_be(ctx));
  ctx->backend = NULL;
}

/* Precision of the GEMM-shaped work. fp32: cuDNN FMA math and CUBLAS_COMPUTE_32F,
 * comparable with the CPU reference; tf32: TF32 tensor cores in cuDNN and cuBLASLt
 * (10-bit mantissa products, fp32 accumulation); bf16: bf16 activations from the
 * GEMM-shaped ops on (design note in core/cuda/backend.h). The plan caches are keyed
 * by the precision and the dtypes, so switching is cheap and the old plans stay valid.
 * Switch between passes only: a pass's activations keep the dtype they were made in. */
t2s_status t2s_cuda__set_precision(t2s_ctx *ctx, t2s_precision mode) {
  if (ctx == NULL || ctx->device != T2S_DEV_CUDA || ctx->backend == NULL) {
    if (ctx != NULL)
      t2s_ctx_fail(ctx, T2S_ERR_INVALID, "precision is a CUDA setting; this context runs on %s "
                   "(use precision: fp32 there)", t2s_device_name(ctx->device));
    return T2S_ERR_INVALID;
  }
  if (mode != T2S_PRECISION_FP32 && mode != T2S_PRECISION_TF32 && mode != T2S_PRECISION_BF16) {
    t2s_ctx_fail(ctx, T2S_ERR_INVALID, "precision %d: CUDA supports fp32, tf32 and bf16",
                 (int)mode);
    return ctx->err.status;
  }
  t2s_cuda_backend *be = t2s_cuda_be(ctx);
  be->precision = mode;
  ctx->act_dtype = mode == T2S_PRECISION_BF16 ? T2S_BF16 : T2S_F32;
  cublasStatus_t st = cublasSetMathMode(be->cublas, mode == T2S_PRECISION_TF32
                                                        ? CUBLAS_TF32_TENSOR_OP_MATH
                                                        : CUBLAS_DEFAULT_MATH);
  if (st != CUBLAS_STATUS_SUCCESS)
    return t2s_cuda_fail(ctx, NULL, "cublasSetMathMode", cublasGetStatusString(st), __FILE__,
                         __LINE__);
  return T2S_OK;
}

t2s_status t2s_cuda__sync(t2s_error *err) {
  cudaError_t st = cudaDeviceSynchronize();
  if (st != cudaSuccess)
    return t2s_error_set(err, T2S_ERR_BACKEND, "cudaDeviceSynchronize failed: %s (an earlier "
                         "kernel faulted; rerun with CUDA_LAUNCH_BLOCKING=1 to find it)",
                         cudaGetErrorString(st));
  return T2S_OK;
}

/* ---- bf16 casts (precision bf16; design note in core/cuda/backend.h) ------------- */

namespace {
__global__ void to_bf16_kernel(int64_t n, const float *src, t2s_bf16 *dst) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    dst[i] = __float2bfloat16_rn(src[i]);
}
__global__ void from_bf16_kernel(int64_t n, const t2s_bf16 *src, float *dst, bool acc) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x) {
    float v = __bfloat162float(src[i]);
    dst[i] = acc ? dst[i] + v : v;  /* never reads dst when writing (NaN-safe) */
  }
}
}  // namespace

t2s_status t2s_cuda_f32_to_bf16(t2s_ctx *ctx, const t2s_node *node, const float *src,
                                t2s_bf16 *dst, int64_t n) {
  if (n <= 0) return T2S_OK;
  to_bf16_kernel<<<t2s_cuda_blocks(n), 256, 0, t2s_cuda_be(ctx)->stream>>>(n, src, dst);
  T2S_CU_LAUNCHED(ctx, node, "to_bf16_kernel");
  return T2S_OK;
}

t2s_bf16 *t2s_cuda_bf16_cast(t2s_ctx *ctx, const t2s_node *node, const float *src, int64_t n) {
  t2s_bf16 *dst = (t2s_bf16 *)t2s_scratch(ctx, (size_t)(n > 0 ? n : 1) * sizeof(t2s_bf16));
  if (dst == NULL) return NULL;
  return t2s_cuda_f32_to_bf16(ctx, node, src, dst, n) == T2S_OK ? dst : NULL;
}

const t2s_bf16 *t2s_cuda_bf16_of(t2s_ctx *ctx, const t2s_node *node, const t2s_tensor *t) {
  if (t->dtype == T2S_BF16) return (const t2s_bf16 *)t->data;
  return t2s_cuda_bf16_cast(ctx, node, t2s_f32(t), t2s_numel(t));
}

const float *t2s_cuda_f32_of(t2s_ctx *ctx, const t2s_node *node, const t2s_tensor *t) {
  if (t->dtype != T2S_BF16) return t2s_f32(t);
  int64_t n = t2s_numel(t);
  float *dst = (float *)t2s_scratch(ctx, (size_t)(n > 0 ? n : 1) * sizeof(float));
  if (dst == NULL) return NULL;
  return t2s_cuda_bf16_to_f32(ctx, node, (const t2s_bf16 *)t->data, dst, n, false) == T2S_OK
             ? dst
             : NULL;
}

t2s_status t2s_cuda_bf16_to_f32(t2s_ctx *ctx, const t2s_node *node, const t2s_bf16 *src,
                                float *dst, int64_t n, bool acc) {
  if (n <= 0) return T2S_OK;
  from_bf16_kernel<<<t2s_cuda_blocks(n), 256, 0, t2s_cuda_be(ctx)->stream>>>(n, src, dst, acc);
  T2S_CU_LAUNCHED(ctx, node, "from_bf16_kernel");
  return T2S_OK;
}

t2s_status t2s_cuda_expect_f32(t2s_ctx *ctx, const t2s_node *node) {
  const char *op = node->desc ? node->desc->name : t2s_ops[node->op].name;
  for (int i = 0; i < node->n_in; i++)
    if (node->in[i] != NULL && node->in[i]->dtype == T2S_BF16) {
      t2s_ctx_fail(ctx, T2S_ERR_INVALID, "op '%s' on cuda: input %d is bf16 but the output is "
                   "f32 (the precision changed inside a pass; switch it between passes only)",
                   op, i);
      return T2S_ERR_INVALID;
    }
  return T2S_OK;
}
