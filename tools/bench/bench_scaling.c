/* Scaling benchmark: one training step of a segmentor (forward, cross-entropy, backward
 * with the bucketed gradient all-reduce of dist/grad_sync.h overlapping it, SGD update)
 * on random data, timed for several rank counts.
 *
 *   t2sda_bench scaling [--ranks 2 | --ranks 1,2,4] [--launcher "mpirun --bind-to none -np"]
 *                       [--batch 2] [--global-batch G] [--depth 18] [--base-channels 16]
 *                       [--backbone resnet_v1c|mit_b0..mit_b5] [--head dlv2|daformer_sepaspp|...]
 *                       [--crop 64 64] [--classes 19] [--iters 5] [--warmup 2] [--threads 1]
 *                       [--bucket-mb 25] [--sync-bn] [--device cpu|cuda] [--json FILE]
 *
 * Two roles in one command. Started without a launcher it is the driver: for each rank
 * count k of --ranks (N alone means 1, 2, 4, .. up to N) it runs
 * `LAUNCHER k t2sda_bench scaling --worker ...` (this same executable, the other options
 * passed on), reads the JSON lines the workers print, and prints the table with the
 * efficiencies. Started under a launcher (mpirun, srun) it is a worker: it measures
 * both modes at that one rank count and prints one JSON line per mode on rank 0, so
 * `srun -n 64 t2sda_bench scaling` measures a size that the driver cannot launch.
 *
 * Weak scaling keeps --batch images per rank (global batch k x batch); strong scaling
 * keeps --global-batch images (default: batch x the largest k) split over the ranks.
 * A step's time is the slowest rank's mean; "comm wait" is the time from the end of
 * backward to the end of t2s_grad_sync_finish (on CUDA both ends are device
 * synchronisations), i.e. the all-reduce time that backward did not hide, averaged over
 * ranks. Efficiency is per-rank throughput relative to the smallest k measured:
 * (images/s at k / k) / (images/s at k0 / k0), which is T(k0) / T(k) for weak scaling
 * and k0 T(k0) / (k T(k)) for strong scaling.
 *
 * The step is the source-only part of a T2S-DA iteration (one network, one backward,
 * the full gradient all-reduce): the teacher, ClassMix and the pulling loss add compute
 * but no gradient traffic, so the communication share measured here is an upper bound
 * for the full method. On the CPU the ranks should not share cores: --threads is the
 * OpenBLAS threads per rank, and k x threads should not exceed the cores. */
#include <cblas.h>
#include <omp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/device.h"
#include "core/nn/segmentor.h"
#include "core/optim.h"
#include "core/rng.h"
#include "tools/bench/bench_scaling.h"
#include "dist/comm.h"
#include "dist/grad_sync.h"

#define MAX_RANK_COUNTS 16

typedef struct scaling_opts {
  int ranks[MAX_RANK_COUNTS], n_ranks;
  const char *launcher, *json, *backbone, *head;
  int worker, batch, global_batch, depth, base_channels, crop_w, crop_h, classes;
  int iters, warmup, threads, sync_bn;
  double bucket_mb;
  t2s_device device;
} scaling_opts;

/* One measured mode at one rank count (what a worker prints, what the driver reads). */
typedef struct scaling_result {
  int ranks, batch_per_rank, global_batch, buckets, early;
  double step_ms, wait_ms, images_per_s, grad_mb;
  char backend[16];
} scaling_result;

/* ---- options ---------------------------------------------------------------------- */

static int parse_int(const char *flag, const char *v, int lo, int hi, int *out) {
  char *end;
  long x = strtol(v, &end, 10);
  if (*end != '\0' || end == v || x < lo || x > hi) {
    fprintf(stderr, "t2sda_bench scaling: %s expects an integer in %d..%d, got '%s'\n", flag, lo,
            hi, v);
    return 0;
  }
  *out = (int)x;
  return 1;
}

/* "N": 1, 2, 4, .. below N, then N. "a,b,c": that list, increasing. */
static int parse_ranks(const char *v, scaling_opts *o) {
  o->n_ranks = 0;
  if (strchr(v, ',') == NULL) {
    int n;
    if (!parse_int("--ranks", v, 1, 1 << 20, &n)) return 0;
    for (int k = 1; k < n && o->n_ranks < MAX_RANK_COUNTS - 1; k *= 2) o->ranks[o->n_ranks++] = k;
    o->ranks[o->n_ranks++] = n;
    return 1;
  }
  char buf[256], *save = NULL;
  snprintf(buf, sizeof buf, "%s", v);
  for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    int k;
    if (o->n_ranks == MAX_RANK_COUNTS || !parse_int("--ranks", tok, 1, 1 << 20, &k)) return 0;
    if (o->n_ranks > 0 && k <= o->ranks[o->n_ranks - 1]) {
      fprintf(stderr, "t2sda_bench scaling: --ranks %s must increase\n", v);
      return 0;
    }
    o->ranks[o->n_ranks++] = k;
  }
  return o->n_ranks > 0;
}

static int parse_value(const char *a, char **argv, int *i, scaling_opts *o) {
  const char *v = argv[*i + 1];
  (*i)++;
  if (strcmp(a, "--ranks") == 0) return parse_ranks(v, o);
  if (strcmp(a, "--launcher") == 0) return (o->launcher = v) != NULL;
  if (strcmp(a, "--json") == 0) return (o->json = v) != NULL;
  if (strcmp(a, "--backbone") == 0) return (o->backbone = v) != NULL;
  if (strcmp(a, "--head") == 0) return (o->head = v) != NULL;
  if (strcmp(a, "--batch") == 0) return parse_int(a, v, 1, 4096, &o->batch);
  if (strcmp(a, "--global-batch") == 0) return parse_int(a, v, 1, 1 << 20, &o->global_batch);
  if (strcmp(a, "--depth") == 0) return parse_int(a, v, 18, 152, &o->depth);
  if (strcmp(a, "--base-channels") == 0) return parse_int(a, v, 4, 256, &o->base_channels);
  if (strcmp(a, "--classes") == 0) return parse_int(a, v, 2, 255, &o->classes);
  if (strcmp(a, "--iters") == 0) return parse_int(a, v, 1, 100000, &o->iters);
  if (strcmp(a, "--warmup") == 0) return parse_int(a, v, 0, 100000, &o->warmup);
  if (strcmp(a, "--threads") == 0) return parse_int(a, v, 1, 1024, &o->threads);
  if (strcmp(a, "--bucket-mb") == 0) return (o->bucket_mb = atof(v)) > 0;
  if (strcmp(a, "--crop") == 0) {
    (*i)++;
    return argv[*i] && parse_int(a, v, 16, 8192, &o->crop_w) &&
           parse_int(a, argv[*i], 16, 8192, &o->crop_h);
  }
  if (strcmp(a, "--device") == 0) {
    o->device = strcmp(v, "cuda") == 0 ? T2S_DEV_CUDA : T2S_DEV_CPU;
    return strcmp(v, "cpu") == 0 || strcmp(v, "cuda") == 0;
  }
  (*i)--;
  return -1;  /* not an option with a value */
}

static int parse_opts(int argc, char **argv, scaling_opts *o) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int ok;
    if (strcmp(a, "--worker") == 0) ok = o->worker = 1;
    else if (strcmp(a, "--sync-bn") == 0) ok = o->sync_bn = 1;
    else if (i + 1 < argc) ok = parse_value(a, argv, &i, o);
    else ok = -1;
    if (ok == -1) fprintf(stderr, "t2sda_bench scaling: unknown option or missing value '%s' "
                                  "(see t2sda_bench --help)\n", a);
    if (ok != 1) return 0;
  }
  if (o->global_batch == 0) o->global_batch = o->batch * o->ranks[o->n_ranks - 1];
  return 1;
}

/* ---- worker: the timed step ------------------------------------------------------- */

typedef struct step_env {
  t2s_comm *comm;
  t2s_segmentor m;
  t2s_ctx *ctx;
  t2s_optim opt;
  t2s_grad_sync *sync;
  const scaling_opts *o;
} step_env;

static t2s_status build_env(step_env *e, t2s_error *err) {
  const scaling_opts *o = e->o;
  t2s_model_cfg cfg = t2s_model_default_cfg();
  cfg.num_classes = o->classes;
  cfg.resnet = t2s_resnet_default_cfg(o->depth);
  cfg.resnet.base_channels = o->base_channels;
  cfg.resnet.stem_channels = o->base_channels;
  if (o->backbone && strcmp(o->backbone, "resnet_v1c") != 0) {
    if (t2s_mit_cfg_by_name(o->backbone, &cfg.mit, err) != T2S_OK) return err->status;
    cfg.backbone = T2S_BACKBONE_MIT;
    cfg.head = T2S_HEAD_DAFORMER_SEPASPP;
  }
  static const char *const heads[] = {"dlv2", "daformer_sepaspp", "daformer_conv1", "segformer_mlp"};
  for (int k = 0; o->head && k < 4; k++)
    if (strcmp(o->head, heads[k]) == 0) cfg.head = (t2s_head_type)k;
  if (o->head && strcmp(o->head, heads[cfg.head]) != 0)
    return t2s_error_set(err, T2S_ERR_INVALID, "--head %s: use dlv2, daformer_sepaspp, "
                         "daformer_conv1 or segformer_mlp", o->head);
  t2s_status st = t2s_segmentor_build(&e->m, &cfg, o->device, 1, err);
  if (st != T2S_OK) return st;
  t2s_optim_cfg oc = {T2S_OPTIM_SGD, 1e-3, 0.9, 5e-4, 0.9, 0.999, 1e-8, 0};
  e->ctx = t2s_ctx_create(o->device, o->device == T2S_DEV_CUDA ? (size_t)4 << 30 : (size_t)1 << 30,
                          err);
  if (e->ctx == NULL) return err->status;
  t2s_dist_attach(e->comm, e->ctx, o->sync_bn);
  if ((st = t2s_optim_init(&e->opt, &e->m.params, &oc, err)) != T2S_OK) return st;
  return t2s_grad_sync_create(&e->sync, e->comm, &e->m.params,
                              (size_t)(o->bucket_mb * (1 << 20)), err);
}

static void free_env(step_env *e) {
  if (e->sync) t2s_grad_sync_destroy(e->sync);
  if (e->opt.params) t2s_optim_free(&e->opt);
  if (e->ctx) t2s_ctx_destroy(e->ctx);
  if (e->m.params.finalized) t2s_segmentor_free(&e->m);
}

/* A random image batch and a label map of class blocks, on the run's device. The data
 * is noise, so its element order is irrelevant and CUDA's NHWC needs no transpose. */
typedef struct batch_buf {
  t2s_tensor image, label;
  void *img, *lbl;
} batch_buf;

static t2s_status make_batch(batch_buf *b, const scaling_opts *o, int n, int rank,
                             t2s_error *err) {
  int64_t hw = (int64_t)o->crop_h * o->crop_w, ni = n * 3 * hw, nl = n * hw;
  int64_t ishape[4] = {n, 3, o->crop_h, o->crop_w}, lshape[3] = {n, o->crop_h, o->crop_w};
  float *img = malloc((size_t)ni * sizeof *img);
  uint8_t *lbl = malloc((size_t)nl);
  t2s_status st = img && lbl ? T2S_OK : t2s_error_set(err, T2S_ERR_NOMEM, "scaling: out of memory");
  t2s_rng_key key = t2s_rng_key_make(7, (uint64_t)rank, 0, 0);
  for (int64_t i = 0; st == T2S_OK && i < ni; i++) img[i] = t2s_rng_normal(key, (uint64_t)i);
  for (int64_t i = 0; st == T2S_OK && i < nl; i++) {
    int64_t y = (i % hw) / o->crop_w, x = i % o->crop_w;
    lbl[i] = (uint8_t)((y / 16 * 7 + x / 16 * 3 + i / hw) % o->classes);
  }
  b->img = st == T2S_OK ? t2s_device_malloc(o->device, (size_t)ni * sizeof(float), err) : NULL;
  b->lbl = b->img ? t2s_device_malloc(o->device, (size_t)nl, err) : NULL;
  if (st == T2S_OK && b->lbl == NULL) st = err->status;
  if (st == T2S_OK)
    st = t2s_device_copy(o->device, b->img, T2S_DEV_CPU, img, (size_t)ni * sizeof(float), err);
  if (st == T2S_OK) st = t2s_device_copy(o->device, b->lbl, T2S_DEV_CPU, lbl, (size_t)nl, err);
  free(img);
  free(lbl);
  t2s_tensor_init(&b->image, T2S_F32, o->device, 4, ishape, b->img);
  if (o->device == T2S_DEV_CUDA) b->image.layout = T2S_LAYOUT_NHWC;
  t2s_tensor_init(&b->label, T2S_U8, o->device, 3, lshape, b->lbl);
  return st;
}

static void free_batch(batch_buf *b, t2s_device dev) {
  if (b->img) t2s_device_free(dev, b->img);
  if (b->lbl) t2s_device_free(dev, b->lbl);
}

/* One step; adds its time and its exposed communication time to the sums. */
static t2s_status timed_step(step_env *e, batch_buf *b, double *step_s, double *wait_s,
                             t2s_error *err) {
  t2s_ctx *ctx = e->ctx;
  t2s_device dev = e->o->device;
  double t0 = t2s_dist_now();
  t2s_status st = t2s_params_zero_grad(&e->m.params, err);
  if (st != T2S_OK) return st;
  t2s_seg_out out;
  t2s_segmentor_forward(ctx, &e->m, &b->image, &out);
  t2s_tensor *up = t2s_resize_bilinear(ctx, out.logits, e->o->crop_h, e->o->crop_w, 0);
  t2s_ce_args ce = {255, T2S_CE_MEAN_VALID, 0};
  t2s_tensor *loss = t2s_cross_entropy(ctx, up, &b->label, NULL, NULL, &ce);
  if (ctx->err.status != T2S_OK) return t2s_error_set(err, ctx->err.status, "%s", ctx->err.msg);
  if ((st = t2s_grad_sync_begin(e->sync, ctx, 1, err)) != T2S_OK) return st;
  if (t2s_backward(ctx, loss, 1.0f) != T2S_OK || t2s_device_sync(dev, &ctx->err) != T2S_OK)
    return t2s_error_set(err, ctx->err.status, "%s", ctx->err.msg);
  double t1 = t2s_dist_now();
  if ((st = t2s_grad_sync_finish(e->sync, err)) != T2S_OK) return st;
  if ((st = t2s_device_sync(dev, err)) != T2S_OK) return st;
  double t2 = t2s_dist_now();
  if ((st = t2s_optim_step(&e->opt, 1e-3, NULL, err)) != T2S_OK) return st;
  if ((st = t2s_device_sync(dev, err)) != T2S_OK) return st;
  *step_s += t2s_dist_now() - t0;
  *wait_s += t2 - t1;
  t2s_ctx_end_pass(ctx);
  return T2S_OK;
}

/* Mean step time of the slowest rank and mean wait over ranks, at n images per rank. */
static t2s_status measure(step_env *e, int n, scaling_result *r, t2s_error *err) {
  const scaling_opts *o = e->o;
  t2s_comm *c = e->comm;
  batch_buf b = {0};
  double step = 0, wait = 0, junk_step = 0, junk_wait = 0;
  t2s_status st = make_batch(&b, o, n, c->rank, err);
  for (int it = 0; st == T2S_OK && it < o->warmup; it++)
    st = timed_step(e, &b, &junk_step, &junk_wait, err);
  if (st == T2S_OK) st = t2s_dist_barrier(c, err);
  for (int it = 0; st == T2S_OK && it < o->iters; it++) st = timed_step(e, &b, &step, &wait, err);
  free_batch(&b, o->device);
  step /= o->iters;
  wait /= o->iters;
  if (st == T2S_OK) st = t2s_dist_max_f64(c, &step, 1, err); /* the slowest rank's step */
  if (st == T2S_OK) st = t2s_dist_allreduce_f64(c, &wait, 1, err);
  if (st != T2S_OK) return st;
  *r = (scaling_result){c->world, n, n * c->world, t2s_grad_sync_buckets(e->sync),
                        t2s_grad_sync_started_early(e->sync), step * 1e3,
                        wait / c->world * 1e3, n * c->world / step,
                        (double)e->m.params.numel * sizeof(float) / (1 << 20), ""};
  snprintf(r->backend, sizeof r->backend, "%s", t2s_comm_backend_name(c->backend));
  return T2S_OK;
}

static void print_result(const char *mode, const scaling_result *r, const scaling_opts *o,
                         double efficiency, FILE *f) {
  fprintf(f,
          "{\"bench\": \"scaling\", \"mode\": \"%s\", \"backend\": \"%s\", \"device\": \"%s\", "
          "\"ranks\": %d, \"batch_per_rank\": %d, \"global_batch\": %d, \"step_ms\": %.3f, "
          "\"images_per_s\": %.4f, \"comm_wait_ms\": %.3f, \"comm_share\": %.4f, "
          "\"grad_mb\": %.3f, \"buckets\": %d, \"buckets_early\": %d, \"threads\": %d",
          mode, r->backend, t2s_device_name(o->device), r->ranks,
          r->batch_per_rank, r->global_batch, r->step_ms, r->images_per_s, r->wait_ms,
          r->step_ms > 0 ? r->wait_ms / r->step_ms : 0.0, r->grad_mb, r->buckets, r->early,
          o->threads);
  if (efficiency >= 0) fprintf(f, ", \"efficiency\": %.4f", efficiency);
  fprintf(f, "}\n");
  fflush(f);
}

static int run_worker(const scaling_opts *o) {
  openblas_set_num_threads(o->threads);
  omp_set_num_threads(o->threads);
  t2s_comm c;
  t2s_error err = {0};
  t2s_dist_cfg dc = t2s_dist_default_cfg();
  dc.device = o->device;
  dc.quiet = 1;
  if (t2s_dist_init(&c, &dc, &err) != T2S_OK) {
    fprintf(stderr, "t2sda_bench scaling: %s\n", err.msg);
    return 1;
  }
  step_env e;
  memset(&e, 0, sizeof e);
  e.comm = &c;
  e.o = o;
  t2s_status st = T2S_OK;
  if (o->global_batch % c.world != 0)
    st = t2s_error_set(&err, T2S_ERR_INVALID, "--global-batch %d does not split over %d ranks: "
                       "give a multiple of every rank count", o->global_batch, c.world);
  if (st == T2S_OK) st = build_env(&e, &err);
  t2s_error agreed = {0};
  if ((st = t2s_dist_check_all(&c, st, err.msg, &agreed)) != T2S_OK) err = agreed;
  scaling_result weak, strong;
  if (st == T2S_OK) st = measure(&e, o->batch, &weak, &err);
  if (st == T2S_OK) st = measure(&e, o->global_batch / c.world, &strong, &err);
  if (st == T2S_OK && c.rank == 0) {
    print_result("weak", &weak, o, -1, stdout);
    print_result("strong", &strong, o, -1, stdout);
  }
  free_env(&e);
  if (st != T2S_OK) t2s_dist_abort(&c, err.msg);
  t2s_dist_finalize(&c);
  return st == T2S_OK ? 0 : 1;
}

/* ---- driver: one launch per rank count -------------------------------------------- */

static double json_num(const char *line, const char *key) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\": ", key);
  const char *p = strstr(line, pat);
  return p ? strtod(p + strlen(pat), NULL) : -1;
}

static int parse_result(const char *line, scaling_result *r) {
  *r = (scaling_result){(int)json_num(line, "ranks"), (int)json_num(line, "batch_per_rank"),
                        (int)json_num(line, "global_batch"), (int)json_num(line, "buckets"),
                        (int)json_num(line, "buckets_early"), json_num(line, "step_ms"),
                        json_num(line, "comm_wait_ms"), json_num(line, "images_per_s"),
                        json_num(line, "grad_mb"), "?"};
  const char *b = strstr(line, "\"backend\": \"");
  if (b) sscanf(b + 12, "%15[a-z]", r->backend);
  return r->ranks > 0 && r->step_ms > 0;
}

/* Appends ' arg' in single quotes for /bin/sh (a quote inside becomes '\''). */
static int append_quoted(char *cmd, size_t size, const char *arg) {
  size_t len = strlen(cmd);
  if (len + 3 >= size) return 0;
  cmd[len++] = ' ';
  cmd[len++] = '\'';
  for (const char *p = arg; *p; p++) {
    const char *piece = *p == '\'' ? "'\\''" : NULL;
    size_t add = piece ? 4 : 1;
    if (len + add + 2 >= size) return 0;
    if (piece) memcpy(cmd + len, piece, add);
    else cmd[len] = *p;
    len += add;
  }
  cmd[len++] = '\'';
  cmd[len] = '\0';
  return 1;
}

/* Builds `LAUNCHER k SELF scaling --worker <the options except the driver's own>`. */
static int worker_command(char *cmd, size_t size, const scaling_opts *o, int k, int argc,
                          char **argv) {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) {
    fprintf(stderr, "t2sda_bench scaling: cannot find this executable (/proc/self/exe): run "
                    "`mpirun -np K t2sda_bench scaling` for each K yourself\n");
    return 0;
  }
  self[n] = '\0';
  snprintf(cmd, size, "%s %d", o->launcher, k);
  int ok = append_quoted(cmd, size, self) && append_quoted(cmd, size, "scaling") &&
           append_quoted(cmd, size, "--worker");
  for (int i = 1; ok && i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--ranks") == 0 || strcmp(a, "--launcher") == 0 || strcmp(a, "--json") == 0) {
      i++;
      continue;
    }
    if (strcmp(a, "--global-batch") == 0) i++;
    else ok = append_quoted(cmd, size, a);
  }
  char gb[32];
  snprintf(gb, sizeof gb, "%d", o->global_batch);
  ok = ok && append_quoted(cmd, size, "--global-batch") && append_quoted(cmd, size, gb);
  if (!ok) fprintf(stderr, "t2sda_bench scaling: the worker command line is too long\n");
  return ok;
}

/* Runs one launch and reads its weak and strong lines into r[0], r[1]. */
static int launch_one(const char *cmd, scaling_result r[2]) {
  FILE *p = popen(cmd, "r");
  if (p == NULL) {
    perror("t2sda_bench scaling: popen");
    return 0;
  }
  char line[2048];
  int got = 0;
  while (fgets(line, sizeof line, p)) {
    int weak = strstr(line, "\"mode\": \"weak\"") != NULL;
    int strong = strstr(line, "\"mode\": \"strong\"") != NULL;
    if ((weak || strong) && parse_result(line, &r[strong])) got |= 1 << strong;
    else fputs(line, stdout);
  }
  int rc = pclose(p);
  if (rc != 0 || got != 3) {
    fprintf(stderr, "t2sda_bench scaling: `%s` failed (status %d%s); its messages are above\n",
            cmd, rc, got != 3 ? ", no result" : "");
    return 0;
  }
  return 1;
}

static void print_table(const scaling_opts *o, scaling_result res[][2], int n, FILE *json) {
  printf("%-7s %5s %10s %7s %10s %10s %10s %7s %10s\n", "mode", "ranks", "batch/rank", "global",
         "step (ms)", "images/s", "wait (ms)", "wait %", "efficiency");
  for (int m = 0; m < 2; m++)
    for (int i = 0; i < n; i++) {
      const scaling_result *r = &res[i][m], *r0 = &res[0][m];
      double eff = (r->images_per_s / r->ranks) / (r0->images_per_s / r0->ranks);
      printf("%-7s %5d %10d %7d %10.1f %10.2f %10.2f %6.1f%% %9.1f%%\n", m ? "strong" : "weak",
             r->ranks, r->batch_per_rank, r->global_batch, r->step_ms, r->images_per_s,
             r->wait_ms, 100 * r->wait_ms / r->step_ms, 100 * eff);
      if (json) print_result(m ? "strong" : "weak", r, o, eff, json);
    }
  printf("gradients: %.2f MiB per step in %d bucket(s); efficiency relative to %d rank(s)\n",
         res[0][0].grad_mb, res[n - 1][0].buckets, o->ranks[0]);
}

static int run_driver(const scaling_opts *o, int argc, char **argv) {
  scaling_result res[MAX_RANK_COUNTS][2];
  for (int i = 0; i < o->n_ranks; i++)
    if (o->global_batch % o->ranks[i] != 0) {
      fprintf(stderr, "t2sda_bench scaling: --global-batch %d does not split over %d ranks: give "
                      "a multiple of every count in --ranks\n", o->global_batch, o->ranks[i]);
      return 2;
    }
  FILE *json = o->json ? fopen(o->json, "a") : NULL;
  if (o->json && json == NULL) {
    fprintf(stderr, "t2sda_bench scaling: cannot append to %s\n", o->json);
    return 1;
  }
  int ok = 1;
  for (int i = 0; ok && i < o->n_ranks; i++) {
    char cmd[8192];
    fprintf(stderr, "t2sda_bench scaling: %d rank(s)...\n", o->ranks[i]);
    ok = worker_command(cmd, sizeof cmd, o, o->ranks[i], argc, argv) && launch_one(cmd, res[i]);
  }
  if (ok) {
    int mit = o->backbone && strcmp(o->backbone, "resnet_v1c") != 0;
    char net[96];
    if (mit) snprintf(net, sizeof net, "%s", o->backbone);
    else snprintf(net, sizeof net, "resnet%d_v1c (base %d)", o->depth, o->base_channels);
    printf("t2sda_bench scaling: %s + %s, %d classes, crop %dx%d, %d thread(s) per rank, "
           "device %s\n", net, o->head ? o->head : mit ? "daformer_sepaspp" : "dlv2",
           o->classes, o->crop_w, o->crop_h, o->threads, t2s_device_name(o->device));
    print_table(o, res, o->n_ranks, json);
  }
  if (json) fclose(json);
  return ok ? 0 : 1;
}

int t2s_bench_scaling(int argc, char **argv) {
  scaling_opts o = {{1, 2}, 2, "mpirun --bind-to none -np", NULL, NULL, NULL, 0, 2, 0, 18, 16,
                    64, 64, 19, 5, 2, 1, 0, 25.0, T2S_DEV_CPU};
  if (!parse_opts(argc, argv, &o)) return 2;
  char launcher[160];
  if (strcmp(o.launcher, "mpirun --bind-to none -np") == 0) {
    /* Open MPI refuses to start as root without --allow-run-as-root (containers, CI)
     * and more ranks than cores without --oversubscribe: add them when needed */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int most = 1;
    for (int k = 0; k < o.n_ranks; k++) most = o.ranks[k] > most ? o.ranks[k] : most;
    snprintf(launcher, sizeof launcher, "mpirun --bind-to none%s%s -np",
             geteuid() == 0 ? " --allow-run-as-root" : "",
             cores > 0 && most > cores ? " --oversubscribe" : "");
    o.launcher = launcher;
  }
  /* A launcher's environment (the variables of dist/comm.h's launch detection) or
   * --worker makes this process a worker; otherwise it launches the workers. */
  int launched = getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK") ||
                 getenv("PMI_SIZE");
  return o.worker || launched ? run_worker(&o) : run_driver(&o, argc, argv);
}
