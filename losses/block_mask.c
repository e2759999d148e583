#include "losses/block_mask.h"

#include <math.h>

#include "core/device.h"
#include "core/rng.h"

enum { PURPOSE_MIC = 0x4d4943 }; /* "MIC" */

t2s_block_mask_cfg t2s_block_mask_cfg_defaults(void) {
  t2s_block_mask_cfg c = {64, 512, 0.7f};
  return c;
}

const char *t2s_block_mask_cfg_check(const t2s_block_mask_cfg *c) {
  if (c->block_size < 1) return "block mask: the block size must be at least 1 pixel";
  if (c->ref_height < 1) return "block mask: the reference crop height must be at least 1 pixel";
  if (!(c->ratio >= 0.0f && c->ratio < 1.0f)) return "block mask: the mask ratio must be in [0, 1)";
  return NULL;
}

int t2s_block_mask_block(const t2s_block_mask_cfg *c, int h) {
  int b = (int)floor((double)c->block_size * h / c->ref_height + 0.5);
  return b < 1 ? 1 : b;
}

/* Python's round (ties to even, as nearbyint in the default rounding mode), at least 1. */
static int grid_cells(int size, int block) {
  int n = (int)nearbyint((double)size / block);
  return n < 1 ? 1 : n;
}

void t2s_block_mask_grid(const t2s_block_mask_cfg *c, int h, int w, int *gh, int *gw) {
  int b = t2s_block_mask_block(c, h);
  *gh = grid_cells(h, b);
  *gw = grid_cells(w, b);
}

t2s_rng_key t2s_block_mask_key(uint64_t seed, int64_t iter, int64_t global_index) {
  return t2s_rng_key_make(seed, (uint64_t)iter, (uint64_t)global_index, PURPOSE_MIC);
}

void t2s_block_mask_cells(const t2s_block_mask_cfg *c, int gh, int gw, t2s_rng_key key, uint8_t *keep) {
  for (int64_t i = 0; i < (int64_t)gh * gw; i++) keep[i] = t2s_rng_uniform(key, (uint64_t)i) > c->ratio;
}

/* The CPU slot: the cells of each sample, then nearest upsampling (f32 scale as
 * PyTorch's, so the cell boundaries are PyTorch's). */
static t2s_status block_mask_cpu(t2s_ctx *ctx, const t2s_block_mask_cfg *c, const t2s_rng_key *keys,
                                 t2s_tensor *mask) {
  int n = (int)mask->shape[0], h = (int)mask->shape[1], w = (int)mask->shape[2], gh, gw;
  t2s_block_mask_grid(c, h, w, &gh, &gw);
  uint8_t *cells = t2s_host_scratch(ctx, (size_t)gh * gw);
  if (cells == NULL) return ctx->err.status;
  const float sy = (float)gh / (float)h, sx = (float)gw / (float)w;
  for (int b = 0; b < n; b++) {
    t2s_block_mask_cells(c, gh, gw, keys[b], cells);
    uint8_t *m = t2s_u8(mask) + (int64_t)b * h * w;
    for (int y = 0; y < h; y++) {
      int cy = (int)floorf((float)y * sy);
      if (cy > gh - 1) cy = gh - 1;
      for (int x = 0; x < w; x++) {
        int cx = (int)floorf((float)x * sx);
        if (cx > gw - 1) cx = gw - 1;
        m[(int64_t)y * w + x] = cells[cy * gw + cx];
      }
    }
  }
  return T2S_OK;
}

/* The CPU slot of the masking: NCHW or NHWC storage. */
static t2s_status block_mask_apply_cpu(t2s_ctx *ctx, const t2s_tensor *mask, t2s_tensor *x) {
  (void)ctx;
  int64_t n = x->shape[0], ch = x->shape[1], hw = x->shape[2] * x->shape[3];
  const uint8_t *m = t2s_u8(mask);
  float *v = t2s_f32(x);
  int nhwc = x->layout == T2S_LAYOUT_NHWC;
  for (int64_t e = 0; e < n * ch * hw; e++) {
    int64_t p = nhwc ? e / ch : (e / (ch * hw)) * hw + e % hw;
    if (!m[p]) v[e] = 0.0f;
  }
  return T2S_OK;
}

typedef t2s_status (*mask_fn)(t2s_ctx *ctx, const t2s_block_mask_cfg *c, const t2s_rng_key *keys,
                              t2s_tensor *mask);
typedef t2s_status (*apply_fn)(t2s_ctx *ctx, const t2s_tensor *mask, t2s_tensor *x);
static const mask_fn mask_slots[T2S_DEV_COUNT] = {
    [T2S_DEV_CPU] = block_mask_cpu, [T2S_DEV_CUDA] = T2S_CUDA_SLOT(t2s_block_mask_cuda)};
static const apply_fn apply_slots[T2S_DEV_COUNT] = {
    [T2S_DEV_CPU] = block_mask_apply_cpu, [T2S_DEV_CUDA] = T2S_CUDA_SLOT(t2s_block_mask_apply_cuda)};

t2s_status t2s_block_mask(t2s_ctx *ctx, const t2s_block_mask_cfg *cfg, uint64_t seed, int64_t iter,
                          int64_t global_offset, t2s_tensor *mask) {
  if (!t2s_ctx_ok(ctx)) return ctx->err.status;
  const char *bad = t2s_block_mask_cfg_check(cfg);
  if (bad != NULL) return t2s_error_set(&ctx->err, T2S_ERR_INVALID, "%s", bad);
  char s[96];
  if (mask == NULL || mask->dtype != T2S_U8 || mask->ndim != 3 || t2s_numel(mask) == 0)
    return t2s_error_set(&ctx->err, T2S_ERR_INVALID, "block mask: the mask must be a non-empty uint8 "
                         "(N, H, W) tensor; got %s", mask ? t2s_shape_str(mask, s, sizeof s) : "NULL");
  int64_t n = mask->shape[0];
  /* host scratch: a CUDA upload of the keys may still read them after we return */
  t2s_rng_key *keys = t2s_host_scratch(ctx, (size_t)n * sizeof *keys);
  if (keys == NULL) return ctx->err.status;
  for (int64_t b = 0; b < n; b++) keys[b] = t2s_block_mask_key(seed, iter, global_offset + b);
  return T2S_DISPATCH(mask_slots, mask->device, &ctx->err, "block_mask", ctx, cfg, keys, mask);
}

t2s_status t2s_block_mask_apply(t2s_ctx *ctx, const t2s_tensor *mask, t2s_tensor *x) {
  if (!t2s_ctx_ok(ctx)) return ctx->err.status;
  char sm[96], sx[96];
  int ok = mask != NULL && mask->dtype == T2S_U8 && mask->ndim == 3 && x != NULL && x->dtype == T2S_F32 &&
           x->ndim == 4 && x->device == mask->device && x->shape[0] == mask->shape[0] &&
           x->shape[2] == mask->shape[1] && x->shape[3] == mask->shape[2];
  if (!ok)
    return t2s_error_set(&ctx->err, T2S_ERR_INVALID,
                         "block mask apply: need images f32 (N, C, H, W) and a uint8 mask (N, H, W) of one "
                         "size on one device; mask %s, images %s",
                         mask ? t2s_shape_str(mask, sm, sizeof sm) : "NULL",
                         x ? t2s_shape_str(x, sx, sizeof sx) : "NULL");
  return T2S_DISPATCH(apply_slots, mask->device, &ctx->err, "block_mask_apply", ctx, mask, x);
}
