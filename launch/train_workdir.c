#include "launch/train_workdir.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/formats/checkpoint.h"
#include "core/formats/durable_file.h"

static int is_iter_name(const char *name, long long *iter) {
  char tail[8];
  return sscanf(name, "iter_%lld.%7s", iter, tail) == 2 && strcmp(tail, "h5") == 0;
}

/* Highest iteration of an iter_*.h5 below `below` (LLONG_MAX: any), or -1. */
static long long newest_iter_below(const char *work_dir, long long below) {
  DIR *d = opendir(work_dir);
  long long best = -1, it;
  struct dirent *e;
  while (d && (e = readdir(d)) != NULL)
    if (is_iter_name(e->d_name, &it) && it < below && it > best) best = it;
  if (d) closedir(d);
  return best;
}

t2s_status t2s_workdir_check_fresh(const char *work_dir, t2s_error *err) {
  char path[1200];
  struct stat sb;
  const char *found = NULL;
  snprintf(path, sizeof path, "%s/latest.h5", work_dir);
  if (lstat(path, &sb) == 0) found = "latest.h5";
  long long it = newest_iter_below(work_dir, LLONG_MAX);
  char iter_name[64];
  if (found == NULL && it >= 0) {
    snprintf(iter_name, sizeof iter_name, "iter_%08lld.h5", it);
    found = iter_name;
  }
  snprintf(path, sizeof path, "%s/metrics.jsonl", work_dir);
  if (found == NULL && stat(path, &sb) == 0 && sb.st_size > 0) found = "metrics.jsonl";
  if (found == NULL) return T2S_OK;
  return t2s_error_set(err, T2S_ERR_INVALID,
                       "work_dir %s already holds a run (%s): continue it with --resume auto, start it "
                       "over with --overwrite, or set work_dir to a new folder", work_dir, found);
}

/* The writer's pid when name is a temporary file of ours (see the header), else 0. */
static long stale_writer_pid(const char *name) {
  const char *dot = strrchr(name, '.');
  if (dot == NULL || dot[1] == '\0') return 0;
  char *end;
  long pid = strtol(dot + 1, &end, 10);
  if (*end != '\0' || pid <= 0) return 0;
  size_t stem = (size_t)(dot - name);
  if (stem > 4 && strncmp(dot - 4, ".tmp", 4) == 0) return pid;
  if ((stem == 7 && strncmp(name, ".latest", 7) == 0) || (stem == 14 && strncmp(name, ".metrics.jsonl", 14) == 0))
    return pid;
  return 0;
}

int t2s_workdir_remove_stale(const char *work_dir, FILE *log) {
  DIR *d = opendir(work_dir);
  if (d == NULL) return 0;
  int removed = 0;
  struct dirent *e;
  char path[1200];
  while ((e = readdir(d)) != NULL) {
    long pid = stale_writer_pid(e->d_name);
    if (pid == 0 || (long)getpid() == pid || !t2s_writer_pid_gone(pid)) continue;
    snprintf(path, sizeof path, "%s/%s", work_dir, e->d_name);
    if (unlink(path) != 0) continue;
    removed++;
    if (log) fprintf(log, "removed stale %s (left by process %ld, which is gone)\n", path, pid);
  }
  closedir(d);
  return removed;
}

/* 1 when the checkpoint at path opens and its header reads; *iteration receives its
 * iteration. */
static int opens(const char *path, long long *iteration, char *why, size_t why_size) {
  t2s_error e = {0};
  if (access(path, R_OK) != 0) {
    snprintf(why, why_size, "%s", strerror(errno));
    return 0;
  }
  t2s_ckpt_reader *r = t2s_ckpt_open(path, &e);
  if (r == NULL) {
    snprintf(why, why_size, "%s", e.msg);
    return 0;
  }
  /* a file cut short can still open: the header (iteration) must read too */
  int64_t iter = 0;
  int world = 0;
  int ok = t2s_ckpt_read_meta(r, &iter, &world, NULL, &e) == T2S_OK;
  if (!ok) snprintf(why, why_size, "%s", e.msg);
  *iteration = (long long)iter;
  t2s_ckpt_close(r);
  return ok;
}

int t2s_workdir_find_resume(const char *work_dir, char *path, size_t size, char *why, size_t why_size) {
  char reason[T2S_ERROR_MAX], scratch[T2S_ERROR_MAX], latest[1200];
  struct stat sb;
  if (why) why[0] = '\0';
  snprintf(latest, sizeof latest, "%s/latest.h5", work_dir);
  int had_latest = lstat(latest, &sb) == 0;
  long long latest_iter = -1, iter = -1;
  int latest_ok = had_latest && opens(latest, &latest_iter, reason, sizeof reason);
  if (had_latest && !latest_ok && why) snprintf(why, why_size, "%s was rejected: %s", latest, reason);
  /* A run killed between writing iter_N.h5 and re-pointing latest.h5 leaves latest.h5
   * one checkpoint behind: the newest iter_*.h5 that opens wins over it. */
  for (long long it = newest_iter_below(work_dir, LLONG_MAX); it > latest_iter;
       it = newest_iter_below(work_dir, it)) {
    snprintf(path, size, "%s/iter_%08lld.h5", work_dir, it);
    if (opens(path, &iter, scratch, sizeof scratch)) return 1;
    /* the newest rejection is the one worth telling */
    if (why && why[0] == '\0') snprintf(why, why_size, "%s was rejected: %s", path, scratch);
  }
  if (latest_ok) {
    snprintf(path, size, "%s", latest);
    return 1;
  }
  path[0] = '\0';
  return 0;
}

static long long line_iteration(const char *line) {
  const char *p = strstr(line, "\"iteration\":");
  return p ? atoll(p + strlen("\"iteration\":")) : -1;
}

/* Copies the lines of `path` with iteration <= keep_to into `tmp`; counts the others. */
static t2s_status filter_lines(const char *path, const char *tmp, int64_t keep_to, int64_t *dropped,
                               t2s_error *err) {
  FILE *in = fopen(path, "r"), *out = fopen(tmp, "w");
  if (in == NULL || out == NULL) {
    int e = errno;
    if (in) fclose(in);
    if (out) fclose(out);
    return t2s_error_set(err, T2S_ERR_IO, "cannot rewrite %s (through %s): %s", path, tmp, strerror(e));
  }
  char *line = NULL;
  size_t cap = 0;
  while (getline(&line, &cap, in) != -1) {
    if (line_iteration(line) > keep_to) (*dropped)++;
    else fputs(line, out);
  }
  free(line);
  fclose(in);
  int bad = fflush(out) != 0 || fsync(fileno(out)) != 0;
  if (fclose(out) != 0) bad = 1;
  if (bad) {
    unlink(tmp);
    return t2s_error_set(err, T2S_ERR_IO, "cannot write %s: %s (is the disk full?)", tmp, strerror(errno));
  }
  return T2S_OK;
}

t2s_status t2s_workdir_open_metrics(const char *work_dir, int fresh, int64_t resume_iter, FILE **out,
                                    int64_t *dropped, t2s_error *err) {
  char path[1200], tmp[1300];
  snprintf(path, sizeof path, "%s/metrics.jsonl", work_dir);
  *dropped = 0;
  *out = NULL;
  struct stat sb;
  if (!fresh && stat(path, &sb) == 0 && sb.st_size > 0) {
    snprintf(tmp, sizeof tmp, "%s/.metrics.jsonl.%d", work_dir, (int)getpid());
    t2s_status st = filter_lines(path, tmp, resume_iter, dropped, err);
    if (st) return st;
    if (rename(tmp, path) != 0) {
      int e = errno;
      unlink(tmp);
      return t2s_error_set(err, T2S_ERR_IO, "cannot replace %s: %s", path, strerror(e));
    }
  }
  *out = fopen(path, fresh ? "w" : "a");
  if (*out == NULL) return t2s_error_set(err, T2S_ERR_IO, "cannot open %s for appending: %s", path, strerror(errno));
  return T2S_OK;
}
