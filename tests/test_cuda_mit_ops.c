// ctest-labels: cuda
// ctest-timeout: 300
/* The Mix Transformer ops on CUDA against the CPU reference (core/ops/attention.c,
 * permute.c, drop_path.c), through the replay harness of tests/cuda_replay.h:
 * forward output and input gradients in write mode (NaN-filled) and accumulate mode,
 * canaries around every device buffer, inputs and dy untouched.
 *
 * - attention: several (N, L, S, C, heads), with S = 1, S > 32 (the softmax warp
 *   loops), one head and d = 32, and with only q or only kv wanting a gradient;
 *   GEMM-based, tolerance 1e-4.
 * - nchw_to_tokens / tokens_to_nchw: the CPU transposes NCHW memory, the CUDA side
 *   stores the 4-d side NHWC; the harness compares in logical order, so a wrong
 *   reading of the logical shapes fails. Exact copies: tolerance 1e-5.
 * - drop_blocks with mask_dims 1..4 on a 4-d tensor (the block index of an NHWC
 *   element is its NCHW index / block) and 1..2 on a 3-d one: the same Philox draws
 *   as the CPU, so the same blocks are dropped; 1e-5. A separate check that the mask
 *   is neither all-kept nor all-dropped (else the comparison would prove little).
 * - the engine path: image -> tokens -> attention -> image -> drop_path ->
 *   weighted_sum through the public functions on a CUDA context, backward through
 *   the tape; loss and gradients against the CPU.
 *
 * Skipped (exit 77) without a CUDA build or a visible GPU. */
#include "core/ops.h"
#include "tests/cuda_replay.h"

/* ---- builders --------------------------------------------------------------------- */

static t2s_tensor *b_attention(t2s_ctx *x, t2s_tensor **in, const void *u) {
  return t2s_attention(x, in[0], in[1], *(const int *)u);
}
static t2s_tensor *b_to_tokens(t2s_ctx *x, t2s_tensor **in, const void *u) {
  return t2s_nchw_to_tokens(x, in[0]);
}
static t2s_tensor *b_to_nchw(t2s_ctx *x, t2s_tensor **in, const void *u) {
  const int *hw = u;
  return t2s_tokens_to_nchw(x, in[0], hw[0], hw[1]);
}
typedef struct drop_case {
  float p;
  int mask_dims;
} drop_case;
static t2s_tensor *b_drop(t2s_ctx *x, t2s_tensor **in, const void *u) {
  const drop_case *d = u;
  return t2s_drop_blocks(x, in[0], d->p, t2s_rng_key_make(5, 6, 7, 8), d->mask_dims);
}

/* ---- cases -------------------------------------------------------------------------- */

static void attention_cases(t2s_ctx *cpu, t2s_ctx *gpu) {
  /* n, l, s, c, heads */
  const int64_t shapes[][5] = {
      {2, 12, 3, 16, 2}, {1, 7, 7, 8, 1}, {2, 33, 40, 64, 2}, {3, 5, 1, 12, 3}, {1, 70, 9, 96, 3},
  };
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
    for (int want = 0; want < 3; want++) { /* 0: both, 1: q only, 2: kv only */
      const int64_t *s = shapes[i];
      int64_t qs[3] = {s[0], s[1], s[3]}, kvs[3] = {s[0], s[2], 2 * s[3]};
      t2s_tensor *q = t2s_test_tensor(3, qs, -1.5f, 1.5f, 200 + i, want != 2);
      t2s_tensor *kv = t2s_test_tensor(3, kvs, -1.5f, 1.5f, 210 + i, want != 1);
      int heads = (int)s[4];
      char label[128];
      static const char *wants[3] = {"", " (q only)", " (kv only)"};
      snprintf(label, sizeof label, "attention N%lld L%lld S%lld C%lld heads %d%s",
               (long long)s[0], (long long)s[1], (long long)s[2], (long long)s[3], heads,
               wants[want]);
      op_case c = {label, b_attention, &heads, 2, {q, kv}, 0, 1e-4, 0};
      run_case(cpu, gpu, &c);
      t2s_test_tensor_free(q), t2s_test_tensor_free(kv);
    }
}

static void layout_cases(t2s_ctx *cpu, t2s_ctx *gpu) {
  int64_t xs[4] = {2, 5, 3, 4}, ts[3] = {2, 12, 5}, big[4] = {1, 67, 9, 13};
  t2s_tensor *x = t2s_test_tensor(4, xs, -1.0f, 1.0f, 300, 1);
  t2s_tensor *t = t2s_test_tensor(3, ts, -1.0f, 1.0f, 301, 1);
  t2s_tensor *xb = t2s_test_tensor(4, big, -1.0f, 1.0f, 302, 1);
  int hw[2] = {3, 4}, hw_wide[2] = {2, 6};
  op_case cases[] = {
      {"nchw_to_tokens 2x5x3x4", b_to_tokens, NULL, 1, {x}, 0, 1e-5, 0},
      {"nchw_to_tokens 1x67x9x13", b_to_tokens, NULL, 1, {xb}, 0, 1e-5, 0},
      {"tokens_to_nchw 2x12x5 -> 3x4", b_to_nchw, hw, 1, {t}, 0, 1e-5, 0},
      {"tokens_to_nchw 2x12x5 -> 2x6", b_to_nchw, hw_wide, 1, {t}, 0, 1e-5, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(cpu, gpu, &cases[i]);
  t2s_test_tensor_free(x), t2s_test_tensor_free(t), t2s_test_tensor_free(xb);
}

static void drop_cases(t2s_ctx *cpu, t2s_ctx *gpu) {
  int64_t s4[4] = {4, 6, 5, 3}, s3[3] = {8, 17, 11};
  t2s_tensor *x4 = t2s_test_tensor(4, s4, -2.0f, 2.0f, 400, 1);
  t2s_tensor *x3 = t2s_test_tensor(3, s3, -2.0f, 2.0f, 401, 1);
  for (int md = 1; md <= 4; md++) {
    drop_case d = {0.4f, md};
    char label[64];
    snprintf(label, sizeof label, "drop_blocks 4d mask_dims %d", md);
    op_case c = {label, b_drop, &d, 1, {x4}, 0, 1e-5, 0};
    run_case(cpu, gpu, &c);
  }
  for (int md = 1; md <= 2; md++) {
    drop_case d = {0.25f, md};
    char label[64];
    snprintf(label, sizeof label, "drop_blocks 3d mask_dims %d", md);
    op_case c = {label, b_drop, &d, 1, {x3}, 0, 1e-5, 0};
    run_case(cpu, gpu, &c);
  }
  /* the masks compared above must be mixed, or matching them proves nothing */
  t2s_ctx_end_pass(cpu);
  int prev = t2s_set_grad_enabled(cpu, 0);
  t2s_tensor *y = t2s_drop_blocks(cpu, x4, 0.4f, t2s_rng_key_make(5, 6, 7, 8), 2);
  t2s_set_grad_enabled(cpu, prev);
  int dropped = 0, kept = 0;
  for (int64_t b = 0; y && b < 4 * 6; b++) {
    int zero = t2s_f32(y)[b * 15] == 0.0f;
    dropped += zero, kept += !zero;
  }
  CHECK_MSG(dropped > 0 && kept > 0, "drop_blocks 4d mask_dims 2: %d of 24 channels dropped",
            dropped);
  t2s_ctx_end_pass(cpu);
  t2s_test_tensor_free(x4), t2s_test_tensor_free(x3);
}

/* ---- the engine path ------------------------------------------------------------------- */

/* x (N, C, H, W) -> tokens -> attention(tokens, kv) -> image -> drop_path -> sum(. r) */
static t2s_tensor *mit_graph(t2s_ctx *ctx, t2s_tensor *x, t2s_tensor *kv, t2s_tensor *r, int h,
                             int w) {
  t2s_tensor *t = t2s_nchw_to_tokens(ctx, x);
  t2s_tensor *a = t2s_attention(ctx, t, kv, 2);
  t2s_tensor *img = t2s_tokens_to_nchw(ctx, a, h, w);
  t2s_tensor *d = t2s_drop_path(ctx, img, 0.5f, t2s_rng_key_make(9, 9, 9, 9));
  return t2s_weighted_sum(ctx, d, r);
}

static void engine_path(t2s_ctx *cpu, t2s_ctx *gpu) {
  int64_t xs[4] = {4, 8, 3, 5}, kvs[3] = {4, 6, 16};
  t2s_tensor *host[3] = {t2s_test_tensor(4, xs, -1.0f, 1.0f, 500, 1),
                         t2s_test_tensor(3, kvs, -1.0f, 1.0f, 501, 1),
                         t2s_test_tensor(4, xs, -1.0f, 1.0f, 502, 0)};
  float *ref_grad[2];
  for (int k = 0; k < 2; k++) {
    ref_grad[k] = calloc((size_t)t2s_numel(host[k]), sizeof(float));
    host[k]->grad = ref_grad[k];
    host[k]->grad_accumulates = 1;
  }
  t2s_ctx_end_pass(cpu);
  t2s_tensor *lc = mit_graph(cpu, host[0], host[1], host[2], 3, 5);
  CHECK_MSG(lc && t2s_backward(cpu, lc, 1.0f) == T2S_OK, "mit engine path: cpu: %s", cpu->err.msg);
  float cpu_loss = lc ? t2s_f32(lc)[0] : NAN;
  dbuf vals[3], grads[2];
  t2s_tensor dev[3];
  for (int k = 0; k < 3; k++) {
    int act = host[k]->ndim == 4;
    float *v = to_device_order(t2s_f32(host[k]), host[k], act);
    dbuf_make(&vals[k], v, t2s_numel(host[k]));
    free(v);
    device_tensor(&dev[k], host[k], &vals[k]);
    if (k < 2) {
      float *z = calloc((size_t)t2s_numel(host[k]), sizeof(float));
      dbuf_make(&grads[k], z, t2s_numel(host[k]));
      free(z);
      dev[k].grad = dbuf_data(&grads[k]);
      dev[k].grad_accumulates = 1;
    }
  }
  t2s_ctx_end_pass(gpu);
  t2s_tensor *lg = mit_graph(gpu, &dev[0], &dev[1], &dev[2], 3, 5);
  CHECK_MSG(lg && t2s_backward(gpu, lg, 1.0f) == T2S_OK, "mit engine path: cuda: %s",
            gpu->err.msg);
  if (lc && lg && t2s_ctx_ok(gpu)) {
    float gl = NAN;
    t2s_error err = {0};
    t2s_device_copy(T2S_DEV_CPU, &gl, T2S_DEV_CUDA, lg->data, sizeof gl, &err);
    expect_close("mit engine path", "loss", &gl, &cpu_loss, 1, 1e-4);
    const char *names[2] = {"dx", "dkv"};
    for (int k = 0; k < 2; k++) {
      int64_t n = t2s_numel(host[k]);
      float *d = malloc((size_t)n * sizeof(float)), *got = malloc((size_t)n * sizeof(float));
      if (dbuf_read(&grads[k], d, "mit engine path", names[k])) {
        from_device_order(d, got, host[k], host[k]->ndim == 4);
        expect_close("mit engine path", names[k], got, ref_grad[k], n, 1e-4);
      }
      free(d), free(got);
    }
  }
  for (int k = 0; k < 3; k++) {
    dbuf_free(&vals[k]);
    if (k < 2) dbuf_free(&grads[k]), free(ref_grad[k]), host[k]->grad = NULL;
    t2s_test_tensor_free(host[k]);
  }
  t2s_ctx_end_pass(cpu);
  t2s_ctx_end_pass(gpu);
  printf("done mit engine path\n");
}

int main(void) {
  if (!t2s_cuda_built()) {
    printf("test_cuda_mit_ops: skipped: this build has no CUDA backend (configure with "
           "-DT2S_CUDA=ON)\n");
    return 77;
  }
  if (t2s_cuda_device_count() == 0) {
    printf("test_cuda_mit_ops: skipped: no CUDA device is visible\n");
    return 77;
  }
  t2s_error err = {0};
  t2s_ctx *cpu = t2s_ctx_create(T2S_DEV_CPU, 64 << 20, &err);
  t2s_ctx *gpu = cpu ? t2s_ctx_create(T2S_DEV_CUDA, 64 << 20, &err) : NULL;
  if (gpu == NULL) {
    fprintf(stderr, "test_cuda_mit_ops: creating the contexts: %s\n", err.msg);
    t2s_ctx_destroy(cpu);
    return 1;
  }
  cpu->seed = gpu->seed = 1234;
  cpu->training = gpu->training = 1;  /* drop_blocks acts only while training */
  attention_cases(cpu, gpu);
  layout_cases(cpu, gpu);
  drop_cases(cpu, gpu);
  printf("op checks: %d failure(s) so far\n", t2s_test_failures);
  fflush(stdout);
  engine_path(cpu, gpu);
  t2s_ctx_destroy(gpu);
  t2s_ctx_destroy(cpu);
  return t2s_test_finish("test_cuda_mit_ops");
}
