/* Writes the generated part of the fuzz seed corpus (tools/fuzz.sh --seeds):
 * tiny but complete files of each binary format, made by the project's own
 * writers so that they are exactly what the readers expect, and the fuzzer
 * starts from deep inside every parser instead of at its magic bytes.
 *   make_seeds OUT   writes OUT/<target>/gen_*.{h5,png,safetensors,pth} */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/formats/checkpoint.h"
#include "core/formats/safetensors.h"
#include "core/formats/torch_pickle.h"
#include "data/png_io.h"
#include "data/shard.h"
#include "tests/fuzz/seed_model.h"

static char out_dir[400];

static const char *at(const char *target, const char *file) {
  static char path[600];
  snprintf(path, sizeof path, "%s/%s", out_dir, target);
  mkdir(path, 0755);
  snprintf(path, sizeof path, "%s/%s/%s", out_dir, target, file);
  return path;
}

static t2s_status write_checkpoint(const char *path, int with_state, t2s_error *err) {
  t2s_params p;
  t2s_status st = t2s_seed_model(&p, err);
  if (st != T2S_OK) return st;
  float *slot = calloc(p.numel, sizeof *slot); /* the flat layout pads tensors */
  if (slot == NULL) st = t2s_error_set(err, T2S_ERR_NOMEM, "make_seeds: out of memory");
  for (size_t k = 0; slot && k < p.numel; k++) slot[k] = (float)k * 0.5f - 1.0f;
  int64_t pos[3] = {4, 0, 2}, pos_shape[1] = {3};
  t2s_ckpt_writer *w = st == T2S_OK ? t2s_ckpt_begin(path, err) : NULL;
  if (w == NULL) st = err->status;
  if (st == T2S_OK) st = t2s_ckpt_write_meta(w, 40, 1, "name: seed\nseed: 3\n", err);
  if (st == T2S_OK && with_state) {
    st = t2s_ckpt_write_params(w, "params", &p, T2S_CKPT_TRAINABLE, err);
    if (st == T2S_OK) st = t2s_ckpt_write_params(w, "buffers", &p, T2S_CKPT_BUFFERS, err);
    if (st == T2S_OK)
      st = t2s_ckpt_write_params(w, "ema", &p, T2S_CKPT_TRAINABLE | T2S_CKPT_BUFFERS, err);
    if (st == T2S_OK) st = t2s_ckpt_write_slot(w, "momentum", &p, slot, err);
    if (st == T2S_OK) st = t2s_ckpt_write_scalar_i64(w, "/optim/step", 40, err);
    if (st == T2S_OK) st = t2s_ckpt_write_scalar_f64(w, "/state/loss_scale", 65536.0, err);
    if (st == T2S_OK)
      st = t2s_ckpt_write_array(w, "/state/sampler/position", T2S_CKPT_I64, 1, pos_shape, pos, err);
  }
  if (w && st == T2S_OK) st = t2s_ckpt_commit(w, err);
  else t2s_ckpt_abort(w);
  free(slot);
  t2s_params_free(&p);
  return st;
}

static t2s_status write_shard(const char *path, int labelled, int count, t2s_error *err) {
  t2s_shard_meta m = {.num_classes = 3, .ignore_index = 255, .has_label = labelled,
                      .height = 2, .width = 3};
  strcpy(m.class_names[0], "road");
  strcpy(m.class_names[1], "car");
  strcpy(m.class_names[2], "sky");
  strcpy(m.domain, "seed");
  strcpy(m.split, "train");
  t2s_shard_writer *w = t2s_shard_writer_open(path, &m, 1, err);
  if (w == NULL) return err->status;
  t2s_status st = T2S_OK;
  for (int i = 0; st == T2S_OK && i < count; i++) {
    uint8_t rgb[18], label[6] = {0, 1, 2, 255, 1, (uint8_t)i % 3};
    for (int k = 0; k < 18; k++) rgb[k] = (uint8_t)(k * 13 + i);
    char name[16];
    snprintf(name, sizeof name, "img%d", i);
    st = t2s_shard_writer_add(w, name, rgb, labelled ? label : NULL, err);
  }
  if (st != T2S_OK) {
    t2s_shard_writer_abort(w);
    return st;
  }
  return t2s_shard_writer_commit(w, err);
}

static t2s_status write_pngs(t2s_error *err) {
  uint8_t rgb[3 * 2 * 3], gray[6] = {0, 7, 26, 33, 255, 1};
  uint16_t g16[6] = {0, 1, 2, 300, 65535, 22}, rgba16[6 * 4];
  for (int k = 0; k < 18; k++) rgb[k] = (uint8_t)(k * 14);
  for (int k = 0; k < 24; k++) rgba16[k] = (uint16_t)(k * 2731);
  t2s_status st = t2s_png_write_rgb(at("png", "gen_rgb8.png"), rgb, 3, 2, err);
  if (st == T2S_OK) st = t2s_png_write_gray(at("png", "gen_gray8.png"), gray, 3, 2, err);
  if (st == T2S_OK) st = t2s_png_write(at("png", "gen_gray16.png"), g16, 3, 2, 1, 16, err);
  if (st == T2S_OK) st = t2s_png_write(at("png", "gen_rgba16.png"), rgba16, 3, 2, 4, 16, err);
  if (st == T2S_OK) st = t2s_png_write(at("png", "gen_graya8.png"), rgb, 3, 3, 2, 8, err);
  return st;
}

static t2s_status write_weights(t2s_error *err) {
  t2s_tensor_set s;
  t2s_tset_init(&s);
  const float w[6] = {1, -2, 3.5f, 0, 1e-3f, 7};
  const uint16_t h[2] = {0x3c00, 0xc000};
  const int64_t w_shape[2] = {2, 3}, h_shape[1] = {2};
  t2s_status st = T2S_OK;
  if (t2s_tset_add(&s, "conv.weight", T2S_FD_F32, 2, w_shape, w, err) == NULL ||
      t2s_tset_add(&s, "bn.bias", T2S_FD_F16, 1, h_shape, h, err) == NULL ||
      t2s_tset_add(&s, "num_batches", T2S_FD_I64, 0, NULL, w, err) == NULL)
    st = err->status;
  if (st == T2S_OK) st = t2s_tset_set_meta(&s, "format", "pt", err);
  if (st == T2S_OK) st = t2s_safetensors_write(at("safetensors", "gen_small.safetensors"), &s, err);
  if (st == T2S_OK) st = t2s_pth_write(at("torch_pickle", "gen_small.pth"), &s, err);
  t2s_tset_free(&s);
  return st;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: make_seeds OUT_DIR\n");
    return 2;
  }
  snprintf(out_dir, sizeof out_dir, "%s", argv[1]);
  mkdir(out_dir, 0755);
  t2s_error err = {0};
  t2s_status st = write_checkpoint(at("checkpoint", "gen_full.h5"), 1, &err);
  if (st == T2S_OK) st = write_checkpoint(at("checkpoint", "gen_meta_only.h5"), 0, &err);
  if (st == T2S_OK) st = write_shard(at("shard", "gen_labelled.h5"), 1, 2, &err);
  if (st == T2S_OK) st = write_shard(at("shard", "gen_unlabelled.h5"), 0, 1, &err);
  if (st == T2S_OK) st = write_pngs(&err);
  if (st == T2S_OK) st = write_weights(&err);
  if (st != T2S_OK) {
    fprintf(stderr, "make_seeds: %s\n", err.msg);
    return 1;
  }
  return 0;
}
