// ctest-labels: unit grad
// ctest-timeout: 300
/* conv2d through Winograd F(4x4, 3x3) (core/ops/conv2d_winograd.c) against the im2col +
 * sgemm reference (core/ops/conv2d.c): forward y (with and without bias), backward dx
 * written (beta 0) and accumulated (beta 1: x fans out into two convolutions), dW
 * written (a fresh gradient) and accumulated onto 0.25; dilation 1 to 4 (also
 * different in the two dimensions), sizes not divisible by the dilation or by the
 * tile, 1 to 64 channels, batch 1 and 3 (Winograd forced onto these small shapes,
 * which the cost rule would mostly leave to oneDNN). Also: the cost rule on the
 * network's layers (ResNet body chosen, ASPP and large dilations on small images not,
 * nothing that is not 3x3 / stride 1 / padding = dilation) and T2S_WINOGRAD=off. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/ops/conv2d_winograd.h"
#include "tests/harness.h"
#ifdef T2S_HAVE_DNNL
#include "core/ops/conv2d_dnnl.h"
#endif

typedef struct conv_case {
  const char *name;
  int64_t n, cin, h, w, cout;
  int dh, dw; /* dilation = padding */
  int bias;
} conv_case;

typedef t2s_test_conv_result conv_result;

static t2s_conv2d_args args_of(const conv_case *cc) {
  t2s_conv2d_args a = {1, 1, cc->dh, cc->dw, cc->dh, cc->dw, 1};
  return a;
}

/* mode 0: the plain reference; 1: Winograd where the cost rule takes it (as in
 * training); 2: Winograd on every shape it can run (the small shapes here). */
static void use_winograd(int mode) {
#ifdef T2S_HAVE_DNNL
  t2s_conv2d_set_onednn(mode != 0); /* T2S_ONEDNN=off means the reference, Winograd too */
#endif
  t2s_conv2d_set_winograd(mode);
}

/* loss = sum(r1 conv(x, w, b)) + sum(r2 conv(x, w2)): x's gradient is written by one
 * backward and accumulated by the other; w's grad starts at 0.25 (beta 1), w2's is
 * fresh (beta 0). */
static int run_once(const conv_case *cc, t2s_tensor *x, t2s_tensor *w, t2s_tensor *w2,
                    t2s_tensor *b, conv_result *res) {
  t2s_conv2d_args a = args_of(cc);
  return t2s_test_conv_fanout(cc->name, x, w, w2, b, &a, res);
}

static double worst_rel; /* the largest error seen, relative to the scale (printed) */

/* Winograd's transforms scale values by up to 8 and 1/24 before the sums, so it is
 * compared with a bound relative to the size of the values (max |ref|): 2e-5 of the
 * scale; the largest error on these shapes is ~5e-6 (printed). Changing one
 * coefficient of B^T, B, G or A^T makes 9 to 27 of the checks fail. */
static void compare(const conv_case *cc, const char *what, const float *ref, const float *got,
                    int64_t n) {
  double scale = 0.0, worst = 0.0;
  for (int64_t k = 0; k < n; k++) scale = fmax(scale, fabs(ref[k]));
  int bad = 0;
  for (int64_t k = 0; k < n; k++) {
    double e = fabs(ref[k] - got[k]) / (1e-3 + scale);
    if (!(e <= worst)) worst = e; /* catches NaN */
    if (!(e <= 2e-5) && bad++ < 3)
      fprintf(stderr, "%s: %s[%lld] Winograd %g, reference %g (max |ref| %g)\n", cc->name, what,
              (long long)k, got[k], ref[k], scale);
  }
  if (worst > worst_rel || worst != worst) worst_rel = worst;
  CHECK_MSG(bad == 0, "%s: %d values of %s differ between Winograd and the reference", cc->name,
            bad, what);
}

static void free_result(conv_result *r) { t2s_test_conv_result_free(r); }

static void run_case(const conv_case *cc, uint64_t seed) {
  int64_t xs[4] = {cc->n, cc->cin, cc->h, cc->w};
  int64_t ws[4] = {cc->cout, cc->cin, 3, 3};
  int64_t bs[1] = {cc->cout};
  t2s_tensor *x = t2s_test_tensor(4, xs, -1.0f, 1.0f, seed, 1);
  t2s_tensor *w = t2s_test_tensor(4, ws, -1.0f, 1.0f, seed + 1, 1);
  t2s_tensor *w2 = t2s_test_tensor(4, ws, -1.0f, 1.0f, seed + 2, 1);
  t2s_tensor *b = cc->bias ? t2s_test_tensor(1, bs, -1.0f, 1.0f, seed + 3, 1) : NULL;
  conv_result ref = {0}, got = {0};
  use_winograd(0);
  long before = t2s_conv2d_winograd_calls();
  int ok = run_once(cc, x, w, w2, b, &ref);
  CHECK_MSG(t2s_conv2d_winograd_calls() == before, "%s: Winograd ran while switched off",
            cc->name);
  use_winograd(2);
  ok = run_once(cc, x, w, w2, b, &got) && ok;
  /* two forward and two backward calls */
  CHECK_MSG(t2s_conv2d_winograd_calls() == before + 4, "%s: Winograd ran %ld times, not 4",
            cc->name, t2s_conv2d_winograd_calls() - before);
  if (ok) {
    compare(cc, "y", ref.y, got.y, ref.ny);
    compare(cc, "dx", ref.dx, got.dx, ref.nx);
    compare(cc, "dw (beta 1)", ref.dw, got.dw, ref.nw);
    compare(cc, "dw (beta 0)", ref.dw2, got.dw2, ref.nw);
    if (b) compare(cc, "db", ref.db, got.db, ref.nb);
  }
  free_result(&ref);
  free_result(&got);
  t2s_test_tensor_free(x);
  t2s_test_tensor_free(w);
  t2s_test_tensor_free(w2);
  t2s_test_tensor_free(b);
}

/* Image 1 of a batch of 3 gives bit for bit the output and the input gradient it gives
 * alone (per-unit GEMMs, units cut by the image's own geometry): a run that spreads its
 * batch over ranks computes what one process does. chunk_bytes (0: the default) small
 * cuts each image into several units. */
static void batch_invariance(int64_t cin, int64_t h, int64_t w, int64_t cout, int dil,
                             size_t chunk_bytes) {
  int64_t xs[4] = {3, cin, h, w}, x1s[4] = {1, cin, h, w}, ws[4] = {cout, cin, 3, 3};
  int64_t ys[4] = {3, cout, h, w}, y1s[4] = {1, cout, h, w};
  t2s_tensor *x = t2s_test_tensor(4, xs, -1.0f, 1.0f, 21, 1);
  t2s_tensor *x1 = t2s_test_tensor(4, x1s, -1.0f, 1.0f, 22, 1);
  t2s_tensor *wt = t2s_test_tensor(4, ws, -1.0f, 1.0f, 23, 0);
  t2s_tensor *r = t2s_test_tensor(4, ys, -1.0f, 1.0f, 24, 0);
  t2s_tensor *r1 = t2s_test_tensor(4, y1s, -1.0f, 1.0f, 25, 0);
  int64_t plane = cin * h * w, out = cout * h * w;
  memcpy(t2s_f32(x1), t2s_f32(x) + plane, (size_t)plane * sizeof(float));
  memcpy(t2s_f32(r1), t2s_f32(r) + out, (size_t)out * sizeof(float));
  t2s_conv2d_args a = t2s_conv_args(1, dil, dil);
  use_winograd(2);
  size_t old = t2s_conv2d_winograd_set_chunk_bytes(chunk_bytes);
  t2s_error err = {0};
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 1 << 20, &err);
  t2s_tensor *y = t2s_conv2d(ctx, x, wt, NULL, &a);
  t2s_tensor *y1 = t2s_conv2d(ctx, x1, wt, NULL, &a);
  t2s_tensor *l = y ? t2s_weighted_sum(ctx, y, r) : NULL;
  t2s_tensor *l1 = y1 ? t2s_weighted_sum(ctx, y1, r1) : NULL;
  t2s_tensor *loss = l && l1 ? t2s_add(ctx, l, l1) : NULL;
  int ok = loss && t2s_backward(ctx, loss, 1.0f) == T2S_OK;
  CHECK_MSG(ok, "batch invariance (%lld -> %lld, %lldx%lld, chunk %zu B): %s", (long long)cin,
            (long long)cout, (long long)h, (long long)w, chunk_bytes, ctx->err.msg);
  if (ok) {
    CHECK_MSG(memcmp(t2s_f32(y) + out, t2s_f32(y1), (size_t)out * sizeof(float)) == 0,
              "image 1 of 3 differs from the same image alone (chunk %zu B)", chunk_bytes);
    CHECK_MSG(memcmp(x->grad + plane, x1->grad, (size_t)plane * sizeof(float)) == 0,
              "dx of image 1 of 3 differs from the same image alone (chunk %zu B)",
              chunk_bytes);
  }
  x->grad = x1->grad = NULL;
  t2s_conv2d_winograd_set_chunk_bytes(old);
  t2s_ctx_destroy(ctx);
  t2s_test_tensor_free(x);
  t2s_test_tensor_free(x1);
  t2s_test_tensor_free(wt);
  t2s_test_tensor_free(r);
  t2s_test_tensor_free(r1);
}

/* Images cut into several units (a tiny chunk budget): forward, dx and dW (accumulated
 * over an image's units) equal the reference. */
static void chunked_cases(void) {
  /* name, n, cin, h, w, cout, dilation h, w, bias */
  static const conv_case cases[] = {
      /* 100 tiles, 36 x 16 x 4 B each: 55296 B takes 24 -> 5 units of 24, 24, 24, 24, 4 */
      {"16 -> 8, 40x40, 5 units per image", 2, 16, 40, 40, 8, 1, 1, 1},
      /* dilation 2 on 30x26: 4 sub-images, 8 x 7 tiles (+ ragged ones); 8 tiles a unit */
      {"8 -> 16, 30x26, dilation 2, 8 tiles a unit", 3, 8, 30, 26, 16, 2, 2, 0},
  };
  static const size_t bytes[] = {55296, 1};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    size_t old = t2s_conv2d_winograd_set_chunk_bytes(bytes[i]);
    run_case(&cases[i], 900 + 5 * i);
    t2s_conv2d_winograd_set_chunk_bytes(old);
  }
}

/* Whether the cost rule takes x (2, cin, hw, hw) * w (cout, cin / groups, k, k). */
static int chosen(int64_t cin, int64_t hw, int64_t cout, int64_t k, t2s_conv2d_args a) {
  int64_t xs[4] = {2, cin, hw, hw}, ws[4] = {cout, cin / a.groups, k, k};
  t2s_tensor *x = t2s_test_tensor(4, xs, -1.0f, 1.0f, 1, 0);
  t2s_tensor *wt = t2s_test_tensor(4, ws, -1.0f, 1.0f, 2, 0);
  int c = t2s_conv2d_winograd_chosen(x, wt, &a);
  t2s_test_tensor_free(x);
  t2s_test_tensor_free(wt);
  return c;
}

static void selection_rule(void) {
  use_winograd(1);
  /* DeepLab-V2 ResNet-50 at 256x256: the body is chosen ... */
  CHECK_MSG(chosen(32, 128, 64, 3, t2s_conv_args(1, 1, 1)), "stem 32 -> 64 at 128x128");
  CHECK_MSG(chosen(64, 64, 64, 3, t2s_conv_args(1, 1, 1)), "layer1 64 at 64x64");
  CHECK_MSG(chosen(128, 32, 128, 3, t2s_conv_args(1, 1, 1)), "layer2 128 at 32x32");
  CHECK_MSG(chosen(256, 32, 256, 3, t2s_conv_args(1, 2, 2)), "layer3 256 at 32x32, dilation 2");
  CHECK_MSG(chosen(512, 32, 512, 3, t2s_conv_args(1, 4, 4)), "layer4 512 at 32x32, dilation 4");
  /* ... the ASPP branches (19 outputs, large dilations) are not */
  static const int aspp[] = {6, 12, 18, 24};
  for (size_t i = 0; i < sizeof aspp / sizeof aspp[0]; i++)
    CHECK_MSG(!chosen(2048, 32, 19, 3, t2s_conv_args(1, aspp[i], aspp[i])),
              "Winograd chosen for ASPP 2048 -> 19, dilation %d", aspp[i]);
  /* large dilations on small images waste most of every tile, even with many channels */
  CHECK_MSG(!chosen(512, 32, 512, 3, t2s_conv_args(1, 24, 24)), "512 at 32x32, dilation 24");
  CHECK_MSG(!chosen(512, 5, 512, 3, t2s_conv_args(1, 1, 1)), "512 at 5x5");
  /* fewer than 16 tiles an image: GEMMs too narrow (the synthetic demo's maps) */
  CHECK_MSG(!chosen(128, 12, 128, 3, t2s_conv_args(1, 1, 1)), "128 at 12x12 (9 tiles)");
  CHECK_MSG(!chosen(128, 8, 128, 3, t2s_conv_args(1, 1, 1)), "128 at 8x8 (4 tiles)");
  CHECK_MSG(chosen(64, 16, 64, 3, t2s_conv_args(1, 1, 1)), "64 at 16x16 (16 tiles)");
  /* and shapes it cannot run */
  CHECK_MSG(!chosen(64, 32, 64, 3, t2s_conv_args(2, 1, 1)), "stride 2");
  CHECK_MSG(!chosen(64, 32, 64, 3, t2s_conv_args(1, 0, 1)), "padding 0");
  CHECK_MSG(!chosen(64, 32, 64, 3, t2s_conv_args(1, 1, 2)), "padding 1, dilation 2");
  CHECK_MSG(!chosen(64, 32, 64, 1, t2s_conv_args(1, 0, 1)), "1x1");
  CHECK_MSG(!chosen(64, 32, 64, 5, t2s_conv_args(1, 1, 1)), "5x5");
  t2s_conv2d_args grouped = t2s_conv_args(1, 1, 1);
  grouped.groups = 2;
  CHECK_MSG(!chosen(64, 32, 64, 3, grouped), "groups 2");
  use_winograd(2);
  CHECK_MSG(!chosen(64, 32, 64, 3, t2s_conv_args(2, 1, 1)), "stride 2 (mode 2)");
  CHECK_MSG(chosen(2048, 32, 19, 3, t2s_conv_args(1, 24, 24)), "mode 2 skips the cost rule");

  /* a shape that is not chosen runs the usual path: the results equal the reference's */
  conv_case ref_case = {"dilation 12 on 16x14 (falls back)", 1, 8, 16, 14, 5, 12, 12, 1};
  int64_t xs[4] = {1, 8, 16, 14}, ws[4] = {5, 8, 3, 3};
  t2s_tensor *x = t2s_test_tensor(4, xs, -1.0f, 1.0f, 3, 1);
  t2s_tensor *w = t2s_test_tensor(4, ws, -1.0f, 1.0f, 4, 1);
  t2s_tensor *w2 = t2s_test_tensor(4, ws, -1.0f, 1.0f, 5, 1);
  t2s_conv2d_args a = args_of(&ref_case);
  use_winograd(1);
  CHECK_MSG(!t2s_conv2d_winograd_chosen(x, w, &a), "%s: chosen", ref_case.name);
  conv_result got = {0};
  long before = t2s_conv2d_winograd_calls();
  run_once(&ref_case, x, w, w2, NULL, &got);
  CHECK_MSG(t2s_conv2d_winograd_calls() == before, "%s: Winograd ran", ref_case.name);
  free_result(&got);
  t2s_test_tensor_free(x);
  t2s_test_tensor_free(w);
  t2s_test_tensor_free(w2);
}

int main(void) {
  /* read before any convolution: the switch takes the environment once */
  setenv("T2S_WINOGRAD", "off", 1);
  CHECK_MSG(!t2s_conv2d_winograd_enabled(), "T2S_WINOGRAD=off did not turn Winograd off");
  t2s_conv2d_set_winograd(1);
  CHECK(t2s_conv2d_winograd_enabled());
  /* name, n, cin, h, w, cout, dilation h, w, bias */
  static const conv_case cases[] = {
      {"64 -> 64, 12x16 (ResNet body)", 2, 64, 12, 16, 64, 1, 1, 0},
      {"1 -> 3, 13x17, bias", 1, 1, 13, 17, 3, 1, 1, 1},
      {"3 -> 8, 13x17, dilation 2, bias", 3, 3, 13, 17, 8, 2, 2, 1},
      {"8 -> 19, 13x17, dilation 3", 1, 8, 13, 17, 19, 3, 3, 0},
      {"19 -> 8, 13x17, dilation 4, bias", 3, 19, 13, 17, 8, 4, 4, 1},
      {"64 -> 19, 20x20, dilation 2 (layer3-like)", 2, 64, 20, 20, 19, 2, 2, 1},
      {"16 -> 16, 24x24, dilation 4 (layer4-like)", 1, 16, 24, 24, 16, 4, 4, 0},
      {"8 -> 3, 14x11, dilation (2, 3)", 2, 8, 14, 11, 3, 2, 3, 1},
      {"3 -> 1, 9x9 (one tile and a bit)", 1, 3, 9, 9, 1, 1, 1, 0},
      {"32 -> 32, 8x8, dilation 2 (the parity net's layer4.0)", 2, 32, 8, 8, 32, 2, 2, 0},
      {"4 -> 4, 32x32 (the parity net's stem)", 2, 4, 32, 32, 4, 1, 1, 0},
      {"16 -> 5, 8x8, dilation 12 (ASPP wider than the map)", 2, 16, 8, 8, 5, 12, 12, 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i], 300 + 5 * i);
  fprintf(stderr, "test_conv_winograd: largest error %.3g of the values' scale\n", worst_rel);
  chunked_cases();
  batch_invariance(19, 13, 17, 8, 2, 0);
  batch_invariance(16, 40, 40, 8, 1, 55296); /* 5 units per image */
  batch_invariance(8, 30, 26, 16, 2, 1);     /* 8 tiles a unit */
  selection_rule();
  use_winograd(1);
  return t2s_test_finish("test_conv_winograd");
}
