/* conv2d forward, backward-data and backward-weights through oneDNN (the library
 * PyTorch's CPU path uses), plugged into the conv2d op's CPU slot.
 *
 * The engine keeps activations in plain NCHW and weights in OIHW; oneDNN's fast
 * kernels want channel-blocked layouts (nChw8c on AVX2, nChw16c on AVX-512). Each
 * primitive is created with "any" layouts so that oneDNN picks its best one, and the
 * tensors that differ are reordered in (x, w, dy) and out (y, dx, dw) around the call;
 * an output that accumulates (beta 1) is reordered with a sum post-op, so
 * grad = grad + reorder(result) happens in one pass.
 *
 * Creating a primitive costs milliseconds (oneDNN generates its kernel), so primitives
 * and their reorders are created once per convolution shape and kept for the life of
 * the process, as the CUDA backend keeps its cuDNN algorithm choices. Scratch memory
 * (blocked copies, oneDNN's scratchpad) comes from the pass arena and is released when
 * the call ends; primitives use the user-managed scratchpad, so several contexts may
 * run the same primitive at once. Shapes oneDNN has no implementation for fall back to
 * the reference (core/ops/conv2d.c), as does the whole op under T2S_ONEDNN=off. */
#include "core/ops/conv2d_dnnl.h"

#include <dnnl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/ops/conv2d.h"

/* ---- switch ---- */

static int onednn_state = -1; /* -1: not read from the environment yet */

int t2s_conv2d_onednn_enabled(void) {
  if (onednn_state < 0) {
    const char *v = getenv("T2S_ONEDNN");
    onednn_state = !(v && (strcmp(v, "off") == 0 || strcmp(v, "0") == 0));
  }
  return onednn_state;
}

int t2s_conv2d_set_onednn(int on) {
  int old = t2s_conv2d_onednn_enabled();
  onednn_state = on != 0;
  return old;
}

/* ---- engine, stream and the per-shape cache ---- */

static dnnl_engine_t engine;
static dnnl_stream_t stream;
static dnnl_status_t engine_status = dnnl_success;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;

static void engine_init(void) {
  engine_status = dnnl_engine_create(&engine, dnnl_cpu, 0);
  if (engine_status == dnnl_success) engine_status = dnnl_stream_create(&stream, engine, 0);
}

/* A tensor the engine holds in a plain layout, seen through one primitive: the
 * primitive's layout and the reorders between the two (NULL when they are the same
 * and nothing accumulates). */
typedef struct port {
  dnnl_memory_desc_t plain, md;
  dnnl_primitive_t in;      /* plain -> md (inputs) */
  dnnl_primitive_t out[2];  /* md -> plain: [0] overwrites, [1] adds (beta 1) */
} port;

enum { PASS_FWD, PASS_BWD_DATA, PASS_BWD_WEIGHTS, PASS_COUNT };

typedef struct conv_key {
  int64_t n, cin, h, w, cout, kh, kw;
  t2s_conv2d_args a;
  int bias;
} conv_key;

typedef struct conv_entry {
  conv_key key;
  int state[PASS_COUNT]; /* 0 not created yet, 1 ready, -1 oneDNN has no implementation */
  dnnl_primitive_desc_t fwd_pd; /* the hint the backward primitives need */
  dnnl_primitive_t prim[PASS_COUNT];
  port src, wei, dst;     /* forward: x, w in; y out */
  port bd_ddst, bd_wei, bd_dsrc; /* backward data: dy, w in; dx out */
  port bw_src, bw_ddst, bw_dwei; /* backward weights: x, dy in; dw out */
  struct conv_entry *next;
} conv_entry;

static conv_entry *cache;

static conv_key key_of(const t2s_node *node) {
  conv_key k;
  memset(&k, 0, sizeof k); /* the key is compared with memcmp: no stray padding bytes */
  const t2s_tensor *x = node->in[0], *w = node->in[1];
  k.n = x->shape[0], k.cin = x->shape[1], k.h = x->shape[2], k.w = x->shape[3];
  k.cout = w->shape[0], k.kh = w->shape[2], k.kw = w->shape[3];
  k.a = *(const t2s_conv2d_args *)node->args;
  k.bias = node->in[2] != NULL;
  return k;
}

/* ---- descriptors ---- */

typedef struct conv_mds {
  dnnl_memory_desc_t src, wei, dst, bias; /* plain layouts */
  dnnl_dims_t strides, dilates, pad_l, pad_r;
} conv_mds;

static dnnl_status_t conv_mds_make(const conv_key *k, conv_mds *m) {
  const t2s_conv2d_args *a = &k->a;
  int64_t hout = (k->h + 2 * a->pad_h - a->dil_h * (k->kh - 1) - 1) / a->stride_h + 1;
  int64_t wout = (k->w + 2 * a->pad_w - a->dil_w * (k->kw - 1) - 1) / a->stride_w + 1;
  dnnl_dims_t src = {k->n, k->cin, k->h, k->w}, dst = {k->n, k->cout, hout, wout};
  dnnl_dims_t bias = {k->cout};
  dnnl_status_t s = dnnl_memory_desc_init_by_tag(&m->src, 4, src, dnnl_f32, dnnl_nchw);
  if (s == dnnl_success) s = dnnl_memory_desc_init_by_tag(&m->dst, 4, dst, dnnl_f32, dnnl_nchw);
  if (s == dnnl_success) s = dnnl_memory_desc_init_by_tag(&m->bias, 1, bias, dnnl_f32, dnnl_x);
  if (s != dnnl_success) return s;
  /* (Cout, Cin/g, kh, kw) is oneDNN's goihw (g, Cout/g, Cin/g, kh, kw) with the same bytes */
  if (a->groups == 1) {
    dnnl_dims_t wd = {k->cout, k->cin, k->kh, k->kw};
    s = dnnl_memory_desc_init_by_tag(&m->wei, 4, wd, dnnl_f32, dnnl_oihw);
  } else {
    dnnl_dims_t wd = {a->groups, k->cout / a->groups, k->cin / a->groups, k->kh, k->kw};
    s = dnnl_memory_desc_init_by_tag(&m->wei, 5, wd, dnnl_f32, dnnl_goihw);
  }
  /* oneDNN counts dilation from 0 (dense = 0) and wants the right padding that makes
   * its output size equal ours: (out - 1) stride + (k - 1) dil + 1 = in + pad_l + pad_r */
  m->strides[0] = a->stride_h, m->strides[1] = a->stride_w;
  m->dilates[0] = a->dil_h - 1, m->dilates[1] = a->dil_w - 1;
  m->pad_l[0] = a->pad_h, m->pad_l[1] = a->pad_w;
  m->pad_r[0] = (hout - 1) * a->stride_h + (k->kh - 1) * a->dil_h + 1 - k->h - a->pad_h;
  m->pad_r[1] = (wout - 1) * a->stride_w + (k->kw - 1) * a->dil_w + 1 - k->w - a->pad_w;
  return s;
}

/* The same descriptor with layout "any", for oneDNN to choose. */
static dnnl_memory_desc_t any_of(const dnnl_memory_desc_t *plain) {
  dnnl_memory_desc_t md;
  dnnl_memory_desc_init_by_tag(&md, plain->ndims, plain->dims, dnnl_f32, dnnl_format_tag_any);
  return md;
}

static dnnl_status_t user_scratchpad_attr(dnnl_primitive_attr_t *attr, int add) {
  dnnl_status_t s = dnnl_primitive_attr_create(attr);
  if (s == dnnl_success)
    s = dnnl_primitive_attr_set_scratchpad_mode(*attr, dnnl_scratchpad_mode_user);
  if (s == dnnl_success && add) {
    dnnl_post_ops_t ops;
    s = dnnl_post_ops_create(&ops);
    if (s == dnnl_success) s = dnnl_post_ops_append_sum(ops, 1.0f);
    if (s == dnnl_success) s = dnnl_primitive_attr_set_post_ops(*attr, ops);
    dnnl_post_ops_destroy(ops);
  }
  return s;
}

static dnnl_status_t reorder_make(dnnl_primitive_t *r, const dnnl_memory_desc_t *from,
                                  const dnnl_memory_desc_t *to, int add) {
  dnnl_primitive_attr_t attr;
  dnnl_primitive_desc_t pd = NULL;
  dnnl_status_t s = user_scratchpad_attr(&attr, add);
  if (s == dnnl_success)
    s = dnnl_reorder_primitive_desc_create(&pd, from, engine, to, engine, attr);
  if (s == dnnl_success) s = dnnl_primitive_create(r, pd);
  dnnl_primitive_desc_destroy(pd);
  dnnl_primitive_attr_destroy(attr);
  return s;
}

/* The port of a tensor the primitive `pd` sees as `what`: an input needs a reorder in
 * when the layouts differ; an output needs one out, and always one that adds. */
static dnnl_status_t port_make(port *p, const dnnl_memory_desc_t *plain,
                               const_dnnl_primitive_desc_t pd, dnnl_query_t what, int output) {
  memset(p, 0, sizeof *p);
  p->plain = *plain;
  p->md = *dnnl_primitive_desc_query_md(pd, what, 0);
  int same = dnnl_memory_desc_equal(&p->plain, &p->md);
  if (!output) return same ? dnnl_success : reorder_make(&p->in, &p->plain, &p->md, 0);
  dnnl_status_t s = same ? dnnl_success : reorder_make(&p->out[0], &p->md, &p->plain, 0);
  if (s == dnnl_success) s = reorder_make(&p->out[1], &p->md, &p->plain, 1);
  return s;
}

/* Whether oneDNN fell back to its im2col + GEMM implementation. For grouped
 * convolutions that fallback runs one small GEMM per group: the backward-weights of
 * DAFormer's dilated depthwise 3x3 (1024 channels, 64x64) took 20-25 s of a 68 s MiT-B0
 * step, where the reference's direct depthwise loops take milliseconds. Those shapes
 * go to the reference. */
static int impl_is_gemm(const_dnnl_primitive_desc_t pd) {
  const char *impl = NULL;
  if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success) return 0;
  return impl != NULL && strstr(impl, "gemm") != NULL;
}

static dnnl_status_t pass_create(conv_entry *e, int pass) {
  conv_mds m;
  dnnl_status_t s = conv_mds_make(&e->key, &m);
  if (s != dnnl_success) return s;
  dnnl_memory_desc_t src = any_of(&m.src), wei = any_of(&m.wei), dst = any_of(&m.dst);
  dnnl_convolution_desc_t cd;
  dnnl_primitive_attr_t attr;
  dnnl_primitive_desc_t pd = NULL;
  if ((s = user_scratchpad_attr(&attr, 0)) != dnnl_success) return s;
  if (e->fwd_pd == NULL || pass == PASS_FWD) {
    s = dnnl_dilated_convolution_forward_desc_init(
        &cd, dnnl_forward_training, dnnl_convolution_direct, &src, &wei,
        e->key.bias ? &m.bias : NULL, &dst, m.strides, m.dilates, m.pad_l, m.pad_r);
    if (s == dnnl_success && e->fwd_pd == NULL)
      s = dnnl_primitive_desc_create(&e->fwd_pd, &cd, attr, engine, NULL);
  }
  if (s == dnnl_success && pass == PASS_FWD) {
    pd = e->fwd_pd;
    s = port_make(&e->src, &m.src, pd, dnnl_query_src_md, 0);
    if (s == dnnl_success) s = port_make(&e->wei, &m.wei, pd, dnnl_query_weights_md, 0);
    if (s == dnnl_success) s = port_make(&e->dst, &m.dst, pd, dnnl_query_dst_md, 1);
  } else if (s == dnnl_success && pass == PASS_BWD_DATA) {
    s = dnnl_dilated_convolution_backward_data_desc_init(
        &cd, dnnl_convolution_direct, &src, &wei, &dst, m.strides, m.dilates, m.pad_l, m.pad_r);
    if (s == dnnl_success) s = dnnl_primitive_desc_create(&pd, &cd, attr, engine, e->fwd_pd);
    if (s == dnnl_success) s = port_make(&e->bd_ddst, &m.dst, pd, dnnl_query_diff_dst_md, 0);
    if (s == dnnl_success) s = port_make(&e->bd_wei, &m.wei, pd, dnnl_query_weights_md, 0);
    if (s == dnnl_success) s = port_make(&e->bd_dsrc, &m.src, pd, dnnl_query_diff_src_md, 1);
  } else if (s == dnnl_success) {
    s = dnnl_dilated_convolution_backward_weights_desc_init(
        &cd, dnnl_convolution_direct, &src, &wei, NULL, &dst, m.strides, m.dilates, m.pad_l,
        m.pad_r);
    if (s == dnnl_success) s = dnnl_primitive_desc_create(&pd, &cd, attr, engine, e->fwd_pd);
    if (s == dnnl_success) s = port_make(&e->bw_src, &m.src, pd, dnnl_query_src_md, 0);
    if (s == dnnl_success) s = port_make(&e->bw_ddst, &m.dst, pd, dnnl_query_diff_dst_md, 0);
    if (s == dnnl_success) s = port_make(&e->bw_dwei, &m.wei, pd, dnnl_query_diff_weights_md, 1);
  }
  if (s == dnnl_success && e->key.a.groups > 1 && impl_is_gemm(pd)) s = dnnl_unimplemented;
  if (s == dnnl_success) s = dnnl_primitive_create(&e->prim[pass], pd);
  if (pd != e->fwd_pd) dnnl_primitive_desc_destroy(pd);
  dnnl_primitive_attr_destroy(attr);
  return s;
}

/* The cached primitive of `pass` for node's shape, created on first use; NULL when
 * oneDNN cannot run it (unsupported shape or engine), which the caller answers by
 * running the reference. A shape that failed once is not tried again. */
static conv_entry *entry_get(const t2s_node *node, int pass) {
  pthread_once(&engine_once, engine_init);
  if (engine_status != dnnl_success) return NULL;
  conv_key k = key_of(node);
  pthread_mutex_lock(&cache_lock);
  conv_entry *e = cache;
  while (e && memcmp(&e->key, &k, sizeof k) != 0) e = e->next;
  if (e == NULL && (e = calloc(1, sizeof *e)) != NULL) {
    e->key = k;
    e->next = cache;
    cache = e;
  }
  if (e && e->state[pass] == 0) e->state[pass] = pass_create(e, pass) == dnnl_success ? 1 : -1;
  if (e && e->state[pass] != 1) e = NULL;
  pthread_mutex_unlock(&cache_lock);
  return e;
}

/* ---- execution ---- */

static t2s_status dnnl_fail(t2s_ctx *ctx, const char *call, dnnl_status_t s) {
  t2s_ctx_fail(ctx, T2S_ERR_BACKEND,
               "conv2d (oneDNN): %s failed with oneDNN status %d; set T2S_ONEDNN=off to run the "
               "reference convolution instead, and report the shapes",
               call, (int)s);
  return ctx->err.status;
}

/* Runs primitive p on n (argument id, descriptor, data) triples, adding the scratchpad
 * oneDNN asks for from the pass arena. */
typedef struct exec_arg {
  int arg;
  const dnnl_memory_desc_t *md;
  void *data;
} exec_arg;

static t2s_status run(t2s_ctx *ctx, dnnl_primitive_t p, exec_arg *a, int n) {
  const_dnnl_primitive_desc_t pd;
  dnnl_memory_t mem[5];
  dnnl_exec_arg_t args[5];
  dnnl_status_t s = dnnl_primitive_get_primitive_desc(p, &pd);
  if (s != dnnl_success) return dnnl_fail(ctx, "dnnl_primitive_get_primitive_desc", s);
  const dnnl_memory_desc_t *spad = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
  size_t spad_bytes = spad ? dnnl_memory_desc_get_size(spad) : 0;
  if (spad_bytes > 0) {
    void *buf = t2s_scratch(ctx, spad_bytes);
    if (buf == NULL) return ctx->err.status;
    a[n++] = (exec_arg){DNNL_ARG_SCRATCHPAD, spad, buf};
  }
  int made = 0;
  for (; made < n && s == dnnl_success; made++) {
    s = dnnl_memory_create(&mem[made], a[made].md, engine, a[made].data);
    args[made] = (dnnl_exec_arg_t){a[made].arg, mem[made]};
  }
  if (s != dnnl_success) made--; /* the failed create left nothing to destroy */
  if (s == dnnl_success) s = dnnl_primitive_execute(p, stream, n, args);
  if (s == dnnl_success) s = dnnl_stream_wait(stream);
  for (int i = 0; i < made; i++) dnnl_memory_destroy(mem[i]);
  if (s == dnnl_success) return T2S_OK;
  return dnnl_fail(ctx, "dnnl_primitive_execute (convolution or reorder)", s);
}

/* An input in the primitive's layout: the plain data itself, or a reordered copy. */
static const float *port_in(t2s_ctx *ctx, const port *p, const float *plain) {
  if (p->in == NULL) return plain;
  float *buf = t2s_scratch(ctx, dnnl_memory_desc_get_size(&p->md));
  if (buf == NULL) return NULL;
  exec_arg a[3] = {{DNNL_ARG_FROM, &p->plain, (void *)plain}, {DNNL_ARG_TO, &p->md, buf}};
  return run(ctx, p->in, a, 2) == T2S_OK ? buf : NULL;
}

/* Where the primitive writes an output: plain itself when the layouts agree and
 * nothing accumulates, else a scratch buffer that port_out_finish reorders back. */
static float *port_out(t2s_ctx *ctx, const port *p, float *plain, int add) {
  if (p->out[0] == NULL && !add) return plain;
  return t2s_scratch(ctx, dnnl_memory_desc_get_size(&p->md));
}

static t2s_status port_out_finish(t2s_ctx *ctx, const port *p, float *buf, float *plain, int add) {
  if (buf == plain) return T2S_OK;
  exec_arg a[3] = {{DNNL_ARG_FROM, &p->md, buf}, {DNNL_ARG_TO, &p->plain, plain}};
  return run(ctx, p->out[add ? 1 : 0], a, 2);
}

t2s_status t2s_conv2d_onednn_forward(t2s_ctx *ctx, t2s_node *node, int *done) {
  *done = 0;
  conv_entry *e = entry_get(node, PASS_FWD);
  if (e == NULL) return T2S_OK;
  *done = 1;
  const t2s_tensor *bt = node->in[2];
  float *y = t2s_f32(node->out);
  t2s_arena_mark mark = t2s_scratch_mark(ctx);
  const float *x = port_in(ctx, &e->src, t2s_f32(node->in[0]));
  const float *w = x ? port_in(ctx, &e->wei, t2s_f32(node->in[1])) : NULL;
  float *yb = w ? port_out(ctx, &e->dst, y, 0) : NULL;
  if (yb) {
    exec_arg a[5] = {{DNNL_ARG_SRC, &e->src.md, (void *)x},
                     {DNNL_ARG_WEIGHTS, &e->wei.md, (void *)w},
                     {DNNL_ARG_DST, &e->dst.md, yb}};
    int n = 3;
    const dnnl_memory_desc_t *bias_md =
        dnnl_primitive_desc_query_md(e->fwd_pd, dnnl_query_weights_md, 1); /* index 1: bias */
    if (bt) a[n++] = (exec_arg){DNNL_ARG_BIAS, bias_md, (void *)t2s_f32(bt)};
    if (run(ctx, e->prim[PASS_FWD], a, n) == T2S_OK) port_out_finish(ctx, &e->dst, yb, y, 0);
  }
  t2s_scratch_release(ctx, mark);
  return ctx->err.status;
}

/* dx (+)= W^T * dy as a transposed convolution, with dx reordered back adding when
 * beta is 1; dy is already in the primitive's layout. */
static t2s_status backward_data(t2s_ctx *ctx, conv_entry *e, t2s_node *node, const float *dy,
                                float beta) {
  t2s_tensor *xt = node->in[0];
  const float *w = port_in(ctx, &e->bd_wei, t2s_f32(node->in[1]));
  float *dxb = w ? port_out(ctx, &e->bd_dsrc, xt->grad, beta != 0.0f) : NULL;
  if (dxb == NULL) return ctx->err.status;
  exec_arg a[4] = {{DNNL_ARG_DIFF_DST, &e->bd_ddst.md, (void *)dy},
                   {DNNL_ARG_WEIGHTS, &e->bd_wei.md, (void *)w},
                   {DNNL_ARG_DIFF_SRC, &e->bd_dsrc.md, dxb}};
  if (run(ctx, e->prim[PASS_BWD_DATA], a, 3) != T2S_OK) return ctx->err.status;
  return port_out_finish(ctx, &e->bd_dsrc, dxb, xt->grad, beta != 0.0f);
}

/* dW (+)= sum over images and positions of dy x^T, dy already in the primitive's
 * layout (the bias gradient stays with the reference's reduction in conv2d.c). */
static t2s_status backward_weights(t2s_ctx *ctx, conv_entry *e, t2s_node *node, const float *dy,
                                   float beta) {
  t2s_tensor *wt = node->in[1];
  const float *x = port_in(ctx, &e->bw_src, t2s_f32(node->in[0]));
  float *dwb = x ? port_out(ctx, &e->bw_dwei, wt->grad, beta != 0.0f) : NULL;
  if (dwb == NULL) return ctx->err.status;
  exec_arg a[4] = {{DNNL_ARG_SRC, &e->bw_src.md, (void *)x},
                   {DNNL_ARG_DIFF_DST, &e->bw_ddst.md, (void *)dy},
                   {DNNL_ARG_DIFF_WEIGHTS, &e->bw_dwei.md, dwb}};
  if (run(ctx, e->prim[PASS_BWD_WEIGHTS], a, 3) != T2S_OK) return ctx->err.status;
  return port_out_finish(ctx, &e->bw_dwei, dwb, wt->grad, beta != 0.0f);
}

/* dy is reordered once when both backward primitives take the same layout (they
 * usually do): the reorders of activation-sized tensors are a fifth of the step. The
 * blocked copy of x for backward-weights is released before backward-data runs. */
t2s_status t2s_conv2d_onednn_backward(t2s_ctx *ctx, t2s_node *node, const float *beta, int *done) {
  int want_x = t2s_wants_grad(node->in[0]), want_w = t2s_wants_grad(node->in[1]);
  conv_entry *ed = want_x ? entry_get(node, PASS_BWD_DATA) : NULL;
  conv_entry *ew = want_w ? entry_get(node, PASS_BWD_WEIGHTS) : NULL;
  *done = 0;
  if ((want_x && ed == NULL) || (want_w && ew == NULL)) return T2S_OK;
  *done = 1;
  const float *dy = node->out->grad, *dyw = NULL, *dyd = NULL;
  t2s_arena_mark mark = t2s_scratch_mark(ctx);
  if (want_w) dyw = port_in(ctx, &ew->bw_ddst, dy);
  if (want_x && want_w && dnnl_memory_desc_equal(&ew->bw_ddst.md, &ed->bd_ddst.md)) dyd = dyw;
  else if (want_x) dyd = port_in(ctx, &ed->bd_ddst, dy);
  t2s_arena_mark after_dy = t2s_scratch_mark(ctx);
  if (want_w && dyw) backward_weights(ctx, ew, node, dyw, beta[1]);
  t2s_scratch_release(ctx, after_dy);
  if (want_x && dyd && t2s_ctx_ok(ctx)) backward_data(ctx, ed, node, dyd, beta[0]);
  t2s_scratch_release(ctx, mark);
  return ctx->err.status;
}
