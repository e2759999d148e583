/* Dataset shards (HDF5), the contract of docs/formats.md "Dataset shards":
 *   /image        uint8  N x H x W x 3   RGB, one chunk per image, deflate 1-4
 *   /label        uint8  N x H x W       train ids, 255 = ignore (absent: unlabelled)
 *   /name         variable-length UTF-8 string, N
 *   /class_pixels int64  N x C           per-image pixel count of each class (with /label)
 *   /image_crc32  uint32 N               CRC32 (zlib.crc32) of each image's H*W*3 pixel bytes
 *   /label_crc32  uint32 N               the same for each label map (with /label)
 *   /orig_size    int32  N x 2           [H, W] of each source image before the importer
 *                                        resized it (optional: older shards lack it, and
 *                                        readers then take the shard's H x W)
 *                 Both are checked on every read. Shards written before they existed
 *                 (or by other tools) lack them and are read unverified.
 *   root attributes: format = "t2sda-shard", version = 1, num_classes, ignore_index = 255,
 *                    class_names (C strings), domain, split
 * All images of one shard have one size. A dataset is a list of shard files (or
 * globs) read as one sequence of images. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define T2S_SHARD_FORMAT "t2sda-shard"
#define T2S_SHARD_VERSION 1
#define T2S_MAX_CLASSES 255
#define T2S_CLASS_NAME_MAX 32

typedef struct t2s_shard_meta {
  int num_classes;
  int ignore_index;
  char class_names[T2S_MAX_CLASSES][T2S_CLASS_NAME_MAX];
  char domain[32];
  char split[16];
  int has_label;
  int64_t count;       /* images in the shard (reader) */
  int height, width;   /* every image of the shard */
  int has_orig_size;   /* reader: the shard records /orig_size */
} t2s_shard_meta;

/* ---- writing ---- */
typedef struct t2s_shard_writer t2s_shard_writer;
/* Writes to a temporary name beside final_path; nothing appears under the final
 * name before commit. meta->height/width fix the image size; count is ignored. */
t2s_shard_writer *t2s_shard_writer_open(const char *final_path, const t2s_shard_meta *meta,
                                        int deflate_level, t2s_error *err);
/* Appends one image (H x W x 3 RGB) and, for labelled shards, its label map
 * (H x W train ids); class pixel counts are computed here. Its /orig_size is the
 * shard's H x W (an image that was not resized; importers that resize use
 * t2s_shard_writer_add_item with the item's orig_height/orig_width). */
t2s_status t2s_shard_writer_add(t2s_shard_writer *w, const char *name, const uint8_t *rgb,
                                const uint8_t *label, t2s_error *err);
t2s_status t2s_shard_writer_commit(t2s_shard_writer *w, t2s_error *err);
void t2s_shard_writer_abort(t2s_shard_writer *w);

/* ---- reading ---- */
typedef struct t2s_shard t2s_shard;
/* Validates every attribute and shape the reader relies on; an error names the
 * file and the field. /class_pixels is loaded at open. */
t2s_shard *t2s_shard_open(const char *path, t2s_error *err);
void t2s_shard_close(t2s_shard *s);
const t2s_shard_meta *t2s_shard_info(const t2s_shard *s);
const char *t2s_shard_path(const t2s_shard *s);
/* rgb: H x W x 3; label: H x W or NULL (must be NULL for unlabelled shards). */
t2s_status t2s_shard_read(t2s_shard *s, int64_t i, uint8_t *rgb, uint8_t *label, t2s_error *err);
t2s_status t2s_shard_read_name(t2s_shard *s, int64_t i, char *buf, size_t size, t2s_error *err);
/* The [H, W] of image i before the importer resized it (/orig_size). Shards without
 * /orig_size give the shard's own H x W and return 0; 1 when recorded. */
int t2s_shard_orig_size(const t2s_shard *s, int64_t i, int *height, int *width);
/* N x C row-major, or NULL for unlabelled shards. */
const int64_t *t2s_shard_class_pixels(const t2s_shard *s);

/* ---- a dataset: many shards as one sequence ---- */
typedef struct t2s_dataset {
  t2s_shard **shards;
  int n_shards;
  int64_t *first;      /* global index of each shard's first image */
  int64_t count;
  t2s_shard_meta meta; /* of the first shard; all shards must agree on classes and labels;
                          has_orig_size: every shard records /orig_size */
} t2s_dataset;

/* Expands each pattern (a file or a glob, sorted), opens every shard and checks that
 * they agree (num_classes, class names, labelled or not). `what` names the config
 * key for messages (e.g. "data.source.shards"). */
t2s_status t2s_dataset_open(t2s_dataset *ds, const char (*patterns)[512], int n_patterns,
                            const char *what, t2s_error *err);
void t2s_dataset_close(t2s_dataset *ds);
/* Locates global image i: its shard and the index inside it. */
t2s_shard *t2s_dataset_locate(const t2s_dataset *ds, int64_t i, int64_t *local);
