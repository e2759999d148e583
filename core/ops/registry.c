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
