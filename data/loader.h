/* Prefetching data loader: one rank's batches of one stream (source or target).
 *
 * The batch of iteration t is a pure function of (dataset, cfg, t): sample k is
 * dataset image t2s_sampler_index(t, rank, k), augmented with the key (seed,
 * stream, t, rank * B + k). It does not depend on the worker count, the ring
 * depth or the timing: 1 and 8 workers give byte-identical batches.
 *
 * Threads: `workers` threads take single samples (t, k) in order from a window
 * of `prefetch` iterations ahead of the consumer; each reads the stored chunk
 * bytes under the HDF5 lock (data/shard_fast.h: the one place HDF5 is entered),
 * then inflates and augments without any lock, straight into the ring slot of
 * iteration t. workers = 0 loads in the caller's thread inside t2s_loader_next.
 *
 * A batch returned by t2s_loader_next stays valid until the next call to
 * t2s_loader_next or t2s_loader_close. Asking for an iteration other than the
 * one after the last (a resume, a jump back) drops the prefetched work and
 * restarts the window there. A failure while loading sample k of iteration t
 * (unreadable chunk, corrupt data) is returned by the call that asks for t, with
 * the rank, the iteration, the image and the shard file in the message. */
#pragma once
#include <stdint.h>

#include "core/status.h"
#include "data/augment.h"
#include "data/sampler.h"
#include "data/shard.h"

typedef struct t2s_loader_cfg {
  t2s_augment_cfg aug;       /* crop size, cat_max_ratio (1 = off for target), flip, rescale */
  int samples_per_gpu;       /* B */
  int rank, world_size;
  int workers;               /* prefetch threads; 0 = load in the caller's thread */
  int prefetch;              /* ring depth in batches (>= 2); 0 = workers + 1 */
  uint64_t seed;
  uint32_t stream;           /* 0 source, 1 target, ...: independent sample orders */
  int labels;                /* read /label (source); 0 reads images only (target) */
  int rare_class;            /* DAFormer rare class sampling (needs /class_pixels) */
  double rcs_temperature;    /* 0.01 when 0 */
  int64_t rcs_min_pixels;    /* 3000 when 0 */
  int64_t start_iteration;   /* first iteration to prefetch (a resumed run's) */
  /* A damaged image (its chunk does not inflate, or its pixels fail the shard's CRC32:
   * T2S_ERR_FORMAT) fails the batch (0), or is replaced by the next image of the data
   * set's global order, idx + 1 mod N, and so on until one decodes (1). The
   * replacement depends on the image index only, never on the rank count, so rank
   * equivalence holds; t2s_batch.replaced counts such samples. */
  int skip_corrupt;
} t2s_loader_cfg;

/* Source defaults: 512x512 crops, cat_max_ratio 0.75, flip 0.5, B = 2, 2 workers,
 * labels on, rare class sampling off. */
t2s_loader_cfg t2s_loader_cfg_default(void);

typedef struct t2s_batch {
  int64_t iteration;
  int n, h, w;               /* samples_per_gpu, crop_h, crop_w */
  float *images;             /* n x 3 x h x w, RGB in [0, 255], not normalised */
  uint8_t *labels;           /* n x h x w, or NULL without labels */
  const int64_t *indices;    /* dataset index of each sample */
  const int *rcs_class;      /* class drawn by rare class sampling, -1 otherwise */
  int replaced;              /* skip_corrupt: damaged images this batch passed over */
  const char *replaced_note; /* the first one's error (file, dataset, index), "" if none */
} t2s_batch;

typedef struct t2s_loader t2s_loader;

/* ds stays owned by the caller and must outlive the loader. */
t2s_status t2s_loader_open(t2s_loader **out, t2s_dataset *ds, const t2s_loader_cfg *cfg,
                           t2s_error *err);
/* Opens the shards too (owned by the loader); `what` names the config key. A
 * failure says which rank could not open which file. */
t2s_status t2s_loader_open_shards(t2s_loader **out, const char (*patterns)[512], int n_patterns,
                                  const char *what, const t2s_loader_cfg *cfg, t2s_error *err);
t2s_status t2s_loader_next(t2s_loader *L, int64_t iteration, t2s_batch *batch, t2s_error *err);
/* Stops and joins the workers; safe on NULL and after errors. */
void t2s_loader_close(t2s_loader *L);

const t2s_sampler *t2s_loader_sampler(const t2s_loader *L);

/* Host memory for batches: page-locked when a GPU is visible (t2s_host_pinned_alloc,
 * core/device.h), so batch uploads can overlap compute; plain aligned memory otherwise. */
void *t2s_loader_host_alloc(size_t bytes);
void t2s_loader_host_free(void *p);
