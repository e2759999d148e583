// ctest-labels: unit grad
/* The T2S pulling loss against a direct computation over the same sampled pixels,
 * finite differences, hand-summed prototypes, hand-downsampled labels, and the
 * rank-split property (two halves with a fake all-reduce equal the full batch). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "losses/batch_stats.h"
#include "losses/pull_loss.h"
#include "tests/harness.h"

enum { N = 2, D = 5, H = 4, W = 6, C = 4, HW = H * W };

/* class 3 appears only in image 1; 255 = ignore */
static const uint8_t LABELS[N * HW] = {
    0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1, 2, 2, 255, 1, 1, 1, 2, 2, 2, 2, 1, 255,
    3, 3, 0, 0, 2, 2, 3, 3, 0, 0, 2, 2, 3, 255, 0, 0, 2, 2, 3, 3, 3, 0, 0, 2,
};

static t2s_tensor *unit_features(uint64_t seed, int requires_grad) {
  int64_t shape[4] = {N, D, H, W};
  t2s_tensor *t = t2s_test_tensor(4, shape, -1.0f, 1.0f, seed, requires_grad);
  float *x = t2s_f32(t);
  for (int b = 0; b < N; b++)
    for (int i = 0; i < HW; i++) {
      double s = 0.0;
      for (int d = 0; d < D; d++) s += (double)x[(b * D + d) * HW + i] * x[(b * D + d) * HW + i];
      for (int d = 0; d < D; d++) x[(b * D + d) * HW + i] /= (float)sqrt(s);
    }
  return t;
}

/* A tensor header over image b's slice of an (N, ...) tensor. */
static t2s_tensor slice(const t2s_tensor *t, int b) {
  t2s_tensor s = *t;
  int64_t per = t2s_numel(t) / t->shape[0];
  s.data = (char *)t->data + (size_t)(b * per) * t2s_dtype_size(t->dtype);
  s.shape[0] = 1;
  s.grad = NULL;
  return s;
}

/* ---- reference: loops over the plan's indices, in double ---- */
static double ref_dot(const float *x, int b, int p, const float *v) {
  double s = 0.0;
  for (int d = 0; d < D; d++) s += (double)x[(b * D + d) * HW + p] * v[d];
  return s;
}

static double ref_loss(const t2s_pull_plan *plan, const t2s_pull_cfg *cfg, const float *q,
                       const float *k, const float *proto, const float *cw, const double *qc,
                       int world, double *grad) {
  double wsum = 0.0, total = 0.0;
  for (int c = 0; c < C; c++)
    if (qc[c] > 0) wsum += cw[c];
  for (int g = 0; g < plan->n_groups; g++) {
    const t2s_pull_group *gr = &plan->groups[g];
    int b = gr->image, c = gr->cls;
    for (int i = 0; i < gr->n_query; i++) {
      int p = plan->query_pixel[gr->query_off + i];
      const int32_t *neg = plan->neg_index + gr->neg_off + (int64_t)i * gr->n_neg;
      double vecs[64][D], s[64];
      for (int d = 0; d < D; d++) vecs[0][d] = proto[c * D + d];
      for (int j = 0; j < gr->n_neg; j++)
        for (int d = 0; d < D; d++)
          vecs[1 + j][d] = cfg->negatives == T2S_PULL_NEG_KEYS ? k[(b * D + d) * HW + neg[j]]
                                                              : proto[neg[j] * D + d];
      double denom = 0.0;
      for (int j = 0; j <= gr->n_neg; j++) {
        float v[D];
        for (int d = 0; d < D; d++) v[d] = (float)vecs[j][d];
        s[j] = ref_dot(q, b, p, v) / cfg->tau;
        denom += exp(s[j]);
      }
      double f = world * cw[c] / (wsum * qc[c]);
      total += f * -log(exp(s[0]) / denom);
      for (int d = 0; d < D && grad; d++) {
        double gd = -vecs[0][d];
        for (int j = 0; j <= gr->n_neg; j++) gd += exp(s[j]) / denom * vecs[j][d];
        grad[(b * D + d) * HW + p] += f * gd / cfg->tau;
      }
    }
  }
  return total;
}

/* ---- op builders for gradcheck ---- */
typedef struct pull_case {
  t2s_pull_cfg cfg;
  t2s_tensor *k, *labels, *cw, *proto, *present;
} pull_case;

static t2s_tensor *build_pull(t2s_ctx *ctx, t2s_tensor **in, void *u) {
  pull_case *pc = u;
  return t2s_pull_loss(ctx, in[0], pc->k, pc->labels, pc->cw, pc->proto, pc->present, &pc->cfg, 7,
                       3, 0, 1);
}

/* ---- fake all-reduce: record local stats, or add the other half's recording ---- */
typedef struct fake_comm {
  int record;           /* 1: store each call's buffer; 0: add other->calls[i] */
  int n_calls;
  double *calls[8];
  size_t sizes[8];
  struct fake_comm *other;
} fake_comm;

static t2s_status fake_allreduce(void *user, double *buf, size_t n, t2s_error *err) {
  fake_comm *fc = user;
  int i = fc->n_calls++;
  if (i >= 8) return t2s_error_set(err, T2S_ERR_COMM, "fake: too many calls");
  if (fc->record) {
    fc->calls[i] = malloc(n * sizeof(double));
    memcpy(fc->calls[i], buf, n * sizeof(double));
    fc->sizes[i] = n;
    return T2S_OK;
  }
  if (fc->other->sizes[i] != n) return t2s_error_set(err, T2S_ERR_COMM, "fake: size mismatch");
  for (size_t j = 0; j < n; j++) buf[j] += fc->other->calls[i][j];
  return T2S_OK;
}

static void test_downsample(t2s_ctx *ctx) {
  /* 1 x 4 x 4 -> 2 x 2; cells: all 1 / three 2 one 0 / two 3 two 4 / 5,5,5,255 */
  const uint8_t y[16] = {1, 1, 2, 2, 1, 1, 2, 0, 3, 3, 5, 5, 4, 4, 5, 255};
  int64_t shape[3] = {1, 4, 4};
  t2s_tensor *lab = t2s_test_tensor_u8(3, shape, y);
  t2s_tensor *near = t2s_labels_downsample(ctx, lab, 2, 2, T2S_LABEL_DOWN_NEAREST, 0.75f, 255);
  t2s_tensor *maj = t2s_labels_downsample(ctx, lab, 2, 2, T2S_LABEL_DOWN_MAJORITY, 0.75f, 255);
  CHECK(near && maj);
  if (near && maj) {
    const uint8_t want_near[4] = {1, 2, 3, 5}, want_maj[4] = {1, 2, 255, 5};
    CHECK(memcmp(t2s_u8(near), want_near, 4) == 0);
    CHECK(memcmp(t2s_u8(maj), want_maj, 4) == 0);
  }
  /* non-integer ratio, 1 x 3 x 5 -> 1 x 2 (nearest: rows 0, cols 0 and 2) */
  const uint8_t z[15] = {7, 8, 9, 9, 9, 7, 7, 9, 9, 9, 1, 1, 1, 1, 1};
  int64_t s2[3] = {1, 3, 5};
  t2s_tensor *lab2 = t2s_test_tensor_u8(3, s2, z);
  t2s_tensor *n2 = t2s_labels_downsample(ctx, lab2, 1, 2, T2S_LABEL_DOWN_NEAREST, 0.75f, 255);
  CHECK(n2 && t2s_u8(n2)[0] == 7 && t2s_u8(n2)[1] == 9);
  t2s_ctx_end_pass(ctx);
  t2s_test_tensor_free(lab);
  t2s_test_tensor_free(lab2);
}

static void test_prototypes(t2s_ctx *ctx, t2s_tensor *k, t2s_tensor *labels) {
  t2s_prototypes p;
  CHECK(t2s_prototypes_init(&p, C, D, 0.0f, &ctx->err) == T2S_OK);
  CHECK(t2s_class_prototypes(ctx, k, labels, 255, &p) == T2S_OK);
  const float *kv = t2s_f32(k);
  for (int c = 0; c < C; c++) {
    double sum[D] = {0}, cnt = 0;
    for (int b = 0; b < N; b++)
      for (int i = 0; i < HW; i++)
        if (LABELS[b * HW + i] == c) {
          cnt++;
          for (int d = 0; d < D; d++) sum[d] += kv[(b * D + d) * HW + i];
        }
    CHECK(p.present[c] == (cnt > 0) && p.count[c] == cnt);
    for (int d = 0; d < D; d++)
      CHECK_MSG(fabs(p.proto[c * D + d] - sum[d] / cnt) < 1e-6, "class %d dim %d", c, d);
  }
  /* EMA: a second batch with only image 0 moves present classes by (1 - m) */
  t2s_prototypes e;
  CHECK(t2s_prototypes_init(&e, C, D, 0.9f, &ctx->err) == T2S_OK);
  CHECK(t2s_class_prototypes(ctx, k, labels, 255, &e) == T2S_OK);
  float before[C * D];
  memcpy(before, e.proto, sizeof before);
  t2s_tensor k0 = slice(k, 0), y0 = slice(labels, 0);
  t2s_prototypes only0;
  CHECK(t2s_prototypes_init(&only0, C, D, 0.0f, &ctx->err) == T2S_OK);
  CHECK(t2s_class_prototypes(ctx, &k0, &y0, 255, &only0) == T2S_OK);
  CHECK(t2s_class_prototypes(ctx, &k0, &y0, 255, &e) == T2S_OK);
  CHECK(!e.present[3] && e.seen[3]);
  for (int i = 0; i < C * D; i++) {
    double want = i / D == 3 ? before[i] : 0.9 * before[i] + 0.1 * only0.proto[i];
    CHECK_MSG(fabs(e.proto[i] - want) < 1e-6, "EMA element %d: %g vs %g", i, e.proto[i], want);
  }
  t2s_prototypes_free(&p);
  t2s_prototypes_free(&e);
  t2s_prototypes_free(&only0);
}

/* Sampled indices: the right class, distinct, the right counts, and image 1's draws
 * the same whether planned in the full batch or alone at global offset 1. */
static void test_plan(t2s_ctx *ctx, t2s_tensor *labels, t2s_tensor *present, t2s_pull_cfg cfg) {
  t2s_pull_plan full, alone;
  CHECK(t2s_pull_loss_plan(ctx, labels, present, C, &cfg, 7, 3, 0, &full) == T2S_OK);
  t2s_tensor y1 = slice(labels, 1);
  CHECK(t2s_pull_loss_plan(ctx, &y1, present, C, &cfg, 7, 3, 1, &alone) == T2S_OK);
  int matched = 0;
  for (int g = 0; g < full.n_groups; g++) {
    const t2s_pull_group *gr = &full.groups[g];
    const uint8_t *yb = LABELS + gr->image * HW;
    int cnt = 0, others = 0;
    for (int i = 0; i < HW; i++) cnt += yb[i] == gr->cls, others += yb[i] != gr->cls && yb[i] != 255;
    CHECK(gr->n_query == (cnt < cfg.num_queries ? cnt : cfg.num_queries));
    int want_neg = cfg.negatives == T2S_PULL_NEG_KEYS ? others : 3;  /* 4 classes present */
    CHECK(gr->n_neg == (want_neg < cfg.num_negatives ? want_neg : cfg.num_negatives));
    for (int i = 0; i < gr->n_query; i++) {
      int p = full.query_pixel[gr->query_off + i];
      CHECK(yb[p] == gr->cls);
      for (int j = 0; j < i; j++) CHECK(full.query_pixel[gr->query_off + j] != p);
      const int32_t *neg = full.neg_index + gr->neg_off + (int64_t)i * gr->n_neg;
      for (int j = 0; j < gr->n_neg; j++) {
        int cls = cfg.negatives == T2S_PULL_NEG_KEYS ? yb[neg[j]] : neg[j];
        CHECK(cls != gr->cls && cls != 255);
        for (int l = 0; l < j; l++) CHECK(neg[l] != neg[j]);
      }
    }
    if (gr->image != 1) continue;
    for (int a = 0; a < alone.n_groups; a++) {
      const t2s_pull_group *ga = &alone.groups[a];
      if (ga->cls != gr->cls) continue;
      matched++;
      CHECK(ga->n_query == gr->n_query && ga->n_neg == gr->n_neg);
      CHECK(memcmp(alone.query_pixel + ga->query_off, full.query_pixel + gr->query_off,
                   sizeof(int32_t) * gr->n_query) == 0);
      CHECK(memcmp(alone.neg_index + ga->neg_off, full.neg_index + gr->neg_off,
                   sizeof(int32_t) * gr->n_query * gr->n_neg) == 0);
    }
  }
  CHECK(matched == alone.n_groups && matched > 0);
  t2s_ctx_end_pass(ctx);
}

/* value and gradient against the reference over the op's own plan */
static void test_value_grad(t2s_ctx *ctx, pull_case *pc, t2s_tensor *q, const char *label) {
  t2s_pull_plan plan;
  CHECK(t2s_pull_loss_plan(ctx, pc->labels, pc->present, C, &pc->cfg, 7, 3, 0, &plan) == T2S_OK);
  double qc[C] = {0};
  for (int g = 0; g < plan.n_groups; g++) qc[plan.groups[g].cls] += plan.groups[g].n_query;
  double *grad = calloc((size_t)t2s_numel(q), sizeof(double));
  double want = ref_loss(&plan, &pc->cfg, t2s_f32(q), t2s_f32(pc->k), t2s_f32(pc->proto),
                         t2s_f32(pc->cw), qc, 1, grad);
  t2s_ctx_end_pass(ctx);
  float gq[N * D * HW] = {0};  /* an existing grad accumulates */
  q->grad = gq;
  t2s_tensor *loss = build_pull(ctx, &q, pc);
  CHECK_MSG(loss != NULL, "%s: %s", label, ctx->err.msg);
  if (loss) {
    CHECK_MSG(fabs(t2s_f32(loss)[0] - want) < 1e-5 * (1 + fabs(want)), "%s: loss %.8g, direct %.8g",
              label, t2s_f32(loss)[0], want);
    CHECK(t2s_backward(ctx, loss, 1.0f) == T2S_OK);
    int bad = 0;
    for (int64_t i = 0; i < t2s_numel(q); i++)
      if (fabs(gq[i] - grad[i]) > 1e-5 && bad++ < 3)
        fprintf(stderr, "%s: grad %lld: %g vs direct %g\n", label, (long long)i, gq[i], grad[i]);
    CHECK_MSG(bad == 0, "%s: %d gradient mismatches", label, bad);
  }
  q->grad = NULL;
  t2s_ctx_end_pass(ctx);
  free(grad);
  t2s_gc_opts o = {1e-3, 1e-2, 1e-4, 200};
  t2s_gradcheck(label, build_pull, pc, &q, 1, &o);
}

/* Halves at global offsets 0 and 1 with world_size 2 and a fake all-reduce: mean of
 * the half losses = full loss; half gradient = 2 x the full gradient on that image. */
static void test_rank_split(t2s_ctx *ctx, pull_case *pc, t2s_tensor *q) {
  float gfull[N * D * HW] = {0};
  q->grad = gfull;
  t2s_tensor *lf = build_pull(ctx, &q, pc);
  CHECK(lf && t2s_backward(ctx, lf, 1.0f) == T2S_OK);
  double full = lf ? t2s_f32(lf)[0] : NAN;
  q->grad = NULL;
  t2s_ctx_end_pass(ctx);
  fake_comm fc[2] = {{0}};
  double half_loss[2];
  float ghalf[2][D * HW] = {{0}};
  for (int phase = 0; phase < 2; phase++)
    for (int r = 0; r < 2; r++) {
      fc[r].record = phase == 0;
      fc[r].n_calls = 0;
      fc[r].other = &fc[1 - r];
      ctx->stat_allreduce = fake_allreduce;
      ctx->stat_user = &fc[r];
      t2s_tensor qr = slice(q, r), kr = slice(pc->k, r), yr = slice(pc->labels, r);
      qr.grad = ghalf[r];
      t2s_tensor *l = t2s_pull_loss(ctx, &qr, &kr, &yr, pc->cw, pc->proto, pc->present, &pc->cfg,
                                    7, 3, r, 2);
      CHECK_MSG(l != NULL, "rank split: %s", ctx->err.msg);
      if (phase == 1 && l) {
        half_loss[r] = t2s_f32(l)[0];
        CHECK(t2s_backward(ctx, l, 1.0f) == T2S_OK);
      }
      t2s_ctx_end_pass(ctx);
    }
  ctx->stat_allreduce = NULL;
  double mean = 0.5 * (half_loss[0] + half_loss[1]);
  CHECK_MSG(fabs(mean - full) < 1e-5 * (1 + fabs(full)), "rank split: mean %.8g, full %.8g", mean,
            full);
  for (int r = 0; r < 2; r++)
    for (int i = 0; i < D * HW; i++)
      CHECK_MSG(fabs(0.5 * ghalf[r][i] - gfull[r * D * HW + i]) < 1e-6,
                "rank split grad image %d element %d: %g vs %g", r, i, 0.5 * ghalf[r][i],
                gfull[r * D * HW + i]);
  for (int r = 0; r < 2; r++)
    for (int i = 0; i < fc[r].n_calls; i++) free(fc[r].calls[i]);
}

int main(void) {
  t2s_error err = {0};
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 1 << 20, &err);
  ctx->grad_enabled = 1;
  int64_t ls[3] = {N, H, W}, cs = C;
  t2s_tensor *labels = t2s_test_tensor_u8(3, ls, LABELS);
  t2s_tensor *q = unit_features(11, 1), *k = unit_features(12, 0);
  t2s_tensor *cw = t2s_test_tensor(1, &cs, 0.5f, 2.0f, 13, 0);

  test_downsample(ctx);
  test_prototypes(ctx, k, labels);

  t2s_prototypes p;
  t2s_prototypes_init(&p, C, D, 0.0f, &err);
  CHECK(t2s_class_prototypes(ctx, k, labels, 255, &p) == T2S_OK);
  pull_case pc = {t2s_pull_cfg_defaults(), k, labels, cw, NULL, NULL};
  int64_t pshape[2] = {C, D};
  t2s_tensor proto, present;
  t2s_tensor_init(&proto, T2S_F32, T2S_DEV_CPU, 2, pshape, p.proto);
  t2s_tensor_init(&present, T2S_U8, T2S_DEV_CPU, 1, &cs, p.present);
  pc.proto = &proto;
  pc.present = &present;

  /* defaults take every pixel (N_q = 256, N_n = 50 exceed the map); then sampling */
  const int nq[3] = {256, 3, 2}, nn[3] = {50, 4, 1};
  for (int mode = 0; mode < 2; mode++)
    for (int s = 0; s < 3; s++) {
      pc.cfg = t2s_pull_cfg_defaults();
      pc.cfg.negatives = mode ? T2S_PULL_NEG_PROTOTYPES : T2S_PULL_NEG_KEYS;
      pc.cfg.num_queries = nq[s];
      pc.cfg.num_negatives = nn[s];
      char label[96];
      snprintf(label, sizeof label, "pull %s N_q %d N_n %d", mode ? "prototypes" : "keys", nq[s],
               nn[s]);
      test_plan(ctx, labels, &present, pc.cfg);
      test_value_grad(ctx, &pc, q, label);
      test_rank_split(ctx, &pc, q);
    }

  /* host copies (for the CUDA plan): matching ones leave the CPU value unchanged; one of
   * another dtype or shape is refused, naming it */
  pc.cfg = t2s_pull_cfg_defaults();
  t2s_pull_host copies = {labels, cw, &present}, wrong = {NULL, NULL, labels};
  t2s_tensor *plain = build_pull(ctx, &q, &pc);
  t2s_tensor *hosted = t2s_pull_loss_hosted(ctx, q, k, labels, cw, &proto, &present, &pc.cfg, 7, 3, 0, 1, &copies);
  CHECK_MSG(plain && hosted && t2s_f32(plain)[0] == t2s_f32(hosted)[0], "pull with host copies: %s", ctx->err.msg);
  CHECK(t2s_pull_loss_hosted(ctx, q, k, labels, cw, &proto, &present, &pc.cfg, 7, 3, 0, 1, &wrong) == NULL &&
        strstr(ctx->err.msg, "host copy of the present mask") != NULL);
  t2s_error_clear(&ctx->err);
  t2s_ctx_end_pass(ctx);

  /* a labelled class missing from the present mask is an error that says why */
  p.present[2] = 0;
  CHECK(build_pull(ctx, &q, &pc) == NULL && strstr(ctx->err.msg, "present mask") != NULL);
  t2s_prototypes_free(&p);
  t2s_ctx_destroy(ctx);
  t2s_test_tensor_free(labels);
  t2s_test_tensor_free(q);
  t2s_test_tensor_free(k);
  t2s_test_tensor_free(cw);
  return t2s_test_finish("test_losses_pull");
}
