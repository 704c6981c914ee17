/* floor.c — the Lua floor for bench/codec: what any Thrift decoder over
 * Lua tables must at least spend. decode() is a schema-less Binary decoder
 * building the same tables petrel builds, but keyed by field id (integer
 * keys), with no checks, no metatables, no defaults; walk() reads every
 * value of a table tree through the Lua C API and writes nothing (the
 * floor under an encoder). Not for production: it trusts its input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lauxlib.h"
#include "lua.h"

static const unsigned char *dec(lua_State *L, const unsigned char *p, int t);

static uint32_t ld32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint64_t ld64(const unsigned char *p) {
  return (uint64_t)ld32(p) << 32 | ld32(p + 4);
}

static const unsigned char *dec_struct(lua_State *L, const unsigned char *p) {
  lua_createtable(L, 0, 8);
  for (;;) {
    int t = *p++;
    if (!t) return p;
    int id = (int16_t)(p[0] << 8 | p[1]);
    p = dec(L, p + 2, t);
    lua_rawseti(L, -2, id);
  }
}

static const unsigned char *dec(lua_State *L, const unsigned char *p, int t) {
  switch (t) {
    case 2: lua_pushboolean(L, *p); return p + 1;
    case 3: lua_pushinteger(L, (int8_t)*p); return p + 1;
    case 4: { uint64_t u = ld64(p); double d; memcpy(&d, &u, 8); lua_pushnumber(L, d); return p + 8; }
    case 6: lua_pushinteger(L, (int16_t)(p[0] << 8 | p[1])); return p + 2;
    case 8: lua_pushinteger(L, (int32_t)ld32(p)); return p + 4;
    case 10: lua_pushinteger(L, (lua_Integer)(int64_t)ld64(p)); return p + 8;
    case 11: { uint32_t n = ld32(p); lua_pushlstring(L, (const char *)p + 4, n); return p + 4 + n; }
    case 12: return dec_struct(L, p);
    case 13: {
      int kt = p[0], vt = p[1];
      int32_t n = (int32_t)ld32(p + 2);
      p += 6;
      lua_createtable(L, 0, n);
      for (int32_t i = 0; i < n; i++) {
        p = dec(L, p, kt);
        p = dec(L, p, vt);
        lua_rawset(L, -3);
      }
      return p;
    }
    default: { /* 14 set, 15 list */
      int et = p[0];
      int32_t n = (int32_t)ld32(p + 1);
      p += 5;
      lua_createtable(L, n, 0);
      for (int32_t i = 0; i < n; i++) {
        p = dec(L, p, et);
        lua_rawseti(L, -2, i + 1);
      }
      return p;
    }
  }
}

static int l_decode(lua_State *L) {
  size_t n;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
  dec_struct(L, s);
  return 1;
}

static size_t walk(lua_State *L, int idx) {
  size_t k = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    switch (lua_type(L, -1)) {
      case LUA_TTABLE: k += walk(L, lua_gettop(L)); break;
      case LUA_TSTRING: { size_t n; k += lua_tolstring(L, -1, &n) != NULL; break; }
      case LUA_TNUMBER: k += lua_tointeger(L, -1) != 0 || lua_tonumber(L, -1) != 0; break;
      default: k += lua_toboolean(L, -1);
    }
    if (lua_type(L, -2) == LUA_TSTRING) { size_t n; lua_tolstring(L, -2, &n); }
    lua_pop(L, 1);
    k++;
  }
  return k;
}

static int l_walk(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_pushinteger(L, (lua_Integer)walk(L, 1));
  return 1;
}

/* memcpy(n): copy n bytes between two scratch areas (reference row) */
static int l_memcpy(lua_State *L) {
  static char *a, *b;
  static size_t cap;
  size_t n = (size_t)luaL_checkinteger(L, 1);
  int reps = (int)luaL_optinteger(L, 2, 1);
  if (n > cap) {
    a = realloc(a, n);
    b = realloc(b, n);
    memset(a, 1, n);
    cap = n;
  }
  for (int i = 0; i < reps; i++) {
    memcpy(b, a, n);
    __asm__ volatile("" : : "r"(b) : "memory");
  }
  return 0;
}

__attribute__((visibility("default"))) int luaopen_petrel_floor(lua_State *L) {
  lua_createtable(L, 0, 2);
  lua_pushcfunction(L, l_decode);
  lua_setfield(L, -2, "decode");
  lua_pushcfunction(L, l_walk);
  lua_setfield(L, -2, "walk");
  lua_pushcfunction(L, l_memcpy);
  lua_setfield(L, -2, "memcpy");
  return 1;
}
