/*
 * lpt_codec.c — the table walkers: Lua values to Thrift and back, driven
 * by the C plans of pt_plan.h (Kitex's FastWrite / FastRead / BLength for
 * Lua). One walker serves every protocol; the protocol is chosen per call
 * ({protocol = "compact"}; Binary by default) and the wire bytes are
 * written and read by pt_thrift.h's readers and writers, never here.
 *
 * Encoding writes straight into pool blocks of the state's scratch buffer
 * (a single pass; large strings become no-copy links when the target is a
 * buffer); the result becomes one string, or its blocks move to the
 * target buffer (a small message is copied into the target's last block
 * instead, so replies pack together). Type errors raise with the full
 * path. Decoding checks every length against the bytes present before
 * allocating, preallocates tables from a budget the size of the input,
 * caps nesting and returns nil, "path: problem at offset N" on bad input.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lpt_codec.h"
#include "../pt_json.h"
#include "../pt_xform.h"

/* What one Lua table or string can hold: decoding more is an error, not a
 * raise from inside the VM. */
#if LPT_LUAJIT
#define LPT_MAX_ELEMS (1 << 27)   /* LJ_MAX_ASIZE - 1 */
#define LPT_MAX_ENTRIES (1 << 26) /* 1 << LJ_MAX_HBITS */
#define LPT_MAX_STRING 0x7fffff00 /* LJ_MAX_STR */
#else
#define LPT_MAX_ENTRIES (1 << 30) /* 1 << MAXHBITS */
#endif

/* Encoded messages up to this size are copied into the target buffer's
 * last block (replies pack into one block, one iovec); larger ones move
 * their blocks there without a copy. */
#define LPT_COPY_MAX 4096

const char lpt_unknown_key = 0;

/* ---- path stack for messages ----------------------------------------- */

typedef struct path_ent {
  const pt_plan *plan; /* struct frame: plan and field */
  int field;           /* fields[] index, -1 before one is known */
  int kind;            /* 0 struct, 1 element, 2 map key, 3 map value */
  int keyidx;          /* map value: stack index of its key, 0 if none */
  int64_t index;       /* element index (1-based) */
  const struct mkey *mk; /* or its sorted key (keyidx 0), kind mksk */
  int mksk;
} path_ent;

enum { M_STRING, M_BUFFER, M_SIZE };

typedef struct Ctx {
  lua_State *L;
  lpt_State *S;
  int cx;         /* stack index of the context table's slots */
  int keys, defaults, enums;
  int list_mt, set_mt, map_mt, array_mt;
  int depth, max_depth;
  int proto;      /* PT_PROTO_* */
  int cpt;        /* proto == PT_PROTO_COMPACT */
  int json;       /* proto == PT_PROTO_JSON: the events below matter */
  /* decode */
  const unsigned char *base, *p, *end;
  int typed, enum_names, keep_unknown, i64str;
  size_t presize;     /* table slots decode may still preallocate */
  char err[400];
  /* encode */
  pt_wr wr;
  size_t link_min;    /* strings this long are links (buffer mode) */
  int mode;           /* M_* */
  int strict;         /* refuse table keys that are not fields */
  const char *prefix; /* a view's path: names the value at depth 0 */
  path_ent path[LPT_MAXDEPTH_LIMIT + 2]; /* not cleared per call */
  pt_jctx jc;     /* JSON: separators and key quoting (reset by set_proto) */
} Ctx;

/* A key for a path: ["name"], [5], [true]; other keys say nothing. */
static void path_key(lua_State *L, luaL_Buffer *b, int idx) {
  char tmp[64];
  int64_t i;
  switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
      size_t n;
      const char *s = lua_tolstring(L, idx, &n);
      luaL_addstring(b, "[\"");
      for (size_t k = 0; k < n && k < 40; k++) {
        unsigned char ch = (unsigned char)s[k];
        if (ch == '"' || ch == '\\') {
          luaL_addchar(b, '\\');
          luaL_addchar(b, (char)ch);
        } else if (ch < 0x20 || ch == 0x7f) {
          snprintf(tmp, sizeof tmp, "\\%d", ch);
          luaL_addstring(b, tmp);
        } else {
          luaL_addchar(b, (char)ch);
        }
      }
      luaL_addstring(b, n > 40 ? "...\"]" : "\"]");
      return;
    }
    case LUA_TBOOLEAN:
      luaL_addstring(b, lua_toboolean(L, idx) ? "[true]" : "[false]");
      return;
    case LUA_TNUMBER:
      if (lpt_toi64(L, idx, &i))
        snprintf(tmp, sizeof tmp, "[%lld]", (long long)i);
      else
        snprintf(tmp, sizeof tmp, "[%.17g]", (double)lua_tonumber(L, idx));
      luaL_addstring(b, tmp);
      return;
    default:
      if (lpt_toi64(L, idx, &i)) { /* LuaJIT int64 cdata */
        snprintf(tmp, sizeof tmp, "[%lld]", (long long)i);
        luaL_addstring(b, tmp);
        return;
      }
      luaL_addstring(b, "[?]");
  }
}

static void path_mkey(luaL_Buffer *b, const struct mkey *m, int sk);

static void path_format(Ctx *c, luaL_Buffer *b) {
  for (int i = 0; i <= c->depth && i <= LPT_MAXDEPTH_LIMIT; i++) {
    path_ent *e = &c->path[i];
    char tmp[64];
    if (e->kind == 0) {
      if (i == 0) luaL_addstring(b, c->prefix ? c->prefix : e->plan->name);
      if (e->field >= 0) {
        luaL_addchar(b, '.');
        luaL_addstring(b, e->plan->fields[e->field].name);
      }
    } else if (e->kind == 1) {
      snprintf(tmp, sizeof tmp, "[%lld]", (long long)e->index);
      luaL_addstring(b, tmp);
    } else if (e->kind == 3 && e->keyidx) {
      path_key(c->L, b, e->keyidx);
    } else if (e->kind == 3 && e->mk) {
      path_mkey(b, e->mk, e->mksk);
    } else {
      snprintf(tmp, sizeof tmp, "<%s #%lld>", e->kind == 2 ? "key" : "value",
               (long long)e->index);
      luaL_addstring(b, tmp);
    }
  }
}

/* Encode errors raise: "Path: message". */
static int enc_error(Ctx *c, const char *fmt, ...) {
  lua_State *L = c->L;
  luaL_Buffer b;
  char msg[200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  luaL_buffinit(L, &b);
  path_format(c, &b);
  luaL_addstring(&b, ": ");
  luaL_addstring(&b, msg);
  luaL_pushresult(&b);
  return lua_error(L);
}

/* Decode errors are recorded; the caller unwinds and returns nil, err. */
static int dec_error(Ctx *c, const char *fmt, ...) {
  if (c->err[0]) return -1;
  lua_State *L = c->L;
  char msg[200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  path_format(c, &b);
  luaL_pushresult(&b);
  size_t pl;
  const char *path = lua_tolstring(L, -1, &pl);
  char tail[240];
  int tl = snprintf(tail, sizeof tail, ": %s at offset %lld", msg,
                    (long long)(c->p - c->base));
  if (tl < 0 || (size_t)tl >= sizeof tail) tl = (int)sizeof tail - 1;
  /* a deep path loses its middle; the problem and the offset stay */
  size_t room = sizeof c->err - 1 - (size_t)tl;
  if (pl <= room) {
    snprintf(c->err, sizeof c->err, "%s%s", path, tail);
  } else {
    int head = (int)(room / 3), keep = (int)(room - (size_t)head - 3);
    snprintf(c->err, sizeof c->err, "%.*s...%s%s", head, path,
             path + pl - (size_t)keep, tail);
  }
  lua_pop(L, 1);
  return -1;
}

/* ---- writer ----------------------------------------------------------- */

static inline void w_need(Ctx *c, size_t n) {
  if (pt_wr_need(&c->wr, n) != 0) luaL_error(c->L, "out of memory");
}

/* A JSON writer's answer (pt_json.h): it fails only when it cannot grow. */
#define JW(c, x)                                           \
  do {                                                     \
    if ((x) != 0) luaL_error((c)->L, "out of memory");    \
  } while (0)

/* The state's scratch buffer, empty (an encode that raised left bytes,
 * links or a reservation in it: they go now). */
static pt_buf *scratch(lpt_State *S) {
  if (!S->wb_ready) {
    pt_buf_init(&S->wb, S->pool);
    S->wb_ready = 1;
  } else if (S->wb.len || S->wb.resv_from) {
    pt_buf_clear(&S->wb);
  }
  return &S->wb;
}

void lpt_state_free(lpt_State *S) {
#if LPT_LUAJIT
  free(S->fixv);
  free(S->fixi);
  S->fixv = NULL;
  S->fixi = NULL;
  S->fix_cap = 0;
#endif
  if (S->wb_ready) pt_buf_free(&S->wb);
  S->wb_ready = 0;
  free(S->ubuf);
  S->ubuf = NULL;
  S->ucap = S->ulen = 0;
}

/* A string / binary value: its length prefix, then its bytes (copied, or
 * linked when long enough and the target is a buffer). */
static void w_bytes(Ctx *c, int idx, const char *s, size_t n) {
  if (n > INT32_MAX) enc_error(c, "string of %zu bytes is too long", n);
  w_need(c, PT_MAX_LEN);
  if (c->cpt)
    c->wr.w = pt_wr_varint32(c->wr.w, (uint32_t)n);
  else
    pt_st32(c->wr.w, (uint32_t)n), c->wr.w += 4;
  if (n >= c->link_min) {
    if (c->mode == M_SIZE) {
      c->wr.done += n;
      return;
    }
    lpt_State *S = c->S;
    if (pt_wr_link(&c->wr, s, n, lpt_release_anchor, S, lpt_anchor(c->L, idx)))
      luaL_error(c->L, "out of memory");
    return;
  }
  w_need(c, n);
  memcpy(c->wr.w, s, n);
  c->wr.w += n;
}

/* ---- encode ----------------------------------------------------------- */

static void enc_value(Ctx *c, const pt_type *t, int idx);

/* Decimal text of an i64 (how int64_as_string gives large values). */
static int parse_i64(const char *s, size_t n, int64_t *out) {
  size_t i = 0;
  int neg = 0;
  if (n && (s[0] == '-' || s[0] == '+')) neg = s[0] == '-', i = 1;
  if (i >= n || n - i > 19) return 0;
  uint64_t v = 0;
  for (; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return 0;
    v = v * 10 + (uint64_t)(s[i] - '0');
  }
  if (neg ? v > (uint64_t)INT64_MAX + 1 : v > (uint64_t)INT64_MAX) return 0;
  *out = neg ? (int64_t)(0 - v) : (int64_t)v;
  return 1;
}

static int64_t enc_int(Ctx *c, int idx, int64_t lo, int64_t hi,
                       const char *what) {
  int64_t v;
  lua_State *L = c->L;
  if (!lpt_toi64(L, idx, &v)) {
    int t = lua_type(L, idx);
    if (t == LUA_TNUMBER) {
      double d = (double)lua_tonumber(L, idx);
      if (d == floor(d)) /* integral, past int64 */
        enc_error(c, "value %.17g out of range for %s", d, what);
      enc_error(c, "%s expected, got non-integral number", what);
    }
    size_t n;
    const char *s;
    if (t == LUA_TSTRING && lo == INT64_MIN && hi == INT64_MAX &&
        (s = lua_tolstring(L, idx, &n)) && parse_i64(s, n, &v))
      return v;
    enc_error(c, "%s expected, got %s", what, luaL_typename(L, idx));
  }
  if (v < lo || v > hi)
    enc_error(c, "value %lld out of range for %s", (long long)v, what);
  return v;
}

static int32_t enc_enum(Ctx *c, const pt_type *t, int idx) {
  lua_State *L = c->L;
  if (lua_type(L, idx) == LUA_TSTRING) {
    lua_rawgeti(L, c->enums, t->aux + 1);
    lua_rawgeti(L, -1, 2); /* name -> value */
    lua_pushvalue(L, idx);
    lua_rawget(L, -2);
    if (lua_isnil(L, -1))
      enc_error(c, "unknown enum name '%s'", lua_tostring(L, idx));
    int32_t v = (int32_t)lua_tointeger(L, -1);
    lua_pop(L, 3);
    return v;
  }
  return (int32_t)enc_int(c, idx, INT32_MIN, INT32_MAX, "enum (i32)");
}

static int hexval(int ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

static void enc_uuid(Ctx *c, int idx) {
  size_t n;
  if (lua_type(c->L, idx) != LUA_TSTRING)
    enc_error(c, "uuid expected, got %s", luaL_typename(c->L, idx));
  const char *s = lua_tolstring(c->L, idx, &n);
  if (c->json) { /* the text, lower case */
    static const char hx[] = "0123456789abcdef";
    char txt[36];
    unsigned char u[16];
    if (n == 16) {
      memcpy(u, s, 16);
    } else {
      if (n != 36) enc_error(c, "uuid must be 36 characters or 16 bytes");
      for (int i = 0, k = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
          if (s[i] != '-') enc_error(c, "malformed uuid '%s'", s);
          continue;
        }
        int h = hexval((unsigned char)s[i]), l = hexval((unsigned char)s[i + 1]);
        if (h < 0 || l < 0) enc_error(c, "malformed uuid '%s'", s);
        u[k++] = (unsigned char)(h << 4 | l);
        i++;
      }
    }
    for (int i = 0, k = 0; i < 16; i++) {
      if (i == 4 || i == 6 || i == 8 || i == 10) txt[k++] = '-';
      txt[k++] = hx[u[i] >> 4];
      txt[k++] = hx[u[i] & 15];
    }
    JW(c, pt_json_wr_string(&c->wr, &c->jc, txt, 36));
    return;
  }
  w_need(c, 16);
  if (n == 16) {
    memcpy(c->wr.w, s, 16);
    c->wr.w += 16;
    return;
  }
  if (n != 36) enc_error(c, "uuid must be 36 characters or 16 bytes");
  unsigned char out[16];
  int k = 0;
  for (size_t i = 0; i < 36; i++) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-') enc_error(c, "malformed uuid '%s'", s);
      continue;
    }
    int h = hexval((unsigned char)s[i]), l = hexval((unsigned char)s[i + 1]);
    if (h < 0 || l < 0) enc_error(c, "malformed uuid '%s'", s);
    out[k++] = (unsigned char)(h << 4 | l);
    i++;
  }
  memcpy(c->wr.w, out, 16);
  c->wr.w += 16;
}

/* Integers of width 2, 4, 8 (and enums) in the call's protocol. */
__attribute__((always_inline)) static inline void w_int(Ctx *c, int w,
                                                         int64_t v) {
  if (__builtin_expect(c->json, 0)) {
    JW(c, pt_json_wr_int(&c->wr, &c->jc, v));
    return;
  }
  w_need(c, PT_MAX_VARINT);
  unsigned char *p = c->wr.w;
  if (c->cpt) {
    /* the branch-free writer (10 bytes of room made above) */
    c->wr.w = pt_wr_varint64_fast(p, w == 8 ? pt_zz64(v) : pt_zz32((int32_t)v));
    return;
  }
  if (w == 2)
    pt_st16(p, (uint16_t)v);
  else if (w == 4)
    pt_st32(p, (uint32_t)v);
  else
    pt_st64(p, (uint64_t)v);
  c->wr.w = p + w;
}

static void enc_scalar(Ctx *c, const pt_type *t, int idx) {
  lua_State *L = c->L;
  switch (t->kind) {
    case PT_K_BOOL: {
      if (lua_type(L, idx) != LUA_TBOOLEAN)
        enc_error(c, "boolean expected, got %s", luaL_typename(L, idx));
      int b = lua_toboolean(L, idx);
      if (c->json) {
        JW(c, pt_json_wr_bool(&c->wr, &c->jc, b));
        return;
      }
      w_need(c, 1);
      *c->wr.w++ = (unsigned char)(c->cpt ? (b ? PT_CT_TRUE : PT_CT_FALSE) : b);
      return;
    }
    case PT_K_I8: {
      int64_t v = enc_int(c, idx, -128, 127, "i8");
      if (c->json) {
        JW(c, pt_json_wr_int(&c->wr, &c->jc, v));
        return;
      }
      w_need(c, 1);
      *c->wr.w++ = (unsigned char)(uint8_t)v;
      return;
    }
    case PT_K_I16:
      w_int(c, 2, enc_int(c, idx, INT16_MIN, INT16_MAX, "i16"));
      return;
    case PT_K_I32:
      w_int(c, 4, enc_int(c, idx, INT32_MIN, INT32_MAX, "i32"));
      return;
    case PT_K_ENUM:
      w_int(c, 4, enc_enum(c, t, idx));
      return;
    case PT_K_I64:
      w_int(c, 8, enc_int(c, idx, INT64_MIN, INT64_MAX, "i64"));
      return;
    case PT_K_DOUBLE: {
      if (lua_type(L, idx) != LUA_TNUMBER)
        enc_error(c, "number expected, got %s", luaL_typename(L, idx));
      double d = (double)lua_tonumber(L, idx);
      if (c->json) {
        JW(c, pt_json_wr_double(&c->wr, &c->jc, d));
        return;
      }
      uint64_t u;
      memcpy(&u, &d, 8);
      w_need(c, 8);
      if (c->cpt)
        pt_st64le(c->wr.w, u);
      else
        pt_st64(c->wr.w, u);
      c->wr.w += 8;
      return;
    }
    case PT_K_STRING:
    case PT_K_BINARY: {
      if (lua_type(L, idx) != LUA_TSTRING)
        enc_error(c, "string expected, got %s", luaL_typename(L, idx));
      size_t n;
      const char *s = lua_tolstring(L, idx, &n);
      if (c->json) {
        JW(c, t->kind == PT_K_BINARY ? pt_json_wr_base64(&c->wr, &c->jc, s, n)
                                     : pt_json_wr_string(&c->wr, &c->jc, s, n));
        return;
      }
      w_bytes(c, idx, s, n);
      return;
    }
    case PT_K_UUID:
      enc_uuid(c, idx);
      return;
  }
}

static void push_frame(Ctx *c, int kind, const pt_plan *plan) {
  if (c->depth + 1 >= c->max_depth)
    enc_error(c, "nesting deeper than %d", c->max_depth);
  c->depth++;
  path_ent *e = &c->path[c->depth];
  e->kind = kind;
  e->plan = plan;
  e->field = -1;
  e->keyidx = 0;
  e->mk = NULL;
  e->index = 0;
}

/* Kept unknown fields (Binary bytes): verbatim in Binary, rewritten field
 * by field in Compact after the known ones (*last: the previous id). */
static void enc_unknown(Ctx *c, const char *u, size_t n, int *last) {
  if (c->proto == PT_PROTO_BINARY) {
    w_need(c, n);
    memcpy(c->wr.w, u, n);
    c->wr.w += n;
    return;
  }
  const unsigned char *p = (const unsigned char *)u, *end = p + n;
  while (p < end) {
    int ft, id = 0;
    int k = pt_bin_rd_field(p, (size_t)(end - p), &ft, &id);
    if (k < 0 || ft == PT_T_STOP) break;
    p += k;
    ptrdiff_t m = pt_transcode_field(PT_PROTO_BINARY, p, (size_t)(end - p), ft,
                                     id, 0, c->proto, &c->wr, last,
                                     LPT_MAXDEPTH_LIMIT, NULL, &c->jc);
    if (m == PT_NOMEM) luaL_error(c->L, "out of memory");
    if (m < 0) enc_error(c, "kept unknown fields are malformed");
    p += m;
  }
}

/* strict = true: every key of the table at idx must name a field (or be
 * petrel.unknown); known: how many fields were found in it. */
static void enc_strict(Ctx *c, const pt_plan *p, int idx, int known) {
  lua_State *L = c->L;
  int n = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    n++;
  }
  lua_pushlightuserdata(L, (void *)&lpt_unknown_key);
  lua_rawget(L, idx);
  if (!lua_isnil(L, -1)) known++;
  lua_pop(L, 1);
  if (n == known) return;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    int found = lua_type(L, -1) == LUA_TLIGHTUSERDATA &&
                lua_touserdata(L, -1) == (void *)&lpt_unknown_key;
    for (int k = 0; k < p->nfields && !found; k++) {
      lua_rawgeti(L, c->keys, p->key_base + p->fields[k].index + 1);
      found = lua_rawequal(L, -1, -2);
      lua_pop(L, 1);
    }
    if (!found) {
      if (lua_type(L, -1) == LUA_TSTRING)
        enc_error(c, "'%s' is not a field of %s", lua_tostring(L, -1),
                  p->name);
      enc_error(c, "a %s key is not a field of %s", luaL_typename(L, -1),
                p->name);
    }
  }
}

/* A message view where a struct or container goes: its bytes are copied
 * (linked when long and the target is a buffer), never decoded. 1 when
 * idx held a view of the right type, 0 when it is no view; raises with
 * the path otherwise. */
static int enc_view(Ctx *c, int idx, const pt_plan *p, const pt_type *t) {
  char err[200];
  size_t lm = c->mode == M_BUFFER ? c->link_min : SIZE_MAX;
  int r = lpt_view_write(c->L, idx, p, t, &c->wr, c->proto, lm, err,
                         sizeof err);
  if (r < 0) enc_error(c, "%s", err);
  return r;
}

static void enc_struct(Ctx *c, const pt_plan *p, int idx) {
  lua_State *L = c->L;
  if (lua_type(L, idx) != LUA_TTABLE) {
    if (lua_type(L, idx) == LUA_TUSERDATA && enc_view(c, idx, p, NULL))
      return;
    enc_error(c, "table expected for %s, got %s", p->name,
              luaL_typename(L, idx));
  }
  /* each field's value stays on the stack until the end (one settop) */
  luaL_checkstack(L, p->nfields + 8, "petrel: nesting too deep");
  int top = lua_gettop(L);
  path_ent *e = &c->path[c->depth];
  e->kind = 0;
  e->plan = p;
  int nset = 0, present = 0, last = 0;
  if (c->json) JW(c, pt_json_wr_struct_begin(&c->wr, &c->jc));
  /* fields[] is in ascending id order: the wire order */
  for (int k = 0; k < p->nfields; k++) {
    const pt_field *f = &p->fields[k];
    e->field = k;
    lua_rawgeti(L, c->keys, p->key_base + f->index + 1);
    if (lpt_rawget(L, idx) == LUA_TNIL) {
      if (f->has_default && f->req != PT_REQ_OPTIONAL) {
        lua_rawgeti(L, c->defaults, p->key_base + f->index + 1);
      } else {
        if (f->req == PT_REQ_REQUIRED) enc_error(c, "required field missing");
        continue;
      }
    } else {
      present++;
    }
    nset++;
    const pt_type *ft = f->type;
    int v = lua_gettop(L);
    w_need(c, PT_MAX_FIELD);
    if (c->proto == PT_PROTO_BINARY) {
      c->wr.w = pt_bin_wr_field(c->wr.w, ft->ttype, f->id);
    } else if (c->json) { /* "id":{"type":value} */
      JW(c, pt_json_wr_field_begin(&c->wr, &c->jc, f->id, ft->ttype));
      enc_value(c, ft, v);
      JW(c, pt_json_wr_field_end(&c->wr, &c->jc));
      continue;
    } else if (ft->kind == PT_K_BOOL) { /* the value goes in the header */
      if (lua_type(L, v) != LUA_TBOOLEAN)
        enc_error(c, "boolean expected, got %s", luaL_typename(L, v));
      c->wr.w = pt_cpt_wr_field(c->wr.w, PT_T_BOOL, f->id, &last,
                                lua_toboolean(L, v));
      continue;
    } else {
      c->wr.w = pt_cpt_wr_field(c->wr.w, ft->ttype, f->id, &last, 0);
    }
    enc_value(c, ft, v);
  }
  e->field = -1;
  if (p->kind == PT_PLAN_UNION && nset > 1)
    enc_error(c, "union %s has %d fields set, at most one allowed", p->name,
              nset);
  if (c->strict) enc_strict(c, p, idx, present);
  lua_pushlightuserdata(L, (void *)&lpt_unknown_key);
  if (lpt_rawget(L, idx) == LUA_TSTRING) { /* kept unknown fields */
    size_t n;
    const char *u = lua_tolstring(L, -1, &n);
    enc_unknown(c, u, n, &last);
  }
  lua_settop(L, top);
  if (c->json) {
    JW(c, pt_json_wr_struct_end(&c->wr, &c->jc));
    return;
  }
  w_need(c, 1);
  *c->wr.w++ = PT_T_STOP;
}

/* A list / set header in the call's protocol. */
static inline void w_list(Ctx *c, int et, uint32_t n) {
  if (c->json) {
    JW(c, pt_json_wr_list_begin(&c->wr, &c->jc, et, n));
    return;
  }
  w_need(c, PT_MAX_LIST);
  c->wr.w = c->cpt ? pt_cpt_wr_list(c->wr.w, et, n)
                   : pt_bin_wr_list(c->wr.w, et, n);
}

/* n native values of width w at nat, already in the region, become the
 * list body at c->wr.w (nat is at or after c->wr.w + n * (ZZ_MAX - w) in
 * Compact, at c->wr.w in Binary). */
static void w_native(Ctx *c, const unsigned char *nat, size_t n, int w,
                     int is_double) {
  if (w == 1 || (c->cpt && is_double)) { /* bytes, or LE doubles */
    if (nat != c->wr.w) memmove(c->wr.w, nat, n * (size_t)w);
    c->wr.w += n * (size_t)w;
  } else if (c->cpt) {
    c->wr.w += pt_zz_encode(c->wr.w, nat, n, w);
  } else {
    pt_bswap_copy(c->wr.w, nat, n, w);
    c->wr.w += n * (size_t)w;
  }
}

/* Room for a numeric list body of n values of width w. */
static size_t body_room(Ctx *c, size_t n, int w, int is_double) {
  size_t per = c->cpt && !is_double && w > 1 ? PT_ZZ_MAX(w) : (size_t)w;
  if (n > (SIZE_MAX / 2) / per) luaL_error(c->L, "list too large");
  return n * per;
}

/* Typed array as a list/set body of elem type et. */
static int enc_array(Ctx *c, const pt_type *et, int idx) {
  lpt_Array *a = lua_touserdata(c->L, idx);
  if (!a || !lua_getmetatable(c->L, idx)) return 0;
  int ok = lua_rawequal(c->L, -1, c->array_mt);
  lua_pop(c->L, 1);
  if (!ok) return 0;
  if (a->kind != lpt_ar_kind_of(et->kind))
    enc_error(c, "petrel.array<%s> given for list<%s>", lpt_ar_names[a->kind],
              pt_kind_names[et->kind]);
  if (a->n > INT32_MAX) enc_error(c, "too many elements");
  int w = lpt_ar_width[a->kind];
  w_list(c, et->ttype, (uint32_t)a->n);
  if (c->json) { /* element by element */
    for (size_t i = 0; i < a->n; i++) {
      const unsigned char *q = a->data + i * (size_t)w;
      if (a->kind == AR_DOUBLE) {
        double d;
        memcpy(&d, q, 8);
        JW(c, pt_json_wr_double(&c->wr, &c->jc, d));
        continue;
      }
      int64_t v;
      if (w == 1) v = (int8_t)q[0];
      else if (w == 2) { int16_t x; memcpy(&x, q, 2); v = x; }
      else if (w == 4) { int32_t x; memcpy(&x, q, 4); v = x; }
      else memcpy(&v, q, 8);
      JW(c, pt_json_wr_int(&c->wr, &c->jc, v));
    }
    JW(c, pt_json_wr_list_end(&c->wr, &c->jc));
    return 1;
  }
  w_need(c, body_room(c, a->n, w, a->kind == AR_DOUBLE));
  w_native(c, a->data, a->n, w, a->kind == AR_DOUBLE);
  return 1;
}

/* The loop of enc_numeric_list, inlined twice: zz a constant (Compact
 * integers as varints at d, or native values at start). Returns the end
 * of the varints. */
__attribute__((always_inline)) static inline unsigned char *enc_numeric_fill(
    Ctx *c, int k, int idx, size_t n, unsigned char *start, unsigned char *d,
    const int zz) {
  lua_State *L = c->L;
  int dbl = k == PT_K_DOUBLE;
  path_ent *e = &c->path[c->depth];
#define PUT_INT(i, v, W)                                            \
  do {                                                             \
    if (zz)                                                        \
      d = pt_wr_varint64_fast(d, (W) == 64 ? pt_zz64(v) : pt_zz32((int32_t)(v))); \
    else {                                                         \
      int##W##_t x_ = (int##W##_t)(v);                             \
      memcpy(start + (i) * ((W) / 8), &x_, (W) / 8);               \
    }                                                              \
  } while (0)
  /* Values are fetched in batches of up to 16 and popped together. */
  luaL_checkstack(L, 17, "petrel: stack");
  for (size_t base = 0; base < n; base += 16) {
    size_t m = n - base < 16 ? n - base : 16;
    for (size_t j = 0; j < m; j++) {
      size_t i = base + j;
      int vt = lpt_rawgeti(L, idx, (lua_Integer)(i + 1));
#if !LPT_LUAJIT
      if (vt == LUA_TNUMBER && !dbl) {
        int ok;
        lua_Integer iv = lua_tointegerx(L, -1, &ok);
        if (ok) {
          if (k == PT_K_I64) {
            PUT_INT(i, iv, 64);
            continue;
          } else if (k == PT_K_I32 && iv >= INT32_MIN && iv <= INT32_MAX) {
            PUT_INT(i, iv, 32);
            continue;
          } else if (k == PT_K_I16 && iv >= INT16_MIN && iv <= INT16_MAX) {
            PUT_INT(i, iv, 16);
            continue;
          }
        }
      }
#else
      if (vt == LUA_TNUMBER && !dbl) {
        double dv = (double)lua_tonumber(L, -1);
        if (k == PT_K_I64 && dv >= -9007199254740992.0 &&
            dv <= 9007199254740992.0 && dv == (double)(int64_t)dv) {
          PUT_INT(i, (int64_t)dv, 64);
          continue;
        }
      }
#endif
      e->index = (int64_t)i + 1;
      if (dbl) {
        if (vt != LUA_TNUMBER)
          enc_error(c, "number expected, got %s", luaL_typename(L, -1));
        double dv = (double)lua_tonumber(L, -1);
        memcpy(start + i * 8, &dv, 8);
      } else if (k == PT_K_I64) {
        int64_t v = enc_int(c, -1, INT64_MIN, INT64_MAX, "i64");
        PUT_INT(i, v, 64);
      } else if (k == PT_K_I32) {
        int32_t v = (int32_t)enc_int(c, -1, INT32_MIN, INT32_MAX, "i32");
        PUT_INT(i, v, 32);
      } else {
        int16_t v = (int16_t)enc_int(c, -1, INT16_MIN, INT16_MAX, "i16");
        PUT_INT(i, v, 16);
      }
    }
    lua_pop(L, (int)m);
  }
#undef PUT_INT
  return d;
}

/* Numeric list from a Lua array. Binary: values land native in the
 * region, then one byte-swapping pass. Compact: each integer goes out as
 * a zigzag varint as it is read (the branch-free writer, in the same loop
 * as the Lua reads); doubles land as they are (little-endian). LuaJIT
 * fills native values through one FFI loop, then one pass. */
static int enc_numeric_list(Ctx *c, const pt_type *et, int idx, size_t n) {
  int k = et->kind;
  int w = (int)pt_kind_width(k);
  if (k != PT_K_I64 && k != PT_K_I32 && k != PT_K_I16 && k != PT_K_DOUBLE)
    return 0;
  if (c->json) return 0; /* value by value */
  int dbl = k == PT_K_DOUBLE;
  int zz = c->cpt && !dbl; /* varints written as read */
  size_t room = body_room(c, n, w, dbl) + (zz ? 16 : 0);
  w_need(c, room);
  unsigned char *start = c->wr.w + (room - n * (size_t)w);
#if LPT_LUAJIT
  if (n >= 16) {
    /* one JIT-compiled FFI loop fills native values; on a bad element the
     * loop below reports it */
    lua_State *L = c->L;
    static const double lo[] = {[2] = -32768.0, [4] = -2147483648.0,
                                [8] = -9223372036854775808.0};
    static const double hi[] = {[2] = 32768.0, [4] = 2147483648.0,
                                [8] = 9223372036854775808.0};
    int kind = dbl ? 9 : w;
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->S->num_fill);
    lua_pushvalue(L, idx);
    lua_pushlightuserdata(L, start);
    lua_pushinteger(L, (lua_Integer)n);
    lua_pushinteger(L, kind);
    lua_pushnumber(L, kind == 9 ? 0 : lo[w]);
    lua_pushnumber(L, kind == 9 ? 0 : hi[w]);
    lua_call(L, 6, 1);
    lua_Integer bad = lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (bad == 0) {
      w_native(c, start, n, w, dbl);
      return 1;
    }
  }
#endif
  if (zz)
    c->wr.w = enc_numeric_fill(c, k, idx, n, start, c->wr.w, 1);
  else
    enc_numeric_fill(c, k, idx, n, start, NULL, 0), w_native(c, start, n, w, dbl);
  return 1;
}

/* ---- sorted keys (maps, sets in key form) ------------------------------ */

/* Keys are written in ascending order when they are all of one sortable
 * kind: the output is then deterministic (the same on Lua 5.4 and
 * LuaJIT, and the order C++'s std::map / std::set give). */
enum { SK_NONE, SK_STR, SK_INT, SK_NUM, SK_BOOL };

typedef struct mkey {
  const char *s;  /* SK_STR */
  size_t n;
  int64_t i;      /* SK_INT (SK_BOOL: 0 / 1) */
  double d;       /* SK_NUM */
  const char *vs; /* string value, kept when the map's values are strings */
  size_t vn;
  int pos;        /* iteration order: the key in the aux table */
} mkey;

static int cmp_str(const void *a, const void *b) {
  const mkey *x = a, *y = b;
  size_t m = x->n < y->n ? x->n : y->n;
  int r = memcmp(x->s, y->s, m);
  if (r) return r;
  return (x->n > y->n) - (x->n < y->n);
}

/* the integer map key comparison (also bool keys, false < true) */
static int cmp_int(const void *a, const void *b) {
  const mkey *x = a, *y = b;
  return (x->i > y->i) - (x->i < y->i);
}

static int cmp_num(const void *a, const void *b) {
  const mkey *x = a, *y = b;
  return (x->d > y->d) - (x->d < y->d);
}

/* How keys of kind k sort. */
static int sort_kind(int k) {
  switch (k) {
    case PT_K_STRING:
    case PT_K_BINARY:
    case PT_K_UUID: return SK_STR;
    case PT_K_I8:
    case PT_K_I16:
    case PT_K_I32:
    case PT_K_I64:
    case PT_K_ENUM: return SK_INT;
    case PT_K_DOUBLE: return SK_NUM;
    case PT_K_BOOL: return SK_BOOL;
    default: return SK_NONE;
  }
}

/* Take the key at -1 (sorted as sk) into m; 0 if it is not of that kind. */
static int key_of(Ctx *c, int sk, int kk, mkey *m, int *cdata) {
  lua_State *L = c->L;
  int t = lua_type(L, -1);
  switch (sk) {
    case SK_STR:
      if (t != LUA_TSTRING) return 0;
      m->s = lua_tolstring(L, -1, &m->n);
      return 1;
    case SK_INT:
      if (lpt_toi64(L, -1, &m->i)) {
#if LPT_LUAJIT
        if (t != LUA_TNUMBER) *cdata = 1; /* int64 cdata key */
#endif
        return 1;
      }
      if (t == LUA_TSTRING && kk == PT_K_I64) { /* int64_as_string */
        size_t n;
        const char *s = lua_tolstring(L, -1, &n);
        if (parse_i64(s, n, &m->i)) {
          *cdata = 1; /* fetched back by identity */
          return 1;
        }
      }
      return 0;
    case SK_NUM:
      if (t != LUA_TNUMBER) return 0;
      m->d = (double)lua_tonumber(L, -1);
      if (m->d != m->d) enc_error(c, "NaN map key");
      return 1;
    case SK_BOOL:
      if (t != LUA_TBOOLEAN) return 0;
      m->i = lua_toboolean(L, -1);
      return 1;
  }
  (void)cdata;
  return 0;
}

/* Equal neighbours after sorting: one wire key twice (LuaJIT int64 cdata
 * keys of one value, "5" and 5 as i64 keys). */
static int same_key(int sk, const mkey *a, const mkey *b) {
  switch (sk) {
    case SK_STR: return a->n == b->n && memcmp(a->s, b->s, a->n) == 0;
    case SK_NUM: return a->d == b->d;
    default: return a->i == b->i;
  }
}

/* Collect the keys of the table at idx (n entries; set: only those whose
 * value is true) into a userdata array, sorted; pushes the array and,
 * when keys must be fetched back by identity, an aux table {pos -> key}.
 * Returns the array, NULL when the keys are not sortable (nothing left
 * pushed). */
static mkey *sorted_keys(Ctx *c, int idx, const pt_type *kt,
                         const pt_type *vt, size_t n, int set, int *aux,
                         size_t *count) {
  lua_State *L = c->L;
  int sk = sort_kind(kt->kind);
  if (sk == SK_NONE) return NULL;
  int strvals = vt && (vt->kind == PT_K_STRING || vt->kind == PT_K_BINARY);
  mkey *keys = lua_newuserdata(L, (n ? n : 1) * sizeof *keys);
  size_t i = 0;
  int cdata = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (set && lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
      lua_pop(L, 1); /* {[v] = false}: v is absent */
      continue;
    }
    keys[i].vs = NULL;
    if (strvals && lua_type(L, -1) == LUA_TSTRING)
      keys[i].vs = lua_tolstring(L, -1, &keys[i].vn);
    lua_pop(L, 1);
    if (!key_of(c, sk, kt->kind, &keys[i], &cdata)) {
      lua_pop(L, 2); /* key, keys */
      return NULL;
    }
    keys[i].pos = (int)i + 1;
    i++;
  }
  /* keys that cannot be pushed back by value (int64 cdata, i64 text) are
   * fetched by identity: a second walk, in the same order, keeps them */
  int auxi = 0;
  if (cdata) {
    lua_newtable(L);
    auxi = lua_gettop(L);
    int j = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      int skip = set && lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1);
      lua_pop(L, 1);
      if (skip) continue;
      lua_pushvalue(L, -1);
      lua_rawseti(L, auxi, ++j);
    }
  }
  int (*cmp)(const void *, const void *) =
      sk == SK_STR ? cmp_str : sk == SK_NUM ? cmp_num : cmp_int;
  qsort(keys, i, sizeof *keys, cmp);
  /* only keys of one wire value that Lua holds apart can repeat */
  for (size_t j = 1; cdata && j < i; j++)
    if (same_key(sk, &keys[j - 1], &keys[j])) {
      path_ent *e = &c->path[c->depth];
      e->index = (int64_t)j + 1;
      lua_rawgeti(L, auxi, keys[j].pos);
      e->kind = 3;
      e->keyidx = lua_gettop(L);
      enc_error(c, "duplicate key (two keys with one value)");
    }
  *aux = auxi;
  *count = i;
  return keys;
}

/* Push key j of a sorted array (by value, or from the aux table). */
static void push_key(Ctx *c, const mkey *m, int sk, int aux) {
  lua_State *L = c->L;
  if (aux) {
    lua_rawgeti(L, aux, m->pos);
  } else if (sk == SK_STR) {
    lua_pushlstring(L, m->s, m->n);
  } else if (sk == SK_NUM) {
    lua_pushnumber(L, m->d);
  } else if (sk == SK_BOOL) {
    lua_pushboolean(L, (int)m->i);
  } else {
    lpt_pushi64(L, m->i);
  }
}

/* A sorted key for a path, as path_key writes it. */
static void path_mkey(luaL_Buffer *b, const mkey *m, int sk) {
  char tmp[64];
  switch (sk) {
    case SK_STR: {
      luaL_addstring(b, "[\"");
      for (size_t k = 0; k < m->n && k < 40; k++) {
        unsigned char ch = (unsigned char)m->s[k];
        if (ch == '"' || ch == '\\') {
          luaL_addchar(b, '\\');
          luaL_addchar(b, (char)ch);
        } else if (ch < 0x20 || ch == 0x7f) {
          snprintf(tmp, sizeof tmp, "\\%d", ch);
          luaL_addstring(b, tmp);
        } else {
          luaL_addchar(b, (char)ch);
        }
      }
      luaL_addstring(b, m->n > 40 ? "...\"]" : "\"]");
      return;
    }
    case SK_NUM: snprintf(tmp, sizeof tmp, "[%.17g]", m->d); break;
    case SK_BOOL: snprintf(tmp, sizeof tmp, "[%s]", m->i ? "true" : "false"); break;
    default: snprintf(tmp, sizeof tmp, "[%lld]", (long long)m->i); break;
  }
  luaL_addstring(b, tmp);
}

/* Is the set table at idx in key form ({[v] = true})? A sequence holds
 * its elements as values; a key-form table holds booleans as values
 * (set<bool>: booleans as keys). */
static int set_keyform(lua_State *L, int idx, const pt_type *et, size_t n) {
  if (et->kind == PT_K_BOOL) {
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      int kb = lua_type(L, -2) == LUA_TBOOLEAN;
      lua_pop(L, 1);
      if (kb) {
        lua_pop(L, 1);
        return 1;
      }
    }
    return 0;
  }
  if (n) {
    int t = lpt_rawgeti(L, idx, 1);
    lua_pop(L, 1);
    return t == LUA_TBOOLEAN;
  }
  lua_pushnil(L);
  if (!lua_next(L, idx)) return 0;
  lua_pop(L, 2);
  return 1;
}

static void enc_keyset(Ctx *c, const pt_type *t, int idx) {
  lua_State *L = c->L;
  const pt_type *et = t->elem;
  size_t n = 0;
  push_frame(c, 1, NULL);
  path_ent *e = &c->path[c->depth];
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int vt = lua_type(L, -1);
    if (vt != LUA_TBOOLEAN) {
      e->kind = 3;
      e->keyidx = lua_gettop(L) - 1;
      enc_error(c, "set in key form: true or false expected, got %s",
                luaL_typename(L, -1));
    }
    n += (size_t)lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  if (n > INT32_MAX) enc_error(c, "too many elements");
  w_list(c, et->ttype, (uint32_t)n);
  int aux = 0;
  size_t count = 0;
  mkey *keys = sorted_keys(c, idx, et, NULL, n, 1, &aux, &count);
  if (keys) {
    int sk = sort_kind(et->kind);
    for (size_t i = 0; i < count; i++) {
      e->index = (int64_t)i + 1;
      push_key(c, &keys[i], sk, aux);
      enc_value(c, et, lua_gettop(L));
      lua_pop(L, 1);
    }
    lua_pop(L, aux ? 2 : 1); /* aux, keys */
  } else {
    int64_t i = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      int on = lua_toboolean(L, -1);
      lua_pop(L, 1);
      if (!on) continue;
      e->index = ++i;
      enc_value(c, et, lua_gettop(L));
    }
  }
  if (c->json) JW(c, pt_json_wr_list_end(&c->wr, &c->jc));
  c->depth--;
}

static void enc_list(Ctx *c, const pt_type *t, int idx) {
  lua_State *L = c->L;
  const pt_type *et = t->elem;
  if (lua_type(L, idx) == LUA_TUSERDATA &&
      (enc_array(c, et, idx) || enc_view(c, idx, NULL, t)))
    return;
  if (lua_type(L, idx) != LUA_TTABLE)
    enc_error(c, "table expected for %s<%s>, got %s", pt_kind_names[t->kind],
              pt_kind_names[et->kind], luaL_typename(L, idx));
  size_t n = lua_rawlen(L, idx);
  if (t->kind == PT_K_SET && set_keyform(L, idx, et, n)) {
    enc_keyset(c, t, idx);
    return;
  }
  if (n > INT32_MAX) enc_error(c, "too many elements");
  w_list(c, et->ttype, (uint32_t)n);
  push_frame(c, 1, NULL);
  if ((et->kind == PT_K_STRING || et->kind == PT_K_BINARY) && n && !c->json) {
    /* strings fetched 16 at a time and popped together */
    path_ent *e = &c->path[c->depth];
    luaL_checkstack(L, 17, "petrel: stack");
    for (size_t base = 0; base < n; base += 16) {
      size_t m = n - base < 16 ? n - base : 16;
      for (size_t j = 0; j < m; j++) {
        e->index = (int64_t)(base + j) + 1;
        if (lpt_rawgeti(L, idx, (lua_Integer)(base + j + 1)) != LUA_TSTRING)
          enc_error(c, "string expected, got %s", luaL_typename(L, -1));
        size_t len;
        const char *sv = lua_tolstring(L, -1, &len);
        w_bytes(c, lua_gettop(L), sv, len);
      }
      lua_pop(L, (int)m);
    }
  } else if (!enc_numeric_list(c, et, idx, n)) {
    path_ent *e = &c->path[c->depth];
    for (size_t i = 1; i <= n; i++) {
      e->index = (int64_t)i;
      lua_rawgeti(L, idx, (lua_Integer)i);
      if (lua_isnil(L, -1)) enc_error(c, "nil element in a sequence");
      enc_value(c, et, lua_gettop(L));
      lua_pop(L, 1);
    }
  }
  if (c->json) JW(c, pt_json_wr_list_end(&c->wr, &c->jc));
  c->depth--;
}

/* A length-prefixed string from C (the map<string,string> fast path). */
static inline void w_str(Ctx *c, const char *s, size_t n) {
  w_need(c, PT_MAX_LEN + n);
  if (c->cpt)
    c->wr.w = pt_wr_varint32(c->wr.w, (uint32_t)n);
  else
    pt_st32(c->wr.w, (uint32_t)n), c->wr.w += 4;
  memcpy(c->wr.w, s, n);
  c->wr.w += n;
}

static void enc_map(Ctx *c, const pt_type *t, int idx) {
  lua_State *L = c->L;
  if (lua_type(L, idx) == LUA_TUSERDATA && enc_view(c, idx, NULL, t)) return;
  if (lua_type(L, idx) != LUA_TTABLE)
    enc_error(c, "table expected for map, got %s", luaL_typename(L, idx));
  size_t n = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    n++;
  }
  if (n > INT32_MAX) enc_error(c, "too many entries");
  if (c->json) {
    JW(c, pt_json_wr_map_begin(&c->wr, &c->jc, t->elem->ttype, t->val->ttype,
                               (uint32_t)n));
  } else {
    w_need(c, PT_MAX_MAP);
    c->wr.w = c->cpt ? pt_cpt_wr_map(c->wr.w, t->elem->ttype, t->val->ttype,
                                     (uint32_t)n)
                     : pt_bin_wr_map(c->wr.w, t->elem->ttype, t->val->ttype,
                                     (uint32_t)n);
  }
  push_frame(c, 2, NULL);
  path_ent *e = &c->path[c->depth];
  int aux = 0;
  size_t count = 0;
  mkey *keys = n > 1 ? sorted_keys(c, idx, t->elem, t->val, n, 0, &aux, &count)
                     : NULL;
  if (keys) {
    int sk = sort_kind(t->elem->kind);
    int fast = sk == SK_STR && !aux && !c->json &&
               (t->val->kind == PT_K_STRING || t->val->kind == PT_K_BINARY);
    for (size_t i = 0; i < count; i++) {
      e->kind = 2;
      e->keyidx = 0;
      e->index = (int64_t)i + 1;
      if (fast && keys[i].vs && keys[i].n < c->link_min &&
          keys[i].vn < c->link_min && keys[i].n <= INT32_MAX &&
          keys[i].vn <= INT32_MAX) {
        /* map<string,string>: both sides known, no Lua calls needed */
        w_str(c, keys[i].s, keys[i].n);
        w_str(c, keys[i].vs, keys[i].vn);
        continue;
      }
      push_key(c, &keys[i], sk, aux);
      enc_value(c, t->elem, lua_gettop(L));
      lua_rawget(L, idx);
      e->kind = 3;
      e->mk = &keys[i];
      e->mksk = sk;
      enc_value(c, t->val, lua_gettop(L));
      e->mk = NULL;
      lua_pop(L, 1);
    }
    lua_pop(L, aux ? 2 : 1); /* aux, keys */
  } else {
    int64_t i = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      e->index = ++i;
      e->kind = 2;
      e->keyidx = 0;
      enc_value(c, t->elem, lua_gettop(L) - 1);
      e->kind = 3;
      e->keyidx = lua_gettop(L) - 1;
      enc_value(c, t->val, lua_gettop(L));
      lua_pop(L, 1);
    }
  }
  if (c->json) JW(c, pt_json_wr_map_end(&c->wr, &c->jc));
  e->keyidx = 0;
  c->depth--;
}

static void enc_value(Ctx *c, const pt_type *t, int idx) {
  switch (t->kind) {
    case PT_K_STRUCT:
      push_frame(c, 0, t->plan);
      enc_struct(c, t->plan, idx);
      c->depth--;
      return;
    case PT_K_LIST:
    case PT_K_SET:
      enc_list(c, t, idx);
      return;
    case PT_K_MAP:
      enc_map(c, t, idx);
      return;
    default:
      enc_scalar(c, t, idx);
  }
}

/* ---- decode ----------------------------------------------------------- */

static int dec_value(Ctx *c, const pt_type *t);

static inline size_t left(const Ctx *c) { return (size_t)(c->end - c->p); }

static inline int need(Ctx *c, size_t n) {
  if (left(c) < n)
    return dec_error(c, "need %zu bytes, %zu left", n, left(c));
  return 0;
}

/* A reader's answer that is not a length: the error. */
static int rd_fail(Ctx *c, int k, const char *what) {
  if (k == PT_NEED)
    return dec_error(c, "%s cut short (%zu bytes left)", what, left(c));
  return dec_error(c, "bad %s", what);
}

/* A JSON reader's answer (pt_json.h): the bytes it took, or the error. */
static inline int rd_json(Ctx *c, int k, const char *what) {
  if (k < 0) return rd_fail(c, k, what);
  c->p += k;
  return 0;
}

/* Slots to preallocate for a table that will get n: all of them while the
 * budget lasts, then what is left. The budget is the input's size, so
 * hostile input cannot make decode preallocate much more than it could
 * fill (counts that fail later, wide structs with few fields sent, lists
 * of lists each claiming the rest of the input); past it tables grow as
 * values arrive. */
static inline int presize(Ctx *c, size_t n) {
  if (n > c->presize) n = c->presize;
  c->presize -= n;
  return (int)n;
}

void lpt_push_uuid(lua_State *L, const unsigned char *u) {
  static const char hx[] = "0123456789abcdef";
  char out[36];
  int k = 0;
  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out[k++] = '-';
    out[k++] = hx[u[i] >> 4];
    out[k++] = hx[u[i] & 15];
  }
  lua_pushlstring(L, out, 36);
}

/* An i64 value: a number / integer, or (int64_as_string) its decimal
 * text when it is beyond 2^53. */
static inline void push_i64(Ctx *c, int64_t v) {
  if (c->i64str && (v > 9007199254740992LL || v < -9007199254740992LL)) {
    char tmp[24];
    int k = snprintf(tmp, sizeof tmp, "%lld", (long long)v);
    lua_pushlstring(c->L, tmp, (size_t)k);
    return;
  }
  lpt_pushi64(c->L, v);
}

static int dec_enum(Ctx *c, const pt_type *t, int32_t v) {
  lua_State *L = c->L;
  if (c->enum_names) {
    lua_rawgeti(L, c->enums, t->aux + 1);
    lua_rawgeti(L, -1, 1); /* value -> name */
    lua_rawgeti(L, -1, v);
    if (!lua_isnil(L, -1)) {
      lua_replace(L, -3);
      lua_pop(L, 1);
      return 0;
    }
    lua_pop(L, 3);
  }
  lua_pushinteger(L, v);
  return 0;
}

/* A JSON value of a scalar kind; pushes it. */
static int dec_json_scalar(Ctx *c, const pt_type *t) {
  lua_State *L = c->L;
  int64_t v = 0;
  int64_t lo = INT64_MIN, hi = INT64_MAX;
  switch (t->kind) {
    case PT_K_BOOL:
      if (rd_json(c, pt_json_rd_int(c->p, left(c), &c->jc, &v), "bool"))
        return -1;
      lua_pushboolean(L, v != 0);
      return 0;
    case PT_K_I8: lo = -128, hi = 127; break;
    case PT_K_I16: lo = INT16_MIN, hi = INT16_MAX; break;
    case PT_K_I32:
    case PT_K_ENUM: lo = INT32_MIN, hi = INT32_MAX; break;
    case PT_K_I64: break;
    case PT_K_DOUBLE: {
      double d;
      if (rd_json(c, pt_json_rd_double(c->p, left(c), &c->jc, &d), "double"))
        return -1;
      lua_pushnumber(L, d);
      return 0;
    }
    case PT_K_STRING:
    case PT_K_BINARY:
    case PT_K_UUID: {
      pt_jstr js;
      const unsigned char *at = c->p;
      if (rd_json(c, pt_json_rd_string(c->p, left(c), &c->jc, &js), "string"))
        return -1;
      const unsigned char *raw = at + js.at;
      size_t n = js.len;
      if (js.escaped) {
        unsigned char *tmp = lua_newuserdata(L, n ? n : 1);
        pt_json_unescape(raw, js.raw, tmp);
        raw = tmp;
      }
      if (t->kind == PT_K_STRING) {
        lua_pushlstring(L, (const char *)raw, n);
      } else if (t->kind == PT_K_BINARY) {
        unsigned char *out = lua_newuserdata(L, pt_json_b64_room(n));
        ptrdiff_t m = pt_json_b64_decode(raw, n, out);
        if (m < 0) return dec_error(c, "bad base64");
        lua_pushlstring(L, (const char *)out, (size_t)m);
        lua_remove(L, -2);
      } else {
        unsigned char u[16];
        int ok = n == 36;
        for (int i = 0, k = 0; ok && i < 36; i++) {
          if (i == 8 || i == 13 || i == 18 || i == 23) {
            ok = raw[i] == '-';
            continue;
          }
          int h = hexval(raw[i]), l = hexval(raw[i + 1]);
          ok = h >= 0 && l >= 0;
          u[k++] = (unsigned char)(h << 4 | l);
          i++;
        }
        if (!ok) return dec_error(c, "bad uuid");
        lpt_push_uuid(L, u);
      }
      if (js.escaped) lua_remove(L, -2);
      return 0;
    }
    default:
      return dec_error(c, "bad type");
  }
  if (rd_json(c, pt_json_rd_int(c->p, left(c), &c->jc, &v), pt_kind_names[t->kind]))
    return -1;
  if (v < lo || v > hi)
    return dec_error(c, "value %lld out of range for %s", (long long)v,
                     pt_kind_names[t->kind]);
  if (t->kind == PT_K_ENUM) return dec_enum(c, t, (int32_t)v);
  if (t->kind == PT_K_I64)
    push_i64(c, v);
  else
    lua_pushinteger(L, (lua_Integer)v);
  return 0;
}

/* A Compact integer of width 2, 4 or 8 that is not one byte: the
 * branch-free reader while 16 bytes are left (no bounds check per byte),
 * else (the last bytes, or an error) the exact reader, which says which. */
static int rd_cpt_varint(Ctx *c, int w, int64_t *v) {
  const unsigned char *p = c->p;
  int k;
  if (left(c) >= 16) {
    uint64_t u;
    k = pt_rd_varint64_fast(p, &u);
    if (k > 0 && (w == 8 || (k <= 5 && u <= 0xffffffffu))) {
      int64_t x = w == 8 ? pt_unzz64(u) : pt_unzz32((uint32_t)u);
      if (w != 2 || (x >= INT16_MIN && x <= INT16_MAX)) {
        *v = x;
        c->p = p + k;
        return 0;
      }
    }
  }
  if (w == 8) {
    k = pt_cpt_rd_i64(p, left(c), v);
  } else if (w == 4) {
    int32_t x = 0;
    k = pt_cpt_rd_i32(p, left(c), &x);
    *v = x;
  } else {
    int16_t x = 0;
    k = pt_cpt_rd_i16(p, left(c), &x);
    *v = x;
  }
  if (k < 0) return rd_fail(c, k, w == 8 ? "i64 varint" : w == 4 ? "i32 varint" : "i16 varint");
  c->p += k;
  return 0;
}

/* An integer of width 2, 4 or 8 in the call's protocol. */
__attribute__((always_inline)) static inline int rd_int(Ctx *c, int w,
                                                        int64_t *v) {
  const unsigned char *p = c->p;
  if (!c->cpt) {
    if (need(c, (size_t)w)) return -1;
    *v = w == 2 ? (int16_t)pt_ld16(p)
         : w == 4 ? (int32_t)pt_ld32(p)
                  : (int64_t)pt_ld64(p);
    c->p += w;
    return 0;
  }
  if (p < c->end && p[0] < 0x80) { /* one byte: small values */
    *v = pt_unzz32(p[0]);
    c->p = p + 1;
    return 0;
  }
  return rd_cpt_varint(c, w, v);
}

/* The length prefix of a string, checked against the bytes left. */
static int rd_len(Ctx *c, uint32_t *n) {
  int k = c->cpt ? pt_cpt_rd_len(c->p, left(c), n)
                 : pt_bin_rd_len(c->p, left(c), n);
  if (k == PT_NEED) return c->cpt ? rd_fail(c, k, "string length") : need(c, 4);
  if (k == PT_BAD) {
    if (c->cpt) return dec_error(c, "bad string length");
    return dec_error(c, "negative string length %d",
                     (int)(int32_t)pt_ld32(c->p));
  }
  if ((size_t)*n > left(c) - (size_t)k)
    return dec_error(c, "string length %d exceeds the %zu bytes left",
                     (int)*n, left(c) - (size_t)k);
  c->p += k;
  return 0;
}

/* Value of kind t->kind at c->p; pushes it. */
static int dec_scalar(Ctx *c, const pt_type *t) {
  lua_State *L = c->L;
  const unsigned char *p = c->p;
  int64_t v = 0;
  switch (t->kind) {
    case PT_K_BOOL:
      if (need(c, 1)) return -1;
      lua_pushboolean(L, c->cpt ? p[0] == PT_CT_TRUE : p[0] != 0);
      c->p += 1;
      return 0;
    case PT_K_I8:
      if (need(c, 1)) return -1;
      lua_pushinteger(L, (int8_t)p[0]);
      c->p += 1;
      return 0;
    case PT_K_I16:
      if (rd_int(c, 2, &v)) return -1;
      lua_pushinteger(L, (lua_Integer)v);
      return 0;
    case PT_K_I32:
      if (rd_int(c, 4, &v)) return -1;
      lua_pushinteger(L, (lua_Integer)v);
      return 0;
    case PT_K_ENUM:
      if (rd_int(c, 4, &v)) return -1;
      return dec_enum(c, t, (int32_t)v);
    case PT_K_I64:
      if (rd_int(c, 8, &v)) return -1;
      push_i64(c, v);
      return 0;
    case PT_K_DOUBLE: {
      if (need(c, 8)) return -1;
      uint64_t u = c->cpt ? pt_ld64le(p) : pt_ld64(p);
      double d;
      memcpy(&d, &u, 8);
      lua_pushnumber(L, d);
      c->p += 8;
      return 0;
    }
    case PT_K_STRING:
    case PT_K_BINARY: {
      uint32_t n = 0;
      if (rd_len(c, &n)) return -1;
#if LPT_LUAJIT
      if (n > LPT_MAX_STRING)
        return dec_error(c, "string length %d is more than a Lua string holds",
                         (int)n);
#endif
      lua_pushlstring(L, (const char *)c->p, (size_t)n);
      c->p += n;
      return 0;
    }
    case PT_K_UUID:
      if (need(c, 16)) return -1;
      lpt_push_uuid(L, p);
      c->p += 16;
      return 0;
  }
  return dec_error(c, "bad type");
}

static int dec_frame(Ctx *c, int kind, const pt_plan *plan) {
  if (c->depth + 1 >= c->max_depth)
    return dec_error(c, "nesting deeper than %d", c->max_depth);
  c->depth++;
  path_ent *e = &c->path[c->depth];
  e->kind = kind;
  e->plan = plan;
  e->field = -1;
  e->keyidx = 0;
  e->mk = NULL;
  e->index = 0;
  return 0;
}

/* Deep copy of the value at idx (defaults must not alias the schema's). */
void lpt_push_copy(lua_State *L, int idx, int depth) {
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) != LUA_TTABLE || depth > 64) {
    lua_pushvalue(L, idx);
    return;
  }
  luaL_checkstack(L, 6, "petrel: default too deep");
  lua_newtable(L);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pushvalue(L, -2);
    lpt_push_copy(L, -2, depth + 1);
    lua_rawset(L, -5);
    lua_pop(L, 1);
  }
  if (lua_getmetatable(L, idx)) lua_setmetatable(L, -2);
}

/* Grow the unknown-field store (a pt_wr over S->ubuf). */
static int ubuf_grow(pt_wr *wr, size_t need) {
  lpt_State *S = wr->ud;
  size_t used = (size_t)(wr->w - S->ubuf);
  size_t cap = S->ucap ? S->ucap : 256;
  while (cap - used < need) {
    if (cap > SIZE_MAX / 2) return -1;
    cap *= 2;
  }
  unsigned char *nb = realloc(S->ubuf, cap);
  if (!nb) return -1;
  S->ubuf = nb;
  S->ucap = cap;
  wr->start = nb;
  wr->w = nb + used;
  wr->end = nb + cap;
  return 0;
}

/* Keep one unknown field (its header was read: type ft, id, Compact bool
 * value bv) as Binary bytes; c->p is at its value, k its length (Binary,
 * Compact; JSON: unused, the value and the field's end are read here)
 * and moves past it. */
static int keep_unknown(Ctx *c, int ft, int id, int bv, size_t k) {
  lpt_State *S = c->S;
  if (!S->ubuf) {
    S->ubuf = malloc(256);
    if (!S->ubuf) luaL_error(c->L, "out of memory");
    S->ucap = 256;
  }
  pt_wr u;
  memset(&u, 0, sizeof u);
  u.grow = ubuf_grow;
  u.ud = S;
  u.start = S->ubuf;
  u.w = S->ubuf + S->ulen;
  u.end = S->ubuf + S->ucap;
  if (c->proto == PT_PROTO_BINARY) {
    if (pt_wr_need(&u, k + 3) != 0) luaL_error(c->L, "out of memory");
    memcpy(u.w, c->p - 3, k + 3);
    u.w += k + 3;
  } else {
    int last = 0;
    ptrdiff_t m = pt_transcode_field(c->proto, c->p, left(c), ft, id,
                                     bv, PT_PROTO_BINARY, &u, &last,
                                     c->max_depth - c->depth, &c->jc, NULL);
    if (m == PT_NOMEM) luaL_error(c->L, "out of memory");
    if (m < 0 || (!c->json && (size_t)m != k))
      return dec_error(c, "cannot keep field %d of type %s", id,
                       pt_ttype_name(ft));
    if (c->json) k = (size_t)m;
  }
  S->ulen = (size_t)(u.w - S->ubuf);
  c->p += k;
  return 0;
}

/* Read a field header: *ft 0 at STOP. */
static inline int rd_field(Ctx *c, int *last, int *ft, int *id, int *bv) {
  if (__builtin_expect(c->json, 0))
    return rd_json(c, pt_json_rd_field(c->p, left(c), &c->jc, ft, id),
                   "field header");
  int k = c->cpt ? pt_cpt_rd_field(c->p, left(c), last, ft, id, bv)
                 : pt_bin_rd_field(c->p, left(c), ft, id);
  if (k >= 0) {
    c->p += k;
    return 0;
  }
  if (k == PT_NEED)
    return c->cpt ? dec_error(c, "field header cut short (%zu bytes left)",
                              left(c))
                  : need(c, left(c) ? 3 : 1);
  return dec_error(c, "bad field header");
}

static int dec_struct(Ctx *c, const pt_plan *p) {
  lua_State *L = c->L;
  luaL_checkstack(L, 8, "petrel: nesting too deep");
  lua_createtable(L, 0, presize(c, (size_t)p->nfields));
  int tidx = lua_gettop(L);
  path_ent *e = &c->path[c->depth];
  e->kind = 0;
  e->plan = p;
  e->field = -1;
  uint64_t seen[4] = {0, 0, 0, 0};
  int track = p->nchecked && p->nfields <= 256;
  lpt_State *S = c->S;
  size_t umark = S->ulen;
  int last = 0;
  if (c->json &&
      rd_json(c, pt_json_rd_struct_begin(c->p, left(c), &c->jc), "struct"))
    return -1;
  for (;;) {
    int ft = 0, id = 0, bv = 0;
    if (rd_field(c, &last, &ft, &id, &bv)) return -1;
    if (ft == PT_T_STOP) break;
    int slot = pt_plan_slot(p, id);
    if (slot < 0 || p->fields[slot].type->ttype != ft) {
      /* unknown field, or a type we do not expect: skip it (a Compact
       * bool field has nothing after its header) */
      size_t k = 0;
      if (c->json) {
        if (c->keep_unknown) {
          if (keep_unknown(c, ft, id, bv, 0)) return -1;
          continue;
        }
        int m = pt_json_skip(c->p, left(c), &c->jc, c->max_depth - c->depth);
        if (m < 0)
          return dec_error(c, "cannot skip field %d of type %s", id,
                           pt_ttype_name(ft));
        c->p += m;
        if (rd_json(c, pt_json_rd_field_end(c->p, left(c), &c->jc), "field end"))
          return -1;
        continue;
      }
      if (!(c->cpt && ft == PT_T_BOOL)) {
        k = pt_skip_proto(c->proto, c->p, c->end, ft, c->max_depth - c->depth);
        if (!k)
          return dec_error(c, "cannot skip field %d of type %s", id,
                           pt_ttype_name(ft));
      }
      if (c->keep_unknown) {
        if (keep_unknown(c, ft, id, bv, k)) return -1;
      } else {
        c->p += k;
      }
      continue;
    }
    const pt_field *f = &p->fields[slot];
    e->field = slot;
    lua_rawgeti(L, c->keys, p->key_base + f->index + 1);
    if (c->cpt && ft == PT_T_BOOL)
      lua_pushboolean(L, bv);
    else if (dec_value(c, f->type))
      return -1;
    if (c->json &&
        rd_json(c, pt_json_rd_field_end(c->p, left(c), &c->jc), "field end"))
      return -1;
    lua_rawset(L, tidx);
    if (track) seen[slot >> 6] |= (uint64_t)1 << (slot & 63);
  }
  e->field = -1;
  if (S->ulen > umark) {
#if LPT_LUAJIT
    if (S->ulen - umark > LPT_MAX_STRING)
      return dec_error(c, "unknown fields are more than a Lua string holds");
#endif
    lua_pushlightuserdata(L, (void *)&lpt_unknown_key);
    lua_pushlstring(L, (const char *)S->ubuf + umark, S->ulen - umark);
    lua_rawset(L, tidx);
    S->ulen = umark;
  }
  if (p->nchecked) {
    for (int i = 0; i < p->nfields; i++) {
      const pt_field *f = &p->fields[i];
      if (f->req != PT_REQ_REQUIRED && !f->has_default) continue;
      int have;
      if (track) {
        have = (seen[i >> 6] >> (i & 63)) & 1;
      } else {
        lua_rawgeti(L, c->keys, p->key_base + f->index + 1);
        lua_rawget(L, tidx);
        have = !lua_isnil(L, -1);
        lua_pop(L, 1);
      }
      if (have) continue;
      if (f->req == PT_REQ_REQUIRED) {
        e->field = i;
        return dec_error(c, "required field missing");
      }
      if (f->req == PT_REQ_OPTIONAL) continue;
      lua_rawgeti(L, c->keys, p->key_base + f->index + 1);
      lua_rawgeti(L, c->defaults, p->key_base + f->index + 1);
      lpt_push_copy(L, -1, 0);
      lua_remove(L, -2);
      lua_rawset(L, tidx);
    }
  }
  return 0;
}

/* A numeric list into a typed array. */
static int dec_typed(Ctx *c, const pt_type *et, size_t n) {
  lua_State *L = c->L;
  int ak = lpt_ar_kind_of(et->kind);
  size_t w = lpt_ar_width[ak];
  lpt_Array *a = lpt_array_alloc(L, ak, n, c->array_mt);
  if (c->json) {
    static const int64_t lo[] = {INT8_MIN, INT16_MIN, INT32_MIN, INT64_MIN};
    static const int64_t hi[] = {INT8_MAX, INT16_MAX, INT32_MAX, INT64_MAX};
    for (size_t i = 0; i < n; i++) {
      unsigned char *q = a->data + i * w;
      c->path[c->depth].index = (int64_t)i + 1;
      if (ak == AR_DOUBLE) {
        double d;
        if (rd_json(c, pt_json_rd_double(c->p, left(c), &c->jc, &d), "double"))
          return -1;
        memcpy(q, &d, 8);
        continue;
      }
      int64_t v;
      if (rd_json(c, pt_json_rd_int(c->p, left(c), &c->jc, &v),
                  pt_kind_names[et->kind]))
        return -1;
      if (v < lo[ak] || v > hi[ak])
        return dec_error(c, "value %lld out of range for %s", (long long)v,
                         pt_kind_names[et->kind]);
      if (w == 1) q[0] = (unsigned char)v;
      else if (w == 2) { int16_t x = (int16_t)v; memcpy(q, &x, 2); }
      else if (w == 4) { int32_t x = (int32_t)v; memcpy(q, &x, 4); }
      else memcpy(q, &v, 8);
    }
  } else if (w == 1 || (c->cpt && ak == AR_DOUBLE)) {
    memcpy(a->data, c->p, n * w);
    c->p += n * w;
  } else if (c->cpt && n) {
    size_t bad = 0;
    size_t k = pt_zz_decode(a->data, c->p, left(c), n, (int)w, &bad);
    if (!k) {
      c->path[c->depth].index = (int64_t)bad + 1;
      return dec_error(c, "bad or cut short %s varint", pt_kind_names[et->kind]);
    }
    c->p += k;
  } else if (!c->cpt) {
    pt_bswap_copy(a->data, c->p, n, (int)w);
    c->p += n * w;
  }
  return 0;
}

#if LPT_LUAJIT
/* LuaJIT: i64 element i beyond 2^53 becomes int64 cdata through one FFI
 * loop at the end of the list (collected here). */
static void fix_add(Ctx *c, size_t *nbig, int64_t v, int32_t i) {
  lpt_State *S = c->S;
  if (*nbig == S->fix_cap) {
    size_t cap = S->fix_cap ? S->fix_cap * 2 : 256;
    int64_t *nv = realloc(S->fixv, cap * sizeof *nv);
    if (nv) S->fixv = nv;
    int32_t *ni = realloc(S->fixi, cap * sizeof *ni);
    if (ni) S->fixi = ni;
    if (!nv || !ni) luaL_error(c->L, "out of memory");
    S->fix_cap = cap;
  }
  S->fixv[*nbig] = v;
  S->fixi[*nbig] = i;
  (*nbig)++;
}

static void fix_run(Ctx *c, int tidx, size_t nbig) {
  lpt_State *S = c->S;
  lua_State *L = c->L;
  if (!nbig) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, S->i64_fix);
  lua_pushvalue(L, tidx);
  lua_pushlightuserdata(L, S->fixv);
  lua_pushlightuserdata(L, S->fixi);
  lua_pushinteger(L, (lua_Integer)nbig);
  lua_call(L, 4, 0);
}
#endif

/* One i64 element of a list into the table (LuaJIT: big ones later). */
static inline void set_i64(Ctx *c, int tidx, int32_t i, int64_t v,
                           size_t *nbig) {
  lua_State *L = c->L;
#if LPT_LUAJIT
  if (v >= -9007199254740992LL && v <= 9007199254740992LL) {
    lua_pushnumber(L, (lua_Number)v);
    lua_rawseti(L, tidx, i);
  } else if (c->i64str) {
    push_i64(c, v);
    lua_rawseti(L, tidx, i);
  } else {
    fix_add(c, nbig, v, i);
  }
#else
  (void)nbig;
  if (c->i64str) {
    push_i64(c, v);
  } else {
    lua_pushinteger(L, (lua_Integer)v);
  }
  lua_rawseti(L, tidx, i);
#endif
}

static int dec_list(Ctx *c, const pt_type *t) {
  lua_State *L = c->L;
  const pt_type *et = t->elem;
  int wt;
  uint32_t un;
  int k = c->cpt    ? pt_cpt_rd_list(c->p, left(c), &wt, &un)
          : c->json ? pt_json_rd_list(c->p, left(c), &c->jc, &wt, &un)
                    : pt_bin_rd_list(c->p, left(c), &wt, &un);
  if (k == PT_NEED)
    return c->proto != PT_PROTO_BINARY ? rd_fail(c, k, "list header") : need(c, 5);
  if (k == PT_BAD)
    return c->proto != PT_PROTO_BINARY
               ? dec_error(c, "bad list header")
               : dec_error(c, "negative element count %d",
                           (int)(int32_t)pt_ld32(c->p + 1));
  int32_t n = (int32_t)un;
  if (wt != et->ttype && n > 0)
    return dec_error(c, "%s element type %s, expected %s",
                     pt_kind_names[t->kind], pt_ttype_name(wt),
                     pt_ttype_name(et->ttype));
  c->p += k;
  size_t mw = pt_elem_min(c->proto, et->ttype);
  if ((size_t)n > left(c) / mw)
    return dec_error(c, "%d elements cannot fit in the %zu bytes left", (int)n,
                     left(c));
  /* every list is a level, as on encode (numeric ones too) */
  if (dec_frame(c, 1, NULL)) return -1;
  if ((c->typed || t->typed) && lpt_ar_kind_of(et->kind) >= 0 &&
      et->kind != PT_K_ENUM) {
    if (dec_typed(c, et, (size_t)n)) return -1;
    c->depth--;
    if (c->json &&
        rd_json(c, pt_json_rd_list_end(c->p, left(c), &c->jc), "list end"))
      return -1;
    return 0;
  }
  luaL_checkstack(L, 6, "petrel: nesting too deep");
#if LPT_LUAJIT
  if (n > LPT_MAX_ELEMS) {
    c->depth--;
    return dec_error(c, "%d elements are more than a Lua table holds", (int)n);
  }
#endif
  lua_createtable(L, presize(c, (size_t)n), 0);
  int tidx = lua_gettop(L);
  const unsigned char *p = c->p;
  path_ent *e = &c->path[c->depth];
  size_t nbig = 0;
  switch (c->cpt ? -et->kind - 1 : c->json ? -100 : et->kind) {
    case PT_K_I64:
      for (int32_t i = 0; i < n; i++)
        set_i64(c, tidx, i + 1, (int64_t)pt_ld64(p + 8 * (size_t)i), &nbig);
      c->p += 8 * (size_t)n;
      break;
    case PT_K_I32:
      for (int32_t i = 0; i < n; i++) {
        lua_pushinteger(L, (int32_t)pt_ld32(p + 4 * (size_t)i));
        lua_rawseti(L, tidx, i + 1);
      }
      c->p += 4 * (size_t)n;
      break;
    case PT_K_DOUBLE:
      for (int32_t i = 0; i < n; i++) {
        uint64_t u = pt_ld64(p + 8 * (size_t)i);
        double d;
        memcpy(&d, &u, 8);
        lua_pushnumber(L, d);
        lua_rawseti(L, tidx, i + 1);
      }
      c->p += 8 * (size_t)n;
      break;
    case -PT_K_I64 - 1: /* Compact: zigzag varints, branch-free while
                           16 bytes are left, in the loop that stores */
      for (int32_t i = 0; i < n; i++) {
        uint64_t u;
        int r = left(c) >= 16 ? pt_rd_varint64_fast(c->p, &u) : PT_BAD;
        if (r < 0) { /* the last bytes, or an error: the exact reader */
          int64_t v;
          r = pt_cpt_rd_i64(c->p, left(c), &v);
          if (r < 0) {
            e->index = i + 1;
            return rd_fail(c, r, "i64 varint");
          }
          u = pt_zz64(v);
        }
        c->p += r;
        set_i64(c, tidx, i + 1, pt_unzz64(u), &nbig);
      }
      break;
    case -PT_K_I32 - 1:
      for (int32_t i = 0; i < n; i++) {
        uint64_t u;
        int r = left(c) >= 16 ? pt_rd_varint64_fast(c->p, &u) : PT_BAD;
        if (r < 0 || r > 5 || u > 0xffffffffu) {
          int32_t v;
          r = pt_cpt_rd_i32(c->p, left(c), &v);
          if (r < 0) {
            e->index = i + 1;
            return rd_fail(c, r, "i32 varint");
          }
          u = pt_zz32(v);
        }
        c->p += r;
        lua_pushinteger(L, pt_unzz32((uint32_t)u));
        lua_rawseti(L, tidx, i + 1);
      }
      break;
    case -PT_K_DOUBLE - 1:
      for (int32_t i = 0; i < n; i++) {
        uint64_t u = pt_ld64le(p + 8 * (size_t)i);
        double d;
        memcpy(&d, &u, 8);
        lua_pushnumber(L, d);
        lua_rawseti(L, tidx, i + 1);
      }
      c->p += 8 * (size_t)n;
      break;
    default:
      for (int32_t i = 0; i < n; i++) {
        e->index = i + 1;
        if (dec_value(c, et)) return -1;
        lua_rawseti(L, tidx, i + 1);
      }
      break;
  }
#if LPT_LUAJIT
  fix_run(c, tidx, nbig);
#endif
  c->depth--;
  if (c->json &&
      rd_json(c, pt_json_rd_list_end(c->p, left(c), &c->jc), "list end"))
    return -1;
  lua_pushvalue(L, t->kind == PT_K_SET ? c->set_mt : c->list_mt);
  lua_setmetatable(L, tidx);
  return 0;
}

static int dec_map(Ctx *c, const pt_type *t) {
  lua_State *L = c->L;
  int kt, vt;
  uint32_t un;
  int k = c->cpt    ? pt_cpt_rd_map(c->p, left(c), &kt, &vt, &un)
          : c->json ? pt_json_rd_map(c->p, left(c), &c->jc, &kt, &vt, &un)
                    : pt_bin_rd_map(c->p, left(c), &kt, &vt, &un);
  if (k == PT_NEED)
    return c->proto != PT_PROTO_BINARY ? rd_fail(c, k, "map header") : need(c, 6);
  if (k == PT_BAD)
    return c->proto != PT_PROTO_BINARY
               ? dec_error(c, "bad map header")
               : dec_error(c, "negative entry count %d",
                           (int)(int32_t)pt_ld32(c->p + 2));
  int32_t n = (int32_t)un;
  if (n > 0 && (kt != t->elem->ttype || vt != t->val->ttype))
    return dec_error(c, "map<%s,%s> on the wire, expected map<%s,%s>",
                     pt_ttype_name(kt), pt_ttype_name(vt),
                     pt_ttype_name(t->elem->ttype),
                     pt_ttype_name(t->val->ttype));
  c->p += k;
  size_t mw = pt_elem_min(c->proto, t->elem->ttype) +
              pt_elem_min(c->proto, t->val->ttype);
  if ((size_t)n > left(c) / mw)
    return dec_error(c, "%d entries cannot fit in the %zu bytes left", (int)n,
                     left(c));
  if (n > LPT_MAX_ENTRIES)
    return dec_error(c, "%d entries are more than a Lua table holds", (int)n);
  luaL_checkstack(L, 6, "petrel: nesting too deep");
  lua_createtable(L, 0, presize(c, (size_t)n));
  int tidx = lua_gettop(L);
  if (dec_frame(c, 2, NULL)) return -1;
  path_ent *e = &c->path[c->depth];
  for (int32_t i = 0; i < n; i++) {
    e->index = i + 1;
    e->kind = 2;
    e->keyidx = 0;
    if (dec_value(c, t->elem)) return -1;
    if (lua_type(L, -1) == LUA_TNUMBER) {
      lua_Number d = lua_tonumber(L, -1);
      if (d != d) return dec_error(c, "NaN map key");
    }
    e->kind = 3;
    e->keyidx = lua_gettop(L);
    if (dec_value(c, t->val)) return -1;
    lua_rawset(L, tidx);
  }
  e->keyidx = 0;
  c->depth--;
  if (c->json &&
      rd_json(c, pt_json_rd_map_end(c->p, left(c), &c->jc), "map end"))
    return -1;
  lua_pushvalue(L, c->map_mt);
  lua_setmetatable(L, tidx);
  return 0;
}

static int dec_value(Ctx *c, const pt_type *t) {
  switch (t->kind) {
    case PT_K_STRUCT: {
      if (dec_frame(c, 0, t->plan)) return -1;
      int r = dec_struct(c, t->plan);
      c->depth--;
      return r;
    }
    case PT_K_LIST:
    case PT_K_SET:
      return dec_list(c, t);
    case PT_K_MAP:
      return dec_map(c, t);
    default:
      if (__builtin_expect(c->json, 0)) return dec_json_scalar(c, t);
      return dec_scalar(c, t);
  }
}

/* ---- Lua API ---------------------------------------------------------- */

/* Pushes the context slots of type at idx and fills c. */
static void ctx_open_cx(Ctx *c, lua_State *L, int cx, const pt_plan *p);
static void ctx_open(Ctx *c, lua_State *L, int tidx, const pt_plan *p) {
  lpt_getuv(L, tidx);
  ctx_open_cx(c, L, lua_gettop(L), p);
}

/* The same from the context table at cx (pushes its slots above it). */
static void ctx_open_cx(Ctx *c, lua_State *L, int cx, const pt_plan *p) {
  memset(c, 0, offsetof(Ctx, path));
  c->L = L;
  c->S = lpt_state(L);
  c->max_depth = LPT_MAXDEPTH_DEFAULT;
  cx = lua_absindex(L, cx);
  int at = lua_gettop(L); /* the slots land at at + 1 ... */
  for (int i = CX_KEYS; i <= CX_ARRAY_MT; i++) lua_rawgeti(L, cx, i);
  c->cx = cx;
  c->keys = at + CX_KEYS;
  c->defaults = at + CX_DEFAULTS;
  c->enums = at + CX_ENUMS;
  c->list_mt = at + CX_LIST_MT;
  c->set_mt = at + CX_SET_MT;
  c->map_mt = at + CX_MAP_MT;
  c->array_mt = at + CX_ARRAY_MT;
  c->path[0].kind = 0;
  c->path[0].plan = p;
  c->path[0].field = -1;
  c->path[0].keyidx = 0;
  c->path[0].mk = NULL;
}

static void set_proto(Ctx *c, int proto) {
  c->proto = proto;
  c->cpt = proto == PT_PROTO_COMPACT;
  c->json = proto == PT_PROTO_JSON;
  if (c->json) pt_json_reset(&c->jc);
}

/* The flags among the options: option name -> field of the context. */
static const struct {
  const char *name;
  size_t len, off;
} opt_flags[] = {{"typed", 5, offsetof(Ctx, typed)},
                 {"enum_names", 10, offsetof(Ctx, enum_names)},
                 {"unknown", 7, offsetof(Ctx, keep_unknown)},
                 {"int64_as_string", 15, offsetof(Ctx, i64str)},
                 {"strict", 6, offsetof(Ctx, strict)}};
#define OPT_NFLAGS (sizeof opt_flags / sizeof *opt_flags)

/* Option k (n bytes) with its value at the top of the stack. */
static void read_opt(Ctx *c, lua_State *L, const char *k, size_t n) {
  if (n == 8 && memcmp(k, "protocol", 8) == 0) {
    if (!lua_isnil(L, -1)) set_proto(c, lpt_checkproto(L, -1));
    return;
  }
  if (n == 9 && memcmp(k, "max_depth", 9) == 0) {
    if (!lua_isnil(L, -1))
      c->max_depth = (int)lpt_checkint(L, -1, 1, LPT_MAXDEPTH_LIMIT);
    return;
  }
  for (size_t i = 0; i < OPT_NFLAGS; i++)
    if (n == opt_flags[i].len && memcmp(k, opt_flags[i].name, n) == 0) {
      *(int *)((char *)c + opt_flags[i].off) = lua_toboolean(L, -1);
      return;
    }
}

/* Options of encode and decode (a table at idx, or nil). Every flag an
 * options table leaves out is off. A plain table (no metatable, the usual
 * case: a server passes the same small table with every call) is read by
 * one walk over its entries, not a lookup per known option; a table with a
 * metatable is read option by option, so __index is honoured. */
static void read_opts(Ctx *c, lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) return;
  luaL_checktype(L, idx, LUA_TTABLE);
  idx = lua_absindex(L, idx);
  for (size_t i = 0; i < OPT_NFLAGS; i++)
    *(int *)((char *)c + opt_flags[i].off) = 0;
  if (!lua_getmetatable(L, idx)) {
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      if (lua_type(L, -2) == LUA_TSTRING) {
        size_t n;
        const char *k = lua_tolstring(L, -2, &n);
        read_opt(c, L, k, n);
      }
      lua_pop(L, 1);
    }
    return;
  }
  lua_pop(L, 1);
  static const char *const names[] = {"max_depth", "protocol", "typed",
                                      "enum_names", "unknown",
                                      "int64_as_string", "strict"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    lua_getfield(L, idx, names[i]);
    read_opt(c, L, names[i], strlen(names[i]));
    lua_pop(L, 1);
  }
}

/* Begin an encode into the state's scratch (counting only in size mode). */
static void enc_begin(Ctx *c, size_t first) {
  pt_buf *wb = scratch(c->S);
  if (c->mode == M_SIZE)
    pt_wr_init_count(&c->wr, wb, first);
  else
    pt_wr_init_buf(&c->wr, wb, first);
}

/* End an encode: what was written is readable in the scratch. */
static size_t enc_end(Ctx *c) {
  if (pt_wr_flush(&c->wr) != 0) luaL_error(c->L, "out of memory");
  return pt_wr_len(&c->wr);
}

/* The scratch's bytes go to out: copied into out's last block when small
 * (one block, no links), else their blocks move there. */
static void scratch_to(lua_State *L, lpt_State *S, pt_buf *out) {
  pt_buf *wb = &S->wb;
  size_t n = pt_buf_len(wb);
  pt_node *h = wb->head;
  if (n <= LPT_COPY_MAX && h && h == wb->tail && h->blk->cls != PT_CLS_EXT) {
    if (pt_buf_append(out, h->rd, n) != 0) luaL_error(L, "out of memory");
    pt_buf_skip(wb, n);
    return;
  }
  pt_buf_move(out, wb);
}

/* The protocol option of an encode / decode: opts at idx may be nil. */
static int opts_index(lua_State *L, int buf_idx, int *out_idx) {
  /* encode(v, buf, opts) or encode(v, opts): a plain table is opts */
  if (lua_type(L, buf_idx) == LUA_TTABLE) {
    *out_idx = 0;
    return buf_idx;
  }
  *out_idx = lua_isnoneornil(L, buf_idx) ? 0 : buf_idx;
  return buf_idx + 1;
}

/* T:encode(value [, buffer] [, opts]) -> string | buffer
 * opts: protocol = "binary" | "compact", max_depth, strict */
static int Lpt_type_encode(lua_State *L) {
  lpt_Type *T = lpt_checktype(L, 1);
  lua_settop(L, 4); /* absent arguments are nil below the pushes */
  int bi, oi = opts_index(L, 3, &bi);
  pt_buf *out = bi ? lpt_checkbuf(L, bi) : NULL;
  Ctx c;
  ctx_open(&c, L, 1, T->plan);
  read_opts(&c, L, oi);
  c.mode = out ? M_BUFFER : M_STRING;
  c.link_min = out ? out->nocopy_min : SIZE_MAX;
  lpt_State *S = c.S;
  enc_begin(&c, out ? 0 : S->enc_hint);
  enc_struct(&c, T->plan, 2);
  size_t n = enc_end(&c);
  if (!out) {
    const char *p = pt_buf_peek(&S->wb, n);
    if (!p) return luaL_error(L, "out of memory");
    lua_pushlstring(L, p, n);
    pt_buf_skip(&S->wb, n);
    S->enc_hint = n;
    return 1;
  }
  scratch_to(L, S, out);
  lua_pushvalue(L, bi);
  return 1;
}

/* T:encode_message(value, buffer, name, mtype, seqid [, framing
 *   [, protocol [, headers]]]) -> buffer
 * Appends one Thrift message: its framing (framing = true: a 4-byte
 * frame length; a framer (core.framer): what it says, header frames
 * included, with the framer's flags, transforms and token, seqid as the
 * header's sequence number and headers (a table: string keys, and
 * TTHeader's integer keys, to string values) as info entries), the
 * envelope (Binary strict, Compact or JSON) and the struct, in one pass
 * (large strings linked as with encode into a buffer); lengths are
 * patched once the message is written. With transforms the message is
 * written first, then transformed, then framed. */
static int Lpt_type_encode_message(lua_State *L) {
  lpt_Type *T = lpt_checktype(L, 1);
  lua_settop(L, 9);
  pt_buf *out = lpt_checkbuf(L, 3);
  size_t nlen;
  const char *name = luaL_checklstring(L, 4, &nlen);
  int mtype = (int)lpt_checkint(L, 5, 1, 4);
  int64_t seq = lpt_checkint(L, 6, INT32_MIN, UINT32_MAX);
  lpt_Framer *fr = lpt_testframer(L, 7);
  int proto = lua_isnoneornil(L, 8) ? PT_PROTO_BINARY : lpt_checkproto(L, 8);
  int hidx = 0;
  if (!lua_isnoneornil(L, 9)) {
    luaL_checktype(L, 9, LUA_TTABLE);
    hidx = 9;
  }
  if (nlen > INT32_MAX) return luaL_argerror(L, 4, "name too long");
  pt_framing f = {0, (uint8_t)lua_toboolean(L, 7), PT_HDR_NONE, 0};
  if (fr) {
    if (!fr->decided) return luaL_argerror(L, 7, "the framer has not seen a message yet");
    f = fr->f;
  }
  if (f.unframed) f.outer = 0;
  pt_hdr_out ho;
  pt_hdr_kv kvs[16];
  memset(&ho, 0, sizeof ho);
  if (f.header) lpt_framer_header(L, fr, hidx, (int32_t)(uint32_t)seq, proto, &ho, kvs, 16);
  size_t room = pt_frame_room(&f, &ho);
  if (f.header && !room)
    return luaL_error(L, "the header does not fit its frame (too many or too long entries)");
  int xf = f.header && fr->nxf > 0;
  Ctx c;
  ctx_open(&c, L, 1, T->plan);
  set_proto(&c, proto);
  c.mode = M_BUFFER;
  c.link_min = out->nocopy_min;
  enc_begin(&c, 0);
  pt_frame_mark m;
  w_need(&c, (xf ? 0 : room) + pt_msg_room(proto, nlen));
  if (!xf) c.wr.w = pt_frame_open(c.wr.w, &f, &ho, &m, 0);
  c.wr.w = pt_msg_write(c.wr.w, proto, name, (uint32_t)nlen, mtype,
                        (int32_t)(uint32_t)seq);
  enc_struct(&c, T->plan, 2);
  if (c.json) { /* the envelope's array ends after the struct */
    w_need(&c, 1);
    *c.wr.w++ = ']';
  }
  size_t n = enc_end(&c);
  if (xf) { /* transform the message, then frame what comes out */
    const void *msg = pt_buf_peek(&c.S->wb, n);
    if (!msg) return luaL_error(L, "out of memory");
    unsigned char *cur = NULL;
    size_t curn = n;
    for (int i = 0; i < fr->nxf; i++) {
      unsigned char *o;
      size_t on;
      int r = pt_xform_apply(fr->xf[i], cur ? (const void *)cur : msg, curn, &o, &on);
      free(cur);
      if (r) {
        pt_buf_clear(&c.S->wb);
        return luaL_error(L, "transform %s failed (out of memory)", pt_xform_name(fr->xf[i]));
      }
      cur = o;
      curn = on;
    }
    pt_buf_clear(&c.S->wb);
    enc_begin(&c, 0);
    if (pt_wr_need(&c.wr, room) != 0) {
      free(cur);
      return luaL_error(L, "out of memory");
    }
    c.wr.w = pt_frame_open(c.wr.w, &f, &ho, &m, 0);
    int r = pt_wr_bytes(&c.wr, cur, curn);
    free(cur);
    if (r) return luaL_error(L, "out of memory");
    n = enc_end(&c);
  }
  if (n - (f.outer || f.header ? 4 : 0) > INT32_MAX) {
    pt_buf_clear(&c.S->wb);
    return luaL_error(L, "message too large for a frame");
  }
  pt_frame_close(&m, n);
  scratch_to(L, c.S, out);
  lua_pushvalue(L, 3);
  return 1;
}

/* T:size(value [, opts]) -> bytes the encoding takes (BLength) */
static int Lpt_type_size(lua_State *L) {
  lpt_Type *T = lpt_checktype(L, 1);
  lua_settop(L, 3);
  Ctx c;
  ctx_open(&c, L, 1, T->plan);
  read_opts(&c, L, 3);
  c.mode = M_SIZE;
  c.link_min = 64; /* strings this long are counted, not copied */
  enc_begin(&c, 0);
  enc_struct(&c, T->plan, 2);
  lua_pushinteger(L, (lua_Integer)enc_end(&c));
  return 1;
}

/* T:decode(string | buffer [, pos [, opts]]) -> value, next_pos | nil, err
 * opts: protocol, typed, enum_names, unknown, max_depth, int64_as_string */
static int Lpt_type_decode(lua_State *L) {
  lpt_Type *T = lpt_checktype(L, 1);
  lua_settop(L, 4);
  size_t len;
  const unsigned char *s = lpt_input_bytes(L, 2, &len);
  int64_t pos = lua_isnoneornil(L, 3) ? 1 : lpt_checkint(L, 3, 1, INT64_MAX);
  if ((uint64_t)pos > (uint64_t)len + 1) {
    char msg[200];
    snprintf(msg, sizeof msg, "%s: position %lld is past the end",
             T->plan->name, (long long)pos);
    lua_pushnil(L);
    lua_pushstring(L, msg);
    return 2;
  }
  Ctx c;
  ctx_open(&c, L, 1, T->plan);
  read_opts(&c, L, 4);
  int top = lua_gettop(L);
  c.S->ulen = 0;
  c.base = s;
  c.p = s + pos - 1;
  c.end = s + len;
  c.presize = (len - (size_t)(pos - 1)) + 256;
  if (dec_struct(&c, T->plan) != 0) {
    lua_settop(L, top);
    lua_pushnil(L);
    lua_pushstring(L, c.err);
    return 2;
  }
  lua_pushinteger(L, (lua_Integer)(c.p - s) + 1);
  return 2;
}

/* ---- for message views (lpt_view.c) ----------------------------------- */

int lpt_decode_at(lua_State *L, int cx, const pt_plan *plan, const pt_type *t,
                  const char *prefix, int depth, const unsigned char *base,
                  size_t len, size_t off, int proto, int flags, int max_depth,
                  int opts, char *err, size_t errlen) {
  int top = lua_gettop(L);
  if (opts) opts = lua_absindex(L, opts);
  Ctx c;
  ctx_open_cx(&c, L, cx, plan);
  c.enum_names = flags & 1;
  c.i64str = (flags >> 1) & 1;
  c.typed = (flags >> 2) & 1;
  c.keep_unknown = (flags >> 3) & 1;
  c.max_depth = max_depth;
  if (opts) read_opts(&c, L, opts);
  set_proto(&c, proto);
  c.max_depth -= depth;
  if (c.max_depth < 1) c.max_depth = 1;
  c.prefix = prefix;
  c.S->ulen = 0;
  c.base = base;
  c.p = base + off;
  c.end = base + len;
  c.presize = (len - off) + 256;
  int r = (!t || t->kind == PT_K_STRUCT) ? dec_struct(&c, t ? t->plan : plan)
                                        : dec_value(&c, t);
  if (r) {
    snprintf(err, errlen, "%s", c.err);
    lua_settop(L, top);
    return -1;
  }
  lua_replace(L, top + 1);
  lua_settop(L, top + 1);
  return 0;
}

void lpt_encode_field(lua_State *L, int cx, const pt_plan *p, int slot,
                      int vidx, pt_wr *wr, int proto, int *last) {
  vidx = lua_absindex(L, vidx);
  int top = lua_gettop(L);
  Ctx c;
  ctx_open_cx(&c, L, cx, p);
  set_proto(&c, proto);
  c.mode = M_STRING;
  c.link_min = SIZE_MAX;
  c.wr = *wr;
  const pt_field *f = &p->fields[slot];
  const pt_type *ft = f->type;
  c.path[0].field = slot;
  w_need(&c, PT_MAX_FIELD);
  if (!c.cpt) {
    c.wr.w = pt_bin_wr_field(c.wr.w, ft->ttype, f->id);
    enc_value(&c, ft, vidx);
  } else if (ft->kind == PT_K_BOOL) { /* the value goes in the header */
    if (lua_type(L, vidx) != LUA_TBOOLEAN)
      enc_error(&c, "boolean expected, got %s", luaL_typename(L, vidx));
    c.wr.w = pt_cpt_wr_field(c.wr.w, PT_T_BOOL, f->id, last,
                             lua_toboolean(L, vidx));
  } else {
    c.wr.w = pt_cpt_wr_field(c.wr.w, ft->ttype, f->id, last, 0);
    enc_value(&c, ft, vidx);
  }
  *wr = c.wr;
  lua_settop(L, top);
}

static const luaL_Reg walker_methods[] = {
    {"encode", Lpt_type_encode},
    {"decode", Lpt_type_decode},
    {"encode_message", Lpt_type_encode_message},
    {"size", Lpt_type_size},
    {NULL, NULL}};

/* stack: module, state, buffer metatable */
void lpt_open_codec(lua_State *L) {
  int mod = lua_gettop(L) - 2;
  lpt_open_schema(L);
  lpt_open_array(L);
  lpt_open_wire(L);
  lpt_open_view(L);
  lpt_open_frame(L);
  luaL_getmetatable(L, LPT_TYPE_MT);
  lua_getfield(L, -1, "__index");
  lpt_setfuncs(L, -1, mod, walker_methods);
  lua_pop(L, 2);
  lua_pushlightuserdata(L, (void *)&lpt_unknown_key);
  lua_setfield(L, mod, "unknown");
}
