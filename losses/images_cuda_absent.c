/* The launchers of losses/images_cuda.h in a build without the CUDA backend: no CUDA
 * context can exist there, so they are unreachable; they answer "not built". With
 * the backend, losses/cuda/images.cu defines them and this file compiles to nothing. */
#include "losses/images_cuda.h"

#ifndef T2S_HAVE_CUDA
static t2s_status absent(t2s_ctx *ctx, const char *what) {
  return t2s_error_set(&ctx->err, T2S_ERR_UNSUPPORTED,
                       "%s: this build has no CUDA backend (configure with -DT2S_CUDA=ON)", what);
}

t2s_status t2s_images_layout_cuda(t2s_ctx *ctx, const float *src, float *dst, int64_t n,
                                  int64_t channels, int64_t hw, int to_nhwc) {
  (void)src, (void)dst, (void)n, (void)channels, (void)hw, (void)to_nhwc;
  return absent(ctx, "images_layout_cuda");
}

t2s_status t2s_images_normalize_cuda(t2s_ctx *ctx, float *x, int64_t n, int64_t hw,
                                     const float mean[3], const float std[3]) {
  (void)x, (void)n, (void)hw, (void)mean, (void)std;
  return absent(ctx, "images_normalize_cuda");
}

t2s_status t2s_images_jitter_cuda(t2s_ctx *ctx, float *x, int64_t n, int64_t hw,
                                  const t2s_jitter_params *params) {
  (void)x, (void)n, (void)hw, (void)params;
  return absent(ctx, "images_jitter_cuda");
}

t2s_status t2s_images_blur_cuda(t2s_ctx *ctx, float *x, int h, int w, const float *ky_host,
                                int kh, int ry, const float *kx_host, int kw, int rx) {
  (void)x, (void)h, (void)w, (void)ky_host, (void)kh, (void)ry, (void)kx_host, (void)kw, (void)rx;
  return absent(ctx, "images_blur_cuda");
}
#else
typedef int t2s_images_cuda_absent_unused; /* ISO C: a translation unit is never empty */
#endif
