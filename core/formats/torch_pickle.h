/* PyTorch .pth files (torch.save since 1.6: a zip archive) without Python.
 *
 * Layout of the archive (every entry stored, not compressed):
 *   <archive>/data.pkl     the pickled object (protocol 2)
 *   <archive>/data/<key>   raw little-endian bytes of one storage
 *   <archive>/byteorder    "little" (absent in older files, which are little-endian)
 *   <archive>/version      serialisation version
 * A tensor in data.pkl is torch._utils._rebuild_tensor_v2(storage, offset, size,
 * stride, requires_grad, hooks[, metadata]) where storage is a persistent id
 * ('storage', torch.FloatStorage, key, location, numel).
 *
 * The reader runs a minimal pickle interpreter: only the opcodes and globals a
 * state dict needs (collections.OrderedDict, torch._utils._rebuild_tensor_v2,
 * torch._utils._rebuild_parameter, torch.<Dtype>Storage). Any other global is
 * refused with a message naming it, so reading a file never runs code from it.
 *
 * Which object holds the weights: the root when its values are tensors, else
 * the first of root["state_dict"], root["model"], root["module"],
 * root["state_dict_ema"] that holds tensors (mmseg/mmcv, DAFormer, timm, DeiT
 * style wrappers). Other scalar/str entries of the root and of root["meta"]
 * become string metadata ("meta.iter" = "40000"). Prefixes such as "module."
 * are left to the name mapping (core/formats/pretrained.h).
 *
 * Legacy files (torch.save before 1.6, or _use_new_zipfile_serialization=False)
 * are recognised and refused with the command that converts them. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "core/formats/safetensors.h"

/* Reads the weights of a .pth file into s (appended). */
t2s_status t2s_pth_read(const char *path, t2s_tensor_set *s, t2s_error *err);
/* The same from a file image; `what` names it in messages. */
t2s_status t2s_pth_parse(const uint8_t *buf, size_t len, const char *what, t2s_tensor_set *s,
                         t2s_error *err);
/* 1 when buf starts like a legacy (non-zip) torch.save file. */
int t2s_pth_is_legacy(const uint8_t *buf, size_t len);
/* Writes s as an OrderedDict state dict that torch.load (also with
 * weights_only=True) and load_state_dict read. Metadata is not written. */
t2s_status t2s_pth_write(const char *path, const t2s_tensor_set *s, t2s_error *err);
/* Writes a .pth whose data.pkl is the given pickle bytes and whose storages are
 * s's tensors as data/0, data/1, ... (for tests of the reader's refusals). */
t2s_status t2s_pth_write_raw(const char *path, const uint8_t *pickle, size_t pickle_len,
                             const t2s_tensor_set *storages, t2s_error *err);
