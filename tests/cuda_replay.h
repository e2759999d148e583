/* The replay harness of the CUDA-against-CPU op tests, shared by test_cuda_ops.c,
 * test_cuda_mit_ops.c and test_cuda_losses.c (static helpers: one include per test).
 *
 * For each case the op runs on the CPU through its public function (so the node, its
 * args and saved state are the CPU's own), then the same node is replayed on the CUDA
 * slot of its descriptor (node->desc: core ops and the fused ops of losses/ alike) with
 * device copies of the inputs: 4-d activations transposed to NHWC at the edge,
 * parameters in their PyTorch layout, everything else byte for byte. The forward output
 * and every input gradient are compared in both backward modes of core/engine.h: write
 * (beta 0, the gradient buffer pre-filled with NaN, which must never be read) and
 * accumulate (beta 1, pre-filled with random values that must be added to). Every
 * device buffer carries canary words before and after it, checked after each op, and
 * the inputs and the output gradient must come back unchanged.
 *
 * The code is test_cuda_ops.c's harness with the dispatch through node->desc.
 *
 * bf16 cases (test_cuda_bf16.c, run_case_dtypes): the chosen inputs are uploaded as bf16
 * and the CUDA output is bf16, read back and widened; the test gives the CPU reference
 * bf16-representable inputs, and dy is rounded to bf16 too, so the two sides see the
 * same numbers and differ only by the GPU's bf16 rounding of its results. */
#pragma once
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/device.h"
#include "tests/harness.h"

#define GUARD 64                 /* canary floats on each side of a device buffer */
#define CANARY 0xDEADBEEFu
#define MAX_CASE_INPUTS 6


/* ---- host helpers ---------------------------------------------------------- */

static float *host_random(int64_t n, float lo, float hi, uint64_t seed) {
  float *v = malloc((size_t)(n ? n : 1) * sizeof(float));
  t2s_rng_key key = t2s_rng_key_make(seed, 31, 0, 0);
  for (int64_t i = 0; i < n; i++) v[i] = lo + (hi - lo) * t2s_rng_uniform(key, (uint64_t)i);
  return v;
}

/* (N, C, H, W) <-> (N, H, W, C). to_nhwc = 0 goes back. */
static void transpose4(const float *src, float *dst, const int64_t *s, int to_nhwc) {
  int64_t n = s[0], c = s[1], hw = s[2] * s[3];
  for (int64_t b = 0; b < n; b++)
    for (int64_t ch = 0; ch < c; ch++)
      for (int64_t p = 0; p < hw; p++) {
        int64_t nchw = (b * c + ch) * hw + p, nhwc = (b * hw + p) * c + ch;
        if (to_nhwc) dst[nhwc] = src[nchw];
        else dst[nchw] = src[nhwc];
      }
}

/* Relative error, measured against max(|ref|, rms(ref)) so that elements near zero
 * (cancellation in a sum) are judged on the tensor's own scale. Returns the worst. */
static double worst_rel_error(const float *got, const float *ref, int64_t n, int64_t *at) {
  double ss = 0.0;
  for (int64_t i = 0; i < n; i++) ss += (double)ref[i] * ref[i];
  double rms = n ? sqrt(ss / (double)n) : 0.0;
  if (rms == 0.0) rms = 1e-30;
  double worst = 0.0;
  *at = -1;
  for (int64_t i = 0; i < n; i++) {
    double d = fabs((double)got[i] - ref[i]) / fmax(fabs(ref[i]), rms);
    if (!(d <= worst)) { /* NaN counts as the worst */
      worst = isnan(d) ? INFINITY : d;
      *at = i;
    }
  }
  return worst;
}

static void expect_close(const char *label, const char *what, const float *got, const float *ref,
                         int64_t n, double tol) {
  int64_t at;
  double e = worst_rel_error(got, ref, n, &at);
  CHECK_MSG(e <= tol, "%s: %s: relative error %.3g at element %lld (cuda %.9g, cpu %.9g), "
            "tolerance %.1g", label, what, e, (long long)at, at >= 0 ? got[at] : 0.0,
            at >= 0 ? ref[at] : 0.0, tol);
}

/* ---- bf16 on the host (round to nearest even, as __float2bfloat16_rn) -------------- */

static inline uint16_t bf16_bits(float v) {
  uint32_t u;
  memcpy(&u, &v, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
static inline float bf16_value(uint16_t b) {
  uint32_t u = (uint32_t)b << 16;
  float v;
  memcpy(&v, &u, sizeof v);
  return v;
}
static inline float bf16_round(float v) { return bf16_value(bf16_bits(v)); }
static inline void bf16_round_all(float *v, int64_t n) {
  for (int64_t i = 0; i < n; i++) v[i] = bf16_round(v[i]);
}
/* Float slots that n bf16 values occupy in a device buffer. */
static inline int64_t bf16_slots(int64_t n) { return (n + 1) / 2; }
/* n values packed as bf16 into a fresh array of bf16_slots(n) floats (device bytes). */
static inline float *bf16_pack(const float *v, int64_t n) {
  int64_t slots = bf16_slots(n);
  float *d = calloc((size_t)(slots ? slots : 1), sizeof(float));
  uint16_t *h = (uint16_t *)d;
  for (int64_t i = 0; i < n; i++) h[i] = bf16_bits(v[i]);
  return d;
}
static inline void bf16_unpack(const float *d, float *v, int64_t n) {
  const uint16_t *h = (const uint16_t *)d;
  for (int64_t i = 0; i < n; i++) v[i] = bf16_value(h[i]);
}

/* Which tensors of a case live as bf16 on the device (NULL: all f32). */
typedef struct replay_dtypes {
  unsigned bf16_mask;  /* inputs uploaded as bf16 (bit k: input k) */
  int bf16_out;        /* the CUDA output is bf16 */
} replay_dtypes;
static inline int input_bf16(const replay_dtypes *dt, int k) {
  return dt != NULL && ((dt->bf16_mask >> k) & 1u);
}

/* ---- guarded device buffers -------------------------------------------------- */

typedef struct dbuf {
  float *base;   /* GUARD + n + GUARD floats on the device */
  int64_t n;
} dbuf;

static float *dbuf_data(const dbuf *b) { return b->base + GUARD; }

/* Uploads n values (or NaN when values is NULL) between canaries. */
static int dbuf_make(dbuf *b, const float *values, int64_t n) {
  t2s_error err = {0};
  size_t total = (size_t)(n + 2 * GUARD);
  float *host = malloc(total * sizeof(float));
  uint32_t canary = CANARY;
  for (size_t i = 0; i < total; i++) memcpy(&host[i], &canary, sizeof canary);
  for (int64_t i = 0; i < n; i++) host[GUARD + i] = values ? values[i] : NAN;
  b->n = n;
  b->base = t2s_device_malloc(T2S_DEV_CUDA, total * sizeof(float), &err);
  int ok = b->base != NULL &&
           t2s_device_copy(T2S_DEV_CUDA, b->base, T2S_DEV_CPU, host, total * sizeof(float), &err) ==
               T2S_OK;
  free(host);
  CHECK_MSG(ok, "device buffer of %lld floats: %s", (long long)n, err.msg);
  return ok;
}

/* Downloads the values into out (n floats) and checks both canary regions. */
static int dbuf_read(const dbuf *b, float *out, const char *label, const char *what) {
  t2s_error err = {0};
  size_t total = (size_t)(b->n + 2 * GUARD);
  float *host = malloc(total * sizeof(float));
  int ok = t2s_device_copy(T2S_DEV_CPU, host, T2S_DEV_CUDA, b->base, total * sizeof(float), &err) ==
           T2S_OK;
  CHECK_MSG(ok, "%s: reading %s back: %s", label, what, err.msg);
  if (ok) {
    int bad = 0;
    for (size_t i = 0; i < total; i++) {
      if (i == GUARD) i += (size_t)b->n;
      if (i >= total) break;
      uint32_t v;
      memcpy(&v, &host[i], sizeof v);
      bad += v != CANARY;
    }
    CHECK_MSG(bad == 0, "%s: %s: %d canary word(s) around the device buffer were overwritten",
              label, what, bad);
    memcpy(out, host + GUARD, (size_t)b->n * sizeof(float));
    ok = bad == 0;
  }
  free(host);
  return ok;
}

static void dbuf_free(dbuf *b) {
  t2s_device_free(T2S_DEV_CUDA, b->base);
  b->base = NULL;
}

/* ---- one op case: CPU node replayed on the CUDA slot --------------------------- */

typedef t2s_tensor *(*case_build)(t2s_ctx *ctx, t2s_tensor **in, const void *user);

typedef struct op_case {
  const char *label;
  case_build build;
  const void *user;
  int n_in;
  t2s_tensor *in[MAX_CASE_INPUTS];  /* host tensors (NULL allowed: optional input) */
  unsigned param_mask;               /* inputs kept in PyTorch layout (conv weight, bias) */
  double tol;
  unsigned mutable_mask;             /* inputs the op may update (running statistics) */
} op_case;

/* A 4-d activation is stored NHWC on the device; everything else as on the host. */
static int is_activation(const op_case *c, int k, const t2s_tensor *t) {
  return t->ndim == 4 && t->dtype == T2S_F32 && !(k >= 0 && (c->param_mask >> k) & 1u);
}

/* Floats a tensor's bytes occupy in a device buffer (labels are bytes). */
static int64_t float_slots(const t2s_tensor *t) {
  return ((int64_t)t2s_dtype_size(t->dtype) * t2s_numel(t) + 3) / 4;
}

/* Host values in device order (a fresh array); non-float tensors are copied as bytes. */
static float *to_device_order(const float *v, const t2s_tensor *t, int act) {
  int64_t n = t2s_numel(t);
  if (t->dtype != T2S_F32) {
    int64_t slots = float_slots(t);
    float *d = calloc((size_t)(slots ? slots : 1), sizeof(float));
    memcpy(d, v, (size_t)n * t2s_dtype_size(t->dtype));
    return d;
  }
  float *d = malloc((size_t)(n ? n : 1) * sizeof(float));
  if (act) transpose4(v, d, t->shape, 1);
  else memcpy(d, v, (size_t)n * sizeof(float));
  return d;
}
static void from_device_order(const float *d, float *v, const t2s_tensor *t, int act) {
  if (act) transpose4(d, v, t->shape, 0);
  else memcpy(v, d, (size_t)t2s_numel(t) * sizeof(float));
}

/* Input k in device order and dtype (bf16 packed when dt says so); *slots gets its size
 * in floats. A fresh array. */
static float *input_device_bytes(const op_case *c, int k, const replay_dtypes *dt, int64_t *slots) {
  const t2s_tensor *t = c->in[k];
  float *v = to_device_order(t2s_f32(t), t, is_activation(c, k, t));
  *slots = float_slots(t);
  if (!input_bf16(dt, k)) return v;
  float *packed = bf16_pack(v, t2s_numel(t));
  *slots = bf16_slots(t2s_numel(t));
  free(v);
  return packed;
}

/* A device tensor header like t, whose data lives in buf. */
static void device_tensor(t2s_tensor *dt, const t2s_tensor *t, const dbuf *buf) {
  t2s_tensor_init(dt, t->dtype, T2S_DEV_CUDA, t->ndim, t->shape, dbuf_data(buf));
  dt->layout = t->ndim == 4 ? T2S_LAYOUT_NHWC : T2S_LAYOUT_NCHW;
  dt->requires_grad = t->requires_grad;
  dt->name = t->name;
}

typedef struct replay {
  t2s_node node;                         /* the CUDA copy of the CPU node */
  t2s_tensor din[MAX_CASE_INPUTS], dout;
  dbuf xin[MAX_CASE_INPUTS], yout, dy, dgrad[MAX_CASE_INPUTS];
  float *ref_grad[MAX_CASE_INPUTS];      /* CPU gradients, write mode (logical order) */
  float *init[MAX_CASE_INPUTS];          /* accumulate-mode starting values */
} replay;

/* The CPU reference: forward through the public op, backward through the CPU slot
 * (write mode). Returns the CPU node, or NULL. */
static t2s_node *cpu_reference(t2s_ctx *cpu, op_case *c, const float *dy, replay *r) {
  t2s_ctx_end_pass(cpu);
  t2s_tensor *out = c->build(cpu, c->in, c->user);
  if (out == NULL || cpu->tape_len == 0 || cpu->tape[cpu->tape_len - 1]->out != out) {
    CHECK_MSG(0, "%s: CPU reference did not run/record: %s", c->label, cpu->err.msg);
    return NULL;
  }
  t2s_node *node = cpu->tape[cpu->tape_len - 1];
  out->grad = (float *)dy;
  float beta[T2S_MAX_INPUTS] = {0};
  for (int k = 0; k < c->n_in; k++)
    if (t2s_wants_grad(c->in[k])) {
      int64_t n = t2s_numel(c->in[k]);
      r->ref_grad[k] = malloc((size_t)n * sizeof(float));
      r->init[k] = host_random(n, -1.0f, 1.0f, 900 + (uint64_t)k);
      c->in[k]->grad = r->ref_grad[k];
    }
  t2s_status st = node->desc->backward[T2S_DEV_CPU](cpu, node, beta);
  CHECK_MSG(st == T2S_OK, "%s: CPU backward: %s", c->label, cpu->err.msg);
  for (int k = 0; k < c->n_in; k++)
    if (c->in[k]) c->in[k]->grad = NULL;
  return st == T2S_OK ? node : NULL;
}

/* Runs the CUDA backward in one mode and compares every input gradient. */
static void cuda_backward_mode(t2s_ctx *gpu, op_case *c, replay *r, int accumulate) {
  const char *mode = accumulate ? "backward (accumulate)" : "backward (write)";
  float beta[T2S_MAX_INPUTS] = {0};
  for (int k = 0; k < c->n_in; k++) {
    if (!r->ref_grad[k]) continue;
    float *start = accumulate ? to_device_order(r->init[k], c->in[k], is_activation(c, k, c->in[k]))
                              : NULL; /* NaN: write mode must not read it */
    dbuf_make(&r->dgrad[k], start, t2s_numel(c->in[k]));
    free(start);
    r->din[k].grad = dbuf_data(&r->dgrad[k]);
    beta[k] = accumulate ? 1.0f : 0.0f;
  }
  t2s_status st = r->node.desc->backward[T2S_DEV_CUDA](gpu, &r->node, beta);
  CHECK_MSG(st == T2S_OK, "%s: cuda %s: %s", c->label, mode, gpu->err.msg);
  for (int k = 0; k < c->n_in && st == T2S_OK; k++) {
    if (!r->ref_grad[k]) continue;
    int64_t n = t2s_numel(c->in[k]);
    float *dev = malloc((size_t)n * sizeof(float)), *got = malloc((size_t)n * sizeof(float));
    float *want = malloc((size_t)n * sizeof(float));
    char what[64];
    snprintf(what, sizeof what, "%s of input %d", mode, k);
    if (dbuf_read(&r->dgrad[k], dev, c->label, what)) {
      from_device_order(dev, got, c->in[k], is_activation(c, k, c->in[k]));
      for (int64_t i = 0; i < n; i++) want[i] = accumulate ? r->init[k][i] + r->ref_grad[k][i] : r->ref_grad[k][i];
      expect_close(c->label, what, got, want, n, c->tol);
    }
    free(dev), free(got), free(want);
  }
  for (int k = 0; k < c->n_in; k++)
    if (r->dgrad[k].base) dbuf_free(&r->dgrad[k]);
  gpu->err.status = T2S_OK; /* a failure is reported above; let later cases run */
}

/* Inputs and dy must come back untouched (an op that writes its input corrupts a
 * saved activation of another op). */
static void check_inputs_intact(op_case *c, replay *r, const float *dy_dev, const replay_dtypes *dt) {
  for (int k = 0; k < c->n_in; k++) {
    if (!c->in[k] || (c->mutable_mask >> k) & 1u) continue;
    int64_t n;
    float *want = input_device_bytes(c, k, dt, &n);
    float *dev = malloc((size_t)(n ? n : 1) * sizeof(float));
    char what[32];
    snprintf(what, sizeof what, "input %d", k);
    if (dbuf_read(&r->xin[k], dev, c->label, what))
      CHECK_MSG(memcmp(dev, want, (size_t)n * sizeof(float)) == 0, "%s: the op modified input %d",
                c->label, k);
    free(dev), free(want);
  }
  int64_t n = r->dy.n;
  float *dev = malloc((size_t)(n ? n : 1) * sizeof(float));
  if (dbuf_read(&r->dy, dev, c->label, "output gradient"))
    CHECK_MSG(memcmp(dev, dy_dev, (size_t)n * sizeof(float)) == 0,
              "%s: backward modified the output gradient", c->label);
  free(dev);
}

static void run_case_dtypes(t2s_ctx *cpu, t2s_ctx *gpu, op_case *c, const replay_dtypes *dt) {
  replay r;
  memset(&r, 0, sizeof r);
  /* the output shape is known only after a CPU forward: make dy after it */
  t2s_ctx_end_pass(cpu);
  int prev = t2s_set_grad_enabled(cpu, 0);
  t2s_tensor *probe = c->build(cpu, c->in, c->user);
  t2s_set_grad_enabled(cpu, prev);
  if (probe == NULL) {
    CHECK_MSG(0, "%s: CPU forward failed: %s", c->label, cpu->err.msg);
    cpu->err.status = T2S_OK;
    return;
  }
  int64_t out_n = t2s_numel(probe);
  float *dy = host_random(out_n, -1.0f, 1.0f, 4242);
  int out16 = dt != NULL && dt->bf16_out;
  if (out16) bf16_round_all(dy, out_n); /* the GPU casts dy to bf16 for its GEMMs */
  t2s_node *node = cpu_reference(cpu, c, dy, &r);
  if (node == NULL) {
    cpu->err.status = T2S_OK;
    free(dy);
    return;
  }
  const t2s_tensor *out = node->out;
  int out_act = is_activation(c, -1, out);

  r.node = *node;
  r.node.saved = NULL;
  r.node.recording = 1;
  for (int k = 0; k < c->n_in; k++) {
    r.node.in[k] = NULL;
    if (!c->in[k]) continue;
    int64_t slots;
    float *v = input_device_bytes(c, k, dt, &slots);
    dbuf_make(&r.xin[k], v, slots);
    free(v);
    device_tensor(&r.din[k], c->in[k], &r.xin[k]);
    if (input_bf16(dt, k)) r.din[k].dtype = T2S_BF16;
    if (!is_activation(c, k, c->in[k])) r.din[k].layout = T2S_LAYOUT_NCHW;
    r.node.in[k] = &r.din[k];
  }
  dbuf_make(&r.yout, NULL, out16 ? bf16_slots(out_n) : out_n);
  device_tensor(&r.dout, out, &r.yout);
  if (out16) r.dout.dtype = T2S_BF16;
  r.node.out = &r.dout;

  /* forward */
  t2s_status st = node->desc->forward[T2S_DEV_CUDA](gpu, &r.node);
  CHECK_MSG(st == T2S_OK, "%s: cuda forward: %s", c->label, gpu->err.msg);
  float *dev = malloc((size_t)out_n * sizeof(float)), *got = malloc((size_t)out_n * sizeof(float));
  if (st == T2S_OK && dbuf_read(&r.yout, dev, c->label, "forward output")) {
    if (out16) {
      float *wide = malloc((size_t)out_n * sizeof(float));
      bf16_unpack(dev, wide, out_n);
      memcpy(dev, wide, (size_t)out_n * sizeof(float));
      free(wide);
    }
    from_device_order(dev, got, out, out_act);
    expect_close(c->label, "forward", got, t2s_f32(out), out_n, c->tol);
  }
  gpu->err.status = T2S_OK;

  /* backward, both modes */
  float *dy_dev = to_device_order(dy, out, out_act);
  dbuf_make(&r.dy, dy_dev, out_n);
  r.dout.grad = dbuf_data(&r.dy);
  if (st == T2S_OK) {
    cuda_backward_mode(gpu, c, &r, 0);
    cuda_backward_mode(gpu, c, &r, 1);
  }
  check_inputs_intact(c, &r, dy_dev, dt);

  for (int k = 0; k < c->n_in; k++) {
    if (r.xin[k].base) dbuf_free(&r.xin[k]);
    free(r.ref_grad[k]);
    free(r.init[k]);
  }
  dbuf_free(&r.yout);
  dbuf_free(&r.dy);
  free(dy), free(dy_dev), free(dev), free(got);
  t2s_ctx_end_pass(cpu);
  t2s_ctx_end_pass(gpu);
  printf("done %s\n", c->label);
}

static inline void run_case(t2s_ctx *cpu, t2s_ctx *gpu, op_case *c) {
  run_case_dtypes(cpu, gpu, c, NULL);
}
