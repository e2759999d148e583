/* Strict YAML-against-schema configuration (see config.h).
 *
 * Flow of a load: zero + defaults (each default is parsed like an override, so
 * a bad default in a schema is caught), then libyaml's document loader builds
 * a node tree with marks; walk_mapping matches every key path against the
 * rows, descending into sections (any proper prefix of a row key); each value
 * is converted by set_row with the row's checks; then overrides; then the
 * required keys. Every error message starts with where the value came from. */
#include "core/formats/config.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define KEY_MAX 256           /* longest key path (with a list index) handled */
#define SHOW_MAX 64           /* longest value text quoted back in a message */
#define FILE_MAX (16u << 20)  /* a config file larger than this is certainly a mistake */
#define BASE_DEPTH_MAX 16     /* deeper _base_ nesting is a mistake (or a cycle realpath missed) */
#define BASE_KEY "_base_"

typedef struct load_ctx {
  const t2s_cfg_row *schema;
  int n;
  char *base;                 /* the user's struct */
  t2s_cfg_origin *origins;    /* n entries, or NULL (t2s_config_set) */
  const char *file;           /* display name of the YAML source */
  const char *override;       /* the assignment being applied, or NULL */
  int override_index;
  const char *default_of;     /* key whose schema default is being applied, or NULL */
  size_t skip;                /* inside a record: length of "list[i]." before a field's key */
  yaml_mark_t root_mark;
  t2s_error *err;
  /* inheritance: the file being walked is chain[depth], included by chain[depth - 1] ... */
  bool bases_allowed;         /* false for text loads: no directory to resolve against */
  int depth;
  const char *chain[BASE_DEPTH_MAX + 1];
  char *canon[BASE_DEPTH_MAX + 1]; /* realpath of each, for cycles; NULL for text */
  int *set_in;                /* n entries: which file (file_seq) last set the row */
  int file_seq, n_files;
} load_ctx;

/* ---- messages ---------------------------------------------------------- */

/* "a.yaml -> configs/b.yaml[ -> last]": the files from the one loaded to the one walked. */
static void chain_text(const load_ctx *c, const char *last, char *buf, size_t size) {
  size_t used = 0;
  buf[0] = '\0';
  for (int i = 0; i <= c->depth + (last != NULL); i++) {
    int w = snprintf(buf + used, size - used, "%s%s", i ? " -> " : "",
                     i <= c->depth ? c->chain[i] : last);
    if (w < 0 || (size_t)w >= size - used) return;
    used += (size_t)w;
  }
}

static void where(const load_ctx *c, yaml_mark_t mark, char *buf, size_t size) {
  char chain[T2S_ERROR_MAX / 2] = "";
  if (c->default_of != NULL) {
    snprintf(buf, size, "config schema: the default of '%s'", c->default_of);
  } else if (c->override != NULL) {
    snprintf(buf, size, "command line override '%s'", c->override);
  } else {
    if (c->depth > 0) chain_text(c, NULL, chain, sizeof chain);
    snprintf(buf, size, "config %s:%zu:%zu%s%s%s", c->file, mark.line + 1, mark.column + 1,
             chain[0] ? " (base chain " : "", chain, chain[0] ? ")" : "");
  }
}

static t2s_status fail(const load_ctx *c, yaml_mark_t mark, t2s_status status, const char *fmt,
                       ...) __attribute__((format(printf, 4, 5)));
static t2s_status fail(const load_ctx *c, yaml_mark_t mark, t2s_status status, const char *fmt,
                       ...) {
  char at[T2S_ERROR_MAX], body[T2S_ERROR_MAX];
  where(c, mark, at, sizeof at);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(body, sizeof body, fmt, ap);
  va_end(ap);
  return t2s_error_set(c->err, status, "%s: %s", at, body);
}

/* The value text as the user wrote it, shortened for a message. */
static const char *shown(const char *text, char *buf, size_t size) {
  size_t len = strlen(text);
  if (len < SHOW_MAX && len < size) return text;
  snprintf(buf, size, "%.*s...", SHOW_MAX - 4 < (int)size - 4 ? SHOW_MAX - 4 : (int)size - 4, text);
  return buf;
}

static const char *scalar_text(const yaml_node_t *node) {
  return (const char *)node->data.scalar.value;
}

static bool is_null(const yaml_node_t *node) {
  if (node->type != YAML_SCALAR_NODE || node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
    return false;
  const char *t = scalar_text(node);
  return !strcmp(t, "") || !strcmp(t, "~") || !strcmp(t, "null") || !strcmp(t, "Null") ||
         !strcmp(t, "NULL");
}

/* "a list", "a mapping", "no value", "the string 'x'" (quoted) or "'x'". */
static const char *describe_node(const yaml_node_t *node, char *buf, size_t size) {
  char tmp[SHOW_MAX + 8];
  if (node->type == YAML_SEQUENCE_NODE) return "a list";
  if (node->type == YAML_MAPPING_NODE) return "a mapping";
  if (is_null(node)) return "no value";
  const char *t = shown(scalar_text(node), tmp, sizeof tmp);
  if (node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
    snprintf(buf, size, "the string '%s'", t);
  else
    snprintf(buf, size, "'%s'", t);
  return buf;
}

/* Optimal-string-alignment distance (Levenshtein plus adjacent swaps, so
 * 'alhpa' -> 'alpha' costs 1). Strings longer than KEY_MAX count as far. */
static int edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la >= KEY_MAX || lb >= KEY_MAX) return INT_MAX / 2;
  int rows[3][KEY_MAX + 1];
  int *prev2 = rows[0], *prev = rows[1], *cur = rows[2];
  for (size_t j = 0; j <= lb; j++) prev[j] = (int)j;
  for (size_t i = 1; i <= la; i++) {
    cur[0] = (int)i;
    for (size_t j = 1; j <= lb; j++) {
      int cost = a[i - 1] != b[j - 1];
      int best = prev[j - 1] + cost;
      if (prev[j] + 1 < best) best = prev[j] + 1;
      if (cur[j - 1] + 1 < best) best = cur[j - 1] + 1;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && prev2[j - 2] + 1 < best)
        best = prev2[j - 2] + 1;
      cur[j] = best;
    }
    int *t = prev2;
    prev2 = prev;
    prev = cur;
    cur = t;
  }
  return prev[lb];
}

static bool close_enough(int d, size_t len) { return d <= (len >= 6 ? 2 : 1) && 3 * d <= (int)len; }

static const char *leaf_of(const char *path) {
  const char *dot = strrchr(path, '.');
  return dot ? dot + 1 : path;
}

/* Visits every row key and every section (proper dotted prefix of a key). */
typedef void (*key_visitor)(const char *key, size_t len, void *user);
static void visit_keys(const t2s_cfg_row *schema, int n, key_visitor fn, void *user) {
  for (int i = 0; i < n; i++) {
    const char *k = schema[i].key;
    for (const char *d = strchr(k, '.'); d != NULL; d = strchr(d + 1, '.'))
      fn(k, (size_t)(d - k), user);
    fn(k, strlen(k), user);
  }
}

typedef struct suggest_state {
  const char *typed;
  const char *typed_leaf;
  char best[KEY_MAX], best_leaf[KEY_MAX];
  int best_d, best_leaf_d;
} suggest_state;

static void suggest_visit(const char *key, size_t len, void *user) {
  suggest_state *s = user;
  char cand[KEY_MAX];
  if (len >= sizeof cand) return;
  memcpy(cand, key, len);
  cand[len] = '\0';
  int d = edit_distance(s->typed, cand);
  if (d < s->best_d && close_enough(d, len)) {
    s->best_d = d;
    memcpy(s->best, cand, len + 1);
  }
  /* the right name in the wrong section: 'lr' -> 'optimizer.lr' */
  if (!strcmp(leaf_of(cand), s->typed_leaf) && d < s->best_leaf_d) {
    s->best_leaf_d = d;
    memcpy(s->best_leaf, cand, len + 1);
  }
}

/* A near-miss key for an unknown path, or NULL. */
static const char *suggest_key(const t2s_cfg_row *schema, int n, const char *typed, char *buf,
                               size_t size) {
  suggest_state s = {.typed = typed, .typed_leaf = leaf_of(typed), .best_d = INT_MAX,
                     .best_leaf_d = INT_MAX};
  visit_keys(schema, n, suggest_visit, &s);
  const char *pick = s.best_d != INT_MAX ? s.best : s.best_leaf_d != INT_MAX ? s.best_leaf : NULL;
  if (pick == NULL) return NULL;
  snprintf(buf, size, "%s", pick);
  return buf;
}

typedef struct children_state {
  const char *parent;         /* "" for the top level */
  char list[512];
} children_state;

static void children_visit(const char *key, size_t len, void *user) {
  children_state *s = user;
  size_t pl = strlen(s->parent);
  if (pl > 0 && (len <= pl || strncmp(key, s->parent, pl) != 0 || key[pl] != '.')) return;
  const char *child = key + (pl ? pl + 1 : 0);
  size_t cl = len - (size_t)(child - key);
  if (memchr(child, '.', cl) != NULL) return;  /* a grandchild */
  /* already listed? names are separated by ", " */
  for (const char *p = s->list; *p;) {
    const char *end = strstr(p, ", ");
    size_t l = end ? (size_t)(end - p) : strlen(p);
    if (l == cl && !strncmp(p, child, cl)) return;
    if (!end) break;
    p = end + 2;
  }
  size_t used = strlen(s->list);
  if (used + cl + 3 >= sizeof s->list) return;
  if (used) memcpy(s->list + used, ", ", 3), used += 2;
  memcpy(s->list + used, child, cl);
  s->list[used + cl] = '\0';
}

static t2s_status fail_unknown_key(const load_ctx *c, yaml_mark_t mark, const char *path) {
  char hint[KEY_MAX];
  if (suggest_key(c->schema, c->n, path, hint, sizeof hint))
    return fail(c, mark, T2S_ERR_INVALID, "unknown key '%s' (did you mean '%s'?)", path, hint);
  children_state s = {.parent = ""};
  char parent[KEY_MAX];
  const char *dot = strrchr(path, '.');
  if (dot != NULL && (size_t)(dot - path) < sizeof parent) {
    memcpy(parent, path, (size_t)(dot - path));
    parent[dot - path] = '\0';
    s.parent = parent;
  }
  visit_keys(c->schema, c->n, children_visit, &s);
  if (s.list[0] == '\0')
    return fail(c, mark, T2S_ERR_INVALID, "unknown key '%s'; remove it or check its spelling",
                path);
  return fail(c, mark, T2S_ERR_INVALID,
              "unknown key '%s'; remove it or use one of the keys allowed %s%s%s: %s", path,
              s.parent[0] ? "in '" : "at the top level", s.parent, s.parent[0] ? "'" : "", s.list);
}

/* ---- schema ------------------------------------------------------------ */

int t2s_config_find(const t2s_cfg_row *schema, int n_rows, const char *key) {
  for (int i = 0; i < n_rows; i++)
    if (!strcmp(schema[i].key, key)) return i;
  return -1;
}

/* Is `path` a section, i.e. a proper prefix of some key followed by '.'? */
static bool is_section(const t2s_cfg_row *schema, int n, const char *path) {
  size_t len = strlen(path);
  for (int i = 0; i < n; i++)
    if (!strncmp(schema[i].key, path, len) && schema[i].key[len] == '.') return true;
  return false;
}

static size_t capacity(const t2s_cfg_row *r) { return r->elem_size ? r->size / r->elem_size : 1; }

static bool is_list(t2s_cfg_type t) {
  return t == T2S_CFG_TYPE_INT_LIST || t == T2S_CFG_TYPE_FLOAT_LIST ||
         t == T2S_CFG_TYPE_STRING_LIST;
}

/* Bytes of C storage a type needs: the field for scalars, one element for
 * lists; 0 for strings (any char[N] with N >= 2). */
static size_t storage_size(t2s_cfg_type t) {
  switch (t) {
    case T2S_CFG_TYPE_INT: case T2S_CFG_TYPE_ENUM: case T2S_CFG_TYPE_INT_LIST: return sizeof(int);
    case T2S_CFG_TYPE_FLOAT: case T2S_CFG_TYPE_FLOAT_LIST: return sizeof(double);
    case T2S_CFG_TYPE_BOOL: return sizeof(bool);
    default: return 0;
  }
}

static const char *row_problem(const t2s_cfg_row *r);

/* A RECORD_LIST row: its list bounds and its field rows (plain names, inside one record). */
static const char *record_problem(const t2s_cfg_row *r) {
  if (r->fields == NULL || r->n_fields < 1 || r->n_fields > T2S_CFG_MAX_RECORD_FIELDS)
    return "a RECORD_LIST row needs 1 to T2S_CFG_MAX_RECORD_FIELDS fields";
  if (r->elem_size == 0 || r->size % r->elem_size) return "the list size is not a multiple of its element size";
  if (!r->has_count) return "a RECORD_LIST needs a count field";
  if (r->min_len < 0 || r->min_len > r->max_len || r->max_len < 1 || (size_t)r->max_len > capacity(r))
    return "the list needs 0 <= min_len <= max_len <= capacity and max_len >= 1";
  if (r->def == NULL || strcmp(r->def, "[]") != 0 || r->required)
    return "a RECORD_LIST row's default must be \"[]\" (records have no default text)";
  for (int i = 0; i < r->n_fields; i++) {
    const t2s_cfg_row *f = &r->fields[i];
    if (f->type == T2S_CFG_TYPE_RECORD_LIST) return "a record field cannot itself be a RECORD_LIST";
    const char *problem = row_problem(f);
    if (problem != NULL) return problem;
    if (strchr(f->key, '.') != NULL) return "a record field's key must be a plain name";
    if (f->offset + f->size > r->elem_size || (f->has_count && f->count_offset + sizeof(int) > r->elem_size))
      return "a record field lies outside one record";
    for (int j = 0; j < i; j++)
      if (!strcmp(f->key, r->fields[j].key)) return "a record field appears twice";
  }
  return NULL;
}

static const char *row_problem(const t2s_cfg_row *r) {
  if (r->key == NULL || r->key[0] == '\0' || r->key[0] == '.' || strstr(r->key, "..") ||
      r->key[strlen(r->key) - 1] == '.' || strlen(r->key) >= KEY_MAX - 16)
    return "the key must be a non-empty dotted path of at most 239 characters";
  for (const char *p = r->key; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
          *p == '_' || *p == '.'))
      return "the key may only contain letters, digits, '_' and '.'";
  if ((unsigned)r->type > T2S_CFG_TYPE_RECORD_LIST) return "unknown type";
  if (r->type == T2S_CFG_TYPE_RECORD_LIST) return record_problem(r);
  size_t need = storage_size(r->type), have = is_list(r->type) ? r->elem_size : r->size;
  if (need != 0 && have != need)
    return "the field's C type does not match the row's type (int, double, bool, int-sized enum)";
  if (need == 0 && have < 2)
    return "a string field must be a char[N] array (char[CAP][N] for a string list)";
  if (r->type == T2S_CFG_TYPE_ENUM && (r->choices == NULL || r->choices[0] == NULL))
    return "an ENUM row needs choices";
  if (r->type == T2S_CFG_TYPE_ENUM && r->values != NULL)
    for (int i = 0; r->choices[i] != NULL; i++)
      for (int j = 0; j < i; j++)
        if (r->values[i] == r->values[j]) return "an ENUM row's values must be distinct";
  if (is_list(r->type)) {
    if (r->size % r->elem_size) return "the list size is not a multiple of its element size";
    if (r->min_len < 0 || r->min_len > r->max_len || r->max_len < 1 ||
        (size_t)r->max_len > capacity(r))
      return "the list needs 0 <= min_len <= max_len <= capacity and max_len >= 1";
    if (!r->has_count && (r->min_len != r->max_len || (size_t)r->max_len != capacity(r)))
      return "a list without a count field must have min_len == max_len == capacity";
    if (r->type == T2S_CFG_TYPE_STRING_LIST && !r->has_count)
      return "a STRING_LIST needs a count field";
  }
  bool numeric = r->type == T2S_CFG_TYPE_INT || r->type == T2S_CFG_TYPE_FLOAT ||
                 r->type == T2S_CFG_TYPE_INT_LIST || r->type == T2S_CFG_TYPE_FLOAT_LIST;
  if (numeric && !(r->min <= r->max)) return "min must be <= max";
  if (!r->required && r->def == NULL) return "a row needs a default or required = true";
  return NULL;
}

t2s_status t2s_config_check_schema(const t2s_cfg_row *schema, int n_rows, t2s_error *err) {
  if (schema == NULL || n_rows <= 0)
    return t2s_error_set(err, T2S_ERR_INVALID, "config schema: the table is empty");
  for (int i = 0; i < n_rows; i++) {
    const char *problem = row_problem(&schema[i]);
    if (problem != NULL)
      return t2s_error_set(err, T2S_ERR_INVALID, "config schema row %d ('%s'): %s", i,
                           schema[i].key ? schema[i].key : "(null)", problem);
  }
  for (int i = 0; i < n_rows; i++)
    for (int j = 0; j < n_rows; j++) {
      const char *a = schema[i].key, *b = schema[j].key;
      size_t la = strlen(a);
      if (i < j && !strcmp(a, b))
        return t2s_error_set(err, T2S_ERR_INVALID, "config schema: key '%s' appears twice", a);
      if (i != j && !strncmp(a, b, la) && b[la] == '.')
        return t2s_error_set(err, T2S_ERR_INVALID,
                             "config schema: '%s' is both a key and the section of '%s'", a, b);
    }
  return T2S_OK;
}

/* ---- values ------------------------------------------------------------ */

static const char *type_noun(const t2s_cfg_row *r) {
  switch (r->type) {
    case T2S_CFG_TYPE_INT: case T2S_CFG_TYPE_INT_LIST: return "an integer";
    case T2S_CFG_TYPE_FLOAT: case T2S_CFG_TYPE_FLOAT_LIST: return "a number";
    case T2S_CFG_TYPE_BOOL: return "true or false";
    default: return "a string";
  }
}

static void format_range(const t2s_cfg_row *r, bool integer, char *buf, size_t size) {
  bool no_max = integer ? r->max >= INT_MAX : r->max >= DBL_MAX;
  bool no_min = integer ? r->min <= INT_MIN : r->min <= -DBL_MAX;
  const char *lo = r->min_open ? ">" : ">=";
  if (no_min && no_max) snprintf(buf, size, "any value");
  else if (no_max) snprintf(buf, size, "%s %.10g", lo, r->min);
  else if (no_min) snprintf(buf, size, "<= %.10g", r->max);
  else if (r->min_open) snprintf(buf, size, "> %.10g and <= %.10g", r->min, r->max);
  else snprintf(buf, size, "between %.10g and %.10g", r->min, r->max);
}

static bool in_range(const t2s_cfg_row *r, double v) {
  return (r->min_open ? v > r->min : v >= r->min) && v <= r->max;
}

/* The one message for a number outside its row's bounds (integers and floats). */
static t2s_status out_of_range(const load_ctx *c, const t2s_cfg_row *r, const char *path,
                               const yaml_node_t *node, bool integer) {
  char tmp[SHOW_MAX + 8], range[96];
  format_range(r, integer, range, sizeof range);
  return fail(c, node->start_mark, T2S_ERR_INVALID,
              "'%s' is %s but must be %s; choose a value in that range", path,
              shown(scalar_text(node), tmp, sizeof tmp), range);
}

static void join_choices(const t2s_cfg_row *r, char *buf, size_t size) {
  buf[0] = '\0';
  size_t used = 0;
  for (int i = 0; r->choices[i] != NULL; i++) {
    int w = snprintf(buf + used, size - used, "%s%s", i ? ", " : "", r->choices[i]);
    if (w < 0 || (size_t)w >= size - used) break;
    used += (size_t)w;
  }
}

/* Rejects anything that is not a plain scalar for a number or bool. */
static t2s_status need_plain_scalar(const load_ctx *c, const t2s_cfg_row *r, const char *path,
                                    const yaml_node_t *node) {
  if (node->type == YAML_SCALAR_NODE && node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
      !is_null(node))
    return T2S_OK;
  char what[SHOW_MAX + 32];
  const char *desc = describe_node(node, what, sizeof what);
  if (is_null(node))
    return fail(c, node->start_mark, T2S_ERR_INVALID,
                "'%s' has no value; write %s there, or remove the key to use the default (%s)",
                path, type_noun(r), r->def ? r->def : "none: it is required");
  return fail(c, node->start_mark, T2S_ERR_INVALID,
              "'%s' expects %s, got %s; write %s without quotes, like %s", path, type_noun(r),
              desc, type_noun(r), r->def ? r->def : "the example configs do");
}

static t2s_status parse_int(const load_ctx *c, const t2s_cfg_row *r, const char *path,
                            const yaml_node_t *node, int *out) {
  t2s_status st = need_plain_scalar(c, r, path, node);
  if (st != T2S_OK) return st;
  const char *t = scalar_text(node);
  char *end = NULL, tmp[SHOW_MAX + 8];
  errno = 0;
  long long v = strtoll(t, &end, 10);
  if (end == t || *end != '\0')
    return fail(c, node->start_mark, T2S_ERR_INVALID,
                "'%s' expects an integer, got '%s'; write %s like %s", path,
                shown(t, tmp, sizeof tmp),
                r->type == T2S_CFG_TYPE_INT ? "a whole number" : "whole numbers,",
                r->def ? r->def : "2");
  if (r->choices != NULL) {
    for (int i = 0; r->choices[i] != NULL; i++)
      if (atoll(r->choices[i]) == v && errno == 0) {
        *out = (int)v;
        return T2S_OK;
      }
    char list[256];
    join_choices(r, list, sizeof list);
    return fail(c, node->start_mark, T2S_ERR_INVALID, "'%s' is %s but must be one of: %s", path,
                shown(t, tmp, sizeof tmp), list);
  }
  if (errno == ERANGE || v < INT_MIN || v > INT_MAX)
    return fail(c, node->start_mark, T2S_ERR_INVALID,
                "'%s' is %s, which does not fit an integer (%d to %d); use a smaller value", path,
                shown(t, tmp, sizeof tmp), INT_MIN, INT_MAX);
  if (!in_range(r, (double)v)) return out_of_range(c, r, path, node, true);
  *out = (int)v;
  return T2S_OK;
}

static t2s_status parse_float(const load_ctx *c, const t2s_cfg_row *r, const char *path,
                              const yaml_node_t *node, double *out) {
  t2s_status st = need_plain_scalar(c, r, path, node);
  if (st != T2S_OK) return st;
  const char *t = scalar_text(node);
  char *end = NULL, tmp[SHOW_MAX + 8];
  double v = strtod(t, &end);
  if (end == t || *end != '\0')
    return fail(c, node->start_mark, T2S_ERR_INVALID,
                "'%s' expects a number, got '%s'; write it like 0.5 or 1e-4", path,
                shown(t, tmp, sizeof tmp));
  if (!isfinite(v))
    return fail(c, node->start_mark, T2S_ERR_INVALID,
                "'%s' is %s but must be a finite number", path, shown(t, tmp, sizeof tmp));
  if (!in_range(r, v)) return out_of_range(c, r, path, node, false);
  *out = v;
  return T2S_OK;
}

static t2s_status parse_bool(const load_ctx *c, const t2s_cfg_row *r, const char *path,
                             const yaml_node_t *node, bool *out) {
  t2s_status st = need_plain_scalar(c, r, path, node);
  if (st != T2S_OK) return st;
  const char *t = scalar_text(node);
  char tmp[SHOW_MAX + 8];
  if (!strcmp(t, "true") || !strcmp(t, "True") || !strcmp(t, "TRUE")) *out = true;
  else if (!strcmp(t, "false") || !strcmp(t, "False") || !strcmp(t, "FALSE")) *out = false;
  else
    return fail(c, node->start_mark, T2S_ERR_INVALID,
                "'%s' expects true or false, got '%s'; write true or false", path,
                shown(t, tmp, sizeof tmp));
  return T2S_OK;
}

/* Any scalar is a string; null is the empty string. `dst` has `size` bytes. */
static t2s_status parse_string(const load_ctx *c, const t2s_cfg_row *r, const char *path,
                               const yaml_node_t *node, char *dst, size_t size) {
  char what[SHOW_MAX + 32];
  if (node->type != YAML_SCALAR_NODE)
    return fail(c, node->start_mark, T2S_ERR_INVALID,
                "'%s' expects a string, got %s; write one value (quote it if it contains ':' "
                "or '#')",
                path, describe_node(node, what, sizeof what));
  const char *t = is_null(node) ? "" : scalar_text(node);
  size_t len = is_null(node) ? 0 : node->data.scalar.length;
  if (strlen(t) != len)
    return fail(c, node->start_mark, T2S_ERR_INVALID,
                "'%s' contains a NUL character; remove it", path);
  if (len >= size)
    return fail(c, node->start_mark, T2S_ERR_INVALID,
                "'%s' is %zu characters long but at most %zu fit; shorten it", path, len,
                size - 1);
  if (len == 0 && r->required)
    return fail(c, node->start_mark, T2S_ERR_INVALID,
                "'%s' must not be empty (%s); give it a value", path,
                r->help ? r->help : "required");
  memset(dst, 0, size);
  memcpy(dst, t, len);
  return T2S_OK;
}

static t2s_status parse_enum(const load_ctx *c, const t2s_cfg_row *r, const char *path,
                             const yaml_node_t *node, int *out) {
  char list[512], what[SHOW_MAX + 32];
  join_choices(r, list, sizeof list);
  if (node->type != YAML_SCALAR_NODE || is_null(node))
    return fail(c, node->start_mark, T2S_ERR_INVALID, "'%s' expects one of: %s; got %s", path,
                list, describe_node(node, what, sizeof what));
  const char *t = scalar_text(node);
  int best = -1, best_d = INT_MAX;
  for (int i = 0; r->choices[i] != NULL; i++) {
    if (!strcmp(t, r->choices[i])) {
      *out = r->values ? r->values[i] : i;
      return T2S_OK;
    }
    int d = edit_distance(t, r->choices[i]);
    if (d < best_d && close_enough(d, strlen(r->choices[i]))) best_d = d, best = i;
  }
  char tmp[SHOW_MAX + 8], hint[128] = "";
  if (best >= 0) snprintf(hint, sizeof hint, " (did you mean '%s'?)", r->choices[best]);
  return fail(c, node->start_mark, T2S_ERR_INVALID, "'%s' is '%s' but must be one of: %s%s",
              path, shown(t, tmp, sizeof tmp), list, hint);
}

static int *count_field(char *base, const t2s_cfg_row *r) {
  return (int *)(void *)(base + r->count_offset);
}

/* "write it like [512, 512]" for a list-length message. */
static void length_rule(const t2s_cfg_row *r, char *buf, size_t size) {
  if (r->min_len == r->max_len)
    snprintf(buf, size, "exactly %d value%s", r->min_len, r->min_len == 1 ? "" : "s");
  else
    snprintf(buf, size, "%d to %d values", r->min_len, r->max_len);
}

static t2s_status set_list(load_ctx *c, const t2s_cfg_row *r, const char *path,
                           const yaml_document_t *doc, const yaml_node_t *node) {
  char *field = c->base + r->offset, what[SHOW_MAX + 32], rule[64];
  const yaml_node_item_t *items = NULL;
  int n = 0;
  const yaml_node_t *single = NULL;
  if (node->type == YAML_SEQUENCE_NODE) {
    items = node->data.sequence.items.start;
    n = (int)(node->data.sequence.items.top - items);
  } else if (r->type == T2S_CFG_TYPE_STRING_LIST && node->type == YAML_SCALAR_NODE) {
    if (!is_null(node)) single = node, n = 1;  /* one glob instead of a list */
  } else {
    return fail(c, node->start_mark, T2S_ERR_INVALID,
                "'%s' expects a list of %s, got %s; write it like %s", path,
                r->type == T2S_CFG_TYPE_FLOAT_LIST ? "numbers" : r->type == T2S_CFG_TYPE_INT_LIST
                                                                 ? "integers" : "strings",
                describe_node(node, what, sizeof what), r->def ? r->def : "[a, b]");
  }
  if (n < r->min_len || n > r->max_len) {
    length_rule(r, rule, sizeof rule);
    return fail(c, node->start_mark, T2S_ERR_INVALID,
                "'%s' needs %s, got %d; write it like %s", path, rule, n,
                r->def && r->def[0] == '[' && strlen(r->def) > 2 ? r->def : "[a, b]");
  }
  memset(field, 0, r->size);
  for (int i = 0; i < n; i++) {
    const yaml_node_t *el =
        single ? single : yaml_document_get_node((yaml_document_t *)doc, items[i]);
    char el_path[KEY_MAX + 16];
    snprintf(el_path, sizeof el_path, "%s[%d]", path, i);
    t2s_status st;
    if (r->type == T2S_CFG_TYPE_INT_LIST) {
      st = parse_int(c, r, el_path, el, (int *)(void *)field + i);
    } else if (r->type == T2S_CFG_TYPE_FLOAT_LIST) {
      st = parse_float(c, r, el_path, el, (double *)(void *)field + i);
    } else {
      st = is_null(el) ? fail(c, el->start_mark, T2S_ERR_INVALID,
                              "'%s' is empty; write a file name or glob, or remove the item",
                              el_path)
                       : parse_string(c, r, el_path, el, field + (size_t)i * r->elem_size,
                                      r->elem_size);
    }
    if (st != T2S_OK) return st;
  }
  if (r->has_count) *count_field(c->base, r) = n;
  return T2S_OK;
}

static t2s_status set_records(load_ctx *c, const t2s_cfg_row *r, const char *path,
                              const yaml_document_t *doc, const yaml_node_t *node);
static t2s_status set_from_text(load_ctx *c, const t2s_cfg_row *r, const char *value);

/* Converts `node` with the row's type and checks, into the user's struct. */
static t2s_status set_row(load_ctx *c, const t2s_cfg_row *r, const char *path,
                          const yaml_document_t *doc, const yaml_node_t *node) {
  char *field = c->base + r->offset;
  t2s_status st = T2S_OK;
  switch (r->type) {
    case T2S_CFG_TYPE_INT: {
      int v = 0;
      if ((st = parse_int(c, r, path, node, &v)) == T2S_OK) memcpy(field, &v, sizeof v);
      break;
    }
    case T2S_CFG_TYPE_FLOAT: {
      double v = 0;
      if ((st = parse_float(c, r, path, node, &v)) == T2S_OK) memcpy(field, &v, sizeof v);
      break;
    }
    case T2S_CFG_TYPE_BOOL: {
      bool v = false;
      if ((st = parse_bool(c, r, path, node, &v)) == T2S_OK) memcpy(field, &v, sizeof v);
      break;
    }
    case T2S_CFG_TYPE_ENUM: {
      int v = 0;
      if ((st = parse_enum(c, r, path, node, &v)) == T2S_OK) memcpy(field, &v, sizeof v);
      break;
    }
    case T2S_CFG_TYPE_STRING: st = parse_string(c, r, path, node, field, r->size); break;
    case T2S_CFG_TYPE_RECORD_LIST: st = set_records(c, r, path, doc, node); break;
    default: st = set_list(c, r, path, doc, node); break;
  }
  return st;
}

/* ---- YAML documents ---------------------------------------------------- */

static t2s_status walk_mapping(load_ctx *c, yaml_document_t *doc, yaml_node_t *map,
                               const char *prefix);
static t2s_status set_record_field(load_ctx *c, yaml_document_t *doc, const char *path,
                                   yaml_node_t *key, yaml_node_t *value);

static t2s_status set_from_file(load_ctx *c, yaml_document_t *doc, const char *path,
                                yaml_node_t *key, yaml_node_t *value) {
  if (c->skip) return set_record_field(c, doc, path, key, value);
  int i = t2s_config_find(c->schema, c->n, path);
  if (i >= 0) {
    t2s_cfg_origin *o = &c->origins[i];
    /* a base setting the key first is what inheritance is for; the same file twice is not */
    if (o->kind == T2S_CFG_FROM_FILE && c->set_in[i] == c->file_seq)
      return fail(c, key->start_mark, T2S_ERR_INVALID,
                  "duplicate key '%s' (first set at line %d, column %d); keep only one of them",
                  path, o->line, o->column);
    t2s_status st = set_row(c, &c->schema[i], path, doc, value);
    if (st != T2S_OK) return st;
    *o = (t2s_cfg_origin){T2S_CFG_FROM_FILE, (int)key->start_mark.line + 1,
                          (int)key->start_mark.column + 1, -1, ""};
    snprintf(o->file, sizeof o->file, "%s", c->file);
    c->set_in[i] = c->file_seq;
    return T2S_OK;
  }
  if (is_section(c->schema, c->n, path)) {
    if (value->type == YAML_MAPPING_NODE) return walk_mapping(c, doc, value, path);
    if (is_null(value)) return T2S_OK;  /* "data:" with nothing below: all defaults */
    char what[SHOW_MAX + 32];
    return fail(c, value->start_mark, T2S_ERR_INVALID,
                "'%s' is a section and takes a mapping of keys, got %s; indent its keys "
                "below it (e.g. '%s:' then '  <key>: <value>')",
                path, describe_node(value, what, sizeof what), leaf_of(path));
  }
  return fail_unknown_key(c, key->start_mark, path);
}

/* A key inside one record (c->schema holds the record's fields; path is
 * "list[i].field"). Duplicates are caught by walk_mapping. */
static t2s_status set_record_field(load_ctx *c, yaml_document_t *doc, const char *path,
                                   yaml_node_t *key, yaml_node_t *value) {
  const char *field = path + c->skip;
  int i = t2s_config_find(c->schema, c->n, field);
  if (i >= 0) {
    t2s_status st = set_row(c, &c->schema[i], path, doc, value);
    if (st == T2S_OK)
      c->origins[i] = (t2s_cfg_origin){T2S_CFG_FROM_FILE, (int)key->start_mark.line + 1,
                                       (int)key->start_mark.column + 1, -1, ""};
    return st;
  }
  char hint[KEY_MAX], keys[512] = "";
  for (int j = 0; j < c->n; j++) {
    size_t used = strlen(keys);
    snprintf(keys + used, sizeof keys - used, "%s%s", j ? ", " : "", c->schema[j].key);
  }
  if (suggest_key(c->schema, c->n, field, hint, sizeof hint))
    return fail(c, key->start_mark, T2S_ERR_INVALID, "unknown key '%s' (did you mean '%s'?)",
                path, hint);
  return fail(c, key->start_mark, T2S_ERR_INVALID,
              "unknown key '%s'; an item of this list takes the keys: %s", path, keys);
}

/* Fills one record from a YAML mapping: its fields' defaults, the mapping, then
 * its required fields. */
static t2s_status set_record(load_ctx *c, const t2s_cfg_row *r, const char *el_path,
                             yaml_document_t *doc, yaml_node_t *el, char *record) {
  char what[SHOW_MAX + 32];
  if (el->type != YAML_MAPPING_NODE)
    return fail(c, el->start_mark, T2S_ERR_INVALID,
                "'%s' expects a mapping of keys (%s), got %s; write it like '- %s: ...'",
                el_path, r->fields[0].key, describe_node(el, what, sizeof what),
                r->fields[0].key);
  t2s_cfg_origin origins[T2S_CFG_MAX_RECORD_FIELDS];
  memset(origins, 0, sizeof origins);
  memset(record, 0, r->elem_size);
  load_ctx sub = *c;
  sub.schema = r->fields, sub.n = r->n_fields, sub.base = record, sub.origins = origins;
  sub.skip = strlen(el_path) + 1;
  t2s_status st = T2S_OK;
  for (int j = 0; j < r->n_fields && st == T2S_OK; j++) {
    if (r->fields[j].required) continue;
    sub.default_of = r->fields[j].key;
    st = set_from_text(&sub, &r->fields[j], r->fields[j].def);
  }
  sub.default_of = NULL;
  if (st == T2S_OK) st = walk_mapping(&sub, doc, el, el_path);
  for (int j = 0; j < r->n_fields && st == T2S_OK; j++)
    if (r->fields[j].required && origins[j].kind == T2S_CFG_FROM_DEFAULT)
      st = fail(c, el->start_mark, T2S_ERR_INVALID, "'%s' needs the key '%s' (%s)", el_path,
                r->fields[j].key, r->fields[j].help ? r->fields[j].help : "");
  return st;
}

static t2s_status set_records(load_ctx *c, const t2s_cfg_row *r, const char *path,
                              const yaml_document_t *doc, const yaml_node_t *node) {
  char what[SHOW_MAX + 32], rule[64];
  int n = 0;
  if (node->type == YAML_SEQUENCE_NODE)
    n = (int)(node->data.sequence.items.top - node->data.sequence.items.start);
  else if (!is_null(node))
    return fail(c, node->start_mark, T2S_ERR_INVALID,
                "'%s' expects a list of mappings, got %s; write it like '- %s: ...' lines "
                "below it", path, describe_node(node, what, sizeof what), r->fields[0].key);
  if (n < r->min_len || n > r->max_len) {
    length_rule(r, rule, sizeof rule);
    return fail(c, node->start_mark, T2S_ERR_INVALID, "'%s' needs %s, got %d", path, rule, n);
  }
  char *field = c->base + r->offset;
  memset(field, 0, r->size);
  for (int i = 0; i < n; i++) {
    yaml_node_t *el = yaml_document_get_node((yaml_document_t *)doc,
                                             node->data.sequence.items.start[i]);
    char el_path[KEY_MAX + 16];
    snprintf(el_path, sizeof el_path, "%s[%d]", path, i);
    t2s_status st = set_record(c, r, el_path, (yaml_document_t *)doc, el,
                               field + (size_t)i * r->elem_size);
    if (st != T2S_OK) return st;
  }
  *count_field(c->base, r) = n;
  return T2S_OK;
}

static t2s_status walk_mapping(load_ctx *c, yaml_document_t *doc, yaml_node_t *map,
                               const char *prefix) {
  yaml_node_pair_t *pairs = map->data.mapping.pairs.start;
  int n = (int)(map->data.mapping.pairs.top - pairs);
  for (int i = 0; i < n; i++) {
    yaml_node_t *key = yaml_document_get_node(doc, pairs[i].key);
    yaml_node_t *value = yaml_document_get_node(doc, pairs[i].value);
    char what[SHOW_MAX + 32], path[KEY_MAX];
    if (key->type != YAML_SCALAR_NODE || is_null(key))
      return fail(c, key->start_mark, T2S_ERR_INVALID,
                  "a key must be a name, got %s%s%s; write 'name: value' lines",
                  describe_node(key, what, sizeof what), prefix ? " in section " : "",
                  prefix ? prefix : "");
    for (int j = 0; j < i; j++) {
      yaml_node_t *other = yaml_document_get_node(doc, pairs[j].key);
      if (other->type == YAML_SCALAR_NODE && !strcmp(scalar_text(other), scalar_text(key)))
        return fail(c, key->start_mark, T2S_ERR_INVALID,
                    "duplicate key '%s%s%s' (first at line %zu, column %zu); keep only one of them",
                    prefix ? prefix : "", prefix ? "." : "", scalar_text(key),
                    other->start_mark.line + 1, other->start_mark.column + 1);
    }
    if (prefix == NULL && !strcmp(scalar_text(key), BASE_KEY)) {
      if (c->bases_allowed) continue;  /* loaded before this file's keys (load_bases) */
      return fail(c, key->start_mark, T2S_ERR_INVALID,
                  "'" BASE_KEY "' is only resolved in a config file (relative to its directory), "
                  "not in config text; load the file itself");
    }
    int w = snprintf(path, sizeof path, "%s%s%s", prefix ? prefix : "", prefix ? "." : "",
                     scalar_text(key));
    if (w < 0 || (size_t)w >= sizeof path - 16)
      return fail(c, key->start_mark, T2S_ERR_INVALID,
                  "key path '%.60s...' is too long to be a known key; check the indentation",
                  path);
    t2s_status st = set_from_file(c, doc, path, key, value);
    if (st != T2S_OK) return st;
  }
  return T2S_OK;
}

/* 1-based line and column of a byte offset (for reader errors, which give only an offset). */
static yaml_mark_t mark_at(const char *text, size_t len, size_t offset) {
  yaml_mark_t m = {0, 0, 0};
  for (size_t i = 0; i < offset && i < len; i++) {
    if (text[i] == '\n') m.line++, m.column = 0;
    else m.column++;
  }
  m.index = offset;
  return m;
}

static bool line_has_tab(const char *text, size_t len, size_t line) {
  size_t cur = 0;
  for (size_t i = 0; i < len; i++) {
    if (text[i] == '\n') {
      if (cur++ == line) return false;
    } else if (cur == line && text[i] == '\t') {
      return true;
    }
  }
  return false;
}

static t2s_status fail_syntax(const load_ctx *c, const yaml_parser_t *p, const char *text,
                              size_t len) {
  yaml_mark_t m = p->error == YAML_READER_ERROR ? mark_at(text, len, p->problem_offset)
                                                : p->problem_mark;
  char context[160] = "";
  if (p->context != NULL)
    snprintf(context, sizeof context, " (%s at line %zu, column %zu)", p->context,
             p->context_mark.line + 1, p->context_mark.column + 1);
  bool tab = line_has_tab(text, len, m.line) ||
             (p->context != NULL && line_has_tab(text, len, p->context_mark.line));
  return fail(c, m, T2S_ERR_FORMAT, "malformed YAML: %s%s; %s",
              p->problem ? p->problem : "unknown libyaml error", context,
              tab ? "YAML does not allow tab characters for indentation: indent with spaces"
                  : "fix the syntax there (check brackets, quotes, ':' and indentation)");
}

/* Parses `text` as one YAML document; *doc is valid (delete it) when T2S_OK.
 * *root is NULL for an empty document. */
static t2s_status load_document(load_ctx *c, const char *text, size_t len, yaml_document_t *doc,
                                yaml_node_t **root) {
  yaml_parser_t p;
  yaml_mark_t none = {0, 0, 0};
  if (!yaml_parser_initialize(&p))
    return fail(c, none, T2S_ERR_NOMEM, "libyaml could not create a parser (out of memory)");
  yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
  if (!yaml_parser_load(&p, doc)) {
    t2s_status st = fail_syntax(c, &p, text, len);
    yaml_parser_delete(&p);
    return st;
  }
  *root = yaml_document_get_root_node(doc);
  t2s_status st = T2S_OK;
  yaml_document_t next;
  if (*root != NULL) {
    if (!yaml_parser_load(&p, &next)) {
      st = fail_syntax(c, &p, text, len);
    } else {
      yaml_node_t *extra = yaml_document_get_root_node(&next);
      if (extra != NULL)
        st = fail(c, extra->start_mark, T2S_ERR_FORMAT,
                  "a second YAML document starts here (after '---'); keep one experiment per "
                  "file");
      yaml_document_delete(&next);
    }
  }
  yaml_parser_delete(&p);
  if (st != T2S_OK) yaml_document_delete(doc);
  return st;
}

static void required_keys(const load_ctx *c, char *buf, size_t size) {
  buf[0] = '\0';
  size_t used = 0;
  for (int i = 0; i < c->n; i++) {
    if (!c->schema[i].required) continue;
    int w = snprintf(buf + used, size - used, "%s'%s'", used ? ", " : "", c->schema[i].key);
    if (w < 0 || (size_t)w >= size - used) break;
    used += (size_t)w;
  }
}

static t2s_status read_whole_file(const char *path, char **text, size_t *len, t2s_error *err);
static t2s_status load_yaml_text(load_ctx *c, const char *text, size_t len);

/* The path of base `name` named in c->file: relative to that file's directory. */
static bool resolve_base(const load_ctx *c, const char *name, char *buf, size_t size) {
  const char *slash = strrchr(c->file, '/');
  int w = name[0] == '/' || slash == NULL
              ? snprintf(buf, size, "%s", name)
              : snprintf(buf, size, "%.*s/%s", (int)(slash - c->file), c->file, name);
  return w >= 0 && (size_t)w < size;
}

/* Loads one base file (and its bases) into the struct, then returns to c->file. */
static t2s_status load_base_file(load_ctx *c, const yaml_node_t *entry, const char *name) {
  char path[T2S_CFG_FILE_MAX], chain[T2S_ERROR_MAX / 2];
  if (!resolve_base(c, name, path, sizeof path))
    return fail(c, entry->start_mark, T2S_ERR_INVALID,
                BASE_KEY " entry '%.80s' makes a path longer than %d characters; shorten it",
                name, T2S_CFG_FILE_MAX - 1);
  char *canon = realpath(path, NULL);
  if (canon == NULL) {
    chain_text(c, path, chain, sizeof chain);
    return fail(c, entry->start_mark, T2S_ERR_IO,
                BASE_KEY " entry '%s' is %s, which cannot be opened (%s); the path is relative "
                "to the including file (chain %s)", name, path, strerror(errno), chain);
  }
  for (int i = 0; i <= c->depth; i++) {
    if (c->canon[i] == NULL || strcmp(c->canon[i], canon) != 0) continue;
    chain_text(c, path, chain, sizeof chain);
    free(canon);
    return fail(c, entry->start_mark, T2S_ERR_INVALID,
                BASE_KEY " entry '%s' makes a cycle: %s; remove one of these " BASE_KEY
                " entries", name, chain);
  }
  if (c->depth >= BASE_DEPTH_MAX) {
    chain_text(c, path, chain, sizeof chain);
    free(canon);
    return fail(c, entry->start_mark, T2S_ERR_INVALID,
                BASE_KEY " files nest more than %d deep (%s); flatten the chain", BASE_DEPTH_MAX,
                chain);
  }
  char *text = NULL;
  size_t len = 0;
  t2s_status st = read_whole_file(path, &text, &len, c->err);
  if (st == T2S_OK) {
    const char *file = c->file;
    yaml_mark_t root_mark = c->root_mark;
    int seq = c->file_seq;
    c->depth++;
    c->chain[c->depth] = c->file = path;
    c->canon[c->depth] = canon;
    c->file_seq = ++c->n_files;
    st = load_yaml_text(c, text, len);
    c->depth--;
    c->file = file;
    c->root_mark = root_mark;
    c->file_seq = seq;
  }
  free(text);
  free(canon);
  return st;
}

/* `_base_: FILE` or `_base_: [FILE, ...]` at the top of `root`: each loaded in order,
 * before the file's own keys, so that later files override earlier ones. */
static t2s_status load_bases(load_ctx *c, yaml_document_t *doc, yaml_node_t *root) {
  if (!c->bases_allowed) return T2S_OK;  /* walk_mapping refuses the key */
  yaml_node_pair_t *pairs = root->data.mapping.pairs.start;
  int n = (int)(root->data.mapping.pairs.top - pairs);
  for (int i = 0; i < n; i++) {
    yaml_node_t *key = yaml_document_get_node(doc, pairs[i].key);
    if (key->type != YAML_SCALAR_NODE || strcmp(scalar_text(key), BASE_KEY) != 0) continue;
    yaml_node_t *value = yaml_document_get_node(doc, pairs[i].value);
    yaml_node_item_t *items = value->type == YAML_SEQUENCE_NODE ? value->data.sequence.items.start
                                                                : NULL;
    int count = items ? (int)(value->data.sequence.items.top - items) : 1;
    for (int j = 0; j < count; j++) {
      yaml_node_t *entry = items ? yaml_document_get_node(doc, items[j]) : value;
      char what[SHOW_MAX + 32];
      if (entry->type != YAML_SCALAR_NODE || is_null(entry) || scalar_text(entry)[0] == '\0')
        return fail(c, entry->start_mark, T2S_ERR_INVALID,
                    BASE_KEY " takes a file name or a list of file names, got %s; e.g. "
                    BASE_KEY ": [../_base_/schedule.yaml]", describe_node(entry, what, sizeof what));
      t2s_status st = load_base_file(c, entry, scalar_text(entry));
      if (st != T2S_OK) return st;
    }
    return T2S_OK;  /* a second _base_ is a duplicate key for walk_mapping */
  }
  return T2S_OK;
}

static t2s_status load_yaml_text(load_ctx *c, const char *text, size_t len) {
  yaml_document_t doc;
  yaml_node_t *root = NULL;
  t2s_status st = load_document(c, text, len, &doc, &root);
  if (st != T2S_OK) return st;
  yaml_mark_t first = {0, 0, 0};
  char what[SHOW_MAX + 32], req[256];
  if (root == NULL) {
    required_keys(c, req, sizeof req);
    st = fail(c, first, T2S_ERR_FORMAT,
              "the file is empty; write the experiment as a YAML mapping of keys%s%s",
              req[0] ? " with at least " : "", req);
  } else if (root->type != YAML_MAPPING_NODE) {
    st = fail(c, root->start_mark, T2S_ERR_FORMAT,
              "the top level must be a mapping of keys ('key: value' lines), got %s",
              describe_node(root, what, sizeof what));
  } else {
    c->root_mark = root->start_mark;
    st = load_bases(c, &doc, root);
    if (st == T2S_OK) st = walk_mapping(c, &doc, root, NULL);
  }
  yaml_document_delete(&doc);
  return st;
}

/* Parses `value` as a YAML scalar or flow sequence and sets row r from it. */
static t2s_status set_from_text(load_ctx *c, const t2s_cfg_row *r, const char *value) {
  yaml_document_t doc;
  yaml_node_t *root = NULL;
  t2s_status st = load_document(c, value, strlen(value), &doc, &root);
  if (st != T2S_OK) return st;
  yaml_node_t empty;
  if (root == NULL) {  /* "key=" : the empty (null) value */
    memset(&empty, 0, sizeof empty);
    empty.type = YAML_SCALAR_NODE;
    empty.data.scalar.value = (yaml_char_t *)"";
    empty.data.scalar.style = YAML_PLAIN_SCALAR_STYLE;
    root = &empty;
  }
  st = set_row(c, r, r->key, &doc, root);
  yaml_document_delete(&doc);
  return st;
}

static t2s_status apply_override(load_ctx *c, const char *assignment, int index) {
  yaml_mark_t none = {0, 0, 0};
  c->override = assignment;
  c->override_index = index;
  const char *eq = strchr(assignment, '=');
  char key[KEY_MAX];
  const char *k = assignment;
  while (*k == ' ') k++;
  size_t kl = eq ? (size_t)(eq - k) : 0;
  while (kl > 0 && k[kl - 1] == ' ') kl--;
  t2s_status st;
  if (eq == NULL || kl == 0 || kl >= sizeof key) {
    st = fail(c, none, T2S_ERR_INVALID, "write it as key.path=value, e.g. optimizer.lr=0.01");
  } else {
    memcpy(key, k, kl);
    key[kl] = '\0';
    int i = t2s_config_find(c->schema, c->n, key);
    if (i >= 0) {
      st = set_from_text(c, &c->schema[i], eq + 1);
      if (st == T2S_OK && c->origins)
        c->origins[i] = (t2s_cfg_origin){T2S_CFG_FROM_OVERRIDE, 0, 0, index, ""};
    } else if (is_section(c->schema, c->n, key)) {
      st = fail(c, none, T2S_ERR_INVALID,
                "'%s' is a section; override one of its keys, e.g. '%s.<key>=<value>'", key, key);
    } else {
      st = fail_unknown_key(c, none, key);
    }
  }
  c->override = NULL;
  return st;
}

/* ---- public ------------------------------------------------------------ */

t2s_status t2s_config_apply_defaults(const t2s_cfg_row *schema, int n_rows, void *cfg,
                                     t2s_error *err) {
  t2s_status st = t2s_config_check_schema(schema, n_rows, err);
  if (st != T2S_OK) return st;
  load_ctx c = {.schema = schema, .n = n_rows, .base = cfg, .err = err};
  for (int i = 0; i < n_rows; i++) {
    const t2s_cfg_row *r = &schema[i];
    memset(c.base + r->offset, 0, r->size);
    if (r->has_count) *count_field(c.base, r) = 0;
  }
  for (int i = 0; i < n_rows; i++) {
    if (schema[i].required) continue;
    c.default_of = schema[i].key;
    st = set_from_text(&c, &schema[i], schema[i].def);
    if (st != T2S_OK) return st;
  }
  return T2S_OK;
}

/* from_file: `name` is the path the text was read from, so _base_ entries resolve. */
static t2s_status load_common(const t2s_cfg_row *schema, int n_rows, void *cfg,
                              const char *text, size_t len, const char *name, bool from_file,
                              const char *const *overrides, int n_overrides,
                              t2s_cfg_origin *origins, t2s_error *err) {
  t2s_status st = t2s_config_apply_defaults(schema, n_rows, cfg, err);
  if (st != T2S_OK) return st;
  t2s_cfg_origin *own = NULL;
  int *set_in = calloc((size_t)n_rows, sizeof *set_in);
  if (origins == NULL) {
    own = calloc((size_t)n_rows, sizeof *own);
    origins = own;
  } else {
    memset(origins, 0, (size_t)n_rows * sizeof *origins);
  }
  if (origins == NULL || set_in == NULL) {
    free(own);
    free(set_in);
    return t2s_error_set(err, T2S_ERR_NOMEM, "config %s: out of memory", name);
  }
  load_ctx c = {.schema = schema, .n = n_rows, .base = cfg, .origins = origins,
                .file = name ? name : "(no file)", .err = err, .bases_allowed = from_file,
                .set_in = set_in, .file_seq = 1, .n_files = 1};
  c.chain[0] = c.file;
  c.canon[0] = from_file ? realpath(name, NULL) : NULL;
  if (text != NULL) st = load_yaml_text(&c, text, len);
  free(c.canon[0]);
  for (int i = 0; st == T2S_OK && i < n_overrides; i++) st = apply_override(&c, overrides[i], i);
  for (int i = 0; st == T2S_OK && i < n_rows; i++) {
    if (!schema[i].required || origins[i].kind != T2S_CFG_FROM_DEFAULT) continue;
    const char *help = schema[i].help ? schema[i].help : "";
    if (text != NULL)
      st = fail(&c, c.root_mark, T2S_ERR_INVALID,
                "required key '%s' is missing; add it to the file or pass %s=... (%s)",
                schema[i].key, schema[i].key, help);
    else
      st = t2s_error_set(err, T2S_ERR_INVALID,
                         "config: required key '%s' is missing; pass %s=... (%s)",
                         schema[i].key, schema[i].key, help);
  }
  free(own);
  free(set_in);
  return st;
}

t2s_status t2s_config_load_text(const t2s_cfg_row *schema, int n_rows, void *cfg,
                                const char *text, size_t len, const char *name,
                                const char *const *overrides, int n_overrides,
                                t2s_cfg_origin *origins, t2s_error *err) {
  return load_common(schema, n_rows, cfg, text ? text : "", text ? len : 0, name, false,
                     overrides,
                     n_overrides, origins, err);
}

static t2s_status read_whole_file(const char *path, char **text, size_t *len, t2s_error *err) {
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return t2s_error_set(err, T2S_ERR_IO, "config %s: cannot open it (%s); check the path",
                         path, strerror(errno));
  size_t cap = 4096, used = 0;
  char *buf = malloc(cap);
  while (buf != NULL) {
    used += fread(buf + used, 1, cap - used, f);
    if (used < cap || cap >= FILE_MAX) break;
    char *bigger = realloc(buf, cap * 2);
    if (bigger == NULL) free(buf);
    buf = bigger;
    cap *= 2;
  }
  int read_error = ferror(f);
  fclose(f);
  if (buf == NULL) return t2s_error_set(err, T2S_ERR_NOMEM, "config %s: out of memory", path);
  if (read_error || used >= FILE_MAX) {
    free(buf);
    return t2s_error_set(err, T2S_ERR_IO, "config %s: %s", path,
                         read_error ? "read failed; check the file"
                                    : "larger than 16 MiB; this is not a config file");
  }
  *text = buf;
  *len = used;
  return T2S_OK;
}

t2s_status t2s_config_load_traced(const t2s_cfg_row *schema, int n_rows, void *cfg,
                                  const char *yaml_path, const char *const *overrides,
                                  int n_overrides, t2s_cfg_origin *origins, t2s_error *err) {
  char *text = NULL;
  size_t len = 0;
  if (yaml_path != NULL) {
    t2s_status st = read_whole_file(yaml_path, &text, &len, err);
    if (st != T2S_OK) return st;
  }
  t2s_status st = load_common(schema, n_rows, cfg, text, len, yaml_path, yaml_path != NULL,
                              overrides, n_overrides,
                              origins, err);
  free(text);
  return st;
}

t2s_status t2s_config_load(const t2s_cfg_row *schema, int n_rows, void *cfg,
                           const char *yaml_path, const char *const *overrides, int n_overrides,
                           t2s_error *err) {
  return t2s_config_load_traced(schema, n_rows, cfg, yaml_path, overrides, n_overrides, NULL,
                                err);
}

t2s_status t2s_config_set(const t2s_cfg_row *schema, int n_rows, void *cfg,
                          const char *assignment, t2s_error *err) {
  t2s_status st = t2s_config_check_schema(schema, n_rows, err);
  if (st != T2S_OK) return st;
  load_ctx c = {.schema = schema, .n = n_rows, .base = cfg, .file = "", .err = err};
  return apply_override(&c, assignment, 0);
}

void t2s_config_origin_text(const t2s_cfg_origin *origin, const char *file,
                            const char *const *overrides, char *buf, size_t size) {
  if (origin->kind == T2S_CFG_FROM_FILE && origin->file[0] != '\0')
    snprintf(buf, size, "%s:%d:%d", origin->file, origin->line, origin->column);
  else if (origin->kind == T2S_CFG_FROM_FILE)
    snprintf(buf, size, "%s:%d:%d", file ? file : "(text)", origin->line, origin->column);
  else if (origin->kind == T2S_CFG_FROM_OVERRIDE && overrides != NULL)
    snprintf(buf, size, "command line override '%s'", overrides[origin->override_index]);
  else
    snprintf(buf, size, "default");
}

/* ---- dump -------------------------------------------------------------- */

typedef struct strbuf {
  char *p;
  size_t len, cap;
  bool oom;
} strbuf;

static void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(strbuf *b, const char *fmt, ...) {
  if (b->oom) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
    va_end(ap);
    if (w < 0) {
      b->oom = true;
      return;
    }
    if (b->p != NULL && b->len + (size_t)w < b->cap) {
      b->len += (size_t)w;
      return;
    }
    size_t cap = b->cap ? b->cap : 1024;
    while (cap <= b->len + (size_t)w) cap *= 2;
    char *bigger = realloc(b->p, cap);
    if (bigger == NULL) {
      b->oom = true;
      return;
    }
    b->p = bigger;
    b->cap = cap;
  }
}

/* The fewest significant digits that read back as the same double, always
 * with a '.' so that other YAML readers (PyYAML) also see a float. */
static void format_double(double v, char *buf, size_t size) {
  /* at least the integer digits, so that 10 prints as 10.0 and not 1e+01 */
  int first = fabs(v) >= 1 && fabs(v) < 1e16 ? (int)floor(log10(fabs(v))) + 1 : 1;
  for (int prec = first; prec <= 17; prec++) {
    snprintf(buf, size, "%.*g", prec, v);
    if (strtod(buf, NULL) == v) break;
  }
  if (strchr(buf, '.') != NULL || strchr(buf, 'n') != NULL) return;  /* has '.', or inf/nan */
  char *e = strchr(buf, 'e');
  char tail[32] = "";
  if (e != NULL) {
    snprintf(tail, sizeof tail, "%s", e);
    *e = '\0';
  }
  size_t used = strlen(buf);
  snprintf(buf + used, size - used, ".0%s", tail);
}

/* A double-quoted YAML string; libyaml reads back exactly these escapes. */
static void sb_quoted(strbuf *b, const char *s) {
  sb_printf(b, "\"");
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    switch (*p) {
      case '"': sb_printf(b, "\\\""); break;
      case '\\': sb_printf(b, "\\\\"); break;
      case '\n': sb_printf(b, "\\n"); break;
      case '\t': sb_printf(b, "\\t"); break;
      case '\r': sb_printf(b, "\\r"); break;
      default:
        if (*p < 0x20 || *p == 0x7f) sb_printf(b, "\\x%02x", *p);
        else sb_printf(b, "%c", *p);
    }
  }
  sb_printf(b, "\"");
}

static int list_length(const char *base, const t2s_cfg_row *r) {
  return r->has_count ? *(const int *)(const void *)(base + r->count_offset) : r->max_len;
}

/* Ends a key's line, with its "# origin" comment when explaining. */
static void end_line(strbuf *b, const char *note) {
  if (note != NULL) sb_printf(b, "  # %s", note);
  sb_printf(b, "\n");
}

static void dump_value(strbuf *b, const t2s_cfg_row *r, const char *base, int depth,
                       const char *note);

/* "- field: value" items, the record's other fields aligned below the first. The
 * origin note goes on the list's key line: the whole list comes from one place. */
static void dump_records(strbuf *b, const t2s_cfg_row *r, const char *base, int depth,
                         const char *note) {
  int n = list_length(base, r);
  if (n == 0) sb_printf(b, " []");
  end_line(b, note);
  for (int i = 0; i < n; i++) {
    const char *record = base + r->offset + (size_t)i * r->elem_size;
    for (int j = 0; j < r->n_fields; j++) {
      sb_printf(b, "%*s%s%s:", 2 * depth + 2, "", j == 0 ? "- " : "  ", r->fields[j].key);
      dump_value(b, &r->fields[j], record, depth + 2, NULL);
    }
  }
}

static void dump_value(strbuf *b, const t2s_cfg_row *r, const char *base, int depth,
                       const char *note) {
  const char *field = base + r->offset;
  char num[40];
  switch (r->type) {
    case T2S_CFG_TYPE_INT:
      sb_printf(b, " %d", *(const int *)(const void *)field);
      end_line(b, note);
      return;
    case T2S_CFG_TYPE_FLOAT:
      format_double(*(const double *)(const void *)field, num, sizeof num);
      sb_printf(b, " %s", num);
      end_line(b, note);
      return;
    case T2S_CFG_TYPE_BOOL:
      sb_printf(b, " %s", *(const bool *)field ? "true" : "false");
      end_line(b, note);
      return;
    case T2S_CFG_TYPE_ENUM: {
      int v = *(const int *)(const void *)field, k = -1;
      for (int i = 0; r->choices[i] != NULL && k < 0; i++)
        if ((r->values ? r->values[i] : i) == v) k = i;
      sb_printf(b, " %s", k >= 0 ? r->choices[k] : "(invalid)");
      end_line(b, note);
      return;
    }
    case T2S_CFG_TYPE_STRING:
      sb_printf(b, " ");
      sb_quoted(b, field);
      end_line(b, note);
      return;
    case T2S_CFG_TYPE_RECORD_LIST: dump_records(b, r, base, depth, note); return;
    default: break;
  }
  int n = list_length(base, r);
  if (r->type == T2S_CFG_TYPE_STRING_LIST) {
    if (n == 0) sb_printf(b, " []");
    end_line(b, note);
    for (int i = 0; i < n; i++) {
      sb_printf(b, "%*s- ", 2 * depth + 2, "");
      sb_quoted(b, field + (size_t)i * r->elem_size);
      sb_printf(b, "\n");
    }
    return;
  }
  sb_printf(b, " [");
  for (int i = 0; i < n; i++) {
    if (r->type == T2S_CFG_TYPE_INT_LIST)
      sb_printf(b, "%s%d", i ? ", " : "", ((const int *)(const void *)field)[i]);
    else {
      format_double(((const double *)(const void *)field)[i], num, sizeof num);
      sb_printf(b, "%s%s", i ? ", " : "", num);
    }
  }
  sb_printf(b, "]");
  end_line(b, note);
}

/* Where row i got its value, for the explained dump (NULL: a plain dump). */
typedef struct dump_notes {
  const t2s_cfg_origin *origins;
  const char *const *overrides;
} dump_notes;

static const char *note_of(const dump_notes *d, int i, char *buf, size_t size) {
  if (d == NULL) return NULL;
  const t2s_cfg_origin *o = &d->origins[i];
  if (o->kind == T2S_CFG_FROM_FILE)
    snprintf(buf, size, "%s:%d", o->file[0] ? o->file : "(text)", o->line);
  else if (o->kind == T2S_CFG_FROM_OVERRIDE && d->overrides != NULL)
    snprintf(buf, size, "override '%s'", d->overrides[o->override_index]);
  else
    snprintf(buf, size, "default");
  return buf;
}

/* Emits the keys under `prefix` (length plen, 0 = top level) in schema order;
 * a section is emitted once, where its first key appears. */
static void dump_level(strbuf *b, const t2s_cfg_row *schema, int n, const char *base,
                       const dump_notes *notes, const char *prefix, size_t plen, int depth) {
  for (int i = 0; i < n; i++) {
    const char *key = schema[i].key;
    if (plen && (strncmp(key, prefix, plen) != 0 || key[plen] != '.')) continue;
    const char *rest = key + (plen ? plen + 1 : 0);
    const char *dot = strchr(rest, '.');
    if (dot == NULL) {
      char note[T2S_CFG_FILE_MAX + 64];
      sb_printf(b, "%*s%s:", 2 * depth, "", rest);
      dump_value(b, &schema[i], base, depth, note_of(notes, i, note, sizeof note));
      continue;
    }
    size_t slen = (size_t)(dot - key);  /* the section's full path: key[0, slen) */
    bool seen = false;
    for (int j = 0; j < i && !seen; j++) seen = !strncmp(schema[j].key, key, slen + 1);
    if (seen) continue;
    sb_printf(b, "%*s%.*s:\n", 2 * depth, "", (int)(dot - rest), rest);
    dump_level(b, schema, n, base, notes, key, slen, depth + 1);
  }
}

static t2s_status dump_to_string(const t2s_cfg_row *schema, int n_rows, const void *cfg,
                                 const dump_notes *notes, char **text, t2s_error *err) {
  *text = NULL;
  t2s_status st = t2s_config_check_schema(schema, n_rows, err);
  if (st != T2S_OK) return st;
  strbuf b = {0};
  sb_printf(&b, "%s", "");
  dump_level(&b, schema, n_rows, cfg, notes, "", 0, 0);
  if (b.oom) {
    free(b.p);
    return t2s_error_set(err, T2S_ERR_NOMEM, "config dump: out of memory");
  }
  *text = b.p;
  return T2S_OK;
}

t2s_status t2s_config_dump_string(const t2s_cfg_row *schema, int n_rows, const void *cfg,
                                  char **text, t2s_error *err) {
  return dump_to_string(schema, n_rows, cfg, NULL, text, err);
}

static t2s_status dump_to_file(const t2s_cfg_row *schema, int n_rows, const void *cfg,
                               const dump_notes *notes, FILE *out, t2s_error *err) {
  char *text = NULL;
  t2s_status st = dump_to_string(schema, n_rows, cfg, notes, &text, err);
  if (st != T2S_OK) return st;
  size_t len = strlen(text);
  bool ok = fwrite(text, 1, len, out) == len && fflush(out) == 0;
  free(text);
  return ok ? T2S_OK
            : t2s_error_set(err, T2S_ERR_IO, "config dump: writing failed (%s)", strerror(errno));
}

t2s_status t2s_config_dump(const t2s_cfg_row *schema, int n_rows, const void *cfg, FILE *out,
                           t2s_error *err) {
  return dump_to_file(schema, n_rows, cfg, NULL, out, err);
}

t2s_status t2s_config_dump_explained(const t2s_cfg_row *schema, int n_rows, const void *cfg,
                                     const t2s_cfg_origin *origins,
                                     const char *const *overrides, FILE *out, t2s_error *err) {
  dump_notes notes = {origins, overrides};
  return dump_to_file(schema, n_rows, cfg, &notes, out, err);
}

static const char *type_name(t2s_cfg_type t) {
  static const char *const names[] = {"int", "float", "bool", "string", "enum",
                                      "int list", "float list", "string list", "record list"};
  return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "?";
}


/* Writes text into a Markdown table cell: '|' would end the cell, a newline the
 * row, and outside code spans '<' would start an HTML tag ("work_dirs/<name>"). */
static int put_cell(FILE *out, const char *text, bool code) {
  for (const char *p = text; *p; p++) {
    int rc = *p == '|'              ? fputs("\\|", out)
             : *p == '<' && !code   ? fputs("&lt;", out)
             : *p == '\n'           ? fputc(' ', out)
                                    : fputc(*p, out);
    if (rc == EOF) return -1;
  }
  return 0;
}

/* What a row accepts beyond its type: choices, bounds, list length. */
static void allowed_text(const t2s_cfg_row *r, char *buf, size_t size) {
  char what[600] = "";
  if (r->type == T2S_CFG_TYPE_RECORD_LIST) {
    size_t used = (size_t)snprintf(what, sizeof what, "%d to %d items, each with the keys:",
                                   r->min_len, r->max_len);
    for (int j = 0; j < r->n_fields && used < sizeof what; j++)
      used += (size_t)snprintf(what + used, sizeof what - used, "%s %s (%s%s)", j ? "," : "",
                               r->fields[j].key, type_name(r->fields[j].type),
                               r->fields[j].required ? ", required" : "");
    snprintf(buf, size, "%s", what);
    return;
  }
  bool list = r->type == T2S_CFG_TYPE_INT_LIST || r->type == T2S_CFG_TYPE_FLOAT_LIST ||
              r->type == T2S_CFG_TYPE_STRING_LIST;
  bool integer = r->type == T2S_CFG_TYPE_INT || r->type == T2S_CFG_TYPE_INT_LIST;
  if (r->choices != NULL) {
    char names[512];
    join_choices(r, names, sizeof names);
    snprintf(what, sizeof what, "one of: %s", names);
  } else if (r->type != T2S_CFG_TYPE_BOOL && r->type != T2S_CFG_TYPE_STRING &&
             r->type != T2S_CFG_TYPE_STRING_LIST) {
    format_range(r, integer, what, sizeof what);
  }
  if (!list) {
    snprintf(buf, size, "%s", what);
  } else {
    char len[64];
    if (r->min_len == r->max_len) snprintf(len, sizeof len, "exactly %d values", r->min_len);
    else snprintf(len, sizeof len, "%d to %d values", r->min_len, r->max_len);
    snprintf(buf, size, "%s%s%s", len, what[0] ? "; each " : "", what);
  }
}

/* The section of a key: its first path component, or "" for a top-level key. */
static size_t section_length(const char *key) {
  const char *dot = strchr(key, '.');
  return dot ? (size_t)(dot - key) : 0;
}

static int reference_heading(FILE *out, const char *key) {
  size_t n = section_length(key);
  int rc = n ? fprintf(out, "\n## `%.*s`\n\n", (int)n, key) : fprintf(out, "\n## Top-level keys\n\n");
  if (rc < 0) return -1;
  return fputs("| key | type | default | allowed | meaning |\n| --- | --- | --- | --- | --- |\n",
               out) == EOF ? -1 : 0;
}

static int reference_row(FILE *out, const t2s_cfg_row *r) {
  char allowed[700];
  allowed_text(r, allowed, sizeof allowed);
  if (fprintf(out, "| `%s` | %s | ", r->key, type_name(r->type)) < 0) return -1;
  if (r->required ? fputs("required", out) == EOF
                  : (fputc('`', out) == EOF || put_cell(out, r->def, true) || fputc('`', out) == EOF))
    return -1;
  if (fputs(" | ", out) == EOF || put_cell(out, allowed, false) || fputs(" | ", out) == EOF ||
      put_cell(out, r->help ? r->help : "", false) || fputs(" |\n", out) == EOF)
    return -1;
  return 0;
}

t2s_status t2s_config_reference(const t2s_cfg_row *schema, int n_rows, FILE *out,
                                t2s_error *err) {
  t2s_status st = t2s_config_check_schema(schema, n_rows, err);
  if (st != T2S_OK) return st;
  for (int i = 0; i < n_rows; i++) {
    const char *key = schema[i].key, *prev = i ? schema[i - 1].key : NULL;
    size_t n = section_length(key);
    bool new_section = prev == NULL || n != section_length(prev) || strncmp(key, prev, n) != 0;
    if ((new_section && reference_heading(out, key)) || reference_row(out, &schema[i]))
      return t2s_error_set(err, T2S_ERR_IO, "config reference: writing failed");
  }
  return T2S_OK;
}

t2s_status t2s_config_describe(const t2s_cfg_row *schema, int n_rows, FILE *out, t2s_error *err) {
  t2s_status st = t2s_config_check_schema(schema, n_rows, err);
  if (st != T2S_OK) return st;
  for (int i = 0; i < n_rows; i++) {
    const t2s_cfg_row *r = &schema[i];
    char allowed[700];
    allowed_text(r, allowed, sizeof allowed);
    if (fprintf(out, "%-34s %-11s %-22s %-24s %s\n", r->key, type_name(r->type),
                r->required ? "(required)" : r->def, allowed, r->help ? r->help : "") < 0)
      return t2s_error_set(err, T2S_ERR_IO, "config describe: writing failed");
  }
  return T2S_OK;
}

static double double_at(const char *p) {
  double v;
  memcpy(&v, p, sizeof v);
  return v;
}

/* Equal values (-0.0 == 0.0; strings up to their NUL; lists up to their count). */
static bool row_equal(const t2s_cfg_row *r, const char *a, const char *b) {
  const char *fa = a + r->offset, *fb = b + r->offset;
  switch (r->type) {
    case T2S_CFG_TYPE_STRING: return strncmp(fa, fb, r->size) == 0;
    case T2S_CFG_TYPE_FLOAT: return double_at(fa) == double_at(fb);
    case T2S_CFG_TYPE_BOOL: return *(const bool *)fa == *(const bool *)fb;
    case T2S_CFG_TYPE_INT: case T2S_CFG_TYPE_ENUM: return memcmp(fa, fb, r->size) == 0;
    default: break;
  }
  int n = list_length(a, r);
  if (n != list_length(b, r)) return false;
  for (int i = 0; i < n; i++) {
    size_t off = (size_t)i * r->elem_size;
    if (r->type == T2S_CFG_TYPE_RECORD_LIST) {
      for (int j = 0; j < r->n_fields; j++)
        if (!row_equal(&r->fields[j], fa + off, fb + off)) return false;
      continue;
    }
    bool same = r->type == T2S_CFG_TYPE_STRING_LIST ? strncmp(fa + off, fb + off, r->elem_size) == 0
              : r->type == T2S_CFG_TYPE_FLOAT_LIST
                  ? double_at(fa + off) == double_at(fb + off)
                  : memcmp(fa + off, fb + off, r->elem_size) == 0;
    if (!same) return false;
  }
  return true;
}

int t2s_config_first_difference(const t2s_cfg_row *schema, int n_rows, const void *a,
                                const void *b) {
  for (int i = 0; i < n_rows; i++)
    if (!row_equal(&schema[i], a, b)) return i;
  return -1;
}
