// ctest-labels: e2e fault
// ctest-timeout: 300
/* A full disk under a real training run: the work_dir is a small tmpfs. After a first
 * checkpoint, the rest of the tmpfs is filled, and the resumed run's next checkpoint
 * write hits ENOSPC. Expected: a clear "No space left on device" message naming the
 * file, a clean non-zero exit (not a signal: HDF5 1.10.8 used to segfault at exit on
 * the file id a failed close left open), and the last good checkpoint untouched and
 * still resumable. Needs mount(2) (root, a sandbox that allows it): otherwise the test
 * is skipped with 77; test_checkpoint covers the writer with a file-size limit. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/harness.h"

static char bin[512], src[512], dir[512], mnt[600], common[4096];

static long long file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* Writes zeros into path until the file system is full (ENOSPC). */
static int fill_disk(const char *path) {
  FILE *f = fopen(path, "wb");
  if (f == NULL) return -1;
  static char block[4096];
  while (fwrite(block, 1, sizeof block, f) == sizeof block) {
  }
  int full = ferror(f) && errno == ENOSPC;
  fclose(f);
  return full ? 0 : -1;
}

static void full_disk_run(void) {
  char log[700], good[700], copy[700], filler[700];
  snprintf(good, sizeof good, "%s/wd/iter_00000002.h5", mnt);
  snprintf(copy, sizeof copy, "%s/iter_00000002.copy.h5", dir);
  snprintf(filler, sizeof filler, "%s/filler", mnt);
  snprintf(log, sizeof log, "%s/full1.log", dir);
  CHECK_MSG(t2s_test_run("%s/t2sda_train %s work_dir=%s/wd --stop-after 2 > %s 2>&1", bin, common, mnt, log) == 0,
            "the first run failed (see %s)", log);
  CHECK_MSG(file_size(good) > 0, "no first checkpoint %s", good);
  CHECK(t2s_test_run("cp %s %s", good, copy) == 0);
  CHECK_MSG(fill_disk(filler) == 0, "could not fill the tmpfs");

  /* a) no byte left: the resume's first write (the metrics.jsonl cut-back) fails */
  snprintf(log, sizeof log, "%s/full2.log", dir);
  int rc = t2s_test_run("%s/t2sda_train %s work_dir=%s/wd --resume auto --stop-after 2 > %s 2>&1", bin, common,
                        mnt, log);
  CHECK_MSG(rc != 0 && rc < 128, "the run on a full disk exited with %d (expected a clean non-zero exit, not a "
            "signal; see %s)", rc, log);
  CHECK_MSG(t2s_test_file_contains(log, "No space left on device"), "no ENOSPC message (see %s)", log);
  CHECK_MSG(t2s_test_file_contains(log, mnt), "the message does not name the file (see %s)", log);
  CHECK_MSG(t2s_test_run("cmp -s %s %s", good, copy) == 0, "the last good checkpoint changed");

  /* b) 128 KiB left: the run trains, and its next checkpoint (~800 KB) hits ENOSPC */
  CHECK(truncate(filler, file_size(filler) - (128 << 10)) == 0);
  snprintf(log, sizeof log, "%s/full3.log", dir);
  rc = t2s_test_run("%s/t2sda_train %s work_dir=%s/wd --resume auto --stop-after 2 > %s 2>&1", bin, common, mnt,
                    log);
  CHECK_MSG(rc != 0 && rc < 128, "the checkpoint write on a full disk exited with %d (expected a clean non-zero "
            "exit, not a signal; see %s)", rc, log);
  CHECK_MSG(t2s_test_file_contains(log, "No space left on device") && t2s_test_file_contains(log, ".h5"),
            "no ENOSPC message naming the checkpoint (see %s)", log);
  CHECK_MSG(t2s_test_run("cmp -s %s %s", good, copy) == 0, "the last good checkpoint changed");
  CHECK_MSG(t2s_test_run("ls %s/wd | grep -q tmp", mnt) != 0, "a temporary file was left in the work_dir");

  /* space again: the run resumes from the good checkpoint */
  unlink(filler);
  snprintf(log, sizeof log, "%s/full4.log", dir);
  CHECK_MSG(t2s_test_run("%s/t2sda_train %s work_dir=%s/wd --resume auto --stop-after 1 > %s 2>&1", bin, common,
                         mnt, log) == 0,
            "no resume after the disk was freed (see %s)", log);
  CHECK_MSG(t2s_test_file_contains(log, "at iteration 2"), "did not resume from iteration 2 (see %s)", log);
}

int main(void) {
  const char *b = getenv("T2S_BINARY_DIR");
  snprintf(mnt, sizeof mnt, "%s/tests/full_disk_work/mnt", b ? b : ".");
  t2s_test_run("umount %s 2>/dev/null", mnt); /* a mounted tmpfs left by a killed run */
  if (t2s_test_e2e_dirs("full_disk_work", bin, sizeof bin, src, sizeof src, dir, sizeof dir) != 0) return 1;
  t2s_test_run("mkdir -p %s", mnt);
  /* 3 MiB: room for the config, logs and a few checkpoints of the tiny network */
  if (mount("tmpfs", mnt, "tmpfs", 0, "size=3m") != 0) {
    printf("skipped: cannot mount a tmpfs here (%s); the file-size-limit case in test_checkpoint "
           "covers the writer\n", strerror(errno));
    return 77;
  }
  CHECK(t2s_test_run("%s/t2sda_synth %s/data --source 8 --target 8 --val 2 --size 48 48 --seed 5 > %s/synth.log 2>&1",
                     bin, dir, dir) == 0);
  snprintf(common, sizeof common,
           "%s/configs/synthetic_t2sda.yaml --quiet device=cpu 'data.source.shards=%s/data/source-*.h5' "
           "'data.target.shards=%s/data/target-*.h5' 'data.val.shards=%s/data/val-*.h5' model.num_classes=11 "
           "data.crop=[32,32] data.workers_per_gpu=1 model.backbone.depth=18 model.backbone.base_channels=4 "
           "model.backbone.stem_channels=8 uda.t2s.proj_dim=16 uda.t2s.num_queries=16 uda.t2s.num_negatives=8 "
           "runner.max_iters=10 lr_config.warmup_iters=3 log.interval=1 evaluation.interval=0 "
           "checkpoint.interval=2 checkpoint.max_keep=3 data.rare_class_sampling.min_pixels=100",
           src, dir, dir, dir);
  full_disk_run();
  if (umount(mnt) != 0) printf("note: could not unmount %s: %s\n", mnt, strerror(errno));
  return t2s_test_finish("test_full_disk");
}
