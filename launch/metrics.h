/* Segmentation metrics as mmseg reports them: a confusion matrix over
 * non-ignored pixels (int64, all-reduced over ranks by the caller), then per
 * class IoU = I / U and Acc = I / (pixels of the class), aAcc, and mIoU / mAcc
 * as means over the classes where they are defined (U > 0, resp. class present). */
#pragma once
#include <stdint.h>
#include <stdio.h>

#include "core/status.h"

typedef struct t2s_confusion {
  int num_classes;
  int ignore_index;
  int64_t *counts;  /* num_classes x num_classes, row = ground truth, column = prediction */
} t2s_confusion;

t2s_status t2s_confusion_init(t2s_confusion *m, int num_classes, int ignore_index, t2s_error *err);
void t2s_confusion_free(t2s_confusion *m);
void t2s_confusion_reset(t2s_confusion *m);
/* Adds n pixels of predictions (class ids) against labels (ignore_index skipped). */
void t2s_confusion_add(t2s_confusion *m, const uint8_t *pred, const uint8_t *label, int64_t n);

typedef struct t2s_seg_metrics {
  int num_classes;
  double aacc, miou, macc;  /* fractions in [0, 1]; NaN when nothing is defined */
  double *iou, *acc;        /* per class; NaN where undefined */
  int n_classes_used;       /* classes counted in the means */
} t2s_seg_metrics;

/* Computes the metrics over the classes with use[c] != 0 (NULL: all classes), e.g.
 * the 16- or 13-class SYNTHIA subsets. */
t2s_status t2s_metrics_compute(const t2s_confusion *m, const uint8_t *use, t2s_seg_metrics *out,
                               t2s_error *err);
void t2s_metrics_free(t2s_seg_metrics *s);
/* The mmseg tables (values x100, two decimals): per class results, then the summary. */
void t2s_metrics_print(FILE *f, const t2s_seg_metrics *s, const char (*class_names)[32],
                       const uint8_t *use, const char *title);
/* The summary over several evaluation sets: one mIoU column per set, then their mean
 * (x100, two decimals). */
void t2s_metrics_print_sets(FILE *f, int n_sets, const char (*set_names)[32], const double *miou,
                            double mean, const char *title);
/* The mean of the defined (non-NaN) values of v[0..n); NaN when none is. */
double t2s_metrics_mean_defined(const double *v, int n);
/* One JSON object with aAcc, mIoU, mAcc, IoU.<name>, Acc.<name> (fractions) and iteration;
 * NaN is written as null. `prefix` is prepended to the summary keys (e.g. "16/"), may be "". */
void t2s_metrics_json(FILE *f, const t2s_seg_metrics *s, const char (*class_names)[32],
                      const uint8_t *use, int64_t iteration, const char *prefix);
/* One JSON object for several evaluation sets: iteration, "mIoU" (the mean of the
 * sets' mIoU, `mean`), then per set aAcc.<set>, mIoU.<set>, mAcc.<set>,
 * IoU.<class>.<set>, Acc.<class>.<set>. */
void t2s_metrics_json_sets(FILE *f, int n_sets, const t2s_seg_metrics *sets, const char (*set_names)[32],
                           const char (*class_names)[32], int64_t iteration, double mean);
/* Makes the JSON lines written to f reach the file (fflush, then fsync so that a
 * full disk shows up now rather than at close); an error names `path` and the
 * reason (e.g. "No space left on device"). */
t2s_status t2s_metrics_flush(FILE *f, const char *path, t2s_error *err);
/* Named class subsets of the 19 Cityscapes classes: "synthia16", "synthia13". */
int t2s_class_subset(const char *name, int num_classes, uint8_t *use);
