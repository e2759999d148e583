/* t2sda_train CONFIG [key.path=value ...] [--resume auto|PATH] [--overwrite] [--dump-config [--explain]] [--quiet]
 *             [--debug-syncs]
 * t2sda_train --config-reference   (docs/config.md: every key of the schema)
 *
 * Trains the experiment of CONFIG (one process, or one per GPU/CPU slot under
 * mpirun / srun). Prints the resolved config, then one progress line per
 * log.interval on rank 0; writes work_dir/metrics.jsonl; evaluates every
 * evaluation.interval; keeps iter_*.h5 (checkpoint.max_keep), latest.h5 and
 * best.h5. SIGTERM, SIGINT or SIGUSR1 saves a checkpoint and exits 0; the last line
 * then says "interrupted". To stop an mpirun job cleanly send SIGUSR1 to mpirun (it
 * forwards it to every rank and exits 0): SIGTERM to mpirun reaches the ranks too, and
 * they save, but mpirun then exits 1 (launch/templates/mpirun_workstation.sh and
 * slurm.sbatch therefore hand a SIGTERM they get to mpirun as SIGUSR1). A work_dir that already holds a run needs --resume or --overwrite.
 *
 * Test hook: T2S_TEST_POISON_LOSS=TERM@ITER (TERM: src, mix, fd or t2s) makes that loss
 * term NaN at iteration ITER, so that tests exercise the non-finite guard
 * deterministically (tests/test_train_e2e.c). T2S_TEST_CKPT_PAUSE_MS=N sleeps N ms
 * between the groups of every checkpoint write, so that tests/test_fault_kill.c can
 * kill -9 the process inside a write. Never set them for real runs. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launch/trainer.h"
#include "core/version.h"

static void on_signal(int sig) {
  (void)sig;
  t2s_trainer_request_stop();
}

/* docs/config.md is exactly this output; tests/check_config_reference.sh fails
 * when the file and the schema (launch/train_config.c) disagree. */
static int config_reference(void) {
  int n_rows = 0;
  const t2s_cfg_row *schema = t2s_train_config_schema(&n_rows);
  t2s_error err = {0};
  fputs("# Configuration reference\n\n"
        "<!-- Generated from the schema in launch/train_config.c by\n"
        "     build/bin/t2sda_train --config-reference > docs/config.md\n"
        "     Do not edit by hand: the test config_reference fails when this file differs. -->\n\n"
        "Every key `t2sda_train` and `t2sda_eval` accept. A dotted key is a nested YAML\n"
        "mapping (`optimizer.lr` is `lr:` under `optimizer:`) and also the name of a\n"
        "command-line override (`optimizer.lr=1e-3`). A key that is not listed, a value of\n"
        "the wrong type or outside \"allowed\" stops the run with the file, line, column and\n"
        "key. Lists are YAML flow or block sequences; a string list also takes one string.\n"
        "Checks that involve several keys at once are in `t2s_train_config_load`\n"
        "(launch/train_config.c); `--dump-config` prints the resolved values.\n",
        stdout);
  if (t2s_config_reference(schema, n_rows, stdout, &err) != T2S_OK || fflush(stdout) != 0) {
    fprintf(stderr, "t2sda_train: %s\n", err.msg[0] ? err.msg : "writing the reference failed");
    return 1;
  }
  return 0;
}

static int usage(int code) {
  fprintf(code ? stderr : stdout,
          "usage: t2sda_train CONFIG.yaml [key.path=value ...] [--resume auto|PATH] [--overwrite] [--stop-after N]\n"
          "                   [--dump-config [--explain]] [--quiet] [--debug-syncs]\n"
          "  key.path=value   override a config key (same checks as the file), e.g. runner.max_iters=100\n"
          "  --resume auto    continue from the newest checkpoint in work_dir (fresh start if none)\n"
          "  --resume PATH    continue from this checkpoint\n"
          "  --overwrite      start fresh even if work_dir already holds a run (its checkpoints get\n"
          "                   replaced as the new run saves; metrics.jsonl is restarted)\n"
          "  --stop-after N   run N iterations, save a checkpoint and exit 0 (time-sliced jobs)\n"
          "  --dump-config    print the resolved config (after _base_ files and overrides) and exit\n"
          "  --explain        with --dump-config: end each key's line with where its value came\n"
          "                   from (# FILE:LINE, # override '...', # default)\n"
          "  --quiet          no resolved config or progress lines\n"
          "  --debug-syncs    after each iteration print its host synchronisations (CUDA read-backs and\n"
          "                   uploads) per source line\n"
          "       t2sda_train --config-reference   print every config key as Markdown (docs/config.md)\n"
          "Under mpirun / srun every rank must get the same config and overrides (checked at start).\n");
  return code;
}

/* The last line of a run says how it ended, so that a log tail tells a finished run
 * from an interrupted one. */
static void print_end(const t2s_trainer *t, const char *work_dir) {
  if (t->stop_reason == 1)
    printf("t2sda_train: interrupted at iteration %lld: checkpoint saved in %s (continue with --resume auto)\n",
           (long long)t->iter, work_dir);
  else if (t->stop_reason == 2)
    printf("t2sda_train: stopped after --stop-after at iteration %lld: checkpoint saved in %s "
           "(continue with --resume auto)\n", (long long)t->iter, work_dir);
  else
    printf("t2sda_train: done at iteration %lld (work_dir %s)\n", (long long)t->iter, work_dir);
}

int main(int argc, char **argv) {
  /* line-buffered even into a file or pipe: a run killed outright (kill -9, OOM) must
   * not lose the progress lines it printed last */
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc >= 2 && strcmp(argv[1], "--version") == 0) return puts(T2S_VERSION_LINE("t2sda_train")) == EOF;
  if (argc < 2) return usage(2);
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return usage(0);
  if (strcmp(argv[1], "--config-reference") == 0) return argc == 2 ? config_reference() : usage(2);
  const char *config = NULL, *resume = NULL;
  int dump = 0, explain = 0, quiet = 0, n_over = 0, overwrite = 0, debug_syncs = 0;
  long long stop_after = 0;
  char **overrides = calloc((size_t)argc, sizeof *overrides);
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--resume") == 0) {
      if (++i >= argc) return usage(2);
      resume = argv[i];
    } else if (strncmp(argv[i], "--resume=", 9) == 0) {
      resume = argv[i] + 9;
    } else if (strcmp(argv[i], "--stop-after") == 0) {
      if (++i >= argc || (stop_after = atoll(argv[i])) <= 0) {
        fprintf(stderr, "t2sda_train: --stop-after needs a positive number of iterations\n");
        return 2;
      }
    } else if (strcmp(argv[i], "--dump-config") == 0) {
      dump = 1;
    } else if (strcmp(argv[i], "--explain") == 0) {
      explain = 1;
    } else if (strcmp(argv[i], "--quiet") == 0) {
      quiet = 1;
    } else if (strcmp(argv[i], "--debug-syncs") == 0) {
      debug_syncs = 1;
    } else if (strcmp(argv[i], "--overwrite") == 0) {
      overwrite = 1;
    } else if (strncmp(argv[i], "--", 2) == 0) {
      fprintf(stderr, "t2sda_train: unknown option '%s'\n", argv[i]);
      return usage(2);
    } else if (config == NULL) {
      config = argv[i];
    } else if (strchr(argv[i], '=') != NULL) {
      overrides[n_over++] = argv[i];
    } else {
      fprintf(stderr, "t2sda_train: '%s' is neither an option nor a key.path=value override\n", argv[i]);
      return usage(2);
    }
  }
  if (config == NULL) return usage(2);
  if (explain && !dump) {
    fprintf(stderr, "t2sda_train: --explain only goes with --dump-config (add --dump-config)\n");
    return 2;
  }
  t2s_error err = {0};
  t2s_train_config *cfg = malloc(sizeof *cfg);
  if (cfg != NULL && explain) {
    int rc = t2s_train_config_explain(cfg, config, overrides, n_over, stdout, &err) == T2S_OK ? 0 : 1;
    if (rc) fprintf(stderr, "t2sda_train: %s\n", err.msg);
    free(cfg);
    free(overrides);
    return rc;
  }
  if (cfg == NULL || t2s_train_config_load(cfg, config, overrides, n_over, &err) != T2S_OK) {
    fprintf(stderr, "t2sda_train: %s\n", cfg ? err.msg : "out of memory");
    return 1;
  }
  if (dump) {
    int rc = t2s_train_config_dump(cfg, stdout, &err) == T2S_OK ? 0 : 1;
    if (rc) fprintf(stderr, "t2sda_train: %s\n", err.msg);
    return rc;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  /* mpirun and srun forward SIGUSR1 to the ranks and exit 0 when they do; mpirun itself
   * stopped with SIGTERM exits 1 even when every rank saved (launch/templates) */
  sigaction(SIGUSR1, &sa, NULL);

  if (resume && overwrite) {
    fprintf(stderr, "t2sda_train: --resume and --overwrite exclude each other: resume the run, or start it over\n");
    return 2;
  }
  t2s_train_opts opts = {resume, quiet, stop_after, overwrite, getenv("T2S_TEST_POISON_LOSS"), debug_syncs};
  t2s_trainer *t = calloc(1, sizeof *t);
  t2s_status st = t2s_trainer_init(t, cfg, &opts, &err);
  if (st == T2S_OK && t->comm.rank == 0 && !quiet) {
    printf("# resolved config (%s)\n", config);
    t2s_train_config_dump(cfg, stdout, &err);
    fflush(stdout);
  }
  if (st == T2S_OK) st = t2s_trainer_run(t, &err);
  int rank = t->comm_up ? t->comm.rank : 0;
  if (st != T2S_OK) {
    fprintf(stderr, "t2sda_train: rank %d: %s\n", rank, err.msg);
    if (t->comm_up && t->comm.world > 1) t2s_dist_abort(&t->comm, err.msg);
  } else if (rank == 0) {
    print_end(t, cfg->work_dir);
  }
  t2s_trainer_free(t);
  free(t);
  free(cfg);
  free(overrides);
  return st == T2S_OK ? 0 : 1;
}
