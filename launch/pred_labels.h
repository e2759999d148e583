/* Predictions as label PNGs at the source resolution (t2sda_eval --format): the
 * logits of an image (computed at the shard's resolution) are upsampled bilinearly
 * to the size the image had before the importer resized it (/orig_size), then the
 * argmax class is written as an 8-bit gray PNG named after the image's stem:
 *   trainid     train ids 0..C-1 as they are;
 *   cityscapes  Cityscapes label ids (7 road ... 33 bicycle), what the official
 *               evaluation scripts (cityscapesscripts' evalPixelLevelSemanticLabeling)
 *               and the benchmark server read: DIR/<stem>.png, one per image.
 * Upsampling the logits rather than the argmax is what mmseg's inference does before
 * its argmax (EncoderDecoder.inference, rescale=True), so a full-resolution result
 * equals the one an mmseg/DAFormer test script writes from the same logits. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef enum t2s_label_format {
  T2S_LABELS_NONE = 0,
  T2S_LABELS_TRAINID,
  T2S_LABELS_CITYSCAPES,
} t2s_label_format;

/* "trainid" | "cityscapes"; 0 for anything else. */
int t2s_label_format_parse(const char *name, t2s_label_format *out);
const char *t2s_label_format_name(t2s_label_format f);

/* The argmax class of each pixel of the (C, h, w) logits z upsampled bilinearly to
 * out_h x out_w (PyTorch F.interpolate(mode='bilinear', align_corners=False), in
 * float as t2s_resize_bilinear computes it), without holding the upsampled logits:
 * one output row at a time. Ties go to the lower class, as the evaluator's argmax.
 * pred is out_h x out_w. Returns T2S_ERR_NOMEM (with err) when the row buffers fail. */
t2s_status t2s_pred_upsample_argmax(const float *z, int C, int h, int w, int out_h, int out_w,
                                    uint8_t *pred, t2s_error *err);

/* Maps pred (train ids) in place to what `format` writes; cityscapes needs C == 19. */
t2s_status t2s_pred_to_format(uint8_t *pred, int64_t n, int num_classes, t2s_label_format format,
                              t2s_error *err);

/* Writes DIR/<stem>.png (8-bit gray) under a temporary name, then renames it. */
t2s_status t2s_pred_write_png(const char *dir, const char *stem, const uint8_t *pred, int w, int h,
                              t2s_error *err);
