// ctest-labels: cuda
// ctest-timeout: 300
/* The CUDA backend against the CPU reference, op by op (ggml's test-backend-ops).
 *
 * For each case the op runs on the CPU through its public function (so the node,
 * its args and saved state are the CPU's own), then the same node is replayed on
 * the CUDA slot with device copies of the inputs: 4-d activations transposed to
 * NHWC at the edge, parameters in their PyTorch layout. Forward outputs and every
 * input gradient are compared in both backward modes of core/engine.h: write
 * (beta 0, the gradient buffer pre-filled with NaN, which must never be read) and
 * accumulate (beta 1, pre-filled with random values that must be added to). Every
 * device buffer carries canary words before and after it, checked after each op.
 *
 * Skipped (exit 77) when the build has no CUDA backend or no GPU is visible. */
#include "tests/cuda_replay.h"

/* ---- the op builders ----------------------------------------------------------- */

static t2s_tensor *b_relu(t2s_ctx *x, t2s_tensor **in, const void *u) { return t2s_relu(x, in[0]); }
static t2s_tensor *b_gelu(t2s_ctx *x, t2s_tensor **in, const void *u) { return t2s_gelu(x, in[0]); }
static t2s_tensor *b_add(t2s_ctx *x, t2s_tensor **in, const void *u) { return t2s_add(x, in[0], in[1]); }
static t2s_tensor *b_mul(t2s_ctx *x, t2s_tensor **in, const void *u) { return t2s_mul(x, in[0], in[1]); }
static t2s_tensor *b_scale(t2s_ctx *x, t2s_tensor **in, const void *u) {
  return t2s_scale(x, in[0], *(const float *)u);
}
static t2s_tensor *b_wsum(t2s_ctx *x, t2s_tensor **in, const void *u) {
  return t2s_weighted_sum(x, in[0], in[1]);
}
static t2s_tensor *b_dropout(t2s_ctx *x, t2s_tensor **in, const void *u) {
  return t2s_dropout(x, in[0], *(const float *)u, t2s_rng_key_make(11, 22, 33, 44));
}
static t2s_tensor *b_conv(t2s_ctx *x, t2s_tensor **in, const void *u) {
  return t2s_conv2d(x, in[0], in[1], in[2], (const t2s_conv2d_args *)u);
}

/* ---- element-wise cases ---------------------------------------------------------- */

static void elementwise_cases(t2s_ctx *cpu, t2s_ctx *gpu) {
  /* 4-d (transposed at the edge), 3-d tokens, and a long 1-d tensor whose length is
   * not a multiple of 4 or of the block size (grid-stride loops, dropout groups) */
  int64_t shapes[3][4] = {{2, 3, 5, 7}, {3, 17, 11, 0}, {(1 << 20) + 3, 0, 0, 0}};
  int ndims[3] = {4, 3, 1};
  for (int s = 0; s < 3; s++) {
    t2s_tensor *a = t2s_test_tensor(ndims[s], shapes[s], -2.0f, 2.0f, 10 + (uint64_t)s, 1);
    t2s_tensor *b = t2s_test_tensor(ndims[s], shapes[s], -2.0f, 2.0f, 20 + (uint64_t)s, 1);
    t2s_tensor *r = t2s_test_tensor(ndims[s], shapes[s], -1.0f, 1.0f, 30 + (uint64_t)s, 0);
    t2s_tensor *bc = t2s_test_tensor(ndims[s], shapes[s], -2.0f, 2.0f, 40 + (uint64_t)s, 0);
    t2s_f32(a)[0] = 0.0f; /* relu's kink: both backends take dy = 0 there */
    float sc = -1.75f, p = 0.3f;
    char lab[16][96];
    const char *names[] = {"relu", "gelu", "add", "mul", "mul (b constant)", "scale",
                           "weighted_sum", "dropout"};
    for (int i = 0; i < 8; i++) snprintf(lab[i], sizeof lab[i], "%s %dd", names[i], ndims[s]);
    op_case cases[] = {
        {lab[0], b_relu, NULL, 1, {a}, 0, 1e-5, 0},
        {lab[1], b_gelu, NULL, 1, {a}, 0, 1e-5, 0},
        {lab[2], b_add, NULL, 2, {a, b}, 0, 1e-5, 0},
        {lab[3], b_mul, NULL, 2, {a, b}, 0, 1e-5, 0},
        {lab[4], b_mul, NULL, 2, {a, bc}, 0, 1e-5, 0},
        {lab[5], b_scale, &sc, 1, {a}, 0, 1e-5, 0},
        {lab[6], b_wsum, NULL, 2, {a, r}, 0, 1e-5, 0},
        {lab[7], b_dropout, &p, 1, {a}, 0, 1e-5, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(cpu, gpu, &cases[i]);
    t2s_test_tensor_free(a), t2s_test_tensor_free(b), t2s_test_tensor_free(r);
    t2s_test_tensor_free(bc);
  }
}

/* ---- convolution cases -------------------------------------------------------------- */

typedef struct conv_shape {
  const char *what;
  int64_t n, cin, h, w, cout, kh, kw;
  t2s_conv2d_args a;
  int bias;
} conv_shape;

static void conv_cases(t2s_ctx *cpu, t2s_ctx *gpu) {
  /* t2s_conv2d_args: stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups */
  const conv_shape shapes[] = {
      {"3x3 pad 1", 2, 3, 9, 9, 4, 3, 3, {1, 1, 1, 1, 1, 1, 1}, 1},
      {"1x1 no bias", 2, 8, 6, 5, 5, 1, 1, {1, 1, 0, 0, 1, 1, 1}, 0},
      {"1x1 stride 2", 1, 6, 7, 9, 3, 1, 1, {2, 2, 0, 0, 1, 1, 1}, 1},
      {"3x3 stride 2 non-square", 2, 4, 10, 7, 6, 3, 3, {2, 2, 1, 1, 1, 1, 1}, 1},
      {"3x3 dilation 2", 1, 4, 12, 12, 6, 3, 3, {1, 1, 2, 2, 2, 2, 1}, 1},
      {"3x3 groups 2", 2, 4, 8, 8, 6, 3, 3, {1, 1, 1, 1, 1, 1, 2}, 1},
      {"3x3 depthwise", 2, 4, 8, 8, 4, 3, 3, {1, 1, 1, 1, 1, 1, 4}, 1},
      {"7x7 stride 2 stem", 1, 3, 16, 16, 8, 7, 7, {2, 2, 3, 3, 1, 1, 1}, 0},
      {"3x2 mixed stride/pad/dilation", 2, 3, 9, 8, 5, 3, 2, {2, 1, 0, 1, 1, 2, 1}, 1},
      {"3x3 64->32 channels", 2, 64, 17, 17, 32, 3, 3, {1, 1, 1, 1, 1, 1, 1}, 1},
  };
  for (int det = 0; det < 2; det++) {
    gpu->deterministic = det;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
      const conv_shape *s = &shapes[i];
      int64_t xs[4] = {s->n, s->cin, s->h, s->w};
      int64_t ws[4] = {s->cout, s->cin / s->a.groups, s->kh, s->kw};
      int64_t bs[1] = {s->cout};
      t2s_tensor *x = t2s_test_tensor(4, xs, -1.0f, 1.0f, 50 + i, 1);
      t2s_tensor *w = t2s_test_tensor(4, ws, -0.5f, 0.5f, 60 + i, 1);
      t2s_tensor *b = s->bias ? t2s_test_tensor(1, bs, -0.5f, 0.5f, 70 + i, 1) : NULL;
      char label[128];
      snprintf(label, sizeof label, "conv2d %s%s", s->what, det ? " (deterministic)" : "");
      op_case c = {label, b_conv, &s->a, 3, {x, w, b}, (1u << 1) | (1u << 2), 1e-4, 0};
      run_case(cpu, gpu, &c);
      t2s_test_tensor_free(x), t2s_test_tensor_free(w), t2s_test_tensor_free(b);
    }
  }
  gpu->deterministic = 0;
}

/* ---- batch norm, pooling, shape, resize ------------------------------------------------ */

typedef struct bn_case_args {
  t2s_bn_mode mode;
} bn_case_args;
static t2s_tensor *b_bn(t2s_ctx *x, t2s_tensor **in, const void *u) {
  return t2s_batch_norm(x, in[0], in[1], in[2], in[3], in[4], ((const bn_case_args *)u)->mode,
                        0.1f, 1e-5f);
}
static t2s_tensor *b_maxpool(t2s_ctx *x, t2s_tensor **in, const void *u) {
  return t2s_max_pool2d(x, in[0], (const t2s_pool2d_args *)u);
}
static t2s_tensor *b_avgpool(t2s_ctx *x, t2s_tensor **in, const void *u) {
  return t2s_avg_pool2d(x, in[0], (const t2s_pool2d_args *)u);
}
typedef struct concat_case_args {
  int n, dim;
} concat_case_args;
static t2s_tensor *b_concat(t2s_ctx *x, t2s_tensor **in, const void *u) {
  const concat_case_args *a = u;
  return t2s_concat(x, in, a->n, a->dim);
}
typedef struct resize_case_args {
  int oh, ow, align;
} resize_case_args;
static t2s_tensor *b_bilinear(t2s_ctx *x, t2s_tensor **in, const void *u) {
  const resize_case_args *a = u;
  return t2s_resize_bilinear(x, in[0], a->oh, a->ow, a->align);
}

static void bn_cases(t2s_ctx *cpu, t2s_ctx *gpu) {
  int64_t shapes[3][4] = {{2, 5, 6, 7}, {8, 6, 0, 0}, {3, 4, 10, 0}};
  int ndims[3] = {4, 2, 3};
  const char *mode_names[3] = {"train", "eval", "frozen"};
  for (int s = 0; s < 3; s++)
    for (int mode = 0; mode < 3; mode++)
      for (int affine = 0; affine < 2; affine++) {
        int64_t c = shapes[s][1];
        /* a channel offset: centring must happen before scaling (large means) */
        t2s_tensor *x = t2s_test_tensor(ndims[s], shapes[s], 2.0f, 4.0f, 100 + (uint64_t)s, 1);
        t2s_tensor *g = affine ? t2s_test_tensor(1, &c, 0.5f, 1.5f, 110, mode != T2S_BN_FROZEN) : NULL;
        t2s_tensor *b = affine ? t2s_test_tensor(1, &c, -0.5f, 0.5f, 111, mode != T2S_BN_FROZEN) : NULL;
        int running = mode != T2S_BN_TRAIN || affine;
        t2s_tensor *rm = running ? t2s_test_tensor(1, &c, 2.5f, 3.5f, 112, 0) : NULL;
        t2s_tensor *rv = running ? t2s_test_tensor(1, &c, 0.5f, 1.5f, 113, 0) : NULL;
        bn_case_args a = {(t2s_bn_mode)mode};
        char label[96];
        snprintf(label, sizeof label, "batch_norm %dd %s%s%s", ndims[s], mode_names[mode],
                 affine ? " affine" : "", running ? " running" : "");
        op_case cs = {label, b_bn, &a, 5, {x, g, b, rm, rv}, 0, 1e-5, (1u << 3) | (1u << 4)};
        run_case(cpu, gpu, &cs);
        t2s_test_tensor_free(x), t2s_test_tensor_free(g), t2s_test_tensor_free(b);
        t2s_test_tensor_free(rm), t2s_test_tensor_free(rv);
      }
}

/* SyncBN hook: a stand-in for two identical ranks (every sum doubles). */
typedef struct fake_ranks {
  int calls;
} fake_ranks;
static t2s_status double_sums(void *user, double *buf, size_t n, t2s_error *err) {
  (void)err;
  ((fake_ranks *)user)->calls++;
  for (size_t i = 0; i < n; i++) buf[i] *= 2.0;
  return T2S_OK;
}

/* Running statistics (TRAIN updates them) and the SyncBN hook, through the public
 * op on both contexts from identical starting values. */
static void bn_running_and_sync(t2s_ctx *cpu, t2s_ctx *gpu) {
  int64_t xs[4] = {2, 6, 5, 4}, c = 6;
  for (int sync = 0; sync < 2; sync++) {
    t2s_tensor *x = t2s_test_tensor(4, xs, -1.0f, 3.0f, 120, 1);
    t2s_tensor *g = t2s_test_tensor(1, &c, 0.5f, 1.5f, 121, 1);
    t2s_tensor *b = t2s_test_tensor(1, &c, -0.5f, 0.5f, 122, 1);
    t2s_tensor *rm = t2s_test_tensor(1, &c, -0.5f, 0.5f, 123, 0);
    t2s_tensor *rv = t2s_test_tensor(1, &c, 0.5f, 1.5f, 124, 0);
    t2s_tensor *host[5] = {x, g, b, rm, rv};
    dbuf d[5], dg[3];
    t2s_tensor dev[5];
    for (int k = 0; k < 5; k++) {
      float *v = to_device_order(t2s_f32(host[k]), host[k], k == 0);
      dbuf_make(&d[k], v, t2s_numel(host[k]));
      free(v);
      device_tensor(&dev[k], host[k], &d[k]);
      if (k < 3) {
        /* like parameters (as in engine_path): += into zeros on both devices */
        host[k]->grad = calloc((size_t)t2s_numel(host[k]), sizeof(float));
        dbuf_make(&dg[k], host[k]->grad, t2s_numel(host[k]));
        dev[k].grad = dbuf_data(&dg[k]);
        host[k]->grad_accumulates = dev[k].grad_accumulates = 1;
      }
    }
    fake_ranks cr = {0}, gr = {0};
    cpu->sync_bn = gpu->sync_bn = sync;
    cpu->stat_allreduce = gpu->stat_allreduce = sync ? double_sums : NULL;
    cpu->stat_user = &cr, gpu->stat_user = &gr;
    t2s_tensor *r = t2s_test_tensor(4, xs, -1.0f, 1.0f, 125, 0);
    dbuf rb;
    float *rvals = to_device_order(t2s_f32(r), r, 1);
    dbuf_make(&rb, rvals, t2s_numel(r));
    free(rvals);
    t2s_tensor rdev;
    device_tensor(&rdev, r, &rb);
    t2s_ctx_end_pass(cpu);
    t2s_ctx_end_pass(gpu);
    t2s_tensor *lc = t2s_weighted_sum(cpu, t2s_batch_norm(cpu, x, g, b, rm, rv, T2S_BN_TRAIN, 0.1f, 1e-5f), r);
    t2s_tensor *lg = t2s_weighted_sum(gpu, t2s_batch_norm(gpu, &dev[0], &dev[1], &dev[2], &dev[3],
                                                          &dev[4], T2S_BN_TRAIN, 0.1f, 1e-5f), &rdev);
    CHECK_MSG(lc && t2s_backward(cpu, lc, 1.0f) == T2S_OK, "bn running: cpu: %s", cpu->err.msg);
    CHECK_MSG(lg && t2s_backward(gpu, lg, 1.0f) == T2S_OK, "bn running: cuda: %s", gpu->err.msg);
    const char *label = sync ? "batch_norm SyncBN hook" : "batch_norm running statistics";
    if (lc && lg && t2s_ctx_ok(gpu)) {
      const char *names[5] = {"dx", "dgamma", "dbeta", "running_mean", "running_var"};
      for (int k = 0; k < 5; k++) {
        int64_t n = t2s_numel(host[k]);
        float *raw = malloc((size_t)n * sizeof(float)), *got = malloc((size_t)n * sizeof(float));
        const float *want = k < 3 ? host[k]->grad : t2s_f32(host[k]);
        if (dbuf_read(k < 3 ? &dg[k] : &d[k], raw, label, names[k])) {
          from_device_order(raw, got, host[k], k == 0);
          expect_close(label, names[k], got, want, n, 1e-5);
        }
        free(raw), free(got);
      }
      CHECK_MSG(gr.calls == cr.calls && gr.calls == (sync ? 2 : 0),
                "%s: the hook ran %d times on cuda, %d on cpu (expected %d: forward and backward)",
                label, gr.calls, cr.calls, sync ? 2 : 0);
    }
    cpu->sync_bn = gpu->sync_bn = 0;
    cpu->stat_allreduce = gpu->stat_allreduce = NULL;
    gpu->err.status = cpu->err.status = T2S_OK;
    for (int k = 0; k < 5; k++) {
      dbuf_free(&d[k]);
      if (k < 3) dbuf_free(&dg[k]), free(host[k]->grad), host[k]->grad = NULL;
      t2s_test_tensor_free(host[k]);
    }
    dbuf_free(&rb);
    t2s_test_tensor_free(r);
    t2s_ctx_end_pass(cpu);
    t2s_ctx_end_pass(gpu);
    printf("done %s\n", label);
  }
}

static void pool_cases(t2s_ctx *cpu, t2s_ctx *gpu) {
  /* kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, ceil_mode, count_include_pad */
  const t2s_pool2d_args args[] = {
      {3, 3, 2, 2, 1, 1, 0, 1}, {3, 3, 2, 2, 1, 1, 1, 0}, {2, 2, 2, 2, 0, 0, 0, 1},
      {3, 2, 1, 2, 1, 0, 1, 1}, {5, 5, 3, 3, 2, 2, 1, 0}, {3, 3, 1, 1, 1, 1, 0, 0},
  };
  int64_t xs[2][4] = {{2, 3, 11, 9}, {1, 35, 8, 8}};
  for (int s = 0; s < 2; s++)
    for (size_t i = 0; i < sizeof args / sizeof args[0]; i++) {
      t2s_tensor *x = t2s_test_tensor(4, xs[s], -2.0f, 2.0f, 130 + i, 1);
      if (i == 0) t2s_f32(x)[5] = t2s_f32(x)[6]; /* a tie: the first maximum wins */
      char l1[96], l2[96];
      snprintf(l1, sizeof l1, "max_pool2d shape %d args %zu", s, i);
      snprintf(l2, sizeof l2, "avg_pool2d shape %d args %zu", s, i);
      op_case mc = {l1, b_maxpool, &args[i], 1, {x}, 0, 1e-5, 0};
      op_case ac = {l2, b_avgpool, &args[i], 1, {x}, 0, 1e-5, 0};
      run_case(cpu, gpu, &mc);
      run_case(cpu, gpu, &ac);
      t2s_test_tensor_free(x);
    }
}

static void concat_cases(t2s_ctx *cpu, t2s_ctx *gpu) {
  /* 4-d along each dim (channels is the NHWC memory's last axis), 3-d tokens */
  for (int dim = 0; dim < 4; dim++) {
    int64_t a[4] = {2, 3, 4, 5}, b[4] = {2, 3, 4, 5}, c[4] = {2, 3, 4, 5};
    a[dim] = 1, b[dim] = 3, c[dim] = 2;
    t2s_tensor *x = t2s_test_tensor(4, a, -1.0f, 1.0f, 140, 1);
    t2s_tensor *y = t2s_test_tensor(4, b, -1.0f, 1.0f, 141, 0); /* no gradient wanted */
    t2s_tensor *z = t2s_test_tensor(4, c, -1.0f, 1.0f, 142, 1);
    concat_case_args ca = {3, dim};
    char label[64];
    snprintf(label, sizeof label, "concat 4d dim %d", dim);
    op_case cs = {label, b_concat, &ca, 3, {x, y, z}, 0, 1e-5, 0};
    run_case(cpu, gpu, &cs);
    t2s_test_tensor_free(x), t2s_test_tensor_free(y), t2s_test_tensor_free(z);
  }
  for (int dim = 0; dim < 3; dim++) {
    int64_t a[3] = {2, 7, 6}, b[3] = {2, 7, 6};
    a[dim] = 4;
    t2s_tensor *x = t2s_test_tensor(3, a, -1.0f, 1.0f, 143, 1);
    t2s_tensor *y = t2s_test_tensor(3, b, -1.0f, 1.0f, 144, 1);
    concat_case_args ca = {2, dim};
    char label[64];
    snprintf(label, sizeof label, "concat 3d dim %d", dim);
    op_case cs = {label, b_concat, &ca, 2, {x, y}, 0, 1e-5, 0};
    run_case(cpu, gpu, &cs);
    t2s_test_tensor_free(x), t2s_test_tensor_free(y);
  }
}

static void bilinear_cases(t2s_ctx *cpu, t2s_ctx *gpu) {
  struct { int64_t x[4]; int oh, ow; } sz[] = {
      {{2, 3, 7, 5}, 13, 11}, {{2, 3, 16, 12}, 5, 7}, {{1, 2, 1, 1}, 4, 3},
      {{1, 2, 5, 6}, 1, 1},   {{1, 4, 8, 8}, 64, 64}, {{2, 33, 6, 9}, 6, 9},
      {{1, 2, 9, 4}, 27, 2},
  };
  for (size_t i = 0; i < sizeof sz / sizeof sz[0]; i++)
    for (int align = 0; align < 2; align++) {
      t2s_tensor *x = t2s_test_tensor(4, sz[i].x, -1.0f, 1.0f, 150 + i, 1);
      resize_case_args a = {sz[i].oh, sz[i].ow, align};
      char label[96];
      snprintf(label, sizeof label, "resize_bilinear %zu -> %dx%d align %d", i, sz[i].oh,
               sz[i].ow, align);
      op_case cs = {label, b_bilinear, &a, 1, {x}, 0, 1e-5, 0};
      run_case(cpu, gpu, &cs);
      t2s_test_tensor_free(x);
    }
}

/* resize_nearest has no backward (never taped): both public ops, bitwise. */
static void nearest_cases(t2s_ctx *cpu, t2s_ctx *gpu) {
  struct { int ndim; int64_t s[4]; int oh, ow; t2s_dtype dt; } cs[] = {
      {3, {2, 9, 7}, 20, 5, T2S_U8},      {4, {2, 1, 9, 7}, 4, 13, T2S_U8},
      {4, {2, 3, 6, 5}, 11, 3, T2S_F32},  {4, {1, 2, 7, 7}, 7, 7, T2S_F32},
  };
  for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
    t2s_tensor *x;
    int64_t n = 1;
    for (int k = 0; k < cs[i].ndim; k++) n *= cs[i].s[k];
    if (cs[i].dt == T2S_U8) {
      uint8_t *v = malloc((size_t)n);
      for (int64_t k = 0; k < n; k++) v[k] = (uint8_t)((k * 37 + 11) % 251);
      x = t2s_test_tensor_u8(cs[i].ndim, cs[i].s, v);
      free(v);
    } else {
      x = t2s_test_tensor(cs[i].ndim, cs[i].s, -1.0f, 1.0f, 160 + i, 0);
    }
    t2s_ctx_end_pass(cpu);
    t2s_ctx_end_pass(gpu);
    t2s_tensor *yc = t2s_resize_nearest(cpu, x, cs[i].oh, cs[i].ow);
    int act = cs[i].dt == T2S_F32;
    float *v = to_device_order(t2s_f32(x), x, act);
    dbuf xb;
    dbuf_make(&xb, v, float_slots(x));
    free(v);
    t2s_tensor xd;
    device_tensor(&xd, x, &xb);
    if (!act) xd.layout = T2S_LAYOUT_NCHW;
    t2s_tensor *yg = t2s_resize_nearest(gpu, &xd, cs[i].oh, cs[i].ow);
    char label[64];
    snprintf(label, sizeof label, "resize_nearest case %zu", i);
    CHECK_MSG(yc && yg, "%s: %s / %s", label, cpu->err.msg, gpu->err.msg);
    if (yc && yg) {
      size_t bytes = (size_t)t2s_numel(yc) * t2s_dtype_size(yc->dtype);
      float *got = malloc(bytes + 4), *want = NULL;
      t2s_error err = {0};
      CHECK(t2s_device_copy(T2S_DEV_CPU, got, T2S_DEV_CUDA, yg->data, bytes, &err) == T2S_OK);
      if (act) {
        want = malloc(bytes);
        memcpy(want, got, bytes);
        from_device_order(want, got, yc, 1);
      }
      CHECK_MSG(memcmp(got, yc->data, bytes) == 0, "%s: cuda differs from cpu", label);
      free(got), free(want);
    }
    cpu->err.status = gpu->err.status = T2S_OK;
    dbuf_free(&xb);
    t2s_test_tensor_free(x);
    t2s_ctx_end_pass(cpu);
    t2s_ctx_end_pass(gpu);
  }
  printf("done resize_nearest\n");
}

/* ---- GEMM-shaped, normalisation, loss ------------------------------------------------ */

static t2s_tensor *b_linear(t2s_ctx *x, t2s_tensor **in, const void *u) {
  return t2s_linear(x, in[0], in[1], in[2]);
}
typedef struct mm_case_args {
  int ta, tb;
} mm_case_args;
static t2s_tensor *b_matmul(t2s_ctx *x, t2s_tensor **in, const void *u) {
  const mm_case_args *a = u;
  return t2s_matmul(x, in[0], in[1], a->ta, a->tb);
}
static t2s_tensor *b_layer_norm(t2s_ctx *x, t2s_tensor **in, const void *u) {
  return t2s_layer_norm(x, in[0], in[1], in[2], 1e-5f);
}
static t2s_tensor *b_softmax(t2s_ctx *x, t2s_tensor **in, const void *u) {
  return t2s_softmax(x, in[0], *(const int *)u);
}
static t2s_tensor *b_l2(t2s_ctx *x, t2s_tensor **in, const void *u) {
  return t2s_l2_normalize(x, in[0], *(const int *)u, 1e-3f);
}
static t2s_tensor *b_ce(t2s_ctx *x, t2s_tensor **in, const void *u) {
  return t2s_cross_entropy(x, in[0], in[1], in[2], in[3], (const t2s_ce_args *)u);
}

static void linear_cases(t2s_ctx *cpu, t2s_ctx *gpu, double tol, const char *tag) {
  struct { int nd; int64_t x[3]; int64_t n; int bias; } ls[] = {
      {2, {7, 12}, 5, 1}, {3, {2, 9, 16}, 24, 0}, {3, {2, 300, 64}, 48, 1}, {1, {33}, 3, 1},
      {2, {1, 1}, 1, 1},
  };
  for (size_t i = 0; i < sizeof ls / sizeof ls[0]; i++) {
    int64_t k = ls[i].x[ls[i].nd - 1], ws[2] = {ls[i].n, k}, bs[1] = {ls[i].n};
    t2s_tensor *x = t2s_test_tensor(ls[i].nd, ls[i].x, -1.0f, 1.0f, 170 + i, 1);
    t2s_tensor *w = t2s_test_tensor(2, ws, -0.5f, 0.5f, 171 + i, 1);
    t2s_tensor *b = ls[i].bias ? t2s_test_tensor(1, bs, -0.5f, 0.5f, 172 + i, 1) : NULL;
    char label[96];
    snprintf(label, sizeof label, "linear case %zu%s", i, tag);
    op_case cs = {label, b_linear, NULL, 3, {x, w, b}, 0, tol, 0};
    run_case(cpu, gpu, &cs);
    t2s_test_tensor_free(x), t2s_test_tensor_free(w), t2s_test_tensor_free(b);
  }
}

static void matmul_cases(t2s_ctx *cpu, t2s_ctx *gpu) {
  const int64_t B = 3, M = 5, K = 7, N = 4;
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++)
      for (int bc = 0; bc < 3; bc++) { /* 0: both batched, 1: a 2-d, 2: b 2-d */
        int64_t as[3] = {B, ta ? K : M, ta ? M : K}, bs[3] = {B, tb ? N : K, tb ? K : N};
        t2s_tensor *a = bc == 1 ? t2s_test_tensor(2, as + 1, -1.0f, 1.0f, 180, 1)
                                : t2s_test_tensor(3, as, -1.0f, 1.0f, 180, 1);
        t2s_tensor *b = bc == 2 ? t2s_test_tensor(2, bs + 1, -1.0f, 1.0f, 181, 1)
                                : t2s_test_tensor(3, bs, -1.0f, 1.0f, 181, 1);
        mm_case_args m = {ta, tb};
        char label[96];
        snprintf(label, sizeof label, "matmul trans %d%d %s", ta, tb,
                 bc == 0 ? "batched" : bc == 1 ? "a broadcast" : "b broadcast");
        op_case cs = {label, b_matmul, &m, 2, {a, b}, 0, 1e-4, 0};
        run_case(cpu, gpu, &cs);
        t2s_test_tensor_free(a), t2s_test_tensor_free(b);
      }
  int64_t a2[2] = {6, 9}, b2[2] = {9, 70};
  t2s_tensor *a = t2s_test_tensor(2, a2, -1.0f, 1.0f, 182, 1);
  t2s_tensor *b = t2s_test_tensor(2, b2, -1.0f, 1.0f, 183, 0);
  mm_case_args m = {0, 0};
  op_case cs = {"matmul 2-d, b constant", b_matmul, &m, 2, {a, b}, 0, 1e-4, 0};
  run_case(cpu, gpu, &cs);
  t2s_test_tensor_free(a), t2s_test_tensor_free(b);
}

static void norm_cases(t2s_ctx *cpu, t2s_ctx *gpu) {
  struct { int nd; int64_t s[4]; int params; } ln[] = {
      {3, {3, 7, 33}, 1}, {2, {5, 64}, 0}, {4, {2, 3, 4, 5}, 1}, {2, {4, 100}, 1},
  };
  for (size_t i = 0; i < sizeof ln / sizeof ln[0]; i++) {
    int64_t c = ln[i].s[ln[i].nd - 1];
    t2s_tensor *x = t2s_test_tensor(ln[i].nd, ln[i].s, 1.0f, 3.0f, 190 + i, 1);
    t2s_tensor *g = ln[i].params ? t2s_test_tensor(1, &c, 0.5f, 1.5f, 191, 1) : NULL;
    t2s_tensor *b = ln[i].params ? t2s_test_tensor(1, &c, -0.5f, 0.5f, 192, 1) : NULL;
    char label[64];
    snprintf(label, sizeof label, "layer_norm case %zu", i);
    op_case cs = {label, b_layer_norm, NULL, 3, {x, g, b}, 0, 1e-5, 0};
    run_case(cpu, gpu, &cs);
    t2s_test_tensor_free(x), t2s_test_tensor_free(g), t2s_test_tensor_free(b);
  }
  struct { int nd; int64_t s[4]; int dim; } sm[] = {
      {4, {2, 19, 5, 6}, 1}, {4, {2, 3, 4, 5}, 3}, {4, {2, 3, 4, 5}, 0}, {4, {2, 3, 4, 5}, 2},
      {3, {2, 6, 70}, -1},   {2, {9, 3}, 1},       {3, {4, 40, 3}, 1},
  };
  for (size_t i = 0; i < sizeof sm / sizeof sm[0]; i++) {
    t2s_tensor *x = t2s_test_tensor(sm[i].nd, sm[i].s, -3.0f, 3.0f, 200 + i, 1);
    char l1[64], l2[64];
    snprintf(l1, sizeof l1, "softmax %dd dim %d", sm[i].nd, sm[i].dim);
    snprintf(l2, sizeof l2, "l2_normalize %dd dim %d", sm[i].nd, sm[i].dim);
    op_case c1 = {l1, b_softmax, &sm[i].dim, 1, {x}, 0, 1e-5, 0};
    run_case(cpu, gpu, &c1);
    if (sm[i].nd == 4 && sm[i].dim == 1) /* one pixel's vector below eps: the clamped branch */
      for (int64_t k = 0; k < sm[i].s[1]; k++) t2s_f32(x)[k * sm[i].s[2] * sm[i].s[3]] = 1e-6f;
    op_case c2 = {l2, b_l2, &sm[i].dim, 1, {x}, 0, 1e-5, 0};
    run_case(cpu, gpu, &c2);
    t2s_test_tensor_free(x);
  }
}

static void ce_cases(t2s_ctx *cpu, t2s_ctx *gpu) {
  struct { int64_t s[4]; t2s_ce_reduction red; int pw, cw; double norm; int all_ignored; } cs[] = {
      {{2, 5, 6, 7}, T2S_CE_MEAN_VALID, 0, 0, 0.0, 0},
      {{2, 5, 6, 7}, T2S_CE_MEAN_WEIGHT, 0, 1, 0.0, 0},
      {{2, 5, 6, 7}, T2S_CE_SUM, 1, 1, 0.0, 0},
      {{1, 40, 9, 8}, T2S_CE_MEAN_VALID, 1, 0, 0.0, 0},
      {{2, 19, 33, 31}, T2S_CE_MEAN_VALID, 0, 1, 1234.5, 0},
      {{1, 3, 4, 4}, T2S_CE_MEAN_VALID, 0, 0, 0.0, 1},
  };
  for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
    int64_t n = cs[i].s[0], c = cs[i].s[1], hw = cs[i].s[2] * cs[i].s[3];
    int64_t ls[3] = {n, cs[i].s[2], cs[i].s[3]};
    uint8_t *lab = malloc((size_t)(n * hw));
    for (int64_t k = 0; k < n * hw; k++)
      lab[k] = cs[i].all_ignored || k % 7 == 3 ? 255 : (uint8_t)((k * 13 + 5) % c);
    t2s_tensor *z = t2s_test_tensor(4, cs[i].s, -4.0f, 4.0f, 210 + i, 1);
    t2s_tensor *l = t2s_test_tensor_u8(3, ls, lab);
    t2s_tensor *pw = cs[i].pw ? t2s_test_tensor(3, ls, 0.0f, 2.0f, 211, 0) : NULL;
    t2s_tensor *cw = cs[i].cw ? t2s_test_tensor(1, &c, 0.2f, 3.0f, 212, 0) : NULL;
    t2s_ce_args a = {255, cs[i].red, cs[i].norm};
    char label[64];
    snprintf(label, sizeof label, "cross_entropy case %zu", i);
    op_case oc = {label, b_ce, &a, 4, {z, l, pw, cw}, 0, 1e-5, 0};
    run_case(cpu, gpu, &oc);
    t2s_test_tensor_free(z), t2s_test_tensor_free(l), t2s_test_tensor_free(pw);
    t2s_test_tensor_free(cw);
    free(lab);
  }
}

/* A label that is neither a class nor ignored fails the CUDA forward with the
 * CPU's message (image, pixel, value). */
static void ce_bad_label(t2s_ctx *gpu) {
  int64_t zs[4] = {1, 5, 3, 4}, ls[3] = {1, 3, 4};
  uint8_t lab[12] = {0, 1, 2, 3, 4, 255, 0, 9, 1, 2, 3, 7};
  t2s_tensor *z = t2s_test_tensor(4, zs, -1.0f, 1.0f, 220, 0);
  t2s_tensor *l = t2s_test_tensor_u8(3, ls, lab);
  dbuf zb, lb;
  float *v = to_device_order(t2s_f32(z), z, 1);
  dbuf_make(&zb, v, t2s_numel(z));
  free(v);
  v = to_device_order(t2s_f32(l), l, 0);
  dbuf_make(&lb, v, float_slots(l));
  free(v);
  t2s_tensor zd, ld;
  device_tensor(&zd, z, &zb);
  device_tensor(&ld, l, &lb);
  t2s_ce_args a = {255, T2S_CE_MEAN_VALID, 0.0};
  t2s_ctx_end_pass(gpu);
  t2s_tensor *loss = t2s_cross_entropy(gpu, &zd, &ld, NULL, NULL, &a);
  CHECK_MSG(loss == NULL && gpu->err.status == T2S_ERR_INVALID &&
                strstr(gpu->err.msg, "label 9 at image 0 pixel 7") != NULL,
            "cross_entropy bad label: expected the first bad pixel (7, label 9) named, got '%s'",
            gpu->err.msg);
  t2s_error_clear(&gpu->err);
  dbuf_free(&zb), dbuf_free(&lb);
  t2s_test_tensor_free(z), t2s_test_tensor_free(l);
  t2s_ctx_end_pass(gpu);
  printf("done cross_entropy bad label\n");
}

/* TF32 runs and stays near fp32 (10-bit mantissa products); then back to fp32. */
static void precision_cases(t2s_ctx *cpu, t2s_ctx *gpu) {
  CHECK_MSG(t2s_cuda_set_precision(gpu, T2S_PRECISION_TF32) == T2S_OK, "tf32: %s", gpu->err.msg);
  linear_cases(cpu, gpu, 2e-2, " (tf32)");
  int64_t xs[4] = {2, 16, 9, 9}, ws[4] = {8, 16, 3, 3};
  t2s_tensor *x = t2s_test_tensor(4, xs, -1.0f, 1.0f, 230, 1);
  t2s_tensor *w = t2s_test_tensor(4, ws, -0.5f, 0.5f, 231, 1);
  t2s_conv2d_args ca = t2s_conv_args(1, 1, 1);
  op_case cs = {"conv2d 3x3 (tf32)", b_conv, &ca, 3, {x, w, NULL}, (1u << 1) | (1u << 2), 2e-2, 0};
  run_case(cpu, gpu, &cs);
  t2s_test_tensor_free(x), t2s_test_tensor_free(w);
  /* bf16 has its own test (test_cuda_bf16.c); an unknown mode is refused */
  CHECK(t2s_cuda_set_precision(gpu, (t2s_precision)99) == T2S_ERR_INVALID);
  t2s_error_clear(&gpu->err);
  CHECK(t2s_cuda_set_precision(gpu, T2S_PRECISION_FP32) == T2S_OK);
}

/* ---- bitwise reproducibility: the deterministic paths give identical bits ------------ */

/* Runs weighted_sum forward and conv2d backward (deterministic algorithms) twice on
 * the same device data and compares the bits. */
static void determinism_case(t2s_ctx *cpu, t2s_ctx *gpu) {
  gpu->deterministic = 1;
  int64_t xs[4] = {2, 16, 13, 13}, ws[4] = {8, 16, 3, 3}, bs[1] = {8};
  t2s_tensor *x = t2s_test_tensor(4, xs, -1.0f, 1.0f, 81, 1);
  t2s_tensor *w = t2s_test_tensor(4, ws, -0.5f, 0.5f, 82, 1);
  t2s_tensor *b = t2s_test_tensor(1, bs, -0.5f, 0.5f, 83, 1);
  t2s_conv2d_args a = t2s_conv_args(1, 1, 1);
  replay r;
  memset(&r, 0, sizeof r);
  t2s_ctx_end_pass(cpu);
  t2s_tensor *in[3] = {x, w, b};
  t2s_tensor *out = t2s_conv2d(cpu, in[0], in[1], in[2], &a);
  if (out == NULL) {
    CHECK_MSG(0, "determinism: CPU conv2d: %s", cpu->err.msg);
    return;
  }
  t2s_node node = *cpu->tape[cpu->tape_len - 1];
  int64_t out_n = t2s_numel(out);
  float *dy = host_random(out_n, -1.0f, 1.0f, 84);
  for (int k = 0; k < 3; k++) {
    dbuf_make(&r.xin[k], t2s_f32(in[k]), t2s_numel(in[k])); /* x values: layout irrelevant here */
    device_tensor(&r.din[k], in[k], &r.xin[k]);
    r.din[k].layout = k == 0 ? T2S_LAYOUT_NHWC : T2S_LAYOUT_NCHW;
    node.in[k] = &r.din[k];
    dbuf_make(&r.dgrad[k], NULL, t2s_numel(in[k]));
    r.din[k].grad = dbuf_data(&r.dgrad[k]);
  }
  dbuf_make(&r.yout, NULL, out_n);
  dbuf_make(&r.dy, dy, out_n);
  device_tensor(&r.dout, out, &r.yout);
  r.dout.grad = dbuf_data(&r.dy);
  node.out = &r.dout;
  node.saved = NULL;
  float beta[T2S_MAX_INPUTS] = {0};
  float *runs[2][4];
  for (int run = 0; run < 2; run++) {
    t2s_status st = t2s_ops[T2S_OP_conv2d].forward[T2S_DEV_CUDA](gpu, &node);
    if (st == T2S_OK) st = t2s_ops[T2S_OP_conv2d].backward[T2S_DEV_CUDA](gpu, &node, beta);
    CHECK_MSG(st == T2S_OK, "determinism: cuda conv2d: %s", gpu->err.msg);
    dbuf *bufs[4] = {&r.yout, &r.dgrad[0], &r.dgrad[1], &r.dgrad[2]};
    for (int k = 0; k < 4; k++) {
      runs[run][k] = malloc((size_t)bufs[k]->n * sizeof(float));
      dbuf_read(bufs[k], runs[run][k], "determinism", "conv2d result");
    }
  }
  const char *names[4] = {"output", "dx", "dw", "dbias"};
  dbuf *bufs[4] = {&r.yout, &r.dgrad[0], &r.dgrad[1], &r.dgrad[2]};
  for (int k = 0; k < 4; k++) {
    CHECK_MSG(memcmp(runs[0][k], runs[1][k], (size_t)bufs[k]->n * sizeof(float)) == 0,
              "determinism: conv2d %s differs between two deterministic runs", names[k]);
    free(runs[0][k]), free(runs[1][k]);
  }
  for (int k = 0; k < 3; k++) dbuf_free(&r.xin[k]), dbuf_free(&r.dgrad[k]);
  dbuf_free(&r.yout), dbuf_free(&r.dy);
  free(dy);
  t2s_test_tensor_free(x), t2s_test_tensor_free(w), t2s_test_tensor_free(b);
  t2s_ctx_end_pass(cpu);
  t2s_ctx_end_pass(gpu);
  gpu->deterministic = 0;
  gpu->err.status = T2S_OK;
  printf("done determinism\n");
}

/* ---- dropout statistics on the device alone --------------------------------------------- */

/* The kept fraction is 1 - p and the kept values are x / (1 - p). */
static void dropout_statistics(t2s_ctx *gpu) {
  int64_t n = 1 << 20;
  float *ones = malloc((size_t)n * sizeof(float));
  for (int64_t i = 0; i < n; i++) ones[i] = 1.0f;
  dbuf xb, yb;
  dbuf_make(&xb, ones, n);
  dbuf_make(&yb, NULL, n);
  t2s_tensor x, y;
  t2s_tensor_init(&x, T2S_F32, T2S_DEV_CUDA, 1, &n, dbuf_data(&xb));
  t2s_tensor_init(&y, T2S_F32, T2S_DEV_CUDA, 1, &n, dbuf_data(&yb));
  struct { float p; t2s_rng_key key; } args = {0.25f, t2s_rng_key_make(1, 2, 3, 4)};
  t2s_node node;
  memset(&node, 0, sizeof node);
  node.op = T2S_OP_dropout;
  node.n_in = 1;
  node.in[0] = &x;
  node.out = &y;
  node.args = &args;
  t2s_status st = t2s_ops[T2S_OP_dropout].forward[T2S_DEV_CUDA](gpu, &node);
  CHECK_MSG(st == T2S_OK, "dropout statistics: %s", gpu->err.msg);
  if (st == T2S_OK && dbuf_read(&yb, ones, "dropout statistics", "output")) {
    int64_t zeros = 0, bad = 0;
    for (int64_t i = 0; i < n; i++) {
      zeros += ones[i] == 0.0f;
      bad += ones[i] != 0.0f && ones[i] != 1.0f / 0.75f;
    }
    CHECK_MSG(fabs(zeros / (double)n - 0.25) < 0.005, "dropout zero fraction %g, expected 0.25",
              zeros / (double)n);
    CHECK_MSG(bad == 0, "dropout: %lld kept values are not 1 / (1 - p)", (long long)bad);
  }
  dbuf_free(&xb), dbuf_free(&yb);
  free(ones);
  gpu->err.status = T2S_OK;
  printf("done dropout statistics\n");
}

/* ---- the engine path: t2s_op_apply and t2s_backward on a CUDA context ------------------- */

/* A small graph with a fan-out (h feeds relu and gelu), a parameter and dropout,
 * run end to end through the public API on both backends. */
static t2s_tensor *engine_graph(t2s_ctx *ctx, t2s_tensor *x, t2s_tensor *w, t2s_tensor *b,
                                t2s_tensor *r) {
  t2s_conv2d_args a = t2s_conv_args(1, 1, 1);
  t2s_tensor *h = t2s_conv2d(ctx, x, w, b, &a);
  t2s_tensor *m = t2s_mul(ctx, t2s_relu(ctx, h), t2s_gelu(ctx, h));
  t2s_tensor *d = t2s_dropout(ctx, t2s_scale(ctx, m, 0.5f), 0.2f, t2s_rng_key_make(9, 8, 7, 6));
  return t2s_weighted_sum(ctx, t2s_add(ctx, d, h), r);
}

static void engine_path(t2s_ctx *cpu, t2s_ctx *gpu) {
  printf("engine path: t2s_op_apply / t2s_backward on a CUDA context\n");
  fflush(stdout);
  int64_t xs[4] = {2, 3, 6, 5}, ws[4] = {4, 3, 3, 3}, bs[1] = {4}, ys[4] = {2, 4, 6, 5};
  t2s_tensor *x = t2s_test_tensor(4, xs, -1.0f, 1.0f, 91, 1);
  t2s_tensor *w = t2s_test_tensor(4, ws, -0.5f, 0.5f, 92, 1);
  t2s_tensor *b = t2s_test_tensor(1, bs, -0.5f, 0.5f, 93, 1);
  t2s_tensor *r = t2s_test_tensor(4, ys, -1.0f, 1.0f, 94, 0);
  t2s_tensor *host[4] = {x, w, b, r};
  float *ref_grad[3];
  for (int k = 0; k < 3; k++) {
    ref_grad[k] = calloc((size_t)t2s_numel(host[k]), sizeof(float));
    host[k]->grad = ref_grad[k];
    host[k]->grad_accumulates = 1; /* like parameters: += into zeros */
  }
  t2s_ctx_end_pass(cpu);
  t2s_tensor *loss = engine_graph(cpu, x, w, b, r);
  float cpu_loss = loss ? t2s_f32(loss)[0] : NAN;
  CHECK_MSG(loss != NULL && t2s_backward(cpu, loss, 1.0f) == T2S_OK, "engine path on cpu: %s",
            cpu->err.msg);

  dbuf vals[4], grads[3];
  t2s_tensor dev[4];
  for (int k = 0; k < 4; k++) {
    int act = k == 0 || k == 3;
    float *v = to_device_order(t2s_f32(host[k]), host[k], act);
    dbuf_make(&vals[k], v, t2s_numel(host[k]));
    free(v);
    device_tensor(&dev[k], host[k], &vals[k]);
    if (!act) dev[k].layout = T2S_LAYOUT_NCHW;
    if (k < 3) {
      float *z = calloc((size_t)t2s_numel(host[k]), sizeof(float));
      dbuf_make(&grads[k], z, t2s_numel(host[k]));
      free(z);
      dev[k].grad = dbuf_data(&grads[k]);
      dev[k].grad_accumulates = 1;
    }
  }
  t2s_ctx_end_pass(gpu);
  t2s_tensor *dloss = engine_graph(gpu, &dev[0], &dev[1], &dev[2], &dev[3]);
  CHECK_MSG(dloss != NULL && t2s_backward(gpu, dloss, 1.0f) == T2S_OK, "engine path on cuda: %s",
            gpu->err.msg);
  if (dloss != NULL && t2s_ctx_ok(gpu)) {
    float gl = NAN;
    t2s_error err = {0};
    t2s_device_copy(T2S_DEV_CPU, &gl, T2S_DEV_CUDA, dloss->data, sizeof gl, &err);
    expect_close("engine path", "loss", &gl, &cpu_loss, 1, 1e-4);
    const char *names[3] = {"dx", "dw", "dbias"};
    for (int k = 0; k < 3; k++) {
      int64_t n = t2s_numel(host[k]);
      float *d = malloc((size_t)n * sizeof(float)), *got = malloc((size_t)n * sizeof(float));
      if (dbuf_read(&grads[k], d, "engine path", names[k])) {
        from_device_order(d, got, host[k], k == 0);
        expect_close("engine path", names[k], got, ref_grad[k], n, 1e-4);
      }
      free(d), free(got);
    }
  }
  for (int k = 0; k < 4; k++) {
    dbuf_free(&vals[k]);
    if (k < 3) dbuf_free(&grads[k]), free(ref_grad[k]), host[k]->grad = NULL;
    t2s_test_tensor_free(host[k]);
  }
  t2s_ctx_end_pass(cpu);
  t2s_ctx_end_pass(gpu);
  printf("done engine path\n");
}

int main(void) {
  if (!t2s_cuda_built()) {
    printf("test_cuda_ops: skipped: this build has no CUDA backend (configure with -DT2S_CUDA=ON)\n");
    return 77;
  }
  if (t2s_cuda_device_count() == 0) {
    printf("test_cuda_ops: skipped: no CUDA device is visible\n");
    return 77;
  }
  t2s_error err = {0};
  t2s_ctx *cpu = t2s_ctx_create(T2S_DEV_CPU, 64 << 20, &err);
  t2s_ctx *gpu = cpu ? t2s_ctx_create(T2S_DEV_CUDA, 64 << 20, &err) : NULL;
  if (gpu == NULL) {
    fprintf(stderr, "test_cuda_ops: creating the contexts: %s\n", err.msg);
    t2s_ctx_destroy(cpu);
    return 1;
  }
  cpu->seed = gpu->seed = 1234;
  elementwise_cases(cpu, gpu);
  conv_cases(cpu, gpu);
  bn_cases(cpu, gpu);
  bn_running_and_sync(cpu, gpu);
  pool_cases(cpu, gpu);
  concat_cases(cpu, gpu);
  bilinear_cases(cpu, gpu);
  nearest_cases(cpu, gpu);
  linear_cases(cpu, gpu, 1e-4, "");
  matmul_cases(cpu, gpu);
  norm_cases(cpu, gpu);
  ce_cases(cpu, gpu);
  ce_bad_label(gpu);
  precision_cases(cpu, gpu);
  determinism_case(cpu, gpu);
  dropout_statistics(gpu);
  printf("op checks: %d failure(s) so far\n", t2s_test_failures);
  fflush(stdout);
  /* last: it needs the engine to keep node/tensor headers in host memory on a CUDA
   * context; if that is broken it crashes here, after the op checks above ran */
  engine_path(cpu, gpu);
  t2s_ctx_destroy(gpu);
  t2s_ctx_destroy(cpu);
  return t2s_test_finish("test_cuda_ops");
}
