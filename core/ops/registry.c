/* The op descriptor table: one static entry per op of T2S_OP_LIST, with the CPU
 * slots of core/ops/<family>.c and the CUDA slots of core/cuda/<family>.cu (NULL
 * in a build without the CUDA backend, where t2s_op_apply answers "this build has
 * no CUDA backend"). A missing slot function is a link error, not a run-time
 * surprise; test_op_table checks the slots against the op list. */
#include "core/device.h"
#include "core/engine.h"

/* NOGRAD ops (labels) have no backward on any backend. */
#define T2S_BACKWARD_GRAD(fn) fn
#define T2S_BACKWARD_NOGRAD(fn) NULL
#define T2S_DIFFERENTIABLE_GRAD 1
#define T2S_DIFFERENTIABLE_NOGRAD 0

const t2s_op t2s_ops[] = {
#define T2S_OP_ENTRY(op, grad)                                                        \
  [T2S_OP_##op] = {                                                                   \
      .name = #op,                                                                    \
      .differentiable = T2S_DIFFERENTIABLE_##grad,                                    \
      .forward = {[T2S_DEV_CPU] = t2s_##op##_cpu_forward,                             \
                  [T2S_DEV_CUDA] = T2S_CUDA_SLOT(t2s_##op##_cuda_forward)},           \
      .backward = {[T2S_DEV_CPU] = T2S_BACKWARD_##grad(t2s_##op##_cpu_backward),      \
                   [T2S_DEV_CUDA] = T2S_CUDA_SLOT(T2S_BACKWARD_##grad(t2s_##op##_cuda_backward))}},
    T2S_OP_LIST(T2S_OP_ENTRY)
#undef T2S_OP_ENTRY
};
_Static_assert(sizeof t2s_ops / sizeof t2s_ops[0] == T2S_OP_COUNT,
               "t2s_ops must have one entry per op of T2S_OP_LIST");

/* The ops whose CUDA slots read and write bf16 activations (precision bf16; design note
 * in core/cuda/backend.h): today every core op. An op added without a bf16 path stays 0
 * here, and t2s_op_apply refuses a bf16 input to it (as it does for the descriptors of
 * losses/) rather than reading its bytes as float. */
const unsigned char t2s_op_bf16[T2S_OP_COUNT] = {
    [T2S_OP_conv2d] = 1,          [T2S_OP_batch_norm] = 1,     [T2S_OP_relu] = 1,
    [T2S_OP_gelu] = 1,            [T2S_OP_max_pool2d] = 1,     [T2S_OP_avg_pool2d] = 1,
    [T2S_OP_add] = 1,             [T2S_OP_scale] = 1,          [T2S_OP_mul] = 1,
    [T2S_OP_concat] = 1,          [T2S_OP_resize_bilinear] = 1, [T2S_OP_resize_nearest] = 1,
    [T2S_OP_linear] = 1,          [T2S_OP_matmul] = 1,         [T2S_OP_layer_norm] = 1,
    [T2S_OP_softmax] = 1,         [T2S_OP_dropout] = 1,        [T2S_OP_l2_normalize] = 1,
    [T2S_OP_cross_entropy] = 1,   [T2S_OP_weighted_sum] = 1,   [T2S_OP_attention] = 1,
    [T2S_OP_tokens_transpose] = 1, [T2S_OP_drop_path] = 1,
    [T2S_OP_to_f32] = 1,
};

/* What each op's backward reads of its forward tensors (the union over its CPU and
 * CUDA slots; core/engine.h T2S_READS). The engine frees every other activation as
 * soon as the forward no longer needs it, so an entry that leaves out something the
 * backward reads makes it read freed memory: the gradient checks run every op in a
 * liveness scope over poisoned memory (tests/harness.c) and test_liveness compares
 * whole networks with liveness on and off. An op added without an entry is taken to
 * read every input and its output, which is always safe. */
#define IN(i) T2S_READS_IN(i)
const uint32_t t2s_op_bwd_reads[T2S_OP_COUNT] = {
    [T2S_OP_conv2d] = T2S_READS(IN(0) | IN(1)),        /* x for dW, W for dx; bias: grad only */
    [T2S_OP_batch_norm] = T2S_READS(IN(0) | IN(1)),    /* x (x-hat from saved mean/invstd), gamma */
    [T2S_OP_relu] = T2S_READS(T2S_READS_OUT),          /* y > 0 */
    [T2S_OP_gelu] = T2S_READS(IN(0)),                  /* gelu'(x) */
    [T2S_OP_max_pool2d] = T2S_READS_NOTHING,           /* the saved argmax */
    [T2S_OP_avg_pool2d] = T2S_READS_NOTHING,
    [T2S_OP_add] = T2S_READS_NOTHING,
    [T2S_OP_scale] = T2S_READS_NOTHING,
    [T2S_OP_mul] = T2S_READS(IN(0) | IN(1)),           /* each factor for the other's grad */
    [T2S_OP_concat] = T2S_READS_NOTHING,
    [T2S_OP_resize_bilinear] = T2S_READS_NOTHING,      /* weights from the shapes */
    [T2S_OP_linear] = T2S_READS(IN(0) | IN(1)),
    [T2S_OP_matmul] = T2S_READS(IN(0) | IN(1)),
    [T2S_OP_layer_norm] = T2S_READS(IN(0) | IN(1)),    /* x (with saved mean/rstd), gamma */
    [T2S_OP_softmax] = T2S_READS(T2S_READS_OUT),
    [T2S_OP_dropout] = T2S_READS_NOTHING,              /* the mask is redrawn from its RNG key */
    [T2S_OP_l2_normalize] = T2S_READS(T2S_READS_OUT),  /* y and the saved norms */
    [T2S_OP_cross_entropy] = T2S_READS(IN(0) | IN(1) | IN(2) | IN(3)), /* logits, labels, weights */
    [T2S_OP_weighted_sum] = T2S_READS(IN(1)),          /* the weights */
    [T2S_OP_attention] = T2S_READS(IN(0) | IN(1) | T2S_READS_OUT), /* q, kv, o and the saved P */
    [T2S_OP_tokens_transpose] = T2S_READS_NOTHING,
    [T2S_OP_drop_path] = T2S_READS_NOTHING,            /* per-sample scales from the RNG key */
    [T2S_OP_to_f32] = T2S_READS_NOTHING,
    [T2S_OP_crop] = T2S_READS_NOTHING,                 /* the window from the args, x's shape */
    [T2S_OP_slide_merge] = T2S_READS_NOTHING,          /* counts from the grid */
    [T2S_OP_hrda_gate] = T2S_READS(IN(0) | IN(1)),     /* sigmoid(att) and lr for d att */
    [T2S_OP_hrda_fuse] = T2S_READS(IN(0) | IN(1)),     /* A for d hr, hr for d A */
};
#undef IN
