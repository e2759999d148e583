/* Winograd F(4x4, 3x3) convolutions behind the conv2d op's CPU slot
 * (core/ops/conv2d_winograd.c): 3x3, stride 1, groups 1, padding = dilation (any
 * dilation), fp32, for shapes where the tiles need clearly fewer multiplies than the
 * direct convolution. Everything else goes on to oneDNN or the reference. */
#pragma once
#include "core/engine.h"
#include "core/ops/conv2d.h"

/* Whether the CPU conv2d slot tries Winograd: on (1) unless the environment says
 * T2S_WINOGRAD=off (or 0). t2s_conv2d_set_winograd overrides it (the tests run the
 * reference and Winograd side by side) and returns the old setting; 2 (T2S_WINOGRAD=all)
 * runs Winograd on every shape it can, skipping the cost rule (tests of small shapes). */
int t2s_conv2d_winograd_enabled(void);
int t2s_conv2d_set_winograd(int on);

/* Whether Winograd would run a convolution of x (N, Cin, H, W) with w (Cout, Cin, kh,
 * kw) and a (when switched on): the shape conditions and the cost rule (see
 * conv2d_winograd.c). */
int t2s_conv2d_winograd_chosen(const t2s_tensor *x, const t2s_tensor *w,
                               const t2s_conv2d_args *a);
/* The scratch budget of one group of tiles (each of V, M, dM, dV; see "chunks" in
 * conv2d_winograd.c; default 32 MiB, T2S_WINOGRAD_CHUNK_MIB for experiments): sets it
 * (0: back to the default) and returns the old one. Tests set a small one to force many
 * chunks per image. */
size_t t2s_conv2d_winograd_set_chunk_bytes(size_t bytes);
/* How many forward / backward calls Winograd has run in this process (tests). */
long t2s_conv2d_winograd_calls(void);

/* The Winograd forward / backward of a conv2d node. *done is 0 when the shape is not
 * chosen (the caller goes on); a failing call sets ctx->err and returns its status.
 * The bias gradient is left to the caller. */
t2s_status t2s_conv2d_winograd_forward(t2s_ctx *ctx, t2s_node *node, int *done);
t2s_status t2s_conv2d_winograd_backward(t2s_ctx *ctx, t2s_node *node, const float *beta,
                                        int *done);
