// ctest-labels: unit
/* TensorBoard event files (launch/tb_events.c):
 * - CRC-32C against the standard check value and RFC 3720's test vectors;
 * - a file written by t2s_tb_scalar, and one mirroring a metrics.jsonl the way
 *   the trainer does (lines already there skipped, an unfinished line left for
 *   later, null and string values skipped), read back by the `tensorboard`
 *   package (its own TFRecord reader, which checks the CRCs, and protobuf
 *   parser): every tag, step and value must match.
 * Exits 77 (skipped) when python3 cannot import tensorboard, after the C checks;
 * tools/setup.sh installs it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "launch/tb_events.h"
#include "tests/harness.h"

static char dir[600];

static void check_crc(void) {
  CHECK(t2s_crc32c("123456789", 9) == 0xE3069283u);
  uint8_t zeros[32] = {0}, ones[32], inc[32];
  for (int i = 0; i < 32; i++) ones[i] = 0xFF, inc[i] = (uint8_t)i;
  CHECK(t2s_crc32c(zeros, 32) == 0x8A9136AAu);
  CHECK(t2s_crc32c(ones, 32) == 0x62A8AB43u);
  CHECK(t2s_crc32c(inc, 32) == 0x46DD794Eu);
}

static void append(const char *path, const char *text) {
  FILE *f = fopen(path, "a");
  CHECK(f != NULL);
  if (f) fputs(text, f), fclose(f);
}

/* Runs the tensorboard reader over one event file; its output is "tag step value"
 * lines sorted, in out. Returns the script's exit status. */
static int read_back(const char *events, const char *out) {
  return t2s_test_run(
      "python3 - '%s' > '%s' 2>&1 <<'EOF'\n"
      "import sys\n"
      "from tensorboard.backend.event_processing import event_file_loader as efl\n"
      "rows = []\n"
      "for ev in efl.EventFileLoader(sys.argv[1]).Load():\n"
      "    if ev.HasField('file_version'):\n"
      "        rows.append('version %%s' %% ev.file_version)\n"
      "    for v in ev.summary.value:\n"
      "        val = v.simple_value if v.HasField('simple_value') else v.tensor.float_val[0]\n"
      "        rows.append('%%s %%d %%.6g' %% (v.tag, ev.step, val))\n"
      "print('\\n'.join(sorted(rows)))\n"
      "EOF",
      events, out);
}

static void expect_file(const char *path, const char *want) {
  FILE *f = fopen(path, "r");
  char got[4096] = {0};
  size_t n = f ? fread(got, 1, sizeof got - 1, f) : 0;
  got[n] = '\0';
  if (f) fclose(f);
  CHECK_MSG(strcmp(got, want) == 0, "%s:\n%s\nexpected:\n%s", path, got, want);
}

static void direct_scalars(void) {
  char sub[700], out[800];
  snprintf(sub, sizeof sub, "%s/direct", dir);
  t2s_test_run("mkdir -p '%s'", sub);
  t2s_error err = {0};
  t2s_tb_writer *w = t2s_tb_open(sub, &err);
  CHECK_MSG(w != NULL, "%s", err.msg);
  if (w == NULL) return;
  CHECK(t2s_tb_scalar(w, "loss", 1, 1.7e9, 2.5f, &err) == T2S_OK);
  CHECK(t2s_tb_scalar(w, "loss", 2, 1.7e9 + 1, 1.25f, &err) == T2S_OK);
  CHECK(t2s_tb_scalar(w, "val/mIoU", 2, 1.7e9 + 2, 0.375f, &err) == T2S_OK);
  char path[4400];
  snprintf(path, sizeof path, "%s", t2s_tb_path(w));
  t2s_tb_close(w);
  snprintf(out, sizeof out, "%s/direct.txt", dir);
  CHECK(read_back(path, out) == 0);
  expect_file(out, "loss 1 2.5\nloss 2 1.25\nval/mIoU 2 0.375\nversion brain.Event:2\n");
}

static void mirrored_jsonl(void) {
  char sub[700], jsonl[800], out[800];
  snprintf(sub, sizeof sub, "%s/run", dir);
  snprintf(jsonl, sizeof jsonl, "%s/metrics.jsonl", sub);
  t2s_test_run("mkdir -p '%s'", sub);
  append(jsonl, "{\"iteration\": 5, \"loss\": 9.0}\n");  /* an earlier run's: not mirrored */
  t2s_error err = {0};
  t2s_tb_writer *w = t2s_tb_follow(jsonl, &err);
  CHECK_MSG(w != NULL, "%s", err.msg);
  if (w == NULL) return;
  append(jsonl, "{\"iteration\": 6, \"loss\": 0.5, \"lr\": 0.006, \"images_per_s\": 12.25}\n"
                "{\"iteration\": 8, \"aAcc\": 0.75, \"mIoU\": null, \"IoU.road\": 0.125, \"note\": \"x:1\"}\n"
                "{\"iteration\": 9, \"loss\": 0.2");  /* still being written */
  CHECK_MSG(t2s_tb_sync(w, &err) == T2S_OK, "%s", err.msg);
  append(jsonl, "5}\n");
  CHECK_MSG(t2s_tb_sync(w, &err) == T2S_OK, "%s", err.msg);
  char path[4400];
  snprintf(path, sizeof path, "%s", t2s_tb_path(w));
  t2s_tb_close(w);
  snprintf(out, sizeof out, "%s/run.txt", dir);
  CHECK(read_back(path, out) == 0);
  expect_file(out, "IoU.road 8 0.125\naAcc 8 0.75\nimages_per_s 6 12.25\nloss 6 0.5\nloss 9 0.25\n"
                   "lr 6 0.006\nversion brain.Event:2\n");
}

int main(void) {
  check_crc();
  const char *b = getenv("T2S_BINARY_DIR");
  snprintf(dir, sizeof dir, "%s/tests/tb_work", b ? b : "/tmp");
  t2s_test_run("rm -rf '%s' && mkdir -p '%s'", dir, dir);
  if (t2s_test_run("python3 -c 'import tensorboard' > /dev/null 2>&1") != 0) {
    fprintf(stderr, "python3 cannot import tensorboard (tools/setup.sh installs it): skipped\n");
    return t2s_test_failures ? t2s_test_finish("test_tb_events") : 77;
  }
  direct_scalars();
  mirrored_jsonl();
  return t2s_test_finish("test_tb_events");
}
