#include "launch/trainer.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/device.h"
#include "core/formats/pretrained.h"
#include "launch/evaluator.h"
#include "launch/model_config.h"
#include "launch/run_eval.h"
#include "launch/train_checkpoint.h"
#include "launch/train_workdir.h"

static volatile sig_atomic_t stop_requested = 0;

void t2s_trainer_request_stop(void) { stop_requested = 1; }

static int is_root(const t2s_trainer *t) { return t->comm.rank == 0; }
static t2s_status parse_poison(t2s_trainer *t, t2s_error *err);
static void poison(const t2s_trainer *t, t2s_uda_losses *l);

static t2s_status make_dirs(const char *path, t2s_error *err) {
  char buf[1024];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(buf, 0775) != 0 && errno != EEXIST)
      return t2s_error_set(err, T2S_ERR_IO, "cannot create directory %s: %s", buf, strerror(errno));
    *p = '/';
  }
  if (mkdir(buf, 0775) != 0 && errno != EEXIST)
    return t2s_error_set(err, T2S_ERR_IO, "cannot create work_dir %s: %s (set work_dir to a writable folder)",
                         buf, strerror(errno));
  return T2S_OK;
}

static double lr_scale(const t2s_train_config *c, int world) {
  double g = (double)world * c->data.samples_per_gpu / (double)c->optimizer.base_batch;
  switch (c->optimizer.lr_scaling) {
    case T2S_CFG_LRS_LINEAR: return g;
    case T2S_CFG_LRS_SQRT: return sqrt(g);
    default: return 1.0;
  }
}

static t2s_status build_networks(t2s_trainer *t, t2s_error *err) {
  const t2s_train_config *c = t->cfg;
  t2s_model_cfg mc;
  t2s_status st = t2s_model_cfg_from_train_config(c, &mc, err);
  if (st) return st;
  st = t2s_segmentor_build(&t->student, &mc, t->ctx->device, (uint64_t)c->seed, err);
  if (st) return st;
  if (c->model.pretrained[0] != '\0') {
    t2s_error e = {0};
    st = t2s_load_pretrained(&t->student.params, c->model.pretrained, NULL, NULL, 0, &e);
    if (st)
      return t2s_error_set(err, st, "model.pretrained: %s (fix the path, convert the file with "
                           "t2sda_convert, or set model.pretrained to \"\" for random weights)", e.msg);
  }
  /* every rank starts from rank 0's weights */
  st = t2s_dist_bcast_params(&t->comm, &t->student.params, err);
  if (st) return st;
  t2s_params_set_lr_mult(&t->student.params, "decode_head.", (float)c->optimizer.head_lr_mult);
  t2s_params_set_lr_mult(&t->student.params, "proj_head.", (float)c->optimizer.head_lr_mult);
  if (c->uda.type != T2S_CFG_UDA_SOURCE_ONLY) {
    st = t2s_segmentor_build(&t->teacher, &mc, t->ctx->device, (uint64_t)c->seed, err);
    if (!st) st = t2s_params_copy(&t->teacher.params, &t->student.params, err);
    if (st) return st;
    t->have_teacher = 1;
    if (c->uda.imnet_feature_dist_lambda > 0) {
      /* the frozen copy keeps the initial (ImageNet) weights for the feature distance */
      st = t2s_segmentor_build(&t->imnet, &mc, t->ctx->device, (uint64_t)c->seed, err);
      if (!st) st = t2s_params_copy(&t->imnet.params, &t->student.params, err);
      if (st) return st;
      for (int i = 0; i < t->imnet.params.count; i++) t->imnet.params.items[i]->t.requires_grad = 0;
      t->have_imnet = 1;
    }
  }
  return T2S_OK;
}

static t2s_status build_optimizer(t2s_trainer *t, t2s_error *err) {
  const t2s_train_config *c = t->cfg;
  t2s_optim_cfg oc = {c->optimizer.type,
                      c->optimizer.lr, c->optimizer.momentum, c->optimizer.weight_decay,
                      c->optimizer.betas[0], c->optimizer.betas[1], c->optimizer.eps,
                      c->optimizer.grad_clip};
  t->lr = c->optimizer.lr * lr_scale(c, t->comm.world);
  oc.lr = t->lr;
  t->sched.policy = c->lr_config.policy;
  t->sched.power = c->lr_config.power;
  t->sched.min_lr = c->lr_config.min_lr;
  t->sched.max_iters = c->runner.max_iters;
  t->sched.warmup_iters = c->lr_config.warmup == T2S_CFG_WARMUP_LINEAR ? c->lr_config.warmup_iters : 0;
  t->sched.warmup_ratio = c->lr_config.warmup_ratio;
  return t2s_optim_init(&t->optim, &t->student.params, &oc, err);
}

/* Every data set must have the model's classes: shards of 11 classes under a 19-class
 * model would train (the logits have room) and fail only at the first evaluation, with
 * no checkpoint. The shard reader has already checked /class_pixels against the
 * num_classes attribute and the shards of one data set against each other. */
static t2s_status check_classes(const t2s_trainer *t, const t2s_dataset *ds, const char *what, t2s_error *err) {
  int model = t->cfg->model.num_classes;
  if (ds->meta.num_classes == model) return T2S_OK;
  return t2s_error_set(err, T2S_ERR_INVALID,
                       "%s: %s has %d classes (num_classes attribute, /class_pixels %d wide) but "
                       "model.num_classes is %d: set model.num_classes=%d, or point %s at shards "
                       "made for %d classes", what, t2s_shard_path(ds->shards[0]), ds->meta.num_classes,
                       ds->meta.num_classes, model, ds->meta.num_classes, what, model);
}

/* Opens one training stream: its data set (kept by the trainer), the class check, then
 * the loader over it. */
static t2s_status open_stream(t2s_trainer *t, t2s_dataset **ds, t2s_loader **L, const char (*patterns)[512],
                              int n, const char *what, const t2s_loader_cfg *lc, t2s_error *err) {
  *ds = calloc(1, sizeof **ds);
  if (*ds == NULL) return t2s_error_set(err, T2S_ERR_NOMEM, "out of memory opening %s", what);
  t2s_error e = {0};
  if (t2s_dataset_open(*ds, patterns, n, what, &e) != T2S_OK) {
    free(*ds);
    *ds = NULL;
    return t2s_error_set(err, e.status, "rank %d of %d could not open its data (%s): %s", t->comm.rank,
                         t->comm.world, what, e.msg);
  }
  t2s_status st = check_classes(t, *ds, what, err);
  return st == T2S_OK ? t2s_loader_open(L, *ds, lc, err) : st;
}

/* Every validation set (data.val_sets, or the one of data.val.shards), each checked
 * for the model's classes and for images now rather than at the first evaluation;
 * then checkpoint.best_by against their names. */
static t2s_status open_val_sets(t2s_trainer *t, t2s_error *err) {
  t2s_val_set_ref sets[T2S_CFG_MAX_VAL_SETS];
  int n = t2s_run_val_sets(t->cfg, sets);
  t2s_status st = T2S_OK;
  for (int k = 0; k < n && st == T2S_OK; k++) {
    if ((st = t2s_dataset_open(&t->val[k], sets[k].shards, sets[k].n_shards, sets[k].key, err)) != T2S_OK) break;
    t->val_sets[k] = sets[k];
    t2s_run_val_set_name(&t->val_sets[k], &t->val[k].meta);
    t->n_val = k + 1;
    st = check_classes(t, &t->val[k], sets[k].key, err);
    if (st == T2S_OK && t->val[k].count == 0)
      st = t2s_error_set(err, T2S_ERR_INVALID, "%s: %s holds no images: point it at the validation "
                         "shards, or remove the set to train without it", sets[k].key,
                         t2s_shard_path(t->val[k].shards[0]));
  }
  if (st == T2S_OK) st = t2s_run_best_by(t->cfg, t->val_sets, t->n_val, &t->best_by, err);
  return st;
}

static t2s_status open_data(t2s_trainer *t, t2s_error *err) {
  const t2s_train_config *c = t->cfg;
  if (c->data.n_source_shards == 0)
    return t2s_error_set(err, T2S_ERR_INVALID, "data.source.shards is empty: training needs labelled source shards");
  t2s_loader_cfg lc = t2s_loader_cfg_default();
  lc.aug.crop_w = c->data.crop[0];
  lc.aug.crop_h = c->data.crop[1];
  lc.aug.cat_max_ratio = c->data.cat_max_ratio;
  lc.aug.ignore_index = c->data.ignore_index;
  lc.aug.flip_prob = c->data.flip_prob;
  lc.aug.rescale = c->data.rescale_ratio[0] != 1.0 || c->data.rescale_ratio[1] != 1.0;
  lc.aug.ratio_lo = c->data.rescale_ratio[0];
  lc.aug.ratio_hi = c->data.rescale_ratio[1];
  lc.samples_per_gpu = c->data.samples_per_gpu;
  lc.rank = t->comm.rank;
  lc.world_size = t->comm.world;
  lc.workers = c->data.workers_per_gpu;
  lc.seed = (uint64_t)c->seed;
  lc.stream = 0;
  lc.labels = 1;
  lc.rare_class = c->data.rare_class_sampling.enabled;
  lc.rcs_temperature = c->data.rare_class_sampling.class_temp;
  lc.rcs_min_pixels = c->data.rare_class_sampling.min_pixels;
  lc.start_iteration = t->iter;
  lc.skip_corrupt = c->data.on_corrupt == T2S_CFG_CORRUPT_SKIP;
  t2s_status st = open_stream(t, &t->src_ds, &t->src, (const char(*)[512])c->data.source_shards,
                              c->data.n_source_shards, "data.source.shards", &lc, err);
  if (st == T2S_OK && c->uda.type != T2S_CFG_UDA_SOURCE_ONLY) {
    if (c->data.n_target_shards == 0)
      return t2s_error_set(err, T2S_ERR_INVALID, "uda.type needs target images but data.target.shards is empty "
                           "(set it, or uda.type: source_only)");
    lc.stream = 1;
    lc.labels = 0;
    lc.rare_class = 0;
    lc.aug.cat_max_ratio = 1.0;
    st = open_stream(t, &t->tgt_ds, &t->tgt, (const char(*)[512])c->data.target_shards,
                     c->data.n_target_shards, "data.target.shards", &lc, err);
  }
  if (st == T2S_OK) st = open_val_sets(t, err);
  long long n_val_images = 0;
  int n_val_shards = 0;
  for (int k = 0; k < t->n_val; k++) n_val_images += t->val[k].count, n_val_shards += t->val[k].n_shards;
  char sets_note[32] = "";
  if (t->n_val > 1) snprintf(sets_note, sizeof sets_note, " in %d sets", t->n_val);
  if (st == T2S_OK && is_root(t) && !t->opts.quiet)
    printf("data: %lld source images (%d shard(s)), %lld target images (%d shard(s)), %lld validation images "
           "(%d shard(s)%s), %d classes\n", (long long)t->src_ds->count, t->src_ds->n_shards,
           (long long)(t->tgt_ds ? t->tgt_ds->count : 0), t->tgt_ds ? t->tgt_ds->n_shards : 0,
           n_val_images, n_val_shards, sets_note, c->model.num_classes);
  return st;
}

/* The data position of a stream as saved in checkpoints (/state/sampler/<stream>). */
static void sampler_state(const t2s_loader *L, int64_t iter, int64_t out[5]) {
  memset(out, 0, 5 * sizeof *out);
  if (L == NULL) return;
  t2s_sampler_state s = t2s_sampler_state_at(t2s_loader_sampler(L), iter);
  out[0] = (int64_t)s.seed;
  out[1] = s.iteration;
  out[2] = s.global_batch;
  out[3] = s.dataset_size;
  out[4] = s.rare_class;
}

/* A resumed run must read the same data set in the same order: another seed, data
 * set or sampling mode is an error; another global batch (a different number of
 * ranks) is allowed and said, since the order then follows the new batch. */
static t2s_status check_sampler_resume(t2s_trainer *t, t2s_error *err) {
  static const char *what[2] = {"data.source.shards", "data.target.shards"};
  const t2s_loader *L[2] = {t->src, t->tgt};
  for (int k = 0; k < 2 && t->have_sampler_saved; k++) {
    if (L[k] == NULL || t->sampler_saved[k][3] == 0) continue;
    int64_t now[5];
    sampler_state(L[k], t->iter, now);
    if (now[0] != t->sampler_saved[k][0] || now[3] != t->sampler_saved[k][3] || now[4] != t->sampler_saved[k][4])
      return t2s_error_set(err, T2S_ERR_INVALID,
                           "resume: %s now has %lld images (seed %lld, rare class sampling %s) but the "
                           "checkpoint was trained on %lld (seed %lld, %s): resume with the same data and seed, "
                           "or start a new work_dir", what[k], (long long)now[3], (long long)now[0],
                           now[4] ? "on" : "off", (long long)t->sampler_saved[k][3],
                           (long long)t->sampler_saved[k][0], t->sampler_saved[k][4] ? "on" : "off");
    if (now[2] != t->sampler_saved[k][2] && is_root(t) && k == 0 && t->resumed_world == t->comm.world)
      printf("note: the global batch was %lld and is now %lld: the data order follows the new batch\n",
             (long long)t->sampler_saved[k][2], (long long)now[2]);
  }
  return T2S_OK;
}

static void snapshot(t2s_trainer *t, t2s_train_snapshot *s) {
  memset(s, 0, sizeof *s);
  s->iteration = t->iter;
  s->world_size = t->comm.world;
  s->best_miou = t->best_miou;
  s->config_yaml = t->config_yaml;
  s->student = &t->student;
  s->teacher = t->have_teacher ? &t->teacher : NULL;
  s->optim = &t->optim;
  s->n_state = t2s_uda_state_arrays(&t->uda, s->state, T2S_TRAIN_STATE_MAX - 2);
  if (t->src) {
    /* saving: the position of each stream; loading goes through resume() */
    sampler_state(t->src, t->iter, t->sampler_saved[0]);
    sampler_state(t->tgt, t->iter, t->sampler_saved[1]);
    s->state[s->n_state++] = (t2s_state_array){"sampler/source", T2S_CKPT_I64, 1, {5, 0}, t->sampler_saved[0]};
    s->state[s->n_state++] = (t2s_state_array){"sampler/target", T2S_CKPT_I64, 1, {5, 0}, t->sampler_saved[1]};
  }
}

/* --resume auto: the newest checkpoint that opens. Passing over a newer one (latest.h5
 * damaged by a full disk or a kill during a copy) is said on stderr with the reader's
 * reason, since the iterations after the one taken are trained again. */
static t2s_status find_auto(t2s_trainer *t, char *path, size_t size, int *found, t2s_error *err) {
  char why[T2S_ERROR_MAX + 1300];
  *found = t2s_workdir_find_resume(t->cfg->work_dir, path, size, why, sizeof why);
  if (!*found && why[0] != '\0')
    return t2s_error_set(err, T2S_ERR_IO, "resume auto: no checkpoint in %s opens (%s): move the damaged "
                         "files away, resume from a copy with --resume PATH, or start over with --overwrite",
                         t->cfg->work_dir, why);
  if (why[0] != '\0' && is_root(t))
    fprintf(stderr, "WARNING: resume auto: %s\nWARNING: resuming from the older %s instead; the iterations "
            "after it are trained again\n", why, path);
  if (!*found && is_root(t) && !t->opts.quiet)
    printf("resume auto: no checkpoint in %s, starting fresh\n", t->cfg->work_dir);
  return T2S_OK;
}

/* The global batch changes with the number of ranks: the lr follows it through
 * optimizer.lr_scaling and the data order follows the new batch. */
static void note_world_change(const t2s_trainer *t, const char *path) {
  if (t->resumed_world == t->comm.world || !is_root(t)) return;
  long long b = t->cfg->data.samples_per_gpu;
  /* the checkpoint's own global batch when it saved its sampler state */
  long long was = t->have_sampler_saved ? (long long)t->sampler_saved[0][2] : t->resumed_world * b;
  printf("note: %s was written by %d rank(s) (global batch %lld); this run has %d rank(s) (global batch %lld): "
         "the base lr is now %.4g (optimizer.lr_scaling) and the data order follows the new batch\n",
         path, t->resumed_world, was, t->comm.world, t->comm.world * b, t->lr);
}

static t2s_status resume(t2s_trainer *t, t2s_error *err) {
  char path[1200];
  const char *r = t->opts.resume;
  if (strcmp(r, "auto") == 0) {
    int found = 0;
    t2s_status fs = find_auto(t, path, sizeof path, &found, err);
    if (fs || !found) return fs;
  } else {
    snprintf(path, sizeof path, "%s", r);
  }
  t2s_train_snapshot s;
  snapshot(t, &s);  /* data is not open yet: the sampler state is read below */
  t2s_status st = t2s_train_ckpt_load(path, &s, NULL, err);
  if (st) return st;
  t2s_ckpt_reader *rd = t2s_ckpt_open(path, err);
  if (rd == NULL) return err->status;
  int64_t shape[2] = {5, 0};
  if (t2s_ckpt_has(rd, "/state/sampler/source")) {
    st = t2s_ckpt_read_array(rd, "/state/sampler/source", T2S_CKPT_I64, 1, shape, t->sampler_saved[0], err);
    if (!st) st = t2s_ckpt_read_array(rd, "/state/sampler/target", T2S_CKPT_I64, 1, shape, t->sampler_saved[1], err);
    t->have_sampler_saved = st == T2S_OK;
  }
  t2s_ckpt_close(rd);
  if (st) return st;
  t->resumed_world = s.world_size;
  note_world_change(t, path);
  t->iter = s.iteration;
  t->best_miou = s.best_miou;
  if (is_root(t)) printf("resumed from %s at iteration %lld\n", path, (long long)t->iter);
  return T2S_OK;
}

/* The first line where two YAML texts differ, as "'a' here, 'b' on rank 0". */
static void first_difference(const char *mine, const char *root, char *out, size_t size) {
  while (*mine && *mine == *root) {
    const char *nm = strchr(mine, '\n'), *nr = strchr(root, '\n');
    size_t lm = nm ? (size_t)(nm - mine) : strlen(mine), lr = nr ? (size_t)(nr - root) : strlen(root);
    if (lm != lr || strncmp(mine, root, lm) != 0) break;
    mine += lm + (nm != NULL);
    root += lr + (nr != NULL);
  }
  int lm = (int)strcspn(mine, "\n"), lr = (int)strcspn(root, "\n");
  snprintf(out, size, "'%.*s' here, '%.*s' on rank 0", lm > 120 ? 120 : lm, mine, lr > 120 ? 120 : lr, root);
}

/* Every rank must train the same experiment: ranks started with different configs or
 * overrides (mpirun -np 1 ... : -np 1 ... optimizer.lr=0.05) would otherwise train
 * silently, each with its own lr. Rank 0's resolved config goes to every rank, which
 * compares it with its own; checked on every multi-rank start (it is a few KB). */
static t2s_status check_same_config(t2s_trainer *t, t2s_error *err) {
  if (t->comm.world < 2) return T2S_OK;
  int64_t len = (int64_t)strlen(t->config_yaml);
  t2s_status st = t2s_dist_bcast(&t->comm, &len, sizeof len, 0, err);
  char *root = st == T2S_OK ? calloc((size_t)len + 1, 1) : NULL;
  if (st == T2S_OK && root == NULL) st = t2s_error_set(err, T2S_ERR_NOMEM, "out of memory for rank 0's config");
  if (st == T2S_OK && is_root(t)) memcpy(root, t->config_yaml, (size_t)len);
  /* a rank that ran out of memory must still join the broadcast: it uses a scratch byte */
  char scratch = 0;
  t2s_status bs = t2s_dist_bcast(&t->comm, root ? root : &scratch, root ? (size_t)len : 0, 0, err);
  if (st == T2S_OK) st = bs;
  char msg[T2S_ERROR_MAX];
  msg[0] = '\0';
  if (st == T2S_OK && strcmp(root, t->config_yaml) != 0) {
    char diff[300];
    first_difference(t->config_yaml, root, diff, sizeof diff);
    snprintf(msg, sizeof msg, "the resolved config differs from rank 0's (first difference: %s): start every "
             "rank with the same config file and key=value overrides", diff);
    st = T2S_ERR_INVALID;
  } else if (st != T2S_OK) {
    snprintf(msg, sizeof msg, "%s", err->msg);
  }
  free(root);
  return t2s_dist_check_all(&t->comm, st, msg, err);
}

/* device: cuda needs the backend and a visible GPU; auto takes the GPU only when both
 * are there, and the CPU otherwise. */
static t2s_status choose_device(const t2s_train_config *cfg, t2s_device *dev, t2s_error *err) {
  int gpu = t2s_cuda_built() && t2s_cuda_device_count() > 0;
  *dev = T2S_DEV_CPU;
  if (cfg->device == T2S_CFG_DEVICE_CUDA && !t2s_cuda_built())
    return t2s_error_set(err, T2S_ERR_UNSUPPORTED,
                         "device: cuda, but this build has no CUDA backend (configure with "
                         "-DT2S_CUDA=ON on a machine with nvcc, or set device: cpu)");
  if (cfg->device == T2S_CFG_DEVICE_CUDA && !gpu)
    return t2s_error_set(err, T2S_ERR_UNSUPPORTED,
                         "device: cuda, but no GPU is visible to this process (check nvidia-smi and "
                         "CUDA_VISIBLE_DEVICES, or set device: cpu)");
  if (cfg->device == T2S_CFG_DEVICE_CUDA || (cfg->device == T2S_CFG_DEVICE_AUTO && gpu)) *dev = T2S_DEV_CUDA;
  return T2S_OK;
}

static t2s_status set_precision(t2s_trainer *t, t2s_error *err) {
  if (t->ctx->device != T2S_DEV_CUDA && t->cfg->precision == T2S_PRECISION_FP32) return T2S_OK;
  if (t2s_cuda_set_precision(t->ctx, t->cfg->precision) != T2S_OK)
    return t2s_error_set(err, t->ctx->err.status, "precision: %s", t->ctx->err.msg);
  return T2S_OK;
}

/* T2S_COMM_TIMEOUT in the environment replaces dist.timeout (docs/distributed.md): the
 * launch templates set it for every program of a job, and one variable that wins
 * everywhere is simpler than a rule per program. It is written into the config, so the
 * saved config and the ranks' config comparison see the limit in force, and the run
 * says so once. */
static t2s_status env_timeout(t2s_train_config *cfg, double *replaced, t2s_error *err) {
  double v = 0;
  int got = t2s_dist_env_timeout(&v);
  *replaced = NAN;
  if (got < 0)
    return t2s_error_set(err, T2S_ERR_INVALID,
                         "T2S_COMM_TIMEOUT='%s' in the environment is not a number of seconds "
                         "(>= 0; 0 waits forever): set it to e.g. 600, or unset it to use dist.timeout",
                         getenv("T2S_COMM_TIMEOUT"));
  if (got > 0 && v != cfg->dist.timeout) {
    *replaced = cfg->dist.timeout;
    cfg->dist.timeout = v;
  }
  return T2S_OK;
}

t2s_status t2s_trainer_init(t2s_trainer *t, const t2s_train_config *cfg, const t2s_train_opts *opts,
                            t2s_error *err) {
  memset(t, 0, sizeof *t);
  t->opts = *opts;
  t->best_miou = NAN;
  t2s_status pst = parse_poison(t, err);
  if (pst) return pst;
  t->cfg = malloc(sizeof *t->cfg);
  if (t->cfg == NULL) return t2s_error_set(err, T2S_ERR_NOMEM, "out of memory for the config");
  *t->cfg = *cfg;
  double replaced_timeout;
  t2s_status st = env_timeout(t->cfg, &replaced_timeout, err);
  if (st) return st;
  st = t2s_train_config_dump_string(t->cfg, &t->config_yaml, err);
  if (st) return st;
  t2s_device dev = T2S_DEV_CPU;
  if ((st = choose_device(cfg, &dev, err)) != T2S_OK) return st;
  t2s_dist_cfg dc = t2s_dist_default_cfg();
  dc.device = dev;
  dc.quiet = opts->quiet;
  /* the timeout message names the setting that decided the limit (env_timeout) */
  dc.timeout_s = t->cfg->dist.timeout;
  dc.timeout_setting = getenv("T2S_COMM_TIMEOUT") && *getenv("T2S_COMM_TIMEOUT")
                           ? "T2S_COMM_TIMEOUT=SECONDS (it replaces dist.timeout)"
                           : "the config key dist.timeout (seconds, e.g. dist.timeout=1200)";
  if ((st = t2s_dist_init(&t->comm, &dc, err)) != T2S_OK) return st;
  t->comm_up = 1;
  if (is_root(t) && !opts->quiet && !isnan(replaced_timeout))
    fprintf(stderr, "t2sda_train: T2S_COMM_TIMEOUT=%g from the environment replaces dist.timeout=%g\n",
            t->cfg->dist.timeout, replaced_timeout);
  if ((st = check_same_config(t, err)) != T2S_OK) return st;
  t->ctx = t2s_ctx_create(dev, (size_t)256 << 20, err);
  if (t->ctx == NULL) return err->status;
  t->ctx->seed = (uint64_t)cfg->seed;
  t->ctx->deterministic = cfg->deterministic;
  if ((st = set_precision(t, err)) != T2S_OK) return st;
  t2s_dist_attach(&t->comm, t->ctx, cfg->model.backbone.norm == T2S_NORM_SYNCBN);
  if (is_root(t) && (st = make_dirs(cfg->work_dir, err)) != T2S_OK) return st;
  if (is_root(t)) t2s_workdir_remove_stale(cfg->work_dir, opts->quiet ? NULL : stdout);
  if (is_root(t) && !opts->resume && !opts->overwrite && (st = t2s_workdir_check_fresh(cfg->work_dir, err)) != T2S_OK)
    return st;
  if ((st = build_networks(t, err)) != T2S_OK) return st;
  if ((st = build_optimizer(t, err)) != T2S_OK) return st;
  if ((st = t2s_uda_init(&t->uda, cfg, t->comm.rank, t->comm.world, err)) != T2S_OK) return st;
  if ((st = t2s_grad_sync_create(&t->sync, &t->comm, &t->student.params, (size_t)(cfg->dist.bucket_mb * (1 << 20)), err)) != T2S_OK) return st;
  if (opts->resume && (st = resume(t, err)) != T2S_OK) return st;
  /* every rank must have opened its data before anyone trains */
  st = open_data(t, err);
  if (st == T2S_OK) st = check_sampler_resume(t, err);
  st = t2s_dist_check_all(&t->comm, st, err->msg, err);
  if (st) return st;
  if (is_root(t)) {
    int64_t dropped = 0;
    if ((st = t2s_workdir_open_metrics(cfg->work_dir, !opts->resume, t->iter, &t->metrics, &dropped, err)) != T2S_OK)
      return st;
    if (dropped > 0)
      printf("metrics.jsonl: removed %lld line(s) of iterations after %lld (logged past the checkpoint "
             "resumed from; they are logged again)\n", (long long)dropped, (long long)t->iter);
    char jsonl[1100];
    snprintf(jsonl, sizeof jsonl, "%s/metrics.jsonl", cfg->work_dir);
    t2s_error tb_err = {0};  /* TensorBoard mirror: optional, never stops the run */
    if ((t->tb = t2s_tb_follow(jsonl, &tb_err)) == NULL) fprintf(stderr, "warning: no TensorBoard events: %s\n", tb_err.msg);
  }
  return T2S_OK;
}

t2s_status t2s_trainer_save(t2s_trainer *t, t2s_error *err) {
  if (!is_root(t)) return T2S_OK;
  t2s_train_snapshot s;
  snapshot(t, &s);
  char written[1200];
  t2s_status st = t2s_train_ckpt_rotate(t->cfg->work_dir, &s, t->cfg->checkpoint.max_keep, written,
                                        sizeof written, err);
  if (st == T2S_OK && !t->opts.quiet) printf("saved checkpoint %s\n", written);
  return st;
}

/* A metrics line that cannot be written (a full disk) is reported once per failing
 * streak on stderr; training goes on, and the checkpoint writer reports the disk
 * on its own. */
static void metrics_flush(t2s_trainer *t) {
  char path[1100];
  snprintf(path, sizeof path, "%s/metrics.jsonl", t->cfg->work_dir);
  t2s_error e = {0};
  if (t2s_metrics_flush(t->metrics, path, &e) == T2S_OK) {
    t->metrics_failing = 0;
  } else if (!t->metrics_failing) {
    fprintf(stderr, "t2sda_train: warning: %s\n", e.msg);
    t->metrics_failing = 1;
  }
  t2s_tb_sync_or_drop(&t->tb, stderr);
}

/* One set: its tables (rank 0) and its subsets; *m is left for the caller to free. */
static t2s_status evaluate_set(t2s_trainer *t, int k, t2s_seg_metrics *m, t2s_error *err) {
  const t2s_train_config *c = t->cfg;
  t2s_dataset *val = &t->val[k];
  const char *name = t->val_sets[k].name;
  int several = t->n_val > 1;
  char pred_dir[1100];
  /* named like t2sda_eval's: iteration, model (the student is evaluated here), mode[, set] */
  snprintf(pred_dir, sizeof pred_dir, "%s/predictions_%08lld_student_%s%s%s", c->work_dir, (long long)t->iter,
           c->evaluation.mode == T2S_INFER_SLIDE ? "slide" : "whole", several ? "_" : "", several ? name : "");
  t2s_eval_cfg ec = t2s_run_eval_cfg(c, &t->comm, pred_dir);
  ec.progress = is_root(t) && !t->opts.quiet ? stdout : NULL;
  ec.what = t->val_sets[k].key;
  if (ec.save_predictions && is_root(t) && make_dirs(pred_dir, err) != T2S_OK) return err->status;
  t2s_confusion conf;
  t2s_status st = t2s_confusion_init(&conf, val->meta.num_classes, c->data.ignore_index, err);
  if (st) return st;
  st = t2s_evaluate(t->ctx, &t->student, val, &ec, &conf, err);
  if (st == T2S_OK && (st = t2s_metrics_compute(&conf, NULL, m, err)) == T2S_OK) {
    if (is_root(t) && !t->opts.quiet) {
      char title[128];
      snprintf(title, sizeof title, "evaluation at iteration %lld, %s%s", (long long)t->iter,
               several ? name : "", several ? ": " : "");
      t2s_metrics_print(stdout, m, (const char(*)[32])val->meta.class_names, NULL, title);
    }
    st = t2s_run_eval_subsets(c, &conf, &val->meta, is_root(t) && !t->opts.quiet, NULL, t->iter, err);
    if (st != T2S_OK) t2s_metrics_free(m);
  }
  t2s_confusion_free(&conf);
  return st;
}

/* One set keeps the single-set metrics line (aAcc, mIoU, IoU.<class>, ...) of runs
 * before data.val_sets; several sets write mIoU.<set> etc. and their mean as mIoU. */
static void log_sets(t2s_trainer *t, const t2s_seg_metrics *m, const double *miou, double mean) {
  char names[T2S_CFG_MAX_VAL_SETS][T2S_CFG_SET_NAME_MAX];
  for (int k = 0; k < t->n_val; k++) snprintf(names[k], sizeof names[k], "%s", t->val_sets[k].name);
  const char(*classes)[32] = (const char(*)[32])t->val[0].meta.class_names;
  if (t->n_val > 1 && !t->opts.quiet) {
    char title[64];
    snprintf(title, sizeof title, "evaluation at iteration %lld, ", (long long)t->iter);
    t2s_metrics_print_sets(stdout, t->n_val, (const char(*)[32])names, miou, mean, title);
  }
  if (t->metrics == NULL) return;
  if (t->n_val == 1) t2s_metrics_json(t->metrics, &m[0], classes, NULL, t->iter, "");
  else t2s_metrics_json_sets(t->metrics, t->n_val, m, (const char(*)[32])names, classes, t->iter, mean);
  metrics_flush(t);
}

t2s_status t2s_trainer_evaluate(t2s_trainer *t, double *miou, t2s_error *err) {
  *miou = NAN;
  if (t->n_val == 0) return T2S_OK;
  t2s_seg_metrics m[T2S_CFG_MAX_VAL_SETS];
  double set_miou[T2S_CFG_MAX_VAL_SETS] = {0};
  int done = 0;
  t2s_status st = T2S_OK;
  for (; done < t->n_val && st == T2S_OK; done++) {
    if ((st = evaluate_set(t, done, &m[done], err)) != T2S_OK) break;
    set_miou[done] = m[done].miou;
  }
  if (st == T2S_OK) {
    double mean = t2s_metrics_mean_defined(set_miou, t->n_val);
    *miou = t->best_by < 0 ? mean : set_miou[t->best_by];
    if (is_root(t)) log_sets(t, m, set_miou, mean);
  }
  for (int k = 0; k < done; k++) t2s_metrics_free(&m[k]);
  return st;
}

/* Images per iteration over all ranks and both domains (UDA reads a target batch too). */
static double images_per_iter(const t2s_trainer *t) {
  return (double)t->cfg->data.samples_per_gpu * t->comm.world * (t->tgt ? 2 : 1);
}

static void log_progress(t2s_trainer *t, const t2s_uda_losses *l, double lr, double dt_total) {
  const t2s_train_config *c = t->cfg;
  t2s_rate_add(&t->rate, dt_total, (double)(t->iter + 1));
  double its = t2s_rate_per_s(&t->rate);
  if (!isfinite(its)) its = (double)(t->iter + 1 - t->iter_start) / dt_total;  /* first point */
  double ips = its * images_per_iter(t);
  char eta[32], v[5][32];
  t2s_format_eta(eta, sizeof eta, (double)(c->runner.max_iters - t->iter - 1) / its);
  const double terms[5] = {l->total, l->src, l->mix, l->fd, l->t2s};
  for (int k = 0; k < 5; k++) t2s_format_loss(v[k], sizeof v[k], terms[k]);
  if (!t->opts.quiet) {
    printf("iter %6lld/%lld | loss %s (src %s", (long long)t->iter + 1, (long long)c->runner.max_iters, v[0], v[1]);
    if (c->uda.type != T2S_CFG_UDA_SOURCE_ONLY) printf(" mix %s", v[2]);
    if (t->have_imnet) printf(" fd %s", v[3]);
    if (c->uda.type == T2S_CFG_UDA_T2SDA) printf(" t2s %s", v[4]);
    printf(")");
    if (c->uda.type != T2S_CFG_UDA_SOURCE_ONLY) printf(" q %.3f", l->q);
    if (t->corrupt_skipped > 0) printf(" | %lld damaged skipped", (long long)t->corrupt_skipped);
    printf(" | lr %.2e | %.2f img/s | eta %s\n", lr, ips, eta);
    fflush(stdout);
  }
  if (t->metrics) {
    fprintf(t->metrics,
            "{\"iteration\": %lld, \"loss\": %.6g, \"loss_src\": %.6g, \"loss_mix\": %.6g, "
            "\"loss_fd\": %.6g, \"loss_t2s\": %.6g, \"q\": %.6g, \"lr\": %.6g, \"images_per_s\": %.4f, "
            "\"time\": %.3f",
            (long long)t->iter + 1, l->total, l->src, l->mix, l->fd, l->t2s, l->q, lr, ips, dt_total);
    if (c->data.on_corrupt == T2S_CFG_CORRUPT_SKIP)
      fprintf(t->metrics, ", \"corrupt_skipped\": %lld", (long long)t->corrupt_skipped);
    fputs("}\n", t->metrics);
    metrics_flush(t);
  }
}

static const char *bad_term(const t2s_uda_losses *l) {
  if (!isfinite(l->src)) return "loss_src (source cross-entropy)";
  if (!isfinite(l->mix)) return "loss_mix (ClassMix cross-entropy)";
  if (!isfinite(l->fd)) return "loss_fd (ImageNet feature distance)";
  if (!isfinite(l->t2s)) return "loss_t2s (pulling loss)";
  return NULL;
}

/* The T2S_TEST_POISON_LOSS hook (trainer.h): "TERM@ITER". */
static t2s_status parse_poison(t2s_trainer *t, t2s_error *err) {
  t->poison_iter = -1;
  const char *p = t->opts.poison_loss;
  if (p == NULL || *p == '\0') return T2S_OK;
  char term[8] = {0};
  int iter = -1, used = 0;
  if (sscanf(p, "%7[a-z2]@%d%n", term, &iter, &used) != 2 || p[used] != '\0' || iter < 0 ||
      (strcmp(term, "src") && strcmp(term, "mix") && strcmp(term, "fd") && strcmp(term, "t2s")))
    return t2s_error_set(err, T2S_ERR_INVALID, "T2S_TEST_POISON_LOSS='%s': expected TERM@ITERATION with TERM "
                         "one of src, mix, fd, t2s (a test hook: unset it for real runs)", p);
  snprintf(t->poison_term, sizeof t->poison_term, "%s", term);
  t->poison_iter = iter;
  return T2S_OK;
}

static void poison(const t2s_trainer *t, t2s_uda_losses *l) {
  if (t->poison_iter < 0 || t->iter != t->poison_iter) return;
  double *term = strcmp(t->poison_term, "src") == 0   ? &l->src
                 : strcmp(t->poison_term, "mix") == 0 ? &l->mix
                 : strcmp(t->poison_term, "fd") == 0  ? &l->fd
                                                      : &l->t2s;
  *term = NAN;
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t bytes) {
  const unsigned char *p = data;
  for (size_t i = 0; i < bytes; i++) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

/* Every rank must hold the same student, teacher and method state after a step:
 * each hashes its own and the hashes are summed; a rank whose hash times the world
 * size differs from the sum disagrees with some other rank. */
/* fnv1a over device memory: through a host copy when the run is on a GPU */
static t2s_status hash_values(uint64_t *h, t2s_device dev, const void *data, size_t bytes, t2s_error *err) {
  if (dev == T2S_DEV_CPU || bytes == 0) {
    *h = fnv1a(*h, data, bytes);
    return T2S_OK;
  }
  void *copy = malloc(bytes);
  if (copy == NULL) return t2s_error_set(err, T2S_ERR_NOMEM, "consistency check: no host memory for %zu bytes", bytes);
  t2s_status st = t2s_device_copy(T2S_DEV_CPU, copy, dev, data, bytes, err);
  if (st == T2S_OK) *h = fnv1a(*h, copy, bytes);
  free(copy);
  return st;
}

static t2s_status check_consistency(t2s_trainer *t, t2s_error *err) {
  uint64_t h = 0xcbf29ce484222325ull;
  t2s_device dev = t->student.params.device;
  t2s_status hs = hash_values(&h, dev, t->student.params.data, t->student.params.numel * sizeof(float), err);
  if (!hs) hs = hash_values(&h, dev, t->student.params.buf_data, t->student.params.buf_numel * sizeof(float), err);
  if (!hs && t->have_teacher)
    hs = hash_values(&h, dev, t->teacher.params.data, t->teacher.params.numel * sizeof(float), err);
  if (hs) return hs;
  t2s_state_array st[T2S_TRAIN_STATE_MAX];
  int n = t2s_uda_state_arrays(&t->uda, st, T2S_TRAIN_STATE_MAX);
  for (int i = 0; i < n; i++) {
    size_t elems = (size_t)st[i].shape[0] * (size_t)(st[i].ndim > 1 ? st[i].shape[1] : 1);
    size_t size = st[i].type == T2S_CKPT_F64 ? 8 : st[i].type == T2S_CKPT_U8 ? 1 : 4;
    h = fnv1a(h, st[i].data, elems * size);
  }
  int64_t sum = (int64_t)h;
  t2s_status s = t2s_dist_allreduce_i64(&t->comm, &sum, 1, err);
  if (s) return s;
  int bad = (uint64_t)sum != h * (uint64_t)t->comm.world;
  char msg[160];
  snprintf(msg, sizeof msg, "after iteration %lld the weights, teacher or class statistics differ "
           "from the other ranks", (long long)t->iter);
  return t2s_dist_check_all(&t->comm, bad ? T2S_ERR_COMM : T2S_OK, msg, err);
}

/* data.on_corrupt: skip: says on stderr which damaged image each batch passed over
 * (this rank's), and returns how many. */
static int64_t count_replaced(const t2s_trainer *t, const t2s_batch *src, const t2s_batch *tgt) {
  const t2s_batch *b[2] = {src, tgt};
  int64_t n = 0;
  for (int k = 0; k < 2; k++) {
    if (b[k] == NULL || b[k]->replaced == 0) continue;
    n += b[k]->replaced;
    fprintf(stderr, "warning: rank %d, iteration %lld: %d damaged %s image(s) replaced by the next "
            "one(s) of the data set (data.on_corrupt: skip); the first: %s\n", t->comm.rank,
            (long long)t->iter, b[k]->replaced, k ? "target" : "source", b[k]->replaced_note);
  }
  return n;
}

/* One iteration: data, the method's forward/backward, checks, optimizer step. */
static t2s_status iterate(t2s_trainer *t, t2s_uda_losses *l, double *lr, t2s_error *err) {
  t2s_batch sb, tb;
  memset(&tb, 0, sizeof tb);
  t2s_status st = t2s_loader_next(t->src, t->iter, &sb, err);
  if (st == T2S_OK && t->tgt) st = t2s_loader_next(t->tgt, t->iter, &tb, err);
  if (st) return st;
  if ((st = t2s_params_zero_grad(&t->student.params, err)) != T2S_OK) return st;
  t->ctx->step = (uint64_t)t->iter;
  t->ctx->sample_offset = (int64_t)t->comm.rank * t->cfg->data.samples_per_gpu;
  t2s_uda_nets nets = {&t->student, t->have_teacher ? &t->teacher : NULL, t->have_imnet ? &t->imnet : NULL,
                       t->sync};
  st = t2s_uda_step(t->ctx, &t->uda, &nets, &sb, t->tgt ? &tb : NULL, l, err);
  t2s_ctx_end_pass(t->ctx);
  if (st) return st;
  poison(t, l);
  /* every rank sees the same verdict before anything changes: a non-finite loss, and
   * the damaged images replaced over all ranks (the same count for any rank count) */
  const char *bad = bad_term(l);
  int64_t verdict[2] = {bad != NULL, count_replaced(t, &sb, t->tgt ? &tb : NULL)};
  if (t->comm.world > 1 && (st = t2s_dist_allreduce_i64(&t->comm, verdict, 2, err)) != T2S_OK) return st;
  int64_t flag = verdict[0];
  t->corrupt_skipped += verdict[1];
  if (t->corrupt_skipped > t->cfg->data.max_corrupt)
    return t2s_error_set(err, T2S_ERR_FORMAT,
                         "iteration %lld: %lld training samples had damaged images and were replaced, "
                         "more than data.max_corrupt = %d: the shards are badly damaged; rebuild them "
                         "with t2sda_shards (stderr names each damaged file and image), or raise "
                         "data.max_corrupt", (long long)t->iter, (long long)t->corrupt_skipped,
                         t->cfg->data.max_corrupt);
  if (flag)
    return t2s_error_set(err, T2S_ERR_NUMERIC,
                         "iteration %lld: %s is not finite on %s; stopped before the optimizer step, "
                         "the last good checkpoint in %s is untouched (lower optimizer.lr or enable "
                         "optimizer.grad_clip)", (long long)t->iter, bad ? bad : "a loss term",
                         bad ? "this rank" : "another rank", t->cfg->work_dir);
  *lr = t2s_lr_at(&t->sched, t->lr, t->iter);
  if ((st = t2s_optim_step(&t->optim, *lr, NULL, err)) != T2S_OK) return st;
  if (t->cfg->dist.check_consistency && t->comm.world > 1) return check_consistency(t, err);
  return T2S_OK;
}

/* How much of the run went into waiting for the gradient all-reduce after backward. */
static void report_comm(const t2s_trainer *t) {
  if (!is_root(t) || t->opts.quiet || t->iter <= t->iter_start || t->comm.world < 2) return;
  double wall = t2s_dist_now() - t->t_start, wait = t2s_grad_sync_wait_seconds(t->sync);
  printf("communication: %.1f s of %.1f s (%.1f%%) waiting for the gradient all-reduce after backward\n",
         wait, wall, 100 * wait / wall);
}

/* "dir/file.c:line" of a call site (__FILE__ may be an absolute path). */
static const char *short_site(const char *site) {
  const char *last = NULL, *prev = NULL;
  for (const char *p = site; *p; p++)
    if (*p == '/') prev = last, last = p;
  return prev ? prev + 1 : site;
}

/* --debug-syncs: the host synchronisations of the iteration just run, per call site
 * (core/device.h), on rank 0's stdout. The counts are taken (reset) before every
 * iteration too, so evaluation and checkpoints are not counted in the next one. */
static void report_syncs(const t2s_trainer *t) {
  enum { MAX_SITES = 64 };
  t2s_sync_site s[MAX_SITES];
  int n = t2s_host_syncs_take(s, MAX_SITES);
  if (!t->opts.debug_syncs || !is_root(t)) return;
  unsigned long long back = 0, up = 0;
  for (int i = 0; i < n; i++) back += s[i].to_host, up += s[i].to_device;
  printf("host syncs in iteration %lld: %llu read-backs, %llu uploads\n", (long long)t->iter + 1, back, up);
  for (int i = 0; i < n; i++)
    printf("  %-40s read-backs %llu uploads %llu\n", short_site(s[i].site), (unsigned long long)s[i].to_host,
           (unsigned long long)s[i].to_device);
  fflush(stdout);
}

t2s_status t2s_trainer_run(t2s_trainer *t, t2s_error *err) {
  const t2s_train_config *c = t->cfg;
  t->t_start = t2s_dist_now();
  t->iter_start = t->iter;
  t2s_status st = T2S_OK;
  while (t->iter < c->runner.max_iters) {
    int64_t stop = stop_requested;
    if (t->opts.stop_after > 0 && t->iter - t->iter_start >= t->opts.stop_after) stop = 1;
    if (t->comm.world > 1 && (st = t2s_dist_allreduce_i64(&t->comm, &stop, 1, err)) != T2S_OK) return st;
    if (stop) {
      t->stop_reason = stop_requested ? 1 : 2;
      if (is_root(t))
        printf("stopping at iteration %lld (%s): saving a checkpoint\n", (long long)t->iter,
               stop_requested ? "signal" : "--stop-after");
      report_comm(t);
      return t2s_trainer_save(t, err);
    }
    t2s_uda_losses l;
    double lr = 0;
    t2s_host_syncs_take(NULL, 0);
    if ((st = iterate(t, &l, &lr, err)) != T2S_OK) return st;
    report_syncs(t);
    if (is_root(t) && ((t->iter + 1) % c->log.interval == 0 || t->iter == t->iter_start))
      log_progress(t, &l, lr, t2s_dist_now() - t->t_start);
    t->iter++;
    int last = t->iter == c->runner.max_iters;
    if (c->evaluation.interval > 0 && (t->iter % c->evaluation.interval == 0 || last)) {
      double miou;
      if ((st = t2s_trainer_evaluate(t, &miou, err)) != T2S_OK) return st;
      if (!isnan(miou) && (isnan(t->best_miou) || miou > t->best_miou)) {
        t->best_miou = miou;
        if (is_root(t)) {
          t2s_train_snapshot s;
          snapshot(t, &s);
          char path[1100];
          snprintf(path, sizeof path, "%s/best.h5", c->work_dir);
          if ((st = t2s_train_ckpt_save(path, &s, err)) != T2S_OK) return st;
        }
      }
    }
    if (last || (c->checkpoint.interval > 0 && t->iter % c->checkpoint.interval == 0))
      if ((st = t2s_trainer_save(t, err)) != T2S_OK) return st;
  }
  report_comm(t);
  return T2S_OK;
}

void t2s_trainer_free(t2s_trainer *t) {
  t2s_loader_close(t->src);
  t2s_loader_close(t->tgt);
  for (int k = 0; k < 2; k++) {
    t2s_dataset *ds = k ? t->tgt_ds : t->src_ds;
    if (ds) t2s_dataset_close(ds);
    free(ds);
  }
  for (int k = 0; k < t->n_val; k++) t2s_dataset_close(&t->val[k]);
  if (t->sync) t2s_grad_sync_destroy(t->sync);
  t2s_uda_free(&t->uda);
  if (t->optim.params) t2s_optim_free(&t->optim);
  if (t->student.params.finalized) t2s_segmentor_free(&t->student);
  if (t->have_teacher) t2s_segmentor_free(&t->teacher);
  if (t->have_imnet) t2s_segmentor_free(&t->imnet);
  t2s_ctx_destroy(t->ctx);
  if (t->metrics) fclose(t->metrics);
  t2s_tb_close(t->tb);
  if (t->comm_up) t2s_dist_finalize(&t->comm);
  free(t->config_yaml);
  free(t->cfg);
  memset(t, 0, sizeof *t);
}
