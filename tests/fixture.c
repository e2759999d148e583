#include "tests/fixture.h"

#include "core/ops.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

const char *t2s_fixture_path(const char *name) {
  static char buf[1024];
  const char *src = getenv("T2S_SOURCE_DIR");
  snprintf(buf, sizeof buf, "%s/tests/fixtures/%s", src ? src : ".", name);
  return buf;
}

static void *read_all(const char *file, const char *dataset, hid_t mem_type, size_t elem,
                      int64_t *numel, int *ndim, int64_t *shape) {
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) {
    fprintf(stderr, "fixture %s: cannot open (regenerate it with the script named in tests/fixtures/README.md)\n", file);
    return NULL;
  }
  void *data = NULL;
  hid_t d = H5Dopen2(f, dataset, H5P_DEFAULT);
  if (d >= 0) {
    hid_t sp = H5Dget_space(d);
    hsize_t dims[8] = {0};
    int nd = H5Sget_simple_extent_ndims(sp);
    H5Sget_simple_extent_dims(sp, dims, NULL);
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= (int64_t)dims[i];
    data = malloc((size_t)(n ? n : 1) * elem);
    if (H5Dread(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
      free(data);
      data = NULL;
    }
    if (numel) *numel = n;
    if (ndim) *ndim = nd;
    if (shape)
      for (int i = 0; i < nd && i < 5; i++) shape[i] = (int64_t)dims[i];
    H5Sclose(sp);
    H5Dclose(d);
  }
  if (data == NULL) fprintf(stderr, "fixture %s: dataset %s missing or unreadable\n", file, dataset);
  H5Fclose(f);
  return data;
}

float *t2s_fixture_read_f32(const char *file, const char *dataset, int64_t *numel, int *ndim,
                            int64_t *shape) {
  return read_all(file, dataset, H5T_NATIVE_FLOAT, 4, numel, ndim, shape);
}

uint8_t *t2s_fixture_read_u8(const char *file, const char *dataset, int64_t *numel) {
  return read_all(file, dataset, H5T_NATIVE_UINT8, 1, numel, NULL, NULL);
}

static int read_attr(const char *file, const char *obj, const char *attr, hid_t type, void *out, int max) {
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) return 0;
  int n = 0;
  hid_t a = H5Aopen_by_name(f, obj, attr, H5P_DEFAULT, H5P_DEFAULT);
  if (a >= 0) {
    hid_t sp = H5Aget_space(a);
    hssize_t count = H5Sget_simple_extent_npoints(sp);
    if (count >= 1 && count <= max && H5Aread(a, type, out) >= 0) n = (int)count;
    H5Sclose(sp);
    H5Aclose(a);
  }
  H5Fclose(f);
  return n;
}

double t2s_fixture_attr(const char *file, const char *obj, const char *attr) {
  double v = NAN;
  return read_attr(file, obj, attr, H5T_NATIVE_DOUBLE, &v, 1) ? v : NAN;
}

int t2s_fixture_attr_ints(const char *file, const char *obj, const char *attr, int *out, int max) {
  return read_attr(file, obj, attr, H5T_NATIVE_INT, out, max);
}

double t2s_max_rel_err(const float *a, const float *b, int64_t n, double floor) {
  double worst = 0.0;
  for (int64_t i = 0; i < n; i++) {
    double e = fabs((double)a[i] - b[i]) / fmax(fabs((double)b[i]), floor);
    if (!(e <= worst)) worst = e;  /* NaN propagates as the worst */
  }
  return worst;
}

int t2s_fixture_batch(const char *file, t2s_tensor *image, t2s_tensor *label) {
  int64_t ishape[5] = {0}, n = 0;
  int nd = 0;
  float *img = t2s_fixture_read_f32(file, "/input/image", &n, &nd, ishape);
  uint8_t *lbl = t2s_fixture_read_u8(file, "/input/label", &n);
  if (img == NULL || lbl == NULL || nd != 4) {
    free(img);
    free(lbl);
    return 0;
  }
  t2s_tensor_init(image, T2S_F32, T2S_DEV_CPU, 4, ishape, img);
  int64_t lshape[3] = {ishape[0], ishape[2], ishape[3]};
  t2s_tensor_init(label, T2S_U8, T2S_DEV_CPU, 3, lshape, lbl);
  return 1;
}

t2s_tensor *t2s_fixture_seg_loss(t2s_ctx *ctx, t2s_tensor *logits, t2s_tensor *label) {
  t2s_tensor *up = t2s_resize_bilinear(ctx, logits, (int)label->shape[1], (int)label->shape[2], 0);
  t2s_ce_args ce = {255, T2S_CE_MEAN_VALID, 0};
  return t2s_cross_entropy(ctx, up, label, NULL, NULL, &ce);
}
