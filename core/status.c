#include "core/status.h"

#include <stdio.h>
#include <string.h>

t2s_status t2s_error_set(t2s_error *err, t2s_status status, const char *fmt, ...) {
  if (err == NULL || err->status != T2S_OK) return status;
  err->status = status;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->msg, sizeof err->msg, fmt, ap);
  va_end(ap);
  return status;
}

void t2s_error_clear(t2s_error *err) {
  if (err == NULL) return;
  err->status = T2S_OK;
  err->msg[0] = '\0';
}

const char *t2s_status_name(t2s_status status) {
  switch (status) {
    case T2S_OK: return "ok";
    case T2S_ERR_INVALID: return "invalid argument";
    case T2S_ERR_IO: return "I/O error";
    case T2S_ERR_FORMAT: return "format error";
    case T2S_ERR_NOMEM: return "out of memory";
    case T2S_ERR_UNSUPPORTED: return "unsupported";
    case T2S_ERR_BACKEND: return "backend error";
    case T2S_ERR_NUMERIC: return "numeric error";
    case T2S_ERR_COMM: return "communication error";
  }
  return "unknown status";
}
