#include "losses/batch_stats.h"

t2s_status t2s_batch_stats_reduce(t2s_ctx *ctx, double *buf, size_t n) {
  if (!t2s_ctx_ok(ctx)) return ctx->err.status;
  if (ctx->stat_allreduce == NULL) return T2S_OK;
  if (buf == NULL && n > 0)
    return t2s_error_set(&ctx->err, T2S_ERR_INVALID, "batch_stats_reduce: NULL buffer of %zu values",
                         n);
  t2s_status st = ctx->stat_allreduce(ctx->stat_user, buf, n, &ctx->err);
  if (st != T2S_OK)
    t2s_error_set(&ctx->err, st,
                  "batch_stats_reduce: the cross-rank sum of %zu statistics failed (%s); "
                  "check that every rank reached the same loss step",
                  n, t2s_status_name(st));
  return st;
}
