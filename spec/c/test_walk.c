/* test_walk.c — guard-page runs of the table walkers' decoders, Binary and
 * Compact: Lua 5.4 embedded with the binding linked in; every prefix of
 * each message is placed so it ends just before a PROT_NONE page and
 * linked (no copy) into a petrel.buffer that T:decode reads in place. A
 * read past the input faults; a prefix must give nil, err, the whole
 * message its value. Run from the top directory (loads lua/ and
 * bench/data). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ctest.h"
#include "lauxlib.h"
#include "lua.h"
#include "lualib.h"
#include "lua/lpt.h"

int luaopen_petrel_core(lua_State *L);

/* The Lua side: schemas and messages to decode. Returns a table of
 * { T = type, bytes = string, opts = decode options }. */
static const char *setup =
    "package.path = 'lua/?.lua;lua/?/init.lua;./?.lua;' .. package.path\n"
    "local petrel = require 'petrel'\n"
    "local W = require 'bench.workload'\n"
    "local A = petrel.schema {\n"
    "  E = petrel.enum { X = 1, Y = 2 },\n"
    "  In = petrel.struct { {1, 'n', 'i32'}, {2, 's', 'string', 'optional'} },\n"
    "  All = petrel.struct { {1, 'b', 'bool'}, {2, 'y', 'byte'}, {3, 'h', 'i16'},\n"
    "    {4, 'i', 'i32'}, {5, 'l', 'i64'}, {6, 'd', 'double'}, {7, 's', 'string'},\n"
    "    {8, 'u', 'uuid'}, {9, 'e', 'E'}, {10, 'in', 'In'}, {11, 'lb', 'list<bool>'},\n"
    "    {12, 'li', 'list<i64>'}, {13, 'ld', 'list<double>'}, {14, 'st', 'set<i32>'},\n"
    "    {15, 'm', 'map<string,In>'}, {16, 'mi', 'map<i64,bool>'},\n"
    "    {-2, 'neg', 'i16'}, {40, 'far', 'bool'} },\n"
    "}\n"
    "local v = { b = true, y = -1, h = -300, i = 70000, l = -5000000000,\n"
    "  d = 0.25, s = 'hé', u = '00112233-4455-6677-8899-aabbccddeeff', e = 2,\n"
    "  ['in'] = { n = 1, s = 'x' }, lb = { true, false, true },\n"
    "  li = { 1, -1, 300, -70000 }, ld = { 1.5, -2 }, st = { 3, 1 },\n"
    "  m = { a = { n = 1 }, b = { n = 2, s = '' } }, mi = { [7] = true, [-8] = false },\n"
    "  neg = 5, far = false }\n"
    "local f = assert(io.open('bench/data/small.bin', 'rb'))\n"
    "local small = f:read('a')\n"
    "f:close()\n"
    "local req = W.Request:decode(small)\n"
    "local cases = {}\n"
    "for _, proto in ipairs({ 'binary', 'compact' }) do\n"
    "  local o = { protocol = proto }\n"
    "  cases[#cases + 1] = { T = A.All, bytes = A.All:encode(v, o), opts = o }\n"
    "  cases[#cases + 1] = { T = A.All, bytes = A.All:encode(v, o),\n"
    "    opts = { protocol = proto, typed = true, unknown = true } }\n"
    "  cases[#cases + 1] = { T = W.Request, bytes = W.Request:encode(req, o), opts = o }\n"
    "  cases[#cases + 1] = { T = A.In, bytes = A.All:encode(v, o),\n"
    "    opts = { protocol = proto, unknown = true } }\n"
    "end\n"
    "return cases, petrel.buffer()\n";

static int run_case(lua_State *L, int cases, int i, int bufidx) {
  lua_rawgeti(L, cases, i);
  int c = lua_gettop(L);
  lua_getfield(L, c, "bytes");
  size_t n;
  const char *bytes = lua_tolstring(L, -1, &n);
  size_t ps = (size_t)sysconf(_SC_PAGESIZE);
  size_t pages = (n + ps - 1) / ps + 1;
  unsigned char *map = mmap(NULL, (pages + 1) * ps, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(map != MAP_FAILED);
  unsigned char *end = map + pages * ps;
  CHECK(mprotect(end, ps, PROT_NONE) == 0);
  pt_buf *b = lua_touserdata(L, bufidx); /* the userdata is a pt_buf */
  int ok = 1;
  for (size_t k = 0; k <= n; k++) {
    unsigned char *at = end - k;
    memcpy(at, bytes, k);
    pt_buf_clear(b);
    if (k) CHECK(pt_buf_link(b, at, k, NULL, NULL, 0) == 0);
    lua_getfield(L, c, "T");
    lua_getfield(L, -1, "decode");
    lua_insert(L, -2);
    lua_pushvalue(L, bufidx);
    lua_pushinteger(L, 1);
    lua_getfield(L, c, "opts");
    if (lua_pcall(L, 4, 2, 0) != LUA_OK) {
      fprintf(stderr, "decode raised: %s\n", lua_tostring(L, -1));
      ok = 0;
      lua_pop(L, 1);
      continue;
    }
    int got = !lua_isnil(L, -2);
    if (k < n && got) {
      /* a shorter input can only be whole when the struct type stops
       * early (In over All's bytes): then it stops at the same place */
      lua_Integer next = lua_tointeger(L, -1);
      if ((size_t)next > k + 1) ok = 0;
    }
    if (k == n && !got) {
      fprintf(stderr, "case %d: %s\n", i, lua_tostring(L, -1));
      ok = 0;
    }
    if (k < n && !got && !lua_isstring(L, -1)) ok = 0;
    lua_pop(L, 2);
  }
  CHECK(ok);
  pt_buf_clear(b);
  munmap(map, (pages + 1) * ps);
  lua_settop(L, c - 1);
  return ok;
}

static void test_walkers_guard(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  luaL_requiref(L, "petrel.core", luaopen_petrel_core, 0);
  lua_pop(L, 1);
  if (luaL_loadstring(L, setup) != LUA_OK || lua_pcall(L, 0, 2, 0) != LUA_OK) {
    fprintf(stderr, "setup: %s\n", lua_tostring(L, -1));
    CHECK(0);
    lua_close(L);
    return;
  }
  int cases = lua_gettop(L) - 1, buf = cases + 1;
  int n = (int)lua_rawlen(L, cases);
  CHECK(n == 8);
  for (int i = 1; i <= n; i++) run_case(L, cases, i, buf);
  lua_close(L);
}

int main(void) {
  TEST(test_walkers_guard);
  return ct_report();
}
