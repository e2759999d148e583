// ctest-labels: unit
/* PNG headers are claims: a file whose header promises 131072 x 196608 pixels
 * (found by fuzz_png; tests/fuzz/corpus/png/regress_huge_header.png, valid CRCs,
 * 73 bytes) must be refused with a message naming the file and the limit, before
 * anything of that size is allocated, by both decoders; its header still reads. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/png_io.h"
#include "tests/harness.h"

int main(void) {
  const char *src = getenv("T2S_SOURCE_DIR");
  char path[1024];
  snprintf(path, sizeof path, "%s/tests/fuzz/corpus/png/regress_huge_header.png", src ? src : ".");
  int w = 0, h = 0, depth = 0, ch = 0;
  t2s_error err = {0};
  CHECK_MSG(t2s_png_read_info(path, &w, &h, &depth, &ch, &err) == T2S_OK, "%s", err.msg);
  CHECK_MSG(w == 131072 && h == 196608, "header says %dx%d", w, h);
  CHECK((uint64_t)w * (uint64_t)h > T2S_PNG_MAX_PIXELS);
  uint8_t *rgb = NULL;
  uint16_t *ids = NULL;
  t2s_error e1 = {0}, e2 = {0};
  CHECK(t2s_png_read_rgb(path, &rgb, &w, &h, &e1) == T2S_ERR_FORMAT && rgb == NULL);
  CHECK_MSG(strstr(e1.msg, path) && strstr(e1.msg, "megapixel limit") && strstr(e1.msg, "downscale"), "%s", e1.msg);
  CHECK(t2s_png_read_label(path, &ids, &w, &h, &e2) == T2S_ERR_FORMAT && ids == NULL);
  CHECK_MSG(strstr(e2.msg, path) && strstr(e2.msg, "megapixel limit"), "%s", e2.msg);
  return t2s_test_finish("test_png_limits");
}
