/*
 * lpt_buf.c — petrel.buffer: the Lua face of the linked buffer (pt_buf).
 *
 * Misuse (wrong argument types, out-of-range integers) raises; running
 * short of readable bytes returns nil, err and leaves the buffer unchanged.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "lpt.h"

pt_buf *lpt_testbuf(lua_State *L, int idx) {
  pt_buf *b = lua_touserdata(L, idx);
  if (!b || !lua_getmetatable(L, idx)) return NULL;
  int ok = lua_rawequal(L, -1, lua_upvalueindex(2));
  lua_pop(L, 1);
  return ok ? b : NULL;
}

pt_buf *lpt_checkbuf(lua_State *L, int idx) {
  pt_buf *b = lpt_testbuf(L, idx);
  if (!b)
    luaL_argerror(L, idx, lua_pushfstring(L, "petrel.buffer expected, got %s",
                                          luaL_typename(L, idx)));
  if (!b->pool) luaL_argerror(L, idx, "buffer is finalized");
  return b;
}

pt_buf *lpt_newbuf(lua_State *L, pt_pool *pool) {
  pt_buf *b = lua_newuserdata(L, sizeof *b);
  pt_buf_init(b, pool);
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_setmetatable(L, -2);
  return b;
}

static int short_read(lua_State *L, pt_buf *b, size_t need) {
  lua_pushnil(L);
  lua_pushfstring(L, "not enough data: need %d bytes, have %d", (int)need,
                  (int)pt_buf_len(b));
  return 2;
}

static size_t check_size(lua_State *L, int idx) {
  return (size_t)lpt_checkint(L, idx, 0, INT64_MAX);
}

/* Push n bytes from the front; 0 when fewer are present. */
static int push_front(lua_State *L, pt_buf *b, size_t n) {
  const char *p = pt_buf_peek(b, n);
  if (!p) {
    if (n <= pt_buf_len(b)) luaL_error(L, "out of memory");
    return 0;
  }
  lua_pushlstring(L, p, n);
  return 1;
}

/* petrel.buffer([string | {pool=, nocopy=, block=}]) */
static int Lpt_buffer(lua_State *L) {
  lpt_State *S = lpt_state(L);
  pt_pool *pool = S->pool;
  size_t nocopy = PT_NOCOPY_DEFAULT, block = PT_BLOCK_DEFAULT;
  if (lua_istable(L, 1)) {
    lua_getfield(L, 1, "pool");
    if (!lua_isnil(L, -1)) pool = lpt_checkpool(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, 1, "nocopy");
    if (!lua_isnil(L, -1)) nocopy = (size_t)lpt_checkint(L, -1, 0, INT64_MAX);
    lua_pop(L, 1);
    lua_getfield(L, 1, "block");
    if (!lua_isnil(L, -1)) block = (size_t)lpt_checkint(L, -1, 64, 1 << 26);
    lua_pop(L, 1);
  } else if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TSTRING);
  }
  pt_buf *b = lpt_newbuf(L, pool);
  b->nocopy_min = nocopy ? nocopy : 1;
  b->block_size = block;
  if (lua_type(L, 1) == LUA_TSTRING && lpt_write_string(L, b, 1, 0) != 0)
    return luaL_error(L, "out of memory");
  return 1;
}

/* buf:write(...) -> buf. Strings (numbers as with io.write); strings of at
 * least the nocopy threshold are linked, not copied. */
static int Lpt_write(lua_State *L) {
  pt_buf *b = lpt_checkbuf(L, 1);
  int top = lua_gettop(L);
  for (int i = 2; i <= top; i++) {
    int t = lua_type(L, i);
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
      return luaL_argerror(L, i, lua_pushfstring(L, "string expected, got %s",
                                                 luaL_typename(L, i)));
    if (t == LUA_TNUMBER) {
      lua_pushvalue(L, i);
      lua_tostring(L, -1);
      lua_replace(L, i);
    }
    if (lpt_write_string(L, b, i, 0) != 0)
      return luaL_error(L, "out of memory");
  }
  lua_settop(L, 1);
  return 1;
}

/* buf:link(s) -> buf: append s without copying, whatever its length. */
static int Lpt_link(lua_State *L) {
  pt_buf *b = lpt_checkbuf(L, 1);
  luaL_checktype(L, 2, LUA_TSTRING);
  if (lpt_write_string(L, b, 2, 1) != 0) return luaL_error(L, "out of memory");
  lua_settop(L, 1);
  return 1;
}

/* buf:append(other) -> buf: move other's bytes in, no copy; other empties */
static int Lpt_append(lua_State *L) {
  pt_buf *b = lpt_checkbuf(L, 1);
  pt_buf *o = lpt_checkbuf(L, 2);
  pt_buf_move(b, o);
  lua_settop(L, 1);
  return 1;
}

/* buf:reserve(n) -> pointer (lightuserdata) to n writable bytes */
static int Lpt_reserve(lua_State *L) {
  pt_buf *b = lpt_checkbuf(L, 1);
  size_t n = check_size(L, 2);
  char *p = pt_buf_reserve(b, n);
  if (!p) return luaL_error(L, "out of memory");
  lua_pushlightuserdata(L, p);
  return 1;
}

/* buf:commit(n) -> buf: n bytes of the last reservation become readable */
static int Lpt_commit(lua_State *L) {
  pt_buf *b = lpt_checkbuf(L, 1);
  size_t n = check_size(L, 2);
  if (pt_buf_commit(b, n) != 0)
    return luaL_argerror(L, 2, "commit exceeds the reservation");
  lua_settop(L, 1);
  return 1;
}

/* buf:read([n]) -> string | nil, err (n omitted: everything) */
static int Lpt_read(lua_State *L) {
  pt_buf *b = lpt_checkbuf(L, 1);
  size_t n = lua_isnoneornil(L, 2) ? pt_buf_len(b) : check_size(L, 2);
  if (!push_front(L, b, n)) return short_read(L, b, n);
  pt_buf_skip(b, n);
  return 1;
}

/* buf:peek([n]) -> string | nil, err; nothing is consumed */
static int Lpt_peek(lua_State *L) {
  pt_buf *b = lpt_checkbuf(L, 1);
  size_t n = lua_isnoneornil(L, 2) ? pt_buf_len(b) : check_size(L, 2);
  if (!push_front(L, b, n)) return short_read(L, b, n);
  return 1;
}

/* buf:skip(n) -> buf | nil, err */
static int Lpt_skip(lua_State *L) {
  pt_buf *b = lpt_checkbuf(L, 1);
  size_t n = check_size(L, 2);
  if (pt_buf_skip(b, n) != 0) return short_read(L, b, n);
  lua_settop(L, 1);
  return 1;
}

/* buf:slice(n) -> new buffer sharing the next n bytes | nil, err */
static int Lpt_slice(lua_State *L) {
  pt_buf *b = lpt_checkbuf(L, 1);
  size_t n = check_size(L, 2);
  if (n > pt_buf_len(b)) return short_read(L, b, n);
  pt_buf *s = lpt_newbuf(L, b->pool);
  s->nocopy_min = b->nocopy_min;
  s->block_size = b->block_size;
  if (pt_buf_slice(b, n, s) != 0) return luaL_error(L, "out of memory");
  return 1;
}

/* buf:read_frame(max) -> the next length-prefixed frame (4-byte big-endian
 * length, then that many bytes) as a string, consumed | nil (not all here
 * yet) | false, err (length 0 or above max) */
static int Lpt_read_frame(lua_State *L) {
  pt_buf *b = lpt_checkbuf(L, 1);
  size_t max = (size_t)lpt_checkint(L, 2, 0, INT64_MAX);
  uint64_t len;
  if (pt_buf_peek_be(b, 0, 4, &len) != 0) return 0;
  if (len == 0 || len > max) {
    char msg[96];
    snprintf(msg, sizeof msg, "frame of %llu bytes (limit %llu)",
             (unsigned long long)len, (unsigned long long)max);
    lua_pushboolean(L, 0);
    lua_pushstring(L, msg);
    return 2;
  }
  if (pt_buf_len(b) - 4 < len) return 0;
  pt_buf_skip(b, 4);
  if (!push_front(L, b, (size_t)len)) return luaL_error(L, "out of memory");
  pt_buf_skip(b, (size_t)len);
  return 1;
}

/* buf:find(delim [, init]) -> start, end (1-based, plain) | nil */
static int Lpt_find(lua_State *L) {
  pt_buf *b = lpt_checkbuf(L, 1);
  size_t dlen;
  const char *d = luaL_checklstring(L, 2, &dlen);
  int64_t init = lua_isnoneornil(L, 3) ? 1 : lpt_checkint(L, 3, INT64_MIN,
                                                           INT64_MAX);
  int64_t len = (int64_t)pt_buf_len(b);
  if (init < 0) init = len + init + 1;
  if (init < 1) init = 1;
  if (init > len + 1) {
    lua_pushnil(L);
    return 1;
  }
  ptrdiff_t at = pt_buf_find(b, (size_t)(init - 1), d, dlen);
  if (at < 0) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushinteger(L, (lua_Integer)at + 1);
  lua_pushinteger(L, (lua_Integer)(at + (ptrdiff_t)dlen));
  return 2;
}

/* ---- big-endian numbers ----------------------------------------------- */

static int peek_int(lua_State *L, pt_buf *b, size_t off, int width, int sign,
                    int consume) {
  uint64_t v;
  if (pt_buf_peek_be(b, off, width, &v) != 0)
    return short_read(L, b, off + (size_t)width);
  if (consume) pt_buf_skip(b, (size_t)width);
  if (sign) {
    if (width < 8 && (v >> (width * 8 - 1)) & 1) v |= ~(uint64_t)0 << (width * 8);
    lpt_pushi64(L, (int64_t)v);
  } else {
    lpt_pushu64(L, v);
  }
  return 1;
}

static int write_int(lua_State *L, int width, int sign) {
  pt_buf *b = lpt_checkbuf(L, 1);
  int64_t lo, hi;
  if (width == 8) {
    lo = INT64_MIN;
    hi = INT64_MAX; /* u64 above 2^63-1: pass the wrapped signed value */
  } else if (sign) {
    lo = -((int64_t)1 << (width * 8 - 1));
    hi = ((int64_t)1 << (width * 8 - 1)) - 1;
  } else {
    lo = 0;
    hi = ((int64_t)1 << (width * 8)) - 1;
  }
  uint64_t v = (uint64_t)lpt_checkint(L, 2, lo, hi);
  unsigned char tmp[8];
  for (int i = width - 1; i >= 0; i--) {
    tmp[i] = (unsigned char)v;
    v >>= 8;
  }
  if (pt_buf_append(b, tmp, (size_t)width) != 0)
    return luaL_error(L, "out of memory");
  lua_settop(L, 1);
  return 1;
}

#define INT_FUNCS(name, width, sign)                                         \
  static int Lpt_read_##name(lua_State *L) {                                 \
    return peek_int(L, lpt_checkbuf(L, 1), 0, width, sign, 1);               \
  }                                                                          \
  static int Lpt_peek_##name(lua_State *L) {                                 \
    pt_buf *b = lpt_checkbuf(L, 1);                                          \
    size_t off = lua_isnoneornil(L, 2) ? 0 : check_size(L, 2);               \
    return peek_int(L, b, off, width, sign, 0);                              \
  }                                                                          \
  static int Lpt_write_##name(lua_State *L) { return write_int(L, width, sign); }

INT_FUNCS(u8, 1, 0)
INT_FUNCS(u16, 2, 0)
INT_FUNCS(u32, 4, 0)
INT_FUNCS(u64, 8, 0)
INT_FUNCS(i8, 1, 1)
INT_FUNCS(i16, 2, 1)
INT_FUNCS(i32, 4, 1)
INT_FUNCS(i64, 8, 1)

static int double_at(lua_State *L, size_t off, int consume) {
  pt_buf *b = lpt_checkbuf(L, 1);
  uint64_t v;
  if (pt_buf_peek_be(b, off, 8, &v) != 0) return short_read(L, b, off + 8);
  if (consume) pt_buf_skip(b, 8);
  double d;
  memcpy(&d, &v, 8);
  lua_pushnumber(L, d);
  return 1;
}

static int Lpt_read_double(lua_State *L) { return double_at(L, 0, 1); }
static int Lpt_peek_double(lua_State *L) {
  return double_at(L, lua_isnoneornil(L, 2) ? 0 : check_size(L, 2), 0);
}

static int Lpt_write_double(lua_State *L) {
  pt_buf *b = lpt_checkbuf(L, 1);
  double d = (double)luaL_checknumber(L, 2);
  uint64_t v;
  unsigned char tmp[8];
  memcpy(&v, &d, 8);
  for (int i = 7; i >= 0; i--) {
    tmp[i] = (unsigned char)v;
    v >>= 8;
  }
  if (pt_buf_append(b, tmp, 8) != 0) return luaL_error(L, "out of memory");
  lua_settop(L, 1);
  return 1;
}

/* ---- whole-buffer ------------------------------------------------------ */

static int Lpt_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)pt_buf_len(lpt_checkbuf(L, 1)));
  return 1;
}

static int Lpt_nodes(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)pt_buf_nodes(lpt_checkbuf(L, 1)));
  return 1;
}

/* tostring(buf): every readable byte, nothing consumed */
static int Lpt_tostring(lua_State *L) {
  pt_buf *b = lpt_checkbuf(L, 1);
  if (!push_front(L, b, pt_buf_len(b))) return luaL_error(L, "out of memory");
  return 1;
}

/* buf:clear() / buf:close() / __close: drop every byte, buffer stays usable */
static int Lpt_clear(lua_State *L) {
  pt_buf *b = lpt_checkbuf(L, 1);
  pt_buf_clear(b);
  lua_settop(L, 1);
  return 1;
}

static int Lpt_gc(lua_State *L) {
  pt_buf *b = lpt_testbuf(L, 1);
  if (b) pt_buf_free(b);
  return 0;
}

/* core._buf_layout() -> sizeof(pt_buf), offsetof len, offsetof nocopy_min:
 * lets lua/petrel/ffi.lua check that its cdef mirrors this build */
static int Lpt_buf_layout(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)sizeof(pt_buf));
  lua_pushinteger(L, (lua_Integer)offsetof(pt_buf, len));
  lua_pushinteger(L, (lua_Integer)offsetof(pt_buf, nocopy_min));
  return 3;
}

static const luaL_Reg buf_methods[] = {
    {"write", Lpt_write},         {"link", Lpt_link},
    {"append", Lpt_append},       {"reserve", Lpt_reserve},
    {"commit", Lpt_commit},       {"read", Lpt_read},
    {"peek", Lpt_peek},           {"skip", Lpt_skip},
    {"slice", Lpt_slice},         {"find", Lpt_find},
    {"read_frame", Lpt_read_frame},
    {"len", Lpt_len},             {"nodes", Lpt_nodes},
    {"clear", Lpt_clear},         {"close", Lpt_clear},
    {"read_u8", Lpt_read_u8},     {"peek_u8", Lpt_peek_u8},
    {"write_u8", Lpt_write_u8},   {"read_u16", Lpt_read_u16},
    {"peek_u16", Lpt_peek_u16},   {"write_u16", Lpt_write_u16},
    {"read_u32", Lpt_read_u32},   {"peek_u32", Lpt_peek_u32},
    {"write_u32", Lpt_write_u32}, {"read_u64", Lpt_read_u64},
    {"peek_u64", Lpt_peek_u64},   {"write_u64", Lpt_write_u64},
    {"read_i8", Lpt_read_i8},     {"peek_i8", Lpt_peek_i8},
    {"write_i8", Lpt_write_i8},   {"read_i16", Lpt_read_i16},
    {"peek_i16", Lpt_peek_i16},   {"write_i16", Lpt_write_i16},
    {"read_i32", Lpt_read_i32},   {"peek_i32", Lpt_peek_i32},
    {"write_i32", Lpt_write_i32}, {"read_i64", Lpt_read_i64},
    {"peek_i64", Lpt_peek_i64},   {"write_i64", Lpt_write_i64},
    {"read_double", Lpt_read_double},
    {"peek_double", Lpt_peek_double},
    {"write_double", Lpt_write_double},
    {NULL, NULL}};

static const luaL_Reg buf_meta[] = {
    {"__len", Lpt_len},
    {"__tostring", Lpt_tostring},
    {"__gc", Lpt_gc},
    {"__close", Lpt_clear},
    {NULL, NULL}};

static const luaL_Reg buf_funcs[] = {{"buffer", Lpt_buffer},
                                     {"_buf_layout", Lpt_buf_layout},
                                     {NULL, NULL}};

/* stack: module, state, buffer metatable */
void lpt_open_buffer(lua_State *L) {
  int mod = lua_gettop(L) - 2;
  lua_newtable(L); /* methods */
  lpt_setfuncs(L, -1, mod, buf_methods);
  lua_setfield(L, mod + 2, "__index");
  lua_pushliteral(L, LPT_BUFFER_MT);
  lua_setfield(L, mod + 2, "__name");
  lpt_setfuncs(L, mod + 2, mod, buf_meta);
  lpt_setfuncs(L, mod, mod, buf_funcs);
}
