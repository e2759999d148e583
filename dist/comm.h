/* The communicator: one interface, three backends.
 *
 *   NCCL    GPU runs with more than one rank. The unique id is created on rank 0 and
 *           broadcast over MPI; device buffers are reduced on the GPU.
 *   MPI     CPU runs with more than one rank: host collectives of Open MPI.
 *   SINGLE  one process: every collective is the identity (the local values are global).
 *
 * Launch detection (the choice, and why): MPI is initialised only when a launcher
 * started the process, i.e. when one of OMPI_COMM_WORLD_SIZE (mpirun), PMIX_RANK
 * (srun --mpi=pmix, prrte), PMI_RANK / PMI_SIZE (srun --mpi=pmi2, MPICH hydra) is set,
 * or when T2S_DIST=mpi forces it. A plain `t2sda_train cfg.yaml` then never touches MPI:
 * an Open MPI singleton init would start a helper daemon and can fail in containers
 * without a network, for nothing. T2S_DIST=single forces one process even under a
 * launcher (each rank then trains alone: only for debugging). If the caller has already
 * initialised MPI, that is used and left for the caller to finalise.
 *
 * Local rank -> GPU: OMPI_COMM_WORLD_LOCAL_RANK, else the rank within
 * MPI_Comm_split_type(MPI_COMM_TYPE_SHARED), else SLURM_LOCALID, else LOCAL_RANK, else 0.
 * The GPU is local_rank modulo the visible devices, so one visible device (a scheduler
 * that sets CUDA_VISIBLE_DEVICES per task) means device 0.
 *
 * Failures never hang: every MPI collective is non-blocking and polled with a
 * deadline (cfg.timeout_s); the communicator returns errors instead of aborting
 * (MPI_ERRORS_RETURN), and each error names this rank, its host and the collective.
 * On a timeout the ranks that are waiting tell each other so (point-to-point, for a
 * short grace period), and the message names the ranks that never answered: those are
 * the stuck or dead ones.
 * Executables turn an error into t2s_dist_abort(), which stops every rank. A rank
 * killed outright is caught by mpirun itself, which names it and stops the job.
 *
 * Collectives on host memory (doubles, int64, bytes) work on every backend; on NCCL
 * runs they go through MPI (they are small: statistics, flags, metrics). */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "core/engine.h"
#include "core/params.h"
#include "core/status.h"

#ifdef __cplusplus
extern "C" {  /* dist/nccl_comm.cu includes this */
#endif

typedef enum t2s_comm_backend {
  T2S_COMM_SINGLE = 0,
  T2S_COMM_MPI,
  T2S_COMM_NCCL,
} t2s_comm_backend;

typedef struct t2s_dist_cfg {
  t2s_device device;      /* CPU: MPI host collectives; CUDA: NCCL and one GPU per rank */
  double timeout_s;       /* a collective that takes longer fails (0: wait forever) */
  int quiet;              /* no start-up line (benchmarks print their own) */
  /* how a user raises timeout_s, named in timeout messages (e.g. "dist.timeout=SECONDS");
   * NULL: the environment variable T2S_COMM_TIMEOUT */
  const char *timeout_setting;
  /* 1: a CUDA run of one process still builds an NCCL communicator (of one rank, with no
   * MPI), so that device all-reduces go through NCCL for real: the GPU check and the
   * all-reduce benchmark use it on a machine with one GPU and no mpirun. Training leaves
   * it 0 (one rank needs no collectives). Ignored on the CPU and under a launcher. */
  int nccl_one_rank;
} t2s_dist_cfg;

/* Defaults: CPU, 300 s timeout (T2S_COMM_TIMEOUT in the environment overrides it). */
t2s_dist_cfg t2s_dist_default_cfg(void);
/* T2S_COMM_TIMEOUT from the environment: 1 with *seconds when it is a number >= 0, 0 when
 * unset or empty, -1 when it is anything else (the caller says so; the launch templates
 * set it, and t2sda_train lets it replace dist.timeout). */
int t2s_dist_env_timeout(double *seconds);

typedef struct t2s_nccl t2s_nccl;  /* dist/nccl_comm.cu (CUDA builds only) */

typedef struct t2s_comm {
  t2s_comm_backend backend;
  int rank, world;
  int local_rank, local_world;
  int gpu;                /* CUDA ordinal of this rank, -1 on the CPU */
  char host[64];
  /* every rank's host name (world x 64 chars, gathered at start on multi-rank runs;
   * NULL on one process), so that a message about another rank names its machine */
  char (*hosts)[64];
  char gpu_pci[32];       /* PCI bus id of the GPU, "" on the CPU */
  double timeout_s;
  char timeout_setting[64];  /* from t2s_dist_cfg, for messages */
  int mpi_initialized_here;  /* finalize calls MPI_Finalize */
  void *mpi_comm;         /* MPI_Comm (a duplicate of MPI_COMM_WORLD), opaque here */
  t2s_nccl *nccl;
} t2s_comm;

/* Detects the launcher, initialises MPI (and NCCL on GPU runs), picks and sets this
 * rank's GPU, and logs "host, rank, local rank, device" on stderr from every rank. */
t2s_status t2s_dist_init(t2s_comm *c, const t2s_dist_cfg *cfg, t2s_error *err);
/* Frees NCCL, the communicator and (when this module started it) MPI. */
void t2s_dist_finalize(t2s_comm *c);

static inline int t2s_dist_is_root(const t2s_comm *c) { return c->rank == 0; }
static inline int t2s_dist_rank(const t2s_comm *c) { return c->rank; }
static inline int t2s_dist_world(const t2s_comm *c) { return c->world; }
const char *t2s_comm_backend_name(t2s_comm_backend b);

/* Installs the statistic all-reduce (SyncBN, class statistics) in ctx, and sync_bn.
 * With one rank stat_allreduce stays NULL (batch norm then needs no sync). */
void t2s_dist_attach(t2s_comm *c, t2s_ctx *ctx, int sync_bn);

t2s_status t2s_dist_barrier(t2s_comm *c, t2s_error *err);
/* In-place sums over ranks of host arrays. */
t2s_status t2s_dist_allreduce_f64(t2s_comm *c, double *buf, size_t n, t2s_error *err);
t2s_status t2s_dist_allreduce_i64(t2s_comm *c, int64_t *buf, size_t n, t2s_error *err);
/* In-place sum of float32 values on `dev` (device memory goes through NCCL). */
t2s_status t2s_dist_allreduce_f32(t2s_comm *c, t2s_device dev, float *buf, size_t n,
                                  t2s_error *err);
/* Non-blocking form of t2s_dist_allreduce_f32 for pipelines and benchmarks: on NCCL the
 * sum of device memory is queued on the communicator's stream and the call returns at
 * once (buf must not be touched until t2s_dist_wait); every other case completes before
 * returning, as the blocking form does. */
t2s_status t2s_dist_allreduce_f32_start(t2s_comm *c, t2s_device dev, float *buf, size_t n,
                                        t2s_error *err);
/* Waits, with the communicator's deadline, for every sum started so far (NCCL); returns
 * at once on the other backends. */
t2s_status t2s_dist_wait(t2s_comm *c, t2s_error *err);
/* In-place maxima over ranks of host doubles (e.g. the slowest rank's time). */
t2s_status t2s_dist_max_f64(t2s_comm *c, double *buf, size_t n, t2s_error *err);
/* The sums above in the callback shape (user is the t2s_comm): ctx->stat_allreduce
 * (SyncBN, the method's batch statistics) and the evaluator's confusion matrix. */
t2s_status t2s_dist_stat_allreduce(void *user, double *buf, size_t n, t2s_error *err);
t2s_status t2s_dist_sum_i64(void *user, int64_t *buf, size_t n, t2s_error *err);
/* Host bytes from `root` to every rank. */
t2s_status t2s_dist_bcast(t2s_comm *c, void *buf, size_t bytes, int root, t2s_error *err);
/* Every parameter and buffer value of p from rank 0, so that all ranks start identical
 * (p lives on the device of the run; device memory goes through NCCL). */
t2s_status t2s_dist_bcast_params(t2s_comm *c, t2s_params *p, t2s_error *err);

/* Agrees on failure: every rank passes its local status and message; when any rank
 * failed, every rank returns the first failing rank's status with "rank R (host H):
 * <its message>" (and how many ranks failed). Use after opening data, config, resume. */
t2s_status t2s_dist_check_all(t2s_comm *c, t2s_status local, const char *local_msg,
                              t2s_error *err);

/* For executables only: prints msg and "t2sda: rank R of N (host H) is stopping all
 * ranks", then stops every rank of the job with exit code 1 (MPI_Abort). On one process
 * it prints and returns, and the caller exits. */
void t2s_dist_abort(t2s_comm *c, const char *msg);

/* Seconds since an arbitrary fixed point (monotonic), for deadlines and benchmarks. */
double t2s_dist_now(void);

#ifdef __cplusplus
}
#endif
