// ctest-labels: cuda
// ctest-timeout: 300
/* The method's fused losses on CUDA against their CPU slots (losses/pull_loss.c,
 * losses/feature_distance.c), through the replay harness of tests/cuda_replay.h:
 * the CPU node (its args: cfg, seed, iteration, global offset, world size) is replayed
 * on the CUDA slot with device copies of every input (features NHWC, labels, class
 * weights, prototypes and the present mask byte for byte); the scalar loss and dq / df
 * are compared in write mode (NaN-filled) and accumulate mode, with canaries.
 *
 * - pull_loss: negatives from keys and from prototypes; classes with more and fewer
 *   pixels than num_queries (sampled and complete groups), more negatives than a warp
 *   (the softmax loops), D below and above 32, class weights and world_size 2 (the
 *   normaliser), a class present globally but not in these labels; 1e-5.
 * - feature_distance: C below and above 32, world_size 1 and 2, a counted pixel with
 *   f = g (zero distance: zero gradient, no division); 1e-5.
 * - the public path on a CUDA context: t2s_class_prototypes from the device keys' host
 *   copies (t2s_tensor_host: the same prototypes as from the host keys, bit for bit),
 *   then t2s_pull_loss with t2s_prototypes_tensor uploaded, backward through the
 *   tape; loss and dq against the CPU.
 * - the per-pixel maps of the UDA step on device tensors: t2s_pseudo_labels (argmax,
 *   max probability, confidence fraction, weight rows) and t2s_classmix_masks /
 *   t2s_classmix_apply (the same classes drawn, NHWC images mixed) against the CPU;
 *   labels and masks exactly, floats to 1e-6.
 *
 * Skipped (exit 77) without a CUDA build or a visible GPU. */
#include "launch/device_batch.h"
#include "losses/classmix.h"
#include "losses/feature_distance.h"
#include "losses/pseudo_label.h"
#include "losses/pull_loss.h"
#include "tests/cuda_replay.h"

#define NCLS 6

/* Labels (N, h, w): class of a pixel from a hash, with a dominant class 0 (more pixels
 * than num_queries), a rare class, ignore pixels, and class 5 absent. */
static t2s_tensor *make_labels(int64_t n, int64_t h, int64_t w, uint64_t seed) {
  int64_t shape[3] = {n, h, w}, m = n * h * w;
  uint8_t *y = malloc((size_t)m);
  t2s_rng_key key = t2s_rng_key_make(seed, 1, 2, 3);
  for (int64_t i = 0; i < m; i++) {
    float u = t2s_rng_uniform(key, (uint64_t)i);
    y[i] = u < 0.45f ? 0 : u < 0.6f ? 1 : u < 0.75f ? 2 : u < 0.85f ? 3 : u < 0.88f ? 4 : 255;
  }
  t2s_tensor *t = t2s_test_tensor_u8(3, shape, y);
  free(y);
  return t;
}

/* ---- pull loss ------------------------------------------------------------------------ */

typedef struct pull_user {
  t2s_pull_cfg cfg;
  int world_size;
} pull_user;

static t2s_tensor *b_pull(t2s_ctx *x, t2s_tensor **in, const void *u) {
  const pull_user *p = u;
  return t2s_pull_loss(x, in[0], in[1], in[2], in[3], in[4], in[5], &p->cfg, 77, 5, 3,
                       p->world_size);
}

static void pull_cases(t2s_ctx *cpu, t2s_ctx *gpu) {
  const int64_t dims[2] = {16, 48};
  for (int di = 0; di < 2; di++)
    for (int neg = 0; neg < 2; neg++)
      for (int variant = 0; variant < 2; variant++) {
        int64_t D = dims[di], fs[4] = {2, D, 6, 7}, ps[2] = {NCLS, D}, cs = NCLS;
        t2s_tensor *q = t2s_test_tensor(4, fs, -0.5f, 0.5f, 600 + di, 1);
        t2s_tensor *k = t2s_test_tensor(4, fs, -0.5f, 0.5f, 610 + di, 0);
        t2s_tensor *y = make_labels(2, 6, 7, 620);
        t2s_tensor *proto = t2s_test_tensor(2, ps, -0.5f, 0.5f, 630 + di, 0);
        const uint8_t pres[NCLS] = {1, 1, 1, 1, 1, 1}; /* 5: present elsewhere only */
        t2s_tensor *present = t2s_test_tensor_u8(1, &cs, pres);
        t2s_tensor *cw = variant ? t2s_test_tensor(1, &cs, 0.5f, 2.0f, 640, 0) : NULL;
        pull_user u = {t2s_pull_cfg_defaults(), variant ? 2 : 1};
        u.cfg.num_queries = 9;  /* class 0 has ~19 pixels per image: sampled */
        u.cfg.num_negatives = variant ? 40 : 5;
        u.cfg.negatives = neg ? T2S_PULL_NEG_PROTOTYPES : T2S_PULL_NEG_KEYS;
        u.cfg.tau = 0.3f;
        char label[128];
        snprintf(label, sizeof label, "pull_loss D%lld %s negatives %d%s", (long long)D,
                 neg ? "prototypes" : "keys", u.cfg.num_negatives,
                 variant ? " class weights, world 2" : "");
        op_case c = {label, b_pull, &u, 6, {q, k, y, cw, proto, present}, 0, 1e-5, 0};
        run_case(cpu, gpu, &c);
        t2s_test_tensor_free(q), t2s_test_tensor_free(k), t2s_test_tensor_free(y);
        t2s_test_tensor_free(proto), t2s_test_tensor_free(present), t2s_test_tensor_free(cw);
      }
}

/* ---- feature distance ---------------------------------------------------------------- */

typedef struct fd_user {
  t2s_feature_distance_cfg cfg;
  int world_size;
} fd_user;

static t2s_tensor *b_fd(t2s_ctx *x, t2s_tensor **in, const void *u) {
  const fd_user *f = u;
  return t2s_feature_distance(x, in[0], in[1], in[2], &f->cfg, f->world_size);
}

static void fd_cases(t2s_ctx *cpu, t2s_ctx *gpu) {
  const int64_t chans[2] = {8, 70};
  for (int ci = 0; ci < 2; ci++)
    for (int world = 1; world <= 2; world++) {
      int64_t C = chans[ci], fs[4] = {2, C, 5, 9};
      t2s_tensor *f = t2s_test_tensor(4, fs, -1.0f, 1.0f, 700 + ci, 1);
      t2s_tensor *g = t2s_test_tensor(4, fs, -1.0f, 1.0f, 710 + ci, 0);
      t2s_tensor *y = make_labels(2, 5, 9, 720);
      /* pixel (0, 0, 0): a counted class with f = g */
      t2s_u8(y)[0] = 2;
      for (int64_t c = 0; c < C; c++) t2s_f32(f)[c * 45] = t2s_f32(g)[c * 45];
      fd_user u = {t2s_feature_distance_cfg_defaults(), world};
      memset(u.cfg.things, 0, sizeof u.cfg.things);
      u.cfg.things[1] = u.cfg.things[2] = u.cfg.things[4] = 1;
      char label[96];
      snprintf(label, sizeof label, "feature_distance C%lld world %d", (long long)C, world);
      op_case c = {label, b_fd, &u, 3, {f, g, y}, 0, 1e-5, 0};
      run_case(cpu, gpu, &c);
      t2s_test_tensor_free(f), t2s_test_tensor_free(g), t2s_test_tensor_free(y);
    }
}

/* ---- the public path on a CUDA context ------------------------------------------------- */

/* A device copy of a host test tensor (4-d float: NHWC), without gradient buffers. */
static void to_device(t2s_tensor *dt, dbuf *buf, const t2s_tensor *host) {
  int act = host->ndim == 4 && host->dtype == T2S_F32;
  float *v = to_device_order(t2s_f32(host), host, act);
  dbuf_make(buf, v, float_slots(host));
  free(v);
  device_tensor(dt, host, buf);
}

static void public_path(t2s_ctx *cpu, t2s_ctx *gpu) {
  int64_t D = 24, fs[4] = {2, D, 8, 6};
  t2s_tensor *q = t2s_test_tensor(4, fs, -0.5f, 0.5f, 800, 1);
  t2s_tensor *k = t2s_test_tensor(4, fs, -0.5f, 0.5f, 801, 0);
  t2s_tensor *y = make_labels(2, 8, 6, 802);
  t2s_pull_cfg cfg = t2s_pull_cfg_defaults();
  cfg.num_queries = 7;
  cfg.num_negatives = 11;
  t2s_prototypes pc, pg;
  t2s_error err = {0};
  CHECK(t2s_prototypes_init(&pc, NCLS, (int)D, 0.0f, &err) == T2S_OK);
  CHECK(t2s_prototypes_init(&pg, NCLS, (int)D, 0.0f, &err) == T2S_OK);
  int64_t nq = t2s_numel(q);
  float *dq_ref = calloc((size_t)nq, sizeof(float));
  q->grad = dq_ref;
  q->grad_accumulates = 1;
  t2s_ctx_end_pass(cpu);
  CHECK_MSG(t2s_class_prototypes(cpu, k, y, 255, &pc) == T2S_OK, "cpu prototypes: %s",
            cpu->err.msg);
  t2s_tensor *lc = t2s_pull_loss(cpu, q, k, y, NULL, t2s_prototypes_tensor(cpu, &pc),
                                 t2s_prototypes_present_tensor(cpu, &pc), &cfg, 3, 9, 0, 1);
  CHECK_MSG(lc && t2s_backward(cpu, lc, 1.0f) == T2S_OK, "public path: cpu: %s", cpu->err.msg);

  t2s_tensor dq_t, dk_t, dy_t;
  dbuf bq, bk, by, bg;
  to_device(&dq_t, &bq, q), to_device(&dk_t, &bk, k), to_device(&dy_t, &by, y);
  dk_t.requires_grad = 0;
  float *z = calloc((size_t)nq, sizeof(float));
  dbuf_make(&bg, z, nq);
  free(z);
  dq_t.grad = dbuf_data(&bg);
  dq_t.grad_accumulates = 1;
  t2s_ctx_end_pass(gpu);
  CHECK_MSG(t2s_class_prototypes(gpu, t2s_tensor_host(gpu, &dk_t), t2s_tensor_host(gpu, &dy_t), 255, &pg) == T2S_OK,
            "prototypes from device keys: %s", gpu->err.msg);
  CHECK_MSG(memcmp(pc.proto, pg.proto, sizeof(float) * NCLS * (size_t)D) == 0 &&
                memcmp(pc.present, pg.present, NCLS) == 0,
            "prototypes from device keys differ from those of host keys");
  t2s_tensor *lg = t2s_pull_loss(gpu, &dq_t, &dk_t, &dy_t, NULL,
                                 t2s_tensor_upload(gpu, t2s_prototypes_tensor(gpu, &pg)),
                                 t2s_tensor_upload(gpu, t2s_prototypes_present_tensor(gpu, &pg)), &cfg, 3, 9,
                                 0, 1);
  CHECK_MSG(lg && t2s_backward(gpu, lg, 1.0f) == T2S_OK, "public path: cuda: %s", gpu->err.msg);
  if (lc && lg && t2s_ctx_ok(gpu)) {
    float gl = NAN, cl = t2s_f32(lc)[0];
    t2s_device_copy(T2S_DEV_CPU, &gl, T2S_DEV_CUDA, lg->data, sizeof gl, &err);
    expect_close("pull public path", "loss", &gl, &cl, 1, 1e-5);
    /* the plan from host copies of the labels and the present mask (no read-back): the
     * same loss (off the tape: only the value is compared) */
    t2s_pull_host copies = {y, NULL, t2s_prototypes_present_tensor(gpu, &pg)};
    int prev = t2s_set_grad_enabled(gpu, 0);
    t2s_tensor *lh = t2s_pull_loss_hosted(gpu, &dq_t, &dk_t, &dy_t, NULL,
                                          t2s_tensor_upload(gpu, t2s_prototypes_tensor(gpu, &pg)),
                                          t2s_tensor_upload(gpu, t2s_prototypes_present_tensor(gpu, &pg)), &cfg,
                                          3, 9, 0, 1, &copies);
    t2s_set_grad_enabled(gpu, prev);
    float hl = NAN;
    CHECK_MSG(lh && t2s_device_copy(T2S_DEV_CPU, &hl, T2S_DEV_CUDA, lh->data, sizeof hl, &err) == T2S_OK,
              "pull from host copies: %s", gpu->err.msg);
    expect_close("pull from host copies", "loss", &hl, &cl, 1, 1e-5);
    float *d = malloc((size_t)nq * sizeof(float)), *got = malloc((size_t)nq * sizeof(float));
    if (dbuf_read(&bg, d, "pull public path", "dq")) {
      from_device_order(d, got, q, 1);
      expect_close("pull public path", "dq", got, dq_ref, nq, 1e-5);
    }
    free(d), free(got);
  }
  dbuf_free(&bq), dbuf_free(&bk), dbuf_free(&by), dbuf_free(&bg);
  q->grad = NULL;
  free(dq_ref);
  t2s_prototypes_free(&pc), t2s_prototypes_free(&pg);
  t2s_test_tensor_free(q), t2s_test_tensor_free(k), t2s_test_tensor_free(y);
  t2s_ctx_end_pass(cpu);
  t2s_ctx_end_pass(gpu);
  printf("done pull public path\n");
}

/* ---- per-pixel maps of the UDA step --------------------------------------------------- */

/* An output device buffer (NaN-filled) with a header like `like` (shape and dtype). */
static void device_out(t2s_tensor *dt, dbuf *buf, const t2s_tensor *like) {
  dbuf_make(buf, NULL, float_slots(like));
  device_tensor(dt, like, buf);
}

/* Reads a device result back in logical order and compares it with the host tensor. */
static void compare_back(const char *label, const char *what, dbuf *buf, const t2s_tensor *ref,
                         double tol) {
  int64_t slots = float_slots(ref), n = t2s_numel(ref);
  float *d = malloc((size_t)slots * sizeof(float)), *got = malloc((size_t)n * sizeof(float));
  if (dbuf_read(buf, d, label, what)) {
    if (ref->dtype != T2S_F32) {
      CHECK_MSG(memcmp(d, ref->data, (size_t)n * t2s_dtype_size(ref->dtype)) == 0,
                "%s: %s differs from the CPU's", label, what);
    } else {
      from_device_order(d, got, ref, ref->ndim == 4);
      expect_close(label, what, got, t2s_f32(ref), n, tol);
    }
  }
  free(d), free(got);
}

static void pseudo_label_case(t2s_ctx *cpu, t2s_ctx *gpu) {
  int64_t ls[4] = {2, 5, 6, 7}, ms[3] = {2, 6, 7};
  t2s_tensor *z = t2s_test_tensor(4, ls, -3.0f, 3.0f, 900, 0);
  for (int64_t i = 0; i < 42; i += 3) t2s_f32(z)[i] = 9.0f; /* confident pixels, class 0 */
  t2s_pseudo_label_cfg cfg = {0.6f, 1, 2, 6};
  t2s_tensor *yh = make_labels(2, 6, 7, 901), *pw = t2s_test_tensor(3, ms, 0, 0, 2, 0);
  t2s_tensor *mp = t2s_test_tensor(3, ms, 0, 0, 3, 0);
  double qc = -1.0, qg = -2.0;
  CHECK_MSG(t2s_pseudo_labels(cpu, &cfg, z, yh, pw, mp, &qc) == T2S_OK, "pseudo_labels cpu: %s",
            cpu->err.msg);
  t2s_tensor dz, dyh, dpw, dmp;
  dbuf bz, byh, bpw, bmp;
  to_device(&dz, &bz, z);
  device_out(&dyh, &byh, yh), device_out(&dpw, &bpw, pw), device_out(&dmp, &bmp, mp);
  CHECK_MSG(t2s_pseudo_labels(gpu, &cfg, &dz, &dyh, &dpw, &dmp, &qg) == T2S_OK,
            "pseudo_labels cuda: %s", gpu->err.msg);
  if (t2s_ctx_ok(gpu)) {
    CHECK_MSG(qc == qg && qc > 0.0 && qc < 1.0, "pseudo_labels: confidence %g on cuda, %g on cpu "
              "(the case wants a fraction strictly between 0 and 1)", qg, qc);
    compare_back("pseudo_labels", "yhat", &byh, yh, 0.0);
    compare_back("pseudo_labels", "max_prob", &bmp, mp, 1e-6);
    compare_back("pseudo_labels", "pixel_weight", &bpw, pw, 0.0);
  }
  gpu->err.status = T2S_OK;
  dbuf_free(&bz), dbuf_free(&byh), dbuf_free(&bpw), dbuf_free(&bmp);
  t2s_test_tensor_free(z), t2s_test_tensor_free(pw), t2s_test_tensor_free(mp);
  t2s_test_tensor_free(yh);
  printf("done pseudo_labels\n");
}

static void classmix_case(t2s_ctx *cpu, t2s_ctx *gpu) {
  int64_t xs4[4] = {2, 3, 6, 7}, ms[3] = {2, 6, 7};
  t2s_tensor *ys = make_labels(2, 6, 7, 910), *yhat = make_labels(2, 6, 7, 911);
  t2s_tensor *mask = make_labels(2, 6, 7, 912), *ymix = make_labels(2, 6, 7, 913);
  t2s_tensor *x_s = t2s_test_tensor(4, xs4, -1.0f, 1.0f, 914, 0);
  t2s_tensor *x_t = t2s_test_tensor(4, xs4, -1.0f, 1.0f, 915, 0);
  t2s_tensor *x_mix = t2s_test_tensor(4, xs4, 0, 0, 916, 0);
  t2s_tensor *plw = t2s_test_tensor(3, ms, 0.0f, 1.0f, 917, 0);
  t2s_tensor *w_mix = t2s_test_tensor(3, ms, 0, 0, 918, 0);
  CHECK_MSG(t2s_classmix_masks(cpu, ys, 255, 42, 7, 4, mask) == T2S_OK &&
                t2s_classmix_apply(cpu, mask, x_s, x_t, ys, yhat, plw, x_mix, ymix, w_mix) == T2S_OK,
            "classmix cpu: %s", cpu->err.msg);
  int64_t chosen = 0;
  for (int64_t i = 0; i < t2s_numel(mask); i++) chosen += t2s_u8(mask)[i];
  CHECK_MSG(chosen > 0 && chosen < t2s_numel(mask), "classmix: the CPU mask is uniform (%lld)",
            (long long)chosen);
  t2s_tensor d[9];
  dbuf b[9];
  const t2s_tensor *in[5] = {ys, yhat, x_s, x_t, plw}, *out[4] = {mask, x_mix, ymix, w_mix};
  for (int k = 0; k < 5; k++) to_device(&d[k], &b[k], in[k]);
  for (int k = 0; k < 4; k++) device_out(&d[5 + k], &b[5 + k], out[k]);
  CHECK_MSG(t2s_classmix_masks(gpu, &d[0], 255, 42, 7, 4, &d[5]) == T2S_OK &&
                t2s_classmix_apply(gpu, &d[5], &d[2], &d[3], &d[0], &d[1], &d[4], &d[6], &d[7],
                                   &d[8]) == T2S_OK,
            "classmix cuda: %s", gpu->err.msg);
  if (t2s_ctx_ok(gpu)) {
    const char *names[4] = {"mask", "x_mix", "y_mix", "w_mix"};
    for (int k = 0; k < 4; k++) compare_back("classmix", names[k], &b[5 + k], out[k], 0.0);
    /* the class choice from the host copy of the labels (no read-back): the same mask,
     * written over a cleared one (the CPU mask is not uniform, see above) */
    CHECK_MSG(t2s_device_zero(T2S_DEV_CUDA, d[5].data, (size_t)t2s_numel(mask), &gpu->err) == T2S_OK &&
                  t2s_classmix_masks_hosted(gpu, &d[0], ys, 255, 42, 7, 4, &d[5]) == T2S_OK,
              "classmix cuda from host labels: %s", gpu->err.msg);
    if (t2s_ctx_ok(gpu)) compare_back("classmix from host labels", "mask", &b[5], mask, 0.0);
  }
  gpu->err.status = T2S_OK;
  for (int k = 0; k < 9; k++) dbuf_free(&b[k]);
  t2s_test_tensor_free(ys), t2s_test_tensor_free(yhat), t2s_test_tensor_free(mask);
  t2s_test_tensor_free(ymix), t2s_test_tensor_free(x_s), t2s_test_tensor_free(x_t);
  t2s_test_tensor_free(x_mix), t2s_test_tensor_free(plw), t2s_test_tensor_free(w_mix);
  printf("done classmix\n");
}

int main(void) {
  if (!t2s_cuda_built()) {
    printf("test_cuda_losses: skipped: this build has no CUDA backend (configure with "
           "-DT2S_CUDA=ON)\n");
    return 77;
  }
  if (t2s_cuda_device_count() == 0) {
    printf("test_cuda_losses: skipped: no CUDA device is visible\n");
    return 77;
  }
  t2s_error err = {0};
  t2s_ctx *cpu = t2s_ctx_create(T2S_DEV_CPU, 64 << 20, &err);
  t2s_ctx *gpu = cpu ? t2s_ctx_create(T2S_DEV_CUDA, 64 << 20, &err) : NULL;
  if (gpu == NULL) {
    fprintf(stderr, "test_cuda_losses: creating the contexts: %s\n", err.msg);
    t2s_ctx_destroy(cpu);
    return 1;
  }
  cpu->seed = gpu->seed = 1234;
  pull_cases(cpu, gpu);
  fd_cases(cpu, gpu);
  pseudo_label_case(cpu, gpu);
  classmix_case(cpu, gpu);
  printf("op checks: %d failure(s) so far\n", t2s_test_failures);
  fflush(stdout);
  public_path(cpu, gpu);
  t2s_ctx_destroy(gpu);
  t2s_ctx_destroy(cpu);
  return t2s_test_finish("test_cuda_losses");
}
