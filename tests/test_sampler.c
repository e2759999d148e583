// ctest-labels: unit
/* Distributed sampler: each epoch is a permutation, ranks read disjoint images,
 * 2 ranks x B read what 1 rank x 2B reads, a resumed sampler reads the same
 * indices, and rare class sampling matches P(c) = softmax((1 - f_c) / T)
 * computed here independently. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/sampler.h"
#include "tests/harness.h"

static t2s_sampler make(int64_t n, uint64_t seed, int world, int rank, int B) {
  t2s_sampler_cfg c = {.seed = seed, .stream = 0, .world_size = world, .rank = rank,
                       .samples_per_gpu = B};
  t2s_sampler s;
  t2s_error err = {0};
  CHECK_MSG(t2s_sampler_init(&s, &c, n, NULL, 0, &err) == T2S_OK, "%s", err.msg);
  return s;
}

static void test_permutations(void) {
  const int64_t sizes[] = {1, 2, 3, 7, 16, 17, 100, 1000, 4099};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    int64_t n = sizes[i];
    t2s_sampler s = make(n, 42, 1, 0, 1);
    char *seen = calloc((size_t)n, 1);
    for (int64_t e = 0; e < 3; e++) {
      memset(seen, 0, (size_t)n);
      int64_t fixed = 0;
      for (int64_t o = 0; o < n; o++) {
        int64_t v = t2s_sampler_permute(&s, e, o);
        CHECK_MSG(v >= 0 && v < n && !seen[v], "n %lld epoch %lld: offset %lld -> %lld",
                  (long long)n, (long long)e, (long long)o, (long long)v);
        if (v >= 0 && v < n) seen[v] = 1;
        fixed += v == o;
      }
      /* a shuffle, not the identity: a random permutation has ~1 fixed point */
      if (n >= 100) CHECK_MSG(fixed < 10, "n %lld: %lld fixed points", (long long)n, (long long)fixed);
    }
    if (n >= 100) { /* epochs differ */
      int same = 0;
      for (int64_t o = 0; o < n; o++) same += t2s_sampler_permute(&s, 0, o) == t2s_sampler_permute(&s, 1, o);
      CHECK_MSG(same < n / 10, "epochs 0 and 1 agree at %d of %lld offsets", same, (long long)n);
    }
    free(seen);
    t2s_sampler_free(&s);
  }
}

/* world 3 x B 2 over 60 images: iterations 0..9 are epoch 0, every image once. */
static void test_disjoint_ranks(void) {
  const int W = 3, B = 2, N = 60;
  t2s_sampler r[3];
  for (int k = 0; k < W; k++) r[k] = make(N, 7, W, k, B);
  for (int epoch = 0; epoch < 2; epoch++) {
    int count[60] = {0};
    for (int t = epoch * 10; t < epoch * 10 + 10; t++)
      for (int k = 0; k < W; k++)
        for (int b = 0; b < B; b++) count[t2s_sampler_index(&r[k], t, k, b)]++;
    for (int i = 0; i < N; i++) CHECK_MSG(count[i] == 1, "epoch %d: image %d read %d times", epoch, i, count[i]);
  }
  for (int k = 0; k < W; k++) t2s_sampler_free(&r[k]);
}

static void test_rank_equivalence_and_resume(void) {
  const int N = 37; /* epochs straddle global batches */
  t2s_sampler two0 = make(N, 3, 2, 0, 2), two1 = make(N, 3, 2, 1, 2), one = make(N, 3, 1, 0, 4);
  for (int t = 0; t < 50; t++)
    for (int k = 0; k < 2; k++) {
      CHECK(t2s_sampler_index(&two0, t, 0, k) == t2s_sampler_index(&one, t, 0, k));
      CHECK(t2s_sampler_index(&two1, t, 1, k) == t2s_sampler_index(&one, t, 0, 2 + k));
    }
  /* A fresh sampler asked from iteration 23 on reads what the first one read. */
  t2s_sampler fresh = make(N, 3, 2, 1, 2);
  t2s_sampler_state st = t2s_sampler_state_at(&two1, 23);
  t2s_error err = {0};
  CHECK_MSG(t2s_sampler_check_resume(&fresh, &st, "source", &err) == T2S_OK, "%s", err.msg);
  for (int64_t t = st.iteration; t < 40; t++)
    for (int k = 0; k < 2; k++) CHECK(t2s_sampler_index(&fresh, t, 1, k) == t2s_sampler_index(&two1, t, 1, k));
  /* another global batch or data set is refused with a message */
  t2s_sampler other = make(N, 3, 4, 1, 2);
  CHECK(t2s_sampler_check_resume(&other, &st, "source", &err) == T2S_ERR_INVALID);
  CHECK(strstr(err.msg, "global batch 4") != NULL && strstr(err.msg, "source") != NULL);
  /* the seed matters */
  t2s_sampler seed9 = make(N, 9, 1, 0, 4);
  int same = 0;
  for (int t = 0; t < 20; t++)
    for (int k = 0; k < 4; k++) same += t2s_sampler_index(&seed9, t, 0, k) == t2s_sampler_index(&one, t, 0, k);
  CHECK_MSG(same < 20, "seeds 3 and 9 agree at %d of 80 positions", same);
  t2s_sampler_free(&two0); t2s_sampler_free(&two1); t2s_sampler_free(&one);
  t2s_sampler_free(&fresh); t2s_sampler_free(&other); t2s_sampler_free(&seed9);
}

/* 40 images, 5 classes. Class totals 7000, 6500, 6000, 5500 per image on average
 * (fractions 0.28 .. 0.22 of the labelled pixels, up to class 4's 100 pixels);
 * class 3 exceeds 3000 pixels only in images i % 4 == 0; class 4 never qualifies. */
static void test_rare_class(void) {
  enum { N = 40, C = 5 };
  static int64_t cp[N * C];
  for (int i = 0; i < N; i++) {
    cp[i * C + 0] = 7000;
    cp[i * C + 1] = 6500;
    cp[i * C + 2] = 6000;
    cp[i * C + 3] = i % 4 == 0 ? 19000 : 1000;
    cp[i * C + 4] = i == 0 ? 100 : 0;
  }
  double tot[C] = {0}, all = 0;
  for (int i = 0; i < N; i++)
    for (int c = 0; c < C; c++) tot[c] += (double)cp[i * C + c], all += (double)cp[i * C + c];
  double p[C] = {0}, z = 0;
  for (int c = 0; c < 4; c++) z += p[c] = exp((1.0 - tot[c] / all) / 0.01 - 80.0);
  for (int c = 0; c < 4; c++) p[c] /= z; /* class 4: no image with > 3000 pixels */
  t2s_sampler_cfg cfg = {.seed = 5, .stream = 0, .world_size = 2, .rank = 0, .samples_per_gpu = 2,
                         .rare_class = 1};
  t2s_sampler s, s1;
  t2s_error err = {0};
  CHECK_MSG(t2s_sampler_init(&s, &cfg, N, cp, C, &err) == T2S_OK, "%s", err.msg);
  cfg.world_size = 1;
  cfg.samples_per_gpu = 4;
  CHECK_MSG(t2s_sampler_init(&s1, &cfg, N, cp, C, &err) == T2S_OK, "%s", err.msg);
  const int M = 100000;
  int hits[C] = {0}, img3[N] = {0};
  for (int m = 0; m < M; m++) {
    int cls = -1;
    int64_t i = t2s_sampler_index_global(&s, m / 4, m % 4, &cls);
    CHECK(cls >= 0 && cls < 4);
    if (cls < 0 || cls >= 4) continue;
    hits[cls]++;
    CHECK_MSG(cp[i * C + cls] > 3000, "image %lld drawn for class %d has %lld pixels of it",
              (long long)i, cls, (long long)cp[i * C + cls]);
    if (cls == 3) img3[i]++;
    if (m < 400) CHECK(i == t2s_sampler_index_global(&s1, m / 4, m % 4, NULL));
  }
  for (int c = 0; c < C; c++) {
    double f = (double)hits[c] / M, sd = sqrt(p[c] * (1 - p[c]) / M);
    CHECK_MSG(fabs(f - p[c]) < 5 * sd + 1e-4, "class %d: drawn %.4f, P(c) %.4f", c, f, p[c]);
  }
  /* the image given class 3 is uniform over the 10 qualifying images */
  for (int i = 0; i < N; i += 4) {
    double expect = hits[3] / 10.0;
    CHECK_MSG(fabs(img3[i] - expect) < 0.1 * expect, "image %d: %d of %d", i, img3[i], hits[3]);
  }
  t2s_sampler_free(&s);
  t2s_sampler_free(&s1);
  /* no class with a qualifying image: a clear error */
  cfg.rcs_min_pixels = 1000000;
  CHECK(t2s_sampler_init(&s, &cfg, N, cp, C, &err) == T2S_ERR_INVALID);
  CHECK(strstr(err.msg, "rare class") != NULL);
}

int main(void) {
  test_permutations();
  test_disjoint_ranks();
  test_rank_equivalence_and_resume();
  test_rare_class();
  return t2s_test_finish("test_sampler");
}
