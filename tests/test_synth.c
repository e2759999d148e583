// ctest-labels: unit
/* The synthetic street-scene generator (data/synth.c): determinism per (seed,
 * domain, index), label sanity and layout, class frequencies and their mild shift
 * between the domains, and an appearance shift large enough that colour learnt on
 * the source does not transfer (a nearest-class-mean colour classifier). The DG
 * styles: deterministic, their own scenes, told apart from each other and from both
 * domains by mean colour, contrast and high-frequency energy, each in its designed
 * direction, storm the hardest by own-domain colour separability. */
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
  t2s_synth_cfg cfg = {96, 64, 7, 0};
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
  t2s_synth_cfg cfg = {8, 64, 1, 0};
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

/* ---- DG styles ---- */

/* Image statistics of one look: mean luma and colour cast, contrast (sd of luma),
 * high-frequency energy (mean |horizontal luma difference|: noise and texture up,
 * blur down) and own-domain nearest-class-mean colour accuracy (how well colour alone
 * separates the classes: the lower, the harder the condition). */
typedef struct look_stats {
  double luma, blue_red, contrast, hf, ncm;
  double pixels[NC];
} look_stats;

#define STYLE_IMAGES 12

/* style -1: target val images; -2: source; else the DG style. */
static void look(const t2s_synth_cfg *cfg, int style, look_stats *ls) {
  int W = cfg->width, H = cfg->height;
  size_t n = (size_t)W * H;
  uint8_t *rgb = malloc(STYLE_IMAGES * n * 3), *lab = malloc(STYLE_IMAGES * n);
  t2s_error err = {0};
  memset(ls, 0, sizeof *ls);
  double s1 = 0, s2 = 0, br = 0, hf = 0, sum[NC][3] = {{0}};
  for (int i = 0; i < STYLE_IMAGES; i++) {
    uint8_t *im = rgb + i * n * 3, *lb = lab + i * n;
    t2s_status st = style >= 0 ? t2s_synth_draw_style(cfg, style, (uint64_t)i, im, lb, &err)
                    : t2s_synth_draw(cfg, style == -1 ? T2S_SYNTH_TARGET : T2S_SYNTH_SOURCE,
                                     T2S_SYNTH_VAL_INDEX + (uint64_t)i, im, lb, &err);
    CHECK_MSG(st == T2S_OK, "%s", err.msg);
    for (size_t p = 0; p < n; p++) {
      double y = (im[3 * p] + im[3 * p + 1] + im[3 * p + 2]) / 3.0;
      s1 += y, s2 += y * y, br += im[3 * p + 2] - im[3 * p];
      if (p % (size_t)W != 0) hf += fabs(y - (im[3 * p - 3] + im[3 * p - 2] + im[3 * p - 1]) / 3.0);
      CHECK(lb[p] < NC);
      if (lb[p] >= NC) continue;
      ls->pixels[lb[p]]++;
      for (int k = 0; k < 3; k++) sum[lb[p]][k] += im[3 * p + k];
    }
  }
  double total = (double)STYLE_IMAGES * n;
  ls->luma = s1 / total;
  ls->contrast = sqrt(s2 / total - ls->luma * ls->luma);
  ls->blue_red = br / total;
  ls->hf = hf / ((double)STYLE_IMAGES * H * (W - 1));
  double hit = 0;
  for (size_t p = 0; p < STYLE_IMAGES * n; p++) {
    int best = 0;
    double bd = 1e30;
    for (int c = 0; c < NC; c++) {
      if (ls->pixels[c] == 0) continue;
      double d = 0;
      for (int k = 0; k < 3; k++) {
        double m = sum[c][k] / ls->pixels[c] - rgb[3 * p + k];
        d += m * m;
      }
      if (d < bd) bd = d, best = c;
    }
    hit += best == lab[p];
  }
  ls->ncm = hit / total;
  free(rgb);
  free(lab);
}

/* Two looks are told apart by at least one statistic, by a clear margin. */
static int distinct(const look_stats *a, const look_stats *b) {
  double cr = a->contrast > b->contrast ? a->contrast / b->contrast : b->contrast / a->contrast;
  double hr = a->hf > b->hf ? a->hf / b->hf : b->hf / a->hf;
  return fabs(a->luma - b->luma) > 15 || fabs(a->blue_red - b->blue_red) > 15 || cr > 1.3 || hr > 1.5;
}

static void test_styles(void) {
  CHECK(T2S_SYNTH_NUM_STYLES >= 3);
  CHECK(t2s_synth_style_find("storm") == 3 && t2s_synth_style_find("hail") == -1);
  CHECK(strcmp(t2s_synth_style_name(1), "night") == 0 && t2s_synth_style_name(4) == NULL);
  t2s_synth_cfg cfg = {96, 64, 7, 0};
  size_t n = 96 * 64;
  uint8_t *a = malloc(3 * n), *b = malloc(3 * n), *la = malloc(n), *lb = malloc(n);
  t2s_error err = {0};
  CHECK(t2s_synth_draw_style(&cfg, 4, 0, a, la, &err) == T2S_ERR_INVALID && strstr(err.msg, "style 4"));
  for (int k = 0; k < T2S_SYNTH_NUM_STYLES; k++) {
    /* determinism: image 3 is the same bytes, whatever was drawn before */
    CHECK(t2s_synth_draw_style(&cfg, k, 3, a, la, &err) == T2S_OK);
    CHECK(t2s_synth_draw_style(&cfg, (k + 1) % T2S_SYNTH_NUM_STYLES, 3, b, lb, &err) == T2S_OK);
    CHECK_MSG(memcmp(la, lb, n) != 0, "styles %d and %d drew the same scene", k, k + 1);
    CHECK(t2s_synth_draw_style(&cfg, k, 3, b, lb, &err) == T2S_OK);
    CHECK(memcmp(a, b, 3 * n) == 0 && memcmp(la, lb, n) == 0);
    /* its own scenes: not a repainted target image of the same index */
    CHECK(t2s_synth_draw(&cfg, T2S_SYNTH_TARGET, 3, b, lb, &err) == T2S_OK);
    CHECK(memcmp(la, lb, n) != 0);
  }
  free(a), free(b), free(la), free(lb);

  look_stats ls[2 + T2S_SYNTH_NUM_STYLES]; /* source, target, the styles */
  const char *names[2 + T2S_SYNTH_NUM_STYLES] = {"source", "target", "fog", "night", "snow", "storm"};
  for (int i = 0; i < 2 + T2S_SYNTH_NUM_STYLES; i++) {
    look(&cfg, i == 0 ? -2 : i == 1 ? -1 : i - 2, &ls[i]);
    printf("%-7s luma %6.1f  blue-red %6.1f  contrast %5.1f  hf %5.2f  ncm %.3f\n", names[i],
           ls[i].luma, ls[i].blue_red, ls[i].contrast, ls[i].hf, ls[i].ncm);
  }
  for (int i = 0; i < 2 + T2S_SYNTH_NUM_STYLES; i++)
    for (int j = i + 1; j < 2 + T2S_SYNTH_NUM_STYLES; j++)
      CHECK_MSG(distinct(&ls[i], &ls[j]), "%s and %s look alike", names[i], names[j]);
  const look_stats *t = &ls[1], *fog = &ls[2], *night = &ls[3], *snow = &ls[4], *storm = &ls[5];
  CHECK_MSG(fog->hf < 0.6 * t->hf && fog->contrast < 0.85 * t->contrast && fog->luma > t->luma + 10,
            "fog should be blurred, flat and light");
  CHECK_MSG(night->luma < 0.5 * t->luma && night->blue_red > t->blue_red + 8, "night should be dark and blue");
  CHECK_MSG(snow->luma > t->luma + 40 && snow->hf > 2.0 * t->hf, "snow should be bright and speckled");
  double easiest_other = 1.0;
  for (int k = 2; k < 5; k++) easiest_other = ls[k].ncm < easiest_other ? ls[k].ncm : easiest_other;
  CHECK_MSG(storm->ncm < 0.75 * easiest_other && storm->contrast < 0.7 * t->contrast,
            "storm should be the hard one: colour accuracy %.3f vs %.3f at best elsewhere", storm->ncm,
            easiest_other);
  /* the styles keep the target's scenes: the same label frequencies, near enough */
  for (int k = 2; k < 2 + T2S_SYNTH_NUM_STYLES; k++) {
    double road = ls[k].pixels[T2S_SYNTH_ROAD] / (STYLE_IMAGES * (double)n);
    double road_t = t->pixels[T2S_SYNTH_ROAD] / (STYLE_IMAGES * (double)n);
    CHECK_MSG(fabs(road - road_t) < 0.08, "%s: road covers %.3f, the target %.3f", names[k], road, road_t);
  }
}

/* --thin: poles, signs and lights become thin and small (fewer pixels each, and a
 * horizontal pole run of a few pixels at 192 x 192), but still present. */
static void test_thin(void) {
  enum { N = 12, S = 192 };
  double px[2][T2S_SYNTH_NUM_CLASSES] = {{0}}, runs[2] = {0}, run_px[2] = {0};
  uint8_t *rgb = malloc(S * S * 3), *lab = malloc(S * S);
  for (int thin = 0; thin < 2 && rgb && lab; thin++) {
    t2s_synth_cfg cfg = {S, S, 99, thin};
    for (int i = 0; i < N; i++) {
      t2s_error err = {0};
      CHECK_MSG(t2s_synth_draw(&cfg, T2S_SYNTH_SOURCE, (uint64_t)i, rgb, lab, &err) == T2S_OK, "%s", err.msg);
      for (int p = 0; p < S * S; p++) px[thin][lab[p]] += 1;
      for (int y = 0; y < S; y++)  /* horizontal runs of pole pixels: their mean width */
        for (int x = 0; x < S; x++)
          if (lab[y * S + x] == T2S_SYNTH_POLE && (x == 0 || lab[y * S + x - 1] != T2S_SYNTH_POLE)) runs[thin] += 1;
    }
    run_px[thin] = px[thin][T2S_SYNTH_POLE];
  }
  double w0 = run_px[0] / (runs[0] > 0 ? runs[0] : 1), w1 = run_px[1] / (runs[1] > 0 ? runs[1] : 1);
  CHECK_MSG(px[1][T2S_SYNTH_POLE] > 0 && px[1][T2S_SYNTH_TRAFFIC_SIGN] > 0, "thin: no poles (%g) or signs (%g)",
            px[1][T2S_SYNTH_POLE], px[1][T2S_SYNTH_TRAFFIC_SIGN]);
  CHECK_MSG(w1 < 0.6 * w0, "thin poles are %.2f px wide on average, normal ones %.2f", w1, w0);
  CHECK_MSG(px[1][T2S_SYNTH_TRAFFIC_SIGN] < 0.6 * px[0][T2S_SYNTH_TRAFFIC_SIGN], "thin signs cover %g px, normal %g",
            px[1][T2S_SYNTH_TRAFFIC_SIGN], px[0][T2S_SYNTH_TRAFFIC_SIGN]);
  free(rgb);
  free(lab);
}

int main(void) {
  test_determinism();
  test_thin();
  test_errors();
  test_styles();
  t2s_synth_cfg cfg = {160, 120, 2024, 0};
  domain_stats *s = malloc(sizeof *s), *t = malloc(sizeof *t);
  collect(&cfg, T2S_SYNTH_SOURCE, s);
  collect(&cfg, T2S_SYNTH_TARGET, t);
  test_frequencies(s, t);
  test_appearance(&cfg, s, t);
  free(s);
  free(t);
  return t2s_test_finish("test_synth");
}
