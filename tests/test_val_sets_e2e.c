// ctest-labels: e2e
// ctest-timeout: 300
/* Several validation sets end to end, on the synthetic benchmark with two styles
 * (t2sda_synth --styles fog,night) and configs/synthetic_dg.yaml:
 * - every evaluation writes one metrics line with mIoU.<set> for val, fog_val and
 *   night_val and mIoU = their mean, and prints a table with a column per set;
 * - best.h5 is the evaluation with the highest mean (checkpoint.best_by: mean), or the
 *   highest mIoU of one set (best_by: night_val), as read back from metrics.jsonl;
 * - t2sda_eval on best.h5 evaluates every set (or --set NAME) and its summary repeats the
 *   training log's numbers of that iteration;
 * - a set whose shards have other classes than the model is refused before training,
 *   naming the set's key; the plain data.val.shards form keeps its single-set line. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/formats/checkpoint.h"
#include "data/shard.h"
#include "tests/harness.h"

#define MAX_EVALS 16

static char bin[512], src[512], dir[512], common[4096];
static const char *const sets[] = {"val", "fog_val", "night_val"};

/* The number after "key": in a JSON line (NAN for null); 0 when the key is absent. */
static int json_value(const char *line, const char *key, double *v) {
  char needle[96];
  snprintf(needle, sizeof needle, "\"%s\": ", key);
  const char *p = strstr(line, needle);
  if (p == NULL) return 0;
  p += strlen(needle);
  *v = strncmp(p, "null", 4) == 0 ? NAN : strtod(p, NULL);
  return 1;
}

typedef struct evals {
  int n;
  long long iter[MAX_EVALS];
  double miou[MAX_EVALS], set[MAX_EVALS][3];
} evals;

/* The evaluation lines of work_dir/metrics.jsonl (those with mIoU.val), checked as it
 * reads them: every set's keys, mIoU the mean of the sets', no single-set keys. */
static void read_evals(const char *wd, evals *e) {
  char path[700], line[65536];
  snprintf(path, sizeof path, "%s/metrics.jsonl", wd);
  FILE *f = fopen(path, "r");
  CHECK_MSG(f != NULL, "no %s", path);
  memset(e, 0, sizeof *e);
  while (f && fgets(line, sizeof line, f) && e->n < MAX_EVALS) {
    double v, it = -1;
    if (!json_value(line, "mIoU.val", &v)) {
      CHECK_MSG(!strstr(line, "mIoU"), "a metrics line with mIoU but not mIoU.val: %s", line);
      continue;
    }
    CHECK(json_value(line, "iteration", &it) && json_value(line, "mIoU", &e->miou[e->n]));
    e->iter[e->n] = (long long)it;
    double sum = 0;
    for (int k = 0; k < 3; k++) {
      char key[64];
      snprintf(key, sizeof key, "mIoU.%s", sets[k]);
      CHECK_MSG(json_value(line, key, &e->set[e->n][k]) && !isnan(e->set[e->n][k]), "no %s in %s", key, line);
      sum += e->set[e->n][k];
      snprintf(key, sizeof key, "aAcc.%s", sets[k]);
      CHECK_MSG(json_value(line, key, &v), "no %s", key);
      snprintf(key, sizeof key, "IoU.road.%s", sets[k]);
      CHECK_MSG(json_value(line, key, &v), "no %s", key);
    }
    /* the line prints 6 decimals: the mean of the printed values within rounding */
    CHECK_MSG(fabs(e->miou[e->n] - sum / 3) < 2e-6, "mIoU %f is not the mean of the sets %f", e->miou[e->n], sum / 3);
    CHECK_MSG(!json_value(line, "aAcc", &v) && !json_value(line, "IoU.road", &v), "single-set keys in %s", line);
    e->n++;
  }
  if (f) fclose(f);
}

static char *read_text(const char *path) {
  FILE *f = fopen(path, "r");
  if (f == NULL) return NULL;
  char *buf = calloc(1 << 22, 1);
  if (buf) fread(buf, 1, (1 << 22) - 1, f);
  fclose(f);
  return buf;
}

static long long ckpt_iteration(const char *path) {
  t2s_error err = {0};
  t2s_ckpt_reader *r = t2s_ckpt_open(path, &err);
  CHECK_MSG(r != NULL, "%s", err.msg);
  if (r == NULL) return -1;
  int64_t it = -1;
  int world = 0;
  CHECK(t2s_ckpt_read_meta(r, &it, &world, NULL, &err) == T2S_OK);
  t2s_ckpt_close(r);
  return (long long)it;
}

/* The first evaluation with the highest value (best.h5 is replaced only by a higher one). */
static long long argmax(const evals *e, int set) {
  int best = 0;
  for (int i = 1; i < e->n; i++) {
    double v = set < 0 ? e->miou[i] : e->set[i][set], b = set < 0 ? e->miou[best] : e->set[best][set];
    if (v > b) best = i;
  }
  return e->iter[best];
}

static void train_by_mean(void) {
  char wd[600], log[700], p[700];
  snprintf(wd, sizeof wd, "%s/mean", dir);
  snprintf(log, sizeof log, "%s/mean.log", dir);
  CHECK(t2s_test_run("%s/t2sda_train %s work_dir=%s > %s 2>&1", bin, common, wd, log) == 0);
  evals e;
  read_evals(wd, &e);
  CHECK_MSG(e.n == 10 && e.iter[0] == 1 && e.iter[9] == 10, "%d evaluations (see %s)", e.n, log);
  /* the run must tell the rules apart: the best mean, the best night_val and the last
   * evaluation are three different iterations (with these settings: 7, 8 and 10) */
  CHECK_MSG(argmax(&e, -1) != argmax(&e, 2) && argmax(&e, -1) != 10 && argmax(&e, 2) != 10,
            "this run no longer separates best mean (%lld), best night_val (%lld) and the last evaluation; "
            "change the seed or lr in the test", argmax(&e, -1), argmax(&e, 2));
  /* the table: a column per set and the mean, with the last evaluation's values */
  CHECK_MSG(t2s_test_file_contains(log, "evaluation at iteration 10, mIoU per validation set:") &&
            t2s_test_file_contains(log, "|  val  | fog_val | night_val | mean  |"), "no summary table in %s", log);
  /* the row under the last table's header: the four values in order */
  char *text = read_text(log);
  const char *t = text ? strstr(text, "evaluation at iteration 10, mIoU per validation set:") : NULL;
  for (int k = 0; k < 4 && t; k++) {
    char v[32];
    snprintf(v, sizeof v, " %.2f ", 100 * (k < 3 ? e.set[9][k] : e.miou[9]));
    const char *next = strstr(t, v);
    CHECK_MSG(next != NULL, "the summary table lacks %s after the previous value (see %s)", v, log);
    t = next ? next + strlen(v) : NULL;
  }
  CHECK_MSG(t != NULL, "no summary table of iteration 10 in %s", log);
  free(text);
  for (int k = 0; k < 3; k++) {
    char title[96];
    snprintf(title, sizeof title, "evaluation at iteration 10, %s: per class results", sets[k]);
    CHECK_MSG(t2s_test_file_contains(log, title), "no per-class table '%s' in %s", title, log);
  }
  CHECK(t2s_test_file_contains(log, "validation images (3 shard(s) in 3 sets)"));
  snprintf(p, sizeof p, "%s/best.h5", wd);
  long long best = ckpt_iteration(p);
  CHECK_MSG(best == argmax(&e, -1), "best.h5 is iteration %lld, the highest mean is at %lld", best, argmax(&e, -1));

  /* t2sda_eval on best.h5: every set, a JSON each, the summary equal to the log's line */
  snprintf(log, sizeof log, "%s/eval.log", dir);
  CHECK(t2s_test_run("%s/t2sda_eval %s --quiet > %s 2>&1", bin, p, log) == 0);
  int at = 0;
  while (at < e.n && e.iter[at] != best) at++;
  char out[800], line[65536] = "";
  for (int k = 0; k < 3; k++) {
    snprintf(out, sizeof out, "%s/eval_%08lld_student_whole.%s.json", wd, best, sets[k]);
    FILE *f = fopen(out, "r");
    CHECK_MSG(f != NULL, "no %s (see %s)", out, log);
    double v = NAN;
    if (f && fgets(line, sizeof line, f)) CHECK(json_value(line, "mIoU", &v));
    if (f) fclose(f);
    CHECK_MSG(at < e.n && fabs(v - e.set[at][k]) < 1e-6, "%s: mIoU %f, the training log says %f", out, v,
              at < e.n ? e.set[at][k] : NAN);
  }
  snprintf(out, sizeof out, "%s/eval_%08lld_student_whole.json", wd, best);
  FILE *f = fopen(out, "r");
  double mean = NAN;
  if (f && fgets(line, sizeof line, f)) CHECK(json_value(line, "mIoU", &mean));
  if (f) fclose(f);
  CHECK_MSG(at < e.n && fabs(mean - e.miou[at]) < 1e-6 && strstr(line, "\"mIoU.night_val\""),
            "summary %s: mIoU %f, the training log says %f", out, mean, at < e.n ? e.miou[at] : NAN);
  CHECK(t2s_test_file_contains(log, "| fog_val | night_val | mean  |"));

  /* --set: one set only; an unknown name lists the sets */
  CHECK(t2s_test_run("%s/t2sda_eval %s --quiet --set fog_val --out %s/one.json > %s 2>&1", bin, p, dir, log) == 0);
  snprintf(out, sizeof out, "%s/one.fog_val.json", dir);
  struct stat st;
  CHECK_MSG(stat(out, &st) == 0, "no %s (see %s)", out, log);
  snprintf(out, sizeof out, "%s/one.val.json", dir);
  CHECK_MSG(stat(out, &st) != 0, "--set fog_val also evaluated val");
  CHECK(t2s_test_run("%s/t2sda_eval %s --quiet --set fgo_val > %s 2>&1", bin, p, log) == 2);
  CHECK_MSG(t2s_test_file_contains(log, "--set fgo_val: no such validation set") &&
            t2s_test_file_contains(log, "val fog_val night_val"), "see %s", log);
}

static void train_by_set(void) {
  char wd[600], log[700], p[700];
  snprintf(wd, sizeof wd, "%s/night", dir);
  snprintf(log, sizeof log, "%s/night.log", dir);
  CHECK(t2s_test_run("%s/t2sda_train %s work_dir=%s checkpoint.best_by=night_val > %s 2>&1", bin, common, wd, log) == 0);
  evals e;
  read_evals(wd, &e);
  snprintf(p, sizeof p, "%s/best.h5", wd);
  long long best = ckpt_iteration(p);
  CHECK_MSG(e.n == 10 && best == argmax(&e, 2), "best.h5 is iteration %lld, the highest night_val mIoU is at %lld",
            best, argmax(&e, 2));
  /* an unknown set name is refused before training */
  CHECK(t2s_test_run("%s/t2sda_train %s work_dir=%s/x checkpoint.best_by=nigth_val > %s 2>&1", bin, common, dir, log) == 1);
  CHECK_MSG(t2s_test_file_contains(log, "checkpoint.best_by 'nigth_val' is not the name of a validation set"), "see %s", log);
}

/* A 19-class labelled shard (the others have 11). */
static void write_other_classes(const char *path) {
  t2s_shard_meta m;
  memset(&m, 0, sizeof m);
  m.num_classes = 19;
  m.ignore_index = 255;
  for (int c = 0; c < 19; c++) snprintf(m.class_names[c], T2S_CLASS_NAME_MAX, "c%d", c);
  snprintf(m.domain, sizeof m.domain, "other");
  snprintf(m.split, sizeof m.split, "val");
  m.has_label = 1;
  m.height = m.width = 48;
  t2s_error err = {0};
  t2s_shard_writer *w = t2s_shard_writer_open(path, &m, 1, &err);
  CHECK_MSG(w != NULL, "%s", err.msg);
  if (w == NULL) return;
  static uint8_t rgb[48 * 48 * 3], lab[48 * 48];
  for (int p = 0; p < 48 * 48; p++) lab[p] = (uint8_t)(p % 19);
  CHECK(t2s_shard_writer_add(w, "o0", rgb, lab, &err) == T2S_OK);
  CHECK_MSG(t2s_shard_writer_commit(w, &err) == T2S_OK, "%s", err.msg);
}

static void start_checks(void) {
  char log[700], p[700];
  snprintf(log, sizeof log, "%s/start.log", dir);
  snprintf(p, sizeof p, "%s/other-00000-of-00001.h5", dir);
  write_other_classes(p);
  int rc = t2s_test_run("%s/t2sda_train %s work_dir=%s/start 'data.val_sets=[{name: val, shards: %s/data/val-*.h5}, "
                        "{name: other, shards: %s}]' > %s 2>&1", bin, common, dir, dir, p, log);
  CHECK_MSG(rc == 1 && t2s_test_file_contains(log, "data.val_sets[1].shards") &&
            t2s_test_file_contains(log, "has 19 classes") && t2s_test_file_contains(log, "model.num_classes is 11"),
            "a 19-class set under an 11-class model: exit %d (see %s)", rc, log);
  snprintf(p, sizeof p, "%s/start/metrics.jsonl", dir);
  struct stat st;
  CHECK_MSG(stat(p, &st) != 0 || st.st_size == 0, "it trained before refusing the set");
  /* the one-set form: the single-set line (aAcc, mIoU, IoU.<class>), no per-set keys or table */
  char wd[600];
  snprintf(wd, sizeof wd, "%s/single", dir);
  CHECK(t2s_test_run("%s/t2sda_train %s work_dir=%s 'data.val_sets=[]' 'data.val.shards=%s/data/fog_val-*.h5' "
                     "runner.max_iters=2 > %s 2>&1", bin, common, wd, dir, log) == 0);
  snprintf(p, sizeof p, "%s/metrics.jsonl", wd);
  double v;
  FILE *f = fopen(p, "r");
  char line[65536];
  int n = 0;
  while (f && fgets(line, sizeof line, f)) {
    if (!strstr(line, "mIoU")) continue;
    n++;
    CHECK_MSG(json_value(line, "aAcc", &v) && json_value(line, "IoU.road", &v) && !strstr(line, "mIoU."), "%s", line);
  }
  if (f) fclose(f);
  CHECK_MSG(n == 2, "%d evaluation lines in %s", n, p);
  CHECK(!t2s_test_file_contains(log, "mIoU per validation set"));
}

int main(void) {
  if (t2s_test_e2e_dirs("val_sets_work", bin, sizeof bin, src, sizeof src, dir, sizeof dir) != 0) return 1;
  CHECK(t2s_test_run("%s/t2sda_synth %s/data --source 16 --target 4 --val 4 --size 48 48 --seed 5 --styles fog,night "
                     "> %s/synth.log 2>&1", bin, dir, dir) == 0);
  snprintf(common, sizeof common,
           "%s/configs/synthetic_dg.yaml device=cpu 'data.source.shards=%s/data/source-*.h5' "
           "'data.val_sets=[{name: val, shards: %s/data/val-*.h5}, {name: fog_val, shards: [%s/data/fog_val-*.h5]}, "
           "{name: night_val, shards: %s/data/night_val-*.h5}]' data.crop=[32,32] data.workers_per_gpu=1 "
           "model.backbone.base_channels=4 model.backbone.stem_channels=8 runner.max_iters=10 lr_config.warmup_iters=2 "
           "log.interval=4 evaluation.interval=1 checkpoint.interval=0 data.rare_class_sampling.min_pixels=100",
           src, dir, dir, dir, dir);
  train_by_mean();
  train_by_set();
  start_checks();
  return t2s_test_finish("test_val_sets_e2e");
}
