#include "core/formats/weight_layout.h"

#include <stdint.h>

bool t2s_weight_stored_ohwi(const t2s_param *q) {
  return q->t.ndim == 4 && q->t.layout == T2S_LAYOUT_NHWC;
}

void t2s_weight_permute(const t2s_param *q, const float *src, float *dst,
                        t2s_weight_direction dir) {
  const int64_t O = q->t.shape[0], I = q->t.shape[1], H = q->t.shape[2], W = q->t.shape[3];
  for (int64_t o = 0; o < O; o++)
    for (int64_t i = 0; i < I; i++)
      for (int64_t y = 0; y < H; y++)
        for (int64_t x = 0; x < W; x++) {
          int64_t oihw = ((o * I + i) * H + y) * W + x, ohwi = ((o * H + y) * W + x) * I + i;
          if (dir == T2S_WEIGHT_TO_FILE) dst[oihw] = src[ohwi];
          else dst[ohwi] = src[oihw];
        }
}
