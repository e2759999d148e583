/* `t2sda_bench data` (data/bench_data.h). */
#include "core/clock.h"
#include "tools/bench/bench_data.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <glob.h>
#include <sys/stat.h>

#include "data/loader.h"
#include "data/shard_fast.h"
#include "data/synth.h"

/* Without --shards: synthetic GTA5-sized shards, drawn once into this folder. */
#define DEFAULT_DIR "/tmp/t2sda_bench_data"
#define DEFAULT_SHARDS 4
#define DEFAULT_PER_SHARD 16

static const char *usage =
    "usage: t2sda_bench data [--shards GLOB] [--crop W H] [--batch B] [--iters N] [--warmup N]\n"
    "                        [--threads 1,2] [--rare-class] [--no-labels]\n"
    "  loader images/s for each thread count (0 = in the caller's thread), and the time per\n"
    "  sample of chunk read, inflate and augmentation. Without --shards, synthetic 1280x720\n"
    "  shards are drawn once into " DEFAULT_DIR " (a few seconds) and reused.\n";
#define MAX_THREAD_COUNTS 8

typedef struct data_opts {
  char shards[1][512];
  int crop_w, crop_h, batch, iters, warmup, rare_class, labels;
  int threads[MAX_THREAD_COUNTS], n_threads;
} data_opts;

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

/* 1: options read; 0: a usage error (reported); -1: --help was printed. */
static int parse_opts(int argc, char **argv, data_opts *o) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      fputs(usage, stdout);
      return -1;
    }
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
      fprintf(stderr, "t2sda_bench data: unknown option '%s'\n%s", a, usage);
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
    double t0 = t2s_clock_s();
    ok = t2s_shard_read_raw_chunk(s, "image", local, &ic, &err) == T2S_OK &&
         (!o->labels || t2s_shard_read_raw_chunk(s, "label", local, &lc, &err) == T2S_OK);
    double t1 = t2s_clock_s();
    ok = ok && t2s_shard_decode_chunk(&ic, rgb, npix * 3, &err) == T2S_OK &&
         (!o->labels || t2s_shard_decode_chunk(&lc, lab, npix, &err) == T2S_OK);
    double t2 = t2s_clock_s();
    t2s_aug_key key = {1, 0, i, 0};
    ok = ok && t2s_augment_sample(&c.aug, key, rgb, o->labels ? lab : NULL, m->width, m->height,
                                  -1, img, olab, &sc, NULL, &err) == T2S_OK;
    double t3 = t2s_clock_s();
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
    if (t == o->warmup) t0 = t2s_clock_s();
    ok = t2s_loader_next(L, t, &b, &err) == T2S_OK;
  }
  double dt = t2s_clock_s() - t0;
  t2s_loader_close(L);
  if (!ok) {
    fprintf(stderr, "t2sda_bench data: %s\n", err.msg);
    return 0;
  }
  *ips = (double)o->iters * o->batch / dt;
  return 1;
}

/* Draws DEFAULT_SHARDS x DEFAULT_PER_SHARD labelled synthetic source images
 * (1280 x 720, GTA5's size) into DEFAULT_DIR, each shard committed atomically. */
static t2s_status draw_default_shards(t2s_error *err) {
  if (mkdir(DEFAULT_DIR, 0777) != 0 && errno != EEXIST)
    return t2s_error_set(err, T2S_ERR_IO, "cannot create %s: %s", DEFAULT_DIR, strerror(errno));
  t2s_synth_cfg cfg = {1280, 720, 1, 0};
  t2s_shard_meta m;
  memset(&m, 0, sizeof m);
  m.num_classes = t2s_synth_class_count();
  for (int c = 0; c < m.num_classes; c++)
    snprintf(m.class_names[c], T2S_CLASS_NAME_MAX, "%s", t2s_synth_class_name(c));
  snprintf(m.domain, sizeof m.domain, "%s", t2s_synth_domain_name(T2S_SYNTH_SOURCE));
  snprintf(m.split, sizeof m.split, "train");
  m.has_label = 1, m.width = cfg.width, m.height = cfg.height;
  size_t px = (size_t)cfg.width * cfg.height;
  uint8_t *rgb = malloc(3 * px), *lab = malloc(px);
  t2s_status st = rgb && lab ? T2S_OK : t2s_error_set(err, T2S_ERR_NOMEM, "out of memory");
  for (int k = 0; k < DEFAULT_SHARDS && st == T2S_OK; k++) {
    char path[600];
    snprintf(path, sizeof path, "%s/source-%05d-of-%05d.h5", DEFAULT_DIR, k, DEFAULT_SHARDS);
    t2s_shard_writer *w = t2s_shard_writer_open(path, &m, 1, err);
    if (w == NULL) st = err->status;
    for (int i = 0; i < DEFAULT_PER_SHARD && st == T2S_OK; i++) {
      char name[32];
      uint64_t index = (uint64_t)(k * DEFAULT_PER_SHARD + i);
      snprintf(name, sizeof name, "synth_%06llu", (unsigned long long)index);
      st = t2s_synth_draw(&cfg, T2S_SYNTH_SOURCE, index, rgb, lab, err);
      if (st == T2S_OK) st = t2s_shard_writer_add(w, name, rgb, lab, err);
    }
    if (w != NULL) {
      if (st == T2S_OK) st = t2s_shard_writer_commit(w, err);
      else t2s_shard_writer_abort(w);
    }
  }
  free(rgb), free(lab);
  return st;
}

static int default_shards_exist(const char *pattern) {
  glob_t g;
  int n = glob(pattern, 0, NULL, &g) == 0 ? (int)g.gl_pathc : 0;
  globfree(&g);
  return n == DEFAULT_SHARDS;
}

int t2s_bench_data(int argc, char **argv) {
  data_opts o = {.crop_w = 512, .crop_h = 512, .batch = 2, .iters = 30, .warmup = 2,
                 .labels = 1, .threads = {1, 2}, .n_threads = 2};
  snprintf(o.shards[0], sizeof o.shards[0], DEFAULT_DIR "/source-*-of-%05d.h5", DEFAULT_SHARDS);
  char given[512];
  snprintf(given, sizeof given, "%s", o.shards[0]);
  int rc = parse_opts(argc, argv, &o);
  if (rc <= 0) return rc < 0 ? 0 : 2;
  t2s_error err = {0};
  if (strcmp(given, o.shards[0]) == 0 && !default_shards_exist(o.shards[0])) {
    printf("data: drawing %d synthetic 1280x720 images into %s (once)\n",
           DEFAULT_SHARDS * DEFAULT_PER_SHARD, DEFAULT_DIR);
    fflush(stdout);
    if (draw_default_shards(&err) != T2S_OK) {
      fprintf(stderr, "t2sda_bench data: %s\n", err.msg);
      return 1;
    }
  }
  t2s_dataset ds;
  if (t2s_dataset_open(&ds, (const char(*)[512])o.shards, 1, "--shards", &err) != T2S_OK) {
    fprintf(stderr, "t2sda_bench data: %s\n", err.msg);
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
