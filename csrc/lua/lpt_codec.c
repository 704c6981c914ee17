/*
 * lpt_codec.c — Thrift Binary protocol over Lua tables, driven by the C
 * plans of pt_plan.h (Kitex's FastWrite / FastRead / BLength for Lua).
 *
 * Objects
 *   petrel.schema  userdata holding a pt_schema (shared, immutable)
 *   petrel.type    userdata per struct: {schema, plan}; its user value is
 *                  the schema context table {keys, defaults, enums, mts}
 *   petrel.array   typed numeric array (i8/i16/i32/i64/double), native
 *                  endian, for bulk numeric lists
 *
 * Encoding writes into one contiguous scratch area of the Lua state (a
 * single pass; large strings become no-copy links when the target is a
 * buffer). Type errors raise with the full path. Decoding checks every
 * length against the bytes present before allocating, preallocates
 * tables from a budget the size of the input, caps nesting and returns
 * nil, "path: problem at offset N" on bad input.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../pt_plan.h"
#include "lpt.h"

#define LPT_SCHEMA_MT "petrel.schema"
#define LPT_TYPE_MT "petrel.type"
#define LPT_ARRAY_MT "petrel.array"
#define LPT_MAXDEPTH_DEFAULT 64
#define LPT_MAXDEPTH_LIMIT 200
#define LPT_SKIP_MAXDEPTH 1000 /* core.skip: pt_skip recurses this deep */

/* What one Lua table or string can hold: decoding more is an error, not a
 * raise from inside the VM. */
#if LPT_LUAJIT
#define LPT_MAX_ELEMS (1 << 27)   /* LJ_MAX_ASIZE - 1 */
#define LPT_MAX_ENTRIES (1 << 26) /* 1 << LJ_MAX_HBITS */
#define LPT_MAX_STRING 0x7fffff00 /* LJ_MAX_STR */
#else
#define LPT_MAX_ENTRIES (1 << 30) /* 1 << MAXHBITS */
#endif

/* context table slots */
#define CX_KEYS 1
#define CX_DEFAULTS 2
#define CX_ENUMS 3
#define CX_LIST_MT 4
#define CX_SET_MT 5
#define CX_MAP_MT 6
#define CX_ARRAY_MT 7

/* Key under which a decoded struct keeps the raw bytes of fields the
 * schema does not know ({unknown = true}); encode re-emits them. */
static const char unknown_key = 0;

typedef struct lpt_Schema {
  pt_schema *s;
} lpt_Schema;

typedef struct lpt_Type {
  pt_schema *s;
  const pt_plan *plan;
} lpt_Type;

/* typed arrays */
enum { AR_I8, AR_I16, AR_I32, AR_I64, AR_DOUBLE, AR_COUNT };
static const char *const ar_names[AR_COUNT] = {"i8", "i16", "i32", "i64",
                                               "double"};
static const uint8_t ar_width[AR_COUNT] = {1, 2, 4, 8, 8};

typedef struct lpt_Array {
  int32_t kind;
  int32_t pad_;
  size_t n;
  unsigned char *data;  /* inl below, or the block's */
  pt_block *blk;        /* large arrays: a block of the state's pool */
  unsigned char inl[];  /* 8-byte aligned, as Lua aligns userdata */
} lpt_Array;

/* Arrays above this keep their elements in a block of the state's pool:
 * a dead array's block is reused warm by the next one, where Lua
 * allocators map and unmap big blocks (page faults on every array). */
#define LPT_ARRAY_EXT_MIN 65536

/* Tell the collector about n bytes held outside its heap, so dead arrays
 * are found (and their blocks reused) as fast as new ones are made. Lua
 * 5.4's LUA_GCSTEP does an incremental step of that size. LuaJIT's runs
 * the collector until that much memory was freed: most of a cycle on every
 * call when little of a large heap is garbage (4 ms per 1 MiB array beside
 * a 24 MB heap). There, a full collection runs instead once the bytes
 * since the last one pass the Lua heap's size and 32 MiB: the pace of a
 * 200% pause, amortized. */
static void ext_pressure(lua_State *L, size_t n) {
#if LPT_LUAJIT
  lpt_State *S = lpt_state(L);
  S->ext_since += n;
  size_t heap = (size_t)lua_gc(L, LUA_GCCOUNT, 0) << 10;
  size_t lim = heap > ((size_t)32 << 20) ? heap : ((size_t)32 << 20);
  if (S->ext_since > lim) {
    S->ext_since = 0;
    lua_gc(L, LUA_GCCOLLECT, 0);
  }
#else
  lua_gc(L, LUA_GCSTEP, (int)(n >> 10));
#endif
}

/* Push a new array of n elements; mt: stack index of the array metatable,
 * or 0 to look it up. Elements are uninitialized. */
static lpt_Array *array_alloc(lua_State *L, int kind, size_t n, int mt) {
  size_t w = ar_width[kind];
  if (n > (SIZE_MAX / 2) / w) luaL_error(L, "array too large");
  size_t bytes = n * w;
  int ext = bytes >= LPT_ARRAY_EXT_MIN;
  lpt_Array *a = lua_newuserdata(L, sizeof *a + (ext ? 0 : bytes));
  a->kind = kind;
  a->n = n;
  a->blk = NULL;
  a->data = a->inl;
  if (mt)
    lua_pushvalue(L, mt);
  else
    luaL_getmetatable(L, LPT_ARRAY_MT);
  lua_setmetatable(L, -2);
  if (ext) {
    a->blk = pt_block_get(lpt_state(L)->pool, bytes);
    if (!a->blk) {
      a->n = 0;
      luaL_error(L, "out of memory");
    }
    a->data = (unsigned char *)a->blk->data;
    ext_pressure(L, bytes);
  }
  return a;
}

static int ar_kind_of(int k) {
  switch (k) {
    case PT_K_I8: return AR_I8;
    case PT_K_I16: return AR_I16;
    case PT_K_I32:
    case PT_K_ENUM: return AR_I32;
    case PT_K_I64: return AR_I64;
    case PT_K_DOUBLE: return AR_DOUBLE;
    default: return -1;
  }
}

/* ---- path stack for messages ----------------------------------------- */

typedef struct path_ent {
  const pt_plan *plan; /* struct frame: plan and field */
  int field;           /* fields[] index, -1 before one is known */
  int kind;            /* 0 struct, 1 element, 2 map key, 3 map value */
  int64_t index;       /* element index (1-based) */
} path_ent;

typedef struct Ctx {
  lua_State *L;
  lpt_State *S;
  int cx;         /* stack index of the context table's slots */
  int keys, defaults, enums;
  int list_mt, set_mt, map_mt, array_mt;
  int depth, max_depth;
  /* decode */
  const unsigned char *base, *p, *end;
  int typed, enum_names, keep_unknown;
  size_t presize;     /* table slots decode may still preallocate */
  char err[400];
  /* encode */
  unsigned char *w, *wend;
  size_t counted;     /* size mode: bytes measured and dropped */
  size_t link_min;    /* strings this long are links (buffer mode) */
  int mode;           /* 0 string, 1 buffer, 2 size */
  path_ent path[LPT_MAXDEPTH_LIMIT + 2]; /* last: not cleared per call */
} Ctx;

enum { M_STRING, M_BUFFER, M_SIZE };

static void path_format(Ctx *c, luaL_Buffer *b) {
  for (int i = 0; i <= c->depth && i <= LPT_MAXDEPTH_LIMIT; i++) {
    path_ent *e = &c->path[i];
    char tmp[64];
    if (e->kind == 0) {
      if (i == 0) luaL_addstring(b, e->plan->name);
      if (e->field >= 0) {
        luaL_addchar(b, '.');
        luaL_addstring(b, e->plan->fields[e->field].name);
      }
    } else if (e->kind == 1) {
      snprintf(tmp, sizeof tmp, "[%lld]", (long long)e->index);
      luaL_addstring(b, tmp);
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

static const char *ttype_name(int t) {
  switch (t) {
    case PT_T_BOOL: return "bool";
    case PT_T_BYTE: return "byte";
    case PT_T_DOUBLE: return "double";
    case PT_T_I16: return "i16";
    case PT_T_I32: return "i32";
    case PT_T_I64: return "i64";
    case PT_T_STRING: return "string";
    case PT_T_STRUCT: return "struct";
    case PT_T_MAP: return "map";
    case PT_T_SET: return "set";
    case PT_T_LIST: return "list";
    case PT_T_UUID: return "uuid";
    default: return "invalid type";
  }
}

/* ---- writer ----------------------------------------------------------- */

static void w_grow(Ctx *c, size_t need) {
  lpt_State *S = c->S;
  size_t used = (size_t)(c->w - S->wbuf);
  if (c->mode == M_SIZE) {
    c->counted += used;
    used = 0;
    c->w = S->wbuf;
    if (S->wcap >= need) {
      c->wend = S->wbuf + S->wcap;
      return;
    }
  }
  size_t cap = S->wcap ? S->wcap : 4096;
  while (cap - used < need) {
    if (cap > SIZE_MAX / 2) luaL_error(c->L, "message too large");
    cap *= 2;
  }
  unsigned char *nb = realloc(S->wbuf, cap);
  if (!nb) luaL_error(c->L, "out of memory");
  S->wbuf = nb;
  S->wcap = cap;
  c->w = nb + used;
  c->wend = nb + cap;
}

static inline void w_need(Ctx *c, size_t n) {
  if ((size_t)(c->wend - c->w) < n) w_grow(c, n);
}

static inline void w_u8(Ctx *c, unsigned v) { *c->w++ = (unsigned char)v; }
static inline void w_16(Ctx *c, uint16_t v) {
  pt_st16(c->w, v);
  c->w += 2;
}
static inline void w_32(Ctx *c, uint32_t v) {
  pt_st32(c->w, v);
  c->w += 4;
}
static inline void w_64(Ctx *c, uint64_t v) {
  pt_st64(c->w, v);
  c->w += 8;
}

/* Bytes of a string value at stack idx (its length prefix written). */
static void w_bytes(Ctx *c, int idx, const char *s, size_t n) {
  if (n > INT32_MAX) enc_error(c, "string of %zu bytes is too long", n);
  w_need(c, 4);
  w_32(c, (uint32_t)n);
  if (n >= c->link_min) {
    if (c->mode == M_SIZE) {
      c->counted += n;
      return;
    }
    lpt_State *S = c->S;
    if (S->nlinks == S->links_cap) {
      size_t cap = S->links_cap ? S->links_cap * 2 : 16;
      lpt_Link *nl = realloc(S->links, cap * sizeof *nl);
      if (!nl) luaL_error(c->L, "out of memory");
      S->links = nl;
      S->links_cap = cap;
    }
    lpt_Link *lk = &S->links[S->nlinks];
    lk->off = (size_t)(c->w - S->wbuf);
    lk->p = s;
    lk->n = n;
    lk->tag = lpt_anchor(c->L, idx);
    S->nlinks++;
    return;
  }
  w_need(c, n);
  memcpy(c->w, s, n);
  c->w += n;
}

/* Drop anchors left by an encode that raised before materializing. */
static void links_reset(lpt_State *S) {
  for (size_t i = 0; i < S->nlinks; i++)
    lpt_release_anchor(S, S->links[i].tag);
  S->nlinks = 0;
}

void lpt_state_free(lpt_State *S) {
#if LPT_LUAJIT
  free(S->fixv);
  free(S->fixi);
  S->fixv = NULL;
  S->fixi = NULL;
  S->fix_cap = 0;
#endif
  free(S->wbuf);
  free(S->links);
  free(S->ubuf);
  S->wbuf = NULL;
  S->links = NULL;
  S->ubuf = NULL;
  S->wcap = S->links_cap = S->ucap = S->ulen = S->nlinks = 0;
}

/* ---- encode ----------------------------------------------------------- */

static void enc_value(Ctx *c, const pt_type *t, int idx);

static const char *lua_type_name(lua_State *L, int idx) {
  return luaL_typename(L, idx);
}

static int64_t enc_int(Ctx *c, int idx, int64_t lo, int64_t hi,
                       const char *what) {
  int64_t v;
  if (!lpt_toi64(c->L, idx, &v)) {
    if (lua_type(c->L, idx) == LUA_TNUMBER)
      enc_error(c, "%s expected, got non-integral number", what);
    enc_error(c, "%s expected, got %s", what, lua_type_name(c->L, idx));
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
    enc_error(c, "uuid expected, got %s", lua_type_name(c->L, idx));
  const char *s = lua_tolstring(c->L, idx, &n);
  w_need(c, 16);
  if (n == 16) {
    memcpy(c->w, s, 16);
    c->w += 16;
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
  memcpy(c->w, out, 16);
  c->w += 16;
}

static void enc_scalar(Ctx *c, const pt_type *t, int idx) {
  lua_State *L = c->L;
  switch (t->kind) {
    case PT_K_BOOL:
      if (lua_type(L, idx) != LUA_TBOOLEAN)
        enc_error(c, "boolean expected, got %s", lua_type_name(L, idx));
      w_need(c, 1);
      w_u8(c, (unsigned)lua_toboolean(L, idx));
      return;
    case PT_K_I8:
      w_need(c, 1);
      w_u8(c, (unsigned)(uint8_t)enc_int(c, idx, -128, 127, "i8"));
      return;
    case PT_K_I16:
      w_need(c, 2);
      w_16(c, (uint16_t)enc_int(c, idx, INT16_MIN, INT16_MAX, "i16"));
      return;
    case PT_K_I32:
      w_need(c, 4);
      w_32(c, (uint32_t)enc_int(c, idx, INT32_MIN, INT32_MAX, "i32"));
      return;
    case PT_K_ENUM: {
      int32_t v = enc_enum(c, t, idx);
      w_need(c, 4);
      w_32(c, (uint32_t)v);
      return;
    }
    case PT_K_I64:
      w_need(c, 8);
      w_64(c, (uint64_t)enc_int(c, idx, INT64_MIN, INT64_MAX, "i64"));
      return;
    case PT_K_DOUBLE: {
      if (lua_type(L, idx) != LUA_TNUMBER)
        enc_error(c, "number expected, got %s", lua_type_name(L, idx));
      double d = (double)lua_tonumber(L, idx);
      uint64_t u;
      memcpy(&u, &d, 8);
      w_need(c, 8);
      w_64(c, u);
      return;
    }
    case PT_K_STRING:
    case PT_K_BINARY: {
      if (lua_type(L, idx) != LUA_TSTRING)
        enc_error(c, "string expected, got %s", lua_type_name(L, idx));
      size_t n;
      const char *s = lua_tolstring(L, idx, &n);
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
  e->index = 0;
}

static void enc_struct(Ctx *c, const pt_plan *p, int idx) {
  lua_State *L = c->L;
  if (lua_type(L, idx) != LUA_TTABLE)
    enc_error(c, "table expected for %s, got %s", p->name,
              lua_type_name(L, idx));
  luaL_checkstack(L, 8, "petrel: nesting too deep");
  path_ent *e = &c->path[c->depth];
  e->kind = 0;
  e->plan = p;
  int nset = 0;
  for (int k = 0; k < p->nfields; k++) {
    const pt_field *f = &p->fields[p->order[k]];
    e->field = p->order[k];
    lua_rawgeti(L, c->keys, p->key_base + f->index + 1);
    if (lpt_rawget(L, idx) == LUA_TNIL) {
      lua_pop(L, 1);
      if (f->has_default && f->req != PT_REQ_OPTIONAL) {
        lua_rawgeti(L, c->defaults, p->key_base + f->index + 1);
      } else {
        if (f->req == PT_REQ_REQUIRED) enc_error(c, "required field missing");
        continue;
      }
    }
    nset++;
    w_need(c, 3);
    w_u8(c, f->type->ttype);
    w_16(c, (uint16_t)f->id);
    enc_value(c, f->type, lua_gettop(L));
    lua_pop(L, 1);
  }
  e->field = -1;
  if (p->kind == PT_PLAN_UNION && nset > 1)
    enc_error(c, "union %s has %d fields set, at most one allowed", p->name,
              nset);
  lua_pushlightuserdata(L, (void *)&unknown_key);
  lua_rawget(L, idx);
  if (lua_type(L, -1) == LUA_TSTRING) { /* kept unknown fields, verbatim */
    size_t n;
    const char *u = lua_tolstring(L, -1, &n);
    w_need(c, n);
    memcpy(c->w, u, n);
    c->w += n;
  }
  lua_pop(L, 1);
  w_need(c, 1);
  w_u8(c, PT_T_STOP);
}

/* Typed array as a list/set body of elem type t. */
static int enc_array(Ctx *c, const pt_type *et, int idx) {
  lpt_Array *a = lua_touserdata(c->L, idx);
  if (!a || !lua_getmetatable(c->L, idx)) return 0;
  int ok = lua_rawequal(c->L, -1, c->array_mt);
  lua_pop(c->L, 1);
  if (!ok) return 0;
  if (a->kind != ar_kind_of(et->kind))
    enc_error(c, "petrel.array<%s> given for list<%s>", ar_names[a->kind],
              pt_kind_names[et->kind]);
  if (a->n > INT32_MAX) enc_error(c, "too many elements");
  size_t w = ar_width[a->kind];
  w_need(c, 5 + a->n * w);
  w_u8(c, et->ttype);
  w_32(c, (uint32_t)a->n);
  if (w == 1)
    memcpy(c->w, a->data, a->n);
  else
    pt_bswap_copy(c->w, a->data, a->n, (int)w);
  c->w += a->n * w;
  return 1;
}

/* Numeric list from a Lua array: values land native, then one swap pass. */
static int enc_numeric_list(Ctx *c, const pt_type *et, int idx, size_t n) {
  lua_State *L = c->L;
  int k = et->kind;
  size_t w = pt_kind_width(k);
  if (k != PT_K_I64 && k != PT_K_I32 && k != PT_K_I16 && k != PT_K_DOUBLE)
    return 0;
  w_need(c, n * w);
  unsigned char *start = c->w;
  path_ent *e = &c->path[c->depth];
#if LPT_LUAJIT
  if (n >= 16) {
    /* one JIT-compiled FFI loop fills native values; on a bad element the
     * loop below reports it */
    static const double lo[] = {[2] = -32768.0, [4] = -2147483648.0,
                                [8] = -9223372036854775808.0};
    static const double hi[] = {[2] = 32768.0, [4] = 2147483648.0,
                                [8] = 9223372036854775808.0};
    int kind = k == PT_K_DOUBLE ? 9 : (int)w;
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
      pt_bswap_copy(start, start, n, (int)w);
      c->w += n * w;
      return 1;
    }
  }
#endif
  /* Values are fetched in batches of up to 16 and popped together. */
  luaL_checkstack(L, 17, "petrel: stack");
  for (size_t base = 0; base < n; base += 16) {
    size_t m = n - base < 16 ? n - base : 16;
    for (size_t j = 0; j < m; j++) {
      size_t i = base + j;
      int vt = lpt_rawgeti(L, idx, (lua_Integer)(i + 1));
#if !LPT_LUAJIT
      if (vt == LUA_TNUMBER && k != PT_K_DOUBLE) {
        int ok;
        lua_Integer iv = lua_tointegerx(L, -1, &ok);
        if (ok) {
          if (k == PT_K_I64) {
            int64_t v = (int64_t)iv;
            memcpy(start + i * 8, &v, 8);
            continue;
          } else if (k == PT_K_I32 && iv >= INT32_MIN && iv <= INT32_MAX) {
            int32_t v = (int32_t)iv;
            memcpy(start + i * 4, &v, 4);
            continue;
          } else if (k == PT_K_I16 && iv >= INT16_MIN && iv <= INT16_MAX) {
            int16_t v = (int16_t)iv;
            memcpy(start + i * 2, &v, 2);
            continue;
          }
        }
      }
#else
      if (vt == LUA_TNUMBER && k != PT_K_DOUBLE) {
        double d = (double)lua_tonumber(L, -1);
        if (k == PT_K_I64 && d >= -9007199254740992.0 &&
            d <= 9007199254740992.0 && d == (double)(int64_t)d) {
          int64_t v = (int64_t)d;
          memcpy(start + i * 8, &v, 8);
          continue;
        }
      }
#endif
      e->index = (int64_t)i + 1;
      if (k == PT_K_DOUBLE) {
        if (vt != LUA_TNUMBER)
          enc_error(c, "number expected, got %s", lua_type_name(L, -1));
        double d = (double)lua_tonumber(L, -1);
        memcpy(start + i * 8, &d, 8);
      } else if (k == PT_K_I64) {
        int64_t v = enc_int(c, -1, INT64_MIN, INT64_MAX, "i64");
        memcpy(start + i * 8, &v, 8);
      } else if (k == PT_K_I32) {
        int32_t v = (int32_t)enc_int(c, -1, INT32_MIN, INT32_MAX, "i32");
        memcpy(start + i * 4, &v, 4);
      } else {
        int16_t v = (int16_t)enc_int(c, -1, INT16_MIN, INT16_MAX, "i16");
        memcpy(start + i * 2, &v, 2);
      }
    }
    lua_pop(L, (int)m);
  }
  pt_bswap_copy(start, start, n, (int)w);
  c->w += n * w;
  return 1;
}

static void enc_list(Ctx *c, const pt_type *t, int idx) {
  lua_State *L = c->L;
  const pt_type *et = t->elem;
  if (lua_type(L, idx) == LUA_TUSERDATA && enc_array(c, et, idx)) return;
  if (lua_type(L, idx) != LUA_TTABLE)
    enc_error(c, "table expected for %s<%s>, got %s", pt_kind_names[t->kind],
              pt_kind_names[et->kind], lua_type_name(L, idx));
  size_t n = lua_rawlen(L, idx);
  int keyset = 0;
  if (t->kind == PT_K_SET && n == 0) {
    /* {[v] = true, ...} form of a set */
    lua_pushnil(L);
    if (lua_next(L, idx)) {
      lua_pop(L, 2);
      keyset = 1;
      n = 0;
      lua_pushnil(L);
      while (lua_next(L, idx)) {
        lua_pop(L, 1);
        n++;
      }
    }
  }
  if (n > INT32_MAX) enc_error(c, "too many elements");
  w_need(c, 5);
  w_u8(c, et->ttype);
  w_32(c, (uint32_t)n);
  push_frame(c, 1, NULL);
  if (!keyset) {
    if ((et->kind == PT_K_STRING || et->kind == PT_K_BINARY) && n) {
      /* strings fetched 16 at a time and popped together */
      path_ent *e = &c->path[c->depth];
      luaL_checkstack(L, 17, "petrel: stack");
      for (size_t base = 0; base < n; base += 16) {
        size_t m = n - base < 16 ? n - base : 16;
        for (size_t j = 0; j < m; j++) {
          e->index = (int64_t)(base + j) + 1;
          if (lpt_rawgeti(L, idx, (lua_Integer)(base + j + 1)) != LUA_TSTRING)
            enc_error(c, "string expected, got %s", lua_type_name(L, -1));
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
  } else {
    path_ent *e = &c->path[c->depth];
    int64_t i = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      e->index = ++i;
      lua_pop(L, 1);
      enc_value(c, et, lua_gettop(L));
    }
  }
  c->depth--;
}

/* Map keys in ascending order when they are all strings or all integers:
 * the output is then deterministic (and matches C++ std::map). */
typedef struct mkey {
  const char *s;
  size_t n;
  int64_t i;
  const char *vs; /* string value, kept when the map's values are strings */
  size_t vn;
} mkey;

static int cmp_str(const void *a, const void *b) {
  const mkey *x = a, *y = b;
  size_t m = x->n < y->n ? x->n : y->n;
  int r = memcmp(x->s, y->s, m);
  if (r) return r;
  return (x->n > y->n) - (x->n < y->n);
}

static int cmp_int(const void *a, const void *b) {
  const mkey *x = a, *y = b;
  return (x->i > y->i) - (x->i < y->i);
}

static void enc_map(Ctx *c, const pt_type *t, int idx) {
  lua_State *L = c->L;
  if (lua_type(L, idx) != LUA_TTABLE)
    enc_error(c, "table expected for map, got %s", lua_type_name(L, idx));
  int kk = t->elem->kind;
  int strkeys = (kk == PT_K_STRING || kk == PT_K_BINARY);
  int intkeys = (kk == PT_K_I8 || kk == PT_K_I16 || kk == PT_K_I32 ||
                 kk == PT_K_I64 || kk == PT_K_ENUM);
  size_t n = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    n++;
  }
  if (n > INT32_MAX) enc_error(c, "too many entries");
  w_need(c, 6);
  w_u8(c, t->elem->ttype);
  w_u8(c, t->val->ttype);
  w_32(c, (uint32_t)n);
  push_frame(c, 2, NULL);
  path_ent *e = &c->path[c->depth];
  int sorted = 0;
  mkey *keys = NULL;
  if ((strkeys || intkeys) && n > 1) {
    /* collect, in a Lua-owned block so a raise cannot leak it */
    keys = lua_newuserdata(L, n * sizeof *keys);
    int kidx = lua_gettop(L);
    size_t i = 0;
    sorted = 1;
    int vk = t->val->kind;
    int strvals = (vk == PT_K_STRING || vk == PT_K_BINARY);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      keys[i].vs = NULL;
      if (strvals && lua_type(L, -1) == LUA_TSTRING)
        keys[i].vs = lua_tolstring(L, -1, &keys[i].vn);
      lua_pop(L, 1);
      if (strkeys && lua_type(L, -1) == LUA_TSTRING) {
        keys[i].s = lua_tolstring(L, -1, &keys[i].n);
      } else if (intkeys && lpt_toi64(L, -1, &keys[i].i)) {
#if LPT_LUAJIT
        if (lua_type(L, -1) != LUA_TNUMBER) sorted = 0; /* cdata key */
#endif
      } else {
        sorted = 0;
      }
      i++;
    }
    if (sorted) {
      qsort(keys, n, sizeof *keys, strkeys ? cmp_str : cmp_int);
      for (i = 0; i < n; i++) {
        e->kind = 2;
        e->index = (int64_t)i + 1;
        if (strkeys && keys[i].vs && keys[i].n < c->link_min &&
            keys[i].vn < c->link_min && keys[i].n <= INT32_MAX &&
            keys[i].vn <= INT32_MAX) {
          /* map<string,string>: both sides known, no Lua calls needed */
          w_need(c, 8 + keys[i].n + keys[i].vn);
          w_32(c, (uint32_t)keys[i].n);
          memcpy(c->w, keys[i].s, keys[i].n);
          c->w += keys[i].n;
          w_32(c, (uint32_t)keys[i].vn);
          memcpy(c->w, keys[i].vs, keys[i].vn);
          c->w += keys[i].vn;
          continue;
        }
        if (strkeys)
          lua_pushlstring(L, keys[i].s, keys[i].n);
        else
          lpt_pushi64(L, keys[i].i);
        enc_value(c, t->elem, lua_gettop(L));
        lua_rawget(L, idx);
        e->kind = 3;
        enc_value(c, t->val, lua_gettop(L));
        lua_pop(L, 1);
      }
    }
    lua_remove(L, kidx);
  }
  if (!sorted) {
    int64_t i = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      e->index = ++i;
      e->kind = 2;
      enc_value(c, t->elem, lua_gettop(L) - 1);
      e->kind = 3;
      enc_value(c, t->val, lua_gettop(L));
      lua_pop(L, 1);
    }
  }
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

static inline int need(Ctx *c, size_t n) {
  if ((size_t)(c->end - c->p) < n)
    return dec_error(c, "need %zu bytes, %zu left", n, (size_t)(c->end - c->p));
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

static void push_uuid(lua_State *L, const unsigned char *u) {
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

/* Value of wire type t->ttype at c->p; pushes it. */
static int dec_scalar(Ctx *c, const pt_type *t) {
  lua_State *L = c->L;
  const unsigned char *p = c->p;
  switch (t->kind) {
    case PT_K_BOOL:
      if (need(c, 1)) return -1;
      lua_pushboolean(L, p[0] != 0);
      c->p += 1;
      return 0;
    case PT_K_I8:
      if (need(c, 1)) return -1;
      lua_pushinteger(L, (int8_t)p[0]);
      c->p += 1;
      return 0;
    case PT_K_I16:
      if (need(c, 2)) return -1;
      lua_pushinteger(L, (int16_t)pt_ld16(p));
      c->p += 2;
      return 0;
    case PT_K_I32:
      if (need(c, 4)) return -1;
      lua_pushinteger(L, (int32_t)pt_ld32(p));
      c->p += 4;
      return 0;
    case PT_K_ENUM:
      if (need(c, 4)) return -1;
      c->p += 4;
      return dec_enum(c, t, (int32_t)pt_ld32(p));
    case PT_K_I64:
      if (need(c, 8)) return -1;
      lpt_pushi64(L, (int64_t)pt_ld64(p));
      c->p += 8;
      return 0;
    case PT_K_DOUBLE: {
      if (need(c, 8)) return -1;
      uint64_t u = pt_ld64(p);
      double d;
      memcpy(&d, &u, 8);
      lua_pushnumber(L, d);
      c->p += 8;
      return 0;
    }
    case PT_K_STRING:
    case PT_K_BINARY: {
      if (need(c, 4)) return -1;
      int32_t n = (int32_t)pt_ld32(p);
      if (n < 0) return dec_error(c, "negative string length %d", (int)n);
      if ((size_t)n > (size_t)(c->end - p - 4))
        return dec_error(c, "string length %d exceeds the %zu bytes left",
                         (int)n, (size_t)(c->end - p - 4));
#if LPT_LUAJIT
      if (n > LPT_MAX_STRING)
        return dec_error(c, "string length %d is more than a Lua string holds",
                         (int)n);
#endif
      lua_pushlstring(L, (const char *)p + 4, (size_t)n);
      c->p += 4 + (size_t)n;
      return 0;
    }
    case PT_K_UUID:
      if (need(c, 16)) return -1;
      push_uuid(L, p);
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
  e->index = 0;
  return 0;
}

/* Deep copy of the value at idx (defaults must not alias the schema's). */
static void push_copy(lua_State *L, int idx, int depth) {
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
    push_copy(L, -2, depth + 1);
    lua_rawset(L, -5);
    lua_pop(L, 1);
  }
  if (lua_getmetatable(L, idx)) lua_setmetatable(L, -2);
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
  for (;;) {
    if (need(c, 1)) return -1;
    int ft = *c->p;
    if (ft == PT_T_STOP) {
      c->p++;
      break;
    }
    if (need(c, 3)) return -1;
    int id = (int16_t)pt_ld16(c->p + 1);
    c->p += 3;
    int slot = pt_plan_slot(p, id);
    if (slot < 0 || p->fields[slot].type->ttype != ft) {
      /* unknown field, or a type we do not expect: skip it */
      size_t k = pt_skip(c->p, c->end, ft, c->max_depth - c->depth);
      if (!k)
        return dec_error(c, "cannot skip field %d of type %s", id,
                         ttype_name(ft));
      if (c->keep_unknown) {
        size_t need_cap = S->ulen + k + 3;
        if (need_cap > S->ucap) {
          size_t cap = S->ucap ? S->ucap : 256;
          while (cap < need_cap) cap *= 2;
          unsigned char *nb = realloc(S->ubuf, cap);
          if (!nb) luaL_error(L, "out of memory");
          S->ubuf = nb;
          S->ucap = cap;
        }
        memcpy(S->ubuf + S->ulen, c->p - 3, k + 3);
        S->ulen += k + 3;
      }
      c->p += k;
      continue;
    }
    const pt_field *f = &p->fields[slot];
    e->field = slot;
    lua_rawgeti(L, c->keys, p->key_base + f->index + 1);
    if (dec_value(c, f->type)) return -1;
    lua_rawset(L, tidx);
    if (track) seen[slot >> 6] |= (uint64_t)1 << (slot & 63);
  }
  e->field = -1;
  if (S->ulen > umark) {
#if LPT_LUAJIT
    if (S->ulen - umark > LPT_MAX_STRING)
      return dec_error(c, "unknown fields are more than a Lua string holds");
#endif
    lua_pushlightuserdata(L, (void *)&unknown_key);
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
      push_copy(L, -1, 0);
      lua_remove(L, -2);
      lua_rawset(L, tidx);
    }
  }
  return 0;
}

static const size_t min_width[17] = {
    [PT_T_BOOL] = 1, [PT_T_BYTE] = 1,  [PT_T_DOUBLE] = 8, [PT_T_I16] = 2,
    [PT_T_I32] = 4,  [PT_T_I64] = 8,   [PT_T_STRING] = 4, [PT_T_STRUCT] = 1,
    [PT_T_MAP] = 6,  [PT_T_SET] = 5,   [PT_T_LIST] = 5,   [PT_T_UUID] = 16};

static int dec_typed(Ctx *c, const pt_type *et, size_t n) {
  lua_State *L = c->L;
  int ak = ar_kind_of(et->kind);
  size_t w = ar_width[ak];
  lpt_Array *a = array_alloc(L, ak, n, c->array_mt);
  if (w == 1)
    memcpy(a->data, c->p, n);
  else
    pt_bswap_copy(a->data, c->p, n, (int)w);
  c->p += n * w;
  return 0;
}

static int dec_list(Ctx *c, const pt_type *t) {
  lua_State *L = c->L;
  const pt_type *et = t->elem;
  if (need(c, 5)) return -1;
  int wt = c->p[0];
  int32_t n = (int32_t)pt_ld32(c->p + 1);
  if (n < 0) return dec_error(c, "negative element count %d", (int)n);
  if (wt != et->ttype && n > 0)
    return dec_error(c, "%s element type %s, expected %s",
                     pt_kind_names[t->kind], ttype_name(wt),
                     ttype_name(et->ttype));
  c->p += 5;
  size_t mw = min_width[et->ttype];
  if ((size_t)n > (size_t)(c->end - c->p) / mw)
    return dec_error(c, "%d elements cannot fit in the %zu bytes left", (int)n,
                     (size_t)(c->end - c->p));
  /* every list is a level, as on encode (numeric ones too) */
  if (dec_frame(c, 1, NULL)) return -1;
  if ((c->typed || t->typed) && ar_kind_of(et->kind) >= 0 &&
      et->kind != PT_K_ENUM) {
    dec_typed(c, et, (size_t)n);
    c->depth--;
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
  switch (et->kind) {
    case PT_K_I64: {
#if !LPT_LUAJIT
      for (int32_t i = 0; i < n; i++) {
        lua_pushinteger(L, (lua_Integer)(int64_t)pt_ld64(p + 8 * (size_t)i));
        lua_rawseti(L, tidx, i + 1);
      }
#else
      /* exact doubles now; the rest become int64 cdata in one FFI loop */
      lpt_State *S = c->S;
      size_t nbig = 0;
      for (int32_t i = 0; i < n; i++) {
        int64_t v = (int64_t)pt_ld64(p + 8 * (size_t)i);
        if (v >= -9007199254740992LL && v <= 9007199254740992LL) {
          lua_pushnumber(L, (lua_Number)v);
          lua_rawseti(L, tidx, i + 1);
          continue;
        }
        if (nbig == S->fix_cap) {
          size_t cap = S->fix_cap ? S->fix_cap * 2 : 256;
          int64_t *nv = realloc(S->fixv, cap * sizeof *nv);
          if (nv) S->fixv = nv;
          int32_t *ni = realloc(S->fixi, cap * sizeof *ni);
          if (ni) S->fixi = ni;
          if (!nv || !ni) luaL_error(L, "out of memory");
          S->fix_cap = cap;
        }
        S->fixv[nbig] = v;
        S->fixi[nbig] = i + 1;
        nbig++;
      }
      if (nbig) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, S->i64_fix);
        lua_pushvalue(L, tidx);
        lua_pushlightuserdata(L, S->fixv);
        lua_pushlightuserdata(L, S->fixi);
        lua_pushinteger(L, (lua_Integer)nbig);
        lua_call(L, 4, 0);
      }
#endif
      c->p += 8 * (size_t)n;
      break;
    }
    default: {
      path_ent *e = &c->path[c->depth];
      for (int32_t i = 0; i < n; i++) {
        e->index = i + 1;
        if (dec_value(c, et)) return -1;
        lua_rawseti(L, tidx, i + 1);
      }
      break;
    }
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
  }
  c->depth--;
  lua_pushvalue(L, t->kind == PT_K_SET ? c->set_mt : c->list_mt);
  lua_setmetatable(L, tidx);
  return 0;
}

static int dec_map(Ctx *c, const pt_type *t) {
  lua_State *L = c->L;
  if (need(c, 6)) return -1;
  int kt = c->p[0], vt = c->p[1];
  int32_t n = (int32_t)pt_ld32(c->p + 2);
  if (n < 0) return dec_error(c, "negative entry count %d", (int)n);
  if (n > 0 && (kt != t->elem->ttype || vt != t->val->ttype))
    return dec_error(c, "map<%s,%s> on the wire, expected map<%s,%s>",
                     ttype_name(kt), ttype_name(vt),
                     ttype_name(t->elem->ttype), ttype_name(t->val->ttype));
  c->p += 6;
  size_t mw = min_width[t->elem->ttype] + min_width[t->val->ttype];
  if ((size_t)n > (size_t)(c->end - c->p) / mw)
    return dec_error(c, "%d entries cannot fit in the %zu bytes left", (int)n,
                     (size_t)(c->end - c->p));
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
    if (dec_value(c, t->elem)) return -1;
    if (lua_type(L, -1) == LUA_TNUMBER) {
      lua_Number d = lua_tonumber(L, -1);
      if (d != d) return dec_error(c, "NaN map key");
    }
    e->kind = 3;
    if (dec_value(c, t->val)) return -1;
    lua_rawset(L, tidx);
  }
  c->depth--;
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
      return dec_scalar(c, t);
  }
}

/* ---- Lua API: types --------------------------------------------------- */

static lpt_Type *check_type(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, LPT_TYPE_MT);
}

/* Pushes the context slots of type at idx and fills c. */
static void ctx_open(Ctx *c, lua_State *L, int tidx, const pt_plan *p) {
  memset(c, 0, offsetof(Ctx, path));
  c->L = L;
  c->S = lpt_state(L);
  c->max_depth = LPT_MAXDEPTH_DEFAULT;
  lpt_getuv(L, tidx);
  int cx = lua_gettop(L);
  for (int i = CX_KEYS; i <= CX_ARRAY_MT; i++) lua_rawgeti(L, cx, i);
  c->cx = cx;
  c->keys = cx + CX_KEYS;
  c->defaults = cx + CX_DEFAULTS;
  c->enums = cx + CX_ENUMS;
  c->list_mt = cx + CX_LIST_MT;
  c->set_mt = cx + CX_SET_MT;
  c->map_mt = cx + CX_MAP_MT;
  c->array_mt = cx + CX_ARRAY_MT;
  c->path[0].kind = 0;
  c->path[0].plan = p;
  c->path[0].field = -1;
}

static void read_opts(Ctx *c, lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) return;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_getfield(L, idx, "max_depth");
  if (!lua_isnil(L, -1))
    c->max_depth = (int)lpt_checkint(L, -1, 1, LPT_MAXDEPTH_LIMIT);
  lua_pop(L, 1);
  lua_getfield(L, idx, "typed");
  c->typed = lua_toboolean(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, idx, "enum_names");
  c->enum_names = lua_toboolean(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, idx, "unknown");
  c->keep_unknown = lua_toboolean(L, -1);
  lua_pop(L, 1);
}

/* Start an encode: the state's scratch, empty, with no pending links. */
static void scratch_begin(Ctx *c, lua_State *L) {
  lpt_State *S = c->S;
  links_reset(S);
  if (!S->wbuf) {
    S->wbuf = malloc(4096);
    if (!S->wbuf) luaL_error(L, "out of memory");
    S->wcap = 4096;
  }
  c->w = S->wbuf;
  c->wend = S->wbuf + S->wcap;
}

/* Encode the value at vidx into the state's scratch; returns its length. */
static size_t encode_into_scratch(Ctx *c, lua_State *L, const pt_plan *p,
                                  int vidx) {
  scratch_begin(c, L);
  enc_struct(c, p, vidx);
  return (size_t)(c->w - c->S->wbuf);
}

/* Append the scratch's n bytes to out, splicing in the linked strings. */
static void scratch_flush(lua_State *L, lpt_State *S, pt_buf *out, size_t n) {
  size_t at = 0;
  for (size_t i = 0; i < S->nlinks; i++) {
    lpt_Link *lk = &S->links[i];
    int fail = pt_buf_append(out, S->wbuf + at, lk->off - at) != 0;
    if (fail)
      lpt_release_anchor(S, lk->tag);
    else /* link releases the anchor itself when it fails */
      fail = pt_buf_link(out, lk->p, lk->n, lpt_release_anchor, S, lk->tag) != 0;
    if (fail) {
      for (size_t j = i + 1; j < S->nlinks; j++)
        lpt_release_anchor(S, S->links[j].tag);
      S->nlinks = 0;
      luaL_error(L, "out of memory");
    }
    at = lk->off;
  }
  S->nlinks = 0;
  if (pt_buf_append(out, S->wbuf + at, n - at) != 0)
    luaL_error(L, "out of memory");
}

/* T:encode(value [, buffer [, opts]]) -> string | buffer */
static int Lpt_type_encode(lua_State *L) {
  lpt_Type *T = check_type(L, 1);
  pt_buf *out = lua_isnoneornil(L, 3) ? NULL : lpt_checkbuf(L, 3);
  Ctx c;
  ctx_open(&c, L, 1, T->plan);
  read_opts(&c, L, 4);
  c.mode = out ? M_BUFFER : M_STRING;
  c.link_min = out ? out->nocopy_min : SIZE_MAX;
  size_t n = encode_into_scratch(&c, L, T->plan, 2);
  if (!out) {
    lua_pushlstring(L, (const char *)c.S->wbuf, n);
    return 1;
  }
  scratch_flush(L, c.S, out, n);
  lua_pushvalue(L, 3);
  return 1;
}

/* T:encode_message(value, buffer, name, mtype, seqid [, framed]) -> buffer
 * Appends one Thrift message: [frame length when framed], the strict
 * binary envelope (version|mtype, name, seqid) and the struct, in one pass
 * (large strings linked as with encode into a buffer). */
static int Lpt_type_encode_message(lua_State *L) {
  lpt_Type *T = check_type(L, 1);
  pt_buf *out = lpt_checkbuf(L, 3);
  size_t nlen;
  const char *name = luaL_checklstring(L, 4, &nlen);
  int mtype = (int)lpt_checkint(L, 5, 1, 4);
  int64_t seq = lpt_checkint(L, 6, INT32_MIN, UINT32_MAX);
  int framed = lua_toboolean(L, 7);
  if (nlen > INT32_MAX) return luaL_argerror(L, 4, "name too long");
  Ctx c;
  ctx_open(&c, L, 1, T->plan);
  c.mode = M_BUFFER;
  c.link_min = out->nocopy_min;
  scratch_begin(&c, L);
  w_need(&c, 16 + nlen);
  if (framed) w_32(&c, 0); /* patched below */
  w_32(&c, 0x80010000u | (uint32_t)mtype);
  w_32(&c, (uint32_t)nlen);
  memcpy(c.w, name, nlen);
  c.w += nlen;
  w_32(&c, (uint32_t)seq);
  enc_struct(&c, T->plan, 2);
  lpt_State *S = c.S;
  size_t n = (size_t)(c.w - S->wbuf);
  if (framed) {
    size_t total = n - 4;
    for (size_t i = 0; i < S->nlinks; i++) total += S->links[i].n;
    if (total > INT32_MAX) {
      links_reset(S);
      return luaL_error(L, "message too large for a frame");
    }
    pt_st32(S->wbuf, (uint32_t)total);
  }
  scratch_flush(L, S, out, n);
  lua_pushvalue(L, 3);
  return 1;
}

/* core.msg_header(s [, pos [, max_name]]) -> name, mtype, seqid, next_pos
 *   | nil (incomplete) | false, err (malformed)
 * Strict (0x8001 version word) and non-strict (name first) envelopes. */
static int Lpt_msg_header(lua_State *L) {
  size_t len;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
  int64_t pos = lua_isnoneornil(L, 2) ? 1 : lpt_checkint(L, 2, 1, INT64_MAX);
  int64_t maxn = lua_isnoneornil(L, 3) ? 65536 : lpt_checkint(L, 3, 0, INT32_MAX);
  if ((uint64_t)pos > len + 1) return 0;
  const unsigned char *p = s + pos - 1, *end = s + len;
  if (end - p < 4) return 0;
  uint32_t v = pt_ld32(p);
  int mtype;
  uint32_t nlen;
  const unsigned char *name;
  int32_t seqid;
  if (v & 0x80000000u) {
    if ((v & 0xffff0000u) != 0x80010000u) {
      lua_pushboolean(L, 0);
      lua_pushliteral(L, "bad protocol version");
      return 2;
    }
    mtype = (int)(v & 0xff);
    if (end - p < 8) return 0;
    nlen = pt_ld32(p + 4);
    if (nlen > (uint64_t)maxn) goto badname;
    if ((size_t)(end - p) < 12 + (size_t)nlen) return 0;
    name = p + 8;
    seqid = (int32_t)pt_ld32(p + 8 + nlen);
    p += 12 + nlen;
  } else {
    nlen = v;
    if (nlen > (uint64_t)maxn) goto badname;
    if ((size_t)(end - p) < 9 + (size_t)nlen) return 0;
    name = p + 4;
    mtype = p[4 + nlen];
    seqid = (int32_t)pt_ld32(p + 5 + nlen);
    p += 9 + nlen;
  }
  lua_pushlstring(L, (const char *)name, nlen);
  lua_pushinteger(L, mtype);
  lua_pushinteger(L, seqid);
  lua_pushinteger(L, (lua_Integer)(p - s) + 1);
  return 4;
badname:
  lua_pushboolean(L, 0);
  lua_pushliteral(L, "bad method name length");
  return 2;
}

/* T:size(value) -> bytes the encoding takes (BLength) */
static int Lpt_type_size(lua_State *L) {
  lpt_Type *T = check_type(L, 1);
  Ctx c;
  ctx_open(&c, L, 1, T->plan);
  c.mode = M_SIZE;
  c.link_min = 64; /* strings this long are counted, not copied */
  size_t n = encode_into_scratch(&c, L, T->plan, 2);
  lua_pushinteger(L, (lua_Integer)(c.counted + n));
  return 1;
}

/* Contiguous input: a string or a buffer's readable bytes. */
static const unsigned char *input_bytes(lua_State *L, int idx, size_t *len) {
  if (lua_type(L, idx) == LUA_TSTRING)
    return (const unsigned char *)lua_tolstring(L, idx, len);
  pt_buf *b = lpt_checkbuf(L, idx);
  *len = pt_buf_len(b);
  const char *p = pt_buf_peek(b, *len);
  if (!p) luaL_error(L, "out of memory");
  return (const unsigned char *)p;
}

/* T:decode(string | buffer [, pos [, opts]]) -> value, next_pos | nil, err */
static int Lpt_type_decode(lua_State *L) {
  lpt_Type *T = check_type(L, 1);
  size_t len;
  const unsigned char *s = input_bytes(L, 2, &len);
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

static int Lpt_type_name(lua_State *L) {
  lua_pushstring(L, check_type(L, 1)->plan->name);
  return 1;
}

static int Lpt_type_tostring(lua_State *L) {
  lpt_Type *T = check_type(L, 1);
  lua_pushfstring(L, "petrel.type<%s>", T->plan->name);
  return 1;
}

static int Lpt_type_gc(lua_State *L) {
  lpt_Type *T = luaL_checkudata(L, 1, LPT_TYPE_MT);
  pt_schema_unref(T->s);
  T->s = NULL;
  return 0;
}

/* T:fields() -> array of {id=, name=, type=, required=} (introspection) */
static int Lpt_type_fields(lua_State *L) {
  lpt_Type *T = check_type(L, 1);
  const pt_plan *p = T->plan;
  lua_createtable(L, p->nfields, 0);
  for (int k = 0; k < p->nfields; k++) {
    const pt_field *f = &p->fields[p->order[k]];
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, f->id);
    lua_setfield(L, -2, "id");
    lua_pushstring(L, f->name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, pt_kind_names[f->type->kind]);
    lua_setfield(L, -2, "kind");
    lua_pushstring(L, f->req == PT_REQ_REQUIRED   ? "required"
                      : f->req == PT_REQ_OPTIONAL ? "optional"
                                                  : "default");
    lua_setfield(L, -2, "required");
    lua_rawseti(L, -2, k + 1);
  }
  return 1;
}

/* ---- Lua API: compile ------------------------------------------------- */

static int kind_by_name(const char *s) {
  for (int k = 0; k < PT_K_COUNT; k++)
    if (strcmp(s, pt_kind_names[k]) == 0) return k;
  if (strcmp(s, "byte") == 0) return PT_K_I8;
  return -1;
}

/* Build a pt_type from a type description table at idx. */
static const pt_type *build_type(lua_State *L, pt_schema *s, int idx,
                                 int nplans, int depth) {
  idx = lua_absindex(L, idx);
  if (depth > 100) luaL_error(L, "type nesting too deep");
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_getfield(L, idx, "kind");
  const char *ks = lua_tostring(L, -1);
  int k = ks ? kind_by_name(ks) : -1;
  lua_pop(L, 1);
  if (k < 0) luaL_error(L, "unknown type kind '%s'", ks ? ks : "?");
  pt_type *t = pt_type_new(s, k);
  if (!t) luaL_error(L, "out of memory");
  switch (k) {
    case PT_K_LIST:
    case PT_K_SET:
      lua_getfield(L, idx, "elem");
      t->elem = build_type(L, s, -1, nplans, depth + 1);
      lua_pop(L, 1);
      lua_getfield(L, idx, "typed");
      t->typed = (uint8_t)lua_toboolean(L, -1);
      lua_pop(L, 1);
      break;
    case PT_K_MAP:
      lua_getfield(L, idx, "key");
      t->elem = build_type(L, s, -1, nplans, depth + 1);
      lua_pop(L, 1);
      lua_getfield(L, idx, "val");
      t->val = build_type(L, s, -1, nplans, depth + 1);
      lua_pop(L, 1);
      break;
    case PT_K_STRUCT: {
      lua_getfield(L, idx, "plan");
      int pi = (int)luaL_checkinteger(L, -1);
      lua_pop(L, 1);
      if (pi < 1 || pi > nplans) luaL_error(L, "bad plan index %d", pi);
      t->plan = pt_schema_plan(s, pi - 1);
      break;
    }
    case PT_K_ENUM:
      lua_getfield(L, idx, "enum");
      t->aux = (int32_t)luaL_checkinteger(L, -1) - 1;
      lua_pop(L, 1);
      break;
  }
  return t;
}

static int Lpt_schema_gc(lua_State *L) {
  lpt_Schema *S = luaL_checkudata(L, 1, LPT_SCHEMA_MT);
  pt_schema_unref(S->s);
  S->s = NULL;
  return 0;
}

/* core.compile(desc) -> { [i] = petrel.type } for desc.plans[i].
 * desc = { plans = { {name=, kind=0|1|2, fields = { {id=, name=, req=,
 *          type=<type desc>, default=<value>|nil} } } },
 *          enums = { { names = {[v]=name}, values = {[name]=v} } } }
 * type desc: {kind="i64"} {kind="list", elem=, typed=} {kind="map", key=,
 *   val=} {kind="struct", plan=i} {kind="enum", enum=i}. */
/* Push {[i] = petrel.type} for every plan of the finished schema s, with
 * one shared context table: field-name keys (from the plans), the defaults
 * table at didx and the enums table at eidx. */
static void push_types(lua_State *L, pt_schema *s, int didx, int eidx) {
  int nplans = pt_schema_nplans(s);
  lua_createtable(L, 7, 0);
  int cx = lua_gettop(L);
  lua_newtable(L);
  for (int i = 0; i < nplans; i++) {
    const pt_plan *p = pt_schema_plan(s, i);
    for (int j = 0; j < p->nfields; j++) {
      const pt_field *f = &p->fields[j];
      lua_pushstring(L, f->name);
      lua_rawseti(L, -2, p->key_base + f->index + 1);
    }
  }
  lua_rawseti(L, cx, CX_KEYS);
  lua_pushvalue(L, didx);
  lua_rawseti(L, cx, CX_DEFAULTS);
  lua_pushvalue(L, eidx);
  lua_rawseti(L, cx, CX_ENUMS);
  static const char *const mts[] = {"petrel.list", "petrel.set", "petrel.map"};
  for (int i = 0; i < 3; i++) {
    luaL_getmetatable(L, mts[i]);
    lua_rawseti(L, cx, CX_LIST_MT + i);
  }
  luaL_getmetatable(L, LPT_ARRAY_MT);
  lua_rawseti(L, cx, CX_ARRAY_MT);
  lua_createtable(L, nplans, 0);
  for (int i = 0; i < nplans; i++) {
    lpt_Type *T = lua_newuserdata(L, sizeof *T);
    T->s = s;
    T->plan = pt_schema_plan(s, i);
    pt_schema_ref(s);
    luaL_setmetatable(L, LPT_TYPE_MT);
    lua_pushvalue(L, cx);
    lpt_setuv(L, -2);
    lua_rawseti(L, -2, i + 1);
  }
  lua_remove(L, cx);
}

static int Lpt_compile(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "plans");
  int plans = lua_gettop(L);
  luaL_checktype(L, plans, LUA_TTABLE);
  int nplans = (int)lua_rawlen(L, plans);
  /* the builder's reference lives in a userdata, so errors cannot leak it */
  lpt_Schema *SU = lua_newuserdata(L, sizeof *SU);
  SU->s = NULL;
  luaL_setmetatable(L, LPT_SCHEMA_MT);
  pt_schema *s = SU->s = pt_schema_new(nplans);
  if (!s) return luaL_error(L, "out of memory");
  lua_newtable(L); /* defaults */
  int defaults = lua_gettop(L);
  int key = 0;
  for (int i = 0; i < nplans; i++) {
    lua_rawgeti(L, plans, i + 1);
    int pd = lua_gettop(L);
    lua_getfield(L, pd, "name");
    const char *name = luaL_checkstring(L, -1);
    lua_getfield(L, pd, "kind");
    int kind = (int)luaL_optinteger(L, -1, 0);
    lua_getfield(L, pd, "fields");
    int fl = lua_gettop(L);
    luaL_checktype(L, fl, LUA_TTABLE);
    int nf = (int)lua_rawlen(L, fl);
    if (pt_plan_init(s, i, name, kind, nf) != 0)
      return luaL_error(L, "%s", pt_schema_error(s));
    pt_schema_plan(s, i)->key_base = key;
    for (int j = 0; j < nf; j++) {
      lua_rawgeti(L, fl, j + 1);
      int fd = lua_gettop(L);
      lua_getfield(L, fd, "id");
      int id = (int)luaL_checkinteger(L, -1);
      lua_getfield(L, fd, "name");
      const char *fname = luaL_checkstring(L, -1);
      lua_getfield(L, fd, "req");
      int req = (int)luaL_optinteger(L, -1, 0);
      lua_getfield(L, fd, "type");
      const pt_type *ft = build_type(L, s, -1, nplans, 0);
      lua_getfield(L, fd, "default");
      int has_def = !lua_isnil(L, -1);
      if (has_def) {
        lua_pushvalue(L, -1);
        lua_rawseti(L, defaults, key + j + 1);
      }
      if (pt_plan_set_field(s, i, j, id, fname, req, has_def, ft) != 0)
        return luaL_error(L, "%s", pt_schema_error(s));
      lua_settop(L, fd - 1);
    }
    key += nf;
    lua_settop(L, pd - 1);
  }
  lua_getfield(L, 1, "meta");
  if (lua_type(L, -1) == LUA_TSTRING) {
    size_t n;
    const char *m = lua_tolstring(L, -1, &n);
    if (pt_schema_set_blob(s, m, n) != 0) return luaL_error(L, "out of memory");
  }
  lua_pop(L, 1);
  if (pt_schema_finish(s) != 0) return luaL_error(L, "%s", pt_schema_error(s));
  lua_getfield(L, 1, "enums");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
  }
  push_types(L, s, defaults, lua_gettop(L));
  return 1;
}

/* core.export(type) -> handle (light userdata) holding one reference to
 * the type's compiled schema, for core.adopt in another Lua state. */
static int Lpt_export(lua_State *L) {
  lpt_Type *T = check_type(L, 1);
  pt_schema_ref(T->s);
  /* a string passes through any thread or state library */
  lua_pushfstring(L, "petrel.schema:%p", (void *)T->s);
  return 1;
}

static pt_schema *handle_arg(lua_State *L, int idx) {
  void *p = NULL;
  const char *h = luaL_checkstring(L, idx);
  if (strncmp(h, "petrel.schema:", 14) != 0 || sscanf(h + 14, "%p", &p) != 1 ||
      !p)
    luaL_argerror(L, idx, "not a petrel.export handle");
  return p;
}

/* core.adopt_meta(handle) -> the meta string kept by compile */
static int Lpt_adopt_meta(lua_State *L) {
  pt_schema *s = handle_arg(L, 1);
  size_t n;
  const char *m = pt_schema_blob(s, &n);
  lua_pushlstring(L, m ? m : "", n);
  return 1;
}

/* core.adopt(handle, defaults, enums) -> types; consumes the handle's
 * reference (the handle must not be used again). */
static int Lpt_adopt(lua_State *L) {
  pt_schema *s = handle_arg(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TTABLE);
  /* hold the handle's reference in a userdata until the types own theirs */
  lpt_Schema *SU = lua_newuserdata(L, sizeof *SU);
  SU->s = s;
  luaL_setmetatable(L, LPT_SCHEMA_MT);
  push_types(L, s, 2, 3);
  return 1;
}

/* ---- typed arrays ------------------------------------------------------ */

static lpt_Array *check_array(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, LPT_ARRAY_MT);
}

static lpt_Array *new_array(lua_State *L, int kind, size_t n) {
  lpt_Array *a = array_alloc(L, kind, n, 0);
  memset(a->data, 0, n * ar_width[kind]);
  return a;
}

static int Lpt_array_gc(lua_State *L) {
  lpt_Array *a = luaL_checkudata(L, 1, LPT_ARRAY_MT);
  if (a->blk) pt_block_release(a->blk);
  a->blk = NULL;
  a->data = a->inl;
  a->n = 0;
  return 0;
}

static void array_set(lua_State *L, lpt_Array *a, size_t i, int vidx) {
  unsigned char *p = a->data + i * ar_width[a->kind];
  switch (a->kind) {
    case AR_I8: {
      int8_t v = (int8_t)lpt_checkint(L, vidx, INT8_MIN, INT8_MAX);
      memcpy(p, &v, 1);
      break;
    }
    case AR_I16: {
      int16_t v = (int16_t)lpt_checkint(L, vidx, INT16_MIN, INT16_MAX);
      memcpy(p, &v, 2);
      break;
    }
    case AR_I32: {
      int32_t v = (int32_t)lpt_checkint(L, vidx, INT32_MIN, INT32_MAX);
      memcpy(p, &v, 4);
      break;
    }
    case AR_I64: {
      int64_t v = lpt_checkint(L, vidx, INT64_MIN, INT64_MAX);
      memcpy(p, &v, 8);
      break;
    }
    default: {
      double d = (double)luaL_checknumber(L, vidx);
      memcpy(p, &d, 8);
    }
  }
}

static void array_push(lua_State *L, const lpt_Array *a, size_t i) {
  const unsigned char *p = a->data + i * ar_width[a->kind];
  switch (a->kind) {
    case AR_I8: lua_pushinteger(L, *(const int8_t *)p); break;
    case AR_I16: {
      int16_t v;
      memcpy(&v, p, 2);
      lua_pushinteger(L, v);
      break;
    }
    case AR_I32: {
      int32_t v;
      memcpy(&v, p, 4);
      lua_pushinteger(L, v);
      break;
    }
    case AR_I64: {
      int64_t v;
      memcpy(&v, p, 8);
      lpt_pushi64(L, v);
      break;
    }
    default: {
      double d;
      memcpy(&d, p, 8);
      lua_pushnumber(L, d);
    }
  }
}

/* petrel.array(kind, n | table) */
static int Lpt_array(lua_State *L) {
  static const char *const kinds[] = {"i8", "i16", "i32", "i64", "double",
                                      NULL};
  int kind = luaL_checkoption(L, 1, NULL, kinds);
  if (lua_istable(L, 2)) {
    size_t n = lua_rawlen(L, 2);
    lpt_Array *a = new_array(L, kind, n);
    for (size_t i = 0; i < n; i++) {
      lua_rawgeti(L, 2, (lua_Integer)i + 1);
      array_set(L, a, i, lua_gettop(L));
      lua_pop(L, 1);
    }
    return 1;
  }
  new_array(L, kind, (size_t)lpt_checkint(L, 2, 0, INT32_MAX));
  return 1;
}

static size_t array_index(lua_State *L, lpt_Array *a, int idx) {
  int64_t i = lpt_checkint(L, idx, INT64_MIN, INT64_MAX);
  if (i < 1 || (uint64_t)i > a->n) luaL_argerror(L, idx, "index out of range");
  return (size_t)(i - 1);
}

static int Lpt_array_index(lua_State *L) {
  lpt_Array *a = check_array(L, 1);
  if (lua_type(L, 2) == LUA_TSTRING) { /* methods */
    luaL_getmetatable(L, LPT_ARRAY_MT);
    lua_getfield(L, -1, "methods");
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    return 1;
  }
  int64_t i;
  if (!lpt_toi64(L, 2, &i) || i < 1 || (uint64_t)i > a->n) {
    lua_pushnil(L);
    return 1;
  }
  array_push(L, a, (size_t)(i - 1));
  return 1;
}

static int Lpt_array_newindex(lua_State *L) {
  lpt_Array *a = check_array(L, 1);
  array_set(L, a, array_index(L, a, 2), 3);
  return 0;
}

static int Lpt_array_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)check_array(L, 1)->n);
  return 1;
}

static int Lpt_array_totable(lua_State *L) {
  lpt_Array *a = check_array(L, 1);
  if (a->n > INT32_MAX) return luaL_error(L, "array too large for a table");
  lua_createtable(L, (int)a->n, 0);
  for (size_t i = 0; i < a->n; i++) {
    array_push(L, a, i);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

static int Lpt_array_kind(lua_State *L) {
  lua_pushstring(L, ar_names[check_array(L, 1)->kind]);
  return 1;
}

/* a:ptr() -> light userdata to the native-endian elements (for FFI) */
static int Lpt_array_ptr(lua_State *L) {
  lua_pushlightuserdata(L, check_array(L, 1)->data);
  return 1;
}

/* a:bytes() -> the elements' native bytes as a string */
static int Lpt_array_bytes(lua_State *L) {
  lpt_Array *a = check_array(L, 1);
  lua_pushlstring(L, (const char *)a->data, a->n * ar_width[a->kind]);
  return 1;
}

static int Lpt_array_tostring(lua_State *L) {
  lpt_Array *a = check_array(L, 1);
  lua_pushfstring(L, "petrel.array<%s>[%d]", ar_names[a->kind], (int)a->n);
  return 1;
}

static int Lpt_array_eq(lua_State *L) {
  lpt_Array *a = check_array(L, 1), *b = check_array(L, 2);
  lua_pushboolean(L, a->kind == b->kind && a->n == b->n &&
                         memcmp(a->data, b->data, a->n * ar_width[a->kind]) == 0);
  return 1;
}

/* ---- misc -------------------------------------------------------------- */

/* core.skip(string, pos, ttype [, max_depth]) -> next_pos | nil
 * (max_depth at most LPT_SKIP_MAXDEPTH: pt_skip recurses) */
static int Lpt_skip(lua_State *L) {
  size_t len;
  const unsigned char *s = input_bytes(L, 1, &len);
  int64_t pos = lpt_checkint(L, 2, 1, INT64_MAX);
  int t = (int)lpt_checkint(L, 3, 0, 255);
  lua_Integer d = luaL_optinteger(L, 4, LPT_MAXDEPTH_DEFAULT);
  int depth = d < 0 ? 0 : d > LPT_SKIP_MAXDEPTH ? LPT_SKIP_MAXDEPTH : (int)d;
  if ((uint64_t)pos > len + 1) return 0;
  size_t k = pt_skip(s + pos - 1, s + len, t, depth);
  if (!k) return 0;
  lua_pushinteger(L, (lua_Integer)(pos + (int64_t)k));
  return 1;
}

/* core.scanner(max_bytes [, max_depth]) -> a message scanner for unframed
 * transports: sc:feed(buf) looks at the bytes of buf it has not seen yet
 * and returns the length of the message at the front of buf once all of
 * it is there (then starts over for the next one), nil while it goes on,
 * or false, err for bytes that cannot be a message. */
#define LPT_SCANNER_MT "petrel.scanner"

static int Lpt_scanner(lua_State *L) {
  int64_t max = lpt_checkint(L, 1, 1, INT64_MAX);
  int depth = (int)luaL_optinteger(L, 2, LPT_MAXDEPTH_DEFAULT);
  pt_scan *s = lua_newuserdata(L, sizeof *s);
  pt_scan_init(s, (uint64_t)max, depth);
  luaL_setmetatable(L, LPT_SCANNER_MT);
  return 1;
}

static int Lpt_scanner_feed(lua_State *L) {
  pt_scan *s = luaL_checkudata(L, 1, LPT_SCANNER_MT);
  pt_buf *b = lpt_checkbuf(L, 2);
  if (pt_buf_len(b) < s->fed) pt_scan_reset(s); /* consumed elsewhere */
  uint64_t off = 0; /* buffer offset of node n's first readable byte */
  int r = s->err ? PT_SCAN_BAD : PT_SCAN_MORE;
  for (pt_node *n = b->head; n && r == PT_SCAN_MORE; n = n->next) {
    uint64_t nlen = (uint64_t)(n->wr - n->rd);
    if (off + nlen > s->fed) {
      size_t from = (size_t)(s->fed - off);
      r = pt_scan_feed(s, (const unsigned char *)n->rd + from,
                       (size_t)(nlen - from), NULL);
    }
    off += nlen;
  }
  if (r == PT_SCAN_MORE) return 0;
  if (r == PT_SCAN_DONE) {
    lua_pushinteger(L, (lua_Integer)s->fed);
    pt_scan_reset(s);
    return 1;
  }
  char msg[160];
  snprintf(msg, sizeof msg, "%s at offset %llu", s->err,
           (unsigned long long)s->fed);
  lua_pushboolean(L, 0);
  lua_pushstring(L, msg);
  return 2;
}

static int Lpt_scanner_reset(lua_State *L) {
  pt_scan_reset(luaL_checkudata(L, 1, LPT_SCANNER_MT));
  return 0;
}

/* core.simd([force_scalar]) -> "avx2" | "scalar" */
static int Lpt_simd(lua_State *L) {
  if (!lua_isnoneornil(L, 1)) pt_simd_force_scalar(lua_toboolean(L, 1));
  lua_pushstring(L, pt_simd_active() ? "avx2" : "scalar");
  return 1;
}

static const luaL_Reg type_methods[] = {
    {"encode", Lpt_type_encode}, {"decode", Lpt_type_decode},
    {"encode_message", Lpt_type_encode_message},
    {"size", Lpt_type_size},     {"name", Lpt_type_name},
    {"fields", Lpt_type_fields}, {NULL, NULL}};

static const luaL_Reg array_methods[] = {
    {"totable", Lpt_array_totable}, {"kind", Lpt_array_kind},
    {"ptr", Lpt_array_ptr},         {"bytes", Lpt_array_bytes},
    {NULL, NULL}};

static const luaL_Reg codec_funcs[] = {{"compile", Lpt_compile},
                                       {"export", Lpt_export},
                                       {"adopt", Lpt_adopt},
                                       {"adopt_meta", Lpt_adopt_meta},
                                       {"array", Lpt_array},
                                       {"skip", Lpt_skip},
                                       {"scanner", Lpt_scanner},
                                       {"msg_header", Lpt_msg_header},
                                       {"simd", Lpt_simd},
                                       {NULL, NULL}};

/* stack: module, state, buffer metatable */
void lpt_open_codec(lua_State *L) {
  int mod = lua_gettop(L) - 2;
  if (luaL_newmetatable(L, LPT_SCHEMA_MT)) {
    lua_pushcfunction(L, Lpt_schema_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);

  luaL_newmetatable(L, LPT_TYPE_MT);
  lua_newtable(L);
  lpt_setfuncs(L, -1, mod, type_methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, Lpt_type_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, Lpt_type_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);

  luaL_newmetatable(L, LPT_ARRAY_MT);
  lua_newtable(L);
  lpt_setfuncs(L, -1, mod, array_methods);
  lua_setfield(L, -2, "methods");
  static const luaL_Reg am[] = {{"__index", Lpt_array_index},
                                {"__newindex", Lpt_array_newindex},
                                {"__len", Lpt_array_len},
                                {"__tostring", Lpt_array_tostring},
                                {"__eq", Lpt_array_eq},
                                {"__gc", Lpt_array_gc},
                                {NULL, NULL}};
  lpt_setfuncs(L, -1, mod, am);
  lua_pushliteral(L, "petrel.array");
  lua_setfield(L, -2, "__name");
  lua_pop(L, 1);

  /* container metatables: marks only (petrel.list / set / map) */
  static const char *const mts[] = {"petrel.list", "petrel.set", "petrel.map"};
  for (int i = 0; i < 3; i++) {
    luaL_newmetatable(L, mts[i]);
    lua_pushstring(L, mts[i]);
    lua_setfield(L, -2, "__name");
    lua_setfield(L, mod, mts[i] + 7); /* module.list / .set / .map */
  }

  lua_pushlightuserdata(L, (void *)&unknown_key);
  lua_setfield(L, mod, "unknown");

  luaL_newmetatable(L, LPT_SCANNER_MT);
  lua_newtable(L);
  static const luaL_Reg sm[] = {{"feed", Lpt_scanner_feed},
                                {"reset", Lpt_scanner_reset},
                                {NULL, NULL}};
  lpt_setfuncs(L, -1, mod, sm);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);

  lpt_setfuncs(L, mod, mod, codec_funcs);
}
