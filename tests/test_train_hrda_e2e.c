// ctest-labels: e2e
// ctest-timeout: 600
/* HRDA end to end on the thin-object synthetic data (t2sda_synth --thin):
 * - dacs and t2sda with model.hrda train a few iterations (source, mixed and pull
 *   losses through the fused and detail heads, HRDA pseudo-labels), evaluate during
 *   training through HRDA inference, and checkpoint the scale-attention head;
 * - t2sda_eval and t2sda_infer run HRDA inference on the checkpoint;
 * - each uda.t2s.hrda_view trains;
 * - a detail crop off the context grid, and one larger than the crop, are refused with
 *   messages naming the keys. */
#include <stdio.h>
#include <string.h>

#include "data/png_io.h"
#include "tests/harness.h"

static char bin[512], src[512], dir[512], common[4096];

static void train_and_eval(const char *name, const char *extra) {
  char log[700];
  snprintf(log, sizeof log, "%s/%s.log", dir, name);
  int rc = t2s_test_run("%s/t2sda_train %s work_dir=%s/%s %s > %s 2>&1", bin, common, dir, name, extra, log);
  CHECK_MSG(rc == 0, "%s: t2sda_train failed (see %s)", name, log);
  char metrics[700];
  snprintf(metrics, sizeof metrics, "%s/%s/metrics.jsonl", dir, name);
  CHECK_MSG(t2s_test_file_contains(metrics, "\"mIoU\""), "%s: no evaluation in %s", name, metrics);
  /* the attention head is part of the checkpoint, under HRDA's names */
  CHECK_MSG(t2s_test_run("h5ls -r %s/%s/iter_00000004.h5 | grep -q 'decode_head.scale_attention'", dir, name) == 0,
            "%s: the checkpoint has no decode_head.scale_attention.* tensors", name);
}

static void eval_and_infer(void) {
  char out[700];
  snprintf(out, sizeof out, "%s/eval.json", dir);
  CHECK(t2s_test_run("%s/t2sda_eval %s uda.type=dacs --checkpoint %s/dacs/iter_00000004.h5 --out %s > %s/eval.log 2>&1",
                     bin, common, dir, out, dir) == 0);
  CHECK(t2s_test_file_contains(out, "\"mIoU\""));
  /* an image that is not a multiple of 16 pixels: resized for HRDA's grids and back */
  enum { W = 50, H = 40 };
  uint8_t rgb[W * H * 3];
  for (int i = 0; i < W * H; i++) {
    rgb[3 * i] = (uint8_t)(i % W * 5), rgb[3 * i + 1] = (uint8_t)(i / W * 6), rgb[3 * i + 2] = 90;
  }
  char png[700];
  snprintf(png, sizeof png, "%s/img.png", dir);
  t2s_error err = {0};
  CHECK_MSG(t2s_png_write_rgb(png, rgb, W, H, &err) == T2S_OK, "%s", err.msg);
  int rc = t2s_test_run("%s/t2sda_infer %s uda.type=dacs --checkpoint %s/dacs/iter_00000004.h5 %s --out %s/infer > %s/infer.log 2>&1",
                        bin, common, dir, png, dir, dir);
  CHECK_MSG(rc == 0, "t2sda_infer with HRDA failed (see %s/infer.log)", dir);
  CHECK(t2s_test_run("test -s %s/infer/img.png", dir) == 0);
}

static void bad_geometry(void) {
  char log[700];
  snprintf(log, sizeof log, "%s/bad1.log", dir);
  CHECK(t2s_test_run("%s/t2sda_train %s work_dir=%s/bad1 model.hrda.hr_crop_size=[24,24] > %s 2>&1",
                     bin, common, dir, log) != 0);
  CHECK_MSG(t2s_test_file_contains(log, "model.hrda.hr_crop_size [24, 24] is not a multiple of 16"),
            "no message naming the detail crop (see %s)", log);
  snprintf(log, sizeof log, "%s/bad2.log", dir);
  CHECK(t2s_test_run("%s/t2sda_train %s work_dir=%s/bad2 model.hrda.hr_crop_size=[96,32] > %s 2>&1",
                     bin, common, dir, log) != 0);
  CHECK_MSG(t2s_test_file_contains(log, "larger than data.crop"), "no message naming data.crop (see %s)", log);
}

int main(void) {
  if (t2s_test_e2e_dirs("hrda_e2e_work", bin, sizeof bin, src, sizeof src, dir, sizeof dir) != 0) return 1;
  CHECK(t2s_test_run("%s/t2sda_synth %s/data --source 8 --target 8 --val 2 --size 64 64 --seed 5 --thin "
                     "> %s/synth.log 2>&1", bin, dir, dir) == 0);
  /* ResNet-18 + DeepLab-V2 (output stride 8): context crop 32, detail crop 32 on a 16-pixel grid */
  snprintf(common, sizeof common,
           "%s/configs/synthetic_t2sda.yaml --quiet device=cpu 'data.source.shards=%s/data/source-*.h5' "
           "'data.target.shards=%s/data/target-*.h5' 'data.val.shards=%s/data/val-*.h5' model.num_classes=11 "
           "data.crop=[64,64] data.workers_per_gpu=1 model.backbone.depth=18 model.backbone.base_channels=4 "
           "model.backbone.stem_channels=8 uda.t2s.proj_dim=16 uda.t2s.num_queries=16 uda.t2s.num_negatives=8 "
           "uda.imnet_feature_dist_lambda=0.005 runner.max_iters=4 lr_config.warmup_iters=2 log.interval=1 "
           "evaluation.interval=4 checkpoint.interval=4 data.rare_class_sampling.min_pixels=50 "
           "model.hrda.enabled=true model.hrda.hr_crop_size=[32,32] model.hrda.slide_stride=[16,16]",
           src, dir, dir, dir);
  train_and_eval("dacs", "uda.type=dacs");
  train_and_eval("t2sda", "uda.type=t2sda");
  train_and_eval("t2sda_context", "uda.type=t2sda uda.t2s.hrda_view=context");
  train_and_eval("t2sda_both", "uda.type=t2sda uda.t2s.hrda_view=both");
  eval_and_infer();
  bad_geometry();
  return t2s_test_finish("test_train_hrda_e2e");
}
