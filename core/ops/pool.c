/* Max and average 2-d pooling on the CPU (NCHW, float32), PyTorch semantics.
 *
 * Output size per axis: out = floor_or_ceil((in + 2 pad - k) / stride) + 1; with
 * ceil_mode the last window must still start inside the input or the left padding,
 * so out is reduced by one when (out - 1) stride >= in + pad. Window o covers
 * [o stride - pad, o stride - pad + k) clipped to the input.
 * Max pooling treats padding as -inf and remembers the first maximum (NaN wins,
 * as in PyTorch); backward routes dy there. Average pooling divides by the window
 * size clipped to [-pad, in + pad) when count_include_pad, else by the number of
 * input elements in the window. */
#include <math.h>
#include <string.h>

#include "core/ops/pool.h"

typedef struct pool_geom {
  int64_t nc, h, w, hout, wout;
  t2s_pool2d_args a;
} pool_geom;

static int64_t pool_out_size(int64_t in, int k, int s, int p, int ceil_mode) {
  int64_t span = in + 2 * (int64_t)p - k;
  if (span < 0) return 0; /* the kernel does not fit: reported by the caller */
  int64_t out = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
  if (ceil_mode && (out - 1) * s >= in + p) out--;
  return out;
}

static pool_geom pool_geom_of(const t2s_tensor *x, const t2s_pool2d_args *a) {
  pool_geom g;
  g.nc = x->shape[0] * x->shape[1];
  g.h = x->shape[2];
  g.w = x->shape[3];
  g.hout = pool_out_size(g.h, a->kernel_h, a->stride_h, a->pad_h, a->ceil_mode);
  g.wout = pool_out_size(g.w, a->kernel_w, a->stride_w, a->pad_w, a->ceil_mode);
  g.a = *a;
  return g;
}

static t2s_tensor *pool_apply(t2s_ctx *ctx, t2s_op_id id, const char *op, t2s_tensor *x,
                              const t2s_pool2d_args *a) {
  if (!t2s_ctx_ok(ctx) || x == NULL) return NULL;
  if (a == NULL) return t2s_ctx_fail(ctx, T2S_ERR_INVALID, "%s: no arguments given", op);
  char sx[96];
  t2s_shape_str(x, sx, sizeof sx);
  if (!t2s_is_float(x) || x->ndim != 4)
    return t2s_ctx_fail(ctx, T2S_ERR_INVALID, "%s: x %s (%s) must be float32 (N, C, H, W)", op, sx,
                        t2s_dtype_name(x->dtype));
  if (a->kernel_h < 1 || a->kernel_w < 1 || a->stride_h < 1 || a->stride_w < 1 || a->pad_h < 0 ||
      a->pad_w < 0 || 2 * a->pad_h > a->kernel_h || 2 * a->pad_w > a->kernel_w)
    return t2s_ctx_fail(ctx, T2S_ERR_INVALID,
                        "%s: kernel (%d, %d) and stride (%d, %d) must be >= 1 and padding (%d, %d) "
                        "between 0 and half the kernel (x %s)",
                        op, a->kernel_h, a->kernel_w, a->stride_h, a->stride_w, a->pad_h, a->pad_w,
                        sx);
  pool_geom g = pool_geom_of(x, a);
  if (g.hout < 1 || g.wout < 1)
    return t2s_ctx_fail(ctx, T2S_ERR_INVALID,
                        "%s: kernel (%d, %d) with padding (%d, %d) is larger than x %s", op,
                        a->kernel_h, a->kernel_w, a->pad_h, a->pad_w, sx);
  t2s_tensor *in[1] = {x};
  t2s_tensor *out = t2s_tensor_new4(ctx, t2s_follow_dtype(x, NULL), x->shape[0], x->shape[1], g.hout, g.wout);
  return t2s_op_apply(ctx, id, in, 1, out, a, sizeof *a);
}

t2s_tensor *t2s_max_pool2d(t2s_ctx *ctx, t2s_tensor *x, const t2s_pool2d_args *a) {
  return pool_apply(ctx, T2S_OP_max_pool2d, "max_pool2d", x, a);
}

t2s_tensor *t2s_avg_pool2d(t2s_ctx *ctx, t2s_tensor *x, const t2s_pool2d_args *a) {
  return pool_apply(ctx, T2S_OP_avg_pool2d, "avg_pool2d", x, a);
}

/* Window of output o along one axis: input [*lo, *hi) and, for the divisor, the
 * unclipped extent limited to the padded input. */
static inline void pool_window(int64_t o, int k, int s, int p, int64_t in, int64_t *lo, int64_t *hi,
                               int64_t *padded) {
  int64_t start = o * s - p, end = start + k;
  if (end > in + p) end = in + p;
  *padded = end - start;
  *lo = start < 0 ? 0 : start;
  *hi = end > in ? in : end;
}

/* ---- max pooling ---- */

t2s_status t2s_max_pool2d_cpu_forward(t2s_ctx *ctx, t2s_node *node) {
  pool_geom g = pool_geom_of(node->in[0], node->args);
  const float *x = t2s_f32(node->in[0]);
  float *y = t2s_f32(node->out);
  /* argmax within the plane (h w), saved for backward */
  int32_t *arg = NULL;
  if (node->recording) {
    arg = t2s_scratch(ctx, (size_t)(g.nc * g.hout * g.wout) * sizeof(int32_t));
    if (arg == NULL) return ctx->err.status;
    node->saved = arg;
  }
  const t2s_pool2d_args *a = &g.a;
  /* the planes are independent */
  #pragma omp parallel for schedule(static) if (g.nc * g.h * g.w > (1 << 16))
  for (int64_t p = 0; p < g.nc; p++) {
    const float *xp = x + p * g.h * g.w;
    for (int64_t oh = 0; oh < g.hout; oh++) {
      int64_t h0, h1, unused;
      pool_window(oh, a->kernel_h, a->stride_h, a->pad_h, g.h, &h0, &h1, &unused);
      for (int64_t ow = 0; ow < g.wout; ow++) {
        int64_t w0, w1;
        pool_window(ow, a->kernel_w, a->stride_w, a->pad_w, g.w, &w0, &w1, &unused);
        int64_t best = h0 * g.w + w0;
        float m = xp[best];
        for (int64_t ih = h0; ih < h1; ih++)
          for (int64_t iw = w0; iw < w1; iw++) {
            float v = xp[ih * g.w + iw];
            if (v > m || (isnan(v) && !isnan(m))) {
              m = v;
              best = ih * g.w + iw;
            }
          }
        int64_t o = (p * g.hout + oh) * g.wout + ow;
        y[o] = m;
        if (arg) arg[o] = (int32_t)best;
      }
    }
  }
  return T2S_OK;
}

t2s_status t2s_max_pool2d_cpu_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  pool_geom g = pool_geom_of(node->in[0], node->args);
  const int32_t *arg = node->saved;
  const float *dy = node->out->grad;
  float *dx = node->in[0]->grad;
  int64_t plane = g.h * g.w, oplane = g.hout * g.wout;
  const int zero = beta[0] == 0.0f;
  /* each plane's argmax points into that plane: the planes are independent */
  #pragma omp parallel for schedule(static) if (g.nc * plane > (1 << 16))
  for (int64_t p = 0; p < g.nc; p++) {
    if (zero) memset(dx + p * plane, 0, (size_t)plane * sizeof(float));
    for (int64_t o = 0; o < oplane; o++) dx[p * plane + arg[p * oplane + o]] += dy[p * oplane + o];
  }
  return T2S_OK;
}

/* ---- average pooling ---- */

static inline int64_t avg_divisor(const t2s_pool2d_args *a, int64_t hp, int64_t wp, int64_t hn,
                                  int64_t wn) {
  return a->count_include_pad ? hp * wp : hn * wn;
}

t2s_status t2s_avg_pool2d_cpu_forward(t2s_ctx *ctx, t2s_node *node) {
  pool_geom g = pool_geom_of(node->in[0], node->args);
  const t2s_pool2d_args *a = &g.a;
  const float *x = t2s_f32(node->in[0]);
  float *y = t2s_f32(node->out);
  for (int64_t p = 0; p < g.nc; p++) {
    const float *xp = x + p * g.h * g.w;
    for (int64_t oh = 0; oh < g.hout; oh++) {
      int64_t h0, h1, hp;
      pool_window(oh, a->kernel_h, a->stride_h, a->pad_h, g.h, &h0, &h1, &hp);
      for (int64_t ow = 0; ow < g.wout; ow++) {
        int64_t w0, w1, wp;
        pool_window(ow, a->kernel_w, a->stride_w, a->pad_w, g.w, &w0, &w1, &wp);
        float s = 0.0f;
        for (int64_t ih = h0; ih < h1; ih++)
          for (int64_t iw = w0; iw < w1; iw++) s += xp[ih * g.w + iw];
        y[(p * g.hout + oh) * g.wout + ow] = s / (float)avg_divisor(a, hp, wp, h1 - h0, w1 - w0);
      }
    }
  }
  return T2S_OK;
}

t2s_status t2s_avg_pool2d_cpu_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  pool_geom g = pool_geom_of(node->in[0], node->args);
  const t2s_pool2d_args *a = &g.a;
  const float *dy = node->out->grad;
  float *dx = node->in[0]->grad;
  if (beta[0] == 0.0f) memset(dx, 0, (size_t)(g.nc * g.h * g.w) * sizeof(float));
  for (int64_t p = 0; p < g.nc; p++) {
    float *dxp = dx + p * g.h * g.w;
    for (int64_t oh = 0; oh < g.hout; oh++) {
      int64_t h0, h1, hp;
      pool_window(oh, a->kernel_h, a->stride_h, a->pad_h, g.h, &h0, &h1, &hp);
      for (int64_t ow = 0; ow < g.wout; ow++) {
        int64_t w0, w1, wp;
        pool_window(ow, a->kernel_w, a->stride_w, a->pad_w, g.w, &w0, &w1, &wp);
        float d =
            dy[(p * g.hout + oh) * g.wout + ow] / (float)avg_divisor(a, hp, wp, h1 - h0, w1 - w0);
        for (int64_t ih = h0; ih < h1; ih++)
          for (int64_t iw = w0; iw < w1; iw++) dxp[ih * g.w + iw] += d;
      }
    }
  }
  return T2S_OK;
}
