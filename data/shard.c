/* Dataset shards (data/shard.h): the HDF5 writer, the validating reader, and
 * datasets made of many shards.
 *
 * Images and labels are chunked one image per chunk and written/read as whole
 * chunks (H5Dwrite_chunk / H5Dread_chunk) with zlib called by us, so that the
 * compression can run outside the HDF5 lock (data/shard_fast.h). A chunk written
 * this way is byte-identical to what HDF5's own deflate filter stores, which is
 * what h5py and H5Dread decode. */
#include "data/shard.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <hdf5.h>

#include "core/formats/durable_file.h"
#include "core/formats/hdf5_error.h"
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "data/shard_fast.h"

#define PATH_CAP 4096
#define NAME_CHUNK 256 /* /name and /class_pixels rows per chunk */
/* Caps on what a shard may declare, so that a damaged or hostile header is refused
 * before anything is allocated from it: 2^28 pixels per image (16384 x 16384) and
 * 2^24 images per shard (t2sda_shards --shards splits larger sets). */
#define MAX_IMAGE_PIXELS (INT64_C(1) << 28)
#define MAX_SHARD_IMAGES (INT64_C(1) << 24)

/* Debian's libhdf5 is built without thread safety: every HDF5 call made here
 * runs under this lock. It is the one piece of process-wide state in this file,
 * and it exists because the library it guards is process-wide state too. */
static pthread_mutex_t h5_lock = PTHREAD_MUTEX_INITIALIZER;
static void lock_h5(void) { pthread_mutex_lock(&h5_lock); }
static void unlock_h5(void) { pthread_mutex_unlock(&h5_lock); }

/* ---- messages --------------------------------------------------------------- */

static t2s_status h5_fail(t2s_error *err, const char *file, const char *call, const char *object) {
  return t2s_h5_fail(err, "shard", file, call, object);
}

/* "shard FILE: FIELD: what is wrong" — the reader's format errors. */
static t2s_status bad_field(t2s_error *err, const char *file, const char *field, const char *fmt,
                            ...) __attribute__((format(printf, 4, 5)));
static t2s_status bad_field(t2s_error *err, const char *file, const char *field, const char *fmt,
                            ...) {
  char what[600];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  return t2s_error_set(err, T2S_ERR_FORMAT,
                       "shard %s: %s: %s (was this file written by t2sda_shards? see docs/formats.md "
                       "\"Dataset shards\")", file, field, what);
}

static void h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static void close_id(hid_t *id, herr_t (*close_fn)(hid_t)) {
  if (*id >= 0) close_fn(*id);
  *id = -1;
}

static void close_file(hid_t *id) {
  if (*id >= 0) t2s_h5_close_file(*id);
  *id = -1;
}

/* ---- encoding (no HDF5) -------------------------------------------------------- */

static int level_or_default(int level) { return level <= 0 ? 3 : level; }

static t2s_status deflate_bytes(const uint8_t *src, size_t n, int level, uint8_t **out,
                                size_t *out_size, const char *what, t2s_error *err) {
  uLongf cap = compressBound((uLong)n);
  uint8_t *dst = malloc(cap);
  if (dst == NULL)
    return t2s_error_set(err, T2S_ERR_NOMEM, "shard: out of memory compressing %s (%zu bytes)",
                         what, n);
  int rc = compress2(dst, &cap, src, (uLong)n, level);
  if (rc != Z_OK) {
    free(dst);
    return t2s_error_set(err, T2S_ERR_BACKEND, "shard: zlib compress2 failed for %s: %s", what,
                         zError(rc));
  }
  *out = dst;
  *out_size = cap;
  return T2S_OK;
}

t2s_status t2s_shard_encode_item(const t2s_shard_meta *meta, int deflate_level,
                                 const uint8_t *rgb, const uint8_t *label, t2s_shard_item *item,
                                 t2s_error *err) {
  memset(item, 0, sizeof *item);
  if ((label != NULL) != (meta->has_label != 0))
    return t2s_error_set(err, T2S_ERR_INVALID,
                         "shard: %s image needs %s label map (the shard is %s)",
                         label ? "an unlabelled" : "a labelled", label ? "no" : "a",
                         meta->has_label ? "labelled" : "unlabelled");
  int level = level_or_default(deflate_level);
  size_t hw = (size_t)meta->height * (size_t)meta->width;
  t2s_status st = deflate_bytes(rgb, hw * 3, level, &item->image_z, &item->image_z_size,
                                "an image", err);
  if (st == T2S_OK && label != NULL)
    st = deflate_bytes(label, hw, level, &item->label_z, &item->label_z_size, "a label map", err);
  if (st != T2S_OK) {
    t2s_shard_item_free(item);
    return st;
  }
  item->image_crc = (uint32_t)crc32(0L, rgb, (uInt)(hw * 3));
  item->orig_height = meta->height;
  item->orig_width = meta->width;
  if (label != NULL) item->label_crc = (uint32_t)crc32(0L, label, (uInt)hw);
  if (label != NULL)
    for (size_t p = 0; p < hw; p++)
      if (label[p] < meta->num_classes) item->class_pixels[label[p]]++;
  return T2S_OK;
}

void t2s_shard_item_free(t2s_shard_item *item) {
  if (item == NULL) return;
  free(item->image_z);
  free(item->label_z);
  item->image_z = item->label_z = NULL;
  item->image_z_size = item->label_z_size = 0;
}

static const char *chunk_path(const t2s_shard_chunk *c) { return c->path ? c->path : "(unknown)"; }
static const char *chunk_dataset(const t2s_shard_chunk *c) {
  return c->dataset ? c->dataset : "image";
}

/* zlib's adler32 guards compressed chunks only; the stored CRC32 of the pixels also
 * catches a flipped bit in an unfiltered chunk and in the decoded result. */
static t2s_status verify_crc(const t2s_shard_chunk *c, const uint8_t *pixels, size_t n,
                             t2s_error *err) {
  if (!c->has_crc) return T2S_OK;
  uint32_t got = (uint32_t)crc32(0L, pixels, (uInt)n);
  if (got == c->crc) return T2S_OK;
  return t2s_error_set(err, T2S_ERR_FORMAT,
                       "shard %s: /%s[%" PRId64 "]: the pixels do not match their checksum in "
                       "/%s_crc32 (CRC32 %08x, stored %08x); the file is damaged: rebuild it "
                       "with t2sda_shards or restore it from a copy", chunk_path(c),
                       chunk_dataset(c), c->index, chunk_dataset(c), got, c->crc);
}

t2s_status t2s_shard_decode_chunk(const t2s_shard_chunk *chunk, uint8_t *out, size_t out_size,
                                  t2s_error *err) {
  if (out_size != chunk->decoded_size)
    return t2s_error_set(err, T2S_ERR_INVALID,
                         "shard: decoding a chunk of %zu pixels bytes into a buffer of %zu",
                         chunk->decoded_size, out_size);
  if (chunk->codec == T2S_CHUNK_RAW) {
    if (chunk->size != out_size)
      return t2s_error_set(err, T2S_ERR_FORMAT,
                           "shard: an unfiltered chunk holds %zu bytes, expected %zu",
                           chunk->size, out_size);
    memcpy(out, chunk->bytes, out_size);
    return verify_crc(chunk, out, out_size, err);
  }
  uLongf got = (uLongf)out_size;
  int rc = uncompress(out, &got, chunk->bytes, (uLong)chunk->size);
  /* uncompress leaves `got` at the buffer size on failure: only a clean end is a size */
  char what[160];
  if (rc == Z_OK) snprintf(what, sizeof what, "it inflates to %lu", (unsigned long)got);
  else snprintf(what, sizeof what, "zlib: %s: the compressed bytes are damaged or cut short",
                rc == Z_BUF_ERROR ? "the stream ends early or runs past that size" : zError(rc));
  if (rc != Z_OK || got != out_size)
    return t2s_error_set(err, T2S_ERR_FORMAT,
                         "shard %s: /%s[%" PRId64 "]: a deflate chunk does not inflate to %zu "
                         "bytes (%s); the file is damaged: rebuild it with t2sda_shards",
                         chunk_path(chunk), chunk_dataset(chunk), chunk->index, out_size, what);
  return verify_crc(chunk, out, out_size, err);
}

void t2s_shard_chunk_free(t2s_shard_chunk *chunk) {
  if (chunk == NULL) return;
  free(chunk->bytes);
  memset(chunk, 0, sizeof *chunk);
}

/* ---- writing ------------------------------------------------------------------- */

struct t2s_shard_writer {
  hid_t file, image, label, name, class_pixels, image_crc, label_crc, orig_size;
  t2s_shard_meta meta;
  int level;
  int failed; /* an earlier write failed: commit refuses */
  int64_t count;
  char final_path[PATH_CAP];
  char tmp_path[PATH_CAP + 32];
};

static hid_t vlen_utf8(void) {
  hid_t t = H5Tcopy(H5T_C_S1);
  if (t >= 0 && (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0)) {
    H5Tclose(t);
    return -1;
  }
  return t;
}

static t2s_status write_attr_i64(t2s_shard_writer *w, const char *name, int64_t v, t2s_error *err) {
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = sp < 0 ? -1 : H5Acreate2(w->file, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
  t2s_status st = T2S_OK;
  if (a < 0 || H5Awrite(a, H5T_NATIVE_INT64, &v) < 0) st = h5_fail(err, w->tmp_path, "H5Awrite", name);
  if (a >= 0) H5Aclose(a);
  if (sp >= 0) H5Sclose(sp);
  return st;
}

/* n == 0 writes a scalar string; otherwise a 1-D array of n strings. */
static t2s_status write_attr_strs(t2s_shard_writer *w, const char *name, const char **v, int n,
                                  t2s_error *err) {
  hsize_t dims[1] = {(hsize_t)n};
  hid_t sp = n == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, dims, NULL);
  hid_t t = vlen_utf8();
  hid_t a = sp < 0 || t < 0 ? -1 : H5Acreate2(w->file, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
  t2s_status st = T2S_OK;
  if (a < 0 || H5Awrite(a, t, v) < 0) st = h5_fail(err, w->tmp_path, "H5Awrite", name);
  if (a >= 0) H5Aclose(a);
  if (t >= 0) H5Tclose(t);
  if (sp >= 0) H5Sclose(sp);
  return st;
}

static t2s_status write_root_attrs(t2s_shard_writer *w, t2s_error *err) {
  const t2s_shard_meta *m = &w->meta;
  const char *names[T2S_MAX_CLASSES];
  for (int c = 0; c < m->num_classes; c++) names[c] = m->class_names[c];
  const char *format = T2S_SHARD_FORMAT, *domain = m->domain, *split = m->split;
  t2s_status st = write_attr_strs(w, "format", &format, 0, err);
  if (st == T2S_OK) st = write_attr_i64(w, "version", T2S_SHARD_VERSION, err);
  if (st == T2S_OK) st = write_attr_i64(w, "num_classes", m->num_classes, err);
  if (st == T2S_OK) st = write_attr_i64(w, "ignore_index", 255, err);
  if (st == T2S_OK) st = write_attr_strs(w, "class_names", names, m->num_classes, err);
  if (st == T2S_OK) st = write_attr_strs(w, "domain", &domain, 0, err);
  if (st == T2S_OK) st = write_attr_strs(w, "split", &split, 0, err);
  return st;
}

/* An empty dataset that grows along its first axis; `level` > 0 adds plain
 * deflate (no shuffle: h5py without plugins must read it). */
static hid_t create_growing(t2s_shard_writer *w, const char *name, hid_t type, int rank,
                            const hsize_t *row_dims, const hsize_t *chunk, int level,
                            t2s_error *err) {
  hsize_t dims[4] = {0}, maxdims[4] = {H5S_UNLIMITED};
  for (int d = 1; d < rank; d++) dims[d] = maxdims[d] = row_dims[d];
  hid_t sp = H5Screate_simple(rank, dims, maxdims);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  hid_t ds = -1;
  if (sp < 0 || dcpl < 0 || H5Pset_chunk(dcpl, rank, chunk) < 0 ||
      (level > 0 && H5Pset_deflate(dcpl, (unsigned)level) < 0))
    h5_fail(err, w->tmp_path, "H5Pset_chunk/H5Pset_deflate", name);
  else if ((ds = H5Dcreate2(w->file, name, type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT)) < 0)
    h5_fail(err, w->tmp_path, "H5Dcreate2", name);
  if (dcpl >= 0) H5Pclose(dcpl);
  if (sp >= 0) H5Sclose(sp);
  return ds;
}

static t2s_status create_datasets(t2s_shard_writer *w, t2s_error *err) {
  const t2s_shard_meta *m = &w->meta;
  hsize_t H = (hsize_t)m->height, W = (hsize_t)m->width, C = (hsize_t)m->num_classes;
  hsize_t img[4] = {0, H, W, 3}, img_chunk[4] = {1, H, W, 3};
  hsize_t lab[3] = {0, H, W}, lab_chunk[3] = {1, H, W};
  hsize_t names[1] = {0}, names_chunk[1] = {NAME_CHUNK};
  hsize_t cp[2] = {0, C}, cp_chunk[2] = {NAME_CHUNK, C};
  w->image = create_growing(w, "image", H5T_STD_U8LE, 4, img, img_chunk, w->level, err);
  if (w->image < 0) return T2S_ERR_IO;
  hid_t str = vlen_utf8();
  if (str < 0) return h5_fail(err, w->tmp_path, "H5Tset_size(H5T_VARIABLE)", "name");
  w->name = create_growing(w, "name", str, 1, names, names_chunk, 0, err);
  H5Tclose(str);
  if (w->name < 0) return T2S_ERR_IO;
  w->image_crc = create_growing(w, "image_crc32", H5T_STD_U32LE, 1, names, names_chunk, 0, err);
  if (w->image_crc < 0) return T2S_ERR_IO;
  hsize_t orig[2] = {0, 2}, orig_chunk[2] = {NAME_CHUNK, 2};
  w->orig_size = create_growing(w, "orig_size", H5T_STD_I32LE, 2, orig, orig_chunk, 0, err);
  if (w->orig_size < 0) return T2S_ERR_IO;
  if (m->has_label) {
    w->label = create_growing(w, "label", H5T_STD_U8LE, 3, lab, lab_chunk, w->level, err);
    if (w->label < 0) return T2S_ERR_IO;
    w->class_pixels = create_growing(w, "class_pixels", H5T_STD_I64LE, 2, cp, cp_chunk, w->level,
                                     err);
    if (w->class_pixels < 0) return T2S_ERR_IO;
    w->label_crc = create_growing(w, "label_crc32", H5T_STD_U32LE, 1, names, names_chunk, 0, err);
    if (w->label_crc < 0) return T2S_ERR_IO;
  }
  return write_root_attrs(w, err);
}

static t2s_status check_meta(const char *path, const t2s_shard_meta *m, int level, t2s_error *err) {
  if (m->num_classes < 1 || m->num_classes > T2S_MAX_CLASSES)
    return t2s_error_set(err, T2S_ERR_INVALID, "shard %s: num_classes %d is outside 1..%d", path,
                         m->num_classes, T2S_MAX_CLASSES);
  if (m->ignore_index != 0 && m->ignore_index != 255)
    return t2s_error_set(err, T2S_ERR_INVALID,
                         "shard %s: ignore_index must be 255 (the contract's value), got %d", path,
                         m->ignore_index);
  if (m->height <= 0 || m->width <= 0 || (int64_t)m->height * m->width > MAX_IMAGE_PIXELS)
    return t2s_error_set(err, T2S_ERR_INVALID, "shard %s: image size %dx%d (WxH) is not usable",
                         path, m->width, m->height);
  if (level < 0 || level > 4)
    return t2s_error_set(err, T2S_ERR_INVALID,
                         "shard %s: deflate level %d is outside 1..4 (0 means the default 3)",
                         path, level);
  for (int c = 0; c < m->num_classes; c++)
    if (memchr(m->class_names[c], '\0', T2S_CLASS_NAME_MAX) == NULL || !m->class_names[c][0])
      return t2s_error_set(err, T2S_ERR_INVALID, "shard %s: class name %d is empty or too long",
                           path, c);
  if (memchr(m->domain, '\0', sizeof m->domain) == NULL ||
      memchr(m->split, '\0', sizeof m->split) == NULL)
    return t2s_error_set(err, T2S_ERR_INVALID, "shard %s: domain or split is not terminated", path);
  return T2S_OK;
}

static void writer_close_ids(t2s_shard_writer *w) {
  close_id(&w->image, H5Dclose);
  close_id(&w->label, H5Dclose);
  close_id(&w->name, H5Dclose);
  close_id(&w->class_pixels, H5Dclose);
  close_id(&w->image_crc, H5Dclose);
  close_id(&w->label_crc, H5Dclose);
  close_id(&w->orig_size, H5Dclose);
}

static void writer_abort_locked(t2s_shard_writer *w) {
  writer_close_ids(w);
  close_file(&w->file);
  unlink(w->tmp_path);
  free(w);
}

t2s_shard_writer *t2s_shard_writer_open(const char *final_path, const t2s_shard_meta *meta,
                                        int deflate_level, t2s_error *err) {
  if (final_path == NULL || !final_path[0] || strlen(final_path) >= PATH_CAP) {
    t2s_error_set(err, T2S_ERR_INVALID, "shard path is empty or too long");
    return NULL;
  }
  if (check_meta(final_path, meta, deflate_level, err) != T2S_OK) return NULL;
  t2s_shard_writer *w = calloc(1, sizeof *w);
  if (w == NULL) {
    t2s_error_set(err, T2S_ERR_NOMEM, "shard %s: out of memory for the writer", final_path);
    return NULL;
  }
  w->meta = *meta;
  w->meta.ignore_index = 255;
  w->meta.count = 0;
  w->level = level_or_default(deflate_level);
  w->file = w->image = w->label = w->name = w->class_pixels = w->image_crc = w->label_crc =
      w->orig_size = -1;
  snprintf(w->final_path, sizeof w->final_path, "%s", final_path);
  snprintf(w->tmp_path, sizeof w->tmp_path, "%s.tmp.%ld", final_path, (long)getpid());
  lock_h5();
  h5_quiet();
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  /* STRONG: H5Fclose really closes the file, so its bytes are final before fsync and rename */
  t2s_status st = T2S_OK;
  if (fapl < 0 || H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0)
    st = h5_fail(err, w->tmp_path, "H5Pset_fclose_degree", "file access properties");
  else if ((w->file = H5Fcreate(w->tmp_path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl)) < 0)
    st = h5_fail(err, w->tmp_path, "H5Fcreate", w->tmp_path);
  if (fapl >= 0) H5Pclose(fapl);
  if (st == T2S_OK) st = create_datasets(w, err);
  if (st != T2S_OK) {
    writer_abort_locked(w);
    w = NULL;
  }
  unlock_h5();
  return w;
}

/* Grows `ds` to n+1 rows and returns the file space with row n selected. */
static hid_t grow_and_select(t2s_shard_writer *w, hid_t ds, const char *name, t2s_error *err) {
  hsize_t dims[4], start[4] = {0}, count[4];
  hid_t sp = H5Dget_space(ds);
  int rank = sp < 0 ? -1 : H5Sget_simple_extent_dims(sp, dims, NULL);
  if (sp >= 0) H5Sclose(sp);
  if (rank < 1) {
    h5_fail(err, w->tmp_path, "H5Sget_simple_extent_dims", name);
    return -1;
  }
  dims[0] = (hsize_t)w->count + 1;
  if (H5Dset_extent(ds, dims) < 0 || (sp = H5Dget_space(ds)) < 0) {
    h5_fail(err, w->tmp_path, "H5Dset_extent", name);
    return -1;
  }
  start[0] = (hsize_t)w->count;
  for (int d = 0; d < rank; d++) count[d] = d == 0 ? 1 : dims[d];
  if (H5Sselect_hyperslab(sp, H5S_SELECT_SET, start, NULL, count, NULL) < 0) {
    H5Sclose(sp);
    h5_fail(err, w->tmp_path, "H5Sselect_hyperslab", name);
    return -1;
  }
  return sp;
}

/* Appends one precompressed image-sized chunk at row w->count. */
static t2s_status append_chunk(t2s_shard_writer *w, hid_t ds, const char *name, const uint8_t *z,
                               size_t z_size, t2s_error *err) {
  hid_t sp = grow_and_select(w, ds, name, err);
  if (sp < 0) return T2S_ERR_IO;
  H5Sclose(sp);
  hsize_t offset[4] = {(hsize_t)w->count, 0, 0, 0};
  if (H5Dwrite_chunk(ds, H5P_DEFAULT, 0, offset, z_size, z) < 0)
    return h5_fail(err, w->tmp_path, "H5Dwrite_chunk", name);
  return T2S_OK;
}

static t2s_status append_row(t2s_shard_writer *w, hid_t ds, const char *name, hid_t mem_type,
                             hsize_t row_elems, const void *row, t2s_error *err) {
  hid_t sp = grow_and_select(w, ds, name, err);
  if (sp < 0) return T2S_ERR_IO;
  hid_t mem = H5Screate_simple(1, &row_elems, NULL);
  t2s_status st = T2S_OK;
  if (mem < 0 || H5Dwrite(ds, mem_type, mem, sp, H5P_DEFAULT, row) < 0)
    st = h5_fail(err, w->tmp_path, "H5Dwrite", name);
  if (mem >= 0) H5Sclose(mem);
  H5Sclose(sp);
  return st;
}

static t2s_status add_item_locked(t2s_shard_writer *w, const char *name, const t2s_shard_item *it,
                                  t2s_error *err) {
  if (w->failed)
    return t2s_error_set(err, T2S_ERR_INVALID, "shard %s: not adding '%s' after an earlier failure",
                         w->final_path, name);
  if ((it->label_z != NULL) != (w->meta.has_label != 0))
    return t2s_error_set(err, T2S_ERR_INVALID, "shard %s: image '%s' %s a label map but the shard "
                         "is %s", w->final_path, name, it->label_z ? "has" : "lacks",
                         w->meta.has_label ? "labelled" : "unlabelled");
  if (it->orig_height < 1 || it->orig_width < 1 ||
      (int64_t)it->orig_height * it->orig_width > MAX_IMAGE_PIXELS)
    return t2s_error_set(err, T2S_ERR_INVALID, "shard %s: image '%s' has an original size of %dx%d "
                         "(WxH), which no readable image has", w->final_path, name,
                         (int)it->orig_width, (int)it->orig_height);
  t2s_status st = append_chunk(w, w->image, "image", it->image_z, it->image_z_size, err);
  hid_t str = vlen_utf8();
  if (st == T2S_OK)
    st = str < 0 ? h5_fail(err, w->tmp_path, "H5Tcopy", "name")
                 : append_row(w, w->name, "name", str, 1, &name, err);
  if (str >= 0) H5Tclose(str);
  if (st == T2S_OK)
    st = append_row(w, w->image_crc, "image_crc32", H5T_NATIVE_UINT32, 1, &it->image_crc, err);
  const int32_t orig[2] = {it->orig_height, it->orig_width};
  if (st == T2S_OK) st = append_row(w, w->orig_size, "orig_size", H5T_NATIVE_INT32, 2, orig, err);
  if (st == T2S_OK && w->meta.has_label) {
    st = append_chunk(w, w->label, "label", it->label_z, it->label_z_size, err);
    if (st == T2S_OK)
      st = append_row(w, w->class_pixels, "class_pixels", H5T_NATIVE_INT64,
                      (hsize_t)w->meta.num_classes, it->class_pixels, err);
    if (st == T2S_OK)
      st = append_row(w, w->label_crc, "label_crc32", H5T_NATIVE_UINT32, 1, &it->label_crc, err);
  }
  if (st != T2S_OK) w->failed = 1;
  else w->count++;
  return st;
}

t2s_status t2s_shard_writer_add_item(t2s_shard_writer *w, const char *name,
                                     const t2s_shard_item *item, t2s_error *err) {
  lock_h5();
  t2s_status st = add_item_locked(w, name, item, err);
  unlock_h5();
  return st;
}

t2s_status t2s_shard_writer_add(t2s_shard_writer *w, const char *name, const uint8_t *rgb,
                                const uint8_t *label, t2s_error *err) {
  t2s_shard_item item;
  t2s_status st = t2s_shard_encode_item(&w->meta, w->level, rgb, label, &item, err);
  if (st != T2S_OK) {
    w->failed = 1;
    return st;
  }
  st = t2s_shard_writer_add_item(w, name, &item, err);
  t2s_shard_item_free(&item);
  return st;
}

static t2s_status sync_and_rename(const t2s_shard_writer *w, t2s_error *err) {
  return t2s_durable_rename(w->tmp_path, w->final_path, "shard", err);
}

t2s_status t2s_shard_writer_commit(t2s_shard_writer *w, t2s_error *err) {
  lock_h5();
  t2s_status st = T2S_OK;
  if (w->failed)
    st = t2s_error_set(err, T2S_ERR_INVALID,
                       "shard %s: not committed because an earlier write failed", w->final_path);
  else if (H5Fflush(w->file, H5F_SCOPE_GLOBAL) < 0)
    st = h5_fail(err, w->tmp_path, "H5Fflush", "/");
  if (st != T2S_OK) {
    writer_abort_locked(w);
    unlock_h5();
    return st;
  }
  writer_close_ids(w);
  herr_t closed = t2s_h5_close_file(w->file);
  w->file = -1;
  if (closed < 0) st = h5_fail(err, w->tmp_path, "H5Fclose", "/");
  unlock_h5();
  if (st == T2S_OK) st = sync_and_rename(w, err);
  if (st != T2S_OK) unlink(w->tmp_path); /* ENOENT once renamed */
  free(w);
  return st;
}

void t2s_shard_writer_abort(t2s_shard_writer *w) {
  if (w == NULL) return;
  lock_h5();
  writer_abort_locked(w);
  unlock_h5();
}

/* ---- reading ------------------------------------------------------------------- */

/* How a dataset's images can be read. */
typedef struct image_set {
  hid_t ds;
  int direct;       /* chunks are one image each and deflate-only (or unfiltered) */
  int deflated;     /* the pipeline has the deflate filter */
  size_t image_bytes;
} image_set;

struct t2s_shard {
  hid_t file;
  image_set image, label;
  hid_t name;
  int name_vlen;
  size_t name_size; /* fixed-length /name: bytes per entry */
  t2s_shard_meta meta;
  int64_t *class_pixels;
  uint32_t *image_crc, *label_crc; /* NULL: an older shard without checksums (unverified) */
  int32_t *orig_size;              /* N x 2 [H, W]; NULL: an older shard (the shard's size) */
  char path[PATH_CAP];
};

/* Reads a scalar integer attribute of the root group. */
static t2s_status attr_int(t2s_shard *s, const char *name, int64_t *out, t2s_error *err) {
  if (H5Aexists(s->file, name) <= 0) return bad_field(err, s->path, name, "attribute is missing");
  hid_t a = H5Aopen(s->file, name, H5P_DEFAULT);
  hid_t t = a < 0 ? -1 : H5Aget_type(a), sp = a < 0 ? -1 : H5Aget_space(a);
  t2s_status st = T2S_OK;
  if (t < 0 || sp < 0) st = h5_fail(err, s->path, "H5Aopen", name);
  else if (H5Tget_class(t) != H5T_INTEGER || H5Sget_simple_extent_npoints(sp) != 1)
    st = bad_field(err, s->path, name, "attribute must be one integer");
  else if (H5Aread(a, H5T_NATIVE_INT64, out) < 0) st = h5_fail(err, s->path, "H5Aread", name);
  if (sp >= 0) H5Sclose(sp);
  if (t >= 0) H5Tclose(t);
  if (a >= 0) H5Aclose(a);
  return st;
}

/* Reads a string attribute (scalar or 1-D array, fixed or variable length, as
 * h5py and our writer produce) into n_max slots of `cap` bytes. */
static t2s_status attr_strings(t2s_shard *s, const char *name, char *out, size_t cap, int n_max,
                               int *n_out, t2s_error *err) {
  if (H5Aexists(s->file, name) <= 0) return bad_field(err, s->path, name, "attribute is missing");
  hid_t a = H5Aopen(s->file, name, H5P_DEFAULT);
  hid_t ft = a < 0 ? -1 : H5Aget_type(a), sp = a < 0 ? -1 : H5Aget_space(a), mt = -1;
  t2s_status st = T2S_OK;
  hssize_t n = sp < 0 ? -1 : H5Sget_simple_extent_npoints(sp);
  if (ft < 0 || sp < 0) st = h5_fail(err, s->path, "H5Aopen", name);
  else if (H5Tget_class(ft) != H5T_STRING || H5Sget_simple_extent_ndims(sp) > 1)
    st = bad_field(err, s->path, name, "attribute must be a string or a 1-D array of strings");
  else if (n < 1 || n > n_max)
    st = bad_field(err, s->path, name, "attribute holds %lld string(s), expected 1..%d",
                   (long long)n, n_max);
  int vlen = st == T2S_OK && H5Tis_variable_str(ft) > 0;
  size_t fixed = st == T2S_OK ? H5Tget_size(ft) : 0;
  if (st == T2S_OK && ((mt = H5Tcopy(H5T_C_S1)) < 0 || H5Tset_cset(mt, H5Tget_cset(ft)) < 0 ||
                       H5Tset_size(mt, vlen ? H5T_VARIABLE : fixed + 1) < 0 ||
                       H5Tset_strpad(mt, H5T_STR_NULLTERM) < 0))
    st = h5_fail(err, s->path, "H5Tset_size", name);
  char **ptrs = NULL, *flat = NULL;
  int read_ok = 0;
  if (st == T2S_OK) {
    ptrs = vlen ? calloc((size_t)n, sizeof *ptrs) : NULL;
    flat = vlen ? NULL : calloc((size_t)n, fixed + 1);
    if (vlen ? ptrs == NULL : flat == NULL)
      st = t2s_error_set(err, T2S_ERR_NOMEM, "shard %s: out of memory reading %s", s->path, name);
    else if (H5Aread(a, mt, vlen ? (void *)ptrs : (void *)flat) < 0)
      st = h5_fail(err, s->path, "H5Aread", name);
    else read_ok = 1;
  }
  for (hssize_t i = 0; st == T2S_OK && i < n; i++) {
    const char *v = vlen ? ptrs[i] : flat + (size_t)i * (fixed + 1);
    if (v == NULL) v = "";
    if (strlen(v) >= cap)
      st = bad_field(err, s->path, name, "string %lld ('%.40s...') is longer than %zu bytes",
                     (long long)i, v, cap - 1);
    else snprintf(out + (size_t)i * cap, cap, "%s", v);
  }
  if (ptrs != NULL) {
    if (read_ok) H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, ptrs);
    free(ptrs);
  }
  free(flat);
  if (st == T2S_OK) *n_out = (int)n;
  if (mt >= 0) H5Tclose(mt);
  if (sp >= 0) H5Sclose(sp);
  if (ft >= 0) H5Tclose(ft);
  if (a >= 0) H5Aclose(a);
  return st;
}

static t2s_status attr_string(t2s_shard *s, const char *name, char *out, size_t cap,
                              t2s_error *err) {
  int n = 0;
  return attr_strings(s, name, out, cap, 1, &n, err);
}

static t2s_status read_root_attrs(t2s_shard *s, t2s_error *err) {
  t2s_shard_meta *m = &s->meta;
  char format[64];
  int64_t version = 0, nc = 0, ignore = 0;
  t2s_status st = attr_string(s, "format", format, sizeof format, err);
  if (st == T2S_OK && strcmp(format, T2S_SHARD_FORMAT) != 0)
    st = bad_field(err, s->path, "format", "attribute is '%s', expected '%s'", format,
                   T2S_SHARD_FORMAT);
  if (st == T2S_OK) st = attr_int(s, "version", &version, err);
  if (st == T2S_OK && version != T2S_SHARD_VERSION)
    st = bad_field(err, s->path, "version", "attribute is %" PRId64 ", this build reads version %d",
                   version, T2S_SHARD_VERSION);
  if (st == T2S_OK) st = attr_int(s, "num_classes", &nc, err);
  if (st == T2S_OK && (nc < 1 || nc > T2S_MAX_CLASSES))
    st = bad_field(err, s->path, "num_classes", "attribute is %" PRId64 ", expected 1..%d", nc,
                   T2S_MAX_CLASSES);
  if (st == T2S_OK) st = attr_int(s, "ignore_index", &ignore, err);
  if (st == T2S_OK && ignore != 255)
    st = bad_field(err, s->path, "ignore_index", "attribute is %" PRId64 ", expected 255", ignore);
  int n_names = 0;
  if (st == T2S_OK)
    st = attr_strings(s, "class_names", &m->class_names[0][0], T2S_CLASS_NAME_MAX,
                      T2S_MAX_CLASSES, &n_names, err);
  if (st == T2S_OK && n_names != nc)
    st = bad_field(err, s->path, "class_names", "attribute has %d names but num_classes is %" PRId64,
                   n_names, nc);
  if (st == T2S_OK) st = attr_string(s, "domain", m->domain, sizeof m->domain, err);
  if (st == T2S_OK) st = attr_string(s, "split", m->split, sizeof m->split, err);
  m->num_classes = (int)nc;
  m->ignore_index = 255;
  return st;
}

/* Opens dataset `name` and checks its rank, element type (unsigned 8-bit, any
 * integer or string) and, where known, its dimensions. */
typedef enum elem_kind { ELEM_U8, ELEM_INT, ELEM_STRING } elem_kind;

static t2s_status open_checked(t2s_shard *s, const char *name, int rank, elem_kind kind,
                               hsize_t *dims, hid_t *out, t2s_error *err) {
  *out = -1;
  if (H5Lexists(s->file, name, H5P_DEFAULT) <= 0)
    return bad_field(err, s->path, name, "dataset is missing");
  hid_t ds = H5Dopen2(s->file, name, H5P_DEFAULT);
  if (ds < 0) return h5_fail(err, s->path, "H5Dopen2", name);
  hid_t t = H5Dget_type(ds), sp = H5Dget_space(ds);
  t2s_status st = T2S_OK;
  int r = sp < 0 ? -1 : H5Sget_simple_extent_ndims(sp);
  H5T_class_t cls = t < 0 ? H5T_NO_CLASS : H5Tget_class(t);
  if (t < 0 || sp < 0) st = h5_fail(err, s->path, "H5Dget_type", name);
  else if (r != rank) st = bad_field(err, s->path, name, "dataset has rank %d, expected %d", r, rank);
  else if (kind == ELEM_U8 && (cls != H5T_INTEGER || H5Tget_size(t) != 1 ||
                               H5Tget_sign(t) != H5T_SGN_NONE))
    st = bad_field(err, s->path, name, "dataset must hold uint8 values");
  else if (kind == ELEM_INT && cls != H5T_INTEGER)
    st = bad_field(err, s->path, name, "dataset must hold integers (int64)");
  else if (kind == ELEM_STRING && cls != H5T_STRING)
    st = bad_field(err, s->path, name, "dataset must hold strings");
  else H5Sget_simple_extent_dims(sp, dims, NULL);
  if (sp >= 0) H5Sclose(sp);
  if (t >= 0) H5Tclose(t);
  if (st != T2S_OK) H5Dclose(ds);
  else *out = ds;
  return st;
}

/* Decides whether image-sized chunks can be read directly (see data/shard_fast.h). */
static void probe_direct(image_set *set, int rank, const hsize_t *dims) {
  set->direct = 0;
  hid_t dcpl = H5Dget_create_plist(set->ds);
  if (dcpl < 0) return;
  hsize_t chunk[4] = {0};
  int ok = H5Pget_layout(dcpl) == H5D_CHUNKED && H5Pget_chunk(dcpl, rank, chunk) == rank &&
           chunk[0] == 1;
  for (int d = 1; ok && d < rank; d++) ok = chunk[d] == dims[d];
  int nf = ok ? H5Pget_nfilters(dcpl) : -1;
  if (nf == 0) {
    set->direct = 1;
  } else if (nf == 1) {
    unsigned flags = 0, cd[8];
    size_t ncd = 8;
    char fname[64];
    set->deflated = set->direct =
        H5Pget_filter2(dcpl, 0, &flags, &ncd, cd, sizeof fname, fname, NULL) == H5Z_FILTER_DEFLATE;
  }
  H5Pclose(dcpl);
}

/* Every count must lie in 0..H*W: rare class sampling divides by them. */
static t2s_status check_class_pixels(const t2s_shard *s, t2s_error *err) {
  int64_t hw = (int64_t)s->meta.height * s->meta.width, C = s->meta.num_classes;
  for (int64_t i = 0; i < s->meta.count; i++)
    for (int64_t c = 0; c < C; c++) {
      int64_t v = s->class_pixels[i * C + c];
      if (v < 0 || v > hw)
        return bad_field(err, s->path, "class_pixels", "image %" PRId64 ", class %" PRId64
                         " ('%s') counts %" PRId64 " pixels, outside 0..%" PRId64 " (H x W)", i, c,
                         s->meta.class_names[c], v, hw);
    }
  return T2S_OK;
}

/* Loads the optional checksum dataset `name` (N integers) of an image set; a shard
 * without it is read unverified. */
static t2s_status load_crcs(t2s_shard *s, const char *name, uint32_t **out, t2s_error *err) {
  *out = NULL;
  if (H5Lexists(s->file, name, H5P_DEFAULT) <= 0) return T2S_OK;
  hsize_t dims[1] = {0};
  hid_t ds = -1;
  t2s_status st = open_checked(s, name, 1, ELEM_INT, dims, &ds, err);
  if (st == T2S_OK && dims[0] != (hsize_t)s->meta.count)
    st = bad_field(err, s->path, name, "dataset has %llu entries but /image has %" PRId64
                   " images", (unsigned long long)dims[0], s->meta.count);
  if (st == T2S_OK && (*out = malloc((dims[0] > 0 ? dims[0] : 1) * sizeof(uint32_t))) == NULL)
    st = t2s_error_set(err, T2S_ERR_NOMEM, "shard %s: out of memory for /%s", s->path, name);
  if (st == T2S_OK && dims[0] > 0 &&
      H5Dread(ds, H5T_NATIVE_UINT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, *out) < 0)
    st = h5_fail(err, s->path, "H5Dread", name);
  if (ds >= 0) H5Dclose(ds);
  return st;
}

/* Loads the optional /orig_size (N x 2 [H, W]); every size must be one an image can
 * have, since eval allocates and upsamples to it. */
static t2s_status load_orig_size(t2s_shard *s, t2s_error *err) {
  if (H5Lexists(s->file, "orig_size", H5P_DEFAULT) <= 0) return T2S_OK;
  hsize_t dims[2] = {0};
  hid_t ds = -1;
  int64_t *v = NULL;
  t2s_status st = open_checked(s, "orig_size", 2, ELEM_INT, dims, &ds, err);
  if (st == T2S_OK && (dims[0] != (hsize_t)s->meta.count || dims[1] != 2))
    st = bad_field(err, s->path, "orig_size", "dataset is %llu x %llu, expected %" PRId64 " x 2 "
                   "(images x [H, W])", (unsigned long long)dims[0], (unsigned long long)dims[1],
                   s->meta.count);
  size_t n = st == T2S_OK ? (size_t)dims[0] * 2 : 0;
  if (st == T2S_OK && ((v = malloc((n ? n : 1) * sizeof *v)) == NULL ||
                       (s->orig_size = malloc((n ? n : 1) * sizeof *s->orig_size)) == NULL))
    st = t2s_error_set(err, T2S_ERR_NOMEM, "shard %s: out of memory for /orig_size", s->path);
  if (st == T2S_OK && n > 0 && H5Dread(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0)
    st = h5_fail(err, s->path, "H5Dread", "orig_size");
  for (size_t i = 0; st == T2S_OK && i < n / 2; i++) {
    if (v[2 * i] < 1 || v[2 * i + 1] < 1 || v[2 * i] > INT32_MAX || v[2 * i + 1] > INT32_MAX ||
        (double)v[2 * i] * (double)v[2 * i + 1] > (double)MAX_IMAGE_PIXELS)
      st = bad_field(err, s->path, "orig_size", "image %zu declares an original size of %" PRId64
                     " x %" PRId64 " (H x W), outside 1..%" PRId64 " pixels", i, v[2 * i],
                     v[2 * i + 1], MAX_IMAGE_PIXELS);
    else s->orig_size[2 * i] = (int32_t)v[2 * i], s->orig_size[2 * i + 1] = (int32_t)v[2 * i + 1];
  }
  free(v);
  if (ds >= 0) H5Dclose(ds);
  if (st == T2S_OK) s->meta.has_orig_size = 1;
  return st;
}

static t2s_status open_datasets(t2s_shard *s, t2s_error *err) {
  t2s_shard_meta *m = &s->meta;
  hsize_t img[4] = {0}, lab[3] = {0}, names[1] = {0}, cp[2] = {0};
  t2s_status st = open_checked(s, "image", 4, ELEM_U8, img, &s->image.ds, err);
  if (st != T2S_OK) return st;
  if (img[3] != 3 || img[1] < 1 || img[2] < 1 || img[1] > INT32_MAX || img[2] > INT32_MAX)
    return bad_field(err, s->path, "image", "dataset is %llu x %llu x %llu x %llu, expected "
                     "N x H x W x 3", (unsigned long long)img[0], (unsigned long long)img[1],
                     (unsigned long long)img[2], (unsigned long long)img[3]);
  if ((double)img[1] * (double)img[2] > (double)MAX_IMAGE_PIXELS)
    return bad_field(err, s->path, "image", "declares %llu x %llu images, more than the %" PRId64
                     " pixels per image this reader accepts (resize with t2sda_shards --resize)",
                     (unsigned long long)img[2], (unsigned long long)img[1], MAX_IMAGE_PIXELS);
  if (img[0] > (hsize_t)MAX_SHARD_IMAGES)
    return bad_field(err, s->path, "image", "declares %llu images, more than the %" PRId64 " one "
                     "shard may hold (split the set with t2sda_shards --shards K)",
                     (unsigned long long)img[0], MAX_SHARD_IMAGES);
  m->count = (int64_t)img[0];
  m->height = (int)img[1];
  m->width = (int)img[2];
  s->image.image_bytes = (size_t)img[1] * (size_t)img[2] * 3;
  probe_direct(&s->image, 4, img);
  st = open_checked(s, "name", 1, ELEM_STRING, names, &s->name, err);
  if (st != T2S_OK) return st;
  if (names[0] != img[0])
    return bad_field(err, s->path, "name", "dataset has %llu entries but /image has %llu images",
                     (unsigned long long)names[0], (unsigned long long)img[0]);
  st = load_crcs(s, "image_crc32", &s->image_crc, err);
  if (st == T2S_OK) st = load_orig_size(s, err);
  if (st != T2S_OK) return st;
  m->has_label = H5Lexists(s->file, "label", H5P_DEFAULT) > 0;
  if (!m->has_label) return T2S_OK;
  st = load_crcs(s, "label_crc32", &s->label_crc, err);
  if (st != T2S_OK) return st;
  st = open_checked(s, "label", 3, ELEM_U8, lab, &s->label.ds, err);
  if (st != T2S_OK) return st;
  if (lab[0] != img[0] || lab[1] != img[1] || lab[2] != img[2])
    return bad_field(err, s->path, "label", "dataset is %llu x %llu x %llu but /image is "
                     "%llu x %llu x %llu x 3", (unsigned long long)lab[0],
                     (unsigned long long)lab[1], (unsigned long long)lab[2],
                     (unsigned long long)img[0], (unsigned long long)img[1],
                     (unsigned long long)img[2]);
  s->label.image_bytes = (size_t)lab[1] * (size_t)lab[2];
  probe_direct(&s->label, 3, lab);
  hid_t cpd = -1;
  st = open_checked(s, "class_pixels", 2, ELEM_INT, cp, &cpd, err);
  if (st == T2S_OK && (cp[0] != img[0] || cp[1] != (hsize_t)m->num_classes))
    st = bad_field(err, s->path, "class_pixels", "dataset is %llu x %llu, expected %llu x %d "
                   "(images x num_classes)", (unsigned long long)cp[0], (unsigned long long)cp[1],
                   (unsigned long long)img[0], m->num_classes);
  if (st == T2S_OK) {
    size_t cells = (size_t)(cp[0] * cp[1]);
    s->class_pixels = malloc((cells > 0 ? cells : 1) * sizeof(int64_t));
    if (s->class_pixels == NULL)
      st = t2s_error_set(err, T2S_ERR_NOMEM, "shard %s: out of memory for /class_pixels", s->path);
    else if (cp[0] > 0 &&
             H5Dread(cpd, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, s->class_pixels) < 0)
      st = h5_fail(err, s->path, "H5Dread", "class_pixels");
    if (st == T2S_OK) st = check_class_pixels(s, err);
  }
  if (cpd >= 0) H5Dclose(cpd);
  return st;
}

static void shard_close_locked(t2s_shard *s) {
  close_id(&s->image.ds, H5Dclose);
  close_id(&s->label.ds, H5Dclose);
  close_id(&s->name, H5Dclose);
  close_file(&s->file);
  free(s->class_pixels);
  free(s->image_crc);
  free(s->label_crc);
  free(s->orig_size);
  free(s);
}

t2s_shard *t2s_shard_open(const char *path, t2s_error *err) {
  if (path == NULL || !path[0] || strlen(path) >= PATH_CAP) {
    t2s_error_set(err, T2S_ERR_INVALID, "shard path is empty or too long");
    return NULL;
  }
  t2s_shard *s = calloc(1, sizeof *s);
  if (s == NULL) {
    t2s_error_set(err, T2S_ERR_NOMEM, "shard %s: out of memory", path);
    return NULL;
  }
  snprintf(s->path, sizeof s->path, "%s", path);
  s->file = s->image.ds = s->label.ds = s->name = -1;
  if (access(path, R_OK) != 0) {
    t2s_error_set(err, T2S_ERR_IO, "shard %s: cannot read: %s", path, strerror(errno));
    free(s);
    return NULL;
  }
  lock_h5();
  h5_quiet();
  t2s_status st = T2S_OK;
  if (H5Fis_hdf5(path) <= 0)
    st = t2s_error_set(err, T2S_ERR_FORMAT, "shard %s: not an HDF5 file (truncated or another "
                       "format); rebuild it with t2sda_shards", path);
  else if ((s->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0)
    st = h5_fail(err, path, "H5Fopen", path);
  if (st == T2S_OK) st = read_root_attrs(s, err);
  if (st == T2S_OK) st = open_datasets(s, err);
  if (st == T2S_OK && !s->name_vlen) {
    hid_t t = H5Dget_type(s->name);
    s->name_vlen = H5Tis_variable_str(t) > 0;
    s->name_size = H5Tget_size(t);
    H5Tclose(t);
  }
  if (st != T2S_OK) {
    shard_close_locked(s);
    s = NULL;
  }
  unlock_h5();
  return s;
}

void t2s_shard_close(t2s_shard *s) {
  if (s == NULL) return;
  lock_h5();
  shard_close_locked(s);
  unlock_h5();
}

const t2s_shard_meta *t2s_shard_info(const t2s_shard *s) { return &s->meta; }
const char *t2s_shard_path(const t2s_shard *s) { return s->path; }
const int64_t *t2s_shard_class_pixels(const t2s_shard *s) { return s->class_pixels; }

int t2s_shard_orig_size(const t2s_shard *s, int64_t i, int *height, int *width) {
  int known = s->orig_size != NULL && i >= 0 && i < s->meta.count;
  *height = known ? s->orig_size[2 * i] : s->meta.height;
  *width = known ? s->orig_size[2 * i + 1] : s->meta.width;
  return known;
}

static t2s_status grow_chunk(t2s_shard_chunk *c, size_t need, const char *path, t2s_error *err) {
  if (c->cap >= need) return T2S_OK;
  uint8_t *b = realloc(c->bytes, need);
  if (b == NULL)
    return t2s_error_set(err, T2S_ERR_NOMEM, "shard %s: out of memory for a %zu-byte chunk", path,
                         need);
  c->bytes = b;
  c->cap = need;
  return T2S_OK;
}

/* The general path: H5Dread of row i (any chunking, any filter HDF5 can decode). */
static t2s_status read_row_h5(t2s_shard *s, const image_set *set, const char *name, int64_t i,
                              t2s_shard_chunk *c, t2s_error *err) {
  t2s_status st = grow_chunk(c, set->image_bytes, s->path, err);
  if (st != T2S_OK) return st;
  hsize_t start[4] = {(hsize_t)i, 0, 0, 0}, count[4] = {1, 0, 0, 0};
  hid_t fs = H5Dget_space(set->ds);
  int rank = fs < 0 ? -1 : H5Sget_simple_extent_dims(fs, count, NULL);
  count[0] = 1;
  hsize_t n = (hsize_t)set->image_bytes;
  hid_t ms = H5Screate_simple(1, &n, NULL);
  if (rank < 0 || ms < 0 || H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
      H5Dread(set->ds, H5T_NATIVE_UINT8, ms, fs, H5P_DEFAULT, c->bytes) < 0)
    st = h5_fail(err, s->path, "H5Dread", name);
  if (ms >= 0) H5Sclose(ms);
  if (fs >= 0) H5Sclose(fs);
  c->size = set->image_bytes;
  c->codec = T2S_CHUNK_RAW;
  return st;
}

static t2s_status read_raw_locked(t2s_shard *s, const char *dataset, int64_t i,
                                  t2s_shard_chunk *c, t2s_error *err) {
  int is_label = strcmp(dataset, "label") == 0;
  if (!is_label && strcmp(dataset, "image") != 0)
    return t2s_error_set(err, T2S_ERR_INVALID, "shard %s: no image-like dataset '%s' (image or "
                         "label)", s->path, dataset);
  if (is_label && !s->meta.has_label)
    return t2s_error_set(err, T2S_ERR_INVALID, "shard %s: has no /label (unlabelled data); pass "
                         "NULL for the label", s->path);
  if (i < 0 || i >= s->meta.count)
    return t2s_error_set(err, T2S_ERR_INVALID, "shard %s: image %" PRId64 " is outside 0..%" PRId64,
                         s->path, i, s->meta.count - 1);
  const image_set *set = is_label ? &s->label : &s->image;
  const uint32_t *crcs = is_label ? s->label_crc : s->image_crc;
  c->decoded_size = set->image_bytes;
  c->has_crc = crcs != NULL;
  c->crc = crcs != NULL ? crcs[i] : 0;
  c->path = s->path;
  c->dataset = is_label ? "label" : "image";
  c->index = i;
  hsize_t offset[4] = {(hsize_t)i, 0, 0, 0}, stored = 0;
  if (!set->direct || H5Dget_chunk_storage_size(set->ds, offset, &stored) < 0 || stored == 0)
    return read_row_h5(s, set, dataset, i, c, err);
  t2s_status st = grow_chunk(c, (size_t)stored, s->path, err);
  if (st != T2S_OK) return st;
  uint32_t mask = 0;
  if (H5Dread_chunk(set->ds, H5P_DEFAULT, offset, &mask, c->bytes) < 0)
    return h5_fail(err, s->path, "H5Dread_chunk", dataset);
  c->size = (size_t)stored;
  /* bit 0 of the mask set: the (optional) deflate filter was skipped for this chunk */
  c->codec = set->deflated && !(mask & 1u) ? T2S_CHUNK_ZLIB : T2S_CHUNK_RAW;
  return T2S_OK;
}

t2s_status t2s_shard_read_raw_chunk(t2s_shard *s, const char *dataset, int64_t i,
                                    t2s_shard_chunk *chunk, t2s_error *err) {
  lock_h5();
  t2s_status st = read_raw_locked(s, dataset, i, chunk, err);
  unlock_h5();
  return st;
}

static t2s_status read_one(t2s_shard *s, const char *dataset, int64_t i, uint8_t *out,
                           t2s_error *err) {
  t2s_shard_chunk c = {0};
  t2s_status st = t2s_shard_read_raw_chunk(s, dataset, i, &c, err);
  if (st == T2S_OK) st = t2s_shard_decode_chunk(&c, out, c.decoded_size, err);
  if (st != T2S_OK && err != NULL && strstr(err->msg, s->path) == NULL) {
    /* decode errors do not know the file: say which */
    char msg[T2S_ERROR_MAX];
    snprintf(msg, sizeof msg, "%s", err->msg);
    snprintf(err->msg, sizeof err->msg, "shard %s: /%s[%" PRId64 "]: %s", s->path, dataset, i, msg);
  }
  t2s_shard_chunk_free(&c);
  return st;
}

t2s_status t2s_shard_read(t2s_shard *s, int64_t i, uint8_t *rgb, uint8_t *label, t2s_error *err) {
  if (label != NULL && !s->meta.has_label)
    return t2s_error_set(err, T2S_ERR_INVALID, "shard %s: has no /label (unlabelled data); pass "
                         "NULL for the label", s->path);
  t2s_status st = rgb != NULL ? read_one(s, "image", i, rgb, err) : T2S_OK;
  if (st == T2S_OK && label != NULL) st = read_one(s, "label", i, label, err);
  return st;
}

static t2s_status read_name_locked(t2s_shard *s, int64_t i, char *buf, size_t size,
                                   t2s_error *err) {
  if (i < 0 || i >= s->meta.count)
    return t2s_error_set(err, T2S_ERR_INVALID, "shard %s: name %" PRId64 " is outside 0..%" PRId64,
                         s->path, i, s->meta.count - 1);
  hid_t ft = H5Dget_type(s->name), fs = H5Dget_space(s->name), mt = H5Tcopy(H5T_C_S1);
  hsize_t start = (hsize_t)i, one = 1;
  hid_t ms = H5Screate_simple(1, &one, NULL);
  char *vlen = NULL, *fixed = s->name_vlen ? NULL : calloc(1, s->name_size + 1);
  t2s_status st = T2S_OK;
  if (ft < 0 || fs < 0 || mt < 0 || ms < 0 || (!s->name_vlen && fixed == NULL) ||
      H5Tset_cset(mt, H5Tget_cset(ft)) < 0 ||
      H5Tset_size(mt, s->name_vlen ? H5T_VARIABLE : s->name_size + 1) < 0 ||
      H5Tset_strpad(mt, H5T_STR_NULLTERM) < 0 ||
      H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &one, NULL) < 0 ||
      H5Dread(s->name, mt, ms, fs, H5P_DEFAULT, s->name_vlen ? (void *)&vlen : (void *)fixed) < 0)
    st = h5_fail(err, s->path, "H5Dread", "name");
  if (st == T2S_OK) snprintf(buf, size, "%s", s->name_vlen ? (vlen ? vlen : "") : fixed);
  if (vlen != NULL) H5Dvlen_reclaim(mt, ms, H5P_DEFAULT, &vlen);
  free(fixed);
  if (ms >= 0) H5Sclose(ms);
  if (mt >= 0) H5Tclose(mt);
  if (fs >= 0) H5Sclose(fs);
  if (ft >= 0) H5Tclose(ft);
  return st;
}

t2s_status t2s_shard_read_name(t2s_shard *s, int64_t i, char *buf, size_t size, t2s_error *err) {
  lock_h5();
  t2s_status st = read_name_locked(s, i, buf, size, err);
  unlock_h5();
  return st;
}

/* ---- datasets ------------------------------------------------------------------ */

/* The shards of `other` must describe the same classes and labelling as the first one. */
static t2s_status check_agree(const t2s_shard *first, const t2s_shard *other, const char *what,
                              t2s_error *err) {
  const t2s_shard_meta *a = &first->meta, *b = &other->meta;
  if (a->num_classes != b->num_classes)
    return t2s_error_set(err, T2S_ERR_FORMAT, "%s: shard %s has %d classes but %s has %d; a "
                         "dataset's shards must share one class list", what, other->path,
                         b->num_classes, first->path, a->num_classes);
  for (int c = 0; c < a->num_classes; c++)
    if (strcmp(a->class_names[c], b->class_names[c]) != 0)
      return t2s_error_set(err, T2S_ERR_FORMAT, "%s: shard %s names class %d '%s' but %s names it "
                           "'%s'", what, other->path, c, b->class_names[c], first->path,
                           a->class_names[c]);
  if (a->has_label != b->has_label)
    return t2s_error_set(err, T2S_ERR_FORMAT, "%s: shard %s is %s but %s is %s; do not mix "
                         "labelled and unlabelled shards in one dataset", what, other->path,
                         b->has_label ? "labelled" : "unlabelled", first->path,
                         a->has_label ? "labelled" : "unlabelled");
  return T2S_OK;
}

/* Appends every file that pattern matches (sorted) to *paths. */
static t2s_status expand_pattern(const char *pattern, const char *what, char ***paths, int *n,
                                 t2s_error *err) {
  glob_t g;
  memset(&g, 0, sizeof g);
  int rc = glob(pattern, GLOB_ERR, NULL, &g);
  if (rc == GLOB_NOMATCH || (rc == 0 && g.gl_pathc == 0)) {
    globfree(&g);
    return t2s_error_set(err, T2S_ERR_IO, "%s: '%s' matches no file; check the path (relative "
                         "paths start from the working directory) or build the shards with "
                         "t2sda_shards", what, pattern);
  }
  if (rc != 0) {
    globfree(&g);
    return t2s_error_set(err, T2S_ERR_IO, "%s: cannot expand '%s' (%s)", what, pattern,
                         rc == GLOB_NOSPACE ? "out of memory" : "a directory could not be read");
  }
  char **grown = realloc(*paths, (size_t)(*n + (int)g.gl_pathc) * sizeof *grown);
  if (grown == NULL) {
    globfree(&g);
    return t2s_error_set(err, T2S_ERR_NOMEM, "%s: out of memory expanding '%s'", what, pattern);
  }
  *paths = grown;
  t2s_status st = T2S_OK;
  for (size_t k = 0; k < g.gl_pathc; k++) {
    if ((grown[*n] = strdup(g.gl_pathv[k])) == NULL) {
      st = t2s_error_set(err, T2S_ERR_NOMEM, "%s: out of memory expanding '%s'", what, pattern);
      break;
    }
    (*n)++;
  }
  globfree(&g);
  return st;
}

/* Splits ".../<set>-NNNNN-of-MMMMM.h5" (t2sda_shards' names) into the set's path
 * prefix (set_len bytes) and MMMMM; 0 for other names. */
static int set_of(const char *path, size_t *set_len, int *total) {
  size_t n = strlen(path);
  int index = 0, used = 0;
  /* "-NNNNN-of-MMMMM.h5" is 18 bytes */
  if (n < 18 || sscanf(path + n - 18, "-%5d-of-%5d.h5%n", &index, total, &used) != 2 || used != 18)
    return 0;
  *set_len = n - 18;
  return 1;
}

/* Two shard sets of one name with different shard counts (a re-import with another
 * --shards beside the old one) hold the same images: a glob must not read both. */
static t2s_status check_one_set(char **paths, int n, const char *what, t2s_error *err) {
  for (int a = 0; a < n; a++) {
    size_t la = 0;
    int ta = 0;
    if (!set_of(paths[a], &la, &ta)) continue;
    for (int b = a + 1; b < n; b++) {
      size_t lb = 0;
      int tb = 0;
      if (set_of(paths[b], &lb, &tb) && la == lb && strncmp(paths[a], paths[b], la) == 0 &&
          ta != tb)
        return t2s_error_set(err, T2S_ERR_INVALID, "%s: %s and %s belong to two sets of the same "
                             "data (%d and %d shards), so every image would be read twice; "
                             "remove the stale set (or re-import with t2sda_shards --overwrite)",
                             what, paths[a], paths[b], ta, tb);
    }
  }
  return T2S_OK;
}

static t2s_status open_all(t2s_dataset *ds, char **paths, int n, const char *what,
                           t2s_error *err) {
  ds->shards = calloc((size_t)n, sizeof *ds->shards);
  ds->first = calloc((size_t)n + 1, sizeof *ds->first);
  if (ds->shards == NULL || ds->first == NULL)
    return t2s_error_set(err, T2S_ERR_NOMEM, "%s: out of memory for %d shards", what, n);
  for (int k = 0; k < n; k++) {
    t2s_shard *s = t2s_shard_open(paths[k], err);
    if (s == NULL) {
      if (err != NULL) {
        char msg[T2S_ERROR_MAX];
        snprintf(msg, sizeof msg, "%s", err->msg);
        snprintf(err->msg, sizeof err->msg, "%s: %s", what, msg);
      }
      return err ? err->status : T2S_ERR_FORMAT;
    }
    ds->shards[ds->n_shards++] = s;
    if (k > 0 && check_agree(ds->shards[0], s, what, err) != T2S_OK) return err ? err->status : T2S_ERR_FORMAT;
    ds->first[k] = ds->count;
    ds->count += s->meta.count;
  }
  ds->first[n] = ds->count;
  ds->meta = ds->shards[0]->meta;
  ds->meta.count = ds->count;
  /* the dataset records original sizes only when every shard does */
  for (int k = 0; k < n; k++) ds->meta.has_orig_size &= ds->shards[k]->meta.has_orig_size;
  return T2S_OK;
}

t2s_status t2s_dataset_open(t2s_dataset *ds, const char (*patterns)[512], int n_patterns,
                            const char *what, t2s_error *err) {
  memset(ds, 0, sizeof *ds);
  if (what == NULL) what = "dataset";
  if (n_patterns < 1)
    return t2s_error_set(err, T2S_ERR_INVALID, "%s: no shard file or pattern given", what);
  char **paths = NULL;
  int n = 0;
  t2s_status st = T2S_OK;
  for (int p = 0; p < n_patterns && st == T2S_OK; p++)
    st = expand_pattern(patterns[p], what, &paths, &n, err);
  if (st == T2S_OK) st = check_one_set(paths, n, what, err);
  if (st == T2S_OK) st = open_all(ds, paths, n, what, err);
  for (int k = 0; k < n; k++) free(paths[k]);
  free(paths);
  if (st != T2S_OK) t2s_dataset_close(ds);
  return st;
}

void t2s_dataset_close(t2s_dataset *ds) {
  if (ds == NULL) return;
  for (int k = 0; k < ds->n_shards; k++) t2s_shard_close(ds->shards[k]);
  free(ds->shards);
  free(ds->first);
  memset(ds, 0, sizeof *ds);
}

t2s_shard *t2s_dataset_locate(const t2s_dataset *ds, int64_t i, int64_t *local) {
  if (i < 0 || i >= ds->count || ds->n_shards == 0) return NULL;
  /* the last shard whose first index is <= i (empty shards share a first index) */
  int lo = 0, hi = ds->n_shards - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (ds->first[mid] <= i) lo = mid;
    else hi = mid - 1;
  }
  if (local != NULL) *local = i - ds->first[lo];
  return ds->shards[lo];
}
