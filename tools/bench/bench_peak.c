#include "tools/bench/bench_peak.h"

#include <cblas.h>
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef T2S_HAVE_DNNL
#include <dnnl.h>
#endif

char *openblas_get_corename(void);
void openblas_set_num_threads(int n);

#define ACC 12 /* independent accumulators: > FMA latency (4-5) x FMA ports (2) */

/* One thread's FMA loop: `iters` rounds of ACC vector FMAs; returns a value the
 * compiler cannot drop. Each round is 2 ACC `lanes` flops. */
__attribute__((target("avx512f"))) static float fma_loop_avx512(long iters) {
  __m512 a[ACC], m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
  for (int i = 0; i < ACC; i++) a[i] = _mm512_set1_ps((float)i);
  for (long k = 0; k < iters; k++)
#pragma GCC unroll 12
    for (int i = 0; i < ACC; i++) a[i] = _mm512_fmadd_ps(a[i], m, c);
  __m512 s = a[0];
  for (int i = 1; i < ACC; i++) s = _mm512_add_ps(s, a[i]);
  return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static float fma_loop_avx2(long iters) {
  __m256 a[ACC], m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
  for (int i = 0; i < ACC; i++) a[i] = _mm256_set1_ps((float)i);
  for (long k = 0; k < iters; k++)
#pragma GCC unroll 12
    for (int i = 0; i < ACC; i++) a[i] = _mm256_fmadd_ps(a[i], m, c);
  __m256 s = a[0];
  for (int i = 1; i < ACC; i++) s = _mm256_add_ps(s, a[i]);
  float o[8];
  _mm256_storeu_ps(o, s);
  return o[0] + o[1] + o[2] + o[3] + o[4] + o[5] + o[6] + o[7];
}

static float fma_loop_scalar(long iters) {
  float a[ACC];
  for (int i = 0; i < ACC; i++) a[i] = (float)i;
  for (long k = 0; k < iters; k++)
    for (int i = 0; i < ACC; i++) a[i] = a[i] * 0.999999f + 1e-7f;
  float s = 0.0f;
  for (int i = 0; i < ACC; i++) s += a[i];
  return s;
}

/* GFLOP/s of the FMA loop on `threads` threads for about `seconds`. */
static double fma_peak(int threads, double seconds, int *lanes, const char **isa) {
  float (*loop)(long) = fma_loop_scalar;
  *lanes = 1, *isa = "scalar";
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) loop = fma_loop_avx512, *lanes = 16, *isa = "avx512";
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    loop = fma_loop_avx2, *lanes = 8, *isa = "avx2+fma";
  long iters = 1 << 20;
  double t = 0.0;
  volatile float sink = 0.0f;
  for (;;) { /* grow until one run takes `seconds` */
    double t0 = omp_get_wtime();
#pragma omp parallel num_threads(threads)
    {
      float v = loop(iters);
#pragma omp atomic
      sink += v;
    }
    t = omp_get_wtime() - t0;
    if (t >= seconds || iters > (1L << 40)) break;
    iters *= t > 0.01 ? (long)(seconds / t) + 1 : 8;
  }
  (void)sink;
  return (double)threads * (double)iters * ACC * 2.0 * *lanes / t / 1e9;
}

typedef void (*gemm_fn)(int n, const float *a, const float *b, float *c);
static void gemm_openblas(int n, const float *a, const float *b, float *c) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
}
#ifdef T2S_HAVE_DNNL
static void gemm_dnnl(int n, const float *a, const float *b, float *c) {
  dnnl_sgemm('N', 'N', n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
}
#endif

/* Best GFLOP/s of three n^3 products. */
static double gemm_rate(gemm_fn f, int n, const float *a, const float *b, float *c) {
  double best = 0.0;
  for (int r = 0; r < 3; r++) {
    double t0 = omp_get_wtime();
    f(n, a, b, c);
    double t = omp_get_wtime() - t0, rate = 2.0 * n * (double)n * n / t / 1e9;
    if (rate > best) best = rate;
  }
  return best;
}

int t2s_bench_peak(int argc, char **argv) {
  int threads = 2;
  double seconds = 2.0;
  for (int i = 1; i < argc; i++) {
    if (i + 1 < argc && strcmp(argv[i], "--threads") == 0) threads = atoi(argv[++i]);
    else if (i + 1 < argc && strcmp(argv[i], "--seconds") == 0) seconds = atof(argv[++i]);
    else {
      fprintf(stderr, "t2sda_bench peak: unknown option '%s' (usage: t2sda_bench peak [--threads 2] "
                      "[--seconds 2])\n", argv[i]);
      return 2;
    }
  }
  if (threads < 1 || threads > 1024 || !(seconds > 0.0 && seconds <= 600.0)) {
    fprintf(stderr, "t2sda_bench peak: --threads must be 1..1024 and --seconds in (0, 600]\n");
    return 2;
  }
  int lanes;
  const char *isa;
  double peak = fma_peak(threads, seconds, &lanes, &isa);
  omp_set_num_threads(threads);
  openblas_set_num_threads(threads);
  int n = 2048;
  float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n),
        *c = malloc(sizeof(float) * n * n);
  if (!a || !b || !c) {
    fprintf(stderr, "t2sda_bench peak: out of memory for the %d^2 matrices\n", n);
    free(a), free(b), free(c);
    return 1;
  }
  for (long i = 0; i < (long)n * n; i++) a[i] = (float)(i % 97) * 1e-3f, b[i] = (float)(i % 89) * 1e-3f;
  double blas = gemm_rate(gemm_openblas, n, a, b, c), dnnl = 0.0;
#ifdef T2S_HAVE_DNNL
  dnnl = gemm_rate(gemm_dnnl, n, a, b, c);
#endif
  free(a), free(b), free(c);
  printf("t2sda peak: %d thread(s), %s FMA loop %.1f GFLOP/s fp32 | sgemm %d^3: OpenBLAS (%s kernels) "
         "%.1f GFLOP/s, oneDNN %.1f GFLOP/s%s\n",
         threads, isa, peak, n, openblas_get_corename(), blas, dnnl,
#ifdef T2S_HAVE_DNNL
         ""
#else
         " (not in this build)"
#endif
  );
  printf("{\"bench\": \"peak\", \"threads\": %d, \"isa\": \"%s\", \"fma_gflop_per_s\": %.2f, "
         "\"sgemm_openblas_gflop_per_s\": %.2f, \"sgemm_onednn_gflop_per_s\": %.2f, "
         "\"openblas_core\": \"%s\"}\n",
         threads, isa, peak, blas, dnnl, openblas_get_corename());
  return 0;
}
