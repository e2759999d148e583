/* Distributed sampler: which dataset image each rank reads at each iteration.
 *
 * Global batch G = world_size x samples_per_gpu. Rank r takes the global batch
 * positions j = r*B .. r*B + B - 1 of iteration t. The image at (t, j) is a pure
 * function of (seed, stream, t, j, G) — never of the rank count, the loader
 * threads or the history — so 2 ranks x B images read exactly what 1 rank x 2B
 * images reads (docs/distributed.md "Rank equivalence").
 *
 * Uniform mode (the default): position p = t*G + j of an infinite stream of
 * epochs; epoch e = p / N is a permutation of 0..N-1 keyed by (seed, stream, e),
 * and p reads perm_e(p mod N). Within an epoch the ranks read disjoint images
 * (a global batch that straddles an epoch boundary may repeat an image across
 * the two epochs, as every infinite sampler does).
 * The permutation is a Philox-keyed Feistel network with cycle walking: O(1)
 * per index, no table, thread-safe.
 *
 * Rare class sampling (DAFormer; docs/method.md "Data pipeline"): P(c) = softmax((1 - f_c) / T) over
 * the classes present in the source set, f_c = class pixel fraction from
 * /class_pixels; then an image uniformly among those with > min_pixels pixels
 * of c. Both draws are keyed by (seed, stream, t, j). Classes with no such image
 * are dropped and the rest renormalised.
 *
 * State: nothing but the iteration t (and the seed, the stream, G and N, which
 * are configuration). A checkpoint stores t2s_sampler_state; resuming at t reads
 * the same images as the uninterrupted run. */
#pragma once
#include <stdint.h>

#include "core/status.h"

typedef struct t2s_sampler_cfg {
  uint64_t seed;
  uint32_t stream;         /* distinguishes streams of one run (source 0, target 1, ...) */
  int world_size, rank;
  int samples_per_gpu;     /* B */
  int rare_class;          /* 0 = uniform epochs, 1 = rare class sampling */
  double rcs_temperature;  /* T (0.01) */
  int64_t rcs_min_pixels;  /* an image qualifies for class c with > this many pixels (3000) */
} t2s_sampler_cfg;

typedef struct t2s_sampler {
  t2s_sampler_cfg cfg;
  int64_t n;               /* dataset size N */
  int feistel_half_bits;   /* permutation domain 2^(2*half_bits) >= N */
  /* rare class sampling */
  int n_classes;           /* classes kept (present and with a qualifying image) */
  int *rcs_class;          /* class id of each kept class */
  double *rcs_prob;        /* P(c), kept classes */
  double *rcs_cdf;         /* cumulative P */
  int64_t **rcs_images;    /* images with > min_pixels pixels of each kept class */
  int64_t *rcs_count;
} t2s_sampler;

/* What a checkpoint stores under /state/sampler/<stream> to resume exactly. */
typedef struct t2s_sampler_state {
  uint64_t seed;
  int64_t iteration;       /* the next iteration to read */
  int64_t global_batch;
  int64_t dataset_size;
  int32_t rare_class;
} t2s_sampler_state;

/* cfg defaults for the unset fields: rcs_temperature 0.01, rcs_min_pixels 3000. */
void t2s_sampler_cfg_defaults(t2s_sampler_cfg *cfg);

/* class_pixels: N x C (the dataset's /class_pixels), needed only with rare_class. */
t2s_status t2s_sampler_init(t2s_sampler *s, const t2s_sampler_cfg *cfg, int64_t n,
                            const int64_t *class_pixels, int num_classes, t2s_error *err);
void t2s_sampler_free(t2s_sampler *s);

/* Dataset index of sample k (0..B-1) of `rank` at iteration `iter`. */
int64_t t2s_sampler_index(const t2s_sampler *s, int64_t iter, int rank, int k);
/* The same at global batch position j (0..G-1); *rcs_class (may be NULL) receives the
 * class drawn by rare class sampling, or -1. */
int64_t t2s_sampler_index_global(const t2s_sampler *s, int64_t iter, int64_t j, int *rcs_class);

/* The permutation of epoch `epoch` at offset o (0..n-1): exposed for tests. */
int64_t t2s_sampler_permute(const t2s_sampler *s, int64_t epoch, int64_t o);

t2s_sampler_state t2s_sampler_state_at(const t2s_sampler *s, int64_t next_iteration);
/* Checks that a saved state fits this sampler (same seed, global batch, dataset size,
 * mode): a resumed run with another data set or batch would silently read other data. */
t2s_status t2s_sampler_check_resume(const t2s_sampler *s, const t2s_sampler_state *saved,
                                    const char *what, t2s_error *err);
