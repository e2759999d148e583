// ctest-labels: cuda
// ctest-timeout: 120
/* The communicator of one process with a real NCCL backend (t2s_dist_cfg.nccl_one_rank),
 * as the GPU check and `t2sda_bench allreduce --device cuda` use it on a machine with one
 * GPU and no mpirun: no launcher, no MPI. On one rank a sum is the identity, so every
 * element must come back bit for bit (any lost, shifted or half-reduced chunk shows),
 * for the blocking call and for sums started back to back and waited for once; the
 * maximum over ranks is the identity too. A CPU communicator must ignore the flag (no
 * NCCL without a GPU run), which is checked first, also on machines without a GPU.
 *
 * Skipped (exit 77) when the build has no CUDA backend or no GPU is visible. */
#include <stdio.h>
#include <stdlib.h>

#include "core/device.h"
#include "dist/comm.h"
#include "tests/harness.h"

static void cpu_ignores_flag(void) {
  t2s_comm c;
  t2s_error err = {0};
  t2s_dist_cfg cfg = t2s_dist_default_cfg();
  cfg.quiet = 1;
  cfg.nccl_one_rank = 1;
  CHECK_MSG(t2s_dist_init(&c, &cfg, &err) == T2S_OK, "cpu init: %s", err.msg);
  CHECK(c.backend == T2S_COMM_SINGLE && c.world == 1 && c.nccl == NULL);
  float v[3] = {1.5f, -2.0f, 3.25f};
  CHECK(t2s_dist_allreduce_f32_start(&c, T2S_DEV_CPU, v, 3, &err) == T2S_OK);
  CHECK(t2s_dist_wait(&c, &err) == T2S_OK);
  CHECK(v[0] == 1.5f && v[1] == -2.0f && v[2] == 3.25f);
  t2s_dist_finalize(&c);
}

/* Fills n values that differ in every element, sums them `reps` times (started back to
 * back when `started`, else blocking), and counts the elements that changed. */
static size_t sum_and_compare(t2s_comm *c, size_t n, int reps, int started) {
  t2s_error err = {0};
  float *host = malloc(n * sizeof *host), *back = malloc(n * sizeof *back);
  float *dev = t2s_device_malloc(T2S_DEV_CUDA, n * sizeof *dev, &err);
  CHECK_MSG(host && back && dev, "allocation of %zu floats: %s", n, err.msg);
  size_t wrong = n;
  if (host && back && dev) {
    for (size_t i = 0; i < n; i++) host[i] = (float)((i * 2654435761u) % 100003) - 50001.5f;
    t2s_status st = t2s_device_copy(T2S_DEV_CUDA, dev, T2S_DEV_CPU, host, n * sizeof *dev, &err);
    for (int r = 0; st == T2S_OK && r < reps; r++)
      st = started ? t2s_dist_allreduce_f32_start(c, T2S_DEV_CUDA, dev, n, &err)
                   : t2s_dist_allreduce_f32(c, T2S_DEV_CUDA, dev, n, &err);
    if (st == T2S_OK && started) st = t2s_dist_wait(c, &err);
    if (st == T2S_OK)
      st = t2s_device_copy(T2S_DEV_CPU, back, T2S_DEV_CUDA, dev, n * sizeof *dev, &err);
    CHECK_MSG(st == T2S_OK, "all-reduce of %zu floats: %s", n, err.msg);
    if (st == T2S_OK) {
      wrong = 0;
      for (size_t i = 0; i < n; i++) wrong += back[i] != host[i];
    }
  }
  if (dev) t2s_device_free(T2S_DEV_CUDA, dev);
  free(host);
  free(back);
  return wrong;
}

static void nccl_one_rank(void) {
  t2s_comm c;
  t2s_error err = {0};
  t2s_dist_cfg cfg = t2s_dist_default_cfg();
  cfg.device = T2S_DEV_CUDA;
  cfg.quiet = 1;
  cfg.nccl_one_rank = 1;
  cfg.timeout_s = 60;
  t2s_status st = t2s_dist_init(&c, &cfg, &err);
  CHECK_MSG(st == T2S_OK, "cuda init: %s", err.msg);
  if (st != T2S_OK) return;
  CHECK_MSG(c.backend == T2S_COMM_NCCL && c.world == 1 && c.gpu == 0 && c.nccl != NULL,
            "backend %s, world %d, gpu %d", t2s_comm_backend_name(c.backend), c.world, c.gpu);
  const size_t sizes[] = {1, 1000003, (size_t)16 << 20};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    size_t w1 = sum_and_compare(&c, sizes[k], 1, 0);
    size_t w5 = sum_and_compare(&c, sizes[k], 5, 1);
    CHECK_MSG(w1 == 0 && w5 == 0, "%zu floats: %zu changed by one sum, %zu by five started",
              sizes[k], w1, w5);
  }
  double t[2] = {0.25, -7.0};
  CHECK(t2s_dist_max_f64(&c, t, 2, &err) == T2S_OK && t[0] == 0.25 && t[1] == -7.0);
  t2s_dist_finalize(&c);
}

int main(void) {
  cpu_ignores_flag();
  if (t2s_test_failures > 0) return t2s_test_finish("test_cuda_comm");
  if (!t2s_cuda_built()) {
    printf("test_cuda_comm: skipped: this build has no CUDA backend\n");
    return 77;
  }
  if (t2s_cuda_device_count() == 0) {
    printf("test_cuda_comm: skipped: no CUDA device is visible\n");
    return 77;
  }
  nccl_one_rank();
  return t2s_test_finish("test_cuda_comm");
}
