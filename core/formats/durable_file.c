#include "core/formats/durable_file.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
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

/* The state letter of /proc/<pid>/stat: after the last ')' (the command name in
 * parentheses may itself hold spaces and parentheses), then one space. 0 if unknown. */
static char proc_state(long pid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char *close_paren = strrchr(buf, ')');
  return close_paren != NULL && close_paren[1] == ' ' ? close_paren[2] : 0;
}

int t2s_writer_pid_gone(long pid) {
  if (pid <= 0 || pid != (long)(pid_t)pid) return 0;
  if (kill((pid_t)pid, 0) != 0) return errno == ESRCH;
  char state = proc_state(pid);
  return state == 'Z' || state == 'X';
}
