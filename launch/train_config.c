/* The t2sda experiment schema: one row per YAML key (see train_config.h),
 * plus the checks that involve more than one key. */
#include "launch/train_config.h"

#include <float.h>
#include <stdarg.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef t2s_train_config C;

/* Enum fields are stored as int-sized C enums (the schema checks the size). */
_Static_assert(sizeof(t2s_cfg_backbone) == sizeof(int), "enum fields must be int-sized");

#define AT(f) T2S_CFG_AT(C, f)
#define ARRAY(f) T2S_CFG_ARRAY_AT(C, f)
#define COUNT(n) T2S_CFG_COUNT_AT(C, n)
#define INT_T T2S_CFG_TYPE_INT
#define FLOAT_T T2S_CFG_TYPE_FLOAT
#define BOOL_T T2S_CFG_TYPE_BOOL
#define STR_T T2S_CFG_TYPE_STRING
#define ENUM_T T2S_CFG_TYPE_ENUM
#define INTS_T T2S_CFG_TYPE_INT_LIST
#define FLOATS_T T2S_CFG_TYPE_FLOAT_LIST
#define STRS_T T2S_CFG_TYPE_STRING_LIST
#define NO_MAX_I INT_MAX
#define NO_MAX_F DBL_MAX

static const char *const device_names[] = {"cpu", "cuda", "auto", NULL};
static const char *const precision_names[] = {"fp32", "tf32", "bf16", NULL};
static const int precision_values[] = {T2S_PRECISION_FP32, T2S_PRECISION_TF32, T2S_PRECISION_BF16};
static const char *const backbone_names[] = {"resnet_v1c", "mit_b0", "mit_b1", "mit_b2",
                                             "mit_b3", "mit_b4", "mit_b5", NULL};
static const char *const depth_values[] = {"18", "34", "50", "101", "152", NULL};
static const char *const norm_names[] = {"bn", "syncbn", "frozen_bn", NULL};
static const int norm_values[] = {T2S_NORM_BN, T2S_NORM_SYNCBN, T2S_NORM_FROZEN};
static const char *const head_names[] = {"dlv2", "daformer_sepaspp", "daformer_conv1",
                                         "segformer_mlp", NULL};
static const int head_values[] = {T2S_HEAD_DLV2, T2S_HEAD_DAFORMER_SEPASPP, T2S_HEAD_DAFORMER_CONV1,
                                   T2S_HEAD_SEGFORMER_MLP};
static const char *const uda_names[] = {"source_only", "dacs", "t2sda", NULL};
static const char *const optimizer_names[] = {"sgd", "adamw", NULL};
static const int optimizer_values[] = {T2S_OPTIM_SGD, T2S_OPTIM_ADAMW};
static const char *const policy_names[] = {"poly", "constant", NULL};
static const int policy_values[] = {T2S_LR_POLY, T2S_LR_CONSTANT};
static const char *const warmup_names[] = {"none", "linear", NULL};
static const char *const pseudo_target_names[] = {"fourier", "color", "none", NULL};
static const int pseudo_target_values[] = {T2S_PT_FOURIER, T2S_PT_COLOR, T2S_PT_NONE};
static const char *const color_space_names[] = {"rgb", "lab", NULL};
static const int color_space_values[] = {T2S_PT_RGB, T2S_PT_LAB};
static const char *const negatives_names[] = {"keys", "prototypes", NULL};
static const int negatives_values[] = {T2S_PULL_NEG_KEYS, T2S_PULL_NEG_PROTOTYPES};
static const char *const label_down_names[] = {"nearest", "majority", NULL};
static const int label_down_values[] = {T2S_LABEL_DOWN_NEAREST, T2S_LABEL_DOWN_MAJORITY};
static const char *const reweight_apply_names[] = {"t2s_only", "all", NULL};
static const int reweight_apply_values[] = {T2S_REWEIGHT_T2S_ONLY, T2S_REWEIGHT_ALL};
static const char *const lr_scaling_names[] = {"none", "linear", "sqrt", NULL};
static const char *const infer_mode_names[] = {"whole", "slide", NULL};
static const int infer_mode_values[] = {T2S_INFER_WHOLE, T2S_INFER_SLIDE};
static const char *const hrda_view_names[] = {"detail", "context", "both", NULL};
static const char *const teacher_bn_names[] = {"batch", "running", NULL};
static const char *const on_corrupt_names[] = {"error", "skip", NULL};

#define SHARDS(k, f, n, what)                                                               \
  {k, STRS_T, ARRAY(f), COUNT(n), .min_len = 0, .max_len = T2S_CFG_MAX_SHARDS, .def = "[]", \
   .help = what " shard files: a glob or a list of globs/paths (HDF5 shards)"}

static const t2s_cfg_row val_set_fields[] = {
    {"name", STR_T, T2S_CFG_AT(t2s_val_set_cfg, name), .required = true,
     .help = "the set's name: letters, digits, '_' or '-'; names its mIoU.<name> metrics"},
    {"shards", STRS_T, T2S_CFG_ARRAY_AT(t2s_val_set_cfg, shards),
     T2S_CFG_COUNT_AT(t2s_val_set_cfg, n_shards), .min_len = 1,
     .max_len = T2S_CFG_MAX_VAL_SET_SHARDS, .required = true,
     .help = "its labelled shard files: a glob or a list of globs/paths"},
};

static const t2s_cfg_row schema[] = {
    {"name", STR_T, AT(name), .required = true,
     .help = "experiment name; names the work_dir, logs and checkpoints"},
    {"seed", INT_T, AT(seed), .min = 0, .max = NO_MAX_I, .def = "0",
     .help = "global seed of the counter-based RNG (same seed, same run)"},
    {"work_dir", STR_T, AT(work_dir), .def = "\"\"",
     .help = "output folder for checkpoints, metrics and logs; empty = work_dirs/<name>"},
    {"device", ENUM_T, AT(device), .choices = device_names, .def = "auto",
     .help = "backend: cpu, cuda, or auto (cuda when a GPU is visible)"},
    {"deterministic", BOOL_T, AT(deterministic), .def = "false",
     .help = "bit-reproducible kernels (slower on GPU)"},
    {"precision", ENUM_T, AT(precision), .choices = precision_names, .values = precision_values, .def = "fp32",
     .help = "activation precision: fp32, tf32 or bf16 (tf32/bf16 are CUDA settings)"},

    SHARDS("data.source.shards", data.source_shards, data.n_source_shards, "labelled source"),
    SHARDS("data.target.shards", data.target_shards, data.n_target_shards, "unlabelled target"),
    SHARDS("data.val.shards", data.val_shards, data.n_val_shards, "labelled validation"),
    {"data.val_sets", T2S_CFG_TYPE_RECORD_LIST, ARRAY(data.val_sets), COUNT(data.n_val_sets),
     .min_len = 0, .max_len = T2S_CFG_MAX_VAL_SETS, .def = "[]", .fields = val_set_fields,
     .n_fields = 2,
     .help = "several named validation sets instead of data.val.shards, each evaluated at "
             "every evaluation: a list of {name, shards}"},
    {"data.samples_per_gpu", INT_T, AT(data.samples_per_gpu), .min = 1, .max = 64, .def = "2",
     .help = "images per rank per domain per iteration"},
    {"data.workers_per_gpu", INT_T, AT(data.workers_per_gpu), .min = 0, .max = 16, .def = "2",
     .help = "prefetch threads per rank (0 = load in the training thread)"},
    {"data.crop", INTS_T, ARRAY(data.crop), .min_len = 2, .max_len = 2, .min = 8, .max = 8192,
     .def = "[512, 512]", .help = "training crop [W, H] in pixels"},
    {"data.ignore_index", INT_T, AT(data.ignore_index), .min = 0, .max = 255, .def = "255",
     .help = "label value that is not trained or evaluated"},
    {"data.cat_max_ratio", FLOAT_T, AT(data.cat_max_ratio), .min = 0, .min_open = true, .max = 1,
     .def = "0.75", .help = "source crops: retry while one class covers more than this share"},
    {"data.flip_prob", FLOAT_T, AT(data.flip_prob), .min = 0, .max = 1, .def = "0.5",
     .help = "probability of a horizontal flip"},
    {"data.rescale_ratio", FLOATS_T, ARRAY(data.rescale_ratio), .min_len = 2, .max_len = 2,
     .min = 0.1, .max = 10, .def = "[1.0, 1.0]",
     .help = "random rescale range before the crop; [1, 1] = off (DAFormer)"},
    {"data.rare_class_sampling.enabled", BOOL_T, AT(data.rare_class_sampling.enabled),
     .def = "true", .help = "DAFormer rare class sampling of source images"},
    {"data.rare_class_sampling.class_temp", FLOAT_T, AT(data.rare_class_sampling.class_temp),
     .min = 1e-4, .max = 100, .def = "0.01", .help = "temperature T of P(c) = softmax((1 - f_c) / T)"},
    {"data.rare_class_sampling.min_pixels", INT_T, AT(data.rare_class_sampling.min_pixels),
     .min = 0, .max = NO_MAX_I, .def = "3000",
     .help = "an image is drawn for class c only with more pixels of c than this"},
    {"data.on_corrupt", ENUM_T, AT(data.on_corrupt), .choices = on_corrupt_names, .def = "error",
     .help = "a training image whose chunk does not inflate or whose pixels fail the shard's "
             "CRC32: error stops the run naming the file, dataset and index; skip trains on the "
             "next image of the data set's order instead and counts it (corrupt_skipped)"},
    {"data.max_corrupt", INT_T, AT(data.max_corrupt), .min = 0, .max = NO_MAX_I, .def = "100",
     .help = "with on_corrupt: skip, stop once more samples than this were replaced (all ranks, "
             "counted since the process started)"},

    {"model.num_classes", INT_T, AT(model.num_classes), .min = 2, .max = 255, .def = "19",
     .help = "number of semantic classes"},
    {"model.pretrained", STR_T, AT(model.pretrained), .def = "\"\"",
     .help = "initial weights: .pth, .safetensors or a t2sda checkpoint .h5 (converted on the fly); empty = random init"},
    {"model.backbone.type", ENUM_T, AT(model.backbone.type), .choices = backbone_names,
     .def = "resnet_v1c", .help = "encoder: ResNet V1c (deep stem) or MiT-B0..B5"},
    {"model.backbone.depth", INT_T, AT(model.backbone.depth), .choices = depth_values,
     .min = 18, .max = 152, .def = "101", .help = "ResNet depth"},
    {"model.backbone.base_channels", INT_T, AT(model.backbone.base_channels), .min = 4,
     .max = 256, .def = "64", .help = "ResNet width of the first stage (64 = standard)"},
    {"model.backbone.stem_channels", INT_T, AT(model.backbone.stem_channels), .min = 4,
     .max = 256, .def = "64", .help = "ResNet V1c deep-stem width (64 = standard)"},
    {"model.backbone.strides", INTS_T, ARRAY(model.backbone.strides), .min_len = 4,
     .max_len = 4, .min = 1, .max = 2, .def = "[1, 2, 1, 1]",
     .help = "ResNet stride of each of the 4 stages"},
    {"model.backbone.dilations", INTS_T, ARRAY(model.backbone.dilations), .min_len = 4,
     .max_len = 4, .min = 1, .max = 16, .def = "[1, 1, 2, 4]",
     .help = "ResNet dilation of each of the 4 stages (DeepLab: output stride 8)"},
    {"model.backbone.contract_dilation", BOOL_T, AT(model.backbone.contract_dilation),
     .def = "true", .help = "first block of a dilated stage uses half the dilation (mmseg)"},
    {"model.backbone.norm", ENUM_T, AT(model.backbone.norm), .choices = norm_names, .values = norm_values, .def = "bn",
     .help = "bn (per rank; breaks rank equivalence), syncbn, or frozen_bn"},
    {"model.backbone.drop_path_rate", FLOAT_T, AT(model.backbone.drop_path_rate), .min = 0,
     .max = 1, .def = "0.1", .help = "MiT stochastic depth rate of the last block (linear from 0)"},
    {"model.backbone.norm_eval", BOOL_T, AT(model.backbone.norm_eval), .def = "false",
     .help = "keep BN layers in eval mode (running statistics) while training"},
    {"model.decode_head.type", ENUM_T, AT(model.decode_head.type), .choices = head_names, .values = head_values,
     .def = "dlv2", .help = "decoder: DeepLab-V2 ASPP sum, DAFormer, or SegFormer MLP"},
    {"model.decode_head.dilations", INTS_T, ARRAY(model.decode_head.dilations),
     COUNT(model.decode_head.n_dilations), .min_len = 1,
     .max_len = T2S_CFG_MAX_HEAD_DILATIONS, .min = 1, .max = 64, .def = "[6, 12]",
     .help = "dilations of the head's parallel 3x3 convolutions"},
    {"model.decode_head.channels", INT_T, AT(model.decode_head.channels), .min = 1,
     .max = 4096, .def = "256", .help = "decoder channels (DAFormer embedding/fusion width)"},
    {"model.decode_head.dropout", FLOAT_T, AT(model.decode_head.dropout), .min = 0, .max = 1,
     .def = "0.1", .help = "dropout before the classifier"},
    {"model.decode_head.norm", ENUM_T, AT(model.decode_head.norm), .choices = norm_names, .values = norm_values,
     .def = "bn", .help = "normalisation of the DAFormer/SegFormer heads (DAFormer: syncbn)"},
    {"model.decode_head.aspp_dilations", INTS_T, ARRAY(model.decode_head.aspp_dilations),
     COUNT(model.decode_head.n_aspp_dilations), .min_len = 0,
     .max_len = T2S_CFG_MAX_HEAD_DILATIONS, .min = 1, .max = 64, .def = "[]",
     .help = "DAFormer separable ASPP dilations; empty = [1, 6, 12, 18]"},
    {"model.hrda.enabled", BOOL_T, AT(model.hrda.enabled), .def = "false",
     .help = "HRDA: a low-resolution context crop and a high-resolution detail crop through one "
             "encoder, fused by a scale-attention head (decode_head.scale_attention.*); "
             "pseudo-labels and evaluation by HRDA's sliding detail inference"},
    {"model.hrda.context_scale", FLOAT_T, AT(model.hrda.context_scale), .min = 0.125, .max = 1,
     .def = "0.5", .help = "scale of the context crop relative to data.crop (HRDA: 0.5); output "
                          "stride / scale must be a whole number"},
    {"model.hrda.hr_crop_size", INTS_T, ARRAY(model.hrda.hr_crop_size), .min_len = 2, .max_len = 2,
     .min = 8, .max = 8192, .def = "[512, 512]",
     .help = "detail crop [W, H] in full-resolution pixels, a multiple of output stride / "
             "context_scale; the inference window too"},
    {"model.hrda.detail_loss_weight", FLOAT_T, AT(model.hrda.detail_loss_weight), .min = 0,
     .max = 1, .def = "0.1",
     .help = "weight of the detail crop's CE; the fused CE gets 1 - this (HRDA hr_loss_weight)"},
    {"model.hrda.slide_stride", INTS_T, ARRAY(model.hrda.slide_stride), .min_len = 2,
     .max_len = 2, .min = 4, .max = 8192, .def = "[256, 256]",
     .help = "inference and pseudo-labels: stride [W, H] of the detail windows (HRDA: half the "
             "detail crop), a multiple of the output stride"},

    {"uda.type", ENUM_T, AT(uda.type), .choices = uda_names, .def = "t2sda",
     .help = "source_only, dacs (self-training base) or t2sda (base + pulling target to source)"},
    {"uda.alpha", FLOAT_T, AT(uda.alpha), .min = 0, .max = 1, .def = "0.999",
     .help = "EMA teacher momentum"},
    {"uda.teacher_bn", ENUM_T, AT(uda.teacher_bn), .choices = teacher_bn_names, .def = "batch",
     .help = "EMA teacher's batch norm: statistics of the batch it sees (DACS/DAFormer, train "
             "mode without dropout) or the running statistics"},
    {"uda.pseudo_threshold", FLOAT_T, AT(uda.pseudo_threshold), .min = 0, .max = 1,
     .def = "0.968", .help = "confidence above which a pseudo-label counts for the weight q"},
    {"uda.pseudo_weight_ignore_top", INT_T, AT(uda.pseudo_weight_ignore_top), .min = 0,
     .max = 8192, .def = "15", .help = "top rows (at a 512-px crop) whose pseudo-labels get weight 0"},
    {"uda.pseudo_weight_ignore_bottom", INT_T, AT(uda.pseudo_weight_ignore_bottom), .min = 0,
     .max = 8192, .def = "120", .help = "bottom rows (at a 512-px crop) whose pseudo-labels get weight 0"},
    {"uda.color_jitter_strength", FLOAT_T, AT(uda.color_jitter_strength), .min = 0, .max = 1,
     .def = "0.2", .help = "ClassMix colour jitter: brightness, contrast, saturation and hue"},
    {"uda.color_jitter_probability", FLOAT_T, AT(uda.color_jitter_probability), .min = 0,
     .max = 1, .def = "0.8", .help = "probability of colour jitter on a mixed image"},
    {"uda.blur", BOOL_T, AT(uda.blur), .def = "true",
     .help = "Gaussian blur (p 0.5, sigma ~ U(0.15, 1.15)) on mixed images"},
    {"uda.imnet_feature_dist_lambda", FLOAT_T, AT(uda.imnet_feature_dist_lambda), .min = 0,
     .max = 100, .def = "0.005",
     .help = "weight of the ImageNet feature distance on thing classes; 0 = off"},
    {"uda.imnet_feature_dist_classes", INTS_T, ARRAY(uda.imnet_feature_dist_classes),
     COUNT(uda.n_imnet_feature_dist_classes), .min_len = 0, .max_len = T2S_CFG_MAX_CLASS_LIST,
     .min = 0, .max = 254, .def = "[6, 7, 11, 12, 13, 14, 15, 16, 17, 18]",
     .help = "'thing' classes whose pixels the feature distance averages over"},
    {"uda.pseudo_target.type", ENUM_T, AT(uda.pseudo_target.type),
     .choices = pseudo_target_names, .values = pseudo_target_values, .def = "fourier",
     .help = "pseudo-target image: fourier (FDA amplitude swap), color (mean/std), none"},
    {"uda.pseudo_target.beta", FLOAT_T, AT(uda.pseudo_target.beta), .min = 0, .max = 0.5,
     .def = "0.01", .help = "FDA: half-side of the swapped low-frequency square / min(H, W)"},
    {"uda.pseudo_target.color_space", ENUM_T, AT(uda.pseudo_target.color_space),
     .choices = color_space_names, .values = color_space_values, .def = "lab", .help = "colour transfer space: rgb or lab"},
    {"uda.t2s.lambda", FLOAT_T, AT(uda.t2s.lambda), .min = 0, .max = 100, .def = "1.0",
     .help = "weight of the pulling loss"},
    {"uda.t2s.proj_dim", INT_T, AT(uda.t2s.proj_dim), .min = 8, .max = 4096, .def = "256",
     .help = "projection head output dimension D"},
    {"uda.t2s.num_queries", INT_T, AT(uda.t2s.num_queries), .min = 1, .max = 1000000,
     .def = "256", .help = "query pixels sampled per class per image"},
    {"uda.t2s.num_negatives", INT_T, AT(uda.t2s.num_negatives), .min = 1, .max = 100000,
     .def = "50", .help = "negatives per query"},
    {"uda.t2s.tau", FLOAT_T, AT(uda.t2s.tau), .min = 1e-4, .max = 100, .def = "0.5",
     .help = "temperature of the pulling loss"},
    {"uda.t2s.negatives", ENUM_T, AT(uda.t2s.negatives), .choices = negatives_names, .values = negatives_values,
     .def = "keys", .help = "negatives: source keys of other classes, or their prototypes"},
    {"uda.t2s.label_down", ENUM_T, AT(uda.t2s.label_down), .choices = label_down_names, .values = label_down_values,
     .def = "nearest", .help = "source labels at feature size: nearest, or majority (>= ratio)"},
    {"uda.t2s.majority_ratio", FLOAT_T, AT(uda.t2s.majority_ratio), .min = 0, .max = 1,
     .def = "0.75", .help = "label_down majority: share a class needs, else ignore"},
    {"uda.t2s.proto_momentum", FLOAT_T, AT(uda.t2s.proto_momentum), .min = 0, .max = 1,
     .def = "0", .help = "EMA of the class prototypes over iterations; 0 = this batch's"},
    {"uda.t2s.hrda_view", ENUM_T, AT(uda.t2s.hrda_view), .choices = hrda_view_names,
     .def = "detail", .help = "under model.hrda: the pull's queries and keys come from the detail "
                              "crop, the context crop, or both (mean of the two terms)"},
    {"uda.reweight.enabled", BOOL_T, AT(uda.reweight.enabled), .def = "true",
     .help = "dynamic class re-weighting by current per-class IoU"},
    {"uda.reweight.momentum", FLOAT_T, AT(uda.reweight.momentum), .min = 0, .max = 1,
     .def = "0.99", .help = "EMA momentum m of the per-class IoU score"},
    {"uda.reweight.gamma", FLOAT_T, AT(uda.reweight.gamma), .min = 0, .max = 100, .def = "1.0",
     .help = "w_c = (1 - s_c)^gamma, normalised to mean 1"},
    {"uda.reweight.apply_to", ENUM_T, AT(uda.reweight.apply_to), .choices = reweight_apply_names, .values = reweight_apply_values,
     .def = "t2s_only", .help = "weights apply to the pulling loss only, or also to the CE terms"},

    {"optimizer.type", ENUM_T, AT(optimizer.type), .choices = optimizer_names, .values = optimizer_values, .def = "sgd",
     .help = "sgd (momentum) or adamw"},
    {"optimizer.lr", FLOAT_T, AT(optimizer.lr), .min = 0, .min_open = true, .max = 10,
     .def = "2.5e-3", .help = "base learning rate"},
    {"optimizer.momentum", FLOAT_T, AT(optimizer.momentum), .min = 0, .max = 1, .def = "0.9",
     .help = "SGD momentum"},
    {"optimizer.weight_decay", FLOAT_T, AT(optimizer.weight_decay), .min = 0, .max = 1,
     .def = "5e-4", .help = "weight decay (decoupled for adamw)"},
    {"optimizer.betas", FLOATS_T, ARRAY(optimizer.betas), .min_len = 2, .max_len = 2, .min = 0,
     .max = 1, .def = "[0.9, 0.999]", .help = "AdamW betas [beta1, beta2]"},
    {"optimizer.eps", FLOAT_T, AT(optimizer.eps), .min = 1e-12, .max = 1, .def = "1e-8",
     .help = "AdamW epsilon"},
    {"optimizer.head_lr_mult", FLOAT_T, AT(optimizer.head_lr_mult), .min = 0, .max = 1000,
     .def = "10", .help = "learning-rate multiplier of the decode head"},
    {"optimizer.grad_clip", FLOAT_T, AT(optimizer.grad_clip), .min = 0, .max = NO_MAX_F,
     .def = "0", .help = "clip the global gradient norm to this value; 0 = off"},
    {"optimizer.lr_scaling", ENUM_T, AT(optimizer.lr_scaling), .choices = lr_scaling_names,
     .def = "none", .help = "lr for a global batch other than base_batch: none, linear or sqrt"},
    {"optimizer.base_batch", INT_T, AT(optimizer.base_batch), .min = 1, .max = 1000000,
     .def = "2", .help = "global batch (images per domain) that optimizer.lr is stated for"},

    {"lr_config.policy", ENUM_T, AT(lr_config.policy), .choices = policy_names, .values = policy_values, .def = "poly",
     .help = "poly: lr = (lr - min_lr) (1 - t/T)^power + min_lr; constant"},
    {"lr_config.power", FLOAT_T, AT(lr_config.power), .min = 0, .max = 10, .def = "1.0",
     .help = "poly exponent"},
    {"lr_config.min_lr", FLOAT_T, AT(lr_config.min_lr), .min = 0, .max = NO_MAX_F, .def = "0",
     .help = "learning rate at the end of the poly schedule"},
    {"lr_config.warmup", ENUM_T, AT(lr_config.warmup), .choices = warmup_names,
     .def = "linear", .help = "none or linear warm-up"},
    {"lr_config.warmup_iters", INT_T, AT(lr_config.warmup_iters), .min = 0, .max = NO_MAX_I,
     .def = "1500", .help = "warm-up length in iterations"},
    {"lr_config.warmup_ratio", FLOAT_T, AT(lr_config.warmup_ratio), .min = 0, .max = 1,
     .def = "1e-6", .help = "warm-up starts at warmup_ratio x lr"},

    {"runner.max_iters", INT_T, AT(runner.max_iters), .min = 1, .max = 100000000,
     .def = "40000", .help = "training length in iterations"},
    {"evaluation.interval", INT_T, AT(evaluation.interval), .min = 0, .max = NO_MAX_I,
     .def = "4000", .help = "evaluate on data.val.shards every N iterations; 0 = off"},
    {"evaluation.mode", ENUM_T, AT(evaluation.mode), .choices = infer_mode_names, .values = infer_mode_values,
     .def = "whole", .help = "inference: whole image, or slide (sliding window)"},
    {"evaluation.crop", INTS_T, ARRAY(evaluation.crop), .min_len = 2, .max_len = 2, .min = 8,
     .max = 8192, .def = "[1024, 1024]", .help = "sliding window size [W, H]"},
    {"evaluation.stride", INTS_T, ARRAY(evaluation.stride), .min_len = 2, .max_len = 2, .min = 1,
     .max = 8192, .def = "[512, 512]", .help = "sliding window stride [W, H]"},
    {"evaluation.subsets", STRS_T, ARRAY(evaluation.subsets), COUNT(evaluation.n_subsets),
     .min_len = 0, .max_len = 4, .def = "[]",
     .help = "also report these class subsets: synthia16, synthia13"},
    {"evaluation.save_predictions", INT_T, AT(evaluation.save_predictions), .min = 0,
     .max = NO_MAX_I, .def = "0", .help = "write colour prediction PNGs of the first N images"},
    {"log.interval", INT_T, AT(log.interval), .min = 1, .max = NO_MAX_I, .def = "50",
     .help = "print and log metrics every N iterations"},
    {"checkpoint.interval", INT_T, AT(checkpoint.interval), .min = 0, .max = NO_MAX_I,
     .def = "4000", .help = "write a checkpoint every N iterations; 0 = only at the end"},
    {"checkpoint.max_keep", INT_T, AT(checkpoint.max_keep), .min = 1, .max = 1000, .def = "1",
     .help = "number of periodic checkpoints kept on disk"},
    {"checkpoint.best_by", STR_T, AT(checkpoint.best_by), .def = "mean",
     .help = "best.h5 is the checkpoint with the highest mIoU of this validation set, or "
             "'mean': the mean mIoU over the sets"},
    {"dist.timeout", FLOAT_T, AT(dist.timeout), .min = 0, .max = NO_MAX_F, .def = "300",
     .help = "seconds a collective may wait for the other ranks before the job stops; 0 = forever; "
             "T2S_COMM_TIMEOUT in the environment replaces it"},
    {"dist.bucket_mb", FLOAT_T, AT(dist.bucket_mb), .min = 0.001, .max = 4096, .def = "25",
     .help = "size of the gradient all-reduce buckets in MiB (PyTorch DDP: 25)"},
    {"dist.check_consistency", BOOL_T, AT(dist.check_consistency), .def = "false",
     .help = "after every step, check that all ranks hold bit-identical weights, teacher and "
             "class statistics (a hash all-reduce; for debugging and tests)"},
};

#define N_ROWS ((int)(sizeof schema / sizeof schema[0]))

const t2s_cfg_row *t2s_train_config_schema(int *n_rows) {
  *n_rows = N_ROWS;
  return schema;
}

t2s_status t2s_train_config_defaults(t2s_train_config *cfg, t2s_error *err) {
  memset(cfg, 0, sizeof *cfg);
  return t2s_config_apply_defaults(schema, N_ROWS, cfg, err);
}

/* Where key got its value: as a message prefix ("config f.yaml:12:3",
 * "command line override 'k=v'", "config f.yaml (default of 'k')") or as a
 * predicate for the second key ("is set at f.yaml:4:5", "has its default value"). */
static void origin_of(const char *key, const t2s_cfg_origin *origins, const char *file,
                      char **overrides, bool lead, char *buf, size_t size) {
  int i = t2s_config_find(schema, N_ROWS, key);
  char at[600];
  t2s_config_origin_text(&origins[i], file, (const char *const *)overrides, at, sizeof at);
  if (origins[i].kind == T2S_CFG_FROM_FILE)
    snprintf(buf, size, "%s%s", lead ? "config " : "is set at ", at);
  else if (origins[i].kind == T2S_CFG_FROM_OVERRIDE)
    snprintf(buf, size, "%s%s", lead ? "" : "is set by ", at);
  else if (lead)
    snprintf(buf, size, "config %s (default of '%s')", file ? file : "(no file)", key);
  else
    snprintf(buf, size, "has its default value");
}

/* "<where key_a>: <body> ('key_b' is set at <where key_b>)": the message
 * starts where the first key was set and names where the second one was. */
static t2s_status fail_pair(const char *key_a, const char *key_b, const t2s_cfg_origin *origins,
                            const char *file, char **overrides, t2s_error *err,
                            const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static t2s_status fail_pair(const char *key_a, const char *key_b, const t2s_cfg_origin *origins,
                            const char *file, char **overrides, t2s_error *err,
                            const char *fmt, ...) {
  char at_a[700], at_b[700], body[T2S_ERROR_MAX];
  origin_of(key_a, origins, file, overrides, true, at_a, sizeof at_a);
  origin_of(key_b, origins, file, overrides, false, at_b, sizeof at_b);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(body, sizeof body, fmt, ap);
  va_end(ap);
  return t2s_error_set(err, T2S_ERR_INVALID, "%s: %s ('%s' %s)", at_a, body, key_b, at_b);
}

/* data.val_sets: not together with data.val.shards; names that can be metric keys and
 * file names, each once; checkpoint.best_by names one of them (or mean). */
static t2s_status check_val_sets(const t2s_train_config *cfg, const t2s_cfg_origin *origins,
                                 const char *file, char **overrides, t2s_error *err) {
  const int n = cfg->data.n_val_sets;
  if (n > 0 && cfg->data.n_val_shards > 0)
    return fail_pair("data.val_sets", "data.val.shards", origins, file, overrides, err,
                     "data.val_sets and data.val.shards are both set; list every validation set "
                     "in data.val_sets (data.val.shards is the one-set form)");
  char at[700];
  origin_of("data.val_sets", origins, file, overrides, true, at, sizeof at);
  for (int i = 0; i < n; i++) {
    const char *name = cfg->data.val_sets[i].name;
    bool ok = name[0] != '\0' && strcmp(name, "mean") != 0;
    for (const char *p = name; *p && ok; p++)
      ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
           *p == '_' || *p == '-';
    if (!ok)
      return t2s_error_set(err, T2S_ERR_INVALID, "%s: data.val_sets[%d].name '%s' is not a set name: "
                           "use letters, digits, '_' or '-' (and not 'mean', the mean of the sets)",
                           at, i, name);
    for (int j = 0; j < i; j++)
      if (strcmp(name, cfg->data.val_sets[j].name) == 0)
        return t2s_error_set(err, T2S_ERR_INVALID, "%s: data.val_sets[%d] and [%d] are both named '%s'; "
                             "give each set its own name", at, j, i, name);
  }
  if (n == 0 || strcmp(cfg->checkpoint.best_by, "mean") == 0) return T2S_OK;
  for (int i = 0; i < n; i++)
    if (strcmp(cfg->checkpoint.best_by, cfg->data.val_sets[i].name) == 0) return T2S_OK;
  return fail_pair("checkpoint.best_by", "data.val_sets", origins, file, overrides, err,
                   "checkpoint.best_by '%s' is not the name of a validation set; use 'mean' or "
                   "one of the data.val_sets names", cfg->checkpoint.best_by);
}

/* Rules that involve two keys; each message names both and where they were set. */
static t2s_status check_cross_fields(const t2s_train_config *cfg, const t2s_cfg_origin *origins,
                                     const char *file, char **overrides, t2s_error *err) {
  /* DeepLab-V2's head reads the last stage of any backbone (ResNet at stride 8, MiT
   * at stride 32); the DAFormer heads read all four: every pairing builds. */
  if (cfg->evaluation.mode == T2S_INFER_SLIDE &&
      (cfg->evaluation.stride[0] > cfg->evaluation.crop[0] || cfg->evaluation.stride[1] > cfg->evaluation.crop[1]))
    return fail_pair("evaluation.stride", "evaluation.crop", origins, file, overrides, err,
                     "evaluation.stride [%d, %d] is larger than evaluation.crop [%d, %d]: sliding "
                     "windows would leave pixels without a prediction; use a stride <= the crop",
                     cfg->evaluation.stride[0], cfg->evaluation.stride[1], cfg->evaluation.crop[0],
                     cfg->evaluation.crop[1]);
  if (cfg->data.ignore_index < cfg->model.num_classes)
    return fail_pair("data.ignore_index", "model.num_classes", origins, file, overrides, err,
                     "data.ignore_index %d is a class id (model.num_classes is %d); use an "
                     "ignore_index >= num_classes, e.g. 255",
                     cfg->data.ignore_index, cfg->model.num_classes);
  if (cfg->lr_config.min_lr > cfg->optimizer.lr)
    return fail_pair("lr_config.min_lr", "optimizer.lr", origins, file, overrides, err,
                     "lr_config.min_lr %g is above optimizer.lr %g; the schedule decays "
                     "towards min_lr, so lower it",
                     cfg->lr_config.min_lr, cfg->optimizer.lr);
  if (cfg->model.hrda.enabled &&
      (cfg->model.hrda.hr_crop_size[0] > cfg->data.crop[0] || cfg->model.hrda.hr_crop_size[1] > cfg->data.crop[1]))
    return fail_pair("model.hrda.hr_crop_size", "data.crop", origins, file, overrides, err,
                     "model.hrda.hr_crop_size [%d, %d] is larger than data.crop [%d, %d]: the detail "
                     "crop lies inside the training crop; use a smaller detail crop",
                     cfg->model.hrda.hr_crop_size[0], cfg->model.hrda.hr_crop_size[1],
                     cfg->data.crop[0], cfg->data.crop[1]);
  t2s_status st = check_val_sets(cfg, origins, file, overrides, err);
  if (st != T2S_OK) return st;
  if (cfg->device == T2S_CFG_DEVICE_CPU && cfg->precision != T2S_PRECISION_FP32)
    return fail_pair("precision", "device", origins, file, overrides, err,
                     "precision '%s' is a CUDA setting but device is 'cpu'; use precision fp32 "
                     "or device cuda/auto",
                     precision_names[cfg->precision]);
  return T2S_OK;
}

/* Empty work_dir means work_dirs/<name>. */
static t2s_status resolve_work_dir(t2s_train_config *cfg, t2s_error *err) {
  if (cfg->work_dir[0] != '\0') return T2S_OK;
  int w = snprintf(cfg->work_dir, sizeof cfg->work_dir, "work_dirs/%s", cfg->name);
  if (w < 0 || (size_t)w >= sizeof cfg->work_dir)
    return t2s_error_set(err, T2S_ERR_INVALID,
                         "config: work_dir 'work_dirs/%s' would be too long; set work_dir",
                         cfg->name);
  return T2S_OK;
}

static t2s_status finish_load(t2s_train_config *cfg, t2s_status st,
                              const t2s_cfg_origin *origins, const char *file, char **overrides,
                              t2s_error *err) {
  if (st == T2S_OK) st = check_cross_fields(cfg, origins, file, overrides, err);
  if (st == T2S_OK) st = resolve_work_dir(cfg, err);
  return st;
}

t2s_status t2s_train_config_load(t2s_train_config *cfg, const char *path, char **overrides,
                                 int n_overrides, t2s_error *err) {
  t2s_cfg_origin origins[N_ROWS];
  memset(cfg, 0, sizeof *cfg);
  t2s_status st = t2s_config_load_traced(schema, N_ROWS, cfg, path,
                                         (const char *const *)overrides, n_overrides, origins,
                                         err);
  return finish_load(cfg, st, origins, path, overrides, err);
}

/* Loads as t2s_train_config_load, then dumps with each key's origin (--explain). */
t2s_status t2s_train_config_explain(t2s_train_config *cfg, const char *path, char **overrides,
                                    int n_overrides, FILE *out, t2s_error *err) {
  t2s_cfg_origin origins[N_ROWS];
  memset(cfg, 0, sizeof *cfg);
  t2s_status st = t2s_config_load_traced(schema, N_ROWS, cfg, path,
                                         (const char *const *)overrides, n_overrides, origins,
                                         err);
  st = finish_load(cfg, st, origins, path, overrides, err);
  if (st != T2S_OK) return st;
  return t2s_config_dump_explained(schema, N_ROWS, cfg, origins, (const char *const *)overrides,
                                   out, err);
}

t2s_status t2s_train_config_load_text(t2s_train_config *cfg, const char *text, const char *name,
                                      char **overrides, int n_overrides, t2s_error *err) {
  t2s_cfg_origin origins[N_ROWS];
  memset(cfg, 0, sizeof *cfg);
  t2s_status st = t2s_config_load_text(schema, N_ROWS, cfg, text, text ? strlen(text) : 0, name,
                                       (const char *const *)overrides, n_overrides, origins,
                                       err);
  return finish_load(cfg, st, origins, name, overrides, err);
}

t2s_status t2s_train_config_dump(const t2s_train_config *cfg, FILE *out, t2s_error *err) {
  return t2s_config_dump(schema, N_ROWS, cfg, out, err);
}

t2s_status t2s_train_config_dump_string(const t2s_train_config *cfg, char **text,
                                        t2s_error *err) {
  return t2s_config_dump_string(schema, N_ROWS, cfg, text, err);
}
