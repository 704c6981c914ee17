/*
 * lpt_hash.c — the Lua face of pt_hash: the hash and the consistent-hashing
 * ring of petrel.balance's "chash" balancer.
 *
 *   core.hash32(s [, seed])  -> MurmurHash3 x86_32 of s (0..2^32-1)
 *   core.ring(points)        -> ring: points is a list of hashes
 *       (0..2^32-1) in ascending order; raises when it is not
 *   ring:find(key)           -> i | nil: the 1-based index of the first
 *       point >= the key's hash (1 past the last point: the ring wraps).
 *       The key's hash is hash32 of its ring text: a string is its own
 *       text; an integer (or an integral float within +-2^53) is its
 *       decimal digits. nil for any other key: the caller hashes its own
 *       text of it (tostring) and passes that.
 *   #ring                    -> the number of points
 *
 * A ring is one block (the points and the slot table of pt_ring) owned by
 * Lua: nothing to free.
 */
#include <math.h>

#include "lpt.h"
#include "../pt_hash.h"

#define LPT_RING_MT "petrel.ring"
#define LPT_RING_MAX (1 << 24) /* points: weight x vnodes, summed */

static int Lpt_hash32(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  uint32_t seed =
      lua_isnoneornil(L, 2) ? 0 : (uint32_t)lpt_checkint(L, 2, 0, UINT32_MAX);
  lua_pushinteger(L, (lua_Integer)pt_hash32(s, n, seed));
  return 1;
}

static int Lpt_ring(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  size_t len = lua_rawlen(L, 1);
  if (len > LPT_RING_MAX) return luaL_argerror(L, 1, "more than 2^24 points");
  uint32_t n = (uint32_t)len;
  pt_ring *r = lua_newuserdata(L, pt_ring_size(n));
  /* the points go straight into place, then are checked */
  uint32_t *pts = r->pts;
  for (uint32_t i = 0; i < n; i++) {
    lua_rawgeti(L, 1, (lua_Integer)i + 1);
    pts[i] = (uint32_t)lpt_checkint(L, -1, 0, UINT32_MAX);
    lua_pop(L, 1);
  }
  if (pt_ring_init(r, pts, n) != 0)
    return luaL_argerror(L, 1, "points are not in ascending order");
  luaL_setmetatable(L, LPT_RING_MT);
  return 1;
}

static int Lpt_ring_find(lua_State *L) {
  const pt_ring *r = lpt_checkudata(L, 1, LPT_RING_MT);
  uint32_t h;
  if (lua_type(L, 2) == LUA_TSTRING) {
    size_t n;
    const char *s = lua_tolstring(L, 2, &n);
    h = pt_hash32(s, n, 0);
  } else if (lua_type(L, 2) == LUA_TNUMBER) {
    int64_t v;
#if LUA_VERSION_NUM >= 503
    if (lua_isinteger(L, 2)) {
      v = (int64_t)lua_tointeger(L, 2);
    } else
#endif
    {
      lua_Number d = lua_tonumber(L, 2);
      /* false for NaN and infinities too */
      if (!(d > -9007199254740992.0 && d < 9007199254740992.0) || d != floor(d)) {
        lua_pushnil(L);
        return 1;
      }
      v = (int64_t)d;
    }
    char t[24];
    h = pt_hash32(t, pt_int_text(t, v), 0);
  } else {
    lua_pushnil(L);
    return 1;
  }
  lua_pushinteger(L, (lua_Integer)pt_ring_find(r, h) + 1);
  return 1;
}

static int Lpt_ring_len(lua_State *L) {
  const pt_ring *r = lpt_checkudata(L, 1, LPT_RING_MT);
  lua_pushinteger(L, (lua_Integer)r->n);
  return 1;
}

static const luaL_Reg ring_methods[] = {{"find", Lpt_ring_find}, {NULL, NULL}};
static const luaL_Reg ring_meta[] = {{"__len", Lpt_ring_len}, {NULL, NULL}};
static const luaL_Reg hash_funcs[] = {
    {"hash32", Lpt_hash32}, {"ring", Lpt_ring}, {NULL, NULL}};

/* stack: module, state, buffer metatable */
void lpt_open_hash(lua_State *L) {
  int mod = lua_gettop(L) - 2;
  luaL_newmetatable(L, LPT_RING_MT);
  lua_newtable(L);
  lpt_setfuncs(L, -1, mod, ring_methods);
  lua_setfield(L, -2, "__index");
  lpt_setfuncs(L, -1, mod, ring_meta);
  lua_pop(L, 1);
  lpt_setfuncs(L, mod, mod, hash_funcs);
}
