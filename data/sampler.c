/* Distributed sampler (data/sampler.h). */
#include "data/sampler.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"

/* Purposes of the sampler's random draws; data/augment.h uses other values. */
enum { PURPOSE_SHUFFLE = 1, PURPOSE_RARE_CLASS = 2 };
#define FEISTEL_ROUNDS 8

static uint64_t stream_tag(const t2s_sampler *s, uint64_t purpose) {
  return (uint64_t)s->cfg.stream | (purpose << 32);
}

void t2s_sampler_cfg_defaults(t2s_sampler_cfg *cfg) {
  if (cfg->rcs_temperature <= 0) cfg->rcs_temperature = 0.01;
  if (cfg->rcs_min_pixels <= 0) cfg->rcs_min_pixels = 3000;
}

/* A bijection of [0, 2^(2h)): a balanced Feistel network whose round function is
 * Philox keyed by (seed, stream, epoch). Any round function gives a bijection;
 * a pseudo-random one with >= 4 rounds gives a pseudo-random permutation
 * (Luby-Rackoff). */
static uint64_t feistel(t2s_rng_key key, int h, uint64_t x) {
  uint64_t mask = (1ull << h) - 1;
  uint64_t l = x >> h, r = x & mask;
  for (int round = 0; round < FEISTEL_ROUNDS; round++) {
    uint32_t w[4];
    t2s_philox4x32(key, ((uint64_t)round << 40) | r, w);
    uint64_t f = (((uint64_t)w[1] << 32) | w[0]) & mask;
    uint64_t nl = r;
    r = l ^ f;
    l = nl;
  }
  return (l << h) | r;
}

int64_t t2s_sampler_permute(const t2s_sampler *s, int64_t epoch, int64_t o) {
  t2s_rng_key key =
      t2s_rng_key_make(s->cfg.seed, stream_tag(s, PURPOSE_SHUFFLE), (uint64_t)epoch, 0);
  /* Cycle walking: the domain is < 4n, so on average < 4 steps; it restricts the
   * bijection of [0, 2^2h) to one of [0, n). */
  uint64_t x = (uint64_t)o;
  do {
    x = feistel(key, s->feistel_half_bits, x);
  } while (x >= (uint64_t)s->n);
  return (int64_t)x;
}

static t2s_status rcs_build(t2s_sampler *s, const int64_t *cp, int C, t2s_error *err) {
  double total = 0;
  double *freq = calloc((size_t)C, sizeof *freq);
  s->rcs_class = calloc((size_t)C, sizeof *s->rcs_class);
  s->rcs_prob = calloc((size_t)C, sizeof *s->rcs_prob);
  s->rcs_cdf = calloc((size_t)C, sizeof *s->rcs_cdf);
  s->rcs_images = calloc((size_t)C, sizeof *s->rcs_images);
  s->rcs_count = calloc((size_t)C, sizeof *s->rcs_count);
  if (!freq || !s->rcs_class || !s->rcs_prob || !s->rcs_cdf || !s->rcs_images || !s->rcs_count) {
    free(freq);
    return t2s_error_set(err, T2S_ERR_NOMEM, "rare class sampling: out of memory for %d classes",
                         C);
  }
  for (int64_t i = 0; i < s->n; i++)
    for (int c = 0; c < C; c++) freq[c] += (double)cp[i * C + c];
  for (int c = 0; c < C; c++) total += freq[c];
  /* P(c) = softmax((1 - f_c) / T) over the classes that occur (DAFormer's
   * get_rcs_class_probs), with the maximum subtracted for a stable exp. */
  double zmax = -INFINITY, zsum = 0;
  for (int c = 0; c < C; c++)
    if (freq[c] > 0) zmax = fmax(zmax, (1.0 - freq[c] / total) / s->cfg.rcs_temperature);
  int kept = 0;
  for (int c = 0; c < C && total > 0; c++) {
    if (freq[c] <= 0) continue;
    int64_t m = 0;
    for (int64_t i = 0; i < s->n; i++) m += cp[i * C + c] > s->cfg.rcs_min_pixels;
    if (m == 0) continue; /* no image to draw for c: condition P on the others */
    int64_t *list = malloc((size_t)m * sizeof *list);
    if (list == NULL) {
      free(freq);
      return t2s_error_set(err, T2S_ERR_NOMEM, "rare class sampling: out of memory");
    }
    m = 0;
    for (int64_t i = 0; i < s->n; i++)
      if (cp[i * C + c] > s->cfg.rcs_min_pixels) list[m++] = i;
    s->rcs_class[kept] = c;
    s->rcs_images[kept] = list;
    s->rcs_count[kept] = m;
    s->rcs_prob[kept] = exp((1.0 - freq[c] / total) / s->cfg.rcs_temperature - zmax);
    zsum += s->rcs_prob[kept];
    s->n_classes = ++kept; /* so that t2s_sampler_free releases the lists on error */
  }
  free(freq);
  if (kept == 0)
    return t2s_error_set(err, T2S_ERR_INVALID, "rare class sampling: no image has more than %"
                         PRId64 " pixels of any class; lower the minimum or turn rare class "
                         "sampling off", s->cfg.rcs_min_pixels);
  double acc = 0;
  for (int k = 0; k < kept; k++) {
    s->rcs_prob[k] /= zsum;
    acc += s->rcs_prob[k];
    s->rcs_cdf[k] = acc;
  }
  s->rcs_cdf[kept - 1] = 1.0; /* a u just below 1 must find a class despite rounding */
  return T2S_OK;
}

t2s_status t2s_sampler_init(t2s_sampler *s, const t2s_sampler_cfg *cfg, int64_t n,
                            const int64_t *class_pixels, int num_classes, t2s_error *err) {
  memset(s, 0, sizeof *s);
  s->cfg = *cfg;
  t2s_sampler_cfg_defaults(&s->cfg);
  if (n <= 0)
    return t2s_error_set(err, T2S_ERR_INVALID, "sampler: the data set is empty (0 images); check "
                         "the shard paths");
  if (cfg->world_size < 1 || cfg->rank < 0 || cfg->rank >= cfg->world_size ||
      cfg->samples_per_gpu < 1)
    return t2s_error_set(err, T2S_ERR_INVALID, "sampler: rank %d of world size %d with %d samples "
                         "per GPU is not valid", cfg->rank, cfg->world_size, cfg->samples_per_gpu);
  s->n = n;
  int h = 1;
  while (h < 31 && (1ull << (2 * h)) < (uint64_t)n) h++;
  s->feistel_half_bits = h;
  if (!cfg->rare_class) return T2S_OK;
  if (class_pixels == NULL || num_classes < 1)
    return t2s_error_set(err, T2S_ERR_INVALID, "rare class sampling needs /class_pixels: the "
                         "data set is unlabelled");
  t2s_status st = rcs_build(s, class_pixels, num_classes, err);
  if (st != T2S_OK) t2s_sampler_free(s);
  return st;
}

void t2s_sampler_free(t2s_sampler *s) {
  if (s->rcs_images != NULL)
    for (int k = 0; k < s->n_classes; k++) free(s->rcs_images[k]);
  free(s->rcs_images);
  free(s->rcs_count);
  free(s->rcs_class);
  free(s->rcs_prob);
  free(s->rcs_cdf);
  memset(s, 0, sizeof *s);
}

static int64_t rcs_draw(const t2s_sampler *s, int64_t iter, int64_t j, int *cls) {
  t2s_rng_key key = t2s_rng_key_make(s->cfg.seed, stream_tag(s, PURPOSE_RARE_CLASS),
                                     (uint64_t)iter, (uint64_t)j);
  uint32_t w[4];
  t2s_philox4x32(key, 0, w);
  /* a 53-bit uniform in [0, 1) for the class, a 64-bit word for the image */
  double u = (double)((((uint64_t)w[0] << 32) | w[1]) >> 11) * 0x1p-53;
  int lo = 0, hi = s->n_classes - 1;
  while (lo < hi) { /* first class whose cdf exceeds u */
    int mid = (lo + hi) / 2;
    if (s->rcs_cdf[mid] > u) hi = mid;
    else lo = mid + 1;
  }
  uint64_t r = ((uint64_t)w[2] << 32) | w[3];
  if (cls != NULL) *cls = s->rcs_class[lo];
  return s->rcs_images[lo][r % (uint64_t)s->rcs_count[lo]];
}

int64_t t2s_sampler_index_global(const t2s_sampler *s, int64_t iter, int64_t j, int *rcs_class) {
  if (s->cfg.rare_class) return rcs_draw(s, iter, j, rcs_class);
  if (rcs_class != NULL) *rcs_class = -1;
  int64_t G = (int64_t)s->cfg.world_size * s->cfg.samples_per_gpu;
  int64_t p = iter * G + j;
  return t2s_sampler_permute(s, p / s->n, p % s->n);
}

int64_t t2s_sampler_index(const t2s_sampler *s, int64_t iter, int rank, int k) {
  return t2s_sampler_index_global(s, iter, (int64_t)rank * s->cfg.samples_per_gpu + k, NULL);
}

t2s_sampler_state t2s_sampler_state_at(const t2s_sampler *s, int64_t next_iteration) {
  t2s_sampler_state st = {
      .seed = s->cfg.seed,
      .iteration = next_iteration,
      .global_batch = (int64_t)s->cfg.world_size * s->cfg.samples_per_gpu,
      .dataset_size = s->n,
      .rare_class = s->cfg.rare_class,
  };
  return st;
}

t2s_status t2s_sampler_check_resume(const t2s_sampler *s, const t2s_sampler_state *saved,
                                    const char *what, t2s_error *err) {
  t2s_sampler_state now = t2s_sampler_state_at(s, saved->iteration);
  if (saved->seed != now.seed || saved->global_batch != now.global_batch ||
      saved->dataset_size != now.dataset_size || saved->rare_class != now.rare_class)
    return t2s_error_set(err, T2S_ERR_INVALID,
                         "%s: the checkpoint's sampler (seed %" PRIu64 ", global batch %" PRId64
                         ", %" PRId64 " images, rare class %d) differs from this run's (seed %"
                         PRIu64 ", global batch %" PRId64 ", %" PRId64 " images, rare class %d); "
                         "a resumed run would read other data: use the checkpoint's seed, "
                         "ranks x samples_per_gpu and shards",
                         what, saved->seed, saved->global_batch, saved->dataset_size,
                         saved->rare_class, now.seed, now.global_batch, now.dataset_size,
                         now.rare_class);
  return T2S_OK;
}
