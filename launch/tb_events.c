#include "launch/tb_events.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct t2s_tb_writer {
  FILE *f;
  char path[4352];
  char jsonl[4096];  /* followed metrics file, "" when none */
  long offset;       /* bytes of it already mirrored */
};

/* ---- CRC-32C: reflected polynomial 0x82F63B78, bitwise table ---- */

uint32_t t2s_crc32c(const void *data, size_t n) {
  static uint32_t table[256];
  static int ready;
  if (!ready) {  /* idempotent: racing initialisers write the same values */
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t c = i;
      for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      table[i] = c;
    }
    ready = 1;
  }
  const uint8_t *p = data;
  uint32_t crc = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; i++) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

uint32_t t2s_crc32c_masked(const void *data, size_t n) {
  uint32_t crc = t2s_crc32c(data, n);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

/* ---- protobuf encoding (the few wire types an Event needs) ---- */

typedef struct pb_buf {
  uint8_t b[512];
  size_t n;
} pb_buf;

static void pb_varint(pb_buf *p, uint64_t v) {
  while (p->n < sizeof p->b) {
    uint8_t byte = v & 0x7F;
    v >>= 7;
    p->b[p->n++] = (uint8_t)(byte | (v ? 0x80 : 0));
    if (!v) break;
  }
}

static void pb_bytes(pb_buf *p, int field, const void *data, size_t len) {
  pb_varint(p, (uint64_t)field << 3 | 2);
  pb_varint(p, len);
  if (p->n + len <= sizeof p->b) memcpy(p->b + p->n, data, len);
  p->n += len;
}

static void pb_fixed(pb_buf *p, int field, const void *le, int bytes) {
  pb_varint(p, (uint64_t)field << 3 | (bytes == 8 ? 1 : 5));
  if (p->n + (size_t)bytes <= sizeof p->b) memcpy(p->b + p->n, le, (size_t)bytes);
  p->n += (size_t)bytes;
}

static void put_le(uint8_t *out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; i++) out[i] = (uint8_t)(v >> (8 * i));
}

/* Event{wall_time, step, file_version | summary{value{tag, simple_value}}}. */
static int encode_event(pb_buf *ev, double wall_time, int64_t step, const char *version,
                        const char *tag, float value) {
  uint8_t le[8];
  uint64_t wt;
  memcpy(&wt, &wall_time, 8);
  put_le(le, wt, 8);
  pb_fixed(ev, 1, le, 8);
  pb_varint(ev, 2 << 3 | 0);
  pb_varint(ev, (uint64_t)step);
  if (version) {
    pb_bytes(ev, 3, version, strlen(version));
  } else {
    pb_buf val = {.n = 0}, sum = {.n = 0};
    uint32_t fv;
    memcpy(&fv, &value, 4);
    put_le(le, fv, 4);
    pb_bytes(&val, 1, tag, strlen(tag));
    pb_fixed(&val, 2, le, 4);
    if (val.n > sizeof val.b) return 0;
    pb_bytes(&sum, 1, val.b, val.n);
    if (sum.n > sizeof sum.b) return 0;
    pb_bytes(ev, 5, sum.b, sum.n);
  }
  return ev->n <= sizeof ev->b;
}

static t2s_status write_record(t2s_tb_writer *w, const uint8_t *data, size_t n, t2s_error *err) {
  uint8_t head[12], tail[4];
  put_le(head, n, 8);
  put_le(head + 8, t2s_crc32c_masked(head, 8), 4);
  put_le(tail, t2s_crc32c_masked(data, n), 4);
  if (fwrite(head, 1, 12, w->f) != 12 || fwrite(data, 1, n, w->f) != n || fwrite(tail, 1, 4, w->f) != 4)
    return t2s_error_set(err, T2S_ERR_IO, "TensorBoard events %s: write failed: %s", w->path,
                         strerror(errno));
  return T2S_OK;
}

static double wall_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

t2s_tb_writer *t2s_tb_open(const char *dir, t2s_error *err) {
  t2s_tb_writer *w = calloc(1, sizeof *w);
  if (w == NULL) return t2s_error_set(err, T2S_ERR_NOMEM, "out of memory for a TensorBoard writer"), NULL;
  char host[256] = "localhost";
  gethostname(host, sizeof host - 1);
  snprintf(w->path, sizeof w->path, "%s/events.out.tfevents.%lld.%s.%ld", dir, (long long)time(NULL), host,
           (long)getpid());
  w->f = fopen(w->path, "wbx");  /* x: never truncate an existing event file */
  pb_buf ev = {.n = 0};
  if (w->f == NULL) {
    t2s_error_set(err, T2S_ERR_IO, "cannot create TensorBoard events %s: %s", w->path, strerror(errno));
  } else if (!encode_event(&ev, wall_now(), 0, "brain.Event:2", NULL, 0) ||
             write_record(w, ev.b, ev.n, err) != T2S_OK || t2s_tb_flush(w, err) != T2S_OK) {
    t2s_error_set(err, T2S_ERR_IO, "cannot write TensorBoard events %s", w->path);
  } else {
    return w;
  }
  t2s_tb_close(w);
  return NULL;
}

const char *t2s_tb_path(const t2s_tb_writer *w) { return w->path; }

t2s_status t2s_tb_scalar(t2s_tb_writer *w, const char *tag, int64_t step, double wall_time, float value,
                         t2s_error *err) {
  pb_buf ev = {.n = 0};
  if (!encode_event(&ev, wall_time, step, NULL, tag, value))
    return t2s_error_set(err, T2S_ERR_INVALID, "TensorBoard tag '%.60s...' is too long (at most 400 bytes)", tag);
  return write_record(w, ev.b, ev.n, err);
}

t2s_status t2s_tb_flush(t2s_tb_writer *w, t2s_error *err) {
  if (fflush(w->f) != 0)
    return t2s_error_set(err, T2S_ERR_IO, "TensorBoard events %s: flush failed: %s", w->path, strerror(errno));
  return T2S_OK;
}

void t2s_tb_close(t2s_tb_writer *w) {
  if (w == NULL) return;
  if (w->f) fclose(w->f);
  free(w);
}

/* ---- mirroring metrics.jsonl ---- */

t2s_tb_writer *t2s_tb_follow(const char *jsonl_path, t2s_error *err) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", jsonl_path);
  char *slash = strrchr(dir, '/');
  if (slash) *slash = '\0';
  else snprintf(dir, sizeof dir, ".");
  t2s_tb_writer *w = t2s_tb_open(dir, err);
  if (w == NULL) return NULL;
  snprintf(w->jsonl, sizeof w->jsonl, "%s", jsonl_path);
  struct stat st;
  w->offset = stat(jsonl_path, &st) == 0 ? (long)st.st_size : 0;
  return w;
}

/* Scans one flat JSON object: "key": number pairs (null, strings, nesting skipped).
 * Returns the number of pairs stored. */
static int parse_line(char *line, char keys[][128], double *vals, int max) {
  int n = 0;
  char *p = line;
  while (n < max && (p = strchr(p, '"')) != NULL) {
    char *end = strchr(p + 1, '"');
    if (end == NULL) break;
    size_t len = (size_t)(end - p - 1);
    char *colon = end + 1;
    while (*colon == ' ') colon++;
    p = end + 1;
    if (*colon != ':') continue;  /* a string value, not a key */
    char *num = colon + 1, *stop;
    double v = strtod(num, &stop);
    if (stop == num || len >= 128) continue;
    memcpy(keys[n], end - len, len);
    keys[n][len] = '\0';
    vals[n++] = v;
    p = stop;
  }
  return n;
}

static t2s_status mirror_line(t2s_tb_writer *w, char *line, double wall, t2s_error *err) {
  char keys[256][128];
  double vals[256];
  int n = parse_line(line, keys, vals, 256), it = -1;
  for (int i = 0; i < n; i++)
    if (strcmp(keys[i], "iteration") == 0) it = i;
  if (it < 0) return T2S_OK;  /* not a metrics record */
  t2s_status st = T2S_OK;
  for (int i = 0; i < n && st == T2S_OK; i++)
    if (i != it) st = t2s_tb_scalar(w, keys[i], (int64_t)vals[it], wall, (float)vals[i], err);
  return st;
}

t2s_status t2s_tb_sync(t2s_tb_writer *w, t2s_error *err) {
  if (w == NULL || w->jsonl[0] == '\0') return T2S_OK;
  FILE *f = fopen(w->jsonl, "rb");
  if (f == NULL)
    return t2s_error_set(err, T2S_ERR_IO, "cannot read %s for TensorBoard: %s", w->jsonl, strerror(errno));
  t2s_status st = fseek(f, w->offset, SEEK_SET) == 0 ? T2S_OK
                  : t2s_error_set(err, T2S_ERR_IO, "cannot seek in %s: %s", w->jsonl, strerror(errno));
  char *line = malloc(1 << 16);
  if (line == NULL) st = t2s_error_set(err, T2S_ERR_NOMEM, "out of memory mirroring %s", w->jsonl);
  double wall = wall_now();
  while (st == T2S_OK && fgets(line, 1 << 16, f) != NULL) {
    size_t len = strlen(line);
    if (len == 0 || line[len - 1] != '\n') break;  /* an unfinished line: next time */
    st = mirror_line(w, line, wall, err);
    if (st == T2S_OK) w->offset += (long)len;
  }
  free(line);
  fclose(f);
  return st == T2S_OK ? t2s_tb_flush(w, err) : st;
}

void t2s_tb_sync_or_drop(t2s_tb_writer **w, FILE *warn) {
  t2s_error err = {0};
  if (*w == NULL || t2s_tb_sync(*w, &err) == T2S_OK) return;
  fprintf(warn, "warning: TensorBoard events stopped (metrics.jsonl is unaffected): %s\n", err.msg);
  t2s_tb_close(*w);
  *w = NULL;
}
