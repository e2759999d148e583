// ctest-labels: cuda
/* MIC's block mask on CUDA (losses/cuda/block_mask.cu) against the CPU slot
 * (losses/block_mask.c): the masks of several batches (exact blocks, a grid that does
 * not divide the image, Python's round ties, a 512 x 1024 crop at MIC's defaults,
 * offsets other than 0) must be equal byte for byte, and the masking of NCHW and NHWC
 * image batches equal to the CPU's bit for bit (a select, no arithmetic).
 *
 * Skipped (exit 77) without a CUDA build or a visible GPU. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launch/device_batch.h"
#include "losses/block_mask.h"
#include "tests/harness.h"

typedef struct mask_case {
  t2s_block_mask_cfg cfg;
  int n, h, w;
  int64_t offset;
} mask_case;

static void masks_agree(t2s_ctx *cpu, t2s_ctx *gpu, const mask_case *c) {
  int64_t shape[3] = {c->n, c->h, c->w};
  t2s_tensor *mc = t2s_tensor_new(cpu, T2S_U8, 3, shape), *mg = t2s_tensor_new(gpu, T2S_U8, 3, shape);
  CHECK_MSG(mc && mg && t2s_block_mask(cpu, &c->cfg, 21, 8, c->offset, mc) == T2S_OK &&
                t2s_block_mask(gpu, &c->cfg, 21, 8, c->offset, mg) == T2S_OK,
            "%d x %d: cpu: %s; cuda: %s", c->h, c->w, cpu->err.msg, gpu->err.msg);
  const uint8_t *back = t2s_ctx_ok(gpu) ? t2s_tensor_host_data(gpu, mg) : NULL;
  if (back != NULL) {
    int64_t diff = 0, kept = 0;
    for (int64_t i = 0; i < t2s_numel(mc); i++) diff += back[i] != t2s_u8(mc)[i], kept += t2s_u8(mc)[i];
    CHECK_MSG(diff == 0, "%d x %d (b %d): %lld of %lld pixels differ", c->h, c->w,
              t2s_block_mask_block(&c->cfg, c->h), (long long)diff, (long long)t2s_numel(mc));
    CHECK_MSG(kept > 0 && kept < t2s_numel(mc), "%d x %d: a uniform mask proves nothing", c->h, c->w);
  }
  gpu->err.status = T2S_OK;
  t2s_ctx_end_pass(cpu);
  t2s_ctx_end_pass(gpu);
}

/* x (2, 3, 24, 40) masked on both devices; on CUDA stored NCHW or NHWC. */
static void apply_agrees(t2s_ctx *cpu, t2s_ctx *gpu, int nhwc) {
  const int n = 2, ch = 3, h = 24, w = 40;
  const int64_t hw = h * w, ms[3] = {n, h, w};
  t2s_block_mask_cfg cfg = {4, 24, 0.6f};
  t2s_tensor *mc = t2s_tensor_new(cpu, T2S_U8, 3, ms), *mg = t2s_tensor_new(gpu, T2S_U8, 3, ms);
  t2s_tensor *xc = t2s_tensor_new4(cpu, T2S_F32, n, ch, h, w), *xg = t2s_tensor_new4(gpu, T2S_F32, n, ch, h, w);
  float *stored = malloc(sizeof(float) * (size_t)(n * ch * hw));
  CHECK(mc && mg && xc && xg && stored);
  if (!(mc && mg && xc && xg && stored)) return;
  t2s_rng_key key = t2s_rng_key_make(5, 6, 7, 8);
  for (int64_t e = 0; e < n * ch * hw; e++) t2s_f32(xc)[e] = 2.0f * t2s_rng_uniform(key, (uint64_t)e) - 1.0f;
  for (int b = 0; b < n; b++)
    for (int c = 0; c < ch; c++)
      for (int64_t p = 0; p < hw; p++)
        stored[nhwc ? (b * hw + p) * ch + c : (b * ch + c) * hw + p] = t2s_f32(xc)[(b * ch + c) * hw + p];
  xg->layout = nhwc ? T2S_LAYOUT_NHWC : T2S_LAYOUT_NCHW;
  CHECK_MSG(t2s_device_copy(T2S_DEV_CUDA, xg->data, T2S_DEV_CPU, stored, sizeof(float) * (size_t)(n * ch * hw),
                            &gpu->err) == T2S_OK &&
                t2s_block_mask(cpu, &cfg, 3, 2, 1, mc) == T2S_OK && t2s_block_mask(gpu, &cfg, 3, 2, 1, mg) == T2S_OK &&
                t2s_block_mask_apply(cpu, mc, xc) == T2S_OK && t2s_block_mask_apply(gpu, mg, xg) == T2S_OK,
            "apply (%s): cpu: %s; cuda: %s", nhwc ? "NHWC" : "NCHW", cpu->err.msg, gpu->err.msg);
  const float *back = t2s_ctx_ok(gpu) ? t2s_tensor_host_data(gpu, xg) : NULL;  /* NCHW */
  if (back != NULL) {
    int64_t diff = 0, zeros = 0;
    for (int64_t e = 0; e < n * ch * hw; e++) diff += back[e] != t2s_f32(xc)[e], zeros += t2s_f32(xc)[e] == 0.0f;
    CHECK_MSG(diff == 0 && zeros > 0, "apply (%s): %lld elements differ, %lld masked", nhwc ? "NHWC" : "NCHW",
              (long long)diff, (long long)zeros);
  }
  gpu->err.status = T2S_OK;
  free(stored);
  t2s_ctx_end_pass(cpu);
  t2s_ctx_end_pass(gpu);
}

int main(void) {
  if (!t2s_cuda_built()) {
    printf("test_cuda_block_mask: skipped: this build has no CUDA backend (configure with -DT2S_CUDA=ON)\n");
    return 77;
  }
  if (t2s_cuda_device_count() == 0) {
    printf("test_cuda_block_mask: skipped: no CUDA device is visible\n");
    return 77;
  }
  t2s_error err = {0};
  t2s_ctx *cpu = t2s_ctx_create(T2S_DEV_CPU, 64 << 20, &err);
  t2s_ctx *gpu = cpu ? t2s_ctx_create(T2S_DEV_CUDA, 64 << 20, &err) : NULL;
  if (gpu == NULL) {
    fprintf(stderr, "test_cuda_block_mask: creating the contexts: %s\n", err.msg);
    t2s_ctx_destroy(cpu);
    return 1;
  }
  const mask_case cases[] = {
      {{64, 512, 0.7f}, 3, 64, 96, 0},     /* b 8, exact blocks */
      {{6, 50, 0.5f}, 2, 50, 70, 5},       /* grid 8 x 12 that does not divide */
      {{8, 20, 0.5f}, 2, 20, 28, 1},       /* round(2.5) = 2, round(3.5) = 4 */
      {{64, 512, 0.7f}, 2, 512, 1024, 3},  /* MIC's defaults at a 512 x 1024 crop */
      {{64, 512, 0.3f}, 4, 33, 47, 9},     /* b 4, odd sizes */
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) masks_agree(cpu, gpu, &cases[k]);
  apply_agrees(cpu, gpu, 0);
  apply_agrees(cpu, gpu, 1);
  t2s_ctx_destroy(gpu);
  t2s_ctx_destroy(cpu);
  return t2s_test_finish("test_cuda_block_mask");
}
