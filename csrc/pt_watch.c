/*
 * pt_watch.c — readiness of any fd (pt_watch.h).
 *
 * A watch is a conn of kind PT_KIND_WATCH over a duplicate of the user's
 * fd. Its interest (want_of in pt_conn.c) is PT_W_IN / PT_W_OUT, which
 * both back ends serve with readiness alone (they read and write nothing
 * for such interest); the round turns each PT_RP_READY into a READY
 * completion (on_ready in pt_loop.c), or into a call of its ready_fn
 * (pt_watch_set_fn). A watch has no input or output: it
 * is not a stream (sends refuse it, the budget does not count it,
 * stats.conns_open leaves it out).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pt_loop.h"
#include "pt_private.h"

_Static_assert(PT_WATCH_IN == PT_R_IN && PT_WATCH_OUT == PT_R_OUT &&
                   PT_WATCH_ERR == PT_R_ERR && PT_WATCH_HUP == PT_R_HUP,
               "READY's arg is the back ends' readiness");

pt_conn *pt_loop_watch(pt_loop *l, int fd, uint32_t events) {
  events &= PT_WATCH_IN | PT_WATCH_OUT;
  if (fd < 0 || !events) {
    pt__fail(l, EINVAL, "watch fd %d: PT_WATCH_IN or PT_WATCH_OUT on an open fd", fd);
    return NULL;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    pt__fail(l, errno, "watch fd %d", fd);
    return NULL;
  }
  if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) {
    pt__fail(l, EPERM, "watch fd %d (a regular file: always ready, read it directly)", fd);
    return NULL;
  }
  int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (dfd < 0) {
    pt__fail(l, errno, "watch fd %d: dup", fd);
    return NULL;
  }
  pt_conn *c = pt__conn_new(l, dfd, PT_KIND_WATCH, AF_UNSPEC);
  if (!c) {
    close(dfd);
    pt__fail(l, ENOMEM, "watch fd %d", fd);
    return NULL;
  }
  c->watch = events;
  c->in_cap = 0; /* nothing is read into it */
  if (pt__arm(c) != 0) {
    int e = errno;
    c->flags |= PT_CF_USER_CLOSED;
    pt__close(c, 0, 0);
    pt__fail(l, e, "watch fd %d", fd);
    return NULL;
  }
  return c;
}

void pt_watch_set_fn(pt_conn *w, void (*fn)(pt_conn *, uint32_t)) {
  if (w && w->kind == PT_KIND_WATCH) w->ready_fn = fn;
}
