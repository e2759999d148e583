#include "launch/run_eval.h"

#include "launch/model_config.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>

t2s_eval_cfg t2s_run_eval_cfg(const t2s_train_config *cfg, t2s_comm *comm, const char *pred_dir) {
  t2s_eval_cfg ec = {cfg->evaluation.mode,
                     {cfg->evaluation.crop[0], cfg->evaluation.crop[1]},
                     {cfg->evaluation.stride[0], cfg->evaluation.stride[1]},
                     cfg->evaluation.save_predictions, pred_dir, comm->rank, comm->world,
                     comm->world > 1 ? t2s_dist_sum_i64 : NULL, comm, NULL, NULL,
                     T2S_LABELS_NONE, NULL, 0, {0, {0, 0}, {0, 0}}};
  ec.hrda_enabled = cfg->model.hrda.enabled;
  ec.hrda = t2s_hrda_cfg_from_train_config(cfg);
  return ec;
}

int t2s_run_val_sets(const t2s_train_config *cfg, t2s_val_set_ref *out) {
  if (cfg->data.n_val_sets == 0) {
    if (cfg->data.n_val_shards == 0) return 0;
    out[0] = (t2s_val_set_ref){"", (const char(*)[T2S_CFG_PATH_MAX])cfg->data.val_shards,
                               cfg->data.n_val_shards, "data.val.shards"};
    return 1;
  }
  for (int i = 0; i < cfg->data.n_val_sets; i++) {
    const t2s_val_set_cfg *v = &cfg->data.val_sets[i];
    out[i] = (t2s_val_set_ref){"", (const char(*)[T2S_CFG_PATH_MAX])v->shards, v->n_shards, ""};
    snprintf(out[i].name, sizeof out[i].name, "%s", v->name);
    snprintf(out[i].key, sizeof out[i].key, "data.val_sets[%d].shards", i);
  }
  return cfg->data.n_val_sets;
}

void t2s_run_val_set_name(t2s_val_set_ref *set, const t2s_shard_meta *meta) {
  if (set->name[0] != '\0') return;
  snprintf(set->name, sizeof set->name, "%s", meta->domain[0] ? meta->domain : "val");
}

t2s_status t2s_run_best_by(const t2s_train_config *cfg, const t2s_val_set_ref *sets, int n, int *index,
                           t2s_error *err) {
  *index = -1;
  if (strcmp(cfg->checkpoint.best_by, "mean") == 0) return T2S_OK;
  char names[T2S_CFG_MAX_VAL_SETS * (T2S_CFG_SET_NAME_MAX + 2)] = "";
  for (int k = 0; k < n; k++) {
    if (strcmp(cfg->checkpoint.best_by, sets[k].name) == 0) {
      *index = k;
      return T2S_OK;
    }
    size_t used = strlen(names);
    snprintf(names + used, sizeof names - used, ", %s", sets[k].name);
  }
  return t2s_error_set(err, T2S_ERR_INVALID, "checkpoint.best_by: '%s' is not a validation set; use mean%s",
                       cfg->checkpoint.best_by, names);
}

static t2s_status write_json(const char *path, const t2s_seg_metrics *m, const t2s_shard_meta *meta,
                             const uint8_t *use, int64_t iteration, t2s_error *err) {
  FILE *f = fopen(path, "w");
  if (f == NULL) return t2s_error_set(err, T2S_ERR_IO, "cannot write %s: %s", path, strerror(errno));
  t2s_metrics_json(f, m, (const char(*)[32])meta->class_names, use, iteration, "");
  if (fclose(f) != 0) return t2s_error_set(err, T2S_ERR_IO, "cannot write %s: %s", path, strerror(errno));
  printf("wrote %s\n", path);
  return T2S_OK;
}

t2s_status t2s_run_eval_subsets(const t2s_train_config *cfg, const t2s_confusion *conf,
                                const t2s_shard_meta *meta, int print, const char *json_base,
                                int64_t iteration, t2s_error *err) {
  t2s_status st = T2S_OK;
  for (int k = 0; k < cfg->evaluation.n_subsets && st == T2S_OK; k++) {
    const char *name = cfg->evaluation.subsets[k];
    uint8_t use[T2S_MAX_CLASSES];
    if (!t2s_class_subset(name, meta->num_classes, use))
      return t2s_error_set(err, T2S_ERR_INVALID, "evaluation.subsets: '%s' does not apply to %d classes "
                           "(synthia16 and synthia13 need the 19 Cityscapes classes)", name, meta->num_classes);
    t2s_seg_metrics ms;
    if ((st = t2s_metrics_compute(conf, use, &ms, err)) != T2S_OK) break;
    if (print) {
      char title[64];
      snprintf(title, sizeof title, "%s: ", name);
      t2s_metrics_print(stdout, &ms, (const char(*)[32])meta->class_names, use, title);
    }
    if (json_base != NULL) {
      char path[1300];
      snprintf(path, sizeof path, "%s.%s.json", json_base, name);
      st = write_json(path, &ms, meta, use, iteration, err);
    }
    t2s_metrics_free(&ms);
  }
  return st;
}
