// ctest-labels: unit
/* MiT and DAFormer heads without a fixture:
 * - the variant table: parameter counts of MiT-B0..B5 against Hugging Face's
 *   SegformerModel built with the published configs (numbers from
 *   SegformerModel(cfg).num_parameters(), transformers 4.40);
 * - the foreign name map on hand-written names of the three checkpoint layouts;
 * - a small MiT with each head: output shapes and strides, the projection-head
 *   feature, parameter kinds (norms undecayed), the head lr multiplier;
 * - stochastic depth: training with drop_path_rate > 0 changes the output, and
 *   eval mode ignores it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/nn/mit_names.h"
#include "core/nn/segmentor.h"
#include "tests/harness.h"

static void check_variant_sizes(void) {
  static const struct {
    const char *name;
    int64_t hf_params;
  } ref[] = {{"mit_b0", 3319392},  {"mit_b1", 13151424}, {"mit_b2", 24196288},
             {"mit_b3", 44072128}, {"mit_b4", 60842688}, {"mit_b5", 81443008}};
  for (size_t v = 0; v < sizeof ref / sizeof ref[0]; v++) {
    t2s_error err = {0};
    t2s_mit_cfg cfg;
    CHECK(t2s_mit_cfg_by_name(ref[v].name, &cfg, &err) == T2S_OK);
    t2s_params p;
    t2s_params_init(&p);
    t2s_mit net;
    CHECK_MSG(t2s_mit_build(&net, &p, "backbone", &cfg, &err) == T2S_OK, "%s", err.msg);
    int64_t total = 0;
    for (int i = 0; i < p.count; i++) total += t2s_numel(&p.items[i]->t);
    CHECK_MSG(total == ref[v].hf_params, "%s: %lld parameters, Hugging Face has %lld",
              ref[v].name, (long long)total, (long long)ref[v].hf_params);
    t2s_mit_free(&net);
    t2s_params_free(&p);
  }
  t2s_error err = {0};
  t2s_mit_cfg cfg;
  CHECK(t2s_mit_cfg_by_name("mit_b6", &cfg, &err) == T2S_ERR_INVALID &&
        strstr(err.msg, "mit_b5") != NULL);
}

static void expect_names(const char *ours, int naming, int n, const char *a, const char *b) {
  char out[2][160] = {{0}};
  int got = t2s_mit_foreign_names(ours, naming, out);
  CHECK_MSG(got == n && (n < 1 || strcmp(out[0], a) == 0) && (n < 2 || strcmp(out[1], b) == 0),
            "%s (naming %d): got %d '%s' '%s', want %d '%s' '%s'", ours, naming, got, out[0],
            out[1], n, a ? a : "", b ? b : "");
}

static void check_names(void) {
  expect_names("backbone.block3.17.attn.kv.weight", T2S_MIT_NAMES_SEGFORMER, 1,
               "backbone.block3.17.attn.kv.weight", NULL);
  expect_names("backbone.block3.17.attn.kv.weight", T2S_MIT_NAMES_HF, 2,
               "segformer.encoder.block.2.17.attention.self.key.weight",
               "segformer.encoder.block.2.17.attention.self.value.weight");
  expect_names("backbone.patch_embed1.norm.bias", T2S_MIT_NAMES_HF, 1,
               "segformer.encoder.patch_embeddings.0.layer_norm.bias", NULL);
  expect_names("backbone.norm4.weight", T2S_MIT_NAMES_HF, 1,
               "segformer.encoder.layer_norm.3.weight", NULL);
  expect_names("backbone.block1.0.mlp.fc1.bias", T2S_MIT_NAMES_HF, 1,
               "segformer.encoder.block.0.0.mlp.dense1.bias", NULL);
  expect_names("decode_head.linear_fuse.bn.running_var", T2S_MIT_NAMES_HF, 1,
               "decode_head.batch_norm.running_var", NULL);
  expect_names("decode_head.linear_pred.weight", T2S_MIT_NAMES_HF, 1,
               "decode_head.classifier.weight", NULL);
  expect_names("decode_head.conv_seg.weight", T2S_MIT_NAMES_HF, 0, NULL, NULL);
  expect_names("backbone.patch_embed2.proj.weight", T2S_MIT_NAMES_MMSEG, 1,
               "backbone.layers.1.0.projection.weight", NULL);
  expect_names("backbone.block2.1.attn.q.bias", T2S_MIT_NAMES_MMSEG, 1,
               "backbone.layers.1.1.1.attn.attn.in_proj_bias", NULL);
  expect_names("backbone.block4.2.mlp.fc2.weight", T2S_MIT_NAMES_MMSEG, 1,
               "backbone.layers.3.1.2.ffn.layers.4.weight", NULL);
  expect_names("backbone.norm1.bias", T2S_MIT_NAMES_MMSEG, 1, "backbone.layers.0.2.bias", NULL);
  expect_names("backbone.block1.0.attn.sr.weight", T2S_MIT_NAMES_MMSEG, 1,
               "backbone.layers.0.1.0.attn.sr.weight", NULL);
  int begin = -1, count = -1, parts = -1;
  CHECK(t2s_mit_foreign_rows("backbone.block2.1.attn.kv.weight", T2S_MIT_NAMES_MMSEG, &begin,
                             &count, &parts) == 1 && begin == 1 && count == 2 && parts == 3);
  CHECK(t2s_mit_foreign_rows("backbone.block2.1.attn.q.bias", T2S_MIT_NAMES_MMSEG, &begin,
                             &count, &parts) == 1 && begin == 0 && count == 1 && parts == 3);
  CHECK(t2s_mit_foreign_rows("backbone.block2.1.attn.q.bias", T2S_MIT_NAMES_HF, &begin, &count,
                             &parts) == 0);
  CHECK(t2s_mit_foreign_rows("backbone.norm1.bias", T2S_MIT_NAMES_MMSEG, &begin, &count,
                             &parts) == 0);
}

static t2s_model_cfg tiny_cfg(t2s_head_type head) {
  t2s_model_cfg cfg = t2s_model_default_cfg();
  cfg.backbone = T2S_BACKBONE_MIT;
  cfg.head = head;
  t2s_error err;
  t2s_mit_cfg_by_name("mit_b0", &cfg.mit, &err);
  int dims[4] = {8, 16, 24, 32}, heads[4] = {1, 2, 3, 4}, depths[4] = {1, 1, 2, 1};
  memcpy(cfg.mit.embed_dims, dims, sizeof dims);
  memcpy(cfg.mit.heads, heads, sizeof heads);
  memcpy(cfg.mit.depths, depths, sizeof depths);
  cfg.daformer.channels = 12;
  cfg.num_classes = 3;
  cfg.head_lr_mult = 10.0f;
  return cfg;
}

static void check_heads(void) {
  const t2s_head_type heads[3] = {T2S_HEAD_DAFORMER_SEPASPP, T2S_HEAD_DAFORMER_CONV1,
                                  T2S_HEAD_SEGFORMER_MLP};
  const char *classifier[3] = {"decode_head.conv_seg.weight", "decode_head.conv_seg.weight",
                               "decode_head.linear_pred.weight"};
  int64_t ishape[4] = {2, 3, 64, 48};
  t2s_tensor *img = t2s_test_tensor(4, ishape, -1, 1, 7, 0);
  for (int k = 0; k < 3; k++) {
    t2s_model_cfg cfg = tiny_cfg(heads[k]);
    t2s_error err = {0};
    t2s_segmentor m;
    CHECK_MSG(t2s_segmentor_build(&m, &cfg, T2S_DEV_CPU, 5, &err) == T2S_OK, "%s", err.msg);
    if (err.status) continue;
    t2s_param *cls = t2s_params_find(&m.params, classifier[k]);
    t2s_param *ln = t2s_params_find(&m.params, "backbone.block3.1.norm2.weight");
    t2s_param *q = t2s_params_find(&m.params, "backbone.block1.0.attn.q.weight");
    CHECK_MSG(cls && cls->lr_mult == 10.0f, "head %d: classifier missing or lr_mult", k);
    CHECK(ln && ln->kind == T2S_PARAM_NORM && ln->decay_mult == 0.0f && ln->lr_mult == 1.0f);
    CHECK(q && q->kind == T2S_PARAM_WEIGHT && q->decay_mult == 1.0f);
    t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 16 << 20, &err);
    t2s_seg_out out = {0};
    CHECK_MSG(t2s_segmentor_forward(ctx, &m, img, &out) == T2S_OK, "%s", ctx->err.msg);
    CHECK(out.logits && out.logits->shape[1] == 3 && out.logits->shape[2] == 16 &&
          out.logits->shape[3] == 12);
    CHECK(out.features && out.features->shape[1] == 12 && out.features->shape[2] == 16);
    t2s_ctx_destroy(ctx);
    t2s_segmentor_free(&m);
  }
  t2s_test_tensor_free(img);
}

/* Stochastic depth is active only while training, and draws per sample. */
static void check_drop_path(void) {
  t2s_model_cfg cfg = tiny_cfg(T2S_HEAD_DAFORMER_CONV1);
  cfg.mit.drop_path_rate = 0.5f;
  cfg.daformer.dropout = 0.0f;
  t2s_error err = {0};
  t2s_segmentor m;
  CHECK(t2s_segmentor_build(&m, &cfg, T2S_DEV_CPU, 5, &err) == T2S_OK);
  int64_t ishape[4] = {4, 3, 32, 32};
  t2s_tensor *img = t2s_test_tensor(4, ishape, -1, 1, 8, 0);
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 16 << 20, &err);
  t2s_set_grad_enabled(ctx, 0);
  double diff[3] = {0};
  t2s_tensor *ref = NULL;
  float *keep = NULL;
  int64_t n = 0;
  for (int run = 0; run < 4; run++) {
    ctx->training = run >= 2;  /* runs 0, 1: eval; 2, 3: training (new RNG step) */
    ctx->step = (uint64_t)run;
    t2s_tensor *feats[4];
    CHECK(t2s_mit_forward(ctx, &m.mit, img, feats) == T2S_OK);
    ref = feats[3];
    if (ref == NULL) break;
    if (run == 0) {
      n = t2s_numel(ref);
      keep = malloc((size_t)n * sizeof *keep);
      memcpy(keep, t2s_f32(ref), (size_t)n * sizeof *keep);
    } else {
      for (int64_t i = 0; i < n; i++) diff[run - 1] = fmax(diff[run - 1], fabs(t2s_f32(ref)[i] - keep[i]));
    }
    t2s_ctx_end_pass(ctx);
  }
  CHECK_MSG(diff[0] == 0.0, "eval mode is not deterministic: %g", diff[0]);
  CHECK_MSG(diff[1] > 1e-3 && diff[2] > 1e-3, "drop path had no effect: %g %g", diff[1], diff[2]);
  free(keep);
  t2s_ctx_destroy(ctx);
  t2s_test_tensor_free(img);
  t2s_segmentor_free(&m);
}

int main(void) {
  check_variant_sizes();
  check_names();
  check_heads();
  check_drop_path();
  return t2s_test_finish("test_mit");
}
