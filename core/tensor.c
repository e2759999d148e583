#include "core/tensor.h"

#include <stdio.h>
#include <string.h>

int64_t t2s_numel(const t2s_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
  return n;
}

size_t t2s_dtype_size(t2s_dtype dtype) {
  switch (dtype) {
    case T2S_F32: return 4;
    case T2S_BF16: return 2;
    case T2S_U8: return 1;
    case T2S_I32: return 4;
    case T2S_I64: return 8;
  }
  return 0;
}

const char *t2s_dtype_name(t2s_dtype dtype) {
  switch (dtype) {
    case T2S_F32: return "float32";
    case T2S_BF16: return "bfloat16";
    case T2S_U8: return "uint8";
    case T2S_I32: return "int32";
    case T2S_I64: return "int64";
  }
  return "?";
}

const char *t2s_device_name(t2s_device device) {
  return device == T2S_DEV_CUDA ? "cuda" : "cpu";
}

const char *t2s_shape_str(const t2s_tensor *t, char *buf, size_t size) {
  size_t used = 0;
  used += (size_t)snprintf(buf + used, size - used, "[");
  for (int i = 0; i < t->ndim && used < size; i++)
    used += (size_t)snprintf(buf + used, size - used, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
  if (used < size) snprintf(buf + used, size - used, "]");
  return buf;
}

int t2s_same_shape(const t2s_tensor *a, const t2s_tensor *b) {
  if (a->ndim != b->ndim) return 0;
  for (int i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i]) return 0;
  return 1;
}

void t2s_tensor_init(t2s_tensor *t, t2s_dtype dtype, t2s_device device, int ndim,
                     const int64_t *shape, void *data) {
  memset(t, 0, sizeof *t);
  t->dtype = dtype;
  t->device = device;
  t->layout = device == T2S_DEV_CUDA ? T2S_LAYOUT_NHWC : T2S_LAYOUT_NCHW;
  t->ndim = ndim;
  for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
  t->data = data;
}
