/* Optimizers over the flat parameter buffers, the learning-rate schedule, the
 * EMA teacher update and gradient clipping.
 *
 * Updates follow PyTorch exactly so a step matches torch.optim to float rounding:
 *   SGD:   g' = g + wd p;  buf = g' (first step) | momentum buf + g';  p -= lr buf
 *   AdamW: p -= lr wd p;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *          p -= (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 * with lr = base lr x the tensor's lr_mult and wd = weight decay x decay_mult.
 * Tensors with requires_grad == 0 (frozen norms) are never touched. */
#pragma once
#include <stdint.h>

#include "core/params.h"

typedef enum t2s_optim_type { T2S_OPTIM_SGD = 0, T2S_OPTIM_ADAMW } t2s_optim_type;

typedef struct t2s_optim_cfg {
  t2s_optim_type type;
  double lr;            /* base learning rate (the schedule scales it) */
  double momentum;      /* SGD */
  double weight_decay;
  double beta1, beta2, eps;  /* AdamW */
  double grad_clip;     /* max global L2 norm of the gradient; 0 = off */
} t2s_optim_cfg;

typedef struct t2s_optim {
  t2s_optim_cfg cfg;
  t2s_params *params;
  float *state[2];      /* SGD: momentum; AdamW: exp_avg, exp_avg_sq (parameter layout) */
  int n_state;
  int64_t step;         /* optimizer steps taken */
} t2s_optim;

/* Names of the state slots as stored in checkpoints (/optim/<slot>/<name>). */
const char *t2s_optim_slot_name(const t2s_optim *o, int slot);
t2s_status t2s_optim_init(t2s_optim *o, t2s_params *p, const t2s_optim_cfg *cfg, t2s_error *err);
void t2s_optim_free(t2s_optim *o);
/* One update with learning rate lr (already scheduled). Clips first when configured;
 * *grad_norm (may be NULL) receives the global gradient norm before clipping. */
t2s_status t2s_optim_step(t2s_optim *o, double lr, double *grad_norm, t2s_error *err);
/* Global L2 norm of the gradient over tensors that require it (double accumulation). */
double t2s_grad_global_norm(const t2s_params *p);

typedef enum t2s_lr_policy { T2S_LR_POLY = 0, T2S_LR_CONSTANT } t2s_lr_policy;
typedef struct t2s_lr_schedule {
  t2s_lr_policy policy;
  double power, min_lr;
  int64_t max_iters;
  int64_t warmup_iters;   /* 0 = no warm-up */
  double warmup_ratio;    /* the warm-up starts at ratio x the regular lr */
} t2s_lr_schedule;
/* mmcv's IterBased poly schedule with linear warm-up, at iteration iter (0-based):
 * regular = (base - min) (1 - iter / max_iters)^power + min; during warm-up
 * lr = regular (1 - (1 - iter / warmup_iters)(1 - warmup_ratio)). */
double t2s_lr_at(const t2s_lr_schedule *s, double base_lr, int64_t iter);

/* teacher = a teacher + (1 - a) student with a = min(1 - 1/(iter + 1), alpha) over
 * trainable tensors; at iter 0 this is a copy. Buffers are copied only when
 * copy_buffers is set. */
t2s_status t2s_ema_update(t2s_params *teacher, const t2s_params *student, double alpha,
                          int64_t iter, int copy_buffers, t2s_error *err);

/* The CUDA slots of the three calls above (core/cuda/optim.cu), reached through the
 * per-device slot tables of core/optim.c: same semantics and float rounding as the CPU
 * slots; every reduction (the gradient norm) is deterministic. They run on the legacy
 * default stream, which orders them after every op of every (blocking-stream) CUDA
 * context and before any later one. */
t2s_status t2s_optim_step_cuda(t2s_optim *o, double lr, double *grad_norm, t2s_error *err);
t2s_status t2s_grad_global_norm_cuda(const t2s_params *p, double *norm, t2s_error *err);
t2s_status t2s_ema_update_cuda(t2s_params *teacher, const t2s_params *student, double alpha,
                               int64_t iter, int copy_buffers, t2s_error *err);
