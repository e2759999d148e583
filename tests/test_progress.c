// ctest-labels: unit
/* Progress arithmetic against hand-computed values: the throughput window forgets a
 * slow start (so the ETA follows the current speed), ETA and loss formatting (a huge
 * loss in scientific notation), and the rate-limited progress line. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "launch/progress.h"
#include "tests/harness.h"

static void rate_window(void) {
  t2s_rate r;
  memset(&r, 0, sizeof r);
  CHECK(isnan(t2s_rate_per_s(&r)));
  /* one iteration of start-up taking 10 s, then one iteration per second */
  t2s_rate_add(&r, 10.0, 1.0);
  CHECK(isnan(t2s_rate_per_s(&r)));
  t2s_rate_add(&r, 11.0, 2.0);
  CHECK(fabs(t2s_rate_per_s(&r) - 1.0) < 1e-12);
  /* points at 0 s (0 iterations) and 10 s (1): the average since start is 0.1/s */
  memset(&r, 0, sizeof r);
  t2s_rate_add(&r, 0.0, 0.0);
  t2s_rate_add(&r, 10.0, 1.0);
  for (int k = 2; k <= 5; k++) t2s_rate_add(&r, 8.0 + k, (double)k);
  /* window (0,0)..(13,5): 5 / 13 */
  CHECK(fabs(t2s_rate_per_s(&r) - 5.0 / 13.0) < 1e-12);
  for (int k = 6; k <= 12; k++) t2s_rate_add(&r, 8.0 + k, (double)k);
  /* 8 points (13,5)..(20,12): the start has left the window */
  CHECK_MSG(fabs(t2s_rate_per_s(&r) - 1.0) < 1e-12, "rate %g, expected 1/s", t2s_rate_per_s(&r));
}

static void formats(void) {
  char b[64];
  t2s_format_eta(b, sizeof b, 3723.0);
  CHECK(strcmp(b, "1:02:03") == 0);
  t2s_format_eta(b, sizeof b, 59.6);
  CHECK(strcmp(b, "0:01:00") == 0);
  t2s_format_eta(b, sizeof b, NAN);
  CHECK(strcmp(b, "?") == 0);
  t2s_format_loss(b, sizeof b, 0.51234);
  CHECK(strcmp(b, "0.5123") == 0);
  t2s_format_loss(b, sizeof b, 3.0e12);
  CHECK_MSG(strcmp(b, "3.000e+12") == 0, "got %s", b);
  t2s_format_loss(b, sizeof b, -12346.0);
  CHECK_MSG(strcmp(b, "-1.235e+04") == 0, "got %s", b);
  t2s_format_loss(b, sizeof b, NAN);
  CHECK(strstr(b, "nan") != NULL);
}

static void progress_line(void) {
  FILE *f = tmpfile();
  t2s_progress p;
  t2s_progress_start(&p, f, "evaluation", 4, 3600.0);
  t2s_progress_update(&p, 1);  /* the first line comes at once */
  t2s_progress_update(&p, 2);  /* then nothing for an hour ... */
  t2s_progress_update(&p, 4);  /* ... except the last */
  rewind(f);
  char line[3][256] = {{0}};
  int n = 0;
  while (n < 3 && fgets(line[n], sizeof line[n], f)) n++;
  fclose(f);
  CHECK_MSG(n == 2, "%d progress lines, expected 2", n);
  CHECK_MSG(strncmp(line[0], "evaluation: 1/4 (25%) | ", 24) == 0 && strstr(line[0], "eta ") != NULL, "got %s", line[0]);
  CHECK_MSG(strncmp(line[1], "evaluation: 4/4 (100%) | ", 25) == 0 && strstr(line[1], "eta 0:00:00") != NULL,
            "got %s", line[1]);
}

int main(void) {
  rate_window();
  formats();
  progress_line();
  return t2s_test_finish("test_progress");
}
