/* CUDA entry points of the optimizer (core/optim.c dispatches to them when the
 * parameters live on a GPU; core/cuda/optim.cu implements them, core/cuda_absent.c
 * answers "not built"). Same semantics and float rounding as the CPU path of
 * core/optim.h; every reduction (the gradient norm) is deterministic.
 * They run on the legacy default stream, which orders them after every op of every
 * (blocking-stream) CUDA context and before any later one. */
#pragma once
#include "core/optim.h"

/* t2s_optim_step for p->device == T2S_DEV_CUDA. */
t2s_status t2s_optim_cuda_step(t2s_optim *o, double lr, double *grad_norm, t2s_error *err);
/* Global L2 norm of the trainable gradients (double, fixed two-pass geometry). */
t2s_status t2s_grad_global_norm_cuda(const t2s_params *p, double *norm, t2s_error *err);
/* t2s_ema_update for parameters on the GPU (teacher and student both there). */
t2s_status t2s_ema_update_cuda(t2s_params *teacher, const t2s_params *student, double alpha,
                               int64_t iter, int copy_buffers, t2s_error *err);
