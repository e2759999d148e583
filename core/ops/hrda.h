/* HRDA's multi-resolution pieces (Hoyer et al., "HRDA: Context-Aware High-Resolution
 * Domain-Adaptive Semantic Segmentation", ECCV 2022), as ops shared by
 * core/ops/hrda.c and core/cuda/hrda.cu:
 *
 *   crop         y = x[:, :, y0:y0+h, x0:x0+w]; backward pads dy into zeros. Also crops
 *                uint8 label maps (N, H, W) (no gradient).
 *   slide_merge  the sliding-window logits of one grid (t2s_slide_grid, mmseg's
 *                slide_inference geometry) summed into the full map and divided by how
 *                many windows cover each pixel (HRDA decode_hr: preds / count_mat).
 *   hrda_gate    at the context resolution: a' = sigmoid(z) * m (z the scale-attention
 *                head's logits, m = 1 inside the detail box,
 *                0 outside) and L = (1 - a') * lr, stacked as (N, 2C, h, w) = [a'; L] so
 *                that one bilinear resize upsamples both.
 *   hrda_fuse    at the detail resolution: fused = U[C:] + U[:C] * ins(hr), U the
 *                upsampled [a'; L] and ins(hr) the detail logits inserted at (y0, x0)
 *                in zeros.
 * Together (t2s_hrda_fuse_logits, core/nn/hrda.h) they are HRDAHead.forward:
 *   fused = up(att * m) * ins(hr) + up((1 - att * m) * lr),  att = sigmoid(z).
 * Activations are f32 (N, C, H, W); the CUDA slots read NHWC f32 (no bf16 path: HRDA
 * widens bf16 logits with t2s_to_f32 before these ops). */
#pragma once
#include "core/engine.h"

typedef struct t2s_crop_args {
  int y0, x0, h, w;
} t2s_crop_args;
/* The (h, w) window at (y0, x0) of x: f32 (N, C, H, W), or an (N, H, W) map without
 * gradient (uint8 labels, f32 pixel weights). The window must lie inside x. */
t2s_tensor *t2s_crop(t2s_ctx *ctx, t2s_tensor *x, int y0, int x0, int h, int w);

/* A sliding-window grid over an (h, w) map with windows of crop and steps of stride
 * (mmseg slide_inference): n_rows = max(h - crop_h + stride_h - 1, 0) / stride_h + 1
 * rows of windows, window (r, c) at y = max(min(r stride_h + crop_h, h) - crop_h, 0)
 * (the last window is pushed back inside), the same for x; every window is
 * min(crop, size) big. Window k = r * n_cols + c. */
#define T2S_SLIDE_MAX_WINDOWS 256
typedef struct t2s_slide_grid {
  int h, w;                /* the map the windows tile */
  int crop_h, crop_w;
  int stride_h, stride_w;
} t2s_slide_grid;
/* Windows of the grid, or -1 when a size is not positive. */
int t2s_slide_grid_count(const t2s_slide_grid *g);
/* Window k's top-left corner and size. */
void t2s_slide_grid_box(const t2s_slide_grid *g, int k, int *y0, int *x0, int *h, int *w);

typedef struct t2s_slide_merge_args {
  t2s_slide_grid grid;
  int n;                   /* images; windows holds K x n of them */
} t2s_slide_merge_args;
/* windows (K n, C, wh, ww), window k of image b at row k n + b (HRDA's batched slide:
 * torch.cat of the crops), wh x ww the grid's window size; returns (n, C, g.h, g.w). */
t2s_tensor *t2s_slide_merge(t2s_ctx *ctx, t2s_tensor *windows, int n, const t2s_slide_grid *g);

typedef struct t2s_hrda_gate_args {
  int y0, x0, h, w;        /* the detail box at the context resolution (the mask m) */
} t2s_hrda_gate_args;
/* att (N, C, h, w): the scale-attention head's logits z (class-wise attention, HRDA's
 * default), and lr (N, C, h, w) -> (N, 2C, h, w) = [a m; (1 - a m) lr], a = sigmoid(z). */
t2s_tensor *t2s_hrda_gate(t2s_ctx *ctx, t2s_tensor *att, t2s_tensor *lr, const t2s_hrda_gate_args *box);

typedef struct t2s_hrda_fuse_args {
  int y0, x0;              /* where the detail logits sit in the fused map */
} t2s_hrda_fuse_args;
/* up (N, 2C, H, W) = [A; U] and hr (N, C, hh, ww) -> (N, C, H, W) = U + A * ins(hr). */
t2s_tensor *t2s_hrda_fuse(t2s_ctx *ctx, t2s_tensor *up, t2s_tensor *hr, int y0, int x0);
