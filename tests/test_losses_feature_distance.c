// ctest-labels: unit grad
/* ImageNet feature distance: value against a direct loop, gradient by finite
 * differences, the thing-class mask, and the rank split (two halves, world_size 2). */
#include <math.h>
#include <string.h>

#include "losses/feature_distance.h"
#include "tests/harness.h"

enum { N = 2, C = 3, H = 3, W = 4, HW = H * W };
/* things: 6, 7, 11..18; 255 ignore; 0, 2, 8 are stuff */
static const uint8_t LABELS[N * HW] = {6, 6, 0, 0, 7, 11, 2, 255, 18, 8, 8, 13,
                                       0, 0, 0, 12, 12, 255, 2, 2, 17, 17, 16, 15};
static t2s_tensor *g_labels, *g_imnet;
static t2s_feature_distance_cfg g_cfg;

static t2s_tensor *build_fd(t2s_ctx *ctx, t2s_tensor **in, void *u) {
  return t2s_feature_distance(ctx, in[0], g_imnet, g_labels, &g_cfg, 1);
}

static double direct(const float *f, const float *g, int b0, int nb) {
  double sum = 0.0;
  int cnt = 0;
  for (int b = b0; b < b0 + nb; b++)
    for (int i = 0; i < HW; i++) {
      int y = LABELS[b * HW + i];
      if (!(y == 6 || y == 7 || (y >= 11 && y <= 18))) continue;
      double s = 0.0;
      for (int c = 0; c < C; c++) {
        double d = (double)f[(b * C + c) * HW + i] - g[(b * C + c) * HW + i];
        s += d * d;
      }
      sum += sqrt(s);
      cnt++;
    }
  return sum / cnt;
}

static int other_count;
static t2s_status add_count(void *user, double *buf, size_t n, t2s_error *err) {
  buf[0] += other_count;
  return T2S_OK;
}

int main(void) {
  t2s_error err = {0};
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 1 << 20, &err);
  int64_t fs[4] = {N, C, H, W}, ls[3] = {N, H, W};
  t2s_tensor *f = t2s_test_tensor(4, fs, -1, 1, 1, 1);
  g_imnet = t2s_test_tensor(4, fs, -1, 1, 2, 0);
  g_labels = t2s_test_tensor_u8(3, ls, LABELS);
  g_cfg = t2s_feature_distance_cfg_defaults();
  CHECK(g_cfg.lambda == 0.005f && g_cfg.things[6] && g_cfg.things[18] && !g_cfg.things[8]);

  t2s_tensor *l = build_fd(ctx, &f, NULL);
  double want = direct(t2s_f32(f), t2s_f32(g_imnet), 0, N);
  CHECK_MSG(l && fabs(t2s_f32(l)[0] - want) < 1e-6, "loss %g, direct %g", l ? t2s_f32(l)[0] : NAN,
            want);
  t2s_ctx_end_pass(ctx);
  t2s_gc_opts o = {1e-3, 1e-2, 1e-4, 100};
  t2s_gradcheck("feature distance", build_fd, NULL, &f, 1, &o);

  /* full-batch gradient, then each half with world_size 2 */
  float gfull[N * C * HW] = {0}, ghalf[N * C * HW] = {0};
  f->grad = gfull;
  l = build_fd(ctx, &f, NULL);
  CHECK(l && t2s_backward(ctx, l, 1.0f) == T2S_OK);
  t2s_ctx_end_pass(ctx);
  f->grad = NULL;
  double halves = 0.0;
  for (int r = 0; r < 2; r++) {
    int64_t f1[4] = {1, C, H, W}, l1[3] = {1, H, W};
    t2s_tensor fr, gr, yr;
    t2s_tensor_init(&fr, T2S_F32, T2S_DEV_CPU, 4, f1, t2s_f32(f) + r * C * HW);
    t2s_tensor_init(&gr, T2S_F32, T2S_DEV_CPU, 4, f1, t2s_f32(g_imnet) + r * C * HW);
    t2s_tensor_init(&yr, T2S_U8, T2S_DEV_CPU, 3, l1, (void *)(LABELS + r * HW));
    fr.requires_grad = 1;
    fr.grad = ghalf + r * C * HW;
    other_count = 0;
    for (int i = 0; i < HW; i++) other_count += g_cfg.things[LABELS[(1 - r) * HW + i]];
    ctx->stat_allreduce = add_count;
    t2s_tensor *lr = t2s_feature_distance(ctx, &fr, &gr, &yr, &g_cfg, 2);
    CHECK(lr && t2s_backward(ctx, lr, 1.0f) == T2S_OK);
    halves += lr ? 0.5 * t2s_f32(lr)[0] : NAN;
    ctx->stat_allreduce = NULL;
    t2s_ctx_end_pass(ctx);
  }
  CHECK_MSG(fabs(halves - want) < 1e-6, "mean of halves %g, full %g", halves, want);
  for (int i = 0; i < N * C * HW; i++) CHECK(fabs(0.5 * ghalf[i] - gfull[i]) < 1e-7);
  /* stuff and ignored pixels get no gradient */
  for (int b = 0; b < N; b++)
    for (int i = 0; i < HW; i++)
      if (!g_cfg.things[LABELS[b * HW + i]])
        for (int c = 0; c < C; c++) CHECK(gfull[(b * C + c) * HW + i] == 0.0f);
  t2s_ctx_destroy(ctx);
  t2s_test_tensor_free(f);
  t2s_test_tensor_free(g_imnet);
  t2s_test_tensor_free(g_labels);
  return t2s_test_finish("test_losses_feature_distance");
}
