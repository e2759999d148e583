/* `t2sda_bench scaling`: training-step time, images/s, the share of the step spent
 * waiting on the gradient all-reduce, and the scaling efficiency, at a fixed per-rank
 * batch (weak scaling) and a fixed global batch (strong scaling), for several rank
 * counts. Usage and the measurement are described in bench_scaling.c. */
#pragma once

/* argv[0] is "scaling". Returns an exit code. */
int t2s_bench_scaling(int argc, char **argv);
