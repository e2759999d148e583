/* t2sda_train CONFIG [key.path=value ...] [--resume auto|PATH] [--dump-config] [--quiet]
 *
 * Trains the experiment of CONFIG (one process, or one per GPU/CPU slot under
 * mpirun / srun). Prints the resolved config, then one progress line per
 * log.interval on rank 0; writes work_dir/metrics.jsonl; evaluates every
 * evaluation.interval; keeps iter_*.h5 (checkpoint.max_keep), latest.h5 and
 * best.h5. SIGTERM or SIGINT saves a checkpoint and exits 0. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launch/trainer.h"

static void on_signal(int sig) {
  (void)sig;
  t2s_trainer_request_stop();
}

static int usage(int code) {
  fprintf(code ? stderr : stdout,
          "usage: t2sda_train CONFIG.yaml [key.path=value ...] [--resume auto|PATH] [--stop-after N] [--dump-config] [--quiet]\n"
          "  key.path=value   override a config key (same checks as the file), e.g. runner.max_iters=100\n"
          "  --resume auto    continue from the newest checkpoint in work_dir (fresh start if none)\n"
          "  --resume PATH    continue from this checkpoint\n"
          "  --stop-after N   run N iterations, save a checkpoint and exit 0 (time-sliced jobs)\n"
          "  --dump-config    print the resolved config and exit\n");
  return code;
}

int main(int argc, char **argv) {
  if (argc < 2) return usage(2);
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) return usage(0);
  const char *config = NULL, *resume = NULL;
  int dump = 0, quiet = 0, n_over = 0;
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
    } else if (strcmp(argv[i], "--quiet") == 0) {
      quiet = 1;
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
  t2s_error err = {0};
  t2s_train_config *cfg = malloc(sizeof *cfg);
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

  t2s_train_opts opts = {resume, quiet, stop_after};
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
  } else if (rank == 0 && !quiet) {
    printf("t2sda_train: done at iteration %lld (work_dir %s)\n", (long long)t->iter, cfg->work_dir);
  }
  t2s_trainer_free(t);
  free(t);
  free(cfg);
  free(overrides);
  return st == T2S_OK ? 0 : 1;
}
