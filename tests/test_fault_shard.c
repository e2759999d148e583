// ctest-labels: e2e fault dist
// ctest-timeout: 300
/* A flipped byte inside the stored chunk of one source image, found mid-training:
 * - data.on_corrupt: error (the default) stops the run with the shard file, the /image
 *   dataset, the image index and what to do;
 * - data.on_corrupt: skip trains on, replaces the image by the next one of the data set,
 *   says so on stderr, prints and logs corrupt_skipped = 1, and does it the same way
 *   twice (bit-identical checkpoints of two runs), and the same way on 2 ranks x 1 image
 *   as on 1 rank x 2 (the replacement follows the image index, not the rank: the same
 *   losses, and the count is summed over the ranks);
 * - data.max_corrupt = 0 with skip stops at the first damaged image, naming the key.
 * The byte is flipped in the middle of the chunk's stored bytes, located with
 * H5Dget_chunk_info (the chunk's file offset and size), so it hits compressed pixel
 * data and not HDF5 metadata: the file still opens, only that image is damaged. */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/harness.h"

enum { BAD_IMAGE = 1 };

static char bin[512], src[512], dir[512], opts[4096];

/* Flips every bit of the byte in the middle of image i's chunk of /image; 0 on success. */
static int flip_chunk_byte(const char *path, int i) {
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t d = f < 0 ? -1 : H5Dopen2(f, "image", H5P_DEFAULT);
  hid_t space = d < 0 ? -1 : H5Dget_space(d);
  haddr_t addr = 0;
  hsize_t size = 0, offset[4] = {0};
  unsigned mask = 0;
  /* chunks are one image each: chunk number i holds image i (index order of the B-tree:
   * check its logical offset rather than trust the order) */
  int ok = space >= 0 && H5Dget_chunk_info(d, space, (hsize_t)i, offset, &mask, &addr, &size) >= 0 &&
           offset[0] == (hsize_t)i && size > 16;
  if (space >= 0) H5Sclose(space);
  if (d >= 0) H5Dclose(d);
  if (f >= 0) H5Fclose(f);
  if (!ok) {
    fprintf(stderr, "test_fault_shard: chunk %d of %s:/image not found\n", i, path);
    return 1;
  }
  FILE *fp = fopen(path, "r+b");
  long at = (long)(addr + size / 2);
  int c = fp && fseek(fp, at, SEEK_SET) == 0 ? fgetc(fp) : EOF;
  int rc = c == EOF || fseek(fp, at, SEEK_SET) != 0 || fputc(c ^ 0xFF, fp) == EOF;
  if (fp && fclose(fp) != 0) rc = 1;
  printf("flipped byte %ld of %s (image %d's chunk: %llu bytes at %llu)\n", at, path, i,
         (unsigned long long)size, (unsigned long long)addr);
  return rc;
}

/* The "loss" of the last line of a metrics.jsonl, NAN when there is none. */
static double last_loss(const char *path) {
  FILE *f = fopen(path, "r");
  char line[8192];
  double loss = NAN;
  while (f && fgets(line, sizeof line, f)) {
    const char *p = strstr(line, "\"loss\": ");
    if (p) loss = atof(p + 8);
  }
  if (f) fclose(f);
  return loss;
}

int main(void) {
  if (t2s_test_e2e_dirs("fault_shard_work", bin, sizeof bin, src, sizeof src, dir, sizeof dir) != 0) return 1;
  /* 4 source images, 2 per iteration, 2 iterations: one epoch of the uniform sampler
   * (data/sampler.h) reads every image exactly once, the damaged one included */
  CHECK(t2s_test_run("%s/t2sda_synth %s/data --source 4 --target 4 --val 2 --size 48 48 --seed 7 > %s/synth.log 2>&1",
                     bin, dir, dir) == 0);
  char shard[700];
  snprintf(shard, sizeof shard, "%s/data/source-00000-of-00001.h5", dir);
  CHECK(flip_chunk_byte(shard, BAD_IMAGE) == 0);
  snprintf(opts, sizeof opts,
           "%s/configs/synthetic_t2sda.yaml device=cpu 'data.source.shards=%s' "
           "'data.target.shards=%s/data/target-*.h5' 'data.val.shards=%s/data/val-*.h5' data.crop=[32,32] "
           "data.workers_per_gpu=1 model.backbone.depth=18 model.backbone.base_channels=4 "
           "model.backbone.stem_channels=8 uda.t2s.proj_dim=16 uda.t2s.num_queries=16 uda.t2s.num_negatives=8 "
           "runner.max_iters=2 log.interval=1 evaluation.interval=0 checkpoint.interval=0 "
           "data.rare_class_sampling.enabled=false",
           src, shard, dir, dir);

  /* the default: stop, naming file, dataset, index and the way out */
  char log[700], want[900];
  snprintf(log, sizeof log, "%s/error.log", dir);
  int rc = t2s_test_run("%s/t2sda_train %s work_dir=%s/error > %s 2>&1", bin, opts, dir, log);
  snprintf(want, sizeof want, "shard %s: /image[%d]: ", shard, BAD_IMAGE);
  CHECK_MSG(rc == 1, "a damaged image with data.on_corrupt: error: exit %d (see %s)", rc, log);
  CHECK_MSG(t2s_test_file_contains(log, want) && t2s_test_file_contains(log, "rebuild it") &&
            t2s_test_file_contains(log, "data.on_corrupt=skip"),
            "the error does not name '%s' and the remedies (see %s)", want, log);

  /* skip: trains on, reports the one damaged image */
  const char *runs[2] = {"skip1", "skip2"};
  for (int r = 0; r < 2; r++) {
    snprintf(log, sizeof log, "%s/%s.log", dir, runs[r]);
    rc = t2s_test_run("%s/t2sda_train %s work_dir=%s/%s data.on_corrupt=skip > %s 2>&1", bin, opts, dir, runs[r], log);
    CHECK_MSG(rc == 0 && t2s_test_file_contains(log, "done at iteration 2"), "skip run %d: exit %d (see %s)", r, rc, log);
    CHECK_MSG(t2s_test_count_lines(log, "damaged source image(s) replaced") == 1 && t2s_test_file_contains(log, want),
              "the replaced image is not reported once with its file and index (see %s)", log);
    CHECK_MSG(t2s_test_file_contains(log, "| 1 damaged skipped"), "the progress line lacks the count (see %s)", log);
    char metrics[700];
    snprintf(metrics, sizeof metrics, "%s/%s/metrics.jsonl", dir, runs[r]);
    /* both iterations are logged with the count; the last one's is 1 (the image is met once) */
    CHECK_MSG(t2s_test_count_lines(metrics, "\"corrupt_skipped\"") == 2 && t2s_test_count_lines(metrics, "\"iteration\": 2,") == 1 &&
              t2s_test_run("tail -n 1 %s | grep -q '\"corrupt_skipped\": 1}'", metrics) == 0,
              "metrics.jsonl does not log corrupt_skipped 1 (see %s)", metrics);
  }
  /* the replacement is a function of the image index: two runs are identical */
  rc = t2s_test_run("h5diff -q %s/skip1/iter_00000002.h5 %s/skip2/iter_00000002.h5 /params /params", dir, dir);
  CHECK_MSG(rc == 0, "two skip runs trained differently");

  /* 2 ranks x 1 image: the same replacement (same losses), the count summed over ranks */
  snprintf(log, sizeof log, "%s/skip_2x1.log", dir);
  rc = t2s_test_run("%s/tools/run_dist_test.sh 2 %s/t2sda_train %s work_dir=%s/skip_2x1 data.on_corrupt=skip "
                    "data.samples_per_gpu=1 > %s 2>&1", src, bin, opts, dir, log);
  char m1[700], m2[700];
  snprintf(m1, sizeof m1, "%s/skip1/metrics.jsonl", dir);
  snprintf(m2, sizeof m2, "%s/skip_2x1/metrics.jsonl", dir);
  double l1 = last_loss(m1), l2 = last_loss(m2);
  CHECK_MSG(rc == 0 && fabs(l1 - l2) <= 1e-4 * fabs(l1), "2 ranks x 1 (exit %d): loss %.6g, 1 rank x 2: %.6g (see %s)",
            rc, l2, l1, log);
  CHECK_MSG(t2s_test_run("tail -n 1 %s | grep -q '\"corrupt_skipped\": 1}'", m2) == 0 &&
            t2s_test_count_lines(log, "damaged source image(s) replaced") == 1, "2 ranks: the count is not 1 (see %s)", log);

  /* skip with no damage allowed: stops, naming the key */
  snprintf(log, sizeof log, "%s/max.log", dir);
  rc = t2s_test_run("%s/t2sda_train %s work_dir=%s/max data.on_corrupt=skip data.max_corrupt=0 > %s 2>&1", bin, opts,
                    dir, log);
  CHECK_MSG(rc == 1 && t2s_test_file_contains(log, "more than data.max_corrupt = 0") &&
            t2s_test_file_contains(log, "raise data.max_corrupt"), "max_corrupt 0: exit %d (see %s)", rc, log);

  /* and the check can fail: the same shard undamaged trains with nothing skipped */
  CHECK(t2s_test_run("%s/t2sda_synth %s/clean --source 4 --target 0 --val 0 --size 48 48 --seed 7 > /dev/null 2>&1",
                     bin, dir) == 0);
  snprintf(log, sizeof log, "%s/clean.log", dir);
  rc = t2s_test_run("%s/t2sda_train %s work_dir=%s/clean data.on_corrupt=skip 'data.source.shards=%s/clean/source-*.h5' "
                    "> %s 2>&1", bin, opts, dir, dir, log);
  CHECK_MSG(rc == 0 && !t2s_test_file_contains(log, "damaged"), "an undamaged shard: exit %d (see %s)", rc, log);
  /* ... and trains on image 1 itself, so the loss comparison above can tell images apart */
  snprintf(m2, sizeof m2, "%s/clean/metrics.jsonl", dir);
  l2 = last_loss(m2);
  CHECK_MSG(fabs(l1 - l2) > 1e-3 * fabs(l1), "the undamaged run's loss %.6g equals the skip run's %.6g", l2, l1);
  return t2s_test_finish("test_fault_shard");
}
