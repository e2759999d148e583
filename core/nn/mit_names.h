/* Where each of our MiT (and SegFormer-head) tensors lives in a foreign
 * checkpoint, for the conversion tool.
 *
 * Our names are DAFormer's (= the original SegFormer mix_transformer.py):
 * backbone.patch_embed{i}.proj, backbone.block{i}.{j}.attn.kv, backbone.norm{i}, ...
 *   T2S_MIT_NAMES_SEGFORMER  original SegFormer / DAFormer checkpoints: identical.
 *   T2S_MIT_NAMES_MMSEG      mmsegmentation's upstream mit.py (backbone.layers.{i-1}.*):
 *                            q and kv are row blocks of one in_proj_weight / in_proj_bias
 *                            (q = rows [0, C), kv = rows [C, 3C); t2s_mit_foreign_rows);
 *                            mlp fc1/fc2 are 1x1 convolutions there, (out, in, 1, 1)
 *                            against our (out, in): same values, other shape.
 *   T2S_MIT_NAMES_HF         Hugging Face transformers' SegformerForSemanticSegmentation
 *                            (segformer.encoder.*): key and value are two tensors, our
 *                            kv = concat(key, value) along dim 0. The segformer_mlp head
 *                            maps too (decode_head.linear_c.{i}.proj, linear_fuse ->
 *                            linear_fuse + batch_norm, linear_pred -> classifier).
 * Decode-head names other than those map only under T2S_MIT_NAMES_SEGFORMER. */
#pragma once

enum {
  T2S_MIT_NAMES_SEGFORMER = 0,
  T2S_MIT_NAMES_MMSEG = 1,
  T2S_MIT_NAMES_HF = 2,
};

/* Writes the foreign name(s) of our tensor `ours` into out. Returns 1 (one source
 * tensor, out[0]), 2 (ours = concat(out[0], out[1]) along dim 0), or 0 when the
 * tensor has no counterpart in that naming (out untouched). */
int t2s_mit_foreign_names(const char *ours, int naming, char out[2][160]);

/* For a single source tensor that holds more than ours (mmseg's in_proj): ours is
 * rows [begin * R / parts, (begin + count) * R / parts) of the R-row source. Returns
 * 1 and fills the three numbers then; 0 when ours is the whole source tensor. */
int t2s_mit_foreign_rows(const char *ours, int naming, int *begin, int *count, int *parts);
