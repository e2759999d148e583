/* t2sda_infer CONFIG --checkpoint PATH INPUT... --out DIR [key.path=value ...]
 *             [--which student|teacher] [--mode whole|slide] [--label-ids]
 *             [--confidence] [--overwrite] [--quiet]
 *
 * Segments PNG and JPEG images of any size with a trained checkpoint: each INPUT
 * is an image file, a folder (its *.png, *.jpg and *.jpeg, not recursive) or a glob
 * ('frames/NAME*.jpg'). Files are decoded by their first bytes (data/image_io.h).
 * For every image IMG.png or IMG.jpg it writes, in DIR:
 *   IMG.png             the label map, 8-bit gray: train ids (0..C-1), or with
 *                       --label-ids the Cityscapes label ids (19-class models)
 *   IMG_overlay.png     the image blended half and half with the class colours
 *   IMG_confidence.png  (--confidence) the softmax probability of the chosen
 *                       class, 0..255
 * Inference is the evaluator's (launch/evaluator.h, t2s_infer_logits): whole
 * image or sliding window as evaluation.mode says, on the CPU. Every output is
 * written under a temporary name and renamed, and existing outputs are never
 * replaced without --overwrite, so an interrupted or refused run loses nothing. */
#include <errno.h>
#include <glob.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/formats/checkpoint.h"
#include "core/version.h"
#include "data/image_io.h"
#include "data/importers.h"
#include "data/png_io.h"
#include "launch/device_batch.h"
#include "launch/evaluator.h"
#include "launch/model_config.h"
#include "launch/run_eval.h"
#include "launch/train_config.h"

typedef struct infer_opts {
  const char *config, *ckpt, *out, *which, *mode;
  int label_ids, confidence, overwrite, quiet;
  char **over;
  int n_over;
  char **inputs;
  int n_inputs;
} infer_opts;

typedef struct file_list {
  char **paths;
  int count, cap;
} file_list;

static int usage(int code) {
  fprintf(code ? stderr : stdout,
          "usage: t2sda_infer CONFIG.yaml --checkpoint PATH INPUT... --out DIR [key.path=value ...]\n"
          "                   [--which student|teacher] [--mode whole|slide] [--label-ids]\n"
          "                   [--confidence] [--overwrite] [--quiet] | --help | --version\n"
          "  INPUT: a PNG or JPEG file, a folder of them or a quoted glob ('frames/*.jpg'); any size.\n"
          "  Writes DIR/NAME.png (train ids; --label-ids: Cityscapes label ids), DIR/NAME_overlay.png\n"
          "  and with --confidence DIR/NAME_confidence.png (softmax probability x 255).\n");
  return code;
}

static int fail(const char *msg) {
  fprintf(stderr, "t2sda_infer: %s\n", msg);
  return 1;
}

/* key.path=value (an override) unless it names an existing file. */
static int is_override(const char *a) {
  const char *eq = strchr(a, '=');
  struct stat st;
  return eq != NULL && memchr(a, '/', (size_t)(eq - a)) == NULL && stat(a, &st) != 0;
}

static int parse_args(int argc, char **argv, infer_opts *o) {
  memset(o, 0, sizeof *o);
  o->which = "student";
  o->over = calloc((size_t)argc + 1, sizeof *o->over);
  o->inputs = calloc((size_t)argc, sizeof *o->inputs);
  if (o->over == NULL || o->inputs == NULL) return fail("out of memory"), 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int has_value = i + 1 < argc;
    if (strcmp(a, "--checkpoint") == 0 && has_value) o->ckpt = argv[++i];
    else if (strcmp(a, "--out") == 0 && has_value) o->out = argv[++i];
    else if (strcmp(a, "--which") == 0 && has_value) o->which = argv[++i];
    else if (strcmp(a, "--mode") == 0 && has_value) o->mode = argv[++i];
    else if (strcmp(a, "--label-ids") == 0) o->label_ids = 1;
    else if (strcmp(a, "--confidence") == 0) o->confidence = 1;
    else if (strcmp(a, "--overwrite") == 0) o->overwrite = 1;
    else if (strcmp(a, "--quiet") == 0) o->quiet = 1;
    else if (strncmp(a, "--", 2) == 0) {
      fprintf(stderr, "t2sda_infer: unknown option or missing value: '%s'\n", a);
      return usage(2);
    } else if (o->config == NULL) o->config = argv[i];
    else if (is_override(a)) o->over[o->n_over++] = argv[i];
    else o->inputs[o->n_inputs++] = argv[i];
  }
  if (o->config == NULL || o->ckpt == NULL || o->out == NULL || o->n_inputs == 0) {
    fprintf(stderr, "t2sda_infer: needs CONFIG, --checkpoint, --out and at least one INPUT\n");
    return usage(2);
  }
  if (strcmp(o->which, "student") != 0 && strcmp(o->which, "teacher") != 0)
    return fail("--which takes student or teacher"), 2;
  return 0;
}

/* ---- inputs ------------------------------------------------------------- */

/* The image files an INPUT folder or glob contributes: .png, .jpg, .jpeg (any case). */
static int has_image_suffix(const char *p) {
  static const char *const suffixes[] = {".png", ".jpg", ".jpeg"};
  size_t n = strlen(p);
  for (size_t k = 0; k < sizeof suffixes / sizeof *suffixes; k++) {
    size_t m = strlen(suffixes[k]);
    if (n > m && strcasecmp(p + n - m, suffixes[k]) == 0) return 1;
  }
  return 0;
}

static t2s_status list_push(file_list *l, const char *path, t2s_error *err) {
  if (l->count == l->cap) {
    int cap = l->cap ? 2 * l->cap : 64;
    char **p = realloc(l->paths, (size_t)cap * sizeof *p);
    if (p == NULL) return t2s_error_set(err, T2S_ERR_NOMEM, "out of memory listing the inputs");
    l->paths = p, l->cap = cap;
  }
  if ((l->paths[l->count] = strdup(path)) == NULL)
    return t2s_error_set(err, T2S_ERR_NOMEM, "out of memory listing the inputs");
  l->count++;
  return T2S_OK;
}

/* Expands one INPUT: a folder's images (sorted), a glob's image matches, or a file. */
static t2s_status expand_input(const char *in, file_list *l, t2s_error *err) {
  struct stat st;
  char pattern[4200];
  int is_dir = stat(in, &st) == 0 && S_ISDIR(st.st_mode);
  if (!is_dir && stat(in, &st) == 0) {
    if (!has_image_suffix(in))
      return t2s_error_set(err, T2S_ERR_INVALID, "input %s is not a .png, .jpg or .jpeg file; "
                           "convert it to PNG or JPEG, or pass a folder or glob of them", in);
    return list_push(l, in, err);
  }
  snprintf(pattern, sizeof pattern, is_dir ? "%s/*" : "%s", in);
  glob_t g;
  int rc = glob(pattern, 0, NULL, &g);
  int before = l->count;
  t2s_status s = T2S_OK;
  for (size_t i = 0; rc == 0 && s == T2S_OK && i < g.gl_pathc; i++)
    if (has_image_suffix(g.gl_pathv[i]) && stat(g.gl_pathv[i], &st) == 0 && !S_ISDIR(st.st_mode))
      s = list_push(l, g.gl_pathv[i], err);
  if (s == T2S_OK && l->count == before)
    s = t2s_error_set(err, T2S_ERR_IO, "input %s: %s", in,
                      is_dir ? "the folder holds no .png, .jpg or .jpeg file"
                      : rc == 0 ? "no file it matches is a .png, .jpg or .jpeg image"
                                : "no such file, and no file matches it as a glob");
  if (rc == 0) globfree(&g);
  return s;
}

/* The output stem of an input: its name without the extension ("a/b/x.jpeg" -> "x"). */
static void stem_of(const char *path, char *stem, size_t size) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  const char *dot = strrchr(base, '.');
  snprintf(stem, size, "%.*s", (int)(dot && dot > base ? (size_t)(dot - base) : strlen(base)), base);
}

/* Two inputs with one stem would write one output twice; existing outputs stay
 * unless --overwrite. Both checked before any image is processed. */
static t2s_status check_outputs(const file_list *l, const infer_opts *o, t2s_error *err) {
  for (int i = 0; i < l->count; i++) {
    char a[1024], b[1024], path[4400];
    stem_of(l->paths[i], a, sizeof a);
    for (int j = 0; j < i; j++) {
      stem_of(l->paths[j], b, sizeof b);
      if (strcmp(a, b) == 0)
        return t2s_error_set(err, T2S_ERR_INVALID, "inputs %s and %s would both write %s/%s.png; "
                             "run them into different --out folders", l->paths[j], l->paths[i], o->out, a);
    }
    const char *suffixes[3] = {"", "_overlay", "_confidence"};
    struct stat st;
    for (int k = 0; k < 3 && !o->overwrite; k++) {
      snprintf(path, sizeof path, "%s/%s%s.png", o->out, a, suffixes[k]);
      if (stat(path, &st) == 0)
        return t2s_error_set(err, T2S_ERR_INVALID, "%s already exists; pass --overwrite to replace "
                             "it or choose another --out", path);
    }
  }
  return T2S_OK;
}

/* ---- model -------------------------------------------------------------- */

static t2s_status load_weights(t2s_segmentor *m, const infer_opts *o, t2s_error *err) {
  t2s_ckpt_reader *r = t2s_ckpt_open(o->ckpt, err);
  if (r == NULL) return err->status;
  t2s_status s = t2s_ckpt_read_meta(r, NULL, NULL, NULL, err);
  if (s == T2S_OK && strcmp(o->which, "teacher") == 0)
    s = t2s_ckpt_read_params(r, "ema", &m->params, T2S_CKPT_TRAINABLE | T2S_CKPT_BUFFERS, err);
  else if (s == T2S_OK) {
    s = t2s_ckpt_read_params(r, "params", &m->params, T2S_CKPT_TRAINABLE, err);
    if (s == T2S_OK) s = t2s_ckpt_read_params(r, "buffers", &m->params, T2S_CKPT_BUFFERS, err);
  }
  t2s_ckpt_close(r);
  return s;
}

/* Class names for the colours: the (first) validation set's when the config names
 * readable ones, else Cityscapes' for 19 classes, else none (index colours). */
static void class_names(const t2s_train_config *cfg, int C, char (*names)[T2S_CLASS_NAME_MAX]) {
  for (int c = 0; c < C; c++) snprintf(names[c], T2S_CLASS_NAME_MAX, "class %d", c);
  glob_t g;
  t2s_val_set_ref sets[T2S_CFG_MAX_VAL_SETS];  /* the first validation set, of either form */
  if (t2s_run_val_sets(cfg, sets) > 0 && glob(sets[0].shards[0], 0, NULL, &g) == 0) {
    t2s_shard *s = t2s_shard_open(g.gl_pathv[0], NULL);
    globfree(&g);
    if (s != NULL && t2s_shard_info(s)->num_classes == C) {
      memcpy(names, t2s_shard_info(s)->class_names, (size_t)C * T2S_CLASS_NAME_MAX);
      t2s_shard_close(s);
      return;
    }
    if (s != NULL) t2s_shard_close(s);
  }
  if (C == T2S_CITYSCAPES_CLASSES)
    for (int c = 0; c < C; c++) snprintf(names[c], T2S_CLASS_NAME_MAX, "%s", t2s_cityscapes_class_names[c]);
}

/* ---- one image ---------------------------------------------------------- */

static t2s_status write_png(const char *dir, const char *stem, const char *suffix, const uint8_t *px,
                            int w, int h, int channels, t2s_error *err) {
  char path[4400], tmp[4500];
  snprintf(path, sizeof path, "%s/%s%s.png", dir, stem, suffix);
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  t2s_status s = t2s_png_write(tmp, px, w, h, channels, 8, err);
  if (s == T2S_OK && rename(tmp, path) != 0)
    s = t2s_error_set(err, T2S_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
  if (s != T2S_OK) remove(tmp);
  return s;
}

/* Argmax class, the probability of it (softmax over classes) and the overlay. */
static void decode(const float *z, int C, int64_t HW, const uint8_t *rgb,
                   char (*names)[T2S_CLASS_NAME_MAX], uint8_t *pred, uint8_t *conf, uint8_t *overlay) {
  for (int64_t i = 0; i < HW; i++) {
    int best = 0;
    for (int c = 1; c < C; c++)
      if (z[c * HW + i] > z[best * HW + i]) best = c;
    double sum = 0;
    for (int c = 0; c < C; c++) sum += exp((double)z[c * HW + i] - z[best * HW + i]);
    pred[i] = (uint8_t)best;
    conf[i] = (uint8_t)lround(255.0 / sum);
    uint8_t col[3];
    t2s_class_colour(names[best], best, col);
    for (int k = 0; k < 3; k++) overlay[3 * i + k] = (uint8_t)((rgb[3 * i + k] + col[k] + 1) / 2);
  }
}

typedef struct infer_run {
  t2s_ctx *ctx;
  const t2s_segmentor *m;
  t2s_eval_cfg ec;
  const infer_opts *o;
  char (*names)[T2S_CLASS_NAME_MAX];
} infer_run;

static t2s_status infer_one(infer_run *r, const char *path, int *w_out, int *h_out, t2s_error *err) {
  uint8_t *rgb = NULL;
  int w = 0, h = 0, C = r->m->cfg.num_classes;
  t2s_status s = t2s_image_read_rgb(path, &rgb, &w, &h, err);
  if (s != T2S_OK) return s;
  int64_t HW = (int64_t)w * h;
  float *x = t2s_host_scratch(r->ctx, (size_t)3 * HW * sizeof(float));
  uint8_t *pred = malloc((size_t)HW), *conf = malloc((size_t)HW), *overlay = malloc((size_t)HW * 3);
  t2s_tensor *logits = NULL;
  if (x && pred && conf && overlay) {
    for (int64_t p = 0; p < HW; p++)
      for (int c = 0; c < 3; c++) x[c * HW + p] = rgb[3 * p + c];
    t2s_normalize(x, 1, h, w);
    t2s_tensor *image = t2s_batch_images(r->ctx, x, 1, h, w);
    logits = image ? t2s_infer_logits(r->ctx, r->m, image, &r->ec) : NULL;
  }
  float *z = logits ? malloc((size_t)C * HW * sizeof *z) : NULL;
  if (z == NULL || t2s_tensor_download(r->ctx, logits, z) != T2S_OK)
    s = r->ctx->err.status ? t2s_error_set(err, r->ctx->err.status, "%s: inference failed: %s", path, r->ctx->err.msg)
                           : t2s_error_set(err, T2S_ERR_NOMEM, "%s: out of memory for a %dx%d image", path, w, h);
  if (s == T2S_OK) {
    decode(z, C, HW, rgb, r->names, pred, conf, overlay);
    if (r->o->label_ids)
      for (int64_t i = 0; i < HW; i++) pred[i] = t2s_cityscapes_label_ids[pred[i]];
    char stem[1024];
    stem_of(path, stem, sizeof stem);
    s = write_png(r->o->out, stem, "", pred, w, h, 1, err);
    if (s == T2S_OK) s = write_png(r->o->out, stem, "_overlay", overlay, w, h, 3, err);
    if (s == T2S_OK && r->o->confidence) s = write_png(r->o->out, stem, "_confidence", conf, w, h, 1, err);
  }
  free(z), free(pred), free(conf), free(overlay), free(rgb);
  t2s_ctx_end_pass(r->ctx);
  *w_out = w, *h_out = h;
  return s;
}

static t2s_status infer_all(infer_run *r, const file_list *l, t2s_error *err) {
  int prev_grad = t2s_set_grad_enabled(r->ctx, 0);
  r->ctx->training = 0;
  double t0 = t2s_clock_s();
  t2s_status s = T2S_OK;
  for (int i = 0; i < l->count && s == T2S_OK; i++) {
    int w = 0, h = 0;
    s = infer_one(r, l->paths[i], &w, &h, err);
    double dt = t2s_clock_s() - t0;
    if (s == T2S_OK && !r->o->quiet)
      fprintf(stderr, "[%d/%d] %s %dx%d  %.2f images/s\n", i + 1, l->count, l->paths[i], w, h,
              (i + 1) / (dt > 0 ? dt : 1e-9));
  }
  t2s_set_grad_enabled(r->ctx, prev_grad);
  if (s == T2S_OK)
    printf("t2sda_infer: %d image(s) in %.1f s (%.2f images/s), written to %s\n", l->count, t2s_clock_s() - t0,
           l->count / fmax(t2s_clock_s() - t0, 1e-9), r->o->out);
  return s;
}

/* ---- main --------------------------------------------------------------- */

static t2s_status run(const infer_opts *o, t2s_train_config *cfg, t2s_error *err) {
  file_list l = {0};
  t2s_status s = T2S_OK;
  for (int i = 0; i < o->n_inputs && s == T2S_OK; i++) s = expand_input(o->inputs[i], &l, err);
  if (s == T2S_OK && o->label_ids && cfg->model.num_classes != T2S_CITYSCAPES_CLASSES)
    s = t2s_error_set(err, T2S_ERR_INVALID, "--label-ids maps the 19 Cityscapes train ids, but "
                      "model.num_classes is %d; drop --label-ids", cfg->model.num_classes);
  if (s == T2S_OK && mkdir(o->out, 0775) != 0 && errno != EEXIST)
    s = t2s_error_set(err, T2S_ERR_IO, "cannot create --out %s: %s", o->out, strerror(errno));
  if (s == T2S_OK) s = check_outputs(&l, o, err);
  t2s_model_cfg mc;
  t2s_segmentor m;
  int built = 0;
  if (s == T2S_OK) s = t2s_model_cfg_from_train_config(cfg, &mc, err);
  if (s == T2S_OK) s = t2s_segmentor_build(&m, &mc, T2S_DEV_CPU, 0, err);
  built = s == T2S_OK;
  if (s == T2S_OK) s = load_weights(&m, o, err);
  t2s_ctx *ctx = s == T2S_OK ? t2s_ctx_create(T2S_DEV_CPU, (size_t)256 << 20, err) : NULL;
  if (s == T2S_OK && ctx == NULL) s = err->status;
  char(*names)[T2S_CLASS_NAME_MAX] = calloc(T2S_MAX_CLASSES, T2S_CLASS_NAME_MAX);
  if (s == T2S_OK && names == NULL) s = t2s_error_set(err, T2S_ERR_NOMEM, "out of memory");
  if (s == T2S_OK) {
    class_names(cfg, m.cfg.num_classes, names);
    infer_run r = {ctx, &m,
                   {.mode = cfg->evaluation.mode,
                    .crop = {cfg->evaluation.crop[0], cfg->evaluation.crop[1]},
                    .stride = {cfg->evaluation.stride[0], cfg->evaluation.stride[1]},
                    .rank = 0, .world_size = 1,
                    .hrda_enabled = cfg->model.hrda.enabled,
                    .hrda = t2s_hrda_cfg_from_train_config(cfg)},
                   o, names};
    s = infer_all(&r, &l, err);
  }
  free(names);
  if (ctx) t2s_ctx_destroy(ctx);
  if (built) t2s_segmentor_free(&m);
  for (int i = 0; i < l.count; i++) free(l.paths[i]);
  free(l.paths);
  return s;
}

int main(int argc, char **argv) {
  /* line-buffered even into a file or pipe: a run killed outright (kill -9, OOM) must
   * not lose the progress lines it printed last */
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc >= 2 && strcmp(argv[1], "--version") == 0) return puts(T2S_VERSION_LINE("t2sda_infer")) == EOF;
  if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) return usage(0);
  infer_opts o;
  int rc = parse_args(argc, argv, &o);
  char mode_override[64];
  if (rc == 0 && o.mode) {
    /* --mode is a shorthand for the override evaluation.mode=...; same checks */
    snprintf(mode_override, sizeof mode_override, "evaluation.mode=%s", o.mode);
    o.over[o.n_over++] = mode_override;
  }
  t2s_train_config *cfg = rc == 0 ? malloc(sizeof *cfg) : NULL;
  t2s_error err = {0};
  if (rc == 0 && cfg == NULL) rc = fail("out of memory");
  if (rc == 0 && t2s_train_config_load(cfg, o.config, o.over, o.n_over, &err) != T2S_OK) rc = fail(err.msg);
  if (rc == 0 && run(&o, cfg, &err) != T2S_OK) rc = fail(err.msg);
  free(cfg);
  free(o.over);
  free(o.inputs);
  return rc;
}
