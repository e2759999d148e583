/* Evaluation of a segmentor on a labelled dataset: whole-image or
 * sliding-window inference, a confusion matrix reduced over ranks, and optional
 * colour-palette prediction images. */
#pragma once
#include <stdio.h>

#include "core/nn/hrda.h"
#include "core/nn/segmentor.h"
#include "data/shard.h"
#include "launch/metrics.h"
#include "launch/pred_labels.h"

typedef enum t2s_infer_mode { T2S_INFER_WHOLE = 0, T2S_INFER_SLIDE } t2s_infer_mode;

typedef struct t2s_eval_cfg {
  t2s_infer_mode mode;
  int crop[2], stride[2];    /* sliding window [W, H] */
  int save_predictions;      /* colour PNGs of the first N images (rank 0's share) */
  const char *pred_dir;      /* where they go */
  int rank, world_size;      /* image i is evaluated by rank i % world_size */
  /* sums int64 counts over ranks in place (NULL on one process) */
  t2s_status (*allreduce_i64)(void *user, int64_t *buf, size_t n, t2s_error *err);
  void *allreduce_user;
  FILE *progress;            /* "evaluation: i/n | img/s | eta" lines of this rank's share (NULL: none) */
  const char *what;          /* the data's config key in messages (NULL: "data.val.shards") */
  t2s_label_format labels;   /* label PNGs of every image of this rank's share in label_dir,
                                at the image's /orig_size (launch/pred_labels.h); NONE: none */
  const char *label_dir;
  int hrda_enabled;          /* HRDA inference (context + sliding detail windows) instead of mode */
  t2s_hrda_cfg hrda;
} t2s_eval_cfg;

/* Fills `conf` (initialised by the caller for the dataset's classes) with the
 * whole dataset's confusion matrix; every rank ends with the same matrix. An empty
 * data set, and a label that is neither a class (0..C-1) nor conf->ignore_index, are
 * errors naming the shard and image (the metrics would silently leave them out).
 * Unlabelled shards are accepted only with cfg->labels and cfg->label_dir: the label
 * PNGs are written and conf stays empty. */
t2s_status t2s_evaluate(t2s_ctx *ctx, const t2s_segmentor *m, t2s_dataset *val,
                        const t2s_eval_cfg *cfg, t2s_confusion *conf, t2s_error *err);
/* Logits of one image (1, C, H, W) at the image's resolution (whole, slide, or HRDA's
 * inference when cfg->hrda_enabled). */
t2s_tensor *t2s_infer_logits(t2s_ctx *ctx, const t2s_segmentor *m, t2s_tensor *image,
                             const t2s_eval_cfg *cfg);
/* Cityscapes palette colour of a class name; a fixed colour for unknown names. */
void t2s_class_colour(const char *name, int index, uint8_t rgb[3]);
