// ctest-labels: unit
// ctest-timeout: 300
/* Checkpoint contract (docs/formats.md, "Checkpoints"): exact round trip of
 * params / buffers / ema / optimizer slots / state / meta; clear errors for a
 * truncated file, a non-HDF5 file, a file without the format attribute, a newer
 * version, a wrong shape, a missing and an unexpected tensor; a writer killed
 * mid-write leaves the previous checkpoint intact; h5py reads our files and we
 * read h5py's. */
#include <errno.h>
#include <hdf5.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/formats/checkpoint.h"
#include "core/formats/pretrained.h"
#include "core/device.h"
#include "core/rng.h"
#include "tests/harness.h"

enum net_variant {
  NET_BASE = 0,
  NET_WIDER_HEAD,   /* decode_head.conv_seg has 6 classes instead of 5 */
  NET_MORE,         /* has a tensor that the base network lacks */
  NET_LESS,         /* lacks decode_head.conv_seg.bias */
};

static void add(t2s_params *p, const char *name, t2s_param_kind kind, int ndim, int64_t a,
                int64_t b, int64_t c, int64_t d, t2s_init init) {
  int64_t shape[4] = {a, b, c, d};
  t2s_tensor *t = t2s_params_add(p, name, kind, ndim, shape, init, 0.5f);
  CHECK_MSG(t != NULL, "registering %s", name);
}

/* A small conv net's tensors; every init is random so two seeds differ everywhere. */
static void make_net(t2s_params *p, enum net_variant v, uint64_t seed) {
  t2s_params_init(p);
  add(p, "backbone.stem.0.weight", T2S_PARAM_WEIGHT, 4, 8, 3, 3, 3, T2S_INIT_KAIMING_FAN_OUT);
  add(p, "backbone.stem.1.weight", T2S_PARAM_NORM, 1, 8, 0, 0, 0, T2S_INIT_NORMAL);
  add(p, "backbone.stem.1.bias", T2S_PARAM_NORM, 1, 8, 0, 0, 0, T2S_INIT_NORMAL);
  add(p, "backbone.stem.1.running_mean", T2S_PARAM_BUFFER, 1, 8, 0, 0, 0, T2S_INIT_NORMAL);
  add(p, "backbone.stem.1.running_var", T2S_PARAM_BUFFER, 1, 8, 0, 0, 0, T2S_INIT_UNIFORM);
  add(p, "backbone.layer1.0.conv1.weight", T2S_PARAM_WEIGHT, 4, 16, 8, 3, 3, T2S_INIT_NORMAL);
  add(p, "backbone.layer1.0.bn1.running_mean", T2S_PARAM_BUFFER, 1, 16, 0, 0, 0, T2S_INIT_NORMAL);
  add(p, "decode_head.conv_seg.weight", T2S_PARAM_WEIGHT, 4, v == NET_WIDER_HEAD ? 6 : 5, 16, 1,
      1, T2S_INIT_NORMAL);
  if (v != NET_LESS)
    add(p, "decode_head.conv_seg.bias", T2S_PARAM_BIAS, 1, v == NET_WIDER_HEAD ? 6 : 5, 0, 0, 0,
        T2S_INIT_UNIFORM);
  if (v == NET_MORE)
    add(p, "decode_head.extra.weight", T2S_PARAM_WEIGHT, 2, 5, 5, 0, 0, T2S_INIT_NORMAL);
  t2s_error err = {0};
  CHECK_MSG(t2s_params_finalize(p, T2S_DEV_CPU, seed, &err) == T2S_OK, "%s", err.msg);
}

/* Everything a training run saves, with distinct recognisable values. */
typedef struct run_state {
  t2s_params student, teacher;
  float *momentum;     /* student layout */
  int64_t sampler[5];
  double class_freq[3][2];
  uint8_t flags[4];
  int64_t step;
  double loss_scale;
} run_state;

static void make_state(run_state *s, uint64_t seed) {
  make_net(&s->student, NET_BASE, seed);
  make_net(&s->teacher, NET_BASE, seed + 1000);
  s->momentum = calloc(s->student.numel, sizeof(float));
  t2s_rng_key key = t2s_rng_key_make(seed, 3, 0, 0);
  /* only the tensors' elements: the alignment padding between them is not saved */
  for (int k = 0; k < s->student.count; k++) {
    const t2s_param *q = s->student.items[k];
    for (int64_t i = 0; i < t2s_numel(&q->t); i++)
      s->momentum[q->offset + (size_t)i] = t2s_rng_normal(key, q->offset + (size_t)i);
  }
  for (int i = 0; i < 5; i++) s->sampler[i] = (int64_t)(seed * 1000003u) + i - (1LL << 40);
  for (int i = 0; i < 6; i++) s->class_freq[i / 2][i % 2] = t2s_rng_uniform(key, 100 + i) / 3.0;
  for (int i = 0; i < 4; i++) s->flags[i] = (uint8_t)(seed * 37 + i * 61);
  s->step = (int64_t)seed * 7 + 1;
  s->loss_scale = 1.0 / 3.0 + (double)seed;
}

static void free_state(run_state *s) {
  t2s_params_free(&s->student);
  t2s_params_free(&s->teacher);
  free(s->momentum);
}

static const char *CONFIG = "name: test\nseed: 3\noptimizer:\n  lr: 6.0e-05\n# ünïcode\n";

static t2s_status write_state(const char *path, const run_state *s, int64_t iteration,
                              t2s_error *err) {
  t2s_ckpt_writer *w = t2s_ckpt_begin(path, err);
  if (w == NULL) return err->status;
  int64_t sampler_shape[1] = {5}, freq_shape[2] = {3, 2}, flag_shape[1] = {4};
  if (t2s_ckpt_write_meta(w, iteration, 2, CONFIG, err) != T2S_OK ||
      t2s_ckpt_write_params(w, "params", &s->student, T2S_CKPT_TRAINABLE, err) != T2S_OK ||
      t2s_ckpt_write_params(w, "buffers", &s->student, T2S_CKPT_BUFFERS, err) != T2S_OK ||
      t2s_ckpt_write_params(w, "ema", &s->teacher, T2S_CKPT_TRAINABLE | T2S_CKPT_BUFFERS, err) !=
          T2S_OK ||
      t2s_ckpt_write_slot(w, "momentum", &s->student, s->momentum, err) != T2S_OK ||
      t2s_ckpt_write_scalar_i64(w, "/optim/step", s->step, err) != T2S_OK ||
      t2s_ckpt_write_scalar_f64(w, "/state/loss_scale", s->loss_scale, err) != T2S_OK ||
      t2s_ckpt_write_array(w, "/state/sampler/source.position", T2S_CKPT_I64, 1, sampler_shape,
                           s->sampler, err) != T2S_OK ||
      t2s_ckpt_write_array(w, "/state/class_stats/freq", T2S_CKPT_F64, 2, freq_shape,
                           s->class_freq, err) != T2S_OK ||
      t2s_ckpt_write_array(w, "/state/flags", T2S_CKPT_U8, 1, flag_shape, s->flags, err) !=
          T2S_OK) {
    t2s_ckpt_abort(w);
    return err->status;
  }
  return t2s_ckpt_commit(w, err);
}

static t2s_status read_state(const char *path, run_state *s, int64_t *iteration, char **config,
                             t2s_error *err) {
  t2s_ckpt_reader *r = t2s_ckpt_open(path, err);
  if (r == NULL) return err->status;
  int world = 0;
  int64_t sampler_shape[1] = {5}, freq_shape[2] = {3, 2}, flag_shape[1] = {4};
  t2s_status st = t2s_ckpt_read_meta(r, iteration, &world, config, err);
  if (st == T2S_OK && world != 2)
    st = t2s_error_set(err, T2S_ERR_FORMAT, "world_size %d, expected 2", world);
  if (st == T2S_OK) st = t2s_ckpt_read_params(r, "params", &s->student, T2S_CKPT_TRAINABLE, err);
  if (st == T2S_OK) st = t2s_ckpt_read_params(r, "/buffers", &s->student, T2S_CKPT_BUFFERS, err);
  if (st == T2S_OK)
    st = t2s_ckpt_read_params(r, "ema", &s->teacher, T2S_CKPT_TRAINABLE | T2S_CKPT_BUFFERS, err);
  if (st == T2S_OK) st = t2s_ckpt_read_slot(r, "momentum", &s->student, s->momentum, err);
  if (st == T2S_OK) st = t2s_ckpt_read_scalar_i64(r, "/optim/step", &s->step, err);
  if (st == T2S_OK) st = t2s_ckpt_read_scalar_f64(r, "/state/loss_scale", &s->loss_scale, err);
  if (st == T2S_OK)
    st = t2s_ckpt_read_array(r, "/state/sampler/source.position", T2S_CKPT_I64, 1, sampler_shape,
                             s->sampler, err);
  if (st == T2S_OK)
    st = t2s_ckpt_read_array(r, "/state/class_stats/freq", T2S_CKPT_F64, 2, freq_shape,
                             s->class_freq, err);
  if (st == T2S_OK)
    st = t2s_ckpt_read_array(r, "/state/flags", T2S_CKPT_U8, 1, flag_shape, s->flags, err);
  t2s_ckpt_close(r);
  return st;
}

static int same_params(const t2s_params *a, const t2s_params *b) {
  return a->numel == b->numel && a->buf_numel == b->buf_numel &&
         memcmp(a->data, b->data, a->numel * sizeof(float)) == 0 &&
         memcmp(a->buf_data, b->buf_data, a->buf_numel * sizeof(float)) == 0;
}

static int same_state(const run_state *a, const run_state *b) {
  return same_params(&a->student, &b->student) && same_params(&a->teacher, &b->teacher) &&
         memcmp(a->momentum, b->momentum, a->student.numel * sizeof(float)) == 0 &&
         memcmp(a->sampler, b->sampler, sizeof a->sampler) == 0 &&
         memcmp(a->class_freq, b->class_freq, sizeof a->class_freq) == 0 &&
         memcmp(a->flags, b->flags, sizeof a->flags) == 0 && a->step == b->step &&
         memcmp(&a->loss_scale, &b->loss_scale, sizeof(double)) == 0;
}

static int contains(const char *haystack, const char *needle) {
  return strstr(haystack, needle) != NULL;
}

static char g_dir[1024];

static const char *path_in_dir(char *buf, size_t size, const char *name) {
  snprintf(buf, size, "%s/%s", g_dir, name);
  return buf;
}

static long long file_size(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 ? (long long)sb.st_size : -1;
}

static void test_round_trip(const char *good) {
  run_state a, b;
  make_state(&a, 1);
  make_state(&b, 2);
  CHECK(!same_state(&a, &b));
  t2s_error err = {0};
  CHECK_MSG(write_state(good, &a, 1234, &err) == T2S_OK, "%s", err.msg);
  char tmp[1200];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", good, (long)getpid());
  CHECK_MSG(access(tmp, F_OK) != 0, "the temporary file %s is left after commit", tmp);
  int64_t it = 0;
  char *config = NULL;
  t2s_error_clear(&err);
  CHECK_MSG(read_state(good, &b, &it, &config, &err) == T2S_OK, "%s", err.msg);
  CHECK(it == 1234);
  CHECK_MSG(config && strcmp(config, CONFIG) == 0, "config read back as '%s'", config);
  CHECK_MSG(same_state(&a, &b), "round trip is not bit-exact");
  t2s_ckpt_reader *r = t2s_ckpt_open(good, &err);
  CHECK(r != NULL);
  if (r) {
    CHECK(t2s_ckpt_has(r, "/params/backbone.layer1.0.conv1.weight"));
    CHECK(t2s_ckpt_has(r, "/state/sampler"));
    CHECK(!t2s_ckpt_has(r, "/state/nothing/here"));
    CHECK(!t2s_ckpt_has(r, "/params/backbone.layer1.0.conv1"));
    int nd = 0;
    int64_t shape[T2S_CKPT_MAX_DIMS];
    CHECK(t2s_ckpt_array_shape(r, "/state/class_stats/freq", &nd, shape, &err) == T2S_OK);
    CHECK(nd == 2 && shape[0] == 3 && shape[1] == 2);
    /* a state array asked for with the wrong type or shape is an error, not a silent cast */
    double wrong[5];
    int64_t five[1] = {5}, four[1] = {4};
    t2s_error_clear(&err);
    CHECK(t2s_ckpt_read_array(r, "/state/sampler/source.position", T2S_CKPT_F64, 1, five, wrong,
                              &err) != T2S_OK);
    CHECK_MSG(contains(err.msg, "int64") && contains(err.msg, "float64"), "%s", err.msg);
    t2s_error_clear(&err);
    CHECK(t2s_ckpt_read_array(r, "/state/sampler/source.position", T2S_CKPT_I64, 1, four, wrong,
                              &err) != T2S_OK);
    CHECK_MSG(contains(err.msg, "[5]") && contains(err.msg, "[4]"), "%s", err.msg);
    t2s_error_clear(&err);
    CHECK(t2s_ckpt_read_scalar_i64(r, "/state/rng/missing", &it, &err) == T2S_ERR_FORMAT);
    CHECK_MSG(contains(err.msg, "/state/rng/missing"), "%s", err.msg);
    t2s_ckpt_close(r);
  }
  free(config);
  free_state(&a);
  free_state(&b);
}

/* Flips one bit of a dataset's stored bytes (contiguous storage: H5Dget_offset). */
static void flip_stored_bit(const char *path, const char *dataset, size_t byte) {
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t ds = f < 0 ? -1 : H5Dopen2(f, dataset, H5P_DEFAULT);
  haddr_t off = ds < 0 ? HADDR_UNDEF : H5Dget_offset(ds);
  CHECK_MSG(off != HADDR_UNDEF, "no contiguous storage for %s", dataset);
  if (ds >= 0) H5Dclose(ds);
  if (f >= 0) H5Fclose(f);
  if (off == HADDR_UNDEF) return;
  FILE *fp = fopen(path, "r+b");
  CHECK(fp != NULL);
  if (fp == NULL) return;
  int c = fseek(fp, (long)(off + byte), SEEK_SET) == 0 ? fgetc(fp) : EOF;
  CHECK(c != EOF && fseek(fp, (long)(off + byte), SEEK_SET) == 0 && fputc(c ^ 0x04, fp) != EOF);
  fclose(fp);
}

/* One flipped bit in a weight (or a state array) is refused with the dataset named;
 * a checkpoint without checksums (written before they existed) loads, unverified. */
static void test_checksums(const char *good) {
  char bad[1200], cmd[2600];
  path_in_dir(bad, sizeof bad, "flipped.ckpt");
  const char *cases[] = {"/params/backbone.layer1.0.conv1.weight", "/ema/backbone.stem.1.running_var",
                         "/state/class_stats/freq"};
  for (int k = 0; k < 3; k++) {
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", good, bad);
    CHECK(system(cmd) == 0);
    flip_stored_bit(bad, cases[k], 5);
    run_state b;
    make_state(&b, 2);
    int64_t it = 0;
    t2s_error err = {0};
    CHECK_MSG(read_state(bad, &b, &it, NULL, &err) == T2S_ERR_FORMAT, "%s: a flipped bit loaded",
              cases[k]);
    CHECK_MSG(contains(err.msg, bad) && contains(err.msg, cases[k]) && contains(err.msg, "checksum"),
              "the message should name %s and the dataset %s: %s", bad, cases[k], err.msg);
    if (k == 0) printf("flipped bit -> %s\n", err.msg);
    free_state(&b);
    if (k < 2) {
      /* the tensor-set reader (t2sda_eval --checkpoint, model.pretrained) checks too */
      t2s_tensor_set set;
      t2s_tset_init(&set);
      t2s_error e2 = {0};
      CHECK_MSG(t2s_ckpt_read_set(bad, k == 0 ? "student" : "teacher", &set, &e2) != T2S_OK &&
                    contains(e2.msg, cases[k]) && contains(e2.msg, "checksum"),
                "t2s_ckpt_read_set of a flipped bit in %s: %s", cases[k], e2.msg);
      t2s_tset_free(&set);
    }
  }
  /* an older checkpoint: strip every crc32 attribute, then it must load exactly */
  snprintf(cmd, sizeof cmd, "cp '%s' '%s'", good, bad);
  CHECK(system(cmd) == 0);
  hid_t f = H5Fopen(bad, H5F_ACC_RDWR, H5P_DEFAULT);
  const char *all[] = {"/params/backbone.stem.0.weight", "/state/flags", "/optim/step"};
  for (int k = 0; k < 3; k++) CHECK(H5Adelete_by_name(f, all[k], "crc32", H5P_DEFAULT) >= 0);
  H5Fclose(f);
  run_state a, b;
  make_state(&a, 1);
  make_state(&b, 2);
  int64_t it = 0;
  t2s_error err = {0};
  CHECK_MSG(read_state(bad, &b, &it, NULL, &err) == T2S_OK, "without checksums: %s", err.msg);
  CHECK(same_state(&a, &b));
  t2s_ckpt_reader *r = t2s_ckpt_open(bad, &err);
  int64_t step = 0;
  CHECK(r && t2s_ckpt_read_scalar_i64(r, "/optim/step", &step, &err) == T2S_OK);
  CHECK_MSG(r && t2s_ckpt_unverified(r) == 1, "unverified count %lld",
            r ? (long long)t2s_ckpt_unverified(r) : -1LL);
  t2s_ckpt_close(r);
  free_state(&a);
  free_state(&b);
  unlink(bad);
}

/* Reads `good` (written from NET_BASE) into a network of variant v and expects
 * an error that mentions every needle; the network must be left unchanged. */
static void expect_params_error(const char *good, enum net_variant v, const char *label,
                                const char **needles, int n) {
  t2s_params p;
  make_net(&p, v, 99);
  float *before = malloc(p.numel * sizeof(float));
  memcpy(before, p.data, p.numel * sizeof(float));
  t2s_error err = {0};
  t2s_ckpt_reader *r = t2s_ckpt_open(good, &err);
  CHECK_MSG(r != NULL, "%s", err.msg);
  if (r) {
    t2s_status st = t2s_ckpt_read_params(r, "params", &p, T2S_CKPT_TRAINABLE, &err);
    CHECK_MSG(st == T2S_ERR_FORMAT, "%s: status %s", label, t2s_status_name(st));
    for (int i = 0; i < n; i++)
      CHECK_MSG(contains(err.msg, needles[i]), "%s: '%s' not in: %s", label, needles[i], err.msg);
    CHECK_MSG(contains(err.msg, good), "%s: file not named: %s", label, err.msg);
    printf("%s -> %s\n", label, err.msg);
    t2s_ckpt_close(r);
  }
  CHECK_MSG(memcmp(before, p.data, p.numel * sizeof(float)) == 0,
            "%s: a failed read modified the network", label);
  free(before);
  t2s_params_free(&p);
}

static void test_network_mismatch(const char *good) {
  const char *shape[] = {"decode_head.conv_seg.weight", "[5, 16, 1, 1]", "[6, 16, 1, 1]"};
  expect_params_error(good, NET_WIDER_HEAD, "wrong shape", shape, 3);
  const char *missing[] = {"decode_head.extra.weight", "lacks"};
  expect_params_error(good, NET_MORE, "missing tensor", missing, 2);
  const char *extra[] = {"decode_head.conv_seg.bias", "does not have"};
  expect_params_error(good, NET_LESS, "unexpected tensor", extra, 2);
}

static void copy_prefix(const char *src, const char *dst, long long bytes) {
  FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
  CHECK(in && out);
  if (in && out) {
    char buf[4096];
    while (bytes > 0) {
      size_t want = bytes < (long long)sizeof buf ? (size_t)bytes : sizeof buf;
      size_t got = fread(buf, 1, want, in);
      if (got == 0) break;
      fwrite(buf, 1, got, out);
      bytes -= (long long)got;
    }
  }
  if (in) fclose(in);
  if (out) fclose(out);
}

static void expect_open_error(const char *path, const char *label, const char *needle) {
  t2s_error err = {0};
  t2s_ckpt_reader *r = t2s_ckpt_open(path, &err);
  CHECK_MSG(r == NULL, "%s: opened", label);
  t2s_ckpt_close(r);
  CHECK_MSG(err.status != T2S_OK && contains(err.msg, path), "%s: file not named: %s", label,
            err.msg);
  CHECK_MSG(contains(err.msg, needle), "%s: '%s' not in: %s", label, needle, err.msg);
  printf("%s -> %s\n", label, err.msg);
}

/* Files written directly with HDF5: a /meta without format, and a newer version. */
static void write_foreign(const char *path, const char *format, int version) {
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  hid_t g = H5Gcreate2(f, "/meta", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  hid_t space = H5Screate(H5S_SCALAR);
  if (format != NULL) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(format));
    hid_t a = H5Acreate2(g, "format", t, space, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, format);
    H5Aclose(a);
    H5Tclose(t);
  }
  hid_t a = H5Acreate2(g, "version", H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT);
  long long v = version;
  H5Awrite(a, H5T_NATIVE_LLONG, &v);
  H5Aclose(a);
  H5Sclose(space);
  H5Gclose(g);
  CHECK(H5Fclose(f) >= 0);
}

static void test_bad_files(const char *good) {
  char path[1200];
  path_in_dir(path, sizeof path, "truncated.ckpt");
  copy_prefix(good, path, file_size(good) / 2);
  expect_open_error(path, "truncated", "truncated");
  expect_open_error(path, "truncated (advice)", "previous checkpoint");
  unlink(path);

  path_in_dir(path, sizeof path, "text.ckpt");
  FILE *f = fopen(path, "w");
  if (f) {
    fputs("not a checkpoint\n", f);
    fclose(f);
  }
  expect_open_error(path, "not hdf5", "not an HDF5 file");
  unlink(path);

  path_in_dir(path, sizeof path, "noformat.h5");
  write_foreign(path, NULL, 1);
  expect_open_error(path, "no format attribute", "not a t2sda checkpoint");
  unlink(path);

  path_in_dir(path, sizeof path, "otherformat.h5");
  write_foreign(path, "t2sda-shard", 1);
  expect_open_error(path, "other format", "t2sda-shard");
  unlink(path);

  path_in_dir(path, sizeof path, "newer.h5");
  write_foreign(path, T2S_CKPT_FORMAT, T2S_CKPT_VERSION + 1);
  expect_open_error(path, "newer version", "newer");
  unlink(path);

  path_in_dir(path, sizeof path, "absent.ckpt");
  expect_open_error(path, "missing file", "No such file");
}

/* Misuse of the writer: nothing appears under the final name, no temp file stays. */
static void test_writer_refusals(void) {
  char path[1200], tmp[1300];
  path_in_dir(path, sizeof path, "refused.ckpt");
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  t2s_error err = {0};
  t2s_ckpt_writer *w = t2s_ckpt_begin(path, &err);
  CHECK_MSG(w != NULL, "%s", err.msg);
  if (w == NULL) return;
  CHECK(access(tmp, F_OK) == 0);
  CHECK(t2s_ckpt_commit(w, &err) == T2S_ERR_INVALID);
  CHECK_MSG(contains(err.msg, "t2s_ckpt_write_meta"), "%s", err.msg);
  CHECK(access(path, F_OK) != 0 && access(tmp, F_OK) != 0);

  t2s_error_clear(&err);
  w = t2s_ckpt_begin(path, &err);
  int64_t one[1] = {1};
  int64_t v = 5;
  CHECK(t2s_ckpt_write_meta(w, 1, 1, NULL, &err) == T2S_OK);
  CHECK(t2s_ckpt_write_array(w, "/params/x", T2S_CKPT_I64, 1, one, &v, &err) == T2S_ERR_INVALID);
  CHECK(t2s_ckpt_commit(w, &err) != T2S_OK);
  CHECK(access(path, F_OK) != 0 && access(tmp, F_OK) != 0);

  t2s_error_clear(&err);
  w = t2s_ckpt_begin(path, &err);
  t2s_ckpt_abort(w);
  CHECK(access(path, F_OK) != 0 && access(tmp, F_OK) != 0);

  t2s_error_clear(&err);
  CHECK(t2s_ckpt_begin("/nonexistent-dir-t2s/x.ckpt", &err) == NULL);
  CHECK_MSG(contains(err.msg, "/nonexistent-dir-t2s/x.ckpt") && contains(err.msg, "H5Fcreate"),
            "%s", err.msg);
  printf("unwritable directory -> %s\n", err.msg);
}

/* The CUDA backend stores 4-D weights as (O, kh, kw, I): the file must still
 * hold (O, I, kh, kw). Simulated on the CPU by flagging one weight NHWC. */
static void test_nhwc_weights(void) {
  char path[1200];
  path_in_dir(path, sizeof path, "nhwc.ckpt");
  t2s_params p, q;
  make_net(&p, NET_BASE, 5);
  make_net(&q, NET_BASE, 6);
  t2s_param *wp = t2s_params_find(&p, "backbone.layer1.0.conv1.weight");
  t2s_param *wq = t2s_params_find(&q, "backbone.layer1.0.conv1.weight");
  wp->t.layout = wq->t.layout = T2S_LAYOUT_NHWC;
  t2s_error err = {0};
  t2s_ckpt_writer *w = t2s_ckpt_begin(path, &err);
  CHECK(w && t2s_ckpt_write_meta(w, 0, 1, "", &err) == T2S_OK &&
        t2s_ckpt_write_params(w, "params", &p, T2S_CKPT_TRAINABLE, &err) == T2S_OK &&
        t2s_ckpt_commit(w, &err) == T2S_OK);
  t2s_ckpt_reader *r = t2s_ckpt_open(path, &err);
  CHECK_MSG(r != NULL, "%s", err.msg);
  if (r) {
    enum { O = 16, I = 8, H = 3, W = 3 };
    static float file[O][I][H][W];
    int64_t shape[4] = {O, I, H, W};
    CHECK(t2s_ckpt_read_array(r, "/params/backbone.layer1.0.conv1.weight", T2S_CKPT_F32, 4, shape,
                              file, &err) == T2S_OK);
    const float *dev = t2s_f32(&wp->t);
    int bad = 0;
    for (int o = 0; o < O; o++)
      for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
          for (int i = 0; i < I; i++) bad += file[o][i][y][x] != *dev++;
    CHECK_MSG(bad == 0, "%d elements of the NHWC weight are misplaced in the file", bad);
    CHECK(t2s_ckpt_read_params(r, "params", &q, T2S_CKPT_TRAINABLE, &err) == T2S_OK);
    CHECK_MSG(memcmp(p.data, q.data, p.numel * sizeof(float)) == 0, "NHWC round trip differs");
    t2s_ckpt_close(r);
  }
  unlink(path);
  t2s_params_free(&p);
  t2s_params_free(&q);
}

/* A network of ~200 MB, written by a child that is SIGKILLed mid-write. */
static void big_writer_child(const char *path) {
  t2s_params p;
  t2s_params_init(&p);
  char name[64];
  for (int i = 0; i < 50; i++) {
    int64_t shape[2] = {1024, 1024};
    snprintf(name, sizeof name, "backbone.block%d.weight", i);
    if (t2s_params_add(&p, name, T2S_PARAM_WEIGHT, 2, shape, T2S_INIT_ZEROS, 0.0f) == NULL) _exit(3);
  }
  t2s_error err = {0};
  if (t2s_params_finalize(&p, T2S_DEV_CPU, 1, &err) != T2S_OK) _exit(4);
  t2s_ckpt_writer *w = t2s_ckpt_begin(path, &err);
  if (w == NULL || t2s_ckpt_write_meta(w, 999999, 1, "", &err) != T2S_OK ||
      t2s_ckpt_write_params(w, "params", &p, T2S_CKPT_TRAINABLE, &err) != T2S_OK ||
      t2s_ckpt_commit(w, &err) != T2S_OK)
    _exit(5);
  _exit(0);
}

static void test_interrupted_write(const char *good) {
  long long good_size = file_size(good);
  pid_t child = fork();
  CHECK(child >= 0);
  if (child < 0) return;
  if (child == 0) big_writer_child(good);
  char tmp[1200];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", good, (long)child);
  int status = 0, exited = 0;
  /* kill once the temporary file holds some of the 200 MB, i.e. mid-write, or
   * as soon as anything happens to the final name (a writer that is not atomic) */
  while (!exited && file_size(tmp) < (8LL << 20) && file_size(good) == good_size) {
    exited = waitpid(child, &status, WNOHANG) == child;
    usleep(200);
  }
  if (!exited) {
    kill(child, SIGKILL);
    waitpid(child, &status, 0);
  }
  if (exited || !WIFSIGNALED(status)) {
    /* the only acceptable alternative outcome: the complete new checkpoint */
    printf("note: the writer finished before it could be killed (status %d); the interrupted "
           "write was not exercised this run\n", status);
    t2s_error err = {0};
    t2s_ckpt_reader *r = t2s_ckpt_open(good, &err);
    int64_t it = 0;
    CHECK_MSG(r && t2s_ckpt_read_meta(r, &it, NULL, NULL, &err) == T2S_OK && it == 999999,
              "after the writer finished: %s", err.msg);
    t2s_ckpt_close(r);
  } else {
    printf("writer killed with %lld bytes in %s\n", file_size(tmp), tmp);
    CHECK_MSG(file_size(good) == good_size, "the final name changed size: %lld -> %lld",
              good_size, file_size(good));
    run_state a, b;
    make_state(&a, 1);
    make_state(&b, 3);
    int64_t it = 0;
    t2s_error err = {0};
    CHECK_MSG(read_state(good, &b, &it, NULL, &err) == T2S_OK, "previous checkpoint: %s",
              err.msg);
    CHECK(it == 1234);
    CHECK_MSG(same_state(&a, &b), "previous checkpoint no longer round-trips");
    free_state(&a);
    free_state(&b);
  }
  unlink(tmp);
}

/* A full disk (ENOSPC) simulated with a file-size limit (EFBIG once SIGXFSZ is
 * ignored): the writer must fail with a message, leave no temporary file, and
 * the process must then exit normally (HDF5 1.10 used to crash in its atexit
 * shutdown on a file id that a failed H5Fclose left open). */
static void full_disk_child(const char *path) {
  signal(SIGXFSZ, SIG_IGN);
  struct rlimit lim = {256 << 10, 256 << 10};
  if (setrlimit(RLIMIT_FSIZE, &lim) != 0) _exit(10);
  t2s_params p;
  t2s_params_init(&p);
  char name[64];
  for (int i = 0; i < 4; i++) {
    int64_t shape[2] = {256, 256};
    snprintf(name, sizeof name, "backbone.block%d.weight", i);
    if (t2s_params_add(&p, name, T2S_PARAM_WEIGHT, 2, shape, T2S_INIT_NORMAL, 1.0f) == NULL)
      _exit(11);
  }
  t2s_error err = {0};
  if (t2s_params_finalize(&p, T2S_DEV_CPU, 1, &err) != T2S_OK) _exit(12);
  t2s_ckpt_writer *w = t2s_ckpt_begin(path, &err);
  t2s_status st = w == NULL ? err.status : T2S_OK;
  if (st == T2S_OK && (t2s_ckpt_write_meta(w, 7, 1, "", &err) != T2S_OK ||
                       t2s_ckpt_write_params(w, "params", &p, T2S_CKPT_TRAINABLE, &err) != T2S_OK)) {
    st = err.status;
    t2s_ckpt_abort(w);
  } else if (st == T2S_OK) {
    st = t2s_ckpt_commit(w, &err);
  }
  t2s_params_free(&p);
  fprintf(stderr, "full-disk writer: %s\n", st == T2S_OK ? "committed" : err.msg);
  /* exit(), not _exit(): HDF5's atexit shutdown must run and survive */
  exit(st == T2S_OK ? 13 : (strstr(err.msg, path) != NULL ? 7 : 14));
}

static void test_full_disk(void) {
  char path[1200], tmp[1300];
  path_in_dir(path, sizeof path, "full_disk.ckpt");
  long child = 0;
  int rc = t2s_test_in_child(full_disk_child, path, &child);
  CHECK_MSG(rc == 7, "full-disk writer: expected a clean exit 7 after a named error, got %d (> 128: signal %d)",
            rc, rc - 128);
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, child);
  CHECK_MSG(access(tmp, F_OK) != 0, "the failed writer left %s", tmp);
  CHECK_MSG(access(path, F_OK) != 0, "the failed writer left %s", path);
  unlink(tmp);
  unlink(path);
}

/* ---- h5py interoperability ---------------------------------------------- */

/* Lists every dataset of the good checkpoint with its bytes, for python to compare. */
static void write_manifest(const run_state *s, const char *manifest, const char *blob_path) {
  FILE *m = fopen(manifest, "w"), *b = fopen(blob_path, "wb");
  CHECK(m && b);
  if (!m || !b) {
    if (m) fclose(m);
    if (b) fclose(b);
    return;
  }
  long off = 0;
  struct {
    const char *group;
    const t2s_params *p;
    int what;
    const float *flat;
  } groups[] = {{"params", &s->student, T2S_CKPT_TRAINABLE, s->student.data},
                {"buffers", &s->student, T2S_CKPT_BUFFERS, NULL},
                {"ema", &s->teacher, T2S_CKPT_TRAINABLE | T2S_CKPT_BUFFERS, s->teacher.data},
                {"optim/momentum", &s->student, T2S_CKPT_TRAINABLE, s->momentum}};
  for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++)
    for (int kind = 0; kind < 2; kind++) {
      if (!(groups[g].what & (kind ? T2S_CKPT_BUFFERS : T2S_CKPT_TRAINABLE))) continue;
      const t2s_params *p = groups[g].p;
      t2s_param **list = kind ? p->buffers : p->items;
      const float *flat = kind ? p->buf_data : groups[g].flat;
      for (int i = 0; i < (kind ? p->buf_count : p->count); i++) {
        const t2s_tensor *t = &list[i]->t;
        long bytes = (long)t2s_numel(t) * 4;
        fprintf(m, "%s/%s float32 %ld %ld %d", groups[g].group, list[i]->name, off, bytes,
                t->ndim);
        for (int d = 0; d < t->ndim; d++) fprintf(m, " %lld", (long long)t->shape[d]);
        fputc('\n', m);
        fwrite(flat + list[i]->offset, 1, (size_t)bytes, b);
        off += bytes;
      }
    }
  fprintf(m, "state/sampler/source.position int64 %ld 40 1 5\n", off);
  fwrite(s->sampler, 1, 40, b);
  off += 40;
  fprintf(m, "state/class_stats/freq float64 %ld 48 2 3 2\n", off);
  fwrite(s->class_freq, 1, 48, b);
  off += 48;
  fprintf(m, "state/flags uint8 %ld 4 1 4\n", off);
  fwrite(s->flags, 1, 4, b);
  off += 4;
  fprintf(m, "optim/step int64 %ld 8 0\n", off);
  fwrite(&s->step, 1, 8, b);
  off += 8;
  fprintf(m, "state/loss_scale float64 %ld 8 0\n", off);
  fwrite(&s->loss_scale, 1, 8, b);
  fclose(m);
  fclose(b);
}

/* Checks our file with h5py (names, dtypes, shapes, bytes, meta attributes),
 * then writes the same content with h5py into argv[4] for the C side to read. */
static const char *PY_SCRIPT =
    "import sys, zlib, h5py, numpy as np\n"
    "ckpt, manifest, blob_path, out, config = sys.argv[1:6]\n"
    "config = open(config, encoding='utf-8').read()\n"
    "blob = open(blob_path, 'rb').read()\n"
    "rows = [l.split() for l in open(manifest)]\n"
    "bad = []\n"
    "with h5py.File(ckpt, 'r') as f:\n"
    "    m = f['meta'].attrs\n"
    "    if m['format'] != 't2sda-ckpt': bad.append('format %r' % m['format'])\n"
    "    if int(m['version']) != 1: bad.append('version')\n"
    "    if int(m['iteration']) != 1234: bad.append('iteration')\n"
    "    if int(m['world_size']) != 2: bad.append('world_size')\n"
    "    if m['config'] != config: bad.append('config %r' % m['config'])\n"
    "    if not str(m['build']).startswith('t2sda'): bad.append('build %r' % m['build'])\n"
    "    seen = set()\n"
    "    f.visititems(lambda n, o: seen.add(n) if isinstance(o, h5py.Dataset) else None)\n"
    "    want = set()\n"
    "    for name, dt, off, n, nd, *dims in rows:\n"
    "        want.add(name)\n"
    "        ref = np.frombuffer(blob[int(off):int(off) + int(n)], dtype=dt)"
    ".reshape([int(d) for d in dims])\n"
    "        if name not in f: bad.append('missing ' + name); continue\n"
    "        got = f[name][()]\n"
    "        got = np.asarray(got)\n"
    "        if got.dtype != np.dtype(dt) or got.shape != ref.shape or got.tobytes() != "
    "ref.tobytes():\n"
    "            bad.append('%s: %s %s' % (name, got.dtype, got.shape))\n"
    "        elif int(f[name].attrs.get('crc32', -1)) != zlib.crc32(ref.tobytes()):\n"
    "            bad.append('%s: crc32 attribute' % name)\n"
    "    if seen != want: bad.append('datasets differ: %r' % sorted(seen ^ want))\n"
    "if bad: print('h5py check failed:', bad); sys.exit(1)\n"
    "with h5py.File(out, 'w') as g:\n"
    "    meta = g.create_group('meta')\n"
    "    meta.attrs['format'] = 't2sda-ckpt'\n"
    "    meta.attrs['version'] = 1\n"
    "    meta.attrs['iteration'] = 77\n"
    "    meta.attrs['world_size'] = 2\n"
    "    meta.attrs['config'] = config\n"
    "    for name, dt, off, n, nd, *dims in rows:\n"
    "        g[name] = np.frombuffer(blob[int(off):int(off) + int(n)], dtype=dt)"
    ".reshape([int(d) for d in dims])\n"
    "print('h5py: %d datasets match, wrote %s' % (len(rows), out))\n";

static int have_h5py(const char **python) {
  if (getenv("T2S_SOURCE_DIR") == NULL) return 0;
  *python = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
  char cmd[256];
  snprintf(cmd, sizeof cmd, "%s -c 'import h5py' >/dev/null 2>&1", *python);
  return system(cmd) == 0;
}

static void test_h5py(const char *good) {
  const char *python = NULL;
  if (!have_h5py(&python)) {
    printf("note: h5py interoperability not checked (needs T2S_SOURCE_DIR and python3 with "
           "h5py)\n");
    return;
  }
  char script[1200], manifest[1200], blob[1200], out[1200], config[1200], cmd[8192];
  path_in_dir(script, sizeof script, "check.py");
  path_in_dir(manifest, sizeof manifest, "manifest.txt");
  path_in_dir(blob, sizeof blob, "values.bin");
  path_in_dir(out, sizeof out, "from_h5py.h5");
  path_in_dir(config, sizeof config, "config.yaml");
  FILE *f = fopen(script, "w"), *c = fopen(config, "w");
  CHECK(f && c);
  if (!f || !c) return;
  fputs(PY_SCRIPT, f);
  fputs(CONFIG, c);
  fclose(f);
  fclose(c);
  run_state a, b;
  make_state(&a, 1);
  make_state(&b, 4);
  write_manifest(&a, manifest, blob);
  snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' '%s' '%s' '%s' '%s'", python, script, good, manifest,
           blob, out, config);
  CHECK_MSG(system(cmd) == 0, "h5py could not read %s as expected", good);
  int64_t it = 0;
  char *yaml = NULL;
  t2s_error err = {0};
  CHECK_MSG(read_state(out, &b, &it, &yaml, &err) == T2S_OK, "reading h5py's file: %s", err.msg);
  CHECK(it == 77);
  CHECK_MSG(yaml && strcmp(yaml, CONFIG) == 0, "config from h5py: '%s'", yaml);
  CHECK_MSG(same_state(&a, &b), "the h5py-written checkpoint does not read back exactly");
  free(yaml);
  free_state(&a);
  free_state(&b);
  unlink(script);
  unlink(manifest);
  unlink(blob);
  unlink(out);
  unlink(config);
}

int main(void) {
  const char *base = getenv("T2S_BINARY_DIR");
  snprintf(g_dir, sizeof g_dir, "%s/ckpt_test_XXXXXX", base ? base : "/tmp");
  if (mkdtemp(g_dir) == NULL) {
    fprintf(stderr, "cannot create a directory from %s: %s\n", g_dir, strerror(errno));
    return 1;
  }
  char good[1200];
  path_in_dir(good, sizeof good, "iter_1234.ckpt");
  test_round_trip(good);
  test_network_mismatch(good);
  test_checksums(good);
  test_bad_files(good);
  test_writer_refusals();
  test_nhwc_weights();
  test_h5py(good);
  test_interrupted_write(good);
  test_full_disk();
  unlink(good);
  /* every reader and writer released its files, groups, datasets and attributes */
  ssize_t open_ids = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
  CHECK_MSG(open_ids == 0, "%zd HDF5 objects are still open", open_ids);
  if (rmdir(g_dir) != 0) printf("note: %s not removed: %s\n", g_dir, strerror(errno));
  return t2s_test_finish("test_checkpoint");
}
