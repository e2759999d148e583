/* Winograd F(4x4, 3x3) convolutions for the CPU conv2d slot (Lavin & Gray, "Fast
 * Algorithms for Convolutional Neural Networks", 2016), forward, backward-data and
 * backward-weights. On a 2-core AVX2 machine oneDNN's direct kernels already run near
 * the FMA peak, so the only way to make the 3x3 convolutions of ResNet / DeepLab
 * faster is fewer multiplies: a 4x4 output tile costs 36 products per (input, output)
 * channel pair instead of 16 * 9 = 144.
 *
 * For a 6x6 input tile d and a 3x3 kernel g (interpolation points 0, +-1, +-2, inf):
 *   Y (4x4) = A^T [ (G g G^T) .* (B^T d B) ] A
 * Over all channels and tiles this is, per position p of the 6x6 tile (36 of them):
 *   U[p] (Cout x Cin) = (G g G^T)[p]        the transformed weights
 *   V[p] (Cin x T)    = (B^T d B)[p]        the input tiles, T of them at a time
 *   M[p] (Cout x T)   = U[p] V[p]           36 GEMMs
 *   y tile            = A^T m A             (+ bias)
 * The backward passes are the transposes of the same linear maps:
 *   dM[p]             = (A dy A^T)[p]       from each 4x4 tile of dy
 *   dV[p] (Cin x T)   = U[p]^T dM[p],  dx tile += B dV B^T   (tiles overlap: scatter-add)
 *   dU[p] (Cout x Cin)= dM[p] V[p]^T,  dW = G^T dU G         (the GEMM sums over tiles)
 * The tiles go through these in units (an image, or a block of its tiles) so that V, M,
 * dM and dV stay under a fixed budget (see "chunks" below).
 *
 * Dilation. A 3x3 convolution with dilation d and padding d (stride 1) splits into
 * d x d interleaved sub-images: y[d i + a, d j + b] = sum_k W[k] x[d (i + kh - 1) + a,
 * d (j + kw - 1) + b], an undilated 3x3 convolution with padding 1 of the sub-image
 * x_ab[i, j] = x[d i + a, d j + b] (zero outside the image). Tiles are cut per
 * sub-image and gathered / scattered with stride d, so no space-to-batch copy is made.
 * The dilation may differ between the two dimensions.
 *
 * When. A sub-image of length n needs ceil(n / 4) tiles per dimension; Winograd is
 * taken when 36 x tiles is well below the 9 H W products of the direct convolution
 * (WINO_MAX_COST, measured below). Small sub-images waste most of their 6x6 tile, so
 * the large-dilation ASPP branches at 32x32 stay with oneDNN.
 *
 * Numerics. The transforms multiply by up to 8 (A) and 5 (B) and G has 1/6, 1/24:
 * results differ from a direct convolution by ~1e-6 .. 1e-5 relative to the output's
 * scale (more than the direct kernels' summation-order differences). Everything is
 * computed in a fixed order (one thread per plane, single-threaded GEMMs per
 * position), so results do not depend on the thread count.
 *
 * Layout. The transforms handle L = 8 tiles (or input channels) at once, the lane
 * index innermost, so that the 6x6 arithmetic vectorises and V, M, U are read and
 * written 8 contiguous floats at a time. */
#include "core/ops/conv2d_winograd.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#ifdef T2S_HAVE_DNNL
#include <dnnl.h>
#endif

/* The cost rule. Winograd's multiplies, 36 per tile and channel pair, plus its
 * transforms, about WINO_TRANSFORM_MACS multiply-adds' worth of time per transformed
 * value (36 per tile and input or output channel; memory-bound, so costed by
 * measurement rather than by their flops), must be at most WINO_MAX_COST of the direct
 * convolution's 9 H W per channel pair:
 *   36 tiles (Cin Cout + WINO_TRANSFORM_MACS (Cin + Cout)) <= WINO_MAX_COST 9 H W Cin Cout
 * ResNet-50's body at 256x256 (64..512 channels, dilation 1, 2, 4 at 64..32 pixels)
 * comes to 0.27-0.54 and is chosen; the ASPP branches (2048 -> 19 channels, dilation 6+)
 * come to 1.3+ and are not: with 19 outputs the input transform of 2048 channels costs
 * more than the GEMMs save (measured: slower than oneDNN). */
#define WINO_MAX_COST 0.6
#define WINO_TRANSFORM_MACS 25.0
/* The GEMMs run per image with one column per tile: below 16 tiles an image (maps of
 * 12x12 and 8x8, the synthetic demo's ResNet-18 at 64x64 crops) they are too narrow to
 * run near the peak, and Winograd measured 1.4-2.2x slower than oneDNN there (1 thread:
 * 128 -> 128 channels at 12x12 4.4 vs 6.4 ms, at 8x8 x2 3.6 vs 7.9 ms forward + backward)
 * while from 16 tiles on it was faster (64 -> 64 at 16x16 x2: 4.0 vs 2.7 ms). */
#define WINO_MIN_TILES 16

enum { L = 8, P = 36 }; /* lanes per transform; positions of a 6x6 tile */

/* ---- switch ---- */

/* -1: not read from the environment yet; 0 off; 1 on (the cost rule); 2 every shape
 * Winograd can run, whatever it costs (tests) */
static int wino_state = -1;
static long wino_calls;

int t2s_conv2d_winograd_enabled(void) {
  if (wino_state < 0) {
    const char *v = getenv("T2S_WINOGRAD");
    wino_state = !(v && (strcmp(v, "off") == 0 || strcmp(v, "0") == 0));
    if (v && strcmp(v, "all") == 0) wino_state = 2; /* every shape it can run: experiments */
  }
  return wino_state;
}

int t2s_conv2d_set_winograd(int on) {
  int old = t2s_conv2d_winograd_enabled();
  wino_state = on < 0 ? 0 : on > 2 ? 1 : on;
  return old;
}

long t2s_conv2d_winograd_calls(void) { return __atomic_load_n(&wino_calls, __ATOMIC_RELAXED); }

/* ---- geometry ---- */

typedef struct wino_geom {
  int64_t n, c, k, h, w; /* images, input / output channels, height, width */
  int64_t dh, dw;        /* dilation = padding */
  int64_t tiles;         /* tiles of one image, over all dh x dw sub-images */
} wino_geom;

/* One tile: the top-left pixel of its 6x6 input window in image coordinates (may be
 * outside the image, up to one dilation step before it) and whether the whole window
 * lies inside (then its gathers need no bounds tests). Output pixel (r, c) of the 4x4
 * tile is image pixel (r0 + (r + 1) dh, c0 + (c + 1) dw). */
typedef struct wino_tile {
  int32_t r0, c0, inside;
} wino_tile;

/* Tiles along one dimension of length n with dilation d: sub-image a has
 * ceil((n - a) / d) pixels and needs a quarter of that (rounded up) tiles. */
static int64_t tiles_along(int64_t n, int64_t d) {
  int64_t t = 0;
  for (int64_t a = 0; a < d && a < n; a++) t += ((n - a + d - 1) / d + 3) / 4;
  return t;
}

int t2s_conv2d_winograd_chosen(const t2s_tensor *x, const t2s_tensor *w,
                               const t2s_conv2d_args *a) {
  if (x->dtype != T2S_F32 || w->dtype != T2S_F32 || x->ndim != 4 || w->ndim != 4) return 0;
  if (a->groups != 1 || w->shape[2] != 3 || w->shape[3] != 3 || a->stride_h != 1 ||
      a->stride_w != 1 || a->pad_h != a->dil_h || a->pad_w != a->dil_w)
    return 0;
  int64_t h = x->shape[2], wd = x->shape[3];
  /* the tile table holds int32 coordinates */
  if (h <= 0 || wd <= 0 || h > (1 << 24) || wd > (1 << 24)) return 0;
  if (t2s_conv2d_winograd_enabled() == 2) return 1;
  double cin = (double)x->shape[1], cout = (double)w->shape[0];
  double tiles = (double)tiles_along(h, a->dil_h) * (double)tiles_along(wd, a->dil_w);
  if (tiles < WINO_MIN_TILES) return 0;
  double wino = 36.0 * tiles * (cin * cout + WINO_TRANSFORM_MACS * (cin + cout));
  return wino <= WINO_MAX_COST * 9.0 * (double)h * (double)wd * cin * cout;
}

static void geom_make(wino_geom *g, const t2s_node *node) {
  const t2s_tensor *x = node->in[0], *w = node->in[1];
  const t2s_conv2d_args *a = node->args;
  g->n = x->shape[0], g->c = x->shape[1], g->h = x->shape[2], g->w = x->shape[3];
  g->k = w->shape[0];
  g->dh = a->dil_h, g->dw = a->dil_w;
  g->tiles = tiles_along(g->h, g->dh) * tiles_along(g->w, g->dw);
}

/* The tiles of one image, sub-image by sub-image, row-major inside each. */
static void tile_table(const wino_geom *g, wino_tile *tab) {
  int64_t q = 0;
  for (int64_t a = 0; a < g->dh && a < g->h; a++) {
    int64_t th = ((g->h - a + g->dh - 1) / g->dh + 3) / 4;
    for (int64_t b = 0; b < g->dw && b < g->w; b++) {
      int64_t tw = ((g->w - b + g->dw - 1) / g->dw + 3) / 4;
      for (int64_t i = 0; i < th; i++)
        for (int64_t j = 0; j < tw; j++, q++) {
          int64_t r0 = g->dh * (4 * i - 1) + a, c0 = g->dw * (4 * j - 1) + b;
          tab[q].r0 = (int32_t)r0, tab[q].c0 = (int32_t)c0;
          tab[q].inside = r0 >= 0 && r0 + 5 * g->dh < g->h && c0 >= 0 && c0 + 5 * g->dw < g->w;
        }
    }
  }
}

/* ---- the transforms ----
 * Each 1-d transform maps a vector of L-lane elements, element i at in + i si, to
 * out + i so. Written out from the matrices so that zeros cost nothing:
 *   B^T = [4  0 -5  0 1 0]   G = [ 1/4     0    0 ]   A^T = [1 1  1 1  1 0]
 *         [0 -4 -4  1 1 0]       [-1/6  -1/6 -1/6 ]         [0 1 -1 2 -2 0]
 *         [0  4 -4 -1 1 0]       [-1/6   1/6 -1/6 ]         [0 1  1 4  4 0]
 *         [0 -2 -1  2 1 0]       [ 1/24 1/12  1/6 ]         [0 1 -1 8 -8 1]
 *         [0  2 -1 -2 1 0]       [ 1/24 -1/12 1/6 ]
 *         [0  4  0 -5 0 1]       [ 0     0    1   ]
 * The backward passes use the transposed maps B, G^T and A. */

/* B^T d: 6 -> 6 (input tiles) */
static inline void bt_1d(const float *restrict in, int si, float *restrict out, int so) {
  for (int l = 0; l < L; l++) {
    float d0 = in[l], d1 = in[si + l], d2 = in[2 * si + l], d3 = in[3 * si + l],
          d4 = in[4 * si + l], d5 = in[5 * si + l];
    out[l] = 4.0f * d0 - 5.0f * d2 + d4;
    out[so + l] = -4.0f * d1 - 4.0f * d2 + d3 + d4;
    out[2 * so + l] = 4.0f * d1 - 4.0f * d2 - d3 + d4;
    out[3 * so + l] = -2.0f * d1 - d2 + 2.0f * d3 + d4;
    out[4 * so + l] = 2.0f * d1 - d2 - 2.0f * d3 + d4;
    out[5 * so + l] = 4.0f * d1 - 5.0f * d3 + d5;
  }
}

/* B v: 6 -> 6 (the transpose, for dx) */
static inline void b_1d(const float *restrict in, int si, float *restrict out, int so) {
  for (int l = 0; l < L; l++) {
    float v0 = in[l], v1 = in[si + l], v2 = in[2 * si + l], v3 = in[3 * si + l],
          v4 = in[4 * si + l], v5 = in[5 * si + l];
    out[l] = 4.0f * v0;
    out[so + l] = -4.0f * v1 + 4.0f * v2 - 2.0f * v3 + 2.0f * v4 + 4.0f * v5;
    out[2 * so + l] = -5.0f * v0 - 4.0f * v1 - 4.0f * v2 - v3 - v4;
    out[3 * so + l] = v1 - v2 + 2.0f * v3 - 2.0f * v4 - 5.0f * v5;
    out[4 * so + l] = v0 + v1 + v2 + v3 + v4;
    out[5 * so + l] = v5;
  }
}

/* G g: 3 -> 6 (weights) */
static inline void g_1d(const float *restrict in, int si, float *restrict out, int so) {
  for (int l = 0; l < L; l++) {
    float g0 = in[l], g1 = in[si + l], g2 = in[2 * si + l];
    out[l] = g0 * (1.0f / 4.0f);
    out[so + l] = (g0 + g1 + g2) * (-1.0f / 6.0f);
    out[2 * so + l] = (g0 - g1 + g2) * (-1.0f / 6.0f);
    out[3 * so + l] = g0 * (1.0f / 24.0f) + g1 * (1.0f / 12.0f) + g2 * (1.0f / 6.0f);
    out[4 * so + l] = g0 * (1.0f / 24.0f) - g1 * (1.0f / 12.0f) + g2 * (1.0f / 6.0f);
    out[5 * so + l] = g2;
  }
}

/* G^T u: 6 -> 3 (the transpose, for dW) */
static inline void gt_1d(const float *restrict in, int si, float *restrict out, int so) {
  for (int l = 0; l < L; l++) {
    float u0 = in[l], u1 = in[si + l], u2 = in[2 * si + l], u3 = in[3 * si + l],
          u4 = in[4 * si + l], u5 = in[5 * si + l];
    out[l] = u0 * (1.0f / 4.0f) - (u1 + u2) * (1.0f / 6.0f) + (u3 + u4) * (1.0f / 24.0f);
    out[so + l] = (u2 - u1) * (1.0f / 6.0f) + (u3 - u4) * (1.0f / 12.0f);
    out[2 * so + l] = (u3 + u4 - u1 - u2) * (1.0f / 6.0f) + u5;
  }
}

/* A^T m: 6 -> 4 (output tiles) */
static inline void at_1d(const float *restrict in, int si, float *restrict out, int so) {
  for (int l = 0; l < L; l++) {
    float m0 = in[l], m1 = in[si + l], m2 = in[2 * si + l], m3 = in[3 * si + l],
          m4 = in[4 * si + l], m5 = in[5 * si + l];
    float s12 = m1 + m2, d12 = m1 - m2, s34 = m3 + m4, d34 = m3 - m4;
    out[l] = m0 + s12 + s34;
    out[so + l] = d12 + 2.0f * d34;
    out[2 * so + l] = s12 + 4.0f * s34;
    out[3 * so + l] = d12 + 8.0f * d34 + m5;
  }
}

/* A y: 4 -> 6 (the transpose, for dy) */
static inline void a_1d(const float *restrict in, int si, float *restrict out, int so) {
  for (int l = 0; l < L; l++) {
    float y0 = in[l], y1 = in[si + l], y2 = in[2 * si + l], y3 = in[3 * si + l];
    float e = y0 + y2, o = y1 + y3, e4 = y0 + 4.0f * y2, o2 = 2.0f * y1 + 8.0f * y3;
    out[l] = y0;
    out[so + l] = e + o;
    out[2 * so + l] = e - o;
    out[3 * so + l] = e4 + o2;
    out[4 * so + l] = e4 - o2;
    out[5 * so + l] = y3;
  }
}

/* The 2-d transform out = T in T^T of an nin x nin tile of L-lane elements (layout
 * [nin][nin][L]) into nout x nout: the 1-d map down every column, then along every row. */
#define TRANSFORM_2D(name, op, nin, nout)                                                   \
  static void name(const float *restrict in, float *restrict out) {                        \
    float tmp[(nout) * (nin) * L];                                                          \
    for (int j = 0; j < (nin); j++) op(in + j * L, (nin) * L, tmp + j * L, (nin) * L);     \
    for (int i = 0; i < (nout); i++) op(tmp + i * (nin) * L, L, out + i * (nout) * L, L); \
  }
TRANSFORM_2D(bt_2d, bt_1d, 6, 6) /* B^T d B */
TRANSFORM_2D(b_2d, b_1d, 6, 6)   /* B dv B^T */
TRANSFORM_2D(g_2d, g_1d, 3, 6)   /* G g G^T */
TRANSFORM_2D(gt_2d, gt_1d, 6, 3) /* G^T du G */
TRANSFORM_2D(at_2d, at_1d, 6, 4) /* A^T m A */
TRANSFORM_2D(a_2d, a_1d, 4, 6)   /* A dy A^T */

/* Loads positions [0, np) of lanes [0, cnt) from src + p ps (contiguous lanes), the
 * other lanes zero; stores the reverse. */
static void load_lanes(float *restrict buf, int np, const float *restrict src, int64_t ps,
                       int cnt) {
  for (int p = 0; p < np; p++) {
    const float *s = src + p * ps;
    float *b = buf + p * L;
    if (cnt == L) {
      memcpy(b, s, L * sizeof(float));
    } else {
      for (int l = 0; l < L; l++) b[l] = l < cnt ? s[l] : 0.0f;
    }
  }
}

static void store_lanes(const float *restrict buf, int np, float *restrict dst, int64_t ps,
                        int cnt) {
  for (int p = 0; p < np; p++) memcpy(dst + p * ps, buf + p * L, (size_t)cnt * sizeof(float));
}

/* ---- chunks ----
 * The scratch of the tiles (V, M, dM, dV: 36 x channels x tiles floats) is not made
 * for the whole batch at once: the tiles are processed in units, a unit being one
 * image's tiles or, when they do not fit the budget, a block of them. The block size
 * depends only on the image's geometry (channels and tiles), never on the batch, so an
 * image's GEMMs (and so its results) are the same whatever batch it came in. An image
 * of T tiles and C = max(Cin, Cout) channels takes 36 C 4 B per tile: when all T fit
 * the budget the unit is the image, and several whole images go together (a group)
 * while they fit; otherwise the image is cut into ceil(T / Tmax) blocks of equal size
 * (rounded up to L tiles), Tmax the tiles that fit, one block per group. */
#define WINO_CHUNK_BYTES ((size_t)32 << 20)

static size_t chunk_bytes; /* 0: not set (T2S_WINOGRAD_CHUNK_MIB or WINO_CHUNK_BYTES) */

static size_t chunk_budget(void) {
  if (chunk_bytes == 0) {
    const char *v = getenv("T2S_WINOGRAD_CHUNK_MIB"); /* experiments */
    long mib = v ? atol(v) : 0;
    chunk_bytes = mib > 0 ? (size_t)mib << 20 : WINO_CHUNK_BYTES;
  }
  return chunk_bytes;
}

size_t t2s_conv2d_winograd_set_chunk_bytes(size_t bytes) {
  size_t old = chunk_budget();
  chunk_bytes = bytes;
  return old;
}

typedef struct wino_chunks {
  int64_t tc;    /* tiles per unit (the last unit of an image may have fewer) */
  int64_t nch;   /* units per image */
  int64_t per;   /* units per group (1 when an image is cut) */
  int64_t units; /* over the batch: n nch */
} wino_chunks;

static void chunks_make(const wino_geom *g, wino_chunks *ch) {
  int64_t chans = g->c > g->k ? g->c : g->k;
  int64_t tmax = (int64_t)(chunk_budget() / ((size_t)P * (size_t)chans * sizeof(float)));
  tmax = tmax / L * L;
  if (tmax < L) tmax = L;
  if (g->tiles <= tmax) {
    ch->tc = g->tiles, ch->nch = 1;
    ch->per = tmax / g->tiles;
  } else {
    int64_t nch = (g->tiles + tmax - 1) / tmax;
    ch->tc = ((g->tiles + nch - 1) / nch + L - 1) / L * L;
    ch->nch = (g->tiles + ch->tc - 1) / ch->tc;
    ch->per = 1;
  }
  ch->units = g->n * ch->nch;
  if (ch->per > ch->units) ch->per = ch->units;
  if (ch->per < 1) ch->per = 1;
}

/* Unit u: image *n, tiles [*ts, *ts + return value) of it. */
static int64_t unit_span(const wino_geom *g, const wino_chunks *ch, int64_t u, int64_t *n,
                         int64_t *ts) {
  *n = u / ch->nch;
  *ts = (u % ch->nch) * ch->tc;
  return g->tiles - *ts < ch->tc ? g->tiles - *ts : ch->tc;
}

/* A group: units [u0, u0 + nu); unit u0 + i has columns [i tc, i tc + its tiles) of
 * the group's buffers, ld = nu tc columns in all. */
typedef struct wino_group {
  int64_t u0, nu, ld;
} wino_group;

/* ---- the passes over planes (one group: one thread per (unit, channel) plane) ---- */

/* V[p][c][.] = (B^T d B)[p] for the group's tiles. */
static void input_transform(const wino_geom *g, const wino_chunks *ch, const wino_group *gr,
                            const wino_tile *tab, const float *x, float *V) {
  int64_t ct = g->c * gr->ld, dh = g->dh, dw = g->dw, wd = g->w;
  #pragma omp parallel for schedule(static)
  for (int64_t pl = 0; pl < gr->nu * g->c; pl++) {
    int64_t i = pl / g->c, c = pl % g->c, n, ts;
    int64_t tw = unit_span(g, ch, gr->u0 + i, &n, &ts);
    const float *xp = x + (n * g->c + c) * g->h * g->w;
    float d[P * L], u[P * L];
    for (int64_t t0 = 0; t0 < tw; t0 += L) {
      int cnt = tw - t0 < L ? (int)(tw - t0) : L;
      for (int l = 0; l < L; l++) {
        if (l >= cnt) {
          for (int q = 0; q < P; q++) d[q * L + l] = 0.0f;
          continue;
        }
        const wino_tile *tl = &tab[ts + t0 + l];
        if (tl->inside) {
          const float *s = xp + tl->r0 * wd + tl->c0;
          for (int r = 0; r < 6; r++)
            for (int q = 0; q < 6; q++) d[(r * 6 + q) * L + l] = s[r * dh * wd + q * dw];
        } else {
          for (int r = 0; r < 6; r++) {
            int64_t row = tl->r0 + r * dh;
            for (int q = 0; q < 6; q++) {
              int64_t col = tl->c0 + q * dw;
              d[(r * 6 + q) * L + l] =
                  row >= 0 && row < g->h && col >= 0 && col < wd ? xp[row * wd + col] : 0.0f;
            }
          }
        }
      }
      bt_2d(d, u);
      store_lanes(u, P, V + c * gr->ld + i * ch->tc + t0, ct, cnt);
    }
  }
}

/* y tile = A^T M A (+ bias); every output pixel belongs to exactly one tile. */
static void output_transform(const wino_geom *g, const wino_chunks *ch, const wino_group *gr,
                             const wino_tile *tab, const float *M, const float *bias,
                             float *y) {
  int64_t kt = g->k * gr->ld, dh = g->dh, dw = g->dw, wd = g->w;
  #pragma omp parallel for schedule(static)
  for (int64_t pl = 0; pl < gr->nu * g->k; pl++) {
    int64_t i = pl / g->k, k = pl % g->k, n, ts;
    int64_t tw = unit_span(g, ch, gr->u0 + i, &n, &ts);
    float *yp = y + (n * g->k + k) * g->h * g->w;
    float b0 = bias ? bias[k] : 0.0f;
    float m[P * L], o[16 * L];
    for (int64_t t0 = 0; t0 < tw; t0 += L) {
      int cnt = tw - t0 < L ? (int)(tw - t0) : L;
      load_lanes(m, P, M + k * gr->ld + i * ch->tc + t0, kt, cnt);
      at_2d(m, o);
      for (int l = 0; l < cnt; l++) {
        const wino_tile *tl = &tab[ts + t0 + l];
        for (int r = 0; r < 4; r++) {
          int64_t row = tl->r0 + (r + 1) * dh;
          if (row >= g->h) break;
          for (int q = 0; q < 4; q++) {
            int64_t col = tl->c0 + (q + 1) * dw;
            if (col >= wd) break;
            yp[row * wd + col] = o[(r * 4 + q) * L + l] + b0;
          }
        }
      }
    }
  }
}

/* dM[p][k][.] = (A dy A^T)[p]: pixels outside the image are zero. */
static void grad_output_transform(const wino_geom *g, const wino_chunks *ch,
                                  const wino_group *gr, const wino_tile *tab, const float *dy,
                                  float *dM) {
  int64_t kt = g->k * gr->ld, dh = g->dh, dw = g->dw, wd = g->w;
  #pragma omp parallel for schedule(static)
  for (int64_t pl = 0; pl < gr->nu * g->k; pl++) {
    int64_t i = pl / g->k, k = pl % g->k, n, ts;
    int64_t tw = unit_span(g, ch, gr->u0 + i, &n, &ts);
    const float *dp = dy + (n * g->k + k) * g->h * g->w;
    float e[16 * L], m[P * L];
    for (int64_t t0 = 0; t0 < tw; t0 += L) {
      int cnt = tw - t0 < L ? (int)(tw - t0) : L;
      for (int l = 0; l < L; l++) {
        const wino_tile *tl = &tab[ts + t0 + (l < cnt ? l : 0)];
        for (int r = 0; r < 4; r++) {
          int64_t row = tl->r0 + (r + 1) * dh;
          for (int q = 0; q < 4; q++) {
            int64_t col = tl->c0 + (q + 1) * dw;
            e[(r * 4 + q) * L + l] = l < cnt && row < g->h && col < wd ? dp[row * wd + col] : 0.0f;
          }
        }
      }
      a_2d(e, m);
      store_lanes(m, P, dM + k * gr->ld + i * ch->tc + t0, kt, cnt);
    }
  }
}

/* dx (+)= B dV B^T scattered back onto the tiles' windows (they overlap by two
 * rows / columns: one thread per (n, c) plane adds them in tile order; a group holds
 * distinct images, and the units of one image come in order, group after group);
 * window pixels on the padding are dropped. beta 0: the plane is cleared before its
 * image's first unit. */
static void grad_input_transform(const wino_geom *g, const wino_chunks *ch,
                                 const wino_group *gr, const wino_tile *tab, const float *dV,
                                 float *dx, float beta) {
  int64_t ct = g->c * gr->ld, dh = g->dh, dw = g->dw, wd = g->w;
  #pragma omp parallel for schedule(static)
  for (int64_t pl = 0; pl < gr->nu * g->c; pl++) {
    int64_t i = pl / g->c, c = pl % g->c, n, ts;
    int64_t tw = unit_span(g, ch, gr->u0 + i, &n, &ts);
    float *xp = dx + (n * g->c + c) * g->h * g->w;
    if (beta == 0.0f && ts == 0) memset(xp, 0, (size_t)(g->h * g->w) * sizeof(float));
    float v[P * L], e[P * L];
    for (int64_t t0 = 0; t0 < tw; t0 += L) {
      int cnt = tw - t0 < L ? (int)(tw - t0) : L;
      load_lanes(v, P, dV + c * gr->ld + i * ch->tc + t0, ct, cnt);
      b_2d(v, e);
      for (int l = 0; l < cnt; l++) {
        const wino_tile *tl = &tab[ts + t0 + l];
        if (tl->inside) {
          float *s = xp + tl->r0 * wd + tl->c0;
          for (int r = 0; r < 6; r++)
            for (int q = 0; q < 6; q++) s[r * dh * wd + q * dw] += e[(r * 6 + q) * L + l];
          continue;
        }
        for (int r = 0; r < 6; r++) {
          int64_t row = tl->r0 + r * dh;
          if (row < 0 || row >= g->h) continue;
          for (int q = 0; q < 6; q++) {
            int64_t col = tl->c0 + q * dw;
            if (col >= 0 && col < wd) xp[row * wd + col] += e[(r * 6 + q) * L + l];
          }
        }
      }
    }
  }
}

/* The transformed weights (G w[k][c] G^T)[p] for every position p, as U[p][k][c]
 * (transpose 0: the forward's Cout x Cin matrices) or UT[p][c][k] (transpose 1:
 * backward-data's dV = UT dM is then a plain GEMM, which on a block of tiles runs faster
 * than U^T dM; measured on 1024 -> 256 at 128x128: the dx pass 1.55 -> 1.26 s). Each
 * thread owns a row (k, or c) and transforms L entries of it at a time. */
static void weight_transform(const wino_geom *g, const float *w, float *out, int transpose) {
  int64_t rows = transpose ? g->c : g->k, cols = transpose ? g->k : g->c;
  int64_t row_step = transpose ? 1 : g->c, col_step = transpose ? g->c : 1; /* in w[k][c] */
  #pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    float wt[9 * L], u[P * L];
    for (int64_t c0 = 0; c0 < cols; c0 += L) {
      int cnt = cols - c0 < L ? (int)(cols - c0) : L;
      for (int l = 0; l < L; l++)
        for (int q = 0; q < 9; q++)
          wt[q * L + l] = l < cnt ? w[(r * row_step + (c0 + l) * col_step) * 9 + q] : 0.0f;
      g_2d(wt, u);
      store_lanes(u, P, out + r * cols + c0, rows * cols, cnt);
    }
  }
}

/* dW[k][c] (+)= G^T dU[.][k][c] G, honouring beta (1: add to the gradient there). */
static void weight_grad_transform(const wino_geom *g, const float *dU, float *dw, float beta) {
  int64_t kc = g->k * g->c;
  #pragma omp parallel for schedule(static)
  for (int64_t k = 0; k < g->k; k++) {
    float u[P * L], o[9 * L];
    for (int64_t c0 = 0; c0 < g->c; c0 += L) {
      int cnt = g->c - c0 < L ? (int)(g->c - c0) : L;
      load_lanes(u, P, dU + k * g->c + c0, kc, cnt);
      gt_2d(u, o);
      for (int l = 0; l < cnt; l++) {
        float *dst = dw + (k * g->c + c0 + l) * 9;
        for (int q = 0; q < 9; q++) dst[q] = beta != 0.0f ? dst[q] + o[q * L + l] : o[q * L + l];
      }
    }
  }
}

/* ---- the 36 GEMMs ----
 * C[p] = op(A[p]) op(B[p]) (+ beta C[p]) for p < 36 (row-major), one GEMM per position
 * and unit: unit i's operands start i ia, i ib, i ic floats further, and its tile count
 * is the GEMM's n or k (tile_dim). Per unit, so that an image's result does not depend
 * on the batch it came in (the GEMM's blocking depends on its width): a rank holding one
 * image of two computes what one process holding both does, which the distributed
 * tests check.
 * With oneDNN the GEMMs spread over the OpenMP threads, each single-threaded
 * (dnnl_sgemm runs sequentially inside a parallel region), which beats one threaded
 * GEMM after another at these sizes and gives results independent of the thread count.
 * Without oneDNN the OpenBLAS GEMMs run one after another. Returns 0 when a GEMM
 * rejected its arguments. */
typedef struct gemm_args {
  char ta, tb;
  int64_t m, n, k; /* the one named by tile_dim is the unit's tile count */
  const float *a, *b;
  float *c;
  int64_t lda, ldb, ldc;
  int64_t sa, sb, sc; /* per position */
  int64_t ia, ib, ic; /* per unit */
  float beta;
  char tile_dim; /* 'n' or 'k' */
} gemm_args;

static int one_gemm(const gemm_args *g, int p, int64_t i, int64_t tiles) {
  const float *a = g->a + p * g->sa + i * g->ia, *b = g->b + p * g->sb + i * g->ib;
  float *c = g->c + p * g->sc + i * g->ic;
  int64_t n = g->tile_dim == 'n' ? tiles : g->n, k = g->tile_dim == 'k' ? tiles : g->k;
#ifdef T2S_HAVE_DNNL
  return dnnl_sgemm(g->ta, g->tb, g->m, n, k, 1.0f, a, g->lda, b, g->ldb, g->beta, c,
                    g->ldc) == dnnl_success;
#else
  cblas_sgemm(CblasRowMajor, g->ta == 'T' ? CblasTrans : CblasNoTrans,
              g->tb == 'T' ? CblasTrans : CblasNoTrans, (int)g->m, (int)n, (int)k, 1.0f, a,
              (int)g->lda, b, (int)g->ldb, g->beta, c, (int)g->ldc);
  return 1;
#endif
}

/* The GEMMs of units [u0, u0 + nu). */
static int position_gemms(const gemm_args *ga, const wino_geom *g, const wino_chunks *ch,
                          int64_t u0, int64_t nu) {
  int bad = 0;
#ifdef T2S_HAVE_DNNL
  #pragma omp parallel for schedule(static)
#endif
  for (int64_t q = 0; q < P * nu; q++) {
    int64_t i = q % nu, n, ts;
    int64_t tw = unit_span(g, ch, u0 + i, &n, &ts);
    if (!one_gemm(ga, (int)(q / nu), i, tw)) {
      #pragma omp atomic write
      bad = 1;
    }
  }
  return !bad;
}

static t2s_status gemm_fail(t2s_ctx *ctx) {
  t2s_ctx_fail(ctx, T2S_ERR_BACKEND,
               "conv2d (Winograd): a per-position GEMM failed; set T2S_WINOGRAD=off and report "
               "the shapes");
  return ctx->err.status;
}

static int node_chosen(const t2s_node *node) {
  return node->out->dtype == T2S_F32 &&
         t2s_conv2d_winograd_chosen(node->in[0], node->in[1], node->args);
}

/* The scratch of a pass: the tile table, then float buffers of the given sizes. */
static wino_tile *table_alloc(t2s_ctx *ctx, const wino_geom *g) {
  wino_tile *tab = t2s_scratch(ctx, (size_t)g->tiles * sizeof(wino_tile));
  if (tab) tile_table(g, tab);
  return tab;
}

static float *floats(t2s_ctx *ctx, int64_t n) {
  return t2s_scratch(ctx, (size_t)n * sizeof(float));
}

t2s_status t2s_conv2d_winograd_forward(t2s_ctx *ctx, t2s_node *node, int *done) {
  *done = 0;
  if (!node_chosen(node)) return T2S_OK;
  *done = 1;
  __atomic_fetch_add(&wino_calls, 1, __ATOMIC_RELAXED);
  wino_geom g;
  geom_make(&g, node);
  wino_chunks ch;
  chunks_make(&g, &ch);
  const t2s_tensor *bt = node->in[2];
  int64_t cols = ch.per * ch.tc; /* the columns of a group's buffers */
  t2s_arena_mark mark = t2s_scratch_mark(ctx);
  wino_tile *tab = table_alloc(ctx, &g);
  float *U = tab ? floats(ctx, P * g.k * g.c) : NULL;
  float *V = U ? floats(ctx, P * g.c * cols) : NULL;
  float *M = V ? floats(ctx, P * g.k * cols) : NULL;
  if (M) weight_transform(&g, t2s_f32(node->in[1]), U, 0); /* once for all the groups */
  for (int64_t u0 = 0; M && u0 < ch.units; u0 += ch.per) {
    wino_group gr = {u0, ch.units - u0 < ch.per ? ch.units - u0 : ch.per, 0};
    gr.ld = gr.nu * ch.tc;
    input_transform(&g, &ch, &gr, tab, t2s_f32(node->in[0]), V);
    /* M[p] (Cout x tiles) = U[p] (Cout x Cin) V[p] (Cin x tiles), per unit */
    gemm_args ga = {'N', 'N', g.k, 0, g.c, U, V, M, g.c, gr.ld, gr.ld,
                    g.k * g.c, g.c * gr.ld, g.k * gr.ld, 0, ch.tc, ch.tc, 0.0f, 'n'};
    if (!position_gemms(&ga, &g, &ch, u0, gr.nu)) {
      gemm_fail(ctx);
      break;
    }
    output_transform(&g, &ch, &gr, tab, M, bt ? t2s_f32(bt) : NULL, t2s_f32(node->out));
  }
  t2s_scratch_release(ctx, mark);
  return ctx->err.status;
}

/* Backward-weights first, group by group: dM and V of the group, dU accumulated over
 * the units of an image (beta 1 after its first), transformed back and added to dW
 * after the image's last unit. Then backward-data: U^T (recomputed from W: cheaper than
 * keeping U from the forward), and group by group dV = U^T dM scattered into dx. dM
 * is made once for both when the batch is one group, else again in the second pass
 * (the transform is cheap next to the GEMMs). dU and U are never held together. */
t2s_status t2s_conv2d_winograd_backward(t2s_ctx *ctx, t2s_node *node, const float *beta,
                                        int *done) {
  *done = 0;
  if (!node_chosen(node)) return T2S_OK;
  *done = 1;
  __atomic_fetch_add(&wino_calls, 1, __ATOMIC_RELAXED);
  t2s_tensor *xt = node->in[0], *wt = node->in[1];
  int want_x = t2s_wants_grad(xt), want_w = t2s_wants_grad(wt);
  wino_geom g;
  geom_make(&g, node);
  wino_chunks ch;
  chunks_make(&g, &ch);
  int64_t cols = ch.per * ch.tc;
  int one_group = ch.units <= ch.per;
  const float *dy = node->out->grad;
  t2s_arena_mark mark = t2s_scratch_mark(ctx);
  wino_tile *tab = table_alloc(ctx, &g);
  float *dM = tab ? floats(ctx, P * g.k * cols) : NULL;
  if (dM && want_w) {
    t2s_arena_mark inner = t2s_scratch_mark(ctx);
    float *V = floats(ctx, P * g.c * cols);
    float *dU = V ? floats(ctx, P * g.k * g.c) : NULL;
    for (int64_t u0 = 0; dU && u0 < ch.units && t2s_ctx_ok(ctx); u0 += ch.per) {
      wino_group gr = {u0, ch.units - u0 < ch.per ? ch.units - u0 : ch.per, 0};
      gr.ld = gr.nu * ch.tc;
      grad_output_transform(&g, &ch, &gr, tab, dy, dM);
      input_transform(&g, &ch, &gr, tab, t2s_f32(xt), V);
      /* dW = sum over images of G^T dU_n G, dU_n[p] (Cout x Cin) = sum over the units of
       * image n of dM_u[p] V_u[p]^T: transformed back and added image by image, so that
       * the sum over the batch is taken in weight space in image order, as the gradient
       * all-reduce of a run that spreads the batch over ranks takes it (dU is larger
       * than dW: G^T . G cancels) */
      for (int64_t i = 0; i < gr.nu; i++) {
        int64_t n, ts;
        int64_t tw = unit_span(&g, &ch, u0 + i, &n, &ts);
        gemm_args ga = {'N', 'T', g.k, g.c, 0, dM + i * ch.tc, V + i * ch.tc, dU,
                        gr.ld, gr.ld, g.c, g.k * gr.ld, g.c * gr.ld, g.k * g.c, 0, 0, 0,
                        ts == 0 ? 0.0f : 1.0f, 'k'};
        if (!position_gemms(&ga, &g, &ch, u0 + i, 1)) {
          gemm_fail(ctx);
          break;
        }
        if (ts + tw == g.tiles)
          weight_grad_transform(&g, dU, wt->grad, n == 0 ? beta[1] : 1.0f);
      }
    }
    t2s_scratch_release(ctx, inner);
  }
  if (dM && want_x && t2s_ctx_ok(ctx)) {
    float *UT = floats(ctx, P * g.c * g.k);
    float *dV = UT ? floats(ctx, P * g.c * cols) : NULL;
    if (dV) weight_transform(&g, t2s_f32(wt), UT, 1);
    for (int64_t u0 = 0; dV && u0 < ch.units; u0 += ch.per) {
      wino_group gr = {u0, ch.units - u0 < ch.per ? ch.units - u0 : ch.per, 0};
      gr.ld = gr.nu * ch.tc;
      if (!(one_group && want_w)) grad_output_transform(&g, &ch, &gr, tab, dy, dM);
      /* dV[p] (Cin x tiles) = UT[p] (Cin x Cout) dM[p] (Cout x tiles), per unit */
      gemm_args ga = {'N', 'N', g.c, 0, g.k, UT, dM, dV, g.k, gr.ld, gr.ld,
                      g.k * g.c, g.k * gr.ld, g.c * gr.ld, 0, ch.tc, ch.tc, 0.0f, 'n'};
      if (!position_gemms(&ga, &g, &ch, u0, gr.nu)) {
        gemm_fail(ctx);
        break;
      }
      grad_input_transform(&g, &ch, &gr, tab, dV, xt->grad, beta[0]);
    }
  }
  t2s_scratch_release(ctx, mark);
  return ctx->err.status;
}
