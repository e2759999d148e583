/* The training loop of t2sda_train: builds the networks, data and optimizer
 * from a resolved config, runs the UDA iterations (launch/uda_step.c), logs,
 * evaluates, checkpoints and resumes. */
#pragma once
#include <stdint.h>
#include <stdio.h>

#include "core/nn/segmentor.h"
#include "core/optim.h"
#include "data/loader.h"
#include "dist/comm.h"
#include "dist/grad_sync.h"
#include "launch/progress.h"
#include "launch/run_eval.h"
#include "launch/tb_events.h"
#include "launch/train_config.h"
#include "launch/uda_step.h"

typedef struct t2s_train_opts {
  const char *resume;   /* NULL: fresh; "auto": latest in work_dir if any; else a path */
  int quiet;            /* no progress lines (tests) */
  int64_t stop_after;   /* > 0: save and exit after this many iterations (time-sliced jobs) */
  int overwrite;        /* start fresh in a work_dir that already holds a run */
  /* Test hook (T2S_TEST_POISON_LOSS=TERM@ITER, TERM one of src mix fd t2s): that loss
   * term is replaced by NaN at iteration ITER, so that the non-finite guard can be
   * tested without depending on how a given CPU diverges. NULL: off. */
  const char *poison_loss;
  int debug_syncs;      /* print each iteration's host synchronisations per call site (CUDA) */
} t2s_train_opts;

typedef struct t2s_trainer {
  t2s_train_config *cfg;    /* owned */
  char *config_yaml;        /* the resolved config, stored in checkpoints */
  t2s_train_opts opts;
  t2s_comm comm;
  int comm_up;
  t2s_ctx *ctx;
  t2s_segmentor student, teacher, imnet;
  int have_teacher, have_imnet;
  t2s_optim optim;
  t2s_lr_schedule sched;
  double lr;                /* base lr after scaling for the global batch */
  t2s_grad_sync *sync;
  t2s_dataset val[T2S_CFG_MAX_VAL_SETS];  /* the validation sets, in config order */
  t2s_val_set_ref val_sets[T2S_CFG_MAX_VAL_SETS];
  int n_val;                /* validation sets open (0: no evaluation) */
  int best_by;              /* checkpoint.best_by: -1 the mean over the sets, else a set */
  t2s_loader *src, *tgt;
  t2s_uda uda;
  int64_t iter;             /* the next iteration to run */
  int64_t sampler_saved[2][5];  /* source/target sampler state read on resume (checked once the
                                 * data is open): seed, iteration, global batch, size, rcs */
  int have_sampler_saved;
  int resumed_world;        /* ranks of the run that wrote the resumed checkpoint (0: fresh) */
  t2s_dataset *src_ds, *tgt_ds;  /* the training data, read by the loaders (heap: the
                                  * workers hold their addresses) */
  int64_t corrupt_skipped;  /* samples whose damaged image was replaced, all ranks
                             * (data.on_corrupt: skip), since this process started */
  int poison_iter;          /* the test hook's iteration, -1 when off */
  char poison_term[8];
  double best_miou;
  int stop_reason;          /* how run() ended: 0 max_iters, 1 a signal, 2 --stop-after */
  FILE *metrics;            /* work_dir/metrics.jsonl (rank 0) */
  int metrics_failing;      /* the last metrics flush failed (warned once) */
  t2s_tb_writer *tb;        /* its TensorBoard mirror, NULL when it could not be made */
  double t_start;
  int64_t iter_start;
  /* iterations over time at the logged points: the ETA follows the recent speed
   * instead of the average since start (start-up, first iterations, evaluations) */
  t2s_rate rate;
} t2s_trainer;

t2s_status t2s_trainer_init(t2s_trainer *t, const t2s_train_config *cfg, const t2s_train_opts *opts,
                            t2s_error *err);
/* Runs until runner.max_iters or a stop request; saves the final checkpoint. */
t2s_status t2s_trainer_run(t2s_trainer *t, t2s_error *err);
/* Evaluates the student on every validation set; prints the tables on rank 0 (per set,
 * and with 2+ sets a summary with their mean) and appends the JSON line; *miou receives
 * the score checkpoint.best_by names (one set's mIoU, or the mean over the sets). */
t2s_status t2s_trainer_evaluate(t2s_trainer *t, double *miou, t2s_error *err);
t2s_status t2s_trainer_save(t2s_trainer *t, t2s_error *err);
void t2s_trainer_free(t2s_trainer *t);
/* Asks the loop to save and stop after the current iteration (signal handlers). */
void t2s_trainer_request_stop(void);
