/* The op descriptor table: CPU slots come from core/ops/<family>.c; the CUDA
 * backend fills its slots when the first CUDA context is created
 * (t2s_cuda_ctx_init in core/cuda/context.cu). Weak references let the
 * table link while an op family is still missing; such an op then reports
 * "no cpu implementation" when called instead of breaking the build. */
#include "core/engine.h"

#define T2S_OP_DECLARE(name)                                                          \
  t2s_status t2s_##name##_cpu_forward(t2s_ctx *, t2s_node *) __attribute__((weak));  \
  t2s_status t2s_##name##_cpu_backward(t2s_ctx *, t2s_node *, const float *)         \
      __attribute__((weak));
T2S_OP_LIST(T2S_OP_DECLARE)
#undef T2S_OP_DECLARE

t2s_op t2s_ops[T2S_OP_COUNT] = {
#define T2S_OP_ENTRY(name) \
  [T2S_OP_##name] = {#name, {t2s_##name##_cpu_forward, 0}, {t2s_##name##_cpu_backward, 0}},
    T2S_OP_LIST(T2S_OP_ENTRY)
#undef T2S_OP_ENTRY
};
