/* Status codes and error messages shared by every library layer.
 *
 * Library functions never exit: they return a t2s_status and, where a caller
 * passes one, fill a t2s_error with a sentence that names what failed, where
 * (file, key, tensor, op) and what to do next. Executables turn that into an
 * exit code. */
#pragma once
#include <stdarg.h>

typedef enum t2s_status {
  T2S_OK = 0,
  T2S_ERR_INVALID,      /* bad argument, shape or value */
  T2S_ERR_IO,           /* file could not be read or written */
  T2S_ERR_FORMAT,       /* file exists but its contents are wrong */
  T2S_ERR_NOMEM,        /* allocation failed */
  T2S_ERR_UNSUPPORTED,  /* backend or feature not available in this build */
  T2S_ERR_BACKEND,      /* CUDA / cuDNN / cuBLAS / BLAS reported an error */
  T2S_ERR_NUMERIC,      /* NaN or inf where a finite value is required */
  T2S_ERR_COMM,         /* collective communication failed */
} t2s_status;

#define T2S_ERROR_MAX 1024

typedef struct t2s_error {
  t2s_status status;
  char msg[T2S_ERROR_MAX];
} t2s_error;

/* Sets err (when not NULL) to status and a printf-formatted message; returns status
 * so that `return t2s_error_set(err, T2S_ERR_IO, "...")` reads naturally.
 * The first error wins: a later call does not overwrite an earlier message. */
t2s_status t2s_error_set(t2s_error *err, t2s_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void t2s_error_clear(t2s_error *err);
const char *t2s_status_name(t2s_status status);
