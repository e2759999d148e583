/* Training checkpoints: everything needed to resume exactly (student, teacher,
 * optimizer state and step, the method's running state, the iteration), and
 * the files of a work dir: iter_NNNNNNNN.h5 (the last max_keep kept),
 * latest.h5 (a symlink to the newest) and best.h5 (highest validation mIoU). */
#pragma once
#include <stdint.h>

#include "core/formats/checkpoint.h"
#include "core/nn/segmentor.h"
#include "core/optim.h"

#define T2S_TRAIN_STATE_MAX 16

/* A named array of the method's state, saved as /state/<name>. */
typedef struct t2s_state_array {
  const char *name;
  t2s_ckpt_type type;
  int ndim;
  int64_t shape[2];
  void *data;  /* host memory, read and written in place */
} t2s_state_array;

typedef struct t2s_train_snapshot {
  int64_t iteration;        /* iterations completed */
  int world_size;
  double best_miou;         /* NaN until the first evaluation */
  const char *config_yaml;  /* the resolved config (saving only) */
  t2s_segmentor *student, *teacher;  /* teacher may be NULL (source only) */
  t2s_optim *optim;
  t2s_state_array state[T2S_TRAIN_STATE_MAX];
  int n_state;
} t2s_train_snapshot;

t2s_status t2s_train_ckpt_save(const char *path, const t2s_train_snapshot *s, t2s_error *err);
/* Loads into the snapshot's objects (same architecture); sets iteration, best_miou and
 * world_size (of the run that wrote it).
 * *config_yaml (may be NULL) receives the stored config (malloc'd). */
t2s_status t2s_train_ckpt_load(const char *path, t2s_train_snapshot *s, char **config_yaml,
                               t2s_error *err);

/* Writes iter_<iteration>.h5 in work_dir, points latest.h5 at it and removes the
 * oldest iter_*.h5 beyond max_keep. */
t2s_status t2s_train_ckpt_rotate(const char *work_dir, const t2s_train_snapshot *s, int max_keep,
                                 char *written, size_t written_size, t2s_error *err);
