#include "core/clock.h"
#include "tools/bench/bench_ops.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/device.h"
#include "core/ops.h"

enum { MAX_IN = 5 };
typedef enum input_kind { F32_GRAD = 0, F32_CONST, U8_LABELS } input_kind;
typedef struct bench_input {
  input_kind kind;
  int ndim;
  int64_t shape[4];
} bench_input;

/* One op's benchmark: its inputs (random, fresh every run) and the call. */
typedef struct bench_op {
  const char *shape;
  int n_in;
  bench_input in[MAX_IN];
  t2s_tensor *(*apply)(t2s_ctx *ctx, t2s_tensor **in);
} bench_op;

#define IMG(kind) {kind, 4, {2, 64, 64, 64}}  /* a stride-4 feature map of a 256 crop */
#define VEC(kind, c) {kind, 1, {c}}
#define TOK(kind, l, c) {kind, 3, {2, l, c}}

static t2s_tensor *conv2d(t2s_ctx *c, t2s_tensor **in) {
  t2s_conv2d_args a = t2s_conv_args(1, 1, 1);
  return t2s_conv2d(c, in[0], in[1], in[2], &a);
}
static t2s_tensor *batch_norm(t2s_ctx *c, t2s_tensor **in) {
  return t2s_batch_norm(c, in[0], in[1], in[2], in[3], in[4], T2S_BN_TRAIN, 0.1f, 1e-5f);
}
static t2s_tensor *relu(t2s_ctx *c, t2s_tensor **in) { return t2s_relu(c, in[0]); }
static t2s_tensor *gelu(t2s_ctx *c, t2s_tensor **in) { return t2s_gelu(c, in[0]); }
static const t2s_pool2d_args pool3s2 = {3, 3, 2, 2, 1, 1, 0, 1};
static t2s_tensor *max_pool2d(t2s_ctx *c, t2s_tensor **in) {
  return t2s_max_pool2d(c, in[0], &pool3s2);
}
static t2s_tensor *avg_pool2d(t2s_ctx *c, t2s_tensor **in) {
  return t2s_avg_pool2d(c, in[0], &pool3s2);
}
static t2s_tensor *add(t2s_ctx *c, t2s_tensor **in) { return t2s_add(c, in[0], in[1]); }
static t2s_tensor *scale(t2s_ctx *c, t2s_tensor **in) { return t2s_scale(c, in[0], 0.5f); }
static t2s_tensor *to_f32(t2s_ctx *c, t2s_tensor **in) { return t2s_to_f32(c, in[0]); }
static t2s_tensor *mul(t2s_ctx *c, t2s_tensor **in) { return t2s_mul(c, in[0], in[1]); }
static t2s_tensor *concat(t2s_ctx *c, t2s_tensor **in) { return t2s_concat(c, in, 2, 1); }
static t2s_tensor *resize_bilinear(t2s_ctx *c, t2s_tensor **in) {
  return t2s_resize_bilinear(c, in[0], 128, 128, 0);
}
static t2s_tensor *resize_nearest(t2s_ctx *c, t2s_tensor **in) {
  return t2s_resize_nearest(c, in[0], 64, 64);
}
static t2s_tensor *linear(t2s_ctx *c, t2s_tensor **in) {
  return t2s_linear(c, in[0], in[1], in[2]);
}
static t2s_tensor *matmul(t2s_ctx *c, t2s_tensor **in) { return t2s_matmul(c, in[0], in[1], 0, 1); }
static t2s_tensor *layer_norm(t2s_ctx *c, t2s_tensor **in) {
  return t2s_layer_norm(c, in[0], in[1], in[2], 1e-6f);
}
static t2s_tensor *softmax(t2s_ctx *c, t2s_tensor **in) { return t2s_softmax(c, in[0], 1); }
static t2s_tensor *dropout(t2s_ctx *c, t2s_tensor **in) {
  return t2s_dropout(c, in[0], 0.1f, t2s_ctx_rng_key(c, 1));
}
static t2s_tensor *l2_normalize(t2s_ctx *c, t2s_tensor **in) {
  return t2s_l2_normalize(c, in[0], 1, 1e-12f);
}
static t2s_tensor *cross_entropy(t2s_ctx *c, t2s_tensor **in) {
  t2s_ce_args a = {255, T2S_CE_MEAN_VALID, 0.0};
  return t2s_cross_entropy(c, in[0], in[1], NULL, NULL, &a);
}
static t2s_tensor *weighted_sum(t2s_ctx *c, t2s_tensor **in) {
  return t2s_weighted_sum(c, in[0], in[1]);
}
static t2s_tensor *attention(t2s_ctx *c, t2s_tensor **in) {
  return t2s_attention(c, in[0], in[1], 2);
}
static t2s_tensor *tokens_transpose(t2s_ctx *c, t2s_tensor **in) {
  return t2s_nchw_to_tokens(c, in[0]);
}
static t2s_tensor *drop_path(t2s_ctx *c, t2s_tensor **in) {
  return t2s_drop_path(c, in[0], 0.1f, t2s_ctx_rng_key(c, 2));
}

static t2s_tensor *crop(t2s_ctx *c, t2s_tensor **in) { return t2s_crop(c, in[0], 64, 32, 128, 128); }
static t2s_tensor *slide_merge(t2s_ctx *c, t2s_tensor **in) {
  t2s_slide_grid g = {256, 256, 128, 128, 64, 64};
  return t2s_slide_merge(c, in[0], 2, &g);
}
static t2s_tensor *hrda_gate(t2s_ctx *c, t2s_tensor **in) {
  t2s_hrda_gate_args box = {32, 16, 64, 64};
  return t2s_hrda_gate(c, in[0], in[1], &box);
}
static t2s_tensor *hrda_fuse(t2s_ctx *c, t2s_tensor **in) { return t2s_hrda_fuse(c, in[0], in[1], 64, 32); }

/* Indexed by op id: a new op without an entry leaves a hole that test_op_table reports. */
static const bench_op cases[T2S_OP_COUNT] = {
    [T2S_OP_conv2d] = {"x 2x64x64x64, w 64x64x3x3, bias", 3,
                       {IMG(F32_GRAD), {F32_GRAD, 4, {64, 64, 3, 3}}, VEC(F32_GRAD, 64)}, conv2d},
    [T2S_OP_batch_norm] = {"x 2x64x64x64, train", 5,
                           {IMG(F32_GRAD), VEC(F32_GRAD, 64), VEC(F32_GRAD, 64), VEC(F32_CONST, 64),
                            VEC(F32_CONST, 64)},
                           batch_norm},
    [T2S_OP_relu] = {"2x64x64x64", 1, {IMG(F32_GRAD)}, relu},
    [T2S_OP_gelu] = {"2x64x64x64", 1, {IMG(F32_GRAD)}, gelu},
    [T2S_OP_max_pool2d] = {"2x64x64x64, 3x3 stride 2", 1, {IMG(F32_GRAD)}, max_pool2d},
    [T2S_OP_avg_pool2d] = {"2x64x64x64, 3x3 stride 2", 1, {IMG(F32_GRAD)}, avg_pool2d},
    [T2S_OP_add] = {"2x64x64x64 + 2x64x64x64", 2, {IMG(F32_GRAD), IMG(F32_GRAD)}, add},
    [T2S_OP_scale] = {"2x64x64x64", 1, {IMG(F32_GRAD)}, scale},
    [T2S_OP_to_f32] = {"2x64x64x64", 1, {IMG(F32_GRAD)}, to_f32},
    [T2S_OP_mul] = {"2x64x64x64 * 2x64x64x64", 2, {IMG(F32_GRAD), IMG(F32_GRAD)}, mul},
    [T2S_OP_concat] = {"2 x 2x64x64x64 along C", 2, {IMG(F32_GRAD), IMG(F32_GRAD)}, concat},
    [T2S_OP_resize_bilinear] = {"2x64x64x64 -> 128x128", 1, {IMG(F32_GRAD)}, resize_bilinear},
    [T2S_OP_resize_nearest] = {"labels 2x256x256 -> 64x64", 1, {{U8_LABELS, 3, {2, 256, 256}}},
                               resize_nearest},
    [T2S_OP_linear] = {"x 2x1024x256, w 256x256, bias", 3,
                       {TOK(F32_GRAD, 1024, 256), {F32_GRAD, 2, {256, 256}}, VEC(F32_GRAD, 256)},
                       linear},
    [T2S_OP_matmul] = {"2x1024x64 x (2x1024x64)^T", 2,
                       {TOK(F32_GRAD, 1024, 64), TOK(F32_GRAD, 1024, 64)}, matmul},
    [T2S_OP_layer_norm] = {"2x1024x256", 3,
                           {TOK(F32_GRAD, 1024, 256), VEC(F32_GRAD, 256), VEC(F32_GRAD, 256)},
                           layer_norm},
    [T2S_OP_softmax] = {"2x19x64x64 over classes", 1, {{F32_GRAD, 4, {2, 19, 64, 64}}}, softmax},
    [T2S_OP_dropout] = {"2x64x64x64, p 0.1", 1, {IMG(F32_GRAD)}, dropout},
    [T2S_OP_l2_normalize] = {"2x64x64x64 over channels", 1, {IMG(F32_GRAD)}, l2_normalize},
    [T2S_OP_cross_entropy] = {"logits 2x19x64x64", 2,
                              {{F32_GRAD, 4, {2, 19, 64, 64}}, {U8_LABELS, 3, {2, 64, 64}}},
                              cross_entropy},
    [T2S_OP_weighted_sum] = {"2x64x64x64", 2, {IMG(F32_GRAD), IMG(F32_CONST)}, weighted_sum},
    [T2S_OP_attention] = {"q 2x1024x64, kv 2x64x128, 2 heads", 2,
                          {TOK(F32_GRAD, 1024, 64), TOK(F32_GRAD, 64, 128)}, attention},
    [T2S_OP_tokens_transpose] = {"2x64x64x64 -> 2x4096x64", 1, {IMG(F32_GRAD)}, tokens_transpose},
    [T2S_OP_drop_path] = {"2x1024x64, p 0.1", 1, {TOK(F32_GRAD, 1024, 64)}, drop_path},
    [T2S_OP_crop] = {"2x19x256x256 -> 128x128 window", 1, {{F32_GRAD, 4, {2, 19, 256, 256}}}, crop},
    [T2S_OP_slide_merge] = {"9 windows x 2 of 19x128x128 -> 2x19x256x256", 1,
                            {{F32_GRAD, 4, {18, 19, 128, 128}}}, slide_merge},
    [T2S_OP_hrda_gate] = {"att, lr 2x19x128x128", 2,
                          {{F32_GRAD, 4, {2, 19, 128, 128}}, {F32_GRAD, 4, {2, 19, 128, 128}}}, hrda_gate},
    [T2S_OP_hrda_fuse] = {"up 2x38x256x256, hr 2x19x128x128", 2,
                          {{F32_GRAD, 4, {2, 38, 256, 256}}, {F32_GRAD, 4, {2, 19, 128, 128}}}, hrda_fuse},
};

const char *t2s_bench_op_shape(t2s_op_id id) {
  return (unsigned)id < T2S_OP_COUNT ? cases[id].shape : NULL;
}

/* A tensor of the run with uniform values in [-1, 1) (labels: classes 0..18), filled on
 * the host and copied over. */
static t2s_tensor *random_tensor(t2s_ctx *ctx, const bench_input *b, uint64_t seed) {
  t2s_tensor *t = t2s_tensor_new(ctx, b->kind == U8_LABELS ? T2S_U8 : T2S_F32, b->ndim, b->shape);
  if (t == NULL) return NULL;
  size_t n = (size_t)t2s_numel(t), bytes = n * t2s_dtype_size(t->dtype);
  void *host = t2s_host_scratch(ctx, bytes + 1);
  if (host == NULL) return NULL;
  t2s_rng_key key = t2s_rng_key_make(seed, 0, 0, 0);
  for (size_t i = 0; i < n; i++) {
    float u = t2s_rng_uniform(key, i);
    if (b->kind == U8_LABELS) ((uint8_t *)host)[i] = (uint8_t)(u * 19.0f);
    else ((float *)host)[i] = 2.0f * u - 1.0f;
  }
  if (t2s_device_copy(ctx->device, t->data, T2S_DEV_CPU, host, bytes, &ctx->err) != T2S_OK)
    return NULL;
  t->requires_grad = b->kind == F32_GRAD;
  return t;
}

/* One run: fresh inputs, then the timed forward and (for a differentiable op) the timed
 * backward of sum(y r), r a random constant. */
static t2s_status run_once(t2s_ctx *ctx, t2s_op_id id, uint64_t seed, double *fwd, double *bwd) {
  const bench_op *b = &cases[id];
  t2s_tensor *in[MAX_IN] = {NULL};
  t2s_ctx_end_pass(ctx);
  for (int i = 0; i < b->n_in; i++)
    if ((in[i] = random_tensor(ctx, &b->in[i], seed + (uint64_t)i)) == NULL) return ctx->err.status;
  t2s_status st = t2s_device_sync(ctx->device, &ctx->err);
  double t0 = (1e3 * t2s_clock_s());
  t2s_tensor *y = st == T2S_OK ? b->apply(ctx, in) : NULL;
  if (y == NULL || t2s_device_sync(ctx->device, &ctx->err) != T2S_OK) return ctx->err.status;
  *fwd += (1e3 * t2s_clock_s()) - t0;
  if (!t2s_ops[id].differentiable) return T2S_OK;
  t2s_tensor *loss = y;
  if (t2s_numel(y) != 1) {
    bench_input r = {F32_CONST, y->ndim, {0}};
    memcpy(r.shape, y->shape, sizeof(int64_t) * (size_t)y->ndim);
    loss = t2s_weighted_sum(ctx, y, random_tensor(ctx, &r, seed + 99));
  }
  if (loss == NULL || t2s_device_sync(ctx->device, &ctx->err) != T2S_OK) return ctx->err.status;
  double t1 = (1e3 * t2s_clock_s());
  if (t2s_backward(ctx, loss, 1.0f) != T2S_OK || t2s_device_sync(ctx->device, &ctx->err) != T2S_OK)
    return ctx->err.status;
  *bwd += (1e3 * t2s_clock_s()) - t1;
  return T2S_OK;
}

t2s_status t2s_bench_op_time(t2s_ctx *ctx, t2s_op_id id, int iters, int warmup, double *fwd_ms,
                             double *bwd_ms) {
  if ((unsigned)id >= T2S_OP_COUNT || cases[id].apply == NULL)
    return t2s_error_set(&ctx->err, T2S_ERR_INVALID, "op %d has no benchmark entry in "
                         "tools/bench/bench_ops.c; add one with a typical shape", (int)id);
  double fwd = 0.0, bwd = 0.0, skip_f = 0.0, skip_b = 0.0;
  for (int k = 0; k < warmup + iters; k++) {
    t2s_status st = run_once(ctx, id, 1000u * (uint64_t)k, k < warmup ? &skip_f : &fwd,
                             k < warmup ? &skip_b : &bwd);
    if (st != T2S_OK) return st;
  }
  t2s_ctx_end_pass(ctx);
  *fwd_ms = iters > 0 ? fwd / iters : 0.0;
  *bwd_ms = iters > 0 ? bwd / iters : 0.0;
  return T2S_OK;
}

static int parse_count(const char *flag, const char *s, int *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *end || v < 0 || v > 100000) {
    fprintf(stderr, "t2sda_bench ops: %s expects an integer in 0..100000, got '%s'\n", flag, s);
    return 0;
  }
  *out = (int)v;
  return 1;
}

int t2s_bench_ops(int argc, char **argv) {
  int iters = 10, warmup = 2;
  const char *only = NULL;
  t2s_device dev = T2S_DEV_CPU;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    int ok = v != NULL;
    if (ok && strcmp(a, "--iters") == 0) ok = parse_count(a, v, &iters) && iters > 0;
    else if (ok && strcmp(a, "--warmup") == 0) ok = parse_count(a, v, &warmup);
    else if (ok && strcmp(a, "--only") == 0) only = v;
    else if (ok && strcmp(a, "--device") == 0) {
      ok = strcmp(v, "cpu") == 0 || strcmp(v, "cuda") == 0;
      dev = strcmp(v, "cuda") == 0 ? T2S_DEV_CUDA : T2S_DEV_CPU;
    } else ok = 0;
    if (!ok) {
      fprintf(stderr, "t2sda_bench ops: bad option '%s' (usage: t2sda_bench ops "
                      "[--device cpu|cuda] [--iters 10] [--warmup 2] [--only NAME])\n", a);
      return 2;
    }
    i++;
  }
  t2s_error err = {0};
  t2s_ctx *ctx = t2s_ctx_create(dev, (size_t)256 << 20, &err);
  if (ctx == NULL) {
    fprintf(stderr, "t2sda_bench ops: %s\n", err.msg);
    return 1;
  }
  printf("%-18s %-40s %10s %10s   (%s, mean of %d after %d warm-up)\n", "op", "shape", "fwd ms",
         "bwd ms", t2s_device_name(dev), iters, warmup);
  int rc = 0, found = 0;
  for (int id = 0; id < T2S_OP_COUNT && rc == 0; id++) {
    if (only && strcmp(only, t2s_ops[id].name) != 0) continue;
    found = 1;
    double f = 0.0, b = 0.0;
    if (t2s_bench_op_time(ctx, (t2s_op_id)id, iters, warmup, &f, &b) != T2S_OK) {
      fprintf(stderr, "t2sda_bench ops: %s: %s\n", t2s_ops[id].name, ctx->err.msg);
      rc = 1;
      break;
    }
    printf("%-18s %-40s %10.3f %10.3f\n", t2s_ops[id].name, cases[id].shape, f, b);
  }
  if (!found) {
    fprintf(stderr, "t2sda_bench ops: no op named '%s' (names as in core/engine.h T2S_OP_LIST)\n",
            only);
    rc = 2;
  }
  t2s_ctx_destroy(ctx);
  return rc;
}
