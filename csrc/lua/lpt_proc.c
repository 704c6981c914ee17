/*
 * lpt_proc.c — processes and signals for the server lifecycle:
 * core.fork, core.wait, core.kill, core.getpid, core._exit, core.signals,
 * and what loop:trap (lpt_loop.c) asks of them.
 *
 * Signals are process-wide: one loop at a time is woken by them. The
 * handler only sets a flag and wakes that loop (pt_loop_wake: an atomic
 * and an eventfd write, both async-signal-safe); Lua collects the flags
 * with core.signals() after the poll returns.
 *
 * The handler lives in this module: once a signal is trapped the module
 * is pinned in memory (RTLD_NODELETE), so a signal that comes while the
 * process exits, after Lua has closed its C libraries, still finds it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* dladdr */
#endif
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lpt.h"
#include "../pt_loop.h"

/* the loop trapped signals wake (see lpt_trap) */
static pt_loop *volatile sig_loop;
static volatile sig_atomic_t sig_hits[NSIG];

static void on_signal(int signo) {
  if (signo > 0 && signo < NSIG) sig_hits[signo] = 1;
  pt_loop *l = sig_loop;
  if (l) pt_loop_wake(l);
}

static const struct {
  const char *name;
  int signo;
} sig_names[] = {{"TERM", SIGTERM}, {"INT", SIGINT},   {"HUP", SIGHUP},
                 {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"CHLD", SIGCHLD},
                 {"QUIT", SIGQUIT}, {"KILL", SIGKILL}, {NULL, 0}};

static int signo_of(lua_State *L, int idx) {
  const char *n = luaL_checkstring(L, idx);
  for (int i = 0; sig_names[i].name; i++)
    if (strcmp(n, sig_names[i].name) == 0) return sig_names[i].signo;
  return luaL_argerror(L, idx, "unknown signal name");
}

static int io_fail(lua_State *L, const char *msg) {
  lua_pushnil(L);
  lua_pushstring(L, msg);
  return 2;
}

/* Keep this module mapped until the process ends (the handler installed
 * by lpt_trap stays after the loop is gone: a signal arriving after
 * lua_close has unloaded the module would jump into unmapped code). Once;
 * where the binding is linked into the executable dlopen finds nothing to
 * pin and nothing needs it. */
static void pin_module(void) {
  static int pinned;
  if (pinned) return;
  pinned = 1;
  Dl_info di;
  if (dladdr((void *)&pin_module, &di) && di.dli_fname)
    (void)dlopen(di.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE); /* never closed */
}

void lpt_trap(lua_State *L, pt_loop *l, int first) {
  pin_module();
  sig_loop = l;
  for (int i = first; i <= lua_gettop(L); i++) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    if (sigaction(signo_of(L, i), &sa, NULL) != 0)
      luaL_error(L, "sigaction: %s", strerror(errno));
  }
}

void lpt_untrap(pt_loop *l) {
  if (sig_loop == l) sig_loop = NULL;
}

/* core.signals() -> list of trapped signal names seen since the last call */
static int Lpt_signals(lua_State *L) {
  lua_newtable(L);
  int k = 0;
  for (int i = 0; sig_names[i].name; i++) {
    int s = sig_names[i].signo;
    if (sig_hits[s]) {
      sig_hits[s] = 0;
      lua_pushstring(L, sig_names[i].name);
      lua_rawseti(L, -2, ++k);
    }
  }
  return 1;
}

/* core.fork() -> pid (parent) | 0 (child) | nil, err */
static int Lpt_fork(lua_State *L) {
  fflush(NULL);
  pid_t p = fork();
  if (p < 0) return io_fail(L, strerror(errno));
  lua_pushinteger(L, (lua_Integer)p);
  return 1;
}

/* core.wait([pid [, nohang]]) -> pid, status | 0 (none yet) | nil, err */
static int Lpt_wait(lua_State *L) {
  pid_t p = (pid_t)luaL_optinteger(L, 1, -1);
  int st = 0;
  pid_t r = waitpid(p, &st, lua_toboolean(L, 2) ? WNOHANG : 0);
  if (r < 0) return io_fail(L, strerror(errno));
  lua_pushinteger(L, (lua_Integer)r);
  lua_pushinteger(L, WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
  return 2;
}

/* core.kill(pid, name) -> true | nil, err */
static int Lpt_kill(lua_State *L) {
  pid_t p = (pid_t)luaL_checkinteger(L, 1);
  if (kill(p, signo_of(L, 2)) != 0) return io_fail(L, strerror(errno));
  lua_pushboolean(L, 1);
  return 1;
}

static int Lpt_getpid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getpid());
  return 1;
}

/* core._exit(code): leave a forked child without running the parent's
 * finalizers twice */
static int Lpt_exit(lua_State *L) {
  fflush(NULL);
  _exit((int)luaL_optinteger(L, 1, 0));
  return 0;
}

static const luaL_Reg proc_funcs[] = {
    {"signals", Lpt_signals}, {"fork", Lpt_fork},     {"wait", Lpt_wait},
    {"kill", Lpt_kill},       {"getpid", Lpt_getpid}, {"_exit", Lpt_exit},
    {NULL, NULL}};

void lpt_open_proc(lua_State *L, int mod) {
  for (const luaL_Reg *r = proc_funcs; r->name; r++) {
    lua_pushcfunction(L, r->func);
    lua_setfield(L, mod, r->name);
  }
}
