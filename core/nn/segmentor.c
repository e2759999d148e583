#include "core/nn/segmentor.h"

#include <string.h>

t2s_model_cfg t2s_model_default_cfg(void) {
  t2s_model_cfg c;
  memset(&c, 0, sizeof c);
  c.num_classes = 19;
  c.backbone = T2S_BACKBONE_RESNET_V1C;
  c.resnet = t2s_resnet_default_cfg(101);
  c.head = T2S_HEAD_DLV2;
  c.head_dilations[0] = 6;
  c.head_dilations[1] = 12;
  c.n_head_dilations = 2;
  return c;
}

t2s_status t2s_segmentor_build(t2s_segmentor *m, const t2s_model_cfg *cfg, t2s_device device,
                               uint64_t seed, t2s_error *err) {
  memset(m, 0, sizeof *m);
  m->cfg = *cfg;
  t2s_params_init(&m->params);
  if (cfg->num_classes < 2 || cfg->num_classes > 255)
    return t2s_error_set(err, T2S_ERR_INVALID, "model.num_classes: %d is outside 2..255", cfg->num_classes);
  t2s_status st = t2s_resnet_build(&m->resnet, &m->params, "backbone", &cfg->resnet, err);
  if (st == T2S_OK)
    st = t2s_dlv2_head_build(&m->dlv2, &m->params, "decode_head", m->resnet.out_channels[3],
                             cfg->num_classes, cfg->head_dilations, cfg->n_head_dilations, err);
  if (st == T2S_OK) st = t2s_params_finalize(&m->params, device, seed, err);
  if (st != T2S_OK) t2s_segmentor_free(m);
  return st;
}

void t2s_segmentor_free(t2s_segmentor *m) {
  t2s_resnet_free(&m->resnet);
  t2s_params_free(&m->params);
}

t2s_status t2s_segmentor_forward(t2s_ctx *ctx, const t2s_segmentor *m, t2s_tensor *image,
                                 t2s_seg_out *out) {
  t2s_tensor *feats[4] = {0};
  if (t2s_resnet_forward(ctx, &m->resnet, image, feats) != T2S_OK) return ctx->err.status;
  out->features = feats[3];
  out->logits = t2s_dlv2_head_forward(ctx, &m->dlv2, feats[3]);
  return ctx->err.status;
}
