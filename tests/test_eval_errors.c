// ctest-labels: unit
/* t2sda_eval's error paths exit with status 1 (2 for usage errors) and, in the
 * sanitizer build of tools/test.sh, without leaks: LeakSanitizer turns a leak
 * into exit status 23, so each case checks the exact status. The cases: an
 * unknown option, a missing config file, a bad --which, a config without
 * validation shards, a checkpoint that does not exist, validation shards that
 * match nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/harness.h"

int main(void) {
  const char *bin = getenv("T2S_BINARY_DIR");
  char exe[1024], cfg[1100], cfg_val[1100];
  snprintf(exe, sizeof exe, "%s/bin/t2sda_eval", bin ? bin : ".");
  if (access(exe, X_OK) != 0) {
    printf("note: %s not built; skipped\n", exe);
    return 77;
  }
  snprintf(cfg, sizeof cfg, "%s/tests/eval_errors.yaml", bin);
  snprintf(cfg_val, sizeof cfg_val, "%s/tests/eval_errors_val.yaml", bin);
  FILE *f = fopen(cfg, "w"), *g = fopen(cfg_val, "w");
  CHECK(f != NULL && g != NULL);
  if (f == NULL || g == NULL) return 1;
  fputs("name: eval_errors\nuda: {type: source_only}\n", f);
  fputs("name: eval_errors\nuda: {type: source_only}\nmodel:\n  num_classes: 11\n"
        "  backbone: {type: mit_b0}\n  decode_head: {type: segformer_mlp, channels: 32}\n"
        "data:\n  val: {shards: [/nonexistent-t2s/*.h5]}\n", g);
  fclose(f);
  fclose(g);
  struct {
    const char *args;
    int want;
  } cases[] = {
      {"--bogus", 2},
      {"/nonexistent-t2s/config.yaml --checkpoint /nonexistent-t2s/x.h5", 1},
      {"CFG --checkpoint /nonexistent-t2s/x.h5 --which neither", 1},
      {"CFG --checkpoint /nonexistent-t2s/x.h5", 1},
      {"VAL --checkpoint /nonexistent-t2s/x.h5", 1},
  };
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    char args[2400];
    const char *a = cases[k].args;
    if (strncmp(a, "CFG", 3) == 0) snprintf(args, sizeof args, "%s%s", cfg, a + 3);
    else if (strncmp(a, "VAL", 3) == 0) snprintf(args, sizeof args, "%s%s", cfg_val, a + 3);
    else snprintf(args, sizeof args, "%s", a);
    int rc = t2s_test_run("'%s' %s > /dev/null 2>&1", exe, args);
    CHECK_MSG(rc == cases[k].want, "t2sda_eval %s: exit status %d, expected %d (23: a leak under "
              "LeakSanitizer)", args, rc, cases[k].want);
  }
  unlink(cfg);
  unlink(cfg_val);
  return t2s_test_finish("test_eval_errors");
}
