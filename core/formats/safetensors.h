/* Named host tensors as other frameworks store them, and the safetensors format.
 *
 * t2s_tensor_set is what every weights reader produces (safetensors here, the
 * PyTorch .pth reader in core/formats/torch_pickle.h, our HDF5 checkpoints in
 * core/formats/pretrained.h) and what the writers take: a list of named tensors in their
 * file's dtype (not necessarily float32), contiguous row-major, on the host, plus
 * string metadata. Conversion to float32 happens once, when a tensor is copied
 * into a network (t2s_tset_to_f32).
 *
 * safetensors (https://github.com/huggingface/safetensors, "Format"):
 *   8 bytes   N, unsigned little-endian: size of the header
 *   N bytes   UTF-8 JSON object: {"name": {"dtype": "F32", "shape": [2, 3],
 *             "data_offsets": [begin, end]}, ..., "__metadata__": {"k": "v"}}
 *             (may be padded with trailing spaces)
 *   rest      the byte buffer; offsets are relative to its start, tensors are
 *             contiguous little-endian, and together they cover the buffer
 *             exactly: no overlaps, no holes.
 * The reader validates all of that before it trusts one offset (header size
 * limit, JSON syntax, known dtype, shape x dtype size == end - begin, bounds,
 * overlaps, holes, duplicate names) and names the file and the tensor in every
 * error. It never crashes on a malformed file. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define T2S_TSET_MAX_DIMS 8
/* Header sizes above this are refused (the reference implementation's limit). */
#define T2S_SAFETENSORS_MAX_HEADER (100u << 20)

typedef enum t2s_fdtype {
  T2S_FD_F32 = 0,
  T2S_FD_F16,
  T2S_FD_BF16,
  T2S_FD_F64,
  T2S_FD_I64,
  T2S_FD_I32,
  T2S_FD_I16,
  T2S_FD_I8,
  T2S_FD_U8,
  T2S_FD_BOOL,
  T2S_FD_COUNT
} t2s_fdtype;

typedef struct t2s_named_tensor {
  char *name;
  t2s_fdtype dtype;
  int ndim;                          /* 0 = a scalar of one element */
  int64_t shape[T2S_TSET_MAX_DIMS];
  void *data;                        /* malloc'd, numel * t2s_fdtype_size bytes */
  size_t nbytes;
} t2s_named_tensor;

typedef struct t2s_tensor_set {
  t2s_named_tensor *items;
  int count, cap;
  char **meta_keys, **meta_values;  /* string metadata (safetensors "__metadata__") */
  int n_meta, meta_cap;
} t2s_tensor_set;

/* "F32", "F16", "BF16", "F64", "I64", ... as safetensors spells them. */
const char *t2s_fdtype_name(t2s_fdtype dt);
size_t t2s_fdtype_size(t2s_fdtype dt);
/* -1 when the spelling is unknown. */
int t2s_fdtype_parse(const char *name);
int64_t t2s_named_numel(const t2s_named_tensor *t);
/* Writes "[2, 3, 4]" into buf; returns buf. */
const char *t2s_named_shape_str(const t2s_named_tensor *t, char *buf, size_t size);

void t2s_tset_init(t2s_tensor_set *s);
void t2s_tset_free(t2s_tensor_set *s);
/* Appends a tensor; copies name and (when data is not NULL) nbytes of data, else
 * allocates zeroed storage. Returns the new entry, NULL when out of memory. */
t2s_named_tensor *t2s_tset_add(t2s_tensor_set *s, const char *name, t2s_fdtype dtype, int ndim,
                               const int64_t *shape, const void *data, t2s_error *err);
t2s_named_tensor *t2s_tset_find(const t2s_tensor_set *s, const char *name);
t2s_status t2s_tset_set_meta(t2s_tensor_set *s, const char *key, const char *value, t2s_error *err);
const char *t2s_tset_get_meta(const t2s_tensor_set *s, const char *key);
/* Converts a floating tensor (F32, F16, BF16, F64) to float32 in out (numel
 * values). F64 rounds to nearest; F16/BF16 widen exactly. Integer tensors are
 * refused (they are counters, not weights). */
t2s_status t2s_tset_to_f32(const t2s_named_tensor *t, float *out, t2s_error *err);

/* Parses a complete safetensors file image (buf, len) into s (appended). `what`
 * names the source in messages. */
t2s_status t2s_safetensors_parse(const uint8_t *buf, size_t len, const char *what,
                                 t2s_tensor_set *s, t2s_error *err);
t2s_status t2s_safetensors_read(const char *path, t2s_tensor_set *s, t2s_error *err);
/* Writes s in its order, with its metadata, little-endian; the header is padded
 * with spaces to a multiple of 8 bytes so every tensor starts 8-byte aligned. */
t2s_status t2s_safetensors_write(const char *path, const t2s_tensor_set *s, t2s_error *err);

/* Reads a whole file into memory (malloc'd). Shared by the weight readers. */
t2s_status t2s_read_file(const char *path, uint8_t **buf, size_t *len, t2s_error *err);
