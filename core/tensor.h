/* Tensor views. A tensor never owns memory: data (and grad) point into an arena
 * or a flat parameter buffer. The logical shape of an activation is always
 * (N, C, H, W); layout says how it is stored: NCHW on the CPU reference, NHWC on
 * CUDA. Tensors here are contiguous in their layout. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define T2S_MAX_DIMS 5

typedef enum t2s_device { T2S_DEV_CPU = 0, T2S_DEV_CUDA = 1, T2S_DEV_COUNT = 2 } t2s_device;
typedef enum t2s_dtype { T2S_F32 = 0, T2S_BF16, T2S_U8, T2S_I32, T2S_I64 } t2s_dtype;
typedef enum t2s_layout { T2S_LAYOUT_NCHW = 0, T2S_LAYOUT_NHWC } t2s_layout;

typedef struct t2s_tensor {
  void *data;
  float *grad;               /* f32 gradient of the same shape, or NULL until backward makes it */
  t2s_dtype dtype;
  t2s_device device;
  t2s_layout layout;
  int ndim;
  int64_t shape[T2S_MAX_DIMS];
  uint8_t requires_grad;     /* a gradient is wanted: a parameter, or computed from one */
  uint8_t grad_accumulates;  /* parameters: backward always adds (+=) into grad */
  const char *name;          /* parameter name, or NULL */
  uint32_t live_id;          /* engine bookkeeping: 1 + index of the pass-arena record of data
                              * (t2s_tensor_new), 0 for memory the pass does not own */
} t2s_tensor;

int64_t t2s_numel(const t2s_tensor *t);
size_t t2s_dtype_size(t2s_dtype dtype);
const char *t2s_dtype_name(t2s_dtype dtype);
const char *t2s_device_name(t2s_device device);
/* Writes "[2, 3, 4]" into buf; returns buf (for messages). */
const char *t2s_shape_str(const t2s_tensor *t, char *buf, size_t size);
int t2s_same_shape(const t2s_tensor *a, const t2s_tensor *b);
/* Fills a tensor header (no allocation). */
void t2s_tensor_init(t2s_tensor *t, t2s_dtype dtype, t2s_device device, int ndim,
                     const int64_t *shape, void *data);

static inline float *t2s_f32(const t2s_tensor *t) { return (float *)t->data; }
static inline uint8_t *t2s_u8(const t2s_tensor *t) { return (uint8_t *)t->data; }
