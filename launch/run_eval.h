/* Evaluation as a run's config asks for it, shared by t2sda_train's periodic
 * evaluation and t2sda_eval: the evaluation.* keys as a t2s_eval_cfg, and the
 * tables of evaluation.subsets. */
#pragma once
#include <stdint.h>

#include "data/shard.h"
#include "dist/comm.h"
#include "launch/evaluator.h"
#include "launch/train_config.h"

/* evaluation.* of cfg on this rank of comm (the confusion matrix is summed over its
 * ranks); prediction images go to pred_dir, the caller's string. */
t2s_eval_cfg t2s_run_eval_cfg(const t2s_train_config *cfg, t2s_comm *comm, const char *pred_dir);

/* Each of evaluation.subsets on conf: its table on stdout when print is set and, with
 * json_base, one JSON object in <json_base>.<subset>.json. A subset that does not fit
 * the classes of meta is an error naming the key. */
t2s_status t2s_run_eval_subsets(const t2s_train_config *cfg, const t2s_confusion *conf,
                                const t2s_shard_meta *meta, int print, const char *json_base,
                                int64_t iteration, t2s_error *err);
