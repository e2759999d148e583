/* 2-d convolution on the CPU (NCHW, float32): im2col + OpenBLAS sgemm, the readable
 * reference. A build with oneDNN hands every shape oneDNN implements to it
 * (core/ops/conv2d_dnnl.c, several times faster) unless T2S_ONEDNN=off; the tests
 * compare the two (test_conv_onednn).
 *
 * For image n and group g (Cin_g = Cin / groups input channels, Cout_g output
 * channels, K = Cin_g kh kw, P = Hout Wout):
 *   col_g (K x P)   col[(c, i, j), (oh, ow)] = x[n, c, oh sh - ph + i dh, ow sw - pw + j dw]
 *                   (zero outside the input)
 *   y_g  (Cout_g x P) = W_g (Cout_g x K) col_g  (+ bias)
 * Backward:
 *   dW_g += dy_g col_g^T                   (col recomputed: saving it costs K/Cin times x)
 *   dcol_g = W_g^T dy_g, dx = col2im(dcol) (the transpose of im2col: scatter-add)
 *   dbias += sum over n, p of dy
 * A 1x1 stride-1 unpadded convolution needs no im2col: x_n already is col (Cin x P).
 * Depthwise convolutions (groups = Cin = Cout) skip the GEMM: with one input channel
 * per group it would be a 1 x kh kw times kh kw x P product, bound by writing col;
 * they run as kh kw shifted multiply-adds over each plane instead.
 *
 * Before oneDNN, 3x3 stride-1 convolutions with padding = dilation go to Winograd
 * F(4x4, 3x3) (core/ops/conv2d_winograd.c) where it needs clearly fewer multiplies,
 * unless T2S_WINOGRAD=off. T2S_ONEDNN=off means the plain reference: Winograd is then
 * off too (fast_path_winograd below), so the tests and runs that want the reference's
 * numerics get them with one switch. */
#include <cblas.h>
#include <string.h>

#include "core/ops/conv2d.h"
#include "core/ops/conv2d_winograd.h"
#ifdef T2S_HAVE_DNNL
#include "core/ops/conv2d_dnnl.h"
#endif

typedef struct conv_geom {
  int64_t n, cin, h, w; /* input */
  int64_t cout, kh, kw; /* weight (cout, cin / groups, kh, kw) */
  int64_t hout, wout;
  int64_t groups, cin_g, cout_g;
  int64_t k; /* rows of one group's column matrix: cin_g kh kw */
  int64_t p; /* columns: hout wout */
  t2s_conv2d_args a;
  int direct;    /* 1x1, stride 1, no padding: x is the column matrix */
  int depthwise; /* groups = cin = cout: per-plane shifted multiply-adds */
} conv_geom;

t2s_conv2d_args t2s_conv_args(int stride, int pad, int dil) {
  t2s_conv2d_args a = {stride, stride, pad, pad, dil, dil, 1};
  return a;
}

static void conv_geom_make(conv_geom *g, const t2s_tensor *x, const t2s_tensor *w,
                           const t2s_conv2d_args *a) {
  g->n = x->shape[0], g->cin = x->shape[1], g->h = x->shape[2], g->w = x->shape[3];
  g->cout = w->shape[0], g->kh = w->shape[2], g->kw = w->shape[3];
  g->a = *a;
  g->groups = a->groups;
  g->cin_g = g->cin / a->groups;
  g->cout_g = g->cout / a->groups;
  g->hout = (g->h + 2 * a->pad_h - a->dil_h * (g->kh - 1) - 1) / a->stride_h + 1;
  g->wout = (g->w + 2 * a->pad_w - a->dil_w * (g->kw - 1) - 1) / a->stride_w + 1;
  g->k = g->cin_g * g->kh * g->kw;
  g->p = g->hout * g->wout;
  g->direct = g->kh == 1 && g->kw == 1 && a->stride_h == 1 && a->stride_w == 1 && a->pad_h == 0 &&
              a->pad_w == 0;
  g->depthwise = g->cin_g == 1 && g->cout_g == 1 && !g->direct;
}

/* Checks shapes and arguments; on error fills ctx->err and returns 0. */
static int conv_validate(t2s_ctx *ctx, const t2s_tensor *x, const t2s_tensor *w,
                         const t2s_tensor *bias, const t2s_conv2d_args *a) {
  char sx[96], sw[96], sb[96];
  if (!t2s_is_float(x) || w->dtype != T2S_F32 || (bias && bias->dtype != T2S_F32)) {
    t2s_ctx_fail(ctx, T2S_ERR_INVALID,
                 "conv2d: x, weight and bias must be float32 (x is %s, weight %s)",
                 t2s_dtype_name(x->dtype), t2s_dtype_name(w->dtype));
    return 0;
  }
  t2s_shape_str(x, sx, sizeof sx);
  t2s_shape_str(w, sw, sizeof sw);
  if (x->ndim != 4 || w->ndim != 4) {
    t2s_ctx_fail(ctx, T2S_ERR_INVALID,
                 "conv2d: x %s must be (N, Cin, H, W) and weight %s (Cout, Cin/groups, kh, kw)", sx,
                 sw);
    return 0;
  }
  if (a->stride_h < 1 || a->stride_w < 1 || a->dil_h < 1 || a->dil_w < 1 || a->pad_h < 0 ||
      a->pad_w < 0 || a->groups < 1) {
    t2s_ctx_fail(
        ctx, T2S_ERR_INVALID,
        "conv2d: stride (%d, %d) and dilation (%d, %d) must be >= 1, padding (%d, %d) >= 0, "
        "groups %d >= 1 (x %s, weight %s)",
        a->stride_h, a->stride_w, a->dil_h, a->dil_w, a->pad_h, a->pad_w, a->groups, sx, sw);
    return 0;
  }
  if (x->shape[1] % a->groups != 0 || w->shape[0] % a->groups != 0 ||
      w->shape[1] * a->groups != x->shape[1]) {
    t2s_ctx_fail(ctx, T2S_ERR_INVALID,
                 "conv2d: with groups %d, x %s and weight %s need Cin and Cout divisible by groups "
                 "and weight dim 1 = Cin / groups",
                 a->groups, sx, sw);
    return 0;
  }
  if (bias && (bias->ndim != 1 || bias->shape[0] != w->shape[0])) {
    t2s_ctx_fail(ctx, T2S_ERR_INVALID, "conv2d: bias %s must be (Cout) = (%lld) for weight %s",
                 t2s_shape_str(bias, sb, sizeof sb), (long long)w->shape[0], sw);
    return 0;
  }
  int64_t eh = x->shape[2] + 2 * a->pad_h - a->dil_h * (w->shape[2] - 1) - 1;
  int64_t ew = x->shape[3] + 2 * a->pad_w - a->dil_w * (w->shape[3] - 1) - 1;
  if (eh < 0 || ew < 0) {
    t2s_ctx_fail(ctx, T2S_ERR_INVALID,
                 "conv2d: the dilated kernel of weight %s (dilation %d, %d) does not fit in x %s "
                 "padded by (%d, %d)",
                 sw, a->dil_h, a->dil_w, sx, a->pad_h, a->pad_w);
    return 0;
  }
  return 1;
}

t2s_tensor *t2s_conv2d(t2s_ctx *ctx, t2s_tensor *x, t2s_tensor *w, t2s_tensor *bias,
                       const t2s_conv2d_args *a) {
  if (!t2s_ctx_ok(ctx) || x == NULL || w == NULL) return NULL;
  if (a == NULL) return t2s_ctx_fail(ctx, T2S_ERR_INVALID, "conv2d: no arguments given");
  if (!conv_validate(ctx, x, w, bias, a)) return NULL;
  conv_geom g;
  conv_geom_make(&g, x, w, a);
  t2s_tensor *out = t2s_tensor_new4(ctx, t2s_act_dtype(ctx), g.n, g.cout, g.hout, g.wout);
  t2s_tensor *in[3] = {x, w, bias};
  return t2s_op_apply(ctx, T2S_OP_conv2d, in, 3, out, a, sizeof *a);
}

/* Output positions o in [lo, hi) whose input coordinate o*stride + off lies in [0, n_in). */
static void valid_range(int64_t off, int64_t stride, int64_t n_out, int64_t n_in, int64_t *lo,
                        int64_t *hi) {
  int64_t l = off >= 0 ? 0 : (-off + stride - 1) / stride;
  int64_t last = n_in - 1 - off; /* o*stride <= last */
  int64_t h = last < 0 ? 0 : last / stride + 1;
  if (h > n_out) h = n_out;
  if (l > h) l = h;
  *lo = l;
  *hi = h;
}

/* Columns [r0 wout, r1 wout) of col, i.e. output rows r0..r1, from one image x
 * (cin x h x w); col is (cin kh kw) x L with L = (r1 - r0) wout. */
static void im2col(const conv_geom *g, const float *x, float *col, int64_t r0, int64_t r1) {
  const t2s_conv2d_args *a = &g->a;
  int64_t len = (r1 - r0) * g->wout;
  /* each channel fills its own rows of the column matrix */
  #pragma omp parallel for schedule(static) if (g->cin * g->kh * g->kw * len > (1 << 16))
  for (int64_t c = 0; c < g->cin; c++) {
    const float *xc = x + c * g->h * g->w;
    for (int64_t i = 0; i < g->kh; i++) {
      for (int64_t j = 0; j < g->kw; j++) {
        float *row = col + ((c * g->kh + i) * g->kw + j) * len;
        int64_t offw = j * a->dil_w - a->pad_w, ow0, ow1;
        valid_range(offw, a->stride_w, g->wout, g->w, &ow0, &ow1);
        for (int64_t oh = r0; oh < r1; oh++) {
          float *dst = row + (oh - r0) * g->wout;
          int64_t ih = oh * a->stride_h - a->pad_h + i * a->dil_h;
          if (ih < 0 || ih >= g->h) {
            memset(dst, 0, (size_t)g->wout * sizeof(float));
            continue;
          }
          const float *src = xc + ih * g->w; /* input column ow * stride + offw */
          memset(dst, 0, (size_t)ow0 * sizeof(float));
          if (a->stride_w == 1) {
            if (ow1 > ow0) memcpy(dst + ow0, src + ow0 + offw, (size_t)(ow1 - ow0) * sizeof(float));
          } else {
            for (int64_t ow = ow0; ow < ow1; ow++) dst[ow] = src[ow * a->stride_w + offw];
          }
          memset(dst + ow1, 0, (size_t)(g->wout - ow1) * sizeof(float));
        }
      }
    }
  }
}

/* dx (cin x h x w) += col2im(dcol) for output rows r0..r1 (dcol laid out as in im2col):
 * every column entry adds into the pixel it was copied from. */
static void col2im_add(const conv_geom *g, const float *dcol, float *dx, int64_t r0, int64_t r1) {
  const t2s_conv2d_args *a = &g->a;
  int64_t len = (r1 - r0) * g->wout;
  /* each channel adds into its own plane of dx, in the same order as one thread would */
  #pragma omp parallel for schedule(static) if (g->cin * g->kh * g->kw * len > (1 << 16))
  for (int64_t c = 0; c < g->cin; c++) {
    float *dxc = dx + c * g->h * g->w;
    for (int64_t i = 0; i < g->kh; i++) {
      int64_t offh = i * a->dil_h - a->pad_h, oh0, oh1;
      valid_range(offh, a->stride_h, g->hout, g->h, &oh0, &oh1);
      if (oh0 < r0) oh0 = r0;
      if (oh1 > r1) oh1 = r1;
      for (int64_t j = 0; j < g->kw; j++) {
        const float *row = dcol + ((c * g->kh + i) * g->kw + j) * len;
        int64_t offw = j * a->dil_w - a->pad_w, ow0, ow1;
        valid_range(offw, a->stride_w, g->wout, g->w, &ow0, &ow1);
        for (int64_t oh = oh0; oh < oh1; oh++) {
          const float *src = row + (oh - r0) * g->wout;
          float *dst = dxc + (oh * a->stride_h + offh) * g->w; /* column ow * stride + offw */
          if (a->stride_w == 1) {
            for (int64_t ow = ow0; ow < ow1; ow++) dst[ow + offw] += src[ow];
          } else {
            for (int64_t ow = ow0; ow < ow1; ow++) dst[ow * a->stride_w + offw] += src[ow];
          }
        }
      }
    }
  }
}

/* The column matrix is built for blocks of output rows so that its buffer stays
 * near T2S_CONV_COL_BYTES: scratch lives until the pass ends, and one whole column
 * matrix of a dilated ResNet / ASPP layer at 512x512 is 40-300 MB. The GEMMs read
 * and write the block in place (leading dimension P for y, dy and the direct x). */
#define T2S_CONV_COL_BYTES ((int64_t)4 << 20)

typedef struct col_block {
  int64_t r0, r1;   /* output rows */
  int64_t q0, len;  /* first column (r0 wout) and number of columns */
  const float *col; /* groups k x len matrix, leading dimension ld */
  int64_t ld;
} col_block;

static int64_t block_rows(const conv_geom *g) {
  if (g->direct) return g->hout;
  int64_t rows = T2S_CONV_COL_BYTES / (g->groups * g->k * g->wout * (int64_t)sizeof(float));
  return rows < 1 ? 1 : rows > g->hout ? g->hout : rows;
}

/* Block starting at output row r0 of image xn: x itself on the direct path, else im2col. */
static col_block make_block(const conv_geom *g, const float *xn, float *buf, int64_t r0,
                            int64_t rows, int build) {
  col_block b;
  b.r0 = r0;
  b.r1 = r0 + rows < g->hout ? r0 + rows : g->hout;
  b.q0 = r0 * g->wout;
  b.len = (b.r1 - b.r0) * g->wout;
  b.col = g->direct ? xn : buf;
  b.ld = g->direct ? g->p : b.len;
  if (build && !g->direct) im2col(g, xn, buf, b.r0, b.r1);
  return b;
}

/* ---- depthwise path ----
 * For one channel plane and tap (i, j) with weight v, output (oh, ow) meets input
 * (oh sh + i dh - ph, ow sw + j dw - pw). Forward adds v x into y, backward-data
 * adds v dy into dx, backward-weight sums dy x into dw(i, j); each walks only the
 * valid output range of the tap, so no bounds test sits in the inner loop. */
typedef enum dw_pass { DW_FORWARD, DW_BACKWARD_DATA, DW_BACKWARD_WEIGHT } dw_pass;

/* sum_k a[k] b[k stride] with eight partial sums, so that the compiler may vectorise
 * without -ffast-math reordering one float accumulator. */
static double dot_strided(const float *a, const float *b, int64_t stride, int64_t n) {
  float part[8] = {0};
  int64_t k = 0;
  if (stride == 1)
    for (; k + 8 <= n; k += 8)
      for (int l = 0; l < 8; l++) part[l] += a[k + l] * b[k + l];
  double s = 0.0;
  for (; k < n; k++) s += a[k] * b[k * stride];
  for (int l = 0; l < 8; l++) s += part[l];
  return s;
}

/* One channel plane: x (h x w) and dy (hout x wout) are read, out is y (forward) or
 * dx (backward data), dw gets the kh kw tap sums (backward weight). */
static void depthwise_plane(const conv_geom *g, dw_pass pass, const float *w, const float *x,
                            const float *dy, float *out, double *dw) {
  const t2s_conv2d_args *a = &g->a;
  int64_t sw = a->stride_w;
  for (int64_t i = 0; i < g->kh; i++) {
    int64_t offh = i * a->dil_h - a->pad_h, oh0, oh1;
    valid_range(offh, a->stride_h, g->hout, g->h, &oh0, &oh1);
    for (int64_t j = 0; j < g->kw; j++) {
      int64_t offw = j * a->dil_w - a->pad_w, ow0, ow1;
      valid_range(offw, sw, g->wout, g->w, &ow0, &ow1);
      float v = w[i * g->kw + j];
      double acc = 0.0;
      int64_t len = ow1 - ow0;
      for (int64_t oh = oh0; oh < oh1; oh++) {
        /* input index of output column ow0: ow0 sw + offw >= 0 */
        int64_t in0 = (oh * a->stride_h + offh) * g->w + ow0 * sw + offw, out0 = oh * g->wout + ow0;
        if (pass == DW_FORWARD) {
          const float *xr = x + in0;
          float *yr = out + out0;
          if (sw == 1)
            for (int64_t k = 0; k < len; k++) yr[k] += v * xr[k];
          else
            for (int64_t k = 0; k < len; k++) yr[k] += v * xr[k * sw];
        } else if (pass == DW_BACKWARD_DATA) {
          const float *dyr = dy + out0;
          float *dxr = out + in0;
          if (sw == 1)
            for (int64_t k = 0; k < len; k++) dxr[k] += v * dyr[k];
          else
            for (int64_t k = 0; k < len; k++) dxr[k * sw] += v * dyr[k];
        } else {
          acc += dot_strided(dy + out0, x + in0, sw, len);
        }
      }
      if (pass == DW_BACKWARD_WEIGHT) dw[i * g->kw + j] += acc;
    }
  }
}

static void depthwise_forward(const conv_geom *g, const float *x, const float *w, const float *b,
                              float *y) {
  int64_t taps = g->kh * g->kw;
  /* planes are independent: each thread owns whole (n, c) planes, so the result does
   * not depend on the thread count */
  #pragma omp parallel for collapse(2) schedule(static) if (g->n * g->cin > 1)
  for (int64_t n = 0; n < g->n; n++)
    for (int64_t c = 0; c < g->cin; c++) {
      float *yp = y + (n * g->cout + c) * g->p;
      float b0 = b ? b[c] : 0.0f;
      for (int64_t q = 0; q < g->p; q++) yp[q] = b0;
      depthwise_plane(g, DW_FORWARD, w + c * taps, x + (n * g->cin + c) * g->h * g->w, NULL, yp,
                      NULL);
    }
}

static t2s_status depthwise_backward(t2s_ctx *ctx, const conv_geom *g, t2s_tensor *xt,
                                     t2s_tensor *wt, const float *dy, const float *beta) {
  int64_t taps = g->kh * g->kw, plane = g->h * g->w;
  const float *x = t2s_f32(xt), *w = t2s_f32(wt);
  if (t2s_wants_grad(xt)) {
    if (beta[0] == 0.0f) memset(xt->grad, 0, (size_t)(g->n * g->cin * plane) * sizeof(float));
    #pragma omp parallel for collapse(2) schedule(static) if (g->n * g->cin > 1)
    for (int64_t n = 0; n < g->n; n++)
      for (int64_t c = 0; c < g->cin; c++)
        depthwise_plane(g, DW_BACKWARD_DATA, w + c * taps, NULL, dy + (n * g->cout + c) * g->p,
                        xt->grad + (n * g->cin + c) * plane, NULL);
  }
  if (!t2s_wants_grad(wt)) return T2S_OK;
  double *dw = t2s_scratch(ctx, (size_t)(g->cout * taps) * sizeof(double));
  if (dw == NULL) return ctx->err.status;
  memset(dw, 0, (size_t)(g->cout * taps) * sizeof(double));
  /* a thread owns a channel's taps and sums its images in order n = 0, 1, ... */
  #pragma omp parallel for schedule(static) if (g->cin > 1)
  for (int64_t c = 0; c < g->cin; c++)
    for (int64_t n = 0; n < g->n; n++)
      depthwise_plane(g, DW_BACKWARD_WEIGHT, w + c * taps, x + (n * g->cin + c) * plane,
                      dy + (n * g->cout + c) * g->p, NULL, dw + c * taps);
  for (int64_t k = 0; k < g->cout * taps; k++)
    wt->grad[k] = beta[1] != 0.0f ? wt->grad[k] + (float)dw[k] : (float)dw[k];
  return T2S_OK;
}

/* Whether Winograd may run: its own switch, and in a oneDNN build also oneDNN's, so
 * that T2S_ONEDNN=off keeps meaning "the im2col + sgemm reference". */
static int fast_path_winograd(void) {
#ifdef T2S_HAVE_DNNL
  if (!t2s_conv2d_onednn_enabled()) return 0;
#endif
  return t2s_conv2d_winograd_enabled();
}

t2s_status t2s_conv2d_cpu_forward(t2s_ctx *ctx, t2s_node *node) {
  const t2s_tensor *xt = node->in[0], *wt = node->in[1], *bt = node->in[2];
  conv_geom g;
  conv_geom_make(&g, xt, wt, node->args);
  const float *x = t2s_f32(xt), *w = t2s_f32(wt), *b = bt ? t2s_f32(bt) : NULL;
  float *y = t2s_f32(node->out);
  ctx->flops += 2.0 * (double)g.n * (double)g.cout * (double)g.p * (double)g.k;
  int done = 0;
  if (fast_path_winograd()) {
    t2s_status st = t2s_conv2d_winograd_forward(ctx, node, &done);
    if (st != T2S_OK || done) return st;
  }
#ifdef T2S_HAVE_DNNL
  if (t2s_conv2d_onednn_enabled()) {
    t2s_status st = t2s_conv2d_onednn_forward(ctx, node, &done);
    if (st != T2S_OK || done) return st;
  }
#endif
  if (g.depthwise) {
    depthwise_forward(&g, x, w, b, y);
    return T2S_OK;
  }
  int64_t rows = block_rows(&g);
  float *buf = NULL;
  if (!g.direct &&
      (buf = t2s_scratch(ctx, (size_t)(g.groups * g.k * rows * g.wout) * sizeof(float))) == NULL)
    return ctx->err.status;
  for (int64_t n = 0; n < g.n; n++) {
    const float *xn = x + n * g.cin * g.h * g.w;
    float *yn = y + n * g.cout * g.p;
    /* the bias goes in as the initial C of the GEMM (beta = 1) */
    if (b)
      for (int64_t co = 0; co < g.cout; co++)
        for (int64_t q = 0; q < g.p; q++) yn[co * g.p + q] = b[co];
    for (int64_t r0 = 0; r0 < g.hout; r0 += rows) {
      col_block cb = make_block(&g, xn, buf, r0, rows, 1);
      for (int64_t gr = 0; gr < g.groups; gr++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)g.cout_g, (int)cb.len, (int)g.k,
                    1.0f, w + gr * g.cout_g * g.k, (int)g.k, cb.col + gr * g.k * cb.ld, (int)cb.ld,
                    b ? 1.0f : 0.0f, yn + gr * g.cout_g * g.p + cb.q0, (int)g.p);
    }
  }
  return T2S_OK;
}

static void bias_backward(const conv_geom *g, const float *dy, float *db, float beta) {
  for (int64_t co = 0; co < g->cout; co++) {
    double s = 0.0;
    for (int64_t n = 0; n < g->n; n++) {
      const float *d = dy + (n * g->cout + co) * g->p;
      for (int64_t q = 0; q < g->p; q++) s += d[q];
    }
    db[co] = beta != 0.0f ? db[co] + (float)s : (float)s;
  }
}

t2s_status t2s_conv2d_cpu_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  t2s_tensor *xt = node->in[0], *wt = node->in[1], *bt = node->in[2];
  conv_geom g;
  conv_geom_make(&g, xt, wt, node->args);
  const float *x = t2s_f32(xt), *w = t2s_f32(wt), *dy = node->out->grad;
  int want_x = t2s_wants_grad(xt), want_w = t2s_wants_grad(wt);
  if (t2s_wants_grad(bt)) bias_backward(&g, dy, bt->grad, beta[2]);
  if (!want_x && !want_w) return T2S_OK;
  int done = 0;
  if (fast_path_winograd()) {
    t2s_status st = t2s_conv2d_winograd_backward(ctx, node, beta, &done);
    if (st != T2S_OK || done) return st;
  }
#ifdef T2S_HAVE_DNNL
  if (t2s_conv2d_onednn_enabled()) {
    t2s_status st = t2s_conv2d_onednn_backward(ctx, node, beta, &done);
    if (st != T2S_OK || done) return st;
  }
#endif
  if (g.depthwise) return depthwise_backward(ctx, &g, xt, wt, dy, beta);
  int64_t rows = block_rows(&g), xsz = g.cin * g.h * g.w;
  float *buf = NULL;
  if (!g.direct &&
      (buf = t2s_scratch(ctx, (size_t)(g.groups * g.k * rows * g.wout) * sizeof(float))) == NULL)
    return ctx->err.status;
  float bw = beta[1]; /* the first GEMM into dW honours beta, the rest accumulate */
  for (int64_t n = 0; n < g.n; n++) {
    const float *xn = x + n * xsz;
    float *dxn = want_x ? xt->grad + n * xsz : NULL;
    if (want_x && !g.direct && beta[0] == 0.0f) memset(dxn, 0, (size_t)xsz * sizeof(float));
    for (int64_t r0 = 0; r0 < g.hout; r0 += rows) {
      col_block cb = make_block(&g, xn, buf, r0, rows, want_w);
      const float *dyb = dy + n * g.cout * g.p + cb.q0; /* leading dimension P */
      if (want_w) {
        for (int64_t gr = 0; gr < g.groups; gr++)
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)g.cout_g, (int)g.k, (int)cb.len,
                      1.0f, dyb + gr * g.cout_g * g.p, (int)g.p, cb.col + gr * g.k * cb.ld,
                      (int)cb.ld, bw, wt->grad + gr * g.cout_g * g.k, (int)g.k);
        bw = 1.0f;
      }
      if (!want_x) continue;
      /* direct path: dx_n = W^T dy_n straight into dx, honouring beta; otherwise
       * dcol = W^T dy_block into buf, scattered into the zeroed (beta 0) or kept dx */
      float *dcol = g.direct ? dxn : buf;
      float bx = g.direct ? beta[0] : 0.0f;
      for (int64_t gr = 0; gr < g.groups; gr++)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)g.k, (int)cb.len, (int)g.cout_g,
                    1.0f, w + gr * g.cout_g * g.k, (int)g.k, dyb + gr * g.cout_g * g.p, (int)g.p,
                    bx, dcol + gr * g.k * cb.ld, (int)cb.ld);
      if (!g.direct) col2im_add(&g, dcol, dxn, cb.r0, cb.r1);
    }
  }
  return T2S_OK;
}
