/* Dynamic class re-weighting (docs/method.md step 8): concentrate on the classes that
 * currently perform worst.
 *
 * Per class, the intersection and union of the student's prediction on the
 * pseudo-target image (argmax of its logits) with the source labels, summed over
 * the global batch (one t2s_batch_stats_reduce of 3C values: I, U, label count);
 * for the classes present in the global labels
 *   s_c <- m s_c + (1 - m) IoU_c,   w_c = (1 - s_c)^gamma,
 * then w is scaled to mean 1 over the present classes. Classes absent from the
 * batch keep s_c and get w_c = 1. */
#pragma once
#include <stdint.h>

#include "core/engine.h"

typedef enum t2s_reweight_apply {
  T2S_REWEIGHT_T2S_ONLY = 0,  /* the weights enter the pulling loss only (default) */
  T2S_REWEIGHT_ALL,           /* also the class weights of the cross-entropy terms */
} t2s_reweight_apply;

typedef struct t2s_reweight_cfg {
  int enabled;                   /* 1; 0: every weight stays 1 */
  double momentum;               /* m = 0.99 */
  double gamma;                  /* 1 */
  t2s_reweight_apply apply_to;   /* t2s_only (the training loop reads it) */
  int ignore_index;              /* 255 */
} t2s_reweight_cfg;

t2s_reweight_cfg t2s_reweight_cfg_defaults(void);
const char *t2s_reweight_cfg_check(const t2s_reweight_cfg *cfg);

/* State saved by the checkpoint: score (C) and weight (C). The scores start at 0
 * (every class counts as performing worst until measured), so the first updates
 * move s_c by only (1 - m) IoU_c: the weights start near uniform and separate over
 * the first few hundred iterations. */
typedef struct t2s_reweight_state {
  int num_classes;
  double *score;     /* s_c, EMA of the per-class IoU */
  float *weight;     /* w_c after the last update (all 1 before the first) */
  uint8_t *present;  /* the class had labelled pixels in the last global batch */
  double *iou;       /* IoU_c of the last global batch (0 where the union is 0) */
} t2s_reweight_state;

t2s_status t2s_reweight_init(t2s_reweight_state *s, int num_classes, t2s_error *err);
void t2s_reweight_free(t2s_reweight_state *s);

/* logits (N, C, h, w) f32 (any resolution; host or the run's device), labels (N, H, W)
 * u8 in host memory: the prediction at
 * label pixel (y, x) is the argmax at logit pixel (floor(y h / H), floor(x w / W))
 * (nearest upsampling of the predicted class map). Updates the state. */
t2s_status t2s_reweight_update(t2s_ctx *ctx, const t2s_reweight_cfg *cfg,
                               const t2s_tensor *logits, const t2s_tensor *labels,
                               t2s_reweight_state *s);
/* A (C) f32 host view over s->weight (losses/host_view.h), for t2s_pull_loss and CE;
 * on another device the caller moves it there (t2s_tensor_to_device). */
t2s_tensor *t2s_reweight_tensor(t2s_ctx *ctx, t2s_reweight_state *s);
