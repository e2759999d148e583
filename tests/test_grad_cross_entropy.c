// ctest-labels: unit grad
/* Softmax cross-entropy: finite-difference gradients of the logits for every
 * reduction, with ignored pixels, class weights and pixel weights; forward values
 * against a per-pixel loop written here; closed forms (uniform logits give log C);
 * the no-valid-pixel case; the error for a label that is not a class. */
#include <math.h>
#include <string.h>

#include "tests/harness.h"

enum { N = 2, C = 4, H = 3, W = 5, HW = H * W };

typedef struct ce_case {
  t2s_tensor *labels, *pw, *cw;
  t2s_ce_args args;
} ce_case;

static t2s_tensor *build_ce(t2s_ctx *c, t2s_tensor **in, void *u) {
  ce_case *k = u;
  return t2s_cross_entropy(c, in[0], k->labels, k->pw, k->cw, &k->args);
}

static t2s_ctx *new_ctx(void) {
  t2s_error err = {0};
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 1 << 20, &err);
  if (ctx == NULL) fprintf(stderr, "context: %s\n", err.msg);
  return ctx;
}

/* The loss computed pixel by pixel, straight from the definition. */
static double ref_ce(const t2s_tensor *z, const ce_case *k) {
  double sum = 0, count = 0, wsum = 0;
  for (int n = 0; n < N; n++)
    for (int p = 0; p < HW; p++) {
      int y = t2s_u8(k->labels)[n * HW + p];
      if (y == k->args.ignore_index) continue;
      double s = 0;
      for (int c = 0; c < C; c++) s += exp(t2s_f32(z)[(n * C + c) * HW + p]);
      double nll = log(s) - t2s_f32(z)[(n * C + y) * HW + p];
      double cw = k->cw ? t2s_f32(k->cw)[y] : 1.0, pw = k->pw ? t2s_f32(k->pw)[n * HW + p] : 1.0;
      sum += cw * pw * nll;
      count += 1;
      wsum += cw;
    }
  if (k->args.normaliser > 0) return sum / k->args.normaliser;
  switch (k->args.reduction) {
    case T2S_CE_MEAN_VALID: return count ? sum / count : 0;
    case T2S_CE_MEAN_WEIGHT: return wsum ? sum / wsum : 0;
    case T2S_CE_SUM: return sum;
  }
  return NAN;
}

static const char *reduction_name(t2s_ce_reduction r) {
  return r == T2S_CE_MEAN_VALID ? "mean_valid" : r == T2S_CE_MEAN_WEIGHT ? "mean_weight" : "sum";
}

static void test_reductions(t2s_tensor *z, t2s_tensor *labels, t2s_tensor *pw, t2s_tensor *cw) {
  t2s_tensor *in[1] = {z};
  t2s_gc_opts opts = {1e-2, 2e-2, 2e-4, 120};
  for (int weights = 0; weights < 4; weights++)
    for (int r = 0; r <= T2S_CE_SUM; r++)
      for (int norm = 0; norm <= 1; norm++) {
        ce_case k = {labels, (weights & 1) ? pw : NULL, (weights & 2) ? cw : NULL,
                     {255, (t2s_ce_reduction)r, norm ? 7.5 : 0.0}};
        char label[128];
        snprintf(label, sizeof label, "cross_entropy %s%s%s%s", reduction_name(k.args.reduction),
                 k.pw ? " pixel weights" : "", k.cw ? " class weights" : "",
                 norm ? " normaliser 7.5" : "");
        t2s_gradcheck(label, build_ce, &k, in, 1, &opts);
        t2s_ctx *ctx = new_ctx();
        t2s_tensor *loss = build_ce(ctx, in, &k);
        CHECK_MSG(loss != NULL, "%s: %s", label, ctx->err.msg);
        if (loss) {
          double want = ref_ce(z, &k);
          CHECK_MSG(fabs(t2s_f32(loss)[0] - want) <= 1e-5 * (1 + fabs(want)), "%s: %.8g, want %.8g",
                    label, t2s_f32(loss)[0], want);
        }
        t2s_ctx_destroy(ctx);
      }
}

/* Uniform logits: every pixel's loss is log C, whatever the labels. */
static void test_uniform(t2s_tensor *labels) {
  int64_t sz[4] = {N, C, H, W};
  t2s_tensor *z = t2s_test_tensor(4, sz, 3.25f, 3.25f, 1, 1);
  t2s_ce_args a = {255, T2S_CE_MEAN_VALID, 0};
  t2s_ctx *ctx = new_ctx();
  t2s_tensor *loss = t2s_cross_entropy(ctx, z, labels, NULL, NULL, &a);
  CHECK_MSG(loss && fabs(t2s_f32(loss)[0] - log((double)C)) < 1e-6, "uniform: %g, want log %d",
            loss ? t2s_f32(loss)[0] : NAN, C);
  /* the gradient at a valid pixel is (1/C - onehot) / count, at an ignored one 0 */
  if (loss && t2s_backward(ctx, loss, 1.0f) == T2S_OK) {
    int valid = 0;
    for (int i = 0; i < N * HW; i++) valid += t2s_u8(labels)[i] != 255;
    int bad = 0;
    for (int n = 0; n < N; n++)
      for (int c = 0; c < C; c++)
        for (int p = 0; p < HW; p++) {
          int y = t2s_u8(labels)[n * HW + p];
          double want = y == 255 ? 0.0 : (1.0 / C - (c == y)) / valid;
          bad += fabs(z->grad[(n * C + c) * HW + p] - want) > 1e-7;
        }
    CHECK_MSG(bad == 0, "uniform logits: %d gradient entries wrong", bad);
  }
  CHECK_MSG(t2s_ctx_ok(ctx), "%s", ctx->err.msg);
  z->grad = NULL;
  t2s_ctx_destroy(ctx);
  t2s_test_tensor_free(z);
}

/* Every pixel ignored: loss 0 and gradient 0 (not NaN), for every reduction. */
static void test_all_ignored(t2s_tensor *z) {
  int64_t sl[3] = {N, H, W};
  t2s_tensor *labels = t2s_test_tensor_u8(3, sl, NULL);
  memset(labels->data, 255, N * HW);
  for (int r = 0; r <= T2S_CE_SUM; r++) {
    t2s_ce_args a = {255, (t2s_ce_reduction)r, 0};
    t2s_ctx *ctx = new_ctx();
    t2s_tensor *loss = t2s_cross_entropy(ctx, z, labels, NULL, NULL, &a);
    CHECK_MSG(loss && t2s_f32(loss)[0] == 0.0f, "all ignored (%s): loss %g", reduction_name(a.reduction),
              loss ? t2s_f32(loss)[0] : NAN);
    if (loss && t2s_backward(ctx, loss, 1.0f) == T2S_OK) {
      int bad = 0;
      for (int i = 0; i < N * C * HW; i++) bad += z->grad[i] != 0.0f;
      CHECK_MSG(bad == 0, "all ignored (%s): %d nonzero gradients", reduction_name(a.reduction), bad);
    }
    CHECK_MSG(t2s_ctx_ok(ctx), "%s", ctx->err.msg);
    z->grad = NULL;
    t2s_ctx_destroy(ctx);
  }
  t2s_test_tensor_free(labels);
}

/* A label that is neither a class nor ignore_index is an error that names it. */
static void test_bad_label(t2s_tensor *z, t2s_tensor *labels) {
  uint8_t keep = t2s_u8(labels)[17];
  t2s_u8(labels)[17] = 19;
  t2s_ce_args a = {255, T2S_CE_MEAN_VALID, 0};
  t2s_ctx *ctx = new_ctx();
  CHECK(t2s_cross_entropy(ctx, z, labels, NULL, NULL, &a) == NULL);
  CHECK_MSG(strstr(ctx->err.msg, "label 19") != NULL, "message: %s", ctx->err.msg);
  t2s_ctx_destroy(ctx);
  /* with ignore_index 19 that pixel is ignored, and the 255s become the error */
  a.ignore_index = 19;
  ctx = new_ctx();
  CHECK(t2s_cross_entropy(ctx, z, labels, NULL, NULL, &a) == NULL);
  CHECK_MSG(strstr(ctx->err.msg, "label 255") != NULL, "message: %s", ctx->err.msg);
  t2s_ctx_destroy(ctx);
  t2s_u8(labels)[17] = keep;
}

int main(void) {
  int64_t sz[4] = {N, C, H, W}, sl[3] = {N, H, W}, sc[1] = {C};
  t2s_tensor *z = t2s_test_tensor(4, sz, -3, 3, 1, 1);
  uint8_t lab[N * HW];
  for (int i = 0; i < N * HW; i++) lab[i] = (uint8_t)((i * 7 + 3) % C);
  lab[2] = lab[9] = lab[20] = lab[29] = 255;
  t2s_tensor *labels = t2s_test_tensor_u8(3, sl, lab);
  t2s_tensor *pw = t2s_test_tensor(3, sl, 0.2f, 2.0f, 2, 0);
  t2s_tensor *cw = t2s_test_tensor(1, sc, 0.5f, 3.0f, 3, 0);

  test_reductions(z, labels, pw, cw);
  test_uniform(labels);
  test_all_ignored(z);
  test_bad_label(z, labels);

  t2s_test_tensor_free(z);
  t2s_test_tensor_free(labels);
  t2s_test_tensor_free(pw);
  t2s_test_tensor_free(cw);
  return t2s_test_finish("test_grad_cross_entropy");
}
