/* HRDA's ops on CUDA; semantics of core/ops/hrda.c (crop, slide_merge, hrda_gate,
 * hrda_fuse). Activations NHWC f32, labels (N, H, W) uint8. One thread per output
 * (forward) or per input element (backward): every gradient is a gather, so there
 * are no float atomics and the sums run in the CPU's order (slide_merge adds the
 * windows in window order, then divides by the count): results equal the CPU's. */
#include "core/cuda/kernels.cuh"

using namespace t2s_cuda;

namespace {

/* NHWC index i -> (n, y, x, c) of an (N, H, W, C) tensor. */
struct nhwc { int64_t n, y, x, c; };
__device__ __forceinline__ nhwc split(int64_t i, int64_t H, int64_t W, int64_t C) {
  nhwc p;
  p.c = i % C;
  int64_t t = i / C;
  p.x = t % W;
  p.y = (t / W) % H;
  p.n = t / (W * H);
  return p;
}

t2s_status need_nhwc(t2s_ctx *ctx, const t2s_node *node, const char *op) {
  for (int k = 0; k < node->n_in; k++)
    if (node->in[k]->dtype == T2S_F32 && node->in[k]->ndim == 4 && node->in[k]->layout != T2S_LAYOUT_NHWC) {
      t2s_ctx_fail(ctx, T2S_ERR_INVALID, "op '%s' on cuda: input %d must be an NHWC activation", op, k);
      return T2S_ERR_INVALID;
    }
  return T2S_OK;
}

/* ---- crop ---- */
template <class T>
struct crop_fwd {
  const T *x; T *y; int64_t H, W, C; t2s_crop_args a;
  __device__ void operator()(int64_t i) const {
    nhwc p = split(i, a.h, a.w, C);
    y[i] = x[((p.n * H + a.y0 + p.y) * W + a.x0 + p.x) * C + p.c];
  }
};

struct crop_bwd {
  const float *dy; float *dx; int64_t H, W, C; t2s_crop_args a; bool acc;
  __device__ void operator()(int64_t i) const {
    nhwc p = split(i, H, W, C);
    int64_t r = p.y - a.y0, s = p.x - a.x0;
    bool in = r >= 0 && s >= 0 && r < a.h && s < a.w;
    put(dx, i, in ? dy[((p.n * a.h + r) * a.w + s) * C + p.c] : 0.0f, acc);
  }
};

t2s_status crop_forward(t2s_ctx *ctx, t2s_node *node) {
  const t2s_crop_args a = *(const t2s_crop_args *)node->args;
  const t2s_tensor *x = node->in[0];
  int64_t n = t2s_numel(node->out);
  if (x->dtype == T2S_U8)
    return launch_each(ctx, node, n, crop_fwd<uint8_t>{t2s_u8(x), t2s_u8(node->out), x->shape[1],
                                                       x->shape[2], 1, a});
  if (x->ndim == 3) /* an f32 (N, H, W) map (pixel weights) */
    return launch_each(ctx, node, n, crop_fwd<float>{t2s_f32(x), t2s_f32(node->out), x->shape[1],
                                                     x->shape[2], 1, a});
  if (need_nhwc(ctx, node, "crop") != T2S_OK) return T2S_ERR_INVALID;
  return launch_each(ctx, node, n, crop_fwd<float>{t2s_f32(x), t2s_f32(node->out), x->shape[2],
                                                   x->shape[3], x->shape[1], a});
}

t2s_status crop_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  const t2s_crop_args a = *(const t2s_crop_args *)node->args;
  const t2s_tensor *x = node->in[0];
  return launch_each(ctx, node, t2s_numel(x),
                     crop_bwd{node->out->grad, x->grad, x->shape[2], x->shape[3], x->shape[1], a,
                              beta[0] != 0.0f});
}

/* ---- slide_merge: the window boxes travel by value in the functor ---- */
struct boxes {
  int k, wh, ww, map_w, n;
  short y0[T2S_SLIDE_MAX_WINDOWS], x0[T2S_SLIDE_MAX_WINDOWS];
  __device__ bool covers(int w, int64_t y, int64_t x) const {
    return y >= y0[w] && y < y0[w] + wh && x >= x0[w] && x < x0[w] + ww;
  }
  __device__ float count(int64_t y, int64_t x) const {
    float c = 0.0f;
    for (int w = 0; w < k; w++) c += covers(w, y, x) ? 1.0f : 0.0f;
    return c;
  }
};

t2s_status make_boxes(t2s_ctx *ctx, const t2s_node *node, boxes *b) {
  const t2s_slide_merge_args *a = (const t2s_slide_merge_args *)node->args;
  if (need_nhwc(ctx, node, "slide_merge") != T2S_OK) return T2S_ERR_INVALID;
  if (a->grid.h > 32767 || a->grid.w > 32767) {
    t2s_ctx_fail(ctx, T2S_ERR_INVALID, "op 'slide_merge' on cuda: a %dx%d map is larger than 32767",
                 a->grid.h, a->grid.w);
    return T2S_ERR_INVALID;
  }
  b->k = t2s_slide_grid_count(&a->grid);
  b->map_w = a->grid.w;
  b->n = a->n;
  for (int w = 0; w < b->k; w++) {
    int y0, x0;
    t2s_slide_grid_box(&a->grid, w, &y0, &x0, &b->wh, &b->ww);
    b->y0[w] = (short)y0;
    b->x0[w] = (short)x0;
  }
  return T2S_OK;
}

struct merge_fwd {
  const float *win; float *out; int64_t H, W, C; boxes b;
  __device__ void operator()(int64_t i) const {
    nhwc p = split(i, H, W, C);
    float s = 0.0f;
    for (int w = 0; w < b.k; w++)
      if (b.covers(w, p.y, p.x))
        s = __fadd_rn(s, win[((((int64_t)w * b.n + p.n) * b.wh + p.y - b.y0[w]) * b.ww + p.x - b.x0[w]) * C + p.c]);
    out[i] = __fdiv_rn(s, b.count(p.y, p.x));
  }
};

struct merge_bwd {
  const float *dy; float *dwin; int64_t H, W, C; boxes b; bool acc;
  __device__ void operator()(int64_t i) const {
    nhwc p = split(i, b.wh, b.ww, C);  /* p.n: window row k n + image */
    int w = (int)(p.n / b.n);
    int64_t img = p.n % b.n, y = b.y0[w] + p.y, x = b.x0[w] + p.x;
    put(dwin, i, __fdiv_rn(dy[((img * H + y) * W + x) * C + p.c], b.count(y, x)), acc);
  }
};

t2s_status slide_merge_forward(t2s_ctx *ctx, t2s_node *node) {
  boxes b;
  if (make_boxes(ctx, node, &b) != T2S_OK) return ctx->err.status;
  const t2s_tensor *y = node->out;
  return launch_each(ctx, node, t2s_numel(y), merge_fwd{t2s_f32(node->in[0]), t2s_f32(node->out),
                                                         y->shape[2], y->shape[3], y->shape[1], b});
}

t2s_status slide_merge_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  boxes b;
  if (make_boxes(ctx, node, &b) != T2S_OK) return ctx->err.status;
  const t2s_tensor *y = node->out;
  return launch_each(ctx, node, t2s_numel(node->in[0]),
                     merge_bwd{y->grad, node->in[0]->grad, y->shape[2], y->shape[3], y->shape[1], b,
                               beta[0] != 0.0f});
}

/* ---- hrda_gate ---- */
struct gate_geom {
  int64_t H, W, C; t2s_hrda_gate_args box;
  __device__ bool inside(int64_t y, int64_t x) const {
    return y >= box.y0 && y < box.y0 + box.h && x >= box.x0 && x < box.x0 + box.w;
  }
};

__device__ __forceinline__ float sigmoid(float z) { return 1.0f / (1.0f + expf(-z)); }

struct gate_fwd {
  const float *att, *lr; float *out; gate_geom g;
  __device__ void operator()(int64_t i) const {
    nhwc p = split(i, g.H, g.W, g.C);
    float am = g.inside(p.y, p.x) ? sigmoid(att[i]) : 0.0f;
    int64_t o = ((p.n * g.H + p.y) * g.W + p.x) * 2 * g.C + p.c;
    out[o] = am;
    out[o + g.C] = __fmul_rn(__fsub_rn(1.0f, am), lr[i]);
  }
};

struct gate_bwd {
  const float *att, *lr, *dy; float *datt, *dlr; gate_geom g; bool acc_att, acc_lr;
  __device__ void operator()(int64_t i) const {
    nhwc p = split(i, g.H, g.W, g.C);
    bool m = g.inside(p.y, p.x);
    int64_t o = ((p.n * g.H + p.y) * g.W + p.x) * 2 * g.C + p.c;
    float g1 = dy[o], g2 = dy[o + g.C], a = sigmoid(att[i]), am = m ? a : 0.0f;
    float da = __fmul_rn(__fmul_rn(a, __fsub_rn(1.0f, a)), __fsub_rn(g1, __fmul_rn(g2, lr[i])));
    if (datt) put(datt, i, m ? da : 0.0f, acc_att);
    if (dlr) put(dlr, i, __fmul_rn(g2, __fsub_rn(1.0f, am)), acc_lr);
  }
};

gate_geom gate_of(const t2s_node *node) {
  const t2s_tensor *lr = node->in[1];
  return gate_geom{lr->shape[2], lr->shape[3], lr->shape[1], *(const t2s_hrda_gate_args *)node->args};
}

t2s_status hrda_gate_forward(t2s_ctx *ctx, t2s_node *node) {
  if (need_nhwc(ctx, node, "hrda_gate") != T2S_OK) return T2S_ERR_INVALID;
  return launch_each(ctx, node, t2s_numel(node->in[1]),
                     gate_fwd{t2s_f32(node->in[0]), t2s_f32(node->in[1]), t2s_f32(node->out), gate_of(node)});
}

t2s_status hrda_gate_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  t2s_tensor *att = node->in[0], *lr = node->in[1];
  return launch_each(ctx, node, t2s_numel(lr),
                     gate_bwd{t2s_f32(att), t2s_f32(lr), node->out->grad,
                              t2s_wants_grad(att) ? att->grad : NULL, t2s_wants_grad(lr) ? lr->grad : NULL,
                              gate_of(node), beta[0] != 0.0f, beta[1] != 0.0f});
}

/* ---- hrda_fuse ---- */
struct fuse_geom {
  int64_t H, W, C, hh, hw; t2s_hrda_fuse_args a;
  /* the detail element under fused (n, y, x, c), or -1 outside the box */
  __device__ int64_t hr_index(int64_t n, int64_t y, int64_t x, int64_t c) const {
    int64_t i = y - a.y0, j = x - a.x0;
    if (i < 0 || j < 0 || i >= hh || j >= hw) return -1;
    return ((n * hh + i) * hw + j) * C + c;
  }
};

struct fuse_fwd {
  const float *up, *hr; float *out; fuse_geom g;
  __device__ void operator()(int64_t i) const {
    nhwc p = split(i, g.H, g.W, g.C);
    int64_t o = ((p.n * g.H + p.y) * g.W + p.x) * 2 * g.C + p.c, h = g.hr_index(p.n, p.y, p.x, p.c);
    out[i] = h >= 0 ? __fadd_rn(up[o + g.C], __fmul_rn(up[o], hr[h])) : up[o + g.C];
  }
};

/* one thread per element of up: d A = dy ins(hr), d U = dy */
struct fuse_bwd_up {
  const float *hr, *dy; float *dup; fuse_geom g; bool acc;
  __device__ void operator()(int64_t i) const {
    nhwc p = split(i, g.H, g.W, 2 * g.C);
    int64_t c = p.c % g.C, d = ((p.n * g.H + p.y) * g.W + p.x) * g.C + c;
    if (p.c >= g.C) {
      put(dup, i, dy[d], acc);
    } else {
      int64_t h = g.hr_index(p.n, p.y, p.x, c);
      put(dup, i, h >= 0 ? __fmul_rn(dy[d], hr[h]) : 0.0f, acc);
    }
  }
};

/* one thread per detail element: d hr = dy A */
struct fuse_bwd_hr {
  const float *up, *dy; float *dhr; fuse_geom g; bool acc;
  __device__ void operator()(int64_t i) const {
    nhwc p = split(i, g.hh, g.hw, g.C);
    int64_t y = p.y + g.a.y0, x = p.x + g.a.x0;
    int64_t d = ((p.n * g.H + y) * g.W + x) * g.C + p.c;
    put(dhr, i, __fmul_rn(dy[d], up[((p.n * g.H + y) * g.W + x) * 2 * g.C + p.c]), acc);
  }
};

fuse_geom fuse_of(const t2s_node *node) {
  const t2s_tensor *up = node->in[0], *hr = node->in[1];
  return fuse_geom{up->shape[2], up->shape[3], hr->shape[1], hr->shape[2], hr->shape[3],
                   *(const t2s_hrda_fuse_args *)node->args};
}

t2s_status hrda_fuse_forward(t2s_ctx *ctx, t2s_node *node) {
  if (need_nhwc(ctx, node, "hrda_fuse") != T2S_OK) return T2S_ERR_INVALID;
  return launch_each(ctx, node, t2s_numel(node->out),
                     fuse_fwd{t2s_f32(node->in[0]), t2s_f32(node->in[1]), t2s_f32(node->out), fuse_of(node)});
}

t2s_status hrda_fuse_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  t2s_tensor *up = node->in[0], *hr = node->in[1];
  fuse_geom g = fuse_of(node);
  t2s_status st = T2S_OK;
  if (t2s_wants_grad(up))
    st = launch_each(ctx, node, t2s_numel(up), fuse_bwd_up{t2s_f32(hr), node->out->grad, up->grad, g, beta[0] != 0.0f});
  if (st == T2S_OK && t2s_wants_grad(hr))
    st = launch_each(ctx, node, t2s_numel(hr), fuse_bwd_hr{t2s_f32(up), node->out->grad, hr->grad, g, beta[1] != 0.0f});
  return st;
}

}  // namespace

T2S_CUDA_OP(crop)
T2S_CUDA_OP(slide_merge)
T2S_CUDA_OP(hrda_gate)
T2S_CUDA_OP(hrda_fuse)
