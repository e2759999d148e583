/* The CUDA slots of MIC's block mask (maths in losses/block_mask.h; the CPU slots are
 * in losses/block_mask.c). One thread per pixel draws its cell's Philox number with
 * the sample's key (computed on the host, bit for bit the CPU's), so both backends
 * keep the same cells; the cell of a pixel uses the same f32 scale as the CPU. */
#include "core/cuda/kernels.cuh"
extern "C" {
#include "losses/block_mask.h"
}

using namespace t2s_cuda;

namespace {

struct mask_f {
  const t2s_rng_key *keys; uint8_t *mask; int h, w, gh, gw; float sy, sx, ratio;
  __device__ void operator()(int64_t i) const {
    int64_t hw = (int64_t)h * w, b = i / hw, p = i % hw;
    int y = (int)(p / w), x = (int)(p % w);
    int cy = min((int)floorf(__fmul_rn((float)y, sy)), gh - 1);
    int cx = min((int)floorf(__fmul_rn((float)x, sx)), gw - 1);
    mask[i] = t2s_cuda_rng_uniform(keys[b], (uint64_t)(cy * gw + cx)) > ratio;
  }
};

struct apply_f {
  const uint8_t *mask; float *x; int64_t channels, hw; bool nhwc;
  __device__ void operator()(int64_t e) const {
    int64_t p = nhwc ? e / channels : (e / (channels * hw)) * hw + e % hw;
    if (!mask[p]) x[e] = 0.0f;
  }
};

}  // namespace

t2s_status t2s_block_mask_cuda(t2s_ctx *ctx, const t2s_block_mask_cfg *cfg, const t2s_rng_key *keys,
                               t2s_tensor *mask) {
  int64_t n = mask->shape[0];
  int h = (int)mask->shape[1], w = (int)mask->shape[2], gh, gw;
  t2s_block_mask_grid(cfg, h, w, &gh, &gw);
  size_t bytes = (size_t)n * sizeof *keys;
  t2s_rng_key *keys_dev = (t2s_rng_key *)t2s_scratch(ctx, bytes);
  if (keys_dev == NULL) return ctx->err.status;
  t2s_status st = t2s_device_copy(mask->device, keys_dev, T2S_DEV_CPU, keys, bytes, &ctx->err);
  if (st != T2S_OK) return st;
  return launch_each(ctx, NULL, n * h * w,
                     mask_f{keys_dev, t2s_u8(mask), h, w, gh, gw, (float)gh / (float)h, (float)gw / (float)w,
                            cfg->ratio});
}

t2s_status t2s_block_mask_apply_cuda(t2s_ctx *ctx, const t2s_tensor *mask, t2s_tensor *x) {
  int64_t channels = x->shape[1], hw = x->shape[2] * x->shape[3];
  return launch_each(ctx, NULL, t2s_numel(x),
                     apply_f{t2s_u8(mask), t2s_f32(x), channels, hw, x->layout == T2S_LAYOUT_NHWC});
}
