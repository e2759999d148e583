// ctest-labels: cuda
// ctest-timeout: 600
/* The full T2S-DA iteration on one GPU against the CPU reference, through the real
 * executable (t2sda_train device=cuda) on a tiny synthetic benchmark:
 * - 3 iterations on the CPU and on CUDA from the same config: every logged loss term
 *   agrees to 1e-4 relative, every student, teacher and BN tensor of the final
 *   checkpoint to 1e-3 relative to its largest value (fp32 sums in another order
 *   drift apart over the steps), the method state (class weights, prototypes) too;
 * - two CUDA runs with deterministic: true write bit-identical checkpoints (h5diff);
 * - the same config under precision: bf16 (bf16 activations, f32 master weights) runs its
 *   3 iterations without a refusal: the logged terms of iteration 1 (same weights, same
 *   batch) are within BF16_REL of the fp32 CPU values, plus BF16_ABS for terms near 0 (the
 *   feature distance starts at 0: student = ImageNet copy); later iterations are finite
 *   (the weights have moved apart by then), and so is the evaluation's mIoU;
 * - host synchronisations: the first CUDA run prints them (--debug-syncs); every iteration
 *   reads back at most MAX_READBACKS times (the list is at MAX_READBACKS);
 * - HRDA (model.hrda): 3 iterations on the CPU and on CUDA (fused and detail losses, HRDA
 *   pseudo-labels, the pull on the detail crop, HRDA inference in the evaluation): the
 *   logged loss terms agree to 1e-4 relative and the final student and teacher to 1e-3;
 * - the run exercises every device step: FD with majority labels (host, uploaded),
 *   majority labels for the pulling loss, class weights in the CE terms, jitter, blur,
 *   the Fourier pseudo-target and a sliding-window evaluation.
 * Exits 77 (skipped) where the build has no CUDA backend or no GPU is visible. */
#include <hdf5.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "core/device.h"
#include "tests/harness.h"

static char bin[512], dir[512], common[4096];


enum { MAX_ITERS = 3, N_TERMS = 5 };
static const char *terms[N_TERMS] = {"\"loss\": ", "\"loss_src\": ", "\"loss_mix\": ", "\"loss_fd\": ",
                                     "\"loss_t2s\": "};

/* The loss terms of iterations 1..MAX_ITERS from work_dir/metrics.jsonl; mIoU of the
 * last evaluation. Returns the number of iterations found. */
static int read_metrics(const char *wd, double loss[MAX_ITERS][N_TERMS], double *miou) {
  char path[1024], line[8192];
  snprintf(path, sizeof path, "%s/metrics.jsonl", wd);
  FILE *f = fopen(path, "r");
  if (f == NULL) return 0;
  int n = 0;
  *miou = NAN;
  while (fgets(line, sizeof line, f)) {
    const char *m = strstr(line, "\"mIoU\": ");
    if (m) *miou = atof(m + 8);
    const char *it = strstr(line, "\"iteration\": ");
    if (it == NULL || strstr(line, terms[0]) == NULL) continue;
    int i = atoi(it + 13);
    if (i < 1 || i > MAX_ITERS) continue;
    for (int k = 0; k < N_TERMS; k++) {
      const char *p = strstr(line, terms[k]);
      loss[i - 1][k] = p ? atof(p + strlen(terms[k])) : NAN;
    }
    n++;
  }
  fclose(f);
  return n;
}

/* ---- checkpoint comparison (HDF5 directly: every dataset under a group) ---- */

typedef struct compare_ctx {
  hid_t a, b;
  const char *group;
  int compared, bad;
} compare_ctx;

static float *read_all(hid_t file, const char *path, hssize_t *n) {
  hid_t d = H5Dopen2(file, path, H5P_DEFAULT);
  if (d < 0) return NULL;
  hid_t sp = H5Dget_space(d);
  *n = H5Sget_simple_extent_npoints(sp);
  float *v = malloc((size_t)(*n > 0 ? *n : 1) * sizeof(float));
  if (v && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0) {
    free(v);
    v = NULL;
  }
  H5Sclose(sp);
  H5Dclose(d);
  return v;
}

static herr_t compare_one(hid_t g, const char *name, const H5L_info_t *info, void *user) {
  (void)info;
  compare_ctx *c = user;
  H5O_info_t oi;
  if (H5Oget_info_by_name(g, name, &oi, H5P_DEFAULT) < 0) return -1;
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", c->group, name);
  if (oi.type == H5O_TYPE_GROUP) {
    compare_ctx sub = *c;
    sub.group = path;
    hid_t sg = H5Gopen2(c->a, path, H5P_DEFAULT);
    H5Literate(sg, H5_INDEX_NAME, H5_ITER_INC, NULL, compare_one, &sub);
    H5Gclose(sg);
    c->compared += sub.compared;
    c->bad += sub.bad;
    return 0;
  }
  if (oi.type != H5O_TYPE_DATASET) return 0;
  hssize_t na = 0, nb = 0;
  float *va = read_all(c->a, path, &na), *vb = read_all(c->b, path, &nb);
  if (va == NULL || vb == NULL || na != nb) {
    CHECK_MSG(0, "%s: missing or of another size in one of the checkpoints", path);
    c->bad++;
  } else {
    double big = 0, diff = 0;
    for (hssize_t i = 0; i < na; i++) {
      big = fmax(big, fabs(va[i]));
      diff = fmax(diff, fabs((double)va[i] - vb[i]));
    }
    /* relative to the tensor's largest value: elements near 0 carry no relative meaning */
    if (!(diff <= 1e-3 * fmax(big, 1e-6))) {
      CHECK_MSG(0, "%s: CPU and CUDA differ by %.3g (largest value %.3g)", path, diff, big);
      c->bad++;
    }
    c->compared++;
  }
  free(va);
  free(vb);
  return 0;
}

static void compare_group(const char *fa, const char *fb, const char *group) {
  compare_ctx c = {H5Fopen(fa, H5F_ACC_RDONLY, H5P_DEFAULT), H5Fopen(fb, H5F_ACC_RDONLY, H5P_DEFAULT), group, 0, 0};
  CHECK_MSG(c.a >= 0 && c.b >= 0, "cannot open %s or %s", fa, fb);
  if (c.a < 0 || c.b < 0) return;
  hid_t g = H5Gopen2(c.a, group, H5P_DEFAULT);
  CHECK_MSG(g >= 0, "%s has no %s", fa, group);
  if (g >= 0) {
    H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, NULL, compare_one, &c);
    H5Gclose(g);
  }
  CHECK_MSG(c.compared > 0, "%s: nothing compared", group);
  printf("  %s: %d tensors compared, %d differ\n", group, c.compared, c.bad);
  H5Fclose(c.a);
  H5Fclose(c.b);
}

static int train(const char *device, const char *name, const char *flags) {
  return t2s_test_run("%s/t2sda_train %s %s device=%s work_dir=%s/%s > %s/%s.log 2>&1", bin, common, flags, device, dir,
                      name, dir, name);
}

/* The device->host copies of one T2S-DA iteration of this config (one process), each a
 * host synchronisation (t2sda_train --debug-syncs names their file:line):
 *   losses/cuda/pseudo_target.cu  the target crops' Fourier amplitudes (styles are gathered
 *                                 over ranks on the host)                              1
 *   core/cuda/cross_entropy.cu    the bad-label check of the source and the mix CE     2
 *   losses/cuda/feature_distance.cu  the masked sums (global normaliser over ranks)   1
 *   losses/cuda/pseudo_label.cu   the confident-pixel count (q, reduced over ranks)    1
 *                                 the student's class map for the re-weighting         1
 *   launch/device_batch.c         uda_step.c seg_ce: the mixed labels' valid-pixel count 1
 *                                 uda_step.c pull_features: the keys for the host class
 *                                 prototypes (the NHWC -> NCHW transposed copy)         1
 *   launch/uda_step.c             finish: the four logged loss values, in one copy     1
 * (the majority labels are computed from the loader's host labels and uploaded, the
 * prototypes and the pulling loss's plan read that host copy and the method's host state
 * (class weights, present mask), and ClassMix chooses its classes on the loader's labels). */
#define MAX_READBACKS 9

/* Every iteration of the run's log has at most MAX_READBACKS read-backs. */
static void check_syncs(const char *log_name) {
  char path[1100], line[512];
  snprintf(path, sizeof path, "%s/%s.log", dir, log_name);
  FILE *f = fopen(path, "r");
  CHECK_MSG(f != NULL, "cannot read %s", path);
  if (f == NULL) return;
  int seen = 0;
  while (fgets(line, sizeof line, f)) {
    long long it = 0, back = 0, up = 0;
    if (sscanf(line, "host syncs in iteration %lld: %lld read-backs, %lld uploads", &it, &back, &up) != 3) continue;
    seen++;
    printf("  iteration %lld: %lld read-backs, %lld uploads\n", it, back, up);
    CHECK_MSG(back <= MAX_READBACKS, "iteration %lld reads back %lld times (at most %d; the sites are in %s)", it,
              back, MAX_READBACKS, path);
  }
  fclose(f);
  CHECK_MSG(seen == MAX_ITERS, "%s: %d iterations with a host sync report (expected %d)", path, seen, MAX_ITERS);
}

/* bf16 against fp32: each activation is rounded to 8 significant bits (relative 2^-9);
 * through the ~20 layers of the ResNet-18 + ASPP those roundings add up to about 1% on
 * the logits and features, and the loss terms are smooth functions of them. */
#define BF16_REL 3e-2
#define BF16_ABS 1e-3

/* The bf16 run of the same config: iteration 1 near the CPU's, every later one finite. */
/* HRDA on both devices: a 48 crop, context 24, detail 32 (ResNet output stride 8: 4 x 4
 * detail logits); nearest labels so that the small detail grid keeps pull queries. */
static void hrda_runs(void) {
  const char *h = "model.hrda.enabled=true data.crop=[48,48] model.hrda.hr_crop_size=[32,32] "
                  "model.hrda.slide_stride=[16,16] uda.t2s.label_down=nearest";
  CHECK_MSG(train("cpu", "hrda_cpu", h) == 0, "the HRDA CPU run failed: see %s/hrda_cpu.log", dir);
  CHECK_MSG(train("cuda", "hrda_cuda", h) == 0, "the HRDA CUDA run failed: see %s/hrda_cuda.log", dir);
  double lc[MAX_ITERS][N_TERMS], lg[MAX_ITERS][N_TERMS], mc, mg;
  char wd[1024];
  snprintf(wd, sizeof wd, "%s/hrda_cpu", dir);
  int nc = read_metrics(wd, lc, &mc);
  snprintf(wd, sizeof wd, "%s/hrda_cuda", dir);
  int ng = read_metrics(wd, lg, &mg);
  CHECK_MSG(nc == MAX_ITERS && ng == MAX_ITERS, "HRDA metrics: %d CPU and %d CUDA iterations logged", nc, ng);
  for (int i = 0; i < MAX_ITERS && nc == MAX_ITERS && ng == MAX_ITERS; i++)
    for (int k = 0; k < N_TERMS; k++) {
      printf("  hrda iteration %d %-12s cpu %.9g cuda %.9g\n", i + 1, terms[k], lc[i][k], lg[i][k]);
      CHECK_MSG(isfinite(lg[i][k]) && fabs(lc[i][k] - lg[i][k]) <= 1e-4 * fmax(fabs(lc[i][k]), 1e-6),
                "HRDA iteration %d %s: CPU %.9g, CUDA %.9g", i + 1, terms[k], lc[i][k], lg[i][k]);
    }
  CHECK_MSG(isfinite(mg) && fabs(mc - mg) <= 0.02, "HRDA mIoU: CPU %.4f, CUDA %.4f", mc, mg);
  char fc[1100], fg[1100];
  snprintf(fc, sizeof fc, "%s/hrda_cpu/iter_%08d.h5", dir, MAX_ITERS);
  snprintf(fg, sizeof fg, "%s/hrda_cuda/iter_%08d.h5", dir, MAX_ITERS);
  compare_group(fc, fg, "/params");
  compare_group(fc, fg, "/ema");
}

static void bf16_run(double lc[MAX_ITERS][N_TERMS]) {
  int rc = t2s_test_run("%s/t2sda_train %s device=cuda precision=bf16 work_dir=%s/bf16 "
                        "> %s/bf16.log 2>&1", bin, common, dir, dir);
  CHECK_MSG(rc == 0, "the bf16 CUDA run failed: see %s/bf16.log", dir);
  double lb[MAX_ITERS][N_TERMS], mb;
  char wd[1024];
  snprintf(wd, sizeof wd, "%s/bf16", dir);
  int nb = read_metrics(wd, lb, &mb);
  CHECK_MSG(nb == MAX_ITERS, "metrics: %d bf16 iterations logged", nb);
  for (int i = 0; i < MAX_ITERS && nb == MAX_ITERS; i++)
    for (int k = 0; k < N_TERMS; k++) {
      printf("  iteration %d %-12s cpu fp32 %.6g cuda bf16 %.6g\n", i + 1, terms[k], lc[i][k], lb[i][k]);
      CHECK_MSG(isfinite(lb[i][k]), "bf16 iteration %d %s is %g", i + 1, terms[k], lb[i][k]);
      if (i == 0)
        CHECK_MSG(fabs(lc[0][k] - lb[0][k]) <= BF16_REL * fabs(lc[0][k]) + BF16_ABS,
                  "bf16 iteration 1 %s: CPU fp32 %.6g, CUDA bf16 %.6g (tolerance %g relative + %g)", terms[k],
                  lc[0][k], lb[0][k], BF16_REL, BF16_ABS);
    }
  CHECK_MSG(isfinite(mb) && mb >= 0.0 && mb <= 1.0, "bf16 mIoU after %d iterations: %g", MAX_ITERS, mb);
}

int main(void) {
  if (!t2s_cuda_built() || t2s_cuda_device_count() == 0) {
    printf("skipped: %s\n", t2s_cuda_built() ? "no GPU is visible" : "built without CUDA");
    return 77;
  }
  const char *b = getenv("T2S_BINARY_DIR"), *s = getenv("T2S_SOURCE_DIR");
  if (b == NULL || s == NULL) {
    fprintf(stderr, "run through ctest (T2S_BINARY_DIR and T2S_SOURCE_DIR)\n");
    return 2;
  }
  snprintf(bin, sizeof bin, "%s/bin", b);
  snprintf(dir, sizeof dir, "%s/tests/cuda_train_work", b);
  CHECK(t2s_test_run("rm -rf %s && mkdir -p %s", dir, dir) == 0);
  CHECK(t2s_test_run("%s/t2sda_synth %s/data --source 8 --target 8 --val 2 --size 48 48 --seed 5 > %s/synth.log 2>&1",
                bin, dir, dir) == 0);
  snprintf(common, sizeof common,
           "%s/configs/synthetic_t2sda.yaml --quiet deterministic=true 'data.source.shards=%s/data/source-*.h5' "
           "'data.target.shards=%s/data/target-*.h5' 'data.val.shards=[%s/data/val-*.h5]' data.crop=[32,32] "
           "runner.max_iters=%d log.interval=1 evaluation.interval=%d checkpoint.interval=0 "
           "lr_config.warmup=none uda.imnet_feature_dist_lambda=0.005 uda.t2s.label_down=majority "
           "uda.reweight.apply_to=all evaluation.mode=slide evaluation.crop=[32,32] evaluation.stride=[16,16]",
           s, dir, dir, dir, MAX_ITERS, MAX_ITERS);
  CHECK_MSG(train("cpu", "cpu", "") == 0, "the CPU run failed: see %s/cpu.log", dir);
  CHECK_MSG(train("cuda", "cuda1", "--debug-syncs") == 0, "the CUDA run failed: see %s/cuda1.log", dir);
  CHECK_MSG(train("cuda", "cuda2", "") == 0, "the second CUDA run failed: see %s/cuda2.log", dir);
  check_syncs("cuda1");

  double lc[MAX_ITERS][N_TERMS], lg[MAX_ITERS][N_TERMS], mc, mg;
  char wd[1024];
  snprintf(wd, sizeof wd, "%s/cpu", dir);
  int nc = read_metrics(wd, lc, &mc);
  snprintf(wd, sizeof wd, "%s/cuda1", dir);
  int ng = read_metrics(wd, lg, &mg);
  CHECK_MSG(nc == MAX_ITERS && ng == MAX_ITERS, "metrics: %d CPU and %d CUDA iterations logged", nc, ng);
  for (int i = 0; i < MAX_ITERS && nc == MAX_ITERS && ng == MAX_ITERS; i++)
    for (int k = 0; k < N_TERMS; k++) {
      double tol = 1e-4 * fmax(fabs(lc[i][k]), 1e-6);
      printf("  iteration %d %-12s cpu %.9g cuda %.9g\n", i + 1, terms[k], lc[i][k], lg[i][k]);
      CHECK_MSG(isfinite(lg[i][k]) && fabs(lc[i][k] - lg[i][k]) <= tol,
                "iteration %d %s: CPU %.9g, CUDA %.9g", i + 1, terms[k], lc[i][k], lg[i][k]);
    }
  /* the predicted classes may flip at a few boundary pixels, not more */
  CHECK_MSG(isfinite(mg) && fabs(mc - mg) <= 0.02, "mIoU after %d iterations: CPU %.4f, CUDA %.4f", MAX_ITERS, mc, mg);

  if (nc == MAX_ITERS) bf16_run(lc);
  hrda_runs();

  char fc[1100], f1[1100], f2[1100];
  snprintf(fc, sizeof fc, "%s/cpu/iter_%08d.h5", dir, MAX_ITERS);
  snprintf(f1, sizeof f1, "%s/cuda1/iter_%08d.h5", dir, MAX_ITERS);
  snprintf(f2, sizeof f2, "%s/cuda2/iter_%08d.h5", dir, MAX_ITERS);
  const char *groups[] = {"/params", "/ema", "/buffers", "/state"};
  for (int g = 0; g < 4; g++) compare_group(fc, f1, groups[g]);
  /* determinism: the two CUDA runs agree bit for bit */
  const char *all[] = {"/params", "/buffers", "/ema", "/optim", "/state"};
  for (int g = 0; g < 5; g++)
    CHECK_MSG(t2s_test_run("h5diff -q %s %s %s %s", f1, f2, all[g], all[g]) == 0,
              "%s differs between two deterministic CUDA runs (%s, %s)", all[g], f1, f2);
  return t2s_test_finish("test_cuda_train");
}
