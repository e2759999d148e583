// ctest-labels: unit grad
/* conv2d: forward against a direct 7-loop convolution written here, backward
 * against finite differences, over stride, padding, dilation, groups, bias,
 * the 1x1 fast path and non-square kernels; plus shape errors and FLOP count. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/harness.h"

typedef struct conv_case {
  const char *name;
  int64_t n, cin, h, w, cout, kh, kw;
  t2s_conv2d_args a;
  int bias;
} conv_case;

static t2s_tensor *build_conv(t2s_ctx *c, t2s_tensor **in, void *u) {
  const conv_case *cc = u;
  return t2s_conv2d(c, in[0], in[1], in[2], &cc->a);
}

/* y[n, co, oh, ow] = b[co] + sum_{ci in group, i, j} w[co, ci, i, j] x[n, g cin_g + ci, ...] */
static double naive_at(const conv_case *cc, const float *x, const float *w, const float *b,
                       int64_t n, int64_t co, int64_t oh, int64_t ow) {
  const t2s_conv2d_args *a = &cc->a;
  int64_t cin_g = cc->cin / a->groups, cout_g = cc->cout / a->groups, g = co / cout_g;
  double s = b ? b[co] : 0.0;
  for (int64_t ci = 0; ci < cin_g; ci++)
    for (int64_t i = 0; i < cc->kh; i++)
      for (int64_t j = 0; j < cc->kw; j++) {
        int64_t ih = oh * a->stride_h - a->pad_h + i * a->dil_h;
        int64_t iw = ow * a->stride_w - a->pad_w + j * a->dil_w;
        if (ih < 0 || ih >= cc->h || iw < 0 || iw >= cc->w) continue;
        double xv = x[((n * cc->cin + g * cin_g + ci) * cc->h + ih) * cc->w + iw];
        s += xv * w[((co * cin_g + ci) * cc->kh + i) * cc->kw + j];
      }
  return s;
}

static void check_forward(const conv_case *cc, t2s_tensor *x, t2s_tensor *w, t2s_tensor *b,
                          int64_t hout, int64_t wout) {
  t2s_error err = {0};
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 1 << 20, &err);
  t2s_tensor *y = t2s_conv2d(ctx, x, w, b, &cc->a);
  CHECK_MSG(y != NULL, "%s: %s", cc->name, ctx->err.msg);
  if (y == NULL) {
    t2s_ctx_destroy(ctx);
    return;
  }
  CHECK_MSG(
      y->shape[0] == cc->n && y->shape[1] == cc->cout && y->shape[2] == hout && y->shape[3] == wout,
      "%s: output shape [%lld, %lld, %lld, %lld], expected [%lld, %lld, %lld, %lld]", cc->name,
      (long long)y->shape[0], (long long)y->shape[1], (long long)y->shape[2],
      (long long)y->shape[3], (long long)cc->n, (long long)cc->cout, (long long)hout,
      (long long)wout);
  double flops = 2.0 * cc->n * cc->cout * hout * wout * (cc->cin / cc->a.groups) * cc->kh * cc->kw;
  CHECK_MSG(fabs(ctx->flops - flops) < 0.5, "%s: flops %g, expected %g", cc->name, ctx->flops,
            flops);
  int bad = 0;
  const float *yv = t2s_f32(y);
  for (int64_t n = 0; n < cc->n; n++)
    for (int64_t co = 0; co < cc->cout; co++)
      for (int64_t oh = 0; oh < hout; oh++)
        for (int64_t ow = 0; ow < wout; ow++) {
          double want = naive_at(cc, t2s_f32(x), t2s_f32(w), b ? t2s_f32(b) : NULL, n, co, oh, ow);
          double got = yv[((n * cc->cout + co) * hout + oh) * wout + ow];
          if (fabs(got - want) > 1e-5 * (1.0 + fabs(want)) && bad++ < 3)
            fprintf(stderr, "%s: y[%lld, %lld, %lld, %lld] = %g, direct convolution gives %g\n",
                    cc->name, (long long)n, (long long)co, (long long)oh, (long long)ow, got, want);
        }
  CHECK_MSG(bad == 0, "%s: %d forward values differ from the direct convolution", cc->name, bad);
  t2s_ctx_destroy(ctx);
}

/* Backward of the loss sum(y r) over every element against the direct formulas
 *   dx[n, ci, ih, iw] = sum over the outputs that read it of r w,
 *   dw[co, ci, i, j]  = sum over n, oh, ow of r x (zero outside the input). */
static void check_backward(const conv_case *cc, t2s_tensor *x, t2s_tensor *w, t2s_tensor *b) {
  t2s_error err = {0};
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 1 << 20, &err);
  t2s_tensor *y = t2s_conv2d(ctx, x, w, b, &cc->a);
  t2s_tensor *r = y ? t2s_test_tensor(4, y->shape, -1.0f, 1.0f, 17, 0) : NULL;
  t2s_tensor *loss = y ? t2s_weighted_sum(ctx, y, r) : NULL;
  int ok = loss && t2s_backward(ctx, loss, 1.0f) == T2S_OK;
  CHECK_MSG(ok, "%s: %s", cc->name, ctx->err.msg);
  if (!ok) {
    t2s_ctx_destroy(ctx);
    return;
  }
  const t2s_conv2d_args *a = &cc->a;
  int64_t hout = y->shape[2], wout = y->shape[3], cin_g = cc->cin / a->groups,
          cout_g = cc->cout / a->groups;
  int64_t nx = t2s_numel(x), nw = t2s_numel(w);
  double *dx = calloc((size_t)nx, sizeof(double)), *dw = calloc((size_t)nw, sizeof(double));
  const float *xv = t2s_f32(x), *wv = t2s_f32(w), *rv = t2s_f32(r);
  for (int64_t n = 0; n < cc->n; n++)
    for (int64_t co = 0; co < cc->cout; co++)
      for (int64_t oh = 0; oh < hout; oh++)
        for (int64_t ow = 0; ow < wout; ow++) {
          double rr = rv[((n * cc->cout + co) * hout + oh) * wout + ow];
          for (int64_t ci = 0; ci < cin_g; ci++)
            for (int64_t i = 0; i < cc->kh; i++)
              for (int64_t j = 0; j < cc->kw; j++) {
                int64_t ih = oh * a->stride_h - a->pad_h + i * a->dil_h;
                int64_t iw = ow * a->stride_w - a->pad_w + j * a->dil_w;
                if (ih < 0 || ih >= cc->h || iw < 0 || iw >= cc->w) continue;
                int64_t xi = ((n * cc->cin + co / cout_g * cin_g + ci) * cc->h + ih) * cc->w + iw;
                int64_t wi = ((co * cin_g + ci) * cc->kh + i) * cc->kw + j;
                dx[xi] += rr * wv[wi];
                dw[wi] += rr * xv[xi];
              }
        }
  int bad = 0;
  for (int64_t k = 0; k < nx; k++)
    if (fabs(x->grad[k] - dx[k]) > 1e-4 * (1 + fabs(dx[k])) && bad++ < 3)
      fprintf(stderr, "%s: dx[%lld] = %g, direct formula %g\n", cc->name, (long long)k, x->grad[k],
              dx[k]);
  for (int64_t k = 0; k < nw; k++)
    if (fabs(w->grad[k] - dw[k]) > 1e-4 * (1 + fabs(dw[k])) && bad++ < 6)
      fprintf(stderr, "%s: dw[%lld] = %g, direct formula %g\n", cc->name, (long long)k, w->grad[k],
              dw[k]);
  CHECK_MSG(bad == 0, "%s: %d gradient values differ from the direct formulas", cc->name, bad);
  free(dx);
  free(dw);
  x->grad = w->grad = NULL;
  if (b) b->grad = NULL;
  t2s_test_tensor_free(r);
  t2s_ctx_destroy(ctx);
}

/* Write mode (beta 0) must not read the grad memory: dx and dw from a context whose
 * pass arena first held NaNs must equal those from a clean one. */
static void check_stale_memory(const conv_case *cc, t2s_tensor **in) {
  int64_t nx = t2s_numel(in[0]), nw = t2s_numel(in[1]);
  float *ref = malloc((size_t)(nx + nw) * sizeof(float));
  for (int poison = 0; poison < 2; poison++) {
    t2s_error err = {0};
    t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 1 << 20, &err);
    if (poison) {
      float *p = t2s_scratch(ctx, 1 << 19);
      for (size_t i = 0; i < (1 << 19) / sizeof(float); i++) p[i] = NAN;
      t2s_ctx_end_pass(ctx);
    }
    t2s_tensor *y = build_conv(ctx, in, (void *)cc);
    t2s_tensor *r = y ? t2s_test_tensor(4, y->shape, -1.0f, 1.0f, 9, 0) : NULL;
    t2s_tensor *loss = y ? t2s_weighted_sum(ctx, y, r) : NULL;
    int ok = loss && t2s_backward(ctx, loss, 1.0f) == T2S_OK;
    CHECK_MSG(ok, "%s: %s", cc->name, ctx->err.msg);
    if (ok && !poison) {
      memcpy(ref, in[0]->grad, (size_t)nx * sizeof(float));
      memcpy(ref + nx, in[1]->grad, (size_t)nw * sizeof(float));
    }
    if (ok && poison)
      CHECK_MSG(memcmp(ref, in[0]->grad, (size_t)nx * sizeof(float)) == 0 &&
                    memcmp(ref + nx, in[1]->grad, (size_t)nw * sizeof(float)) == 0,
                "%s: gradients depend on stale memory", cc->name);
    for (int k = 0; k < 3; k++)
      if (in[k]) in[k]->grad = NULL;
    t2s_test_tensor_free(r);
    t2s_ctx_destroy(ctx);
  }
  free(ref);
}

static void run_case(const conv_case *cc, int64_t hout, int64_t wout, uint64_t seed, int large) {
  int64_t xs[4] = {cc->n, cc->cin, cc->h, cc->w};
  int64_t ws[4] = {cc->cout, cc->cin / cc->a.groups, cc->kh, cc->kw};
  int64_t bs[1] = {cc->cout};
  t2s_tensor *x = t2s_test_tensor(4, xs, -1.0f, 1.0f, seed, 1);
  t2s_tensor *w = t2s_test_tensor(4, ws, -1.0f, 1.0f, seed + 1, 1);
  t2s_tensor *b = cc->bias ? t2s_test_tensor(1, bs, -1.0f, 1.0f, seed + 2, 1) : NULL;
  check_forward(cc, x, w, b, hout, wout);
  t2s_tensor *in[3] = {x, w, b};
  check_backward(cc, x, w, b);
  if (!large) {
    t2s_gradcheck(cc->name, build_conv, (void *)cc, in, 3, NULL);
    check_stale_memory(cc, in);
  }
  t2s_test_tensor_free(x);
  t2s_test_tensor_free(w);
  t2s_test_tensor_free(b);
}

/* Only one of x and w wants a gradient (frozen backbone; input image). */
static void run_partial(void) {
  conv_case cc = {
      "3x3 stride 2, grad to x only / w only", 2, 3, 7, 6, 4, 3, 3, {2, 2, 1, 1, 1, 1, 1}, 1};
  int64_t xs[4] = {2, 3, 7, 6}, ws[4] = {4, 3, 3, 3}, bs[1] = {4};
  t2s_tensor *x = t2s_test_tensor(4, xs, -1.0f, 1.0f, 50, 1);
  t2s_tensor *w = t2s_test_tensor(4, ws, -1.0f, 1.0f, 51, 0);
  t2s_tensor *b = t2s_test_tensor(1, bs, -1.0f, 1.0f, 52, 0);
  t2s_tensor *in[3] = {x, w, b};
  t2s_gradcheck("conv2d x only", build_conv, &cc, in, 3, NULL);
  x->requires_grad = 0;
  w->requires_grad = 1;
  t2s_gradcheck("conv2d w only", build_conv, &cc, in, 3, NULL);
  t2s_test_tensor_free(x);
  t2s_test_tensor_free(w);
  t2s_test_tensor_free(b);
}

static void check_errors(void) {
  t2s_error err = {0};
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 1 << 20, &err);
  int64_t xs[4] = {1, 6, 5, 5}, ws[4] = {4, 4, 3, 3};
  t2s_tensor *x = t2s_test_tensor(4, xs, -1.0f, 1.0f, 60, 0);
  t2s_tensor *w = t2s_test_tensor(4, ws, -1.0f, 1.0f, 61, 0);
  t2s_conv2d_args a = t2s_conv_args(1, 1, 1);
  CHECK(t2s_conv2d(ctx, x, w, NULL, &a) == NULL);
  CHECK_MSG(strstr(ctx->err.msg, "conv2d") && strstr(ctx->err.msg, "[1, 6, 5, 5]") &&
                strstr(ctx->err.msg, "[4, 4, 3, 3]"),
            "message does not name the op and shapes: %s", ctx->err.msg);
  t2s_error_clear(&ctx->err);
  a = t2s_conv_args(1, 0, 3); /* dilated extent 7 > 5 */
  w->shape[1] = 6;
  CHECK(t2s_conv2d(ctx, x, w, NULL, &a) == NULL);
  CHECK_MSG(strstr(ctx->err.msg, "does not fit"), "unexpected message: %s", ctx->err.msg);
  t2s_ctx_destroy(ctx);
  t2s_test_tensor_free(x);
  t2s_test_tensor_free(w);
}

int main(void) {
  /* name, n, cin, h, w, cout, kh, kw, {sh, sw, ph, pw, dh, dw, groups}, bias; Hout, Wout */
  static const struct {
    conv_case c;
    int64_t hout, wout;
  } cases[] = {
      {{"3x3 pad 1 bias", 2, 3, 6, 5, 4, 3, 3, {1, 1, 1, 1, 1, 1, 1}, 1}, 6, 5},
      {{"3x3 stride 2 pad 1 no bias", 2, 3, 7, 8, 5, 3, 3, {2, 2, 1, 1, 1, 1, 1}, 0}, 4, 4},
      {{"3x3 dilation 2 pad 2", 1, 4, 7, 6, 3, 3, 3, {1, 1, 2, 2, 2, 2, 1}, 1}, 7, 6},
      {{"3x3 dilation 2 no pad", 2, 2, 8, 7, 3, 3, 3, {1, 1, 0, 0, 2, 2, 1}, 0}, 4, 3},
      {{"groups 2", 2, 4, 5, 5, 6, 3, 3, {1, 1, 1, 1, 1, 1, 2}, 1}, 5, 5},
      {{"depthwise groups=C", 2, 5, 6, 6, 5, 3, 3, {1, 1, 1, 1, 1, 1, 5}, 1}, 6, 6},
      {{"depthwise 3x3 stride 2 dilation 2 pad 1", 2, 4, 9, 8, 4, 3, 3, {2, 2, 1, 1, 2, 2, 4}, 0},
       4,
       3},
      {{"depthwise 5x3 stride (1,2) pad (2,0)", 1, 3, 6, 9, 3, 5, 3, {1, 2, 2, 0, 1, 1, 3}, 1},
       6,
       4},
      {{"channel multiplier 2 stride 2 (gemm)", 1, 3, 7, 7, 6, 3, 3, {2, 2, 1, 1, 1, 1, 3}, 0},
       4,
       4},
      {{"1x1 fast path bias", 2, 6, 4, 5, 3, 1, 1, {1, 1, 0, 0, 1, 1, 1}, 1}, 4, 5},
      {{"1x1 fast path groups 2", 2, 4, 3, 3, 6, 1, 1, {1, 1, 0, 0, 1, 1, 2}, 0}, 3, 3},
      {{"1x1 stride 2 (im2col)", 2, 4, 7, 6, 3, 1, 1, {2, 2, 0, 0, 1, 1, 1}, 1}, 4, 3},
      {{"non-square 3x2 stride (2,1) pad (1,0)", 2, 3, 7, 6, 4, 3, 2, {2, 1, 1, 0, 1, 1, 1}, 1},
       4,
       5},
      {{"non-square 1x3 dilation (1,2) pad (0,2)", 1, 3, 5, 6, 2, 1, 3, {1, 1, 0, 2, 1, 2, 1}, 1},
       5,
       6},
      {{"7x7 stride 2 pad 3 (stem)", 1, 3, 9, 10, 4, 7, 7, {2, 2, 3, 3, 1, 1, 1}, 0}, 5, 5},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    run_case(&cases[i].c, cases[i].hout, cases[i].wout, 10 + 7 * i, 0);
  /* Layer-sized: the column matrix exceeds the 4 MiB block, so im2col, the GEMMs and
   * col2im run over several blocks of output rows (the boundaries share input rows). */
  static const conv_case large[] = {
      {"blocked 3x3 pad 1, 64 -> 8 channels", 1, 64, 80, 48, 8, 3, 3, {1, 1, 1, 1, 1, 1, 1}, 1},
      {"blocked 3x3 stride 2 dilation 2 groups 2",
       2,
       64,
       161,
       70,
       6,
       3,
       3,
       {2, 2, 2, 2, 2, 2, 2},
       0},
  };
  run_case(&large[0], 80, 48, 300, 1);
  run_case(&large[1], 81, 35, 301, 1);
  run_partial();
  check_errors();
  return t2s_test_finish("test_grad_conv");
}
