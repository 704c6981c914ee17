/*
 * lpt_bench.c — petrel.core.bench: the thin Lua face of the load generator
 * (pt_bench.c), used by `petrel bench` (lua/petrel/cli/bench.lua).
 *
 *   core.bench{ host =, port = | unix =, request = <the message as sent>,
 *               framed = true, conns = 1, depth = 1, rate = 0 (calls/s),
 *               duration = 5 (s), warmup = 0 (s), connect_timeout = ms,
 *               max_frame = bytes, backend = "epoll" | "uring" | "auto",
               io = "auto" | "loop" | "direct" (pt_bench.h) }
 *     -> bench | nil, err
 *   bench:run(ms) -> true (more to do) | false (done) | nil, err
 *   bench:stats() -> { phase, conns_up, connect_errors, calls, errors,
 *       exceptions, app_errors, sent, replies, late, elapsed, cpu,
 *       calls_per_s, min_us, mean_us, max_us, p50_us, p90_us, p99_us,
 *       p999_us }
 *   bench:quantile(q) -> microseconds
 *   bench:error() -> the first error seen | nil
 *   bench:free() (also __gc, __close)
 *
 * Misuse raises; a request the generator cannot use, or a failed run,
 * returns nil, err.
 */
#include <string.h>

#include "lpt.h"
#include "../pt_bench.h"
#include "../pt_loop.h"

#define LPT_BENCH_MT "petrel.bench"

typedef struct lpt_Bench {
  pt_bench *b;
} lpt_Bench;

static pt_bench *check_bench(lua_State *L) {
  lpt_Bench *B = luaL_checkudata(L, 1, LPT_BENCH_MT);
  if (!B->b) luaL_argerror(L, 1, "bench is freed");
  return B->b;
}

static lua_Number opt_num(lua_State *L, const char *k, lua_Number def) {
  lua_getfield(L, 1, k);
  lua_Number v = lua_isnil(L, -1) ? def : luaL_checknumber(L, -1);
  lua_pop(L, 1);
  return v;
}

static int64_t opt_int(lua_State *L, const char *k, int64_t def, int64_t lo,
                       int64_t hi) {
  lua_getfield(L, 1, k);
  int64_t v = lua_isnil(L, -1) ? def : lpt_checkint(L, -1, lo, hi);
  lua_pop(L, 1);
  return v;
}

static int Lpt_bench(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  pt_bench_opts o;
  memset(&o, 0, sizeof o);
  lua_getfield(L, 1, "unix");
  const char *unix_path = lua_tostring(L, -1);
  lua_getfield(L, 1, "host");
  const char *host = lua_tostring(L, -1);
  lua_getfield(L, 1, "request");
  size_t rlen = 0;
  const char *req = lua_tolstring(L, -1, &rlen);
  if (!req) return luaL_argerror(L, 1, "request (the message as sent) expected");
  /* 3 strings stay on the stack while pt_bench_new copies what it keeps */
  if (unix_path) {
    lua_pushfstring(L, "unix:%s", unix_path);
    o.host = lua_tostring(L, -1);
  } else {
    o.host = host ? host : "127.0.0.1";
    o.port = (int)opt_int(L, "port", 0, 1, 65535);
    if (!o.port) return luaL_argerror(L, 1, "port or unix expected");
  }
  o.req = req;
  o.req_len = rlen;
  o.conns = (int)opt_int(L, "conns", 1, 1, 100000);
  o.depth = (int)opt_int(L, "depth", 1, 1, 65536);
  o.rate = opt_num(L, "rate", 0);
  if (!(o.rate >= 0)) return luaL_argerror(L, 1, "rate must be >= 0");
  lua_Number d = opt_num(L, "duration", 5), w = opt_num(L, "warmup", 0);
  if (!(d > 0 && d <= 86400) || !(w >= 0 && w <= 86400))
    return luaL_argerror(L, 1, "duration must be in (0, 86400] s, warmup in [0, 86400]");
  o.duration_ms = (int64_t)(d * 1000 + 0.5);
  if (o.duration_ms < 1) o.duration_ms = 1;
  o.warmup_ms = (int64_t)(w * 1000 + 0.5);
  o.connect_timeout_ms = (int)opt_int(L, "connect_timeout", 3000, 1, INT32_MAX);
  o.max_frame = (size_t)opt_int(L, "max_frame", 16 << 20, 16, INT32_MAX);
  lua_getfield(L, 1, "framed");
  o.framed = lua_isnil(L, -1) ? 1 : lua_toboolean(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, 1, "backend");
  if (!lua_isnil(L, -1)) {
    static const char *const names[] = {"epoll", "uring", "auto", "io_uring", NULL};
    static const int ids[] = {PT_BE_EPOLL, PT_BE_URING, PT_BE_AUTO, PT_BE_URING};
    o.backend = ids[luaL_checkoption(L, -1, NULL, names)];
  }
  lua_pop(L, 1);
  lua_getfield(L, 1, "io");
  if (!lua_isnil(L, -1)) {
    static const char *const ionames[] = {"auto", "loop", "direct", NULL};
    static const int ioids[] = {PT_BENCH_IO_AUTO, PT_BENCH_IO_LOOP, PT_BENCH_IO_DIRECT};
    o.io = ioids[luaL_checkoption(L, -1, NULL, ionames)];
  }
  lua_pop(L, 1);
  lpt_Bench *B = lua_newuserdata(L, sizeof *B);
  B->b = NULL;
  luaL_setmetatable(L, LPT_BENCH_MT);
  char err[256] = "";
  B->b = pt_bench_new(&o, err, sizeof err);
  if (!B->b) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  return 1;
}

static int Lpt_bench_run(lua_State *L) {
  pt_bench *b = check_bench(L);
  int ms = (int)lpt_checkint(L, 2, 0, INT32_MAX);
  int r = pt_bench_run(b, ms);
  if (r < 0) {
    lua_pushnil(L);
    lua_pushstring(L, pt_bench_error(b) ? pt_bench_error(b) : "failed");
    return 2;
  }
  lua_pushboolean(L, r > 0);
  return 1;
}

static void set_num(lua_State *L, const char *k, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

static void set_int(lua_State *L, const char *k, uint64_t v) {
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, k);
}

static int Lpt_bench_stats(lua_State *L) {
  pt_bench *b = check_bench(L);
  pt_bench_stats s;
  pt_bench_stats_get(b, &s);
  static const char *const phases[] = {"connecting", "warmup", "measuring", "done"};
  lua_createtable(L, 0, 24);
  lua_pushstring(L, phases[s.phase]);
  lua_setfield(L, -2, "phase");
  set_int(L, "conns_up", (uint64_t)s.conns_up);
  set_int(L, "connect_errors", (uint64_t)s.connect_errors);
  set_int(L, "calls", s.calls);
  set_int(L, "errors", s.errors);
  set_int(L, "exceptions", s.exceptions);
  set_int(L, "app_errors", s.app_errors);
  set_int(L, "sent", s.sent);
  set_int(L, "replies", s.replies);
  set_int(L, "late", s.late);
  set_num(L, "elapsed", s.elapsed);
  set_num(L, "cpu", s.cpu);
  set_num(L, "calls_per_s", s.elapsed > 0 ? (double)s.calls / s.elapsed : 0);
  const pt_hist *h = s.hist;
  set_num(L, "min_us", h->n ? (double)h->min / 1e3 : 0);
  set_num(L, "max_us", (double)h->max / 1e3);
  set_num(L, "mean_us", h->n ? h->sum / (double)h->n / 1e3 : 0);
  set_num(L, "p50_us", (double)pt_hist_quantile(h, 0.50) / 1e3);
  set_num(L, "p90_us", (double)pt_hist_quantile(h, 0.90) / 1e3);
  set_num(L, "p99_us", (double)pt_hist_quantile(h, 0.99) / 1e3);
  set_num(L, "p999_us", (double)pt_hist_quantile(h, 0.999) / 1e3);
  return 1;
}

static int Lpt_bench_quantile(lua_State *L) {
  pt_bench *b = check_bench(L);
  lua_Number q = luaL_checknumber(L, 2);
  if (!(q >= 0 && q <= 1)) return luaL_argerror(L, 2, "a quantile in [0, 1] expected");
  pt_bench_stats s;
  pt_bench_stats_get(b, &s);
  lua_pushnumber(L, (double)pt_hist_quantile(s.hist, q) / 1e3);
  return 1;
}

static int Lpt_bench_error(lua_State *L) {
  const char *e = pt_bench_error(check_bench(L));
  if (e)
    lua_pushstring(L, e);
  else
    lua_pushnil(L);
  return 1;
}

static int Lpt_bench_free(lua_State *L) {
  lpt_Bench *B = luaL_checkudata(L, 1, LPT_BENCH_MT);
  pt_bench_free(B->b);
  B->b = NULL;
  return 0;
}

static const luaL_Reg bench_methods[] = {
    {"run", Lpt_bench_run},           {"stats", Lpt_bench_stats},
    {"quantile", Lpt_bench_quantile}, {"error", Lpt_bench_error},
    {"free", Lpt_bench_free},         {NULL, NULL}};

static const luaL_Reg bench_meta[] = {
    {"__gc", Lpt_bench_free}, {"__close", Lpt_bench_free}, {NULL, NULL}};

static const luaL_Reg bench_funcs[] = {{"bench", Lpt_bench}, {NULL, NULL}};

/* stack: module, state, buffer metatable (the lpt_open_* contract) */
void lpt_open_bench(lua_State *L) {
  int mod = lua_gettop(L) - 2;
  luaL_newmetatable(L, LPT_BENCH_MT);
  lua_newtable(L);
  lpt_setfuncs(L, -1, mod, bench_methods);
  lua_setfield(L, -2, "__index");
  lpt_setfuncs(L, -1, mod, bench_meta);
  lua_pop(L, 1);
  lpt_setfuncs(L, mod, mod, bench_funcs);
}
