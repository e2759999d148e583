/* From the experiment config's model.* keys to the network's build config. */
#pragma once
#include "core/nn/hrda.h"
#include "core/nn/segmentor.h"
#include "launch/train_config.h"

/* Fills *out from cfg->model (backbone, decode head, classes): ResNet-V1c or
 * MiT-B0..B5 with a DeepLab-V2, DAFormer or SegFormer head. A value the network
 * cannot take (more dilations than it has branches) is an error naming the key. */
t2s_status t2s_model_cfg_from_train_config(const t2s_train_config *cfg, t2s_model_cfg *out,
                                           t2s_error *err);
/* model.hrda.* as HRDA's geometry (read when model.hrda.enabled). */
t2s_hrda_cfg t2s_hrda_cfg_from_train_config(const t2s_train_config *cfg);
