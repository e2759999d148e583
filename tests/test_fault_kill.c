// ctest-labels: e2e fault
// ctest-timeout: 900
/* kill -9 of t2sda_train at random moments, most of them inside a checkpoint write,
 * each followed by `--resume auto`:
 * - every checkpoint under a final name (iter_*.h5, latest.h5) is whole: every
 *   dataset's bytes match its crc32 attribute, checked by h5py (tools/fuzz-free,
 *   independent of core/formats/checkpoint.c);
 * - the resume starts from the newest such checkpoint, and says so;
 * - the dead writer's `*.tmp.<pid>` files are removed at the next start, also while
 *   the killed process is still an unreaped zombie (every other round);
 * - the final run completes, and metrics.jsonl then holds every iteration exactly
 *   once, in order (the cut-back after each resume removed what the killed run
 *   logged past its checkpoint).
 * The kill moments come from a seeded generator (T2S_FAULT_SEED, default 17) and are
 * printed, so a failing round can be replayed. T2S_TEST_CKPT_PAUSE_MS (a test hook of
 * launch/train_checkpoint.c) slows each checkpoint write down to ~0.3 s so that
 * a kill can land inside one. */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/harness.h"

enum { ROUNDS = 24, MAX_ITERS = 100, PAUSE_MS = 25 };

static char bin[512], src[512], dir[512], wd[600], opts[4096];
static uint64_t rng_state;

static double uniform01(void) {  /* xorshift64*: reproducible from the printed seed */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return (double)((rng_state * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

static void sleep_ms(double ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)((ms - 1000 * (time_t)(ms / 1000)) * 1e6)};
  nanosleep(&ts, NULL);
}

/* Whether work_dir holds a file whose name ends in ".tmp.<pid>". */
static int has_tmp_of(long pid) {
  char suffix[32];
  snprintf(suffix, sizeof suffix, ".tmp.%ld", pid);
  size_t n = strlen(suffix);
  DIR *d = opendir(wd);
  struct dirent *e;
  int found = 0;
  while (d && (e = readdir(d)) != NULL) {
    size_t len = strlen(e->d_name);
    if (len > n && strcmp(e->d_name + len - n, suffix) == 0) found = 1;
  }
  if (d) closedir(d);
  return found;
}

/* The highest N of the iter_N.h5 files under their final names, or -1. */
static long long newest_iter(void) {
  DIR *d = opendir(wd);
  struct dirent *e;
  long long best = -1, it;
  char tail[8];
  while (d && (e = readdir(d)) != NULL)
    if (sscanf(e->d_name, "iter_%lld.%7s", &it, tail) == 2 && strcmp(tail, "h5") == 0 && it > best) best = it;
  if (d) closedir(d);
  return best;
}

static pid_t start_run(const char *log) {
  pid_t pid = fork();
  if (pid == 0) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "exec %s/t2sda_train %s work_dir=%s --resume auto > %s 2>&1", bin, opts, wd, log);
    execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
    _exit(127);
  }
  return pid;
}

/* Waits (at most ~120 s each) until the run has finished `skip` checkpoint writes and
 * begun the next one; 1 when seen, -1 when the run ended, 0 on time-out. */
static int wait_for_write(pid_t pid, int skip) {
  for (int w = 0; w <= skip; w++) {
    int i = 0;
    for (; i < 120000 && !has_tmp_of((long)pid); i++) {
      if (waitpid(pid, NULL, WNOHANG) == pid) return -1;
      sleep_ms(1);
    }
    if (i == 120000) return 0;
    for (i = 0; w < skip && i < 120000 && has_tmp_of((long)pid); i++) sleep_ms(1);
  }
  return 1;
}

/* h5py: every checkpoint under a final name opens and every dataset matches its crc32. */
static void check_checkpoints(int round) {
  char log[700];
  snprintf(log, sizeof log, "%s/verify_%02d.log", dir, round);
  int rc = t2s_test_run("/usr/bin/python3 %s/tests/verify_checkpoints.py %s > %s 2>&1", src, wd, log);
  CHECK_MSG(rc == 0, "round %d: a checkpoint under its final name is damaged (see %s)", round, log);
}

/* Round r's kill: mostly inside a checkpoint write (during the first, second or third
 * write after start, at a random point of its ~0.35 s); every eighth round at a random
 * moment of the first 0.4 s (start-up, the stale-file clean-up, the metrics cut-back),
 * and every eighth within 40 ms after a write ended (the latest.h5 link, the rotation
 * of old checkpoints, the next iteration). *what says which. */
static int kill_round(int round, pid_t pid, double *at_ms, const char **what) {
  if (round % 8 == 3) {
    *what = "start";
    *at_ms = uniform01() * 400;
  } else {
    int seen = wait_for_write(pid, (int)(uniform01() * 3));
    if (seen != 1) return seen;
    *what = "its checkpoint write began";
    *at_ms = uniform01() * 12 * PAUSE_MS;
    if (round % 8 == 7) {
      for (int i = 0; i < 120000 && has_tmp_of((long)pid); i++) sleep_ms(1);
      *what = "its checkpoint write ended";
      *at_ms = uniform01() * 40;
    }
  }
  sleep_ms(*at_ms);
  kill(pid, SIGKILL);
  return 1;
}

int main(void) {
  if (t2s_test_e2e_dirs("fault_kill_work", bin, sizeof bin, src, sizeof src, dir, sizeof dir) != 0) return 1;
  if (system("/usr/bin/python3 -c 'import h5py' > /dev/null 2>&1") != 0) {
    fprintf(stderr, "test_fault_kill: /usr/bin/python3 cannot import h5py (tools/setup.sh installs it)\n");
    return 77;
  }
  const char *seed_env = getenv("T2S_FAULT_SEED");
  unsigned long long seed = seed_env ? strtoull(seed_env, NULL, 10) : 17;
  rng_state = seed * 0x9E3779B97F4A7C15ull + 1;
  printf("test_fault_kill: seed %llu (replay with T2S_FAULT_SEED=%llu)\n", seed, seed);
  CHECK(t2s_test_run("%s/t2sda_synth %s/data --source 8 --target 8 --val 2 --size 48 48 --seed 5 > %s/synth.log 2>&1",
                     bin, dir, dir) == 0);
  snprintf(wd, sizeof wd, "%s/run", dir);
  snprintf(opts, sizeof opts,
           "%s/configs/synthetic_t2sda.yaml device=cpu 'data.source.shards=%s/data/source-*.h5' "
           "'data.target.shards=%s/data/target-*.h5' 'data.val.shards=%s/data/val-*.h5' data.crop=[32,32] "
           "data.workers_per_gpu=1 model.backbone.depth=18 model.backbone.base_channels=4 "
           "model.backbone.stem_channels=8 uda.t2s.proj_dim=16 uda.t2s.num_queries=16 uda.t2s.num_negatives=8 "
           "runner.max_iters=%d lr_config.warmup_iters=3 log.interval=1 evaluation.interval=0 "
           "checkpoint.interval=1 checkpoint.max_keep=2 data.rare_class_sampling.min_pixels=100",
           src, dir, dir, dir, MAX_ITERS);
  char pause[16];
  snprintf(pause, sizeof pause, "%d", PAUSE_MS);
  setenv("T2S_TEST_CKPT_PAUSE_MS", pause, 1);
  int inside_kills = 0, zombie_cleanups = 0;
  pid_t zombie = 0;
  for (int round = 0; round < ROUNDS; round++) {
    char log[700];
    snprintf(log, sizeof log, "%s/round_%02d.log", dir, round);
    long long expect = newest_iter();
    int zombie_had_tmp = zombie && has_tmp_of((long)zombie);
    pid_t pid = start_run(log);
    double at_ms = 0;
    const char *what = "";
    int k = kill_round(round, pid, &at_ms, &what);
    CHECK_MSG(k == 1, "round %d: the run %s before it could be killed (see %s)", round,
              k < 0 ? "ended" : "wrote no checkpoint", log);
    if (k != 1) break;
    int mid_write = has_tmp_of((long)pid);
    inside_kills += mid_write;
    printf("round %2d: killed pid %ld %.0f ms after %s%s; newest checkpoint before: %lld\n", round, (long)pid,
           at_ms, what, mid_write ? " (inside a write)" : "",
           expect);
    /* the previous round's victim was left unreaped over this whole round: its
     * temporary file must have gone anyway (a zombie writes nothing) */
    if (zombie) {
      CHECK_MSG(!zombie_had_tmp || !has_tmp_of((long)zombie),
                "round %d: the temporary file of zombie %ld was not removed (see %s)", round, (long)zombie, log);
      zombie_cleanups += zombie_had_tmp;
      waitpid(zombie, NULL, 0);
      zombie = 0;
    }
    if (round % 2 == 0) waitpid(pid, NULL, 0);
    else zombie = pid;
    /* the resume took the newest whole checkpoint there was (a kill before the resume
     * line leaves nothing to check) */
    char want[128];
    snprintf(want, sizeof want, "at iteration %lld", expect);
    if (t2s_test_file_contains(log, "resumed from"))
      CHECK_MSG(expect >= 0 && t2s_test_file_contains(log, want), "round %d: expected a resume %s (see %s)",
                round, want, log);
    else if (expect >= 0)
      CHECK_MSG(!t2s_test_file_contains(log, "# resolved config"),
                "round %d: checkpoint %lld existed but the run started fresh (see %s)", round, expect, log);
    check_checkpoints(round);
  }
  if (zombie) waitpid(zombie, NULL, 0);
  printf("test_fault_kill: %d of %d kills landed inside a checkpoint write; %d zombie temporaries removed\n",
         inside_kills, ROUNDS, zombie_cleanups);
  /* the hook works: most kills hit a write (this fails if the pause stops working) */
  CHECK_MSG(inside_kills >= ROUNDS / 2, "only %d of %d kills landed inside a checkpoint write", inside_kills, ROUNDS);
  CHECK_MSG(zombie_cleanups >= 1, "no round left a zombie writer's temporary file to clean up");

  /* the last run completes and leaves no debris */
  char log[700], metrics[700];
  snprintf(log, sizeof log, "%s/final.log", dir);
  unsetenv("T2S_TEST_CKPT_PAUSE_MS");
  CHECK(t2s_test_run("%s/t2sda_train %s work_dir=%s --resume auto > %s 2>&1", bin, opts, wd, log) == 0);
  char done[64];
  snprintf(done, sizeof done, "done at iteration %d", MAX_ITERS);
  CHECK_MSG(t2s_test_file_contains(log, done), "the final run did not complete (see %s)", log);
  CHECK_MSG(t2s_test_run("test -z \"$(ls -A %s | grep -e '\\.tmp\\.' -e '^\\.latest\\.' -e '^\\.metrics')\"", wd) == 0,
            "temporary files left in %s", wd);
  check_checkpoints(ROUNDS);
  snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", wd);
  int rc = t2s_test_run("/usr/bin/python3 -c \"import json,sys; it=[json.loads(l)['iteration'] for l in open('%s') "
                        "if 'loss' in l]; sys.exit(0 if it == list(range(1, %d)) else print(it) or 1)\"",
                        metrics, MAX_ITERS + 1);
  CHECK_MSG(rc == 0, "metrics.jsonl does not hold iterations 1..%d once each, in order", MAX_ITERS);
  return t2s_test_finish("test_fault_kill");
}
