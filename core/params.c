#include "core/params.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/device.h"
#include "core/rng.h"

void t2s_params_init(t2s_params *p) { memset(p, 0, sizeof *p); }

void t2s_params_free(t2s_params *p) {
  for (int i = 0; i < p->count; i++) free(p->items[i]);
  for (int i = 0; i < p->buf_count; i++) free(p->buffers[i]);
  free(p->items);
  free(p->buffers);
  t2s_device_free(p->device, p->data);
  t2s_device_free(p->device, p->grad);
  t2s_device_free(p->device, p->buf_data);
  memset(p, 0, sizeof *p);
}

static int push(t2s_param ***list, int *count, int *cap, t2s_param *item) {
  if (*count == *cap) {
    int ncap = *cap ? *cap * 2 : 64;
    t2s_param **grown = realloc(*list, (size_t)ncap * sizeof *grown);
    if (grown == NULL) return 0;
    *list = grown;
    *cap = ncap;
  }
  (*list)[(*count)++] = item;
  return 1;
}

t2s_tensor *t2s_params_add(t2s_params *p, const char *name, t2s_param_kind kind, int ndim,
                           const int64_t *shape, t2s_init init, float init_scale) {
  if (p->finalized) return NULL;
  t2s_param *q = calloc(1, sizeof *q);
  if (q == NULL) return NULL;
  t2s_tensor_init(&q->t, T2S_F32, T2S_DEV_CPU, ndim, shape, NULL);
  snprintf(q->name, sizeof q->name, "%s", name);
  q->t.name = q->name;
  q->kind = kind;
  q->init = init;
  q->init_scale = init_scale;
  q->lr_mult = 1.0f;
  q->decay_mult = kind == T2S_PARAM_WEIGHT ? 1.0f : 0.0f;
  /* fan_out of a conv weight (O, I/g, kh, kw) or linear weight (O, I): O * kh * kw */
  q->fan_out = ndim >= 1 ? shape[0] : 1;
  for (int i = 2; i < ndim; i++) q->fan_out *= shape[i];
  int ok = kind == T2S_PARAM_BUFFER ? push(&p->buffers, &p->buf_count, &p->buf_cap, q)
                                    : push(&p->items, &p->count, &p->cap, q);
  if (!ok) {
    free(q);
    return NULL;
  }
  q->index = kind == T2S_PARAM_BUFFER ? p->buf_count - 1 : p->count - 1;
  if (kind != T2S_PARAM_BUFFER) {
    q->t.requires_grad = 1;
    q->t.grad_accumulates = 1;
  }
  return &q->t;
}

t2s_param *t2s_params_find(const t2s_params *p, const char *name) {
  for (int i = 0; i < p->count; i++)
    if (strcmp(p->items[i]->name, name) == 0) return p->items[i];
  for (int i = 0; i < p->buf_count; i++)
    if (strcmp(p->buffers[i]->name, name) == 0) return p->buffers[i];
  return NULL;
}

static void init_values(const t2s_param *q, uint64_t seed, float *dst) {
  int64_t n = t2s_numel(&q->t);
  t2s_rng_key key = t2s_rng_key_make(seed, 0x1417, (uint64_t)q->index, q->kind == T2S_PARAM_BUFFER);
  float s = q->init_scale;
  switch (q->init) {
    case T2S_INIT_ZEROS:
      for (int64_t i = 0; i < n; i++) dst[i] = 0.0f;
      break;
    case T2S_INIT_ONES:
      for (int64_t i = 0; i < n; i++) dst[i] = 1.0f;
      break;
    case T2S_INIT_KAIMING_FAN_OUT: {
      float std = sqrtf(2.0f / (float)(q->fan_out > 0 ? q->fan_out : 1));
      for (int64_t i = 0; i < n; i++) dst[i] = std * t2s_rng_normal(key, (uint64_t)i);
      break;
    }
    case T2S_INIT_NORMAL:
      for (int64_t i = 0; i < n; i++) dst[i] = s * t2s_rng_normal(key, (uint64_t)i);
      break;
    case T2S_INIT_UNIFORM:
      for (int64_t i = 0; i < n; i++) dst[i] = s * (2.0f * t2s_rng_uniform(key, (uint64_t)i) - 1.0f);
      break;
    case T2S_INIT_TRUNC_NORMAL:
      for (int64_t i = 0; i < n; i++) {
        float v = t2s_rng_normal(key, (uint64_t)i);
        for (uint64_t r = 1; fabsf(v) > 2.0f; r++) v = t2s_rng_normal(key, (uint64_t)i + r * (uint64_t)n);
        dst[i] = s * v;
      }
      break;
  }
}

/* Lays out list[] in reverse registration order; returns total elements. */
static size_t layout_reverse(t2s_param **list, int count) {
  size_t off = 0;
  for (int i = count - 1; i >= 0; i--) {
    list[i]->offset = off;
    /* keep every tensor 64-float aligned so vector loads never straddle tensors */
    off += ((size_t)t2s_numel(&list[i]->t) + 63) / 64 * 64;
  }
  return off;
}

t2s_status t2s_params_finalize(t2s_params *p, t2s_device device, uint64_t seed, t2s_error *err) {
  if (p->finalized) return t2s_error_set(err, T2S_ERR_INVALID, "parameters finalized twice");
  p->device = device;
  p->numel = layout_reverse(p->items, p->count);
  p->buf_numel = layout_reverse(p->buffers, p->buf_count);
  size_t pbytes = (p->numel ? p->numel : 1) * sizeof(float);
  size_t bbytes = (p->buf_numel ? p->buf_numel : 1) * sizeof(float);
  p->data = t2s_device_malloc(device, pbytes, err);
  p->grad = t2s_device_malloc(device, pbytes, err);
  p->buf_data = t2s_device_malloc(device, bbytes, err);
  if (!p->data || !p->grad || !p->buf_data) return err ? err->status : T2S_ERR_NOMEM;
  float *host_p = calloc(p->numel ? p->numel : 1, sizeof(float));
  float *host_b = calloc(p->buf_numel ? p->buf_numel : 1, sizeof(float));
  if (!host_p || !host_b) {
    free(host_p);
    free(host_b);
    return t2s_error_set(err, T2S_ERR_NOMEM, "out of host memory initialising parameters");
  }
  for (int i = 0; i < p->count; i++) init_values(p->items[i], seed, host_p + p->items[i]->offset);
  for (int i = 0; i < p->buf_count; i++) init_values(p->buffers[i], seed, host_b + p->buffers[i]->offset);
  t2s_status st = t2s_device_copy(device, p->data, T2S_DEV_CPU, host_p, pbytes, err);
  if (st == T2S_OK) st = t2s_device_copy(device, p->buf_data, T2S_DEV_CPU, host_b, bbytes, err);
  free(host_p);
  free(host_b);
  if (st != T2S_OK) return st;
  for (int i = 0; i < p->count; i++) {
    t2s_tensor *t = &p->items[i]->t;
    t->device = device;
    t->layout = T2S_LAYOUT_NCHW;  /* parameters keep PyTorch's layout on every device */
    t->data = p->data + p->items[i]->offset;
    t->grad = p->grad + p->items[i]->offset;
  }
  for (int i = 0; i < p->buf_count; i++) {
    t2s_tensor *t = &p->buffers[i]->t;
    t->device = device;
    t->layout = T2S_LAYOUT_NCHW;
    t->data = p->buf_data + p->buffers[i]->offset;
  }
  p->finalized = 1;
  return t2s_params_zero_grad(p, err);
}

t2s_status t2s_params_zero_grad(t2s_params *p, t2s_error *err) {
  return t2s_device_zero(p->device, p->grad, (p->numel ? p->numel : 1) * sizeof(float), err);
}

t2s_status t2s_params_copy(t2s_params *dst, const t2s_params *src, t2s_error *err) {
  if (dst->numel != src->numel || dst->buf_numel != src->buf_numel || dst->count != src->count)
    return t2s_error_set(err, T2S_ERR_INVALID, "copying parameters between different networks");
  t2s_status st = t2s_device_copy(dst->device, dst->data, src->device, src->data,
                                  src->numel * sizeof(float), err);
  if (st != T2S_OK) return st;
  return t2s_device_copy(dst->device, dst->buf_data, src->device, src->buf_data,
                         src->buf_numel * sizeof(float), err);
}

void t2s_params_set_lr_mult(t2s_params *p, const char *prefix, float lr_mult) {
  size_t n = strlen(prefix);
  for (int i = 0; i < p->count; i++)
    if (strncmp(p->items[i]->name, prefix, n) == 0) p->items[i]->lr_mult = lr_mult;
}
