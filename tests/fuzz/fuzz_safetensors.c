/* libFuzzer harness: the safetensors reader (core/formats/safetensors.c) on any
 * bytes. A successful parse must hold tensors whose storage matches their shape,
 * and every floating tensor must convert to float32. */
#include <stdlib.h>
#include <string.h>

#include "core/formats/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  t2s_tensor_set s;
  t2s_tset_init(&s);
  t2s_error err = {0};
  if (t2s_safetensors_parse(data, size, "fuzz.safetensors", &s, &err) != T2S_OK) {
    T2S_FUZZ_EXPECT(err.msg[0] != '\0');
  } else {
    for (int i = 0; i < s.count; i++) {
      const t2s_named_tensor *t = &s.items[i];
      int64_t n = t2s_named_numel(t);
      T2S_FUZZ_EXPECT(n >= 0 && (size_t)n * t2s_fdtype_size(t->dtype) == t->nbytes);
      if (t->dtype == T2S_FD_F32 || t->dtype == T2S_FD_F16 || t->dtype == T2S_FD_BF16 ||
          t->dtype == T2S_FD_F64) {
        float *out = malloc(((size_t)n + 1) * sizeof *out);
        t2s_error e2 = {0};
        if (out) T2S_FUZZ_EXPECT(t2s_tset_to_f32(t, out, &e2) == T2S_OK);
        free(out);
      }
    }
  }
  t2s_tset_free(&s);
  return 0;
}
