/*
 * lpt_core.c — luaopen_petrel_core: per-state binding state, pools, the
 * 64-bit integer compat layer and string anchors for no-copy nodes.
 */
#include <math.h>
#include <string.h>
#include <time.h>

#include "lpt.h"

/* ---- anchors: Lua strings referenced by no-copy nodes ---------------- */

intptr_t lpt_anchor(lua_State *L, int idx) {
  lpt_State *S = lpt_state(L);
  lua_pushvalue(L, idx);
  lua_xmove(L, S->AL, 1);
  S->anchored++;
  return (intptr_t)luaL_ref(S->AL, 1);
}

void lpt_release_anchor(void *ctx, intptr_t tag) {
  lpt_State *S = ctx;
  luaL_unref(S->AL, 1, (int)tag);
  S->anchored--;
}

int lpt_write_string(lua_State *L, pt_buf *b, int idx, int force_link) {
  size_t n;
  const char *s = lua_tolstring(L, idx, &n);
  if (n && (force_link || n >= b->nocopy_min)) {
    lpt_State *S = lpt_state(L);
    return pt_buf_link(b, s, n, lpt_release_anchor, S, lpt_anchor(L, idx));
  }
  return pt_buf_append(b, s, n);
}

/* ---- 64-bit integers -------------------------------------------------- */

#define TWO53 9007199254740992.0
#define TWO63 9223372036854775808.0

#if LPT_LUAJIT
/* ctype ids fixed by LuaJIT's lj_ctype.h */
#define CTID_INT64 11
#define CTID_UINT64 12

static int cdata_id(lua_State *L, int idx) {
  lpt_State *S = lpt_state(L);
  const char *p = lua_topointer(L, idx);
  if (!p || S->ctid_off <= 0) return -1;
  uint16_t id;
  memcpy(&id, p - S->ctid_off, sizeof id);
  return id;
}

static void push_cdata64(lua_State *L, int ctor, uint64_t v) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, ctor);
  lua_call(L, 0, 1);
  memcpy((void *)lua_topointer(L, -1), &v, sizeof v);
}
#endif

int lpt_toi64(lua_State *L, int idx, int64_t *out) {
#if LPT_LUAJIT
  if (lua_type(L, idx) == LUA_TNUMBER) {
    lua_Number d = lua_tonumber(L, idx);
    if (d != floor(d) || d < -TWO63 || d >= TWO63) return 0;
    *out = (int64_t)d;
    return 1;
  }
  if (lua_type(L, idx) == LUA_TCDATA) {
    int id = cdata_id(L, idx);
    if (id == CTID_INT64 || id == CTID_UINT64) {
      memcpy(out, lua_topointer(L, idx), sizeof *out);
      return 1;
    }
  }
  return 0;
#else
  if (lua_isinteger(L, idx)) {
    *out = (int64_t)lua_tointeger(L, idx);
    return 1;
  }
  if (lua_type(L, idx) == LUA_TNUMBER) {
    lua_Number d = lua_tonumber(L, idx);
    if (d != floor(d) || d < -TWO63 || d >= TWO63) return 0;
    *out = (int64_t)d;
    return 1;
  }
  return 0;
#endif
}

void lpt_pushi64(lua_State *L, int64_t v) {
#if LPT_LUAJIT
  if (v >= -(int64_t)9007199254740992LL && v <= (int64_t)9007199254740992LL)
    lua_pushnumber(L, (lua_Number)v);
  else
    push_cdata64(L, lpt_state(L)->i64_ctor, (uint64_t)v);
#else
  lua_pushinteger(L, (lua_Integer)v);
#endif
}

void lpt_pushu64(lua_State *L, uint64_t v) {
#if LPT_LUAJIT
  if (v <= 9007199254740992ULL)
    lua_pushnumber(L, (lua_Number)v);
  else
    push_cdata64(L, lpt_state(L)->u64_ctor, v);
#else
  lua_pushinteger(L, (lua_Integer)v);
#endif
}

int64_t lpt_checkint(lua_State *L, int idx, int64_t lo, int64_t hi) {
  int64_t v;
  if (!lpt_toi64(L, idx, &v)) {
    if (lua_type(L, idx) == LUA_TNUMBER)
      luaL_argerror(L, idx, "number has no integer representation");
    luaL_argerror(L, idx, lua_pushfstring(L, "integer expected, got %s",
                                          luaL_typename(L, idx)));
    return 0;
  }
  if (v < lo || v > hi) luaL_argerror(L, idx, "value out of range");
  return v;
}

/* ---- pools ------------------------------------------------------------ */

pt_pool *lpt_checkpool(lua_State *L, int idx) {
  lpt_Pool *p = lpt_checkudata(L, idx, LPT_POOL_MT);
  if (!p->pool) luaL_argerror(L, idx, "pool is closed");
  return p->pool;
}

static lpt_Pool *push_pool(lua_State *L, pt_pool *pool) {
  lpt_Pool *p = lua_newuserdata(L, sizeof *p);
  p->pool = pool;
  luaL_setmetatable(L, LPT_POOL_MT);
  return p;
}

static size_t opt_size(lua_State *L, int t, const char *key, size_t def) {
  size_t v = def;
  lua_getfield(L, t, key);
  if (!lua_isnil(L, -1)) v = (size_t)lpt_checkint(L, -1, 0, INT64_MAX);
  lua_pop(L, 1);
  return v;
}

/* petrel.pool([{idle_cap = bytes}]) -> a new pool */
static int Lpt_pool(lua_State *L) {
  size_t cap = PT_IDLE_CAP_DEFAULT;
  if (lua_istable(L, 1)) cap = opt_size(L, 1, "idle_cap", cap);
  pt_pool *pool = pt_pool_new(0);
  if (!pool) return luaL_error(L, "out of memory");
  pt_pool_set_idle_cap(pool, cap);
  push_pool(L, pool);
  return 1;
}

static int Lpt_pool_gc(lua_State *L) {
  lpt_Pool *p = lpt_checkudata(L, 1, LPT_POOL_MT);
  if (p->pool) pt_pool_close(p->pool);
  p->pool = NULL;
  return 0;
}

static void set_num(lua_State *L, const char *k, double v) {
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, k);
}

/* pool:stats() -> table; petrel.pool_stats() for the default pool */
static int Lpt_pool_stats(lua_State *L) {
  pt_pool *pool = lua_isnoneornil(L, 1) ? lpt_state(L)->pool
                                        : lpt_checkpool(L, 1);
  pt_pool_stats st;
  pt_pool_stats_get(pool, &st);
  lua_createtable(L, 0, 16);
  lua_createtable(L, PT_NCLASS, 0);
  size_t in_use = 0, idle = 0;
  for (int i = 0; i < PT_NCLASS; i++) {
    lua_createtable(L, 0, 5);
    set_num(L, "size", (double)st.cls[i].size);
    set_num(L, "in_use", (double)st.cls[i].in_use);
    set_num(L, "idle", (double)st.cls[i].idle);
    set_num(L, "hits", (double)st.cls[i].hits);
    set_num(L, "misses", (double)st.cls[i].misses);
    lua_rawseti(L, -2, i + 1);
    in_use += st.cls[i].in_use;
    idle += st.cls[i].idle;
  }
  lua_setfield(L, -2, "classes");
  set_num(L, "blocks_in_use", (double)in_use);
  set_num(L, "blocks_idle", (double)idle);
  set_num(L, "bytes_in_use", (double)st.bytes_in_use);
  set_num(L, "bytes_idle", (double)st.bytes_idle);
  set_num(L, "idle_cap", (double)st.idle_cap);
  set_num(L, "hits", (double)st.hits);
  set_num(L, "misses", (double)st.misses);
  set_num(L, "huge_blocks", (double)st.huge_blocks);
  set_num(L, "huge_bytes", (double)st.huge_bytes);
  set_num(L, "nocopy_blocks", (double)st.ext_blocks);
  set_num(L, "nocopy_bytes", (double)st.ext_bytes);
  set_num(L, "buffers", (double)st.buffers);
  set_num(L, "retained_blocks", (double)st.retained_blocks);
  set_num(L, "retained_bytes", (double)st.retained_bytes);
  if (pool == lpt_state(L)->pool)
    set_num(L, "anchored", (double)lpt_state(L)->anchored);
  return 1;
}

static int Lpt_pool_trim(lua_State *L) {
  pt_pool_trim(lpt_checkpool(L, 1));
  return 0;
}

static int Lpt_pool_set_idle_cap(lua_State *L) {
  pt_pool *pool = lpt_checkpool(L, 1);
  pt_pool_set_idle_cap(pool, (size_t)lpt_checkint(L, 2, 0, INT64_MAX));
  lua_settop(L, 1);
  return 1;
}

/* petrel.default_pool() -> the pool buffers use unless told otherwise */
static int Lpt_default_pool(lua_State *L) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, lpt_state(L)->pool_ref);
  return 1;
}

/* petrel.clock() -> monotonic seconds (a double, ns resolution) */
static int Lpt_clock(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
  return 1;
}

/* ---- state ------------------------------------------------------------ */

void *lpt_testudata(lua_State *L, int idx, const char *tname) {
  void *p = lua_touserdata(L, idx);
  if (!p) return NULL;
  /* upvalue 1 of every binding function is the state (lpt_state) */
  lpt_State *S = lpt_state(L);
  if (!S || S->magic != LPT_STATE_MAGIC) return luaL_testudata(L, idx, tname);
  if (!lua_getmetatable(L, idx)) return NULL;
  const void *mt = lua_topointer(L, -1);
  lua_pop(L, 1);
  /* one slot per name, by the name's address; a name whose slot another
   * holds is looked up by name each time */
  size_t n = sizeof S->mtc / sizeof S->mtc[0];
  size_t i = (uintptr_t)tname % n;
  if (S->mtc[i].name == tname) return S->mtc[i].mt == mt ? p : NULL;
  /* the name's first use: its metatable in the registry (which stays
   * there, at the same address, for the state's life) */
  luaL_getmetatable(L, tname);
  const void *want = lua_topointer(L, -1);
  lua_pop(L, 1);
  if (want && !S->mtc[i].name) {
    S->mtc[i].name = tname;
    S->mtc[i].mt = want;
  }
  return want && want == mt ? p : NULL;
}

void *lpt_checkudata(lua_State *L, int idx, const char *tname) {
  void *p = lpt_testudata(L, idx, tname);
  return p ? p : luaL_checkudata(L, idx, tname);
}

static int Lpt_state_gc(lua_State *L) {
  lpt_State *S = lua_touserdata(L, 1);
  lpt_state_free(S); /* the default pool's userdata closes the pool */
  return 0;
}

void lpt_setfuncs(lua_State *L, int t, int mod, const luaL_Reg *l) {
  t = lua_absindex(L, t);
  mod = lua_absindex(L, mod);
  for (; l->name; l++) {
    lua_pushvalue(L, mod + 1);
    lua_pushvalue(L, mod + 2);
    lua_pushcclosure(L, l->func, 2);
    lua_setfield(L, t, l->name);
  }
}

#if LPT_LUAJIT
static void luajit_setup(lua_State *L, lpt_State *S) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "ffi");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "typeof");
  lua_pushliteral(L, "int64_t");
  lua_call(L, 1, 1);
  S->i64_ctor = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_getfield(L, -1, "typeof");
  lua_pushliteral(L, "uint64_t");
  lua_call(L, 1, 1);
  S->u64_ctor = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 1);
  /* Find where the ctype id sits relative to the payload pointer. */
  lua_rawgeti(L, LUA_REGISTRYINDEX, S->i64_ctor);
  lua_call(L, 0, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, S->u64_ctor);
  lua_call(L, 0, 1);
  const char *a = lua_topointer(L, -2), *b = lua_topointer(L, -1);
  S->ctid_off = 0;
  for (int off = 2; off <= 16; off += 2) {
    uint16_t ia, ib;
    memcpy(&ia, a - off, 2);
    memcpy(&ib, b - off, 2);
    if (ia == CTID_INT64 && ib == CTID_UINT64) {
      S->ctid_off = off;
      break;
    }
  }
  lua_pop(L, 2);
  if (!S->ctid_off) luaL_error(L, "petrel: cannot read LuaJIT int64 cdata");
  /* Decoded lists store their big i64 values through one FFI loop (JIT
   * compiled) instead of one C->Lua call per cdata. */
  static const char fix[] =
      "local ffi = require 'ffi'\n"
      "local vp, ip = ffi.typeof('int64_t *'), ffi.typeof('int32_t *')\n"
      "return function(t, v, ix, n)\n"
      "  v, ix = ffi.cast(vp, v), ffi.cast(ip, ix)\n"
      "  for i = 0, n - 1 do t[ix[i]] = v[i] end\n"
      "end\n";
  if (luaL_loadstring(L, fix) != 0) lua_error(L);
  lua_call(L, 0, 1);
  S->i64_fix = luaL_ref(L, LUA_REGISTRYINDEX);
  /* Encoding numeric lists: one JIT-compiled loop copies t[1..n] into
   * native memory, checking each value; returns the first bad index or 0
   * (the C encoder then reports that element with the usual message). */
  static const char fill[] =
      "local ffi = require 'ffi'\n"
      "local P = { [2] = ffi.typeof('int16_t *'), [4] = ffi.typeof('int32_t *'),\n"
      "  [8] = ffi.typeof('int64_t *'), [9] = ffi.typeof('double *') }\n"
      "local i64, u64 = ffi.typeof('int64_t'), ffi.typeof('uint64_t')\n"
      "local istype, floor, type = ffi.istype, math.floor, type\n"
      "return function(t, p, n, kind, lo, hi)\n"
      "  local q = ffi.cast(P[kind], p)\n"
      "  if kind == 9 then\n"
      "    for i = 1, n do\n"
      "      local v = t[i]\n"
      "      if type(v) ~= 'number' then return i end\n"
      "      q[i - 1] = v\n"
      "    end\n"
      "    return 0\n"
      "  end\n"
      "  for i = 1, n do\n"
      "    local v = t[i]\n"
      "    if type(v) == 'number' then\n"
      "      if v ~= floor(v) or v < lo or v >= hi then return i end\n"
      "      q[i - 1] = v\n"
      "    elseif kind == 8 and (istype(i64, v) or istype(u64, v)) then\n"
      "      q[i - 1] = v\n"
      "    else\n"
      "      return i\n"
      "    end\n"
      "  end\n"
      "  return 0\n"
      "end\n";
  if (luaL_loadstring(L, fill) != 0) lua_error(L);
  lua_call(L, 0, 1);
  S->num_fill = luaL_ref(L, LUA_REGISTRYINDEX);

}
#endif

static const luaL_Reg pool_methods[] = {
    {"stats", Lpt_pool_stats},
    {"trim", Lpt_pool_trim},
    {"set_idle_cap", Lpt_pool_set_idle_cap},
    {NULL, NULL}};

static const luaL_Reg core_funcs[] = {
    {"pool", Lpt_pool},
    {"pool_stats", Lpt_pool_stats},
    {"default_pool", Lpt_default_pool},
    {"clock", Lpt_clock},
    {NULL, NULL}};

__attribute__((visibility("default"))) int luaopen_petrel_core(lua_State *L) {
  lua_newtable(L); /* module */

  lpt_State *S = lua_newuserdata(L, sizeof *S);
  memset(S, 0, sizeof *S);
  S->magic = LPT_STATE_MAGIC;
  lua_newtable(L);
  lua_pushcfunction(L, Lpt_state_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);

  /* anchor thread with the anchor table in slot 1 */
  S->AL = lua_newthread(L);
  S->al_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(S->AL);

#if LPT_LUAJIT
  luajit_setup(L, S);
#endif

  /* pool metatable; the default pool */
  if (luaL_newmetatable(L, LPT_POOL_MT)) {
    lua_pushcfunction(L, Lpt_pool_gc);
    lua_setfield(L, -2, "__gc");
    lua_newtable(L);
    lua_pushvalue(L, -3); /* state */
    luaL_setfuncs(L, pool_methods, 1);
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, "petrel.pool");
    lua_setfield(L, -2, "__name");
  }
  lua_pop(L, 1);
  S->pool = pt_pool_new(0);
  if (!S->pool) return luaL_error(L, "out of memory");
  push_pool(L, S->pool);
  S->pool_ref = luaL_ref(L, LUA_REGISTRYINDEX);

  /* stack: module, state */
  luaL_newmetatable(L, LPT_BUFFER_MT); /* module, state, buffer mt */
  lpt_setfuncs(L, -3, -3, core_funcs);
  lpt_open_buffer(L);
  lpt_open_codec(L);
  lpt_open_loop(L);
  lpt_open_fd(L);
  lpt_open_bench(L);
  lpt_open_http(L);
  lpt_open_hash(L);
  lua_pop(L, 2);
  return 1;
}
