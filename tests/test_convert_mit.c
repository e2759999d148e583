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

#include "tests/harness.h"


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
  return t2s_test_finish("test_convert_mit");
}
