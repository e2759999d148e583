/* Activation liveness (core/engine.h scopes, t2s_op_bwd_reads; core/arena.c free list):
 * the arena's best fit, coalescing and repeatable addresses; then whole training steps
 * with liveness on and off (ctx->keep_all) must give bit-identical losses, gradients,
 * running statistics and updated weights while liveness frees allocations and lowers
 * the pass arena's peak: a ResNet DeepLab-V2 step, a MiT + DAFormer step with drop path,
 * and full T2S-DA iterations of the synthetic config (tools/bench/bench_iteration.c). */
// ctest-timeout: 300
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/nn/segmentor.h"
#include "core/ops.h"
#include "tests/harness.h"
#include "tools/bench/bench_iteration.h"

static void check_arena(void) {
  t2s_error err = {0};
  t2s_arena *a = t2s_arena_create(T2S_DEV_CPU, 1 << 20, "test", &err);
  CHECK(a != NULL);
  if (a == NULL) return;
  char *p[2][6];
  for (int pass = 0; pass < 2; pass++) {
    char **q = p[pass];
    q[0] = t2s_arena_alloc(a, 1000, &err);   /* 1024 after alignment */
    q[1] = t2s_arena_alloc(a, 3000, &err);   /* 3072 */
    q[2] = t2s_arena_alloc(a, 500, &err);    /* 512 */
    q[3] = t2s_arena_alloc(a, 2000, &err);   /* 2048 */
    CHECK(t2s_arena_used(a) == 1024 + 3072 + 512 + 2048);
    t2s_arena_free(a, q[1], 3000);
    t2s_arena_free(a, q[3], 2000);           /* ends at the bump position: lowers it */
    CHECK(t2s_arena_used(a) == 1024 + 512);
    /* best fit: the 3072 hole, not fresh memory */
    q[4] = t2s_arena_alloc(a, 2500, &err);
    CHECK_MSG(q[4] == q[1], "best fit did not reuse the freed range");
    /* coalescing: freeing 0 and 4 around nothing gives one 1024 + 3072 range before q[2] */
    t2s_arena_free(a, q[0], 1000);
    t2s_arena_free(a, q[4], 2500);
    q[5] = t2s_arena_alloc(a, 4096, &err);
    CHECK_MSG(q[5] == q[0], "neighbouring free ranges did not coalesce");
    CHECK(t2s_arena_peak_footprint(a) == 1024 + 3072 + 512 + 2048);
    t2s_arena_reset(a);
  }
  for (int i = 0; i < 6; i++) CHECK_MSG(p[0][i] == p[1][i], "allocation %d moved between passes", i);
  /* poison on free: a read of freed memory sees NaN bytes */
  t2s_arena_set_poison(a, 0xFF);
  unsigned char *x = t2s_arena_alloc(a, 256, &err), *y = t2s_arena_alloc(a, 256, &err);
  memset(x, 0, 256);
  t2s_arena_free(a, x, 256);
  CHECK(x[0] == 0xFF && x[255] == 0xFF && y != NULL);
  t2s_arena_destroy(a);
}

typedef struct step_result {
  float loss;
  float *grad, *buf, *weights;
  size_t peak;
  uint64_t freed;
} step_result;

/* Two SGD-free training passes (forward, CE, backward) of m on a fixed batch; the
 * second starts from the gradients of the first (accumulation) so that a gradient read
 * from a freed or reused range would show. */
static void train_steps(t2s_segmentor *m, int keep_all, step_result *r) {
  t2s_error err = {0};
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 1 << 20, &err);
  CHECK(ctx != NULL);
  if (ctx == NULL) return;
  ctx->keep_all = keep_all;
  ctx->seed = 3;
  t2s_arena_set_poison(ctx->pass, 0xFF);
  int64_t ishape[4] = {2, 3, 48, 40}, lshape[3] = {2, 48, 40};
  t2s_tensor *img = t2s_test_tensor(4, ishape, -1, 1, 11, 0);
  uint8_t *lab = malloc(2 * 48 * 40);
  for (int i = 0; i < 2 * 48 * 40; i++) lab[i] = (uint8_t)(i % 7 == 0 ? 255 : (i / 13) % 3);
  t2s_tensor *y = t2s_test_tensor_u8(3, lshape, lab);
  t2s_params_zero_grad(&m->params, &err);
  for (int step = 0; step < 2; step++) {
    ctx->step = (uint64_t)step;
    t2s_seg_out out;
    t2s_segmentor_forward(ctx, m, img, &out);
    t2s_tensor *up = t2s_resize_bilinear(ctx, out.logits, 48, 40, 0);
    t2s_ce_args ce = {255, T2S_CE_MEAN_VALID, 0};
    t2s_tensor *loss = t2s_cross_entropy(ctx, up, y, NULL, NULL, &ce);
    CHECK_MSG(t2s_backward(ctx, loss, 1.0f) == T2S_OK, "%s", ctx->err.msg);
    if (loss) r->loss = t2s_f32(loss)[0];
    t2s_ctx_end_pass(ctx);
  }
  size_t n = m->params.numel, nb = m->params.buf_numel;
  r->grad = malloc(n * sizeof(float));
  r->weights = malloc(n * sizeof(float));
  r->buf = malloc((nb ? nb : 1) * sizeof(float));
  memcpy(r->grad, m->params.grad, n * sizeof(float));
  memcpy(r->weights, m->params.data, n * sizeof(float));
  if (nb) memcpy(r->buf, m->params.buf_data, nb * sizeof(float));
  r->peak = t2s_arena_peak(ctx->pass);
  r->freed = t2s_liveness_freed(ctx);
  free(lab);
  t2s_test_tensor_free(img);
  t2s_test_tensor_free(y);
  t2s_ctx_destroy(ctx);
}

static void compare_steps(const char *what, const t2s_model_cfg *cfg) {
  step_result r[2];
  memset(r, 0, sizeof r);
  for (int keep_all = 0; keep_all < 2; keep_all++) {
    t2s_error err = {0};
    t2s_segmentor m;
    CHECK_MSG(t2s_segmentor_build(&m, cfg, T2S_DEV_CPU, 5, &err) == T2S_OK, "%s", err.msg);
    if (err.status) return;
    train_steps(&m, keep_all, &r[keep_all]);
    if (keep_all == 1) {
      size_t n = m.params.numel, nb = m.params.buf_numel;
      CHECK_MSG(memcmp(&r[0].loss, &r[1].loss, sizeof(float)) == 0, "%s: loss %.9g with liveness, %.9g without",
                what, r[0].loss, r[1].loss);
      CHECK_MSG(r[0].grad && memcmp(r[0].grad, r[1].grad, n * sizeof(float)) == 0,
                "%s: gradients differ with liveness on and off", what);
      CHECK_MSG(r[0].buf && memcmp(r[0].buf, r[1].buf, nb * sizeof(float)) == 0,
                "%s: running statistics differ", what);
      /* without liveness only the ops' own scratch releases count */
      CHECK_MSG(r[0].freed > r[1].freed + 100, "%s: freed %llu with liveness, %llu without", what,
                (unsigned long long)r[0].freed, (unsigned long long)r[1].freed);
      CHECK_MSG(r[0].peak < r[1].peak * 3 / 4, "%s: arena peak %zu with liveness, %zu without", what,
                r[0].peak, r[1].peak);
      printf("%s: peak %zu -> %zu bytes, %llu allocations freed early\n", what, r[1].peak, r[0].peak,
             (unsigned long long)r[0].freed);
    }
    t2s_segmentor_free(&m);
  }
  for (int k = 0; k < 2; k++) {
    free(r[k].grad);
    free(r[k].buf);
    free(r[k].weights);
  }
}

static void check_networks(void) {
  t2s_model_cfg cfg = t2s_model_default_cfg();
  cfg.resnet.depth = 18;
  cfg.resnet.base_channels = 8;
  cfg.resnet.stem_channels = 8;
  cfg.num_classes = 3;
  compare_steps("resnet18 deeplabv2", &cfg);
  cfg.resnet.depth = 50;
  compare_steps("resnet50 deeplabv2", &cfg);

  t2s_model_cfg mc = t2s_model_default_cfg();
  t2s_error err;
  mc.backbone = T2S_BACKBONE_MIT;
  mc.head = T2S_HEAD_DAFORMER_SEPASPP;
  t2s_mit_cfg_by_name("mit_b0", &mc.mit, &err);
  int dims[4] = {8, 16, 24, 32}, heads[4] = {1, 2, 3, 4}, depths[4] = {2, 1, 2, 1};
  memcpy(mc.mit.embed_dims, dims, sizeof dims);
  memcpy(mc.mit.heads, heads, sizeof heads);
  memcpy(mc.mit.depths, depths, sizeof depths);
  mc.mit.drop_path_rate = 0.3f;
  mc.daformer.channels = 12;
  mc.num_classes = 3;
  compare_steps("mit + daformer sepaspp", &mc);
}

/* Full iterations of the synthetic T2S-DA config: the ResNet one as configured, a
 * MiT + DAFormer one with the ImageNet feature distance (all three student passes, the
 * teacher's and the frozen network's), one with MIC (its pass reads the pseudo-labels of
 * the mix's scope), one with HRDA + MIC, and the domain-generalisation iteration
 * (t2sda_dg: the stylised image outlives the source term's scope). Loss columns: src,
 * mix, fd, t2s, st, mic; `need` lists those that must be non-zero. */
static void check_iterations(void) {
  const char *root = getenv("T2S_SOURCE_DIR");
  char path[1024];
  snprintf(path, sizeof path, "%s/configs/synthetic_t2sda.yaml", root ? root : ".");
  char *mit[] = {"model.backbone.type=mit_b0", "model.decode_head.type=daformer_sepaspp",
                 "model.decode_head.channels=16", "uda.imnet_feature_dist_lambda=0.005"};
  char *mic[] = {"uda.mic.enabled=true", "uda.pseudo_threshold=0.05"};
  char *hrda_mic[] = {"uda.mic.enabled=true", "uda.pseudo_threshold=0.05", "model.hrda.enabled=true",
                      "model.hrda.hr_crop_size=[32,32]", "model.hrda.slide_stride=[16,16]"};
  char *dg[] = {"uda.type=t2sda_dg", "data.target.shards=[]", "uda.pseudo_target.type=fourier_source+color_random",
                "uda.pseudo_target.beta=0.1"};
  const struct {
    const char *what;
    char **set;
    int n_set;
    int need[6];
  } v[] = {{"resnet t2sda iteration", NULL, 0, {1, 1, 0, 1, 0, 0}},
           {"mit_b0 t2sda iteration", mit, 4, {1, 1, 0, 1, 0, 0}},
           {"resnet t2sda + MIC iteration", mic, 2, {1, 1, 0, 1, 0, 1}},
           {"resnet t2sda + HRDA + MIC iteration", hrda_mic, 5, {1, 1, 0, 1, 0, 1}},
           {"resnet t2sda_dg iteration", dg, 4, {1, 0, 0, 1, 1, 0}}};
  for (size_t variant = 0; variant < sizeof v / sizeof v[0]; variant++) {
    t2s_bench_iter_result r[2];
    const char *what = v[variant].what;
    for (int keep_all = 0; keep_all < 2; keep_all++) {
      t2s_bench_iter_opts o = {path, v[variant].set, v[variant].n_set, 64, 64, 2, 2, 1, keep_all, 0};
      t2s_error err = {0};
      CHECK_MSG(t2s_bench_iteration_run(&o, &r[keep_all], &err) == T2S_OK, "%s: %s", what, err.msg);
      if (err.status) return;
    }
    CHECK_MSG(memcmp(r[0].loss, r[1].loss, sizeof r[0].loss) == 0, "%s: losses differ (src %.9g vs %.9g)",
              what, r[0].loss[1][0], r[1].loss[1][0]);
    CHECK_MSG(r[0].weights_hash == r[1].weights_hash, "%s: the updated weights differ", what);
    for (int k = 0; k < 6; k++)
      if (v[variant].need[k]) CHECK_MSG(r[0].loss[1][k] != 0.0, "%s: loss term %d did not run", what, k);
    CHECK_MSG(r[0].freed > 0 && r[0].arena_peak < r[1].arena_peak / 2,
              "%s: arena peak %zu with liveness, %zu without", what, r[0].arena_peak, r[1].arena_peak);
    printf("%s: peak %zu -> %zu bytes\n", what, r[1].arena_peak, r[0].arena_peak);
  }
}

int main(void) {
  check_arena();
  check_networks();
  check_iterations();
  return t2s_test_finish("test_liveness");
}
