#include "core/formats/durable_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static t2s_status fsync_path(const char *path, int directory, const char *kind, const char *what,
                             t2s_error *err) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | (directory ? O_DIRECTORY : 0));
  if (fd < 0)
    return t2s_error_set(err, T2S_ERR_IO, "%s %s: open for fsync failed: %s", kind, what,
                         strerror(errno));
  int rc = fsync(fd), e = errno;
  close(fd);
  /* some filesystems cannot fsync a directory (EINVAL): the rename is then as durable as
   * that filesystem makes it */
  if (rc != 0 && !(directory && (e == EINVAL || e == ENOTSUP)))
    return t2s_error_set(err, T2S_ERR_IO, "%s %s: fsync failed: %s", kind, what, strerror(e));
  return T2S_OK;
}

t2s_status t2s_durable_rename(const char *tmp_path, const char *final_path, const char *kind,
                              t2s_error *err) {
  t2s_status st = fsync_path(tmp_path, 0, kind, tmp_path, err);
  if (st != T2S_OK) return st;
  if (rename(tmp_path, final_path) != 0)
    return t2s_error_set(err, T2S_ERR_IO, "%s %s: rename from %s failed: %s", kind, final_path,
                         tmp_path, strerror(errno));
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", final_path);
  char *slash = strrchr(dir, '/');
  if (slash == NULL) snprintf(dir, sizeof dir, ".");
  else if (slash == dir) dir[1] = '\0';
  else *slash = '\0';
  return fsync_path(dir, 1, kind, final_path, err);
}
