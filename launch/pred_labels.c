#include "launch/pred_labels.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/importers.h"
#include "data/png_io.h"

int t2s_label_format_parse(const char *name, t2s_label_format *out) {
  if (name != NULL && strcmp(name, "trainid") == 0) *out = T2S_LABELS_TRAINID;
  else if (name != NULL && strcmp(name, "cityscapes") == 0) *out = T2S_LABELS_CITYSCAPES;
  else return 0;
  return 1;
}

const char *t2s_label_format_name(t2s_label_format f) {
  return f == T2S_LABELS_TRAINID ? "trainid" : f == T2S_LABELS_CITYSCAPES ? "cityscapes" : "none";
}

/* One axis of PyTorch's bilinear (align_corners=False) in float, as core/ops/resize.c:
 * src = max(scale * (d + 0.5) - 0.5, 0) with the product in double, rounded once. */
typedef struct lerp {
  int i0, i1;
  float l0, l1;
} lerp;

static void lerp_fill(lerp *ax, int in, int out) {
  float scale = (float)in / (float)out;
  for (int d = 0; d < out; d++) {
    float src = (float)((double)scale * (d + 0.5) - 0.5);
    if (src < 0.0f) src = 0.0f;
    int i0 = (int)src;
    if (i0 > in - 1) i0 = in - 1;
    ax[d].i0 = i0;
    ax[d].i1 = i0 < in - 1 ? i0 + 1 : i0;
    ax[d].l1 = src - (float)i0;
    ax[d].l0 = 1.0f - ax[d].l1;
  }
}

t2s_status t2s_pred_upsample_argmax(const float *z, int C, int h, int w, int out_h, int out_w,
                                    uint8_t *pred, t2s_error *err) {
  lerp *ah = malloc((size_t)out_h * sizeof *ah), *aw = malloc((size_t)out_w * sizeof *aw);
  float *best = malloc((size_t)out_w * sizeof *best);
  if (ah == NULL || aw == NULL || best == NULL) {
    free(ah), free(aw), free(best);
    return t2s_error_set(err, T2S_ERR_NOMEM, "out of memory upsampling a prediction to %dx%d",
                         out_w, out_h);
  }
  lerp_fill(ah, h, out_h);
  lerp_fill(aw, w, out_w);
  int64_t plane = (int64_t)h * w;
  for (int oy = 0; oy < out_h; oy++) {
    uint8_t *row = pred + (int64_t)oy * out_w;
    for (int c = 0; c < C; c++) {
      const float *r0 = z + c * plane + (int64_t)ah[oy].i0 * w, *r1 = z + c * plane + (int64_t)ah[oy].i1 * w;
      float l0h = ah[oy].l0, l1h = ah[oy].l1;
      for (int ox = 0; ox < out_w; ox++) {
        const lerp *a = &aw[ox];
        float v = l0h * (a->l0 * r0[a->i0] + a->l1 * r0[a->i1]) +
                  l1h * (a->l0 * r1[a->i0] + a->l1 * r1[a->i1]);
        if (c == 0 || v > best[ox]) best[ox] = v, row[ox] = (uint8_t)c;
      }
    }
  }
  free(ah), free(aw), free(best);
  return T2S_OK;
}

t2s_status t2s_pred_to_format(uint8_t *pred, int64_t n, int num_classes, t2s_label_format format,
                              t2s_error *err) {
  if (format != T2S_LABELS_CITYSCAPES) return T2S_OK;
  if (num_classes != T2S_CITYSCAPES_CLASSES)
    return t2s_error_set(err, T2S_ERR_INVALID, "--format cityscapes maps the 19 Cityscapes train "
                         "ids to label ids, but the model has %d classes; use --format trainid",
                         num_classes);
  for (int64_t i = 0; i < n; i++) pred[i] = t2s_cityscapes_label_ids[pred[i]];
  return T2S_OK;
}

t2s_status t2s_pred_write_png(const char *dir, const char *stem, const uint8_t *pred, int w, int h,
                              t2s_error *err) {
  char path[4400], tmp[4500];
  snprintf(path, sizeof path, "%s/%s.png", dir, stem);
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  t2s_status st = t2s_png_write_gray(tmp, pred, w, h, err);
  if (st == T2S_OK && rename(tmp, path) != 0)
    st = t2s_error_set(err, T2S_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
  if (st != T2S_OK) remove(tmp);
  return st;
}
