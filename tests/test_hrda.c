// ctest-labels: unit
/* HRDA (core/nn/hrda.h) against direct computations:
 * - detail box geometry: inside the crop, on the os / s grid, every allowed position
 *   reachable, the same for the same key;
 * - the fusion t2s_hrda_fuse_logits against HRDAHead.forward's formula written out with
 *   its own bilinear upsampling, in double;
 * - HRDA inference (context + batched slide + merge + fusion) against a direct loop that
 *   runs every detail window on its own and averages the logits by hand;
 * - the training forward's fused map equals the formula on the two passes' outputs;
 * - geometry errors name their keys. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/nn/hrda.h"
#include "tests/harness.h"

static t2s_ctx *new_ctx(void) {
  t2s_error err = {0};
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, (size_t)64 << 20, &err);
  if (ctx == NULL) fprintf(stderr, "context: %s\n", err.msg);
  return ctx;
}

static double at4(const t2s_tensor *t, int64_t n, int64_t c, int64_t y, int64_t x) {
  const int64_t *s = t->shape;
  return t2s_f32(t)[((n * s[1] + c) * s[2] + y) * s[3] + x];
}

static void test_box(void) {
  t2s_hrda_cfg cfg = {0.5f, {32, 48}, {16, 16}};
  int os = 4, a = 8, H = 96, W = 80, seen_y[96] = {0}, seen_x[80] = {0};
  for (int i = 0; i < 400; i++) {
    t2s_hrda_box b = t2s_hrda_draw_box(&cfg, os, H, W, t2s_rng_key_make(3, 7, (uint64_t)i, 0));
    CHECK(b.h == 48 && b.w == 32);
    CHECK_MSG(b.y0 % a == 0 && b.x0 % a == 0 && b.y0 >= 0 && b.x0 >= 0 && b.y0 + b.h <= H && b.x0 + b.w <= W,
              "box (%d, %d) off the grid or outside", b.y0, b.x0);
    if (b.y0 >= 0 && b.y0 < H) seen_y[b.y0] = 1;
    if (b.x0 >= 0 && b.x0 < W) seen_x[b.x0] = 1;
  }
  /* HRDA's get_crop_bbox: offsets 0 .. ((margin + 1) // 8 - 1) * 8 */
  for (int y = 0; y <= (H - 48 + 1) / a * a - a; y += a) CHECK_MSG(seen_y[y], "y offset %d never drawn", y);
  for (int x = 0; x <= (W - 32 + 1) / a * a - a; x += a) CHECK_MSG(seen_x[x], "x offset %d never drawn", x);
  t2s_hrda_box b1 = t2s_hrda_draw_box(&cfg, os, H, W, t2s_rng_key_make(3, 7, 5, 0));
  t2s_hrda_box b2 = t2s_hrda_draw_box(&cfg, os, H, W, t2s_rng_key_make(3, 7, 5, 0));
  CHECK(memcmp(&b1, &b2, sizeof b1) == 0);
  /* a crop the size of the image: the whole image */
  t2s_hrda_cfg full = {0.5f, {80, 96}, {16, 16}};
  t2s_hrda_box bf = t2s_hrda_draw_box(&full, os, H, W, t2s_rng_key_make(1, 2, 3, 4));
  CHECK(bf.y0 == 0 && bf.x0 == 0 && bf.h == 96 && bf.w == 80);
  /* geometry errors */
  t2s_error err = {0};
  t2s_hrda_cfg bad = {0.5f, {36, 32}, {16, 16}};
  CHECK(t2s_hrda_check(&bad, os, 64, 64, &err) != T2S_OK && strstr(err.msg, "model.hrda.hr_crop_size"));
  err = (t2s_error){0};
  CHECK(t2s_hrda_check(&cfg, os, 60, 64, &err) != T2S_OK && strstr(err.msg, "multiple of 8"));
  t2s_hrda_cfg odd = {0.3f, {32, 32}, {16, 16}};
  err = (t2s_error){0};
  CHECK(t2s_hrda_check(&odd, os, 64, 64, &err) != T2S_OK && strstr(err.msg, "model.hrda.context_scale"));
  t2s_hrda_cfg stride = {0.5f, {32, 32}, {6, 16}};
  err = (t2s_error){0};
  CHECK(t2s_hrda_check(&stride, os, 64, 64, &err) != T2S_OK && strstr(err.msg, "model.hrda.slide_stride"));
}

/* PyTorch bilinear (align_corners False) source index and weight along one axis. */
static void lerp(int d, int in, int out, int *i0, int *i1, double *l1) {
  double src = (d + 0.5) * in / out - 0.5;
  if (src < 0) src = 0;
  *i0 = (int)src;
  if (*i0 > in - 1) *i0 = in - 1;
  *i1 = *i0 < in - 1 ? *i0 + 1 : *i0;
  *l1 = src - *i0;
}

static double bilinear(const double *p, int h, int w, int y, int x, int H, int W) {
  int y0, y1, x0, x1;
  double ly, lx;
  lerp(y, h, H, &y0, &y1, &ly);
  lerp(x, w, W, &x0, &x1, &lx);
  return (1 - ly) * ((1 - lx) * p[y0 * w + x0] + lx * p[y0 * w + x1]) +
         ly * ((1 - lx) * p[y1 * w + x0] + lx * p[y1 * w + x1]);
}

/* HRDAHead.forward: att = sigmoid(z) * mask; fused = up(att) * ins(d) + up((1 - att) * l).
 * The worst absolute difference of `fused` from it. */
static double fusion_error(const t2s_tensor *fused, const t2s_tensor *l, const t2s_tensor *z,
                           const t2s_tensor *d, const t2s_hrda_gate_args *m, int y0, int x0) {
  int N = (int)l->shape[0], C = (int)l->shape[1], h = (int)l->shape[2], w = (int)l->shape[3];
  int H = (int)fused->shape[2], W = (int)fused->shape[3];
  double *A = malloc(sizeof(double) * h * w), *L = malloc(sizeof(double) * h * w), worst = 0;
  for (int n = 0; n < N; n++)
    for (int c = 0; c < C; c++) {
      for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
          int in = y >= m->y0 && y < m->y0 + m->h && x >= m->x0 && x < m->x0 + m->w;
          double a = in ? 1.0 / (1.0 + exp(-at4(z, n, c, y, x))) : 0.0;
          A[y * w + x] = a;
          L[y * w + x] = (1 - a) * at4(l, n, c, y, x);
        }
      for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
          int dy = y - y0, dx = x - x0;
          double ins = dy >= 0 && dx >= 0 && dy < d->shape[2] && dx < d->shape[3] ? at4(d, n, c, dy, dx) : 0.0;
          double want = bilinear(A, h, w, y, x, H, W) * ins + bilinear(L, h, w, y, x, H, W);
          worst = fmax(worst, fabs(at4(fused, n, c, y, x) - want));
        }
    }
  free(A);
  free(L);
  return worst;
}

static void test_fusion(void) {
  int64_t sl[4] = {2, 3, 6, 5}, sd[4] = {2, 3, 6, 4};
  t2s_tensor *l = t2s_test_tensor(4, sl, -2, 2, 1, 1), *z = t2s_test_tensor(4, sl, -3, 3, 2, 1);
  t2s_tensor *d = t2s_test_tensor(4, sd, -2, 2, 3, 1);
  t2s_ctx *ctx = new_ctx();
  t2s_hrda_gate_args m = {1, 2, 3, 2};  /* the detail box at the context resolution */
  t2s_tensor *f = t2s_hrda_fuse_logits(ctx, l, z, d, &m, 2, 4, 0.5f);
  CHECK_MSG(f != NULL, "%s", ctx->err.msg);
  if (f) {
    CHECK(f->shape[2] == 12 && f->shape[3] == 10);
    double e = fusion_error(f, l, z, d, &m, 2, 4);
    CHECK_MSG(e < 2e-6, "fusion differs from HRDAHead's formula by %g", e);
  }
  t2s_ctx_destroy(ctx);
  t2s_test_tensor_free(l);
  t2s_test_tensor_free(z);
  t2s_test_tensor_free(d);
}

/* A tiny ResNet-18 + DeepLab-V2 (output stride 8) with a scale-attention head. */
static int build_net(t2s_segmentor *m) {
  t2s_model_cfg mc = t2s_model_default_cfg();
  mc.num_classes = 4;
  mc.resnet = t2s_resnet_default_cfg(18);
  mc.resnet.base_channels = 4;
  mc.resnet.stem_channels = 4;
  mc.head_dilations[0] = 1;
  mc.n_head_dilations = 1;
  mc.scale_attention = 1;
  t2s_error err = {0};
  int ok = t2s_segmentor_build(m, &mc, T2S_DEV_CPU, 5, &err) == T2S_OK;
  CHECK_MSG(ok, "build: %s", err.msg);
  CHECK(t2s_segmentor_output_stride(m) == 8);
  return ok;
}

static t2s_tensor *image(t2s_ctx *ctx, int n, int h, int w, uint64_t seed) {
  t2s_tensor *x = t2s_tensor_new4(ctx, T2S_F32, n, 3, h, w);
  t2s_rng_key k = t2s_rng_key_make(seed, 0, 0, 0);
  for (int64_t i = 0; x && i < t2s_numel(x); i++) t2s_f32(x)[i] = 2.0f * t2s_rng_uniform(k, (uint64_t)i) - 1.0f;
  return x;
}

/* HRDA inference vs a loop over the detail windows, one forward each. */
static void test_slide_inference(t2s_segmentor *m) {
  t2s_ctx *ctx = new_ctx();
  ctx->training = 0;  /* running BN statistics: a window's logits do not depend on its batch */
  t2s_set_grad_enabled(ctx, 0);
  const int N = 2, H = 48, W = 80, os = 8, C = 4;
  t2s_hrda_cfg cfg = {0.5f, {32, 32}, {16, 16}};
  t2s_tensor *x = image(ctx, N, H, W, 9);
  t2s_hrda_out out;
  CHECK_MSG(t2s_hrda_infer(ctx, m, &cfg, x, &out) == T2S_OK, "%s", ctx->err.msg);
  if (!t2s_ctx_ok(ctx)) {
    t2s_ctx_destroy(ctx);
    return;
  }
  /* the direct loop: windows of 32 px every 16 px (mmseg's slide grid, written out) */
  int hf = H / os, wf = W / os;
  double *sum = calloc((size_t)N * C * hf * wf, sizeof(double)), *cnt = calloc((size_t)hf * wf, sizeof(double));
  int rows = (H - 32 + 16 - 1) / 16 + 1, cols = (W - 32 + 16 - 1) / 16 + 1;
  for (int r = 0; r < rows; r++)
    for (int c = 0; c < cols; c++) {
      int y2 = r * 16 + 32 < H ? r * 16 + 32 : H, x2 = c * 16 + 32 < W ? c * 16 + 32 : W;
      int y1 = y2 - 32, x1 = x2 - 32;
      t2s_seg_out o;
      CHECK(t2s_segmentor_forward(ctx, m, t2s_crop(ctx, x, y1, x1, 32, 32), &o) == T2S_OK);
      if (!t2s_ctx_ok(ctx)) break;
      for (int n = 0; n < N; n++)
        for (int k = 0; k < C; k++)
          for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++) sum[((n * C + k) * hf + y1 / os + i) * wf + x1 / os + j] += at4(o.logits, n, k, i, j);
      for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) cnt[(y1 / os + i) * wf + x1 / os + j] += 1;
    }
  t2s_tensor *hr = t2s_tensor_new4(ctx, T2S_F32, N, C, hf, wf);
  for (int64_t i = 0; hr && i < t2s_numel(hr); i++) t2s_f32(hr)[i] = (float)(sum[i] / cnt[i % (hf * wf)]);
  /* the context pass, by hand */
  t2s_seg_out co;
  CHECK(t2s_segmentor_forward_attention(ctx, m, t2s_resize_bilinear(ctx, x, H / 2, W / 2, 0), &co) == T2S_OK);
  if (t2s_ctx_ok(ctx) && hr) {
    double dctx = 0;
    for (int64_t i = 0; i < t2s_numel(co.logits); i++)
      dctx = fmax(dctx, fabs(t2s_f32(co.logits)[i] - t2s_f32(out.context)[i]));
    CHECK_MSG(dctx == 0, "context logits differ by %g", dctx);
    t2s_hrda_gate_args all = {0, 0, (int)co.logits->shape[2], (int)co.logits->shape[3]};
    double e = fusion_error(out.fused, co.logits, co.attention, hr, &all, 0, 0);
    CHECK_MSG(e < 1e-5, "HRDA inference differs from the direct slide loop + fusion by %g", e);
    CHECK(out.fused->shape[2] == hf && out.fused->shape[3] == wf);
  }
  free(sum);
  free(cnt);
  t2s_ctx_destroy(ctx);
}

/* The training forward: the fused map is the formula on its context and detail passes,
 * and the detail pass is the network on the crop. */
static void test_train_forward(t2s_segmentor *m) {
  t2s_ctx *ctx = new_ctx();
  ctx->training = 0;
  const int N = 2, H = 64, W = 64, os = 8;
  t2s_hrda_cfg cfg = {0.5f, {32, 32}, {16, 16}};
  t2s_tensor *x = image(ctx, N, H, W, 4);
  t2s_hrda_box b = {16, 32, 32, 32};
  t2s_hrda_out out;
  CHECK_MSG(t2s_hrda_forward_train(ctx, m, &cfg, x, &b, &out) == T2S_OK, "%s", ctx->err.msg);
  t2s_seg_out dout, co;
  CHECK(t2s_segmentor_forward(ctx, m, t2s_crop(ctx, x, 16, 32, 32, 32), &dout) == T2S_OK);
  CHECK(t2s_segmentor_forward_attention(ctx, m, t2s_resize_bilinear(ctx, x, 32, 32, 0), &co) == T2S_OK);
  if (t2s_ctx_ok(ctx)) {
    double dd = 0;
    for (int64_t i = 0; i < t2s_numel(dout.logits); i++)
      dd = fmax(dd, fabs(t2s_f32(dout.logits)[i] - t2s_f32(out.detail)[i]));
    CHECK_MSG(dd == 0, "the detail pass differs by %g", dd);
    t2s_hrda_gate_args mask = {16 / 16, 32 / 16, 32 / 16, 32 / 16};  /* box / (os / s) */
    double e = fusion_error(out.fused, co.logits, co.attention, dout.logits, &mask, 16 / os, 32 / os);
    CHECK_MSG(e < 1e-5, "the training fusion differs from the formula by %g", e);
    /* the fused loss reaches the attention head, the detail and the context passes */
    t2s_tensor *w = t2s_test_tensor(4, out.fused->shape, -1, 1, 8, 0);
    CHECK(t2s_backward(ctx, t2s_weighted_sum(ctx, out.fused, w), 1.0f) == T2S_OK);
    t2s_test_tensor_free(w);
  }
  t2s_ctx_destroy(ctx);
}

int main(void) {
  test_box();
  test_fusion();
  t2s_segmentor m;
  if (build_net(&m)) {
    test_slide_inference(&m);
    test_train_forward(&m);
    t2s_segmentor_free(&m);
  }
  return t2s_test_finish("test_hrda");
}
