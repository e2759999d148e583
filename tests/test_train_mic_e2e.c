// ctest-labels: e2e
// ctest-timeout: 900
/* MIC (uda.mic.enabled, docs/method.md step 5b) trains end to end on the synthetic
 * benchmark with both self-training methods:
 * - dacs + MIC and t2sda + MIC run 6 iterations; every metrics line has a finite,
 *   positive loss_mic (the pseudo-label threshold is lowered so that q > 0 from the start:
 *   with q = 0 every pixel weighs 0 and the loss would be 0 whatever the code does), the
 *   progress line shows it, and MIC changes the trained weights;
 * - with uda.mic.lambda 0 MIC's forward still runs but adds no gradient: dacs + MIC ends
 *   with the parameters of dacs alone, bit for bit (MIC is the last forward of a dacs
 *   iteration, so no random draw of another step moves);
 * - resume: 3 + 3 iterations equal 6 (parameters, EMA teacher, optimizer, state);
 * - a non-finite loss_mic stops the run with a message naming the term;
 * - source_only + MIC is refused by the config. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/harness.h"

static char bin[512], src[512], dir[512], common[4096];

static int run(const char *name, const char *extra, const char *flags) {
  return t2s_test_run("%s/t2sda_train %s %s work_dir=%s/%s %s > %s/%s.log 2>&1", bin, common, extra, dir, name,
                      flags, dir, name);
}

/* Every metrics line of work_dir `name` has a finite loss_mic > 0; returns the line count. */
static int check_loss_mic(const char *name) {
  char path[700], line[4096];
  snprintf(path, sizeof path, "%s/%s/metrics.jsonl", dir, name);
  FILE *f = fopen(path, "r");
  CHECK_MSG(f != NULL, "no %s", path);
  if (f == NULL) return 0;
  int lines = 0;
  while (fgets(line, sizeof line, f)) {
    if (!strstr(line, "\"iteration\"") || strstr(line, "mIoU")) continue;
    const char *p = strstr(line, "\"loss_mic\": ");
    CHECK_MSG(p != NULL, "%s: a line without loss_mic: %s", path, line);
    if (p == NULL) continue;
    double v = strtod(p + 12, NULL);
    CHECK_MSG(isfinite(v) && v > 0, "%s: loss_mic %g", path, v);
    lines++;
  }
  fclose(f);
  CHECK_MSG(lines == 6, "%s: %d iteration lines, want 6", path, lines);
  return lines;
}

static int same(const char *a, const char *b, const char *group) {
  return t2s_test_run("h5diff -q %s/%s/iter_00000006.h5 %s/%s/iter_00000006.h5 %s %s > /dev/null 2>&1", dir, a,
                      dir, b, group, group) == 0;
}

static void trains_and_logs(void) {
  CHECK(run("dacs_mic", "uda.type=dacs uda.mic.enabled=true", "") == 0);
  CHECK(run("t2sda_mic", "uda.type=t2sda uda.mic.enabled=true", "") == 0);
  CHECK(run("dacs", "uda.type=dacs", "") == 0);
  check_loss_mic("dacs_mic");
  check_loss_mic("t2sda_mic");
  char log[700];
  snprintf(log, sizeof log, "%s/t2sda_mic.log", dir);
  CHECK_MSG(t2s_test_file_contains(log, " mic ") && t2s_test_file_contains(log, " t2s "),
            "the progress line of t2sda + MIC does not show the mic term (see %s)", log);
  CHECK_MSG(!same("dacs", "dacs_mic", "/params"), "MIC did not change the trained parameters");
  /* lambda 0: the same parameters as without MIC, and the test can tell (above) */
  CHECK(run("dacs_mic0", "uda.type=dacs uda.mic.enabled=true uda.mic.lambda=0", "") == 0);
  CHECK_MSG(same("dacs", "dacs_mic0", "/params"), "MIC with lambda 0 changed the parameters");
}

static void resumes(void) {
  CHECK(run("split", "uda.type=t2sda uda.mic.enabled=true", "--stop-after 3") == 0);
  CHECK(run("split", "uda.type=t2sda uda.mic.enabled=true", "--resume auto") == 0);
  const char *groups[] = {"/params", "/ema", "/optim", "/state"};
  for (int i = 0; i < 4; i++)
    CHECK_MSG(same("t2sda_mic", "split", groups[i]), "t2sda + MIC resumed at 3 differs in %s", groups[i]);
}

static void refusals(void) {
  int rc = t2s_test_run("T2S_TEST_POISON_LOSS=mic@4 %s/t2sda_train %s uda.type=dacs uda.mic.enabled=true "
                        "work_dir=%s/poison > %s/poison.log 2>&1", bin, common, dir, dir);
  char log[700];
  snprintf(log, sizeof log, "%s/poison.log", dir);
  CHECK_MSG(rc != 0 && rc < 128 && t2s_test_file_contains(log, "loss_mic (MIC masked consistency) is not finite"),
            "a NaN loss_mic: exit %d, message not found (see %s)", rc, log);
  rc = run("source_only_mic", "uda.type=source_only uda.mic.enabled=true", "");
  snprintf(log, sizeof log, "%s/source_only_mic.log", dir);
  CHECK_MSG(rc != 0 && t2s_test_file_contains(log, "uda.mic.enabled") && t2s_test_file_contains(log, "uda.type"),
            "source_only + MIC: exit %d (see %s)", rc, log);
}

int main(void) {
  if (t2s_test_e2e_dirs("mic_e2e_work", bin, sizeof bin, src, sizeof src, dir, sizeof dir) != 0) return 1;
  CHECK(t2s_test_run("%s/t2sda_synth %s/data --source 24 --target 24 --val 4 --size 48 48 --seed 4 > /dev/null", bin,
                     dir) == 0);
  snprintf(common, sizeof common,
           "%s/configs/synthetic_t2sda.yaml device=cpu 'data.source.shards=%s/data/source-*.h5' "
           "'data.target.shards=%s/data/target-*.h5' 'data.val.shards=%s/data/val-*.h5' model.num_classes=11 "
           "data.crop=[32,32] data.workers_per_gpu=1 model.backbone.depth=18 model.backbone.base_channels=4 "
           "model.backbone.stem_channels=8 uda.t2s.proj_dim=16 uda.t2s.num_queries=16 uda.t2s.num_negatives=8 "
           "uda.pseudo_threshold=0.05 runner.max_iters=6 lr_config.warmup_iters=2 log.interval=1 "
           "evaluation.interval=0 checkpoint.interval=3 checkpoint.max_keep=3 data.rare_class_sampling.min_pixels=100",
           src, dir, dir, dir);
  trains_and_logs();
  resumes();
  refusals();
  return t2s_test_finish("test_train_mic_e2e");
}
