/* HRDA (Hoyer et al., ECCV 2022): multi-resolution training and inference around a
 * segmentor with a scale-attention head (t2s_model_cfg.scale_attention).
 *
 * Training (HRDAEncoderDecoder.forward_train, scales [1, s]): from one full-resolution
 * crop X (N, 3, H, W),
 *   context  X_c = resize(X, s)            -> context logits l and attention logits z
 *   detail   X_d = X[box] (hr_crop pixels) -> detail logits d
 *   fused    F = up(a m) ins(d) + up((1 - a m) l),  a = sigmoid(z), m the detail box at
 *            the context resolution, up a bilinear x 1/s, ins = d placed at the box
 * with one shared encoder. F covers the whole crop at the head's output stride os;
 * the box is aligned to os / s pixels so m is exact on the context grid.
 *
 * Inference (HRDA's hr_slide_inference): the context pass as above over the whole
 * image, the detail logits from a sliding window of hr_crop (stride slide_stride) over
 * the full-resolution image, merged by averaging (slide_merge), and F with m = 1. */
#pragma once
#include "core/nn/segmentor.h"
#include "core/ops.h"
#include "core/rng.h"

typedef struct t2s_hrda_cfg {
  float context_scale;      /* s: 0.5 */
  int hr_crop[2];           /* detail crop [W, H] in full-resolution pixels: 512 x 512 */
  int slide_stride[2];      /* inference detail window stride [W, H]: hr_crop / 2 */
} t2s_hrda_cfg;

/* A detail box in full-resolution pixels. */
typedef struct t2s_hrda_box {
  int y0, x0, h, w;
} t2s_hrda_box;

typedef struct t2s_hrda_out {
  t2s_tensor *fused;        /* (N, C, H / os, W / os) */
  t2s_tensor *context;      /* context logits (N, C, s H / os, s W / os) */
  t2s_tensor *detail;       /* detail logits (N, C, h / os, w / os) (training) */
  t2s_tensor *context_features, *detail_features;  /* t2s_seg_out.features of each pass */
} t2s_hrda_out;

/* Checks the geometry for an H x W full-resolution input: s H and s W integers that
 * are multiples of os, a detail crop inside the image and a multiple of os / s,
 * a slide stride that is a multiple of os. Messages name the model.hrda.* key. */
t2s_status t2s_hrda_check(const t2s_hrda_cfg *cfg, int os, int h, int w, t2s_error *err);

/* The detail box of one training iteration: uniform over the positions aligned to
 * os / s (HRDA's get_crop_bbox with crop_coord_divisible), drawn from key (one box per
 * global batch, like HRDA's one box per batch: every rank draws the same). */
t2s_hrda_box t2s_hrda_draw_box(const t2s_hrda_cfg *cfg, int os, int h, int w, t2s_rng_key key);

/* fused = up(sigmoid(z) m) ins(d) + up((1 - sigmoid(z) m) l): l, z at the context
 * resolution (N, C, hc, wc), d at (y0, x0) of the (N, C, hc / s, wc / s) result; m the
 * box (my0, mx0, mh, mw) of the context grid. bf16 inputs are widened first. */
t2s_tensor *t2s_hrda_fuse_logits(t2s_ctx *ctx, t2s_tensor *l, t2s_tensor *z, t2s_tensor *d,
                                 const t2s_hrda_gate_args *m, int y0, int x0, float scale);

/* The training forward on the normalised full-resolution crop x with the detail box. */
t2s_status t2s_hrda_forward_train(t2s_ctx *ctx, const t2s_segmentor *m, const t2s_hrda_cfg *cfg,
                                  t2s_tensor *x, const t2s_hrda_box *box, t2s_hrda_out *out);

/* HRDA inference on the normalised full-resolution image x: out->fused and
 * out->context (+ context_features). The detail windows run as one batch (HRDA's
 * batched slide). */
t2s_status t2s_hrda_infer(t2s_ctx *ctx, const t2s_segmentor *m, const t2s_hrda_cfg *cfg, t2s_tensor *x,
                          t2s_hrda_out *out);
