/* model.* keys -> t2s_model_cfg (launch/model_config.h). */
#include "launch/model_config.h"

#include <string.h>

static const char *const backbone_spelling[] = {"resnet_v1c", "mit_b0", "mit_b1", "mit_b2",
                                                "mit_b3", "mit_b4", "mit_b5"};
static const char *const head_spelling[] = {"dlv2", "daformer_sepaspp", "daformer_conv1",
                                            "segformer_mlp"};

t2s_status t2s_model_cfg_from_train_config(const t2s_train_config *cfg, t2s_model_cfg *out,
                                           t2s_error *err) {
  *out = t2s_model_default_cfg();
  if (cfg->model.backbone.type != T2S_CFG_BACKBONE_RESNET_V1C)
    return t2s_error_set(err, T2S_ERR_UNSUPPORTED, "model.backbone.type '%s' is not built by this "
                         "version of t2sda yet; use resnet_v1c",
                         backbone_spelling[cfg->model.backbone.type]);
  if (cfg->model.decode_head.type != T2S_CFG_HEAD_DLV2)
    return t2s_error_set(err, T2S_ERR_UNSUPPORTED, "model.decode_head.type '%s' is not built by "
                         "this version of t2sda yet; use dlv2", head_spelling[cfg->model.decode_head.type]);
  if (cfg->model.decode_head.n_dilations > T2S_DLV2_MAX_BRANCHES)
    return t2s_error_set(err, T2S_ERR_INVALID, "model.decode_head.dilations: %d entries, at most %d",
                         cfg->model.decode_head.n_dilations, T2S_DLV2_MAX_BRANCHES);
  out->num_classes = cfg->model.num_classes;
  out->backbone = T2S_BACKBONE_RESNET_V1C;
  t2s_resnet_cfg *r = &out->resnet;
  *r = t2s_resnet_default_cfg(cfg->model.backbone.depth);
  r->base_channels = cfg->model.backbone.base_channels;
  r->stem_channels = cfg->model.backbone.stem_channels;
  memcpy(r->strides, cfg->model.backbone.strides, sizeof r->strides);
  memcpy(r->dilations, cfg->model.backbone.dilations, sizeof r->dilations);
  r->contract_dilation = cfg->model.backbone.contract_dilation;
  r->norm = cfg->model.backbone.norm == T2S_CFG_NORM_SYNCBN   ? T2S_NORM_SYNCBN
            : cfg->model.backbone.norm == T2S_CFG_NORM_FROZEN_BN ? T2S_NORM_FROZEN
                                                         : T2S_NORM_BN;
  r->norm_eval = cfg->model.backbone.norm_eval;
  out->head = T2S_HEAD_DLV2;
  out->n_head_dilations = cfg->model.decode_head.n_dilations;
  memset(out->head_dilations, 0, sizeof out->head_dilations);
  memcpy(out->head_dilations, cfg->model.decode_head.dilations,
         (size_t)cfg->model.decode_head.n_dilations * sizeof *out->head_dilations);
  /* T2S-DA trains a projection head with the network: it is part of its checkpoints */
  out->proj_dim = cfg->uda.type == T2S_CFG_UDA_T2SDA ? cfg->uda.t2s.proj_dim : 0;
  return T2S_OK;
}
