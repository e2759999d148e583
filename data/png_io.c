#include "data/png_io.h"

#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* libpng reports errors by calling our handler, which must not return: it
 * records the message and longjmps back to the setjmp in the caller. Everything
 * the caller frees after the jump is declared volatile (C11 7.13.2.1: locals
 * changed between setjmp and longjmp are indeterminate otherwise). */
typedef struct png_msg {
  char text[256];
} png_msg;

static void on_png_error(png_structp png, png_const_charp msg) {
  png_msg *m = png_get_error_ptr(png);
  if (m != NULL) snprintf(m->text, sizeof m->text, "%s", msg ? msg : "unknown libpng error");
  png_longjmp(png, 1);
}

/* Warnings (e.g. "iCCP: known incorrect sRGB profile") do not change the pixels. */
static void on_png_warning(png_structp png, png_const_charp msg) {
  (void)png;
  (void)msg;
}

typedef enum read_mode { READ_INFO, READ_RGB, READ_LABEL } read_mode;

typedef struct png_result {
  int width, height, bit_depth, channels; /* as stored in the file */
  uint8_t *rgb;                           /* READ_RGB */
  uint16_t *ids;                          /* READ_LABEL */
} png_result;

/* Sets the libpng transforms for the requested view (RGB: expand everything to
 * 8-bit RGB; label: keep the stored values, one byte or two per sample). */
static void set_transforms(png_structp png, png_infop info, read_mode mode) {
  int color = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
  if (mode == READ_RGB) {
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16) png_set_scale_16(png);
    if (color & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
    if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
  } else if (depth < 8) {
    /* one byte per value, not rescaled: a 4-bit palette index 5 stays 5 */
    png_set_packing(png);
  }
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
}

/* Copies channel 0 of every pixel out of the decoded rows, widening to 16 bits
 * (16-bit PNG samples are big-endian in the decoded rows). */
static void extract_label(uint8_t *const *rows, int w, int h, int channels, int depth,
                          uint16_t *ids) {
  int bytes = depth == 16 ? 2 : 1;
  for (int y = 0; y < h; y++) {
    const uint8_t *r = rows[y];
    for (int x = 0; x < w; x++) {
      const uint8_t *p = r + (size_t)x * (size_t)(channels * bytes);
      ids[(size_t)y * (size_t)w + (size_t)x] =
          bytes == 2 ? (uint16_t)((p[0] << 8) | p[1]) : (uint16_t)p[0];
    }
  }
}

static t2s_status png_read_any(const char *path, read_mode mode, png_result *res, t2s_error *err) {
  memset(res, 0, sizeof *res);
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return t2s_error_set(err, T2S_ERR_IO, "PNG %s: cannot open: %s", path, strerror(errno));
  uint8_t sig[8];
  size_t got = fread(sig, 1, sizeof sig, f);
  if (got != sizeof sig || png_sig_cmp(sig, 0, sizeof sig) != 0) {
    fclose(f);
    return t2s_error_set(err, T2S_ERR_FORMAT, "PNG %s: not a PNG file (%s); re-export or remove it",
                         path, got < sizeof sig ? "shorter than the PNG signature" : "bad signature");
  }
  png_msg msg = {{0}};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &msg, on_png_error, on_png_warning);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  if (info == NULL) {
    png_destroy_read_struct(&png, NULL, NULL);
    fclose(f);
    return t2s_error_set(err, T2S_ERR_NOMEM, "PNG %s: out of memory creating the libpng reader", path);
  }
  uint8_t *volatile pixels = NULL;
  uint8_t **volatile rows = NULL;
  uint8_t *volatile out = NULL;
  if (setjmp(png_jmpbuf(png))) {
    free(pixels);
    free(rows);
    free(out);
    png_destroy_read_struct(&png, &info, NULL);
    fclose(f);
    return t2s_error_set(err, T2S_ERR_FORMAT, "PNG %s: unreadable (libpng: %s)", path, msg.text);
  }
  png_init_io(png, f);
  png_set_sig_bytes(png, sizeof sig);
  png_read_info(png, info);
  res->width = (int)png_get_image_width(png, info);
  res->height = (int)png_get_image_height(png, info);
  res->bit_depth = png_get_bit_depth(png, info);
  res->channels = png_get_channels(png, info);
  if (mode != READ_INFO) {
    /* The header's size is the file's claim, not its content: a damaged or hostile
     * header must not make us allocate gigabytes before the data runs out. */
    if ((uint64_t)res->width * (uint64_t)res->height > T2S_PNG_MAX_PIXELS)
      png_error(png, "image larger than the 268-megapixel limit (T2S_PNG_MAX_PIXELS); downscale it first");
    set_transforms(png, info, mode);
    size_t w = (size_t)res->width, h = (size_t)res->height;
    size_t rowbytes = png_get_rowbytes(png, info);
    int channels = png_get_channels(png, info), depth = png_get_bit_depth(png, info);
    if (mode == READ_RGB && (channels != 3 || depth != 8 || rowbytes != w * 3))
      png_error(png, "unexpected layout after conversion to 8-bit RGB");
    pixels = malloc(rowbytes * h);
    rows = malloc(h * sizeof *rows);
    out = mode == READ_LABEL ? malloc(w * h * sizeof(uint16_t)) : NULL;
    if (pixels == NULL || rows == NULL || (mode == READ_LABEL && out == NULL))
      png_error(png, "out of memory for the decoded image");
    for (size_t y = 0; y < h; y++) rows[y] = pixels + y * rowbytes;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    if (mode == READ_LABEL) {
      extract_label(rows, res->width, res->height, channels, depth, (uint16_t *)out);
      res->ids = (uint16_t *)out;
      free(pixels);
    } else {
      res->rgb = pixels;
    }
    pixels = NULL;
    out = NULL;
  }
  free(rows);
  png_destroy_read_struct(&png, &info, NULL);
  fclose(f);
  return T2S_OK;
}

t2s_status t2s_png_read_info(const char *path, int *width, int *height, int *bit_depth,
                             int *channels, t2s_error *err) {
  png_result r;
  t2s_status st = png_read_any(path, READ_INFO, &r, err);
  if (st != T2S_OK) return st;
  if (width) *width = r.width;
  if (height) *height = r.height;
  if (bit_depth) *bit_depth = r.bit_depth;
  if (channels) *channels = r.channels;
  return T2S_OK;
}

t2s_status t2s_png_read_rgb(const char *path, uint8_t **rgb, int *width, int *height,
                            t2s_error *err) {
  png_result r;
  t2s_status st = png_read_any(path, READ_RGB, &r, err);
  if (st != T2S_OK) return st;
  *rgb = r.rgb;
  *width = r.width;
  *height = r.height;
  return T2S_OK;
}

t2s_status t2s_png_read_label(const char *path, uint16_t **ids, int *width, int *height,
                              t2s_error *err) {
  png_result r;
  t2s_status st = png_read_any(path, READ_LABEL, &r, err);
  if (st != T2S_OK) return st;
  *ids = r.ids;
  *width = r.width;
  *height = r.height;
  return T2S_OK;
}

static int color_type_of(int channels) {
  switch (channels) {
    case 1: return PNG_COLOR_TYPE_GRAY;
    case 2: return PNG_COLOR_TYPE_GRAY_ALPHA;
    case 3: return PNG_COLOR_TYPE_RGB;
    case 4: return PNG_COLOR_TYPE_RGB_ALPHA;
  }
  return -1;
}

t2s_status t2s_png_write(const char *path, const void *data, int width, int height, int channels,
                         int bit_depth, t2s_error *err) {
  if (width <= 0 || height <= 0 || color_type_of(channels) < 0 || (bit_depth != 8 && bit_depth != 16))
    return t2s_error_set(err, T2S_ERR_INVALID,
                         "PNG %s: cannot write %dx%d with %d channel(s) at %d bits (need a positive "
                         "size, 1-4 channels, 8 or 16 bits)", path, width, height, channels, bit_depth);
  FILE *f = fopen(path, "wb");
  if (f == NULL)
    return t2s_error_set(err, T2S_ERR_IO, "PNG %s: cannot create: %s", path, strerror(errno));
  png_msg msg = {{0}};
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &msg, on_png_error, on_png_warning);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  if (info == NULL) {
    png_destroy_write_struct(&png, NULL);
    fclose(f);
    return t2s_error_set(err, T2S_ERR_NOMEM, "PNG %s: out of memory creating the libpng writer", path);
  }
  size_t samples = (size_t)width * (size_t)channels;
  size_t rowbytes = samples * (size_t)(bit_depth / 8);
  uint8_t *volatile row = NULL;
  if (setjmp(png_jmpbuf(png))) {
    free(row);
    png_destroy_write_struct(&png, &info);
    fclose(f);
    remove(path);
    return t2s_error_set(err, T2S_ERR_IO, "PNG %s: write failed (libpng: %s)", path, msg.text);
  }
  png_init_io(png, f);
  png_set_compression_level(png, 3);
  png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, bit_depth,
               color_type_of(channels), PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  row = malloc(rowbytes);
  if (row == NULL) png_error(png, "out of memory for a row");
  for (int y = 0; y < height; y++) {
    if (bit_depth == 8) {
      memcpy(row, (const uint8_t *)data + (size_t)y * rowbytes, rowbytes);
    } else {
      /* PNG stores 16-bit samples big-endian */
      const uint16_t *src = (const uint16_t *)data + (size_t)y * samples;
      for (size_t i = 0; i < samples; i++) {
        row[2 * i] = (uint8_t)(src[i] >> 8);
        row[2 * i + 1] = (uint8_t)(src[i] & 0xff);
      }
    }
    png_write_row(png, row);
  }
  png_write_end(png, NULL);
  free(row);
  png_destroy_write_struct(&png, &info);
  if (fclose(f) != 0)
    return t2s_error_set(err, T2S_ERR_IO, "PNG %s: closing failed: %s", path, strerror(errno));
  return T2S_OK;
}

t2s_status t2s_png_write_rgb(const char *path, const uint8_t *rgb, int width, int height,
                             t2s_error *err) {
  return t2s_png_write(path, rgb, width, height, 3, 8, err);
}

t2s_status t2s_png_write_gray(const char *path, const uint8_t *gray, int width, int height,
                              t2s_error *err) {
  return t2s_png_write(path, gray, width, height, 1, 8, err);
}
