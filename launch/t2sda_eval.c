/* t2sda_eval CKPT.h5 [key.path=value ...] [options]
 * t2sda_eval CONFIG.yaml --checkpoint CKPT.h5 [key.path=value ...] [options]
 *   options: [--which student|teacher] [--out FILE.json] [--mode whole|slide]
 *            [--save-predictions N] [--set NAME] [--quiet]
 *            [--format cityscapes|trainid --out-dir DIR [--overwrite]]
 *
 * Evaluates a checkpoint on the config's validation data: the mmseg per-class
 * table and summary (and the evaluation.subsets), and a JSON file with aAcc,
 * mIoU, mAcc, IoU.<class>, Acc.<class>. Without a CONFIG the config stored in the
 * checkpoint is used (overrides still apply). Outputs are named by iteration, model
 * and mode: work_dir/eval_<iteration>_<which>_<mode>.json and
 * work_dir/predictions_<iteration>_<which>_<mode>/. Progress and ETA go to stderr.
 *
 * With data.val_sets, every set (or the one --set names) is evaluated in turn: its
 * tables, and its JSON file STEM.<set>.json beside STEM.json, which then holds the
 * summary (mIoU: the mean over the sets, mIoU.<set>, ...; the training log's keys)
 * and is printed as one table with a column per set.
 *
 * --format writes one label PNG per validation image into --out-dir, named after the
 * image's stem and at the size it had before the importer resized it (the shards'
 * /orig_size; launch/pred_labels.h): "cityscapes" writes Cityscapes label ids, the files
 * the official evaluation scripts and the benchmark server take; "trainid" the train ids.
 * Shards older than /orig_size give their own resolution, which is said once. Unlabelled
 * shards (the Cityscapes test split, for the benchmark server) give the PNGs and no
 * metrics. Existing files are not replaced without --overwrite, checked before anything
 * is evaluated. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/formats/checkpoint.h"
#include "dist/comm.h"
#include "data/importers.h"
#include "launch/evaluator.h"
#include "launch/model_config.h"
#include "launch/run_eval.h"
#include "launch/train_config.h"
#include "core/version.h"

static int usage(int code) {
  fprintf(code ? stderr : stdout,
          "usage: t2sda_eval CKPT.h5 [key.path=value ...] [options]\n"
          "       t2sda_eval CONFIG.yaml --checkpoint CKPT.h5 [key.path=value ...] [options]\n"
          "  CKPT.h5 alone     evaluate with the config stored in the checkpoint (overrides apply,\n"
          "                    e.g. 'data.val.shards=/data/cs_val-*.h5')\n"
          "  --which W         student (default) or teacher (the EMA model)\n"
          "  --out FILE.json   the metrics file (default work_dir/eval_<iteration>_<which>_<mode>.json)\n"
          "  --mode M          whole or slide (sliding-window) inference\n"
          "  --save-predictions N  colour PNGs of the first N images in\n"
          "                    work_dir/predictions_<iteration>_<which>_<mode>/\n"
          "  --set NAME        only this validation set of data.val_sets\n"
          "  --quiet           no per-class table or progress lines\n"
          "  --format F        also write a label PNG per image at its original resolution (the\n"
          "                    shards' /orig_size), named <stem>.png: F = cityscapes (Cityscapes label\n"
          "                    ids, for the official scripts and the benchmark server) or trainid\n"
          "  --out-dir DIR     where --format writes (DIR/<set>/ with data.val_sets)\n"
          "  --overwrite       replace existing PNGs in --out-dir\n"
          "A PyTorch .pth / .safetensors file is converted first: t2sda_convert import SRC OUT.h5 --arch CONFIG.yaml\n");
  return code;
}

static int fail(const char *msg) {
  fprintf(stderr, "t2sda_eval: %s\n", msg);
  return 1;
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

typedef struct eval_args {
  const char *config, *ckpt, *which, *out, *mode, *set;
  int save, quiet, n_over;
  char **over;
  const char *out_dir;       /* --format's folder */
  t2s_label_format format;
  int overwrite;
} eval_args;

/* 0: parsed; otherwise the exit code. */
static int parse_args(int argc, char **argv, eval_args *a) {
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return usage(0), -1;
  const char *first = NULL;
  for (int i = 1; i < argc; i++) {
    const char *s = argv[i];
    int has_value = i + 1 < argc;
    if (strcmp(s, "--checkpoint") == 0 && has_value) a->ckpt = argv[++i];
    else if (strcmp(s, "--which") == 0 && has_value) a->which = argv[++i];
    else if (strcmp(s, "--out") == 0 && has_value) a->out = argv[++i];
    else if (strcmp(s, "--mode") == 0 && has_value) a->mode = argv[++i];
    else if (strcmp(s, "--set") == 0 && has_value) a->set = argv[++i];
    else if (strcmp(s, "--save-predictions") == 0 && has_value) a->save = atoi(argv[++i]);
    else if (strcmp(s, "--quiet") == 0) a->quiet = 1;
    else if (strcmp(s, "--overwrite") == 0) a->overwrite = 1;
    else if (strcmp(s, "--out-dir") == 0 && has_value) a->out_dir = argv[++i];
    else if (strcmp(s, "--format") == 0 && has_value) {
      if (!t2s_label_format_parse(argv[++i], &a->format)) {
        fprintf(stderr, "t2sda_eval: --format %s: expected cityscapes (label ids) or trainid\n", argv[i]);
        return 2;
      }
    } else if (strncmp(s, "--", 2) == 0) {
      fprintf(stderr, "t2sda_eval: unknown option or missing value: '%s'\n", s);
      return usage(2);
    } else if (first == NULL && strchr(s, '=') == NULL) first = s;
    else a->over[a->n_over++] = argv[i];
  }
  if (first == NULL) return usage(2);
  /* the first argument is the checkpoint itself, or a config with --checkpoint */
  if (a->ckpt == NULL && !ends_with(first, ".yaml") && !ends_with(first, ".yml")) a->ckpt = first;
  else a->config = first;
  if (a->ckpt == NULL) {
    fprintf(stderr, "t2sda_eval: %s is a config: name the checkpoint with --checkpoint CKPT.h5\n", first);
    return usage(2);
  }
  if (ends_with(a->ckpt, ".pth") || ends_with(a->ckpt, ".pt") || ends_with(a->ckpt, ".safetensors")) {
    fprintf(stderr, "t2sda_eval: %s is a PyTorch file; convert it first: t2sda_convert import %s OUT.h5 "
            "--arch CONFIG.yaml [--prefix model.|ema_model.], then t2sda_eval CONFIG.yaml --checkpoint OUT.h5\n",
            a->ckpt, a->ckpt);
    return 2;
  }
  if (strcmp(a->which, "student") != 0 && strcmp(a->which, "teacher") != 0) return fail("--which takes student or teacher");
  if ((a->format != T2S_LABELS_NONE) != (a->out_dir != NULL)) {
    fprintf(stderr, "t2sda_eval: %s\n", a->out_dir ? "--out-dir needs --format cityscapes|trainid"
                                                   : "--format needs --out-dir DIR (where the PNGs go)");
    return 2;
  }
  return 0;
}

/* The config file, or the one stored in the checkpoint; then the overrides. */
static t2s_status load_config(const eval_args *a, t2s_train_config *cfg, t2s_error *err) {
  if (a->config) return t2s_train_config_load(cfg, a->config, a->over, a->n_over, err);
  t2s_ckpt_reader *r = t2s_ckpt_open(a->ckpt, err);
  if (r == NULL) return err->status;
  int64_t iteration = 0;
  int world = 0;
  char *yaml = NULL;
  t2s_status st = t2s_ckpt_read_meta(r, &iteration, &world, &yaml, err);
  t2s_ckpt_close(r);
  if (st == T2S_OK && (yaml == NULL || yaml[0] == '\0'))
    st = t2s_error_set(err, T2S_ERR_FORMAT, "%s stores no config (an imported file?): give one, "
                       "t2sda_eval CONFIG.yaml --checkpoint %s", a->ckpt, a->ckpt);
  char name[1100];
  snprintf(name, sizeof name, "%s (stored config)", a->ckpt);
  if (st == T2S_OK) st = t2s_train_config_load_text(cfg, yaml, name, a->over, a->n_over, err);
  free(yaml);
  return st;
}

static t2s_status load_weights(const eval_args *a, t2s_segmentor *m, int64_t *iteration, t2s_error *err) {
  t2s_ckpt_reader *r = t2s_ckpt_open(a->ckpt, err);
  if (r == NULL) return err->status;
  int world = 0;
  t2s_status st = t2s_ckpt_read_meta(r, iteration, &world, NULL, err);
  if (st == T2S_OK && strcmp(a->which, "teacher") == 0)
    st = t2s_ckpt_read_params(r, "ema", &m->params, T2S_CKPT_TRAINABLE | T2S_CKPT_BUFFERS, err);
  else if (st == T2S_OK) {
    st = t2s_ckpt_read_params(r, "params", &m->params, T2S_CKPT_TRAINABLE, err);
    if (st == T2S_OK) st = t2s_ckpt_read_params(r, "buffers", &m->params, T2S_CKPT_BUFFERS, err);
  }
  t2s_ckpt_close(r);
  return st;
}

/* The main JSON file, then one per evaluation.subsets entry beside it
 * (launch/run_eval.c, shared with training's evaluation). */
static int write_outputs(const char *out, const t2s_train_config *cfg, const t2s_dataset *val,
                         const t2s_confusion *conf, const t2s_seg_metrics *met, int64_t iteration) {
  t2s_error err = {0};
  FILE *f = fopen(out, "w");
  if (f == NULL) {
    fprintf(stderr, "t2sda_eval: cannot write %s: %s\n", out, strerror(errno));
    return 1;
  }
  t2s_metrics_json(f, met, (const char(*)[32])val->meta.class_names, NULL, iteration, "");
  if (fclose(f) != 0) {
    fprintf(stderr, "t2sda_eval: cannot write %s: %s\n", out, strerror(errno));
    return 1;
  }
  printf("wrote %s\n", out);
  char base[1200];
  size_t stem = ends_with(out, ".json") ? strlen(out) - 5 : strlen(out);
  snprintf(base, sizeof base, "%.*s", (int)stem, out);
  if (t2s_run_eval_subsets(cfg, conf, &val->meta, 1, base, iteration, &err) != T2S_OK) {
    fprintf(stderr, "t2sda_eval: %s\n", err.msg);
    return 1;
  }
  return 0;
}

typedef struct eval_run {
  const eval_args *a;
  const t2s_train_config *cfg;
  t2s_comm *comm;
  t2s_ctx *ctx;
  const t2s_segmentor *m;
  int64_t iteration;
  char tag[128];
  char stem[1100];          /* the JSON files: STEM.json (and STEM.<set>.json with several sets) */
  int named_sets;           /* data.val_sets: per set files and a summary */
} eval_run;

static int cmp_name(const void *a, const void *b) { return strcmp((const char *)a, (const char *)b); }

/* Every image's stem must be a plain file name and unique within the set, or one
 * PNG would replace another. names: count x 256. */
static int check_stems(const t2s_dataset *val, char (*names)[256], const char *key) {
  t2s_error err = {0};
  for (int64_t i = 0; i < val->count; i++) {
    int64_t local = 0;
    t2s_shard *s = t2s_dataset_locate(val, i, &local);
    if (t2s_shard_read_name(s, local, names[i], sizeof names[i], &err) != T2S_OK) return fail(err.msg);
    if (!names[i][0] || strchr(names[i], '/') || strcmp(names[i], ".") == 0 || strcmp(names[i], "..") == 0) {
      fprintf(stderr, "t2sda_eval: %s: %s image %lld is named '%s', which is no file name; --format "
              "names each PNG after its image (re-import the shards with t2sda_shards)\n", key,
              t2s_shard_path(s), (long long)local, names[i]);
      return 1;
    }
  }
  char(*sorted)[256] = malloc((size_t)(val->count ? val->count : 1) * sizeof *sorted);
  if (sorted == NULL) return fail("out of memory checking the image names");
  memcpy(sorted, names, (size_t)val->count * sizeof *sorted);
  qsort(sorted, (size_t)val->count, sizeof *sorted, cmp_name);
  int rc = 0;
  for (int64_t i = 1; i < val->count && rc == 0; i++)
    if (strcmp(sorted[i - 1], sorted[i]) == 0) {
      fprintf(stderr, "t2sda_eval: %s: two images are named '%s', so --format would write %s.png "
              "twice; evaluate the sets one at a time (--set) or re-import them\n", key, sorted[i], sorted[i]);
      rc = 1;
    }
  free(sorted);
  return rc;
}

/* --format: creates the set's folder and checks, before anything is evaluated, that no
 * PNG of this rank's share exists (each rank writes its own share) unless --overwrite.
 * Shards without /orig_size are named once: their PNGs have the shard's resolution. */
static int prepare_label_dir(const eval_run *r, const t2s_val_set_ref *set, const t2s_dataset *val, char *dir,
                             size_t size) {
  const eval_args *a = r->a;
  snprintf(dir, size, "%s%s%s", a->out_dir, r->named_sets ? "/" : "", r->named_sets ? set->name : "");
  if (a->format == T2S_LABELS_CITYSCAPES && val->meta.num_classes != T2S_CITYSCAPES_CLASSES) {
    fprintf(stderr, "t2sda_eval: --format cityscapes writes Cityscapes label ids of 19 train ids, but %s has "
            "%d classes; use --format trainid\n", set->key, val->meta.num_classes);
    return 2;
  }
  if ((mkdir(a->out_dir, 0775) != 0 && errno != EEXIST) || (mkdir(dir, 0775) != 0 && errno != EEXIST)) {
    fprintf(stderr, "t2sda_eval: cannot create --out-dir %s: %s\n", dir, strerror(errno));
    return 1;
  }
  char(*names)[256] = malloc((size_t)(val->count ? val->count : 1) * sizeof *names);
  if (names == NULL) return fail("out of memory checking the image names");
  int rc = check_stems(val, names, set->key);
  for (int64_t i = r->comm->rank; rc == 0 && !a->overwrite && i < val->count; i += r->comm->world) {
    char path[1600];
    snprintf(path, sizeof path, "%s/%s.png", dir, names[i]);
    if (access(path, F_OK) == 0) {
      fprintf(stderr, "t2sda_eval: %s already exists; pass --overwrite to replace the PNGs in %s, or "
              "choose another --out-dir\n", path, dir);
      rc = 1;
    }
  }
  free(names);
  for (int k = 0; rc == 0 && r->comm->rank == 0 && k < val->n_shards; k++)
    if (!t2s_shard_info(val->shards[k])->has_orig_size) {
      printf("note: %s records no original image sizes (/orig_size; written before t2sda_shards kept "
             "them): its PNGs have the shard's resolution %dx%d; re-import the data with t2sda_shards "
             "for full-resolution output\n", t2s_shard_path(val->shards[k]),
             t2s_shard_info(val->shards[k])->width, t2s_shard_info(val->shards[k])->height);
      break;
    }
  return rc;
}

/* One set: open, check, evaluate, its tables and JSON; *met receives its metrics (the
 * caller frees them) and *meta its classes. 0 or the exit code. */
static int eval_set(const eval_run *r, const t2s_val_set_ref *set, t2s_seg_metrics *met, t2s_shard_meta *meta) {
  const t2s_train_config *cfg = r->cfg;
  t2s_error err = {0};
  t2s_dataset val;
  if (t2s_dataset_open(&val, set->shards, set->n_shards, set->key, &err) != T2S_OK) return fail(err.msg);
  char pred_dir[1300], out[1200];
  snprintf(pred_dir, sizeof pred_dir, "%s/predictions_%s%s%s", cfg->work_dir, r->tag, r->named_sets ? "_" : "",
           r->named_sets ? set->name : "");
  if (cfg->evaluation.save_predictions > 0 && r->comm->rank == 0) {
    mkdir(cfg->work_dir, 0775);
    mkdir(pred_dir, 0775);
  }
  t2s_eval_cfg ec = t2s_run_eval_cfg(cfg, r->comm, pred_dir);
  ec.progress = r->comm->rank == 0 && !r->a->quiet ? stderr : NULL;
  ec.what = set->key;
  char label_dir[1200];
  if (r->a->format != T2S_LABELS_NONE) {
    int prc = prepare_label_dir(r, set, &val, label_dir, sizeof label_dir);
    if (prc) {
      t2s_dataset_close(&val);
      return prc;
    }
    ec.labels = r->a->format;
    ec.label_dir = label_dir;
  }
  if (r->comm->rank == 0)
    printf("checkpoint %s (%s, iteration %lld), config %s, %lld validation images%s%s, %s inference\n", r->a->ckpt,
           r->a->which, (long long)r->iteration, r->a->config ? r->a->config : "stored in the checkpoint",
           (long long)val.count, r->named_sets ? " of set " : "", r->named_sets ? set->name : "",
           ec.mode == T2S_INFER_SLIDE ? "sliding-window" : "whole-image");
  t2s_confusion conf = {0};
  int rc = 1;
  if (t2s_confusion_init(&conf, val.meta.num_classes, cfg->data.ignore_index, &err) != T2S_OK ||
      t2s_evaluate(r->ctx, r->m, &val, &ec, &conf, &err) != T2S_OK ||
      t2s_metrics_compute(&conf, NULL, met, &err) != T2S_OK) {
    fail(err.msg);
  } else if (!val.meta.has_label) {
    rc = 0; /* unlabelled (e.g. the Cityscapes test split): predictions only */
    *meta = val.meta;
    if (r->comm->rank == 0)
      printf("%s has no labels: no metrics; %lld %s label PNGs in %s\n", set->key, (long long)val.count,
             t2s_label_format_name(r->a->format), label_dir);
  } else {
    rc = 0;
    *meta = val.meta;
    if (r->comm->rank == 0) {
      char title[64];
      snprintf(title, sizeof title, "%s%s", r->named_sets ? set->name : "", r->named_sets ? ": " : "");
      if (!r->a->quiet) t2s_metrics_print(stdout, met, (const char(*)[32])val.meta.class_names, NULL, title);
      printf("%smIoU %.2f  aAcc %.2f  mAcc %.2f\n", title, 100 * met->miou, 100 * met->aacc, 100 * met->macc);
      snprintf(out, sizeof out, "%s%s%s.json", r->stem, r->named_sets ? "." : "", r->named_sets ? set->name : "");
      if (!r->a->out) mkdir(cfg->work_dir, 0775);
      rc = write_outputs(out, cfg, &val, &conf, met, r->iteration);
      if (cfg->evaluation.save_predictions > 0) printf("predictions in %s\n", pred_dir);
      if (r->a->format != T2S_LABELS_NONE)
        printf("%s label PNGs in %s\n", t2s_label_format_name(r->a->format), label_dir);
    }
    if (rc) t2s_metrics_free(met);
  }
  t2s_confusion_free(&conf);
  t2s_dataset_close(&val);
  return rc;
}

/* STEM.json of several sets: the training log's keys (mIoU = the mean over the sets). */
static int write_summary(const eval_run *r, int n, const t2s_seg_metrics *met, const char (*names)[32],
                         const t2s_shard_meta *meta) {
  double miou[T2S_CFG_MAX_VAL_SETS];
  for (int k = 0; k < n; k++) miou[k] = met[k].miou;
  double mean = t2s_metrics_mean_defined(miou, n);
  t2s_metrics_print_sets(stdout, n, names, miou, mean, "");
  char out[1200];
  snprintf(out, sizeof out, "%s.json", r->stem);
  FILE *f = fopen(out, "w");
  if (f == NULL) {
    fprintf(stderr, "t2sda_eval: cannot write %s: %s\n", out, strerror(errno));
    return 1;
  }
  t2s_metrics_json_sets(f, n, met, names, (const char(*)[32])meta->class_names, r->iteration, mean);
  if (fclose(f) != 0) {
    fprintf(stderr, "t2sda_eval: cannot write %s: %s\n", out, strerror(errno));
    return 1;
  }
  printf("wrote %s\n", out);
  return 0;
}

/* Every set (or --set's), then with data.val_sets the summary. */
static int eval_sets(const eval_run *r, t2s_val_set_ref *sets, int n) {
  const char *only = r->a->set;
  if (only != NULL && r->named_sets) {
    int k = 0;
    while (k < n && strcmp(sets[k].name, only) != 0) k++;
    if (k == n) {
      fprintf(stderr, "t2sda_eval: --set %s: no such validation set; data.val_sets has:", only);
      for (int j = 0; j < n; j++) fprintf(stderr, " %s", sets[j].name);
      fprintf(stderr, "\n");
      return 2;
    }
    sets[0] = sets[k];
    n = 1;
  } else if (only != NULL && strcmp(only, "val") != 0) {
    fprintf(stderr, "t2sda_eval: --set %s: the config has one validation set (data.val.shards); --set "
            "picks one of data.val_sets\n", only);
    return 2;
  }
  t2s_seg_metrics met[T2S_CFG_MAX_VAL_SETS];
  t2s_shard_meta meta;
  char names[T2S_CFG_MAX_VAL_SETS][T2S_CFG_SET_NAME_MAX];
  int rc = 0, done = 0;
  for (; done < n && rc == 0; done++) {
    if ((rc = eval_set(r, &sets[done], &met[done], &meta)) != 0) break;
    snprintf(names[done], sizeof names[done], "%s", sets[done].name);
  }
  if (rc == 0 && r->named_sets && r->comm->rank == 0) rc = write_summary(r, n, met, (const char(*)[32])names, &meta);
  for (int k = 0; k < done; k++) t2s_metrics_free(&met[k]);
  return rc;
}

int main(int argc, char **argv) {
  /* line-buffered even into a file or pipe: a run killed outright (kill -9, OOM) must
   * not lose the progress lines it printed last */
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc >= 2 && strcmp(argv[1], "--version") == 0) return puts(T2S_VERSION_LINE("t2sda_eval")) == EOF;
  if (argc < 2) return usage(2);
  eval_args a = {NULL, NULL, "student", NULL, NULL, NULL, -1, 0, 0, calloc((size_t)argc + 1, sizeof(char *)),
                 NULL, T2S_LABELS_NONE, 0};
  int rc = a.over ? parse_args(argc, argv, &a) : fail("out of memory");
  if (rc) return free(a.over), rc < 0 ? 0 : rc;
  t2s_error err = {0};
  t2s_train_config *cfg = malloc(sizeof *cfg);
  rc = 1;
  char mode_override[64];
  if (a.mode) {
    /* --mode is a shorthand for the override evaluation.mode=...; same checks */
    snprintf(mode_override, sizeof mode_override, "evaluation.mode=%s", a.mode);
    a.over[a.n_over++] = mode_override;
  }
  /* error paths before the communicator exists free what was allocated (LSan) */
  if (cfg == NULL || load_config(&a, cfg, &err) != T2S_OK) {
    fail(cfg ? err.msg : "out of memory");
    goto done_args;
  }
  if (a.save >= 0) cfg->evaluation.save_predictions = a.save;
  t2s_val_set_ref sets[T2S_CFG_MAX_VAL_SETS];
  int n_sets = t2s_run_val_sets(cfg, sets);
  if (n_sets == 0) {
    fail("data.val.shards is empty: nothing to evaluate on (set it, e.g. "
         "'data.val.shards=/data/cityscapes_val-*.h5', or list data.val_sets)");
    goto done_args;
  }
  t2s_comm comm;
  t2s_dist_cfg dc = t2s_dist_default_cfg();
  dc.quiet = 1;
  if (t2s_dist_init(&comm, &dc, &err) != T2S_OK) {
    fail(err.msg);
    goto done_args;
  }
  t2s_model_cfg mc;
  t2s_segmentor m;
  t2s_ctx *ctx = NULL;
  if (t2s_model_cfg_from_train_config(cfg, &mc, &err) != T2S_OK ||
      t2s_segmentor_build(&m, &mc, T2S_DEV_CPU, 0, &err) != T2S_OK) {
    fail(err.msg);
    goto done_comm;
  }
  eval_run r = {&a, cfg, &comm, NULL, &m, 0, "", "", cfg->data.n_val_sets > 0};
  if (load_weights(&a, &m, &r.iteration, &err) != T2S_OK) {
    fail(err.msg);
    goto done_model;
  }
  ctx = r.ctx = t2s_ctx_create(T2S_DEV_CPU, (size_t)256 << 20, &err);
  if (ctx == NULL) {
    fail(err.msg);
    goto done_model;
  }
  snprintf(r.tag, sizeof r.tag, "%08lld_%s_%s", (long long)r.iteration, a.which,
           cfg->evaluation.mode == T2S_INFER_SLIDE ? "slide" : "whole");
  if (a.out) snprintf(r.stem, sizeof r.stem, "%.*s", (int)(strlen(a.out) - (ends_with(a.out, ".json") ? 5 : 0)), a.out);
  else snprintf(r.stem, sizeof r.stem, "%s/eval_%s", cfg->work_dir, r.tag);
  rc = eval_sets(&r, sets, n_sets);
done_model:
  t2s_ctx_destroy(ctx);
  t2s_segmentor_free(&m);
done_comm:
  t2s_dist_finalize(&comm);
done_args:
  free(cfg);
  free(a.over);
  return rc;
}
