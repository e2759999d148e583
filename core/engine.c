#include "core/engine.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/device.h"

/* ---- the record of the pass arena's allocations ----
 * Every t2s_tensor_new and t2s_scratch of a pass gets a record, in order. Liveness works
 * on records: an op's forward owns the records made inside it (its saved state, freed
 * after its backward, or at once when nothing is taped); a scope frees the tensor records
 * made inside it that nothing needs; backward counts, per record, the taped nodes whose
 * backward still reads it. */
typedef struct live_record {
  void *data;
  size_t bytes;
  t2s_tensor *t;      /* the tensor header, or NULL for raw scratch */
  int32_t bwd_uses;   /* taped nodes whose backward has yet to read it */
  uint32_t keep_stamp, read_stamp;  /* scope_end's marks */
  uint8_t alive;      /* not given back yet */
  uint8_t owned;      /* saved state of a taped node (freed after its backward) */
  uint8_t internal;   /* made in a finished scope and not kept: only backward reads it, and
                       * its gradient is dead once its producer's backward has run */
} live_record;

struct t2s_liveness {
  live_record *r;
  uint32_t n, cap;
  uint32_t stamp;
  uint64_t freed;
};

static uint32_t record_add(t2s_ctx *ctx, void *data, size_t bytes, t2s_tensor *t) {
  t2s_liveness *lv = ctx->live;
  if (lv->n == lv->cap) {
    uint32_t cap = lv->cap ? lv->cap * 2 : 4096;
    live_record *grown = realloc(lv->r, (size_t)cap * sizeof *grown);
    if (grown == NULL) {
      t2s_ctx_fail(ctx, T2S_ERR_NOMEM, "out of host memory growing the pass allocation record");
      return 0;
    }
    lv->r = grown;
    lv->cap = cap;
  }
  lv->r[lv->n] = (live_record){data, bytes, t, 0, 0, 0, 1, 0, 0};
  return ++lv->n; /* 1-based: 0 means "not a pass allocation" */
}

static void grad_free(t2s_ctx *ctx, t2s_tensor *t) {
  if (t->grad == NULL) return;
  t2s_arena_free(ctx->pass, t->grad, (size_t)t2s_numel(t) * sizeof(float));
  t->grad = NULL;
}

/* Gives back a record's data. Its gradient is another matter: during backward it still
 * flows after the last read of the data (freed after the producer's backward); a scope
 * that frees a tensor frees its gradient too (with_grad), since no backward to come
 * reaches a tensor that is neither kept nor read. */
static void record_free(t2s_ctx *ctx, live_record *rec, int with_grad) {
  if (with_grad && rec->t != NULL) grad_free(ctx, rec->t);
  if (!rec->alive) return;
  rec->alive = 0;
  t2s_arena_free(ctx->pass, rec->data, rec->bytes);
  ctx->live->freed++;
}

/* Frees records [first, n) and forgets them (they were made last: temporaries). */
static void records_release_from(t2s_ctx *ctx, uint32_t first) {
  t2s_liveness *lv = ctx->live;
  for (uint32_t i = lv->n; i > first; i--) record_free(ctx, &lv->r[i - 1], 1);
  if (first < lv->n) lv->n = first;
}

static live_record *record_of(t2s_ctx *ctx, const t2s_tensor *t) {
  if (t == NULL || t->live_id == 0 || t->live_id > ctx->live->n) return NULL;
  live_record *rec = &ctx->live->r[t->live_id - 1];
  return rec->data == t->data ? rec : NULL; /* a stale id of a forgotten temporary */
}

uint64_t t2s_liveness_freed(const t2s_ctx *ctx) { return ctx->live->freed; }

/* The tensors of a taped node whose data its backward reads. */
static uint32_t node_reads(const t2s_node *node) {
  uint32_t m = node->op < T2S_OP_COUNT ? t2s_op_bwd_reads[node->op] : node->desc->bwd_reads;
  return (m & T2S_READS_DECLARED) ? m : ~0u;
}

static int node_read_tensors(const t2s_node *node, t2s_tensor **out) {
  uint32_t m = node_reads(node);
  int k = 0;
  for (int i = 0; i < node->n_in; i++)
    if ((m & T2S_READS_IN(i)) && node->in[i] != NULL) out[k++] = node->in[i];
  if (m & T2S_READS_OUT) out[k++] = node->out;
  return k;
}

t2s_ctx *t2s_ctx_create(t2s_device device, size_t pass_block_bytes, t2s_error *err) {
  t2s_ctx *ctx = calloc(1, sizeof *ctx);
  if (ctx == NULL) {
    t2s_error_set(err, T2S_ERR_NOMEM, "out of host memory creating the execution context");
    return NULL;
  }
  ctx->device = device;
  ctx->grad_enabled = 1;
  ctx->training = 1;
  if (t2s_device_ctx_init(ctx, err) != T2S_OK) {
    free(ctx);
    return NULL;
  }
  ctx->pass = t2s_arena_create(device, pass_block_bytes, "pass", err);
  ctx->meta = t2s_arena_create(T2S_DEV_CPU, (size_t)1 << 20, "pass bookkeeping", err);
  ctx->live = calloc(1, sizeof *ctx->live);
  if (ctx->live == NULL) t2s_error_set(err, T2S_ERR_NOMEM, "out of host memory creating the execution context");
  if (ctx->pass == NULL || ctx->meta == NULL || ctx->live == NULL) {
    t2s_ctx_destroy(ctx);
    return NULL;
  }
  return ctx;
}

void t2s_ctx_destroy(t2s_ctx *ctx) {
  if (ctx == NULL) return;
  t2s_arena_destroy(ctx->pass);
  t2s_arena_destroy(ctx->meta);
  t2s_device_ctx_destroy(ctx);
  if (ctx->live) free(ctx->live->r);
  free(ctx->live);
  free(ctx->tape);
  free(ctx);
}

void t2s_ctx_end_pass(t2s_ctx *ctx) {
  ctx->tape_len = 0;
  ctx->rng_calls = 0;
  ctx->live->n = 0;
  t2s_arena_reset(ctx->pass);
  t2s_arena_reset(ctx->meta);
}

int t2s_set_grad_enabled(t2s_ctx *ctx, int enabled) {
  int prev = ctx->grad_enabled;
  ctx->grad_enabled = enabled;
  return prev;
}

void *t2s_ctx_fail(t2s_ctx *ctx, t2s_status status, const char *fmt, ...) {
  if (ctx->err.status == T2S_OK) {
    ctx->err.status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->err.msg, sizeof ctx->err.msg, fmt, ap);
    va_end(ap);
  }
  return NULL;
}

void *t2s_scratch(t2s_ctx *ctx, size_t bytes) {
  void *p = t2s_arena_alloc(ctx->pass, bytes, &ctx->err);
  if (p != NULL && record_add(ctx, p, bytes, NULL) == 0) return NULL;
  return p;
}

void *t2s_host_scratch(t2s_ctx *ctx, size_t bytes) {
  return t2s_arena_alloc(ctx->meta, bytes, &ctx->err);
}

t2s_arena_mark t2s_scratch_mark(t2s_ctx *ctx) {
  t2s_arena_mark m = {ctx->live->n};
  return m;
}

void t2s_scratch_release(t2s_ctx *ctx, t2s_arena_mark mark) {
  records_release_from(ctx, (uint32_t)mark.serial);
}

t2s_tensor *t2s_tensor_new(t2s_ctx *ctx, t2s_dtype dtype, int ndim, const int64_t *shape) {
  if (!t2s_ctx_ok(ctx)) return NULL;
  if (ndim < 0 || ndim > T2S_MAX_DIMS)
    return t2s_ctx_fail(ctx, T2S_ERR_INVALID, "tensor with %d dimensions (at most %d)", ndim,
                        T2S_MAX_DIMS);
  t2s_tensor *t = t2s_arena_alloc(ctx->meta, sizeof *t, &ctx->err);
  if (t == NULL) return NULL;
  t2s_tensor_init(t, dtype, ctx->device, ndim, shape, NULL);
  size_t bytes = (size_t)t2s_numel(t) * t2s_dtype_size(dtype);
  t->data = t2s_arena_alloc(ctx->pass, bytes, &ctx->err);
  if (t->data == NULL) return NULL;
  t->live_id = record_add(ctx, t->data, bytes, t);
  return t->live_id ? t : NULL;
}

t2s_tensor *t2s_tensor_new4(t2s_ctx *ctx, t2s_dtype dtype, int64_t n, int64_t c, int64_t h,
                            int64_t w) {
  int64_t shape[4] = {n, c, h, w};
  return t2s_tensor_new(ctx, dtype, 4, shape);
}

t2s_scope t2s_scope_begin(t2s_ctx *ctx) {
  t2s_scope s = {ctx->live->n, ctx->tape_len, ctx->tape_epoch};
  return s;
}

/* Marks with the current read stamp the records of [first, n) that taped nodes from
 * tape_start on read in their backward. */
static void mark_backward_reads(t2s_ctx *ctx, uint32_t first, int tape_start) {
  t2s_liveness *lv = ctx->live;
  for (int k = tape_start; k < ctx->tape_len; k++) {
    t2s_tensor *reads[T2S_MAX_INPUTS + 1];
    int n = node_read_tensors(ctx->tape[k], reads);
    for (int j = 0; j < n; j++) {
      live_record *rec = record_of(ctx, reads[j]);
      if (rec != NULL && (uint32_t)(rec - lv->r) >= first) rec->read_stamp = lv->stamp;
    }
  }
}

void t2s_scope_end(t2s_ctx *ctx, t2s_scope scope, t2s_tensor *const *keep, int n_keep) {
  t2s_liveness *lv = ctx->live;
  if (ctx->keep_all || !t2s_ctx_ok(ctx) || scope.first_record >= lv->n) return;
  lv->stamp++;
  /* a backward inside the scope cleared the tape: everything taped now came later */
  int tape_start = scope.tape_epoch == ctx->tape_epoch && scope.tape_start <= ctx->tape_len
                       ? scope.tape_start : 0;
  mark_backward_reads(ctx, scope.first_record, tape_start);
  for (int i = 0; i < n_keep; i++) {
    live_record *rec = record_of(ctx, keep[i]);
    if (rec != NULL) rec->keep_stamp = lv->stamp;
  }
  for (uint32_t i = scope.first_record; i < lv->n; i++) {
    live_record *rec = &lv->r[i];
    if (rec->owned || rec->t == NULL) continue;
    if (rec->keep_stamp == lv->stamp) {
      rec->internal = 0; /* used after the scope: an outer scope decides */
      continue;
    }
    /* nobody outside the scope uses it: its gradient dies with its producer's backward,
     * its data now or after its last backward reader */
    rec->internal = 1;
    if (rec->read_stamp != lv->stamp) record_free(ctx, rec, 1);
  }
}

t2s_rng_key t2s_ctx_rng_key(t2s_ctx *ctx, uint64_t purpose) {
  return t2s_rng_key_make(ctx->seed, ctx->step, ctx->rng_calls++, purpose);
}

static int tape_push(t2s_ctx *ctx, t2s_node *node) {
  if (ctx->tape_len == ctx->tape_cap) {
    int cap = ctx->tape_cap ? ctx->tape_cap * 2 : 256;
    t2s_node **grown = realloc(ctx->tape, (size_t)cap * sizeof *grown);
    if (grown == NULL) return 0;
    ctx->tape = grown;
    ctx->tape_cap = cap;
  }
  ctx->tape[ctx->tape_len++] = node;
  return 1;
}

t2s_tensor *t2s_op_apply(t2s_ctx *ctx, t2s_op_id id, t2s_tensor **in, int n_in, t2s_tensor *out,
                         const void *args, size_t args_size) {
  t2s_tensor *y = t2s_op_apply_desc(ctx, &t2s_ops[id], in, n_in, out, args, args_size);
  if (y != NULL && ctx->tape_len > 0 && ctx->tape[ctx->tape_len - 1]->out == y)
    ctx->tape[ctx->tape_len - 1]->op = id;
  return y;
}

/* Whether op's slots on the context's device read bf16 inputs (t2s_op_bf16). */
static int takes_bf16(const t2s_ctx *ctx, const t2s_op *op) {
  if (ctx->device != T2S_DEV_CUDA || op < t2s_ops || op >= t2s_ops + T2S_OP_COUNT) return 0;
  return t2s_op_bf16[op - t2s_ops];
}

t2s_tensor *t2s_op_apply_desc(t2s_ctx *ctx, const t2s_op *op, t2s_tensor **in, int n_in,
                              t2s_tensor *out, const void *args, size_t args_size) {
  if (!t2s_ctx_ok(ctx) || out == NULL) return NULL;
  if (n_in > T2S_MAX_INPUTS)
    return t2s_ctx_fail(ctx, T2S_ERR_INVALID, "op '%s': %d inputs (at most %d)", op->name, n_in,
                        T2S_MAX_INPUTS);
  if (op->forward[ctx->device] == NULL) {
    char what[64];
    snprintf(what, sizeof what, "op '%s'", op->name);
    t2s_slot_missing(&ctx->err, what, ctx->device);
    return NULL;
  }
  int wants = 0;
  for (int i = 0; i < n_in; i++) {
    if (in[i] == NULL) continue;
    if (in[i]->device != ctx->device)
      return t2s_ctx_fail(ctx, T2S_ERR_INVALID, "op '%s': input %d is on %s but the run is on %s",
                          op->name, i, t2s_device_name(in[i]->device),
                          t2s_device_name(ctx->device));
    wants |= in[i]->requires_grad;
    if (in[i]->dtype == T2S_BF16 && !takes_bf16(ctx, op))
      return t2s_ctx_fail(ctx, T2S_ERR_UNSUPPORTED,
                          "op '%s' on %s: input %d is a bf16 activation (precision: bf16), but "
                          "this op has no bf16 path yet; set precision: tf32 (or fp32) in the "
                          "run config", op->name, t2s_device_name(ctx->device), i);
  }
  t2s_node *node = t2s_arena_alloc(ctx->meta, sizeof *node, &ctx->err);
  if (node == NULL) return NULL;
  memset(node, 0, sizeof *node);
  node->op = (t2s_op_id)(op >= t2s_ops && op < t2s_ops + T2S_OP_COUNT ? op - t2s_ops : T2S_OP_COUNT);
  node->desc = op;
  node->n_in = n_in;
  for (int i = 0; i < n_in; i++) node->in[i] = in[i];
  node->out = out;
  if (args_size) {
    node->args = t2s_arena_alloc(ctx->meta, args_size, &ctx->err);
    if (node->args == NULL) return NULL;
    memcpy(node->args, args, args_size);
  }
  node->recording = ctx->grad_enabled && wants && op->backward[ctx->device] != NULL;
  uint32_t first = ctx->live->n;
  double t0 = ctx->profile ? t2s_clock_s() : 0.0;
  ctx->op_depth++;
  t2s_status st = op->forward[ctx->device](ctx, node);
  ctx->op_depth--;
  if (ctx->profile && ctx->op_depth == 0) {
    ctx->profile->fwd_s[node->op] += t2s_clock_s() - t0;
    ctx->profile->fwd_n[node->op]++;
  }
  if (st == T2S_OK && ctx->op_depth == 0) {
    /* What the forward allocated is its saved state: kept for the backward when taped,
     * else (and with every temporary it did not release) given back at once. */
    if (node->recording) {
      node->saved_first = first;
      node->saved_count = ctx->live->n - first;
      for (uint32_t i = first; i < ctx->live->n; i++) ctx->live->r[i].owned = 1;
    } else if (!ctx->keep_all) {
      records_release_from(ctx, first);
    }
  }
  if (st != T2S_OK) {
    if (t2s_ctx_ok(ctx)) t2s_ctx_fail(ctx, st, "op '%s' forward failed (%s)", op->name, t2s_status_name(st));
    return NULL;
  }
  if (node->recording) {
    out->requires_grad = 1;
    if (!tape_push(ctx, node))
      return t2s_ctx_fail(ctx, T2S_ERR_NOMEM, "out of host memory growing the tape");
  }
  return out;
}

/* After node's backward: its saved state, the forward tensors whose last backward reader
 * it was (scoped ones only: kept tensors belong to the caller), and its output's
 * gradient when the output is scoped (nothing upstream of it reads that). */
static void release_after_backward(t2s_ctx *ctx, t2s_node *node) {
  t2s_liveness *lv = ctx->live;
  for (uint32_t i = node->saved_first; i < node->saved_first + node->saved_count && i < lv->n; i++)
    record_free(ctx, &lv->r[i], 0);
  t2s_tensor *reads[T2S_MAX_INPUTS + 1];
  int n = node_read_tensors(node, reads);
  for (int j = 0; j < n; j++) {
    live_record *rec = record_of(ctx, reads[j]);
    if (rec == NULL || --rec->bwd_uses > 0) continue;
    if (rec->internal) record_free(ctx, rec, 0);
  }
  live_record *out = record_of(ctx, node->out);
  if (out != NULL && out->internal) grad_free(ctx, node->out);
}

static void count_backward_reads(t2s_ctx *ctx) {
  for (int k = 0; k < ctx->tape_len; k++) {
    t2s_tensor *reads[T2S_MAX_INPUTS + 1];
    int n = node_read_tensors(ctx->tape[k], reads);
    for (int j = 0; j < n; j++) {
      live_record *rec = record_of(ctx, reads[j]);
      if (rec != NULL) rec->bwd_uses++;
    }
  }
}

static t2s_status grad_alloc(t2s_ctx *ctx, t2s_tensor *t) {
  size_t bytes = (size_t)t2s_numel(t) * sizeof(float);
  t->grad = t2s_arena_alloc(ctx->pass, bytes, &ctx->err);
  return t->grad ? T2S_OK : ctx->err.status;
}

t2s_status t2s_backward(t2s_ctx *ctx, t2s_tensor *loss, float scale) {
  if (!t2s_ctx_ok(ctx)) return ctx->err.status;
  if (loss == NULL || loss->dtype != T2S_F32 || t2s_numel(loss) != 1) {
    t2s_ctx_fail(ctx, T2S_ERR_INVALID, "backward needs a scalar float32 loss");
    return ctx->err.status;
  }
  if (!loss->requires_grad) {
    t2s_ctx_fail(ctx, T2S_ERR_INVALID,
                 "backward: the loss does not depend on any tensor that requires a gradient "
                 "(was it computed with gradients disabled?)");
    return ctx->err.status;
  }
  if (grad_alloc(ctx, loss) != T2S_OK) return ctx->err.status;
  t2s_status st = t2s_device_copy(ctx->device, loss->grad, T2S_DEV_CPU, &scale, sizeof scale, &ctx->err);
  if (st != T2S_OK) return st;

  const int release = !ctx->keep_all;
  if (release) count_backward_reads(ctx);
  for (int k = ctx->tape_len - 1; k >= 0; k--) {
    t2s_node *node = ctx->tape[k];
    if (node->out->grad == NULL) { /* output does not reach the loss */
      if (release) release_after_backward(ctx, node);
      continue;
    }
    float beta[T2S_MAX_INPUTS] = {0};
    for (int i = 0; i < node->n_in; i++) {
      t2s_tensor *x = node->in[i];
      if (x == NULL || !x->requires_grad) continue;
      if (x->grad == NULL) {
        if (grad_alloc(ctx, x) != T2S_OK) return ctx->err.status;
        beta[i] = 0.0f;
      } else {
        beta[i] = 1.0f;
      }
      if (x->grad_accumulates) beta[i] = 1.0f;
      /* The same tensor passed twice to one op (x + x): the second slot accumulates. */
      for (int j = 0; j < i; j++)
        if (node->in[j] == x) beta[i] = 1.0f;
    }
    const t2s_op *op = node->desc;
    uint32_t first = ctx->live->n;
    double t0 = ctx->profile ? t2s_clock_s() : 0.0;
    ctx->op_depth++;
    st = op->backward[ctx->device](ctx, node, beta);
    ctx->op_depth--;
    if (ctx->profile) {
      ctx->profile->bwd_s[node->op] += t2s_clock_s() - t0;
      ctx->profile->bwd_n[node->op]++;
    }
    if (release && st == T2S_OK) {
      records_release_from(ctx, first); /* the backward's temporaries */
      release_after_backward(ctx, node);
    }
    if (st != T2S_OK) {
      if (t2s_ctx_ok(ctx))
        t2s_ctx_fail(ctx, st, "op '%s' backward failed (%s)", op->name, t2s_status_name(st));
      return ctx->err.status;
    }
    if (ctx->after_backward_node) ctx->after_backward_node(ctx->hook_user, node);
  }
  ctx->tape_len = 0;
  ctx->tape_epoch++;
  return T2S_OK;
}
