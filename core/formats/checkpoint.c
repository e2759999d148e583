#include "core/formats/checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>

#include "core/formats/durable_file.h"
#include "core/formats/hdf5_error.h"
#include "core/formats/weight_layout.h"
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/device.h"
#include "core/version.h"

#define PATH_CAP 4096
#define LIST_SHOWN 5 /* names listed in a missing/unexpected tensor message */
#define CRC_ATTR "crc32" /* per-dataset checksum attribute (checkpoint.h) */

struct t2s_ckpt_writer {
  hid_t file;
  hid_t lcpl;          /* link creation: intermediate groups on */
  int meta_written;
  int failed;          /* an earlier write failed: commit must refuse */
  char final_path[PATH_CAP];
  char tmp_path[PATH_CAP + 32];
};

struct t2s_ckpt_reader {
  hid_t file;
  int64_t unverified;  /* datasets read without a stored checksum (older checkpoints) */
  char path[PATH_CAP];
};

/* ---- HDF5 error reporting -------------------------------------------------- */

static t2s_status h5_fail(t2s_error *err, const char *file, const char *call, const char *object) {
  return t2s_h5_fail(err, "checkpoint", file, call, object);
}

static void h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

/* ---- small helpers ------------------------------------------------------- */

static const char *dims_str(int ndim, const int64_t *shape, char *buf, size_t size) {
  size_t used = (size_t)snprintf(buf, size, "[");
  for (int i = 0; i < ndim && used < size; i++)
    used += (size_t)snprintf(buf + used, size - used, i ? ", %" PRId64 : "%" PRId64, shape[i]);
  if (used < size) snprintf(buf + used, size - used, "]");
  return buf;
}

static hid_t file_type(t2s_ckpt_type t) {
  switch (t) {
    case T2S_CKPT_F32: return H5T_IEEE_F32LE;
    case T2S_CKPT_F64: return H5T_IEEE_F64LE;
    case T2S_CKPT_I32: return H5T_STD_I32LE;
    case T2S_CKPT_I64: return H5T_STD_I64LE;
    case T2S_CKPT_U8: return H5T_STD_U8LE;
  }
  return -1;
}

static hid_t mem_type(t2s_ckpt_type t) {
  switch (t) {
    case T2S_CKPT_F32: return H5T_NATIVE_FLOAT;
    case T2S_CKPT_F64: return H5T_NATIVE_DOUBLE;
    case T2S_CKPT_I32: return H5T_NATIVE_INT32;
    case T2S_CKPT_I64: return H5T_NATIVE_INT64;
    case T2S_CKPT_U8: return H5T_NATIVE_UINT8;
  }
  return -1;
}

static const char *type_name(t2s_ckpt_type t) {
  static const char *names[] = {"float32", "float64", "int32", "int64", "uint8"};
  return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "unknown";
}

/* "float64", "uint8", "string" ... for messages about a dataset's element type. */
static const char *h5_type_desc(hid_t t, char *buf, size_t size) {
  H5T_class_t c = H5Tget_class(t);
  size_t bits = H5Tget_size(t) * 8;
  if (c == H5T_FLOAT) snprintf(buf, size, "float%zu", bits);
  else if (c == H5T_INTEGER)
    snprintf(buf, size, "%sint%zu", H5Tget_sign(t) == H5T_SGN_NONE ? "u" : "", bits);
  else if (c == H5T_STRING) snprintf(buf, size, "string");
  else snprintf(buf, size, "HDF5 class %d", (int)c);
  return buf;
}

/* "/params" + "x.weight" -> "/params/x.weight"; 0 when it does not fit. */
static int join(char *out, size_t size, const char *group, const char *name) {
  return (size_t)snprintf(out, size, "%s/%s", group, name) < size;
}

/* Normalises "params" or "/params" to "/params" (no trailing slash). */
static t2s_status group_path(char *out, size_t size, const char *group, const char *file,
                             t2s_error *err) {
  while (*group == '/') group++;
  size_t n = strlen(group);
  if (n == 0 || group[n - 1] == '/' || n + 2 > size)
    return t2s_error_set(err, T2S_ERR_INVALID, "checkpoint %s: invalid group name '%s'", file,
                         group);
  snprintf(out, size, "/%s", group);
  return T2S_OK;
}

/* Absolute path with non-empty components, e.g. "/state/rng/counter". */
static int valid_abs_path(const char *path) {
  if (path == NULL || path[0] != '/' || path[1] == '\0') return 0;
  for (const char *c = path; *c; c++)
    if (c[0] == '/' && (c[1] == '/' || c[1] == '\0')) return 0;
  return strlen(path) < PATH_CAP;
}

/* H5Lexists fails (rather than answering 0) when an intermediate group is
 * missing, so every prefix of the path is tested in turn. */
static int path_exists(hid_t file, const char *path) {
  if (!valid_abs_path(path)) return 0;
  char buf[PATH_CAP];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *c = buf + 1;; c++) {
    if (*c == '/' || *c == '\0') {
      char saved = *c;
      *c = '\0';
      if (H5Lexists(file, buf, H5P_DEFAULT) <= 0) return 0;
      if (saved == '\0') return 1;
      *c = saved;
    }
  }
}

/* A flat device buffer and the tensors laid out in it. */
typedef struct flat_set {
  t2s_param **list;
  int count;
  float *flat;         /* device pointer */
  size_t numel;
  float *host;         /* staging copy */
} flat_set;

static int select_sets(const t2s_params *p, int what, float *flat_params, flat_set sets[2]) {
  int n = 0;
  if (what & T2S_CKPT_TRAINABLE)
    sets[n++] = (flat_set){p->items, p->count, flat_params, p->numel, NULL};
  if (what & T2S_CKPT_BUFFERS)
    sets[n++] = (flat_set){p->buffers, p->buf_count, p->buf_data, p->buf_numel, NULL};
  return n;
}

static void free_hosts(flat_set *sets, int nsets) {
  for (int s = 0; s < nsets; s++) {
    free(sets[s].host);
    sets[s].host = NULL;
  }
}

static size_t max_permuted_numel(const flat_set *sets, int nsets) {
  size_t m = 1;
  for (int s = 0; s < nsets; s++)
    for (int i = 0; i < sets[s].count; i++)
      if (t2s_weight_stored_ohwi(sets[s].list[i]) && (size_t)t2s_numel(&sets[s].list[i]->t) > m)
        m = (size_t)t2s_numel(&sets[s].list[i]->t);
  return m;
}

/* ---- writing --------------------------------------------------------------- */

t2s_ckpt_writer *t2s_ckpt_begin(const char *final_path, t2s_error *err) {
  h5_quiet();
  if (final_path == NULL || final_path[0] == '\0' || strlen(final_path) >= PATH_CAP) {
    t2s_error_set(err, T2S_ERR_INVALID, "checkpoint path is empty or too long");
    return NULL;
  }
  t2s_ckpt_writer *w = calloc(1, sizeof *w);
  if (w == NULL) {
    t2s_error_set(err, T2S_ERR_NOMEM, "out of memory starting checkpoint %s", final_path);
    return NULL;
  }
  snprintf(w->final_path, sizeof w->final_path, "%s", final_path);
  snprintf(w->tmp_path, sizeof w->tmp_path, "%s.tmp.%ld", final_path, (long)getpid());
  w->file = w->lcpl = -1;
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  /* STRONG: H5Fclose really closes the file even if an object id leaked, so
   * the bytes are on disk before fsync and rename. */
  if (fapl < 0 || H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0) {
    h5_fail(err, w->tmp_path, "H5Pset_fclose_degree", "file access properties");
  } else if ((w->file = H5Fcreate(w->tmp_path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl)) < 0) {
    h5_fail(err, w->tmp_path, "H5Fcreate", w->tmp_path);
  } else if ((w->lcpl = H5Pcreate(H5P_LINK_CREATE)) < 0 ||
             H5Pset_create_intermediate_group(w->lcpl, 1) < 0) {
    h5_fail(err, w->tmp_path, "H5Pset_create_intermediate_group", "link creation properties");
  }
  if (fapl >= 0) H5Pclose(fapl);
  if (w->file < 0 || w->lcpl < 0) {
    t2s_ckpt_abort(w);
    return NULL;
  }
  return w;
}

static t2s_status writer_fail(t2s_ckpt_writer *w, t2s_status st) {
  if (st != T2S_OK) w->failed = 1;
  return st;
}

static size_t type_size(t2s_ckpt_type t) {
  static const size_t sizes[] = {4, 8, 4, 8, 1};
  return (unsigned)t < sizeof sizes / sizeof sizes[0] ? sizes[t] : 0;
}

/* CRC32 (zlib) of the elements as stored: little-endian file order, which is the
 * host's memory order on every machine this builds for. */
static uint32_t data_crc32(const void *data, size_t bytes) {
  uLong crc = crc32(0L, Z_NULL, 0);
  const Bytef *p = data;
  while (bytes > 0) { /* crc32 takes a 32-bit length */
    uInt n = bytes > (1u << 30) ? (1u << 30) : (uInt)bytes;
    crc = crc32(crc, p, n);
    p += n;
    bytes -= n;
  }
  return (uint32_t)crc;
}

static t2s_status write_crc_attr(t2s_ckpt_writer *w, hid_t ds, const char *path, uint32_t crc,
                                 t2s_error *err) {
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t a = space < 0 ? -1 : H5Acreate2(ds, CRC_ATTR, H5T_STD_U32LE, space, H5P_DEFAULT,
                                        H5P_DEFAULT);
  t2s_status st = T2S_OK;
  if (a < 0 || H5Awrite(a, H5T_NATIVE_UINT32, &crc) < 0)
    st = h5_fail(err, w->tmp_path, "H5Awrite", path);
  if (a >= 0) H5Aclose(a);
  if (space >= 0) H5Sclose(space);
  return st;
}

/* One dataset (or, with ndim 0, a scalar) at an absolute path, with its checksum. */
static t2s_status write_dataset(t2s_ckpt_writer *w, const char *path, t2s_ckpt_type type,
                                int ndim, const int64_t *shape, const void *data,
                                t2s_error *err) {
  hsize_t dims[T2S_CKPT_MAX_DIMS];
  size_t bytes = type_size(type);
  for (int i = 0; i < ndim; i++) {
    dims[i] = (hsize_t)shape[i];
    bytes *= (size_t)shape[i];
  }
  hid_t space = ndim == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(ndim, dims, NULL);
  if (space < 0) return writer_fail(w, h5_fail(err, w->tmp_path, "H5Screate", path));
  t2s_status st = T2S_OK;
  hid_t ds = H5Dcreate2(w->file, path, file_type(type), space, w->lcpl, H5P_DEFAULT, H5P_DEFAULT);
  if (ds < 0) st = h5_fail(err, w->tmp_path, "H5Dcreate2", path);
  else if (H5Dwrite(ds, mem_type(type), H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
    st = h5_fail(err, w->tmp_path, "H5Dwrite", path);
  else st = write_crc_attr(w, ds, path, data_crc32(data, bytes), err);
  if (ds >= 0) H5Dclose(ds);
  H5Sclose(space);
  return writer_fail(w, st);
}

static t2s_status write_attr(t2s_ckpt_writer *w, hid_t loc, const char *name, hid_t ftype,
                             hid_t mtype, const void *value, t2s_error *err) {
  char object[64];
  snprintf(object, sizeof object, "/meta@%s", name);
  hid_t space = H5Screate(H5S_SCALAR);
  if (space < 0) return writer_fail(w, h5_fail(err, w->tmp_path, "H5Screate", object));
  t2s_status st = T2S_OK;
  hid_t a = H5Acreate2(loc, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT);
  if (a < 0) st = h5_fail(err, w->tmp_path, "H5Acreate2", object);
  else if (H5Awrite(a, mtype, value) < 0) st = h5_fail(err, w->tmp_path, "H5Awrite", object);
  if (a >= 0) H5Aclose(a);
  H5Sclose(space);
  return writer_fail(w, st);
}

/* Variable-length UTF-8: h5py returns a str, and the YAML may be any length
 * (the text lives in the global heap, not in the 64 KiB object header). */
static t2s_status write_attr_string(t2s_ckpt_writer *w, hid_t loc, const char *name,
                                    const char *value, t2s_error *err) {
  hid_t t = H5Tcopy(H5T_C_S1);
  if (t < 0 || H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
    if (t >= 0) H5Tclose(t);
    return writer_fail(w, h5_fail(err, w->tmp_path, "H5Tset_size(H5T_VARIABLE)", name));
  }
  t2s_status st = write_attr(w, loc, name, t, t, &value, err);
  H5Tclose(t);
  return st;
}

t2s_status t2s_ckpt_write_meta(t2s_ckpt_writer *w, int64_t iteration, int world_size,
                               const char *config_yaml, t2s_error *err) {
  if (w->meta_written)
    return t2s_error_set(err, T2S_ERR_INVALID, "checkpoint %s: /meta written twice",
                         w->final_path);
  hid_t g = H5Gcreate2(w->file, "/meta", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (g < 0) return writer_fail(w, h5_fail(err, w->tmp_path, "H5Gcreate2", "/meta"));
  int32_t version = T2S_CKPT_VERSION, ws = world_size;
  t2s_status st = write_attr_string(w, g, "format", T2S_CKPT_FORMAT, err);
  if (st == T2S_OK)
    st = write_attr(w, g, "version", H5T_STD_I32LE, H5T_NATIVE_INT32, &version, err);
  if (st == T2S_OK)
    st = write_attr(w, g, "iteration", H5T_STD_I64LE, H5T_NATIVE_INT64, &iteration, err);
  if (st == T2S_OK) st = write_attr(w, g, "world_size", H5T_STD_I32LE, H5T_NATIVE_INT32, &ws, err);
  if (st == T2S_OK) st = write_attr_string(w, g, "config", config_yaml ? config_yaml : "", err);
  if (st == T2S_OK) st = write_attr_string(w, g, "build", T2S_VERSION_STRING, err);
  H5Gclose(g);
  if (st == T2S_OK) w->meta_written = 1;
  return st;
}

/* Creates the group (and its parents) unless it exists already, so that e.g.
 * /ema may be filled by two calls. */
static t2s_status ensure_group(t2s_ckpt_writer *w, const char *path, t2s_error *err) {
  if (path_exists(w->file, path)) return T2S_OK;
  hid_t g = H5Gcreate2(w->file, path, w->lcpl, H5P_DEFAULT, H5P_DEFAULT);
  if (g < 0) return writer_fail(w, h5_fail(err, w->tmp_path, "H5Gcreate2", path));
  H5Gclose(g);
  return T2S_OK;
}

static t2s_status stage_to_host(flat_set *sets, int nsets, t2s_device dev, const char *file,
                                t2s_error *err) {
  for (int s = 0; s < nsets; s++) {
    size_t n = sets[s].numel ? sets[s].numel : 1;
    sets[s].host = malloc(n * sizeof(float));
    if (sets[s].host == NULL)
      return t2s_error_set(err, T2S_ERR_NOMEM, "checkpoint %s: out of host memory (%zu floats)",
                           file, n);
    t2s_status st = t2s_device_copy(T2S_DEV_CPU, sets[s].host, dev, sets[s].flat,
                                    sets[s].numel * sizeof(float), err);
    if (st != T2S_OK) return st;
  }
  return T2S_OK;
}

static t2s_status write_sets(t2s_ckpt_writer *w, const char *group, flat_set *sets, int nsets,
                             t2s_device dev, t2s_error *err) {
  t2s_status st = ensure_group(w, group, err);
  if (st == T2S_OK) st = stage_to_host(sets, nsets, dev, w->final_path, err);
  float *scratch = st == T2S_OK ? malloc(max_permuted_numel(sets, nsets) * sizeof(float)) : NULL;
  if (st == T2S_OK && scratch == NULL)
    st = t2s_error_set(err, T2S_ERR_NOMEM, "checkpoint %s: out of host memory", w->final_path);
  for (int s = 0; s < nsets && st == T2S_OK; s++) {
    for (int i = 0; i < sets[s].count && st == T2S_OK; i++) {
      const t2s_param *q = sets[s].list[i];
      char path[PATH_CAP];
      if (strchr(q->name, '/') != NULL || !join(path, sizeof path, group, q->name)) {
        st = t2s_error_set(err, T2S_ERR_INVALID,
                           "checkpoint %s: tensor name '%s' contains '/' or is too long",
                           w->final_path, q->name);
        break;
      }
      const float *src = sets[s].host + q->offset;
      if (t2s_weight_stored_ohwi(q)) {
        t2s_weight_permute(q, src, scratch, T2S_WEIGHT_TO_FILE);
        src = scratch;
      }
      st = write_dataset(w, path, T2S_CKPT_F32, q->t.ndim, q->t.shape, src, err);
    }
  }
  free(scratch);
  free_hosts(sets, nsets);
  return writer_fail(w, st);
}

t2s_status t2s_ckpt_write_params(t2s_ckpt_writer *w, const char *group, const t2s_params *p,
                                 int what, t2s_error *err) {
  char g[PATH_CAP];
  t2s_status st = group_path(g, sizeof g, group, w->final_path, err);
  if (st != T2S_OK) return writer_fail(w, st);
  if (!p->finalized)
    return writer_fail(w, t2s_error_set(err, T2S_ERR_INVALID,
                                        "checkpoint %s: writing %s from parameters that were "
                                        "never finalized", w->final_path, g));
  flat_set sets[2];
  int n = select_sets(p, what, p->data, sets);
  return write_sets(w, g, sets, n, p->device, err);
}

t2s_status t2s_ckpt_write_slot(t2s_ckpt_writer *w, const char *slot, const t2s_params *p,
                               const float *flat_state, t2s_error *err) {
  char g[PATH_CAP];
  if (slot == NULL || strchr(slot, '/') != NULL || slot[0] == '\0' ||
      !join(g, sizeof g, "/optim", slot))
    return writer_fail(w, t2s_error_set(err, T2S_ERR_INVALID,
                                        "checkpoint %s: invalid optimizer slot name '%s'",
                                        w->final_path, slot ? slot : "(null)"));
  flat_set sets[2];
  int n = select_sets(p, T2S_CKPT_TRAINABLE, (float *)flat_state, sets);
  return write_sets(w, g, sets, n, p->device, err);
}

static int state_path(const char *path) {
  return valid_abs_path(path) &&
         (strncmp(path, "/state/", 7) == 0 || strncmp(path, "/optim/", 7) == 0);
}

t2s_status t2s_ckpt_write_array(t2s_ckpt_writer *w, const char *path, t2s_ckpt_type type,
                                int ndim, const int64_t *shape, const void *host_data,
                                t2s_error *err) {
  if (!state_path(path) || ndim < 0 || ndim > T2S_CKPT_MAX_DIMS || file_type(type) < 0)
    return writer_fail(w, t2s_error_set(err, T2S_ERR_INVALID,
                                        "checkpoint %s: cannot write array '%s' (%d dims): "
                                        "arrays go under /state/ or /optim/ with at most %d dims",
                                        w->final_path, path ? path : "(null)", ndim,
                                        T2S_CKPT_MAX_DIMS));
  return write_dataset(w, path, type, ndim, shape, host_data, err);
}

t2s_status t2s_ckpt_write_scalar_i64(t2s_ckpt_writer *w, const char *path, int64_t value,
                                     t2s_error *err) {
  return t2s_ckpt_write_array(w, path, T2S_CKPT_I64, 0, NULL, &value, err);
}

t2s_status t2s_ckpt_write_scalar_f64(t2s_ckpt_writer *w, const char *path, double value,
                                     t2s_error *err) {
  return t2s_ckpt_write_array(w, path, T2S_CKPT_F64, 0, NULL, &value, err);
}

static t2s_status sync_and_rename(t2s_ckpt_writer *w, t2s_error *err) {
  return t2s_durable_rename(w->tmp_path, w->final_path, "checkpoint", err);
}

t2s_status t2s_ckpt_commit(t2s_ckpt_writer *w, t2s_error *err) {
  t2s_status st = T2S_OK;
  if (w->failed)
    st = t2s_error_set(err, T2S_ERR_INVALID,
                       "checkpoint %s: not committed because an earlier write failed",
                       w->final_path);
  else if (!w->meta_written)
    st = t2s_error_set(err, T2S_ERR_INVALID,
                       "checkpoint %s: not committed because /meta was never written "
                       "(call t2s_ckpt_write_meta)", w->final_path);
  else if (H5Fflush(w->file, H5F_SCOPE_GLOBAL) < 0)
    st = h5_fail(err, w->tmp_path, "H5Fflush", "/");
  if (st != T2S_OK) {
    t2s_ckpt_abort(w);
    return st;
  }
  H5Pclose(w->lcpl);
  w->lcpl = -1;
  herr_t closed = t2s_h5_close_file(w->file);
  w->file = -1;
  if (closed < 0) st = h5_fail(err, w->tmp_path, "H5Fclose", "/");
  if (st == T2S_OK) st = sync_and_rename(w, err);
  if (st != T2S_OK) unlink(w->tmp_path); /* no-op (ENOENT) once renamed */
  free(w);
  return st;
}

void t2s_ckpt_abort(t2s_ckpt_writer *w) {
  if (w == NULL) return;
  if (w->lcpl >= 0) H5Pclose(w->lcpl);
  if (w->file >= 0) t2s_h5_close_file(w->file);
  unlink(w->tmp_path);
  free(w);
}

/* ---- reading: attributes ------------------------------------------------- */

static t2s_status open_attr(t2s_ckpt_reader *r, hid_t loc, const char *name, hid_t *attr,
                            t2s_error *err) {
  if (H5Aexists(loc, name) <= 0)
    return t2s_error_set(err, T2S_ERR_FORMAT,
                         "checkpoint %s: /meta has no attribute '%s'; the file is damaged or "
                         "was not written by t2sda", r->path, name);
  *attr = H5Aopen(loc, name, H5P_DEFAULT);
  if (*attr < 0) return h5_fail(err, r->path, "H5Aopen", name);
  hid_t space = H5Aget_space(*attr);
  hssize_t n = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
  if (space >= 0) H5Sclose(space);
  if (n != 1) {
    H5Aclose(*attr);
    return t2s_error_set(err, T2S_ERR_FORMAT,
                         "checkpoint %s: /meta attribute '%s' holds %lld values, expected one",
                         r->path, name, (long long)n);
  }
  return T2S_OK;
}

static t2s_status read_attr_i64(t2s_ckpt_reader *r, hid_t loc, const char *name, int64_t *v,
                                t2s_error *err) {
  hid_t a = -1;
  t2s_status st = open_attr(r, loc, name, &a, err);
  if (st != T2S_OK) return st;
  hid_t t = H5Aget_type(a);
  if (t < 0 || H5Tget_class(t) != H5T_INTEGER)
    st = t2s_error_set(err, T2S_ERR_FORMAT, "checkpoint %s: /meta attribute '%s' is not an "
                       "integer", r->path, name);
  else if (H5Aread(a, H5T_NATIVE_INT64, v) < 0)
    st = h5_fail(err, r->path, "H5Aread", name);
  if (t >= 0) H5Tclose(t);
  H5Aclose(a);
  return st;
}

/* Accepts variable-length strings (ours, h5py's str) and fixed-length ones. */
static t2s_status read_attr_string(t2s_ckpt_reader *r, hid_t loc, const char *name, char **out,
                                   t2s_error *err) {
  hid_t a = -1;
  t2s_status st = open_attr(r, loc, name, &a, err);
  if (st != T2S_OK) return st;
  hid_t ft = H5Aget_type(a), mt = -1;
  *out = NULL;
  if (ft < 0 || H5Tget_class(ft) != H5T_STRING) {
    st = t2s_error_set(err, T2S_ERR_FORMAT, "checkpoint %s: /meta attribute '%s' is not a string",
                       r->path, name);
  } else if (H5Tis_variable_str(ft) > 0) {
    char *s = NULL;
    mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, H5T_VARIABLE);
    H5Tset_cset(mt, H5Tget_cset(ft));
    if (H5Aread(a, mt, &s) < 0) st = h5_fail(err, r->path, "H5Aread", name);
    else *out = strdup(s ? s : "");
    if (s) H5free_memory(s);
  } else {
    size_t n = H5Tget_size(ft);
    mt = H5Tcopy(ft);
    *out = calloc(n + 1, 1);
    if (*out != NULL && H5Aread(a, mt, *out) < 0) {
      st = h5_fail(err, r->path, "H5Aread", name);
      free(*out);
      *out = NULL;
    }
  }
  if (st == T2S_OK && *out == NULL)
    st = t2s_error_set(err, T2S_ERR_NOMEM, "checkpoint %s: out of memory reading '%s'", r->path,
                       name);
  if (mt >= 0) H5Tclose(mt);
  if (ft >= 0) H5Tclose(ft);
  H5Aclose(a);
  return st;
}

/* ---- reading: open --------------------------------------------------------- */

static t2s_status check_meta(t2s_ckpt_reader *r, t2s_error *err) {
  if (H5Lexists(r->file, "meta", H5P_DEFAULT) <= 0 ||
      H5Aexists_by_name(r->file, "meta", "format", H5P_DEFAULT) <= 0)
    return t2s_error_set(err, T2S_ERR_FORMAT,
                         "%s is an HDF5 file but not a t2sda checkpoint (no /meta attribute "
                         "format = \"%s\"); pass a checkpoint written by t2sda_train or "
                         "t2sda_convert", r->path, T2S_CKPT_FORMAT);
  hid_t g = H5Gopen2(r->file, "/meta", H5P_DEFAULT);
  if (g < 0) return h5_fail(err, r->path, "H5Gopen2", "/meta");
  char *format = NULL;
  int64_t version = 0;
  t2s_status st = read_attr_string(r, g, "format", &format, err);
  if (st == T2S_OK && strcmp(format, T2S_CKPT_FORMAT) != 0)
    st = t2s_error_set(err, T2S_ERR_FORMAT,
                       "%s is not a t2sda checkpoint: /meta format is \"%s\", expected \"%s\"",
                       r->path, format, T2S_CKPT_FORMAT);
  if (st == T2S_OK) st = read_attr_i64(r, g, "version", &version, err);
  if (st == T2S_OK && version > T2S_CKPT_VERSION)
    st = t2s_error_set(err, T2S_ERR_FORMAT,
                       "checkpoint %s has version %" PRId64 ", newer than this build reads "
                       "(up to %d): use a newer t2sda build (this is %s)",
                       r->path, version, T2S_CKPT_VERSION, T2S_VERSION_STRING);
  if (st == T2S_OK && version < 1)
    st = t2s_error_set(err, T2S_ERR_FORMAT, "checkpoint %s: invalid version %" PRId64, r->path,
                       version);
  free(format);
  H5Gclose(g);
  return st;
}

static t2s_status open_file(t2s_ckpt_reader *r, t2s_error *err) {
  struct stat sb;
  if (stat(r->path, &sb) != 0)
    return t2s_error_set(err, T2S_ERR_IO, "cannot open checkpoint %s: %s", r->path,
                         strerror(errno));
  if (!S_ISREG(sb.st_mode))
    return t2s_error_set(err, T2S_ERR_IO, "checkpoint %s is not a regular file", r->path);
  if (H5Fis_hdf5(r->path) <= 0)
    return t2s_error_set(err, T2S_ERR_FORMAT,
                         "checkpoint %s (%lld bytes) is not an HDF5 file: it is truncated before "
                         "its header or is not a checkpoint; resume from the previous checkpoint",
                         r->path, (long long)sb.st_size);
  r->file = H5Fopen(r->path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (r->file < 0) {
    char detail[384];
    t2s_h5_detail(detail, sizeof detail);
    return t2s_error_set(err, T2S_ERR_FORMAT,
                         "checkpoint %s (%lld bytes) is truncated or damaged: H5Fopen failed "
                         "(HDF5: %s). It was probably cut short while being written or copied; "
                         "resume from the previous checkpoint",
                         r->path, (long long)sb.st_size, detail);
  }
  return T2S_OK;
}

t2s_ckpt_reader *t2s_ckpt_open(const char *path, t2s_error *err) {
  h5_quiet();
  if (path == NULL || strlen(path) >= PATH_CAP) {
    t2s_error_set(err, T2S_ERR_INVALID, "checkpoint path is missing or too long");
    return NULL;
  }
  t2s_ckpt_reader *r = calloc(1, sizeof *r);
  if (r == NULL) {
    t2s_error_set(err, T2S_ERR_NOMEM, "out of memory opening checkpoint %s", path);
    return NULL;
  }
  r->file = -1;
  snprintf(r->path, sizeof r->path, "%s", path);
  if (open_file(r, err) != T2S_OK || check_meta(r, err) != T2S_OK) {
    t2s_ckpt_close(r);
    return NULL;
  }
  return r;
}

void t2s_ckpt_close(t2s_ckpt_reader *r) {
  if (r == NULL) return;
  if (r->file >= 0) t2s_h5_close_file(r->file);
  free(r);
}

const char *t2s_ckpt_path(const t2s_ckpt_reader *r) { return r->path; }
int64_t t2s_ckpt_unverified(const t2s_ckpt_reader *r) { return r->unverified; }

int t2s_ckpt_has(t2s_ckpt_reader *r, const char *path) { return path_exists(r->file, path); }

t2s_status t2s_ckpt_read_meta(t2s_ckpt_reader *r, int64_t *iteration, int *world_size,
                              char **config_yaml, t2s_error *err) {
  hid_t g = H5Gopen2(r->file, "/meta", H5P_DEFAULT);
  if (g < 0) return h5_fail(err, r->path, "H5Gopen2", "/meta");
  int64_t it = 0, ws = 0;
  char *yaml = NULL;
  t2s_status st = read_attr_i64(r, g, "iteration", &it, err);
  if (st == T2S_OK) st = read_attr_i64(r, g, "world_size", &ws, err);
  if (st == T2S_OK && config_yaml != NULL) st = read_attr_string(r, g, "config", &yaml, err);
  H5Gclose(g);
  if (st != T2S_OK) return st;
  if (iteration) *iteration = it;
  if (world_size) *world_size = (int)ws;
  if (config_yaml) *config_yaml = yaml;
  return T2S_OK;
}

/* ---- reading: datasets ---------------------------------------------------- */

/* H5Dread of a whole dataset, then the stored checksum (when there is one) against
 * the bytes read. A checkpoint from before the checksums is read unverified. */
static t2s_status read_verified(t2s_ckpt_reader *r, hid_t ds, const char *shown,
                                t2s_ckpt_type type, size_t numel, void *dst, t2s_error *err) {
  if (H5Dread(ds, mem_type(type), H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0)
    return h5_fail(err, r->path, "H5Dread", shown);
  int verified = 0;
  t2s_status st = t2s_ckpt_verify_dataset(ds, r->path, shown, dst, numel * type_size(type),
                                          &verified, err);
  if (st == T2S_OK && !verified) r->unverified++;
  return st;
}

t2s_status t2s_ckpt_verify_dataset(int64_t dataset, const char *file, const char *shown,
                                   const void *data, size_t bytes, int *verified,
                                   t2s_error *err) {
  hid_t ds = (hid_t)dataset;
  *verified = 0;
  htri_t has = H5Aexists(ds, CRC_ATTR);
  if (has < 0) return h5_fail(err, file, "H5Aexists", shown);
  if (has == 0) return T2S_OK;
  uint32_t stored = 0;
  hid_t a = H5Aopen(ds, CRC_ATTR, H5P_DEFAULT);
  hid_t t = a < 0 ? -1 : H5Aget_type(a);
  t2s_status st = T2S_OK;
  if (t < 0 || H5Tget_class(t) != H5T_INTEGER || H5Aread(a, H5T_NATIVE_UINT32, &stored) < 0)
    st = t2s_error_set(err, T2S_ERR_FORMAT, "checkpoint %s: %s has an unreadable '%s' attribute "
                       "(expected one uint32)", file, shown, CRC_ATTR);
  if (t >= 0) H5Tclose(t);
  if (a >= 0) H5Aclose(a);
  if (st != T2S_OK) return st;
  uint32_t got = data_crc32(data, bytes);
  if (got != stored)
    return t2s_error_set(err, T2S_ERR_FORMAT,
                         "checkpoint %s: %s does not match its checksum (CRC32 %08x, stored "
                         "%08x): the file is damaged; use an earlier checkpoint or a copy",
                         file, shown, got, stored);
  *verified = 1;
  return T2S_OK;
}

/* Opens the dataset at loc/name and checks its element type and shape. */
static t2s_status open_checked(t2s_ckpt_reader *r, hid_t loc, const char *name,
                               const char *shown, t2s_ckpt_type type, int ndim,
                               const int64_t *shape, hid_t *ds_out, t2s_error *err) {
  hid_t ds = H5Dopen2(loc, name, H5P_DEFAULT);
  if (ds < 0) return h5_fail(err, r->path, "H5Dopen2", shown);
  hid_t t = H5Dget_type(ds), space = H5Dget_space(ds);
  t2s_status st = T2S_OK;
  hid_t want = file_type(type);
  int fdims = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
  hsize_t dims[H5S_MAX_RANK];
  if (t < 0 || space < 0 || fdims < 0 || fdims > H5S_MAX_RANK ||
      H5Sget_simple_extent_dims(space, dims, NULL) < 0) {
    st = h5_fail(err, r->path, "H5Sget_simple_extent_dims", shown);
  } else if (H5Tget_class(t) != H5Tget_class(want) || H5Tget_size(t) != H5Tget_size(want) ||
             (H5Tget_class(t) == H5T_INTEGER && H5Tget_sign(t) != H5Tget_sign(want))) {
    char desc[48];
    st = t2s_error_set(err, T2S_ERR_FORMAT,
                       "checkpoint %s: %s holds %s elements, expected %s", r->path, shown,
                       h5_type_desc(t, desc, sizeof desc), type_name(type));
  } else {
    int same = fdims == ndim;
    int64_t fshape[H5S_MAX_RANK];
    for (int i = 0; i < fdims; i++) {
      fshape[i] = (int64_t)dims[i];
      if (same && fshape[i] != shape[i]) same = 0;
    }
    if (!same) {
      char a[160], b[160];
      st = t2s_error_set(err, T2S_ERR_FORMAT,
                         "checkpoint %s: tensor %s has shape %s in the file but %s in the "
                         "network; the checkpoint was written for a different model or config",
                         r->path, shown, dims_str(fdims, fshape, a, sizeof a),
                         dims_str(ndim, shape, b, sizeof b));
    }
  }
  if (t >= 0) H5Tclose(t);
  if (space >= 0) H5Sclose(space);
  if (st != T2S_OK) H5Dclose(ds);
  else *ds_out = ds;
  return st;
}

static int in_sets(const flat_set *sets, int nsets, const char *name) {
  for (int s = 0; s < nsets; s++)
    for (int i = 0; i < sets[s].count; i++)
      if (strcmp(sets[s].list[i]->name, name) == 0) return 1;
  return 0;
}

/* Appends name to a "a, b, c" list while fewer than LIST_SHOWN are shown. */
static void list_add(char *list, size_t size, int *count, const char *name) {
  if (*count < LIST_SHOWN) {
    size_t used = strlen(list);
    snprintf(list + used, size - used, "%s%s", *count ? ", " : "", name);
  }
  (*count)++;
}

static t2s_status check_missing(t2s_ckpt_reader *r, hid_t g, const char *group,
                                const flat_set *sets, int nsets, t2s_error *err) {
  char list[1024] = "";
  int missing = 0, total = 0;
  for (int s = 0; s < nsets; s++)
    for (int i = 0; i < sets[s].count; i++, total++)
      if (H5Lexists(g, sets[s].list[i]->name, H5P_DEFAULT) <= 0)
        list_add(list, sizeof list, &missing, sets[s].list[i]->name);
  if (missing == 0) return T2S_OK;
  return t2s_error_set(err, T2S_ERR_FORMAT,
                       "checkpoint %s: %s lacks %d of the network's %d tensors (%s%s); the "
                       "checkpoint was written for a different model or config",
                       r->path, group, missing, total, list, missing > LIST_SHOWN ? ", ..." : "");
}

static t2s_status check_unexpected(t2s_ckpt_reader *r, hid_t g, const char *group,
                                   const flat_set *sets, int nsets, t2s_error *err) {
  H5G_info_t info;
  if (H5Gget_info(g, &info) < 0) return h5_fail(err, r->path, "H5Gget_info", group);
  char list[1024] = "";
  int extra = 0;
  for (hsize_t k = 0; k < info.nlinks; k++) {
    char name[512];
    ssize_t n = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, k, name, sizeof name,
                                   H5P_DEFAULT);
    if (n < 0) return h5_fail(err, r->path, "H5Lget_name_by_idx", group);
    if (!in_sets(sets, nsets, name)) list_add(list, sizeof list, &extra, name);
  }
  if (extra == 0) return T2S_OK;
  return t2s_error_set(err, T2S_ERR_FORMAT,
                       "checkpoint %s: %s holds %d tensors the network does not have (%s%s); "
                       "the checkpoint was written for a different model or config",
                       r->path, group, extra, list, extra > LIST_SHOWN ? ", ..." : "");
}

/* Checks every shape, then reads into host copies, then copies to the device:
 * nothing on the device changes unless the whole group matched. */
static t2s_status read_sets(t2s_ckpt_reader *r, hid_t g, const char *group, flat_set *sets,
                            int nsets, t2s_device dev, t2s_error *err) {
  t2s_status st = check_missing(r, g, group, sets, nsets, err);
  if (st == T2S_OK) st = check_unexpected(r, g, group, sets, nsets, err);
  float *scratch = malloc(max_permuted_numel(sets, nsets) * sizeof(float));
  for (int s = 0; s < nsets && st == T2S_OK; s++) {
    sets[s].host = calloc(sets[s].numel ? sets[s].numel : 1, sizeof(float));
    if (sets[s].host == NULL || scratch == NULL)
      st = t2s_error_set(err, T2S_ERR_NOMEM, "checkpoint %s: out of host memory reading %s",
                         r->path, group);
    for (int i = 0; i < sets[s].count && st == T2S_OK; i++) {
      const t2s_param *q = sets[s].list[i];
      char shown[PATH_CAP];
      join(shown, sizeof shown, group, q->name);
      hid_t ds = -1;
      st = open_checked(r, g, q->name, shown, T2S_CKPT_F32, q->t.ndim, q->t.shape, &ds, err);
      if (st != T2S_OK) break;
      float *dst = t2s_weight_stored_ohwi(q) ? scratch : sets[s].host + q->offset;
      st = read_verified(r, ds, shown, T2S_CKPT_F32, (size_t)t2s_numel(&q->t), dst, err);
      if (st == T2S_OK && t2s_weight_stored_ohwi(q))
        t2s_weight_permute(q, scratch, sets[s].host + q->offset, T2S_WEIGHT_TO_DEVICE);
      H5Dclose(ds);
    }
  }
  for (int s = 0; s < nsets && st == T2S_OK; s++)
    st = t2s_device_copy(dev, sets[s].flat, T2S_DEV_CPU, sets[s].host,
                         sets[s].numel * sizeof(float), err);
  free(scratch);
  free_hosts(sets, nsets);
  return st;
}

static t2s_status read_group(t2s_ckpt_reader *r, const char *group, flat_set *sets, int nsets,
                             t2s_device dev, t2s_error *err) {
  if (!path_exists(r->file, group))
    return t2s_error_set(err, T2S_ERR_FORMAT,
                         "checkpoint %s has no group %s; it was written without it (e.g. a "
                         "converted or source-only checkpoint)", r->path, group);
  hid_t g = H5Gopen2(r->file, group, H5P_DEFAULT);
  if (g < 0) return h5_fail(err, r->path, "H5Gopen2", group);
  t2s_status st = read_sets(r, g, group, sets, nsets, dev, err);
  H5Gclose(g);
  return st;
}

t2s_status t2s_ckpt_read_params(t2s_ckpt_reader *r, const char *group, t2s_params *p, int what,
                                t2s_error *err) {
  char g[PATH_CAP];
  t2s_status st = group_path(g, sizeof g, group, r->path, err);
  if (st != T2S_OK) return st;
  if (!p->finalized)
    return t2s_error_set(err, T2S_ERR_INVALID,
                         "checkpoint %s: reading %s into parameters that were never finalized",
                         r->path, g);
  flat_set sets[2];
  int n = select_sets(p, what, p->data, sets);
  return read_group(r, g, sets, n, p->device, err);
}

t2s_status t2s_ckpt_read_slot(t2s_ckpt_reader *r, const char *slot, const t2s_params *p,
                              float *flat_state, t2s_error *err) {
  char g[PATH_CAP];
  if (slot == NULL || slot[0] == '\0' || strchr(slot, '/') != NULL ||
      !join(g, sizeof g, "/optim", slot))
    return t2s_error_set(err, T2S_ERR_INVALID, "checkpoint %s: invalid optimizer slot name '%s'",
                         r->path, slot ? slot : "(null)");
  flat_set sets[2];
  int n = select_sets(p, T2S_CKPT_TRAINABLE, flat_state, sets);
  return read_group(r, g, sets, n, p->device, err);
}

static t2s_status require_path(t2s_ckpt_reader *r, const char *path, t2s_error *err) {
  if (!valid_abs_path(path))
    return t2s_error_set(err, T2S_ERR_INVALID, "checkpoint %s: invalid path '%s'", r->path,
                         path ? path : "(null)");
  if (!path_exists(r->file, path))
    return t2s_error_set(err, T2S_ERR_FORMAT,
                         "checkpoint %s has no %s; it was written by a build or run that did "
                         "not save it", r->path, path);
  return T2S_OK;
}

t2s_status t2s_ckpt_read_array(t2s_ckpt_reader *r, const char *path, t2s_ckpt_type type,
                               int ndim, const int64_t *shape, void *host_data, t2s_error *err) {
  t2s_status st = require_path(r, path, err);
  if (st != T2S_OK) return st;
  if (ndim < 0 || ndim > T2S_CKPT_MAX_DIMS || file_type(type) < 0)
    return t2s_error_set(err, T2S_ERR_INVALID, "checkpoint %s: bad request for %s (%d dims)",
                         r->path, path, ndim);
  hid_t ds = -1;
  st = open_checked(r, r->file, path, path, type, ndim, shape, &ds, err);
  if (st != T2S_OK) return st;
  size_t numel = 1;
  for (int i = 0; i < ndim; i++) numel *= (size_t)shape[i];
  st = read_verified(r, ds, path, type, numel, host_data, err);
  H5Dclose(ds);
  return st;
}

t2s_status t2s_ckpt_array_shape(t2s_ckpt_reader *r, const char *path, int *ndim,
                                int64_t shape[T2S_CKPT_MAX_DIMS], t2s_error *err) {
  t2s_status st = require_path(r, path, err);
  if (st != T2S_OK) return st;
  hid_t ds = H5Dopen2(r->file, path, H5P_DEFAULT);
  if (ds < 0) return h5_fail(err, r->path, "H5Dopen2", path);
  hid_t space = H5Dget_space(ds);
  int n = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
  hsize_t dims[H5S_MAX_RANK];
  if (n < 0 || H5Sget_simple_extent_dims(space, dims, NULL) < 0)
    st = h5_fail(err, r->path, "H5Sget_simple_extent_dims", path);
  else if (n > T2S_CKPT_MAX_DIMS)
    st = t2s_error_set(err, T2S_ERR_FORMAT, "checkpoint %s: %s has %d dims (at most %d)",
                       r->path, path, n, T2S_CKPT_MAX_DIMS);
  else {
    *ndim = n;
    for (int i = 0; i < n; i++) shape[i] = (int64_t)dims[i];
  }
  if (space >= 0) H5Sclose(space);
  H5Dclose(ds);
  return st;
}

t2s_status t2s_ckpt_read_scalar_i64(t2s_ckpt_reader *r, const char *path, int64_t *value,
                                    t2s_error *err) {
  return t2s_ckpt_read_array(r, path, T2S_CKPT_I64, 0, NULL, value, err);
}

t2s_status t2s_ckpt_read_scalar_f64(t2s_ckpt_reader *r, const char *path, double *value,
                                    t2s_error *err) {
  return t2s_ckpt_read_array(r, path, T2S_CKPT_F64, 0, NULL, value, err);
}
