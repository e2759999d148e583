/* Resizing on the CPU: bilinear (with backward) and nearest (labels, no
 * gradient), both with PyTorch F.interpolate semantics when the output size is
 * given (not a scale factor).
 *
 * Bilinear source coordinate of output index d along an axis of size in -> out:
 *   align_corners = 1: src = d * (in - 1) / (out - 1)        (0 when out == 1)
 *   align_corners = 0: src = max((d + 0.5) * in / out - 0.5, 0)
 * then i0 = floor(src), i1 = min(i0 + 1, in - 1), l1 = src - i0, l0 = 1 - l1, and
 *   y[h][w] = l0h (l0w x[h0][w0] + l1w x[h0][w1]) + l1h (l0w x[h1][w0] + l1w x[h1][w1]).
 * Indices and float weights are computed as in PyTorch's CPU kernel; outputs
 * agree with PyTorch 1.13 to a few float ulps (its vectorised loop may fuse
 * multiply-adds, which this build forbids). Backward scatters dy with the same
 * four weights. */
#include <math.h>
#include <string.h>

#include "core/ops/resize.h"

typedef t2s_resize_args resize_args;

typedef struct lerp_axis {
  int64_t i0, i1;
  float l0, l1;
} lerp_axis;

static void lerp_axis_fill(lerp_axis *ax, int64_t in, int64_t out, int align_corners) {
  float scale;
  if (align_corners) scale = out > 1 ? (float)(in - 1) / (float)(out - 1) : 0.0f;
  else scale = (float)in / (float)out;
  for (int64_t d = 0; d < out; d++) {
    /* PyTorch evaluates scale * (d + 0.5) - 0.5 in double (d + 0.5 is a double)
     * and rounds once to float */
    float src = align_corners ? scale * (float)d : (float)((double)scale * (d + 0.5) - 0.5);
    if (src < 0.0f) src = 0.0f;
    int64_t i0 = (int64_t)src;
    if (i0 > in - 1) i0 = in - 1;
    ax[d].i0 = i0;
    ax[d].i1 = i0 < in - 1 ? i0 + 1 : i0;
    ax[d].l1 = src - (float)i0;
    ax[d].l0 = 1.0f - ax[d].l1;
  }
}

/* Interpolation tables for both axes, in the pass arena (NULL with ctx->err set). */
static lerp_axis *lerp_tables(t2s_ctx *ctx, const t2s_tensor *x, const resize_args *a) {
  int64_t in_h = x->shape[2], in_w = x->shape[3];
  lerp_axis *ax = t2s_scratch(ctx, (size_t)(a->out_h + a->out_w) * sizeof *ax);
  if (ax == NULL) return NULL;
  lerp_axis_fill(ax, in_h, a->out_h, a->align_corners);
  lerp_axis_fill(ax + a->out_h, in_w, a->out_w, a->align_corners);
  return ax;
}

static int resize_check(t2s_ctx *ctx, const char *op, const t2s_tensor *x, int out_h, int out_w) {
  if (out_h < 1 || out_w < 1) {
    t2s_ctx_fail(ctx, T2S_ERR_INVALID, "%s: output size %dx%d must be positive", op, out_h, out_w);
    return 0;
  }
  if (x->ndim < 2 || x->shape[x->ndim - 1] < 1 || x->shape[x->ndim - 2] < 1) {
    char s[96];
    t2s_ctx_fail(ctx, T2S_ERR_INVALID, "%s: input %s has no (H, W) to resize", op,
                 t2s_shape_str(x, s, sizeof s));
    return 0;
  }
  return 1;
}

/* ---- bilinear ---- */
t2s_tensor *t2s_resize_bilinear(t2s_ctx *ctx, t2s_tensor *x, int out_h, int out_w,
                                int align_corners) {
  if (!t2s_ctx_ok(ctx) || x == NULL) return NULL;
  if (!resize_check(ctx, "resize_bilinear", x, out_h, out_w)) return NULL;
  if (x->ndim != 4 || !t2s_is_float(x)) {
    char s[96];
    return t2s_ctx_fail(ctx, T2S_ERR_INVALID,
                        "resize_bilinear: input is %s %s, expected float32 (or bfloat16 under "
                        "precision bf16) (N, C, H, W)",
                        t2s_dtype_name(x->dtype), t2s_shape_str(x, s, sizeof s));
  }
  resize_args a = {out_h, out_w, align_corners != 0};
  t2s_tensor *in[1] = {x};
  t2s_tensor *out = t2s_tensor_new4(ctx, x->dtype, x->shape[0], x->shape[1], out_h, out_w);
  return t2s_op_apply(ctx, T2S_OP_resize_bilinear, in, 1, out, &a, sizeof a);
}

t2s_status t2s_resize_bilinear_cpu_forward(t2s_ctx *ctx, t2s_node *node) {
  const resize_args *a = node->args;
  const t2s_tensor *x = node->in[0];
  lerp_axis *ax = lerp_tables(ctx, x, a);
  if (ax == NULL) return ctx->err.status;
  const lerp_axis *ah = ax, *aw = ax + a->out_h;
  int64_t planes = x->shape[0] * x->shape[1], in_w = x->shape[3];
  int64_t in_plane = x->shape[2] * in_w, out_plane = (int64_t)a->out_h * a->out_w;
  for (int64_t p = 0; p < planes; p++) {
    const float *src = t2s_f32(x) + p * in_plane;
    float *dst = t2s_f32(node->out) + p * out_plane;
    for (int oh = 0; oh < a->out_h; oh++) {
      const float *r0 = src + ah[oh].i0 * in_w, *r1 = src + ah[oh].i1 * in_w;
      float l0h = ah[oh].l0, l1h = ah[oh].l1;
      for (int ow = 0; ow < a->out_w; ow++) {
        const lerp_axis *w = &aw[ow];
        dst[(int64_t)oh * a->out_w + ow] = l0h * (w->l0 * r0[w->i0] + w->l1 * r0[w->i1]) +
                                           l1h * (w->l0 * r1[w->i0] + w->l1 * r1[w->i1]);
      }
    }
  }
  return T2S_OK;
}

t2s_status t2s_resize_bilinear_cpu_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  const resize_args *a = node->args;
  const t2s_tensor *x = node->in[0];
  lerp_axis *ax = lerp_tables(ctx, x, a);
  if (ax == NULL) return ctx->err.status;
  const lerp_axis *ah = ax, *aw = ax + a->out_h;
  int64_t planes = x->shape[0] * x->shape[1], in_w = x->shape[3];
  int64_t in_plane = x->shape[2] * in_w, out_plane = (int64_t)a->out_h * a->out_w;
  if (beta[0] == 0.0f) memset(x->grad, 0, (size_t)(planes * in_plane) * sizeof(float));
  for (int64_t p = 0; p < planes; p++) {
    float *dx = x->grad + p * in_plane;
    const float *dy = node->out->grad + p * out_plane;
    for (int oh = 0; oh < a->out_h; oh++) {
      float *r0 = dx + ah[oh].i0 * in_w, *r1 = dx + ah[oh].i1 * in_w;
      float l0h = ah[oh].l0, l1h = ah[oh].l1;
      for (int ow = 0; ow < a->out_w; ow++) {
        const lerp_axis *w = &aw[ow];
        float g = dy[(int64_t)oh * a->out_w + ow];
        r0[w->i0] += l0h * w->l0 * g;
        r0[w->i1] += l0h * w->l1 * g;
        r1[w->i0] += l1h * w->l0 * g;
        r1[w->i1] += l1h * w->l1 * g;
      }
    }
  }
  return T2S_OK;
}

/* ---- nearest: src = min(floor(d * (in / out)), in - 1), the scale in float as in PyTorch ---- */
t2s_tensor *t2s_resize_nearest(t2s_ctx *ctx, t2s_tensor *x, int out_h, int out_w) {
  if (!t2s_ctx_ok(ctx) || x == NULL) return NULL;
  if (!resize_check(ctx, "resize_nearest", x, out_h, out_w)) return NULL;
  int u8_ok = x->dtype == T2S_U8 && (x->ndim == 3 || (x->ndim == 4 && x->shape[1] == 1));
  int f32_ok = t2s_is_float(x) && x->ndim == 4;
  if (!u8_ok && !f32_ok) {
    char s[96];
    return t2s_ctx_fail(ctx, T2S_ERR_INVALID,
                        "resize_nearest: input is %s %s; expected uint8 labels (N, H, W) or "
                        "(N, 1, H, W), or float32 / bfloat16 (N, C, H, W)",
                        t2s_dtype_name(x->dtype), t2s_shape_str(x, s, sizeof s));
  }
  int64_t shape[T2S_MAX_DIMS];
  for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
  shape[x->ndim - 2] = out_h;
  shape[x->ndim - 1] = out_w;
  resize_args a = {out_h, out_w, 0};
  t2s_tensor *in[1] = {x};
  return t2s_op_apply(ctx, T2S_OP_resize_nearest, in, 1,
                      t2s_tensor_new(ctx, x->dtype, x->ndim, shape), &a, sizeof a);
}

static void nearest_axis_fill(int64_t *src, int64_t in, int64_t out) {
  float scale = (float)in / (float)out;
  for (int64_t d = 0; d < out; d++) {
    int64_t s = (int64_t)floorf((float)d * scale);
    src[d] = s < in - 1 ? s : in - 1;
  }
}

t2s_status t2s_resize_nearest_cpu_forward(t2s_ctx *ctx, t2s_node *node) {
  const resize_args *a = node->args;
  const t2s_tensor *x = node->in[0];
  int64_t in_h = x->shape[x->ndim - 2], in_w = x->shape[x->ndim - 1];
  int64_t planes = t2s_numel(x) / (in_h * in_w);
  int64_t *sh = t2s_scratch(ctx, (size_t)(a->out_h + a->out_w) * sizeof *sh);
  if (sh == NULL) return ctx->err.status;
  int64_t *sw = sh + a->out_h;
  nearest_axis_fill(sh, in_h, a->out_h);
  nearest_axis_fill(sw, in_w, a->out_w);
  for (int64_t p = 0; p < planes; p++)
    for (int oh = 0; oh < a->out_h; oh++) {
      int64_t src = (p * in_h + sh[oh]) * in_w, dst = (p * a->out_h + oh) * a->out_w;
      if (x->dtype == T2S_U8)
        for (int ow = 0; ow < a->out_w; ow++) t2s_u8(node->out)[dst + ow] = t2s_u8(x)[src + sw[ow]];
      else
        for (int ow = 0; ow < a->out_w; ow++) t2s_f32(node->out)[dst + ow] = t2s_f32(x)[src + sw[ow]];
    }
  return T2S_OK;
}
/* No t2s_resize_nearest_cpu_backward: the op is never taped (labels take no gradient). */
