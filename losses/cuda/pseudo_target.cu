/* The CUDA slots of the pseudo-target image (maths and FFT layout in
 * losses/pseudo_target.c; the CPU slots there run FFTW on host images).
 *
 * Fourier, on device images of either layout, without a trip through the host:
 *   1. the 3N channel planes are copied into a planar f32 buffer (plane p = 3 n + c);
 *   2. one batched cuFFT R2C over the 3N planes: plane p's H x (W/2 + 1) half
 *      spectrum, the layout of FFTW's r2c, so the square |k_y| < b, |k_x| < b is the
 *      same rows k_y = -(b-1)..b-1 and columns 0..b-1 as on the CPU;
 *   3. style: the amplitudes there, in the CPU's order (a small download: the styles
 *      are host floats that the gather reduces on the host);
 *      apply: each amplitude replaced by the paired style's, the phase kept (a zero
 *      amplitude takes the style value as a real number), exactly the CPU's update;
 *   4. one batched C2R, then v / (H W) (the same float 1 / (H W) as the CPU) clipped to
 *      [0, 255] into the output, in its layout.
 * The pairing (t2s_pseudo_target_pair) is drawn on the host; the paired styles, N x
 * style_size floats, are uploaded once. The difference to the CPU is the FFT's own
 * rounding (fp32, O(eps log(H W)) of the spectrum's scale).
 *
 * Plans: a few (forward, inverse) pairs per object (= per image size), keyed by the
 * number of planes, made on first use and kept until t2s_pseudo_target_destroy. They
 * do not allocate: the work area comes from the pass arena at each call, and each call
 * sets the context's stream. Method none (and beta = 0) is a device copy; colour has no
 * CUDA slot (its images stay on the host, the CPU slot). */
#include <cufft.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/cuda/kernels.cuh"
extern "C" {
#include "losses/pseudo_target.h"
}

using namespace t2s_cuda;

enum { PLAN_SLOTS = 4 };

/* The plans of one image size, keyed by the number of planes (3 x images). */
struct t2s_pt_cuda {
  int used, next;  /* entries filled; the entry replaced when all are */
  struct {
    int planes;
    cufftHandle forward, inverse;
    size_t work;   /* bytes of work area either plan needs */
  } e[PLAN_SLOTS];
};

namespace {

const char *cufft_status_name(cufftResult r) {
  switch (r) {
    case CUFFT_SUCCESS: return "CUFFT_SUCCESS";
    case CUFFT_INVALID_PLAN: return "CUFFT_INVALID_PLAN";
    case CUFFT_ALLOC_FAILED: return "CUFFT_ALLOC_FAILED";
    case CUFFT_INVALID_TYPE: return "CUFFT_INVALID_TYPE";
    case CUFFT_INVALID_VALUE: return "CUFFT_INVALID_VALUE";
    case CUFFT_INTERNAL_ERROR: return "CUFFT_INTERNAL_ERROR";
    case CUFFT_EXEC_FAILED: return "CUFFT_EXEC_FAILED";
    case CUFFT_SETUP_FAILED: return "CUFFT_SETUP_FAILED";
    case CUFFT_INVALID_SIZE: return "CUFFT_INVALID_SIZE";
    case CUFFT_UNALIGNED_DATA: return "CUFFT_UNALIGNED_DATA";
    case CUFFT_INVALID_DEVICE: return "CUFFT_INVALID_DEVICE";
    case CUFFT_NO_WORKSPACE: return "CUFFT_NO_WORKSPACE";
    case CUFFT_NOT_IMPLEMENTED: return "CUFFT_NOT_IMPLEMENTED";
    case CUFFT_NOT_SUPPORTED: return "CUFFT_NOT_SUPPORTED";
    default: return "an unlisted cufftResult";
  }
}

/* "pseudo_target_apply on cuda: cufftExecR2C(...) failed (CUFFT_...) on 4 images of
 * 512x512 at losses/cuda/pseudo_target.cu:123" */
t2s_status fail(t2s_ctx *ctx, const char *op, const t2s_pt_geometry &g, int64_t images,
                const char *call, const char *why, int line) {
  t2s_ctx_fail(ctx, T2S_ERR_BACKEND, "%s on cuda: %s failed (%s) on %lld images of %dx%d at %s:%d",
               op, call, why, (long long)images, g.H, g.W, __FILE__, line);
  return T2S_ERR_BACKEND;
}

#define PT_CUFFT(call)                                                                   \
  do {                                                                                   \
    cufftResult pt_r_ = (call);                                                          \
    if (pt_r_ != CUFFT_SUCCESS)                                                          \
      return fail(ctx, op, g, images, #call, cufft_status_name(pt_r_), __LINE__);        \
  } while (0)
/* Offset of (image n, channel c, pixel i) in a 3-channel image tensor. */
struct image_index {
  int64_t hw; bool nhwc;
  __device__ int64_t operator()(int64_t n, int64_t c, int64_t i) const {
    return nhwc ? (n * hw + i) * 3 + c : (n * 3 + c) * hw + i;
  }
};

image_index index_of(const t2s_tensor *x, int64_t hw) {
  return image_index{hw, x->layout == T2S_LAYOUT_NHWC};
}

/* planar[p hw + i] = x(n, c, i), p = 3 n + c */
struct to_planes_f {
  const float *x; image_index at; float *planar;
  __device__ void operator()(int64_t e) const {
    int64_t p = e / at.hw, i = e % at.hw;
    planar[e] = x[at(p / 3, p % 3, i)];
  }
};

/* out(n, c, i) = clip(planar[p hw + i] / (H W), 0, 255) */
struct from_planes_f {
  const float *planar; float inv; image_index at; float *out;
  __device__ void operator()(int64_t e) const {
    int64_t p = e / at.hw, i = e % at.hw;
    float v = planar[e] * inv;
    out[at(p / 3, p % 3, i)] = v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v;
  }
};

/* out(n, c, i) = x(n, c, i), any two layouts */
struct copy_f {
  const float *x; image_index from, to; float *out;
  __device__ void operator()(int64_t e) const {
    int64_t p = e / from.hw, i = e % from.hw;
    out[to(p / 3, p % 3, i)] = x[from(p / 3, p % 3, i)];
  }
};

/* Entry e of the square over all planes: plane p, row r = k_y + b - 1 in 0..2b-2,
 * column k_x in 0..b-1. Its place in the half spectra, and in the styles: plane p's
 * block of (2b - 1) b values (image n's style is planes 3n..3n+2: the CPU's order). */
struct square {
  int H, wc, b;
  __device__ int64_t freq(int64_t e) const {
    int64_t per = (int64_t)(2 * b - 1) * b, p = e / per, r = (e % per) / b, kx = e % b;
    int64_t ky = r - (b - 1), row = ky >= 0 ? ky : ky + H;
    return (p * H + row) * wc + kx;
  }
};

struct amplitude_f {
  const cufftComplex *freq; square sq; float *style;
  __device__ void operator()(int64_t e) const {
    cufftComplex z = freq[sq.freq(e)];
    style[e] = hypotf(z.x, z.y);
  }
};

/* amplitude -> the paired style's, phase kept (losses/pseudo_target.c fda_apply) */
struct swap_f {
  cufftComplex *freq; square sq; const float *style;
  __device__ void operator()(int64_t e) const {
    cufftComplex *z = freq + sq.freq(e);
    float amp = hypotf(z->x, z->y), want = style[e];
    if (amp > 0.0f) {
      z->x *= want / amp;
      z->y *= want / amp;
    } else {
      z->x = want;
      z->y = 0.0f;
    }
  }
};

/* The refusals that the public checks leave to the slot. */
t2s_status check_slot(t2s_ctx *ctx, const char *op, const t2s_pt_geometry &g, int64_t images) {
  if (ctx->device != T2S_DEV_CUDA)
    return t2s_error_set(&ctx->err, T2S_ERR_INVALID,
                         "%s: the images are on cuda but the context runs on %s; create the "
                         "context on cuda or pass host images",
                         op, t2s_device_name(ctx->device));
  if (g.cfg.method == T2S_PT_COLOR)
    return t2s_error_set(&ctx->err, T2S_ERR_UNSUPPORTED,
                         "%s: method 'color' has no CUDA implementation; pass host images (the "
                         "CPU slot), or use method 'fourier' or 'none'",
                         op);
  if (images * 3 * g.H * (int64_t)(g.W / 2 + 1) > INT_MAX || images * 3 > INT_MAX)
    return t2s_error_set(&ctx->err, T2S_ERR_INVALID,
                         "%s: %lld images of %dx%d exceed one cuFFT batch (2^31 elements); "
                         "split the batch",
                         op, (long long)images, g.H, g.W);
  return T2S_OK;
}

void destroy_entry(t2s_pt_cuda *c, int i) {
  cufftDestroy(c->e[i].forward);
  cufftDestroy(c->e[i].inverse);
}

/* The (forward, inverse) pair for `planes` planes: cached, or made (replacing the
 * oldest entry when the cache is full). *slot is its index in *g.cuda. */
t2s_status plans_for(t2s_ctx *ctx, const char *op, const t2s_pt_geometry &g, int planes,
                     int *slot) {
  int64_t images = planes / 3;
  if (*g.cuda == NULL) {
    *g.cuda = (t2s_pt_cuda *)calloc(1, sizeof(t2s_pt_cuda));
    if (*g.cuda == NULL)
      return t2s_error_set(&ctx->err, T2S_ERR_NOMEM, "%s: no host memory for the cuFFT plans", op);
  }
  t2s_pt_cuda *c = *g.cuda;
  for (int i = 0; i < c->used; i++)
    if (c->e[i].planes == planes) {
      *slot = i;
      return T2S_OK;
    }
  cufftHandle fwd, inv;
  PT_CUFFT(cufftCreate(&fwd));
  cufftResult r = cufftCreate(&inv);
  if (r != CUFFT_SUCCESS) {
    cufftDestroy(fwd);
    return fail(ctx, op, g, images, "cufftCreate(&inv)", cufft_status_name(r), __LINE__);
  }
  int dims[2] = {g.H, g.W};
  size_t wf = 0, wi = 0;
  const char *call = "cufftSetAutoAllocation(forward, 0)";
  r = cufftSetAutoAllocation(fwd, 0);
  if (r == CUFFT_SUCCESS) {
    call = "cufftSetAutoAllocation(inverse, 0)";
    r = cufftSetAutoAllocation(inv, 0);
  }
  if (r == CUFFT_SUCCESS) {
    call = "cufftMakePlanMany(forward, R2C)";
    r = cufftMakePlanMany(fwd, 2, dims, NULL, 1, 0, NULL, 1, 0, CUFFT_R2C, planes, &wf);
  }
  if (r == CUFFT_SUCCESS) {
    call = "cufftMakePlanMany(inverse, C2R)";
    r = cufftMakePlanMany(inv, 2, dims, NULL, 1, 0, NULL, 1, 0, CUFFT_C2R, planes, &wi);
  }
  if (r != CUFFT_SUCCESS) {
    cufftDestroy(fwd);
    cufftDestroy(inv);
    return fail(ctx, op, g, images, call, cufft_status_name(r), __LINE__);
  }
  int i;
  if (c->used < PLAN_SLOTS) {
    i = c->used++;
  } else {  /* full: the oldest pair goes */
    i = c->next;
    destroy_entry(c, i);
    c->next = (c->next + 1) % PLAN_SLOTS;
  }
  c->e[i].planes = planes;
  c->e[i].forward = fwd;
  c->e[i].inverse = inv;
  c->e[i].work = wf > wi ? wf : wi;
  *slot = i;
  return T2S_OK;
}

/* The buffers of one call, in the pass arena (given back at its end). */
typedef struct fft_batch {
  int slot;
  float *planar;         /* 3N x H x W */
  cufftComplex *freq;    /* 3N x H x (W/2 + 1) */
} fft_batch;

/* Plans and buffers for the images of x; the work area set on both plans with the
 * context's stream. */
t2s_status prepare(t2s_ctx *ctx, const char *op, const t2s_pt_geometry &g, int64_t images,
                   fft_batch *fb) {
  t2s_status st = plans_for(ctx, op, g, (int)(3 * images), &fb->slot);
  if (st != T2S_OK) return st;
  const t2s_pt_cuda *c = *g.cuda;
  int64_t planes = 3 * images, wc = g.W / 2 + 1;
  size_t work = c->e[fb->slot].work;
  fb->planar = (float *)t2s_scratch(ctx, sizeof(float) * (size_t)(planes * g.H * g.W));
  fb->freq = (cufftComplex *)t2s_scratch(ctx, sizeof(cufftComplex) * (size_t)(planes * g.H * wc));
  void *area = t2s_scratch(ctx, work ? work : 1);
  if (fb->planar == NULL || fb->freq == NULL || area == NULL) return ctx->err.status;
  cudaStream_t stream = t2s_cuda_be(ctx)->stream;
  cufftHandle fwd = c->e[fb->slot].forward, inv = c->e[fb->slot].inverse;
  PT_CUFFT(cufftSetStream(fwd, stream));
  PT_CUFFT(cufftSetStream(inv, stream));
  PT_CUFFT(cufftSetWorkArea(fwd, area));
  PT_CUFFT(cufftSetWorkArea(inv, area));
  return T2S_OK;
}

/* planar <- x, then freq <- R2C(planar) */
t2s_status forward(t2s_ctx *ctx, const char *op, const t2s_pt_geometry &g, const t2s_tensor *x,
                   const fft_batch *fb) {
  int64_t images = x->shape[0], hw = (int64_t)g.H * g.W;
  t2s_status st = launch_each(ctx, NULL, 3 * images * hw,
                              to_planes_f{t2s_f32(x), index_of(x, hw), fb->planar});
  if (st != T2S_OK) return st;
  PT_CUFFT(cufftExecR2C((*g.cuda)->e[fb->slot].forward, fb->planar, fb->freq));
  return T2S_OK;
}

t2s_status style_batch(t2s_ctx *ctx, const t2s_pt_geometry &g, const t2s_tensor *x_t,
                       float *styles) {
  const char *op = "pseudo_target_style";
  int64_t images = x_t->shape[0], n = images * g.style_size;
  fft_batch fb;
  t2s_status st = prepare(ctx, op, g, images, &fb);
  float *dev = st == T2S_OK ? (float *)t2s_scratch(ctx, sizeof(float) * (size_t)n) : NULL;
  if (dev == NULL) return ctx->err.status;
  if ((st = forward(ctx, op, g, x_t, &fb)) != T2S_OK) return st;
  square sq = {g.H, g.W / 2 + 1, g.b};
  if ((st = launch_each(ctx, NULL, n, amplitude_f{fb.freq, sq, dev})) != T2S_OK) return st;
  return t2s_device_copy(T2S_DEV_CPU, styles, T2S_DEV_CUDA, dev, sizeof(float) * (size_t)n,
                         &ctx->err);
}

/* The styles paired with the images, in image order (host -> one upload). */
const float *paired_styles(t2s_ctx *ctx, const t2s_pt_geometry &g, int64_t images,
                           const float *styles, int64_t n_styles, uint64_t seed, int64_t iter,
                           int64_t global_offset) {
  size_t bytes = sizeof(float) * (size_t)(images * g.style_size);
  float *host = (float *)malloc(bytes);
  float *dev = (float *)t2s_scratch(ctx, bytes);
  if (host == NULL) {
    t2s_ctx_fail(ctx, T2S_ERR_NOMEM, "pseudo_target_apply: no host memory for %lld styles",
                 (long long)images);
    return NULL;
  }
  for (int64_t b = 0; b < images; b++) {
    int64_t j = t2s_pseudo_target_pair(seed, iter, global_offset + b, n_styles);
    memcpy(host + b * g.style_size, styles + j * g.style_size, sizeof(float) * (size_t)g.style_size);
  }
  t2s_status st = dev == NULL ? ctx->err.status
                              : t2s_device_copy(T2S_DEV_CUDA, dev, T2S_DEV_CPU, host, bytes, &ctx->err);
  free(host);
  return st == T2S_OK ? dev : NULL;
}

t2s_status apply_batch(t2s_ctx *ctx, const t2s_pt_geometry &g, const t2s_tensor *x_s,
                       const float *styles, int64_t n_styles, uint64_t seed, int64_t iter,
                       int64_t global_offset, t2s_tensor *x_st) {
  const char *op = "pseudo_target_apply";
  int64_t images = x_s->shape[0], hw = (int64_t)g.H * g.W;
  if (g.style_size == 0)  /* none, or beta = 0: the source itself */
    return launch_each(ctx, NULL, 3 * images * hw,
                       copy_f{t2s_f32(x_s), index_of(x_s, hw), index_of(x_st, hw), t2s_f32(x_st)});
  fft_batch fb;
  t2s_status st = prepare(ctx, op, g, images, &fb);
  const float *want = st == T2S_OK ? paired_styles(ctx, g, images, styles, n_styles, seed, iter,
                                                   global_offset)
                                   : NULL;
  if (want == NULL) return ctx->err.status;
  if ((st = forward(ctx, op, g, x_s, &fb)) != T2S_OK) return st;
  square sq = {g.H, g.W / 2 + 1, g.b};
  st = launch_each(ctx, NULL, images * g.style_size, swap_f{fb.freq, sq, want});
  if (st != T2S_OK) return st;
  PT_CUFFT(cufftExecC2R((*g.cuda)->e[fb.slot].inverse, fb.freq, fb.planar));
  float inv = 1.0f / (float)hw;  /* the CPU's factor */
  return launch_each(ctx, NULL, 3 * images * hw,
                     from_planes_f{fb.planar, inv, index_of(x_st, hw), t2s_f32(x_st)});
}

}  // namespace

t2s_status t2s_pseudo_target_style_cuda(t2s_ctx *ctx, t2s_pseudo_target *pt,
                                        const t2s_tensor *x_t, float *styles) {
  t2s_pt_geometry g = t2s_pseudo_target_geometry(pt);
  t2s_status st = check_slot(ctx, "pseudo_target_style", g, x_t->shape[0]);
  if (st != T2S_OK || g.style_size == 0 || x_t->shape[0] == 0) return st;
  t2s_arena_mark mark = t2s_scratch_mark(ctx);
  st = style_batch(ctx, g, x_t, styles);
  t2s_scratch_release(ctx, mark);
  return st;
}

t2s_status t2s_pseudo_target_apply_cuda(t2s_ctx *ctx, t2s_pseudo_target *pt,
                                        const t2s_tensor *x_s, const float *styles,
                                        int64_t n_styles, uint64_t seed, int64_t iter,
                                        int64_t global_offset, t2s_tensor *x_st) {
  t2s_pt_geometry g = t2s_pseudo_target_geometry(pt);
  t2s_status st = check_slot(ctx, "pseudo_target_apply", g, x_s->shape[0]);
  if (st != T2S_OK || x_s->shape[0] == 0) return st;
  /* the arena is given back in stream order: later work on the stream runs after */
  t2s_arena_mark mark = t2s_scratch_mark(ctx);
  st = apply_batch(ctx, g, x_s, styles, n_styles, seed, iter, global_offset, x_st);
  t2s_scratch_release(ctx, mark);
  return st;
}

void t2s_pseudo_target_cuda_release(t2s_pt_cuda *plans) {
  if (plans == NULL) return;
  for (int i = 0; i < plans->used; i++) destroy_entry(plans, i);
  free(plans);
}
