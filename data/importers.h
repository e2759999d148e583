/* Importers: standard PNG dataset trees -> HDF5 shards (the engine of t2sda_shards).
 *
 * Layouts (docs/method.md "Datasets"):
 *   cityscapes  ROOT/leftImg8bit/SPLIT/<city>/<stem>_leftImg8bit.png
 *               ROOT/gtFine/SPLIT/<city>/<stem>_gtFine_labelIds.png     (ids 0..33)
 *   gta5        ROOT/images/NNNNN.png, ROOT/labels/NNNNN.png             (ids 0..33, palette)
 *   synthia     ROOT/RGB/NNNNNNN.png, ROOT/GT/LABELS/NNNNNNN.png         (16-bit, id in channel 0,
 *                                                                         ids 0..22)
 *   generic     IMAGES/<stem>.png, LABELS/<stem>.png (any bit depth; channel 0) and a mapping
 *               table file (see t2s_label_mapping_load)
 *   bdd100k     ROOT/images/10k/SPLIT/<stem>.jpg
 *               ROOT/labels/sem_seg/masks/SPLIT/<stem>.png              (train ids 0..18, 255)
 *   mapillary   ROOT/{training,validation}/images/<stem>.jpg             (Vistas v1.2)
 *               ROOT/{training,validation}/labels/<stem>.png             (ids 0..65, palette;
 *               or .../v1.2/labels/ as in the v2.0 archive)
 *   acdc        ROOT/rgb_anon/COND/SPLIT/<seq>/<stem>_rgb_anon.png
 *               ROOT/gt/COND/SPLIT/<seq>/<stem>_gt_labelIds.png          (ids 0..33)
 *   darkzurich  ROOT/rgb_anon/SPLIT/COND/<seq>/<stem>_rgb_anon.png
 *               ROOT/gt/SPLIT/COND/<seq>/<stem>_gt_labelIds.png          (ids 0..33)
 * (docs/datasets.md: the sources, the Vistas -> Cityscapes table, the conditions).
 * Images may be PNG or JPEG in every layout (data/image_io.h).
 * Every image is resized to one size (DAFormer's recipe by default: GTA5 1280x720,
 * SYNTHIA 1280x760, Cityscapes 1024x512; images bilinear, labels nearest), its size
 * before the resize is recorded in the shard's /orig_size, label
 * ids are mapped to train ids, and the images are spread over K shards in order.
 *
 * Decoding, resizing, mapping and compression run on worker threads; every HDF5
 * call is made by the calling thread (Debian's libhdf5 is not thread-safe). Shards
 * are written under temporary names and renamed only when every image succeeded
 * (or was skipped with skip_bad), so a failed run leaves no shard under a final name.
 * Every bad input of a run is reported (the first few in the error, all of them in
 * OUT/bad_inputs.txt), not only the first. Temporary files that an interrupted run
 * left (*.h5.part, *.h5.part.tmp.<dead pid>) are removed by the next run of the same
 * set. OUT may hold one set of shards per domain and split: a set with another
 * shard count is refused (a glob would read both) unless overwrite is set, which
 * removes it once the new set is complete. */
#pragma once
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/status.h"
#include "data/shard.h"

typedef enum t2s_import_layout {
  T2S_IMPORT_CITYSCAPES,
  T2S_IMPORT_GTA5,
  T2S_IMPORT_SYNTHIA,
  T2S_IMPORT_GENERIC,
  T2S_IMPORT_BDD100K,
  T2S_IMPORT_MAPILLARY,
  T2S_IMPORT_ACDC,
  T2S_IMPORT_DARK_ZURICH,
  T2S_IMPORT_NUM_LAYOUTS
} t2s_import_layout;

#define T2S_CITYSCAPES_CLASSES 19
/* The 19 Cityscapes train-id class names, in train-id order (mmseg's spelling). */
extern const char *const t2s_cityscapes_class_names[T2S_CITYSCAPES_CLASSES];
/* The Cityscapes label id of each train id (the importer's table read backwards: what
 * the official evaluation scripts and the benchmark server expect in a result PNG). */
extern const uint8_t t2s_cityscapes_label_ids[T2S_CITYSCAPES_CLASSES];

/* "cityscapes" | "gta5" | "synthia" | "generic" | "bdd100k" | "mapillary" | "acdc" |
 * "darkzurich"; returns 0 for anything else. */
int t2s_import_layout_parse(const char *name, t2s_import_layout *out);
const char *t2s_import_layout_name(t2s_import_layout layout);

/* ---- label id -> train id ---- */

#define T2S_LABEL_UNMAPPED 0xFFFFu

typedef struct t2s_label_mapping {
  int num_classes;
  char class_names[T2S_MAX_CLASSES][T2S_CLASS_NAME_MAX];
  uint16_t *lut;     /* 65536 entries: train id (< num_classes, or 255) or T2S_LABEL_UNMAPPED */
  char known[96];    /* the ids the table knows, for messages ("0..33") */
} t2s_label_mapping;

/* The table of a built-in layout (cityscapes, gta5, acdc and darkzurich share one:
 * Cityscapes label ids; bdd100k: train ids as stored; mapillary: docs/datasets.md). */
t2s_status t2s_label_mapping_builtin(t2s_label_mapping *m, t2s_import_layout layout,
                                     t2s_error *err);
/* A mapping table file, one rule per line, later lines winning:
 *     # a comment
 *     classes road sidewalk building ...   optional; default: the 19 Cityscapes classes
 *     7 0                                  label id 7 -> train id 0
 *     0-6 255                              a range of ids -> 255 (ignore)
 * Ids are 0..65535, train ids 0..num_classes-1 or 255; ids that no line names are
 * "outside the mapping": written as 255 and counted (strict_labels: refused). */
t2s_status t2s_label_mapping_load(t2s_label_mapping *m, const char *path, t2s_error *err);
void t2s_label_mapping_free(t2s_label_mapping *m);

/* ---- resizing (no allocation; dst is dw x dh) ---- */

/* Bilinear with half-pixel centres, as OpenCV's INTER_LINEAR (mmcv's default
 * backend): src = (dst + 0.5) * in / out - 0.5, clamped to the border, no
 * antialiasing; results round to nearest. 3 channels, interleaved. */
void t2s_resize_bilinear_rgb(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh);
/* Nearest: src = floor(dst * in / out), as OpenCV's INTER_NEAREST. */
void t2s_resize_nearest_u16(const uint16_t *src, int sw, int sh, uint16_t *dst, int dw, int dh);

/* ---- the import ---- */

typedef void (*t2s_import_progress_fn)(void *user, int64_t done, int64_t total, int64_t skipped);

typedef struct t2s_import_opts {
  t2s_import_layout layout;
  const char *root;         /* the dataset tree */
  const char *out_dir;      /* created when missing */
  const char *split;        /* "train" | "val" | "test": directory for cityscapes, name for all */
  const char *domain;       /* shard attribute and file-name prefix; NULL: the layout's name */
  const char *image_dir;    /* generic: relative to root unless absolute (default "images") */
  const char *label_dir;    /* generic: (default "labels") */
  const char *mapping_path; /* generic: required */
  const char *condition;    /* acdc: fog | night | rain | snow (required); darkzurich:
                               night (default) | twilight | day. Names the default domain:
                               "acdc_fog", "darkzurich_night" */
  int shards;               /* K >= 1 */
  int width, height;        /* 0: the layout's default (generic: the first image's size) */
  int skip_bad;             /* skip bad inputs, listing them in OUT/skipped.txt */
  int threads;              /* decode/resize workers (default 2) */
  int deflate_level;        /* 0: default 3 */
  int strict_labels;        /* refuse a label with ids outside the mapping (a bad input);
                               default: they become 255 (ignore), counted in
                               OUT/unmapped_labels.txt and the summary's warning (as mmseg) */
  int unlabelled;           /* images only (e.g. a target domain): no labels are read and
                               the shards have no /label; generic needs no mapping then */
  int overwrite;            /* remove another set of this domain/split from OUT */
  volatile sig_atomic_t *cancel; /* optional: set (by a signal handler) to stop the run */
  t2s_import_progress_fn progress;
  void *progress_user;
} t2s_import_opts;

/* Fills the defaults of a layout (split "train", 1 shard, 2 threads, DAFormer size;
 * bdd100k 1280x720 (as stored), mapillary 1024x512, acdc and darkzurich 960x540). */
void t2s_import_opts_default(t2s_import_opts *o, t2s_import_layout layout);

typedef struct t2s_import_summary {
  int64_t images;           /* written */
  int64_t skipped;
  int64_t resized;          /* written images whose source had another size (/orig_size has it) */
  int64_t bytes;            /* of all shard files */
  int shards;
  int width, height;
  int num_classes;
  char class_names[T2S_MAX_CLASSES][T2S_CLASS_NAME_MAX];
  int64_t class_pixels[T2S_MAX_CLASSES];
  int64_t ignored_pixels;   /* label 255 */
  char first_shard[4096];   /* the path of shard 0 */
  char skipped_report[4096];/* OUT/skipped.txt when skip_bad, else "" */
  int64_t cleaned;          /* leftover temporary files of an interrupted run, removed */
  int64_t replaced;         /* shards of another set removed (overwrite) */
  char domain[32];          /* the shards' domain attribute */
  int unmapped_ids;         /* distinct label ids outside the mapping, written as 255 */
  int64_t unmapped_images;  /* images that had any */
  char unmapped_report[4096];  /* OUT/unmapped_labels.txt (id pixels images), or "" */
  char unmapped_warning[1024]; /* one line with the first ids, or "" (print it once) */
} t2s_import_summary;

/* The domain a run without o->domain gives its shards: the layout's name, with the
 * condition for acdc and darkzurich ("acdc_fog"). Returns buf. */
const char *t2s_import_default_domain(const t2s_import_opts *o, char *buf, size_t size);

t2s_status t2s_import_run(const t2s_import_opts *o, t2s_import_summary *sum, t2s_error *err);
