/* Source-style pseudo-targets (losses/pseudo_target_dg.h): the random styles are drawn
 * here, on the host, from the gathered styles of the global batch; the restyling itself
 * is t2s_pseudo_target_apply's (CPU or CUDA slot). */
#include "losses/pseudo_target_dg.h"

#include <string.h>

#include "core/rng.h"

/* Philox purposes of the draws (the pairing of UDA uses 0x5054). */
enum { PURPOSE_OTHER = 0x4447, PURPOSE_AMPLITUDE = 0x4441, PURPOSE_COLOR = 0x4443 };

int64_t t2s_pseudo_target_other(uint64_t seed, int64_t iter, int64_t g, int64_t n) {
  if (n <= 1) return g;
  t2s_rng_key key = t2s_rng_key_make(seed, (uint64_t)iter, (uint64_t)g, PURPOSE_OTHER);
  /* a shift of 1..n-1 never lands on g and is uniform over the others */
  return (g + 1 + (int64_t)t2s_rng_below(key, 0, (uint32_t)(n - 1))) % n;
}

static t2s_status check_batch(int64_t n_global, int64_t n_local, int64_t offset, const char *op,
                              t2s_error *err) {
  if (n_local >= 0 && offset >= 0 && offset + n_local <= n_global) return T2S_OK;
  return t2s_error_set(err, T2S_ERR_INVALID, "%s: local images %lld..%lld outside the global batch of %lld",
                       op, (long long)offset, (long long)(offset + n_local), (long long)n_global);
}

t2s_status t2s_pseudo_target_source_styles(const t2s_pseudo_target *pt, const float *global,
                                           int64_t n_global, int64_t n_local, int64_t offset,
                                           float a, uint64_t seed, int64_t iter, float *out,
                                           t2s_error *err) {
  const char *op = "pseudo_target_source_styles";
  t2s_status st = check_batch(n_global, n_local, offset, op, err);
  if (st != T2S_OK) return st;
  if (!(a >= 0.0f && a <= 1.0f))
    return t2s_error_set(err, T2S_ERR_INVALID, "%s: amplitude_jitter %g is outside [0, 1]", op, a);
  int64_t size = t2s_pseudo_target_style_size(pt);
  for (int64_t k = 0; k < n_local; k++) {
    int64_t g = offset + k;
    const float *from = global + t2s_pseudo_target_other(seed, iter, g, n_global) * size;
    t2s_rng_key key = t2s_rng_key_make(seed, (uint64_t)iter, (uint64_t)g, PURPOSE_AMPLITUDE);
    /* amplitude x (1 + eps), eps = a (2u - 1): stays >= 0 for a <= 1 */
    for (int64_t f = 0; f < size; f++)
      out[k * size + f] = from[f] * (1.0f + a * (2.0f * t2s_rng_uniform(key, (uint64_t)f) - 1.0f));
  }
  return T2S_OK;
}

t2s_status t2s_pseudo_target_random_colors(const t2s_pseudo_target *pt, const float *global,
                                           int64_t n_global, int64_t n_local, int64_t offset,
                                           float m, float s, uint64_t seed, int64_t iter,
                                           float *out, t2s_error *err) {
  const char *op = "pseudo_target_random_colors";
  t2s_status st = check_batch(n_global, n_local, offset, op, err);
  if (st != T2S_OK) return st;
  if (t2s_pseudo_target_style_size(pt) != 6)
    return t2s_error_set(err, T2S_ERR_INVALID, "%s: needs a color pseudo target (6 moments per image)", op);
  if (!(m >= 0.0f) || !(s >= 0.0f && s <= 1.0f))
    return t2s_error_set(err, T2S_ERR_INVALID,
                         "%s: color_mean_jitter %g must be >= 0 and color_std_jitter %g in [0, 1]", op, m, s);
  /* the batch's average moments, summed in double in global order (equal on all ranks) */
  double mu[3] = {0}, sd[3] = {0};
  for (int64_t i = 0; i < n_global; i++)
    for (int c = 0; c < 3; c++) mu[c] += global[6 * i + c], sd[c] += global[6 * i + 3 + c];
  for (int c = 0; c < 3; c++) mu[c] /= (double)n_global, sd[c] /= (double)n_global;
  for (int64_t k = 0; k < n_local; k++) {
    t2s_rng_key key = t2s_rng_key_make(seed, (uint64_t)iter, (uint64_t)(offset + k), PURPOSE_COLOR);
    for (int c = 0; c < 3; c++) {
      double u1 = 2.0 * t2s_rng_uniform(key, (uint64_t)c) - 1.0;
      double u2 = 2.0 * t2s_rng_uniform(key, (uint64_t)(3 + c)) - 1.0;
      out[6 * k + c] = (float)(mu[c] + m * sd[c] * u1);
      out[6 * k + 3 + c] = (float)(sd[c] * (1.0 + s * u2));
    }
  }
  return T2S_OK;
}

/* Image k of an (N, 3, H, W) batch as a one-image view; contiguous in either layout. */
static t2s_tensor image_view(const t2s_tensor *x, int64_t k) {
  t2s_tensor v = *x;
  int64_t chw = x->shape[1] * x->shape[2] * x->shape[3];
  v.data = (float *)x->data + k * chw;
  v.grad = NULL;
  v.shape[0] = 1;
  return v;
}

t2s_status t2s_pseudo_target_apply_each(t2s_ctx *ctx, t2s_pseudo_target *pt, const t2s_tensor *x_s,
                                        const float *styles, t2s_tensor *x_st) {
  if (!t2s_ctx_ok(ctx)) return ctx->err.status;
  if (x_s == NULL || x_st == NULL || x_s->ndim != 4 || x_st->ndim != 4 || x_s->shape[0] != x_st->shape[0])
    return t2s_error_set(&ctx->err, T2S_ERR_INVALID,
                         "pseudo_target_apply_each: source and output must be (N, 3, H, W) batches of one size");
  int64_t size = t2s_pseudo_target_style_size(pt);
  /* one style per call: with n_styles = 1 the pairing picks style 0, this image's */
  for (int64_t k = 0; k < x_s->shape[0]; k++) {
    t2s_tensor src = image_view(x_s, k), dst = image_view(x_st, k);
    t2s_status st = t2s_pseudo_target_apply(ctx, pt, &src, styles + k * size, 1, 0, 0, 0, &dst);
    if (st != T2S_OK) return st;
  }
  return T2S_OK;
}
