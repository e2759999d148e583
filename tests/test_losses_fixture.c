// ctest-labels: unit grad
/* The pulling loss, its gradient and the prototypes against PyTorch autograd
 * (tools/make_losses_fixture.py, float64), with every pixel taken as a query and
 * every candidate as a negative, in both negative modes. */
#include <math.h>
#include <stdlib.h>

#include "losses/pull_loss.h"
#include "tests/fixture.h"
#include "tests/harness.h"

int main(void) {
  const char *file = t2s_fixture_path("losses_pull.h5");
  int64_t nq, nk, ny, nc, np, shape[5];
  int ndim;
  float *q = t2s_fixture_read_f32(file, "q", &nq, &ndim, shape);
  float *k = t2s_fixture_read_f32(file, "k", &nk, NULL, NULL);
  uint8_t *y = t2s_fixture_read_u8(file, "labels", &ny);
  float *cw = t2s_fixture_read_f32(file, "class_weight", &nc, NULL, NULL);
  float *pm = t2s_fixture_read_f32(file, "proto_mean", &np, NULL, NULL);
  double tau = t2s_fixture_attr(file, "/", "tau");
  CHECK(q && k && y && cw && pm && ndim == 4 && !isnan(tau));
  if (!(q && k && y && cw && pm)) return t2s_test_finish("test_losses_fixture");
  int C = (int)nc, D = (int)shape[1];
  t2s_tensor tq, tk, ty, tw;
  int64_t ls[3] = {shape[0], shape[2], shape[3]};
  t2s_tensor_init(&tq, T2S_F32, T2S_DEV_CPU, 4, shape, q);
  t2s_tensor_init(&tk, T2S_F32, T2S_DEV_CPU, 4, shape, k);
  t2s_tensor_init(&ty, T2S_U8, T2S_DEV_CPU, 3, ls, y);
  t2s_tensor_init(&tw, T2S_F32, T2S_DEV_CPU, 1, &nc, cw);
  tq.requires_grad = 1;

  t2s_error err = {0};
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 1 << 20, &err);
  t2s_prototypes p;
  CHECK(t2s_prototypes_init(&p, C, D, 0.0f, &err) == T2S_OK);
  CHECK(t2s_class_prototypes(ctx, &tk, &ty, 255, &p) == T2S_OK);
  CHECK_MSG(t2s_max_rel_err(p.proto, pm, np, 1e-3) < 1e-5, "prototypes: %g",
            t2s_max_rel_err(p.proto, pm, np, 1e-3));
  const char *modes[2] = {"keys", "prototypes"};
  for (int m = 0; m < 2; m++) {
    char name[64];
    snprintf(name, sizeof name, "%s/loss", modes[m]);
    float *want = t2s_fixture_read_f32(file, name, NULL, NULL, NULL);
    snprintf(name, sizeof name, "%s/grad_q", modes[m]);
    float *want_g = t2s_fixture_read_f32(file, name, NULL, NULL, NULL);
    CHECK(want && want_g);
    if (!want || !want_g) continue;
    t2s_pull_cfg cfg = t2s_pull_cfg_defaults();
    cfg.negatives = m ? T2S_PULL_NEG_PROTOTYPES : T2S_PULL_NEG_KEYS;
    cfg.tau = (float)tau;
    cfg.num_queries = cfg.num_negatives = 1000;  /* more than the map: no sampling */
    float *g = calloc((size_t)nq, sizeof(float));
    tq.grad = g;
    t2s_tensor *l = t2s_pull_loss(ctx, &tq, &tk, &ty, &tw, t2s_prototypes_tensor(ctx, &p),
                                  t2s_prototypes_present_tensor(ctx, &p), &cfg, 1, 2, 0, 1);
    CHECK_MSG(l != NULL, "%s: %s", modes[m], ctx->err.msg);
    if (l) {
      CHECK_MSG(fabs(t2s_f32(l)[0] - want[0]) < 1e-5 * fabs(want[0]), "%s: loss %.7g, PyTorch %.7g",
                modes[m], t2s_f32(l)[0], want[0]);
      CHECK(t2s_backward(ctx, l, 1.0f) == T2S_OK);
      double e = t2s_max_rel_err(g, want_g, nq, 1e-3);
      CHECK_MSG(e < 1e-4, "%s: gradient max rel err %g", modes[m], e);
    }
    t2s_ctx_end_pass(ctx);
    tq.grad = NULL;
    free(g);
    free(want);
    free(want_g);
  }
  t2s_prototypes_free(&p);
  t2s_ctx_destroy(ctx);
  free(q), free(k), free(y), free(cw), free(pm);
  return t2s_test_finish("test_losses_fixture");
}
