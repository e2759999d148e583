// ctest-labels: unit grad
/* HRDA's ops (core/ops/hrda.h): finite-difference gradients of crop, slide_merge,
 * hrda_gate and hrda_fuse, and their forward values against direct loops. */
#include <math.h>
#include <string.h>

#include "tests/harness.h"

typedef struct crop_case { int y0, x0, h, w; } crop_case;
typedef struct merge_case { t2s_slide_grid g; int n; } merge_case;
typedef struct fuse_case { int y0, x0; } fuse_case;

static t2s_tensor *build_crop(t2s_ctx *c, t2s_tensor **in, void *u) {
  const crop_case *k = u;
  return t2s_crop(c, in[0], k->y0, k->x0, k->h, k->w);
}
static t2s_tensor *build_merge(t2s_ctx *c, t2s_tensor **in, void *u) {
  const merge_case *k = u;
  return t2s_slide_merge(c, in[0], k->n, &k->g);
}
static t2s_tensor *build_gate(t2s_ctx *c, t2s_tensor **in, void *u) {
  return t2s_hrda_gate(c, in[0], in[1], u);
}
static t2s_tensor *build_fuse(t2s_ctx *c, t2s_tensor **in, void *u) {
  const fuse_case *k = u;
  return t2s_hrda_fuse(c, in[0], in[1], k->y0, k->x0);
}

static t2s_ctx *new_ctx(void) {
  t2s_error err = {0};
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 1 << 22, &err);
  if (ctx == NULL) fprintf(stderr, "context: %s\n", err.msg);
  return ctx;
}

static float at4(const t2s_tensor *t, int64_t n, int64_t c, int64_t y, int64_t x) {
  const int64_t *s = t->shape;
  return t2s_f32(t)[((n * s[1] + c) * s[2] + y) * s[3] + x];
}

static void test_crop(void) {
  int64_t s[4] = {2, 3, 7, 9};
  t2s_tensor *x = t2s_test_tensor(4, s, -1, 1, 1, 1);
  crop_case k = {2, 3, 4, 5};
  t2s_gradcheck("crop 4x5 at (2, 3) of 7x9", build_crop, &k, &x, 1, NULL);
  crop_case whole = {0, 0, 7, 9};
  t2s_gradcheck("crop of the whole map", build_crop, &whole, &x, 1, NULL);
  t2s_ctx *ctx = new_ctx();
  t2s_tensor *y = t2s_crop(ctx, x, 2, 3, 4, 5);
  int bad = 0;
  for (int n = 0; y && n < 2; n++)
    for (int c = 0; c < 3; c++)
      for (int i = 0; i < 4; i++)
        for (int j = 0; j < 5; j++) bad += at4(y, n, c, i, j) != at4(x, n, c, 2 + i, 3 + j);
  CHECK_MSG(y != NULL && bad == 0, "crop: %d values wrong", bad);
  /* labels: a uint8 (N, H, W) map crops the same way */
  uint8_t v[2 * 4 * 5];
  for (int i = 0; i < 40; i++) v[i] = (uint8_t)i;
  t2s_tensor *lab = t2s_test_tensor_u8(3, (int64_t[]){2, 4, 5}, v);
  t2s_tensor *lc = t2s_crop(ctx, lab, 1, 2, 2, 3);
  CHECK_MSG(lc != NULL, "%s", ctx->err.msg);
  if (lc) {
    CHECK(lc->dtype == T2S_U8 && lc->shape[1] == 2 && lc->shape[2] == 3);
    CHECK(t2s_u8(lc)[0] == 7 && t2s_u8(lc)[5] == 14 && t2s_u8(lc)[6] == 27);
  }
  /* a window outside the map is refused with its geometry */
  CHECK(t2s_crop(ctx, x, 4, 0, 4, 5) == NULL);
  CHECK_MSG(strstr(ctx->err.msg, "4x5 at (y 4, x 0)") && strstr(ctx->err.msg, "7x9"), "message: %s",
            ctx->err.msg);
  t2s_ctx_destroy(ctx);
  t2s_test_tensor_free(lab);
  t2s_test_tensor_free(x);
}

/* mmseg's slide_inference boxes, written out: rows r of max(H - c + s - 1, 0) / s + 1,
 * y1 = r s, y2 = min(y1 + c, H), y1 = max(y2 - c, 0). */
static void test_grid(void) {
  t2s_slide_grid g = {10, 7, 4, 4, 3, 2};
  CHECK(t2s_slide_grid_count(&g) == 3 * 3);  /* rows (10-4+2)/3+1 = 3, cols (7-4+1)/2+1 = 3 */
  int y0, x0, h, w;
  t2s_slide_grid_box(&g, 8, &y0, &x0, &h, &w);  /* row 2: y1 6, y2 10; col 2: x1 4 -> 3, 7 */
  CHECK_MSG(y0 == 6 && x0 == 3 && h == 4 && w == 4, "box 8 = (%d, %d, %d, %d)", y0, x0, h, w);
  t2s_slide_grid small = {3, 5, 4, 4, 2, 2};  /* windows larger than the map: the whole map */
  CHECK(t2s_slide_grid_count(&small) == 1 * 2);
  t2s_slide_grid_box(&small, 1, &y0, &x0, &h, &w);
  CHECK_MSG(y0 == 0 && x0 == 1 && h == 3 && w == 4, "small box 1 = (%d, %d, %d, %d)", y0, x0, h, w);
  t2s_slide_grid zero = {3, 5, 0, 4, 2, 2};
  CHECK(t2s_slide_grid_count(&zero) == -1);
}

static void test_slide_merge(void) {
  merge_case k = {{7, 6, 4, 4, 3, 2}, 2};  /* rows (7-4+2)/3+1 = 2, cols (6-4+1)/2+1 = 2 */
  int K = t2s_slide_grid_count(&k.g);
  CHECK(K == 4);
  int64_t s[4] = {(int64_t)K * 2, 3, 4, 4};
  t2s_tensor *win = t2s_test_tensor(4, s, -1, 1, 2, 1);
  t2s_gradcheck("slide_merge 2x2 windows of 4x4 over 7x6", build_merge, &k, &win, 1, NULL);
  t2s_ctx *ctx = new_ctx();
  t2s_tensor *y = t2s_slide_merge(ctx, win, 2, &k.g);
  CHECK_MSG(y != NULL, "%s", ctx->err.msg);
  /* direct loop: for each pixel the mean of the windows that cover it */
  double worst = 0;
  for (int n = 0; y && n < 2; n++)
    for (int c = 0; c < 3; c++)
      for (int py = 0; py < 7; py++)
        for (int px = 0; px < 6; px++) {
          double sum = 0;
          int cnt = 0;
          for (int w = 0; w < K; w++) {
            int y0, x0, h, ww;
            t2s_slide_grid_box(&k.g, w, &y0, &x0, &h, &ww);
            if (py < y0 || py >= y0 + h || px < x0 || px >= x0 + ww) continue;
            sum += at4(win, w * 2 + n, c, py - y0, px - x0);
            cnt++;
          }
          CHECK(cnt > 0);
          worst = fmax(worst, fabs(at4(y, n, c, py, px) - sum / cnt));
        }
  CHECK_MSG(worst < 1e-6, "slide_merge differs from the direct mean by %g", worst);
  /* windows of the wrong size are refused, naming the expected shape */
  merge_case other = {{8, 6, 4, 4, 3, 2}, 2};
  CHECK(t2s_slide_merge(ctx, win, 2, &other.g) == NULL);
  CHECK_MSG(strstr(ctx->err.msg, "(12, C, 4, 4)") != NULL, "message: %s", ctx->err.msg);
  t2s_ctx_destroy(ctx);
  t2s_test_tensor_free(win);
}

static void test_gate_fuse(void) {
  int64_t s[4] = {2, 3, 5, 6}, su[4] = {2, 6, 10, 12}, sh[4] = {2, 3, 4, 6};
  t2s_tensor *att = t2s_test_tensor(4, s, -3, 3, 3, 1), *lr = t2s_test_tensor(4, s, -2, 2, 4, 1);
  t2s_tensor *gate_in[2] = {att, lr};
  t2s_hrda_gate_args box = {1, 2, 2, 3};
  t2s_gradcheck("hrda_gate, box 2x3 at (1, 2) of 5x6", build_gate, &box, gate_in, 2, NULL);
  t2s_hrda_gate_args all = {0, 0, 5, 6};
  t2s_gradcheck("hrda_gate, whole map", build_gate, &all, gate_in, 2, NULL);
  t2s_tensor *up = t2s_test_tensor(4, su, -1, 1, 5, 1), *hr = t2s_test_tensor(4, sh, -2, 2, 6, 1);
  t2s_tensor *fuse_in[2] = {up, hr};
  fuse_case fc = {2, 4};
  t2s_gradcheck("hrda_fuse, 4x6 detail at (2, 4) of 10x12", build_fuse, &fc, fuse_in, 2, NULL);

  t2s_ctx *ctx = new_ctx();
  t2s_tensor *g = t2s_hrda_gate(ctx, att, lr, &box);
  t2s_tensor *f = t2s_hrda_fuse(ctx, up, hr, 2, 4);
  CHECK_MSG(g && f, "%s", ctx->err.msg);
  int bad = 0;
  for (int n = 0; g && n < 2; n++)
    for (int c = 0; c < 3; c++)
      for (int y = 0; y < 5; y++)
        for (int x = 0; x < 6; x++) {
          int m = y >= 1 && y < 3 && x >= 2 && x < 5;
          float a = m ? 1.0f / (1.0f + expf(-at4(att, n, c, y, x))) : 0.0f;
          bad += at4(g, n, c, y, x) != a;
          bad += at4(g, n, 3 + c, y, x) != (1.0f - a) * at4(lr, n, c, y, x);
        }
  for (int n = 0; f && n < 2; n++)
    for (int c = 0; c < 3; c++)
      for (int y = 0; y < 10; y++)
        for (int x = 0; x < 12; x++) {
          int in = y >= 2 && y < 6 && x >= 4 && x < 10;
          float want = at4(up, n, 3 + c, y, x) + (in ? at4(up, n, c, y, x) * at4(hr, n, c, y - 2, x - 4) : 0.0f);
          bad += at4(f, n, c, y, x) != want;
        }
  CHECK_MSG(bad == 0, "gate/fuse: %d values differ from the formula", bad);
  /* a detail map that does not fit is refused */
  CHECK(t2s_hrda_fuse(ctx, up, hr, 7, 0) == NULL);
  CHECK_MSG(strstr(ctx->err.msg, "10x12") != NULL, "message: %s", ctx->err.msg);
  t2s_ctx_destroy(ctx);
  t2s_test_tensor_free(att);
  t2s_test_tensor_free(lr);
  t2s_test_tensor_free(up);
  t2s_test_tensor_free(hr);
}

int main(void) {
  test_crop();
  test_grid();
  test_slide_merge();
  test_gate_fuse();
  return t2s_test_finish("test_grad_hrda");
}
