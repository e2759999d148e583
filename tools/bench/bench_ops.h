/* `t2sda_bench ops`: forward and backward time of every op of the table (core/engine.h
 * T2S_OP_LIST) at a typical shape of the segmentation networks.
 *
 *   t2sda_bench ops [--device cpu|cuda] [--iters 10] [--warmup 2] [--only NAME]
 *
 * Every op must have an entry (test_op_table checks it against the op list). */
#pragma once
#include "core/engine.h"

/* The typical shape of op id's benchmark ("x 2x64x64x64, w 64x64x3x3"), or NULL when
 * the op has no benchmark entry. */
const char *t2s_bench_op_shape(t2s_op_id id);
/* Mean forward and backward milliseconds of op id over `iters` runs after `warmup`, on
 * ctx's device; inputs are fresh random tensors of the entry's shape each run. The
 * backward time is 0 for an op without gradient. */
t2s_status t2s_bench_op_time(t2s_ctx *ctx, t2s_op_id id, int iters, int warmup, double *fwd_ms,
                             double *bwd_ms);
/* argv[0] is the subcommand ("ops"); options follow. Returns the exit code. */
int t2s_bench_ops(int argc, char **argv);
