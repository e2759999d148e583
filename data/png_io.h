/* PNG files in and out (libpng): dataset images, label maps, prediction pictures.
 *
 * Images are always returned as 8-bit RGB (palette, gray, alpha and 16-bit
 * inputs are converted). Label maps keep the stored values: a palette PNG gives
 * its indices (GTA5 labels are palette images whose index is the label id), a
 * 16-bit PNG gives 16-bit values, and a multi-channel label PNG gives its first
 * channel (SYNTHIA stores the class id in channel 0 of a 16-bit RGB(A) PNG).
 * Every error names the file and carries libpng's own message. Thread-safe:
 * no state outside the call. Buffers are malloc'd; the caller frees them. */
#pragma once
#include <stdint.h>

#include "core/status.h"

/* Pixel images are refused above this (16384 x 16384): decoding allocates what the
 * header claims, so a damaged header must not ask for gigabytes. */
#define T2S_PNG_MAX_PIXELS ((uint64_t)1 << 28)

/* Reads only the header: size, bit depth and channels as stored. */
t2s_status t2s_png_read_info(const char *path, int *width, int *height, int *bit_depth,
                             int *channels, t2s_error *err);
/* H x W x 3 RGB, 8 bits per sample (16-bit samples are scaled: v * 255 / 65535). */
t2s_status t2s_png_read_rgb(const char *path, uint8_t **rgb, int *width, int *height,
                            t2s_error *err);
/* H x W label values (channel 0, palette index, or gray value), widened to 16 bits. */
t2s_status t2s_png_read_label(const char *path, uint16_t **ids, int *width, int *height,
                              t2s_error *err);
/* channels 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA); bit_depth 8 (data is
 * uint8_t) or 16 (data is uint16_t in host order). Written to path directly. */
t2s_status t2s_png_write(const char *path, const void *data, int width, int height, int channels,
                         int bit_depth, t2s_error *err);
t2s_status t2s_png_write_rgb(const char *path, const uint8_t *rgb, int width, int height,
                             t2s_error *err);
t2s_status t2s_png_write_gray(const char *path, const uint8_t *gray, int width, int height,
                              t2s_error *err);
