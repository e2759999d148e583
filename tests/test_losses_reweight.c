// ctest-labels: unit
/* Dynamic class re-weighting against hand-computed IoU, EMA and weights. */
#include <math.h>
#include <string.h>

#include "losses/reweight.h"
#include "tests/harness.h"

static int calls;
static t2s_status count_calls(void *user, double *buf, size_t n, t2s_error *err) {
  calls++;
  /* a second rank with the same batch: every count doubles, no IoU changes */
  for (size_t i = 0; i < n; i++) buf[i] *= 2.0;
  return T2S_OK;
}

int main(void) {
  t2s_error err = {0};
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 1 << 20, &err);
  enum { C = 3 };
  /* labels 2 x 4, logits 1 x 2: by nearest upsampling the prediction at label pixel
   * (r, x) is the argmax at logit pixel (0, x / 2): class 0, then class 1 */
  const uint8_t y[8] = {0, 0, 1, 1, 2, 2, 1, 255};
  int64_t ls[3] = {1, 2, 4}, zs[4] = {1, C, 1, 2};
  t2s_tensor *lab = t2s_test_tensor_u8(3, ls, y);
  t2s_tensor *z = t2s_test_tensor(4, zs, 0.0f, 0.0f, 1, 0);
  float *zv = t2s_f32(z);  /* (c, x): class 0 wins at x = 0, class 1 at x = 1 */
  zv[0 * 2 + 0] = 2.0f, zv[1 * 2 + 0] = 1.0f, zv[2 * 2 + 0] = -1.0f;
  zv[0 * 2 + 1] = 0.0f, zv[1 * 2 + 1] = 3.0f, zv[2 * 2 + 1] = 2.5f;
  /* class 0: I 2, U 4 (pred 0 also on the two class-2 pixels); class 1: I 3, U 3
   * (the ignored pixel does not count); class 2: I 0, U 2 */
  const double iou[C] = {0.5, 1.0, 0.0};
  t2s_reweight_cfg cfg = t2s_reweight_cfg_defaults();
  CHECK(cfg.momentum == 0.99 && cfg.gamma == 1.0 && cfg.apply_to == T2S_REWEIGHT_T2S_ONLY);
  t2s_reweight_state s;
  CHECK(t2s_reweight_init(&s, C, &err) == T2S_OK);
  for (int c = 0; c < C; c++) CHECK(s.score[c] == 0.0 && s.weight[c] == 1.0f);
  ctx->stat_allreduce = count_calls;
  CHECK(t2s_reweight_update(ctx, &cfg, z, lab, &s) == T2S_OK);
  CHECK(calls == 1);
  double want_s[C], raw[C], mean = 0.0;
  for (int c = 0; c < C; c++) {
    want_s[c] = 0.01 * iou[c];
    raw[c] = 1.0 - want_s[c];
    mean += raw[c] / C;
  }
  for (int c = 0; c < C; c++) {
    CHECK_MSG(fabs(s.iou[c] - iou[c]) < 1e-12, "class %d IoU %g, want %g", c, s.iou[c], iou[c]);
    CHECK(fabs(s.score[c] - want_s[c]) < 1e-12);
    CHECK_MSG(fabs(s.weight[c] - raw[c] / mean) < 1e-6, "class %d weight %g, want %g", c,
              s.weight[c], raw[c] / mean);
  }
  /* second update, gamma 2, class 2 absent: its score stays, its weight is 1, and the
   * present classes' weights have mean 1 between them */
  const uint8_t y2[8] = {0, 0, 1, 1, 0, 0, 1, 1};  /* class 0: I 4 U 4; class 1: I 4 U 4 */
  memcpy(t2s_u8(lab), y2, 8);
  cfg.gamma = 2.0;
  CHECK(t2s_reweight_update(ctx, &cfg, z, lab, &s) == T2S_OK);
  double s0 = 0.99 * want_s[0] + 0.01, s1 = 0.99 * want_s[1] + 0.01;
  double r0 = (1 - s0) * (1 - s0), r1 = (1 - s1) * (1 - s1);
  CHECK(fabs(s.score[0] - s0) < 1e-12 && fabs(s.score[1] - s1) < 1e-12);
  CHECK(s.score[2] == want_s[2] && !s.present[2] && s.weight[2] == 1.0f);
  CHECK(fabs(s.weight[0] - 2 * r0 / (r0 + r1)) < 1e-6 && fabs(s.weight[1] - 2 * r1 / (r0 + r1)) < 1e-6);
  /* a label outside the classes is reported */
  t2s_u8(lab)[3] = 7;
  CHECK(t2s_reweight_update(ctx, &cfg, z, lab, &s) != T2S_OK && strstr(ctx->err.msg, "label 7"));
  t2s_reweight_free(&s);
  t2s_ctx_destroy(ctx);
  t2s_test_tensor_free(lab);
  t2s_test_tensor_free(z);
  return t2s_test_finish("test_losses_reweight");
}
