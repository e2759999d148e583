/* Weights of any format into a network (core/formats/pretrained.h). */
#include "core/formats/pretrained.h"

#include <errno.h>
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

#include "core/formats/checkpoint.h"
#include "core/device.h"
#include "core/formats/torch_pickle.h"
#include "core/formats/weight_layout.h"

const char *t2s_weights_format_name(t2s_weights_format f) {
  switch (f) {
    case T2S_WF_SAFETENSORS: return "safetensors";
    case T2S_WF_PTH: return "PyTorch zip (.pth)";
    case T2S_WF_CKPT: return "t2sda checkpoint (HDF5)";
    case T2S_WF_LEGACY_PTH: return "legacy PyTorch (non-zip .pth)";
    default: return "unknown";
  }
}

t2s_weights_format t2s_weights_sniff(const uint8_t *head, size_t len) {
  static const uint8_t hdf5[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
  if (len >= 4 && memcmp(head, "PK\x03\x04", 4) == 0) return T2S_WF_PTH;
  if (len >= 8 && memcmp(head, hdf5, 8) == 0) return T2S_WF_CKPT;
  if (t2s_pth_is_legacy(head, len)) return T2S_WF_LEGACY_PTH;
  if (len >= 9 && head[8] == '{') return T2S_WF_SAFETENSORS;
  return T2S_WF_UNKNOWN;
}

/* ---- t2sda checkpoints as tensor sets --------------------------------------- */

typedef struct h5_walk {
  t2s_tensor_set *s;
  const char *path, *group;
  t2s_error *err;
} h5_walk;

static herr_t read_dataset(hid_t g, const char *name, const H5L_info_t *info, void *user) {
  h5_walk *w = user;
  hid_t ds = H5Dopen2(g, name, H5P_DEFAULT);
  hid_t sp = ds >= 0 ? H5Dget_space(ds) : -1, ty = ds >= 0 ? H5Dget_type(ds) : -1;
  int ndim = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
  hsize_t dims[T2S_TSET_MAX_DIMS];
  int64_t shape[T2S_TSET_MAX_DIMS];
  herr_t rc = -1;
  if (ds < 0 || ndim < 0 || ndim > T2S_TSET_MAX_DIMS) {
    t2s_error_set(w->err, T2S_ERR_FORMAT, "checkpoint %s: /%s/%s is not a dataset of at most %d "
                  "dimensions", w->path, w->group, name, T2S_TSET_MAX_DIMS);
    goto done;
  }
  H5Sget_simple_extent_dims(sp, dims, NULL);
  for (int d = 0; d < ndim; d++) shape[d] = (int64_t)dims[d];
  int is_int = H5Tget_class(ty) == H5T_INTEGER;
  if (!is_int && H5Tget_class(ty) != H5T_FLOAT) {
    t2s_error_set(w->err, T2S_ERR_FORMAT, "checkpoint %s: /%s/%s is neither float nor integer",
                  w->path, w->group, name);
    goto done;
  }
  t2s_named_tensor *t = t2s_tset_add(w->s, name, is_int ? T2S_FD_I64 : T2S_FD_F32, ndim, shape, NULL, w->err);
  if (!t) goto done;
  if (H5Dread(ds, is_int ? H5T_NATIVE_INT64 : H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->data) < 0) {
    t2s_error_set(w->err, T2S_ERR_FORMAT, "checkpoint %s: H5Dread of /%s/%s failed (damaged file?)",
                  w->path, w->group, name);
    goto done;
  }
  /* the checksum covers the stored bytes: comparable when no conversion happened */
  if (H5Tget_size(ty) == (is_int ? 8u : 4u)) {
    char shown[600];
    snprintf(shown, sizeof shown, "/%s/%s", w->group, name);
    int verified = 0;
    size_t numel = 1;
    for (int d = 0; d < ndim; d++) numel *= (size_t)shape[d];
    if (t2s_ckpt_verify_dataset(ds, w->path, shown, t->data, numel * H5Tget_size(ty), &verified,
                                w->err) != T2S_OK)
      goto done;
  }
  rc = 0;
done:
  if (ty >= 0) H5Tclose(ty);
  if (sp >= 0) H5Sclose(sp);
  if (ds >= 0) H5Dclose(ds);
  return rc;
}

t2s_status t2s_ckpt_read_set(const char *path, const char *which, t2s_tensor_set *s, t2s_error *err) {
  int teacher = which && strcmp(which, "teacher") == 0;
  if (which && !teacher && strcmp(which, "student") != 0)
    return t2s_error_set(err, T2S_ERR_INVALID, "--which '%s': choose student or teacher", which);
  t2s_ckpt_reader *r = t2s_ckpt_open(path, err);  /* validates /meta, silences HDF5 */
  if (!r) return err ? err->status : T2S_ERR_FORMAT;
  const char *groups[2] = {teacher ? "ema" : "params", teacher ? NULL : "buffers"};
  char need[16];
  snprintf(need, sizeof need, "/%s", groups[0]);
  int has = t2s_ckpt_has(r, need);
  t2s_ckpt_close(r);
  if (!has)
    return t2s_error_set(err, T2S_ERR_FORMAT, "checkpoint %s has no %s group%s", path, need,
                         teacher ? " (no EMA teacher was saved); use --which student" : "");
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) return t2s_error_set(err, T2S_ERR_IO, "checkpoint %s: H5Fopen failed", path);
  t2s_status st = T2S_OK;
  for (int k = 0; k < 2 && groups[k] && st == T2S_OK; k++) {
    hid_t g = H5Gopen2(f, groups[k], H5P_DEFAULT);
    if (g < 0) continue;  /* a network without buffers */
    h5_walk w = {s, path, groups[k], err};
    hsize_t idx = 0;
    if (H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, read_dataset, &w) < 0)
      st = t2s_error_set(err, T2S_ERR_FORMAT, "checkpoint %s: cannot list /%s", path, groups[k]);
    H5Gclose(g);
  }
  H5Fclose(f);
  return st;
}

t2s_status t2s_weights_read(const char *path, const char *which, t2s_tensor_set *s,
                            t2s_weights_format *fmt, t2s_error *err) {
  uint8_t head[16] = {0};
  FILE *f = fopen(path, "rb");
  if (!f) return t2s_error_set(err, T2S_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  size_t n = fread(head, 1, sizeof head, f);
  fclose(f);
  t2s_weights_format wf = t2s_weights_sniff(head, n);
  if (fmt) *fmt = wf;
  switch (wf) {
    case T2S_WF_SAFETENSORS: return t2s_safetensors_read(path, s, err);
    case T2S_WF_PTH:
    case T2S_WF_LEGACY_PTH: return t2s_pth_read(path, s, err);
    case T2S_WF_CKPT: return t2s_ckpt_read_set(path, which, s, err);
    default:
      return t2s_error_set(err, T2S_ERR_FORMAT, "%s: not a weights file t2sda reads (expected "
                           "safetensors, a PyTorch .pth zip, or a t2sda checkpoint .h5)%s", path,
                           n < 8 ? "; the file is shorter than 8 bytes" : "");
  }
}

t2s_status t2s_params_to_set(const t2s_params *p, t2s_tensor_set *s, t2s_error *err) {
  for (int i = 0; i < p->count + p->buf_count; i++) {
    const t2s_param *q = i < p->count ? p->items[i] : p->buffers[i - p->count];
    t2s_named_tensor *t = t2s_tset_add(s, q->name, T2S_FD_F32, q->t.ndim, q->t.shape, NULL, err);
    if (!t) return err ? err->status : T2S_ERR_NOMEM;
    float *host = t2s_weight_stored_ohwi(q) ? malloc(t->nbytes) : t->data;
    if (!host) return t2s_error_set(err, T2S_ERR_NOMEM, "%s: out of memory", q->name);
    t2s_status st = t2s_device_copy(T2S_DEV_CPU, host, p->device, q->t.data, t->nbytes, err);
    if (host != t->data) {
      if (st == T2S_OK) t2s_weight_permute(q, host, t->data, T2S_WEIGHT_TO_FILE);
      free(host);
    }
    if (st) return st;
  }
  return T2S_OK;
}

/* ---- prefixes and naming ------------------------------------------------------ */

static int starts(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

/* "'model.' (312), 'ema_model.' (312)": the first name components and their counts. */
static void top_prefixes(const t2s_tensor_set *s, char *buf, size_t size) {
  size_t used = 0;
  buf[0] = '\0';
  for (int i = 0, shown = 0; i < s->count && shown < 6; i++) {
    size_t k = strcspn(s->items[i].name, ".");
    int seen = 0, count = 0;
    for (int j = 0; j < s->count; j++) {
      if (strncmp(s->items[j].name, s->items[i].name, k) || s->items[j].name[k] != s->items[i].name[k]) continue;
      if (j < i) seen = 1;
      count++;
    }
    if (seen || used >= size) continue;
    used += (size_t)snprintf(buf + used, size - used, "%s'%.*s%s' (%d)", shown ? ", " : "", (int)k,
                             s->items[i].name, s->items[i].name[k] ? "." : "", count);
    shown++;
  }
}

static void drop_item(t2s_tensor_set *s, int i) {
  free(s->items[i].name);
  free(s->items[i].data);
  memmove(&s->items[i], &s->items[i + 1], (size_t)(s->count - i - 1) * sizeof *s->items);
  s->count--;
}

static void strip_name(t2s_named_tensor *t, size_t k) { memmove(t->name, t->name + k, strlen(t->name + k) + 1); }

t2s_status t2s_tset_strip_prefix(t2s_tensor_set *s, const char *prefix, const char *source,
                                 t2s_error *err) {
  if (prefix && prefix[0]) {
    int kept = 0;
    for (int i = 0; i < s->count; i++) kept += starts(s->items[i].name, prefix);
    if (!kept) {
      char tops[512];
      top_prefixes(s, tops, sizeof tops);
      return t2s_error_set(err, T2S_ERR_INVALID, "%s: no tensor name starts with the prefix '%s'; "
                           "the names start with %s", source, prefix, tops);
    }
    for (int i = s->count - 1; i >= 0; i--) {
      if (starts(s->items[i].name, prefix)) strip_name(&s->items[i], strlen(prefix));
      else drop_item(s, i);
    }
  }
  for (int i = 0; i < s->count; i++)
    if (starts(s->items[i].name, "module.")) strip_name(&s->items[i], strlen("module."));
  for (int i = 0; i < s->count; i++)
    for (int j = i + 1; j < s->count; j++)
      if (strcmp(s->items[i].name, s->items[j].name) == 0)
        return t2s_error_set(err, T2S_ERR_FORMAT, "%s: '%s' appears twice once the prefixes are "
                             "stripped", source, s->items[i].name);
  return T2S_OK;
}

static t2s_status resolve_naming(const t2s_name_family *fam, const t2s_tensor_set *src,
                                 const char *naming, const char *source, int *out, t2s_error *err) {
  if (naming && naming[0]) {
    if ((*out = t2s_naming_parse(naming)) < 0)
      return t2s_error_set(err, T2S_ERR_INVALID, "naming '%s' is unknown: choose mmseg, "
                           "torchvision, timm, hf or segformer", naming);
    return T2S_OK;
  }
  if (fam->detect && (*out = fam->detect(src)) >= 0) return T2S_OK;
  char tops[512];
  top_prefixes(src, tops, sizeof tops);
  return t2s_error_set(err, T2S_ERR_FORMAT, "%s: cannot tell which naming its %d tensors follow "
                       "for a %s network; their names start with %s. If they carry a wrapper "
                       "prefix, give it (--prefix model.), else give --naming", source, src->count,
                       fam->name, tops);
}

/* ---- loading -------------------------------------------------------------------- */

static t2s_status copy_planned(t2s_params *p, const t2s_import_plan *plan, const t2s_tensor_set *src,
                               t2s_error *err) {
  for (int i = 0; i < plan->n; i++)  /* refuse integer tensors before touching p */
    for (int k = 0; k < plan->n_src[i]; k++) {
      const t2s_named_tensor *t = &src->items[plan->src[i][k]];
      if (t->dtype != T2S_FD_F32 && t->dtype != T2S_FD_F16 && t->dtype != T2S_FD_BF16 && t->dtype != T2S_FD_F64)
        return t2s_error_set(err, T2S_ERR_FORMAT, "file tensor '%s' has dtype %s but feeds the "
                             "weight '%s'", t->name, t2s_fdtype_name(t->dtype), t2s_plan_param(p, i)->name);
    }
  for (int i = 0; i < plan->n; i++) {
    if (plan->n_src[i] <= 0) continue;
    t2s_param *q = t2s_plan_param(p, i);
    size_t bytes = (size_t)t2s_numel(&q->t) * sizeof(float);
    float *host = malloc(bytes ? bytes : 1), *perm = t2s_weight_stored_ohwi(q) ? malloc(bytes) : NULL;
    t2s_status st = host && (perm || !t2s_weight_stored_ohwi(q)) ? T2S_OK
                    : t2s_error_set(err, T2S_ERR_NOMEM, "%s: out of memory", q->name);
    int64_t at = 0;
    for (int k = 0; k < plan->n_src[i] && st == T2S_OK; k++) {
      const t2s_named_tensor *t = &src->items[plan->src[i][k]];
      st = t2s_tset_to_f32(t, host + at, err);  /* dim-0 concatenation = appending */
      at += t2s_named_numel(t);
    }
    if (st == T2S_OK && perm) t2s_weight_permute(q, host, perm, T2S_WEIGHT_TO_DEVICE);
    if (st == T2S_OK) st = t2s_device_copy(p->device, q->t.data, T2S_DEV_CPU, perm ? perm : host, bytes, err);
    free(host);
    free(perm);
    if (st) return st;
  }
  return T2S_OK;
}

/* "a, b, c (and 4 more)" from the first entries of a list. */
static void list_head(const t2s_strlist *l, char *buf, size_t size) {
  size_t used = 0;
  buf[0] = '\0';
  for (int i = 0; i < l->n && i < 3 && used < size; i++)
    used += (size_t)snprintf(buf + used, size - used, "%s%s", i ? "; " : "", l->v[i]);
  if (l->n > 3 && used < size) snprintf(buf + used, size - used, " (and %d more)", l->n - 3);
}

t2s_status t2s_load_pretrained_set(t2s_params *p, t2s_tensor_set *src, const char *source,
                                   const char *naming, const char *prefix, int allow_partial,
                                   t2s_import_report *rep, FILE *log, t2s_error *err) {
  const t2s_name_family *fam = t2s_name_family_of_params(p);
  if (!fam)
    return t2s_error_set(err, T2S_ERR_UNSUPPORTED, "%s: this network has no name map "
                         "(core/formats/name_map.c knows ResNet-V1c and MiT networks)", source);
  return t2s_load_pretrained_family(p, fam, src, source, naming, prefix, allow_partial, rep, log, err);
}

t2s_status t2s_load_pretrained_family(t2s_params *p, const t2s_name_family *fam, t2s_tensor_set *src,
                                      const char *source, const char *naming, const char *prefix,
                                      int allow_partial, t2s_import_report *rep_out, FILE *log,
                                      t2s_error *err) {
  t2s_import_report local = {0}, *rep = rep_out ? rep_out : &local;
  memset(rep, 0, sizeof *rep);
  int nm = 0;
  t2s_import_plan plan = {0};
  t2s_status st = t2s_tset_strip_prefix(src, prefix, source, err);
  snprintf(rep->prefix, sizeof rep->prefix, "%s", prefix ? prefix : "");
  const char *refusal = st == T2S_OK && fam->refusal ? fam->refusal(src) : NULL;
  if (refusal)
    st = t2s_error_set(err, T2S_ERR_UNSUPPORTED, "%s is %s. Nothing was loaded", source, refusal);
  if (st == T2S_OK) st = resolve_naming(fam, src, naming, source, &nm, err);
  if (st == T2S_OK) st = t2s_name_map_plan(fam, nm, p, src, &plan, rep, err);
  rep->refused = st == T2S_OK && t2s_import_report_failed(rep) && !allow_partial;
  if (st == T2S_OK && log) t2s_import_report_print(rep, source, log);
  if (st == T2S_OK && t2s_import_report_failed(rep) && !allow_partial) {
    char miss[300], bad[300], extra[300];
    list_head(&rep->missing, miss, sizeof miss);
    list_head(&rep->mismatch, bad, sizeof bad);
    list_head(&rep->unexpected, extra, sizeof extra);
    st = t2s_error_set(err, T2S_ERR_FORMAT, "%s (%s naming): %d missing [%s], %d shape mismatches "
                       "[%s], %d unexpected [%s]. Nothing was loaded. If a partial load is what you "
                       "want, allow it (t2sda_convert import --allow-partial)", source,
                       rep->naming, rep->missing.n, miss, rep->mismatch.n, bad, rep->unexpected.n, extra);
  }
  if (st == T2S_OK) st = copy_planned(p, &plan, src, err);
  t2s_import_plan_free(&plan);
  t2s_import_report_free(&local);
  return st;
}

t2s_status t2s_load_pretrained_ex(t2s_params *p, const char *path, const char *naming,
                                  const char *prefix, int allow_partial, t2s_import_report *rep,
                                  FILE *log, t2s_error *err) {
  t2s_tensor_set src;
  t2s_tset_init(&src);
  t2s_status st = t2s_weights_read(path, NULL, &src, NULL, err);
  if (st == T2S_OK)
    st = t2s_load_pretrained_set(p, &src, path, naming, prefix, allow_partial, rep, log, err);
  t2s_tset_free(&src);
  return st;
}

t2s_status t2s_load_pretrained(t2s_params *p, const char *path, const char *naming,
                               const char *prefix, int allow_partial, t2s_error *err) {
  return t2s_load_pretrained_ex(p, path, naming, prefix, allow_partial, NULL, stderr, err);
}
