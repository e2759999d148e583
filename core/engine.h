/* The execution context, op descriptors and the tape.
 *
 * Every op is a forward/backward pair with one slot per backend, held in one
 * static descriptor table (t2s_ops, core/ops/registry.c; the CUDA slots are NULL
 * in a build without the CUDA backend). An op call goes through t2s_op_apply():
 * it runs the backend's forward and, while gradients are enabled and an input wants
 * one, records the call (a node) on the tape. t2s_backward() walks the tape in
 * reverse. Networks are plain forward code; nobody writes a network's backward.
 *
 * Errors are sticky: the first failing op stores its message in ctx->err and
 * returns NULL; every later op given a NULL input returns NULL at once, so
 * forward code checks t2s_ctx_ok() once at the end instead of after every line.
 *
 * Gradient contract for backward functions: for input i with requires_grad,
 * in[i]->grad is allocated and beta[i] is 0 (write: grad = dL/dx) or 1
 * (accumulate: grad += dL/dx). Parameters always get beta 1; an activation gets
 * beta 1 only at a fan-out point (a second consumer already wrote its grad). */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/device.h"
#include "core/rng.h"
#include "core/tensor.h"

#define T2S_MAX_INPUTS 8

/* The op table. An op family is core/ops/<family>.h (its argument structs and public
 * calls), core/ops/<family>.c (t2s_<name>_cpu_forward / _backward, the reference)
 * and core/cuda/<family>.cu (t2s_<name>_cuda_forward / _backward, exported with
 * T2S_CUDA_OP). GRAD ops have both slots on every backend; NOGRAD ops (labels) have
 * no backward and are never taped. Adding an op here also needs an entry in the
 * gradient-check coverage table (tests/test_op_table.c) and in the per-op benchmark
 * (tools/bench/bench_ops.c); test_op_table fails until both exist. */
#define T2S_OP_LIST(X)        \
  X(conv2d, GRAD)             \
  X(batch_norm, GRAD)         \
  X(relu, GRAD)               \
  X(gelu, GRAD)               \
  X(max_pool2d, GRAD)         \
  X(avg_pool2d, GRAD)         \
  X(add, GRAD)                \
  X(scale, GRAD)              \
  X(mul, GRAD)                \
  X(concat, GRAD)             \
  X(resize_bilinear, GRAD)    \
  X(resize_nearest, NOGRAD)   \
  X(linear, GRAD)             \
  X(matmul, GRAD)             \
  X(layer_norm, GRAD)         \
  X(softmax, GRAD)            \
  X(dropout, GRAD)            \
  X(l2_normalize, GRAD)       \
  X(cross_entropy, GRAD)      \
  X(weighted_sum, GRAD)       \
  X(attention, GRAD)          \
  X(tokens_transpose, GRAD)   \
  X(drop_path, GRAD)          \
  X(to_f32, GRAD)             \
  X(crop, GRAD)               \
  X(slide_merge, GRAD)        \
  X(hrda_gate, GRAD)          \
  X(hrda_fuse, GRAD)

typedef enum t2s_op_id {
#define T2S_OP_ENUM(name, grad) T2S_OP_##name,
  T2S_OP_LIST(T2S_OP_ENUM)
#undef T2S_OP_ENUM
  T2S_OP_COUNT
} t2s_op_id;

typedef struct t2s_ctx t2s_ctx;
typedef struct t2s_node t2s_node;

typedef t2s_status (*t2s_forward_fn)(t2s_ctx *ctx, t2s_node *node);
typedef t2s_status (*t2s_backward_fn)(t2s_ctx *ctx, t2s_node *node, const float *beta);

/* What an op's backward reads of its forward tensors, so that the engine frees every
 * other activation early (liveness, docs/architecture.md "Activation memory"): the
 * union over the backends of the inputs (by position) and the output whose DATA the
 * backward slots read. Gradients and shapes do not count (headers stay). An op that
 * declares nothing (0) is taken to read every input and its output. */
#define T2S_READS_IN(i) (1u << (i))
#define T2S_READS_OUT (1u << T2S_MAX_INPUTS)
#define T2S_READS_DECLARED (1u << 31)
#define T2S_READS(mask) (T2S_READS_DECLARED | (mask))
#define T2S_READS_NOTHING T2S_READS(0u)

typedef struct t2s_op {
  const char *name;
  int differentiable;  /* 0: no backward slot on any backend (the op is never taped) */
  t2s_forward_fn forward[T2S_DEV_COUNT];
  t2s_backward_fn backward[T2S_DEV_COUNT];
  uint32_t bwd_reads;  /* T2S_READS(...) for descriptors outside the core table; 0: all */
} t2s_op;

extern const t2s_op t2s_ops[T2S_OP_COUNT];
/* T2S_READS(...) of every core op's backward (core/ops/registry.c); an op missing from
 * the table is taken to read everything. */
extern const uint32_t t2s_op_bwd_reads[T2S_OP_COUNT];
/* 1 where the op's CUDA slots take bf16 activations (precision bf16); every other op,
 * and every op defined outside the table, refuses a bf16 input in t2s_op_apply with a
 * message naming it (core/ops/registry.c lists the converted families). */
extern const unsigned char t2s_op_bf16[T2S_OP_COUNT];

/* Initialiser of a differentiable op's descriptor outside the core table: CPU slots and
 * CUDA slots (NULL in a build without the backend). */
#define T2S_OP_DESCRIPTOR(op_name, cpu_forward, cpu_backward, cuda_forward, cuda_backward) \
  {.name = (op_name),                                                                     \
   .differentiable = 1,                                                                   \
   .forward = {[T2S_DEV_CPU] = (cpu_forward), [T2S_DEV_CUDA] = T2S_CUDA_SLOT(cuda_forward)}, \
   .backward = {[T2S_DEV_CPU] = (cpu_backward), [T2S_DEV_CUDA] = T2S_CUDA_SLOT(cuda_backward)}}

/* The slots of every core op (core/ops/<family>.c, core/cuda/<family>.cu). */
#define T2S_OP_DECLARE(name, grad)                                                        \
  t2s_status t2s_##name##_cpu_forward(t2s_ctx *ctx, t2s_node *node);                      \
  t2s_status t2s_##name##_cpu_backward(t2s_ctx *ctx, t2s_node *node, const float *beta);  \
  t2s_status t2s_##name##_cuda_forward(t2s_ctx *ctx, t2s_node *node);                     \
  t2s_status t2s_##name##_cuda_backward(t2s_ctx *ctx, t2s_node *node, const float *beta);
T2S_OP_LIST(T2S_OP_DECLARE)
#undef T2S_OP_DECLARE

struct t2s_node {
  t2s_op_id op;      /* the core op, or T2S_OP_COUNT for an op defined outside core */
  const t2s_op *desc;  /* the descriptor that ran (t2s_ops[op] for core ops) */
  int n_in;
  t2s_tensor *in[T2S_MAX_INPUTS];  /* NULL entries allowed for optional inputs (e.g. bias) */
  t2s_tensor *out;
  void *args;        /* the op's argument struct, copied into the pass arena */
  void *saved;       /* what forward keeps for backward (pass arena), op-specific */
  int recording;     /* forward knows whether backward will run (whether to save) */
  uint32_t saved_first, saved_count;  /* the pass allocations its forward made (engine
                                       * records): freed after its backward */
};

/* Time per op type (t2sda_bench step --profile): ctx->profile, when set, accumulates
 * the wall time of every forward and backward slot (host time: on CUDA it is launch
 * time unless the caller synchronises). Index T2S_OP_COUNT sums the ops defined
 * outside the core table (the method's losses). */
typedef struct t2s_op_profile {
  double fwd_s[T2S_OP_COUNT + 1], bwd_s[T2S_OP_COUNT + 1];
  long fwd_n[T2S_OP_COUNT + 1], bwd_n[T2S_OP_COUNT + 1];
} t2s_op_profile;

typedef struct t2s_liveness t2s_liveness;

typedef void (*t2s_node_hook)(void *user, const t2s_node *node);

struct t2s_ctx {
  t2s_device device;
  t2s_arena *pass;        /* activations, saved tensors, activation grads of one pass */
  t2s_arena *meta;        /* host memory for the pass's bookkeeping: tensor headers,
                           * tape nodes, op arguments (the pass arena may be GPU memory) */
  int grad_enabled;
  int training;           /* dropout active, batch norm in training mode where allowed */
  int no_dropout;         /* training-mode batch norm without dropout / drop path (the
                           * EMA teacher's forward, docs/method.md step 4) */
  int deterministic;
  t2s_error err;          /* sticky: the first failure */
  t2s_node **tape;
  int tape_len, tape_cap;
  double flops;           /* forward FLOPs of GEMM-shaped ops since the last reset */
  uint64_t seed;          /* global seed, for ops that draw random numbers */
  uint64_t step;          /* iteration counter, part of every RNG key */
  uint64_t rng_calls;     /* per-pass counter that separates RNG draws of successive ops */
  int64_t sample_offset;  /* global index of this rank's first sample in the batch: per-sample
                           * random draws (drop path) key by global sample, so N ranks x B
                           * images draw what 1 rank x N B images draws */
  /* Cross-rank sum of per-batch statistics (SyncBN sums, class statistics). NULL on
   * one process: the local values are already global. Set by dist/. */
  t2s_status (*stat_allreduce)(void *user, double *buf, size_t n, t2s_error *err);
  void *stat_user;
  int sync_bn;            /* batch norm in training mode reduces its statistics over ranks */
  t2s_node_hook after_backward_node;  /* called after each node's backward (dist buckets) */
  void *hook_user;
  void *backend;          /* backend handles (cuDNN, cuBLAS, streams) */
  t2s_dtype act_dtype;    /* dtype of the activations the GEMM-shaped ops (conv2d, linear,
                           * matmul) produce: T2S_F32, or T2S_BF16 under precision bf16
                           * (CUDA only, set by t2s_cuda_set_precision); the ops that follow
                           * them keep their input's dtype */
  /* Activation memory (docs/architecture.md "Activation memory"). Off (0): scopes free
   * what nothing needs any more and backward releases what it has read. 1 keeps every
   * pass allocation until t2s_ctx_end_pass (the behaviour before liveness; tests compare
   * both). */
  int keep_all;
  t2s_liveness *live;     /* the records of the pass arena's allocations (engine.c) */
  uint64_t tape_epoch;    /* counts backward calls: a scope knows the tape was cleared */
  int op_depth;           /* > 0 inside an op's forward or backward slot */
  t2s_op_profile *profile;  /* NULL, or where op times accumulate */
};

t2s_ctx *t2s_ctx_create(t2s_device device, size_t pass_block_bytes, t2s_error *err);
void t2s_ctx_destroy(t2s_ctx *ctx);
static inline int t2s_ctx_ok(const t2s_ctx *ctx) { return ctx->err.status == T2S_OK; }
/* Clears the tape and rewinds the pass arena: every activation of the pass is gone. */
void t2s_ctx_end_pass(t2s_ctx *ctx);
/* Returns the previous setting. */
int t2s_set_grad_enabled(t2s_ctx *ctx, int enabled);

/* A fresh tensor in the pass arena, stored in the context's device layout. */
t2s_tensor *t2s_tensor_new(t2s_ctx *ctx, t2s_dtype dtype, int ndim, const int64_t *shape);
t2s_tensor *t2s_tensor_new4(t2s_ctx *ctx, t2s_dtype dtype, int64_t n, int64_t c, int64_t h,
                            int64_t w);
/* The activation dtype of a GEMM-shaped op's output (ctx->act_dtype). */
static inline t2s_dtype t2s_act_dtype(const t2s_ctx *ctx) { return ctx->act_dtype; }
/* The output dtype of an op that follows its inputs: bf16 when either input is bf16
 * (b may be NULL), else f32. */
static inline t2s_dtype t2s_follow_dtype(const t2s_tensor *a, const t2s_tensor *b) {
  return (a && a->dtype == T2S_BF16) || (b && b->dtype == T2S_BF16) ? T2S_BF16 : T2S_F32;
}
/* An activation dtype: f32, or bf16 (precision bf16 on CUDA). Weights stay f32. */
static inline int t2s_is_float(const t2s_tensor *t) {
  return t->dtype == T2S_F32 || t->dtype == T2S_BF16;
}
/* Raw scratch memory in the pass arena (on the run's device). */
void *t2s_scratch(t2s_ctx *ctx, size_t bytes);
/* Host memory that lives until the end of the pass (an op's host-side saved state). */
void *t2s_host_scratch(t2s_ctx *ctx, size_t bytes);
/* Temporary scratch: everything allocated after t2s_scratch_mark() is given back by
 * t2s_scratch_release(). Only for buffers that die inside one op call (column
 * matrices): the op must not have allocated its output or saved state in between. */
t2s_arena_mark t2s_scratch_mark(t2s_ctx *ctx);
void t2s_scratch_release(t2s_ctx *ctx, t2s_arena_mark mark);
/* ---- activation liveness ----
 * A scope brackets forward code (a residual block, a transformer block, a network, a
 * loss term). At its end every tensor created inside it (t2s_tensor_new) goes back to
 * the pass arena unless it is in keep[] (used after the scope) or a taped op's
 * backward reads it (t2s_op_bwd_reads); the latter are released by t2s_backward once
 * their last reader has run. Raw t2s_scratch memory made outside ops is left alone.
 * Scopes nest; an inner scope's kept tensors are judged again by the outer one.
 * With ctx->keep_all nothing is freed. */
typedef struct t2s_scope {
  uint32_t first_record;
  int tape_start;
  uint64_t tape_epoch;
} t2s_scope;
t2s_scope t2s_scope_begin(t2s_ctx *ctx);
void t2s_scope_end(t2s_ctx *ctx, t2s_scope scope, t2s_tensor *const *keep, int n_keep);
/* Tensors and scratch ranges freed by liveness since the context was made (tests). */
uint64_t t2s_liveness_freed(const t2s_ctx *ctx);

/* Records an error in ctx (first wins) and returns NULL, for op wrappers. */
void *t2s_ctx_fail(t2s_ctx *ctx, t2s_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Runs op `id` on inputs in[0..n_in) producing `out` (already allocated by the
 * caller with the right shape). args (args_size bytes) are copied. Returns out, or
 * NULL on error. */
t2s_tensor *t2s_op_apply(t2s_ctx *ctx, t2s_op_id id, t2s_tensor **in, int n_in, t2s_tensor *out,
                         const void *args, size_t args_size);

/* The same for an op whose descriptor lives outside the core table (the method's
 * fused losses in losses/ define their own with T2S_OP_DESCRIPTOR). */
t2s_tensor *t2s_op_apply_desc(t2s_ctx *ctx, const t2s_op *op, t2s_tensor **in, int n_in,
                              t2s_tensor *out, const void *args, size_t args_size);

/* Backward from a scalar f32 loss: dloss/dloss = scale. Walks the tape in reverse
 * and clears it. Unless ctx->keep_all, each node's saved state, the forward tensors
 * that only backward still read (scoped ones) and the gradients of scoped activations
 * are freed as soon as the node that last needs them has run. Parameter grads accumulate; call again for another loss term
 * only after a new forward. */
t2s_status t2s_backward(t2s_ctx *ctx, t2s_tensor *loss, float scale);

/* Helpers for op implementations. */
static inline int t2s_wants_grad(const t2s_tensor *t) { return t != NULL && t->requires_grad; }
/* Next RNG key for an op in this pass: (seed, step, call index, purpose). */
t2s_rng_key t2s_ctx_rng_key(t2s_ctx *ctx, uint64_t purpose);
