#include "tests/harness.h"

#include <math.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"

int t2s_test_failures = 0;

int t2s_test_run(const char *fmt, ...) {
  char cmd[16384];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  int rc = system(cmd);
  if (rc == -1) return 127;
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
}

int t2s_test_finish(const char *name) {
  if (t2s_test_failures == 0) {
    printf("%s: all checks passed\n", name);
    return 0;
  }
  printf("%s: %d check(s) failed\n", name, t2s_test_failures);
  return 1;
}

t2s_tensor *t2s_test_tensor(int ndim, const int64_t *shape, float lo, float hi, uint64_t seed,
                            int requires_grad) {
  t2s_tensor *t = calloc(1, sizeof *t);
  t2s_tensor_init(t, T2S_F32, T2S_DEV_CPU, ndim, shape, NULL);
  int64_t n = t2s_numel(t);
  float *d = malloc((size_t)(n ? n : 1) * sizeof(float));
  t2s_rng_key key = t2s_rng_key_make(seed, 77, 0, 0);
  for (int64_t i = 0; i < n; i++) d[i] = lo + (hi - lo) * t2s_rng_uniform(key, (uint64_t)i);
  t->data = d;
  t->requires_grad = (uint8_t)requires_grad;
  return t;
}

t2s_tensor *t2s_test_tensor_u8(int ndim, const int64_t *shape, const uint8_t *values) {
  t2s_tensor *t = calloc(1, sizeof *t);
  t2s_tensor_init(t, T2S_U8, T2S_DEV_CPU, ndim, shape, NULL);
  int64_t n = t2s_numel(t);
  uint8_t *d = malloc((size_t)(n ? n : 1));
  if (values) memcpy(d, values, (size_t)n);
  else memset(d, 0, (size_t)n);
  t->data = d;
  return t;
}

void t2s_test_tensor_free(t2s_tensor *t) {
  if (t == NULL) return;
  free(t->data);
  free(t);
}

/* Loss = sum(out * R) in double; NaN when the build failed. */
static double probe_loss(t2s_ctx *ctx, t2s_gc_build build, void *user, t2s_tensor **inputs,
                         const float *r, int64_t *out_n) {
  int prev = t2s_set_grad_enabled(ctx, 0);
  t2s_tensor *out = build(ctx, inputs, user);
  t2s_set_grad_enabled(ctx, prev);
  double loss = NAN;
  if (out != NULL && out->dtype == T2S_F32) {
    const float *y = t2s_f32(out);
    int64_t n = t2s_numel(out);
    loss = 0.0;
    for (int64_t i = 0; i < n; i++) loss += (double)y[i] * r[i];
    if (out_n) *out_n = n;
  }
  t2s_ctx_end_pass(ctx);
  return loss;
}

/* One forward + backward of sum(out * r); the inputs' gradients start absent (write
 * mode) or at 0.5 in grads[] (accumulate mode). Returns 0 when the build failed. */
static int analytic(t2s_ctx *ctx, t2s_gc_build build, void *user, t2s_tensor **inputs, int n,
                    const float *r, int accumulate, float **grads) {
  for (int k = 0; k < n; k++) {
    if (!inputs[k] || !inputs[k]->requires_grad) continue;
    int64_t m = t2s_numel(inputs[k]);
    if (accumulate) {
      for (int64_t i = 0; i < m; i++) grads[k][i] = 0.5f;
      inputs[k]->grad = grads[k];
      inputs[k]->grad_accumulates = 1;
    } else {
      inputs[k]->grad = NULL;
      inputs[k]->grad_accumulates = 0;
    }
  }
  /* The build runs in a liveness scope on pass-arena copies of the differentiable inputs
   * (x * 1, exact in both directions): everything its backward does not declare it reads
   * (t2s_op_bwd_reads) is freed, and poisoned, before the backward runs. */
  t2s_scope scope = t2s_scope_begin(ctx);
  t2s_tensor *copies[T2S_MAX_INPUTS];
  for (int k = 0; k < n; k++)
    copies[k] = inputs[k] && inputs[k]->requires_grad && inputs[k]->dtype == T2S_F32
                    ? t2s_scale(ctx, inputs[k], 1.0f) : inputs[k];
  t2s_tensor *out = build(ctx, copies, user);
  if (out == NULL) return 0;
  t2s_tensor rt;
  t2s_tensor_init(&rt, T2S_F32, T2S_DEV_CPU, out->ndim, out->shape, (void *)r);
  t2s_tensor *loss = t2s_weighted_sum(ctx, out, &rt);
  t2s_scope_end(ctx, scope, &loss, 1);
  return loss != NULL && t2s_backward(ctx, loss, 1.0f) == T2S_OK;
}

int t2s_gradcheck(const char *label, t2s_gc_build build, void *user, t2s_tensor **inputs, int n,
                  const t2s_gc_opts *opts) {
  t2s_gc_opts o = {1e-2, 2e-2, 2e-3, 64};
  if (opts) {
    if (opts->eps > 0) o.eps = opts->eps;
    if (opts->rtol > 0) o.rtol = opts->rtol;
    if (opts->atol > 0) o.atol = opts->atol;
    if (opts->max_points > 0) o.max_points = opts->max_points;
  }
  int bad = 0;
  t2s_error err = {0};
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 16 << 20, &err);
  if (ctx == NULL) {
    fprintf(stderr, "%s: %s\n", label, err.msg);
    t2s_test_failures++;
    return 1;
  }
  ctx->seed = 1234;
  /* new pass memory reads as NaN: a backward that adds into a gradient it was
   * asked to write (beta 0), or reads memory it never wrote, fails the check */
  t2s_arena_set_poison(ctx->pass, 0xFF);
  /* the shape of the output decides R */
  int64_t out_n = 0;
  float *r = malloc(sizeof(float));
  {
    t2s_tensor *out = build(ctx, inputs, user);
    if (out == NULL) {
      fprintf(stderr, "%s: build failed: %s\n", label, ctx->err.msg);
      t2s_test_failures++;
      t2s_ctx_destroy(ctx);
      free(r);
      return 1;
    }
    out_n = t2s_numel(out);
    t2s_ctx_end_pass(ctx);
    free(r);
    r = malloc((size_t)out_n * sizeof(float));
    t2s_rng_key key = t2s_rng_key_make(99, 5, 0, 0);
    for (int64_t i = 0; i < out_n; i++) r[i] = 2.0f * t2s_rng_uniform(key, (uint64_t)i) - 1.0f;
  }
  float *grads[T2S_MAX_INPUTS] = {0};
  float *acc[T2S_MAX_INPUTS] = {0};
  for (int k = 0; k < n; k++) {
    if (!inputs[k] || !inputs[k]->requires_grad) continue;
    int64_t m = t2s_numel(inputs[k]);
    grads[k] = malloc((size_t)m * sizeof(float));
    acc[k] = malloc((size_t)m * sizeof(float));
  }
  for (int pass = 0; pass < 2; pass++) {
    if (!analytic(ctx, build, user, inputs, n, r, pass, acc)) {
      fprintf(stderr, "%s: forward/backward failed: %s\n", label, ctx->err.msg);
      bad++;
      break;
    }
    for (int k = 0; k < n; k++) {
      if (!grads[k]) continue;
      int64_t m = t2s_numel(inputs[k]);
      if (pass == 0) memcpy(grads[k], inputs[k]->grad, (size_t)m * sizeof(float));
      else
        for (int64_t i = 0; i < m; i++) {
          double want = 0.5 + grads[k][i];
          if (fabs(acc[k][i] - want) > 1e-5 * (1.0 + fabs(want))) {
            fprintf(stderr, "%s: input %d element %lld: accumulate mode gives %g, expected 0.5 + %g\n",
                    label, k, (long long)i, acc[k][i], grads[k][i]);
            bad++;
            break;
          }
        }
    }
    t2s_ctx_end_pass(ctx);
  }
  for (int k = 0; k < n && bad == 0; k++) {
    if (!grads[k]) continue;
    inputs[k]->grad = NULL;
    inputs[k]->grad_accumulates = 0;
    float *x = t2s_f32(inputs[k]);
    int64_t m = t2s_numel(inputs[k]);
    int64_t stride = m > o.max_points ? m / o.max_points : 1;
    int reported = 0;
    for (int64_t i = (stride > 1 ? stride / 2 : 0); i < m; i += stride) {
      float keep = x[i];
      x[i] = (float)(keep + o.eps);
      double lp = probe_loss(ctx, build, user, inputs, r, NULL);
      x[i] = (float)(keep - o.eps);
      double lm = probe_loss(ctx, build, user, inputs, r, NULL);
      x[i] = keep;
      double num = (lp - lm) / (2.0 * o.eps);
      double ana = grads[k][i];
      if (!(fabs(num - ana) <= o.atol + o.rtol * fmax(fabs(num), fabs(ana)))) {
        if (reported++ < 5)
          fprintf(stderr, "%s: input %d element %lld: analytic %.6g, finite difference %.6g\n",
                  label, k, (long long)i, ana, num);
        bad++;
      }
    }
  }
  for (int k = 0; k < n; k++) {
    free(grads[k]);
    free(acc[k]);
    if (inputs[k]) {
      inputs[k]->grad = NULL;
      inputs[k]->grad_accumulates = 0;
    }
  }
  free(r);
  t2s_ctx_destroy(ctx);
  t2s_test_failures += bad;
  printf("%s %s\n", bad ? "FAIL" : "ok  ", label);
  return bad;
}

int t2s_test_file_contains(const char *path, const char *needle) {
  FILE *f = fopen(path, "r");
  if (f == NULL) return 0;
  static char buf[1 << 20];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = 0;
  fclose(f);
  return strstr(buf, needle) != NULL;
}

int t2s_test_count_lines(const char *path, const char *needle) {
  FILE *f = fopen(path, "r");
  char line[8192];
  int n = 0;
  while (f && fgets(line, sizeof line, f))
    if (strstr(line, needle)) n++;
  if (f) fclose(f);
  return n;
}

int t2s_test_e2e_dirs(const char *work_name, char *bin, size_t bin_size, char *src, size_t src_size,
                      char *dir, size_t dir_size) {
  const char *b = getenv("T2S_BINARY_DIR"), *s = getenv("T2S_SOURCE_DIR");
  if (b == NULL || s == NULL) {
    fprintf(stderr, "run through ctest (T2S_BINARY_DIR and T2S_SOURCE_DIR)\n");
    return 1;
  }
  snprintf(bin, bin_size, "%s/bin", b);
  if (src != NULL) snprintf(src, src_size, "%s", s);
  snprintf(dir, dir_size, "%s/tests/%s", b, work_name);
  return t2s_test_run("rm -rf '%s' && mkdir -p '%s'", dir, dir) == 0 ? 0 : 1;
}

int t2s_test_in_child(void (*child)(const char *arg), const char *arg, long *pid) {
  fflush(NULL);
  pid_t p = fork();
  if (p < 0) return -1;
  if (p == 0) {
    child(arg);
    _exit(127);
  }
  *pid = (long)p;
  int status = 0;
  waitpid(p, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static float *copy_floats(const float *v, int64_t n) {
  float *c = malloc((size_t)n * sizeof(float));
  if (c) memcpy(c, v, (size_t)n * sizeof(float));
  return c;
}

int t2s_test_conv_fanout(const char *label, t2s_tensor *x, t2s_tensor *w, t2s_tensor *w2,
                         t2s_tensor *b, const t2s_conv2d_args *a, t2s_test_conv_result *res) {
  t2s_error err = {0};
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 1 << 20, &err);
  CHECK_MSG(ctx != NULL, "%s: %s", label, err.msg);
  if (ctx == NULL) return 0;
  int64_t nw = t2s_numel(w);
  float *wgrad = malloc((size_t)nw * sizeof(float));
  for (int64_t k = 0; k < nw; k++) wgrad[k] = 0.25f;
  w->grad = wgrad;
  t2s_tensor *y = t2s_conv2d(ctx, x, w, b, a);
  t2s_tensor *y2 = t2s_conv2d(ctx, x, w2, NULL, a);
  t2s_tensor *r1 = y ? t2s_test_tensor(4, y->shape, -1.0f, 1.0f, 7, 0) : NULL;
  t2s_tensor *r2 = y ? t2s_test_tensor(4, y->shape, -1.0f, 1.0f, 8, 0) : NULL;
  t2s_tensor *l1 = y ? t2s_weighted_sum(ctx, y, r1) : NULL;
  t2s_tensor *l2 = y2 ? t2s_weighted_sum(ctx, y2, r2) : NULL;
  t2s_tensor *loss = l1 && l2 ? t2s_add(ctx, l1, l2) : NULL;
  int ok = loss != NULL;
  if (ok) {
    res->ny = t2s_numel(y);
    res->y = copy_floats(t2s_f32(y), res->ny);
  }
  ok = ok && t2s_backward(ctx, loss, 1.0f) == T2S_OK;
  CHECK_MSG(ok, "%s: %s", label, ctx->err.msg);
  if (ok) {
    res->nx = t2s_numel(x), res->nw = nw;
    res->dx = copy_floats(x->grad, res->nx);
    res->dw = copy_floats(w->grad, nw);
    res->dw2 = w2->grad ? copy_floats(w2->grad, nw) : NULL; /* NULL: w2 takes no gradient */
    res->nb = b ? t2s_numel(b) : 0;
    res->db = b ? copy_floats(b->grad, res->nb) : NULL;
  }
  x->grad = w->grad = w2->grad = NULL;
  if (b) b->grad = NULL;
  free(wgrad);
  t2s_test_tensor_free(r1);
  t2s_test_tensor_free(r2);
  t2s_ctx_destroy(ctx);
  return ok;
}

void t2s_test_conv_result_free(t2s_test_conv_result *r) {
  free(r->y), free(r->dx), free(r->dw), free(r->dw2), free(r->db);
}
