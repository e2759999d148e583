// ctest-labels: dist
// ctest-mpi: 2
// ctest-timeout: 300
/* Bucketed gradient averaging against a plain single-process reference, on a real
 * network: ResNet-18 (base 8) DeepLab-V2, a global batch of 2 images split over the
 * ranks (W ranks x 2/W images), cross-entropy normalised by the global valid pixel count
 * divided by W, two loss terms per iteration (two backward calls; the sync arms only
 * before the last). The reference, computed in each process without any communicator,
 * runs the same two terms on the whole 2-image batch. Averaged gradients, the logits,
 * the parameters after an SGD step and the BN running statistics must match to 1e-5
 * relative (per tensor, max norm), for frozen BN and for SyncBN (2 x 1 vs 1 x 2).
 * Run alone (W = 1) the same comparison holds with one rank holding both images. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/nn/segmentor.h"
#include "core/optim.h"
#include "core/rng.h"
#include "dist/comm.h"
#include "dist/grad_sync.h"
#include "tests/harness.h"

#define N_GLOBAL 2
#define IMG 40        /* -> 5 x 5 logits at output stride 8 */
#define CLASSES 5
#define TOL 1e-5

typedef struct batch {
  float *image;      /* N_GLOBAL x 3 x IMG x IMG */
  uint8_t *label;    /* N_GLOBAL x L x L at logit resolution, some 255 */
  int l;
} batch;

static batch make_batch(int l) {
  batch b = {malloc(sizeof(float) * N_GLOBAL * 3 * IMG * IMG), malloc((size_t)N_GLOBAL * l * l), l};
  t2s_rng_key k = t2s_rng_key_make(7, 0, 0, 1);
  for (size_t i = 0; i < (size_t)N_GLOBAL * 3 * IMG * IMG; i++)
    b.image[i] = 2.0f * t2s_rng_uniform(k, i) - 1.0f;
  for (size_t i = 0; i < (size_t)N_GLOBAL * l * l; i++) {
    uint32_t u = (uint32_t)(t2s_rng_uniform(k, 1000000 + i) * 7.0f);
    b.label[i] = u >= CLASSES ? (u == CLASSES ? 255 : 1) : (uint8_t)u;
  }
  return b;
}

static int64_t valid_pixels(const uint8_t *lbl, size_t n) {
  int64_t v = 0;
  for (size_t i = 0; i < n; i++) v += lbl[i] != 255;
  return v;
}

/* One loss term on images [i0, i0 + n): forward, CE / normaliser x weight, backward.
 * The sync (may be NULL) is armed before the backward when `last`. Returns the logits
 * copied to host memory (n x C x L x L) through *logits when not NULL. */
static int loss_term(t2s_ctx *ctx, t2s_segmentor *m, const batch *b, int i0, int n,
                     double normaliser, float weight, t2s_grad_sync *sync, int last,
                     float *logits) {
  t2s_error err = {0};
  int64_t ishape[4] = {n, 3, IMG, IMG}, lshape[3] = {n, b->l, b->l};
  t2s_tensor *x = t2s_tensor_new(ctx, T2S_F32, 4, ishape);
  t2s_tensor *y = t2s_tensor_new(ctx, T2S_U8, 3, lshape);
  if (x == NULL || y == NULL) return 0;
  memcpy(x->data, b->image + (size_t)i0 * 3 * IMG * IMG, sizeof(float) * n * 3 * IMG * IMG);
  memcpy(y->data, b->label + (size_t)i0 * b->l * b->l, (size_t)n * b->l * b->l);
  t2s_seg_out out;
  if (t2s_segmentor_forward(ctx, m, x, &out) != T2S_OK) return 0;
  t2s_ce_args a = {255, T2S_CE_MEAN_VALID, normaliser};
  t2s_tensor *loss = t2s_scale(ctx, t2s_cross_entropy(ctx, out.logits, y, NULL, NULL, &a), weight);
  if (!t2s_ctx_ok(ctx)) return fprintf(stderr, "forward: %s\n", ctx->err.msg), 0;
  if (logits) memcpy(logits, out.logits->data, sizeof(float) * (size_t)t2s_numel(out.logits));
  if (sync && t2s_grad_sync_begin(sync, ctx, last, &err) != T2S_OK)
    return fprintf(stderr, "begin: %s\n", err.msg), 0;
  int ok = t2s_backward(ctx, loss, 1.0f) == T2S_OK;
  if (!ok) fprintf(stderr, "backward: %s\n", ctx->err.msg);
  t2s_ctx_end_pass(ctx);
  return ok;
}

/* max |a - b| <= TOL max |b| over each tensor; returns the number of failing tensors. */
static int compare(const char *what, const t2s_params *got, const t2s_params *ref, int grads) {
  int bad = 0;
  for (int i = 0; i < ref->count; i++) {
    const t2s_param *q = ref->items[i];
    size_t n = (size_t)t2s_numel(&q->t);
    const float *a = (grads ? got->grad : got->data) + q->offset;
    const float *r = (grads ? ref->grad : ref->data) + q->offset;
    double diff = 0, scale = 0;
    for (size_t k = 0; k < n; k++) {
      diff = fmax(diff, fabs((double)a[k] - r[k]));
      scale = fmax(scale, fabs((double)r[k]));
    }
    if (!(diff <= TOL * scale)) {
      if (bad++ < 5)
        fprintf(stderr, "%s %s: max diff %.3g vs max |ref| %.3g\n", what, q->name, diff, scale);
    }
  }
  return bad;
}

static int max_rel_ok(const float *a, const float *r, size_t n) {
  double diff = 0, scale = 0;
  for (size_t k = 0; k < n; k++) {
    diff = fmax(diff, fabs((double)a[k] - r[k]));
    scale = fmax(scale, fabs((double)r[k]));
  }
  return diff <= TOL * scale;
}

static void run_case(t2s_comm *c, t2s_norm_kind norm) {
  const char *name = norm == T2S_NORM_SYNCBN ? "syncbn" : "frozen-bn";
  t2s_error err = {0};
  t2s_model_cfg mc = t2s_model_default_cfg();
  mc.num_classes = CLASSES;
  mc.resnet = t2s_resnet_default_cfg(18);
  mc.resnet.base_channels = 8;
  mc.resnet.stem_channels = 8;
  mc.resnet.norm = norm;
  t2s_segmentor m, ref;
  CHECK(t2s_segmentor_build(&m, &mc, T2S_DEV_CPU, 11, &err) == T2S_OK);
  CHECK(t2s_segmentor_build(&ref, &mc, T2S_DEV_CPU, 11, &err) == T2S_OK);
  if (err.status != T2S_OK) return (void)fprintf(stderr, "build: %s\n", err.msg);
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 8 << 20, &err);
  t2s_ctx *rctx = t2s_ctx_create(T2S_DEV_CPU, 8 << 20, &err);
  t2s_dist_attach(c, ctx, norm == T2S_NORM_SYNCBN);
  t2s_grad_sync *sync = NULL;
  /* Small buckets (16 KiB) so that many start inside backward. */
  CHECK(t2s_grad_sync_create(&sync, c, &m.params, 16 << 10, &err) == T2S_OK);
  CHECK(t2s_dist_bcast_params(c, &m.params, &err) == T2S_OK);

  const int L = 5, W = c->world, per = N_GLOBAL / W, i0 = c->rank * per;
  batch b = make_batch(L);
  /* The normaliser every rank uses: global valid count / W (the reference: W = 1). */
  int64_t valid = valid_pixels(b.label + (size_t)i0 * L * L, (size_t)per * L * L);
  CHECK(t2s_dist_allreduce_i64(c, &valid, 1, &err) == T2S_OK);
  double norm_local = (double)valid / W, norm_ref = (double)valid;
  size_t per_logits = (size_t)CLASSES * L * L;
  float *lg = malloc(sizeof(float) * per_logits * N_GLOBAL);
  float *rlg = malloc(sizeof(float) * per_logits * N_GLOBAL);

  int ok = loss_term(ctx, &m, &b, i0, per, norm_local, 1.0f, sync, 0, lg) &&
           loss_term(ctx, &m, &b, i0, per, norm_local, 0.5f, sync, 1, NULL);
  CHECK(ok);
  CHECK(t2s_grad_sync_finish(sync, &err) == T2S_OK);
  CHECK_MSG(err.status == T2S_OK, "%s", err.msg);
  CHECK(ctx->after_backward_node == NULL);
  CHECK(loss_term(rctx, &ref, &b, 0, N_GLOBAL, norm_ref, 1.0f, NULL, 0, rlg) &&
        loss_term(rctx, &ref, &b, 0, N_GLOBAL, norm_ref, 0.5f, NULL, 0, NULL));
  int nb = t2s_grad_sync_buckets(sync), early = t2s_grad_sync_started_early(sync);
  if (c->rank == 0) printf("%s: %d buckets, %d started during backward\n", name, nb, early);
  CHECK_MSG(nb > 10 && early >= nb / 2, "%s: only %d of %d buckets overlapped backward", name,
            early, nb);

  CHECK_MSG(max_rel_ok(lg, rlg + (size_t)i0 * per_logits, per_logits * per),
            "%s: rank %d logits differ from the reference's slice", name, c->rank);
  int bad = compare("averaged gradient", &m.params, &ref.params, 1);
  CHECK_MSG(bad == 0, "%s: %d gradient tensors differ from the single-process reference", name, bad);

  t2s_optim_cfg oc = {T2S_OPTIM_SGD, 0.01, 0.9, 5e-4, 0.9, 0.999, 1e-8, 0.0};
  t2s_optim o, ro;
  CHECK(t2s_optim_init(&o, &m.params, &oc, &err) == T2S_OK);
  CHECK(t2s_optim_init(&ro, &ref.params, &oc, &err) == T2S_OK);
  CHECK(t2s_optim_step(&o, 0.01, NULL, &err) == T2S_OK);
  CHECK(t2s_optim_step(&ro, 0.01, NULL, &err) == T2S_OK);
  bad = compare("parameter after SGD", &m.params, &ref.params, 0);
  CHECK_MSG(bad == 0, "%s: %d parameter tensors differ after the step", name, bad);
  CHECK_MSG(max_rel_ok(m.params.buf_data, ref.params.buf_data, ref.params.buf_numel),
            "%s: BN running statistics differ from the reference", name);

  /* The ranks hold bit-identical parameters (what keeps the EMA teachers identical). */
  float *root = malloc(sizeof(float) * m.params.numel);
  memcpy(root, m.params.data, sizeof(float) * m.params.numel);
  CHECK(t2s_dist_bcast(c, root, sizeof(float) * m.params.numel, 0, &err) == T2S_OK);
  CHECK_MSG(memcmp(root, m.params.data, sizeof(float) * m.params.numel) == 0,
            "%s: rank %d parameters differ from rank 0's", name, c->rank);

  free(root);
  free(lg);
  free(rlg);
  free(b.image);
  free(b.label);
  t2s_optim_free(&o);
  t2s_optim_free(&ro);
  t2s_grad_sync_destroy(sync);
  t2s_ctx_destroy(ctx);
  t2s_ctx_destroy(rctx);
  t2s_segmentor_free(&m);
  t2s_segmentor_free(&ref);
}

int main(void) {
  t2s_comm c;
  t2s_error err = {0};
  t2s_dist_cfg cfg = t2s_dist_default_cfg();
  cfg.timeout_s = 120;
  if (t2s_dist_init(&c, &cfg, &err) != T2S_OK) return fprintf(stderr, "%s\n", err.msg), 1;
  if (N_GLOBAL % c.world != 0) {
    fprintf(stderr, "run with 1 or 2 ranks\n");
    t2s_dist_finalize(&c);
    return 77;
  }
  run_case(&c, T2S_NORM_FROZEN);
  run_case(&c, T2S_NORM_SYNCBN);
  int64_t failures = t2s_test_failures;
  if (t2s_dist_allreduce_i64(&c, &failures, 1, &err) != T2S_OK) failures = 1;
  if (failures > 0 && t2s_test_failures == 0) t2s_test_failures = 1;
  t2s_dist_finalize(&c);
  return t2s_test_finish("test_dist_grad_sync");
}
