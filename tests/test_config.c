// ctest-labels: unit
/* The strict YAML config: the example experiments load, dump -> re-parse gives
 * the identical struct, overrides work and are validated, and every kind of
 * mistake gives a message with "file:line:column", the key path and a hint.
 * Inputs: the .yaml files in tests/configs and configs under $T2S_SOURCE_DIR. */
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "launch/train_config.h"
#include "tests/harness.h"

static char source_dir[1024] = ".";

static void path_of(char *buf, size_t size, const char *dir, const char *name) {
  snprintf(buf, size, "%s/%s/%s", source_dir, dir, name);
}

/* Loads tests/configs/<name> (plus overrides) and checks that it fails with a
 * message containing every string in `subs` (NULL-terminated). */
static void expect_bad(const char *name, char **overrides, int n_overrides,
                       const char *const *subs) {
  char path[2048];
  path_of(path, sizeof path, "tests/configs", name);
  t2s_train_config *cfg = calloc(1, sizeof *cfg);
  t2s_error err = {0};
  t2s_status st = t2s_train_config_load(cfg, path, overrides, n_overrides, &err);
  CHECK_MSG(st != T2S_OK, "%s: loaded although it is wrong", name);
  if (getenv("T2S_TEST_VERBOSE")) fprintf(stderr, "%s\n", err.msg);
  for (int i = 0; st != T2S_OK && subs[i] != NULL; i++)
    CHECK_MSG(strstr(err.msg, subs[i]) != NULL, "%s: message lacks \"%s\":\n  %s", name, subs[i],
              err.msg);
  CHECK_MSG(strncmp(err.msg, "config ", 7) == 0 || strncmp(err.msg, "command line", 12) == 0,
            "%s: message does not start with its source: %s", name, err.msg);
  free(cfg);
}
#define BAD(name, ...) expect_bad(name, NULL, 0, (const char *const[]){__VA_ARGS__, NULL})
#define BAD_OVERRIDE(ov, ...)                                                          \
  do {                                                                                 \
    char *ovs_[1] = {(char *)(ov)};                                                    \
    expect_bad("good_minimal.yaml", ovs_, 1, (const char *const[]){__VA_ARGS__, NULL}); \
  } while (0)

static void test_malformed_files(void) {
  BAD("bad_unknown_top.yaml", "bad_unknown_top.yaml:2:1:", "unknown key 'sed'",
      "(did you mean 'seed'?)");
  BAD("bad_unknown_no_suggestion.yaml", "bad_unknown_no_suggestion.yaml:2:1:",
      "unknown key 'frobnicate'", "allowed at the top level", "name, seed, work_dir");
  BAD("bad_unknown_nested.yaml", "bad_unknown_nested.yaml:4:3: unknown key 'uda.alhpa' "
      "(did you mean 'uda.alpha'?)");
  BAD("bad_misplaced_key.yaml", "bad_misplaced_key.yaml:2:1:", "unknown key 'lr'",
      "did you mean 'optimizer.lr'?");
  BAD("bad_string_for_int.yaml", "bad_string_for_int.yaml:2:7:", "'seed'", "expects an integer",
      "'abc'");
  BAD("bad_quoted_int.yaml", "bad_quoted_int.yaml:2:7:", "'seed'", "the string '3'");
  BAD("bad_list_for_scalar.yaml", "bad_list_for_scalar.yaml:3:10:", "'uda.alpha'",
      "expects a number", "got a list");
  BAD("bad_mapping_for_scalar.yaml", "bad_mapping_for_scalar.yaml:4:5:", "'runner.max_iters'",
      "got a mapping");
  BAD("bad_scalar_for_section.yaml", "bad_scalar_for_section.yaml:2:7:", "'data' is a section");
  BAD("bad_negative_lr.yaml", "bad_negative_lr.yaml:3:7:", "'optimizer.lr'", "-0.01",
      "must be > 0 and <= 10");
  BAD("bad_alpha_range.yaml", "bad_alpha_range.yaml:2:10:", "'uda.alpha' is 1.5",
      "between 0 and 1");
  BAD("bad_enum.yaml", "bad_enum.yaml:3:9:", "'uda.type' is 'dcas'",
      "one of: source_only, dacs, t2sda", "(did you mean 'dacs'?)");
  BAD("bad_depth.yaml", "bad_depth.yaml:4:12:", "'model.backbone.depth'",
      "one of: 18, 34, 50, 101, 152");
  BAD("bad_bool.yaml", "bad_bool.yaml:2:16:", "'deterministic'", "true or false");
  BAD("bad_missing_name.yaml", "bad_missing_name.yaml:2:1:", "required key 'name' is missing");
  BAD("bad_duplicate.yaml", "bad_duplicate.yaml:3:1:", "duplicate key 'seed'", "line 2");
  BAD("bad_duplicate_dotted.yaml", "bad_duplicate_dotted.yaml:4:1:", "duplicate key 'uda.alpha'",
      "line 3, column 3");
  BAD("bad_crop_length.yaml", "bad_crop_length.yaml:3:9:", "'data.crop'", "exactly 2 values",
      "got 3");
  BAD("bad_list_element.yaml", "bad_list_element.yaml:3:15:", "'data.crop[1]'",
      "expects an integer", "'big'");
  BAD("bad_empty_list.yaml", "bad_empty_list.yaml:4:16:", "'model.decode_head.dilations'",
      "1 to 8 values", "got 0");
  BAD("bad_unclosed_bracket.yaml", "bad_unclosed_bracket.yaml:4:5:", "malformed YAML",
      "flow sequence", "line 3, column 9");
  BAD("bad_indentation.yaml", "bad_indentation.yaml:4:9:", "malformed YAML",
      "mapping values are not allowed");
  BAD("bad_tab.yaml", "bad_tab.yaml:3:1:", "malformed YAML", "tab", "indent with spaces");
  BAD("bad_empty.yaml", "bad_empty.yaml:1:1:", "the file is empty", "'name'");
  BAD("bad_only_comment.yaml", "bad_only_comment.yaml:1:1:", "the file is empty");
  BAD("bad_top_list.yaml", "bad_top_list.yaml:1:1:", "the top level must be a mapping",
      "got a list");
  BAD("bad_two_documents.yaml", "bad_two_documents.yaml:3:1:", "second YAML document");
  BAD("bad_slide_stride.yaml",
      "bad_slide_stride.yaml:5:3: evaluation.stride [768, 512] is larger than evaluation.crop "
      "[512, 512]",
      "'evaluation.crop' is set at", "bad_slide_stride.yaml:4:3");
  BAD("bad_precision_device.yaml", "bad_precision_device.yaml:3:1: precision 'bf16'",
      "device is 'cpu'", "'device' is set at", "bad_precision_device.yaml:2:1");
  {
    /* MIC needs pseudo-labels: refused with source_only, naming both keys */
    char *ovs_[] = {"uda.type=source_only", "uda.mic.enabled=true"};
    expect_bad("good_minimal.yaml", ovs_, 2,
               (const char *const[]){"uda.mic.enabled=true", "MIC", "'uda.type' is set by", NULL});
  }
  BAD("no_such_file.yaml", "no_such_file.yaml", "cannot open", "check the path");
}

static void test_bad_overrides(void) {
  BAD_OVERRIDE("uda.alhpa=0.9", "command line override 'uda.alhpa=0.9'",
               "unknown key 'uda.alhpa'", "did you mean 'uda.alpha'?");
  BAD_OVERRIDE("uda.alpha=2", "command line override 'uda.alpha=2'", "'uda.alpha' is 2",
               "between 0 and 1");
  BAD_OVERRIDE("data.crop=[256]", "command line override 'data.crop=[256]'", "exactly 2 values");
  BAD_OVERRIDE("data.crop=[256, 2.5]", "'data.crop[1]'", "expects an integer");
  BAD_OVERRIDE("optimizer.type=adam", "'optimizer.type' is 'adam'", "sgd, adamw",
               "did you mean 'adamw'?");
  BAD_OVERRIDE("seed", "command line override 'seed'", "key.path=value");
  BAD_OVERRIDE("data=1", "'data' is a section");
  BAD_OVERRIDE("seed=", "'seed' has no value");
  BAD_OVERRIDE("data.crop=[1,2", "command line override 'data.crop=[1,2'", "malformed YAML");
  BAD_OVERRIDE("runner.max_iters=1e9", "'runner.max_iters'", "expects an integer");
  BAD_OVERRIDE("name=", "'name' must not be empty");
  BAD_OVERRIDE("seed=99999999999", "'seed' is 99999999999", "does not fit an integer");
  BAD_OVERRIDE("optimizer.eps=1e999", "'optimizer.eps'", "finite number");
  BAD_OVERRIDE("name=a: b", "'name' expects a string, got a mapping", "quote it");
  /* cross-field rules see overrides too, and say where each key came from */
  BAD_OVERRIDE("data.ignore_index=3", "command line override 'data.ignore_index=3'",
               "is a class id", "('model.num_classes' has its default value)");
  {
    char *ovs[2] = {(char *)"evaluation.mode=slide", (char *)"evaluation.stride=[2048,512]"};
    expect_bad("good_minimal.yaml", ovs, 2,
               (const char *const[]){"command line override 'evaluation.stride=[2048,512]'",
                                     "evaluation.stride [2048, 512] is larger than evaluation.crop",
                                     "('evaluation.crop' has its default value)", NULL});
  }
}

static void check_round_trip(const char *label, const t2s_train_config *cfg);

/* uda.type t2sda_dg against the pseudo-target type and the target shards; its keys. */
static void test_dg_rules(void) {
  {
    char *ovs[1] = {(char *)"uda.type=t2sda_dg"};
    expect_bad("good_minimal.yaml", ovs, 1,
               (const char *const[]){"uda.pseudo_target.type 'fourier' restyles like a target image",
                                     "fourier_source, color_random", "'uda.type'", NULL});
  }
  {
    char *ovs[2] = {(char *)"uda.type=t2sda", (char *)"uda.pseudo_target.type=color_random"};
    expect_bad("good_minimal.yaml", ovs, 2,
               (const char *const[]){"'color_random' is a domain-generalisation style",
                                     "use fourier, color or none", NULL});
  }
  {
    char *ovs[3] = {(char *)"uda.type=t2sda_dg", (char *)"uda.pseudo_target.type=fourier_source",
                    (char *)"data.target.shards=[t/*.h5]"};
    expect_bad("good_minimal.yaml", ovs, 3,
               (const char *const[]){"t2sda_dg trains on source images only", "data.target.shards", NULL});
  }
  BAD_OVERRIDE("uda.pseudo_target.amplitude_jitter=1.5", "'uda.pseudo_target.amplitude_jitter' is 1.5",
               "between 0 and 1");
  BAD_OVERRIDE("uda.pseudo_target.type=fourier_sauce", "'uda.pseudo_target.type' is 'fourier_sauce'",
               "fourier_source+color_random");
  t2s_train_config *cfg = calloc(1, sizeof *cfg);
  char path[2048];
  t2s_error err = {0};
  char *ovs[4] = {(char *)"uda.type=t2sda_dg", (char *)"uda.pseudo_target.type=fourier_source+color_random",
                  (char *)"uda.dg.ce_weight=0.5", (char *)"uda.pseudo_target.color_std_jitter=0.25"};
  path_of(path, sizeof path, "tests/configs", "good_minimal.yaml");
  CHECK_MSG(t2s_train_config_load(cfg, path, ovs, 4, &err) == T2S_OK, "%s", err.msg);
  CHECK(cfg->uda.type == T2S_CFG_UDA_T2SDA_DG && cfg->uda.pseudo_target.type == T2S_PT_FOURIER_SOURCE_COLOR_RANDOM &&
        cfg->uda.dg.ce_weight == 0.5 && cfg->uda.pseudo_target.color_std_jitter == 0.25 &&
        cfg->uda.pseudo_target.amplitude_jitter == 0.3 && cfg->uda.pseudo_target.color_mean_jitter == 1.0);
  CHECK(t2s_uda_pulls(cfg) && t2s_uda_needs_teacher(cfg) && !t2s_uda_needs_target(cfg));
  check_round_trip("t2sda_dg overrides", cfg);
  free(cfg);
}

/* Every example in configs/ loads, validates and survives the dump round trip: a config
 * added later is tested without being named here. */
static void test_every_config(void) {
  char dir[1200];
  snprintf(dir, sizeof dir, "%s/configs", source_dir);
  DIR *d = opendir(dir);
  CHECK_MSG(d != NULL, "cannot list %s", dir);
  if (d == NULL) return;
  t2s_train_config *cfg = calloc(1, sizeof *cfg);
  int n = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    size_t len = strlen(e->d_name);
    if (len < 6 || strcmp(e->d_name + len - 5, ".yaml") != 0) continue;
    char path[2048];
    t2s_error err = {0};
    path_of(path, sizeof path, "configs", e->d_name);
    CHECK_MSG(t2s_train_config_load(cfg, path, NULL, 0, &err) == T2S_OK, "%s: %s", e->d_name, err.msg);
    if (err.status == T2S_OK) check_round_trip(e->d_name, cfg);
    n++;
  }
  closedir(d);
  CHECK_MSG(n >= 6, "only %d configs in %s", n, dir);
  /* the two DG / adverse-condition examples say what they are for */
  char path[2048];
  t2s_error err = {0};
  path_of(path, sizeof path, "configs", "gta_dg_t2sda_deeplabv2.yaml");
  CHECK(t2s_train_config_load(cfg, path, NULL, 0, &err) == T2S_OK);
  CHECK(cfg->uda.type == T2S_CFG_UDA_T2SDA_DG && cfg->data.n_target_shards == 0 && cfg->data.n_val_sets == 3 &&
        !strcmp(cfg->data.val_sets[1].name, "bdd100k") && !strcmp(cfg->data.val_sets[2].name, "mapillary"));
  path_of(path, sizeof path, "configs", "cs2acdc_t2sda_daformer_mitb5.yaml");
  CHECK(t2s_train_config_load(cfg, path, NULL, 0, &err) == T2S_OK);
  CHECK(cfg->uda.type == T2S_CFG_UDA_T2SDA && cfg->data.n_val_sets == 5 &&
        !strcmp(cfg->data.val_sets[0].name, "acdc") && !strcmp(cfg->checkpoint.best_by, "acdc") &&
        cfg->model.backbone.type == T2S_CFG_BACKBONE_MIT_B5);
  free(cfg);
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  CHECK_MSG(f != NULL, "cannot write %s", path);
  if (f == NULL) return;
  fputs(text, f);
  fclose(f);
}

/* Cases written to a temporary directory: a too-long string (the file would be
 * unreadable in the tree) and a too-long shard path inside a list. */
static void test_generated_files(void) {
  char dir[] = "/tmp/t2s_test_config_XXXXXX", path[256];
  CHECK(mkdtemp(dir) != NULL);
  snprintf(path, sizeof path, "%s/long_name.yaml", dir);
  char text[2048] = "name: ";
  memset(text + 6, 'n', 200);
  strcpy(text + 206, "\nseed: 1\n");
  write_file(path, text);
  const char *subs[] = {"long_name.yaml:1:7:", "'name' is 200 characters long", "at most 127",
                        "shorten it", NULL};
  t2s_train_config *cfg = calloc(1, sizeof *cfg);
  t2s_error err = {0};
  CHECK(t2s_train_config_load(cfg, path, NULL, 0, &err) != T2S_OK);
  for (int i = 0; subs[i]; i++)
    CHECK_MSG(strstr(err.msg, subs[i]), "lacks %s: %s", subs[i], err.msg);
  remove(path);

  snprintf(path, sizeof path, "%s/long_shard.yaml", dir);
  char *big = malloc(4096);
  int w = snprintf(big, 4096, "name: x\ndata:\n  val:\n    shards:\n      - a.h5\n      - ");
  memset(big + w, 's', 600);
  strcpy(big + w + 600, "\n");
  write_file(path, big);
  t2s_error_clear(&err);
  CHECK(t2s_train_config_load(cfg, path, NULL, 0, &err) != T2S_OK);
  CHECK_MSG(strstr(err.msg, "long_shard.yaml:6:9:") && strstr(err.msg, "'data.val.shards[1]'") &&
                strstr(err.msg, "at most 511"),
            "%s", err.msg);
  remove(path);
  rmdir(dir);
  free(big);
  free(cfg);
}

static void check_round_trip(const char *label, const t2s_train_config *cfg);

/* Loads YAML text written to dir/name; returns the status, err holds the message. */
static t2s_status load_generated(const char *dir, const char *name, const char *text, t2s_train_config *cfg,
                                 t2s_error *err) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  write_file(path, text);
  t2s_error_clear(err);
  t2s_status st = t2s_train_config_load(cfg, path, NULL, 0, err);
  remove(path);
  return st;
}

static void expect_generated_bad(const char *dir, const char *name, const char *text, const char *const *subs) {
  t2s_train_config *cfg = calloc(1, sizeof *cfg);
  t2s_error err = {0};
  CHECK_MSG(load_generated(dir, name, text, cfg, &err) != T2S_OK, "%s loaded although it is wrong", name);
  for (int i = 0; subs[i]; i++) CHECK_MSG(strstr(err.msg, subs[i]), "%s: lacks \"%s\": %s", name, subs[i], err.msg);
  free(cfg);
}
#define GEN_BAD(dir, name, text, ...) expect_generated_bad(dir, name, text, (const char *const[]){__VA_ARGS__, NULL})

/* data.val_sets, a list of {name, shards} records: values, the dump and round trip,
 * the override form, and the mistakes inside a record or between sets. */
static void test_val_sets(void) {
  char dir[] = "/tmp/t2s_test_valsets_XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  t2s_train_config *cfg = calloc(1, sizeof *cfg);
  t2s_error err = {0};
  const char *good = "name: v\ndata:\n  val_sets:\n    - name: city\n      shards: [a-*.h5, b.h5]\n"
                     "    - {name: fog, shards: fog-*.h5}\ncheckpoint:\n  best_by: fog\n";
  CHECK_MSG(load_generated(dir, "good.yaml", good, cfg, &err) == T2S_OK, "%s", err.msg);
  CHECK(cfg->data.n_val_sets == 2 && cfg->data.n_val_shards == 0);
  CHECK(!strcmp(cfg->data.val_sets[0].name, "city") && cfg->data.val_sets[0].n_shards == 2 &&
        !strcmp(cfg->data.val_sets[0].shards[1], "b.h5"));
  CHECK(!strcmp(cfg->data.val_sets[1].name, "fog") && cfg->data.val_sets[1].n_shards == 1 &&
        !strcmp(cfg->data.val_sets[1].shards[0], "fog-*.h5"));
  CHECK(!strcmp(cfg->checkpoint.best_by, "fog"));
  char *text = NULL;
  CHECK(t2s_train_config_dump_string(cfg, &text, &err) == T2S_OK);
  CHECK_MSG(text && strstr(text, "\n  val_sets:\n    - name: \"city\"\n      shards:\n        - \"a-*.h5\"\n"
                                 "        - \"b.h5\"\n    - name: \"fog\"\n      shards:\n        - \"fog-*.h5\"\n"),
            "%s", text ? text : "");
  free(text);
  check_round_trip("val_sets", cfg);
  /* a change inside a record is a difference (resume refuses another config) */
  int n_rows = 0;
  const t2s_cfg_row *schema = t2s_train_config_schema(&n_rows);
  t2s_train_config *other = malloc(sizeof *other);
  memcpy(other, cfg, sizeof *cfg);
  other->data.val_sets[1].shards[0][0] = 'F';
  int diff = t2s_config_first_difference(schema, n_rows, cfg, other);
  CHECK_MSG(diff >= 0 && !strcmp(schema[diff].key, "data.val_sets"), "difference at %d", diff);
  free(other);
  /* the default is no set; the override form is a flow list */
  char default_text[128];
  CHECK(t2s_train_config_defaults(cfg, &err) == T2S_OK && cfg->data.n_val_sets == 0 &&
        !strcmp(cfg->checkpoint.best_by, "mean"));
  snprintf(default_text, sizeof default_text, "%s", "data.val_sets=[{name: a, shards: [x.h5]}, {name: b, shards: y.h5}]");
  char *ov[1] = {default_text};
  char path[2048];
  path_of(path, sizeof path, "tests/configs", "good_minimal.yaml");
  CHECK_MSG(t2s_train_config_load(cfg, path, ov, 1, &err) == T2S_OK, "%s", err.msg);
  CHECK(cfg->data.n_val_sets == 2 && !strcmp(cfg->data.val_sets[1].shards[0], "y.h5"));

  GEN_BAD(dir, "typo.yaml", "name: v\ndata:\n  val_sets:\n    - name: a\n      shards: a.h5\n    - name: b\n      shard: b.h5\n",
          "typo.yaml:7:7:", "unknown key 'data.val_sets[1].shard'", "did you mean 'shards'?");
  GEN_BAD(dir, "other.yaml", "name: v\ndata:\n  val_sets:\n    - name: a\n      colour: red\n",
          "other.yaml:5:7:", "unknown key 'data.val_sets[0].colour'", "takes the keys: name, shards");
  GEN_BAD(dir, "noname.yaml", "name: v\ndata:\n  val_sets:\n    - shards: a.h5\n", "noname.yaml:4:7:",
          "'data.val_sets[0]' needs the key 'name'");
  GEN_BAD(dir, "scalar.yaml", "name: v\ndata:\n  val_sets:\n    - fog\n", "scalar.yaml:4:7:",
          "'data.val_sets[0]' expects a mapping", "got 'fog'");
  GEN_BAD(dir, "notlist.yaml", "name: v\ndata:\n  val_sets: fog\n", "notlist.yaml:3:13:",
          "'data.val_sets' expects a list of mappings");
  GEN_BAD(dir, "dupkey.yaml", "name: v\ndata:\n  val_sets:\n    - name: a\n      name: b\n      shards: x\n",
          "dupkey.yaml:5:7:", "duplicate key 'data.val_sets[0].name'");
  GEN_BAD(dir, "noshards.yaml", "name: v\ndata:\n  val_sets:\n    - name: a\n      shards: []\n",
          "noshards.yaml:5:15:", "'data.val_sets[0].shards' needs 1 to 16 values");
  GEN_BAD(dir, "twice.yaml", "name: v\ndata:\n  val_sets:\n    - {name: fog, shards: a}\n    - {name: fog, shards: b}\n",
          "twice.yaml:3:3:", "data.val_sets[0] and [1] are both named 'fog'");
  GEN_BAD(dir, "badname.yaml", "name: v\ndata:\n  val_sets:\n    - {name: 'fog val', shards: a}\n",
          "badname.yaml:3:3:", "data.val_sets[0].name 'fog val' is not a set name");
  GEN_BAD(dir, "mean.yaml", "name: v\ndata:\n  val_sets:\n    - {name: mean, shards: a}\n",
          "'mean' is not a set name", "not 'mean'");
  GEN_BAD(dir, "both.yaml", "name: v\ndata:\n  val:\n    shards: v.h5\n  val_sets:\n    - {name: fog, shards: a}\n",
          "both.yaml:5:3:", "data.val_sets and data.val.shards are both set", "both.yaml:4:5)");
  GEN_BAD(dir, "bestby.yaml", "name: v\ndata:\n  val_sets:\n    - {name: fog, shards: a}\ncheckpoint:\n  best_by: fgo\n",
          "bestby.yaml:6:3:", "checkpoint.best_by 'fgo' is not the name of a validation set",
          "('data.val_sets' is set at ", "bestby.yaml:3:3)");
  rmdir(dir);
  free(cfg);
}

/* ---- _base_ inheritance --------------------------------------------------
 * A tree in a temporary directory:
 *   base_a.yaml            data.crop [512,512], ignore_index 250, source shards [a.h5, b.h5],
 *                          optimizer.lr 0.001, runner.max_iters 100, name base_a
 *   common/base_b.yaml     _base_: inner/base_c.yaml (a string, relative to common/);
 *                          optimizer.lr 0.002, source shards [c.h5]
 *   common/inner/base_c.yaml  seed 7, optimizer.lr 0.5, uda.alpha 0.9
 *   exp/child.yaml         _base_: [../base_a.yaml, ../common/base_b.yaml]; name child,
 *                          data.crop [256,256]
 * Expected by hand: later bases override earlier ones (lr 0.002 from b over a and
 * over b's own base c), the child overrides its bases (crop), sections merge key by
 * key (ignore_index survives from a), lists are replaced whole (one shard, c.h5). */
static char base_dir[64];

static void base_file(const char *rel, const char *text) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", base_dir, rel);
  write_file(path, text);
}

static t2s_status load_rel(t2s_train_config *cfg, const char *rel, char **ov, int n_ov,
                           t2s_error *err) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", base_dir, rel);
  t2s_error_clear(err);
  return t2s_train_config_load(cfg, path, ov, n_ov, err);
}

static void expect_base_error(const char *rel, const char *const *subs) {
  t2s_train_config *cfg = calloc(1, sizeof *cfg);
  t2s_error err = {0};
  CHECK_MSG(load_rel(cfg, rel, NULL, 0, &err) != T2S_OK, "%s loaded although it is wrong", rel);
  if (getenv("T2S_TEST_VERBOSE")) fprintf(stderr, "%s\n", err.msg);
  for (int i = 0; subs[i] != NULL; i++)
    CHECK_MSG(strstr(err.msg, subs[i]) != NULL, "%s: message lacks \"%s\":\n  %s", rel, subs[i],
              err.msg);
  free(cfg);
}
#define BAD_BASE(rel, ...) expect_base_error(rel, (const char *const[]){__VA_ARGS__, NULL})

static void make_base_tree(void) {
  snprintf(base_dir, sizeof base_dir, "/tmp/t2s_test_config_base_XXXXXX");
  CHECK(mkdtemp(base_dir) != NULL);
  const char *dirs[] = {"common", "common/inner", "exp", "bad"};
  for (int i = 0; i < 4; i++) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", base_dir, dirs[i]);
    CHECK(mkdir(path, 0700) == 0);
  }
  base_file("base_a.yaml",
            "name: base_a\n"
            "data:\n"
            "  crop: [512, 512]\n"
            "  ignore_index: 250\n"
            "  source:\n"
            "    shards: [a.h5, b.h5]\n"
            "optimizer:\n"
            "  lr: 0.001\n"
            "runner:\n"
            "  max_iters: 100\n");
  base_file("common/base_b.yaml",
            "_base_: inner/base_c.yaml\n"
            "optimizer:\n"
            "  lr: 0.002\n"
            "data:\n"
            "  source:\n"
            "    shards: [c.h5]\n");
  base_file("common/inner/base_c.yaml", "seed: 7\noptimizer:\n  lr: 0.5\nuda:\n  alpha: 0.9\n");
  base_file("exp/child.yaml",
            "_base_: [../base_a.yaml, ../common/base_b.yaml]\n"
            "name: child\n"
            "data:\n"
            "  crop: [256, 256]\n");
  /* diamond: both bases include base_c; loading it twice is not a duplicate key */
  base_file("exp/diamond.yaml", "_base_: [../common/base_b.yaml, ../common/inner/base_c.yaml]\n"
                                "name: diamond\n");
  base_file("bad/cycle_1.yaml", "_base_: cycle_2.yaml\nname: c1\n");
  base_file("bad/cycle_2.yaml", "_base_: [../base_a.yaml, cycle_1.yaml]\n");
  base_file("bad/self.yaml", "_base_: ./self.yaml\nname: s\n");
  base_file("bad/missing.yaml", "name: m\n_base_: [../base_a.yaml, nothing/here.yaml]\n");
  base_file("bad/wrong_type.yaml", "_base_: {a: 1}\nname: w\n");
  base_file("bad/bad_key_base.yaml", "optimizer:\n  lrr: 0.1\n");
  base_file("bad/uses_bad.yaml", "_base_: bad_key_base.yaml\nname: u\n");
  base_file("bad/dup.yaml", "_base_: ../base_a.yaml\nseed: 1\nseed: 2\n");
}

static void test_base_merge(void) {
  t2s_train_config *cfg = calloc(1, sizeof *cfg);
  t2s_error err = {0};
  CHECK_MSG(load_rel(cfg, "exp/child.yaml", NULL, 0, &err) == T2S_OK, "%s", err.msg);
  CHECK(!strcmp(cfg->name, "child"));                          /* the file over its bases */
  CHECK(cfg->data.crop[0] == 256 && cfg->data.crop[1] == 256);  /* the file over base_a */
  CHECK(cfg->data.ignore_index == 250);                         /* sections merge key by key */
  CHECK_MSG(cfg->data.n_source_shards == 1 && !strcmp(cfg->data.source_shards[0], "c.h5"),
            "lists replace: %d shards", cfg->data.n_source_shards);
  CHECK(cfg->optimizer.lr == 0.002);  /* base_b over base_a and over its own base_c */
  CHECK(cfg->seed == 7 && cfg->uda.alpha == 0.9);  /* depth-first: base_c's keys arrive */
  CHECK(cfg->runner.max_iters == 100);
  CHECK(cfg->log.interval == 50);     /* untouched keys keep their defaults */

  char *ov[2] = {(char *)"optimizer.lr=0.03", (char *)"data.crop=[128,64]"};
  CHECK_MSG(load_rel(cfg, "exp/child.yaml", ov, 2, &err) == T2S_OK, "%s", err.msg);
  CHECK(cfg->optimizer.lr == 0.03 && cfg->data.crop[0] == 128 && cfg->data.crop[1] == 64);
  CHECK(cfg->data.ignore_index == 250 && cfg->seed == 7);

  CHECK_MSG(load_rel(cfg, "exp/diamond.yaml", NULL, 0, &err) == T2S_OK, "%s", err.msg);
  CHECK(cfg->optimizer.lr == 0.5 && cfg->seed == 7);  /* base_c again, last */

  /* a config without a directory part resolves its bases next to itself (cwd) */
  char cwd[1024], exp_dir[256];
  CHECK(getcwd(cwd, sizeof cwd) != NULL);
  snprintf(exp_dir, sizeof exp_dir, "%s/exp", base_dir);
  CHECK(chdir(exp_dir) == 0);
  t2s_error_clear(&err);
  CHECK_MSG(t2s_train_config_load(cfg, "child.yaml", NULL, 0, &err) == T2S_OK, "%s", err.msg);
  CHECK(cfg->data.ignore_index == 250 && cfg->optimizer.lr == 0.002);
  CHECK(chdir(cwd) == 0);

  /* text loads (checkpoints) have no directory: _base_ is refused, not guessed */
  t2s_error_clear(&err);
  CHECK(t2s_train_config_load_text(cfg, "_base_: a.yaml\nname: t\n", "ckpt", NULL, 0, &err) !=
        T2S_OK);
  CHECK_MSG(strstr(err.msg, "ckpt:1:1") && strstr(err.msg, "only resolved in a config file"),
            "%s", err.msg);
  free(cfg);
}

static void test_base_errors(void) {
  char a[300], b[300];
  snprintf(a, sizeof a, "%s/bad/cycle_1.yaml -> %s/bad/cycle_2.yaml -> %s/bad/cycle_1.yaml",
           base_dir, base_dir, base_dir);
  BAD_BASE("bad/cycle_1.yaml", "cycle_2.yaml:1:", "makes a cycle", a);
  snprintf(a, sizeof a, "%s/bad/self.yaml -> %s/bad/./self.yaml", base_dir, base_dir);
  BAD_BASE("bad/self.yaml", "self.yaml:1:9:", "makes a cycle", a);
  snprintf(a, sizeof a, "missing.yaml:2:26:");
  snprintf(b, sizeof b, "chain %s/bad/missing.yaml -> %s/bad/nothing/here.yaml", base_dir,
           base_dir);
  BAD_BASE("bad/missing.yaml", a, "'nothing/here.yaml'", "cannot be opened", b);
  BAD_BASE("bad/wrong_type.yaml", "wrong_type.yaml:1:9:", "takes a file name", "a mapping");
  snprintf(a, sizeof a, "bad_key_base.yaml:2:3 (base chain %s/bad/uses_bad.yaml -> "
           "%s/bad/bad_key_base.yaml)", base_dir, base_dir);
  BAD_BASE("bad/uses_bad.yaml", a, "unknown key 'optimizer.lrr'", "did you mean 'optimizer.lr'");
  BAD_BASE("bad/dup.yaml", "dup.yaml:3:1:", "duplicate key 'seed'");
}

/* --explain: each key's line ends with where it came from; without the comments it
 * is the plain dump (so the plain --dump-config is unchanged). */
static void test_base_explain(void) {
  char path[256], *ov[1] = {(char *)"runner.max_iters=9"};
  snprintf(path, sizeof path, "%s/exp/child.yaml", base_dir);
  t2s_train_config *cfg = calloc(1, sizeof *cfg);
  t2s_error err = {0};
  char *text = NULL;
  size_t size = 0;
  FILE *mem = open_memstream(&text, &size);
  CHECK(mem != NULL);
  CHECK_MSG(t2s_train_config_explain(cfg, path, ov, 1, mem, &err) == T2S_OK, "%s", err.msg);
  fclose(mem);
  char want[12][400];
  snprintf(want[0], 400, "name: \"child\"  # %s/exp/child.yaml:2\n", base_dir);
  snprintf(want[1], 400, "\n  crop: [256, 256]  # %s/exp/child.yaml:4\n", base_dir);
  snprintf(want[2], 400, "\n  ignore_index: 250  # %s/exp/../base_a.yaml:4\n", base_dir);
  snprintf(want[3], 400, "\n    shards:  # %s/exp/../common/base_b.yaml:6\n      - \"c.h5\"\n",
           base_dir);
  snprintf(want[4], 400, "\nseed: 7  # %s/exp/../common/inner/base_c.yaml:1\n", base_dir);
  snprintf(want[5], 400, "\n  lr: 0.002  # %s/exp/../common/base_b.yaml:3\n", base_dir);
  snprintf(want[6], 400, "\n  max_iters: 9  # override 'runner.max_iters=9'\n");
  snprintf(want[7], 400, "\ndevice: auto  # default\n");
  for (int i = 0; i < 8; i++)
    CHECK_MSG(text && strstr(text, want[i]), "explain lacks:\n%s\nin:\n%s", want[i],
              text ? text : "");
  /* strip the comments: the plain dump of the same config */
  char *plain = NULL;
  CHECK(t2s_train_config_dump_string(cfg, &plain, &err) == T2S_OK);
  size_t w = 0;
  for (size_t r = 0; text && text[r]; r++) {
    if (text[r] == ' ' && text[r + 1] == ' ' && text[r + 2] == '#')
      while (text[r + 1] != '\n') r++;
    else text[w++] = text[r];
  }
  if (text) text[w] = '\0';
  CHECK_MSG(text && plain && !strcmp(text, plain), "explain without comments differs:\n%s",
            text ? text : "");
  free(plain);
  free(text);
  free(cfg);
}

static void test_bases(void) {
  make_base_tree();
  test_base_merge();
  test_base_errors();
  test_base_explain();
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", base_dir);
  CHECK(system(cmd) == 0);
}

static void check_gta2cs_values(const t2s_train_config *c) {
  CHECK(!strcmp(c->name, "gta2cs_t2sda_deeplabv2"));
  CHECK(!strcmp(c->work_dir, "work_dirs/gta2cs_t2sda_deeplabv2"));
  CHECK(c->device == T2S_CFG_DEVICE_AUTO && c->precision == T2S_PRECISION_FP32);
  CHECK(c->data.n_source_shards == 1 && !strcmp(c->data.source_shards[0], "shards/gta5/gta5_train-*.h5"));
  CHECK(c->data.n_val_shards == 1 && !strcmp(c->data.val_shards[0], "shards/cityscapes/cityscapes_val-*.h5"));
  CHECK(c->data.crop[0] == 512 && c->data.crop[1] == 512 && c->data.samples_per_gpu == 2);
  CHECK(c->model.num_classes == 19 && c->model.backbone.depth == 101);
  CHECK(c->model.backbone.type == T2S_CFG_BACKBONE_RESNET_V1C);
  CHECK(c->model.backbone.dilations[2] == 2 && c->model.backbone.dilations[3] == 4);
  CHECK(c->model.backbone.strides[1] == 2 && c->model.backbone.contract_dilation);
  CHECK(c->model.backbone.norm == T2S_NORM_SYNCBN);
  CHECK(c->model.decode_head.type == T2S_HEAD_DLV2 && c->model.decode_head.n_dilations == 2);
  CHECK(c->model.decode_head.dilations[0] == 6 && c->model.decode_head.dilations[1] == 12);
  CHECK(c->uda.type == T2S_CFG_UDA_T2SDA && c->uda.alpha == 0.999);
  CHECK(c->uda.pseudo_threshold == 0.968);
  CHECK(c->optimizer.type == T2S_OPTIM_SGD && c->optimizer.lr == 2.5e-3);
  CHECK(c->optimizer.weight_decay == 5e-4 && c->optimizer.betas[1] == 0.999);
  CHECK(c->lr_config.warmup == T2S_CFG_WARMUP_LINEAR && c->lr_config.warmup_iters == 1500);
  CHECK(c->lr_config.warmup_ratio == 1e-6 && c->runner.max_iters == 40000);
  CHECK(c->evaluation.interval == 4000 && c->log.interval == 50 && c->checkpoint.max_keep == 1);
}

/* dump -> parse must give back the identical struct, and dumping that again
 * the identical text. */
static void check_round_trip(const char *label, const t2s_train_config *cfg) {
  int n_rows = 0;
  const t2s_cfg_row *schema = t2s_train_config_schema(&n_rows);
  char *text = NULL, *again = NULL;
  t2s_error err = {0};
  CHECK(t2s_train_config_dump_string(cfg, &text, &err) == T2S_OK);
  t2s_train_config *back = calloc(1, sizeof *back);
  t2s_status st = t2s_train_config_load_text(back, text, "dump", NULL, 0, &err);
  CHECK_MSG(st == T2S_OK, "%s: re-parsing the dump failed: %s\n%s", label, err.msg, text);
  int diff = t2s_config_first_difference(schema, n_rows, cfg, back);
  CHECK_MSG(diff < 0, "%s: key '%s' differs after the round trip", label,
            diff >= 0 ? schema[diff].key : "");
  CHECK_MSG(memcmp(cfg, back, sizeof *cfg) == 0, "%s: struct bytes differ after the round trip",
            label);
  CHECK(t2s_train_config_dump_string(back, &again, &err) == T2S_OK);
  CHECK_MSG(text && again && !strcmp(text, again), "%s: second dump differs", label);
  free(text);
  free(again);
  free(back);
}

static void test_examples_and_round_trip(void) {
  t2s_train_config *cfg = calloc(1, sizeof *cfg);
  char path[2048];
  t2s_error err = {0};
  path_of(path, sizeof path, "configs", "gta2cs_t2sda_deeplabv2.yaml");
  CHECK_MSG(t2s_train_config_load(cfg, path, NULL, 0, &err) == T2S_OK, "%s", err.msg);
  check_gta2cs_values(cfg);
  check_round_trip("gta2cs", cfg);

  /* the dump is nested YAML with every key, readable without our parser */
  char *text = NULL;
  CHECK(t2s_train_config_dump_string(cfg, &text, &err) == T2S_OK);
  CHECK(text && strstr(text, "name: \"gta2cs_t2sda_deeplabv2\"\nseed: 0\n"));
  CHECK(text && strstr(text, "\nuda:\n  type: t2sda\n  alpha: 0.999\n  teacher_bn: batch\n  pseudo_threshold: 0.968\n"));
  CHECK(text && strstr(text, "\ndata:\n  source:\n    shards:\n      - \"shards/gta5/gta5_train-*.h5\"\n"
                             "  target:\n"));
  CHECK(text && strstr(text, "\n    dilations: [6, 12]\n"));
  CHECK(text && strstr(text, "\n  betas: [0.9, 0.999]\n") && strstr(text, "\n  lr: 0.0025\n"));
  CHECK(text && strstr(text, "\n  warmup_ratio: 1.0e-06\n"));
  int n_rows = 0;
  const t2s_cfg_row *schema = t2s_train_config_schema(&n_rows);
  for (int i = 0; text && i < n_rows; i++) {
    char nested[128], top[128];
    const char *dot = strrchr(schema[i].key, '.');
    snprintf(nested, sizeof nested, "  %s:", dot ? dot + 1 : schema[i].key);
    snprintf(top, sizeof top, "\n%s:", schema[i].key);
    CHECK_MSG(dot ? strstr(text, nested) != NULL : (strstr(text, top) || i == 0),
              "dump lacks key %s", schema[i].key);
  }
  free(text);

  path_of(path, sizeof path, "configs", "synthetic_t2sda.yaml");
  t2s_error_clear(&err);
  CHECK_MSG(t2s_train_config_load(cfg, path, NULL, 0, &err) == T2S_OK, "%s", err.msg);
  CHECK(cfg->model.backbone.depth == 18 && cfg->data.crop[0] == 64 && cfg->deterministic);
  check_round_trip("synthetic", cfg);

  CHECK(!cfg->uda.mic.enabled && cfg->uda.mic.mask_block_size == 64 && cfg->uda.mic.mask_ratio == 0.7 &&
        cfg->uda.mic.lambda == 1.0);

  /* MIC's DAFormer recipe: the MIC keys at lhoyer/MIC's defaults on T2S-DA */
  path_of(path, sizeof path, "configs", "gta2cs_t2sda_mic_daformer_mitb5.yaml");
  CHECK_MSG(t2s_train_config_load(cfg, path, NULL, 0, &err) == T2S_OK, "%s", err.msg);
  CHECK(cfg->uda.type == T2S_CFG_UDA_T2SDA && cfg->uda.mic.enabled && cfg->uda.mic.mask_block_size == 64 &&
        cfg->uda.mic.mask_ratio == 0.7 && cfg->uda.mic.lambda == 1.0);
  CHECK(cfg->model.backbone.type == T2S_CFG_BACKBONE_MIT_B5 && cfg->data.rare_class_sampling.enabled &&
        cfg->uda.imnet_feature_dist_lambda == 0.005 && cfg->optimizer.type == T2S_OPTIM_ADAMW);
  check_round_trip("gta2cs_mic", cfg);

  path_of(path, sizeof path, "configs", "synthetic_dg.yaml");
  CHECK_MSG(t2s_train_config_load(cfg, path, NULL, 0, &err) == T2S_OK, "%s", err.msg);
  CHECK(cfg->data.n_val_sets == 5 && cfg->data.n_val_shards == 0 && cfg->uda.type == T2S_CFG_UDA_SOURCE_ONLY);
  CHECK(!strcmp(cfg->data.val_sets[4].name, "storm_val") &&
        !strcmp(cfg->data.val_sets[4].shards[0], "datasets/synthetic/storm_val-*.h5"));
  check_round_trip("synthetic_dg", cfg);

  /* awkward values: quotes, backslashes, ':' and '#', UTF-8, a tab; floats
   * that need 17 digits; lists at their capacity */
  CHECK(t2s_train_config_defaults(cfg, &err) == T2S_OK);
  strcpy(cfg->name, "odd \"name\" \\ with: colon # hash\tand \xc3\xa9");
  cfg->optimizer.lr = 0.1 + 0.2;
  cfg->uda.alpha = 1.0 / 3.0;
  cfg->optimizer.grad_clip = 1e300;
  cfg->lr_config.min_lr = 5e-324;
  cfg->data.n_source_shards = T2S_CFG_MAX_SHARDS;
  for (int i = 0; i < T2S_CFG_MAX_SHARDS; i++)
    snprintf(cfg->data.source_shards[i], T2S_CFG_PATH_MAX, "/data/gta 5/part-%05d.h5", i);
  cfg->model.decode_head.n_dilations = T2S_CFG_MAX_HEAD_DILATIONS;
  for (int i = 0; i < T2S_CFG_MAX_HEAD_DILATIONS; i++) cfg->model.decode_head.dilations[i] = i + 1;
  strcpy(cfg->work_dir, "out");
  check_round_trip("awkward values", cfg);
  free(cfg);
}

static void test_defaults_and_overrides(void) {
  t2s_train_config *cfg = calloc(1, sizeof *cfg);
  t2s_error err = {0};
  CHECK(t2s_train_config_defaults(cfg, &err) == T2S_OK);
  CHECK(cfg->seed == 0 && cfg->device == T2S_CFG_DEVICE_AUTO && !cfg->deterministic);
  CHECK(cfg->data.samples_per_gpu == 2 && cfg->data.workers_per_gpu == 2);
  CHECK(cfg->data.crop[0] == 512 && cfg->data.crop[1] == 512 && cfg->data.ignore_index == 255);
  CHECK(cfg->data.n_source_shards == 0 && cfg->model.pretrained[0] == '\0');
  CHECK(cfg->model.num_classes == 19 && cfg->model.backbone.depth == 101);
  CHECK(cfg->model.backbone.base_channels == 64 && cfg->model.backbone.norm == T2S_NORM_BN);
  CHECK(cfg->model.backbone.contract_dilation && !cfg->model.backbone.norm_eval);
  CHECK(cfg->model.decode_head.channels == 256 && cfg->model.decode_head.dropout == 0.1);
  CHECK(cfg->optimizer.lr == 2.5e-3 && cfg->optimizer.momentum == 0.9);
  CHECK(cfg->optimizer.eps == 1e-8 && cfg->optimizer.head_lr_mult == 10.0);
  CHECK(cfg->optimizer.grad_clip == 0.0 && cfg->optimizer.betas[0] == 0.9);
  CHECK(cfg->lr_config.policy == T2S_LR_POLY && cfg->lr_config.power == 1.0);
  CHECK(cfg->checkpoint.interval == 4000 && cfg->checkpoint.max_keep == 1);

  char path[2048];
  path_of(path, sizeof path, "tests/configs", "good_minimal.yaml");
  char *ovs[] = {"data.crop=[256,256]", "optimizer.lr=1e-2", "data.source.shards=a/*.h5",
                 "data.val.shards=[v1.h5, 'v 2.h5']", "model.decode_head.dilations=[1,2,3]",
                 "uda.type=dacs", "deterministic=true", "name=from_cli", "seed=7",
                 "optimizer.betas=[0.5, 0.75]", "seed=8"};
  int n = (int)(sizeof ovs / sizeof ovs[0]);
  CHECK_MSG(t2s_train_config_load(cfg, path, ovs, n, &err) == T2S_OK, "%s", err.msg);
  CHECK(cfg->data.crop[0] == 256 && cfg->data.crop[1] == 256 && cfg->optimizer.lr == 1e-2);
  CHECK(cfg->data.n_source_shards == 1 && !strcmp(cfg->data.source_shards[0], "a/*.h5"));
  CHECK(cfg->data.n_val_shards == 2 && !strcmp(cfg->data.val_shards[1], "v 2.h5"));
  CHECK(cfg->model.decode_head.n_dilations == 3 && cfg->model.decode_head.dilations[2] == 3);
  CHECK(cfg->uda.type == T2S_CFG_UDA_DACS && cfg->deterministic);
  CHECK(!strcmp(cfg->name, "from_cli") && !strcmp(cfg->work_dir, "work_dirs/from_cli"));
  CHECK(cfg->seed == 8 && cfg->optimizer.betas[1] == 0.75);
  CHECK(cfg->runner.max_iters == 100);  /* from the file, not overridden */

  /* no file at all: defaults plus overrides; `name` is still required */
  char *only[] = {"name=cli_only"};
  CHECK_MSG(t2s_train_config_load(cfg, NULL, only, 1, &err) == T2S_OK, "%s", err.msg);
  CHECK(!strcmp(cfg->name, "cli_only"));
  CHECK(t2s_train_config_load(cfg, NULL, NULL, 0, &err) != T2S_OK);
  CHECK_MSG(strstr(err.msg, "required key 'name' is missing"), "%s", err.msg);
  free(cfg);
}

/* The generic machinery on a small struct of its own, independent of t2sda. */
typedef struct mini {
  int k;
  double x;
  char s[8];
  int v[3];
  int n_v;
} mini;
static const char *const mini_choices[] = {"2", "4", NULL};

static void test_generic_schema(void) {
  const t2s_cfg_row rows[] = {
      {"a.k", T2S_CFG_TYPE_INT, T2S_CFG_AT(mini, k), .choices = mini_choices, .min = 0,
       .max = 10, .def = "4"},
      {"a.b.x", T2S_CFG_TYPE_FLOAT, T2S_CFG_AT(mini, x), .min = -1, .max = 1, .def = "-0.5"},
      {"s", T2S_CFG_TYPE_STRING, T2S_CFG_AT(mini, s), .def = "abc"},
      {"v", T2S_CFG_TYPE_INT_LIST, T2S_CFG_ARRAY_AT(mini, v), T2S_CFG_COUNT_AT(mini, n_v),
       .min_len = 0, .max_len = 3, .min = -5, .max = 5, .def = "[1]"},
  };
  mini m;
  memset(&m, 0xff, sizeof m);
  t2s_error err = {0};
  CHECK(t2s_config_apply_defaults(rows, 4, &m, &err) == T2S_OK);
  CHECK(m.k == 4 && m.x == -0.5 && !strcmp(m.s, "abc") && m.n_v == 1 && m.v[0] == 1 && m.v[1] == 0);
  CHECK(t2s_config_set(rows, 4, &m, "a.k=2", &err) == T2S_OK && m.k == 2);
  CHECK(t2s_config_set(rows, 4, &m, "a.k=3", &err) != T2S_OK);
  CHECK_MSG(strstr(err.msg, "'a.k' is 3 but must be one of: 2, 4"), "%s", err.msg);
  t2s_error_clear(&err);
  CHECK(t2s_config_set(rows, 4, &m, "s=abcdefgh", &err) != T2S_OK);
  CHECK_MSG(strstr(err.msg, "8 characters long but at most 7"), "%s", err.msg);
  t2s_error_clear(&err);
  CHECK(t2s_config_set(rows, 4, &m, "v=[]", &err) == T2S_OK && m.n_v == 0);
  CHECK(t2s_config_set(rows, 4, &m, "v=[5,-5,0]", &err) == T2S_OK && m.n_v == 3 && m.v[1] == -5);
  CHECK(t2s_config_set(rows, 4, &m, "v=[1,2,3,4]", &err) != T2S_OK);
  CHECK_MSG(strstr(err.msg, "0 to 3 values"), "%s", err.msg);
  t2s_error_clear(&err);
  CHECK(t2s_config_set(rows, 4, &m, "a.b.y=0", &err) != T2S_OK);
  CHECK_MSG(strstr(err.msg, "did you mean 'a.b.x'?"), "%s", err.msg);
  t2s_error_clear(&err);

  char *text = NULL;
  m.x = 0.25;
  CHECK(t2s_config_dump_string(rows, 4, &m, &text, &err) == T2S_OK);
  CHECK_MSG(text && !strcmp(text, "a:\n  k: 2\n  b:\n    x: 0.25\ns: \"abc\"\nv: [5, -5, 0]\n"),
            "dump:\n%s", text ? text : "(null)");
  free(text);

  /* the Markdown reference (docs/config.md is this for the training schema): one
   * table per section, cells escaped, list lengths and bounds spelled out */
  t2s_cfg_row helped[4] = {rows[0], rows[1], rows[2], rows[3]};
  helped[1].help = "x | y <z>";
  char *md = NULL;
  size_t md_len = 0;
  FILE *mf = open_memstream(&md, &md_len);
  CHECK(mf != NULL);
  if (mf) {
    CHECK(t2s_config_reference(helped, 4, mf, &err) == T2S_OK);
    fclose(mf);
    const char *header = "| key | type | default | allowed | meaning |\n| --- | --- | --- | --- | --- |\n";
    char want[1024];
    snprintf(want, sizeof want,
             "\n## `a`\n\n%s"
             "| `a.k` | int | `4` | one of: 2, 4 |  |\n"
             "| `a.b.x` | float | `-0.5` | between -1 and 1 | x \\| y &lt;z> |\n"
             "\n## Top-level keys\n\n%s"
             "| `s` | string | `abc` |  |  |\n"
             "| `v` | int list | `[1]` | 0 to 3 values; each between -5 and 5 |  |\n",
             header, header);
    CHECK_MSG(md && !strcmp(md, want), "reference:\n%s\nwanted:\n%s", md ? md : "(null)", want);
    free(md);
  }

  /* tables that are wrong are refused with the row named */
  t2s_cfg_row bad[2] = {rows[0], rows[1]};
  bad[1].key = "a.k";
  CHECK(t2s_config_check_schema(bad, 2, &err) != T2S_OK && strstr(err.msg, "'a.k' appears twice"));
  t2s_error_clear(&err);
  bad[1].key = "a.k.z";
  CHECK(t2s_config_check_schema(bad, 2, &err) != T2S_OK && strstr(err.msg, "both a key and"));
  t2s_error_clear(&err);
  bad[1] = rows[1];
  bad[1].size = sizeof(float);
  CHECK(t2s_config_check_schema(bad, 2, &err) != T2S_OK);
  CHECK_MSG(strstr(err.msg, "C type does not match"), "%s", err.msg);
  t2s_error_clear(&err);
  bad[1] = rows[1];
  bad[1].def = "2";  /* out of its own range */
  CHECK(t2s_config_apply_defaults(bad, 2, &m, &err) != T2S_OK);
  CHECK_MSG(strstr(err.msg, "default of 'a.b.x'"), "%s", err.msg);

  int n_rows = 0;
  const t2s_cfg_row *schema = t2s_train_config_schema(&n_rows);
  t2s_error_clear(&err);
  CHECK_MSG(t2s_config_check_schema(schema, n_rows, &err) == T2S_OK, "%s", err.msg);
  FILE *devnull = fopen("/dev/null", "w");
  if (devnull) {
    CHECK(t2s_config_describe(schema, n_rows, devnull, &err) == T2S_OK);
    fclose(devnull);
  }
}

/* An ENUM row with values stores the program's own enum value, not the choice's
 * index, and dumps it back by name. */
typedef enum mini_colour { MINI_RED = 7, MINI_GREEN = -2, MINI_BLUE = 40 } mini_colour;
typedef struct mini_enum { mini_colour c; int plain; } mini_enum;
static const char *const colour_names[] = {"red", "green", "blue", NULL};
static const int colour_values[] = {MINI_RED, MINI_GREEN, MINI_BLUE};

static void test_enum_values(void) {
  const t2s_cfg_row rows[] = {
      {"c", T2S_CFG_TYPE_ENUM, T2S_CFG_AT(mini_enum, c), .choices = colour_names, .values = colour_values,
       .def = "green"},
      {"plain", T2S_CFG_TYPE_ENUM, T2S_CFG_AT(mini_enum, plain), .choices = colour_names, .def = "blue"},
  };
  mini_enum m;
  t2s_error err = {0};
  CHECK(t2s_config_apply_defaults(rows, 2, &m, &err) == T2S_OK);
  CHECK_MSG(m.c == MINI_GREEN && m.plain == 2, "defaults: c %d, plain %d", (int)m.c, m.plain);
  CHECK(t2s_config_set(rows, 2, &m, "c=blue", &err) == T2S_OK && m.c == MINI_BLUE);
  CHECK(t2s_config_set(rows, 2, &m, "c=bleu", &err) != T2S_OK);
  CHECK_MSG(strstr(err.msg, "did you mean 'blue'?"), "%s", err.msg);
  t2s_error_clear(&err);
  char *text = NULL;
  m.c = MINI_RED;
  CHECK(t2s_config_dump_string(rows, 2, &m, &text, &err) == T2S_OK);
  CHECK_MSG(text && !strcmp(text, "c: red\nplain: blue\n"), "dump:\n%s", text ? text : "(null)");
  free(text);
  static const int twice[] = {1, 2, 1};
  t2s_cfg_row bad = rows[0];
  bad.values = twice;
  CHECK(t2s_config_check_schema(&bad, 1, &err) != T2S_OK);
  CHECK_MSG(strstr(err.msg, "values must be distinct"), "%s", err.msg);
}

/* RECORD_LIST rows on a small struct: the schema's own checks of the field rows. */
typedef struct rec { int n; char tag[8]; } rec;
typedef struct recs { rec r[3]; int n_r; } recs;

static void test_record_schema(void) {
  t2s_cfg_row fields[] = {
      {"n", T2S_CFG_TYPE_INT, T2S_CFG_AT(rec, n), .min = 0, .max = 9, .def = "1"},
      {"tag", T2S_CFG_TYPE_STRING, T2S_CFG_AT(rec, tag), .required = true},
  };
  t2s_cfg_row rows[] = {{"list", T2S_CFG_TYPE_RECORD_LIST, T2S_CFG_ARRAY_AT(recs, r), T2S_CFG_COUNT_AT(recs, n_r),
                         .min_len = 0, .max_len = 3, .def = "[]", .fields = fields, .n_fields = 2}};
  recs v;
  t2s_error err = {0};
  CHECK_MSG(t2s_config_apply_defaults(rows, 1, &v, &err) == T2S_OK && v.n_r == 0, "%s", err.msg);
  CHECK_MSG(t2s_config_set(rows, 1, &v, "list=[{tag: a}, {tag: b, n: 7}]", &err) == T2S_OK, "%s", err.msg);
  CHECK(v.n_r == 2 && v.r[0].n == 1 && !strcmp(v.r[0].tag, "a") && v.r[1].n == 7 && !strcmp(v.r[1].tag, "b"));
  CHECK(t2s_config_set(rows, 1, &v, "list=[{tag: a, n: 10}]", &err) != T2S_OK);
  CHECK_MSG(strstr(err.msg, "'list[0].n' is 10"), "%s", err.msg);
  t2s_error_clear(&err);
  CHECK(t2s_config_set(rows, 1, &v, "list=[{tag: a}, {tag: b}, {tag: c}, {tag: d}]", &err) != T2S_OK);
  CHECK_MSG(strstr(err.msg, "'list' needs 0 to 3 values, got 4"), "%s", err.msg);
  fields[1].key = "t.ag";
  t2s_error_clear(&err);
  CHECK(t2s_config_check_schema(rows, 1, &err) != T2S_OK);
  CHECK_MSG(strstr(err.msg, "'list'") && strstr(err.msg, "plain name"), "%s", err.msg);
  fields[1].key = "tag";
  fields[1].offset = sizeof(rec);
  t2s_error_clear(&err);
  CHECK(t2s_config_check_schema(rows, 1, &err) != T2S_OK);
  CHECK_MSG(strstr(err.msg, "outside one record"), "%s", err.msg);
  fields[1].offset = offsetof(rec, tag);
  rows[0].def = "[{tag: a}]";
  t2s_error_clear(&err);
  CHECK(t2s_config_check_schema(rows, 1, &err) != T2S_OK);
  CHECK_MSG(strstr(err.msg, "default must be"), "%s", err.msg);
}

int main(void) {
  const char *dir = getenv("T2S_SOURCE_DIR");
  if (dir != NULL) snprintf(source_dir, sizeof source_dir, "%s", dir);
  test_generic_schema();
  test_enum_values();
  test_defaults_and_overrides();
  test_examples_and_round_trip();
  test_malformed_files();
  test_bad_overrides();
  test_generated_files();
  test_val_sets();
  test_record_schema();
  test_bases();
  test_dg_rules();
  test_every_config();
  return t2s_test_finish("test_config");
}
