/* Parameters and buffers of a network, in flat arenas.
 *
 * A network registers its tensors while it is built, in forward order
 * (t2s_params_add). t2s_params_finalize() then lays them out in REVERSE order in
 * one flat parameter buffer and a gradient buffer with the identical layout, so
 * that the gradients backward finishes first are contiguous (all-reduce buckets).
 * Buffers (batch-norm running statistics) live in a third flat buffer without
 * gradients. Optimizer state (core/optim.h) mirrors the parameter layout.
 * Names follow PyTorch/mmseg (backbone.layer1.0.conv1.weight). */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"

typedef enum t2s_param_kind {
  T2S_PARAM_WEIGHT = 0,  /* conv / linear weight: weight decay applies */
  T2S_PARAM_BIAS,        /* bias: no decay by default */
  T2S_PARAM_NORM,        /* norm scale / shift: no decay by default */
  T2S_PARAM_BUFFER,      /* running statistics: not trained, no gradient */
} t2s_param_kind;

typedef enum t2s_init {
  T2S_INIT_ZEROS = 0,
  T2S_INIT_ONES,
  T2S_INIT_KAIMING_FAN_OUT,   /* normal(0, sqrt(2 / fan_out)): mmcv kaiming_init for conv+relu */
  T2S_INIT_NORMAL,            /* normal(0, scale) */
  T2S_INIT_UNIFORM,           /* uniform(-scale, scale) */
  T2S_INIT_TRUNC_NORMAL,      /* normal(0, scale) truncated to [-2 scale, 2 scale] */
} t2s_init;

typedef struct t2s_param {
  t2s_tensor t;        /* data/grad point into the flat buffers after finalize */
  char name[160];
  t2s_param_kind kind;
  t2s_init init;
  float init_scale;
  float lr_mult;       /* set by the network (head x10) or the optimizer's groups */
  float decay_mult;
  int64_t fan_out;     /* for kaiming init */
  size_t offset;       /* element offset in its flat buffer */
  int index;           /* registration (forward) order */
} t2s_param;

typedef struct t2s_params {
  t2s_param **items;   /* trainable tensors, registration order */
  int count, cap;
  t2s_param **buffers; /* running statistics, registration order */
  int buf_count, buf_cap;
  t2s_device device;
  float *data, *grad;  /* flat, numel floats each */
  size_t numel;
  float *buf_data;
  size_t buf_numel;
  int finalized;
} t2s_params;

void t2s_params_init(t2s_params *p);
void t2s_params_free(t2s_params *p);
/* Registers a tensor (returns its stable view; data is NULL until finalize).
 * NULL when out of memory or after finalize. */
t2s_tensor *t2s_params_add(t2s_params *p, const char *name, t2s_param_kind kind, int ndim,
                           const int64_t *shape, t2s_init init, float init_scale);
t2s_param *t2s_params_find(const t2s_params *p, const char *name);  /* params or buffers */
/* Allocates the flat buffers on `device` and initialises every tensor from the
 * counter-based RNG keyed by (seed, tensor index): same seed, same weights. */
t2s_status t2s_params_finalize(t2s_params *p, t2s_device device, uint64_t seed, t2s_error *err);
t2s_status t2s_params_zero_grad(t2s_params *p, t2s_error *err);
/* Copies every parameter and buffer value of src into dst (same structure). */
t2s_status t2s_params_copy(t2s_params *dst, const t2s_params *src, t2s_error *err);
/* Sets lr_mult on every parameter whose name starts with prefix. */
void t2s_params_set_lr_mult(t2s_params *p, const char *prefix, float lr_mult);
