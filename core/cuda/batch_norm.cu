/* Batch normalisation on CUDA; the maths and the modes are core/ops/batch_norm.c's.
 *
 * x (N, C, *) is viewed as rows x C: a 4-d NHWC activation has its channel as the
 * fastest index (row p = (n, h, w)); a 2-d (N, C) tensor is the same with one row
 * per sample; a 3-d (N, C, L) tensor is row-major, so (n, c, l) sits at
 * (n C + c) L + l. Per-channel sums [sum x, sum x^2] and, in backward,
 * [sum dy, sum dy xhat] come from the deterministic two-pass column sum in
 * double (kernels.cuh): no float atomics, bitwise reproducible.
 *
 * Without SyncBN nothing leaves the device: a one-block kernel turns the sums into
 * mean / invstd and updates the running statistics. With SyncBN (ctx->sync_bn and
 * ctx->stat_allreduce) the sums [sum x, sum x^2, M] are copied to the host,
 * reduced over ranks by the hook and copied back (one synchronisation per BN layer
 * and pass, as in PyTorch's SyncBatchNorm). Backward reduces [sum dy, sum dy xhat]
 * the same way, after dgamma / dbeta took the local sums (parameter gradients are
 * all-reduced with all the others).
 *
 * x and y may be bf16 (precision bf16): read through t2s_act_in, the statistics and
 * the normalisation are computed in double / float exactly as for f32; the running
 * statistics, gamma, beta and every gradient stay f32. */
#include <math.h>

#include "core/cuda/kernels.cuh"

using namespace t2s_cuda;

namespace {

typedef t2s_bn_args bn_args;

/* Host struct (t2s_host_scratch) pointing at device arrays of the pass arena. */
typedef struct bn_saved {
  double *mean, *invstd;  /* device, C each */
  double *stats;          /* device, 2C + 1: sums of x, x^2 and the count */
} bn_saved;

struct bn_geom {
  int64_t n, c, inner;
  bool channels_last;  /* address of (n, c, s): (n inner + s) C + c, else (n C + c) inner + s */
  __device__ int64_t addr(int64_t p, int64_t ch) const {
    if (channels_last) return p * c + ch;
    int64_t b = p / inner, s = p % inner;
    return (b * c + ch) * inner + s;
  }
  int64_t rows() const { return n * inner; }
};

bn_geom geom_of(const t2s_tensor *x) {
  bn_geom g = {x->shape[0], x->shape[1], 1, true};
  for (int i = 2; i < x->ndim; i++) g.inner *= x->shape[i];
  g.channels_last = g.inner == 1 || (x->ndim == 4 && x->layout == T2S_LAYOUT_NHWC);
  return g;
}

struct moments_f {
  bn_geom g; t2s_act_in x;
  __device__ void operator()(int64_t p, int c, double *v) const {
    double t = x[g.addr(p, c)];
    v[0] = t;
    v[1] = t * t;
  }
};

/* stats[2C] = M (the local count; SyncBN replaces it by the global one). */
__global__ void set_count_kernel(double *stats, int64_t c, double m) { stats[2 * c] = m; }

/* mean / invstd from the (global) sums; TRAIN also updates the running stats. */
__global__ void bn_finalize_kernel(int64_t c, const double *stats, float momentum, float eps,
                                   double *mean, double *invstd, float *rm, float *rv) {
  double m = stats[2 * c];
  for (int64_t k = blockIdx.x * blockDim.x + threadIdx.x; k < c; k += gridDim.x * blockDim.x) {
    double mu = stats[k] / m;
    double var = stats[c + k] / m - mu * mu;
    if (var < 0.0) var = 0.0;
    mean[k] = mu;
    invstd[k] = 1.0 / sqrt(var + eps);
    if (rm != NULL) {
      rm[k] = (float)((1.0 - momentum) * rm[k] + momentum * mu);
      rv[k] = (float)((1.0 - momentum) * rv[k] + momentum * var * m / (m - 1.0));
    }
  }
}

/* EVAL / FROZEN: the running statistics are the constants. */
__global__ void bn_running_kernel(int64_t c, const float *rm, const float *rv, float eps,
                                  double *mean, double *invstd) {
  for (int64_t k = blockIdx.x * blockDim.x + threadIdx.x; k < c; k += gridDim.x * blockDim.x) {
    mean[k] = rm[k];
    invstd[k] = 1.0 / sqrt((double)rv[k] + eps);
  }
}

/* y = (x - mean) scale + shift with float scale = gamma invstd, rounded as the CPU. */
struct bn_apply_f {
  bn_geom g; t2s_act_in x; const float *gamma, *beta; const double *mean, *invstd; t2s_act_out y;
  __device__ void operator()(int64_t i) const {
    int64_t ch = g.channels_last ? i % g.c : (i / g.inner) % g.c;
    float sc = (float)((gamma ? gamma[ch] : 1.0) * invstd[ch]);
    float mu = (float)mean[ch], sh = beta ? beta[ch] : 0.0f;
    y.set(i, __fadd_rn(__fmul_rn(__fsub_rn(x[i], mu), sc), sh));
  }
};

struct bn_grad_sums_f {
  bn_geom g; t2s_act_in x; const float *dy; const double *mean, *invstd;
  __device__ void operator()(int64_t p, int c, double *v) const {
    int64_t a = g.addr(p, c);
    v[0] = dy[a];
    v[1] = dy[a] * ((x[a] - mean[c]) * invstd[c]);
  }
};

/* dgamma = sum(dy xhat), dbeta = sum(dy), local. */
struct bn_param_grad_f {
  const double *sums; int64_t c; float *dgamma, *dbeta; bool acc_g, acc_b;
  __device__ void operator()(int64_t k) const {
    if (dgamma) put(dgamma, k, (float)sums[c + k], acc_g);
    if (dbeta) put(dbeta, k, (float)sums[k], acc_b);
  }
};

/* dx = ca dy + cb (x - mu) + cd with per-channel float coefficients (CPU rounding). */
struct bn_dx_f {
  bn_geom g; t2s_act_in x; const float *dy, *gamma; const double *mean, *invstd, *sums; double count;
  bool train, acc; float *dx;
  __device__ void operator()(int64_t i) const {
    int64_t ch = g.channels_last ? i % g.c : (i / g.inner) % g.c;
    double k = (gamma ? gamma[ch] : 1.0) * invstd[ch];
    double mdy = train ? sums[ch] / count : 0.0;
    double mdyx = train ? sums[g.c + ch] / count : 0.0;
    float ca = (float)k, cb = (float)(-k * mdyx * invstd[ch]), cd = (float)(-k * mdy);
    float mu = (float)mean[ch];
    float v = __fadd_rn(__fadd_rn(__fmul_rn(ca, dy[i]), __fmul_rn(cb, __fsub_rn(x[i], mu))), cd);
    put(dx, i, v, acc);
  }
};

int sync_on(const t2s_ctx *ctx) { return ctx->sync_bn && ctx->stat_allreduce != NULL; }

/* Device sums -> host -> the ranks' sum -> device (SyncBN). */
t2s_status allreduce_device(t2s_ctx *ctx, const t2s_node *node, double *dev, size_t n,
                            const char *pass) {
  t2s_cuda_backend *be = t2s_cuda_be(ctx);
  double *host = (double *)t2s_host_scratch(ctx, n * sizeof(double));
  if (host == NULL) return ctx->err.status;
  t2s_host_sync_note(T2S_SITE, 1);
  T2S_CU(ctx, node, cudaMemcpyAsync(host, dev, n * sizeof(double), cudaMemcpyDeviceToHost,
                                    be->stream));
  T2S_CU(ctx, node, cudaStreamSynchronize(be->stream));
  if (ctx->stat_allreduce(ctx->stat_user, host, n, &ctx->err) != T2S_OK) {
    char sx[96];
    if (t2s_ctx_ok(ctx))
      t2s_ctx_fail(ctx, T2S_ERR_COMM, "batch_norm %s on cuda: the SyncBN statistic all-reduce "
                   "failed (x %s)", pass, t2s_shape_str(node->in[0], sx, sizeof sx));
    return ctx->err.status;
  }
  T2S_CU(ctx, node, cudaMemcpyAsync(dev, host, n * sizeof(double), cudaMemcpyHostToDevice,
                                    be->stream));
  /* the host array is pass memory: keep it alive until the copy has read it */
  T2S_CU(ctx, node, cudaStreamSynchronize(be->stream));
  return T2S_OK;
}

t2s_status too_few_values(t2s_ctx *ctx, const t2s_node *node, double m) {
  char sx[96];
  t2s_ctx_fail(ctx, T2S_ERR_INVALID,
               "batch_norm: training mode needs more than one value per channel, x %s gives %g "
               "(use a larger batch or crop, or frozen batch norm)",
               t2s_shape_str(node->in[0], sx, sizeof sx), m);
  return T2S_ERR_INVALID;
}

t2s_status batch_stats(t2s_ctx *ctx, t2s_node *node, const bn_geom &g, bn_saved *s) {
  const bn_args *a = (const bn_args *)node->args;
  cudaStream_t st = t2s_cuda_be(ctx)->stream;
  t2s_status r = colsum<2>(ctx, node, g.rows(), (int)g.c, moments_f{g, t2s_cuda_in(node->in[0])},
                           s->stats);
  if (r != T2S_OK) return r;
  double m = (double)g.rows();
  set_count_kernel<<<1, 1, 0, st>>>(s->stats, g.c, m);
  T2S_CU_LAUNCHED(ctx, node, "set_count_kernel");
  if (sync_on(ctx)) {
    double *host = NULL;
    if ((r = allreduce_device(ctx, node, s->stats, (size_t)(2 * g.c + 1), "forward")) != T2S_OK)
      return r;
    host = (double *)t2s_host_scratch(ctx, sizeof(double));
    if (host == NULL) return ctx->err.status;
    t2s_host_sync_note(T2S_SITE, 1);
    T2S_CU(ctx, node, cudaMemcpy(host, s->stats + 2 * g.c, sizeof(double), cudaMemcpyDeviceToHost));
    m = *host;
  }
  if (m <= 1.0) return too_few_values(ctx, node, m);
  float *rm = node->in[3] ? t2s_f32(node->in[3]) : NULL, *rv = node->in[4] ? t2s_f32(node->in[4]) : NULL;
  bn_finalize_kernel<<<t2s_cuda_blocks(g.c), 256, 0, st>>>(g.c, s->stats, a->momentum, a->eps,
                                                           s->mean, s->invstd, rm, rv);
  T2S_CU_LAUNCHED(ctx, node, "bn_finalize_kernel");
  return T2S_OK;
}

t2s_status batch_norm_forward(t2s_ctx *ctx, t2s_node *node) {
  const bn_args *a = (const bn_args *)node->args;
  bn_geom g = geom_of(node->in[0]);
  bn_saved *s = (bn_saved *)t2s_host_scratch(ctx, sizeof *s);
  if (s == NULL) return ctx->err.status;
  s->mean = scratch_doubles(ctx, g.c);
  s->invstd = scratch_doubles(ctx, g.c);
  s->stats = scratch_doubles(ctx, 2 * g.c + 1);
  if (s->mean == NULL || s->invstd == NULL || s->stats == NULL) return ctx->err.status;
  t2s_status r;
  if (a->mode == T2S_BN_TRAIN) {
    if ((r = batch_stats(ctx, node, g, s)) != T2S_OK) return r;
  } else {
    bn_running_kernel<<<t2s_cuda_blocks(g.c), 256, 0, t2s_cuda_be(ctx)->stream>>>(
        g.c, t2s_f32(node->in[3]), t2s_f32(node->in[4]), a->eps, s->mean, s->invstd);
    T2S_CU_LAUNCHED(ctx, node, "bn_running_kernel");
  }
  const float *gamma = node->in[1] ? t2s_f32(node->in[1]) : NULL;
  const float *beta = node->in[2] ? t2s_f32(node->in[2]) : NULL;
  r = launch_each(ctx, node, t2s_numel(node->out),
                  bn_apply_f{g, t2s_cuda_in(node->in[0]), gamma, beta, s->mean, s->invstd,
                             t2s_cuda_out(node->out)});
  node->saved = node->recording ? s : NULL;
  return r;
}

t2s_status batch_norm_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  const bn_args *a = (const bn_args *)node->args;
  const bn_saved *s = (const bn_saved *)node->saved;
  if (s == NULL) {
    t2s_ctx_fail(ctx, T2S_ERR_INVALID, "op 'batch_norm' on cuda: backward without the forward's "
                 "statistics (the forward ran with gradients off)");
    return T2S_ERR_INVALID;
  }
  bn_geom g = geom_of(node->in[0]);
  t2s_tensor *xt = node->in[0], *gt = node->in[1], *bt = node->in[2];
  double *sums = scratch_doubles(ctx, 2 * g.c);
  if (sums == NULL) return ctx->err.status;
  t2s_status r = colsum<2>(ctx, node, g.rows(), (int)g.c,
                           bn_grad_sums_f{g, t2s_cuda_in(xt), node->out->grad, s->mean, s->invstd},
                           sums);
  if (r != T2S_OK) return r;
  bool wg = t2s_wants_grad(gt), wb = t2s_wants_grad(bt);
  if (wg || wb) {
    r = launch_each(ctx, node, g.c,
                    bn_param_grad_f{sums, g.c, wg ? gt->grad : NULL, wb ? bt->grad : NULL,
                                    beta[1] != 0.0f, beta[2] != 0.0f});
    if (r != T2S_OK) return r;
  }
  if (!t2s_wants_grad(xt)) return T2S_OK;
  bool train = a->mode == T2S_BN_TRAIN;
  double count = (double)g.rows();
  if (train && sync_on(ctx)) {
    if ((r = allreduce_device(ctx, node, sums, (size_t)(2 * g.c), "backward")) != T2S_OK) return r;
    /* the global count: forward left it in stats[2C] */
    t2s_host_sync_note(T2S_SITE, 1);
    T2S_CU(ctx, node, cudaMemcpy(&count, s->stats + 2 * g.c, sizeof(double), cudaMemcpyDeviceToHost));
  }
  return launch_each(ctx, node, t2s_numel(xt),
                     bn_dx_f{g, t2s_cuda_in(xt), node->out->grad, gt ? t2s_f32(gt) : NULL, s->mean,
                             s->invstd, sums, count, train, beta[0] != 0.0f, xt->grad});
}

}  // namespace

T2S_CUDA_OP(batch_norm)
