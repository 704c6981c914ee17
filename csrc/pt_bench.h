/*
 * pt_bench.h — a Thrift RPC load generator on the petrel loop (pt_loop),
 * behind `petrel bench`. No Lua in here.
 *
 * The caller gives one whole request message as it goes on the wire (a
 * Thrift Binary CALL envelope, framed or not, strict or not, with any
 * seqid); the generator opens `conns` connections, keeps `depth` calls in
 * flight on each (1: ping-pong; more: pipelining), each call a copy of the
 * request with its own seqid, and checks every reply: a Thrift Binary
 * REPLY with that seqid and the method's name (EXCEPTION replies, declared
 * exceptions and malformed replies are counted apart). With a rate, calls
 * start on a schedule (rate per second over all connections) instead of
 * as soon as a reply frees a slot, and a call's latency counts from when
 * the schedule said it should start, so a server that falls behind shows
 * it (no coordinated omission), as wrk2 measures.
 *
 * Phases: connecting (all connects finish or time out; the clock has not
 * started), warm-up (calls made, not measured), measuring (replies that
 * arrive in the window are counted; their latency goes to the histogram,
 * in nanoseconds from the request being queued), done (no new calls).
 *
 * Clock: one read per batch of completions (when the loop's poll
 * returns); a batch's replies are timed from it and the calls they start
 * are stamped with it, so a call's latency runs from the poll return that
 * started it to the one that saw its reply: off by at most one batch's
 * processing time (microseconds), either way.
 *
 * Driving: pt_bench_run(b, ms) runs the loop for up to ms and returns, so
 * a caller can show progress between slices; it returns 0 once done.
 */
#ifndef PT_BENCH_H
#define PT_BENCH_H

#include <stddef.h>
#include <stdint.h>

#include "pt_hist.h"

typedef struct pt_bench pt_bench;

typedef struct pt_bench_opts {
  const char *host;       /* "127.0.0.1", "::1", a name, "unix:/path" */
  int port;
  int conns;              /* >= 1 */
  int depth;              /* calls in flight per connection, >= 1 */
  double rate;            /* calls/s over all connections; 0: no limit */
  int64_t duration_ms;    /* measured window, > 0 */
  int64_t warmup_ms;      /* before it, >= 0 */
  int connect_timeout_ms; /* 0: 3000 */
  const void *req;        /* the request message as sent */
  size_t req_len;
  int framed;             /* 1: 4-byte frame before each message (both
                             ways); 0: unframed (replies found by the
                             message scanner) */
  size_t max_frame;       /* a longer reply closes its conn; 0: 16 MiB */
  int backend;            /* PT_BE_* (pt_types.h) */
  int io;                 /* PT_BENCH_IO_*: 0 (auto) is direct on epoll,
                             the loop's conns on io_uring */
} pt_bench_opts;

/* How the conns move bytes: through the loop's conns (linked buffers;
 * multishot recv under io_uring), or directly (the loop connects and
 * watches the sockets; each conn does one recv into a flat buffer per
 * readiness report and sends from a flat buffer, as bench/loadgen.c). */
enum { PT_BENCH_IO_AUTO = 0, PT_BENCH_IO_LOOP = 1, PT_BENCH_IO_DIRECT = 2 };

enum { PT_BENCH_CONNECTING, PT_BENCH_WARMUP, PT_BENCH_MEASURING,
       PT_BENCH_DONE };

typedef struct pt_bench_stats {
  int phase;               /* PT_BENCH_* */
  int conns_up;            /* connections open now */
  int connect_errors;
  uint64_t calls;          /* good replies in the measured window */
  uint64_t errors;         /* bad replies and lost connections in it */
  uint64_t exceptions;     /* REPLYs carrying a declared exception, in it */
  uint64_t app_errors;     /* EXCEPTION replies (TApplicationException), in it */
  uint64_t sent, replies;  /* all of them, warm-up included */
  uint64_t late;           /* rate: calls that started later than scheduled
                              because every slot was busy */
  double elapsed;          /* seconds of the measured window so far */
  double cpu;              /* seconds of this process's CPU over it */
  const pt_hist *hist;     /* latencies in ns (measured window) */
} pt_bench_stats;

/* Checks the options and the request, makes the loop, starts connecting.
 * NULL with a message in err on failure (a bad request, no loop). */
pt_bench *pt_bench_new(const pt_bench_opts *o, char *err, size_t errlen);
/* Run for up to ms: 1 more to do, 0 done, -1 failed (pt_bench_error: no
 * connection could be made, every connection was lost, the loop failed). */
int pt_bench_run(pt_bench *b, int ms);
void pt_bench_stats_get(const pt_bench *b, pt_bench_stats *out);
/* The first error seen (why a call failed, a connection was lost), or
 * NULL. */
const char *pt_bench_error(const pt_bench *b);
void pt_bench_free(pt_bench *b);

#endif
