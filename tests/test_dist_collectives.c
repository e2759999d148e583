// ctest-labels: dist
// ctest-mpi: 2
/* The communicator's collectives against closed forms: sums of rank-dependent values
 * (doubles, int64 beyond 2^53, floats, the ctx->stat_allreduce slot), broadcasts of
 * bytes and of a parameter set, the barrier, and the failure agreement of
 * t2s_dist_check_all. Runs under `mpirun -np 2` in ctest and as a plain process
 * (world 1), where the same closed forms hold with W = 1. */
#include <stdlib.h>
#include <string.h>

#include "dist/comm.h"
#include "tests/harness.h"

static void check_sums(t2s_comm *c) {
  const int n = 1000;
  const int W = c->world, r = c->rank;
  t2s_error err = {0};
  double *d = malloc((size_t)n * sizeof *d);
  int64_t *q = malloc((size_t)n * sizeof *q);
  float *f = malloc((size_t)n * sizeof *f);
  for (int i = 0; i < n; i++) {
    d[i] = (r + 1) * (double)i + 0.25;
    q[i] = ((int64_t)1 << 54) * (r + 1) + i;  /* beyond double precision */
    f[i] = (float)((r + 1) * (i % 7));
  }
  CHECK(t2s_dist_allreduce_f64(c, d, (size_t)n, &err) == T2S_OK);
  CHECK(t2s_dist_allreduce_i64(c, q, (size_t)n, &err) == T2S_OK);
  CHECK(t2s_dist_allreduce_f32(c, T2S_DEV_CPU, f, (size_t)n, &err) == T2S_OK);
  CHECK_MSG(err.status == T2S_OK, "%s", err.msg);
  /* sum_r (r + 1) = W (W + 1) / 2 */
  const int64_t tri = (int64_t)W * (W + 1) / 2;
  int bad_d = 0, bad_q = 0, bad_f = 0;
  for (int i = 0; i < n; i++) {
    bad_d += d[i] != (double)tri * i + 0.25 * W;
    bad_q += q[i] != ((int64_t)1 << 54) * tri + (int64_t)W * i;
    bad_f += f[i] != (float)(tri * (i % 7));
  }
  CHECK_MSG(bad_d == 0 && bad_q == 0 && bad_f == 0, "wrong sums: %d double, %d int64, %d float",
            bad_d, bad_q, bad_f);
  free(d);
  free(q);
  free(f);
}

/* Through the engine's slot, as SyncBN calls it. */
static void check_stat_allreduce(t2s_comm *c) {
  t2s_error err = {0};
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 1 << 16, &err);
  CHECK(ctx != NULL);
  if (ctx == NULL) return;
  t2s_dist_attach(c, ctx, 1);
  CHECK(ctx->sync_bn == 1);
  CHECK((ctx->stat_allreduce != NULL) == (c->world > 1));
  double stats[3] = {c->rank, 1.0, -2.5 * (c->rank + 1)};
  if (ctx->stat_allreduce)
    CHECK(ctx->stat_allreduce(ctx->stat_user, stats, 3, &err) == T2S_OK);
  const double W = c->world;
  CHECK(stats[0] == W * (W - 1) / 2 && stats[1] == W && stats[2] == -2.5 * W * (W + 1) / 2);
  t2s_ctx_destroy(ctx);
}

static void check_bcast(t2s_comm *c) {
  t2s_error err = {0};
  unsigned char bytes[777];
  for (int i = 0; i < 777; i++) bytes[i] = c->rank == 0 ? (unsigned char)(i * 13 + 1) : 0;
  CHECK(t2s_dist_bcast(c, bytes, sizeof bytes, 0, &err) == T2S_OK);
  int bad = 0;
  for (int i = 0; i < 777; i++) bad += bytes[i] != (unsigned char)(i * 13 + 1);
  CHECK_MSG(bad == 0, "%d broadcast bytes differ from rank 0's", bad);

  /* Parameters initialised from a rank-dependent seed end up equal to rank 0's. */
  t2s_params p, ref;
  int64_t ws[2] = {5, 7}, bs[1] = {9};
  t2s_params *sets[2] = {&p, &ref};
  for (int k = 0; k < 2; k++) {
    t2s_params_init(sets[k]);
    CHECK(t2s_params_add(sets[k], "w", T2S_PARAM_WEIGHT, 2, ws, T2S_INIT_NORMAL, 1.0f) != NULL);
    CHECK(t2s_params_add(sets[k], "run", T2S_PARAM_BUFFER, 1, bs, T2S_INIT_UNIFORM, 1.0f) != NULL);
    uint64_t seed = k == 0 ? 100 + (uint64_t)c->rank : 100;
    CHECK(t2s_params_finalize(sets[k], T2S_DEV_CPU, seed, &err) == T2S_OK);
  }
  CHECK(t2s_dist_bcast_params(c, &p, &err) == T2S_OK);
  CHECK(memcmp(p.data, ref.data, p.numel * sizeof(float)) == 0);
  CHECK(memcmp(p.buf_data, ref.buf_data, p.buf_numel * sizeof(float)) == 0);
  t2s_params_free(&p);
  t2s_params_free(&ref);
  CHECK(t2s_dist_barrier(c, &err) == T2S_OK);
}

static void check_failure_agreement(t2s_comm *c) {
  t2s_error err = {0};
  const int W = c->world, last = W - 1;
  CHECK(t2s_dist_check_all(c, T2S_OK, NULL, &err) == T2S_OK);
  /* Only the last rank fails to open its data: every rank learns it, and who. */
  t2s_status mine = c->rank == last ? T2S_ERR_IO : T2S_OK;
  t2s_status st = t2s_dist_check_all(c, mine, "cannot open shard 'x-00001.h5'", &err);
  CHECK(st == T2S_ERR_IO);
  char want[64];
  snprintf(want, sizeof want, "rank %d of %d", last, W);
  CHECK_MSG(W == 1 || strstr(err.msg, want) != NULL, "message '%s' does not name %s", err.msg, want);
  CHECK_MSG(strstr(err.msg, "cannot open shard 'x-00001.h5'") != NULL, "message '%s'", err.msg);
  /* Every rank fails: the lowest rank's message is reported, with the count of others. */
  t2s_error_clear(&err);
  char msg[64];
  snprintf(msg, sizeof msg, "bad config on rank %d", c->rank);
  st = t2s_dist_check_all(c, T2S_ERR_INVALID, msg, &err);
  CHECK(st == T2S_ERR_INVALID);
  CHECK_MSG(strstr(err.msg, "bad config on rank 0") != NULL, "message '%s'", err.msg);
  CHECK_MSG(W == 1 || strstr(err.msg, "other rank(s) failed") != NULL, "message '%s'", err.msg);
}

int main(void) {
  t2s_comm c;
  t2s_error err = {0};
  t2s_dist_cfg cfg = t2s_dist_default_cfg();
  cfg.timeout_s = 60;
  if (t2s_dist_init(&c, &cfg, &err) != T2S_OK) {
    fprintf(stderr, "t2s_dist_init: %s\n", err.msg);
    return 1;
  }
  CHECK(c.rank >= 0 && c.rank < c.world);
  CHECK(c.backend == (c.world > 1 ? T2S_COMM_MPI : T2S_COMM_SINGLE));
  CHECK(c.local_rank >= 0 && c.local_rank < c.local_world);
  CHECK(t2s_dist_is_root(&c) == (c.rank == 0));
  check_sums(&c);
  check_stat_allreduce(&c);
  check_bcast(&c);
  check_failure_agreement(&c);
  /* Every rank's verdict counts: a failure on any rank fails the job on all. */
  int64_t failures = t2s_test_failures;
  if (t2s_dist_allreduce_i64(&c, &failures, 1, &err) != T2S_OK) failures = 1;
  if (failures > 0 && t2s_test_failures == 0) t2s_test_failures = 1;
  t2s_dist_finalize(&c);
  return t2s_test_finish("test_dist_collectives");
}
