/* Weights from any of the three formats into a network, and out again.
 *
 * Formats, told apart by their first bytes (not by the file name):
 *   safetensors   8-byte header length + JSON header (core/formats/safetensors.h)
 *   .pth          torch.save's zip archive (core/formats/torch_pickle.h); legacy
 *                 non-zip files are recognised and refused with what to do
 *   .h5           a t2sda checkpoint (core/formats/checkpoint.h): /params + /buffers
 *                 (the student) or /ema (the teacher)
 *
 * Loading goes: read the file into a tensor set -> keep the names under
 * `prefix` and strip it (e.g. "model." or "ema_model." of a DAFormer
 * checkpoint), strip DataParallel's "module." -> tell the naming (mmseg,
 * torchvision, timm, ...) from the names unless given -> plan which file tensor
 * feeds each of ours (core/formats/name_map.h) -> refuse when something is missing,
 * unexpected or of the wrong shape, unless allow_partial -> convert to float32
 * and copy into the network (on its device, in its layout). On any refusal the
 * network is left unchanged. */
#pragma once
#include <stdio.h>

#include "core/formats/name_map.h"
#include "core/params.h"
#include "core/formats/safetensors.h"

typedef enum t2s_weights_format {
  T2S_WF_UNKNOWN = 0,
  T2S_WF_SAFETENSORS,
  T2S_WF_PTH,
  T2S_WF_CKPT,
  T2S_WF_LEGACY_PTH,
} t2s_weights_format;

const char *t2s_weights_format_name(t2s_weights_format f);
/* The format of a file from its first bytes (len of them available). */
t2s_weights_format t2s_weights_sniff(const uint8_t *head, size_t len);

/* Reads a checkpoint's student (/params + /buffers) or teacher (/ema) tensors,
 * float32 with our names. which: "student" (also NULL) or "teacher". */
t2s_status t2s_ckpt_read_set(const char *path, const char *which, t2s_tensor_set *s, t2s_error *err);
/* Reads any of the three formats (which: for checkpoints, as above). *fmt may be NULL. */
t2s_status t2s_weights_read(const char *path, const char *which, t2s_tensor_set *s,
                            t2s_weights_format *fmt, t2s_error *err);
/* Every parameter and buffer of p as float32 host tensors in PyTorch's layout. */
t2s_status t2s_params_to_set(const t2s_params *p, t2s_tensor_set *s, t2s_error *err);

/* Keeps only the tensors whose names start with prefix and strips it (prefix
 * NULL or "": keeps all), then strips a leading "module." from every name.
 * `source` names the file in messages. */
t2s_status t2s_tset_strip_prefix(t2s_tensor_set *s, const char *prefix, const char *source,
                                 t2s_error *err);

/* Loads an already-read tensor set into p (see the top of this file). naming:
 * "mmseg", "torchvision", "timm", "hf", "segformer" or NULL to detect. rep is
 * filled (may be NULL); when log is not NULL the report is printed there. */
t2s_status t2s_load_pretrained_set(t2s_params *p, t2s_tensor_set *src, const char *source,
                                   const char *naming, const char *prefix, int allow_partial,
                                   t2s_import_report *rep, FILE *log, t2s_error *err);
/* As _set with an explicit name family (tests, and networks not in the table). */
t2s_status t2s_load_pretrained_family(t2s_params *p, const t2s_name_family *fam, t2s_tensor_set *src,
                                      const char *source, const char *naming, const char *prefix,
                                      int allow_partial, t2s_import_report *rep, FILE *log,
                                      t2s_error *err);
t2s_status t2s_load_pretrained_ex(t2s_params *p, const char *path, const char *naming,
                                  const char *prefix, int allow_partial, t2s_import_report *rep,
                                  FILE *log, t2s_error *err);
/* As _ex, reporting to stderr: what `model.pretrained` uses. */
t2s_status t2s_load_pretrained(t2s_params *p, const char *path, const char *naming,
                               const char *prefix, int allow_partial, t2s_error *err);
