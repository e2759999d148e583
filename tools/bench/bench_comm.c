/* All-reduce benchmark: in-place float32 sums of 4 KiB .. 256 MiB (powers of two) with
 * the run's backend: MPI host collectives on the CPU, NCCL on GPUs. Timing goes through
 * the communicator's public API (t2s_dist_allreduce_f32_start + t2s_dist_wait), the
 * calls training makes, not a path of its own.
 *
 *   mpirun -np 2 t2sda_bench allreduce [--device cpu|cuda] [--min-bytes 4096]
 *                                      [--max-bytes 268435456] [--iters 20] [--warmup 3]
 *                                      [--json FILE]
 *
 * Without a launcher, `--device cuda` runs one rank on a real NCCL communicator (a
 * one-GPU machine with no mpirun: busbw is 0 there, time and algbw are the kernels').
 * (`comm` is the same benchmark under its first name.) The table has the columns of
 * nccl-tests' all_reduce_perf (size, count, type, redop, root, time, algbw, busbw,
 * #wrong; in-place only), so a line can be set beside theirs for the same size: time
 * per all-reduce (the slowest rank's mean over the timed iterations), algorithm
 * bandwidth algbw = bytes / time, and bus bandwidth busbw = algbw x 2 (n - 1) / n, the
 * per-link traffic of a ring all-reduce, comparable across rank counts and against the
 * hardware's link speed (nccl-tests doc/PERFORMANCE.md). Large messages run fewer
 * iterations (at least 3) so that a sweep stays short. Before timing, each size is
 * reduced once from rank + 1 and every element compared with n (n + 1) / 2: #wrong
 * counts the misses on rank 0, and any miss makes the exit code 1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/device.h"
#include "tools/bench/bench_comm.h"
#include "dist/comm.h"

typedef struct comm_opts {
  t2s_device device;
  size_t min_bytes, max_bytes;
  int iters, warmup;
  const char *json;
} comm_opts;

static int parse_size(const char *flag, const char *v, size_t *out) {
  char *end;
  unsigned long long x = strtoull(v, &end, 10);
  if (*end == 'K' || *end == 'k') x <<= 10, end++;
  else if (*end == 'M' || *end == 'm') x <<= 20, end++;
  else if (*end == 'G' || *end == 'g') x <<= 30, end++;
  if (*end != '\0' || x < 4) {
    fprintf(stderr, "t2sda_bench allreduce: %s '%s' is not a size in bytes (e.g. 4096, 4K, 256M)\n",
            flag, v);
    return 0;
  }
  *out = (size_t)x;
  return 1;
}

static int parse_opts(int argc, char **argv, comm_opts *o) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    int ok = v != NULL;
    if (ok && strcmp(a, "--device") == 0) {
      ok = strcmp(v, "cpu") == 0 || strcmp(v, "cuda") == 0;
      o->device = strcmp(v, "cuda") == 0 ? T2S_DEV_CUDA : T2S_DEV_CPU;
    } else if (ok && strcmp(a, "--min-bytes") == 0) ok = parse_size(a, v, &o->min_bytes);
    else if (ok && strcmp(a, "--max-bytes") == 0) ok = parse_size(a, v, &o->max_bytes);
    else if (ok && strcmp(a, "--iters") == 0) ok = (o->iters = atoi(v)) > 0;
    else if (ok && strcmp(a, "--warmup") == 0) ok = (o->warmup = atoi(v)) >= 0;
    else if (ok && strcmp(a, "--json") == 0) o->json = v;
    else ok = 0;
    if (!ok) {
      fprintf(stderr, "t2sda_bench allreduce: bad option '%s'%s%s (see t2sda_bench --help)\n", a,
              v ? " " : "", v ? v : "");
      return 0;
    }
    i++;
  }
  return 1;
}

/* `reps` sums started back to back, one wait at the end (as nccl-tests times them). */
static t2s_status reduce(t2s_comm *c, const comm_opts *o, float *buf, size_t n, int reps,
                         t2s_error *err) {
  for (int r = 0; r < reps; r++) {
    t2s_status st = t2s_dist_allreduce_f32_start(c, o->device, buf, n, err);
    if (st != T2S_OK) return st;
  }
  return t2s_dist_wait(c, err);
}

/* Fills with rank + 1, reduces once, counts the elements that differ from
 * n (n + 1) / 2 (exact in float32 for any realistic n), zeroes the buffer. */
static t2s_status check_once(t2s_comm *c, const comm_opts *o, float *buf, float *host, size_t n,
                             size_t *wrong, t2s_error *err) {
  for (size_t i = 0; i < n; i++) host[i] = (float)(c->rank + 1);
  t2s_status st = t2s_device_copy(o->device, buf, T2S_DEV_CPU, host, n * sizeof(float), err);
  if (st == T2S_OK) st = t2s_dist_allreduce_f32(c, o->device, buf, n, err);
  if (st == T2S_OK) st = t2s_device_copy(T2S_DEV_CPU, host, o->device, buf, n * sizeof(float), err);
  if (st != T2S_OK) return st;
  float want = (float)c->world * (float)(c->world + 1) / 2.0f;
  *wrong = 0;
  for (size_t i = 0; i < n; i++) *wrong += host[i] != want;
  return t2s_device_zero(o->device, buf, n * sizeof(float), err);
}

/* The slowest rank's value of x (every rank receives it). */
static t2s_status max_over_ranks(t2s_comm *c, double *x, t2s_error *err) {
  return t2s_dist_max_f64(c, x, 1, err);
}

static void print_header(const t2s_comm *c) {
  printf("# t2sda_bench allreduce: %d ranks, backend %s, in place\n", c->world,
         t2s_comm_backend_name(c->backend));
  printf("#%11s %12s %8s %6s %6s %10s %8s %8s %6s\n", "size", "count", "type", "redop", "root",
         "time", "algbw", "busbw", "#wrong");
  printf("#%11s %12s %8s %6s %6s %10s %8s %8s %6s\n", "(B)", "(elements)", "", "", "", "(us)",
         "(GB/s)", "(GB/s)", "");
}

static t2s_status sweep(t2s_comm *c, const comm_opts *o, float *buf, float *host, FILE *json,
                        size_t *total_wrong, t2s_error *err) {
  double link = 2.0 * (c->world - 1) / c->world, bus_sum = 0; /* 0 on one rank */
  int sizes = 0;
  if (c->rank == 0) print_header(c);
  for (size_t bytes = o->min_bytes; bytes <= o->max_bytes; bytes *= 2) {
    size_t n = bytes / sizeof(float), wrong = 0;
    size_t budget = ((size_t)1 << 30) / bytes; /* about 1 GiB moved per size */
    int iters = budget < (size_t)o->iters ? (int)(budget < 3 ? 3 : budget) : o->iters;
    t2s_status st = check_once(c, o, buf, host, n, &wrong, err);
    if (st == T2S_OK) st = reduce(c, o, buf, n, o->warmup, err);
    if (st == T2S_OK) st = t2s_dist_barrier(c, err);
    double t0 = t2s_dist_now();
    if (st == T2S_OK) st = reduce(c, o, buf, n, iters, err);
    double dt = (t2s_dist_now() - t0) / iters;
    if (st == T2S_OK) st = max_over_ranks(c, &dt, err);
    if (st != T2S_OK) return st;
    double algbw = (double)bytes / dt / 1e9, busbw = algbw * link;
    *total_wrong += wrong;
    bus_sum += busbw;
    sizes++;
    if (c->rank == 0) {
      printf("%12zu %12zu %8s %6s %6d %10.1f %8.2f %8.2f %6zu\n", bytes, n, "float", "sum", -1,
             dt * 1e6, algbw, busbw, wrong);
      if (json)
        fprintf(json,
                "{\"bench\": \"allreduce\", \"backend\": \"%s\", \"ranks\": %d, "
                "\"bytes\": %zu, \"count\": %zu, \"type\": \"float\", \"iters\": %d, "
                "\"time_us\": %.3f, \"algbw_gbps\": %.4f, \"busbw_gbps\": %.4f, "
                "\"wrong\": %zu}\n",
                t2s_comm_backend_name(c->backend), c->world, bytes, n, iters, dt * 1e6, algbw,
                busbw, wrong);
    }
  }
  if (c->rank == 0) {
    printf("# Out of bounds values : %zu %s\n", *total_wrong, *total_wrong ? "FAILED" : "OK");
    printf("# Avg bus bandwidth    : %g\n", sizes ? bus_sum / sizes : 0.0);
  }
  return T2S_OK;
}

int t2s_bench_comm(int argc, char **argv) {
  comm_opts o = {T2S_DEV_CPU, 4096, (size_t)256 << 20, 20, 3, NULL};
  if (!parse_opts(argc, argv, &o)) return 2;
  t2s_comm c;
  t2s_error err = {0};
  t2s_dist_cfg cfg = t2s_dist_default_cfg();
  cfg.device = o.device;
  cfg.nccl_one_rank = 1;
  if (t2s_dist_init(&c, &cfg, &err) != T2S_OK) {
    fprintf(stderr, "t2sda_bench allreduce: %s\n", err.msg);
    return 1;
  }
  if (c.world < 2 && c.backend != T2S_COMM_NCCL) {
    fprintf(stderr, "t2sda_bench allreduce: one CPU process has nothing to reduce: run it under "
                    "`mpirun -np 2 t2sda_bench allreduce` (or srun), or use --device cuda\n");
    t2s_dist_finalize(&c);
    return 2;
  }
  size_t max_n = o.max_bytes / sizeof(float);
  float *buf = t2s_device_malloc(o.device, max_n * sizeof(float), &err);
  float *host = malloc(max_n * sizeof(float));
  FILE *json = c.rank == 0 && o.json ? fopen(o.json, "w") : NULL;
  t2s_status st = err.status;
  if (st == T2S_OK && host == NULL) st = t2s_error_set(&err, T2S_ERR_NOMEM, "out of host memory");
  if (st == T2S_OK && c.rank == 0 && o.json && json == NULL)
    st = t2s_error_set(&err, T2S_ERR_IO, "cannot write %s", o.json);
  t2s_error agreed = {0};
  st = t2s_dist_check_all(&c, st, err.msg, &agreed);
  if (st != T2S_OK) err = agreed;
  size_t wrong = 0;
  if (st == T2S_OK) st = sweep(&c, &o, buf, host, json, &wrong, &err);
  if (json) fclose(json);
  free(host);
  if (buf) t2s_device_free(o.device, buf);
  if (st != T2S_OK) t2s_dist_abort(&c, err.msg);
  t2s_dist_finalize(&c);
  return st == T2S_OK && wrong == 0 ? 0 : 1;
}
