/* Raw memory on a device and the one switch between backends.
 *
 * The CPU side is plain aligned malloc; the CUDA side (core/cuda/memory.cu) is
 * cudaMalloc, never managed memory. Every choice between a CPU and a CUDA
 * implementation -- the op table, the fused losses, the optimizer, the image
 * kernels, the memory calls here -- is a per-device slot array indexed by the
 * device, its CUDA slot written T2S_CUDA_SLOT(fn): NULL in a build without the
 * CUDA backend, so such a build needs no stand-in functions. An empty slot
 * answers through t2s_slot_missing ("this build has no CUDA backend ..."). */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"

#define T2S_ALIGN 256

#ifdef T2S_HAVE_CUDA
#define T2S_CUDA_SLOT(fn) (fn)
#else
#define T2S_CUDA_SLOT(fn) NULL
#endif

/* The answer of an empty slot: `what` (e.g. "op 'conv2d'") has no implementation on
 * dev in this build; says how to get one. Returns T2S_ERR_UNSUPPORTED. */
t2s_status t2s_slot_missing(t2s_error *err, const char *what, t2s_device dev);

/* The one dispatch: calls slots[dev](...) (a per-device array of function pointers
 * returning t2s_status), or answers t2s_slot_missing(err, what, dev) for an empty slot. */
#define T2S_DISPATCH(slots, dev, err, what, ...)                        \
  ((unsigned)(dev) < T2S_DEV_COUNT && (slots)[(dev)] != NULL            \
       ? (slots)[(dev)](__VA_ARGS__)                                    \
       : t2s_slot_missing((err), (what), (dev)))

void *t2s_device_malloc(t2s_device dev, size_t bytes, t2s_error *err);
void t2s_device_free(t2s_device dev, void *ptr);
t2s_status t2s_device_zero(t2s_device dev, void *ptr, size_t bytes, t2s_error *err);
/* Copies between any two devices (host<->device, device<->device). The call site (file:line)
 * goes with it for the host-synchronisation count below. */
t2s_status t2s_device_copy_at(const char *site, t2s_device dst_dev, void *dst, t2s_device src_dev,
                              const void *src, size_t bytes, t2s_error *err);
#define T2S_STR2(x) #x
#define T2S_STR(x) T2S_STR2(x)
#define T2S_SITE __FILE__ ":" T2S_STR(__LINE__)
#define t2s_device_copy(...) t2s_device_copy_at(T2S_SITE, __VA_ARGS__)

/* Host synchronisations of the CUDA backend, counted per call site, process-wide (the
 * copies have no context). Every copy between host and GPU is one: cudaMemcpy on the
 * legacy default stream waits for the queued work, so the host stalls until the GPU has
 * caught up (a read-back, to_host; an upload from host memory, to_device); so is a direct
 * cudaMemcpy / cudaStreamSynchronize in a .cu file, which notes itself with
 * t2s_host_sync_note(T2S_SITE, 1). Not counted: cudaMemcpyAsync uploads made directly in
 * a .cu file (the photometric parameters, data/cuda/augment.cu) and the stream
 * synchronisation when the cuDNN/cuBLASLt workspace grows (core/cuda/context.cu, first
 * iterations only). t2sda_train --debug-syncs prints them per iteration; test_cuda_train
 * bounds the read-backs of a T2S-DA iteration. */
typedef struct t2s_sync_site {
  const char *site;  /* "path/file.c:line" (a string literal) */
  uint64_t to_host, to_device;
} t2s_sync_site;
void t2s_host_sync_note(const char *site, int to_host);
/* The counts since the last call, one entry per site (at most max, the rest are summed into
 * the last entry), and resets them. Returns the number of entries. */
int t2s_host_syncs_take(t2s_sync_site *out, int max);
/* Number of visible CUDA devices (0 when none or when CUDA is not built). */
int t2s_cuda_device_count(void);
int t2s_cuda_built(void);
/* Makes `ordinal` this process's GPU (one rank per GPU); call before any context. */
t2s_status t2s_cuda_set_device(int ordinal, t2s_error *err);
/* PCI bus id of the current GPU ("0000:3b:00.0") for the start-up log. */
t2s_status t2s_cuda_device_name(char *buf, size_t size, t2s_error *err);

/* Waits until every kernel and copy queued on the device has finished (benchmarks
 * time with it); a no-op on the CPU. Reports a fault of an earlier kernel. */
t2s_status t2s_device_sync(t2s_device dev, t2s_error *err);

/* Arithmetic of the GEMM-shaped CUDA work (convolutions, linear, matmul):
 * FP32 (default; matches the CPU reference), TF32 (tensor cores, fp32 accumulate),
 * BF16 (bf16 activations, f32 weights and gradients; core/cuda/backend.h). */
typedef enum t2s_precision {
  T2S_PRECISION_FP32 = 0,
  T2S_PRECISION_TF32,
  T2S_PRECISION_BF16,
} t2s_precision;
struct t2s_ctx;
/* Sets the precision of a CUDA context (ctx->err names a bad request). */
t2s_status t2s_cuda_set_precision(struct t2s_ctx *ctx, t2s_precision mode);

/* Host memory for buffers that are uploaded to the GPU (data batches): page-locked
 * (cudaHostAlloc) when a GPU is visible, so copies run asynchronously on a copy
 * stream; plain aligned memory otherwise. Free with t2s_host_pinned_free. */
void *t2s_host_pinned_alloc(size_t bytes);
void t2s_host_pinned_free(void *ptr);

/* Creates / destroys a context's backend state (stream, library handles; nothing on
 * the CPU). core/engine.c calls them. */
t2s_status t2s_device_ctx_init(struct t2s_ctx *ctx, t2s_error *err);
void t2s_device_ctx_destroy(struct t2s_ctx *ctx);

/* The CUDA runtime's slot functions (core/cuda/memory.cu, core/cuda/context.cu),
 * reached only through the slot tables of core/device.c. */
int t2s_cuda__device_count(void);
t2s_status t2s_cuda__set_device(int ordinal, t2s_error *err);
t2s_status t2s_cuda__device_name(char *buf, size_t size, t2s_error *err);
void *t2s_cuda__malloc(size_t bytes, t2s_error *err);
void t2s_cuda__free(void *ptr);
t2s_status t2s_cuda__zero(void *ptr, size_t bytes, t2s_error *err);
t2s_status t2s_cuda__copy(void *dst, int dst_on_device, const void *src, int src_on_device,
                          size_t bytes, t2s_error *err);
void *t2s_cuda__host_alloc(size_t bytes);  /* NULL when no GPU is visible */
int t2s_cuda__host_free(void *ptr);        /* 1 when ptr was page-locked and is freed */
t2s_status t2s_cuda__sync(t2s_error *err);
t2s_status t2s_cuda__ctx_init(struct t2s_ctx *ctx, t2s_error *err);
void t2s_cuda__ctx_destroy(struct t2s_ctx *ctx);
t2s_status t2s_cuda__set_precision(struct t2s_ctx *ctx, t2s_precision mode);
