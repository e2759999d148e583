/* Resizing on CUDA; semantics of core/ops/resize.c.
 *
 * resize_bilinear (NHWC, one thread per output element, consecutive channels):
 * the per-axis tables (i0, i1, l0, l1) are computed on the device with the CPU's
 * float / double expressions (no FMA contraction), so forward is bitwise the CPU's.
 * Backward is a gather: the thread of input (ih, iw) visits the outputs whose
 * tables name ih / iw (a candidate range from the scale, each candidate checked
 * exactly against the tables), in increasing (oh, ow) order, adding the four
 * corner terms in the CPU's order: deterministic, no float atomics, and the same
 * sum order as the CPU scatter.
 *
 * resize_nearest: uint8 labels (N, H, W) / (N, 1, H, W) or f32 / bf16 (N, C, H, W) NHWC.
 *
 * bf16 activations (precision bf16) are read through t2s_act_in and written through
 * t2s_act_out, interpolated in float as for f32; gradients stay f32. */
#include <math.h>

#include "core/cuda/kernels.cuh"

using namespace t2s_cuda;

namespace {

typedef t2s_resize_args resize_args;

/* ---- bilinear ------------------------------------------------------------------ */

struct lerp_axis { int64_t i0, i1; float l0, l1; };

/* core/ops/resize.c lerp_axis_fill, one entry per thread. */
__global__ void lerp_table_kernel(lerp_axis *ax, int64_t in, int64_t out, float scale, int align) {
  int64_t d = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (d >= out) return;
  float src = align ? __fmul_rn(scale, (float)d)
                    : (float)__dsub_rn(__dmul_rn((double)scale, (double)d + 0.5), 0.5);
  if (src < 0.0f) src = 0.0f;
  int64_t i0 = (int64_t)src;
  if (i0 > in - 1) i0 = in - 1;
  ax[d].i0 = i0;
  ax[d].i1 = i0 < in - 1 ? i0 + 1 : i0;
  ax[d].l1 = __fsub_rn(src, (float)i0);
  ax[d].l0 = __fsub_rn(1.0f, ax[d].l1);
}

float lerp_scale(int64_t in, int64_t out, int align) {
  if (align) return out > 1 ? (float)(in - 1) / (float)(out - 1) : 0.0f;
  return (float)in / (float)out;
}

struct bilinear_geom { int64_t n, c, h, w, oh, ow; const lerp_axis *ah, *aw; };

struct bilinear_fwd {
  bilinear_geom g; t2s_act_in x; t2s_act_out y;
  __device__ void operator()(int64_t i) const {
    int64_t c = i % g.c, t = i / g.c, ow = t % g.ow, oh = (t / g.ow) % g.oh, b = t / (g.ow * g.oh);
    const lerp_axis h = g.ah[oh], w = g.aw[ow];
    int64_t p = b * g.h * g.w * g.c + c;
    int64_t r0 = p + h.i0 * g.w * g.c, r1 = p + h.i1 * g.w * g.c;
    float top = __fadd_rn(__fmul_rn(w.l0, x[r0 + w.i0 * g.c]), __fmul_rn(w.l1, x[r0 + w.i1 * g.c]));
    float bot = __fadd_rn(__fmul_rn(w.l0, x[r1 + w.i0 * g.c]), __fmul_rn(w.l1, x[r1 + w.i1 * g.c]));
    y.set(i, __fadd_rn(__fmul_rn(h.l0, top), __fmul_rn(h.l1, bot)));
  }
};

/* Outputs that may name input index i along an axis (a superset; checked exactly).
 * The source coordinate grows monotonically with the output index at slope
 * in / out (align: (in - 1) / (out - 1)), and i is named when i0 or i1 is i, so the
 * source lies in [i - 1, i + 1]. */
__device__ void candidates(int64_t i, int64_t in, int64_t out, int align, int64_t &lo,
                           int64_t &hi) {
  if (in == 1 || out == 1) {
    lo = 0, hi = out;
    return;
  }
  double r = align ? (double)(out - 1) / (double)(in - 1) : (double)out / (double)in;
  lo = (int64_t)floor((double)(i - 1) * r) - 2;
  hi = (int64_t)ceil((double)(i + 2) * r) + 3;
  if (lo < 0) lo = 0;
  if (hi > out) hi = out;
}

struct bilinear_bwd {
  bilinear_geom g; int align; const float *dy; float *dx; bool acc;
  __device__ void operator()(int64_t i) const {
    int64_t c = i % g.c, t = i / g.c, iw = t % g.w, ih = (t / g.w) % g.h, b = t / (g.w * g.h);
    int64_t h_lo, h_hi, w_lo, w_hi;
    candidates(ih, g.h, g.oh, align, h_lo, h_hi);
    candidates(iw, g.w, g.ow, align, w_lo, w_hi);
    float s = acc ? dx[i] : 0.0f;
    for (int64_t oh = h_lo; oh < h_hi; oh++) {
      const lerp_axis h = g.ah[oh];
      bool top = h.i0 == ih, bottom = h.i1 == ih;
      if (!top && !bottom) continue;
      for (int64_t ow = w_lo; ow < w_hi; ow++) {
        const lerp_axis w = g.aw[ow];
        bool left = w.i0 == iw, right = w.i1 == iw;
        if (!left && !right) continue;
        float gv = dy[((b * g.oh + oh) * g.ow + ow) * g.c + c];
        /* the CPU's order: r0[i0], r0[i1], r1[i0], r1[i1] */
        if (top && left) s = __fadd_rn(s, __fmul_rn(__fmul_rn(h.l0, w.l0), gv));
        if (top && right) s = __fadd_rn(s, __fmul_rn(__fmul_rn(h.l0, w.l1), gv));
        if (bottom && left) s = __fadd_rn(s, __fmul_rn(__fmul_rn(h.l1, w.l0), gv));
        if (bottom && right) s = __fadd_rn(s, __fmul_rn(__fmul_rn(h.l1, w.l1), gv));
      }
    }
    dx[i] = s;
  }
};

/* Tables for both axes on the device (pass arena); fills g. */
t2s_status bilinear_setup(t2s_ctx *ctx, const t2s_node *node, bilinear_geom *g) {
  const resize_args *a = (const resize_args *)node->args;
  const t2s_tensor *x = node->in[0];
  if (x->layout != T2S_LAYOUT_NHWC || node->out->layout != T2S_LAYOUT_NHWC) {
    t2s_ctx_fail(ctx, T2S_ERR_INVALID, "op 'resize_bilinear' on cuda: x and y must be NHWC");
    return T2S_ERR_INVALID;
  }
  *g = bilinear_geom{x->shape[0], x->shape[1], x->shape[2], x->shape[3], a->out_h, a->out_w,
                     NULL, NULL};
  lerp_axis *ax = (lerp_axis *)t2s_scratch(ctx, (size_t)(a->out_h + a->out_w) * sizeof(lerp_axis));
  if (ax == NULL) return ctx->err.status;
  cudaStream_t s = t2s_cuda_be(ctx)->stream;
  lerp_table_kernel<<<(unsigned)((a->out_h + 255) / 256), 256, 0, s>>>(
      ax, g->h, a->out_h, lerp_scale(g->h, a->out_h, a->align_corners), a->align_corners);
  T2S_CU_LAUNCHED(ctx, node, "lerp_table_kernel");
  lerp_table_kernel<<<(unsigned)((a->out_w + 255) / 256), 256, 0, s>>>(
      ax + a->out_h, g->w, a->out_w, lerp_scale(g->w, a->out_w, a->align_corners),
      a->align_corners);
  T2S_CU_LAUNCHED(ctx, node, "lerp_table_kernel");
  g->ah = ax;
  g->aw = ax + a->out_h;
  return T2S_OK;
}

t2s_status resize_bilinear_forward(t2s_ctx *ctx, t2s_node *node) {
  bilinear_geom g;
  t2s_status st = bilinear_setup(ctx, node, &g);
  if (st != T2S_OK) return st;
  return launch_each(ctx, node, t2s_numel(node->out),
                     bilinear_fwd{g, t2s_cuda_in(node->in[0]), t2s_cuda_out(node->out)});
}

t2s_status resize_bilinear_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  bilinear_geom g;
  t2s_status st = bilinear_setup(ctx, node, &g);
  if (st != T2S_OK) return st;
  int align = ((const resize_args *)node->args)->align_corners;
  return launch_each(ctx, node, t2s_numel(node->in[0]),
                     bilinear_bwd{g, align, node->out->grad, node->in[0]->grad, beta[0] != 0.0f});
}

/* ---- nearest ---------------------------------------------------------------- */

/* src = min(floor(d * scale), in - 1) with the float scale in / out. */
__device__ __forceinline__ int64_t nearest_src(int64_t d, float scale, int64_t in) {
  int64_t s = (int64_t)floorf(__fmul_rn((float)d, scale));
  return s < in - 1 ? s : in - 1;
}

/* Planes-last view: element (b, oh, ow, c) of an NHWC f32 tensor, or (p, oh, ow)
 * of a (N, H, W) / (N, 1, H, W) label map (c = 1). */
template <class T>
struct nearest_fwd {
  const T *x; T *y; int64_t c, h, w, oh, ow; float sh, sw;
  __device__ void operator()(int64_t i) const {
    int64_t ch = i % c, t = i / c, ox = t % ow, oy = (t / ow) % oh, b = t / (ow * oh);
    int64_t iy = nearest_src(oy, sh, h), ix = nearest_src(ox, sw, w);
    y[i] = x[((b * h + iy) * w + ix) * c + ch];
  }
};

t2s_status resize_nearest_forward(t2s_ctx *ctx, t2s_node *node) {
  const resize_args *a = (const resize_args *)node->args;
  const t2s_tensor *x = node->in[0];
  int nd = x->ndim;
  int64_t h = x->shape[nd - 2], w = x->shape[nd - 1];
  float sh = (float)h / (float)a->out_h, sw = (float)w / (float)a->out_w;
  int64_t n = t2s_numel(node->out);
  if (x->dtype == T2S_U8) {
    /* (N, H, W) or (N, 1, H, W): one channel, either layout is the same memory */
    return launch_each(ctx, node, n,
                       nearest_fwd<uint8_t>{t2s_u8(x), t2s_u8(node->out), 1, h, w, a->out_h,
                                            a->out_w, sh, sw});
  }
  if (x->layout != T2S_LAYOUT_NHWC && x->shape[1] != 1) {
    t2s_ctx_fail(ctx, T2S_ERR_INVALID, "op 'resize_nearest' on cuda: a float input must be an "
                 "NHWC activation");
    return T2S_ERR_INVALID;
  }
  if (x->dtype == T2S_BF16) /* a copy: bf16 in, bf16 out, no arithmetic */
    return launch_each(ctx, node, n,
                       nearest_fwd<t2s_bf16>{(const t2s_bf16 *)x->data, (t2s_bf16 *)node->out->data,
                                             x->shape[1], h, w, a->out_h, a->out_w, sh, sw});
  return launch_each(ctx, node, n,
                     nearest_fwd<float>{t2s_f32(x), t2s_f32(node->out), x->shape[1], h, w,
                                        a->out_h, a->out_w, sh, sw});
}

}  // namespace

T2S_CUDA_OP(resize_bilinear)
T2S_CUDA_OP_FORWARD_ONLY(resize_nearest)
