// ctest-labels: unit
/* Importing weights into a network and exporting them back.
 * - mmseg names from .pth, .safetensors and a wrapped 'module.' checkpoint:
 *   every tensor equals the file's exactly; num_batches_tracked is skipped.
 * - bare backbones (mmcv ImageNet, torchvision 7x7 stem, timm deep stem): what
 *   loads, what is kept at initialisation and what is skipped, and why.
 * - missing / unexpected / shape-mismatched tensors refuse the load (network
 *   unchanged) unless a partial load is allowed.
 * - export through a checkpoint to safetensors: byte-identical tensors,
 *   num_batches_tracked added as int64 0-d.
 * - the generic machinery with a family whose tensor is the concatenation of two. */
#include <stdlib.h>
#include <string.h>

#include "core/formats/checkpoint.h"
#include "core/nn/segmentor.h"
#include "core/formats/pretrained.h"
#include "core/formats/torch_pickle.h"
#include "tests/fixture.h"
#include "tests/harness.h"

static t2s_model_cfg net_cfg(int num_classes) {
  t2s_model_cfg c = t2s_model_default_cfg();
  c.resnet.depth = 18;
  c.resnet.base_channels = 2;
  c.resnet.stem_channels = 4;
  c.num_classes = num_classes;
  return c;
}

static int build(t2s_segmentor *m, int num_classes) {
  t2s_error err = {0};
  t2s_model_cfg c = net_cfg(num_classes);
  t2s_status st = t2s_segmentor_build(m, &c, T2S_DEV_CPU, 11, &err);
  CHECK_MSG(st == T2S_OK, "build: %s", err.msg);
  return st == T2S_OK;
}

/* Our tensor `ours` holds exactly the bytes of file tensor `theirs` of `ref`. */
static int equals_file(const t2s_params *p, const char *ours, const t2s_tensor_set *ref, const char *theirs) {
  const t2s_param *q = t2s_params_find(p, ours);
  const t2s_named_tensor *t = t2s_tset_find(ref, theirs);
  return q && t && t->dtype == T2S_FD_F32 && t->nbytes == (size_t)t2s_numel(&q->t) * 4 &&
         memcmp(q->t.data, t->data, t->nbytes) == 0;
}

static int equals_params(const t2s_params *a, const t2s_params *b, const char *name) {
  const t2s_param *x = t2s_params_find(a, name), *y = t2s_params_find(b, name);
  return x && y && memcmp(x->t.data, y->t.data, (size_t)t2s_numel(&x->t) * 4) == 0;
}

static t2s_tensor_set reference(void) {
  t2s_tensor_set ref;
  t2s_tset_init(&ref);
  t2s_error err = {0};
  CHECK_MSG(t2s_safetensors_read(t2s_fixture_path("convert_resnet18.safetensors"), &ref, &err) == T2S_OK,
            "%s", err.msg);
  return ref;
}

static void check_full_imports(const t2s_tensor_set *ref) {
  const char *files[] = {"convert_resnet18.pth", "convert_resnet18.safetensors", "convert_resnet18_wrapped.pth"};
  for (int f = 0; f < 3; f++) {
    t2s_segmentor m;
    if (!build(&m, 3)) return;
    t2s_import_report rep;
    t2s_error err = {0};
    t2s_status st = t2s_load_pretrained_ex(&m.params, t2s_fixture_path(files[f]), NULL, NULL, 0, &rep, NULL, &err);
    CHECK_MSG(st == T2S_OK, "%s: %s", files[f], err.msg);
    CHECK_MSG(rep.n_loaded == m.params.count + m.params.buf_count && !t2s_import_report_failed(&rep) &&
              rep.kept.n == 0 && strcmp(rep.naming, "mmseg") == 0,
              "%s: loaded %d of %d", files[f], rep.n_loaded, m.params.count + m.params.buf_count);
    CHECK_MSG(rep.ignored.n == 23, "%s: %d skipped (23 num_batches_tracked expected)", files[f], rep.ignored.n);
    for (int i = 0; i < m.params.count + m.params.buf_count; i++) {
      const char *name = t2s_plan_param(&m.params, i)->name;
      CHECK_MSG(equals_file(&m.params, name, ref, name), "%s: %s differs", files[f], name);
    }
    t2s_import_report_free(&rep);
    t2s_segmentor_free(&m);
  }
}

/* Bare ImageNet backbones. kept = how many of ours stay at initialisation. */
static void check_backbone(const t2s_tensor_set *ref, const char *file, const char *want_naming, int kept,
                           int ignored, int stem_loaded) {
  t2s_segmentor m, init;
  if (!build(&m, 3) || !build(&init, 3)) return;
  t2s_import_report rep;
  t2s_error err = {0};
  CHECK_MSG(t2s_load_pretrained_ex(&m.params, t2s_fixture_path(file), NULL, NULL, 0, &rep, NULL, &err) == T2S_OK,
            "%s: %s", file, err.msg);
  CHECK_MSG(strcmp(rep.naming, want_naming) == 0, "%s: naming %s", file, rep.naming);
  CHECK_MSG(rep.kept.n == kept && rep.ignored.n == ignored && !t2s_import_report_failed(&rep),
            "%s: kept %d (want %d), skipped %d (want %d)", file, rep.kept.n, kept, rep.ignored.n, ignored);
  for (int i = 0; i < m.params.count + m.params.buf_count; i++) {
    const char *name = t2s_plan_param(&m.params, i)->name;
    int stem = strncmp(name, "backbone.stem.", 14) == 0, head = strncmp(name, "decode_head.", 12) == 0;
    if (head || (stem && !stem_loaded))
      CHECK_MSG(equals_params(&m.params, &init.params, name), "%s: %s should keep its initialisation", file, name);
    else
      CHECK_MSG(equals_file(&m.params, name, ref, name), "%s: %s differs from the weights", file, name);
  }
  t2s_import_report_free(&rep);
  t2s_segmentor_free(&m);
  t2s_segmentor_free(&init);
}

/* A ResNet-D (timm resnet50d: average pool then conv + BN in the shortcut,
 * downsample.1/.2) is refused in one sentence, not as dozens of mismatches. */
static void check_resnet_d(void) {
  t2s_segmentor m;
  if (!build(&m, 3)) return;
  t2s_tensor_set src;
  t2s_tset_init(&src);
  t2s_error err = {0};
  CHECK(t2s_safetensors_read(t2s_fixture_path("convert_timm_deepstem.safetensors"), &src, &err) == T2S_OK);
  int moved = 0;
  for (int i = 0; i < src.count; i++) {  /* downsample.1 (BN) -> .2 first, then .0 (conv) -> .1 */
    char *d = strstr(src.items[i].name, ".downsample.1.");
    if (d) d[12] = '2', moved++;
  }
  for (int i = 0; i < src.count; i++) {
    char *d = strstr(src.items[i].name, ".downsample.0.");
    if (d) d[12] = '1', moved++;
  }
  CHECK(moved > 0);
  t2s_import_report rep;
  err = (t2s_error){0};
  char *buf = NULL;
  size_t len = 0;
  FILE *log = open_memstream(&buf, &len);
  t2s_status st = t2s_load_pretrained_set(&m.params, &src, "resnet50d.safetensors", NULL, NULL, 0,
                                          &rep, log, &err);
  fclose(log);
  CHECK_MSG(st == T2S_ERR_UNSUPPORTED && strstr(err.msg, "resnet50d.safetensors is a ResNet-D") &&
                strstr(err.msg, "resnet101_v1c") && !strchr(err.msg, '\n'),
            "ResNet-D: %s", err.msg);
  CHECK_MSG(len == 0, "a refused ResNet-D should print no report:\n%s", buf);
  free(buf);
  t2s_import_report_free(&rep);
  t2s_tset_free(&src);
  t2s_segmentor_free(&m);
}

/* A refused load never announces "loaded N tensors" before "Nothing was loaded". */
static void check_refused_log(void) {
  t2s_segmentor m;
  if (!build(&m, 5)) return;
  char *buf = NULL;
  size_t len = 0;
  FILE *log = open_memstream(&buf, &len);
  t2s_error err = {0};
  t2s_status st = t2s_load_pretrained_ex(&m.params, t2s_fixture_path("convert_resnet18.pth"), NULL,
                                         NULL, 0, NULL, log, &err);
  fclose(log);
  CHECK(st == T2S_ERR_FORMAT && strstr(err.msg, "Nothing was loaded"));
  CHECK_MSG(buf && !strstr(buf, ": loaded ") && strstr(buf, "nothing is loaded"), "log:\n%s", buf);
  free(buf);
  t2s_segmentor_free(&m);
}

static void check_refusals(void) {
  t2s_tensor_set src;
  t2s_segmentor m, init;
  t2s_error err = {0};
  /* 5 classes: the head's 4 tensors mismatch; nothing may be loaded. */
  if (!build(&m, 5) || !build(&init, 5)) return;
  t2s_import_report rep;
  t2s_status st = t2s_load_pretrained_ex(&m.params, t2s_fixture_path("convert_resnet18.pth"), NULL, NULL, 0,
                                         &rep, NULL, &err);
  CHECK_MSG(st == T2S_ERR_FORMAT && strstr(err.msg, "4 shape mismatches") && strstr(err.msg, "--allow-partial"),
            "mismatch: %s", err.msg);
  CHECK(rep.mismatch.n == 4 && strstr(rep.mismatch.v[0], "ours [5, 16, 3, 3], file [3, 16, 3, 3]"));
  CHECK(equals_params(&m.params, &init.params, "backbone.layer1.0.conv1.weight"));  /* untouched */
  t2s_import_report_free(&rep);
  err = (t2s_error){0};
  st = t2s_load_pretrained_ex(&m.params, t2s_fixture_path("convert_resnet18.pth"), NULL, NULL, 1, &rep, NULL, &err);
  CHECK_MSG(st == T2S_OK && rep.mismatch.n == 4, "allow_partial: %s", err.msg);
  CHECK(!equals_params(&m.params, &init.params, "backbone.layer1.0.conv1.weight"));
  CHECK(equals_params(&m.params, &init.params, "decode_head.aspp_modules.0.conv.weight"));
  t2s_import_report_free(&rep);
  t2s_segmentor_free(&m);
  t2s_segmentor_free(&init);

  /* One tensor removed and one foreign added: missing and unexpected. */
  if (!build(&m, 3)) return;
  t2s_tset_init(&src);
  err = (t2s_error){0};
  CHECK(t2s_safetensors_read(t2s_fixture_path("convert_resnet18.safetensors"), &src, &err) == T2S_OK);
  strcpy(t2s_tset_find(&src, "backbone.layer1.0.conv1.weight")->name, "backbone.layer1.0.conv1.wait");
  st = t2s_load_pretrained_set(&m.params, &src, "edited", NULL, NULL, 0, &rep, NULL, &err);
  CHECK_MSG(st == T2S_ERR_FORMAT && strstr(err.msg, "1 missing [backbone.layer1.0.conv1.weight") &&
            strstr(err.msg, "1 unexpected [backbone.layer1.0.conv1.wait]"), "missing/unexpected: %s", err.msg);
  t2s_import_report_free(&rep);
  t2s_tset_free(&src);

  /* Prefixes: an explicit one that matches, one that does not. */
  t2s_tset_init(&src);
  err = (t2s_error){0};
  CHECK(t2s_pth_read(t2s_fixture_path("convert_resnet18_wrapped.pth"), &src, &err) == T2S_OK);
  st = t2s_load_pretrained_set(&m.params, &src, "wrapped", "mmseg", "module.backbone.", 0, &rep, NULL, &err);
  CHECK_MSG(st == T2S_OK && rep.backbone_only && rep.kept.n == 4, "prefix module.backbone.: %s", err.msg);
  t2s_import_report_free(&rep);
  t2s_tset_free(&src);
  t2s_tset_init(&src);
  CHECK(t2s_pth_read(t2s_fixture_path("convert_resnet18_wrapped.pth"), &src, &err) == T2S_OK);
  err = (t2s_error){0};
  st = t2s_load_pretrained_set(&m.params, &src, "wrapped", NULL, "ema_model.", 0, &rep, NULL, &err);
  CHECK_MSG(st == T2S_ERR_INVALID && strstr(err.msg, "start with 'module.' (142)"), "bad prefix: %s", err.msg);
  t2s_tset_free(&src);
  err = (t2s_error){0};
  st = t2s_load_pretrained_ex(&m.params, t2s_fixture_path("convert_legacy.pth"), NULL, NULL, 0, NULL, NULL, &err);
  CHECK_MSG(st == T2S_ERR_FORMAT && strstr(err.msg, "legacy"), "legacy: %s", err.msg);
  err = (t2s_error){0};
  st = t2s_load_pretrained_ex(&m.params, t2s_fixture_path("convert_dtypes.safetensors"), NULL, NULL, 0, NULL, NULL, &err);
  CHECK_MSG(st == T2S_ERR_FORMAT && strstr(err.msg, "cannot tell which naming"), "unknown naming: %s", err.msg);
  t2s_segmentor_free(&m);
  check_resnet_d();
  check_refused_log();
}

/* Import -> checkpoint -> export: the tensors come back byte for byte. */
static void check_export(const t2s_tensor_set *ref) {
  t2s_segmentor m;
  t2s_error err = {0};
  if (!build(&m, 3)) return;
  CHECK(t2s_load_pretrained_ex(&m.params, t2s_fixture_path("convert_resnet18.safetensors"), NULL, NULL, 0, NULL,
                               NULL, &err) == T2S_OK);
  const char *ckpt = "test_convert_import.ckpt.h5", *out = "test_convert_import.out.safetensors";
  t2s_ckpt_writer *w = t2s_ckpt_begin(ckpt, &err);
  CHECK(w && t2s_ckpt_write_meta(w, 0, 1, NULL, &err) == T2S_OK);
  CHECK(t2s_ckpt_write_params(w, "params", &m.params, T2S_CKPT_TRAINABLE, &err) == T2S_OK);
  CHECK(t2s_ckpt_write_params(w, "buffers", &m.params, T2S_CKPT_BUFFERS, &err) == T2S_OK);
  CHECK_MSG(t2s_ckpt_commit(w, &err) == T2S_OK, "%s", err.msg);
  t2s_tensor_set ours, exported, back;
  t2s_tset_init(&ours);
  t2s_tset_init(&exported);
  t2s_tset_init(&back);
  CHECK_MSG(t2s_ckpt_read_set(ckpt, "student", &ours, &err) == T2S_OK, "%s", err.msg);
  const t2s_name_family *fam = t2s_name_family_of_set(&ours);
  CHECK(fam && strcmp(fam->name, "resnet_v1c") == 0);
  if (fam) CHECK_MSG(t2s_name_map_export(fam, T2S_NAMING_MMSEG, &ours, &exported, NULL, &err) == T2S_OK, "%s", err.msg);
  CHECK(t2s_safetensors_write(out, &exported, &err) == T2S_OK);
  CHECK(t2s_safetensors_read(out, &back, &err) == T2S_OK);
  CHECK_MSG(back.count == ref->count, "exported %d tensors, the PyTorch state dict has %d", back.count, ref->count);
  for (int i = 0; i < ref->count; i++) {
    const t2s_named_tensor *r = &ref->items[i], *b = t2s_tset_find(&back, r->name);
    int counter = strstr(r->name, "num_batches_tracked") != NULL;
    CHECK_MSG(b && b->dtype == r->dtype && b->ndim == r->ndim && b->nbytes == r->nbytes &&
              (counter ? *(int64_t *)b->data == 0 : memcmp(b->data, r->data, r->nbytes) == 0),
              "export: %s differs", r->name);
  }
  t2s_ckpt_reader *rd = NULL;
  CHECK(t2s_ckpt_read_set(ckpt, "teacher", &back, &err) == T2S_ERR_FORMAT && strstr(err.msg, "--which student"));
  (void)rd;
  /* torchvision naming drops the stem and the head, and says why. */
  t2s_tensor_set tv;
  t2s_strlist dropped = {0};
  t2s_tset_init(&tv);
  CHECK(fam && t2s_name_map_export(fam, T2S_NAMING_TORCHVISION, &ours, &tv, &dropped, &err) == T2S_OK);
  CHECK_MSG(dropped.n == 15 + 4 && t2s_tset_find(&tv, "layer1.0.conv1.weight") && !t2s_tset_find(&tv, "conv1.weight"),
            "torchvision export dropped %d", dropped.n);
  t2s_strlist_free(&dropped);
  t2s_tset_free(&tv);
  remove(ckpt);
  remove(out);
  t2s_tset_free(&ours);
  t2s_tset_free(&exported);
  t2s_tset_free(&back);
  t2s_segmentor_free(&m);
}

/* A family where our "attn.kv.weight" (4 x 3) is HF-style "attn.key.weight" and
 * "attn.value.weight" (2 x 3 each) stacked along dim 0. */
static int kv_names(const char *ours, int naming, char out[2][T2S_NAME_MAX]) {
  if (naming != T2S_NAMING_HF) return naming == T2S_NAMING_MMSEG ? (snprintf(out[0], T2S_NAME_MAX, "%s", ours), 1) : -1;
  if (strcmp(ours, "attn.kv.weight") != 0) return (snprintf(out[0], T2S_NAME_MAX, "%s", ours), 1);
  snprintf(out[0], T2S_NAME_MAX, "attn.key.weight");
  snprintf(out[1], T2S_NAME_MAX, "attn.value.weight");
  return 2;
}

static void check_concat_family(void) {
  const t2s_name_family fam = {"kv_test", "attn.kv.weight", kv_names, NULL, NULL, NULL, NULL};
  t2s_params p;
  t2s_error err = {0};
  t2s_params_init(&p);
  t2s_params_add(&p, "attn.kv.weight", T2S_PARAM_WEIGHT, 2, (int64_t[]){4, 3}, T2S_INIT_ZEROS, 0);
  t2s_params_add(&p, "attn.proj.bias", T2S_PARAM_BIAS, 1, (int64_t[]){3}, T2S_INIT_ZEROS, 0);
  CHECK(t2s_params_finalize(&p, T2S_DEV_CPU, 1, &err) == T2S_OK);
  t2s_tensor_set src, out;
  t2s_tset_init(&src);
  t2s_tset_init(&out);
  float k[6] = {1, 2, 3, 4, 5, 6}, v[6] = {7, 8, 9, 10, 11, 12}, b[3] = {-1, -2, -3};
  uint16_t vh[6] = {0x4700, 0x4800, 0x4880, 0x4900, 0x4980, 0x4a00};  /* 7..12 as float16 */
  t2s_tset_add(&src, "attn.key.weight", T2S_FD_F32, 2, (int64_t[]){2, 3}, k, &err);
  t2s_tset_add(&src, "attn.value.weight", T2S_FD_F16, 2, (int64_t[]){2, 3}, vh, &err);
  t2s_tset_add(&src, "attn.proj.bias", T2S_FD_BF16, 1, (int64_t[]){3}, (uint16_t[]){0xbf80, 0xc000, 0xc040}, &err);
  t2s_import_report rep;
  CHECK_MSG(t2s_load_pretrained_family(&p, &fam, &src, "kv", "hf", NULL, 0, &rep, NULL, &err) == T2S_OK, "%s", err.msg);
  const float *kv = t2s_params_find(&p, "attn.kv.weight")->t.data, *pb = t2s_params_find(&p, "attn.proj.bias")->t.data;
  for (int i = 0; i < 6; i++) CHECK(kv[i] == k[i] && kv[6 + i] == v[i]);
  for (int i = 0; i < 3; i++) CHECK(pb[i] == b[i]);
  t2s_import_report_free(&rep);
  /* A wrong half shape is a mismatch that names both file tensors. */
  src.items[1].shape[0] = 1;
  src.items[1].shape[1] = 6;
  CHECK(t2s_load_pretrained_family(&p, &fam, &src, "kv", "hf", NULL, 0, &rep, NULL, &err) == T2S_ERR_FORMAT);
  CHECK_MSG(rep.mismatch.n == 1 && strstr(rep.mismatch.v[0], "file [2, 3] + [1, 6]"), "%s",
            rep.mismatch.n ? rep.mismatch.v[0] : "");
  t2s_import_report_free(&rep);
  /* Export splits it again. */
  t2s_tensor_set ours;
  t2s_tset_init(&ours);
  err = (t2s_error){0};
  CHECK(t2s_params_to_set(&p, &ours, &err) == T2S_OK);
  CHECK(t2s_name_map_export(&fam, T2S_NAMING_HF, &ours, &out, NULL, &err) == T2S_OK);
  const t2s_named_tensor *ek = t2s_tset_find(&out, "attn.key.weight"), *ev = t2s_tset_find(&out, "attn.value.weight");
  CHECK(ek && ev && ek->shape[0] == 2 && memcmp(ek->data, k, 24) == 0 && memcmp(ev->data, v, 24) == 0);
  t2s_tset_free(&ours);
  t2s_tset_free(&src);
  t2s_tset_free(&out);
  t2s_params_free(&p);
}

int main(void) {
  t2s_tensor_set ref = reference();
  check_full_imports(&ref);
  /* stem: 3 convs + 3 BNs x 4 = 15 tensors; head: 2 branches x (weight, bias) = 4;
   * 23 BNs (layer1 has a downsample too: 4 stem channels -> 2) with a counter each. */
  check_backbone(&ref, "convert_mmcv_backbone.pth", "mmseg", 4, 23 + 2, 1);
  check_backbone(&ref, "convert_torchvision.pth", "torchvision", 15 + 4, 1 + 5 + 20 + 2, 0);
  check_backbone(&ref, "convert_timm_deepstem.safetensors", "timm", 4, 23 + 2, 1);
  check_refusals();
  check_export(&ref);
  check_concat_family();
  t2s_tset_free(&ref);
  return t2s_test_finish("test_convert_import");
}
