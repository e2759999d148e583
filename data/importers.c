#include "data/importers.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/formats/durable_file.h"
#include "data/image_io.h"
#include "data/png_io.h"
#include "data/shard_fast.h"

#define PATH_CAP 4096
#define LIST_SHOWN 5 /* files named in a message about many files */

const char *const t2s_cityscapes_class_names[T2S_CITYSCAPES_CLASSES] = {
    "road",   "sidewalk",   "building", "wall", "fence", "pole",  "traffic light",
    "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car",
    "truck",  "bus",        "train",    "motorcycle", "bicycle"};

/* Cityscapes label ids of the 19 train ids (GTA5 uses the same ids); cityscapesScripts'
 * labels.py, the entries with trainId 0..18. */
const uint8_t t2s_cityscapes_label_ids[T2S_CITYSCAPES_CLASSES] = {7,  8,  11, 12, 13, 17, 19,
                                                                  20, 21, 22, 23, 24, 25, 26,
                                                                  27, 28, 31, 32, 33};

static const char *const layout_names[T2S_IMPORT_NUM_LAYOUTS] = {
    "cityscapes", "gta5", "synthia", "generic", "bdd100k", "mapillary", "acdc", "darkzurich"};

int t2s_import_layout_parse(const char *name, t2s_import_layout *out) {
  for (int k = 0; k < T2S_IMPORT_NUM_LAYOUTS; k++)
    if (name != NULL && strcmp(name, layout_names[k]) == 0) {
      *out = (t2s_import_layout)k;
      return 1;
    }
  return 0;
}

const char *t2s_import_layout_name(t2s_import_layout layout) {
  return (unsigned)layout < T2S_IMPORT_NUM_LAYOUTS ? layout_names[layout] : "unknown";
}

/* ---- label mappings ------------------------------------------------------------ */

static t2s_status mapping_alloc(t2s_label_mapping *m, t2s_error *err) {
  memset(m, 0, sizeof *m);
  m->lut = malloc(65536 * sizeof *m->lut);
  if (m->lut == NULL) return t2s_error_set(err, T2S_ERR_NOMEM, "out of memory for a label mapping");
  for (int v = 0; v < 65536; v++) m->lut[v] = T2S_LABEL_UNMAPPED;
  m->num_classes = T2S_CITYSCAPES_CLASSES;
  for (int c = 0; c < T2S_CITYSCAPES_CLASSES; c++)
    snprintf(m->class_names[c], T2S_CLASS_NAME_MAX, "%s", t2s_cityscapes_class_names[c]);
  return T2S_OK;
}

t2s_status t2s_label_mapping_builtin(t2s_label_mapping *m, t2s_import_layout layout,
                                     t2s_error *err) {
  /* SYNTHIA-RAND-CITYSCAPES ids 0..22 -> train ids (docs/method.md "Datasets") */
  static const int syn_train[23] = {255, 10, 2,  0,  1,  4,  8,  5,  13, 7,  11, 18,
                                    17,  255, 255, 6, 9, 12, 14, 15, 16, 3, 255};
  /* Mapillary Vistas v1.2 class id -> Cityscapes train id; every other id of 0..65 is
   * ignored (the table of docs/datasets.md, as the DG benchmarks use it) */
  static const int vistas[][2] = {
      {13, 0},  {24, 0},  {41, 0},  /* road, lane marking (general), manhole -> road */
      {2, 1},   {15, 1},            /* curb, sidewalk -> sidewalk */
      {17, 2},  {6, 3},   {3, 4},   /* building, wall, fence */
      {45, 5},  {47, 5},            /* pole, utility pole -> pole */
      {48, 6},  {50, 7},            /* traffic light, traffic sign (front) */
      {30, 8},  {29, 9},  {27, 10}, /* vegetation, terrain, sky */
      {19, 11},                     /* person */
      {20, 12}, {21, 12}, {22, 12}, /* bicyclist, motorcyclist, other rider -> rider */
      {55, 13}, {61, 14}, {54, 15}, /* car, truck, bus */
      {58, 16}, {57, 17}, {52, 18}, /* on rails -> train, motorcycle, bicycle */
  };
  if (layout == T2S_IMPORT_GENERIC)
    return t2s_error_set(err, T2S_ERR_INVALID, "generic layout: the mapping comes from a table "
                         "file (--mapping FILE), there is no built-in one");
  t2s_status st = mapping_alloc(m, err);
  if (st != T2S_OK) return st;
  if (layout == T2S_IMPORT_SYNTHIA) {
    for (int v = 0; v < 23; v++) m->lut[v] = (uint16_t)syn_train[v];
    snprintf(m->known, sizeof m->known, "0..22");
  } else if (layout == T2S_IMPORT_BDD100K) {
    /* the masks hold train ids already */
    for (int v = 0; v < T2S_CITYSCAPES_CLASSES; v++) m->lut[v] = (uint16_t)v;
    m->lut[255] = 255;
    snprintf(m->known, sizeof m->known, "0..18 and 255");
  } else if (layout == T2S_IMPORT_MAPILLARY) {
    for (int v = 0; v < 66; v++) m->lut[v] = 255;
    for (size_t k = 0; k < sizeof vistas / sizeof *vistas; k++) m->lut[vistas[k][0]] = (uint16_t)vistas[k][1];
    snprintf(m->known, sizeof m->known, "0..65");
  } else {
    for (int v = 0; v <= 33; v++) m->lut[v] = 255;
    for (int c = 0; c < T2S_CITYSCAPES_CLASSES; c++) m->lut[t2s_cityscapes_label_ids[c]] = (uint16_t)c;
    snprintf(m->known, sizeof m->known, "0..33");
  }
  return T2S_OK;
}

void t2s_label_mapping_free(t2s_label_mapping *m) {
  if (m == NULL) return;
  free(m->lut);
  m->lut = NULL;
}

static int parse_ulong(const char *s, unsigned long max, unsigned long *out) {
  char *end;
  errno = 0;
  if (!isdigit((unsigned char)s[0])) return 0;
  unsigned long v = strtoul(s, &end, 10);
  if (errno || *end || v > max) return 0;
  *out = v;
  return 1;
}

/* "classes a b c": names separated by blanks (use '_' for a space inside a name). */
static t2s_status parse_classes(t2s_label_mapping *m, char *rest, const char *where,
                                t2s_error *err) {
  int n = 0;
  for (char *tok = strtok(rest, " \t"); tok; tok = strtok(NULL, " \t")) {
    if (n == T2S_MAX_CLASSES || strlen(tok) >= T2S_CLASS_NAME_MAX)
      return t2s_error_set(err, T2S_ERR_FORMAT, "%s: more than %d classes or a name longer than "
                           "%d characters ('%s')", where, T2S_MAX_CLASSES, T2S_CLASS_NAME_MAX - 1, tok);
    snprintf(m->class_names[n++], T2S_CLASS_NAME_MAX, "%s", tok);
  }
  if (n == 0) return t2s_error_set(err, T2S_ERR_FORMAT, "%s: 'classes' lists no class", where);
  m->num_classes = n;
  return T2S_OK;
}

/* "ID TRAIN" or "LO-HI TRAIN". */
static t2s_status parse_rule(t2s_label_mapping *m, char *line, const char *where, t2s_error *err) {
  char *ids = strtok(line, " \t"), *train = strtok(NULL, " \t"), *extra = strtok(NULL, " \t");
  unsigned long lo = 0, hi = 0, t = 0;
  char *dash = ids ? strchr(ids, '-') : NULL;
  if (dash) *dash = '\0';
  int ok = ids && train && !extra && parse_ulong(ids, 65535, &lo) &&
           (dash ? parse_ulong(dash + 1, 65535, &hi) : (hi = lo, 1)) && lo <= hi &&
           parse_ulong(train, 255, &t);
  if (!ok)
    return t2s_error_set(err, T2S_ERR_FORMAT, "%s: expected 'ID TRAIN_ID' or 'LO-HI TRAIN_ID' "
                         "(ids 0..65535, train ids 0..254 or 255 for ignore), or 'classes NAME ...'",
                         where);
  for (unsigned long v = lo; v <= hi; v++) m->lut[v] = (uint16_t)t;
  return T2S_OK;
}

/* Summarises which ids a loaded table knows, as "lo..hi" or "N ids in lo..hi". */
static void describe_known(t2s_label_mapping *m) {
  int lo = -1, hi = -1, n = 0;
  for (int v = 0; v < 65536; v++)
    if (m->lut[v] != T2S_LABEL_UNMAPPED) {
      if (lo < 0) lo = v;
      hi = v;
      n++;
    }
  if (n == 0) snprintf(m->known, sizeof m->known, "none");
  else if (n == hi - lo + 1) snprintf(m->known, sizeof m->known, "%d..%d", lo, hi);
  else snprintf(m->known, sizeof m->known, "%d ids in %d..%d", n, lo, hi);
}

t2s_status t2s_label_mapping_load(t2s_label_mapping *m, const char *path, t2s_error *err) {
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return t2s_error_set(err, T2S_ERR_IO, "mapping table %s: cannot open: %s", path, strerror(errno));
  t2s_status st = mapping_alloc(m, err);
  char line[8192], where[PATH_CAP + 32];
  for (int ln = 1; st == T2S_OK && fgets(line, sizeof line, f); ln++) {
    snprintf(where, sizeof where, "mapping table %s:%d", path, ln);
    char *hash = strchr(line, '#');
    if (hash) *hash = '\0';
    line[strcspn(line, "\r\n")] = '\0';
    char *p = line;
    while (isspace((unsigned char)*p)) p++;
    if (*p == '\0') continue;
    if (strncmp(p, "classes", 7) == 0 && isspace((unsigned char)p[7])) st = parse_classes(m, p + 8, where, err);
    else st = parse_rule(m, p, where, err);
  }
  fclose(f);
  for (int v = 0; st == T2S_OK && v < 65536; v++)
    if (m->lut[v] != T2S_LABEL_UNMAPPED && m->lut[v] != 255 && m->lut[v] >= m->num_classes)
      st = t2s_error_set(err, T2S_ERR_FORMAT, "mapping table %s: id %d maps to train id %u but "
                         "there are only %d classes (0..%d, 255 = ignore)", path, v, m->lut[v],
                         m->num_classes, m->num_classes - 1);
  if (st == T2S_OK) describe_known(m);
  if (st != T2S_OK) t2s_label_mapping_free(m);
  return st;
}

/* ---- resizing ----------------------------------------------------------------- */

/* OpenCV's source coordinate for output index d: (d + 0.5) * in/out - 0.5, split
 * into a base index and a weight; outside the image it clamps to the border pixel. */
static void linear_coords(int in, int out, int *i0, int *i1, float *w1) {
  double scale = (double)in / out;
  for (int d = 0; d < out; d++) {
    double f = (d + 0.5) * scale - 0.5;
    int s = (int)floor(f);
    double a = f - s;
    if (s < 0) s = 0, a = 0;
    if (s >= in - 1) s = in - 1, a = 0;
    i0[d] = s;
    i1[d] = s + 1 < in ? s + 1 : in - 1;
    w1[d] = (float)a;
  }
}

void t2s_resize_bilinear_rgb(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh) {
  int *x0 = malloc((size_t)dw * sizeof *x0), *x1 = malloc((size_t)dw * sizeof *x1);
  int *y0 = malloc((size_t)dh * sizeof *y0), *y1 = malloc((size_t)dh * sizeof *y1);
  float *ax = malloc((size_t)dw * sizeof *ax), *ay = malloc((size_t)dh * sizeof *ay);
  if (x0 && x1 && y0 && y1 && ax && ay) {
    linear_coords(sw, dw, x0, x1, ax);
    linear_coords(sh, dh, y0, y1, ay);
    for (int y = 0; y < dh; y++) {
      const uint8_t *r0 = src + (size_t)y0[y] * sw * 3, *r1 = src + (size_t)y1[y] * sw * 3;
      uint8_t *o = dst + (size_t)y * dw * 3;
      float b = ay[y];
      for (int x = 0; x < dw; x++) {
        float a = ax[x];
        for (int c = 0; c < 3; c++) {
          float top = (1 - a) * r0[x0[x] * 3 + c] + a * r0[x1[x] * 3 + c];
          float bot = (1 - a) * r1[x0[x] * 3 + c] + a * r1[x1[x] * 3 + c];
          float v = (1 - b) * top + b * bot;
          o[x * 3 + c] = (uint8_t)(v + 0.5f > 255.f ? 255 : (int)(v + 0.5f));
        }
      }
    }
  }
  free(x0), free(x1), free(y0), free(y1), free(ax), free(ay);
}

void t2s_resize_nearest_u16(const uint16_t *src, int sw, int sh, uint16_t *dst, int dw, int dh) {
  for (int y = 0; y < dh; y++) {
    const uint16_t *row = src + (size_t)((int64_t)y * sh / dh) * sw;
    for (int x = 0; x < dw; x++) dst[(size_t)y * dw + x] = row[(int64_t)x * sw / dw];
  }
}

/* ---- scanning the tree ------------------------------------------------------------ */

typedef struct import_item {
  char *image, *label, *name;
} import_item;

typedef struct str_list {
  char **v;
  int64_t n, cap;
} str_list;

static int list_push(str_list *l, char *s) {
  if (s == NULL) return 0;
  if (l->n == l->cap) {
    int64_t cap = l->cap ? 2 * l->cap : 64;
    char **v = realloc(l->v, (size_t)cap * sizeof *v);
    if (v == NULL) {
      free(s);
      return 0;
    }
    l->v = v;
    l->cap = cap;
  }
  l->v[l->n++] = s;
  return 1;
}

static void list_free(str_list *l) {
  for (int64_t k = 0; k < l->n; k++) free(l->v[k]);
  free(l->v);
  memset(l, 0, sizeof *l);
}

static char *str_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *str_printf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
  if (s != NULL) {
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
  }
  return s;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcasecmp(s + n - k, suffix) == 0;
}

/* Sorted names of the subdirectories (want_dirs) or of the files ending in suffix. */
static t2s_status list_dir(const char *dir, int want_dirs, const char *suffix, str_list *out,
                           const char *what, t2s_error *err) {
  DIR *d = opendir(dir);
  if (d == NULL)
    return t2s_error_set(err, T2S_ERR_IO, "%s: cannot open directory %s: %s", what, dir,
                         strerror(errno));
  t2s_status st = T2S_OK;
  for (struct dirent *e; st == T2S_OK && (e = readdir(d)) != NULL;) {
    if (e->d_name[0] == '.') continue;
    char path[PATH_CAP];
    struct stat sb;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    if (stat(path, &sb) != 0) continue;
    int is_dir = S_ISDIR(sb.st_mode);
    if (want_dirs ? !is_dir : (is_dir || !ends_with(e->d_name, suffix))) continue;
    if (!list_push(out, strdup(e->d_name)))
      st = t2s_error_set(err, T2S_ERR_NOMEM, "%s: out of memory listing %s", what, dir);
  }
  closedir(d);
  if (st == T2S_OK && out->n > 0) qsort(out->v, (size_t)out->n, sizeof *out->v, cmp_str);
  return st;
}

typedef struct import_scan {
  import_item *items;
  int64_t n;
  str_list missing; /* labels that do not exist, as "label X for image Y" */
  int unlabelled;   /* images only: items have no label */
} import_scan;

static t2s_status scan_push(import_scan *sc, int64_t *cap, char *image, char *label, char *name,
                            t2s_error *err) {
  if (sc->n == *cap) {
    int64_t c = *cap ? 2 * *cap : 256;
    import_item *v = realloc(sc->items, (size_t)c * sizeof *v);
    if (v == NULL) goto oom;
    sc->items = v;
    *cap = c;
  }
  if (sc->unlabelled) {
    free(label);
    label = NULL;
  } else if (label == NULL) {
    goto oom;
  }
  if (image == NULL || name == NULL) goto oom;
  if (label != NULL && access(label, F_OK) != 0) {
    if (!list_push(&sc->missing, str_printf("%s: the label %s is missing", image, label)))
      goto oom;
    free(image), free(label), free(name);
    return T2S_OK;
  }
  sc->items[sc->n++] = (import_item){image, label, name};
  return T2S_OK;
oom:
  free(image), free(label), free(name);
  return t2s_error_set(err, T2S_ERR_NOMEM, "out of memory listing the dataset");
}

static char *stem_of(const char *file, const char *suffix) {
  size_t n = strlen(file) - strlen(suffix);
  return strndup(file, n);
}

/* Pairs IMAGE_DIR/<x><img_suffix> with LABEL_DIR/<x>.png (gta5, synthia, generic:
 * ".png"; bdd100k, mapillary: ".jpg"). */
static t2s_status scan_pairs(const char *img_dir, const char *img_suffix, const char *lab_dir,
                             const char *what, import_scan *sc, t2s_error *err) {
  str_list files = {0};
  int64_t cap = 0;
  t2s_status st = list_dir(img_dir, 0, img_suffix, &files, what, err);
  for (int64_t k = 0; st == T2S_OK && k < files.n; k++) {
    const char *f = files.v[k];
    char *stem = stem_of(f, img_suffix);
    st = scan_push(sc, &cap, str_printf("%s/%s", img_dir, f),
                   stem ? str_printf("%s/%s.png", lab_dir, stem) : NULL, stem, err);
  }
  list_free(&files);
  return st;
}

/* IMG_ROOT/<group>/<prefix><img_suffix> with LAB_ROOT/<group>/<prefix><lab_suffix>:
 * Cityscapes (groups are cities), ACDC and Dark Zurich (groups are recordings).
 * Items are named after the image file without ".png". */
static t2s_status scan_nested(const char *img_root, const char *lab_root, const char *img_suffix,
                              const char *lab_suffix, const char *what, import_scan *sc,
                              t2s_error *err) {
  str_list groups = {0};
  int64_t cap = 0;
  t2s_status st = list_dir(img_root, 1, "", &groups, what, err);
  for (int64_t c = 0; st == T2S_OK && c < groups.n; c++) {
    char dir[PATH_CAP];
    snprintf(dir, sizeof dir, "%s/%s", img_root, groups.v[c]);
    str_list files = {0};
    st = list_dir(dir, 0, img_suffix, &files, what, err);
    for (int64_t k = 0; st == T2S_OK && k < files.n; k++) {
      const char *f = files.v[k];
      char *prefix = stem_of(f, img_suffix);
      st = scan_push(sc, &cap, str_printf("%s/%s", dir, f),
                     prefix ? str_printf("%s/%s/%s%s", lab_root, groups.v[c], prefix, lab_suffix)
                            : NULL,
                     stem_of(f, ".png"), err);
      free(prefix);
    }
    list_free(&files);
  }
  list_free(&groups);
  return st;
}

/* Vistas' split directories; the v2.0 archive keeps the v1.2 labels one level down. */
static void mapillary_dirs(const t2s_import_opts *o, char *img, char *lab, size_t size) {
  const char *dir = strcmp(o->split, "train") == 0 ? "training"
                    : strcmp(o->split, "val") == 0 ? "validation"
                    : strcmp(o->split, "test") == 0 ? "testing" : o->split;
  snprintf(img, size, "%s/%s/images", o->root, dir);
  snprintf(lab, size, "%s/%s/labels", o->root, dir);
  char v12[PATH_CAP];
  snprintf(v12, sizeof v12, "%s/%s/v1.2/labels", o->root, dir);
  if (access(lab, F_OK) != 0 && access(v12, F_OK) == 0) snprintf(lab, size, "%s", v12);
}

static const char *under_root(const char *root, const char *dir, char *buf, size_t size) {
  if (dir[0] == '/') snprintf(buf, size, "%s", dir);
  else snprintf(buf, size, "%s/%s", root, dir);
  return buf;
}

static t2s_status scan_tree(const t2s_import_opts *o, import_scan *sc, char *where, size_t wsize,
                            t2s_error *err) {
  char img[PATH_CAP], lab[PATH_CAP];
  const char *name = t2s_import_layout_name(o->layout), *suffix = ".png";
  switch (o->layout) {
    case T2S_IMPORT_CITYSCAPES:
      snprintf(img, sizeof img, "%s/leftImg8bit/%s", o->root, o->split);
      snprintf(lab, sizeof lab, "%s/gtFine/%s", o->root, o->split);
      snprintf(where, wsize, "%s/<city>/*_leftImg8bit.png", img);
      return scan_nested(img, lab, "_leftImg8bit.png", "_gtFine_labelIds.png", name, sc, err);
    case T2S_IMPORT_ACDC:
    case T2S_IMPORT_DARK_ZURICH:
      if (o->layout == T2S_IMPORT_ACDC) {
        snprintf(img, sizeof img, "%s/rgb_anon/%s/%s", o->root, o->condition, o->split);
        snprintf(lab, sizeof lab, "%s/gt/%s/%s", o->root, o->condition, o->split);
      } else {
        snprintf(img, sizeof img, "%s/rgb_anon/%s/%s", o->root, o->split, o->condition);
        snprintf(lab, sizeof lab, "%s/gt/%s/%s", o->root, o->split, o->condition);
      }
      snprintf(where, wsize, "%s/<recording>/*_rgb_anon.png", img);
      return scan_nested(img, lab, "_rgb_anon.png", "_gt_labelIds.png", name, sc, err);
    case T2S_IMPORT_BDD100K:
      snprintf(img, sizeof img, "%s/images/10k/%s", o->root, o->split);
      snprintf(lab, sizeof lab, "%s/labels/sem_seg/masks/%s", o->root, o->split);
      suffix = ".jpg";
      break;
    case T2S_IMPORT_MAPILLARY:
      mapillary_dirs(o, img, lab, sizeof img);
      suffix = ".jpg";
      break;
    case T2S_IMPORT_GTA5:
      under_root(o->root, "images", img, sizeof img);
      under_root(o->root, "labels", lab, sizeof lab);
      break;
    case T2S_IMPORT_SYNTHIA:
      under_root(o->root, "RGB", img, sizeof img);
      under_root(o->root, "GT/LABELS", lab, sizeof lab);
      break;
    case T2S_IMPORT_GENERIC:
      under_root(o->root, o->image_dir ? o->image_dir : "images", img, sizeof img);
      under_root(o->root, o->label_dir ? o->label_dir : "labels", lab, sizeof lab);
      break;
    case T2S_IMPORT_NUM_LAYOUTS:
      return t2s_error_set(err, T2S_ERR_INVALID, "import: unknown layout %d", (int)o->layout);
  }
  snprintf(where, wsize, "%s/*%s", img, suffix);
  return scan_pairs(img, suffix, lab, name, sc, err);
}

static void scan_free(import_scan *sc) {
  for (int64_t k = 0; k < sc->n; k++)
    free(sc->items[k].image), free(sc->items[k].label), free(sc->items[k].name);
  free(sc->items);
  list_free(&sc->missing);
  memset(sc, 0, sizeof *sc);
}

/* ---- one image: decode, check, resize, map, compress (worker threads, no HDF5) ---- */

typedef struct count_pair {
  uint32_t id;
  int64_t count;
} count_pair;

typedef struct slot {
  int ready;
  int64_t index;
  int bad;                 /* the input is unusable: reason says why */
  char reason[T2S_ERROR_MAX];
  t2s_shard_item item;
  int64_t ignored;         /* label pixels at 255 */
  struct count_pair *unmapped; /* ids outside the mapping (made 255) x pixels, or NULL */
  int n_unmapped;
} slot;

typedef struct pipeline {
  const t2s_import_opts *o;
  const import_item *items;
  int64_t n;
  const t2s_label_mapping *map;
  t2s_shard_meta meta;     /* size and classes of every shard */
  int resize;              /* 0: images must already have meta's size (generic, no --resize) */
  pthread_mutex_t mu;
  pthread_cond_t cv_ready, cv_free;
  int64_t next, written;
  int window, stop;
  slot *slots;
} pipeline;


static int cmp_count_desc(const void *a, const void *b) {
  const count_pair *x = a, *y = b;
  return (x->count < y->count) - (x->count > y->count);
}

/* The ids of `ids` outside the mapping with their pixel counts, most pixels first:
 * *pairs (malloc'd) and *np; returns 0 when out of memory. *np == 0: none. */
static int unmapped_ids(const uint16_t *ids, size_t n, const t2s_label_mapping *m,
                        count_pair **pairs, int *np) {
  *pairs = NULL;
  *np = 0;
  size_t first = 0;
  while (first < n && m->lut[ids[first]] != T2S_LABEL_UNMAPPED) first++;
  if (first == n) return 1;
  int64_t *hist = calloc(65536, sizeof *hist);
  if (hist == NULL) return 0;
  int distinct = 0;
  for (size_t p = first; p < n; p++)
    if (m->lut[ids[p]] == T2S_LABEL_UNMAPPED) distinct += hist[ids[p]]++ == 0;
  *pairs = malloc((size_t)distinct * sizeof **pairs);
  if (*pairs == NULL) return free(hist), 0;
  for (uint32_t v = 0; v < 65536; v++)
    if (hist[v]) (*pairs)[(*np)++] = (count_pair){v, hist[v]};
  qsort(*pairs, (size_t)*np, sizeof **pairs, cmp_count_desc);
  free(hist);
  return 1;
}

/* --strict-labels: the refusal of a label with ids outside the mapping, with its histogram. */
static void unmapped_refusal(const count_pair *pairs, int np, const t2s_label_mapping *m,
                             const char *label_path, const char *layout, char *msg, size_t cap) {
  int64_t total = 0;
  for (int k = 0; k < np; k++) total += pairs[k].count;
  size_t used = (size_t)snprintf(msg, cap, "label %s: %" PRId64 " pixel(s) have ids outside the "
                                 "%s mapping (known ids %s); unmapped id x pixels:", label_path,
                                 total, layout, m->known);
  for (int k = 0; k < np && k < 8 && used < cap; k++)
    used += (size_t)snprintf(msg + used, cap - used, "%s %u x %" PRId64, k ? "," : "", pairs[k].id,
                             pairs[k].count);
  if (np > 8 && used < cap) used += (size_t)snprintf(msg + used, cap - used, ", and %d more ids", np - 8);
  if (used < cap)
    snprintf(msg + used, cap - used, " (refused by --strict-labels; without it they become 255, ignore)");
}

/* Ids outside the mapping: refused with --strict-labels; otherwise kept in the slot
 * for the run's histogram (they map to 255 like any ignored id). 0: refused. */
static int check_unmapped(const pipeline *p, const import_item *it, const uint16_t *ids, size_t n,
                          slot *sl) {
  count_pair *pairs = NULL;
  int np = 0;
  if (!unmapped_ids(ids, n, p->map, &pairs, &np)) {
    snprintf(sl->reason, sizeof sl->reason, "out of memory counting the label ids of %s", it->label);
    return 0;
  }
  if (np > 0 && p->o->strict_labels) {
    unmapped_refusal(pairs, np, p->map, it->label, t2s_import_layout_name(p->o->layout),
                     sl->reason, sizeof sl->reason);
    free(pairs);
    return 0;
  }
  sl->unmapped = pairs;
  sl->n_unmapped = np;
  return 1;
}

/* Reads and checks the label of item it (already known to be the image's size).
 * Returns the mapped, resized train-id map or NULL with sl->reason set. */
static uint8_t *prepare_label(const pipeline *p, const import_item *it, int sw, int sh, slot *sl) {
  t2s_error e = {0};
  uint16_t *ids = NULL, *resized = NULL;
  int lw = 0, lh = 0, tw = p->meta.width, th = p->meta.height;
  uint8_t *out = NULL;
  if (t2s_png_read_label(it->label, &ids, &lw, &lh, &e) != T2S_OK) {
    snprintf(sl->reason, sizeof sl->reason, "%s", e.msg);
  } else if (lw != sw || lh != sh) {
    snprintf(sl->reason, sizeof sl->reason, "label %s is %dx%d but its image %s is %dx%d (WxH); "
             "the pair does not belong together", it->label, lw, lh, it->image, sw, sh);
  } else if (check_unmapped(p, it, ids, (size_t)lw * lh, sl)) {
    const uint16_t *src = ids;
    if (lw != tw || lh != th) {
      resized = malloc((size_t)tw * th * sizeof *resized);
      if (resized) t2s_resize_nearest_u16(ids, lw, lh, resized, tw, th);
      src = resized;
    }
    out = src ? malloc((size_t)tw * th) : NULL;
    if (out == NULL) {
      snprintf(sl->reason, sizeof sl->reason, "out of memory resizing %s", it->label);
    } else {
      for (size_t q = 0; q < (size_t)tw * th; q++) {
        uint16_t t = p->map->lut[src[q]];
        out[q] = t == T2S_LABEL_UNMAPPED ? 255 : (uint8_t)t;
        sl->ignored += out[q] == 255;
      }
    }
  }
  free(ids);
  free(resized);
  return out;
}

static void process_item(const pipeline *p, const import_item *it, slot *sl) {
  t2s_error e = {0};
  uint8_t *rgb = NULL, *resized = NULL, *label = NULL;
  int sw = 0, sh = 0, tw = p->meta.width, th = p->meta.height;
  sl->bad = 1;
  sl->reason[0] = '\0';
  sl->ignored = 0;
  sl->unmapped = NULL;
  sl->n_unmapped = 0;
  if (t2s_image_read_rgb(it->image, &rgb, &sw, &sh, &e) != T2S_OK) {
    snprintf(sl->reason, sizeof sl->reason, "%s", e.msg);
  } else if (!p->resize && (sw != tw || sh != th)) {
    snprintf(sl->reason, sizeof sl->reason, "image %s is %dx%d but the first image is %dx%d; all "
             "images of a shard have one size: pass --resize W H", it->image, sw, sh, tw, th);
  } else if (it->label == NULL || (label = prepare_label(p, it, sw, sh, sl)) != NULL) {
    const uint8_t *img = rgb;
    if (sw != tw || sh != th) {
      resized = malloc((size_t)tw * th * 3);
      if (resized) t2s_resize_bilinear_rgb(rgb, sw, sh, resized, tw, th);
      img = resized;
    }
    if (img == NULL)
      snprintf(sl->reason, sizeof sl->reason, "out of memory resizing %s", it->image);
    else if (t2s_shard_encode_item(&p->meta, p->o->deflate_level, img, label, &sl->item, &e) != T2S_OK)
      snprintf(sl->reason, sizeof sl->reason, "%s: %s", it->image, e.msg);
    else {
      /* /orig_size: predictions can be written back at the source resolution */
      sl->item.orig_height = sh;
      sl->item.orig_width = sw;
      sl->bad = 0;
    }
  }
  free(rgb);
  free(resized);
  free(label);
}

/* Workers claim items in order, at most `window` ahead of the writer. */
static void *worker_main(void *arg) {
  pipeline *p = arg;
  for (;;) {
    pthread_mutex_lock(&p->mu);
    while (!p->stop && p->next < p->n && p->next - p->written >= p->window)
      pthread_cond_wait(&p->cv_free, &p->mu);
    if (p->stop || p->next >= p->n) {
      pthread_mutex_unlock(&p->mu);
      return NULL;
    }
    int64_t i = p->next++;
    slot *sl = &p->slots[i % p->window];
    pthread_mutex_unlock(&p->mu);
    process_item(p, &p->items[i], sl);
    pthread_mutex_lock(&p->mu);
    sl->index = i;
    sl->ready = 1;
    pthread_cond_broadcast(&p->cv_ready);
    pthread_mutex_unlock(&p->mu);
  }
}

/* ---- writing (this thread only: all HDF5 calls) ------------------------------------- */

typedef struct shard_set {
  int k;
  char (*final)[PATH_CAP];
  char (*staged)[PATH_CAP + 8];
  int committed;             /* shards 0..committed-1 are complete under their staged names */
  t2s_shard_writer *open;    /* the shard being written */
  int open_index;
} shard_set;

static void shards_discard(shard_set *ss) {
  if (ss->open) t2s_shard_writer_abort(ss->open);
  ss->open = NULL;
  for (int s = 0; s < ss->committed; s++) unlink(ss->staged[s]);
  ss->committed = 0;
}

/* Makes shard s the open one, committing (to its staged name) every earlier shard. */
static t2s_status shards_advance(shard_set *ss, int s, const t2s_shard_meta *meta, int level,
                                 t2s_error *err) {
  while (ss->open_index < s) {
    if (ss->open) {
      t2s_status st = t2s_shard_writer_commit(ss->open, err);
      ss->open = NULL;
      if (st != T2S_OK) return st;
      ss->committed++;
    }
    ss->open_index++;
    if (ss->open_index < ss->k) {
      ss->open = t2s_shard_writer_open(ss->staged[ss->open_index], meta, level, err);
      if (ss->open == NULL) return err ? err->status : T2S_ERR_IO;
    }
  }
  return T2S_OK;
}

/* Moves every staged shard to its final name (only after all were written). */
static t2s_status shards_publish(shard_set *ss, const char *out_dir, t2s_error *err) {
  for (int s = 0; s < ss->k; s++)
    if (rename(ss->staged[s], ss->final[s]) != 0)
      return t2s_error_set(err, T2S_ERR_IO, "renaming %s to %s failed: %s", ss->staged[s],
                           ss->final[s], strerror(errno));
  int fd = open(out_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd); /* best effort: some filesystems refuse to sync a directory */
    close(fd);
  }
  return T2S_OK;
}

typedef struct run_state {
  const t2s_import_opts *o;
  pipeline *p;
  shard_set ss;
  str_list skipped;
  str_list bad;             /* without skip_bad: every bad input, reported at the end */
  str_list other_set;       /* shards of another set of this domain/split in OUT */
  t2s_import_summary *sum;
  int64_t *unmapped_pixels; /* 65536 each, allocated at the first id outside the mapping */
  int64_t *unmapped_images;
} run_state;

/* Adds one written image's ids outside the mapping to the run's histogram. */
static t2s_status count_unmapped(run_state *r, const slot *sl, t2s_error *err) {
  if (sl->n_unmapped == 0) return T2S_OK;
  if (r->unmapped_pixels == NULL) {
    r->unmapped_pixels = calloc(65536, sizeof *r->unmapped_pixels);
    r->unmapped_images = calloc(65536, sizeof *r->unmapped_images);
    if (r->unmapped_pixels == NULL || r->unmapped_images == NULL)
      return t2s_error_set(err, T2S_ERR_NOMEM, "out of memory for the unmapped label histogram");
  }
  for (int k = 0; k < sl->n_unmapped; k++) {
    r->unmapped_pixels[sl->unmapped[k].id] += sl->unmapped[k].count;
    r->unmapped_images[sl->unmapped[k].id]++;
  }
  r->sum->unmapped_images++;
  return T2S_OK;
}

static t2s_status write_one(run_state *r, int64_t i, slot *sl, t2s_error *err) {
  const pipeline *p = r->p;
  int s = (int)(i * r->ss.k / p->n);
  t2s_status st = shards_advance(&r->ss, s, &p->meta, r->o->deflate_level, err);
  if (st != T2S_OK) return st;
  if (sl->bad && !r->o->skip_bad) {
    /* keep going: the run reports every bad input at its end */
    if (!list_push(&r->bad, strdup(sl->reason)))
      return t2s_error_set(err, T2S_ERR_NOMEM, "out of memory listing bad inputs");
    return T2S_OK;
  }
  if (r->bad.n > 0) return T2S_OK; /* the run fails anyway: only look for more bad inputs */
  if (sl->bad) {
    if (!list_push(&r->skipped, strdup(sl->reason)))
      return t2s_error_set(err, T2S_ERR_NOMEM, "out of memory listing skipped inputs");
    r->sum->skipped++;
    return T2S_OK;
  }
  st = t2s_shard_writer_add_item(r->ss.open, p->items[i].name, &sl->item, err);
  if (st == T2S_OK) st = count_unmapped(r, sl, err);
  if (st != T2S_OK) return st;
  r->sum->images++;
  r->sum->resized += sl->item.orig_height != p->meta.height || sl->item.orig_width != p->meta.width;
  r->sum->ignored_pixels += sl->ignored;
  for (int c = 0; c < p->meta.num_classes; c++) r->sum->class_pixels[c] += sl->item.class_pixels[c];
  return T2S_OK;
}

/* The writer loop: takes items in order as the workers finish them. */
static t2s_status write_all(run_state *r, t2s_error *err) {
  pipeline *p = r->p;
  t2s_status st = T2S_OK;
  for (int64_t i = 0; i < p->n && st == T2S_OK; i++) {
    if (r->o->cancel != NULL && *r->o->cancel)
      st = t2s_error_set(err, T2S_ERR_INVALID, "interrupted after %" PRId64 " of %" PRId64
                         " images; the partial shards were removed", i, p->n);
    if (st != T2S_OK) break;
    slot *sl = &p->slots[i % p->window];
    pthread_mutex_lock(&p->mu);
    while (!(sl->ready && sl->index == i)) pthread_cond_wait(&p->cv_ready, &p->mu);
    pthread_mutex_unlock(&p->mu);
    st = write_one(r, i, sl, err);
    t2s_shard_item_free(&sl->item);
    free(sl->unmapped);
    sl->unmapped = NULL;
    pthread_mutex_lock(&p->mu);
    sl->ready = 0;
    p->written = i + 1;
    if (st != T2S_OK) p->stop = 1;
    pthread_cond_broadcast(&p->cv_free);
    pthread_mutex_unlock(&p->mu);
    if (r->o->progress) r->o->progress(r->o->progress_user, i + 1, p->n, r->sum->skipped);
  }
  if (st == T2S_OK) st = shards_advance(&r->ss, r->ss.k, &p->meta, r->o->deflate_level, err);
  return st;
}

static t2s_status run_pipeline(run_state *r, t2s_error *err) {
  pipeline *p = r->p;
  int nt = r->o->threads > 0 ? r->o->threads : 2;
  p->window = 2 * nt + 2;
  p->slots = calloc((size_t)p->window, sizeof *p->slots);
  pthread_t *th = calloc((size_t)nt, sizeof *th);
  if (p->slots == NULL || th == NULL) {
    free(p->slots), free(th);
    return t2s_error_set(err, T2S_ERR_NOMEM, "out of memory for %d import threads", nt);
  }
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv_ready, NULL);
  pthread_cond_init(&p->cv_free, NULL);
  int started = 0;
  for (; started < nt; started++)
    if (pthread_create(&th[started], NULL, worker_main, p) != 0) break;
  t2s_status st = started == 0 ? t2s_error_set(err, T2S_ERR_BACKEND, "cannot start import threads")
                               : write_all(r, err);
  if (st != T2S_OK) {
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv_free);
    pthread_mutex_unlock(&p->mu);
  }
  for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
  for (int k = 0; k < p->window; k++) t2s_shard_item_free(&p->slots[k].item), free(p->slots[k].unmapped);
  pthread_cond_destroy(&p->cv_free);
  pthread_cond_destroy(&p->cv_ready);
  pthread_mutex_destroy(&p->mu);
  free(p->slots);
  free(th);
  return st;
}

/* ---- the whole import ------------------------------------------------------------- */

void t2s_import_opts_default(t2s_import_opts *o, t2s_import_layout layout) {
  memset(o, 0, sizeof *o);
  o->layout = layout;
  o->split = "train";
  o->shards = 1;
  o->threads = 2;
  o->deflate_level = 3;
  switch (layout) {
    case T2S_IMPORT_CITYSCAPES: o->width = 1024, o->height = 512; break;
    case T2S_IMPORT_GTA5: o->width = 1280, o->height = 720; break;
    case T2S_IMPORT_SYNTHIA: o->width = 1280, o->height = 760; break;
    case T2S_IMPORT_BDD100K: o->width = 1280, o->height = 720; break;
    case T2S_IMPORT_MAPILLARY: o->width = 1024, o->height = 512; break;
    case T2S_IMPORT_ACDC: o->width = 960, o->height = 540; break;
    case T2S_IMPORT_DARK_ZURICH:
      o->width = 960, o->height = 540;
      o->condition = "night";
      break;
    case T2S_IMPORT_GENERIC:
    case T2S_IMPORT_NUM_LAYOUTS: break;
  }
}

static t2s_status make_dirs(const char *dir, t2s_error *err) {
  char buf[PATH_CAP];
  snprintf(buf, sizeof buf, "%s", dir);
  for (char *s = buf + 1;; s++) {
    int end = *s == '\0';
    if (*s == '/' || end) {
      *s = '\0';
      if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return t2s_error_set(err, T2S_ERR_IO, "cannot create the output directory %s: %s", buf,
                             strerror(errno));
      if (end) return T2S_OK;
      *s = '/';
    }
  }
}

static t2s_status missing_labels_error(const import_scan *sc, t2s_error *err) {
  char list[768] = "";
  size_t used = 0;
  for (int64_t k = 0; k < sc->missing.n && k < LIST_SHOWN && used < sizeof list; k++)
    used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", k ? "; " : "", sc->missing.v[k]);
  return t2s_error_set(err, T2S_ERR_IO, "%" PRId64 " image(s) have no label: %s%s; pass --skip-bad "
                       "to skip them (listed in OUT/skipped.txt)", sc->missing.n, list,
                       sc->missing.n > LIST_SHOWN ? "; ..." : "");
}

/* The shard size: the recipe's (or --resize), or for generic without it the first
 * readable image's size. */
static t2s_status target_size(const t2s_import_opts *o, const import_scan *sc, pipeline *p,
                              t2s_error *err) {
  p->resize = o->width > 0 && o->height > 0;
  if (p->resize) {
    p->meta.width = o->width;
    p->meta.height = o->height;
    return T2S_OK;
  }
  t2s_error first = {0};
  for (int64_t k = 0; k < sc->n; k++) {
    t2s_error e = {0};
    if (t2s_image_read_info(sc->items[k].image, &p->meta.width, &p->meta.height, &e) == T2S_OK)
      return T2S_OK;
    if (first.status == T2S_OK) first = e;
  }
  return t2s_error_set(err, T2S_ERR_FORMAT, "no image could be read to fix the shard size "
                       "(first error: %s); pass --resize W H or fix the images", first.msg);
}

static t2s_status write_skipped(const run_state *r, const char *path, t2s_error *err) {
  FILE *f = fopen(path, "w");
  if (f == NULL)
    return t2s_error_set(err, T2S_ERR_IO, "cannot write %s: %s", path, strerror(errno));
  fprintf(f, "# t2sda_shards %s %s: %" PRId64 " input(s) skipped\n",
          t2s_import_layout_name(r->o->layout), r->o->split, r->skipped.n);
  for (int64_t k = 0; k < r->skipped.n; k++) fprintf(f, "%s\n", r->skipped.v[k]);
  if (fclose(f) != 0) return t2s_error_set(err, T2S_ERR_IO, "cannot write %s", path);
  return T2S_OK;
}

static t2s_status shard_names(run_state *r, const char *domain, t2s_error *err) {
  shard_set *ss = &r->ss;
  ss->final = calloc((size_t)ss->k, sizeof *ss->final);
  ss->staged = calloc((size_t)ss->k, sizeof *ss->staged);
  if (ss->final == NULL || ss->staged == NULL)
    return t2s_error_set(err, T2S_ERR_NOMEM, "out of memory for %d shard names", ss->k);
  for (int s = 0; s < ss->k; s++) {
    snprintf(ss->final[s], PATH_CAP, "%s/%s_%s-%05d-of-%05d.h5", r->o->out_dir, domain,
             r->o->split, s, ss->k);
    snprintf(ss->staged[s], PATH_CAP + 8, "%s.part", ss->final[s]);
  }
  ss->open_index = -1;
  return T2S_OK;
}

/* Parses "<prefix>NNNNN-of-MMMMM.h5<rest>"; returns 1 and sets *total and *rest. */
static int shard_file_name(const char *name, const char *prefix, int *total, const char **rest) {
  size_t n = strlen(prefix);
  int index = 0, used = 0;
  if (strncmp(name, prefix, n) != 0) return 0;
  if (sscanf(name + n, "%5d-of-%5d.h5%n", &index, total, &used) != 2 || used == 0) return 0;
  *rest = name + n + used;
  return 1;
}

/* "<pid>" of a writer temporary whose writer is gone (core/formats/durable_file.h). */
static int writer_gone(const char *digits) {
  char *end;
  long pid = strtol(digits, &end, 10);
  return *end == '\0' && t2s_writer_pid_gone(pid);
}

/* Looks at OUT's files of this domain and split: removes what an interrupted run
 * left (staged .part shards, writer temporaries of dead processes) and lists the
 * shards of a set with another shard count. */
static t2s_status tidy_out_dir(run_state *r, const char *domain, t2s_error *err) {
  char prefix[256];
  snprintf(prefix, sizeof prefix, "%s_%s-", domain, r->o->split);
  str_list files = {0};
  t2s_status st = list_dir(r->o->out_dir, 0, "", &files, "t2sda_shards", err);
  for (int64_t k = 0; st == T2S_OK && k < files.n; k++) {
    int total = 0;
    const char *rest = NULL;
    if (!shard_file_name(files.v[k], prefix, &total, &rest)) continue;
    char *path = str_printf("%s/%s", r->o->out_dir, files.v[k]);
    if (path == NULL) {
      st = t2s_error_set(err, T2S_ERR_NOMEM, "out of memory listing %s", r->o->out_dir);
    } else if (strcmp(rest, ".part") == 0 ||
               (strncmp(rest, ".part.tmp.", 10) == 0 && writer_gone(rest + 10))) {
      if (unlink(path) == 0) r->sum->cleaned++;
      free(path);
    } else if (rest[0] == '\0' && total != r->ss.k) {
      if (!list_push(&r->other_set, path))
        st = t2s_error_set(err, T2S_ERR_NOMEM, "out of memory listing %s", r->o->out_dir);
    } else {
      free(path);
    }
  }
  list_free(&files);
  if (st != T2S_OK || r->other_set.n == 0 || r->o->overwrite) return st;
  return t2s_error_set(err, T2S_ERR_INVALID, "%s already holds %" PRId64 " shard(s) of another "
                       "%s set (e.g. %s), written with a different --shards; a glob over the "
                       "folder would read every image twice. Remove them, choose another OUT, or "
                       "pass --overwrite to replace them", r->o->out_dir, r->other_set.n, prefix,
                       r->other_set.v[0]);
}

/* Without skip_bad: every bad input of the run, the first few in the message and
 * all of them in OUT/bad_inputs.txt. */
static t2s_status bad_inputs_error(const run_state *r, t2s_error *err) {
  char path[PATH_CAP + 32], list[1024] = "";
  snprintf(path, sizeof path, "%s/bad_inputs.txt", r->o->out_dir);
  FILE *f = fopen(path, "w");
  if (f != NULL) {
    for (int64_t k = 0; k < r->bad.n; k++) fprintf(f, "%s\n", r->bad.v[k]);
    if (fclose(f) != 0) f = NULL;
  }
  size_t used = 0;
  for (int64_t k = 0; k < r->bad.n && k < LIST_SHOWN && used < sizeof list; k++)
    used += (size_t)snprintf(list + used, sizeof list - used, "\n  %s", r->bad.v[k]);
  return t2s_error_set(err, T2S_ERR_FORMAT, "%" PRId64 " bad input(s)%s%s:%s%s\nfix them, or pass "
                       "--skip-bad to skip them (then listed in %s/skipped.txt)", r->bad.n,
                       f != NULL ? ", all listed in " : "", f != NULL ? path : "", list,
                       r->bad.n > LIST_SHOWN ? "\n  ..." : "", r->o->out_dir);
}

static void remove_other_set(run_state *r) {
  for (int64_t k = 0; k < r->other_set.n; k++)
    if (unlink(r->other_set.v[k]) == 0) r->sum->replaced++;
}

static int in_list(const char *s, const char *const *list) {
  for (; *list; list++)
    if (strcmp(s, *list) == 0) return 1;
  return 0;
}

/* ACDC's four adverse conditions; Dark Zurich's three times of day. */
static t2s_status check_condition(const t2s_import_opts *o, t2s_error *err) {
  static const char *const acdc[] = {"fog", "night", "rain", "snow", NULL};
  static const char *const dz[] = {"night", "twilight", "day", NULL};
  int acdc_layout = o->layout == T2S_IMPORT_ACDC, dz_layout = o->layout == T2S_IMPORT_DARK_ZURICH;
  if (!acdc_layout && !dz_layout)
    return o->condition == NULL ? T2S_OK
                                : t2s_error_set(err, T2S_ERR_INVALID, "--condition is for the acdc "
                                                "and darkzurich layouts, not %s",
                                                t2s_import_layout_name(o->layout));
  if (o->condition == NULL)
    return t2s_error_set(err, T2S_ERR_INVALID, "acdc: --condition fog|night|rain|snow is required "
                         "(t2sda_shards also takes 'all': one shard set per condition)");
  if (!in_list(o->condition, acdc_layout ? acdc : dz))
    return t2s_error_set(err, T2S_ERR_INVALID, "%s: unknown --condition '%s' (choose %s)",
                         t2s_import_layout_name(o->layout), o->condition,
                         acdc_layout ? "fog, night, rain or snow; t2sda_shards also takes 'all'"
                                     : "night, twilight or day");
  return T2S_OK;
}

static t2s_status check_opts(const t2s_import_opts *o, t2s_error *err) {
  if (o->root == NULL || o->out_dir == NULL || o->split == NULL || !o->split[0])
    return t2s_error_set(err, T2S_ERR_INVALID, "import: ROOT, OUT and --split are required");
  if (strchr(o->split, '/') || strlen(o->split) >= 16)
    return t2s_error_set(err, T2S_ERR_INVALID, "import: --split '%s' must be a short name (train, "
                         "val, test)", o->split);
  if (o->shards < 1)
    return t2s_error_set(err, T2S_ERR_INVALID, "import: --shards must be at least 1");
  if ((o->width > 0) != (o->height > 0))
    return t2s_error_set(err, T2S_ERR_INVALID, "import: --resize needs both W and H");
  t2s_status st = check_condition(o, err);
  if (st != T2S_OK) return st;
  if (o->layout == T2S_IMPORT_GENERIC && o->mapping_path == NULL && !o->unlabelled)
    return t2s_error_set(err, T2S_ERR_INVALID, "generic: --mapping FILE is required (the label id "
                         "-> train id table; see data/importers.h); for images without labels "
                         "pass --unlabelled");
  return T2S_OK;
}

static void fill_summary(run_state *r) {
  t2s_import_summary *s = r->sum;
  s->shards = r->ss.k;
  s->width = r->p->meta.width;
  s->height = r->p->meta.height;
  s->num_classes = r->p->meta.num_classes;
  memcpy(s->class_names, r->p->meta.class_names, sizeof s->class_names);
  snprintf(s->first_shard, sizeof s->first_shard, "%s", r->ss.final[0]);
  for (int k = 0; k < r->ss.k; k++) {
    struct stat sb;
    if (stat(r->ss.final[k], &sb) == 0) s->bytes += sb.st_size;
  }
}

static t2s_status import_scanned(run_state *r, import_scan *sc, const t2s_label_mapping *map,
                                 t2s_error *err) {
  const t2s_import_opts *o = r->o;
  pipeline *p = r->p;
  if (sc->n == 0 && sc->missing.n > 0 && !o->skip_bad) return missing_labels_error(sc, err);
  for (int64_t k = 0; k < sc->missing.n; k++) {
    if (!list_push(o->skip_bad ? &r->skipped : &r->bad, strdup(sc->missing.v[k])))
      return t2s_error_set(err, T2S_ERR_NOMEM, "out of memory listing bad inputs");
    if (o->skip_bad) r->sum->skipped++;
  }
  if (sc->n == 0)
    return t2s_error_set(err, T2S_ERR_INVALID, "%s: no image with a label to import; check ROOT "
                         "and --split (images without labels: pass --unlabelled)",
                         t2s_import_layout_name(o->layout));
  if (o->shards > sc->n)
    return t2s_error_set(err, T2S_ERR_INVALID, "--shards %d is more than the %" PRId64 " images "
                         "found; use at most %" PRId64, o->shards, sc->n, sc->n);
  t2s_status st = target_size(o, sc, p, err);
  if (st != T2S_OK) return st;
  p->o = o;
  p->items = sc->items;
  p->n = sc->n;
  p->map = map;
  p->meta.num_classes = map->num_classes;
  p->meta.ignore_index = 255;
  memcpy(p->meta.class_names, map->class_names, sizeof p->meta.class_names);
  snprintf(p->meta.domain, sizeof p->meta.domain, "%s",
           o->domain ? o->domain : t2s_import_layout_name(o->layout));
  snprintf(p->meta.split, sizeof p->meta.split, "%s", o->split);
  p->meta.has_label = !o->unlabelled;
  r->ss.k = o->shards;
  if ((st = make_dirs(o->out_dir, err)) != T2S_OK) return st;
  if ((st = shard_names(r, p->meta.domain, err)) != T2S_OK) return st;
  if ((st = tidy_out_dir(r, p->meta.domain, err)) != T2S_OK) return st;
  st = run_pipeline(r, err);
  if (st == T2S_OK && r->bad.n > 0) st = bad_inputs_error(r, err);
  if (st == T2S_OK && r->sum->images == 0)
    st = t2s_error_set(err, T2S_ERR_FORMAT, "every input was skipped (see %s/skipped.txt); "
                       "nothing was written", o->out_dir);
  if (st == T2S_OK) st = shards_publish(&r->ss, o->out_dir, err);
  if (st != T2S_OK) shards_discard(&r->ss);
  else remove_other_set(r), fill_summary(r);
  return st;
}

/* The shard domain without --domain: the layout's name, and the condition where the
 * layout has conditions ("acdc_fog"), so that each condition is its own domain. */
const char *t2s_import_default_domain(const t2s_import_opts *o, char *buf, size_t size) {
  if (o->condition != NULL)
    snprintf(buf, size, "%s_%s", t2s_import_layout_name(o->layout), o->condition);
  else
    snprintf(buf, size, "%s", t2s_import_layout_name(o->layout));
  return buf;
}

/* OUT/unmapped_labels.txt: every id outside the mapping with its pixels and images,
 * most pixels first; the summary's warning names the first few. The shards are
 * published by now, so a failure here is told in the warning, not by failing the run. */
static void write_unmapped(run_state *r, const t2s_label_mapping *m) {
  t2s_import_summary *sum = r->sum;
  if (r->unmapped_pixels == NULL) return;
  count_pair *pairs = malloc(65536 * sizeof *pairs);
  if (pairs == NULL) {
    snprintf(sum->unmapped_warning, sizeof sum->unmapped_warning, "%" PRId64 " image(s) had label "
             "ids outside the mapping, written as 255 (out of memory listing them)",
             sum->unmapped_images);
    return;
  }
  int np = 0;
  for (uint32_t v = 0; v < 65536; v++)
    if (r->unmapped_pixels[v]) pairs[np++] = (count_pair){v, r->unmapped_pixels[v]};
  qsort(pairs, (size_t)np, sizeof *pairs, cmp_count_desc);
  const char *layout = t2s_import_layout_name(r->o->layout);
  snprintf(sum->unmapped_report, sizeof sum->unmapped_report, "%s/unmapped_labels.txt", r->o->out_dir);
  FILE *f = fopen(sum->unmapped_report, "w");
  if (f != NULL) {
    fprintf(f, "# t2sda_shards %s %s: label ids outside the %s mapping (known ids %s), written as "
            "255 (ignore)\n# id pixels images\n", layout, r->o->split, layout, m->known);
    for (int k = 0; k < np; k++)
      fprintf(f, "%u %" PRId64 " %" PRId64 "\n", pairs[k].id, pairs[k].count,
              r->unmapped_images[pairs[k].id]);
    if (fclose(f) != 0) f = NULL;
  }
  char listed[sizeof sum->unmapped_report + 64];
  snprintf(listed, sizeof listed, "%s %s", f ? "all in" : "could not write", sum->unmapped_report);
  if (f == NULL) sum->unmapped_report[0] = '\0';
  size_t cap = sizeof sum->unmapped_warning;
  size_t used = (size_t)snprintf(sum->unmapped_warning, cap, "%d label id(s) outside the %s mapping "
                                 "(known ids %s) in %" PRId64 " image(s) became 255 (ignore); id: "
                                 "pixels, images:", np, layout, m->known, sum->unmapped_images);
  for (int k = 0; k < np && k < 8 && used < cap; k++)
    used += (size_t)snprintf(sum->unmapped_warning + used, cap - used, "%s %u: %" PRId64 ", %" PRId64,
                             k ? ";" : "", pairs[k].id, pairs[k].count, r->unmapped_images[pairs[k].id]);
  if (used < cap)
    snprintf(sum->unmapped_warning + used, cap - used, "%s (%s; --strict-labels refuses such labels)",
             np > 8 ? "; ..." : "", listed);
  sum->unmapped_ids = np;
  free(pairs);
}

t2s_status t2s_import_run(const t2s_import_opts *opts, t2s_import_summary *sum, t2s_error *err) {
  memset(sum, 0, sizeof *sum);
  t2s_status st = check_opts(opts, err);
  if (st != T2S_OK) return st;
  t2s_import_opts oc = *opts;
  const t2s_import_opts *o = &oc;
  if (oc.domain == NULL) oc.domain = t2s_import_default_domain(opts, sum->domain, sizeof sum->domain);
  else snprintf(sum->domain, sizeof sum->domain, "%s", oc.domain);
  t2s_label_mapping map = {0};
  /* unlabelled generic data without a table: the shards name the 19 Cityscapes classes */
  st = o->layout == T2S_IMPORT_GENERIC && o->mapping_path != NULL
           ? t2s_label_mapping_load(&map, o->mapping_path, err)
           : t2s_label_mapping_builtin(&map, o->layout == T2S_IMPORT_GENERIC
                                                 ? T2S_IMPORT_CITYSCAPES : o->layout, err);
  if (st != T2S_OK) return st;
  import_scan sc = {0};
  sc.unlabelled = o->unlabelled;
  char where[PATH_CAP + 64] = "";
  st = scan_tree(o, &sc, where, sizeof where, err);
  if (st == T2S_OK && sc.n == 0 && sc.missing.n == 0)
    st = t2s_error_set(err, T2S_ERR_INVALID, "%s: no images found (looked for %s); check ROOT "
                       "and --split", t2s_import_layout_name(o->layout), where);
  pipeline p;
  memset(&p, 0, sizeof p);
  run_state r = {o, &p, {0}, {0}, {0}, {0}, sum, NULL, NULL};
  if (st == T2S_OK) st = import_scanned(&r, &sc, &map, err);
  if (st == T2S_OK) write_unmapped(&r, &map);
  if (o->skip_bad && st == T2S_OK) {
    snprintf(sum->skipped_report, sizeof sum->skipped_report, "%s/skipped.txt", o->out_dir);
    st = write_skipped(&r, sum->skipped_report, err);
  } else if (o->skip_bad && r.skipped.n > 0 && access(o->out_dir, W_OK) == 0) {
    /* the run failed anyway: keep the list of what was skipped so far */
    char path[PATH_CAP + 16];
    snprintf(path, sizeof path, "%s/skipped.txt", o->out_dir);
    write_skipped(&r, path, NULL);
  }
  free(r.ss.final);
  free(r.ss.staged);
  list_free(&r.skipped);
  list_free(&r.bad);
  list_free(&r.other_set);
  free(r.unmapped_pixels);
  free(r.unmapped_images);
  scan_free(&sc);
  t2s_label_mapping_free(&map);
  return st;
}
