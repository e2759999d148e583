// ctest-labels: unit
/* The synthetic street-scene generator (data/synth.c): determinism per (seed,
 * domain, index), label sanity and layout, class frequencies and their mild shift
 * between the domains, and an appearance shift large enough that colour learnt on
 * the source does not transfer (a nearest-class-mean colour classifier). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/synth.h"
#include "tests/harness.h"

#define NC T2S_SYNTH_NUM_CLASSES
#define N_IMAGES 50

typedef struct domain_stats {
  double pixels[NC];
  double rgb_sum[NC][3];
  double total;
} domain_stats;

static void test_determinism(void) {
  t2s_synth_cfg cfg = {96, 64, 7};
  size_t n = 96 * 64;
  uint8_t *a = malloc(3 * n), *b = malloc(3 * n), *la = malloc(n), *lb = malloc(n);
  t2s_error err = {0};
  for (int d = 0; d < 2; d++) {
    CHECK(t2s_synth_draw(&cfg, d, 3, a, la, &err) == T2S_OK);
    /* Other images in between must not change image 3 (no hidden state). */
    CHECK(t2s_synth_draw(&cfg, d, 9, b, lb, &err) == T2S_OK);
    CHECK(t2s_synth_draw(&cfg, d, 3, b, lb, &err) == T2S_OK);
    CHECK(memcmp(a, b, 3 * n) == 0 && memcmp(la, lb, n) == 0);
    CHECK(t2s_synth_draw(&cfg, d, 3, b, NULL, &err) == T2S_OK); /* image without its label */
    CHECK(memcmp(a, b, 3 * n) == 0);
    CHECK(t2s_synth_draw(&cfg, d, 4, b, lb, &err) == T2S_OK);
    CHECK(memcmp(a, b, 3 * n) != 0 && memcmp(la, lb, n) != 0);
    t2s_synth_cfg other = cfg;
    other.seed = 8;
    CHECK(t2s_synth_draw(&other, d, 3, b, lb, &err) == T2S_OK);
    CHECK(memcmp(a, b, 3 * n) != 0 && memcmp(la, lb, n) != 0);
  }
  /* Same index, other domain: another scene, not a recoloured copy. */
  CHECK(t2s_synth_draw(&cfg, T2S_SYNTH_SOURCE, 5, a, la, &err) == T2S_OK);
  CHECK(t2s_synth_draw(&cfg, T2S_SYNTH_TARGET, 5, b, lb, &err) == T2S_OK);
  CHECK(memcmp(la, lb, n) != 0);
  free(a), free(b), free(la), free(lb);
}

static void test_errors(void) {
  t2s_synth_cfg cfg = {8, 64, 1};
  uint8_t rgb[8 * 64 * 3];
  t2s_error err = {0};
  CHECK(t2s_synth_draw(&cfg, T2S_SYNTH_SOURCE, 0, rgb, NULL, &err) == T2S_ERR_INVALID);
  CHECK(strstr(err.msg, "8 x 64") != NULL);
  CHECK(t2s_synth_class_count() == NC);
  CHECK(strcmp(t2s_synth_class_name(T2S_SYNTH_TRAFFIC_LIGHT), "traffic light") == 0);
  CHECK(t2s_synth_class_name(NC) == NULL);
  CHECK(strcmp(t2s_synth_domain_name(T2S_SYNTH_TARGET), "synthetic_target") == 0);
}

/* Draws N_IMAGES of a domain; checks every label and the street layout: the
 * horizon lies in rows 0.36 H .. 0.48 H, so no road above 0.3 H and no sky below
 * 0.75 H (the ground covers everything under the horizon). */
static void collect(const t2s_synth_cfg *cfg, t2s_synth_domain d, domain_stats *st) {
  int W = cfg->width, H = cfg->height;
  uint8_t *rgb = malloc((size_t)W * H * 3), *lab = malloc((size_t)W * H);
  memset(st, 0, sizeof *st);
  int bad_label = 0, road_high = 0, sky_low = 0;
  t2s_error err = {0};
  for (int i = 0; i < N_IMAGES; i++) {
    CHECK(t2s_synth_draw(cfg, d, (uint64_t)i, rgb, lab, &err) == T2S_OK);
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++) {
        int p = y * W + x, c = lab[p];
        if (c >= NC) {
          bad_label++;
          continue;
        }
        road_high += c == T2S_SYNTH_ROAD && y < 3 * H / 10;
        sky_low += c == T2S_SYNTH_SKY && y >= 3 * H / 4;
        st->pixels[c] += 1;
        for (int k = 0; k < 3; k++) st->rgb_sum[c][k] += rgb[3 * p + k];
      }
  }
  st->total = (double)N_IMAGES * W * H;
  CHECK_MSG(bad_label == 0, "domain %d: %d labels >= %d", d, bad_label, NC);
  CHECK_MSG(road_high == 0 && sky_low == 0, "domain %d: road above 0.3 H: %d px, sky below 0.75 H: %d px",
            d, road_high, sky_low);
  free(rgb);
  free(lab);
}

static void test_frequencies(const domain_stats *s, const domain_stats *t) {
  for (int d = 0; d < 2; d++) {
    const domain_stats *st = d ? t : s;
    int present = 0;
    for (int c = 0; c < NC; c++) present += st->pixels[c] > 0;
    CHECK_MSG(present >= 8, "domain %d: only %d classes appear in %d images", d, present, N_IMAGES);
    /* The rare (small) classes exist but cover little. */
    const int rare[3] = {T2S_SYNTH_TRAFFIC_LIGHT, T2S_SYNTH_TRAFFIC_SIGN, T2S_SYNTH_PERSON};
    for (int i = 0; i < 3; i++) {
      double f = st->pixels[rare[i]] / st->total;
      CHECK_MSG(f > 0.0 && f < 0.02, "domain %d: %s covers %.4f of the pixels", d,
                t2s_synth_class_name(rare[i]), f);
    }
  }
  printf("class            source   target\n");
  for (int c = 0; c < NC; c++) {
    double fs = s->pixels[c] / s->total, ft = t->pixels[c] / t->total;
    printf("%-14s %7.4f  %7.4f\n", t2s_synth_class_name(c), fs, ft);
    if (fs > 0.03) /* a common class: the label shift is mild */
      CHECK_MSG(ft / fs > 0.5 && ft / fs < 2.0, "%s: target/source frequency %.3f", t2s_synth_class_name(c),
                ft / fs);
  }
  /* ... and goes the designed way: fewer cars, more vegetation in the target. */
  CHECK(t->pixels[T2S_SYNTH_CAR] / t->total < s->pixels[T2S_SYNTH_CAR] / s->total);
  CHECK(t->pixels[T2S_SYNTH_VEGETATION] / t->total > s->pixels[T2S_SYNTH_VEGETATION] / s->total);
}

static void class_means(const domain_stats *st, double mean[NC][3]) {
  for (int c = 0; c < NC; c++)
    for (int k = 0; k < 3; k++) mean[c][k] = st->pixels[c] > 0 ? st->rgb_sum[c][k] / st->pixels[c] : 1e9;
}

/* Pixel accuracy on the target images of "nearest class mean colour", with the
 * means of one domain's statistics. */
static double nearest_mean_accuracy(const t2s_synth_cfg *cfg, double mean[NC][3]) {
  int W = cfg->width, H = cfg->height;
  uint8_t *rgb = malloc((size_t)W * H * 3), *lab = malloc((size_t)W * H);
  double hit = 0, all = 0;
  for (int i = 0; i < 10; i++) {
    t2s_synth_draw(cfg, T2S_SYNTH_TARGET, T2S_SYNTH_VAL_INDEX + (uint64_t)i, rgb, lab, NULL);
    for (int p = 0; p < W * H; p++) {
      int best = 0;
      double bd = 1e30;
      for (int c = 0; c < NC; c++) {
        double d = 0;
        for (int k = 0; k < 3; k++) d += (rgb[3 * p + k] - mean[c][k]) * (rgb[3 * p + k] - mean[c][k]);
        if (d < bd) bd = d, best = c;
      }
      hit += best == lab[p];
      all += 1;
    }
  }
  free(rgb);
  free(lab);
  return hit / all;
}

static void test_appearance(const t2s_synth_cfg *cfg, const domain_stats *s, const domain_stats *t) {
  double ms[NC][3], mt[NC][3];
  class_means(s, ms);
  class_means(t, mt);
  double d2 = 0;
  for (int k = 0; k < 3; k++) d2 += (ms[T2S_SYNTH_ROAD][k] - mt[T2S_SYNTH_ROAD][k]) * (ms[T2S_SYNTH_ROAD][k] - mt[T2S_SYNTH_ROAD][k]);
  printf("road mean colour: source (%.0f %.0f %.0f), target (%.0f %.0f %.0f), distance %.1f\n",
         ms[0][0], ms[0][1], ms[0][2], mt[0][0], mt[0][1], mt[0][2], sqrt(d2));
  CHECK_MSG(sqrt(d2) > 40.0, "road colour differs by only %.1f levels between the domains", sqrt(d2));
  double acc_s = nearest_mean_accuracy(cfg, ms), acc_t = nearest_mean_accuracy(cfg, mt);
  printf("nearest-class-mean colour on target val: source means %.3f, target means %.3f\n", acc_s, acc_t);
  CHECK_MSG(acc_t - acc_s > 0.15, "source colours transfer too well: %.3f vs %.3f", acc_s, acc_t);
}

int main(void) {
  test_determinism();
  test_errors();
  t2s_synth_cfg cfg = {160, 120, 2024};
  domain_stats *s = malloc(sizeof *s), *t = malloc(sizeof *t);
  collect(&cfg, T2S_SYNTH_SOURCE, s);
  collect(&cfg, T2S_SYNTH_TARGET, t);
  test_frequencies(s, t);
  test_appearance(&cfg, s, t);
  free(s);
  free(t);
  return t2s_test_finish("test_synth");
}
