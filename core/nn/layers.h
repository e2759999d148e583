/* Building blocks shared by the networks: a convolution and a batch norm that
 * register their tensors (PyTorch names) when built and run through the op
 * table when called. */
#pragma once
#include "core/ops.h"
#include "core/params.h"

/* Registers the parameter "<prefix>.<suffix>" (PyTorch naming) and returns its tensor,
 * or NULL with err set. Every layer's build function goes through it. */
t2s_tensor *t2s_param_add_named(t2s_params *p, const char *prefix, const char *suffix,
                                t2s_param_kind kind, int ndim, const int64_t *shape, t2s_init init,
                                float scale, t2s_error *err);

typedef enum t2s_norm_kind {
  T2S_NORM_BN = 0,   /* batch statistics while training */
  T2S_NORM_SYNCBN,   /* the same, reduced over ranks (ctx->sync_bn is set by dist/) */
  T2S_NORM_FROZEN,   /* running statistics, gamma/beta not trained */
} t2s_norm_kind;

typedef struct t2s_conv {
  t2s_tensor *w, *b;  /* b NULL without bias */
  t2s_conv2d_args a;
} t2s_conv;

typedef struct t2s_bn {
  t2s_tensor *gamma, *beta, *mean, *var;
  t2s_norm_kind kind;
  int norm_eval;      /* mmseg norm_eval: running statistics even while training */
  float momentum, eps;
} t2s_bn;

/* name: full prefix, e.g. "backbone.layer1.0.conv1" (".weight"/".bias" appended). */
t2s_status t2s_conv_build(t2s_conv *c, t2s_params *p, const char *name, int64_t cin, int64_t cout,
                          int k, int stride, int pad, int dil, int groups, int bias,
                          t2s_init init, float init_scale, t2s_error *err);
t2s_tensor *t2s_conv_forward(t2s_ctx *ctx, const t2s_conv *c, t2s_tensor *x);

t2s_status t2s_bn_build(t2s_bn *bn, t2s_params *p, const char *name, int64_t channels,
                        t2s_norm_kind kind, int norm_eval, t2s_error *err);
t2s_tensor *t2s_bn_forward(t2s_ctx *ctx, const t2s_bn *bn, t2s_tensor *x);
/* conv -> bn -> optional relu */
t2s_tensor *t2s_conv_bn_act(t2s_ctx *ctx, const t2s_conv *c, const t2s_bn *bn, t2s_tensor *x,
                            int relu);
