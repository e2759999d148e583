/* Name maps between our (mmseg) tensor names and other codebases', and the
 * generic import/export machinery (see core/formats/name_map.h). */
#include "core/formats/name_map.h"

#include "core/nn/mit_names.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static const char *const naming_names[T2S_NAMING_COUNT] = {"mmseg", "torchvision", "timm", "hf",
                                                           "segformer"};

const char *t2s_naming_name(int naming) {
  return naming >= 0 && naming < T2S_NAMING_COUNT ? naming_names[naming] : "?";
}

int t2s_naming_parse(const char *name) {
  for (int i = 0; i < T2S_NAMING_COUNT; i++)
    if (strcmp(name, naming_names[i]) == 0) return i;
  return -1;
}

static int starts(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }
static int ends(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* ---- ResNet V1c family --------------------------------------------------------
 * mmseg ResNetV1c: backbone.stem.{0,3,6} convs and {1,4,7} BNs, then
 * backbone.layer{1-4}.{j}.{conv,bn}{1,2,3} and .downsample.{0,1}.
 * torchvision ResNet: conv1 (7x7) + bn1, then the same layer names, then fc.
 * timm ResNet with a deep stem ('c' variants, e.g. gluon resnet50_v1c): conv1.0,
 * conv1.1 (BN), conv1.3, conv1.4 (BN), conv1.6, then bn1 for the last stem BN. */

static const char *const timm_stem[8] = {"conv1.0", "conv1.1", NULL, "conv1.3", "conv1.4", NULL,
                                         "conv1.6", "bn1"};

static int resnet_foreign_names(const char *ours, int naming, char out[2][T2S_NAME_MAX]) {
  if (naming == T2S_NAMING_MMSEG) {
    snprintf(out[0], T2S_NAME_MAX, "%s", ours);
    return 1;
  }
  if (naming != T2S_NAMING_TORCHVISION && naming != T2S_NAMING_TIMM) return -1;
  /* torchvision/timm files are bare ImageNet backbones: no "backbone.", no head. */
  if (!starts(ours, "backbone.")) return 0;
  const char *rest = ours + strlen("backbone.");
  if (starts(rest, "stem.")) {
    if (naming == T2S_NAMING_TORCHVISION) return 0;
    int k = rest[5] - '0';
    if (k < 0 || k > 7 || rest[6] != '.' || !timm_stem[k]) return 0;
    snprintf(out[0], T2S_NAME_MAX, "%s%s", timm_stem[k], rest + 6);
    return 1;
  }
  snprintf(out[0], T2S_NAME_MAX, "%s", rest);
  return 1;
}

static const char *resnet_absent_reason(const char *ours, int naming) {
  if (!starts(ours, "backbone."))
    return "the file is an ImageNet backbone without a segmentation head (kept at initialisation)";
  if (starts(ours, "backbone.stem."))
    return "torchvision ResNets have a 7x7 stem (conv1, bn1) where ResNet-V1c has a deep stem of "
           "three 3x3 convs; the stem keeps its initialisation (use V1c weights, e.g. mmcv's "
           "open-mmlab://resnet101_v1c, to load it too)";
  return "no counterpart in this naming";
}

static const char *resnet_ignorable(const char *foreign, int naming) {
  if (starts(foreign, "fc.")) return "ImageNet classifier, not part of a segmentation network";
  if (naming == T2S_NAMING_TORCHVISION && (starts(foreign, "conv1.") || starts(foreign, "bn1.")))
    return "7x7 stem of a torchvision ResNet, which ResNet-V1c does not have";
  if (starts(foreign, "auxiliary_head.")) return "mmseg auxiliary FCN head, which t2sda does not build";
  return NULL;
}

/* ResNet-D (timm resnet50d, mmcv ResNetV1d) downsamples through an average pool:
 * its shortcut conv and BN are downsample.1 and .2, where V1c has a strided conv
 * at .0 and the BN at .1. The shapes would fit layer by layer, but not the maths. */
static const char *resnet_refusal(const t2s_tensor_set *s) {
  for (int i = 0; i < s->count; i++)
    if (strstr(s->items[i].name, ".downsample.2.") != NULL)
      return "a ResNet-D (its shortcut is average pool + conv: downsample.1/.2, e.g. timm "
             "resnet50d or mmcv ResNetV1d), but t2sda builds ResNet-V1c (strided conv "
             "shortcut); use V1c weights, e.g. open-mmlab://resnet101_v1c";
  return NULL;
}

static int resnet_detect(const t2s_tensor_set *s) {
  if (t2s_tset_find(s, "backbone.stem.0.weight") || t2s_tset_find(s, "stem.0.weight"))
    return T2S_NAMING_MMSEG;
  if (t2s_tset_find(s, "conv1.0.weight") && t2s_tset_find(s, "layer1.0.conv1.weight"))
    return T2S_NAMING_TIMM;
  if (t2s_tset_find(s, "conv1.weight") && t2s_tset_find(s, "layer1.0.conv1.weight"))
    return T2S_NAMING_TORCHVISION;
  return -1;
}

/* MiT (SegFormer) family: our names are DAFormer's (= the original SegFormer code),
 * so mmseg (DAFormer) checkpoints map one to one; an original SegFormer ImageNet file
 * (mit_b5.pth) holds the bare encoder without "backbone."; Hugging Face files split
 * kv into key and value (core/nn/mit_names.h). mmseg-upstream's layers.* layout packs
 * q, k, v into one in_proj tensor and is not imported (-1: naming not supported). */
static int mit_foreign_names(const char *ours, int naming, char out[2][T2S_NAME_MAX]) {
  char tmp[2][160];
  int n;
  switch (naming) {
    case T2S_NAMING_MMSEG:
      snprintf(out[0], T2S_NAME_MAX, "%s", ours);
      return 1;
    case T2S_NAMING_SEGFORMER:
      if (!starts(ours, "backbone.")) return 0;
      snprintf(out[0], T2S_NAME_MAX, "%s", ours + strlen("backbone."));
      return 1;
    case T2S_NAMING_HF:
      n = t2s_mit_foreign_names(ours, T2S_MIT_NAMES_HF, tmp);
      for (int i = 0; i < n; i++) snprintf(out[i], T2S_NAME_MAX, "%s", tmp[i]);
      return n;
    default:
      return -1;
  }
}

static const char *mit_absent_reason(const char *ours, int naming) {
  if (!starts(ours, "backbone."))
    return "the file is an ImageNet encoder without a segmentation head (kept at initialisation)";
  return "no counterpart in this naming";
}

static const char *mit_ignorable(const char *foreign, int naming) {
  if (starts(foreign, "head.")) return "ImageNet classifier, not part of a segmentation network";
  /* Hugging Face SegformerForImageClassification */
  if (naming == T2S_NAMING_HF && starts(foreign, "classifier."))
    return "ImageNet classifier, not part of a segmentation network";
  return NULL;
}

static int mit_detect(const t2s_tensor_set *s) {
  if (t2s_tset_find(s, "segformer.encoder.patch_embeddings.0.proj.weight") ||
      t2s_tset_find(s, "encoder.patch_embeddings.0.proj.weight"))
    return T2S_NAMING_HF;
  if (t2s_tset_find(s, "backbone.patch_embed1.proj.weight")) return T2S_NAMING_MMSEG;
  if (t2s_tset_find(s, "patch_embed1.proj.weight")) return T2S_NAMING_SEGFORMER;
  return -1;
}

static const t2s_name_family families[] = {
    {"resnet_v1c", "backbone.stem.0.weight", resnet_foreign_names, resnet_absent_reason,
     resnet_ignorable, resnet_detect, resnet_refusal},
    {"mit", "backbone.patch_embed1.proj.weight", mit_foreign_names, mit_absent_reason, mit_ignorable,
     mit_detect, NULL},
};

const t2s_name_family *t2s_name_family_find(int (*has)(void *user, const char *name), void *user) {
  for (size_t i = 0; i < sizeof families / sizeof *families; i++)
    if (has(user, families[i].probe)) return &families[i];
  return NULL;
}

static int params_has(void *user, const char *name) { return t2s_params_find(user, name) != NULL; }
static int set_has(void *user, const char *name) { return t2s_tset_find(user, name) != NULL; }

const t2s_name_family *t2s_name_family_of_params(const t2s_params *p) {
  return t2s_name_family_find(params_has, (void *)p);
}
const t2s_name_family *t2s_name_family_of_set(const t2s_tensor_set *s) {
  return t2s_name_family_find(set_has, (void *)s);
}

/* ---- string lists and reports ------------------------------------------------ */

void t2s_strlist_free(t2s_strlist *l) {
  for (int i = 0; i < l->n; i++) free(l->v[i]);
  free(l->v);
  memset(l, 0, sizeof *l);
}

int t2s_strlist_addf(t2s_strlist *l, const char *fmt, ...) {
  if (l->n == l->cap) {
    int cap = l->cap ? 2 * l->cap : 16;
    char **v = realloc(l->v, (size_t)cap * sizeof *v);
    if (!v) return 0;
    l->v = v;
    l->cap = cap;
  }
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (!(l->v[l->n] = strdup(buf))) return 0;
  l->n++;
  return 1;
}

void t2s_import_report_free(t2s_import_report *r) {
  t2s_strlist_free(&r->missing);
  t2s_strlist_free(&r->mismatch);
  t2s_strlist_free(&r->unexpected);
  t2s_strlist_free(&r->kept);
  t2s_strlist_free(&r->ignored);
}

int t2s_import_report_failed(const t2s_import_report *r) {
  return r->missing.n + r->mismatch.n + r->unexpected.n > 0;
}

static void print_list(FILE *out, const char *title, const t2s_strlist *l) {
  if (l->n) fprintf(out, "  %s (%d):\n", title, l->n);
  for (int i = 0; i < l->n; i++) fprintf(out, "    %s\n", l->v[i]);
}

/* "name: reason" entries grouped by reason: one line per reason with a count
 * and the first name (there are dozens of num_batches_tracked). */
static void print_grouped(FILE *out, const char *title, const t2s_strlist *l) {
  int *done = calloc((size_t)l->n + 1, sizeof *done);
  if (!done) return;
  for (int i = 0; i < l->n; i++) {
    if (done[i]) continue;
    const char *reason = strstr(l->v[i], ": ");
    reason = reason ? reason + 2 : "";
    int count = 0;
    for (int j = i; j < l->n; j++) {
      const char *r = strstr(l->v[j], ": ");
      if (!done[j] && strcmp(r ? r + 2 : "", reason) == 0) done[j] = 1, count++;
    }
    fprintf(out, "  %s %d tensor%s (e.g. %.*s): %s\n", title, count, count == 1 ? "" : "s",
            (int)(strcspn(l->v[i], ":")), l->v[i], reason);
  }
  free(done);
}

void t2s_import_report_print(const t2s_import_report *r, const char *source, FILE *out) {
  fprintf(out, "%s: %s naming%s%s%s: ", source, r->naming, r->prefix[0] ? ", prefix '" : "",
          r->prefix, r->prefix[0] ? "' stripped" : "");
  /* a refused load loads nothing: do not announce "loaded" before "Nothing was loaded" */
  if (r->refused) fprintf(out, "%d tensors match, but nothing is loaded (problems below)\n", r->n_loaded);
  else fprintf(out, "loaded %d tensors\n", r->n_loaded);
  if (r->backbone_only) fprintf(out, "  the file holds a backbone only (names without 'backbone.')\n");
  if (r->no_head) fprintf(out, "  the file holds no segmentation head: the head keeps its initialisation\n");
  print_list(out, "MISSING from the file", &r->missing);
  print_list(out, "SHAPE MISMATCH", &r->mismatch);
  print_list(out, "UNEXPECTED in the file", &r->unexpected);
  print_grouped(out, "not loaded:", &r->kept);
  print_grouped(out, "skipped from the file:", &r->ignored);
}

/* ---- import plan ------------------------------------------------------------- */

void t2s_import_plan_free(t2s_import_plan *plan) {
  free(plan->src);
  free(plan->n_src);
  memset(plan, 0, sizeof *plan);
}

t2s_param *t2s_plan_param(const t2s_params *p, int i) {
  return i < p->count ? p->items[i] : p->buffers[i - p->count];
}

static int find_index(const t2s_tensor_set *s, const char *name) {
  const t2s_named_tensor *t = t2s_tset_find(s, name);
  return t ? (int)(t - s->items) : -1;
}

/* Whether sources (1, or 2 concatenated along dim 0) give exactly ours's shape. */
static int shapes_fit(const t2s_param *q, const t2s_tensor_set *src, const int idx[2], int n) {
  const t2s_named_tensor *a = &src->items[idx[0]], *b = n == 2 ? &src->items[idx[1]] : NULL;
  if (a->ndim != q->t.ndim || (b && b->ndim != q->t.ndim)) return 0;
  for (int d = 0; d < q->t.ndim; d++) {
    int64_t want = q->t.shape[d], got = a->shape[d] + (b && d == 0 ? b->shape[d] : 0);
    if (b && d > 0 && b->shape[d] != a->shape[d]) return 0;
    if (got != want) return 0;
  }
  return 1;
}

static int plan_one(const t2s_name_family *fam, int naming, const t2s_param *q, int strip_backbone,
                    const t2s_tensor_set *src, int idx[2], char *used, t2s_import_report *rep) {
  char names[2][T2S_NAME_MAX];
  int n = fam->foreign_names(q->name, naming, names);
  int headless = rep->no_head && !starts(q->name, "backbone.");
  if (n == 0 || headless || (strip_backbone && !starts(q->name, "backbone."))) {
    const char *why = n == 0 && fam->absent_reason ? fam->absent_reason(q->name, naming)
                      : headless ? "the file holds no segmentation head (kept at initialisation)"
                      : "the file holds a backbone only (kept at initialisation)";
    return t2s_strlist_addf(&rep->kept, "%s: %s", q->name, why) ? 0 : -1;
  }
  for (int k = 0; k < n; k++) {
    const char *look = names[k];
    if (strip_backbone && starts(look, "backbone.")) look += strlen("backbone.");
    idx[k] = find_index(src, look);
    if (idx[k] < 0) {
      int ok = n == 1 ? t2s_strlist_addf(&rep->missing, "%s (file name '%s')", q->name, look)
                      : t2s_strlist_addf(&rep->missing, "%s (file names '%s' + '%s', concatenated)",
                                         q->name, names[0], names[1]);
      return ok ? 0 : -1;
    }
  }
  for (int k = 0; k < n; k++) used[idx[k]] = 1;
  if (!shapes_fit(q, src, idx, n)) {
    char ours[96], theirs[96], second[96] = "";
    t2s_shape_str(&q->t, ours, sizeof ours);
    t2s_named_shape_str(&src->items[idx[0]], theirs, sizeof theirs);
    if (n == 2) t2s_named_shape_str(&src->items[idx[1]], second, sizeof second);
    return t2s_strlist_addf(&rep->mismatch, "%s: ours %s, file %s%s%s", q->name, ours, theirs,
                            n == 2 ? " + " : "", second) ? 0 : -1;
  }
  rep->n_loaded++;
  return n;
}

/* Whether any of our head tensors (outside "backbone.") is in the file: an ImageNet
 * encoder file (e.g. Hugging Face's classification SegFormer) has none, and then
 * the head keeps its initialisation rather than being reported missing. */
static int file_has_head(const t2s_name_family *fam, int naming, const t2s_params *p,
                         const t2s_tensor_set *src) {
  for (int i = 0; i < p->count + p->buf_count; i++) {
    const t2s_param *q = t2s_plan_param(p, i);
    char names[2][T2S_NAME_MAX];
    if (starts(q->name, "backbone.")) continue;
    int n = fam->foreign_names(q->name, naming, names);
    for (int k = 0; k < n; k++)
      if (find_index(src, names[k]) >= 0) return 1;
  }
  return 0;
}

t2s_status t2s_name_map_plan(const t2s_name_family *fam, int naming, const t2s_params *p,
                             const t2s_tensor_set *src, t2s_import_plan *plan,
                             t2s_import_report *rep, t2s_error *err) {
  memset(plan, 0, sizeof *plan);
  snprintf(rep->naming, sizeof rep->naming, "%s", t2s_naming_name(naming));
  char probe[2][T2S_NAME_MAX];
  if (!fam->foreign_names)
    return t2s_error_set(err, T2S_ERR_UNSUPPORTED, "the %s network's name map is not wired into "
                         "core/formats/name_map.c yet", fam->name);
  if (fam->foreign_names(fam->probe, naming, probe) < 0)
    return t2s_error_set(err, T2S_ERR_UNSUPPORTED, "%s networks have no '%s' naming; choose one of "
                         "the namings this family supports", fam->name, t2s_naming_name(naming));
  int has_backbone = 0;
  for (int i = 0; i < src->count && !has_backbone; i++) has_backbone = starts(src->items[i].name, "backbone.");
  rep->backbone_only = !has_backbone && naming == T2S_NAMING_MMSEG;
  rep->no_head = !rep->backbone_only && !file_has_head(fam, naming, p, src);
  plan->n = p->count + p->buf_count;
  plan->src = calloc((size_t)plan->n + 1, sizeof *plan->src);
  plan->n_src = calloc((size_t)plan->n + 1, sizeof *plan->n_src);
  char *used = calloc((size_t)src->count + 1, 1);
  t2s_status st = T2S_OK;
  if (!plan->src || !plan->n_src || !used) st = t2s_error_set(err, T2S_ERR_NOMEM, "import plan: out of memory");
  for (int i = 0; st == T2S_OK && i < plan->n; i++) {
    int n = plan_one(fam, naming, t2s_plan_param(p, i), rep->backbone_only, src, plan->src[i], used, rep);
    if (n < 0) st = t2s_error_set(err, T2S_ERR_NOMEM, "import report: out of memory");
    plan->n_src[i] = n;
  }
  for (int j = 0; st == T2S_OK && j < src->count; j++) {
    if (used[j]) continue;
    const char *name = src->items[j].name;
    const char *why = ends(name, "num_batches_tracked") ? "BN batch counter, which t2sda does not keep"
                      : fam->ignorable ? fam->ignorable(name, naming) : NULL;
    int ok = why ? t2s_strlist_addf(&rep->ignored, "%s: %s", name, why)
                 : t2s_strlist_addf(&rep->unexpected, "%s", name);
    if (!ok) st = t2s_error_set(err, T2S_ERR_NOMEM, "import report: out of memory");
  }
  free(used);
  if (st) t2s_import_plan_free(plan);
  return st;
}

/* ---- export ------------------------------------------------------------------- */

static t2s_status add_counter(const char *running_mean_name, t2s_tensor_set *out, t2s_error *err) {
  char name[T2S_NAME_MAX + 32];
  size_t stem = strlen(running_mean_name) - strlen("running_mean");
  snprintf(name, sizeof name, "%.*snum_batches_tracked", (int)stem, running_mean_name);
  if (t2s_tset_find(out, name)) return T2S_OK;
  int64_t zero = 0;
  return t2s_tset_add(out, name, T2S_FD_I64, 0, NULL, &zero, err) ? T2S_OK : err->status;
}

t2s_status t2s_name_map_export(const t2s_name_family *fam, int naming, const t2s_tensor_set *ours,
                               t2s_tensor_set *out, t2s_strlist *dropped, t2s_error *err) {
  if (!fam->foreign_names)
    return t2s_error_set(err, T2S_ERR_UNSUPPORTED, "the %s network's name map is not wired into "
                         "core/formats/name_map.c yet", fam->name);
  for (int i = 0; i < ours->count; i++) {
    const t2s_named_tensor *t = &ours->items[i];
    char names[2][T2S_NAME_MAX];
    int n = fam->foreign_names(t->name, naming, names);
    if (n < 0)
      return t2s_error_set(err, T2S_ERR_UNSUPPORTED, "%s networks have no '%s' naming", fam->name,
                           t2s_naming_name(naming));
    if (n == 0) {
      const char *why = fam->absent_reason ? fam->absent_reason(t->name, naming) : "no counterpart";
      if (dropped && !t2s_strlist_addf(dropped, "%s: %s", t->name, why))
        return t2s_error_set(err, T2S_ERR_NOMEM, "export: out of memory");
      continue;
    }
    if (n == 2 && (t->ndim < 1 || t->shape[0] % 2))
      return t2s_error_set(err, T2S_ERR_INVALID, "export: tensor '%s' should split in two equal "
                           "halves along dim 0 but has %lld rows", t->name,
                           (long long)(t->ndim ? t->shape[0] : 0));
    int64_t shape[T2S_TSET_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    if (n == 2) shape[0] /= 2;
    size_t half = t->nbytes / (size_t)n;
    for (int k = 0; k < n; k++)
      if (!t2s_tset_add(out, names[k], t->dtype, t->ndim, shape, (const uint8_t *)t->data + k * half, err))
        return err->status;
    if (ends(names[n - 1], ".running_mean")) {
      t2s_status st = add_counter(names[n - 1], out, err);
      if (st) return st;
    }
  }
  return T2S_OK;
}
