/* t2sda_eval CONFIG --checkpoint PATH [key.path=value ...] [--which student|teacher]
 *            [--out FILE.json] [--mode whole|slide] [--save-predictions N]
 *
 * Evaluates a checkpoint on the config's data.val.shards: the mmseg per-class
 * table and summary (and the evaluation.subsets), and a JSON file with aAcc,
 * mIoU, mAcc, IoU.<class>, Acc.<class> (default work_dir/eval_<iteration>.json). */
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
          "usage: t2sda_eval CONFIG.yaml --checkpoint PATH [key.path=value ...] [--which student|teacher]\n"
          "                  [--out FILE.json] [--mode whole|slide] [--save-predictions N] [--quiet]\n");
  return code;
}

static int fail(const char *msg) {
  fprintf(stderr, "t2sda_eval: %s\n", msg);
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 2) return usage(2);
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) return usage(0);
  const char *config = NULL, *ckpt = NULL, *which = "student", *out = NULL, *mode = NULL;
  int save = -1, n_over = 0, quiet = 0;
  char **over = calloc((size_t)argc, sizeof *over);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int has_value = i + 1 < argc;
    if (strcmp(a, "--checkpoint") == 0 && has_value) ckpt = argv[++i];
    else if (strcmp(a, "--which") == 0 && has_value) which = argv[++i];
    else if (strcmp(a, "--out") == 0 && has_value) out = argv[++i];
    else if (strcmp(a, "--mode") == 0 && has_value) mode = argv[++i];
    else if (strcmp(a, "--save-predictions") == 0 && has_value) save = atoi(argv[++i]);
    else if (strcmp(a, "--quiet") == 0) quiet = 1;
    else if (strncmp(a, "--", 2) == 0) {
      fprintf(stderr, "t2sda_eval: unknown option or missing value: '%s'\n", a);
      free(over);
      return usage(2);
    } else if (config == NULL) config = a;
    else over[n_over++] = argv[i];
  }
  if (config == NULL || ckpt == NULL) return free(over), usage(2);
  if (strcmp(which, "student") != 0 && strcmp(which, "teacher") != 0)
    return free(over), fail("--which takes student or teacher");
  t2s_error err = {0};
  t2s_train_config *cfg = malloc(sizeof *cfg);
  int rc = 1;
  char mode_override[64];
  if (mode) {
    /* --mode is a shorthand for the override evaluation.mode=...; same checks */
    snprintf(mode_override, sizeof mode_override, "evaluation.mode=%s", mode);
    over[n_over++] = mode_override;
  }
  t2s_comm comm;
  t2s_dist_cfg dc = t2s_dist_default_cfg();
  dc.quiet = 1;
  /* error paths before the communicator exists free what was allocated (LSan) */
  if (cfg == NULL || t2s_train_config_load(cfg, config, over, n_over, &err) != T2S_OK) {
    fail(cfg ? err.msg : "out of memory");
    goto done_args;
  }
  if (save >= 0) cfg->evaluation.save_predictions = save;
  if (cfg->data.n_val_shards == 0) {
    fail("data.val.shards is empty: nothing to evaluate on");
    goto done_args;
  }
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
  t2s_ckpt_reader *r = t2s_ckpt_open(ckpt, &err);
  int world = 0;
  int ok = r && t2s_ckpt_read_meta(r, &iteration, &world, NULL, &err) == T2S_OK;
  if (ok && strcmp(which, "teacher") == 0)
    ok = t2s_ckpt_read_params(r, "ema", &m.params, T2S_CKPT_TRAINABLE | T2S_CKPT_BUFFERS, &err) == T2S_OK;
  else if (ok)
    ok = t2s_ckpt_read_params(r, "params", &m.params, T2S_CKPT_TRAINABLE, &err) == T2S_OK &&
         t2s_ckpt_read_params(r, "buffers", &m.params, T2S_CKPT_BUFFERS, &err) == T2S_OK;
  if (r) t2s_ckpt_close(r);
  if (!ok) {
    fail(err.msg);
    goto done_model;
  }
  if (t2s_dataset_open(&val, (const char(*)[512])cfg->data.val_shards, cfg->data.n_val_shards,
                       "data.val.shards", &err) != T2S_OK) {
    fail(err.msg);
    goto done_model;
  }
  ctx = t2s_ctx_create(T2S_DEV_CPU, (size_t)256 << 20, &err);
  char pred_dir[1100];
  snprintf(pred_dir, sizeof pred_dir, "%s/predictions", cfg->work_dir);
  if (cfg->evaluation.save_predictions > 0 && comm.rank == 0) {
    mkdir(cfg->work_dir, 0775);
    mkdir(pred_dir, 0775);
  }
  t2s_eval_cfg ec = t2s_run_eval_cfg(cfg, &comm, pred_dir);
  t2s_confusion conf = {0};
  t2s_seg_metrics met = {0};
  if (ctx == NULL || t2s_confusion_init(&conf, val.meta.num_classes, cfg->data.ignore_index, &err) != T2S_OK ||
      t2s_evaluate(ctx, &m, &val, &ec, &conf, &err) != T2S_OK ||
      t2s_metrics_compute(&conf, NULL, &met, &err) != T2S_OK) {
    fail(err.msg);
    goto done_val;
  }
  rc = 0;
  if (comm.rank == 0) {
    printf("checkpoint %s (%s, iteration %lld), %lld validation images, %s inference\n", ckpt, which,
           (long long)iteration, (long long)val.count, ec.mode == T2S_INFER_SLIDE ? "sliding-window" : "whole-image");
    if (!quiet) t2s_metrics_print(stdout, &met, (const char(*)[32])val.meta.class_names, NULL, "");
    printf("mIoU %.2f  aAcc %.2f  mAcc %.2f\n", 100 * met.miou, 100 * met.aacc, 100 * met.macc);
    char path[1200];
    if (out == NULL) {
      mkdir(cfg->work_dir, 0775);
      snprintf(path, sizeof path, "%s/eval_%08lld.json", cfg->work_dir, (long long)iteration);
      out = path;
    }
    FILE *f = fopen(out, "w");
    if (f == NULL) {
      fprintf(stderr, "t2sda_eval: cannot write %s: %s\n", out, strerror(errno));
      rc = 1;
    } else {
      t2s_metrics_json(f, &met, (const char(*)[32])val.meta.class_names, NULL, iteration, "");
      fclose(f);
      printf("wrote %s\n", out);
      /* one JSON object per file: each subset goes beside the main file */
      char base[1200];
      size_t len = strlen(out);
      if (len > 5 && strcmp(out + len - 5, ".json") == 0) len -= 5;
      snprintf(base, sizeof base, "%.*s", (int)len, out);
      if (t2s_run_eval_subsets(cfg, &conf, &val.meta, 1, base, iteration, &err) != T2S_OK) rc = fail(err.msg);
    }
  }
  t2s_metrics_free(&met);
  t2s_confusion_free(&conf);
done_val:
  if (rc != 0) t2s_metrics_free(&met), t2s_confusion_free(&conf);
  t2s_dataset_close(&val);
  t2s_ctx_destroy(ctx);
done_model:
  t2s_segmentor_free(&m);
done_comm:
  t2s_dist_finalize(&comm);
done_args:
  free(cfg);
  free(over);
  return rc;
}
