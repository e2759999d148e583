#include "launch/train_checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Test hook T2S_TEST_CKPT_PAUSE_MS=N (0..10000): sleeps N ms before each group of a
 * checkpoint write, so that a checkpoint takes long enough for a test's kill -9 to land
 * inside it (tests/test_fault_kill.c). Unset (the default): no pause. */
static void test_pause(void) {
  const char *v = getenv("T2S_TEST_CKPT_PAUSE_MS");
  long ms = v != NULL ? atol(v) : 0;
  if (ms <= 0 || ms > 10000) return;
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static t2s_status save_body(t2s_ckpt_writer *w, const t2s_train_snapshot *s, t2s_error *err) {
  test_pause();
  t2s_status st = t2s_ckpt_write_meta(w, s->iteration, s->world_size, s->config_yaml, err);
  test_pause();
  if (!st) st = t2s_ckpt_write_params(w, "params", &s->student->params, T2S_CKPT_TRAINABLE, err);
  test_pause();
  if (!st) st = t2s_ckpt_write_params(w, "buffers", &s->student->params, T2S_CKPT_BUFFERS, err);
  test_pause();
  if (!st && s->teacher)
    st = t2s_ckpt_write_params(w, "ema", &s->teacher->params, T2S_CKPT_TRAINABLE | T2S_CKPT_BUFFERS, err);
  if (!st && s->optim) {
    for (int k = 0; k < s->optim->n_state && !st; k++) {
      test_pause();
      st = t2s_ckpt_write_slot(w, t2s_optim_slot_name(s->optim, k), &s->student->params, s->optim->state[k], err);
    }
    if (!st) st = t2s_ckpt_write_scalar_i64(w, "/optim/step", s->optim->step, err);
  }
  test_pause();
  if (!st) st = t2s_ckpt_write_scalar_i64(w, "/state/iteration", s->iteration, err);
  if (!st) st = t2s_ckpt_write_scalar_f64(w, "/state/best_miou", s->best_miou, err);
  for (int i = 0; i < s->n_state && !st; i++) {
    char path[256];
    snprintf(path, sizeof path, "/state/%s", s->state[i].name);
    test_pause();
    st = t2s_ckpt_write_array(w, path, s->state[i].type, s->state[i].ndim, s->state[i].shape,
                              s->state[i].data, err);
  }
  return st;
}

t2s_status t2s_train_ckpt_save(const char *path, const t2s_train_snapshot *s, t2s_error *err) {
  t2s_ckpt_writer *w = t2s_ckpt_begin(path, err);
  if (w == NULL) return err->status;
  t2s_status st = save_body(w, s, err);
  if (st != T2S_OK) {
    t2s_ckpt_abort(w);
    return st;
  }
  return t2s_ckpt_commit(w, err);
}

t2s_status t2s_train_ckpt_load(const char *path, t2s_train_snapshot *s, char **config_yaml,
                               t2s_error *err) {
  t2s_ckpt_reader *r = t2s_ckpt_open(path, err);
  if (r == NULL) return err->status;
  int64_t iteration = 0;
  int world = 0;
  t2s_status st = t2s_ckpt_read_meta(r, &iteration, &world, config_yaml, err);
  if (!st) s->world_size = world;  /* the ranks that wrote it: a resume on another count says so */
  if (!st) st = t2s_ckpt_read_params(r, "params", &s->student->params, T2S_CKPT_TRAINABLE, err);
  if (!st) st = t2s_ckpt_read_params(r, "buffers", &s->student->params, T2S_CKPT_BUFFERS, err);
  if (!st && s->teacher)
    st = t2s_ckpt_read_params(r, "ema", &s->teacher->params, T2S_CKPT_TRAINABLE | T2S_CKPT_BUFFERS, err);
  if (!st && s->optim) {
    for (int k = 0; k < s->optim->n_state && !st; k++)
      st = t2s_ckpt_read_slot(r, t2s_optim_slot_name(s->optim, k), &s->student->params, s->optim->state[k], err);
    if (!st) st = t2s_ckpt_read_scalar_i64(r, "/optim/step", &s->optim->step, err);
  }
  if (!st) st = t2s_ckpt_read_scalar_i64(r, "/state/iteration", &s->iteration, err);
  if (!st) st = t2s_ckpt_read_scalar_f64(r, "/state/best_miou", &s->best_miou, err);
  for (int i = 0; i < s->n_state && !st; i++) {
    char p[256];
    snprintf(p, sizeof p, "/state/%s", s->state[i].name);
    st = t2s_ckpt_read_array(r, p, s->state[i].type, s->state[i].ndim, s->state[i].shape, s->state[i].data, err);
  }
  t2s_ckpt_close(r);
  return st;
}

static int is_iter_file(const char *name, int64_t *iter) {
  long long v;
  char tail[8];
  if (sscanf(name, "iter_%lld.%7s", &v, tail) != 2 || strcmp(tail, "h5") != 0) return 0;
  *iter = v;
  return 1;
}

/* Iterations of the iter_*.h5 files in dir, sorted ascending; returns the count. */
static int list_iters(const char *dir, int64_t **out) {
  DIR *d = opendir(dir);
  *out = NULL;
  if (d == NULL) return 0;
  int n = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    int64_t it;
    if (!is_iter_file(e->d_name, &it)) continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 16;
      int64_t *grown = realloc(*out, (size_t)cap * sizeof **out);
      if (grown == NULL) break;
      *out = grown;
    }
    (*out)[n++] = it;
  }
  closedir(d);
  for (int i = 1; i < n; i++)
    for (int j = i; j > 0 && (*out)[j - 1] > (*out)[j]; j--) {
      int64_t t = (*out)[j];
      (*out)[j] = (*out)[j - 1];
      (*out)[j - 1] = t;
    }
  return n;
}

t2s_status t2s_train_ckpt_rotate(const char *work_dir, const t2s_train_snapshot *s, int max_keep,
                                 char *written, size_t written_size, t2s_error *err) {
  char name[64], path[1200], link_tmp[1200], link_path[1200];
  snprintf(name, sizeof name, "iter_%08lld.h5", (long long)s->iteration);
  snprintf(path, sizeof path, "%s/%s", work_dir, name);
  t2s_status st = t2s_train_ckpt_save(path, s, err);
  if (st != T2S_OK) return st;
  if (written) snprintf(written, written_size, "%s", path);
  /* latest.h5 -> iter_N.h5, replaced atomically (symlink to a temp name, rename over) */
  snprintf(link_tmp, sizeof link_tmp, "%s/.latest.%d", work_dir, (int)getpid());
  snprintf(link_path, sizeof link_path, "%s/latest.h5", work_dir);
  unlink(link_tmp);
  if (symlink(name, link_tmp) != 0 || rename(link_tmp, link_path) != 0)
    return t2s_error_set(err, T2S_ERR_IO, "checkpoint %s was written but %s could not point at it: %s",
                         path, link_path, strerror(errno));
  int64_t *iters = NULL;
  int n = list_iters(work_dir, &iters);
  for (int i = 0; i < n - max_keep; i++) {
    if (iters[i] == s->iteration) continue;
    char old[1200];
    snprintf(old, sizeof old, "%s/iter_%08lld.h5", work_dir, (long long)iters[i]);
    unlink(old);
  }
  free(iters);
  return T2S_OK;
}
