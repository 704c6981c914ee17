/*
 * lpt_fd.c — plain file descriptors of the process, for what a terminal
 * program needs beside the loop: core.isatty(fd), core.read_fd(fd, max)
 * (one read(2): what a watched fd has, without stdio's buffering hiding
 * bytes from the loop's readiness), core.watch_bits (the READY
 * completion's bits, see loop:watch in lpt_loop.c).
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "lpt.h"
#include "../pt_loop.h"

#define READ_MAX (1 << 20)

/* core.isatty(fd) -> boolean */
static int Lpt_isatty(lua_State *L) {
  int fd = (int)lpt_checkint(L, 1, 0, INT32_MAX);
  lua_pushboolean(L, isatty(fd));
  return 1;
}

/* core.read_fd(fd [, max = 65536]) -> bytes ("" at end of file) | nil,
 * err ("again" when nothing is there and fd is nonblocking). Blocks when
 * fd is blocking and empty: call it when the loop said the fd is ready. */
static int Lpt_read_fd(lua_State *L) {
  int fd = (int)lpt_checkint(L, 1, 0, INT32_MAX);
  size_t max = lua_isnoneornil(L, 2) ? 65536 : (size_t)lpt_checkint(L, 2, 1, READ_MAX);
  char *p = lua_newuserdata(L, max); /* collected whatever happens */
  ssize_t n;
  do {
    n = read(fd, p, max);
  } while (n < 0 && errno == EINTR);
  int e = errno;
  if (n >= 0) lua_pushlstring(L, p, (size_t)n);
  if (n < 0) {
    lua_pushnil(L);
    lua_pushstring(L, e == EAGAIN || e == EWOULDBLOCK ? "again" : strerror(e));
    return 2;
  }
  return 1;
}

static const luaL_Reg fd_funcs[] = {
    {"isatty", Lpt_isatty}, {"read_fd", Lpt_read_fd}, {NULL, NULL}};

/* stack: module, state, buffer metatable (the lpt_open_* contract) */
void lpt_open_fd(lua_State *L) {
  int mod = lua_gettop(L) - 2;
  lpt_setfuncs(L, mod, mod, fd_funcs);
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, PT_WATCH_IN);
  lua_setfield(L, -2, "IN");
  lua_pushinteger(L, PT_WATCH_OUT);
  lua_setfield(L, -2, "OUT");
  lua_pushinteger(L, PT_WATCH_ERR);
  lua_setfield(L, -2, "ERR");
  lua_pushinteger(L, PT_WATCH_HUP);
  lua_setfield(L, -2, "HUP");
  lua_setfield(L, mod, "watch_bits");
}
