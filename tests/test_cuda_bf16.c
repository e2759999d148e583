// ctest-labels: cuda
// ctest-timeout: 300
/* precision: bf16 on CUDA against the fp32 CPU reference, op by op.
 *
 * Each case runs the op on the CPU (fp32) through its public call with inputs that are
 * exactly representable in bf16 (rounded on the host first: activations, weights,
 * biases, and dy, which the GEMM-shaped ops cast to bf16), then replays the node on the
 * CUDA slot of a context in bf16 mode (tests/cuda_replay.h, run_case_dtypes): the
 * activation inputs are uploaded as bf16, the output is bf16, weights and every gradient
 * stay f32. Both sides then see the same numbers; what differs is the GPU's bf16
 * rounding of its results.
 *
 * Tolerance BF16_TOL = 1e-2, relative to max(|ref|, rms(ref)) (cuda_replay.h). bf16 keeps
 * 8 significant bits, unit roundoff u = 2^-9 ~ 1.95e-3. With exact inputs and fp32
 * accumulation (cuDNN compute type FLOAT, CUBLAS_COMPUTE_32F; the accumulation error,
 * ~K 2^-24, is negligible) a result carries at most two bf16 roundings: the output (y,
 * or cuDNN's bf16 dx / dW) and, for conv2d with bias, the bias added to the bf16 y.
 * So errors stay below 2u ~ 4e-3; 1e-2 leaves room for cuDNN kernels that round
 * partial sums, and is still two orders below what a misread dtype, a missing cast or
 * a wrong layout gives (O(1)). The f32 path of the same ops is held to 1e-4 / 1e-5 in
 * test_cuda_ops.c.
 *
 * to_f32 (the widening in front of the losses) is exact: tolerance 0.
 *
 * Also: the public calls make bf16 outputs only in bf16 mode, an op without a bf16
 * path (the fused losses of losses/ today) refuses a bf16 input with a message naming
 * it, and a CPU context refuses the setting. resize_nearest (a copy, never taped) is not
 * replayed here. Skipped (exit 77) when the build has no CUDA backend or no GPU is visible. */
#include "tests/cuda_replay.h"

#define BF16_TOL 1e-2

/* A host test tensor whose values are rounded to bf16 (the reference's inputs). */
static t2s_tensor *bf16_tensor(int ndim, const int64_t *shape, float lo, float hi, uint64_t seed,
                               int requires_grad) {
  t2s_tensor *t = t2s_test_tensor(ndim, shape, lo, hi, seed, requires_grad);
  bf16_round_all(t2s_f32(t), t2s_numel(t));
  return t;
}

static void run_bf16(t2s_ctx *cpu, t2s_ctx *gpu, op_case *c, unsigned bf16_inputs) {
  replay_dtypes dt = {bf16_inputs, 1};
  run_case_dtypes(cpu, gpu, c, &dt);
}
/* The same for the ops whose output is an f32 scalar (losses, probes). */
static void run_bf16_to_f32(t2s_ctx *cpu, t2s_ctx *gpu, op_case *c, unsigned bf16_inputs) {
  replay_dtypes dt = {bf16_inputs, 0};
  run_case_dtypes(cpu, gpu, c, &dt);
}

/* ---- builders ---------------------------------------------------------------------- */

static t2s_tensor *b_conv(t2s_ctx *x, t2s_tensor **in, const void *u) {
  return t2s_conv2d(x, in[0], in[1], in[2], (const t2s_conv2d_args *)u);
}
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
static t2s_tensor *b_bn(t2s_ctx *x, t2s_tensor **in, const void *u) {
  return t2s_batch_norm(x, in[0], in[1], in[2], in[3], in[4], *(const t2s_bn_mode *)u, 0.1f,
                        1e-5f);
}
static t2s_tensor *b_relu(t2s_ctx *x, t2s_tensor **in, const void *u) { return t2s_relu(x, in[0]); }
static t2s_tensor *b_gelu(t2s_ctx *x, t2s_tensor **in, const void *u) { return t2s_gelu(x, in[0]); }
static t2s_tensor *b_add(t2s_ctx *x, t2s_tensor **in, const void *u) { return t2s_add(x, in[0], in[1]); }
static t2s_tensor *b_mul(t2s_ctx *x, t2s_tensor **in, const void *u) { return t2s_mul(x, in[0], in[1]); }
static t2s_tensor *b_scale(t2s_ctx *x, t2s_tensor **in, const void *u) {
  return t2s_scale(x, in[0], *(const float *)u);
}
static t2s_tensor *b_to_f32(t2s_ctx *x, t2s_tensor **in, const void *u) { return t2s_to_f32(x, in[0]); }
static t2s_tensor *b_dropout(t2s_ctx *x, t2s_tensor **in, const void *u) {
  return t2s_dropout(x, in[0], *(const float *)u, t2s_rng_key_make(11, 22, 33, 44));
}
static t2s_tensor *b_wsum(t2s_ctx *x, t2s_tensor **in, const void *u) {
  return t2s_weighted_sum(x, in[0], in[1]);
}
static t2s_tensor *b_maxpool(t2s_ctx *x, t2s_tensor **in, const void *u) {
  return t2s_max_pool2d(x, in[0], (const t2s_pool2d_args *)u);
}
static t2s_tensor *b_avgpool(t2s_ctx *x, t2s_tensor **in, const void *u) {
  return t2s_avg_pool2d(x, in[0], (const t2s_pool2d_args *)u);
}
static t2s_tensor *b_concat(t2s_ctx *x, t2s_tensor **in, const void *u) {
  return t2s_concat(x, in, 2, *(const int *)u);
}
static t2s_tensor *b_bilinear(t2s_ctx *x, t2s_tensor **in, const void *u) {
  const int *a = u;
  return t2s_resize_bilinear(x, in[0], a[0], a[1], a[2]);
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
static t2s_tensor *b_drop_path(t2s_ctx *x, t2s_tensor **in, const void *u) {
  return t2s_drop_path(x, in[0], *(const float *)u, t2s_rng_key_make(5, 6, 7, 8));
}

/* ---- conv2d ------------------------------------------------------------------------ */

static void conv_cases(t2s_ctx *cpu, t2s_ctx *gpu) {
  /* t2s_conv2d_args: stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups */
  struct {
    const char *what;
    int64_t n, cin, h, w, cout, k;
    t2s_conv2d_args a;
    int bias;
    unsigned x_bf16;  /* 0: an f32 x (the image into the first layer), cast by the op */
  } cs[] = {
      {"conv2d 3x3 bias", 2, 16, 9, 9, 8, 3, {1, 1, 1, 1, 1, 1, 1}, 1, 1},
      {"conv2d 3x3 stride 2", 2, 8, 12, 10, 16, 3, {2, 2, 1, 1, 1, 1, 1}, 0, 1},
      {"conv2d 1x1 (direct filter)", 2, 32, 6, 6, 16, 1, {1, 1, 0, 0, 1, 1, 1}, 1, 1},
      {"conv2d depthwise 3x3 (direct filter)", 2, 16, 7, 7, 16, 3, {1, 1, 1, 1, 1, 1, 16}, 1, 1},
      {"conv2d first layer (f32 image x)", 2, 3, 16, 16, 8, 3, {2, 2, 1, 1, 1, 1, 1}, 1, 0},
  };
  for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
    int64_t xs[4] = {cs[i].n, cs[i].cin, cs[i].h, cs[i].w};
    int64_t ws[4] = {cs[i].cout, cs[i].cin / cs[i].a.groups, cs[i].k, cs[i].k}, bs[1] = {cs[i].cout};
    t2s_tensor *x = bf16_tensor(4, xs, -1.0f, 1.0f, 300 + i, 1);
    t2s_tensor *w = bf16_tensor(4, ws, -0.5f, 0.5f, 310 + i, 1);
    t2s_tensor *b = cs[i].bias ? bf16_tensor(1, bs, -0.5f, 0.5f, 320 + i, 1) : NULL;
    op_case c = {cs[i].what, b_conv, &cs[i].a, 3, {x, w, b}, (1u << 1) | (1u << 2), BF16_TOL, 0};
    run_bf16(cpu, gpu, &c, cs[i].x_bf16);
    t2s_test_tensor_free(x), t2s_test_tensor_free(w), t2s_test_tensor_free(b);
  }
}

/* ---- linear / matmul --------------------------------------------------------------- */

static void linear_cases(t2s_ctx *cpu, t2s_ctx *gpu) {
  struct { int nd; int64_t x[3]; int64_t n; int bias; unsigned x_bf16; } ls[] = {
      {3, {2, 64, 32}, 48, 1, 1}, {3, {2, 9, 16}, 24, 0, 1}, {2, {7, 12}, 5, 1, 1},
      {2, {40, 64}, 32, 1, 0},
  };
  for (size_t i = 0; i < sizeof ls / sizeof ls[0]; i++) {
    int64_t k = ls[i].x[ls[i].nd - 1], ws[2] = {ls[i].n, k}, bs[1] = {ls[i].n};
    t2s_tensor *x = bf16_tensor(ls[i].nd, ls[i].x, -1.0f, 1.0f, 330 + i, 1);
    t2s_tensor *w = bf16_tensor(2, ws, -0.5f, 0.5f, 340 + i, 1);
    t2s_tensor *b = ls[i].bias ? bf16_tensor(1, bs, -0.5f, 0.5f, 350 + i, 1) : NULL;
    char label[96];
    snprintf(label, sizeof label, "linear case %zu%s", i, ls[i].x_bf16 ? "" : " (f32 x)");
    op_case c = {label, b_linear, NULL, 3, {x, w, b}, 0, BF16_TOL, 0};
    run_bf16(cpu, gpu, &c, ls[i].x_bf16);
    t2s_test_tensor_free(x), t2s_test_tensor_free(w), t2s_test_tensor_free(b);
  }
}

static void matmul_cases(t2s_ctx *cpu, t2s_ctx *gpu) {
  const int64_t B = 3, M = 16, K = 24, N = 8;
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++)
      for (int bc = 0; bc < 2; bc++) { /* 0: both batched, 1: b 2-d (broadcast) */
        int64_t as[3] = {B, ta ? K : M, ta ? M : K}, bs[3] = {B, tb ? N : K, tb ? K : N};
        t2s_tensor *a = bf16_tensor(3, as, -1.0f, 1.0f, 360, 1);
        t2s_tensor *b = bc ? bf16_tensor(2, bs + 1, -1.0f, 1.0f, 361, 1)
                           : bf16_tensor(3, bs, -1.0f, 1.0f, 361, 1);
        mm_case_args m = {ta, tb};
        char label[96];
        snprintf(label, sizeof label, "matmul trans %d%d %s", ta, tb, bc ? "b broadcast" : "batched");
        op_case c = {label, b_matmul, &m, 2, {a, b}, 0, BF16_TOL, 0};
        run_bf16(cpu, gpu, &c, 3u);
        t2s_test_tensor_free(a), t2s_test_tensor_free(b);
      }
  /* odd sizes: bf16 rows 2-byte aligned (the plan's alignment follows the pointers) */
  int64_t a2[2] = {5, 7}, b2[2] = {7, 9};
  t2s_tensor *a = bf16_tensor(2, a2, -1.0f, 1.0f, 362, 1);
  t2s_tensor *b = bf16_tensor(2, b2, -1.0f, 1.0f, 363, 1);
  mm_case_args m = {0, 0};
  op_case c = {"matmul 2-d odd sizes", b_matmul, &m, 2, {a, b}, 0, BF16_TOL, 0};
  run_bf16(cpu, gpu, &c, 3u);
  t2s_test_tensor_free(a), t2s_test_tensor_free(b);
}

/* ---- batch norm, element-wise: bf16 in, bf16 out, f32 statistics and gradients ------ */

static void bn_cases(t2s_ctx *cpu, t2s_ctx *gpu) {
  int64_t xs[4] = {2, 6, 5, 7}, c = 6;
  const t2s_bn_mode modes[2] = {T2S_BN_TRAIN, T2S_BN_EVAL};
  for (int m = 0; m < 2; m++) {
    /* a channel offset: centring must happen before scaling */
    t2s_tensor *x = bf16_tensor(4, xs, 2.0f, 4.0f, 370, 1);
    t2s_tensor *g = bf16_tensor(1, &c, 0.5f, 1.5f, 371, 1);
    t2s_tensor *b = bf16_tensor(1, &c, -0.5f, 0.5f, 372, 1);
    t2s_tensor *rm = t2s_test_tensor(1, &c, 2.5f, 3.5f, 373, 0);
    t2s_tensor *rv = t2s_test_tensor(1, &c, 0.5f, 1.5f, 374, 0);
    op_case cs = {m ? "batch_norm eval" : "batch_norm train", b_bn, &modes[m], 5,
                  {x, g, b, rm, rv}, 0, BF16_TOL, (1u << 3) | (1u << 4)};
    run_bf16(cpu, gpu, &cs, 1u);
    t2s_test_tensor_free(x), t2s_test_tensor_free(g), t2s_test_tensor_free(b);
    t2s_test_tensor_free(rm), t2s_test_tensor_free(rv);
  }
}

static void elementwise_cases(t2s_ctx *cpu, t2s_ctx *gpu) {
  int64_t s4[4] = {2, 3, 5, 7}, s3[3] = {3, 17, 11};
  for (int d = 0; d < 2; d++) {
    int nd = d ? 3 : 4;
    const int64_t *s = d ? s3 : s4;
    t2s_tensor *a = bf16_tensor(nd, s, -2.0f, 2.0f, 380 + (uint64_t)d, 1);
    t2s_tensor *b = bf16_tensor(nd, s, -2.0f, 2.0f, 390 + (uint64_t)d, 1);
    t2s_tensor *mask = bf16_tensor(nd, s, 0.0f, 2.0f, 400 + (uint64_t)d, 0);
    t2s_f32(a)[0] = 0.0f; /* relu's kink: both backends take dy = 0 there */
    float sc = -1.75f, p = 0.3f;
    char lab[8][64];
    const char *names[] = {"relu", "gelu", "add", "mul", "mul (f32 constant b)", "scale",
                           "dropout"};
    for (int i = 0; i < 7; i++) snprintf(lab[i], sizeof lab[i], "%s %dd", names[i], nd);
    struct { op_case c; unsigned bf16_inputs; } cases[] = {
        {{lab[0], b_relu, NULL, 1, {a}, 0, BF16_TOL, 0}, 1u},
        {{lab[1], b_gelu, NULL, 1, {a}, 0, BF16_TOL, 0}, 1u},
        {{lab[2], b_add, NULL, 2, {a, b}, 0, BF16_TOL, 0}, 3u},
        {{lab[3], b_mul, NULL, 2, {a, b}, 0, BF16_TOL, 0}, 3u},
        {{lab[4], b_mul, NULL, 2, {a, mask}, 0, BF16_TOL, 0}, 1u},
        {{lab[5], b_scale, &sc, 1, {a}, 0, BF16_TOL, 0}, 1u},
        {{lab[6], b_dropout, &p, 1, {a}, 0, BF16_TOL, 0}, 1u},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
      run_bf16(cpu, gpu, &cases[i].c, cases[i].bf16_inputs);
    t2s_test_tensor_free(a), t2s_test_tensor_free(b), t2s_test_tensor_free(mask);
  }
}

/* ---- pooling, resize, concat ------------------------------------------------------- */

static void layout_cases(t2s_ctx *cpu, t2s_ctx *gpu) {
  /* kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, ceil_mode, count_include_pad */
  const t2s_pool2d_args pa[2] = {{3, 3, 2, 2, 1, 1, 0, 1}, {3, 2, 1, 2, 1, 0, 1, 0}};
  int64_t xs[4] = {2, 5, 11, 9};
  t2s_tensor *x = bf16_tensor(4, xs, -2.0f, 2.0f, 410, 1); /* rounding makes ties: first wins */
  for (int i = 0; i < 2; i++) {
    char l1[64], l2[64];
    snprintf(l1, sizeof l1, "max_pool2d args %d", i);
    snprintf(l2, sizeof l2, "avg_pool2d args %d", i);
    op_case mc = {l1, b_maxpool, &pa[i], 1, {x}, 0, BF16_TOL, 0};
    op_case ac = {l2, b_avgpool, &pa[i], 1, {x}, 0, BF16_TOL, 0};
    run_bf16(cpu, gpu, &mc, 1u);
    run_bf16(cpu, gpu, &ac, 1u);
  }
  const int up[3] = {23, 17, 0}, down[3] = {5, 4, 1};
  op_case r1 = {"resize_bilinear up", b_bilinear, up, 1, {x}, 0, BF16_TOL, 0};
  op_case r2 = {"resize_bilinear down, align", b_bilinear, down, 1, {x}, 0, BF16_TOL, 0};
  run_bf16(cpu, gpu, &r1, 1u);
  run_bf16(cpu, gpu, &r2, 1u);
  int64_t ys[4] = {2, 3, 11, 9};
  t2s_tensor *y = bf16_tensor(4, ys, -2.0f, 2.0f, 411, 1);
  const int channels = 1;
  op_case cc = {"concat channels", b_concat, &channels, 2, {x, y}, 0, BF16_TOL, 0};
  run_bf16(cpu, gpu, &cc, 3u);
  t2s_test_tensor_free(x), t2s_test_tensor_free(y);
}

/* ---- norms, softmax, cross-entropy, weighted sum ------------------------------------ */

static void norm_cases(t2s_ctx *cpu, t2s_ctx *gpu) {
  int64_t ts[3] = {2, 7, 64}, c = 64, xs[4] = {2, 19, 5, 6};
  t2s_tensor *t = bf16_tensor(3, ts, 1.0f, 3.0f, 420, 1);
  t2s_tensor *g = bf16_tensor(1, &c, 0.5f, 1.5f, 421, 1);
  t2s_tensor *b = bf16_tensor(1, &c, -0.5f, 0.5f, 422, 1);
  op_case ln = {"layer_norm", b_layer_norm, NULL, 3, {t, g, b}, 0, BF16_TOL, 0};
  run_bf16(cpu, gpu, &ln, 1u);
  t2s_tensor *x = bf16_tensor(4, xs, -3.0f, 3.0f, 423, 1);
  const int dim1 = 1, dim_last = -1;
  op_case s1 = {"softmax channels", b_softmax, &dim1, 1, {x}, 0, BF16_TOL, 0};
  op_case s2 = {"softmax tokens last dim", b_softmax, &dim_last, 1, {t}, 0, BF16_TOL, 0};
  op_case l2 = {"l2_normalize channels", b_l2, &dim1, 1, {x}, 0, BF16_TOL, 0};
  run_bf16(cpu, gpu, &s1, 1u);
  run_bf16(cpu, gpu, &s2, 1u);
  run_bf16(cpu, gpu, &l2, 1u);
  t2s_tensor *r = t2s_test_tensor(4, xs, -1.0f, 1.0f, 424, 0);
  op_case ws = {"weighted_sum (f32 scalar out)", b_wsum, NULL, 2, {x, r}, 0, BF16_TOL, 0};
  run_bf16_to_f32(cpu, gpu, &ws, 1u);
  t2s_test_tensor_free(t), t2s_test_tensor_free(g), t2s_test_tensor_free(b);
  t2s_test_tensor_free(x), t2s_test_tensor_free(r);
}

static void ce_cases(t2s_ctx *cpu, t2s_ctx *gpu) {
  int64_t zs[4] = {2, 19, 9, 8}, ls[3] = {2, 9, 8}, c = 19, n = 2 * 9 * 8;
  uint8_t *lab = malloc((size_t)n);
  for (int64_t k = 0; k < n; k++) lab[k] = k % 7 == 3 ? 255 : (uint8_t)((k * 13 + 5) % c);
  t2s_tensor *z = bf16_tensor(4, zs, -4.0f, 4.0f, 430, 1);
  t2s_tensor *l = t2s_test_tensor_u8(3, ls, lab);
  t2s_tensor *pw = t2s_test_tensor(3, ls, 0.0f, 2.0f, 431, 0);
  t2s_tensor *cw = t2s_test_tensor(1, &c, 0.2f, 3.0f, 432, 0);
  t2s_ce_args a = {255, T2S_CE_MEAN_WEIGHT, 0.0};
  op_case oc = {"cross_entropy bf16 logits", b_ce, &a, 4, {z, l, pw, cw}, 0, BF16_TOL, 0};
  run_bf16_to_f32(cpu, gpu, &oc, 1u);
  t2s_test_tensor_free(z), t2s_test_tensor_free(l), t2s_test_tensor_free(pw);
  t2s_test_tensor_free(cw);
  free(lab);
}

/* to_f32, where the network's bf16 outputs enter the f32 losses: widening is exact and
 * the f32 gradient passes through, so the tolerance is 0 (4-d NHWC and 3-d). */
static void widen_cases(t2s_ctx *cpu, t2s_ctx *gpu) {
  int64_t s4[4] = {2, 5, 6, 7}, s3[3] = {3, 17, 11};
  for (int d = 0; d < 2; d++) {
    t2s_tensor *a = bf16_tensor(d ? 3 : 4, d ? s3 : s4, -3.0f, 3.0f, 440 + (uint64_t)d, 1);
    op_case oc = {d ? "to_f32 3d" : "to_f32 4d", b_to_f32, NULL, 1, {a}, 0, 0.0, 0};
    run_bf16_to_f32(cpu, gpu, &oc, 1u);
    t2s_test_tensor_free(a);
  }
}

/* ---- attention, token layout, drop path ---------------------------------------------- */

static void mit_cases(t2s_ctx *cpu, t2s_ctx *gpu) {
  int64_t qs[3] = {2, 24, 32}, kvs[3] = {2, 6, 64}, xs[4] = {2, 32, 4, 6};
  t2s_tensor *q = bf16_tensor(3, qs, -1.0f, 1.0f, 440, 1);
  t2s_tensor *kv = bf16_tensor(3, kvs, -1.0f, 1.0f, 441, 1);
  const int heads = 2, hw[2] = {4, 6};
  op_case at = {"attention", b_attention, &heads, 2, {q, kv}, 0, BF16_TOL, 0};
  run_bf16(cpu, gpu, &at, 3u);
  t2s_tensor *x = bf16_tensor(4, xs, -1.0f, 1.0f, 442, 1);
  op_case tt = {"nchw_to_tokens", b_to_tokens, NULL, 1, {x}, 0, BF16_TOL, 0};
  op_case tn = {"tokens_to_nchw", b_to_nchw, hw, 1, {q}, 0, BF16_TOL, 0};
  run_bf16(cpu, gpu, &tt, 1u);
  run_bf16(cpu, gpu, &tn, 1u);
  const float p = 0.5f;
  op_case dp = {"drop_path", b_drop_path, &p, 1, {x}, 0, BF16_TOL, 0};
  run_bf16(cpu, gpu, &dp, 1u);
  t2s_test_tensor_free(q), t2s_test_tensor_free(kv), t2s_test_tensor_free(x);
}

/* ---- the public calls: output dtypes and the refusal of ops without a bf16 path ------ */

/* A zeroed tensor in the GPU pass arena. */
static t2s_tensor *gpu_zeros(t2s_ctx *gpu, t2s_dtype dtype, int ndim, const int64_t *shape) {
  t2s_tensor *t = t2s_tensor_new(gpu, dtype, ndim, shape);
  if (t != NULL &&
      t2s_device_zero(T2S_DEV_CUDA, t->data, (size_t)t2s_numel(t) * t2s_dtype_size(dtype),
                      &gpu->err) != T2S_OK)
    return NULL;
  return t;
}

/* An op outside the core table (as the fused losses of losses/ are): its slots read
 * float, so the engine must refuse a bf16 input before they run. */
static int probe_ran;
static t2s_status probe_forward(t2s_ctx *ctx, t2s_node *node) {
  (void)ctx, (void)node;
  probe_ran = 1;
  return T2S_OK;
}
static t2s_status probe_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  (void)ctx, (void)node, (void)beta;
  return T2S_OK;
}
static const t2s_op probe_op = T2S_OP_DESCRIPTOR("probe_loss", probe_forward, probe_backward,
                                                 probe_forward, probe_backward);

static void public_calls(t2s_ctx *cpu, t2s_ctx *gpu) {
  int64_t xs[4] = {1, 4, 6, 6}, ws[4] = {8, 4, 3, 3}, ts[3] = {1, 6, 8}, c8 = 8;
  t2s_conv2d_args ca = t2s_conv_args(1, 1, 1);
  t2s_ctx_end_pass(gpu);
  t2s_tensor *x = gpu_zeros(gpu, T2S_F32, 4, xs), *w = gpu_zeros(gpu, T2S_F32, 4, ws);
  t2s_tensor *y = t2s_conv2d(gpu, x, w, NULL, &ca);
  t2s_tensor *r = t2s_relu(gpu, y);
  CHECK_MSG(r != NULL, "bf16 conv2d -> relu: %s", gpu->err.msg);
  if (r != NULL) {
    CHECK_MSG(y->dtype == T2S_BF16 && r->dtype == T2S_BF16,
              "bf16 mode: conv2d gave %s and relu %s (want bfloat16 both)",
              t2s_dtype_name(y->dtype), t2s_dtype_name(r->dtype));
  }
  /* tokens through layer_norm stay bf16; the loss's f32 output does not */
  t2s_tensor *tok = gpu_zeros(gpu, T2S_BF16, 3, ts);
  t2s_tensor *g = gpu_zeros(gpu, T2S_F32, 1, &c8), *b = gpu_zeros(gpu, T2S_F32, 1, &c8);
  t2s_tensor *ln = tok && g && b ? t2s_layer_norm(gpu, tok, g, b, 1e-5f) : NULL;
  CHECK_MSG(ln != NULL && ln->dtype == T2S_BF16, "bf16 layer_norm: %s", gpu->err.msg);
  /* an op without a bf16 path: a clear refusal naming it, and its slot never runs */
  int64_t one = 1;
  t2s_tensor *in[1] = {ln};
  t2s_tensor *probe_out = ln ? gpu_zeros(gpu, T2S_F32, 1, &one) : NULL;
  probe_ran = 0;
  if (probe_out != NULL) {
    CHECK(t2s_op_apply_desc(gpu, &probe_op, in, 1, probe_out, NULL, 0) == NULL);
    CHECK(gpu->err.status == T2S_ERR_UNSUPPORTED && !probe_ran);
    CHECK_MSG(strstr(gpu->err.msg, "'probe_loss'") && strstr(gpu->err.msg, "precision"),
              "the refusal should name the op and the precision key: %s", gpu->err.msg);
  }
  t2s_error_clear(&gpu->err);
  t2s_ctx_end_pass(gpu);

  /* fp32 again: the same calls make f32 outputs */
  CHECK_MSG(t2s_cuda_set_precision(gpu, T2S_PRECISION_FP32) == T2S_OK, "fp32: %s", gpu->err.msg);
  x = gpu_zeros(gpu, T2S_F32, 4, xs), w = gpu_zeros(gpu, T2S_F32, 4, ws);
  y = t2s_conv2d(gpu, x, w, NULL, &ca);
  CHECK_MSG(y != NULL && y->dtype == T2S_F32, "fp32 conv2d: %s", gpu->err.msg);
  t2s_error_clear(&gpu->err);
  t2s_ctx_end_pass(gpu);
  CHECK_MSG(t2s_cuda_set_precision(gpu, T2S_PRECISION_BF16) == T2S_OK, "bf16: %s", gpu->err.msg);

  /* a CPU context refuses the setting, naming what to use */
  CHECK(t2s_cuda_set_precision(cpu, T2S_PRECISION_BF16) != T2S_OK);
  CHECK_MSG(strstr(cpu->err.msg, "precision") && strstr(cpu->err.msg, "fp32"),
            "CPU refusal: %s", cpu->err.msg);
  CHECK(cpu->act_dtype == T2S_F32);
  t2s_error_clear(&cpu->err);
  printf("done public calls\n");
}

int main(void) {
  if (!t2s_cuda_built()) {
    printf("test_cuda_bf16: skipped: this build has no CUDA backend (configure with -DT2S_CUDA=ON)\n");
    return 77;
  }
  if (t2s_cuda_device_count() == 0) {
    printf("test_cuda_bf16: skipped: no CUDA device is visible\n");
    return 77;
  }
  t2s_error err = {0};
  t2s_ctx *cpu = t2s_ctx_create(T2S_DEV_CPU, 64 << 20, &err);
  t2s_ctx *gpu = cpu ? t2s_ctx_create(T2S_DEV_CUDA, 64 << 20, &err) : NULL;
  if (gpu == NULL) {
    fprintf(stderr, "test_cuda_bf16: creating the contexts: %s\n", err.msg);
    t2s_ctx_destroy(cpu);
    return 1;
  }
  cpu->seed = gpu->seed = 1234;
  if (t2s_cuda_set_precision(gpu, T2S_PRECISION_BF16) != T2S_OK) {
    fprintf(stderr, "test_cuda_bf16: precision bf16: %s\n", gpu->err.msg);
    t2s_ctx_destroy(gpu), t2s_ctx_destroy(cpu);
    return 1;
  }
  conv_cases(cpu, gpu);
  linear_cases(cpu, gpu);
  matmul_cases(cpu, gpu);
  bn_cases(cpu, gpu);
  elementwise_cases(cpu, gpu);
  layout_cases(cpu, gpu);
  norm_cases(cpu, gpu);
  ce_cases(cpu, gpu);
  widen_cases(cpu, gpu);
  mit_cases(cpu, gpu);
  public_calls(cpu, gpu);
  t2s_ctx_destroy(gpu);
  t2s_ctx_destroy(cpu);
  return t2s_test_finish("test_cuda_bf16");
}
