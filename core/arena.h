/* Bump allocator over a chain of blocks on one device.
 *
 * Used for everything that lives for one pass (activations, saved tensors,
 * activation gradients) or one iteration. reset() rewinds to the first block
 * but keeps every block, so a run whose shapes are static gets the same
 * addresses every step (which CUDA graph capture relies on). */
#pragma once
#include <stddef.h>

#include "core/tensor.h"

typedef struct t2s_arena t2s_arena;

/* A position in an arena, to give back everything allocated after it. */
typedef struct t2s_arena_mark {
  void *block;
  size_t block_used, used;
} t2s_arena_mark;

/* block_bytes: size of each new block (a larger request gets a block of its own size). */
t2s_arena *t2s_arena_create(t2s_device dev, size_t block_bytes, const char *name, t2s_error *err);
void t2s_arena_destroy(t2s_arena *a);
/* T2S_ALIGN-aligned; NULL (and err set) when the device is out of memory. */
void *t2s_arena_alloc(t2s_arena *a, size_t bytes, t2s_error *err);
void t2s_arena_reset(t2s_arena *a);
t2s_arena_mark t2s_arena_get_mark(const t2s_arena *a);
void t2s_arena_rewind(t2s_arena *a, t2s_arena_mark mark);
/* Debug aid: fill every new allocation with this byte (0xFF makes floats NaN), so
 * code that reads memory it never wrote shows up in tests. -1 turns it off. */
void t2s_arena_set_poison(t2s_arena *a, int byte);
size_t t2s_arena_used(const t2s_arena *a);      /* bytes handed out since the last reset */
size_t t2s_arena_peak(const t2s_arena *a);      /* most bytes handed out in any pass */
size_t t2s_arena_reserved(const t2s_arena *a);  /* bytes held in blocks */
t2s_device t2s_arena_device(const t2s_arena *a);
