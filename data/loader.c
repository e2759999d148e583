/* Prefetching data loader (data/loader.h).
 *
 * Work unit: one sample (t, k). The window of iterations being produced is
 * [base, base + n_slots): base is the iteration the consumer holds (or waits
 * for), so the held slot is never written and the others fill ahead. Tasks are
 * handed out in (t, k) order under the loader mutex; each sample writes only its
 * own part of its slot, so the bytes do not depend on which thread did what. */
#include "data/loader.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/device.h"
#include "data/shard_fast.h"

typedef struct slot {
  int64_t iter;              /* iteration held, -1 = none */
  int done;                  /* samples finished */
  t2s_status st;             /* first failure among its samples */
  t2s_error err;
  float *images;
  uint8_t *labels;
  int64_t *indices;
  int *rcs_class;
  int *replaced;             /* per sample: damaged images passed over (skip_corrupt) */
  char (*notes)[T2S_ERROR_MAX];  /* per sample: the first damaged image's error */
} slot;

/* What one loading thread reuses from sample to sample. */
typedef struct worker {
  t2s_loader *L;
  pthread_t thread;
  t2s_shard_chunk image_chunk, label_chunk;
  uint8_t *rgb, *label;
  size_t rgb_cap, label_cap;
  t2s_aug_scratch scratch;
} worker;

struct t2s_loader {
  t2s_dataset *ds;
  t2s_dataset *owned_ds;     /* opened by t2s_loader_open_shards, closed with the loader */
  t2s_loader_cfg cfg;
  t2s_sampler sampler;
  int n_slots;
  slot *slots;
  int n_workers;
  worker *workers;           /* n_workers threads, or one context for workers = 0 */
  int threads_started;
  pthread_mutex_t mu;
  pthread_cond_t work_cv, done_cv;
  int64_t base, next_iter;   /* window start; next task (next_iter, next_k) */
  int next_k;
  int in_flight, paused, stop;
  int64_t held;              /* iteration returned by the last next(), -1 */
};

t2s_loader_cfg t2s_loader_cfg_default(void) {
  t2s_loader_cfg c = {.aug = t2s_augment_cfg_default(), .samples_per_gpu = 2, .rank = 0,
                      .world_size = 1, .workers = 2, .prefetch = 0, .seed = 0, .stream = 0,
                      .labels = 1, .rare_class = 0, .rcs_temperature = 0.01,
                      .rcs_min_pixels = 3000, .start_iteration = 0, .skip_corrupt = 0};
  return c;
}

void *t2s_loader_host_alloc(size_t bytes) { return t2s_host_pinned_alloc(bytes); }

void t2s_loader_host_free(void *p) { t2s_host_pinned_free(p); }

const t2s_sampler *t2s_loader_sampler(const t2s_loader *L) { return &L->sampler; }

/* ---- one sample ----------------------------------------------------------------- */

static int grow(uint8_t **buf, size_t *cap, size_t need) {
  if (*cap >= need) return 1;
  uint8_t *b = realloc(*buf, need);
  if (b == NULL) return 0;
  *buf = b;
  *cap = need;
  return 1;
}

/* Reads (under the HDF5 lock, inside t2s_shard_read_raw_chunk) and inflates dataset
 * image idx into the worker's buffers; *meta receives its shard's. */
static t2s_status read_image(worker *w, int64_t idx, const t2s_shard_meta **meta, t2s_error *err) {
  t2s_loader *L = w->L;
  int64_t local = 0;
  t2s_shard *sh = t2s_dataset_locate(L->ds, idx, &local);
  if (sh == NULL)
    return t2s_error_set(err, T2S_ERR_INVALID, "image %" PRId64 " is outside the data set (%"
                         PRId64 " images)", idx, L->ds->count);
  const t2s_shard_meta *m = *meta = t2s_shard_info(sh);
  int labels = L->cfg.labels;
  size_t npix = (size_t)m->width * m->height;
  if (!grow(&w->rgb, &w->rgb_cap, npix * 3) || (labels && !grow(&w->label, &w->label_cap, npix)))
    return t2s_error_set(err, T2S_ERR_NOMEM, "out of memory for a %dx%d image", m->width,
                         m->height);
  t2s_status st = t2s_shard_read_raw_chunk(sh, "image", local, &w->image_chunk, err);
  if (st == T2S_OK && labels) st = t2s_shard_read_raw_chunk(sh, "label", local, &w->label_chunk, err);
  if (st == T2S_OK) st = t2s_shard_decode_chunk(&w->image_chunk, w->rgb, npix * 3, err);
  if (st == T2S_OK && labels) st = t2s_shard_decode_chunk(&w->label_chunk, w->label, npix, err);
  return st;
}

/* Reads, inflates and augments sample k of iteration t into slot s. With
 * skip_corrupt a damaged image gives way to the next one of the global order. */
static t2s_status load_sample(worker *w, int64_t t, int k, slot *s, t2s_error *err) {
  t2s_loader *L = w->L;
  const t2s_loader_cfg *c = &L->cfg;
  int64_t j = (int64_t)c->rank * c->samples_per_gpu + k;
  int cls = -1;
  int64_t idx = t2s_sampler_index_global(&L->sampler, t, j, &cls);
  s->indices[k] = idx;
  s->rcs_class[k] = cls;
  s->replaced[k] = 0;
  s->notes[k][0] = '\0';
  const t2s_shard_meta *m = NULL;
  t2s_status st = read_image(w, idx, &m, err);
  while (st == T2S_ERR_FORMAT && c->skip_corrupt && s->replaced[k] + 1 < L->ds->count) {
    if (s->replaced[k]++ == 0) snprintf(s->notes[k], sizeof s->notes[k], "%s", err->msg);
    t2s_error_clear(err);
    idx = (idx + 1) % L->ds->count;
    s->indices[k] = idx;
    st = read_image(w, idx, &m, err);
  }
  if (st != T2S_OK) return st;
  size_t plane = (size_t)c->aug.crop_w * c->aug.crop_h;
  t2s_aug_key key = {c->seed, c->stream, t, j};
  return t2s_augment_sample(&c->aug, key, w->rgb, c->labels ? w->label : NULL, m->width,
                            m->height, cls, s->images + (size_t)k * 3 * plane,
                            c->labels ? s->labels + (size_t)k * plane : NULL, &w->scratch, NULL,
                            err);
}

/* Records a sample's failure in its slot with the context a user needs. */
static void slot_fail(t2s_loader *L, slot *s, int64_t t, int k, const t2s_error *e) {
  if (s->st != T2S_OK) return;
  int64_t idx = s->indices[k], local = -1;
  t2s_shard *sh = t2s_dataset_locate(L->ds, idx, &local);
  const char *path = sh != NULL ? t2s_shard_path(sh) : "?";
  s->st = e->status;
  /* the shard's own messages name the file already; say it anyway when they do not */
  /* a damaged image need not end the run: say how to train past it */
  const char *hint = e->status == T2S_ERR_FORMAT && !L->cfg.skip_corrupt
                         ? " (or set data.on_corrupt=skip to train on, replacing damaged images)"
                         : "";
  if (strstr(e->msg, path) != NULL)
    snprintf(s->err.msg, sizeof s->err.msg, "data loader (rank %d, stream %u, iteration %" PRId64
             ", sample %d): %s%s", L->cfg.rank, L->cfg.stream, t, k, e->msg, hint);
  else
    snprintf(s->err.msg, sizeof s->err.msg, "data loader (rank %d, stream %u, iteration %" PRId64
             ", sample %d): image %" PRId64 " of shard %s: %s%s", L->cfg.rank, L->cfg.stream, t, k,
             local, path, e->msg, hint);
  s->err.status = e->status;
}

/* ---- threads --------------------------------------------------------------------- */

static void *worker_main(void *arg) {
  worker *w = arg;
  t2s_loader *L = w->L;
  int B = L->cfg.samples_per_gpu;
  pthread_mutex_lock(&L->mu);
  while (!L->stop) {
    if (L->paused || L->next_iter >= L->base + L->n_slots) {
      pthread_cond_wait(&L->work_cv, &L->mu);
      continue;
    }
    int64_t t = L->next_iter;
    int k = L->next_k;
    slot *s = &L->slots[t % L->n_slots];
    if (k == 0) { /* the slot's previous iteration is below base: released */
      s->iter = t;
      s->done = 0;
      s->st = T2S_OK;
      t2s_error_clear(&s->err);
    }
    if (++L->next_k == B) {
      L->next_k = 0;
      L->next_iter++;
    }
    L->in_flight++;
    pthread_mutex_unlock(&L->mu);
    t2s_error e = {0};
    t2s_status st = load_sample(w, t, k, s, &e);
    pthread_mutex_lock(&L->mu);
    if (st != T2S_OK) slot_fail(L, s, t, k, &e);
    L->in_flight--;
    if (++s->done == B || L->in_flight == 0) pthread_cond_broadcast(&L->done_cv);
  }
  pthread_mutex_unlock(&L->mu);
  return NULL;
}

/* Drops prefetched work and restarts the window at `iter` (mutex held). */
static void restart_at(t2s_loader *L, int64_t iter) {
  L->paused = 1;
  while (L->in_flight > 0) pthread_cond_wait(&L->done_cv, &L->mu);
  for (int i = 0; i < L->n_slots; i++) L->slots[i].iter = -1;
  L->base = L->next_iter = iter;
  L->next_k = 0;
  L->paused = 0;
  pthread_cond_broadcast(&L->work_cv);
}

static t2s_status next_sync(t2s_loader *L, int64_t iter, slot *s, t2s_error *err) {
  s->iter = iter;
  s->st = T2S_OK;
  t2s_error_clear(&s->err);
  for (int k = 0; k < L->cfg.samples_per_gpu; k++) {
    t2s_error e = {0};
    if (load_sample(&L->workers[0], iter, k, s, &e) != T2S_OK) {
      slot_fail(L, s, iter, k, &e);
      break;
    }
  }
  s->done = L->cfg.samples_per_gpu;
  return T2S_OK;
}

t2s_status t2s_loader_next(t2s_loader *L, int64_t iteration, t2s_batch *batch, t2s_error *err) {
  if (iteration < 0)
    return t2s_error_set(err, T2S_ERR_INVALID, "data loader: iteration %" PRId64 " is negative",
                         iteration);
  slot *s;
  if (L->n_workers == 0) {
    s = &L->slots[0];
    next_sync(L, iteration, s, err);
  } else {
    pthread_mutex_lock(&L->mu);
    if (L->held >= 0) { /* the consumer is done with the last batch: the window moves */
      L->base = L->held + 1;
      L->held = -1;
      pthread_cond_broadcast(&L->work_cv);
    }
    if (iteration != L->base) restart_at(L, iteration);
    s = &L->slots[iteration % L->n_slots];
    while (!(s->iter == iteration && s->done == L->cfg.samples_per_gpu))
      pthread_cond_wait(&L->done_cv, &L->mu);
    L->held = iteration;
    pthread_mutex_unlock(&L->mu);
  }
  batch->iteration = iteration;
  batch->n = L->cfg.samples_per_gpu;
  batch->h = L->cfg.aug.crop_h;
  batch->w = L->cfg.aug.crop_w;
  batch->images = s->images;
  batch->labels = L->cfg.labels ? s->labels : NULL;
  batch->indices = s->indices;
  batch->rcs_class = s->rcs_class;
  batch->replaced = 0;
  batch->replaced_note = "";
  for (int k = 0; k < batch->n; k++) {
    if (s->replaced[k] > 0 && batch->replaced == 0) batch->replaced_note = s->notes[k];
    batch->replaced += s->replaced[k];
  }
  if (s->st != T2S_OK) return t2s_error_set(err, s->st, "%s", s->err.msg);
  return T2S_OK;
}

/* ---- open / close ------------------------------------------------------------------ */

static t2s_status check_cfg(const t2s_dataset *ds, const t2s_loader_cfg *c, t2s_error *err) {
  if (ds == NULL || ds->count <= 0)
    return t2s_error_set(err, T2S_ERR_INVALID, "data loader (rank %d): the data set is empty; "
                         "check the shard paths", c->rank);
  if (c->samples_per_gpu < 1 || c->workers < 0 || c->workers > 256 || c->prefetch < 0 ||
      c->aug.crop_w < 1 || c->aug.crop_h < 1)
    return t2s_error_set(err, T2S_ERR_INVALID, "data loader: samples_per_gpu %d, workers %d, "
                         "prefetch %d, crop %dx%d: expected B >= 1, 0..256 workers, a positive "
                         "crop", c->samples_per_gpu, c->workers, c->prefetch, c->aug.crop_w,
                         c->aug.crop_h);
  if ((c->labels || c->rare_class) && !ds->meta.has_label)
    return t2s_error_set(err, T2S_ERR_INVALID, "data loader: %s asks for labels%s but shard %s is "
                         "unlabelled; use labelled (source) shards here",
                         c->rare_class ? "rare class sampling" : "this stream",
                         c->rare_class ? "' pixel counts" : "", t2s_shard_path(ds->shards[0]));
  return T2S_OK;
}

/* Rare class sampling reads the /class_pixels of all shards as one N x C table. */
static t2s_status init_sampler(t2s_loader *L, t2s_error *err) {
  const t2s_loader_cfg *c = &L->cfg;
  t2s_sampler_cfg sc = {.seed = c->seed, .stream = c->stream, .world_size = c->world_size,
                        .rank = c->rank, .samples_per_gpu = c->samples_per_gpu,
                        .rare_class = c->rare_class, .rcs_temperature = c->rcs_temperature,
                        .rcs_min_pixels = c->rcs_min_pixels};
  int C = L->ds->meta.num_classes;
  int64_t *cp = NULL;
  if (c->rare_class) {
    cp = malloc(sizeof *cp * (size_t)L->ds->count * (size_t)C);
    if (cp == NULL)
      return t2s_error_set(err, T2S_ERR_NOMEM, "rare class sampling: out of memory for %" PRId64
                           " x %d class counts", L->ds->count, C);
    for (int i = 0; i < L->ds->n_shards; i++) {
      const t2s_shard_meta *m = t2s_shard_info(L->ds->shards[i]);
      memcpy(cp + L->ds->first[i] * C, t2s_shard_class_pixels(L->ds->shards[i]),
             sizeof *cp * (size_t)m->count * (size_t)C);
    }
  }
  t2s_status st = t2s_sampler_init(&L->sampler, &sc, L->ds->count, cp, C, err);
  free(cp);
  return st;
}

static t2s_status alloc_slots(t2s_loader *L, t2s_error *err) {
  const t2s_loader_cfg *c = &L->cfg;
  int B = c->samples_per_gpu;
  size_t plane = (size_t)c->aug.crop_w * c->aug.crop_h;
  L->slots = calloc((size_t)L->n_slots, sizeof *L->slots);
  if (L->slots == NULL) return t2s_error_set(err, T2S_ERR_NOMEM, "data loader: out of memory");
  for (int i = 0; i < L->n_slots; i++) {
    slot *s = &L->slots[i];
    s->iter = -1;
    s->images = t2s_loader_host_alloc(sizeof(float) * 3 * plane * B);
    s->labels = c->labels ? t2s_loader_host_alloc(plane * B) : NULL;
    s->indices = calloc((size_t)B, sizeof *s->indices);
    s->rcs_class = calloc((size_t)B, sizeof *s->rcs_class);
    s->replaced = calloc((size_t)B, sizeof *s->replaced);
    s->notes = calloc((size_t)B, sizeof *s->notes);
    if (s->images == NULL || (c->labels && s->labels == NULL) || !s->indices || !s->rcs_class ||
        !s->replaced || !s->notes)
      return t2s_error_set(err, T2S_ERR_NOMEM, "data loader: out of memory for %d batch buffers "
                           "of %d x 3 x %d x %d floats", L->n_slots, B, c->aug.crop_h,
                           c->aug.crop_w);
  }
  return T2S_OK;
}

static t2s_status start_workers(t2s_loader *L, t2s_error *err) {
  int n_ctx = L->n_workers > 0 ? L->n_workers : 1;
  L->workers = calloc((size_t)n_ctx, sizeof *L->workers);
  if (L->workers == NULL) return t2s_error_set(err, T2S_ERR_NOMEM, "data loader: out of memory");
  for (int i = 0; i < n_ctx; i++) L->workers[i].L = L;
  for (int i = 0; i < L->n_workers; i++) {
    if (pthread_create(&L->workers[i].thread, NULL, worker_main, &L->workers[i]) != 0)
      return t2s_error_set(err, T2S_ERR_BACKEND, "data loader: could not start worker thread %d "
                           "of %d; lower data.workers_per_gpu", i + 1, L->n_workers);
    L->threads_started = i + 1;
  }
  return T2S_OK;
}

t2s_status t2s_loader_open(t2s_loader **out, t2s_dataset *ds, const t2s_loader_cfg *cfg,
                           t2s_error *err) {
  *out = NULL;
  t2s_status st = check_cfg(ds, cfg, err);
  if (st != T2S_OK) return st;
  t2s_loader *L = calloc(1, sizeof *L);
  if (L == NULL) return t2s_error_set(err, T2S_ERR_NOMEM, "data loader: out of memory");
  L->ds = ds;
  L->cfg = *cfg;
  L->n_workers = cfg->workers;
  L->n_slots = cfg->workers == 0 ? 1 : (cfg->prefetch > 0 ? cfg->prefetch : cfg->workers + 1);
  if (cfg->workers > 0 && L->n_slots < 2) L->n_slots = 2;
  L->base = L->next_iter = cfg->start_iteration;
  L->held = -1;
  pthread_mutex_init(&L->mu, NULL);
  pthread_cond_init(&L->work_cv, NULL);
  pthread_cond_init(&L->done_cv, NULL);
  st = init_sampler(L, err);
  if (st == T2S_OK) st = alloc_slots(L, err);
  if (st == T2S_OK) st = start_workers(L, err);
  if (st != T2S_OK) {
    t2s_loader_close(L);
    return st;
  }
  *out = L;
  return T2S_OK;
}

t2s_status t2s_loader_open_shards(t2s_loader **out, const char (*patterns)[512], int n_patterns,
                                  const char *what, const t2s_loader_cfg *cfg, t2s_error *err) {
  *out = NULL;
  t2s_dataset ds;
  memset(&ds, 0, sizeof ds);
  t2s_error e = {0};
  if (t2s_dataset_open(&ds, patterns, n_patterns, what, &e) != T2S_OK)
    return t2s_error_set(err, e.status, "rank %d of %d could not open its data (%s): %s",
                         cfg->rank, cfg->world_size, what, e.msg);
  t2s_loader *L = NULL;
  /* on the heap: the workers hold its address from the moment the loader opens */
  t2s_dataset *held = malloc(sizeof *held);
  if (held == NULL) {
    t2s_dataset_close(&ds);
    return t2s_error_set(err, T2S_ERR_NOMEM, "data loader: out of memory");
  }
  *held = ds;
  t2s_status st = t2s_loader_open(&L, held, cfg, err);
  if (st != T2S_OK) {
    t2s_dataset_close(held);
    free(held);
    return st;
  }
  L->owned_ds = held;
  *out = L;
  return T2S_OK;
}

void t2s_loader_close(t2s_loader *L) {
  if (L == NULL) return;
  pthread_mutex_lock(&L->mu);
  L->stop = 1;
  pthread_cond_broadcast(&L->work_cv);
  pthread_mutex_unlock(&L->mu);
  for (int i = 0; i < L->threads_started; i++) pthread_join(L->workers[i].thread, NULL);
  int n_ctx = L->n_workers > 0 ? L->n_workers : 1;
  for (int i = 0; L->workers != NULL && i < n_ctx; i++) {
    worker *w = &L->workers[i];
    t2s_shard_chunk_free(&w->image_chunk);
    t2s_shard_chunk_free(&w->label_chunk);
    free(w->rgb);
    free(w->label);
    t2s_aug_scratch_free(&w->scratch);
  }
  free(L->workers);
  for (int i = 0; L->slots != NULL && i < L->n_slots; i++) {
    t2s_loader_host_free(L->slots[i].images);
    t2s_loader_host_free(L->slots[i].labels);
    free(L->slots[i].indices);
    free(L->slots[i].rcs_class);
    free(L->slots[i].replaced);
    free(L->slots[i].notes);
  }
  free(L->slots);
  t2s_sampler_free(&L->sampler);
  if (L->owned_ds != NULL) {
    t2s_dataset_close(L->owned_ds);
    free(L->owned_ds);
  }
  pthread_mutex_destroy(&L->mu);
  pthread_cond_destroy(&L->work_cv);
  pthread_cond_destroy(&L->done_cv);
  free(L);
}
