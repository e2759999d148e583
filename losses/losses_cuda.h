/* Device halves of the method's fused losses (plain C interface).
 *
 * The CUDA slots of the pull-loss and feature-distance descriptors live in
 * losses/pull_loss.c and losses/feature_distance.c next to their CPU slots: the
 * host part (the sampling plan drawn from host labels, the per-class normalisers
 * reduced over ranks) is shared with the CPU version, and only the arithmetic over
 * the features runs on the GPU through the launchers below (in losses/cuda/). A
 * build without CUDA links losses/cuda_absent.c instead, whose launchers answer
 * T2S_ERR_UNSUPPORTED (unreachable there: no CUDA context can be created).
 *
 * Features on CUDA are 4-d activations stored NHWC: the D-vector of pixel i of
 * image b starts at (b hw + i) D. Every pointer below is device memory unless the
 * comment says host. Reductions are deterministic (fixed order, double). */
#pragma once
#include <stdint.h>

#include "core/engine.h"
#include "losses/pull_loss.h"

/* ---- pulling loss ------------------------------------------------------------------ */
typedef struct t2s_pull_cuda_batch {
  const float *q, *k;              /* (N, hw, D) NHWC storage of the (N, D, h, w) features */
  const float *proto;              /* (C, D) prototypes */
  int64_t hw, dim;
  int negatives_are_keys;          /* negatives index key pixels (else prototypes) */
  float tau;
  int n_groups;
  int64_t n_queries, n_negs;
  const t2s_pull_group *groups;    /* the plan's groups, copied to the device */
  const int32_t *query_pixel;      /* (n_queries) */
  const int32_t *neg_index;        /* (n_negs) */
  const int32_t *query_group;      /* (n_queries) the group of each query */
  const double *group_scale;       /* (n_groups) world_size w_c / (sum_c' w_c' Q_c) */
  float *prob;                     /* (n_queries + n_negs) softmax per query, forward output */
  double *work;                    /* (n_queries + n_groups) scratch */
} t2s_pull_cuda_batch;

/* loss[0] = sum_g group_scale[g] sum_{i in g} l_i (one float on the device); fills prob. */
t2s_status t2s_pull_loss_cuda_forward(t2s_ctx *ctx, const t2s_node *node,
                                      const t2s_pull_cuda_batch *b, float *loss);
/* dq (N, hw, D) (+)= dloss[0] group_scale / tau ((p_0 - 1) k_c + sum_n p_n k_n) at each
 * query pixel; with accumulate 0 every other element is set to 0 first. */
t2s_status t2s_pull_loss_cuda_backward(t2s_ctx *ctx, const t2s_node *node,
                                       const t2s_pull_cuda_batch *b, const float *dloss,
                                       float *dq, int64_t dq_numel, int accumulate);

/* ---- ImageNet feature distance ----------------------------------------------------- */
/* dist[i] = ||f_i - g_i|| over the C channels of pixel i (0 where things[label_i] is 0)
 * for the `pixels` = N hw pixels; sums_host[0] = sum of dist, sums_host[1] = the number
 * of counted pixels (host doubles, after a synchronising copy). things: host, 256 flags. */
t2s_status t2s_feature_distance_cuda_sums(t2s_ctx *ctx, const t2s_node *node, const float *f,
                                          const float *g, const uint8_t *labels,
                                          const uint8_t *things, int64_t pixels, int64_t channels,
                                          double *dist, double sums_host[2]);
/* df (+)= dloss[0] scale (f - g) / dist per pixel (0 where dist is 0). */
t2s_status t2s_feature_distance_cuda_backward(t2s_ctx *ctx, const t2s_node *node, const float *f,
                                              const float *g, const double *dist, int64_t pixels,
                                              int64_t channels, const float *dloss, double scale,
                                              float *df, int accumulate);

/* ---- per-pixel maps of the UDA step (losses/pseudo_label.c, losses/classmix.c) ------- */
/* logits (N, C, H, W) stored NHWC: yhat[i] = argmax_c (first maximum), max_prob[i] (may be
 * NULL) = 1 / sum_c exp(z_c - z_max), *confident_host = #{i: max_prob_i >= threshold}
 * (host, after a synchronising copy). i runs over the `pixels` = N H W pixels. */
t2s_status t2s_pseudo_labels_cuda(t2s_ctx *ctx, const float *logits, int64_t pixels,
                                  int64_t classes, float threshold, uint8_t *yhat,
                                  float *max_prob, double *confident_host);
/* weight (N, H, W) = q, except rows [0, top) and [H - bottom, H), which get 0. */
t2s_status t2s_pseudo_weights_cuda(t2s_ctx *ctx, float *weight, int64_t n, int64_t h, int64_t w,
                                   int64_t top, int64_t bottom, float q);
/* mask[b hw + i] = take[b 256 + labels[b hw + i]] for N images of hw pixels; take is a
 * device (N, 256) table of chosen classes. */
t2s_status t2s_classmix_mask_cuda(t2s_ctx *ctx, const uint8_t *labels, const uint8_t *take,
                                  int64_t n, int64_t hw, uint8_t *mask);
/* x_mix = m ? x_s : x_t over images of `channels` x hw per sample (nhwc: the channel is
 * the fastest index, else NCHW); y_mix = m ? y_s : yhat and w_mix = m ? 1 : pl_weight
 * over the N hw map. */
t2s_status t2s_classmix_apply_cuda(t2s_ctx *ctx, const uint8_t *mask, const float *x_s,
                                   const float *x_t, float *x_mix, int64_t n, int64_t channels,
                                   int64_t hw, int nhwc, const uint8_t *y_s, const uint8_t *yhat,
                                   const float *pl_weight, uint8_t *y_mix, float *w_mix);
