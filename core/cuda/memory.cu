/* The CUDA slots of core/device.c: GPU selection, raw device memory (plain
 * cudaMalloc, never managed memory, so a stray host access faults at once instead
 * of migrating pages silently), copies and page-locked host memory. */
#include "core/cuda/backend.h"

int t2s_cuda__device_count(void) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    /* No driver or no device: not an error for a caller that only asks. Clear the
     * runtime's last-error slot so that the next checked call does not report it. */
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

t2s_status t2s_cuda__set_device(int ordinal, t2s_error *err) {
  int n = t2s_cuda__device_count();
  if (ordinal < 0 || ordinal >= n)
    return t2s_error_set(err, T2S_ERR_INVALID,
                         "GPU %d requested but %d GPU(s) are visible (check CUDA_VISIBLE_DEVICES and the "
                         "number of ranks per node)", ordinal, n);
  cudaError_t e = cudaSetDevice(ordinal);
  if (e != cudaSuccess)
    return t2s_error_set(err, T2S_ERR_BACKEND, "cudaSetDevice(%d) failed: %s", ordinal, cudaGetErrorString(e));
  return T2S_OK;
}

t2s_status t2s_cuda__device_name(char *buf, size_t size, t2s_error *err) {
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e == cudaSuccess) e = cudaDeviceGetPCIBusId(buf, (int)size, dev);
  if (e != cudaSuccess)
    return t2s_error_set(err, T2S_ERR_BACKEND, "cudaDeviceGetPCIBusId failed: %s", cudaGetErrorString(e));
  return T2S_OK;
}

void *t2s_cuda__malloc(size_t bytes, t2s_error *err) {
  void *p = NULL;
  cudaError_t st = cudaMalloc(&p, bytes);
  if (st != cudaSuccess) {
    (void)cudaGetLastError();
    t2s_error_set(err, T2S_ERR_NOMEM,
                  "cudaMalloc of %zu bytes failed (%s): reduce data.samples_per_gpu or the crop "
                  "size, or use a GPU with more memory",
                  bytes, cudaGetErrorString(st));
    return NULL;
  }
  return p;
}

void t2s_cuda__free(void *ptr) {
  /* cudaFree's status is not actionable at teardown (the context may be gone). */
  if (ptr != NULL) (void)cudaFree(ptr);
}

t2s_status t2s_cuda__zero(void *ptr, size_t bytes, t2s_error *err) {
  cudaError_t st = cudaMemset(ptr, 0, bytes);
  if (st != cudaSuccess)
    return t2s_error_set(err, T2S_ERR_BACKEND, "cudaMemset(%p, 0, %zu) failed: %s", ptr, bytes,
                         cudaGetErrorString(st));
  return T2S_OK;
}

/* cudaMemcpy on the legacy default stream: it waits for the work already queued on
 * every blocking stream (the backend's stream is one), so a copy back to the host
 * sees the results of all ops before it without an explicit synchronisation. */
t2s_status t2s_cuda__copy(void *dst, int dst_on_device, const void *src,
                                    int src_on_device, size_t bytes, t2s_error *err) {
  if (bytes == 0) return T2S_OK;
  cudaMemcpyKind kind = dst_on_device ? (src_on_device ? cudaMemcpyDeviceToDevice
                                                       : cudaMemcpyHostToDevice)
                                      : (src_on_device ? cudaMemcpyDeviceToHost
                                                       : cudaMemcpyHostToHost);
  cudaError_t st = cudaMemcpy(dst, src, bytes, kind);
  if (st != cudaSuccess)
    return t2s_error_set(err, T2S_ERR_BACKEND, "cudaMemcpy of %zu bytes (%s to %s) failed: %s",
                         bytes, src_on_device ? "cuda" : "cpu", dst_on_device ? "cuda" : "cpu",
                         cudaGetErrorString(st));
  return T2S_OK;
}

void *t2s_cuda__host_alloc(size_t bytes) {
  void *p = NULL;
  if (cudaHostAlloc(&p, bytes ? bytes : 1, cudaHostAllocPortable) != cudaSuccess) {
    (void)cudaGetLastError();  /* not an error for the caller: it falls back to malloc */
    return NULL;
  }
  return p;
}

int t2s_cuda__host_free(void *ptr) {
  cudaPointerAttributes a;
  if (t2s_cuda__device_count() == 0 || cudaPointerGetAttributes(&a, ptr) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  if (a.type != cudaMemoryTypeHost) return 0;
  return cudaFreeHost(ptr) == cudaSuccess;
}
