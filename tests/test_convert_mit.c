// ctest-labels: e2e
// ctest-timeout: 300
/* MiT + SegFormer head through the converter: a trained checkpoint exported in
 * Hugging Face naming (kv split into key and value) and imported back holds the
 * identical parameters; the same round trip through the original-SegFormer naming
 * and a .pth file. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "core/formats/safetensors.h"
#include "tests/harness.h"

/* Writes a copy of src's tensors to path, edited: the decode head dropped and an
 * ImageNet classifier added (what Hugging Face's SegformerForImageClassification
 * holds), or one 2-D weight's dtype or shape swapped (a damaged header). */
enum edit { EDIT_CLASSIFIER, EDIT_DTYPE, EDIT_SHAPE };
static int write_edited(const char *src_path, const char *path, enum edit e) {
  t2s_tensor_set src, out;
  t2s_tset_init(&src);
  t2s_tset_init(&out);
  t2s_error err = {0};
  int ok = t2s_safetensors_read(src_path, &src, &err) == T2S_OK, swapped = 0;
  for (int i = 0; ok && i < src.count; i++) {
    t2s_named_tensor *t = &src.items[i];
    if (e == EDIT_CLASSIFIER && strncmp(t->name, "decode_head.", 12) == 0) continue;
    int64_t shape[T2S_TSET_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    t2s_fdtype dt = t->dtype;
    if (!swapped && e != EDIT_CLASSIFIER && t->ndim == 2 && t->shape[0] != t->shape[1] &&
        strstr(t->name, "weight") != NULL) {
      if (e == EDIT_DTYPE) dt = T2S_FD_I32; /* same bytes, wrong type */
      else shape[0] = t->shape[1], shape[1] = t->shape[0];
      swapped = 1;
    }
    ok = t2s_tset_add(&out, t->name, dt, t->ndim, shape, t->data, &err) != NULL;
  }
  if (ok && e == EDIT_CLASSIFIER) {
    static float w[10 * 256], b[10];
    ok = t2s_tset_add(&out, "classifier.weight", T2S_FD_F32, 2, (int64_t[]){10, 256}, w, &err) &&
         t2s_tset_add(&out, "classifier.bias", T2S_FD_F32, 1, (int64_t[]){10}, b, &err);
  }
  ok = ok && (e == EDIT_CLASSIFIER || swapped) && t2s_safetensors_write(path, &out, &err) == T2S_OK;
  CHECK_MSG(ok, "writing %s: %s", path, err.msg);
  t2s_tset_free(&src);
  t2s_tset_free(&out);
  return ok;
}


int main(void) {
  const char *b = getenv("T2S_BINARY_DIR");
  if (!b) return 1;
  char dir[600], bin[600];
  snprintf(bin, sizeof bin, "%s/bin", b);
  snprintf(dir, sizeof dir, "%s/tests/convert_mit_work", b);
  t2s_test_run("rm -rf %s && mkdir -p %s", dir, dir);
  char cfg[700];
  snprintf(cfg, sizeof cfg, "%s/cfg.yaml", dir);
  FILE *f = fopen(cfg, "w");
  fprintf(f, "name: mitconv\nmodel:\n  num_classes: 11\n  backbone: {type: mit_b0}\n"
             "  decode_head: {type: segformer_mlp, channels: 32}\nuda: {type: source_only}\n"
             "data:\n  crop: [32, 32]\n  rare_class_sampling: {enabled: false}\n");
  fclose(f);
  CHECK(t2s_test_run("%s/t2sda_synth %s/data --source 4 --target 0 --val 0 --size 40 40 --seed 1 > /dev/null", bin, dir) == 0);
  CHECK(t2s_test_run("%s/t2sda_train %s --quiet 'data.source.shards=%s/data/source-*.h5' runner.max_iters=2 "
                "evaluation.interval=0 work_dir=%s/wd > %s/train.log 2>&1", bin, cfg, dir, dir, dir) == 0);
  const char *namings[][2] = {{"hf", "safetensors"}, {"segformer", "pth"}, {"mmseg", "pth"}};
  for (int i = 0; i < 3; i++) {
    const char *n = namings[i][0], *ext = namings[i][1];
    CHECK_MSG(t2s_test_run("%s/t2sda_convert export %s/wd/iter_00000002.h5 %s/out_%s.%s --naming %s > %s/export_%s.log 2>&1",
                      bin, dir, dir, n, ext, n, dir, n) == 0, "export in %s naming", n);
    /* an original SegFormer file is an encoder only: the head keeps its initialisation */
    const char *partial = strcmp(n, "segformer") == 0 ? "--allow-partial" : "";
    CHECK_MSG(t2s_test_run("%s/t2sda_convert import %s/out_%s.%s %s/back_%s.h5 --arch %s %s > %s/import_%s.log 2>&1",
                      bin, dir, n, ext, dir, n, cfg, partial, dir, n) == 0, "import from %s naming", n);
    if (strcmp(n, "segformer") == 0) continue;
    CHECK_MSG(t2s_test_run("h5diff -q %s/wd/iter_00000002.h5 %s/back_%s.h5 /params /params", dir, dir, n) == 0,
              "%s round trip changed the parameters", n);
    CHECK(t2s_test_run("h5diff -q %s/wd/iter_00000002.h5 %s/back_%s.h5 /buffers /buffers", dir, dir, n) == 0);
  }
  /* the HF file really holds split key/value tensors */
  CHECK(t2s_test_run("%s/t2sda_convert inspect %s/out_hf.safetensors | grep -q 'attention.self.key.weight'", bin, dir) == 0);
  char hf[700], edited[700];
  snprintf(hf, sizeof hf, "%s/out_hf.safetensors", dir);
  /* an HF ImageNet classification file: encoder + classifier.*, no head; it imports
   * without --allow-partial (the head keeps its initialisation, classifier skipped) */
  snprintf(edited, sizeof edited, "%s/hf_imagenet.safetensors", dir);
  if (write_edited(hf, edited, EDIT_CLASSIFIER)) {
    CHECK_MSG(t2s_test_run("%s/t2sda_convert import %s %s/hf_imagenet.h5 --arch %s > %s/hf_imagenet.log 2>&1",
                           bin, edited, dir, cfg, dir) == 0, "an HF classification file must import "
              "(see %s/hf_imagenet.log)", dir);
    CHECK(t2s_test_run("grep -q 'classifier.*ImageNet classifier' %s/hf_imagenet.log", dir) == 0);
    CHECK(t2s_test_run("grep -q 'no segmentation head' %s/hf_imagenet.log", dir) == 0);
  }
  /* inspect exits 1 on what import refuses: a weight's dtype swapped (always), its
   * shape swapped (with --arch, a dry-run import) */
  snprintf(edited, sizeof edited, "%s/dtype_swap.safetensors", dir);
  if (write_edited(hf, edited, EDIT_DTYPE)) {
    CHECK(t2s_test_run("%s/t2sda_convert inspect %s > /dev/null 2>&1", bin, edited) == 1);
    CHECK(t2s_test_run("%s/t2sda_convert import %s %s/x.h5 --arch %s > /dev/null 2>&1", bin, edited,
                       dir, cfg) != 0);
  }
  snprintf(edited, sizeof edited, "%s/shape_swap.safetensors", dir);
  if (write_edited(hf, edited, EDIT_SHAPE)) {
    CHECK(t2s_test_run("%s/t2sda_convert inspect %s > /dev/null 2>&1", bin, edited) == 0);
    CHECK(t2s_test_run("%s/t2sda_convert inspect %s --arch %s > /dev/null 2>&1", bin, edited, cfg) == 1);
    CHECK(t2s_test_run("%s/t2sda_convert import %s %s/x.h5 --arch %s > /dev/null 2>&1", bin, edited,
                       dir, cfg) != 0);
  }
  CHECK(t2s_test_run("%s/t2sda_convert inspect %s --arch %s > /dev/null 2>&1", bin, hf, cfg) == 0);
  return t2s_test_finish("test_convert_mit");
}
