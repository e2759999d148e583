/* The t2sda experiment configuration: the C struct the training loop reads and
 * the schema rows (launch/train_config.c) that map YAML keys onto it. Key
 * names follow mmseg/DAFormer (docs/config.md lists every key); every key with
 * its meaning is in configs/synthetic_t2sda.yaml.
 *
 * To add a key: add the field here, one row in train_config.c, and the key
 * (with a comment) to both example configs. */
#pragma once
#include <stdbool.h>
#include <stdio.h>

#include "core/device.h"
#include "core/formats/config.h"
#include "core/nn/segmentor.h"
#include "core/optim.h"
#include "core/status.h"
#include "launch/evaluator.h"
#include "losses/pseudo_target.h"
#include "losses/pull_loss.h"
#include "losses/reweight.h"

#define T2S_CFG_NAME_MAX 128
#define T2S_CFG_PATH_MAX 512
#define T2S_CFG_MAX_SHARDS 64
#define T2S_CFG_MAX_HEAD_DILATIONS 8
#define T2S_CFG_MAX_CLASS_LIST 32
#define T2S_CFG_MAX_VAL_SETS 8
#define T2S_CFG_MAX_VAL_SET_SHARDS 16
#define T2S_CFG_SET_NAME_MAX 32

/* One named validation set of data.val_sets. */
typedef struct t2s_val_set_cfg {
  char name[T2S_CFG_SET_NAME_MAX];   /* letters, digits, '_', '-'; names mIoU.<name> */
  char shards[T2S_CFG_MAX_VAL_SET_SHARDS][T2S_CFG_PATH_MAX];
  int n_shards;
} t2s_val_set_cfg;

/* Keys whose choices are a module's own enum store that enum (the schema rows carry
 * its values: t2s_precision, t2s_norm_kind, t2s_head_type, t2s_optim_type,
 * t2s_lr_policy, t2s_pt_method, t2s_pt_space, t2s_pull_negatives, t2s_label_down,
 * t2s_reweight_apply, t2s_infer_mode). The enums below are the config's own: their
 * values are the index of the YAML spelling in the schema's choice list. */
typedef enum t2s_cfg_device {
  T2S_CFG_DEVICE_CPU, T2S_CFG_DEVICE_CUDA, T2S_CFG_DEVICE_AUTO,
} t2s_cfg_device;
typedef enum t2s_cfg_backbone {
  T2S_CFG_BACKBONE_RESNET_V1C,
  T2S_CFG_BACKBONE_MIT_B0, T2S_CFG_BACKBONE_MIT_B1, T2S_CFG_BACKBONE_MIT_B2,
  T2S_CFG_BACKBONE_MIT_B3, T2S_CFG_BACKBONE_MIT_B4, T2S_CFG_BACKBONE_MIT_B5,
} t2s_cfg_backbone;
typedef enum t2s_cfg_uda {
  T2S_CFG_UDA_SOURCE_ONLY, T2S_CFG_UDA_DACS, T2S_CFG_UDA_T2SDA,
} t2s_cfg_uda;
typedef enum t2s_cfg_hrda_view {
  T2S_CFG_HRDA_VIEW_DETAIL, T2S_CFG_HRDA_VIEW_CONTEXT, T2S_CFG_HRDA_VIEW_BOTH,
} t2s_cfg_hrda_view;
typedef enum t2s_cfg_warmup {
  T2S_CFG_WARMUP_NONE, T2S_CFG_WARMUP_LINEAR,
} t2s_cfg_warmup;

typedef enum t2s_cfg_lr_scaling {
  T2S_CFG_LRS_NONE = 0, T2S_CFG_LRS_LINEAR, T2S_CFG_LRS_SQRT
} t2s_cfg_lr_scaling;
typedef enum t2s_cfg_on_corrupt { T2S_CFG_CORRUPT_ERROR = 0, T2S_CFG_CORRUPT_SKIP } t2s_cfg_on_corrupt;
typedef enum t2s_cfg_teacher_bn { T2S_CFG_TEACHER_BN_BATCH = 0, T2S_CFG_TEACHER_BN_RUNNING } t2s_cfg_teacher_bn;

typedef struct t2s_train_config {
  char name[T2S_CFG_NAME_MAX];
  int seed;
  char work_dir[T2S_CFG_PATH_MAX];   /* "work_dirs/<name>" when left empty */
  t2s_cfg_device device;
  bool deterministic;
  t2s_precision precision;

  struct {
    char source_shards[T2S_CFG_MAX_SHARDS][T2S_CFG_PATH_MAX];
    int n_source_shards;
    char target_shards[T2S_CFG_MAX_SHARDS][T2S_CFG_PATH_MAX];
    int n_target_shards;
    char val_shards[T2S_CFG_MAX_SHARDS][T2S_CFG_PATH_MAX];
    int n_val_shards;
    t2s_val_set_cfg val_sets[T2S_CFG_MAX_VAL_SETS];  /* instead of val_shards: several sets */
    int n_val_sets;
    int samples_per_gpu;
    int workers_per_gpu;
    int crop[2];                     /* [W, H] */
    int ignore_index;
    double cat_max_ratio;            /* source crops: largest class share; 1 = off */
    double flip_prob;
    double rescale_ratio[2];         /* random rescale range; [1, 1] = off (DAFormer) */
    struct {
      bool enabled;
      double class_temp;             /* T of P(c) = softmax((1 - f_c) / T) */
      int min_pixels;                /* an image qualifies for class c above this */
    } rare_class_sampling;
    t2s_cfg_on_corrupt on_corrupt;   /* a damaged training image: stop, or replace it */
    int max_corrupt;                 /* skip: stop once more samples than this were replaced */
  } data;

  struct {
    int num_classes;
    char pretrained[T2S_CFG_PATH_MAX];
    struct {
      t2s_cfg_backbone type;
      int depth;
      int base_channels;
      int stem_channels;
      int strides[4];
      int dilations[4];
      bool contract_dilation;
      t2s_norm_kind norm;
      bool norm_eval;
      double drop_path_rate;         /* MiT stochastic depth of the last block */
    } backbone;
    struct {
      t2s_head_type type;
      int dilations[T2S_CFG_MAX_HEAD_DILATIONS];
      int n_dilations;
      int channels;
      double dropout;
      t2s_norm_kind norm;             /* DAFormer heads' BN */
      int aspp_dilations[T2S_CFG_MAX_HEAD_DILATIONS];  /* DAFormer sepaspp; empty = 1, 6, 12, 18 */
      int n_aspp_dilations;
    } decode_head;
    struct {
      bool enabled;                  /* HRDA multi-resolution training and inference */
      double context_scale;          /* s of the context crop (0.5) */
      int hr_crop_size[2];           /* detail crop [W, H] in full-resolution pixels */
      double detail_loss_weight;     /* weight of the detail CE; the fused CE gets 1 - it */
      int slide_stride[2];           /* inference: detail window stride [W, H] */
    } hrda;
  } model;

  struct {
    t2s_cfg_uda type;
    double alpha;
    t2s_cfg_teacher_bn teacher_bn;   /* teacher BN statistics: of the batch, or running */
    double pseudo_threshold;
    int pseudo_weight_ignore_top;    /* rows at a 512-px crop height (scaled) */
    int pseudo_weight_ignore_bottom;
    double color_jitter_strength;    /* brightness/contrast/saturation/hue of the mix */
    double color_jitter_probability;
    bool blur;
    double imnet_feature_dist_lambda;  /* 0 = off */
    int imnet_feature_dist_classes[T2S_CFG_MAX_CLASS_LIST];
    int n_imnet_feature_dist_classes;
    struct {
      t2s_pt_method type;
      double beta;                   /* FDA low-frequency square half-size / min(H, W) */
      t2s_pt_space color_space;
    } pseudo_target;
    struct {
      double lambda;
      int proj_dim;                  /* projection head output D */
      int num_queries;               /* per class per image */
      int num_negatives;
      double tau;
      t2s_pull_negatives negatives;
      t2s_label_down label_down;
      double majority_ratio;
      double proto_momentum;         /* EMA of class prototypes; 0 = batch prototypes */
      t2s_cfg_hrda_view hrda_view;   /* under HRDA: which view the pull reads */
    } t2s;
    struct {
      bool enabled;
      double momentum;
      double gamma;
      t2s_reweight_apply apply_to;
    } reweight;
  } uda;

  struct {
    t2s_optim_type type;
    double lr;
    double momentum;
    double weight_decay;
    double betas[2];
    double eps;
    double head_lr_mult;
    double grad_clip;                /* max global gradient norm; 0 = off */
    t2s_cfg_lr_scaling lr_scaling;   /* how lr follows the global batch */
    int base_batch;                  /* global batch the lr is stated for */
  } optimizer;

  struct {
    t2s_lr_policy policy;
    double power;
    double min_lr;
    t2s_cfg_warmup warmup;
    int warmup_iters;
    double warmup_ratio;
  } lr_config;

  struct { int max_iters; } runner;
  struct {
    int interval;                    /* 0 = off */
    t2s_infer_mode mode;
    int crop[2], stride[2];          /* sliding window [W, H] */
    char subsets[4][16];             /* extra class subsets reported (synthia16, synthia13) */
    int n_subsets;
    int save_predictions;            /* palette PNGs of the first N validation images */
  } evaluation;
  struct { int interval; } log;
  struct {
    int interval;                    /* 0 = only at the end */
    int max_keep;
    char best_by[T2S_CFG_SET_NAME_MAX];  /* "mean" or a validation set's name */
  } checkpoint;
  struct {
    double timeout;                  /* seconds a collective may take before the job stops */
    double bucket_mb;                /* gradient all-reduce bucket size */
    bool check_consistency;          /* after every step: all ranks hold identical state */
  } dist;
} t2s_train_config;

/* The schema rows (for --help-config and generic tools). */
const t2s_cfg_row *t2s_train_config_schema(int *n_rows);

/* Every key at its default (name empty, work_dir empty). */
t2s_status t2s_train_config_defaults(t2s_train_config *cfg, t2s_error *err);

/* Defaults, the YAML file, then "key.path=value" overrides; then cross-field
 * checks and work_dir resolution. The struct is large (about 100 KB): keep it
 * off small stacks. */
t2s_status t2s_train_config_load(t2s_train_config *cfg, const char *path, char **overrides,
                                 int n_overrides, t2s_error *err);

/* As load, from YAML text (the config stored in a checkpoint); `name` stands
 * for the file in messages. */
t2s_status t2s_train_config_load_text(t2s_train_config *cfg, const char *text, const char *name,
                                      char **overrides, int n_overrides, t2s_error *err);

/* The resolved config as nested YAML, every key included. */
t2s_status t2s_train_config_dump(const t2s_train_config *cfg, FILE *out, t2s_error *err);
/* Loads as t2s_train_config_load and writes the dump with a "# FILE:LINE",
 * "# override 'k=v'" or "# default" comment on each key (--dump-config --explain). */
t2s_status t2s_train_config_explain(t2s_train_config *cfg, const char *path, char **overrides,
                                    int n_overrides, FILE *out, t2s_error *err);
t2s_status t2s_train_config_dump_string(const t2s_train_config *cfg, char **text, t2s_error *err);
