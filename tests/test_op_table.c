// ctest-labels: unit
/* Walks the op table (core/engine.h T2S_OP_LIST, core/ops/registry.c) and fails when
 * an op is incomplete:
 *   - a CPU forward, and a CPU backward exactly when the op is differentiable;
 *   - CUDA slots of the same shape in a CUDA build, none in a CPU build (where a CUDA
 *     request answers "this build has no CUDA backend");
 *   - a gradient check: the table `checks` below names, per op id, the test that
 *     checks it and the public call it goes through; the test file must contain that
 *     call and (for a differentiable op) t2s_gradcheck. A new op leaves a hole here;
 *   - a benchmark entry in tools/bench/bench_ops.c, which runs once on the CPU. */
#include <stdlib.h>
#include <string.h>

#include "core/device.h"
#include "tests/harness.h"
#include "tools/bench/bench_ops.h"

typedef struct op_check {
  const char *test;  /* tests/<test> */
  const char *call;  /* the public call the check goes through, with its "(" */
} op_check;

static const op_check checks[T2S_OP_COUNT] = {
    [T2S_OP_conv2d] = {"test_grad_conv.c", "t2s_conv2d("},
    [T2S_OP_batch_norm] = {"test_grad_batch_norm.c", "t2s_batch_norm("},
    [T2S_OP_relu] = {"test_grad_elementwise.c", "t2s_relu("},
    [T2S_OP_gelu] = {"test_grad_elementwise.c", "t2s_gelu("},
    [T2S_OP_max_pool2d] = {"test_grad_pool.c", "t2s_max_pool2d("},
    [T2S_OP_avg_pool2d] = {"test_grad_pool.c", "t2s_avg_pool2d("},
    [T2S_OP_add] = {"test_grad_elementwise.c", "t2s_add("},
    [T2S_OP_scale] = {"test_grad_elementwise.c", "t2s_scale("},
    [T2S_OP_mul] = {"test_grad_elementwise.c", "t2s_mul("},
    [T2S_OP_concat] = {"test_grad_shape_resize.c", "t2s_concat("},
    [T2S_OP_resize_bilinear] = {"test_grad_shape_resize.c", "t2s_resize_bilinear("},
    [T2S_OP_resize_nearest] = {"test_grad_shape_resize.c", "t2s_resize_nearest("},
    [T2S_OP_linear] = {"test_grad_linear_norm.c", "t2s_linear("},
    [T2S_OP_matmul] = {"test_grad_linear_norm.c", "t2s_matmul("},
    [T2S_OP_layer_norm] = {"test_grad_linear_norm.c", "t2s_layer_norm("},
    [T2S_OP_softmax] = {"test_grad_linear_norm.c", "t2s_softmax("},
    [T2S_OP_dropout] = {"test_grad_elementwise.c", "t2s_dropout("},
    [T2S_OP_l2_normalize] = {"test_grad_linear_norm.c", "t2s_l2_normalize("},
    [T2S_OP_cross_entropy] = {"test_grad_cross_entropy.c", "t2s_cross_entropy("},
    [T2S_OP_weighted_sum] = {"test_grad_conv.c", "t2s_weighted_sum("},
    [T2S_OP_attention] = {"test_grad_attention.c", "t2s_attention("},
    [T2S_OP_tokens_transpose] = {"test_grad_attention.c", "t2s_nchw_to_tokens("},
    [T2S_OP_drop_path] = {"test_grad_attention.c", "t2s_drop_path("},
    [T2S_OP_to_f32] = {"test_grad_elementwise.c", "t2s_to_f32("},
    [T2S_OP_crop] = {"test_grad_hrda.c", "t2s_crop("},
    [T2S_OP_slide_merge] = {"test_grad_hrda.c", "t2s_slide_merge("},
    [T2S_OP_hrda_gate] = {"test_grad_hrda.c", "t2s_hrda_gate("},
    [T2S_OP_hrda_fuse] = {"test_grad_hrda.c", "t2s_hrda_fuse("},
};

/* The whole of tests/<name> (malloc'd, NUL-terminated), or NULL. */
static char *read_test_source(const char *name) {
  const char *root = getenv("T2S_SOURCE_DIR");
  char path[1024];
  snprintf(path, sizeof path, "%s/tests/%s", root ? root : ".", name);
  FILE *f = fopen(path, "rb");
  if (f == NULL) return NULL;
  char *text = NULL;
  if (fseek(f, 0, SEEK_END) == 0) {
    long n = ftell(f);
    text = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (text != NULL && (fseek(f, 0, SEEK_SET) != 0 || fread(text, 1, (size_t)n, f) != (size_t)n)) {
      free(text);
      text = NULL;
    }
    if (text != NULL) text[n] = '\0';
  }
  fclose(f);
  return text;
}

/* 1 when tests/<c->test> goes through c->call and, for a gradient check, t2s_gradcheck. */
static int covers(const op_check *c, int differentiable) {
  if (c->test == NULL || c->call == NULL) return 0;
  char *text = read_test_source(c->test);
  int ok = text != NULL && strstr(text, c->call) != NULL &&
           (!differentiable || strstr(text, "t2s_gradcheck(") != NULL);
  free(text);
  return ok;
}

static void slots(void) {
  int cuda = t2s_cuda_built();
  for (int id = 0; id < T2S_OP_COUNT; id++) {
    const t2s_op *op = &t2s_ops[id];
    CHECK_MSG(op->name != NULL, "op %d has no name", id);
    if (op->name == NULL) continue;
    for (int j = 0; j < id; j++)
      CHECK_MSG(strcmp(op->name, t2s_ops[j].name) != 0, "op '%s' twice", op->name);
    CHECK_MSG(op->forward[T2S_DEV_CPU] != NULL, "op '%s' has no CPU forward", op->name);
    CHECK_MSG((op->backward[T2S_DEV_CPU] != NULL) == op->differentiable,
              "op '%s': CPU backward %s but differentiable %d", op->name,
              op->backward[T2S_DEV_CPU] ? "present" : "missing", op->differentiable);
    CHECK_MSG((op->forward[T2S_DEV_CUDA] != NULL) == cuda, "op '%s': CUDA forward %s in a %s build",
              op->name, op->forward[T2S_DEV_CUDA] ? "present" : "missing",
              cuda ? "CUDA" : "CPU-only");
    CHECK_MSG((op->backward[T2S_DEV_CUDA] != NULL) == (cuda && op->differentiable),
              "op '%s': CUDA backward %s (differentiable %d, %s build)", op->name,
              op->backward[T2S_DEV_CUDA] ? "present" : "missing", op->differentiable,
              cuda ? "CUDA" : "CPU-only");
  }
}

static void gradient_checks(void) {
  for (int id = 0; id < T2S_OP_COUNT; id++)
    CHECK_MSG(covers(&checks[id], t2s_ops[id].differentiable),
              "op '%s' has no %s check: add its test and public call to `checks` in "
              "tests/test_op_table.c (named: %s, %s)", t2s_ops[id].name,
              t2s_ops[id].differentiable ? "gradient" : "forward",
              checks[id].test ? checks[id].test : "none",
              checks[id].call ? checks[id].call : "none");
  /* the coverage test itself can fail: a file without the call is rejected */
  op_check bogus = {"test_grad_conv.c", "t2s_no_such_op("};
  CHECK(!covers(&bogus, 1));
  op_check missing = {"test_no_such_file.c", "t2s_conv2d("};
  CHECK(!covers(&missing, 0));
}

static void benchmarks(void) {
  t2s_error err = {0};
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, (size_t)64 << 20, &err);
  CHECK_MSG(ctx != NULL, "%s", err.msg);
  if (ctx == NULL) return;
  for (int id = 0; id < T2S_OP_COUNT; id++) {
    CHECK_MSG(t2s_bench_op_shape((t2s_op_id)id) != NULL,
              "op '%s' has no entry in tools/bench/bench_ops.c", t2s_ops[id].name);
    double fwd = -1.0, bwd = -1.0;
    t2s_status st = t2s_bench_op_time(ctx, (t2s_op_id)id, 1, 0, &fwd, &bwd);
    CHECK_MSG(st == T2S_OK && fwd >= 0.0 && bwd >= 0.0, "benchmark of '%s': %s", t2s_ops[id].name,
              ctx->err.msg);
    t2s_error_clear(&ctx->err);
  }
  t2s_ctx_destroy(ctx);
}

/* In a CPU-only build the NULL CUDA slots answer through the one dispatcher. */
static void cpu_only_build(void) {
  if (t2s_cuda_built()) return;
  t2s_error err = {0};
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CUDA, (size_t)1 << 20, &err);
  CHECK(ctx == NULL && err.status == T2S_ERR_UNSUPPORTED);
  CHECK_MSG(strstr(err.msg, "this t2sda build has no CUDA backend") != NULL, "%s", err.msg);
  t2s_error_clear(&err);
  CHECK(t2s_device_malloc(T2S_DEV_CUDA, 16, &err) == NULL && err.status == T2S_ERR_UNSUPPORTED);
}

int main(void) {
  slots();
  gradient_checks();
  benchmarks();
  cpu_only_build();
  return t2s_test_finish("test_op_table");
}
