// ctest-labels: unit
/* Segmentation metrics against hand-computed values. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "launch/metrics.h"
#include "tests/harness.h"

int main(void) {
  t2s_error err = {0};
  t2s_confusion m;
  CHECK(t2s_confusion_init(&m, 3, 255, &err) == T2S_OK);
  /* labels:      0 0 0 1 1 2 255 2
   * predictions: 0 0 1 1 2 2  0  0 */
  const uint8_t label[8] = {0, 0, 0, 1, 1, 2, 255, 2}, pred[8] = {0, 0, 1, 1, 2, 2, 0, 0};
  t2s_confusion_add(&m, pred, label, 8);
  /* class 0: tp 2, gt 3, pred 3 -> IoU 2/4, Acc 2/3
   * class 1: tp 1, gt 2, pred 2 -> IoU 1/3, Acc 1/2
   * class 2: tp 1, gt 2, pred 2 -> IoU 1/3, Acc 1/2; aAcc 4/7 */
  t2s_seg_metrics s;
  CHECK(t2s_metrics_compute(&m, NULL, &s, &err) == T2S_OK);
  CHECK(fabs(s.iou[0] - 0.5) < 1e-12 && fabs(s.iou[1] - 1.0 / 3) < 1e-12);
  CHECK(fabs(s.acc[0] - 2.0 / 3) < 1e-12 && fabs(s.acc[2] - 0.5) < 1e-12);
  CHECK(fabs(s.aacc - 4.0 / 7) < 1e-12);
  CHECK(fabs(s.miou - (0.5 + 2.0 / 3) / 3) < 1e-12);
  CHECK(fabs(s.macc - (2.0 / 3 + 1.0) / 3) < 1e-12);
  t2s_metrics_free(&s);
  /* a subset leaves class 2 out of the means */
  uint8_t use[3] = {1, 1, 0};
  CHECK(t2s_metrics_compute(&m, use, &s, &err) == T2S_OK);
  CHECK(fabs(s.miou - (0.5 + 1.0 / 3) / 2) < 1e-12);
  CHECK(fabs(s.aacc - 3.0 / 5) < 1e-12);
  char names[3][32] = {"road", "sidewalk", "building"};
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  t2s_metrics_print(f, &s, (const char(*)[32])names, use, "");
  t2s_metrics_json(f, &s, (const char(*)[32])names, use, 40, "");
  fclose(f);
  /* a full disk (/dev/full: every write is ENOSPC) is reported with the file named */
  FILE *full = fopen("/dev/full", "a");
  if (full != NULL) {
    t2s_metrics_json(full, &s, (const char(*)[32])names, use, 40, "");
    t2s_error fe = {0};
    CHECK(t2s_metrics_flush(full, "work/metrics.jsonl", &fe) == T2S_ERR_IO);
    CHECK_MSG(strstr(fe.msg, "work/metrics.jsonl") && strstr(fe.msg, "No space left"), "%s", fe.msg);
    fclose(full);
  }
  CHECK(strstr(buf, "|   road   | 50.00 | 66.67 |") != NULL);
  CHECK(strstr(buf, "| 60.00 | 41.67 | 58.33 |") != NULL);
  CHECK(strstr(buf, "\"mIoU\": 0.416667") != NULL);
  CHECK(strstr(buf, "building") == NULL || strstr(buf, "IoU.building") == NULL);
  printf("%s", buf);
  free(buf);
  t2s_metrics_free(&s);
  /* a class absent from both labels and predictions is NaN and left out of mIoU */
  t2s_confusion_reset(&m);
  const uint8_t l2[2] = {0, 1}, p2[2] = {0, 1};
  t2s_confusion_add(&m, p2, l2, 2);
  CHECK(t2s_metrics_compute(&m, NULL, &s, &err) == T2S_OK);
  CHECK(isnan(s.iou[2]) && s.miou == 1.0 && s.n_classes_used == 2);
  t2s_metrics_free(&s);
  uint8_t u19[19];
  CHECK(t2s_class_subset("synthia16", 19, u19) && u19[9] == 0 && u19[3] == 1);
  CHECK(t2s_class_subset("synthia13", 19, u19) && u19[3] == 0 && u19[18] == 1);
  CHECK(!t2s_class_subset("bogus", 19, u19));
  t2s_confusion_free(&m);
  return t2s_test_finish("test_metrics");
}
