// ctest-labels: unit grad
/* concat, bilinear and nearest resize: finite-difference gradients, and forward
 * values against naive loops and hand-worked PyTorch cases. */
#include <math.h>
#include <string.h>

#include "tests/harness.h"

typedef struct concat_case { int dim; } concat_case;
typedef struct resize_case { int h, w, align; } resize_case;

static t2s_tensor *build_concat(t2s_ctx *c, t2s_tensor **in, void *u) {
  return t2s_concat(c, in, 3, ((concat_case *)u)->dim);
}
static t2s_tensor *build_concat_repeat(t2s_ctx *c, t2s_tensor **in, void *u) {
  t2s_tensor *xs[3] = {in[0], in[1], in[0]};
  return t2s_concat(c, xs, 3, 1);
}
static t2s_tensor *build_bilinear(t2s_ctx *c, t2s_tensor **in, void *u) {
  const resize_case *r = u;
  return t2s_resize_bilinear(c, in[0], r->h, r->w, r->align);
}

static t2s_ctx *new_ctx(void) {
  t2s_error err = {0};
  t2s_ctx *ctx = t2s_ctx_create(T2S_DEV_CPU, 1 << 20, &err);
  if (ctx == NULL) fprintf(stderr, "context: %s\n", err.msg);
  return ctx;
}

static void test_concat(void) {
  int64_t s0[4] = {2, 3, 4, 5}, s1[4] = {2, 1, 4, 5}, s2[4] = {2, 2, 4, 5};
  int64_t t0[4] = {2, 3, 2, 5}, t1[4] = {2, 3, 1, 5}, t2[4] = {2, 3, 3, 5};
  const int64_t *shapes[2][3] = {{s0, s1, s2}, {t0, t1, t2}};
  for (int d = 1; d <= 2; d++) {
    t2s_tensor *x[3];
    for (int k = 0; k < 3; k++) x[k] = t2s_test_tensor(4, shapes[d - 1][k], -1, 1, 10 + k, 1);
    concat_case cc = {d};
    char label[64];
    snprintf(label, sizeof label, "concat dim %d, 3 inputs", d);
    t2s_gradcheck(label, build_concat, &cc, x, 3, NULL);

    /* forward: element (n, c, h, w) of the output comes from the input whose range holds
     * the index along d */
    t2s_ctx *ctx = new_ctx();
    t2s_tensor *y = t2s_concat(ctx, x, 3, d);
    CHECK_MSG(y != NULL, "%s", ctx->err.msg);
    if (y) {
      int bad = 0;
      int64_t idx[4];
      for (idx[0] = 0; idx[0] < y->shape[0]; idx[0]++)
        for (idx[1] = 0; idx[1] < y->shape[1]; idx[1]++)
          for (idx[2] = 0; idx[2] < y->shape[2]; idx[2]++)
            for (idx[3] = 0; idx[3] < y->shape[3]; idx[3]++) {
              int64_t j[4] = {idx[0], idx[1], idx[2], idx[3]};
              int k = 0;
              while (j[d] >= x[k]->shape[d]) j[d] -= x[k++]->shape[d];
              const int64_t *s = x[k]->shape;
              float want = t2s_f32(x[k])[((j[0] * s[1] + j[1]) * s[2] + j[2]) * s[3] + j[3]];
              const int64_t *o = y->shape;
              float got = t2s_f32(y)[((idx[0] * o[1] + idx[1]) * o[2] + idx[2]) * o[3] + idx[3]];
              bad += got != want;
            }
      CHECK_MSG(bad == 0, "concat dim %d: %d elements misplaced", d, bad);
      CHECK(y->shape[d] == 6);
    }
    t2s_ctx_destroy(ctx);
    for (int k = 0; k < 3; k++) t2s_test_tensor_free(x[k]);
  }
  /* one tensor twice in one concat: its gradient is the sum of both slices */
  t2s_tensor *x[2] = {t2s_test_tensor(4, s0, -1, 1, 20, 1), t2s_test_tensor(4, s1, -1, 1, 21, 1)};
  t2s_gradcheck("concat (x, y, x)", build_concat_repeat, NULL, x, 2, NULL);
  /* mismatched sizes are an error naming the shapes */
  t2s_ctx *ctx = new_ctx();
  t2s_tensor *bad[2] = {x[0], x[1]};
  CHECK(t2s_concat(ctx, bad, 2, 2) == NULL);
  CHECK_MSG(strstr(ctx->err.msg, "[2, 1, 4, 5]") != NULL, "message: %s", ctx->err.msg);
  t2s_ctx_destroy(ctx);
  t2s_test_tensor_free(x[0]);
  t2s_test_tensor_free(x[1]);
}

/* The source coordinate of PyTorch's bilinear interpolation, written independently. */
static double ref_src(int64_t d, int64_t in, int64_t out, int align) {
  if (align) return out > 1 ? d * (double)(in - 1) / (double)(out - 1) : 0.0;
  double s = (d + 0.5) * (double)in / (double)out - 0.5;
  s = s < 0 ? 0 : s;
  return s > in - 1 ? in - 1 : s;
}

static void test_bilinear(void) {
  int64_t shape[4] = {2, 3, 5, 7};
  t2s_tensor *x = t2s_test_tensor(4, shape, -1, 1, 30, 1);
  t2s_tensor *in[1] = {x};
  resize_case cases[] = {{9, 13, 0}, {9, 13, 1}, {3, 4, 0}, {3, 4, 1}, {8, 5, 0}, {2, 11, 1}, {1, 1, 1}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char label[80];
    snprintf(label, sizeof label, "bilinear 5x7 -> %dx%d align_corners=%d", cases[i].h, cases[i].w,
             cases[i].align);
    t2s_gradcheck(label, build_bilinear, &cases[i], in, 1, NULL);
  }

  /* a ramp a*h + b*w + c is reproduced at the source coordinates (both modes: the
   * interpolation of a linear function is exact; edges clamp the coordinate) */
  t2s_ctx *ctx = new_ctx();
  float *xv = t2s_f32(x);
  for (int64_t p = 0; p < 6; p++)
    for (int64_t h = 0; h < 5; h++)
      for (int64_t w = 0; w < 7; w++) xv[(p * 5 + h) * 7 + w] = 0.5f * h - 0.25f * w + (float)p;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const resize_case *r = &cases[i];
    t2s_tensor *y = t2s_resize_bilinear(ctx, x, r->h, r->w, r->align);
    CHECK_MSG(y != NULL, "%s", ctx->err.msg);
    if (y == NULL) break;
    double worst = 0;
    for (int64_t p = 0; p < 6; p++)
      for (int64_t h = 0; h < r->h; h++)
        for (int64_t w = 0; w < r->w; w++) {
          double want = 0.5 * ref_src(h, 5, r->h, r->align) - 0.25 * ref_src(w, 7, r->w, r->align) + p;
          worst = fmax(worst, fabs(t2s_f32(y)[(p * r->h + h) * r->w + w] - want));
        }
    CHECK_MSG(worst < 1e-5, "ramp %dx%d align_corners=%d: off by %g", r->h, r->w, r->align, worst);
    t2s_ctx_end_pass(ctx);
  }

  /* hand-worked F.interpolate([[1, 2], [3, 4]], size=4, align_corners=False) */
  int64_t s22[4] = {1, 1, 2, 2};
  t2s_tensor *q = t2s_test_tensor(4, s22, 0, 0, 1, 0);
  for (int i = 0; i < 4; i++) t2s_f32(q)[i] = (float)(i + 1);
  const float want4[16] = {1.0f, 1.25f, 1.75f, 2.0f, 1.5f, 1.75f, 2.25f, 2.5f,
                           2.5f, 2.75f, 3.25f, 3.5f, 3.0f, 3.25f, 3.75f, 4.0f};
  t2s_tensor *y = t2s_resize_bilinear(ctx, q, 4, 4, 0);
  for (int i = 0; y && i < 16; i++)
    CHECK_MSG(fabsf(t2s_f32(y)[i] - want4[i]) < 1e-6f, "2x2->4x4 [%d] = %g, want %g", i,
              t2s_f32(y)[i], want4[i]);
  /* align_corners=True, 2x2 -> 3x3: the midpoints are means */
  const float want3[9] = {1.0f, 1.5f, 2.0f, 2.0f, 2.5f, 3.0f, 3.0f, 3.5f, 4.0f};
  y = t2s_resize_bilinear(ctx, q, 3, 3, 1);
  for (int i = 0; y && i < 9; i++)
    CHECK_MSG(fabsf(t2s_f32(y)[i] - want3[i]) < 1e-6f, "2x2->3x3 [%d] = %g, want %g", i,
              t2s_f32(y)[i], want3[i]);
  /* downsampling 2x2 -> 1x1 without align_corners: src = 0.5 -> the mean 2.5 */
  y = t2s_resize_bilinear(ctx, q, 1, 1, 0);
  CHECK(y && fabsf(t2s_f32(y)[0] - 2.5f) < 1e-6f);
  /* and with align_corners the single output takes the corner */
  y = t2s_resize_bilinear(ctx, q, 1, 1, 1);
  CHECK(y && t2s_f32(y)[0] == 1.0f);
  CHECK_MSG(t2s_ctx_ok(ctx), "%s", ctx->err.msg);
  t2s_ctx_destroy(ctx);
  t2s_test_tensor_free(q);
  t2s_test_tensor_free(x);
}

static void test_nearest(void) {
  t2s_ctx *ctx = new_ctx();
  /* 3x4 label map, upsampled to 5x6: rows floor(d * 3/5) = 0 0 1 1 2, cols floor(d * 4/6) =
   * 0 0 1 2 2 3 */
  const uint8_t map[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 255, 11};
  const uint8_t up[30] = {0, 0, 1, 2, 2,   3, 0, 0, 1, 2, 2,   3, 4, 4, 5,
                          6, 6, 7, 4, 4,   5, 6, 6, 7, 8, 8, 9, 255, 255, 11};
  int64_t s3[3] = {1, 3, 4}, s4[4] = {1, 1, 3, 4};
  t2s_tensor *lab3 = t2s_test_tensor_u8(3, s3, map), *lab4 = t2s_test_tensor_u8(4, s4, map);
  t2s_tensor *y = t2s_resize_nearest(ctx, lab3, 5, 6);
  CHECK_MSG(y != NULL && y->dtype == T2S_U8 && y->ndim == 3, "%s", ctx->err.msg);
  if (y) CHECK(memcmp(t2s_u8(y), up, 30) == 0);
  y = t2s_resize_nearest(ctx, lab4, 5, 6);
  CHECK_MSG(y != NULL && y->ndim == 4 && y->shape[1] == 1, "%s", ctx->err.msg);
  if (y) CHECK(memcmp(t2s_u8(y), up, 30) == 0);
  /* downsampling 3x4 -> 2x2: rows floor(d * 1.5) = 0 1, cols floor(d * 2) = 0 2 */
  const uint8_t down[4] = {0, 2, 4, 6};
  y = t2s_resize_nearest(ctx, lab3, 2, 2);
  if (y) CHECK(memcmp(t2s_u8(y), down, 4) == 0);

  /* float (N, C, H, W): every plane the same index map; never taped */
  int64_t sf[4] = {2, 3, 3, 4};
  t2s_tensor *xf = t2s_test_tensor(4, sf, -1, 1, 40, 1);
  y = t2s_resize_nearest(ctx, xf, 5, 6);
  CHECK_MSG(y != NULL, "%s", ctx->err.msg);
  if (y) {
    int bad = 0;
    for (int64_t p = 0; p < 6; p++)
      for (int i = 0; i < 30; i++) {
        int src = up[i] == 255 ? 10 : up[i];  /* the map holds each source's flat index */
        bad += t2s_f32(y)[p * 30 + i] != t2s_f32(xf)[p * 12 + src];
      }
    CHECK_MSG(bad == 0, "float nearest: %d wrong", bad);
    CHECK(y->requires_grad == 0 && ctx->tape_len == 0);
  }
  /* a float label map without channels is refused with its shape */
  t2s_tensor *bad3 = t2s_test_tensor(3, s3, 0, 1, 41, 0);
  CHECK(t2s_resize_nearest(ctx, bad3, 2, 2) == NULL);
  CHECK_MSG(strstr(ctx->err.msg, "[1, 3, 4]") != NULL, "message: %s", ctx->err.msg);
  t2s_ctx_destroy(ctx);
  t2s_test_tensor_free(bad3);
  t2s_test_tensor_free(xf);
  t2s_test_tensor_free(lab3);
  t2s_test_tensor_free(lab4);
}

int main(void) {
  test_concat();
  test_bilinear();
  test_nearest();
  return t2s_test_finish("test_grad_shape_resize");
}
