// ctest-labels: e2e
/* Every executable answers --version with one line "NAME VERSION (git COMMIT, CUDA
 * on|off)" and --help with its usage, both exiting 0. The version is checked against
 * project() in CMakeLists.txt (read here, not taken from the generated header), the
 * commit is 12 hex digits or "unknown" (a build outside git). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/harness.h"

static const char *const tools[] = {"t2sda_train", "t2sda_eval",    "t2sda_infer",
                                    "t2sda_bench", "t2sda_synth",   "t2sda_shards",
                                    "t2sda_convert"};

/* "0.1.0" from the line "project(t2sda VERSION 0.1.0 ...)". */
static int project_version(const char *source, char *buf, size_t size) {
  char path[1200], line[512];
  snprintf(path, sizeof path, "%s/CMakeLists.txt", source);
  FILE *f = fopen(path, "r");
  if (f == NULL) return 0;
  int found = 0;
  while (!found && fgets(line, sizeof line, f)) {
    const char *v = strncmp(line, "project(", 8) == 0 ? strstr(line, " VERSION ") : NULL;
    if (v == NULL) continue;
    v += 9;
    size_t n = strspn(v, "0123456789.");
    found = n > 0 && n < size;
    if (found) snprintf(buf, size, "%.*s", (int)n, v);
  }
  fclose(f);
  return found;
}

static int read_line(const char *path, char *buf, size_t size) {
  FILE *f = fopen(path, "r");
  if (f == NULL) return 0;
  int ok = fgets(buf, (int)size, f) != NULL;
  fclose(f);
  return ok;
}

static int is_commit(const char *s, size_t n) {
  if (n == 7 && strncmp(s, "unknown", 7) == 0) return 1;
  for (size_t i = 0; i < n; i++)
    if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i])) return 0;
  return n == 12;
}

/* "NAME VERSION (git COMMIT, CUDA on|off)\n" exactly. */
static void check_version_line(const char *name, const char *version, const char *line) {
  char head[128];
  snprintf(head, sizeof head, "%s %s (git ", name, version);
  size_t hl = strlen(head);
  CHECK_MSG(strncmp(line, head, hl) == 0, "%s --version: '%s' does not start with '%s'", name,
            line, head);
  if (strncmp(line, head, hl) != 0) return;
  const char *commit = line + hl, *comma = strchr(commit, ',');
  CHECK_MSG(comma && is_commit(commit, (size_t)(comma - commit)), "%s --version: bad commit in '%s'",
            name, line);
  CHECK_MSG(comma && (!strcmp(comma, ", CUDA on)\n") || !strcmp(comma, ", CUDA off)\n")),
            "%s --version: line does not end with ', CUDA on|off)': '%s'", name, line);
}

int main(void) {
  const char *bin_dir = getenv("T2S_BINARY_DIR"), *source = getenv("T2S_SOURCE_DIR");
  if (bin_dir == NULL || source == NULL) {
    fprintf(stderr, "test_cli: T2S_BINARY_DIR and T2S_SOURCE_DIR must be set (ctest sets them)\n");
    return 1;
  }
  char version[64], dir[] = "/tmp/t2s_test_cli_XXXXXX", log[128], line[512];
  CHECK_MSG(project_version(source, version, sizeof version), "no project VERSION in %s",
            source);
  CHECK(mkdtemp(dir) != NULL);
  snprintf(log, sizeof log, "%s/out.log", dir);
  for (size_t i = 0; i < sizeof tools / sizeof tools[0]; i++) {
    const char *name = tools[i];
    int rc = t2s_test_run("%s/bin/%s --version > %s 2>&1", bin_dir, name, log);
    CHECK_MSG(rc == 0, "%s --version exited %d", name, rc);
    line[0] = '\0';
    CHECK_MSG(read_line(log, line, sizeof line), "%s --version printed nothing", name);
    check_version_line(name, version, line);
    rc = t2s_test_run("%s/bin/%s --help > %s 2>&1", bin_dir, name, log);
    CHECK_MSG(rc == 0, "%s --help exited %d", name, rc);
    CHECK_MSG(t2s_test_file_contains(log, "usage:") && t2s_test_file_contains(log, name),
              "%s --help lacks 'usage:' or the name", name);
  }
  remove(log);
  rmdir(dir);
  return t2s_test_finish("test_cli");
}
