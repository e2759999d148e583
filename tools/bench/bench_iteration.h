/* `t2sda_bench iteration`: the full training iteration of a config (launch/uda_step.c:
 * EMA teacher, pseudo-target image, every loss term with its backward, optimizer step)
 * on random crops, with its time and peak memory: the pass arena (activations, saved
 * tensors, activation gradients) and the state (the networks' weights and buffers,
 * the student's gradients, the optimizer's state).
 *
 *   t2sda_bench iteration CONFIG [--crop W H] [--batch B] [--iters 2] [--threads 2]
 *                        [--no-liveness] [--build-only] [--set key=value ...]
 *
 * --batch is the crops per domain (2 = DAFormer's 2 source + 2 target); --no-liveness
 * keeps every pass allocation to the end of the pass (ctx->keep_all) for comparison;
 * --build-only reports the state bytes without running an iteration. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define T2S_BENCH_ITER_MAX 16

typedef struct t2s_bench_iter_opts {
  const char *config;
  char **overrides;      /* "key=value" config overrides */
  int n_overrides;
  int crop_w, crop_h;    /* 0: the config's data.crop */
  int batch;             /* 0: the config's data.samples_per_gpu */
  int iters;
  int threads;
  int keep_all;          /* liveness off */
  int build_only;        /* build the networks and optimizer, report the state, run nothing */
} t2s_bench_iter_opts;

typedef struct t2s_bench_iter_result {
  double loss[T2S_BENCH_ITER_MAX][6];  /* src, mix, fd, t2s, st, mic of each iteration */
  double ms_median;
  size_t arena_peak;       /* most pass-arena bytes in use at once, over the iterations */
  size_t arena_footprint;  /* most pass-arena bytes touched (in use + free-list holes) */
  size_t state_bytes;      /* weights, buffers, student gradients, optimizer state */
  uint64_t freed;          /* allocations liveness gave back early */
  uint64_t weights_hash;   /* FNV-1a of the student's weights after the last step */
  double gflop_per_iter;   /* GEMM-shaped forward FLOPs counted by the ops, x 3 */
} t2s_bench_iter_result;

/* Runs opts->iters iterations (<= T2S_BENCH_ITER_MAX) from the config's seed on the CPU. */
t2s_status t2s_bench_iteration_run(const t2s_bench_iter_opts *opts, t2s_bench_iter_result *out,
                                   t2s_error *err);
/* argv[0] is the subcommand ("iteration"); options follow. Returns the exit code. */
int t2s_bench_iteration(int argc, char **argv);
