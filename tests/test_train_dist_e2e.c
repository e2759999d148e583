// ctest-labels: dist e2e
// ctest-timeout: 300
/* t2sda_train under mpirun, the failures and stops of a multi-rank run:
 * - ranks started with different configs (mpirun -np 1 A : -np 1 A optimizer.lr=0.05)
 *   are refused at start, naming the rank and the first differing key;
 * - SIGUSR1 to mpirun (forwarded to every rank) saves a checkpoint and mpirun exits 0,
 *   the last line saying "interrupted";
 * - that 2-rank checkpoint resumed on 1 rank says that the global batch changed. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/harness.h"

#define MPIRUN "mpirun --oversubscribe --allow-run-as-root --bind-to none"

static char bin[512], src[512], dir[512], common[4096];

static void different_configs(void) {
  char log[700];
  snprintf(log, sizeof log, "%s/mismatch.log", dir);
  int rc = t2s_test_run(MPIRUN " -np 1 %s/t2sda_train %s work_dir=%s/mismatch : -np 1 %s/t2sda_train %s "
                        "work_dir=%s/mismatch optimizer.lr=0.05 > %s 2>&1", bin, common, dir, bin, common, dir, log);
  CHECK_MSG(rc != 0, "ranks with different configs: mpirun exited 0 (see %s)", log);
  CHECK_MSG(t2s_test_file_contains(log, "rank 1 of 2") && t2s_test_file_contains(log, "the resolved config differs from rank 0's") &&
            t2s_test_file_contains(log, "lr: 0.05"), "the message does not name rank 1 and the key (see %s)", log);
  char p[700];
  snprintf(p, sizeof p, "%s/mismatch/metrics.jsonl", dir);
  CHECK_MSG(!t2s_test_file_contains(p, "\"iteration\""), "the mismatched ranks trained");
}

static void usr1_stops_and_resumes_on_one_rank(void) {
  char wd[600], log[700], metrics[700];
  snprintf(wd, sizeof wd, "%s/usr1", dir);
  snprintf(log, sizeof log, "%s/usr1.log", dir);
  snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", wd);
  pid_t pid = fork();
  if (pid == 0) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "exec " MPIRUN " -np 2 %s/t2sda_train %s work_dir=%s runner.max_iters=100000 > %s 2>&1",
             bin, common, wd, log);
    execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
    _exit(127);
  }
  for (int i = 0; i < 1200 && !t2s_test_file_contains(metrics, "\"iteration\": 3,"); i++) usleep(100000);
  CHECK_MSG(t2s_test_file_contains(metrics, "\"iteration\""), "the 2-rank run never logged an iteration (see %s)", log);
  kill(pid, SIGUSR1);
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "SIGUSR1 to mpirun: exit status %d (see %s)", status, log);
  CHECK_MSG(t2s_test_file_contains(log, "t2sda_train: interrupted at iteration"), "see %s", log);
  char p[700];
  snprintf(p, sizeof p, "%s/latest.h5", wd);
  struct stat sb;
  CHECK_MSG(stat(p, &sb) == 0, "no checkpoint after SIGUSR1");
  /* on 1 rank: the global batch halves, and the run says so */
  snprintf(log, sizeof log, "%s/one_rank.log", dir);
  CHECK(t2s_test_run("%s/t2sda_train %s work_dir=%s --resume auto --stop-after 1 > %s 2>&1", bin, common, wd, log) == 0);
  CHECK_MSG(t2s_test_file_contains(log, "was written by 2 rank(s) (global batch 2); this run has 1 rank(s) (global batch 1)"),
            "no note of the changed global batch (see %s)", log);
}

int main(void) {
  const char *b = getenv("T2S_BINARY_DIR"), *s = getenv("T2S_SOURCE_DIR");
  if (!b || !s) return 1;
  if (system("command -v mpirun > /dev/null 2>&1") != 0) {
    fprintf(stderr, "mpirun not found: skipped\n");
    return 77;
  }
  setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 0);
  snprintf(bin, sizeof bin, "%s/bin", b);
  snprintf(src, sizeof src, "%s", s);
  snprintf(dir, sizeof dir, "%s/tests/train_dist_work", b);
  t2s_test_run("rm -rf %s && mkdir -p %s", dir, dir);
  CHECK(t2s_test_run("%s/t2sda_synth %s/data --source 12 --target 12 --val 2 --size 48 48 --seed 6 > /dev/null", bin, dir) == 0);
  snprintf(common, sizeof common,
           "%s/configs/synthetic_t2sda.yaml --quiet device=cpu 'data.source.shards=%s/data/source-*.h5' "
           "'data.target.shards=%s/data/target-*.h5' 'data.val.shards=%s/data/val-*.h5' model.num_classes=11 "
           "data.crop=[32,32] data.workers_per_gpu=1 data.samples_per_gpu=1 model.backbone.depth=18 "
           "model.backbone.base_channels=4 model.backbone.stem_channels=8 uda.t2s.proj_dim=16 "
           "uda.t2s.num_queries=16 uda.t2s.num_negatives=8 data.rare_class_sampling.min_pixels=100 "
           "evaluation.interval=0 log.interval=1 checkpoint.interval=0",
           src, dir, dir, dir);
  different_configs();
  usr1_stops_and_resumes_on_one_rank();
  return t2s_test_finish("test_train_dist_e2e");
}
