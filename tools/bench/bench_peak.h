/* `t2sda_bench peak`: the machine's fp32 peak, to say what fraction of it a step
 * reaches (docs/performance.md).
 *
 *   t2sda_bench peak [--threads 2] [--seconds 2]
 *
 * Runs, on each of `threads` OpenMP threads, a loop of independent fused multiply-adds
 * in the widest vectors the CPU has (AVX-512 or AVX2 + FMA; scalar otherwise): 12
 * accumulators, more than the FMA latency times the FMA ports, so the loop is bound by
 * FMA throughput alone. Then times a 2048^3 sgemm through OpenBLAS and, in a build
 * with oneDNN, dnnl_sgemm (the GEMM the best library reaches on this machine, and a
 * check of OpenBLAS's kernel choice, which it prints). One JSON line at the end. */
#pragma once

int t2s_bench_peak(int argc, char **argv);
