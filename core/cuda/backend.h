/* Private header of the CUDA backend: included only by the .cu files of core/cuda (C++ under
 * nvcc). CPU code never sees it, so no CUDA header leaks into the engine.
 *
 * Holds the per-context backend state (stream, library handles, workspace, the
 * cache of convolution plans), the checked-call macro and the launch helpers that
 * every op family shares. */
#pragma once
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

extern "C" {
#include "core/device.h"
#include "core/engine.h"
#include "core/ops.h"
}

typedef struct t2s_conv_plan t2s_conv_plan;  /* core/cuda/conv2d.cu */
typedef struct t2s_gemm_plan t2s_gemm_plan;  /* core/cuda/linear.cu */

typedef struct t2s_cuda_backend {
  int device;                  /* cudaGetDevice() at creation */
  cudaStream_t stream;         /* every op of the context runs on it, in order */
  cublasHandle_t cublas;
  cublasLtHandle_t cublaslt;
  cudnnHandle_t cudnn;
  void *workspace;             /* cuDNN / cuBLASLt scratch, grown at plan time only */
  size_t workspace_bytes;
  double *reduce;              /* partial sums of the deterministic reductions */
  t2s_conv_plan *conv_plans;   /* one per distinct convolution shape (a list) */
  t2s_gemm_plan *gemm_plans;   /* one per distinct cuBLASLt problem (a list) */
  t2s_precision precision;     /* fp32 (default), tf32, bf16; see t2s_cuda_set_precision */
} t2s_cuda_backend;

/* bf16 precision (t2s_cuda_set_precision): the GEMM-shaped ops (conv2d, linear,
 * matmul) write T2S_BF16 activations (ctx->act_dtype, chosen by their public calls in
 * core/ops), and the ops after them keep their input's dtype; every gradient stays
 * f32 (tensor.grad is float*). Parameters and the optimizer stay f32 (master
 * weights). conv2d and linear/matmul cast the weight (and an f32 input such as the
 * image) to bf16 in the pass arena on every call: the bf16 weight copy is pass
 * memory, never a cached parameter, so it can never be stale after an optimizer step
 * (decision: a cached copy would save one small cast per layer and step but needs an
 * invalidation hook in the optimizer). cuDNN / cuBLASLt run bf16 inputs with fp32
 * accumulation (cuDNN compute type FLOAT, CUBLAS_COMPUTE_32F); the forward output is
 * bf16. Backward casts the f32 dy to bf16 (scratch): cuBLASLt writes the f32 dX / dW
 * directly (bf16 A/B, f32 C/D); cuDNN writes bf16 dx / dW into scratch (one data type
 * per convolution), which are then added into the f32 gradients. Batch norm and the
 * element-wise ops read bf16 through t2s_act_in and compute in f32 / double. Ops
 * without a bf16 path refuse bf16 inputs (t2s_op_bf16, core/ops/registry.c). */
typedef __nv_bfloat16 t2s_bf16;

/* Element access that follows a tensor's dtype (f32 or bf16): values are float. */
struct t2s_act_in {
  const void *p;
  bool bf16;
  __device__ __forceinline__ float operator[](int64_t i) const {
    return bf16 ? __bfloat162float(((const t2s_bf16 *)p)[i]) : ((const float *)p)[i];
  }
};
struct t2s_act_out {
  void *p;
  bool bf16;
  __device__ __forceinline__ float get(int64_t i) const {
    return bf16 ? __bfloat162float(((const t2s_bf16 *)p)[i]) : ((const float *)p)[i];
  }
  __device__ __forceinline__ void set(int64_t i, float v) const {
    if (bf16) ((t2s_bf16 *)p)[i] = __float2bfloat16_rn(v);
    else ((float *)p)[i] = v;
  }
  /* the write/accumulate contract of core/engine.h */
  __device__ __forceinline__ void put(int64_t i, float v, bool acc) const {
    set(i, acc ? get(i) + v : v);
  }
};
static inline t2s_act_in t2s_cuda_in(const t2s_tensor *t) {
  return t2s_act_in{t->data, t->dtype == T2S_BF16};
}
static inline t2s_act_in t2s_cuda_in(const float *p) { return t2s_act_in{p, false}; }
static inline t2s_act_out t2s_cuda_out(t2s_tensor *t) {
  return t2s_act_out{t->data, t->dtype == T2S_BF16};
}
static inline t2s_act_out t2s_cuda_out(float *p) { return t2s_act_out{p, false}; }

/* t's values as bf16: its own data when it is bf16, else a cast into the pass arena.
 * NULL with ctx->err set on failure. */
const t2s_bf16 *t2s_cuda_bf16_of(t2s_ctx *ctx, const t2s_node *node, const t2s_tensor *t);
/* dst[i] = src[i] rounded to bf16 (nearest even). */
t2s_status t2s_cuda_f32_to_bf16(t2s_ctx *ctx, const t2s_node *node, const float *src,
                                t2s_bf16 *dst, int64_t n);
/* n floats cast to bf16 into the pass arena (round to nearest even); NULL on failure. */
t2s_bf16 *t2s_cuda_bf16_cast(t2s_ctx *ctx, const t2s_node *node, const float *src, int64_t n);
/* t's values as f32: its own data when it is f32, else a widening copy in the pass
 * arena (ops that compute a bf16 activation in f32). NULL with ctx->err set on failure. */
const float *t2s_cuda_f32_of(t2s_ctx *ctx, const t2s_node *node, const t2s_tensor *t);
/* dst[i] (f32) = src[i], or += src[i] when acc: a bf16 result into an f32 gradient. */
t2s_status t2s_cuda_bf16_to_f32(t2s_ctx *ctx, const t2s_node *node, const t2s_bf16 *src,
                                float *dst, int64_t n, bool acc);
/* An op's fp32 path: every input and the output must be f32 (a bf16 tensor here means
 * the precision changed between the op's call and its replay). */
t2s_status t2s_cuda_expect_f32(t2s_ctx *ctx, const t2s_node *node);

/* Philox-4x32-10, bit for bit core/rng.c's t2s_philox4x32: a CUDA draw keyed like a
 * CPU one gives the same number, so random masks match the reference. */
__device__ __forceinline__ void t2s_cuda_philox4x32(t2s_rng_key key, uint64_t ctr,
                                                    uint32_t out[4]) {
  uint32_t c0 = (uint32_t)ctr, c1 = (uint32_t)(ctr >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = key.k[0], k1 = key.k[1];
  for (int r = 0; r < 10; r++) {
    uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
    uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
    c1 = (uint32_t)p1;
    c3 = (uint32_t)p0;
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}
/* t2s_rng_uniform(key, i): the top 24 bits of word i % 4 of Philox(key, i / 4). */
__device__ __forceinline__ float t2s_cuda_rng_uniform(t2s_rng_key key, uint64_t i) {
  uint32_t w[4];
  t2s_cuda_philox4x32(key, i >> 2, w);
  return (float)(w[i & 3] >> 8) * (1.0f / 16777216.0f);
}

/* Fixed reduction geometry: a deterministic sum never depends on the GPU model. */
#define T2S_CUDA_REDUCE_BLOCKS 256
#define T2S_CUDA_REDUCE_THREADS 256
/* The most a convolution algorithm may ask for as workspace. */
#define T2S_CUDA_WORKSPACE_LIMIT ((size_t)1 << 30)

static inline t2s_cuda_backend *t2s_cuda_be(t2s_ctx *ctx) { return (t2s_cuda_backend *)ctx->backend; }

/* Uniform answers for the three status types (overloads). */
static inline int t2s_cuda_ok(cudaError_t s) { return s == cudaSuccess; }
static inline int t2s_cuda_ok(cudnnStatus_t s) { return s == CUDNN_STATUS_SUCCESS; }
static inline int t2s_cuda_ok(cublasStatus_t s) { return s == CUBLAS_STATUS_SUCCESS; }
static inline const char *t2s_cuda_errstr(cudaError_t s) { return cudaGetErrorString(s); }
static inline const char *t2s_cuda_errstr(cudnnStatus_t s) { return cudnnGetErrorString(s); }
static inline const char *t2s_cuda_errstr(cublasStatus_t s) { return cublasGetStatusString(s); }

/* Records "op 'conv2d': cudnnConvolutionForward(...) failed (CUDNN_STATUS_...) with
 * inputs [..] output [..] at core/cuda/conv2d.cu:123" in ctx->err and returns
 * T2S_ERR_BACKEND. node may be NULL (then only `what` names the place). */
t2s_status t2s_cuda_fail(t2s_ctx *ctx, const t2s_node *node, const char *call, const char *why,
                         const char *file, int line);

/* Checks a CUDA runtime / cuDNN / cuBLAS call inside an op (node known). */
#define T2S_CU(ctx, node, call)                                                        \
  do {                                                                                 \
    auto t2s_st_ = (call);                                                             \
    if (!t2s_cuda_ok(t2s_st_))                                                         \
      return t2s_cuda_fail((ctx), (node), #call, t2s_cuda_errstr(t2s_st_), __FILE__,   \
                           __LINE__);                                                  \
  } while (0)

/* Checks a kernel launch (bad configuration shows up at once; faults inside the
 * kernel surface at the next synchronising call, which is checked too). */
#define T2S_CU_LAUNCHED(ctx, node, kernel_name)                                        \
  do {                                                                                 \
    cudaError_t t2s_st_ = cudaGetLastError();                                          \
    if (t2s_st_ != cudaSuccess)                                                        \
      return t2s_cuda_fail((ctx), (node), "launch of " kernel_name,                    \
                           cudaGetErrorString(t2s_st_), __FILE__, __LINE__);           \
  } while (0)

/* Grid for a grid-stride loop over n items with 256 threads per block. */
static inline unsigned t2s_cuda_blocks(int64_t n) {
  int64_t b = (n + 255) / 256;
  if (b < 1) b = 1;
  if (b > 65535 * 8) b = 65535 * 8;
  return (unsigned)b;
}

/* Grows the backend workspace to at least `bytes` (synchronises the device; only
 * called while planning a new shape, never in the steady state). */
t2s_status t2s_cuda_workspace_reserve(t2s_ctx *ctx, const t2s_node *node, size_t bytes);

/* The CUDA slots of op `name` for the descriptor table (core/ops/registry.c): the
 * C-linkage names t2s_<name>_cuda_forward / _backward declared by core/engine.h,
 * around the family's name##_forward / name##_backward, which stay in the file's
 * anonymous namespace. */
#define T2S_CUDA_OP_FORWARD_ONLY(name)                                                  \
  t2s_status t2s_##name##_cuda_forward(t2s_ctx *ctx, t2s_node *node) {                  \
    return name##_forward(ctx, node);                                                   \
  }
#define T2S_CUDA_OP(name)                                                               \
  T2S_CUDA_OP_FORWARD_ONLY(name)                                                        \
  t2s_status t2s_##name##_cuda_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) { \
    return name##_backward(ctx, node, beta);                                            \
  }
/* Free the plan caches (context destruction, precision change). */
void t2s_cuda_conv_plans_free(t2s_cuda_backend *be);
void t2s_cuda_gemm_plans_free(t2s_cuda_backend *be);
