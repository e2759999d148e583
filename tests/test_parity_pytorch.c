// ctest-labels: unit
/* One training step of a small ResNet-V1c DeepLab-V2 against PyTorch: the fixture
 * (tools/make_parity_fixture.py, an independent torch implementation with mmseg
 * names) holds inputs, initial weights, logits, loss, every gradient, the running
 * statistics after the forward and the weights after one SGD step. Every tensor
 * must agree to 1e-4 relative (max |ours - torch| / max |torch|). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/nn/segmentor.h"
#include "core/optim.h"
#include "tests/fixture.h"
#include "tests/harness.h"

static const char *fx;

static double tensor_rel_err(const float *a, const float *b, int64_t n) {
  double diff = 0, scale = 0;
  for (int64_t i = 0; i < n; i++) {
    diff = fmax(diff, fabs((double)a[i] - b[i]));
    scale = fmax(scale, fabs((double)b[i]));
  }
  return isfinite(diff) ? diff / fmax(scale, 1e-12) : INFINITY;
}

/* Compares `ours` with fixture dataset `group/name`; returns the error. */
static double compare(const char *group, const char *name, const float *ours, int64_t n, double tol) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", group, name);
  int64_t m = 0;
  float *ref = t2s_fixture_read_f32(fx, path, &m, NULL, NULL);
  if (ref == NULL) {
    t2s_test_failures++;
    return INFINITY;
  }
  double e = m == n ? tensor_rel_err(ours, ref, n) : INFINITY;
  CHECK_MSG(e <= tol, "%s: %lld values (torch %lld), relative error %.3g > %.1g", path,
            (long long)n, (long long)m, e, tol);
  free(ref);
  return e;
}

static void load_all(t2s_params *p) {
  for (int pass = 0; pass < 2; pass++) {
    int count = pass ? p->buf_count : p->count;
    for (int i = 0; i < count; i++) {
      t2s_param *q = pass ? p->buffers[i] : p->items[i];
      char path[256];
      snprintf(path, sizeof path, "/weights/%s", q->name);
      int64_t n = 0;
      float *v = t2s_fixture_read_f32(fx, path, &n, NULL, NULL);
      CHECK_MSG(v && n == t2s_numel(&q->t), "%s: missing or %lld values", q->name, (long long)n);
      if (v && n == t2s_numel(&q->t)) memcpy(q->t.data, v, (size_t)n * sizeof(float));
      free(v);
    }
  }
}

int main(void) {
  fx = t2s_fixture_path("parity_resnet_dlv2.h5");
  t2s_model_cfg cfg = t2s_model_default_cfg();
  int ints[8];
  cfg.resnet.depth = (int)t2s_fixture_attr(fx, "/", "depth");
  cfg.resnet.base_channels = (int)t2s_fixture_attr(fx, "/", "base_channels");
  cfg.resnet.stem_channels = (int)t2s_fixture_attr(fx, "/", "stem_channels");
  cfg.resnet.contract_dilation = (int)t2s_fixture_attr(fx, "/", "contract_dilation");
  cfg.num_classes = (int)t2s_fixture_attr(fx, "/", "num_classes");
  CHECK(t2s_fixture_attr_ints(fx, "/", "strides", cfg.resnet.strides, 4) == 4);
  CHECK(t2s_fixture_attr_ints(fx, "/", "dilations", cfg.resnet.dilations, 4) == 4);
  cfg.n_head_dilations = t2s_fixture_attr_ints(fx, "/", "head_dilations", ints, 8);
  memcpy(cfg.head_dilations, ints, sizeof cfg.head_dilations);
  if (t2s_test_failures) return t2s_test_finish("test_parity_pytorch");

  t2s_error err = {0};
  t2s_segmentor m;
  CHECK(t2s_segmentor_build(&m, &cfg, T2S_DEV_CPU, 0, &err) == T2S_OK);
  if (err.status) {
    fprintf(stderr, "%s\n", err.msg);
    return t2s_test_finish("test_parity_pytorch");
  }
  t2s_params_set_lr_mult(&m.params, "decode_head.", (float)t2s_fixture_attr(fx, "/", "head_lr_mult"));
  load_all(&m.params);

  t2s_tensor image, label;
  int have_batch = t2s_fixture_batch(fx, &image, &label);
  CHECK(have_batch);
  if (!have_batch) return t2s_test_finish("test_parity_pytorch");

  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 64 << 20, &err);
  t2s_seg_out out;
  t2s_segmentor_forward(ctx, &m, &image, &out);
  t2s_tensor *loss = t2s_fixture_seg_loss(ctx, out.logits, &label);
  CHECK_MSG(t2s_ctx_ok(ctx), "forward: %s", ctx->err.msg);
  if (!t2s_ctx_ok(ctx)) return t2s_test_finish("test_parity_pytorch");
  double e_logits = compare("", "logits", t2s_f32(out.logits), t2s_numel(out.logits), 1e-4);
  double e_loss = compare("", "loss", t2s_f32(loss), 1, 1e-4);
  CHECK(t2s_backward(ctx, loss, 1.0f) == T2S_OK);

  double worst_grad = 0, worst_upd = 0, worst_buf = 0;
  for (int i = 0; i < m.params.count; i++) {
    t2s_param *q = m.params.items[i];
    double e = compare("/grads", q->name, q->t.grad, t2s_numel(&q->t), 1e-4);
    worst_grad = fmax(worst_grad, e);
  }
  for (int i = 0; i < m.params.buf_count; i++) {
    t2s_param *q = m.params.buffers[i];
    worst_buf = fmax(worst_buf, compare("/buffers_after", q->name, t2s_f32(&q->t), t2s_numel(&q->t), 1e-4));
  }
  t2s_optim_cfg oc = {T2S_OPTIM_SGD, t2s_fixture_attr(fx, "/", "lr"), t2s_fixture_attr(fx, "/", "momentum"),
                      t2s_fixture_attr(fx, "/", "weight_decay"), 0.9, 0.999, 1e-8, 0};
  t2s_optim opt;
  CHECK(t2s_optim_init(&opt, &m.params, &oc, &err) == T2S_OK);
  CHECK(t2s_optim_step(&opt, oc.lr, NULL, &err) == T2S_OK);
  for (int i = 0; i < m.params.count; i++) {
    t2s_param *q = m.params.items[i];
    worst_upd = fmax(worst_upd, compare("/updated", q->name, t2s_f32(&q->t), t2s_numel(&q->t), 1e-4));
  }
  printf("parity with PyTorch (%d tensors): logits %.2e, loss %.2e, worst gradient %.2e, "
         "worst running stat %.2e, worst updated weight %.2e\n",
         m.params.count, e_logits, e_loss, worst_grad, worst_buf, worst_upd);
  t2s_optim_free(&opt);
  t2s_ctx_destroy(ctx);
  t2s_segmentor_free(&m);
  free(image.data);
  free(label.data);
  return t2s_test_finish("test_parity_pytorch");
}
