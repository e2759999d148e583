/* Element-wise ops on the CPU: relu, gelu, add, mul, scale, to_f32, dropout, and the
 * weighted sum that turns a tensor into a scalar (loss probes, gradient tests). */
#include <math.h>
#include <string.h>

#include "core/ops/elementwise.h"

typedef t2s_scale_args scale_args;
typedef t2s_dropout_args dropout_args;

/* The backward loop of an element-wise op: out[i] = v (beta 0) or out[i] += v (beta not
 * 0: the write/accumulate contract), v an expression of i, over n elements, OpenMP-parallel
 * above 64 Ki elements. The flag is read once and picks one of two plain loops: tested
 * inside the loop through the beta pointer (which the compiler must assume out may alias),
 * it made every backward here a scalar loop with a branch per element, and ReLU's
 * data-dependent select a mispredicted one (ReLU backward ran 10x its forward). */
#define PUT_LOOP(out, n, beta, v)                                                 \
  do {                                                                            \
    float *restrict put_out_ = (out);                                             \
    const int64_t put_n_ = (n);                                                   \
    if ((beta) != 0.0f) {                                                         \
      _Pragma("omp parallel for schedule(static) if (put_n_ > (1 << 16))")       \
      for (int64_t i = 0; i < put_n_; i++) put_out_[i] = put_out_[i] + (v);       \
    } else {                                                                      \
      _Pragma("omp parallel for schedule(static) if (put_n_ > (1 << 16))")       \
      for (int64_t i = 0; i < put_n_; i++) put_out_[i] = (v);                     \
    }                                                                             \
  } while (0)

/* The output: x's shape, bf16 when x or the other input b (may be NULL) is bf16. */
static t2s_tensor *like(t2s_ctx *ctx, const t2s_tensor *x, const t2s_tensor *b) {
  if (x == NULL) return NULL;
  return t2s_tensor_new(ctx, t2s_follow_dtype(x, b), x->ndim, x->shape);
}

static int check_same(t2s_ctx *ctx, const char *op, const t2s_tensor *a, const t2s_tensor *b) {
  if (a == NULL || b == NULL) return 0;
  if (!t2s_same_shape(a, b)) {
    char sa[96], sb[96];
    t2s_ctx_fail(ctx, T2S_ERR_INVALID, "%s: shapes %s and %s differ", op,
                 t2s_shape_str(a, sa, sizeof sa), t2s_shape_str(b, sb, sizeof sb));
    return 0;
  }
  return 1;
}

/* ---- relu ---- */
t2s_tensor *t2s_relu(t2s_ctx *ctx, t2s_tensor *x) {
  t2s_tensor *in[1] = {x};
  return t2s_op_apply(ctx, T2S_OP_relu, in, 1, like(ctx, x, NULL), NULL, 0);
}
t2s_status t2s_relu_cpu_forward(t2s_ctx *ctx, t2s_node *node) {
  const float *x = t2s_f32(node->in[0]);
  float *y = t2s_f32(node->out);
  int64_t n = t2s_numel(node->out);
  #pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
  return T2S_OK;
}
/* Takes dy by value, so it is loaded whatever y is: written as y[i] > 0 ? dy[i] : 0 the load
 * is conditional, and the compiler keeps a branch per element instead of a vector select. */
static inline float relu_grad(float y, float dy) { return y > 0.0f ? dy : 0.0f; }
t2s_status t2s_relu_cpu_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  const float *y = t2s_f32(node->out), *dy = node->out->grad;
  float *dx = node->in[0]->grad;
  int64_t n = t2s_numel(node->out);
  PUT_LOOP(dx, n, beta[0], relu_grad(y[i], dy[i]));
  return T2S_OK;
}

/* ---- gelu: x * Phi(x), Phi the standard normal CDF ---- */
t2s_tensor *t2s_gelu(t2s_ctx *ctx, t2s_tensor *x) {
  t2s_tensor *in[1] = {x};
  return t2s_op_apply(ctx, T2S_OP_gelu, in, 1, like(ctx, x, NULL), NULL, 0);
}
t2s_status t2s_gelu_cpu_forward(t2s_ctx *ctx, t2s_node *node) {
  const float *x = t2s_f32(node->in[0]);
  float *y = t2s_f32(node->out);
  int64_t n = t2s_numel(node->out);
  #pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; i++) y[i] = (float)(0.5 * x[i] * (1.0 + erf(x[i] * M_SQRT1_2)));
  return T2S_OK;
}
/* dy d/dx x Phi(x) = dy (Phi(x) + x phi(x)) */
static inline float gelu_grad(float xf, float dy) {
  double v = xf;
  double cdf = 0.5 * (1.0 + erf(v * M_SQRT1_2));
  double pdf = exp(-0.5 * v * v) * 0.3989422804014327;
  return (float)(dy * (cdf + v * pdf));
}
t2s_status t2s_gelu_cpu_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  const float *x = t2s_f32(node->in[0]), *dy = node->out->grad;
  float *dx = node->in[0]->grad;
  int64_t n = t2s_numel(node->out);
  PUT_LOOP(dx, n, beta[0], gelu_grad(x[i], dy[i]));
  return T2S_OK;
}

/* ---- add ---- */
t2s_tensor *t2s_add(t2s_ctx *ctx, t2s_tensor *a, t2s_tensor *b) {
  if (!check_same(ctx, "add", a, b)) return NULL;
  t2s_tensor *in[2] = {a, b};
  return t2s_op_apply(ctx, T2S_OP_add, in, 2, like(ctx, a, b), NULL, 0);
}
t2s_status t2s_add_cpu_forward(t2s_ctx *ctx, t2s_node *node) {
  const float *a = t2s_f32(node->in[0]), *b = t2s_f32(node->in[1]);
  float *y = t2s_f32(node->out);
  int64_t n = t2s_numel(node->out);
  #pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
  return T2S_OK;
}
t2s_status t2s_add_cpu_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  const float *dy = node->out->grad;
  int64_t n = t2s_numel(node->out);
  for (int k = 0; k < 2; k++) {
    if (!t2s_wants_grad(node->in[k])) continue;
    float *dx = node->in[k]->grad;
    PUT_LOOP(dx, n, beta[k], dy[i]);
  }
  return T2S_OK;
}

/* ---- mul ---- */
t2s_tensor *t2s_mul(t2s_ctx *ctx, t2s_tensor *a, t2s_tensor *b) {
  if (!check_same(ctx, "mul", a, b)) return NULL;
  t2s_tensor *in[2] = {a, b};
  return t2s_op_apply(ctx, T2S_OP_mul, in, 2, like(ctx, a, b), NULL, 0);
}
t2s_status t2s_mul_cpu_forward(t2s_ctx *ctx, t2s_node *node) {
  const float *a = t2s_f32(node->in[0]), *b = t2s_f32(node->in[1]);
  float *y = t2s_f32(node->out);
  int64_t n = t2s_numel(node->out);
  #pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; i++) y[i] = a[i] * b[i];
  return T2S_OK;
}
t2s_status t2s_mul_cpu_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  const float *dy = node->out->grad;
  int64_t n = t2s_numel(node->out);
  for (int k = 0; k < 2; k++) {
    if (!t2s_wants_grad(node->in[k])) continue;
    const float *other = t2s_f32(node->in[1 - k]);
    float *dx = node->in[k]->grad;
    PUT_LOOP(dx, n, beta[k], dy[i] * other[i]);
  }
  return T2S_OK;
}

/* ---- scale ---- */
t2s_tensor *t2s_scale(t2s_ctx *ctx, t2s_tensor *x, float s) {
  t2s_tensor *in[1] = {x};
  scale_args a = {s};
  return t2s_op_apply(ctx, T2S_OP_scale, in, 1, like(ctx, x, NULL), &a, sizeof a);
}
t2s_status t2s_scale_cpu_forward(t2s_ctx *ctx, t2s_node *node) {
  float s = ((const scale_args *)node->args)->s;
  const float *x = t2s_f32(node->in[0]);
  float *y = t2s_f32(node->out);
  int64_t n = t2s_numel(node->out);
  #pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; i++) y[i] = s * x[i];
  return T2S_OK;
}
t2s_status t2s_scale_cpu_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  float s = ((const scale_args *)node->args)->s;
  const float *dy = node->out->grad;
  float *dx = node->in[0]->grad;
  int64_t n = t2s_numel(node->out);
  PUT_LOOP(dx, n, beta[0], s * dy[i]);
  return T2S_OK;
}

/* ---- to_f32: the widening cast (on the CPU activations are always f32: a copy) ---- */
t2s_tensor *t2s_to_f32(t2s_ctx *ctx, t2s_tensor *x) {
  t2s_tensor *in[1] = {x};
  if (x == NULL) return NULL;
  return t2s_op_apply(ctx, T2S_OP_to_f32, in, 1, t2s_tensor_new(ctx, T2S_F32, x->ndim, x->shape), NULL, 0);
}
t2s_tensor *t2s_as_f32(t2s_ctx *ctx, t2s_tensor *x) {
  return x == NULL || x->dtype == T2S_F32 ? x : t2s_to_f32(ctx, x);
}
t2s_status t2s_to_f32_cpu_forward(t2s_ctx *ctx, t2s_node *node) {
  if (node->in[0]->dtype != T2S_F32)
    return t2s_error_set(&ctx->err, T2S_ERR_INVALID, "to_f32 on the CPU: input is %s (CPU activations are f32)",
                         t2s_dtype_name(node->in[0]->dtype));
  memcpy(node->out->data, node->in[0]->data, (size_t)t2s_numel(node->out) * sizeof(float));
  return T2S_OK;
}
t2s_status t2s_to_f32_cpu_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  (void)ctx;
  const float *dy = node->out->grad;
  float *dx = node->in[0]->grad;
  int64_t n = t2s_numel(node->out);
  PUT_LOOP(dx, n, beta[0], dy[i]);
  return T2S_OK;
}

/* ---- weighted sum: y = sum_i x_i r_i (accumulated in double) ---- */
t2s_tensor *t2s_weighted_sum(t2s_ctx *ctx, t2s_tensor *x, t2s_tensor *r) {
  if (!check_same(ctx, "weighted_sum", x, r)) return NULL;
  if (r->requires_grad)
    return t2s_ctx_fail(ctx, T2S_ERR_INVALID, "weighted_sum: the weights must be a constant");
  t2s_tensor *in[2] = {x, r};
  int64_t one = 1;
  return t2s_op_apply(ctx, T2S_OP_weighted_sum, in, 2, t2s_tensor_new(ctx, T2S_F32, 1, &one), NULL, 0);
}
t2s_status t2s_weighted_sum_cpu_forward(t2s_ctx *ctx, t2s_node *node) {
  const float *x = t2s_f32(node->in[0]), *r = t2s_f32(node->in[1]);
  int64_t n = t2s_numel(node->in[0]);
  double acc = 0.0;
  for (int64_t i = 0; i < n; i++) acc += (double)x[i] * r[i];
  t2s_f32(node->out)[0] = (float)acc;
  return T2S_OK;
}
t2s_status t2s_weighted_sum_cpu_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  const float *r = t2s_f32(node->in[1]);
  float g = node->out->grad[0];
  float *dx = node->in[0]->grad;
  int64_t n = t2s_numel(node->in[0]);
  PUT_LOOP(dx, n, beta[0], g * r[i]);
  return T2S_OK;
}

/* ---- dropout ---- */
t2s_tensor *t2s_dropout(t2s_ctx *ctx, t2s_tensor *x, float p, t2s_rng_key key) {
  if (x == NULL) return NULL;
  if (!(p >= 0.0f && p < 1.0f))
    return t2s_ctx_fail(ctx, T2S_ERR_INVALID, "dropout: probability %g is outside [0, 1)", p);
  if (!ctx->training || ctx->no_dropout || p == 0.0f) return x;
  t2s_tensor *in[1] = {x};
  dropout_args a = {p, key};
  return t2s_op_apply(ctx, T2S_OP_dropout, in, 1, like(ctx, x, NULL), &a, sizeof a);
}
static inline float dropout_factor(const dropout_args *a, int64_t i) {
  return t2s_rng_uniform(a->key, (uint64_t)i) < a->p ? 0.0f : 1.0f / (1.0f - a->p);
}
t2s_status t2s_dropout_cpu_forward(t2s_ctx *ctx, t2s_node *node) {
  const dropout_args *a = node->args;
  const float *x = t2s_f32(node->in[0]);
  float *y = t2s_f32(node->out);
  int64_t n = t2s_numel(node->out);
  #pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; i++) y[i] = x[i] * dropout_factor(a, i);
  return T2S_OK;
}
t2s_status t2s_dropout_cpu_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  const dropout_args *a = node->args;
  const float *dy = node->out->grad;
  float *dx = node->in[0]->grad;
  int64_t n = t2s_numel(node->out);
  PUT_LOOP(dx, n, beta[0], dy[i] * dropout_factor(a, i));
  return T2S_OK;
}
