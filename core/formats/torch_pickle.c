/* PyTorch .pth reader and writer (format and safety rules: core/formats/torch_pickle.h). */
#include "core/formats/torch_pickle.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- little-endian field access and CRC-32 -------------------------------- */

static uint32_t rd16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t rd32(const uint8_t *p) { return rd16(p) | rd16(p + 2) << 16; }
static uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

/* CRC-32 (ISO-HDLC, polynomial 0xEDB88320 reflected), as zip stores it. */
static uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n) {
  crc = ~crc;
  while (n--) {
    crc ^= *p++;
    for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1)));
  }
  return ~crc;
}

/* ---- zip directory -------------------------------------------------------- */

typedef struct zip_entry {
  char name[256];
  const uint8_t *data;
  uint64_t size;
  uint32_t crc;
  int crc_checked;
} zip_entry;

typedef struct zip_dir {
  zip_entry *e;
  int n;
} zip_dir;

static t2s_status zip_fail(const char *what, t2s_error *err, const char *why) {
  return t2s_error_set(err, T2S_ERR_FORMAT, "%s: not a readable PyTorch zip archive: %s", what, why);
}

/* Finds the end-of-central-directory record (zip64 when the 32-bit fields overflow). */
static t2s_status zip_locate_cd(const uint8_t *buf, size_t len, const char *what, uint64_t *cd_off,
                                uint64_t *cd_size, uint64_t *count, t2s_error *err) {
  if (len < 22) return zip_fail(what, err, "file shorter than a zip trailer (truncated?)");
  size_t lo = len > 22 + 65535 ? len - 22 - 65535 : 0, eocd = (size_t)-1;
  for (size_t i = len - 22 + 1; i-- > lo;)
    if (rd32(buf + i) == 0x06054b50u) {
      eocd = i;
      break;
    }
  if (eocd == (size_t)-1) return zip_fail(what, err, "no end-of-central-directory record (truncated file?)");
  *count = rd16(buf + eocd + 10);
  *cd_size = rd32(buf + eocd + 12);
  *cd_off = rd32(buf + eocd + 16);
  if (*count == 0xFFFF || *cd_size == 0xFFFFFFFFu || *cd_off == 0xFFFFFFFFu) {
    if (eocd < 20 || rd32(buf + eocd - 20) != 0x07064b50u)
      return zip_fail(what, err, "zip64 sizes without a zip64 locator");
    uint64_t z = rd64(buf + eocd - 20 + 8);
    if (z > len || len - z < 56 || rd32(buf + z) != 0x06064b50u)
      return zip_fail(what, err, "zip64 end-of-central-directory record out of bounds");
    *count = rd64(buf + z + 32);
    *cd_size = rd64(buf + z + 40);
    *cd_off = rd64(buf + z + 48);
  }
  if (*cd_off > len || *cd_size > len - *cd_off)
    return zip_fail(what, err, "central directory out of bounds (truncated file?)");
  if (*count > *cd_size / 46) return zip_fail(what, err, "entry count larger than the central directory");
  return T2S_OK;
}

/* Reads the zip64 extended-information extra field (id 1): the 64-bit values of
 * whichever 32-bit fields were 0xFFFFFFFF, in the order usize, csize, offset. */
static int zip64_extra(const uint8_t *x, uint32_t xlen, uint64_t *usize, uint64_t *csize, uint64_t *off) {
  for (uint32_t i = 0; i + 4 <= xlen;) {
    uint32_t id = rd16(x + i), n = rd16(x + i + 2);
    if (i + 4 + n > xlen) return 0;
    if (id == 1) {
      uint32_t k = i + 4;
      uint64_t *want[3] = {*usize == 0xFFFFFFFFu ? usize : NULL, *csize == 0xFFFFFFFFu ? csize : NULL,
                           *off == 0xFFFFFFFFu ? off : NULL};
      for (int w = 0; w < 3; w++)
        if (want[w]) {
          if (k + 8 > i + 4 + n) return 0;
          *want[w] = rd64(x + k);
          k += 8;
        }
      return 1;
    }
    i += 4 + n;
  }
  return 1;
}

static t2s_status zip_open(const uint8_t *buf, size_t len, const char *what, zip_dir *z, t2s_error *err) {
  uint64_t cd_off = 0, cd_size = 0, count = 0;
  memset(z, 0, sizeof *z);
  t2s_status st = zip_locate_cd(buf, len, what, &cd_off, &cd_size, &count, err);
  if (st) return st;
  z->e = calloc(count ? count : 1, sizeof *z->e);
  if (!z->e) return t2s_error_set(err, T2S_ERR_NOMEM, "%s: out of memory (zip directory)", what);
  const uint8_t *p = buf + cd_off, *end = buf + cd_off + cd_size;
  for (uint64_t i = 0; i < count; i++) {
    if (end - p < 46 || rd32(p) != 0x02014b50u) return zip_fail(what, err, "damaged central directory");
    uint32_t method = rd16(p + 10), nlen = rd16(p + 28), xlen = rd16(p + 30), clen = rd16(p + 32);
    uint64_t csize = rd32(p + 20), usize = rd32(p + 24), off = rd32(p + 42);
    if ((uint64_t)(end - p) < 46ull + nlen + xlen + clen) return zip_fail(what, err, "damaged central directory");
    if (!zip64_extra(p + 46 + nlen, xlen, &usize, &csize, &off)) return zip_fail(what, err, "damaged zip64 field");
    zip_entry *e = &z->e[z->n++];
    if (nlen >= sizeof e->name) return zip_fail(what, err, "entry name longer than 255 bytes");
    memcpy(e->name, p + 46, nlen);
    e->name[nlen] = '\0';
    if (method != 0) {
      char why[400];
      snprintf(why, sizeof why, "entry '%s' is compressed (method %u); torch.save stores entries "
               "uncompressed: re-save the file with torch.save", e->name, method);
      return zip_fail(what, err, why);
    }
    if (csize != usize) return zip_fail(what, err, "stored entry with different packed and unpacked sizes");
    if (off > len || len - off < 30 || rd32(buf + off) != 0x04034b50u)
      return zip_fail(what, err, "local header out of bounds or damaged (truncated file?)");
    uint64_t data = off + 30 + rd16(buf + off + 26) + rd16(buf + off + 28);
    if (data > len || len - data < usize) {
      char why[400];
      snprintf(why, sizeof why, "entry '%s' (%" PRIu64 " bytes) runs past the end of the file "
               "(truncated?)", e->name, usize);
      return zip_fail(what, err, why);
    }
    e->data = buf + data;
    e->size = usize;
    e->crc = rd32(p + 16);
    p += 46 + nlen + xlen + clen;
  }
  return T2S_OK;
}

/* The entry named prefix + rest, with its CRC verified on first use. */
static const zip_entry *zip_find(zip_dir *z, const char *prefix, const char *rest) {
  size_t pl = strlen(prefix);
  for (int i = 0; i < z->n; i++)
    if (strncmp(z->e[i].name, prefix, pl) == 0 && strcmp(z->e[i].name + pl, rest) == 0) {
      zip_entry *e = &z->e[i];
      if (!e->crc_checked) e->crc_checked = crc32_update(0, e->data, e->size) == e->crc ? 1 : -1;
      return e;
    }
  return NULL;
}

/* ---- pickle values -------------------------------------------------------- */

typedef enum pv_type {
  PV_NONE, PV_BOOL, PV_INT, PV_FLOAT, PV_STR, PV_TUPLE, PV_LIST, PV_DICT, PV_GLOBAL, PV_STORAGE,
  PV_TENSOR, PV_MARK,
} pv_type;

/* The callables a state dict needs. */
typedef enum pv_global { G_ORDERED_DICT, G_REBUILD_TENSOR_V2, G_REBUILD_PARAMETER, G_STORAGE } pv_global;

typedef struct pv pv;
struct pv {
  pv_type type;
  int64_t i;            /* INT, BOOL; GLOBAL: pv_global; STORAGE: numel */
  double f;
  char *s;              /* STR; STORAGE: key */
  pv **items;           /* TUPLE, LIST; DICT: key, value, key, value, ... */
  int n, cap;
  int dtype;            /* STORAGE, GLOBAL(G_STORAGE): t2s_fdtype */
  pv *storage;          /* TENSOR */
  int64_t offset;
  int ndim;
  int64_t shape[T2S_TSET_MAX_DIMS], stride[T2S_TSET_MAX_DIMS];
};

typedef struct pvm {
  const uint8_t *p, *start, *end;
  const char *what;
  t2s_error *err;
  pv **all;             /* every value allocated, for freeing */
  int n_all, cap_all;
  pv **stack;
  int sp, cap_stack;
  pv **memo;
  int64_t cap_memo, n_memo;  /* n_memo: entries set so far (MEMOIZE's next index) */
  pv mark;              /* the MARK sentinel */
} pvm;

static int vm_fail(pvm *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int vm_fail(pvm *m, const char *fmt, ...) {
  char why[600];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  t2s_error_set(m->err, T2S_ERR_FORMAT, "%s: data.pkl byte %td: %s", m->what, m->p - m->start, why);
  return 0;
}

static pv *pv_new(pvm *m, pv_type type) {
  if (m->n_all == m->cap_all) {
    int cap = m->cap_all ? 2 * m->cap_all : 256;
    pv **a = realloc(m->all, (size_t)cap * sizeof *a);
    if (!a) return vm_fail(m, "out of memory"), NULL;
    m->all = a;
    m->cap_all = cap;
  }
  pv *v = calloc(1, sizeof *v);
  if (!v) return vm_fail(m, "out of memory"), NULL;
  v->type = type;
  m->all[m->n_all++] = v;
  return v;
}

static int pv_append(pvm *m, pv *c, pv *x) {
  if (c->n == c->cap) {
    int cap = c->cap ? 2 * c->cap : 8;
    pv **it = realloc(c->items, (size_t)cap * sizeof *it);
    if (!it) return vm_fail(m, "out of memory");
    c->items = it;
    c->cap = cap;
  }
  c->items[c->n++] = x;
  return 1;
}

static int push(pvm *m, pv *v) {
  if (!v) return 0;
  if (m->sp == m->cap_stack) {
    int cap = m->cap_stack ? 2 * m->cap_stack : 64;
    if (cap > (1 << 22)) return vm_fail(m, "pickle stack deeper than %d", 1 << 22);
    pv **s = realloc(m->stack, (size_t)cap * sizeof *s);
    if (!s) return vm_fail(m, "out of memory");
    m->stack = s;
    m->cap_stack = cap;
  }
  m->stack[m->sp++] = v;
  return 1;
}

static pv *pop(pvm *m) {
  if (m->sp == 0 || m->stack[m->sp - 1] == &m->mark) return vm_fail(m, "pickle stack underflow"), NULL;
  return m->stack[--m->sp];
}

/* Index of the topmost MARK, or -1 (with the error set). */
static int find_mark(pvm *m) {
  for (int i = m->sp - 1; i >= 0; i--)
    if (m->stack[i] == &m->mark) return i;
  return vm_fail(m, "no MARK on the pickle stack"), -1;
}

static const uint8_t *take(pvm *m, size_t n) {
  if ((size_t)(m->end - m->p) < n) return vm_fail(m, "data.pkl ends inside an opcode (truncated)"), NULL;
  const uint8_t *q = m->p;
  m->p += n;
  return q;
}

static pv *make_str(pvm *m, const uint8_t *s, size_t n) {
  pv *v = pv_new(m, PV_STR);
  if (!v) return NULL;
  v->s = malloc(n + 1);
  if (!v->s) return vm_fail(m, "out of memory"), NULL;
  memcpy(v->s, s, n);
  v->s[n] = '\0';
  v->i = (int64_t)n;
  return v;
}

static pv *make_int(pvm *m, int64_t x, pv_type t) {
  pv *v = pv_new(m, t);
  if (v) v->i = x;
  return v;
}

static const struct { const char *name; t2s_fdtype dtype; } storage_types[] = {
    {"FloatStorage", T2S_FD_F32}, {"HalfStorage", T2S_FD_F16}, {"BFloat16Storage", T2S_FD_BF16},
    {"DoubleStorage", T2S_FD_F64}, {"LongStorage", T2S_FD_I64}, {"IntStorage", T2S_FD_I32},
    {"ShortStorage", T2S_FD_I16}, {"CharStorage", T2S_FD_I8}, {"ByteStorage", T2S_FD_U8},
    {"BoolStorage", T2S_FD_BOOL},
};

/* The only globals data.pkl may name; everything else could run code. */
static pv *make_global(pvm *m, const char *module, const char *name) {
  int g = -1, dtype = 0;
  if (strcmp(module, "collections") == 0 && strcmp(name, "OrderedDict") == 0) g = G_ORDERED_DICT;
  if (strcmp(module, "torch._utils") == 0 && strcmp(name, "_rebuild_tensor_v2") == 0) g = G_REBUILD_TENSOR_V2;
  if (strcmp(module, "torch._utils") == 0 && strcmp(name, "_rebuild_parameter") == 0) g = G_REBUILD_PARAMETER;
  for (size_t i = 0; strcmp(module, "torch") == 0 && i < sizeof storage_types / sizeof *storage_types; i++)
    if (strcmp(name, storage_types[i].name) == 0) g = G_STORAGE, dtype = storage_types[i].dtype;
  if (g < 0)
    return vm_fail(m, "refusing the Python global '%.100s.%.100s': a state dict needs only "
                   "collections.OrderedDict, torch._utils._rebuild_tensor_v2/_rebuild_parameter "
                   "and torch.*Storage, and unpickling anything else could run code. Extract the "
                   "weights in Python from a trusted copy and save them alone: "
                   "torch.save(ckpt['state_dict'], 'weights.pth')", module, name), NULL;
  pv *v = make_int(m, g, PV_GLOBAL);
  if (v) v->dtype = dtype;
  return v;
}

static int64_t tuple_int(pvm *m, const pv *t, int k, const char *what, int *ok) {
  if (t->items[k]->type != PV_INT && t->items[k]->type != PV_BOOL) {
    *ok = vm_fail(m, "%s: expected an integer", what);
    return 0;
  }
  return t->items[k]->i;
}

/* _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata]) */
static pv *rebuild_tensor(pvm *m, const pv *args) {
  if (args->type != PV_TUPLE || args->n < 6 || args->n > 7 || args->items[0]->type != PV_STORAGE ||
      args->items[2]->type != PV_TUPLE || args->items[3]->type != PV_TUPLE)
    return vm_fail(m, "_rebuild_tensor_v2 called with unexpected arguments"), NULL;
  const pv *size = args->items[2], *stride = args->items[3];
  if (size->n != stride->n || size->n > T2S_TSET_MAX_DIMS)
    return vm_fail(m, "tensor with %d sizes and %d strides (at most %d dimensions)", size->n,
                   stride->n, T2S_TSET_MAX_DIMS), NULL;
  pv *t = pv_new(m, PV_TENSOR);
  if (!t) return NULL;
  int ok = 1;
  t->storage = args->items[0];
  t->offset = tuple_int(m, args, 1, "storage offset", &ok);
  t->ndim = size->n;
  for (int d = 0; d < size->n && ok; d++) {
    t->shape[d] = tuple_int(m, size, d, "tensor size", &ok);
    t->stride[d] = tuple_int(m, stride, d, "tensor stride", &ok);
  }
  return ok ? t : NULL;
}

static int op_reduce(pvm *m) {
  pv *args = pop(m), *f = args ? pop(m) : NULL;
  if (!f) return 0;
  if (f->type != PV_GLOBAL || args->type != PV_TUPLE) return vm_fail(m, "REDUCE of a non-callable");
  switch ((pv_global)f->i) {
    case G_ORDERED_DICT:
      if (args->n != 0) return vm_fail(m, "OrderedDict built from arguments is not supported");
      return push(m, pv_new(m, PV_DICT));
    case G_REBUILD_TENSOR_V2: return push(m, rebuild_tensor(m, args));
    case G_REBUILD_PARAMETER:
      if (args->n < 1 || args->items[0]->type != PV_TENSOR)
        return vm_fail(m, "_rebuild_parameter without a tensor");
      return push(m, args->items[0]);
    case G_STORAGE: return vm_fail(m, "a storage type called as a function");
  }
  return vm_fail(m, "unknown callable");
}

/* ('storage', torch.FloatStorage, key, location, numel) */
static int op_persid(pvm *m) {
  pv *t = pop(m);
  if (!t) return 0;
  if (t->type != PV_TUPLE || t->n != 5 || t->items[0]->type != PV_STR || strcmp(t->items[0]->s, "storage") ||
      t->items[1]->type != PV_GLOBAL || t->items[1]->i != G_STORAGE || t->items[2]->type != PV_STR ||
      t->items[4]->type != PV_INT || t->items[4]->i < 0)
    return vm_fail(m, "persistent id is not ('storage', torch.<T>Storage, key, location, numel)");
  pv *s = pv_new(m, PV_STORAGE);
  if (!s) return 0;
  s->dtype = t->items[1]->dtype;
  s->s = t->items[2]->s;  /* owned by the key string value, which lives as long */
  s->i = t->items[4]->i;
  return push(m, s);
}

/* SETITEM: [dict, key, value]; SETITEMS: [dict, MARK, key, value, ...]. The
 * same shape for APPEND(S) with a list and single items. */
static int op_fill(pvm *m, int all_since_mark, pv_type want, int group) {
  int first, at;
  if (all_since_mark) {
    int b = find_mark(m);
    if (b < 0) return 0;
    first = b + 1;
    at = b - 1;
  } else {
    first = m->sp - group;
    at = first - 1;
  }
  const char *what = want == PV_DICT ? "SETITEM(S)" : "APPEND(S)";
  if (at < 0 || m->stack[at] == &m->mark || m->stack[at]->type != want)
    return vm_fail(m, "%s without a %s to fill", what, want == PV_DICT ? "dict" : "list");
  for (int i = first; i < m->sp; i++)
    if (m->stack[i] == &m->mark) return vm_fail(m, "%s across a MARK", what);
  if ((m->sp - first) % group) return vm_fail(m, "%s with an odd number of items", what);
  for (int i = first; i < m->sp; i++)
    if (!pv_append(m, m->stack[at], m->stack[i])) return 0;
  m->sp = at + 1;
  return 1;
}

/* Pops the top n values (or everything down to the mark when n < 0) into a tuple. */
static int op_tuple(pvm *m, int n) {
  int base = n < 0 ? find_mark(m) : m->sp - n;
  if (base < 0) return 0;
  for (int i = n < 0 ? base + 1 : base; i < m->sp; i++)
    if (m->stack[i] == &m->mark) return vm_fail(m, "TUPLE across a MARK");
  pv *t = pv_new(m, PV_TUPLE);
  if (!t) return 0;
  for (int i = n < 0 ? base + 1 : base; i < m->sp; i++)
    if (!pv_append(m, t, m->stack[i])) return 0;
  m->sp = base;
  return push(m, t);
}

static int memo_put(pvm *m, int64_t idx) {
  if (m->sp == 0) return vm_fail(m, "memoize with an empty stack");
  if (idx < 0 || idx > (1 << 24)) return vm_fail(m, "memo index %" PRId64 " out of range", idx);
  if (idx >= m->cap_memo) {
    int64_t cap = m->cap_memo ? m->cap_memo : 256;
    while (cap <= idx) cap *= 2;
    pv **mm = realloc(m->memo, (size_t)cap * sizeof *mm);
    if (!mm) return vm_fail(m, "out of memory");
    memset(mm + m->cap_memo, 0, (size_t)(cap - m->cap_memo) * sizeof *mm);
    m->memo = mm;
    m->cap_memo = cap;
  }
  if (!m->memo[idx]) m->n_memo++;
  m->memo[idx] = m->stack[m->sp - 1];
  return 1;
}

static int memo_get(pvm *m, int64_t idx) {
  if (idx < 0 || idx >= m->cap_memo || !m->memo[idx]) return vm_fail(m, "memo entry %" PRId64 " is undefined", idx);
  return push(m, m->memo[idx]);
}

/* GLOBAL: "module\nname\n" */
static int op_global_text(pvm *m) {
  char part[2][128];
  for (int k = 0; k < 2; k++) {
    const uint8_t *nl = memchr(m->p, '\n', (size_t)(m->end - m->p));
    if (!nl || nl - m->p >= 128) return vm_fail(m, "malformed GLOBAL");
    memcpy(part[k], m->p, (size_t)(nl - m->p));
    part[k][nl - m->p] = '\0';
    m->p = nl + 1;
  }
  return push(m, make_global(m, part[0], part[1]));
}

static int op_stack_global(pvm *m) {
  pv *name = pop(m), *module = name ? pop(m) : NULL;
  if (!module) return 0;
  if (name->type != PV_STR || module->type != PV_STR) return vm_fail(m, "STACK_GLOBAL of non-strings");
  return push(m, make_global(m, module->s, name->s));
}

static int op_build(pvm *m) {
  pv *state = pop(m);
  if (!state || m->sp == 0) return state ? vm_fail(m, "BUILD without an object") : 0;
  pv *obj = m->stack[m->sp - 1];
  /* An OrderedDict state dict carries its `_metadata` (module versions) as
   * instance state; tensors may carry attributes. Neither matters for weights. */
  if (obj->type != PV_DICT && obj->type != PV_TENSOR) return vm_fail(m, "BUILD on an unsupported object");
  return 1;
}

/* Signed little-endian integer of n bytes (LONG1); at most 8 bytes. */
static int op_long1(pvm *m) {
  const uint8_t *q = take(m, 1);
  if (!q) return 0;
  int n = q[0];
  if (n > 8) return vm_fail(m, "integer of %d bytes does not fit 64 bits", n);
  const uint8_t *b = take(m, (size_t)n);
  if (!b) return 0;
  uint64_t u = 0;
  for (int i = n - 1; i >= 0; i--) u = (u << 8) | b[i];
  if (n > 0 && n < 8 && (b[n - 1] & 0x80)) u |= ~0ull << (8 * n);
  return push(m, make_int(m, (int64_t)u, PV_INT));
}

static int op_string(pvm *m, int len_bytes) {
  const uint8_t *q = take(m, (size_t)len_bytes);
  if (!q) return 0;
  uint64_t n = len_bytes == 1 ? q[0] : len_bytes == 4 ? rd32(q) : rd64(q);
  if (n > (uint64_t)(m->end - m->p)) return vm_fail(m, "string runs past the end of data.pkl");
  const uint8_t *s = take(m, (size_t)n);
  return s && push(m, make_str(m, s, (size_t)n));
}

static int step(pvm *m, int *stop) {
  const uint8_t *q = take(m, 1);
  if (!q) return 0;
  uint8_t op = q[0];
  switch (op) {
    case 0x80:                                                 /* PROTO */
      if (!(q = take(m, 1))) return 0;
      return q[0] <= 5 || vm_fail(m, "pickle protocol %d is newer than 5", q[0]);
    case 0x95: return take(m, 8) != NULL;                      /* FRAME */
    case '(': return push(m, &m->mark);
    case '}': return push(m, pv_new(m, PV_DICT));
    case ']': return push(m, pv_new(m, PV_LIST));
    case ')': return push(m, pv_new(m, PV_TUPLE));
    case 'N': return push(m, pv_new(m, PV_NONE));
    case 0x88: return push(m, make_int(m, 1, PV_BOOL));
    case 0x89: return push(m, make_int(m, 0, PV_BOOL));
    case 'K': return (q = take(m, 1)) && push(m, make_int(m, q[0], PV_INT));
    case 'M': return (q = take(m, 2)) && push(m, make_int(m, rd16(q), PV_INT));
    case 'J': return (q = take(m, 4)) && push(m, make_int(m, (int32_t)rd32(q), PV_INT));
    case 0x8a: return op_long1(m);
    case 'G': {
      if (!(q = take(m, 8))) return 0;
      uint64_t u = 0;
      for (int i = 0; i < 8; i++) u = (u << 8) | q[i];  /* big-endian */
      pv *v = pv_new(m, PV_FLOAT);
      if (v) memcpy(&v->f, &u, 8);
      return push(m, v);
    }
    case 0x8c: case 'U': case 'C': return op_string(m, 1);  /* short unicode / string / bytes */
    case 'X': case 'T': case 'B': return op_string(m, 4);
    case 0x8d: case 0x8e: return op_string(m, 8);
    case 't': return op_tuple(m, -1);
    case 0x85: return op_tuple(m, 1);
    case 0x86: return op_tuple(m, 2);
    case 0x87: return op_tuple(m, 3);
    case 's': return op_fill(m, 0, PV_DICT, 2);
    case 'u': return op_fill(m, 1, PV_DICT, 2);
    case 'a': return op_fill(m, 0, PV_LIST, 1);
    case 'e': return op_fill(m, 1, PV_LIST, 1);
    case 'q': return (q = take(m, 1)) && memo_put(m, q[0]);
    case 'r': return (q = take(m, 4)) && memo_put(m, rd32(q));
    case 0x94: return memo_put(m, m->n_memo);
    case 'h': return (q = take(m, 1)) && memo_get(m, q[0]);
    case 'j': return (q = take(m, 4)) && memo_get(m, rd32(q));
    case 'c': return op_global_text(m);
    case 0x93: return op_stack_global(m);
    case 'R': return op_reduce(m);
    case 'Q': return op_persid(m);
    case 'b': return op_build(m);
    case '0': return pop(m) != NULL;
    case '2': return m->sp > 0 && m->stack[m->sp - 1] != &m->mark ? push(m, m->stack[m->sp - 1])
                                                                   : vm_fail(m, "DUP of nothing");
    case '1': {
      int b = find_mark(m);
      if (b < 0) return 0;
      m->sp = b;
      return 1;
    }
    case '.': *stop = 1; return 1;
    default:
      return vm_fail(m, "pickle opcode 0x%02x is not one a state dict needs (object construction "
                     "or an unsupported protocol); re-save the weights alone with torch.save", op);
  }
}

/* ---- from the unpickled object to a tensor set ---------------------------- */

static const pv *dict_get(const pv *d, const char *key) {
  for (int i = 0; d && d->type == PV_DICT && i + 1 < d->n; i += 2)
    if (d->items[i]->type == PV_STR && strcmp(d->items[i]->s, key) == 0) return d->items[i + 1];
  return NULL;
}

static int count_tensors(const pv *d) {
  int n = 0;
  for (int i = 1; d && d->type == PV_DICT && i < d->n; i += 2) n += d->items[i]->type == PV_TENSOR;
  return n;
}

static void scalar_meta(t2s_tensor_set *s, const char *key, const pv *v) {
  char buf[64];
  const char *text = NULL;
  if (v->type == PV_STR) text = v->s;
  else if (v->type == PV_INT) snprintf(buf, sizeof buf, "%" PRId64, v->i), text = buf;
  else if (v->type == PV_BOOL) text = v->i ? "True" : "False";
  else if (v->type == PV_FLOAT) snprintf(buf, sizeof buf, "%.17g", v->f), text = buf;
  if (text) t2s_tset_set_meta(s, key, text, NULL);
}

/* Copies one (possibly strided, offset) tensor out of its storage entry. */
static t2s_status materialise(zip_dir *z, const char *prefix, const char *name, const pv *t,
                              const char *what, t2s_tensor_set *s, t2s_error *err) {
  const pv *st = t->storage;
  char rest[300];
  snprintf(rest, sizeof rest, "data/%s", st->s);
  const zip_entry *e = zip_find(z, prefix, rest);
  size_t es = t2s_fdtype_size((t2s_fdtype)st->dtype);
  if (!e)
    return t2s_error_set(err, T2S_ERR_FORMAT, "%s: tensor '%s' refers to storage '%s%s', which the "
                         "archive does not contain (damaged file?)", what, name, prefix, rest);
  if (e->crc_checked < 0)
    return t2s_error_set(err, T2S_ERR_FORMAT, "%s: storage '%s%s' of tensor '%s' fails its CRC-32 "
                         "check (damaged file)", what, prefix, rest, name);
  if (st->i > (int64_t)(e->size / es))
    return t2s_error_set(err, T2S_ERR_FORMAT, "%s: storage '%s' of tensor '%s' should hold %" PRId64
                         " elements but has %" PRIu64 " bytes", what, st->s, name, st->i, e->size);
  /* checked first: the overflow bounds below assume last >= 0 */
  if (t->offset < 0)
    return t2s_error_set(err, T2S_ERR_FORMAT, "%s: tensor '%s' has a negative storage offset %"
                         PRId64 " (damaged or hostile file)", what, name, t->offset);
  int64_t numel = 1, last = t->offset;
  for (int d = 0; d < t->ndim; d++) {
    if (t->shape[d] < 0 || t->stride[d] < 0 || (t->shape[d] && numel > INT64_MAX / t->shape[d]) ||
        (t->shape[d] > 0 && t->stride[d] > (INT64_MAX - last) / t->shape[d]))
      return t2s_error_set(err, T2S_ERR_FORMAT, "%s: tensor '%s' has a negative or overflowing "
                           "size/stride", what, name);
    numel *= t->shape[d];
    if (t->shape[d] > 0) last += (t->shape[d] - 1) * t->stride[d];
  }
  if (numel > 0 && last >= st->i)
    return t2s_error_set(err, T2S_ERR_FORMAT, "%s: tensor '%s' reads element %" PRId64 " of a "
                         "storage of %" PRId64 " (damaged file)", what, name, last, st->i);
  t2s_named_tensor *out = t2s_tset_add(s, name, (t2s_fdtype)st->dtype, t->ndim, t->shape, NULL, err);
  if (!out) return err ? err->status : T2S_ERR_NOMEM;
  /* Walk the elements in row-major order of the logical shape: src index =
   * offset + sum_d idx[d] * stride[d]. */
  int64_t idx[T2S_TSET_MAX_DIMS] = {0};
  uint8_t *dst = out->data;
  for (int64_t k = 0; k < numel; k++) {
    int64_t src = t->offset;
    for (int d = 0; d < t->ndim; d++) src += idx[d] * t->stride[d];
    memcpy(dst + (size_t)k * es, e->data + (size_t)src * es, es);
    for (int d = t->ndim - 1; d >= 0; d--) {
      if (++idx[d] < t->shape[d]) break;
      idx[d] = 0;
    }
  }
  return T2S_OK;
}

static t2s_status collect(zip_dir *z, const char *prefix, const pv *root, const char *what,
                          t2s_tensor_set *s, t2s_error *err) {
  static const char *const wrappers[] = {"state_dict", "model", "module", "state_dict_ema"};
  const pv *sd = NULL;
  if (root->type != PV_DICT)
    return t2s_error_set(err, T2S_ERR_FORMAT, "%s: the pickled object is not a dict, so it is not "
                         "a state dict or a checkpoint", what);
  if (count_tensors(root) > 0) sd = root;
  for (size_t w = 0; !sd && w < sizeof wrappers / sizeof *wrappers; w++) {
    const pv *c = dict_get(root, wrappers[w]);
    if (count_tensors(c) > 0) {
      sd = c;
      t2s_tset_set_meta(s, "t2s.wrapper", wrappers[w], NULL);
    }
  }
  if (!sd)
    return t2s_error_set(err, T2S_ERR_FORMAT, "%s: found no tensors at the top level nor under "
                         "'state_dict', 'model', 'module' or 'state_dict_ema'", what);
  for (int i = 0; i + 1 < root->n; i += 2) {
    const pv *k = root->items[i], *v = root->items[i + 1];
    if (k->type != PV_STR) continue;
    scalar_meta(s, k->s, v);
    for (int j = 0; v->type == PV_DICT && strcmp(k->s, "meta") == 0 && j + 1 < v->n; j += 2)
      if (v->items[j]->type == PV_STR) {
        char key[200];
        snprintf(key, sizeof key, "meta.%s", v->items[j]->s);
        scalar_meta(s, key, v->items[j + 1]);
      }
  }
  for (int i = 0; i + 1 < sd->n; i += 2) {
    const pv *k = sd->items[i], *v = sd->items[i + 1];
    if (v->type != PV_TENSOR) continue;  /* e.g. extra state */
    if (k->type != PV_STR)
      return t2s_error_set(err, T2S_ERR_FORMAT, "%s: a state-dict key is not a string", what);
    if (t2s_tset_find(s, k->s))
      return t2s_error_set(err, T2S_ERR_FORMAT, "%s: tensor '%s' appears twice", what, k->s);
    t2s_status st = materialise(z, prefix, k->s, v, what, s, err);
    if (st) return st;
  }
  return T2S_OK;
}

static void vm_free(pvm *m) {
  for (int i = 0; i < m->n_all; i++) {
    if (m->all[i]->type != PV_STORAGE) free(m->all[i]->s);
    free(m->all[i]->items);
    free(m->all[i]);
  }
  free(m->all);
  free(m->stack);
  free(m->memo);
}

int t2s_pth_is_legacy(const uint8_t *buf, size_t len) {
  /* Legacy torch.save: pickle protocol 2 starting with the magic number
   * 0x1950a86a20f9469cfc6c as a LONG1; older still: a tar archive. */
  static const uint8_t magic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
  if (len >= sizeof magic && memcmp(buf, magic, sizeof magic) == 0) return 1;
  return len >= 262 && memcmp(buf + 257, "ustar", 5) == 0;
}

t2s_status t2s_pth_parse(const uint8_t *buf, size_t len, const char *what, t2s_tensor_set *s,
                         t2s_error *err) {
  t2s_error local = {0};
  if (!err) err = &local;
  if (t2s_pth_is_legacy(buf, len))
    return t2s_error_set(err, T2S_ERR_FORMAT, "%s is a legacy PyTorch file (torch.save before 1.6 "
                         "or with _use_new_zipfile_serialization=False), which t2sda does not read. "
                         "Convert a trusted copy once with PyTorch: python3 -c \"import torch; "
                         "torch.save(torch.load('%s', map_location='cpu'), 'converted.pth')\"",
                         what, what);
  if (len < 4 || rd32(buf) != 0x04034b50u)
    return t2s_error_set(err, T2S_ERR_FORMAT, "%s: not a zip archive, so not a PyTorch .pth file "
                         "written by torch.save", what);
  zip_dir z;
  t2s_status st = zip_open(buf, len, what, &z, err);
  const zip_entry *pkl = NULL;
  char prefix[256] = "";
  for (int i = 0; st == T2S_OK && i < z.n && !pkl; i++) {
    const char *slash = strchr(z.e[i].name, '/');
    if (slash && strcmp(slash, "/data.pkl") == 0) {
      snprintf(prefix, sizeof prefix, "%.*s/", (int)(slash - z.e[i].name), z.e[i].name);
      pkl = zip_find(&z, prefix, "data.pkl");
    }
  }
  if (st == T2S_OK && !pkl)
    st = zip_fail(what, err, "no '<archive>/data.pkl' entry (a zip, but not written by torch.save)");
  if (st == T2S_OK && pkl->crc_checked < 0) st = zip_fail(what, err, "data.pkl fails its CRC-32 check");
  const zip_entry *bo = st == T2S_OK ? zip_find(&z, prefix, "byteorder") : NULL;
  if (bo && !(bo->size == 6 && memcmp(bo->data, "little", 6) == 0))
    st = zip_fail(what, err, "the storages are big-endian; re-save the file on a little-endian machine");
  if (st) {
    free(z.e);
    return st;
  }
  pvm m = {0};
  m.p = m.start = pkl->data;
  m.end = pkl->data + pkl->size;
  m.what = what;
  m.err = err;
  m.mark.type = PV_MARK;
  int stop = 0;
  while (!stop && step(&m, &stop)) {
  }
  st = err->status;
  if (st == T2S_OK && m.sp != 1) st = t2s_error_set(err, T2S_ERR_FORMAT, "%s: data.pkl left %d objects "
                                                    "on the stack instead of one", what, m.sp);
  if (st == T2S_OK) st = collect(&z, prefix, m.stack[0], what, s, err);
  vm_free(&m);
  free(z.e);
  return st;
}

t2s_status t2s_pth_read(const char *path, t2s_tensor_set *s, t2s_error *err) {
  uint8_t *buf;
  size_t len;
  t2s_status st = t2s_read_file(path, &buf, &len, err);
  if (st == T2S_OK) st = t2s_pth_parse(buf, len, path, s, err);
  free(buf);
  return st;
}

/* ---- writing ---------------------------------------------------------------- */

typedef struct bytes {
  uint8_t *p;
  size_t n, cap;
  int oom;
} bytes;

static void put(bytes *b, const void *src, size_t n) {
  if (b->oom) return;
  if (b->n + n > b->cap) {
    size_t cap = b->cap ? b->cap : 1 << 16;
    while (cap < b->n + n) cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, src, n);
  b->n += n;
}

static void put_le(bytes *b, uint64_t v, int n) {
  uint8_t x[8];
  for (int i = 0; i < n; i++) x[i] = (uint8_t)(v >> (8 * i));
  put(b, x, (size_t)n);
}

static void pk_op(bytes *b, uint8_t op) { put(b, &op, 1); }

static void pk_str(bytes *b, const char *s) {
  size_t n = strlen(s);
  pk_op(b, 'X');
  put_le(b, n, 4);
  put(b, s, n);
}

static void pk_int(bytes *b, int64_t v) {
  if (v >= 0 && v < 256) {
    pk_op(b, 'K');
    put_le(b, (uint64_t)v, 1);
  } else if (v >= INT32_MIN && v <= INT32_MAX) {
    pk_op(b, 'J');
    put_le(b, (uint64_t)(uint32_t)(int32_t)v, 4);
  } else {
    pk_op(b, 0x8a);
    pk_op(b, 8);
    put_le(b, (uint64_t)v, 8);
  }
}

static void pk_global(bytes *b, const char *module, const char *name) {
  pk_op(b, 'c');
  put(b, module, strlen(module));
  put(b, "\n", 1);
  put(b, name, strlen(name));
  put(b, "\n", 1);
}

/* OrderedDict([(name, _rebuild_tensor_v2(storage k, 0, shape, contiguous strides,
 * False, OrderedDict())) ...]) in protocol 2, without memo (every object is new). */
static void pickle_state_dict(bytes *b, const t2s_tensor_set *s) {
  pk_op(b, 0x80);
  pk_op(b, 2);
  pk_global(b, "collections", "OrderedDict");
  pk_op(b, ')');
  pk_op(b, 'R');
  pk_op(b, '(');
  for (int i = 0; i < s->count; i++) {
    const t2s_named_tensor *t = &s->items[i];
    char key[32];
    snprintf(key, sizeof key, "%d", i);
    pk_str(b, t->name);
    pk_global(b, "torch._utils", "_rebuild_tensor_v2");
    pk_op(b, '(');
    pk_op(b, '(');
    pk_str(b, "storage");
    for (size_t k = 0; k < sizeof storage_types / sizeof *storage_types; k++)
      if (storage_types[k].dtype == t->dtype) pk_global(b, "torch", storage_types[k].name);
    pk_str(b, key);
    pk_str(b, "cpu");
    pk_int(b, t2s_named_numel(t));
    pk_op(b, 't');
    pk_op(b, 'Q');
    pk_int(b, 0);
    int64_t stride[T2S_TSET_MAX_DIMS], acc = 1;
    for (int d = t->ndim - 1; d >= 0; d--) stride[d] = acc, acc *= t->shape[d];
    pk_op(b, '(');
    for (int d = 0; d < t->ndim; d++) pk_int(b, t->shape[d]);
    pk_op(b, 't');
    pk_op(b, '(');
    for (int d = 0; d < t->ndim; d++) pk_int(b, stride[d]);
    pk_op(b, 't');
    pk_op(b, 0x89);
    pk_global(b, "collections", "OrderedDict");
    pk_op(b, ')');
    pk_op(b, 'R');
    pk_op(b, 't');
    pk_op(b, 'R');
  }
  pk_op(b, 'u');
  pk_op(b, '.');
}

typedef struct zip_out {
  bytes b, cd;
  int n;
} zip_out;

/* One stored entry whose data starts 64-byte aligned (as torch.save writes it,
 * so that readers may map storages in place): the local header's extra field
 * is padding with the id "FB". */
static void zip_add(zip_out *z, const char *name, const void *data, size_t size) {
  size_t nlen = strlen(name), off = z->b.n;
  size_t pad = (64 - (off + 30 + nlen + 4) % 64) % 64;
  uint32_t crc = crc32_update(0, data, size);
  put_le(&z->b, 0x04034b50u, 4);
  put_le(&z->b, 20, 2);   /* version needed */
  put_le(&z->b, 0, 2);    /* flags */
  put_le(&z->b, 0, 2);    /* stored */
  put_le(&z->b, 0, 4);    /* time, date */
  put_le(&z->b, crc, 4);
  put_le(&z->b, size, 4);
  put_le(&z->b, size, 4);
  put_le(&z->b, nlen, 2);
  put_le(&z->b, 4 + pad, 2);
  put(&z->b, name, nlen);
  put_le(&z->b, 0x4246, 2);
  put_le(&z->b, pad, 2);
  for (size_t i = 0; i < pad; i++) put(&z->b, "Z", 1);
  put(&z->b, data, size);
  put_le(&z->cd, 0x02014b50u, 4);
  put_le(&z->cd, 20, 2);
  put_le(&z->cd, 20, 2);
  put_le(&z->cd, 0, 2);
  put_le(&z->cd, 0, 2);
  put_le(&z->cd, 0, 4);
  put_le(&z->cd, crc, 4);
  put_le(&z->cd, size, 4);
  put_le(&z->cd, size, 4);
  put_le(&z->cd, nlen, 2);
  put_le(&z->cd, 0, 2);   /* extra */
  put_le(&z->cd, 0, 2);   /* comment */
  put_le(&z->cd, 0, 2);   /* disk */
  put_le(&z->cd, 0, 2);   /* internal attributes */
  put_le(&z->cd, 0, 4);   /* external attributes */
  put_le(&z->cd, off, 4);
  put(&z->cd, name, nlen);
  z->n++;
}

static t2s_status write_zip(const char *path, const uint8_t *pickle, size_t pickle_len,
                            const t2s_tensor_set *s, t2s_error *err) {
  zip_out z = {0};
  char name[64];
  zip_add(&z, "archive/data.pkl", pickle, pickle_len);
  zip_add(&z, "archive/byteorder", "little", 6);
  for (int i = 0; i < s->count; i++) {
    snprintf(name, sizeof name, "archive/data/%d", i);
    zip_add(&z, name, s->items[i].data, s->items[i].nbytes);
  }
  zip_add(&z, "archive/version", "3\n", 2);
  size_t cd_off = z.b.n;
  put(&z.b, z.cd.p, z.cd.n);
  put_le(&z.b, 0x06054b50u, 4);
  put_le(&z.b, 0, 4);
  put_le(&z.b, (uint64_t)z.n, 2);
  put_le(&z.b, (uint64_t)z.n, 2);
  put_le(&z.b, z.cd.n, 4);
  put_le(&z.b, cd_off, 4);
  put_le(&z.b, 0, 2);
  t2s_status st = T2S_OK;
  if (z.b.oom || z.cd.oom) st = t2s_error_set(err, T2S_ERR_NOMEM, "%s: out of memory building the archive", path);
  else if (z.b.n > 0xFFFFFFF0u || z.n > 0xFFFF)
    st = t2s_error_set(err, T2S_ERR_UNSUPPORTED, "%s: archives over 4 GiB need zip64, which this "
                       "writer does not produce; export to .safetensors instead", path);
  FILE *f = st ? NULL : fopen(path, "wb");
  if (!st && !f) st = t2s_error_set(err, T2S_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
  if (f) {
    int ok = fwrite(z.b.p, 1, z.b.n, f) == z.b.n;
    if (fclose(f) != 0 || !ok) st = t2s_error_set(err, T2S_ERR_IO, "%s: write failed (disk full?)", path);
  }
  free(z.b.p);
  free(z.cd.p);
  return st;
}

t2s_status t2s_pth_write_raw(const char *path, const uint8_t *pickle, size_t pickle_len,
                             const t2s_tensor_set *storages, t2s_error *err) {
  return write_zip(path, pickle, pickle_len, storages, err);
}

t2s_status t2s_pth_write(const char *path, const t2s_tensor_set *s, t2s_error *err) {
  bytes b = {0};
  pickle_state_dict(&b, s);
  if (b.oom) {
    free(b.p);
    return t2s_error_set(err, T2S_ERR_NOMEM, "%s: out of memory building data.pkl", path);
  }
  t2s_status st = write_zip(path, b.p, b.n, s, err);
  free(b.p);
  return st;
}
