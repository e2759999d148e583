// ctest-labels: dist
// ctest-timeout: 240
/* Failures stop the whole job, with a message naming the rank, instead of hanging.
 * The test (a plain process) starts `mpirun -np 2` on itself in three child modes and
 * checks each job's exit code, that it ended within 60 s, and its output:
 *   kill     rank 1 raises SIGKILL in the middle of a loop of all-reduces;
 *   timeout  rank 1 never joins a collective: rank 0's deadline (2 s) expires, its
 *            error names rank 1 as the one that never arrived and the setting that
 *            allows more time, and goes to t2s_dist_abort, which stops rank 1 too;
 *   check    rank 1 "fails to open its data": t2s_dist_check_all gives every rank the
 *            message, and the job stops naming rank 1.
 * The 60 s bound is a hang guard, not a timing measurement. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dist/comm.h"
#include "tests/harness.h"

#define DEADLINE_S 60.0

static int child(const char *mode) {
  t2s_comm c;
  t2s_error err = {0};
  t2s_dist_cfg cfg = t2s_dist_default_cfg();
  cfg.timeout_s = strcmp(mode, "timeout") == 0 ? 2.0 : 50.0;
  cfg.timeout_setting = "the config key dist.timeout";
  if (t2s_dist_init(&c, &cfg, &err) != T2S_OK) return fprintf(stderr, "%s\n", err.msg), 3;
  t2s_status st = T2S_OK;
  if (strcmp(mode, "check") == 0) {
    int ok = c.rank != 1;
    st = t2s_dist_check_all(&c, ok ? T2S_OK : T2S_ERR_IO,
                            ok ? NULL : "cannot open data/source-00000-of-00002.h5", &err);
  } else {
    for (int it = 0; it < 100000 && st == T2S_OK; it++) {
      double x[64] = {0};
      if (it == 20 && c.rank == 1) {
        if (strcmp(mode, "kill") == 0) raise(SIGKILL);
        sleep(100); /* "timeout": stuck outside the collective */
      }
      st = t2s_dist_allreduce_f64(&c, x, 64, &err);
      usleep(1000);
    }
  }
  if (st != T2S_OK) t2s_dist_abort(&c, err.msg);
  t2s_dist_finalize(&c);
  return st == T2S_OK ? 0 : 1;
}

typedef struct job {
  int status;      /* waitpid status, or -1 when it had to be killed */
  double seconds;
  char out[65536];
} job;

/* Runs `mpirun -np 2 <self> mode` with stdout+stderr captured, killing it at the deadline. */
static void run_job(const char *self, const char *mode, job *j) {
  memset(j, 0, sizeof *j);
  int fd[2];
  if (pipe(fd) != 0) return (void)(j->status = -1);
  double start = t2s_dist_now();
  pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    dup2(fd[1], 1);
    dup2(fd[1], 2);
    close(fd[0]);
    setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 0);
    execlp("mpirun", "mpirun", "-np", "2", "--oversubscribe", "--allow-run-as-root", "--bind-to",
           "none", self, mode, (char *)NULL);
    perror("execlp mpirun");
    _exit(127);
  }
  close(fd[1]);
  size_t len = 0;
  int killed = 0;
  for (;;) {
    double left = DEADLINE_S - (t2s_dist_now() - start);
    if (left <= 0 && !killed) {
      kill(-pid, SIGKILL);
      killed = 1;
    }
    struct pollfd p = {fd[0], POLLIN, 0};
    int r = poll(&p, 1, left > 0 ? (int)(left * 1000) + 1 : 1000);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    ssize_t got = read(fd[0], j->out + len, sizeof j->out - 1 - len);
    if (got <= 0) break;
    len += (size_t)got;
    if (len >= sizeof j->out - 1) len = 0; /* keep the tail; messages come last */
  }
  close(fd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  j->seconds = t2s_dist_now() - start;
  j->status = killed ? -1 : status;
}

static void expect(const char *self, const char *mode, const char *needle1, const char *needle2) {
  job *j = malloc(sizeof *j);
  run_job(self, mode, j);
  int exited = j->status != -1 && WIFEXITED(j->status);
  int code = exited ? WEXITSTATUS(j->status) : -1;
  printf("%s: mpirun exit %d after %.1f s\n", mode, code, j->seconds);
  CHECK_MSG(j->status != -1, "%s: the job was still running after %.0f s (hang)", mode, DEADLINE_S);
  CHECK_MSG(code != 0, "%s: mpirun exited 0 although a rank failed", mode);
  CHECK_MSG(code != 127, "%s: mpirun could not be started", mode);
  CHECK_MSG(strstr(j->out, needle1) != NULL, "%s: output lacks '%s':\n%s", mode, needle1, j->out);
  CHECK_MSG(needle2 == NULL || strstr(j->out, needle2) != NULL, "%s: output lacks '%s':\n%s", mode,
            needle2, j->out);
  free(j);
}

int main(int argc, char **argv) {
  if (argc > 1) return child(argv[1]);
  if (system("command -v mpirun > /dev/null 2>&1") != 0) {
    fprintf(stderr, "mpirun not found: skipped\n");
    return 77;
  }
  if (getenv("OMPI_COMM_WORLD_SIZE") != NULL) {
    fprintf(stderr, "run this test as a plain process (it starts mpirun itself)\n");
    return 77;
  }
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return fprintf(stderr, "cannot find my own executable\n"), 1;
  self[n] = '\0';
  /* Open MPI: "mpirun noticed that process rank 1 with PID ... exited on signal 9". */
  expect(self, "kill", "rank 1", NULL);
  /* both ranks run here, so the silent rank's host is this one's */
  char host[64] = "", silent[160];
  gethostname(host, sizeof host - 1);
  snprintf(silent, sizeof silent, "did not complete within 2 s: rank 1 (host %s) never reached it", host);
  expect(self, "timeout", "rank 0 of 2", silent);
  expect(self, "timeout", "allow more time with the config key dist.timeout", NULL);
  expect(self, "check", "rank 1 of 2", "cannot open data/source-00000-of-00002.h5");
  return t2s_test_finish("test_dist_failure");
}
