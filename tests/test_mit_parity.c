// ctest-labels: unit
/* One forward/backward of a small MiT + DAFormer (daformer_sepaspp) network against
 * PyTorch: the fixture (tools/make_mit_fixture.py) runs Hugging Face's SegFormer
 * encoder -- an independent implementation, in its own parameter names -- with a
 * DAFormer head written in plain torch. Its weights are loaded here through
 * t2s_mit_foreign_names(T2S_MIT_NAMES_HF) (key and value joined into our kv), so
 * the conversion name map is checked too. Logits, loss, every gradient and the BN
 * running statistics must agree to 1e-4 relative: max |ours - torch| over
 * max(max |torch|, 1e-3 x the largest gradient) -- the floor covers the key biases,
 * whose gradient is zero in exact arithmetic. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/nn/mit_names.h"
#include "core/nn/segmentor.h"
#include "tests/fixture.h"
#include "tests/harness.h"

static const char *fx;

static double rel_err(const float *a, const float *b, int64_t n, double floor) {
  double diff = 0, scale = 0;
  for (int64_t i = 0; i < n; i++) {
    diff = fmax(diff, fabs((double)a[i] - b[i]));
    scale = fmax(scale, fabs((double)b[i]));
  }
  return isfinite(diff) ? diff / fmax(scale, fmax(floor, 1e-30)) : INFINITY;
}

/* The fixture's tensors that make up our tensor `ours` (concatenated along dim 0),
 * from group `group`; malloc'd, NULL with a failure when missing or mis-sized. */
static float *read_ours(const char *group, const char *ours, int64_t numel) {
  char names[2][160];
  int n = strncmp(ours, "backbone.", 9) == 0 ? t2s_mit_foreign_names(ours, T2S_MIT_NAMES_HF, names)
                                             : (snprintf(names[0], 160, "%s", ours), 1);
  CHECK_MSG(n > 0, "%s: no Hugging Face name", ours);
  float *all = malloc((size_t)numel * sizeof(float));
  int64_t at = 0;
  for (int k = 0; k < n && all; k++) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", group, names[k]);
    int64_t m = 0;
    float *v = t2s_fixture_read_f32(fx, path, &m, NULL, NULL);
    if (v && at + m <= numel) memcpy(all + at, v, (size_t)m * sizeof(float));
    at += v ? m : numel + 1;
    free(v);
  }
  CHECK_MSG(n > 0 && at == numel, "%s: %s has %lld values for our %lld", ours, group,
            (long long)at, (long long)numel);
  if (n > 0 && at == numel) return all;
  free(all);
  return NULL;
}

static int fixture_cfg(t2s_model_cfg *cfg) {
  *cfg = t2s_model_default_cfg();
  cfg->backbone = T2S_BACKBONE_MIT;
  cfg->head = T2S_HEAD_DAFORMER_SEPASPP;
  t2s_mit_cfg *m = &cfg->mit;
  int ok = t2s_fixture_attr_ints(fx, "/", "embed_dims", m->embed_dims, 4) == 4 &&
           t2s_fixture_attr_ints(fx, "/", "heads", m->heads, 4) == 4 &&
           t2s_fixture_attr_ints(fx, "/", "depths", m->depths, 4) == 4 &&
           t2s_fixture_attr_ints(fx, "/", "sr_ratios", m->sr_ratios, 4) == 4;
  m->mlp_ratio = (int)t2s_fixture_attr(fx, "/", "mlp_ratio");
  m->ln_eps = m->ln_eps_embed = (float)t2s_fixture_attr(fx, "/", "ln_eps");
  m->drop_path_rate = 0.0f;
  cfg->num_classes = (int)t2s_fixture_attr(fx, "/", "num_classes");
  cfg->daformer.channels = (int)t2s_fixture_attr(fx, "/", "channels");
  cfg->daformer.n_dilations = t2s_fixture_attr_ints(fx, "/", "dilations", cfg->daformer.dilations,
                                                    T2S_DAF_MAX_DILATIONS);
  cfg->daformer.dropout = 0.0f;
  cfg->daformer.norm = T2S_NORM_BN;
  CHECK(ok && cfg->daformer.n_dilations == 4 && m->mlp_ratio == 4);
  return ok;
}

int main(void) {
  fx = t2s_fixture_path("mit_daformer.h5");
  t2s_model_cfg cfg;
  if (!fixture_cfg(&cfg)) return t2s_test_finish("test_mit_parity");
  t2s_error err = {0};
  t2s_segmentor m;
  CHECK_MSG(t2s_segmentor_build(&m, &cfg, T2S_DEV_CPU, 0, &err) == T2S_OK, "%s", err.msg);
  if (err.status) return t2s_test_finish("test_mit_parity");
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < (pass ? m.params.buf_count : m.params.count); i++) {
      t2s_param *q = pass ? m.params.buffers[i] : m.params.items[i];
      float *v = read_ours("/weights", q->name, t2s_numel(&q->t));
      if (v) memcpy(q->t.data, v, (size_t)t2s_numel(&q->t) * sizeof(float));
      free(v);
    }

  t2s_tensor image, label;
  int have_batch = t2s_fixture_batch(fx, &image, &label);
  CHECK(have_batch);
  if (!have_batch || t2s_test_failures) return t2s_test_finish("test_mit_parity");

  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 64 << 20, &err);
  t2s_seg_out out;
  t2s_segmentor_forward(ctx, &m, &image, &out);
  t2s_tensor *loss = t2s_fixture_seg_loss(ctx, out.logits, &label);
  CHECK_MSG(t2s_ctx_ok(ctx), "forward: %s", ctx->err.msg);
  if (!t2s_ctx_ok(ctx)) return t2s_test_finish("test_mit_parity");
  CHECK(out.features && out.features->shape[1] == cfg.daformer.channels &&
        out.features->shape[2] == image.shape[2] / 4);
  float *ref_logits = t2s_fixture_read_f32(fx, "/logits", NULL, NULL, NULL);
  float *ref_loss = t2s_fixture_read_f32(fx, "/loss", NULL, NULL, NULL);
  double e_logits = ref_logits ? rel_err(t2s_f32(out.logits), ref_logits, t2s_numel(out.logits), 0)
                               : INFINITY;
  double e_loss = ref_loss ? rel_err(t2s_f32(loss), ref_loss, 1, 0) : INFINITY;
  CHECK_MSG(e_logits <= 1e-4 && e_loss <= 1e-4, "logits %.3g, loss %.3g", e_logits, e_loss);
  CHECK(t2s_backward(ctx, loss, 1.0f) == T2S_OK);

  float **refs = calloc((size_t)m.params.count, sizeof *refs);
  double gmax = 0, worst_grad = 0, worst_buf = 0;
  for (int i = 0; i < m.params.count; i++) {
    t2s_param *q = m.params.items[i];
    refs[i] = read_ours("/grads", q->name, t2s_numel(&q->t));
    for (int64_t k = 0; refs[i] && k < t2s_numel(&q->t); k++) gmax = fmax(gmax, fabs(refs[i][k]));
  }
  for (int i = 0; i < m.params.count; i++) {
    t2s_param *q = m.params.items[i];
    if (!refs[i]) continue;
    double e = rel_err(q->t.grad, refs[i], t2s_numel(&q->t), 1e-3 * gmax);
    CHECK_MSG(e <= 1e-4, "gradient of %s: relative error %.3g", q->name, e);
    worst_grad = fmax(worst_grad, e);
    free(refs[i]);
  }
  for (int i = 0; i < m.params.buf_count; i++) {
    t2s_param *q = m.params.buffers[i];
    float *r = read_ours("/buffers_after", q->name, t2s_numel(&q->t));
    double e = r ? rel_err(t2s_f32(&q->t), r, t2s_numel(&q->t), 0) : INFINITY;
    CHECK_MSG(e <= 1e-4, "running statistic %s: relative error %.3g", q->name, e);
    worst_buf = fmax(worst_buf, e);
    free(r);
  }
  printf("MiT+DAFormer parity with PyTorch/HF (%d tensors): logits %.2e, loss %.2e, worst "
         "gradient %.2e (torch f32 vs f64: %.2e), worst running stat %.2e\n",
         m.params.count, e_logits, e_loss, worst_grad,
         t2s_fixture_attr(fx, "/", "f32_vs_f64_worst_grad_rel_err"), worst_buf);
  free(refs);
  free(ref_logits);
  free(ref_loss);
  t2s_ctx_destroy(ctx);
  t2s_segmentor_free(&m);
  free(image.data);
  free(label.data);
  return t2s_test_finish("test_mit_parity");
}
