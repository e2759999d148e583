/* The device launchers of losses/losses_cuda.h in a build without CUDA. No CUDA
 * context can exist in such a build, so the slots that call these are never reached;
 * the answers only keep the link complete and say what to do if one is. */
#include "losses/losses_cuda.h"

static t2s_status not_built(t2s_ctx *ctx, const char *what) {
  t2s_ctx_fail(ctx, T2S_ERR_UNSUPPORTED, "%s on cuda: this build has no CUDA backend (configure "
               "with -DT2S_CUDA=ON on a machine with the CUDA toolkit)", what);
  return T2S_ERR_UNSUPPORTED;
}

t2s_status t2s_pull_loss_cuda_forward(t2s_ctx *ctx, const t2s_node *node,
                                      const t2s_pull_cuda_batch *b, float *loss) {
  return not_built(ctx, "pull_loss");
}

t2s_status t2s_pull_loss_cuda_backward(t2s_ctx *ctx, const t2s_node *node,
                                       const t2s_pull_cuda_batch *b, const float *dloss,
                                       float *dq, int64_t dq_numel, int accumulate) {
  return not_built(ctx, "pull_loss");
}

t2s_status t2s_feature_distance_cuda_sums(t2s_ctx *ctx, const t2s_node *node, const float *f,
                                          const float *g, const uint8_t *labels,
                                          const uint8_t *things, int64_t pixels, int64_t channels,
                                          double *dist, double sums_host[2]) {
  return not_built(ctx, "feature_distance");
}

t2s_status t2s_feature_distance_cuda_backward(t2s_ctx *ctx, const t2s_node *node, const float *f,
                                              const float *g, const double *dist, int64_t pixels,
                                              int64_t channels, const float *dloss, double scale,
                                              float *df, int accumulate) {
  return not_built(ctx, "feature_distance");
}

t2s_status t2s_pseudo_labels_cuda(t2s_ctx *ctx, const float *logits, int64_t pixels,
                                  int64_t classes, float threshold, uint8_t *yhat,
                                  float *max_prob, double *confident_host) {
  return not_built(ctx, "pseudo_labels");
}

t2s_status t2s_pseudo_weights_cuda(t2s_ctx *ctx, float *weight, int64_t n, int64_t h, int64_t w,
                                   int64_t top, int64_t bottom, float q) {
  return not_built(ctx, "pseudo_labels");
}

t2s_status t2s_classmix_mask_cuda(t2s_ctx *ctx, const uint8_t *labels, const uint8_t *take,
                                  int64_t n, int64_t hw, uint8_t *mask) {
  return not_built(ctx, "classmix_masks");
}

t2s_status t2s_classmix_apply_cuda(t2s_ctx *ctx, const uint8_t *mask, const float *x_s,
                                   const float *x_t, float *x_mix, int64_t n, int64_t channels,
                                   int64_t hw, int nhwc, const uint8_t *y_s, const uint8_t *yhat,
                                   const float *pl_weight, uint8_t *y_mix, float *w_mix) {
  return not_built(ctx, "classmix_apply");
}
