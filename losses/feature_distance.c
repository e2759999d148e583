#include "losses/feature_distance.h"

#include <math.h>
#include <string.h>

#include "core/device.h"
#include "losses/batch_stats.h"

t2s_feature_distance_cfg t2s_feature_distance_cfg_defaults(void) {
  t2s_feature_distance_cfg c;
  memset(&c, 0, sizeof c);
  c.enabled = 0;
  c.lambda = 0.005f;
  static const int things[] = {6, 7, 11, 12, 13, 14, 15, 16, 17, 18};
  for (size_t i = 0; i < sizeof things / sizeof things[0]; i++) c.things[things[i]] = 1;
  c.label_down = T2S_LABEL_DOWN_NEAREST;
  c.majority_ratio = 0.75f;
  c.ignore_index = 255;
  return c;
}

typedef t2s_fd_args fd_args;
typedef t2s_fd_saved fd_saved;

static inline int fd_counts(const fd_args *a, uint8_t label) { return a->things[label]; }

/* || f_i - g_i || of pixel i of image b */
static double pixel_dist(const float *f, const float *g, int64_t C, int64_t hw, int64_t i) {
  double s = 0.0;
  for (int64_t c = 0; c < C; c++) {
    double d = (double)f[c * hw + i] - g[c * hw + i];
    s += d * d;
  }
  return sqrt(s);
}

static t2s_status fd_forward(t2s_ctx *ctx, t2s_node *node) {
  const fd_args *a = node->args;
  const t2s_tensor *ft = node->in[0];
  int64_t n = ft->shape[0], C = ft->shape[1], hw = ft->shape[2] * ft->shape[3];
  const uint8_t *y = t2s_u8(node->in[2]);
  double sum = 0.0, count = 0.0;
  for (int64_t b = 0; b < n; b++)
    for (int64_t i = 0; i < hw; i++) {
      if (!fd_counts(a, y[b * hw + i])) continue;
      count += 1.0;
      sum += pixel_dist(t2s_f32(ft) + b * C * hw, t2s_f32(node->in[1]) + b * C * hw, C, hw, i);
    }
  t2s_status st = t2s_batch_stats_reduce(ctx, &count, 1);
  if (st != T2S_OK) return st;
  fd_saved *sv = t2s_host_scratch(ctx, sizeof *sv);
  if (sv == NULL) return ctx->err.status;
  sv->scale = t2s_rank_loss_scale(count, a->world_size);
  t2s_f32(node->out)[0] = (float)(sum * sv->scale);
  node->saved = sv;
  return T2S_OK;
}

static t2s_status fd_backward(t2s_ctx *ctx, t2s_node *node, const float *beta) {
  const fd_args *a = node->args;
  const fd_saved *sv = node->saved;
  t2s_tensor *ft = node->in[0];
  int64_t n = ft->shape[0], C = ft->shape[1], hw = ft->shape[2] * ft->shape[3];
  const uint8_t *y = t2s_u8(node->in[2]);
  double g = node->out->grad[0] * sv->scale;
  for (int64_t b = 0; b < n; b++) {
    const float *f = t2s_f32(ft) + b * C * hw, *h = t2s_f32(node->in[1]) + b * C * hw;
    float *df = ft->grad + b * C * hw;
    for (int64_t i = 0; i < hw; i++) {
      double dist = fd_counts(a, y[b * hw + i]) ? pixel_dist(f, h, C, hw, i) : 0.0;
      double k = dist > 0.0 ? g / dist : 0.0;
      for (int64_t c = 0; c < C; c++) {
        float v = (float)(k * ((double)f[c * hw + i] - h[c * hw + i]));
        df[c * hw + i] = beta[0] != 0.0f ? df[c * hw + i] + v : v;
      }
    }
  }
  return T2S_OK;
}

static const t2s_op fd_op =
    T2S_OP_DESCRIPTOR("feature_distance", fd_forward, fd_backward,
                      t2s_feature_distance_cuda_forward, t2s_feature_distance_cuda_backward);

t2s_tensor *t2s_feature_distance(t2s_ctx *ctx, t2s_tensor *f, t2s_tensor *g, t2s_tensor *labels,
                                 const t2s_feature_distance_cfg *cfg, int world_size) {
  if (!t2s_ctx_ok(ctx)) return NULL;
  char sf[96], sg[96], sl[96];
  if (f == NULL || g == NULL || labels == NULL || cfg == NULL || f->dtype != T2S_F32 ||
      f->ndim != 4 || f->device != ctx->device || g->dtype != T2S_F32 || !t2s_same_shape(f, g) ||
      g->device != ctx->device || g->requires_grad || labels->dtype != T2S_U8 ||
      labels->ndim != 3 || labels->device != ctx->device || labels->shape[0] != f->shape[0] ||
      labels->shape[1] != f->shape[2] || labels->shape[2] != f->shape[3] || world_size < 1)
    return t2s_ctx_fail(ctx, T2S_ERR_INVALID,
                        "feature_distance: need float32 student and ImageNet features of one "
                        "shape (N, C, h, w), the ImageNet ones without gradient, labels uint8 "
                        "(N, h, w), all on the run's device (%s), and world_size >= 1; got %s, "
                        "%s, labels %s", t2s_device_name(ctx->device),
                        f ? t2s_shape_str(f, sf, sizeof sf) : "NULL",
                        g ? t2s_shape_str(g, sg, sizeof sg) : "NULL",
                        labels ? t2s_shape_str(labels, sl, sizeof sl) : "NULL");
  fd_args a;
  memcpy(a.things, cfg->things, sizeof a.things);
  a.things[cfg->ignore_index & 255] = 0;
  a.world_size = world_size;
  int64_t one = 1;
  t2s_tensor *in[3] = {f, g, labels};
  return t2s_op_apply_desc(ctx, &fd_op, in, 3, t2s_tensor_new(ctx, T2S_F32, 1, &one), &a, sizeof a);
}
