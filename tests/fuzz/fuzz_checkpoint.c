/* libFuzzer harness: the checkpoint reader (core/formats/checkpoint.c) on any
 * bytes, via a temporary file. The expected layout is the one make_seeds.c
 * writes: a two-tensor model (params, buffers, ema, one optimizer slot) and
 * /state arrays; reading follows t2sda_train's resume order. */
#include <stdlib.h>
#include <string.h>

#include "core/formats/checkpoint.h"
#include "tests/fuzz/fuzz_util.h"
#include "tests/fuzz/seed_model.h"

static void read_all(t2s_ckpt_reader *r, t2s_params *p) {
  t2s_error err = {0};
  int64_t it = 0;
  int world = 0;
  char *config = NULL;
  t2s_status st = t2s_ckpt_read_meta(r, &it, &world, &config, &err);
  if (st == T2S_OK) T2S_FUZZ_EXPECT(config != NULL);
  free(config);
  if (st == T2S_OK) st = t2s_ckpt_read_params(r, "params", p, T2S_CKPT_TRAINABLE, &err);
  if (st == T2S_OK) st = t2s_ckpt_read_params(r, "buffers", p, T2S_CKPT_BUFFERS, &err);
  if (st == T2S_OK) st = t2s_ckpt_read_params(r, "ema", p, T2S_CKPT_TRAINABLE | T2S_CKPT_BUFFERS, &err);
  float *slot = malloc(p->numel * sizeof *slot);
  if (st == T2S_OK && slot) st = t2s_ckpt_read_slot(r, "momentum", p, slot, &err);
  free(slot);
  int64_t step = 0;
  double scale = 0;
  if (st == T2S_OK) st = t2s_ckpt_read_scalar_i64(r, "/optim/step", &step, &err);
  if (st == T2S_OK) st = t2s_ckpt_read_scalar_f64(r, "/state/loss_scale", &scale, &err);
  int ndim = 0;
  int64_t shape[T2S_CKPT_MAX_DIMS];
  if (st == T2S_OK) st = t2s_ckpt_array_shape(r, "/state/sampler/position", &ndim, shape, &err);
  if (st == T2S_OK && ndim == 1 && shape[0] >= 0 && shape[0] <= 4096) {
    int64_t *pos = malloc(((size_t)shape[0] + 1) * sizeof *pos);
    if (pos) st = t2s_ckpt_read_array(r, "/state/sampler/position", T2S_CKPT_I64, 1, shape, pos, &err);
    free(pos);
  }
  if (st != T2S_OK) T2S_FUZZ_EXPECT(err.msg[0] != '\0');
  (void)t2s_ckpt_has(r, "/state/flags");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static t2s_params model;
  static int ready;
  if (!ready) {
    t2s_error err = {0};
    if (t2s_seed_model(&model, &err) != T2S_OK) __builtin_trap();
    ready = 1;
  }
  const char *path = t2s_fuzz_to_file(data, size, ".ckpt.h5");
  if (path == NULL) return 0;
  t2s_error err = {0};
  t2s_ckpt_reader *r = t2s_ckpt_open(path, &err);
  if (r == NULL) {
    T2S_FUZZ_EXPECT(err.msg[0] != '\0');
  } else {
    read_all(r, &model);
    t2s_ckpt_close(r);
  }
  unlink(path);
  return 0;
}
