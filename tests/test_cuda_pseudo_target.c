// ctest-labels: cuda
// ctest-timeout: 300
/* The Fourier pseudo-target image on CUDA (cuFFT, losses/cuda/pseudo_target.cu)
 * against the CPU slot (FFTW, losses/pseudo_target.c), through the public calls with
 * device images on a CUDA context and host images on a CPU context:
 *
 * - styles (low-frequency amplitudes) of target batches, and the restyled source
 *   batch both from the CPU's styles (the apply alone) and from the GPU's own styles
 *   (style + apply end to end), on even, odd and mixed sizes, b = 1 (the DC term
 *   alone, the default beta on a 101 x 120 crop) up to b = 19, one to five images,
 *   NHWC (the backend's layout) and NCHW device images, NCHW in and NHWC out;
 * - more batch sizes than the plan cache holds, then the first again (eviction);
 * - beta = 0 and method none: the source, bit for bit; colour and a CPU context with
 *   device images: refused with a message naming the way out.
 *
 * Tolerances. Both sides run fp32 FFTs with different algorithms; their difference is
 * the FFT rounding, O(eps log2(H W)) of the signal's scale (eps = 6e-8, log2 <= 13):
 * a few 1e-6 of the spectrum's rms, which the styles are judged against (1e-5), and of
 * the pixels' rms (~150), judged at 1e-4 relative (0.015 grey levels). A wrong band,
 * pairing or normalisation moves pixels by whole grey levels: source and target have
 * different means (DC moves by ~40) and the test checks that the output did move.
 * Output buffers start NaN-filled between canary words, so every element must be
 * written and nothing outside; the source must come back unchanged.
 *
 * Skipped (exit 77) without a CUDA build or a visible GPU. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/device.h"
#include "losses/pseudo_target.h"
#include "tests/harness.h"

#define GUARD 64
#define CANARY 0xDEADBEEFu

/* ---- device images between canaries ------------------------------------------------ */

typedef struct dimg {
  float *base;          /* GUARD + n + GUARD floats on the device */
  int64_t n;
  t2s_tensor t;         /* header over base + GUARD */
} dimg;

/* index of (b, c, i) in a (N, 3, H, W) tensor stored in `layout` */
static int64_t at(t2s_layout layout, int64_t hw, int64_t b, int64_t c, int64_t i) {
  return layout == T2S_LAYOUT_NHWC ? (b * hw + i) * 3 + c : (b * 3 + c) * hw + i;
}

/* Uploads the host NCHW images (or NaN when NULL) in `layout`. */
static int dimg_make(dimg *d, const t2s_tensor *like, const float *nchw, t2s_layout layout) {
  t2s_error err = {0};
  int64_t n = t2s_numel(like), hw = like->shape[2] * like->shape[3];
  size_t total = (size_t)(n + 2 * GUARD);
  float *host = malloc(total * sizeof(float));
  uint32_t canary = CANARY;
  for (size_t i = 0; i < total; i++) memcpy(&host[i], &canary, sizeof canary);
  for (int64_t b = 0; b < like->shape[0]; b++)
    for (int64_t c = 0; c < 3; c++)
      for (int64_t i = 0; i < hw; i++)
        host[GUARD + at(layout, hw, b, c, i)] = nchw ? nchw[(b * 3 + c) * hw + i] : NAN;
  d->n = n;
  d->base = t2s_device_malloc(T2S_DEV_CUDA, total * sizeof(float), &err);
  int ok = d->base != NULL && t2s_device_copy(T2S_DEV_CUDA, d->base, T2S_DEV_CPU, host,
                                              total * sizeof(float), &err) == T2S_OK;
  free(host);
  CHECK_MSG(ok, "device images of %lld floats: %s", (long long)n, err.msg);
  t2s_tensor_init(&d->t, T2S_F32, T2S_DEV_CUDA, 4, like->shape, d->base ? d->base + GUARD : NULL);
  d->t.layout = layout;
  return ok;
}

/* Downloads into host NCHW order; checks the canaries. */
static int dimg_read(const dimg *d, float *nchw, const char *label) {
  t2s_error err = {0};
  size_t total = (size_t)(d->n + 2 * GUARD);
  float *host = malloc(total * sizeof(float));
  int ok = t2s_device_copy(T2S_DEV_CPU, host, T2S_DEV_CUDA, d->base, total * sizeof(float),
                           &err) == T2S_OK;
  CHECK_MSG(ok, "%s: reading back: %s", label, err.msg);
  if (ok) {
    int bad = 0;
    for (size_t i = 0; i < total; i++) {
      if (i == GUARD) i += (size_t)d->n;
      if (i >= total) break;
      uint32_t v;
      memcpy(&v, &host[i], sizeof v);
      bad += v != CANARY;
    }
    CHECK_MSG(bad == 0, "%s: %d canary word(s) around the images were overwritten", label, bad);
    int64_t hw = d->t.shape[2] * d->t.shape[3];
    for (int64_t b = 0; b < d->t.shape[0]; b++)
      for (int64_t c = 0; c < 3; c++)
        for (int64_t i = 0; i < hw; i++)
          nchw[(b * 3 + c) * hw + i] = host[GUARD + at(d->t.layout, hw, b, c, i)];
    ok = bad == 0;
  }
  free(host);
  return ok;
}

static void dimg_free(dimg *d) {
  t2s_device_free(T2S_DEV_CUDA, d->base);
  d->base = NULL;
}

/* Worst |got - ref| / max(|ref|, rms(ref)); NaN counts as infinite. */
static void expect_close(const char *label, const char *what, const float *got, const float *ref,
                         int64_t n, double tol) {
  double ss = 0.0, worst = 0.0;
  int64_t where = -1;
  for (int64_t i = 0; i < n; i++) ss += (double)ref[i] * ref[i];
  double rms = n ? fmax(sqrt(ss / (double)n), 1e-30) : 1.0;
  for (int64_t i = 0; i < n; i++) {
    double d = fabs((double)got[i] - ref[i]) / fmax(fabs(ref[i]), rms);
    if (!(d <= worst)) worst = isnan(d) ? INFINITY : d, where = i;
  }
  CHECK_MSG(worst <= tol, "%s: %s: relative error %.3g at element %lld (cuda %.9g, cpu %.9g), "
            "tolerance %.1g", label, what, worst, (long long)where, where >= 0 ? got[where] : 0.0,
            where >= 0 ? ref[where] : 0.0, tol);
}

/* ---- one case -------------------------------------------------------------------------- */

typedef struct pt_case {
  int H, W;
  float beta;
  int n_src, n_tgt;
  t2s_layout in_layout, out_layout;
} pt_case;

static const char *layout_name(t2s_layout l) { return l == T2S_LAYOUT_NHWC ? "nhwc" : "nchw"; }

/* Runs one case; with `pt_gpu` given, on that object (its plan cache) instead of a new one. */
static void run_case(t2s_ctx *cpu, t2s_ctx *gpu, const pt_case *k, t2s_pseudo_target *pt_gpu) {
  char label[128];
  snprintf(label, sizeof label, "%dx%d beta %g, %d sources, %d targets, %s -> %s", k->H, k->W,
           k->beta, k->n_src, k->n_tgt, layout_name(k->in_layout), layout_name(k->out_layout));
  t2s_pseudo_target_cfg cfg = t2s_pseudo_target_cfg_defaults();
  cfg.beta = k->beta;
  t2s_pseudo_target *pc = NULL, *pg = pt_gpu;
  t2s_error err = {0};
  CHECK_MSG(t2s_pseudo_target_create(&pc, &cfg, k->H, k->W, &err) == T2S_OK &&
                (pg || t2s_pseudo_target_create(&pg, &cfg, k->H, k->W, &err) == T2S_OK),
            "%s: create: %s", label, err.msg);
  if (pc == NULL || pg == NULL) return;
  int64_t ss[4] = {k->n_src, 3, k->H, k->W}, ts[4] = {k->n_tgt, 3, k->H, k->W};
  /* different means: the DC term (and the pixels) must move */
  t2s_tensor *xs = t2s_test_tensor(4, ss, 20.0f, 200.0f, (uint64_t)(k->H * 100 + k->W), 0);
  t2s_tensor *xt = t2s_test_tensor(4, ts, 60.0f, 240.0f, (uint64_t)(k->H * 100 + k->W + 1), 0);
  t2s_tensor *out = t2s_test_tensor(4, ss, 0.0f, 0.0f, 1, 0);
  int64_t size = t2s_pseudo_target_style_size(pc), n_img = t2s_numel(xs);
  float *st_cpu = calloc((size_t)(k->n_tgt * size + 1), sizeof(float));
  float *st_gpu = calloc((size_t)(k->n_tgt * size + 1), sizeof(float));
  float *got = malloc(sizeof(float) * (size_t)n_img), *got2 = malloc(sizeof(float) * (size_t)n_img);
  const uint64_t seed = 17;
  const int64_t iter = 4, offset = 6;

  CHECK_MSG(t2s_pseudo_target_style(cpu, pc, xt, st_cpu) == T2S_OK &&
                t2s_pseudo_target_apply(cpu, pc, xs, st_cpu, k->n_tgt, seed, iter, offset, out) ==
                    T2S_OK,
            "%s: cpu: %s", label, cpu->err.msg);
  dimg ds, dt, dout, dout2;
  dimg_make(&ds, xs, t2s_f32(xs), k->in_layout);
  dimg_make(&dt, xt, t2s_f32(xt), k->in_layout);
  dimg_make(&dout, xs, NULL, k->out_layout);
  dimg_make(&dout2, xs, NULL, k->out_layout);
  /* the apply alone, from the CPU's styles; then style + apply on the GPU */
  int ok = t2s_pseudo_target_apply(gpu, pg, &ds.t, st_cpu, k->n_tgt, seed, iter, offset,
                                   &dout.t) == T2S_OK &&
           t2s_pseudo_target_style(gpu, pg, &dt.t, st_gpu) == T2S_OK &&
           t2s_pseudo_target_apply(gpu, pg, &ds.t, st_gpu, k->n_tgt, seed, iter, offset,
                                   &dout2.t) == T2S_OK &&
           t2s_device_sync(T2S_DEV_CUDA, &gpu->err) == T2S_OK;
  CHECK_MSG(ok, "%s: cuda: %s", label, gpu->err.msg);
  if (ok) {
    expect_close(label, "styles", st_gpu, st_cpu, k->n_tgt * size, 1e-5);
    if (dimg_read(&dout, got, label)) expect_close(label, "apply", got, t2s_f32(out), n_img, 1e-4);
    if (dimg_read(&dout2, got2, label))
      expect_close(label, "style + apply", got2, t2s_f32(out), n_img, 1e-4);
    float *back = malloc(sizeof(float) * (size_t)n_img);
    if (dimg_read(&ds, back, label))
      CHECK_MSG(memcmp(back, t2s_f32(xs), sizeof(float) * (size_t)n_img) == 0,
                "%s: the source images changed", label);
    free(back);
    double moved = 0.0;
    for (int64_t i = 0; i < n_img; i++) moved = fmax(moved, fabs(t2s_f32(out)[i] - t2s_f32(xs)[i]));
    if (size > 0)
      CHECK_MSG(moved > 1.0, "%s: the output is the source (max change %g)", label, moved);
    else  /* b = 0: the identity, as on the CPU */
      CHECK_MSG(moved == 0.0 && memcmp(got, t2s_f32(xs), sizeof(float) * (size_t)n_img) == 0,
                "%s: b = 0 but the output is not the source", label);
  }
  t2s_ctx_end_pass(gpu);
  t2s_ctx_end_pass(cpu);
  dimg_free(&ds), dimg_free(&dt), dimg_free(&dout), dimg_free(&dout2);
  free(st_cpu), free(st_gpu), free(got), free(got2);
  t2s_test_tensor_free(xs), t2s_test_tensor_free(xt), t2s_test_tensor_free(out);
  t2s_pseudo_target_destroy(pc);
  if (pt_gpu == NULL) t2s_pseudo_target_destroy(pg);
  printf("done %s\n", label);
}

static void shapes(t2s_ctx *cpu, t2s_ctx *gpu) {
  const t2s_layout C = T2S_LAYOUT_NCHW, L = T2S_LAYOUT_NHWC;
  const pt_case cases[] = {
      {32, 48, 0.1f, 3, 4, L, L},     /* even sizes, b = 3 */
      {31, 45, 0.2f, 2, 3, L, L},     /* odd sizes, b = 6 */
      {17, 9, 0.3f, 4, 2, L, L},      /* odd, W < H, b = 2 */
      {33, 20, 0.45f, 1, 1, L, L},    /* odd H, even W, b = 9: most of the half spectrum */
      {64, 64, 0.3f, 2, 5, C, C},     /* NCHW device images, b = 19 */
      {101, 120, 0.01f, 2, 2, C, L},  /* the default beta: b = 1, DC only; NCHW in, NHWC out */
      {1, 7, 0.3f, 5, 3, L, C},       /* one row: b = 0 (identity) */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(cpu, gpu, &cases[i], NULL);
}

/* Five batch sizes on one object (its cache holds four), then the first again. */
static void plan_cache(t2s_ctx *cpu, t2s_ctx *gpu) {
  t2s_pseudo_target_cfg cfg = t2s_pseudo_target_cfg_defaults();
  cfg.beta = 0.15f;
  t2s_pseudo_target *pg;
  t2s_error err = {0};
  CHECK_MSG(t2s_pseudo_target_create(&pg, &cfg, 24, 30, &err) == T2S_OK, "create: %s", err.msg);
  for (int n = 1; n <= 6; n++) {
    pt_case k = {24, 30, 0.15f, n <= 5 ? n : 1, 3, T2S_LAYOUT_NHWC, T2S_LAYOUT_NHWC};
    run_case(cpu, gpu, &k, pg);
  }
  t2s_pseudo_target_destroy(pg);
}

/* beta = 0 and none copy the source bit for bit (any layouts); colour and a CPU
 * context with device images are refused. */
static void identity_and_refusals(t2s_ctx *cpu, t2s_ctx *gpu) {
  int64_t s[4] = {2, 3, 9, 14};
  t2s_tensor *xs = t2s_test_tensor(4, s, 0.0f, 255.0f, 99, 0);
  int64_t n = t2s_numel(xs);
  float *got = malloc(sizeof(float) * (size_t)n);
  for (int m = 0; m < 2; m++) {
    t2s_pseudo_target_cfg cfg = t2s_pseudo_target_cfg_defaults();
    if (m == 0) cfg.beta = 0.0f;
    else cfg.method = T2S_PT_NONE;
    t2s_pseudo_target *pg;
    t2s_error err = {0};
    CHECK(t2s_pseudo_target_create(&pg, &cfg, 9, 14, &err) == T2S_OK);
    dimg ds, dout;
    dimg_make(&ds, xs, t2s_f32(xs), T2S_LAYOUT_NCHW);
    dimg_make(&dout, xs, NULL, T2S_LAYOUT_NHWC);
    CHECK_MSG(t2s_pseudo_target_style(gpu, pg, &ds.t, NULL) == T2S_OK &&
                  t2s_pseudo_target_apply(gpu, pg, &ds.t, NULL, 0, 1, 2, 3, &dout.t) == T2S_OK,
              "%s on cuda: %s", m ? "none" : "beta 0", gpu->err.msg);
    if (dimg_read(&dout, got, "identity"))
      CHECK_MSG(memcmp(got, t2s_f32(xs), sizeof(float) * (size_t)n) == 0,
                "%s on cuda: the output is not the source", m ? "none" : "beta 0");
    t2s_ctx_end_pass(gpu);
    dimg_free(&ds), dimg_free(&dout);
    t2s_pseudo_target_destroy(pg);
  }

  t2s_pseudo_target_cfg cfg = t2s_pseudo_target_cfg_defaults();
  cfg.method = T2S_PT_COLOR;
  t2s_pseudo_target *pg;
  t2s_error err = {0};
  CHECK(t2s_pseudo_target_create(&pg, &cfg, 9, 14, &err) == T2S_OK);
  dimg ds;
  dimg_make(&ds, xs, t2s_f32(xs), T2S_LAYOUT_NHWC);
  float style[12];
  CHECK(t2s_pseudo_target_style(gpu, pg, &ds.t, style) == T2S_ERR_UNSUPPORTED);
  CHECK_MSG(strstr(gpu->err.msg, "'color'") && strstr(gpu->err.msg, "host images"),
            "colour on cuda: %s", gpu->err.msg);
  t2s_error_clear(&gpu->err);
  t2s_pseudo_target_destroy(pg);
  cfg.method = T2S_PT_FOURIER;
  CHECK(t2s_pseudo_target_create(&pg, &cfg, 9, 14, &err) == T2S_OK);
  CHECK(t2s_pseudo_target_style(cpu, pg, &ds.t, style) == T2S_ERR_INVALID);
  CHECK_MSG(strstr(cpu->err.msg, "context runs on cpu"), "device images on a cpu context: %s",
            cpu->err.msg);
  t2s_error_clear(&cpu->err);
  t2s_pseudo_target_destroy(pg);
  dimg_free(&ds);
  free(got);
  t2s_test_tensor_free(xs);
  printf("done identity and refusals\n");
}

int main(void) {
  if (!t2s_cuda_built()) {
    printf("test_cuda_pseudo_target: skipped: this build has no CUDA backend (configure with "
           "-DT2S_CUDA=ON)\n");
    return 77;
  }
  if (t2s_cuda_device_count() == 0) {
    printf("test_cuda_pseudo_target: skipped: no CUDA device is visible\n");
    return 77;
  }
  t2s_error err = {0};
  t2s_ctx *cpu = t2s_ctx_create(T2S_DEV_CPU, 16 << 20, &err);
  t2s_ctx *gpu = cpu ? t2s_ctx_create(T2S_DEV_CUDA, 64 << 20, &err) : NULL;
  if (gpu == NULL) {
    fprintf(stderr, "test_cuda_pseudo_target: creating the contexts: %s\n", err.msg);
    t2s_ctx_destroy(cpu);
    return 1;
  }
  shapes(cpu, gpu);
  plan_cache(cpu, gpu);
  identity_and_refusals(cpu, gpu);
  t2s_ctx_destroy(gpu);
  t2s_ctx_destroy(cpu);
  return t2s_test_finish("test_cuda_pseudo_target");
}
