/* Normalisation ops on CUDA: layer norm (last dim), softmax and L2 normalisation
 * (any dim); the maths of core/ops/norm.c, with the same double accumulations.
 *
 * A reduction row (all elements along the dim, the others fixed) is handled by one
 * warp: lane l takes elements l, l + 32, ... and the warp folds its partial sums
 * with a fixed butterfly, so every result is deterministic. Rows are located
 * through the tensor's logical strides (kernels.cuh row_geom): softmax over the
 * channels of an NHWC activation reads one contiguous row per pixel; other dims
 * read strided but stay correct.
 * Layer norm's dgamma / dbeta are column sums over rows (deterministic two-pass).
 *
 * x and y may be bf16 (precision bf16): read through t2s_act_in, computed in double /
 * float as for f32, written once through t2s_act_out (softmax recomputes its exp
 * rather than re-reading a rounded y); statistics and gradients stay f32. */
#include <math.h>

#include "core/cuda/kernels.cuh"

using namespace t2s_cuda;

namespace {

typedef t2s_layer_norm_args layer_norm_args;
typedef t2s_softmax_args softmax_args;
typedef t2s_l2_normalize_args l2_args;

constexpr int kWarps = 8;  /* rows per 256-thread block */

/* One warp per row, grid-stride over rows; f(row, lane) does the row. */
template <class F>
__global__ void rows_kernel(int64_t rows, F f) {
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int64_t r = (int64_t)blockIdx.x * kWarps + warp; r < rows; r += (int64_t)gridDim.x * kWarps)
    f(r, lane);
}

template <class F>
t2s_status launch_rows(t2s_ctx *ctx, const t2s_node *node, int64_t rows, F f) {
  if (rows <= 0) return T2S_OK;
  int64_t blocks = (rows + kWarps - 1) / kWarps;
  if (blocks > 65535 * 8) blocks = 65535 * 8;
  rows_kernel<<<(unsigned)blocks, 32 * kWarps, 0, t2s_cuda_be(ctx)->stream>>>(rows, f);
  T2S_CU_LAUNCHED(ctx, node, "rows_kernel");
  return T2S_OK;
}

/* ---- layer norm ------------------------------------------------------------------ */

typedef struct ln_saved { float *mean, *rstd; } ln_saved;  /* host struct, device rows */

struct ln_fwd {
  row_geom g; t2s_act_in x; const float *gamma, *beta; t2s_act_out y; float *mean_out, *rstd_out;
  float eps;
  __device__ void operator()(int64_t r, int lane) const {
    int64_t base = g.base(r);
    double sum = 0.0, sq = 0.0;
    for (int64_t j = lane; j < g.len; j += 32) sum += x[base + j * g.stride];
    double mean = warp_sum(sum) / (double)g.len;
    for (int64_t j = lane; j < g.len; j += 32) {
      double d = x[base + j * g.stride] - mean;
      sq += d * d;
    }
    double rstd = 1.0 / sqrt(warp_sum(sq) / (double)g.len + eps);
    for (int64_t j = lane; j < g.len; j += 32) {
      int64_t e = base + j * g.stride;
      double v = __dmul_rn(x[e] - mean, rstd);
      if (gamma) v = __dmul_rn(v, (double)gamma[j]);
      if (beta) v = __dadd_rn(v, (double)beta[j]);
      y.set(e, (float)v);
    }
    if (lane == 0 && mean_out) {
      mean_out[r] = (float)mean;
      rstd_out[r] = (float)rstd;
    }
  }
};

struct ln_bwd {
  row_geom g; t2s_act_in x; const float *dy, *gamma, *mean, *rstd; float *dx; bool acc;
  __device__ void operator()(int64_t r, int lane) const {
    int64_t base = g.base(r);
    double mu = mean[r], rs = rstd[r], mg = 0.0, mgx = 0.0;
    for (int64_t j = lane; j < g.len; j += 32) {
      int64_t e = base + j * g.stride;
      double xhat = (x[e] - mu) * rs, gv = gamma ? dy[e] * (double)gamma[j] : dy[e];
      mg += gv;
      mgx += gv * xhat;
    }
    mg = warp_sum(mg) / (double)g.len;
    mgx = warp_sum(mgx) / (double)g.len;
    for (int64_t j = lane; j < g.len; j += 32) {
      int64_t e = base + j * g.stride;
      double xhat = (x[e] - mu) * rs, gv = gamma ? dy[e] * (double)gamma[j] : dy[e];
      put(dx, e, (float)(rs * (gv - mg - xhat * mgx)), acc);
    }
  }
};

/* dgamma_j = sum_rows dy xhat, dbeta_j = sum_rows dy */
struct ln_param_sums {
  row_geom g; t2s_act_in x; const float *dy, *mean, *rstd;
  __device__ void operator()(int64_t r, int j, double *v) const {
    int64_t e = g.base(r) + j * g.stride;
    double xhat = (x[e] - (double)mean[r]) * (double)rstd[r];
    v[0] = dy[e] * xhat;
    v[1] = dy[e];
  }
};
struct ln_param_put {
  const double *sums; int64_t c; float *dg, *db; bool acc_g, acc_b;
  __device__ void operator()(int64_t j) const {
    if (dg) put(dg, j, (float)sums[j], acc_g);
    if (db) put(db, j, (float)sums[c + j], acc_b);
  }
};

t2s_status layer_norm_forward(t2s_ctx *ctx, t2s_node *node) {
  const t2s_tensor *x = node->in[0];
  row_geom g = row_geom_of(x, x->ndim - 1);
  ln_saved *sv = NULL;
  if (node->recording) {
    sv = (ln_saved *)t2s_host_scratch(ctx, sizeof *sv);
    if (sv == NULL) return ctx->err.status;
    sv->mean = (float *)t2s_scratch(ctx, (size_t)(g.rows ? g.rows : 1) * sizeof(float));
    sv->rstd = (float *)t2s_scratch(ctx, (size_t)(g.rows ? g.rows : 1) * sizeof(float));
    if (sv->mean == NULL || sv->rstd == NULL) return ctx->err.status;
  }
  node->saved = sv;
  return launch_rows(ctx, node, g.rows,
                     ln_fwd{g, t2s_cuda_in(x), node->in[1] ? t2s_f32(node->in[1]) : NULL,
                            node->in[2] ? t2s_f32(node->in[2]) : NULL, t2s_cuda_out(node->out),
                            sv ? sv->mean : NULL, sv ? sv->rstd : NULL,
                            ((const layer_norm_args *)node->args)->eps});
}

t2s_status layer_norm_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  const ln_saved *sv = (const ln_saved *)node->saved;
  if (sv == NULL) {
    t2s_ctx_fail(ctx, T2S_ERR_INVALID, "op 'layer_norm' on cuda: backward without the forward's "
                 "statistics (the forward ran with gradients off)");
    return T2S_ERR_INVALID;
  }
  t2s_tensor *x = node->in[0], *gt = node->in[1], *bt = node->in[2];
  row_geom g = row_geom_of(x, x->ndim - 1);
  const float *dy = node->out->grad;
  t2s_status st = T2S_OK;
  if (t2s_wants_grad(x))
    st = launch_rows(ctx, node, g.rows,
                     ln_bwd{g, t2s_cuda_in(x), dy, gt ? t2s_f32(gt) : NULL, sv->mean, sv->rstd,
                            x->grad, beta[0] != 0.0f});
  bool wg = t2s_wants_grad(gt), wb = t2s_wants_grad(bt);
  if (st != T2S_OK || !(wg || wb)) return st;
  double *sums = scratch_doubles(ctx, 2 * g.len);
  if (sums == NULL) return ctx->err.status;
  st = colsum<2>(ctx, node, g.rows, (int)g.len, ln_param_sums{g, t2s_cuda_in(x), dy, sv->mean, sv->rstd},
                 sums);
  if (st != T2S_OK) return st;
  return launch_each(ctx, node, g.len,
                     ln_param_put{sums, g.len, wg ? gt->grad : NULL, wb ? bt->grad : NULL,
                                  beta[1] != 0.0f, beta[2] != 0.0f});
}

/* ---- softmax ------------------------------------------------------------------- */

struct softmax_fwd {
  row_geom g; t2s_act_in x; t2s_act_out y;
  __device__ void operator()(int64_t r, int lane) const {
    int64_t base = g.base(r);
    float mx = -INFINITY;
    for (int64_t j = lane; j < g.len; j += 32) mx = fmaxf(mx, x[base + j * g.stride]);
    mx = warp_max(mx);
    double sum = 0.0;
    for (int64_t j = lane; j < g.len; j += 32) {
      int64_t e = base + j * g.stride;
      float ev = (float)exp((double)__fsub_rn(x[e], mx));
      if (!y.bf16) y.set(e, ev);  /* f32 keeps it; a bf16 y would round it */
      sum += ev;
    }
    sum = warp_sum(sum);
    for (int64_t j = lane; j < g.len; j += 32) {
      int64_t e = base + j * g.stride;
      float ev = y.bf16 ? (float)exp((double)__fsub_rn(x[e], mx)) : y.get(e);
      y.set(e, (float)(ev / sum));
    }
  }
};

/* dx = y (dy - sum dy y); l2: dx = (dy - y sum dy y) / n, or dy / eps where n < eps */
struct dot_bwd {
  row_geom g; t2s_act_in y; const float *dy; const double *norm; float eps; float *dx; bool acc, l2;
  __device__ void operator()(int64_t r, int lane) const {
    int64_t base = g.base(r);
    double dot = 0.0;
    for (int64_t j = lane; j < g.len; j += 32) {
      int64_t e = base + j * g.stride;
      dot += (double)dy[e] * y[e];
    }
    dot = warp_sum(dot);
    for (int64_t j = lane; j < g.len; j += 32) {
      int64_t e = base + j * g.stride;
      double v;
      if (!l2) v = y[e] * (dy[e] - dot);
      else v = norm[r] >= eps ? (dy[e] - y[e] * dot) / norm[r] : dy[e] / (double)eps;
      put(dx, e, (float)v, acc);
    }
  }
};

t2s_status softmax_forward(t2s_ctx *ctx, t2s_node *node) {
  row_geom g = row_geom_of(node->in[0], ((const softmax_args *)node->args)->dim);
  return launch_rows(ctx, node, g.rows, softmax_fwd{g, t2s_cuda_in(node->in[0]), t2s_cuda_out(node->out)});
}

t2s_status softmax_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  row_geom g = row_geom_of(node->in[0], ((const softmax_args *)node->args)->dim);
  return launch_rows(ctx, node, g.rows,
                     dot_bwd{g, t2s_cuda_in(node->out), node->out->grad, NULL, 0.0f,
                             node->in[0]->grad, beta[0] != 0.0f, false});
}

/* ---- l2 normalize ---------------------------------------------------------------- */

struct l2_fwd {
  row_geom g; t2s_act_in x; t2s_act_out y; double *norm_out; float eps;
  __device__ void operator()(int64_t r, int lane) const {
    int64_t base = g.base(r);
    double ss = 0.0;
    for (int64_t j = lane; j < g.len; j += 32) {
      double v = x[base + j * g.stride];
      ss += v * v;
    }
    double n = sqrt(warp_sum(ss)), d = fmax(n, (double)eps);
    for (int64_t j = lane; j < g.len; j += 32) {
      int64_t e = base + j * g.stride;
      y.set(e, (float)(x[e] / d));
    }
    if (lane == 0 && norm_out) norm_out[r] = n;
  }
};

t2s_status l2_normalize_forward(t2s_ctx *ctx, t2s_node *node) {
  const l2_args *a = (const l2_args *)node->args;
  row_geom g = row_geom_of(node->in[0], a->dim);
  double *norm = NULL;
  if (node->recording && (norm = scratch_doubles(ctx, g.rows)) == NULL) return ctx->err.status;
  node->saved = norm;
  return launch_rows(ctx, node, g.rows,
                     l2_fwd{g, t2s_cuda_in(node->in[0]), t2s_cuda_out(node->out), norm, a->eps});
}

t2s_status l2_normalize_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  const l2_args *a = (const l2_args *)node->args;
  if (node->saved == NULL) {
    t2s_ctx_fail(ctx, T2S_ERR_INVALID, "op 'l2_normalize' on cuda: backward without the "
                 "forward's norms (the forward ran with gradients off)");
    return T2S_ERR_INVALID;
  }
  row_geom g = row_geom_of(node->in[0], a->dim);
  return launch_rows(ctx, node, g.rows,
                     dot_bwd{g, t2s_cuda_in(node->out), node->out->grad, (const double *)node->saved,
                             a->eps, node->in[0]->grad, beta[0] != 0.0f, true});
}

}  // namespace

T2S_CUDA_OP(layer_norm)
T2S_CUDA_OP(softmax)
T2S_CUDA_OP(l2_normalize)
