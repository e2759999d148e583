/* t2sda_eval CKPT.h5 [key.path=value ...] [options]
 * t2sda_eval CONFIG.yaml --checkpoint CKPT.h5 [key.path=value ...] [options]
 *   options: [--which student|teacher] [--out FILE.json] [--mode whole|slide]
 *            [--save-predictions N] [--quiet]
 *
 * Evaluates a checkpoint on the config's data.val.shards: the mmseg per-class
 * table and summary (and the evaluation.subsets), and a JSON file with aAcc,
 * mIoU, mAcc, IoU.<class>, Acc.<class>. Without a CONFIG the config stored in the
 * checkpoint is used (overrides still apply). Outputs are named by iteration, model
 * and mode: work_dir/eval_<iteration>_<which>_<mode>.json and
 * work_dir/predictions_<iteration>_<which>_<mode>/. Progress and ETA go to stderr. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/formats/checkpoint.h"
#include "dist/comm.h"
#include "launch/evaluator.h"
#include "launch/model_config.h"
#include "launch/run_eval.h"
#include "launch/train_config.h"

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
          "  --quiet           no per-class table or progress lines\n"
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
  const char *config, *ckpt, *which, *out, *mode;
  int save, quiet, n_over;
  char **over;
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
    else if (strcmp(s, "--save-predictions") == 0 && has_value) a->save = atoi(argv[++i]);
    else if (strcmp(s, "--quiet") == 0) a->quiet = 1;
    else if (strncmp(s, "--", 2) == 0) {
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
static int write_outputs(const eval_args *a, const t2s_train_config *cfg, const t2s_dataset *val,
                         const t2s_confusion *conf, const t2s_seg_metrics *met, const char *tag,
                         int64_t iteration) {
  char path[1200];
  const char *out = a->out;
  t2s_error err = {0};
  if (out == NULL) {
    mkdir(cfg->work_dir, 0775);
    snprintf(path, sizeof path, "%s/eval_%s.json", cfg->work_dir, tag);
    out = path;
  }
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

int main(int argc, char **argv) {
  if (argc < 2) return usage(2);
  eval_args a = {NULL, NULL, "student", NULL, NULL, -1, 0, 0, calloc((size_t)argc + 1, sizeof(char *))};
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
  if (cfg->data.n_val_shards == 0) {
    fail("data.val.shards is empty: nothing to evaluate on (set it, e.g. "
         "'data.val.shards=/data/cityscapes_val-*.h5')");
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
  t2s_dataset val;
  if (t2s_model_cfg_from_train_config(cfg, &mc, &err) != T2S_OK ||
      t2s_segmentor_build(&m, &mc, T2S_DEV_CPU, 0, &err) != T2S_OK) {
    fail(err.msg);
    goto done_comm;
  }
  int64_t iteration = 0;
  if (load_weights(&a, &m, &iteration, &err) != T2S_OK) {
    fail(err.msg);
    goto done_model;
  }
  if (t2s_dataset_open(&val, (const char(*)[512])cfg->data.val_shards, cfg->data.n_val_shards,
                       "data.val.shards", &err) != T2S_OK) {
    fail(err.msg);
    goto done_model;
  }
  ctx = t2s_ctx_create(T2S_DEV_CPU, (size_t)256 << 20, &err);
  const char *mode_name = cfg->evaluation.mode == T2S_INFER_SLIDE ? "slide" : "whole";
  char tag[128], pred_dir[1300];
  snprintf(tag, sizeof tag, "%08lld_%s_%s", (long long)iteration, a.which, mode_name);
  snprintf(pred_dir, sizeof pred_dir, "%s/predictions_%s", cfg->work_dir, tag);
  if (cfg->evaluation.save_predictions > 0 && comm.rank == 0) {
    mkdir(cfg->work_dir, 0775);
    mkdir(pred_dir, 0775);
  }
  t2s_eval_cfg ec = t2s_run_eval_cfg(cfg, &comm, pred_dir);
  ec.progress = comm.rank == 0 && !a.quiet ? stderr : NULL;
  if (comm.rank == 0)
    printf("checkpoint %s (%s, iteration %lld), config %s, %lld validation images, %s inference\n", a.ckpt, a.which,
           (long long)iteration, a.config ? a.config : "stored in the checkpoint", (long long)val.count,
           ec.mode == T2S_INFER_SLIDE ? "sliding-window" : "whole-image");
  t2s_confusion conf = {0};
  t2s_seg_metrics met = {0};
  if (ctx == NULL || t2s_confusion_init(&conf, val.meta.num_classes, cfg->data.ignore_index, &err) != T2S_OK ||
      t2s_evaluate(ctx, &m, &val, &ec, &conf, &err) != T2S_OK ||
      t2s_metrics_compute(&conf, NULL, &met, &err) != T2S_OK) {
    fail(err.msg);
    t2s_metrics_free(&met);
    t2s_confusion_free(&conf);
    goto done_val;
  }
  rc = 0;
  if (comm.rank == 0) {
    if (!a.quiet) t2s_metrics_print(stdout, &met, (const char(*)[32])val.meta.class_names, NULL, "");
    printf("mIoU %.2f  aAcc %.2f  mAcc %.2f\n", 100 * met.miou, 100 * met.aacc, 100 * met.macc);
    rc = write_outputs(&a, cfg, &val, &conf, &met, tag, iteration);
    if (cfg->evaluation.save_predictions > 0) printf("predictions in %s\n", pred_dir);
  }
  t2s_metrics_free(&met);
  t2s_confusion_free(&conf);
done_val:
  t2s_dataset_close(&val);
  t2s_ctx_destroy(ctx);
done_model:
  t2s_segmentor_free(&m);
done_comm:
  t2s_dist_finalize(&comm);
done_args:
  free(cfg);
  free(a.over);
  return rc;
}
