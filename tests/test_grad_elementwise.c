// ctest-labels: unit grad
/* Finite-difference checks of the element-wise ops' backward. */
#include <math.h>

#include "tests/harness.h"

static t2s_tensor *build_relu(t2s_ctx *c, t2s_tensor **in, void *u) { return t2s_relu(c, in[0]); }
static t2s_tensor *build_gelu(t2s_ctx *c, t2s_tensor **in, void *u) { return t2s_gelu(c, in[0]); }
static t2s_tensor *build_add(t2s_ctx *c, t2s_tensor **in, void *u) { return t2s_add(c, in[0], in[1]); }
static t2s_tensor *build_mul(t2s_ctx *c, t2s_tensor **in, void *u) { return t2s_mul(c, in[0], in[1]); }
static t2s_tensor *build_scale(t2s_ctx *c, t2s_tensor **in, void *u) { return t2s_scale(c, in[0], -1.75f); }
/* fan-out: y = relu(x) * x + x exercises accumulation into one activation's grad */
static t2s_tensor *build_fanout(t2s_ctx *c, t2s_tensor **in, void *u) {
  t2s_tensor *h = t2s_scale(c, in[0], 2.0f);
  return t2s_add(c, t2s_mul(c, t2s_relu(c, h), h), h);
}
/* the widening cast: alone, and beside its own input (its gradient accumulates) */
static t2s_tensor *build_to_f32(t2s_ctx *c, t2s_tensor **in, void *u) {
  return t2s_mul(c, t2s_to_f32(c, in[0]), in[1]);
}
static t2s_tensor *build_to_f32_fanout(t2s_ctx *c, t2s_tensor **in, void *u) {
  return t2s_add(c, t2s_to_f32(c, t2s_scale(c, in[0], 3.0f)), in[0]);
}
static t2s_tensor *build_self_add(t2s_ctx *c, t2s_tensor **in, void *u) { return t2s_add(c, in[0], in[0]); }
static t2s_tensor *build_dropout(t2s_ctx *c, t2s_tensor **in, void *u) {
  return t2s_dropout(c, in[0], 0.3f, t2s_rng_key_make(5, 6, 7, 8));
}

int main(void) {
  int64_t shape[4] = {2, 3, 4, 5};
  t2s_tensor *a = t2s_test_tensor(4, shape, -1.0f, 1.0f, 1, 1);
  t2s_tensor *b = t2s_test_tensor(4, shape, -1.0f, 1.0f, 2, 1);
  /* keep relu inputs away from the kink so the central difference is exact */
  float *av = t2s_f32(a);
  for (int64_t i = 0; i < t2s_numel(a); i++)
    if (fabsf(av[i]) < 0.05f) av[i] = av[i] < 0 ? -0.05f - av[i] : 0.05f + av[i];
  t2s_tensor *one[1] = {a}, *two[2] = {a, b};
  t2s_gradcheck("relu", build_relu, NULL, one, 1, NULL);
  t2s_gradcheck("gelu", build_gelu, NULL, one, 1, NULL);
  t2s_gradcheck("add", build_add, NULL, two, 2, NULL);
  t2s_gradcheck("mul", build_mul, NULL, two, 2, NULL);
  t2s_gradcheck("scale", build_scale, NULL, one, 1, NULL);
  t2s_gradcheck("to_f32", build_to_f32, NULL, two, 2, NULL);
  t2s_gradcheck("to_f32 beside its input", build_to_f32_fanout, NULL, one, 1, NULL);
  t2s_gradcheck("fan-out accumulation", build_fanout, NULL, one, 1, NULL);
  t2s_gradcheck("same input twice", build_self_add, NULL, one, 1, NULL);
  t2s_gradcheck("dropout", build_dropout, NULL, one, 1, NULL);

  /* dropout: the zero fraction is close to p and the mask depends only on the key */
  t2s_error err = {0};
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 1 << 20, &err);
  int64_t big = 100000;
  t2s_tensor *ones = t2s_test_tensor(1, &big, 1.0f, 1.0f, 3, 0);
  t2s_tensor *y = t2s_dropout(ctx, ones, 0.25f, t2s_rng_key_make(1, 2, 3, 4));
  int64_t zeros = 0;
  for (int64_t i = 0; i < big; i++) zeros += t2s_f32(y)[i] == 0.0f;
  CHECK_MSG(fabs(zeros / (double)big - 0.25) < 0.01, "zero fraction %g", zeros / (double)big);
  /* to_f32 on the CPU is an exact copy into a new tensor; t2s_as_f32 of f32 is no copy */
  t2s_tensor *w = t2s_to_f32(ctx, a);
  CHECK(w != NULL && w != a && w->dtype == T2S_F32 && t2s_same_shape(w, a));
  for (int64_t i = 0; w != NULL && i < t2s_numel(a); i++) CHECK(t2s_f32(w)[i] == av[i]);
  CHECK(t2s_as_f32(ctx, a) == a && t2s_as_f32(ctx, NULL) == NULL);
  ctx->training = 0;
  CHECK(t2s_dropout(ctx, ones, 0.25f, t2s_rng_key_make(1, 2, 3, 4)) == ones);
  t2s_ctx_destroy(ctx);
  t2s_test_tensor_free(ones);
  t2s_test_tensor_free(a);
  t2s_test_tensor_free(b);
  return t2s_test_finish("test_grad_elementwise");
}
