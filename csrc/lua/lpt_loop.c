/*
 * lpt_loop.c — petrel.core.loop: the thin Lua face of pt_loop.
 *
 * A loop userdata holds the pt_loop, an event array for pt_loop_poll, and a
 * user-value table: [1] id -> input buffer, [2] id -> output buffer (the
 * anchors), [3..6] the reused completion arrays (types, ids, errs, args).
 *
 * Buffers: loop:input(id) / loop:output(id) create (once) an ordinary
 * petrel.buffer, move the conn's bytes into it and make the core read into
 * / write from it (pt_conn_set_bufs). The buffer is anchored in the loop's
 * table until the conn is recycled at a batch boundary (on_release drops the
 * anchor), so the core never points at a collected buffer; a buffer the
 * script keeps after that is a plain buffer the loop no longer touches.
 *
 * Processes and signals (fork, wait, kill, loop:trap) are lpt_proc.c's.
 *
 * Misuse raises; I/O failures return nil, err.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lpt.h"
#include "../pt_loop.h"

#define LPT_LOOP_MT "petrel.loop"
#define UV_INS 1
#define UV_OUTS 2
#define UV_TYPES 3 /* then ids, errs, args */
#define MAX_BATCH 65536

#define REF_IN 1
#define REF_OUT 2

typedef struct lpt_Loop {
  pt_loop *loop;
  lua_State *L; /* set while a call may recycle conns */
  int ins, outs; /* stack slots of the anchor tables meanwhile */
  pt_event *ev;
  int evcap;
} lpt_Loop;

/* opts.on_release: drop the conn's buffer anchors. rawset of nil on an
 * existing key does not allocate, so this cannot raise. */
static void on_release(void *ctx, pt_conn *c) {
  lpt_Loop *LL = ctx;
  lua_State *L = LL->L;
  if (!L || !c->ref) return;
  if (c->ref & REF_IN) {
    lua_pushinteger(L, (lua_Integer)c->id);
    lua_pushnil(L);
    lua_rawset(L, LL->ins);
  }
  if (c->ref & REF_OUT) {
    lua_pushinteger(L, (lua_Integer)c->id);
    lua_pushnil(L);
    lua_rawset(L, LL->outs);
  }
  c->ref = 0;
}

static lpt_Loop *check_loop(lua_State *L) {
  lpt_Loop *LL = lpt_checkudata(L, 1, LPT_LOOP_MT);
  if (!LL->loop) luaL_argerror(L, 1, "loop is closed");
  return LL;
}

struct pt_loop *lpt_checkloop(lua_State *L, int idx) {
  lpt_Loop *LL = lpt_checkudata(L, idx, LPT_LOOP_MT);
  if (!LL->loop) luaL_argerror(L, idx, "loop is closed");
  return LL->loop;
}

/* Push the anchor tables and let on_release use them. */
static void hook_on(lua_State *L, lpt_Loop *LL) {
  lpt_getuv(L, 1);
  lua_rawgeti(L, -1, UV_INS);
  LL->ins = lua_gettop(L);
  lua_rawgeti(L, -2, UV_OUTS);
  LL->outs = lua_gettop(L);
  LL->L = L;
}

static int io_fail(lua_State *L, const char *msg) {
  lua_pushnil(L);
  lua_pushstring(L, msg);
  return 2;
}

static uint64_t check_id(lua_State *L, int idx) {
  return (uint64_t)lpt_checkint(L, idx, 1, ((int64_t)1 << 53));
}

/* The conn named at idx, or NULL (unknown or recycled). */
static pt_conn *find_conn(lua_State *L, lpt_Loop *LL, int idx) {
  return pt_loop_conn(LL->loop, check_id(L, idx));
}

static pt_conn *check_stream(lua_State *L, lpt_Loop *LL, int idx) {
  pt_conn *c = find_conn(L, LL, idx);
  if (c && c->kind != PT_KIND_STREAM)
    luaL_argerror(L, idx, "not a stream connection");
  return c;
}

static int opt_int(lua_State *L, int t, const char *k, int def, int lo,
                   int hi) {
  int v = def;
  if (lua_type(L, t) != LUA_TTABLE) return def;
  lua_getfield(L, t, k);
  if (lua_type(L, -1) == LUA_TBOOLEAN)
    v = lua_toboolean(L, -1) ? 1 : -1;
  else if (!lua_isnil(L, -1))
    v = (int)lpt_checkint(L, -1, lo, hi);
  lua_pop(L, 1);
  return v;
}

static void get_sockopts(lua_State *L, int t, pt_sockopts *o) {
  memset(o, 0, sizeof *o);
  if (lua_isnoneornil(L, t)) return;
  luaL_checktype(L, t, LUA_TTABLE);
  o->nodelay = opt_int(L, t, "nodelay", 0, -1, 1);
  o->keepalive = opt_int(L, t, "keepalive", 0, -1, 1);
  o->sndbuf = opt_int(L, t, "sndbuf", 0, 0, INT32_MAX);
  o->rcvbuf = opt_int(L, t, "rcvbuf", 0, 0, INT32_MAX);
  o->reuseport = opt_int(L, t, "reuseport", 0, -1, 1) > 0;
}

/* host and port from (host, port) or ("unix:/path") or (nil, "unix:/p") */
static const char *get_addr(lua_State *L, int *port) {
  const char *host = luaL_optstring(L, 2, NULL);
  *port = 0;
  if (lua_type(L, 3) == LUA_TSTRING && strncmp(lua_tostring(L, 3), "unix:", 5) == 0)
    return lua_tostring(L, 3);
  if (host && strncmp(host, "unix:", 5) == 0) return host;
  if (!lua_isnoneornil(L, 3)) *port = (int)lpt_checkint(L, 3, 0, 65535);
  return host;
}

/* core.loop([{pool=, in_cap=, out_cap=, budget=, dns_ttl=, close_timeout=,
 *             max_events=, no_spin=, backend=, sqpoll=, zc_min=, zc_force=,
 *             ring_bufs=, ring_buf_size=, ring_incremental=,
 *             ring_dgram_bufs=, no_sendfile=,
 *             no_splice=, dns_delay=}]) -> loop | nil, err
 * budget = false: no loop-wide budget. no_sendfile / no_splice force the
 * copying fallbacks, dns_delay (ms) slows every name lookup (tests,
 * benches). */
static int Lpt_loop(lua_State *L) {
  pt_pool *pool = NULL;
  pt_loop_opts o;
  memset(&o, 0, sizeof o);
  if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "pool");
    if (!lua_isnil(L, -1)) pool = lpt_checkpool(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, 1, "in_cap");
    if (!lua_isnil(L, -1)) o.in_cap = (size_t)lpt_checkint(L, -1, 1, INT64_MAX);
    lua_pop(L, 1);
    lua_getfield(L, 1, "out_cap");
    if (!lua_isnil(L, -1)) o.out_cap = (size_t)lpt_checkint(L, -1, 1, INT64_MAX);
    lua_pop(L, 1);
    lua_getfield(L, 1, "budget");
    if (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1))
      o.budget = SIZE_MAX;
    else if (!lua_isnil(L, -1))
      o.budget = (size_t)lpt_checkint(L, -1, 1, INT64_MAX);
    lua_pop(L, 1);
    o.dns_ttl_ms = opt_int(L, 1, "dns_ttl", 0, 1, INT32_MAX);
    o.dns_delay_ms = opt_int(L, 1, "dns_delay", 0, 0, INT32_MAX);
    o.close_timeout_ms = opt_int(L, 1, "close_timeout", 0, 1, INT32_MAX);
    o.max_events = opt_int(L, 1, "max_events", 0, 1, MAX_BATCH);
    o.no_spin = opt_int(L, 1, "no_spin", 0, -1, 1) > 0;
    if (opt_int(L, 1, "no_sendfile", 0, -1, 1) > 0) o.zc_off |= PT_ZC_NO_SENDFILE;
    if (opt_int(L, 1, "no_splice", 0, -1, 1) > 0) o.zc_off |= PT_ZC_NO_SPLICE;
    lua_getfield(L, 1, "backend");
    if (!lua_isnil(L, -1)) {
      static const char *const names[] = {"epoll", "uring", "auto", "io_uring",
                                          NULL};
      static const int ids[] = {PT_BE_EPOLL, PT_BE_URING, PT_BE_AUTO,
                                PT_BE_URING};
      o.backend = ids[luaL_checkoption(L, -1, NULL, names)];
    }
    lua_pop(L, 1);
    o.sqpoll = opt_int(L, 1, "sqpoll", 0, -1, 1) > 0;
    lua_getfield(L, 1, "zc_min");
    if (!lua_isnil(L, -1))
      o.zc_min = lua_toboolean(L, -1) && lua_type(L, -1) != LUA_TBOOLEAN
                     ? (size_t)lpt_checkint(L, -1, 1, INT64_MAX)
                     : SIZE_MAX;
    lua_pop(L, 1);
    o.ring_bufs = (unsigned)opt_int(L, 1, "ring_bufs", 0, 1, 32768);
    o.ring_buf_size = (unsigned)opt_int(L, 1, "ring_buf_size", 0, 256, 1 << 30);
    o.ring_noinc = opt_int(L, 1, "ring_incremental", 0, -1, 1) < 0;
    o.ring_dgram_bufs = (unsigned)opt_int(L, 1, "ring_dgram_bufs", 0, 1, 32768);
    o.zc_force = opt_int(L, 1, "zc_force", 0, -1, 1) > 0;
  }
  char err[256] = "";
  o.err = err;
  o.errlen = sizeof err;
  lpt_Loop *LL = lua_newuserdata(L, sizeof *LL);
  memset(LL, 0, sizeof *LL);
  luaL_setmetatable(L, LPT_LOOP_MT);
  lua_createtable(L, 6, 0);
  for (int i = 1; i <= 6; i++) {
    lua_newtable(L);
    lua_rawseti(L, -2, i);
  }
  lpt_setuv(L, -2);
  o.on_release = on_release;
  o.ctx = LL;
  LL->loop = pt_loop_new(pool, &o);
  if (!LL->loop) return io_fail(L, err[0] ? err : strerror(errno));
  return 1;
}

/* loop:backend() -> "epoll" | "io_uring", note (the ring's features, or
 * why "auto" fell back to epoll) */
static int Lpt_backend(lua_State *L) {
  lpt_Loop *LL = check_loop(L);
  lua_pushstring(L, pt_loop_backend(LL->loop));
  lua_pushstring(L, pt_loop_backend_note(LL->loop));
  return 2;
}

static void loop_free(lua_State *L, lpt_Loop *LL, int hook) {
  if (LL->loop) lpt_untrap(LL->loop);
  if (LL->loop) {
    if (hook) hook_on(L, LL);
    pt_loop_free(LL->loop);
    LL->loop = NULL;
    LL->L = NULL;
  }
  free(LL->ev);
  LL->ev = NULL;
  LL->evcap = 0;
}

/* loop:close() / __close: close everything now, free the loop */
static int Lpt_loop_close(lua_State *L) {
  lpt_Loop *LL = lpt_checkudata(L, 1, LPT_LOOP_MT);
  loop_free(L, LL, 1);
  return 0;
}

static int Lpt_loop_gc(lua_State *L) {
  lpt_Loop *LL = lpt_checkudata(L, 1, LPT_LOOP_MT);
  loop_free(L, LL, 0); /* the anchor tables go with the userdata */
  return 0;
}

/* loop:listen(host, port [, opts]) | loop:listen("unix:/path" [, nil, opts])
 * -> listener id | nil, err. opts: backlog, reuseport, nodelay, keepalive,
 * sndbuf, rcvbuf (the last four apply to accepted conns). */
static int Lpt_listen(lua_State *L) {
  lpt_Loop *LL = check_loop(L);
  int port;
  const char *host = get_addr(L, &port);
  pt_sockopts o;
  get_sockopts(L, 4, &o);
  int backlog = opt_int(L, 4, "backlog", -1, 0, 65535);
  pt_conn *c = pt_listen(LL->loop, host, port, backlog, &o);
  if (!c) return io_fail(L, pt_loop_error(LL->loop));
  lua_pushinteger(L, (lua_Integer)c->id);
  return 1;
}

/* loop:connect(host, port [, timeout_ms [, opts]]) or
 * loop:connect("unix:/path", nil, timeout_ms, opts) -> conn id | nil, err.
 * A CONNECTED completion follows (err 0 or errno). */
static int Lpt_connect(lua_State *L) {
  lpt_Loop *LL = check_loop(L);
  int port;
  const char *host = get_addr(L, &port);
  if (!host) return luaL_argerror(L, 2, "address expected");
  int timeout = lua_isnoneornil(L, 4)
                    ? 0
                    : (int)lpt_checkint(L, 4, 0, INT32_MAX);
  pt_sockopts o;
  get_sockopts(L, 5, &o);
  pt_conn *c = pt_connect(LL->loop, host, port, timeout, &o);
  if (!c) return io_fail(L, pt_loop_error(LL->loop));
  lua_pushinteger(L, (lua_Integer)c->id);
  return 1;
}

/* loop:poll([timeout_ms = -1 [, max = 256]]) -> n, types, ids, errs, args
 * The four arrays are the same tables every call; entries 1..n are this
 * batch. types are core.loop_events values; errs are errno numbers (0 =
 * none); args: DATA bytes read, ACCEPTED listener id, else 0. The core's
 * DATAGRAM completions (one per datagram) of one socket that follow each
 * other are one entry: arg = how many, err 0 (loop:udp_recv takes each
 * datagram with its sender, length and error). */
static int Lpt_poll(lua_State *L) {
  lpt_Loop *LL = check_loop(L);
  int timeout = -1;
  if (!lua_isnoneornil(L, 2)) {
    lua_Number t = luaL_checknumber(L, 2);
    timeout = t < 0 ? -1 : t > INT32_MAX ? INT32_MAX : (int)ceil(t);
  }
  int max = lua_isnoneornil(L, 3) ? 256 : (int)lpt_checkint(L, 3, 1, MAX_BATCH);
  if (max > LL->evcap) {
    pt_event *ev = realloc(LL->ev, (size_t)max * sizeof *ev);
    if (!ev) return luaL_error(L, "out of memory");
    LL->ev = ev;
    LL->evcap = max;
  }
  lua_settop(L, 1);
  hook_on(L, LL); /* 2: uv, 3: ins, 4: outs */
  int n = pt_loop_poll(LL->loop, LL->ev, max, timeout);
  LL->L = NULL;
  if (n < 0) return io_fail(L, pt_loop_error(LL->loop));
  lua_pushinteger(L, n); /* replaced by the count of entries below */
  for (int k = 0; k < 4; k++) lua_rawgeti(L, 2, UV_TYPES + k);
  /* 5: n, 6: types, 7: ids, 8: errs, 9: args */
  int k = 0;
  uint64_t dg_id = 0; /* the socket of the run of datagrams entry k holds */
  lua_Integer dg_n = 0;
  for (int i = 0; i < n; i++) {
    const pt_event *e = &LL->ev[i];
    if (e->type == PT_EV_DGRAM && k > 0 && dg_id == e->id) {
      dg_n++; /* the run goes on: one entry */
      continue;
    }
    if (dg_n > 1) { /* the run before this one ended */
      lua_pushinteger(L, dg_n);
      lua_rawseti(L, 9, k);
    }
    dg_id = e->type == PT_EV_DGRAM ? e->id : 0;
    dg_n = 1;
    k++;
    lua_pushinteger(L, e->type);
    lua_rawseti(L, 6, k);
    lua_pushinteger(L, (lua_Integer)e->id);
    lua_rawseti(L, 7, k);
    lua_pushinteger(L, e->type == PT_EV_DGRAM ? 0 : e->err);
    lua_rawseti(L, 8, k);
    lua_pushinteger(L, e->type == PT_EV_DGRAM ? 1 : (lua_Integer)e->arg);
    lua_rawseti(L, 9, k);
  }
  if (dg_n > 1) {
    lua_pushinteger(L, dg_n);
    lua_rawseti(L, 9, k);
  }
  lua_pushinteger(L, k);
  lua_replace(L, 5);
  return 5;
}

/* loop:input(id) / loop:output(id) -> buffer | nil, err */
static int conn_buffer(lua_State *L, int which) {
  lpt_Loop *LL = check_loop(L);
  pt_conn *c = check_stream(L, LL, 2);
  if (!c) return io_fail(L, "connection closed");
  lua_settop(L, 2);
  lpt_getuv(L, 1);
  lua_rawgeti(L, 3, which == REF_IN ? UV_INS : UV_OUTS); /* 4 */
  lua_pushinteger(L, (lua_Integer)c->id);
  lua_rawget(L, 4);
  if (!lua_isnil(L, -1)) return 1;
  lua_pop(L, 1);
  pt_buf *b = lpt_newbuf(L, pt_loop_pool(LL->loop)); /* 5 */
  lua_pushinteger(L, (lua_Integer)c->id);
  lua_pushvalue(L, 5);
  lua_rawset(L, 4); /* anchored before the core points at it */
  if (which == REF_IN)
    pt_conn_set_bufs(c, b, NULL);
  else
    pt_conn_set_bufs(c, NULL, b);
  c->ref |= which;
  return 1;
}

static int Lpt_input(lua_State *L) { return conn_buffer(L, REF_IN); }
static int Lpt_output(lua_State *L) { return conn_buffer(L, REF_OUT); }

static int send_result(lua_State *L, int r) {
  if (r < 0) return io_fail(L, strerror(errno));
  lua_pushinteger(L, r);
  return 1;
}

/* loop:send(id) -> 0 written | 1 pending (DRAINED follows) | 2 pending and
 * over out_cap | nil, err (the conn is closed, CLOSED follows) */
static int Lpt_send(lua_State *L) {
  lpt_Loop *LL = check_loop(L);
  pt_conn *c = check_stream(L, LL, 2);
  if (!c) return io_fail(L, "connection closed");
  return send_result(L, pt_conn_send(c));
}

/* loop:send_later(id) -> 0 | 2 (over out_cap) | nil, err: leaves in the
 * flush at the start of the next poll (one writev per conn per round) */
static int Lpt_send_later(lua_State *L) {
  lpt_Loop *LL = check_loop(L);
  pt_conn *c = check_stream(L, LL, 2);
  if (!c) return io_fail(L, "connection closed");
  return send_result(L, pt_conn_send_later(c));
}

/* loop:flush(): deferred sends now */
static int Lpt_flush(lua_State *L) {
  pt_loop_flush(check_loop(L)->loop);
  return 0;
}

/* loop:close(id [, flush]) -> true | false (unknown or already closed) */
static int Lpt_conn_close(lua_State *L) {
  lpt_Loop *LL = check_loop(L);
  pt_conn *c = find_conn(L, LL, 2);
  int ok = c && !(c->flags & PT_CF_CLOSED);
  if (ok) pt_conn_close(c, lua_toboolean(L, 3));
  lua_pushboolean(L, ok);
  return 1;
}

/* loop:consumed(id): resume reading after input backpressure */
static int Lpt_consumed(lua_State *L) {
  lpt_Loop *LL = check_loop(L);
  pt_conn *c = check_stream(L, LL, 2);
  if (c) pt_conn_consumed(c);
  return 0;
}

/* loop:caps(id, in_cap, out_cap): per-conn limits (0: none) */
static int Lpt_caps(lua_State *L) {
  lpt_Loop *LL = check_loop(L);
  pt_conn *c = check_stream(L, LL, 2);
  size_t in = (size_t)lpt_checkint(L, 3, 0, INT64_MAX);
  size_t out = (size_t)lpt_checkint(L, 4, 0, INT64_MAX);
  if (c) pt_conn_set_caps(c, in, out);
  return 0;
}

/* loop:sendfile(id, path | fd | file [, offset = 0 [, len = to the end]])
 * -> true | nil, err. Queues the file range behind the conn's output; a
 * DRAINED completion follows once it is written. A path is opened (and
 * closed) here; an fd or an open Lua file (io.open) stays the caller's
 * (the range is read from offset, the file's position is not used). For
 * a regular file a range past its end fails. */
static int Lpt_sendfile(lua_State *L) {
  lpt_Loop *LL = check_loop(L);
  pt_conn *c = check_stream(L, LL, 2);
  int t = lua_type(L, 3);
  int file_fd = t == LUA_TUSERDATA ? lpt_tofilefd(L, 3) : -1;
  if (t != LUA_TSTRING && t != LUA_TNUMBER && file_fd < 0)
    return luaL_argerror(L, 3, "path, fd or open file expected");
  int64_t off = lua_isnoneornil(L, 4) ? 0 : lpt_checkint(L, 4, 0, INT64_MAX);
  int has_len = !lua_isnoneornil(L, 5);
  size_t len = has_len ? (size_t)lpt_checkint(L, 5, 0, INT64_MAX) : SIZE_MAX;
  int fd = -1, own = 0;
  if (t == LUA_TNUMBER) fd = (int)lpt_checkint(L, 3, 0, INT32_MAX);
  if (file_fd >= 0) fd = file_fd;
  if (!c || (c->flags & PT_CF_CLOSED)) return io_fail(L, "connection closed");
  if (t == LUA_TSTRING) {
    const char *path = lua_tostring(L, 3);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      lua_pushnil(L);
      lua_pushfstring(L, "%s: %s", path, strerror(errno));
      return 2;
    }
    own = 1;
  }
  struct stat st;
  const char *msg = NULL;
  int e = 0;
  if (fstat(fd, &st) != 0) {
    e = errno;
  } else if (S_ISREG(st.st_mode)) {
    if (off > (int64_t)st.st_size) {
      msg = "offset beyond end of file";
    } else {
      size_t rest = (size_t)(st.st_size - off);
      if (!has_len)
        len = rest;
      else if (len > rest)
        msg = "range beyond end of file";
    }
  }
  if (!e && !msg && pt_conn_sendfile(c, fd, (off_t)off, len) != 0) e = errno;
  if (own) close(fd);
  if (msg) return io_fail(L, msg);
  if (e) return io_fail(L, strerror(e));
  lua_pushboolean(L, 1);
  return 1;
}

/* loop:splice(from_id, to_id [, len = 0 (until EOF)]) -> true | nil, err.
 * A SPLICED completion (id = from_id, arg = bytes moved, err) ends it. */
static int Lpt_splice(lua_State *L) {
  lpt_Loop *LL = check_loop(L);
  pt_conn *from = check_stream(L, LL, 2);
  pt_conn *to = check_stream(L, LL, 3);
  size_t len = lua_isnoneornil(L, 4) ? 0 : (size_t)lpt_checkint(L, 4, 0, INT64_MAX);
  if (!from || !to) return io_fail(L, "connection closed");
  if (pt_conn_splice(from, to, len) != 0) return io_fail(L, strerror(errno));
  lua_pushboolean(L, 1);
  return 1;
}

/* loop:pending(id) -> bytes still to write (output, files, spliced bytes
 * held for it) | nil, err */
static int Lpt_pending(lua_State *L) {
  lpt_Loop *LL = check_loop(L);
  pt_conn *c = check_stream(L, LL, 2);
  if (!c || (c->flags & PT_CF_CLOSED)) return io_fail(L, "connection closed");
  size_t n = pt_conn_pending(c);
  lua_pushinteger(L, n > (size_t)INT64_MAX ? INT64_MAX : (lua_Integer)n);
  return 1;
}

/* loop:batch() -> types, ids, errs, args: the arrays the last poll filled
 * (the same tables poll returns) */
static int Lpt_batch(lua_State *L) {
  check_loop(L);
  lpt_getuv(L, 1);
  for (int k = 0; k < 4; k++) lua_rawgeti(L, 2, UV_TYPES + k);
  return 4;
}

/* loop:timer(ms) -> timer id */
static int Lpt_timer(lua_State *L) {
  lpt_Loop *LL = check_loop(L);
  lua_Number ms = luaL_checknumber(L, 2);
  if (ms != ms || ms < 0) return luaL_argerror(L, 2, "non-negative number expected");
  uint64_t id = pt_loop_timer(LL->loop, ms > 1e15 ? (int64_t)1e15 : (int64_t)ceil(ms));
  if (!id) return luaL_error(L, "out of memory");
  lua_pushinteger(L, (lua_Integer)id);
  return 1;
}

/* loop:cancel(timer_id) -> true | false (unknown or already fired) */
static int Lpt_cancel(lua_State *L) {
  lpt_Loop *LL = check_loop(L);
  lua_pushboolean(L, pt_loop_cancel(LL->loop, check_id(L, 2)) == 0);
  return 1;
}

static int Lpt_wake(lua_State *L) {
  pt_loop_wake(check_loop(L)->loop);
  return 0;
}

static int Lpt_now(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)pt_loop_now(check_loop(L)->loop));
  return 1;
}

/* loop:info(id) -> peer, local (address strings) | nil, err. peer is nil
 * for listeners and unconnected datagram sockets. */
static int Lpt_info(lua_State *L) {
  lpt_Loop *LL = check_loop(L);
  pt_conn *c = find_conn(L, LL, 2);
  char peer[160], local[160];
  if (!c || c->fd < 0) return io_fail(L, "connection closed");
  if (pt_conn_addr(c, 0, local, sizeof local) != 0)
    return io_fail(L, strerror(errno));
  if (c->kind == PT_KIND_LISTENER || pt_conn_addr(c, 1, peer, sizeof peer) != 0)
    lua_pushnil(L);
  else
    lua_pushstring(L, peer);
  lua_pushstring(L, local);
  return 2;
}

/* loop:error(id) -> why the conn's connect failed ("connect
 * 127.0.0.1:9090: Connection refused", "resolve nosuch.invalid: Name or
 * service not known") | nil. Valid until the conn is recycled. */
static int Lpt_error(lua_State *L) {
  lpt_Loop *LL = check_loop(L);
  pt_conn *c = find_conn(L, LL, 2);
  const char *e = c ? pt_conn_error(c) : NULL;
  if (e)
    lua_pushstring(L, e);
  else
    lua_pushnil(L);
  return 1;
}

/* loop:trap(name, ...) -> loop: the named signals wake this loop and are
 * reported by core.signals() instead of their default action. */
static int Lpt_trap(lua_State *L) {
  lpt_Loop *LL = check_loop(L);
  lpt_trap(L, LL->loop, 2);
  lua_settop(L, 1);
  return 1;
}

/* loop:watch(fd [, "r" | "w" | "rw"]) -> watch id | nil, err: READY
 * completions (arg: core.watch_bits IN, OUT, ERR, HUP) while fd is ready,
 * every round it stays so; loop:close(id) stops. The loop watches a
 * duplicate of fd (pt_loop_watch): fd stays the caller's. */
static int Lpt_watch(lua_State *L) {
  lpt_Loop *LL = check_loop(L);
  int fd = (int)lpt_checkint(L, 2, 0, INT32_MAX);
  static const char *const modes[] = {"r", "w", "rw", NULL};
  static const uint32_t bits[] = {PT_WATCH_IN, PT_WATCH_OUT,
                                  PT_WATCH_IN | PT_WATCH_OUT};
  uint32_t ev = bits[luaL_checkoption(L, 3, "r", modes)];
  pt_conn *c = pt_loop_watch(LL->loop, fd, ev);
  if (!c) return io_fail(L, pt_loop_error(LL->loop));
  lua_pushinteger(L, (lua_Integer)c->id);
  return 1;
}

/* loop:port(id) -> local TCP port | nil */
static int Lpt_port(lua_State *L) {
  lpt_Loop *LL = check_loop(L);
  pt_conn *c = find_conn(L, LL, 2);
  int p = c ? pt_conn_port(c) : -1;
  if (p < 0)
    lua_pushnil(L);
  else
    lua_pushinteger(L, p);
  return 1;
}

static int Lpt_close_all(lua_State *L) {
  pt_loop_close_all(check_loop(L)->loop);
  return 0;
}

#define STAT_FIELDS(X)                                                    \
  X(conns_open) X(listeners_open) X(accepted) X(connected) X(closed)      \
  X(bytes_in) X(bytes_out) X(readv_calls) X(writev_calls) X(wait_zero)    \
  X(wait_block) X(wakeups) X(timers_active) X(timers_fired) X(events)     \
  X(rd_paused) X(wr_paused) X(budget_paused) X(held) X(accept_dropped)   \
  X(recycled) X(dns_lookups) X(dns_cached) X(ring_sqes) X(ring_cqes)      \
  X(ring_enters) X(ring_enobufs) X(ring_linked) X(zc_sends) X(zc_copied)  \
  X(splice_pipes) X(settled)  \
  X(udp_open) X(dgrams_in) X(dgrams_out) X(dgrams_cut) X(dgram_send_errors)

/* loop:stats() -> table of counters */
static int Lpt_stats(lua_State *L) {
  pt_loop_stats st;
  pt_loop_stats_get(check_loop(L)->loop, &st);
  lua_createtable(L, 0, 40);
#define X(f)                                 \
  lua_pushinteger(L, (lua_Integer)st.f);     \
  lua_setfield(L, -2, #f);
  STAT_FIELDS(X)
#undef X
  return 1;
}

/* core.strerror(errno) -> message */
static int Lpt_strerror(lua_State *L) {
  lua_pushstring(L, strerror((int)lpt_checkint(L, 1, 0, 4095)));
  return 1;
}

static const luaL_Reg loop_methods[] = {
    {"trap", Lpt_trap},
    {"listen", Lpt_listen},       {"connect", Lpt_connect},
    {"poll", Lpt_poll},           {"input", Lpt_input},
    {"output", Lpt_output},       {"send", Lpt_send},
    {"send_later", Lpt_send_later}, {"flush", Lpt_flush},
    {"close", Lpt_conn_close},    {"consumed", Lpt_consumed},
    {"caps", Lpt_caps},           {"timer", Lpt_timer},
    {"cancel", Lpt_cancel},       {"wake", Lpt_wake},
    {"now", Lpt_now},             {"info", Lpt_info},
    {"port", Lpt_port},           {"close_all", Lpt_close_all},
    {"stats", Lpt_stats},         {"free", Lpt_loop_close},
    {"sendfile", Lpt_sendfile},   {"splice", Lpt_splice},
    {"pending", Lpt_pending},     {"batch", Lpt_batch},
    {"backend", Lpt_backend},     {"error", Lpt_error},
    {"watch", Lpt_watch},
    {NULL, NULL}};

static const luaL_Reg loop_meta[] = {
    {"__gc", Lpt_loop_gc}, {"__close", Lpt_loop_close}, {NULL, NULL}};

static const luaL_Reg loop_funcs[] = {
    {"loop", Lpt_loop}, {"strerror", Lpt_strerror}, {NULL, NULL}};

/* stack: module, state, buffer metatable */
void lpt_open_loop(lua_State *L) {
  int mod = lua_gettop(L) - 2;
  luaL_newmetatable(L, LPT_LOOP_MT); /* module, state, bmt, mt */
  lua_newtable(L);                   /* methods */
  lpt_setfuncs(L, -1, mod, loop_methods);
  lpt_setfuncs(L, -1, mod, lpt_udp_methods);
  lua_setfield(L, -2, "__index");
  lpt_setfuncs(L, -1, mod, loop_meta);
  lua_pop(L, 1); /* module, state, bmt */
  lpt_setfuncs(L, mod, mod, loop_funcs);
  lpt_open_proc(L, mod);
#ifdef PT_NO_URING
  static const char *const backends[] = {"epoll", NULL};
#else
  static const char *const backends[] = {"epoll", "io_uring", NULL};
#endif
  /* core.loop_backends = { "epoll", "io_uring" }: compiled in */
  lua_newtable(L);
  for (int i = 0; backends[i]; i++) {
    lua_pushstring(L, backends[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, mod, "loop_backends");
  /* core.loop_events = { accepted = 1, ..., [1] = "accepted", ... } */
  lua_newtable(L);
#define PT_X(n, v, s)        \
  lua_pushinteger(L, v);     \
  lua_setfield(L, -2, s);    \
  lua_pushliteral(L, s);     \
  lua_rawseti(L, -2, v);
  PT_EVENT_TYPES(PT_X)
#undef PT_X
  lua_setfield(L, -4, "loop_events");
}
