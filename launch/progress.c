#include "launch/progress.h"

#include <math.h>

#include "dist/comm.h"

void t2s_rate_add(t2s_rate *r, double time_s, double count) {
  r->t[r->next] = time_s;
  r->n[r->next] = count;
  r->next = (r->next + 1) % T2S_RATE_POINTS;
  if (r->len < T2S_RATE_POINTS) r->len++;
}

double t2s_rate_per_s(const t2s_rate *r) {
  if (r->len < 2) return NAN;
  int newest = (r->next + T2S_RATE_POINTS - 1) % T2S_RATE_POINTS;
  int oldest = r->len < T2S_RATE_POINTS ? 0 : r->next;
  double dt = r->t[newest] - r->t[oldest];
  return dt > 0 ? (r->n[newest] - r->n[oldest]) / dt : NAN;
}

void t2s_format_eta(char *buf, size_t size, double seconds) {
  if (!isfinite(seconds) || seconds < 0) {
    snprintf(buf, size, "?");
    return;
  }
  long long s = llround(seconds);
  snprintf(buf, size, "%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
}

void t2s_format_loss(char *buf, size_t size, double v) {
  if (isfinite(v) && fabs(v) < 1e4) snprintf(buf, size, "%.4f", v);
  else snprintf(buf, size, "%.3e", v);
}

void t2s_progress_start(t2s_progress *p, FILE *out, const char *what, int64_t total, double every_s) {
  *p = (t2s_progress){out, what, total, every_s, t2s_dist_now(), -1e30, {{0}, {0}, 0, 0}};
  t2s_rate_add(&p->rate, p->start, 0);
}

void t2s_progress_update(t2s_progress *p, int64_t done) {
  double now = t2s_dist_now();
  t2s_rate_add(&p->rate, now, (double)done);
  if (p->out == NULL || (done < p->total && now - p->last_print < p->every_s)) return;
  p->last_print = now;
  double rate = t2s_rate_per_s(&p->rate);
  char eta[32];
  t2s_format_eta(eta, sizeof eta, (double)(p->total - done) / rate);
  fprintf(p->out, "%s: %lld/%lld (%.0f%%) | %.2f/s | eta %s\n", p->what, (long long)done, (long long)p->total,
          p->total > 0 ? 100.0 * (double)done / (double)p->total : 100.0, isfinite(rate) ? rate : 0.0, eta);
  fflush(p->out);
}
