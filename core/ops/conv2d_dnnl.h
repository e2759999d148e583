/* oneDNN convolutions behind the conv2d op's CPU slot (core/ops/conv2d_dnnl.c).
 * Built when CMake finds oneDNN (T2S_DNNL=AUTO|ON); core/ops/conv2d.c keeps the
 * im2col + sgemm convolution as the readable reference the tests compare against. */
#pragma once
#include "core/engine.h"

/* Whether the CPU conv2d slot hands convolutions to oneDNN: on when the build has it,
 * unless the environment says T2S_ONEDNN=off (or 0). t2s_conv2d_set_onednn overrides
 * both (tests run the reference and oneDNN side by side) and returns the old setting. */
int t2s_conv2d_onednn_enabled(void);
int t2s_conv2d_set_onednn(int on);

/* The oneDNN forward / backward of a conv2d node. *done is 0 when oneDNN has no
 * implementation for the shape (the caller then runs the reference); a failing oneDNN
 * call sets ctx->err and returns its status. */
t2s_status t2s_conv2d_onednn_forward(t2s_ctx *ctx, t2s_node *node, int *done);
t2s_status t2s_conv2d_onednn_backward(t2s_ctx *ctx, t2s_node *node, const float *beta, int *done);
