#include "core/arena.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/device.h"

typedef struct arena_block {
  struct arena_block *next;
  char *base;
  size_t size, used;  /* used: the bump position; [used, size) has never been handed out this pass */
} arena_block;

/* A free range inside one block, below the block's bump position. */
typedef struct free_range {
  arena_block *block;
  char *p;
  size_t n;
} free_range;

struct t2s_arena {
  t2s_device dev;
  size_t block_bytes;
  arena_block *first;
  size_t used, peak, footprint, peak_footprint, reserved;
  free_range *free;  /* sorted by address; neighbours in one block never touch (coalesced) */
  size_t n_free, cap_free;
  t2s_arena_event *log;
  size_t n_log, cap_log;
  int logging;
  int poison;  /* byte to fill new allocations with, or -1 */
  char name[32];
};

t2s_arena *t2s_arena_create(t2s_device dev, size_t block_bytes, const char *name, t2s_error *err) {
  t2s_arena *a = calloc(1, sizeof *a);
  if (a == NULL) {
    t2s_error_set(err, T2S_ERR_NOMEM, "out of host memory creating arena '%s'", name);
    return NULL;
  }
  a->dev = dev;
  a->block_bytes = block_bytes ? block_bytes : (size_t)64 << 20;
  a->poison = -1;
  snprintf(a->name, sizeof a->name, "%s", name ? name : "arena");
  return a;
}

void t2s_arena_destroy(t2s_arena *a) {
  if (a == NULL) return;
  for (arena_block *b = a->first; b != NULL;) {
    arena_block *next = b->next;
    t2s_device_free(a->dev, b->base);
    free(b);
    b = next;
  }
  free(a->free);
  free(a->log);
  free(a);
}

static arena_block *arena_new_block(t2s_arena *a, size_t bytes, t2s_error *err) {
  arena_block *b = calloc(1, sizeof *b);
  if (b == NULL) {
    t2s_error_set(err, T2S_ERR_NOMEM, "out of host memory growing arena '%s'", a->name);
    return NULL;
  }
  b->size = bytes > a->block_bytes ? bytes : a->block_bytes;
  b->base = t2s_device_malloc(a->dev, b->size, err);
  if (b->base == NULL) {
    free(b);
    t2s_error_set(err, T2S_ERR_NOMEM, "arena '%s' could not grow by %zu bytes on %s", a->name,
                  bytes, t2s_device_name(a->dev));
    return NULL;
  }
  a->reserved += b->size;
  return b;
}

static void log_event(t2s_arena *a, long long delta) {
  if (!a->logging) return;
  if (a->n_log == a->cap_log) {
    size_t cap = a->cap_log ? a->cap_log * 2 : 4096;
    t2s_arena_event *grown = realloc(a->log, cap * sizeof *grown);
    if (grown == NULL) {
      a->logging = 0; /* profiling aid only: stop logging rather than fail the run */
      return;
    }
    a->log = grown;
    a->cap_log = cap;
  }
  a->log[a->n_log++] = (t2s_arena_event){delta, a->used, a->footprint};
}

static void grow_footprint(t2s_arena *a, size_t n) {
  a->footprint += n;
  if (a->footprint > a->peak_footprint) a->peak_footprint = a->footprint;
}

/* Best fit from the free list (the lowest address among equal sizes, so the choice is
 * repeatable); then the first block whose untouched tail fits; then a new block. */
static void *take(t2s_arena *a, size_t need, t2s_error *err) {
  size_t best = a->n_free;
  for (size_t i = 0; i < a->n_free; i++)
    if (a->free[i].n >= need && (best == a->n_free || a->free[i].n < a->free[best].n)) best = i;
  if (best < a->n_free) {
    free_range *r = &a->free[best];
    char *p = r->p;
    r->p += need;
    r->n -= need;
    if (r->n == 0) {
      memmove(r, r + 1, (a->n_free - best - 1) * sizeof *r);
      a->n_free--;
    }
    return p;
  }
  arena_block **link = &a->first;
  for (arena_block *b = a->first; b != NULL; link = &b->next, b = b->next)
    if (b->size - b->used >= need) {
      char *p = b->base + b->used;
      b->used += need;
      grow_footprint(a, need);
      return p;
    }
  arena_block *b = arena_new_block(a, need, err);
  if (b == NULL) return NULL;
  *link = b;
  b->used = need;
  grow_footprint(a, need);
  return b->base;
}

static size_t aligned(size_t bytes) {
  size_t need = (bytes + T2S_ALIGN - 1) / T2S_ALIGN * T2S_ALIGN;
  return need ? need : T2S_ALIGN;
}

void *t2s_arena_alloc(t2s_arena *a, size_t bytes, t2s_error *err) {
  size_t need = aligned(bytes);
  void *p = take(a, need, err);
  if (p == NULL) return NULL;
  a->used += need;
  if (a->used > a->peak) a->peak = a->used;
  log_event(a, (long long)need);
  if (a->poison >= 0 && a->dev == T2S_DEV_CPU) memset(p, a->poison, need);
  return p;
}

static arena_block *block_of(const t2s_arena *a, const char *p) {
  for (arena_block *b = a->first; b != NULL; b = b->next)
    if (p >= b->base && p < b->base + b->used) return b;
  return NULL;
}

static int insert_range(t2s_arena *a, size_t at, free_range r) {
  if (a->n_free == a->cap_free) {
    size_t cap = a->cap_free ? a->cap_free * 2 : 256;
    free_range *grown = realloc(a->free, cap * sizeof *grown);
    if (grown == NULL) return 0;
    a->free = grown;
    a->cap_free = cap;
  }
  memmove(a->free + at + 1, a->free + at, (a->n_free - at) * sizeof *a->free);
  a->free[at] = r;
  a->n_free++;
  return 1;
}

static void remove_range(t2s_arena *a, size_t at) {
  memmove(a->free + at, a->free + at + 1, (a->n_free - at - 1) * sizeof *a->free);
  a->n_free--;
}

void t2s_arena_free(t2s_arena *a, void *ptr, size_t bytes) {
  if (ptr == NULL) return;
  char *p = ptr;
  size_t n = aligned(bytes);
  arena_block *b = block_of(a, p);
  if (b == NULL) return; /* not from this pass (already reset): nothing to give back */
  if (a->poison >= 0 && a->dev == T2S_DEV_CPU) memset(p, a->poison, n);
  a->used -= n;
  /* first free range above p (binary search over addresses) */
  size_t lo = 0, hi = a->n_free;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (a->free[mid].p < p) lo = mid + 1;
    else hi = mid;
  }
  free_range r = {b, p, n};
  size_t at = lo;
  if (at > 0 && a->free[at - 1].block == b && a->free[at - 1].p + a->free[at - 1].n == p) {
    at--;
    r.p = a->free[at].p;
    r.n += a->free[at].n;
    remove_range(a, at);
  }
  if (at < a->n_free && a->free[at].block == b && r.p + r.n == a->free[at].p) {
    r.n += a->free[at].n;
    remove_range(a, at);
  }
  if (r.p + r.n == b->base + b->used) {
    /* the range ends at the bump position: lower it instead of keeping a free range */
    b->used = (size_t)(r.p - b->base);
    a->footprint -= r.n;
  } else if (!insert_range(a, at, r)) {
    /* out of host memory for the free list: the range stays unused until reset */
  }
  log_event(a, -(long long)n);
}

void t2s_arena_set_poison(t2s_arena *a, int byte) { a->poison = byte; }

void t2s_arena_log(t2s_arena *a, int on) {
  a->logging = on;
  if (on) a->n_log = 0;
}

const t2s_arena_event *t2s_arena_log_events(const t2s_arena *a, size_t *count) {
  *count = a->n_log;
  return a->log;
}

void t2s_arena_reset(t2s_arena *a) {
  for (arena_block *b = a->first; b != NULL; b = b->next) b->used = 0;
  a->used = 0;
  a->footprint = 0;
  a->n_free = 0;
}

void t2s_arena_reset_peak(t2s_arena *a) {
  a->peak = a->used;
  a->peak_footprint = a->footprint;
}

size_t t2s_arena_used(const t2s_arena *a) { return a->used; }
size_t t2s_arena_peak(const t2s_arena *a) { return a->peak; }
size_t t2s_arena_peak_footprint(const t2s_arena *a) { return a->peak_footprint; }
size_t t2s_arena_reserved(const t2s_arena *a) { return a->reserved; }
t2s_device t2s_arena_device(const t2s_arena *a) { return a->dev; }
