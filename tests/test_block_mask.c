// ctest-labels: unit
/* MIC's block mask (losses/block_mask.h) on the CPU:
 * - the block side scales with the crop height (64 at 512, rounded, at least 1) and the
 *   grid is Python's round(H / b) (ties to even), at least one cell;
 * - block structure: with H, W multiples of b every b x b block is one cell's draw
 *   (mask[y][x] = cells[y / b][x / b], the reference draw); otherwise rows and columns
 *   map monotonically onto every cell, as nearest upsampling does;
 * - the masked share over 400 samples of 64 cells is ratio within 5 binomial standard
 *   deviations, for ratio 0.7 and 0.3; ratio 0 keeps (nearly) every pixel;
 * - determinism per global index: sample i of a batch at offset o is sample o + i of
 *   any other batch (the mask never depends on how the batch is split over ranks);
 *   another iteration or seed gives another mask;
 * - apply: masked pixels become 0 in every channel, kept ones are unchanged (NCHW and
 *   NHWC storage);
 * - bad settings and tensors are refused with a message naming them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "losses/block_mask.h"
#include "tests/harness.h"

static t2s_tensor *mask_tensor(int64_t n, int64_t h, int64_t w) {
  int64_t shape[3] = {n, h, w};
  uint8_t *zeros = calloc((size_t)(n * h * w), 1);
  t2s_tensor *t = t2s_test_tensor_u8(3, shape, zeros);
  free(zeros);
  return t;
}

static void scaling(void) {
  t2s_block_mask_cfg c = t2s_block_mask_cfg_defaults();
  CHECK(c.block_size == 64 && c.ref_height == 512 && fabsf(c.ratio - 0.7f) < 1e-7f);
  CHECK(t2s_block_mask_block(&c, 512) == 64);
  CHECK(t2s_block_mask_block(&c, 1024) == 128);
  CHECK(t2s_block_mask_block(&c, 32) == 4);
  CHECK(t2s_block_mask_block(&c, 96) == 12);
  CHECK(t2s_block_mask_block(&c, 40) == 5);   /* 64 * 40 / 512 = 5 */
  CHECK(t2s_block_mask_block(&c, 36) == 5);   /* 4.5 rounds up, as the ignore rows do */
  CHECK(t2s_block_mask_block(&c, 2) == 1);    /* 0.25: at least one pixel */
  int gh, gw;
  t2s_block_mask_grid(&c, 512, 1024, &gh, &gw);
  CHECK_MSG(gh == 8 && gw == 16, "512 x 1024: grid %d x %d", gh, gw);
  t2s_block_mask_grid(&c, 32, 48, &gh, &gw);
  CHECK_MSG(gh == 8 && gw == 12, "32 x 48: grid %d x %d", gh, gw);
  /* Python's round: 20 / 8 = 2.5 -> 2 and 28 / 8 = 3.5 -> 4 (ties to even) */
  t2s_block_mask_cfg t = {8, 20, 0.5f};
  t2s_block_mask_grid(&t, 20, 28, &gh, &gw);
  CHECK_MSG(gh == 2 && gw == 4, "20 x 28 with b 8: grid %d x %d, want 2 x 4", gh, gw);
  /* an image smaller than half a block: one cell */
  t2s_block_mask_cfg big = {64, 8, 0.5f};
  t2s_block_mask_grid(&big, 8, 8, &gh, &gw);
  CHECK(t2s_block_mask_block(&big, 8) == 64 && gh == 1 && gw == 1);
}

static void structure(t2s_ctx *ctx) {
  t2s_block_mask_cfg c = t2s_block_mask_cfg_defaults();
  /* 64 x 96: b = 8, grid 8 x 12, exact blocks */
  t2s_tensor *m = mask_tensor(3, 64, 96);
  CHECK_MSG(t2s_block_mask(ctx, &c, 11, 5, 7, m) == T2S_OK, "%s", ctx->err.msg);
  uint8_t cells[96];
  for (int b = 0; b < 3; b++) {
    t2s_block_mask_cells(&c, 8, 12, t2s_block_mask_key(11, 5, 7 + b), cells);
    int bad = 0;
    for (int y = 0; y < 64; y++)
      for (int x = 0; x < 96; x++) bad += t2s_u8(m)[(b * 64 + y) * 96 + x] != cells[(y / 8) * 12 + x / 8];
    CHECK_MSG(bad == 0, "sample %d: %d pixels differ from their 8 x 8 block's draw", b, bad);
  }
  t2s_test_tensor_free(m);
  /* 50 x 70 at b 6 (grid 8 x 12): nearest upsampling maps rows onto every cell row in
   * order, and each pixel equals its cell's draw */
  t2s_block_mask_cfg d = {6, 50, 0.5f};
  int gh, gw;
  t2s_block_mask_grid(&d, 50, 70, &gh, &gw);
  CHECK_MSG(gh == 8 && gw == 12, "50 x 70 at b 6: grid %d x %d", gh, gw);
  m = mask_tensor(1, 50, 70);
  CHECK_MSG(t2s_block_mask(ctx, &d, 3, 1, 0, m) == T2S_OK, "%s", ctx->err.msg);
  t2s_block_mask_cells(&d, gh, gw, t2s_block_mask_key(3, 1, 0), cells);
  int prev = -1, seen = 0, bad = 0;
  for (int y = 0; y < 50; y++) {
    int cy = (int)((double)y * gh / 50); /* y * 8 / 50 is never within f32 rounding of an integer here */
    CHECK(cy >= prev && cy <= prev + 1);
    seen += cy != prev;
    prev = cy;
    for (int x = 0; x < 70; x++) bad += t2s_u8(m)[y * 70 + x] != cells[cy * gw + (int)((double)x * gw / 70)];
  }
  CHECK_MSG(seen == gh && bad == 0, "50 x 70: %d of %d cell rows seen, %d pixels off their cell", seen, gh, bad);
  t2s_test_tensor_free(m);
}

static double masked_share(t2s_ctx *ctx, float ratio) {
  t2s_block_mask_cfg c = {64, 512, ratio};
  t2s_tensor *m = mask_tensor(400, 64, 64);  /* b = 8: 64 cells, 25600 in all */
  double masked = 0;
  CHECK_MSG(t2s_block_mask(ctx, &c, 1, 0, 0, m) == T2S_OK, "%s", ctx->err.msg);
  for (int64_t i = 0; i < t2s_numel(m); i++) masked += t2s_u8(m)[i] == 0;
  t2s_test_tensor_free(m);
  return masked / (400.0 * 64 * 64);
}

static void ratio_statistics(t2s_ctx *ctx) {
  const float ratios[2] = {0.7f, 0.3f};
  for (int k = 0; k < 2; k++) {
    double p = ratios[k], share = masked_share(ctx, ratios[k]), sd = sqrt(p * (1 - p) / 25600);
    printf("ratio %.1f: masked share %.4f (5 sd = %.4f)\n", p, share, 5 * sd);
    CHECK_MSG(fabs(share - p) < 5 * sd, "ratio %.1f: masked share %.4f", p, share);
  }
  CHECK(masked_share(ctx, 0.0f) < 1e-3);
}

static void determinism(t2s_ctx *ctx) {
  t2s_block_mask_cfg c = t2s_block_mask_cfg_defaults();
  const int64_t hw = 32 * 48;
  t2s_tensor *all = mask_tensor(4, 32, 48), *part = mask_tensor(2, 32, 48), *other = mask_tensor(4, 32, 48);
  CHECK(t2s_block_mask(ctx, &c, 9, 3, 0, all) == T2S_OK);
  CHECK(t2s_block_mask(ctx, &c, 9, 3, 2, part) == T2S_OK);  /* rank 1 of 2 with 2 images each */
  CHECK_MSG(memcmp(t2s_u8(all) + 2 * hw, t2s_u8(part), (size_t)(2 * hw)) == 0,
            "samples 2 and 3 differ when drawn at offset 2");
  CHECK_MSG(memcmp(t2s_u8(all), t2s_u8(all) + hw, (size_t)hw) != 0, "samples 0 and 1 got the same mask");
  CHECK(t2s_block_mask(ctx, &c, 9, 4, 0, other) == T2S_OK);
  CHECK_MSG(memcmp(t2s_u8(all), t2s_u8(other), (size_t)(4 * hw)) != 0, "another iteration, the same masks");
  CHECK(t2s_block_mask(ctx, &c, 10, 3, 0, other) == T2S_OK);
  CHECK_MSG(memcmp(t2s_u8(all), t2s_u8(other), (size_t)(4 * hw)) != 0, "another seed, the same masks");
  t2s_test_tensor_free(all), t2s_test_tensor_free(part), t2s_test_tensor_free(other);
}

static void apply(t2s_ctx *ctx) {
  int64_t xs[4] = {2, 3, 16, 16};
  t2s_block_mask_cfg c = {4, 16, 0.5f};
  t2s_tensor *m = mask_tensor(2, 16, 16), *x = t2s_test_tensor(4, xs, 0.5f, 2.0f, 77, 0);
  t2s_tensor *ref = t2s_test_tensor(4, xs, 0.5f, 2.0f, 77, 0);
  CHECK(t2s_block_mask(ctx, &c, 2, 0, 0, m) == T2S_OK);
  CHECK_MSG(t2s_block_mask_apply(ctx, m, x) == T2S_OK, "%s", ctx->err.msg);
  int bad = 0, zeros = 0;
  for (int b = 0; b < 2; b++)
    for (int ch = 0; ch < 3; ch++)
      for (int p = 0; p < 256; p++) {
        int64_t e = (b * 3 + ch) * 256 + p;
        float want = t2s_u8(m)[b * 256 + p] ? t2s_f32(ref)[e] : 0.0f;
        bad += t2s_f32(x)[e] != want;
        zeros += t2s_f32(x)[e] == 0.0f;
      }
  CHECK_MSG(bad == 0 && zeros > 0 && zeros < 2 * 3 * 256, "NCHW: %d wrong, %d zeros", bad, zeros);
  /* the same numbers stored NHWC */
  t2s_tensor *y = t2s_test_tensor(4, xs, 0, 0, 78, 0);
  for (int b = 0; b < 2; b++)
    for (int ch = 0; ch < 3; ch++)
      for (int p = 0; p < 256; p++) t2s_f32(y)[(b * 256 + p) * 3 + ch] = t2s_f32(ref)[(b * 3 + ch) * 256 + p];
  y->layout = T2S_LAYOUT_NHWC;
  CHECK(t2s_block_mask_apply(ctx, m, y) == T2S_OK);
  bad = 0;
  for (int b = 0; b < 2; b++)
    for (int ch = 0; ch < 3; ch++)
      for (int p = 0; p < 256; p++) bad += t2s_f32(y)[(b * 256 + p) * 3 + ch] != t2s_f32(x)[(b * 3 + ch) * 256 + p];
  CHECK_MSG(bad == 0, "NHWC: %d elements differ from the NCHW result", bad);
  t2s_test_tensor_free(m), t2s_test_tensor_free(x), t2s_test_tensor_free(ref), t2s_test_tensor_free(y);
}

static void refusals(t2s_ctx *ctx) {
  t2s_tensor *m = mask_tensor(1, 8, 8);
  t2s_block_mask_cfg c = t2s_block_mask_cfg_defaults();
  c.ratio = 1.0f;
  CHECK(t2s_block_mask(ctx, &c, 0, 0, 0, m) == T2S_ERR_INVALID && strstr(ctx->err.msg, "mask ratio"));
  ctx->err = (t2s_error){0};
  c = t2s_block_mask_cfg_defaults();
  c.block_size = 0;
  CHECK(t2s_block_mask(ctx, &c, 0, 0, 0, m) == T2S_ERR_INVALID && strstr(ctx->err.msg, "block size"));
  ctx->err = (t2s_error){0};
  int64_t s4[4] = {1, 3, 8, 8}, s3[3] = {1, 8, 9};
  t2s_tensor *f = t2s_test_tensor(4, s4, 0, 1, 5, 0), *wrong = t2s_test_tensor(3, s3, 0, 1, 5, 0);
  c = t2s_block_mask_cfg_defaults();
  CHECK(t2s_block_mask(ctx, &c, 0, 0, 0, wrong) == T2S_ERR_INVALID && strstr(ctx->err.msg, "uint8"));
  ctx->err = (t2s_error){0};
  t2s_tensor *m9 = mask_tensor(1, 8, 9);
  CHECK(t2s_block_mask_apply(ctx, m9, f) == T2S_ERR_INVALID && strstr(ctx->err.msg, "one size"));
  ctx->err = (t2s_error){0};
  t2s_test_tensor_free(m), t2s_test_tensor_free(f), t2s_test_tensor_free(wrong), t2s_test_tensor_free(m9);
}

int main(void) {
  t2s_error err = {0};
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 16 << 20, &err);
  if (ctx == NULL) {
    fprintf(stderr, "test_block_mask: %s\n", err.msg);
    return 1;
  }
  scaling();
  structure(ctx);
  ratio_statistics(ctx);
  determinism(ctx);
  apply(ctx);
  refusals(ctx);
  t2s_ctx_destroy(ctx);
  return t2s_test_finish("test_block_mask");
}
