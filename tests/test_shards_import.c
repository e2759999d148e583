// ctest-labels: unit
/* t2sda_shards importers: tiny fake trees in each layout (PNGs written here with
 * libpng), imported and read back; labels must match byte for byte the test's own
 * id -> train-id tables and nearest resize, images the test's own bilinear
 * reference (half-pixel centres) within one grey level. Every bad-input case
 * stops the run with a message naming the file and leaves no shard; --skip-bad
 * lists them in OUT/skipped.txt. Also PNG I/O and the resize closed forms.
 * The DG layouts (bdd100k, mapillary, acdc, darkzurich) import JPEG and PNG trees
 * written here; JPEG images are compared with the test's own libjpeg decode (JPEG is
 * lossy: the reference is what the file holds), and broken JPEGs are bad inputs. */
#include <errno.h>
#include <glob.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
/* after stdio.h: jpeglib.h needs FILE */
#include <jpeglib.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data/image_io.h"
#include "data/importers.h"
#include "data/png_io.h"
#include "data/shard.h"
#include "tests/harness.h"

static char g_dir[1024];

/* ---- the test's own references ---- */

/* docs/method.md "Datasets": Cityscapes/GTA5 ids 0..33 -> train ids. */
static const int CS_TRAIN[34] = {255, 255, 255, 255, 255, 255, 255, 0,   1,   255, 255, 2,
                                 3,   4,   255, 255, 255, 5,   255, 6,   7,   8,   9,   10,
                                 11,  12,  13,  14,  15,  255, 255, 16,  17,  18};
/* SYNTHIA ids 0..22 -> train ids. */
static const int SYN_TRAIN[23] = {255, 10, 2, 0, 1, 4, 8, 5, 13, 7, 11, 18,
                                  17, 255, 255, 6, 9, 12, 14, 15, 16, 3, 255};

static uint8_t ref_pixel(int seed, int y, int x, int c) {
  return (uint8_t)((seed * 41 + y * 19 + x * 23 + c * 67 + ((x * y) % 7) * 9) % 256);
}

/* Bilinear, OpenCV INTER_LINEAR semantics, computed per output value in double. */
static double ref_bilinear(const uint8_t *src, int sw, int sh, int dw, int dh, int x, int y, int c) {
  double fx = (x + 0.5) * sw / dw - 0.5, fy = (y + 0.5) * sh / dh - 0.5;
  int x0 = (int)floor(fx), y0 = (int)floor(fy);
  double ax = fx - x0, ay = fy - y0;
  if (x0 < 0) x0 = 0, ax = 0;
  if (y0 < 0) y0 = 0, ay = 0;
  if (x0 >= sw - 1) x0 = sw - 1, ax = 0;
  if (y0 >= sh - 1) y0 = sh - 1, ay = 0;
  int x1 = x0 + 1 < sw ? x0 + 1 : x0, y1 = y0 + 1 < sh ? y0 + 1 : y0;
#define P(yy, xx) ((double)src[((size_t)(yy) * sw + (xx)) * 3 + c])
  return (1 - ay) * ((1 - ax) * P(y0, x0) + ax * P(y0, x1)) +
         ay * ((1 - ax) * P(y1, x0) + ax * P(y1, x1));
#undef P
}

/* ---- files ---- */

static void mkdirs(const char *path) {
  char buf[1400];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *s = buf + 1; *s; s++)
    if (*s == '/') {
      *s = '\0';
      mkdir(buf, 0755);
      *s = '/';
    }
  mkdir(buf, 0755);
}

static void write_image(const char *path, int w, int h, int seed) {
  uint8_t *rgb = malloc((size_t)w * h * 3);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int c = 0; c < 3; c++) rgb[((size_t)y * w + x) * 3 + c] = ref_pixel(seed, y, x, c);
  t2s_error err = {0};
  CHECK_MSG(t2s_png_write_rgb(path, rgb, w, h, &err) == T2S_OK, "%s", err.msg);
  free(rgb);
}

/* A palette PNG whose indices are the ids (how GTA5 stores its labels). */
static void write_palette_png(const char *path, const uint8_t *idx, int w, int h) {
  FILE *f = fopen(path, "wb");
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) {
    CHECK_MSG(0, "libpng failed writing %s", path);
    png_destroy_write_struct(&png, &info);
    fclose(f);
    return;
  }
  png_init_io(png, f);
  png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_PALETTE,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_color pal[256];
  for (int k = 0; k < 256; k++) pal[k] = (png_color){(png_byte)k, (png_byte)(255 - k), (png_byte)(k * 7)};
  png_set_PLTE(png, info, pal, 256);
  png_write_info(png, info);
  for (int y = 0; y < h; y++) png_write_row(png, (png_bytep)(idx + (size_t)y * w));
  png_write_end(png, NULL);
  png_destroy_write_struct(&png, &info);
  fclose(f);
}

typedef enum label_kind { LABEL_GRAY8, LABEL_PALETTE, LABEL_RGBA16 } label_kind;

static int ref_id(int seed, int y, int x, int n_ids) { return (x * 7 + y * 3 + seed * 5 + x * y) % n_ids; }

/* Writes a label whose ids follow ref_id, optionally overriding one pixel. */
static void write_label(const char *path, int w, int h, int seed, int n_ids, label_kind kind,
                        int odd_value, int odd_count) {
  size_t n = (size_t)w * h;
  uint8_t *ids8 = malloc(n);
  uint16_t *rgba = malloc(n * 4 * sizeof *rgba);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      size_t p = (size_t)y * w + x;
      int v = ref_id(seed, y, x, n_ids);
      if ((int)p < odd_count) v = odd_value;
      ids8[p] = (uint8_t)v;
      /* channel 0: the class; the others look like SYNTHIA's instance ids */
      rgba[p * 4] = (uint16_t)v;
      rgba[p * 4 + 1] = (uint16_t)(1000 + p);
      rgba[p * 4 + 2] = (uint16_t)(40000 + x);
      rgba[p * 4 + 3] = 65535;
    }
  t2s_error err = {0};
  if (kind == LABEL_GRAY8) CHECK_MSG(t2s_png_write_gray(path, ids8, w, h, &err) == T2S_OK, "%s", err.msg);
  else if (kind == LABEL_PALETTE) write_palette_png(path, ids8, w, h);
  else CHECK_MSG(t2s_png_write(path, rgba, w, h, 4, 16, &err) == T2S_OK, "%s", err.msg);
  free(ids8);
  free(rgba);
}

/* ---- checking an import ---- */

typedef struct expect {
  const char *names[8];
  int seeds[8];
  int n;
  int sw, sh, tw, th;
  const int *table;    /* id -> train id */
  int n_ids;
  int nshards;
  const char *jpeg[8]; /* image i is this JPEG (decoded by the test), not ref_pixel */
} expect;

/* The test's own JPEG decode: native colour space, grey replicated to R = G = B. */
static uint8_t *ref_decode_jpeg(const char *path, int *w, int *h) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return NULL;
  struct jpeg_decompress_struct ci;
  struct jpeg_error_mgr jerr;
  ci.err = jpeg_std_error(&jerr);
  jpeg_create_decompress(&ci);
  jpeg_stdio_src(&ci, f);
  jpeg_read_header(&ci, TRUE);
  jpeg_start_decompress(&ci);
  *w = (int)ci.output_width, *h = (int)ci.output_height;
  int nc = ci.output_components;
  uint8_t *rgb = malloc((size_t)*w * *h * 3), *row = malloc((size_t)*w * nc);
  while (ci.output_scanline < ci.output_height) {
    int y = (int)ci.output_scanline;
    jpeg_read_scanlines(&ci, &row, 1);
    for (int x = 0; x < *w; x++)
      for (int c = 0; c < 3; c++) rgb[((size_t)y * *w + x) * 3 + c] = row[x * nc + (nc == 1 ? 0 : c)];
  }
  jpeg_finish_decompress(&ci);
  jpeg_destroy_decompress(&ci);
  fclose(f);
  free(row);
  return rgb;
}

static void check_import(const char *out, const char *domain, const char *split, const expect *e) {
  char pattern[1400];
  snprintf(pattern, sizeof pattern, "%s/%s_%s-*-of-%05d.h5", out, domain, split, e->nshards);
  glob_t g;
  CHECK_MSG(glob(pattern, 0, NULL, &g) == 0 && (int)g.gl_pathc == e->nshards, "%s: want %d shards",
            pattern, e->nshards);
  globfree(&g);
  char pats[1][512];
  snprintf(pats[0], sizeof pats[0], "%s", pattern);
  t2s_dataset ds;
  t2s_error err = {0};
  if (t2s_dataset_open(&ds, (const char(*)[512])pats, 1, "test", &err) != T2S_OK) {
    CHECK_MSG(0, "%s", err.msg);
    return;
  }
  CHECK_MSG(ds.count == e->n, "%lld images, want %d", (long long)ds.count, e->n);
  CHECK(ds.meta.num_classes == 19 && strcmp(ds.meta.class_names[18], "bicycle") == 0);
  CHECK(strcmp(ds.meta.domain, domain) == 0 && strcmp(ds.meta.split, split) == 0);
  CHECK(ds.meta.width == e->tw && ds.meta.height == e->th && ds.meta.has_label && ds.meta.has_orig_size);
  size_t tn = (size_t)e->tw * e->th;
  uint8_t *rgb = malloc(tn * 3), *lab = malloc(tn), *src = malloc((size_t)e->sw * e->sh * 3);
  int worst = 0;
  for (int i = 0; i < e->n && i < ds.count; i++) {
    int64_t local;
    t2s_shard *s = t2s_dataset_locate(&ds, i, &local);
    char name[128];
    CHECK(t2s_shard_read(s, local, rgb, lab, &err) == T2S_OK);
    CHECK(t2s_shard_read_name(s, local, name, sizeof name, &err) == T2S_OK);
    CHECK_MSG(strcmp(name, e->names[i]) == 0, "image %d is '%s', want '%s'", i, name, e->names[i]);
    int oh = 0, ow = 0; /* the source's size before the resize */
    CHECK_MSG(t2s_shard_orig_size(s, local, &oh, &ow) == 1 && oh == e->sh && ow == e->sw,
              "image %d: /orig_size %dx%d (WxH), want %dx%d", i, ow, oh, e->sw, e->sh);
    int seed = e->seeds[i];
    for (int y = 0; y < e->sh; y++)
      for (int x = 0; x < e->sw; x++)
        for (int c = 0; c < 3; c++) src[((size_t)y * e->sw + x) * 3 + c] = ref_pixel(seed, y, x, c);
    if (e->jpeg[i] != NULL) {
      int jw = 0, jh = 0;
      uint8_t *dec = ref_decode_jpeg(e->jpeg[i], &jw, &jh);
      CHECK_MSG(dec != NULL && jw == e->sw && jh == e->sh, "cannot decode %s", e->jpeg[i]);
      if (dec != NULL && jw == e->sw && jh == e->sh) memcpy(src, dec, (size_t)jw * jh * 3);
      free(dec);
    }
    int64_t counts[19] = {0}, bad_labels = 0;
    for (int y = 0; y < e->th; y++)
      for (int x = 0; x < e->tw; x++) {
        /* nearest: src = floor(dst * in / out), then the id -> train id table */
        int sy = y * e->sh / e->th, sx = x * e->sw / e->tw;
        int want = e->table[ref_id(seed, sy, sx, e->n_ids)];
        bad_labels += lab[(size_t)y * e->tw + x] != want;
        if (want < 19) counts[want]++;
        for (int c = 0; c < 3; c++) {
          double r = ref_bilinear(src, e->sw, e->sh, e->tw, e->th, x, y, c);
          int d = abs((int)rgb[((size_t)y * e->tw + x) * 3 + c] - (int)floor(r + 0.5));
          if (d > worst) worst = d;
        }
      }
    CHECK_MSG(bad_labels == 0, "image %d: %lld label pixels differ from the reference", i,
              (long long)bad_labels);
    const int64_t *cp = t2s_shard_class_pixels(s) + local * 19;
    for (int c = 0; c < 19; c++)
      CHECK_MSG(cp[c] == counts[c], "image %d class %d: %lld pixels, want %lld", i, c,
                (long long)cp[c], (long long)counts[c]);
  }
  CHECK_MSG(worst <= 1, "an image value is %d grey levels from the bilinear reference", worst);
  free(rgb), free(lab), free(src);
  t2s_dataset_close(&ds);
}

static int g_strict_labels; /* run_import: --strict-labels */

static t2s_status run_import(t2s_import_layout layout, const char *root, const char *out,
                             const char *split, int shards, int tw, int th, int skip_bad,
                             const char *mapping, t2s_error *err) {
  t2s_import_opts o;
  t2s_import_opts_default(&o, layout);
  o.root = root;
  o.out_dir = out;
  o.split = split;
  o.shards = shards;
  o.width = tw;
  o.height = th;
  o.skip_bad = skip_bad;
  o.mapping_path = mapping;
  o.threads = 2;
  o.strict_labels = g_strict_labels;
  t2s_import_summary *sum = malloc(sizeof *sum);
  t2s_status st = t2s_import_run(&o, sum, err);
  free(sum);
  return st;
}

/* ---- layouts ---- */

enum { SW = 13, SH = 9, TW = 7, TH = 5 };

static void test_gta5(void) {
  char root[1200], out[1200], p[1400];
  snprintf(root, sizeof root, "%s/gta", g_dir);
  snprintf(out, sizeof out, "%s/gta_out", g_dir);
  for (int k = 0; k < 3; k++) {
    snprintf(p, sizeof p, "%s/images", root), mkdirs(p);
    snprintf(p, sizeof p, "%s/labels", root), mkdirs(p);
    snprintf(p, sizeof p, "%s/images/%05d.png", root, k + 1);
    write_image(p, SW, SH, k + 1);
    snprintf(p, sizeof p, "%s/labels/%05d.png", root, k + 1);
    write_label(p, SW, SH, k + 1, 34, LABEL_PALETTE, 0, 0);
  }
  t2s_error err = {0};
  CHECK_MSG(run_import(T2S_IMPORT_GTA5, root, out, "train", 2, TW, TH, 0, NULL, &err) == T2S_OK,
            "%s", err.msg);
  expect e = {{"00001", "00002", "00003"}, {1, 2, 3}, 3, SW, SH, TW, TH, CS_TRAIN, 34, 2, {NULL}};
  check_import(out, "gta5", "train", &e);
}

static void test_cityscapes(void) {
  char root[1200], p[1400], out[1200];
  snprintf(root, sizeof root, "%s/cs", g_dir);
  snprintf(out, sizeof out, "%s/cs_out", g_dir);
  const char *cities[] = {"aachen", "aachen", "bremen"};
  const char *stems[] = {"aachen_000000_000019", "aachen_000001_000019", "bremen_000000_000019"};
  for (int k = 0; k < 3; k++) {
    snprintf(p, sizeof p, "%s/leftImg8bit/val/%s", root, cities[k]), mkdirs(p);
    snprintf(p, sizeof p, "%s/gtFine/val/%s", root, cities[k]), mkdirs(p);
    snprintf(p, sizeof p, "%s/leftImg8bit/val/%s/%s_leftImg8bit.png", root, cities[k], stems[k]);
    write_image(p, SW, SH, 10 + k);
    snprintf(p, sizeof p, "%s/gtFine/val/%s/%s_gtFine_labelIds.png", root, cities[k], stems[k]);
    write_label(p, SW, SH, 10 + k, 34, LABEL_GRAY8, 0, 0);
    /* the other gtFine files of a real tree must be ignored */
    snprintf(p, sizeof p, "%s/gtFine/val/%s/%s_gtFine_color.png", root, cities[k], stems[k]);
    write_image(p, 2, 2, 0);
  }
  t2s_error err = {0};
  CHECK_MSG(run_import(T2S_IMPORT_CITYSCAPES, root, out, "val", 1, TW, TH, 0, NULL, &err) == T2S_OK,
            "%s", err.msg);
  expect e = {{"aachen_000000_000019_leftImg8bit", "aachen_000001_000019_leftImg8bit",
               "bremen_000000_000019_leftImg8bit"},
              {10, 11, 12}, 3, SW, SH, TW, TH, CS_TRAIN, 34, 1, {NULL}};
  check_import(out, "cityscapes", "val", &e);
  /* the train split of this tree is absent: a clear message, not an empty shard */
  t2s_error e2 = {0};
  CHECK(run_import(T2S_IMPORT_CITYSCAPES, root, out, "train", 1, TW, TH, 0, NULL, &e2) != T2S_OK);
  CHECK_MSG(strstr(e2.msg, "leftImg8bit/train"), "%s", e2.msg);
}

static void test_synthia(void) {
  char root[1200], p[1400], out[1200];
  snprintf(root, sizeof root, "%s/syn", g_dir);
  snprintf(out, sizeof out, "%s/syn_out", g_dir);
  snprintf(p, sizeof p, "%s/RGB", root), mkdirs(p);
  snprintf(p, sizeof p, "%s/GT/LABELS", root), mkdirs(p);
  for (int k = 0; k < 2; k++) {
    snprintf(p, sizeof p, "%s/RGB/%07d.png", root, k);
    write_image(p, SW, SH, 20 + k);
    snprintf(p, sizeof p, "%s/GT/LABELS/%07d.png", root, k);
    write_label(p, SW, SH, 20 + k, 23, LABEL_RGBA16, 0, 0);
  }
  t2s_error err = {0};
  /* an upscale too: 13x9 -> 20x11 */
  CHECK_MSG(run_import(T2S_IMPORT_SYNTHIA, root, out, "train", 2, 20, 11, 0, NULL, &err) == T2S_OK,
            "%s", err.msg);
  expect e = {{"0000000", "0000001"}, {20, 21}, 2, SW, SH, 20, 11, SYN_TRAIN, 23, 2, {NULL}};
  check_import(out, "synthia", "train", &e);
}

static void test_generic(void) {
  char root[1200], p[1400], out[1200], map[1400];
  snprintf(root, sizeof root, "%s/gen", g_dir);
  snprintf(out, sizeof out, "%s/gen_out", g_dir);
  snprintf(p, sizeof p, "%s/img", root), mkdirs(p);
  snprintf(p, sizeof p, "%s/ann", root), mkdirs(p);
  for (int k = 0; k < 2; k++) {
    snprintf(p, sizeof p, "%s/img/frame_%d.png", root, k);
    write_image(p, SW, SH, 30 + k);
    snprintf(p, sizeof p, "%s/ann/frame_%d.png", root, k);
    write_label(p, SW, SH, 30 + k, 34, LABEL_GRAY8, 0, 0);
  }
  /* the Cityscapes table written as rules: ranges, singles, a later line winning */
  snprintf(map, sizeof map, "%s/map.txt", root);
  FILE *f = fopen(map, "w");
  fputs("# label id -> train id\n0-33 255\n", f);
  for (int v = 0; v < 34; v++)
    if (CS_TRAIN[v] != 255) fprintf(f, "%d %d   # class\n", v, CS_TRAIN[v]);
  fclose(f);
  t2s_import_opts o;
  t2s_import_opts_default(&o, T2S_IMPORT_GENERIC);
  o.root = root, o.out_dir = out, o.split = "val", o.mapping_path = map;
  o.image_dir = "img", o.label_dir = "ann", o.domain = "mycam";
  t2s_import_summary *sum = malloc(sizeof *sum);
  t2s_error err = {0};
  /* no --resize: the images keep their size */
  CHECK_MSG(t2s_import_run(&o, sum, &err) == T2S_OK, "%s", err.msg);
  CHECK(sum->images == 2 && sum->width == SW && sum->height == SH && sum->bytes > 0);
  free(sum);
  expect e = {{"frame_0", "frame_1"}, {30, 31}, 2, SW, SH, SW, SH, CS_TRAIN, 34, 1, {NULL}};
  check_import(out, "mycam", "val", &e);

  /* mapping table errors name the file and line */
  f = fopen(map, "w");
  fputs("7 0\n8 one\n", f);
  fclose(f);
  t2s_label_mapping m;
  t2s_error e1 = {0};
  CHECK(t2s_label_mapping_load(&m, map, &e1) != T2S_OK);
  CHECK_MSG(strstr(e1.msg, map) && strstr(e1.msg, ":2:"), "%s", e1.msg);
}

/* ---- bad inputs ---- */

/* Shards and their temporaries (*.h5, *.h5.part, *.h5.part.tmp.PID) in dir. */
static int count_files(const char *dir) {
  char pattern[1400];
  snprintf(pattern, sizeof pattern, "%s/*.h5*", dir);
  glob_t g;
  int n = glob(pattern, 0, NULL, &g) == 0 ? (int)g.gl_pathc : 0;
  globfree(&g);
  return n;
}

/* A GTA5 tree of 4 good pairs, plus one bad thing. */
static void bad_tree(const char *root, const char *what) {
  char p[1400];
  snprintf(p, sizeof p, "rm -rf '%s'", root);
  CHECK(system(p) == 0);
  snprintf(p, sizeof p, "%s/images", root), mkdirs(p);
  snprintf(p, sizeof p, "%s/labels", root), mkdirs(p);
  for (int k = 0; k < 4; k++) {
    snprintf(p, sizeof p, "%s/images/%05d.png", root, k);
    write_image(p, SW, SH, k);
    snprintf(p, sizeof p, "%s/labels/%05d.png", root, k);
    write_label(p, SW, SH, k, 34, LABEL_PALETTE, 0, 0);
  }
  if (strcmp(what, "nolabel") == 0 || strcmp(what, "all") == 0) {
    snprintf(p, sizeof p, "%s/images/%05d.png", root, 10);
    write_image(p, SW, SH, 10);
  }
  if (strcmp(what, "size") == 0 || strcmp(what, "all") == 0) {
    snprintf(p, sizeof p, "%s/images/%05d.png", root, 11);
    write_image(p, SW, SH, 11);
    snprintf(p, sizeof p, "%s/labels/%05d.png", root, 11);
    write_label(p, SW + 1, SH, 11, 34, LABEL_PALETTE, 0, 0);
  }
  if (strcmp(what, "unreadable") == 0 || strcmp(what, "all") == 0) {
    snprintf(p, sizeof p, "%s/images/%05d.png", root, 12);
    write_image(p, SW, SH, 12);
    snprintf(p, sizeof p, "%s/labels/%05d.png", root, 12);
    write_label(p, SW, SH, 12, 34, LABEL_PALETTE, 0, 0);
    CHECK(truncate(p, 60) == 0); /* past the header: libpng fails in the data */
  }
  if (strcmp(what, "unmapped") == 0 || strcmp(what, "all") == 0) {
    snprintf(p, sizeof p, "%s/images/%05d.png", root, 13);
    write_image(p, SW, SH, 13);
    snprintf(p, sizeof p, "%s/labels/%05d.png", root, 13);
    write_label(p, SW, SH, 13, 34, LABEL_PALETTE, 200, 7);
  }
}

static void test_bad_inputs(void) {
  g_strict_labels = 1; /* ids outside the mapping are bad inputs only then (test_unmapped_labels) */
  char root[1200], out[1200], file[1400];
  snprintf(root, sizeof root, "%s/bad", g_dir);
  snprintf(out, sizeof out, "%s/bad_out", g_dir);
  struct {
    const char *what, *file_fmt, *words;
  } cases[] = {
      {"nolabel", "%s/images/00010.png", "is missing"},
      {"size", "%s/labels/00011.png", "14x9 but its image"},
      {"unreadable", "%s/labels/00012.png", "libpng"},
      {"unmapped", "%s/labels/00013.png", "200 x 7"},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    bad_tree(root, cases[k].what);
    snprintf(file, sizeof file, cases[k].file_fmt, root);
    mkdirs(out);
    t2s_error err = {0};
    CHECK(run_import(T2S_IMPORT_GTA5, root, out, "train", 2, TW, TH, 0, NULL, &err) != T2S_OK);
    CHECK_MSG(strstr(err.msg, file) && strstr(err.msg, cases[k].words),
              "%s: the message should name %s and say '%s': %s", cases[k].what, file,
              cases[k].words, err.msg);
    printf("  %s: %s\n", cases[k].what, err.msg);
    /* nothing under a final name, and no temporary left behind */
    CHECK_MSG(count_files(out) == 0, "%s: %d file(s) left in %s", cases[k].what, count_files(out), out);
  }
  /* an empty directory */
  bad_tree(root, "none");
  char cmd[1400];
  snprintf(cmd, sizeof cmd, "rm -f '%s'/images/* '%s'/labels/*", root, root);
  CHECK(system(cmd) == 0);
  t2s_error err = {0};
  CHECK(run_import(T2S_IMPORT_GTA5, root, out, "train", 1, TW, TH, 0, NULL, &err) != T2S_OK);
  CHECK_MSG(strstr(err.msg, "no images found") && strstr(err.msg, root), "%s", err.msg);

  /* without --skip-bad: every bad input is reported by one run, not only the first */
  bad_tree(root, "all");
  t2s_error e1 = {0};
  CHECK(run_import(T2S_IMPORT_GTA5, root, out, "train", 2, TW, TH, 0, NULL, &e1) != T2S_OK);
  CHECK_MSG(strstr(e1.msg, "4 bad input(s)"), "all four bad inputs should be counted: %s", e1.msg);
  const char *bad_files[] = {"images/00010.png", "labels/00011.png", "labels/00012.png",
                             "labels/00013.png"};
  for (int k = 0; k < 4; k++)
    CHECK_MSG(strstr(e1.msg, bad_files[k]), "the message does not name %s: %s", bad_files[k], e1.msg);
  CHECK_MSG(count_files(out) == 0, "%d shard file(s) left in %s", count_files(out), out);
  char listing[1400], listed[8192] = "";
  snprintf(listing, sizeof listing, "%s/bad_inputs.txt", out);
  FILE *bf = fopen(listing, "r");
  CHECK_MSG(bf != NULL, "no %s", listing);
  if (bf) {
    listed[fread(listed, 1, sizeof listed - 1, bf)] = '\0';
    fclose(bf);
  }
  for (int k = 0; k < 4; k++) CHECK_MSG(strstr(listed, bad_files[k]), "%s lacks %s", listing, bad_files[k]);

  /* --skip-bad: every bad input at once, the good ones written, the rest listed */
  t2s_error e2 = {0};
  CHECK_MSG(run_import(T2S_IMPORT_GTA5, root, out, "train", 2, TW, TH, 1, NULL, &e2) == T2S_OK,
            "%s", e2.msg);
  expect e = {{"00000", "00001", "00002", "00003"}, {0, 1, 2, 3}, 4, SW, SH, TW, TH, CS_TRAIN, 34, 2, {NULL}};
  check_import(out, "gta5", "train", &e);
  char report[1400], text[8192] = "";
  snprintf(report, sizeof report, "%s/skipped.txt", out);
  FILE *f = fopen(report, "r");
  CHECK_MSG(f != NULL, "no %s", report);
  if (f) {
    size_t got = fread(text, 1, sizeof text - 1, f);
    text[got] = '\0';
    fclose(f);
  }
  const char *expect_files[] = {"images/00010.png", "labels/00011.png", "labels/00012.png",
                                "labels/00013.png"};
  for (int k = 0; k < 4; k++)
    CHECK_MSG(strstr(text, expect_files[k]), "skipped.txt does not list %s:\n%s", expect_files[k], text);
  CHECK(strstr(text, "4 input(s) skipped") != NULL);
  g_strict_labels = 0;
}

static void read_text(const char *path, char *text, size_t size) {
  text[0] = '\0';
  FILE *f = fopen(path, "r");
  if (f == NULL) return;
  text[fread(text, 1, size - 1, f)] = '\0';
  fclose(f);
}

static int count_of(const char *text, const char *needle) {
  int n = 0;
  for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle)) n++;
  return n;
}

/* Ids outside the mapping (as mmseg): by default 255 with one histogram (id: pixels,
 * images) and OUT/unmapped_labels.txt; --strict-labels refuses naming the file and id.
 * The tree: 00000 clean, 00001 with id 200 on its first 7 pixels, 00002 with id 200
 * on 4, 00003 with id 40 (outside GTA's 0..33) on 2: by hand, 200: 11 pixels in 2
 * images, 40: 2 pixels in 1 image; no resize, so every such pixel must read 255. */
static void test_unmapped_labels(void) {
  char root[1200], out[1200], p[1400], text[8192];
  snprintf(root, sizeof root, "%s/unmapped", g_dir);
  snprintf(out, sizeof out, "%s/unmapped_out", g_dir);
  const int odd_value[4] = {0, 200, 200, 40}, odd_count[4] = {0, 7, 4, 2};
  snprintf(p, sizeof p, "%s/images", root), mkdirs(p);
  snprintf(p, sizeof p, "%s/labels", root), mkdirs(p);
  for (int k = 0; k < 4; k++) {
    snprintf(p, sizeof p, "%s/images/%05d.png", root, k);
    write_image(p, SW, SH, k);
    snprintf(p, sizeof p, "%s/labels/%05d.png", root, k);
    write_label(p, SW, SH, k, 34, LABEL_PALETTE, odd_value[k], odd_count[k]);
  }
  t2s_import_opts o;
  t2s_import_opts_default(&o, T2S_IMPORT_GTA5);
  o.root = root, o.out_dir = out, o.width = SW, o.height = SH, o.threads = 2;
  t2s_import_summary *sum = malloc(sizeof *sum);
  t2s_error err = {0};
  CHECK_MSG(t2s_import_run(&o, sum, &err) == T2S_OK, "%s", err.msg);
  CHECK(sum->images == 4 && sum->unmapped_ids == 2 && sum->unmapped_images == 3);
  CHECK_MSG(strstr(sum->unmapped_warning, "2 label id(s) outside the gta5 mapping") &&
                strstr(sum->unmapped_warning, "in 3 image(s) became 255") &&
                strstr(sum->unmapped_warning, "200: 11, 2; 40: 2, 1"),
            "warning: %s", sum->unmapped_warning);
  snprintf(p, sizeof p, "%s/unmapped_labels.txt", out);
  CHECK(strcmp(sum->unmapped_report, p) == 0);
  read_text(p, text, sizeof text);
  CHECK_MSG(strstr(text, "# id pixels images\n200 11 2\n40 2 1\n"), "%s:\n%s", p, text);

  char pats[1][512];
  snprintf(pats[0], sizeof pats[0], "%s/gta5_train-*.h5", out);
  t2s_dataset ds;
  CHECK_MSG(t2s_dataset_open(&ds, (const char(*)[512])pats, 1, "test", &err) == T2S_OK, "%s", err.msg);
  uint8_t *rgb = malloc((size_t)SW * SH * 3), *lab = malloc((size_t)SW * SH);
  for (int64_t i = 0; i < ds.count && i < 4; i++) {
    int64_t local, wrong = 0;
    t2s_shard *s = t2s_dataset_locate(&ds, i, &local);
    CHECK(t2s_shard_read(s, local, rgb, lab, &err) == T2S_OK);
    for (int q = 0; q < SW * SH; q++) {
      int want = q < odd_count[i] ? 255 : CS_TRAIN[ref_id((int)i, q / SW, q % SW, 34)];
      wrong += lab[q] != want;
    }
    CHECK_MSG(wrong == 0, "image %lld: %lld label pixels differ", (long long)i, (long long)wrong);
  }
  free(rgb), free(lab);
  t2s_dataset_close(&ds);
  /* a clean tree (test_gta5's, no odd ids): no warning, no report */
  char clean[1400];
  snprintf(p, sizeof p, "%s/unmapped_clean", g_dir);
  snprintf(clean, sizeof clean, "%s/gta", g_dir);
  o.out_dir = p;
  o.root = clean;
  CHECK_MSG(t2s_import_run(&o, sum, &err) == T2S_OK, "%s", err.msg);
  CHECK(sum->unmapped_ids == 0 && sum->unmapped_warning[0] == '\0' && sum->unmapped_report[0] == '\0');
  snprintf(text, sizeof text, "%s/unmapped_labels.txt", p);
  CHECK(access(text, F_OK) != 0);
  free(sum);

  /* the command line: the warning once per run; --strict-labels refuses */
  const char *bin = getenv("T2S_BINARY_DIR");
  char exe[1200], log[1300];
  snprintf(exe, sizeof exe, "%s/bin/t2sda_shards", bin ? bin : ".");
  if (access(exe, X_OK) != 0) {
    printf("note: %s not built; --strict-labels is not checked\n", exe);
    return;
  }
  snprintf(log, sizeof log, "%s/unmapped.log", g_dir);
  CHECK(t2s_test_run("'%s' gta5 '%s' '%s/cli_a' --no-resize > '%s' 2>&1", exe, root, g_dir, log) == 0);
  read_text(log, text, sizeof text);
  CHECK_MSG(count_of(text, "WARNING") == 1 && strstr(text, "200: 11, 2; 40: 2, 1") &&
                strstr(text, "unmapped_labels.txt"), "output:\n%s", text);
  CHECK(t2s_test_run("'%s' gta5 '%s' '%s/cli_b' --no-resize --strict-labels > '%s' 2>&1", exe, root,
                     g_dir, log) == 1);
  read_text(log, text, sizeof text);
  snprintf(p, sizeof p, "%s/labels/00001.png", root);
  CHECK_MSG(strstr(text, p) && strstr(text, "200 x 7") && strstr(text, "--strict-labels") &&
                count_of(text, "WARNING") == 0, "output:\n%s", text);
  snprintf(p, sizeof p, "%s/cli_b/gta5_train-00000-of-00001.h5", g_dir);
  CHECK(access(p, F_OK) != 0);
}

/* ---- one set per folder, leftovers of interrupted runs, Ctrl-C ---- */

static int count_glob(const char *pattern) {
  glob_t g;
  int n = glob(pattern, 0, NULL, &g) == 0 ? (int)g.gl_pathc : 0;
  globfree(&g);
  return n;
}

static t2s_status import_gta(const char *root, const char *out, int shards, int overwrite,
                             volatile sig_atomic_t *cancel, t2s_import_progress_fn progress,
                             t2s_import_summary *sum, t2s_error *err) {
  t2s_import_opts o;
  t2s_import_opts_default(&o, T2S_IMPORT_GTA5);
  o.root = root, o.out_dir = out, o.shards = shards, o.width = TW, o.height = TH;
  o.overwrite = overwrite, o.cancel = cancel, o.progress = progress, o.progress_user = (void *)cancel;
  return t2s_import_run(&o, sum, err);
}

static void cancel_after_first(void *user, int64_t done, int64_t total, int64_t skipped) {
  (void)total, (void)skipped;
  if (done >= 1) *(volatile sig_atomic_t *)user = 1; /* what t2sda_shards' SIGINT handler does */
}

static void test_sets(void) {
  char root[1200], out[1200], pattern[1400], p[1400];
  snprintf(root, sizeof root, "%s/sets", g_dir);
  snprintf(out, sizeof out, "%s/sets_out", g_dir);
  bad_tree(root, "none"); /* 4 good pairs */
  t2s_import_summary *sum = calloc(1, sizeof *sum);
  t2s_error err = {0};
  CHECK_MSG(import_gta(root, out, 2, 0, NULL, NULL, sum, &err) == T2S_OK, "%s", err.msg);
  /* another --shards into the same folder is refused and changes nothing */
  t2s_error e1 = {0};
  CHECK(import_gta(root, out, 3, 0, NULL, NULL, sum, &e1) == T2S_ERR_INVALID);
  CHECK_MSG(strstr(e1.msg, out) && strstr(e1.msg, "-of-00002.h5") && strstr(e1.msg, "--overwrite"),
            "a second set should be refused with the old set named: %s", e1.msg);
  snprintf(pattern, sizeof pattern, "%s/*.h5*", out);
  CHECK_MSG(count_glob(pattern) == 2, "%d files after the refusal", count_glob(pattern));
  /* the loader refuses a glob that mixes two sets of the same data */
  char cmd[3000];
  snprintf(cmd, sizeof cmd, "cp '%s/gta5_train-00000-of-00002.h5' '%s/gta5_train-00000-of-00003.h5'",
           out, out);
  CHECK(system(cmd) == 0);
  char patterns[1][512];
  snprintf(patterns[0], sizeof patterns[0], "%s/gta5_train-*.h5", out);
  t2s_dataset ds;
  t2s_error e2 = {0};
  CHECK(t2s_dataset_open(&ds, (const char(*)[512])patterns, 1, "data.target.shards", &e2) != T2S_OK);
  CHECK_MSG(strstr(e2.msg, "data.target.shards") && strstr(e2.msg, "-of-00003.h5") &&
                strstr(e2.msg, "twice"), "a mixed glob: %s", e2.msg);
  snprintf(p, sizeof p, "%s/gta5_train-00000-of-00003.h5", out);
  unlink(p);
  /* --overwrite: the new set replaces the old one once it is complete */
  memset(sum, 0, sizeof *sum);
  CHECK_MSG(import_gta(root, out, 3, 1, NULL, NULL, sum, &err) == T2S_OK, "%s", err.msg);
  CHECK(sum->replaced == 2);
  snprintf(pattern, sizeof pattern, "%s/gta5_train-*-of-00003.h5", out);
  CHECK(count_glob(pattern) == 3);
  snprintf(pattern, sizeof pattern, "%s/*.h5*", out);
  CHECK_MSG(count_glob(pattern) == 3, "%d files after --overwrite", count_glob(pattern));

  /* leftovers of a killed run (a staged shard, a writer temporary of a dead pid) go */
  pid_t dead = fork();
  if (dead == 0) _exit(0);
  waitpid(dead, NULL, 0);
  snprintf(p, sizeof p, "%s/gta5_train-00000-of-00003.h5.part", out);
  FILE *f = fopen(p, "w");
  if (f) fclose(f);
  snprintf(p, sizeof p, "%s/gta5_train-00001-of-00003.h5.part.tmp.%ld", out, (long)dead);
  f = fopen(p, "w");
  if (f) fclose(f);
  memset(sum, 0, sizeof *sum);
  CHECK_MSG(import_gta(root, out, 3, 0, NULL, NULL, sum, &err) == T2S_OK, "%s", err.msg);
  CHECK_MSG(sum->cleaned == 2 && count_glob(pattern) == 3, "cleaned %lld, %d files",
            (long long)sum->cleaned, count_glob(pattern));

  /* Ctrl-C (the cancel flag) stops the run, removes its partial shards and keeps the set */
  volatile sig_atomic_t cancel = 0;
  char other[1200];
  snprintf(other, sizeof other, "%s/sets_cancel", g_dir);
  t2s_error e3 = {0};
  CHECK(import_gta(root, other, 2, 0, &cancel, cancel_after_first, sum, &e3) != T2S_OK);
  CHECK_MSG(strstr(e3.msg, "interrupted"), "%s", e3.msg);
  snprintf(pattern, sizeof pattern, "%s/*.h5*", other);
  CHECK_MSG(count_glob(pattern) == 0, "an interrupted run left %d file(s)", count_glob(pattern));
  free(sum);
}

/* Images without labels (a target domain) import as unlabelled shards. */
static void test_unlabelled(void) {
  char root[1200], out[1200], p[1400];
  snprintf(root, sizeof root, "%s/target", g_dir);
  snprintf(out, sizeof out, "%s/target_out", g_dir);
  snprintf(p, sizeof p, "%s/frames", root), mkdirs(p);
  for (int k = 0; k < 3; k++) {
    snprintf(p, sizeof p, "%s/frames/f%d.png", root, k);
    write_image(p, SW, SH, 50 + k);
  }
  t2s_import_opts o;
  t2s_import_opts_default(&o, T2S_IMPORT_GENERIC);
  o.root = root, o.out_dir = out, o.image_dir = "frames", o.unlabelled = 1, o.domain = "cam";
  t2s_import_summary *sum = calloc(1, sizeof *sum);
  t2s_error err = {0};
  CHECK_MSG(t2s_import_run(&o, sum, &err) == T2S_OK, "an images-only folder: %s", err.msg);
  CHECK(sum->images == 3);
  free(sum);
  snprintf(p, sizeof p, "%s/cam_train-00000-of-00001.h5", out);
  t2s_shard *s = t2s_shard_open(p, &err);
  CHECK_MSG(s != NULL, "%s", err.msg);
  if (s == NULL) return;
  const t2s_shard_meta *m = t2s_shard_info(s);
  CHECK(m->count == 3 && !m->has_label && m->width == SW && m->height == SH && m->num_classes == 19);
  uint8_t rgb[SW * SH * 3];
  for (int k = 0; k < 3; k++) {
    CHECK(t2s_shard_read(s, k, rgb, NULL, &err) == T2S_OK);
    int same = 1;
    for (int y = 0; y < SH; y++)
      for (int x = 0; x < SW; x++)
        for (int c = 0; c < 3; c++) same &= rgb[(y * SW + x) * 3 + c] == ref_pixel(50 + k, y, x, c);
    CHECK_MSG(same, "unlabelled image %d differs from its PNG", k);
  }
  t2s_shard_close(s);
  /* without --unlabelled the missing mapping (or labels) is what the user hears about */
  o.unlabelled = 0;
  t2s_import_summary *s2 = calloc(1, sizeof *s2);
  CHECK(t2s_import_run(&o, s2, &err) != T2S_OK && strstr(err.msg, "--unlabelled"));
  free(s2);
}

/* ---- PNG I/O and resize closed forms ---- */

static void test_png_io(void) {
  char p[1400];
  t2s_error err = {0};
  snprintf(p, sizeof p, "%s/io16.png", g_dir);
  uint16_t g16[6] = {0, 257, 65535, 257 * 100, 1234, 40000};
  CHECK(t2s_png_write(p, g16, 3, 2, 1, 16, &err) == T2S_OK);
  uint8_t *rgb = NULL;
  uint16_t *ids = NULL;
  int w = 0, h = 0;
  CHECK(t2s_png_read_rgb(p, &rgb, &w, &h, &err) == T2S_OK && w == 3 && h == 2);
  /* 16-bit grey -> 8-bit RGB: v * 255 / 65535 rounded, replicated in R, G, B */
  if (rgb) {
    CHECK(rgb[0] == 0 && rgb[3] == 1 && rgb[6] == 255 && rgb[9] == 100 && rgb[10] == 100);
    CHECK(rgb[15] == (uint8_t)lround(40000.0 * 255 / 65535) && rgb[16] == rgb[15]);
  }
  free(rgb);
  CHECK(t2s_png_read_label(p, &ids, &w, &h, &err) == T2S_OK);
  CHECK(ids && memcmp(ids, g16, sizeof g16) == 0);
  free(ids);
  /* a palette image read as RGB gives the palette colours */
  snprintf(p, sizeof p, "%s/pal.png", g_dir);
  uint8_t idx[4] = {0, 5, 200, 255};
  write_palette_png(p, idx, 2, 2);
  CHECK(t2s_png_read_rgb(p, &rgb, &w, &h, &err) == T2S_OK);
  if (rgb) CHECK(rgb[3] == 5 && rgb[4] == 250 && rgb[5] == 35 && rgb[6] == 200 && rgb[7] == 55);
  free(rgb);
  CHECK(t2s_png_read_label(p, &ids, &w, &h, &err) == T2S_OK);
  CHECK(ids && ids[0] == 0 && ids[1] == 5 && ids[2] == 200 && ids[3] == 255);
  free(ids);
  /* errors name the file */
  snprintf(p, sizeof p, "%s/not.png", g_dir);
  FILE *f = fopen(p, "w");
  fputs("GIF89a....", f);
  fclose(f);
  t2s_error e1 = {0}, e2 = {0};
  CHECK(t2s_png_read_rgb(p, &rgb, &w, &h, &e1) == T2S_ERR_FORMAT && strstr(e1.msg, p) &&
        strstr(e1.msg, "not a PNG"));
  snprintf(p, sizeof p, "%s/absent.png", g_dir);
  CHECK(t2s_png_read_label(p, &ids, &w, &h, &e2) == T2S_ERR_IO && strstr(e2.msg, p));
}

static void test_resize(void) {
  enum { W = 8, H = 6 };
  uint8_t src[H * W * 3], dst[(H / 2) * (W / 2) * 3], cst[5 * 3 * 3];
  for (int k = 0; k < H * W * 3; k++) src[k] = (uint8_t)((k * 37 + (k / 5) * 11) % 256);
  /* halving with half-pixel centres lands between 2x2 source pixels: their mean */
  t2s_resize_bilinear_rgb(src, W, H, dst, W / 2, H / 2);
  int off = 0;
  for (int y = 0; y < H / 2; y++)
    for (int x = 0; x < W / 2; x++)
      for (int c = 0; c < 3; c++) {
        int s = src[((2 * y) * W + 2 * x) * 3 + c] + src[((2 * y) * W + 2 * x + 1) * 3 + c] +
                src[((2 * y + 1) * W + 2 * x) * 3 + c] + src[((2 * y + 1) * W + 2 * x + 1) * 3 + c];
        off += abs(dst[(y * (W / 2) + x) * 3 + c] - (int)floor(s / 4.0 + 0.5)) > 0;
      }
  CHECK_MSG(off == 0, "%d values of a 2x reduction are not the 2x2 mean", off);
  /* a constant image stays constant at any size */
  memset(src, 77, sizeof src);
  t2s_resize_bilinear_rgb(src, W, H, cst, 5, 3);
  for (int k = 0; k < 45; k++) CHECK(cst[k] == 77);
  /* nearest: floor(d * in / out) */
  uint16_t line[3] = {10, 20, 30}, up[5], down[2];
  t2s_resize_nearest_u16(line, 3, 1, up, 5, 1);
  CHECK(up[0] == 10 && up[1] == 10 && up[2] == 20 && up[3] == 20 && up[4] == 30);
  uint16_t four[4] = {1, 2, 3, 4};
  t2s_resize_nearest_u16(four, 4, 1, down, 2, 1);
  CHECK(down[0] == 1 && down[1] == 3);
  /* the recipe's sizes */
  t2s_import_opts o;
  t2s_import_opts_default(&o, T2S_IMPORT_GTA5);
  CHECK(o.width == 1280 && o.height == 720);
  t2s_import_opts_default(&o, T2S_IMPORT_SYNTHIA);
  CHECK(o.width == 1280 && o.height == 760);
  t2s_import_opts_default(&o, T2S_IMPORT_CITYSCAPES);
  CHECK(o.width == 1024 && o.height == 512);
}

/* ---- DG and adverse-condition layouts (JPEG and PNG trees) ---- */

/* A JPEG of the ref_pixel picture at quality 95: 3 components (stored as YCbCr),
 * 1 (grayscale) or 4 (CMYK, which the importer refuses). */
static void write_jpeg(const char *path, int w, int h, int seed, int components) {
  FILE *f = fopen(path, "wb");
  CHECK_MSG(f != NULL, "cannot create %s", path);
  if (f == NULL) return;
  struct jpeg_compress_struct ci;
  struct jpeg_error_mgr jerr;
  ci.err = jpeg_std_error(&jerr);
  jpeg_create_compress(&ci);
  jpeg_stdio_dest(&ci, f);
  ci.image_width = (JDIMENSION)w;
  ci.image_height = (JDIMENSION)h;
  ci.input_components = components;
  ci.in_color_space = components == 1 ? JCS_GRAYSCALE : (components == 4 ? JCS_CMYK : JCS_RGB);
  jpeg_set_defaults(&ci);
  jpeg_set_quality(&ci, 95, TRUE);
  jpeg_start_compress(&ci, TRUE);
  uint8_t *row = malloc((size_t)w * components);
  while (ci.next_scanline < ci.image_height) {
    int y = (int)ci.next_scanline;
    for (int x = 0; x < w; x++)
      for (int c = 0; c < components; c++) row[x * components + c] = ref_pixel(seed, y, x, c % 3);
    jpeg_write_scanlines(&ci, &row, 1);
  }
  jpeg_finish_compress(&ci);
  jpeg_destroy_compress(&ci);
  fclose(f);
  free(row);
}

/* A label whose pixel holds values[ref_id] (gray or palette PNG). */
static void write_label_values(const char *path, int w, int h, int seed, int n_ids,
                               const int *values, int palette) {
  uint8_t *ids = malloc((size_t)w * h);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) ids[(size_t)y * w + x] = (uint8_t)values[ref_id(seed, y, x, n_ids)];
  t2s_error err = {0};
  if (palette) write_palette_png(path, ids, w, h);
  else CHECK_MSG(t2s_png_write_gray(path, ids, w, h, &err) == T2S_OK, "%s", err.msg);
  free(ids);
}

/* BDD100K masks hold train ids (and 255); the test writes ref id r as BDD_IDS[r]. */
static const int BDD_IDS[20] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 255};
/* Mapillary Vistas v1.2 class id -> Cityscapes train id (docs/datasets.md), by class
 * name: curb and sidewalk -> sidewalk; road, lane marking (general), manhole -> road;
 * pole and utility pole -> pole; the three riders -> rider; on rails -> train. */
static const int VISTAS_TRAIN[66] = {
    255, 255, 1,   4,   255, 255, 3,   255, 255, 255, /* bird .. curb cut */
    255, 255, 255, 0,   255, 1,   255, 2,   255, 11,  /* parking .. person */
    12,  12,  12,  255, 0,   255, 255, 10,  255, 9,   /* bicyclist .. terrain */
    8,   255, 255, 255, 255, 255, 255, 255, 255, 255, /* vegetation .. junction box */
    255, 0,   255, 255, 255, 5,   255, 5,   6,   255, /* mailbox .. sign (back) */
    7,   255, 18,  255, 15,  13,  255, 17,  16,  255, /* sign (front) .. other vehicle */
    255, 14,  255, 255, 255, 255};                    /* trailer .. unlabeled */
static int identity_ids[256];

static t2s_status run_dg(t2s_import_layout layout, const char *root, const char *out,
                         const char *split, const char *condition, int skip_bad, t2s_error *err) {
  t2s_import_opts o;
  t2s_import_opts_default(&o, layout);
  o.root = root, o.out_dir = out, o.split = split, o.skip_bad = skip_bad;
  o.width = TW, o.height = TH;
  if (condition != NULL) o.condition = condition;
  o.strict_labels = g_strict_labels;
  t2s_import_summary *sum = malloc(sizeof *sum);
  t2s_status st = t2s_import_run(&o, sum, err);
  free(sum);
  return st;
}

static void test_bdd100k(void) {
  char root[1200], out[1200], p[1400];
  static char jpg[3][1400];
  snprintf(root, sizeof root, "%s/bdd", g_dir);
  snprintf(out, sizeof out, "%s/bdd_out", g_dir);
  snprintf(p, sizeof p, "%s/images/10k/val", root), mkdirs(p);
  snprintf(p, sizeof p, "%s/labels/sem_seg/masks/val", root), mkdirs(p);
  for (int k = 0; k < 3; k++) {
    /* b2 is a grayscale JPEG: expanded to R = G = B */
    snprintf(jpg[k], sizeof jpg[k], "%s/images/10k/val/b%d.jpg", root, k);
    write_jpeg(jpg[k], SW, SH, 60 + k, k == 2 ? 1 : 3);
    snprintf(p, sizeof p, "%s/labels/sem_seg/masks/val/b%d.png", root, k);
    write_label_values(p, SW, SH, 60 + k, 20, BDD_IDS, 0);
  }
  t2s_error err = {0};
  CHECK_MSG(run_dg(T2S_IMPORT_BDD100K, root, out, "val", NULL, 0, &err) == T2S_OK, "%s", err.msg);
  expect e = {{"b0", "b1", "b2"}, {60, 61, 62}, 3, SW, SH, TW, TH, BDD_IDS, 20, 1,
              {jpg[0], jpg[1], jpg[2]}};
  check_import(out, "bdd100k", "val", &e);
  t2s_import_opts o;
  t2s_import_opts_default(&o, T2S_IMPORT_BDD100K);
  CHECK(o.width == 1280 && o.height == 720);
}

static void test_mapillary(void) {
  char root[1200], out[1200], p[1400];
  static char jpg[1400];
  snprintf(root, sizeof root, "%s/vistas", g_dir);
  snprintf(out, sizeof out, "%s/vistas_out", g_dir);
  for (int v = 0; v < 256; v++) identity_ids[v] = v;
  /* the v2.0 archive's place for the v1.2 labels */
  snprintf(p, sizeof p, "%s/validation/images", root), mkdirs(p);
  snprintf(p, sizeof p, "%s/validation/v1.2/labels", root), mkdirs(p);
  snprintf(jpg, sizeof jpg, "%s/validation/images/m0.jpg", root);
  write_jpeg(jpg, SW, SH, 70, 3);
  /* a PNG under a .jpg name is read by its signature, exactly */
  snprintf(p, sizeof p, "%s/validation/images/m1.jpg", root);
  write_image(p, SW, SH, 71);
  for (int k = 0; k < 2; k++) {
    snprintf(p, sizeof p, "%s/validation/v1.2/labels/m%d.png", root, k);
    write_label_values(p, SW, SH, 70 + k, 66, identity_ids, 1);
  }
  t2s_error err = {0};
  CHECK_MSG(run_dg(T2S_IMPORT_MAPILLARY, root, out, "val", NULL, 0, &err) == T2S_OK, "%s", err.msg);
  expect e = {{"m0", "m1"}, {70, 71}, 2, SW, SH, TW, TH, VISTAS_TRAIN, 66, 1, {jpg, NULL}};
  check_import(out, "mapillary", "val", &e);
  /* an id beyond v1.2's 0..65 becomes 255 (ignore); with --strict-labels it is a bad
   * input naming the file */
  snprintf(p, sizeof p, "%s/validation/v1.2/labels/m1.png", root);
  uint8_t ids[SW * SH];
  memset(ids, 66, sizeof ids);
  write_palette_png(p, ids, SW, SH);
  CHECK_MSG(run_dg(T2S_IMPORT_MAPILLARY, root, out, "val", NULL, 0, &err) == T2S_OK, "%s", err.msg);
  g_strict_labels = 1;
  CHECK(run_dg(T2S_IMPORT_MAPILLARY, root, out, "val", NULL, 0, &err) != T2S_OK);
  g_strict_labels = 0;
  CHECK_MSG(strstr(err.msg, p) && strstr(err.msg, "0..65"), "%s", err.msg);
}

static const char *const CONDITIONS[4] = {"fog", "night", "rain", "snow"};

/* ACDC: every condition, one recording, val split, plus what a real tree also holds. */
static void make_acdc(const char *root) {
  char p[1400];
  for (int c = 0; c < 4; c++)
    for (int k = 0; k < 2; k++) {
      const char *cond = CONDITIONS[c];
      snprintf(p, sizeof p, "%s/rgb_anon/%s/val/GOPR0475", root, cond), mkdirs(p);
      snprintf(p, sizeof p, "%s/gt/%s/val/GOPR0475", root, cond), mkdirs(p);
      snprintf(p, sizeof p, "%s/rgb_anon/%s/val/GOPR0475/GOPR0475_frame_%06d_rgb_anon.png", root,
               cond, 40 + k);
      write_image(p, SW, SH, 80 + 2 * c + k);
      snprintf(p, sizeof p, "%s/gt/%s/val/GOPR0475/GOPR0475_frame_%06d_gt_labelIds.png", root,
               cond, 40 + k);
      write_label(p, SW, SH, 80 + 2 * c + k, 34, LABEL_GRAY8, 0, 0);
      /* the train ids and colour files next to it, and the reference images, are ignored */
      snprintf(p, sizeof p, "%s/gt/%s/val/GOPR0475/GOPR0475_frame_%06d_gt_labelTrainIds.png",
               root, cond, 40 + k);
      write_image(p, 2, 2, 0);
      snprintf(p, sizeof p, "%s/rgb_anon/%s/val_ref/GOPR0475", root, cond), mkdirs(p);
      snprintf(p, sizeof p, "%s/rgb_anon/%s/val_ref/GOPR0475/GOPR0475_frame_%06d_ref_anon.png",
               root, cond, 40 + k);
      write_image(p, 3, 3, 0);
    }
}

static void check_acdc(const char *out, int c) {
  char domain[32];
  snprintf(domain, sizeof domain, "acdc_%s", CONDITIONS[c]);
  expect e = {{"GOPR0475_frame_000040_rgb_anon", "GOPR0475_frame_000041_rgb_anon"},
              {80 + 2 * c, 81 + 2 * c}, 2, SW, SH, TW, TH, CS_TRAIN, 34, 1, {NULL}};
  check_import(out, domain, "val", &e);
}

static void test_acdc(void) {
  char root[1200], out[1200];
  snprintf(root, sizeof root, "%s/acdc", g_dir);
  snprintf(out, sizeof out, "%s/acdc_out", g_dir);
  make_acdc(root);
  t2s_error err = {0};
  CHECK_MSG(run_dg(T2S_IMPORT_ACDC, root, out, "val", "rain", 0, &err) == T2S_OK, "%s", err.msg);
  check_acdc(out, 2);
  /* the condition is required, must be known, and belongs to acdc and darkzurich only */
  t2s_error e1 = {0}, e2 = {0}, e3 = {0};
  CHECK(run_dg(T2S_IMPORT_ACDC, root, out, "val", NULL, 0, &e1) != T2S_OK);
  CHECK_MSG(strstr(e1.msg, "--condition fog|night|rain|snow is required"), "%s", e1.msg);
  CHECK(run_dg(T2S_IMPORT_ACDC, root, out, "val", "hail", 0, &e2) != T2S_OK);
  CHECK_MSG(strstr(e2.msg, "unknown --condition 'hail'"), "%s", e2.msg);
  CHECK(run_dg(T2S_IMPORT_BDD100K, root, out, "val", "fog", 0, &e3) != T2S_OK);
  CHECK_MSG(strstr(e3.msg, "--condition is for the acdc"), "%s", e3.msg);
}

static void test_dark_zurich(void) {
  char root[1200], out[1200], p[1400];
  snprintf(root, sizeof root, "%s/dz", g_dir);
  snprintf(out, sizeof out, "%s/dz_out", g_dir);
  snprintf(p, sizeof p, "%s/rgb_anon/val/night/GOPR0356", root), mkdirs(p);
  snprintf(p, sizeof p, "%s/gt/val/night/GOPR0356", root), mkdirs(p);
  for (int k = 0; k < 2; k++) {
    snprintf(p, sizeof p, "%s/rgb_anon/val/night/GOPR0356/GOPR0356_frame_%06d_rgb_anon.png", root,
             321 + k);
    write_image(p, SW, SH, 90 + k);
    snprintf(p, sizeof p, "%s/gt/val/night/GOPR0356/GOPR0356_frame_%06d_gt_labelIds.png", root,
             321 + k);
    write_label(p, SW, SH, 90 + k, 34, LABEL_GRAY8, 0, 0);
  }
  t2s_error err = {0};
  CHECK_MSG(run_dg(T2S_IMPORT_DARK_ZURICH, root, out, "val", NULL, 0, &err) == T2S_OK, "%s", err.msg);
  expect e = {{"GOPR0356_frame_000321_rgb_anon", "GOPR0356_frame_000322_rgb_anon"}, {90, 91}, 2,
              SW, SH, TW, TH, CS_TRAIN, 34, 1, {NULL}};
  check_import(out, "darkzurich_night", "val", &e);
  /* twilight is a condition of the tree, absent here: the message names where it looked */
  CHECK(run_dg(T2S_IMPORT_DARK_ZURICH, root, out, "val", "twilight", 0, &err) != T2S_OK);
  CHECK_MSG(strstr(err.msg, "rgb_anon/val/twilight"), "%s", err.msg);
}

/* Sets the SOF0 frame size of a JPEG file to 40000 x 40000 (libjpeg accepts up to
 * 65500 per side; the importer refuses it before allocating 4.8 GB). */
static void claim_huge(const char *path) {
  FILE *f = fopen(path, "r+b");
  uint8_t b[4096];
  size_t n = f ? fread(b, 1, sizeof b, f) : 0;
  size_t k = 0;
  while (k + 9 < n && !(b[k] == 0xFF && b[k + 1] == 0xC0)) k++;
  CHECK_MSG(k + 9 < n, "no SOF0 marker in %s", path);
  if (f && k + 9 < n) {
    const uint8_t size[4] = {0x9C, 0x40, 0x9C, 0x40}; /* height, width: big-endian 40000 */
    memcpy(b + k + 5, size, 4); /* after the marker, the length and the precision */
    fseek(f, (long)(k + 5), SEEK_SET);
    fwrite(b + k + 5, 1, 4, f);
  }
  if (f) fclose(f);
}

static void test_bad_jpeg(void) {
  char root[1200], out[1200], p[1400];
  static char jpg[2][1400];
  snprintf(root, sizeof root, "%s/badjpg", g_dir);
  snprintf(out, sizeof out, "%s/badjpg_out", g_dir);
  snprintf(p, sizeof p, "%s/images/10k/train", root), mkdirs(p);
  snprintf(p, sizeof p, "%s/labels/sem_seg/masks/train", root), mkdirs(p);
  const char *names[] = {"a_good", "b_good", "cmyk", "empty", "huge", "text", "trunc"};
  for (int k = 0; k < 7; k++) {
    snprintf(p, sizeof p, "%s/images/10k/train/%s.jpg", root, names[k]);
    if (k < 2) snprintf(jpg[k], sizeof jpg[k], "%s", p);
    write_jpeg(p, SW, SH, 100 + k, strcmp(names[k], "cmyk") == 0 ? 4 : 3);
    if (strcmp(names[k], "empty") == 0) CHECK(truncate(p, 0) == 0);
    if (strcmp(names[k], "huge") == 0) claim_huge(p);
    if (strcmp(names[k], "text") == 0) {
      FILE *f = fopen(p, "w");
      fputs("<html>not found</html>\n", f);
      fclose(f);
    }
    if (strcmp(names[k], "trunc") == 0) {
      struct stat sb;
      CHECK(stat(p, &sb) == 0 && truncate(p, sb.st_size - 20) == 0); /* inside the scan data */
    }
    snprintf(p, sizeof p, "%s/labels/sem_seg/masks/train/%s.png", root, names[k]);
    write_label_values(p, SW, SH, 100 + k, 20, BDD_IDS, 0);
  }
  struct {
    const char *name, *words;
  } bad[] = {{"cmyk", "CMYK"}, {"empty", "shorter than a JPEG header"},
             {"huge", "pixels an image may have"}, {"text", "not a JPEG file"},
             {"trunc", "libjpeg"}};
  t2s_error err = {0};
  CHECK(run_dg(T2S_IMPORT_BDD100K, root, out, "train", NULL, 0, &err) != T2S_OK);
  CHECK_MSG(strstr(err.msg, "5 bad input(s)"), "%s", err.msg);
  CHECK_MSG(count_files(out) == 0, "%d shard file(s) left in %s", count_files(out), out);
  char listing[1400], listed[8192] = "";
  snprintf(listing, sizeof listing, "%s/bad_inputs.txt", out);
  FILE *bf = fopen(listing, "r");
  CHECK_MSG(bf != NULL, "no %s", listing);
  if (bf) {
    listed[fread(listed, 1, sizeof listed - 1, bf)] = '\0';
    fclose(bf);
  }
  printf("  bad JPEGs:\n%s", listed);
  for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
    char line[256];
    snprintf(line, sizeof line, "JPEG %s/images/10k/train/%s.jpg", root, bad[k].name);
    const char *at = strstr(listed, line), *eol = at ? strchr(at, '\n') : NULL;
    const char *hit = at ? strstr(at, bad[k].words) : NULL;
    CHECK_MSG(at && hit && (eol == NULL || hit < eol), "%s: want a line naming %s and saying '%s'",
              listing, line, bad[k].words);
  }
  /* --skip-bad: the two good images are written */
  t2s_error e2 = {0};
  CHECK_MSG(run_dg(T2S_IMPORT_BDD100K, root, out, "train", NULL, 1, &e2) == T2S_OK, "%s", e2.msg);
  expect e = {{"a_good", "b_good"}, {100, 101}, 2, SW, SH, TW, TH, BDD_IDS, 20, 1, {jpg[0], jpg[1]}};
  check_import(out, "bdd100k", "train", &e);
  /* the readers on their own: grey expands to R = G = B, header-only reads refuse the same */
  snprintf(p, sizeof p, "%s/grey.jpg", g_dir);
  write_jpeg(p, SW, SH, 7, 1);
  uint8_t *rgb = NULL;
  int w = 0, h = 0, grey = 1;
  CHECK_MSG(t2s_image_read_rgb(p, &rgb, &w, &h, &err) == T2S_OK && w == SW && h == SH, "%s", err.msg);
  for (int i = 0; rgb && i < SW * SH; i++) grey &= rgb[3 * i] == rgb[3 * i + 1] && rgb[3 * i] == rgb[3 * i + 2];
  CHECK(grey);
  free(rgb);
  snprintf(p, sizeof p, "%s/images/10k/train/huge.jpg", root);
  CHECK(t2s_image_read_info(p, &w, &h, &err) != T2S_OK && strstr(err.msg, p));
}

/* ---- the command-line tool ---- */

static void test_cli(void) {
  const char *bin = getenv("T2S_BINARY_DIR");
  char exe[1200], cmd[4096], out[1200], log[1300], root[1200];
  snprintf(exe, sizeof exe, "%s/bin/t2sda_shards", bin ? bin : ".");
  if (access(exe, X_OK) != 0) {
    printf("note: %s not built; the command line is not checked\n", exe);
    return;
  }
  snprintf(root, sizeof root, "%s/gta", g_dir);
  snprintf(out, sizeof out, "%s/cli_out", g_dir);
  snprintf(log, sizeof log, "%s/cli.log", g_dir);
  snprintf(cmd, sizeof cmd, "'%s' gta5 '%s' '%s' --split val --shards 3 --resize 7 5 > '%s' 2>&1",
           exe, root, out, log);
  CHECK_MSG(system(cmd) == 0, "%s failed", cmd);
  char text[8192] = "";
  FILE *f = fopen(log, "r");
  if (f) {
    size_t got = fread(text, 1, sizeof text - 1, f);
    text[got] = '\0';
    fclose(f);
  }
  CHECK_MSG(strstr(text, "3 images (7x5) in 3 shard(s)") && strstr(text, "traffic light") &&
                strstr(text, "[3/3]"), "unexpected output:\n%s", text);
  char shard[1400];
  snprintf(shard, sizeof shard, "%s/gta5_val-00002-of-00003.h5", out);
  CHECK(access(shard, R_OK) == 0);
  snprintf(cmd, sizeof cmd, "'%s' gta5 '%s/nowhere' '%s' > '%s' 2>&1", exe, g_dir, out, log);
  CHECK_MSG(WEXITSTATUS(system(cmd)) == 1, "a missing tree must exit 1");
  snprintf(cmd, sizeof cmd, "'%s' gta5 a b --shards x > '%s' 2>&1", exe, log);
  CHECK_MSG(WEXITSTATUS(system(cmd)) == 2, "a usage error must exit 2");
  /* ACDC --condition all: one set and domain per condition */
  snprintf(root, sizeof root, "%s/acdc", g_dir);
  snprintf(out, sizeof out, "%s/acdc_cli", g_dir);
  snprintf(cmd, sizeof cmd, "'%s' acdc '%s' '%s' --split val --condition all --resize %d %d > '%s' 2>&1",
           exe, root, out, TW, TH, log);
  CHECK_MSG(system(cmd) == 0, "%s failed", cmd);
  for (int c = 0; c < 4; c++) check_acdc(out, c);
  snprintf(cmd, sizeof cmd, "grep -q 'acdc_snow val: 2 images' '%s'", log);
  CHECK_MSG(system(cmd) == 0, "the summary should name the domain acdc_snow");
  /* --skip-bad: one list per condition, none overwriting another */
  snprintf(cmd, sizeof cmd, "'%s' acdc '%s' '%s' --split val --condition all --resize %d %d "
           "--skip-bad > '%s' 2>&1", exe, root, out, TW, TH, log);
  CHECK_MSG(system(cmd) == 0, "%s failed", cmd);
  for (int c = 0; c < 4; c++) {
    char listing[1400];
    snprintf(listing, sizeof listing, "%s/skipped_acdc_%s.txt", out, CONDITIONS[c]);
    CHECK_MSG(access(listing, R_OK) == 0, "no %s", listing);
  }
  snprintf(cmd, sizeof cmd, "'%s' acdc a b --condition all --domain x > '%s' 2>&1", exe, log);
  CHECK_MSG(WEXITSTATUS(system(cmd)) == 2, "--condition all with --domain must be refused");
  /* t2sda_synth --styles: one labelled validation set per DG style, its own domain */
  snprintf(out, sizeof out, "%s/synth_styles", g_dir);
  snprintf(cmd, sizeof cmd, "%s/bin/t2sda_synth '%s' --source 0 --target 0 --val 3 --size 32 32 "
           "--seed 1 --styles night,storm > '%s' 2>&1", bin ? bin : ".", out, log);
  CHECK_MSG(system(cmd) == 0, "%s failed", cmd);
  const char *styles[] = {"night", "storm"};
  for (int k = 0; k < 2; k++) {
    char path[1400], domain[64];
    snprintf(path, sizeof path, "%s/%s_val-00000-of-00001.h5", out, styles[k]);
    snprintf(domain, sizeof domain, "synthetic_%s", styles[k]);
    t2s_error e = {0};
    t2s_shard *s = t2s_shard_open(path, &e);
    CHECK_MSG(s != NULL, "%s", e.msg);
    if (s == NULL) continue;
    const t2s_shard_meta *m = t2s_shard_info(s);
    CHECK(m->count == 3 && m->has_label && strcmp(m->domain, domain) == 0 &&
          strcmp(m->split, "val") == 0);
    t2s_shard_close(s);
  }
  snprintf(cmd, sizeof cmd, "%s/bin/t2sda_synth '%s' --source 0 --target 0 --val 1 --size 32 32 "
           "--seed 1 --styles hail 2>&1 | grep -q \"unknown style 'hail'\"", bin ? bin : ".", out);
  CHECK_MSG(system(cmd) == 0, "an unknown style must be named");
  /* an unknown layout is named */
  snprintf(cmd, sizeof cmd, "'%s' kitti a b 2>&1 | grep -q \"unknown dataset layout 'kitti'\"", exe);
  CHECK_MSG(system(cmd) == 0, "an unknown layout must be named in the error");
  /* --help works on every tool executable and subcommand: usage on stdout, exit 0 */
  const char *helps[] = {"t2sda_shards --help", "t2sda_shards gta5 --help", "t2sda_synth --help",
                         "t2sda_convert --help", "t2sda_convert import --help",
                         "t2sda_convert inspect --help", "t2sda_bench --help",
                         "t2sda_bench step --help", "t2sda_bench data --help",
                         "t2sda_bench allreduce --help", "t2sda_bench scaling --help",
                         "t2sda_bench selfcheck --help"};
  for (size_t k = 0; k < sizeof helps / sizeof *helps; k++) {
    snprintf(cmd, sizeof cmd, "%s/bin/%s 2>/dev/null | grep -q usage", bin ? bin : ".", helps[k]);
    CHECK_MSG(system(cmd) == 0, "'%s' must print its usage and exit 0", helps[k]);
    snprintf(cmd, sizeof cmd, "%s/bin/%s > /dev/null 2>&1", bin ? bin : ".", helps[k]);
    CHECK_MSG(WEXITSTATUS(system(cmd)) == 0, "'%s' must exit 0", helps[k]);
  }
}

int main(void) {
  const char *base = getenv("T2S_BINARY_DIR");
  snprintf(g_dir, sizeof g_dir, "%s/import_test_XXXXXX", base ? base : "/tmp");
  if (mkdtemp(g_dir) == NULL) {
    fprintf(stderr, "cannot create a directory from %s: %s\n", g_dir, strerror(errno));
    return 1;
  }
  test_resize();
  test_png_io();
  test_gta5();
  test_cityscapes();
  test_synthia();
  test_generic();
  test_bad_inputs();
  test_unmapped_labels();
  test_sets();
  test_unlabelled();
  test_bdd100k();
  test_mapillary();
  test_acdc();
  test_dark_zurich();
  test_bad_jpeg();
  test_cli();
  if (t2s_test_failures == 0) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "note: could not remove %s\n", g_dir);
  }
  return t2s_test_finish("test_shards_import");
}
