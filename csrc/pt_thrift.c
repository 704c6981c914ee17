/*
 * pt_thrift.c — the wire-type table, writers over buffers, message
 * envelopes and transcoding between Binary and Compact. See pt_thrift.h.
 */
#include "pt_thrift.h"

#include <errno.h>
#include <stdlib.h>

#include "pt_json.h"
#include <string.h>

const pt_ttype_info pt_ttypes[PT_T_LIMIT] = {
#define X(n, code, nm, bw, bmin, ct, cw, cmin) \
  [code] = {nm, code != 0, bw, bmin, ct, cw, cmin},
    PT_TTYPES(X)
#undef X
};

const uint8_t pt_ctype_ttype[16] = {
#define X(n, code, nm, bw, bmin, ct, cw, cmin) [ct] = code,
    PT_TTYPES(X)
#undef X
    [PT_CT_FALSE] = PT_T_BOOL,
};

const char *const pt_proto_names[PT_PROTO_COUNT] = {
#define X(n, name) name,
    PT_PROTOS(X)
#undef X
};

/* ---- writers over buffers ---------------------------------------------- */

#define WR_MAX_REGION ((size_t)4 << 20) /* the largest pool size class */

/* Reserve a region of at least need bytes (all the room the block has). */
static int wr_reserve(pt_wr *wr, size_t need) {
  size_t want = need > wr->next ? need : wr->next;
  size_t room;
  char *p = pt_buf_reserve_room(wr->buf, want, &room);
  if (!p) {
    wr->w = wr->end = wr->start = NULL;
    return -1;
  }
  wr->start = wr->w = (unsigned char *)p;
  wr->end = wr->start + room;
  if (wr->next < WR_MAX_REGION) wr->next *= 2;
  return 0;
}

static int wr_grow_buf(pt_wr *wr, size_t need) {
  if (pt_wr_flush(wr) != 0) return -1;
  return wr_reserve(wr, need);
}

static int wr_grow_count(pt_wr *wr, size_t need) {
  wr->done += (size_t)(wr->w - wr->start);
  if (wr->start && (size_t)(wr->end - wr->start) >= need) {
    wr->w = wr->start; /* the same region again */
    return 0;
  }
  pt_buf_commit(wr->buf, 0); /* cancels the reservation */
  return wr_reserve(wr, need);
}

static void wr_init(pt_wr *wr, pt_buf *b, size_t first, int count) {
  memset(wr, 0, sizeof *wr);
  wr->buf = b;
  wr->next = first ? first : b->block_size;
  wr->count_only = count;
  wr->grow = count ? wr_grow_count : wr_grow_buf;
}

void pt_wr_init_buf(pt_wr *wr, pt_buf *b, size_t first) {
  wr_init(wr, b, first, 0);
}

void pt_wr_init_count(pt_wr *wr, pt_buf *b, size_t first) {
  wr_init(wr, b, first, 1);
}

int pt_wr_flush(pt_wr *wr) {
  if (!wr->start) return 0;
  size_t k = (size_t)(wr->w - wr->start);
  wr->done += k;
  int r = pt_buf_commit(wr->buf, wr->count_only ? 0 : k);
  wr->w = wr->end = wr->start = NULL;
  return r;
}

int pt_wr_link(pt_wr *wr, const void *p, size_t n, pt_release_fn release,
               void *ctx, intptr_t tag) {
  if (wr->count_only) {
    wr->done += n;
    if (release) release(ctx, tag);
    return 0;
  }
  if (pt_wr_flush(wr) != 0) {
    if (release) release(ctx, tag);
    return -1;
  }
  if (pt_buf_link(wr->buf, p, n, release, ctx, tag) != 0) return -1;
  wr->done += n;
  return 0;
}

int pt_wr_bytes(pt_wr *wr, const void *p, size_t n) {
  const unsigned char *s = p;
  while (n) {
    size_t room = (size_t)(wr->end - wr->w);
    if (!room) {
      if (wr->grow(wr, n < 4096 ? n : 4096) != 0) return -1;
      room = (size_t)(wr->end - wr->w);
    }
    size_t k = n < room ? n : room;
    memcpy(wr->w, s, k);
    wr->w += k;
    s += k;
    n -= k;
  }
  return 0;
}

/* ---- message envelopes ------------------------------------------------- */

int pt_msg_head(const unsigned char *p, size_t n, size_t max_name,
                pt_msg *m) {
  if (!n) return PT_NEED;
  if (p[0] == '[') return pt_json_msg_head(p, n, max_name, m);
  if (p[0] == 0x82) { /* Compact: id, version|type, seqid, name length */
    if (n < 2) return PT_NEED;
    if ((p[1] & 0x1f) != 1) {
      m->why = "bad compact protocol version";
      return PT_BAD;
    }
    uint32_t seq, len;
    int a = pt_rd_varint32(p + 2, n - 2, &seq);
    if (a == PT_BAD) m->why = "bad seqid";
    if (a < 0) return a;
    int b = pt_rd_varint32(p + 2 + a, n - 2 - (size_t)a, &len);
    if (b >= 0 && (len > max_name || len > INT32_MAX)) b = PT_BAD;
    if (b == PT_BAD) m->why = "bad method name length";
    if (b < 0) return b;
    m->proto = PT_PROTO_COMPACT;
    m->strict = 1;
    m->mtype = p[1] >> 5;
    m->seqid = (int32_t)seq;
    m->name_len = len;
    m->head = 2 + (size_t)a + (size_t)b;
    return (int)m->head;
  }
  if (p[0] & 0x80 && p[0] != 0x80) {
    m->why = "bad protocol id";
    return PT_BAD;
  }
  if (n < 4) return PT_NEED;
  uint32_t v = pt_ld32(p);
  m->proto = PT_PROTO_BINARY;
  if (v & 0x80000000u) { /* strict: version word, name length */
    if ((v & 0xffff0000u) != 0x80010000u) {
      m->why = "bad protocol version";
      return PT_BAD;
    }
    if (n < 8) return PT_NEED;
    uint32_t len = pt_ld32(p + 4);
    if (len > max_name || len > INT32_MAX) {
      m->why = "bad method name length";
      return PT_BAD;
    }
    m->strict = 1;
    m->mtype = (int)(v & 0xff);
    m->name_len = len;
    m->head = 8;
    return 8;
  }
  if (v > max_name) { /* non-strict: the name length */
    m->why = "bad method name length";
    return PT_BAD;
  }
  m->strict = 0;
  m->name_len = v;
  m->head = 4;
  return 4;
}

int pt_msg_tail(const unsigned char *p, size_t n, pt_msg *m) {
  if (m->proto == PT_PROTO_COMPACT) return 0;
  if (m->proto == PT_PROTO_JSON) return pt_json_msg_tail(p, n, m);
  if (m->strict) {
    if (n < 4) return PT_NEED;
    m->seqid = (int32_t)pt_ld32(p);
    return 4;
  }
  if (n < 5) return PT_NEED;
  m->mtype = p[0];
  m->seqid = (int32_t)pt_ld32(p + 1);
  return 5;
}

int pt_msg_parse(const unsigned char *p, size_t n, size_t max_name,
                 pt_msg *m) {
  int h = pt_msg_head(p, n, max_name, m);
  if (h < 0) return h;
  size_t at = (size_t)h;
  if (n - at < m->name_len) return PT_NEED;
  m->name = p + at;
  at += m->name_len;
  int t = pt_msg_tail(p + at, n - at, m);
  if (t < 0) return t;
  at += (size_t)t;
  if (at > INT32_MAX) return PT_BAD;
  return (int)at;
}

unsigned char *pt_msg_write(unsigned char *w, int proto, const char *name,
                            uint32_t nlen, int mtype, int32_t seqid) {
  if (proto == PT_PROTO_JSON)
    return pt_json_msg_write(w, name, nlen, mtype, seqid);
  if (proto == PT_PROTO_COMPACT) {
    *w++ = 0x82;
    *w++ = (unsigned char)(1 | (mtype & 7) << 5);
    w = pt_wr_varint32(w, (uint32_t)seqid);
    w = pt_wr_varint32(w, nlen);
    memcpy(w, name, nlen);
    return w + nlen;
  }
  pt_st32(w, 0x80010000u | (uint32_t)(mtype & 0xff));
  pt_st32(w + 4, nlen);
  memcpy(w + 8, name, nlen);
  w += 8 + nlen;
  pt_st32(w, (uint32_t)seqid);
  return w + 4;
}

/* ---- skipping ---------------------------------------------------------- */

/* Binary. */

/* pt_ttype_width for the skipper: every byte value a type code can be,
 * one load (the hot path of a view's index pass) */
static const uint8_t bin_width256[256] = {
#define X(n, code, nm, bw, bmin, ct, cw, cmin) [code] = bw,
    PT_TTYPES(X)
#undef X
};
static inline size_t bin_width(int t) {
  return (unsigned)t < 256 ? bin_width256[t] : 0;
}

/* (below: skip_bin for one nested value, its leaves inline) */
static size_t skip_bin_one(const unsigned char *p, const unsigned char *end,
                           int t, int depth);

static size_t skip_bin(const unsigned char *p, const unsigned char *end,
                       int t, int depth) {
  size_t avail = (size_t)(end - p);
  size_t w = bin_width(t);
  if (w) return avail >= w ? w : 0;
  if (depth <= 0) return 0;
  switch (t) {
    case PT_T_STRING: {
      uint32_t n;
      if (pt_bin_rd_len(p, avail, &n) < 0) return 0;
      /* the string bound: the bytes must be there */
      if ((size_t)n > avail - 4) return 0;
      return 4 + (size_t)n;
    }
    case PT_T_STRUCT: {
      const unsigned char *q = p;
      for (;;) {
        int ft, id;
        int k = pt_bin_rd_field(q, (size_t)(end - q), &ft, &id);
        if (k < 0) return 0;
        q += k;
        if (ft == PT_T_STOP) return (size_t)(q - p);
        size_t m = skip_bin_one(q, end, ft, depth - 1);
        if (!m) return 0;
        q += m;
      }
    }
    case PT_T_MAP: {
      int kt, vt;
      uint32_t n;
      if (pt_bin_rd_map(p, avail, &kt, &vt, &n) < 0) return 0;
      const unsigned char *q = p + 6;
      size_t kw = bin_width(kt), vw = bin_width(vt);
      if (kw && vw) {
        if ((size_t)n > (size_t)(end - q) / (kw + vw)) return 0;
        return 6 + (size_t)n * (kw + vw);
      }
      /* every entry takes at least one byte: bound the loop by the input */
      if ((size_t)n > (size_t)(end - q)) return 0;
      for (uint32_t i = 0; i < n; i++) {
        size_t a = skip_bin_one(q, end, kt, depth - 1);
        if (!a) return 0;
        q += a;
        size_t b = skip_bin_one(q, end, vt, depth - 1);
        if (!b) return 0;
        q += b;
      }
      return (size_t)(q - p);
    }
    case PT_T_SET:
    case PT_T_LIST: {
      int et;
      uint32_t n;
      if (pt_bin_rd_list(p, avail, &et, &n) < 0) return 0;
      const unsigned char *q = p + 5;
      size_t ew = bin_width(et);
      if (ew) {
        if ((size_t)n > (size_t)(end - q) / ew) return 0;
        return 5 + (size_t)n * ew;
      }
      if ((size_t)n > (size_t)(end - q)) return 0;
      for (uint32_t i = 0; i < n; i++) {
        size_t a = skip_bin_one(q, end, et, depth - 1);
        if (!a) return 0;
        q += a;
      }
      return (size_t)(q - p);
    }
    default:
      return 0;
  }
}

/* skip_bin for one nested value, its leaves (fixed widths, strings) done
 * here, inline in the callers' loops, rather than by a call each: the
 * same checks (a string where the depth budget is spent fails). */
static inline size_t skip_bin_one(const unsigned char *p,
                                  const unsigned char *end, int t, int depth) {
  size_t left = (size_t)(end - p), w = bin_width(t);
  if (w) return left >= w ? w : 0;
  if (t == PT_T_STRING && depth > 0) {
    uint32_t n;
    if (pt_bin_rd_len(p, left, &n) < 0 || (size_t)n > left - 4) return 0;
    return 4 + (size_t)n;
  }
  return skip_bin(p, end, t, depth);
}

/* Compact: varints are scanned for their end, never decoded. */
static size_t skip_varint(const unsigned char *p, const unsigned char *end,
                          size_t max) {
  size_t lim = (size_t)(end - p);
  if (lim > max) lim = max;
  for (size_t i = 0; i < lim; i++)
    if (p[i] < 0x80) return i + 1;
  return 0;
}

static size_t skip_cpt(const unsigned char *p, const unsigned char *end,
                       int t, int depth) {
  size_t avail = (size_t)(end - p);
  size_t w = pt_elem_width(PT_PROTO_COMPACT, t);
  if (w) return avail >= w ? w : 0;
  switch (t) {
    case PT_T_I16:
    case PT_T_I32: return skip_varint(p, end, 5);
    case PT_T_I64: return skip_varint(p, end, 10);
    default: break;
  }
  if (depth <= 0) return 0;
  switch (t) {
    case PT_T_STRING: {
      uint32_t n;
      int k = pt_cpt_rd_len(p, avail, &n);
      if (k < 0 || (size_t)n > avail - (size_t)k) return 0;
      return (size_t)k + n;
    }
    case PT_T_STRUCT: {
      const unsigned char *q = p;
      int last = 0;
      for (;;) {
        int ft, id, bv;
        int k = pt_cpt_rd_field(q, (size_t)(end - q), &last, &ft, &id, &bv);
        if (k < 0) return 0;
        q += k;
        if (ft == PT_T_STOP) return (size_t)(q - p);
        if (ft == PT_T_BOOL) continue; /* the value is in the header */
        size_t m = skip_cpt(q, end, ft, depth - 1);
        if (!m) return 0;
        q += m;
      }
    }
    case PT_T_MAP: {
      int kt, vt;
      uint32_t n;
      int k = pt_cpt_rd_map(p, avail, &kt, &vt, &n);
      if (k < 0) return 0;
      if (n == 0) return (size_t)k;
      if (kt < 0 || vt < 0) return 0;
      const unsigned char *q = p + k;
      size_t kw = pt_elem_width(PT_PROTO_COMPACT, kt);
      size_t vw = pt_elem_width(PT_PROTO_COMPACT, vt);
      if (kw && vw) {
        if ((size_t)n > (size_t)(end - q) / (kw + vw)) return 0;
        return (size_t)k + (size_t)n * (kw + vw);
      }
      if ((size_t)n > (size_t)(end - q)) return 0;
      for (uint32_t i = 0; i < n; i++) {
        size_t a = skip_cpt(q, end, kt, depth - 1);
        if (!a) return 0;
        q += a;
        size_t b = skip_cpt(q, end, vt, depth - 1);
        if (!b) return 0;
        q += b;
      }
      return (size_t)(q - p);
    }
    case PT_T_SET:
    case PT_T_LIST: {
      int et;
      uint32_t n;
      int k = pt_cpt_rd_list(p, avail, &et, &n);
      if (k < 0) return 0;
      if (n == 0) return (size_t)k;
      if (et < 0) return 0;
      const unsigned char *q = p + k;
      size_t ew = pt_elem_width(PT_PROTO_COMPACT, et);
      if (ew) {
        if ((size_t)n > (size_t)(end - q) / ew) return 0;
        return (size_t)k + (size_t)n * ew;
      }
      if ((size_t)n > (size_t)(end - q)) return 0;
      for (uint32_t i = 0; i < n; i++) {
        size_t a = skip_cpt(q, end, et, depth - 1);
        if (!a) return 0;
        q += a;
      }
      return (size_t)(q - p);
    }
    default:
      return 0;
  }
}

size_t pt_skip_proto(int proto, const unsigned char *p,
                     const unsigned char *end, int ttype, int max_depth) {
  if (!p || p > end) return 0;
  if (proto == PT_PROTO_JSON) {
    pt_jctx jc;
    pt_json_reset(&jc);
    size_t n = (size_t)(end - p);
    int k = pt_json_skip(p, n > INT32_MAX ? INT32_MAX : n, &jc, max_depth);
    (void)ttype;
    return k > 0 ? (size_t)k : 0;
  }
  return proto == PT_PROTO_COMPACT ? skip_cpt(p, end, ttype, max_depth)
                                   : skip_bin(p, end, ttype, max_depth);
}

size_t pt_skip(const unsigned char *p, const unsigned char *end, int ttype,
               int max_depth) {
  return pt_skip_proto(PT_PROTO_BINARY, p, end, ttype, max_depth);
}

/* ---- transcoding ------------------------------------------------------- */

typedef struct tc {
  int from, to;
  const unsigned char *p, *end;
  pt_wr *out;
  pt_jctx *jr, *jw; /* JSON contexts: reading (from JSON), writing (to) */
} tc;

#define TC_LEFT(c) ((size_t)((c)->end - (c)->p))
/* a reader's answer: bytes taken, or the failure */
#define TC_RD(c, x)            \
  do {                         \
    int k_ = (x);              \
    if (k_ < 0) return k_;     \
    (c)->p += k_;              \
  } while (0)
#define TC_WR(x)                      \
  do {                                \
    if ((x) != 0) return PT_NOMEM;    \
  } while (0)
#define TC_NEED(c, k) \
  do {                \
    if ((k) < 0) return (k); \
  } while (0)
#define TC_ROOM(c, k)                                   \
  do {                                                  \
    if (pt_wr_need((c)->out, (k)) != 0) return PT_NOMEM; \
  } while (0)

static int tc_value(tc *c, int t, int depth);

/* A JSON integer of TType t, range-checked. */
static int tc_json_int(tc *c, int t, int64_t *v) {
  TC_RD(c, pt_json_rd_int(c->p, TC_LEFT(c), c->jr, v));
  int64_t lo = t == PT_T_BYTE ? INT8_MIN : t == PT_T_I16 ? INT16_MIN
               : t == PT_T_I32 ? INT32_MIN : INT64_MIN;
  int64_t hi = t == PT_T_BYTE ? INT8_MAX : t == PT_T_I16 ? INT16_MAX
               : t == PT_T_I32 ? INT32_MAX : INT64_MAX;
  return *v < lo || *v > hi ? PT_BAD : 0;
}

/* Binary bool element / field value, Compact bool element, JSON 0 / 1 */
static int tc_bool(tc *c, int *v) {
  if (c->from == PT_PROTO_JSON) {
    int64_t x;
    TC_RD(c, pt_json_rd_int(c->p, TC_LEFT(c), c->jr, &x));
    *v = x != 0;
    return 0;
  }
  if (c->p >= c->end) return PT_NEED;
  *v = c->from == PT_PROTO_COMPACT ? *c->p == PT_CT_TRUE : *c->p != 0;
  c->p++;
  return 0;
}

static int tc_write_bool(tc *c, int v) {
  if (c->to == PT_PROTO_JSON) {
    TC_WR(pt_json_wr_bool(c->out, c->jw, v));
    return 0;
  }
  TC_ROOM(c, 1);
  *c->out->w++ = (unsigned char)(c->to == PT_PROTO_COMPACT
                                     ? (v ? PT_CT_TRUE : PT_CT_FALSE)
                                     : (v ? 1 : 0));
  return 0;
}

static int tc_int(tc *c, int t, int64_t *v) {
  size_t n = TC_LEFT(c);
  int k;
  if (c->from == PT_PROTO_JSON) return tc_json_int(c, t, v);
  if (c->from == PT_PROTO_BINARY) {
    size_t w = pt_ttype_width(t);
    if (n < w) return PT_NEED;
    *v = t == PT_T_I16 ? (int16_t)pt_ld16(c->p)
         : t == PT_T_I32 ? (int32_t)pt_ld32(c->p)
                         : (int64_t)pt_ld64(c->p);
    c->p += w;
    return 0;
  }
  if (t == PT_T_I16) {
    int16_t x;
    k = pt_cpt_rd_i16(c->p, n, &x);
    *v = x;
  } else if (t == PT_T_I32) {
    int32_t x;
    k = pt_cpt_rd_i32(c->p, n, &x);
    *v = x;
  } else {
    k = pt_cpt_rd_i64(c->p, n, v);
  }
  TC_NEED(c, k);
  c->p += k;
  return 0;
}

static int tc_write_int(tc *c, int t, int64_t v) {
  if (c->to == PT_PROTO_JSON) {
    TC_WR(pt_json_wr_int(c->out, c->jw, v));
    return 0;
  }
  TC_ROOM(c, PT_MAX_VARINT);
  unsigned char *w = c->out->w;
  if (c->to == PT_PROTO_BINARY) {
    if (t == PT_T_I16) pt_st16(w, (uint16_t)v), w += 2;
    else if (t == PT_T_I32) pt_st32(w, (uint32_t)v), w += 4;
    else pt_st64(w, (uint64_t)v), w += 8;
  } else if (t == PT_T_I64) {
    w = pt_wr_varint64(w, pt_zz64(v));
  } else {
    w = pt_wr_varint32(w, pt_zz32((int32_t)v));
  }
  c->out->w = w;
  return 0;
}

static int hexnib(int h) {
  return h >= '0' && h <= '9'   ? h - '0'
         : h >= 'a' && h <= 'f' ? h - 'a' + 10
         : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                : -1;
}

/* A uuid: 16 bytes in Binary and Compact, its text in JSON. */
static int tc_uuid(tc *c) {
  unsigned char u[16];
  if (c->from == PT_PROTO_JSON) {
    pt_jstr s;
    const unsigned char *at = c->p;
    TC_RD(c, pt_json_rd_string(c->p, TC_LEFT(c), c->jr, &s));
    const unsigned char *t = at + s.at;
    if (s.escaped || s.raw != 36) return PT_BAD;
    for (int i = 0, k = 0; i < 36; i++) {
      if (i == 8 || i == 13 || i == 18 || i == 23) {
        if (t[i] != '-') return PT_BAD;
        continue;
      }
      int h = hexnib(t[i]), l = hexnib(t[i + 1]);
      if (h < 0 || l < 0) return PT_BAD;
      u[k++] = (unsigned char)(h << 4 | l);
      i++;
    }
  } else {
    if (TC_LEFT(c) < 16) return PT_NEED;
    memcpy(u, c->p, 16);
    c->p += 16;
  }
  if (c->to == PT_PROTO_JSON) {
    static const char hx[] = "0123456789abcdef";
    char txt[36];
    for (int i = 0, k = 0; i < 16; i++) {
      if (i == 4 || i == 6 || i == 8 || i == 10) txt[k++] = '-';
      txt[k++] = hx[u[i] >> 4];
      txt[k++] = hx[u[i] & 15];
    }
    TC_WR(pt_json_wr_string(c->out, c->jw, txt, 36));
    return 0;
  }
  TC_ROOM(c, 16);
  memcpy(c->out->w, u, 16);
  c->out->w += 16;
  return 0;
}

static int tc_string(tc *c) {
  size_t n = TC_LEFT(c);
  const unsigned char *s;
  unsigned char *tmp = NULL;
  uint32_t len;
  if (c->from == PT_PROTO_JSON) {
    pt_jstr js;
    int k = pt_json_rd_string(c->p, n, c->jr, &js);
    if (k < 0) return k;
    s = c->p + js.at;
    if (js.len > INT32_MAX) return PT_BAD;
    len = (uint32_t)js.len;
    if (js.escaped) {
      tmp = malloc(js.len ? js.len : 1);
      if (!tmp) return PT_NOMEM;
      pt_json_unescape(s, js.raw, tmp);
      s = tmp;
    }
    c->p += k;
  } else {
    int k = c->from == PT_PROTO_COMPACT ? pt_cpt_rd_len(c->p, n, &len)
                                        : pt_bin_rd_len(c->p, n, &len);
    TC_NEED(c, k);
    if ((size_t)len > n - (size_t)k) return PT_NEED;
    s = c->p + k;
    c->p += (size_t)k + len;
  }
  int r = 0;
  if (c->to == PT_PROTO_JSON) {
    if (pt_json_wr_string(c->out, c->jw, s, len) != 0) r = PT_NOMEM;
  } else if (pt_wr_need(c->out, PT_MAX_LEN) != 0) {
    r = PT_NOMEM;
  } else {
    if (c->to == PT_PROTO_COMPACT)
      c->out->w = pt_wr_varint32(c->out->w, len);
    else
      pt_st32(c->out->w, len), c->out->w += 4;
    if (pt_wr_bytes(c->out, s, len) != 0) r = PT_NOMEM;
  }
  free(tmp);
  return r;
}

/* One struct field's value after its header (bool fields: value known
 * when read from Compact), and, in JSON, the field's end. */
static int tc_field(tc *c, int ft, int id, int boolv, int *last, int depth) {
  if (ft == PT_T_BOOL && c->from != PT_PROTO_COMPACT) {
    int k = tc_bool(c, &boolv);
    if (k < 0) return k;
  }
  if (c->to == PT_PROTO_COMPACT) {
    TC_ROOM(c, PT_MAX_FIELD);
    c->out->w = pt_cpt_wr_field(c->out->w, ft, id, last, boolv);
  } else if (c->to == PT_PROTO_BINARY) {
    TC_ROOM(c, PT_MAX_FIELD + 1);
    c->out->w = pt_bin_wr_field(c->out->w, ft, id);
    if (ft == PT_T_BOOL) *c->out->w++ = (unsigned char)(boolv != 0);
  } else {
    TC_WR(pt_json_wr_field_begin(c->out, c->jw, id, ft));
    if (ft == PT_T_BOOL) TC_WR(pt_json_wr_bool(c->out, c->jw, boolv));
  }
  if (ft != PT_T_BOOL) {
    int k = tc_value(c, ft, depth);
    if (k < 0) return k;
  }
  if (c->to == PT_PROTO_JSON) TC_WR(pt_json_wr_field_end(c->out, c->jw));
  if (c->from == PT_PROTO_JSON)
    TC_RD(c, pt_json_rd_field_end(c->p, TC_LEFT(c), c->jr));
  return 0;
}

static int tc_struct(tc *c, int depth) {
  int rlast = 0, wlast = 0;
  if (c->from == PT_PROTO_JSON)
    TC_RD(c, pt_json_rd_struct_begin(c->p, TC_LEFT(c), c->jr));
  if (c->to == PT_PROTO_JSON) TC_WR(pt_json_wr_struct_begin(c->out, c->jw));
  for (;;) {
    int ft = 0, id = 0, bv = 0, k;
    size_t n = TC_LEFT(c);
    k = c->from == PT_PROTO_COMPACT
            ? pt_cpt_rd_field(c->p, n, &rlast, &ft, &id, &bv)
        : c->from == PT_PROTO_JSON
            ? pt_json_rd_field(c->p, n, c->jr, &ft, &id)
            : pt_bin_rd_field(c->p, n, &ft, &id);
    TC_NEED(c, k);
    c->p += k;
    if (ft == PT_T_STOP) {
      if (c->to == PT_PROTO_JSON) {
        TC_WR(pt_json_wr_struct_end(c->out, c->jw));
      } else {
        TC_ROOM(c, 1);
        *c->out->w++ = 0;
      }
      return 0;
    }
    if (!pt_ttype_valid(ft)) return PT_BAD;
    k = tc_field(c, ft, id, bv, &wlast, depth);
    if (k < 0) return k;
  }
}

static int tc_list(tc *c, int depth) {
  int et, k;
  uint32_t n;
  size_t left = TC_LEFT(c);
  k = c->from == PT_PROTO_COMPACT ? pt_cpt_rd_list(c->p, left, &et, &n)
      : c->from == PT_PROTO_JSON  ? pt_json_rd_list(c->p, left, c->jr, &et, &n)
                                  : pt_bin_rd_list(c->p, left, &et, &n);
  TC_NEED(c, k);
  c->p += k;
  if (n && !pt_ttype_valid(et)) return PT_BAD;
  if (!pt_ttype_valid(et)) et = PT_T_BYTE; /* empty, of no valid type */
  /* every element takes at least its minimum: bound the loop */
  if ((size_t)n > TC_LEFT(c) / pt_elem_min(c->from, et)) return PT_NEED;
  if (c->to == PT_PROTO_JSON) {
    TC_WR(pt_json_wr_list_begin(c->out, c->jw, et, n));
  } else {
    TC_ROOM(c, PT_MAX_LIST);
    c->out->w = c->to == PT_PROTO_COMPACT ? pt_cpt_wr_list(c->out->w, et, n)
                                          : pt_bin_wr_list(c->out->w, et, n);
  }
  for (uint32_t i = 0; i < n; i++) {
    k = tc_value(c, et, depth);
    if (k < 0) return k;
  }
  if (c->from == PT_PROTO_JSON)
    TC_RD(c, pt_json_rd_list_end(c->p, TC_LEFT(c), c->jr));
  if (c->to == PT_PROTO_JSON) TC_WR(pt_json_wr_list_end(c->out, c->jw));
  return 0;
}

static int tc_map(tc *c, int depth) {
  int kt, vt, k;
  uint32_t n;
  size_t left = TC_LEFT(c);
  k = c->from == PT_PROTO_COMPACT ? pt_cpt_rd_map(c->p, left, &kt, &vt, &n)
      : c->from == PT_PROTO_JSON
          ? pt_json_rd_map(c->p, left, c->jr, &kt, &vt, &n)
          : pt_bin_rd_map(c->p, left, &kt, &vt, &n);
  TC_NEED(c, k);
  c->p += k;
  if (n && (!pt_ttype_valid(kt) || !pt_ttype_valid(vt))) return PT_BAD;
  if (!pt_ttype_valid(kt) || !pt_ttype_valid(vt)) kt = vt = PT_T_BYTE;
  size_t mw = pt_elem_min(c->from, kt) + pt_elem_min(c->from, vt);
  if ((size_t)n > TC_LEFT(c) / mw) return PT_NEED;
  if (c->to == PT_PROTO_JSON) {
    TC_WR(pt_json_wr_map_begin(c->out, c->jw, kt, vt, n));
  } else {
    TC_ROOM(c, PT_MAX_MAP);
    c->out->w = c->to == PT_PROTO_COMPACT
                    ? pt_cpt_wr_map(c->out->w, kt, vt, n)
                    : pt_bin_wr_map(c->out->w, kt, vt, n);
  }
  for (uint32_t i = 0; i < n; i++) {
    k = tc_value(c, kt, depth);
    if (k < 0) return k;
    k = tc_value(c, vt, depth);
    if (k < 0) return k;
  }
  if (c->from == PT_PROTO_JSON)
    TC_RD(c, pt_json_rd_map_end(c->p, TC_LEFT(c), c->jr));
  if (c->to == PT_PROTO_JSON) TC_WR(pt_json_wr_map_end(c->out, c->jw));
  return 0;
}

static int tc_value(tc *c, int t, int depth) {
  size_t n = TC_LEFT(c);
  switch (t) {
    case PT_T_BOOL: {
      int v, k = tc_bool(c, &v);
      if (k < 0) return k;
      return tc_write_bool(c, v);
    }
    case PT_T_BYTE: {
      int64_t v;
      if (c->from == PT_PROTO_JSON) {
        int k = tc_json_int(c, t, &v);
        if (k < 0) return k;
      } else {
        if (n < 1) return PT_NEED;
        v = (int8_t)*c->p++;
      }
      if (c->to == PT_PROTO_JSON) {
        TC_WR(pt_json_wr_int(c->out, c->jw, v));
        return 0;
      }
      TC_ROOM(c, 1);
      *c->out->w++ = (unsigned char)v;
      return 0;
    }
    case PT_T_I16:
    case PT_T_I32:
    case PT_T_I64: {
      int64_t v;
      int k = tc_int(c, t, &v);
      if (k < 0) return k;
      return tc_write_int(c, t, v);
    }
    case PT_T_DOUBLE: {
      double d;
      uint64_t u;
      if (c->from == PT_PROTO_JSON) {
        TC_RD(c, pt_json_rd_double(c->p, n, c->jr, &d));
        memcpy(&u, &d, 8);
      } else {
        if (n < 8) return PT_NEED;
        u = c->from == PT_PROTO_COMPACT ? pt_ld64le(c->p) : pt_ld64(c->p);
        c->p += 8;
      }
      if (c->to == PT_PROTO_JSON) {
        memcpy(&d, &u, 8);
        TC_WR(pt_json_wr_double(c->out, c->jw, d));
        return 0;
      }
      TC_ROOM(c, 8);
      if (c->to == PT_PROTO_COMPACT)
        pt_st64le(c->out->w, u);
      else
        pt_st64(c->out->w, u);
      c->out->w += 8;
      return 0;
    }
    case PT_T_UUID: return tc_uuid(c);
    case PT_T_STRING: return tc_string(c);
    default:
      break;
  }
  if (depth <= 0) return PT_BAD;
  switch (t) {
    case PT_T_STRUCT: return tc_struct(c, depth - 1);
    case PT_T_LIST:
    case PT_T_SET: return tc_list(c, depth - 1);
    case PT_T_MAP: return tc_map(c, depth - 1);
    default: return PT_BAD;
  }
}

ptrdiff_t pt_transcode(int from, const unsigned char *p, size_t n, int ttype,
                       int to, pt_wr *out, int max_depth) {
  pt_jctx *jr = NULL, *jw = NULL;
  if (from == PT_PROTO_JSON || to == PT_PROTO_JSON) {
    jr = malloc(2 * sizeof *jr);
    if (!jr) return PT_NOMEM;
    jw = jr + 1;
    pt_json_reset(jr);
    pt_json_reset(jw);
  }
  if (n > INT32_MAX) n = INT32_MAX; /* the JSON readers' counts are ints */
  tc c = {from, to, p, p + n, out, jr, jw};
  int r = tc_value(&c, ttype, max_depth);
  free(jr);
  if (r < 0) return r;
  return c.p - p;
}

ptrdiff_t pt_transcode_field(int from, const unsigned char *p, size_t n,
                             int ttype, int id, int boolv, int to,
                             pt_wr *out, int *last, int max_depth,
                             pt_jctx *jin, pt_jctx *jout) {
  if (n > INT32_MAX) n = INT32_MAX;
  tc c = {from, to, p, p + n, out, jin, jout};
  if (!pt_ttype_valid(ttype)) return PT_BAD;
  int r = tc_field(&c, ttype, id, boolv, last, max_depth);
  if (r < 0) return r;
  return c.p - p;
}
