#include "core/engine.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/device.h"

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
  if (ctx->pass == NULL || ctx->meta == NULL) {
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
  free(ctx->tape);
  free(ctx);
}

void t2s_ctx_end_pass(t2s_ctx *ctx) {
  ctx->tape_len = 0;
  ctx->rng_calls = 0;
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
  return t2s_arena_alloc(ctx->pass, bytes, &ctx->err);
}

void *t2s_host_scratch(t2s_ctx *ctx, size_t bytes) {
  return t2s_arena_alloc(ctx->meta, bytes, &ctx->err);
}

t2s_arena_mark t2s_scratch_mark(t2s_ctx *ctx) { return t2s_arena_get_mark(ctx->pass); }

void t2s_scratch_release(t2s_ctx *ctx, t2s_arena_mark mark) { t2s_arena_rewind(ctx->pass, mark); }

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
  return t->data ? t : NULL;
}

t2s_tensor *t2s_tensor_new4(t2s_ctx *ctx, t2s_dtype dtype, int64_t n, int64_t c, int64_t h,
                            int64_t w) {
  int64_t shape[4] = {n, c, h, w};
  return t2s_tensor_new(ctx, dtype, 4, shape);
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
  t2s_status st = op->forward[ctx->device](ctx, node);
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

  for (int k = ctx->tape_len - 1; k >= 0; k--) {
    t2s_node *node = ctx->tape[k];
    if (node->out->grad == NULL) continue; /* output does not reach the loss */
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
    st = op->backward[ctx->device](ctx, node, beta);
    if (st != T2S_OK) {
      if (t2s_ctx_ok(ctx))
        t2s_ctx_fail(ctx, st, "op '%s' backward failed (%s)", op->name, t2s_status_name(st));
      return ctx->err.status;
    }
    if (ctx->after_backward_node) ctx->after_backward_node(ctx->hook_user, node);
  }
  ctx->tape_len = 0;
  return T2S_OK;
}
