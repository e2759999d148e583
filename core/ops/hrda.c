/* HRDA's ops on the CPU (core/ops/hrda.h): crop, slide_merge, hrda_gate, hrda_fuse.
 * NCHW f32; every backward honours the write/accumulate contract of core/engine.h
 * (beta 0: write, pixels the op does not reach included; beta 1: add). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/ops/hrda.h"

static inline void put(float *out, int64_t i, float v, float beta) {
  out[i] = beta != 0.0f ? out[i] + v : v;
}

static t2s_tensor *fail_shape(t2s_ctx *ctx, const char *op, const char *what, const t2s_tensor *t,
                              const char *want) {
  char s[96];
  return t2s_ctx_fail(ctx, T2S_ERR_INVALID, "%s: %s is %s %s; expected %s", op, what,
                      t2s_dtype_name(t->dtype), t2s_shape_str(t, s, sizeof s), want);
}

/* ---- crop ---- */
t2s_tensor *t2s_crop(t2s_ctx *ctx, t2s_tensor *x, int y0, int x0, int h, int w) {
  if (!t2s_ctx_ok(ctx) || x == NULL) return NULL;
  /* (N, H, W) maps: labels, or pixel weights that take no gradient */
  int labels = x->ndim == 3 && (x->dtype == T2S_U8 || (x->dtype == T2S_F32 && !x->requires_grad));
  if (!labels && !(x->dtype == T2S_F32 && x->ndim == 4))
    return fail_shape(ctx, "crop", "the input", x, "float32 (N, C, H, W), or a uint8 / float32 map "
                      "(N, H, W) without gradient");
  int64_t H = x->shape[x->ndim - 2], W = x->shape[x->ndim - 1];
  if (h < 1 || w < 1 || y0 < 0 || x0 < 0 || y0 + h > H || x0 + w > W)
    return t2s_ctx_fail(ctx, T2S_ERR_INVALID, "crop: window %dx%d at (y %d, x %d) does not lie inside "
                        "the %lldx%lld input", h, w, y0, x0, (long long)H, (long long)W);
  t2s_crop_args a = {y0, x0, h, w};
  t2s_tensor *in[1] = {x};
  t2s_tensor *out = labels ? t2s_tensor_new(ctx, x->dtype, 3, (int64_t[]){x->shape[0], h, w})
                           : t2s_tensor_new4(ctx, T2S_F32, x->shape[0], x->shape[1], h, w);
  return t2s_op_apply(ctx, T2S_OP_crop, in, 1, out, &a, sizeof a);
}

t2s_status t2s_crop_cpu_forward(t2s_ctx *ctx, t2s_node *node) {
  (void)ctx;
  const t2s_crop_args *a = node->args;
  const t2s_tensor *x = node->in[0];
  int64_t H = x->shape[x->ndim - 2], W = x->shape[x->ndim - 1];
  int64_t planes = t2s_numel(x) / (H * W);
  size_t elem = x->dtype == T2S_U8 ? 1 : sizeof(float);
  const char *src = x->data;
  char *dst = node->out->data;
  for (int64_t p = 0; p < planes; p++)
    for (int i = 0; i < a->h; i++)
      memcpy(dst + ((p * a->h + i) * a->w) * elem, src + ((p * H + a->y0 + i) * W + a->x0) * elem,
             (size_t)a->w * elem);
  return T2S_OK;
}

/* dx = dy inside the window, 0 outside (pad into zeros). */
t2s_status t2s_crop_cpu_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  (void)ctx;
  const t2s_crop_args *a = node->args;
  const t2s_tensor *x = node->in[0];
  int64_t H = x->shape[2], W = x->shape[3], planes = x->shape[0] * x->shape[1];
  if (beta[0] == 0.0f) memset(x->grad, 0, (size_t)t2s_numel(x) * sizeof(float));
  const float *dy = node->out->grad;
  for (int64_t p = 0; p < planes; p++)
    for (int i = 0; i < a->h; i++) {
      float *dx = x->grad + (p * H + a->y0 + i) * W + a->x0;
      const float *g = dy + (p * a->h + i) * a->w;
      for (int j = 0; j < a->w; j++) dx[j] += g[j];
    }
  return T2S_OK;
}

/* ---- the sliding-window grid ---- */
static int grid_steps(int size, int crop, int stride) {
  int over = size - crop + stride - 1;
  return (over > 0 ? over : 0) / stride + 1;
}

int t2s_slide_grid_count(const t2s_slide_grid *g) {
  if (g->h < 1 || g->w < 1 || g->crop_h < 1 || g->crop_w < 1 || g->stride_h < 1 || g->stride_w < 1)
    return -1;
  return grid_steps(g->h, g->crop_h, g->stride_h) * grid_steps(g->w, g->crop_w, g->stride_w);
}

static void grid_axis(int k, int size, int crop, int stride, int *start, int *len) {
  int end = k * stride + crop < size ? k * stride + crop : size;
  *start = end - crop > 0 ? end - crop : 0;
  *len = end - *start;
}

void t2s_slide_grid_box(const t2s_slide_grid *g, int k, int *y0, int *x0, int *h, int *w) {
  int cols = grid_steps(g->w, g->crop_w, g->stride_w);
  grid_axis(k / cols, g->h, g->crop_h, g->stride_h, y0, h);
  grid_axis(k % cols, g->w, g->crop_w, g->stride_w, x0, w);
}

/* ---- slide_merge ---- */
t2s_tensor *t2s_slide_merge(t2s_ctx *ctx, t2s_tensor *windows, int n, const t2s_slide_grid *g) {
  if (!t2s_ctx_ok(ctx) || windows == NULL) return NULL;
  int k = t2s_slide_grid_count(g);
  if (k < 1 || k > T2S_SLIDE_MAX_WINDOWS || n < 1)
    return t2s_ctx_fail(ctx, T2S_ERR_INVALID, "slide_merge: the grid (%dx%d map, crop %dx%d, stride "
                        "%dx%d) has %d windows; it needs 1..%d (use a larger stride)", g->h, g->w,
                        g->crop_h, g->crop_w, g->stride_h, g->stride_w, k, T2S_SLIDE_MAX_WINDOWS);
  int y0, x0, wh, ww;
  t2s_slide_grid_box(g, 0, &y0, &x0, &wh, &ww);
  if (windows->dtype != T2S_F32 || windows->ndim != 4 || windows->shape[0] != (int64_t)k * n ||
      windows->shape[2] != wh || windows->shape[3] != ww) {
    char want[96];
    snprintf(want, sizeof want, "float32 (%d, C, %d, %d): %d windows of %d images", k * n, wh, ww, k, n);
    return fail_shape(ctx, "slide_merge", "windows", windows, want);
  }
  t2s_slide_merge_args a = {*g, n};
  t2s_tensor *in[1] = {windows};
  return t2s_op_apply(ctx, T2S_OP_slide_merge, in, 1,
                      t2s_tensor_new4(ctx, T2S_F32, n, windows->shape[1], g->h, g->w), &a, sizeof a);
}

/* How many windows cover each pixel (h x w floats in the pass arena). */
static float *window_counts(t2s_ctx *ctx, const t2s_slide_grid *g) {
  float *cnt = t2s_host_scratch(ctx, (size_t)g->h * g->w * sizeof(float));
  if (cnt == NULL) return NULL;
  memset(cnt, 0, (size_t)g->h * g->w * sizeof(float));
  for (int k = 0, K = t2s_slide_grid_count(g); k < K; k++) {
    int y0, x0, h, w;
    t2s_slide_grid_box(g, k, &y0, &x0, &h, &w);
    for (int i = 0; i < h; i++)
      for (int j = 0; j < w; j++) cnt[(y0 + i) * g->w + x0 + j] += 1.0f;
  }
  return cnt;
}

/* out = (sum of the windows covering a pixel, in window order) / their count. */
t2s_status t2s_slide_merge_cpu_forward(t2s_ctx *ctx, t2s_node *node) {
  const t2s_slide_merge_args *a = node->args;
  const t2s_slide_grid *g = &a->grid;
  float *cnt = window_counts(ctx, g);
  if (cnt == NULL) return ctx->err.status;
  const t2s_tensor *win = node->in[0];
  int64_t C = win->shape[1], wh = win->shape[2], ww = win->shape[3], plane = (int64_t)g->h * g->w;
  float *out = t2s_f32(node->out);
  memset(out, 0, (size_t)t2s_numel(node->out) * sizeof(float));
  for (int k = 0, K = t2s_slide_grid_count(g); k < K; k++) {
    int y0, x0, h, w;
    t2s_slide_grid_box(g, k, &y0, &x0, &h, &w);
    for (int b = 0; b < a->n; b++)
      for (int64_t c = 0; c < C; c++) {
        const float *src = t2s_f32(win) + (((int64_t)k * a->n + b) * C + c) * wh * ww;
        float *dst = out + (b * C + c) * plane;
        for (int i = 0; i < h; i++)
          for (int j = 0; j < w; j++) dst[(y0 + i) * g->w + x0 + j] += src[i * ww + j];
      }
  }
  for (int64_t p = 0; p < a->n * C; p++)
    for (int64_t q = 0; q < plane; q++) out[p * plane + q] /= cnt[q];
  return T2S_OK;
}

/* d window = dy / count over the window's box. */
t2s_status t2s_slide_merge_cpu_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  const t2s_slide_merge_args *a = node->args;
  const t2s_slide_grid *g = &a->grid;
  float *cnt = window_counts(ctx, g);
  if (cnt == NULL) return ctx->err.status;
  const t2s_tensor *win = node->in[0];
  int64_t C = win->shape[1], wh = win->shape[2], ww = win->shape[3], plane = (int64_t)g->h * g->w;
  for (int k = 0, K = t2s_slide_grid_count(g); k < K; k++) {
    int y0, x0, h, w;
    t2s_slide_grid_box(g, k, &y0, &x0, &h, &w);
    for (int b = 0; b < a->n; b++)
      for (int64_t c = 0; c < C; c++) {
        float *dw = win->grad + (((int64_t)k * a->n + b) * C + c) * wh * ww;
        const float *dy = node->out->grad + (b * C + c) * plane;
        for (int i = 0; i < h; i++)
          for (int j = 0; j < w; j++) {
            int64_t q = (int64_t)(y0 + i) * g->w + x0 + j;
            put(dw, i * ww + j, dy[q] / cnt[q], beta[0]);
          }
      }
  }
  return T2S_OK;
}

/* ---- hrda_gate ---- */
t2s_tensor *t2s_hrda_gate(t2s_ctx *ctx, t2s_tensor *att, t2s_tensor *lr, const t2s_hrda_gate_args *box) {
  if (!t2s_ctx_ok(ctx) || att == NULL || lr == NULL) return NULL;
  if (lr->dtype != T2S_F32 || lr->ndim != 4)
    return fail_shape(ctx, "hrda_gate", "the context logits", lr, "float32 (N, C, h, w)");
  if (!t2s_same_shape(att, lr) || att->dtype != T2S_F32)
    return fail_shape(ctx, "hrda_gate", "the attention", att, "float32 of the context logits' shape "
                      "(class-wise attention)");
  if (box->h < 0 || box->w < 0 || box->y0 < 0 || box->x0 < 0 || box->y0 + box->h > lr->shape[2] ||
      box->x0 + box->w > lr->shape[3])
    return t2s_ctx_fail(ctx, T2S_ERR_INVALID, "hrda_gate: detail box %dx%d at (y %d, x %d) does not lie "
                        "inside the %lldx%lld context map", box->h, box->w, box->y0, box->x0,
                        (long long)lr->shape[2], (long long)lr->shape[3]);
  t2s_tensor *in[2] = {att, lr};
  return t2s_op_apply(ctx, T2S_OP_hrda_gate, in, 2,
                      t2s_tensor_new4(ctx, T2S_F32, lr->shape[0], 2 * lr->shape[1], lr->shape[2],
                                      lr->shape[3]), box, sizeof *box);
}

static inline float sigmoid(float z) { return 1.0f / (1.0f + expf(-z)); }

static inline int inside(const t2s_hrda_gate_args *b, int64_t y, int64_t x) {
  return y >= b->y0 && y < b->y0 + b->h && x >= b->x0 && x < b->x0 + b->w;
}

t2s_status t2s_hrda_gate_cpu_forward(t2s_ctx *ctx, t2s_node *node) {
  (void)ctx;
  const t2s_hrda_gate_args *b = node->args;
  const t2s_tensor *att = node->in[0], *lr = node->in[1];
  int64_t N = lr->shape[0], C = lr->shape[1], H = lr->shape[2], W = lr->shape[3];
  for (int64_t n = 0; n < N; n++)
    for (int64_t c = 0; c < C; c++)
      for (int64_t y = 0; y < H; y++)
        for (int64_t x = 0; x < W; x++) {
          int64_t i = ((n * C + c) * H + y) * W + x;
          float am = inside(b, y, x) ? sigmoid(t2s_f32(att)[i]) : 0.0f;
          t2s_f32(node->out)[((n * 2 * C + c) * H + y) * W + x] = am;
          t2s_f32(node->out)[((n * 2 * C + C + c) * H + y) * W + x] = (1.0f - am) * t2s_f32(lr)[i];
        }
  return T2S_OK;
}

/* With g1 = dy[:, :C], g2 = dy[:, C:] and a = sigmoid(z):
 * d z = m a (1 - a) (g1 - g2 lr), d lr = g2 (1 - a m). */
t2s_status t2s_hrda_gate_cpu_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  (void)ctx;
  const t2s_hrda_gate_args *b = node->args;
  const t2s_tensor *att = node->in[0], *lr = node->in[1];
  int64_t N = lr->shape[0], C = lr->shape[1], H = lr->shape[2], W = lr->shape[3];
  const float *dy = node->out->grad;
  for (int64_t n = 0; n < N; n++)
    for (int64_t c = 0; c < C; c++)
      for (int64_t y = 0; y < H; y++)
        for (int64_t x = 0; x < W; x++) {
          int64_t i = ((n * C + c) * H + y) * W + x;
          int m = inside(b, y, x);
          float g1 = dy[((n * 2 * C + c) * H + y) * W + x], g2 = dy[((n * 2 * C + C + c) * H + y) * W + x];
          float a = sigmoid(t2s_f32(att)[i]), am = m ? a : 0.0f;
          if (t2s_wants_grad(att)) put(att->grad, i, m ? a * (1.0f - a) * (g1 - g2 * t2s_f32(lr)[i]) : 0.0f, beta[0]);
          if (t2s_wants_grad(lr)) put(lr->grad, i, g2 * (1.0f - am), beta[1]);
        }
  return T2S_OK;
}

/* ---- hrda_fuse ---- */
t2s_tensor *t2s_hrda_fuse(t2s_ctx *ctx, t2s_tensor *up, t2s_tensor *hr, int y0, int x0) {
  if (!t2s_ctx_ok(ctx) || up == NULL || hr == NULL) return NULL;
  if (hr->dtype != T2S_F32 || hr->ndim != 4)
    return fail_shape(ctx, "hrda_fuse", "the detail logits", hr, "float32 (N, C, hh, ww)");
  if (up->dtype != T2S_F32 || up->ndim != 4 || up->shape[0] != hr->shape[0] ||
      up->shape[1] != 2 * hr->shape[1])
    return fail_shape(ctx, "hrda_fuse", "the upsampled gate", up, "float32 (N, 2C, H, W) of the "
                      "detail logits' N and C");
  if (y0 < 0 || x0 < 0 || y0 + hr->shape[2] > up->shape[2] || x0 + hr->shape[3] > up->shape[3])
    return t2s_ctx_fail(ctx, T2S_ERR_INVALID, "hrda_fuse: the %lldx%lld detail logits at (y %d, x %d) "
                        "do not lie inside the %lldx%lld fused map", (long long)hr->shape[2],
                        (long long)hr->shape[3], y0, x0, (long long)up->shape[2], (long long)up->shape[3]);
  t2s_hrda_fuse_args a = {y0, x0};
  t2s_tensor *in[2] = {up, hr};
  return t2s_op_apply(ctx, T2S_OP_hrda_fuse, in, 2,
                      t2s_tensor_new4(ctx, T2S_F32, hr->shape[0], hr->shape[1], up->shape[2], up->shape[3]),
                      &a, sizeof a);
}

/* The detail logit under fused pixel (y, x) of plane (n, c), or NULL outside its box. */
static inline const float *hr_at(const t2s_tensor *hr, const t2s_hrda_fuse_args *a, int64_t n, int64_t c,
                                 int64_t y, int64_t x) {
  int64_t i = y - a->y0, j = x - a->x0;
  if (i < 0 || j < 0 || i >= hr->shape[2] || j >= hr->shape[3]) return NULL;
  return t2s_f32(hr) + ((n * hr->shape[1] + c) * hr->shape[2] + i) * hr->shape[3] + j;
}

t2s_status t2s_hrda_fuse_cpu_forward(t2s_ctx *ctx, t2s_node *node) {
  (void)ctx;
  const t2s_hrda_fuse_args *a = node->args;
  const t2s_tensor *up = node->in[0], *hr = node->in[1];
  int64_t N = hr->shape[0], C = hr->shape[1], H = up->shape[2], W = up->shape[3];
  for (int64_t n = 0; n < N; n++)
    for (int64_t c = 0; c < C; c++)
      for (int64_t y = 0; y < H; y++)
        for (int64_t x = 0; x < W; x++) {
          const float *h = hr_at(hr, a, n, c, y, x);
          float A = t2s_f32(up)[((n * 2 * C + c) * H + y) * W + x];
          float U = t2s_f32(up)[((n * 2 * C + C + c) * H + y) * W + x];
          t2s_f32(node->out)[((n * C + c) * H + y) * W + x] = h ? U + A * *h : U;
        }
  return T2S_OK;
}

/* d A = dy ins(hr), d U = dy, d hr = dy A over the box. */
t2s_status t2s_hrda_fuse_cpu_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  (void)ctx;
  const t2s_hrda_fuse_args *a = node->args;
  const t2s_tensor *up = node->in[0], *hr = node->in[1];
  int64_t N = hr->shape[0], C = hr->shape[1], H = up->shape[2], W = up->shape[3];
  const float *dy = node->out->grad;
  for (int64_t n = 0; n < N; n++)
    for (int64_t c = 0; c < C; c++)
      for (int64_t y = 0; y < H; y++)
        for (int64_t x = 0; x < W; x++) {
          const float *h = hr_at(hr, a, n, c, y, x);
          float g = dy[((n * C + c) * H + y) * W + x];
          int64_t ia = ((n * 2 * C + c) * H + y) * W + x, iu = ((n * 2 * C + C + c) * H + y) * W + x;
          if (t2s_wants_grad(up)) {
            put(up->grad, ia, h ? g * *h : 0.0f, beta[0]);
            put(up->grad, iu, g, beta[0]);
          }
          if (t2s_wants_grad(hr) && h) put(hr->grad, h - t2s_f32(hr), g * t2s_f32(up)[ia], beta[1]);
        }
  return T2S_OK;
}
