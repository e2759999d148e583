/* Test helpers: checks that print what failed, host tensors, and the
 * finite-difference gradient check that every op's backward goes through.
 * Each test file is its own executable (one process per test, ctest timeout);
 * its labels come from a line `// ctest-labels: unit grad` near the top. */
#pragma once
#include <stdint.h>
#include <stdio.h>

#include "core/engine.h"
#include "core/ops.h"

extern int t2s_test_failures;

#define CHECK(cond)                                                                  \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);        \
      t2s_test_failures++;                                                           \
    }                                                                                \
  } while (0)

#define CHECK_MSG(cond, ...)                                                         \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);        \
      fprintf(stderr, __VA_ARGS__);                                                  \
      fputc('\n', stderr);                                                           \
      t2s_test_failures++;                                                           \
    }                                                                                \
  } while (0)

/* Runs a printf-formatted shell command; returns its exit status (128 + signal when
 * it was killed). For the tests that drive the executables. */
int t2s_test_run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* 1 when the file at path exists and its first MiB contains needle (logs of those runs). */
int t2s_test_file_contains(const char *path, const char *needle);

/* The number of lines (up to 8 KiB each) of the file at path that contain needle; 0 when
 * it cannot be read. */
int t2s_test_count_lines(const char *path, const char *needle);

/* Runs child(arg) in a forked process (child must end the process itself) and waits for
 * it; returns its exit code, or 128 + the signal that killed it. *pid receives its pid. */
int t2s_test_in_child(void (*child)(const char *arg), const char *arg, long *pid);

/* The folders of a test that drives the executables, from ctest's environment:
 * bin = $T2S_BINARY_DIR/bin, src = $T2S_SOURCE_DIR (src may be NULL), dir =
 * $T2S_BINARY_DIR/tests/<work_name>, emptied and created. Returns 0, or 1 with a message
 * when the test is not run through ctest. */
int t2s_test_e2e_dirs(const char *work_name, char *bin, size_t bin_size, char *src, size_t src_size,
                      char *dir, size_t dir_size);

/* Prints "N passed, M failed" style summary and returns the exit code. */
int t2s_test_finish(const char *name);

/* A CPU tensor in malloc'd memory (outlives any pass), filled with
 * uniform(lo, hi) from seed. Free with t2s_test_tensor_free. */
t2s_tensor *t2s_test_tensor(int ndim, const int64_t *shape, float lo, float hi, uint64_t seed,
                            int requires_grad);
t2s_tensor *t2s_test_tensor_u8(int ndim, const int64_t *shape, const uint8_t *values);
void t2s_test_tensor_free(t2s_tensor *t);

/* One convolution pass with fan-out, for comparing two conv implementations:
 * loss = sum(r1 conv(x, w, b)) + sum(r2 conv(x, w2)) with fixed random r1, r2, so x's
 * gradient is written by one backward and accumulated by the other; w's grad starts at
 * 0.25 everywhere (beta 1: must end at 0.25 + dL/dw), w2's is fresh (beta 0). The
 * result holds malloc'd copies of y, dx, dw, dw2 (NULL when w2 takes no gradient) and db
 * (NULL without b). Returns 1 on
 * success; on failure records a check failure naming `label`. */
typedef struct t2s_test_conv_result {
  float *y, *dx, *dw, *dw2, *db;
  int64_t ny, nx, nw, nb;
} t2s_test_conv_result;
int t2s_test_conv_fanout(const char *label, t2s_tensor *x, t2s_tensor *w, t2s_tensor *w2,
                         t2s_tensor *b, const t2s_conv2d_args *a, t2s_test_conv_result *res);
void t2s_test_conv_result_free(t2s_test_conv_result *r);

/* Builds the op's output from the inputs (runs in a fresh pass each call). */
typedef t2s_tensor *(*t2s_gc_build)(t2s_ctx *ctx, t2s_tensor **inputs, void *user);

typedef struct t2s_gc_opts {
  double eps;       /* finite-difference step (default 1e-2) */
  double rtol;      /* default 2e-2 */
  double atol;      /* default 2e-3 */
  int max_points;   /* elements checked per input (default 64, spread over the tensor) */
} t2s_gc_opts;

/* Checks d(sum(out * R))/d(input) for every input with requires_grad against
 * central differences (loss evaluated in double on the host), in both backward
 * modes: write (grad starts absent) and accumulate (grad starts at 0.5 and must
 * end at 0.5 + analytic). Returns the number of mismatches (also added to
 * t2s_test_failures). */
int t2s_gradcheck(const char *label, t2s_gc_build build, void *user, t2s_tensor **inputs, int n,
                  const t2s_gc_opts *opts);
