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
 * Datagram sockets (c->kind == PT_KIND_DGRAM, c->dg their state). Their
 * input and output hold records (pt_dgrec below), one per datagram.
 *   PT_W_RECV   receive datagrams: each one becomes a record appended to
 *               c->in with pt_be_dgput (it counts it in c->dg->st and the
 *               loop's counters) and one report: PT_RP_DGRAM (res = bytes
 *               kept) or PT_RP_DGCUT (longer than c->dg->max: cut there, res
 *               = bytes kept). At most pt_be_room() bytes per event (a
 *               multishot receive may overshoot by what it had in flight).
 *               epoll: recvmmsg; io_uring: multishot recvmsg into a buffer
 *               ring of its own whose buffers hold any UDP datagram.
 *   errors      an error the socket reports (ECONNREFUSED after an ICMP
 *               port unreachable, ...) is PT_RP_DGERR res = errno, no
 *               record; the socket stays open: never PT_RP_FAIL, EOF or HUP
 *               for what a peer did.
 *   send        ops.send sends every record of c->out with pt_be_dgsend
 *               (sendmmsg, on both back ends: io_uring has no batched send
 *               of datagrams, and one request and completion per datagram
 *               cost more than one sendmmsg per round). A datagram the
 *               kernel refuses is dropped and counted. PT_SEND_PENDING when
 *               the socket is full: PT_RP_SENT once it has room.
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
  PT_RP_WAKE,
  PT_RP_DGRAM, /* datagram sockets: see above */
  PT_RP_DGCUT,
  PT_RP_DGERR
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

/* ---- datagram records ------------------------------------------------------
 * A record: this header, alen bytes of address (a struct sockaddr: the
 * sender of a datagram received; the destination of one to send, none for
 * a connected socket), len bytes of payload, padding to a multiple of 8.
 * Each is written with one pt_buf_reserve, so it lies within one node of
 * its buffer: the record at the front is whole at pt_buf_peek, a walk over
 * pt_buf_iov's windows meets only whole records, and headers and addresses
 * are 8- and 4-aligned (blocks start aligned and records are padded). */
typedef struct pt_dgrec {
  uint32_t len;  /* payload bytes */
  uint32_t full; /* received: the datagram's length on the wire (> len:
                    cut at c->dg->max); to send: len */
  uint16_t alen; /* address bytes after the header */
  uint16_t pad;
} pt_dgrec;

#define PT_DG_MAX 65536u /* room for any UDP datagram's payload */
#define PT_DG_BATCH 64   /* datagrams per recvmmsg / sendmmsg */

static inline size_t pt_dgrec_size(size_t alen, size_t len) {
  return (sizeof(pt_dgrec) + alen + len + 7) & ~(size_t)7;
}

/* Append a datagram received from addr to c->in: kept of its full bytes
 * at data. Counts it (c->dg->st, the loop's). 0, or -1 when there was no
 * memory for it (counted as dropped). */
static inline int pt_be_dgput(pt_behost *h, pt_conn *c, const void *addr,
                              socklen_t alen, const void *data, size_t kept,
                              size_t full) {
  pt_udp_stats *st = &c->dg->st;
  size_t n = pt_dgrec_size(alen, kept);
  char *p = pt_buf_reserve(c->in, n);
  if (!p) {
    st->dropped++;
    return -1;
  }
  pt_dgrec r;
  r.len = (uint32_t)kept;
  r.full = (uint32_t)full;
  r.alen = (uint16_t)alen;
  r.pad = 0;
  memcpy(p, &r, sizeof r);
  if (alen) memcpy(p + sizeof r, addr, alen);
  if (kept) memcpy(p + sizeof r + alen, data, kept);
  memset(p + sizeof r + alen + kept, 0, n - sizeof r - alen - kept);
  pt_buf_commit(c->in, n);
  st->dgrams_in++;
  st->bytes_in += kept;
  h->st->dgrams_in++;
  h->st->bytes_in += kept;
  if (full > kept) {
    st->cut++;
    h->st->dgrams_cut++;
  }
  return 0;
}

/* Send the records of c->out with sendmmsg, PT_DG_BATCH at a time: 0 all
 * of them left, 1 the socket is full (the rest stays queued), -1 the
 * output is not records (EINVAL). A datagram the kernel refuses
 * (EMSGSIZE, ECONNREFUSED, ENETUNREACH...) is dropped and counted. */
static inline int pt_be_dgsend(pt_behost *h, pt_conn *c) {
  pt_buf *b = c->out;
  pt_udp_stats *st = &c->dg->st;
  struct iovec win[PT_DG_BATCH], iov[PT_DG_BATCH];
  struct mmsghdr mm[PT_DG_BATCH];
  size_t sz[PT_DG_BATCH];
  while (pt_buf_len(b)) {
    int nw = pt_buf_iov(b, win, PT_DG_BATCH, SIZE_MAX), n = 0;
    for (int w = 0; w < nw && n < PT_DG_BATCH; w++) {
      char *p = win[w].iov_base, *end = p + win[w].iov_len;
      while (n < PT_DG_BATCH && (size_t)(end - p) >= sizeof(pt_dgrec)) {
        pt_dgrec r;
        memcpy(&r, p, sizeof r);
        size_t size = pt_dgrec_size(r.alen, r.len);
        if (size > (size_t)(end - p)) break;
        memset(&mm[n], 0, sizeof mm[n]);
        mm[n].msg_hdr.msg_name = r.alen ? p + sizeof r : NULL;
        mm[n].msg_hdr.msg_namelen = r.alen;
        iov[n].iov_base = p + sizeof r + r.alen;
        iov[n].iov_len = r.len;
        mm[n].msg_hdr.msg_iov = &iov[n];
        mm[n].msg_hdr.msg_iovlen = 1;
        sz[n++] = size;
        p += size;
      }
      if (n < PT_DG_BATCH && p != end) break; /* cut by a window: not records */
    }
    if (n == 0) {
      errno = EINVAL;
      return -1;
    }
    int k = sendmmsg(c->fd, mm, (unsigned)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    h->st->writev_calls++;
    if (k < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 1;
      /* the first one is refused: it is dropped, the rest go on */
      st->send_errors++;
      st->last_send_errno = errno;
      h->st->dgram_send_errors++;
      pt_buf_skip(b, sz[0]);
      continue;
    }
    size_t done = 0;
    for (int i = 0; i < k; i++) {
      done += sz[i];
      st->bytes_out += iov[i].iov_len;
      h->st->bytes_out += iov[i].iov_len;
    }
    st->dgrams_out += (uint64_t)k;
    h->st->dgrams_out += (uint64_t)k;
    pt_buf_skip(b, done);
    /* k < n: the next call says why the k-th did not go */
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
