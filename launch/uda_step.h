/* One T2S-DA training iteration (docs/method.md "One training iteration"): EMA
 * teacher, pseudo-target image, source CE, pseudo-labels, ClassMix with strong
 * augmentation, ImageNet feature distance, the pulling loss and the dynamic class
 * re-weighting. uda.type picks source_only, dacs (the self-training base) or
 * t2sda (base + T2S). The step leaves averaged gradients in the student's
 * gradient buffer; the caller checks the losses and takes the optimizer step. */
#pragma once
#include <stdint.h>

#include "core/nn/hrda.h"
#include "core/nn/segmentor.h"
#include "data/augment.h"
#include "data/loader.h"
#include "dist/grad_sync.h"
#include "launch/train_checkpoint.h"
#include "launch/train_config.h"
#include "losses/pseudo_label.h"
#include "losses/pseudo_target.h"
#include "losses/pull_loss.h"
#include "losses/reweight.h"

typedef struct t2s_uda_losses {
  double src, mix, fd, t2s;  /* loss terms (this rank's share scaled as the global loss) */
  double total;
  double q;                  /* pseudo-label confidence fraction */
} t2s_uda_losses;

/* The method's settings (from the config) and its running state. */
typedef struct t2s_uda {
  t2s_cfg_uda type;
  int num_classes, ignore_index;
  uint64_t seed;
  int rank, world_size;
  double alpha;
  int teacher_bn_batch;      /* teacher BN on batch statistics (uda.teacher_bn: batch) */
  t2s_pseudo_label_cfg pl;
  t2s_jitter_cfg jitter;
  t2s_blur_cfg blur;
  int use_blur;
  double lambda_fd;
  uint8_t fd_class[256];
  double lambda_t2s;
  t2s_pull_cfg pull;
  t2s_reweight_cfg rw;
  t2s_prototypes protos;
  t2s_reweight_state rw_state;
  t2s_pseudo_target *restyle;  /* FFTW plans of the pseudo-target image (t2sda only) */
  int restyle_on_device;       /* the method has a CUDA slot (fourier, none): images stay on the device */
  int hrda;                    /* model.hrda.enabled: HRDA forward passes and losses */
  t2s_hrda_cfg hrda_cfg;
  double hrda_detail_w;        /* model.hrda.detail_loss_weight */
  t2s_cfg_hrda_view hrda_view; /* uda.t2s.hrda_view */
} t2s_uda;

/* The networks one iteration trains and reads, and the rank's gradient all-reduce
 * (the batch statistics cross ranks through ctx->stat_allreduce, dist/comm.h). */
typedef struct t2s_uda_nets {
  t2s_segmentor *student;
  t2s_segmentor *teacher;    /* EMA teacher; NULL for source_only */
  const t2s_segmentor *imnet;  /* frozen ImageNet copy; NULL without the feature distance */
  t2s_grad_sync *sync;
} t2s_uda_nets;

t2s_status t2s_uda_init(t2s_uda *u, const t2s_train_config *cfg, int rank, int world_size,
                        t2s_error *err);
void t2s_uda_free(t2s_uda *u);
/* The method's running state as named arrays for checkpoints; returns the count. */
int t2s_uda_state_arrays(t2s_uda *u, t2s_state_array *out, int max);
/* One iteration on this rank's B source and B target crops (tgt NULL for
 * source_only). Failures land in ctx->err (sticky) and are returned through err. */
t2s_status t2s_uda_step(t2s_ctx *ctx, t2s_uda *u, const t2s_uda_nets *nets, const t2s_batch *src,
                        const t2s_batch *tgt, t2s_uda_losses *out, t2s_error *err);
