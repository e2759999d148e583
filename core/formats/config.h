/* Strict YAML configuration against a schema: a table of rows, one per key.
 *
 * A program describes its configuration as a C struct plus a table of
 * t2s_cfg_row (key path, type, bounds, default, help, and where the field lives
 * in the struct via offsetof). This module knows nothing else about the
 * program: it fills the struct from defaults, a YAML file and `key.path=value`
 * command-line overrides, and dumps it back as nested YAML.
 *
 * Strictness: an unknown key, a wrong type, an out-of-range or not-allowed
 * value, a missing required key, a duplicate key, a list of the wrong length, a
 * string that does not fit, or malformed YAML is an error whose message names
 * "config FILE:LINE:COLUMN" (1-based, from libyaml's marks) or "command line
 * override 'k=v'", the full key path, and what to do (with a "did you mean"
 * for near-miss keys and enum values).
 *
 * Storage per type (the schema checks the sizes):
 *   INT          int             (optionally restricted to `choices`, e.g. {"18","34",NULL})
 *   FLOAT        double
 *   BOOL         bool
 *   STRING       char[N]         (at most N-1 bytes)
 *   ENUM         int-sized C enum: values[i] for choices[i] (the program's own enum, so
 *                the struct is read without a translation), or the index i without values
 *   INT_LIST     int[CAP]        fixed length (min_len == max_len == CAP) or with an int count
 *   FLOAT_LIST   double[CAP]     likewise
 *   STRING_LIST  char[CAP][N]    with an int count; in YAML a list or one string (shard globs)
 *   RECORD_LIST  T[CAP]          with an int count: a YAML list of mappings, each filled by
 *                the row's own `fields` (rows whose keys are plain names, offsets within
 *                one T, any type but RECORD_LIST), e.g. named validation sets
 *                [{name: fog, shards: [...]}, ...]; a record's required field must be set
 * Dumping and re-loading gives back the identical struct (floats are printed
 * with the fewest digits that round-trip). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "core/status.h"

typedef enum t2s_cfg_type {
  T2S_CFG_TYPE_INT,
  T2S_CFG_TYPE_FLOAT,
  T2S_CFG_TYPE_BOOL,
  T2S_CFG_TYPE_STRING,
  T2S_CFG_TYPE_ENUM,
  T2S_CFG_TYPE_INT_LIST,
  T2S_CFG_TYPE_FLOAT_LIST,
  T2S_CFG_TYPE_STRING_LIST,
  T2S_CFG_TYPE_RECORD_LIST,
} t2s_cfg_type;

#define T2S_CFG_MAX_RECORD_FIELDS 16

typedef struct t2s_cfg_row {
  const char *key;            /* full dotted path, e.g. "optimizer.lr" */
  t2s_cfg_type type;
  size_t offset;              /* offsetof the field in the user's struct */
  size_t size;                /* sizeof the whole field (the whole array for lists) */
  size_t elem_size;           /* lists: sizeof one element (one char[N] for string lists) */
  bool has_count;             /* lists: an int at count_offset holds the length */
  size_t count_offset;
  int min_len, max_len;       /* lists: allowed length (max_len <= capacity) */
  double min, max;            /* numbers (and list elements): inclusive bounds */
  bool min_open;              /* min is exclusive (e.g. lr > 0) */
  const char *const *choices; /* ENUM: names; INT: allowed values as text; NULL-terminated */
  const int *values;          /* ENUM: the value stored for each choice (distinct); NULL: index */
  const char *def;            /* default as YAML text ("[512, 512]", "auto", "\"\"") */
  bool required;              /* no default: the file or an override must set it */
  const char *help;           /* one line, shown by t2s_config_describe */
  const struct t2s_cfg_row *fields; /* RECORD_LIST: the rows of one record */
  int n_fields;               /* RECORD_LIST: 1..T2S_CFG_MAX_RECORD_FIELDS */
} t2s_cfg_row;

/* Field locators for schema tables: .offset/.size of S::f (scalars, strings),
 * .offset/.size/.elem_size of an array, and the count field of a variable list. */
#define T2S_CFG_AT(S, f) .offset = offsetof(S, f), .size = sizeof(((S *)0)->f)
#define T2S_CFG_ARRAY_AT(S, f) \
  .offset = offsetof(S, f), .size = sizeof(((S *)0)->f), .elem_size = sizeof(((S *)0)->f[0])
#define T2S_CFG_COUNT_AT(S, n) .has_count = true, .count_offset = offsetof(S, n)

/* Where a key got its value; filled by t2s_config_load_traced for each row. */
typedef enum t2s_cfg_origin_kind {
  T2S_CFG_FROM_DEFAULT = 0,
  T2S_CFG_FROM_FILE,
  T2S_CFG_FROM_OVERRIDE,
} t2s_cfg_origin_kind;

#define T2S_CFG_FILE_MAX 512

typedef struct t2s_cfg_origin {
  t2s_cfg_origin_kind kind;
  int line, column;           /* FILE: 1-based position of the key */
  int override_index;         /* OVERRIDE: index into the overrides array */
  char file[T2S_CFG_FILE_MAX]; /* FILE: the file that set it (the config or one of its bases) */
} t2s_cfg_origin;

/* Checks the table itself (sizes match types, bounds and lengths consistent, no
 * duplicate key, no key that is also a section). A failure is a programming
 * error in the schema; the message names the row. */
t2s_status t2s_config_check_schema(const t2s_cfg_row *schema, int n_rows, t2s_error *err);

/* Zeroes every field and sets every non-required row to its default. */
t2s_status t2s_config_apply_defaults(const t2s_cfg_row *schema, int n_rows, void *cfg,
                                     t2s_error *err);

/* Defaults, then the YAML file (yaml_path may be NULL: defaults and overrides
 * only), then each override in order; then checks that required keys are set.
 * On error the struct holds partial values and must not be used.
 *
 * Inheritance (as mmseg configs): a top-level `_base_: FILE` or `_base_: [FILE,
 * ...]` loads those files first, depth-first and in order, each with its own
 * bases, paths relative to the including file; then the file's own keys. A later
 * file overrides an earlier one key by key: sections merge, a list is replaced
 * whole. A cycle, a missing base or more than 16 levels is an error naming the
 * chain of files. Text loads (t2s_config_load_text) refuse `_base_`: they have
 * no directory to resolve it against. */
t2s_status t2s_config_load(const t2s_cfg_row *schema, int n_rows, void *cfg,
                           const char *yaml_path, const char *const *overrides, int n_overrides,
                           t2s_error *err);

/* As t2s_config_load, from YAML text in memory (e.g. the config stored in a
 * checkpoint); `name` stands for the file name in messages. origins (n_rows
 * entries, may be NULL) receives where each key was set, for cross-field
 * messages (t2s_config_origin_text). */
t2s_status t2s_config_load_text(const t2s_cfg_row *schema, int n_rows, void *cfg,
                                const char *text, size_t len, const char *name,
                                const char *const *overrides, int n_overrides,
                                t2s_cfg_origin *origins, t2s_error *err);
t2s_status t2s_config_load_traced(const t2s_cfg_row *schema, int n_rows, void *cfg,
                                  const char *yaml_path, const char *const *overrides,
                                  int n_overrides, t2s_cfg_origin *origins, t2s_error *err);

/* Applies one "key.path=value" (value parsed as a YAML scalar or flow
 * sequence, e.g. "data.crop=[256,256]") with the same validation as the file. */
t2s_status t2s_config_set(const t2s_cfg_row *schema, int n_rows, void *cfg,
                          const char *assignment, t2s_error *err);

/* Writes every key (defaults included) as nested YAML, in schema order. */
t2s_status t2s_config_dump(const t2s_cfg_row *schema, int n_rows, const void *cfg, FILE *out,
                           t2s_error *err);
/* As t2s_config_dump, each key's line ending in a comment that says where the
 * value came from: "# FILE:LINE", "# override 'k=v'" or "# default" (origins
 * from t2s_config_load_traced with these overrides). Still valid YAML. */
t2s_status t2s_config_dump_explained(const t2s_cfg_row *schema, int n_rows, const void *cfg,
                                     const t2s_cfg_origin *origins,
                                     const char *const *overrides, FILE *out, t2s_error *err);
/* Same text in a malloc'd NUL-terminated string (*text; free() it). */
t2s_status t2s_config_dump_string(const t2s_cfg_row *schema, int n_rows, const void *cfg,
                                  char **text, t2s_error *err);

/* One line per key: key, type, default, bounds, help (for --help-config). */
t2s_status t2s_config_describe(const t2s_cfg_row *schema, int n_rows, FILE *out, t2s_error *err);

/* The schema as Markdown: one "## `section`" table per first key component
 * (top-level keys under "top level"), in schema order, with columns key, type,
 * default, allowed (choices, bounds, list length) and meaning (the help text).
 * docs/config.md is this output for the training schema (t2sda_train
 * --config-reference). */
t2s_status t2s_config_reference(const t2s_cfg_row *schema, int n_rows, FILE *out,
                                t2s_error *err);

/* Index of the first row whose value differs between a and b, or -1 when all
 * are equal (e.g. to refuse resuming a checkpoint under another config). */
int t2s_config_first_difference(const t2s_cfg_row *schema, int n_rows, const void *a,
                                const void *b);

/* Index of the row with this key, or -1. */
int t2s_config_find(const t2s_cfg_row *schema, int n_rows, const char *key);

/* Formats where a row got its value: "gta2cs.yaml:14:3", "command line override
 * 'uda.alpha=0.99'" or "default"; for messages naming two keys. */
void t2s_config_origin_text(const t2s_cfg_origin *origin, const char *file,
                            const char *const *overrides, char *buf, size_t size);
