/* libFuzzer harness: the PyTorch .pth reader (core/formats/torch_pickle.c).
 * An input that starts like a zip archive ("PK") is read as a whole .pth file
 * image (zip directory + pickle + storages); any other input is taken as the
 * pickle program alone and wrapped into a .pth with two small storages by
 * t2s_pth_write_raw, so the mutations reach the pickle interpreter instead of
 * dying in the zip checks. */
#include <string.h>

#include "core/formats/torch_pickle.h"
#include "tests/fuzz/fuzz_util.h"

static t2s_status read_pickle(const uint8_t *data, size_t size, t2s_tensor_set *out,
                              t2s_error *err) {
  t2s_tensor_set storages;
  t2s_tset_init(&storages);
  const float w[6] = {1, 2, 3, 4, 5, 6};
  const int64_t shape6[1] = {6}, shape2[1] = {2};
  t2s_status st = T2S_OK;
  if (t2s_tset_add(&storages, "0", T2S_FD_F32, 1, shape6, w, err) == NULL ||
      t2s_tset_add(&storages, "1", T2S_FD_F32, 1, shape2, w, err) == NULL)
    st = err->status;
  const char *path = st == T2S_OK ? t2s_fuzz_to_file(NULL, 0, ".pth") : NULL;
  if (path) st = t2s_pth_write_raw(path, data, size, &storages, err);
  if (path && st == T2S_OK) st = t2s_pth_read(path, out, err);
  if (path) unlink(path);
  t2s_tset_free(&storages);
  return path ? st : T2S_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  t2s_tensor_set s;
  t2s_tset_init(&s);
  t2s_error err = {0};
  t2s_status st;
  if (size >= 2 && data[0] == 'P' && data[1] == 'K')
    st = t2s_pth_parse(data, size, "fuzz.pth", &s, &err);
  else
    st = read_pickle(data, size, &s, &err);
  if (st != T2S_OK) T2S_FUZZ_EXPECT(err.msg[0] != '\0');
  for (int i = 0; st == T2S_OK && i < s.count; i++) {
    int64_t n = t2s_named_numel(&s.items[i]);
    T2S_FUZZ_EXPECT(n >= 0 && (size_t)n * t2s_fdtype_size(s.items[i].dtype) == s.items[i].nbytes);
  }
  t2s_tset_free(&s);
  return 0;
}
