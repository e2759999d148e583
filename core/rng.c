#include "core/rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

t2s_rng_key t2s_rng_key_make(uint64_t seed, uint64_t a, uint64_t b, uint64_t c) {
  uint64_t h = splitmix64(seed);
  h = splitmix64(h ^ a);
  h = splitmix64(h ^ b);
  h = splitmix64(h ^ c);
  t2s_rng_key key = {{(uint32_t)h, (uint32_t)(h >> 32)}};
  return key;
}

void t2s_philox4x32(t2s_rng_key key, uint64_t ctr, uint32_t out[4]) {
  uint32_t c0 = (uint32_t)ctr, c1 = (uint32_t)(ctr >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = key.k[0], k1 = key.k[1];
  for (int r = 0; r < 10; r++) {
    uint64_t p0 = (uint64_t)PHILOX_M0 * c0, p1 = (uint64_t)PHILOX_M1 * c2;
    uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
    c1 = (uint32_t)p1;
    c3 = (uint32_t)p0;
    c0 = n0;
    c2 = n2;
    k0 += PHILOX_W0;
    k1 += PHILOX_W1;
  }
  out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

float t2s_rng_uniform(t2s_rng_key key, uint64_t i) {
  uint32_t w[4];
  t2s_philox4x32(key, i >> 2, w);
  return (float)(w[i & 3] >> 8) * (1.0f / 16777216.0f);
}

float t2s_rng_normal(t2s_rng_key key, uint64_t i) {
  uint32_t w[4];
  t2s_philox4x32(key, (i >> 1) | (1ull << 62), w);
  double u1 = ((double)w[2 * (i & 1)] + 1.0) * (1.0 / 4294967297.0);
  double u2 = (double)w[2 * (i & 1) + 1] * (1.0 / 4294967296.0);
  return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint32_t t2s_rng_below(t2s_rng_key key, uint64_t i, uint32_t n) {
  uint32_t w[4];
  t2s_philox4x32(key, i >> 2, w);
  return (uint32_t)(((uint64_t)w[i & 3] * n) >> 32);
}
