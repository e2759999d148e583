// ctest-labels: unit
/* PyTorch .pth reader: files written by torch.save (tools/make_convert_fixtures.py)
 * must give exactly the tensors of the same state dict written as safetensors;
 * dtypes, views, offsets and shared storages against values by formula;
 * wrappers and metadata; the refusals (a disallowed global, legacy files,
 * damaged archives, hostile pickles), each a clear error and never a crash;
 * and our writer's output read back. */
#include <stdlib.h>
#include <string.h>

#include "core/formats/pretrained.h"
#include "core/formats/torch_pickle.h"
#include "tests/fixture.h"
#include "tests/harness.h"

static int read_set(const char *fixture, t2s_tensor_set *s) {
  t2s_error err = {0};
  t2s_tset_init(s);
  t2s_status st = t2s_weights_read(t2s_fixture_path(fixture), NULL, s, NULL, &err);
  CHECK_MSG(st == T2S_OK, "%s: %s", fixture, err.msg);
  return st == T2S_OK;
}

/* Same names in the same order, dtypes, shapes and bytes. */
static void check_same(const char *label, const t2s_tensor_set *a, const t2s_tensor_set *b) {
  CHECK_MSG(a->count == b->count, "%s: %d vs %d tensors", label, a->count, b->count);
  for (int i = 0; i < a->count && i < b->count; i++) {
    const t2s_named_tensor *x = &a->items[i], *y = &b->items[i];
    int same = strcmp(x->name, y->name) == 0 && x->dtype == y->dtype && x->ndim == y->ndim &&
               memcmp(x->shape, y->shape, (size_t)x->ndim * sizeof *x->shape) == 0 &&
               x->nbytes == y->nbytes && memcmp(x->data, y->data, x->nbytes) == 0;
    CHECK_MSG(same, "%s: tensor %d '%s' vs '%s' differs", label, i, x->name, y->name);
  }
}

static void check_state_dict(void) {
  t2s_tensor_set pth, st, wrapped;
  if (!read_set("convert_resnet18.pth", &pth) || !read_set("convert_resnet18.safetensors", &st)) return;
  CHECK(pth.count == 142);
  check_same("pth vs safetensors", &pth, &st);
  const t2s_named_tensor *nbt = t2s_tset_find(&pth, "backbone.stem.1.num_batches_tracked");
  CHECK(nbt && nbt->dtype == T2S_FD_I64 && nbt->ndim == 0 && *(int64_t *)nbt->data == 7);

  if (read_set("convert_resnet18_wrapped.pth", &wrapped)) {
    t2s_error err = {0};
    CHECK(strncmp(wrapped.items[0].name, "module.", 7) == 0);
    CHECK(t2s_tset_strip_prefix(&wrapped, NULL, "wrapped", &err) == T2S_OK);
    check_same("wrapped (module. stripped) vs plain", &wrapped, &pth);
    const char *it = t2s_tset_get_meta(&wrapped, "meta.iter"), *w = t2s_tset_get_meta(&wrapped, "t2s.wrapper");
    CHECK(it && strcmp(it, "40000") == 0);
    CHECK(w && strcmp(w, "state_dict") == 0);
    t2s_tset_free(&wrapped);
  }

  /* Our writer: torch.load reads it (checked by hand, see the report); here, our
   * reader gives back exactly what was written. */
  const char *out = "test_convert_pth.out.pth";
  t2s_error err = {0};
  CHECK_MSG(t2s_pth_write(out, &pth, &err) == T2S_OK, "%s", err.msg);
  t2s_tensor_set back;
  t2s_tset_init(&back);
  CHECK_MSG(t2s_pth_read(out, &back, &err) == T2S_OK, "%s", err.msg);
  check_same("pth write/read", &back, &pth);
  t2s_tset_free(&back);
  remove(out);
  t2s_tset_free(&pth);
  t2s_tset_free(&st);
}

static float base(int i) { return (float)i * 0.25f - 1.0f; }  /* arange(12) * 0.25 - 1, (3, 4) */

static void expect_values(const t2s_tensor_set *s, const char *name, int ndim, const int64_t *shape,
                          const float *want, int n) {
  const t2s_named_tensor *t = t2s_tset_find(s, name);
  CHECK_MSG(t && t->ndim == ndim && t2s_named_numel(t) == n, "%s: missing or wrong shape", name);
  if (!t || t2s_named_numel(t) != n) return;
  for (int d = 0; d < ndim; d++) CHECK_MSG(t->shape[d] == shape[d], "%s: dim %d", name, d);
  float got[16];
  t2s_error err = {0};
  CHECK(t2s_tset_to_f32(t, got, &err) == T2S_OK);
  for (int i = 0; i < n; i++) CHECK_MSG(got[i] == want[i], "%s[%d] = %g, want %g", name, i, got[i], want[i]);
}

static void check_dtypes(void) {
  t2s_tensor_set s;
  if (!read_set("convert_dtypes.pth", &s)) return;
  float b[12], bt[12], sl[4], sa[5], sb[5], p2[12];
  for (int i = 0; i < 12; i++) b[i] = base(i), p2[i] = 2 * base(i);
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 3; j++) bt[i * 3 + j] = base(j * 4 + i);  /* base.t() */
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 2; j++) sl[i * 2 + j] = base((1 + i) * 4 + 2 + j);  /* base[1:, 2:] */
  for (int i = 0; i < 5; i++) sa[i] = (float)i, sb[i] = (float)(5 + i);
  int64_t s34[2] = {3, 4}, s43[2] = {4, 3}, s22[2] = {2, 2}, s5[1] = {5}, s51[2] = {5, 1};
  expect_values(&s, "f32", 2, s34, b, 12);
  expect_values(&s, "f16", 2, s34, b, 12);
  expect_values(&s, "bf16", 2, s34, b, 12);
  expect_values(&s, "f64", 2, s34, b, 12);
  expect_values(&s, "transposed", 2, s43, bt, 12);
  expect_values(&s, "slice", 2, s22, sl, 4);
  expect_values(&s, "shared_a", 1, s5, sa, 5);
  expect_values(&s, "shared_b", 2, s51, sb, 5);
  expect_values(&s, "scalar", 0, NULL, (float[]){3.5f}, 1);
  expect_values(&s, "param", 2, s34, p2, 12);
  const t2s_named_tensor *i64 = t2s_tset_find(&s, "i64");
  CHECK(i64 && i64->dtype == T2S_FD_I64 && t2s_named_numel(i64) == 6);
  for (int i = 0; i < 6 && i64; i++) CHECK(((int64_t *)i64->data)[i] == (int64_t)i * 1000000007);
  CHECK(t2s_tset_find(&s, "f16")->dtype == T2S_FD_F16 && t2s_tset_find(&s, "bf16")->dtype == T2S_FD_BF16);
  t2s_tset_free(&s);
}

static void expect_refusal(const char *label, const char *path, const char *needle) {
  t2s_tensor_set s;
  t2s_tset_init(&s);
  t2s_error err = {0};
  t2s_status st = t2s_weights_read(path, NULL, &s, NULL, &err);
  CHECK_MSG(st == T2S_ERR_FORMAT && strstr(err.msg, needle), "%s: status %d, message '%s' (want '%s')",
            label, st, err.msg, needle);
  t2s_tset_free(&s);
}

/* A .pth whose data.pkl is `pickle` and whose one storage is 4 floats. */
static void expect_pickle_refusal(const char *label, const char *pickle, size_t len, const char *needle) {
  t2s_tensor_set storages;
  t2s_tset_init(&storages);
  t2s_error err = {0};
  t2s_tset_add(&storages, "0", T2S_FD_F32, 1, (int64_t[]){4}, (float[]){1, 2, 3, 4}, &err);
  const char *path = "test_convert_pth.raw.pth";
  CHECK(t2s_pth_write_raw(path, (const uint8_t *)pickle, len, &storages, &err) == T2S_OK);
  expect_refusal(label, path, needle);
  remove(path);
  t2s_tset_free(&storages);
}

#define PK(s) s, sizeof(s) - 1
/* {'w': _rebuild_tensor_v2(<storage '0'>, OFFSET, (N,), (STRIDE,), False, OrderedDict())} */
#define TENSOR_PICKLE(key, offset, n, stride)                                                   \
  "\x80\x02}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storage"     \
  "ctorch\nFloatStorage\nX\x01\x00\x00\x00" key "X\x03\x00\x00\x00" "cpuK\x04tQK" offset "K" n "\x85K" \
  stride "\x85\x89" "ccollections\nOrderedDict\n)RtRs."

static void check_refusals(void) {
  expect_refusal("disallowed global", t2s_fixture_path("convert_bad_global.pth"), "builtin__.print'");
  expect_refusal("legacy", t2s_fixture_path("convert_legacy.pth"), "legacy PyTorch file");
  /* Sanity: the hand-written pickle is accepted when it is valid. */
  t2s_tensor_set storages, s;
  t2s_tset_init(&storages);
  t2s_tset_init(&s);
  t2s_error err = {0};
  t2s_tset_add(&storages, "0", T2S_FD_F32, 1, (int64_t[]){4}, (float[]){1, 2, 3, 4}, &err);
  const char *path = "test_convert_pth.raw.pth";
  CHECK(t2s_pth_write_raw(path, (const uint8_t *)PK(TENSOR_PICKLE("0", "\x01", "\x02", "\x02")), &storages, &err) == T2S_OK);
  CHECK_MSG(t2s_pth_read(path, &s, &err) == T2S_OK, "valid hand pickle: %s", err.msg);
  expect_values(&s, "w", 1, (int64_t[]){2}, (float[]){2, 4}, 2);  /* offset 1, stride 2 */
  remove(path);
  t2s_tset_free(&s);
  t2s_tset_free(&storages);

  expect_pickle_refusal("os.system", PK("\x80\x02" "cposix\nsystem\n(X\x02\x00\x00\x00idtR."), "posix.system");
  expect_pickle_refusal("stack global", PK("\x80\x04\x8c\x02os\x8c\x06system\x93."), "os.system");
  expect_pickle_refusal("NEWOBJ", PK("\x80\x02}\x81."), "opcode 0x81");
  expect_pickle_refusal("truncated pickle", PK("\x80\x02}X\x10\x00\x00\x00" "ab"), "past the end");
  expect_pickle_refusal("no STOP", PK("\x80\x02}"), "truncated");
  expect_pickle_refusal("underflow", PK("\x80\x02s."), "SETITEM");
  expect_pickle_refusal("bad memo", PK("\x80\x02h\x05."), "memo entry 5");
  expect_pickle_refusal("not a dict", PK("\x80\x02K\x05."), "not a dict");
  expect_pickle_refusal("no tensors", PK("\x80\x02}X\x01\x00\x00\x00" "aK\x01s."), "found no tensors");
  expect_pickle_refusal("past the storage", PK(TENSOR_PICKLE("0", "\x02", "\x02", "\x02")), "reads element 4");
  /* storage offset -1 (BININT): once computed INT64_MAX - (-1), a signed overflow */
  expect_pickle_refusal("negative offset",
                        PK("\x80\x02}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n((X\x07"
                           "\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x00" "0X\x03\x00"
                           "\x00\x00" "cpuK\x04tQJ\xff\xff\xff\xffK\x02\x85K\x01\x85\x89"
                           "ccollections\nOrderedDict\n)RtRs."),
                        "negative storage offset -1");
  expect_pickle_refusal("missing storage", PK(TENSOR_PICKLE("9", "\x00", "\x02", "\x01")), "does not contain");
}

/* Truncations and byte flips of a real archive: refused, never a crash. */
static void check_damage(void) {
  uint8_t *buf;
  size_t len;
  t2s_error err = {0};
  if (t2s_read_file(t2s_fixture_path("convert_dtypes.pth"), &buf, &len, &err)) {
    CHECK_MSG(0, "%s", err.msg);
    return;
  }
  int refused = 0, tried = 0;
  for (size_t cut = 0; cut < len; cut += 7, tried++) {
    t2s_tensor_set s;
    t2s_tset_init(&s);
    t2s_error e = {0};
    refused += t2s_pth_parse(buf, cut, "cut", &s, &e) == T2S_ERR_FORMAT;
    t2s_tset_free(&s);
  }
  CHECK_MSG(refused == tried, "%d of %d truncations refused", refused, tried);
  uint8_t *copy = malloc(len);
  uint64_t state = 99;
  int crc_caught = 0;
  for (int trial = 0; trial < 3000; trial++) {
    memcpy(copy, buf, len);
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    size_t at = (size_t)(state >> 33) % len;
    copy[at] ^= (uint8_t)(1u << ((state >> 20) & 7));
    t2s_tensor_set s;
    t2s_tset_init(&s);
    t2s_error e = {0};
    t2s_status st = t2s_pth_parse(copy, len, "flipped", &s, &e);
    CHECK(st == T2S_OK || st == T2S_ERR_FORMAT || st == T2S_ERR_NOMEM);
    crc_caught += st == T2S_ERR_FORMAT && strstr(e.msg, "CRC") != NULL;
    t2s_tset_free(&s);
  }
  CHECK_MSG(crc_caught > 0, "no flipped byte was caught by a CRC check");
  free(copy);
  free(buf);
}

int main(void) {
  check_state_dict();
  check_dtypes();
  check_refusals();
  check_damage();
  return t2s_test_finish("test_convert_pth");
}
