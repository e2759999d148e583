#include "core/device.h"

#include <stdlib.h>
#include <string.h>

void *t2s_device_malloc(t2s_device dev, size_t bytes, t2s_error *err) {
  if (bytes == 0) bytes = T2S_ALIGN;
  if (dev == T2S_DEV_CUDA) return t2s_cuda_malloc(bytes, err);
  size_t rounded = (bytes + T2S_ALIGN - 1) / T2S_ALIGN * T2S_ALIGN;
  void *p = aligned_alloc(T2S_ALIGN, rounded);
  if (p == NULL)
    t2s_error_set(err, T2S_ERR_NOMEM, "out of host memory allocating %zu bytes", bytes);
  return p;
}

void t2s_device_free(t2s_device dev, void *ptr) {
  if (ptr == NULL) return;
  if (dev == T2S_DEV_CUDA) t2s_cuda_free(ptr);
  else free(ptr);
}

t2s_status t2s_device_zero(t2s_device dev, void *ptr, size_t bytes, t2s_error *err) {
  if (dev == T2S_DEV_CUDA) return t2s_cuda_zero(ptr, bytes, err);
  memset(ptr, 0, bytes);
  return T2S_OK;
}

t2s_status t2s_device_copy(t2s_device dst_dev, void *dst, t2s_device src_dev, const void *src,
                           size_t bytes, t2s_error *err) {
  if (bytes == 0) return T2S_OK;
  if (dst_dev == T2S_DEV_CPU && src_dev == T2S_DEV_CPU) {
    memmove(dst, src, bytes);
    return T2S_OK;
  }
  return t2s_cuda_copy(dst, dst_dev == T2S_DEV_CUDA, src, src_dev == T2S_DEV_CUDA, bytes, err);
}

void *t2s_host_pinned_alloc(size_t bytes) {
  void *p = t2s_cuda_device_count() > 0 ? t2s_cuda_host_alloc(bytes) : NULL;
  if (p != NULL) return p;
  size_t rounded = (bytes + T2S_ALIGN - 1) / T2S_ALIGN * T2S_ALIGN;
  return aligned_alloc(T2S_ALIGN, rounded > 0 ? rounded : T2S_ALIGN);
}

void t2s_host_pinned_free(void *ptr) {
  if (ptr == NULL) return;
  if (!t2s_cuda_host_free(ptr)) free(ptr);
}
