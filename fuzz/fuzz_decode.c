/* fuzz_decode.c — libFuzzer harness for the Thrift decoder (make fuzz,
 * run from the top directory). Built three times, FUZZ_MODE choosing what
 * fuzz/fuzz_decode.lua checks: "binary" (below), "compact" (the same
 * checks with every decode and encode in the Compact protocol) and "diff"
 * (differential: a value decoded from the input in either protocol is
 * encoded in both, and decoding each must give equal values) and "view"
 * (message views, fuzz/fuzz_view.lua: random paths read through T:view).
 * Embeds Lua 5.4 with petrel.core linked in;
 * fuzz/fuzz_decode.lua holds the schemas and the checks. Each input is
 * decoded with every struct type of several schemas: the workload, every
 * scalar and container type, nested containers, maps with struct keys and
 * values, sets, uuid, enums, unions, exceptions, (mutually) recursive
 * structs, defaults (containers too), per-field typed arrays, a wide
 * struct; with the default options and one option set picked by the
 * input's last byte (typed arrays, unknown = true, enum_names, small
 * max_depth, all combined), at positions 1 and 3, from a string and from a
 * buffer; plus the raw skipper on every wire type.
 *
 * A decode must never raise, crash or trip a sanitizer. On failure it
 * returns nil, "Type...: problem at offset N" with N inside the input. On
 * success: the next position is inside the input and the skipper agrees
 * on it; re-encoding with the same options succeeds (a union decoded with
 * several fields set is the one value encode refuses) and decodes again
 * to its full length; where the output is canonical (no map keys in
 * pairs order) the second encoding equals the first. Memory allocated
 * while one input is decoded must stay within MEM_PER_BYTE times its size
 * (plus MEM_SLACK): every Lua allocation is counted. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lauxlib.h"
#include "lua.h"
#include "lualib.h"

int luaopen_petrel_core(lua_State *L);

#ifndef FUZZ_MODE
#define FUZZ_MODE "binary"
#endif

static lua_State *L;

/* Counting allocator: live bytes, the peak since the last mark, and a
 * hard cap so an allocation bomb shows as a failure, not an OOM kill. */
#define MEM_CAP ((size_t)2 << 30)
#define MEM_PER_BYTE 160
#define MEM_SLACK ((size_t)64 << 10)
static size_t mem_live, mem_peak;

static void *count_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  if (!ptr) osize = 0;
  if (nsize == 0) {
    free(ptr);
    mem_live -= osize;
    return NULL;
  }
  if (nsize > osize && mem_live + (nsize - osize) > MEM_CAP) return NULL;
  void *p = realloc(ptr, nsize);
  if (!p) return NULL;
  mem_live = mem_live - osize + nsize;
  if (mem_live > mem_peak) mem_peak = mem_live;
  return p;
}

/* mem_mark() resets the peak; mem_growth() -> peak bytes above the mark */
static size_t mem_base;
static int l_mem_mark(lua_State *L1) {
  mem_base = mem_peak = mem_live;
  (void)L1;
  return 0;
}
static int l_mem_growth(lua_State *L1) {
  lua_pushinteger(L1, (lua_Integer)(mem_peak - mem_base));
  return 1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  L = lua_newstate(count_alloc, NULL);
  luaL_openlibs(L);
  luaL_requiref(L, "petrel.core", luaopen_petrel_core, 0);
  lua_pop(L, 1);
  const char *script = strcmp(FUZZ_MODE, "view") == 0 ? "fuzz/fuzz_view.lua"
                                                       : "fuzz/fuzz_decode.lua";
  if (luaL_loadfile(L, script) != LUA_OK) {
    fprintf(stderr, "fuzz setup: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_pushcfunction(L, l_mem_mark);
  lua_pushcfunction(L, l_mem_growth);
  lua_pushinteger(L, MEM_PER_BYTE);
  lua_pushinteger(L, (lua_Integer)MEM_SLACK);
  lua_pushstring(L, FUZZ_MODE);
  if (lua_pcall(L, 5, 1, 0) != LUA_OK) {
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
    fprintf(stderr, "fuzz_decode: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_gc(L, LUA_GCSTEP, 0);
  return 0;
}
