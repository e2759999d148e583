#include "launch/metrics.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

t2s_status t2s_confusion_init(t2s_confusion *m, int num_classes, int ignore_index, t2s_error *err) {
  m->num_classes = num_classes;
  m->ignore_index = ignore_index;
  m->counts = calloc((size_t)num_classes * (size_t)num_classes, sizeof(int64_t));
  if (m->counts == NULL) return t2s_error_set(err, T2S_ERR_NOMEM, "out of memory for the confusion matrix");
  return T2S_OK;
}

void t2s_confusion_free(t2s_confusion *m) {
  free(m->counts);
  m->counts = NULL;
}

void t2s_confusion_reset(t2s_confusion *m) {
  memset(m->counts, 0, (size_t)m->num_classes * (size_t)m->num_classes * sizeof(int64_t));
}

void t2s_confusion_add(t2s_confusion *m, const uint8_t *pred, const uint8_t *label, int64_t n) {
  const int C = m->num_classes;
  for (int64_t i = 0; i < n; i++) {
    int y = label[i];
    if (y == m->ignore_index || y >= C) continue;
    int p = pred[i] < C ? pred[i] : 0;
    m->counts[(int64_t)y * C + p]++;
  }
}

t2s_status t2s_metrics_compute(const t2s_confusion *m, const uint8_t *use, t2s_seg_metrics *out,
                               t2s_error *err) {
  const int C = m->num_classes;
  memset(out, 0, sizeof *out);
  out->num_classes = C;
  out->iou = calloc((size_t)C, sizeof(double));
  out->acc = calloc((size_t)C, sizeof(double));
  if (!out->iou || !out->acc) return t2s_error_set(err, T2S_ERR_NOMEM, "out of memory for metrics");
  int64_t correct = 0, total = 0;
  double iou_sum = 0, acc_sum = 0;
  int n_iou = 0, n_acc = 0;
  for (int c = 0; c < C; c++) {
    int64_t tp = m->counts[(int64_t)c * C + c], gt = 0, pred = 0;
    for (int k = 0; k < C; k++) {
      gt += m->counts[(int64_t)c * C + k];
      pred += m->counts[(int64_t)k * C + c];
    }
    int64_t uni = gt + pred - tp;
    out->iou[c] = uni > 0 ? (double)tp / (double)uni : NAN;
    out->acc[c] = gt > 0 ? (double)tp / (double)gt : NAN;
    if (use && !use[c]) continue;
    correct += tp;
    total += gt;
    if (uni > 0) iou_sum += out->iou[c], n_iou++;
    if (gt > 0) acc_sum += out->acc[c], n_acc++;
  }
  out->aacc = total > 0 ? (double)correct / (double)total : NAN;
  out->miou = n_iou ? iou_sum / n_iou : NAN;
  out->macc = n_acc ? acc_sum / n_acc : NAN;
  out->n_classes_used = n_iou;
  return T2S_OK;
}

void t2s_metrics_free(t2s_seg_metrics *s) {
  free(s->iou);
  free(s->acc);
  s->iou = s->acc = NULL;
}

static void pct(char *buf, size_t n, double v) {
  if (isnan(v)) snprintf(buf, n, "nan");
  else snprintf(buf, n, "%.2f", 100.0 * v);
}

static void centre(FILE *f, const char *s, int width) {
  int len = (int)strlen(s), left = (width - len) / 2, right = width - len - left;
  fprintf(f, "| %*s%s%*s ", left > 0 ? left : 0, "", s, right > 0 ? right : 0, "");
}

void t2s_metrics_print(FILE *f, const t2s_seg_metrics *s, const char (*class_names)[32],
                       const uint8_t *use, const char *title) {
  int w = 5;
  for (int c = 0; c < s->num_classes; c++)
    if ((!use || use[c]) && (int)strlen(class_names[c]) > w) w = (int)strlen(class_names[c]);
  char line[128];
  int n = snprintf(line, sizeof line, "+%.*s+-------+-------+", w + 2, "--------------------------------------");
  (void)n;
  fprintf(f, "%sper class results:\n\n%s\n", title ? title : "", line);
  centre(f, "Class", w);
  fprintf(f, "|  IoU  |  Acc  |\n%s\n", line);
  for (int c = 0; c < s->num_classes; c++) {
    if (use && !use[c]) continue;
    char a[16], b[16];
    pct(a, sizeof a, s->iou[c]);
    pct(b, sizeof b, s->acc[c]);
    centre(f, class_names[c], w);
    fprintf(f, "| %5s | %5s |\n", a, b);
  }
  fprintf(f, "%s\nSummary:\n\n+-------+-------+-------+\n|  aAcc |  mIoU |  mAcc |\n"
             "+-------+-------+-------+\n", line);
  char a[16], b[16], d[16];
  pct(a, sizeof a, s->aacc);
  pct(b, sizeof b, s->miou);
  pct(d, sizeof d, s->macc);
  fprintf(f, "| %5s | %5s | %5s |\n+-------+-------+-------+\n", a, b, d);
}

static void set_rule(FILE *f, int n_sets, const int *w) {
  for (int k = 0; k <= n_sets; k++) fprintf(f, "+%.*s", w[k] + 2, "----------------------------------");
  fprintf(f, "+\n");
}

void t2s_metrics_print_sets(FILE *f, int n_sets, const char (*set_names)[32], const double *miou,
                            double mean, const char *title) {
  int w[33];
  if (n_sets > 32) n_sets = 32;
  for (int k = 0; k <= n_sets; k++) {
    int len = k < n_sets ? (int)strlen(set_names[k]) : 4;
    w[k] = len > 5 ? len : 5;
  }
  fprintf(f, "%smIoU per validation set:\n\n", title ? title : "");
  set_rule(f, n_sets, w);
  for (int k = 0; k <= n_sets; k++) centre(f, k < n_sets ? set_names[k] : "mean", w[k]);
  fprintf(f, "|\n");
  set_rule(f, n_sets, w);
  for (int k = 0; k <= n_sets; k++) {
    char v[16];
    pct(v, sizeof v, k < n_sets ? miou[k] : mean);
    centre(f, v, w[k]);
  }
  fprintf(f, "|\n");
  set_rule(f, n_sets, w);
}

double t2s_metrics_mean_defined(const double *v, int n) {
  double sum = 0;
  int used = 0;
  for (int k = 0; k < n; k++)
    if (!isnan(v[k])) sum += v[k], used++;
  return used ? sum / used : NAN;
}

static void json_num(FILE *f, double v) {
  if (isnan(v) || isinf(v)) fprintf(f, "null");
  else fprintf(f, "%.6f", v);
}

void t2s_metrics_json(FILE *f, const t2s_seg_metrics *s, const char (*class_names)[32],
                      const uint8_t *use, int64_t iteration, const char *prefix) {
  fprintf(f, "{\"iteration\": %lld, \"%saAcc\": ", (long long)iteration, prefix);
  json_num(f, s->aacc);
  fprintf(f, ", \"%smIoU\": ", prefix);
  json_num(f, s->miou);
  fprintf(f, ", \"%smAcc\": ", prefix);
  json_num(f, s->macc);
  for (int c = 0; c < s->num_classes; c++) {
    if (use && !use[c]) continue;
    fprintf(f, ", \"IoU.%s\": ", class_names[c]);
    json_num(f, s->iou[c]);
    fprintf(f, ", \"Acc.%s\": ", class_names[c]);
    json_num(f, s->acc[c]);
  }
  fprintf(f, "}\n");
}

void t2s_metrics_json_sets(FILE *f, int n_sets, const t2s_seg_metrics *sets, const char (*set_names)[32],
                           const char (*class_names)[32], int64_t iteration, double mean) {
  fprintf(f, "{\"iteration\": %lld, \"mIoU\": ", (long long)iteration);
  json_num(f, mean);
  for (int k = 0; k < n_sets; k++) {
    const t2s_seg_metrics *s = &sets[k];
    const char *n = set_names[k];
    fprintf(f, ", \"aAcc.%s\": ", n);
    json_num(f, s->aacc);
    fprintf(f, ", \"mIoU.%s\": ", n);
    json_num(f, s->miou);
    fprintf(f, ", \"mAcc.%s\": ", n);
    json_num(f, s->macc);
    for (int c = 0; c < s->num_classes; c++) {
      fprintf(f, ", \"IoU.%s.%s\": ", class_names[c], n);
      json_num(f, s->iou[c]);
      fprintf(f, ", \"Acc.%s.%s\": ", class_names[c], n);
      json_num(f, s->acc[c]);
    }
  }
  fprintf(f, "}\n");
}

t2s_status t2s_metrics_flush(FILE *f, const char *path, t2s_error *err) {
  errno = 0;
  int failed = ferror(f) || fflush(f) != 0 || fsync(fileno(f)) != 0;
  /* errno of the failing call; a write error caught by ferror has none left: say so */
  const char *why = errno ? strerror(errno) : "a write failed";
  if (!failed) return T2S_OK;
  clearerr(f);
  return t2s_error_set(err, T2S_ERR_IO, "cannot write metrics to %s: %s; free disk space (the run "
                       "goes on, but these metrics lines are lost)", path, why);
}

int t2s_class_subset(const char *name, int num_classes, uint8_t *use) {
  /* SYNTHIA -> Cityscapes: 16 classes drop terrain (9), truck (14), train (16);
   * 13 classes also drop wall (3), fence (4), pole (5). */
  static const int drop16[] = {9, 14, 16}, drop13[] = {9, 14, 16, 3, 4, 5};
  const int *drop;
  int n;
  if (strcmp(name, "synthia16") == 0) drop = drop16, n = 3;
  else if (strcmp(name, "synthia13") == 0) drop = drop13, n = 6;
  else if (strcmp(name, "all") == 0) drop = NULL, n = 0;
  else return 0;
  if (num_classes != 19 && n) return 0;
  for (int c = 0; c < num_classes; c++) use[c] = 1;
  for (int i = 0; i < n; i++) use[drop[i]] = 0;
  return 1;
}
