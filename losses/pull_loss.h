/* The T2S pulling loss (docs/method.md step 7): pull the student's features of the
 * pseudo-target image towards the teacher's per-class source prototypes.
 *
 *   q (N, D, h, w)  student projection of x_st, L2-normalised, requires grad
 *   k (N, D, h, w)  teacher projection of x_s, no grad
 *   y (N, h, w)     source labels at feature resolution (t2s_labels_downsample)
 *
 * For image b and class c present in y_b, N_q query pixels of class c are drawn
 * (all of them if fewer); query i has the positive k_c (the class prototype) and
 * N_n negatives (keys of image b whose class is not c, or the prototypes of the
 * other classes present in the global batch), each drawn per query:
 *   l_i = -log( exp(q_i.k_c / tau) / (exp(q_i.k_c / tau) + sum_n exp(q_i.k_n / tau)) )
 *   l_c = sum_{i of class c, all ranks} l_i / Q_c,  Q_c the global query count of c
 *   L   = sum_c w_c l_c / sum_c w_c  over the classes with Q_c > 0.
 * Every draw is keyed by (seed, iter, global image index, class), so how the images
 * are split over ranks changes nothing; Q_c is reduced with t2s_batch_stats_reduce.
 * Each rank returns its share of L times world_size (the distributed layer averages
 * gradients). The gradient flows to q only. CPU and CUDA slots: on CUDA every input is
 * a device tensor; the plan is drawn on the host from a copy of the labels. */
#pragma once
#include <stdint.h>

#include "core/engine.h"

typedef enum t2s_pull_negatives {
  T2S_PULL_NEG_KEYS = 0,    /* N_n keys of pixels of the same image with another class */
  T2S_PULL_NEG_PROTOTYPES,  /* the prototypes of the other globally present classes */
} t2s_pull_negatives;

typedef enum t2s_label_down {
  T2S_LABEL_DOWN_NEAREST = 0,  /* PyTorch nearest: src = floor(dst * in / out) */
  T2S_LABEL_DOWN_MAJORITY,     /* the class with >= ratio of the cell's pixels, else ignore */
} t2s_label_down;

typedef struct t2s_pull_cfg {
  int num_queries;              /* N_q per class per image: 256 */
  int num_negatives;            /* N_n per query: 50 */
  float tau;                    /* temperature: 0.5 */
  t2s_pull_negatives negatives; /* keys */
  t2s_label_down label_down;    /* nearest */
  float majority_ratio;         /* 0.75 (label_down = majority) */
  float proto_momentum;         /* EMA of prototypes over iterations; 0 = off (default) */
  int ignore_index;             /* 255 */
} t2s_pull_cfg;

t2s_pull_cfg t2s_pull_cfg_defaults(void);
/* NULL when valid, else a sentence naming the bad field. */
const char *t2s_pull_cfg_check(const t2s_pull_cfg *cfg);

/* ---- labels at feature resolution -------------------------------------------- */
/* y (N, H, W) u8 -> (N, h, w) u8 in the pass arena. Nearest: t2s_resize_nearest
 * (PyTorch's mode='nearest'). Majority (host only): the cell of output
 * pixel (i, j) is rows [floor(i H / h), floor((i + 1) H / h)) x the same for columns;
 * a class (not ignore) holding >= ratio of the cell's pixels wins, else ignore. */
t2s_tensor *t2s_labels_downsample(t2s_ctx *ctx, t2s_tensor *labels, int out_h, int out_w,
                                  t2s_label_down mode, float ratio, int ignore_index);

/* ---- prototypes ----------------------------------------------------------------- */
/* Per-class source prototypes and their EMA state. The arrays are plain host memory
 * owned by this struct; a checkpoint saves `proto` and `seen` (and momentum is
 * config). present[] describes the last update only and needs no saving. */
typedef struct t2s_prototypes {
  int num_classes, dim;
  float momentum;    /* proto <- m proto + (1 - m) batch mean once seen; 0 = batch mean */
  float *proto;      /* (C, D) */
  uint8_t *seen;     /* (C) proto holds a value (EMA state) */
  uint8_t *present;  /* (C) the class had labelled pixels in the last global batch */
  double *count;     /* (C) global labelled-pixel counts of the last batch */
} t2s_prototypes;

t2s_status t2s_prototypes_init(t2s_prototypes *p, int num_classes, int dim, float momentum,
                               t2s_error *err);
void t2s_prototypes_free(t2s_prototypes *p);
/* k_c = sum of k over pixels labelled c / their count, sums and counts reduced over
 * ranks in one call; classes absent from the global batch keep their previous value
 * and get present[c] = 0. keys (N, D, h, w) f32 NCHW and labels (N, h, w) u8, both in
 * host memory (from a device: t2s_tensor_host, launch/device_batch.h). */
t2s_status t2s_class_prototypes(t2s_ctx *ctx, const t2s_tensor *keys, const t2s_tensor *labels,
                                int ignore_index, t2s_prototypes *p);
/* p->proto (C, D) f32 and p->present (C) u8 as host views (losses/host_view.h); on
 * another device the caller moves them there (t2s_tensor_to_device). */
t2s_tensor *t2s_prototypes_tensor(t2s_ctx *ctx, t2s_prototypes *p);
t2s_tensor *t2s_prototypes_present_tensor(t2s_ctx *ctx, t2s_prototypes *p);

/* ---- the sampled pixels --------------------------------------------------------- */
typedef struct t2s_pull_group {  /* the queries of one class in one image */
  int32_t image;                 /* local image index */
  int32_t cls;
  int32_t n_query;
  int32_t n_neg;                 /* negatives per query (the same for every query) */
  int64_t query_off;             /* first entry in plan.query_pixel */
  int64_t neg_off;               /* first entry in plan.neg_index (n_query * n_neg) */
} t2s_pull_group;

typedef struct t2s_pull_plan {
  int n_groups;
  t2s_pull_group *groups;
  int32_t *query_pixel;          /* pixel index y * w + x within the group's image */
  int32_t *neg_index;            /* keys: pixel index in the image; prototypes: class */
  int64_t n_queries, n_negs;     /* entries of query_pixel and neg_index */
} t2s_pull_plan;

/* Draws the queries and negatives (host memory of the pass, gone at its end).
 * labels (N, h, w) u8; present (C) u8, the global class-present mask. Queries are
 * drawn without replacement by a partial Fisher-Yates shuffle of the class's pixel
 * list (raster order) with key (seed, iter, global image, class, purpose 1), element j
 * at counter j; negatives of query i likewise from the candidate list (raster-order
 * pixels of other classes, or the ascending list of other present classes) with key
 * (.., purpose 2), counters i * N_n + j, all candidates when there are at most N_n.
 * A query without any candidate has no negatives: its loss is -log 1 = 0. */
t2s_status t2s_pull_loss_plan(t2s_ctx *ctx, const t2s_tensor *labels, const t2s_tensor *present,
                              int num_classes, const t2s_pull_cfg *cfg, uint64_t seed,
                              int64_t iter, int64_t global_offset, t2s_pull_plan *plan);

/* ---- the loss -------------------------------------------------------------------- */
/* Scalar loss (a fused op). class_weight (C) f32 or NULL (all 1); prototypes (C, D)
 * f32 (t2s_prototypes_tensor); present (C) u8. Labels of a class that is not in
 * `present` are an error (the prototypes were computed from other labels). */
t2s_tensor *t2s_pull_loss(t2s_ctx *ctx, t2s_tensor *q, t2s_tensor *k, t2s_tensor *labels,
                          t2s_tensor *class_weight, t2s_tensor *prototypes, t2s_tensor *present,
                          const t2s_pull_cfg *cfg, uint64_t seed, int64_t iter,
                          int64_t global_offset, int world_size);
/* Host copies of the inputs the plan reads (labels, class weights, present mask) where the
 * caller holds them anyway (the training step: the loader's labels, the method's state), so
 * the CUDA slot need not read them back (each a host synchronisation). NULL members are read
 * back; the CPU slot reads its inputs directly. */
typedef struct t2s_pull_host {
  const t2s_tensor *labels, *class_weight, *present;
} t2s_pull_host;
/* t2s_pull_loss with host copies (host may be NULL): each must match its tensor's dtype and
 * shape and be in host memory. */
t2s_tensor *t2s_pull_loss_hosted(t2s_ctx *ctx, t2s_tensor *q, t2s_tensor *k, t2s_tensor *labels,
                                 t2s_tensor *class_weight, t2s_tensor *prototypes, t2s_tensor *present,
                                 const t2s_pull_cfg *cfg, uint64_t seed, int64_t iter,
                                 int64_t global_offset, int world_size, const t2s_pull_host *host);

/* ---- the fused op's slots ------------------------------------------------------------- */
/* Shared by the CPU slots (losses/pull_loss.c) and the CUDA slots (losses/cuda/pull_loss.cu),
 * which the op's descriptor in losses/pull_loss.c holds. */
typedef struct t2s_pull_args {
  t2s_pull_cfg cfg;
  uint64_t seed;
  int64_t iter, global_offset;
  int world_size;
  t2s_pull_host host;  /* host copies for the CUDA plan (members may be NULL) */
} t2s_pull_args;
/* Q_c reduced over ranks, then the per-group factor world_size w_c / (W Q_c) into
 * scale[g]; cw (C) host class weights or NULL (all 1). */
t2s_status t2s_pull_group_scales(t2s_ctx *ctx, const t2s_pull_args *a, const t2s_pull_plan *plan,
                                 const float *cw, int C, double *scale);
/* The CUDA slots: the plan drawn on the host from copies of the labels and the mask
 * (the same plan as the CPU slot), the arithmetic over the sampled pixels on the GPU. */
t2s_status t2s_pull_loss_cuda_forward(t2s_ctx *ctx, t2s_node *node);
t2s_status t2s_pull_loss_cuda_backward(t2s_ctx *ctx, t2s_node *node, const float *beta);
