/* Wall-clock seconds for progress lines, ETAs, deadlines and benchmarks. */
#pragma once

/* Seconds since an arbitrary fixed point (CLOCK_MONOTONIC: never jumps with the date). */
double t2s_clock_s(void);
