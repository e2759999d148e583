/* Bucketed gradient averaging overlapped with backward (see grad_sync.h). */
#include <stdlib.h>
#include <string.h>

#include "dist/comm_internal.h"
#include "dist/grad_sync.h"

typedef struct grad_bucket {
  size_t begin, end;   /* element range in the flat gradient buffer */
  int pending;         /* parameters of the bucket still waiting for a backward node */
} grad_bucket;

struct t2s_grad_sync {
  t2s_comm *comm;
  t2s_params *params;
  MPI_Comm mpi;              /* private duplicate (MPI backend) */
  int has_mpi;
  int n;                     /* trainable and frozen parameters, by offset */
  const t2s_param **by_offset;
  int *bucket_of;            /* per parameter (offset order) */
  int *uses;                 /* tape uses not yet run backward, per parameter */
  grad_bucket *buckets;
  int n_buckets;
  MPI_Request *reqs;         /* one per bucket */
  int next;                  /* first bucket not started */
  int started_early;
  int armed;
  t2s_ctx *ctx;
  t2s_node_hook prev_hook;
  void *prev_user;
  t2s_error err;             /* first failure inside the hook, reported by finish */
  double wait_s;             /* time spent in finish, accumulated */
};

static int by_offset_cmp(const void *a, const void *b) {
  size_t x = (*(const t2s_param *const *)a)->offset, y = (*(const t2s_param *const *)b)->offset;
  return x < y ? -1 : x > y;
}

/* Buckets are cut at parameter boundaries once they hold at least `cap` elements. */
static t2s_status make_buckets(t2s_grad_sync *s, size_t cap, t2s_error *err) {
  s->buckets = calloc((size_t)(s->n ? s->n : 1), sizeof *s->buckets);
  if (s->buckets == NULL) return t2s_error_set(err, T2S_ERR_NOMEM, "grad sync: out of memory");
  size_t begin = 0;
  for (int i = 0; i < s->n; i++) {
    const t2s_param *q = s->by_offset[i];
    size_t end = q->offset + (size_t)t2s_numel(&q->t);
    s->bucket_of[i] = s->n_buckets;
    if (end - begin >= cap || i == s->n - 1) {
      s->buckets[s->n_buckets++] = (grad_bucket){begin, end, 0};
      begin = end;
    }
  }
  return T2S_OK;
}

t2s_status t2s_grad_sync_create(t2s_grad_sync **out, t2s_comm *c, t2s_params *p,
                                size_t bucket_bytes, t2s_error *err) {
  *out = NULL;
  if (!p->finalized)
    return t2s_error_set(err, T2S_ERR_INVALID, "grad sync: the parameters are not finalised");
  t2s_grad_sync *s = calloc(1, sizeof *s);
  if (s == NULL) return t2s_error_set(err, T2S_ERR_NOMEM, "grad sync: out of memory");
  s->comm = c;
  s->params = p;
  s->n = p->count;
  size_t n = (size_t)(s->n ? s->n : 1);
  s->by_offset = malloc(n * sizeof *s->by_offset);
  s->bucket_of = malloc(n * sizeof *s->bucket_of);
  s->uses = malloc(n * sizeof *s->uses);
  s->reqs = malloc(n * sizeof *s->reqs);
  if (!s->by_offset || !s->bucket_of || !s->uses || !s->reqs) {
    t2s_grad_sync_destroy(s);
    return t2s_error_set(err, T2S_ERR_NOMEM, "grad sync: out of memory");
  }
  for (int i = 0; i < s->n; i++) s->by_offset[i] = p->items[i];
  qsort(s->by_offset, (size_t)s->n, sizeof *s->by_offset, by_offset_cmp);
  size_t cap = (bucket_bytes ? bucket_bytes : T2S_GRAD_BUCKET_BYTES_DEFAULT) / sizeof(float);
  t2s_status st = make_buckets(s, cap ? cap : 1, err);
  if (st == T2S_OK && c->backend == T2S_COMM_MPI) {
    int rc = MPI_Comm_dup(t2s__comm_mpi(c), &s->mpi);
    if (rc != MPI_SUCCESS) st = t2s__mpi_fail(c, rc, "MPI_Comm_dup (gradient buckets)", err);
    else s->has_mpi = 1, MPI_Comm_set_errhandler(s->mpi, MPI_ERRORS_RETURN);
  }
  if (st != T2S_OK) {
    t2s_grad_sync_destroy(s);
    return st;
  }
  *out = s;
  return T2S_OK;
}

void t2s_grad_sync_destroy(t2s_grad_sync *s) {
  if (s == NULL) return;
  if (s->has_mpi) MPI_Comm_free(&s->mpi);
  free(s->by_offset);
  free(s->bucket_of);
  free(s->uses);
  free(s->buckets);
  free(s->reqs);
  free(s);
}

int t2s_grad_sync_buckets(const t2s_grad_sync *s) { return s->n_buckets; }
int t2s_grad_sync_started_early(const t2s_grad_sync *s) { return s->started_early; }
double t2s_grad_sync_wait_seconds(const t2s_grad_sync *s) { return s->wait_s; }

/* The parameter (offset order) whose memory holds t, or -1: a tensor that points into
 * the flat parameter buffer is the parameter or a view of it. Only trainable ones. */
static int param_of(const t2s_grad_sync *s, const t2s_tensor *t) {
  if (t == NULL || !t->requires_grad || t->data == NULL) return -1;
  const float *base = s->params->data, *x = t->data;
  if (x < base || x >= base + s->params->numel) return -1;
  size_t off = (size_t)(x - base);
  int lo = 0, hi = s->n - 1;
  while (lo < hi) { /* last parameter with offset <= off */
    int mid = (lo + hi + 1) / 2;
    if (s->by_offset[mid]->offset <= off) lo = mid;
    else hi = mid - 1;
  }
  return s->by_offset[lo]->t.requires_grad ? lo : -1;
}

static t2s_status start_bucket(t2s_grad_sync *s, int b, t2s_error *err) {
  grad_bucket *k = &s->buckets[b];
  float *g = s->params->grad + k->begin;
  size_t n = k->end - k->begin;
  s->reqs[b] = MPI_REQUEST_NULL;
  if (s->comm->backend == T2S_COMM_NCCL) return t2s__nccl.bucket_start(s->comm, s->ctx, g, n, err);
  if (s->comm->backend != T2S_COMM_MPI || n == 0) return T2S_OK;
  if (n > (size_t)1 << 30)
    return t2s_error_set(err, T2S_ERR_INVALID, "grad sync: bucket of %zu floats is too large", n);
  int rc = MPI_Iallreduce(MPI_IN_PLACE, g, (int)n, MPI_FLOAT, MPI_SUM, s->mpi, &s->reqs[b]);
  return rc == MPI_SUCCESS ? T2S_OK : t2s__mpi_fail(s->comm, rc, "MPI_Iallreduce (gradients)", err);
}

/* Starts the ready prefix of buckets, in order. */
static t2s_status start_ready(t2s_grad_sync *s, int all, t2s_error *err) {
  while (s->next < s->n_buckets && (all || s->buckets[s->next].pending == 0)) {
    t2s_status st = start_bucket(s, s->next, err);
    if (st != T2S_OK) return st;
    s->next++;
  }
  return T2S_OK;
}

static void on_backward_node(void *user, const t2s_node *node) {
  t2s_grad_sync *s = user;
  if (s->armed && s->err.status == T2S_OK) {
    int before = s->next;
    for (int i = 0; i < node->n_in; i++) {
      int q = param_of(s, node->in[i]);
      if (q >= 0 && s->uses[q] > 0 && --s->uses[q] == 0) s->buckets[s->bucket_of[q]].pending--;
    }
    if (start_ready(s, 0, &s->err) == T2S_OK) s->started_early += s->next - before;
    /* Open MPI progresses non-blocking collectives only inside MPI calls: a test
     * per backward node keeps the started buckets moving while backward computes. */
    if (s->has_mpi && s->next > 0) {
      int done;
      MPI_Testall(s->next, s->reqs, &done, MPI_STATUSES_IGNORE);
    }
  }
  if (s->prev_hook) s->prev_hook(s->prev_user, node);
}

t2s_status t2s_grad_sync_begin(t2s_grad_sync *s, t2s_ctx *ctx, int last, t2s_error *err) {
  if (!last) return T2S_OK;
  if (s->armed)
    return t2s_error_set(err, T2S_ERR_INVALID,
                         "grad sync: begin called twice without finish (only the last backward "
                         "of an iteration passes last = 1)");
  t2s_comm_backend b = s->comm->backend;
  if (ctx->device != s->params->device ||
      (b == T2S_COMM_NCCL && ctx->device != T2S_DEV_CUDA) ||
      (b == T2S_COMM_MPI && ctx->device != T2S_DEV_CPU))
    return t2s_error_set(err, T2S_ERR_INVALID,
                         "grad sync: the context runs on %s, the parameters live on %s and the "
                         "communicator is %s: they must agree (NCCL for CUDA runs, MPI for the CPU)",
                         t2s_device_name(ctx->device), t2s_device_name(s->params->device),
                         t2s_comm_backend_name(s->comm->backend));
  memset(s->uses, 0, (size_t)s->n * sizeof *s->uses);
  for (int k = 0; k < ctx->tape_len; k++) {
    const t2s_node *node = ctx->tape[k];
    for (int i = 0; i < node->n_in; i++) {
      int q = param_of(s, node->in[i]);
      if (q >= 0) s->uses[q]++;
    }
  }
  for (int b = 0; b < s->n_buckets; b++) s->buckets[b].pending = 0;
  for (int q = 0; q < s->n; q++)
    if (s->uses[q] > 0) s->buckets[s->bucket_of[q]].pending++;
  t2s_error_clear(&s->err);
  s->next = 0;
  s->started_early = 0;
  s->ctx = ctx;
  s->prev_hook = ctx->after_backward_node;
  s->prev_user = ctx->hook_user;
  ctx->after_backward_node = on_backward_node;
  ctx->hook_user = s;
  s->armed = 1;
  /* Buckets the last loss does not reach are final already (earlier backward calls). */
  return start_ready(s, 0, err);
}

static t2s_status wait_and_average(t2s_grad_sync *s, t2s_error *err) {
  t2s_comm *c = s->comm;
  if (c->backend == T2S_COMM_NCCL) return t2s__nccl.buckets_join(c, s->ctx, err);
  if (c->backend != T2S_COMM_MPI) return T2S_OK;
  t2s_status st = t2s__mpi_wait(c, s->mpi, s->reqs, s->n_buckets, "gradient all-reduce", err);
  if (st != T2S_OK) return st;
  /* Sum -> mean. Frozen slots hold zeros and stay zero. */
  float inv = 1.0f / (float)c->world;
  float *g = s->params->grad;
  for (size_t i = 0; i < s->params->numel; i++) g[i] *= inv;
  return T2S_OK;
}

t2s_status t2s_grad_sync_finish(t2s_grad_sync *s, t2s_error *err) {
  if (!s->armed)
    return t2s_error_set(err, T2S_ERR_INVALID,
                         "grad sync: finish without begin(last = 1) before the last backward");
  t2s_ctx *ctx = s->ctx;
  if (ctx->after_backward_node != on_backward_node || ctx->hook_user != s)
    return t2s_error_set(err, T2S_ERR_INVALID,
                         "grad sync: another hook was installed after this one; finish the "
                         "sync objects in the reverse order of begin");
  ctx->after_backward_node = s->prev_hook;
  ctx->hook_user = s->prev_user;
  s->armed = 0;
  if (s->err.status != T2S_OK) return t2s_error_set(err, s->err.status, "%s", s->err.msg);
  double t0 = t2s_dist_now();
  t2s_status st = start_ready(s, 1, err);
  if (st == T2S_OK) st = wait_and_average(s, err);
  s->wait_s += t2s_dist_now() - t0;
  return st;
}
