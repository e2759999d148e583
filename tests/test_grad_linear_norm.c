// ctest-labels: unit grad
/* linear, matmul, layer_norm, softmax, l2_normalize: finite-difference
 * gradients, forward values against naive loops, FLOP counts, and the backward
 * beta contract (0 overwrites whatever the gradient buffer held). */
#include <math.h>
#include <string.h>

#include "tests/harness.h"

typedef struct mm_case { int ta, tb; } mm_case;
typedef struct dim_case { int dim; float eps; } dim_case;

static t2s_tensor *build_linear(t2s_ctx *c, t2s_tensor **in, void *u) {
  return t2s_linear(c, in[0], in[1], in[2]);
}
static t2s_tensor *build_matmul(t2s_ctx *c, t2s_tensor **in, void *u) {
  const mm_case *m = u;
  return t2s_matmul(c, in[0], in[1], m->ta, m->tb);
}
static t2s_tensor *build_layer_norm(t2s_ctx *c, t2s_tensor **in, void *u) {
  return t2s_layer_norm(c, in[0], in[1], in[2], 1e-5f);
}
static t2s_tensor *build_softmax(t2s_ctx *c, t2s_tensor **in, void *u) {
  return t2s_softmax(c, in[0], ((dim_case *)u)->dim);
}
static t2s_tensor *build_l2(t2s_ctx *c, t2s_tensor **in, void *u) {
  const dim_case *d = u;
  return t2s_l2_normalize(c, in[0], d->dim, d->eps);
}

static t2s_ctx *new_ctx(void) {
  t2s_error err = {0};
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 1 << 20, &err);
  if (ctx == NULL) fprintf(stderr, "context: %s\n", err.msg);
  return ctx;
}

static double max_diff(const float *a, const double *b, int64_t n) {
  double worst = 0;
  for (int64_t i = 0; i < n; i++) worst = fmax(worst, fabs(a[i] - b[i]));
  return worst;
}

/* Runs the backward of the last node on the tape (the op just applied, with its
 * args and saved state) directly: once with the input grads holding NaN and beta 0
 * (must overwrite) and once holding 1 with beta 1 (must add): the two results
 * differ by exactly 1 everywhere. */
static void check_beta_contract(const char *label, t2s_ctx *ctx) {
  if (ctx->tape_len == 0) {
    fprintf(stderr, "%s: nothing on the tape\n", label);
    t2s_test_failures++;
    return;
  }
  t2s_node *node = ctx->tape[ctx->tape_len - 1];
  t2s_tensor *out = node->out;
  int64_t m = t2s_numel(out);
  out->grad = t2s_scratch(ctx, (size_t)m * sizeof(float));
  for (int64_t i = 0; i < m; i++) out->grad[i] = (float)((i % 7) - 3) * 0.25f;
  float *first[T2S_MAX_INPUTS] = {0};
  float beta[T2S_MAX_INPUTS];
  for (int pass = 0; pass < 2; pass++) {
    for (int i = 0; i < node->n_in; i++) {
      t2s_tensor *x = node->in[i];
      beta[i] = (float)pass;
      if (!t2s_wants_grad(x)) continue;
      int64_t k = t2s_numel(x);
      x->grad = t2s_scratch(ctx, (size_t)k * sizeof(float));
      for (int64_t j = 0; j < k; j++) x->grad[j] = pass ? 1.0f : NAN;
      if (pass == 0) first[i] = x->grad;
    }
    CHECK(t2s_ops[node->op].backward[T2S_DEV_CPU](ctx, node, beta) == T2S_OK);
  }
  for (int i = 0; i < node->n_in; i++) {
    t2s_tensor *x = node->in[i];
    if (!t2s_wants_grad(x)) continue;
    int bad = 0;
    for (int64_t j = 0; j < t2s_numel(x); j++)
      bad += !(fabsf(x->grad[j] - 1.0f - first[i][j]) <= 1e-5f * (1.0f + fabsf(first[i][j])));
    CHECK_MSG(bad == 0, "%s: input %d: %d elements break the beta contract", label, i, bad);
    x->grad = NULL;
  }
  out->grad = NULL;
  ctx->tape_len = 0;
}

static void test_linear(void) {
  int64_t sx[3] = {2, 3, 5}, sw[2] = {4, 5}, sb[1] = {4};
  t2s_tensor *x = t2s_test_tensor(3, sx, -1, 1, 1, 1);
  t2s_tensor *w = t2s_test_tensor(2, sw, -1, 1, 2, 1);
  t2s_tensor *b = t2s_test_tensor(1, sb, -1, 1, 3, 1);
  t2s_tensor *with_bias[3] = {x, w, b}, *no_bias[3] = {x, w, NULL};
  t2s_gradcheck("linear 3-d input with bias", build_linear, NULL, with_bias, 3, NULL);
  t2s_gradcheck("linear 3-d input without bias", build_linear, NULL, no_bias, 3, NULL);

  t2s_ctx *ctx = new_ctx();
  t2s_tensor *y = t2s_linear(ctx, x, w, b);
  CHECK_MSG(y != NULL && y->ndim == 3 && y->shape[2] == 4, "%s", ctx->err.msg);
  if (y) {
    double want[24];
    for (int r = 0; r < 6; r++)
      for (int n = 0; n < 4; n++) {
        double s = t2s_f32(b)[n];
        for (int k = 0; k < 5; k++) s += (double)t2s_f32(x)[r * 5 + k] * t2s_f32(w)[n * 5 + k];
        want[r * 4 + n] = s;
      }
    CHECK_MSG(max_diff(t2s_f32(y), want, 24) < 1e-5, "linear forward off by %g",
              max_diff(t2s_f32(y), want, 24));
    CHECK_MSG(ctx->flops == 2.0 * 6 * 4 * 5, "flops %g", ctx->flops);
    check_beta_contract("linear", ctx);
    /* the input wants no gradient here, only the parameters do */
    x->requires_grad = 0;
    CHECK(t2s_linear(ctx, x, w, b) != NULL);
    check_beta_contract("linear, parameters only", ctx);
    x->requires_grad = 1;
  }
  int64_t sbad[2] = {4, 6};
  t2s_tensor *wbad = t2s_test_tensor(2, sbad, -1, 1, 4, 0);
  CHECK(t2s_linear(ctx, x, wbad, NULL) == NULL);
  CHECK_MSG(strstr(ctx->err.msg, "[2, 3, 5]") && strstr(ctx->err.msg, "[4, 6]"), "message: %s",
            ctx->err.msg);
  t2s_ctx_destroy(ctx);
  t2s_test_tensor_free(wbad);
  t2s_test_tensor_free(x);
  t2s_test_tensor_free(w);
  t2s_test_tensor_free(b);
}

/* element (r, c) of op(X) where X is stored rows x cols, op = transpose when t */
static float at(const float *x, int t, int64_t rows_stored, int64_t cols_stored, int64_t r, int64_t c) {
  (void)rows_stored;
  return t ? x[c * cols_stored + r] : x[r * cols_stored + c];
}

static void test_matmul(void) {
  const int64_t B = 2, M = 3, K = 4, N = 5;
  for (int ta = 0; ta <= 1; ta++)
    for (int tb = 0; tb <= 1; tb++) {
      int64_t sa[3] = {B, ta ? K : M, ta ? M : K}, sb[3] = {B, tb ? N : K, tb ? K : N};
      t2s_tensor *a = t2s_test_tensor(3, sa, -1, 1, 10 + 2 * ta + tb, 1);
      t2s_tensor *b = t2s_test_tensor(3, sb, -1, 1, 20 + 2 * ta + tb, 1);
      t2s_tensor *in[2] = {a, b};
      mm_case mc = {ta, tb};
      char label[64];
      snprintf(label, sizeof label, "matmul batch 2 trans_a=%d trans_b=%d", ta, tb);
      t2s_gradcheck(label, build_matmul, &mc, in, 2, NULL);

      t2s_ctx *ctx = new_ctx();
      t2s_tensor *c = t2s_matmul(ctx, a, b, ta, tb);
      CHECK_MSG(c != NULL && c->shape[0] == B && c->shape[1] == M && c->shape[2] == N, "%s",
                ctx->err.msg);
      if (c) {
        double want[2 * 3 * 5];
        for (int64_t i = 0; i < B; i++)
          for (int64_t r = 0; r < M; r++)
            for (int64_t q = 0; q < N; q++) {
              double s = 0;
              for (int64_t k = 0; k < K; k++)
                s += (double)at(t2s_f32(a) + i * M * K, ta, sa[1], sa[2], r, k) *
                     at(t2s_f32(b) + i * K * N, tb, sb[1], sb[2], k, q);
              want[(i * M + r) * N + q] = s;
            }
        CHECK_MSG(max_diff(t2s_f32(c), want, B * M * N) < 1e-5, "%s forward off by %g", label,
                  max_diff(t2s_f32(c), want, B * M * N));
        CHECK_MSG(ctx->flops == 2.0 * B * M * N * K, "flops %g", ctx->flops);
        check_beta_contract(label, ctx);
      }
      t2s_ctx_destroy(ctx);
      t2s_test_tensor_free(a);
      t2s_test_tensor_free(b);
    }
  /* a 2-d operand is a batch of one, broadcast over the other's batch (b shared) */
  int64_t sa[3] = {3, M, K}, sb[2] = {N, K};
  t2s_tensor *a = t2s_test_tensor(3, sa, -1, 1, 30, 1), *b = t2s_test_tensor(2, sb, -1, 1, 31, 1);
  t2s_tensor *in[2] = {a, b};
  mm_case mc = {0, 1};
  t2s_gradcheck("matmul broadcast 2-d b (transposed)", build_matmul, &mc, in, 2, NULL);
  t2s_ctx *ctx = new_ctx();
  CHECK(t2s_matmul(ctx, a, b, 0, 0) == NULL); /* inner sizes 4 and 5 */
  CHECK_MSG(strstr(ctx->err.msg, "[3, 3, 4]") && strstr(ctx->err.msg, "[5, 4]"), "message: %s",
            ctx->err.msg);
  t2s_ctx_destroy(ctx);
  t2s_test_tensor_free(a);
  t2s_test_tensor_free(b);
}

static void test_layer_norm(void) {
  int64_t sx[3] = {2, 3, 6}, sp[1] = {6};
  t2s_tensor *x = t2s_test_tensor(3, sx, -2, 2, 40, 1);
  t2s_tensor *g = t2s_test_tensor(1, sp, 0.5f, 1.5f, 41, 1);
  t2s_tensor *b = t2s_test_tensor(1, sp, -1, 1, 42, 1);
  t2s_tensor *in[3] = {x, g, b}, *plain[3] = {x, NULL, NULL};
  t2s_gradcheck("layer_norm (..., 6) with gamma, beta", build_layer_norm, NULL, in, 3, NULL);
  t2s_gradcheck("layer_norm without affine", build_layer_norm, NULL, plain, 3, NULL);

  t2s_ctx *ctx = new_ctx();
  t2s_tensor *y = t2s_layer_norm(ctx, x, g, b, 1e-5f);
  CHECK_MSG(y != NULL, "%s", ctx->err.msg);
  if (y) {
    double want[36];
    for (int r = 0; r < 6; r++) {
      const float *xr = t2s_f32(x) + r * 6;
      double mean = 0, var = 0;
      for (int j = 0; j < 6; j++) mean += xr[j] / 6.0;
      for (int j = 0; j < 6; j++) var += (xr[j] - mean) * (xr[j] - mean) / 6.0;
      for (int j = 0; j < 6; j++)
        want[r * 6 + j] = (xr[j] - mean) / sqrt(var + 1e-5) * t2s_f32(g)[j] + t2s_f32(b)[j];
    }
    CHECK_MSG(max_diff(t2s_f32(y), want, 36) < 1e-5, "layer_norm forward off by %g",
              max_diff(t2s_f32(y), want, 36));
    check_beta_contract("layer_norm", ctx);
  }
  t2s_ctx_destroy(ctx);
  t2s_test_tensor_free(x);
  t2s_test_tensor_free(g);
  t2s_test_tensor_free(b);
}

static void test_softmax(void) {
  int64_t sx[4] = {2, 4, 3, 5};
  t2s_tensor *x = t2s_test_tensor(4, sx, -2, 2, 50, 1);
  t2s_tensor *in[1] = {x};
  for (int d = 1; d <= 3; d += 2) {
    dim_case dc = {d, 0};
    char label[64];
    snprintf(label, sizeof label, "softmax dim %d", d);
    t2s_gradcheck(label, build_softmax, &dc, in, 1, NULL);
  }
  /* forward against exp / sum written per element, with a huge logit for stability */
  t2s_f32(x)[7] = 1000.0f;
  t2s_ctx *ctx = new_ctx();
  for (int d = 1; d <= 3; d += 2) {
    t2s_tensor *y = t2s_softmax(ctx, x, d);
    CHECK_MSG(y != NULL, "%s", ctx->err.msg);
    if (y == NULL) break;
    int64_t stride = d == 1 ? 15 : 1, len = sx[d];
    double worst = 0;
    for (int64_t e = 0; e < 120; e++) {
      int64_t j = (e / stride) % len, first = e - j * stride;
      double mx = -INFINITY, s = 0;
      for (int64_t k = 0; k < len; k++) mx = fmax(mx, t2s_f32(x)[first + k * stride]);
      for (int64_t k = 0; k < len; k++) s += exp(t2s_f32(x)[first + k * stride] - mx);
      worst = fmax(worst, fabs(t2s_f32(y)[e] - exp(t2s_f32(x)[e] - mx) / s));
    }
    CHECK_MSG(worst < 1e-6, "softmax dim %d forward off by %g", d, worst);
    check_beta_contract("softmax", ctx);
  }
  t2s_ctx_destroy(ctx);
  t2s_test_tensor_free(x);
}

static void test_l2_normalize(void) {
  /* entries of magnitude >= 0.5 keep every norm over 4 channels >= 1, far from eps;
   * pixel 3 of image 1 gets a norm of 0.045 < eps = 0.1 (there y = x / eps is not
   * small, so a wrong "- y sum(dy y)" term would show) and pixel 5 of image 0 a tiny
   * one (1e-4); below eps the gradient is dy / eps */
  int64_t sx[4] = {2, 4, 3, 3};
  t2s_tensor *x = t2s_test_tensor(4, sx, -1, 1, 60, 1);
  float *xv = t2s_f32(x);
  for (int64_t i = 0; i < t2s_numel(x); i++) xv[i] = xv[i] < 0 ? xv[i] - 0.5f : xv[i] + 0.5f;
  for (int c = 0; c < 4; c++) {
    xv[(1 * 4 + c) * 9 + 3] = 0.02f * (c - 1.5f);
    xv[(0 * 4 + c) * 9 + 5] = 0.0001f * (c - 1.5f);
  }
  t2s_tensor *in[1] = {x};
  dim_case d1 = {1, 0.1f}, d3 = {3, 0.1f};
  t2s_gc_opts fine = {1e-3, 0, 0, 0};
  t2s_gradcheck("l2_normalize dim 1, one pixel below eps", build_l2, &d1, in, 1, &fine);
  t2s_gradcheck("l2_normalize dim 3", build_l2, &d3, in, 1, &fine);

  t2s_ctx *ctx = new_ctx();
  t2s_tensor *y = t2s_l2_normalize(ctx, x, 1, 0.1f);
  CHECK_MSG(y != NULL, "%s", ctx->err.msg);
  if (y) {
    for (int n = 0; n < 2; n++)
      for (int p = 0; p < 9; p++) {
        double s = 0, sy = 0;
        for (int c = 0; c < 4; c++) {
          double v = xv[(n * 4 + c) * 9 + p];
          s += v * v;
          sy += (double)t2s_f32(y)[(n * 4 + c) * 9 + p] * t2s_f32(y)[(n * 4 + c) * 9 + p];
        }
        if ((n == 1 && p == 3) || (n == 0 && p == 5)) {
          for (int c = 0; c < 4; c++)
            CHECK(fabsf(t2s_f32(y)[(n * 4 + c) * 9 + p] - xv[(n * 4 + c) * 9 + p] / 0.1f) < 1e-7f);
        } else {
          CHECK_MSG(fabs(sy - 1.0) < 1e-6, "pixel %d,%d: |y|^2 = %g (|x|^2 = %g)", n, p, sy, s);
        }
      }
    check_beta_contract("l2_normalize", ctx);
  }
  CHECK(t2s_l2_normalize(ctx, x, 1, 0.0f) == NULL);
  t2s_ctx_destroy(ctx);
  t2s_test_tensor_free(x);
}

int main(void) {
  test_linear();
  test_matmul();
  test_layer_norm();
  test_softmax();
  test_l2_normalize();
  return t2s_test_finish("test_grad_linear_norm");
}
