// ctest-labels: unit
/* Optimizers, schedule, EMA and clipping against torch.optim (fixture written by
 * tools/make_optim_fixture.py) and closed forms. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/optim.h"
#include "tests/fixture.h"
#include "tests/harness.h"

static const char *names[3] = {"a.weight", "a.bias", "decode_head.weight"};

static void build(t2s_params *p) {
  t2s_params_init(p);
  int64_t s0[2] = {4, 3}, s1[1] = {4}, s2[2] = {2, 4};
  t2s_params_add(p, names[0], T2S_PARAM_WEIGHT, 2, s0, T2S_INIT_ZEROS, 0);
  t2s_params_add(p, names[1], T2S_PARAM_BIAS, 1, s1, T2S_INIT_ZEROS, 0);
  t2s_params_add(p, names[2], T2S_PARAM_WEIGHT, 2, s2, T2S_INIT_ZEROS, 0);
  t2s_error err = {0};
  CHECK(t2s_params_finalize(p, T2S_DEV_CPU, 0, &err) == T2S_OK);
  t2s_params_set_lr_mult(p, "decode_head.", 10.0f);
}

static void load(t2s_params *p, const char *file, const char *group, int grad) {
  for (int i = 0; i < 3; i++) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", group, names[i]);
    int64_t n = 0;
    float *v = t2s_fixture_read_f32(file, path, &n, NULL, NULL);
    CHECK(v != NULL);
    if (!v) continue;
    t2s_param *q = t2s_params_find(p, names[i]);
    memcpy((grad ? p->grad : p->data) + q->offset, v, (size_t)n * sizeof(float));
    free(v);
  }
}

static void replay(const char *file, const char *group, t2s_optim_type type, double clip) {
  t2s_params p;
  build(&p);
  char path[128];
  snprintf(path, sizeof path, "%s/init", group);
  load(&p, file, path, 0);
  t2s_optim_cfg cfg = {type, 1.0, 0.9, type == T2S_OPTIM_SGD ? 5e-4 : 0.01, 0.9, 0.999, 1e-8, clip};
  t2s_optim o;
  t2s_error err = {0};
  CHECK(t2s_optim_init(&o, &p, &cfg, &err) == T2S_OK);
  double lrs[3] = {0};
  const double sgd_lrs[3] = {0.01, 0.008, 0.005}, adam_lrs[3] = {6e-4, 5e-4, 4e-4};
  memcpy(lrs, type == T2S_OPTIM_SGD ? sgd_lrs : adam_lrs, sizeof lrs);
  for (int step = 0; step < 3; step++) {
    snprintf(path, sizeof path, "%s/grad%d", group, step);
    load(&p, file, path, 1);
    double norm = 0;
    CHECK(t2s_optim_step(&o, lrs[step], &norm, &err) == T2S_OK);
    if (clip > 0) {
      char an[16];
      snprintf(an, sizeof an, "norm%d", step);
      double want = t2s_fixture_attr(file, group, an);
      CHECK_MSG(fabs(norm - want) < 1e-5 * want, "%s step %d: grad norm %g, torch %g", group, step, norm, want);
    }
    for (int i = 0; i < 3; i++) {
      snprintf(path, sizeof path, "%s/after%d/%s", group, step, names[i]);
      int64_t n = 0;
      float *want = t2s_fixture_read_f32(file, path, &n, NULL, NULL);
      if (!want) { t2s_test_failures++; continue; }
      t2s_param *q = t2s_params_find(&p, names[i]);
      double e = t2s_max_rel_err(p.data + q->offset, want, n, 1e-3);
      CHECK_MSG(e < 1e-5, "%s step %d %s: relative error %g against torch", group, step, names[i], e);
      free(want);
    }
  }
  t2s_optim_free(&o);
  t2s_params_free(&p);
}

static void schedule(void) {
  t2s_lr_schedule s = {T2S_LR_POLY, 1.0, 0.0, 1000, 100, 1e-6};
  double base = 2.5e-3;
  /* at iteration 0 the warm-up starts at ratio x the regular lr */
  CHECK(fabs(t2s_lr_at(&s, base, 0) - base * 1e-6) < 1e-15);
  /* at the end of the warm-up the regular poly value */
  CHECK(fabs(t2s_lr_at(&s, base, 100) - base * 0.9) < 1e-12);
  /* half-way through the warm-up: regular (1 - 0.5 (1 - ratio)) */
  double reg = base * (1.0 - 50.0 / 1000.0);
  CHECK(fabs(t2s_lr_at(&s, base, 50) - reg * (1.0 - 0.5 * (1.0 - 1e-6))) < 1e-12);
  CHECK(fabs(t2s_lr_at(&s, base, 1000)) < 1e-15);
  s.power = 0.9;
  s.min_lr = 1e-4;
  s.warmup_iters = 0;
  CHECK(fabs(t2s_lr_at(&s, base, 500) - ((base - 1e-4) * pow(0.5, 0.9) + 1e-4)) < 1e-12);
  s.policy = T2S_LR_CONSTANT;
  CHECK(t2s_lr_at(&s, base, 700) == base);
}

static void ema(void) {
  t2s_params s, t;
  build(&s);
  build(&t);
  for (size_t k = 0; k < s.numel; k++) {
    s.data[k] = (float)k;
    t.data[k] = -1.0f;
  }
  t2s_error err = {0};
  CHECK(t2s_ema_update(&t, &s, 0.999, 0, 0, &err) == T2S_OK);  /* iteration 0: a copy */
  CHECK(memcmp(t.data, s.data, s.numel * sizeof(float)) == 0);
  for (size_t k = 0; k < s.numel; k++) s.data[k] += 1.0f;
  CHECK(t2s_ema_update(&t, &s, 0.999, 3, 0, &err) == T2S_OK);  /* a = min(1 - 1/4, .999) */
  CHECK(fabsf(t.data[5] - (0.75f * 5.0f + 0.25f * 6.0f)) < 1e-6f);
  CHECK(t2s_ema_update(&t, &s, 0.5, 100, 0, &err) == T2S_OK);  /* a = alpha */
  CHECK(fabsf(t.data[5] - (0.5f * 5.25f + 0.5f * 6.0f)) < 1e-6f);
  t2s_params_free(&s);
  t2s_params_free(&t);
}

static void frozen_untouched(void) {
  t2s_params p;
  build(&p);
  t2s_param *q = t2s_params_find(&p, "a.bias");
  q->t.requires_grad = 0;
  for (size_t k = 0; k < p.numel; k++) {
    p.data[k] = 1.0f;
    p.grad[k] = 1.0f;
  }
  t2s_optim o;
  t2s_optim_cfg cfg = {T2S_OPTIM_SGD, 0.1, 0.9, 0.1, 0, 0, 0, 0};
  t2s_error err = {0};
  CHECK(t2s_optim_init(&o, &p, &cfg, &err) == T2S_OK);
  CHECK(t2s_optim_step(&o, 0.1, NULL, &err) == T2S_OK);
  CHECK(p.data[q->offset] == 1.0f);
  CHECK(p.data[t2s_params_find(&p, "a.weight")->offset] != 1.0f);
  /* a NaN gradient stops the step with a message and leaves the weights alone */
  p.grad[0] = NAN;
  float before = p.data[0];
  cfg.grad_clip = 1.0;
  o.cfg.grad_clip = 1.0;
  CHECK(t2s_optim_step(&o, 0.1, NULL, &err) == T2S_ERR_NUMERIC);
  CHECK(strstr(err.msg, "gradient norm") != NULL);
  CHECK(p.data[0] == before);
  t2s_optim_free(&o);
  t2s_params_free(&p);
}

int main(void) {
  const char *file = t2s_fixture_path("optim_reference.h5");
  replay(file, "sgd", T2S_OPTIM_SGD, 0);
  replay(file, "adamw", T2S_OPTIM_ADAMW, 0);
  replay(file, "sgd_clip", T2S_OPTIM_SGD, 1.5);
  schedule();
  ema();
  frozen_untouched();
  return t2s_test_finish("test_optim");
}
