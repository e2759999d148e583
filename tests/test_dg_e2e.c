// ctest-labels: e2e
// ctest-timeout: 300
/* Domain generalisation end to end (uda.type t2sda_dg) on the synthetic benchmark with
 * two unseen styles (t2sda_synth --styles fog,night) and configs/synthetic_dg.yaml:
 * - each pseudo_target type (fourier_source, color_random, fourier_source+color_random)
 *   trains without target images; every log line has finite loss_st and loss_t2s > 0 and
 *   loss = loss_src + ce_weight loss_st + lambda loss_t2s; the evaluation line has
 *   mIoU.<set> for val, fog_val and night_val;
 * - the augmentation baseline (uda.t2s.lambda 0, no re-weighting) logs loss_st and no
 *   pull; with ce_weight 0 as well, the run is source_only's, loss for loss;
 * - a beta that restyles no frequency at the crop size is refused, naming the key. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/harness.h"

static char bin[512], src[512], dir[512], common[4096];

static int json_value(const char *line, const char *key, double *v) {
  char needle[96];
  snprintf(needle, sizeof needle, "\"%s\": ", key);
  const char *p = strstr(line, needle);
  if (p == NULL) return 0;
  *v = strtod(p + strlen(needle), NULL);
  return 1;
}

static int train(const char *name, const char *extra) {
  return t2s_test_run("%s/t2sda_train %s work_dir=%s/%s %s > %s/%s.log 2>&1", bin, common, dir, name, extra, dir, name);
}

/* Checks the loss lines of a run; pull: loss_t2s must be > 0, else exactly 0. Returns
 * the last loss_src (for comparisons) and counts evaluation lines with every set. */
static double check_run(const char *name, int pull, double ce_weight) {
  char path[700], line[65536];
  snprintf(path, sizeof path, "%s/%s/metrics.jsonl", dir, name);
  FILE *f = fopen(path, "r");
  CHECK_MSG(f != NULL, "no %s", path);
  int losses = 0, evals = 0;
  double last_src = NAN;
  while (f && fgets(line, sizeof line, f)) {
    double total, s = NAN, st = NAN, t2s = NAN, v;
    if (json_value(line, "mIoU", &v)) {
      CHECK_MSG(json_value(line, "mIoU.val", &v) && json_value(line, "mIoU.fog_val", &v) &&
                    json_value(line, "mIoU.night_val", &v),
                "%s: an evaluation line without every set's mIoU: %.200s", name, line);
      evals++;
      continue;
    }
    if (!json_value(line, "loss", &total)) continue;
    CHECK_MSG(json_value(line, "loss_src", &s) && json_value(line, "loss_st", &st) &&
                  json_value(line, "loss_t2s", &t2s),
              "%s: a loss line without loss_st: %s", name, line);
    CHECK_MSG(isfinite(st) && (ce_weight == 0 && !pull ? st == 0 : st > 0), "%s: loss_st %g", name, st);
    CHECK_MSG(pull ? t2s > 0 : t2s == 0, "%s: loss_t2s %g (pull %d)", name, t2s, pull);
    CHECK_MSG(fabs(total - (s + ce_weight * st + t2s)) < 1e-4 * (1 + fabs(total)),
              "%s: loss %g != loss_src %g + %g loss_st %g + loss_t2s %g", name, total, s, ce_weight, st, t2s);
    last_src = s;
    losses++;
  }
  if (f) fclose(f);
  CHECK_MSG(losses == 4 && evals == 1, "%s: %d loss lines, %d evaluation lines", name, losses, evals);
  return last_src;
}

int main(void) {
  if (t2s_test_e2e_dirs("dg_work", bin, sizeof bin, src, sizeof src, dir, sizeof dir) != 0) return 1;
  CHECK(t2s_test_run("%s/t2sda_synth %s/data --source 16 --target 0 --val 4 --size 48 48 --seed 5 --styles fog,night "
                     "> %s/synth.log 2>&1", bin, dir, dir) == 0);
  snprintf(common, sizeof common,
           "%s/configs/synthetic_dg.yaml device=cpu 'data.source.shards=%s/data/source-*.h5' "
           "'data.val_sets=[{name: val, shards: %s/data/val-*.h5}, {name: fog_val, shards: [%s/data/fog_val-*.h5]}, "
           "{name: night_val, shards: %s/data/night_val-*.h5}]' data.crop=[32,32] data.workers_per_gpu=1 "
           "model.backbone.base_channels=4 model.backbone.stem_channels=8 uda.t2s.proj_dim=16 runner.max_iters=4 "
           "lr_config.warmup_iters=2 log.interval=1 evaluation.interval=4 checkpoint.interval=0 "
           "data.rare_class_sampling.min_pixels=100 uda.pseudo_target.beta=0.1",
           src, dir, dir, dir, dir);
  static const char *const types[] = {"fourier_source", "color_random", "fourier_source+color_random"};
  for (int i = 0; i < 3; i++) {
    char name[64], extra[256];
    snprintf(name, sizeof name, "dg_%d", i);
    snprintf(extra, sizeof extra, "uda.type=t2sda_dg 'uda.pseudo_target.type=%s'", types[i]);
    CHECK_MSG(train(name, extra) == 0, "t2sda_dg with %s failed (see %s/%s.log)", types[i], dir, name);
    check_run(name, 1, 1.0);
    char log[700];
    snprintf(log, sizeof log, "%s/%s.log", dir, name);
    CHECK_MSG(t2s_test_file_contains(log, " st ") && t2s_test_file_contains(log, " t2s ") &&
                  t2s_test_file_contains(log, "night_val"),
              "%s: the progress line or the table lacks the DG terms", log);
  }
  CHECK(train("aug", "uda.type=t2sda_dg uda.pseudo_target.type=fourier_source uda.t2s.lambda=0 "
                     "uda.reweight.enabled=false uda.dg.ce_weight=0.5") == 0);
  check_run("aug", 0, 0.5);
  /* no stylised term at all: the source-only run, loss for loss */
  CHECK(train("aug0", "uda.type=t2sda_dg uda.pseudo_target.type=fourier_source uda.t2s.lambda=0 "
                      "uda.dg.ce_weight=0") == 0);
  CHECK(train("src", "uda.type=source_only") == 0);
  double a = check_run("aug0", 0, 0.0), b = check_run("src", 0, 0.0);
  CHECK_MSG(a == b, "t2sda_dg without its terms: loss_src %.9g, source_only %.9g", a, b);
  /* beta 0.01 at a 32-px crop: b = 0, the identity */
  CHECK(train("beta", "uda.type=t2sda_dg uda.pseudo_target.type=fourier_source uda.pseudo_target.beta=0.01") != 0);
  char log[700];
  snprintf(log, sizeof log, "%s/beta.log", dir);
  CHECK_MSG(t2s_test_file_contains(log, "uda.pseudo_target.beta 0.01") && t2s_test_file_contains(log, "restyles no frequency"),
            "the small-beta error does not name the key (%s)", log);
  return t2s_test_finish("test_dg_e2e");
}
