/* t2sda_bench: timing of whole training steps (and later data, all-reduce and
 * scaling benchmarks).
 *
 *   t2sda_bench step [--depth 50] [--base-channels 64] [--batch 2] [--crop W H]
 *                    [--classes 19] [--iters 5] [--warmup 2] [--threads 2] [--json FILE]
 *
 * A step is forward + loss + backward + SGD update of ResNet-V1c DeepLab-V2 on
 * random data, timed over --iters runs after --warmup. FLOPs are counted by the
 * GEMM-shaped ops during the forward (2 x multiply-adds); a training step is
 * reported as 3x the forward (backward = data + weight gradients). */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/nn/segmentor.h"
#include "core/optim.h"
#include "core/rng.h"
#include "core/version.h"

typedef struct bench_opts {
  int depth, base_channels, batch, crop_w, crop_h, classes, iters, warmup, threads;
  const char *json;
} bench_opts;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int parse_int(const char *flag, const char *s, int lo, int hi, int *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *end || v < lo || v > hi) {
    fprintf(stderr, "t2sda_bench: %s expects an integer in %d..%d, got '%s'\n", flag, lo, hi, s);
    return 0;
  }
  *out = (int)v;
  return 1;
}

static int parse_args(int argc, char **argv, bench_opts *o) {
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    int need = (strcmp(a, "--crop") == 0) ? 2 : 1;
    if (strncmp(a, "--", 2) == 0 && i + need >= argc) {
      fprintf(stderr, "t2sda_bench: %s needs %d value(s)\n", a, need);
      return 0;
    }
    int ok = 1;
    if (strcmp(a, "--depth") == 0) ok = parse_int(a, argv[++i], 18, 152, &o->depth);
    else if (strcmp(a, "--base-channels") == 0) ok = parse_int(a, argv[++i], 4, 256, &o->base_channels);
    else if (strcmp(a, "--batch") == 0) ok = parse_int(a, argv[++i], 1, 256, &o->batch);
    else if (strcmp(a, "--classes") == 0) ok = parse_int(a, argv[++i], 2, 255, &o->classes);
    else if (strcmp(a, "--iters") == 0) ok = parse_int(a, argv[++i], 1, 100000, &o->iters);
    else if (strcmp(a, "--warmup") == 0) ok = parse_int(a, argv[++i], 0, 100000, &o->warmup);
    else if (strcmp(a, "--threads") == 0) ok = parse_int(a, argv[++i], 1, 1024, &o->threads);
    else if (strcmp(a, "--crop") == 0) {
      ok = parse_int(a, argv[i + 1], 16, 8192, &o->crop_w) && parse_int(a, argv[i + 2], 16, 8192, &o->crop_h);
      i += 2;
    } else if (strcmp(a, "--json") == 0) o->json = argv[++i];
    else {
      fprintf(stderr, "t2sda_bench: unknown option '%s' (see the usage at the top of tools/t2sda_bench.c)\n", a);
      return 0;
    }
    if (!ok) return 0;
  }
  return 1;
}

/* Random image (normal) and a label map of class blocks with some ignored pixels. */
static void fill_batch(float *img, uint8_t *lbl, const bench_opts *o) {
  t2s_rng_key key = t2s_rng_key_make(7, 0, 0, 0);
  int64_t n_img = (int64_t)o->batch * 3 * o->crop_h * o->crop_w;
  for (int64_t i = 0; i < n_img; i++) img[i] = t2s_rng_normal(key, (uint64_t)i);
  for (int b = 0; b < o->batch; b++)
    for (int y = 0; y < o->crop_h; y++)
      for (int x = 0; x < o->crop_w; x++) {
        int c = ((y / 16) * 7 + (x / 16) * 3 + b) % (o->classes + 1);
        lbl[((int64_t)b * o->crop_h + y) * o->crop_w + x] = (uint8_t)(c == o->classes ? 255 : c);
      }
}

static int bench_step(const bench_opts *o) {
  openblas_set_num_threads(o->threads);
  t2s_model_cfg cfg = t2s_model_default_cfg();
  cfg.resnet.depth = o->depth;
  cfg.resnet.base_channels = o->base_channels;
  cfg.num_classes = o->classes;
  t2s_error err = {0};
  t2s_segmentor m;
  if (t2s_segmentor_build(&m, &cfg, T2S_DEV_CPU, 1, &err) != T2S_OK) {
    fprintf(stderr, "t2sda_bench: %s\n", err.msg);
    return 1;
  }
  t2s_params_set_lr_mult(&m.params, "decode_head.", 10.0f);
  t2s_optim_cfg oc = {T2S_OPTIM_SGD, 2.5e-3, 0.9, 5e-4, 0.9, 0.999, 1e-8, 0};
  t2s_optim opt;
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 256 << 20, &err);
  if (ctx == NULL || t2s_optim_init(&opt, &m.params, &oc, &err) != T2S_OK) {
    fprintf(stderr, "t2sda_bench: %s\n", err.msg);
    return 1;
  }
  int64_t ishape[4] = {o->batch, 3, o->crop_h, o->crop_w}, lshape[3] = {o->batch, o->crop_h, o->crop_w};
  float *img = malloc((size_t)(o->batch * 3 * o->crop_h * o->crop_w) * sizeof(float));
  uint8_t *lbl = malloc((size_t)(o->batch * o->crop_h * o->crop_w));
  fill_batch(img, lbl, o);
  t2s_tensor image, label;
  t2s_tensor_init(&image, T2S_F32, T2S_DEV_CPU, 4, ishape, img);
  t2s_tensor_init(&label, T2S_U8, T2S_DEV_CPU, 3, lshape, lbl);

  int total = o->warmup + o->iters;
  double *times = calloc((size_t)total, sizeof(double)), fwd_flops = 0, loss_v = 0;
  for (int it = 0; it < total; it++) {
    double t0 = now_s();
    ctx->flops = 0;
    t2s_params_zero_grad(&m.params, &err);
    t2s_seg_out out;
    t2s_segmentor_forward(ctx, &m, &image, &out);
    t2s_tensor *up = t2s_resize_bilinear(ctx, out.logits, o->crop_h, o->crop_w, 0);
    t2s_ce_args ce = {255, T2S_CE_MEAN_VALID, 0};
    t2s_tensor *loss = t2s_cross_entropy(ctx, up, &label, NULL, NULL, &ce);
    fwd_flops = ctx->flops;
    if (t2s_backward(ctx, loss, 1.0f) != T2S_OK ||
        t2s_optim_step(&opt, oc.lr, NULL, &ctx->err) != T2S_OK) {
      fprintf(stderr, "t2sda_bench: step %d failed: %s\n", it, ctx->err.msg);
      return 1;
    }
    loss_v = t2s_f32(loss)[0];
    t2s_ctx_end_pass(ctx);
    times[it] = now_s() - t0;
  }
  qsort(times + o->warmup, (size_t)o->iters, sizeof(double), cmp_double);
  double med = times[o->warmup + o->iters / 2], best = times[o->warmup];
  double step_flops = 3.0 * fwd_flops;
  size_t peak = t2s_arena_peak(ctx->pass);
  printf("t2sda step: resnet%d-v1c deeplabv2 (base %d), batch %d, crop %dx%d, %d classes, %d thread(s)\n",
         o->depth, o->base_channels, o->batch, o->crop_w, o->crop_h, o->classes, o->threads);
  printf("  %.1f ms/iter median (best %.1f) over %d iters | %.2f images/s | %.1f GFLOP/iter | "
         "%.1f GFLOP/s | activations %.0f MiB | loss %.4f\n",
         med * 1e3, best * 1e3, o->iters, o->batch / med, step_flops * 1e-9, step_flops / med * 1e-9,
         (double)peak / (1 << 20), loss_v);
  char line[512];
  snprintf(line, sizeof line,
           "{\"impl\": \"t2sda\", \"build\": \"%s\", \"depth\": %d, \"base_channels\": %d, \"batch\": %d, "
           "\"crop\": [%d, %d], \"threads\": %d, \"ms_per_iter\": %.3f, \"images_per_s\": %.4f, "
           "\"gflop_per_iter\": %.3f, \"gflops\": %.3f}",
           T2S_VERSION_STRING, o->depth, o->base_channels, o->batch, o->crop_w, o->crop_h, o->threads,
           med * 1e3, o->batch / med, step_flops * 1e-9, step_flops / med * 1e-9);
  printf("%s\n", line);
  if (o->json) {
    FILE *f = fopen(o->json, "a");
    if (f == NULL) {
      fprintf(stderr, "t2sda_bench: cannot append to %s: %s\n", o->json, strerror(errno));
      return 1;
    }
    fprintf(f, "%s\n", line);
    fclose(f);
  }
  free(times);
  free(img);
  free(lbl);
  t2s_optim_free(&opt);
  t2s_ctx_destroy(ctx);
  t2s_segmentor_free(&m);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    printf("usage: t2sda_bench step [--depth 50] [--base-channels 64] [--batch 2] [--crop W H]\n"
           "                        [--classes 19] [--iters 5] [--warmup 2] [--threads 2] [--json FILE]\n");
    return argc < 2 ? 2 : 0;
  }
  bench_opts o = {50, 64, 2, 256, 256, 19, 5, 2, 2, NULL};
  if (strcmp(argv[1], "step") == 0) {
    if (!parse_args(argc, argv, &o)) return 2;
    return bench_step(&o);
  }
  fprintf(stderr, "t2sda_bench: unknown benchmark '%s' (available: step)\n", argv[1]);
  return 2;
}
