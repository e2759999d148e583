/* libFuzzer harness: label mapping table files (data/importers.c,
 * t2s_label_mapping_load) on any bytes, via a temporary file. A table that
 * loads maps every id to a train id below num_classes, 255, or "unmapped". */
#include "data/importers.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = t2s_fuzz_to_file(data, size, ".txt");
  if (path == NULL) return 0;
  t2s_label_mapping m = {0};
  t2s_error err = {0};
  if (t2s_label_mapping_load(&m, path, &err) != T2S_OK) {
    T2S_FUZZ_EXPECT(err.msg[0] != '\0');
  } else {
    T2S_FUZZ_EXPECT(m.num_classes >= 1 && m.num_classes <= T2S_MAX_CLASSES);
    for (int v = 0; v < 65536; v++) {
      uint16_t t = m.lut[v];
      T2S_FUZZ_EXPECT(t == T2S_LABEL_UNMAPPED || t == 255 || t < m.num_classes);
    }
    t2s_label_mapping_free(&m);
  }
  unlink(path);
  return 0;
}
