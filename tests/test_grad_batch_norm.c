// ctest-labels: unit grad
/* batch_norm: the closed form (mean, biased variance, running-stat update with the
 * unbiased variance), finite-difference gradients in train, eval and frozen mode,
 * frozen leaving gamma/beta gradients untouched, write mode over stale memory,
 * and SyncBN: a half batch whose statistics are completed by a fake all-reduce
 * must behave exactly like one batch norm over the full batch. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "tests/harness.h"

#define C 3
static const float kMomentum = 0.1f, kEps = 1e-5f;

typedef struct bn_case {
  t2s_bn_mode mode;
  t2s_tensor *rm, *rv;
} bn_case;

static t2s_tensor *build_bn(t2s_ctx *c, t2s_tensor **in, void *u) {
  bn_case *bc = u;
  return t2s_batch_norm(c, in[0], in[1], in[2], bc->rm, bc->rv, bc->mode, kMomentum, kEps);
}

static t2s_tensor *vec(const float *v, int requires_grad) {
  int64_t c = C;
  t2s_tensor *t = t2s_test_tensor(1, &c, 0.0f, 0.0f, 1, requires_grad);
  memcpy(t->data, v, C * sizeof(float));
  return t;
}

/* Closed form of train mode and of the running-stat update. */
static void check_train_forward(t2s_tensor *x, t2s_tensor *gamma, t2s_tensor *beta) {
  static const float rm0[C] = {0.5f, -1.0f, 2.0f}, rv0[C] = {1.5f, 0.25f, 3.0f};
  t2s_tensor *rm = vec(rm0, 0), *rv = vec(rv0, 0);
  t2s_error err = {0};
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 1 << 20, &err);
  t2s_tensor *y = t2s_batch_norm(ctx, x, gamma, beta, rm, rv, T2S_BN_TRAIN, kMomentum, kEps);
  CHECK_MSG(y != NULL, "%s", ctx->err.msg);
  int64_t n = x->shape[0], hw = x->shape[2] * x->shape[3];
  const float *xv = t2s_f32(x);
  for (int c = 0; c < C && y; c++) {
    double s = 0.0, m = (double)(n * hw);
    for (int64_t b = 0; b < n; b++)
      for (int64_t i = 0; i < hw; i++) s += xv[(b * C + c) * hw + i];
    double mean = s / m, ss = 0.0;
    for (int64_t b = 0; b < n; b++)
      for (int64_t i = 0; i < hw; i++) ss += pow(xv[(b * C + c) * hw + i] - mean, 2);
    double var = ss / m, unbiased = ss / (m - 1.0);
    for (int64_t b = 0; b < n; b++)
      for (int64_t i = 0; i < hw; i++) {
        int64_t k = (b * C + c) * hw + i;
        double want = (xv[k] - mean) / sqrt(var + kEps) * t2s_f32(gamma)[c] + t2s_f32(beta)[c];
        CHECK_MSG(fabs(t2s_f32(y)[k] - want) < 1e-5 * (1 + fabs(want)), "y[%lld] = %g, expected %g",
                  (long long)k, t2s_f32(y)[k], want);
      }
    double want_rm = 0.9 * rm0[c] + 0.1 * mean, want_rv = 0.9 * rv0[c] + 0.1 * unbiased;
    CHECK_MSG(fabs(t2s_f32(rm)[c] - want_rm) < 1e-6, "running_mean[%d] %g, expected %g", c,
              t2s_f32(rm)[c], want_rm);
    CHECK_MSG(fabs(t2s_f32(rv)[c] - want_rv) < 1e-6, "running_var[%d] %g, expected %g", c,
              t2s_f32(rv)[c], want_rv);
  }
  t2s_ctx_destroy(ctx);
  t2s_test_tensor_free(rm);
  t2s_test_tensor_free(rv);
}

/* Eval and frozen: y = (x - running_mean) / sqrt(running_var + eps) gamma + beta, stats unchanged.
 */
static void check_eval_forward(t2s_tensor *x, t2s_tensor *gamma, t2s_tensor *beta,
                               t2s_bn_mode mode) {
  static const float rm0[C] = {0.5f, -1.0f, 2.0f}, rv0[C] = {1.5f, 0.25f, 3.0f};
  t2s_tensor *rm = vec(rm0, 0), *rv = vec(rv0, 0);
  t2s_error err = {0};
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 1 << 20, &err);
  t2s_tensor *y = t2s_batch_norm(ctx, x, gamma, beta, rm, rv, mode, kMomentum, kEps);
  CHECK_MSG(y != NULL, "%s", ctx->err.msg);
  int64_t hw = x->shape[2] * x->shape[3];
  for (int64_t k = 0; y && k < t2s_numel(x); k++) {
    int c = (int)((k / hw) % C);
    double want =
        (t2s_f32(x)[k] - rm0[c]) / sqrt(rv0[c] + kEps) * t2s_f32(gamma)[c] + t2s_f32(beta)[c];
    CHECK_MSG(fabs(t2s_f32(y)[k] - want) < 1e-5 * (1 + fabs(want)),
              "mode %d: y[%lld] = %g, expected %g", (int)mode, (long long)k, t2s_f32(y)[k], want);
  }
  CHECK(memcmp(rm->data, rm0, sizeof rm0) == 0 && memcmp(rv->data, rv0, sizeof rv0) == 0);
  t2s_ctx_destroy(ctx);
  t2s_test_tensor_free(rm);
  t2s_test_tensor_free(rv);
}

/* Frozen: gamma and beta require grad and hold accumulating grads; backward must leave them as is.
 */
static void check_frozen_untouched(t2s_tensor *x, t2s_tensor *gamma, t2s_tensor *beta,
                                   bn_case *bc) {
  float gg[C] = {7, 7, 7}, gb[C] = {9, 9, 9};
  gamma->requires_grad = beta->requires_grad = 1;
  gamma->grad = gg, beta->grad = gb;
  gamma->grad_accumulates = beta->grad_accumulates = 1;
  t2s_error err = {0};
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 1 << 20, &err);
  t2s_tensor *in[3] = {x, gamma, beta};
  t2s_tensor *y = build_bn(ctx, in, bc);
  t2s_tensor *r = t2s_test_tensor(4, x->shape, -1.0f, 1.0f, 5, 0);
  t2s_tensor *loss = t2s_weighted_sum(ctx, y, r);
  CHECK_MSG(loss && t2s_backward(ctx, loss, 1.0f) == T2S_OK, "%s", ctx->err.msg);
  for (int c = 0; c < C; c++)
    CHECK_MSG(gg[c] == 7 && gb[c] == 9, "frozen BN touched gamma/beta grads");
  CHECK(x->grad != NULL);
  gamma->requires_grad = beta->requires_grad = 0;
  gamma->grad = beta->grad = NULL;
  gamma->grad_accumulates = beta->grad_accumulates = 0;
  x->grad = NULL;
  t2s_ctx_destroy(ctx);
  t2s_test_tensor_free(r);
}

/* ---- SyncBN ----
 * The fake all-reduce adds the other half batch's contribution: in forward
 * (n = 2C + 1) [sum x, sum x^2, count]; in backward (n = 2C) [sum dy, sum dy xhat]
 * with dy = r (the loss is sum(y r)) and xhat from the full-batch statistics. */
typedef struct fake_rank {
  const float *x2, *r2; /* the other half: (n2, C, hw) */
  int64_t n2, hw;
  double mean[C], invstd[C];
  int calls;
} fake_rank;

static t2s_status fake_allreduce(void *user, double *buf, size_t n, t2s_error *err) {
  fake_rank *f = user;
  f->calls++;
  for (int c = 0; c < C; c++)
    for (int64_t b = 0; b < f->n2; b++)
      for (int64_t i = 0; i < f->hw; i++) {
        int64_t k = (b * C + c) * f->hw + i;
        double v = f->x2[k];
        if (n == 2 * C + 1) {
          buf[c] += v;
          buf[C + c] += v * v;
        } else {
          buf[c] += f->r2[k];
          buf[C + c] += f->r2[k] * (v - f->mean[c]) * f->invstd[c];
        }
      }
  if (n == 2 * C + 1) buf[2 * C] += (double)(f->n2 * f->hw);
  return T2S_OK;
}

/* Runs BN train on x with loss sum(y r); returns y, fills dx, dgamma, dbeta, running stats. */
static int bn_run(t2s_ctx *ctx, t2s_tensor *x, t2s_tensor *gamma, t2s_tensor *beta, t2s_tensor *rm,
                  t2s_tensor *rv, const float *r, float *y, float *dx, float *dg, float *db) {
  x->requires_grad = gamma->requires_grad = beta->requires_grad = 1;
  t2s_tensor *out = t2s_batch_norm(ctx, x, gamma, beta, rm, rv, T2S_BN_TRAIN, kMomentum, kEps);
  if (out == NULL) return 0;
  t2s_tensor rt;
  t2s_tensor_init(&rt, T2S_F32, T2S_DEV_CPU, 4, x->shape, (void *)r);
  t2s_tensor *loss = t2s_weighted_sum(ctx, out, &rt);
  if (loss == NULL || t2s_backward(ctx, loss, 1.0f) != T2S_OK) return 0;
  memcpy(y, out->data, (size_t)t2s_numel(x) * sizeof(float));
  memcpy(dx, x->grad, (size_t)t2s_numel(x) * sizeof(float));
  memcpy(dg, gamma->grad, C * sizeof(float));
  memcpy(db, beta->grad, C * sizeof(float));
  x->grad = gamma->grad = beta->grad = NULL;
  t2s_ctx_end_pass(ctx);
  return 1;
}

static void check_sync_bn(void) {
  enum { N = 4, H = 3, W = 5, HALF = N / 2 * C * H * W, ALL = N * C * H * W };
  int64_t shape[4] = {N, C, H, W};
  t2s_tensor *x = t2s_test_tensor(4, shape, -2.0f, 3.0f, 41, 1);
  t2s_tensor *rt = t2s_test_tensor(4, shape, -1.0f, 1.0f, 42, 0);
  static const float g0[C] = {1.5f, 0.5f, -1.0f}, b0[C] = {0.1f, -0.2f, 0.3f}, ones[C] = {1, 1, 1};
  t2s_tensor *gamma = vec(g0, 1), *beta = vec(b0, 1), *rm = vec(b0, 0), *rv = vec(ones, 0);
  t2s_tensor *rm1 = vec(b0, 0), *rv1 = vec(ones, 0);
  static float y[ALL], dx[ALL], y1[HALF], dx1[HALF];
  float dg[C], db[C], dg1[C], db1[C];
  t2s_error err = {0};
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 1 << 20, &err);
  CHECK_MSG(bn_run(ctx, x, gamma, beta, rm, rv, t2s_f32(rt), y, dx, dg, db), "%s", ctx->err.msg);

  /* rank 0 holds images 0..1, the fake peer images 2..3 */
  fake_rank f = {t2s_f32(x) + HALF, t2s_f32(rt) + HALF, N / 2, H * W, {0}, {0}, 0};
  double m = N * H * W;
  for (int c = 0; c < C; c++) {
    double s = 0, ss = 0;
    for (int64_t b = 0; b < N; b++)
      for (int64_t i = 0; i < H * W; i++) s += t2s_f32(x)[(b * C + c) * H * W + i];
    f.mean[c] = s / m;
    for (int64_t b = 0; b < N; b++)
      for (int64_t i = 0; i < H * W; i++)
        ss += pow(t2s_f32(x)[(b * C + c) * H * W + i] - f.mean[c], 2);
    f.invstd[c] = 1.0 / sqrt(ss / m + kEps);
  }
  int64_t hshape[4] = {N / 2, C, H, W};
  t2s_tensor xh;
  t2s_tensor_init(&xh, T2S_F32, T2S_DEV_CPU, 4, hshape, x->data);
  ctx->sync_bn = 1;
  ctx->stat_allreduce = fake_allreduce;
  ctx->stat_user = &f;
  CHECK_MSG(bn_run(ctx, &xh, gamma, beta, rm1, rv1, t2s_f32(rt), y1, dx1, dg1, db1), "%s",
            ctx->err.msg);
  CHECK_MSG(f.calls == 2, "SyncBN called the all-reduce %d times, expected 2 (forward, backward)",
            f.calls);
  int bad = 0;
  for (int64_t k = 0; k < HALF; k++) {
    bad += fabsf(y1[k] - y[k]) > 1e-5f * (1 + fabsf(y[k]));
    bad += fabsf(dx1[k] - dx[k]) > 1e-4f * (1 + fabsf(dx[k]));
  }
  CHECK_MSG(bad == 0, "SyncBN half batch differs from the full batch in %d values of y / dx", bad);
  for (int c = 0; c < C; c++) {
    CHECK_MSG(fabsf(t2s_f32(rm1)[c] - t2s_f32(rm)[c]) < 1e-6f &&
                  fabsf(t2s_f32(rv1)[c] - t2s_f32(rv)[c]) < 1e-6f,
              "SyncBN running stats of channel %d differ from the full batch", c);
    /* parameter grads stay local: the half batch's own sums */
    double sg = 0, sb = 0;
    for (int64_t b = 0; b < N / 2; b++)
      for (int64_t i = 0; i < H * W; i++) {
        int64_t k = (b * C + c) * H * W + i;
        sb += t2s_f32(rt)[k];
        sg += t2s_f32(rt)[k] * (t2s_f32(x)[k] - f.mean[c]) * f.invstd[c];
      }
    CHECK_MSG(fabs(dg1[c] - sg) < 1e-4 && fabs(db1[c] - sb) < 1e-4,
              "SyncBN dgamma/dbeta of channel %d: %g %g, local sums %g %g", c, dg1[c], db1[c], sg,
              sb);
  }
  t2s_ctx_destroy(ctx);
  t2s_tensor *all[] = {x, rt, gamma, beta, rm, rv, rm1, rv1};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) t2s_test_tensor_free(all[i]);
}

/* Backward in write mode must not read what the grad memory held before. */
static void check_stale_memory(t2s_tensor *x, t2s_tensor *gamma, t2s_tensor *beta, bn_case *bc) {
  float *ref = NULL;
  int64_t n = t2s_numel(x);
  for (int poison = 0; poison < 2; poison++) {
    t2s_error err = {0};
    t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 1 << 20, &err);
    if (poison) {
      float *p = t2s_scratch(ctx, 1 << 19);
      for (size_t i = 0; i < (1 << 19) / sizeof(float); i++) p[i] = NAN;
      t2s_ctx_end_pass(ctx);
    }
    t2s_tensor *in[3] = {x, gamma, beta};
    t2s_tensor *r = t2s_test_tensor(4, x->shape, -1.0f, 1.0f, 5, 0);
    t2s_tensor *loss = t2s_weighted_sum(ctx, build_bn(ctx, in, bc), r);
    CHECK_MSG(loss && t2s_backward(ctx, loss, 1.0f) == T2S_OK, "%s", ctx->err.msg);
    if (!poison)
      ref = malloc((size_t)n * sizeof(float)), memcpy(ref, x->grad, (size_t)n * sizeof(float));
    else
      CHECK_MSG(memcmp(ref, x->grad, (size_t)n * sizeof(float)) == 0,
                "mode %d: dx depends on stale memory", (int)bc->mode);
    x->grad = NULL;
    t2s_test_tensor_free(r);
    t2s_ctx_destroy(ctx);
  }
  free(ref);
}

int main(void) {
  int64_t shape[4] = {2, C, 3, 4};
  t2s_tensor *x = t2s_test_tensor(4, shape, -1.0f, 2.0f, 11, 1);
  static const float g0[C] = {1.25f, -0.75f, 0.5f}, b0[C] = {0.2f, 0.0f, -0.4f};
  static const float rm0[C] = {0.3f, -0.1f, 0.2f}, rv0[C] = {0.8f, 1.3f, 0.6f};
  t2s_tensor *gamma = vec(g0, 1), *beta = vec(b0, 1), *rm = vec(rm0, 0), *rv = vec(rv0, 0);
  check_train_forward(x, gamma, beta);
  check_eval_forward(x, gamma, beta, T2S_BN_EVAL);
  check_eval_forward(x, gamma, beta, T2S_BN_FROZEN);

  t2s_tensor *in[3] = {x, gamma, beta};
  t2s_gc_opts fine = {1e-3, 2e-2, 2e-3, 64};
  bn_case train = {T2S_BN_TRAIN, rm, rv}, eval = {T2S_BN_EVAL, rm, rv},
          frozen = {T2S_BN_FROZEN, rm, rv};
  bn_case no_stats = {T2S_BN_TRAIN, NULL, NULL};
  t2s_gradcheck("batch_norm train", build_bn, &train, in, 3, &fine);
  t2s_gradcheck("batch_norm train, no running stats", build_bn, &no_stats, in, 3, &fine);
  t2s_gradcheck("batch_norm eval", build_bn, &eval, in, 3, &fine);
  gamma->requires_grad = beta->requires_grad = 0;
  t2s_gradcheck("batch_norm frozen (grad to x)", build_bn, &frozen, in, 3, &fine);
  t2s_gradcheck("batch_norm train, constant gamma/beta", build_bn, &train, in, 3, &fine);
  check_frozen_untouched(x, gamma, beta, &frozen);
  t2s_gradcheck("batch_norm train, no affine", build_bn, &train, (t2s_tensor *[]){x, NULL, NULL}, 3,
                &fine);
  check_stale_memory(x, gamma, beta, &train);
  check_stale_memory(x, gamma, beta, &eval);
  check_sync_bn();

  /* errors: eval needs running stats; training with one value per channel */
  t2s_error err = {0};
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 1 << 20, &err);
  CHECK(t2s_batch_norm(ctx, x, gamma, beta, NULL, NULL, T2S_BN_EVAL, kMomentum, kEps) == NULL);
  CHECK_MSG(strstr(ctx->err.msg, "batch_norm") && strstr(ctx->err.msg, "running_mean"), "%s",
            ctx->err.msg);
  t2s_error_clear(&ctx->err);
  int64_t one[4] = {1, C, 1, 1};
  t2s_tensor *x1 = t2s_test_tensor(4, one, 0.0f, 1.0f, 3, 0);
  CHECK(t2s_batch_norm(ctx, x1, gamma, beta, rm, rv, T2S_BN_TRAIN, kMomentum, kEps) == NULL);
  CHECK_MSG(strstr(ctx->err.msg, "more than one value"), "%s", ctx->err.msg);
  t2s_ctx_destroy(ctx);
  t2s_tensor *all[] = {x, gamma, beta, rm, rv, x1};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) t2s_test_tensor_free(all[i]);
  return t2s_test_finish("test_grad_batch_norm");
}
