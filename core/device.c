#include "core/device.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"

static void *cpu_malloc(size_t bytes, t2s_error *err) {
  size_t rounded = (bytes + T2S_ALIGN - 1) / T2S_ALIGN * T2S_ALIGN;
  void *p = aligned_alloc(T2S_ALIGN, rounded);
  if (p == NULL)
    t2s_error_set(err, T2S_ERR_NOMEM, "out of host memory allocating %zu bytes", bytes);
  return p;
}

static t2s_status cpu_zero(void *ptr, size_t bytes, t2s_error *err) {
  memset(ptr, 0, bytes);
  return T2S_OK;
}

static t2s_status cpu_sync(t2s_error *err) { return T2S_OK; }
static t2s_status cpu_ctx_init(struct t2s_ctx *ctx, t2s_error *err) { return T2S_OK; }
static void cpu_ctx_destroy(struct t2s_ctx *ctx) {}

/* What every device provides. */
typedef struct device_slots {
  void *(*malloc)(size_t bytes, t2s_error *err);
  void (*free)(void *ptr);
  t2s_status (*zero)(void *ptr, size_t bytes, t2s_error *err);
  t2s_status (*sync)(t2s_error *err);
  t2s_status (*ctx_init)(struct t2s_ctx *ctx, t2s_error *err);
  void (*ctx_destroy)(struct t2s_ctx *ctx);
} device_slots;

static const device_slots devices[T2S_DEV_COUNT] = {
    [T2S_DEV_CPU] = {cpu_malloc, free, cpu_zero, cpu_sync, cpu_ctx_init, cpu_ctx_destroy},
    [T2S_DEV_CUDA] = {T2S_CUDA_SLOT(t2s_cuda__malloc), T2S_CUDA_SLOT(t2s_cuda__free),
                      T2S_CUDA_SLOT(t2s_cuda__zero), T2S_CUDA_SLOT(t2s_cuda__sync),
                      T2S_CUDA_SLOT(t2s_cuda__ctx_init), T2S_CUDA_SLOT(t2s_cuda__ctx_destroy)},
};

/* What only the GPU runtime has: GPU selection, copies across the bus, page-locked
 * host memory, the precision of the GEMM-shaped work. */
static const struct {
  int (*device_count)(void);
  t2s_status (*set_device)(int ordinal, t2s_error *err);
  t2s_status (*device_name)(char *buf, size_t size, t2s_error *err);
  t2s_status (*copy)(void *dst, int dst_on_device, const void *src, int src_on_device,
                     size_t bytes, t2s_error *err);
  void *(*host_alloc)(size_t bytes);
  int (*host_free)(void *ptr);
  t2s_status (*set_precision)(struct t2s_ctx *ctx, t2s_precision mode);
} cuda = {
    T2S_CUDA_SLOT(t2s_cuda__device_count), T2S_CUDA_SLOT(t2s_cuda__set_device),
    T2S_CUDA_SLOT(t2s_cuda__device_name),  T2S_CUDA_SLOT(t2s_cuda__copy),
    T2S_CUDA_SLOT(t2s_cuda__host_alloc),   T2S_CUDA_SLOT(t2s_cuda__host_free),
    T2S_CUDA_SLOT(t2s_cuda__set_precision),
};

t2s_status t2s_slot_missing(t2s_error *err, const char *what, t2s_device dev) {
  if (dev == T2S_DEV_CUDA && !t2s_cuda_built())
    return t2s_error_set(err, T2S_ERR_UNSUPPORTED,
                         "%s on cuda: this t2sda build has no CUDA backend (configure with "
                         "-DT2S_CUDA=ON on a machine with the CUDA toolkit), or run with "
                         "device: cpu", what);
  return t2s_error_set(err, T2S_ERR_UNSUPPORTED, "%s has no %s implementation in this build",
                       what, t2s_device_name(dev));
}

/* The slots of dev, or NULL with err set when dev is not a device of this build. */
static const device_slots *slots_of(t2s_device dev, const char *what, t2s_error *err) {
  if ((unsigned)dev >= T2S_DEV_COUNT || devices[dev].malloc == NULL) {
    t2s_slot_missing(err, what, dev);
    return NULL;
  }
  return &devices[dev];
}

void *t2s_device_malloc(t2s_device dev, size_t bytes, t2s_error *err) {
  const device_slots *d = slots_of(dev, "allocating memory", err);
  return d ? d->malloc(bytes ? bytes : T2S_ALIGN, err) : NULL;
}

void t2s_device_free(t2s_device dev, void *ptr) {
  if (ptr == NULL || (unsigned)dev >= T2S_DEV_COUNT || devices[dev].free == NULL) return;
  devices[dev].free(ptr);
}

t2s_status t2s_device_zero(t2s_device dev, void *ptr, size_t bytes, t2s_error *err) {
  const device_slots *d = slots_of(dev, "zeroing memory", err);
  return d ? d->zero(ptr, bytes, err) : T2S_ERR_UNSUPPORTED;
}

t2s_status t2s_device_sync(t2s_device dev, t2s_error *err) {
  const device_slots *d = slots_of(dev, "synchronising the device", err);
  return d ? d->sync(err) : T2S_ERR_UNSUPPORTED;
}

t2s_status t2s_device_ctx_init(struct t2s_ctx *ctx, t2s_error *err) {
  const device_slots *d = slots_of(ctx->device, "creating an execution context", err);
  return d ? d->ctx_init(ctx, err) : T2S_ERR_UNSUPPORTED;
}

void t2s_device_ctx_destroy(struct t2s_ctx *ctx) {
  if ((unsigned)ctx->device < T2S_DEV_COUNT && devices[ctx->device].ctx_destroy != NULL)
    devices[ctx->device].ctx_destroy(ctx);
}

/* ---- host synchronisation count (see core/device.h) ----
 * A mutex, not atomics: the loader's prefetch threads may upload while the training
 * thread reads back. A handful of sites per iteration: a linear search is enough. */
enum { MAX_SYNC_SITES = 64 };
static pthread_mutex_t sync_lock = PTHREAD_MUTEX_INITIALIZER;
static t2s_sync_site sync_sites[MAX_SYNC_SITES];
static int n_sync_sites;

void t2s_host_sync_note(const char *site, int to_host) {
  pthread_mutex_lock(&sync_lock);
  int i = 0;
  while (i < n_sync_sites && strcmp(sync_sites[i].site, site) != 0) i++;
  if (i == n_sync_sites && n_sync_sites < MAX_SYNC_SITES) sync_sites[n_sync_sites++] = (t2s_sync_site){site, 0, 0};
  if (i == MAX_SYNC_SITES) i = MAX_SYNC_SITES - 1;  /* full: the last entry takes the rest */
  if (to_host) sync_sites[i].to_host++;
  else sync_sites[i].to_device++;
  pthread_mutex_unlock(&sync_lock);
}

int t2s_host_syncs_take(t2s_sync_site *out, int max) {
  pthread_mutex_lock(&sync_lock);
  int n = 0;
  for (int i = 0; i < n_sync_sites && max > 0; i++) {
    if (n < max) out[n++] = sync_sites[i];
    else {
      out[max - 1].to_host += sync_sites[i].to_host;
      out[max - 1].to_device += sync_sites[i].to_device;
    }
  }
  n_sync_sites = 0;
  pthread_mutex_unlock(&sync_lock);
  return n;
}

t2s_status t2s_device_copy_at(const char *site, t2s_device dst_dev, void *dst, t2s_device src_dev,
                              const void *src, size_t bytes, t2s_error *err) {
  if (bytes == 0) return T2S_OK;
  if (dst_dev == T2S_DEV_CPU && src_dev == T2S_DEV_CPU) {
    memmove(dst, src, bytes);
    return T2S_OK;
  }
  if (cuda.copy == NULL) return t2s_slot_missing(err, "copying memory", T2S_DEV_CUDA);
  if (dst_dev != src_dev) t2s_host_sync_note(site, dst_dev == T2S_DEV_CPU);
  return cuda.copy(dst, dst_dev == T2S_DEV_CUDA, src, src_dev == T2S_DEV_CUDA, bytes, err);
}

int t2s_cuda_built(void) { return cuda.device_count != NULL; }

int t2s_cuda_device_count(void) { return cuda.device_count ? cuda.device_count() : 0; }

t2s_status t2s_cuda_set_device(int ordinal, t2s_error *err) {
  if (cuda.set_device == NULL) return t2s_slot_missing(err, "selecting a GPU", T2S_DEV_CUDA);
  return cuda.set_device(ordinal, err);
}

t2s_status t2s_cuda_device_name(char *buf, size_t size, t2s_error *err) {
  if (size) buf[0] = '\0';
  if (cuda.device_name == NULL) return t2s_slot_missing(err, "naming the GPU", T2S_DEV_CUDA);
  return cuda.device_name(buf, size, err);
}

t2s_status t2s_cuda_set_precision(struct t2s_ctx *ctx, t2s_precision mode) {
  if (cuda.set_precision != NULL) return cuda.set_precision(ctx, mode);
  if (mode == T2S_PRECISION_FP32) return T2S_OK; /* what the CPU computes anyway */
  return t2s_slot_missing(ctx ? &ctx->err : NULL, "setting the precision", T2S_DEV_CUDA);
}

void *t2s_host_pinned_alloc(size_t bytes) {
  void *p = cuda.host_alloc && t2s_cuda_device_count() > 0 ? cuda.host_alloc(bytes) : NULL;
  if (p != NULL) return p;
  size_t rounded = (bytes + T2S_ALIGN - 1) / T2S_ALIGN * T2S_ALIGN;
  return aligned_alloc(T2S_ALIGN, rounded > 0 ? rounded : T2S_ALIGN);
}

void t2s_host_pinned_free(void *ptr) {
  if (ptr == NULL) return;
  if (cuda.host_free == NULL || !cuda.host_free(ptr)) free(ptr);
}
