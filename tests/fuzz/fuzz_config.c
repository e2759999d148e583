/* libFuzzer harness: the strict YAML config loader (core/formats/config.c)
 * through the real training schema (launch/train_config.c). The input is YAML
 * text, optionally followed by a NUL byte and command-line overrides, one per
 * line ("optimizer.lr=0.01"). A config that loads must dump to YAML that loads
 * back to the identical struct (the round trip t2sda_train relies on when it
 * resumes from the config stored in a checkpoint). */
#include <stdlib.h>
#include <string.h>

#include "core/formats/config.h"
#include "launch/train_config.h"
#include "tests/fuzz/fuzz_util.h"

#define MAX_OVERRIDES 8

static int split_overrides(char *text, size_t size, char **ov) {
  size_t yaml_len = strnlen(text, size);
  if (yaml_len == size) return 0;
  int n = 0;
  char *p = text + yaml_len + 1;
  while (n < MAX_OVERRIDES && p < text + size) {
    char *nl = strchr(p, '\n');
    if (nl) *nl = '\0';
    ov[n++] = p;
    if (nl == NULL) break;
    p = nl + 1;
  }
  return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  t2s_train_config *cfg = malloc(sizeof *cfg), *again = malloc(sizeof *again);
  if (text == NULL || cfg == NULL || again == NULL) goto out;
  memcpy(text, data, size);
  text[size] = '\0';
  char *ov[MAX_OVERRIDES];
  int n_ov = split_overrides(text, size, ov);
  t2s_error err = {0};
  if (t2s_train_config_load_text(cfg, text, "fuzz.yaml", ov, n_ov, &err) != T2S_OK) {
    T2S_FUZZ_EXPECT(err.msg[0] != '\0');
    goto out;
  }
  char *dumped = NULL;
  T2S_FUZZ_EXPECT(t2s_train_config_dump_string(cfg, &dumped, &err) == T2S_OK);
  t2s_error e2 = {0};
  T2S_FUZZ_EXPECT(t2s_train_config_load_text(again, dumped, "dumped.yaml", NULL, 0, &e2) == T2S_OK);
  int n_rows = 0;
  const t2s_cfg_row *schema = t2s_train_config_schema(&n_rows);
  T2S_FUZZ_EXPECT(t2s_config_first_difference(schema, n_rows, cfg, again) == -1);
  free(dumped);
out:
  free(again);
  free(cfg);
  free(text);
  return 0;
}
