/* libFuzzer harness: the PNG importer (data/png_io.c) on any bytes, via a
 * temporary file: header, RGB and label decoding as t2sda_shards does. */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "data/png_io.h"
#include "tests/fuzz/fuzz_util.h"

/* libpng rejects a chunk whose CRC does not match, which stops nearly every
 * mutation at the first changed chunk. The harness rewrites each chunk's CRC
 * over its mutated bytes, so the mutations reach the decoder and the
 * conversions of png_io.c. */
static void fix_crcs(uint8_t *d, size_t n) {
  size_t i = 8;
  while (i + 12 <= n) {
    uint32_t len = (uint32_t)d[i] << 24 | (uint32_t)d[i + 1] << 16 | (uint32_t)d[i + 2] << 8 | d[i + 3];
    if (len > n - i - 12) break;
    uLong crc = crc32(0L, d + i + 4, (uInt)len + 4);
    for (int k = 0; k < 4; k++) d[i + 8 + len + (size_t)k] = (uint8_t)(crc >> (24 - 8 * k));
    i += 12 + (size_t)len;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t *copy = malloc(size + 1);
  if (copy == NULL) return 0;
  if (size) memcpy(copy, data, size);
  fix_crcs(copy, size);
  const char *path = t2s_fuzz_to_file(copy, size, ".png");
  free(copy);
  if (path == NULL) return 0;
  int w = 0, h = 0, depth = 0, ch = 0;
  t2s_error err = {0};
  if (t2s_png_read_info(path, &w, &h, &depth, &ch, &err) != T2S_OK) {
    T2S_FUZZ_EXPECT(err.msg[0] != '\0');
  } else {
    uint8_t *rgb = NULL;
    uint16_t *ids = NULL;
    int w2 = 0, h2 = 0;
    t2s_error e1 = {0}, e2 = {0};
    if (t2s_png_read_rgb(path, &rgb, &w2, &h2, &e1) == T2S_OK) {
      T2S_FUZZ_EXPECT(w2 == w && h2 == h && rgb != NULL);
      volatile uint8_t last = rgb[(size_t)w * h * 3 - 1]; /* ASan checks the extent */
      (void)last;
    } else {
      T2S_FUZZ_EXPECT(e1.msg[0] != '\0');
    }
    if (t2s_png_read_label(path, &ids, &w2, &h2, &e2) == T2S_OK) {
      T2S_FUZZ_EXPECT(w2 == w && h2 == h && ids != NULL);
      volatile uint16_t last = ids[(size_t)w * h - 1];
      (void)last;
    } else {
      T2S_FUZZ_EXPECT(e2.msg[0] != '\0');
    }
    free(rgb);
    free(ids);
  }
  unlink(path);
  return 0;
}
