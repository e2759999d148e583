/* t2sda_bench: timing of whole training steps, of every op, data loading, all-reduce
 * and scaling (tools/bench/bench_ops.c, bench_data.c, bench_comm.c and bench_scaling.c;
 * t2s_bench is linked by this program and test_op_table alone).
 *
 *   t2sda_bench step [--depth 50] [--base-channels 64] [--batch 2] [--crop W H]
 *                    [--classes 19] [--iters 5] [--warmup 2] [--threads 2] [--json FILE]
 *                    [--backbone resnet_v1c|mit_b0..mit_b5] [--head dlv2|daformer_sepaspp|...]
 *                    [--device cpu|cuda] [--precision fp32|tf32|bf16] [--profile]
 *                    [--no-liveness]
 *   t2sda_bench iteration CONFIG [--crop W H] [--batch 2] [--iters 2] [--threads 2]
 *                    [--no-liveness] [--set key=value ...]   (tools/bench/bench_iteration.c)
 *
 * --profile adds the time of every op type (forward and backward, host time of the
 * slots: on CUDA, launch time), its share of the step, and the pass arena's peak;
 * --no-liveness keeps every activation to the end of the pass (ctx->keep_all).
 *
 * A step is forward + loss + backward + SGD update of ResNet-V1c DeepLab-V2 on
 * random data, timed over --iters runs after --warmup. FLOPs are counted by the
 * GEMM-shaped ops during the forward (2 x multiply-adds); a training step is
 * reported as 3x the forward (backward = data + weight gradients). */
#include <cblas.h>
#include <omp.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/formats/checkpoint.h"
#include "core/device.h"
#include "core/nn/segmentor.h"
#include "core/optim.h"
#include "core/rng.h"
#include "core/version.h"
#include "tools/bench/bench_data.h"
#include "tools/bench/bench_iteration.h"
#include "tools/bench/bench_ops.h"
#include "tools/bench/bench_comm.h"
#include "tools/bench/bench_scaling.h"
#include "tools/bench/bench_peak.h"

typedef struct bench_opts {
  int depth, base_channels, batch, crop_w, crop_h, classes, iters, warmup, threads;
  const char *json;
  const char *backbone, *head;  /* NULL: resnet_v1c + dlv2; mit_b0..mit_b5, daformer_sepaspp... */
  t2s_device device;            /* --device cpu|cuda */
  t2s_precision precision;      /* --precision fp32|tf32|bf16 (CUDA) */
  int profile;                  /* --profile: time per op type and the share of the step */
  int keep_all;                 /* --no-liveness: keep every activation to the end of the pass */
} bench_opts;

static const char *precision_name(t2s_precision p) {
  return p == T2S_PRECISION_TF32 ? "tf32" : p == T2S_PRECISION_BF16 ? "bf16" : "fp32";
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
    if (strcmp(a, "--profile") == 0 || strcmp(a, "--no-liveness") == 0) {
      *(a[2] == 'p' ? &o->profile : &o->keep_all) = 1;
      continue;
    }
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
    else if (strcmp(a, "--backbone") == 0) o->backbone = argv[++i];
    else if (strcmp(a, "--head") == 0) o->head = argv[++i];
    else if (strcmp(a, "--device") == 0) {
      const char *v = argv[++i];
      ok = strcmp(v, "cpu") == 0 || strcmp(v, "cuda") == 0;
      o->device = strcmp(v, "cuda") == 0 ? T2S_DEV_CUDA : T2S_DEV_CPU;
      if (!ok) fprintf(stderr, "t2sda_bench: --device expects cpu or cuda, got '%s'\n", v);
    } else if (strcmp(a, "--precision") == 0) {
      const char *v = argv[++i];
      ok = strcmp(v, "fp32") == 0 || strcmp(v, "tf32") == 0 || strcmp(v, "bf16") == 0;
      o->precision = strcmp(v, "tf32") == 0   ? T2S_PRECISION_TF32
                     : strcmp(v, "bf16") == 0 ? T2S_PRECISION_BF16
                                              : T2S_PRECISION_FP32;
      if (!ok) fprintf(stderr, "t2sda_bench: --precision expects fp32, tf32 or bf16, got '%s'\n", v);
    } else {
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

/* --backbone mit_b0..mit_b5 and --head dlv2|daformer_sepaspp|daformer_conv1|segformer_mlp. */
static int model_flags(const bench_opts *o, t2s_model_cfg *cfg, t2s_error *err) {
  static const char *const heads[] = {"dlv2", "daformer_sepaspp", "daformer_conv1", "segformer_mlp"};
  if (o->backbone && strcmp(o->backbone, "resnet_v1c") != 0) {
    if (t2s_mit_cfg_by_name(o->backbone, &cfg->mit, err) != T2S_OK) return 0;
    cfg->backbone = T2S_BACKBONE_MIT;
    cfg->head = T2S_HEAD_DAFORMER_SEPASPP;
  }
  for (int k = 0; o->head && k < 4; k++)
    if (strcmp(o->head, heads[k]) == 0) cfg->head = (t2s_head_type)k;
  if (o->head && strcmp(o->head, heads[cfg->head]) != 0) {
    t2s_error_set(err, T2S_ERR_INVALID, "--head %s: use dlv2, daformer_sepaspp, daformer_conv1 "
                  "or segformer_mlp", o->head);
    return 0;
  }
  return 1;
}

/* The batch on the GPU: the image transposed to NHWC on the host (the CUDA
 * activation layout), the labels as they are. Repoints the tensors. */
static t2s_status upload_batch(t2s_tensor *image, t2s_tensor *label, void **dimg, void **dlbl,
                               t2s_error *err) {
  int64_t n = image->shape[0], c = image->shape[1], hw = image->shape[2] * image->shape[3];
  size_t ibytes = (size_t)(n * c * hw) * sizeof(float), lbytes = (size_t)t2s_numel(label);
  float *nhwc = malloc(ibytes);
  if (nhwc == NULL) return t2s_error_set(err, T2S_ERR_NOMEM, "out of host memory (%zu bytes)", ibytes);
  for (int64_t b = 0; b < n; b++)
    for (int64_t ch = 0; ch < c; ch++)
      for (int64_t p = 0; p < hw; p++)
        nhwc[(b * hw + p) * c + ch] = t2s_f32(image)[(b * c + ch) * hw + p];
  *dimg = t2s_device_malloc(T2S_DEV_CUDA, ibytes, err);
  *dlbl = *dimg ? t2s_device_malloc(T2S_DEV_CUDA, lbytes, err) : NULL;
  t2s_status st = *dlbl ? T2S_OK : err->status;
  if (st == T2S_OK) st = t2s_device_copy(T2S_DEV_CUDA, *dimg, T2S_DEV_CPU, nhwc, ibytes, err);
  if (st == T2S_OK) st = t2s_device_copy(T2S_DEV_CUDA, *dlbl, T2S_DEV_CPU, label->data, lbytes, err);
  free(nhwc);
  if (st != T2S_OK) return st;
  t2s_tensor_init(image, T2S_F32, T2S_DEV_CUDA, 4, image->shape, *dimg);
  image->layout = T2S_LAYOUT_NHWC;
  t2s_tensor_init(label, T2S_U8, T2S_DEV_CUDA, 3, label->shape, *dlbl);
  return T2S_OK;
}

static int cmp_share(const void *a, const void *b);
static const t2s_op_profile *sort_prof;

/* The op types by total time (forward + backward) over the timed iterations. */
static void print_profile(const t2s_op_profile *p, const double *times, int iters, const t2s_ctx *ctx) {
  double step = 0.0, ops = 0.0;
  for (int i = 0; i < iters; i++) step += times[i];
  int order[T2S_OP_COUNT + 1], n = 0;
  for (int k = 0; k <= T2S_OP_COUNT; k++)
    if (p->fwd_n[k] || p->bwd_n[k]) {
      order[n++] = k;
      ops += p->fwd_s[k] + p->bwd_s[k];
    }
  sort_prof = p;
  qsort(order, (size_t)n, sizeof order[0], cmp_share);
  printf("  profile over %d step(s): op, calls/step, forward ms/step, backward ms/step, share of the step\n", iters);
  for (int j = 0; j < n; j++) {
    int k = order[j];
    printf("    %-18s %6.0f %9.1f %9.1f %6.1f%%\n", k < T2S_OP_COUNT ? t2s_ops[k].name : "(losses)",
           (double)p->fwd_n[k] / iters, p->fwd_s[k] * 1e3 / iters, p->bwd_s[k] * 1e3 / iters,
           100.0 * (p->fwd_s[k] + p->bwd_s[k]) / step);
  }
  printf("    %-18s %6s %9s %9s %6.1f%%  (engine, loss setup, optimizer)\n", "outside the ops", "", "", "",
         100.0 * (step - ops) / step);
  printf("  pass arena: peak %.0f MiB in use, %.0f MiB touched, %.0f MiB reserved; liveness %s "
         "(%llu allocations freed early)\n", t2s_arena_peak(ctx->pass) / 1048576.0,
         t2s_arena_peak_footprint(ctx->pass) / 1048576.0, t2s_arena_reserved(ctx->pass) / 1048576.0,
         ctx->keep_all ? "off" : "on", (unsigned long long)t2s_liveness_freed(ctx));
}

static int cmp_share(const void *a, const void *b) {
  int x = *(const int *)a, y = *(const int *)b;
  double tx = sort_prof->fwd_s[x] + sort_prof->bwd_s[x], ty = sort_prof->fwd_s[y] + sort_prof->bwd_s[y];
  return (tx < ty) - (tx > ty);
}

static int bench_step(const bench_opts *o) {
  openblas_set_num_threads(o->threads);
  if (o->device == T2S_DEV_CPU && o->precision != T2S_PRECISION_FP32) {
    fprintf(stderr, "t2sda_bench: --precision %s is a CUDA setting; use --device cuda, or "
            "--precision fp32 on the CPU\n", precision_name(o->precision));
    return 1;
  }
  omp_set_num_threads(o->threads);  /* the engine's own loops (core/ops) */
  t2s_model_cfg cfg = t2s_model_default_cfg();
  cfg.resnet.depth = o->depth;
  cfg.resnet.base_channels = o->base_channels;
  cfg.num_classes = o->classes;
  t2s_error err = {0};
  t2s_segmentor m;
  const t2s_device dev = o->device;
  if (!model_flags(o, &cfg, &err) || t2s_segmentor_build(&m, &cfg, dev, 1, &err) != T2S_OK) {
    fprintf(stderr, "t2sda_bench: %s\n", err.msg);
    return 1;
  }
  t2s_params_set_lr_mult(&m.params, "decode_head.", 10.0f);
  t2s_optim_cfg oc = {T2S_OPTIM_SGD, 2.5e-3, 0.9, 5e-4, 0.9, 0.999, 1e-8, 0};
  t2s_optim opt;
  t2s_ctx *ctx = t2s_ctx_create(dev, dev == T2S_DEV_CUDA ? (size_t)1 << 30 : 256 << 20, &err);
  if (ctx == NULL || t2s_optim_init(&opt, &m.params, &oc, &err) != T2S_OK) {
    fprintf(stderr, "t2sda_bench: %s\n", err.msg);
    return 1;
  }
  if (dev == T2S_DEV_CUDA && t2s_cuda_set_precision(ctx, o->precision) != T2S_OK) {
    fprintf(stderr, "t2sda_bench: %s\n", ctx->err.msg);
    return 1;
  }
  int64_t ishape[4] = {o->batch, 3, o->crop_h, o->crop_w}, lshape[3] = {o->batch, o->crop_h, o->crop_w};
  float *img = malloc((size_t)(o->batch * 3 * o->crop_h * o->crop_w) * sizeof(float));
  uint8_t *lbl = malloc((size_t)(o->batch * o->crop_h * o->crop_w));
  fill_batch(img, lbl, o);
  t2s_tensor image, label;
  t2s_tensor_init(&image, T2S_F32, T2S_DEV_CPU, 4, ishape, img);
  t2s_tensor_init(&label, T2S_U8, T2S_DEV_CPU, 3, lshape, lbl);
  void *dev_img = NULL, *dev_lbl = NULL;
  if (dev == T2S_DEV_CUDA && upload_batch(&image, &label, &dev_img, &dev_lbl, &err) != T2S_OK) {
    fprintf(stderr, "t2sda_bench: uploading the batch: %s\n", err.msg);
    return 1;
  }

  ctx->keep_all = o->keep_all;
  t2s_op_profile prof;
  memset(&prof, 0, sizeof prof);
  int total = o->warmup + o->iters;
  double *times = calloc((size_t)total, sizeof(double)), fwd_flops = 0, loss_v = 0;
  for (int it = 0; it < total; it++) {
    if (o->profile && it == o->warmup) ctx->profile = &prof; /* the timed iterations only */
    double t0 = t2s_clock_s();
    ctx->flops = 0;
    t2s_params_zero_grad(&m.params, &err);
    t2s_seg_out out;
    t2s_segmentor_forward(ctx, &m, &image, &out);
    t2s_tensor *up = t2s_resize_bilinear(ctx, out.logits, o->crop_h, o->crop_w, 0);
    t2s_ce_args ce = {255, T2S_CE_MEAN_VALID, 0};
    t2s_tensor *loss = t2s_cross_entropy(ctx, up, &label, NULL, NULL, &ce);
    fwd_flops = ctx->flops;
    if (t2s_backward(ctx, loss, 1.0f) != T2S_OK ||
        t2s_optim_step(&opt, oc.lr, NULL, &ctx->err) != T2S_OK ||
        t2s_device_sync(dev, &ctx->err) != T2S_OK) {
      fprintf(stderr, "t2sda_bench: step %d failed: %s\n", it, ctx->err.msg);
      return 1;
    }
    times[it] = t2s_clock_s() - t0;
    float lv = 0.0f;
    if (t2s_device_copy(T2S_DEV_CPU, &lv, dev, loss->data, sizeof lv, &err) != T2S_OK) {
      fprintf(stderr, "t2sda_bench: reading the loss: %s\n", err.msg);
      return 1;
    }
    loss_v = lv;
    t2s_ctx_end_pass(ctx);
  }
  qsort(times + o->warmup, (size_t)o->iters, sizeof(double), cmp_double);
  double med = times[o->warmup + o->iters / 2], best = times[o->warmup];
  double step_flops = 3.0 * fwd_flops;
  size_t peak = t2s_arena_peak(ctx->pass);
  if (cfg.backbone == T2S_BACKBONE_MIT)
    printf("t2sda step: %s %s, batch %d, crop %dx%d, %d classes, %d thread(s)\n", o->backbone,
           o->head ? o->head : "daformer_sepaspp", o->batch, o->crop_w, o->crop_h, o->classes,
           o->threads);
  else
    printf("t2sda step: resnet%d-v1c deeplabv2 (base %d), batch %d, crop %dx%d, %d classes, "
           "%d thread(s)\n", o->depth, o->base_channels, o->batch, o->crop_w, o->crop_h,
           o->classes, o->threads);
  printf("  %.1f ms/iter median (best %.1f) over %d iters | %.2f images/s | %.1f GFLOP/iter | "
         "%.1f GFLOP/s | activations %.0f MiB | loss %.4f\n",
         med * 1e3, best * 1e3, o->iters, o->batch / med, step_flops * 1e-9, step_flops / med * 1e-9,
         (double)peak / (1 << 20), loss_v);
  char line[768];
  snprintf(line, sizeof line,
           "{\"impl\": \"t2sda\", \"device\": \"%s\", \"precision\": \"%s\", \"build\": \"%s\", \"backbone\": \"%s\", \"depth\": %d, \"base_channels\": %d, \"batch\": %d, "
           "\"crop\": [%d, %d], \"threads\": %d, \"ms_per_iter\": %.3f, \"images_per_s\": %.4f, "
           "\"gflop_per_iter\": %.3f, \"gflop_per_s\": %.3f}",
           t2s_device_name(dev), precision_name(o->precision),
           T2S_VERSION_STRING, o->backbone ? o->backbone : "resnet_v1c", o->depth, o->base_channels, o->batch, o->crop_w, o->crop_h, o->threads,
           med * 1e3, o->batch / med, step_flops * 1e-9, step_flops / med * 1e-9);
  printf("%s\n", line);
  if (o->profile) print_profile(&prof, times + o->warmup, o->iters, ctx);
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
  t2s_device_free(dev, dev_img);
  t2s_device_free(dev, dev_lbl);
  t2s_optim_free(&opt);
  t2s_ctx_destroy(ctx);
  t2s_segmentor_free(&m);
  return 0;
}

/* ---- selfcheck: the engine end to end on drawn scenes ------------------------
 * Scenes of 4 classes (sky, road, wall band, boxes) with class colours plus
 * noise; a ResNet-18 (base 16) DeepLab-V2 trains with SGD for `iters` steps.
 * Passes when the pixel accuracy on fresh scenes rises well above the
 * majority-class rate and a checkpoint round trip reproduces the logits bit for bit. */
static void draw_scene(float *img, uint8_t *lbl, int h, int w, uint64_t seed) {
  static const float colour[4][3] = {{0.2f, 0.4f, 0.9f}, {0.35f, 0.3f, 0.35f}, {0.7f, 0.6f, 0.4f}, {0.9f, 0.1f, 0.1f}};
  t2s_rng_key key = t2s_rng_key_make(seed, 11, 0, 0);
  int horizon = h / 3 + (int)t2s_rng_below(key, 0, (uint32_t)(h / 4));
  int band = 2 + (int)t2s_rng_below(key, 1, (uint32_t)(h / 6));
  int bx = (int)t2s_rng_below(key, 2, (uint32_t)(w / 2)), bw = w / 6 + (int)t2s_rng_below(key, 3, (uint32_t)(w / 4));
  int by = horizon + band, bh = h / 8 + (int)t2s_rng_below(key, 4, (uint32_t)(h / 6));
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      int c = y < horizon ? 0 : y < horizon + band ? 2 : 1;
      if (x >= bx && x < bx + bw && y >= by && y < by + bh) c = 3;
      lbl[y * w + x] = (uint8_t)c;
      for (int ch = 0; ch < 3; ch++) {
        float noise = 0.25f * t2s_rng_normal(key, 100 + ((uint64_t)(y * w + x) * 3 + (uint64_t)ch));
        img[((int64_t)ch * h + y) * w + x] = (colour[c][ch] - 0.5f) * 2.0f + noise;
      }
    }
}

static double accuracy(t2s_ctx *ctx, const t2s_segmentor *m, t2s_tensor *image, const uint8_t *lbl,
                       int n, int h, int w, int classes) {
  int prev_grad = t2s_set_grad_enabled(ctx, 0), prev_train = ctx->training;
  ctx->training = 0;
  t2s_seg_out out;
  t2s_segmentor_forward(ctx, m, image, &out);
  t2s_tensor *up = t2s_resize_bilinear(ctx, out.logits, h, w, 0);
  int64_t right = 0;
  if (up != NULL)
    for (int b = 0; b < n; b++)
      for (int i = 0; i < h * w; i++) {
        const float *z = t2s_f32(up) + (int64_t)b * classes * h * w + i;
        int best = 0;
        for (int c = 1; c < classes; c++)
          if (z[(int64_t)c * h * w] > z[(int64_t)best * h * w]) best = c;
        right += best == lbl[(int64_t)b * h * w + i];
      }
  t2s_ctx_end_pass(ctx);
  t2s_set_grad_enabled(ctx, prev_grad);
  ctx->training = prev_train;
  return (double)right / ((double)n * h * w);
}

static int bench_selfcheck(int iters) {
  const int n = 4, h = 64, w = 64, classes = 4;
  t2s_model_cfg cfg = t2s_model_default_cfg();
  cfg.resnet.depth = 18;
  cfg.resnet.base_channels = 16;
  cfg.resnet.stem_channels = 16;
  cfg.num_classes = classes;
  cfg.head_dilations[0] = 1;
  cfg.head_dilations[1] = 3;
  t2s_error err = {0};
  t2s_segmentor m;
  t2s_optim opt;
  t2s_optim_cfg oc = {T2S_OPTIM_SGD, 0.02, 0.9, 5e-4, 0.9, 0.999, 1e-8, 0};
  t2s_ctx *ctx = NULL;
  if (t2s_segmentor_build(&m, &cfg, T2S_DEV_CPU, 3, &err) != T2S_OK ||
      t2s_optim_init(&opt, &m.params, &oc, &err) != T2S_OK ||
      (ctx = t2s_ctx_create(T2S_DEV_CPU, 64 << 20, &err)) == NULL) {
    fprintf(stderr, "selfcheck: %s\n", err.msg);
    return 1;
  }
  t2s_params_set_lr_mult(&m.params, "decode_head.", 10.0f);
  t2s_lr_schedule sched = {T2S_LR_POLY, 1.0, 0.0, iters, iters / 10, 0.1};
  int64_t ishape[4] = {n, 3, h, w}, lshape[3] = {n, h, w};
  float *img = malloc((size_t)n * 3 * h * w * sizeof(float)), *test_img = malloc((size_t)n * 3 * h * w * sizeof(float));
  uint8_t *lbl = malloc((size_t)n * h * w), *test_lbl = malloc((size_t)n * h * w);
  t2s_tensor image, label, test_image;
  t2s_tensor_init(&image, T2S_F32, T2S_DEV_CPU, 4, ishape, img);
  t2s_tensor_init(&label, T2S_U8, T2S_DEV_CPU, 3, lshape, lbl);
  t2s_tensor_init(&test_image, T2S_F32, T2S_DEV_CPU, 4, ishape, test_img);
  for (int b = 0; b < n; b++) draw_scene(test_img + (int64_t)b * 3 * h * w, test_lbl + (int64_t)b * h * w, h, w, 1000 + (uint64_t)b);
  int64_t counts[4] = {0};
  for (int64_t i = 0; i < (int64_t)n * h * w; i++) counts[test_lbl[i]]++;
  double majority = 0;
  for (int c = 0; c < classes; c++) majority = fmax(majority, counts[c] / ((double)n * h * w));
  double acc0 = accuracy(ctx, &m, &test_image, test_lbl, n, h, w, classes);
  printf("selfcheck: ResNet-18 (base 16) DeepLab-V2, %d classes, %dx%d scenes, batch %d, %d SGD steps\n",
         classes, w, h, n, iters);
  double t0 = t2s_clock_s();
  for (int it = 0; it < iters; it++) {
    for (int b = 0; b < n; b++)
      draw_scene(img + (int64_t)b * 3 * h * w, lbl + (int64_t)b * h * w, h, w, (uint64_t)(it * n + b));
    t2s_params_zero_grad(&m.params, &err);
    t2s_seg_out out;
    t2s_segmentor_forward(ctx, &m, &image, &out);
    t2s_tensor *up = t2s_resize_bilinear(ctx, out.logits, h, w, 0);
    t2s_ce_args ce = {255, T2S_CE_MEAN_VALID, 0};
    t2s_tensor *loss = t2s_cross_entropy(ctx, up, &label, NULL, NULL, &ce);
    double lr = t2s_lr_at(&sched, oc.lr, it);
    if (t2s_backward(ctx, loss, 1.0f) != T2S_OK || t2s_optim_step(&opt, lr, NULL, &ctx->err) != T2S_OK) {
      fprintf(stderr, "selfcheck: iteration %d failed: %s\n", it, ctx->err.msg);
      return 1;
    }
    if (it % 10 == 0 || it == iters - 1)
      printf("  iter %4d  loss %.4f  lr %.2e  %.1f images/s\n", it, t2s_f32(loss)[0], lr,
             (double)(it + 1) * n / (t2s_clock_s() - t0));
    t2s_ctx_end_pass(ctx);
  }
  double acc1 = accuracy(ctx, &m, &test_image, test_lbl, n, h, w, classes);
  printf("  pixel accuracy on unseen scenes: %.1f%% before, %.1f%% after (majority class %.1f%%)\n",
         100 * acc0, 100 * acc1, 100 * majority);

  /* checkpoint round trip: a second network loaded from the file predicts the same logits */
  const char *path = "selfcheck_ckpt.h5";
  t2s_ckpt_writer *wr = t2s_ckpt_begin(path, &err);
  int ok = wr && t2s_ckpt_write_meta(wr, iters, 1, "name: selfcheck\n", &err) == T2S_OK &&
           t2s_ckpt_write_params(wr, "params", &m.params, T2S_CKPT_TRAINABLE, &err) == T2S_OK &&
           t2s_ckpt_write_params(wr, "buffers", &m.params, T2S_CKPT_BUFFERS, &err) == T2S_OK &&
           t2s_ckpt_commit(wr, &err) == T2S_OK;
  t2s_segmentor m2;
  ok = ok && t2s_segmentor_build(&m2, &cfg, T2S_DEV_CPU, 99, &err) == T2S_OK;
  t2s_ckpt_reader *rd = ok ? t2s_ckpt_open(path, &err) : NULL;
  ok = ok && rd && t2s_ckpt_read_params(rd, "params", &m2.params, T2S_CKPT_TRAINABLE, &err) == T2S_OK &&
       t2s_ckpt_read_params(rd, "buffers", &m2.params, T2S_CKPT_BUFFERS, &err) == T2S_OK;
  if (rd) t2s_ckpt_close(rd);
  double acc2 = ok ? accuracy(ctx, &m2, &test_image, test_lbl, n, h, w, classes) : -1;
  remove(path);
  int pass = ok && acc1 > majority + 0.1 && acc1 > 0.8 && acc2 == acc1;
  printf("  checkpoint round trip: %s\n", ok ? (acc2 == acc1 ? "identical predictions" : "predictions DIFFER") : err.msg);
  printf("selfcheck %s\n", pass ? "passed" : "FAILED");
  free(img); free(lbl); free(test_img); free(test_lbl);
  t2s_optim_free(&opt);
  t2s_ctx_destroy(ctx);
  t2s_segmentor_free(&m);
  if (ok) t2s_segmentor_free(&m2);
  return pass ? 0 : 1;
}

static int is_help(const char *a) { return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0; }

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "--version") == 0) return puts(T2S_VERSION_LINE("t2sda_bench")) == EOF;
  int help = argc < 2;
  /* `t2sda_bench step --help` etc.; `data --help` has its own, longer text */
  for (int i = 1; i < argc && !(argc >= 2 && strcmp(argv[1], "data") == 0); i++) help |= is_help(argv[i]);
  if (help) {
    printf("usage: t2sda_bench selfcheck [--iters 150]\n"
           "       t2sda_bench step [--depth 50] [--base-channels 64] [--batch 2] [--crop W H]\n"
           "                        [--classes 19] [--iters 5] [--warmup 2] [--threads 2] [--json FILE]\n"
           "                        [--backbone resnet_v1c|mit_b0..mit_b5] [--head dlv2|daformer_sepaspp|\n"
           "                        daformer_conv1|segformer_mlp]\n"
           "                        [--device cpu|cuda] [--precision fp32|tf32|bf16]\n"
           "                        [--profile] [--no-liveness]\n"
           "       t2sda_bench iteration CONFIG [--crop W H] [--batch 2] [--iters 2] [--threads 2]\n"
           "                        [--no-liveness] [--build-only] [--set key=value ...]\n"
           "                        (the full training iteration of a config, time and peak memory)\n"
           "       t2sda_bench ops [--device cpu|cuda] [--iters 10] [--warmup 2] [--only NAME]\n"
           "                        (forward and backward ms of every op at a typical shape)\n"
           "       t2sda_bench data --help   (loader images/s for 1 and 2 threads)\n"
           "       t2sda_bench peak [--threads 2] [--seconds 2]\n"
           "                        (fp32 FMA peak, sgemm through OpenBLAS and oneDNN)\n"
           "       mpirun -np 2 t2sda_bench allreduce [--device cpu|cuda] [--min-bytes 4K]\n"
           "                        [--max-bytes 256M] [--iters 20] [--warmup 3] [--json FILE]\n"
           "                        (nccl-tests columns; `comm` is an alias; one GPU without\n"
           "                        mpirun: `t2sda_bench allreduce --device cuda`, one NCCL rank)\n"
           "       t2sda_bench scaling [--ranks 2|1,2,4] [--launcher \"mpirun --bind-to none -np\"]\n"
           "                        [--batch 2] [--global-batch G] [--depth 18] [--base-channels 16]\n"
           "                        [--backbone ..] [--head ..] [--crop 64 64] [--classes 19]\n"
           "                        [--iters 5] [--warmup 2] [--threads 1] [--bucket-mb 25]\n"
           "                        [--sync-bn] [--device cpu|cuda] [--json FILE]\n"
           "                        (weak and strong scaling; under srun/mpirun: one rank count)\n");
    return argc < 2 ? 2 : 0;
  }
  bench_opts o = {50, 64, 2, 256, 256, 19, 5, 2, 2, NULL, NULL, NULL, T2S_DEV_CPU, T2S_PRECISION_FP32, 0, 0};
  if (strcmp(argv[1], "step") == 0) {
    if (!parse_args(argc, argv, &o)) return 2;
    return bench_step(&o);
  }
  if (strcmp(argv[1], "data") == 0) return t2s_bench_data(argc - 1, argv + 1);
  if (strcmp(argv[1], "ops") == 0) return t2s_bench_ops(argc - 1, argv + 1);
  if (strcmp(argv[1], "iteration") == 0) return t2s_bench_iteration(argc - 1, argv + 1);
  if (strcmp(argv[1], "selfcheck") == 0) {
    int iters = 150;
    if (argc > 3 && strcmp(argv[2], "--iters") == 0 && !parse_int("--iters", argv[3], 1, 100000, &iters)) return 2;
    return bench_selfcheck(iters);
  }
  if (strcmp(argv[1], "allreduce") == 0 || strcmp(argv[1], "comm") == 0)
    return t2s_bench_comm(argc - 1, argv + 1);
  if (strcmp(argv[1], "scaling") == 0) return t2s_bench_scaling(argc - 1, argv + 1);
  if (strcmp(argv[1], "peak") == 0) return t2s_bench_peak(argc - 1, argv + 1);
  fprintf(stderr, "t2sda_bench: unknown benchmark '%s' (available: step, iteration, ops, data, "
                  "allreduce, scaling, peak, selfcheck)\n", argv[1]);
  return 2;
}
