/* Procedural street scenes with a controlled domain shift: the synthetic data of
 * the demo, the CI and the end-to-end tests (tools/t2sda_synth writes them as shards).
 *
 * Both domains draw their layouts from ONE geometry distribution (a pinhole camera
 * over a street: sky, facades, road and sidewalks in perspective, poles with signs
 * and lights, trees, cars and persons, painted far to near). They differ in
 *   - appearance: class palette (source: saturated "game" colours; target: muted,
 *     other hues), textures, lighting, haze, blur and sensor noise;
 *   - a mild label-frequency shift, as GTA5 -> Cityscapes: the target has fewer cars,
 *     more vegetation and slightly smaller small objects.
 * Classes are a subset of Cityscapes' (names as there), in a compact 0..10 range.
 *
 * Image `index` of a domain depends only on (seed, domain, index): every random
 * choice comes from the counter-based RNG keyed by (seed, domain, index, purpose),
 * so any thread can draw any image and the result is the same bytes. */
#pragma once
#include <stdint.h>

#include "core/status.h"

typedef enum t2s_synth_domain {
  T2S_SYNTH_SOURCE = 0,
  T2S_SYNTH_TARGET = 1,
} t2s_synth_domain;

typedef enum t2s_synth_class {
  T2S_SYNTH_ROAD = 0,
  T2S_SYNTH_SIDEWALK,
  T2S_SYNTH_BUILDING,
  T2S_SYNTH_WALL,
  T2S_SYNTH_POLE,
  T2S_SYNTH_TRAFFIC_LIGHT,
  T2S_SYNTH_TRAFFIC_SIGN,
  T2S_SYNTH_VEGETATION,
  T2S_SYNTH_SKY,
  T2S_SYNTH_PERSON,
  T2S_SYNTH_CAR,
  T2S_SYNTH_NUM_CLASSES
} t2s_synth_class;

/* The target validation set uses target-domain indices from here on, so it never
 * repeats a training image whatever the training set's size. */
#define T2S_SYNTH_VAL_INDEX ((uint64_t)1 << 32)

#define T2S_SYNTH_MIN_SIZE 32
#define T2S_SYNTH_MAX_SIZE 4096

typedef struct t2s_synth_cfg {
  int width, height; /* pixels, T2S_SYNTH_MIN_SIZE..T2S_SYNTH_MAX_SIZE each */
  uint64_t seed;
  int thin;          /* 1: thin poles (30% of the width), half-size signs and lights, 1.5x as
                      * many poles: small objects that need high resolution (the HRDA
                      * benchmark, t2sda_synth --thin). */
} t2s_synth_cfg;

int t2s_synth_class_count(void);
/* Cityscapes name of class c ("road", "traffic light", ...); NULL when out of range. */
const char *t2s_synth_class_name(int c);
/* The shard `domain` attribute: "synthetic_source" / "synthetic_target". */
const char *t2s_synth_domain_name(t2s_synth_domain domain);

/* ---- DG validation styles ----
 * Extra labelled target conditions for a synthetic domain-generalisation benchmark:
 * the target's scene distribution (geometry, label frequencies) under other colour,
 * texture/noise and blur, each meant as its own validation set:
 *   0 fog    white haze swallowing depth, low contrast, strong blur
 *   1 night  dark, blue cast, lit windows, sensor noise
 *   2 snow   bright and desaturated, speckle texture (flakes), crisp
 *   3 storm  the hard one: dark, dense haze, strong blur, heavy noise and rain speckle
 * Image `index` of style k depends only on (seed, k, index), as for the domains; its
 * random streams are keyed by domain number 2 + k, so it never repeats a source or
 * target image. The shard domain attribute is "synthetic_<name>". */
#define T2S_SYNTH_NUM_STYLES 4

/* "fog", "night", "snow", "storm"; NULL when out of range. */
const char *t2s_synth_style_name(int style);
/* The index of a style name, or -1. */
int t2s_synth_style_find(const char *name);
/* As t2s_synth_draw, in DG style `style` (0..T2S_SYNTH_NUM_STYLES-1). */
t2s_status t2s_synth_draw_style(const t2s_synth_cfg *cfg, int style, uint64_t index, uint8_t *rgb,
                                uint8_t *label, t2s_error *err);

/* Draws image `index` of `domain`: rgb is H x W x 3 (RGB, row-major), label is
 * H x W class ids < t2s_synth_class_count() (no ignore pixels), or NULL when only
 * the image is wanted. Allocates its scratch (about 25 bytes per pixel) per call. */
t2s_status t2s_synth_draw(const t2s_synth_cfg *cfg, t2s_synth_domain domain, uint64_t index,
                          uint8_t *rgb, uint8_t *label, t2s_error *err);
