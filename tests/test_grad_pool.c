// ctest-labels: unit grad
/* max_pool2d / avg_pool2d: output sizes against values PyTorch gives (incl. the
 * ceil_mode rule), forward against a naive window loop written here, finite-
 * difference gradients (max pooling on well separated values so that no step
 * crosses a tie), first-max-on-ties routing, and write mode over stale memory. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "tests/harness.h"

typedef struct pool_case {
  const char *name;
  int64_t n, c, h, w;
  t2s_pool2d_args a;
  int64_t hout, wout; /* what torch.nn.{Max,Avg}Pool2d gives */
} pool_case;

typedef struct pool_run {
  const pool_case *pc;
  int is_max;
} pool_run;

static t2s_tensor *build_pool(t2s_ctx *c, t2s_tensor **in, void *u) {
  const pool_run *r = u;
  return r->is_max ? t2s_max_pool2d(c, in[0], &r->pc->a) : t2s_avg_pool2d(c, in[0], &r->pc->a);
}

/* Naive reference: walk the window in padded coordinates. The divisor with
 * count_include_pad counts positions inside [-pad, in + pad); without it, inputs. */
static double naive_at(const pool_case *pc, int is_max, const float *xp, int64_t oh, int64_t ow) {
  const t2s_pool2d_args *a = &pc->a;
  double best = -INFINITY, sum = 0.0;
  int64_t in_pad = 0, inside = 0;
  for (int i = 0; i < a->kernel_h; i++)
    for (int j = 0; j < a->kernel_w; j++) {
      int64_t ih = oh * a->stride_h - a->pad_h + i, iw = ow * a->stride_w - a->pad_w + j;
      if (ih >= pc->h + a->pad_h || iw >= pc->w + a->pad_w) continue;
      in_pad++;
      if (ih < 0 || iw < 0 || ih >= pc->h || iw >= pc->w) continue;
      inside++;
      double v = xp[ih * pc->w + iw];
      sum += v;
      if (v > best) best = v;
    }
  if (is_max) return best;
  return sum / (double)(a->count_include_pad ? in_pad : inside);
}

/* x: a random permutation of 0.1 k (k = 0..numel-1), shifted to be centred. */
static t2s_tensor *separated_input(const int64_t *shape, uint64_t seed) {
  t2s_tensor *x = t2s_test_tensor(4, shape, 0.0f, 0.0f, seed, 1);
  int64_t n = t2s_numel(x);
  float *v = t2s_f32(x);
  for (int64_t i = 0; i < n; i++) v[i] = 0.1f * (float)i - 0.05f * (float)n;
  t2s_rng_key key = t2s_rng_key_make(seed, 3, 0, 0);
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = t2s_rng_below(key, (uint64_t)i, (uint32_t)(i + 1));
    float t = v[i];
    v[i] = v[j];
    v[j] = t;
  }
  return x;
}

static void check_forward(const pool_case *pc, int is_max, t2s_tensor *x) {
  t2s_error err = {0};
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 1 << 20, &err);
  pool_run r = {pc, is_max};
  t2s_tensor *in[1] = {x};
  t2s_tensor *y = build_pool(ctx, in, &r);
  CHECK_MSG(y != NULL, "%s: %s", pc->name, ctx->err.msg);
  if (y && (y->shape[2] != pc->hout || y->shape[3] != pc->wout)) {
    CHECK_MSG(0, "%s: output %lld x %lld, PyTorch gives %lld x %lld", pc->name,
              (long long)y->shape[2], (long long)y->shape[3], (long long)pc->hout,
              (long long)pc->wout);
    y = NULL;
  }
  int bad = 0;
  for (int64_t p = 0; y && p < pc->n * pc->c; p++)
    for (int64_t oh = 0; oh < pc->hout; oh++)
      for (int64_t ow = 0; ow < pc->wout; ow++) {
        double want = naive_at(pc, is_max, t2s_f32(x) + p * pc->h * pc->w, oh, ow);
        double got = t2s_f32(y)[(p * pc->hout + oh) * pc->wout + ow];
        if (fabs(got - want) > 1e-5 * (1 + fabs(want)) && bad++ < 3)
          fprintf(stderr, "%s %s: y[%lld, %lld, %lld] = %g, expected %g\n", pc->name,
                  is_max ? "max" : "avg", (long long)p, (long long)oh, (long long)ow, got, want);
      }
  CHECK_MSG(bad == 0, "%s: %d values differ from the naive pooling", pc->name, bad);
  t2s_ctx_destroy(ctx);
}

/* dx from a context whose pass arena first held NaNs must equal dx from a clean one. */
static void check_stale_memory(const pool_case *pc, int is_max, t2s_tensor *x) {
  int64_t n = t2s_numel(x);
  float *ref = malloc((size_t)n * sizeof(float));
  for (int poison = 0; poison < 2; poison++) {
    t2s_error err = {0};
    t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 1 << 20, &err);
    if (poison) {
      float *p = t2s_scratch(ctx, 1 << 19);
      for (size_t i = 0; i < (1 << 19) / sizeof(float); i++) p[i] = NAN;
      t2s_ctx_end_pass(ctx);
    }
    pool_run r = {pc, is_max};
    t2s_tensor *in[1] = {x};
    t2s_tensor *y = build_pool(ctx, in, &r);
    t2s_tensor *rt = y ? t2s_test_tensor(4, y->shape, -1.0f, 1.0f, 8, 0) : NULL;
    t2s_tensor *loss = y ? t2s_weighted_sum(ctx, y, rt) : NULL;
    CHECK_MSG(loss && t2s_backward(ctx, loss, 1.0f) == T2S_OK, "%s", ctx->err.msg);
    if (loss && !poison) memcpy(ref, x->grad, (size_t)n * sizeof(float));
    if (loss && poison)
      CHECK_MSG(memcmp(ref, x->grad, (size_t)n * sizeof(float)) == 0,
                "%s %s: dx depends on stale memory", pc->name, is_max ? "max" : "avg");
    x->grad = NULL;
    t2s_test_tensor_free(rt);
    t2s_ctx_destroy(ctx);
  }
  free(ref);
}

/* Ties: all-equal input routes each window's gradient to its first element. */
static void check_ties(void) {
  int64_t shape[4] = {1, 1, 4, 4};
  t2s_tensor *x = t2s_test_tensor(4, shape, 1.0f, 1.0f, 1, 1);
  t2s_pool2d_args a = {2, 2, 2, 2, 0, 0, 0, 1};
  t2s_error err = {0};
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 1 << 20, &err);
  t2s_tensor *y = t2s_max_pool2d(ctx, x, &a);
  int64_t four[4] = {1, 1, 2, 2};
  t2s_tensor *rt = t2s_test_tensor(4, four, 1.0f, 1.0f, 2, 0);
  t2s_tensor *loss = t2s_weighted_sum(ctx, y, rt);
  CHECK_MSG(loss && t2s_backward(ctx, loss, 1.0f) == T2S_OK, "%s", ctx->err.msg);
  for (int64_t i = 0; loss && i < 16; i++) {
    int first = (i / 4) % 2 == 0 && (i % 4) % 2 == 0;
    CHECK_MSG(x->grad[i] == (first ? 1.0f : 0.0f), "tie: dx[%lld] = %g", (long long)i, x->grad[i]);
  }
  x->grad = NULL;
  t2s_ctx_destroy(ctx);
  t2s_test_tensor_free(x);
  t2s_test_tensor_free(rt);
}

static void check_errors(void) {
  int64_t shape[4] = {1, 2, 3, 3};
  t2s_tensor *x = t2s_test_tensor(4, shape, 0.0f, 1.0f, 1, 0);
  t2s_error err = {0};
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 1 << 20, &err);
  t2s_pool2d_args big_pad = {3, 3, 1, 1, 2, 2, 0, 1};
  CHECK(t2s_max_pool2d(ctx, x, &big_pad) == NULL);
  CHECK_MSG(strstr(ctx->err.msg, "max_pool2d") && strstr(ctx->err.msg, "[1, 2, 3, 3]"), "%s",
            ctx->err.msg);
  t2s_error_clear(&ctx->err);
  t2s_pool2d_args too_big = {5, 5, 1, 1, 0, 0, 1, 1};
  CHECK(t2s_avg_pool2d(ctx, x, &too_big) == NULL);
  CHECK_MSG(strstr(ctx->err.msg, "avg_pool2d") && strstr(ctx->err.msg, "larger"), "%s",
            ctx->err.msg);
  t2s_ctx_destroy(ctx);
  t2s_test_tensor_free(x);
}

int main(void) {
  /* {kh, kw, sh, sw, ph, pw, ceil_mode, count_include_pad}; sizes as torch gives them */
  static const pool_case cases[] = {
      {"2x2 stride 2", 2, 3, 6, 8, {2, 2, 2, 2, 0, 0, 0, 1}, 3, 4},
      {"3x3 stride 2 pad 1 (resnet stem)", 1, 2, 9, 8, {3, 3, 2, 2, 1, 1, 0, 1}, 5, 4},
      {"2x2 stride 2 ceil_mode odd size", 1, 2, 5, 7, {2, 2, 2, 2, 0, 0, 1, 1}, 3, 4},
      /* ceil would give 4, but the 4th window would start in the right padding */
      {"2x2 stride 2 pad 1 ceil_mode, last window dropped",
       1,
       2,
       5,
       5,
       {2, 2, 2, 2, 1, 1, 1, 1},
       3,
       3},
      {"3x3 stride 2 pad 1 ceil_mode", 2, 2, 6, 7, {3, 3, 2, 2, 1, 1, 1, 1}, 4, 4},
      {"3x3 stride 2 pad 1 ceil, exclude pad", 1, 3, 6, 7, {3, 3, 2, 2, 1, 1, 1, 0}, 4, 4},
      {"3x3 stride 1 pad 1 exclude pad", 2, 2, 5, 4, {3, 3, 1, 1, 1, 1, 0, 0}, 5, 4},
      {"non-square 3x2 stride (1,2) pad (1,0)", 1, 2, 5, 6, {3, 2, 1, 2, 1, 0, 0, 1}, 5, 3},
      {"3x3 stride 3 ceil_mode", 1, 1, 7, 8, {3, 3, 3, 3, 0, 0, 1, 1}, 3, 3},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const pool_case *pc = &cases[i];
    int64_t shape[4] = {pc->n, pc->c, pc->h, pc->w};
    t2s_tensor *x = separated_input(shape, 20 + i);
    t2s_tensor *in[1] = {x};
    char label[160];
    for (int is_max = 0; is_max < 2; is_max++) {
      pool_run r = {pc, is_max};
      check_forward(pc, is_max, x);
      snprintf(label, sizeof label, "%s %s", is_max ? "max_pool2d" : "avg_pool2d", pc->name);
      t2s_gradcheck(label, build_pool, &r, in, 1, NULL);
      check_stale_memory(pc, is_max, x);
    }
    t2s_test_tensor_free(x);
  }
  check_ties();
  check_errors();
  return t2s_test_finish("test_grad_pool");
}
