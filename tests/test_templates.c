// ctest-labels: unit
/* The launch templates (launch/templates/) are run here, not only read:
 *  - the shell templates pass `bash -n`, and run against stand-in `srun` / `mpirun`
 *    executables (first on PATH) that record their arguments: the Slurm script must
 *    launch t2sda_train with the config and overrides through `srun --mpi=pmix` when
 *    the cluster's srun lists pmix, and through `mpirun -np $SLURM_NTASKS` (with the
 *    environment forwarded) when it does not; the workstation script through
 *    `mpirun -np $NP`; Slurm and the MPIJob pass --resume auto;
 *  - the Slurm script asks for --requeue and a SIGTERM before the time limit, and when
 *    it gets SIGTERM it hands SIGUSR1 to the launcher (which forwards it to the ranks:
 *    they save and exit 0) and requeues the job;
 *  - the Kubernetes MPIJob parses with libyaml and is consistent: kubeflow.org/v2beta1
 *    MPIJob, the launcher runs `mpirun -np (worker replicas x slotsPerWorker)` ...
 *    t2sda_train CONFIG.yaml with a config that exists in configs/, the workers ask for
 *    slotsPerWorker GPUs and run sshd, the ranks start in the volume (--wdir);
 *  - the MPIJob's Dockerfile (no docker engine here: checked statically) starts from
 *    Debian, installs the dependencies through tools/setup.sh, builds with CUDA, puts
 *    t2sda_train on PATH, installs sshd, and copies configs/ where the MPIJob reads
 *    its config.
 * A broken script and a broken YAML are fed to the same checks, which must reject them
 * (so the checks can fail). */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "tests/harness.h"

static char tmp[256];
static char src[1024];

static void write_file(const char *path, const char *text, int executable) {
  FILE *f = fopen(path, "w");
  CHECK_MSG(f != NULL, "cannot write %s", path);
  if (f == NULL) return;
  fputs(text, f);
  fclose(f);
  if (executable) chmod(path, 0755);
}

/* Reads the argument log of a stand-in into lines[] (one argument per line). */
static int read_log(const char *path, char lines[][256], int max) {
  FILE *f = fopen(path, "r");
  int n = 0;
  while (f && n < max && fgets(lines[n], 256, f)) {
    lines[n][strcspn(lines[n], "\n")] = '\0';
    n++;
  }
  if (f) fclose(f);
  return n;
}

static int find(char lines[][256], int n, const char *word) {
  for (int i = 0; i < n; i++)
    if (strcmp(lines[i], word) == 0) return i;
  return -1;
}

/* Stand-ins: each writes its name and then one argument per line to $tmp/log.
 * `srun --mpi=list` prints the plugin list given in $FAKE_MPI_LIST. */
static void make_shims(void) {
  char path[512];
  static const char *shim =
      "#!/bin/sh\n"
      "if [ \"$1\" = --mpi=list ]; then echo \"MPI plugin types are...\"; "
      "for p in $FAKE_MPI_LIST; do echo \"\t$p\"; done; exit 0; fi\n"
      "{ basename \"$0\"; for a in \"$@\"; do printf '%s\\n' \"$a\"; done; } > \"$SHIM_LOG\"\n"
      /* SHIM_HOLD: run like a job until SIGUSR1, which is recorded */
      "if [ -n \"$SHIM_HOLD\" ]; then trap 'echo USR1 > \"$SHIM_LOG.signal\"; exit 0' USR1; "
      "while :; do sleep 0.05; done; fi\n";
  static const char *scontrol = "#!/bin/sh\necho \"scontrol $*\" > \"$SHIM_LOG.scontrol\"\n";
  snprintf(path, sizeof path, "%s/srun", tmp);
  write_file(path, shim, 1);
  snprintf(path, sizeof path, "%s/mpirun", tmp);
  write_file(path, shim, 1);
  snprintf(path, sizeof path, "%s/scontrol", tmp);
  write_file(path, scontrol, 1);
}

/* Runs `bash SCRIPT my_exp.yaml runner.max_iters=5` with the stand-ins first on PATH
 * and `env` set; returns the recorded arguments. */
static int run_script(const char *script, const char *env, char lines[][256], int max) {
  char cmd[4096], log[512];
  snprintf(log, sizeof log, "%s/log", tmp);
  remove(log);
  snprintf(cmd, sizeof cmd,
           "cd '%s' && env PATH='%s':\"$PATH\" SHIM_LOG='%s' %s bash '%s/launch/templates/%s' "
           "my_exp.yaml runner.max_iters=5 > '%s/out' 2>&1",
           tmp, tmp, log, env, src, script, tmp);
  int rc = system(cmd);
  CHECK_MSG(rc == 0, "%s exited with %d (its output is in %s/out)", script, rc, tmp);
  return read_log(log, lines, max);
}

/* The launcher line ends with: t2sda_train my_exp.yaml runner.max_iters=5 [--resume auto]. */
static void check_runs_trainer(const char *what, char lines[][256], int n, int resumes) {
  int t = find(lines, n, "t2sda_train");
  CHECK_MSG(t > 0 && t + 2 < n && strcmp(lines[t + 1], "my_exp.yaml") == 0 &&
                strcmp(lines[t + 2], "runner.max_iters=5") == 0,
            "%s: expected `t2sda_train my_exp.yaml runner.max_iters=5` among its arguments", what);
  if (resumes)
    CHECK_MSG(t > 0 && t + 4 < n && strcmp(lines[t + 3], "--resume") == 0 && strcmp(lines[t + 4], "auto") == 0,
              "%s: expected --resume auto after the overrides (a requeued job continues)", what);
}

static int file_has(const char *file, const char *needle) {
  FILE *f = fopen(file, "r");
  char line[1024];
  int found = 0;
  while (f && !found && fgets(line, sizeof line, f)) found = strstr(line, needle) != NULL;
  if (f) fclose(f);
  return found;
}

/* SIGTERM to the Slurm script (Slurm's --signal=B:TERM) becomes SIGUSR1 to the launcher,
 * and the job is requeued. */
static void test_slurm_signal(const char *list) {
  char cmd[4096], log[512], sig[600], req[600];
  snprintf(log, sizeof log, "%s/log", tmp);
  snprintf(sig, sizeof sig, "%s.signal", log);
  snprintf(req, sizeof req, "%s.scontrol", log);
  remove(log);
  remove(sig);
  remove(req);
  snprintf(cmd, sizeof cmd,
           "cd '%s' && env PATH='%s':\"$PATH\" SHIM_LOG='%s' SHIM_HOLD=1 FAKE_MPI_LIST='%s' SLURM_NTASKS=2 "
           "SLURM_JOB_ID=77 bash '%s/launch/templates/slurm.sbatch' my_exp.yaml > '%s/out' 2>&1 & pid=$!; "
           "for i in $(seq 100); do [ -s '%s' ] && break; sleep 0.05; done; kill -TERM $pid; wait $pid",
           tmp, tmp, log, list, src, tmp, log);
  int rc = system(cmd);
  CHECK_MSG(rc == 0, "slurm.sbatch (%s) after SIGTERM: exit %d (see %s/out)", list, rc, tmp);
  CHECK_MSG(file_has(sig, "USR1"), "slurm.sbatch (%s): SIGTERM did not reach the launcher as SIGUSR1", list);
  CHECK_MSG(file_has(req, "scontrol requeue 77"), "slurm.sbatch (%s): the job was not requeued", list);
}

static void test_shell_templates(void) {
  char cmd[2048], lines[64][256];
  for (int i = 0; i < 2; i++) {
    const char *s = i ? "mpirun_workstation.sh" : "slurm.sbatch";
    snprintf(cmd, sizeof cmd, "bash -n '%s/launch/templates/%s'", src, s);
    CHECK_MSG(system(cmd) == 0, "bash -n %s", s);
  }
  /* the syntax check must catch a broken script */
  snprintf(cmd, sizeof cmd, "%s/broken.sh", tmp);
  write_file(cmd, "if true; then\n  echo unterminated\n", 0);
  snprintf(cmd, sizeof cmd, "bash -n '%s/broken.sh' 2>/dev/null", tmp);
  CHECK_MSG(system(cmd) != 0, "bash -n accepted a script with an unterminated if");

  make_shims();
  int n = run_script("slurm.sbatch", "FAKE_MPI_LIST='none pmi2 pmix' SLURM_NTASKS=4", lines, 64);
  CHECK_MSG(n > 0 && strcmp(lines[0], "srun") == 0, "slurm.sbatch with pmix: srun not called");
  CHECK(find(lines, n, "--mpi=pmix") > 0);
  check_runs_trainer("slurm.sbatch (srun)", lines, n, 1);

  n = run_script("slurm.sbatch", "FAKE_MPI_LIST='none pmi2' SLURM_NTASKS=4", lines, 64);
  CHECK_MSG(n > 0 && strcmp(lines[0], "mpirun") == 0, "slurm.sbatch without pmix: no mpirun");
  int np = find(lines, n, "-np");
  CHECK_MSG(np > 0 && strcmp(lines[np + 1], "4") == 0, "mpirun fallback: -np SLURM_NTASKS");
  int x = find(lines, n, "HDF5_USE_FILE_LOCKING");
  CHECK_MSG(x > 0 && strcmp(lines[x - 1], "-x") == 0, "mpirun fallback: -x HDF5_USE_FILE_LOCKING");
  check_runs_trainer("slurm.sbatch (mpirun fallback)", lines, n, 1);
  char file[1100];
  snprintf(file, sizeof file, "%s/launch/templates/slurm.sbatch", src);
  CHECK_MSG(file_has(file, "#SBATCH --requeue"), "slurm.sbatch lacks #SBATCH --requeue");
  CHECK_MSG(file_has(file, "#SBATCH --signal=B:TERM@120"), "slurm.sbatch lacks #SBATCH --signal=B:TERM@120");
  test_slurm_signal("pmix");
  test_slurm_signal("none");

  n = run_script("mpirun_workstation.sh", "NP=2", lines, 64);
  CHECK_MSG(n > 0 && strcmp(lines[0], "mpirun") == 0, "mpirun_workstation.sh: no mpirun");
  np = find(lines, n, "-np");
  CHECK_MSG(np > 0 && strcmp(lines[np + 1], "2") == 0, "mpirun_workstation.sh: -np $NP");
  check_runs_trainer("mpirun_workstation.sh", lines, n, 0);
}

/* ---- the MPIJob ---------------------------------------------------------------------- */

static yaml_node_t *get(yaml_document_t *d, yaml_node_t *map, const char *key) {
  if (map == NULL || map->type != YAML_MAPPING_NODE) return NULL;
  for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(d, p->key);
    if (k && k->type == YAML_SCALAR_NODE && strcmp((char *)k->data.scalar.value, key) == 0)
      return yaml_document_get_node(d, p->value);
  }
  return NULL;
}

/* Follows a path of mapping keys, "#0" meaning the first item of a sequence. */
static yaml_node_t *path(yaml_document_t *d, const char *const *keys, int n) {
  yaml_node_t *node = yaml_document_get_root_node(d);
  for (int i = 0; node && i < n; i++) {
    if (strcmp(keys[i], "#0") == 0)
      node = node->type == YAML_SEQUENCE_NODE && node->data.sequence.items.top > node->data.sequence.items.start
                 ? yaml_document_get_node(d, node->data.sequence.items.start[0]) : NULL;
    else node = get(d, node, keys[i]);
  }
  return node;
}

static const char *scalar(yaml_node_t *n) {
  return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : "";
}

static int load_yaml(const char *file, yaml_document_t *d) {
  FILE *f = fopen(file, "rb");
  if (f == NULL) return 0;
  yaml_parser_t p;
  yaml_parser_initialize(&p);
  yaml_parser_set_input_file(&p, f);
  int ok = yaml_parser_load(&p, d) && yaml_document_get_root_node(d) != NULL;
  if (!ok && p.error != YAML_NO_ERROR)
    fprintf(stderr, "(expected for the broken copy) %s: %s at line %zu\n", file,
            p.problem ? p.problem : "?", p.problem_mark.line + 1);
  yaml_parser_delete(&p);
  fclose(f);
  return ok;
}

static char mpijob_config[256];  /* the config path the MPIJob's launcher names */

static void check_launcher_command(yaml_document_t *d, int ranks) {
  static const char *const cmd_path[] = {"spec", "mpiReplicaSpecs", "Launcher", "template",
                                         "spec", "containers", "#0", "command"};
  yaml_node_t *cmd = path(d, cmd_path, 8);
  CHECK_MSG(cmd && cmd->type == YAML_SEQUENCE_NODE, "Launcher command is not a list");
  if (cmd == NULL || cmd->type != YAML_SEQUENCE_NODE) return;
  char args[64][256];
  int n = 0;
  for (yaml_node_item_t *it = cmd->data.sequence.items.start; it < cmd->data.sequence.items.top && n < 64; it++)
    snprintf(args[n++], 256, "%s", scalar(yaml_document_get_node(d, *it)));
  CHECK_MSG(n > 0 && strcmp(args[0], "mpirun") == 0, "the launcher runs '%s', not mpirun", args[0]);
  int np = find(args, n, "-np");
  CHECK_MSG(np > 0 && np + 1 < n && atoi(args[np + 1]) == ranks,
            "mpirun -np %s, expected worker replicas x slotsPerWorker = %d",
            np > 0 && np + 1 < n ? args[np + 1] : "?", ranks);
  CHECK(find(args, n, "HDF5_USE_FILE_LOCKING=FALSE") > 0);
  int t = find(args, n, "t2sda_train");
  CHECK_MSG(t > 0 && t + 1 < n && strstr(args[t + 1], ".yaml") != NULL,
            "the launcher must run t2sda_train CONFIG.yaml");
  int r = find(args, n, "--resume");
  CHECK_MSG(r > t && r + 1 < n && strcmp(args[r + 1], "auto") == 0, "the MPIJob must pass --resume auto");
  int w = find(args, n, "--wdir");
  CHECK_MSG(w > 0 && w < t && w + 1 < n && args[w + 1][0] == '/',
            "mpirun must start the ranks in the volume (--wdir /data) for relative config paths");
  if (t > 0 && t + 1 < n) {
    snprintf(mpijob_config, sizeof mpijob_config, "%s", args[t + 1]);
    char cfg[1200];
    const char *base = strrchr(args[t + 1], '/');
    snprintf(cfg, sizeof cfg, "%s/configs/%s", src, base ? base + 1 : args[t + 1]);
    CHECK_MSG(access(cfg, R_OK) == 0, "the MPIJob's config %s is not in configs/", cfg);
  }
}

static void test_mpijob(void) {
  char file[1100], broken[512];
  snprintf(file, sizeof file, "%s/launch/templates/mpijob.yaml", src);
  yaml_document_t d;
  int ok = load_yaml(file, &d);
  CHECK_MSG(ok, "%s does not parse as YAML", file);
  if (ok) {
    static const char *const api[] = {"apiVersion"}, *const kind[] = {"kind"},
                             *const slots[] = {"spec", "slotsPerWorker"},
                             *const reps[] = {"spec", "mpiReplicaSpecs", "Worker", "replicas"},
                             *const gpus[] = {"spec", "mpiReplicaSpecs", "Worker", "template", "spec",
                                              "containers", "#0", "resources", "limits",
                                              "nvidia.com/gpu"},
                             *const wcmd[] = {"spec", "mpiReplicaSpecs", "Worker", "template", "spec",
                                              "containers", "#0", "command", "#0"};
    CHECK(strcmp(scalar(path(&d, api, 1)), "kubeflow.org/v2beta1") == 0);
    CHECK(strcmp(scalar(path(&d, kind, 1)), "MPIJob") == 0);
    int s = atoi(scalar(path(&d, slots, 2))), r = atoi(scalar(path(&d, reps, 4)));
    CHECK_MSG(s > 0 && r > 0, "slotsPerWorker %d, Worker replicas %d", s, r);
    CHECK_MSG(atoi(scalar(path(&d, gpus, 10))) == s, "workers must ask for slotsPerWorker GPUs");
    CHECK_MSG(strstr(scalar(path(&d, wcmd, 9)), "sshd") != NULL, "workers must run sshd");
    check_launcher_command(&d, r * s);
    yaml_document_delete(&d);
  }
  /* the parser must reject a malformed copy (a mapping key indented under a list item) */
  snprintf(broken, sizeof broken, "%s/broken.yaml", tmp);
  write_file(broken, "apiVersion: kubeflow.org/v2beta1\nspec:\n  - a: 1\n   b: [2\n", 0);
  ok = load_yaml(broken, &d);
  CHECK_MSG(!ok, "libyaml accepted a malformed document");
  if (ok) yaml_document_delete(&d);
}

/* ---- the MPIJob's Dockerfile (static checks) ------------------------------------------ */

/* Instructions of a Dockerfile, continuation lines joined, comments dropped. */
static int dockerfile_instructions(const char *file, char out[][2048], int max) {
  FILE *f = fopen(file, "r");
  char line[1024];
  int n = 0, open = 0;
  while (f && fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = '\0';
    const char *p = line + strspn(line, " \t");
    if (!open && (*p == '#' || *p == '\0')) continue;
    if (!open && n < max) out[n++][0] = '\0';
    size_t len = strlen(line);
    open = len > 0 && line[len - 1] == '\\';
    if (open) line[len - 1] = ' ';
    if (n > 0) strncat(out[n - 1], p, 2047 - strlen(out[n - 1]));
  }
  if (f) fclose(f);
  return n;
}

/* Problems of a Dockerfile for the MPIJob (0: none), each printed. */
static int dockerfile_problems(const char *file, const char *config_path, int quiet) {
  static char ins[128][2048];
  int n = dockerfile_instructions(file, ins, 128), bad = 0;
  int from = 0, setup_copied = 0, setup_run = 0, cuda_build = 0, on_path = 0, sshd = 0, configs = 0;
  for (int i = 0; i < n; i++) {
    const char *s = ins[i];
    if (strncmp(s, "FROM debian:", 12) == 0) from = 1;
    if (strncmp(s, "COPY ", 5) == 0 && strstr(s, "tools/setup.sh")) setup_copied = 1;
    if (strncmp(s, "RUN ", 4) == 0 && strstr(s, "tools/setup.sh") && setup_copied) setup_run = 1;
    if (strncmp(s, "RUN ", 4) == 0 && strstr(s, "cmake") && strstr(s, "-DT2S_CUDA=ON")) cuda_build = 1;
    if (strncmp(s, "RUN ", 4) == 0 && strstr(s, "bin/t2sda_train") && strstr(s, "/usr/local/bin")) on_path = 1;
    if (strncmp(s, "RUN ", 4) == 0 && strstr(s, "openssh-server")) sshd = 1;
    char dest[512];
    if (sscanf(s, "COPY configs %511s", dest) == 1 || sscanf(s, "COPY configs/ %511s", dest) == 1) {
      size_t k = strlen(dest);
      while (k > 0 && dest[k - 1] == '/') dest[--k] = '\0';
      if (strncmp(config_path, dest, k) == 0 && config_path[k] == '/') configs = 1;
    }
  }
  const struct { int ok; const char *what; } req[] = {
      {from, "starts FROM debian:"},
      {setup_run, "installs the dependencies with tools/setup.sh (COPY it, then RUN it)"},
      {cuda_build, "builds with cmake -DT2S_CUDA=ON"},
      {on_path, "installs bin/t2sda_train into /usr/local/bin (the MPIJob runs it by name)"},
      {sshd, "installs openssh-server (the workers run sshd)"},
      {configs, "copies configs/ to where the MPIJob reads its config"}};
  for (size_t k = 0; k < sizeof req / sizeof req[0]; k++)
    if (!req[k].ok) {
      bad++;
      if (!quiet) fprintf(stderr, "%s: does not satisfy: %s (MPIJob config %s)\n", file, req[k].what, config_path);
    }
  return bad;
}

static void test_dockerfile(void) {
  char file[1100], broken[512], cmd[2400];
  snprintf(file, sizeof file, "%s/launch/templates/Dockerfile", src);
  CHECK_MSG(mpijob_config[0] == '/', "the MPIJob names no absolute config path");
  CHECK_MSG(dockerfile_problems(file, mpijob_config, 0) == 0, "%s is not fit for the MPIJob", file);
  /* the same checks reject a copy that skips tools/setup.sh */
  snprintf(broken, sizeof broken, "%s/Dockerfile.broken", tmp);
  snprintf(cmd, sizeof cmd, "grep -v 'setup.sh' '%s' > '%s'", file, broken);
  CHECK(system(cmd) == 0);
  CHECK_MSG(dockerfile_problems(broken, mpijob_config, 1) > 0, "a Dockerfile without tools/setup.sh passed");
  snprintf(cmd, sizeof cmd, "sed 's|^COPY configs .*|COPY configs /elsewhere|' '%s' > '%s'", file, broken);
  CHECK(system(cmd) == 0);
  CHECK_MSG(dockerfile_problems(broken, mpijob_config, 1) > 0, "a Dockerfile with the configs elsewhere passed");
}

int main(void) {
  const char *s = getenv("T2S_SOURCE_DIR");
  snprintf(src, sizeof src, "%s", s ? s : ".");
  snprintf(tmp, sizeof tmp, "/tmp/t2s_templates_XXXXXX");
  if (mkdtemp(tmp) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  test_shell_templates();
  test_mpijob();
  test_dockerfile();
  int rc = t2s_test_finish("test_templates");
  if (rc == 0) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
  }
  return rc;
}
