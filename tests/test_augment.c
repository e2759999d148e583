// ctest-labels: unit
/* Augmentation against closed forms: cat_max_ratio crops checked by a direct
 * count, flips that move image and label together, padding, an identity
 * rescale, torchvision's colour jitter formulas, the Gaussian blur of a
 * constant and of a delta (the normalised kernel, reflect at the border), DACS's
 * kernel size, and normalisation values. The batch steps of a context (t2s_images_*)
 * on the CPU against the per-sample functions with the same draws. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/augment.h"
#include "tests/harness.h"

static t2s_aug_key key_of(int64_t it, int64_t sample) {
  t2s_aug_key k = {.seed = 11, .stream = 0, .iteration = it, .sample = sample};
  return k;
}

/* Largest-class share of the labelled pixels of a box, and the class count. */
static double box_ratio(const uint8_t *lab, int w, int x0, int y0, int bw, int bh, int *classes) {
  long hist[256] = {0}, tot = 0, top = 0;
  for (int y = y0; y < y0 + bh; y++)
    for (int x = x0; x < x0 + bw; x++) hist[lab[y * w + x]]++;
  *classes = 0;
  for (int c = 0; c < 255; c++)
    if (hist[c]) {
      (*classes)++;
      tot += hist[c];
      if (hist[c] > top) top = hist[c];
    }
  return tot ? (double)top / tot : 1.0;
}

/* 200 x 60 label: columns 0..69 class 0, the rest alternating classes 1 / 2 by
 * column, the top 10 rows ignore (255). A 40 x 40 crop is acceptable only when it
 * starts right of column 40 (fewer than 30 columns of class 0). */
static void test_cat_max_ratio(void) {
  enum { W = 200, H = 60 };
  static uint8_t lab[W * H];
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) lab[y * W + x] = y < 10 ? 255 : (x < 70 ? 0 : 1 + x % 2);
  t2s_augment_cfg cfg = t2s_augment_cfg_default();
  cfg.crop_w = cfg.crop_h = 40;
  int bad_without = 0;
  for (int i = 0; i < 300; i++) {
    t2s_geometry g;
    t2s_crop_choose(&cfg, key_of(i, 3), 0, lab, W, H, &g);
    CHECK(g.w == 40 && g.h == 40 && g.x >= 0 && g.x <= W - 40 && g.y >= 0 && g.y <= H - 40);
    int classes;
    double r = box_ratio(lab, W, g.x, g.y, g.w, g.h, &classes);
    CHECK_MSG(classes > 1 && r < 0.75, "key %d: crop at x %d y %d has ratio %.3f", i, g.x, g.y, r);
    t2s_augment_cfg off = cfg;
    off.cat_max_ratio = 1.0;
    t2s_crop_choose(&off, key_of(i, 3), 0, lab, W, H, &g);
    bad_without += box_ratio(lab, W, g.x, g.y, g.w, g.h, &classes) >= 0.75;
  }
  /* without the check about a quarter of the boxes are one-sided: the test can fail */
  CHECK_MSG(bad_without > 30, "only %d of 300 unchecked crops violate the ratio", bad_without);
  /* one class everywhere: no box is acceptable, the 11th draw stands and is valid */
  static uint8_t flat[W * H];
  memset(flat, 4, sizeof flat);
  t2s_geometry a, b;
  t2s_crop_choose(&cfg, key_of(1, 1), 0, flat, W, H, &a);
  t2s_crop_choose(&cfg, key_of(1, 1), 0, flat, W, H, &b);
  CHECK(a.x == b.x && a.y == b.y && a.x <= W - 40 && a.y <= H - 40);
}

static uint8_t px(int y, int x, int c) { return (uint8_t)((3 * y + 7 * x + 50 * c) % 251); }

static void test_flip_crop_pad(void) {
  enum { W = 30, H = 20 };
  static uint8_t rgb[W * H * 3], lab[W * H];
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) {
      for (int c = 0; c < 3; c++) rgb[(y * W + x) * 3 + c] = px(y, x, c);
      lab[y * W + x] = (uint8_t)((x + 2 * y) % 5);
    }
  t2s_augment_cfg cfg = t2s_augment_cfg_default();
  cfg.crop_w = 16;
  cfg.crop_h = 12;
  cfg.cat_max_ratio = 1.0;
  float img[3 * 16 * 12];
  uint8_t out[16 * 12];
  t2s_aug_scratch sc = {0};
  int flips = 0, errors = 0;
  for (int i = 0; i < 400; i++) {
    t2s_geometry g;
    t2s_error err = {0};
    CHECK(t2s_augment_sample(&cfg, key_of(5, i), rgb, lab, W, H, -1, img, out, &sc, &g, &err) == T2S_OK);
    flips += g.flip;
    for (int y = 0; y < 12; y++)
      for (int x = 0; x < 16; x++) {
        int sx = g.x + (g.flip ? 15 - x : x), sy = g.y + y;
        errors += out[y * 16 + x] != lab[sy * W + sx];
        for (int c = 0; c < 3; c++) errors += img[(c * 12 + y) * 16 + x] != (float)px(sy, sx, c);
      }
  }
  CHECK_MSG(errors == 0, "%d pixels differ from the flipped crop", errors);
  CHECK_MSG(flips > 160 && flips < 240, "%d flips of 400 (p = 0.5)", flips);
  /* an image smaller than the crop: padded right/bottom with ignore and the mean colour */
  cfg.crop_w = 40;
  cfg.crop_h = 24;
  float *big = malloc(sizeof(float) * 3 * 40 * 24);
  uint8_t *bl = malloc(40 * 24);
  t2s_geometry g;
  t2s_error err = {0};
  CHECK(t2s_augment_sample(&cfg, key_of(0, 0), rgb, lab, W, H, -1, big, bl, &sc, &g, &err) == T2S_OK);
  CHECK(g.x == 0 && g.y == 0 && g.w == W && g.h == H);
  CHECK(bl[0 * 40 + 35] == 255 && bl[22 * 40 + 3] == 255);
  CHECK(big[(1 * 24 + 22) * 40 + 3] == t2s_norm_mean[1] && big[(2 * 24 + 0) * 40 + 35] == t2s_norm_mean[2]);
  int sx = g.flip ? W - 1 : 0;
  CHECK(big[0] == (float)px(0, sx, 0) && bl[0] == lab[sx]);
  /* rescale with ratio 1 is the identity (bilinear at the pixel centres) */
  cfg.crop_w = 16;
  cfg.crop_h = 12;
  float img2[3 * 16 * 12];
  uint8_t out2[16 * 12];
  t2s_augment_cfg rs = cfg;
  rs.rescale = 1;
  rs.ratio_lo = rs.ratio_hi = 1.0;
  CHECK(t2s_augment_sample(&cfg, key_of(2, 2), rgb, lab, W, H, -1, img, out, &sc, NULL, &err) == T2S_OK);
  CHECK(t2s_augment_sample(&rs, key_of(2, 2), rgb, lab, W, H, -1, img2, out2, &sc, NULL, &err) == T2S_OK);
  CHECK(memcmp(img, img2, sizeof img) == 0 && memcmp(out, out2, sizeof out) == 0);
  rs.ratio_lo = rs.ratio_hi = 2.0;
  CHECK(t2s_augment_sample(&rs, key_of(2, 2), rgb, lab, W, H, -1, img2, out2, &sc, &g, &err) == T2S_OK);
  CHECK(g.src_w == 2 * W && g.src_h == 2 * H);
  t2s_aug_scratch_free(&sc);
  free(big);
  free(bl);
}

static void test_jitter(void) {
  enum { H = 4, W = 5, N = H * W };
  float img[3 * N], ref[3 * N];
  for (int i = 0; i < 3 * N; i++) img[i] = ref[i] = (float)((i * 37) % 256);
  t2s_jitter_params p = {.apply = 1, .order = {0, 1, 2, 3}, .brightness = 1.1f, .contrast = 1.0f,
                         .saturation = 1.0f, .hue = 0.0f};
  t2s_jitter_apply(img, H, W, &p);
  for (int i = 0; i < 3 * N; i++) {
    float e = fminf(ref[i] * 1.1f, 255.0f);
    CHECK_MSG(fabsf(img[i] - e) < 1e-3f, "brightness: %d: %f vs %f", i, img[i], e);
  }
  /* contrast f: f x + (1 - f) mean(grey), clamped to [0, 1] (x/255) */
  memcpy(img, ref, sizeof img);
  p.brightness = 1.0f;
  p.contrast = 0.7f;
  double m = 0;
  for (int i = 0; i < N; i++) m += (0.2989 * ref[i] + 0.587 * ref[N + i] + 0.114 * ref[2 * N + i]) / 255.0;
  m /= N;
  t2s_jitter_apply(img, H, W, &p);
  for (int i = 0; i < 3 * N; i++) {
    double e = fmin(1.0, fmax(0.0, 0.7 * ref[i] / 255.0 + 0.3 * m)) * 255.0;
    CHECK_MSG(fabs(img[i] - e) < 1e-3, "contrast: %d: %f vs %f", i, img[i], e);
  }
  /* saturation 0: every channel the grey value */
  memcpy(img, ref, sizeof img);
  p.contrast = 1.0f;
  p.saturation = 0.0f;
  t2s_jitter_apply(img, H, W, &p);
  for (int i = 0; i < N; i++) {
    double gy = 0.2989 * ref[i] + 0.587 * ref[N + i] + 0.114 * ref[2 * N + i];
    for (int c = 0; c < 3; c++) CHECK(fabs(img[c * N + i] - gy) < 1e-3);
  }
  /* hue 0 is the identity; hue 0.2 takes pure red (h 0) to h 0.2: (0.8, 1, 0) */
  memcpy(img, ref, sizeof img);
  p.saturation = 1.0f;
  t2s_jitter_apply(img, H, W, &p);
  for (int i = 0; i < 3 * N; i++) CHECK(fabsf(img[i] - ref[i]) < 1e-3f);
  for (int i = 0; i < N; i++) img[i] = 255.0f, img[N + i] = img[2 * N + i] = 0.0f;
  p.hue = 0.2f;
  t2s_jitter_apply(img, H, W, &p);
  CHECK(fabsf(img[0] - 0.8f * 255) < 1e-2f && fabsf(img[N] - 255.0f) < 1e-2f && fabsf(img[2 * N]) < 1e-3f);
  /* draws: probability 0.8, factors in range, the order a permutation */
  t2s_jitter_cfg cfg = t2s_jitter_cfg_default();
  int applied = 0, first[4] = {0};
  for (int i = 0; i < 2000; i++) {
    t2s_jitter_params q = t2s_jitter_draw(&cfg, key_of(9, i));
    applied += q.apply;
    int seen = 0;
    for (int k = 0; k < 4; k++) seen |= 1 << q.order[k];
    CHECK(seen == 15);
    first[q.order[0]]++;
    CHECK(q.brightness >= 0.8f && q.brightness <= 1.2f && q.hue >= -0.2f && q.hue <= 0.2f);
    CHECK(q.contrast >= 0.8f && q.contrast <= 1.2f && q.saturation >= 0.8f && q.saturation <= 1.2f);
  }
  CHECK_MSG(applied > 1520 && applied < 1680, "applied %d of 2000", applied);
  for (int k = 0; k < 4; k++) CHECK_MSG(first[k] > 400 && first[k] < 600, "op %d first %d times", k, first[k]);
  /* a batch of samples 6, 7 is what samples 6 and 7 get alone (rank equivalence) */
  float batch[2 * 3 * N], one[3 * N];
  for (int i = 0; i < 2 * 3 * N; i++) batch[i] = (float)((i * 13) % 256);
  memcpy(one, batch + 3 * N, sizeof one);
  t2s_color_jitter(batch, 2, H, W, &cfg, key_of(3, 6));
  t2s_color_jitter(one, 1, H, W, &cfg, key_of(3, 7));
  CHECK(memcmp(one, batch + 3 * N, sizeof one) == 0);
}

static double gauss_ref(int k, double sigma, int d) {
  double s = 0;
  for (int i = 0; i < k; i++) s += exp(-pow(i - k / 2, 2) / (2 * sigma * sigma));
  return exp(-(double)d * d / (2 * sigma * sigma)) / s;
}

static void test_blur(void) {
  const int sides[] = {10, 64, 250, 256, 512, 720, 1024, 1280};
  for (size_t i = 0; i < sizeof sides / sizeof sides[0]; i++) {
    double c = ceil(0.1 * sides[i]);
    int dacs = (int)floor(c - 0.5 + fmod(c, 2.0));
    CHECK_MSG(t2s_blur_kernel_size(sides[i]) == dacs, "side %d: %d vs %d", sides[i],
              t2s_blur_kernel_size(sides[i]), dacs);
  }
  enum { S = 64 };
  float *img = malloc(sizeof(float) * 3 * S * S);
  t2s_blur_params p = {.apply = 1, .sigma = 1.0f};
  t2s_error err = {0};
  for (int i = 0; i < 3 * S * S; i++) img[i] = 77.0f;
  CHECK(t2s_blur_apply(img, S, S, &p, &err) == T2S_OK);
  for (int i = 0; i < 3 * S * S; i++) CHECK(fabsf(img[i] - 77.0f) < 1e-3f);
  /* delta at (32, 32): the normalised 7-tap kernel's outer product; delta at (20, 1):
   * column 0 gets k(-1) + k(+1) by reflection */
  memset(img, 0, sizeof(float) * 3 * S * S);
  img[32 * S + 32] = 1.0f;
  img[S * S + 20 * S + 1] = 1.0f;
  CHECK(t2s_blur_apply(img, S, S, &p, &err) == T2S_OK);
  int k = t2s_blur_kernel_size(S);
  CHECK(k == 7);
  double total = 0;
  for (int y = 0; y < S; y++)
    for (int x = 0; x < S; x++) {
      int dy = y - 32, dx = x - 32;
      double e = abs(dy) <= k / 2 && abs(dx) <= k / 2 ? gauss_ref(k, 1.0, dy) * gauss_ref(k, 1.0, dx) : 0;
      CHECK_MSG(fabs(img[y * S + x] - e) < 1e-6, "(%d, %d): %g vs %g", y, x, img[y * S + x], e);
      total += img[y * S + x];
    }
  CHECK(fabs(total - 1.0) < 1e-5);
  double e0 = gauss_ref(k, 1.0, 0) * 2 * gauss_ref(k, 1.0, 1);
  CHECK_MSG(fabs(img[S * S + 20 * S + 0] - e0) < 1e-6, "%g vs %g", img[S * S + 20 * S], e0);
  /* draws: p 0.5, sigma in [0.15, 1.15] */
  t2s_blur_cfg cfg = t2s_blur_cfg_default();
  int applied = 0;
  for (int i = 0; i < 2000; i++) {
    t2s_blur_params q = t2s_blur_draw(&cfg, key_of(1, i));
    applied += q.apply;
    CHECK(q.sigma >= 0.15f && q.sigma <= 1.15f);
  }
  CHECK_MSG(applied > 900 && applied < 1100, "blurred %d of 2000", applied);
  free(img);
}

static void test_normalize(void) {
  float img[3 * 2] = {123.675f, 0.0f, 255.0f, 116.28f, 103.53f, 0.0f};
  t2s_normalize(img, 1, 1, 2);
  CHECK(img[0] == 0.0f && img[3] == 0.0f && img[4] == 0.0f);
  CHECK(fabsf(img[1] - (float)(-123.675 / 58.395)) < 1e-6f);
  CHECK(fabsf(img[2] - (float)((255 - 116.28) / 57.12)) < 1e-6f);
  CHECK(fabsf(img[5] - (float)(-103.53 / 57.375)) < 1e-6f);
}

/* The CPU slots of t2s_images_* give the bits of the per-sample functions they stand for
 * on a CPU context (NCHW batches), and the layout change is the NCHW <-> NHWC transpose. */
static void test_batch_steps(void) {
  enum { N = 2, H = 24, W = 41, HW = H * W, SIZE = N * 3 * HW };  /* blur taps 3 and 5 */
  t2s_error err = {0};
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, (size_t)1 << 20, &err);
  CHECK_MSG(ctx != NULL, "%s", err.msg);
  if (ctx == NULL) return;
  static float a[SIZE], b[SIZE], c[SIZE];
  for (int i = 0; i < SIZE; i++) a[i] = (float)((i * 37) % 256);
  memcpy(b, a, sizeof a);
  t2s_jitter_cfg jc = t2s_jitter_cfg_default();
  jc.prob = 1.0;
  t2s_jitter_params p[N];
  for (int i = 0; i < N; i++) p[i] = t2s_jitter_draw(&jc, key_of(3, 5 + i));
  t2s_color_jitter(a, N, H, W, &jc, key_of(3, 5));
  CHECK(t2s_images_jitter(ctx, b, N, HW, p) == T2S_OK);
  CHECK(memcmp(a, b, sizeof a) == 0);
  t2s_blur_cfg bc = t2s_blur_cfg_default();
  bc.prob = 1.0;
  CHECK(t2s_gaussian_blur(a, N, H, W, &bc, key_of(4, 0), &err) == T2S_OK);
  int kh = t2s_blur_kernel_size(H), kw = t2s_blur_kernel_size(W);
  for (int i = 0; i < N; i++) {
    float ky[16], kx[16];
    t2s_blur_params bp = t2s_blur_draw(&bc, key_of(4, i));
    int ry = t2s_blur_kernel1d(kh, bp.sigma, ky), rx = t2s_blur_kernel1d(kw, bp.sigma, kx);
    CHECK(t2s_images_blur(ctx, b + i * 3 * HW, H, W, ky, kh, ry, kx, kw, rx) == T2S_OK);
  }
  CHECK(memcmp(a, b, sizeof a) == 0);
  t2s_normalize(a, N, H, W);
  CHECK(t2s_images_normalize(ctx, b, N, HW, t2s_norm_mean, t2s_norm_std) == T2S_OK);
  CHECK(memcmp(a, b, sizeof a) == 0);
  CHECK(t2s_images_layout(ctx, a, c, N, 3, HW, 1) == T2S_OK);
  int bad = 0;
  for (int n = 0; n < N; n++)
    for (int ch = 0; ch < 3; ch++)
      for (int q = 0; q < HW; q++) bad += c[(n * HW + q) * 3 + ch] != a[(n * 3 + ch) * HW + q];
  CHECK_MSG(bad == 0, "%d elements of the NHWC copy are misplaced", bad);
  CHECK(t2s_images_layout(ctx, c, b, N, 3, HW, 0) == T2S_OK);
  CHECK(memcmp(a, b, sizeof a) == 0);
  t2s_ctx_destroy(ctx);
}

int main(void) {
  test_batch_steps();
  test_cat_max_ratio();
  test_flip_crop_pad();
  test_jitter();
  test_blur();
  test_normalize();
  return t2s_test_finish("test_augment");
}
