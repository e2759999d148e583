/* Counter-based random numbers (Philox-4x32-10, the generator of cuRAND and
 * PyTorch's CUDA RNG). A value depends only on (key, counter), never on a
 * stream's history, so any rank or GPU thread can compute the number for
 * (seed, iteration, global sample index, purpose) without coordination. */
#pragma once
#include <stdint.h>

typedef struct t2s_rng_key {
  uint32_t k[2];
} t2s_rng_key;

/* Derives a key from a seed and up to three identifiers (e.g. iteration, sample, purpose). */
t2s_rng_key t2s_rng_key_make(uint64_t seed, uint64_t a, uint64_t b, uint64_t c);
/* Four independent 32-bit words for counter `ctr`. */
void t2s_philox4x32(t2s_rng_key key, uint64_t ctr, uint32_t out[4]);
/* Uniform float in [0, 1) for element i (one Philox call per four elements). */
float t2s_rng_uniform(t2s_rng_key key, uint64_t i);
/* Standard normal for element i (Box-Muller on two uniforms). */
float t2s_rng_normal(t2s_rng_key key, uint64_t i);
/* Uniform integer in [0, n). */
uint32_t t2s_rng_below(t2s_rng_key key, uint64_t i, uint32_t n);
