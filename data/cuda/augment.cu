/* The CUDA slots of the batch image steps of data/augment.h (t2s_images_*): layout
 * change at upload, colour jitter, Gaussian blur and normalisation on NHWC f32 images
 * with 3 channels. The random draws stay on the host (the same keys as the CPU path);
 * each per-pixel formula is data/augment.c's, term by term, with __f*_rn intrinsics so
 * that nvcc contracts nothing into an FMA (the CPU reference is built with
 * -ffp-contract=off): a pixel gets the CPU's float. The one reduction (the grey mean
 * of contrast) is a fixed-geometry sum in double. */
#include "core/cuda/kernels.cuh"
extern "C" {
#include "data/augment.h"
}

using namespace t2s_cuda;

namespace {

struct layout_f {
  const float *src; float *dst; int64_t c, hw; bool to_nhwc;
  __device__ void operator()(int64_t e) const {
    /* e indexes dst; (b, ch, p) recovered from dst's layout */
    int64_t b, ch, p;
    if (to_nhwc) {
      ch = e % c;
      p = (e / c) % hw;
      b = e / (c * hw);
      dst[e] = src[(b * c + ch) * hw + p];
    } else {
      p = e % hw;
      ch = (e / hw) % c;
      b = e / (c * hw);
      dst[e] = src[(b * hw + p) * c + ch];
    }
  }
};

struct normalize_f {
  float *x; float m0, m1, m2, s0, s1, s2;
  __device__ void operator()(int64_t e) const {
    int c = (int)(e % 3);
    float m = c == 0 ? m0 : c == 1 ? m1 : m2, sd = c == 0 ? s0 : c == 1 ? s1 : s2;
    x[e] = __fdiv_rn(__fsub_rn(x[e], m), sd);
  }
};

/* ---- colour jitter (torchvision on [0, 1]; data/augment.c jitter_one) ---- */

__device__ __forceinline__ float clamp01(float v) { return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v); }
__device__ __forceinline__ float gray(float r, float g, float b) {
  return __fadd_rn(__fadd_rn(__fmul_rn(0.2989f, r), __fmul_rn(0.587f, g)), __fmul_rn(0.114f, b));
}
__device__ __forceinline__ float blend(float a, float b, float ratio) {
  return clamp01(__fadd_rn(__fmul_rn(ratio, a), __fmul_rn(__fsub_rn(1.0f, ratio), b)));
}

__device__ void rgb2hsv(float r, float g, float b, float *h, float *s, float *v) {
  float maxc = fmaxf(r, fmaxf(g, b)), minc = fminf(r, fminf(g, b));
  bool eqc = maxc == minc;
  float cr = __fsub_rn(maxc, minc);
  *s = __fdiv_rn(cr, eqc ? 1.0f : maxc);
  float div = eqc ? 1.0f : cr;
  float rc = __fdiv_rn(__fsub_rn(maxc, r), div), gc = __fdiv_rn(__fsub_rn(maxc, g), div),
        bc = __fdiv_rn(__fsub_rn(maxc, b), div);
  float hh;
  if (maxc == r) hh = __fsub_rn(bc, gc);
  else if (maxc == g) hh = __fsub_rn(__fadd_rn(2.0f, rc), bc);
  else hh = __fsub_rn(__fadd_rn(4.0f, gc), rc);
  *h = fmodf(__fadd_rn(__fdiv_rn(hh, 6.0f), 1.0f), 1.0f);
  *v = maxc;
}

__device__ void hsv2rgb(float h, float s, float v, float *r, float *g, float *b) {
  float h6 = __fmul_rn(h, 6.0f);
  float i = floorf(h6), f = __fsub_rn(h6, i);
  int k = ((int)i % 6 + 6) % 6;
  float p = clamp01(__fmul_rn(v, __fsub_rn(1.0f, s)));
  float q = clamp01(__fmul_rn(v, __fsub_rn(1.0f, __fmul_rn(s, f))));
  float t = clamp01(__fmul_rn(v, __fsub_rn(1.0f, __fmul_rn(s, __fsub_rn(1.0f, f)))));
  float rr[6] = {v, q, p, p, t, v}, gg[6] = {t, v, v, q, p, p}, bb[6] = {p, p, t, v, v, q};
  *r = rr[k];
  *g = gg[k];
  *b = bb[k];
}

/* x *= s over the pixels of the samples that jitter (the [0, 255] <-> [0, 1] edges) */
struct jitter_scale_f {
  float *x; const t2s_jitter_params *p; int64_t hw; float s;
  __device__ void operator()(int64_t e) const {
    if (p[e / (3 * hw)].apply) x[e] = __fmul_rn(x[e], s);
  }
};

/* Stage k of every sample: op p.order[k] on one pixel; mean[b] is the grey mean for
 * contrast (computed just before by grey_mean_kernel). */
struct jitter_stage_f {
  float *x; const t2s_jitter_params *p; const float *mean; int64_t hw; int stage;
  __device__ void operator()(int64_t i) const {
    int64_t b = i / hw;
    const t2s_jitter_params &q = p[b];
    if (!q.apply) return;
    float *px = x + i * 3;
    float R = px[0], G = px[1], B = px[2];
    int op = q.order[stage];
    if (op == 0) {
      R = blend(R, 0.0f, q.brightness), G = blend(G, 0.0f, q.brightness), B = blend(B, 0.0f, q.brightness);
    } else if (op == 1) {
      float m = mean[b];
      R = blend(R, m, q.contrast), G = blend(G, m, q.contrast), B = blend(B, m, q.contrast);
    } else if (op == 2) {
      float l = gray(R, G, B);
      R = blend(R, l, q.saturation), G = blend(G, l, q.saturation), B = blend(B, l, q.saturation);
    } else {
      float h, s, v;
      rgb2hsv(R, G, B, &h, &s, &v);
      h = __fadd_rn(h, q.hue);
      h = __fsub_rn(h, floorf(h)); /* Python's % 1.0 */
      hsv2rgb(h, s, v, &R, &G, &B);
    }
    px[0] = R, px[1] = G, px[2] = B;
  }
};

/* One block per sample: the grey mean over its pixels, summed in double with a fixed
 * geometry (strided per thread, then a tree), so every run gives the same value. */
__global__ void grey_mean_kernel(const float *x, const t2s_jitter_params *p, int64_t hw, int stage,
                                 float *mean) {
  __shared__ double s[256];
  int64_t b = blockIdx.x;
  double acc = 0.0;
  if (p[b].apply && p[b].order[stage] == 1)
    for (int64_t i = threadIdx.x; i < hw; i += 256) {
      const float *px = x + (b * hw + i) * 3;
      acc += (double)gray(px[0], px[1], px[2]);
    }
  s[threadIdx.x] = acc;
  for (int stride = 128; stride > 0; stride >>= 1) {
    __syncthreads();
    if ((int)threadIdx.x < stride) s[threadIdx.x] += s[threadIdx.x + stride];
  }
  if (threadIdx.x == 0) mean[b] = (float)(s[0] / (double)hw);
}

/* ---- Gaussian blur (kornia, reflect borders; data/augment.c blur_plane) ---- */

__device__ __forceinline__ int reflect(int i, int n) {
  if (n == 1) return 0;
  int period = 2 * (n - 1);
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - i;
}

/* pass along x (horizontal) or y (vertical) of one (h, w, 3) image; taps k, centre c,
 * radius r; the sum runs over d = -r..r in order, as on the CPU */
struct blur_pass_f {
  const float *in; float *out; const float *k; int h, w, c, r; bool along_x;
  __device__ void operator()(int64_t e) const {
    int ch = (int)(e % 3), x = (int)((e / 3) % w), y = (int)(e / (3 * (int64_t)w));
    float acc = 0.0f;
    for (int d = -r; d <= r; d++) {
      int64_t src = along_x ? ((int64_t)y * w + reflect(x + d, w)) : ((int64_t)reflect(y + d, h) * w + x);
      acc = __fadd_rn(acc, __fmul_rn(k[c + d], in[src * 3 + ch]));
    }
    out[e] = acc;
  }
};

/* Copies host bytes into the pass arena (on the device). */
template <class T>
T *upload(t2s_ctx *ctx, const T *host, size_t count) {
  T *d = (T *)t2s_scratch(ctx, count * sizeof(T) + 1);
  if (d == NULL) return NULL;
  cudaError_t e = cudaMemcpyAsync(d, host, count * sizeof(T), cudaMemcpyHostToDevice,
                                  t2s_cuda_be(ctx)->stream);
  if (e != cudaSuccess) {
    t2s_cuda_fail(ctx, NULL, "cudaMemcpyAsync (images parameters)", cudaGetErrorString(e), __FILE__,
                  __LINE__);
    return NULL;
  }
  return d;
}

}  // namespace

t2s_status t2s_images_layout_cuda(t2s_ctx *ctx, const float *src, float *dst, int64_t n,
                                  int64_t channels, int64_t hw, int to_nhwc) {
  return launch_each(ctx, NULL, n * channels * hw, layout_f{src, dst, channels, hw, to_nhwc != 0});
}

t2s_status t2s_images_normalize_cuda(t2s_ctx *ctx, float *x, int64_t n, int64_t hw,
                                     const float mean[3], const float std[3]) {
  return launch_each(ctx, NULL, n * hw * 3,
                     normalize_f{x, mean[0], mean[1], mean[2], std[0], std[1], std[2]});
}

t2s_status t2s_images_jitter_cuda(t2s_ctx *ctx, float *x, int64_t n, int64_t hw,
                                  const t2s_jitter_params *params) {
  if (n <= 0) return T2S_OK;
  int any = 0;
  for (int64_t b = 0; b < n; b++) any |= params[b].apply;
  if (!any) return T2S_OK;
  t2s_jitter_params *p = upload(ctx, params, (size_t)n);
  float *mean = (float *)t2s_scratch(ctx, (size_t)n * sizeof(float));
  if (p == NULL || mean == NULL) return ctx->err.status;
  t2s_status st = launch_each(ctx, NULL, n * hw * 3, jitter_scale_f{x, p, hw, 1.0f / 255.0f});
  for (int k = 0; k < 4 && st == T2S_OK; k++) {
    int contrast = 0;
    for (int64_t b = 0; b < n; b++) contrast |= params[b].apply && params[b].order[k] == 1;
    if (contrast) {
      grey_mean_kernel<<<(unsigned)n, 256, 0, t2s_cuda_be(ctx)->stream>>>(x, p, hw, k, mean);
      T2S_CU_LAUNCHED(ctx, NULL, "grey_mean_kernel (colour jitter)");
    }
    st = launch_each(ctx, NULL, n * hw, jitter_stage_f{x, p, mean, hw, k});
  }
  if (st == T2S_OK) st = launch_each(ctx, NULL, n * hw * 3, jitter_scale_f{x, p, hw, 255.0f});
  return st;
}

t2s_status t2s_images_blur_cuda(t2s_ctx *ctx, float *x, int h, int w,
                                const float *ky_host, int kh, int ry,
                                const float *kx_host, int kw, int rx) {
  int64_t n = (int64_t)h * w * 3;
  float *ky = upload(ctx, ky_host, (size_t)kh), *kx = upload(ctx, kx_host, (size_t)kw);
  float *tmp = (float *)t2s_scratch(ctx, (size_t)n * sizeof(float));
  if (ky == NULL || kx == NULL || tmp == NULL) return ctx->err.status;
  t2s_status st = launch_each(ctx, NULL, n, blur_pass_f{x, tmp, kx, h, w, kw / 2, rx, true});
  if (st == T2S_OK) st = launch_each(ctx, NULL, n, blur_pass_f{tmp, x, ky, h, w, kh / 2, ry, false});
  return st;
}
