#include "tools/bench/bench_iteration.h"

#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/engine.h"
#include "core/optim.h"
#include "core/rng.h"
#include "dist/comm.h"
#include "dist/grad_sync.h"
#include "launch/model_config.h"
#include "launch/train_config.h"
#include "launch/uda_step.h"

/* The networks, optimizer and method state of one run, as launch/trainer.c builds them
 * (random initial weights: the memory and time do not depend on them). */
typedef struct iter_run {
  t2s_train_config *cfg;
  t2s_comm comm;
  int comm_up;
  t2s_ctx *ctx;
  t2s_segmentor student, teacher, imnet;
  int have_student, have_teacher, have_imnet;
  t2s_optim optim;
  int have_optim;
  t2s_uda uda;
  int have_uda;
  t2s_grad_sync *sync;
} iter_run;

static void run_free(iter_run *r) {
  if (r->sync) t2s_grad_sync_destroy(r->sync);
  if (r->have_uda) t2s_uda_free(&r->uda);
  if (r->have_optim) t2s_optim_free(&r->optim);
  if (r->have_imnet) t2s_segmentor_free(&r->imnet);
  if (r->have_teacher) t2s_segmentor_free(&r->teacher);
  if (r->have_student) t2s_segmentor_free(&r->student);
  t2s_ctx_destroy(r->ctx);
  if (r->comm_up) t2s_dist_finalize(&r->comm);
  free(r->cfg);
}

static t2s_status run_build(iter_run *r, const t2s_bench_iter_opts *o, t2s_error *err) {
  r->cfg = calloc(1, sizeof *r->cfg);
  if (r->cfg == NULL) return t2s_error_set(err, T2S_ERR_NOMEM, "out of memory for the config");
  t2s_train_config *c = r->cfg;
  t2s_status st = t2s_train_config_load(c, o->config, o->overrides, o->n_overrides, err);
  if (st) return st;
  if (o->crop_w > 0) c->data.crop[0] = o->crop_w;
  if (o->crop_h > 0) c->data.crop[1] = o->crop_h;
  if (o->batch > 0) c->data.samples_per_gpu = o->batch;
  t2s_dist_cfg dc = t2s_dist_default_cfg();
  dc.device = T2S_DEV_CPU;
  dc.quiet = 1;
  if ((st = t2s_dist_init(&r->comm, &dc, err)) != T2S_OK) return st;
  r->comm_up = 1;
  if ((r->ctx = t2s_ctx_create(T2S_DEV_CPU, (size_t)256 << 20, err)) == NULL) return err->status;
  r->ctx->seed = (uint64_t)c->seed;
  r->ctx->deterministic = c->deterministic;
  r->ctx->keep_all = o->keep_all;
  t2s_dist_attach(&r->comm, r->ctx, c->model.backbone.norm == T2S_NORM_SYNCBN);
  t2s_model_cfg mc;
  if ((st = t2s_model_cfg_from_train_config(c, &mc, err)) != T2S_OK) return st;
  if ((st = t2s_segmentor_build(&r->student, &mc, T2S_DEV_CPU, (uint64_t)c->seed, err)) != T2S_OK) return st;
  r->have_student = 1;
  if (c->uda.type != T2S_CFG_UDA_SOURCE_ONLY) {
    if ((st = t2s_segmentor_build(&r->teacher, &mc, T2S_DEV_CPU, (uint64_t)c->seed, err)) != T2S_OK) return st;
    r->have_teacher = 1;
    if ((st = t2s_params_copy(&r->teacher.params, &r->student.params, err)) != T2S_OK) return st;
    if (c->uda.imnet_feature_dist_lambda > 0) {
      if ((st = t2s_segmentor_build(&r->imnet, &mc, T2S_DEV_CPU, (uint64_t)c->seed, err)) != T2S_OK) return st;
      r->have_imnet = 1;
      if ((st = t2s_params_copy(&r->imnet.params, &r->student.params, err)) != T2S_OK) return st;
      for (int i = 0; i < r->imnet.params.count; i++) r->imnet.params.items[i]->t.requires_grad = 0;
    }
  }
  t2s_optim_cfg oc = {c->optimizer.type, c->optimizer.lr, c->optimizer.momentum,
                      c->optimizer.weight_decay, c->optimizer.betas[0], c->optimizer.betas[1],
                      c->optimizer.eps, c->optimizer.grad_clip};
  if ((st = t2s_optim_init(&r->optim, &r->student.params, &oc, err)) != T2S_OK) return st;
  r->have_optim = 1;
  if ((st = t2s_uda_init(&r->uda, c, 0, 1, err)) != T2S_OK) return st;
  r->have_uda = 1;
  return t2s_grad_sync_create(&r->sync, &r->comm, &r->student.params,
                              (size_t)(c->dist.bucket_mb * (1 << 20)), err);
}

static size_t params_bytes(const t2s_params *p, int with_grad) {
  return (p->numel * (with_grad ? 2 : 1) + p->buf_numel) * sizeof(float);
}

/* Random crops: images in [0, 255]; source labels in [0, classes) with a tenth ignored. */
static void fill(float *img, uint8_t *lbl, int64_t n_img, int64_t n_lbl, int classes, int ignore,
                 uint64_t seed) {
  t2s_rng_key k = t2s_rng_key_make(seed, 0, 0, 77);
  for (int64_t i = 0; i < n_img; i++) img[i] = 255.0f * t2s_rng_uniform(k, (uint64_t)i);
  for (int64_t i = 0; lbl && i < n_lbl; i++) {
    float u = t2s_rng_uniform(k, (uint64_t)(n_img + i));
    lbl[i] = u < 0.1f ? (uint8_t)ignore : (uint8_t)((int)(u * 1000.0f) % classes);
  }
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

t2s_status t2s_bench_iteration_run(const t2s_bench_iter_opts *o, t2s_bench_iter_result *out,
                                   t2s_error *err) {
  memset(out, 0, sizeof *out);
  if (o->iters < 1 || o->iters > T2S_BENCH_ITER_MAX)
    return t2s_error_set(err, T2S_ERR_INVALID, "--iters %d: use 1 to %d", o->iters, T2S_BENCH_ITER_MAX);
  iter_run r;
  memset(&r, 0, sizeof r);
  t2s_status st = run_build(&r, o, err);
  const t2s_train_config *c = r.cfg;
  int B = st ? 0 : c->data.samples_per_gpu, W = st ? 0 : c->data.crop[0], H = st ? 0 : c->data.crop[1];
  int64_t n_img = (int64_t)B * 3 * H * W, n_lbl = (int64_t)B * H * W;
  float *src_img = st ? NULL : malloc((size_t)n_img * sizeof(float));
  float *tgt_img = st ? NULL : malloc((size_t)n_img * sizeof(float));
  uint8_t *src_lbl = st ? NULL : malloc((size_t)n_lbl);
  int64_t *indices = st ? NULL : calloc((size_t)B, sizeof *indices);
  int *rcs = st ? NULL : malloc((size_t)B * sizeof *rcs);
  double times[T2S_BENCH_ITER_MAX];
  if (!st && (!src_img || !tgt_img || !src_lbl || !indices || !rcs))
    st = t2s_error_set(err, T2S_ERR_NOMEM, "out of memory for the random crops");
  if (!st) {
    for (int i = 0; i < B; i++) rcs[i] = -1;
    fill(src_img, src_lbl, n_img, n_lbl, c->model.num_classes, c->data.ignore_index, 1);
    fill(tgt_img, NULL, n_img, 0, c->model.num_classes, c->data.ignore_index, 2);
    out->state_bytes = params_bytes(&r.student.params, 1) + (size_t)r.optim.n_state * r.student.params.numel * sizeof(float);
    if (r.have_teacher) out->state_bytes += params_bytes(&r.teacher.params, 0);
    if (r.have_imnet) out->state_bytes += params_bytes(&r.imnet.params, 0);
  }
  const int adapt = !st && c->uda.type != T2S_CFG_UDA_SOURCE_ONLY;
  for (int it = 0; !st && !o->build_only && it < o->iters; it++) {
    t2s_batch sb, tb;
    memset(&sb, 0, sizeof sb);
    sb.iteration = it;
    sb.n = B;
    sb.h = H;
    sb.w = W;
    sb.images = src_img;
    sb.labels = src_lbl;
    sb.indices = indices;
    sb.rcs_class = rcs;
    tb = sb;
    tb.images = tgt_img;
    tb.labels = NULL;
    double t0 = t2s_clock_s();
    r.ctx->flops = 0;
    r.ctx->step = (uint64_t)it;
    r.ctx->sample_offset = 0;
    t2s_uda_nets nets = {&r.student, r.have_teacher ? &r.teacher : NULL,
                         r.have_imnet ? &r.imnet : NULL, r.sync};
    t2s_uda_losses l;
    if ((st = t2s_params_zero_grad(&r.student.params, err)) != T2S_OK) break;
    st = t2s_uda_step(r.ctx, &r.uda, &nets, &sb, adapt ? &tb : NULL, &l, err);
    out->gflop_per_iter = 3.0 * r.ctx->flops * 1e-9;
    if (t2s_arena_peak(r.ctx->pass) > out->arena_peak) out->arena_peak = t2s_arena_peak(r.ctx->pass);
    if (t2s_arena_peak_footprint(r.ctx->pass) > out->arena_footprint)
      out->arena_footprint = t2s_arena_peak_footprint(r.ctx->pass);
    t2s_ctx_end_pass(r.ctx);
    if (st) break;
    st = t2s_optim_step(&r.optim, c->optimizer.lr, NULL, err);
    times[it] = t2s_clock_s() - t0;
    out->loss[it][0] = l.src;
    out->loss[it][1] = l.mix;
    out->loss[it][2] = l.fd;
    out->loss[it][3] = l.t2s;
    out->loss[it][4] = l.st;
    out->loss[it][5] = l.mic;
  }
  if (!st && !o->build_only) {
    qsort(times, (size_t)o->iters, sizeof(double), cmp_double);
    out->ms_median = times[o->iters / 2] * 1e3;
    out->freed = t2s_liveness_freed(r.ctx);
    uint64_t h = 1469598103934665603ull;
    const unsigned char *b = (const unsigned char *)r.student.params.data;
    for (size_t i = 0; i < r.student.params.numel * sizeof(float); i++) h = (h ^ b[i]) * 1099511628211ull;
    out->weights_hash = h;
  }
  free(src_img);
  free(tgt_img);
  free(src_lbl);
  free(indices);
  free(rcs);
  run_free(&r);
  return st;
}

static int usage(const char *why) {
  fprintf(stderr, "t2sda_bench iteration: %s\nusage: t2sda_bench iteration CONFIG [--crop W H] "
          "[--batch B] [--iters 2] [--threads 2] [--no-liveness] [--build-only] [--set key=value ...]\n", why);
  return 2;
}

int t2s_bench_iteration(int argc, char **argv) {
  t2s_bench_iter_opts o = {0};
  o.iters = 2;
  o.threads = 2;
  char *sets[64];
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--crop") == 0 && i + 2 < argc) {
      o.crop_w = atoi(argv[++i]);
      o.crop_h = atoi(argv[++i]);
    } else if (strcmp(a, "--batch") == 0 && i + 1 < argc) o.batch = atoi(argv[++i]);
    else if (strcmp(a, "--iters") == 0 && i + 1 < argc) o.iters = atoi(argv[++i]);
    else if (strcmp(a, "--threads") == 0 && i + 1 < argc) o.threads = atoi(argv[++i]);
    else if (strcmp(a, "--no-liveness") == 0) o.keep_all = 1;
    else if (strcmp(a, "--build-only") == 0) o.build_only = 1;
    else if (strcmp(a, "--set") == 0 && i + 1 < argc && o.n_overrides < 64) sets[o.n_overrides++] = argv[++i];
    else if (a[0] != '-' && o.config == NULL) o.config = a;
    else {
      char why[300];
      snprintf(why, sizeof why, "unknown or incomplete option '%s'", a);
      return usage(why);
    }
  }
  if (o.config == NULL) return usage("the config file is missing");
  if (o.threads < 1) return usage("--threads must be >= 1");
  o.overrides = sets;
  openblas_set_num_threads(o.threads);
  omp_set_num_threads(o.threads);
  t2s_bench_iter_result res;
  t2s_error err = {0};
  if (t2s_bench_iteration_run(&o, &res, &err) != T2S_OK) {
    fprintf(stderr, "t2sda_bench iteration: %s\n", err.msg);
    return 1;
  }
  const double gib = 1024.0 * 1024.0 * 1024.0;
  if (o.build_only) {
    printf("t2sda iteration: %s: state %.2f GiB (weights, buffers, student gradients, optimizer "
           "state)\n", o.config, res.state_bytes / gib);
    return 0;
  }
  printf("t2sda iteration: %s, %d thread(s), liveness %s\n", o.config, o.threads, o.keep_all ? "off" : "on");
  for (int i = 0; i < o.iters; i++)
    printf("  iteration %d: src %.6f mix %.6f fd %.6f t2s %.6f\n", i, res.loss[i][0], res.loss[i][1],
           res.loss[i][2], res.loss[i][3]);
  printf("  %.0f ms/iter median over %d | %.1f GFLOP/iter (GEMM-shaped ops)\n", res.ms_median, o.iters,
         res.gflop_per_iter);
  printf("  pass arena peak %.2f GiB in use, %.2f GiB touched | state %.2f GiB | total %.2f GiB | "
         "%llu allocations freed early\n", res.arena_peak / gib, res.arena_footprint / gib,
         res.state_bytes / gib, (res.arena_footprint + res.state_bytes) / gib,
         (unsigned long long)res.freed);
  printf("{\"impl\": \"t2sda\", \"bench\": \"iteration\", \"config\": \"%s\", \"liveness\": %d, "
         "\"ms_per_iter\": %.1f, \"arena_peak_bytes\": %zu, \"arena_touched_bytes\": %zu, "
         "\"state_bytes\": %zu}\n", o.config, !o.keep_all, res.ms_median, res.arena_peak,
         res.arena_footprint, res.state_bytes);
  return 0;
}
