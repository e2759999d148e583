/* Shared by the libFuzzer harnesses: readers that take a path (HDF5, libpng,
 * the mapping table) get the input through one temporary file per process. */
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Writes data to a per-process file under $TMPDIR (or /tmp) and returns its
 * path; NULL when it cannot be written (the input is then skipped). */
static inline const char *t2s_fuzz_to_file(const uint8_t *data, size_t size, const char *ext) {
  static char path[512];
  const char *dir = getenv("TMPDIR");
  snprintf(path, sizeof path, "%s/t2s_fuzz_%ld%s", dir && dir[0] ? dir : "/tmp", (long)getpid(),
           ext);
  FILE *f = fopen(path, "wb");
  if (f == NULL) return NULL;
  size_t put = size ? fwrite(data, 1, size, f) : 0;
  if (fclose(f) != 0 || put != size) return NULL;
  return path;
}

/* A reader that returned an error must have said something. */
#define T2S_FUZZ_EXPECT(cond) \
  do {                        \
    if (!(cond)) __builtin_trap(); \
  } while (0)
