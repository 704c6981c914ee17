/*
 * lpt_http.c — the Lua face of pt_http (HTTP/1.1 responses).
 *
 *   core.http_available            true when built with http_parser
 *   core.http_response([opts])     -> parser | nil, err
 *       opts: max_header (bytes, default 16 KiB), max_body (bytes buffered
 *       at once, default 64 MiB)
 *   p:feed(input, body)            -> true (a response ended) | false (more
 *       bytes needed) | nil, err. Parses the readable bytes of petrel.buffer
 *       `input` and consumes those that belong to the response; body bytes
 *       (de-chunked) are appended to petrel.buffer `body`.
 *   p:eof(body)                    -> true | nil, err (the peer closed)
 *   p:status()                     -> code | nil (header section not done)
 *   p:headers()                    -> { lower-cased name = value } (repeats
 *       joined with ", ")
 *   p:keep_alive()                 -> may the connection be reused
 *   p:reset()                      ready for the next response
 *
 * Bad data and limits give nil, err; misuse raises.
 */
#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "lpt.h"
#include "../pt_http.h"

#define LPT_HTTP_MT "petrel.http_response"

typedef struct lpt_Http {
  pt_http_resp *r;
} lpt_Http;

static pt_http_resp *check_http(lua_State *L) {
  lpt_Http *h = lpt_checkudata(L, 1, LPT_HTTP_MT);
  if (!h->r) luaL_argerror(L, 1, "HTTP parser is closed");
  return h->r;
}

static size_t opt_size(lua_State *L, int t, const char *k) {
  size_t v = 0;
  if (lua_type(L, t) != LUA_TTABLE) return 0;
  lua_getfield(L, t, k);
  if (!lua_isnil(L, -1)) v = (size_t)lpt_checkint(L, -1, 1, (int64_t)1 << 40);
  lua_pop(L, 1);
  return v;
}

static int Lpt_http_response(lua_State *L) {
  if (!lua_isnoneornil(L, 1)) luaL_checktype(L, 1, LUA_TTABLE);
  size_t max_header = opt_size(L, 1, "max_header");
  size_t max_body = opt_size(L, 1, "max_body");
  lpt_Http *h = lua_newuserdata(L, sizeof *h);
  h->r = NULL;
  luaL_setmetatable(L, LPT_HTTP_MT);
  h->r = pt_http_new(max_header, max_body);
  if (!h->r) {
    lua_pushnil(L);
    if (errno == ENOSYS)
      lua_pushstring(L, "HTTP support not compiled in (petrel was built without "
                        "libhttp-parser-dev)");
    else
      lua_pushstring(L, strerror(errno));
    return 2;
  }
  return 1;
}

static int http_fail(lua_State *L, pt_http_resp *r) {
  lua_pushnil(L);
  lua_pushstring(L, pt_http_error(r));
  return 2;
}

static int Lpt_http_feed(lua_State *L) {
  pt_http_resp *r = check_http(L);
  pt_buf *in = lpt_checkbuf(L, 2);
  pt_buf *body = lpt_checkbuf(L, 3);
  if (in == body) return luaL_argerror(L, 3, "body must not be the input buffer");
  struct iovec iov[16];
  int st = PT_HTTP_MORE;
  /* the input's nodes in order, without copying; at most 16 at a time */
  while (st == PT_HTTP_MORE) {
    int n = pt_buf_iov(in, iov, 16, SIZE_MAX);
    if (n == 0) break;
    size_t fed = 0;
    for (int i = 0; i < n && st == PT_HTTP_MORE; i++) {
      size_t used;
      st = pt_http_feed(r, iov[i].iov_base, iov[i].iov_len, body, &used);
      fed += used;
    }
    if (st == PT_HTTP_ERROR) return http_fail(L, r);
    pt_buf_skip(in, fed);
  }
  lua_pushboolean(L, st == PT_HTTP_DONE);
  return 1;
}

static int Lpt_http_eof(lua_State *L) {
  pt_http_resp *r = check_http(L);
  pt_buf *body = lpt_checkbuf(L, 2);
  if (pt_http_eof(r, body) != PT_HTTP_DONE) return http_fail(L, r);
  lua_pushboolean(L, 1);
  return 1;
}

static int Lpt_http_status(lua_State *L) {
  pt_http_resp *r = check_http(L);
  int s = pt_http_status(r);
  if (s) lua_pushinteger(L, s); else lua_pushnil(L);
  return 1;
}

static int Lpt_http_headers(lua_State *L) {
  pt_http_resp *r = check_http(L);
  size_t n = pt_http_nheaders(r);
  lua_createtable(L, 0, (int)n);
  luaL_Buffer b;
  for (size_t i = 0; i < n; i++) {
    const char *name, *val;
    size_t nl, vl;
    pt_http_header(r, i, &name, &nl, &val, &vl);
    luaL_buffinit(L, &b);
    for (size_t k = 0; k < nl; k++) luaL_addchar(&b, (char)tolower((unsigned char)name[k]));
    luaL_pushresult(&b); /* t, name */
    lua_pushvalue(L, -1);
    lua_rawget(L, -3);   /* t, name, old */
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      lua_pushlstring(L, val, vl);
    } else {
      lua_pushliteral(L, ", ");
      lua_pushlstring(L, val, vl);
      lua_concat(L, 3);
    }
    lua_rawset(L, -3);
  }
  return 1;
}

static int Lpt_http_keep_alive(lua_State *L) {
  lua_pushboolean(L, pt_http_keep_alive(check_http(L)));
  return 1;
}

static int Lpt_http_reset(lua_State *L) {
  pt_http_reset(check_http(L));
  return 0;
}

static int Lpt_http_gc(lua_State *L) {
  lpt_Http *h = lpt_checkudata(L, 1, LPT_HTTP_MT);
  pt_http_free(h->r);
  h->r = NULL;
  return 0;
}

static const luaL_Reg http_methods[] = {
    {"feed", Lpt_http_feed},       {"eof", Lpt_http_eof},
    {"status", Lpt_http_status},   {"headers", Lpt_http_headers},
    {"keep_alive", Lpt_http_keep_alive}, {"reset", Lpt_http_reset},
    {"close", Lpt_http_gc},        {NULL, NULL}};

static const luaL_Reg http_meta[] = {{"__gc", Lpt_http_gc}, {NULL, NULL}};

static const luaL_Reg http_funcs[] = {{"http_response", Lpt_http_response},
                                      {NULL, NULL}};

/* stack: module, state, buffer metatable */
void lpt_open_http(lua_State *L) {
  int mod = lua_gettop(L) - 2;
  luaL_newmetatable(L, LPT_HTTP_MT);
  lua_newtable(L);
  lpt_setfuncs(L, -1, mod, http_methods);
  lua_setfield(L, -2, "__index");
  lpt_setfuncs(L, -1, mod, http_meta);
  lua_pop(L, 1);
  lpt_setfuncs(L, mod, mod, http_funcs);
  lua_pushboolean(L, pt_http_available());
  lua_setfield(L, mod, "http_available");
}
