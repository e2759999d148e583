/* One UDA iteration; see launch/uda_step.h and docs/method.md. Per rank the batch is
 * B source and B target crops (f32 NCHW RGB in [0, 255]); global sample index of
 * local image k is rank * B + k, which keys every random choice. Loss terms are
 * back-propagated one after another (gradients accumulate). Every statistic goes
 * through t2s_batch_stats_reduce on every rank in the same order. The driver,
 * t2s_uda_step, is at the end: one call per step of docs/method.md. */
#include "launch/uda_step.h"

#include <math.h>
#include <string.h>

#include "core/ops.h"
#include "core/optim.h"
#include "launch/device_batch.h"
#include "launch/model_config.h"
#include "losses/batch_stats.h"
#include "losses/classmix.h"
#include "losses/feature_distance.h"
#include "losses/pseudo_target.h"
#include "losses/pseudo_target_dg.h"

enum { STREAM_MIX = 2 };

/* uda.t2s.* as the pulling loss's settings. */
static t2s_pull_cfg pull_cfg(const t2s_train_config *c) {
  t2s_pull_cfg p = t2s_pull_cfg_defaults();
  p.num_queries = c->uda.t2s.num_queries;
  p.num_negatives = c->uda.t2s.num_negatives;
  p.tau = (float)c->uda.t2s.tau;
  p.negatives = c->uda.t2s.negatives;
  p.label_down = c->uda.t2s.label_down;
  p.majority_ratio = (float)c->uda.t2s.majority_ratio;
  p.proto_momentum = (float)c->uda.t2s.proto_momentum;
  p.ignore_index = c->data.ignore_index;
  return p;
}

/* uda.reweight.* as the re-weighting's settings. */
static t2s_reweight_cfg reweight_cfg(const t2s_train_config *c) {
  t2s_reweight_cfg r = t2s_reweight_cfg_defaults();
  r.enabled = c->uda.reweight.enabled;
  r.momentum = c->uda.reweight.momentum;
  r.gamma = c->uda.reweight.gamma;
  r.apply_to = c->uda.reweight.apply_to;
  r.ignore_index = c->data.ignore_index;
  return r;
}

/* The pseudo-labels' and the mix's augmentation settings. */
static void self_training_cfg(const t2s_train_config *c, t2s_uda *u) {
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
}

/* t2sda_dg: the pull's prototypes (when it is on) and the restyling objects of the
 * source styles: FFT plans for fourier_source, colour moments for color_random. */
static t2s_status dg_init(t2s_uda *u, const t2s_train_config *c, t2s_error *err) {
  const t2s_pt_method m = c->uda.pseudo_target.type;
  u->dg.fourier = m == T2S_PT_FOURIER_SOURCE || m == T2S_PT_FOURIER_SOURCE_COLOR_RANDOM;
  u->dg.color = m == T2S_PT_COLOR_RANDOM || m == T2S_PT_FOURIER_SOURCE_COLOR_RANDOM;
  u->dg.pull = t2s_uda_pulls(c);
  u->dg.amplitude_jitter = (float)c->uda.pseudo_target.amplitude_jitter;
  u->dg.color_mean_jitter = (float)c->uda.pseudo_target.color_mean_jitter;
  u->dg.color_std_jitter = (float)c->uda.pseudo_target.color_std_jitter;
  u->dg.ce_weight = c->uda.dg.ce_weight;
  int H = c->data.crop[1], W = c->data.crop[0];
  if (u->hrda)  /* the DG iteration runs single-resolution forwards only */
    return t2s_error_set(err, T2S_ERR_UNSUPPORTED, "model.hrda.enabled is not supported with uda.type t2sda_dg; "
                         "set model.hrda.enabled: false (or use uda.type t2sda)");
  if (u->dg.fourier && t2s_pseudo_target_half_width((float)c->uda.pseudo_target.beta, H, W) < 1)
    return t2s_error_set(err, T2S_ERR_INVALID,
                         "uda.pseudo_target.beta %g at data.crop %dx%d restyles no frequency "
                         "(floor(beta min(H, W)) = 0), so fourier_source would be the identity; "
                         "use beta >= %g", c->uda.pseudo_target.beta, W, H, 1.0 / (H < W ? H : W));
  t2s_status st = T2S_OK;
  if (u->dg.pull)
    st = t2s_prototypes_init(&u->protos, u->num_classes, c->uda.t2s.proj_dim, u->pull.proto_momentum, err);
  t2s_pseudo_target_cfg fc = {T2S_PT_FOURIER, (float)c->uda.pseudo_target.beta, c->uda.pseudo_target.color_space};
  t2s_pseudo_target_cfg cc = {T2S_PT_COLOR, 0.0f, c->uda.pseudo_target.color_space};
  if (st == T2S_OK && u->dg.fourier) st = t2s_pseudo_target_create(&u->restyle, &fc, H, W, err);
  if (st == T2S_OK && u->dg.color) st = t2s_pseudo_target_create(&u->dg.recolor, &cc, H, W, err);
  u->restyle_on_device = !u->dg.color;
  return st;
}

/* uda.mic.* (self-training methods only; the config refuses MIC with source_only). */
static void mic_cfg(const t2s_train_config *c, t2s_uda *u) {
  u->mic = c->uda.mic.enabled && t2s_uda_needs_target(c);
  u->mic_mask = t2s_block_mask_cfg_defaults();
  u->mic_mask.block_size = c->uda.mic.mask_block_size;
  u->mic_mask.ratio = (float)c->uda.mic.mask_ratio;
  u->lambda_mic = c->uda.mic.lambda;
}

t2s_status t2s_uda_init(t2s_uda *u, const t2s_train_config *c, int rank, int world_size,
                        t2s_error *err) {
  memset(u, 0, sizeof *u);
  u->type = c->uda.type;
  u->num_classes = c->model.num_classes;
  u->ignore_index = c->data.ignore_index;
  u->seed = (uint64_t)c->seed;
  u->rank = rank;
  u->world_size = world_size;
  u->alpha = c->uda.alpha;
  u->teacher_bn_batch = c->uda.teacher_bn == T2S_CFG_TEACHER_BN_BATCH;
  self_training_cfg(c, u);
  u->hrda = c->model.hrda.enabled;
  u->hrda_cfg = t2s_hrda_cfg_from_train_config(c);
  u->hrda_detail_w = c->model.hrda.detail_loss_weight;
  u->hrda_view = c->uda.t2s.hrda_view;
  u->lambda_fd = t2s_uda_needs_target(c) ? c->uda.imnet_feature_dist_lambda : 0.0;
  mic_cfg(c, u);
  for (int i = 0; i < c->uda.n_imnet_feature_dist_classes; i++)
    u->fd_class[c->uda.imnet_feature_dist_classes[i]] = 1;
  u->lambda_t2s = c->uda.t2s.lambda;
  u->pull = pull_cfg(c);
  u->rw = reweight_cfg(c);
  t2s_status st = t2s_reweight_init(&u->rw_state, u->num_classes, err);
  if (st == T2S_OK && u->type == T2S_CFG_UDA_T2SDA_DG) return dg_init(u, c, err);
  if (st != T2S_OK || u->type != T2S_CFG_UDA_T2SDA) return st;
  st = t2s_prototypes_init(&u->protos, u->num_classes, c->uda.t2s.proj_dim, u->pull.proto_momentum, err);
  t2s_pseudo_target_cfg pc = {c->uda.pseudo_target.type, (float)c->uda.pseudo_target.beta,
                              c->uda.pseudo_target.color_space};
  if (st == T2S_OK) st = t2s_pseudo_target_create(&u->restyle, &pc, c->data.crop[1], c->data.crop[0], err);
  u->restyle_on_device = pc.method != T2S_PT_COLOR;
  return st;
}

void t2s_uda_free(t2s_uda *u) {
  t2s_reweight_free(&u->rw_state);
  if (u->protos.proto) t2s_prototypes_free(&u->protos);
  if (u->restyle) t2s_pseudo_target_destroy(u->restyle);
  if (u->dg.recolor) t2s_pseudo_target_destroy(u->dg.recolor);
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

/* ---- what the steps hand on to each other ----
 * Every step starts by checking ctx->err and records its failure there (sticky), so
 * the driver reads as the method and checks once at the end. Host/device crossings
 * go through launch/device_batch.h. */

typedef struct uda_iter {
  int n, h, w;
  int64_t iter, offset;         /* iteration; global index of this rank's first sample */
  t2s_tensor *xs_raw, *xs;      /* source crops in [0, 255], and normalised */
  t2s_tensor *ys, *ys_host;     /* source labels (N, H, W), and their host view */
  t2s_tensor *xt_raw, *xt;      /* target crops */
  t2s_tensor *x_st;             /* pseudo-target image, normalised */
  t2s_tensor *class_w;          /* class weights of the CE terms (reweight.apply_to: all) */
  t2s_tensor *yhat, *pl_weight; /* pseudo-labels and their pixel weights */
  t2s_hrda_box box;             /* HRDA: the source pass's detail box */
  t2s_tensor *xs_fd;            /* HRDA: the image the feature distance's frozen copy sees */
} uda_iter;

/* HRDA's versions of the student's CE forward and the teacher's pseudo-label forward
 * (defined with the other HRDA steps below; plain forwards without model.hrda). */
/* HRDA detail boxes are drawn per iteration and pass (not per rank): one stream each */
enum { STREAM_HRDA_BOX = 7 };
enum { HRDA_PASS_SOURCE = 0, HRDA_PASS_MIX = 1, HRDA_PASS_MIC = 2 };
static t2s_tensor *student_seg_loss(t2s_ctx *ctx, const t2s_uda *u, const t2s_segmentor *student,
                                    const uda_iter *it, t2s_tensor *x, t2s_tensor *y, t2s_tensor *w, int pass);
static t2s_tensor *teacher_logits(t2s_ctx *ctx, const t2s_uda *u, const t2s_segmentor *m, t2s_tensor *x);
static int hrda_pull_terms(const t2s_uda *u);

/* The pulling loss's inputs: keys, queries and labels at feature size. */
typedef struct uda_pull {
  t2s_tensor *keys, *queries, *labels;
  t2s_tensor *labels_host;      /* host copy of labels (for the prototypes and the pull plan) */
  t2s_tensor *student_logits;   /* the student on x_st, for the re-weighting */
} uda_pull;

/* Backward of one loss term; the gradient all-reduce is armed before the last. */
typedef struct uda_backprop {
  t2s_grad_sync *sync;
  int done, total;
} uda_backprop;

/* The logged loss values stay on the run's device (D2D copies do not wait) until finish()
 * reads them back together: one host synchronisation per iteration for the log instead of
 * one per term. Unused terms stay 0. */
enum { LOG_SRC, LOG_MIX, LOG_FD, LOG_T2S, LOG_ST, LOG_MIC, N_LOGGED };

static float *logged_new(t2s_ctx *ctx) {
  float *v = t2s_ctx_ok(ctx) ? t2s_scratch(ctx, N_LOGGED * sizeof(float)) : NULL;
  if (v && t2s_device_zero(ctx->device, v, N_LOGGED * sizeof(float), &ctx->err) != T2S_OK) return NULL;
  return v;
}

/* The f32 scalar loss into slot k of the logged values. */
static void keep_value(t2s_ctx *ctx, float *logged, int k, const t2s_tensor *loss) {
  if (!t2s_ctx_ok(ctx) || logged == NULL || loss == NULL) return;
  t2s_device_copy(ctx->device, logged + k, loss->device, loss->data, sizeof(float), &ctx->err);
}

/* A failing call that did not record itself in ctx->err is recorded there. */
static t2s_status sticky(t2s_ctx *ctx, t2s_status st) {
  if (st != T2S_OK && t2s_ctx_ok(ctx)) t2s_error_set(&ctx->err, st, "uda step: %s", t2s_status_name(st));
  return ctx->err.status;
}

static t2s_status need(t2s_ctx *ctx, int ok, const char *what) {
  if (!t2s_ctx_ok(ctx) || ok) return ctx->err.status;
  return t2s_error_set(&ctx->err, T2S_ERR_NOMEM, "uda step: no memory for %s", what);
}

/* The rank's crops on the run's device; tgt is read when the method adapts. */
static t2s_status load_batches(t2s_ctx *ctx, const t2s_batch *src, const t2s_batch *tgt, int adapt,
                               int64_t rank, uda_iter *it) {
  memset(it, 0, sizeof *it);
  it->n = src->n, it->h = src->h, it->w = src->w;
  it->iter = src->iteration;
  it->offset = rank * src->n;
  if (!adapt) tgt = NULL;
  else if (tgt == NULL || tgt->n != it->n || tgt->h != it->h || tgt->w != it->w)
    return t2s_error_set(&ctx->err, T2S_ERR_INVALID, "the target batch does not match the source batch");
  it->xs_raw = t2s_batch_images(ctx, src->images, it->n, it->h, it->w);
  it->ys = t2s_batch_labels(ctx, src->labels, it->n, it->h, it->w);
  it->ys_host = t2s_batch_host_labels(ctx, it->ys, src->labels, it->n, it->h, it->w);
  it->xs = t2s_batch_normalized(ctx, it->xs_raw);
  if (tgt != NULL) {
    it->xt_raw = t2s_batch_images(ctx, tgt->images, it->n, it->h, it->w);
    it->xt = t2s_batch_normalized(ctx, it->xt_raw);
  }
  return need(ctx, it->xs && it->ys && it->ys_host && (tgt == NULL || it->xt), "the batch");
}

/* CE over labels with the global count of non-ignored pixels as the divisor
 * (each rank's share x world size, so averaged gradients equal the full batch's). */
static t2s_tensor *ce_with_count(t2s_ctx *ctx, const t2s_uda *u, t2s_tensor *logits, t2s_tensor *labels,
                                 double valid, t2s_tensor *pixel_weight, t2s_tensor *class_weight) {
  if (logits == NULL || labels == NULL) return NULL;
  t2s_tensor *up = t2s_resize_bilinear(ctx, logits, (int)labels->shape[1], (int)labels->shape[2], 0);
  t2s_ce_args a = {u->ignore_index, T2S_CE_MEAN_VALID, valid > 0 ? valid / u->world_size : 1.0};
  return t2s_cross_entropy(ctx, up, labels, pixel_weight, class_weight, &a);
}

static t2s_tensor *seg_ce(t2s_ctx *ctx, const t2s_uda *u, t2s_tensor *logits, t2s_tensor *labels,
                          t2s_tensor *labels_host, t2s_tensor *pixel_weight, t2s_tensor *class_weight) {
  if (logits == NULL || labels == NULL) return NULL;
  const uint8_t *y = t2s_tensor_host_data(ctx, labels_host ? labels_host : labels);
  if (y == NULL) return NULL;
  double valid = 0;
  for (int64_t i = 0; i < t2s_numel(labels); i++) valid += y[i] != u->ignore_index;
  if (t2s_batch_stats_reduce(ctx, &valid, 1) != T2S_OK) return NULL;
  return ce_with_count(ctx, u, logits, labels, valid, pixel_weight, class_weight);
}

static t2s_status backward_term(t2s_ctx *ctx, uda_backprop *b, t2s_tensor *loss) {
  if (!t2s_ctx_ok(ctx)) return ctx->err.status;
  if (loss == NULL) return t2s_error_set(&ctx->err, T2S_ERR_INVALID, "uda step: a loss term is missing");
  if (sticky(ctx, t2s_grad_sync_begin(b->sync, ctx, ++b->done == b->total, &ctx->err))) return ctx->err.status;
  return sticky(ctx, t2s_backward(ctx, loss, 1.0f));
}

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

/* Logits resized to (h, w) outside the tape, in f32 for the losses (pseudo-labels,
 * re-weighting). */
static t2s_tensor *resized_no_grad(t2s_ctx *ctx, t2s_tensor *logits, int h, int w) {
  int prev = t2s_set_grad_enabled(ctx, 0);
  t2s_tensor *out = t2s_as_f32(ctx, t2s_resize_bilinear(ctx, logits, h, w, 0));
  t2s_set_grad_enabled(ctx, prev);
  return out;
}

/* Network outputs enter the method's losses (losses/) here: those compute in f32, so a
 * bf16 activation (precision bf16) is widened on the tape; an f32 one passes as is. The
 * core ops (resize, cross-entropy) read bf16 themselves and need no widening. */
static t2s_tensor *loss_input(t2s_ctx *ctx, t2s_tensor *x) { return t2s_as_f32(ctx, x); }

/* ---- the steps of the method (docs/method.md), one function each ---- */

/* 1. EMA teacher: a copy at iteration 0, then alpha_t = min(1 - 1/(t+1), alpha). */
static t2s_status ema_teacher(t2s_ctx *ctx, t2s_segmentor *teacher, const t2s_segmentor *student,
                              double alpha, int64_t iter) {
  if (!t2s_ctx_ok(ctx)) return ctx->err.status;
  return sticky(ctx, t2s_ema_update(&teacher->params, &student->params, alpha, iter, 1, &ctx->err));
}

/* 2. Pseudo-target image: each source crop restyled like a paired target crop of the
 * global batch. Fourier restyling has a CUDA slot (cuFFT), so on CUDA the device crops are
 * restyled where they are; colour moments run on the loader's host batch (no download) and
 * the restyled batch goes to the device once. The styles are small host vectors either way. */
static t2s_status pseudo_target_image(t2s_ctx *ctx, const t2s_uda *u, const t2s_batch *src,
                                      const t2s_batch *tgt, uda_iter *it) {
  if (!t2s_ctx_ok(ctx)) return ctx->err.status;
  t2s_pseudo_target *pt = u->restyle;
  const int dev = u->restyle_on_device;
  int B = it->n;
  int64_t ss = t2s_pseudo_target_style_size(pt), n_global = (int64_t)B * u->world_size;
  float *local = t2s_host_scratch(ctx, (size_t)(ss * B + 1) * sizeof(float));
  float *global = t2s_host_scratch(ctx, (size_t)(ss * n_global + 1) * sizeof(float));
  t2s_tensor *x_st = dev ? t2s_tensor_new4(ctx, T2S_F32, B, 3, it->h, it->w)
                         : t2s_host_batch_new(ctx, B, 3, it->h, it->w);
  t2s_tensor *xs = dev ? it->xs_raw : t2s_batch_host_images(ctx, it->xs_raw, src->images, B, it->h, it->w);
  t2s_tensor *xt = dev ? it->xt_raw : t2s_batch_host_images(ctx, it->xt_raw, tgt->images, B, it->h, it->w);
  if (need(ctx, local && global && x_st && xs && xt, "the pseudo-target image")) return ctx->err.status;
  if (sticky(ctx, t2s_pseudo_target_style(ctx, pt, xt, local)) ||
      sticky(ctx, t2s_pseudo_target_gather_styles(ctx, pt, local, B, it->offset, n_global, global)) ||
      sticky(ctx, t2s_pseudo_target_apply(ctx, pt, xs, global, n_global, u->seed, it->iter, it->offset, x_st)))
    return ctx->err.status;
  it->x_st = t2s_batch_normalized(ctx, dev ? x_st : t2s_tensor_to_device(ctx, x_st));
  return ctx->err.status;
}

/* 3. Source loss: CE of the student on the source crop; so receives its forward. */
static t2s_tensor *source_loss(t2s_ctx *ctx, const t2s_uda *u, const t2s_segmentor *student,
                               const uda_iter *it, t2s_seg_out *so) {
  if (sticky(ctx, t2s_ctx_ok(ctx) ? t2s_segmentor_forward(ctx, student, it->xs, so) : T2S_OK)) return NULL;
  return seg_ce(ctx, u, so->logits, it->ys, it->ys_host, NULL, it->class_w);
}

/* 4. Pseudo-labels from the teacher on the clean target crop; *q the global
 * confidence weight. */
static t2s_status pseudo_labels(t2s_ctx *ctx, const t2s_uda *u, const t2s_segmentor *teacher,
                                uda_iter *it, double *q) {
  if (!t2s_ctx_ok(ctx)) return ctx->err.status;
  t2s_tensor *to = teacher_logits(ctx, u, teacher, it->xt);
  if (to == NULL) return sticky(ctx, T2S_ERR_INVALID);
  t2s_tensor *logits = resized_no_grad(ctx, to, it->h, it->w);
  int64_t map_shape[3] = {it->n, it->h, it->w};
  it->yhat = t2s_batch_labels(ctx, NULL, it->n, it->h, it->w);
  it->pl_weight = t2s_tensor_new(ctx, T2S_F32, 3, map_shape);
  if (need(ctx, logits && it->yhat && it->pl_weight, "the pseudo-labels")) return ctx->err.status;
  return sticky(ctx, t2s_pseudo_labels(ctx, &u->pl, logits, it->yhat, it->pl_weight, NULL, q));
}

/* 5. ClassMix of source and target with colour jitter and blur; the weighted CE of
 * the student on the mixed image. */
static t2s_tensor *mix_loss(t2s_ctx *ctx, const t2s_uda *u, const t2s_segmentor *student,
                            const uda_iter *it) {
  if (!t2s_ctx_ok(ctx)) return NULL;
  int B = it->n, H = it->h, W = it->w;
  int64_t map_shape[3] = {B, H, W};
  t2s_tensor *mask = t2s_batch_labels(ctx, NULL, B, H, W), *y_mix = t2s_batch_labels(ctx, NULL, B, H, W);
  t2s_tensor *x_mix = t2s_tensor_new4(ctx, T2S_F32, B, 3, H, W), *w_mix = t2s_tensor_new(ctx, T2S_F32, 3, map_shape);
  if (need(ctx, mask && y_mix && x_mix && w_mix, "the mixed batch")) return NULL;
  t2s_aug_key key = {u->seed, STREAM_MIX, it->iter, it->offset};
  t2s_status st = t2s_classmix_masks_hosted(ctx, it->ys, it->ys_host, u->ignore_index, u->seed, it->iter,
                                            it->offset, mask);
  if (!st) st = t2s_classmix_apply(ctx, mask, it->xs_raw, it->xt_raw, it->ys, it->yhat, it->pl_weight, x_mix,
                                   y_mix, w_mix);
  if (!st) st = t2s_batch_color_jitter(ctx, x_mix, &u->jitter, key);
  if (!st && u->use_blur) st = t2s_batch_gaussian_blur(ctx, x_mix, &u->blur, key);
  if (!st) st = t2s_batch_normalize(ctx, x_mix);
  if (sticky(ctx, st)) return NULL;
  return student_seg_loss(ctx, u, student, it, x_mix, y_mix, w_mix, HRDA_PASS_MIX);
}

/* 5b. MIC (Hoyer et al. 2023; lhoyer/MIC, mask_mode separatetrgaug): the clean target
 * crop with its own colour jitter and blur (the mix's settings, drawn on a stream of its
 * own), normalised, then block-masked (losses/block_mask.h: masked pixels become 0, the
 * mean colour); the student's CE on it against the teacher's pseudo-labels of the
 * unmasked crop (step 4) with their pixel weights (the quality weight q, ignore rows).
 * L_mic is logged unscaled; lambda_mic L_mic is returned. */
enum { STREAM_MIC = 0x4d4943 }; /* "MIC": apart from the loader's and the mix's streams */

static t2s_tensor *masked_consistency_loss(t2s_ctx *ctx, const t2s_uda *u, const t2s_segmentor *student,
                                           const uda_iter *it, float *logged) {
  if (!t2s_ctx_ok(ctx)) return NULL;
  int B = it->n, H = it->h, W = it->w;
  t2s_tensor *x_m = t2s_tensor_new4(ctx, T2S_F32, B, 3, H, W), *mask = t2s_batch_labels(ctx, NULL, B, H, W);
  if (need(ctx, x_m && mask, "the masked target batch")) return NULL;
  x_m->layout = it->xt_raw->layout;
  t2s_aug_key key = {u->seed, STREAM_MIC, it->iter, it->offset};
  t2s_status st = t2s_device_copy(ctx->device, x_m->data, ctx->device, it->xt_raw->data,
                                  (size_t)t2s_numel(x_m) * sizeof(float), &ctx->err);
  if (!st) st = t2s_batch_color_jitter(ctx, x_m, &u->jitter, key);
  if (!st && u->use_blur) st = t2s_batch_gaussian_blur(ctx, x_m, &u->blur, key);
  if (!st) st = t2s_batch_normalize(ctx, x_m);
  if (!st) st = t2s_block_mask(ctx, &u->mic_mask, u->seed, it->iter, it->offset, mask);
  if (!st) st = t2s_block_mask_apply(ctx, mask, x_m);
  if (sticky(ctx, st)) return NULL;
  t2s_tensor *l;
  if (u->hrda) {  /* MIC on HRDA: the masked crop through HRDA's fused + detail loss */
    l = student_seg_loss(ctx, u, student, it, x_m, it->yhat, it->pl_weight, HRDA_PASS_MIC);
  } else {
    t2s_seg_out mo;
    if (sticky(ctx, t2s_segmentor_forward(ctx, student, x_m, &mo))) return NULL;
    /* pseudo-labels are argmax classes, never ignore: every pixel of the global batch
     * counts, known without reading yhat back from the device */
    double valid = (double)t2s_numel(it->yhat) * u->world_size;
    l = ce_with_count(ctx, u, mo.logits, it->yhat, valid, it->pl_weight, it->class_w);
  }
  keep_value(ctx, logged, LOG_MIC, l);
  return t2s_scale(ctx, l, (float)u->lambda_mic);
}

/* 6. ImageNet feature distance between the student's features on x_s (of step 3)
 * and the frozen copy's, over "thing" pixels; scaled by lambda_fd. The unscaled term is
 * logged. */
static t2s_tensor *feature_distance(t2s_ctx *ctx, const t2s_uda *u, const t2s_segmentor *imnet,
                                    const uda_iter *it, t2s_tensor *student_features, float *logged) {
  if (!t2s_ctx_ok(ctx)) return NULL;
  t2s_seg_out io;
  if (sticky(ctx, frozen_forward(ctx, imnet, it->xs_fd ? it->xs_fd : it->xs, &io))) return NULL;
  t2s_tensor *labels = t2s_batch_labels_down(ctx, it->ys, it->ys_host, (int)student_features->shape[2],
                                             (int)student_features->shape[3], T2S_LABEL_DOWN_MAJORITY, 0.75f,
                                             u->ignore_index, NULL);
  t2s_feature_distance_cfg fc = t2s_feature_distance_cfg_defaults();
  fc.enabled = 1;
  fc.lambda = (float)u->lambda_fd;
  memcpy(fc.things, u->fd_class, sizeof fc.things);
  fc.ignore_index = u->ignore_index;
  t2s_tensor *l_fd = t2s_feature_distance(ctx, loss_input(ctx, student_features), loss_input(ctx, io.features),
                                          labels, &fc, u->world_size);
  keep_value(ctx, logged, LOG_FD, l_fd);
  return t2s_scale(ctx, l_fd, (float)u->lambda_fd);
}

/* 7a. Keys from the teacher on x_s (no gradient), queries from the student on x_st,
 * the source labels at feature size, and this batch's class prototypes. */
static t2s_status pull_features(t2s_ctx *ctx, t2s_uda *u, const t2s_segmentor *teacher,
                                const t2s_segmentor *student, const uda_iter *it, uda_pull *p,
                                int update_prototypes) {
  if (!t2s_ctx_ok(ctx)) return ctx->err.status;
  t2s_seg_out ko, qo;
  if (sticky(ctx, teacher_forward(ctx, u, teacher, it->xs, &ko))) return ctx->err.status;
  int prev = t2s_set_grad_enabled(ctx, 0);
  p->keys = loss_input(ctx, t2s_segmentor_project(ctx, teacher, ko.features));
  t2s_set_grad_enabled(ctx, prev);
  if (need(ctx, p->keys != NULL, "the keys") ||
      sticky(ctx, t2s_segmentor_forward(ctx, student, it->x_st, &qo)))
    return ctx->err.status;
  p->queries = loss_input(ctx, t2s_segmentor_project(ctx, student, qo.features));
  p->student_logits = qo.logits;
  t2s_tensor *labels = NULL;
  p->labels = t2s_batch_labels_down(ctx, it->ys, it->ys_host, (int)p->keys->shape[2], (int)p->keys->shape[3],
                                    u->pull.label_down, u->pull.majority_ratio, u->ignore_index, &labels);
  if (need(ctx, p->queries && p->labels, "the queries")) return ctx->err.status;
  t2s_tensor *keys = t2s_tensor_host(ctx, p->keys);
  if (labels == NULL) labels = t2s_tensor_host(ctx, p->labels);
  p->labels_host = labels;
  if (need(ctx, keys && labels, "the host keys") || !update_prototypes) return ctx->err.status;
  return sticky(ctx, t2s_class_prototypes(ctx, keys, labels, u->ignore_index, &u->protos));
}

/* 8. Class weights from the student's per-class IoU on the pseudo-target image. */
static t2s_status reweight(t2s_ctx *ctx, t2s_uda *u, const uda_iter *it, t2s_tensor *student_logits) {
  if (!t2s_ctx_ok(ctx) || !u->rw.enabled) return ctx->err.status;
  t2s_tensor *logits = resized_no_grad(ctx, student_logits, it->h, it->w);
  if (need(ctx, logits != NULL, "the re-weighting logits")) return ctx->err.status;
  return sticky(ctx, t2s_reweight_update(ctx, &u->rw, logits, it->ys_host, &u->rw_state));
}

/* 7b. The pulling loss with the current class weights, scaled by lambda_t2s; the
 * unscaled term is logged. */
static t2s_tensor *pull_loss(t2s_ctx *ctx, t2s_uda *u, const uda_iter *it, const uda_pull *p,
                             float *logged) {
  if (!t2s_ctx_ok(ctx)) return NULL;
  t2s_pull_host host = {p->labels_host, t2s_reweight_tensor(ctx, &u->rw_state),
                        t2s_prototypes_present_tensor(ctx, &u->protos)};
  t2s_tensor *w = t2s_tensor_to_device(ctx, (t2s_tensor *)host.class_weight);
  t2s_tensor *protos = t2s_tensor_to_device(ctx, t2s_prototypes_tensor(ctx, &u->protos));
  t2s_tensor *present = t2s_tensor_to_device(ctx, (t2s_tensor *)host.present);
  /* the plan is drawn on the host: it reads these host copies, not the uploads */
  t2s_tensor *l = t2s_pull_loss_hosted(ctx, p->queries, p->keys, p->labels, w, protos, present, &u->pull,
                                       u->seed, it->iter, it->offset, u->world_size, &host);
  keep_value(ctx, logged, LOG_T2S, l);
  return t2s_scale(ctx, l, (float)u->lambda_t2s);
}

/* ---- HRDA (model.hrda; docs/method.md "HRDA") ----
 * The student's losses become HRDA's (fused and detail CE), the teacher's pseudo-labels
 * come from HRDA inference on the full-resolution target crop, and the pull reads the
 * view of uda.t2s.hrda_view. Detail boxes are keyed by (seed, iteration, pass): one per
 * global batch (HRDA draws one per batch), the same on every rank. */

static t2s_hrda_box hrda_box(const t2s_uda *u, const t2s_segmentor *m, const uda_iter *it, int pass) {
  t2s_rng_key key = t2s_rng_key_make(u->seed, STREAM_HRDA_BOX, (uint64_t)it->iter, (uint64_t)pass);
  return t2s_hrda_draw_box(&u->hrda_cfg, t2s_segmentor_output_stride(m), it->h, it->w, key);
}

/* HRDAHead.losses with lr_loss_weight 0: (1 - w) CE(fused, y) + w CE(detail, y[box]);
 * pixel weights (pseudo-label confidence) are cropped with the labels. */
static t2s_tensor *hrda_ce(t2s_ctx *ctx, const t2s_uda *u, const t2s_hrda_out *o, const t2s_hrda_box *b,
                           t2s_tensor *y, t2s_tensor *y_host, t2s_tensor *pixel_w, t2s_tensor *class_w) {
  t2s_tensor *fused = seg_ce(ctx, u, o->fused, y, y_host, pixel_w, class_w);
  float w = (float)u->hrda_detail_w;
  if (w <= 0.0f) return fused;
  t2s_tensor *yd = t2s_crop(ctx, y, b->y0, b->x0, b->h, b->w);
  t2s_tensor *wd = pixel_w ? t2s_crop(ctx, pixel_w, b->y0, b->x0, b->h, b->w) : NULL;
  t2s_tensor *detail = seg_ce(ctx, u, o->detail, yd, NULL, wd, class_w);
  return t2s_add(ctx, t2s_scale(ctx, fused, 1.0f - w), t2s_scale(ctx, detail, w));
}

/* 3 under HRDA: the source pass; so gets the fused logits and the context features
 * (the feature distance compares them with the frozen copy on the context image). */
static t2s_tensor *hrda_source_loss(t2s_ctx *ctx, const t2s_uda *u, const t2s_segmentor *student,
                                    uda_iter *it, t2s_seg_out *so) {
  if (!t2s_ctx_ok(ctx)) return NULL;
  it->box = hrda_box(u, student, it, HRDA_PASS_SOURCE);
  t2s_hrda_out o;
  if (sticky(ctx, t2s_hrda_forward_train(ctx, student, &u->hrda_cfg, it->xs, &it->box, &o))) return NULL;
  so->logits = o.fused;
  so->features = o.context_features;
  it->xs_fd = t2s_resize_bilinear(ctx, it->xs, (int)lroundf((float)it->h * u->hrda_cfg.context_scale),
                                  (int)lroundf((float)it->w * u->hrda_cfg.context_scale), 0);
  return hrda_ce(ctx, u, &o, &it->box, it->ys, it->ys_host, NULL, it->class_w);
}

/* The student's segmentation loss on a mixed (or masked) batch: CE of one forward, or
 * HRDA's with the detail box of the given pass. */
static t2s_tensor *student_seg_loss(t2s_ctx *ctx, const t2s_uda *u, const t2s_segmentor *student,
                                    const uda_iter *it, t2s_tensor *x, t2s_tensor *y, t2s_tensor *w, int pass) {
  if (!u->hrda) {
    t2s_seg_out mo;
    if (sticky(ctx, t2s_segmentor_forward(ctx, student, x, &mo))) return NULL;
    return seg_ce(ctx, u, mo.logits, y, NULL, w, it->class_w);
  }
  t2s_hrda_box b = hrda_box(u, student, it, pass);
  t2s_hrda_out o;
  if (sticky(ctx, t2s_hrda_forward_train(ctx, student, &u->hrda_cfg, x, &b, &o))) return NULL;
  return hrda_ce(ctx, u, &o, &b, y, NULL, w, it->class_w);
}

/* The teacher's logits on x for the pseudo-labels: one forward, or under HRDA its
 * inference (context + sliding detail windows over the full-resolution crop), in the
 * teacher's mode (teacher_forward). */
static t2s_tensor *teacher_logits(t2s_ctx *ctx, const t2s_uda *u, const t2s_segmentor *m, t2s_tensor *x) {
  if (!t2s_ctx_ok(ctx)) return NULL;
  if (!u->hrda) {
    t2s_seg_out to;
    return sticky(ctx, teacher_forward(ctx, u, m, x, &to)) ? NULL : to.logits;
  }
  int prev_grad = t2s_set_grad_enabled(ctx, 0), prev_train = ctx->training, prev_drop = ctx->no_dropout;
  if (u->teacher_bn_batch) ctx->no_dropout = 1;
  else ctx->training = 0;
  t2s_hrda_out o;
  t2s_status st = t2s_hrda_infer(ctx, m, &u->hrda_cfg, x, &o);
  ctx->training = prev_train;
  ctx->no_dropout = prev_drop;
  t2s_set_grad_enabled(ctx, prev_grad);
  return sticky(ctx, st) ? NULL : o.fused;
}

/* The batch as the pull sees it under HRDA: the source pass's detail crop of x_s, x_st
 * and the labels (full resolution), or the context crop (x_s, x_st at the context
 * scale; labels stay full size, the pull downsamples them to its feature grid). */
static uda_iter hrda_pull_view(t2s_ctx *ctx, const t2s_uda *u, const uda_iter *it, t2s_cfg_hrda_view view) {
  uda_iter v = *it;
  if (view == T2S_CFG_HRDA_VIEW_DETAIL) {
    const t2s_hrda_box *b = &it->box;
    v.xs = t2s_crop(ctx, it->xs, b->y0, b->x0, b->h, b->w);
    v.x_st = t2s_crop(ctx, it->x_st, b->y0, b->x0, b->h, b->w);
    v.ys = t2s_crop(ctx, it->ys, b->y0, b->x0, b->h, b->w);
    v.ys_host = v.ys ? t2s_tensor_host(ctx, v.ys) : NULL;
    v.h = b->h, v.w = b->w;
  } else {
    int hc = (int)lroundf((float)it->h * u->hrda_cfg.context_scale);
    int wc = (int)lroundf((float)it->w * u->hrda_cfg.context_scale);
    v.xs = t2s_resize_bilinear(ctx, it->xs, hc, wc, 0);
    v.x_st = t2s_resize_bilinear(ctx, it->x_st, hc, wc, 0);
  }
  return v;
}

/* 7 and 8 under HRDA: the pulling loss on the view(s) of uda.t2s.hrda_view. With both
 * views each term weighs 1/2 and is back-propagated before the next view's prototypes
 * replace this one's (the loss reads them); the class re-weighting comes from the detail
 * view. The logged term is the mean of the views. */
static int hrda_pull_terms(const t2s_uda *u) {
  return u->hrda && u->hrda_view == T2S_CFG_HRDA_VIEW_BOTH ? 2 : 1;
}

static t2s_status hrda_pull(t2s_ctx *ctx, t2s_uda *u, const t2s_uda_nets *nets, const uda_iter *it,
                            uda_backprop *bp, float *logged) {
  t2s_cfg_hrda_view views[2];
  int n = 0;
  if (u->hrda_view != T2S_CFG_HRDA_VIEW_CONTEXT) views[n++] = T2S_CFG_HRDA_VIEW_DETAIL;
  if (u->hrda_view != T2S_CFG_HRDA_VIEW_DETAIL) views[n++] = T2S_CFG_HRDA_VIEW_CONTEXT;
  t2s_tensor *terms[2] = {0};
  for (int k = 0; k < n && t2s_ctx_ok(ctx); k++) {
    uda_iter v = hrda_pull_view(ctx, u, it, views[k]);
    uda_pull p = {0};
    if (need(ctx, v.xs && v.x_st && v.ys && v.ys_host, "the pull's HRDA view")) break;
    pull_features(ctx, u, nets->teacher, nets->student, &v, &p, 1);
    if (k == 0) reweight(ctx, u, &v, p.student_logits);
    terms[k] = pull_loss(ctx, u, &v, &p, n == 1 ? logged : NULL);
    backward_term(ctx, bp, n == 1 ? terms[k] : t2s_scale(ctx, terms[k], 0.5f));
  }
  if (n == 2 && t2s_ctx_ok(ctx) && u->lambda_t2s > 0) {  /* the unscaled mean, as pull_loss logs */
    int prev = t2s_set_grad_enabled(ctx, 0);
    keep_value(ctx, logged, LOG_T2S,
               t2s_scale(ctx, t2s_add(ctx, terms[0], terms[1]), (float)(0.5 / u->lambda_t2s)));
    t2s_set_grad_enabled(ctx, prev);
  }
  return ctx->err.status;
}

/* 9. After the last backward: wait for the gradient all-reduce; the logged values,
 * read back in one copy, are the means over ranks (= the global losses). */
static t2s_status finish(t2s_ctx *ctx, const t2s_uda *u, t2s_grad_sync *sync, const float *logged,
                         t2s_uda_losses *out) {
  if (!t2s_ctx_ok(ctx) || sticky(ctx, t2s_grad_sync_finish(sync, &ctx->err))) return ctx->err.status;
  float v[N_LOGGED];
  if (need(ctx, logged != NULL, "the logged values") ||
      sticky(ctx, t2s_device_copy(T2S_DEV_CPU, v, ctx->device, logged, sizeof v, &ctx->err)))
    return ctx->err.status;
  double sums[N_LOGGED] = {v[LOG_SRC], v[LOG_MIX], v[LOG_FD], v[LOG_T2S], v[LOG_ST], v[LOG_MIC]};
  if (t2s_batch_stats_reduce(ctx, sums, N_LOGGED) != T2S_OK) return ctx->err.status;
  out->src = sums[LOG_SRC] / u->world_size;
  out->mix = sums[LOG_MIX] / u->world_size;
  out->fd = sums[LOG_FD] / u->world_size;
  out->t2s = sums[LOG_T2S] / u->world_size;
  out->st = sums[LOG_ST] / u->world_size;
  out->mic = sums[LOG_MIC] / u->world_size;
  out->total = out->src + out->mix + u->lambda_fd * out->fd + u->lambda_t2s * out->t2s + u->dg.ce_weight * out->st +
               u->lambda_mic * out->mic;
  return T2S_OK;
}

/* ---- domain generalisation (uda.type t2sda_dg; docs/method.md "Domain generalisation") ----
 * The iteration without target images: the pseudo-target x_st is each source crop with a
 * style drawn from the source batch (losses/pseudo_target_dg.h), pixel-aligned, so it keeps
 * y_s. The student learns x_st by CE (uda.dg.ce_weight) and, unless uda.t2s.lambda is 0,
 * its features on x_st are pulled to the teacher's class prototypes of x_s, weighted by the
 * student's IoU on x_st (steps 7-8 as in UDA). No pseudo-labels, no ClassMix. */

/* x (this rank's crops, [0, 255]) restyled by pt with styles drawn from the gathered
 * styles of the global batch: fourier_source for the FFT object, color_random for the
 * colour one. on_device: x is a tensor of the run's device, else a host batch. */
static t2s_tensor *dg_restyle(t2s_ctx *ctx, const t2s_uda *u, t2s_pseudo_target *pt, t2s_tensor *x,
                              int on_device, const uda_iter *it) {
  if (!t2s_ctx_ok(ctx)) return NULL;
  int B = it->n;
  int64_t ss = t2s_pseudo_target_style_size(pt), n_global = (int64_t)B * u->world_size;
  float *local = t2s_host_scratch(ctx, (size_t)(ss * B + 1) * sizeof(float));
  float *global = t2s_host_scratch(ctx, (size_t)(ss * n_global + 1) * sizeof(float));
  float *mine = t2s_host_scratch(ctx, (size_t)(ss * B + 1) * sizeof(float));
  t2s_tensor *out = on_device ? t2s_tensor_new4(ctx, T2S_F32, B, 3, it->h, it->w)
                              : t2s_host_batch_new(ctx, B, 3, it->h, it->w);
  if (need(ctx, x && local && global && mine && out, "the stylised image")) return NULL;
  if (sticky(ctx, t2s_pseudo_target_style(ctx, pt, x, local)) ||
      sticky(ctx, t2s_pseudo_target_gather_styles(ctx, pt, local, B, it->offset, n_global, global)))
    return NULL;
  t2s_status st = pt == u->restyle
                      ? t2s_pseudo_target_source_styles(pt, global, n_global, B, it->offset, u->dg.amplitude_jitter,
                                                        u->seed, it->iter, mine, &ctx->err)
                      : t2s_pseudo_target_random_colors(pt, global, n_global, B, it->offset, u->dg.color_mean_jitter,
                                                        u->dg.color_std_jitter, u->seed, it->iter, mine, &ctx->err);
  if (sticky(ctx, st) || sticky(ctx, t2s_pseudo_target_apply_each(ctx, pt, x, mine, out))) return NULL;
  return out;
}

/* DG 2. x_st: fourier_source, then color_random, or both in that order. The FFT has a
 * CUDA slot, so without the colour part device crops are restyled where they are; with
 * it the loader's host batch is restyled on the host and goes to the device once. */
static t2s_status dg_pseudo_target_image(t2s_ctx *ctx, const t2s_uda *u, const t2s_batch *src, uda_iter *it) {
  if (!t2s_ctx_ok(ctx)) return ctx->err.status;
  if (!u->dg.fourier && !u->dg.color) {  /* none: x_st = x_s */
    it->x_st = it->xs;
    return T2S_OK;
  }
  const int dev = u->restyle_on_device;
  t2s_tensor *x = dev ? it->xs_raw : t2s_batch_host_images(ctx, it->xs_raw, src->images, it->n, it->h, it->w);
  if (u->dg.fourier) x = dg_restyle(ctx, u, u->restyle, x, dev, it);
  if (u->dg.color) x = dg_restyle(ctx, u, u->dg.recolor, x, 0, it);
  it->x_st = t2s_batch_normalized(ctx, dev ? x : t2s_tensor_to_device(ctx, x));
  return need(ctx, it->x_st != NULL, "the stylised image");
}

/* DG 3-4. ce_weight CE(student(x_st), y_s) (logged unscaled as loss_st), plus, with the
 * pull, lambda_t2s L_t2s from the same student forward (queries on x_st, keys from the
 * teacher on x_s) with class weights updated from the student's IoU on x_st. */
static t2s_tensor *dg_stylised_loss(t2s_ctx *ctx, t2s_uda *u, const t2s_uda_nets *nets, const uda_iter *it,
                                    uda_pull *p, float *logged) {
  if (!t2s_ctx_ok(ctx)) return NULL;
  t2s_tensor *logits = NULL;
  if (u->dg.pull) {
    pull_features(ctx, u, nets->teacher, nets->student, it, p, 1);
    reweight(ctx, u, it, p->student_logits);
    logits = p->student_logits;
  } else {
    t2s_seg_out qo;
    if (sticky(ctx, t2s_segmentor_forward(ctx, nets->student, it->x_st, &qo))) return NULL;
    logits = qo.logits;
  }
  t2s_tensor *l_st = seg_ce(ctx, u, logits, it->ys, it->ys_host, NULL, it->class_w);
  keep_value(ctx, logged, LOG_ST, l_st);
  t2s_tensor *l = t2s_scale(ctx, l_st, (float)u->dg.ce_weight);
  return u->dg.pull ? t2s_add(ctx, l, pull_loss(ctx, u, it, p, logged)) : l;
}

/* The DG iteration: L = L_src + ce_weight L_st + lambda_t2s L_t2s, two backward terms. */
static t2s_status dg_step(t2s_ctx *ctx, t2s_uda *u, const t2s_uda_nets *nets, const t2s_batch *src,
                          t2s_uda_losses *out, t2s_error *err) {
  const int stylised = u->dg.pull || u->dg.ce_weight > 0;
  uda_backprop bp = {nets->sync, 0, 1 + stylised};
  uda_iter it;
  uda_pull p = {0};
  t2s_seg_out so = {0};
  memset(out, 0, sizeof *out);
  load_batches(ctx, src, NULL, 0, u->rank, &it);
  float *logged = logged_new(ctx);
  if (u->rw.apply_to == T2S_REWEIGHT_ALL && u->rw.enabled)
    it.class_w = t2s_tensor_to_device(ctx, t2s_reweight_tensor(ctx, &u->rw_state));

  if (u->dg.pull) ema_teacher(ctx, nets->teacher, nets->student, u->alpha, it.iter);  /* 1 */
  if (stylised) dg_pseudo_target_image(ctx, u, src, &it);                            /* 2 */
  /* each term in a liveness scope that ends after its backward (core/engine.h); x_st,
   * made before them, is read by both */
  t2s_scope term = t2s_scope_begin(ctx);
  t2s_tensor *l_src = source_loss(ctx, u, nets->student, &it, &so);                  /* 3 */
  keep_value(ctx, logged, LOG_SRC, l_src);
  backward_term(ctx, &bp, l_src);
  t2s_scope_end(ctx, term, NULL, 0);
  if (stylised) {
    term = t2s_scope_begin(ctx);
    backward_term(ctx, &bp, dg_stylised_loss(ctx, u, nets, &it, &p, logged));          /* 3-4 */
    t2s_scope_end(ctx, term, NULL, 0);
  }
  if (finish(ctx, u, nets->sync, logged, out) != T2S_OK)                             /* 5 */
    return t2s_error_set(err, ctx->err.status, "%s", ctx->err.msg);
  return T2S_OK;
}

/* ---- the iteration ----
 * The steps of docs/method.md in their order, with two placements the data dictates:
 * the feature distance (6) reads the student's features of the source forward (3) and is
 * back-propagated with it, and the re-weighting (8) reads the student's logits of the
 * pull's query forward (7) and weighs this iteration's pulling loss. MIC (5b, optional)
 * follows the mix: it reads the pseudo-labels of step 4. Each loss term is
 * back-propagated as its forward finishes (9); the all-reduce is armed before the last. */

t2s_status t2s_uda_step(t2s_ctx *ctx, t2s_uda *u, const t2s_uda_nets *nets, const t2s_batch *src,
                        const t2s_batch *tgt, t2s_uda_losses *out, t2s_error *err) {
  if (u->type == T2S_CFG_UDA_T2SDA_DG) return dg_step(ctx, u, nets, src, out, err);
  const int adapt = u->type != T2S_CFG_UDA_SOURCE_ONLY, pull = u->type == T2S_CFG_UDA_T2SDA;
  const int fd = nets->imnet != NULL && u->lambda_fd > 0, mic = adapt && u->mic;
  uda_backprop bp = {nets->sync, 0, 1 + adapt + mic + pull * hrda_pull_terms(u)};
  uda_iter it;
  uda_pull p = {0};
  t2s_seg_out so = {0};
  memset(out, 0, sizeof *out);
  load_batches(ctx, src, tgt, adapt, u->rank, &it);
  float *logged = logged_new(ctx);
  if (u->rw.apply_to == T2S_REWEIGHT_ALL && u->rw.enabled)
    it.class_w = t2s_tensor_to_device(ctx, t2s_reweight_tensor(ctx, &u->rw_state));

  if (adapt) ema_teacher(ctx, nets->teacher, nets->student, u->alpha, it.iter);      /* 1 */
  if (pull) pseudo_target_image(ctx, u, src, tgt, &it);                              /* 2 */
  /* Each term runs in a liveness scope (core/engine.h) that ends after its backward:
   * the student passes never coexist, and nothing of a term outlives it but the logged
   * values, the pseudo-labels' confidence and the method's host state. */
  t2s_scope term = t2s_scope_begin(ctx);
  t2s_tensor *l_src = u->hrda ? hrda_source_loss(ctx, u, nets->student, &it, &so)   /* 3 */
                              : source_loss(ctx, u, nets->student, &it, &so);
  keep_value(ctx, logged, LOG_SRC, l_src);
  if (fd)                                                                            /* 6 */
    l_src = t2s_add(ctx, l_src, feature_distance(ctx, u, nets->imnet, &it, so.features, logged));
  backward_term(ctx, &bp, l_src);
  t2s_scope_end(ctx, term, NULL, 0);
  if (adapt) {
    term = t2s_scope_begin(ctx);
    pseudo_labels(ctx, u, nets->teacher, &it, &out->q);                              /* 4 */
    t2s_tensor *l_mix = mix_loss(ctx, u, nets->student, &it);                        /* 5 */
    keep_value(ctx, logged, LOG_MIX, l_mix);
    backward_term(ctx, &bp, l_mix);
    t2s_tensor *const pseudo[2] = {it.yhat, it.pl_weight};  /* MIC's targets outlive the mix */
    t2s_scope_end(ctx, term, pseudo, mic ? 2 : 0);
  }
  if (mic) {
    term = t2s_scope_begin(ctx);
    backward_term(ctx, &bp, masked_consistency_loss(ctx, u, nets->student, &it, logged)); /* 5b */
    t2s_scope_end(ctx, term, NULL, 0);
  }
  if (pull && u->hrda) {
    term = t2s_scope_begin(ctx);
    hrda_pull(ctx, u, nets, &it, &bp, logged);                                       /* 7, 8 */
    t2s_scope_end(ctx, term, NULL, 0);
  } else if (pull) {
    term = t2s_scope_begin(ctx);
    pull_features(ctx, u, nets->teacher, nets->student, &it, &p, 1);                 /* 7 */
    reweight(ctx, u, &it, p.student_logits);                                         /* 8 */
    backward_term(ctx, &bp, pull_loss(ctx, u, &it, &p, logged));                     /* 7 */
    t2s_scope_end(ctx, term, NULL, 0);
  }
  if (finish(ctx, u, nets->sync, logged, out) != T2S_OK)                             /* 9 */
    return t2s_error_set(err, ctx->err.status, "%s", ctx->err.msg);
  return T2S_OK;
}
