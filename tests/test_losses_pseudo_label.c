// ctest-labels: unit
/* Pseudo-labels (argmax, confidence fraction, row masks) and ClassMix (classes,
 * masks, mixing) against hand counts. */
#include <math.h>
#include <string.h>

#include "losses/classmix.h"
#include "losses/pseudo_label.h"
#include "tests/harness.h"

/* fake all-reduce for two ranks: adds the other rank's stored buffer */
static double other_counts[2];
static t2s_status add_other(void *user, double *buf, size_t n, t2s_error *err) {
  for (size_t i = 0; i < n; i++) buf[i] += other_counts[i];
  return T2S_OK;
}

static void test_pseudo_labels(t2s_ctx *ctx) {
  enum { N = 2, C = 3, H = 8, W = 2, HW = H * W };
  int64_t zs[4] = {N, C, H, W}, ms[3] = {N, H, W};
  t2s_tensor *z = t2s_test_tensor(4, zs, 0.0f, 0.0f, 1, 0);
  /* pixel i of image b: class (i + b) % 3 wins by 5 (p = e^5 / (e^5 + 2) = 0.9867,
   * confident) when i % 4 == 0, by 1 (p = 0.576) otherwise */
  int want_conf = 0;
  uint8_t want_y[N * HW];
  for (int b = 0; b < N; b++)
    for (int i = 0; i < HW; i++) {
      int c = (i + b) % 3;
      float margin = i % 4 == 0 ? 5.0f : 1.0f;
      t2s_f32(z)[(b * C + c) * HW + i] = margin;
      want_y[b * HW + i] = (uint8_t)c;
      want_conf += i % 4 == 0;
    }
  t2s_tensor *yhat = t2s_test_tensor_u8(3, ms, NULL);
  t2s_tensor *pw = t2s_test_tensor(3, ms, 0, 0, 2, 0), *pmax = t2s_test_tensor(3, ms, 0, 0, 3, 0);
  t2s_pseudo_label_cfg cfg = t2s_pseudo_label_cfg_defaults();
  CHECK(cfg.threshold == 0.968f && cfg.ignore_top == 15 && cfg.ignore_bottom == 120);
  int64_t top, bottom;
  t2s_pseudo_label_rows(&cfg, 512, &top, &bottom);
  CHECK(top == 15 && bottom == 120);
  t2s_pseudo_label_rows(&cfg, 1024, &top, &bottom);
  CHECK(top == 30 && bottom == 240);
  t2s_pseudo_label_rows(&cfg, 256, &top, &bottom);
  CHECK(top == 8 && bottom == 60);  /* 7.5 rounds up */
  cfg.ref_height = 8, cfg.ignore_top = 2, cfg.ignore_bottom = 3;
  double q = -1;
  CHECK(t2s_pseudo_labels(ctx, &cfg, z, yhat, pw, pmax, &q) == T2S_OK);
  double want_q = want_conf / (double)(N * HW);
  CHECK_MSG(fabs(q - want_q) < 1e-12, "q %g, want %g", q, want_q);
  CHECK(memcmp(t2s_u8(yhat), want_y, sizeof want_y) == 0);
  for (int b = 0; b < N; b++)
    for (int r = 0; r < H; r++)
      for (int x = 0; x < W; x++) {
        int i = (b * H + r) * W + x;
        float want = r < 2 || r >= H - 3 ? 0.0f : (float)want_q;
        CHECK_MSG(t2s_f32(pw)[i] == want, "weight at image %d row %d: %g", b, r, t2s_f32(pw)[i]);
        double p = (i % 4 == 0 ? exp(5.0) / (exp(5.0) + 2) : exp(1.0) / (exp(1.0) + 2));
        CHECK(fabs(t2s_f32(pmax)[i] - p) < 1e-6);
      }
  /* two ranks of one image each: the same q from the reduced counts */
  for (int r = 0; r < 2; r++) {
    int64_t s1[4] = {1, C, H, W}, m1[3] = {1, H, W};
    t2s_tensor zr, yr, pr;
    t2s_tensor_init(&zr, T2S_F32, T2S_DEV_CPU, 4, s1, t2s_f32(z) + r * C * HW);
    t2s_tensor_init(&yr, T2S_U8, T2S_DEV_CPU, 3, m1, t2s_u8(yhat) + r * HW);
    t2s_tensor_init(&pr, T2S_F32, T2S_DEV_CPU, 3, m1, t2s_f32(pw) + r * HW);
    int other_conf = 0;
    for (int i = 0; i < HW; i++) other_conf += i % 4 == 0;
    other_counts[0] = other_conf, other_counts[1] = HW;
    ctx->stat_allreduce = add_other;
    double qr = -1;
    CHECK(t2s_pseudo_labels(ctx, &cfg, &zr, &yr, &pr, NULL, &qr) == T2S_OK);
    CHECK(fabs(qr - want_q) < 1e-12);
    ctx->stat_allreduce = NULL;
  }
  t2s_test_tensor_free(z);
  t2s_test_tensor_free(yhat);
  t2s_test_tensor_free(pw);
  t2s_test_tensor_free(pmax);
}

static void test_classmix(t2s_ctx *ctx) {
  enum { N = 4, H = 2, W = 4, HW = H * W };
  /* image 0: classes {0, 2, 5} -> 2 chosen; image 1: {1, 3} -> 1; image 2: {4} -> 1;
   * image 3: only ignore -> 0 */
  const uint8_t y[N * HW] = {0, 0, 2, 2, 5, 255, 5, 0, 1, 1, 1, 3, 3, 3, 255, 1,
                             4, 4, 4, 4, 4, 4, 4, 255, 255, 255, 255, 255, 255, 255, 255, 255};
  const int present[N][6] = {{1, 0, 1, 0, 0, 1}, {0, 1, 0, 1, 0, 0}, {0, 0, 0, 0, 1, 0}, {0}};
  const int want_n[N] = {2, 1, 1, 0};
  int64_t ms[3] = {N, H, W};
  t2s_tensor *lab = t2s_test_tensor_u8(3, ms, y), *mask = t2s_test_tensor_u8(3, ms, NULL);
  int chosen_count[6] = {0};
  for (int it = 0; it < 300; it++) {
    CHECK(t2s_classmix_masks(ctx, lab, 255, 42, it, 10, mask) == T2S_OK);
    for (int b = 0; b < N; b++) {
      uint8_t chosen[256], take[256] = {0};
      int n = t2s_classmix_choose(y + b * HW, HW, 255, 42, it, 10 + b, chosen);
      CHECK_MSG(n == want_n[b], "image %d: %d classes chosen, want %d", b, n, want_n[b]);
      for (int j = 0; j < n; j++) {
        CHECK(chosen[j] < 6 && present[b][chosen[j]]);
        take[chosen[j]] = 1;
        if (b == 0) chosen_count[chosen[j]]++;
      }
      for (int i = 0; i < HW; i++) CHECK(t2s_u8(mask)[b * HW + i] == take[y[b * HW + i]]);
      /* the same image alone at its global index gets the same mask */
      int64_t m1[3] = {1, H, W};
      t2s_tensor yb, mb;
      uint8_t alone[HW];
      t2s_tensor_init(&yb, T2S_U8, T2S_DEV_CPU, 3, m1, (void *)(y + b * HW));
      t2s_tensor_init(&mb, T2S_U8, T2S_DEV_CPU, 3, m1, alone);
      CHECK(t2s_classmix_masks(ctx, &yb, 255, 42, it, 10 + b, &mb) == T2S_OK);
      CHECK(memcmp(alone, t2s_u8(mask) + b * HW, HW) == 0);
    }
  }
  /* each of image 0's three classes is in 2 of the 3 possible pairs: about 200 of 300 */
  for (int c = 0; c < 6; c++)
    if (present[0][c]) CHECK_MSG(chosen_count[c] > 160 && chosen_count[c] < 240, "class %d: %d", c, chosen_count[c]);

  /* mixing */
  int64_t xs[4] = {N, 3, H, W};
  t2s_tensor *x_s = t2s_test_tensor(4, xs, 0, 255, 5, 0), *x_t = t2s_test_tensor(4, xs, 0, 255, 6, 0);
  t2s_tensor *x_m = t2s_test_tensor(4, xs, 0, 0, 7, 0);
  t2s_tensor *yhat = t2s_test_tensor_u8(3, ms, NULL), *y_m = t2s_test_tensor_u8(3, ms, NULL);
  t2s_tensor *plw = t2s_test_tensor(3, ms, 0, 1, 8, 0), *w_m = t2s_test_tensor(3, ms, 0, 0, 9, 0);
  for (int i = 0; i < N * HW; i++) t2s_u8(yhat)[i] = (uint8_t)(10 + i % 7);
  CHECK(t2s_classmix_masks(ctx, lab, 255, 42, 0, 10, mask) == T2S_OK);
  CHECK(t2s_classmix_apply(ctx, mask, x_s, x_t, lab, yhat, plw, x_m, y_m, w_m) == T2S_OK);
  for (int b = 0; b < N; b++)
    for (int i = 0; i < HW; i++) {
      int m = t2s_u8(mask)[b * HW + i], p = b * HW + i;
      for (int c = 0; c < 3; c++) {
        int e = (b * 3 + c) * HW + i;
        CHECK(t2s_f32(x_m)[e] == (m ? t2s_f32(x_s)[e] : t2s_f32(x_t)[e]));
      }
      CHECK(t2s_u8(y_m)[p] == (m ? y[p] : t2s_u8(yhat)[p]));
      CHECK(t2s_f32(w_m)[p] == (m ? 1.0f : t2s_f32(plw)[p]));
    }
  t2s_tensor *list[] = {x_s, x_t, x_m, plw, w_m, lab, mask, yhat, y_m};
  for (size_t i = 0; i < sizeof list / sizeof list[0]; i++) t2s_test_tensor_free(list[i]);
}

int main(void) {
  t2s_error err = {0};
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 1 << 20, &err);
  test_pseudo_labels(ctx);
  test_classmix(ctx);
  t2s_ctx_destroy(ctx);
  return t2s_test_finish("test_losses_pseudo_label");
}
