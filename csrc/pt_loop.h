/*
 * pt_loop.h — the event loop core: a readiness poller (epoll today) behind a
 * completion interface, nonblocking sockets, timers. No Lua in here.
 *
 * Model
 *   pt_loop   one per thread of use. Owns the poller, a wake-up eventfd, a
 *             binary min-heap of timers (monotonic clock, ms), the
 *             connections, and a queue of completions. Not thread-safe except
 *             pt_loop_wake, which any thread may call.
 *   pt_conn   a listener or a byte stream. A stream has an input buffer the
 *             loop reads into (readv into pt_buf_reserve_iov) and an output
 *             buffer the loop writes from (sendmsg of pt_buf_iov, capped at
 *             IOV_MAX iovecs, MSG_NOSIGNAL so no SIGPIPE). Both buffers are
 *             attached to the loop's pool.
 *
 * Completions (pt_loop_poll fills an array of pt_event; the core never calls
 * back into the user except through opts.on_release, see below)
 *   ACCEPTED   id = new conn, arg = listener id.
 *   DATA       id = conn, arg = bytes read this round (now in conn->in).
 *   DRAINED    id = conn: a send that returned PT_SEND_PENDING/OVER has
 *              written everything. Not emitted for sends that completed at
 *              once (the return value says so) nor for closing conns.
 *   CLOSED     id = conn, err = errno (0: orderly EOF from the peer). Emitted
 *              once, for conns the loop or the peer ended; never for conns
 *              the user closed with pt_conn_close. On EOF (peer half-close)
 *              the loop stops reading but keeps the socket writable until the
 *              next pt_loop_poll has flushed what the user queued in reply to
 *              the batch; then the conn closes once its output drained (or
 *              after opts.close_timeout_ms). Replies produced later are lost.
 *   CONNECTED  id = conn, err = 0 (connected) or errno (ECONNREFUSED,
 *              ETIMEDOUT, ...). A failed conn is closed by the loop; no
 *              CLOSED follows.
 *   TIMER      id = timer id.
 *   WAKE       pt_loop_wake was called (coalesced: at most one per round).
 *   SPLICED    id = the source conn of a pt_conn_splice job that ended,
 *              arg = bytes moved, err = 0 (len moved, or EOF of the source)
 *              or errno (a side failed or closed). ev.conn is NULL: the
 *              completion is delivered even if the user closed a side.
 *
 * Lifetime: a closed conn stays addressable (pt_loop_conn returns it, its
 * input stays readable, ev.conn stays valid) until the start of a later
 * pt_loop_poll whose completion queue is empty: closed conns are recycled
 * only at that batch boundary, so no event the user holds can point at freed
 * memory. Events still queued for a conn the user closed are dropped.
 *
 * Rounds: after a round that produced completions, the next pt_loop_poll
 * first waits with timeout 0 (Netpoll's habit); if that finds nothing it
 * then blocks for timeout_ms (or until the next timer). stats.wait_zero and
 * stats.wait_block count the two kinds; opts.no_spin disables the habit.
 *
 * Back ends (opts.backend, chosen per loop): epoll, readiness-driven (readv
 * into the input, sendmsg from the output), or io_uring (csrc/be/pt_uring.c),
 * completion-driven: multishot accept, multishot recv into a provided
 * buffer ring whose bytes are appended to the input, sendmsg (sendmsg_zc
 * from opts.zc_min bytes) straight from the output's blocks, poll requests
 * where a job needs readiness (sendfile, splice, connect), and the wait
 * timeout given to the ring. Both deliver the same completions with the
 * same contracts. Under io_uring pt_conn_send hands the output to the
 * kernel and returns PT_SEND_PENDING (DRAINED follows), and a closed conn
 * is recycled only once the kernel has finished every request on it.
 *
 * Errors: functions returning pointers give NULL, int functions -1, with
 * errno set and a message in pt_loop_error().
 */
#ifndef PT_LOOP_H
#define PT_LOOP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pt_buf.h"

typedef struct pt_loop pt_loop;
typedef struct pt_conn pt_conn;

/* X(NAME, value, "lua name") */
#define PT_EVENT_TYPES(X)           \
  X(ACCEPTED, 1, "accepted")        \
  X(DATA, 2, "data")                \
  X(DRAINED, 3, "drained")          \
  X(CLOSED, 4, "closed")            \
  X(CONNECTED, 5, "connected")      \
  X(TIMER, 6, "timer")              \
  X(WAKE, 7, "wake")                \
  X(SPLICED, 8, "spliced")

enum pt_event_type {
#define PT_X(n, v, s) PT_EV_##n = v,
  PT_EVENT_TYPES(PT_X)
#undef PT_X
  PT_EV_MAX_
};

typedef struct pt_event {
  int32_t type;  /* PT_EV_* */
  int32_t err;   /* errno or 0 */
  uint64_t id;   /* conn id, or timer id for TIMER, 0 for WAKE */
  uint64_t arg;  /* DATA: bytes read; ACCEPTED: listener id; else 0 */
  pt_conn *conn; /* valid until the batch boundary; NULL for TIMER, WAKE,
                  SPLICED */
} pt_event;

enum { PT_KIND_LISTENER = 1, PT_KIND_STREAM = 2 };

/* conn->flags */
#define PT_CF_CONNECTING 0x001u /* async connect in progress */
#define PT_CF_RD_PAUSED 0x002u  /* input over in_cap: not reading */
#define PT_CF_RD_EOF 0x004u     /* peer finished sending */
#define PT_CF_WR_PENDING 0x008u /* output waits for writability */
#define PT_CF_DIRTY 0x010u      /* on the deferred-send list */
#define PT_CF_CLOSING 0x020u    /* close once output drained */
#define PT_CF_CLOSED 0x040u     /* fd closed; recycled at a batch boundary */
#define PT_CF_NOTIFIED 0x080u   /* CLOSED delivered (or user closed) */
#define PT_CF_USER_CLOSED 0x100u
#define PT_CF_UNIX 0x200u       /* unix-domain socket */
#define PT_CF_LISTEN_OFF 0x400u /* listener paused after EMFILE */

/* Socket options; a zeroed struct means defaults. */
typedef struct pt_sockopts {
  int nodelay;   /* TCP_NODELAY: 0 default (on), 1 on, -1 off */
  int keepalive; /* SO_KEEPALIVE: 1 on, else off */
  int sndbuf;    /* SO_SNDBUF bytes, 0 system default */
  int rcvbuf;    /* SO_RCVBUF bytes, 0 system default */
  int reuseport; /* listen: SO_REUSEPORT */
} pt_sockopts;

struct pt_conn {
  int fd;         /* -1 once closed */
  int kind;       /* PT_KIND_* */
  uint32_t flags; /* PT_CF_* */
  uint32_t armed; /* back end: interest currently registered */
  uint64_t id;    /* never 0; unique among live conns and timers' owner */
  pt_buf *in;     /* &in_own, or caller storage (pt_conn_set_bufs) */
  pt_buf *out;
  size_t in_cap;  /* stop reading while in->len >= in_cap (0: no cap) */
  size_t out_cap; /* send reports PT_SEND_OVER beyond this (0: no cap) */
  void *ud;       /* the user's */
  int ref;        /* the user's */
  /* private below */
  pt_loop *loop;
  pt_conn *next_dirty, *next_dead;
  uint64_t timer;   /* internal timer (connect/close timeout, backoff) */
  size_t rd_hint;   /* adaptive read size */
  int registered;   /* known to the back end */
  int family;
  char *unix_path;  /* listener: socket file to unlink on close */
  pt_sockopts lopts; /* listener: options for accepted conns */
  pt_buf in_own, out_own;
  struct pt_fjob *fjob;   /* file jobs (sendfile), FIFO */
  struct pt_spj *spj_in;  /* splice job reading this conn */
  struct pt_spj *spj_out; /* splice job writing this conn */
  /* io_uring back end */
  uint32_t uflags;        /* requests in flight and their state */
  uint32_t uops;          /* requests in flight naming this conn */
  uint32_t upoll;         /* poll mask of the poll request in flight */
  pt_buf tx;              /* bytes handed to the send in flight */
  struct pt_usend *us;    /* its msghdr and iovecs */
  uint64_t dq_round;      /* round and queue slot of this round's DATA */
  int dq;
};

/* opts.backend */
enum {
  PT_BE_DEFAULT = 0, /* PETREL_BACKEND=epoll|uring|auto, else epoll */
  PT_BE_EPOLL = 1,
  PT_BE_URING = 2, /* io_uring or fail */
  PT_BE_AUTO = 3   /* io_uring where the kernel allows it, else epoll */
};

typedef struct pt_loop_opts {
  size_t in_cap;        /* default input cap per conn; 0: 8 MiB */
  size_t out_cap;       /* default output cap per conn; 0: 64 MiB */
  int close_timeout_ms; /* graceful close limit; 0: 5000 */
  int max_events;       /* readiness events per wait; 0: 256 */
  int no_spin;          /* 1: never wait with timeout 0 first */
  /* Called when a conn is recycled (batch boundary, pt_loop_free), before
   * its memory goes. Caller-provided buffers (pt_conn_set_bufs) are not
   * touched by the core after this call. */
  void (*on_release)(void *ctx, pt_conn *c);
  void *ctx;
  /* PT_ZC_* bits: force the copying fallbacks (tests, benchmarks). The
   * environment adds PETREL_NO_SENDFILE=1 / PETREL_NO_SPLICE=1. */
  int zc_off;
  /* io_uring */
  int backend;         /* PT_BE_* */
  int sqpoll;          /* 1: IORING_SETUP_SQPOLL (PETREL_SQPOLL=1 also) */
  size_t zc_min;       /* sends of this many bytes use sendmsg_zc; 0: 64 KiB,
                          SIZE_MAX: never (PETREL_ZC_MIN overrides) */
  int zc_force;        /* 1: also on loopback, where the kernel copies */
  unsigned ring_bufs;  /* provided buffers; 0: by kernel features */
  unsigned ring_buf_size;
  int ring_noinc;      /* 1: no incremental buffer consumption */
  /* pt_loop_new writes why it failed (or why "auto" fell back) here */
  char *err;
  size_t errlen;
} pt_loop_opts;

#define PT_ZC_NO_SENDFILE 1
#define PT_ZC_NO_SPLICE 2

typedef struct pt_loop_stats {
  uint64_t conns_open;     /* streams open now */
  uint64_t listeners_open;
  uint64_t accepted, connected, closed; /* closed: streams */
  uint64_t bytes_in, bytes_out;
  uint64_t readv_calls, writev_calls;
  uint64_t wait_zero, wait_block; /* poller waits with timeout 0 / blocking */
  uint64_t wakeups;        /* eventfd wake-ups processed */
  uint64_t timers_active, timers_fired;
  uint64_t events;         /* completions delivered */
  uint64_t rd_paused;      /* times reading stopped on in_cap */
  uint64_t accept_dropped; /* connections dropped on EMFILE/ENFILE */
  uint64_t recycled;       /* conns freed at batch boundaries */
  /* io_uring */
  uint64_t ring_sqes;      /* requests queued */
  uint64_t ring_cqes;      /* completions reaped */
  uint64_t ring_enters;    /* io_uring_enter calls made by the loop */
  uint64_t ring_enobufs;   /* recvs that found the buffer ring empty */
  uint64_t ring_linked;    /* receives linked into the input, not copied */
  uint64_t zc_sends;       /* sendmsg_zc requests */
  uint64_t zc_copied;      /* of which the kernel copied anyway */
} pt_loop_stats;

/* Send results */
#define PT_SEND_DONE 0    /* everything written */
#define PT_SEND_PENDING 1 /* rest queued; DRAINED follows */
#define PT_SEND_OVER 2    /* queued, and output exceeds out_cap */

/* Loops. pool NULL: the loop makes its own. The loop keeps the pool alive
 * while it or any of its buffers lives. opts may be NULL. */
pt_loop *pt_loop_new(pt_pool *pool, const pt_loop_opts *opts);
/* Closes every conn (no flush), recycles them, frees the loop. */
void pt_loop_free(pt_loop *l);
pt_pool *pt_loop_pool(const pt_loop *l);
/* "epoll" or "io_uring" */
const char *pt_loop_backend(const pt_loop *l);
/* io_uring: the ring's features; epoll after "auto": why io_uring was not
 * used; else "". */
const char *pt_loop_backend_note(const pt_loop *l);
const char *pt_loop_error(const pt_loop *l); /* last failure, for messages */

/* Flush deferred sends, recycle closed conns (if no completion is queued),
 * wait for readiness (see Rounds), run due timers; copy up to max
 * completions into out and return their count (0 on timeout), or -1 if
 * the poller failed. timeout_ms < 0 waits until something happens. */
int pt_loop_poll(pt_loop *l, pt_event *out, int max, int timeout_ms);
void pt_loop_flush(pt_loop *l); /* deferred sends now */
void pt_loop_wake(pt_loop *l);  /* any thread; coalesced */
void pt_loop_stats_get(const pt_loop *l, pt_loop_stats *out);
void pt_loop_close_all(pt_loop *l); /* every conn and listener, no flush */
int64_t pt_loop_now(pt_loop *l);    /* monotonic ms */

/* Timers: one-shot, fire ms from now (TIMER event). Equal deadlines fire in
 * creation order. Returns the id, 0 on ENOMEM. cancel: 0, or -1 when the id
 * is unknown or already fired (its event may still be queued). */
uint64_t pt_loop_timer(pt_loop *l, int64_t ms);
int pt_loop_cancel(pt_loop *l, uint64_t id);

/* Conn by id: live or closed-but-not-recycled; NULL after recycling. */
pt_conn *pt_loop_conn(pt_loop *l, uint64_t id);

/* Addresses: "a.b.c.d", "::1" / "[::1]", "localhost" (= 127.0.0.1),
 * "unix:/path" or "unix:@abstract" (port ignored). Numeric only: no DNS.
 * listen: host NULL, "" or "*" means 0.0.0.0; port 0 picks one (see
 * pt_conn_port). A stale unix socket file is replaced and removed when the
 * listener closes. */
pt_conn *pt_listen(pt_loop *l, const char *host, int port, int backlog,
                   const pt_sockopts *o);
/* Nonblocking connect; CONNECTED follows (also for immediate success or
 * failure). timeout_ms <= 0: no timeout. NULL only for local failures (bad
 * address, no fds). */
pt_conn *pt_connect(pt_loop *l, const char *host, int port, int timeout_ms,
                    const pt_sockopts *o);

/* Write conn->out now: PT_SEND_* or -1 (errno; the conn is closed and a
 * CLOSED completion is queued). While connecting, data waits and
 * PT_SEND_PENDING is returned. */
int pt_conn_send(pt_conn *c);
/* Deferred send: the conn's output leaves in the flush at the start of the
 * next pt_loop_poll (or pt_loop_flush), so all replies of a round go out in
 * one writev per conn. PT_SEND_DONE / PT_SEND_OVER, or -1 if closed. */
int pt_conn_send_later(pt_conn *c);
/* The user consumed input: resume reading if it was paused on in_cap. */
void pt_conn_consumed(pt_conn *c);
/* flush: close once output drained (bounded by close_timeout_ms); else now.
 * No CLOSED completion follows; queued ones for this conn are dropped. */
void pt_conn_close(pt_conn *c, int flush);
void pt_conn_set_caps(pt_conn *c, size_t in_cap, size_t out_cap);
/* Let the conn read into / write from caller storage (initialized buffers,
 * ideally on the loop's pool); current bytes move over. NULL keeps one.
 * The storage must stay valid until opts.on_release for this conn. */
void pt_conn_set_bufs(pt_conn *c, pt_buf *in, pt_buf *out);
/* Zero-copy transfer.
 *
 * sendfile: queue len bytes of fd from offset off (SIZE_MAX: to the end of
 * the file) behind the conn's current output: bytes already in c->out go
 * first, bytes appended later go after. The core dups fd (the caller keeps
 * and closes its own). Driven by writability like any pending output;
 * sendfile(2), or pread/read + send in 64 KiB chunks where sendfile says
 * EINVAL/ENOSYS. A DRAINED completion follows once the file and the output
 * are written (always, even if everything left at once). A file shorter
 * than the range ends the job early. Errors close the conn (CLOSED, errno).
 * 0, or -1 with errno (EPIPE closed conn, ENOTCONN not a stream, ENOMEM,
 * EBADF from dup).
 *
 * splice: move len bytes (0: until EOF) from `from` to `to` through a pipe
 * (splice(2)), or read + write copies where splice says EINVAL. Bytes
 * already in from->in go first (they move to to->out). While the job runs,
 * `from` delivers no DATA, and `to` should not be sent on. `to`'s queued
 * output is written before spliced bytes. A SPLICED completion ends the
 * job (id = from). On EOF of `from` the job ends, then `from` reports
 * CLOSED(0) and closes as on any EOF. A failed side closes with errno
 * (CLOSED) and the job ends with that errno; a side that closes for any
 * reason ends the job (EPIPE). 0, or -1 with errno (EBUSY: `from` already
 * has a source job or `to` a target job; EINVAL from == to; EPIPE closed;
 * ENOTCONN not a connected stream; EMFILE pipe2). */
int pt_conn_sendfile(pt_conn *c, int fd, off_t off, size_t len);
int pt_conn_splice(pt_conn *from, pt_conn *to, size_t len);
/* Bytes still to write: output, file jobs, and bytes a splice job holds
 * for this conn. */
size_t pt_conn_pending(const pt_conn *c);

/* Local port (TCP), or -1. */
int pt_conn_port(const pt_conn *c);
/* "127.0.0.1:80", "[::1]:80", "unix:/path" of the peer (peer != 0) or the
 * local end into buf; -1 if closed. */
int pt_conn_addr(const pt_conn *c, int peer, char *buf, size_t n);

#endif
