/*
 * pt_be.h — the event loop's back-end interface (private to csrc/).
 *
 * A loop has one back end, chosen when the loop is made: be/pt_epoll.c
 * (readiness: epoll_wait, then readv / sendmsg / accept4 on the ready
 * sockets) or be/pt_uring.c (completions: multishot accept and recv into a
 * provided buffer ring, sendmsg / sendmsg_zc, one-shot polls). Each file
 * defines one pt_be_ops table and keeps everything else to itself. The loop
 * calls a back end only through that table; a back end calls nothing of the
 * loop's. It works with what the host lends it (pt_behost: options, pool,
 * counters, the wake eventfd, the error text), reads a conn's public fields
 * and its interest (c->want), keeps its per-conn state behind c->be, and
 * tells the loop what happened as reports (pt_rep), one kernel event at a
 * time: the loop acts on a report before it asks for the next, so every
 * report meets the conn as the loop left it after the previous one.
 *
 * Interest: c->want, set by the loop; ops.arm is called when it changed.
 *   PT_W_ACCEPT  a listener: accept; PT_RP_ACCEPT per connection or failure
 *   PT_W_RECV    a stream: read into c->in, at most pt_be_room() more bytes
 *                (a multishot receive may overshoot by what it had in
 *                flight); PT_RP_INPUT / PT_RP_EOF / PT_RP_FAIL
 *   PT_W_IN      report readability (PT_RP_READY) and read nothing: the loop
 *                reads the socket itself (splice). Only once no read of the
 *                back end's for the conn is in flight, so bytes stay in order.
 *   PT_W_OUT     report writability (PT_RP_READY): connecting, file and
 *                splice jobs. Only while no send of the back end's is in
 *                flight for the conn.
 *
 * Sending: ops.send(c) writes c->out (bytes only; file and splice jobs are
 * the loop's, driven by PT_W_OUT). PT_SEND_DONE: everything left.
 * PT_SEND_PENDING: the back end holds the rest (in c->out or taken into its
 * own state: ops.held counts those) and reports PT_RP_SENT once the loop
 * may call send again; the loop does not call send before that. -1: errno,
 * nothing reported; the loop closes the conn.
 *
 * Reports (pt_rep.kind; c is the conn, NULL for PT_RP_WAKE)
 *   PT_RP_ACCEPT  c = listener, res = the new fd (nonblocking, cloexec), or
 *                 -errno when accepting failed (EMFILE, ENFILE, ENOBUFS,
 *                 ENOMEM: the loop drops a pending connection or backs off)
 *   PT_RP_INPUT   res bytes were appended to c->in
 *   PT_RP_EOF     the peer finished sending
 *   PT_RP_FAIL    res = errno: the conn failed (the loop closes it); -1:
 *                 the socket reported an error, its SO_ERROR says which
 *                 (read by the loop when it gets there, after the event's
 *                 PT_RP_READY may have taken it: a failed connect)
 *   PT_RP_READY   res = PT_R_* readiness for PT_W_IN / PT_W_OUT
 *   PT_RP_SENT    the output the back end held has left (or may go on)
 *   PT_RP_HUP     both directions are down, after the event's other reports
 *   PT_RP_WAKE    the host's wake eventfd fired (the loop reads it)
 * A back end reports nothing for conns the loop closed (PT_CF_CLOSED).
 *
 * Lifetime: ops.attach runs when a conn is made (c->be points at conn_size
 * zeroed bytes), ops.forget when it closes (its fd still open: drop the
 * interest, cancel requests), ops.busy says whether requests naming it are
 * still in the kernel (its memory must stay; the loop asks at each batch
 * boundary), ops.release just before its memory goes.
 *
 * Datagram sockets (to come): a kind PT_KIND_DGRAM with PT_W_RECV meaning
 * "receive datagrams" (recvmmsg under epoll, multishot recvmsg with the
 * buffer ring under io_uring), reported one PT_RP_INPUT per datagram with
 * the peer address kept by the back end; sends through ops.send.
 */
#ifndef PT_BE_H
#define PT_BE_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "pt_types.h"

/* interest (c->want) */
#define PT_W_ACCEPT 1u
#define PT_W_RECV 2u
#define PT_W_IN 4u
#define PT_W_OUT 8u

/* readiness (PT_RP_READY res) */
#define PT_R_IN 1u
#define PT_R_OUT 2u
#define PT_R_ERR 4u
#define PT_R_HUP 8u

enum {
  PT_RP_ACCEPT = 1,
  PT_RP_INPUT,
  PT_RP_EOF,
  PT_RP_FAIL,
  PT_RP_READY,
  PT_RP_SENT,
  PT_RP_HUP,
  PT_RP_WAKE
};

typedef struct pt_rep {
  int kind;   /* PT_RP_* */
  int64_t res;
  pt_conn *c;
} pt_rep;

/* A back end's next() returns at least this many reports per call when
 * asked for as many (one kernel event's worth fits). */
#define PT_REP_MIN 8

/* What the loop lends its back end. */
typedef struct pt_behost {
  void *state;             /* the back end's own; set by init */
  const pt_loop_opts *o;   /* the loop's options (back-end ones among them) */
  pt_pool *pool;           /* the loop's pool */
  pt_loop_stats *st;       /* counters the back end keeps up */
  pt_loop *loop;           /* for pt_loop_conn, nothing else */
  int wakefd;              /* watch it; PT_RP_WAKE when readable */
  int forked;              /* being freed in a forked child: leave the
                              kernel objects shared with the parent alone */
  char *err;               /* message of the last failure */
  size_t errlen;
  size_t rd_limit;         /* bytes a conn may read per event now: what
                              is left of the loop's budget (a trickle at
                              least); a back end may overshoot it by what
                              a multishot read had in flight */
} pt_behost;

typedef struct pt_be_ops {
  const char *name;  /* "epoll", "io_uring" */
  size_t conn_size;  /* bytes of per-conn state behind c->be */
  int spin;          /* 1: after a busy round a zero-timeout wait pays */
  /* Set up; h->state. -1 with errno and h->err (the loop then calls free). */
  int (*init)(pt_behost *h);
  /* Teardown, after drain and after every conn was released. */
  void (*free)(pt_behost *h);
  /* Every conn is closed: wait (bounded) until no request names one. */
  void (*drain)(pt_behost *h);
  const char *(*note)(pt_behost *h); /* features, for pt_loop_backend_note */
  void (*attach)(pt_behost *h, pt_conn *c);
  /* c->want changed. -1 with errno: the loop closes the conn. */
  int (*arm)(pt_behost *h, pt_conn *c);
  void (*forget)(pt_behost *h, pt_conn *c);
  int (*busy)(const pt_conn *c);
  void (*release)(pt_behost *h, pt_conn *c);
  int (*send)(pt_behost *h, pt_conn *c);
  size_t (*held)(const pt_conn *c); /* output taken by send, not yet sent */
  /* Wait up to timeout ms (< 0: no limit; 0: do not block). -1 if the
   * poller failed (h->err). */
  int (*wait)(pt_behost *h, int timeout_ms);
  /* Up to max reports of the next kernel events of this wait; 0 when
   * there are none left. */
  int (*next)(pt_behost *h, pt_rep *out, int max);
} pt_be_ops;

extern const pt_be_ops pt_be_epoll;
/* The one loop function a back end may call (pt_conn.c): a conn by id,
 * NULL once recycled. */
pt_conn *pt_loop_conn(pt_loop *l, uint64_t id);
#ifndef PT_NO_URING
extern const pt_be_ops pt_be_uring;
#endif

/* Bytes c may read now: before its input cap, within h->rd_limit. */
static inline size_t pt_be_room(const pt_behost *h, const pt_conn *c) {
  size_t have = pt_buf_len(c->in), room = SIZE_MAX;
  if (c->in_cap) room = have < c->in_cap ? c->in_cap - have : 0;
  return room < h->rd_limit ? room : h->rd_limit;
}

/* sendmsg up to limit bytes of b (SIZE_MAX: all) to the nonblocking socket
 * fd through iov[max]: 0 all of them written, 1 the socket is full, -1 an
 * error (errno); calls and bytes counted in st. For readiness-driven
 * writers: the epoll back end, and the loop's own writes beside file and
 * splice jobs. */
static inline int pt_be_sendbuf(int fd, pt_buf *b, size_t limit,
                                struct iovec *iov, int max,
                                pt_loop_stats *st) {
  while (pt_buf_len(b) && limit) {
    int n = pt_buf_iov(b, iov, max, limit);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += iov[i].iov_len;
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = iov;
    msg.msg_iovlen = (size_t)n;
    ssize_t r = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    st->writev_calls++;
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 1;
      return -1;
    }
    pt_buf_skip(b, (size_t)r);
    st->bytes_out += (uint64_t)r;
    if (limit != SIZE_MAX) limit -= (size_t)r;
    if ((size_t)r < total) return 1;
  }
  return 0;
}

/* "what: strerror(e)" into err (or "what" alone when e is 0); errno = e;
 * returns -1. */
static inline int pt_errf(char *err, size_t n, int e, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static inline int pt_errf(char *err, size_t n, int e, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(err, n, fmt, ap);
  va_end(ap);
  if (e && k >= 0 && (size_t)k < n)
    snprintf(err + k, n - (size_t)k, ": %s", strerror(e));
  errno = e;
  return -1;
}

#endif
