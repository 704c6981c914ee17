/*
 * lpt.h — shared pieces of the Lua binding (the only C that sees lua.h).
 *
 * Prefixes: pt_* is the Lua-free core, lpt_* binding internals, Lpt_* the
 * Lua-callable functions. Compat for Lua 5.1 / LuaJIT vs 5.4 is here and
 * nowhere else.
 */
#ifndef LPT_H
#define LPT_H

#include <stdint.h>
#include <stdio.h>

#include "lauxlib.h"
#include "lua.h"

#include "../pt_buf.h"

#if LUA_VERSION_NUM < 502
#define lua_rawlen(L, i) lua_objlen(L, (i))
#define LPT_LUAJIT 1
#define LUA_TCDATA 10
static inline int lpt_absindex(lua_State *L, int i) {
  return (i > 0 || i <= LUA_REGISTRYINDEX) ? i : lua_gettop(L) + i + 1;
}
#define lua_absindex lpt_absindex
/* 5.2 API that LuaJIT has but plain 5.1 headers (used by luarocks for
 * --lua-version=5.1) lack. */
static inline void lpt_setmetatable_compat(lua_State *L, const char *tname) {
  luaL_getmetatable(L, tname);
  lua_setmetatable(L, -2);
}
static inline void lpt_setfuncs_compat(lua_State *L, const luaL_Reg *l,
                                       int nup) {
  for (; l->name; l++) {
    for (int i = 0; i < nup; i++) lua_pushvalue(L, -nup);
    lua_pushcclosure(L, l->func, nup);
    lua_setfield(L, -(nup + 2), l->name);
  }
  lua_pop(L, nup);
}
#define luaL_setmetatable lpt_setmetatable_compat
#define luaL_setfuncs lpt_setfuncs_compat
#define lpt_getuv(L, i) lua_getfenv(L, (i))
/* raw gets that return the type of the pushed value, as in 5.3+ */
static inline int lpt_rawgeti(lua_State *L, int t, lua_Integer i) {
  lua_rawgeti(L, t, (int)i);
  return lua_type(L, -1);
}
static inline int lpt_rawget(lua_State *L, int t) {
  lua_rawget(L, t);
  return lua_type(L, -1);
}
#define lpt_setuv(L, i) lua_setfenv(L, (i))
#else
#define lpt_getuv(L, i) lua_getiuservalue(L, (i), 1)
#define lpt_rawgeti lua_rawgeti
#define lpt_rawget lua_rawget
#define lpt_setuv(L, i) lua_setiuservalue(L, (i), 1)
#define LPT_LUAJIT 0
#endif

#define LPT_BUFFER_MT "petrel.buffer"
#define LPT_POOL_MT "petrel.pool"

/* Per-Lua-state binding state: the upvalue of every binding function. */
typedef struct lpt_State {
  pt_pool *pool;    /* default pool of this state */
  lua_State *AL;    /* anchor thread: stack slot 1 holds the anchor table */
  int al_ref;       /* registry ref keeping AL alive */
  int pool_ref;     /* registry ref of the default pool's userdata */
  size_t anchored;  /* strings pinned by no-copy nodes */
  /* encoder scratch: pool blocks every encode writes into (a string is
   * made from them, or they move to the target buffer) */
  pt_buf wb;
  int wb_ready;
  size_t enc_hint;        /* size of the last encode into a string */
  unsigned char *ubuf;    /* unknown fields kept by the decoder */
  size_t ucap, ulen;
  size_t ext_since;       /* LuaJIT: typed-array bytes malloc'd since the
                             last collection it was made to run */
  const void *view_mt;    /* the message views' metatable (lpt_view.c) */
  int view_mt_ref;        /* registry ref of it */
  const void *view_mt2;   /* the same for views of lists and sets of nested
                             values and of maps (their __index stays the C
                             API one on LuaJIT: see lpt_view.c) */
  int view_mt2_ref;
  int msg_mt_ref;         /* registry ref of the messages' metatable */
  uint32_t magic;         /* LPT_STATE_MAGIC: upvalue 1 is this struct */
  struct {                /* lpt_testudata's metatables, by type name */
    const char *name;     /* the name's address (the caller's literal) */
    const void *mt;
  } mtc[61];
#if LPT_LUAJIT
  int i64_ctor, u64_ctor; /* registry refs of ffi.typeof("int64_t") ... */
  int ctid_off;           /* bytes before a cdata payload to its ctype id */
  int i64_fix;            /* registry ref: FFI loop storing int64 cdata */
  int num_fill;           /* registry ref: FFI loop reading a numeric list */
  int64_t *fixv;          /* values above 2^53 of the list being decoded */
  int32_t *fixi;          /* and their indices */
  size_t fix_cap;
#endif
} lpt_State;

typedef struct lpt_Pool {
  pt_pool *pool;
} lpt_Pool;

/* The binding functions all carry the lpt_State as upvalue 1 and the
 * buffer metatable as upvalue 2. */
#define lpt_state(L) ((lpt_State *)lua_touserdata(L, lua_upvalueindex(1)))

#define LPT_STATE_MAGIC 0x70747374u

/* luaL_testudata / luaL_checkudata without looking the type name up in
 * the registry on every call: the metatable's address is kept in the
 * lpt_State (upvalue 1, as for lpt_state: binding functions only) at the
 * name's first use, and later checks compare addresses. lpt_checkudata
 * raises luaL_checkudata's error. */
void *lpt_testudata(lua_State *L, int idx, const char *tname);
void *lpt_checkudata(lua_State *L, int idx, const char *tname);

pt_buf *lpt_checkbuf(lua_State *L, int idx);
pt_buf *lpt_testbuf(lua_State *L, int idx);
pt_buf *lpt_newbuf(lua_State *L, pt_pool *pool); /* pushes it */
pt_pool *lpt_checkpool(lua_State *L, int idx);

/* Pin the string at idx; its bytes stay valid until lpt_unanchor(tag). */
intptr_t lpt_anchor(lua_State *L, int idx);
void lpt_release_anchor(void *ctx, intptr_t tag); /* a pt_release_fn */
/* Append the string at idx to b, linking it when it is long enough. */
int lpt_write_string(lua_State *L, pt_buf *b, int idx, int force_link);

/* 64-bit integers. Lua 5.4: native integers (u64 wraps, as math.ult
 * expects). LuaJIT: plain numbers where exact (|v| <= 2^53), else
 * int64_t / uint64_t cdata; encoders accept both forms. */
int lpt_toi64(lua_State *L, int idx, int64_t *out); /* 1 if idx holds one */
void lpt_pushi64(lua_State *L, int64_t v);
void lpt_pushu64(lua_State *L, uint64_t v);
/* Integral value in [lo, hi] (doubles with an integral value count). */
int64_t lpt_checkint(lua_State *L, int idx, int64_t lo, int64_t hi);

void lpt_open_buffer(lua_State *L); /* adds buffer functions to table -1 */
void lpt_open_codec(lua_State *L);  /* same stack contract */
void lpt_open_loop(lua_State *L);   /* same stack contract */
/* lpt_loop.c: the pt_loop of the loop userdata at idx (raises when it is
 * not one or is closed). lpt_udp.c: the datagram methods of the loop
 * userdata (lpt_open_loop adds them). */
struct pt_loop *lpt_checkloop(lua_State *L, int idx);
extern const luaL_Reg lpt_udp_methods[];
void lpt_open_fd(lua_State *L);     /* same stack contract (lpt_fd.c) */
void lpt_open_bench(lua_State *L);  /* same stack contract (lpt_bench.c) */
/* lpt_proc.c: processes and signals. Adds core.fork, wait, kill, getpid,
 * _exit, signals to the module table at mod (called by lpt_open_loop). */
struct pt_loop;
void lpt_open_proc(lua_State *L, int mod);
/* The named signals (stack from first on) wake loop l and are reported by
 * core.signals(); raises on an unknown name. untrap: l is going away. */
void lpt_trap(lua_State *L, struct pt_loop *l, int first);
void lpt_untrap(struct pt_loop *l);
void lpt_open_http(lua_State *L);   /* same stack contract */
void lpt_open_hash(lua_State *L);   /* same stack contract */
void lpt_state_free(lpt_State *S);
/* Set the functions l into the table at index t, each closing over the
 * binding state at mod + 1 and the buffer metatable at mod + 2 (mod: the
 * module table's index, as in the lpt_open_* stack contract). */
void lpt_setfuncs(lua_State *L, int t, int mod, const luaL_Reg *l);

/* The descriptor of the open Lua file (io.open) at idx, or -1 when idx is
 * not one or is closed. Both runtimes keep the FILE * first in the
 * userdata (Lua 5.4's luaL_Stream, LuaJIT's IOFileUD); a closed one has no
 * close function (5.4) or a NULL FILE * (LuaJIT). */
#ifndef LUA_FILEHANDLE
#define LUA_FILEHANDLE "FILE*"
#endif
static inline int lpt_tofilefd(lua_State *L, int idx) {
  void *p = lua_touserdata(L, idx);
  if (!p || !lua_getmetatable(L, idx)) return -1;
  luaL_getmetatable(L, LUA_FILEHANDLE);
  int same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  if (!same) return -1;
#if LUA_VERSION_NUM >= 502
  luaL_Stream *st = p;
  if (!st->closef || !st->f) return -1;
  return fileno(st->f);
#else
  FILE *f = *(FILE **)p;
  return f ? fileno(f) : -1;
#endif
}

#endif
