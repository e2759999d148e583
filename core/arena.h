/* Arena allocator over a chain of blocks on one device.
 *
 * Used for everything that lives for one pass (activations, saved tensors,
 * activation gradients) or one iteration. Allocation bumps through the blocks;
 * t2s_arena_free() hands a range back to a free list that later allocations take
 * from first (best fit; neighbouring free ranges coalesce, and a range that ends at
 * its block's bump position lowers it). reset() empties the free list and rewinds
 * to the first block but keeps every block, so a run whose shapes are static makes
 * the same sequence of allocations and frees every step and gets the same addresses
 * (which CUDA graph capture relies on). The free list lives in host memory, so the
 * arena works the same over GPU memory. */
#pragma once
#include <stddef.h>

#include "core/tensor.h"

typedef struct t2s_arena t2s_arena;

/* A position in the engine's allocation record (t2s_scratch_mark, core/engine.h):
 * what to give back with t2s_scratch_release. */
typedef struct t2s_arena_mark {
  size_t serial;
} t2s_arena_mark;

/* block_bytes: size of each new block (a larger request gets a block of its own size). */
t2s_arena *t2s_arena_create(t2s_device dev, size_t block_bytes, const char *name, t2s_error *err);
void t2s_arena_destroy(t2s_arena *a);
/* T2S_ALIGN-aligned; NULL (and err set) when the device is out of memory. */
void *t2s_arena_alloc(t2s_arena *a, size_t bytes, t2s_error *err);
/* Gives back [p, p + bytes) of an earlier t2s_arena_alloc(a, bytes) of this pass. The
 * memory may be handed out again by the next allocation. */
void t2s_arena_free(t2s_arena *a, void *p, size_t bytes);
void t2s_arena_reset(t2s_arena *a);
/* Debug aid: fill every new allocation, and every freed range, with this byte (0xFF
 * makes floats NaN), so code that reads memory it never wrote, or memory given back,
 * shows up in tests. -1 turns it off. */
void t2s_arena_set_poison(t2s_arena *a, int byte);
/* Allocation log for profiling: while on, every alloc and free of the arena is
 * appended as (+bytes or -bytes, bytes in use after it). The log is cleared by
 * t2s_arena_log(a, 1) and kept across resets. */
typedef struct t2s_arena_event {
  long long delta;   /* > 0 allocation, < 0 free, of this many (aligned) bytes */
  size_t in_use;     /* bytes handed out and not freed, after the event */
  size_t footprint;  /* bytes below the blocks' bump positions (touched memory), after it */
} t2s_arena_event;
void t2s_arena_log(t2s_arena *a, int on);
const t2s_arena_event *t2s_arena_log_events(const t2s_arena *a, size_t *count);

size_t t2s_arena_used(const t2s_arena *a);      /* bytes handed out and not freed since the last reset */
size_t t2s_arena_peak(const t2s_arena *a);      /* most bytes in use at once in any pass */
/* Most bytes below the blocks' bump positions in any pass: what the pass actually
 * touched, the in-use peak plus the fragmentation of the free list. */
size_t t2s_arena_peak_footprint(const t2s_arena *a);
void t2s_arena_reset_peak(t2s_arena *a);        /* peaks restart from the current use */
size_t t2s_arena_reserved(const t2s_arena *a);  /* bytes held in blocks */
t2s_device t2s_arena_device(const t2s_arena *a);
