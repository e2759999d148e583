// ctest-labels: e2e
// ctest-timeout: 600
/* End-to-end runs of the real executables on a tiny synthetic benchmark:
 * - resume: 5 iterations, stop, resume to 10 gives bit-identical parameters,
 *   teacher, optimizer state and method state to 10 uninterrupted iterations;
 * - SIGTERM mid-run saves a checkpoint and exits 0;
 * - a diverging run stops on the first non-finite loss term with a message naming
 *   it and leaves the last good checkpoint alone;
 * - t2sda_eval writes the mmseg JSON keys;
 * - a bad config key and a missing shard fail with messages naming them. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data/shard.h"
#include "tests/harness.h"

static char bin[512], src[512], dir[512], common[4096], loud[4096];

/* Lines of a file that contain needle. */

static int exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

/* h5diff exits 0 when the two objects hold identical values */
static void same_group(const char *a, const char *b, const char *group) {
  int rc = t2s_test_run("h5diff -q %s %s %s %s", a, b, group, group);
  CHECK_MSG(rc == 0, "%s differs between %s and %s", group, a, b);
}

static void resume_is_exact(void) {
  CHECK(t2s_test_run("%s/t2sda_train %s work_dir=%s/full > %s/full.log 2>&1", bin, common, dir, dir) == 0);
  CHECK(t2s_test_run("%s/t2sda_train %s work_dir=%s/split --stop-after 5 > %s/split1.log 2>&1", bin, common, dir, dir) == 0);
  char p[1024];
  snprintf(p, sizeof p, "%s/split/iter_00000005.h5", dir);
  CHECK_MSG(exists(p), "--stop-after 5 left no %s", p);
  CHECK(t2s_test_run("%s/t2sda_train %s work_dir=%s/split --resume auto > %s/split2.log 2>&1", bin, common, dir, dir) == 0);
  snprintf(p, sizeof p, "%s/split2.log", dir);
  CHECK(t2s_test_file_contains(p, "resumed from") && t2s_test_file_contains(p, "at iteration 5"));
  char a[1024], b[1024];
  snprintf(a, sizeof a, "%s/full/iter_00000010.h5", dir);
  snprintf(b, sizeof b, "%s/split/iter_00000010.h5", dir);
  const char *groups[] = {"/params", "/buffers", "/ema", "/optim", "/state"};
  for (int i = 0; i < 5; i++) same_group(a, b, groups[i]);
  /* and the check can fail: iteration 5 differs from 10 */
  snprintf(b, sizeof b, "%s/split/iter_00000005.h5", dir);
  CHECK(t2s_test_run("h5diff -q %s %s /params /params > /dev/null 2>&1", a, b) != 0);
  /* the latest link points at the newest checkpoint */
  snprintf(p, sizeof p, "%s/split/latest.h5", dir);
  char target[256] = {0};
  CHECK(readlink(p, target, sizeof target - 1) > 0 && strcmp(target, "iter_00000010.h5") == 0);
}

static void sigterm_saves(void) {
  char wd[600], log[700];
  snprintf(wd, sizeof wd, "%s/term", dir);
  snprintf(log, sizeof log, "%s/term.log", dir);
  pid_t pid = fork();
  if (pid == 0) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "exec %s/t2sda_train %s work_dir=%s runner.max_iters=100000 > %s 2>&1", bin,
             common, wd, log);
    execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
    _exit(127);
  }
  /* wait until it trains (a metrics line), then ask it to stop */
  char metrics[700];
  snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", wd);
  for (int i = 0; i < 600 && !t2s_test_file_contains(metrics, "\"iteration\": 3"); i++) usleep(100000);
  CHECK_MSG(t2s_test_file_contains(metrics, "\"iteration\""), "the run never logged an iteration (see %s)", log);
  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "SIGTERM: exit status %d", status);
  CHECK(t2s_test_file_contains(log, "saving a checkpoint"));
  CHECK_MSG(t2s_test_file_contains(log, "t2sda_train: interrupted at iteration") && !t2s_test_file_contains(log, "done at iteration"),
            "the last line after SIGTERM does not say interrupted (see %s)", log);
  char latest[700];
  snprintf(latest, sizeof latest, "%s/latest.h5", wd);
  CHECK_MSG(exists(latest), "no checkpoint after SIGTERM");
}

static void nan_stops_cleanly(void) {
  /* 5 good iterations leave a checkpoint; then the test hook T2S_TEST_POISON_LOSS makes
   * the ClassMix loss NaN at iteration 7 (a real divergence depends on the CPU's
   * numerics: an absurd lr diverges on one machine and not on another) */
  char wd[600];
  snprintf(wd, sizeof wd, "%s/nan", dir);
  CHECK(t2s_test_run("%s/t2sda_train %s work_dir=%s --stop-after 5 > %s/nan1.log 2>&1", bin, common, wd, dir) == 0);
  CHECK(t2s_test_run("cp %s/iter_00000005.h5 %s/good5.h5", wd, dir) == 0);
  int rc = t2s_test_run("T2S_TEST_POISON_LOSS=mix@7 %s/t2sda_train %s work_dir=%s --resume auto runner.max_iters=200 "
                        "> %s/nan2.log 2>&1", bin, common, wd, dir);
  char log[700];
  snprintf(log, sizeof log, "%s/nan2.log", dir);
  CHECK_MSG(rc != 0 && rc < 128, "a run with a NaN loss exited %d", rc);
  CHECK_MSG(t2s_test_file_contains(log, "iteration 7: loss_mix (ClassMix cross-entropy) is not finite"),
            "the message does not name the term and iteration (see %s)", log);
  char p[700], good[700];
  snprintf(p, sizeof p, "%s/iter_00000005.h5", wd);
  snprintf(good, sizeof good, "%s/good5.h5", dir);
  CHECK_MSG(t2s_test_run("cmp -s %s %s", p, good) == 0, "the last good checkpoint %s was changed", p);
  snprintf(p, sizeof p, "%s/iter_00000007.h5", wd);
  CHECK_MSG(!exists(p), "a checkpoint of the poisoned iteration was written: %s", p);
  /* the hook is checked: a malformed value is refused, not ignored */
  CHECK(t2s_test_run("T2S_TEST_POISON_LOSS=mix7 %s/t2sda_train %s work_dir=%s --resume auto > %s/nan4.log 2>&1",
                     bin, common, wd, dir) != 0);
  /* the good checkpoint still loads and resumes */
  CHECK(t2s_test_run("%s/t2sda_train %s work_dir=%s --resume auto --stop-after 1 > %s/nan3.log 2>&1", bin, common, wd, dir) == 0);
  snprintf(p, sizeof p, "%s/nan3.log", dir);
  CHECK_MSG(t2s_test_file_contains(p, "at iteration 5"), "the resume did not start from the good checkpoint (see %s)", p);
}

/* Checks made before the first iteration: data sets against the model, and a work_dir
 * that already holds a run. */
static void start_checks(void) {
  char wd[600], log[700], p[700];
  snprintf(wd, sizeof wd, "%s/start", dir);
  snprintf(log, sizeof log, "%s/start1.log", dir);
  /* 11-class shards under a 19-class model: refused before training, naming both */
  int rc = t2s_test_run("%s/t2sda_train %s work_dir=%s model.num_classes=19 > %s 2>&1", bin, common, wd, log);
  CHECK_MSG(rc == 1, "model.num_classes=19 on 11-class shards: exit %d (see %s)", rc, log);
  CHECK_MSG(t2s_test_file_contains(log, "data.source.shards") && t2s_test_file_contains(log, "has 11 classes") &&
            t2s_test_file_contains(log, "model.num_classes is 19") && t2s_test_file_contains(log, "model.num_classes=11"),
            "see %s", log);
  CHECK_MSG(t2s_test_count_lines(log, "saved checkpoint") == 0, "it trained before refusing (see %s)", log);
  /* the image count of each domain is printed at start */
  snprintf(log, sizeof log, "%s/start2.log", dir);
  CHECK(t2s_test_run("%s/t2sda_train %s work_dir=%s --stop-after 1 > %s 2>&1", bin, loud, wd, log) == 0);
  CHECK_MSG(t2s_test_file_contains(log, "data: 24 source images (1 shard(s)), 24 target images (1 shard(s)), 6 validation images"),
            "see %s", log);
  /* the same work_dir again without --resume: refused, the checkpoint kept */
  snprintf(log, sizeof log, "%s/start3.log", dir);
  snprintf(p, sizeof p, "%s/iter_00000001.h5", wd);
  CHECK(t2s_test_run("cp %s %s/start_good.h5", p, dir) == 0);
  rc = t2s_test_run("%s/t2sda_train %s work_dir=%s --stop-after 1 > %s 2>&1", bin, common, wd, log);
  CHECK_MSG(rc == 1 && t2s_test_file_contains(log, "already holds a run") && t2s_test_file_contains(log, "--resume auto") &&
            t2s_test_file_contains(log, "--overwrite"), "a second fresh start in %s: exit %d (see %s)", wd, rc, log);
  CHECK(t2s_test_run("cmp -s %s %s/start_good.h5", p, dir) == 0);
  /* --overwrite starts over: metrics.jsonl holds the new run only */
  CHECK(t2s_test_run("%s/t2sda_train %s work_dir=%s --overwrite --stop-after 2 > %s 2>&1", bin, common, wd, log) == 0);
  snprintf(p, sizeof p, "%s/metrics.jsonl", wd);
  CHECK_MSG(t2s_test_count_lines(p, "\"iteration\": 1,") == 1, "metrics.jsonl after --overwrite repeats iteration 1");
}

/* A damaged latest.h5: resume auto says why it passed it over, takes the older
 * checkpoint, and metrics.jsonl does not repeat the iterations trained again. */
static void damaged_latest(void) {
  char wd[600], log[700], p[700];
  snprintf(wd, sizeof wd, "%s/damaged", dir);
  CHECK(t2s_test_run("%s/t2sda_train %s work_dir=%s > %s/damaged1.log 2>&1", bin, common, wd, dir) == 0);
  /* latest.h5 -> iter_00000010.h5, cut short as by a full disk */
  CHECK(t2s_test_run("truncate -s 3000 %s/iter_00000010.h5", wd) == 0);
  snprintf(log, sizeof log, "%s/damaged2.log", dir);
  CHECK(t2s_test_run("%s/t2sda_train %s work_dir=%s --resume auto --stop-after 2 > %s 2>&1", bin, common, wd, log) == 0);
  CHECK_MSG(t2s_test_file_contains(log, "WARNING: resume auto: ") && t2s_test_file_contains(log, "latest.h5 was rejected: "),
            "no warning about the damaged latest.h5 (see %s)", log);
  CHECK_MSG(t2s_test_file_contains(log, "resumed from ") && t2s_test_file_contains(log, "iter_00000005.h5 at iteration 5"), "see %s", log);
  snprintf(p, sizeof p, "%s/metrics.jsonl", wd);
  for (int it = 1; it <= 7; it++) {
    char key[64];
    snprintf(key, sizeof key, "\"iteration\": %d,", it);
    CHECK_MSG(t2s_test_count_lines(p, key) == 1, "metrics.jsonl has %d lines of iteration %d, expected 1", t2s_test_count_lines(p, key), it);
  }
  CHECK_MSG(t2s_test_count_lines(p, "\"iteration\": 8,") == 0, "metrics.jsonl keeps iteration 8 of the abandoned run");
}

/* Temporary files of writers killed mid-write (kill -9 during a checkpoint, the latest.h5
 * link or the metrics cut-back) are removed at the next start; a live writer's are kept. */
static void stale_temporaries(void) {
  char wd[600], log[700];
  snprintf(wd, sizeof wd, "%s/damaged", dir);
  pid_t gone = fork();
  if (gone == 0) _exit(0);
  waitpid(gone, NULL, 0);
  const char *dead_names[] = {"iter_00000012.h5.tmp.%ld", ".latest.%ld", ".metrics.jsonl.%ld"};
  for (int k = 0; k < 3; k++) {
    char name[64];
    snprintf(name, sizeof name, dead_names[k], (long)gone);
    CHECK(t2s_test_run("head -c 1000 /dev/zero > %s/%s", wd, name) == 0);
  }
  /* pid 1 is alive: its file must stay */
  CHECK(t2s_test_run("head -c 1000 /dev/zero > %s/iter_00000012.h5.tmp.1", wd) == 0);
  snprintf(log, sizeof log, "%s/stale.log", dir);
  CHECK(t2s_test_run("%s/t2sda_train %s work_dir=%s --resume auto --stop-after 1 > %s 2>&1", bin, loud, wd, log) == 0);
  for (int k = 0; k < 3; k++) {
    char name[64];
    snprintf(name, sizeof name, dead_names[k], (long)gone);
    CHECK_MSG(t2s_test_run("test ! -e %s/%s", wd, name) == 0, "stale %s was not removed (see %s)", name, log);
  }
  CHECK_MSG(t2s_test_run("test -e %s/iter_00000012.h5.tmp.1", wd) == 0, "a live process's temporary file was removed");
  CHECK_MSG(t2s_test_file_contains(log, "removed stale ") && t2s_test_file_contains(log, "which is gone"),
            "the removal is not reported (see %s)", log);
}

static void eval_writes_json(void) {
  char out[700];
  snprintf(out, sizeof out, "%s/eval.json", dir);
  CHECK(t2s_test_run("%s/t2sda_eval %s --checkpoint %s/full/iter_00000010.h5 --out %s --mode slide "
                "evaluation.crop=[24,24] evaluation.stride=[16,16] > %s/eval.log 2>&1",
                bin, common, dir, out, dir) == 0);
  /* colour prediction images of the first N validation images */
  CHECK(t2s_test_run("%s/t2sda_eval %s --checkpoint %s/full/iter_00000010.h5 --out %s/eval2.json --quiet "
                     "--save-predictions 2 work_dir=%s/preds > %s/eval2.log 2>&1", bin, common, dir, dir, dir, dir) == 0);
  CHECK_MSG(t2s_test_run("test $(ls %s/preds/predictions_00000010_student_whole/*.png | wc -l) -eq 2", dir) == 0,
            "expected 2 prediction PNGs in %s/preds/predictions_00000010_student_whole", dir);
  CHECK(t2s_test_file_contains(out, "\"mIoU\"") && t2s_test_file_contains(out, "\"aAcc\"") && t2s_test_file_contains(out, "\"IoU.road\"") &&
        t2s_test_file_contains(out, "\"iteration\": 10"));
  char log[700];
  snprintf(log, sizeof log, "%s/eval.log", dir);
  CHECK(t2s_test_file_contains(log, "mIoU "));
}

/* An 11-class validation shard of n 48x48 images; image bad_image gets label 20 (not a
 * class, not the ignore index) at one pixel. */
static void write_val_shard(const char *path, int n, int bad_image) {
  t2s_shard_meta m;
  memset(&m, 0, sizeof m);
  m.num_classes = 11;
  m.ignore_index = 255;
  for (int c = 0; c < 11; c++) snprintf(m.class_names[c], T2S_CLASS_NAME_MAX, "c%d", c);
  snprintf(m.domain, sizeof m.domain, "e2e");
  snprintf(m.split, sizeof m.split, "val");
  m.has_label = 1;
  m.height = m.width = 48;
  t2s_error err = {0};
  t2s_shard_writer *w = t2s_shard_writer_open(path, &m, 1, &err);
  CHECK_MSG(w != NULL, "%s", err.msg);
  if (w == NULL) return;
  static uint8_t rgb[48 * 48 * 3], lab[48 * 48];
  for (int i = 0; i < n; i++) {
    for (int p = 0; p < 48 * 48; p++) lab[p] = (uint8_t)(p % 11);
    if (i == bad_image) lab[100] = 20;
    char name[32];
    snprintf(name, sizeof name, "val%d", i);
    CHECK(t2s_shard_writer_add(w, name, rgb, lab, &err) == T2S_OK);
  }
  CHECK_MSG(t2s_shard_writer_commit(w, &err) == T2S_OK, "%s", err.msg);
}

static void eval_inputs(void) {
  char log[700], ckpt[700], p[700];
  snprintf(log, sizeof log, "%s/evalin.log", dir);
  snprintf(ckpt, sizeof ckpt, "%s/full/iter_00000010.h5", dir);
  /* the checkpoint alone: its stored config; outputs named by iteration, model, mode */
  CHECK(t2s_test_run("%s/t2sda_eval %s --which teacher > %s 2>&1", bin, ckpt, log) == 0);
  CHECK_MSG(t2s_test_file_contains(log, "config stored in the checkpoint") && t2s_test_file_contains(log, "mIoU "), "see %s", log);
  snprintf(p, sizeof p, "%s/full/eval_00000010_teacher_whole.json", dir);
  CHECK_MSG(exists(p) && t2s_test_file_contains(p, "\"iteration\": 10"), "no %s (see %s)", p, log);
  /* progress and ETA of the evaluation */
  CHECK_MSG(t2s_test_file_contains(log, "evaluation: 6/6 (100%)") && t2s_test_file_contains(log, "eta "), "no progress line in %s", log);
  /* a PyTorch file points to the converter */
  CHECK(t2s_test_run("touch %s/model.pth", dir) == 0);
  CHECK(t2s_test_run("%s/t2sda_eval %s/model.pth > %s 2>&1", bin, dir, log) == 2);
  CHECK_MSG(t2s_test_file_contains(log, "t2sda_convert import"), "see %s", log);
  /* --help anywhere on the line, for both executables */
  CHECK(t2s_test_run("%s/t2sda_eval %s --help > %s 2>&1", bin, ckpt, log) == 0 && t2s_test_file_contains(log, "usage: t2sda_eval"));
  CHECK(t2s_test_run("%s/t2sda_train %s --help > %s 2>&1", bin, common, log) == 0 && t2s_test_file_contains(log, "usage: t2sda_train"));
  /* labels that are neither a class nor the ignore index: refused, naming the image */
  snprintf(p, sizeof p, "%s/badval-00000-of-00001.h5", dir);
  write_val_shard(p, 3, 1);
  int rc = t2s_test_run("%s/t2sda_eval %s --quiet 'data.val.shards=%s' > %s 2>&1", bin, ckpt, p, log);
  CHECK_MSG(rc == 1 && t2s_test_file_contains(log, "badval-00000-of-00001.h5 image 1 ('val1') has label 20") &&
            !t2s_test_file_contains(log, "mIoU"), "labels >= num_classes: exit %d (see %s)", rc, log);
  /* an empty validation set: an error, not nan metrics */
  snprintf(p, sizeof p, "%s/emptyval-00000-of-00001.h5", dir);
  write_val_shard(p, 0, -1);
  rc = t2s_test_run("%s/t2sda_eval %s --quiet 'data.val.shards=%s' --out %s/empty.json > %s 2>&1", bin, ckpt, p, dir, log);
  CHECK_MSG(rc == 1 && t2s_test_file_contains(log, "holds no images"), "empty validation set: exit %d (see %s)", rc, log);
  snprintf(p, sizeof p, "%s/empty.json", dir);
  CHECK(!exists(p));
}

/* Export for PyTorch leaves out the training-only projection head (mmseg's model has no
 * proj_head, so strict=True loading would fail on it); inspect shows the run. */
static void export_and_inspect(void) {
  char ckpt[700], log[700];
  snprintf(ckpt, sizeof ckpt, "%s/full/iter_00000010.h5", dir);
  snprintf(log, sizeof log, "%s/export.log", dir);
  CHECK(t2s_test_run("%s/t2sda_convert export %s %s/exp.safetensors > /dev/null 2>&1 && "
                     "%s/t2sda_convert inspect %s/exp.safetensors > %s 2>&1", bin, ckpt, dir, bin, dir, log) == 0);
  CHECK_MSG(t2s_test_file_contains(log, "decode_head.") && !t2s_test_file_contains(log, "proj_head."), "proj_head exported (see %s)", log);
  CHECK(t2s_test_run("%s/t2sda_convert export %s %s/exp2.safetensors --with-proj-head > /dev/null 2>&1 && "
                     "%s/t2sda_convert inspect %s/exp2.safetensors > %s 2>&1", bin, ckpt, dir, bin, dir, log) == 0);
  CHECK_MSG(t2s_test_file_contains(log, "proj_head."), "--with-proj-head: no proj_head (see %s)", log);
  CHECK(t2s_test_run("%s/t2sda_convert inspect %s > %s 2>&1", bin, ckpt, log) == 0);
  CHECK_MSG(t2s_test_file_contains(log, "iteration 10, written by 1 rank(s)") && t2s_test_file_contains(log, "stored config") &&
            t2s_test_file_contains(log, "  name: \"synthetic_t2sda\""), "inspect does not show the run (see %s)", log);
}

static void bad_inputs(void) {
  char log[700];
  snprintf(log, sizeof log, "%s/bad.log", dir);
  CHECK(t2s_test_run("%s/t2sda_train %s uda.alhpa=0.5 > %s 2>&1", bin, common, log) != 0);
  CHECK(t2s_test_file_contains(log, "uda.alhpa") && t2s_test_file_contains(log, "uda.alpha"));
  CHECK(t2s_test_run("%s/t2sda_train %s work_dir=%s/bad 'data.target.shards=%s/nowhere-*.h5' > %s 2>&1", bin, common,
                dir, dir, log) != 0);
  CHECK_MSG(t2s_test_file_contains(log, "data.target.shards") && t2s_test_file_contains(log, "nowhere"), "see %s", log);
  /* resuming on another data set would silently read other images: refused */
  CHECK(t2s_test_run("%s/t2sda_synth %s/other --source 12 --target 0 --val 0 --size 48 48 --seed 4 > /dev/null", bin, dir) == 0);
  CHECK(t2s_test_run("%s/t2sda_train %s work_dir=%s/split --resume auto runner.max_iters=12 "
                "'data.source.shards=%s/other/source-*.h5' > %s 2>&1", bin, common, dir, dir, log) != 0);
  CHECK_MSG(t2s_test_file_contains(log, "resume: data.source.shards now has 12 images"), "see %s", log);
}

/* T2S_COMM_TIMEOUT (set by the launch templates) replaces dist.timeout: the run says so,
 * and the checkpoint's config records the limit in force; a value that is not a number
 * of seconds is refused naming the variable. */
static void env_timeout(void) {
  char wd[600], log[700];
  snprintf(wd, sizeof wd, "%s/env_timeout", dir);
  snprintf(log, sizeof log, "%s/env_timeout1.log", dir);
  int rc = t2s_test_run("T2S_COMM_TIMEOUT=10min %s/t2sda_train %s work_dir=%s --stop-after 1 > %s 2>&1", bin, common, wd, log);
  CHECK_MSG(rc == 1 && t2s_test_file_contains(log, "T2S_COMM_TIMEOUT='10min'") &&
            t2s_test_file_contains(log, "not a number of seconds"), "T2S_COMM_TIMEOUT=10min: exit %d (see %s)", rc, log);
  snprintf(log, sizeof log, "%s/env_timeout2.log", dir);
  CHECK(t2s_test_run("T2S_COMM_TIMEOUT=42 %s/t2sda_train %s work_dir=%s --stop-after 1 dist.timeout=77 > %s 2>&1", bin,
                     loud, wd, log) == 0);
  CHECK_MSG(t2s_test_file_contains(log, "T2S_COMM_TIMEOUT=42 from the environment replaces dist.timeout=77"), "see %s", log);
  CHECK(t2s_test_run("%s/t2sda_convert inspect %s/iter_00000001.h5 > %s 2>&1", bin, wd, log) == 0);
  CHECK_MSG(t2s_test_file_contains(log, "timeout: 42"), "the stored config lacks the limit in force (see %s)", log);
}

int main(void) {
  if (t2s_test_e2e_dirs("e2e_work", bin, sizeof bin, src, sizeof src, dir, sizeof dir) != 0) return 1;
  CHECK(t2s_test_run("%s/t2sda_synth %s/data --source 24 --target 24 --val 6 --size 48 48 --seed 3 > %s/synth.log 2>&1",
                bin, dir, dir) == 0);
  char synth_log[700];
  snprintf(synth_log, sizeof synth_log, "%s/synth.log", dir);
  CHECK_MSG(t2s_test_file_contains(synth_log, "t2sda_synth: source: 24/24 (100%)") && t2s_test_file_contains(synth_log, "eta "),
            "t2sda_synth shows no progress (see %s)", synth_log);
  snprintf(common, sizeof common,
           "%s/configs/synthetic_t2sda.yaml --quiet device=cpu 'data.source.shards=%s/data/source-*.h5' "
           "'data.target.shards=%s/data/target-*.h5' 'data.val.shards=%s/data/val-*.h5' model.num_classes=11 "
           "data.crop=[32,32] data.workers_per_gpu=1 model.backbone.depth=18 model.backbone.base_channels=4 "
           "model.backbone.stem_channels=8 uda.t2s.proj_dim=16 uda.t2s.num_queries=16 uda.t2s.num_negatives=8 "
           "uda.imnet_feature_dist_lambda=0.005 runner.max_iters=10 lr_config.warmup_iters=3 log.interval=1 "
           "evaluation.interval=0 checkpoint.interval=5 checkpoint.max_keep=3 data.rare_class_sampling.min_pixels=100",
           src, dir, dir, dir);
  /* the same options without --quiet, to read the start-up lines */
  snprintf(loud, sizeof loud, "%s", common);
  char *q = strstr(loud, " --quiet");
  if (q) memmove(q, q + 8, strlen(q + 8) + 1);
  start_checks();
  damaged_latest();
  stale_temporaries();
  resume_is_exact();
  eval_writes_json();
  eval_inputs();
  export_and_inspect();
  sigterm_saves();
  nan_stops_cleanly();
  bad_inputs();
  env_timeout();
  return t2s_test_finish("test_train_e2e");
}
