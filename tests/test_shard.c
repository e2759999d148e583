// ctest-labels: unit
/* Dataset shards: writer -> reader round trips, h5py reading our shards and our
 * reader reading h5py's, the reader's validation of every field, the direct
 * chunk path under threads, atomic commit, datasets built from globs, and the
 * optional /orig_size (source sizes before a resize; shards without it still load).
 * Expected contents are a closed form (the same one tools/check_shard_h5py.py
 * uses), never what the writer produced. */
#include <errno.h>
#include <hdf5.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "data/shard.h"
#include "data/shard_fast.h"
#include "tests/harness.h"

static char g_dir[1024];

static void path_in_dir(char *buf, size_t size, const char *name) {
  snprintf(buf, size, "%s/%s", g_dir, name);
}

static int exists(const char *path) { return access(path, F_OK) == 0; }

/* The closed form shared with tools/check_shard_h5py.py. */
static uint8_t pixel(int i, int y, int x, int c) {
  return (uint8_t)((29 * i + 7 * y + 13 * x + 101 * c) % 256);
}
static uint8_t label_of(int i, int y, int x, int classes) {
  int v = (i + 3 * y + x) % (classes + 1);
  return (uint8_t)(v == classes ? 255 : v);
}

static void fill(int i, int h, int w, int classes, uint8_t *rgb, uint8_t *label) {
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      for (int c = 0; c < 3; c++) rgb[((size_t)y * w + x) * 3 + c] = pixel(i, y, x, c);
      if (label) label[(size_t)y * w + x] = label_of(i, y, x, classes);
    }
}

static t2s_shard_meta make_meta(int h, int w, int classes, int labelled) {
  t2s_shard_meta m;
  memset(&m, 0, sizeof m);
  m.num_classes = classes;
  m.ignore_index = 255;
  for (int c = 0; c < classes; c++) snprintf(m.class_names[c], T2S_CLASS_NAME_MAX, "class_%d", c);
  snprintf(m.domain, sizeof m.domain, "h5py-test");
  snprintf(m.split, sizeof m.split, "val");
  m.has_label = labelled;
  m.height = h;
  m.width = w;
  return m;
}

/* Writes n images of the closed form (images first_index.. of the sequence). */
static int write_shard(const char *path, int first_index, int n, int h, int w, int classes,
                       int labelled, int level) {
  t2s_error err = {0};
  t2s_shard_meta m = make_meta(h, w, classes, labelled);
  t2s_shard_writer *wr = t2s_shard_writer_open(path, &m, level, &err);
  CHECK_MSG(wr != NULL, "writer_open %s: %s", path, err.msg);
  if (wr == NULL) return 0;
  uint8_t *rgb = malloc((size_t)h * w * 3), *lab = malloc((size_t)h * w);
  int ok = 1;
  for (int i = 0; i < n && ok; i++) {
    char name[32];
    snprintf(name, sizeof name, "img_%03d", first_index + i);
    fill(first_index + i, h, w, classes, rgb, lab);
    ok = t2s_shard_writer_add(wr, name, rgb, labelled ? lab : NULL, &err) == T2S_OK;
    CHECK_MSG(ok, "writer_add %d: %s", i, err.msg);
  }
  free(rgb);
  free(lab);
  if (!ok) {
    t2s_shard_writer_abort(wr);
    return 0;
  }
  ok = t2s_shard_writer_commit(wr, &err) == T2S_OK;
  CHECK_MSG(ok, "commit %s: %s", path, err.msg);
  return ok;
}

/* Reads every image of a shard and compares with the closed form (images
 * first_index.. of the sequence); also names and class pixel counts. */
static void check_contents(t2s_shard *s, int first_index, int n, int h, int w, int classes,
                           int labelled) {
  const t2s_shard_meta *m = t2s_shard_info(s);
  CHECK(m->count == n && m->height == h && m->width == w && m->num_classes == classes);
  CHECK(m->has_label == labelled && m->ignore_index == 255);
  CHECK(strcmp(m->domain, "h5py-test") == 0 && strcmp(m->split, "val") == 0);
  for (int c = 0; c < classes; c++) {
    char want[32];
    snprintf(want, sizeof want, "class_%d", c);
    CHECK_MSG(strcmp(m->class_names[c], want) == 0, "class %d is '%s'", c, m->class_names[c]);
  }
  uint8_t *rgb = malloc((size_t)h * w * 3), *lab = malloc((size_t)h * w);
  uint8_t *want_rgb = malloc((size_t)h * w * 3), *want_lab = malloc((size_t)h * w);
  const int64_t *cp = t2s_shard_class_pixels(s);
  CHECK((cp != NULL) == labelled);
  for (int i = 0; i < n; i++) {
    t2s_error err = {0};
    fill(first_index + i, h, w, classes, want_rgb, want_lab);
    CHECK_MSG(t2s_shard_read(s, i, rgb, labelled ? lab : NULL, &err) == T2S_OK, "read %d: %s", i,
              err.msg);
    CHECK_MSG(memcmp(rgb, want_rgb, (size_t)h * w * 3) == 0, "%s image %d differs",
              t2s_shard_path(s), i);
    if (labelled) {
      CHECK_MSG(memcmp(lab, want_lab, (size_t)h * w) == 0, "%s label %d differs",
                t2s_shard_path(s), i);
      for (int c = 0; c < classes && cp; c++) {
        int64_t count = 0;
        for (int p = 0; p < h * w; p++) count += want_lab[p] == c;
        CHECK_MSG(cp[(size_t)i * classes + c] == count, "class_pixels[%d][%d] = %lld, want %lld",
                  i, c, (long long)cp[(size_t)i * classes + c], (long long)count);
      }
    }
    char name[64], want_name[32];
    snprintf(want_name, sizeof want_name, "img_%03d", first_index + i);
    CHECK_MSG(t2s_shard_read_name(s, i, name, sizeof name, &err) == T2S_OK, "name %d: %s", i,
              err.msg);
    CHECK_MSG(strcmp(name, want_name) == 0, "name %d is '%s'", i, name);
  }
  free(rgb);
  free(lab);
  free(want_rgb);
  free(want_lab);
}

static void test_roundtrip(void) {
  char path[1200];
  path_in_dir(path, sizeof path, "rt.h5");
  if (!write_shard(path, 0, 5, 6, 7, 4, 1, 3)) return;
  t2s_error err = {0};
  t2s_shard *s = t2s_shard_open(path, &err);
  CHECK_MSG(s != NULL, "open: %s", err.msg);
  if (s == NULL) return;
  check_contents(s, 0, 5, 6, 7, 4, 1);
  /* the direct path: our chunks are one zlib stream each */
  t2s_shard_chunk c = {0};
  CHECK(t2s_shard_read_raw_chunk(s, "image", 2, &c, &err) == T2S_OK);
  CHECK(c.codec == T2S_CHUNK_ZLIB && c.decoded_size == 6 * 7 * 3);
  uint8_t out[6 * 7 * 3];
  CHECK(t2s_shard_decode_chunk(&c, out, sizeof out, &err) == T2S_OK && out[0] == pixel(2, 0, 0, 0));
  /* a damaged stream is reported, not decoded into garbage */
  if (c.size > 4) c.bytes[c.size / 2] ^= 0x5a;
  c.bytes[0] ^= 0xff;
  t2s_error derr = {0};
  CHECK(t2s_shard_decode_chunk(&c, out, sizeof out, &derr) == T2S_ERR_FORMAT);
  t2s_shard_chunk_free(&c);
  /* errors of the read calls */
  uint8_t lab[6 * 7];
  t2s_error e1 = {0}, e2 = {0};
  CHECK(t2s_shard_read(s, 5, out, lab, &e1) == T2S_ERR_INVALID && strstr(e1.msg, path));
  CHECK(t2s_shard_read_raw_chunk(s, "weights", 0, &c, &e2) == T2S_ERR_INVALID);
  t2s_shard_chunk_free(&c);
  t2s_shard_close(s);

  path_in_dir(path, sizeof path, "unlabelled.h5");
  if (!write_shard(path, 3, 2, 4, 5, 2, 0, 1)) return;
  s = t2s_shard_open(path, &err);
  CHECK_MSG(s != NULL, "open: %s", err.msg);
  if (s == NULL) return;
  check_contents(s, 3, 2, 4, 5, 2, 0);
  t2s_error e3 = {0};
  CHECK(t2s_shard_read(s, 0, out, lab, &e3) == T2S_ERR_INVALID && strstr(e3.msg, "no /label"));
  t2s_shard_close(s);
}

/* The closed form of an original size shared with tools/check_shard_h5py.py. */
static void orig_of(int i, int h, int w, int *oh, int *ow) {
  *oh = 2 * h + i;
  *ow = 3 * w;
}

/* /orig_size: t2s_shard_writer_add records the shard's size, an item carries any
 * other; a shard without the dataset (older) loads and reports its own size. */
static void test_orig_size(void) {
  char path[1200], dpath[1][512];
  path_in_dir(path, sizeof path, "orig.h5");
  t2s_error err = {0};
  t2s_shard_meta m = make_meta(4, 5, 3, 1);
  t2s_shard_writer *w = t2s_shard_writer_open(path, &m, 1, &err);
  CHECK_MSG(w != NULL, "%s", err.msg);
  if (w == NULL) return;
  uint8_t rgb[4 * 5 * 3], lab[4 * 5];
  for (int i = 0; i < 3; i++) {
    t2s_shard_item it;
    fill(i, 4, 5, 3, rgb, lab);
    CHECK(t2s_shard_encode_item(&m, 1, rgb, lab, &it, &err) == T2S_OK);
    CHECK(it.orig_height == 4 && it.orig_width == 5); /* the default: not resized */
    orig_of(i, 4, 5, &it.orig_height, &it.orig_width);
    char name[16];
    snprintf(name, sizeof name, "img_%03d", i);
    CHECK_MSG(t2s_shard_writer_add_item(w, name, &it, &err) == T2S_OK, "%s", err.msg);
    t2s_shard_item_free(&it);
  }
  /* an impossible original size is refused naming the image; the shard is not committed */
  t2s_shard_item bad;
  CHECK(t2s_shard_encode_item(&m, 1, rgb, lab, &bad, &err) == T2S_OK);
  bad.orig_width = 0;
  t2s_error e1 = {0};
  CHECK(t2s_shard_writer_add_item(w, "zero", &bad, &e1) == T2S_ERR_INVALID && strstr(e1.msg, "'zero'") &&
        strstr(e1.msg, "original size"));
  t2s_shard_item_free(&bad);
  CHECK(t2s_shard_writer_commit(w, &err) == T2S_OK);
  t2s_shard *s = t2s_shard_open(path, &err);
  CHECK_MSG(s != NULL, "%s", err.msg);
  if (s == NULL) return;
  CHECK(t2s_shard_info(s)->has_orig_size && t2s_shard_info(s)->count == 3);
  for (int i = 0; i < 3; i++) {
    int oh = 0, ow = 0, wh = 0, ww = 0;
    orig_of(i, 4, 5, &wh, &ww);
    CHECK_MSG(t2s_shard_orig_size(s, i, &oh, &ow) == 1 && oh == wh && ow == ww, "image %d: %dx%d", i, oh, ow);
  }
  t2s_shard_close(s);
  /* the dataset records original sizes only when every shard does */
  char old[1200];
  path_in_dir(old, sizeof old, "orig_old.h5");
  if (!write_shard(old, 0, 2, 4, 5, 3, 1, 1)) return;
  s = t2s_shard_open(old, &err);
  int oh = 0, ow = 0;
  CHECK(s && t2s_shard_info(s)->has_orig_size && t2s_shard_orig_size(s, 1, &oh, &ow) == 1 && oh == 4 && ow == 5);
  t2s_shard_close(s);
  hid_t f = H5Fopen(old, H5F_ACC_RDWR, H5P_DEFAULT);
  CHECK(f >= 0 && H5Ldelete(f, "orig_size", H5P_DEFAULT) >= 0);
  if (f >= 0) H5Fclose(f);
  s = t2s_shard_open(old, &err);
  CHECK_MSG(s != NULL, "a shard without /orig_size must load: %s", err.msg);
  if (s == NULL) return;
  CHECK(!t2s_shard_info(s)->has_orig_size);
  CHECK(t2s_shard_orig_size(s, 1, &oh, &ow) == 0 && oh == 4 && ow == 5);
  t2s_shard_close(s);
  t2s_dataset ds;
  snprintf(dpath[0], sizeof dpath[0], "%s/orig*.h5", g_dir);
  CHECK_MSG(t2s_dataset_open(&ds, (const char(*)[512])dpath, 1, "test", &err) == T2S_OK, "%s", err.msg);
  CHECK(ds.count == 5 && !ds.meta.has_orig_size);
  t2s_dataset_close(&ds);
}

/* Nothing appears under the final name before commit; abort leaves nothing. */
static void test_commit_abort(void) {
  char path[1200], tmp[1300];
  path_in_dir(path, sizeof path, "atomic.h5");
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  t2s_error err = {0};
  t2s_shard_meta m = make_meta(2, 3, 2, 1);
  uint8_t rgb[18] = {0}, lab[6] = {0, 1, 255, 1, 0, 0};
  t2s_shard_writer *w = t2s_shard_writer_open(path, &m, 2, &err);
  CHECK_MSG(w != NULL, "%s", err.msg);
  if (w == NULL) return;
  CHECK(t2s_shard_writer_add(w, "a", rgb, lab, &err) == T2S_OK);
  CHECK(!exists(path) && exists(tmp));
  t2s_shard_writer_abort(w);
  CHECK(!exists(path) && !exists(tmp));

  w = t2s_shard_writer_open(path, &m, 2, &err);
  CHECK(w != NULL);
  if (w == NULL) return;
  CHECK(t2s_shard_writer_add(w, "a", rgb, lab, &err) == T2S_OK);
  t2s_error e = {0};
  CHECK(t2s_shard_writer_add(w, "b", rgb, NULL, &e) == T2S_ERR_INVALID);
  /* a failed add poisons the writer: commit refuses and removes the temporary */
  t2s_error e2 = {0};
  CHECK(t2s_shard_writer_commit(w, &e2) != T2S_OK && strstr(e2.msg, "earlier"));
  CHECK(!exists(path) && !exists(tmp));

  t2s_error e3 = {0}, e4 = {0};
  m.num_classes = 0;
  CHECK(t2s_shard_writer_open(path, &m, 2, &e3) == NULL && strstr(e3.msg, "num_classes"));
  m.num_classes = 2;
  CHECK(t2s_shard_writer_open(path, &m, 7, &e4) == NULL && strstr(e4.msg, "deflate level"));
  CHECK(!exists(path) && !exists(tmp));
}

/* A full disk, simulated with a file-size limit (EFBIG once SIGXFSZ is ignored):
 * the writer fails with a message naming the file, leaves no temporary file, and
 * the process still exits normally (HDF5 1.10 crashed in its atexit shutdown on
 * the file id that a failed close left behind). */
static void full_disk_child(const char *path) {
  signal(SIGXFSZ, SIG_IGN);
  struct rlimit lim = {256 << 10, 256 << 10};
  if (setrlimit(RLIMIT_FSIZE, &lim) != 0) _exit(10);
  t2s_error err = {0};
  t2s_shard_meta m = make_meta(64, 64, 3, 1);
  t2s_shard_writer *w = t2s_shard_writer_open(path, &m, 1, &err);
  if (w == NULL) _exit(11);
  uint8_t rgb[64 * 64 * 3], lab[64 * 64];
  uint32_t x = 12345;
  t2s_status st = T2S_OK;
  for (int i = 0; i < 40 && st == T2S_OK; i++) {
    for (size_t k = 0; k < sizeof rgb; k++) rgb[k] = (uint8_t)((x = x * 1664525u + 1013904223u) >> 24);
    for (size_t k = 0; k < sizeof lab; k++) lab[k] = (uint8_t)(k % 3);
    st = t2s_shard_writer_add(w, "noise", rgb, lab, &err);
  }
  if (st != T2S_OK) t2s_shard_writer_abort(w);
  else st = t2s_shard_writer_commit(w, &err);
  fprintf(stderr, "full-disk shard writer: %s\n", st == T2S_OK ? "committed" : err.msg);
  /* exit(), not _exit(): HDF5's shutdown must run and survive */
  exit(st == T2S_OK ? 13 : (strstr(err.msg, path) != NULL ? 7 : 14));
}

static void test_full_disk(void) {
  char path[1200], tmp[1300];
  path_in_dir(path, sizeof path, "full_disk.h5");
  long child = 0;
  int rc = t2s_test_in_child(full_disk_child, path, &child);
  CHECK_MSG(rc == 7, "full-disk shard writer: expected a clean exit 7 after a named error, got %d (> 128: signal %d)",
            rc, rc - 128);
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, child);
  CHECK_MSG(!exists(tmp) && !exists(path), "the failed shard writer left %s or %s", tmp, path);
}

/* ---- h5py interoperability ---- */

static int have_h5py(char *script, size_t size) {
  const char *src = getenv("T2S_SOURCE_DIR");
  if (src == NULL || access("/usr/bin/python3", X_OK) != 0) return 0;
  snprintf(script, size, "%s/tools/check_shard_h5py.py", src);
  return system("/usr/bin/python3 -c 'import h5py, numpy' >/dev/null 2>&1") == 0;
}

static void test_h5py(void) {
  char script[1200], path[1200], cmd[4096];
  if (!have_h5py(script, sizeof script)) {
    printf("note: h5py interoperability not checked (needs T2S_SOURCE_DIR and /usr/bin/python3 "
           "with h5py and numpy: tools/setup.sh installs them)\n");
    return;
  }
  path_in_dir(path, sizeof path, "for_h5py.h5");
  if (write_shard(path, 0, 4, 5, 6, 3, 1, 2)) {
    /* our writer's /orig_size is [H, W] of every image (no resize) */
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' check '%s' 4 5 6 3 2", script, path);
    CHECK_MSG(system(cmd) == 0, "h5py does not read %s as the contract says", path);
  }
  const char *variants[] = {"plain", "other"};
  for (int v = 0; v < 2; v++) {
    char name[64];
    snprintf(name, sizeof name, "from_h5py_%s.h5", variants[v]);
    path_in_dir(path, sizeof path, name);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' write '%s' 3 9 8 5 %s", script, path,
             variants[v]);
    CHECK_MSG(system(cmd) == 0, "h5py could not write %s", path);
    t2s_error err = {0};
    t2s_shard *s = t2s_shard_open(path, &err);
    CHECK_MSG(s != NULL, "reading h5py's %s shard: %s", variants[v], err.msg);
    if (s == NULL) continue;
    check_contents(s, 0, 3, 9, 8, 5, 1);
    /* "plain" writes the closed-form /orig_size, "other" none (an older shard) */
    for (int i = 0; i < 3; i++) {
      int oh = 0, ow = 0, wh = 9, ww = 8;
      if (v == 0) orig_of(i, 9, 8, &wh, &ww);
      CHECK_MSG(t2s_shard_orig_size(s, i, &oh, &ow) == (v == 0) && oh == wh && ow == ww,
                "%s: image %d has original size %dx%d", variants[v], i, oh, ow);
    }
    t2s_shard_chunk c = {0};
    CHECK(t2s_shard_read_raw_chunk(s, "label", 1, &c, &err) == T2S_OK);
    /* one gzip chunk per image reads directly; shuffle+gzip goes through H5Dread */
    CHECK_MSG(c.codec == (v == 0 ? T2S_CHUNK_ZLIB : T2S_CHUNK_RAW), "%s: codec %d", variants[v],
              (int)c.codec);
    t2s_shard_chunk_free(&c);
    t2s_shard_close(s);
  }
}

/* ---- checksums ---- */

/* Replaces image i's stored chunk by a valid zlib stream of pixels with one bit
 * flipped: zlib cannot notice, only the stored CRC32 can (the same as a flipped
 * bit in an unfiltered chunk). */
static void flip_pixel_bit(const char *path, const char *dataset, int i, size_t bytes) {
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  hid_t ds = f < 0 ? -1 : H5Dopen2(f, dataset, H5P_DEFAULT);
  CHECK(ds >= 0);
  hsize_t offset[4] = {(hsize_t)i, 0, 0, 0}, stored = 0;
  uint32_t mask = 0;
  CHECK(H5Dget_chunk_storage_size(ds, offset, &stored) >= 0 && stored > 0);
  uint8_t *z = malloc(stored), *pix = malloc(bytes), *z2 = malloc(compressBound(bytes));
  uLongf n = bytes, n2 = compressBound(bytes);
  CHECK(H5Dread_chunk(ds, H5P_DEFAULT, offset, &mask, z) >= 0);
  CHECK(uncompress(pix, &n, z, stored) == Z_OK && n == bytes);
  pix[bytes / 2] ^= 0x10;
  CHECK(compress2(z2, &n2, pix, bytes, 1) == Z_OK);
  CHECK(H5Dwrite_chunk(ds, H5P_DEFAULT, 0, offset, n2, z2) >= 0);
  free(z);
  free(pix);
  free(z2);
  H5Dclose(ds);
  H5Fclose(f);
}

static void test_checksums(void) {
  char path[1200], old[1200];
  path_in_dir(path, sizeof path, "crc.h5");
  path_in_dir(old, sizeof old, "crc_old.h5");
  if (!write_shard(path, 0, 3, 6, 7, 4, 1, 1)) return;
  char cmd[3000];
  snprintf(cmd, sizeof cmd, "cp '%s' '%s'", path, old);
  CHECK(system(cmd) == 0);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  flip_pixel_bit(path, "image", 1, 6 * 7 * 3);
  flip_pixel_bit(path, "label", 2, 6 * 7);
  t2s_error err = {0};
  t2s_shard *s = t2s_shard_open(path, &err);
  CHECK_MSG(s != NULL, "%s", err.msg);
  if (s == NULL) return;
  uint8_t rgb[6 * 7 * 3], lab[6 * 7];
  CHECK(t2s_shard_read(s, 0, rgb, lab, &err) == T2S_OK);
  t2s_error e1 = {0}, e2 = {0};
  CHECK(t2s_shard_read(s, 1, rgb, NULL, &e1) == T2S_ERR_FORMAT);
  CHECK_MSG(strstr(e1.msg, path) && strstr(e1.msg, "/image[1]") && strstr(e1.msg, "checksum"),
            "a flipped image bit: %s", e1.msg);
  printf("  e.g. %s\n", e1.msg);
  CHECK(t2s_shard_read(s, 2, rgb, lab, &e2) == T2S_ERR_FORMAT);
  CHECK_MSG(strstr(e2.msg, path) && strstr(e2.msg, "/label[2]"), "a flipped label bit: %s",
            e2.msg);
  t2s_shard_close(s);
  /* a shard from before the checksums (none stored) still reads, unverified */
  hid_t f = H5Fopen(old, H5F_ACC_RDWR, H5P_DEFAULT);
  CHECK(f >= 0 && H5Ldelete(f, "image_crc32", H5P_DEFAULT) >= 0 &&
        H5Ldelete(f, "label_crc32", H5P_DEFAULT) >= 0);
  H5Fclose(f);
  s = t2s_shard_open(old, &err);
  CHECK_MSG(s != NULL, "a shard without checksums: %s", err.msg);
  if (s == NULL) return;
  check_contents(s, 0, 3, 6, 7, 4, 1);
  t2s_shard_close(s);
  flip_pixel_bit(old, "image", 1, 6 * 7 * 3);
  s = t2s_shard_open(old, &err);
  CHECK(s != NULL && t2s_shard_read(s, 1, rgb, lab, &err) == T2S_OK); /* unverified */
  t2s_shard_close(s);
}

/* ---- validation: every field the reader relies on ---- */

typedef void (*mutation)(hid_t file);

static void set_int_attr(hid_t f, const char *name, int64_t v) {
  if (H5Aexists(f, name) > 0) H5Adelete(f, name);
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(f, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, H5T_NATIVE_INT64, &v);
  H5Aclose(a);
  H5Sclose(sp);
}

static void set_str_attr(hid_t f, const char *name, const char *v) {
  if (H5Aexists(f, name) > 0) H5Adelete(f, name);
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, t, &v);
  H5Aclose(a);
  H5Sclose(sp);
  H5Tclose(t);
}

/* Replaces dataset `name` with a zero-filled one of the given type and shape. */
static void replace_dataset(hid_t f, const char *name, hid_t type, int rank, const hsize_t *dims) {
  if (H5Lexists(f, name, H5P_DEFAULT) > 0) H5Ldelete(f, name, H5P_DEFAULT);
  hid_t sp = H5Screate_simple(rank, dims, NULL);
  hid_t ds = H5Dcreate2(f, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dclose(ds);
  H5Sclose(sp);
}

/* The base shard: 3 images 4 x 5, 3 classes, labelled. */
static void m_format(hid_t f) { set_str_attr(f, "format", "t2sda-ckpt"); }
static void m_version(hid_t f) { set_int_attr(f, "version", 2); }
static void m_classes(hid_t f) { set_int_attr(f, "num_classes", 300); }
static void m_ignore(hid_t f) { set_int_attr(f, "ignore_index", 0); }
static void m_names_gone(hid_t f) { H5Adelete(f, "class_names"); }
static void m_names_count(hid_t f) { set_int_attr(f, "num_classes", 4); }
static void m_domain(hid_t f) { H5Adelete(f, "domain"); }
static void m_image_type(hid_t f) {
  hsize_t d[4] = {3, 4, 5, 3};
  replace_dataset(f, "image", H5T_STD_I16LE, 4, d);
}
static void m_image_rank(hid_t f) {
  hsize_t d[3] = {3, 4, 15};
  replace_dataset(f, "image", H5T_STD_U8LE, 3, d);
}
static void m_label_shape(hid_t f) {
  hsize_t d[3] = {3, 4, 4};
  replace_dataset(f, "label", H5T_STD_U8LE, 3, d);
}
static void m_name_gone(hid_t f) { H5Ldelete(f, "name", H5P_DEFAULT); }
static void m_name_count(hid_t f) {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  hsize_t d[1] = {2};
  replace_dataset(f, "name", t, 1, d);
  H5Tclose(t);
}
static void m_pixels_shape(hid_t f) {
  hsize_t d[2] = {3, 2};
  replace_dataset(f, "class_pixels", H5T_STD_I64LE, 2, d);
}
static void m_pixels_type(hid_t f) {
  hsize_t d[2] = {3, 3};
  replace_dataset(f, "class_pixels", H5T_IEEE_F32LE, 2, d);
}
static void m_pixels_gone(hid_t f) { H5Ldelete(f, "class_pixels", H5P_DEFAULT); }

static void m_crc_count(hid_t f) {
  hsize_t d[1] = {2};
  replace_dataset(f, "image_crc32", H5T_STD_U32LE, 1, d);
}

static void m_image_huge(hid_t f) {
  hsize_t d[4] = {3, 100000, 100000, 3};
  replace_dataset(f, "image", H5T_STD_U8LE, 4, d);
}
static void m_count_huge(hid_t f) {
  hsize_t d[4] = {INT64_C(1) << 31, 4, 5, 3};
  replace_dataset(f, "image", H5T_STD_U8LE, 4, d);
}
static void m_pixels_negative(hid_t f) {
  hid_t ds = H5Dopen2(f, "class_pixels", H5P_DEFAULT);
  int64_t v[3][3];
  H5Dread(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
  v[1][2] = -7;
  H5Dwrite(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
  H5Dclose(ds);
}

static void m_orig_shape(hid_t f) {
  hsize_t d[2] = {3, 3};
  replace_dataset(f, "orig_size", H5T_STD_I32LE, 2, d);
}
static void m_orig_zero(hid_t f) {
  hsize_t d[2] = {3, 2}; /* zero-filled: no image is 0 x 0 */
  replace_dataset(f, "orig_size", H5T_STD_I32LE, 2, d);
}
static void m_orig_type(hid_t f) {
  hsize_t d[2] = {3, 2};
  replace_dataset(f, "orig_size", H5T_IEEE_F32LE, 2, d);
}

static int copy_file(const char *from, const char *to) {
  char cmd[3000];
  snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, to);
  return system(cmd) == 0;
}

static void test_validation(void) {
  char base[1200], bad[1200];
  path_in_dir(base, sizeof base, "valid.h5");
  path_in_dir(bad, sizeof bad, "broken.h5");
  if (!write_shard(base, 0, 3, 4, 5, 3, 1, 1)) return;
  struct {
    mutation fn;
    const char *field;
  } cases[] = {
      {m_format, "format"},           {m_version, "version"},
      {m_classes, "num_classes"},     {m_ignore, "ignore_index"},
      {m_names_gone, "class_names"},  {m_names_count, "class_names"},
      {m_domain, "domain"},           {m_image_type, "image"},
      {m_image_rank, "image"},        {m_label_shape, "label"},
      {m_name_gone, "name"},          {m_name_count, "name"},
      {m_pixels_shape, "class_pixels"}, {m_pixels_type, "class_pixels"},
      {m_pixels_gone, "class_pixels"}, {m_crc_count, "image_crc32"},
      {m_image_huge, "image"},        {m_count_huge, "image"},
      {m_pixels_negative, "class_pixels"},
      {m_orig_shape, "orig_size"},    {m_orig_zero, "orig_size"},
      {m_orig_type, "orig_size"},
  };
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    if (!copy_file(base, bad)) {
      CHECK_MSG(0, "cannot copy %s", base);
      return;
    }
    hid_t f = H5Fopen(bad, H5F_ACC_RDWR, H5P_DEFAULT);
    CHECK(f >= 0);
    cases[k].fn(f);
    H5Fclose(f);
    t2s_error err = {0};
    t2s_shard *s = t2s_shard_open(bad, &err);
    CHECK_MSG(s == NULL, "case %zu (%s): a broken shard opened", k, cases[k].field);
    char field[64];
    snprintf(field, sizeof field, ": %s:", cases[k].field);
    CHECK_MSG(err.status == T2S_ERR_FORMAT && strstr(err.msg, bad) && strstr(err.msg, field),
              "case %zu: the message should name %s and field '%s': %s", k, bad, cases[k].field,
              err.msg);
    if (k < 3) printf("  e.g. %s\n", err.msg);
    t2s_shard_close(s);
  }
  FILE *f = fopen(bad, "w");
  fputs("not hdf5\n", f);
  fclose(f);
  t2s_error e1 = {0}, e2 = {0};
  CHECK(t2s_shard_open(bad, &e1) == NULL && strstr(e1.msg, bad) && strstr(e1.msg, "not an HDF5"));
  path_in_dir(bad, sizeof bad, "absent.h5");
  CHECK(t2s_shard_open(bad, &e2) == NULL && e2.status == T2S_ERR_IO && strstr(e2.msg, bad));
}

/* ---- datasets ---- */

static void test_dataset(void) {
  char dir[1200], path[1400];
  path_in_dir(dir, sizeof dir, "ds");
  mkdir(dir, 0755);
  int sizes[3] = {2, 0, 3}; /* an empty shard in the middle must not break locate */
  int first = 0;
  for (int k = 0; k < 3; k++) {
    snprintf(path, sizeof path, "%s/part-%05d-of-00003.h5", dir, k);
    if (!write_shard(path, first, sizes[k], 3, 4, 3, 1, 1)) return;
    first += sizes[k];
  }
  char patterns[2][512];
  snprintf(patterns[0], sizeof patterns[0], "%s/part-*-of-00003.h5", dir);
  t2s_dataset ds;
  t2s_error err = {0};
  CHECK_MSG(t2s_dataset_open(&ds, (const char(*)[512])patterns, 1, "data.val.shards", &err) ==
                T2S_OK, "%s", err.msg);
  CHECK(ds.n_shards == 3 && ds.count == 5 && ds.meta.count == 5 && ds.meta.num_classes == 3);
  for (int64_t i = 0; i < ds.count; i++) {
    int64_t local = -1;
    t2s_shard *s = t2s_dataset_locate(&ds, i, &local);
    CHECK(s != NULL);
    if (s == NULL) continue;
    char name[32], want[32];
    snprintf(want, sizeof want, "img_%03d", (int)i);
    CHECK(t2s_shard_read_name(s, local, name, sizeof name, &err) == T2S_OK);
    CHECK_MSG(strcmp(name, want) == 0, "global %d -> '%s'", (int)i, name);
  }
  CHECK(t2s_dataset_locate(&ds, 5, NULL) == NULL && t2s_dataset_locate(&ds, -1, NULL) == NULL);
  t2s_dataset_close(&ds);

  /* a pattern that matches nothing names the key and the pattern */
  snprintf(patterns[1], sizeof patterns[1], "%s/nothing-*.h5", dir);
  t2s_error e1 = {0};
  CHECK(t2s_dataset_open(&ds, (const char(*)[512])patterns, 2, "data.val.shards", &e1) != T2S_OK);
  CHECK_MSG(strstr(e1.msg, "data.val.shards") && strstr(e1.msg, patterns[1]), "%s", e1.msg);

  /* shards that disagree on the classes or on labels */
  snprintf(patterns[1], sizeof patterns[1], "%s/other.h5", dir);
  if (!write_shard(patterns[1], 0, 1, 3, 4, 5, 1, 1)) return;
  t2s_error e2 = {0};
  CHECK(t2s_dataset_open(&ds, (const char(*)[512])patterns, 2, "data.source.shards", &e2) != T2S_OK);
  CHECK_MSG(strstr(e2.msg, "data.source.shards") && strstr(e2.msg, "classes"), "%s", e2.msg);
  if (!write_shard(patterns[1], 0, 1, 3, 4, 3, 0, 1)) return;
  t2s_error e3 = {0};
  CHECK(t2s_dataset_open(&ds, (const char(*)[512])patterns, 2, "data.source.shards", &e3) != T2S_OK);
  CHECK_MSG(strstr(e3.msg, "unlabelled"), "%s", e3.msg);
}

/* ---- threads: raw reads under the lock, decoding in parallel ---- */

typedef struct reader_job {
  t2s_shard *s;
  int n, h, w, classes, failures;
} reader_job;

static void *reader_thread(void *arg) {
  reader_job *j = arg;
  size_t hw = (size_t)j->h * j->w;
  uint8_t *rgb = malloc(hw * 3), *want = malloc(hw * 3), *lab = malloc(hw);
  t2s_shard_chunk c = {0};
  for (int round = 0; round < 20; round++)
    for (int i = 0; i < j->n; i++) {
      t2s_error err = {0};
      fill(i, j->h, j->w, j->classes, want, lab);
      if (t2s_shard_read_raw_chunk(j->s, "image", i, &c, &err) != T2S_OK ||
          t2s_shard_decode_chunk(&c, rgb, hw * 3, &err) != T2S_OK || memcmp(rgb, want, hw * 3))
        j->failures++;
    }
  t2s_shard_chunk_free(&c);
  free(rgb);
  free(want);
  free(lab);
  return NULL;
}

static void test_threads(void) {
  char path[1200];
  path_in_dir(path, sizeof path, "threads.h5");
  if (!write_shard(path, 0, 6, 16, 24, 4, 1, 4)) return;
  t2s_error err = {0};
  t2s_shard *s = t2s_shard_open(path, &err);
  CHECK_MSG(s != NULL, "%s", err.msg);
  if (s == NULL) return;
  reader_job jobs[3];
  pthread_t th[3];
  for (int t = 0; t < 3; t++) {
    jobs[t] = (reader_job){s, 6, 16, 24, 4, 0};
    pthread_create(&th[t], NULL, reader_thread, &jobs[t]);
  }
  for (int t = 0; t < 3; t++) {
    pthread_join(th[t], NULL);
    CHECK_MSG(jobs[t].failures == 0, "thread %d: %d bad reads", t, jobs[t].failures);
  }
  t2s_shard_close(s);
}

int main(void) {
  const char *base = getenv("T2S_BINARY_DIR");
  snprintf(g_dir, sizeof g_dir, "%s/shard_test_XXXXXX", base ? base : "/tmp");
  if (mkdtemp(g_dir) == NULL) {
    fprintf(stderr, "cannot create a directory from %s: %s\n", g_dir, strerror(errno));
    return 1;
  }
  test_roundtrip();
  test_orig_size();
  test_commit_abort();
  test_full_disk();
  test_h5py();
  test_validation();
  test_checksums();
  test_dataset();
  test_threads();
  if (t2s_test_failures == 0) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "note: could not remove %s\n", g_dir);
  }
  return t2s_test_finish("test_shard");
}
