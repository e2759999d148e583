/* 2-d convolution on CUDA through cuDNN, activations NHWC, float32 without TF32.
 *
 * x (N, Cin, H, W) and y (N, Cout, Ho, Wo) are NHWC in memory. The weight keeps
 * PyTorch's (Cout, Cin/g, kh, kw) = KCRS buffer (checkpoints, optimizers and the
 * gradient all-reduce see one layout on every backend). cuDNN's well-trodden fp32
 * NHWC path wants the filter NHWC too (KRSC), so each forward transposes the weight
 * into the pass arena (weights are small next to activations and change every
 * step, so a copy cached across steps would be stale) and keeps it for backward;
 * the filter gradient comes back KRSC and is transposed into dW with the
 * accumulate flag. Where KCRS and KRSC coincide (1x1 kernels, one channel per
 * group) cuDNN reads and writes the weight buffers directly. Should cuDNN have no
 * algorithm for the NHWC filter of some shape, the plan falls back to the NCHW
 * (KCRS) filter format with NHWC activations, again without transposes.
 *
 * A plan (descriptors and the three algorithms) is made once per shape and kept in
 * the backend's list. Algorithms come from cuDNN's heuristics (no timing runs, so
 * the choice is the same every run); with ctx->deterministic only algorithms that
 * cuDNN reports as deterministic are taken. The math type is CUDNN_FMA_MATH: no
 * TF32, so the results stay within 1e-4 of the CPU reference.
 *
 * The bias add and the bias gradient are own kernels; the bias gradient is a
 * fixed-geometry two-pass reduction (no float atomics): deterministic.
 *
 * bf16 (the output is T2S_BF16, precision bf16; note in core/cuda/backend.h): x, the
 * filter and dy are bf16 (f32 ones are cast into the pass arena: the image, the f32
 * weight, the f32 dy), cuDNN computes in FLOAT with tensor-core kernels allowed, and
 * writes bf16 y, bf16 dx and bf16 dW into scratch; dx and dW are then added into the
 * f32 gradients with the caller's beta (cuDNN's blend would round the old gradient). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cuda/backend.h"

enum { KEY_LEN = 17 };

struct t2s_conv_plan {
  t2s_conv_plan *next;
  int key[KEY_LEN];
  int n, cin, h, w, cout, kh, kw, groups, ho, wo;
  cudnnTensorFormat_t filter_format;  /* NHWC (KRSC), or NCHW: the fallback */
  int filter_direct;   /* cuDNN reads/writes the KCRS buffers as they are: no transposes */
  int bf16;            /* bf16 x, filter, y (precision bf16), else f32 */
  cudnnTensorDescriptor_t xd, yd;
  cudnnFilterDescriptor_t wd;
  cudnnConvolutionDescriptor_t cd;
  cudnnConvolutionFwdAlgo_t fwd;
  cudnnConvolutionBwdDataAlgo_t bwd_data;
  cudnnConvolutionBwdFilterAlgo_t bwd_filter;
  size_t fwd_ws, data_ws, filter_ws;
};

/* Rows of the bias-gradient partial sums: fixed, so the sum order never changes. */
#define BIAS_ROW_BLOCKS 64

namespace {

/* ---- kernels --------------------------------------------------------------- */

__device__ __forceinline__ float as_float(float v) { return v; }
__device__ __forceinline__ float as_float(t2s_bf16 v) { return __bfloat162float(v); }
__device__ __forceinline__ void store(float *d, int64_t i, float v) { d[i] = v; }
__device__ __forceinline__ void store(t2s_bf16 *d, int64_t i, float v) { d[i] = __float2bfloat16_rn(v); }

/* Between PyTorch's KCRS and cuDNN's NHWC filter KRSC (C = channels per group,
 * RS = kh kw), or the same order when same (a dtype change only: bf16). Index i
 * runs over dst; acc adds into dst (filter gradient). S, D: float or bf16. */
template <class S, class D>
__global__ void filter_layout_kernel(int64_t n, int c_per_group, int rs, const S *src, D *dst,
                                     bool to_krsc, bool acc, bool same) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x) {
    int64_t j;
    if (same) {
      j = i;
    } else if (to_krsc) { /* i = (k RS + rs) C + c  <-  (k C + c) RS + rs */
      int64_t c = i % c_per_group, t = i / c_per_group, r = t % rs, k = t / rs;
      j = (k * c_per_group + c) * rs + r;
    } else {       /* i = (k C + c) RS + rs  <-  (k RS + rs) C + c */
      int64_t r = i % rs, t = i / rs, c = t % c_per_group, k = t / c_per_group;
      j = (k * rs + r) * c_per_group + c;
    }
    float v = as_float(src[j]);
    store(dst, i, acc ? as_float(dst[i]) + v : v);
  }
}

/* y[p, c] += b[c] over NHWC rows p: the channel is the fastest index. */
template <class Y>
__global__ void bias_add_kernel(int64_t n, int cout, const float *b, Y *y) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    store(y, i, as_float(y[i]) + b[i % cout]);
}

/* db[c] = sum over rows p of dy[p, c]. Pass 1: block (cx, rb) with 32 x 8 threads;
 * thread (tx, ty) sums channel cx*32 + tx over rows rb*8 + ty + k*8*BIAS_ROW_BLOCKS
 * (coalesced over channels), then folds its 8 ty rows in order. Pass 2 folds the
 * BIAS_ROW_BLOCKS partials per channel in order. */
__global__ void bias_grad_partial_kernel(int64_t rows, int cout, const float *dy, double *partial) {
  __shared__ double s[8][32];
  int c = blockIdx.x * 32 + threadIdx.x;
  double acc = 0.0;
  if (c < cout)
    for (int64_t p = (int64_t)blockIdx.y * 8 + threadIdx.y; p < rows; p += 8 * BIAS_ROW_BLOCKS)
      acc += (double)dy[p * cout + c];
  s[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < cout) {
    double t = 0.0;
    for (int k = 0; k < 8; k++) t += s[k][threadIdx.x];
    partial[(int64_t)blockIdx.y * cout + c] = t;
  }
}
__global__ void bias_grad_final_kernel(int cout, const double *partial, float *db, bool acc) {
  int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= cout) return;
  double t = 0.0;
  for (int rb = 0; rb < BIAS_ROW_BLOCKS; rb++) t += partial[(int64_t)rb * cout + c];
  db[c] = acc ? db[c] + (float)t : (float)t;
}

/* ---- plans ----------------------------------------------------------------- */

void plan_key(const t2s_node *node, int deterministic, int precision, int key[KEY_LEN]) {
  int bf16 = node->out->dtype == T2S_BF16;
  const t2s_tensor *x = node->in[0], *w = node->in[1];
  const t2s_conv2d_args *a = (const t2s_conv2d_args *)node->args;
  int k[KEY_LEN] = {(int)x->shape[0], (int)x->shape[1], (int)x->shape[2], (int)x->shape[3],
                    (int)w->shape[0], (int)w->shape[2], (int)w->shape[3], a->stride_h,
                    a->stride_w, a->pad_h, a->pad_w, a->dil_h, a->dil_w, a->groups,
                    deterministic, precision, bf16};
  memcpy(key, k, sizeof k);
}

void plan_release_descriptors(t2s_conv_plan *p) {
  /* Teardown: statuses are not actionable. */
  if (p->xd) (void)cudnnDestroyTensorDescriptor(p->xd);
  if (p->yd) (void)cudnnDestroyTensorDescriptor(p->yd);
  if (p->wd) (void)cudnnDestroyFilterDescriptor(p->wd);
  if (p->cd) (void)cudnnDestroyConvolutionDescriptor(p->cd);
  p->xd = p->yd = NULL;
  p->wd = NULL;
  p->cd = NULL;
}

void plan_free(t2s_conv_plan *p) {
  plan_release_descriptors(p);
  free(p);
}

/* The first heuristic candidate that runs here, fits the workspace limit, is not a
 * tensor-core kernel unless tensor_ops (tf32, bf16) and, when asked, is deterministic. */
template <class Perf>
int pick_algo(const Perf *perf, int count, bool deterministic, bool tensor_ops) {
  for (int i = 0; i < count; i++) {
    if (perf[i].status != CUDNN_STATUS_SUCCESS) continue;
    if (deterministic && perf[i].determinism != CUDNN_DETERMINISTIC) continue;
    if (perf[i].memory > T2S_CUDA_WORKSPACE_LIMIT) continue;
    if (!tensor_ops && (perf[i].mathType == CUDNN_TENSOR_OP_MATH ||
                  perf[i].mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION))
      continue;
    return i;
  }
  return -1;
}

t2s_status no_algo(t2s_ctx *ctx, const t2s_node *node, const char *direction, bool det) {
  char sx[96], sw[96];
  const t2s_conv2d_args *a = (const t2s_conv2d_args *)node->args;
  t2s_ctx_fail(ctx, T2S_ERR_UNSUPPORTED,
               "op 'conv2d' on cuda: cuDNN offers no %s%s %s NHWC algorithm for x %s, weight %s, "
               "stride (%d, %d), padding (%d, %d), dilation (%d, %d), groups %d%s",
               det ? "deterministic " : "", direction,
               node->out->dtype == T2S_BF16 ? "bf16" : "fp32", t2s_shape_str(node->in[0], sx, sizeof sx),
               t2s_shape_str(node->in[1], sw, sizeof sw), a->stride_h, a->stride_w, a->pad_h,
               a->pad_w, a->dil_h, a->dil_w, a->groups,
               det ? " (try deterministic: false)" : "");
  return T2S_ERR_UNSUPPORTED;
}

/* fp32: FMA only (no TF32), within 1e-4 of the CPU; tf32 and bf16: tensor cores. */
bool tensor_ops_of(t2s_ctx *ctx, const t2s_conv_plan *p) {
  return p->bf16 || t2s_cuda_be(ctx)->precision == T2S_PRECISION_TF32;
}
cudnnMathType_t conv_math(t2s_ctx *ctx, const t2s_conv_plan *p) {
  return tensor_ops_of(ctx, p) ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
}

t2s_status plan_descriptors(t2s_ctx *ctx, const t2s_node *node, t2s_conv_plan *p) {
  /* a KRSC buffer equals KCRS when kh kw = 1 or one channel per group */
  p->filter_direct = p->filter_format == CUDNN_TENSOR_NCHW || p->kh * p->kw == 1 ||
                     p->cin / p->groups == 1;
  const t2s_conv2d_args *a = (const t2s_conv2d_args *)node->args;
  T2S_CU(ctx, node, cudnnCreateTensorDescriptor(&p->xd));
  T2S_CU(ctx, node, cudnnCreateTensorDescriptor(&p->yd));
  T2S_CU(ctx, node, cudnnCreateFilterDescriptor(&p->wd));
  T2S_CU(ctx, node, cudnnCreateConvolutionDescriptor(&p->cd));
  /* bf16 data, FLOAT compute (fp32 accumulation) */
  cudnnDataType_t data = p->bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
  T2S_CU(ctx, node, cudnnSetTensor4dDescriptor(p->xd, CUDNN_TENSOR_NHWC, data, p->n,
                                               p->cin, p->h, p->w));
  T2S_CU(ctx, node, cudnnSetFilter4dDescriptor(p->wd, data, p->filter_format, p->cout,
                                               p->cin / p->groups, p->kh, p->kw));
  T2S_CU(ctx, node, cudnnSetConvolution2dDescriptor(p->cd, a->pad_h, a->pad_w, a->stride_h,
                                                    a->stride_w, a->dil_h, a->dil_w,
                                                    CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  T2S_CU(ctx, node, cudnnSetConvolutionGroupCount(p->cd, p->groups));
  T2S_CU(ctx, node, cudnnSetConvolutionMathType(p->cd, conv_math(ctx, p)));
  int on, oc, oh, ow;
  T2S_CU(ctx, node, cudnnGetConvolution2dForwardOutputDim(p->cd, p->xd, p->wd, &on, &oc, &oh, &ow));
  const t2s_tensor *y = node->out;
  if (y->ndim != 4 || on != y->shape[0] || oc != y->shape[1] || oh != y->shape[2] ||
      ow != y->shape[3]) {
    char sy[96];
    t2s_ctx_fail(ctx, T2S_ERR_INVALID,
                 "op 'conv2d' on cuda: output %s, but cuDNN computes (%d, %d, %d, %d)",
                 t2s_shape_str(y, sy, sizeof sy), on, oc, oh, ow);
    return T2S_ERR_INVALID;
  }
  p->ho = oh;
  p->wo = ow;
  T2S_CU(ctx, node, cudnnSetTensor4dDescriptor(p->yd, CUDNN_TENSOR_NHWC, data, p->n,
                                               p->cout, oh, ow));
  return T2S_OK;
}

t2s_status plan_algorithms(t2s_ctx *ctx, const t2s_node *node, t2s_conv_plan *p, bool det) {
  cudnnHandle_t h = t2s_cuda_be(ctx)->cudnn;
  bool tf32 = tensor_ops_of(ctx, p);
  int got = 0, i;
  cudnnConvolutionFwdAlgoPerf_t fperf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
  T2S_CU(ctx, node, cudnnGetConvolutionForwardAlgorithm_v7(h, p->xd, p->wd, p->cd, p->yd,
                                                           CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got,
                                                           fperf));
  if ((i = pick_algo(fperf, got, det, tf32)) < 0) return no_algo(ctx, node, "forward", det);
  p->fwd = fperf[i].algo;
  cudnnConvolutionBwdDataAlgoPerf_t dperf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
  T2S_CU(ctx, node, cudnnGetConvolutionBackwardDataAlgorithm_v7(
                        h, p->wd, p->yd, p->cd, p->xd, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &got,
                        dperf));
  if ((i = pick_algo(dperf, got, det, tf32)) < 0) return no_algo(ctx, node, "backward-data", det);
  p->bwd_data = dperf[i].algo;
  cudnnConvolutionBwdFilterAlgoPerf_t wperf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
  T2S_CU(ctx, node, cudnnGetConvolutionBackwardFilterAlgorithm_v7(
                        h, p->xd, p->yd, p->cd, p->wd, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT,
                        &got, wperf));
  if ((i = pick_algo(wperf, got, det, tf32)) < 0) return no_algo(ctx, node, "backward-filter", det);
  p->bwd_filter = wperf[i].algo;
  /* Heuristic results may carry another math type; keep the context's regardless. */
  T2S_CU(ctx, node, cudnnSetConvolutionMathType(p->cd, conv_math(ctx, p)));
  T2S_CU(ctx, node, cudnnGetConvolutionForwardWorkspaceSize(h, p->xd, p->wd, p->cd, p->yd, p->fwd,
                                                            &p->fwd_ws));
  T2S_CU(ctx, node, cudnnGetConvolutionBackwardDataWorkspaceSize(h, p->wd, p->yd, p->cd, p->xd,
                                                                 p->bwd_data, &p->data_ws));
  T2S_CU(ctx, node, cudnnGetConvolutionBackwardFilterWorkspaceSize(h, p->xd, p->yd, p->cd, p->wd,
                                                                   p->bwd_filter, &p->filter_ws));
  size_t need = p->fwd_ws;
  if (p->data_ws > need) need = p->data_ws;
  if (p->filter_ws > need) need = p->filter_ws;
  return t2s_cuda_workspace_reserve(ctx, node, need);
}

/* The cached plan for this node's shapes, made on first use; NULL on error. */
t2s_conv_plan *get_plan(t2s_ctx *ctx, const t2s_node *node) {
  t2s_cuda_backend *be = t2s_cuda_be(ctx);
  int key[KEY_LEN];
  plan_key(node, ctx->deterministic != 0, (int)be->precision, key);
  for (t2s_conv_plan *p = be->conv_plans; p != NULL; p = p->next)
    if (memcmp(p->key, key, sizeof key) == 0) return p;
  t2s_conv_plan *p = (t2s_conv_plan *)calloc(1, sizeof *p);
  if (p == NULL) {
    t2s_ctx_fail(ctx, T2S_ERR_NOMEM, "op 'conv2d' on cuda: out of host memory for a plan");
    return NULL;
  }
  memcpy(p->key, key, sizeof key);
  p->n = key[0], p->cin = key[1], p->h = key[2], p->w = key[3];
  p->cout = key[4], p->kh = key[5], p->kw = key[6], p->groups = key[13], p->bf16 = key[16];
  /* NHWC filter first (the path PyTorch's channels_last takes); when cuDNN has no
   * algorithm for it, the NCHW filter format, which cuDNN also accepts with NHWC
   * activations for several algorithms and which needs no transposes. */
  const cudnnTensorFormat_t formats[2] = {CUDNN_TENSOR_NHWC, CUDNN_TENSOR_NCHW};
  char first_failure[T2S_ERROR_MAX] = "";
  for (int f = 0; f < 2; f++) {
    p->filter_format = formats[f];
    if (plan_descriptors(ctx, node, p) == T2S_OK &&
        plan_algorithms(ctx, node, p, ctx->deterministic != 0) == T2S_OK)
      break;
    if (f == 1) {
      /* both failed: keep the second message and add the first */
      size_t used = strlen(ctx->err.msg);
      snprintf(ctx->err.msg + used, sizeof ctx->err.msg - used, "; with the NHWC filter: %s",
               first_failure);
      plan_free(p);
      return NULL;
    }
    /* the context was clean when planning started (ops run only then) */
    snprintf(first_failure, sizeof first_failure, "%s", ctx->err.msg);
    ctx->err.status = T2S_OK;
    ctx->err.msg[0] = '\0';
    plan_release_descriptors(p);
  }
  p->next = be->conv_plans;
  be->conv_plans = p;
  return p;
}

/* ---- op slots ---------------------------------------------------------------- */

int64_t filter_numel(const t2s_conv_plan *p) {
  return (int64_t)p->cout * (p->cin / p->groups) * p->kh * p->kw;
}

/* src (KCRS or KRSC) into dst (the other, or the same order when the plan's filter
 * is direct), converting between float and bf16 as S and D say. */
template <class S, class D>
t2s_status filter_relayout(t2s_ctx *ctx, const t2s_node *node, const t2s_conv_plan *p,
                           const S *src, D *dst, bool to_krsc, bool acc) {
  int64_t n = filter_numel(p);
  filter_layout_kernel<S, D><<<t2s_cuda_blocks(n), 256, 0, t2s_cuda_be(ctx)->stream>>>(
      n, p->cin / p->groups, p->kh * p->kw, src, dst, to_krsc, acc, p->filter_direct != 0);
  T2S_CU_LAUNCHED(ctx, node, "filter_layout_kernel");
  return T2S_OK;
}

/* The filter as cuDNN reads it (KRSC or direct, f32 or bf16): the weight itself, or
 * a copy in the pass arena. NULL with ctx->err set on failure. */
const void *forward_filter(t2s_ctx *ctx, const t2s_node *node, const t2s_conv_plan *p) {
  const t2s_tensor *w = node->in[1];
  if (p->filter_direct && !p->bf16) return w->data;
  size_t elem = p->bf16 ? sizeof(t2s_bf16) : sizeof(float);
  void *wt = t2s_scratch(ctx, (size_t)filter_numel(p) * elem);
  if (wt == NULL) return NULL;
  t2s_status st = p->bf16 ? filter_relayout(ctx, node, p, t2s_f32(w), (t2s_bf16 *)wt, true, false)
                          : filter_relayout(ctx, node, p, t2s_f32(w), (float *)wt, true, false);
  return st == T2S_OK ? wt : NULL;
}

t2s_status conv2d_forward(t2s_ctx *ctx, t2s_node *node) {
  t2s_cuda_backend *be = t2s_cuda_be(ctx);
  if (node->in[0]->layout != T2S_LAYOUT_NHWC || node->out->layout != T2S_LAYOUT_NHWC) {
    t2s_ctx_fail(ctx, T2S_ERR_INVALID,
                 "op 'conv2d' on cuda: x and y must be NHWC activations (convert NCHW data at "
                 "the edge, e.g. when uploading a batch)");
    return T2S_ERR_INVALID;
  }
  bool bf16 = node->out->dtype == T2S_BF16;
  if (!bf16 && t2s_cuda_expect_f32(ctx, node) != T2S_OK) return ctx->err.status;
  const t2s_conv_plan *p = get_plan(ctx, node);
  if (p == NULL) return ctx->err.status;
  const t2s_tensor *x = node->in[0];
  const t2s_tensor *b = node->n_in > 2 ? node->in[2] : NULL;
  const void *wk = forward_filter(ctx, node, p);
  const void *xk = bf16 ? (const void *)t2s_cuda_bf16_of(ctx, node, x) : x->data;
  if (wk == NULL || xk == NULL) return ctx->err.status;
  node->saved = (void *)wk;  /* the filter as cuDNN read it, for backward data */
  const float one = 1.0f, zero = 0.0f;
  T2S_CU(ctx, node, cudnnConvolutionForward(be->cudnn, &one, p->xd, xk, p->wd, wk, p->cd, p->fwd,
                                            be->workspace, p->fwd_ws, &zero, p->yd,
                                            node->out->data));
  if (b != NULL) {
    int64_t n = t2s_numel(node->out);
    if (bf16)
      bias_add_kernel<<<t2s_cuda_blocks(n), 256, 0, be->stream>>>(
          n, p->cout, t2s_f32(b), (t2s_bf16 *)node->out->data);
    else
      bias_add_kernel<<<t2s_cuda_blocks(n), 256, 0, be->stream>>>(n, p->cout, t2s_f32(b),
                                                                   t2s_f32(node->out));
    T2S_CU_LAUNCHED(ctx, node, "bias_add_kernel");
  }
  ctx->flops += 2.0 * (double)p->n * p->cout * p->ho * p->wo * (double)(p->cin / p->groups) *
                p->kh * p->kw;
  return T2S_OK;
}

t2s_status bias_backward(t2s_ctx *ctx, const t2s_node *node, const t2s_conv_plan *p, float *db,
                         bool acc) {
  cudaStream_t s = t2s_cuda_be(ctx)->stream;
  double *partial = (double *)t2s_scratch(ctx, (size_t)BIAS_ROW_BLOCKS * p->cout * sizeof(double));
  if (partial == NULL) return ctx->err.status;
  int64_t rows = (int64_t)p->n * p->ho * p->wo;
  dim3 grid((unsigned)((p->cout + 31) / 32), BIAS_ROW_BLOCKS), block(32, 8);
  bias_grad_partial_kernel<<<grid, block, 0, s>>>(rows, p->cout, node->out->grad, partial);
  T2S_CU_LAUNCHED(ctx, node, "bias_grad_partial_kernel");
  bias_grad_final_kernel<<<(unsigned)((p->cout + 255) / 256), 256, 0, s>>>(p->cout, partial, db, acc);
  T2S_CU_LAUNCHED(ctx, node, "bias_grad_final_kernel");
  return T2S_OK;
}

/* dx: cuDNN blends dx = alpha * result + beta * dx and never reads dx when beta is 0;
 * bf16 writes a bf16 dx into scratch, added into the f32 gradient afterwards. */
t2s_status data_backward(t2s_ctx *ctx, const t2s_node *node, const t2s_conv_plan *p,
                         const void *dy, const float *beta) {
  t2s_cuda_backend *be = t2s_cuda_be(ctx);
  t2s_tensor *x = node->in[0];
  /* saved by forward; a node replayed without it (forward not recording) is a bug */
  const void *wk = node->saved ? node->saved : node->in[1]->data;
  if ((!p->filter_direct || p->bf16) && node->saved == NULL) {
    t2s_ctx_fail(ctx, T2S_ERR_INVALID, "op 'conv2d' on cuda: backward without the forward's filter");
    return T2S_ERR_INVALID;
  }
  const float one = 1.0f, zero = 0.0f;
  if (!p->bf16) {
    T2S_CU(ctx, node, cudnnConvolutionBackwardData(be->cudnn, &one, p->wd, wk, p->yd, dy, p->cd,
                                                   p->bwd_data, be->workspace, p->data_ws,
                                                   &beta[0], p->xd, x->grad));
    return T2S_OK;
  }
  int64_t n = t2s_numel(x);
  t2s_bf16 *dx = (t2s_bf16 *)t2s_scratch(ctx, (size_t)n * sizeof(t2s_bf16));
  if (dx == NULL) return ctx->err.status;
  T2S_CU(ctx, node, cudnnConvolutionBackwardData(be->cudnn, &one, p->wd, wk, p->yd, dy, p->cd,
                                                 p->bwd_data, be->workspace, p->data_ws, &zero,
                                                 p->xd, dx));
  return t2s_cuda_bf16_to_f32(ctx, node, dx, x->grad, n, beta[0] != 0.0f);
}

/* dW: into w->grad directly (f32, direct filter), else into scratch and then relaid
 * out / converted into w->grad with the accumulate flag. */
t2s_status filter_backward(t2s_ctx *ctx, const t2s_node *node, const t2s_conv_plan *p,
                           const void *dy, float beta) {
  t2s_cuda_backend *be = t2s_cuda_be(ctx);
  t2s_tensor *x = node->in[0], *w = node->in[1];
  bool acc = beta != 0.0f, direct = p->filter_direct && !p->bf16;
  const void *xk = p->bf16 ? (const void *)t2s_cuda_bf16_of(ctx, node, x) : x->data;
  size_t elem = p->bf16 ? sizeof(t2s_bf16) : sizeof(float);
  void *dwk = direct ? (void *)w->grad : t2s_scratch(ctx, (size_t)filter_numel(p) * elem);
  if (xk == NULL || dwk == NULL) return ctx->err.status;
  const float one = 1.0f, zero = 0.0f;
  T2S_CU(ctx, node, cudnnConvolutionBackwardFilter(be->cudnn, &one, p->xd, xk, p->yd, dy, p->cd,
                                                   p->bwd_filter, be->workspace, p->filter_ws,
                                                   direct ? &beta : &zero, p->wd, dwk));
  if (direct) return T2S_OK;
  if (p->bf16) return filter_relayout(ctx, node, p, (const t2s_bf16 *)dwk, w->grad, false, acc);
  return filter_relayout(ctx, node, p, (const float *)dwk, w->grad, false, acc);
}

t2s_status conv2d_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  const t2s_conv_plan *p = get_plan(ctx, node);
  if (p == NULL) return ctx->err.status;
  t2s_tensor *x = node->in[0], *w = node->in[1];
  t2s_tensor *b = node->n_in > 2 ? node->in[2] : NULL;
  if (t2s_wants_grad(b)) {
    t2s_status st = bias_backward(ctx, node, p, b->grad, beta[2] != 0.0f);
    if (st != T2S_OK) return st;
  }
  if (!t2s_wants_grad(x) && !t2s_wants_grad(w)) return T2S_OK;
  /* bf16: cuDNN takes one data type per convolution, so dy is cast to bf16 */
  const void *dy = node->out->grad;
  if (p->bf16 && (dy = t2s_cuda_bf16_cast(ctx, node, node->out->grad,
                                           t2s_numel(node->out))) == NULL)
    return ctx->err.status;
  if (t2s_wants_grad(x)) {
    t2s_status st = data_backward(ctx, node, p, dy, beta);
    if (st != T2S_OK) return st;
  }
  if (t2s_wants_grad(w)) return filter_backward(ctx, node, p, dy, beta[1]);
  return T2S_OK;
}

}  // namespace

void t2s_cuda_conv_plans_free(t2s_cuda_backend *be) {
  for (t2s_conv_plan *p = be->conv_plans; p != NULL;) {
    t2s_conv_plan *next = p->next;
    plan_free(p);
    p = next;
  }
  be->conv_plans = NULL;
}

T2S_CUDA_OP(conv2d)
