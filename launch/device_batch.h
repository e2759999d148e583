/* Batches on the run's device: the edge where host data (the loader's f32 NCHW crops
 * in [0, 255], u8 label maps) becomes tensors of the context, and where the small
 * results that the host needs (a loss value, a label map to count) come back. The
 * training step (launch/uda_step.c) and the evaluator cross between host and device
 * only through these functions; the losses take and hand out host views
 * (losses/host_view.h) or tensors already on the run's device.
 *
 * On the CPU every function is the host code the training step always ran (a copy
 * into the pass arena; data/augment.h's photometric functions), so the CPU path is
 * unchanged bit for bit. On CUDA images are stored NHWC (the backend's activation
 * layout): the upload copies the NCHW batch to the device and transposes it there;
 * the photometric steps draw their parameters on the host with the CPU's keys and
 * run the per-pixel arithmetic on the GPU (data/augment.h t2s_images_*).
 *
 * Failures are recorded in ctx->err (sticky); tensor-returning functions then return
 * NULL and status-returning ones the status. */
#pragma once
#include <stdint.h>

#include "core/engine.h"
#include "data/augment.h"
#include "losses/host_view.h"
#include "losses/pull_loss.h"

/* (n, 3, h, w) f32 images from host NCHW memory, in the context's device and layout. */
t2s_tensor *t2s_batch_images(t2s_ctx *ctx, const float *host_nchw, int n, int h, int w);
/* (n, h, w) u8 labels from host memory (NULL: uninitialised). */
t2s_tensor *t2s_batch_labels(t2s_ctx *ctx, const uint8_t *host, int n, int h, int w);
/* A copy of the tensor's values in host memory, 4-d f32 in NCHW order (transposed
 * from NHWC on CUDA). A bf16 activation (precision bf16) comes back widened to f32.
 * host holds numel elements (floats for bf16). */
t2s_status t2s_tensor_download(t2s_ctx *ctx, const t2s_tensor *t, void *host);
/* A host tensor's values as a new tensor of the context (4-d f32: to its layout). */
t2s_tensor *t2s_tensor_upload(t2s_ctx *ctx, const t2s_tensor *host);
/* The first element of a f32 tensor as a double (NAN for NULL or a failed copy). */
double t2s_tensor_scalar(t2s_ctx *ctx, const t2s_tensor *t);

/* ---- the host halves of the training step ----
 * Host code (pixel counts, majority label downsampling, FFTW, the loss statistics)
 * reads host tensors. On the CPU these are the tensors themselves, bit for bit the
 * former host path; on CUDA they are views of the loader's host batch or copies. */

/* A host (n, h, w) u8 view of the loader's labels `host`; on the CPU `y` itself. */
t2s_tensor *t2s_batch_host_labels(t2s_ctx *ctx, t2s_tensor *y, const uint8_t *host, int n, int h,
                                  int w);
/* A host (n, 3, h, w) f32 view of the loader's images `host`; on the CPU `x` itself. */
t2s_tensor *t2s_batch_host_images(t2s_ctx *ctx, t2s_tensor *x, const float *host, int n, int h,
                                  int w);
/* A new (n, c, h, w) f32 batch in host memory for host code to write; on the CPU a
 * tensor of the context, so t2s_tensor_to_device hands it on without a copy. */
t2s_tensor *t2s_host_batch_new(t2s_ctx *ctx, int64_t n, int64_t c, int64_t h, int64_t w);
/* A host tensor on the run's device: itself on the CPU, else uploaded. */
t2s_tensor *t2s_tensor_to_device(t2s_ctx *ctx, t2s_tensor *host);
/* The tensor's values in host memory (NCHW for 4-d f32; bf16 widened to f32): its own
 * data on the CPU, else a copy in host scratch. NULL with ctx->err on failure. */
const void *t2s_tensor_host_data(t2s_ctx *ctx, const t2s_tensor *t);
/* A host tensor of the same shape over t2s_tensor_host_data (NCHW for 4-d; f32 for a
 * bf16 activation). */
t2s_tensor *t2s_tensor_host(t2s_ctx *ctx, const t2s_tensor *t);
/* A normalised copy of a raw (n, 3, h, w) image batch (the raw one stays for mixing). */
t2s_tensor *t2s_batch_normalized(t2s_ctx *ctx, const t2s_tensor *raw);
/* Labels at feature resolution. Nearest runs on the run's device; majority is host
 * code, so on CUDA it runs in a short-lived CPU context on y_host (the host view of
 * y) and the small result is uploaded. host_out (may be NULL) receives a host view of
 * the result where one exists without a read-back (the CPU; majority on CUDA), else NULL. */
t2s_tensor *t2s_batch_labels_down(t2s_ctx *ctx, t2s_tensor *y, t2s_tensor *y_host, int h, int w,
                                  t2s_label_down mode, float ratio, int ignore_index,
                                  t2s_tensor **host_out);

/* Photometric augmentation of an (n, 3, h, w) f32 batch in [0, 255] in place; sample i
 * is global sample key.sample + i (the keys of data/augment.h on every device). */
t2s_status t2s_batch_color_jitter(t2s_ctx *ctx, t2s_tensor *x, const t2s_jitter_cfg *cfg,
                                  t2s_aug_key key);
t2s_status t2s_batch_gaussian_blur(t2s_ctx *ctx, t2s_tensor *x, const t2s_blur_cfg *cfg,
                                   t2s_aug_key key);
/* (x - mean_c) / std_c in place (t2s_normalize). */
t2s_status t2s_batch_normalize(t2s_ctx *ctx, t2s_tensor *x);
