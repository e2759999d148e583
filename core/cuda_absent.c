/* Stands in for the CUDA backend in builds without nvcc: every CUDA request
 * answers "not built" so the rest of the engine needs no #ifdef. */
#include "core/device.h"
#include "core/engine.h"

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
