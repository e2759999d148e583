// ctest-labels: e2e
// ctest-timeout: 600
/* t2sda_infer end to end on a tiny synthetic benchmark and a 2-iteration run:
 * - label PNGs have the size of their inputs (48x48 validation images and an odd
 *   37x53 one, given as a folder and as a glob);
 * - on the validation images the predicted classes equal t2sda_eval's colour
 *   prediction images of the same checkpoint, pixel for pixel;
 * - the confidence maps lie in [255/C, 255] and the overlays are RGB;
 * - JPEG inputs (a file, a glob, a folder with .jpg and .JPEG): the label map of a
 *   JPEG equals the one of a PNG holding the test's own libjpeg decode of it;
 * - refusals: existing outputs without --overwrite (left untouched), --label-ids
 *   on a non-Cityscapes model, a missing input, a file that is no image; --help
 *   and --version. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
/* after stdio.h: jpeglib.h needs FILE */
#include <jpeglib.h>

#include "data/png_io.h"
#include "data/shard.h"
#include "launch/evaluator.h"
#include "tests/harness.h"

#define NUM_CLASSES 11
#define N_VAL 3

static char bin[512], src[512], dir[512], common[4096], ckpt[700];

/* Writes the validation images as PNGs (dir/in/NAME.png); returns their names. */
static int export_val_images(t2s_dataset *val, char names[N_VAL][256]) {
  int n = 0;
  for (int64_t i = 0; i < val->count && n < N_VAL; i++, n++) {
    int64_t local = 0;
    t2s_shard *s = t2s_dataset_locate(val, i, &local);
    const t2s_shard_meta *m = t2s_shard_info(s);
    uint8_t *rgb = malloc((size_t)m->height * m->width * 3);
    t2s_error err = {0};
    char path[1200];
    CHECK(rgb && t2s_shard_read(s, local, rgb, NULL, &err) == T2S_OK);
    CHECK(t2s_shard_read_name(s, local, names[n], 256, &err) == T2S_OK);
    /* t2sda_synth draws at the shard size: /orig_size is that size */
    int oh = 0, ow = 0;
    CHECK(t2s_shard_orig_size(s, local, &oh, &ow) == 1 && oh == m->height && ow == m->width);
    snprintf(path, sizeof path, "%s/in/%s.png", dir, names[n]);
    CHECK_MSG(t2s_png_write_rgb(path, rgb, m->width, m->height, &err) == T2S_OK, "%s", err.msg);
    free(rgb);
  }
  return n;
}

/* t2sda_eval's colour image back to class ids through the palette of the shard's
 * class names (the colours of distinct classes differ). */
static int colour_to_class(const uint8_t *px, const t2s_shard_meta *m) {
  for (int c = 0; c < m->num_classes; c++) {
    uint8_t col[3];
    t2s_class_colour(m->class_names[c], c, col);
    if (memcmp(col, px, 3) == 0) return c;
  }
  return -1;
}

static void check_against_eval(const char *name, const t2s_shard_meta *m) {
  char lp[1200], ep[1200], cp[1200], op[1200];
  snprintf(lp, sizeof lp, "%s/out/%s.png", dir, name);
  /* t2sda_eval names the folder after iteration, weights and mode */
  snprintf(ep, sizeof ep, "%s/eval/predictions_00000020_student_whole/%s.png", dir, name);
  snprintf(cp, sizeof cp, "%s/out/%s_confidence.png", dir, name);
  snprintf(op, sizeof op, "%s/out/%s_overlay.png", dir, name);
  uint16_t *ids = NULL, *conf = NULL;
  uint8_t *colour = NULL, *overlay = NULL;
  int w = 0, h = 0, w2 = 0, h2 = 0, w3 = 0, h3 = 0, w4 = 0, h4 = 0, depth = 0, ch = 0;
  t2s_error err = {0};
  CHECK_MSG(t2s_png_read_label(lp, &ids, &w, &h, &err) == T2S_OK, "%s", err.msg);
  CHECK_MSG(t2s_png_read_rgb(ep, &colour, &w2, &h2, &err) == T2S_OK, "%s", err.msg);
  CHECK_MSG(t2s_png_read_label(cp, &conf, &w3, &h3, &err) == T2S_OK, "%s", err.msg);
  CHECK_MSG(t2s_png_read_rgb(op, &overlay, &w4, &h4, &err) == T2S_OK, "%s", err.msg);
  CHECK(t2s_png_read_info(lp, &w, &h, &depth, &ch, &err) == T2S_OK && depth == 8 && ch == 1);
  CHECK_MSG(w == m->width && h == m->height && w2 == w && h2 == h && w3 == w && h3 == h && w4 == w && h4 == h,
            "%s: %dx%d, eval %dx%d, input %dx%d", name, w, h, w2, h2, m->width, m->height);
  int differ = 0, low = 0;
  for (int64_t i = 0; ids && colour && conf && i < (int64_t)w * h; i++) {
    differ += colour_to_class(colour + 3 * i, m) != ids[i];
    low += conf[i] < 255 / NUM_CLASSES;
  }
  CHECK_MSG(differ == 0, "%s: %d of %d pixels differ from t2sda_eval's prediction", name, differ, w * h);
  CHECK_MSG(low == 0, "%s: %d confidences below 1/C", name, low);
  free(ids), free(colour), free(conf), free(overlay);
}

#define ODD_W 37
#define ODD_H 53

static void write_odd_image(void) {
  const int w = ODD_W, h = ODD_H;
  uint8_t *rgb = malloc((size_t)w * h * 3);
  for (int i = 0; i < w * h * 3; i++) rgb[i] = (uint8_t)((i * 7919) >> 3);
  char path[1200];
  t2s_error err = {0};
  snprintf(path, sizeof path, "%s/odd/odd.png", dir);
  CHECK(t2s_png_write_rgb(path, rgb, w, h, &err) == T2S_OK);
  free(rgb);
}

static void check_odd_output(void) {
  const int w = ODD_W, h = ODD_H;
  char path[1200];
  t2s_error err = {0};
  snprintf(path, sizeof path, "%s/out/odd.png", dir);
  int w2 = 0, h2 = 0, d = 0, c = 0;
  CHECK_MSG(t2s_png_read_info(path, &w2, &h2, &d, &c, &err) == T2S_OK && w2 == w && h2 == h,
            "%s: %dx%d, input %dx%d", path, w2, h2, w, h);
}

/* ---- JPEG ---- */

static void write_jpeg(const char *path, int w, int h, int seed) {
  FILE *f = fopen(path, "wb");
  CHECK_MSG(f != NULL, "cannot create %s", path);
  if (f == NULL) return;
  struct jpeg_compress_struct ci;
  struct jpeg_error_mgr jerr;
  ci.err = jpeg_std_error(&jerr);
  jpeg_create_compress(&ci);
  jpeg_stdio_dest(&ci, f);
  ci.image_width = (JDIMENSION)w, ci.image_height = (JDIMENSION)h;
  ci.input_components = 3;
  ci.in_color_space = JCS_RGB;
  jpeg_set_defaults(&ci);
  jpeg_set_quality(&ci, 90, TRUE);
  jpeg_start_compress(&ci, TRUE);
  uint8_t *row = malloc((size_t)w * 3);
  while (ci.next_scanline < ci.image_height) {
    int y = (int)ci.next_scanline;
    for (int i = 0; i < w * 3; i++) row[i] = (uint8_t)((seed * 31 + y * 11 + (i / 3) * 5 + (i % 3) * 80) % 256);
    jpeg_write_scanlines(&ci, &row, 1);
  }
  jpeg_finish_compress(&ci);
  jpeg_destroy_compress(&ci);
  fclose(f);
  free(row);
}

/* The test's own decode of a JPEG, written as a PNG: the reference input. */
static void jpeg_to_png(const char *jpg, const char *png) {
  FILE *f = fopen(jpg, "rb");
  CHECK(f != NULL);
  if (f == NULL) return;
  struct jpeg_decompress_struct ci;
  struct jpeg_error_mgr jerr;
  ci.err = jpeg_std_error(&jerr);
  jpeg_create_decompress(&ci);
  jpeg_stdio_src(&ci, f);
  jpeg_read_header(&ci, TRUE);
  ci.out_color_space = JCS_RGB;
  jpeg_start_decompress(&ci);
  int w = (int)ci.output_width, h = (int)ci.output_height;
  uint8_t *rgb = malloc((size_t)w * h * 3);
  while (ci.output_scanline < ci.output_height) {
    uint8_t *row = rgb + (size_t)ci.output_scanline * w * 3;
    jpeg_read_scanlines(&ci, &row, 1);
  }
  jpeg_finish_decompress(&ci);
  jpeg_destroy_decompress(&ci);
  fclose(f);
  t2s_error err = {0};
  CHECK_MSG(t2s_png_write_rgb(png, rgb, w, h, &err) == T2S_OK, "%s", err.msg);
  free(rgb);
}

static int same_labels(const char *a, const char *b) {
  uint16_t *x = NULL, *y = NULL;
  int w = 0, h = 0, w2 = 0, h2 = 0;
  t2s_error err = {0};
  int ok = t2s_png_read_label(a, &x, &w, &h, &err) == T2S_OK && t2s_png_read_label(b, &y, &w2, &h2, &err) == T2S_OK &&
           w == w2 && h == h2 && memcmp(x, y, (size_t)w * h * sizeof *x) == 0;
  CHECK_MSG(ok, "%s and %s differ %s", a, b, err.msg);
  free(x), free(y);
  return ok;
}

static void jpeg_inputs(void) {
  char p[1200], q[1200], log[700];
  t2s_test_run("mkdir -p %s/jpg %s/jpgref", dir, dir);
  snprintf(p, sizeof p, "%s/jpg/street.jpg", dir), write_jpeg(p, 45, 29, 1);
  snprintf(q, sizeof q, "%s/jpgref/street.png", dir), jpeg_to_png(p, q);
  snprintf(p, sizeof p, "%s/jpg/night.JPEG", dir), write_jpeg(p, 30, 40, 2);
  snprintf(q, sizeof q, "%s/jpgref/night.png", dir), jpeg_to_png(p, q);
  snprintf(log, sizeof log, "%s/infer_jpg.log", dir);
  /* a file and a glob; then the folder (both suffixes); then the PNG references */
  CHECK_MSG(t2s_test_run("%s/t2sda_infer %s --checkpoint %s %s/jpg/street.jpg '%s/jpg/*.JPEG' --out %s/out_jpg > %s 2>&1",
                         bin, common, ckpt, dir, dir, dir, log) == 0, "see %s", log);
  CHECK_MSG(t2s_test_run("%s/t2sda_infer %s --checkpoint %s %s/jpg --out %s/out_jpgdir > %s 2>&1", bin, common, ckpt,
                         dir, dir, log) == 0 && t2s_test_file_contains(log, "2 image(s)"), "see %s", log);
  CHECK_MSG(t2s_test_run("%s/t2sda_infer %s --checkpoint %s %s/jpgref --out %s/out_jpgref > %s 2>&1", bin, common, ckpt,
                         dir, dir, log) == 0, "see %s", log);
  const char *stems[] = {"street", "night"};
  for (int k = 0; k < 2; k++) {
    snprintf(p, sizeof p, "%s/out_jpg/%s.png", dir, stems[k]);
    snprintf(q, sizeof q, "%s/out_jpgref/%s.png", dir, stems[k]);
    same_labels(p, q);
    snprintf(p, sizeof p, "%s/out_jpgdir/%s.png", dir, stems[k]);
    same_labels(p, q);
  }
}

static void refusals(void) {
  char log[700], lp[1200];
  snprintf(log, sizeof log, "%s/refuse.log", dir);
  snprintf(lp, sizeof lp, "%s/out/odd.png", dir);
  struct stat before, after;
  CHECK(stat(lp, &before) == 0);
  CHECK(t2s_test_run("%s/t2sda_infer %s --checkpoint %s '%s/odd/*.png' --out %s/out > %s 2>&1", bin, common,
                     ckpt, dir, dir, log) != 0);
  CHECK_MSG(t2s_test_file_contains(log, "already exists") && t2s_test_file_contains(log, "--overwrite"), "see %s", log);
  CHECK(stat(lp, &after) == 0 && after.st_mtime == before.st_mtime && after.st_size == before.st_size);
  CHECK(t2s_test_run("%s/t2sda_infer %s --checkpoint %s %s/odd --out %s/out2 --label-ids > %s 2>&1", bin, common,
                     ckpt, dir, dir, log) != 0);
  CHECK_MSG(t2s_test_file_contains(log, "--label-ids") && t2s_test_file_contains(log, "model.num_classes is 11"), "see %s", log);
  CHECK(t2s_test_run("%s/t2sda_infer %s --checkpoint %s %s/nowhere --out %s/out3 > %s 2>&1", bin, common, ckpt,
                     dir, dir, log) != 0);
  CHECK_MSG(t2s_test_file_contains(log, "nowhere") && t2s_test_file_contains(log, "no such file"), "see %s", log);
  t2s_test_run("echo text > %s/notes.txt", dir);
  CHECK(t2s_test_run("%s/t2sda_infer %s --checkpoint %s %s/notes.txt --out %s/out4 > %s 2>&1", bin, common, ckpt,
                     dir, dir, log) != 0);
  CHECK_MSG(t2s_test_file_contains(log, "notes.txt") && t2s_test_file_contains(log, ".jpg"), "see %s", log);
  CHECK(t2s_test_run("%s/t2sda_infer --help > %s 2>&1", bin, log) == 0 && t2s_test_file_contains(log, "--checkpoint"));
  CHECK(t2s_test_run("%s/t2sda_infer --version > %s 2>&1", bin, log) == 0 && t2s_test_file_contains(log, "t2sda_infer "));
}

int main(void) {
  if (t2s_test_e2e_dirs("infer_work", bin, sizeof bin, src, sizeof src, dir, sizeof dir) != 0) return 1;
  t2s_test_run("mkdir -p %s/in %s/odd", dir, dir);
  CHECK(t2s_test_run("%s/t2sda_synth %s/data --source 6 --target 6 --val %d --size 48 48 --seed 5 > %s/synth.log 2>&1",
                     bin, dir, N_VAL, dir) == 0);
  snprintf(common, sizeof common,
           "%s/configs/synthetic_t2sda.yaml --quiet device=cpu 'data.source.shards=%s/data/source-*.h5' "
           "'data.target.shards=%s/data/target-*.h5' 'data.val.shards=%s/data/val-*.h5' model.num_classes=%d "
           "data.crop=[32,32] data.workers_per_gpu=1 model.backbone.depth=18 model.backbone.base_channels=4 "
           "model.backbone.stem_channels=8 uda.t2s.proj_dim=16 uda.t2s.num_queries=16 uda.t2s.num_negatives=8 "
           "runner.max_iters=20 lr_config.warmup_iters=1 log.interval=1 evaluation.interval=0 "
           "checkpoint.interval=20 data.rare_class_sampling.min_pixels=100 work_dir=%s/run",
           src, dir, dir, dir, NUM_CLASSES, dir);
  snprintf(ckpt, sizeof ckpt, "%s/run/iter_00000020.h5", dir);
  CHECK(t2s_test_run("%s/t2sda_train %s > %s/train.log 2>&1", bin, common, dir) == 0);
  CHECK(t2s_test_run("%s/t2sda_eval %s --checkpoint %s --out %s/eval.json --save-predictions %d "
                     "work_dir=%s/eval > %s/eval.log 2>&1", bin, common, ckpt, dir, N_VAL, dir, dir) == 0);
  t2s_dataset val;
  char pattern[1][512];
  snprintf(pattern[0], sizeof pattern[0], "%s/data/val-*.h5", dir);
  t2s_error err = {0};
  if (t2s_dataset_open(&val, (const char(*)[512])pattern, 1, "val", &err) != T2S_OK) {
    CHECK_MSG(0, "%s", err.msg);
    return t2s_test_finish("test_infer");
  }
  char names[N_VAL][256];
  int n = export_val_images(&val, names);
  write_odd_image();
  char log[700];
  snprintf(log, sizeof log, "%s/infer.log", dir);
  CHECK_MSG(t2s_test_run("%s/t2sda_infer %s --checkpoint %s %s/in '%s/odd/*.png' --out %s/out --confidence > %s 2>&1",
                         bin, common, ckpt, dir, dir, dir, log) == 0, "see %s", log);
  CHECK_MSG(t2s_test_file_contains(log, "images/s"), "no progress in %s", log);
  check_odd_output();
  for (int i = 0; i < n; i++) check_against_eval(names[i], &val.meta);
  jpeg_inputs();
  refusals();
  t2s_dataset_close(&val);
  return t2s_test_finish("test_infer");
}
