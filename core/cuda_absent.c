/* Stands in for the CUDA backend in builds without nvcc: every CUDA request
 * answers "not built" so the rest of the engine needs no #ifdef. */
#include "core/device.h"
#include "core/engine.h"
#include "core/optim_cuda.h"

static t2s_status not_built(t2s_error *err) {
  return t2s_error_set(err, T2S_ERR_UNSUPPORTED,
                       "this t2sda build has no CUDA backend (configure with -DT2S_CUDA=ON on a "
                       "machine with the CUDA toolkit), or run with device: cpu");
}

int t2s_cuda_built(void) { return 0; }
int t2s_cuda_device_count(void) { return 0; }
t2s_status t2s_cuda_set_device(int ordinal, t2s_error *err) {
  (void)ordinal;
  return not_built(err);
}
t2s_status t2s_cuda_device_name(char *buf, size_t size, t2s_error *err) {
  if (size) buf[0] = '\0';
  return not_built(err);
}
void *t2s_cuda_malloc(size_t bytes, t2s_error *err) {
  (void)bytes;
  not_built(err);
  return NULL;
}
void t2s_cuda_free(void *ptr) { (void)ptr; }
t2s_status t2s_cuda_zero(void *ptr, size_t bytes, t2s_error *err) { return not_built(err); }
t2s_status t2s_cuda_copy(void *dst, int dst_on_device, const void *src, int src_on_device,
                         size_t bytes, t2s_error *err) {
  return not_built(err);
}
t2s_status t2s_cuda_ctx_init(t2s_ctx *ctx, t2s_error *err) { return not_built(err); }
void t2s_cuda_ctx_destroy(t2s_ctx *ctx) { (void)ctx; }
t2s_status t2s_device_sync(t2s_device dev, t2s_error *err) {
  return dev == T2S_DEV_CUDA ? not_built(err) : T2S_OK;
}
t2s_status t2s_cuda_set_precision(struct t2s_ctx *ctx, t2s_precision mode) {
  if (mode == T2S_PRECISION_FP32) return T2S_OK; /* what the CPU computes anyway */
  return not_built(ctx ? &ctx->err : NULL);
}
t2s_status t2s_optim_cuda_step(t2s_optim *o, double lr, double *grad_norm, t2s_error *err) {
  (void)o, (void)lr, (void)grad_norm;
  return not_built(err);
}
t2s_status t2s_grad_global_norm_cuda(const t2s_params *p, double *norm, t2s_error *err) {
  (void)p;
  *norm = 0.0;
  return not_built(err);
}
t2s_status t2s_ema_update_cuda(t2s_params *teacher, const t2s_params *student, double alpha,
                               int64_t iter, int copy_buffers, t2s_error *err) {
  (void)teacher, (void)student, (void)alpha, (void)iter, (void)copy_buffers;
  return not_built(err);
}

void *t2s_cuda_host_alloc(size_t bytes) {
  (void)bytes;
  return NULL;
}
int t2s_cuda_host_free(void *ptr) {
  (void)ptr;
  return 0;
}
