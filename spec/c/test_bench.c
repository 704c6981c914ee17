/* test_bench.c — the load generator (pt_bench) and its histogram
 * (pt_hist), against small Thrift servers run on a pt_loop in a forked
 * child: replies, declared exceptions, TApplicationExceptions, replies out
 * of order, unframed messages, a rate, lost and refused connections.
 * Every run is bounded in time; children are killed by pid. */
#define _GNU_SOURCE
#include <errno.h>
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ctest.h"
#include "pt_bench.h"
#include "pt_hist.h"
#include "pt_loop.h"

/* ---- the histogram ---------------------------------------------------- */

static void test_hist_buckets(void) {
  /* every value falls in its bucket, buckets tile the range in order,
   * and a bucket is at most 1/128 of its values wide */
  uint64_t prev_high = 0;
  int bad_tile = 0, bad_width = 0, bad_in = 0;
  for (int i = 0; i < PT_HIST_BUCKETS; i++) {
    uint64_t lo = pt_hist_low(i), hi = pt_hist_high(i);
    if (i > 0 && lo != prev_high + 1) bad_tile++;
    if (lo >= 256 && (double)(hi - lo + 1) > (double)lo / 128.0 + 1e-9) bad_width++;
    if (pt_hist_index(lo) != i || pt_hist_index(hi) != i) bad_in++;
    prev_high = hi;
  }
  CHECK(bad_tile == 0);
  CHECK(bad_width == 0);
  CHECK(bad_in == 0);
  CHECK(pt_hist_low(0) == 0);
  CHECK(prev_high + 1 == (uint64_t)1 << PT_HIST_TOP_BITS);
  CHECK(pt_hist_index(UINT64_MAX) == PT_HIST_BUCKETS - 1); /* clamped */
  for (uint64_t v = 1; v < ((uint64_t)1 << 40); v = v * 3 + 1) {
    int i = pt_hist_index(v);
    CHECK(pt_hist_low(i) <= v && v <= pt_hist_high(i));
  }
}

static void test_hist_quantiles(void) {
  pt_hist h;
  pt_hist_init(&h);
  CHECK(pt_hist_quantile(&h, 0.5) == 0);
  for (uint64_t v = 1; v <= 100000; v++) pt_hist_add(&h, v * 1000);
  CHECK(h.n == 100000);
  CHECK(h.min == 1000 && h.max == 100000000);
  const double qs[] = {0.5, 0.9, 0.99, 0.999};
  for (int k = 0; k < 4; k++) {
    double want = qs[k] * 100000 * 1000;
    double got = (double)pt_hist_quantile(&h, qs[k]);
    CHECK(got >= want && got <= want * (1 + 1.0 / 128));
  }
  CHECK(pt_hist_quantile(&h, 0) == 1000);
  CHECK(pt_hist_quantile(&h, 1) == 100000000);
  CHECK(fabs(h.sum / (double)h.n - 50000.5 * 1000) < 1);
  pt_hist g;
  pt_hist_init(&g);
  pt_hist_add(&g, 7);
  pt_hist_merge(&g, &h);
  CHECK(g.n == 100001 && g.min == 7 && g.max == h.max);
  /* one huge value: clamped bucket, exact max */
  pt_hist_add(&g, UINT64_MAX / 2);
  CHECK(pt_hist_quantile(&g, 1) == UINT64_MAX / 2);
  /* a run of c equal values is c adds */
  pt_hist r1, r2;
  pt_hist_init(&r1);
  pt_hist_init(&r2);
  for (int i = 0; i < 5; i++) pt_hist_add(&r1, 123456);
  pt_hist_add(&r1, 9);
  pt_hist_add_n(&r2, 123456, 5);
  pt_hist_add_n(&r2, 9, 1);
  CHECK(memcmp(&r1, &r2, sizeof r1) == 0);
}

/* ---- a server in a child ------------------------------------------------ */

enum { S_REPLY, S_EXC, S_APP, S_REVERSE, S_CLOSE, S_NAME, S_SEQ };

static inline uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         p[3];
}

/* Answer one strict Binary call msg (n bytes) into out, framed or not. */
static void answer(pt_buf *out, uint8_t *msg, size_t n, int framed, int mode) {
  uint32_t nlen = be32(msg + 4);
  size_t body = 8 + nlen + 4;
  static const uint8_t app[] = {0x0b, 0x00, 0x01, 0, 0, 0, 2, 'n', 'o',
                                0x08, 0x00, 0x02, 0, 0, 0, 6, 0x00};
  if (mode == S_APP) {
    uint8_t hdr[4];
    uint32_t len = (uint32_t)(body + sizeof app);
    msg[3] = 3; /* EXCEPTION */
    hdr[0] = (uint8_t)(len >> 24), hdr[1] = (uint8_t)(len >> 16);
    hdr[2] = (uint8_t)(len >> 8), hdr[3] = (uint8_t)len;
    if (framed) pt_buf_append(out, hdr, 4);
    pt_buf_append(out, msg, body);
    pt_buf_append(out, app, sizeof app);
    return;
  }
  msg[3] = 2; /* REPLY */
  if (mode == S_NAME && nlen) msg[8 + nlen - 1] ^= 0x20; /* another method */
  if (mode == S_SEQ) msg[8 + nlen] ^= 0x40; /* a seqid never sent */
  if (n > body + 2) {
    msg[body + 1] = 0;
    msg[body + 2] = mode == S_EXC ? 1 : 0; /* success, or exception 1 */
  }
  uint8_t hdr[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8),
                    (uint8_t)n};
  if (framed) pt_buf_append(out, hdr, 4);
  pt_buf_append(out, msg, n);
}

/* Serve on a loop until killed (or 60 s): framed calls of any size, or
 * unframed ones as long as each arrives whole with its frame-less
 * length known from the request the tests send (fixed req_len). */
static void serve(int wfd, int mode, int framed, size_t unframed_len) {
  pt_loop *l = pt_loop_new(NULL, NULL);
  if (!l) _exit(2);
  pt_conn *lc = pt_listen(l, "127.0.0.1", 0, 128, NULL);
  if (!lc) _exit(2);
  int port = pt_conn_port(lc);
  if (write(wfd, &port, sizeof port) != sizeof port) _exit(2);
  close(wfd);
  pt_event ev[256];
  int64_t end = pt_loop_now(l) + 60000;
  uint8_t *msg = malloc(1 << 20);
  while (pt_loop_now(l) < end) {
    int k = pt_loop_poll(l, ev, 256, 100);
    if (k < 0) _exit(3);
    for (int i = 0; i < k; i++) {
      if (ev[i].type != PT_EV_DATA) continue;
      pt_conn *c = ev[i].conn;
      if (mode == S_CLOSE) {
        pt_conn_close(c, 0);
        continue;
      }
      /* collect the whole messages, answer (in reverse for S_REVERSE) */
      pt_buf batch;
      pt_buf_init(&batch, pt_loop_pool(l));
      size_t lens[512];
      int nmsg = 0;
      for (;;) {
        size_t len = pt_buf_len(c->in), n;
        if (framed) {
          uint64_t fl;
          if (len < 4 || pt_buf_peek_be(c->in, 0, 4, &fl) != 0 || len < 4 + fl) break;
          n = (size_t)fl;
          pt_buf_skip(c->in, 4);
        } else {
          n = unframed_len;
          if (len < n) break;
        }
        if (n > (1 << 20) || nmsg == 512) _exit(4);
        pt_buf_read(c->in, n, msg);
        pt_buf_append(&batch, msg, n);
        lens[nmsg++] = n;
      }
      uint8_t *all = malloc(pt_buf_len(&batch) + 1);
      size_t total = pt_buf_len(&batch), off = 0;
      pt_buf_read(&batch, total, all);
      if (mode == S_REVERSE) {
        size_t o = total;
        for (int m = nmsg - 1; m >= 0; m--) {
          o -= lens[m];
          answer(c->out, all + o, lens[m], framed, S_REPLY);
        }
      } else {
        for (int m = 0; m < nmsg; m++) {
          answer(c->out, all + off, lens[m], framed, mode);
          off += lens[m];
        }
      }
      free(all);
      pt_buf_free(&batch);
      pt_conn_send_later(c);
      pt_conn_consumed(c);
    }
  }
  _exit(0);
}

static pid_t start_server(int mode, int framed, size_t unframed_len, int *port) {
  int p[2];
  if (pipe(p) != 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    serve(p[1], mode, framed, unframed_len);
  }
  close(p[1]);
  *port = 0;
  if (pid > 0 && read(p[0], port, sizeof *port) != sizeof *port) *port = 0;
  close(p[0]);
  return pid;
}

static void stop_server(pid_t pid) {
  if (pid <= 0) return;
  kill(pid, SIGTERM);
  int st;
  waitpid(pid, &st, 0);
}

/* A strict Binary call of "echo" (one struct argument, id 1) with some
 * bytes in it: framed or not. */
static size_t make_call(uint8_t *out, int framed, int type) {
  uint8_t m[256];
  size_t n = 0;
  const uint8_t head[] = {0x80, 0x01, 0x00, (uint8_t)type, 0, 0, 0, 4,
                          'e',  'c',  'h',  'o',           0, 0, 0, 0};
  memcpy(m, head, sizeof head);
  n = sizeof head;
  const uint8_t args[] = {0x0c, 0x00, 0x01,                     /* req */
                          0x08, 0x00, 0x01, 0, 0, 0, 42,        /* i32 42 */
                          0x0b, 0x00, 0x02, 0, 0, 0, 3, 'a', 'b', 'c',
                          0x00,                                 /* end req */
                          0x00};                                /* end args */
  memcpy(m + n, args, sizeof args);
  n += sizeof args;
  if (!framed) {
    memcpy(out, m, n);
    return n;
  }
  out[0] = out[1] = out[2] = 0;
  out[3] = (uint8_t)n;
  memcpy(out + 4, m, n);
  return n + 4;
}

/* Run b to the end (bounded): the last run's result. */
static int run_all(pt_bench *b) {
  int r;
  int64_t guard = 0;
  while ((r = pt_bench_run(b, 100)) == 1 && guard++ < 600) {
  }
  if (getenv("TEST_BENCH_DEBUG"))
    fprintf(stderr, "run: %d (%s)\n", r, pt_bench_error(b) ? pt_bench_error(b) : "");
  return r;
}

/* how the generator's conns move bytes (main runs the tests in each) */
static int io_mode = PT_BENCH_IO_AUTO;

static pt_bench_opts opts(int port, const uint8_t *req, size_t len, int framed) {
  pt_bench_opts o;
  memset(&o, 0, sizeof o);
  o.io = io_mode;
  o.host = "127.0.0.1";
  o.port = port;
  o.conns = 4;
  o.depth = 1;
  o.duration_ms = 400;
  o.warmup_ms = 100;
  o.req = req;
  o.req_len = len;
  o.framed = framed;
  return o;
}

static void test_bench_replies(void) {
  int port;
  pid_t pid = start_server(S_REPLY, 1, 0, &port);
  CHECK(pid > 0 && port > 0);
  uint8_t req[300];
  size_t n = make_call(req, 1, 1);
  pt_bench_opts o = opts(port, req, n, 1);
  char err[256];
  pt_bench *b = pt_bench_new(&o, err, sizeof err);
  CHECK(b != NULL);
  if (b) {
    CHECK(run_all(b) == 0);
    pt_bench_stats s;
    pt_bench_stats_get(b, &s);
    CHECK(s.phase == PT_BENCH_DONE);
    CHECK(s.conns_up == 4 && s.connect_errors == 0);
    CHECK(s.calls > 20);
    CHECK(s.errors == 0 && s.exceptions == 0 && s.app_errors == 0);
    CHECK(s.replies >= s.calls && s.sent >= s.replies);
    CHECK(s.sent - s.replies <= 4); /* ping-pong: one in flight per conn */
    CHECK(fabs(s.elapsed - 0.4) < 0.05);
    CHECK(s.hist->n == s.calls);
    uint64_t p50 = pt_hist_quantile(s.hist, 0.5), p99 = pt_hist_quantile(s.hist, 0.99);
    CHECK(s.hist->min > 0 && s.hist->min <= p50 && p50 <= p99 && p99 <= s.hist->max);
    CHECK(pt_bench_error(b) == NULL);
    pt_bench_free(b);
  }
  stop_server(pid);
}

/* depth 8, unframed, the server answering each batch in reverse order */
static void test_bench_pipelined_unframed(void) {
  uint8_t req[300];
  size_t n = make_call(req, 0, 1);
  int port;
  pid_t pid = start_server(S_REVERSE, 0, n, &port);
  CHECK(pid > 0 && port > 0);
  pt_bench_opts o = opts(port, req, n, 0);
  o.depth = 8;
  o.conns = 2;
  char err[256];
  pt_bench *b = pt_bench_new(&o, err, sizeof err);
  CHECK(b != NULL);
  if (b) {
    CHECK(run_all(b) == 0);
    pt_bench_stats s;
    pt_bench_stats_get(b, &s);
    CHECK(s.calls > 20);
    CHECK(s.errors == 0);
    CHECK(s.sent - s.replies <= 16);
    if (s.errors) fprintf(stderr, "bench error: %s\n", pt_bench_error(b));
    pt_bench_free(b);
  }
  stop_server(pid);
}

/* requests of 64 KiB, 64 in flight on one conn: 4 MiB the socket cannot
 * take at once (sends wait for writability), replies across reads */
static void test_bench_large(void) {
  size_t big = 64 * 1024, n = 0;
  uint8_t *req = malloc(big + 64);
  CHECK(req != NULL);
  if (!req) return;
  const uint8_t head[] = {0x80, 0x01, 0x00, 0x01, 0, 0, 0, 4, 'e', 'c', 'h', 'o', 0, 0, 0, 0,
                          0x0c, 0x00, 0x01, 0x0b, 0x00, 0x02,
                          (uint8_t)(big >> 24), (uint8_t)(big >> 16), (uint8_t)(big >> 8),
                          (uint8_t)big};
  memcpy(req + 4, head, sizeof head);
  n = 4 + sizeof head;
  for (size_t i = 0; i < big; i++) req[n++] = (uint8_t)('a' + i % 26);
  req[n++] = 0x00; /* end req */
  req[n++] = 0x00; /* end args */
  uint32_t body = (uint32_t)(n - 4);
  req[0] = (uint8_t)(body >> 24), req[1] = (uint8_t)(body >> 16);
  req[2] = (uint8_t)(body >> 8), req[3] = (uint8_t)body;
  int port;
  pid_t pid = start_server(S_REPLY, 1, 0, &port);
  CHECK(pid > 0 && port > 0);
  pt_bench_opts o = opts(port, req, n, 1);
  o.conns = 1;
  o.depth = 64;
  o.duration_ms = 500;
  char err[256];
  pt_bench *b = pt_bench_new(&o, err, sizeof err);
  CHECK(b != NULL);
  if (b) {
    CHECK(run_all(b) == 0);
    pt_bench_stats s;
    pt_bench_stats_get(b, &s);
    /* more than the first 64 came back: slots were used again */
    CHECK(s.replies > 64 && s.calls > 0);
    if (s.replies <= 64) fprintf(stderr, "large: %llu replies\n", (unsigned long long)s.replies);
    CHECK(s.errors == 0 && s.exceptions == 0 && s.app_errors == 0);
    CHECK(s.sent - s.replies <= 64);
    if (s.errors) fprintf(stderr, "bench error: %s\n", pt_bench_error(b));
    pt_bench_free(b);
  }
  free(req);
  stop_server(pid);
}

/* A 200 ms run of one conn sending the call to a server in mode: the
 * bench (NULL when it could not be made; the caller checks and frees it),
 * the run's result in *r, its stats in *s, the server's pid in *pid (the
 * caller stops it). */
static pt_bench *run_against(int mode, pid_t *pid, int *r, pt_bench_stats *s) {
  uint8_t req[300];
  size_t n = make_call(req, 1, 1);
  int port;
  *pid = start_server(mode, 1, 0, &port);
  pt_bench_opts o = opts(port, req, n, 1);
  o.duration_ms = 200;
  char err[256];
  pt_bench *b = pt_bench_new(&o, err, sizeof err);
  if (b) {
    *r = run_all(b);
    pt_bench_stats_get(b, s);
  }
  return b;
}

static void test_bench_exceptions(void) {
  for (int mode = S_EXC; mode <= S_APP; mode++) {
    pid_t pid;
    int r = 0;
    pt_bench_stats s;
    pt_bench *b = run_against(mode, &pid, &r, &s);
    CHECK(b != NULL);
    if (b) {
      CHECK(r == 0);
      CHECK(s.calls == 0);
      if (mode == S_EXC)
        CHECK(s.exceptions > 10 && s.app_errors == 0);
      else
        CHECK(s.app_errors > 10 && s.exceptions == 0);
      CHECK(pt_bench_error(b) != NULL);
      pt_bench_free(b);
    }
    stop_server(pid);
  }
}

/* Replies that look almost right (another method's name, a seqid never
 * sent: one byte off) are errors, never calls. */
static void test_bench_wrong_replies(void) {
  for (int mode = S_NAME; mode <= S_SEQ; mode++) {
    pid_t pid;
    int r = 0;
    pt_bench_stats s;
    pt_bench *b = run_against(mode, &pid, &r, &s);
    CHECK(b != NULL);
    if (b) {
      CHECK(s.calls == 0);
      const char *e = pt_bench_error(b);
      if (mode == S_NAME) {
        CHECK(r == 0 && s.errors > 10);
        CHECK(e && strstr(e, "another method"));
      } else { /* every conn dropped at its first reply */
        CHECK(r == -1 && s.conns_up == 0);
        CHECK(e && strstr(e, "unknown sequence id"));
      }
      pt_bench_free(b);
    }
    stop_server(pid);
  }
}

/* 1000 calls/s for 1 s: about 1000 calls whatever the server's speed */
static void test_bench_rate(void) {
  int port;
  pid_t pid = start_server(S_REPLY, 1, 0, &port);
  uint8_t req[300];
  size_t n = make_call(req, 1, 1);
  pt_bench_opts o = opts(port, req, n, 1);
  o.rate = 1000;
  o.duration_ms = 1000;
  o.warmup_ms = 0;
  o.conns = 2;
  o.depth = 4;
  char err[256];
  pt_bench *b = pt_bench_new(&o, err, sizeof err);
  CHECK(b != NULL);
  if (b) {
    CHECK(run_all(b) == 0);
    pt_bench_stats s;
    pt_bench_stats_get(b, &s);
    /* the schedule caps it; a loaded machine may answer fewer */
    CHECK(s.calls >= 200 && s.calls <= 1010);
    CHECK(s.sent <= 1002);
    CHECK(s.errors == 0);
    pt_bench_free(b);
  }
  stop_server(pid);
}

static void test_bench_failures(void) {
  uint8_t req[300];
  size_t n = make_call(req, 1, 1);
  char err[256];
  /* refused: a port bound here and not listening */
  int port = 0;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t sl = sizeof sa;
  CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
  CHECK(getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
  port = ntohs(sa.sin_port);
  pt_bench_opts o = opts(port, req, n, 1);
  pt_bench *b = pt_bench_new(&o, err, sizeof err);
  CHECK(b != NULL);
  if (b) {
    CHECK(run_all(b) == -1);
    CHECK(pt_bench_error(b) && strstr(pt_bench_error(b), "refused"));
    pt_bench_free(b);
  }
  close(fd);
  /* the server drops every connection */
  pid_t pid = start_server(S_CLOSE, 1, 0, &port);
  o = opts(port, req, n, 1);
  b = pt_bench_new(&o, err, sizeof err);
  CHECK(b != NULL);
  if (b) {
    CHECK(run_all(b) == -1);
    pt_bench_stats s;
    pt_bench_stats_get(b, &s);
    CHECK(s.conns_up == 0 && s.calls == 0);
    CHECK(pt_bench_error(b) && strstr(pt_bench_error(b), "closed"));
    pt_bench_free(b);
  }
  stop_server(pid);
  /* requests it cannot use */
  o = opts(1, req, n, 1);
  uint8_t bad[300];
  size_t m = make_call(bad, 1, 4); /* oneway */
  o.req = bad;
  o.req_len = m;
  CHECK(pt_bench_new(&o, err, sizeof err) == NULL && strstr(err, "oneway"));
  o.req_len = m - 1; /* not one frame */
  CHECK(pt_bench_new(&o, err, sizeof err) == NULL && strstr(err, "frame"));
  memcpy(bad, "GET / HTTP/1.1\r\n\r\n", 18);
  o.req_len = 18;
  o.framed = 0;
  CHECK(pt_bench_new(&o, err, sizeof err) == NULL && strstr(err, "Thrift Binary"));
  o = opts(1, req, n, 1);
  o.conns = 0;
  CHECK(pt_bench_new(&o, err, sizeof err) == NULL && strstr(err, "conns"));
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  TEST(test_hist_buckets);
  TEST(test_hist_quantiles);
  /* direct I/O (the loop watches, the conns recv and send), then the
   * loop's conns, on the back end PETREL_BACKEND picks */
  for (int io = PT_BENCH_IO_DIRECT; io >= PT_BENCH_IO_LOOP; io--) {
    io_mode = io;
    TEST(test_bench_replies);
    TEST(test_bench_pipelined_unframed);
    TEST(test_bench_large);
    TEST(test_bench_exceptions);
    TEST(test_bench_wrong_replies);
    TEST(test_bench_rate);
    TEST(test_bench_failures);
  }
  return ct_report();
}
