#include "core/nn/mit_names.h"

#include <stdio.h>
#include <string.h>

/* Renames of the module inside one block: ours -> mmseg upstream -> Hugging Face.
 * A NULL HF entry with a second name means our tensor joins two HF tensors. */
static const struct {
  const char *ours, *mmseg, *hf, *hf2;
} block_parts[] = {
    {"norm1", "norm1", "layer_norm_1", NULL},
    {"attn.q", "attn.attn.in_proj", "attention.self.query", NULL},
    {"attn.kv", "attn.attn.in_proj", "attention.self.key", "attention.self.value"},
    {"attn.proj", "attn.attn.out_proj", "attention.output.dense", NULL},
    {"attn.sr", "attn.sr", "attention.self.sr", NULL},
    {"attn.norm", "attn.norm", "attention.self.layer_norm", NULL},
    {"norm2", "norm2", "layer_norm_2", NULL},
    {"mlp.fc1", "ffn.layers.0", "mlp.dense1", NULL},
    {"mlp.dwconv.dwconv", "ffn.layers.1", "mlp.dwconv.dwconv", NULL},
    {"mlp.fc2", "ffn.layers.4", "mlp.dense2", NULL},
};

/* The SegFormer MLP head under HF names (the other heads have no HF form). */
static const struct {
  const char *ours, *hf;
} hf_head[] = {
    {"decode_head.linear_fuse.conv", "decode_head.linear_fuse"},
    {"decode_head.linear_fuse.bn", "decode_head.batch_norm"},
    {"decode_head.linear_pred", "decode_head.classifier"},
};

/* Splits "module.leaf" at the last dot: the leaf is weight, bias, running_mean... */
static const char *leaf_of(const char *name, size_t *module_len) {
  const char *dot = strrchr(name, '.');
  if (dot == NULL) return NULL;
  *module_len = (size_t)(dot - name);
  return dot + 1;
}

/* mmseg's in_proj holds q, k, v in one tensor; its leaves are in_proj_weight/_bias. */
static void mmseg_leaf(char *dst, size_t size, const char *module, const char *leaf) {
  if (strcmp(module, "attn.attn.in_proj") == 0)
    snprintf(dst, size, "attn.attn.in_proj_%s", leaf);
  else
    snprintf(dst, size, "%s.%s", module, leaf);
}

static int block_names(int stage, int index, const char *rest, int naming, char out[2][160]) {
  size_t mlen;
  const char *leaf = leaf_of(rest, &mlen);
  if (leaf == NULL) return 0;
  for (size_t k = 0; k < sizeof block_parts / sizeof block_parts[0]; k++) {
    if (strlen(block_parts[k].ours) != mlen || strncmp(rest, block_parts[k].ours, mlen) != 0)
      continue;
    if (naming == T2S_MIT_NAMES_MMSEG) {
      char tail[120];
      mmseg_leaf(tail, sizeof tail, block_parts[k].mmseg, leaf);
      snprintf(out[0], 160, "backbone.layers.%d.1.%d.%s", stage - 1, index, tail);
      return 1;
    }
    snprintf(out[0], 160, "segformer.encoder.block.%d.%d.%s.%s", stage - 1, index,
             block_parts[k].hf, leaf);
    if (block_parts[k].hf2 == NULL) return 1;
    snprintf(out[1], 160, "segformer.encoder.block.%d.%d.%s.%s", stage - 1, index,
             block_parts[k].hf2, leaf);
    return 2;
  }
  return 0;
}

static int stage_names(const char *ours, int naming, char out[2][160]) {
  int stage, index, used = 0;
  char part[16];
  if (sscanf(ours, "backbone.block%d.%d.%n", &stage, &index, &used) == 2 && used > 0)
    return stage >= 1 && stage <= 4 ? block_names(stage, index, ours + used, naming, out) : 0;
  used = 0;
  if (sscanf(ours, "backbone.patch_embed%d.%15[a-z].%n", &stage, part, &used) == 2 && used > 0 &&
      stage >= 1 && stage <= 4) {
    int proj = strcmp(part, "proj") == 0;
    if (!proj && strcmp(part, "norm") != 0) return 0;
    if (naming == T2S_MIT_NAMES_MMSEG)
      snprintf(out[0], 160, "backbone.layers.%d.0.%s.%s", stage - 1, proj ? "projection" : "norm",
               ours + used);
    else
      snprintf(out[0], 160, "segformer.encoder.patch_embeddings.%d.%s.%s", stage - 1,
               proj ? "proj" : "layer_norm", ours + used);
    return 1;
  }
  used = 0;
  if (sscanf(ours, "backbone.norm%d.%n", &stage, &used) == 1 && used > 0 && stage >= 1 &&
      stage <= 4) {
    if (naming == T2S_MIT_NAMES_MMSEG)
      snprintf(out[0], 160, "backbone.layers.%d.2.%s", stage - 1, ours + used);
    else
      snprintf(out[0], 160, "segformer.encoder.layer_norm.%d.%s", stage - 1, ours + used);
    return 1;
  }
  return 0;
}

static int hf_head_names(const char *ours, char out[2][160]) {
  if (strncmp(ours, "decode_head.linear_c.", 21) == 0) {
    snprintf(out[0], 160, "%s", ours);  /* HF's SegformerMLP keeps .proj */
    return 1;
  }
  size_t mlen;
  const char *leaf = leaf_of(ours, &mlen);
  if (leaf == NULL) return 0;
  for (size_t k = 0; k < sizeof hf_head / sizeof hf_head[0]; k++)
    if (strlen(hf_head[k].ours) == mlen && strncmp(ours, hf_head[k].ours, mlen) == 0) {
      snprintf(out[0], 160, "%s.%s", hf_head[k].hf, leaf);
      return 1;
    }
  return 0;
}

int t2s_mit_foreign_names(const char *ours, int naming, char out[2][160]) {
  if (ours == NULL) return 0;
  char tmp[2][160];
  int n = 0;
  if (naming == T2S_MIT_NAMES_SEGFORMER) {
    if (strlen(ours) >= 160) return 0;
    snprintf(tmp[0], 160, "%s", ours);
    n = 1;
  } else if (naming == T2S_MIT_NAMES_MMSEG || naming == T2S_MIT_NAMES_HF) {
    if (strncmp(ours, "backbone.", 9) == 0) n = stage_names(ours, naming, tmp);
    else if (naming == T2S_MIT_NAMES_HF) n = hf_head_names(ours, tmp);
  }
  for (int i = 0; i < n; i++) memcpy(out[i], tmp[i], 160);
  return n;
}

int t2s_mit_foreign_rows(const char *ours, int naming, int *begin, int *count, int *parts) {
  if (naming != T2S_MIT_NAMES_MMSEG || ours == NULL) return 0;
  int stage, index, used = 0;
  if (sscanf(ours, "backbone.block%d.%d.%n", &stage, &index, &used) != 2 || used == 0) return 0;
  const char *rest = ours + used;
  int q = strncmp(rest, "attn.q.", 7) == 0, kv = strncmp(rest, "attn.kv.", 8) == 0;
  if (!q && !kv) return 0;
  *begin = q ? 0 : 1;
  *count = q ? 1 : 2;
  *parts = 3;
  return 1;
}
