#include "data/image_io.h"

#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
/* jpeglib.h needs size_t and FILE declared first */
#include <jpeglib.h>

#include "data/png_io.h"

/* libjpeg reports fatal errors through error_exit, which must not return: we keep
 * the message and longjmp back. Warnings (emit_message with level -1) are made fatal
 * too: libjpeg warns about a truncated file or corrupt data and then returns grey
 * rows, which would go into a shard silently. */
typedef struct jpeg_guard {
  struct jpeg_error_mgr mgr;
  jmp_buf jump;
  char text[JMSG_LENGTH_MAX];
} jpeg_guard;

static void on_jpeg_error(j_common_ptr cinfo) {
  jpeg_guard *g = (jpeg_guard *)cinfo->err;
  (*cinfo->err->format_message)(cinfo, g->text);
  longjmp(g->jump, 1);
}

static void on_jpeg_message(j_common_ptr cinfo, int level) {
  if (level < 0) on_jpeg_error(cinfo); /* a warning: corrupt or truncated data */
}

static int has_jpeg_signature(const uint8_t *b, size_t n) {
  return n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF;
}

static int has_png_signature(const uint8_t *b, size_t n) {
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  return n >= 8 && memcmp(b, sig, 8) == 0;
}

static const char *colour_space_name(J_COLOR_SPACE cs) {
  switch (cs) {
    case JCS_CMYK: return "CMYK";
    case JCS_YCCK: return "YCCK";
    case JCS_UNKNOWN: return "an unknown colour space";
    default: return "an unsupported colour space";
  }
}

/* Decodes path (info_only: the header only). Fills *rgb only on success. */
static t2s_status jpeg_read(const char *path, int info_only, uint8_t **rgb, int *width,
                            int *height, t2s_error *err) {
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return t2s_error_set(err, T2S_ERR_IO, "JPEG %s: cannot open: %s", path, strerror(errno));
  uint8_t head[3];
  size_t got = fread(head, 1, sizeof head, f);
  if (!has_jpeg_signature(head, got)) {
    fclose(f);
    return t2s_error_set(err, T2S_ERR_FORMAT, "JPEG %s: not a JPEG file (%s); re-export or "
                         "remove it", path, got < sizeof head ? "shorter than a JPEG header"
                                                                  : "no JPEG start marker");
  }
  rewind(f);
  struct jpeg_decompress_struct cinfo;
  jpeg_guard guard;
  memset(&guard, 0, sizeof guard);
  cinfo.err = jpeg_std_error(&guard.mgr);
  guard.mgr.error_exit = on_jpeg_error;
  guard.mgr.emit_message = on_jpeg_message;
  uint8_t *volatile pixels = NULL;
  if (setjmp(guard.jump)) {
    free(pixels);
    jpeg_destroy_decompress(&cinfo);
    fclose(f);
    return t2s_error_set(err, T2S_ERR_FORMAT, "JPEG %s: unreadable (libjpeg: %s); re-export or "
                         "remove it", path, guard.text);
  }
  jpeg_create_decompress(&cinfo);
  jpeg_stdio_src(&cinfo, f);
  jpeg_read_header(&cinfo, TRUE);
  int w = (int)cinfo.image_width, h = (int)cinfo.image_height;
  t2s_status st = T2S_OK;
  if (cinfo.jpeg_color_space != JCS_YCbCr && cinfo.jpeg_color_space != JCS_RGB &&
      cinfo.jpeg_color_space != JCS_GRAYSCALE) {
    st = t2s_error_set(err, T2S_ERR_FORMAT, "JPEG %s: stored in %s (%d components), which is not "
                       "imported; convert it to RGB first (e.g. `convert IN -colorspace sRGB OUT`)",
                       path, colour_space_name(cinfo.jpeg_color_space), cinfo.num_components);
  } else if ((int64_t)w * h > T2S_IMAGE_MAX_PIXELS) {
    st = t2s_error_set(err, T2S_ERR_FORMAT, "JPEG %s: %dx%d is more than the %lld pixels an "
                       "image may have; downscale it first", path, w, h,
                       (long long)T2S_IMAGE_MAX_PIXELS);
  }
  if (st == T2S_OK && !info_only) {
    cinfo.out_color_space = JCS_RGB; /* libjpeg-turbo expands grayscale to RGB too */
    jpeg_start_decompress(&cinfo);
    if (cinfo.output_components != 3 || (int)cinfo.output_width != w)
      st = t2s_error_set(err, T2S_ERR_FORMAT, "JPEG %s: decoder gave %d components, not RGB",
                         path, cinfo.output_components);
    else if ((pixels = malloc((size_t)w * (size_t)h * 3)) == NULL)
      st = t2s_error_set(err, T2S_ERR_NOMEM, "JPEG %s: out of memory for %dx%d pixels", path, w, h);
    while (st == T2S_OK && cinfo.output_scanline < cinfo.output_height) {
      JSAMPROW row = pixels + (size_t)cinfo.output_scanline * (size_t)w * 3;
      jpeg_read_scanlines(&cinfo, &row, 1);
    }
    if (st == T2S_OK) jpeg_finish_decompress(&cinfo);
  }
  jpeg_destroy_decompress(&cinfo);
  fclose(f);
  if (st != T2S_OK) {
    free(pixels);
    return st;
  }
  if (rgb) *rgb = pixels;
  *width = w;
  *height = h;
  return T2S_OK;
}

t2s_status t2s_jpeg_read_rgb(const char *path, uint8_t **rgb, int *width, int *height,
                             t2s_error *err) {
  return jpeg_read(path, 0, rgb, width, height, err);
}

t2s_status t2s_jpeg_read_info(const char *path, int *width, int *height, t2s_error *err) {
  return jpeg_read(path, 1, NULL, width, height, err);
}

static int named_jpeg(const char *path) {
  size_t n = strlen(path);
  return (n >= 4 && strcasecmp(path + n - 4, ".jpg") == 0) ||
         (n >= 5 && strcasecmp(path + n - 5, ".jpeg") == 0);
}

/* 1: JPEG, 0: PNG (or unknown and not named .jpg: the PNG reader explains). */
static int is_jpeg(const char *path) {
  uint8_t head[8];
  size_t got = 0;
  FILE *f = fopen(path, "rb");
  if (f != NULL) {
    got = fread(head, 1, sizeof head, f);
    fclose(f);
  }
  if (has_jpeg_signature(head, got)) return 1;
  if (has_png_signature(head, got)) return 0;
  return named_jpeg(path);
}

t2s_status t2s_image_read_rgb(const char *path, uint8_t **rgb, int *width, int *height,
                              t2s_error *err) {
  if (is_jpeg(path)) return t2s_jpeg_read_rgb(path, rgb, width, height, err);
  return t2s_png_read_rgb(path, rgb, width, height, err);
}

t2s_status t2s_image_read_info(const char *path, int *width, int *height, t2s_error *err) {
  if (is_jpeg(path)) return t2s_jpeg_read_info(path, width, height, err);
  return t2s_png_read_info(path, width, height, NULL, NULL, err);
}
