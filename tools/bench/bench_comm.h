/* `t2sda_bench allreduce` (alias `comm`): all-reduce latency, algbw and busbw over
 * message sizes, in nccl-tests' all_reduce_perf columns. */
#pragma once

/* argv[0] is "allreduce" or "comm"; see the usage text in bench_comm.c. Returns an exit code. */
int t2s_bench_comm(int argc, char **argv);
