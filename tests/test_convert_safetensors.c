// ctest-labels: unit
/* safetensors reader/writer: dtypes against values by formula (fixture written
 * by tools/make_convert_fixtures.py from the format's specification), a
 * byte-identical rewrite of a PyTorch-side file, and malformed headers (each a
 * clear T2S_ERR_FORMAT, never a crash: also run under -DT2S_ASAN=ON). */
#include <stdlib.h>
#include <string.h>

#include "core/formats/safetensors.h"
#include "tests/fixture.h"
#include "tests/harness.h"

static void check_dtypes(void) {
  t2s_tensor_set s;
  t2s_tset_init(&s);
  t2s_error err = {0};
  CHECK_MSG(t2s_safetensors_read(t2s_fixture_path("convert_dtypes.safetensors"), &s, &err) == T2S_OK,
            "%s", err.msg);
  const char *names[] = {"f32", "f16", "bf16", "f64"};
  const t2s_fdtype types[] = {T2S_FD_F32, T2S_FD_F16, T2S_FD_BF16, T2S_FD_F64};
  for (int k = 0; k < 4; k++) {
    t2s_named_tensor *t = t2s_tset_find(&s, names[k]);
    CHECK_MSG(t && t->dtype == types[k] && t->ndim == 2 && t->shape[0] == 3 && t->shape[1] == 4,
              "%s: wrong entry", names[k]);
    if (!t) continue;
    float v[12];
    CHECK(t2s_tset_to_f32(t, v, &err) == T2S_OK);
    for (int i = 0; i < 12; i++) CHECK_MSG(v[i] == i * 0.25f - 1.0f, "%s[%d] = %g", names[k], i, v[i]);
  }
  t2s_named_tensor *i64 = t2s_tset_find(&s, "i64");
  CHECK(i64 && i64->dtype == T2S_FD_I64 && i64->nbytes == 48);
  for (int i = 0; i < 6 && i64; i++) {
    int64_t x;
    memcpy(&x, (char *)i64->data + 8 * i, 8);
    CHECK(x == (int64_t)i * 1000000007);
  }
  t2s_error e2 = {0};
  CHECK(i64 && t2s_tset_to_f32(i64, (float[6]){0}, &e2) == T2S_ERR_FORMAT);
  const char *purpose = t2s_tset_get_meta(&s, "purpose");
  CHECK(purpose && strcmp(purpose, "dtype coverage") == 0);
  t2s_tset_free(&s);
}

/* Rewriting the PyTorch-side file gives the same bytes: same header layout,
 * same order, same padding. */
static void check_rewrite_identical(void) {
  const char *src = t2s_fixture_path("convert_resnet18.safetensors");
  char path[512];
  snprintf(path, sizeof path, "%s", src);
  t2s_tensor_set s;
  t2s_tset_init(&s);
  t2s_error err = {0};
  CHECK_MSG(t2s_safetensors_read(path, &s, &err) == T2S_OK, "%s", err.msg);
  CHECK(s.count > 100);
  const char *out = "test_convert_safetensors.out.safetensors";
  CHECK_MSG(t2s_safetensors_write(out, &s, &err) == T2S_OK, "%s", err.msg);
  uint8_t *a, *b;
  size_t na, nb;
  CHECK(t2s_read_file(path, &a, &na, &err) == T2S_OK);
  CHECK(t2s_read_file(out, &b, &nb, &err) == T2S_OK);
  CHECK_MSG(na == nb && memcmp(a, b, na) == 0, "rewrite differs: %zu vs %zu bytes", na, nb);
  uint64_t hlen;
  memcpy(&hlen, b, 8);
  CHECK((8 + hlen) % 8 == 0);
  free(a);
  free(b);
  remove(out);
  t2s_tset_free(&s);
}

static void check_roundtrip_names(void) {
  t2s_tensor_set s, r;
  t2s_tset_init(&s);
  t2s_tset_init(&r);
  t2s_error err = {0};
  const char *odd = "we\"ird\\name/\xc3\xa9\x01";
  int64_t shape[3] = {2, 1, 3};
  float f[6] = {1, -2, 3.5f, 0, 1e-30f, 7};
  CHECK(t2s_tset_add(&s, odd, T2S_FD_F32, 3, shape, f, &err));
  CHECK(t2s_tset_add(&s, "empty", T2S_FD_F32, 1, (int64_t[]){0}, NULL, &err));
  CHECK(t2s_tset_add(&s, "scalar", T2S_FD_I64, 0, NULL, (int64_t[]){-5}, &err));
  CHECK(t2s_tset_set_meta(&s, "k\"ey", "v\nalue", &err) == T2S_OK);
  const char *out = "test_convert_safetensors.rt.safetensors";
  CHECK(t2s_safetensors_write(out, &s, &err) == T2S_OK);
  CHECK_MSG(t2s_safetensors_read(out, &r, &err) == T2S_OK, "%s", err.msg);
  CHECK(r.count == 3);
  for (int i = 0; i < s.count && i < r.count; i++) {
    CHECK(strcmp(s.items[i].name, r.items[i].name) == 0);
    CHECK(s.items[i].dtype == r.items[i].dtype && s.items[i].ndim == r.items[i].ndim);
    CHECK(s.items[i].nbytes == r.items[i].nbytes &&
          memcmp(s.items[i].data, r.items[i].data, s.items[i].nbytes) == 0);
  }
  const char *v = t2s_tset_get_meta(&r, "k\"ey");
  CHECK(v && strcmp(v, "v\nalue") == 0);
  remove(out);
  t2s_tset_free(&s);
  t2s_tset_free(&r);
}

/* A file image from a header text and n data bytes. */
static uint8_t *image(const char *header, size_t data_len, size_t *len) {
  size_t h = strlen(header);
  *len = 8 + h + data_len;
  uint8_t *b = calloc(*len, 1);
  for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)h >> (8 * i));
  memcpy(b + 8, header, h);
  return b;
}

static void expect_error(const char *label, const uint8_t *buf, size_t len, const char *needle) {
  t2s_tensor_set s;
  t2s_tset_init(&s);
  t2s_error err = {0};
  t2s_status st = t2s_safetensors_parse(buf, len, label, &s, &err);
  CHECK_MSG(st == T2S_ERR_FORMAT && strstr(err.msg, needle) && s.count == 0,
            "%s: status %d, message '%s' (want '%s')", label, st, err.msg, needle);
  t2s_tset_free(&s);
}

static void check_malformed(void) {
  static const struct { const char *label, *header; size_t data; const char *needle; } cases[] = {
      {"overlap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlap"},
      {"hole", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "belong to no tensor"},
      {"trailing data", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, "after the last"},
      {"data past end", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "truncated"},
      {"size mismatch", "{\"a\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16, "needs"},
      {"end before begin", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8, "end before begin"},
      {"unknown dtype", "{\"a\":{\"dtype\":\"F8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "unknown dtype"},
      {"missing field", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "lacks 'data_offsets'"},
      {"duplicate", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                    "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2, "twice"},
      {"negative", "{\"a\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,1]}}", 1, "non-negative"},
      {"fraction", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1.5],\"data_offsets\":[0,1]}}", 1, "fraction"},
      {"overflow", "{\"a\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8, "needs"},
      {"unterminated", "{\"a\":{\"dtype\":\"U8", 0, "unterminated"},
      {"no colon", "{\"a\" {}}", 0, "expected ':'"},
      {"garbage after", "{}x", 0, "after the header"},
      {"not an object", "[1, 2]", 0, "does not start with '{'"},
      {"bad escape", "{\"a\\q\":{}}", 0, "escape"},
      {"metadata not strings", "{\"__metadata__\":{\"k\":1}}", 0, "expected a string"},
      {"too many dims", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1, "more than 8"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    size_t len;
    uint8_t *b = image(cases[i].header, cases[i].data, &len);
    expect_error(cases[i].label, b, len, cases[i].needle);
    free(b);
  }
  /* Header length fields that lie. */
  uint8_t short_file[5] = {1, 0, 0, 0, 0};
  expect_error("truncated header length", short_file, sizeof short_file, "too short");
  size_t len;
  uint8_t *b = image("{}", 0, &len);
  b[0] = 200;  /* claims 200 header bytes, the file has 2 */
  expect_error("header past the end", b, len, "runs past the end");
  b[0] = 0, b[3] = 0x10;  /* 256 MiB > limit */
  expect_error("huge header", b, len, "exceeds");
  free(b);
  b = image("{}", 0, &len);
  t2s_tensor_set s;
  t2s_tset_init(&s);
  t2s_error err = {0};
  CHECK_MSG(t2s_safetensors_parse(b, len, "empty", &s, &err) == T2S_OK && s.count == 0, "%s", err.msg);
  free(b);
  t2s_error e3 = {0};
  CHECK(t2s_safetensors_read("/nonexistent/x.safetensors", &s, &e3) == T2S_ERR_IO && strstr(e3.msg, "cannot open"));
  t2s_tset_free(&s);
}

/* Every truncation and many byte flips of a real file: errors, never crashes. */
static void check_damage(void) {
  uint8_t *buf;
  size_t len;
  t2s_error err = {0};
  if (t2s_read_file(t2s_fixture_path("convert_dtypes.safetensors"), &buf, &len, &err)) {
    CHECK_MSG(0, "%s", err.msg);
    return;
  }
  int refused = 0;
  for (size_t cut = 0; cut < len; cut++) {
    t2s_tensor_set s;
    t2s_tset_init(&s);
    t2s_error e = {0};
    refused += t2s_safetensors_parse(buf, cut, "cut", &s, &e) == T2S_ERR_FORMAT;
    t2s_tset_free(&s);
  }
  CHECK_MSG(refused == (int)len, "%d of %zu truncations refused", refused, len);
  uint64_t state = 12345;
  uint8_t *copy = malloc(len);
  for (int trial = 0; trial < 3000; trial++) {
    memcpy(copy, buf, len);
    for (int k = 0; k < 3; k++) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      size_t at = (size_t)(state >> 33) % (len < 300 ? len : 300);
      copy[at] = (uint8_t)(state >> 13);
    }
    t2s_tensor_set s;
    t2s_tset_init(&s);
    t2s_error e = {0};
    t2s_status st = t2s_safetensors_parse(copy, len, "flipped", &s, &e);
    CHECK(st == T2S_OK || st == T2S_ERR_FORMAT || st == T2S_ERR_NOMEM);
    t2s_tset_free(&s);
  }
  free(copy);
  free(buf);
}

int main(void) {
  check_dtypes();
  check_rewrite_identical();
  check_roundtrip_names();
  check_malformed();
  check_damage();
  return t2s_test_finish("test_convert_safetensors");
}
