// ctest-labels: dist fault
// ctest-timeout: 300
/* SIGTERM to a 2-rank run started by launch/templates/mpirun_workstation.sh (what a job
 * manager or `kill` sends): the script hands it to mpirun as SIGUSR1, every rank stops
 * at the same iteration, rank 0 saves exactly one checkpoint, and the script exits 0;
 * `--resume auto` through the same script then continues from that checkpoint.
 * (SIGTERM to Open MPI 4.1's mpirun itself reaches the ranks, which save, but mpirun
 * then exits 1: the reason the script does not simply exec mpirun.) */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/harness.h"

static char bin[512], src[512], dir[512], opts[4096];

int main(void) {
  if (t2s_test_e2e_dirs("fault_mpirun_term_work", bin, sizeof bin, src, sizeof src, dir, sizeof dir) != 0) return 1;
  if (system("command -v mpirun > /dev/null 2>&1") != 0) {
    fprintf(stderr, "mpirun not found: skipped\n");
    return 77;
  }
  setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 0);
  CHECK(t2s_test_run("%s/t2sda_synth %s/data --source 8 --target 8 --val 2 --size 48 48 --seed 9 > /dev/null", bin, dir) == 0);
  snprintf(opts, sizeof opts,
           "%s/configs/synthetic_t2sda.yaml device=cpu 'data.source.shards=%s/data/source-*.h5' "
           "'data.target.shards=%s/data/target-*.h5' 'data.val.shards=%s/data/val-*.h5' data.crop=[32,32] "
           "data.workers_per_gpu=1 data.samples_per_gpu=1 model.backbone.depth=18 model.backbone.base_channels=4 "
           "model.backbone.stem_channels=8 uda.t2s.proj_dim=16 uda.t2s.num_queries=16 uda.t2s.num_negatives=8 "
           "data.rare_class_sampling.min_pixels=100 evaluation.interval=0 log.interval=1 checkpoint.interval=0 "
           "runner.max_iters=100000 work_dir=%s/run",
           src, dir, dir, dir, dir);
  char log[700], metrics[700];
  snprintf(log, sizeof log, "%s/term.log", dir);
  snprintf(metrics, sizeof metrics, "%s/run/metrics.jsonl", dir);
  pid_t pid = fork();
  if (pid == 0) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "NP=2 T2SDA_TRAIN=%s/t2sda_train exec bash %s/launch/templates/mpirun_workstation.sh %s > %s 2>&1",
             bin, src, opts, log);
    execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
    _exit(127);
  }
  for (int i = 0; i < 1200 && !t2s_test_file_contains(metrics, "\"iteration\": 3,"); i++) usleep(100000);
  CHECK_MSG(t2s_test_file_contains(metrics, "\"iteration\""), "the 2-rank run never logged an iteration (see %s)", log);
  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "SIGTERM to mpirun_workstation.sh: exit status %d (see %s)",
            status, log);
  CHECK_MSG(t2s_test_count_lines(log, "saved checkpoint") == 1 && t2s_test_count_lines(log, "stopping at iteration") == 1,
            "expected exactly one save after SIGTERM (see %s)", log);
  long long at = -1;
  FILE *f = fopen(log, "r");
  char line[8192];
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "t2sda_train: interrupted at iteration %lld", &at) == 1) break;
  if (f) fclose(f);
  CHECK_MSG(at > 0, "the last line does not say interrupted (see %s)", log);

  /* the same script with --resume auto continues from that checkpoint */
  char log2[700], want[64];
  snprintf(log2, sizeof log2, "%s/resume.log", dir);
  int rc = t2s_test_run("NP=2 T2SDA_TRAIN=%s/t2sda_train bash %s/launch/templates/mpirun_workstation.sh %s "
                        "--resume auto --stop-after 1 > %s 2>&1", bin, src, opts, log2);
  snprintf(want, sizeof want, "at iteration %lld", at);
  CHECK_MSG(rc == 0 && t2s_test_file_contains(log2, "resumed from") && t2s_test_file_contains(log2, want),
            "the resume (exit %d) did not continue from iteration %lld (see %s)", rc, at, log2);
  return t2s_test_finish("test_fault_mpirun_term");
}
