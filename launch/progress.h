/* Progress of long loops for people watching a terminal: throughput over a recent
 * window (start-up, the first slow iterations and an evaluation pause fade out of it,
 * so the ETA follows the current speed), ETA and loss formatting, and a rate-limited
 * "what: done/total" line for evaluation and data synthesis. */
#pragma once
#include <stdint.h>
#include <stdio.h>

#define T2S_RATE_POINTS 8

/* The last T2S_RATE_POINTS (time, cumulative count) points. */
typedef struct t2s_rate {
  double t[T2S_RATE_POINTS], n[T2S_RATE_POINTS];
  int len, next;
} t2s_rate;

void t2s_rate_add(t2s_rate *r, double time_s, double count);
/* Units per second between the oldest and newest point of the window; NaN with fewer
 * than two points or no time between them. */
double t2s_rate_per_s(const t2s_rate *r);

/* "H:MM:SS"; "?" when seconds is not finite or negative. */
void t2s_format_eta(char *buf, size_t size, double seconds);
/* A loss for a progress line: fixed point while it reads well (|v| < 1e4), scientific
 * notation beyond (a diverging loss of 3e12 stays readable), "nan"/"inf" as such. */
void t2s_format_loss(char *buf, size_t size, double v);

typedef struct t2s_progress {
  FILE *out;          /* NULL: silent */
  const char *what;   /* e.g. "evaluation" */
  int64_t total;
  double every_s;     /* at most one line per every_s seconds (the last one always) */
  double start, last_print;
  t2s_rate rate;
} t2s_progress;

void t2s_progress_start(t2s_progress *p, FILE *out, const char *what, int64_t total, double every_s);
/* done of total finished: "what: done/total (P%) | R/s | eta H:MM:SS" when due. */
void t2s_progress_update(t2s_progress *p, int64_t done);
