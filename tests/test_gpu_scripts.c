// ctest-labels: unit tools
// ctest-timeout: 60
/* The GPU bring-up scripts, cheaply (the real rehearsal, tools/rehearse_gpu_bundle.sh,
 * needs root and minutes):
 * - tools/gpu_check.sh, gpu_bundle.sh, rehearse_gpu_bundle.sh and gpu_source_hash.sh
 *   parse (bash -n);
 * - gpu_check.sh runs no installer: no apt-get/apt/dpkg -i, no pip (pip, pip3,
 *   python3 -m pip), no tools/setup.sh outside comments: the GPU machine reaches no
 *   package registry, and a run that tries one spends its minutes for nothing;
 * - the installer check itself flags a script that does install (so it cannot pass by
 *   matching nothing), and passes one that only mentions them in comments;
 * - .gitignore ignores the bundle's folder (the archive travels through the device
 *   tool's `carry`, never as a tracked file). */
#include <stdio.h>
#include <stdlib.h>

#include "tests/harness.h"

/* Non-comment lines that call an installer; the pattern is the test's subject. */
#define INSTALLERS \
  "grep -vE '^[[:space:]]*#' %s | " \
  "grep -nE '(^|[^A-Za-z0-9_./-])(apt-get|apt|pip3?)([[:space:]]|$)|setup\\.sh|-m pip|dpkg -i'"

static char src[1024];

static int has_installer(const char *path) {
  /* grep exits 0 when it prints a line (an installer call), 1 when none */
  return t2s_test_run(INSTALLERS " >/dev/null", path) == 0;
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  CHECK_MSG(f != NULL, "cannot write %s", path);
  if (f == NULL) return;
  fputs(text, f);
  fclose(f);
}

int main(void) {
  const char *s = getenv("T2S_SOURCE_DIR"), *b = getenv("T2S_BINARY_DIR");
  if (s == NULL || b == NULL) {
    fprintf(stderr, "run through ctest (T2S_SOURCE_DIR and T2S_BINARY_DIR)\n");
    return 2;
  }
  snprintf(src, sizeof src, "%s", s);
  const char *scripts[] = {"gpu_check.sh", "gpu_bundle.sh", "rehearse_gpu_bundle.sh",
                           "gpu_source_hash.sh"};
  for (int i = 0; i < 4; i++)
    CHECK_MSG(t2s_test_run("bash -n %s/tools/%s", src, scripts[i]) == 0, "tools/%s does not parse",
              scripts[i]);

  char path[1200];
  snprintf(path, sizeof path, "%s/tools/gpu_check.sh", src);
  CHECK_MSG(!has_installer(path), "tools/gpu_check.sh calls an installer:");
  if (has_installer(path)) t2s_test_run(INSTALLERS " >&2", path);

  /* the check flags real calls and ignores comments */
  const char *bad[] = {"sudo apt-get install -y cmake\n", "pip install torch\n",
                       "  python3 -m pip install h5py\n", "bash tools/setup.sh\n",
                       "x=1; apt update\n", "dpkg -i x.deb\n"};
  for (int i = 0; i < 6; i++) {
    snprintf(path, sizeof path, "%s/tests/gpu_scripts_bad.sh", b);
    write_file(path, bad[i]);
    CHECK_MSG(has_installer(path), "the installer check misses: %s", bad[i]);
  }
  snprintf(path, sizeof path, "%s/tests/gpu_scripts_ok.sh", b);
  write_file(path, "# needs tools/setup.sh (apt-get) and pip, run by hand\nldconfig -p\n"
                   "cp pipeline.txt x\n");
  CHECK_MSG(!has_installer(path), "the installer check flags comments or look-alikes");

  CHECK_MSG(t2s_test_run("grep -qx '/gpu_bundle/' %s/.gitignore && "
                         "grep -qx '/gpu_rehearsal/' %s/.gitignore", src, src) == 0,
            ".gitignore does not ignore /gpu_bundle/ and /gpu_rehearsal/");
  return t2s_test_finish("test_gpu_scripts");
}
