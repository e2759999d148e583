/* The tiny model whose checkpoints seed fuzz_checkpoint (written by
 * make_seeds.c, read by fuzz_checkpoint.c): a 2x3 weight, a bias of 2 and a
 * running mean of 2, on the CPU. */
#pragma once
#include "core/params.h"

static inline t2s_status t2s_seed_model(t2s_params *p, t2s_error *err) {
  const int64_t w[2] = {2, 3}, b[1] = {2};
  t2s_params_init(p);
  if (t2s_params_add(p, "head.weight", T2S_PARAM_WEIGHT, 2, w, T2S_INIT_NORMAL, 1.0f) == NULL ||
      t2s_params_add(p, "head.bias", T2S_PARAM_BIAS, 1, b, T2S_INIT_ZEROS, 0.0f) == NULL ||
      t2s_params_add(p, "bn.running_mean", T2S_PARAM_BUFFER, 1, b, T2S_INIT_ZEROS, 0.0f) == NULL)
    return t2s_error_set(err, T2S_ERR_NOMEM, "seed model: out of memory");
  return t2s_params_finalize(p, T2S_DEV_CPU, 7, err);
}
