/* From the experiment config's model.* keys to the network's build config. */
#pragma once
#include "core/nn/segmentor.h"
#include "launch/train_config.h"

/* Fills *out from cfg->model (backbone, decode head, classes). Networks that
 * this build cannot construct yet (MiT, DAFormer heads) are T2S_ERR_UNSUPPORTED
 * with the key that asked for them. */
t2s_status t2s_model_cfg_from_train_config(const t2s_train_config *cfg, t2s_model_cfg *out,
                                           t2s_error *err);
