/* test_udp.c — datagram sockets of the loop core without Lua: bind and
 * connect over 127.0.0.1 and ::1, one DGRAM completion per datagram with
 * its sender, batched receive and send, datagrams cut at max_datagram,
 * kernel drops counted, errors the socket reports, the input cap, close
 * with and without flush, addresses as text. PETREL_BACKEND picks the back
 * end. Every wait is bounded. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ctest.h"
#include "pt_loop.h"

#define NEV 512
static pt_event evs[NEV];
static int UR; /* io_uring (PETREL_BACKEND) */

static int64_t ms_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pattern(char *p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++) p[i] = (char)((i * 131 + seed * 7 + 3) & 0xff);
}

static int is_pattern(const char *p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != (char)((i * 131 + seed * 7 + 3) & 0xff)) return 0;
  return 1;
}

typedef int (*ev_fn)(pt_loop *l, pt_event *e, void *ctx);
/* Poll until fn says stop or ms pass; fn sees every event. */
static int run(pt_loop *l, ev_fn fn, void *ctx, int ms) {
  int64_t end = ms_now() + ms;
  int stop = 0;
  while (!stop && ms_now() < end) {
    int n = pt_loop_poll(l, evs, NEV, 20);
    if (n < 0) return 0;
    for (int i = 0; i < n; i++)
      if (fn(l, &evs[i], ctx)) stop = 1;
  }
  return stop;
}

static int port_of(pt_conn *c) { return pt_conn_port(c); }

static char local_text[64];
/* c's local address as pt_udp_addr_text writes it */
static const char *local_of(pt_conn *c) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  getsockname(c->fd, (struct sockaddr *)&ss, &len);
  pt_udp_addr_text((struct sockaddr *)&ss, len, local_text, sizeof local_text);
  return local_text;
}

/* ---- an echo: the client sends datagrams, the server sends each back ---- */

static const size_t SIZES[] = {0, 1, 512, 1472, 9000, 65507};
#define NSIZES (sizeof SIZES / sizeof SIZES[0])

typedef struct echo {
  pt_conn *srv, *cli;
  char cli_addr[64];
  int got_srv, got_cli, bad;
} echo;

static int echo_fn(pt_loop *l, pt_event *e, void *ctx) {
  (void)l;
  echo *s = ctx;
  if (e->type != PT_EV_DGRAM) return 0;
  CHECK(e->err == 0);
  pt_dgram d;
  if (e->conn == s->srv) {
    CHECK(pt_udp_recv(s->srv, &d) == 1);
    int i = s->got_srv++;
    CHECK(e->arg == SIZES[i] && d.len == SIZES[i] && d.full == SIZES[i]);
    if (!is_pattern(d.data, d.len, (unsigned)i)) s->bad++;
    size_t tl;
    const char *t = pt_udp_peer_text(s->srv, d.addr, d.alen, &tl);
    CHECK(strcmp(t, s->cli_addr) == 0);
    CHECK(pt_udp_send(s->srv, d.data, d.len, d.addr, d.alen) == 0);
  } else if (e->conn == s->cli) {
    CHECK(pt_udp_recv(s->cli, &d) == 1);
    int i = s->got_cli++;
    CHECK(d.len == SIZES[i]);
    if (!is_pattern(d.data, d.len, (unsigned)i)) s->bad++;
  }
  return s->got_cli == (int)NSIZES;
}

static void echo_over(const char *bind_host, const char *host) {
  pt_loop *l = pt_loop_new(NULL, NULL);
  CHECK(l != NULL);
  if (!l) return;
  echo s;
  memset(&s, 0, sizeof s);
  s.srv = pt_udp_open(l, bind_host, 0, NULL, 0, NULL);
  CHECK(s.srv != NULL);
  if (!s.srv) {
    fprintf(stderr, "udp open: %s\n", pt_loop_error(l));
    pt_loop_free(l);
    return;
  }
  s.cli = pt_udp_open(l, NULL, 0, host, port_of(s.srv), NULL);
  CHECK(s.cli != NULL);
  if (!s.cli) {
    pt_loop_free(l);
    return;
  }
  static char buf[65507];
  for (size_t i = 0; i < NSIZES; i++) {
    pattern(buf, SIZES[i], (unsigned)i);
    CHECK(pt_udp_send(s.cli, buf, SIZES[i], NULL, 0) == 0);
  }
  /* the client is bound by its first send (the flush of the next poll) */
  pt_loop_flush(l);
  snprintf(s.cli_addr, sizeof s.cli_addr, "%s", local_of(s.cli));
  CHECK(run(l, echo_fn, &s, 5000));
  CHECK(s.got_srv == (int)NSIZES && s.got_cli == (int)NSIZES && s.bad == 0);
  pt_udp_stats st;
  CHECK(pt_udp_stats_get(s.srv, &st) == 0);
  CHECK(st.dgrams_in == NSIZES && st.dgrams_out == NSIZES && st.cut == 0);
  CHECK(st.send_errors == 0 && st.kernel_drops == 0);
  pt_loop_stats ls;
  pt_loop_stats_get(l, &ls);
  CHECK(ls.udp_open == 2 && ls.conns_open == 0);
  CHECK(ls.dgrams_in == 2 * NSIZES && ls.dgrams_out == 2 * NSIZES);
  pt_loop_free(l);
}

static void test_echo_v4(void) { echo_over("127.0.0.1", "127.0.0.1"); }

static int have_v6(void) {
  int fd = socket(AF_INET6, SOCK_DGRAM, 0);
  struct sockaddr_in6 a;
  memset(&a, 0, sizeof a);
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  int ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
  if (fd >= 0) close(fd);
  return ok;
}

static void test_echo_v6(void) {
  if (!have_v6()) {
    SKIP("::1 unavailable");
    return;
  }
  echo_over("::1", "::1");
  echo_over("[::1]", "[::1]");
  /* a dual-stack socket hears IPv4 senders, named as IPv4 */
  echo_over("::", "127.0.0.1");
}

/* ---- batches ------------------------------------------------------------- */

typedef struct batch {
  pt_conn *srv;
  int got, order_bad, events;
} batch;

static int batch_fn(pt_loop *l, pt_event *e, void *ctx) {
  (void)l;
  batch *s = ctx;
  if (e->type != PT_EV_DGRAM || e->conn != s->srv) return 0;
  s->events++;
  pt_dgram d;
  while (pt_udp_recv(s->srv, &d)) {
    unsigned v;
    CHECK(d.len == 200);
    memcpy(&v, d.data, sizeof v);
    if (v != (unsigned)s->got) s->order_bad++;
    s->got++;
  }
  return s->got == 1000;
}

static void test_batches(void) {
  pt_loop *l = pt_loop_new(NULL, NULL);
  pt_udpopts o;
  memset(&o, 0, sizeof o);
  o.rcvbuf = 4 << 20;
  batch s;
  memset(&s, 0, sizeof s);
  s.srv = pt_udp_open(l, "127.0.0.1", 0, NULL, 0, &o);
  pt_conn *cli = pt_udp_open(l, "127.0.0.1", 0, "127.0.0.1", port_of(s.srv), &o);
  CHECK(s.srv && cli);
  if (!s.srv || !cli) {
    pt_loop_free(l);
    return;
  }
  char buf[200];
  memset(buf, 'x', sizeof buf);
  for (unsigned i = 0; i < 1000; i++) {
    memcpy(buf, &i, sizeof i);
    CHECK(pt_udp_send(cli, buf, sizeof buf, NULL, 0) == 0);
  }
  pt_loop_stats before;
  pt_loop_stats_get(l, &before);
  pt_loop_flush(l);
  pt_loop_stats after;
  pt_loop_stats_get(l, &after);
  /* one sendmmsg per PT_DG_BATCH datagrams */
  CHECK(after.dgrams_out - before.dgrams_out == 1000);
  CHECK(after.writev_calls - before.writev_calls <= (1000 + 63) / 64);
  CHECK(run(l, batch_fn, &s, 5000));
  CHECK(s.got == 1000 && s.order_bad == 0);
  pt_loop_stats_get(l, &after);
  /* epoll: one recvmmsg per batch (io_uring counts completions) */
  if (!UR) CHECK(after.readv_calls - before.readv_calls < 100);
  pt_loop_free(l);
}

/* ---- datagrams longer than max_datagram -------------------------------- */

typedef struct cut {
  pt_conn *srv;
  int n, errs[3];
  size_t args[3], fulls[3], lens[3];
  int data_ok;
} cut;

static int cut_fn(pt_loop *l, pt_event *e, void *ctx) {
  (void)l;
  cut *s = ctx;
  if (e->type != PT_EV_DGRAM || e->conn != s->srv || s->n >= 3) return 0;
  pt_dgram d;
  CHECK(pt_udp_recv(s->srv, &d) == 1);
  s->errs[s->n] = e->err;
  s->args[s->n] = e->arg;
  s->fulls[s->n] = d.full;
  s->lens[s->n] = d.len;
  if (d.len && !is_pattern(d.data, d.len, 1)) s->data_ok = 0;
  CHECK(d.err == e->err);
  s->n++;
  return s->n == 3;
}

static void test_cut(void) {
  pt_loop *l = pt_loop_new(NULL, NULL);
  pt_udpopts o;
  memset(&o, 0, sizeof o);
  o.max_datagram = 100;
  cut s;
  memset(&s, 0, sizeof s);
  s.data_ok = 1;
  s.srv = pt_udp_open(l, "127.0.0.1", 0, NULL, 0, &o);
  pt_conn *cli = pt_udp_open(l, NULL, 0, "127.0.0.1", port_of(s.srv), NULL);
  CHECK(s.srv && cli);
  if (!s.srv || !cli) {
    pt_loop_free(l);
    return;
  }
  static char buf[60000];
  pattern(buf, sizeof buf, 1);
  pt_udp_send(cli, buf, 100, NULL, 0);   /* exactly the max: whole */
  pt_udp_send(cli, buf, 500, NULL, 0);   /* cut at 100 */
  pt_udp_send(cli, buf, 60000, NULL, 0); /* cut at 100 */
  CHECK(run(l, cut_fn, &s, 5000));
  CHECK(s.errs[0] == 0 && s.args[0] == 100 && s.fulls[0] == 100);
  CHECK(s.errs[1] == EMSGSIZE && s.args[1] == 100 && s.lens[1] == 100 &&
        s.fulls[1] == 500);
  CHECK(s.errs[2] == EMSGSIZE && s.lens[2] == 100 && s.fulls[2] == 60000);
  CHECK(s.data_ok);
  pt_udp_stats st;
  pt_udp_stats_get(s.srv, &st);
  CHECK(st.cut == 2 && st.dgrams_in == 3);
  pt_loop_free(l);
}

/* ---- drops: the kernel drops what the receive buffer cannot hold --------- */

typedef struct drops {
  pt_conn *srv;
  int got;
} drops;

static int drops_fn(pt_loop *l, pt_event *e, void *ctx) {
  (void)l;
  drops *s = ctx;
  pt_dgram d;
  if (e->type == PT_EV_DGRAM && e->conn == s->srv)
    while (pt_udp_recv(s->srv, &d)) s->got++;
  return 0;
}

static void test_drops(void) {
  pt_loop *l = pt_loop_new(NULL, NULL);
  pt_udpopts o;
  memset(&o, 0, sizeof o);
  o.rcvbuf = 4096; /* the kernel's minimum: a few datagrams */
  drops s;
  memset(&s, 0, sizeof s);
  s.srv = pt_udp_open(l, "127.0.0.1", 0, NULL, 0, &o);
  CHECK(s.srv != NULL);
  if (!s.srv) {
    pt_loop_free(l);
    return;
  }
  /* a plain socket sends 200 datagrams before the loop reads any */
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons((uint16_t)port_of(s.srv));
  char buf[1000];
  memset(buf, 'd', sizeof buf);
  int sent = 0;
  for (int i = 0; i < 200; i++)
    if (sendto(fd, buf, sizeof buf, 0, (struct sockaddr *)&a, sizeof a) == 1000)
      sent++;
  close(fd);
  CHECK(sent == 200);
  run(l, drops_fn, &s, 300); /* reads what the kernel kept */
  pt_udp_stats st;
  pt_udp_stats_get(s.srv, &st);
  CHECK(s.got > 0 && st.kernel_drops > 0);
  CHECK((uint64_t)s.got + st.kernel_drops == 200); /* loopback loses none else */
  CHECK(st.rcvbuf > 0);
  pt_loop_free(l);
}

/* ---- errors the socket reports ------------------------------------------- */

typedef struct refused {
  pt_conn *cli;
  int err, errev, data;
} refused;

static int refused_fn(pt_loop *l, pt_event *e, void *ctx) {
  (void)l;
  refused *s = ctx;
  if (e->type != PT_EV_DGRAM || e->conn != s->cli) return 0;
  if (e->err && e->err != EMSGSIZE) {
    CHECK(e->arg == 0);
    s->errev = e->err;
    pt_dgram d;
    CHECK(pt_udp_recv(s->cli, &d) == 1);
    s->err = d.err;
    CHECK(d.data == NULL);
    return 1;
  }
  s->data++;
  return 0;
}

static void test_refused(void) {
  pt_loop *l = pt_loop_new(NULL, NULL);
  /* a port nobody listens on: bound, then closed (a plain socket: under
   * io_uring a loop's socket lets its port go once its receive's
   * cancellation went through, in the next round) */
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a;
  socklen_t alen = sizeof a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, (struct sockaddr *)&a, sizeof a);
  getsockname(fd, (struct sockaddr *)&a, &alen);
  int dead = ntohs(a.sin_port);
  close(fd);
  refused s;
  memset(&s, 0, sizeof s);
  s.cli = pt_udp_open(l, NULL, 0, "127.0.0.1", dead, NULL);
  CHECK(s.cli != NULL);
  if (!s.cli) {
    pt_loop_free(l);
    return;
  }
  CHECK(pt_udp_send(s.cli, "ping", 4, NULL, 0) == 0);
  CHECK(run(l, refused_fn, &s, 5000));
  CHECK(s.errev == ECONNREFUSED && s.err == ECONNREFUSED && s.data == 0);
  CHECK(!(s.cli->flags & PT_CF_CLOSED)); /* the socket stays open */
  pt_udp_stats st;
  pt_udp_stats_get(s.cli, &st);
  CHECK(st.errors_in == 1);
  /* and still sends */
  CHECK(pt_udp_send(s.cli, "again", 5, NULL, 0) == 0);
  pt_loop_free(l);
}

/* A datagram the kernel refuses (port 0: EINVAL) is dropped and counted;
 * the ones queued after it leave in the same flush. */
typedef struct refusedsend {
  pt_conn *srv;
  int got;
} refusedsend;

static int refusedsend_fn(pt_loop *l, pt_event *e, void *ctx) {
  (void)l;
  refusedsend *s = ctx;
  pt_dgram d;
  if (e->type == PT_EV_DGRAM && e->conn == s->srv)
    while (pt_udp_recv(s->srv, &d)) s->got++;
  return s->got == 2;
}

static void test_send_refused(void) {
  pt_loop *l = pt_loop_new(NULL, NULL);
  refusedsend s;
  memset(&s, 0, sizeof s);
  s.srv = pt_udp_open(l, "127.0.0.1", 0, NULL, 0, NULL);
  pt_conn *u = pt_udp_open(l, "127.0.0.1", 0, NULL, 0, NULL);
  if (!s.srv || !u) {
    CHECK(0);
    pt_loop_free(l);
    return;
  }
  char to[64];
  snprintf(to, sizeof to, "127.0.0.1:%d", port_of(s.srv));
  CHECK(pt_udp_sendto(u, "one", 3, to) == 0);
  CHECK(pt_udp_sendto(u, "nowhere", 7, "127.0.0.1:0") == 0);
  CHECK(pt_udp_sendto(u, "two", 3, to) == 0);
  CHECK(run(l, refusedsend_fn, &s, 5000));
  pt_udp_stats st;
  pt_udp_stats_get(u, &st);
  CHECK(st.dgrams_out == 2 && st.send_errors == 1 && st.last_send_errno == EINVAL);
  pt_loop_free(l);
}

/* ---- the input cap ------------------------------------------------------- */

typedef struct capped {
  pt_conn *srv;
  int events;
} capped;

static int capped_fn(pt_loop *l, pt_event *e, void *ctx) {
  (void)l;
  capped *s = ctx;
  if (e->type == PT_EV_DGRAM && e->conn == s->srv) s->events++;
  return s->events >= 100;
}

static void test_input_cap(void) {
  pt_loop *l = pt_loop_new(NULL, NULL);
  pt_udpopts o;
  memset(&o, 0, sizeof o);
  o.rcvbuf = 1 << 20;
  capped s;
  memset(&s, 0, sizeof s);
  s.srv = pt_udp_open(l, "127.0.0.1", 0, NULL, 0, &o);
  pt_conn *cli = pt_udp_open(l, NULL, 0, "127.0.0.1", port_of(s.srv), NULL);
  if (!s.srv || !cli) {
    CHECK(0);
    pt_loop_free(l);
    return;
  }
  pt_conn_set_caps(s.srv, 10000, 0);
  char buf[500];
  memset(buf, 'c', sizeof buf);
  for (int i = 0; i < 100; i++) pt_udp_send(cli, buf, sizeof buf, NULL, 0);
  /* nobody takes them: reading stops near the cap */
  run(l, capped_fn, &s, 300);
  pt_loop_stats ls;
  pt_loop_stats_get(l, &ls);
  CHECK(ls.rd_paused >= 1);
  CHECK(s.events < 100);
  /* a multishot receive may overshoot by what it had in flight */
  CHECK(pt_buf_len(s.srv->in) < 10000 + (UR ? 140 * 520 : 64 * 520));
  /* taking them resumes reading until all are here */
  int got = 0;
  pt_dgram d;
  int64_t end = ms_now() + 5000;
  while (got < 100 && ms_now() < end) {
    while (pt_udp_recv(s.srv, &d)) got++;
    pt_loop_poll(l, evs, NEV, 20);
  }
  CHECK(got == 100);
  pt_loop_free(l);
}

/* ---- close ---------------------------------------------------------------- */

typedef struct closing {
  pt_conn *srv;
  int got;
} closing;

static int closing_fn(pt_loop *l, pt_event *e, void *ctx) {
  (void)l;
  closing *s = ctx;
  pt_dgram d;
  if (e->type == PT_EV_DGRAM && e->conn == s->srv)
    while (pt_udp_recv(s->srv, &d)) s->got++;
  return s->got >= 10;
}

static void test_close(void) {
  pt_loop *l = pt_loop_new(NULL, NULL);
  closing s;
  memset(&s, 0, sizeof s);
  s.srv = pt_udp_open(l, "127.0.0.1", 0, NULL, 0, NULL);
  pt_conn *a = pt_udp_open(l, NULL, 0, "127.0.0.1", port_of(s.srv), NULL);
  pt_conn *b = pt_udp_open(l, NULL, 0, "127.0.0.1", port_of(s.srv), NULL);
  CHECK(s.srv && a && b);
  if (!s.srv || !a || !b) {
    pt_loop_free(l);
    return;
  }
  for (int i = 0; i < 10; i++) CHECK(pt_udp_send(a, "keep", 4, NULL, 0) == 0);
  for (int i = 0; i < 10; i++) CHECK(pt_udp_send(b, "drop", 4, NULL, 0) == 0);
  pt_conn_close(a, 1); /* flush first */
  pt_conn_close(b, 0); /* dropped */
  CHECK(pt_udp_send(a, "late", 4, NULL, 0) == -1 && errno == EPIPE);
  CHECK(run(l, closing_fn, &s, 5000));
  run(l, closing_fn, &s, 100); /* nothing more comes */
  CHECK(s.got == 10);
  pt_loop_stats ls;
  pt_loop_stats_get(l, &ls);
  CHECK(ls.udp_open == 1);
  pt_loop_free(l);
}

/* ---- refusals and addresses ---------------------------------------------- */

static void test_refusals(void) {
  pt_loop *l = pt_loop_new(NULL, NULL);
  CHECK(pt_udp_open(l, "nosuch.invalid", 0, NULL, 0, NULL) == NULL);
  CHECK(strstr(pt_loop_error(l), "numeric addresses only") != NULL);
  CHECK(pt_udp_open(l, "unix:/tmp/x", 0, NULL, 0, NULL) == NULL);
  CHECK(strstr(pt_loop_error(l), "not an IP address") != NULL);
  pt_conn *u = pt_udp_open(l, "127.0.0.1", 0, NULL, 0, NULL);
  CHECK(u != NULL);
  if (!u) {
    pt_loop_free(l);
    return;
  }
  CHECK(pt_udp_open(l, "127.0.0.1", port_of(u), NULL, 0, NULL) == NULL);
  CHECK(errno == EADDRINUSE);
  CHECK(strstr(pt_loop_error(l), "udp 127.0.0.1:") != NULL);
  CHECK(strstr(pt_loop_error(l), "in use") != NULL);
  static char big[65508];
  CHECK(pt_udp_sendto(u, big, 65508, "127.0.0.1:9") == -1 && errno == EMSGSIZE);
  CHECK(pt_udp_send(u, "x", 1, NULL, 0) == -1 && errno == EDESTADDRREQ);
  CHECK(pt_udp_sendto(u, "x", 1, "127.0.0.1") == -1 && errno == EINVAL);
  CHECK(pt_udp_sendto(u, "x", 1, "::1:9") == -1 && errno == EINVAL);
  CHECK(pt_udp_sendto(u, "x", 1, "127.0.0.1:70000") == -1 && errno == EINVAL);
  CHECK(pt_udp_sendto(u, "x", 1, "[::1]:9") == -1 && errno == EAFNOSUPPORT);
  pt_conn_set_caps(u, 0, 1000);
  CHECK(pt_udp_sendto(u, big, 900, "127.0.0.1:9") == 0);
  CHECK(pt_udp_sendto(u, big, 900, "127.0.0.1:9") == -1 && errno == ENOBUFS);
  pt_udp_stats st;
  pt_udp_stats_get(u, &st);
  CHECK(st.send_full == 1);
  /* stream calls refuse a datagram socket */
  CHECK(pt_conn_send(u) == -1);
  pt_loop_free(l);
}

static void test_addr_text(void) {
  struct sockaddr_storage ss;
  socklen_t len;
  char t[64];
  CHECK(pt_udp_addr("127.0.0.1:53", &ss, &len) == 0 && ss.ss_family == AF_INET);
  pt_udp_addr_text((struct sockaddr *)&ss, len, t, sizeof t);
  CHECK(strcmp(t, "127.0.0.1:53") == 0);
  CHECK(pt_udp_addr("[::1]:6831", &ss, &len) == 0 && ss.ss_family == AF_INET6);
  pt_udp_addr_text((struct sockaddr *)&ss, len, t, sizeof t);
  CHECK(strcmp(t, "[::1]:6831") == 0);
  CHECK(pt_udp_addr("localhost:1", &ss, &len) == 0 && ss.ss_family == AF_INET);
  CHECK(pt_udp_addr("[::ffff:10.0.0.1]:7", &ss, &len) == 0);
  pt_udp_addr_text((struct sockaddr *)&ss, len, t, sizeof t);
  CHECK(strcmp(t, "10.0.0.1:7") == 0); /* mapped: written as IPv4 */
  const char *bad[] = {"", ":1", "1.2.3.4", "1.2.3.4:", "1.2.3.4:x", "::1:5",
                       "[::1]5", "[1.2.3.4]:5", "example.com:5", "1.2.3.4:99999"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    CHECK(pt_udp_addr(bad[i], &ss, &len) == -1);
}

int main(void) {
  pt_loop *probe = pt_loop_new(NULL, NULL); /* PETREL_BACKEND picks */
  if (!probe) {
    fprintf(stderr, "test_udp: no loop: %s\n", strerror(errno));
    return 1;
  }
  UR = strcmp(pt_loop_backend(probe), "io_uring") == 0;
  printf("test_udp: back end %s\n", pt_loop_backend(probe));
  pt_loop_free(probe);
  TEST(test_echo_v4);
  TEST(test_echo_v6);
  TEST(test_batches);
  TEST(test_cut);
  TEST(test_drops);
  TEST(test_refused);
  TEST(test_send_refused);
  TEST(test_input_cap);
  TEST(test_close);
  TEST(test_refusals);
  TEST(test_addr_text);
  return ct_report();
}
