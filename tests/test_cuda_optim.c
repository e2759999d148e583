// ctest-labels: cuda
// ctest-timeout: 120
/* The CUDA optimizer, gradient norm, clipping and EMA kernels against the CPU path
 * of core/optim.c: identical parameter sets (same seed) on both devices, the same
 * gradients, several steps of SGD (momentum, weight decay, per-tensor lr and decay
 * multipliers, clipping that triggers) and AdamW, and the EMA update. The kernels
 * round every operation like the CPU code, so the results must agree to 1e-6
 * relative (in practice bit for bit). Frozen tensors must stay untouched, a
 * non-finite norm must refuse the step, and the norm must be reproducible.
 *
 * Skipped (exit 77) when the build has no CUDA backend or no GPU is visible. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/device.h"
#include "core/optim.h"
#include "tests/harness.h"

/* Tensor sizes chosen so that the packed index space crosses block and tensor
 * boundaries at odd places; tensor 2 is frozen. */
static void build(t2s_params *p, t2s_device dev) {
  t2s_params_init(p);
  int64_t s[6][2] = {{64, 27}, {64, 1}, {33, 7}, {1000, 3}, {5, 1}, {70001, 1}};
  t2s_param_kind kinds[6] = {T2S_PARAM_WEIGHT, T2S_PARAM_BIAS, T2S_PARAM_WEIGHT,
                             T2S_PARAM_WEIGHT, T2S_PARAM_NORM, T2S_PARAM_WEIGHT};
  const char *names[6] = {"backbone.conv.weight", "backbone.conv.bias", "backbone.frozen.weight",
                          "decode_head.fc.weight", "decode_head.norm.weight", "decode_head.big"};
  for (int i = 0; i < 6; i++)
    t2s_params_add(p, names[i], kinds[i], s[i][1] == 1 ? 1 : 2, s[i],
                   T2S_INIT_UNIFORM, 0.5f);
  int64_t bs[1] = {17};
  t2s_params_add(p, "backbone.bn.running_mean", T2S_PARAM_BUFFER, 1, bs, T2S_INIT_UNIFORM, 1.0f);
  t2s_error err = {0};
  CHECK_MSG(t2s_params_finalize(p, dev, 7, &err) == T2S_OK, "finalize on %s: %s",
            t2s_device_name(dev), err.msg);
  t2s_params_set_lr_mult(p, "decode_head.", 10.0f);
  t2s_params_find(p, "backbone.frozen.weight")->t.requires_grad = 0;
}

static float *download(const t2s_params *p, const float *src, size_t n) {
  float *h = malloc((n ? n : 1) * sizeof(float));
  t2s_error err = {0};
  CHECK_MSG(t2s_device_copy(T2S_DEV_CPU, h, p->device, src, n * sizeof(float), &err) == T2S_OK,
            "download: %s", err.msg);
  return h;
}

static void compare(const char *label, const char *what, const t2s_params *cpu_p,
                    const float *cpu_v, const t2s_params *gpu_p, const float *gpu_v, size_t n) {
  float *g = download(gpu_p, gpu_v, n);
  double worst = 0.0;
  size_t at = 0, differ = 0;
  (void)cpu_p;
  for (size_t k = 0; k < n; k++) {
    double d = fabs((double)g[k] - cpu_v[k]) / fmax(fabs((double)cpu_v[k]), 1e-3);
    differ += memcmp(&g[k], &cpu_v[k], sizeof(float)) != 0;
    if (!(d <= worst)) worst = isnan(d) ? INFINITY : d, at = k;
  }
  CHECK_MSG(worst <= 1e-6, "%s: %s: relative error %.3g at element %zu (cuda %.9g, cpu %.9g)",
            label, what, worst, at, g[at], cpu_v[at]);
  printf("%s: %s: %zu of %zu elements differ in some bit, worst relative error %.3g\n", label,
         what, differ, n, worst);
  free(g);
}

/* The same random gradient on both (uploaded), scaled by `scale`. */
static void set_grads(t2s_params *cpu_p, t2s_params *gpu_p, uint64_t seed, float scale) {
  t2s_rng_key key = t2s_rng_key_make(seed, 5, 0, 0);
  for (size_t k = 0; k < cpu_p->numel; k++)
    cpu_p->grad[k] = scale * (2.0f * t2s_rng_uniform(key, k) - 1.0f);
  t2s_error err = {0};
  CHECK(t2s_device_copy(T2S_DEV_CUDA, gpu_p->grad, T2S_DEV_CPU, cpu_p->grad,
                        cpu_p->numel * sizeof(float), &err) == T2S_OK);
}

static void optimizer_case(t2s_optim_type type, const char *label) {
  t2s_params pc, pg;
  build(&pc, T2S_DEV_CPU);
  build(&pg, T2S_DEV_CUDA);
  compare(label, "initial weights", &pc, pc.data, &pg, pg.data, pc.numel);
  t2s_optim_cfg cfg = {type, 0.01, 0.9, 5e-4, 0.9, 0.999, 1e-8, 3.0};
  t2s_optim oc, og;
  t2s_error err = {0};
  CHECK(t2s_optim_init(&oc, &pc, &cfg, &err) == T2S_OK);
  CHECK_MSG(t2s_optim_init(&og, &pg, &cfg, &err) == T2S_OK, "%s: init on cuda: %s", label, err.msg);
  for (int step = 0; step < 4; step++) {
    /* step 1 clips (large gradient), the others do not */
    set_grads(&pc, &pg, 40 + (uint64_t)step, step == 1 ? 1.0f : 1e-3f);
    double nc = -1.0, ng = -2.0;
    double lr = 0.01 * (1.0 - step / 10.0);
    CHECK(t2s_optim_step(&oc, lr, &nc, &err) == T2S_OK);
    t2s_status st = t2s_optim_step(&og, lr, &ng, &err);
    CHECK_MSG(st == T2S_OK, "%s step %d on cuda: %s", label, step, err.msg);
    CHECK_MSG(fabs(nc - ng) <= 1e-12 * nc, "%s step %d: gradient norm cuda %.17g, cpu %.17g",
              label, step, ng, nc);
    char what[64];
    snprintf(what, sizeof what, "weights after step %d", step + 1);
    compare(label, what, &pc, pc.data, &pg, pg.data, pc.numel);
    snprintf(what, sizeof what, "(clipped) gradient of step %d", step + 1);
    compare(label, what, &pc, pc.grad, &pg, pg.grad, pc.numel);
    for (int s = 0; s < oc.n_state; s++) {
      snprintf(what, sizeof what, "state %s after step %d", t2s_optim_slot_name(&oc, s), step + 1);
      compare(label, what, &pc, oc.state[s], &pg, og.state[s], pc.numel);
    }
  }
  CHECK(og.step == oc.step);

  /* reproducible norm */
  double a = t2s_grad_global_norm(&pg), b = t2s_grad_global_norm(&pg);
  CHECK_MSG(memcmp(&a, &b, sizeof a) == 0, "%s: two norms of the same gradient differ", label);

  /* a NaN gradient refuses the step and leaves the weights alone */
  float *before = download(&pg, pg.data, pg.numel);
  float nan = NAN;
  CHECK(t2s_device_copy(T2S_DEV_CUDA, pg.grad + 5, T2S_DEV_CPU, &nan, sizeof nan, &err) == T2S_OK);
  t2s_error e2 = {0};
  double ng = 0.0;
  CHECK_MSG(t2s_optim_step(&og, 0.01, &ng, &e2) == T2S_ERR_NUMERIC,
            "%s: a NaN gradient was not refused (%s)", label, e2.msg);
  float *after = download(&pg, pg.data, pg.numel);
  CHECK_MSG(memcmp(before, after, pg.numel * sizeof(float)) == 0,
            "%s: a refused step changed the weights", label);
  free(before), free(after);

  t2s_optim_free(&oc), t2s_optim_free(&og);
  t2s_params_free(&pc), t2s_params_free(&pg);
  printf("done %s\n", label);
}

static void ema_case(void) {
  t2s_params tc, sc, tg, sg;
  build(&tc, T2S_DEV_CPU), build(&sc, T2S_DEV_CPU);
  build(&tg, T2S_DEV_CUDA), build(&sg, T2S_DEV_CUDA);
  t2s_error err = {0};
  /* a student that differs from the teacher, identical on both devices */
  t2s_rng_key key = t2s_rng_key_make(3, 3, 3, 3);
  for (size_t k = 0; k < sc.numel; k++) sc.data[k] = t2s_rng_uniform(key, k);
  for (size_t k = 0; k < sc.buf_numel; k++) sc.buf_data[k] = -t2s_rng_uniform(key, k);
  CHECK(t2s_device_copy(T2S_DEV_CUDA, sg.data, T2S_DEV_CPU, sc.data, sc.numel * sizeof(float), &err) == T2S_OK);
  CHECK(t2s_device_copy(T2S_DEV_CUDA, sg.buf_data, T2S_DEV_CPU, sc.buf_data,
                        sc.buf_numel * sizeof(float), &err) == T2S_OK);
  int64_t iters[3] = {5, 0, 1000};
  for (int i = 0; i < 3; i++) {
    CHECK(t2s_ema_update(&tc, &sc, 0.99, iters[i], i == 2, &err) == T2S_OK);
    CHECK_MSG(t2s_ema_update(&tg, &sg, 0.99, iters[i], i == 2, &err) == T2S_OK, "ema on cuda: %s",
              err.msg);
    char what[64];
    snprintf(what, sizeof what, "teacher after update at iter %lld", (long long)iters[i]);
    compare("ema", what, &tc, tc.data, &tg, tg.data, tc.numel);
  }
  compare("ema", "copied buffers", &tc, tc.buf_data, &tg, tg.buf_data, tc.buf_numel);
  t2s_params_free(&tc), t2s_params_free(&sc), t2s_params_free(&tg), t2s_params_free(&sg);
  printf("done ema\n");
}

int main(void) {
  if (!t2s_cuda_built()) {
    printf("test_cuda_optim: skipped: this build has no CUDA backend\n");
    return 77;
  }
  if (t2s_cuda_device_count() == 0) {
    printf("test_cuda_optim: skipped: no CUDA device is visible\n");
    return 77;
  }
  optimizer_case(T2S_OPTIM_SGD, "sgd");
  optimizer_case(T2S_OPTIM_ADAMW, "adamw");
  ema_case();
  return t2s_test_finish("test_cuda_optim");
}
