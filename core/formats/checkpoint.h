/* Checkpoints: one HDF5 file with everything needed to resume exactly
 * (docs/formats.md, "Checkpoints").
 *
 *   /meta              attributes format = "t2sda-ckpt", version = 1 (int32),
 *                      iteration (int64), world_size (int32), config (the resolved
 *                      YAML, variable-length UTF-8), build (T2S_VERSION_STRING)
 *   /params/<name>     student trainable tensors
 *   /buffers/<name>    student buffers (BN running statistics)
 *   /ema/<name>        teacher trainables and buffers
 *   /optim/<slot>/<name>  optimizer state with the parameter layout ("exp_avg", ...)
 *   /optim/..., /state/...  named arrays and 0-d scalar datasets (step counts, RNG
 *                      counters, sampler positions, class statistics)
 *
 * Every dataset carries an attribute crc32 (uint32): zlib's CRC32 of its elements
 * bytes in the file's order (C order, little-endian), i.e. in h5py
 * zlib.crc32(f[name][()].tobytes()). Readers verify it and name the dataset
 * on a mismatch; datasets without it (checkpoints written before it existed)
 * are read unverified and counted (t2s_ckpt_unverified).
 *
 * Every tensor is a float32 dataset with its PyTorch shape, named as in
 * PyTorch/mmseg (names contain dots), so h5py reads f["params/x.weight"]
 * directly. A 4-D tensor whose t2s_tensor.layout is NHWC (the CUDA backend) is
 * stored on the device as (Cout, kh, kw, Cin); it is permuted to (Cout, Cin, kh,
 * kw) on write and back on read.
 *
 * Writes go to "<final>.tmp.<pid>" in the same directory; commit flushes, fsyncs
 * the file, renames it over the final name and fsyncs the directory, so a crash
 * at any point leaves either the previous checkpoint or the new one under the
 * final name, never a half-written file.
 *
 * Every function fills err with a sentence that names the file, the HDF5 call
 * and the object that failed. HDF5's own error printing is switched off
 * (H5Eset_auto2) by t2s_ckpt_begin and t2s_ckpt_open. */
#pragma once
#include <stdint.h>

#include "core/params.h"
#include "core/status.h"

#define T2S_CKPT_FORMAT "t2sda-ckpt"
#define T2S_CKPT_VERSION 1
#define T2S_CKPT_MAX_DIMS 8

/* Which tensors of a t2s_params a group holds. */
enum { T2S_CKPT_TRAINABLE = 1, T2S_CKPT_BUFFERS = 2 };

/* Element types of /state and /optim arrays (f64 is not a tensor dtype). */
typedef enum t2s_ckpt_type {
  T2S_CKPT_F32 = 0,
  T2S_CKPT_F64,
  T2S_CKPT_I32,
  T2S_CKPT_I64,
  T2S_CKPT_U8,
} t2s_ckpt_type;

typedef struct t2s_ckpt_writer t2s_ckpt_writer;
typedef struct t2s_ckpt_reader t2s_ckpt_reader;

/* ---- writing ---------------------------------------------------------- */

/* Creates "<final_path>.tmp.<pid>". NULL (and err set) on failure. */
t2s_ckpt_writer *t2s_ckpt_begin(const char *final_path, t2s_error *err);
/* Writes /meta. Required once before commit. config_yaml may be NULL (stored as ""). */
t2s_status t2s_ckpt_write_meta(t2s_ckpt_writer *w, int64_t iteration, int world_size,
                               const char *config_yaml, t2s_error *err);
/* Writes the tensors of p selected by `what` (T2S_CKPT_TRAINABLE | T2S_CKPT_BUFFERS)
 * as /<group>/<name>; group is e.g. "params", "buffers", "ema". */
t2s_status t2s_ckpt_write_params(t2s_ckpt_writer *w, const char *group, const t2s_params *p,
                                 int what, t2s_error *err);
/* Writes optimizer state `flat_state` (on p->device, p->numel floats, p's
 * trainable layout) as /optim/<slot>/<name>. */
t2s_status t2s_ckpt_write_slot(t2s_ckpt_writer *w, const char *slot, const t2s_params *p,
                               const float *flat_state, t2s_error *err);
/* Writes a host array at an absolute path under /state/ or /optim/; intermediate
 * groups are created. ndim 0 writes a scalar. */
t2s_status t2s_ckpt_write_array(t2s_ckpt_writer *w, const char *path, t2s_ckpt_type type,
                                int ndim, const int64_t *shape, const void *host_data,
                                t2s_error *err);
t2s_status t2s_ckpt_write_scalar_i64(t2s_ckpt_writer *w, const char *path, int64_t value,
                                     t2s_error *err);
t2s_status t2s_ckpt_write_scalar_f64(t2s_ckpt_writer *w, const char *path, double value,
                                     t2s_error *err);
/* Makes the checkpoint durable under its final name. Refuses (and removes the
 * temporary file) when /meta was never written or an earlier write failed.
 * Frees w in every case. */
t2s_status t2s_ckpt_commit(t2s_ckpt_writer *w, t2s_error *err);
/* Closes and unlinks the temporary file; frees w. NULL is a no-op. */
void t2s_ckpt_abort(t2s_ckpt_writer *w);

/* ---- reading ---------------------------------------------------------- */

/* Opens a checkpoint read-only and checks /meta's format and version. */
t2s_ckpt_reader *t2s_ckpt_open(const char *path, t2s_error *err);
/* Any output may be NULL. *config_yaml is malloc'd (caller frees). */
t2s_status t2s_ckpt_read_meta(t2s_ckpt_reader *r, int64_t *iteration, int *world_size,
                              char **config_yaml, t2s_error *err);
/* Reads /<group>/<name> into every tensor of p selected by `what`. Every
 * expected tensor must exist with exactly its shape, and the group must hold no
 * other tensor; all of that is checked before p is modified, so on error p is
 * unchanged. */
t2s_status t2s_ckpt_read_params(t2s_ckpt_reader *r, const char *group, t2s_params *p, int what,
                                t2s_error *err);
/* Reads /optim/<slot>/<name> into flat_state (p->device, p's trainable layout),
 * with the same checks as t2s_ckpt_read_params. */
t2s_status t2s_ckpt_read_slot(t2s_ckpt_reader *r, const char *slot, const t2s_params *p,
                              float *flat_state, t2s_error *err);
/* Reads an array whose type and shape must be exactly (type, ndim, shape). */
t2s_status t2s_ckpt_read_array(t2s_ckpt_reader *r, const char *path, t2s_ckpt_type type,
                               int ndim, const int64_t *shape, void *host_data, t2s_error *err);
/* Shape of the array at path (for state whose size is only known from the file). */
t2s_status t2s_ckpt_array_shape(t2s_ckpt_reader *r, const char *path, int *ndim,
                                int64_t shape[T2S_CKPT_MAX_DIMS], t2s_error *err);
t2s_status t2s_ckpt_read_scalar_i64(t2s_ckpt_reader *r, const char *path, int64_t *value,
                                    t2s_error *err);
t2s_status t2s_ckpt_read_scalar_f64(t2s_ckpt_reader *r, const char *path, double *value,
                                    t2s_error *err);
/* 1 when an object (group or dataset) exists at the absolute path, else 0. */
int t2s_ckpt_has(t2s_ckpt_reader *r, const char *path);
const char *t2s_ckpt_path(const t2s_ckpt_reader *r);
/* How many datasets this reader read without a stored checksum (0 for checkpoints
 * written since checksums exist). */
int64_t t2s_ckpt_unverified(const t2s_ckpt_reader *r);
/* For readers that walk a checkpoint with HDF5 themselves: checks `bytes` of data
 * just read from the open dataset (an hid_t) against its crc32 attribute; the data
 * must be in the file's element type. *verified = 0 when there is no checksum. */
t2s_status t2s_ckpt_verify_dataset(int64_t dataset, const char *file, const char *shown,
                                   const void *data, size_t bytes, int *verified,
                                   t2s_error *err);
void t2s_ckpt_close(t2s_ckpt_reader *r);
