// ctest-labels: unit
/* A network imported from a PyTorch .pth gives PyTorch's logits: the fixture
 * (tools/make_convert_fixtures.py) holds a fixed input and the eval-mode
 * logits of the same state dict in tools/torch_reference.py. Eval mode uses the
 * running statistics, so the BN buffers must have arrived too. Tolerance 1e-4
 * of the largest |logit| (float32 on both sides). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/nn/segmentor.h"
#include "core/formats/pretrained.h"
#include "tests/fixture.h"
#include "tests/harness.h"

int main(void) {
  char fx[1024];  /* t2s_fixture_path returns a static buffer */
  snprintf(fx, sizeof fx, "%s", t2s_fixture_path("convert_parity.h5"));
  t2s_model_cfg cfg = t2s_model_default_cfg();
  int hd[8];
  cfg.resnet.depth = (int)t2s_fixture_attr(fx, "/", "depth");
  cfg.resnet.base_channels = (int)t2s_fixture_attr(fx, "/", "base_channels");
  cfg.resnet.stem_channels = (int)t2s_fixture_attr(fx, "/", "stem_channels");
  cfg.num_classes = (int)t2s_fixture_attr(fx, "/", "num_classes");
  CHECK(t2s_fixture_attr_ints(fx, "/", "strides", cfg.resnet.strides, 4) == 4);
  CHECK(t2s_fixture_attr_ints(fx, "/", "dilations", cfg.resnet.dilations, 4) == 4);
  cfg.n_head_dilations = t2s_fixture_attr_ints(fx, "/", "head_dilations", hd, 8);
  memcpy(cfg.head_dilations, hd, sizeof cfg.head_dilations);
  if (t2s_test_failures) return t2s_test_finish("test_convert_parity");

  t2s_error err = {0};
  t2s_segmentor m;
  CHECK_MSG(t2s_segmentor_build(&m, &cfg, T2S_DEV_CPU, 3, &err) == T2S_OK, "%s", err.msg);
  if (err.status) return t2s_test_finish("test_convert_parity");
  CHECK_MSG(t2s_load_pretrained(&m.params, t2s_fixture_path("convert_resnet18.pth"), NULL, NULL, 0, &err) == T2S_OK,
            "%s", err.msg);

  int64_t shape[5], n_img = 0, n_ref = 0;
  int nd = 0;
  float *img = t2s_fixture_read_f32(fx, "/input", &n_img, &nd, shape);
  float *ref = t2s_fixture_read_f32(fx, "/logits", &n_ref, NULL, NULL);
  CHECK(img && ref && nd == 4);
  if (!img || !ref || err.status) return t2s_test_finish("test_convert_parity");
  t2s_tensor image;
  t2s_tensor_init(&image, T2S_F32, T2S_DEV_CPU, 4, shape, img);
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 16 << 20, &err);
  CHECK(ctx != NULL);
  if (!ctx) return t2s_test_finish("test_convert_parity");
  ctx->training = 0;
  t2s_set_grad_enabled(ctx, 0);
  t2s_seg_out out;
  t2s_segmentor_forward(ctx, &m, &image, &out);
  CHECK_MSG(t2s_ctx_ok(ctx), "forward: %s", ctx->err.msg);
  if (t2s_ctx_ok(ctx)) {
    CHECK_MSG(t2s_numel(out.logits) == n_ref, "%lld logits, PyTorch has %lld", (long long)t2s_numel(out.logits),
              (long long)n_ref);
    double diff = 0, scale = 0;
    const float *y = t2s_f32(out.logits);
    for (int64_t i = 0; i < n_ref && i < t2s_numel(out.logits); i++) {
      diff = fmax(diff, fabs((double)y[i] - ref[i]));
      scale = fmax(scale, fabs((double)ref[i]));
    }
    double rel = diff / fmax(scale, 1e-12);
    CHECK_MSG(rel <= 1e-4 && scale > 0, "logits differ from PyTorch by %.3g relative (max |logit| %.3g)", rel, scale);
    printf("imported .pth vs PyTorch eval logits: max |diff| %.3g, relative %.3g over %lld values\n", diff, rel,
           (long long)n_ref);
  }
  t2s_ctx_destroy(ctx);
  t2s_segmentor_free(&m);
  free(img);
  free(ref);
  return t2s_test_finish("test_convert_parity");
}
