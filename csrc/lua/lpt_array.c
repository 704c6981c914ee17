/*
 * lpt_array.c — petrel.array: typed numeric arrays (i8/i16/i32/i64/double,
 * native endian, contiguous) that the codec fills and reads for numeric
 * lists in one pass.
 */
#include <stdlib.h>
#include <string.h>

#include "lpt_codec.h"

const char *const lpt_ar_names[AR_COUNT] = {"i8", "i16", "i32", "i64",
                                            "double"};
const uint8_t lpt_ar_width[AR_COUNT] = {1, 2, 4, 8, 8};

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
lpt_Array *lpt_array_alloc(lua_State *L, int kind, size_t n, int mt) {
  size_t w = lpt_ar_width[kind];
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

int lpt_ar_kind_of(int k) {
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

static lpt_Array *check_array(lua_State *L, int idx) {
  return lpt_checkudata(L, idx, LPT_ARRAY_MT);
}

static lpt_Array *new_array(lua_State *L, int kind, size_t n) {
  lpt_Array *a = lpt_array_alloc(L, kind, n, 0);
  memset(a->data, 0, n * lpt_ar_width[kind]);
  return a;
}

static int Lpt_array_gc(lua_State *L) {
  lpt_Array *a = lpt_checkudata(L, 1, LPT_ARRAY_MT);
  if (a->blk) pt_block_release(a->blk);
  a->blk = NULL;
  a->data = a->inl;
  a->n = 0;
  return 0;
}

static void array_set(lua_State *L, lpt_Array *a, size_t i, int vidx) {
  unsigned char *p = a->data + i * lpt_ar_width[a->kind];
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
  const unsigned char *p = a->data + i * lpt_ar_width[a->kind];
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
  lua_pushstring(L, lpt_ar_names[check_array(L, 1)->kind]);
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
  lua_pushlstring(L, (const char *)a->data, a->n * lpt_ar_width[a->kind]);
  return 1;
}

static int Lpt_array_tostring(lua_State *L) {
  lpt_Array *a = check_array(L, 1);
  lua_pushfstring(L, "petrel.array<%s>[%d]", lpt_ar_names[a->kind], (int)a->n);
  return 1;
}

static int Lpt_array_eq(lua_State *L) {
  lpt_Array *a = check_array(L, 1), *b = check_array(L, 2);
  lua_pushboolean(L, a->kind == b->kind && a->n == b->n &&
                         memcmp(a->data, b->data, a->n * lpt_ar_width[a->kind]) == 0);
  return 1;
}

static const luaL_Reg array_methods[] = {
    {"totable", Lpt_array_totable}, {"kind", Lpt_array_kind},
    {"ptr", Lpt_array_ptr},         {"bytes", Lpt_array_bytes},
    {NULL, NULL}};

static const luaL_Reg array_funcs[] = {{"array", Lpt_array}, {NULL, NULL}};

/* stack: module, state, buffer metatable */
void lpt_open_array(lua_State *L) {
  int mod = lua_gettop(L) - 2;
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
  lpt_setfuncs(L, mod, mod, array_funcs);
}
