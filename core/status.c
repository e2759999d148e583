#include "core/status.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* With T2S_ERROR_LOG=FILE in the environment, every message that is kept is
 * appended to FILE as one line "status<TAB>message": tools/reliability_report.py
 * counts and grades the refusals a test run produced from it. One write(2) per
 * line on an O_APPEND descriptor, so threads and processes do not interleave. */
static void log_error(const t2s_error *err) {
  const char *path = getenv("T2S_ERROR_LOG");
  if (path == NULL || path[0] == '\0') return;
  char line[T2S_ERROR_MAX + 32];
  int n = snprintf(line, sizeof line, "%s\t%s", t2s_status_name(err->status), err->msg);
  if (n < 0) return;
  size_t len = (size_t)n < sizeof line - 1 ? (size_t)n : sizeof line - 2;
  for (size_t i = 0; i < len; i++)
    if (line[i] == '\n' || line[i] == '\r') line[i] = ' ';
  line[len++] = '\n';
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return;
  ssize_t put = write(fd, line, len);
  (void)put;
  close(fd);
}

t2s_status t2s_error_set(t2s_error *err, t2s_status status, const char *fmt, ...) {
  if (err == NULL || err->status != T2S_OK) return status;
  err->status = status;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->msg, sizeof err->msg, fmt, ap);
  va_end(ap);
  log_error(err);
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
