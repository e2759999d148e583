/* Communicator set-up (launcher detection, local rank, GPU choice, start-up log) and the
 * host collectives. See comm.h for the choices; every MPI call is checked and every
 * collective is non-blocking, polled against a deadline, so a lost peer becomes a
 * message naming the rank instead of a hang. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/device.h"
#include "dist/comm_internal.h"

/* MPI counts are int: larger arrays go in pieces of this many elements. */
#define T2S_MPI_CHUNK ((size_t)1 << 30)

double t2s_dist_now(void) { return t2s_clock_s(); }

const char *t2s_comm_backend_name(t2s_comm_backend b) {
  return b == T2S_COMM_NCCL ? "nccl" : b == T2S_COMM_MPI ? "mpi" : "single";
}

int t2s_dist_env_timeout(double *seconds) {
  const char *t = getenv("T2S_COMM_TIMEOUT");
  if (t == NULL || *t == '\0') return 0;
  char *end;
  double v = strtod(t, &end);
  if (*end != '\0' || !(v >= 0) || v > 1e9) return -1;
  *seconds = v;
  return 1;
}

t2s_dist_cfg t2s_dist_default_cfg(void) {
  t2s_dist_cfg cfg = {T2S_DEV_CPU, 300.0, 0, NULL, 0};
  double v;
  if (t2s_dist_env_timeout(&v) > 0) cfg.timeout_s = v;
  return cfg;
}

const char *t2s__comm_who(const t2s_comm *c, char *buf, size_t size) {
  snprintf(buf, size, "rank %d of %d (host %s)", c->rank, c->world, c->host);
  return buf;
}

t2s_status t2s__mpi_fail(const t2s_comm *c, int rc, const char *call, t2s_error *err) {
  char why[MPI_MAX_ERROR_STRING] = "unknown MPI error", who[128];
  int len = 0;
  MPI_Error_string(rc, why, &len);
  return t2s_error_set(err, T2S_ERR_COMM,
                       "%s: %s failed (%s); another rank has probably died or stopped, see the "
                       "messages above",
                       t2s__comm_who(c, who, sizeof who), call, why);
}

t2s_status t2s__mpi_wait(const t2s_comm *c, MPI_Comm comm, MPI_Request *reqs, int n,
                         const char *what, t2s_error *err) {
  (void)comm;
  double start = t2s_dist_now(), now = start;
  for (long polls = 0;; polls++) {
    int done = 0;
    int rc = MPI_Testall(n, reqs, &done, MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS) return t2s__mpi_fail(c, rc, what, err);
    if (done) return T2S_OK;
    /* Open MPI moves a non-blocking collective forward only inside MPI calls, so
     * polling without pause for the first second keeps large messages at full speed;
     * after that a waiting rank naps 1 ms between polls instead of burning a core. */
    if ((polls & 255) == 0) now = t2s_dist_now();
    if (now - start > 1.0) {
      struct timespec nap = {0, 1000000};
      nanosleep(&nap, NULL);
      now = t2s_dist_now();
    }
    if (c->timeout_s > 0 && now - start > c->timeout_s) return t2s__comm_timeout(c, what, err);
  }
}

#define T2S_TAG_PRESENT 29171

/* Which ranks are not waiting: every rank whose deadline expired sends "present" to all
 * others and listens for theirs for a grace period (the live ranks' deadlines expire
 * within about the spread of their arrival at the collective); those never heard from
 * are listed in `out`. Returns their count. */
static int absent_ranks(const t2s_comm *c, char *out, size_t size) {
  int n = c->world, me = c->rank, absent = 0;
  MPI_Comm comm = t2s__comm_mpi(c);
  MPI_Request *req = calloc((size_t)2 * n, sizeof *req);
  int *got = calloc((size_t)n, sizeof *got);
  out[0] = '\0';
  if (req == NULL || got == NULL) {
    free(req);
    free(got);
    return -1;
  }
  for (int r = 0; r < 2 * n; r++) req[r] = MPI_REQUEST_NULL;
  for (int r = 0; r < n; r++) {
    if (r == me) continue;
    MPI_Irecv(&got[r], 1, MPI_INT, r, T2S_TAG_PRESENT, comm, &req[r]);
    MPI_Isend(&c->rank, 1, MPI_INT, r, T2S_TAG_PRESENT, comm, &req[n + r]);
  }
  double grace = c->timeout_s / 10 < 2 ? 2 : c->timeout_s / 10 > 30 ? 30 : c->timeout_s / 10;
  double start = t2s_dist_now();
  int done = 0;
  while (!done && t2s_dist_now() - start < grace) {
    MPI_Testall(n, req, &done, MPI_STATUSES_IGNORE);
    struct timespec nap = {0, 1000000};
    nanosleep(&nap, NULL);
  }
  for (int r = 0; r < n; r++) {
    if (req[r] != MPI_REQUEST_NULL) {
      size_t len = strlen(out);
      snprintf(out + len, size - len, "%s%d (host %s)", absent ? ", " : "", r,
               c->hosts && c->hosts[r][0] ? c->hosts[r] : "?");
      absent++;
      MPI_Cancel(&req[r]);
      MPI_Request_free(&req[r]);
    }
    if (req[n + r] != MPI_REQUEST_NULL) MPI_Request_free(&req[n + r]);
  }
  free(req);
  free(got);
  return absent;
}

t2s_status t2s__comm_timeout(const t2s_comm *c, const char *what, t2s_error *err) {
  char who[128], ranks[256], verdict[400];
  int absent = absent_ranks(c, ranks, sizeof ranks);
  if (absent > 0)
    snprintf(verdict, sizeof verdict, "rank%s %s never reached it (stuck or dead: see %s messages above)",
             absent > 1 ? "s" : "", ranks, absent > 1 ? "their" : "its");
  else if (absent == 0)
    snprintf(verdict, sizeof verdict, "every other rank is waiting too, so the ranks wait in different "
             "collectives (a code path that differs between ranks)");
  else
    snprintf(verdict, sizeof verdict, "another rank is dead, stuck or never reached it");
  return t2s_error_set(err, T2S_ERR_COMM, "%s: %s did not complete within %.0f s: %s; if it is only slow, "
                       "allow more time with %s", t2s__comm_who(c, who, sizeof who), what, c->timeout_s,
                       verdict, c->timeout_setting);
}

t2s_status t2s__mpi_allreduce(const t2s_comm *c, MPI_Comm comm, void *buf, size_t n,
                              MPI_Datatype type, MPI_Op op, const char *what, t2s_error *err) {
  int esize = 0;
  MPI_Type_size(type, &esize);
  for (size_t off = 0; off < n; off += T2S_MPI_CHUNK) {
    size_t len = n - off < T2S_MPI_CHUNK ? n - off : T2S_MPI_CHUNK;
    MPI_Request req;
    int rc = MPI_Iallreduce(MPI_IN_PLACE, (char *)buf + off * (size_t)esize, (int)len, type, op,
                            comm, &req);
    if (rc != MPI_SUCCESS) return t2s__mpi_fail(c, rc, what, err);
    t2s_status st = t2s__mpi_wait(c, comm, &req, 1, what, err);
    if (st != T2S_OK) return st;
  }
  return T2S_OK;
}

/* ---- launcher detection and local rank ---------------------------------------------- */

static int env_int(const char *name, int *out) {
  const char *v = getenv(name);
  if (v == NULL || *v == '\0') return 0;
  char *end;
  long x = strtol(v, &end, 10);
  if (*end != '\0' || x < 0 || x > INT_MAX) return 0;
  *out = (int)x;
  return 1;
}

static int launched_by_mpi(void) {
  const char *force = getenv("T2S_DIST");
  if (force && strcmp(force, "single") == 0) return 0;
  if (force && strcmp(force, "mpi") == 0) return 1;
  static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"};
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
    if (getenv(vars[i]) != NULL) return 1;
  return 0;
}

static t2s_status local_rank_mpi(t2s_comm *c, t2s_error *err) {
  MPI_Comm node;
  int rc = MPI_Comm_split_type(t2s__comm_mpi(c), MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL,
                               &node);
  if (rc != MPI_SUCCESS) return t2s__mpi_fail(c, rc, "MPI_Comm_split_type(SHARED)", err);
  int node_rank = 0;
  MPI_Comm_rank(node, &node_rank);
  MPI_Comm_size(node, &c->local_world);
  MPI_Comm_free(&node);
  if (!env_int("OMPI_COMM_WORLD_LOCAL_RANK", &c->local_rank)) c->local_rank = node_rank;
  return T2S_OK;
}

static void local_rank_single(t2s_comm *c) {
  c->local_world = 1;
  if (!env_int("SLURM_LOCALID", &c->local_rank) && !env_int("LOCAL_RANK", &c->local_rank))
    c->local_rank = 0;
}

/* Every rank's host name, so that a rank that outlives a peer can say where the peer ran
 * (a node that vanished prints nothing itself). Waited for with the deadline: a rank
 * that never starts must not hang the others here either. */
static t2s_status gather_hosts(t2s_comm *c, t2s_error *err) {
  c->hosts = calloc((size_t)c->world, sizeof *c->hosts);
  if (c->hosts == NULL) return t2s_error_set(err, T2S_ERR_NOMEM, "dist: out of host memory");
  MPI_Request req;
  int rc = MPI_Iallgather(c->host, (int)sizeof c->host, MPI_CHAR, c->hosts, (int)sizeof c->host,
                          MPI_CHAR, t2s__comm_mpi(c), &req);
  if (rc != MPI_SUCCESS) return t2s__mpi_fail(c, rc, "MPI_Iallgather (host names)", err);
  t2s_status st = t2s__mpi_wait(c, t2s__comm_mpi(c), &req, 1, "gathering the host names", err);
  for (int r = 0; st == T2S_OK && r < c->world; r++) c->hosts[r][sizeof c->host - 1] = '\0';
  return st;
}

static t2s_status mpi_start(t2s_comm *c, t2s_error *err) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    /* FUNNELED: only the training thread calls MPI (prefetch threads never do). */
    int provided = 0;
    int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS)
      return t2s_error_set(err, T2S_ERR_COMM,
                           "MPI_Init_thread failed (code %d): check the launcher (mpirun, srun "
                           "--mpi=pmix) and that Open MPI is installed on every node", rc);
    c->mpi_initialized_here = 1;
  }
  MPI_Comm *comm = malloc(sizeof *comm);
  if (comm == NULL) return t2s_error_set(err, T2S_ERR_NOMEM, "dist: out of host memory");
  /* A private duplicate so that the errors-return handler and our collectives never
   * interfere with other users of MPI_COMM_WORLD. */
  int rc = MPI_Comm_dup(MPI_COMM_WORLD, comm);
  if (rc != MPI_SUCCESS) {
    free(comm);
    return t2s__mpi_fail(c, rc, "MPI_Comm_dup(MPI_COMM_WORLD)", err);
  }
  c->mpi_comm = comm;
  MPI_Comm_set_errhandler(*comm, MPI_ERRORS_RETURN);
  MPI_Comm_rank(*comm, &c->rank);
  MPI_Comm_size(*comm, &c->world);
  t2s_status st = gather_hosts(c, err);
  return st == T2S_OK ? local_rank_mpi(c, err) : st;
}

/* GPU = local rank modulo the visible devices. Two ranks of a node on one GPU would
 * make NCCL fail obscurely later, so it is refused here with the counts. */
static t2s_status choose_gpu(t2s_comm *c, t2s_error *err) {
  char who[128];
  int n = t2s_cuda_device_count();
  if (n <= 0)
    return t2s_error_set(err, T2S_ERR_UNSUPPORTED,
                         "%s: the run asks for CUDA but no GPU is visible (%s); use device: cpu",
                         t2s__comm_who(c, who, sizeof who),
                         t2s_cuda_built() ? "check CUDA_VISIBLE_DEVICES and the driver"
                                          : "this build has no CUDA backend");
  if (c->world > 1 && c->local_world > n)
    return t2s_error_set(err, T2S_ERR_INVALID,
                         "%s: %d ranks on this node but only %d visible GPU(s): start one rank per "
                         "GPU (mpirun -np / srun --ntasks-per-node)",
                         t2s__comm_who(c, who, sizeof who), c->local_world, n);
  c->gpu = n == 1 ? 0 : c->local_rank % n;
  t2s_status st = t2s_cuda_set_device(c->gpu, err);
  if (st == T2S_OK) st = t2s_cuda_device_name(c->gpu_pci, sizeof c->gpu_pci, err);
  return st;
}

static void log_start(const t2s_comm *c) {
  char dev[96];
  if (c->gpu >= 0) snprintf(dev, sizeof dev, "cuda:%d (PCI %s)", c->gpu, c->gpu_pci);
  else snprintf(dev, sizeof dev, "cpu");
  fprintf(stderr, "t2sda dist: host %s rank %d/%d local rank %d/%d device %s backend %s\n",
          c->host, c->rank, c->world, c->local_rank, c->local_world, dev,
          t2s_comm_backend_name(c->backend));
  fflush(stderr);
}

t2s_status t2s_dist_init(t2s_comm *c, const t2s_dist_cfg *cfg, t2s_error *err) {
  memset(c, 0, sizeof *c);
  c->world = 1;
  c->gpu = -1;
  c->timeout_s = cfg->timeout_s;
  snprintf(c->timeout_setting, sizeof c->timeout_setting, "%s",
           cfg->timeout_setting ? cfg->timeout_setting : "T2S_COMM_TIMEOUT=SECONDS in the environment");
  if (gethostname(c->host, sizeof c->host - 1) != 0) snprintf(c->host, sizeof c->host, "?");
  t2s_status st = T2S_OK;
  if (launched_by_mpi()) st = mpi_start(c, err);
  else local_rank_single(c);
  if (st == T2S_OK && cfg->device == T2S_DEV_CUDA) st = choose_gpu(c, err);
  int one_rank_nccl = c->world == 1 && cfg->nccl_one_rank && cfg->device == T2S_DEV_CUDA;
  if (st == T2S_OK && (c->world > 1 || one_rank_nccl)) {
    /* one rank: t2s__nccl_create needs no MPI (the id broadcast is the identity) */
    c->backend = cfg->device == T2S_DEV_CUDA ? T2S_COMM_NCCL : T2S_COMM_MPI;
    if (c->backend == T2S_COMM_NCCL)
      st = t2s__nccl.create ? t2s__nccl.create(c, err) : t2s_slot_missing(err, "the NCCL communicator", T2S_DEV_CUDA);
  }
  if (st != T2S_OK) {
    /* The ranks may fail differently (one has no GPU): each reports its own reason. */
    return st;
  }
  if (!cfg->quiet) log_start(c);
  return T2S_OK;
}

void t2s_dist_finalize(t2s_comm *c) {
  free(c->hosts);
  c->hosts = NULL;
  if (c->nccl) t2s__nccl.destroy(c->nccl);
  c->nccl = NULL;
  if (c->mpi_comm) {
    MPI_Comm_free((MPI_Comm *)c->mpi_comm);
    free(c->mpi_comm);
    c->mpi_comm = NULL;
  }
  if (c->mpi_initialized_here) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
    c->mpi_initialized_here = 0;
  }
}

void t2s_dist_attach(t2s_comm *c, t2s_ctx *ctx, int sync_bn) {
  ctx->stat_allreduce = c->world > 1 ? t2s_dist_stat_allreduce : NULL;
  ctx->stat_user = c;
  ctx->sync_bn = sync_bn;
}

/* ---- collectives ----------------------------------------------------------------------- */

t2s_status t2s_dist_barrier(t2s_comm *c, t2s_error *err) {
  if (c->world == 1) return T2S_OK;
  MPI_Request req;
  int rc = MPI_Ibarrier(t2s__comm_mpi(c), &req);
  if (rc != MPI_SUCCESS) return t2s__mpi_fail(c, rc, "MPI_Ibarrier", err);
  return t2s__mpi_wait(c, t2s__comm_mpi(c), &req, 1, "barrier", err);
}

t2s_status t2s_dist_allreduce_f64(t2s_comm *c, double *buf, size_t n, t2s_error *err) {
  if (c->world == 1 || n == 0) return T2S_OK;
  return t2s__mpi_allreduce(c, t2s__comm_mpi(c), buf, n, MPI_DOUBLE, MPI_SUM,
                            "all-reduce (sum of doubles)", err);
}

t2s_status t2s_dist_allreduce_i64(t2s_comm *c, int64_t *buf, size_t n, t2s_error *err) {
  if (c->world == 1 || n == 0) return T2S_OK;
  return t2s__mpi_allreduce(c, t2s__comm_mpi(c), buf, n, MPI_INT64_T, MPI_SUM,
                            "all-reduce (sum of int64)", err);
}

t2s_status t2s_dist_allreduce_f32(t2s_comm *c, t2s_device dev, float *buf, size_t n,
                                  t2s_error *err) {
  t2s_status st = t2s_dist_allreduce_f32_start(c, dev, buf, n, err);
  return st == T2S_OK ? t2s_dist_wait(c, err) : st;
}

/* NCCL is used whenever it exists (also with one rank: nccl_one_rank), so that a
 * one-GPU machine runs the real device collective. */
t2s_status t2s_dist_allreduce_f32_start(t2s_comm *c, t2s_device dev, float *buf, size_t n,
                                        t2s_error *err) {
  if (n == 0) return T2S_OK;
  if (dev == T2S_DEV_CUDA && c->backend == T2S_COMM_NCCL)
    return t2s__nccl.allreduce_start(c, buf, n, err);
  if (c->world == 1) return T2S_OK;
  if (dev == T2S_DEV_CUDA) {
    char who[128];
    return t2s_error_set(err, T2S_ERR_INVALID,
                         "%s: all-reduce of device memory on the %s backend: initialise the "
                         "communicator with device cuda",
                         t2s__comm_who(c, who, sizeof who), t2s_comm_backend_name(c->backend));
  }
  return t2s__mpi_allreduce(c, t2s__comm_mpi(c), buf, n, MPI_FLOAT, MPI_SUM,
                            "all-reduce (sum of floats)", err);
}

t2s_status t2s_dist_wait(t2s_comm *c, t2s_error *err) {
  return c->backend == T2S_COMM_NCCL ? t2s__nccl.wait(c, err) : T2S_OK;
}

t2s_status t2s_dist_max_f64(t2s_comm *c, double *buf, size_t n, t2s_error *err) {
  if (c->world == 1 || n == 0) return T2S_OK;
  return t2s__mpi_allreduce(c, t2s__comm_mpi(c), buf, n, MPI_DOUBLE, MPI_MAX,
                            "all-reduce (maximum of doubles)", err);
}

t2s_status t2s_dist_stat_allreduce(void *user, double *buf, size_t n, t2s_error *err) {
  return t2s_dist_allreduce_f64(user, buf, n, err);
}

t2s_status t2s_dist_sum_i64(void *user, int64_t *buf, size_t n, t2s_error *err) {
  return t2s_dist_allreduce_i64(user, buf, n, err);
}

t2s_status t2s_dist_bcast(t2s_comm *c, void *buf, size_t bytes, int root, t2s_error *err) {
  if (c->world == 1 || bytes == 0) return T2S_OK;
  for (size_t off = 0; off < bytes; off += T2S_MPI_CHUNK) {
    size_t len = bytes - off < T2S_MPI_CHUNK ? bytes - off : T2S_MPI_CHUNK;
    MPI_Request req;
    int rc = MPI_Ibcast((char *)buf + off, (int)len, MPI_BYTE, root, t2s__comm_mpi(c), &req);
    if (rc != MPI_SUCCESS) return t2s__mpi_fail(c, rc, "MPI_Ibcast", err);
    t2s_status st = t2s__mpi_wait(c, t2s__comm_mpi(c), &req, 1, "broadcast", err);
    if (st != T2S_OK) return st;
  }
  return T2S_OK;
}

t2s_status t2s_dist_bcast_params(t2s_comm *c, t2s_params *p, t2s_error *err) {
  if (c->world == 1) return T2S_OK;
  if (!p->finalized)
    return t2s_error_set(err, T2S_ERR_INVALID, "dist: broadcast of parameters before finalize");
  size_t pb = p->numel * sizeof(float), bb = p->buf_numel * sizeof(float);
  if (p->device == T2S_DEV_CUDA) {
    t2s_status st = t2s__nccl.bcast(c, p->data, pb, 0, err);
    return st == T2S_OK ? t2s__nccl.bcast(c, p->buf_data, bb, 0, err) : st;
  }
  t2s_status st = t2s_dist_bcast(c, p->data, pb, 0, err);
  return st == T2S_OK ? t2s_dist_bcast(c, p->buf_data, bb, 0, err) : st;
}

t2s_status t2s_dist_check_all(t2s_comm *c, t2s_status local, const char *local_msg,
                              t2s_error *err) {
  char who[128];
  if (c->world == 1) {
    if (local == T2S_OK) return T2S_OK;
    return t2s_error_set(err, local, "%s", local_msg ? local_msg : t2s_status_name(local));
  }
  /* MAXLOC over (failed, rank) gives the lowest failing rank; a sum counts them. */
  struct { int failed, rank; } mine = {local != T2S_OK, c->rank};
  int64_t n_failed = local != T2S_OK;
  t2s_status st = t2s__mpi_allreduce(c, t2s__comm_mpi(c), &mine, 1, MPI_2INT, MPI_MAXLOC,
                                     "failure check (which rank failed)", err);
  if (st == T2S_OK) st = t2s_dist_allreduce_i64(c, &n_failed, 1, err);
  if (st != T2S_OK) return st;
  if (!mine.failed) return T2S_OK;
  struct { int status; char msg[T2S_ERROR_MAX]; } report;
  memset(&report, 0, sizeof report);
  report.status = (int)local;
  if (c->rank == mine.rank)
    snprintf(report.msg, sizeof report.msg, "%s: %s", t2s__comm_who(c, who, sizeof who),
             local_msg ? local_msg : t2s_status_name(local));
  st = t2s_dist_bcast(c, &report, sizeof report, mine.rank, err);
  if (st != T2S_OK) return st;
  if (n_failed > 1)
    return t2s_error_set(err, (t2s_status)report.status, "%s (and %lld other rank(s) failed)",
                         report.msg, (long long)(n_failed - 1));
  return t2s_error_set(err, (t2s_status)report.status, "%s", report.msg);
}

void t2s_dist_abort(t2s_comm *c, const char *msg) {
  /* Messages from this module already start with "rank R of N (host H)"; others get
   * the rank from the second line. */
  char who[128];
  fprintf(stderr, "t2sda: %s\n", msg);
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  int stop_all = initialized && !finalized && c->world > 1;
  fprintf(stderr, "t2sda: %s is stopping%s\n", t2s__comm_who(c, who, sizeof who),
          stop_all ? " all ranks" : "");
  fflush(stderr);
  if (stop_all) MPI_Abort(MPI_COMM_WORLD, 1);
}

const t2s_nccl_slots t2s__nccl = {
    T2S_CUDA_SLOT(t2s__nccl_create),          T2S_CUDA_SLOT(t2s__nccl_destroy),
    T2S_CUDA_SLOT(t2s__nccl_bcast),           T2S_CUDA_SLOT(t2s__nccl_allreduce_start),
    T2S_CUDA_SLOT(t2s__nccl_wait),            T2S_CUDA_SLOT(t2s__nccl_bucket_start),
    T2S_CUDA_SLOT(t2s__nccl_buckets_join)};
