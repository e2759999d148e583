/* Tensor sets and the safetensors reader/writer (format: core/formats/safetensors.h). */
#include "core/formats/safetensors.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "t2sda's weight readers assume a little-endian host (safetensors and .pth data are little-endian)"
#endif

/* ---- tensor sets -------------------------------------------------------- */

static const struct { const char *name; size_t size; } fdtypes[T2S_FD_COUNT] = {
    [T2S_FD_F32] = {"F32", 4}, [T2S_FD_F16] = {"F16", 2}, [T2S_FD_BF16] = {"BF16", 2},
    [T2S_FD_F64] = {"F64", 8}, [T2S_FD_I64] = {"I64", 8}, [T2S_FD_I32] = {"I32", 4},
    [T2S_FD_I16] = {"I16", 2}, [T2S_FD_I8] = {"I8", 1},   [T2S_FD_U8] = {"U8", 1},
    [T2S_FD_BOOL] = {"BOOL", 1},
};

const char *t2s_fdtype_name(t2s_fdtype dt) {
  return (unsigned)dt < T2S_FD_COUNT ? fdtypes[dt].name : "?";
}
size_t t2s_fdtype_size(t2s_fdtype dt) { return (unsigned)dt < T2S_FD_COUNT ? fdtypes[dt].size : 0; }

int t2s_fdtype_parse(const char *name) {
  for (int i = 0; i < T2S_FD_COUNT; i++)
    if (strcmp(name, fdtypes[i].name) == 0) return i;
  return -1;
}

int64_t t2s_named_numel(const t2s_named_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
  return n;
}

const char *t2s_named_shape_str(const t2s_named_tensor *t, char *buf, size_t size) {
  size_t used = (size_t)snprintf(buf, size, "[");
  for (int i = 0; i < t->ndim && used < size; i++)
    used += (size_t)snprintf(buf + used, size - used, "%s%" PRId64, i ? ", " : "", t->shape[i]);
  if (used < size) snprintf(buf + used, size - used, "]");
  return buf;
}

void t2s_tset_init(t2s_tensor_set *s) { memset(s, 0, sizeof *s); }

void t2s_tset_free(t2s_tensor_set *s) {
  for (int i = 0; i < s->count; i++) {
    free(s->items[i].name);
    free(s->items[i].data);
  }
  for (int i = 0; i < s->n_meta; i++) {
    free(s->meta_keys[i]);
    free(s->meta_values[i]);
  }
  free(s->items);
  free(s->meta_keys);
  free(s->meta_values);
  memset(s, 0, sizeof *s);
}

/* Element count of a shape, or -1 when it overflows / has a negative extent. */
static int64_t checked_numel(int ndim, const int64_t *shape, size_t elem) {
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0) return -1;
    if (shape[i] && n > (INT64_MAX / (int64_t)elem) / shape[i]) return -1;
    n *= shape[i];
  }
  return n;
}

t2s_named_tensor *t2s_tset_add(t2s_tensor_set *s, const char *name, t2s_fdtype dtype, int ndim,
                               const int64_t *shape, const void *data, t2s_error *err) {
  if (ndim < 0 || ndim > T2S_TSET_MAX_DIMS || (unsigned)dtype >= T2S_FD_COUNT) {
    t2s_error_set(err, T2S_ERR_INVALID, "tensor '%s': %d dimensions or dtype %d not supported "
                  "(at most %d dimensions)", name, ndim, (int)dtype, T2S_TSET_MAX_DIMS);
    return NULL;
  }
  int64_t numel = checked_numel(ndim, shape, t2s_fdtype_size(dtype));
  if (numel < 0) {
    t2s_error_set(err, T2S_ERR_INVALID, "tensor '%s': shape is negative or overflows", name);
    return NULL;
  }
  if (s->count == s->cap) {
    int cap = s->cap ? 2 * s->cap : 64;
    t2s_named_tensor *items = realloc(s->items, (size_t)cap * sizeof *items);
    if (!items) goto nomem;
    s->items = items;
    s->cap = cap;
  }
  t2s_named_tensor *t = &s->items[s->count];
  memset(t, 0, sizeof *t);
  t->dtype = dtype;
  t->ndim = ndim;
  if (ndim) memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
  t->nbytes = (size_t)numel * t2s_fdtype_size(dtype);
  t->name = strdup(name);
  t->data = malloc(t->nbytes ? t->nbytes : 1);
  if (!t->name || !t->data) {
    free(t->name);
    free(t->data);
    goto nomem;
  }
  if (data) memcpy(t->data, data, t->nbytes);
  else memset(t->data, 0, t->nbytes);
  s->count++;
  return t;
nomem:
  t2s_error_set(err, T2S_ERR_NOMEM, "tensor '%s': out of memory", name);
  return NULL;
}

t2s_named_tensor *t2s_tset_find(const t2s_tensor_set *s, const char *name) {
  for (int i = 0; i < s->count; i++)
    if (strcmp(s->items[i].name, name) == 0) return &s->items[i];
  return NULL;
}

t2s_status t2s_tset_set_meta(t2s_tensor_set *s, const char *key, const char *value, t2s_error *err) {
  for (int i = 0; i < s->n_meta; i++)
    if (strcmp(s->meta_keys[i], key) == 0) {
      char *v = strdup(value);
      if (!v) return t2s_error_set(err, T2S_ERR_NOMEM, "metadata '%s': out of memory", key);
      free(s->meta_values[i]);
      s->meta_values[i] = v;
      return T2S_OK;
    }
  if (s->n_meta == s->meta_cap) {
    int cap = s->meta_cap ? 2 * s->meta_cap : 8;
    char **k = realloc(s->meta_keys, (size_t)cap * sizeof *k);
    if (k) s->meta_keys = k;
    char **v = k ? realloc(s->meta_values, (size_t)cap * sizeof *v) : NULL;
    if (!v) return t2s_error_set(err, T2S_ERR_NOMEM, "metadata '%s': out of memory", key);
    s->meta_values = v;
    s->meta_cap = cap;
  }
  char *k = strdup(key), *v = strdup(value);
  if (!k || !v) {
    free(k);
    free(v);
    return t2s_error_set(err, T2S_ERR_NOMEM, "metadata '%s': out of memory", key);
  }
  s->meta_keys[s->n_meta] = k;
  s->meta_values[s->n_meta++] = v;
  return T2S_OK;
}

const char *t2s_tset_get_meta(const t2s_tensor_set *s, const char *key) {
  for (int i = 0; i < s->n_meta; i++)
    if (strcmp(s->meta_keys[i], key) == 0) return s->meta_values[i];
  return NULL;
}

/* IEEE half -> float, exact (every half is a float). */
static float half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 31, mant = h & 1023, bits;
  if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);  /* inf / NaN */
  } else if (exp) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {  /* subnormal half: normalise the mantissa into a float */
    int e = -1;
    do {
      e++;
      mant <<= 1;
    } while (!(mant & 1024));
    bits = sign | ((uint32_t)(112 - e) << 23) | ((mant & 1023) << 13);
  }
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

t2s_status t2s_tset_to_f32(const t2s_named_tensor *t, float *out, t2s_error *err) {
  int64_t n = t2s_named_numel(t);
  const uint8_t *p = t->data;
  switch (t->dtype) {
    case T2S_FD_F32: memcpy(out, p, (size_t)n * 4); return T2S_OK;
    case T2S_FD_F64:
      for (int64_t i = 0; i < n; i++) {
        double d;
        memcpy(&d, p + 8 * i, 8);
        out[i] = (float)d;
      }
      return T2S_OK;
    case T2S_FD_F16:
      for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        out[i] = half_to_float(h);
      }
      return T2S_OK;
    case T2S_FD_BF16:  /* bfloat16 is the upper half of a float32 */
      for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        uint32_t bits = (uint32_t)h << 16;
        memcpy(&out[i], &bits, 4);
      }
      return T2S_OK;
    default:
      return t2s_error_set(err, T2S_ERR_FORMAT, "tensor '%s' has dtype %s; a weight must be "
                           "F32, F16, BF16 or F64", t->name, t2s_fdtype_name(t->dtype));
  }
}

t2s_status t2s_read_file(const char *path, uint8_t **buf, size_t *len, t2s_error *err) {
  *buf = NULL;
  *len = 0;
  FILE *f = fopen(path, "rb");
  if (!f) return t2s_error_set(err, T2S_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  long size = -1;
  if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
  if (size < 0 || fseek(f, 0, SEEK_SET) != 0) {
    fclose(f);
    return t2s_error_set(err, T2S_ERR_IO, "%s: cannot determine the size (not a regular file?)", path);
  }
  uint8_t *b = malloc((size_t)size + 1);
  if (!b) {
    fclose(f);
    return t2s_error_set(err, T2S_ERR_NOMEM, "%s: cannot hold %ld bytes in memory", path, size);
  }
  size_t got = fread(b, 1, (size_t)size, f);
  fclose(f);
  if (got != (size_t)size) {
    free(b);
    return t2s_error_set(err, T2S_ERR_IO, "%s: read %zu of %ld bytes", path, got, size);
  }
  *buf = b;
  *len = (size_t)size;
  return T2S_OK;
}

/* ---- a JSON subset: the safetensors header ------------------------------ */

typedef struct json_in {
  const char *p, *end, *start;
  const char *what;
  t2s_error *err;
} json_in;

static t2s_status json_fail(json_in *j, const char *why) {
  return t2s_error_set(j->err, T2S_ERR_FORMAT, "%s: safetensors header is not valid: %s at "
                       "byte %td of the JSON header", j->what, why, j->p - j->start);
}

static void skip_ws(json_in *j) {
  while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

static int accept(json_in *j, char c) {
  skip_ws(j);
  if (j->p < j->end && *j->p == c) {
    j->p++;
    return 1;
  }
  return 0;
}

static void put_utf8(char *out, size_t *n, uint32_t cp) {
  if (cp < 0x80) {
    out[(*n)++] = (char)cp;
  } else if (cp < 0x800) {
    out[(*n)++] = (char)(0xc0 | (cp >> 6));
    out[(*n)++] = (char)(0x80 | (cp & 63));
  } else if (cp < 0x10000) {
    out[(*n)++] = (char)(0xe0 | (cp >> 12));
    out[(*n)++] = (char)(0x80 | ((cp >> 6) & 63));
    out[(*n)++] = (char)(0x80 | (cp & 63));
  } else {
    out[(*n)++] = (char)(0xf0 | (cp >> 18));
    out[(*n)++] = (char)(0x80 | ((cp >> 12) & 63));
    out[(*n)++] = (char)(0x80 | ((cp >> 6) & 63));
    out[(*n)++] = (char)(0x80 | (cp & 63));
  }
}

static int hex4(const char *p, uint32_t *v) {
  *v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
          : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) return 0;
    *v = *v * 16 + (uint32_t)d;
  }
  return 1;
}

/* A JSON string, unescaped into a malloc'd NUL-terminated buffer (NULL on error). */
static char *json_string(json_in *j) {
  if (!accept(j, '"')) {
    json_fail(j, "expected a string");
    return NULL;
  }
  /* Unescaped text is never longer than the escaped form (\uXXXX -> <= 4 bytes). */
  const char *q = j->p;
  while (q < j->end && *q != '"') q += (*q == '\\' && q + 1 < j->end) ? 2 : 1;
  if (q >= j->end) {
    json_fail(j, "unterminated string");
    return NULL;
  }
  char *out = malloc((size_t)(q - j->p) + 1);
  if (!out) {
    t2s_error_set(j->err, T2S_ERR_NOMEM, "%s: out of memory reading the header", j->what);
    return NULL;
  }
  size_t n = 0;
  while (*j->p != '"') {
    unsigned char c = (unsigned char)*j->p++;
    if (c < 0x20) goto bad;
    if (c != '\\') {
      out[n++] = (char)c;
      continue;
    }
    char e = *j->p++;
    const char *simple = strchr("\"\\/bfnrt", e);
    if (e && simple) {
      out[n++] = "\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"];
      continue;
    }
    uint32_t cp, lo;
    if (e != 'u' || j->end - j->p < 4 || !hex4(j->p, &cp)) goto bad;
    j->p += 4;
    if (cp >= 0xd800 && cp < 0xdc00) {  /* surrogate pair */
      if (j->end - j->p < 6 || j->p[0] != '\\' || j->p[1] != 'u' || !hex4(j->p + 2, &lo) ||
          lo < 0xdc00 || lo >= 0xe000)
        goto bad;
      j->p += 6;
      cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    }
    if (cp == 0) goto bad;  /* names are C strings */
    put_utf8(out, &n, cp);
  }
  j->p++;
  out[n] = '\0';
  return out;
bad:
  free(out);
  json_fail(j, "bad character or escape in a string");
  return NULL;
}

/* A non-negative integer that fits int64. */
static int json_uint(json_in *j, int64_t *v) {
  skip_ws(j);
  if (j->p >= j->end || *j->p < '0' || *j->p > '9') return json_fail(j, "expected a non-negative integer"), 0;
  int64_t x = 0;
  while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
    int d = *j->p++ - '0';
    if (x > (INT64_MAX - d) / 10) return json_fail(j, "integer too large"), 0;
    x = x * 10 + d;
  }
  if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E'))
    return json_fail(j, "expected an integer, found a fraction"), 0;
  *v = x;
  return 1;
}

/* [i, i, ...] into v (at most max); returns the count or -1. */
static int json_uint_list(json_in *j, int64_t *v, int max, const char *key) {
  if (!accept(j, '[')) return json_fail(j, "expected '['"), -1;
  int n = 0;
  if (accept(j, ']')) return 0;
  do {
    if (n == max) {
      char why[96];
      snprintf(why, sizeof why, "'%s' has more than %d entries", key, max);
      return json_fail(j, why), -1;
    }
    if (!json_uint(j, &v[n++])) return -1;
  } while (accept(j, ','));
  if (!accept(j, ']')) return json_fail(j, "expected ',' or ']'"), -1;
  return n;
}

typedef struct st_entry {
  char *name;
  int dtype, ndim;
  int64_t shape[T2S_TSET_MAX_DIMS];
  int64_t begin, end;
} st_entry;

/* {"dtype": ..., "shape": [...], "data_offsets": [b, e]} */
static int parse_entry(json_in *j, st_entry *e) {
  int have = 0;
  if (!accept(j, '{')) return json_fail(j, "expected '{' after a tensor name"), 0;
  int empty = accept(j, '}');
  if (!empty) do {
      char *key = json_string(j);
      if (!key) return 0;
      int ok = accept(j, ':') || (json_fail(j, "expected ':'"), 0);
      if (ok && strcmp(key, "dtype") == 0) {
        char *dt = json_string(j);
        ok = dt != NULL;
        if (ok && (e->dtype = t2s_fdtype_parse(dt)) < 0) {
          char why[128];
          snprintf(why, sizeof why, "tensor '%s' has unknown dtype '%.32s' (known: F32 F16 BF16 "
                   "F64 I64 I32 I16 I8 U8 BOOL)", e->name, dt);
          ok = (json_fail(j, why), 0);
        }
        free(dt);
        have |= 1;
      } else if (ok && strcmp(key, "shape") == 0) {
        ok = (e->ndim = json_uint_list(j, e->shape, T2S_TSET_MAX_DIMS, "shape")) >= 0;
        have |= 2;
      } else if (ok && strcmp(key, "data_offsets") == 0) {
        int64_t off[3];
        int n = json_uint_list(j, off, 3, "data_offsets");
        ok = n == 2 || (n >= 0 && (json_fail(j, "'data_offsets' must be [begin, end]"), 0));
        if (ok) e->begin = off[0], e->end = off[1];
        have |= 4;
      } else if (ok) {
        char why[128];
        snprintf(why, sizeof why, "tensor '%s' has an unknown field '%.40s'", e->name, key);
        ok = (json_fail(j, why), 0);
      }
      free(key);
      if (!ok) return 0;
    } while (accept(j, ','));
  if (j->err->status) return 0;
  if (!empty && !accept(j, '}')) return json_fail(j, "expected ',' or '}'"), 0;
  if (have != 7) {
    char why[128];
    snprintf(why, sizeof why, "tensor '%s' lacks %s", e->name,
             !(have & 1) ? "'dtype'" : !(have & 2) ? "'shape'" : "'data_offsets'");
    return json_fail(j, why), 0;
  }
  return 1;
}

static int parse_metadata(json_in *j, t2s_tensor_set *s) {
  if (!accept(j, '{')) return json_fail(j, "'__metadata__' must be an object of strings"), 0;
  if (accept(j, '}')) return 1;
  do {
    char *k = json_string(j), *v = NULL;
    int ok = k && (accept(j, ':') || (json_fail(j, "expected ':'"), 0)) && (v = json_string(j));
    if (ok) ok = t2s_tset_set_meta(s, k, v, j->err) == T2S_OK;
    free(k);
    free(v);
    if (!ok) return 0;
  } while (accept(j, ','));
  if (!accept(j, '}')) return json_fail(j, "expected ',' or '}' in '__metadata__'"), 0;
  return 1;
}

static int cmp_begin(const void *a, const void *b) {
  const st_entry *x = *(st_entry *const *)a, *y = *(st_entry *const *)b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  return x->end < y->end ? -1 : x->end > y->end;
}

/* Every entry's size matches its dtype and shape, and the sorted entries tile
 * [0, data_len) exactly. */
static t2s_status check_layout(st_entry *e, int n, uint64_t data_len, const char *what,
                               t2s_error *err) {
  for (int i = 0; i < n; i++) {
    int64_t numel = checked_numel(e[i].ndim, e[i].shape, t2s_fdtype_size(e[i].dtype));
    if (e[i].end < e[i].begin)
      return t2s_error_set(err, T2S_ERR_FORMAT, "%s: tensor '%s' has data_offsets [%" PRId64
                           ", %" PRId64 "] with end before begin", what, e[i].name, e[i].begin, e[i].end);
    if (numel < 0 || (uint64_t)(e[i].end - e[i].begin) != (uint64_t)numel * t2s_fdtype_size(e[i].dtype))
      return t2s_error_set(err, T2S_ERR_FORMAT, "%s: tensor '%s' (%s, %d dims) spans %" PRId64
                           " bytes but its shape needs %" PRId64 " x %zu", what, e[i].name,
                           t2s_fdtype_name(e[i].dtype), e[i].ndim, e[i].end - e[i].begin, numel,
                           t2s_fdtype_size(e[i].dtype));
    if ((uint64_t)e[i].end > data_len)
      return t2s_error_set(err, T2S_ERR_FORMAT, "%s: tensor '%s' ends at byte %" PRId64 " of the "
                           "data but the file holds only %" PRIu64 " data bytes (truncated file?)",
                           what, e[i].name, e[i].end, data_len);
  }
  st_entry **order = malloc((size_t)(n ? n : 1) * sizeof *order);
  if (!order) return t2s_error_set(err, T2S_ERR_NOMEM, "%s: out of memory", what);
  for (int i = 0; i < n; i++) order[i] = &e[i];
  qsort(order, (size_t)n, sizeof *order, cmp_begin);
  int64_t pos = 0;
  t2s_status st = T2S_OK;
  for (int i = 0; i < n && st == T2S_OK; i++) {
    if (order[i]->begin < pos)
      st = t2s_error_set(err, T2S_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap (byte %" PRId64
                         " of the data belongs to both)", what, order[i - 1]->name, order[i]->name,
                         order[i]->begin);
    else if (order[i]->begin > pos)
      st = t2s_error_set(err, T2S_ERR_FORMAT, "%s: data bytes [%" PRId64 ", %" PRId64 ") belong "
                         "to no tensor (a hole before '%s'); the format requires a gap-free buffer",
                         what, pos, order[i]->begin, order[i]->name);
    pos = order[i]->end;
  }
  if (st == T2S_OK && (uint64_t)pos != data_len)
    st = t2s_error_set(err, T2S_ERR_FORMAT, "%s: %" PRIu64 " data bytes after the last tensor "
                       "belong to no tensor", what, data_len - (uint64_t)pos);
  free(order);
  return st;
}

static t2s_status parse_header(json_in *j, st_entry **entries, int *n_entries, t2s_tensor_set *s) {
  int cap = 0, n = 0;
  st_entry *e = NULL;
  *entries = NULL;
  *n_entries = 0;
  if (!accept(j, '{')) return json_fail(j, "the header must be a JSON object");
  int empty = accept(j, '}');
  if (!empty) do {
      char *name = json_string(j);
      if (!name) break;
      if (!accept(j, ':')) {
        free(name);
        json_fail(j, "expected ':'");
        break;
      }
      if (strcmp(name, "__metadata__") == 0) {
        free(name);
        if (!parse_metadata(j, s)) break;
        continue;
      }
      for (int i = 0; i < n; i++)
        if (strcmp(e[i].name, name) == 0) {
          t2s_error_set(j->err, T2S_ERR_FORMAT, "%s: tensor '%s' appears twice in the header",
                        j->what, name);
          break;
        }
      if (n == cap) {
        cap = cap ? 2 * cap : 64;
        st_entry *ne = realloc(e, (size_t)cap * sizeof *e);
        if (!ne) t2s_error_set(j->err, T2S_ERR_NOMEM, "%s: out of memory", j->what);
        else e = ne;
      }
      if (j->err->status) {
        free(name);
        break;
      }
      memset(&e[n], 0, sizeof e[n]);
      e[n].name = name;
      n++;
      if (!parse_entry(j, &e[n - 1])) break;
    } while (accept(j, ','));
  if (!j->err->status && !empty && !accept(j, '}')) json_fail(j, "expected ',' or '}' after a tensor");
  if (!j->err->status) {
    skip_ws(j);
    if (j->p != j->end) json_fail(j, "unexpected text after the header object");
  }
  *entries = e;
  *n_entries = n;
  return j->err->status;
}

t2s_status t2s_safetensors_parse(const uint8_t *buf, size_t len, const char *what,
                                 t2s_tensor_set *s, t2s_error *err) {
  t2s_error local = {0};
  if (!err) err = &local;
  if (len < 8)
    return t2s_error_set(err, T2S_ERR_FORMAT, "%s: %zu bytes is too short for a safetensors file "
                         "(8-byte header length missing; truncated?)", what, len);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i];
  if (hlen > T2S_SAFETENSORS_MAX_HEADER)
    return t2s_error_set(err, T2S_ERR_FORMAT, "%s: header length %" PRIu64 " exceeds the %u-byte "
                         "limit (not a safetensors file, or a corrupt one)", what, hlen,
                         T2S_SAFETENSORS_MAX_HEADER);
  if (hlen > len - 8)
    return t2s_error_set(err, T2S_ERR_FORMAT, "%s: header length %" PRIu64 " runs past the end of "
                         "the file (%zu bytes): truncated or not a safetensors file", what, hlen, len);
  if (hlen < 2 || buf[8] != '{')
    return t2s_error_set(err, T2S_ERR_FORMAT, "%s: the header does not start with '{': not a "
                         "safetensors file", what);
  json_in j = {(const char *)buf + 8, (const char *)buf + 8 + hlen, (const char *)buf + 8, what, err};
  st_entry *e = NULL;
  int n = 0;
  t2s_status st = parse_header(&j, &e, &n, s);
  if (st == T2S_OK) st = check_layout(e, n, len - 8 - hlen, what, err);
  const uint8_t *data = buf + 8 + hlen;
  for (int i = 0; i < n && st == T2S_OK; i++)
    if (!t2s_tset_add(s, e[i].name, (t2s_fdtype)e[i].dtype, e[i].ndim, e[i].shape, data + e[i].begin, err))
      st = err->status;
  for (int i = 0; i < n; i++) free(e[i].name);
  free(e);
  return st;
}

t2s_status t2s_safetensors_read(const char *path, t2s_tensor_set *s, t2s_error *err) {
  uint8_t *buf;
  size_t len;
  t2s_status st = t2s_read_file(path, &buf, &len, err);
  if (st == T2S_OK) st = t2s_safetensors_parse(buf, len, path, s, err);
  free(buf);
  return st;
}

/* ---- writing -------------------------------------------------------------- */

typedef struct strbuf {
  char *p;
  size_t n, cap;
  int oom;
} strbuf;

static void sb_put(strbuf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = '\0';
}

static void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(strbuf *b, const char *fmt, ...) {
  char tmp[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n >= 0) sb_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void sb_json_string(strbuf *b, const char *s) {
  sb_put(b, "\"", 1);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      char esc[2] = {'\\', (char)c};
      sb_put(b, esc, 2);
    } else if (c < 0x20) {
      sb_printf(b, "\\u%04x", c);
    } else {
      sb_put(b, (const char *)&c, 1);
    }
  }
  sb_put(b, "\"", 1);
}

t2s_status t2s_safetensors_write(const char *path, const t2s_tensor_set *s, t2s_error *err) {
  strbuf h = {0};
  sb_put(&h, "{", 1);
  if (s->n_meta) {
    sb_put(&h, "\"__metadata__\":{", 16);
    for (int i = 0; i < s->n_meta; i++) {
      if (i) sb_put(&h, ",", 1);
      sb_json_string(&h, s->meta_keys[i]);
      sb_put(&h, ":", 1);
      sb_json_string(&h, s->meta_values[i]);
    }
    sb_put(&h, "}", 1);
  }
  uint64_t off = 0;
  for (int i = 0; i < s->count; i++) {
    const t2s_named_tensor *t = &s->items[i];
    if (i || s->n_meta) sb_put(&h, ",", 1);
    sb_json_string(&h, t->name);
    sb_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", t2s_fdtype_name(t->dtype));
    for (int d = 0; d < t->ndim; d++) sb_printf(&h, "%s%" PRId64, d ? "," : "", t->shape[d]);
    sb_printf(&h, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", off, off + t->nbytes);
    off += t->nbytes;
  }
  sb_put(&h, "}", 1);
  while (!h.oom && (h.n % 8) != 0) sb_put(&h, " ", 1);
  if (h.oom) {
    free(h.p);
    return t2s_error_set(err, T2S_ERR_NOMEM, "%s: out of memory building the header", path);
  }
  uint8_t len8[8];
  for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)h.n >> (8 * i));
  FILE *f = fopen(path, "wb");
  if (!f) {
    free(h.p);
    return t2s_error_set(err, T2S_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
  }
  int ok = fwrite(len8, 1, 8, f) == 8 && fwrite(h.p, 1, h.n, f) == h.n;
  for (int i = 0; ok && i < s->count; i++)
    ok = fwrite(s->items[i].data, 1, s->items[i].nbytes, f) == s->items[i].nbytes;
  ok = (fclose(f) == 0) && ok;
  free(h.p);
  if (!ok) return t2s_error_set(err, T2S_ERR_IO, "%s: write failed (disk full?)", path);
  return T2S_OK;
}
