/* Kernel building blocks shared by the CUDA op families (private to core/cuda).
 *
 * - launch_each: one thread per item, grid-stride, with a device functor.
 * - put: the write/accumulate contract of core/engine.h (never reads the old value
 *   when accumulating is off, so a NaN-filled gradient buffer stays harmless).
 * - Column sums over a (rows, cols) view (per-channel statistics of an NHWC
 *   activation, bias and norm-parameter gradients): a fixed two-pass geometry in
 *   double, so the result is bitwise the same on every run and every GPU, without
 *   float atomics. The functor returns up to T2S_COLSUM_MAX values per (row, col).
 * - Warp sums in double with a fixed butterfly: deterministic row reductions. */
#pragma once
#include "core/cuda/backend.h"

namespace t2s_cuda {

template <class F>
__global__ void each_kernel(int64_t n, F f) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    f(i);
}

template <class F>
t2s_status launch_each(t2s_ctx *ctx, const t2s_node *node, int64_t n, F f) {
  if (n <= 0) return T2S_OK;
  each_kernel<<<t2s_cuda_blocks(n), 256, 0, t2s_cuda_be(ctx)->stream>>>(n, f);
  T2S_CU_LAUNCHED(ctx, node, "each_kernel");
  return T2S_OK;
}

__device__ __forceinline__ void put(float *out, int64_t i, float v, bool acc) {
  out[i] = acc ? out[i] + v : v;
}

/* Full-warp sum in double, folded in a fixed order (xor butterfly): deterministic.
 * Each lane's butterfly associates differently, so lane 0's result is broadcast:
 * every lane then uses the identical value. */
__device__ __forceinline__ double warp_sum(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return __shfl_sync(0xffffffffu, v, 0);
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

/* ---- deterministic column sums ------------------------------------------------ */

#define T2S_COLSUM_MAX 2
#define T2S_COLSUM_ROW_BLOCKS 64

/* Pass 1: block (cx, rb) of 32 x 8 threads; thread (tx, ty) sums column cx*32 + tx
 * over rows rb*8 + ty + k*8*ROW_BLOCKS (consecutive columns: coalesced when the
 * column index is the fastest memory index), then the 8 ty partials are folded in
 * order. partial[(rb * nv + v) * cols + c]. */
template <int NV, class F>
__global__ void colsum_partial_kernel(int64_t rows, int cols, F f, double *partial) {
  __shared__ double s[NV][8][32];
  int c = blockIdx.x * 32 + threadIdx.x;
  double acc[NV];
  for (int v = 0; v < NV; v++) acc[v] = 0.0;
  if (c < cols)
    for (int64_t p = (int64_t)blockIdx.y * 8 + threadIdx.y; p < rows;
         p += 8 * T2S_COLSUM_ROW_BLOCKS) {
      double val[NV];
      f(p, c, val);
      for (int v = 0; v < NV; v++) acc[v] += val[v];
    }
  for (int v = 0; v < NV; v++) s[v][threadIdx.y][threadIdx.x] = acc[v];
  __syncthreads();
  if (threadIdx.y == 0 && c < cols)
    for (int v = 0; v < NV; v++) {
      double t = 0.0;
      for (int k = 0; k < 8; k++) t += s[v][k][threadIdx.x];
      partial[((int64_t)blockIdx.y * NV + v) * cols + c] = t;
    }
}

/* Pass 2: out[v * cols + c] = the ROW_BLOCKS partials folded in order. */
template <int NV>
__global__ void colsum_final_kernel(int cols, const double *partial, double *out) {
  int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  for (int v = 0; v < NV; v++) {
    double t = 0.0;
    for (int rb = 0; rb < T2S_COLSUM_ROW_BLOCKS; rb++)
      t += partial[((int64_t)rb * NV + v) * cols + c];
    out[(int64_t)v * cols + c] = t;
  }
}

/* Column sums of f over rows x cols into out[NV * cols] (device doubles). The
 * partials live in the pass arena (t2s_scratch). */
template <int NV, class F>
t2s_status colsum(t2s_ctx *ctx, const t2s_node *node, int64_t rows, int cols, F f, double *out) {
  static_assert(NV >= 1 && NV <= T2S_COLSUM_MAX, "1 or 2 sums per column");
  cudaStream_t s = t2s_cuda_be(ctx)->stream;
  if (cols <= 0) return T2S_OK;
  double *partial =
      (double *)t2s_scratch(ctx, (size_t)T2S_COLSUM_ROW_BLOCKS * NV * (size_t)cols * sizeof(double));
  if (partial == NULL) return ctx->err.status;
  dim3 grid((unsigned)((cols + 31) / 32), T2S_COLSUM_ROW_BLOCKS), block(32, 8);
  colsum_partial_kernel<NV><<<grid, block, 0, s>>>(rows, cols, f, partial);
  T2S_CU_LAUNCHED(ctx, node, "colsum_partial_kernel");
  colsum_final_kernel<NV><<<(unsigned)((cols + 255) / 256), 256, 0, s>>>(cols, partial, out);
  T2S_CU_LAUNCHED(ctx, node, "colsum_final_kernel");
  return T2S_OK;
}

/* Device doubles in the pass arena. */
inline double *scratch_doubles(t2s_ctx *ctx, int64_t n) {
  return (double *)t2s_scratch(ctx, (size_t)(n > 0 ? n : 1) * sizeof(double));
}

/* Memory strides of a tensor's LOGICAL dims: a 4-d activation stored NHWC has
 * strides (HWC, 1, WC, C); everything else is row-major. */
inline void logical_strides(const t2s_tensor *t, int64_t *st) {
  if (t->ndim == 4 && t->layout == T2S_LAYOUT_NHWC) {
    int64_t c = t->shape[1], h = t->shape[2], w = t->shape[3];
    st[0] = h * w * c, st[1] = 1, st[2] = w * c, st[3] = c;
    return;
  }
  int64_t s = 1;
  for (int i = t->ndim - 1; i >= 0; i--) {
    st[i] = s;
    s *= t->shape[i];
  }
}

/* Rows along a logical dim d: `len` elements `stride` apart; row r (0..rows) starts
 * at the address that the other dims' row-major index r gives. */
struct row_geom {
  int64_t rows, len, stride;
  int nd;                    /* number of other dims (<= 4) */
  int64_t size[4], st[4];    /* the other dims, outermost first */
  __host__ __device__ int64_t base(int64_t r) const {
    int64_t off = 0;
    for (int k = nd - 1; k >= 0; k--) {
      off += (r % size[k]) * st[k];
      r /= size[k];
    }
    return off;
  }
};

inline row_geom row_geom_of(const t2s_tensor *t, int dim) {
  int64_t st[T2S_MAX_DIMS];
  logical_strides(t, st);
  row_geom g;
  g.rows = 1;
  g.nd = 0;
  g.len = t->shape[dim];
  g.stride = st[dim];
  for (int i = 0; i < t->ndim; i++) {
    if (i == dim) continue;
    g.size[g.nd] = t->shape[i];
    g.st[g.nd] = st[i];
    g.nd++;
    g.rows *= t->shape[i];
  }
  return g;
}

}  // namespace t2s_cuda
