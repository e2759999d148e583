/* `t2sda_bench data` (data/bench_data.h). */
#include "tools/bench/bench_data.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data/loader.h"
#include "data/shard_fast.h"

#define MAX_THREAD_COUNTS 8

typedef struct data_opts {
  char shards[1][512];
  int crop_w, crop_h, batch, iters, warmup, rare_class, labels;
  int threads[MAX_THREAD_COUNTS], n_threads;
} data_opts;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int parse_int(const char *flag, const char *s, int lo, int hi, int *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || (*end && *end != ',') || v < lo || v > hi) {
    fprintf(stderr, "t2sda_bench data: %s expects integers in %d..%d, got '%s'\n", flag, lo, hi, s);
    return 0;
  }
  *out = (int)v;
  return 1;
}

static int parse_threads(const char *s, data_opts *o) {
  o->n_threads = 0;
  while (*s && o->n_threads < MAX_THREAD_COUNTS) {
    if (!parse_int("--threads", s, 0, 64, &o->threads[o->n_threads++])) return 0;
    const char *comma = strchr(s, ',');
    if (comma == NULL) break;
    s = comma + 1;
  }
  return o->n_threads > 0;
}

static int parse_opts(int argc, char **argv, data_opts *o) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int need = strcmp(a, "--crop") == 0 ? 2 : (strcmp(a, "--rare-class") == 0 ||
                                               strcmp(a, "--no-labels") == 0 ? 0 : 1);
    if (strncmp(a, "--", 2) == 0 && i + need >= argc) {
      fprintf(stderr, "t2sda_bench data: %s needs %d value(s)\n", a, need);
      return 0;
    }
    int ok = 1;
    if (strcmp(a, "--shards") == 0) snprintf(o->shards[0], sizeof o->shards[0], "%s", argv[++i]);
    else if (strcmp(a, "--crop") == 0) {
      ok = parse_int(a, argv[i + 1], 16, 8192, &o->crop_w) &&
           parse_int(a, argv[i + 2], 16, 8192, &o->crop_h);
      i += 2;
    } else if (strcmp(a, "--batch") == 0) ok = parse_int(a, argv[++i], 1, 256, &o->batch);
    else if (strcmp(a, "--iters") == 0) ok = parse_int(a, argv[++i], 1, 100000, &o->iters);
    else if (strcmp(a, "--warmup") == 0) ok = parse_int(a, argv[++i], 0, 100000, &o->warmup);
    else if (strcmp(a, "--threads") == 0) ok = parse_threads(argv[++i], o);
    else if (strcmp(a, "--rare-class") == 0) o->rare_class = 1;
    else if (strcmp(a, "--no-labels") == 0) o->labels = 0;
    else {
      fprintf(stderr, "t2sda_bench data: unknown option '%s' (see data/bench_data.h)\n", a);
      return 0;
    }
    if (!ok) return 0;
  }
  return 1;
}

static t2s_loader_cfg loader_cfg(const data_opts *o, int workers) {
  t2s_loader_cfg c = t2s_loader_cfg_default();
  c.aug.crop_w = o->crop_w;
  c.aug.crop_h = o->crop_h;
  c.samples_per_gpu = o->batch;
  c.workers = workers;
  c.labels = o->labels;
  if (!o->labels) c.aug.cat_max_ratio = 1.0;
  c.rare_class = o->rare_class;
  c.seed = 1;
  return c;
}

/* Seconds per sample in each stage, one thread, samples 0..n-1 of iteration 0.. */
static int stage_split(t2s_dataset *ds, const data_opts *o, int n) {
  t2s_loader_cfg c = loader_cfg(o, 0);
  t2s_shard_chunk ic = {0}, lc = {0};
  t2s_aug_scratch sc = {0};
  const t2s_shard_meta *m = t2s_shard_info(ds->shards[0]);
  size_t npix = (size_t)m->width * m->height;
  uint8_t *rgb = malloc(npix * 3), *lab = malloc(npix);
  float *img = malloc(sizeof(float) * 3 * (size_t)o->crop_w * o->crop_h);
  uint8_t *olab = malloc((size_t)o->crop_w * o->crop_h);
  double t_read = 0, t_inflate = 0, t_aug = 0;
  t2s_error err = {0};
  int ok = rgb && lab && img && olab;
  for (int i = 0; ok && i < n; i++) {
    int64_t local = 0;
    t2s_shard *s = t2s_dataset_locate(ds, (int64_t)i * 7919 % ds->count, &local);
    if (t2s_shard_info(s)->width != m->width || t2s_shard_info(s)->height != m->height) continue;
    double t0 = now_s();
    ok = t2s_shard_read_raw_chunk(s, "image", local, &ic, &err) == T2S_OK &&
         (!o->labels || t2s_shard_read_raw_chunk(s, "label", local, &lc, &err) == T2S_OK);
    double t1 = now_s();
    ok = ok && t2s_shard_decode_chunk(&ic, rgb, npix * 3, &err) == T2S_OK &&
         (!o->labels || t2s_shard_decode_chunk(&lc, lab, npix, &err) == T2S_OK);
    double t2 = now_s();
    t2s_aug_key key = {1, 0, i, 0};
    ok = ok && t2s_augment_sample(&c.aug, key, rgb, o->labels ? lab : NULL, m->width, m->height,
                                  -1, img, olab, &sc, NULL, &err) == T2S_OK;
    double t3 = now_s();
    t_read += t1 - t0;
    t_inflate += t2 - t1;
    t_aug += t3 - t2;
  }
  if (ok)
    printf("per sample, one thread: chunk read (HDF5 lock) %.2f ms, inflate %.2f ms, "
           "crop/flip/convert %.2f ms\n", 1e3 * t_read / n, 1e3 * t_inflate / n, 1e3 * t_aug / n);
  else
    fprintf(stderr, "t2sda_bench data: %s\n", err.msg);
  free(rgb); free(lab); free(img); free(olab);
  t2s_shard_chunk_free(&ic);
  t2s_shard_chunk_free(&lc);
  t2s_aug_scratch_free(&sc);
  return ok;
}

static int run_threads(t2s_dataset *ds, const data_opts *o, int workers, double *ips) {
  t2s_loader_cfg c = loader_cfg(o, workers);
  t2s_loader *L = NULL;
  t2s_error err = {0};
  if (t2s_loader_open(&L, ds, &c, &err) != T2S_OK) {
    fprintf(stderr, "t2sda_bench data: %s\n", err.msg);
    return 0;
  }
  t2s_batch b;
  double t0 = 0;
  int ok = 1;
  for (int t = 0; ok && t < o->warmup + o->iters; t++) {
    if (t == o->warmup) t0 = now_s();
    ok = t2s_loader_next(L, t, &b, &err) == T2S_OK;
  }
  double dt = now_s() - t0;
  t2s_loader_close(L);
  if (!ok) {
    fprintf(stderr, "t2sda_bench data: %s\n", err.msg);
    return 0;
  }
  *ips = (double)o->iters * o->batch / dt;
  return 1;
}

int t2s_bench_data(int argc, char **argv) {
  data_opts o = {.crop_w = 512, .crop_h = 512, .batch = 2, .iters = 30, .warmup = 2,
                 .labels = 1, .threads = {1, 2}, .n_threads = 2};
  snprintf(o.shards[0], sizeof o.shards[0], "/tmp/t2sda_bench_data/source-*.h5");
  if (!parse_opts(argc, argv, &o)) return 2;
  t2s_dataset ds;
  t2s_error err = {0};
  if (t2s_dataset_open(&ds, (const char(*)[512])o.shards, 1, "--shards", &err) != T2S_OK) {
    fprintf(stderr, "t2sda_bench data: %s\n(generate shards with: t2sda_synth "
            "/tmp/t2sda_bench_data --source 240 --target 0 --val 0 --size 1280 720 --shards 4)\n",
            err.msg);
    return 1;
  }
  printf("data: %lld images %dx%d in %d shards, crop %dx%d, batch %d, %s, %s\n",
         (long long)ds.count, ds.meta.width, ds.meta.height, ds.n_shards, o.crop_w, o.crop_h,
         o.batch, o.labels ? "image + label" : "image only",
         o.rare_class ? "rare class sampling" : "uniform epochs");
  int ok = stage_split(&ds, &o, 16);
  for (int i = 0; ok && i < o.n_threads; i++) {
    double ips = 0;
    ok = run_threads(&ds, &o, o.threads[i], &ips);
    if (ok)
      printf("loader threads %d: %.1f images/s (%d batches of %d after %d warm-up)\n",
             o.threads[i], ips, o.iters, o.batch, o.warmup);
  }
  t2s_dataset_close(&ds);
  return ok ? 0 : 1;
}
