#include "core/optim.h"

#include <math.h>
#include <string.h>

#include "core/device.h"

const char *t2s_optim_slot_name(const t2s_optim *o, int slot) {
  if (o->cfg.type == T2S_OPTIM_SGD) return slot == 0 ? "momentum_buffer" : NULL;
  return slot == 0 ? "exp_avg" : slot == 1 ? "exp_avg_sq" : NULL;
}

t2s_status t2s_optim_init(t2s_optim *o, t2s_params *p, const t2s_optim_cfg *cfg, t2s_error *err) {
  memset(o, 0, sizeof *o);
  o->cfg = *cfg;
  o->params = p;
  if (!p->finalized) return t2s_error_set(err, T2S_ERR_INVALID, "optimizer created before the network");
  if (!(cfg->lr > 0)) return t2s_error_set(err, T2S_ERR_INVALID, "optimizer.lr must be > 0 (got %g)", cfg->lr);
  o->n_state = cfg->type == T2S_OPTIM_SGD ? (cfg->momentum > 0 ? 1 : 0) : 2;
  for (int s = 0; s < o->n_state; s++) {
    size_t bytes = (p->numel ? p->numel : 1) * sizeof(float);
    o->state[s] = t2s_device_malloc(p->device, bytes, err);
    if (o->state[s] == NULL) return err ? err->status : T2S_ERR_NOMEM;
    t2s_status st = t2s_device_zero(p->device, o->state[s], bytes, err);
    if (st != T2S_OK) return st;
  }
  return T2S_OK;
}

void t2s_optim_free(t2s_optim *o) {
  for (int s = 0; s < 2; s++) t2s_device_free(o->params ? o->params->device : T2S_DEV_CPU, o->state[s]);
  memset(o, 0, sizeof *o);
}

static t2s_status grad_global_norm_cpu(const t2s_params *p, double *norm, t2s_error *err) {
  double sum = 0.0;
  for (int i = 0; i < p->count; i++) {
    const t2s_param *q = p->items[i];
    if (!q->t.requires_grad) continue;
    const float *g = p->grad + q->offset;
    int64_t n = t2s_numel(&q->t);
    for (int64_t k = 0; k < n; k++) sum += (double)g[k] * g[k];
  }
  *norm = sqrt(sum);
  return T2S_OK;
}

static void sgd_tensor(const t2s_optim *o, float *w, const float *g, float *buf, int64_t n, float lr,
                       float wd, int first) {
  float mom = (float)o->cfg.momentum;
  for (int64_t k = 0; k < n; k++) {
    float d = g[k] + wd * w[k];
    if (buf) {
      buf[k] = first ? d : mom * buf[k] + d;
      d = buf[k];
    }
    w[k] -= lr * d;
  }
}

static void adamw_tensor(const t2s_optim *o, float *w, const float *g, float *m, float *v, int64_t n,
                         float lr, float wd, int64_t t) {
  float b1 = (float)o->cfg.beta1, b2 = (float)o->cfg.beta2, eps = (float)o->cfg.eps;
  double bc1 = 1.0 - pow(o->cfg.beta1, (double)t), bc2 = 1.0 - pow(o->cfg.beta2, (double)t);
  float step = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2);
  for (int64_t k = 0; k < n; k++) {
    w[k] *= 1.0f - lr * wd;
    m[k] = b1 * m[k] + (1.0f - b1) * g[k];
    v[k] = b2 * v[k] + (1.0f - b2) * g[k] * g[k];
    w[k] -= step * m[k] / (sqrtf(v[k]) / bc2_sqrt + eps);
  }
}

static t2s_status optim_step_cpu(t2s_optim *o, double lr, double *grad_norm, t2s_error *err) {
  t2s_params *p = o->params;
  double norm = -1.0, clip = 1.0;
  if (grad_norm || o->cfg.grad_clip > 0) norm = t2s_grad_global_norm(p);
  if (grad_norm) *grad_norm = norm;
  if (!isfinite(norm) && norm != -1.0)
    return t2s_error_set(err, T2S_ERR_NUMERIC, "the gradient norm is %g at optimizer step %lld; "
                         "the step was not applied", norm, (long long)o->step);
  if (o->cfg.grad_clip > 0 && norm > o->cfg.grad_clip) clip = o->cfg.grad_clip / (norm + 1e-6);
  if (clip != 1.0)
    for (size_t k = 0; k < p->numel; k++) p->grad[k] *= (float)clip;
  o->step++;
  for (int i = 0; i < p->count; i++) {
    const t2s_param *q = p->items[i];
    if (!q->t.requires_grad) continue;
    int64_t n = t2s_numel(&q->t);
    float *w = p->data + q->offset;
    const float *g = p->grad + q->offset;
    float plr = (float)(lr * q->lr_mult), wd = (float)(o->cfg.weight_decay * q->decay_mult);
    if (o->cfg.type == T2S_OPTIM_SGD)
      sgd_tensor(o, w, g, o->n_state ? o->state[0] + q->offset : NULL, n, plr, wd, o->step == 1);
    else
      adamw_tensor(o, w, g, o->state[0] + q->offset, o->state[1] + q->offset, n, plr, wd, o->step);
  }
  return T2S_OK;
}

double t2s_lr_at(const t2s_lr_schedule *s, double base_lr, int64_t iter) {
  double lr = base_lr;
  if (s->policy == T2S_LR_POLY) {
    double frac = s->max_iters > 0 ? 1.0 - (double)iter / (double)s->max_iters : 0.0;
    if (frac < 0) frac = 0;
    lr = (base_lr - s->min_lr) * pow(frac, s->power) + s->min_lr;
  }
  if (s->warmup_iters > 0 && iter < s->warmup_iters) {
    double k = (1.0 - (double)iter / (double)s->warmup_iters) * (1.0 - s->warmup_ratio);
    lr *= 1.0 - k;
  }
  return lr;
}

static t2s_status ema_update_cpu(t2s_params *teacher, const t2s_params *student, double alpha,
                                 int64_t iter, int copy_buffers, t2s_error *err) {
  double a = 1.0 - 1.0 / (double)(iter + 1);
  if (alpha < a) a = alpha;
  float af = (float)a, bf = (float)(1.0 - a);
  for (size_t k = 0; k < student->numel; k++) teacher->data[k] = af * teacher->data[k] + bf * student->data[k];
  if (copy_buffers) memcpy(teacher->buf_data, student->buf_data, student->buf_numel * sizeof(float));
  return T2S_OK;
}

/* ---- dispatch: one slot per device (core/device.h) ------------------------------------ */

typedef t2s_status (*grad_norm_fn)(const t2s_params *p, double *norm, t2s_error *err);
typedef t2s_status (*step_fn)(t2s_optim *o, double lr, double *grad_norm, t2s_error *err);
typedef t2s_status (*ema_fn)(t2s_params *teacher, const t2s_params *student, double alpha,
                             int64_t iter, int copy_buffers, t2s_error *err);

static const grad_norm_fn grad_norm_slots[T2S_DEV_COUNT] = {
    [T2S_DEV_CPU] = grad_global_norm_cpu,
    [T2S_DEV_CUDA] = T2S_CUDA_SLOT(t2s_grad_global_norm_cuda)};
static const step_fn step_slots[T2S_DEV_COUNT] = {
    [T2S_DEV_CPU] = optim_step_cpu, [T2S_DEV_CUDA] = T2S_CUDA_SLOT(t2s_optim_step_cuda)};
static const ema_fn ema_slots[T2S_DEV_COUNT] = {
    [T2S_DEV_CPU] = ema_update_cpu, [T2S_DEV_CUDA] = T2S_CUDA_SLOT(t2s_ema_update_cuda)};

double t2s_grad_global_norm(const t2s_params *p) {
  double norm = NAN;
  t2s_error err = {0};
  t2s_status st =
      T2S_DISPATCH(grad_norm_slots, p->device, &err, "the gradient norm", p, &norm, &err);
  return st == T2S_OK ? norm : NAN;
}

t2s_status t2s_optim_step(t2s_optim *o, double lr, double *grad_norm, t2s_error *err) {
  return T2S_DISPATCH(step_slots, o->params->device, err, "the optimizer step", o, lr, grad_norm,
                      err);
}

t2s_status t2s_ema_update(t2s_params *teacher, const t2s_params *student, double alpha,
                          int64_t iter, int copy_buffers, t2s_error *err) {
  if (teacher->numel != student->numel || teacher->count != student->count)
    return t2s_error_set(err, T2S_ERR_INVALID, "EMA teacher and student have different parameters");
  return T2S_DISPATCH(ema_slots, student->device, err, "the EMA update", teacher, student, alpha,
                      iter, copy_buffers, err);
}
