/* 4-D weights between a network's memory and a file. The CUDA backend keeps a
 * 4-D weight as (O, kh, kw, I) (its tensor layout is NHWC); every file format
 * (t2sda checkpoints, safetensors, .pth) holds PyTorch's (O, I, kh, kw). The
 * checkpoint writer/reader and the pretrained-weight loader share this one
 * permutation so the two paths cannot disagree. */
#pragma once
#include <stdbool.h>

#include "core/params.h"

typedef enum t2s_weight_direction {
  T2S_WEIGHT_TO_FILE,   /* (O, kh, kw, I) -> (O, I, kh, kw) */
  T2S_WEIGHT_TO_DEVICE, /* (O, I, kh, kw) -> (O, kh, kw, I) */
} t2s_weight_direction;

/* True when q is stored as (O, kh, kw, I) and needs t2s_weight_permute on its way
 * to or from a file. */
bool t2s_weight_stored_ohwi(const t2s_param *q);

/* dst = src permuted in direction dir; both hold numel(q) floats on the host and
 * must not overlap. Only for weights where t2s_weight_stored_ohwi(q) holds. */
void t2s_weight_permute(const t2s_param *q, const float *src, float *dst,
                        t2s_weight_direction dir);
