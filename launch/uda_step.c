/* One UDA iteration; see launch/uda_step.h and docs/method.md. Per rank the batch is
 * B source and B target crops (f32 NCHW RGB in [0, 255]); global sample index of
 * local image k is rank * B + k, which keys every random choice. Loss terms are
 * back-propagated one after another (gradients accumulate); the gradient all-reduce
 * is armed before the last backward. Every statistic goes through
 * t2s_batch_stats_reduce on every rank in the same order. */
#include "launch/uda_step.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/device.h"
#include "core/optim.h"
#include "launch/device_batch.h"
#include "launch/trainer.h"
#include "losses/batch_stats.h"
#include "losses/classmix.h"
#include "losses/feature_distance.h"
#include "losses/pseudo_target.h"

enum { STREAM_MIX = 2 };

t2s_status t2s_uda_init(t2s_uda *u, const t2s_train_config *c, int rank, int world_size,
                        t2s_error *err) {
  memset(u, 0, sizeof *u);
  u->type = c->uda.type;
  u->num_classes = c->model.num_classes;
  u->ignore_index = c->data.ignore_index;
  u->seed = (uint64_t)c->seed;
  u->rank = rank;
  u->world_size = world_size;
  u->samples_per_gpu = c->data.samples_per_gpu;
  u->alpha = c->uda.alpha;
  u->teacher_bn_batch = c->uda.teacher_bn == T2S_CFG_TEACHER_BN_BATCH;
  u->pl = t2s_pseudo_label_cfg_defaults();
  u->pl.threshold = (float)c->uda.pseudo_threshold;
  u->pl.ignore_top = c->uda.pseudo_weight_ignore_top;
  u->pl.ignore_bottom = c->uda.pseudo_weight_ignore_bottom;
  u->jitter = t2s_jitter_cfg_default();
  u->jitter.brightness = u->jitter.contrast = u->jitter.saturation = u->jitter.hue =
      c->uda.color_jitter_strength;
  u->jitter.prob = c->uda.color_jitter_probability;
  u->blur = t2s_blur_cfg_default();
  u->use_blur = c->uda.blur;
  u->pseudo_target = c->uda.pseudo_target.type;
  u->fda_beta = c->uda.pseudo_target.beta;
  u->color_lab = c->uda.pseudo_target.color_space == T2S_CFG_CS_LAB;
  u->lambda_fd = c->uda.type == T2S_CFG_UDA_SOURCE_ONLY ? 0.0 : c->uda.imnet_feature_dist_lambda;
  for (int i = 0; i < c->uda.n_imnet_feature_dist_classes; i++)
    u->fd_class[c->uda.imnet_feature_dist_classes[i]] = 1;
  u->lambda_t2s = c->uda.t2s.lambda;
  u->pull = t2s_pull_cfg_defaults();
  u->pull.num_queries = c->uda.t2s.num_queries;
  u->pull.num_negatives = c->uda.t2s.num_negatives;
  u->pull.tau = (float)c->uda.t2s.tau;
  u->pull.negatives = c->uda.t2s.negatives == T2S_CFG_NEG_PROTOTYPES ? T2S_PULL_NEG_PROTOTYPES : T2S_PULL_NEG_KEYS;
  u->pull.label_down = c->uda.t2s.label_down == T2S_CFG_LD_MAJORITY ? T2S_LABEL_DOWN_MAJORITY : T2S_LABEL_DOWN_NEAREST;
  u->pull.majority_ratio = (float)c->uda.t2s.majority_ratio;
  u->pull.proto_momentum = (float)c->uda.t2s.proto_momentum;
  u->pull.ignore_index = c->data.ignore_index;
  u->rw = t2s_reweight_cfg_defaults();
  u->rw.enabled = c->uda.reweight.enabled;
  u->rw.momentum = c->uda.reweight.momentum;
  u->rw.gamma = c->uda.reweight.gamma;
  u->rw.apply_to = c->uda.reweight.apply_to == T2S_CFG_RW_ALL ? T2S_REWEIGHT_ALL : T2S_REWEIGHT_T2S_ONLY;
  u->rw.ignore_index = c->data.ignore_index;
  t2s_status st = t2s_reweight_init(&u->rw_state, u->num_classes, err);
  if (st == T2S_OK && u->type == T2S_CFG_UDA_T2SDA)
    st = t2s_prototypes_init(&u->protos, u->num_classes, c->uda.t2s.proj_dim, u->pull.proto_momentum, err);
  if (st == T2S_OK && u->type != T2S_CFG_UDA_SOURCE_ONLY) {
    t2s_pseudo_target_cfg pc = t2s_pseudo_target_cfg_defaults();
    pc.method = u->pseudo_target == T2S_CFG_PT_FOURIER ? T2S_PT_FOURIER
                : u->pseudo_target == T2S_CFG_PT_COLOR ? T2S_PT_COLOR : T2S_PT_NONE;
    pc.beta = (float)u->fda_beta;
    pc.color_space = u->color_lab ? T2S_PT_LAB : T2S_PT_RGB;
    if (u->type == T2S_CFG_UDA_T2SDA)
      st = t2s_pseudo_target_create((t2s_pseudo_target **)&u->fourier, &pc, c->data.crop[1], c->data.crop[0], err);
  }
  return st;
}

void t2s_uda_free(t2s_uda *u) {
  t2s_reweight_free(&u->rw_state);
  if (u->protos.proto) t2s_prototypes_free(&u->protos);
  if (u->fourier) t2s_pseudo_target_destroy(u->fourier);
  memset(u, 0, sizeof *u);
}

int t2s_uda_state_arrays(t2s_uda *u, t2s_state_array *out, int max) {
  int n = 0;
  int64_t C = u->num_classes;
  if (u->rw_state.score && n + 2 <= max) {
    out[n++] = (t2s_state_array){"reweight/score", T2S_CKPT_F64, 1, {C, 0}, u->rw_state.score};
    out[n++] = (t2s_state_array){"reweight/weight", T2S_CKPT_F32, 1, {C, 0}, u->rw_state.weight};
  }
  if (u->protos.proto && n + 2 <= max) {
    out[n++] = (t2s_state_array){"prototypes/value", T2S_CKPT_F32, 2, {C, u->protos.dim}, u->protos.proto};
    out[n++] = (t2s_state_array){"prototypes/seen", T2S_CKPT_U8, 1, {C, 0}, u->protos.seen};
  }
  return n;
}

/* ---- helpers ----
 * Where the run is on CUDA, images and labels live on the device (NHWC images) and
 * the host keeps views of the loader's batch for the host halves of the step: pixel
 * counts, majority label downsampling and the Fourier pseudo-target image (FFTW).
 * launch/device_batch.h is the edge; on the CPU every helper is the former host copy. */

static int on_cpu(const t2s_ctx *ctx) { return ctx->device == T2S_DEV_CPU; }

static t2s_tensor *normalized(t2s_ctx *ctx, const t2s_tensor *raw) {
  if (raw == NULL) return NULL;
  t2s_tensor *x = t2s_tensor_new(ctx, T2S_F32, 4, raw->shape);
  if (x == NULL || t2s_device_copy(ctx->device, x->data, raw->device, raw->data,
                                   (size_t)t2s_numel(raw) * sizeof(float), &ctx->err) != T2S_OK)
    return NULL;
  return t2s_batch_normalize(ctx, x) == T2S_OK ? x : NULL;
}

/* A host (N, H, W) u8 view of the loader's labels, or the tensor itself on the CPU. */
static t2s_tensor *host_labels(t2s_ctx *ctx, t2s_tensor *y, const uint8_t *host, int n, int h, int w) {
  if (on_cpu(ctx) || y == NULL) return y;
  int64_t shape[3] = {n, h, w};
  return t2s_host_view(ctx, T2S_U8, 3, shape, (void *)host);
}

/* A host (N, 3, H, W) f32 view of the loader's images, or the tensor itself on the CPU. */
static t2s_tensor *host_images(t2s_ctx *ctx, t2s_tensor *x, const float *host, int n, int h, int w) {
  if (on_cpu(ctx) || x == NULL) return x;
  int64_t shape[4] = {n, 3, h, w};
  return t2s_host_view(ctx, T2S_F32, 4, shape, (void *)host);
}

/* Labels at feature resolution. Nearest is a core op (device slot); majority is host
 * code (losses/pull_loss.c), so on CUDA it runs in a short-lived CPU context on the
 * host labels and the (small) result is uploaded. */
static t2s_tensor *labels_down(t2s_ctx *ctx, t2s_tensor *y, t2s_tensor *y_host, int h, int w,
                               t2s_label_down mode, float ratio, int ignore) {
  if (on_cpu(ctx) || mode == T2S_LABEL_DOWN_NEAREST)
    return t2s_labels_downsample(ctx, y, h, w, mode, ratio, ignore);
  if (!t2s_ctx_ok(ctx) || y_host == NULL) return NULL;
  t2s_error e = {0};
  t2s_ctx *host = t2s_ctx_create(T2S_DEV_CPU, (size_t)1 << 20, &e);
  if (host == NULL) return t2s_ctx_fail(ctx, e.status, "labels_downsample on the host: %s", e.msg);
  t2s_tensor *small = t2s_labels_downsample(host, y_host, h, w, mode, ratio, ignore);
  t2s_tensor *out = small ? t2s_tensor_upload(ctx, small) : t2s_ctx_fail(ctx, host->err.status, "%s", host->err.msg);
  t2s_ctx_destroy(host);
  return out;
}

/* CE over labels with the global count of non-ignored pixels as the divisor
 * (each rank's share x world size, so averaged gradients equal the full batch's).
 * labels_host: the labels in host memory, or NULL (then copied from the device). */
static t2s_tensor *seg_ce(t2s_ctx *ctx, const t2s_uda *u, t2s_tensor *logits, t2s_tensor *labels,
                          const uint8_t *labels_host, t2s_tensor *pixel_weight, t2s_tensor *class_weight) {
  if (logits == NULL || labels == NULL) return NULL;
  t2s_tensor *up = t2s_resize_bilinear(ctx, logits, (int)labels->shape[1], (int)labels->shape[2], 0);
  double valid = 0;
  const uint8_t *y = labels_host ? labels_host : labels->device == T2S_DEV_CPU ? t2s_u8(labels) : NULL;
  if (y == NULL) {
    /* one byte per pixel back to the host (the ClassMix labels on CUDA) */
    uint8_t *copy = t2s_host_scratch(ctx, (size_t)t2s_numel(labels) + 1);
    if (copy == NULL || t2s_tensor_download(ctx, labels, copy) != T2S_OK) return NULL;
    y = copy;
  }
  for (int64_t i = 0; i < t2s_numel(labels); i++) valid += y[i] != u->ignore_index;
  if (t2s_batch_stats_reduce(ctx, &valid, 1) != T2S_OK) return NULL;
  t2s_ce_args a = {u->ignore_index, T2S_CE_MEAN_VALID, valid > 0 ? valid / u->world_size : 1.0};
  return t2s_cross_entropy(ctx, up, labels, pixel_weight, class_weight, &a);
}

static t2s_status backward_term(t2s_trainer *t, t2s_tensor *loss, int last, t2s_error *err) {
  t2s_ctx *ctx = t->ctx;
  if (!t2s_ctx_ok(ctx) || loss == NULL)
    return t2s_error_set(err, ctx->err.status ? ctx->err.status : T2S_ERR_INVALID, "%s", ctx->err.msg);
  t2s_status st = t2s_grad_sync_begin(t->sync, ctx, last, err);
  if (st == T2S_OK && t2s_backward(ctx, loss, 1.0f) != T2S_OK)
    st = t2s_error_set(err, ctx->err.status, "%s", ctx->err.msg);
  return st;
}

static double value(t2s_ctx *ctx, const t2s_tensor *loss) { return t2s_tensor_scalar(ctx, loss); }

/* Teacher or frozen network forward without the tape, BN on running statistics. */
static t2s_status frozen_forward(t2s_ctx *ctx, const t2s_segmentor *m, t2s_tensor *x, t2s_seg_out *out) {
  int prev_grad = t2s_set_grad_enabled(ctx, 0), prev_train = ctx->training;
  ctx->training = 0;
  t2s_status st = t2s_segmentor_forward(ctx, m, x, out);
  ctx->training = prev_train;
  t2s_set_grad_enabled(ctx, prev_grad);
  return st;
}

/* The EMA teacher, without the tape and without dropout. Batch norm uses the
 * statistics of the batch it sees (uda.teacher_bn: batch), as DACS/DAFormer's
 * teacher does in train mode: on target crops it normalises with target statistics.
 * Its running statistics are overwritten from the student at every EMA update. */
static t2s_status teacher_forward(t2s_ctx *ctx, const t2s_uda *u, const t2s_segmentor *m, t2s_tensor *x,
                                  t2s_seg_out *out) {
  if (!u->teacher_bn_batch) return frozen_forward(ctx, m, x, out);
  int prev_grad = t2s_set_grad_enabled(ctx, 0), prev_drop = ctx->no_dropout;
  ctx->no_dropout = 1;
  t2s_status st = t2s_segmentor_forward(ctx, m, x, out);
  ctx->no_dropout = prev_drop;
  t2s_set_grad_enabled(ctx, prev_grad);
  return st;
}

/* ---- the iteration ---- */

t2s_status t2s_uda_step(t2s_trainer *t, const t2s_batch *src, const t2s_batch *tgt,
                        t2s_uda_losses *out, t2s_error *err) {
  t2s_ctx *ctx = t->ctx;
  t2s_uda *u = &t->uda;
  const int B = src->n, H = src->h, W = src->w;
  const int64_t iter = src->iteration, offset = (int64_t)u->rank * B;
  const int adapt = u->type != T2S_CFG_UDA_SOURCE_ONLY, pull = u->type == T2S_CFG_UDA_T2SDA;
  const int n_backward = 1 + adapt + pull;
  int done = 0;
  memset(out, 0, sizeof *out);
  if (adapt && (tgt == NULL || tgt->n != B || tgt->h != H || tgt->w != W))
    return t2s_error_set(err, T2S_ERR_INVALID, "the target batch does not match the source batch");

  t2s_status st = T2S_OK;
  /* 1. EMA teacher: a copy at iteration 0, then alpha_t = min(1 - 1/(t+1), alpha) */
  if (adapt && (st = t2s_ema_update(&t->teacher.params, &t->student.params, u->alpha, iter, 1, err)))
    return st;

  t2s_tensor *xs_raw = t2s_batch_images(ctx, src->images, B, H, W);
  t2s_tensor *ys = t2s_batch_labels(ctx, src->labels, B, H, W);
  t2s_tensor *ys_h = host_labels(ctx, ys, src->labels, B, H, W);
  t2s_tensor *xs = xs_raw ? normalized(ctx, xs_raw) : NULL;
  t2s_tensor *cw = u->rw.apply_to == T2S_REWEIGHT_ALL && u->rw.enabled ? t2s_reweight_tensor(ctx, &u->rw_state) : NULL;

  /* 3 (+6). source CE, with the ImageNet feature distance on the same forward */
  t2s_seg_out so;
  if (t2s_segmentor_forward(ctx, &t->student, xs, &so) != T2S_OK)
    return t2s_error_set(err, ctx->err.status, "%s", ctx->err.msg);
  t2s_tensor *l_src = seg_ce(ctx, u, so.logits, ys, src->labels, NULL, cw), *loss = l_src;
  if (t->have_imnet && u->lambda_fd > 0 && l_src) {
    t2s_seg_out io;
    if (frozen_forward(ctx, &t->imnet, xs, &io) != T2S_OK) return t2s_error_set(err, ctx->err.status, "%s", ctx->err.msg);
    t2s_tensor *ys_small = labels_down(ctx, ys, ys_h, (int)so.features->shape[2], (int)so.features->shape[3],
                                       T2S_LABEL_DOWN_MAJORITY, 0.75f, u->ignore_index);
    t2s_feature_distance_cfg fc = t2s_feature_distance_cfg_defaults();
    fc.enabled = 1;
    fc.lambda = (float)u->lambda_fd;
    memcpy(fc.things, u->fd_class, sizeof fc.things);
    fc.ignore_index = u->ignore_index;
    t2s_tensor *l_fd = t2s_feature_distance(ctx, so.features, io.features, ys_small, &fc, u->world_size);
    out->fd = value(ctx, l_fd);
    loss = t2s_add(ctx, l_src, t2s_scale(ctx, l_fd, (float)u->lambda_fd));
  }
  out->src = value(ctx, l_src);
  if ((st = backward_term(t, loss, ++done == n_backward, err))) return st;

  if (adapt) {
    /* 4. pseudo-labels from the teacher on the clean target crop */
    t2s_tensor *xt_raw = t2s_batch_images(ctx, tgt->images, B, H, W);
    t2s_tensor *xt = xt_raw ? normalized(ctx, xt_raw) : NULL;
    t2s_seg_out to;
    if (teacher_forward(ctx, u, &t->teacher, xt, &to) != T2S_OK) return t2s_error_set(err, ctx->err.status, "%s", ctx->err.msg);
    int prev = t2s_set_grad_enabled(ctx, 0);
    t2s_tensor *lt = t2s_resize_bilinear(ctx, to.logits, H, W, 0);
    t2s_set_grad_enabled(ctx, prev);
    int64_t map_shape[3] = {B, H, W};
    t2s_tensor *yhat = t2s_batch_labels(ctx, NULL, B, H, W), *pw = t2s_tensor_new(ctx, T2S_F32, 3, map_shape);
    if (lt == NULL || yhat == NULL || pw == NULL) return t2s_error_set(err, ctx->err.status, "%s", ctx->err.msg);
    if ((st = t2s_pseudo_labels(ctx, &u->pl, lt, yhat, pw, NULL, &out->q))) return t2s_error_set(err, st, "%s", ctx->err.msg);

    /* 5. ClassMix + colour jitter + blur */
    t2s_tensor *mask = t2s_batch_labels(ctx, NULL, B, H, W), *y_mix = t2s_batch_labels(ctx, NULL, B, H, W);
    t2s_tensor *x_mix = t2s_tensor_new4(ctx, T2S_F32, B, 3, H, W), *w_mix = t2s_tensor_new(ctx, T2S_F32, 3, map_shape);
    if (!mask || !y_mix || !x_mix || !w_mix) return t2s_error_set(err, ctx->err.status, "%s", ctx->err.msg);
    if ((st = t2s_classmix_masks(ctx, ys, u->ignore_index, u->seed, iter, offset, mask)) ||
        (st = t2s_classmix_apply(ctx, mask, xs_raw, xt_raw, ys, yhat, pw, x_mix, y_mix, w_mix)))
      return t2s_error_set(err, st, "%s", ctx->err.msg);
    t2s_aug_key key = {u->seed, STREAM_MIX, iter, offset};
    if ((st = t2s_batch_color_jitter(ctx, x_mix, &u->jitter, key)) ||
        (u->use_blur && (st = t2s_batch_gaussian_blur(ctx, x_mix, &u->blur, key))) ||
        (st = t2s_batch_normalize(ctx, x_mix)))
      return t2s_error_set(err, st, "%s", ctx->err.msg);
    t2s_seg_out mo;
    if (t2s_segmentor_forward(ctx, &t->student, x_mix, &mo) != T2S_OK)
      return t2s_error_set(err, ctx->err.status, "%s", ctx->err.msg);
    t2s_tensor *l_mix = seg_ce(ctx, u, mo.logits, y_mix, NULL, w_mix, cw);
    out->mix = value(ctx, l_mix);
    if ((st = backward_term(t, l_mix, ++done == n_backward, err))) return st;

    if (pull) {
      /* 2. pseudo-target image: the source crop restyled like a paired target crop.
       * FFTW works on host images: on CUDA it reads the loader's host batch (no
       * download) and the restyled batch is uploaded once (B x 3 x H x W floats). */
      t2s_pseudo_target *pt = u->fourier;
      int64_t ss = t2s_pseudo_target_style_size(pt), n_global = (int64_t)B * u->world_size;
      float *local = t2s_host_scratch(ctx, (size_t)(ss * B + 1) * sizeof(float));
      float *global = t2s_host_scratch(ctx, (size_t)(ss * n_global + 1) * sizeof(float));
      int64_t img_shape[4] = {B, 3, H, W};
      t2s_tensor *x_st_h = on_cpu(ctx) ? t2s_tensor_new4(ctx, T2S_F32, B, 3, H, W)
                                       : t2s_host_view(ctx, T2S_F32, 4, img_shape,
                                                       t2s_host_scratch(ctx, (size_t)B * 3 * H * W * sizeof(float)));
      t2s_tensor *xs_h = host_images(ctx, xs_raw, src->images, B, H, W);
      t2s_tensor *xt_h = host_images(ctx, xt_raw, tgt->images, B, H, W);
      if (!local || !global || !x_st_h || !x_st_h->data || !xs_h || !xt_h)
        return t2s_error_set(err, ctx->err.status ? ctx->err.status : T2S_ERR_NOMEM, "%s", ctx->err.msg);
      if ((st = t2s_pseudo_target_style(ctx, pt, xt_h, local)) ||
          (st = t2s_pseudo_target_gather_styles(ctx, pt, local, B, offset, n_global, global)) ||
          (st = t2s_pseudo_target_apply(ctx, pt, xs_h, global, n_global, u->seed, iter, offset, x_st_h)))
        return t2s_error_set(err, st, "%s", ctx->err.msg);
      t2s_tensor *x_st_raw = on_cpu(ctx) ? x_st_h : t2s_tensor_upload(ctx, x_st_h);
      t2s_tensor *x_st = normalized(ctx, x_st_raw);

      /* 7. keys from the teacher on the source crop (no gradient) */
      t2s_seg_out ko;
      if (teacher_forward(ctx, u, &t->teacher, xs, &ko) != T2S_OK) return t2s_error_set(err, ctx->err.status, "%s", ctx->err.msg);
      prev = t2s_set_grad_enabled(ctx, 0);
      t2s_tensor *keys = t2s_segmentor_project(ctx, &t->teacher, ko.features);
      t2s_set_grad_enabled(ctx, prev);
      /* queries from the student on the pseudo-target image */
      t2s_seg_out qo;
      if (keys == NULL || t2s_segmentor_forward(ctx, &t->student, x_st, &qo) != T2S_OK)
        return t2s_error_set(err, ctx->err.status, "%s", ctx->err.msg);
      t2s_tensor *queries = t2s_segmentor_project(ctx, &t->student, qo.features);
      int fh = (int)keys->shape[2], fw = (int)keys->shape[3];
      t2s_tensor *ys_small = labels_down(ctx, ys, ys_h, fh, fw, u->pull.label_down, u->pull.majority_ratio,
                                         u->ignore_index);
      if (queries == NULL || ys_small == NULL) return t2s_error_set(err, ctx->err.status, "%s", ctx->err.msg);
      if ((st = t2s_class_prototypes(ctx, keys, ys_small, u->ignore_index, &u->protos)))
        return t2s_error_set(err, st, "%s", ctx->err.msg);
      /* 8. class weights from the student's IoU on the pseudo-target image */
      if (u->rw.enabled) {
        prev = t2s_set_grad_enabled(ctx, 0);
        t2s_tensor *lq = t2s_resize_bilinear(ctx, qo.logits, H, W, 0);
        t2s_set_grad_enabled(ctx, prev);
        if (lq == NULL || (st = t2s_reweight_update(ctx, &u->rw, lq, ys_h, &u->rw_state)))
          return t2s_error_set(err, st ? st : ctx->err.status, "%s", ctx->err.msg);
      }
      t2s_tensor *l_t2s = t2s_pull_loss(ctx, queries, keys, ys_small, t2s_reweight_tensor(ctx, &u->rw_state),
                                        t2s_prototypes_tensor(ctx, &u->protos),
                                        t2s_prototypes_present_tensor(ctx, &u->protos), &u->pull, u->seed, iter,
                                        offset, u->world_size);
      out->t2s = value(ctx, l_t2s);
      if ((st = backward_term(t, t2s_scale(ctx, l_t2s, (float)u->lambda_t2s), ++done == n_backward, err))) return st;
    }
  }
  if ((st = t2s_grad_sync_finish(t->sync, err))) return st;
  /* the logged values are means over ranks (= the global losses) */
  double sums[5] = {out->src, out->mix, out->fd, out->t2s, 0};
  if (u->world_size > 1 && (st = t2s_dist_allreduce_f64(&t->comm, sums, 4, err))) return st;
  out->src = sums[0] / u->world_size;
  out->mix = sums[1] / u->world_size;
  out->fd = sums[2] / u->world_size;
  out->t2s = sums[3] / u->world_size;
  out->total = out->src + out->mix + u->lambda_fd * out->fd + u->lambda_t2s * out->t2s;
  return T2S_OK;
}
