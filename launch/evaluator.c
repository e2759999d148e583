#include "launch/evaluator.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/augment.h"
#include "data/png_io.h"
#include "launch/device_batch.h"
#include "launch/progress.h"

void t2s_class_colour(const char *name, int index, uint8_t rgb[3]) {
  static const struct { const char *name; uint8_t rgb[3]; } palette[] = {
      {"road", {128, 64, 128}},       {"sidewalk", {244, 35, 232}}, {"building", {70, 70, 70}},
      {"wall", {102, 102, 156}},      {"fence", {190, 153, 153}},   {"pole", {153, 153, 153}},
      {"traffic light", {250, 170, 30}}, {"traffic sign", {220, 220, 0}},
      {"vegetation", {107, 142, 35}}, {"terrain", {152, 251, 152}}, {"sky", {70, 130, 180}},
      {"person", {220, 20, 60}},      {"rider", {255, 0, 0}},       {"car", {0, 0, 142}},
      {"truck", {0, 0, 70}},          {"bus", {0, 60, 100}},        {"train", {0, 80, 100}},
      {"motorcycle", {0, 0, 230}},    {"bicycle", {119, 11, 32}},
  };
  for (size_t i = 0; i < sizeof palette / sizeof palette[0]; i++)
    if (strcmp(palette[i].name, name) == 0) {
      memcpy(rgb, palette[i].rgb, 3);
      return;
    }
  rgb[0] = (uint8_t)(37 * index + 50);
  rgb[1] = (uint8_t)(91 * index + 20);
  rgb[2] = (uint8_t)(53 * index + 100);
}

static t2s_tensor *forward_logits(t2s_ctx *ctx, const t2s_segmentor *m, t2s_tensor *x, int h, int w) {
  t2s_seg_out out;
  if (t2s_segmentor_forward(ctx, m, x, &out) != T2S_OK) return NULL;
  return t2s_resize_bilinear(ctx, out.logits, h, w, 0);
}


/* Copies rows/cols [y0, y0+h) x [x0, x0+w) of an (1, C, H, W) image given by its host
 * NCHW values into a new tensor of the context (uploaded on CUDA). */
static t2s_tensor *crop_window(t2s_ctx *ctx, const float *x, int64_t C, int64_t H, int64_t W, int y0,
                               int x0, int h, int w) {
  t2s_tensor *y = t2s_host_batch_new(ctx, 1, C, h, w);
  if (y == NULL) return NULL;
  for (int64_t c = 0; c < C; c++)
    for (int r = 0; r < h; r++)
      memcpy(t2s_f32(y) + (c * h + r) * w, x + (c * H + y0 + r) * W + x0, (size_t)w * sizeof(float));
  return t2s_tensor_to_device(ctx, y);
}

t2s_tensor *t2s_infer_logits(t2s_ctx *ctx, const t2s_segmentor *m, t2s_tensor *image,
                             const t2s_eval_cfg *cfg) {
  int H = (int)image->shape[2], W = (int)image->shape[3];
  if (cfg->hrda_enabled) {
    /* HRDA's test_cfg is mode whole around its own context + detail-slide inference. Its
     * grids need sides that are multiples of output stride / context scale (8): another
     * size is resized up to the next multiple and the logits back to the image. */
    int a = (int)lroundf((float)t2s_segmentor_output_stride(m) / cfg->hrda.context_scale);
    int h2 = a > 0 ? (H + a - 1) / a * a : H, w2 = a > 0 ? (W + a - 1) / a * a : W;
    t2s_tensor *x = h2 == H && w2 == W ? image : t2s_resize_bilinear(ctx, image, h2, w2, 0);
    t2s_hrda_out ho;
    if (x == NULL || t2s_hrda_infer(ctx, m, &cfg->hrda, x, &ho) != T2S_OK) return NULL;
    return t2s_resize_bilinear(ctx, ho.fused, H, W, 0);
  }
  if (cfg->mode == T2S_INFER_WHOLE) return forward_logits(ctx, m, image, H, W);
  /* mmseg slide_inference: windows of crop size every stride, the last one moved
   * back inside the image; overlapping logits averaged. The averaging is host code:
   * on CUDA each window goes up and its logits come back (evaluation only). */
  int cw = cfg->crop[0] < W ? cfg->crop[0] : W, ch = cfg->crop[1] < H ? cfg->crop[1] : H;
  int sw = cfg->stride[0], sh = cfg->stride[1];
  int gh = (H - ch + sh - 1 > 0 ? (H - ch + sh - 1) / sh : 0) + 1;
  int gw = (W - cw + sw - 1 > 0 ? (W - cw + sw - 1) / sw : 0) + 1;
  int C = m->cfg.num_classes;
  int on_host = ctx->device == T2S_DEV_CPU;
  int64_t sum_shape[4] = {1, C, H, W};
  t2s_tensor *sum = on_host ? t2s_tensor_new4(ctx, T2S_F32, 1, C, H, W)
                            : t2s_host_view(ctx, T2S_F32, 4, sum_shape,
                                            t2s_host_scratch(ctx, (size_t)C * H * W * sizeof(float)));
  float *count = on_host ? t2s_scratch(ctx, (size_t)H * W * sizeof(float))
                         : t2s_host_scratch(ctx, (size_t)H * W * sizeof(float));
  const float *img = (const float *)t2s_tensor_host_data(ctx, image);
  if (sum == NULL || sum->data == NULL || count == NULL || img == NULL) return NULL;
  memset(sum->data, 0, (size_t)C * H * W * sizeof(float));
  memset(count, 0, (size_t)H * W * sizeof(float));
  for (int gy = 0; gy < gh; gy++)
    for (int gx = 0; gx < gw; gx++) {
      int y1 = gy * sh, x1 = gx * sw;
      int y2 = y1 + ch < H ? y1 + ch : H, x2 = x1 + cw < W ? x1 + cw : W;
      y1 = y2 - ch > 0 ? y2 - ch : 0;
      x1 = x2 - cw > 0 ? x2 - cw : 0;
      t2s_tensor *win = crop_window(ctx, img, image->shape[1], H, W, y1, x1, y2 - y1, x2 - x1);
      const float *lg = (const float *)t2s_tensor_host_data(ctx, win ? forward_logits(ctx, m, win, y2 - y1, x2 - x1) : NULL);
      if (lg == NULL) return NULL;
      for (int c = 0; c < C; c++)
        for (int r = y1; r < y2; r++)
          for (int q = x1; q < x2; q++)
            t2s_f32(sum)[((int64_t)c * H + r) * W + q] += lg[((int64_t)c * (y2 - y1) + r - y1) * (x2 - x1) + q - x1];
      for (int r = y1; r < y2; r++)
        for (int q = x1; q < x2; q++) count[(int64_t)r * W + q] += 1.0f;
    }
  for (int c = 0; c < C; c++)
    for (int64_t i = 0; i < (int64_t)H * W; i++) t2s_f32(sum)[(int64_t)c * H * W + i] /= count[i];
  return on_host ? sum : t2s_tensor_upload(ctx, sum);
}

static void argmax_classes(const t2s_tensor *logits, const float *z, uint8_t *pred) {
  int64_t C = logits->shape[1], HW = logits->shape[2] * logits->shape[3];
  for (int64_t i = 0; i < HW; i++) {
    int best = 0;
    for (int64_t c = 1; c < C; c++)
      if (z[c * HW + i] > z[best * HW + i]) best = (int)c;
    pred[i] = (uint8_t)best;
  }
}

static t2s_status save_prediction(const char *dir, const char *name, const uint8_t *pred, int w, int h,
                                  const t2s_shard_meta *meta, t2s_error *err) {
  uint8_t *rgb = malloc((size_t)w * h * 3);
  if (rgb == NULL) return t2s_error_set(err, T2S_ERR_NOMEM, "out of memory for a prediction image");
  for (int64_t i = 0; i < (int64_t)w * h; i++) t2s_class_colour(meta->class_names[pred[i]], pred[i], rgb + 3 * i);
  char path[1024];
  snprintf(path, sizeof path, "%s/%s.png", dir, name);
  t2s_status st = t2s_png_write_rgb(path, rgb, w, h, err);
  free(rgb);
  return st;
}

/* The label PNG of one image at its original size: the logits z (C x h x w) are
 * upsampled when the importer had resized the image, else pred is written as it is. */
static t2s_status write_label_png(t2s_shard *s, int64_t local, const float *z, int C, int h, int w,
                                  const uint8_t *pred, const t2s_eval_cfg *cfg, t2s_error *err) {
  int oh = h, ow = w;
  t2s_shard_orig_size(s, local, &oh, &ow);
  char name[256];
  t2s_status st = t2s_shard_read_name(s, local, name, sizeof name, err);
  uint8_t *out = st == T2S_OK ? malloc((size_t)oh * ow) : NULL;
  if (st == T2S_OK && out == NULL)
    st = t2s_error_set(err, T2S_ERR_NOMEM, "out of memory for a %dx%d label image", ow, oh);
  if (st == T2S_OK && oh == h && ow == w) memcpy(out, pred, (size_t)h * w);
  else if (st == T2S_OK) st = t2s_pred_upsample_argmax(z, C, h, w, oh, ow, out, err);
  if (st == T2S_OK) st = t2s_pred_to_format(out, (int64_t)oh * ow, C, cfg->labels, err);
  if (st == T2S_OK) st = t2s_pred_write_png(cfg->label_dir, name, out, ow, oh, err);
  free(out);
  return st;
}

/* Training refuses labels outside the classes; evaluation must too, or a wrong
 * class mapping gives a plausible mIoU over the pixels that happen to fit. */
static t2s_status check_labels(t2s_shard *s, int64_t local, const uint8_t *label, int64_t n,
                               const t2s_confusion *conf, const char *what, t2s_error *err) {
  for (int64_t p = 0; p < n; p++) {
    if (label[p] < conf->num_classes || label[p] == conf->ignore_index) continue;
    char name[256] = "?";
    t2s_error e = {0};
    t2s_shard_read_name(s, local, name, sizeof name, &e);
    return t2s_error_set(err, T2S_ERR_INVALID,
                         "%s: %s image %lld ('%s') has label %d at pixel %lld, but the classes are "
                         "0..%d and the ignore index is %d: the labels were mapped for another class list "
                         "(re-import them with the right mapping, or fix data.ignore_index)",
                         what, t2s_shard_path(s), (long long)local, name, label[p], (long long)p,
                         conf->num_classes - 1, conf->ignore_index);
  }
  return T2S_OK;
}

t2s_status t2s_evaluate(t2s_ctx *ctx, const t2s_segmentor *m, t2s_dataset *val,
                        const t2s_eval_cfg *cfg, t2s_confusion *conf, t2s_error *err) {
  const char *what = cfg->what ? cfg->what : "data.val.shards";
  if (val->count == 0)
    return t2s_error_set(err, T2S_ERR_INVALID, "%s: %s holds no images: nothing to evaluate on "
                         "(point %s at the validation shards)", what,
                         val->n_shards > 0 ? t2s_shard_path(val->shards[0]) : "the pattern", what);
  if (val->meta.num_classes != m->cfg.num_classes)
    return t2s_error_set(err, T2S_ERR_INVALID, "validation data has %d classes but the model has %d "
                         "(%s vs model.num_classes)", val->meta.num_classes, m->cfg.num_classes, what);
  /* unlabelled shards (e.g. the Cityscapes test split) only give label PNGs, no metrics */
  int labelled = val->meta.has_label;
  if (!labelled && (cfg->labels == T2S_LABELS_NONE || cfg->label_dir == NULL))
    return t2s_error_set(err, T2S_ERR_INVALID, "%s: the shards have no /label: evaluation needs labelled "
                         "data (t2sda_eval --format cityscapes|trainid --out-dir DIR writes the "
                         "predictions of unlabelled shards, without metrics)", what);
  int prev_grad = t2s_set_grad_enabled(ctx, 0), prev_train = ctx->training;
  ctx->training = 0;
  t2s_status st = T2S_OK;
  int saved = 0;
  t2s_progress prog;
  int64_t share = (val->count - cfg->rank + cfg->world_size - 1) / cfg->world_size, done = 0;
  t2s_progress_start(&prog, cfg->progress, "evaluation", share, 10.0);
  for (int64_t i = cfg->rank; i < val->count && st == T2S_OK; i += cfg->world_size) {
    int64_t local = 0;
    t2s_shard *s = t2s_dataset_locate(val, i, &local);
    const t2s_shard_meta *sm = t2s_shard_info(s);
    int h = sm->height, w = sm->width;
    uint8_t *rgb = malloc((size_t)h * w * 3), *label = labelled ? malloc((size_t)h * w) : NULL;
    uint8_t *pred = malloc((size_t)h * w);
    if (!rgb || (labelled && !label) || !pred) st = t2s_error_set(err, T2S_ERR_NOMEM, "out of memory evaluating image %lld", (long long)i);
    if (st == T2S_OK) st = t2s_shard_read(s, local, rgb, label, err);
    if (st == T2S_OK && labelled) st = check_labels(s, local, label, (int64_t)h * w, conf, what, err);
    /* the normalised image is made on the host and uploaded once on CUDA */
    float *x = st == T2S_OK ? t2s_host_scratch(ctx, (size_t)3 * h * w * sizeof(float)) : NULL;
    t2s_tensor *image = NULL;
    if (x) {
      for (int64_t p = 0; p < (int64_t)h * w; p++)
        for (int c = 0; c < 3; c++) x[(int64_t)c * h * w + p] = rgb[3 * p + c];
      t2s_normalize(x, 1, h, w);
      image = t2s_batch_images(ctx, x, 1, h, w);
    }
    if (image) {
      t2s_tensor *logits = t2s_infer_logits(ctx, m, image, cfg);
      const float *z = (const float *)t2s_tensor_host_data(ctx, logits);
      if (z == NULL) st = t2s_error_set(err, ctx->err.status, "evaluating image %lld: %s", (long long)i, ctx->err.msg);
      else {
        argmax_classes(logits, z, pred);
        if (labelled) t2s_confusion_add(conf, pred, label, (int64_t)h * w);
        if (cfg->labels != T2S_LABELS_NONE && cfg->label_dir)
          st = write_label_png(s, local, z, (int)logits->shape[1], h, w, pred, cfg, err);
        if (st == T2S_OK && saved < cfg->save_predictions && cfg->pred_dir) {
          char name[256];
          if (t2s_shard_read_name(s, local, name, sizeof name, err) == T2S_OK)
            st = save_prediction(cfg->pred_dir, name, pred, w, h, sm, err);
          saved++;
        }
      }
    } else if (st == T2S_OK) {
      st = t2s_error_set(err, ctx->err.status, "%s", ctx->err.msg);
    }
    free(rgb);
    free(label);
    free(pred);
    t2s_ctx_end_pass(ctx);
    if (st == T2S_OK) t2s_progress_update(&prog, ++done);
  }
  t2s_set_grad_enabled(ctx, prev_grad);
  ctx->training = prev_train;
  if (st == T2S_OK && cfg->allreduce_i64)
    st = cfg->allreduce_i64(cfg->allreduce_user, conf->counts,
                            (size_t)conf->num_classes * (size_t)conf->num_classes, err);
  return st;
}
