/* t2sda_synth: writes the synthetic domain-shift data set (data/synth.h) as shards.
 *
 *   t2sda_synth OUT --source N --target N --val N --size W H --seed S
 *               [--shards K] [--threads T] [--deflate L] [--styles N | --styles a,b,...]
 *
 * OUT/source-0000i-of-0000K.h5  labelled source domain   (domain "synthetic_source", split "train")
 * OUT/target-0000i-of-0000K.h5  unlabelled target domain (domain "synthetic_target", split "train")
 * OUT/val-0000i-of-0000K.h5     labelled target images   (domain "synthetic_target", split "val"),
 *                               target indices from T2S_SYNTH_VAL_INDEX on: never a training image.
 * OUT/<style>_val-0000i-of-0000K.h5  with --styles: --val labelled images of each DG style
 *                               (data/synth.h: fog, night, snow, storm; domain
 *                               "synthetic_<style>", split "val"), one validation set each.
 *                               The other files are the same bytes with or without --styles.
 * A split with fewer than K images gets one shard per image; an empty split is skipped.
 *
 * T threads (default 2) draw and compress images (no HDF5 call); the main thread
 * appends the compressed chunks, so HDF5 is entered from one thread only. Batch b+1
 * is drawn while batch b is written. Image i of a split is the same bytes whatever T.
 * Progress (images, images/s, ETA) goes to stderr every 10 s and at the end of a split. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/clock.h"
#include "data/shard_fast.h"
#include "data/synth.h"
#include "launch/progress.h"
#include "core/version.h"

#define BATCH 32
#define MAX_THREADS 64

typedef struct split {
  const char *name, *split;
  t2s_synth_domain domain;
  int style;            /* a DG style (data/synth.h), or -1: the domain's own look */
  uint64_t first_index;
  int labelled;
  int64_t count;
} split;

typedef struct batch {
  int64_t start, n;
  t2s_shard_item items[BATCH];
} batch;

typedef struct worker {
  pthread_t thread;
  const t2s_synth_cfg *cfg;
  const split *sp;
  const t2s_shard_meta *meta;
  int deflate, k, threads;
  batch *b;
  uint8_t *rgb, *label;
  t2s_status st;
  t2s_error err;
} worker;

/* Draws and compresses images k, k + T, ... of the batch. */
static void *worker_run(void *arg) {
  worker *w = arg;
  for (int64_t j = w->k; j < w->b->n && w->st == T2S_OK; j += w->threads) {
    uint64_t index = w->sp->first_index + (uint64_t)(w->b->start + j);
    w->st = w->sp->style >= 0
                ? t2s_synth_draw_style(w->cfg, w->sp->style, index, w->rgb, w->label, &w->err)
                : t2s_synth_draw(w->cfg, w->sp->domain, index, w->rgb, w->label, &w->err);
    if (w->st == T2S_OK)
      w->st = t2s_shard_encode_item(w->meta, w->deflate, w->rgb, w->sp->labelled ? w->label : NULL,
                                    &w->b->items[j], &w->err);
  }
  return NULL;
}

static int start_batch(worker *ws, int threads, batch *b, int64_t start, int64_t count) {
  b->start = start;
  b->n = count - start < BATCH ? count - start : BATCH;
  memset(b->items, 0, sizeof b->items);
  for (int k = 0; k < threads; k++) {
    ws[k].b = b;
    if (pthread_create(&ws[k].thread, NULL, worker_run, &ws[k]) != 0) {
      for (int j = 0; j < k; j++) pthread_join(ws[j].thread, NULL);
      fprintf(stderr, "t2sda_synth: could not start drawing thread %d of %d\n", k, threads);
      return 0;
    }
  }
  return 1;
}

static int join_batch(worker *ws, int threads) {
  int ok = 1;
  for (int k = 0; k < threads; k++) {
    pthread_join(ws[k].thread, NULL);
    if (ws[k].st != T2S_OK) {
      fprintf(stderr, "t2sda_synth: %s\n", ws[k].err.msg);
      ok = 0;
    }
  }
  return ok;
}

static void free_batch(batch *b) {
  for (int64_t j = 0; j < b->n; j++) t2s_shard_item_free(&b->items[j]);
  b->n = 0;
}

typedef struct sink {
  const char *out;
  const split *sp;
  const t2s_shard_meta *meta;
  int shards, deflate, shard;
  t2s_shard_writer *w;
} sink;

/* Image g of the split goes to shard floor(g K / N): shard s holds
 * [ceil(s N / K), ceil((s + 1) N / K)). */
static int64_t shard_first(const sink *k, int s) {
  return ((int64_t)s * k->sp->count + k->shards - 1) / k->shards;
}

static t2s_status sink_add(sink *k, int64_t g, const t2s_shard_item *item, t2s_error *err) {
  if (!k->w) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s-%05d-of-%05d.h5", k->out, k->sp->name, k->shard, k->shards);
    k->w = t2s_shard_writer_open(path, k->meta, k->deflate, err);
    if (!k->w) return err->status ? err->status : T2S_ERR_IO;
  }
  char name[64];
  snprintf(name, sizeof name, "%s_%06lld", k->sp->name, (long long)g);
  t2s_status st = t2s_shard_writer_add_item(k->w, name, item, err);
  if (st == T2S_OK && g + 1 == shard_first(k, k->shard + 1)) {
    st = t2s_shard_writer_commit(k->w, err);
    k->w = NULL;
    k->shard++;
  }
  return st;
}

static t2s_status write_batch(sink *k, const batch *b, t2s_error *err) {
  for (int64_t j = 0; j < b->n; j++) {
    t2s_status st = sink_add(k, b->start + j, &b->items[j], err);
    if (st != T2S_OK) return st;
  }
  return T2S_OK;
}

static void fill_meta(const t2s_synth_cfg *cfg, const split *sp, t2s_shard_meta *m) {
  memset(m, 0, sizeof *m);
  m->num_classes = t2s_synth_class_count();
  m->ignore_index = 255;
  for (int c = 0; c < m->num_classes; c++)
    snprintf(m->class_names[c], T2S_CLASS_NAME_MAX, "%s", t2s_synth_class_name(c));
  if (sp->style >= 0)
    snprintf(m->domain, sizeof m->domain, "synthetic_%s", t2s_synth_style_name(sp->style));
  else
    snprintf(m->domain, sizeof m->domain, "%s", t2s_synth_domain_name(sp->domain));
  snprintf(m->split, sizeof m->split, "%s", sp->split);
  m->has_label = sp->labelled;
  m->width = cfg->width;
  m->height = cfg->height;
}

/* Draws and writes one split, pipelined: batch b + 1 is drawn while batch b is written. */
static int write_split(const char *out, const t2s_synth_cfg *cfg, const split *sp, int shards,
                       int threads, int deflate) {
  t2s_shard_meta meta;
  fill_meta(cfg, sp, &meta);
  size_t px = (size_t)cfg->width * (size_t)cfg->height;
  worker ws[MAX_THREADS];
  batch *bufs = calloc(2, sizeof *bufs);
  int ok = bufs != NULL;
  for (int k = 0; k < threads; k++) {
    ws[k] = (worker){.cfg = cfg, .sp = sp, .meta = &meta, .deflate = deflate, .k = k,
                     .threads = threads, .rgb = malloc(3 * px), .label = malloc(px)};
    if (!ws[k].rgb || !ws[k].label) ok = 0;
  }
  sink snk = {.out = out, .sp = sp, .meta = &meta, .deflate = deflate,
              .shards = sp->count < shards ? (int)sp->count : shards};
  t2s_error err = {0};
  if (!ok) fprintf(stderr, "t2sda_synth: no memory for the drawing buffers\n");
  char what[64];
  snprintf(what, sizeof what, "t2sda_synth: %s", sp->name);
  t2s_progress prog;
  t2s_progress_start(&prog, stderr, what, sp->count, 10.0);
  ok = ok && start_batch(ws, threads, &bufs[0], 0, sp->count) && join_batch(ws, threads);
  for (int64_t start = 0, b = 0; ok && start < sp->count; start += BATCH, b++) {
    batch *cur = &bufs[b & 1], *next = &bufs[(b + 1) & 1];
    int drawing = start + BATCH < sp->count && start_batch(ws, threads, next, start + BATCH, sp->count);
    if (start + BATCH < sp->count && !drawing) ok = 0;
    if (ok && write_batch(&snk, cur, &err) != T2S_OK) {
      fprintf(stderr, "t2sda_synth: %s\n", err.msg);
      ok = 0;
    }
    if (drawing && !join_batch(ws, threads)) ok = 0;
    free_batch(cur);
    if (ok) t2s_progress_update(&prog, start + BATCH < sp->count ? start + BATCH : sp->count);
  }
  if (bufs) free_batch(&bufs[0]), free_batch(&bufs[1]);
  free(bufs);
  if (snk.w) t2s_shard_writer_abort(snk.w);
  for (int k = 0; k < threads; k++) free(ws[k].rgb), free(ws[k].label);
  return ok;
}

static int parse_i64(const char *flag, const char *s, long long lo, long long hi, long long *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || *end || !*s || v < lo || v > hi) {
    fprintf(stderr, "t2sda_synth: %s expects an integer in %lld..%lld, got '%s'\n", flag, lo, hi, s);
    return 0;
  }
  *out = v;
  return 1;
}

typedef struct opts {
  const char *out;
  long long source, target, val, width, height, seed, shards, threads, deflate;
  int styles[T2S_SYNTH_NUM_STYLES], nstyles; /* DG styles to draw, in order */
  int thin;                                  /* --thin */
} opts;

static const char *usage =
    "usage: t2sda_synth OUT --source N --target N --val N --size W H --seed S\n"
    "                   [--shards K] [--threads T] [--deflate L]\n"
    "  writes the synthetic domain-shift data set as shards:\n"
    "    OUT/source-*.h5  labelled source images     OUT/target-*.h5  unlabelled target images\n"
    "    OUT/val-*.h5     labelled target images (never a training image)\n"
    "  --size W H   image size (%d..%d)      --seed S     the data set's seed\n"
    "  --shards K   shards per split (default 1)   --threads T  drawing threads (default 2)\n"
    "  --deflate L  zlib level 1-4 (default 1)\n"
    "  --thin       thin poles, half-size signs and lights, more poles: small objects that\n"
    "               need high resolution (the HRDA benchmark)\n"
    "  --styles N | --styles NAME,...  also draw --val labelled images of DG styles (the first\n"
    "               N of fog,night,snow,storm, or the named ones) as OUT/<style>_val-*.h5\n";

/* "--styles 3" (the first three) or "--styles night,storm". */
static int parse_styles(const char *s, opts *o) {
  long long n;
  if (s[0] >= '0' && s[0] <= '9') {
    if (!parse_i64("--styles", s, 0, T2S_SYNTH_NUM_STYLES, &n)) return 0;
    for (o->nstyles = 0; o->nstyles < (int)n; o->nstyles++) o->styles[o->nstyles] = o->nstyles;
    return 1;
  }
  char buf[256];
  snprintf(buf, sizeof buf, "%s", s);
  o->nstyles = 0;
  for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
    int k = t2s_synth_style_find(tok);
    int dup = 0;
    for (int j = 0; j < o->nstyles; j++) dup |= o->styles[j] == k;
    if (k < 0 || dup) {
      fprintf(stderr, "t2sda_synth: --styles: %s style '%s' (the styles are fog, night, snow, "
              "storm; or give a count 0..%d)\n", k < 0 ? "unknown" : "repeated", tok,
              T2S_SYNTH_NUM_STYLES);
      return 0;
    }
    o->styles[o->nstyles++] = k;
  }
  return 1;
}

static int parse_args(int argc, char **argv, opts *o) {
  *o = (opts){.source = -1, .target = -1, .val = -1, .width = -1, .height = -1, .seed = -1,
              .shards = 1, .threads = 2, .deflate = 1};
  const long long big = 1000000000LL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int need = strcmp(a, "--size") == 0 ? 2 : strcmp(a, "--thin") == 0 ? 0 : 1, ok = 1;
    if (strncmp(a, "--", 2) != 0) {
      if (o->out) {
        fprintf(stderr, "t2sda_synth: a second output folder '%s' (the first was '%s')\n", a, o->out);
        return 0;
      }
      o->out = a;
      continue;
    }
    if (i + need >= argc) {
      fprintf(stderr, "t2sda_synth: %s needs %d value(s)\n", a, need);
      return 0;
    }
    if (strcmp(a, "--thin") == 0) o->thin = 1;
    else if (strcmp(a, "--source") == 0) ok = parse_i64(a, argv[++i], 0, big, &o->source);
    else if (strcmp(a, "--target") == 0) ok = parse_i64(a, argv[++i], 0, big, &o->target);
    else if (strcmp(a, "--val") == 0) ok = parse_i64(a, argv[++i], 0, big, &o->val);
    else if (strcmp(a, "--seed") == 0) ok = parse_i64(a, argv[++i], 0, (long long)1 << 62, &o->seed);
    else if (strcmp(a, "--shards") == 0) ok = parse_i64(a, argv[++i], 1, 99999, &o->shards);
    else if (strcmp(a, "--threads") == 0) ok = parse_i64(a, argv[++i], 1, MAX_THREADS, &o->threads);
    else if (strcmp(a, "--deflate") == 0) ok = parse_i64(a, argv[++i], 1, 4, &o->deflate);
    else if (strcmp(a, "--styles") == 0) ok = parse_styles(argv[++i], o);
    else if (strcmp(a, "--size") == 0) {
      ok = parse_i64(a, argv[i + 1], T2S_SYNTH_MIN_SIZE, T2S_SYNTH_MAX_SIZE, &o->width) &&
           parse_i64(a, argv[i + 2], T2S_SYNTH_MIN_SIZE, T2S_SYNTH_MAX_SIZE, &o->height);
      i += 2;
    } else {
      fprintf(stderr, "t2sda_synth: unknown option '%s' (t2sda_synth --help lists them)\n", a);
      return 0;
    }
    if (!ok) return 0;
  }
  if (!o->out || o->source < 0 || o->target < 0 || o->val < 0 || o->width < 0 || o->seed < 0) {
    fprintf(stderr, usage, T2S_SYNTH_MIN_SIZE, T2S_SYNTH_MAX_SIZE);
    return 0;
  }
  return 1;
}

int main(int argc, char **argv) {
  /* line-buffered even into a file or pipe: a run killed outright (kill -9, OOM) must
   * not lose the progress lines it printed last */
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc >= 2 && strcmp(argv[1], "--version") == 0) return puts(T2S_VERSION_LINE("t2sda_synth")) == EOF;
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      printf(usage, T2S_SYNTH_MIN_SIZE, T2S_SYNTH_MAX_SIZE);
      return 0;
    }
  opts o;
  if (!parse_args(argc, argv, &o)) return 2;
  if (mkdir(o.out, 0777) != 0 && errno != EEXIST) {
    fprintf(stderr, "t2sda_synth: cannot create the output folder '%s': %s\n", o.out, strerror(errno));
    return 1;
  }
  t2s_synth_cfg cfg = {(int)o.width, (int)o.height, (uint64_t)o.seed, o.thin};
  char style_names[T2S_SYNTH_NUM_STYLES][32];
  split splits[3 + T2S_SYNTH_NUM_STYLES] = {
      {"source", "train", T2S_SYNTH_SOURCE, -1, 0, 1, o.source},
      {"target", "train", T2S_SYNTH_TARGET, -1, 0, 0, o.target},
      {"val", "val", T2S_SYNTH_TARGET, -1, T2S_SYNTH_VAL_INDEX, 1, o.val},
  };
  for (int k = 0; k < o.nstyles; k++) {
    snprintf(style_names[k], sizeof style_names[k], "%s_val", t2s_synth_style_name(o.styles[k]));
    splits[3 + k] = (split){style_names[k], "val", T2S_SYNTH_TARGET, o.styles[k], 0, 1, o.val};
  }
  double t0 = t2s_clock_s();
  int64_t total = 0;
  for (int i = 0; i < 3 + o.nstyles; i++) {
    if (splits[i].count == 0) continue;
    double t = t2s_clock_s();
    if (!write_split(o.out, &cfg, &splits[i], (int)o.shards, (int)o.threads, (int)o.deflate)) return 1;
    double dt = t2s_clock_s() - t;
    total += splits[i].count;
    printf("t2sda_synth: %s: %lld images %dx%d in %.2f s (%.0f images/min)\n", splits[i].name,
           (long long)splits[i].count, cfg.width, cfg.height, dt, (double)splits[i].count / dt * 60.0);
    fflush(stdout);
  }
  double dt = t2s_clock_s() - t0;
  printf("t2sda_synth: wrote %lld images to %s in %.2f s: %.0f images/min with %lld drawing threads\n",
         (long long)total, o.out, dt, dt > 0 ? (double)total / dt * 60.0 : 0.0, o.threads);
  return 0;
}
