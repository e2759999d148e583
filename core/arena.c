#include "core/arena.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/device.h"

typedef struct arena_block {
  struct arena_block *next;
  char *base;
  size_t size, used;
} arena_block;

struct t2s_arena {
  t2s_device dev;
  size_t block_bytes;
  arena_block *first, *current;
  size_t used, peak, reserved;
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
  free(a);
}

static arena_block *arena_new_block(t2s_arena *a, size_t bytes, t2s_error *err) {
  arena_block *b = calloc(1, sizeof *b);
  if (b == NULL) return NULL;
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

void *t2s_arena_alloc(t2s_arena *a, size_t bytes, t2s_error *err) {
  size_t need = (bytes + T2S_ALIGN - 1) / T2S_ALIGN * T2S_ALIGN;
  if (need == 0) need = T2S_ALIGN;
  if (a->current == NULL) {
    if (a->first == NULL && (a->first = arena_new_block(a, need, err)) == NULL) return NULL;
    a->current = a->first;
  }
  /* Walk forward through kept blocks; a block too small for this request is skipped
   * (its tail stays unused this pass) so the sequence of addresses stays repeatable. */
  while (a->current->size - a->current->used < need) {
    if (a->current->next == NULL) {
      arena_block *b = arena_new_block(a, need, err);
      if (b == NULL) return NULL;
      a->current->next = b;
    }
    a->current = a->current->next;
  }
  void *p = a->current->base + a->current->used;
  a->current->used += need;
  a->used += need;
  if (a->used > a->peak) a->peak = a->used;
  if (a->poison >= 0 && a->dev == T2S_DEV_CPU) memset(p, a->poison, need);
  return p;
}

t2s_arena_mark t2s_arena_get_mark(const t2s_arena *a) {
  t2s_arena_mark m = {a->current, a->current ? a->current->used : 0, a->used};
  return m;
}

void t2s_arena_rewind(t2s_arena *a, t2s_arena_mark mark) {
  arena_block *keep = mark.block;
  if (keep == NULL) {
    t2s_arena_reset(a);
    return;
  }
  /* blocks after the mark's block were entered later: empty them */
  for (arena_block *b = keep->next; b != NULL; b = b->next) b->used = 0;
  keep->used = mark.block_used;
  a->current = keep;
  a->used = mark.used;
}

void t2s_arena_set_poison(t2s_arena *a, int byte) { a->poison = byte; }

void t2s_arena_reset(t2s_arena *a) {
  for (arena_block *b = a->first; b != NULL; b = b->next) b->used = 0;
  a->current = a->first;
  a->used = 0;
}

size_t t2s_arena_used(const t2s_arena *a) { return a->used; }
size_t t2s_arena_peak(const t2s_arena *a) { return a->peak; }
size_t t2s_arena_reserved(const t2s_arena *a) { return a->reserved; }
t2s_device t2s_arena_device(const t2s_arena *a) { return a->dev; }
