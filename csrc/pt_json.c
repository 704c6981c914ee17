/*
 * pt_json.c — Apache Thrift's JSON protocol (see pt_json.h).
 *
 * A context byte holds its kind (base, list, pair), whether the next
 * token is its first, and, in a pair context, whether the next separator
 * is ':' (so the token after it is a value) or ',' (a key follows, and
 * numbers are quoted). Readers change the context only when they
 * succeed: they note the current level and its byte, and put them back
 * on failure (pushes only write above the current level; pops write
 * nothing).
 */
#include "pt_json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { J_BASE = 0, J_LIST = 1, J_PAIR = 2 };
#define J_FIRST 4
#define J_COLON 8

static const char *const type_names[PT_T_LIMIT] = {
    [PT_T_BOOL] = "tf",   [PT_T_BYTE] = "i8",     [PT_T_I16] = "i16",
    [PT_T_I32] = "i32",   [PT_T_I64] = "i64",     [PT_T_DOUBLE] = "dbl",
    [PT_T_STRING] = "str", [PT_T_STRUCT] = "rec", [PT_T_MAP] = "map",
    [PT_T_SET] = "set",   [PT_T_LIST] = "lst",    [PT_T_UUID] = "uid",
};

const char *pt_json_type_name(int t) {
  return t > 0 && t < PT_T_LIMIT ? type_names[t] : NULL;
}

int pt_json_type_of(const unsigned char *s, size_t len) {
  for (int t = 1; t < PT_T_LIMIT; t++) {
    const char *nm = type_names[t];
    if (nm && strlen(nm) == len && memcmp(nm, s, len) == 0) return t;
  }
  return 0;
}

/* ---- writers ---------------------------------------------------------- */

static int put(pt_wr *wr, const void *s, size_t n) {
  if (pt_wr_need(wr, n) != 0) return -1;
  memcpy(wr->w, s, n);
  wr->w += n;
  return 0;
}

static int putc1(pt_wr *wr, char c) {
  if (pt_wr_need(wr, 1) != 0) return -1;
  *wr->w++ = (unsigned char)c;
  return 0;
}

/* The separator the context wants before its next token (0: none) and
 * the context's state once it is passed (*ns); *key says that token is an
 * object key (numbers get quoted). The writer and the reader store *ns
 * once the separator is written or read. */
static int sep_of(const pt_jctx *jc, uint8_t *ns, int *key) {
  uint8_t s = jc->st[jc->top];
  int kind = s & 3;
  *key = 0;
  *ns = s;
  if (kind == J_BASE) return 0;
  if (s & J_FIRST) {
    s &= (uint8_t)~J_FIRST;
    if (kind == J_PAIR) {
      s |= J_COLON;
      *key = 1;
    }
    *ns = s;
    return 0;
  }
  int c = ',';
  if (kind == J_PAIR) {
    c = s & J_COLON ? ':' : ',';
    s ^= J_COLON;
    *key = (s & J_COLON) != 0;
  }
  *ns = s;
  return c;
}

static int wsep(pt_wr *wr, pt_jctx *jc, int *key) {
  uint8_t ns;
  int c = sep_of(jc, &ns, key);
  jc->st[jc->top] = ns;
  return c ? putc1(wr, (char)c) : 0;
}

static int push(pt_jctx *jc, int kind) {
  if (jc->top + 1 >= PT_JSON_MAXCTX) return -1;
  jc->st[++jc->top] = (uint8_t)(kind | J_FIRST);
  return 0;
}

static void pop(pt_jctx *jc) {
  if (jc->top > 0) jc->top--;
}

/* Decimal text of v at out; returns its length (at most 20). */
static size_t itoa64(char *out, int64_t v) {
  char tmp[24];
  size_t k = 0;
  uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
  do {
    tmp[k++] = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  size_t n = 0;
  if (v < 0) out[n++] = '-';
  while (k) out[n++] = tmp[--k];
  return n;
}

int pt_json_wr_int(pt_wr *wr, pt_jctx *jc, int64_t v) {
  int key;
  if (wsep(wr, jc, &key)) return -1;
  if (pt_wr_need(wr, 24) != 0) return -1;
  char *w = (char *)wr->w;
  size_t k = 0;
  if (key) w[k++] = '"';
  k += itoa64(w + k, v);
  if (key) w[k++] = '"';
  wr->w += k;
  return 0;
}

int pt_json_wr_bool(pt_wr *wr, pt_jctx *jc, int v) {
  return pt_json_wr_int(wr, jc, v ? 1 : 0);
}

int pt_json_wr_double(pt_wr *wr, pt_jctx *jc, double v) {
  int key;
  if (wsep(wr, jc, &key)) return -1;
  if (isnan(v)) return put(wr, "\"NaN\"", 5);
  if (isinf(v))
    return v > 0 ? put(wr, "\"Infinity\"", 10) : put(wr, "\"-Infinity\"", 11);
  char tmp[40];
  int k = snprintf(tmp + 1, sizeof tmp - 2, "%.17g", v);
  if (k <= 0 || k > 32) return -1;
  if (!key) return put(wr, tmp + 1, (size_t)k);
  tmp[0] = '"';
  tmp[k + 1] = '"';
  return put(wr, tmp, (size_t)k + 2);
}

static const char hexd[] = "0123456789abcdef";

int pt_json_wr_string(pt_wr *wr, pt_jctx *jc, const void *sv, size_t n) {
  int key;
  if (wsep(wr, jc, &key)) return -1;
  const unsigned char *s = sv;
  if (putc1(wr, '"')) return -1;
  while (n) {
    size_t chunk = n < 4096 ? n : 4096;
    if (pt_wr_need(wr, chunk * 6) != 0) return -1;
    unsigned char *w = wr->w;
    for (size_t i = 0; i < chunk; i++) {
      unsigned char c = s[i];
      if (c >= 0x20 && c != '"' && c != '\\') {
        *w++ = c;
        continue;
      }
      *w++ = '\\';
      switch (c) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '\b': *w++ = 'b'; break;
        case '\f': *w++ = 'f'; break;
        case '\n': *w++ = 'n'; break;
        case '\r': *w++ = 'r'; break;
        case '\t': *w++ = 't'; break;
        default:
          *w++ = 'u';
          *w++ = '0';
          *w++ = '0';
          *w++ = (unsigned char)hexd[c >> 4];
          *w++ = (unsigned char)hexd[c & 15];
      }
    }
    wr->w = w;
    s += chunk;
    n -= chunk;
  }
  return putc1(wr, '"');
}

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int pt_json_wr_base64(pt_wr *wr, pt_jctx *jc, const void *sv, size_t n) {
  int key;
  if (wsep(wr, jc, &key)) return -1;
  const unsigned char *s = sv;
  if (putc1(wr, '"')) return -1;
  while (n) {
    size_t chunk = n < 3072 ? n : 3072; /* a multiple of 3 but the last */
    if (pt_wr_need(wr, chunk / 3 * 4 + 4) != 0) return -1;
    unsigned char *w = wr->w;
    size_t i = 0;
    for (; i + 3 <= chunk; i += 3) {
      uint32_t x = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
      *w++ = (unsigned char)b64[x >> 18];
      *w++ = (unsigned char)b64[(x >> 12) & 63];
      *w++ = (unsigned char)b64[(x >> 6) & 63];
      *w++ = (unsigned char)b64[x & 63];
    }
    if (i < chunk) {
      uint32_t x = (uint32_t)s[i] << 16;
      if (i + 1 < chunk) x |= (uint32_t)s[i + 1] << 8;
      *w++ = (unsigned char)b64[x >> 18];
      *w++ = (unsigned char)b64[(x >> 12) & 63];
      *w++ = i + 1 < chunk ? (unsigned char)b64[(x >> 6) & 63] : '=';
      *w++ = '=';
    }
    wr->w = w;
    s += chunk;
    n -= chunk;
  }
  return putc1(wr, '"');
}

static int wr_type(pt_wr *wr, pt_jctx *jc, int t) {
  const char *nm = pt_json_type_name(t);
  if (!nm) nm = "i8"; /* an empty container of no valid type */
  return pt_json_wr_string(wr, jc, nm, strlen(nm));
}

static int obj_begin(pt_wr *wr, pt_jctx *jc) {
  int key;
  if (wsep(wr, jc, &key) || putc1(wr, '{')) return -1;
  return push(jc, J_PAIR);
}

static int arr_begin(pt_wr *wr, pt_jctx *jc) {
  int key;
  if (wsep(wr, jc, &key) || putc1(wr, '[')) return -1;
  return push(jc, J_LIST);
}

int pt_json_wr_struct_begin(pt_wr *wr, pt_jctx *jc) {
  return obj_begin(wr, jc);
}

int pt_json_wr_struct_end(pt_wr *wr, pt_jctx *jc) {
  pop(jc);
  return putc1(wr, '}');
}

int pt_json_wr_field_begin(pt_wr *wr, pt_jctx *jc, int id, int ttype) {
  if (pt_json_wr_int(wr, jc, id) || obj_begin(wr, jc)) return -1;
  return wr_type(wr, jc, ttype);
}

int pt_json_wr_field_end(pt_wr *wr, pt_jctx *jc) {
  return pt_json_wr_struct_end(wr, jc);
}

int pt_json_wr_list_begin(pt_wr *wr, pt_jctx *jc, int et, uint32_t n) {
  if (arr_begin(wr, jc) || wr_type(wr, jc, et)) return -1;
  return pt_json_wr_int(wr, jc, n);
}

int pt_json_wr_list_end(pt_wr *wr, pt_jctx *jc) {
  pop(jc);
  return putc1(wr, ']');
}

int pt_json_wr_map_begin(pt_wr *wr, pt_jctx *jc, int kt, int vt,
                         uint32_t n) {
  if (arr_begin(wr, jc) || wr_type(wr, jc, kt) || wr_type(wr, jc, vt) ||
      pt_json_wr_int(wr, jc, n))
    return -1;
  return obj_begin(wr, jc);
}

int pt_json_wr_map_end(pt_wr *wr, pt_jctx *jc) {
  pop(jc);
  pop(jc);
  return put(wr, "}]", 2);
}

unsigned char *pt_json_msg_write(unsigned char *w, const char *name,
                                 uint32_t nlen, int mtype, int32_t seqid) {
  memcpy(w, "[1,\"", 4);
  w += 4;
  for (uint32_t i = 0; i < nlen; i++) {
    unsigned char c = (unsigned char)name[i];
    if (c >= 0x20 && c != '"' && c != '\\') {
      *w++ = c;
    } else {
      memcpy(w, "\\u00", 4);
      w[4] = (unsigned char)hexd[c >> 4];
      w[5] = (unsigned char)hexd[c & 15];
      w += 6;
    }
  }
  *w++ = '"';
  *w++ = ',';
  w += itoa64((char *)w, mtype);
  *w++ = ',';
  w += itoa64((char *)w, seqid);
  *w++ = ',';
  return w;
}

/* ---- readers ---------------------------------------------------------- */

typedef struct rd {
  const unsigned char *p;
  size_t n, i;
} rd;

#define TRY(x)              \
  do {                      \
    int r_ = (x);           \
    if (r_ < 0) return r_;  \
  } while (0)

static inline int is_ws(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Skip whitespace; PT_NEED when the input ends there. */
static int r_ws(rd *r) {
  while (r->i < r->n && is_ws(r->p[r->i])) r->i++;
  return r->i < r->n ? 0 : PT_NEED;
}

static int r_char(rd *r, unsigned char c) {
  TRY(r_ws(r));
  if (r->p[r->i] != c) return PT_BAD;
  r->i++;
  return 0;
}

/* The separator the context wants, read (see sep_of); *key: an object
 * key follows. */
static int r_sep(rd *r, pt_jctx *jc, int *key) {
  uint8_t ns;
  int c = sep_of(jc, &ns, key);
  if (c) TRY(r_char(r, (unsigned char)c));
  jc->st[jc->top] = ns;
  return 0;
}

static int r_push(pt_jctx *jc, int kind) {
  if (jc->top + 1 >= PT_JSON_MAXCTX) return PT_BAD;
  jc->st[++jc->top] = (uint8_t)(kind | J_FIRST);
  return 0;
}

/* An integer's digits at r (a sign allowed); ends at a byte that cannot
 * continue a number. */
static int r_digits(rd *r, int64_t *v) {
  size_t i = r->i;
  const unsigned char *p = r->p;
  int neg = 0;
  if (i < r->n && (p[i] == '-' || p[i] == '+')) neg = p[i++] == '-';
  size_t d0 = i;
  uint64_t acc = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
  while (i < r->n && p[i] >= '0' && p[i] <= '9') {
    unsigned d = (unsigned)(p[i] - '0');
    if (acc > (lim - d) / 10) return PT_BAD;
    acc = acc * 10 + d;
    i++;
  }
  if (i >= r->n) return PT_NEED;
  if (i == d0 || p[i] == '.' || p[i] == 'e' || p[i] == 'E') return PT_BAD;
  *v = neg ? (int64_t)(0 - acc) : (int64_t)acc;
  r->i = i;
  return 0;
}

/* An integer, quoted when key. */
static int r_int(rd *r, int key, int64_t *v) {
  TRY(r_ws(r));
  if (key) {
    if (r->p[r->i] != '"') return PT_BAD;
    r->i++;
  }
  TRY(r_digits(r, v));
  if (key) {
    if (r->p[r->i] != '"') return PT_BAD;
    r->i++;
  }
  return 0;
}

/* A string token from its opening quote: raw text, unescaped length. */
static int r_str(rd *r, pt_jstr *s) {
  TRY(r_char(r, '"'));
  const unsigned char *p = r->p;
  size_t i = r->i, n = r->n, len = 0;
  int esc = 0;
  for (;;) {
    if (i >= n) return PT_NEED;
    unsigned char c = p[i];
    if (c == '"') break;
    if (c != '\\') { /* raw control characters too: Apache's Python
                        library writes all but \b \f \n \r \t raw */
      len++;
      i++;
      continue;
    }
    esc = 1;
    if (i + 1 >= n) return PT_NEED;
    switch (p[i + 1]) {
      case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r':
      case 't':
        len++;
        i += 2;
        continue;
      case 'u':
        break;
      default:
        return PT_BAD;
    }
    if (i + 6 > n) return PT_NEED;
    unsigned cu = 0;
    for (int k = 2; k < 6; k++) {
      int h = p[i + k];
      int d = h >= '0' && h <= '9'   ? h - '0'
              : h >= 'a' && h <= 'f' ? h - 'a' + 10
              : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                     : -1;
      if (d < 0) return PT_BAD;
      cu = cu << 4 | (unsigned)d;
    }
    i += 6;
    if (cu >= 0xdc00 && cu <= 0xdfff) return PT_BAD; /* a lone low half */
    if (cu >= 0xd800 && cu <= 0xdbff) {              /* then its low half */
      if (i + 6 > n) return PT_NEED;
      if (p[i] != '\\' || p[i + 1] != 'u') return PT_BAD;
      unsigned lo = 0;
      for (int k = 2; k < 6; k++) {
        int h = p[i + k];
        int d = h >= '0' && h <= '9'   ? h - '0'
                : h >= 'a' && h <= 'f' ? h - 'a' + 10
                : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                       : -1;
        if (d < 0) return PT_BAD;
        lo = lo << 4 | (unsigned)d;
      }
      if (lo < 0xdc00 || lo > 0xdfff) return PT_BAD;
      i += 6;
      len += 4;
      continue;
    }
    len += cu < 0x80 ? 1 : cu < 0x800 ? 2 : 3;
  }
  s->at = r->i;
  s->raw = i - r->i;
  s->len = len;
  s->escaped = esc;
  r->i = i + 1;
  return 0;
}

static unsigned hex4(const unsigned char *h) {
  unsigned v = 0;
  for (int k = 0; k < 4; k++) {
    int c = h[k];
    v = v << 4 | (unsigned)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
  }
  return v;
}

size_t pt_json_unescape(const unsigned char *p, size_t n, unsigned char *out) {
  unsigned char *w = out;
  for (size_t i = 0; i < n;) {
    unsigned char c = p[i];
    if (c != '\\') {
      *w++ = c;
      i++;
      continue;
    }
    unsigned char e = p[i + 1];
    i += 2;
    switch (e) {
      case 'b': *w++ = '\b'; continue;
      case 'f': *w++ = '\f'; continue;
      case 'n': *w++ = '\n'; continue;
      case 'r': *w++ = '\r'; continue;
      case 't': *w++ = '\t'; continue;
      case 'u': break;
      default: *w++ = e; continue; /* " \ / */
    }
    uint32_t cp = hex4(p + i);
    i += 4;
    if (cp >= 0xd800 && cp <= 0xdbff) {
      uint32_t lo = hex4(p + i + 2);
      i += 6;
      cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    }
    if (cp < 0x80) {
      *w++ = (unsigned char)cp;
    } else if (cp < 0x800) {
      *w++ = (unsigned char)(0xc0 | cp >> 6);
      *w++ = (unsigned char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      *w++ = (unsigned char)(0xe0 | cp >> 12);
      *w++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
      *w++ = (unsigned char)(0x80 | (cp & 0x3f));
    } else {
      *w++ = (unsigned char)(0xf0 | cp >> 18);
      *w++ = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
      *w++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
      *w++ = (unsigned char)(0x80 | (cp & 0x3f));
    }
  }
  return (size_t)(w - out);
}

static int b64val(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

ptrdiff_t pt_json_b64_decode(const unsigned char *s, size_t n,
                             unsigned char *out) {
  if (n >= 1 && s[n - 1] == '=') n--;
  if (n >= 1 && s[n - 1] == '=') n--;
  if (n % 4 == 1) return PT_BAD;
  unsigned char *w = out;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    int a = b64val(s[i]), b = b64val(s[i + 1]), c = b64val(s[i + 2]),
        d = b64val(s[i + 3]);
    if ((a | b | c | d) < 0) return PT_BAD;
    uint32_t x = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 |
                 (uint32_t)d;
    *w++ = (unsigned char)(x >> 16);
    *w++ = (unsigned char)(x >> 8);
    *w++ = (unsigned char)x;
  }
  if (i < n) {
    int a = b64val(s[i]), b = b64val(s[i + 1]);
    int c = n - i == 3 ? b64val(s[i + 2]) : 0;
    if ((a | b | c) < 0) return PT_BAD;
    uint32_t x = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6;
    *w++ = (unsigned char)(x >> 16);
    if (n - i == 3) *w++ = (unsigned char)(x >> 8);
  }
  return w - out;
}

/* ---- readers: the contract's wrappers --------------------------------- */

/* Each public reader runs on a cursor and puts the context back when it
 * fails. */
#define BEGIN(p, n, jc)                 \
  rd r_ = {(p), (n), 0};                \
  rd *r = &r_;                          \
  int top0_ = (jc)->top;                \
  uint8_t st0_ = (jc)->st[top0_];       \
  int rc_
#define STEP(x)          \
  do {                   \
    rc_ = (x);           \
    if (rc_ < 0) goto fail; \
  } while (0)
#define END(jc)                 \
  return (int)r->i;             \
  fail:                         \
  (jc)->top = top0_;            \
  (jc)->st[top0_] = st0_;       \
  return rc_

int pt_json_rd_int(const unsigned char *p, size_t n, pt_jctx *jc,
                   int64_t *v) {
  BEGIN(p, n, jc);
  int key;
  STEP(r_sep(r, jc, &key));
  STEP(r_int(r, key, v));
  END(jc);
}

/* bytes a number's text may hold; and those of the words for the special
 * values (NaN, Infinity; nan and inf as Apache's Python library writes
 * them, unquoted) */
#define NUM_CHARS "+-.0123456789eE"
#define WORD_CHARS NUM_CHARS "aAfFiInNtTyY"

static int parse_double(const unsigned char *s, size_t n, double *v) {
  char tmp[72];
  if (n == 0 || n >= sizeof tmp) return PT_BAD;
  memcpy(tmp, s, n);
  tmp[n] = 0;
  static const struct {
    const char *w;
    int sign; /* 0: NaN */
  } words[] = {{"NaN", 0},       {"nan", 0},         {"-nan", 0},
               {"Infinity", 1},  {"-Infinity", -1},  {"+Infinity", 1},
               {"inf", 1},       {"-inf", -1},       {"+inf", 1},
               {"Inf", 1},       {"-Inf", -1},       {"infinity", 1},
               {"-infinity", -1}};
  for (size_t i = 0; i < sizeof words / sizeof *words; i++)
    if (strcmp(tmp, words[i].w) == 0) {
      *v = words[i].sign == 0 ? NAN : words[i].sign > 0 ? INFINITY : -INFINITY;
      return 0;
    }
  for (size_t i = 0; i < n; i++)
    if (!strchr(NUM_CHARS, tmp[i])) return PT_BAD;
  char *end;
  *v = strtod(tmp, &end);
  return end == tmp + n ? 0 : PT_BAD;
}

int pt_json_rd_double(const unsigned char *p, size_t n, pt_jctx *jc,
                      double *v) {
  BEGIN(p, n, jc);
  int key;
  STEP(r_sep(r, jc, &key));
  STEP(r_ws(r));
  if (r->p[r->i] == '"') {
    pt_jstr s;
    STEP(r_str(r, &s));
    rc_ = PT_BAD;
    if (s.escaped) goto fail;
    STEP(parse_double(p + s.at, s.raw, v));
    /* a quoted number only where a key is; NaN and the infinities
     * anywhere */
    if (!key && !isnan(*v) && !isinf(*v)) {
      rc_ = PT_BAD;
      goto fail;
    }
  } else {
    rc_ = PT_BAD;
    if (key) goto fail;
    size_t i = r->i;
    while (i < n && p[i] && strchr(WORD_CHARS, p[i])) i++;
    rc_ = PT_NEED;
    if (i >= n) goto fail;
    STEP(parse_double(p + r->i, i - r->i, v));
    r->i = i;
  }
  END(jc);
}

int pt_json_rd_string(const unsigned char *p, size_t n, pt_jctx *jc,
                      pt_jstr *s) {
  BEGIN(p, n, jc);
  int key;
  STEP(r_sep(r, jc, &key));
  STEP(r_str(r, s));
  END(jc);
}

/* sep, the opening character, a new context */
static int r_open(rd *r, pt_jctx *jc, unsigned char c, int kind) {
  int key;
  TRY(r_sep(r, jc, &key));
  TRY(r_char(r, c));
  return r_push(jc, kind);
}

static int r_close(rd *r, pt_jctx *jc, unsigned char c) {
  TRY(r_char(r, c));
  if (jc->top > 0) jc->top--;
  return 0;
}

/* a type name string in the context's position */
static int r_type(rd *r, pt_jctx *jc, int *t) {
  int key;
  pt_jstr s;
  TRY(r_sep(r, jc, &key));
  TRY(r_str(r, &s));
  *t = s.escaped ? 0 : pt_json_type_of(r->p + s.at, s.raw);
  return 0;
}

int pt_json_rd_struct_begin(const unsigned char *p, size_t n, pt_jctx *jc) {
  BEGIN(p, n, jc);
  STEP(r_open(r, jc, '{', J_PAIR));
  END(jc);
}

int pt_json_rd_field(const unsigned char *p, size_t n, pt_jctx *jc, int *tt,
                     int *id) {
  BEGIN(p, n, jc);
  STEP(r_ws(r));
  if (p[r->i] == '}') { /* the struct ends */
    r->i++;
    if (jc->top > 0) jc->top--;
    *tt = 0;
    return (int)r->i;
  }
  int key;
  int64_t v;
  STEP(r_sep(r, jc, &key));
  STEP(r_int(r, key, &v));
  rc_ = PT_BAD;
  if (v < INT16_MIN || v > INT16_MAX) goto fail;
  STEP(r_open(r, jc, '{', J_PAIR));
  int t;
  STEP(r_type(r, jc, &t));
  rc_ = PT_BAD;
  if (!t) goto fail;
  *tt = t;
  *id = (int)v;
  END(jc);
}

int pt_json_rd_field_end(const unsigned char *p, size_t n, pt_jctx *jc) {
  BEGIN(p, n, jc);
  STEP(r_close(r, jc, '}'));
  END(jc);
}

static int r_count(rd *r, pt_jctx *jc, uint32_t *count) {
  int key;
  int64_t v;
  TRY(r_sep(r, jc, &key));
  TRY(r_int(r, key, &v));
  if (v < 0 || v > INT32_MAX) return PT_BAD;
  *count = (uint32_t)v;
  return 0;
}

int pt_json_rd_list(const unsigned char *p, size_t n, pt_jctx *jc, int *et,
                    uint32_t *count) {
  BEGIN(p, n, jc);
  STEP(r_open(r, jc, '[', J_LIST));
  STEP(r_type(r, jc, et));
  STEP(r_count(r, jc, count));
  END(jc);
}

int pt_json_rd_list_end(const unsigned char *p, size_t n, pt_jctx *jc) {
  BEGIN(p, n, jc);
  STEP(r_close(r, jc, ']'));
  END(jc);
}

int pt_json_rd_map(const unsigned char *p, size_t n, pt_jctx *jc, int *kt,
                   int *vt, uint32_t *count) {
  BEGIN(p, n, jc);
  STEP(r_open(r, jc, '[', J_LIST));
  STEP(r_type(r, jc, kt));
  STEP(r_type(r, jc, vt));
  STEP(r_count(r, jc, count));
  STEP(r_open(r, jc, '{', J_PAIR));
  END(jc);
}

int pt_json_rd_map_end(const unsigned char *p, size_t n, pt_jctx *jc) {
  BEGIN(p, n, jc);
  STEP(r_close(r, jc, '}'));
  STEP(r_close(r, jc, ']'));
  END(jc);
}

/* ---- skipping --------------------------------------------------------- */

/* A number or a literal: the run of bytes that may be one, then a byte
 * that ends it. */
static int r_scalar(rd *r) {
  const unsigned char *p = r->p;
  size_t i = r->i;
  if (p[i] == 't' || p[i] == 'f' || (p[i] == 'n' && r->n - i > 1 && p[i + 1] == 'u')) {
    const char *lit = p[i] == 't' ? "true" : p[i] == 'f' ? "false" : "null";
    size_t k = strlen(lit);
    size_t have = r->n - i < k ? r->n - i : k;
    if (memcmp(p + i, lit, have) != 0) return PT_BAD;
    if (have < k) return PT_NEED;
    r->i = i + k;
    return 0;
  }
  if (p[i] == 'n' && r->n - i == 1) return PT_NEED; /* null or nan */
  /* a number, or a word parse_double takes (NaN, inf...) */
  while (i < r->n && p[i] && strchr(WORD_CHARS, p[i])) i++;
  if (i >= r->n) return PT_NEED;
  double v;
  if (parse_double(p + r->i, i - r->i, &v)) return PT_BAD;
  r->i = i;
  return 0;
}

/* One JSON value at r: iterative, with a stack of the open containers
 * (1 bit each: object or array). */
static int r_skip_value(rd *r, int max_depth) {
  uint8_t stack[PT_JSON_MAXCTX / 8 + 1];
  int sp = 0;
  if (max_depth > PT_JSON_MAXCTX) max_depth = PT_JSON_MAXCTX;
  enum { S_VALUE, S_VALUE_OR_END, S_KEY, S_KEY_OR_END, S_COLON, S_AFTER };
  int state = S_VALUE;
  pt_jstr s;
  for (;;) {
    TRY(r_ws(r));
    unsigned char c = r->p[r->i];
    switch (state) {
      case S_VALUE_OR_END:
        if (c == ']') {
          r->i++;
          sp--;
          state = S_AFTER;
          break;
        }
        /* fall through */
      case S_VALUE:
        if (c == '{' || c == '[') {
          if (sp >= max_depth) return PT_BAD;
          int obj = c == '{';
          if (obj)
            stack[sp >> 3] |= (uint8_t)(1u << (sp & 7));
          else
            stack[sp >> 3] &= (uint8_t) ~(1u << (sp & 7));
          sp++;
          r->i++;
          state = obj ? S_KEY_OR_END : S_VALUE_OR_END;
          break;
        }
        if (c == '"')
          TRY(r_str(r, &s));
        else
          TRY(r_scalar(r));
        state = S_AFTER;
        break;
      case S_KEY_OR_END:
        if (c == '}') {
          r->i++;
          sp--;
          state = S_AFTER;
          break;
        }
        /* fall through */
      case S_KEY:
        TRY(r_str(r, &s));
        state = S_COLON;
        break;
      case S_COLON:
        if (c != ':') return PT_BAD;
        r->i++;
        state = S_VALUE;
        break;
      case S_AFTER: {
        if (sp == 0) return 0;
        int obj = (stack[(sp - 1) >> 3] >> ((sp - 1) & 7)) & 1;
        if (c == ',') {
          r->i++;
          state = obj ? S_KEY : S_VALUE;
        } else if (c == (obj ? '}' : ']')) {
          r->i++;
          sp--;
        } else {
          return PT_BAD;
        }
        break;
      }
    }
    if (state == S_AFTER && sp == 0) return 0;
  }
}

int pt_json_skip(const unsigned char *p, size_t n, pt_jctx *jc,
                 int max_depth) {
  BEGIN(p, n, jc);
  int key;
  STEP(r_sep(r, jc, &key));
  STEP(r_skip_value(r, max_depth));
  END(jc);
}

/* ---- the envelope ----------------------------------------------------- */

int pt_json_msg_head(const unsigned char *p, size_t n, size_t max_name,
                     pt_msg *m) {
  rd r_ = {p, n, 0}, *r = &r_;
  int64_t v;
  int k;
  if ((k = r_char(r, '[')) < 0) goto bad;
  if ((k = r_ws(r)) < 0) goto bad;
  if ((k = r_digits(r, &v)) < 0) goto bad;
  if (v != 1) {
    m->why = "bad json protocol version";
    return PT_BAD;
  }
  if ((k = r_char(r, ',')) < 0 || (k = r_char(r, '"')) < 0) goto bad;
  size_t at = r->i, i = at;
  for (;; i++) {
    if (i - at > max_name || i - at > INT32_MAX) {
      m->why = "bad method name length";
      return PT_BAD;
    }
    if (i >= n) return PT_NEED;
    if (p[i] == '"') break;
    if (p[i] == '\\' || p[i] < 0x20) {
      m->why = "method name with escapes";
      return PT_BAD;
    }
  }
  m->proto = PT_PROTO_JSON;
  m->strict = 1;
  m->mtype = 0; /* in the tail */
  m->name_len = (uint32_t)(i - at);
  m->head = at;
  return (int)at;
bad:
  if (k == PT_BAD) m->why = "bad json envelope";
  return k;
}

int pt_json_msg_tail(const unsigned char *p, size_t n, pt_msg *m) {
  rd r_ = {p, n, 0}, *r = &r_;
  int64_t t, s;
  int k;
  if ((k = r_char(r, '"')) < 0 || (k = r_char(r, ',')) < 0 ||
      (k = r_ws(r)) < 0 || (k = r_digits(r, &t)) < 0 ||
      (k = r_char(r, ',')) < 0 || (k = r_ws(r)) < 0 ||
      (k = r_digits(r, &s)) < 0 || (k = r_char(r, ',')) < 0) {
    if (k == PT_BAD) m->why = "bad json envelope";
    return k;
  }
  if (t < 1 || t > 4 || s < INT32_MIN || s > UINT32_MAX) {
    m->why = "bad json envelope";
    return PT_BAD;
  }
  m->mtype = (int)t;
  m->seqid = (int32_t)(uint32_t)s;
  return (int)r->i;
}
