/*
 * pt_private.h — what the loop's own files share (private to csrc/).
 *
 * The loop is built in layers; each file calls only the ones below it:
 *
 *   pt_loop.c     loops and the round (pt_loop_poll: flush, recycle, wait,
 *                 act on the back end's reports, fire timers by kind)
 *   pt_udp.c      datagram sockets: open (bind, connect), receive, send,
 *                 counters (addresses by pt_sock.c's rules)
 *   pt_sock.c     sockets: addresses, listen, connect (names through
 *                 pt_dns.c), accept, options, addresses as text
 *   pt_zc.c       zero-copy jobs: sendfile and splice (proxy is two splices)
 *   be/pt_epoll.c, be/pt_uring.c   the back ends (pt_be.h): they see a
 *                 conn's fields and the host's lends, and call nothing here
 *                 but pt_loop_conn
 *   pt_conn.c     a connection's life: ids, the completion queue, interest,
 *                 input, output (bytes and the file ranges sendfile queued),
 *                 close, the memory budget, deferred sends
 *   pt_timer.c, pt_dns.c, pt_buf.c   a timer heap, the resolver thread,
 *                 buffers: they know nothing of the loop
 *
 * Public types are in pt_types.h, each file's public functions in its own
 * header (pt_conn.h, pt_sock.h, pt_zc.h, pt_loop.h); names pt__* are the
 * shared internals declared here (hidden: -fvisibility=hidden).
 */
#ifndef PT_PRIVATE_H
#define PT_PRIVATE_H

#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

#include "pt_be.h"
#include "pt_dns.h"
#include "pt_timer.h"
#include "pt_types.h"

/* conn->flags beyond the public ones (pt_loop.h) */
#define PT_CF_WANT_DRAINED 0x0800u /* a send left bytes queued */
#define PT_CF_WR_BE 0x1000u        /* the back end holds the pending output */
#define PT_CF_RD_OVER 0x2000u      /* not reading: output over out_cap */
#define PT_CF_RD_BUDGET 0x4000u    /* not reading: the loop is over budget */
#define PT_CF_RESOLVING 0x8000u    /* connect waits for a name's address */
#define PT_CF_OUT_PAUSE 0x10000u   /* output over out_cap pauses reading */
#define PT_CF_TRIM 0x20000u        /* on the loop's trim list */

/* what a conn's buffers keep (pt_buf_set_lean): the input gives emptied
 * blocks back and grows by small classes; the output gives them back */
#define PT_LEAN_IN (PT_LEAN_EMPTY | PT_LEAN_FIT)
#define PT_LEAN_OUT PT_LEAN_EMPTY

/* conn ids: generation << 24 | slot, below 2^53 so a double holds them
 * exactly (timers have their own, pt_timer.h) */
#define PT_SLOT_BITS 24
#define PT_SLOT_MASK ((1u << PT_SLOT_BITS) - 1)
#define PT_GEN_MAX (1u << 29)
#define PT_NO_SLOT UINT32_MAX
#define PT_MKID(gen, slot) \
  (((uint64_t)(gen) << PT_SLOT_BITS) | (uint64_t)(slot))

/* timer kinds: what the round does when one fires */
enum { PT_TK_USER, PT_TK_CONNECT, PT_TK_CLOSE, PT_TK_LISTEN };

typedef struct pt_cslot {
  pt_conn *c;
  uint32_t gen;
  uint32_t next_free;
} pt_cslot;

/* A file range queued on a conn's output (pt_conn_sendfile): written by
 * the output writer (pt_conn.c) after the bytes queued before it. */
typedef struct pt_fjob {
  int fd;          /* our dup */
  int copy;        /* pread/read + send instead of sendfile */
  int noseek;      /* read(), the fd is not seekable */
  off_t off;
  size_t left;     /* file bytes not yet taken (SIZE_MAX-ish: to EOF) */
  size_t pre;      /* output bytes that go before this file */
  char *buf;       /* copy: staged chunk */
  size_t bpos, blen;
  struct pt_fjob *next;
} pt_fjob;

/* A splice job from one conn to another (pt_conn_splice, pt_zc.c). */
typedef struct pt_spj {
  pt_conn *from, *to;
  int p[2];        /* the pipe; -1 in copy mode */
  int copy;        /* read + send through buf */
  int wait_out;    /* staged bytes wait for `to` */
  int may_read;    /* `from` was reported readable since the last EAGAIN */
  size_t want;     /* 0: until EOF */
  size_t moved;    /* bytes handed to `to` */
  size_t staged;   /* bytes in the pipe / buf */
  size_t cap;      /* pipe capacity or buf size */
  char *buf;
  size_t bpos;
} pt_spj;

#define PT_ZC_CHUNK (64u << 10) /* copying fallbacks: bytes per step */
#define PT_ZC_PIPES 2           /* emptied splice pipes a loop keeps */
#define PT_WAKE_USER 1          /* pt_loop_wake */
#define PT_WAKE_DNS 2           /* the resolver has answers */

struct pt_loop {
  pt_pool *pool;
  const pt_be_ops *bo; /* the back end */
  pt_behost be;        /* what it gets of the loop */
  char be_note[256];
  int own_pool;
  pt_buf pool_pin; /* keeps the pool alive while the loop lives */
  pt_loop_opts o;
  int wakefd, spare_fd;
  int wake_bits; /* atomic: PT_WAKE_* asked since the last wake-up */
  int busy;      /* the last round produced completions */
  pid_t pid;     /* the process that made the loop */
  int forked;    /* being freed in a forked child */
  int64_t now;
  uint64_t round; /* back-end waits so far (DATA merging) */
  /* conns */
  pt_cslot *cs;
  uint32_t ncs, cscap, cfree;
  pt_conn *dirty, *dead;
  pt_conn *trim; /* inputs pt_buf_wasteful after a read this round */
  /* memory budget: in + unsent out of every conn, as last counted */
  size_t held;
  int over; /* held went over o.budget; not yet back under 3/4 of it */
  pt_timers timers;
  /* completions */
  pt_event *q;
  int qhead, qlen, qcap;
  pt_dns *dns; /* made by the first connect to a name */
  int zc_pipe[PT_ZC_PIPES][2]; /* empty, sized pipes for the next splice */
  int zc_npipes;
  pt_loop_stats st;
  struct iovec iov[1024]; /* the output writer's */
  char err[256];
};

/* "what: strerror(e)" into l->err; errno = e; -1. */
#define pt__fail(l, e, ...) pt_errf((l)->err, sizeof (l)->err, (e), __VA_ARGS__)

static inline int64_t pt__mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- pt_conn.c ---------------------------------------------------------- */


/* Queue a completion: 0, or -1 when it was dropped (ENOMEM). */
int pt__push(pt_loop *l, int type, int err, uint64_t id, uint64_t arg,
             pt_conn *c);
/* Copy up to max queued completions out (skipping user-closed conns). */
int pt__deliver(pt_loop *l, pt_event *out, int max);

/* A conn with an id, attached to the back end; NULL on ENOMEM. fd may be
 * -1 (a connect waiting for a name). */
pt_conn *pt__conn_new(pt_loop *l, int fd, int kind, int family);
/* Free the closed conns the kernel is done with (force: all). */
void pt__recycle(pt_loop *l, int force);

/* Interest follows the flags; on failure the conn closes with the error. */
void pt__rearm(pt_conn *c);
/* The same for a conn not yet handed to the user: -1 (errno), no close. */
int pt__arm(pt_conn *c);
/* Bytes arrived in c->in: DATA (one per conn and round), input cap,
 * budget. */
void pt__input(pt_conn *c, size_t n);
/* The batch boundary: input bytes still waiting in mostly empty read
 * blocks or in ring buffers move to pool blocks sized to them
 * (pt_buf_settle); closed conns are skipped. */
void pt__trim(pt_loop *l);
/* The input holds in_cap bytes: stop reading until pt_conn_consumed. */
void pt__cap_check(pt_conn *c);
/* The peer finished sending: CLOSED(0), stop reading, flush, close. */
void pt__read_eof(pt_conn *c);
/* Write the output now: PT_SEND_DONE / PT_SEND_PENDING, or -1 with the
 * conn closed (CLOSED queued) and errno. */
int pt__write(pt_conn *c);
/* The back end's held output left (PT_RP_SENT): write on. */
void pt__sent(pt_conn *c);
/* A closing conn closes once its output drained, or arms the close timer. */
void pt__closing_step(pt_conn *c);
/* Close now; idempotent. notify: CLOSED(err) unless delivered already. */
void pt__close(pt_conn *c, int err, int notify);
/* The output now waits for the next flush. */
void pt__dirty(pt_conn *c);
/* Re-count c in the budget after its buffers changed (may pause or resume
 * reading: out_cap, the loop's budget). */
void pt__account(pt_conn *c);
/* The round, while over budget: count every conn afresh, maybe resume. */
void pt__budget_check(pt_loop *l);
/* Detach a splice job from its conns, SPLICED(err), free it. */
void pt__spj_end(pt_loop *l, pt_spj *j, int err);
/* Free a job; its pipe, when empty, is kept for the next job (up to
 * PT_ZC_PIPES per loop: no pipe2 and resize per splice). */
void pt__spj_free(pt_spj *j);

/* output not yet written: queued, in a file job, or held by the back end */
static inline int pt__has_out(const pt_conn *c) {
  return pt_buf_len(c->out) || c->fjob || c->loop->bo->held(c);
}

/* A timer of kind for c firing ms after l->now; its id, 0 on ENOMEM. */
static inline uint64_t pt__timer_add(pt_loop *l, int64_t ms, int kind,
                                     pt_conn *c) {
  return pt_timers_add(&l->timers, l->now + (ms < 0 ? 0 : ms), kind, c);
}

/* ---- pt_sock.c ---------------------------------------------------------- */

/* PT_RP_ACCEPT on listener lc: fd >= 0 a connection, else -errno. */
void pt__sock_accepted(pt_loop *l, pt_conn *lc, int fd);
/* Readiness of a connecting conn; its connect timer; a listener's pause. */
void pt__sock_connect_ready(pt_conn *c, uint32_t m);
void pt__sock_connect_timeout(pt_conn *c);
void pt__sock_listen_resume(pt_conn *c);
/* The socket's pending error (SO_ERROR). */
int pt__sock_error(int fd);
/* An answer of the resolver. */
void pt__sock_resolved(pt_loop *l, const pt_dns_answer *a);
/* Addresses by pt_sock.c's rules, for pt_udp.c: host/port to *ss (0; 1
 * host is a name to resolve; -1 why says what is wrong; passive: "", "*"
 * mean any) and host/port as a person writes it ("[::1]:80"). */
int pt__sock_parse(const char *host, int port, int passive,
                   struct sockaddr_storage *ss, socklen_t *len, char *why,
                   size_t wn);
void pt__sock_where(char *buf, size_t n, const char *host, int port);

/* ---- pt_udp.c ------------------------------------------------------------ */

/* A back end's PT_RP_DGRAM / _DGCUT / _DGERR for datagram socket c. */
void pt__udp_report(pt_conn *c, int kind, int64_t res);

/* ---- pt_zc.c ------------------------------------------------------------ */

/* Reports for conns a splice job uses: bytes a back end read into a source
 * before the job took over, its EOF, readiness, and a target's SENT. */
void pt__zc_input(pt_conn *c);
void pt__zc_eof(pt_conn *c);
void pt__zc_ready(pt_conn *c, uint32_t m);
void pt__zc_sent(pt_conn *c);

/* wake the loop's thread for `bit` (any thread, async-signal-safe) */
void pt__wake(pt_loop *l, int bit);

#endif
