/* fuzz_decode.c — libFuzzer harness for the Thrift decoder (make fuzz).
 * Embeds Lua 5.4 with petrel.core linked in, compiles the workload schema
 * and a schema using every type, and decodes each input with every struct
 * type (plain and typed arrays), plus the raw skipper. A decode may return
 * nil, err; it must never raise, crash or trip a sanitizer. When it
 * succeeds, re-encoding the value must succeed and decode again. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "lauxlib.h"
#include "lua.h"
#include "lualib.h"

int luaopen_petrel_core(lua_State *L);

static lua_State *L;

static const char *setup =
    "package.path = 'lua/?.lua;lua/?/init.lua;' .. package.path\n"
    "local petrel = require 'petrel'\n"
    "local W = require 'petrel.workload'\n"
    "local A = petrel.schema {\n"
    "  E = petrel.enum { A = 1, B = 2 },\n"
    "  In = petrel.struct { {1, 'n', 'i32'}, {2, 's', 'string', 'optional'} },\n"
    "  N = petrel.struct { {1, 'v', 'i64'}, {2, 'kids', 'list<N>', 'optional'} },\n"
    "  U = petrel.union { {1, 'i', 'i32'}, {2, 's', 'string'} },\n"
    "  All = petrel.struct { {1,'b','bool'}, {2,'y','byte'}, {3,'h','i16'},\n"
    "    {4,'i','i32'}, {5,'l','i64'}, {6,'d','double'}, {7,'s','string'},\n"
    "    {8,'bin','binary'}, {9,'u','uuid'}, {10,'e','E'}, {11,'in','In'},\n"
    "    {12,'ls','list<string>'}, {13,'st','set<i64>'},\n"
    "    {14,'m','map<string,list<In>>'}, {15,'md','map<double,bool>'},\n"
    "    {16,'n','N'}, {17,'un','U'}, {18,'r','i32','required'},\n"
    "    {19,'dv','i16', default = 5}, {20,'ld','list<double>'} },\n"
    "}\n"
    "local types = { W.Request, W.MyTest, W.Blob, W.Vectors, W.Base, A.All, A.N }\n"
    "local opts = { { typed = true, enum_names = true }, { max_depth = 8 } }\n"
    "return function(s)\n"
    "  for _, T in ipairs(types) do\n"
    "    local v, err = T:decode(s)\n"
    "    if v then\n"
    "      local ok, bytes = pcall(T.encode, T, v)\n"
    "      if ok then assert(T:decode(bytes), 'reencoded value does not decode') end\n"
    "    else assert(type(err) == 'string') end\n"
    "    for _, o in ipairs(opts) do T:decode(s, 1, o) end\n"
    "    if #s > 2 then T:decode(s, 3) end\n"
    "  end\n"
    "  for t = 0, 17 do petrel.core.skip(s, 1, t) end\n"
    "end\n";

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  L = luaL_newstate();
  luaL_openlibs(L);
  luaL_requiref(L, "petrel.core", luaopen_petrel_core, 0);
  lua_pop(L, 1);
  if (luaL_loadstring(L, setup) || lua_pcall(L, 0, 1, 0)) {
    fprintf(stderr, "fuzz setup: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_setfield(L, LUA_REGISTRYINDEX, "petrel.fuzz");
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_getfield(L, LUA_REGISTRYINDEX, "petrel.fuzz");
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    fprintf(stderr, "decoder raised: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_gc(L, LUA_GCSTEP, 0);
  return 0;
}
