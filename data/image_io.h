/* Dataset images in, whatever their format: PNG (data/png_io.h) or JPEG (libjpeg-turbo).
 *
 * The format is told by the file's first bytes, not its name (a .jpg that is really a
 * PNG is read as a PNG); a file with neither signature is refused, the message naming
 * the format its extension promises. JPEG: YCbCr and RGB files are decoded to RGB,
 * grayscale files are expanded to R = G = B; CMYK/YCCK and other colour spaces are
 * refused with a message that says how to convert them. A truncated or corrupt JPEG
 * (libjpeg's warnings, which it would otherwise paper over with grey) is an error, as
 * a truncated PNG is. Every error names the file. Thread-safe; buffers are malloc'd. */
#pragma once
#include <stdint.h>

#include "core/status.h"

/* Larger images are refused before any allocation (a hostile header cannot make the
 * importer allocate gigabytes): 2^28 pixels, e.g. 16384 x 16384. */
#define T2S_IMAGE_MAX_PIXELS ((int64_t)1 << 28)

/* H x W x 3 RGB, 8 bits per sample. */
t2s_status t2s_jpeg_read_rgb(const char *path, uint8_t **rgb, int *width, int *height,
                             t2s_error *err);
/* Reads only the header. */
t2s_status t2s_jpeg_read_info(const char *path, int *width, int *height, t2s_error *err);

/* PNG or JPEG by signature: H x W x 3 RGB, 8 bits per sample. */
t2s_status t2s_image_read_rgb(const char *path, uint8_t **rgb, int *width, int *height,
                              t2s_error *err);
t2s_status t2s_image_read_info(const char *path, int *width, int *height, t2s_error *err);
