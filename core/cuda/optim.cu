/* Fused optimizer and EMA kernels over the flat parameter buffers on the GPU, with
 * the float rounding of core/optim.c's CPU path (every product and sum rounded on
 * its own: __fmul_rn / __fadd_rn, no FMA contraction), so a CUDA step matches the
 * CPU step to the bit for SGD and to sqrt/division rounding for AdamW.
 *
 * A step uses a small device table of the trainable tensors, sorted by flat offset:
 * (offset, start in the packed index space, numel, lr, decay, AdamW step size),
 * with lr = lr x lr_mult and decay = weight_decay x decay_mult already multiplied
 * (as the CPU does, in double then rounded to float). One kernel runs over the
 * packed index space of all trainable elements; element i finds its tensor by a
 * binary search of `start`. Frozen tensors are never read or written.
 * The table is rebuilt on the host each step (the multipliers may change between
 * steps) and lives in stream-ordered memory (cudaMallocAsync: a pool, no device
 * synchronisation).
 *
 * The gradient norm is a fixed-geometry two-pass sum of squares in double
 * (T2S_CUDA_REDUCE_BLOCKS x T2S_CUDA_REDUCE_THREADS): bitwise reproducible. It is
 * read back to the host (one 8-byte copy) because the step is refused on a
 * non-finite norm and the caller logs it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/cuda/kernels.cuh"

extern "C" {
#include "core/optim.h"
}

using namespace t2s_cuda;

namespace {

struct tensor_entry {
  int64_t offset, start, numel;
  float lr, wd, step;  /* step: AdamW lr / (1 - beta1^t), as a float */
  float pad;
};

struct table {
  tensor_entry *dev;
  int count;
  int64_t total;  /* trainable elements */
};

/* The tensor of packed index i: the last entry with start <= i. */
__device__ __forceinline__ int find_entry(const tensor_entry *t, int count, int64_t i) {
  int lo = 0, hi = count - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (t[mid].start <= i) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

t2s_status cuda_error(t2s_error *err, const char *what, cudaError_t st) {
  return t2s_error_set(err, T2S_ERR_BACKEND, "optimizer on cuda: %s failed: %s", what,
                       cudaGetErrorString(st));
}

int by_offset(const void *a, const void *b) {
  const tensor_entry *x = (const tensor_entry *)a, *y = (const tensor_entry *)b;
  return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Builds and uploads the table; bc1 > 0 fills the AdamW step size. */
t2s_status table_make(const t2s_params *p, double lr, double weight_decay, double bc1, table *t,
                      t2s_error *err) {
  memset(t, 0, sizeof *t);
  tensor_entry *host = (tensor_entry *)calloc((size_t)(p->count ? p->count : 1), sizeof *host);
  if (host == NULL)
    return t2s_error_set(err, T2S_ERR_NOMEM, "optimizer on cuda: out of host memory for the "
                         "table of %d tensors", p->count);
  for (int i = 0; i < p->count; i++) {
    const t2s_param *q = p->items[i];
    if (!q->t.requires_grad) continue;
    tensor_entry *e = &host[t->count++];
    e->offset = (int64_t)q->offset;
    e->numel = t2s_numel(&q->t);
    e->lr = (float)(lr * q->lr_mult);
    e->wd = (float)(weight_decay * q->decay_mult);
    e->step = bc1 > 0.0 ? (float)((double)e->lr / bc1) : 0.0f;
  }
  qsort(host, (size_t)t->count, sizeof *host, by_offset);
  for (int i = 0; i < t->count; i++) {
    host[i].start = t->total;
    t->total += host[i].numel;
  }
  cudaError_t st = cudaSuccess;
  if (t->count > 0) {
    size_t bytes = (size_t)t->count * sizeof *host;
    st = cudaMallocAsync((void **)&t->dev, bytes, 0);
    /* pageable source: returns once the bytes are staged, so `host` may be freed */
    if (st == cudaSuccess) st = cudaMemcpyAsync(t->dev, host, bytes, cudaMemcpyHostToDevice, 0);
  }
  free(host);
  if (st != cudaSuccess) return cuda_error(err, "uploading the tensor table", st);
  return T2S_OK;
}

void table_free(table *t) {
  if (t->dev) (void)cudaFreeAsync(t->dev, 0);  /* status not actionable: pool memory */
  t->dev = NULL;
}

/* ---- global norm ------------------------------------------------------------------ */

__device__ void block_tree(double *s) {
  for (int stride = T2S_CUDA_REDUCE_THREADS / 2; stride > 0; stride /= 2) {
    __syncthreads();
    if ((int)threadIdx.x < stride) s[threadIdx.x] += s[threadIdx.x + stride];
  }
  __syncthreads();
}

__global__ void sumsq_partial_kernel(const tensor_entry *t, int count, int64_t total,
                                     const float *g, double *partial) {
  __shared__ double s[T2S_CUDA_REDUCE_THREADS];
  double acc = 0.0;
  const int64_t step = (int64_t)T2S_CUDA_REDUCE_BLOCKS * T2S_CUDA_REDUCE_THREADS;
  for (int64_t i = (int64_t)blockIdx.x * T2S_CUDA_REDUCE_THREADS + threadIdx.x; i < total;
       i += step) {
    const tensor_entry &e = t[find_entry(t, count, i)];
    double v = g[e.offset + (i - e.start)];
    acc += v * v;
  }
  s[threadIdx.x] = acc;
  block_tree(s);
  if (threadIdx.x == 0) partial[blockIdx.x] = s[0];
}

__global__ void sumsq_final_kernel(const double *partial, double *out) {
  __shared__ double s[T2S_CUDA_REDUCE_THREADS];
  s[threadIdx.x] = threadIdx.x < T2S_CUDA_REDUCE_BLOCKS ? partial[threadIdx.x] : 0.0;
  block_tree(s);
  if (threadIdx.x == 0) out[0] = s[0];
}

t2s_status norm_of(const t2s_params *p, const table &t, double *norm, t2s_error *err) {
  *norm = 0.0;
  if (t.total == 0) return T2S_OK;
  double *partial = NULL;
  cudaError_t st = cudaMallocAsync((void **)&partial, (T2S_CUDA_REDUCE_BLOCKS + 1) * sizeof(double), 0);
  if (st != cudaSuccess) return cuda_error(err, "cudaMallocAsync for the norm partials", st);
  sumsq_partial_kernel<<<T2S_CUDA_REDUCE_BLOCKS, T2S_CUDA_REDUCE_THREADS>>>(t.dev, t.count, t.total,
                                                                           p->grad, partial);
  sumsq_final_kernel<<<1, T2S_CUDA_REDUCE_THREADS>>>(partial, partial + T2S_CUDA_REDUCE_BLOCKS);
  st = cudaGetLastError();
  double sum = 0.0;
  if (st == cudaSuccess) {
    t2s_host_sync_note(T2S_SITE, 1);
    st = cudaMemcpy(&sum, partial + T2S_CUDA_REDUCE_BLOCKS, sizeof sum, cudaMemcpyDeviceToHost);
  }
  (void)cudaFreeAsync(partial, 0);
  if (st != cudaSuccess) return cuda_error(err, "the gradient norm kernels", st);
  *norm = sqrt(sum);
  return T2S_OK;
}

/* ---- updates --------------------------------------------------------------------- */

struct scale_f {
  float *g; float s;
  __device__ void operator()(int64_t k) const { g[k] = __fmul_rn(g[k], s); }
};

/* d = g + wd w; buf = d (first) | mom buf + d; w -= lr buf */
struct sgd_f {
  const tensor_entry *t; int count; float *w; const float *g; float *buf; float mom; bool first;
  __device__ void operator()(int64_t i) const {
    const tensor_entry &e = t[find_entry(t, count, i)];
    int64_t k = e.offset + (i - e.start);
    float d = __fadd_rn(g[k], __fmul_rn(e.wd, w[k]));
    if (buf) {
      buf[k] = first ? d : __fadd_rn(__fmul_rn(mom, buf[k]), d);
      d = buf[k];
    }
    w[k] = __fsub_rn(w[k], __fmul_rn(e.lr, d));
  }
};

/* w *= 1 - lr wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g g;
 * w -= step m / (sqrt(v) / sqrt(bc2) + eps) */
struct adamw_f {
  const tensor_entry *t; int count; float *w; const float *g; float *m, *v;
  float b1, b2, eps, bc2_sqrt;
  __device__ void operator()(int64_t i) const {
    const tensor_entry &e = t[find_entry(t, count, i)];
    int64_t k = e.offset + (i - e.start);
    float gk = g[k];
    float wk = __fmul_rn(w[k], __fsub_rn(1.0f, __fmul_rn(e.lr, e.wd)));
    float mk = __fadd_rn(__fmul_rn(b1, m[k]), __fmul_rn(__fsub_rn(1.0f, b1), gk));
    float vk = __fadd_rn(__fmul_rn(b2, v[k]), __fmul_rn(__fmul_rn(__fsub_rn(1.0f, b2), gk), gk));
    float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vk), bc2_sqrt), eps);
    w[k] = __fsub_rn(wk, __fdiv_rn(__fmul_rn(e.step, mk), denom));
    m[k] = mk;
    v[k] = vk;
  }
};

template <class F>
t2s_status run_each(int64_t n, F f, const char *what, t2s_error *err) {
  if (n <= 0) return T2S_OK;
  each_kernel<<<t2s_cuda_blocks(n), 256>>>(n, f);
  cudaError_t st = cudaGetLastError();
  return st == cudaSuccess ? T2S_OK : cuda_error(err, what, st);
}

struct ema_f {
  float *t; const float *s; float a, b;
  __device__ void operator()(int64_t k) const {
    t[k] = __fadd_rn(__fmul_rn(a, t[k]), __fmul_rn(b, s[k]));
  }
};

}  // namespace

extern "C" t2s_status t2s_grad_global_norm_cuda(const t2s_params *p, double *norm, t2s_error *err) {
  table t;
  t2s_status st = table_make(p, 0.0, 0.0, 0.0, &t, err);
  if (st == T2S_OK) st = norm_of(p, t, norm, err);
  table_free(&t);
  return st;
}

extern "C" t2s_status t2s_optim_step_cuda(t2s_optim *o, double lr, double *grad_norm,
                                          t2s_error *err) {
  t2s_params *p = o->params;
  const t2s_optim_cfg *c = &o->cfg;
  int64_t next = o->step + 1;
  double bc1 = c->type == T2S_OPTIM_ADAMW ? 1.0 - pow(c->beta1, (double)next) : 0.0;
  table t;
  t2s_status st = table_make(p, lr, c->weight_decay, bc1, &t, err);
  double norm = -1.0, clip = 1.0;
  if (st == T2S_OK && (grad_norm || c->grad_clip > 0)) st = norm_of(p, t, &norm, err);
  if (st == T2S_OK && grad_norm) *grad_norm = norm;
  if (st == T2S_OK && !isfinite(norm) && norm != -1.0)
    st = t2s_error_set(err, T2S_ERR_NUMERIC, "the gradient norm is %g at optimizer step %lld; "
                       "the step was not applied", norm, (long long)o->step);
  if (st == T2S_OK && c->grad_clip > 0 && norm > c->grad_clip) clip = c->grad_clip / (norm + 1e-6);
  if (st == T2S_OK && clip != 1.0)
    st = run_each((int64_t)p->numel, scale_f{p->grad, (float)clip}, "gradient clipping", err);
  if (st == T2S_OK) {
    o->step = next;
    if (c->type == T2S_OPTIM_SGD)
      st = run_each(t.total, sgd_f{t.dev, t.count, p->data, p->grad,
                                   o->n_state ? o->state[0] : NULL, (float)c->momentum,
                                   o->step == 1},
                    "the SGD kernel", err);
    else
      st = run_each(t.total, adamw_f{t.dev, t.count, p->data, p->grad, o->state[0], o->state[1],
                                     (float)c->beta1, (float)c->beta2, (float)c->eps,
                                     (float)sqrt(1.0 - pow(c->beta2, (double)o->step))},
                    "the AdamW kernel", err);
  }
  table_free(&t);
  return st;
}

extern "C" t2s_status t2s_ema_update_cuda(t2s_params *teacher, const t2s_params *student,
                                          double alpha, int64_t iter, int copy_buffers,
                                          t2s_error *err) {
  if (teacher->device != T2S_DEV_CUDA)
    return t2s_error_set(err, T2S_ERR_INVALID, "EMA update: the student is on cuda but the "
                         "teacher on %s; build both networks on one device",
                         t2s_device_name(teacher->device));
  double a = 1.0 - 1.0 / (double)(iter + 1);
  if (alpha < a) a = alpha;
  t2s_status st = run_each((int64_t)student->numel,
                           ema_f{teacher->data, student->data, (float)a, (float)(1.0 - a)},
                           "the EMA kernel", err);
  if (st == T2S_OK && copy_buffers && student->buf_numel > 0) {
    cudaError_t e = cudaMemcpyAsync(teacher->buf_data, student->buf_data,
                                    student->buf_numel * sizeof(float), cudaMemcpyDeviceToDevice, 0);
    if (e != cudaSuccess) return cuda_error(err, "copying the EMA buffers", e);
  }
  return st;
}
