// ctest-labels: unit
/* Pseudo-target images. Fourier: in the frequency domain (FFTW in this test) the
 * output keeps the source phase everywhere, has exactly the paired target's amplitude
 * inside the low-frequency square and the source's outside; beta = 0 is the source.
 * Colour: the output's per-channel mean and std are the target's (RGB, and Lab with
 * a conversion written here). Pairing and the style gather do not depend on ranks.
 * The CPU slot behind the device dispatch gives the bits of the FFTW arithmetic (a copy
 * here); device images reach the CUDA slot (or its empty slot's message). */
#include <complex.h>
#include <fftw3.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "losses/pseudo_target.h"
#include "tests/harness.h"

enum { H = 32, W = 48, HW = H * W, WC = W / 2 + 1 };

/* smooth structure plus texture, a colour cast that depends on the seed, kept well
 * inside [0, 255] */
static t2s_tensor *image_batch(int n, int seed, float mean, float amp) {
  int64_t s[4] = {n, 3, H, W};
  t2s_tensor *t = t2s_test_tensor(4, s, -1.0f, 1.0f, (uint64_t)seed, 0);
  float *x = t2s_f32(t);
  for (int b = 0; b < n; b++)
    for (int c = 0; c < 3; c++)
      for (int r = 0; r < H; r++)
        for (int q = 0; q < W; q++) {
          int64_t i = ((int64_t)(b * 3 + c) * H + r) * W + q;
          double f = 0.13 * (seed + 1) + 0.7 * c + 0.4 * b;
          x[i] = (float)(mean + (amp > 0 ? 20.0 * (c - 1) * (seed % 2 ? 1 : -1) : 0.0) + amp * (0.5 * sin(0.2 * r + f) + 0.3 * cos(0.15 * q - f)) +
                         0.15 * amp * x[i]);
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

/* output image vs source and target images, every channel */
static void check_fda(const float *src, const float *tgt, const float *out, int b, const char *what) {
  static fftwf_complex S[H * WC], T[H * WC], Y[H * WC];
  for (int i = 0; i < 3 * HW; i++)
    CHECK_MSG(out[i] > 0.0f && out[i] < 255.0f, "%s: clipped at %d, the test images are too strong",
              what, i);
  for (int c = 0; c < 3; c++) {
    spectrum(src + c * HW, S);
    spectrum(tgt + c * HW, T);
    spectrum(out + c * HW, Y);
    double scale = cabsf(S[0]), changed = 0.0;
    int bad = 0;
    for (int r = 0; r < H; r++)
      for (int k = 0; k < WC; k++) {
        int ky = r <= H / 2 ? r : r - H, i = r * WC + k;
        int inside = abs(ky) < b && k < b;
        double complex s = S[i], want = s;
        if (inside) want = cabs(s) > 0 ? cabsf(T[i]) * s / cabs(s) : cabsf(T[i]);
        if (inside) changed = fmax(changed, cabs(want - s));
        if (cabs(Y[i] - want) > 2e-6 * scale && bad++ < 3)
          fprintf(stderr, "%s channel %d freq (%d, %d) %s: |Y - want| = %g (|S| %g, |T| %g)\n",
                  what, c, ky, k, inside ? "inside" : "outside", cabs(Y[i] - want), cabs(s),
                  cabsf(T[i]));
      }
    CHECK_MSG(bad == 0, "%s channel %d: %d frequencies differ", what, c, bad);
    /* the test means something: inside the square the amplitudes did change */
    CHECK_MSG(changed > 1e-3 * scale, "%s: the target's amplitudes equal the source's", what);
  }
}

/* The FFTW arithmetic of losses/pseudo_target.c as it was before the slot table (one
 * plan pair per size, FFTW_ESTIMATE, the same loops): the CPU slot behind the dispatch
 * must give these bits exactly (the CPU path of a run does not change). styles: the
 * source's paired style; a NULL style fills style_out with the image's own instead. */
static void fda_reference(const float *img, int b, const float *style, float *style_out,
                          float *dst) {
  float *real = fftwf_malloc(sizeof(float) * HW);
  fftwf_complex *freq = fftwf_malloc(sizeof(fftwf_complex) * H * WC);
  fftwf_plan fwd = fftwf_plan_dft_r2c_2d(H, W, real, freq, FFTW_ESTIMATE);
  fftwf_plan inv = fftwf_plan_dft_c2r_2d(H, W, freq, real, FFTW_ESTIMATE);
  for (int ch = 0; ch < 3; ch++) {
    memcpy(real, img + ch * HW, sizeof(float) * HW);
    fftwf_execute(fwd);
    for (int ky = -(b - 1); ky <= b - 1; ky++)
      for (int kx = 0; kx < b; kx++) {
        float *z = (float *)&freq[(ky >= 0 ? ky : ky + H) * WC + kx]; /* re, im */
        float amp = hypotf(z[0], z[1]);
        if (style == NULL) {
          *style_out++ = amp;
          continue;
        }
        float want = *style++;
        if (amp > 0.0f) {
          z[0] *= want / amp;
          z[1] *= want / amp;
        } else {
          z[0] = want;
          z[1] = 0.0f;
        }
      }
    if (style == NULL) continue;
    fftwf_execute(inv);
    float scale = 1.0f / (float)HW;
    for (int i = 0; i < HW; i++) {
      float v = real[i] * scale;
      dst[ch * HW + i] = v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v;
    }
  }
  fftwf_destroy_plan(fwd);
  fftwf_destroy_plan(inv);
  fftwf_free(real);
  fftwf_free(freq);
}

static t2s_status add_buffer(void *user, double *buf, size_t n, t2s_error *err) {
  const float *other = user;
  for (size_t i = 0; i < n; i++) buf[i] += other[i];
  return T2S_OK;
}

static void test_fourier(t2s_ctx *ctx) {
  t2s_pseudo_target_cfg cfg = t2s_pseudo_target_cfg_defaults();
  CHECK(cfg.method == T2S_PT_FOURIER && cfg.beta == 0.01f);
  cfg.beta = 0.1f;  /* b = 3 on 32 x 48 */
  t2s_pseudo_target *pt;
  CHECK(t2s_pseudo_target_create(&pt, &cfg, H, W, &ctx->err) == T2S_OK);
  int b = t2s_pseudo_target_half_width(cfg.beta, H, W);
  CHECK(b == 3 && t2s_pseudo_target_style_size(pt) == 3 * 5 * 3);
  enum { NS = 4, NT = 3 };
  t2s_tensor *xs = image_batch(NS, 1, 128.0f, 50.0f), *xt = image_batch(NT, 7, 110.0f, 30.0f);
  t2s_tensor *out = image_batch(NS, 0, 0.0f, 0.0f);
  int64_t size = t2s_pseudo_target_style_size(pt);
  float *styles = malloc(sizeof(float) * NT * size), *gathered = malloc(sizeof(float) * NT * size);
  CHECK(t2s_pseudo_target_style(ctx, pt, xt, styles) == T2S_OK);
  /* two ranks: targets 0-1 on rank 0, target 2 on rank 1; each fills its slots */
  float *rank1 = calloc((size_t)(NT * size), sizeof(float));
  CHECK(t2s_pseudo_target_gather_styles(ctx, pt, styles + 2 * size, 1, 2, NT, rank1) == T2S_OK);
  for (int64_t i = 0; i < 2 * size; i++) CHECK(rank1[i] == 0.0f);
  ctx->stat_allreduce = add_buffer;
  ctx->stat_user = rank1;
  CHECK(t2s_pseudo_target_gather_styles(ctx, pt, styles, 2, 0, NT, gathered) == T2S_OK);
  ctx->stat_allreduce = NULL;
  CHECK(memcmp(gathered, styles, sizeof(float) * NT * size) == 0);
  CHECK(t2s_pseudo_target_apply(ctx, pt, xs, gathered, NT, 5, 9, 20, out) == T2S_OK);
  int used[NT] = {0};
  for (int i = 0; i < NS; i++) {
    int64_t j = t2s_pseudo_target_pair(5, 9, 20 + i, NT);
    CHECK(j >= 0 && j < NT);
    used[j] = 1;
    char what[64];
    snprintf(what, sizeof what, "fda source %d target %lld", i, (long long)j);
    check_fda(t2s_f32(xs) + i * 3 * HW, t2s_f32(xt) + j * 3 * HW, t2s_f32(out) + i * 3 * HW, b,
              what);
    /* source i alone at its global index: the same image */
    int64_t s1[4] = {1, 3, H, W};
    t2s_tensor one, one_out;
    float *buf = malloc(sizeof(float) * 3 * HW);
    t2s_tensor_init(&one, T2S_F32, T2S_DEV_CPU, 4, s1, t2s_f32(xs) + i * 3 * HW);
    t2s_tensor_init(&one_out, T2S_F32, T2S_DEV_CPU, 4, s1, buf);
    CHECK(t2s_pseudo_target_apply(ctx, pt, &one, gathered, NT, 5, 9, 20 + i, &one_out) == T2S_OK);
    CHECK(memcmp(buf, t2s_f32(out) + i * 3 * HW, sizeof(float) * 3 * HW) == 0);
    free(buf);
  }
  CHECK(used[0] + used[1] + used[2] >= 2);  /* the pairing is not constant */
  /* the dispatch's CPU slot: the FFTW arithmetic bit for bit */
  float *ref_style = malloc(sizeof(float) * size), *ref_img = malloc(sizeof(float) * 3 * HW);
  for (int j = 0; j < NT; j++) {
    fda_reference(t2s_f32(xt) + j * 3 * HW, b, NULL, ref_style, NULL);
    CHECK_MSG(memcmp(ref_style, styles + j * size, sizeof(float) * size) == 0,
              "style of target %d: not the FFTW arithmetic's bits", j);
  }
  for (int i = 0; i < NS; i++) {
    int64_t j = t2s_pseudo_target_pair(5, 9, 20 + i, NT);
    fda_reference(t2s_f32(xs) + i * 3 * HW, b, gathered + j * size, NULL, ref_img);
    CHECK_MSG(memcmp(ref_img, t2s_f32(out) + i * 3 * HW, sizeof(float) * 3 * HW) == 0,
              "source %d: the output is not the FFTW arithmetic's bits", i);
  }
  free(ref_style);
  free(ref_img);
  t2s_pseudo_target_destroy(pt);

  /* beta = 0: the identity, bit for bit */
  cfg.beta = 0.0f;
  CHECK(t2s_pseudo_target_create(&pt, &cfg, H, W, &ctx->err) == T2S_OK);
  CHECK(t2s_pseudo_target_style_size(pt) == 0);
  CHECK(t2s_pseudo_target_apply(ctx, pt, xs, NULL, 0, 5, 9, 20, out) == T2S_OK);
  CHECK(memcmp(t2s_f32(out), t2s_f32(xs), sizeof(float) * NS * 3 * HW) == 0);
  t2s_pseudo_target_destroy(pt);
  free(styles);
  free(gathered);
  free(rank1);
  t2s_test_tensor_free(xs);
  t2s_test_tensor_free(xt);
  t2s_test_tensor_free(out);
}

/* CIE Lab (D65) from sRGB in [0, 255], written independently of the library */
static void lab_of(double r, double g, double b, double lab[3]) {
  double rgb[3] = {r / 255, g / 255, b / 255}, xyz[3];
  for (int i = 0; i < 3; i++)
    rgb[i] = rgb[i] > 0.04045 ? pow((rgb[i] + 0.055) / 1.055, 2.4) : rgb[i] / 12.92;
  static const double m[3][3] = {{0.4124564, 0.3575761, 0.1804375},
                                 {0.2126729, 0.7151522, 0.0721750},
                                 {0.0193339, 0.1191920, 0.9503041}};
  static const double white[3] = {0.95047, 1.0, 1.08883};
  for (int i = 0; i < 3; i++) {
    double t = (m[i][0] * rgb[0] + m[i][1] * rgb[1] + m[i][2] * rgb[2]) / white[i];
    xyz[i] = t > 216.0 / 24389.0 ? cbrt(t) : (24389.0 / 27.0 * t + 16.0) / 116.0;
  }
  lab[0] = 116 * xyz[1] - 16, lab[1] = 500 * (xyz[0] - xyz[1]), lab[2] = 200 * (xyz[1] - xyz[2]);
}

static void moments(const float *img, int lab, double mean[3], double sd[3]) {
  double s[3] = {0}, s2[3] = {0};
  for (int i = 0; i < HW; i++) {
    double v[3] = {img[i], img[HW + i], img[2 * HW + i]};
    if (lab) lab_of(v[0], v[1], v[2], v);
    for (int c = 0; c < 3; c++) s[c] += v[c], s2[c] += v[c] * v[c];
  }
  for (int c = 0; c < 3; c++) mean[c] = s[c] / HW, sd[c] = sqrt(s2[c] / HW - mean[c] * mean[c]);
}

static void test_color(t2s_ctx *ctx, t2s_pt_space space) {
  t2s_pseudo_target_cfg cfg = t2s_pseudo_target_cfg_defaults();
  cfg.method = T2S_PT_COLOR;
  cfg.color_space = space;
  t2s_pseudo_target *pt;
  CHECK(t2s_pseudo_target_create(&pt, &cfg, H, W, &ctx->err) == T2S_OK);
  t2s_tensor *xs = image_batch(1, 2, 120.0f, 40.0f), *xt = image_batch(1, 9, 100.0f, 30.0f);
  t2s_tensor *out = image_batch(1, 0, 0.0f, 0.0f);
  float style[6];
  CHECK(t2s_pseudo_target_style(ctx, pt, xt, style) == T2S_OK);
  CHECK(t2s_pseudo_target_apply(ctx, pt, xs, style, 1, 1, 2, 3, out) == T2S_OK);
  for (int i = 0; i < 3 * HW; i++) CHECK(t2s_f32(out)[i] > 0.0f && t2s_f32(out)[i] < 255.0f);
  int lab = space == T2S_PT_LAB;
  double mo[3], so[3], mt[3], st[3], ms[3], ss[3];
  moments(t2s_f32(out), lab, mo, so);
  moments(t2s_f32(xt), lab, mt, st);
  moments(t2s_f32(xs), lab, ms, ss);
  for (int c = 0; c < 3; c++) {
    CHECK_MSG(fabs(mo[c] - mt[c]) < 1e-3 * (1 + fabs(mt[c])) && fabs(so[c] - st[c]) < 1e-3 * (1 + st[c]),
              "%s channel %d: mean %g std %g, target %g %g", lab ? "lab" : "rgb", c, mo[c], so[c],
              mt[c], st[c]);
    CHECK(fabs(ms[c] - mt[c]) > 1.0);  /* source and target differ to begin with */
  }
  t2s_pseudo_target_destroy(pt);
  t2s_test_tensor_free(xs);
  t2s_test_tensor_free(xt);
  t2s_test_tensor_free(out);
}

/* Device images reach the CUDA slot: without the CUDA backend an empty slot that says
 * so; with it, the slot refuses a CPU context. The data pointer is never read. */
static void device_dispatch(t2s_ctx *ctx) {
  t2s_pseudo_target_cfg cfg = t2s_pseudo_target_cfg_defaults();
  cfg.beta = 0.1f;
  t2s_pseudo_target *pt;
  CHECK(t2s_pseudo_target_create(&pt, &cfg, H, W, &ctx->err) == T2S_OK);
  int64_t s[4] = {1, 3, H, W};
  float dummy, style[3 * 5 * 3];
  t2s_tensor x;
  t2s_tensor_init(&x, T2S_F32, T2S_DEV_CUDA, 4, s, &dummy);
  t2s_status st = t2s_pseudo_target_style(ctx, pt, &x, style);
  if (t2s_cuda_built())
    CHECK_MSG(st == T2S_ERR_INVALID && strstr(ctx->err.msg, "context runs on cpu"),
              "device images on a cpu context: %s", ctx->err.msg);
  else
    CHECK_MSG(st == T2S_ERR_UNSUPPORTED && strstr(ctx->err.msg, "pseudo_target_style on cuda") &&
                  strstr(ctx->err.msg, "no CUDA backend"),
              "device images without the CUDA backend: %s", ctx->err.msg);
  t2s_error_clear(&ctx->err);
  t2s_pseudo_target_destroy(pt);
}

int main(void) {
  t2s_error err = {0};
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 1 << 20, &err);
  test_fourier(ctx);
  device_dispatch(ctx);
  test_color(ctx, T2S_PT_RGB);
  test_color(ctx, T2S_PT_LAB);
  /* none: a copy */
  t2s_pseudo_target_cfg cfg = t2s_pseudo_target_cfg_defaults();
  cfg.method = T2S_PT_NONE;
  t2s_pseudo_target *pt;
  CHECK(t2s_pseudo_target_create(&pt, &cfg, H, W, &err) == T2S_OK);
  t2s_tensor *xs = image_batch(2, 3, 100.0f, 20.0f), *out = image_batch(2, 0, 0.0f, 0.0f);
  CHECK(t2s_pseudo_target_apply(ctx, pt, xs, NULL, 0, 1, 1, 0, out) == T2S_OK);
  CHECK(memcmp(t2s_f32(out), t2s_f32(xs), sizeof(float) * 2 * 3 * HW) == 0);
  t2s_pseudo_target_destroy(pt);
  t2s_test_tensor_free(xs);
  t2s_test_tensor_free(out);
  CHECK_MSG(t2s_ctx_ok(ctx), "%s", ctx->err.msg);
  t2s_ctx_destroy(ctx);
  return t2s_test_finish("test_losses_pseudo_target");
}
