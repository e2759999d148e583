/* t2sda_convert: weights between t2sda checkpoints and PyTorch / safetensors.
 *
 *   t2sda_convert import SRC.pth|SRC.safetensors|SRC.h5 OUT.h5 --arch CONFIG.yaml
 *                 [--naming mmseg|torchvision|timm|hf|segformer] [--prefix P] [--allow-partial]
 *   t2sda_convert export CKPT.h5 OUT.safetensors|OUT.pth [--which student|teacher] [--naming N]
 *   t2sda_convert inspect FILE [--arch CONFIG.yaml [--naming N] [--prefix P] [--allow-partial]]
 *
 * import builds the network of CONFIG's model.* keys, loads the weights
 * (core/formats/pretrained.h) and writes a checkpoint whose /params, /buffers and /ema
 * (teacher = student) hold them: usable as model.pretrained or for export.
 * export writes PyTorch names and shapes with num_batches_tracked added, so
 * `model.load_state_dict(load_file(OUT), strict=True)` works: the T2S-DA projection head
 * (proj_head.*, used only by the training loss) has no counterpart in the mmseg /
 * DAFormer model and is left out unless --with-proj-head asks for it.
 * inspect lists the tensors (of a t2sda checkpoint also the iteration, the ranks that
 * wrote it and the stored config) and exits 1 on what import would refuse: without
 * --arch, weights, biases and BN statistics that are not floating point; with
 * --arch, everything import checks (names, shapes, dtypes), without writing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/formats/checkpoint.h"
#include "core/nn/segmentor.h"
#include "core/formats/pretrained.h"
#include "core/formats/torch_pickle.h"
#include "launch/model_config.h"
#include "launch/train_config.h"
#include "core/version.h"

static void usage(FILE *out) {
  fprintf(out,
          "usage:\n"
          "  t2sda_convert import SRC OUT.h5 --arch CONFIG.yaml [--naming mmseg|torchvision|timm|hf|segformer]\n"
          "                [--prefix model.|ema_model.|backbone.|...] [--allow-partial]\n"
          "      SRC: .pth (torch.save zip), .safetensors or a t2sda checkpoint .h5\n"
          "  t2sda_convert export CKPT.h5 OUT.safetensors|OUT.pth [--which student|teacher] [--naming mmseg]\n"
          "                [--with-proj-head]   (proj_head.* is training-only and left out by default)\n"
          "  t2sda_convert inspect FILE [--arch CONFIG.yaml [--naming N] [--prefix P] [--allow-partial]]\n"
          "      lists the tensors; exits 1 on what import would refuse (with --arch: a dry-run import)\n");
}

static int fail(const t2s_error *err) {
  fprintf(stderr, "t2sda_convert: %s\n", err->msg);
  return 1;
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

typedef struct opts {
  const char *arch, *naming, *prefix, *which;
  int allow_partial;
  int with_proj_head;
} opts;

static int parse_opts(int argc, char **argv, int first, opts *o) {
  for (int i = first; i < argc; i++) {
    const char **slot = strcmp(argv[i], "--arch") == 0     ? &o->arch
                        : strcmp(argv[i], "--naming") == 0 ? &o->naming
                        : strcmp(argv[i], "--prefix") == 0 ? &o->prefix
                        : strcmp(argv[i], "--which") == 0  ? &o->which
                                                           : NULL;
    if (strcmp(argv[i], "--allow-partial") == 0) {
      o->allow_partial = 1;
    } else if (strcmp(argv[i], "--with-proj-head") == 0) {
      o->with_proj_head = 1;
    } else if (slot && i + 1 < argc) {
      *slot = argv[++i];
    } else {
      fprintf(stderr, "t2sda_convert: %s '%s'\n", slot ? "missing value after" : "unknown option", argv[i]);
      usage(stderr);
      return 0;
    }
  }
  return 1;
}

/* Builds the network of --arch's config into *m (*built = 1 once it must be freed)
 * and loads src into it: what import does before writing. */
static t2s_status build_and_load(const char *src, const opts *o, t2s_train_config *cfg,
                                 t2s_segmentor *m, int *built, t2s_error *err) {
  t2s_model_cfg mc;
  *built = 0;
  if (cfg == NULL) return t2s_error_set(err, T2S_ERR_NOMEM, "out of memory for the config");
  t2s_status st = t2s_train_config_load(cfg, o->arch, NULL, 0, err);
  if (st == T2S_OK) st = t2s_model_cfg_from_train_config(cfg, &mc, err);
  if (st == T2S_OK) st = t2s_segmentor_build(m, &mc, T2S_DEV_CPU, (uint64_t)cfg->seed, err);
  if (st != T2S_OK) return st;
  *built = 1;
  return t2s_load_pretrained_ex(&m->params, src, o->naming, o->prefix, o->allow_partial, NULL,
                                stdout, err);
}

static int need_arch(const char *cmd) {
  fprintf(stderr, "t2sda_convert %s: --arch CONFIG.yaml is required (it says which network "
                  "to build: model.backbone.*, model.decode_head.*, model.num_classes)\n", cmd);
  return 2;
}

static int cmd_import(const char *src, const char *out, const opts *o) {
  t2s_error err = {0};
  if (!o->arch) return need_arch("import");
  t2s_train_config *cfg = calloc(1, sizeof *cfg);
  t2s_segmentor m;
  char *yaml = NULL;
  int built = 0, rc = 1;
  if (build_and_load(src, o, cfg, &m, &built, &err) != T2S_OK) goto done;
  if (t2s_train_config_dump_string(cfg, &yaml, &err) != T2S_OK) goto done;
  t2s_ckpt_writer *w = t2s_ckpt_begin(out, &err);
  if (!w) goto done;
  if (t2s_ckpt_write_meta(w, 0, 1, yaml, &err) || t2s_ckpt_write_params(w, "params", &m.params, T2S_CKPT_TRAINABLE, &err) ||
      t2s_ckpt_write_params(w, "buffers", &m.params, T2S_CKPT_BUFFERS, &err) ||
      t2s_ckpt_write_params(w, "ema", &m.params, T2S_CKPT_TRAINABLE | T2S_CKPT_BUFFERS, &err)) {
    t2s_ckpt_abort(w);
    goto done;
  }
  if (t2s_ckpt_commit(w, &err) != T2S_OK) goto done;
  printf("wrote %s (%d parameters, %d buffers; the teacher /ema starts as the student)\n", out,
         m.params.count, m.params.buf_count);
  rc = 0;
done:
  if (rc) fail(&err);
  if (built) t2s_segmentor_free(&m);
  free(yaml);
  free(cfg);
  return rc;
}

/* `in` without the proj_head.* tensors (listed in dropped): a PyTorch segmentor has no
 * such module, and load_state_dict(strict=True) would reject them as unexpected keys. */
static t2s_status without_proj_head(const t2s_tensor_set *in, t2s_tensor_set *out, t2s_strlist *dropped,
                                    t2s_error *err) {
  for (int i = 0; i < in->count; i++) {
    const t2s_named_tensor *t = &in->items[i];
    if (strncmp(t->name, "proj_head.", 10) == 0) {
      if (!t2s_strlist_addf(dropped, "%s: the T2S-DA projection head is used only in training "
                            "(--with-proj-head exports it)", t->name))
        return t2s_error_set(err, T2S_ERR_NOMEM, "export: out of memory");
      continue;
    }
    if (!t2s_tset_add(out, t->name, t->dtype, t->ndim, t->shape, t->data, err)) return err->status;
  }
  return T2S_OK;
}

static int cmd_export(const char *ckpt, const char *out, const opts *o) {
  t2s_error err = {0};
  t2s_tensor_set ours, foreign;
  t2s_strlist dropped = {0};
  t2s_tset_init(&ours);
  t2s_tset_init(&foreign);
  int rc = 1, naming = t2s_naming_parse(o->naming ? o->naming : "mmseg");
  const char *which = o->which ? o->which : "student";
  const t2s_name_family *fam = NULL;
  if (naming < 0) {
    t2s_error_set(&err, T2S_ERR_INVALID, "--naming '%s': choose mmseg, torchvision, timm, hf or segformer", o->naming);
    goto done;
  }
  if (!ends_with(out, ".safetensors") && !ends_with(out, ".pth") && !ends_with(out, ".pt")) {
    t2s_error_set(&err, T2S_ERR_INVALID, "%s: the output name must end in .safetensors or .pth", out);
    goto done;
  }
  if (t2s_ckpt_read_set(ckpt, which, &ours, &err) != T2S_OK) goto done;
  if (!(fam = t2s_name_family_of_set(&ours))) {
    t2s_error_set(&err, T2S_ERR_UNSUPPORTED, "%s: no name map knows this network's tensors", ckpt);
    goto done;
  }
  if (!o->with_proj_head) {
    t2s_tensor_set kept;
    t2s_tset_init(&kept);
    t2s_status fs = without_proj_head(&ours, &kept, &dropped, &err);
    t2s_tset_free(&ours);
    ours = kept;
    if (fs != T2S_OK) goto done;
  }
  if (t2s_name_map_export(fam, naming, &ours, &foreign, &dropped, &err) != T2S_OK) goto done;
  t2s_tset_set_meta(&foreign, "format", "pt", NULL);
  t2s_tset_set_meta(&foreign, "t2sda.source", ckpt, NULL);
  t2s_tset_set_meta(&foreign, "t2sda.which", which, NULL);
  t2s_tset_set_meta(&foreign, "t2sda.naming", t2s_naming_name(naming), NULL);
  if ((ends_with(out, ".safetensors") ? t2s_safetensors_write(out, &foreign, &err)
                                      : t2s_pth_write(out, &foreign, &err)) != T2S_OK)
    goto done;
  for (int i = 0; i < dropped.n; i++) printf("  not exported: %s\n", dropped.v[i]);
  printf("wrote %s: %d tensors of the %s in %s naming (num_batches_tracked added for PyTorch)\n", out,
         foreign.count, which, t2s_naming_name(naming));
  rc = 0;
done:
  if (rc) fail(&err);
  t2s_strlist_free(&dropped);
  t2s_tset_free(&ours);
  t2s_tset_free(&foreign);
  return rc;
}

/* What import refuses whatever the network: a weight, bias or BN statistic that is
 * not floating point (e.g. a header whose dtype was swapped). Returns the count. */
static int dtype_problems(const t2s_tensor_set *s) {
  static const char *const float_suffixes[] = {".weight", ".bias", ".running_mean", ".running_var"};
  int n = 0;
  for (int i = 0; i < s->count; i++) {
    const t2s_named_tensor *t = &s->items[i];
    if (t->dtype <= T2S_FD_F64) continue;
    for (size_t k = 0; k < sizeof float_suffixes / sizeof *float_suffixes; k++)
      if (ends_with(t->name, float_suffixes[k])) {
        fprintf(stderr, "t2sda_convert inspect: tensor '%s' has dtype %s, but a %s must be "
                "floating point; import would refuse it (the file is damaged or mislabelled)\n",
                t->name, t2s_fdtype_name(t->dtype), float_suffixes[k] + 1);
        n++;
        break;
      }
  }
  return n;
}

/* With --arch: the whole import check against the network, nothing written. */
static int inspect_against(const char *path, const opts *o) {
  t2s_error err = {0};
  t2s_train_config *cfg = calloc(1, sizeof *cfg);
  t2s_segmentor m;
  int built = 0;
  t2s_status st = build_and_load(path, o, cfg, &m, &built, &err);
  if (st != T2S_OK) fail(&err);
  else printf("%s fits the network of %s (import would succeed)\n", path, o->arch);
  if (built) t2s_segmentor_free(&m);
  free(cfg);
  return st == T2S_OK ? 0 : 1;
}

/* What a t2sda checkpoint says about its run: iteration, ranks, the stored config. */
static int inspect_checkpoint(const char *path) {
  t2s_error err = {0};
  t2s_ckpt_reader *r = t2s_ckpt_open(path, &err);
  if (r == NULL) return fail(&err);
  int64_t iteration = 0;
  int world = 0;
  char *yaml = NULL;
  t2s_status st = t2s_ckpt_read_meta(r, &iteration, &world, &yaml, &err);
  t2s_ckpt_close(r);
  if (st != T2S_OK) return fail(&err);
  printf("iteration %lld, written by %d rank(s)\n", (long long)iteration, world);
  if (yaml && yaml[0]) {
    printf("stored config (t2sda_eval %s uses it; t2sda_train CONFIG --resume %s continues the run):\n", path, path);
    for (const char *p = yaml; *p;) {
      size_t n = strcspn(p, "\n");
      printf("  %.*s\n", (int)n, p);
      p += n + (p[n] == '\n');
    }
  } else {
    printf("no stored config\n");
  }
  free(yaml);
  return 0;
}

static int cmd_inspect(const char *path, const opts *o) {
  t2s_error err = {0};
  t2s_tensor_set s;
  t2s_weights_format fmt = T2S_WF_UNKNOWN;
  t2s_tset_init(&s);
  if (t2s_weights_read(path, NULL, &s, &fmt, &err) != T2S_OK) {
    t2s_tset_free(&s);
    return fail(&err);
  }
  int64_t total = 0;
  printf("%s: %s, %d tensors\n", path, t2s_weights_format_name(fmt), s.count);
  for (int i = 0; i < s.n_meta; i++) {
    const char *v = s.meta_values[i];
    printf("  meta %s = %.*s%s\n", s.meta_keys[i], (int)strcspn(v, "\n"), v, strchr(v, '\n') ? " ..." : "");
  }
  for (int i = 0; i < s.count; i++) {
    char shape[128];
    printf("  %-60s %-5s %s\n", s.items[i].name, t2s_fdtype_name(s.items[i].dtype),
           t2s_named_shape_str(&s.items[i], shape, sizeof shape));
    if (s.items[i].dtype <= T2S_FD_F64) total += t2s_named_numel(&s.items[i]);
  }
  printf("%lld floating-point values\n", (long long)total);
  int problems = dtype_problems(&s);
  t2s_tset_free(&s);
  if (problems) return 1;
  if (fmt == T2S_WF_CKPT && inspect_checkpoint(path) != 0) return 1;
  return o->arch ? inspect_against(path, o) : 0;
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "--version") == 0) return puts(T2S_VERSION_LINE("t2sda_convert")) == EOF;
  for (int i = 1; i < argc; i++) /* also `t2sda_convert import --help` */
    if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      usage(stdout);
      return 0;
    }
  opts o = {0};
  if (argc >= 3 && strcmp(argv[1], "inspect") == 0)
    return parse_opts(argc, argv, 3, &o) ? cmd_inspect(argv[2], &o) : 2;
  if (argc >= 4 && strcmp(argv[1], "import") == 0)
    return parse_opts(argc, argv, 4, &o) ? cmd_import(argv[2], argv[3], &o) : 2;
  if (argc >= 4 && strcmp(argv[1], "export") == 0)
    return parse_opts(argc, argv, 4, &o) ? cmd_export(argv[2], argv[3], &o) : 2;
  usage(stderr);
  return 2;
}
