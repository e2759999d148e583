/* Evaluation as a run's config asks for it, shared by t2sda_train's periodic
 * evaluation and t2sda_eval: the evaluation.* keys as a t2s_eval_cfg, and the
 * tables of evaluation.subsets. */
#pragma once
#include <stdint.h>

#include "data/shard.h"
#include "dist/comm.h"
#include "launch/evaluator.h"
#include "launch/train_config.h"

/* One validation set of a config: data.val_sets[i], or the plain data.val.shards
 * (one set, named after its shards' domain attribute, or "val"). */
typedef struct t2s_val_set_ref {
  char name[T2S_CFG_SET_NAME_MAX];   /* empty for data.val.shards until named by its shards */
  const char (*shards)[T2S_CFG_PATH_MAX];
  int n_shards;
  char key[48];                      /* the config key, for messages: "data.val_sets[1].shards" */
} t2s_val_set_ref;

/* The validation sets of cfg into out (T2S_CFG_MAX_VAL_SETS entries); returns how many
 * (0: no evaluation data). */
int t2s_run_val_sets(const t2s_train_config *cfg, t2s_val_set_ref *out);

/* Names a data.val.shards set after its shards (the domain attribute, or "val");
 * a name from data.val_sets is kept. */
void t2s_run_val_set_name(t2s_val_set_ref *set, const t2s_shard_meta *meta);

/* The score best.h5 follows (checkpoint.best_by): the mean of miou[0..n) ("mean") or the
 * named set's; *index receives -1 for the mean, else the set. Unknown name: an error that
 * lists the sets. */
t2s_status t2s_run_best_by(const t2s_train_config *cfg, const t2s_val_set_ref *sets, int n, int *index,
                           t2s_error *err);

/* evaluation.* of cfg on this rank of comm (the confusion matrix is summed over its
 * ranks); prediction images go to pred_dir, the caller's string. */
t2s_eval_cfg t2s_run_eval_cfg(const t2s_train_config *cfg, t2s_comm *comm, const char *pred_dir);

/* Each of evaluation.subsets on conf: its table on stdout when print is set and, with
 * json_base, one JSON object in <json_base>.<subset>.json. A subset that does not fit
 * the classes of meta is an error naming the key. */
t2s_status t2s_run_eval_subsets(const t2s_train_config *cfg, const t2s_confusion *conf,
                                const t2s_shard_meta *meta, int print, const char *json_base,
                                int64_t iteration, t2s_error *err);
