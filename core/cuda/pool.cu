/* Max and average 2-d pooling on CUDA over NHWC activations; the semantics
 * (window clipping, ceil_mode, count_include_pad, NaN propagation, first maximum)
 * are core/ops/pool.c's, element for element.
 *
 * Forward: one thread per output (n, oh, ow, c), consecutive threads on
 * consecutive channels (coalesced). Max pooling keeps the argmax (index ih W + iw
 * within the plane) for backward.
 * Backward is a gather, not a scatter: one thread per input element visits the
 * outputs whose windows contain it, in increasing (oh, ow) order, and adds their
 * contributions in that order. That is the CPU's summation order, so the result
 * is bitwise the CPU's, deterministic, and needs no atomics.
 *
 * x and y may be bf16 (precision bf16): read through t2s_act_in, summed in float,
 * written through t2s_act_out; gradients stay f32. */
#include "core/cuda/kernels.cuh"

using namespace t2s_cuda;

namespace {

struct pool_geom {
  int64_t n, c, h, w, hout, wout;
  int kh, kw, sh, sw, ph, pw;
  bool include_pad;
  /* window of output o along an axis: input [lo, hi), divisor extent `padded` */
  __device__ static void window(int64_t o, int k, int s, int p, int64_t in, int64_t &lo,
                                int64_t &hi, int64_t &padded) {
    int64_t start = o * s - p, end = start + k;
    if (end > in + p) end = in + p;
    padded = end - start;
    lo = start < 0 ? 0 : start;
    hi = end > in ? in : end;
  }
  /* outputs whose window may contain input index i: [first, last] clipped */
  __device__ static void covering(int64_t i, int k, int s, int p, int64_t out, int64_t &first,
                                  int64_t &last) {
    /* o s - p <= i < o s - p + k  <=>  (i + p - k) / s < o <= (i + p) / s */
    int64_t num = i + p - k + 1;
    first = num <= 0 ? 0 : (num + s - 1) / s;
    last = (i + p) / s;
    if (last > out - 1) last = out - 1;
  }
};

pool_geom geom_of(const t2s_node *node) {
  const t2s_tensor *x = node->in[0], *y = node->out;
  const t2s_pool2d_args *a = (const t2s_pool2d_args *)node->args;
  pool_geom g = {x->shape[0], x->shape[1], x->shape[2], x->shape[3], y->shape[2], y->shape[3],
                 a->kernel_h, a->kernel_w, a->stride_h, a->stride_w, a->pad_h, a->pad_w,
                 a->count_include_pad != 0};
  return g;
}

struct max_fwd {
  pool_geom g; t2s_act_in x; t2s_act_out y; int32_t *arg;
  __device__ void operator()(int64_t i) const {
    int64_t c = i % g.c, t = i / g.c, ow = t % g.wout, oh = (t / g.wout) % g.hout;
    int64_t b = t / (g.wout * g.hout);
    int64_t h0, h1, w0, w1, unused;
    pool_geom::window(oh, g.kh, g.sh, g.ph, g.h, h0, h1, unused);
    pool_geom::window(ow, g.kw, g.sw, g.pw, g.w, w0, w1, unused);
    int64_t base = b * g.h * g.w * g.c + c;
    int64_t best = h0 * g.w + w0;
    float m = x[base + best * g.c];
    for (int64_t ih = h0; ih < h1; ih++)
      for (int64_t iw = w0; iw < w1; iw++) {
        float v = x[base + (ih * g.w + iw) * g.c];
        if (v > m || (isnan(v) && !isnan(m))) {
          m = v;
          best = ih * g.w + iw;
        }
      }
    y.set(i, m);
    if (arg) arg[i] = (int32_t)best;
  }
};

struct max_bwd {
  pool_geom g; const float *dy; const int32_t *arg; float *dx; bool acc;
  __device__ void operator()(int64_t i) const {
    int64_t c = i % g.c, t = i / g.c, iw = t % g.w, ih = (t / g.w) % g.h, b = t / (g.w * g.h);
    int64_t oh0, oh1, ow0, ow1;
    pool_geom::covering(ih, g.kh, g.sh, g.ph, g.hout, oh0, oh1);
    pool_geom::covering(iw, g.kw, g.sw, g.pw, g.wout, ow0, ow1);
    float s = acc ? dx[i] : 0.0f;
    int32_t self = (int32_t)(ih * g.w + iw);
    for (int64_t oh = oh0; oh <= oh1; oh++)
      for (int64_t ow = ow0; ow <= ow1; ow++) {
        int64_t o = ((b * g.hout + oh) * g.wout + ow) * g.c + c;
        if (arg[o] == self) s += dy[o];
      }
    dx[i] = s;
  }
};

__device__ __forceinline__ int64_t avg_divisor(const pool_geom &g, int64_t oh, int64_t ow) {
  int64_t h0, h1, hp, w0, w1, wp;
  pool_geom::window(oh, g.kh, g.sh, g.ph, g.h, h0, h1, hp);
  pool_geom::window(ow, g.kw, g.sw, g.pw, g.w, w0, w1, wp);
  return g.include_pad ? hp * wp : (h1 - h0) * (w1 - w0);
}

struct avg_fwd {
  pool_geom g; t2s_act_in x; t2s_act_out y;
  __device__ void operator()(int64_t i) const {
    int64_t c = i % g.c, t = i / g.c, ow = t % g.wout, oh = (t / g.wout) % g.hout;
    int64_t b = t / (g.wout * g.hout);
    int64_t h0, h1, w0, w1, unused;
    pool_geom::window(oh, g.kh, g.sh, g.ph, g.h, h0, h1, unused);
    pool_geom::window(ow, g.kw, g.sw, g.pw, g.w, w0, w1, unused);
    int64_t base = b * g.h * g.w * g.c + c;
    float s = 0.0f;
    for (int64_t ih = h0; ih < h1; ih++)
      for (int64_t iw = w0; iw < w1; iw++) s += x[base + (ih * g.w + iw) * g.c];
    y.set(i, s / (float)avg_divisor(g, oh, ow));
  }
};

struct avg_bwd {
  pool_geom g; const float *dy; float *dx; bool acc;
  __device__ void operator()(int64_t i) const {
    int64_t c = i % g.c, t = i / g.c, iw = t % g.w, ih = (t / g.w) % g.h, b = t / (g.w * g.h);
    int64_t oh0, oh1, ow0, ow1;
    pool_geom::covering(ih, g.kh, g.sh, g.ph, g.hout, oh0, oh1);
    pool_geom::covering(iw, g.kw, g.sw, g.pw, g.wout, ow0, ow1);
    float s = acc ? dx[i] : 0.0f;
    for (int64_t oh = oh0; oh <= oh1; oh++)
      for (int64_t ow = ow0; ow <= ow1; ow++) {
        int64_t o = ((b * g.hout + oh) * g.wout + ow) * g.c + c;
        s += dy[o] / (float)avg_divisor(g, oh, ow);
      }
    dx[i] = s;
  }
};

t2s_status need_nhwc(t2s_ctx *ctx, const t2s_node *node) {
  if (node->in[0]->layout == T2S_LAYOUT_NHWC && node->out->layout == T2S_LAYOUT_NHWC)
    return T2S_OK;
  t2s_ctx_fail(ctx, T2S_ERR_INVALID, "op '%s' on cuda: x and y must be NHWC activations",
               t2s_ops[node->op].name);
  return T2S_ERR_INVALID;
}

t2s_status max_pool2d_forward(t2s_ctx *ctx, t2s_node *node) {
  if (need_nhwc(ctx, node) != T2S_OK) return T2S_ERR_INVALID;
  pool_geom g = geom_of(node);
  int32_t *arg = NULL;
  if (node->recording) {
    arg = (int32_t *)t2s_scratch(ctx, (size_t)t2s_numel(node->out) * sizeof(int32_t));
    if (arg == NULL) return ctx->err.status;
  }
  node->saved = arg;
  return launch_each(ctx, node, t2s_numel(node->out),
                     max_fwd{g, t2s_cuda_in(node->in[0]), t2s_cuda_out(node->out), arg});
}

t2s_status max_pool2d_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  if (node->saved == NULL) {
    t2s_ctx_fail(ctx, T2S_ERR_INVALID, "op 'max_pool2d' on cuda: backward without the forward's "
                 "argmax (the forward ran with gradients off)");
    return T2S_ERR_INVALID;
  }
  return launch_each(ctx, node, t2s_numel(node->in[0]),
                     max_bwd{geom_of(node), node->out->grad, (const int32_t *)node->saved,
                             node->in[0]->grad, beta[0] != 0.0f});
}

t2s_status avg_pool2d_forward(t2s_ctx *ctx, t2s_node *node) {
  if (need_nhwc(ctx, node) != T2S_OK) return T2S_ERR_INVALID;
  return launch_each(ctx, node, t2s_numel(node->out),
                     avg_fwd{geom_of(node), t2s_cuda_in(node->in[0]), t2s_cuda_out(node->out)});
}

t2s_status avg_pool2d_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  return launch_each(ctx, node, t2s_numel(node->in[0]),
                     avg_bwd{geom_of(node), node->out->grad, node->in[0]->grad, beta[0] != 0.0f});
}

}  // namespace

T2S_CUDA_OP(max_pool2d)
T2S_CUDA_OP(avg_pool2d)
