/* Reading reference fixtures (HDF5 files written by the PyTorch scripts in tools/). */
#pragma once
#include <stdint.h>

#include "core/engine.h"

/* Path of a file under tests/fixtures (uses T2S_SOURCE_DIR set by ctest); static buffer. */
const char *t2s_fixture_path(const char *name);
/* Reads a float32 dataset fully (malloc'd); *numel and shape (up to 5 dims) when non-NULL.
 * NULL (with a message on stderr) when missing. */
float *t2s_fixture_read_f32(const char *file, const char *dataset, int64_t *numel, int *ndim,
                            int64_t *shape);
uint8_t *t2s_fixture_read_u8(const char *file, const char *dataset, int64_t *numel);
/* Numeric attribute of the root (or of a group when obj is not "/"); NAN when absent. */
double t2s_fixture_attr(const char *file, const char *obj, const char *attr);
/* Integer array attribute (up to max values); returns how many were read (0 when absent). */
int t2s_fixture_attr_ints(const char *file, const char *obj, const char *attr, int *out, int max);
/* Largest |a - b| / max(|b|, floor) over n values. */
double t2s_max_rel_err(const float *a, const float *b, int64_t n, double floor);

/* The batch of a step fixture: /input/image (N, 3, H, W) f32 and /input/label (N, H, W)
 * u8 as host tensors (data malloc'd: free image->data and label->data). 0 when missing. */
int t2s_fixture_batch(const char *file, t2s_tensor *image, t2s_tensor *label);
/* The segmentation loss of the PyTorch reference scripts: logits resized bilinearly
 * (align_corners false) to the label size, CE with ignore 255 averaged over valid pixels. */
t2s_tensor *t2s_fixture_seg_loss(t2s_ctx *ctx, t2s_tensor *logits, t2s_tensor *label);
