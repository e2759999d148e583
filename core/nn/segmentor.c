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
  t2s_error ignored;
  t2s_mit_cfg_by_name("mit_b5", &c.mit, &ignored);
  c.daformer = t2s_daf_default_cfg(T2S_DAF_SEPASPP);
  c.head_lr_mult = 1.0f;
  return c;
}

static t2s_status build_backbone(t2s_segmentor *m, t2s_error *err) {
  if (m->cfg.backbone == T2S_BACKBONE_MIT)
    return t2s_mit_build(&m->mit, &m->params, "backbone", &m->cfg.mit, err);
  return t2s_resnet_build(&m->resnet, &m->params, "backbone", &m->cfg.resnet, err);
}

static t2s_status build_head(t2s_segmentor *m, t2s_error *err) {
  const t2s_model_cfg *cfg = &m->cfg;
  int mit = cfg->backbone == T2S_BACKBONE_MIT;
  const int64_t *levels = mit ? m->mit.out_channels : m->resnet.out_channels;
  if (cfg->head == T2S_HEAD_DLV2)
    return t2s_dlv2_head_build(&m->dlv2, &m->params, "decode_head", levels[3], cfg->num_classes,
                               cfg->head_dilations, cfg->n_head_dilations, err);
  t2s_daf_cfg dc = cfg->daformer;
  dc.kind = cfg->head == T2S_HEAD_DAFORMER_SEPASPP ? T2S_DAF_SEPASPP
            : cfg->head == T2S_HEAD_DAFORMER_CONV1 ? T2S_DAF_CONV1
                                                   : T2S_DAF_SEGFORMER_MLP;
  return t2s_daformer_head_build(&m->daformer, &m->params, "decode_head", levels,
                                 cfg->num_classes, &dc, err);
}

/* HRDA's scale attention (HRDAHead.__init__): the decode head's kind with
 * attention_embed_dim 256 channels, and a 1x1-conv fusion where the head fuses with
 * the separable ASPP; class-wise (num_classes outputs). For DeepLab-V2 a second DLV2
 * head of the same dilations. */
static t2s_status build_scale_attention(t2s_segmentor *m, t2s_error *err) {
  const t2s_model_cfg *cfg = &m->cfg;
  int mit = cfg->backbone == T2S_BACKBONE_MIT;
  const int64_t *levels = mit ? m->mit.out_channels : m->resnet.out_channels;
  const char *prefix = "decode_head.scale_attention";
  if (cfg->head == T2S_HEAD_DLV2)
    return t2s_dlv2_head_build(&m->att_dlv2, &m->params, prefix, levels[3], cfg->num_classes,
                               cfg->head_dilations, cfg->n_head_dilations, err);
  t2s_daf_cfg dc = cfg->daformer;
  dc.kind = cfg->head == T2S_HEAD_SEGFORMER_MLP ? T2S_DAF_SEGFORMER_MLP : T2S_DAF_CONV1;
  dc.channels = 256;
  return t2s_daformer_head_build(&m->att_daformer, &m->params, prefix, levels, cfg->num_classes, &dc, err);
}

int t2s_segmentor_output_stride(const t2s_segmentor *m) {
  if (m->cfg.head != T2S_HEAD_DLV2) return 4;
  if (m->cfg.backbone == T2S_BACKBONE_MIT) return 32;
  int s = 4;  /* the deep stem and its max pool */
  for (int i = 0; i < 4; i++) s *= m->cfg.resnet.strides[i];
  return s;
}

t2s_status t2s_segmentor_build(t2s_segmentor *m, const t2s_model_cfg *cfg, t2s_device device,
                               uint64_t seed, t2s_error *err) {
  memset(m, 0, sizeof *m);
  m->cfg = *cfg;
  t2s_params_init(&m->params);
  if (cfg->num_classes < 2 || cfg->num_classes > 255)
    return t2s_error_set(err, T2S_ERR_INVALID, "model.num_classes: %d is outside 2..255", cfg->num_classes);
  t2s_status st = build_backbone(m, err);
  if (st == T2S_OK) st = build_head(m, err);
  if (st == T2S_OK && cfg->proj_dim > 0) {
    /* it reads t2s_seg_out.features: layer4 for DeepLab-V2, the fused map otherwise */
    int64_t in = cfg->head == T2S_HEAD_DLV2
                     ? (cfg->backbone == T2S_BACKBONE_MIT ? m->mit.out_channels[3] : m->resnet.out_channels[3])
                     : cfg->daformer.channels;
    st = t2s_proj_head_build(&m->proj, &m->params, "proj_head", in, cfg->proj_dim, cfg->resnet.norm, err);
  }
  if (st == T2S_OK && cfg->scale_attention) st = build_scale_attention(m, err);
  if (st == T2S_OK) st = t2s_params_finalize(&m->params, device, seed, err);
  if (st == T2S_OK && cfg->head_lr_mult != 1.0f)
    t2s_params_set_lr_mult(&m->params, "decode_head.", cfg->head_lr_mult);
  if (st != T2S_OK) t2s_segmentor_free(m);
  return st;
}

void t2s_segmentor_free(t2s_segmentor *m) {
  t2s_resnet_free(&m->resnet);
  t2s_mit_free(&m->mit);
  t2s_params_free(&m->params);
}

static t2s_status segmentor_forward(t2s_ctx *ctx, const t2s_segmentor *m, t2s_tensor *image,
                                   int attention, t2s_seg_out *out) {
  /* A liveness scope (core/engine.h): of the whole network only its outputs outlive the
   * call, and what the backward reads. */
  t2s_scope scope = t2s_scope_begin(ctx);
  t2s_tensor *feats[4] = {0};
  out->attention = NULL;
  t2s_status st = m->cfg.backbone == T2S_BACKBONE_MIT
                      ? t2s_mit_forward(ctx, &m->mit, image, feats)
                      : t2s_resnet_forward(ctx, &m->resnet, image, feats);
  if (st != T2S_OK) return ctx->err.status;
  if (m->cfg.head == T2S_HEAD_DLV2) {
    out->features = feats[3];
    out->logits = t2s_dlv2_head_forward(ctx, &m->dlv2, feats[3]);
  } else {
    out->logits = t2s_daformer_head_forward(ctx, &m->daformer, feats, &out->features);
  }
  if (attention)
    out->attention = m->cfg.head == T2S_HEAD_DLV2
                         ? t2s_dlv2_head_forward(ctx, &m->att_dlv2, feats[3])
                         : t2s_daformer_head_forward(ctx, &m->att_daformer, feats, NULL);
  t2s_tensor *keep[3] = {out->logits, out->features, out->attention};
  t2s_scope_end(ctx, scope, keep, 3);
  return ctx->err.status;
}

t2s_status t2s_segmentor_forward(t2s_ctx *ctx, const t2s_segmentor *m, t2s_tensor *image,
                                 t2s_seg_out *out) {
  return segmentor_forward(ctx, m, image, 0, out);
}

t2s_status t2s_segmentor_forward_attention(t2s_ctx *ctx, const t2s_segmentor *m, t2s_tensor *image,
                                           t2s_seg_out *out) {
  if (!m->cfg.scale_attention) {
    t2s_ctx_fail(ctx, T2S_ERR_INVALID, "the network was built without a scale-attention head "
                 "(model.hrda.enabled builds one)");
    return ctx->err.status;
  }
  return segmentor_forward(ctx, m, image, 1, out);
}

t2s_tensor *t2s_segmentor_project(t2s_ctx *ctx, const t2s_segmentor *m, t2s_tensor *features) {
  if (m->cfg.proj_dim <= 0)
    return t2s_ctx_fail(ctx, T2S_ERR_INVALID, "the network was built without a projection head "
                        "(uda.type t2sda builds one)");
  return t2s_proj_head_forward(ctx, &m->proj, features);
}
