#include "core/formats/hdf5_error.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct h5_detail {
  char text[384];
  int found;
} h5_detail;

/* The walk starts at the most specific error: keep the first description. */
static herr_t h5_detail_cb(unsigned n, const H5E_error2_t *e, void *data) {
  (void)n;
  h5_detail *d = data;
  if (!d->found && e->desc != NULL && e->desc[0] != '\0') {
    snprintf(d->text, sizeof d->text, "%s", e->desc);
    d->found = 1;
  }
  return 0;
}

void t2s_h5_detail(char *buf, size_t size) {
  h5_detail d = {{0}, 0};
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5_detail_cb, &d);
  snprintf(buf, size, "%s", d.found ? d.text : "no detail");
}

t2s_status t2s_h5_fail(t2s_error *err, const char *kind, const char *file, const char *call,
                       const char *object) {
  h5_detail d;
  t2s_h5_detail(d.text, sizeof d.text);
  const char *hint = strstr(d.text, "lock") != NULL
                         ? "; on a network filesystem, set HDF5_USE_FILE_LOCKING=FALSE"
                         : "";
  return t2s_error_set(err, T2S_ERR_IO, "%s %s: %s failed for '%s' (HDF5: %s%s)", kind, file, call,
                       object, d.text, hint);
}

/* See hdf5_error.h: 1 once an H5Fclose failed and the library must not be shut down. */
static _Atomic int close_failed;

static void h5_shutdown(void) {
  if (!close_failed) H5close();
}

/* Runs before main and thus before HDF5 initialises itself (lazily, on the first API
 * call), which is when H5dont_atexit must come to take effect. Should HDF5 already be
 * initialised (a constructor elsewhere called it), its own hook stays in place. */
__attribute__((constructor)) static void h5_shutdown_install(void) {
  if (H5dont_atexit() >= 0) atexit(h5_shutdown);
}

int t2s_h5_close_file(int64_t file_id) {
  herr_t rc = H5Fclose((hid_t)file_id);
  if (rc < 0) close_failed = 1;
  return (int)rc;
}
