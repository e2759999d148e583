// ctest-labels: e2e
// ctest-timeout: 600
/* t2sda_eval --format cityscapes|trainid on a fake Cityscapes tree, checked against
 * the official evaluator (cityscapesscripts' evalPixelLevelSemanticLabeling, PyPI):
 * - a tree of 64x32 images with gtFine label ids (ignored ids too) is imported with
 *   t2sda_shards' cityscapes importer at its own size and at half size; a 19-class
 *   model trains 20 iterations on it;
 * - at the source size, the official evaluator's mIoU (classes average) and every
 *   class IoU equal t2sda_eval's to 1e-3: both count the same pixels;
 * - from half-size shards, the PNGs still have the source size (the logits upsampled
 *   to /orig_size) and the official evaluator accepts them;
 * - --format trainid writes the same predictions as train ids;
 * - unlabelled shards (as the test split is imported) give the same PNGs, no metrics;
 * - shards without /orig_size (older ones) give shard-size PNGs and one note;
 * - refusals: existing PNGs without --overwrite (left untouched), --format without
 *   --out-dir, an unknown format.
 * The upsampling itself is checked against the bilinear op (core/ops/resize.c, which is
 * checked against PyTorch) followed by an argmax. Exits 77 after the C checks when
 * python3 cannot import cityscapesscripts (tools/setup.sh installs it). */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/ops.h"
#include "data/importers.h"
#include "data/png_io.h"
#include "launch/pred_labels.h"
#include "tests/harness.h"

#define W 64
#define H 32
#define N_VAL 4

static char bin[512], src[512], dir[512], common[4096], ckpt[700];
static const char *val_stems[N_VAL] = {"frankfurt_000000_000294", "frankfurt_000001_000538",
                                       "lindau_000000_000019", "lindau_000001_000019"};

/* ---- the fake tree ---- */

/* The label id of a pixel: sky over building / vegetation / car over road / sidewalk,
 * boundaries moved by the seed, and blocks of ids the evaluation ignores (0, 4). */
static int label_id(int seed, int y, int x) {
  int o = (seed * 3) % 8;
  if (x >= 4 + o && x < 8 + o && y >= 2 && y < 6) return 0;
  if (x >= 50 - o && x < 53 - o && y >= 24 && y < 27) return 4;
  if (y < 6 + o / 2) return 23;
  if (y < 20) return x < 18 + o ? 11 : x < 40 ? 21 : 26;
  return x < 44 - o ? 7 : 8;
}

static void write_pair(const char *root, const char *split, const char *stem, int seed) {
  char city[64], path[1400];
  snprintf(city, sizeof city, "%.*s", (int)(strchr(stem, '_') - stem), stem);
  t2s_test_run("mkdir -p '%s/leftImg8bit/%s/%s' '%s/gtFine/%s/%s'", root, split, city, root, split, city);
  uint8_t rgb[W * H * 3], ids[W * H];
  uint16_t inst[W * H];
  uint32_t r = (uint32_t)seed * 2654435761u + 1;
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) {
      int id = label_id(seed, y, x), p = y * W + x;
      ids[p] = (uint8_t)id;
      inst[p] = (uint16_t)id; /* below 1000: no instances */
      for (int c = 0; c < 3; c++) {
        r = r * 1664525u + 1013904223u;
        rgb[3 * p + c] = (uint8_t)((id * (37 + 50 * c)) % 200 + (r >> 27));
      }
    }
  t2s_error err = {0};
  snprintf(path, sizeof path, "%s/leftImg8bit/%s/%s/%s_leftImg8bit.png", root, split, city, stem);
  CHECK_MSG(t2s_png_write_rgb(path, rgb, W, H, &err) == T2S_OK, "%s", err.msg);
  snprintf(path, sizeof path, "%s/gtFine/%s/%s/%s_gtFine_labelIds.png", root, split, city, stem);
  CHECK_MSG(t2s_png_write_gray(path, ids, W, H, &err) == T2S_OK, "%s", err.msg);
  /* the official script also opens the instance ids (for its instance-level scores) */
  snprintf(path, sizeof path, "%s/gtFine/%s/%s/%s_gtFine_instanceIds.png", root, split, city, stem);
  CHECK_MSG(t2s_png_write(path, inst, W, H, 1, 16, &err) == T2S_OK, "%s", err.msg);
}

static int make_tree_and_shards(void) {
  char root[700];
  snprintf(root, sizeof root, "%s/cs", dir);
  for (int k = 0; k < 6; k++) {
    char stem[64];
    snprintf(stem, sizeof stem, "%s_%06d_000019", k < 3 ? "aachen" : "bremen", k);
    write_pair(root, "train", stem, 10 + k);
  }
  for (int k = 0; k < N_VAL; k++) write_pair(root, "val", val_stems[k], k);
  const char *imports[] = {
      "cityscapes %s/cs %s/shards --split train --resize 64 32",
      "cityscapes %s/cs %s/shards --split train --resize 64 32 --unlabelled --domain cs_target",
      "cityscapes %s/cs %s/shards --split val --resize 64 32",
      "cityscapes %s/cs %s/half --split val --resize 32 16",
      "cityscapes %s/cs %s/test --split val --resize 64 32 --unlabelled --domain cs_test",
  };
  for (int k = 0; k < 5; k++) {
    char args[1600];
    snprintf(args, sizeof args, imports[k], dir, dir);
    if (t2s_test_run("%s/t2sda_shards %s > %s/import%d.log 2>&1", bin, args, dir, k) != 0) {
      CHECK_MSG(0, "t2sda_shards %s failed: see %s/import%d.log", args, dir, k);
      return 0;
    }
  }
  /* the half-size import says what it resized */
  char log[700];
  snprintf(log, sizeof log, "%s/import3.log", dir);
  CHECK_MSG(t2s_test_file_contains(log, "resized 4 image(s)") && t2s_test_file_contains(log, "/orig_size"),
            "see %s", log);
  return 1;
}

/* ---- outputs ---- */

/* Reads DIR/<stem>.png (8-bit gray), checks its size; malloc'd ids or NULL. */
static uint8_t *read_png(const char *out_dir, const char *stem, int want_w, int want_h) {
  char path[1400];
  snprintf(path, sizeof path, "%s/%s_leftImg8bit.png", out_dir, stem);
  int w = 0, h = 0, depth = 0, ch = 0;
  t2s_error err = {0};
  uint16_t *ids = NULL;
  if (t2s_png_read_info(path, &w, &h, &depth, &ch, &err) != T2S_OK ||
      t2s_png_read_label(path, &ids, &w, &h, &err) != T2S_OK) {
    CHECK_MSG(0, "%s", err.msg);
    return NULL;
  }
  CHECK_MSG(w == want_w && h == want_h && depth == 8 && ch == 1, "%s is %dx%d, %d bits x %d, want %dx%d 8-bit gray",
            path, w, h, depth, ch, want_w, want_h);
  uint8_t *out = malloc((size_t)w * h);
  for (int i = 0; i < w * h; i++) out[i] = (uint8_t)ids[i];
  free(ids);
  return out;
}

static int train_id_of(int label_id) {
  for (int c = 0; c < T2S_CITYSCAPES_CLASSES; c++)
    if (t2s_cityscapes_label_ids[c] == label_id) return c;
  return -1;
}

/* Cityscapes PNGs hold only the 19 evaluated label ids; trainid PNGs the same
 * predictions as train ids. */
static void check_formats(const char *cs_dir, const char *tid_dir) {
  for (int k = 0; k < N_VAL; k++) {
    uint8_t *cs = read_png(cs_dir, val_stems[k], W, H), *tid = read_png(tid_dir, val_stems[k], W, H);
    int bad_ids = 0, differ = 0;
    for (int p = 0; cs && tid && p < W * H; p++) {
      bad_ids += train_id_of(cs[p]) < 0;
      differ += train_id_of(cs[p]) != tid[p];
    }
    CHECK_MSG(cs && tid && bad_ids == 0 && differ == 0, "%s: %d pixels are no evaluated label id, %d differ "
              "from the trainid PNG", val_stems[k], bad_ids, differ);
    free(cs), free(tid);
  }
}

/* t2s_pred_upsample_argmax == argmax(t2s_resize_bilinear(logits)), the reference op. */
static void check_upsampling(void) {
  const int C = 19, h = 5, w = 7, oh = 11, ow = 16;
  int64_t shape[4] = {1, C, h, w};
  t2s_error err = {0};
  t2s_tensor *z = t2s_test_tensor(4, shape, -2.0f, 2.0f, 77, 0);
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, (size_t)8 << 20, &err);
  CHECK_MSG(ctx != NULL, "%s", err.msg);
  if (ctx == NULL) return;
  t2s_tensor *up = t2s_resize_bilinear(ctx, z, oh, ow, 0);
  uint8_t pred[11 * 16];
  CHECK(up != NULL && t2s_pred_upsample_argmax(t2s_f32(z), C, h, w, oh, ow, pred, &err) == T2S_OK);
  int differ = 0;
  for (int p = 0; up && p < oh * ow; p++) {
    int best = 0;
    for (int c = 1; c < C; c++)
      if (t2s_f32(up)[c * oh * ow + p] > t2s_f32(up)[best * oh * ow + p]) best = c;
    differ += best != pred[p];
  }
  CHECK_MSG(differ == 0, "%d of %d upsampled pixels differ from resize_bilinear + argmax", differ, oh * ow);
  /* the same size: a plain argmax */
  uint8_t same[5 * 7];
  CHECK(t2s_pred_upsample_argmax(t2s_f32(z), C, h, w, h, w, same, &err) == T2S_OK);
  for (int p = 0; p < h * w; p++) {
    int best = 0;
    for (int c = 1; c < C; c++)
      if (t2s_f32(z)[c * h * w + p] > t2s_f32(z)[best * h * w + p]) best = c;
    differ += best != same[p];
  }
  CHECK(differ == 0);
  /* label ids exist for the 19 Cityscapes classes only */
  t2s_error e11 = {0};
  CHECK(t2s_pred_to_format(same, h * w, 11, T2S_LABELS_CITYSCAPES, &e11) == T2S_ERR_INVALID &&
        strstr(e11.msg, "11 classes") && strstr(e11.msg, "--format trainid"));
  CHECK(t2s_pred_to_format(same, h * w, 11, T2S_LABELS_TRAINID, &e11) == T2S_OK);
  t2s_ctx_destroy(ctx);
  t2s_test_tensor_free(z);
}

/* ---- runs ---- */

static int eval_run(const char *shards, const char *fmt, const char *out_dir, const char *json, const char *extra,
                    const char *log) {
  return t2s_test_run("%s/t2sda_eval %s --checkpoint %s 'data.val.shards=%s' --out %s --format %s --out-dir %s %s "
                      "> %s 2>&1", bin, common, ckpt, shards, json, fmt, out_dir, extra, log);
}

/* Unlabelled shards (the benchmark's test split): the PNGs of the labelled run, no metrics;
 * without --format they are refused with the way out. */
static void unlabelled(void) {
  char shards[700], out[700], json[700], log[700];
  snprintf(shards, sizeof shards, "%s/test/cs_test_val-*.h5", dir);
  snprintf(out, sizeof out, "%s/res_test", dir), snprintf(json, sizeof json, "%s/eval_test.json", dir);
  snprintf(log, sizeof log, "%s/eval_test.log", dir);
  CHECK_MSG(eval_run(shards, "cityscapes", out, json, "", log) == 0, "see %s", log);
  CHECK_MSG(t2s_test_file_contains(log, "no labels: no metrics"), "see %s", log);
  char ref[700];
  snprintf(ref, sizeof ref, "%s/res", dir);
  for (int k = 0; k < N_VAL; k++) {
    uint8_t *a = read_png(out, val_stems[k], W, H), *b = read_png(ref, val_stems[k], W, H);
    CHECK_MSG(a && b && memcmp(a, b, W * H) == 0, "%s: unlabelled and labelled runs differ", val_stems[k]);
    free(a), free(b);
  }
  CHECK(t2s_test_run("%s/t2sda_eval %s --checkpoint %s 'data.val.shards=%s' > %s 2>&1", bin, common, ckpt, shards,
                     log) != 0);
  CHECK_MSG(t2s_test_file_contains(log, "no /label") && t2s_test_file_contains(log, "--format"), "see %s", log);
}

/* A copy of the half-size val shard without /orig_size: a shard from before it existed. */
static void make_old_shard(void) {
  t2s_test_run("mkdir -p %s/old && cp %s/half/cityscapes_val-00000-of-00001.h5 %s/old/", dir, dir, dir);
  char path[800];
  snprintf(path, sizeof path, "%s/old/cityscapes_val-00000-of-00001.h5", dir);
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  CHECK(f >= 0 && H5Ldelete(f, "orig_size", H5P_DEFAULT) >= 0);
  if (f >= 0) H5Fclose(f);
}

static int count_in_file(const char *path, const char *needle) {
  FILE *f = fopen(path, "r");
  char line[4096];
  int n = 0;
  while (f && fgets(line, sizeof line, f)) n += strstr(line, needle) != NULL;
  if (f) fclose(f);
  return n;
}

static void refusals(void) {
  char log[700], png[1200];
  snprintf(log, sizeof log, "%s/refuse.log", dir);
  snprintf(png, sizeof png, "%s/res/%s_leftImg8bit.png", dir, val_stems[0]);
  struct stat before, after;
  CHECK(stat(png, &before) == 0);
  char shards[700];
  snprintf(shards, sizeof shards, "%s/shards/cityscapes_val-*.h5", dir);
  char out[700], json[700];
  snprintf(out, sizeof out, "%s/res", dir);
  snprintf(json, sizeof json, "%s/again.json", dir);
  CHECK(eval_run(shards, "cityscapes", out, json, "", log) != 0);
  CHECK_MSG(t2s_test_file_contains(log, "already exists") && t2s_test_file_contains(log, "--overwrite"), "see %s", log);
  CHECK(stat(png, &after) == 0 && after.st_mtime == before.st_mtime && after.st_size == before.st_size);
  CHECK(eval_run(shards, "cityscapes", out, json, "--overwrite", log) == 0);
  CHECK(t2s_test_run("%s/t2sda_eval %s --checkpoint %s --format cityscapes > %s 2>&1", bin, common, ckpt, log) == 2);
  CHECK_MSG(t2s_test_file_contains(log, "--out-dir"), "see %s", log);
  CHECK(t2s_test_run("%s/t2sda_eval %s --checkpoint %s --format labelids --out-dir %s/x > %s 2>&1", bin, common, ckpt,
                     dir, log) == 2);
  CHECK_MSG(t2s_test_file_contains(log, "labelids") && t2s_test_file_contains(log, "cityscapes"), "see %s", log);
}

int main(void) {
  check_upsampling();
  if (t2s_test_e2e_dirs("cityscapes_eval_work", bin, sizeof bin, src, sizeof src, dir, sizeof dir) != 0) return 1;
  if (!make_tree_and_shards()) return t2s_test_finish("test_cityscapes_eval");
  snprintf(common, sizeof common,
           "%s/configs/synthetic_t2sda.yaml --quiet device=cpu 'data.source.shards=%s/shards/cityscapes_train-*.h5' "
           "'data.target.shards=%s/shards/cs_target_train-*.h5' 'data.val.shards=%s/shards/cityscapes_val-*.h5' "
           "model.num_classes=19 data.crop=[32,32] data.workers_per_gpu=1 model.backbone.depth=18 "
           "model.backbone.base_channels=4 model.backbone.stem_channels=8 uda.t2s.proj_dim=16 uda.t2s.num_queries=16 "
           "uda.t2s.num_negatives=8 runner.max_iters=20 lr_config.warmup_iters=1 log.interval=5 evaluation.interval=0 "
           "checkpoint.interval=20 data.rare_class_sampling.min_pixels=10 work_dir=%s/run",
           src, dir, dir, dir, dir);
  snprintf(ckpt, sizeof ckpt, "%s/run/iter_00000020.h5", dir);
  if (t2s_test_run("%s/t2sda_train %s > %s/train.log 2>&1", bin, common, dir) != 0) {
    CHECK_MSG(0, "training failed: see %s/train.log", dir);
    return t2s_test_finish("test_cityscapes_eval");
  }
  char shards[700], half[700], old[700], out[700], json[700], log[700];
  snprintf(shards, sizeof shards, "%s/shards/cityscapes_val-*.h5", dir);
  snprintf(half, sizeof half, "%s/half/cityscapes_val-*.h5", dir);
  snprintf(old, sizeof old, "%s/old/cityscapes_val-*.h5", dir);
  /* the source resolution: the official evaluator's pixels are ours */
  snprintf(out, sizeof out, "%s/res", dir), snprintf(json, sizeof json, "%s/eval.json", dir);
  snprintf(log, sizeof log, "%s/eval.log", dir);
  CHECK_MSG(eval_run(shards, "cityscapes", out, json, "", log) == 0, "see %s", log);
  CHECK_MSG(t2s_test_file_contains(log, "cityscapes label PNGs in") && !t2s_test_file_contains(log, "note:"),
            "see %s", log);
  snprintf(out, sizeof out, "%s/res_trainid", dir), snprintf(json, sizeof json, "%s/eval_trainid.json", dir);
  snprintf(log, sizeof log, "%s/eval_trainid.log", dir);
  CHECK_MSG(eval_run(shards, "trainid", out, json, "", log) == 0, "see %s", log);
  snprintf(out, sizeof out, "%s/res", dir);
  char tid[700];
  snprintf(tid, sizeof tid, "%s/res_trainid", dir);
  check_formats(out, tid);
  /* half-size shards: PNGs at the source size all the same */
  snprintf(out, sizeof out, "%s/res_half", dir), snprintf(json, sizeof json, "%s/eval_half.json", dir);
  snprintf(log, sizeof log, "%s/eval_half.log", dir);
  CHECK_MSG(eval_run(half, "cityscapes", out, json, "", log) == 0, "see %s", log);
  for (int k = 0; k < N_VAL; k++) free(read_png(out, val_stems[k], W, H));
  /* older shards: the shard's resolution, said once */
  make_old_shard();
  snprintf(out, sizeof out, "%s/res_old", dir), snprintf(json, sizeof json, "%s/eval_old.json", dir);
  snprintf(log, sizeof log, "%s/eval_old.log", dir);
  CHECK_MSG(eval_run(old, "trainid", out, json, "", log) == 0, "see %s", log);
  CHECK_MSG(count_in_file(log, "note:") == 1 && t2s_test_file_contains(log, "/orig_size"), "one note in %s", log);
  for (int k = 0; k < N_VAL; k++) free(read_png(out, val_stems[k], W / 2, H / 2));
  unlabelled();
  refusals();
  if (t2s_test_run("python3 -c 'import cityscapesscripts' > /dev/null 2>&1") != 0) {
    fprintf(stderr, "python3 cannot import cityscapesscripts (tools/setup.sh installs it): the official "
            "evaluator was not run: skipped\n");
    return t2s_test_failures ? t2s_test_finish("test_cityscapes_eval") : 77;
  }
  snprintf(log, sizeof log, "%s/official.log", dir);
  CHECK_MSG(t2s_test_run("python3 %s/tools/cityscapes_official_eval.py %s/cs %s/res %s/official %s/eval.json > %s 2>&1",
                         src, dir, dir, dir, dir, log) == 0, "the official evaluator disagrees: see %s", log);
  snprintf(log, sizeof log, "%s/official_half.log", dir);
  CHECK_MSG(t2s_test_run("python3 %s/tools/cityscapes_official_eval.py %s/cs %s/res_half %s/official_half > %s 2>&1",
                         src, dir, dir, dir, log) == 0, "the official evaluator refused the upsampled PNGs: see %s", log);
  t2s_test_run("cat %s/official.log %s/official_half.log", dir, dir);
  return t2s_test_finish("test_cityscapes_eval");
}
