// ctest-labels: cuda
// ctest-timeout: 300
/* HRDA's ops on CUDA against the CPU reference (core/ops/hrda.h): crop, slide_merge,
 * hrda_gate and hrda_fuse, forward and both backward modes, through the replay harness
 * of test_cuda_ops.c (NHWC at the edge, canaries, NaN-filled write-mode gradients); the
 * uint8 label and f32 weight-map crops through the engine on both devices.
 *
 * Skipped (exit 77) when the build has no CUDA backend or no GPU is visible. */
#include "core/nn/hrda.h"
#include "launch/device_batch.h"
#include "tests/cuda_replay.h"

static t2s_tensor *b_crop(t2s_ctx *x, t2s_tensor **in, const void *u) {
  const int *b = u;
  return t2s_crop(x, in[0], b[0], b[1], b[2], b[3]);
}
static t2s_tensor *b_merge(t2s_ctx *x, t2s_tensor **in, const void *u) {
  return t2s_slide_merge(x, in[0], 2, (const t2s_slide_grid *)u);
}
static t2s_tensor *b_gate(t2s_ctx *x, t2s_tensor **in, const void *u) {
  return t2s_hrda_gate(x, in[0], in[1], (const t2s_hrda_gate_args *)u);
}
static t2s_tensor *b_fuse(t2s_ctx *x, t2s_tensor **in, const void *u) {
  const int *p = u;
  return t2s_hrda_fuse(x, in[0], in[1], p[0], p[1]);
}

static void op_cases(t2s_ctx *cpu, t2s_ctx *gpu) {
  int64_t sx[4] = {2, 5, 13, 11};
  t2s_tensor *x = t2s_test_tensor(4, sx, -2, 2, 1, 1);
  int box[4] = {3, 2, 7, 8}, whole[4] = {0, 0, 13, 11};
  op_case c1 = {"crop 7x8 at (3, 2)", b_crop, box, 1, {x}, 0, 1e-6, 0};
  op_case c2 = {"crop of the whole map", b_crop, whole, 1, {x}, 0, 1e-6, 0};
  run_case(cpu, gpu, &c1);
  run_case(cpu, gpu, &c2);

  t2s_slide_grid g = {13, 11, 6, 5, 3, 2};  /* several overlaps, the last windows pushed back */
  int K = t2s_slide_grid_count(&g);
  int64_t sw[4] = {(int64_t)K * 2, 5, 6, 5};
  t2s_tensor *win = t2s_test_tensor(4, sw, -2, 2, 2, 1);
  op_case c3 = {"slide_merge", b_merge, &g, 1, {win}, 0, 1e-6, 0};
  run_case(cpu, gpu, &c3);

  int64_t sl[4] = {2, 7, 9, 10};
  t2s_tensor *z = t2s_test_tensor(4, sl, -4, 4, 3, 1), *l = t2s_test_tensor(4, sl, -3, 3, 4, 1);
  t2s_hrda_gate_args m = {2, 3, 4, 5}, all = {0, 0, 9, 10};
  op_case c4 = {"hrda_gate box", b_gate, &m, 2, {z, l}, 0, 1e-5, 0};
  op_case c5 = {"hrda_gate whole", b_gate, &all, 2, {z, l}, 0, 1e-5, 0};
  run_case(cpu, gpu, &c4);
  run_case(cpu, gpu, &c5);

  int64_t su[4] = {2, 14, 18, 20}, sh[4] = {2, 7, 8, 10};
  t2s_tensor *up = t2s_test_tensor(4, su, -2, 2, 5, 1), *hr = t2s_test_tensor(4, sh, -2, 2, 6, 1);
  int at[2] = {4, 6}, corner[2] = {10, 10};
  op_case c6 = {"hrda_fuse", b_fuse, at, 2, {up, hr}, 0, 1e-6, 0};
  op_case c7 = {"hrda_fuse at the corner", b_fuse, corner, 2, {up, hr}, 0, 1e-6, 0};
  run_case(cpu, gpu, &c6);
  run_case(cpu, gpu, &c7);
  t2s_test_tensor_free(x);
  t2s_test_tensor_free(win);
  t2s_test_tensor_free(z);
  t2s_test_tensor_free(l);
  t2s_test_tensor_free(up);
  t2s_test_tensor_free(hr);
}

/* uint8 labels and f32 pixel-weight maps (N, H, W) crop the same on both devices. */
static void map_crops(t2s_ctx *cpu, t2s_ctx *gpu) {
  t2s_ctx_end_pass(cpu);
  t2s_ctx_end_pass(gpu);
  uint8_t v[2 * 9 * 7];
  for (int i = 0; i < 2 * 9 * 7; i++) v[i] = (uint8_t)(i * 37 % 251);
  int64_t s[3] = {2, 9, 7};
  t2s_tensor *lab = t2s_test_tensor_u8(3, s, v), *w = t2s_test_tensor(3, s, 0, 1, 7, 0);
  t2s_tensor *maps[2] = {lab, w};
  for (int k = 0; k < 2; k++) {
    t2s_tensor *yc = t2s_crop(cpu, maps[k], 2, 1, 5, 4);
    t2s_tensor *yg = t2s_tensor_host(gpu, t2s_crop(gpu, t2s_tensor_upload(gpu, maps[k]), 2, 1, 5, 4));
    CHECK_MSG(yc && yg, "map crop %d: %s %s", k, cpu->err.msg, gpu->err.msg);
    if (yc && yg) CHECK_MSG(memcmp(yc->data, yg->data, (size_t)t2s_numel(yc) * (k ? 4 : 1)) == 0, "map crop %d differs", k);
  }
  t2s_test_tensor_free(lab);
  t2s_test_tensor_free(w);
}

int main(void) {
  if (!t2s_cuda_built()) {
    printf("test_cuda_hrda: skipped: this build has no CUDA backend (configure with -DT2S_CUDA=ON)\n");
    return 77;
  }
  if (t2s_cuda_device_count() == 0) {
    printf("test_cuda_hrda: skipped: no CUDA device is visible\n");
    return 77;
  }
  t2s_error err = {0};
  t2s_ctx *cpu = t2s_ctx_create(T2S_DEV_CPU, 64 << 20, &err);
  t2s_ctx *gpu = cpu ? t2s_ctx_create(T2S_DEV_CUDA, 64 << 20, &err) : NULL;
  if (gpu == NULL) {
    fprintf(stderr, "test_cuda_hrda: creating the contexts: %s\n", err.msg);
    t2s_ctx_destroy(cpu);
    return 1;
  }
  op_cases(cpu, gpu);
  map_crops(cpu, gpu);
  t2s_ctx_destroy(gpu);
  t2s_ctx_destroy(cpu);
  return t2s_test_finish("test_cuda_hrda");
}
