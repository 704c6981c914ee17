/*
 * pt_thrift.h — the wire layer of the Thrift protocols, Binary and
 * Compact: one table of wire types, readers and writers of field headers,
 * scalars and container headers, the message envelope, skipping,
 * transcoding between the protocols and transport detection. No Lua here;
 * the binding's table walkers call these and write no wire bytes
 * themselves.
 *
 * Reader contract (picohttpparser's): a reader looks at the n bytes at p
 * and returns how many it consumed (> 0), PT_BAD when they cannot be what
 * was asked for, or PT_NEED when they are a proper prefix of it (call
 * again with more bytes: readers keep no state, so resuming is calling
 * again on the longer input). Readers never look outside [p, p + n).
 *
 * Writer contract: the pt_wr_* calls below write into a pt_wr region
 * [w, end) that the caller has made room in with pt_wr_need(wr, k); the
 * PT_MAX_* constants bound what one call writes. A pt_wr takes its regions
 * from a pt_buf's pool blocks (bytes land where they are sent from), or
 * counts bytes without keeping them, or grows a caller's memory.
 */
#ifndef PT_THRIFT_H
#define PT_THRIFT_H

#include <stddef.h>
#include <stdint.h>

#include "pt_buf.h"

#define PT_BAD (-1)
#define PT_NEED (-2)

/* ---- wire types ------------------------------------------------------ */

/* X(NAME, TType code, name, Binary fixed width (0: variable), Binary
 *   minimum width, Compact type code, Compact fixed width, Compact minimum
 *   width). Widths are of a value (a list element); Compact bool fields
 *   carry their value in the field header. */
#define PT_TTYPES(X)                              \
  X(STOP, 0, "stop", 0, 0, 0, 0, 0)               \
  X(BOOL, 2, "bool", 1, 1, 1, 1, 1)               \
  X(BYTE, 3, "byte", 1, 1, 3, 1, 1)               \
  X(DOUBLE, 4, "double", 8, 8, 7, 8, 8)           \
  X(I16, 6, "i16", 2, 2, 4, 0, 1)                 \
  X(I32, 8, "i32", 4, 4, 5, 0, 1)                 \
  X(I64, 10, "i64", 8, 8, 6, 0, 1)                \
  X(STRING, 11, "string", 0, 4, 8, 0, 1)          \
  X(STRUCT, 12, "struct", 0, 1, 12, 0, 1)         \
  X(MAP, 13, "map", 0, 6, 11, 0, 1)               \
  X(SET, 14, "set", 0, 5, 10, 0, 1)               \
  X(LIST, 15, "list", 0, 5, 9, 0, 1)              \
  X(UUID, 16, "uuid", 16, 16, 13, 16, 16)

enum {
#define X(n, code, name, bw, bmin, ct, cw, cmin) PT_T_##n = code,
  PT_TTYPES(X)
#undef X
  PT_T_LIMIT = 17 /* codes are below this */
};

/* Compact's own type codes (field headers, container element types). */
enum {
  PT_CT_STOP = 0, PT_CT_TRUE = 1, PT_CT_FALSE = 2, PT_CT_BYTE = 3,
  PT_CT_I16 = 4, PT_CT_I32 = 5, PT_CT_I64 = 6, PT_CT_DOUBLE = 7,
  PT_CT_BINARY = 8, PT_CT_LIST = 9, PT_CT_SET = 10, PT_CT_MAP = 11,
  PT_CT_STRUCT = 12, PT_CT_UUID = 13
};

/* Per-TType facts, indexed by code (PT_T_LIMIT entries; holes are zero,
 * name NULL). */
typedef struct pt_ttype_info {
  const char *name;
  uint8_t valid;     /* a value type (not STOP, not a hole) */
  uint8_t bin_width; /* Binary: fixed width, 0 if variable */
  uint8_t bin_min;   /* Binary: fewest bytes a value takes */
  uint8_t ctype;     /* Compact type code */
  uint8_t cpt_width; /* Compact: fixed width of an element, 0 if variable */
  uint8_t cpt_min;   /* Compact: fewest bytes an element takes */
} pt_ttype_info;

extern const pt_ttype_info pt_ttypes[PT_T_LIMIT];
/* Compact type code (0..15) -> TType, 0 for STOP and codes with no type. */
extern const uint8_t pt_ctype_ttype[16];

static inline int pt_ttype_valid(int t) {
  return t > 0 && t < PT_T_LIMIT && pt_ttypes[t].valid;
}
/* "invalid type" for codes that are not types */
static inline const char *pt_ttype_name(int t) {
  return t >= 0 && t < PT_T_LIMIT && pt_ttypes[t].name ? pt_ttypes[t].name
                                                        : "invalid type";
}
static inline size_t pt_ttype_width(int t) {
  return t >= 0 && t < PT_T_LIMIT ? pt_ttypes[t].bin_width : 0;
}

/* ---- protocols ------------------------------------------------------- */

#define PT_PROTOS(X) X(BINARY, "binary") X(COMPACT, "compact")
enum {
#define X(n, name) PT_PROTO_##n,
  PT_PROTOS(X)
#undef X
  PT_PROTO_COUNT
};
extern const char *const pt_proto_names[PT_PROTO_COUNT];

/* Fixed width of an element of type t in protocol proto, 0 if variable;
 * and the fewest bytes one can take (bounds counts against input). */
static inline size_t pt_elem_width(int proto, int t) {
  if (t < 0 || t >= PT_T_LIMIT) return 0;
  return proto == PT_PROTO_COMPACT ? pt_ttypes[t].cpt_width
                                   : pt_ttypes[t].bin_width;
}
static inline size_t pt_elem_min(int proto, int t) {
  if (t < 0 || t >= PT_T_LIMIT) return 1;
  size_t m = proto == PT_PROTO_COMPACT ? pt_ttypes[t].cpt_min
                                       : pt_ttypes[t].bin_min;
  return m ? m : 1;
}

/* Most bytes one writer call below produces. */
#define PT_MAX_FIELD 4   /* field header: Compact long form */
#define PT_MAX_LIST 6    /* list / set header */
#define PT_MAX_MAP 6     /* map header */
#define PT_MAX_LEN 5     /* string / binary length prefix */
#define PT_MAX_VARINT 10 /* one scalar (i64 varint) */
#define PT_MAX_HEAD 16   /* message envelope without the name */

/* ---- big- and little-endian loads and stores ------------------------- */

static inline uint16_t pt_ld16(const unsigned char *p) {
  return (uint16_t)((p[0] << 8) | p[1]);
}
static inline uint32_t pt_ld32(const unsigned char *p) {
  uint32_t v;
  __builtin_memcpy(&v, p, 4);
  return __builtin_bswap32(v);
}
static inline uint64_t pt_ld64(const unsigned char *p) {
  uint64_t v;
  __builtin_memcpy(&v, p, 8);
  return __builtin_bswap64(v);
}
static inline uint64_t pt_ld64le(const unsigned char *p) {
  uint64_t v;
  __builtin_memcpy(&v, p, 8);
  return v; /* x86-64 and the other targets built here are little-endian */
}
static inline void pt_st16(unsigned char *p, uint16_t v) {
  p[0] = (unsigned char)(v >> 8);
  p[1] = (unsigned char)v;
}
static inline void pt_st32(unsigned char *p, uint32_t v) {
  v = __builtin_bswap32(v);
  __builtin_memcpy(p, &v, 4);
}
static inline void pt_st64(unsigned char *p, uint64_t v) {
  v = __builtin_bswap64(v);
  __builtin_memcpy(p, &v, 8);
}
static inline void pt_st64le(unsigned char *p, uint64_t v) {
  __builtin_memcpy(p, &v, 8);
}

/* ---- zigzag and varints (Compact) ------------------------------------ */

static inline uint32_t pt_zz32(int32_t v) {
  return ((uint32_t)v << 1) ^ (uint32_t)-(int32_t)((uint32_t)v >> 31);
}
static inline uint64_t pt_zz64(int64_t v) {
  return ((uint64_t)v << 1) ^ (uint64_t) - (int64_t)((uint64_t)v >> 63);
}
static inline int32_t pt_unzz32(uint32_t u) {
  return (int32_t)((u >> 1) ^ (uint32_t) - (int32_t)(u & 1));
}
static inline int64_t pt_unzz64(uint64_t u) {
  return (int64_t)((u >> 1) ^ (uint64_t) - (int64_t)(u & 1));
}

/* ULEB128 of at most 10 bytes whose value fits 64 bits. */
static inline int pt_rd_varint64(const unsigned char *p, size_t n,
                                 uint64_t *v) {
  if (n && p[0] < 0x80) {
    *v = p[0];
    return 1;
  }
  uint64_t r = 0;
  size_t lim = n < 10 ? n : 10;
  for (size_t i = 0; i < lim; i++) {
    r |= (uint64_t)(p[i] & 0x7f) << (7 * i);
    if (p[i] < 0x80) {
      if (i == 9 && p[i] > 1) return PT_BAD; /* past 64 bits */
      *v = r;
      return (int)i + 1;
    }
  }
  return n >= 10 ? PT_BAD : PT_NEED;
}

/* ULEB128 of at most 5 bytes whose value fits 32 bits. */
static inline int pt_rd_varint32(const unsigned char *p, size_t n,
                                 uint32_t *v) {
  if (n && p[0] < 0x80) {
    *v = p[0];
    return 1;
  }
  uint32_t r = 0;
  size_t lim = n < 5 ? n : 5;
  for (size_t i = 0; i < lim; i++) {
    r |= (uint32_t)(p[i] & 0x7f) << (7 * i);
    if (p[i] < 0x80) {
      if (i == 4 && p[i] > 15) return PT_BAD; /* past 32 bits */
      *v = r;
      return (int)i + 1;
    }
  }
  return n >= 5 ? PT_BAD : PT_NEED;
}

static inline unsigned char *pt_wr_varint32(unsigned char *w, uint32_t v) {
  while (v >= 0x80) {
    *w++ = (unsigned char)(v | 0x80);
    v >>= 7;
  }
  *w++ = (unsigned char)v;
  return w;
}
static inline unsigned char *pt_wr_varint64(unsigned char *w, uint64_t v) {
  while (v >= 0x80) {
    *w++ = (unsigned char)(v | 0x80);
    v >>= 7;
  }
  *w++ = (unsigned char)v;
  return w;
}
/* Branch-free varint reader for hot loops: p has 16 readable bytes (a
 * varint at p ends within 10). Returns its length, PT_BAD when it is
 * longer than 10 bytes or past 64 bits. */
static inline uint64_t pt_gather7(uint64_t x) {
  x = (x & 0x007f007f007f007full) | ((x & 0x7f007f007f007f00ull) >> 1);
  x = (x & 0x00003fff00003fffull) | ((x & 0x3fff00003fff0000ull) >> 2);
  x = (x & 0x000000000fffffffull) | ((x & 0x0fffffff00000000ull) >> 4);
  return x;
}
static inline int pt_rd_varint64_fast(const unsigned char *p, uint64_t *v) {
  uint64_t a, b;
  __builtin_memcpy(&a, p, 8);
  __builtin_memcpy(&b, p + 8, 8);
  uint64_t sa = ~a & 0x8080808080808080ull, sb = ~b & 0x8080808080808080ull;
  unsigned pos = sa ? (unsigned)__builtin_ctzll(sa)
                    : 64 + (unsigned)__builtin_ctzll(sb | (1ull << 63));
  unsigned len = (pos >> 3) + 1;
  unsigned l8 = len < 8 ? len : 8;
  uint64_t x = pt_gather7(a & (~0ull >> (64 - 8 * l8)));
  x |= len > 8 ? (b & 0x7f) << 56 : 0;
  x |= len > 9 ? ((b >> 8) & 1) << 63 : 0;
  *v = x;
  return len > 10 || (len == 10 && ((b >> 8) & 0xff) > 1) ? PT_BAD : (int)len;
}

/* A varint writer for hot loops: w has 10 writable bytes; bytes past the
 * varint may be overwritten with garbage (the next write covers them).
 * Small values take one byte store. */
static inline unsigned char *pt_wr_varint64_fast(unsigned char *w, uint64_t v) {
  if (v < 0x80) {
    *w = (unsigned char)v;
    return w + 1;
  }
  unsigned bits = 64 - (unsigned)__builtin_clzll(v);
  unsigned len = (bits + 6) / 7; /* 2..10 */
  unsigned c8 = len > 8 ? 8 : len - 1;
  uint64_t x = v & 0x00ffffffffffffffull;
  x = (x & 0x000000000fffffffull) | ((x & 0x00fffffff0000000ull) << 4);
  x = (x & 0x00003fff00003fffull) | ((x & 0x0fffc0000fffc000ull) << 2);
  x = (x & 0x007f007f007f007full) | ((x & 0x3f803f803f803f80ull) << 1);
  x |= 0x8080808080808080ull >> (64 - 8 * c8);
  __builtin_memcpy(w, &x, 8);
  if (__builtin_expect(len > 8, 0)) {
    w[8] = (unsigned char)(((v >> 56) & 0x7f) | (len > 9 ? 0x80 : 0));
    w[9] = (unsigned char)(v >> 63);
  }
  return w + len;
}

static inline size_t pt_varint_size(uint64_t v) {
  size_t k = 1;
  while (v >= 0x80) {
    v >>= 7;
    k++;
  }
  return k;
}

/* ---- Binary readers ---------------------------------------------------- */

/* Field header: *tt = 0 (STOP, 1 byte) or the type byte and the id (3). */
static inline int pt_bin_rd_field(const unsigned char *p, size_t n, int *tt,
                                  int *id) {
  if (!n) return PT_NEED;
  if (p[0] == PT_T_STOP) {
    *tt = PT_T_STOP;
    return 1;
  }
  if (n < 3) return PT_NEED;
  *tt = p[0];
  *id = (int16_t)pt_ld16(p + 1);
  return 3;
}
/* list / set header: element type, count (negative: PT_BAD) */
static inline int pt_bin_rd_list(const unsigned char *p, size_t n, int *et,
                                 uint32_t *count) {
  if (n < 5) return PT_NEED;
  uint32_t c = pt_ld32(p + 1);
  if (c > INT32_MAX) return PT_BAD;
  *et = p[0];
  *count = c;
  return 5;
}
static inline int pt_bin_rd_map(const unsigned char *p, size_t n, int *kt,
                                int *vt, uint32_t *count) {
  if (n < 6) return PT_NEED;
  uint32_t c = pt_ld32(p + 2);
  if (c > INT32_MAX) return PT_BAD;
  *kt = p[0];
  *vt = p[1];
  *count = c;
  return 6;
}
/* length prefix of a string / binary (the bytes follow) */
static inline int pt_bin_rd_len(const unsigned char *p, size_t n,
                                uint32_t *len) {
  if (n < 4) return PT_NEED;
  uint32_t l = pt_ld32(p);
  if (l > INT32_MAX) return PT_BAD;
  *len = l;
  return 4;
}

/* ---- Binary writers (room made by the caller) -------------------------- */

static inline unsigned char *pt_bin_wr_field(unsigned char *w, int tt,
                                             int id) {
  w[0] = (unsigned char)tt;
  pt_st16(w + 1, (uint16_t)id);
  return w + 3;
}
static inline unsigned char *pt_bin_wr_list(unsigned char *w, int et,
                                            uint32_t n) {
  w[0] = (unsigned char)et;
  pt_st32(w + 1, n);
  return w + 5;
}
static inline unsigned char *pt_bin_wr_map(unsigned char *w, int kt, int vt,
                                           uint32_t n) {
  w[0] = (unsigned char)kt;
  w[1] = (unsigned char)vt;
  pt_st32(w + 2, n);
  return w + 6;
}

/* ---- Compact readers --------------------------------------------------- */

/* Field header. *last is the previous field's id (0 at a struct's start);
 * on return *tt is the TType (0: STOP), *id the field id, and for a bool
 * field *boolv its value (the header carries it). A header whose type
 * nibble is 0 ends the struct, as Apache's readers take it. */
static inline int pt_cpt_rd_field(const unsigned char *p, size_t n, int *last,
                                  int *tt, int *id, int *boolv) {
  if (!n) return PT_NEED;
  int b = p[0], ct = b & 15, delta = b >> 4;
  if (ct == PT_CT_STOP) {
    *tt = PT_T_STOP;
    return 1;
  }
  int t = pt_ctype_ttype[ct];
  if (!t) return PT_BAD;
  int k = 1, fid;
  if (delta) {
    fid = *last + delta;
    if (fid > INT16_MAX) return PT_BAD;
  } else {
    uint32_t u;
    k = pt_rd_varint32(p + 1, n - 1, &u);
    if (k < 0) return k;
    int32_t v = pt_unzz32(u);
    if (v < INT16_MIN || v > INT16_MAX) return PT_BAD;
    fid = v;
    k++;
  }
  *boolv = ct == PT_CT_TRUE;
  *tt = t;
  *id = fid;
  *last = fid;
  return k;
}
/* list / set header: element TType (-1 for a code that is no type: an
 * error unless the count is 0) and count */
static inline int pt_cpt_rd_list(const unsigned char *p, size_t n, int *et,
                                 uint32_t *count) {
  if (!n) return PT_NEED;
  int b = p[0];
  uint32_t c = (uint32_t)(b >> 4);
  int k = 1;
  if (c == 15) {
    k = pt_rd_varint32(p + 1, n - 1, &c);
    if (k < 0) return k;
    if (c > INT32_MAX) return PT_BAD;
    k++;
  }
  int t = pt_ctype_ttype[b & 15];
  *et = t ? t : -1;
  *count = c;
  return k;
}
/* map header: count, then (count > 0) key and value types in one byte;
 * types -1 as for lists, 0 for an empty map */
static inline int pt_cpt_rd_map(const unsigned char *p, size_t n, int *kt,
                                int *vt, uint32_t *count) {
  uint32_t c;
  int k = pt_rd_varint32(p, n, &c);
  if (k < 0) return k;
  if (c > INT32_MAX) return PT_BAD;
  *count = c;
  if (c == 0) {
    *kt = *vt = 0;
    return k;
  }
  if ((size_t)k >= n) return PT_NEED;
  int b = p[k];
  int a = pt_ctype_ttype[b >> 4], v = pt_ctype_ttype[b & 15];
  *kt = a ? a : -1;
  *vt = v ? v : -1;
  return k + 1;
}
static inline int pt_cpt_rd_len(const unsigned char *p, size_t n,
                                uint32_t *len) {
  int k = pt_rd_varint32(p, n, len);
  if (k > 0 && *len > INT32_MAX) return PT_BAD;
  return k;
}
static inline int pt_cpt_rd_i16(const unsigned char *p, size_t n,
                                int16_t *v) {
  uint32_t u;
  int k = pt_rd_varint32(p, n, &u);
  if (k < 0) return k;
  int32_t x = pt_unzz32(u);
  if (x < INT16_MIN || x > INT16_MAX) return PT_BAD;
  *v = (int16_t)x;
  return k;
}
static inline int pt_cpt_rd_i32(const unsigned char *p, size_t n,
                                int32_t *v) {
  uint32_t u;
  int k = pt_rd_varint32(p, n, &u);
  if (k > 0) *v = pt_unzz32(u);
  return k;
}
static inline int pt_cpt_rd_i64(const unsigned char *p, size_t n,
                                int64_t *v) {
  uint64_t u;
  int k = pt_rd_varint64(p, n, &u);
  if (k > 0) *v = pt_unzz64(u);
  return k;
}

/* ---- Compact writers (room made by the caller) ------------------------- */

/* Field header (delta form when the id is 1..15 above *last); bool fields
 * carry boolv. Updates *last. */
static inline unsigned char *pt_cpt_wr_field(unsigned char *w, int tt, int id,
                                             int *last, int boolv) {
  int ct = tt == PT_T_BOOL ? (boolv ? PT_CT_TRUE : PT_CT_FALSE)
                           : pt_ttypes[tt].ctype;
  int delta = id - *last;
  *last = id;
  if (delta > 0 && delta <= 15) {
    *w++ = (unsigned char)(delta << 4 | ct);
    return w;
  }
  *w++ = (unsigned char)ct;
  return pt_wr_varint32(w, pt_zz32(id));
}
/* element type code of TType t (bool elements are written as 1, as
 * Apache's libraries do) */
static inline int pt_cpt_etype(int t) { return pt_ttypes[t].ctype; }
static inline unsigned char *pt_cpt_wr_list(unsigned char *w, int et,
                                            uint32_t n) {
  int ct = pt_cpt_etype(et);
  if (n < 15) {
    *w++ = (unsigned char)(n << 4 | (uint32_t)ct);
    return w;
  }
  *w++ = (unsigned char)(0xf0 | ct);
  return pt_wr_varint32(w, n);
}
static inline unsigned char *pt_cpt_wr_map(unsigned char *w, int kt, int vt,
                                           uint32_t n) {
  if (n == 0) {
    *w++ = 0;
    return w;
  }
  w = pt_wr_varint32(w, n);
  *w++ = (unsigned char)(pt_cpt_etype(kt) << 4 | pt_cpt_etype(vt));
  return w;
}

/* ---- writers over buffers ---------------------------------------------- */

typedef struct pt_wr pt_wr;
/* Make at least need bytes of room at wr->w; 0, or -1 on ENOMEM. */
typedef int (*pt_wr_grow_fn)(pt_wr *wr, size_t need);

struct pt_wr {
  unsigned char *w, *end; /* the room of the current region */
  unsigned char *start;   /* where the current region began */
  size_t done;            /* bytes before the current region */
  pt_wr_grow_fn grow;
  pt_buf *buf;            /* regions come from this buffer's tail */
  size_t next;            /* size to ask of the next region */
  int count_only;         /* regions are rewound, not committed */
  void *ud;               /* for other grow functions */
};

static inline int pt_wr_need(pt_wr *wr, size_t n) {
  return (size_t)(wr->end - wr->w) >= n ? 0 : wr->grow(wr, n);
}
/* Bytes written (or counted) so far. */
static inline size_t pt_wr_len(const pt_wr *wr) {
  return wr->done + (size_t)(wr->w - wr->start);
}

/* A writer appending to b: regions are reserved from b's tail (the room
 * left in its last block, then fresh pool blocks of first bytes and more,
 * doubling up to the largest size class). Full regions become readable
 * in b as the writer moves on; pt_wr_flush commits the last one. No
 * other write to b may come between. */
void pt_wr_init_buf(pt_wr *wr, pt_buf *b, size_t first);
/* A writer that only counts: regions come from b's tail and are rewound
 * when full; pt_wr_len says how much was written, b is left unchanged. */
void pt_wr_init_count(pt_wr *wr, pt_buf *b, size_t first);
/* Buffer writers: make what was written readable in b (count writers:
 * give the region back). The writer may go on writing after. 0 or -1. */
int pt_wr_flush(pt_wr *wr);
/* Append n bytes at p to the buffer without copying, after what was
 * written (release runs when they are consumed, also if this fails); a
 * count writer counts them. 0 or -1 (ENOMEM). */
int pt_wr_link(pt_wr *wr, const void *p, size_t n, pt_release_fn release,
               void *ctx, intptr_t tag);
/* Copy n bytes in (any size). 0 or -1. */
int pt_wr_bytes(pt_wr *wr, const void *p, size_t n);

/* ---- message envelopes ------------------------------------------------- */

/* What the envelope of one message says. */
typedef struct pt_msg {
  int proto;        /* PT_PROTO_BINARY or PT_PROTO_COMPACT */
  int strict;       /* Binary: the version word is there */
  int mtype;        /* message type (1 call, 2 reply, 3 exception, 4 oneway) */
  int32_t seqid;
  size_t head;      /* bytes before the name */
  uint32_t name_len;
  const unsigned char *name; /* set by pt_msg_parse only: into its input */
  const char *why;  /* after PT_BAD: what is wrong */
} pt_msg;

/* The envelope in three steps, so a reader that sees the bytes in pieces
 * (the scanner) needs keep only the head: pt_msg_head reads everything
 * before the name (Binary strict: version word and name length; Binary
 * non-strict: the name length; Compact: protocol id, version and type,
 * seqid, name length) and returns its length; then name_len bytes of
 * name; then pt_msg_tail reads what follows the name (Binary strict: the
 * seqid; non-strict: type and seqid; Compact: nothing) and returns its
 * length (0 for Compact). The first byte tells the protocol: 0x80 Binary
 * strict, 0x82 Compact, below 0x80 Binary non-strict. PT_BAD for another
 * protocol id, a bad version or a name longer than max_name. */
int pt_msg_head(const unsigned char *p, size_t n, size_t max_name, pt_msg *m);
int pt_msg_tail(const unsigned char *p, size_t n, pt_msg *m);
/* The whole envelope: head, name, tail. Returns the bytes it takes. */
int pt_msg_parse(const unsigned char *p, size_t n, size_t max_name,
                 pt_msg *m);
/* Write an envelope (strict for Binary) at w: room PT_MAX_HEAD + nlen.
 * Returns the end. */
unsigned char *pt_msg_write(unsigned char *w, int proto, const char *name,
                            uint32_t nlen, int mtype, int32_t seqid);

/* ---- skipping and transcoding ----------------------------------------- */

/* Skip one value of TType ttype in [p, end) in protocol proto (a list
 * element; a Compact bool field has no value to skip). Returns the bytes
 * it occupies, 0 if it is cut short or malformed (bad type, negative size,
 * nesting deeper than max_depth). Checks every length against the bytes
 * present, allocates nothing; recurses up to max_depth deep, so callers
 * bound it. pt_skip is pt_skip_proto for Binary. */
size_t pt_skip_proto(int proto, const unsigned char *p,
                     const unsigned char *end, int ttype, int max_depth);
size_t pt_skip(const unsigned char *p, const unsigned char *end, int ttype,
               int max_depth);

/* Rewrite one value of TType ttype read from [p, p + n) in protocol from
 * into out in protocol to (a struct: its fields in the order they come,
 * Compact headers in the short form where the ids allow). Returns the
 * bytes read, PT_BAD (malformed, deeper than max_depth) or PT_NEED (cut
 * short); -3 when out could not grow (ENOMEM). What out holds after a
 * failure is unspecified. */
#define PT_NOMEM (-3)
ptrdiff_t pt_transcode(int from, const unsigned char *p, size_t n, int ttype,
                       int to, pt_wr *out, int max_depth);
/* The same for one struct field whose header was read already (id, type,
 * and for a Compact bool field its value): writes the field in the other
 * protocol (*last: Compact's previous field id), then its value. */
ptrdiff_t pt_transcode_field(int from, const unsigned char *p, size_t n,
                             int ttype, int id, int boolv, int to,
                             pt_wr *out, int *last, int max_depth);

/* ---- transport detection ----------------------------------------------- */

/* What the first bytes of a connection say the peer speaks. */
enum { PT_WIRE_THRIFT = 1, PT_WIRE_HTTP, PT_WIRE_TLS, PT_WIRE_UNKNOWN };
enum { PT_TR_UNFRAMED = 1, PT_TR_FRAMED };
typedef struct pt_detect {
  int wire;        /* PT_WIRE_* */
  int transport;   /* PT_TR_* (Thrift) */
  int proto;       /* PT_PROTO_* (Thrift) */
  int strict;      /* Binary: a strict envelope */
  const char *what; /* a short description: "framed compact", "HTTP request" */
} pt_detect;

/* Decide from the n bytes at p (a connection's first bytes) what the peer
 * speaks. Returns 1 when decided (d filled; d->wire says whether it is
 * Thrift), PT_NEED while more bytes could change the answer, never
 * guessing early. max_frame bounds frame lengths and max_name method
 * names that count as plausible. Candidates are tried as a table of
 * probes (pt_detect.c), so a new transport or protocol (THeader, TTHeader,
 * JSON) is a new probe. */
int pt_detect_wire(const unsigned char *p, size_t n, uint64_t max_frame,
                   size_t max_name, pt_detect *d);

#endif
