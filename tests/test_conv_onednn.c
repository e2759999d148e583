// ctest-labels: unit grad
// ctest-timeout: 300
/* conv2d through oneDNN (core/ops/conv2d_dnnl.c) against the im2col + sgemm reference
 * (core/ops/conv2d.c) on the shapes the networks use and the corner cases: stride,
 * dilation, asymmetric padding, groups, depthwise, 1x1, the 7x7 stem, channel counts
 * that are not a multiple of oneDNN's block of 8 or 16. Forward y, backward dx and dw,
 * with dx accumulating at a fan-out (beta 1: two convolutions read x) and dw
 * accumulating onto a gradient that is already there. Also: T2S_ONEDNN=off turns
 * oneDNN off. Winograd is switched off (test_conv_winograd compares it). The reference
 * itself is checked against direct formulas and finite differences in test_grad_conv.
 * Skipped (77) in a build without oneDNN. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/harness.h"
#ifdef T2S_HAVE_DNNL
#include "core/ops/conv2d_dnnl.h"
#include "core/ops/conv2d_winograd.h"

typedef struct conv_case {
  const char *name;
  int64_t n, cin, h, w, cout, kh, kw;
  t2s_conv2d_args a;
  int bias;
} conv_case;

typedef t2s_test_conv_result conv_result;

/* loss = sum(r1 conv(x, w, b)) + sum(r2 conv(x, w2)): x fans out into two convolutions,
 * so its gradient is written by one backward and accumulated by the other; w's grad
 * starts at 0.25 everywhere and must end at 0.25 + dL/dw. */
static int run_once(const conv_case *cc, t2s_tensor *x, t2s_tensor *w, t2s_tensor *w2,
                    t2s_tensor *b, conv_result *res) {
  return t2s_test_conv_fanout(cc->name, x, w, w2, b, &cc->a, res);
}

/* Both compute the same sums in different orders: compare relative to the size of the
 * values (float sums over up to Cin kh kw N H W terms of magnitude <= 1). */
static void compare(const conv_case *cc, const char *what, const float *ref, const float *got,
                    int64_t n) {
  double scale = 0.0;
  for (int64_t k = 0; k < n; k++) scale = fmax(scale, fabs(ref[k]));
  int bad = 0;
  for (int64_t k = 0; k < n; k++)
    if (!(fabs(ref[k] - got[k]) <= 2e-5 * (1.0 + scale)) && bad++ < 3)
      fprintf(stderr, "%s: %s[%lld] oneDNN %g, reference %g (max |ref| %g)\n", cc->name, what,
              (long long)k, got[k], ref[k], scale);
  CHECK_MSG(bad == 0, "%s: %d values of %s differ between oneDNN and the reference", cc->name,
            bad, what);
}

static void free_result(conv_result *r) { t2s_test_conv_result_free(r); }

static void run_case(const conv_case *cc, uint64_t seed) {
  int64_t xs[4] = {cc->n, cc->cin, cc->h, cc->w};
  int64_t ws[4] = {cc->cout, cc->cin / cc->a.groups, cc->kh, cc->kw};
  int64_t bs[1] = {cc->cout};
  t2s_tensor *x = t2s_test_tensor(4, xs, -1.0f, 1.0f, seed, 1);
  t2s_tensor *w = t2s_test_tensor(4, ws, -1.0f, 1.0f, seed + 1, 1);
  t2s_tensor *w2 = t2s_test_tensor(4, ws, -1.0f, 1.0f, seed + 2, 0);
  t2s_tensor *b = cc->bias ? t2s_test_tensor(1, bs, -1.0f, 1.0f, seed + 3, 1) : NULL;
  conv_result ref = {0}, got = {0};
  t2s_conv2d_set_onednn(0);
  int ok = run_once(cc, x, w, w2, b, &ref);
  t2s_conv2d_set_onednn(1);
  ok = run_once(cc, x, w, w2, b, &got) && ok;
  if (ok) {
    compare(cc, "y", ref.y, got.y, ref.ny);
    compare(cc, "dx", ref.dx, got.dx, ref.nx);
    compare(cc, "dw", ref.dw, got.dw, ref.nw);
    if (b) compare(cc, "db", ref.db, got.db, ref.nb);
  }
  free_result(&ref);
  free_result(&got);
  t2s_test_tensor_free(x);
  t2s_test_tensor_free(w);
  t2s_test_tensor_free(w2);
  t2s_test_tensor_free(b);
}

int main(void) {
  /* read before any convolution: the switch takes the environment once */
  setenv("T2S_ONEDNN", "off", 1);
  CHECK_MSG(!t2s_conv2d_onednn_enabled(), "T2S_ONEDNN=off did not turn oneDNN off");
  t2s_conv2d_set_onednn(1);
  CHECK(t2s_conv2d_onednn_enabled());
  /* this test is about oneDNN: the 3x3 stride-1 shapes would otherwise go to Winograd
   * (compared with the reference in test_conv_winograd) */
  t2s_conv2d_set_winograd(0);
  /* name, n, cin, h, w, cout, kh, kw, {sh, sw, ph, pw, dh, dw, groups}, bias */
  static const conv_case cases[] = {
      {"3x3 pad 1, 64 -> 64 (ResNet body)", 2, 64, 12, 10, 64, 3, 3, {1, 1, 1, 1, 1, 1, 1}, 0},
      {"1x1 64 -> 256 (bottleneck expand)", 2, 64, 9, 7, 256, 1, 1, {1, 1, 0, 0, 1, 1, 1}, 0},
      {"1x1 stride 2, 256 -> 512 (downsample)", 2, 256, 9, 8, 512, 1, 1, {2, 2, 0, 0, 1, 1, 1}, 0},
      {"3x3 stride 2 pad 1, 128 -> 128", 1, 128, 11, 9, 128, 3, 3, {2, 2, 1, 1, 1, 1, 1}, 0},
      {"3x3 dilation 2 pad 2 (layer3)", 2, 32, 10, 9, 48, 3, 3, {1, 1, 2, 2, 2, 2, 1}, 0},
      {"3x3 dilation 12 pad 12, bias (ASPP)", 1, 40, 16, 14, 19, 3, 3, {1, 1, 12, 12, 12, 12, 1}, 1},
      {"3x3 stride 2 stem, 3 -> 32 (V1c)", 2, 3, 17, 15, 32, 3, 3, {2, 2, 1, 1, 1, 1, 1}, 0},
      {"7x7 stride 2 pad 3 (MiT patch embed)", 1, 3, 19, 17, 32, 7, 7, {2, 2, 3, 3, 1, 1, 1}, 1},
      {"3x3 stride 2 pad 1 (MiT embed), 32 -> 64", 2, 32, 9, 9, 64, 3, 3, {2, 2, 1, 1, 1, 1, 1}, 1},
      {"8x8 stride 8 (MiT sr)", 1, 32, 16, 16, 32, 8, 8, {8, 8, 0, 0, 1, 1, 1}, 1},
      {"depthwise 3x3 (MiT Mix-FFN)", 2, 64, 8, 7, 64, 3, 3, {1, 1, 1, 1, 1, 1, 64}, 1},
      {"depthwise 3x3 dilation 6 (sep-ASPP: the reference runs it)", 2, 32, 14, 13, 32, 3, 3,
       {1, 1, 6, 6, 6, 6, 32}, 0},
      {"groups 2, odd channels", 2, 6, 7, 6, 10, 3, 3, {1, 1, 1, 1, 1, 1, 2}, 1},
      {"channels 5 -> 7 (not a block multiple)", 2, 5, 6, 7, 7, 3, 3, {1, 1, 1, 1, 1, 1, 1}, 1},
      {"stride 2, even input, no pad (negative right pad)", 1, 8, 8, 6, 8, 3, 3, {2, 2, 0, 0, 1, 1, 1}, 0},
      {"non-square 3x2 stride (2,1) pad (1,0)", 2, 16, 7, 6, 8, 3, 2, {2, 1, 1, 0, 1, 1, 1}, 1},
      {"1x1 classifier 256 -> 19, bias", 2, 256, 6, 6, 19, 1, 1, {1, 1, 0, 0, 1, 1, 1}, 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i], 100 + 5 * i);
  /* the same shape again runs from the primitive cache */
  run_case(&cases[0], 900);
  return t2s_test_finish("test_conv_onednn");
}
#else
int main(void) {
  fprintf(stderr, "test_conv_onednn: this build has no oneDNN (T2S_DNNL=OFF or libdnnl-dev missing)\n");
  return 77;
}
#endif
