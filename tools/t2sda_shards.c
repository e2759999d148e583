/* t2sda_shards: PNG/JPEG dataset trees -> HDF5 shards (the shard contract of docs/formats.md).
 *
 *   t2sda_shards LAYOUT ROOT OUT [--split train|val|test]
 *                [--shards K] [--resize W H | --no-resize] [--skip-bad] [--threads N]
 *                [--level 1-4] [--domain NAME] [--unlabelled] [--overwrite] [--strict-labels]
 *                [--images DIR --labels DIR --mapping FILE]        (generic)
 *                [--condition fog|night|rain|snow|all]              (acdc)
 *                [--condition night|twilight|day]                   (darkzurich)
 *   LAYOUT: cityscapes gta5 synthia generic bdd100k mapillary acdc darkzurich
 *
 * Writes OUT/<domain>_<split>-00000-of-0000K.h5 ... Each image's size before the resize
 * goes to the shard's /orig_size, so predictions can be written back at the source
 * resolution (t2sda_eval --format cityscapes). The layouts, the label id ->
 * train id tables and the default sizes (DAFormer: GTA5 1280x720, SYNTHIA 1280x760,
 * Cityscapes 1024x512) are described in data/importers.h. Label ids outside the
 * dataset's mapping become 255 (ignore), as mmseg does, with one warning per run (id:
 * pixels, images) and all of them in OUT/unmapped_labels.txt; --strict-labels makes
 * them bad inputs instead. Bad inputs (an image without its label, a label whose size
 * differs from its image, an unreadable PNG) stop the run before any shard appears under its
 * final name, and every one of them is reported (all in OUT/bad_inputs.txt);
 * --skip-bad skips them instead and lists them in OUT/skipped.txt. --unlabelled
 * imports images only (a target domain; no labels read, no mapping needed).
 * OUT holds one set per domain and split: another set (a different --shards) is
 * refused, or replaced with --overwrite once the new one is complete. Ctrl-C stops
 * the run and removes its partial shards; files of a killed run are removed by
 * the next run. ACDC's --condition all imports the four conditions one after the
 * other, each as its own shard set and domain (acdc_fog, acdc_night, ...); with
 * --skip-bad each condition's list is OUT/skipped_<domain>.txt. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "data/importers.h"
#include "core/version.h"

static const char *usage =
    "usage: t2sda_shards LAYOUT ROOT OUT [--split train|val|test]\n"
    "                    [--shards K] [--resize W H | --no-resize] [--skip-bad] [--threads N]\n"
    "                    [--level 1-4] [--domain NAME] [--unlabelled] [--overwrite] [--strict-labels]\n"
    "                    [--images DIR --labels DIR --mapping FILE]   (generic)\n"
    "                    [--condition fog|night|rain|snow|all]        (acdc)\n"
    "                    [--condition night|twilight|day]             (darkzurich, default night)\n"
    "  LAYOUT: cityscapes gta5 synthia generic bdd100k mapillary acdc darkzurich\n"
    "          (the trees and label tables: docs/datasets.md)\n"
    "  --unlabelled  images only (e.g. a target domain): no labels are read\n"
    "  --overwrite   replace another set of this domain and split in OUT (another --shards)\n"
    "  --skip-bad    skip unusable inputs (listed in OUT/skipped.txt) instead of failing\n"
    "  --strict-labels  refuse labels with ids outside the mapping (default: they become 255,\n"
    "                with a warning and OUT/unmapped_labels.txt: id, pixels, images)\n";

static int parse_int(const char *flag, const char *s, int lo, int hi, int *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *end || v < lo || v > hi) {
    fprintf(stderr, "t2sda_shards: %s expects an integer in %d..%d, got '%s'\n", flag, lo, hi, s);
    return 0;
  }
  *out = (int)v;
  return 1;
}

static int parse_args(int argc, char **argv, t2s_import_opts *o) {
  o->root = argv[2];
  o->out_dir = argv[3];
  for (int i = 4; i < argc; i++) {
    const char *a = argv[i];
    int need = strcmp(a, "--resize") == 0 ? 2
               : (strcmp(a, "--skip-bad") == 0 || strcmp(a, "--no-resize") == 0 ||
                  strcmp(a, "--unlabelled") == 0 || strcmp(a, "--overwrite") == 0 ||
                  strcmp(a, "--strict-labels") == 0) ? 0 : 1;
    if (i + need >= argc) {
      fprintf(stderr, "t2sda_shards: %s needs %d value(s)\n%s", a, need, usage);
      return 0;
    }
    int ok = 1;
    if (strcmp(a, "--split") == 0) o->split = argv[++i];
    else if (strcmp(a, "--shards") == 0) ok = parse_int(a, argv[++i], 1, 100000, &o->shards);
    else if (strcmp(a, "--threads") == 0) ok = parse_int(a, argv[++i], 1, 256, &o->threads);
    else if (strcmp(a, "--level") == 0) ok = parse_int(a, argv[++i], 1, 4, &o->deflate_level);
    else if (strcmp(a, "--domain") == 0) o->domain = argv[++i];
    else if (strcmp(a, "--images") == 0) o->image_dir = argv[++i];
    else if (strcmp(a, "--labels") == 0) o->label_dir = argv[++i];
    else if (strcmp(a, "--mapping") == 0) o->mapping_path = argv[++i];
    else if (strcmp(a, "--condition") == 0) o->condition = argv[++i];
    else if (strcmp(a, "--skip-bad") == 0) o->skip_bad = 1;
    else if (strcmp(a, "--unlabelled") == 0) o->unlabelled = 1;
    else if (strcmp(a, "--overwrite") == 0) o->overwrite = 1;
    else if (strcmp(a, "--strict-labels") == 0) o->strict_labels = 1;
    else if (strcmp(a, "--no-resize") == 0) o->width = o->height = 0;
    else if (strcmp(a, "--resize") == 0) {
      ok = parse_int(a, argv[i + 1], 1, 16384, &o->width) &&
           parse_int(a, argv[i + 2], 1, 16384, &o->height);
      i += 2;
    } else {
      fprintf(stderr, "t2sda_shards: unknown option '%s'\n%s", a, usage);
      return 0;
    }
    if (!ok) return 0;
  }
  if (o->unlabelled && (o->label_dir || o->mapping_path)) {
    fprintf(stderr, "t2sda_shards: --unlabelled reads no labels: drop --labels and --mapping\n");
    return 0;
  }
  if (o->layout != T2S_IMPORT_GENERIC && (o->image_dir || o->label_dir || o->mapping_path)) {
    fprintf(stderr, "t2sda_shards: --images, --labels and --mapping are for the generic layout; "
            "%s has a fixed layout\n", t2s_import_layout_name(o->layout));
    return 0;
  }
  if (o->condition != NULL && strcmp(o->condition, "all") == 0 && o->domain != NULL) {
    fprintf(stderr, "t2sda_shards: --condition all writes one domain per condition "
            "(acdc_fog, ...): drop --domain, or import one condition\n");
    return 0;
  }
  return 1;
}

typedef struct progress_state {
  double start, last;
  int tty;
  int last_decile;
} progress_state;

/* On a terminal: one line rewritten a few times a second; in a log: every 10%. */
static void show_progress(void *user, int64_t done, int64_t total, int64_t skipped) {
  progress_state *ps = user;
  double t = t2s_clock_s(), el = t - ps->start;
  int decile = (int)(done * 10 / total);
  if (ps->tty ? (t - ps->last < 0.25 && done < total) : (decile == ps->last_decile)) return;
  ps->last = t;
  ps->last_decile = decile;
  double rate = el > 0 ? (double)done / el : 0;
  double eta = rate > 0 ? (double)(total - done) / rate : 0;
  fprintf(stderr, "%s[%" PRId64 "/%" PRId64 "] %5.1f%%  %.1f img/s  ETA %dm%02ds%s%s",
          ps->tty ? "\r" : "", done, total, 100.0 * (double)done / (double)total, rate,
          (int)eta / 60, (int)eta % 60, skipped ? "  (skipped some)" : "",
          ps->tty && done < total ? "" : "\n");
  fflush(stderr);
}

static void print_summary(const t2s_import_opts *o, const t2s_import_summary *s, double secs) {
  printf("t2sda_shards: %s %s: %" PRId64 " images (%dx%d) in %d shard(s), %.1f MiB, %.1f s\n",
         s->domain, o->split, s->images, s->width,
         s->height, s->shards, (double)s->bytes / (1024.0 * 1024.0), secs);
  printf("  first shard: %s\n", s->first_shard);
  if (s->resized)
    printf("  resized %" PRId64 " image(s) from their source size, which /orig_size records "
           "(t2sda_eval --format cityscapes writes predictions at it)\n", s->resized);
  if (s->cleaned)
    printf("  removed %" PRId64 " leftover file(s) of an interrupted run\n", s->cleaned);
  if (s->replaced)
    printf("  removed %" PRId64 " shard(s) of the previous set (--overwrite)\n", s->replaced);
  if (s->skipped_report[0])
    printf("  skipped: %" PRId64 " input(s), listed in %s\n", s->skipped, s->skipped_report);
  if (s->unmapped_warning[0]) fprintf(stderr, "t2sda_shards: WARNING: %s\n", s->unmapped_warning);
  if (o->unlabelled) {
    printf("  unlabelled: no class frequency\n");
    return;
  }
  int64_t total = s->ignored_pixels;
  for (int c = 0; c < s->num_classes; c++) total += s->class_pixels[c];
  printf("  class frequency (train ids):\n  %3s  %-16s %15s %8s\n", "id", "class", "pixels", "share");
  for (int c = 0; c < s->num_classes; c++)
    printf("  %3d  %-16s %15" PRId64 " %7.3f%%\n", c, s->class_names[c], s->class_pixels[c],
           total ? 100.0 * (double)s->class_pixels[c] / (double)total : 0.0);
  printf("  %3d  %-16s %15" PRId64 " %7.3f%%\n", 255, "(ignore)", s->ignored_pixels,
         total ? 100.0 * (double)s->ignored_pixels / (double)total : 0.0);
}

/* With --condition all every condition's run writes OUT/skipped.txt: each is kept
 * under its domain's name (OUT/skipped_acdc_fog.txt) instead of overwriting the last. */
static void keep_report(char *report, size_t size, const char *out_dir, const char *stem,
                        const char *domain) {
  if (!report[0]) return;
  char dst[4096];
  int n = snprintf(dst, sizeof dst, "%s/%s_%s.txt", out_dir, stem, domain);
  if (n > 0 && (size_t)n < sizeof dst && (size_t)n < size && rename(report, dst) == 0)
    memcpy(report, dst, (size_t)n + 1);
}

/* ... and so is OUT/unmapped_labels.txt (OUT/unmapped_labels_acdc_fog.txt). */
static void keep_skipped_report(const t2s_import_opts *o, t2s_import_summary *s, int every) {
  if (!every) return;
  keep_report(s->skipped_report, sizeof s->skipped_report, o->out_dir, "skipped", s->domain);
  if (!s->unmapped_report[0]) return;
  char old[sizeof s->unmapped_report];
  memcpy(old, s->unmapped_report, sizeof old);
  keep_report(s->unmapped_report, sizeof s->unmapped_report, o->out_dir, "unmapped_labels",
              s->domain);
  char *at = strstr(s->unmapped_warning, old);  /* the warning names the kept file */
  if (at != NULL && strcmp(old, s->unmapped_report) != 0) {
    char tail[1024];
    snprintf(tail, sizeof tail, "%s", at + strlen(old));
    snprintf(at, sizeof s->unmapped_warning - (size_t)(at - s->unmapped_warning), "%s%s",
             s->unmapped_report, tail);
  }
}

/* Ctrl-C: the import stops at the next image and removes its partial shards; a
 * second Ctrl-C kills at once (SA_RESETHAND), and the next run cleans up. */
static volatile sig_atomic_t interrupted;
static void on_interrupt(int sig) {
  (void)sig;
  interrupted = 1;
}

int main(int argc, char **argv) {
  /* line-buffered even into a file or pipe: a run killed outright (kill -9, OOM) must
   * not lose the progress lines it printed last */
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc >= 2 && strcmp(argv[1], "--version") == 0) return puts(T2S_VERSION_LINE("t2sda_shards")) == EOF;
  for (int i = 1; i < argc; i++) /* also `t2sda_shards gta5 --help` */
    if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      fputs(usage, stdout);
      return 0;
    }
  t2s_import_layout layout;
  if (argc >= 2 && !t2s_import_layout_parse(argv[1], &layout)) {
    fprintf(stderr, "t2sda_shards: unknown dataset layout '%s' (choose cityscapes, gta5, synthia, "
            "generic, bdd100k, mapillary, acdc or darkzurich)\n%s", argv[1], usage);
    return 2;
  }
  if (argc < 4) {
    fprintf(stderr, "t2sda_shards: ROOT and OUT are required\n%s", usage);
    return 2;
  }
  t2s_import_opts o;
  t2s_import_opts_default(&o, layout);
  if (!parse_args(argc, argv, &o)) return 2;
  progress_state ps = {t2s_clock_s(), 0, isatty(2), -1};
  o.progress = show_progress;
  o.progress_user = &ps;
  o.cancel = &interrupted;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_interrupt;
  sa.sa_flags = SA_RESETHAND;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  t2s_import_summary *sum = malloc(sizeof *sum);
  if (sum == NULL) {
    fprintf(stderr, "t2sda_shards: out of memory\n");
    return 1;
  }
  static const char *const all[] = {"fog", "night", "rain", "snow"};
  int every = o.condition != NULL && strcmp(o.condition, "all") == 0;
  int rc = 0;
  for (int k = 0; k < (every ? 4 : 1) && rc == 0; k++) {
    if (every) o.condition = all[k];
    ps = (progress_state){t2s_clock_s(), 0, isatty(2), -1};
    t2s_error err = {0};
    if (t2s_import_run(&o, sum, &err) != T2S_OK) {
      fprintf(stderr, "%st2sda_shards: %s\nt2sda_shards: no shard of %s was written under its "
              "final name%s\n", ps.tty ? "\n" : "", err.msg, every ? o.condition : "this run",
              every && k > 0 ? " (the conditions before it are complete)" : "");
      rc = 1;
    } else {
      keep_skipped_report(&o, sum, every);
      print_summary(&o, sum, t2s_clock_s() - ps.start);
    }
  }
  free(sum);
  return rc;
}
