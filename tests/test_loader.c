// ctest-labels: unit
/* Prefetching loader: batches are byte-identical for 0, 1 and 3 workers and any
 * ring depth, equal to the closed-form image augmented directly, equal between
 * 2 ranks x B and 1 rank x 2B, unchanged by jumps (resume); a corrupt chunk and a
 * missing shard reach the consumer with the file name. */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/loader.h"
#include "tests/harness.h"

enum { W = 48, H = 40, CLASSES = 4, B = 3, ITERS = 8 };
static char g_dir[256];

static uint8_t pixel(int i, int y, int x, int c) { return (uint8_t)((29 * i + 7 * y + 13 * x + 101 * c) % 256); }
static uint8_t label_of(int i, int y, int x) {
  int v = (i + y / 5 + x / 7) % (CLASSES + 1);
  return (uint8_t)(v == CLASSES ? 255 : v);
}
static void fill(int i, uint8_t *rgb, uint8_t *lab) {
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) {
      for (int c = 0; c < 3; c++) rgb[(y * W + x) * 3 + c] = pixel(i, y, x, c);
      lab[y * W + x] = label_of(i, y, x);
    }
}

static int write_shard(const char *path, int first, int n, int labelled) {
  t2s_shard_meta m;
  memset(&m, 0, sizeof m);
  m.num_classes = CLASSES;
  m.ignore_index = 255;
  for (int c = 0; c < CLASSES; c++) snprintf(m.class_names[c], T2S_CLASS_NAME_MAX, "c%d", c);
  snprintf(m.domain, sizeof m.domain, "loader-test");
  snprintf(m.split, sizeof m.split, "train");
  m.has_label = labelled;
  m.height = H;
  m.width = W;
  t2s_error err = {0};
  t2s_shard_writer *w = t2s_shard_writer_open(path, &m, 1, &err);
  if (w == NULL) return fprintf(stderr, "%s\n", err.msg), 0;
  static uint8_t rgb[H * W * 3], lab[H * W];
  for (int i = 0; i < n; i++) {
    char name[32];
    snprintf(name, sizeof name, "img%d", first + i);
    fill(first + i, rgb, lab);
    if (t2s_shard_writer_add(w, name, rgb, labelled ? lab : NULL, &err) != T2S_OK) break;
  }
  if (err.status != T2S_OK || t2s_shard_writer_commit(w, &err) != T2S_OK) {
    fprintf(stderr, "%s\n", err.msg);
    return 0;
  }
  return 1;
}

static t2s_loader_cfg cfg_of(int workers, int prefetch, int world, int rank, int b) {
  t2s_loader_cfg c = t2s_loader_cfg_default();
  c.aug.crop_w = 32;
  c.aug.crop_h = 24;
  c.samples_per_gpu = b;
  c.workers = workers;
  c.prefetch = prefetch;
  c.world_size = world;
  c.rank = rank;
  c.seed = 17;
  c.stream = 0;
  return c;
}

typedef struct batches {
  float *img;
  uint8_t *lab;
  int64_t idx[ITERS * 8];
} batches;

/* Reads iterations `order[0..n)` and stores batch `order[i]` at its iteration. */
static void collect(t2s_dataset *ds, t2s_loader_cfg c, const int *order, int n, batches *out) {
  size_t img = (size_t)c.samples_per_gpu * 3 * 24 * 32, lab = (size_t)c.samples_per_gpu * 24 * 32;
  t2s_loader *L = NULL;
  t2s_error err = {0};
  CHECK_MSG(t2s_loader_open(&L, ds, &c, &err) == T2S_OK, "%s", err.msg);
  if (L == NULL) return;
  for (int i = 0; i < n; i++) {
    t2s_batch b;
    int t = order[i];
    CHECK_MSG(t2s_loader_next(L, t, &b, &err) == T2S_OK, "%s", err.msg);
    CHECK(b.n == c.samples_per_gpu && b.h == 24 && b.w == 32 && b.iteration == t && b.labels != NULL);
    memcpy(out->img + t * img, b.images, img * sizeof(float));
    memcpy(out->lab + t * lab, b.labels, lab);
    memcpy(out->idx + t * c.samples_per_gpu, b.indices, sizeof(int64_t) * c.samples_per_gpu);
  }
  t2s_loader_close(L);
}

static batches alloc_batches(int b) {
  batches r;
  r.img = calloc((size_t)ITERS * b * 3 * 24 * 32, sizeof(float));
  r.lab = calloc((size_t)ITERS * b * 24 * 32, 1);
  return r;
}

static void test_determinism(t2s_dataset *ds) {
  const int in_order[ITERS] = {0, 1, 2, 3, 4, 5, 6, 7};
  const int jumps[ITERS] = {0, 1, 2, 6, 7, 3, 4, 5}; /* a restart at 6 and one back at 3 */
  size_t nimg = (size_t)ITERS * B * 3 * 24 * 32, nlab = (size_t)ITERS * B * 24 * 32;
  batches ref = alloc_batches(B);
  collect(ds, cfg_of(0, 0, 1, 0, B), in_order, ITERS, &ref);
  /* the reference against the closed form: the image augmented directly */
  t2s_augment_cfg aug = cfg_of(0, 0, 1, 0, B).aug;
  static uint8_t rgb[H * W * 3], lab[H * W];
  float *img = malloc(sizeof(float) * 3 * 24 * 32);
  uint8_t *lb = malloc(24 * 32);
  t2s_aug_scratch sc = {0};
  int bad = 0;
  for (int t = 0; t < ITERS; t++)
    for (int k = 0; k < B; k++) {
      int64_t i = ref.idx[t * B + k];
      fill((int)i, rgb, lab);
      t2s_aug_key key = {17, 0, t, k};
      t2s_error err = {0};
      t2s_augment_sample(&aug, key, rgb, lab, W, H, -1, img, lb, &sc, NULL, &err);
      bad += memcmp(img, ref.img + ((size_t)t * B + k) * 3 * 24 * 32, sizeof(float) * 3 * 24 * 32) != 0;
      bad += memcmp(lb, ref.lab + ((size_t)t * B + k) * 24 * 32, 24 * 32) != 0;
    }
  CHECK_MSG(bad == 0, "%d samples differ from the closed-form image augmented directly", bad);
  t2s_aug_scratch_free(&sc);
  free(img);
  free(lb);
  const int workers[3][2] = {{1, 0}, {3, 0}, {2, 5}};
  for (int v = 0; v < 3; v++)
    for (int o = 0; o < 2; o++) {
      batches got = alloc_batches(B);
      collect(ds, cfg_of(workers[v][0], workers[v][1], 1, 0, B), o ? jumps : in_order, ITERS, &got);
      CHECK_MSG(memcmp(got.img, ref.img, nimg * sizeof(float)) == 0 && memcmp(got.lab, ref.lab, nlab) == 0,
                "%d workers, ring %d, %s: batches differ from the synchronous loader", workers[v][0],
                workers[v][1], o ? "with jumps" : "in order");
      free(got.img);
      free(got.lab);
    }
  /* rank equivalence: ranks 0 and 1 of 2 x 2 are the halves of 1 x 4 */
  batches one = alloc_batches(4), r0 = alloc_batches(2), r1 = alloc_batches(2);
  collect(ds, cfg_of(1, 0, 1, 0, 4), in_order, ITERS, &one);
  collect(ds, cfg_of(2, 0, 2, 0, 2), in_order, ITERS, &r0);
  collect(ds, cfg_of(0, 0, 2, 1, 2), in_order, ITERS, &r1);
  size_t s = 3 * 24 * 32;
  for (int t = 0; t < ITERS; t++) {
    CHECK(memcmp(one.img + (size_t)t * 4 * s, r0.img + (size_t)t * 2 * s, 2 * s * sizeof(float)) == 0);
    CHECK(memcmp(one.img + ((size_t)t * 4 + 2) * s, r1.img + (size_t)t * 2 * s, 2 * s * sizeof(float)) == 0);
    CHECK(memcmp(one.lab + ((size_t)t * 4 + 2) * 24 * 32, r1.lab + (size_t)t * 2 * 24 * 32, 2 * 24 * 32) == 0);
  }
  free(one.img); free(one.lab); free(r0.img); free(r0.lab); free(r1.img); free(r1.lab);
  free(ref.img);
  free(ref.lab);
}

/* Overwrites the zlib header of image `i`'s stored chunk: inflate must refuse it. */
static int corrupt_chunk(const char *path, int i) {
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t d = f >= 0 ? H5Dopen2(f, "image", H5P_DEFAULT) : -1;
  hsize_t off[4] = {(hsize_t)i, 0, 0, 0};
  haddr_t addr = 0;
  hsize_t size = 0;
  unsigned mask = 0;
  herr_t st = d >= 0 ? H5Dget_chunk_info_by_coord(d, off, &mask, &addr, &size) : -1;
  if (d >= 0) H5Dclose(d);
  if (f >= 0) H5Fclose(f);
  if (st < 0) return 0;
  FILE *fp = fopen(path, "r+b");
  if (fp == NULL) return 0;
  unsigned char junk[4] = {0xff, 0xff, 0xff, 0xff};
  int ok = fseek(fp, (long)addr, SEEK_SET) == 0 && fwrite(junk, 1, 4, fp) == 4;
  return fclose(fp) == 0 && ok;
}

static void test_errors(void) {
  char bad[512], pat[1][512];
  snprintf(bad, sizeof bad, "%s/bad-00000-of-00001.h5", g_dir);
  CHECK(write_shard(bad, 0, 6, 1));
  CHECK(corrupt_chunk(bad, 4));
  snprintf(pat[0], sizeof pat[0], "%s", bad);
  t2s_loader_cfg c = cfg_of(2, 0, 1, 0, 2);
  t2s_loader *L = NULL;
  t2s_error err = {0};
  CHECK_MSG(t2s_loader_open_shards(&L, (const char(*)[512])pat, 1, "data.source.shards", &c, &err) == T2S_OK, "%s", err.msg);
  int failed = 0;
  for (int t = 0; L != NULL && t < 6; t++) {
    t2s_batch b;
    t2s_error e = {0};
    int hit = 0;
    for (int k = 0; k < 2; k++) hit |= t2s_sampler_index(t2s_loader_sampler(L), t, 0, k) == 4;
    t2s_status st = t2s_loader_next(L, t, &b, &e);
    CHECK_MSG((st != T2S_OK) == hit, "iteration %d: status %d, reads image 4: %d (%s)", t, st, hit, e.msg);
    if (st != T2S_OK) {
      failed++;
      CHECK_MSG(strstr(e.msg, bad) != NULL && strstr(e.msg, "iteration") != NULL, "%s", e.msg);
      if (failed == 1) printf("corrupt chunk: %s\n", e.msg);
    }
  }
  CHECK(failed > 0);
  t2s_loader_close(L);
  /* a missing shard: the rank and the file in the message */
  snprintf(pat[0], sizeof pat[0], "%s/missing-00000-of-00001.h5", g_dir);
  c.rank = 1;
  c.world_size = 2;
  err = (t2s_error){0};
  CHECK(t2s_loader_open_shards(&L, (const char(*)[512])pat, 1, "data.source.shards", &c, &err) != T2S_OK && L == NULL);
  CHECK_MSG(strstr(err.msg, "rank 1 of 2") != NULL && strstr(err.msg, "missing-00000") != NULL, "%s", err.msg);
  printf("missing shard: %s\n", err.msg);
  /* labels asked of unlabelled shards */
  char unl[512];
  snprintf(unl, sizeof unl, "%s/unl-00000-of-00001.h5", g_dir);
  CHECK(write_shard(unl, 0, 3, 0));
  snprintf(pat[0], sizeof pat[0], "%s", unl);
  err = (t2s_error){0};
  CHECK(t2s_loader_open_shards(&L, (const char(*)[512])pat, 1, "data.target.shards", &c, &err) == T2S_ERR_INVALID);
  CHECK_MSG(strstr(err.msg, "unlabelled") != NULL, "%s", err.msg);
  c.labels = 0;
  c.aug.cat_max_ratio = 1.0;
  err = (t2s_error){0};
  CHECK_MSG(t2s_loader_open_shards(&L, (const char(*)[512])pat, 1, "data.target.shards", &c, &err) == T2S_OK, "%s", err.msg);
  t2s_batch b;
  CHECK(L != NULL && t2s_loader_next(L, 0, &b, &err) == T2S_OK && b.labels == NULL);
  t2s_loader_close(L);
  remove(bad);
  remove(unl);
}

int main(void) {
  snprintf(g_dir, sizeof g_dir, "/tmp/t2s_test_loader_XXXXXX");
  if (mkdtemp(g_dir) == NULL) return 1;
  char p0[512], p1[512], pat[1][512];
  snprintf(p0, sizeof p0, "%s/src-00000-of-00002.h5", g_dir);
  snprintf(p1, sizeof p1, "%s/src-00001-of-00002.h5", g_dir);
  CHECK(write_shard(p0, 0, 7, 1) && write_shard(p1, 7, 5, 1));
  snprintf(pat[0], sizeof pat[0], "%s/src-*.h5", g_dir);
  t2s_dataset ds;
  t2s_error err = {0};
  if (t2s_dataset_open(&ds, (const char(*)[512])pat, 1, "data.source.shards", &err) != T2S_OK) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  CHECK(ds.count == 12);
  test_determinism(&ds);
  t2s_dataset_close(&ds);
  test_errors();
  remove(p0);
  remove(p1);
  rmdir(g_dir);
  return t2s_test_finish("test_loader");
}
