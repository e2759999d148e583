/* libFuzzer harness: the HDF5 shard reader (data/shard.c) on any bytes, via a
 * temporary file (libhdf5 reads paths). An opened shard is read at its first
 * and last image, with name, original size and class counts, as the loader and
 * t2sda_eval --format do. */
#include <stdlib.h>
#include <string.h>

#include "data/shard.h"
#include "tests/fuzz/fuzz_util.h"

static void read_image(t2s_shard *s, const t2s_shard_meta *m, int64_t i) {
  size_t px = (size_t)m->height * (size_t)m->width;
  uint8_t *rgb = malloc(px * 3 + 1), *label = m->has_label ? malloc(px + 1) : NULL;
  t2s_error err = {0};
  if (rgb && (label || !m->has_label) && t2s_shard_read(s, i, rgb, label, &err) != T2S_OK)
    T2S_FUZZ_EXPECT(err.msg[0] != '\0');
  char name[256];
  t2s_error e2 = {0};
  if (t2s_shard_read_name(s, i, name, sizeof name, &e2) != T2S_OK) T2S_FUZZ_EXPECT(e2.msg[0] != '\0');
  else T2S_FUZZ_EXPECT(memchr(name, '\0', sizeof name) != NULL);
  /* an accepted /orig_size is a size an image can have (eval allocates it) */
  int oh = 0, ow = 0;
  t2s_shard_orig_size(s, i, &oh, &ow);
  T2S_FUZZ_EXPECT(oh > 0 && ow > 0 && (int64_t)oh * ow <= ((int64_t)1 << 28));
  free(rgb);
  free(label);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = t2s_fuzz_to_file(data, size, ".h5");
  if (path == NULL) return 0;
  t2s_error err = {0};
  t2s_shard *s = t2s_shard_open(path, &err);
  if (s == NULL) {
    T2S_FUZZ_EXPECT(err.msg[0] != '\0');
  } else {
    const t2s_shard_meta *m = t2s_shard_info(s);
    T2S_FUZZ_EXPECT(m->count >= 0 && m->height > 0 && m->width > 0);
    T2S_FUZZ_EXPECT(m->num_classes > 0 && m->num_classes <= T2S_MAX_CLASSES);
    /* images the reader accepted are bounded by what a fuzz input can hold */
    if (m->count > 0 && (int64_t)m->height * m->width <= (1 << 22)) {
      read_image(s, m, 0);
      read_image(s, m, m->count - 1);
    }
    const int64_t *cp = t2s_shard_class_pixels(s);
    if (cp && m->count > 0) T2S_FUZZ_EXPECT(cp[(m->count - 1) * m->num_classes] >= 0);
    t2s_shard_close(s);
  }
  unlink(path);
  return 0;
}
