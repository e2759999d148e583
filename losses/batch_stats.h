/* The one door through which every batch statistic of the method crosses ranks.
 *
 * Prototype sums and counts, intersection/union counts, pseudo-label confidence
 * counts, per-class query counts and loss normalisers are all sums over the
 * global batch. Each piece computes its rank-local sums into a double buffer and
 * calls t2s_batch_stats_reduce(); afterwards every rank holds the global sums.
 * On one process (ctx->stat_allreduce == NULL) the local sums are already global. */
#pragma once
#include <stddef.h>

#include "core/engine.h"

/* buf[0..n) <- sum over ranks of buf[0..n), through ctx->stat_allreduce when set.
 * Fails (and sets ctx->err) when the collective fails or ctx already holds an error. */
t2s_status t2s_batch_stats_reduce(t2s_ctx *ctx, double *buf, size_t n);

/* Every rank must call t2s_batch_stats_reduce the same number of times in the same
 * order, so a piece that has nothing local to add still calls it (with zeros). */

/* Loss normaliser for data parallelism: the distributed layer AVERAGES gradients over
 * ranks, so a rank's loss is (its share of the global sum) x world_size, i.e. the local
 * sum divided by global_count / world_size. Returns 0 when global_count is 0. */
static inline double t2s_rank_loss_scale(double global_count, int world_size) {
  return global_count > 0.0 ? (double)(world_size > 0 ? world_size : 1) / global_count : 0.0;
}
