// ctest-labels: unit
/* Source-style pseudo-targets (losses/pseudo_target_dg.h), checked in the frequency
 * domain with FFTW written here and with colour moments computed here:
 *   - the "other" image is never the image itself (n > 1), covers the others, and is
 *     the image itself for a batch of one;
 *   - fourier_source, amplitude_jitter 0: the output's amplitude inside the low-frequency
 *     square is exactly the other image's, outside it is the source's, and the phase is
 *     the source's everywhere (pixel-aligned: it keeps the source label);
 *   - amplitude_jitter a: inside the square amplitude / other's amplitude lies in
 *     [1 - a, 1 + a] and is not constant;
 *   - color_random: each output's per-channel mean and std are the drawn ones, inside
 *     mu_B +- m sd_B and sd_B (1 +- s) of the batch's average moments;
 *   - the styles of one global batch split over two "ranks" equal the one-rank styles. */
#include <complex.h>
#include <fftw3.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "losses/pseudo_target_dg.h"
#include "tests/harness.h"

enum { H = 32, W = 40, HW = H * W, WC = W / 2 + 1, N = 4 };

/* distinct smooth images well inside [0, 255] (no clipping) */
static t2s_tensor *images(int n, int seed) {
  int64_t s[4] = {n, 3, H, W};
  t2s_tensor *t = t2s_test_tensor(4, s, -1.0f, 1.0f, (uint64_t)seed, 0);
  float *x = t2s_f32(t);
  for (int b = 0; b < n; b++)
    for (int c = 0; c < 3; c++)
      for (int r = 0; r < H; r++)
        for (int q = 0; q < W; q++) {
          int64_t i = ((int64_t)(b * 3 + c) * H + r) * W + q;
          double f = 0.9 * b + 0.5 * c + 0.1 * seed;
          x[i] = (float)(110.0 + 15.0 * b - 10.0 * c + 30.0 * sin(0.21 * r + f) * cos(0.17 * q - 2 * f) +
                         3.0 * x[i]);
        }
  return t;
}

static void spectrum(const float *plane, fftwf_complex *out) {
  float *in = fftwf_malloc(sizeof(float) * HW);
  fftwf_complex *o = fftwf_malloc(sizeof(fftwf_complex) * H * WC);
  fftwf_plan p = fftwf_plan_dft_r2c_2d(H, W, in, o, FFTW_ESTIMATE);
  memcpy(in, plane, sizeof(float) * HW);
  fftwf_execute(p);
  memcpy(out, o, sizeof(fftwf_complex) * H * WC);
  fftwf_destroy_plan(p);
  fftwf_free(in);
  fftwf_free(o);
}

static void test_other(void) {
  int hits[5] = {0};
  for (int it = 0; it < 200; it++)
    for (int g = 0; g < 5; g++) {
      int64_t j = t2s_pseudo_target_other(3, it, g, 5);
      CHECK(j >= 0 && j < 5 && j != g);
      if (g == 0 && j >= 0 && j < 5) hits[j]++;
    }
  for (int j = 1; j < 5; j++) CHECK_MSG(hits[j] > 20, "other of image 0: %d hits on image %d of 200", hits[j], j);
  CHECK(t2s_pseudo_target_other(3, 7, 0, 1) == 0);
}

/* output vs source (phase) and other image (amplitude) in the square |ky|, kx < b */
static void check_fourier(const float *src, const float *other, const float *out, int b, float a,
                          const char *what) {
  static fftwf_complex S[H * WC], O[H * WC], Y[H * WC];
  for (int i = 0; i < 3 * HW; i++) CHECK_MSG(out[i] > 0.0f && out[i] < 255.0f, "%s: clipped at %d", what, i);
  double lo = 1e9, hi = -1e9;
  for (int c = 0; c < 3; c++) {
    spectrum(src + c * HW, S);
    spectrum(other + c * HW, O);
    spectrum(out + c * HW, Y);
    double scale = cabsf(S[0]);
    int bad = 0;
    for (int r = 0; r < H; r++)
      for (int k = 0; k < WC; k++) {
        int ky = r <= H / 2 ? r : r - H, i = r * WC + k;
        int inside = abs(ky) < b && k < b;
        double amp_s = cabsf(S[i]), amp_y = cabsf(Y[i]), amp_o = cabsf(O[i]);
        double tol = 3e-6 * scale;
        if (!inside) bad += cabs(Y[i] - S[i]) > tol;
        else {
          /* phase of the source: Y = |Y| S / |S| */
          if (amp_s > 1e-3 * scale) bad += cabs(Y[i] - amp_y * S[i] / amp_s) > tol;
          if (a == 0.0f) bad += fabs(amp_y - amp_o) > tol;
          else if (amp_o > 1e-2 * scale) lo = fmin(lo, amp_y / amp_o), hi = fmax(hi, amp_y / amp_o);
        }
      }
    CHECK_MSG(bad == 0, "%s channel %d: %d frequencies off the closed form", what, c, bad);
  }
  if (a > 0.0f)
    CHECK_MSG(lo >= 1.0 - a - 1e-4 && hi <= 1.0 + a + 1e-4 && hi - lo > 0.2 * a,
              "%s: amplitude ratios in [%g, %g], want inside [1 - %g, 1 + %g] and not constant", what, lo, hi, a, a);
}

static t2s_status add_buffer(void *user, double *buf, size_t n, t2s_error *err) {
  const float *other = user;
  for (size_t i = 0; i < n; i++) buf[i] += other[i];
  return T2S_OK;
}

/* the styles of images [offset, offset + n) of the batch x when the other rank holds the
 * rest: its slots of the gather come through the all-reduce hook */
static void gathered(t2s_ctx *ctx, t2s_pseudo_target *pt, const t2s_tensor *x, int offset, int n, float *global) {
  int64_t size = t2s_pseudo_target_style_size(pt);
  float *all = malloc(sizeof(float) * N * size), *rest = calloc((size_t)(N * size), sizeof(float));
  CHECK(t2s_pseudo_target_style(ctx, pt, x, all) == T2S_OK);
  for (int64_t i = 0; i < N * size; i++)
    if (i < offset * size || i >= (offset + n) * size) rest[i] = all[i];
  ctx->stat_allreduce = add_buffer;
  ctx->stat_user = rest;
  CHECK(t2s_pseudo_target_gather_styles(ctx, pt, all + offset * size, n, offset, N, global) == T2S_OK);
  ctx->stat_allreduce = NULL;
  CHECK(memcmp(global, all, sizeof(float) * N * size) == 0);
  free(all);
  free(rest);
}

static void test_fourier_source(t2s_ctx *ctx, float a) {
  t2s_pseudo_target_cfg cfg = {T2S_PT_FOURIER, 0.1f, T2S_PT_LAB};  /* b = 3 */
  t2s_pseudo_target *pt;
  CHECK(t2s_pseudo_target_create(&pt, &cfg, H, W, &ctx->err) == T2S_OK);
  int64_t size = t2s_pseudo_target_style_size(pt);
  t2s_tensor *x = images(N, 1), *out = images(N, 2);
  float *global = malloc(sizeof(float) * N * size), *mine = malloc(sizeof(float) * N * size);
  float *split = malloc(sizeof(float) * N * size);
  gathered(ctx, pt, x, 0, N, global);
  CHECK(t2s_pseudo_target_source_styles(pt, global, N, N, 0, a, 11, 5, mine, &ctx->err) == T2S_OK);
  /* rank 1 of two (images 2, 3): the same styles for its images */
  gathered(ctx, pt, x, 2, 2, global);
  CHECK(t2s_pseudo_target_source_styles(pt, global, N, 2, 2, a, 11, 5, split, &ctx->err) == T2S_OK);
  CHECK(memcmp(split, mine + 2 * size, sizeof(float) * 2 * size) == 0);
  CHECK(t2s_pseudo_target_apply_each(ctx, pt, x, mine, out) == T2S_OK);
  for (int g = 0; g < N; g++) {
    int64_t j = t2s_pseudo_target_other(11, 5, g, N);
    char what[64];
    snprintf(what, sizeof what, "fourier_source a=%g image %d (style of %lld)", a, g, (long long)j);
    check_fourier(t2s_f32(x) + g * 3 * HW, t2s_f32(x) + j * 3 * HW, t2s_f32(out) + g * 3 * HW, 3, a, what);
  }
  free(global);
  free(mine);
  free(split);
  t2s_test_tensor_free(x);
  t2s_test_tensor_free(out);
  t2s_pseudo_target_destroy(pt);
}

static void moments(const float *img, double mean[3], double sd[3]) {
  for (int c = 0; c < 3; c++) {
    double s = 0, s2 = 0;
    for (int i = 0; i < HW; i++) s += img[c * HW + i], s2 += (double)img[c * HW + i] * img[c * HW + i];
    mean[c] = s / HW, sd[c] = sqrt(s2 / HW - mean[c] * mean[c]);
  }
}

static void test_color_random(t2s_ctx *ctx) {
  t2s_pseudo_target_cfg cfg = {T2S_PT_COLOR, 0.0f, T2S_PT_RGB};
  t2s_pseudo_target *pt;
  CHECK(t2s_pseudo_target_create(&pt, &cfg, H, W, &ctx->err) == T2S_OK);
  t2s_tensor *x = images(N, 3), *out = images(N, 4);
  float global[6 * N], drawn[6 * N];
  const float m = 0.5f, s = 0.3f;
  gathered(ctx, pt, x, 0, N, global);
  CHECK(t2s_pseudo_target_random_colors(pt, global, N, N, 0, m, s, 2, 8, drawn, &ctx->err) == T2S_OK);
  CHECK(t2s_pseudo_target_apply_each(ctx, pt, x, drawn, out) == T2S_OK);
  double mu_b[3] = {0}, sd_b[3] = {0}, mo[3], so[3];
  for (int g = 0; g < N; g++) {
    moments(t2s_f32(x) + g * 3 * HW, mo, so);
    for (int c = 0; c < 3; c++) mu_b[c] += mo[c] / N, sd_b[c] += so[c] / N;
  }
  int differ = 0;
  for (int g = 0; g < N; g++) {
    moments(t2s_f32(out) + g * 3 * HW, mo, so);
    for (int c = 0; c < 3; c++) {
      CHECK_MSG(fabs(mo[c] - drawn[6 * g + c]) < 1e-2 && fabs(so[c] - drawn[6 * g + 3 + c]) < 1e-2,
                "image %d channel %d: mean %g std %g, drawn %g %g", g, c, mo[c], so[c], drawn[6 * g + c],
                drawn[6 * g + 3 + c]);
      CHECK(fabs(drawn[6 * g + c] - mu_b[c]) <= m * sd_b[c] + 1e-3);
      CHECK(drawn[6 * g + 3 + c] >= sd_b[c] * (1 - s) - 1e-3 && drawn[6 * g + 3 + c] <= sd_b[c] * (1 + s) + 1e-3);
      differ += fabs(drawn[6 * g + c] - drawn[c]) > 1e-3;
    }
  }
  CHECK_MSG(differ > 0, "every image drew the same colours");
  /* bad settings name themselves */
  CHECK(t2s_pseudo_target_random_colors(pt, global, N, N, 0, m, 1.5f, 2, 8, drawn, &ctx->err) == T2S_ERR_INVALID &&
        strstr(ctx->err.msg, "color_std_jitter"));
  t2s_error_clear(&ctx->err);
  t2s_test_tensor_free(x);
  t2s_test_tensor_free(out);
  t2s_pseudo_target_destroy(pt);
}

int main(void) {
  t2s_error err = {0};
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 1 << 20, &err);
  test_other();
  test_fourier_source(ctx, 0.0f);
  test_fourier_source(ctx, 0.3f);
  test_color_random(ctx);
  CHECK_MSG(t2s_ctx_ok(ctx), "%s", ctx->err.msg);
  t2s_ctx_destroy(ctx);
  return t2s_test_finish("test_losses_pseudo_target_dg");
}
