/*
 * lpt_udp.c — the datagram methods of petrel.core.loop (pt_udp.h): open,
 * receive, send, counters. The coroutine-blocking face (loop:udp{...},
 * recv / send with timeouts) is lua/petrel/loop.lua's.
 *
 * A datagram socket's id is an ordinary conn id: loop:close, loop:port,
 * loop:info work on it; loop:input / output / send refuse it (its queues
 * hold records, not bytes).
 *
 * Misuse raises; I/O failures return nil, err.
 */
#include <errno.h>
#include <string.h>

#include "lpt.h"
#include "../pt_loop.h"

static pt_conn *check_dgram(lua_State *L, pt_loop *l, int idx) {
  uint64_t id = (uint64_t)lpt_checkint(L, idx, 1, ((int64_t)1 << 53));
  pt_conn *c = pt_loop_conn(l, id);
  if (c && c->kind != PT_KIND_DGRAM) luaL_argerror(L, idx, "not a datagram socket");
  return c;
}

static int io_fail(lua_State *L, const char *msg) {
  lua_pushnil(L);
  lua_pushstring(L, msg);
  return 2;
}

static int field_int(lua_State *L, int t, const char *k, int lo, int hi) {
  lua_getfield(L, t, k);
  int v = lua_isnil(L, -1) ? 0 : (int)lpt_checkint(L, -1, lo, hi);
  lua_pop(L, 1);
  return v;
}

static const char *field_str(lua_State *L, int t, const char *k) {
  lua_getfield(L, t, k);
  const char *s = lua_isnil(L, -1) ? NULL : luaL_checkstring(L, -1);
  lua_pop(L, 1); /* the table keeps the string alive */
  return s;
}

/* loop:udp_open{ host =, port =, peer =, peer_port =, rcvbuf =, sndbuf =,
 *   max_datagram =, reuseport =, in_cap =, out_cap = } -> id | nil, err
 * host/port: bind there (none: unbound, or bound by connect); peer /
 * peer_port: connect there. Numeric addresses and "localhost". in_cap /
 * out_cap: bytes of datagrams queued (received, to send) before reading
 * pauses / sends are refused (default: the loop's). */
static int Lpt_udp_open(lua_State *L) {
  pt_loop *l = lpt_checkloop(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  const char *host = field_str(L, 2, "host");
  const char *peer = field_str(L, 2, "peer");
  int port = field_int(L, 2, "port", 0, 65535);
  int peer_port = field_int(L, 2, "peer_port", 0, 65535);
  pt_udpopts o;
  memset(&o, 0, sizeof o);
  o.rcvbuf = field_int(L, 2, "rcvbuf", 0, INT32_MAX);
  o.sndbuf = field_int(L, 2, "sndbuf", 0, INT32_MAX);
  o.max_datagram = (size_t)field_int(L, 2, "max_datagram", 0, PT_UDP_MAX);
  lua_getfield(L, 2, "reuseport");
  o.reuseport = lua_toboolean(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, 2, "in_cap");
  lua_getfield(L, 2, "out_cap");
  int has_in = !lua_isnil(L, -2), has_out = !lua_isnil(L, -1);
  size_t in_cap = has_in ? (size_t)lpt_checkint(L, -2, 1, INT64_MAX) : 0;
  size_t out_cap = has_out ? (size_t)lpt_checkint(L, -1, 1, INT64_MAX) : 0;
  lua_pop(L, 2);
  pt_conn *c = pt_udp_open(l, host, port, peer, peer_port, &o);
  if (!c) return io_fail(L, pt_loop_error(l));
  if (has_in || has_out)
    pt_conn_set_caps(c, has_in ? in_cap : c->in_cap, has_out ? out_cap : c->out_cap);
  lua_pushinteger(L, (lua_Integer)c->id);
  return 1;
}

/* loop:udp_recv(id) -> data, peer | nil (none queued)
 *   | false, err, peer (cut at max_datagram, or an error the socket
 *   reported; then no peer) | false, "closed" (recycled)
 * peer: "127.0.0.1:5353", "[::1]:5353" */
static int Lpt_udp_recv(lua_State *L) {
  pt_loop *l = lpt_checkloop(L, 1);
  pt_conn *c = check_dgram(L, l, 2);
  if (!c) {
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "closed");
    return 2;
  }
  pt_dgram d;
  if (!pt_udp_recv(c, &d)) {
    lua_pushnil(L);
    return 1;
  }
  if (d.err && !d.data) {
    lua_pushboolean(L, 0);
    lua_pushstring(L, strerror(d.err));
    return 2;
  }
  size_t tl;
  const char *peer = pt_udp_peer_text(c, d.addr, d.alen, &tl);
  if (d.err) {
    lua_pushboolean(L, 0);
    lua_pushfstring(L, "datagram of %d bytes cut at max_datagram (%d)",
                    (int)d.full, (int)c->dg->max);
    lua_pushlstring(L, peer, tl);
    return 3;
  }
  lua_pushlstring(L, d.data, d.len);
  lua_pushlstring(L, peer, tl);
  return 2;
}

/* loop:udp_recvn(id, max, datas, peers) -> n | 0, err, peer
 * Up to max whole datagrams into datas[1..n] and their senders into
 * peers[1..n] (the caller's tables; entries past n are left as they were).
 * Stops before a datagram cut at max_datagram or an error the socket
 * reported; when that comes first it is taken: 0, err [, peer]. 0 alone:
 * none queued. The batch form of udp_recv (one call a batch). */
static int Lpt_udp_recvn(lua_State *L) {
  pt_loop *l = lpt_checkloop(L, 1);
  pt_conn *c = check_dgram(L, l, 2);
  int max = (int)lpt_checkint(L, 3, 1, 1 << 20);
  luaL_checktype(L, 4, LUA_TTABLE);
  luaL_checktype(L, 5, LUA_TTABLE);
  if (!c) {
    lua_pushinteger(L, 0);
    lua_pushliteral(L, "closed");
    return 2;
  }
  int n = 0;
  pt_dgram d;
  while (n < max && pt_udp_recv(c, &d)) {
    if (d.err) {
      if (n > 0) { /* next time: put it back by not taking it */
        pt_udp_unrecv(c, &d);
        break;
      }
      lua_pushinteger(L, 0);
      if (!d.data) {
        lua_pushstring(L, strerror(d.err));
        return 2;
      }
      size_t tl;
      const char *peer = pt_udp_peer_text(c, d.addr, d.alen, &tl);
      lua_pushfstring(L, "datagram of %d bytes cut at max_datagram (%d)", (int)d.full,
                      (int)c->dg->max);
      lua_pushlstring(L, peer, tl);
      return 3;
    }
    size_t tl;
    const char *peer = pt_udp_peer_text(c, d.addr, d.alen, &tl);
    n++;
    lua_pushlstring(L, d.data, d.len);
    lua_rawseti(L, 4, n);
    lua_pushlstring(L, peer, tl);
    lua_rawseti(L, 5, n);
  }
  lua_pushinteger(L, n);
  return 1;
}

static int send_fail(lua_State *L, pt_conn *c, int e, size_t n,
                     const char *peer) {
  switch (e) {
    case EMSGSIZE:
      lua_pushnil(L);
      lua_pushfstring(L, "datagram of %d bytes is too long (at most %d)", (int)n,
                      c->family == AF_INET6 ? 65527 : 65507);
      return 2;
    case ENOBUFS:
      lua_pushnil(L);
      lua_pushfstring(L, "send queue full (%d bytes queued, out_cap %d)",
                      (int)pt_buf_len(c->out), (int)c->out_cap);
      return 2;
    case EDESTADDRREQ:
      return io_fail(L, "no peer: the socket is not connected (sendto needs an address)");
    case EINVAL:
      lua_pushnil(L);
      lua_pushfstring(L, "bad address '%s' (ip:port or [ipv6]:port)", peer ? peer : "?");
      return 2;
    case EAFNOSUPPORT:
      lua_pushnil(L);
      lua_pushfstring(L, "address '%s' is IPv6 and the socket IPv4", peer ? peer : "?");
      return 2;
    case EPIPE: return io_fail(L, "closed");
    default: return io_fail(L, strerror(e));
  }
}

/* loop:udp_send(id, data [, peer]) -> true | nil, err
 * data: a string or a petrel.buffer (its bytes are copied, not consumed);
 * peer "ip:port" / "[ipv6]:port", nil for the connected peer. The datagram
 * leaves in the flush at the start of the next poll (loop:flush: now). */
static int Lpt_udp_send(lua_State *L) {
  pt_loop *l = lpt_checkloop(L, 1);
  pt_conn *c = check_dgram(L, l, 2);
  size_t n;
  const char *p;
  pt_buf *b = lpt_testbuf(L, 3);
  if (b) {
    n = pt_buf_len(b);
    p = n ? pt_buf_peek(b, n) : "";
    if (!p) return luaL_error(L, "out of memory");
  } else {
    p = luaL_checklstring(L, 3, &n);
  }
  const char *peer = luaL_optstring(L, 4, NULL);
  if (!c) return io_fail(L, "closed");
  int r = peer ? pt_udp_sendto(c, p, n, peer) : pt_udp_send(c, p, n, NULL, 0);
  if (r != 0) return send_fail(L, c, errno, n, peer);
  lua_pushboolean(L, 1);
  return 1;
}

#define UDP_FIELDS(X)                                                        \
  X(dgrams_in) X(bytes_in) X(cut) X(errors_in) X(dgrams_out) X(bytes_out)  \
  X(send_errors) X(send_full) X(dropped) X(kernel_drops) X(queued)         \
  X(rcvbuf) X(sndbuf)

/* loop:udp_stats(id) -> { dgrams_in, bytes_in, cut, errors_in, dgrams_out,
 *   bytes_out, send_errors, send_full, dropped, kernel_drops, rcvbuf,
 *   sndbuf, queued (bytes of datagrams waiting for udp_recv, with their
 *   records' headers), last_send_error }
 *   | nil, "closed" */
static int Lpt_udp_stats(lua_State *L) {
  pt_loop *l = lpt_checkloop(L, 1);
  pt_conn *c = check_dgram(L, l, 2);
  pt_udp_stats st;
  if (!c || pt_udp_stats_get(c, &st) != 0) return io_fail(L, "closed");
  lua_createtable(L, 0, 16);
#define X(f)                             \
  lua_pushinteger(L, (lua_Integer)st.f); \
  lua_setfield(L, -2, #f);
  UDP_FIELDS(X)
#undef X
  if (st.last_send_errno) {
    lua_pushstring(L, strerror(st.last_send_errno));
    lua_setfield(L, -2, "last_send_error");
  }
  return 1;
}

const luaL_Reg lpt_udp_methods[] = {
    {"udp_open", Lpt_udp_open},
    {"udp_recv", Lpt_udp_recv},
    {"udp_recvn", Lpt_udp_recvn},
    {"udp_send", Lpt_udp_send},
    {"udp_stats", Lpt_udp_stats},
    {NULL, NULL}};
