/* The fast paths of data/shard.h, split so that HDF5 stays in one thread at a time
 * while the expensive part (zlib) runs on many threads.
 *
 * Debian's libhdf5 must not be entered by two threads at once, so every HDF5 call
 * in data/shard.c is made under one process-wide lock. The functions here either
 * take that lock for a short read/write of stored bytes, or make no HDF5 call:
 *
 *   loader thread k:  t2s_shard_read_raw_chunk(s, ...)     (locked: one H5Dread_chunk)
 *                     t2s_shard_decode_chunk(&chunk, ...)  (zlib inflate, no HDF5, parallel)
 *   importer worker:  t2s_shard_encode_item(...)           (zlib deflate, no HDF5, parallel)
 *   writer thread:    t2s_shard_writer_add_item(...)       (H5Dwrite_chunk of those bytes)
 *
 * The stored bytes of a deflate-only chunk are exactly one zlib stream (what
 * HDF5's deflate filter writes), so both directions are byte-compatible with
 * H5Dread / H5Dwrite and with h5py. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "data/shard.h"

typedef enum t2s_chunk_codec {
  T2S_CHUNK_RAW = 0,     /* bytes are the pixels (no filter, or the filter was skipped) */
  T2S_CHUNK_ZLIB = 1,    /* bytes are one zlib stream of the pixels */
} t2s_chunk_codec;

/* Stored bytes of one image's chunk. The buffer is reused by later reads into the
 * same struct (it grows as needed); free it with t2s_shard_chunk_free. */
typedef struct t2s_shard_chunk {
  uint8_t *bytes;
  size_t size, cap;
  size_t decoded_size; /* H*W*3 for /image, H*W for /label */
  t2s_chunk_codec codec;
  int has_crc;         /* the shard stores /image_crc32 (/label_crc32): decoding verifies */
  uint32_t crc;        /* CRC32 (zlib) of the decoded pixels */
  const char *path;    /* for messages: the shard, the dataset and the image index */
  const char *dataset;
  int64_t index;
} t2s_shard_chunk;

/* Reads image i of `dataset` ("image" or "label") under the HDF5 lock. Shards whose
 * chunks are not one image each or use filters other than deflate (e.g. written by
 * h5py with shuffle) are read with H5Dread instead: the chunk then holds the decoded
 * pixels with codec RAW, so callers need not care. */
t2s_status t2s_shard_read_raw_chunk(t2s_shard *s, const char *dataset, int64_t i,
                                    t2s_shard_chunk *chunk, t2s_error *err);
/* Decodes the chunk into out (out_size must equal chunk->decoded_size) and, when
 * the shard stores checksums, verifies the pixels' CRC32; an error names the file,
 * the dataset and the image. No HDF5 call: safe on any thread. */
t2s_status t2s_shard_decode_chunk(const t2s_shard_chunk *chunk, uint8_t *out, size_t out_size,
                                  t2s_error *err);
void t2s_shard_chunk_free(t2s_shard_chunk *chunk);

/* One image ready to be appended: compressed image (and label) chunks plus the
 * label's class pixel counts. */
typedef struct t2s_shard_item {
  uint8_t *image_z, *label_z;
  size_t image_z_size, label_z_size;
  uint32_t image_crc, label_crc; /* CRC32 of the uncompressed pixels */
  int32_t orig_height, orig_width; /* the source image's size before any resize (/orig_size);
                                      encoding sets the shard's size, importers overwrite it */
  int64_t class_pixels[T2S_MAX_CLASSES];
} t2s_shard_item;

/* Compresses rgb (H x W x 3) and label (H x W, NULL for unlabelled metas) at the
 * given deflate level (0 = default 3) and counts class pixels (ids < num_classes;
 * 255 and other ids are not counted). No HDF5 call. */
t2s_status t2s_shard_encode_item(const t2s_shard_meta *meta, int deflate_level,
                                 const uint8_t *rgb, const uint8_t *label, t2s_shard_item *item,
                                 t2s_error *err);
/* Appends an encoded item (takes the HDF5 lock); the item stays owned by the caller.
 * The writer's deflate level is not re-applied: the bytes go to disk as they are. */
t2s_status t2s_shard_writer_add_item(t2s_shard_writer *w, const char *name,
                                     const t2s_shard_item *item, t2s_error *err);
void t2s_shard_item_free(t2s_shard_item *item);
