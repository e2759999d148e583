/* `t2sda_bench comm`: all-reduce latency and bandwidth over message sizes. */
#pragma once

/* argv[0] is "comm"; see the usage text in bench_comm.c. Returns an exit code. */
int t2s_bench_comm(int argc, char **argv);
