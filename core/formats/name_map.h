/* Tensor names of foreign weight files and how they map onto ours.
 *
 * Our names are mmseg's (backbone.layer1.0.conv1.weight, ...). Other codebases
 * name the same tensors differently (torchvision/timm ResNets, HF and the
 * original SegFormer for MiT), sometimes split one of our tensors in two (HF's
 * attention key and value are our `kv`, concatenated along dim 0), and some of
 * their tensors have no counterpart at all (an ImageNet classifier `fc`, a 7x7
 * stem where ours is the V1c deep stem, BN's num_batches_tracked counter).
 *
 * A network family plugs in one function that answers, for one of OUR tensor
 * names, what it is called in a naming (t2s_foreign_names_fn), plus optional
 * explanations for what does not map. The generic machinery here turns that
 * into an import plan (which file tensors feed each of ours; missing,
 * unexpected and shape-mismatched tensors) and into exports (renames, splits of
 * concatenated tensors, num_batches_tracked added for PyTorch's strict loading).
 *
 * Families: "resnet_v1c" (mmseg, torchvision, timm) is implemented here. MiT
 * (core/nn/mit_names.h, t2s_mit_foreign_names) plugs into the table in
 * name_map.c the same way. */
#pragma once
#include <stdio.h>

#include "core/params.h"
#include "core/formats/safetensors.h"

#define T2S_NAME_MAX 160

typedef enum t2s_naming {
  T2S_NAMING_MMSEG = 0,    /* ours: mmseg / DAFormer / mmcv ImageNet checkpoints */
  T2S_NAMING_TORCHVISION,  /* torchvision ResNet: conv1/bn1 7x7 stem, fc */
  T2S_NAMING_TIMM,         /* timm ResNet: deep stem conv1.{0,1,3,4,6} + bn1 ('c'/'d' variants) */
  T2S_NAMING_HF,           /* Hugging Face transformers (SegFormer: segformer.encoder...) */
  T2S_NAMING_SEGFORMER,    /* the original NVlabs SegFormer release */
  T2S_NAMING_COUNT
} t2s_naming;

const char *t2s_naming_name(int naming);
/* -1 when unknown. */
int t2s_naming_parse(const char *name);

/* For one of our tensor names: writes its name(s) in `naming` and returns
 *   1  one foreign tensor out[0];
 *   2  ours is the concatenation along dim 0 of out[0] then out[1] (equal halves on export);
 *   0  the naming has no counterpart (the tensor keeps its initialisation);
 *  -1  the family does not support this naming at all. */
typedef int (*t2s_foreign_names_fn)(const char *ours, int naming, char out[2][T2S_NAME_MAX]);

typedef struct t2s_name_family {
  const char *name;
  const char *probe;                   /* one of our tensor names only this family has */
  t2s_foreign_names_fn foreign_names;  /* NULL: not wired yet (refused with a message) */
  /* Why ours has no counterpart in naming (when foreign_names returned 0). */
  const char *(*absent_reason)(const char *ours, int naming);
  /* Why a file tensor that feeds none of ours is harmless, or NULL (then it is "unexpected"). */
  const char *(*ignorable)(const char *foreign, int naming);
  /* The naming a file's tensor names follow, or -1. */
  int (*detect)(const t2s_tensor_set *src);
  /* Optional: why the file, although of this family's naming, cannot be imported at
   * all (one sentence, e.g. a ResNet-D where ours is a ResNet-V1c), or NULL. */
  const char *(*refusal)(const t2s_tensor_set *src);
} t2s_name_family;

/* The family whose probe tensor `has(user, probe)` reports, or NULL. */
const t2s_name_family *t2s_name_family_find(int (*has)(void *user, const char *name), void *user);
const t2s_name_family *t2s_name_family_of_params(const t2s_params *p);
const t2s_name_family *t2s_name_family_of_set(const t2s_tensor_set *s);

/* ---- import plan and report ------------------------------------------------ */

typedef struct t2s_strlist {
  char **v;
  int n, cap;
} t2s_strlist;

void t2s_strlist_free(t2s_strlist *l);
int t2s_strlist_addf(t2s_strlist *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

typedef struct t2s_import_report {
  char naming[32];
  char prefix[T2S_NAME_MAX];  /* stripped from the file's names ("" = none) */
  int backbone_only;          /* the file holds a backbone without "backbone." */
  int no_head;                /* the file has none of our head's tensors: the head is kept */
  int refused;                /* problems and no partial load: nothing is loaded */
  int n_loaded;
  t2s_strlist missing;        /* ours that the file should have but does not */
  t2s_strlist mismatch;       /* "name: ours [..], file [..]" */
  t2s_strlist unexpected;     /* file tensors that feed nothing of ours */
  t2s_strlist kept;           /* ours deliberately not loaded: "name: reason" */
  t2s_strlist ignored;        /* file tensors deliberately skipped: "name: reason" */
} t2s_import_report;

void t2s_import_report_free(t2s_import_report *r);
/* One line per problem, and the deliberate skips grouped by reason with counts. */
void t2s_import_report_print(const t2s_import_report *r, const char *source, FILE *out);
int t2s_import_report_failed(const t2s_import_report *r);

/* For our tensor i (params items first, then buffers): how many file tensors
 * feed it (0, 1 or 2) and their indices in the source set. */
typedef struct t2s_import_plan {
  int n;                 /* p->count + p->buf_count */
  int (*src)[2];
  int *n_src;
} t2s_import_plan;

void t2s_import_plan_free(t2s_import_plan *plan);
t2s_param *t2s_plan_param(const t2s_params *p, int i);

/* Matches every tensor of p against src (names already without the user's
 * prefix) in `naming`: fills plan and report (shapes checked, nothing copied).
 * When src has no name starting with "backbone." but ours do, the file is a
 * bare backbone (ImageNet weights): ours are looked up without "backbone."
 * and the rest of the network is reported as kept, not missing. */
t2s_status t2s_name_map_plan(const t2s_name_family *fam, int naming, const t2s_params *p,
                             const t2s_tensor_set *src, t2s_import_plan *plan,
                             t2s_import_report *rep, t2s_error *err);

/* Renames a set of our tensors (our names) into `naming`: splits the
 * concatenated ones, drops those without a counterpart (listed in dropped as
 * "name: reason"), and adds an int64 0-d `num_batches_tracked` (0) beside
 * every `running_mean`, so PyTorch's load_state_dict(strict=True) accepts it. */
t2s_status t2s_name_map_export(const t2s_name_family *fam, int naming, const t2s_tensor_set *ours,
                               t2s_tensor_set *out, t2s_strlist *dropped, t2s_error *err);
