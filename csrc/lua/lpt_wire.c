/*
 * lpt_wire.c — the wire layer in Lua, below the walkers: message
 * envelopes (core.msg_header), transport detection (core.detect), the
 * unframed message scanner (core.scanner), skipping (core.skip), the SIMD
 * switch (core.simd).
 */
#include <stdio.h>
#include <string.h>

#include "lpt_codec.h"

#define LPT_SKIP_MAXDEPTH 1000 /* core.skip: pt_skip recurses this deep */
#define LPT_SCANNER_MT "petrel.scanner"

const unsigned char *lpt_input_bytes(lua_State *L, int idx, size_t *len) {
  if (lua_type(L, idx) == LUA_TSTRING)
    return (const unsigned char *)lua_tolstring(L, idx, len);
  const unsigned char *m = lpt_vsrc_bytes(L, idx, len); /* a message */
  if (m) return m;
  pt_buf *b = lpt_checkbuf(L, idx);
  *len = pt_buf_len(b);
  const char *p = pt_buf_peek(b, *len);
  if (!p) luaL_error(L, "out of memory");
  return (const unsigned char *)p;
}

int lpt_checkproto(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TSTRING) { /* the usual case, without strcmp */
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    static const size_t lens[] = {
#define X(n, name) sizeof(name) - 1,
        PT_PROTOS(X)
#undef X
    };
    for (int i = 0; i < PT_PROTO_COUNT; i++)
      if (lens[i] == n && memcmp(s, pt_proto_names[i], n) == 0) return i;
  }
  static const char *const names[] = {
#define X(n, name) name,
      PT_PROTOS(X)
#undef X
          NULL};
  return luaL_checkoption(L, idx, "binary", names);
}

/* core.msg_header(s [, pos [, max_name]])
 *   -> name, mtype, seqid, next_pos, protocol | nil (incomplete)
 *   | false, err (malformed)
 * Binary strict (0x8001 version word) and non-strict (name first)
 * envelopes, and Compact (0x82): the first byte tells. */
static int Lpt_msg_header(lua_State *L) {
  size_t len;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
  int64_t pos = lua_isnoneornil(L, 2) ? 1 : lpt_checkint(L, 2, 1, INT64_MAX);
  int64_t maxn = lua_isnoneornil(L, 3) ? 65536 : lpt_checkint(L, 3, 0, INT32_MAX);
  if ((uint64_t)pos > len + 1) return 0;
  pt_msg m;
  int k = pt_msg_parse(s + pos - 1, len - (size_t)(pos - 1), (size_t)maxn, &m);
  if (k == PT_NEED) return 0;
  if (k == PT_BAD) {
    lua_pushboolean(L, 0);
    lua_pushstring(L, m.why ? m.why : "bad envelope");
    return 2;
  }
  lua_pushlstring(L, (const char *)m.name, m.name_len);
  lua_pushinteger(L, m.mtype);
  lua_pushinteger(L, m.seqid);
  lua_pushinteger(L, pos + k);
  lua_pushstring(L, pt_proto_names[m.proto]);
  return 5;
}

/* core.detect(buf | s [, max_frame [, max_name]])
 *   -> transport ("framed" | "buffered" | "header" | "framed-header" |
 *      "ttheader" | "framed-ttheader"), protocol ("binary" | "compact" |
 *      "json"; header frames: the first one's)
 *   | nil (more bytes needed to tell)
 *   | false, what ("an HTTP request", ...), wire ("http" | "tls" | "unknown")
 * What a connection's peer speaks, from its first bytes (pt_detect_wire). */
static int Lpt_detect(lua_State *L) {
  size_t len;
  const unsigned char *p = lpt_input_bytes(L, 1, &len);
  int64_t maxf = lua_isnoneornil(L, 2) ? (16 << 20) : lpt_checkint(L, 2, 0, INT64_MAX);
  int64_t maxn = lua_isnoneornil(L, 3) ? 65536 : lpt_checkint(L, 3, 0, INT32_MAX);
  pt_detect d;
  if (pt_detect_wire(p, len, (uint64_t)maxf, (size_t)maxn, &d) == PT_NEED)
    return 0;
  if (d.wire == PT_WIRE_THRIFT) {
    pt_framing f = {d.transport == PT_TR_UNFRAMED && d.header == PT_HDR_NONE,
                    d.transport == PT_TR_FRAMED, (uint8_t)d.header, 0};
    lua_pushstring(L, lpt_framing_name(&f));
    lua_pushstring(L, pt_proto_names[d.proto]);
    return 2;
  }
  lua_pushboolean(L, 0);
  lua_pushstring(L, d.what);
  lua_pushstring(L, d.wire == PT_WIRE_HTTP  ? "http"
                    : d.wire == PT_WIRE_TLS ? "tls"
                                            : "unknown");
  return 3;
}

/* core.skip(string, pos, ttype [, max_depth [, protocol]]) -> next_pos | nil
 * (max_depth at most LPT_SKIP_MAXDEPTH: pt_skip recurses) */
static int Lpt_skip(lua_State *L) {
  size_t len;
  const unsigned char *s = lpt_input_bytes(L, 1, &len);
  int64_t pos = lpt_checkint(L, 2, 1, INT64_MAX);
  int t = (int)lpt_checkint(L, 3, 0, 255);
  lua_Integer d = luaL_optinteger(L, 4, LPT_MAXDEPTH_DEFAULT);
  int proto = lua_isnoneornil(L, 5) ? PT_PROTO_BINARY : lpt_checkproto(L, 5);
  int depth = d < 0 ? 0 : d > LPT_SKIP_MAXDEPTH ? LPT_SKIP_MAXDEPTH : (int)d;
  if ((uint64_t)pos > len + 1) return 0;
  size_t k = pt_skip_proto(proto, s + pos - 1, s + len, t, depth);
  if (!k) return 0;
  lua_pushinteger(L, (lua_Integer)(pos + (int64_t)k));
  return 1;
}

/* core.scanner(max_bytes [, max_depth]) -> a message scanner for unframed
 * transports: sc:feed(buf) looks at the bytes of buf it has not seen yet
 * and returns the length of the message at the front of buf and its
 * protocol once all of it is there (then starts over for the next one),
 * nil while it goes on, or false, err for bytes that cannot be a
 * message. */
static int Lpt_scanner(lua_State *L) {
  int64_t max = lpt_checkint(L, 1, 1, INT64_MAX);
  int depth = (int)luaL_optinteger(L, 2, LPT_MAXDEPTH_DEFAULT);
  pt_scan *s = lua_newuserdata(L, sizeof *s);
  pt_scan_init(s, (uint64_t)max, depth);
  luaL_setmetatable(L, LPT_SCANNER_MT);
  return 1;
}

static int Lpt_scanner_feed(lua_State *L) {
  pt_scan *s = lpt_checkudata(L, 1, LPT_SCANNER_MT);
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
    lua_pushstring(L, pt_proto_names[s->env.proto]);
    pt_scan_reset(s);
    return 2;
  }
  char msg[160];
  snprintf(msg, sizeof msg, "%s at offset %llu", s->err,
           (unsigned long long)s->fed);
  lua_pushboolean(L, 0);
  lua_pushstring(L, msg);
  return 2;
}

static int Lpt_scanner_reset(lua_State *L) {
  pt_scan_reset(lpt_checkudata(L, 1, LPT_SCANNER_MT));
  return 0;
}

/* core.simd([force_scalar]) -> "avx2" | "scalar" */
static int Lpt_simd(lua_State *L) {
  if (!lua_isnoneornil(L, 1)) pt_simd_force_scalar(lua_toboolean(L, 1));
  lua_pushstring(L, pt_simd_active() ? "avx2" : "scalar");
  return 1;
}

static const luaL_Reg wire_funcs[] = {{"skip", Lpt_skip},
                                      {"scanner", Lpt_scanner},
                                      {"msg_header", Lpt_msg_header},
                                      {"detect", Lpt_detect},
                                      {"simd", Lpt_simd},
                                      {NULL, NULL}};

/* stack: module, state, buffer metatable */
void lpt_open_wire(lua_State *L) {
  int mod = lua_gettop(L) - 2;
  luaL_newmetatable(L, LPT_SCANNER_MT);
  lua_newtable(L);
  static const luaL_Reg sm[] = {{"feed", Lpt_scanner_feed},
                                {"reset", Lpt_scanner_reset},
                                {NULL, NULL}};
  lpt_setfuncs(L, -1, mod, sm);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lpt_setfuncs(L, mod, mod, wire_funcs);
}
