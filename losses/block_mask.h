/* MIC's block mask (Hoyer et al. 2023, "MIC: Masked Image Consistency"; their
 * BlockMaskGenerator), docs/method.md step 5b.
 *
 * An H x W image is cut into a grid of gh x gw cells, gh = round(H / b),
 * gw = round(W / b) (Python's round, at least 1), b the block side; each cell is
 * kept when its uniform draw u > ratio, so a share `ratio` of the cells is masked
 * on average. The cell of pixel (y, x) is the nearest-neighbour upsampling of the
 * grid (torch.nn.functional.interpolate, mode "nearest"):
 *   cy = min(floor(y * (gh / H)), gh - 1),  cx likewise,
 * and the masked image is x * keep (MIC masks the normalised image: a masked pixel
 * becomes the dataset mean colour).
 *
 * b scales with the crop: MIC's 64 px at a 512-px crop height is
 *   b = max(1, floor(block_size * H / ref_height + 0.5)),
 * as the pseudo-labels' ignore rows scale (losses/pseudo_label.h).
 *
 * Draw u of cell c of global sample i at iteration t is Philox(key(seed, t, i,
 * purpose "MIC"), counter c): the mask of a sample depends on its global index only,
 * never on the rank count or the backend. */
#pragma once
#include <stdint.h>

#include "core/engine.h"

typedef struct t2s_block_mask_cfg {
  int block_size;   /* block side at the reference crop height (MIC: 64) */
  int ref_height;   /* 512 */
  float ratio;      /* expected share of masked cells, [0, 1) (MIC: 0.7) */
} t2s_block_mask_cfg;

t2s_block_mask_cfg t2s_block_mask_cfg_defaults(void);
/* NULL when the settings are usable, else a sentence saying which is not. */
const char *t2s_block_mask_cfg_check(const t2s_block_mask_cfg *cfg);
/* The block side b at crop height h, and the grid (gh, gw) of an h x w image. */
int t2s_block_mask_block(const t2s_block_mask_cfg *cfg, int h);
void t2s_block_mask_grid(const t2s_block_mask_cfg *cfg, int h, int w, int *gh, int *gw);
/* The random key of global sample `global_index` at iteration `iter`. */
t2s_rng_key t2s_block_mask_key(uint64_t seed, int64_t iter, int64_t global_index);
/* The grid's keep flags (gh x gw, row-major) of one sample: the reference draw. */
void t2s_block_mask_cells(const t2s_block_mask_cfg *cfg, int gh, int gw, t2s_rng_key key, uint8_t *keep);

/* mask (N, H, W) u8 (the caller's tensor, on the run's device): 1 = kept pixel, 0 =
 * masked, sample k being global sample global_offset + k. */
t2s_status t2s_block_mask(t2s_ctx *ctx, const t2s_block_mask_cfg *cfg, uint64_t seed, int64_t iter,
                          int64_t global_offset, t2s_tensor *mask);
/* x (N, C, H, W) f32, in place: x *= mask, the mask (N, H, W) u8 broadcast over channels.
 * Not on the tape: the masked image is an input of the student. */
t2s_status t2s_block_mask_apply(t2s_ctx *ctx, const t2s_tensor *mask, t2s_tensor *x);

/* The CUDA slots of the two calls above (losses/cuda/block_mask.cu), picked by the
 * tensors' device; the arguments are already checked. keys: one per sample. */
t2s_status t2s_block_mask_cuda(t2s_ctx *ctx, const t2s_block_mask_cfg *cfg, const t2s_rng_key *keys,
                               t2s_tensor *mask);
t2s_status t2s_block_mask_apply_cuda(t2s_ctx *ctx, const t2s_tensor *mask, t2s_tensor *x);
