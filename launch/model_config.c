/* model.* keys -> t2s_model_cfg (launch/model_config.h). */
#include "launch/model_config.h"

#include <string.h>

static const char *const backbone_spelling[] = {"resnet_v1c", "mit_b0", "mit_b1", "mit_b2",
                                                "mit_b3", "mit_b4", "mit_b5"};

static void map_resnet(const t2s_train_config *cfg, t2s_model_cfg *out) {
  out->backbone = T2S_BACKBONE_RESNET_V1C;
  t2s_resnet_cfg *r = &out->resnet;
  *r = t2s_resnet_default_cfg(cfg->model.backbone.depth);
  r->base_channels = cfg->model.backbone.base_channels;
  r->stem_channels = cfg->model.backbone.stem_channels;
  memcpy(r->strides, cfg->model.backbone.strides, sizeof r->strides);
  memcpy(r->dilations, cfg->model.backbone.dilations, sizeof r->dilations);
  r->contract_dilation = cfg->model.backbone.contract_dilation;
  r->norm = cfg->model.backbone.norm;
  r->norm_eval = cfg->model.backbone.norm_eval;
}

t2s_hrda_cfg t2s_hrda_cfg_from_train_config(const t2s_train_config *cfg) {
  t2s_hrda_cfg h = {(float)cfg->model.hrda.context_scale,
                    {cfg->model.hrda.hr_crop_size[0], cfg->model.hrda.hr_crop_size[1]},
                    {cfg->model.hrda.slide_stride[0], cfg->model.hrda.slide_stride[1]}};
  return h;
}

t2s_status t2s_model_cfg_from_train_config(const t2s_train_config *cfg, t2s_model_cfg *out,
                                           t2s_error *err) {
  *out = t2s_model_default_cfg();
  out->num_classes = cfg->model.num_classes;
  t2s_status st = T2S_OK;
  if (cfg->model.backbone.type == T2S_CFG_BACKBONE_RESNET_V1C) {
    map_resnet(cfg, out);
  } else {
    out->backbone = T2S_BACKBONE_MIT;
    st = t2s_mit_cfg_by_name(backbone_spelling[cfg->model.backbone.type], &out->mit, err);
    if (st) return st;
    out->mit.drop_path_rate = (float)cfg->model.backbone.drop_path_rate;
  }
  if (cfg->model.decode_head.type == T2S_HEAD_DLV2) {
    if (cfg->model.decode_head.n_dilations > T2S_DLV2_MAX_BRANCHES)
      return t2s_error_set(err, T2S_ERR_INVALID, "model.decode_head.dilations: %d entries, at most %d",
                           cfg->model.decode_head.n_dilations, T2S_DLV2_MAX_BRANCHES);
    out->head = T2S_HEAD_DLV2;
    out->n_head_dilations = cfg->model.decode_head.n_dilations;
    memset(out->head_dilations, 0, sizeof out->head_dilations);
    memcpy(out->head_dilations, cfg->model.decode_head.dilations,
           (size_t)cfg->model.decode_head.n_dilations * sizeof *out->head_dilations);
  } else {
    out->head = cfg->model.decode_head.type;
    out->daformer.channels = cfg->model.decode_head.channels;
    out->daformer.dropout = (float)cfg->model.decode_head.dropout;
    out->daformer.norm = cfg->model.decode_head.norm;
    /* the ASPP dilations of the DAFormer head are its own (1, 6, 12, 18 by default);
     * model.decode_head.dilations belongs to DeepLab-V2 unless set in aspp_dilations */
    if (cfg->model.decode_head.n_aspp_dilations > 0) {
      if (cfg->model.decode_head.n_aspp_dilations > T2S_DAF_MAX_DILATIONS)
        return t2s_error_set(err, T2S_ERR_INVALID, "model.decode_head.aspp_dilations: %d entries, at most %d",
                             cfg->model.decode_head.n_aspp_dilations, T2S_DAF_MAX_DILATIONS);
      out->daformer.n_dilations = cfg->model.decode_head.n_aspp_dilations;
      memcpy(out->daformer.dilations, cfg->model.decode_head.aspp_dilations,
             (size_t)out->daformer.n_dilations * sizeof(int));
    }
  }
  /* T2S-DA trains a projection head with the network: it is part of its checkpoints */
  out->proj_dim = cfg->uda.type == T2S_CFG_UDA_T2SDA ? cfg->uda.t2s.proj_dim : 0;
  /* HRDA's scale-attention head is part of the network and of its checkpoints */
  out->scale_attention = cfg->model.hrda.enabled;
  return T2S_OK;
}
