/*
 * pt_bench.c — the load generator of pt_bench.h, over pt_loop.
 *
 * Layout
 *   1. the envelope: where a Binary message's name, type and seqid are
 *   2. calls: the requests a batch of replies frees, each a copy of the
 *      request with its own seqid (in the loop conn's output: reservations
 *      of up to 64 KiB; direct: the seqid written into the call's slot of
 *      the conn's block of request copies); the ring of calls in flight
 *   3. replies: framed (by length; walked in place in the input's first
 *      block) or unframed (the incremental message scanner, fed each byte
 *      once), checked, timed. The common reply (REPLY, this method, the
 *      call at the head of the ring, success or void) is recognized by
 *      comparing its first bytes with the prefix expected; the rest goes
 *      the general way (on_reply_slow), which names what is wrong
 *   5. direct I/O (default on epoll): the loop connects and watches (a
 *      call per readiness report, made in its round), the conn does one
 *      recv per report and sends from its block
 *   6. the run: connecting, then warm-up and measuring, calls started by
 *      replies (closed loop) or by the schedule (rate)
 *
 * Invariants
 *   - bc->ring holds the calls in flight on a conn in the order they were
 *     sent (head first); a reply matching a later entry (a server that
 *     answers out of order) marks it done, and done entries at the head
 *     are dropped.
 *   - A conn's output gets whole requests only, written in one write per
 *     conn and batch of replies (closed loop) or per round (connect, the
 *     first calls, the rate's schedule: pt_conn_send_later; direct: at
 *     once).
 *   - direct: the unsent bytes (un_off, un_len) are the requests of the
 *     newest calls, in ring order; a slot's copy is rewritten only when
 *     its call is done, so never while it waits to be sent.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "pt_bench.h"
#include "pt_loop.h"
#include "pt_plan.h"

#define NEV 1024
#define HDR_MAX 256 /* envelope bytes looked at per reply, at most */

/* ---- 1. the envelope --------------------------------------------------- */

static inline uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         p[3];
}

typedef struct env {
  const uint8_t *name;
  uint32_t nlen;
  int type;
  size_t seq_off;  /* from the message's first byte */
  size_t body_off;
} env;

/* A Binary envelope (strict or not) in the n bytes at p: 0, or -1 when
 * the bytes are not one (or are cut short). */
static int parse_env(const uint8_t *p, size_t n, env *e) {
  if (n < 4) return -1;
  uint32_t v = be32(p);
  if (v & 0x80000000u) {
    if ((v & 0xffff0000u) != 0x80010000u || n < 8) return -1;
    e->type = (int)(v & 0xff);
    e->nlen = be32(p + 4);
    if (e->nlen > n - 8 || n - 8 - e->nlen < 4) return -1;
    e->name = p + 8;
    e->seq_off = 8 + (size_t)e->nlen;
  } else {
    e->nlen = v;
    if (e->nlen > n - 4 || n - 4 - e->nlen < 5) return -1;
    e->name = p + 4;
    e->type = p[4 + e->nlen];
    e->seq_off = 4 + (size_t)e->nlen + 1;
  }
  e->body_off = e->seq_off + 4;
  return 0;
}

/* ---- state --------------------------------------------------------------- */

typedef struct call {
  uint64_t t;    /* ns: when it was queued (or scheduled, with a rate) */
  int32_t seq;
  int live;
} call;

typedef struct bconn {
  pt_conn *c;     /* NULL once closed; direct: the loop's watch of the
                     socket */
  uint64_t id;
  int up;         /* connected */
  int32_t next_seq;
  call *ring;     /* depth entries, FIFO */
  int head, count;
  pt_scan *scan;  /* unframed: the scanner of the message in front */
  size_t scanned; /* bytes of it fed so far */
  /* direct I/O (see 5.): the socket, a watch for writability while
   * requests wait, a flat buffer of replies, and the requests: depth
   * copies made once, slot i for the call in ring slot i (a new call
   * writes only its seqid), sent from un_off for un_len bytes (wrapping:
   * the requests not yet written, the newest calls) */
  int direct;
  struct pt_bench *b;
  int fd;
  pt_conn *wo;
  uint64_t woid;
  uint8_t *in, *blk;
  size_t in_off, in_len, in_cap, un_off, un_len;
} bconn;

struct pt_bench {
  pt_bench_opts o;
  pt_loop *l;
  uint8_t *req;      /* the request, as sent */
  size_t req_len;
  size_t msg_off;    /* 4 when framed */
  env req_env;       /* of req + msg_off */
  uint8_t rep_pre[HDR_MAX]; /* a good reply's first bytes, up to its seqid:
                               the request's envelope with type REPLY */
  size_t rep_plen;   /* their count; 0: no fast path (on_reply) */
  bconn *cs;
  int nconns;
  int pending_connects;
  int phase;
  uint64_t t_connect_end, t0, t_meas, t_end; /* ns */
  uint64_t issued;   /* rate: calls started on the schedule */
  int rr;            /* rate: the next conn to try */
  int conns_up, connect_errors;
  uint64_t calls, errors, exceptions, app_errors, sent, replies, late;
  double cpu0, cpu1;
  uint64_t t_last;   /* ns of the last run's end, for elapsed */
  pt_hist hist;
  uint64_t hv, hn;   /* latencies not yet in hist: hn times hv (a batch's
                        replies to calls sent together share one) */
  uint64_t t_batch;  /* ns: when the last poll returned, or its round's
                        first readiness call (see pt_bench_run) */
  int meas_batch;    /* t_batch is in the measured window */
  int clock_due;     /* t_batch is not yet read for this poll */
  pt_event *ev;
  int direct;        /* the conns do their own I/O (5.) */
  char err[256];
  int has_err;
};

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void note(pt_bench *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void note(pt_bench *b, const char *fmt, ...) {
  if (b->has_err) return; /* the first one says most */
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(b->err, sizeof b->err, fmt, ap);
  va_end(ap);
  b->has_err = 1;
}

static int measuring(const pt_bench *b, uint64_t t) {
  return b->phase >= PT_BENCH_WARMUP && t >= b->t_meas && t < b->t_end;
}

/* The batch's clock, read once per poll: by the first direct conn's
 * readiness call of the round, or when the poll returns. */
static inline void batch_clock(pt_bench *b) {
  if (!b->clock_due) return;
  b->clock_due = 0;
  b->t_batch = now_ns();
  b->meas_batch = measuring(b, b->t_batch);
}

/* ---- 2. calls ---------------------------------------------------------------- */

static int direct_room(uint8_t **p, size_t *off, size_t *len, size_t *cap,
                       size_t n);
static void direct_flush(pt_bench *b, bconn *bc);
static inline void direct_calls(pt_bench *b, bconn *bc, int k, uint64_t t);
static void conn_lost(pt_bench *b, bconn *bc, const char *why);

/* k copies of the request at p (NULL: in bc->blk, direct I/O, where the
 * copies are already and only the seqids change), each with the next
 * seqid, entered in bc's ring as sent at t. */
static inline void fill_calls(pt_bench *b, bconn *bc, uint8_t *p, int k,
                              uint64_t t) {
  int d = b->o.depth;
  size_t rl = b->req_len, so = b->msg_off + b->req_env.seq_off;
  int slot = bc->head + bc->count;
  if (slot >= d) slot -= d;
  int32_t seq = bc->next_seq;
  for (int i = 0; i < k; i++) {
    uint8_t *s;
    if (p) {
      memcpy(p, b->req, rl);
      s = p + so;
      p += rl;
    } else {
      s = bc->blk + (size_t)slot * rl + so;
    }
    s[0] = (uint8_t)((uint32_t)seq >> 24);
    s[1] = (uint8_t)((uint32_t)seq >> 16);
    s[2] = (uint8_t)((uint32_t)seq >> 8);
    s[3] = (uint8_t)seq;
    call *c = &bc->ring[slot];
    c->t = t;
    c->seq = seq;
    c->live = 1;
    if (++slot == d) slot = 0;
    seq = seq == INT32_MAX ? 1 : seq + 1;
  }
  bc->next_seq = seq;
  bc->count += k;
  b->sent += (uint64_t)k;
}

/* Queue up to k calls on bc, timed from t: k copies of the request, each
 * with its own seqid, in one reservation of the conn's output. later: mark
 * the conn for the flush at the start of the next poll (the caller that
 * writes at once passes 0). Returns how many were queued (fewer when the
 * ring is full or the conn is gone). */
static int send_calls(pt_bench *b, bconn *bc, int k, uint64_t t, int later) {
  if (!bc->c || !bc->up) return 0;
  int d = b->o.depth;
  if (k > d - bc->count) k = d - bc->count;
  if (k <= 0) return 0;
  size_t rl = b->req_len;
  if (bc->direct) {
    direct_calls(b, bc, k, t);
    return k;
  }
  /* the loop's output: the calls' slots of the block linked (no copy; one
   * piece, or two when they wrap) */
  pt_buf *out = bc->c->out;
  size_t before = pt_buf_len(out);
  int slot = bc->head + bc->count;
  if (slot >= d) slot -= d;
  int first = d - slot < k ? d - slot : k, done = k;
  fill_calls(b, bc, NULL, k, t);
  if (pt_buf_link(out, bc->blk + (size_t)slot * rl, (size_t)first * rl, NULL, NULL, 0) != 0 ||
      (k > first && pt_buf_link(out, bc->blk, (size_t)(k - first) * rl, NULL, NULL, 0) != 0)) {
    conn_lost(b, bc, "out of memory");
    return 0;
  }
  /* the first requests of the round mark the conn for the flush at the
   * start of the next poll, which writes everything queued by then */
  if (later && !before && done) pt_conn_send_later(bc->c);
  return done;
}

static int send_call(pt_bench *b, bconn *bc, uint64_t t) {
  return send_calls(b, bc, 1, t, 1) == 1 ? 0 : -1;
}

/* The call with seqid seq: its start time (0 and -1 when none is in
 * flight); done entries at the head leave. */
static inline int take_call(pt_bench *b, bconn *bc, int32_t seq, uint64_t *t) {
  int d = b->o.depth;
  if (bc->count) { /* in order: the head, at once */
    call *k = &bc->ring[bc->head];
    if (k->live && k->seq == seq) {
      *t = k->t;
      k->live = 0;
      do {
        if (++bc->head == d) bc->head = 0;
        bc->count--;
      } while (bc->count && !bc->ring[bc->head].live);
      return 0;
    }
  }
  for (int i = 0; i < bc->count; i++) {
    call *k = &bc->ring[(bc->head + i) % d];
    if (k->live && k->seq == seq) {
      *t = k->t;
      k->live = 0;
      while (bc->count && !bc->ring[bc->head].live) {
        bc->head = (bc->head + 1) % d;
        bc->count--;
      }
      return 0;
    }
  }
  return -1;
}

/* ---- 3. replies ---------------------------------------------------------- */

static void conn_lost(pt_bench *b, bconn *bc, const char *why) {
  if (!bc->c) return;
  note(b, "connection %d: %s", (int)(bc - b->cs), why);
  if (measuring(b, now_ns())) b->errors++;
  pt_conn_close(bc->c, 0);
  bc->c = NULL;
  if (bc->wo) pt_conn_close(bc->wo, 0);
  bc->wo = NULL;
  bc->count = 0;
  if (bc->up) b->conns_up--;
  bc->up = 0;
}

/* Is the n >= 8 bytes at a the same as at x? Word compares (the expected
 * reply prefix is a few dozen bytes: no call to memcmp). */
static inline int same8(const uint8_t *a, const uint8_t *x, size_t n) {
  uint64_t u, v;
  size_t i = 0;
  for (; i + 8 < n; i += 8) {
    memcpy(&u, a + i, 8);
    memcpy(&v, x + i, 8);
    if (u != v) return 0;
  }
  memcpy(&u, a + n - 8, 8);
  memcpy(&v, x + n - 8, 8);
  return u == v;
}

static void on_reply_slow(pt_bench *b, bconn *bc, const uint8_t *hdr,
                          size_t look, size_t n, uint64_t t, int meas);

/* One whole reply message of n bytes whose first look = min(n, HDR_MAX)
 * (or more) bytes are at hdr: check it, time it (t: when it came; meas:
 * t is in the measured window). The common reply (a REPLY of this method
 * in the request's envelope form, for the call at the head of the ring,
 * holding the success field or nothing) is recognized by comparing its
 * first bytes with the prefix expected (b->rep_pre); anything else takes
 * the general path (on_reply_slow), which sorts the errors out. */
static inline __attribute__((always_inline)) void
on_reply(pt_bench *b, bconn *bc, const uint8_t *hdr, size_t look, size_t n,
         uint64_t t, int meas) {
  size_t pl = b->rep_plen;
  if (pl && hdr && look >= pl + 5 && same8(hdr, b->rep_pre, pl)) {
    const uint8_t *q = hdr + pl;
    uint64_t t_sent;
    /* the success field (id 0) or an empty result (STOP), then the call */
    if ((q[4] == 0 || (look >= pl + 7 && q[5] == 0 && q[6] == 0)) &&
        take_call(b, bc, (int32_t)be32(q), &t_sent) == 0) {
      b->replies++;
      if (meas) {
        b->calls++;
        uint64_t v = t > t_sent ? t - t_sent : 0;
        if (v == b->hv) {
          b->hn++;
        } else {
          if (b->hn) pt_hist_add_n(&b->hist, b->hv, b->hn);
          b->hv = v;
          b->hn = 1;
        }
      }
      return;
    }
  }
  on_reply_slow(b, bc, hdr, look, n, t, meas);
}

static void on_reply_slow(pt_bench *b, bconn *bc, const uint8_t *hdr,
                          size_t look, size_t n, uint64_t t, int meas) {
  const char *bad = NULL;
  env e;
  b->replies++;
  if (!hdr || parse_env(hdr, look, &e) != 0) {
    conn_lost(b, bc, "a reply that is not a Thrift Binary message");
    return;
  }
  int32_t seq = (int32_t)be32(hdr + e.seq_off);
  uint64_t t_sent;
  if (take_call(b, bc, seq, &t_sent) != 0) {
    conn_lost(b, bc, "a reply with an unknown sequence id");
    return;
  }
  if (e.nlen != b->req_env.nlen || memcmp(e.name, b->req_env.name, e.nlen))
    bad = "a reply for another method";
  else if (e.type == 3) {
    if (meas) b->app_errors++;
    note(b, "the server answered with a TApplicationException");
    return;
  } else if (e.type != 2)
    bad = "a reply whose message type is not REPLY";
  else if (n > e.body_off) {
    int ftype = hdr[e.body_off];
    if (ftype != 0) {
      if (n < e.body_off + 3) {
        bad = "a reply cut short";
      } else if (hdr[e.body_off + 1] != 0 || hdr[e.body_off + 2] != 0) {
        if (meas) b->exceptions++;
        note(b, "the server answered with a declared exception (field %d)",
             (int)(int16_t)((hdr[e.body_off + 1] << 8) | hdr[e.body_off + 2]));
        return;
      }
    }
  } else {
    bad = "a reply cut short";
  }
  if (bad) {
    if (meas) b->errors++;
    note(b, "%s", bad);
    return;
  }
  if (meas) {
    b->calls++;
    pt_hist_add(&b->hist, t > t_sent ? t - t_sent : 0);
  }
}

/* The replies in bc's input; a new call for each when no rate is set. */
static void on_data(pt_bench *b, bconn *bc) {
  pt_buf *in = bc->c->in;
  uint64_t t = b->t_batch;
  int meas = b->meas_batch;
  size_t maxf = b->o.max_frame;
  int done = 0;
  while (bc->c) {
    size_t len = pt_buf_len(in);
    if (b->o.framed) {
      /* the frames whole in the first block, walked in place and skipped
       * together (the common case) */
      struct iovec v;
      if (len >= 4 && pt_buf_iov(in, &v, 1, SIZE_MAX) == 1) {
        const uint8_t *p = v.iov_base;
        size_t pos = 0, end = v.iov_len;
        int k = 0;
        while (end - pos >= 4) {
          uint32_t f = be32(p + pos);
          if (f > maxf || end - pos - 4 < f) break;
          on_reply(b, bc, p + pos + 4, f, f, t, meas);
          if (!bc->c) return;
          pos += 4 + (size_t)f;
          k++;
        }
        if (k) {
          pt_buf_skip(in, pos);
          done += k;
          continue;
        }
      }
      /* the first frame is not whole in the first block */
      uint64_t fl;
      if (len < 4 || pt_buf_peek_be(in, 0, 4, &fl) != 0) break;
      if (fl > maxf) {
        conn_lost(b, bc, "a reply frame longer than max_frame");
        break;
      }
      if (len < 4 + fl) break;
      /* a frame across blocks: its envelope copied out (peek) */
      size_t look = fl < HDR_MAX ? (size_t)fl : HDR_MAX;
      const uint8_t *hdr = (const uint8_t *)pt_buf_peek(in, 4 + look);
      on_reply(b, bc, hdr ? hdr + 4 : NULL, look, (size_t)fl, t, meas);
      if (!bc->c) break;
      pt_buf_skip(in, 4 + (size_t)fl);
    } else {
      /* feed the bytes not yet looked at to the scanner */
      struct iovec stack_iov[64], *iov = stack_iov;
      int niov = pt_buf_iov(in, iov, 64, SIZE_MAX);
      if (niov == 64 && pt_buf_nodes(in) > 64) { /* a long message */
        size_t nn = pt_buf_nodes(in);
        iov = malloc(nn * sizeof *iov);
        if (!iov) {
          conn_lost(b, bc, "out of memory");
          break;
        }
        niov = pt_buf_iov(in, iov, (int)nn, SIZE_MAX);
      }
      size_t skip = bc->scanned, end = 0;
      int r = PT_SCAN_MORE;
      for (int i = 0; i < niov && r == PT_SCAN_MORE; i++) {
        const unsigned char *p = iov[i].iov_base;
        size_t n = iov[i].iov_len;
        if (skip >= n) {
          skip -= n;
          continue;
        }
        p += skip;
        n -= skip;
        skip = 0;
        size_t used = 0;
        r = pt_scan_feed(bc->scan, p, n, &used);
        bc->scanned += r == PT_SCAN_MORE ? n : used;
      }
      if (iov != stack_iov) free(iov);
      if (r == PT_SCAN_BAD) {
        conn_lost(b, bc, bc->scan->err ? bc->scan->err : "a malformed reply");
        break;
      }
      if (r != PT_SCAN_DONE) break; /* more bytes to come */
      end = (size_t)bc->scan->fed;
      size_t look = end < HDR_MAX ? end : HDR_MAX;
      on_reply(b, bc, (const uint8_t *)pt_buf_peek(in, look), look, end, t, meas);
      if (!bc->c) break;
      pt_buf_skip(in, end);
      pt_scan_reset(bc->scan);
      bc->scanned = 0;
    }
    done++;
  }
  if (!bc->c) return;
  pt_conn_consumed(bc->c);
  if (b->o.rate <= 0 && b->phase < PT_BENCH_DONE && done) {
    send_calls(b, bc, done, t, 0);
    /* write now, as the replies came (as bench/loadgen.c does): the server
     * gets the next calls while the other conns' replies are looked at,
     * and the flush at the next poll finds nothing left */
    if (bc->c) pt_conn_send(bc->c);
  }
}

/* ---- 5. direct I/O ------------------------------------------------------- */

/* With direct I/O (the default on epoll) the loop still connects every
 * conn, watches the sockets and runs the clock, but a conn does its own
 * recv and send, as bench/loadgen.c does: one recv into a flat buffer per
 * readiness report (a call from the loop's round: pt_watch_set_fn), the
 * replies walked in place, and the next requests
 * sent at once from the conn's block of depth request copies made at
 * connect (a new call writes its seqid into its slot's copy: a slot is
 * reused only after its reply came, so its bytes went out before). The loop's conns (linked buffers,
 * accounting, budgets) are made for servers of many conns; a generator of
 * a few busy ones pays for them on every call. io_uring keeps the loop's
 * conns (multishot recv, sends through the ring: fewer system calls). */

/* Room for n more bytes after p[len] (p[off..len) kept, moved to the
 * front when that makes room). 0, or -1 (no memory). */
static int direct_room(uint8_t **p, size_t *off, size_t *len, size_t *cap,
                       size_t n) {
  if (*off && *off == *len) *off = *len = 0;
  if (*cap - *len >= n) return 0;
  if (*off) {
    memmove(*p, *p + *off, *len - *off);
    *len -= *off;
    *off = 0;
    if (*cap - *len >= n) return 0;
  }
  size_t nc = *cap ? *cap : 65536;
  while (nc - *len < n) nc *= 2;
  uint8_t *q = realloc(*p, nc);
  if (!q) return -1;
  *p = q;
  *cap = nc;
  return 0;
}

static void direct_out_ready(pt_conn *w, uint32_t ready);

/* Write bc's unsent requests; what the socket does not take waits for a
 * writability watch. */
static void direct_flush(pt_bench *b, bconn *bc) {
  size_t total = (size_t)b->o.depth * b->req_len;
  while (bc->un_len) {
    size_t first = total - bc->un_off;
    ssize_t w;
    if (first >= bc->un_len) {
      w = send(bc->fd, bc->blk + bc->un_off, bc->un_len, MSG_NOSIGNAL);
    } else { /* wrapped: the end of the block, then its start */
      struct iovec iov[2] = {{bc->blk + bc->un_off, first},
                             {bc->blk, bc->un_len - first}};
      struct msghdr mh;
      memset(&mh, 0, sizeof mh);
      mh.msg_iov = iov;
      mh.msg_iovlen = 2;
      w = sendmsg(bc->fd, &mh, MSG_NOSIGNAL);
    }
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (!bc->wo) {
          bc->wo = pt_loop_watch(b->l, bc->fd, PT_WATCH_OUT);
          if (!bc->wo) {
            conn_lost(b, bc, pt_loop_error(b->l));
            return;
          }
          bc->wo->ud = bc;
          pt_watch_set_fn(bc->wo, direct_out_ready);
          bc->woid = bc->wo->id;
        }
        return;
      }
      conn_lost(b, bc, strerror(errno));
      return;
    }
    bc->un_off += (size_t)w;
    if (bc->un_off >= total) bc->un_off -= total;
    bc->un_len -= (size_t)w;
  }
  if (bc->wo) {
    pt_conn_close(bc->wo, 0);
    bc->wo = NULL;
  }
}

/* The closed loop's next k calls on a direct conn, stamped t: each call's
 * slot gets its seqid, the ring its entry, and the new requests go out in
 * one send when nothing waits and they do not wrap (else direct_flush).
 * send_calls' path for direct conns; it runs once per reply batch of
 * every conn. */
static inline __attribute__((always_inline)) void
direct_calls(pt_bench *b, bconn *bc, int k, uint64_t t) {
  int d = b->o.depth;
  if (k > d - bc->count) k = d - bc->count;
  size_t rl = b->req_len, total = (size_t)d * rl;
  /* the unsent requests end where the new calls' slots begin */
  if (!bc->un_len) {
    int slot = bc->head + bc->count;
    bc->un_off = (size_t)(slot >= d ? slot - d : slot) * rl;
  }
  fill_calls(b, bc, NULL, k, t);
  bc->un_len += rl * (size_t)k;
  if (!bc->wo && bc->un_off + bc->un_len <= total) {
    ssize_t w = send(bc->fd, bc->blk + bc->un_off, bc->un_len, MSG_NOSIGNAL);
    if (w > 0) {
      bc->un_off += (size_t)w;
      if (bc->un_off >= total) bc->un_off -= total;
      bc->un_len -= (size_t)w;
    }
    if (!bc->un_len) return;
  }
  direct_flush(b, bc); /* the rest, a wrap, or the error (sent again) */
}

/* bc is readable: one recv, then every whole reply in the buffer (checked
 * and timed by on_reply, all with the time the recv returned), then a new
 * call for each when no rate is set. */
static void direct_read(pt_bench *b, bconn *bc) {
  if (bc->in_off == bc->in_len) bc->in_off = bc->in_len = 0;
  if (bc->in_cap - bc->in_len < 65536 &&
      direct_room(&bc->in, &bc->in_off, &bc->in_len, &bc->in_cap, 65536) != 0) {
    conn_lost(b, bc, "out of memory");
    return;
  }
  ssize_t r = recv(bc->fd, bc->in + bc->in_len, bc->in_cap - bc->in_len, 0);
  if (r < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
    conn_lost(b, bc, strerror(errno));
    return;
  }
  if (r == 0) {
    conn_lost(b, bc, "connection closed by the peer");
    return;
  }
  bc->in_len += (size_t)r;
  uint64_t t = b->t_batch;
  int meas = b->meas_batch;
  size_t maxf = b->o.max_frame;
  int done = 0;
  for (;;) {
    const uint8_t *p = bc->in + bc->in_off;
    size_t avail = bc->in_len - bc->in_off;
    size_t n;
    if (b->o.framed) {
      if (avail < 4) break;
      uint32_t f = be32(p);
      if (f > maxf) {
        conn_lost(b, bc, "a reply frame longer than max_frame");
        return;
      }
      if (avail - 4 < f) { /* room for the rest of the frame */
        if (direct_room(&bc->in, &bc->in_off, &bc->in_len, &bc->in_cap,
                        4 + (size_t)f - avail) != 0) {
          conn_lost(b, bc, "out of memory");
          return;
        }
        break;
      }
      on_reply(b, bc, p + 4, f, f, t, meas);
      n = 4 + (size_t)f;
    } else {
      if (avail == bc->scanned) break;
      size_t used = 0;
      int s = pt_scan_feed(bc->scan, p + bc->scanned, avail - bc->scanned, &used);
      if (s == PT_SCAN_BAD) {
        conn_lost(b, bc, bc->scan->err ? bc->scan->err : "a malformed reply");
        return;
      }
      if (s != PT_SCAN_DONE) {
        bc->scanned = avail;
        break;
      }
      n = (size_t)bc->scan->fed;
      pt_scan_reset(bc->scan);
      bc->scanned = 0;
      on_reply(b, bc, p, n, n, t, meas);
    }
    if (!bc->c) return;
    bc->in_off += n;
    done++;
  }
  if (bc->in_off == bc->in_len) bc->in_off = bc->in_len = 0;
  /* a call's slot is written again only once its request went out */
  if (bc->un_len > (size_t)bc->count * b->req_len) {
    conn_lost(b, bc, "a reply before its request was sent");
    return;
  }
  if (b->o.rate <= 0 && b->phase < PT_BENCH_DONE && done)
    direct_calls(b, bc, done, t);
}

/* The watches' readiness, called by the loop inside its round
 * (pt_watch_set_fn): no READY completion is queued and copied out per
 * report. The batch's clock is read at the round's first call. */
static void direct_in_ready(pt_conn *w, uint32_t ready) {
  (void)ready; /* HUP or ERR: the recv says which */
  bconn *bc = w->ud;
  if (!bc || bc->c != w) return;
  batch_clock(bc->b);
  direct_read(bc->b, bc);
}

static void direct_out_ready(pt_conn *w, uint32_t ready) {
  (void)ready;
  bconn *bc = w->ud;
  if (!bc || bc->wo != w || !bc->c) return;
  batch_clock(bc->b);
  direct_flush(bc->b, bc);
}

/* bc just connected: from now on the loop watches its socket (a duplicate
 * of the fd) and the loop's conn goes. 0, or -1 (bc lost). */
static int direct_start(pt_bench *b, bconn *bc) {
  pt_conn *c = bc->c;
  pt_conn *w = pt_loop_watch(b->l, c->fd, PT_WATCH_IN);
  if (!w) {
    conn_lost(b, bc, pt_loop_error(b->l));
    return -1;
  }
  c->ud = NULL;
  pt_conn_close(c, 0);
  w->ud = bc;
  pt_watch_set_fn(w, direct_in_ready);
  bc->c = w;
  bc->id = w->id;
  bc->fd = w->fd;
  bc->direct = 1;
  return 0;
}

/* ---- 6. the run -------------------------------------------------------------- */

static void start_calls(pt_bench *b, uint64_t t) {
  b->phase = b->o.warmup_ms > 0 ? PT_BENCH_WARMUP : PT_BENCH_MEASURING;
  b->t0 = t;
  b->t_meas = t + (uint64_t)b->o.warmup_ms * 1000000ull;
  b->t_end = b->t_meas + (uint64_t)b->o.duration_ms * 1000000ull;
  if (b->phase == PT_BENCH_MEASURING) b->cpu0 = cpu_s();
  if (b->o.rate > 0) return; /* the schedule starts them */
  for (int i = 0; i < b->nconns; i++) send_calls(b, &b->cs[i], b->o.depth, t, 1);
}

/* The next conn (round robin) with a free slot, or NULL. */
static bconn *free_slot(pt_bench *b) {
  for (int tried = 0; tried < b->nconns; tried++) {
    bconn *bc = &b->cs[b->rr];
    b->rr = (b->rr + 1) % b->nconns;
    if (bc->c && bc->up && bc->count < b->o.depth) return bc;
  }
  return NULL;
}

/* rate: start the calls the schedule says are due, each timed from when
 * it was due (a call that finds every slot busy waits, and its wait
 * counts in its latency). */
static void schedule(pt_bench *b, uint64_t t) {
  double per = 1e9 / b->o.rate;
  uint64_t due = (uint64_t)((double)(t - b->t0) / per) + 1;
  while (b->issued < due) {
    bconn *bc = free_slot(b);
    if (!bc) return;
    uint64_t at = b->t0 + (uint64_t)((double)b->issued * per);
    if (t > at + 1000000) b->late++;
    if (send_call(b, bc, at) != 0) return;
    b->issued++;
  }
}

/* ms until the schedule's next call (rate), bounded by cap */
static int next_due_ms(const pt_bench *b, uint64_t t, int cap) {
  if (b->o.rate <= 0) return cap;
  double per = 1e9 / b->o.rate;
  uint64_t at = b->t0 + (uint64_t)((double)b->issued * per);
  if (at <= t) return 0;
  uint64_t ms = (at - t + 999999) / 1000000;
  return ms < (uint64_t)cap ? (int)ms : cap;
}

static bconn *conn_of(const pt_event *e) {
  if (!e->conn || !e->conn->ud) return NULL;
  bconn *bc = e->conn->ud;
  return bc->id == e->id || (bc->wo && bc->woid == e->id) ? bc : NULL;
}

static void on_event(pt_bench *b, const pt_event *e) {
  bconn *bc = conn_of(e);
  if (!bc) return;
  switch (e->type) {
    case PT_EV_CONNECTED:
      b->pending_connects--;
      if (e->err) {
        b->connect_errors++;
        const char *why = pt_conn_error(e->conn);
        note(b, "%s", why ? why : strerror(e->err));
        bc->c = NULL; /* the loop closed it */
      } else {
        if (b->direct && direct_start(b, bc) != 0) break;
        bc->up = 1;
        b->conns_up++;
        if (b->phase >= PT_BENCH_WARMUP && b->phase < PT_BENCH_DONE &&
            b->o.rate <= 0)
          send_calls(b, bc, b->o.depth, now_ns(), 1);
      }
      break;
    case PT_EV_DATA:
      if (bc->c) on_data(b, bc);
      break;
    case PT_EV_CLOSED:
      if (bc->wo && e->id == bc->woid) bc->wo = NULL; /* its socket failed */
      if (bc->c) {
        bc->c->ud = NULL;
        conn_lost(b, bc,
                  e->err ? strerror(e->err) : "connection closed by the peer");
      }
      break;
    default:
      break;
  }
}

int pt_bench_run(pt_bench *b, int ms) {
  uint64_t t = now_ns(), slice_end = t + (uint64_t)(ms > 0 ? ms : 0) * 1000000ull;
  for (;;) {
    t = now_ns();
    if (b->phase == PT_BENCH_CONNECTING &&
        (b->pending_connects == 0 || t >= b->t_connect_end)) {
      if (b->conns_up == 0) {
        b->phase = PT_BENCH_DONE;
        if (!b->has_err) note(b, "connect: timeout");
        return -1;
      }
      b->connect_errors += b->pending_connects; /* timed out */
      start_calls(b, t);
    }
    if (b->phase == PT_BENCH_WARMUP && t >= b->t_meas) {
      b->phase = PT_BENCH_MEASURING;
      b->cpu0 = cpu_s();
    }
    if (b->phase >= PT_BENCH_WARMUP && b->phase < PT_BENCH_DONE && t >= b->t_end) {
      b->phase = PT_BENCH_DONE;
      b->cpu1 = cpu_s();
      b->t_last = b->t_end;
      return 0;
    }
    if (b->phase == PT_BENCH_DONE) return 0;
    if (b->phase >= PT_BENCH_WARMUP && b->conns_up == 0) {
      b->phase = PT_BENCH_DONE;
      b->cpu1 = cpu_s();
      b->t_last = t;
      return -1; /* every connection lost: b->err says why */
    }
    if (t >= slice_end) break;
    if (b->o.rate > 0 && b->phase >= PT_BENCH_WARMUP) schedule(b, t);
    /* wait at most until the slice, the phase or the schedule changes */
    uint64_t until = slice_end;
    if (b->phase == PT_BENCH_CONNECTING && b->t_connect_end < until)
      until = b->t_connect_end;
    if (b->phase == PT_BENCH_WARMUP && b->t_meas < until) until = b->t_meas;
    if (b->phase == PT_BENCH_MEASURING && b->t_end < until) until = b->t_end;
    int wait = until > t ? (int)((until - t + 999999) / 1000000) : 0;
    if (b->phase >= PT_BENCH_WARMUP) wait = next_due_ms(b, t, wait);
    /* one clock read per batch: the replies of the batch are timed from
     * it, and the calls they start are stamped with it, so a call's
     * latency runs from the batch that started it to the one that saw its
     * reply (off by at most one batch's processing time, a few
     * microseconds, either way). The batch is the poll's round for direct
     * conns (their readiness calls come inside it, the first reads the
     * clock), and the completions it returns for the loop's conns. */
    b->clock_due = 1;
    int n = pt_loop_poll(b->l, b->ev, NEV, wait);
    if (n < 0) {
      note(b, "loop: %s", pt_loop_error(b->l));
      return -1;
    }
    if (n > 0) batch_clock(b);
    for (int i = 0; i < n; i++) on_event(b, &b->ev[i]);
    if (b->hn) { /* the batch's run of equal latencies */
      pt_hist_add_n(&b->hist, b->hv, b->hn);
      b->hn = 0;
    }
  }
  b->t_last = t;
  if (b->phase == PT_BENCH_MEASURING) b->cpu1 = cpu_s();
  return 1;
}

pt_bench *pt_bench_new(const pt_bench_opts *o, char *err, size_t errlen) {
#define FAIL(...)                            \
  do {                                       \
    if (err && errlen) snprintf(err, errlen, __VA_ARGS__); \
    pt_bench_free(b);                        \
    return NULL;                             \
  } while (0)
  pt_bench *b = calloc(1, sizeof *b);
  if (!b) FAIL("out of memory");
  b->o = *o;
  if (!b->o.host) b->o.host = "127.0.0.1";
  if (b->o.conns < 1 || b->o.conns > 100000) FAIL("conns must be in 1..100000");
  if (b->o.depth < 1 || b->o.depth > 65536) FAIL("depth must be in 1..65536");
  if (b->o.duration_ms <= 0 || b->o.warmup_ms < 0) FAIL("bad duration or warm-up");
  if (!(b->o.rate >= 0)) FAIL("rate must be >= 0");
  if (!b->o.connect_timeout_ms) b->o.connect_timeout_ms = 3000;
  if (!b->o.max_frame) b->o.max_frame = 16u << 20;
  if (!o->req || o->req_len < 4) FAIL("no request message");
  b->req_len = o->req_len;
  b->req = malloc(b->req_len);
  if (!b->req) FAIL("out of memory");
  memcpy(b->req, o->req, b->req_len);
  if (o->framed) {
    if (be32(b->req) != b->req_len - 4)
      FAIL("the request is not one frame (its length says %u, %zu bytes follow)",
           be32(b->req), b->req_len - 4);
    b->msg_off = 4;
  }
  if (parse_env(b->req + b->msg_off, b->req_len - b->msg_off, &b->req_env) != 0)
    FAIL("the request is not a Thrift Binary message");
  if (b->req_env.type == 4) FAIL("a oneway call has no replies to time");
  if (b->req_env.type != 1) FAIL("the request is not a CALL (type %d)", b->req_env.type);
  /* the name points into our copy */
  {
    const uint8_t *m = b->req + b->msg_off;
    size_t pl = b->req_env.seq_off;
    if (pl >= 8 && pl + 7 <= HDR_MAX) {
      memcpy(b->rep_pre, m, pl);
      if (m[0] & 0x80) b->rep_pre[3] = 2; /* strict: the version word's type */
      else b->rep_pre[pl - 1] = 2;       /* old form: the byte after the name */
      b->rep_plen = pl;
    }
  }
  pt_hist_init(&b->hist);
  b->ev = malloc(NEV * sizeof *b->ev);
  b->cs = calloc((size_t)b->o.conns, sizeof *b->cs);
  if (!b->ev || !b->cs) FAIL("out of memory");
  pt_loop_opts lo;
  memset(&lo, 0, sizeof lo);
  lo.backend = b->o.backend;
  char lerr[256] = "";
  lo.err = lerr;
  lo.errlen = sizeof lerr;
  b->l = pt_loop_new(NULL, &lo);
  if (!b->l) FAIL("%s", lerr[0] ? lerr : strerror(errno));
  b->direct = b->o.io == PT_BENCH_IO_DIRECT ||
              (b->o.io != PT_BENCH_IO_LOOP && !strcmp(pt_loop_backend(b->l), "epoll"));
  b->nconns = b->o.conns;
  b->t_connect_end = now_ns() + (uint64_t)b->o.connect_timeout_ms * 1000000ull;
  for (int i = 0; i < b->nconns; i++) {
    bconn *bc = &b->cs[i];
    bc->next_seq = 1;
    bc->b = b;
    bc->ring = calloc((size_t)b->o.depth, sizeof *bc->ring);
    bc->blk = malloc((size_t)b->o.depth * b->req_len);
    if (!bc->ring || !bc->blk) FAIL("out of memory");
    for (int k = 0; k < b->o.depth; k++)
      memcpy(bc->blk + (size_t)k * b->req_len, b->req, b->req_len);
    if (!b->o.framed) {
      bc->scan = malloc(sizeof *bc->scan);
      if (!bc->scan) FAIL("out of memory");
      pt_scan_init(bc->scan, b->o.max_frame, PT_SCAN_MAXDEPTH);
    }
    pt_conn *c = pt_connect(b->l, b->o.host, b->o.port, b->o.connect_timeout_ms, NULL);
    if (!c) FAIL("%s", pt_loop_error(b->l));
    c->ud = bc;
    pt_conn_set_caps(c, b->o.max_frame + 4 + 65536, 0);
    bc->c = c;
    bc->id = c->id;
    b->pending_connects++;
  }
  return b;
#undef FAIL
}

void pt_bench_stats_get(const pt_bench *b, pt_bench_stats *s) {
  memset(s, 0, sizeof *s);
  s->phase = b->phase;
  s->conns_up = b->conns_up;
  s->connect_errors = b->connect_errors;
  s->calls = b->calls;
  s->errors = b->errors;
  s->exceptions = b->exceptions;
  s->app_errors = b->app_errors;
  s->sent = b->sent;
  s->replies = b->replies;
  s->late = b->late;
  s->hist = &b->hist;
  if (b->phase >= PT_BENCH_WARMUP && b->t_last > b->t_meas) {
    uint64_t end = b->t_last < b->t_end ? b->t_last : b->t_end;
    s->elapsed = (double)(end - b->t_meas) / 1e9;
    s->cpu = (b->cpu1 > b->cpu0 ? b->cpu1 - b->cpu0 : 0);
  }
}

const char *pt_bench_error(const pt_bench *b) {
  return b->has_err ? b->err : NULL;
}

void pt_bench_free(pt_bench *b) {
  if (!b) return;
  if (b->l) pt_loop_free(b->l);
  if (b->cs) {
    for (int i = 0; i < b->nconns; i++) {
      free(b->cs[i].ring);
      free(b->cs[i].in);
      free(b->cs[i].blk);
      free(b->cs[i].scan);
    }
    free(b->cs);
  }
  free(b->ev);
  free(b->req);
  free(b);
}
