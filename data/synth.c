/* Procedural street scenes with a domain shift (see data/synth.h).
 *
 * Geometry: a pinhole camera at height 1 (the world unit is the camera height)
 * looks along the street; the horizon is row yh, the vanishing point column xv.
 * A world point at lateral offset X, height Y and depth Z projects to
 *     x = xv + X * S / Z,      y = yh + (S / Z) * (1 - Y),
 * so the ground (Y = 0) at row y has depth Z = S / (y - yh). Everything is painted
 * far to near (painter's algorithm): sky, skyline, ground, facades, then the
 * objects sorted by depth, which gives the occlusion order.
 *
 * Appearance: the rasteriser writes a label and a base colour per pixel (palette,
 * per-object colours, windows, tiles, markings, haze by depth); a second pass adds
 * per-class textures, lighting and contrast, the target's blur and sensor noise. */
#include "data/synth.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"

#define NC T2S_SYNTH_NUM_CLASSES
#define MAX_SEGS 64
#define MAX_OBJECTS 96

static const char *const CLASS_NAMES[NC] = {
    "road", "sidewalk", "building", "wall", "pole", "traffic light",
    "traffic sign", "vegetation", "sky", "person", "car",
};

/* Everything that differs between the domains. The label-frequency knobs are
 * deliberately close (a mild shift); the appearance is deliberately far apart. */
typedef struct style {
  float palette[NC][3];
  float sky_top[3], sky_bottom[3], trunk[3], marking[3], window[3], skin[3];
  float jitter;                        /* per-image relative colour jitter (sd) */
  float obj_sat_lo, obj_sat_hi, obj_val_lo, obj_val_hi; /* car and clothing colours (HSV) */
  float cars, persons, poles, trees;   /* expected counts per image (poles, trees: per side) */
  float veg_facade, small;             /* P(facade segment is vegetation); small-object scale */
  float tex_low[NC], tex_mid[NC], tex_px[NC]; /* relative texture amplitude per class */
  float window_mix, window_u, window_v;       /* window blend, spacing (camera heights) */
  float tile, tile_contrast, clouds;
  float gain, warm, contrast, fog_dist, noise; /* noise: sensor sd in 8-bit levels */
  int blur;                                     /* [1 2 1] blur passes */
} style;

#define ROW(a, b, c) {a, b, c}
static const style STYLES[2] = {
    {/* source: saturated "game" colours, crisp textures, clear sunny air, clean sensor */
     .palette = {ROW(112, 64, 140), ROW(226, 112, 196), ROW(84, 100, 160), ROW(196, 164, 72),
                 ROW(236, 220, 64), ROW(248, 150, 24), ROW(250, 230, 20), ROW(48, 190, 64),
                 ROW(70, 150, 250), ROW(40, 60, 200), ROW(200, 30, 30)},
     .sky_top = {40, 110, 240}, .sky_bottom = {150, 205, 255}, .trunk = {150, 85, 35},
     .marking = {245, 245, 245}, .window = {40, 210, 235}, .skin = {240, 180, 140},
     .jitter = 0.06f, .obj_sat_lo = 0.6f, .obj_sat_hi = 1.0f, .obj_val_lo = 0.55f, .obj_val_hi = 1.0f,
     .cars = 4.0f, .persons = 2.4f, .poles = 2.6f, .trees = 0.9f, .veg_facade = 0.20f, .small = 1.0f,
     .tex_low = {0.05f, 0.05f, 0.05f, 0.05f, 0.03f, 0.03f, 0.03f, 0.08f, 0.02f, 0.04f, 0.03f},
     .tex_mid = {0.03f, 0.04f, 0.04f, 0.06f, 0.02f, 0.02f, 0.02f, 0.20f, 0.00f, 0.03f, 0.02f},
     .tex_px = {0.02f, 0.02f, 0.02f, 0.02f, 0.01f, 0.01f, 0.01f, 0.04f, 0.00f, 0.02f, 0.01f},
     .window_mix = 0.7f, .window_u = 1.3f, .window_v = 0.9f,
     .tile = 0.6f, .tile_contrast = 0.25f, .clouds = 0.55f,
     .gain = 1.05f, .warm = 0.06f, .contrast = 1.1f, .fog_dist = 150.0f, .noise = 1.0f, .blur = 0},
    {/* target: muted, other hues, grainy textures, overcast haze, blur and sensor noise */
     .palette = {ROW(120, 118, 108), ROW(168, 150, 134), ROW(158, 128, 104), ROW(124, 130, 140),
                 ROW(92, 92, 86), ROW(50, 52, 48), ROW(60, 90, 170), ROW(90, 112, 60),
                 ROW(178, 188, 198), ROW(60, 60, 70), ROW(110, 110, 115)},
     .sky_top = {170, 180, 192}, .sky_bottom = {212, 215, 216}, .trunk = {80, 72, 62},
     .marking = {175, 175, 168}, .window = {55, 60, 66}, .skin = {190, 150, 130},
     .jitter = 0.08f, .obj_sat_lo = 0.0f, .obj_sat_hi = 0.3f, .obj_val_lo = 0.12f, .obj_val_hi = 0.9f,
     .cars = 3.0f, .persons = 2.6f, .poles = 2.6f, .trees = 1.5f, .veg_facade = 0.30f, .small = 0.88f,
     .tex_low = {0.10f, 0.10f, 0.10f, 0.10f, 0.05f, 0.05f, 0.05f, 0.12f, 0.04f, 0.06f, 0.05f},
     .tex_mid = {0.08f, 0.08f, 0.08f, 0.08f, 0.04f, 0.04f, 0.04f, 0.10f, 0.02f, 0.05f, 0.04f},
     .tex_px = {0.12f, 0.10f, 0.08f, 0.08f, 0.04f, 0.04f, 0.04f, 0.22f, 0.02f, 0.06f, 0.05f},
     .window_mix = 0.45f, .window_u = 0.8f, .window_v = 0.7f,
     .tile = 0.35f, .tile_contrast = 0.12f, .clouds = 0.12f,
     .gain = 0.92f, .warm = -0.05f, .contrast = 0.85f, .fog_dist = 45.0f, .noise = 6.0f, .blur = 1},
};
#undef ROW

/* ---- DG validation styles: the target's scenes seen under other conditions ----
 * Each starts from the target style (same geometry and label frequencies) and moves
 * its colour, texture/noise and blur somewhere else; storm is the hard one (dark,
 * dense haze, strong blur, heavy sensor noise and rain speckle all at once). */
static const char *const DG_STYLE_NAMES[T2S_SYNTH_NUM_STYLES] = {"fog", "night", "snow", "storm"};

static void set3(float v[3], float a, float b, float c) { v[0] = a, v[1] = b, v[2] = c; }

/* Palette moved towards a colour: p <- (1 - t) p + t c. */
static void palette_towards(style *st, const float c[3], float t) {
  for (int k = 0; k < NC; k++)
    for (int j = 0; j < 3; j++) st->palette[k][j] = (1.0f - t) * st->palette[k][j] + t * c[j];
}

static void dg_style(int k, style *st) {
  *st = STYLES[T2S_SYNTH_TARGET];
  st->clouds = 0.0f;
  st->warm = 0.0f;
  switch (k) {
    case 0: /* fog: white haze that swallows depth, low contrast, soft optics */
      set3(st->sky_top, 205, 208, 212), set3(st->sky_bottom, 214, 216, 218);
      st->fog_dist = 9.0f, st->contrast = 0.55f, st->gain = 1.0f, st->noise = 2.0f, st->blur = 2;
      break;
    case 1: /* night: dark, blue cast, lit windows, sensor noise */
      set3(st->sky_top, 6, 8, 22), set3(st->sky_bottom, 22, 26, 48);
      set3(st->window, 255, 214, 120);
      st->window_mix = 0.85f, st->fog_dist = 70.0f, st->gain = 0.32f, st->warm = -0.35f;
      st->contrast = 1.0f, st->noise = 9.0f, st->blur = 1;
      break;
    case 2: { /* snow: bright, desaturated, speckled with flakes, crisp */
      const float white[3] = {236, 238, 242};
      palette_towards(st, white, 0.45f);
      set3(st->sky_top, 218, 222, 228), set3(st->sky_bottom, 232, 234, 238);
      for (int c = 0; c < NC; c++) st->tex_px[c] = 0.18f;
      st->gain = 1.12f, st->contrast = 0.9f, st->fog_dist = 60.0f, st->noise = 3.0f, st->blur = 0;
      break;
    }
    default: { /* storm: everything at once: the hard one */
      const float grey[3] = {84, 88, 94};
      palette_towards(st, grey, 0.35f);
      set3(st->sky_top, 52, 56, 64), set3(st->sky_bottom, 78, 82, 90);
      for (int c = 0; c < NC; c++) st->tex_px[c] = 0.25f;
      st->fog_dist = 14.0f, st->gain = 0.5f, st->warm = -0.15f, st->contrast = 0.7f;
      st->noise = 16.0f, st->blur = 2;
      break;
    }
  }
}

/* RNG purposes: separate keys, so e.g. the number of objects never shifts the
 * colours or the noise of an image. */
enum { P_LAYOUT = 1, P_OBJECTS, P_COLOUR, P_TEXTURE, P_SENSOR };

typedef struct stream {
  t2s_rng_key key;
  uint64_t ctr;
} stream;

static stream stream_make(const t2s_synth_cfg *cfg, int domain, uint64_t index, int purpose) {
  stream s = {t2s_rng_key_make(cfg->seed, (uint64_t)domain, index, (uint64_t)purpose), 0};
  return s;
}
static float unif(stream *s, float lo, float hi) {
  return lo + (hi - lo) * t2s_rng_uniform(s->key, s->ctr++);
}
static float gauss(stream *s) { return t2s_rng_normal(s->key, s->ctr++); }
static int chance(stream *s, float p) { return unif(s, 0.0f, 1.0f) < p; }
static int poisson(stream *s, float lambda) {
  float u = unif(s, 0.0f, 1.0f), p = expf(-lambda), cdf = p;
  int k = 0;
  while (u > cdf && k < 32) {
    k++;
    p *= lambda / (float)k;
    cdf += p;
  }
  return k;
}

/* ---- value noise: a random lattice, bilinear with smoothstep weights ---- */
typedef struct lattice {
  int gw, gh;
  float cell;
  float *v; /* gw x gh in [-1, 1] */
} lattice;

static void lattice_fill(lattice *l, stream *s) {
  for (int i = 0; i < l->gw * l->gh; i++) l->v[i] = unif(s, -1.0f, 1.0f);
}
static float lattice_at(const lattice *l, float x, float y) {
  float fx = x / l->cell, fy = y / l->cell;
  int ix = (int)fx, iy = (int)fy;
  float ax = fx - (float)ix, ay = fy - (float)iy;
  ax = ax * ax * (3.0f - 2.0f * ax);
  ay = ay * ay * (3.0f - 2.0f * ay);
  const float *r0 = l->v + iy * l->gw + ix, *r1 = r0 + l->gw;
  float top = r0[0] + ax * (r0[1] - r0[0]), bot = r1[0] + ax * (r1[1] - r1[0]);
  return top + ay * (bot - top);
}

/* ---- the scene ---- */
typedef struct segment {
  float z0, z1, h, phase;
  int cls;
  float col[3];
} segment;

typedef enum { OBJ_TREE, OBJ_POLE, OBJ_CAR, OBJ_PERSON } obj_kind;

typedef struct object {
  obj_kind kind;
  int id, variant, shape;
  float Z, X, h, w, a, dir;
  float col[3][3];
} object;

typedef struct scene {
  int W, H;
  const style *st;
  int thin;               /* t2s_synth_cfg.thin */
  float yh, xv, S;        /* horizon row, vanishing column, pixels per unit at depth 1 */
  float Xc, Rw, XL, XR;   /* road centre, road half width, left/right facade planes */
  float Zend, Hend;       /* facade closing the street (Zend = 0: open street) */
  float pal[NC][3];       /* this image's palette */
  float fog[3];
  float gain[3];
  uint8_t *label;
  float *col;             /* H x W x 3 base colour, then the image in float */
  lattice low, mid;
} scene;

static float clampf(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }

static void hsv_to_rgb(float h, float s, float v, float out[3]) {
  float c = v * s, hp = h * 6.0f, x = c * (1.0f - fabsf(fmodf(hp, 2.0f) - 1.0f));
  float r = 0, g = 0, b = 0;
  int k = (int)hp % 6;
  if (k == 0) { r = c; g = x; } else if (k == 1) { r = x; g = c; } else if (k == 2) { g = c; b = x; }
  else if (k == 3) { g = x; b = c; } else if (k == 4) { r = x; b = c; } else { r = c; b = x; }
  out[0] = 255.0f * (r + v - c);
  out[1] = 255.0f * (g + v - c);
  out[2] = 255.0f * (b + v - c);
}

/* A colour for an object (car body, clothing) from the domain's HSV ranges. */
static void object_colour(const style *st, stream *s, float out[3]) {
  float h = unif(s, 0.0f, 1.0f), sat = unif(s, st->obj_sat_lo, st->obj_sat_hi);
  hsv_to_rgb(h, sat, unif(s, st->obj_val_lo, st->obj_val_hi), out);
}

static void jittered(const float base[3], float sd, stream *s, float out[3]) {
  float common = 1.0f + sd * gauss(s);
  for (int k = 0; k < 3; k++) out[k] = clampf(base[k] * common * (1.0f + 0.5f * sd * gauss(s)), 0, 255);
}

/* Aerial perspective: colours fade to the horizon colour with depth Z. */
static void hazed(const scene *sc, const float c[3], float Z, float out[3]) {
  float f = 1.0f - expf(-Z / sc->st->fog_dist);
  for (int k = 0; k < 3; k++) out[k] = c[k] + f * (sc->fog[k] - c[k]);
}

static void put(scene *sc, int x, int y, int cls, const float c[3]) {
  size_t p = (size_t)y * (size_t)sc->W + (size_t)x;
  sc->label[p] = (uint8_t)cls;
  memcpy(sc->col + 3 * p, c, 3 * sizeof(float));
}

/* Rows y0..y1 (pixel centres inside), left/right edges interpolated from (xl0, xr0)
 * at y0 to (xl1, xr1) at y1: rectangles, trapezoids and triangles. */
static void fill_trapezoid(scene *sc, float y0, float y1, float xl0, float xr0, float xl1,
                           float xr1, int cls, const float c[3]) {
  int r0 = (int)ceilf(y0 - 0.5f), r1 = (int)ceilf(y1 - 0.5f);
  if (r0 < 0) r0 = 0;
  if (r1 > sc->H) r1 = sc->H;
  float span = y1 - y0 > 1e-6f ? y1 - y0 : 1e-6f;
  for (int y = r0; y < r1; y++) {
    float a = ((float)y + 0.5f - y0) / span;
    float xl = xl0 + a * (xl1 - xl0), xr = xr0 + a * (xr1 - xr0);
    int c0 = (int)ceilf(xl - 0.5f), c1 = (int)ceilf(xr - 0.5f);
    if (c0 < 0) c0 = 0;
    if (c1 > sc->W) c1 = sc->W;
    for (int x = c0; x < c1; x++) put(sc, x, y, cls, c);
  }
}

static void fill_rect(scene *sc, float x0, float y0, float x1, float y1, int cls, const float c[3]) {
  fill_trapezoid(sc, y0, y1, x0, x1, x0, x1, cls, c);
}

/* An ellipse whose radius wobbles with the angle by `bump` (tree crowns). */
static void fill_blob(scene *sc, float cx, float cy, float rx, float ry, float bump, float phase,
                      int cls, const float c[3]) {
  float m = 1.0f + 2.0f * bump;
  int x0 = (int)floorf(cx - rx * m), x1 = (int)ceilf(cx + rx * m);
  int y0 = (int)floorf(cy - ry * m), y1 = (int)ceilf(cy + ry * m);
  if (x0 < 0) x0 = 0;
  if (y0 < 0) y0 = 0;
  if (x1 > sc->W) x1 = sc->W;
  if (y1 > sc->H) y1 = sc->H;
  for (int y = y0; y < y1; y++)
    for (int x = x0; x < x1; x++) {
      float dx = ((float)x + 0.5f - cx) / rx, dy = ((float)y + 0.5f - cy) / ry;
      float r2 = dx * dx + dy * dy, lim = 1.0f;
      if (bump > 0.0f) {
        float th = atan2f(dy, dx);
        lim = 1.0f + bump * (sinf(5.0f * th + phase) + 0.6f * sinf(9.0f * th + 2.0f * phase));
      }
      if (r2 < lim * lim) put(sc, x, y, cls, c);
    }
}

/* ---- layout: sky, skyline, ground, facades ---- */
static void draw_sky(scene *sc) {
  const style *st = sc->st;
  for (int y = 0; y < sc->H; y++) {
    float a = clampf(((float)y + 0.5f) / (sc->yh > 1.0f ? sc->yh : 1.0f), 0.0f, 1.0f);
    float c[3];
    for (int k = 0; k < 3; k++)
      c[k] = (st->sky_top[k] + a * (st->sky_bottom[k] - st->sky_top[k])) * sc->pal[T2S_SYNTH_SKY][k] /
             st->palette[T2S_SYNTH_SKY][k];
    for (int x = 0; x < sc->W; x++) {
      /* Clouds: where low-frequency noise is high, blend towards white. */
      float n = lattice_at(&sc->low, (float)x, (float)y) + 0.5f * lattice_at(&sc->mid, (float)x, (float)y);
      float w = st->clouds * clampf(2.0f * n - 0.3f, 0.0f, 1.0f);
      float cc[3] = {c[0] + w * (250 - c[0]), c[1] + w * (250 - c[1]), c[2] + w * (252 - c[2])};
      put(sc, x, y, T2S_SYNTH_SKY, cc);
    }
  }
}

/* The far skyline: blocks standing on the horizon, beyond every modelled facade. */
static void draw_skyline(scene *sc, stream *s) {
  float x = unif(s, -0.1f, 0.0f) * (float)sc->W;
  while (x < (float)sc->W) {
    float w = unif(s, 0.03f, 0.12f) * (float)sc->W, h = unif(s, 0.01f, 0.12f) * (float)sc->H;
    int cls = chance(s, 0.7f) ? T2S_SYNTH_BUILDING : T2S_SYNTH_VEGETATION;
    float c[3], base[3];
    jittered(sc->pal[cls], 0.08f, s, base);
    hazed(sc, base, 3.0f * sc->st->fog_dist, c);
    if (cls == T2S_SYNTH_VEGETATION)
      fill_blob(sc, x + 0.5f * w, sc->yh, 0.5f * w, h, 0.1f, x, cls, c);
    else
      fill_rect(sc, x, sc->yh - h, x + w, sc->yh + 1.0f, cls, c);
    x += w;
  }
}

static float fract(float v) { return v - floorf(v); }

static void draw_ground(scene *sc) {
  const style *st = sc->st;
  int y0 = (int)ceilf(sc->yh - 0.5f);
  for (int y = y0 < 0 ? 0 : y0; y < sc->H; y++) {
    float t = ((float)y + 0.5f - sc->yh) / sc->S;
    if (t <= 0.0f) continue;
    float Z = 1.0f / t;
    for (int x = 0; x < sc->W; x++) {
      float X = ((float)x + 0.5f - sc->xv) * Z / sc->S, d = fabsf(X - sc->Xc);
      int cls;
      float c[3];
      if (d < sc->Rw) {
        cls = T2S_SYNTH_ROAD;
        memcpy(c, sc->pal[cls], sizeof c);
        /* dashed centre line, solid edge lines */
        int mark = (d < 0.05f && fract(Z / 3.0f) < 0.5f) || (d > sc->Rw - 0.14f && d < sc->Rw - 0.08f);
        if (mark) memcpy(c, st->marking, sizeof c);
      } else if (X >= sc->XL && X <= sc->XR) {
        cls = T2S_SYNTH_SIDEWALK;
        float k = d - sc->Rw < 0.07f ? 1.15f : 1.0f; /* the kerb */
        if (fract(X / st->tile) < 0.08f || fract(Z / st->tile) < 0.08f) k *= 1.0f - st->tile_contrast;
        for (int j = 0; j < 3; j++) c[j] = clampf(k * sc->pal[cls][j], 0, 255);
      } else {
        cls = T2S_SYNTH_VEGETATION; /* grass beyond the facades' gaps */
        for (int j = 0; j < 3; j++) c[j] = 0.85f * sc->pal[cls][j];
      }
      hazed(sc, c, Z, c);
      put(sc, x, y, cls, c);
    }
  }
}

/* Facade colour at (u along the facade, height Y): windows on buildings above the
 * ground floor, panel joints on walls. */
static void facade_colour(const scene *sc, const segment *g, float u, float Y, float Z, float out[3]) {
  const style *st = sc->st;
  float c[3];
  memcpy(c, g->col, sizeof c);
  if (g->cls == T2S_SYNTH_BUILDING && Y > 0.9f && Y < g->h - 0.2f) {
    float fu = fract((u + g->phase) / st->window_u), fv = fract(Y / st->window_v);
    if (fu > 0.3f && fu < 0.7f && fv > 0.3f && fv < 0.8f)
      for (int k = 0; k < 3; k++) c[k] += st->window_mix * (st->window[k] - c[k]);
  } else if (g->cls == T2S_SYNTH_WALL && fract((u + g->phase) / 0.9f) < 0.06f) {
    for (int k = 0; k < 3; k++) c[k] *= 0.8f;
  }
  hazed(sc, c, Z, out);
}

/* Height of a segment at depth Z: hedges and tree rows have a wavy top. */
static float segment_top(const segment *g, float Z) {
  if (g->cls != T2S_SYNTH_VEGETATION) return g->h;
  return g->h * (1.0f + 0.12f * sinf(2.1f * Z + g->phase) + 0.07f * sinf(5.3f * Z + 2.0f * g->phase));
}

/* A vertical facade plane at lateral X (one side of the street), made of segments
 * along the depth; drawn column by column: column x meets the plane at depth
 * Z = X S / (x - xv). */
static void draw_facade(scene *sc, float X, const segment *segs, int n) {
  for (int x = 0; x < sc->W; x++) {
    float t = ((float)x + 0.5f - sc->xv) / (X * sc->S);
    if (t <= 0.0f) continue;
    float Z = 1.0f / t, s = t * sc->S;
    const segment *g = NULL;
    for (int i = 0; i < n && !g; i++)
      if (Z >= segs[i].z0 && Z < segs[i].z1) g = &segs[i];
    if (!g || g->cls < 0) continue;
    float top = sc->yh + s * (1.0f - segment_top(g, Z)), base = sc->yh + s;
    int r0 = (int)ceilf(top - 0.5f), r1 = (int)ceilf(base - 0.5f);
    if (r0 < 0) r0 = 0;
    if (r1 > sc->H) r1 = sc->H;
    for (int y = r0; y < r1; y++) {
      float c[3];
      facade_colour(sc, g, Z, 1.0f - ((float)y + 0.5f - sc->yh) / s, Z, c);
      put(sc, x, y, g->cls, c);
    }
  }
}

/* Segments along the depth from z to zmax; class -1 is a gap (nothing there). */
static int make_segments(scene *sc, stream *s, float z, float zmax, int front, segment *out) {
  const style *st = sc->st;
  int n = 0;
  while (z < zmax && n < MAX_SEGS) {
    segment *g = &out[n++];
    float r = unif(s, 0.0f, 1.0f);
    g->z0 = z;
    g->z1 = z = z + unif(s, 2.0f, 10.0f) * (n == 1 ? 2.0f : 1.0f);
    g->phase = unif(s, 0.0f, 6.2832f);
    if (r < st->veg_facade) {
      g->cls = T2S_SYNTH_VEGETATION;
      g->h = unif(s, 1.3f, 3.2f);
    } else if (front && r < st->veg_facade + 0.14f) {
      g->cls = T2S_SYNTH_WALL;
      g->h = unif(s, 0.35f, 0.85f);
    } else if (front && r < st->veg_facade + 0.22f) {
      g->cls = -1;
      g->h = 0;
    } else {
      g->cls = T2S_SYNTH_BUILDING;
      g->h = unif(s, 2.5f, 9.0f);
    }
    if (g->cls >= 0) jittered(sc->pal[g->cls], 0.12f, s, g->col);
  }
  return n;
}

static void draw_street_end(scene *sc, stream *s, float XLb, float XRb) {
  if (sc->Zend <= 0.0f) return;
  segment g = {0, 0, sc->Hend, unif(s, 0.0f, 6.2832f),
               chance(s, sc->st->veg_facade) ? T2S_SYNTH_VEGETATION : T2S_SYNTH_BUILDING, {0, 0, 0}};
  jittered(sc->pal[g.cls], 0.12f, s, g.col);
  float sz = sc->S / sc->Zend;
  int x0 = (int)ceilf(sc->xv + XLb * sz - 0.5f), x1 = (int)ceilf(sc->xv + XRb * sz - 0.5f);
  for (int x = x0 < 0 ? 0 : x0; x < x1 && x < sc->W; x++) {
    float u = ((float)x + 0.5f - sc->xv) / sz;
    float top = sc->yh + sz * (1.0f - segment_top(&g, u)), base = sc->yh + sz;
    int r0 = (int)ceilf(top - 0.5f), r1 = (int)ceilf(base - 0.5f);
    for (int y = r0 < 0 ? 0 : r0; y < r1 && y < sc->H; y++) {
      float c[3];
      facade_colour(sc, &g, u, 1.0f - ((float)y + 0.5f - sc->yh) / sz, sc->Zend, c);
      put(sc, x, y, g.cls, c);
    }
  }
}

/* Camera, street and facades; returns nothing, fills the canvas far to near. */
static void draw_layout(scene *sc, stream *s) {
  float W = (float)sc->W, H = (float)sc->H;
  sc->yh = H * unif(s, 0.36f, 0.48f);
  sc->xv = W * (0.5f + unif(s, -0.12f, 0.12f));
  sc->S = (H - sc->yh) * unif(s, 0.9f, 1.1f) * (H / (W < H ? W : H));
  sc->Xc = unif(s, -0.5f, 0.5f);
  sc->Rw = unif(s, 1.3f, 2.4f);
  sc->XL = sc->Xc - sc->Rw - unif(s, 0.5f, 1.3f);
  sc->XR = sc->Xc + sc->Rw + unif(s, 0.5f, 1.3f);
  sc->Zend = chance(s, 0.45f) ? unif(s, 25.0f, 60.0f) : 0.0f;
  sc->Hend = unif(s, 1.5f, 7.0f);
  float zmax = sc->Zend > 0.0f ? sc->Zend : 200.0f;
  float XLb = sc->XL - unif(s, 2.0f, 6.0f), XRb = sc->XR + unif(s, 2.0f, 6.0f);

  draw_sky(sc);
  draw_skyline(sc, s);
  draw_ground(sc);
  segment segs[MAX_SEGS];
  int n = make_segments(sc, s, 0.3f, zmax, 0, segs);
  draw_facade(sc, XLb, segs, n);
  n = make_segments(sc, s, 0.3f, zmax, 0, segs);
  draw_facade(sc, XRb, segs, n);
  draw_street_end(sc, s, XLb, XRb);
  n = make_segments(sc, s, 0.3f, zmax, 1, segs);
  draw_facade(sc, sc->XL, segs, n);
  n = make_segments(sc, s, 0.3f, zmax, 1, segs);
  draw_facade(sc, sc->XR, segs, n);
}

/* ---- objects ---- */
typedef struct proj {
  float s, x, yh; /* pixels per unit at this depth, column of X, horizon row */
} proj;

static proj project(const scene *sc, float X, float Z) {
  proj p = {sc->S / Z, sc->xv + X * sc->S / Z, sc->yh};
  return p;
}
static float py(proj p, float Y) { return p.yh + p.s * (1.0f - Y); }
/* A world rectangle [X0, X1] x [Y0, Y1] (offsets from the object's X) at the object's depth. */
static void world_rect(scene *sc, proj p, float X0, float X1, float Y0, float Y1, int cls,
                       const float c[3]) {
  fill_rect(sc, p.x + X0 * p.s, py(p, Y1), p.x + X1 * p.s, py(p, Y0), cls, c);
}

static void draw_tree(scene *sc, const object *o) {
  proj p = project(sc, o->X, o->Z);
  world_rect(sc, p, -0.06f, 0.06f, 0.0f, o->h + 0.2f, T2S_SYNTH_VEGETATION, o->col[1]);
  fill_blob(sc, p.x, py(p, o->h + 0.6f * o->w), o->w * p.s, 0.9f * o->w * p.s, 0.1f, o->a,
            T2S_SYNTH_VEGETATION, o->col[0]);
}

static void draw_sign(scene *sc, proj p, float X, float Y, float r, int shape, const float face[3],
                      const float rim[3]) {
  int cls = T2S_SYNTH_TRAFFIC_SIGN;
  float cx = p.x + X * p.s, cy = py(p, Y), R = r * p.s;
  if (shape == 0) {
    fill_blob(sc, cx, cy, R, R, 0.0f, 0.0f, cls, rim);
    fill_blob(sc, cx, cy, 0.75f * R, 0.75f * R, 0.0f, 0.0f, cls, face);
  } else if (shape == 1) {
    fill_rect(sc, cx - R, cy - 0.8f * R, cx + R, cy + 0.8f * R, cls, face);
    fill_rect(sc, cx - R, cy - 0.1f * R, cx + R, cy + 0.1f * R, cls, rim);
  } else {
    fill_trapezoid(sc, cy - R, cy + 0.8f * R, cx, cx, cx - R, cx + R, cls, rim);
    fill_trapezoid(sc, cy - 0.5f * R, cy + 0.55f * R, cx, cx, cx - 0.6f * R, cx + 0.6f * R, cls, face);
  }
}

/* A pole, plain or with a sign (variant bit 0) and/or a traffic light on an arm
 * over the road (bit 1). o->a: attachment scale (the domain's small-object scale). */
static void draw_pole(scene *sc, const object *o) {
  proj p = project(sc, o->X, o->Z);
  float h = o->h, a = o->a;
  world_rect(sc, p, -0.5f * o->w, 0.5f * o->w, 0.0f, h, T2S_SYNTH_POLE, o->col[0]);
  if (o->variant & 2) {
    float arm = 0.9f * o->dir, lx = arm;
    world_rect(sc, p, arm < 0 ? arm : -0.02f, arm < 0 ? 0.02f : arm, h - 0.06f, h, T2S_SYNTH_POLE, o->col[0]);
    world_rect(sc, p, lx - 0.13f * a, lx + 0.13f * a, h - 0.06f - 0.6f * a, h - 0.02f,
               T2S_SYNTH_TRAFFIC_LIGHT, o->col[1]);
    /* one lit lamp: red at the top or green at the bottom (the sign's shape draw reused) */
    float lamp[3] = {255, 60, 40};
    if (o->shape == 1) { lamp[0] = 60; lamp[1] = 230; lamp[2] = 90; }
    float ly = h - 0.06f - (o->shape == 1 ? 0.48f : 0.12f) * a;
    fill_blob(sc, p.x + lx * p.s, py(p, ly), 0.08f * a * p.s, 0.08f * a * p.s, 0.0f, 0.0f,
              T2S_SYNTH_TRAFFIC_LIGHT, lamp);
  }
  if (o->variant & 1) {
    float y = (o->variant & 2) ? 0.62f * h : h - 0.3f * a;
    draw_sign(sc, p, 0.0f, y, 0.3f * a, o->shape, o->col[2], (const float[3]){235, 235, 235});
  }
}

static void draw_car(scene *sc, const object *o) {
  proj p = project(sc, o->X, o->Z);
  float w = o->w, h = o->h, hw = 0.5f * w;
  int cls = T2S_SYNTH_CAR, van = o->variant;
  float cab = van ? 0.45f : 0.58f, top = van ? 0.47f : 0.36f, bot = van ? 0.5f : 0.46f;
  world_rect(sc, p, -hw + 0.04f, -hw + 0.3f, 0.0f, 0.3f * h, cls, o->col[2]);
  world_rect(sc, p, hw - 0.3f, hw - 0.04f, 0.0f, 0.3f * h, cls, o->col[2]);
  world_rect(sc, p, -hw, hw, 0.14f * h, cab * h, cls, o->col[0]);
  fill_trapezoid(sc, py(p, h), py(p, cab * h), p.x - top * w * p.s, p.x + top * w * p.s,
                 p.x - bot * w * p.s, p.x + bot * w * p.s, cls, o->col[0]);
  fill_trapezoid(sc, py(p, 0.94f * h), py(p, (cab + 0.05f) * h), p.x - (top - 0.05f) * w * p.s,
                 p.x + (top - 0.05f) * w * p.s, p.x - (bot - 0.06f) * w * p.s,
                 p.x + (bot - 0.06f) * w * p.s, cls, o->col[1]);
  float tail[3] = {o->col[1][0] < 100 ? 230.0f : 150.0f, 20, 20};
  world_rect(sc, p, -hw + 0.02f, -hw + 0.16f, 0.4f * h, 0.5f * h, cls, tail);
  world_rect(sc, p, hw - 0.16f, hw - 0.02f, 0.4f * h, 0.5f * h, cls, tail);
  float plate[3] = {220, 220, 210};
  world_rect(sc, p, -0.15f, 0.15f, 0.24f * h, 0.33f * h, cls, plate);
}

static void draw_person(scene *sc, const object *o) {
  proj p = project(sc, o->X, o->Z);
  float h = o->h, st = o->a; /* stride: legs apart */
  int cls = T2S_SYNTH_PERSON;
  world_rect(sc, p, -0.12f * h - st, -0.02f * h, 0.0f, 0.48f * h, cls, o->col[1]);
  world_rect(sc, p, 0.02f * h, 0.12f * h + st, 0.0f, 0.48f * h, cls, o->col[1]);
  world_rect(sc, p, -0.14f * h, 0.14f * h, 0.46f * h, 0.82f * h, cls, o->col[0]);
  world_rect(sc, p, -0.19f * h, -0.14f * h, 0.5f * h, 0.8f * h, cls, o->col[0]);
  world_rect(sc, p, 0.14f * h, 0.19f * h, 0.5f * h, 0.8f * h, cls, o->col[0]);
  fill_blob(sc, p.x, py(p, 0.9f * h), 0.065f * h * p.s, 0.085f * h * p.s, 0.0f, 0.0f, cls, o->col[2]);
}

/* Depth of an object on the ground between znear and zfar (denser near the camera). */
static float object_depth(stream *s, const scene *sc, float znear, float zfar, float power) {
  if (sc->Zend > 0.0f && zfar > sc->Zend - 1.0f) zfar = sc->Zend - 1.0f;
  return znear + (zfar - znear) * powf(unif(s, 0.0f, 1.0f), power);
}

static void hazed_obj(const scene *sc, object *o, int k) { hazed(sc, o->col[k], o->Z, o->col[k]); }

static int add_trees_and_poles(scene *sc, stream *s, object *objs, int n) {
  const style *st = sc->st;
  for (int side = -1; side <= 1; side += 2) {
    float facade = side < 0 ? sc->XL : sc->XR, kerb = sc->Xc + side * sc->Rw;
    for (int k = poisson(s, st->trees); k > 0 && n < MAX_OBJECTS; k--) {
      object *o = &objs[n++];
      *o = (object){.kind = OBJ_TREE, .X = facade - side * unif(s, 0.25f, 0.5f),
                    .Z = object_depth(s, sc, 1.5f, 60.0f, 1.5f), .h = unif(s, 1.2f, 2.2f),
                    .w = unif(s, 0.7f, 1.4f), .a = unif(s, 0.0f, 6.2832f)};
      jittered(sc->pal[T2S_SYNTH_VEGETATION], 0.1f, s, o->col[0]);
      jittered(st->trunk, 0.1f, s, o->col[1]);
      hazed_obj(sc, o, 0);
      hazed_obj(sc, o, 1);
    }
    float thin_w = sc->thin ? 0.3f : 1.0f, thin_a = sc->thin ? 0.5f : 1.0f;
    for (int k = poisson(s, st->poles * (sc->thin ? 1.5f : 1.0f)); k > 0 && n < MAX_OBJECTS; k--) {
      object *o = &objs[n++];
      float r = unif(s, 0.0f, 1.0f);
      *o = (object){.kind = OBJ_POLE, .X = kerb + side * unif(s, 0.15f, 0.3f),
                    .Z = object_depth(s, sc, 1.5f, 50.0f, 1.5f), .h = unif(s, 2.4f, 4.2f),
                    .w = thin_w * unif(s, 0.07f, 0.12f), .a = thin_a * st->small * unif(s, 0.85f, 1.15f),
                    .dir = (float)-side, .variant = r < 0.4f ? 1 : (r < 0.65f ? 2 : (r < 0.8f ? 3 : 0)),
                    .shape = (int)unif(s, 0.0f, 2.999f)};
      jittered(sc->pal[T2S_SYNTH_POLE], 0.1f, s, o->col[0]);
      jittered(sc->pal[T2S_SYNTH_TRAFFIC_LIGHT], 0.1f, s, o->col[1]);
      jittered(sc->pal[T2S_SYNTH_TRAFFIC_SIGN], 0.1f, s, o->col[2]);
      for (int c = 0; c < 3; c++) hazed_obj(sc, o, c);
    }
  }
  return n;
}

static int add_cars_and_persons(scene *sc, stream *s, object *objs, int n) {
  const style *st = sc->st;
  for (int k = poisson(s, st->cars); k > 0 && n < MAX_OBJECTS; k--) {
    object *o = &objs[n++];
    float lane = chance(s, 0.35f) ? (chance(s, 0.5f) ? -1.0f : 1.0f) * (sc->Rw - 0.75f)
                                  : unif(s, -sc->Rw + 0.75f, sc->Rw - 0.75f);
    int van = chance(s, 0.15f);
    *o = (object){.kind = OBJ_CAR, .X = sc->Xc + lane, .Z = object_depth(s, sc, 2.2f, 40.0f, 2.0f),
                  .w = unif(s, 1.2f, 1.45f), .h = van ? unif(s, 1.45f, 1.8f) : unif(s, 0.95f, 1.25f),
                  .variant = van};
    object_colour(st, s, o->col[0]);
    float glass = unif(s, 0.0f, 1.0f) < 0.5f ? 0.25f : 0.45f;
    for (int c = 0; c < 3; c++) {
      o->col[1][c] = glass * st->window[c];
      o->col[2][c] = 25.0f;
    }
    for (int c = 0; c < 3; c++) hazed_obj(sc, o, c);
  }
  for (int k = poisson(s, st->persons); k > 0 && n < MAX_OBJECTS; k--) {
    object *o = &objs[n++];
    int side = chance(s, 0.5f) ? -1 : 1;
    float X = chance(s, 0.15f) ? sc->Xc + unif(s, -sc->Rw, sc->Rw)
                               : (side < 0 ? unif(s, sc->XL + 0.2f, sc->Xc - sc->Rw - 0.1f)
                                           : unif(s, sc->Xc + sc->Rw + 0.1f, sc->XR - 0.2f));
    *o = (object){.kind = OBJ_PERSON, .X = X, .Z = object_depth(s, sc, 1.8f, 30.0f, 1.5f),
                  .h = st->small * unif(s, 1.05f, 1.35f), .a = unif(s, 0.0f, 0.08f)};
    object_colour(st, s, o->col[0]);
    jittered(sc->pal[T2S_SYNTH_PERSON], 0.2f, s, o->col[1]);
    jittered(st->skin, 0.1f, s, o->col[2]);
    for (int c = 0; c < 3; c++) hazed_obj(sc, o, c);
  }
  return n;
}

/* Far to near; equal depths keep their creation order (qsort is not stable). */
static int cmp_depth(const void *a, const void *b) {
  const object *x = a, *y = b;
  if (x->Z != y->Z) return x->Z < y->Z ? 1 : -1;
  return (x->id > y->id) - (x->id < y->id);
}

static void draw_objects(scene *sc, stream *s) {
  object objs[MAX_OBJECTS];
  int n = add_trees_and_poles(sc, s, objs, 0);
  n = add_cars_and_persons(sc, s, objs, n);
  for (int i = 0; i < n; i++) objs[i].id = i;
  qsort(objs, (size_t)n, sizeof *objs, cmp_depth);
  for (int i = 0; i < n; i++) {
    switch (objs[i].kind) {
      case OBJ_TREE: draw_tree(sc, &objs[i]); break;
      case OBJ_POLE: draw_pole(sc, &objs[i]); break;
      case OBJ_CAR: draw_car(sc, &objs[i]); break;
      case OBJ_PERSON: draw_person(sc, &objs[i]); break;
    }
  }
}

/* ---- appearance: textures, light, blur, sensor noise ---- */

/* Per-pixel texture and lighting: v = (c (1 + a_low n_low + a_mid n_mid + a_px n_px) g - 128) k + 128,
 * with n_* value noise at two scales and white noise, g the per-channel gain
 * (brightness and colour temperature), k the contrast. */
static void shade(scene *sc, const t2s_synth_cfg *cfg, int domain, uint64_t index) {
  const style *st = sc->st;
  t2s_rng_key key = t2s_rng_key_make(cfg->seed, (uint64_t)domain, index, P_TEXTURE + 100);
  float k = st->contrast;
  for (int y = 0; y < sc->H; y++)
    for (int x = 0; x < sc->W; x += 4) {
      uint32_t w[4];
      t2s_philox4x32(key, ((uint64_t)y << 32) | (uint64_t)x, w);
      for (int j = 0; j < 4 && x + j < sc->W; j++) {
        size_t p = (size_t)y * (size_t)sc->W + (size_t)(x + j);
        int c = sc->label[p];
        float npx = (float)(w[j] >> 8) * (2.0f / 16777216.0f) - 1.0f;
        float m = 1.0f + st->tex_low[c] * lattice_at(&sc->low, (float)(x + j), (float)y) +
                  st->tex_mid[c] * lattice_at(&sc->mid, (float)(x + j), (float)y) + st->tex_px[c] * npx;
        float *v = sc->col + 3 * p;
        for (int ch = 0; ch < 3; ch++) v[ch] = (v[ch] * m * sc->gain[ch] - 128.0f) * k + 128.0f;
      }
    }
}

/* Separable [1 2 1] / 4 blur with clamped borders (the target camera's optics). */
static void blur(scene *sc, float *tmp) {
  int W = sc->W, H = sc->H;
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) {
      int xl = x > 0 ? x - 1 : 0, xr = x < W - 1 ? x + 1 : W - 1;
      const float *r = sc->col + 3 * (size_t)y * (size_t)W;
      for (int c = 0; c < 3; c++)
        tmp[3 * ((size_t)y * W + x) + c] = 0.25f * (r[3 * xl + c] + 2.0f * r[3 * x + c] + r[3 * xr + c]);
    }
  for (int y = 0; y < H; y++) {
    int yu = y > 0 ? y - 1 : 0, yd = y < H - 1 ? y + 1 : H - 1;
    for (int x = 0; x < W; x++)
      for (int c = 0; c < 3; c++)
        sc->col[3 * ((size_t)y * W + x) + c] =
            0.25f * (tmp[3 * ((size_t)yu * W + x) + c] + 2.0f * tmp[3 * ((size_t)y * W + x) + c] +
                     tmp[3 * ((size_t)yd * W + x) + c]);
  }
}

/* Sensor noise and quantisation. The noise of a channel is the sum of two 16-bit
 * uniforms (a triangular distribution, variance 1/6 of a unit range) scaled to sd
 * `noise`, plus a shared luminance term of the same size. */
static void expose(const scene *sc, const t2s_synth_cfg *cfg, int domain, uint64_t index, uint8_t *rgb) {
  t2s_rng_key key = t2s_rng_key_make(cfg->seed, (uint64_t)domain, index, P_SENSOR);
  const float scale = sc->st->noise * 2.449490f / 65536.0f; /* sqrt(6): sd 1 per unit */
  size_t n = (size_t)sc->W * (size_t)sc->H;
  for (size_t p = 0; p < n; p++) {
    uint32_t w[4];
    t2s_philox4x32(key, p, w);
    float lum = ((float)(w[3] & 0xffff) + (float)(w[3] >> 16) - 65535.0f) * scale;
    for (int c = 0; c < 3; c++) {
      float e = ((float)(w[c] & 0xffff) + (float)(w[c] >> 16) - 65535.0f) * scale;
      float v = sc->col[3 * p + c] + 0.7f * (e + lum);
      rgb[3 * p + c] = (uint8_t)clampf(floorf(v + 0.5f), 0.0f, 255.0f);
    }
  }
}

/* Per-image palette, lighting and noise lattices. */
static void prepare(scene *sc, const t2s_synth_cfg *cfg, int domain, uint64_t index) {
  const style *st = sc->st;
  stream s = stream_make(cfg, domain, index, P_COLOUR);
  for (int c = 0; c < NC; c++) jittered(st->palette[c], st->jitter, &s, sc->pal[c]);
  memcpy(sc->fog, st->sky_bottom, sizeof sc->fog);
  float g = st->gain * unif(&s, 0.88f, 1.12f), warm = st->warm + unif(&s, -0.04f, 0.04f);
  sc->gain[0] = g * (1.0f + warm);
  sc->gain[1] = g;
  sc->gain[2] = g * (1.0f - warm);

  stream t = stream_make(cfg, domain, index, P_TEXTURE);
  float big = (float)(sc->W > sc->H ? sc->W : sc->H);
  sc->low.cell = big / 4.0f;
  sc->mid.cell = big / 40.0f;
  lattice *ls[2] = {&sc->low, &sc->mid};
  for (int i = 0; i < 2; i++) {
    ls[i]->gw = (int)((float)sc->W / ls[i]->cell) + 2;
    ls[i]->gh = (int)((float)sc->H / ls[i]->cell) + 2;
    lattice_fill(ls[i], &t);
  }
}

int t2s_synth_class_count(void) { return NC; }

const char *t2s_synth_class_name(int c) { return c >= 0 && c < NC ? CLASS_NAMES[c] : NULL; }

const char *t2s_synth_domain_name(t2s_synth_domain domain) {
  return domain == T2S_SYNTH_SOURCE ? "synthetic_source" : "synthetic_target";
}

const char *t2s_synth_style_name(int style) {
  return style >= 0 && style < T2S_SYNTH_NUM_STYLES ? DG_STYLE_NAMES[style] : NULL;
}

int t2s_synth_style_find(const char *name) {
  for (int k = 0; name != NULL && k < T2S_SYNTH_NUM_STYLES; k++)
    if (strcmp(name, DG_STYLE_NAMES[k]) == 0) return k;
  return -1;
}

static t2s_status check_cfg(const t2s_synth_cfg *cfg, const uint8_t *rgb, t2s_error *err) {
  if (!cfg || !rgb)
    return t2s_error_set(err, T2S_ERR_INVALID, "t2s_synth_draw: cfg and rgb must not be NULL");
  if (cfg->width < T2S_SYNTH_MIN_SIZE || cfg->width > T2S_SYNTH_MAX_SIZE ||
      cfg->height < T2S_SYNTH_MIN_SIZE || cfg->height > T2S_SYNTH_MAX_SIZE)
    return t2s_error_set(err, T2S_ERR_INVALID,
                         "t2s_synth_draw: image size %d x %d is outside %d..%d pixels per side",
                         cfg->width, cfg->height, T2S_SYNTH_MIN_SIZE, T2S_SYNTH_MAX_SIZE);
  return T2S_OK;
}

/* Draws one image in style st; `domain` keys every random stream (0 source, 1 target,
 * 2 + k style k), so the styles' scenes are their own, not the target's repainted. */
static t2s_status draw_scene(const t2s_synth_cfg *cfg, const style *st, int domain, uint64_t index,
                             uint8_t *rgb, uint8_t *label, t2s_error *err) {
  scene sc = {.W = cfg->width, .H = cfg->height, .st = st, .thin = cfg->thin != 0};
  size_t n = (size_t)sc.W * (size_t)sc.H;
  /* Lattice cells are at least max(W, H) / 40 wide: at most 42 x 42 points each. */
  const size_t nlat = 42 * 42;
  float *col = malloc(2 * 3 * n * sizeof(float) + 2 * nlat * sizeof(float));
  uint8_t *lab = label ? label : malloc(n);
  if (!col || !lab) {
    free(col);
    if (!label) free(lab);
    return t2s_error_set(err, T2S_ERR_NOMEM, "t2s_synth_draw: no memory for a %d x %d image scratch",
                         sc.W, sc.H);
  }
  sc.col = col;
  sc.label = lab;
  sc.low.v = col + 6 * n;
  sc.mid.v = sc.low.v + nlat;
  prepare(&sc, cfg, domain, index);
  stream layout = stream_make(cfg, domain, index, P_LAYOUT);
  stream objects = stream_make(cfg, domain, index, P_OBJECTS);
  draw_layout(&sc, &layout);
  draw_objects(&sc, &objects);
  shade(&sc, cfg, domain, index);
  for (int i = 0; i < sc.st->blur; i++) blur(&sc, col + 3 * n);
  expose(&sc, cfg, domain, index, rgb);
  free(col);
  if (!label) free(lab);
  return T2S_OK;
}

t2s_status t2s_synth_draw(const t2s_synth_cfg *cfg, t2s_synth_domain domain, uint64_t index,
                          uint8_t *rgb, uint8_t *label, t2s_error *err) {
  t2s_status st = check_cfg(cfg, rgb, err);
  if (st != T2S_OK) return st;
  if (domain != T2S_SYNTH_SOURCE && domain != T2S_SYNTH_TARGET)
    return t2s_error_set(err, T2S_ERR_INVALID, "t2s_synth_draw: unknown domain %d (0 source, 1 target)",
                         (int)domain);
  return draw_scene(cfg, &STYLES[domain], (int)domain, index, rgb, label, err);
}

t2s_status t2s_synth_draw_style(const t2s_synth_cfg *cfg, int style_index, uint64_t index,
                                uint8_t *rgb, uint8_t *label, t2s_error *err) {
  t2s_status st = check_cfg(cfg, rgb, err);
  if (st != T2S_OK) return st;
  if (style_index < 0 || style_index >= T2S_SYNTH_NUM_STYLES)
    return t2s_error_set(err, T2S_ERR_INVALID, "t2s_synth_draw_style: unknown style %d (0..%d: "
                         "fog, night, snow, storm)", style_index, T2S_SYNTH_NUM_STYLES - 1);
  style s;
  dg_style(style_index, &s);
  return draw_scene(cfg, &s, 2 + style_index, index, rgb, label, err);
}
