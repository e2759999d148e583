// ctest-labels: unit grad
/* The MiT ops: multi-head attention, the image <-> token transposes and the
 * structured dropout (drop path, channel dropout). Forward values against naive
 * loops written here; backward against finite differences. */
#include <math.h>
#include <stdlib.h>

#include "core/ops.h"
#include "tests/harness.h"

typedef struct att_case {
  int heads;
} att_case;

static t2s_tensor *build_attention(t2s_ctx *c, t2s_tensor **in, void *u) {
  return t2s_attention(c, in[0], in[1], ((att_case *)u)->heads);
}
/* q and kv from one tensor: the gradients of both uses meet in x (fan-out) */
static t2s_tensor *build_self_attention(t2s_ctx *c, t2s_tensor **in, void *u) {
  t2s_tensor *xs[2] = {in[0], in[0]};
  return t2s_attention(c, in[0], t2s_concat(c, xs, 2, 2), ((att_case *)u)->heads);
}
static t2s_tensor *build_to_tokens(t2s_ctx *c, t2s_tensor **in, void *u) {
  return t2s_nchw_to_tokens(c, in[0]);
}
static t2s_tensor *build_to_nchw(t2s_ctx *c, t2s_tensor **in, void *u) {
  return t2s_tokens_to_nchw(c, in[0], 3, 5);
}
static t2s_tensor *build_drop_path(t2s_ctx *c, t2s_tensor **in, void *u) {
  return t2s_drop_path(c, in[0], 0.5f, t2s_rng_key_make(1, 2, 3, 4));
}
static t2s_tensor *build_dropout2d(t2s_ctx *c, t2s_tensor **in, void *u) {
  return t2s_dropout2d(c, in[0], 0.3f, t2s_rng_key_make(4, 3, 2, 1));
}

/* softmax(q_h k_h^T / sqrt(d)) v_h, element by element in double. */
static double naive_attention(const float *q, const float *kv, int64_t l, int64_t s, int64_t c,
                              int heads, int64_t n, int64_t i, int64_t ch) {
  int64_t d = c / heads, h = ch / d;
  double *a = malloc((size_t)s * sizeof *a), mx = -INFINITY, sum = 0, out = 0;
  for (int64_t j = 0; j < s; j++) {
    double dot = 0;
    for (int64_t k = 0; k < d; k++)
      dot += (double)q[(n * l + i) * c + h * d + k] * kv[(n * s + j) * 2 * c + h * d + k];
    a[j] = dot / sqrt((double)d);
    mx = fmax(mx, a[j]);
  }
  for (int64_t j = 0; j < s; j++) sum += exp(a[j] - mx);
  for (int64_t j = 0; j < s; j++) out += exp(a[j] - mx) / sum * kv[(n * s + j) * 2 * c + c + ch];
  free(a);
  return out;
}

static void check_attention_values(void) {
  t2s_error err = {0};
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 1 << 20, &err);
  int64_t qs[3] = {2, 7, 6}, ks[3] = {2, 4, 12};
  t2s_tensor *q = t2s_test_tensor(3, qs, -2, 2, 11, 0), *kv = t2s_test_tensor(3, ks, -2, 2, 12, 0);
  for (int heads = 1; heads <= 3; heads++) {
    t2s_tensor *y = t2s_attention(ctx, q, kv, heads);
    CHECK_MSG(t2s_ctx_ok(ctx), "%s", ctx->err.msg);
    if (!y) break;
    double worst = 0;
    for (int64_t n = 0; n < 2; n++)
      for (int64_t i = 0; i < 7; i++)
        for (int64_t ch = 0; ch < 6; ch++) {
          double ref = naive_attention(t2s_f32(q), t2s_f32(kv), 7, 4, 6, heads, n, i, ch);
          worst = fmax(worst, fabs(t2s_f32(y)[(n * 7 + i) * 6 + ch] - ref));
        }
    CHECK_MSG(worst < 1e-5, "attention with %d heads: worst error %g", heads, worst);
  }
  /* heads must divide C, kv must be 2C wide */
  CHECK(t2s_attention(ctx, q, kv, 4) == NULL && ctx->err.status == T2S_ERR_INVALID);
  t2s_ctx_destroy(ctx);
  t2s_test_tensor_free(q);
  t2s_test_tensor_free(kv);
}

static void check_transpose_values(void) {
  t2s_error err = {0};
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 1 << 20, &err);
  /* sizes above the 32 x 32 tile so that partial tiles are exercised */
  int64_t shape[4] = {2, 37, 5, 9};
  t2s_tensor *x = t2s_test_tensor(4, shape, -1, 1, 21, 0);
  t2s_tensor *t = t2s_nchw_to_tokens(ctx, x);
  t2s_tensor *back = t2s_tokens_to_nchw(ctx, t, 5, 9);
  CHECK_MSG(t2s_ctx_ok(ctx), "%s", ctx->err.msg);
  if (t && back) {
    int bad = 0;
    for (int64_t n = 0; n < 2; n++)
      for (int64_t c = 0; c < 37; c++)
        for (int64_t p = 0; p < 45; p++) {
          float v = t2s_f32(x)[(n * 37 + c) * 45 + p];
          bad += t2s_f32(t)[(n * 45 + p) * 37 + c] != v;
          bad += t2s_f32(back)[(n * 37 + c) * 45 + p] != v;
        }
    CHECK_MSG(bad == 0, "%d misplaced elements", bad);
    CHECK(t->ndim == 3 && t->shape[1] == 45 && t->shape[2] == 37);
  }
  CHECK(t2s_tokens_to_nchw(ctx, t, 4, 9) == NULL);  /* 36 != 45 tokens */
  t2s_ctx_destroy(ctx);
  t2s_test_tensor_free(x);
}

static void check_drop_blocks(void) {
  t2s_error err = {0};
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 8 << 20, &err);
  int64_t shape[4] = {4000, 3, 2, 2};
  t2s_tensor *ones = t2s_test_tensor(4, shape, 1, 1, 1, 0);
  for (int dims = 1; dims <= 2; dims++) {
    t2s_tensor *y = t2s_drop_blocks(ctx, ones, 0.25f, t2s_rng_key_make(9, 9, 9, dims), dims);
    if (!y) break;
    int64_t block = dims == 1 ? 12 : 4, blocks = t2s_numel(y) / block, dropped = 0, mixed = 0;
    for (int64_t b = 0; b < blocks; b++) {
      const float *v = t2s_f32(y) + b * block;
      int zeros = 0;
      for (int64_t i = 0; i < block; i++) zeros += v[i] == 0.0f;
      dropped += zeros == block;
      mixed += zeros != 0 && zeros != block;
      for (int64_t i = 0; i < block; i++)
        if (v[i] != 0.0f && fabsf(v[i] - 1.0f / 0.75f) > 1e-6f) mixed++;
    }
    CHECK_MSG(mixed == 0, "mask dims %d: %lld blocks not all-zero or all-1/(1-p)", dims,
              (long long)mixed);
    CHECK_MSG(fabs(dropped / (double)blocks - 0.25) < 0.02, "mask dims %d: dropped fraction %g",
              dims, dropped / (double)blocks);
  }
  ctx->training = 0;
  CHECK(t2s_drop_path(ctx, ones, 0.3f, t2s_rng_key_make(1, 1, 1, 1)) == ones);
  t2s_ctx_destroy(ctx);
  t2s_test_tensor_free(ones);
}

int main(void) {
  int64_t qs[3] = {2, 5, 6}, ks[3] = {2, 3, 12}, xs[4] = {2, 4, 3, 5}, ts[3] = {2, 15, 4};
  t2s_tensor *q = t2s_test_tensor(3, qs, -1, 1, 1, 1), *kv = t2s_test_tensor(3, ks, -1, 1, 2, 1);
  t2s_tensor *x = t2s_test_tensor(4, xs, -1, 1, 3, 1), *tok = t2s_test_tensor(3, ts, -1, 1, 4, 1);
  t2s_tensor *selfx = t2s_test_tensor(3, qs, -1, 1, 5, 1);
  t2s_tensor *qkv[2] = {q, kv}, *one_x[1] = {x}, *one_t[1] = {tok}, *one_s[1] = {selfx};
  att_case h1 = {1}, h2 = {2}, h3 = {3};
  t2s_gradcheck("attention 1 head", build_attention, &h1, qkv, 2, NULL);
  t2s_gradcheck("attention 2 heads", build_attention, &h2, qkv, 2, NULL);
  t2s_gradcheck("attention 3 heads", build_attention, &h3, qkv, 2, NULL);
  t2s_gradcheck("self-attention fan-out", build_self_attention, &h2, one_s, 1, NULL);
  t2s_gradcheck("nchw_to_tokens", build_to_tokens, NULL, one_x, 1, NULL);
  t2s_gradcheck("tokens_to_nchw", build_to_nchw, NULL, one_t, 1, NULL);
  t2s_gradcheck("drop_path", build_drop_path, NULL, one_x, 1, NULL);
  t2s_gradcheck("dropout2d", build_dropout2d, NULL, one_x, 1, NULL);
  check_attention_values();
  check_transpose_values();
  check_drop_blocks();
  t2s_test_tensor_free(q);
  t2s_test_tensor_free(kv);
  t2s_test_tensor_free(x);
  t2s_test_tensor_free(tok);
  t2s_test_tensor_free(selfx);
  return t2s_test_finish("test_grad_attention");
}
