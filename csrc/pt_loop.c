/*
 * pt_loop.c — event loop core: completions over a readiness back end.
 *
 * Layout
 *   1. ids, slots, the completion queue, timers (binary min-heap)
 *   2. back ends: epoll here (ep_*), io_uring in be/pt_uring.c (u_*),
 *      behind the be_* dispatchers
 *   3. sockets: resolve, options, listen, connect, accept
 *   4. conn I/O: read, write, close, backpressure
 *   5. the round: pt_loop_poll
 *
 * Invariants
 *   - A conn's memory is freed only by recycle(), which runs at the start of
 *     pt_loop_poll right after the deferred-send flush (so the dirty list is
 *     empty) and only when no completion is queued (so no queued or
 *     delivered event can name a freed conn). pt_loop_free is the other
 *     place.
 *   - close_conn() is idempotent; it takes the fd out of the back end,
 *     closes it and puts the conn on the dead list.
 *   - The back end never sees a closed fd.
 */
#define _GNU_SOURCE
#include "pt_loop.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif
#define PT_IOV_MAX (IOV_MAX < 1024 ? IOV_MAX : 1024)
#define PT_RD_IOV 8
#define PT_RD_MIN 4096u
#define PT_RD_MAX (1u << 20)
#define PT_RD_ROUNDS 8      /* readv calls per readiness at most */
#define PT_ACCEPT_BUDGET 128 /* accepts per readiness at most */
#define PT_LISTEN_BACKOFF_MS 100

#define PT_CF_WANT_DRAINED 0x800u /* a send left bytes queued */

#define PT_ZC_CHUNK (64u << 10)  /* copying fallbacks: bytes per step */
#define PT_PIPE_SZ (1u << 20)    /* splice pipe size asked for */
#define PT_SENDFILE_MAX 0x7ffff000u

/* A file queued on a conn's output (pt_conn_sendfile). */
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

/* A splice job from one conn to another (pt_conn_splice). */
typedef struct pt_spj {
  pt_conn *from, *to;
  int p[2];        /* the pipe; -1 in copy mode */
  int copy;        /* read + send through buf */
  int wait_out;    /* staged bytes wait for `to` */
  size_t want;     /* 0: until EOF */
  size_t moved;    /* bytes handed to `to` */
  size_t staged;   /* bytes in the pipe / buf */
  size_t cap;      /* pipe capacity or buf size */
  char *buf;
  size_t bpos;
  int wait_recv;   /* io_uring: the source's recv is still being cancelled */
} pt_spj;

/* readiness bits (back-end neutral) */
#define PT_R_IN 1u
#define PT_R_OUT 2u
#define PT_R_ERR 4u
#define PT_R_HUP 8u
/* interest bits */
#define PT_W_READ 1u
#define PT_W_WRITE 2u

/* ids: generation << 24 | slot, below 2^53 so a double holds them exactly */
#define SLOT_BITS 24
#define SLOT_MASK ((1u << SLOT_BITS) - 1)
#define GEN_MAX (1u << 29)
#define NO_SLOT UINT32_MAX
#define MKID(gen, slot) (((uint64_t)(gen) << SLOT_BITS) | (uint64_t)(slot))

enum { TK_USER, TK_CONNECT, TK_CLOSE, TK_LISTEN };

typedef struct pt_timer {
  int64_t deadline;
  uint64_t seq;
  uint32_t gen;
  int32_t pos; /* heap index; -1 when the slot is free */
  uint32_t next_free;
  int kind;
  pt_conn *conn;
} pt_timer;

typedef struct cslot {
  pt_conn *c;
  uint32_t gen;
  uint32_t next_free;
} cslot;

typedef struct ready {
  void *p;
  uint32_t m;
} ready;

struct pt_uring;

struct pt_loop {
  pt_pool *pool;
  struct pt_uring *ur; /* the io_uring back end, or NULL: epoll */
  char be_note[256];
  int own_pool;
  pt_buf pool_pin; /* keeps the pool alive while the loop lives */
  pt_loop_opts o;
  int epfd, wakefd, spare_fd;
  int wake_pending; /* atomic */
  int busy;         /* the last round produced completions */
  pid_t pid;        /* the process that made the loop */
  int forked;       /* being freed in a forked child: hands off the kernel
                       objects it shares with the parent */
  int64_t now;
  /* back end */
  struct epoll_event *eps;
  ready *rd;
  int rdcap;
  /* conns */
  cslot *cs;
  uint32_t ncs, cscap, cfree;
  pt_conn *dirty, *dead;
  /* timers */
  pt_timer *tm;
  uint32_t ntm, tmcap, tfree;
  uint32_t *heap;
  uint32_t nheap;
  uint64_t tseq;
  /* completions */
  pt_event *q;
  int qhead, qlen, qcap;
  pt_loop_stats st;
  struct iovec iov[PT_IOV_MAX];
  char err[256];
};

static int fail(pt_loop *l, int e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(pt_loop *l, int e, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(l->err, sizeof l->err, fmt, ap);
  va_end(ap);
  if (n >= 0 && (size_t)n < sizeof l->err)
    snprintf(l->err + n, sizeof l->err - (size_t)n, ": %s", strerror(e));
  errno = e;
  return -1;
}

const char *pt_loop_error(const pt_loop *l) { return l->err; }
const char *pt_loop_backend(const pt_loop *l) {
  return l->ur ? "io_uring" : "epoll";
}
const char *pt_loop_backend_note(const pt_loop *l) { return l->be_note; }
pt_pool *pt_loop_pool(const pt_loop *l) { return l->pool; }

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t pt_loop_now(pt_loop *l) { return l->now = mono_ms(); }

/* ---- 1. completion queue ------------------------------------------- */

static void push_ev(pt_loop *l, int type, int err, uint64_t id, uint64_t arg,
                    pt_conn *c) {
  if (l->qlen == l->qcap) {
    if (l->qhead > 0) {
      memmove(l->q, l->q + l->qhead,
              (size_t)(l->qlen - l->qhead) * sizeof *l->q);
      l->qlen -= l->qhead;
      l->qhead = 0;
    } else {
      int cap = l->qcap ? l->qcap * 2 : 256;
      pt_event *q = realloc(l->q, (size_t)cap * sizeof *q);
      if (!q) return; /* dropped: out of memory */
      l->q = q;
      l->qcap = cap;
    }
  }
  pt_event *e = &l->q[l->qlen++];
  e->type = type;
  e->err = err;
  e->id = id;
  e->arg = arg;
  e->conn = c;
}

static int deliver(pt_loop *l, pt_event *out, int max) {
  int k = 0;
  while (l->qhead < l->qlen && k < max) {
    pt_event *e = &l->q[l->qhead++];
    if (e->conn && (e->conn->flags & PT_CF_USER_CLOSED)) continue;
    out[k++] = *e;
  }
  if (l->qhead == l->qlen) l->qhead = l->qlen = 0;
  l->st.events += (uint64_t)k;
  return k;
}

/* ---- 1. conn slots ---------------------------------------------------- */

static int slot_alloc(pt_loop *l, pt_conn *c) {
  uint32_t s;
  if (l->cfree != NO_SLOT) {
    s = l->cfree;
    l->cfree = l->cs[s].next_free;
  } else {
    if (l->ncs == l->cscap) {
      uint32_t cap = l->cscap ? l->cscap * 2 : 64;
      if (cap > SLOT_MASK + 1u) cap = SLOT_MASK + 1u;
      if (cap == l->cscap) return -1;
      cslot *cs = realloc(l->cs, cap * sizeof *cs);
      if (!cs) return -1;
      l->cs = cs;
      l->cscap = cap;
    }
    s = l->ncs++;
    l->cs[s].gen = 1;
  }
  l->cs[s].c = c;
  c->id = MKID(l->cs[s].gen, s);
  return 0;
}

static void slot_free(pt_loop *l, uint64_t id) {
  uint32_t s = (uint32_t)(id & SLOT_MASK);
  cslot *sl = &l->cs[s];
  sl->c = NULL;
  if (++sl->gen >= GEN_MAX) sl->gen = 1;
  sl->next_free = l->cfree;
  l->cfree = s;
}

pt_conn *pt_loop_conn(pt_loop *l, uint64_t id) {
  uint32_t s = (uint32_t)(id & SLOT_MASK);
  if (s >= l->ncs || l->cs[s].gen != (uint32_t)(id >> SLOT_BITS)) return NULL;
  return l->cs[s].c;
}

/* ---- 1. timers: min-heap of slot indices ------------------------------ */

static inline int tless(const pt_loop *l, uint32_t a, uint32_t b) {
  const pt_timer *x = &l->tm[a], *y = &l->tm[b];
  return x->deadline < y->deadline ||
         (x->deadline == y->deadline && x->seq < y->seq);
}

static inline void hset(pt_loop *l, uint32_t i, uint32_t s) {
  l->heap[i] = s;
  l->tm[s].pos = (int32_t)i;
}

static void sift_up(pt_loop *l, uint32_t i) {
  uint32_t s = l->heap[i];
  while (i > 0) {
    uint32_t p = (i - 1) / 2;
    if (!tless(l, s, l->heap[p])) break;
    hset(l, i, l->heap[p]);
    i = p;
  }
  hset(l, i, s);
}

static void sift_down(pt_loop *l, uint32_t i) {
  uint32_t s = l->heap[i], n = l->nheap;
  for (;;) {
    uint32_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && tless(l, l->heap[c + 1], l->heap[c])) c++;
    if (!tless(l, l->heap[c], s)) break;
    hset(l, i, l->heap[c]);
    i = c;
  }
  hset(l, i, s);
}

static void heap_remove(pt_loop *l, uint32_t i) {
  uint32_t last = l->heap[--l->nheap];
  if (i < l->nheap) {
    hset(l, i, last);
    sift_down(l, i);
    sift_up(l, (uint32_t)l->tm[last].pos);
  }
}

static void tslot_free(pt_loop *l, uint32_t s) {
  pt_timer *t = &l->tm[s];
  t->pos = -1;
  t->conn = NULL;
  if (++t->gen >= GEN_MAX) t->gen = 1;
  t->next_free = l->tfree;
  l->tfree = s;
}

static uint64_t timer_add(pt_loop *l, int64_t ms, int kind, pt_conn *c) {
  uint32_t s;
  if (l->tfree == NO_SLOT && l->ntm == l->tmcap) {
    uint32_t cap = l->tmcap ? l->tmcap * 2 : 64;
    if (cap > SLOT_MASK + 1u) return 0;
    pt_timer *tm = realloc(l->tm, cap * sizeof *tm);
    if (!tm) return 0;
    l->tm = tm;
    uint32_t *h = realloc(l->heap, cap * sizeof *h);
    if (!h) return 0;
    l->heap = h;
    l->tmcap = cap;
  }
  if (l->tfree != NO_SLOT) {
    s = l->tfree;
    l->tfree = l->tm[s].next_free;
  } else {
    s = l->ntm++;
    l->tm[s].gen = 1;
  }
  pt_timer *t = &l->tm[s];
  if (ms < 0) ms = 0;
  t->deadline = l->now + ms;
  t->seq = ++l->tseq;
  t->kind = kind;
  t->conn = c;
  l->heap[l->nheap] = s;
  t->pos = (int32_t)l->nheap++;
  sift_up(l, (uint32_t)t->pos);
  if (kind == TK_USER) l->st.timers_active++;
  return MKID(t->gen, s);
}

static int timer_cancel(pt_loop *l, uint64_t id) {
  uint32_t s = (uint32_t)(id & SLOT_MASK);
  if (!id || s >= l->ntm) return -1;
  pt_timer *t = &l->tm[s];
  if (t->pos < 0 || t->gen != (uint32_t)(id >> SLOT_BITS)) return -1;
  if (t->kind == TK_USER) l->st.timers_active--;
  heap_remove(l, (uint32_t)t->pos);
  tslot_free(l, s);
  return 0;
}

uint64_t pt_loop_timer(pt_loop *l, int64_t ms) {
  l->now = mono_ms();
  uint64_t id = timer_add(l, ms, TK_USER, NULL);
  if (!id) fail(l, ENOMEM, "timer");
  return id;
}

int pt_loop_cancel(pt_loop *l, uint64_t id) {
  uint32_t s = (uint32_t)(id & SLOT_MASK);
  if (s < l->ntm && l->tm[s].kind != TK_USER) return -1;
  return timer_cancel(l, id);
}

/* ms until the next timer, bounded by timeout (-1: none) */
static int wait_timeout(pt_loop *l, int timeout) {
  if (!l->nheap) return timeout;
  int64_t d = l->tm[l->heap[0]].deadline - mono_ms();
  if (d < 0) d = 0;
  if (d > INT_MAX) d = INT_MAX;
  if (timeout < 0 || d < timeout) return (int)d;
  return timeout;
}

/* ---- 2. back end: epoll ------------------------------------------------
 * The seam: be_init, be_free, be_arm (interest on a conn), be_forget (conn
 * about to close), be_add_wake, be_round (wait, then dispatch). Under
 * io_uring, rearm() and write_now() hand conns to u_rearm / u_write, which
 * turn interest into requests. */

static int ep_init(pt_loop *l) {
  l->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (l->epfd < 0) return fail(l, errno, "epoll_create1");
  l->rdcap = l->o.max_events;
  l->eps = malloc((size_t)l->rdcap * sizeof *l->eps);
  l->rd = malloc((size_t)l->rdcap * sizeof *l->rd);
  if (!l->eps || !l->rd) return fail(l, ENOMEM, "loop");
  return 0;
}

static void ep_free(pt_loop *l) {
  if (l->epfd >= 0) close(l->epfd);
  free(l->eps);
  free(l->rd);
}

static int ep_arm(pt_loop *l, pt_conn *c, uint32_t want) {
  if (c->registered && c->armed == want) return 0;
  struct epoll_event ev;
  ev.events = (want & PT_W_READ ? EPOLLIN : 0) | (want & PT_W_WRITE ? EPOLLOUT : 0);
  ev.data.ptr = c;
  if (epoll_ctl(l->epfd, c->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd,
                &ev) != 0)
    return fail(l, errno, "epoll_ctl");
  c->registered = 1;
  c->armed = want;
  return 0;
}

static void ep_forget(pt_loop *l, pt_conn *c) {
  if (c->registered) epoll_ctl(l->epfd, EPOLL_CTL_DEL, c->fd, NULL);
  c->registered = 0;
  c->armed = 0;
}

static int ep_add_wake(pt_loop *l) {
  struct epoll_event ev;
  ev.events = EPOLLIN;
  ev.data.ptr = l; /* the loop itself marks the wake fd */
  if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->wakefd, &ev) != 0)
    return fail(l, errno, "epoll_ctl(eventfd)");
  return 0;
}

/* Wait up to timeout ms; readiness into l->rd; count, 0 on EINTR, -1. */
static int ep_wait(pt_loop *l, int timeout, int max) {
  if (max > l->rdcap) max = l->rdcap;
  int n = epoll_wait(l->epfd, l->eps, max, timeout);
  if (timeout == 0)
    l->st.wait_zero++;
  else
    l->st.wait_block++;
  if (n < 0) return errno == EINTR ? 0 : fail(l, errno, "epoll_wait");
  for (int i = 0; i < n; i++) {
    uint32_t e = l->eps[i].events, m = 0;
    if (e & EPOLLIN) m |= PT_R_IN;
    if (e & EPOLLOUT) m |= PT_R_OUT;
    if (e & EPOLLERR) m |= PT_R_ERR;
    if (e & EPOLLHUP) m |= PT_R_HUP;
    l->rd[i].p = l->eps[i].data.ptr;
    l->rd[i].m = m;
  }
  return n;
}

/* ---- 2. back end: io_uring (be/pt_uring.c) ----------------------------- */

static void close_conn(pt_conn *c, int err, int notify);
static int write_now(pt_conn *c);
static void rearm(pt_conn *c);
static void read_eof(pt_loop *l, pt_conn *c);
static void handle_conn(pt_loop *l, pt_conn *c, uint32_t m);
static void handle_wake(pt_loop *l);
static void closing_step(pt_conn *c);
static pt_conn *conn_new(pt_loop *l, int fd, int kind, int family);
static void set_opts(int fd, int family, const pt_sockopts *o);
static void accepted(pt_loop *l, pt_conn *lc, int fd, int family);
static int drop_pending(pt_loop *l, pt_conn *lc);
static void listen_backoff(pt_loop *l, pt_conn *lc);
static void spj_step(pt_loop *l, pt_spj *j);
static void spj_recv_done(pt_loop *l, pt_spj *j);
static int out_drained(pt_conn *c);

#include "be/pt_uring.c"

/* ---- 2. the seam ---------------------------------------------------------- */

static void be_free(pt_loop *l) {
  if (l->ur) u_free(l);
  ep_free(l);
}

static int be_arm(pt_loop *l, pt_conn *c, uint32_t want) {
  if (l->ur) {
    u_rearm(c);
    return 0;
  }
  return ep_arm(l, c, want);
}

static void be_forget(pt_loop *l, pt_conn *c) {
  if (l->ur)
    u_forget(l, c);
  else
    ep_forget(l, c);
}

static int be_add_wake(pt_loop *l) {
  return l->ur ? u_add_wake(l) : ep_add_wake(l);
}

static int handle_ready(pt_loop *l, int n);
static void run_timers(pt_loop *l);

/* Wait up to timeout ms, dispatch what happened, run due timers. Returns
 * the readiness events or completions seen, -1 if the poller failed. */
static int be_round(pt_loop *l, int timeout, int max) {
  if (l->ur) {
    int n = u_wait(l, timeout);
    if (n < 0) return -1;
    run_timers(l);
    return n;
  }
  int n = ep_wait(l, timeout, max);
  if (n < 0) return -1;
  return handle_ready(l, n);
}

/* ---- 3. sockets -------------------------------------------------------- */

static void spj_end(pt_loop *l, pt_spj *j, int err);
static void fjobs_free(pt_conn *c);

/* output not yet written: queued, in a file job, or in flight (io_uring) */
static inline int has_out(const pt_conn *c) {
  return pt_buf_len(c->out) || c->fjob || pt_buf_len(&c->tx);
}

/* Interest follows the flags; on failure the conn closes with the error. */
static void rearm(pt_conn *c) {
  if (c->flags & PT_CF_CLOSED) return;
  if (c->loop->ur) {
    u_rearm(c);
    return;
  }
  uint32_t want = 0;
  if (c->kind == PT_KIND_LISTENER) {
    if (!(c->flags & PT_CF_LISTEN_OFF)) want = PT_W_READ;
  } else if (c->flags & PT_CF_CONNECTING) {
    want = PT_W_WRITE;
  } else {
    if (c->spj_in) {
      /* a splice source reads into its pipe, not c->in */
      if (!c->spj_in->wait_out &&
          !(c->flags & (PT_CF_RD_EOF | PT_CF_CLOSING)))
        want |= PT_W_READ;
    } else if (!(c->flags & (PT_CF_RD_PAUSED | PT_CF_RD_EOF | PT_CF_CLOSING))) {
      want |= PT_W_READ;
    }
    if ((c->flags & PT_CF_WR_PENDING) || (c->spj_out && c->spj_out->wait_out))
      want |= PT_W_WRITE;
  }
  if (be_arm(c->loop, c, want) != 0) close_conn(c, errno, 1);
}

static int resolve(pt_loop *l, const char *host, int port, int passive,
                   struct sockaddr_storage *ss, socklen_t *len) {
  memset(ss, 0, sizeof *ss);
  if (!host) host = "";
  if (strncmp(host, "unix:", 5) == 0) {
    const char *path = host + 5;
    struct sockaddr_un *su = (struct sockaddr_un *)ss;
    size_t n = strlen(path);
    if (n == 0) return fail(l, EINVAL, "empty unix socket path");
    if (n >= sizeof su->sun_path)
      return fail(l, ENAMETOOLONG, "unix socket path '%s'", path);
    su->sun_family = AF_UNIX;
    memcpy(su->sun_path, path, n);
    if (path[0] == '@') su->sun_path[0] = '\0'; /* abstract namespace */
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n +
                       (path[0] == '@' ? 0 : 1));
    return 0;
  }
  if (port < 0 || port > 65535) return fail(l, EINVAL, "port %d", port);
  char h[INET6_ADDRSTRLEN + 16];
  size_t hn = strlen(host);
  if (hn >= sizeof h) return fail(l, EINVAL, "address '%.64s'", host);
  if (hn >= 2 && host[0] == '[' && host[hn - 1] == ']') {
    memcpy(h, host + 1, hn - 2);
    h[hn - 2] = '\0';
  } else {
    memcpy(h, host, hn + 1);
  }
  if (!h[0] || strcmp(h, "*") == 0) {
    if (!passive) return fail(l, EINVAL, "connect: no address");
    strcpy(h, "0.0.0.0");
  }
  if (strcasecmp(h, "localhost") == 0) strcpy(h, "127.0.0.1");
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  int r = getaddrinfo(h, NULL, &hints, &res);
  if (r != 0 || !res) {
    snprintf(l->err, sizeof l->err, "address '%s': %s (numeric only)", h,
             gai_strerror(r));
    errno = EINVAL;
    return -1;
  }
  memcpy(ss, res->ai_addr, res->ai_addrlen);
  *len = res->ai_addrlen;
  freeaddrinfo(res);
  if (ss->ss_family == AF_INET)
    ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
  else
    ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
  return 0;
}

static void set_opts(int fd, int family, const pt_sockopts *o) {
  int one = 1, v;
  if (family != AF_UNIX && (!o || o->nodelay >= 0))
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (!o) return;
  if (o->keepalive > 0) setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  if (o->sndbuf > 0) {
    v = o->sndbuf;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
  }
  if (o->rcvbuf > 0) {
    v = o->rcvbuf;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
  }
}

static pt_conn *conn_new(pt_loop *l, int fd, int kind, int family) {
  pt_conn *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  if (slot_alloc(l, c) != 0) {
    free(c);
    return NULL;
  }
  c->fd = fd;
  c->kind = kind;
  c->family = family;
  c->loop = l;
  if (family == AF_UNIX) c->flags |= PT_CF_UNIX;
  pt_buf_init(&c->in_own, l->pool);
  pt_buf_init(&c->out_own, l->pool);
  pt_buf_init(&c->tx, l->pool);
  c->in = &c->in_own;
  c->out = &c->out_own;
  c->in_cap = l->o.in_cap;
  c->out_cap = l->o.out_cap;
  c->rd_hint = PT_BLOCK_DEFAULT;
  if (kind == PT_KIND_LISTENER)
    l->st.listeners_open++;
  else
    l->st.conns_open++;
  return c;
}

static void addr_text(const struct sockaddr_storage *ss, socklen_t len,
                      char *buf, size_t n) {
  char h[INET6_ADDRSTRLEN];
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *s = (const void *)ss;
    inet_ntop(AF_INET, &s->sin_addr, h, sizeof h);
    snprintf(buf, n, "%s:%d", h, ntohs(s->sin_port));
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *s = (const void *)ss;
    inet_ntop(AF_INET6, &s->sin6_addr, h, sizeof h);
    snprintf(buf, n, "[%s]:%d", h, ntohs(s->sin6_port));
  } else if (ss->ss_family == AF_UNIX) {
    const struct sockaddr_un *s = (const void *)ss;
    size_t plen = len > offsetof(struct sockaddr_un, sun_path)
                      ? len - offsetof(struct sockaddr_un, sun_path)
                      : 0;
    if (plen && s->sun_path[0] == '\0') /* abstract */
      snprintf(buf, n, "unix:@%.*s", (int)(plen - 1), s->sun_path + 1);
    else
      snprintf(buf, n, "unix:%.*s", (int)strnlen(s->sun_path, plen),
               s->sun_path);
  } else {
    snprintf(buf, n, "?");
  }
}

int pt_conn_addr(const pt_conn *c, int peer, char *buf, size_t n) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (!n) return -1;
  buf[0] = '\0';
  if (c->fd < 0) {
    errno = EBADF;
    return -1;
  }
  memset(&ss, 0, sizeof ss);
  int r = peer ? getpeername(c->fd, (struct sockaddr *)&ss, &len)
               : getsockname(c->fd, (struct sockaddr *)&ss, &len);
  if (r != 0) return -1;
  addr_text(&ss, len, buf, n);
  return 0;
}

int pt_conn_port(const pt_conn *c) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (c->fd < 0 || getsockname(c->fd, (struct sockaddr *)&ss, &len) != 0)
    return -1;
  if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
  if (ss.ss_family == AF_INET6)
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return -1;
}

pt_conn *pt_listen(pt_loop *l, const char *host, int port, int backlog,
                   const pt_sockopts *o) {
  struct sockaddr_storage ss;
  socklen_t len;
  if (resolve(l, host, port, 1, &ss, &len) != 0) return NULL;
  int fam = ss.ss_family;
  int fd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    fail(l, errno, "socket");
    return NULL;
  }
  int one = 1;
  const char *path = NULL;
  if (fam == AF_UNIX) {
    const struct sockaddr_un *su = (const void *)&ss;
    if (su->sun_path[0]) {
      struct stat st;
      path = su->sun_path;
      if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) unlink(path);
    }
  } else {
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (o && o->reuseport &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
      fail(l, errno, "SO_REUSEPORT");
      goto bad;
    }
    if (o && o->rcvbuf > 0)
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &o->rcvbuf, sizeof o->rcvbuf);
  }
  if (bind(fd, (struct sockaddr *)&ss, len) != 0) {
    if (fam == AF_UNIX)
      fail(l, errno, "bind %s", host);
    else
      fail(l, errno, "bind %s:%d", host ? host : "*", port);
    path = NULL; /* not ours to unlink */
    goto bad;
  }
  if (listen(fd, backlog < 0 ? SOMAXCONN : backlog) != 0) {
    fail(l, errno, "listen");
    goto bad;
  }
  pt_conn *c = conn_new(l, fd, PT_KIND_LISTENER, fam);
  if (!c) {
    fail(l, ENOMEM, "listen");
    goto bad;
  }
  if (o) c->lopts = *o;
  if (path) c->unix_path = strdup(path);
  if (be_arm(l, c, PT_W_READ) != 0) {
    int e = errno;
    c->flags |= PT_CF_USER_CLOSED;
    close_conn(c, e, 0);
    errno = e;
    return NULL;
  }
  return c;
bad : {
  int e = errno;
  close(fd);
  if (path) unlink(path);
  errno = e;
  return NULL;
}
}

static int sock_error(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
  return err;
}

static void connect_done(pt_conn *c, int err) {
  pt_loop *l = c->loop;
  if (c->timer) {
    timer_cancel(l, c->timer);
    c->timer = 0;
  }
  push_ev(l, PT_EV_CONNECTED, err, c->id, 0, c);
  if (err) {
    close_conn(c, err, 0);
    return;
  }
  c->flags &= ~PT_CF_CONNECTING;
  l->st.connected++;
  /* interest changes from "writable" (connecting) to "readable" whether
   * or not queued output leaves at once */
  if (has_out(c) && write_now(c) < 0) return;
  rearm(c);
}

pt_conn *pt_connect(pt_loop *l, const char *host, int port, int timeout_ms,
                    const pt_sockopts *o) {
  struct sockaddr_storage ss;
  socklen_t len;
  if (resolve(l, host, port, 0, &ss, &len) != 0) return NULL;
  int fam = ss.ss_family;
  int fd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    fail(l, errno, "socket");
    return NULL;
  }
  set_opts(fd, fam, o);
  pt_conn *c = conn_new(l, fd, PT_KIND_STREAM, fam);
  if (!c) {
    close(fd);
    fail(l, ENOMEM, "connect");
    return NULL;
  }
  l->now = mono_ms();
  int r = connect(fd, (struct sockaddr *)&ss, len);
  if (r == 0) {
    connect_done(c, 0);
  } else if (errno == EINPROGRESS || errno == EINTR) { /* EINTR: async */
    c->flags |= PT_CF_CONNECTING;
    rearm(c);
    if (timeout_ms > 0 && !(c->flags & PT_CF_CLOSED))
      c->timer = timer_add(l, timeout_ms, TK_CONNECT, c);
  } else {
    connect_done(c, errno);
  }
  return c;
}

/* fd came from accepting on lc: its conn and ACCEPTED (dropped on ENOMEM). */
static void accepted(pt_loop *l, pt_conn *lc, int fd, int family) {
  pt_conn *c = conn_new(l, fd, PT_KIND_STREAM, family);
  if (!c) {
    close(fd);
    l->st.accept_dropped++;
    return;
  }
  set_opts(fd, family, &lc->lopts);
  l->st.accepted++;
  push_ev(l, PT_EV_ACCEPTED, 0, c->id, lc->id, c);
  rearm(c);
}

/* Out of fds: take one pending connection with the spare fd and drop it.
 * 1 if one was dropped and the spare is back. */
static int drop_pending(pt_loop *l, pt_conn *lc) {
  if (l->spare_fd < 0) return 0;
  close(l->spare_fd);
  l->spare_fd = -1;
  int d = accept(lc->fd, NULL, NULL);
  if (d >= 0) {
    close(d);
    l->st.accept_dropped++;
  }
  l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  return d >= 0 && l->spare_fd >= 0;
}

/* Stop accepting on lc for PT_LISTEN_BACKOFF_MS. */
static void listen_backoff(pt_loop *l, pt_conn *lc) {
  lc->flags |= PT_CF_LISTEN_OFF;
  rearm(lc);
  if (!lc->timer) lc->timer = timer_add(l, PT_LISTEN_BACKOFF_MS, TK_LISTEN, lc);
}

static void do_accept(pt_loop *l, pt_conn *lc) {
  for (int i = 0; i < PT_ACCEPT_BUDGET; i++) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int fd = accept4(lc->fd, (struct sockaddr *)&ss, &len,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      int e = errno;
      if (e == EINTR || e == ECONNABORTED || e == EPROTO) continue;
      if (e == EAGAIN || e == EWOULDBLOCK) return;
      if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
        /* Out of fds: drop the pending connection, so a level-triggered
         * listener does not spin; no spare: stop listening for a while. */
        if (drop_pending(l, lc)) continue;
        listen_backoff(l, lc);
        return;
      }
      return; /* other errors: try again on the next readiness */
    }
    accepted(l, lc, fd, ss.ss_family);
  }
}

/* ---- 4. conn I/O ---------------------------------------------------------- */

static void close_conn(pt_conn *c, int err, int notify) {
  pt_loop *l = c->loop;
  if (c->flags & PT_CF_CLOSED) return;
  if (c->timer) {
    timer_cancel(l, c->timer);
    c->timer = 0;
  }
  if (notify && !(c->flags & PT_CF_NOTIFIED))
    push_ev(l, PT_EV_CLOSED, err, c->id, 0, c);
  c->flags |= PT_CF_CLOSED | PT_CF_NOTIFIED;
  c->flags &= ~(PT_CF_CONNECTING | PT_CF_WR_PENDING | PT_CF_CLOSING |
                PT_CF_WANT_DRAINED);
  /* a forked child's copy must not touch what it shares with the parent
   * (epoll interest, ring requests, the socket file) */
  if (!l->forked) be_forget(l, c);
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  if (c->unix_path) {
    if (!l->forked) unlink(c->unix_path);
    free(c->unix_path);
    c->unix_path = NULL;
  }
  fjobs_free(c);
  if (c->spj_in) spj_end(l, c->spj_in, err ? err : EPIPE);
  if (c->spj_out) spj_end(l, c->spj_out, err ? err : EPIPE);
  if (c->kind == PT_KIND_LISTENER) {
    l->st.listeners_open--;
  } else {
    l->st.conns_open--;
    l->st.closed++;
  }
  c->next_dead = l->dead;
  l->dead = c;
}

static void conn_free(pt_loop *l, pt_conn *c) {
  if (l->o.on_release) l->o.on_release(l->o.ctx, c);
  slot_free(l, c->id);
  pt_buf_free(&c->in_own);
  pt_buf_free(&c->out_own);
  pt_buf_free(&c->tx);
  free(c->us);
  free(c);
  l->st.recycled++;
}

/* Free the dead conns; under io_uring only those the kernel is done with
 * (force: all, at teardown once the ring is drained). */
static void recycle(pt_loop *l, int force) {
  pt_conn **pp = &l->dead, *c;
  while ((c = *pp)) {
    if (c->uops && !force) {
      pp = &c->next_dead;
      continue;
    }
    *pp = c->next_dead;
    conn_free(l, c);
  }
}

/* Half-close: stop reading, flush the replies of this batch at the start
 * of the next round, then close. */
static void read_eof(pt_loop *l, pt_conn *c) {
  push_ev(l, PT_EV_CLOSED, 0, c->id, 0, c);
  c->flags |= PT_CF_RD_EOF | PT_CF_CLOSING | PT_CF_NOTIFIED;
  if (!(c->flags & PT_CF_DIRTY)) {
    c->flags |= PT_CF_DIRTY;
    c->next_dirty = l->dirty;
    l->dirty = c;
  }
  rearm(c);
}

/* Read what the socket has (bounded): DATA, then CLOSED on EOF / error. */
static void do_read(pt_loop *l, pt_conn *c) {
  pt_buf *in = c->in;
  size_t got = 0;
  int err = 0, eof = 0;
  for (int round = 0; round < PT_RD_ROUNDS; round++) {
    size_t want = c->rd_hint;
    if (c->in_cap) {
      size_t have = pt_buf_len(in);
      if (have >= c->in_cap) break;
      if (want > c->in_cap - have) want = c->in_cap - have;
    }
    struct iovec iov[PT_RD_IOV];
    int k = pt_buf_reserve_iov(in, want, iov, PT_RD_IOV);
    if (k < 0) {
      err = ENOMEM;
      break;
    }
    size_t total = 0;
    for (int i = 0; i < k; i++) {
      if (total + iov[i].iov_len > want) {
        iov[i].iov_len = want - total;
        k = i + 1;
      }
      total += iov[i].iov_len;
    }
    ssize_t r = readv(c->fd, iov, k);
    l->st.readv_calls++;
    if (r > 0) {
      pt_buf_commit_iov(in, (size_t)r);
      got += (size_t)r;
      l->st.bytes_in += (uint64_t)r;
      if ((size_t)r == total) {
        if (c->rd_hint < PT_RD_MAX) c->rd_hint *= 2;
        continue;
      }
      if ((size_t)r < c->rd_hint / 4 && c->rd_hint > PT_RD_MIN) c->rd_hint /= 2;
      break;
    }
    pt_buf_commit_iov(in, 0);
    if (r == 0) {
      eof = 1;
    } else if (errno == EINTR) {
      continue;
    } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
      err = errno;
    }
    break;
  }
  if (got) push_ev(l, PT_EV_DATA, 0, c->id, got, c);
  if (err) {
    close_conn(c, err, 1);
    return;
  }
  if (eof) {
    read_eof(l, c);
    return;
  }
  if (c->in_cap && pt_buf_len(in) >= c->in_cap &&
      !(c->flags & PT_CF_RD_PAUSED)) {
    c->flags |= PT_CF_RD_PAUSED;
    l->st.rd_paused++;
    rearm(c);
  }
}

/* sendmsg up to limit bytes of the output: 0 all (of the limit) written,
 * 1 socket full, -1 error (errno). */
static int do_write(pt_loop *l, pt_conn *c, size_t limit) {
  pt_buf *out = c->out;
  while (pt_buf_len(out) && limit) {
    int n = pt_buf_iov(out, l->iov, PT_IOV_MAX, limit);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += l->iov[i].iov_len;
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = l->iov;
    msg.msg_iovlen = (size_t)n;
    ssize_t r = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    l->st.writev_calls++;
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 1;
      return -1;
    }
    pt_buf_skip(out, (size_t)r);
    l->st.bytes_out += (uint64_t)r;
    if (limit != SIZE_MAX) limit -= (size_t)r;
    if ((size_t)r < total) return 1;
  }
  return 0;
}

/* ---- 4. file jobs (sendfile) ------------------------------------------ */

static void fjob_free(pt_fjob *j) {
  if (j->fd >= 0) close(j->fd);
  free(j->buf);
  free(j);
}

static void fjobs_free(pt_conn *c) {
  pt_fjob *j;
  while ((j = c->fjob)) {
    c->fjob = j->next;
    fjob_free(j);
  }
}

/* Write the file: 0 done, 1 socket full, -1 error (errno). */
static int fjob_step(pt_loop *l, pt_conn *c, pt_fjob *j) {
  for (;;) {
    if (j->bpos < j->blen) {
      ssize_t r = send(c->fd, j->buf + j->bpos, j->blen - j->bpos,
                       MSG_NOSIGNAL | MSG_DONTWAIT);
      l->st.writev_calls++;
      if (r < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 1;
        return -1;
      }
      j->bpos += (size_t)r;
      l->st.bytes_out += (uint64_t)r;
      continue;
    }
    if (!j->left) return 0;
    if (!j->copy) {
      size_t n = j->left < PT_SENDFILE_MAX ? j->left : PT_SENDFILE_MAX;
      ssize_t r = sendfile(c->fd, j->fd, &j->off, n);
      l->st.writev_calls++;
      if (r > 0) {
        j->left -= (size_t)r;
        l->st.bytes_out += (uint64_t)r;
        continue;
      }
      if (r == 0) { /* end of file */
        j->left = 0;
        return 0;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 1;
      if (errno != EINVAL && errno != ENOSYS) return -1;
      j->copy = 1; /* not for this pair of fds: copy */
    }
    if (!j->buf && !(j->buf = malloc(PT_ZC_CHUNK))) {
      errno = ENOMEM;
      return -1;
    }
    size_t n = j->left < PT_ZC_CHUNK ? j->left : PT_ZC_CHUNK;
    ssize_t r = j->noseek ? read(j->fd, j->buf, n)
                          : pread(j->fd, j->buf, n, j->off);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == ESPIPE && !j->noseek) {
        j->noseek = 1;
        continue;
      }
      return -1;
    }
    if (r == 0) {
      j->left = 0;
      return 0;
    }
    j->off += r;
    j->left -= (size_t)r;
    j->bpos = 0;
    j->blen = (size_t)r;
  }
}

/* The output, then each file after the output bytes queued before it:
 * 0 all written, 1 socket full, -1 error (errno). */
static int out_step(pt_loop *l, pt_conn *c) {
  pt_fjob *j;
  while ((j = c->fjob)) {
    if (j->pre) {
      size_t before = pt_buf_len(c->out);
      int r = do_write(l, c, j->pre);
      size_t done = before - pt_buf_len(c->out);
      j->pre = done < j->pre ? j->pre - done : 0;
      if (r) return r;
      if (!pt_buf_len(c->out)) j->pre = 0;
    }
    int r = fjob_step(l, c, j);
    if (r) return r;
    c->fjob = j->next;
    fjob_free(j);
  }
  return do_write(l, c, SIZE_MAX);
}

int pt_conn_sendfile(pt_conn *c, int fd, off_t off, size_t len) {
  if (c->kind != PT_KIND_STREAM || (c->flags & (PT_CF_CLOSED | PT_CF_USER_CLOSED))) {
    errno = c->kind != PT_KIND_STREAM ? ENOTCONN : EPIPE;
    return -1;
  }
  if (off < 0) {
    errno = EINVAL;
    return -1;
  }
  pt_fjob *j = calloc(1, sizeof *j);
  if (!j) return -1;
  j->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (j->fd < 0) {
    int e = errno;
    free(j);
    errno = e;
    return -1;
  }
  j->off = off;
  j->left = len;
  j->copy = (c->loop->o.zc_off & PT_ZC_NO_SENDFILE) != 0;
  size_t ahead = 0;
  pt_fjob **tail = &c->fjob;
  while (*tail) {
    ahead += (*tail)->pre;
    tail = &(*tail)->next;
  }
  size_t have = pt_buf_len(c->out);
  j->pre = have > ahead ? have - ahead : 0;
  *tail = j;
  c->flags |= PT_CF_WANT_DRAINED; /* DRAINED follows in any case */
  if (c->flags & (PT_CF_CONNECTING | PT_CF_WR_PENDING)) return 0;
  return write_now(c) < 0 ? -1 : 0;
}

/* Write now and keep interest in step: PT_SEND_DONE/PENDING, or -1 with
 * the conn closed (CLOSED queued). */
static int write_now(pt_conn *c) {
  pt_loop *l = c->loop;
  /* io_uring: plain output goes through send requests; file and splice
   * jobs keep the readiness-driven steps */
  if (l->ur && !c->fjob && !c->spj_out) return u_write(c);
  int r = out_step(l, c);
  if (r < 0) {
    int e = errno;
    close_conn(c, e, 1);
    errno = e;
    return -1;
  }
  if (r == 1) {
    c->flags |= PT_CF_WANT_DRAINED;
    if (!(c->flags & PT_CF_WR_PENDING)) {
      c->flags |= PT_CF_WR_PENDING;
      rearm(c);
    }
    return PT_SEND_PENDING;
  }
  return out_drained(c);
}

/* Everything queued is written: writability interest goes, DRAINED if a
 * send said pending. PT_SEND_DONE. */
static int out_drained(pt_conn *c) {
  if (c->flags & PT_CF_WR_PENDING) {
    c->flags &= ~PT_CF_WR_PENDING;
    rearm(c);
  }
  if ((c->flags & PT_CF_WANT_DRAINED) && !(c->flags & PT_CF_CLOSING)) {
    c->flags &= ~PT_CF_WANT_DRAINED;
    push_ev(c->loop, PT_EV_DRAINED, 0, c->id, 0, c);
  }
  return PT_SEND_DONE;
}

static inline int over_cap(const pt_conn *c) {
  return c->out_cap && pt_buf_len(c->out) + pt_buf_len(&c->tx) > c->out_cap;
}

int pt_conn_send(pt_conn *c) {
  if (c->kind != PT_KIND_STREAM || (c->flags & PT_CF_CLOSED)) {
    errno = c->kind != PT_KIND_STREAM ? ENOTCONN : EPIPE;
    return -1;
  }
  if (c->flags & (PT_CF_CONNECTING | PT_CF_WR_PENDING)) {
    if (pt_buf_len(c->out)) c->flags |= PT_CF_WANT_DRAINED;
    return over_cap(c) ? PT_SEND_OVER : PT_SEND_PENDING;
  }
  if (!has_out(c)) return PT_SEND_DONE;
  int r = write_now(c);
  if (r == PT_SEND_PENDING) c->flags |= PT_CF_WANT_DRAINED;
  if (r == PT_SEND_PENDING && over_cap(c)) return PT_SEND_OVER;
  return r;
}

int pt_conn_send_later(pt_conn *c) {
  if (c->kind != PT_KIND_STREAM || (c->flags & PT_CF_CLOSED)) {
    errno = c->kind != PT_KIND_STREAM ? ENOTCONN : EPIPE;
    return -1;
  }
  if (!(c->flags & PT_CF_DIRTY)) {
    pt_loop *l = c->loop;
    c->flags |= PT_CF_DIRTY;
    c->next_dirty = l->dirty;
    l->dirty = c;
  }
  return over_cap(c) ? PT_SEND_OVER : PT_SEND_DONE;
}

/* Output drained or not, a closing conn either closes now or waits for
 * writability, bounded by the close timeout. */
static void closing_step(pt_conn *c) {
  pt_loop *l = c->loop;
  if ((c->flags & PT_CF_CLOSED) || !(c->flags & PT_CF_CLOSING)) return;
  if (!has_out(c) && !(c->flags & PT_CF_WR_PENDING)) {
    close_conn(c, 0, 1);
    return;
  }
  if (!c->timer) {
    l->now = mono_ms();
    c->timer = timer_add(l, l->o.close_timeout_ms, TK_CLOSE, c);
  }
}

void pt_loop_flush(pt_loop *l) {
  pt_conn *c;
  while ((c = l->dirty)) {
    l->dirty = c->next_dirty;
    c->next_dirty = NULL;
    c->flags &= ~PT_CF_DIRTY;
    if (c->flags & PT_CF_CLOSED) continue;
    if (!(c->flags & (PT_CF_CONNECTING | PT_CF_WR_PENDING)) && has_out(c)) {
      if (write_now(c) < 0) continue;
    }
    closing_step(c);
  }
}

void pt_conn_consumed(pt_conn *c) {
  if ((c->flags & PT_CF_RD_PAUSED) &&
      (!c->in_cap || pt_buf_len(c->in) < c->in_cap)) {
    c->flags &= ~PT_CF_RD_PAUSED;
    rearm(c);
  }
}

void pt_conn_set_caps(pt_conn *c, size_t in_cap, size_t out_cap) {
  c->in_cap = in_cap;
  c->out_cap = out_cap;
  pt_conn_consumed(c);
}

void pt_conn_set_bufs(pt_conn *c, pt_buf *in, pt_buf *out) {
  if (in && in != c->in) {
    pt_buf_move(in, c->in);
    c->in = in;
  }
  if (out && out != c->out) {
    pt_buf_move(out, c->out);
    c->out = out;
  }
}

void pt_conn_close(pt_conn *c, int flush) {
  if (c->flags & PT_CF_CLOSED) return;
  c->flags |= PT_CF_USER_CLOSED | PT_CF_NOTIFIED;
  if (!flush || c->kind != PT_KIND_STREAM || (c->flags & PT_CF_CONNECTING)) {
    close_conn(c, 0, 0);
    return;
  }
  c->flags |= PT_CF_CLOSING;
  if (has_out(c) && !(c->flags & PT_CF_WR_PENDING) && write_now(c) < 0)
    return;
  rearm(c); /* stop reading */
  closing_step(c);
}

void pt_loop_close_all(pt_loop *l) {
  for (uint32_t s = 0; s < l->ncs; s++) {
    pt_conn *c = l->cs[s].c;
    if (c && !(c->flags & PT_CF_CLOSED)) {
      c->flags |= PT_CF_USER_CLOSED;
      close_conn(c, 0, 0);
    }
  }
}

/* ---- 5. the round ------------------------------------------------------- */

static void handle_wake(pt_loop *l) {
  uint64_t v;
  __atomic_store_n(&l->wake_pending, 0, __ATOMIC_SEQ_CST);
  while (read(l->wakefd, &v, sizeof v) < 0 && errno == EINTR) {
  }
  l->st.wakeups++;
  push_ev(l, PT_EV_WAKE, 0, 0, 0, NULL);
}

void pt_loop_wake(pt_loop *l) {
  if (__atomic_exchange_n(&l->wake_pending, 1, __ATOMIC_SEQ_CST) == 0) {
    uint64_t one = 1;
    while (write(l->wakefd, &one, sizeof one) < 0 && errno == EINTR) {
    }
  }
}

/* ---- 4. splice jobs ------------------------------------------------------ */

static void spj_free(pt_spj *j) {
  if (j->p[0] >= 0) close(j->p[0]);
  if (j->p[1] >= 0) close(j->p[1]);
  free(j->buf);
  free(j);
}

/* End the job: SPLICED, detach, the conns go back to their own I/O. */
static void spj_end(pt_loop *l, pt_spj *j, int err) {
  pt_conn *from = j->from, *to = j->to;
  from->spj_in = NULL;
  to->spj_out = NULL;
  /* conn NULL: delivered even when the user closed a side (waiters) */
  push_ev(l, PT_EV_SPLICED, err, from->id, j->moved, NULL);
  spj_free(j);
  rearm(from); /* no-ops on closed conns */
  rearm(to);
}

/* Copy mode from now on: what the pipe holds moves into buf. */
static int spj_to_copy(pt_spj *j) {
  size_t cap = j->staged > PT_ZC_CHUNK ? j->staged : PT_ZC_CHUNK;
  char *b = malloc(cap);
  if (!b) return -1;
  size_t got = 0;
  while (got < j->staged) {
    ssize_t r = read(j->p[0], b + got, j->staged - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      free(b);
      if (r == 0) errno = EIO;
      return -1;
    }
    got += (size_t)r;
  }
  close(j->p[0]);
  close(j->p[1]);
  j->p[0] = j->p[1] = -1;
  j->buf = b;
  j->bpos = 0;
  j->cap = cap;
  j->copy = 1;
  return 0;
}

/* Move what can move now: staged bytes to `to` (after to's own output),
 * then more from `from`; park on readability of `from` or writability of
 * `to`, or end the job. */
static void spj_step(pt_loop *l, pt_spj *j) {
  pt_conn *from = j->from, *to = j->to, *bad = NULL;
  int err = 0, eof = 0;
  j->wait_out = 0;
  for (;;) {
    while (j->staged) {
      if (has_out(to) && !(to->flags & PT_CF_WR_PENDING)) {
        /* to's own queued output goes first; a failure closes `to`,
         * which ends this job */
        if (write_now(to) < 0) return;
      }
      if (has_out(to) || (to->flags & PT_CF_WR_PENDING)) {
        j->wait_out = 1;
        goto park;
      }
      ssize_t r;
      if (j->copy)
        r = send(to->fd, j->buf + j->bpos, j->staged,
                 MSG_NOSIGNAL | MSG_DONTWAIT);
      else
        r = splice(j->p[0], NULL, to->fd, NULL, j->staged,
                   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      l->st.writev_calls++;
      if (r > 0) {
        j->staged -= (size_t)r;
        j->moved += (size_t)r;
        if (j->copy) j->bpos += (size_t)r;
        l->st.bytes_out += (uint64_t)r;
        continue;
      }
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        j->wait_out = 1;
        goto park;
      }
      if (r < 0 && errno == EINVAL && !j->copy) {
        if (spj_to_copy(j) == 0) continue;
      }
      err = r < 0 ? errno : EIO;
      bad = to;
      goto end;
    }
    if (eof || (j->want && j->moved >= j->want)) goto end;
    if (j->wait_recv) goto park; /* io_uring: the recv may still deliver */
    size_t n = j->want ? j->want - j->moved : j->cap;
    if (n > j->cap) n = j->cap;
    ssize_t r;
    if (j->copy)
      r = read(from->fd, j->buf, n);
    else
      r = splice(from->fd, NULL, j->p[1], NULL, n,
                 SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    l->st.readv_calls++;
    if (r > 0) {
      j->staged = (size_t)r;
      j->bpos = 0;
      l->st.bytes_in += (uint64_t)r;
      continue;
    }
    if (r == 0) {
      eof = 1;
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) goto park;
    if (errno == EINVAL && !j->copy) {
      if (spj_to_copy(j) == 0) continue;
    }
    err = errno;
    bad = from;
    goto end;
  }
park:
  rearm(from);
  rearm(to);
  return;
end:
  spj_end(l, j, err);
  if (bad) {
    close_conn(bad, err, 1);
  } else if (eof) {
    read_eof(l, from);
  }
}

int pt_conn_splice(pt_conn *from, pt_conn *to, size_t len) {
  pt_loop *l = from->loop;
  if (from->kind != PT_KIND_STREAM || to->kind != PT_KIND_STREAM ||
      (from->flags & PT_CF_CONNECTING) || (to->flags & PT_CF_CONNECTING)) {
    errno = ENOTCONN;
    return -1;
  }
  if (from == to || to->loop != l) {
    errno = EINVAL;
    return -1;
  }
  if ((from->flags | to->flags) & (PT_CF_CLOSED | PT_CF_CLOSING)) {
    errno = EPIPE;
    return -1;
  }
  if (from->spj_in || to->spj_out) {
    errno = EBUSY;
    return -1;
  }
  pt_spj *j = calloc(1, sizeof *j);
  if (!j) return -1;
  j->p[0] = j->p[1] = -1;
  j->from = from;
  j->to = to;
  j->want = len;
  if (!(l->o.zc_off & PT_ZC_NO_SPLICE)) {
    if (pipe2(j->p, O_NONBLOCK | O_CLOEXEC) != 0) {
      int e = errno;
      free(j);
      errno = e;
      return -1;
    }
    fcntl(j->p[1], F_SETPIPE_SZ, (int)PT_PIPE_SZ); /* best effort */
    int sz = fcntl(j->p[1], F_GETPIPE_SZ);
    j->cap = sz > 0 ? (size_t)sz : 65536u;
  } else {
    j->copy = 1;
    j->cap = PT_ZC_CHUNK;
    if (!(j->buf = malloc(j->cap))) {
      free(j);
      errno = ENOMEM;
      return -1;
    }
  }
  /* bytes `from` already read go first */
  size_t have = pt_buf_len(from->in);
  if (have) {
    size_t k = len && len < have ? len : have;
    if (k == have) {
      pt_buf_move(to->out, from->in);
    } else if (pt_buf_slice(from->in, k, to->out) != 0) {
      spj_free(j);
      errno = ENOMEM;
      return -1;
    }
    j->moved = k;
    if (!(to->flags & PT_CF_WR_PENDING) && write_now(to) < 0) {
      int e = errno;
      spj_free(j);
      errno = e;
      return -1;
    }
  }
  from->flags &= ~PT_CF_RD_PAUSED;
  from->spj_in = j;
  to->spj_out = j;
  /* io_uring: bytes of a recv still in flight come before anything the
   * job reads; it starts reading after the recv's last completion */
  if (from->uflags & UF_RECV) {
    j->wait_recv = 1;
    rearm(from); /* cancels the recv */
  }
  spj_step(l, j);
  return 0;
}

/* io_uring: the source's recv ended. What it delivered since the job began
 * goes first, then the job reads the socket itself. */
static void spj_recv_done(pt_loop *l, pt_spj *j) {
  pt_conn *from = j->from, *to = j->to;
  j->wait_recv = 0;
  size_t have = pt_buf_len(from->in);
  if (have) {
    size_t left = j->want ? (j->want > j->moved ? j->want - j->moved : 0) : have;
    size_t k = have < left ? have : left;
    int r = k == have ? (pt_buf_move(to->out, from->in), 0)
                      : pt_buf_slice(from->in, k, to->out);
    if (r != 0) {
      spj_end(l, j, ENOMEM);
      return;
    }
    j->moved += k;
  }
  /* a failed write closes `to`, which ends the job */
  if (has_out(to) && !(to->flags & PT_CF_WR_PENDING) && write_now(to) < 0) return;
  if (from->flags & PT_CF_RD_EOF) { /* the recv saw the end: CLOSED is queued */
    spj_end(l, j, 0);
    return;
  }
  spj_step(l, j);
}

size_t pt_conn_pending(const pt_conn *c) {
  size_t n = pt_buf_len(c->out);
  for (const pt_fjob *j = c->fjob; j; j = j->next) {
    size_t k = j->left + (j->blen - j->bpos);
    n = k < SIZE_MAX - n ? n + k : SIZE_MAX;
  }
  if (c->spj_out) n += c->spj_out->staged;
  return n + pt_buf_len(&c->tx);
}

static void handle_conn(pt_loop *l, pt_conn *c, uint32_t m) {
  if (c->flags & PT_CF_CLOSED) return; /* closed earlier in this batch */
  if (c->kind == PT_KIND_LISTENER) {
    do_accept(l, c);
    return;
  }
  if (c->flags & PT_CF_CONNECTING) {
    int err = sock_error(c->fd);
    if (!err && (m & (PT_R_ERR | PT_R_HUP))) err = ECONNREFUSED;
    if (err || (m & PT_R_OUT)) connect_done(c, err);
    return;
  }
  if (m & (PT_R_IN | PT_R_HUP | PT_R_ERR)) {
    if (c->spj_in) {
      if (!c->spj_in->wait_out && !c->spj_in->wait_recv) spj_step(l, c->spj_in);
    } else if (!l->ur &&
               !(c->flags & (PT_CF_RD_PAUSED | PT_CF_RD_EOF | PT_CF_CLOSING))) {
      do_read(l, c); /* io_uring: the recv request reads */
    }
  }
  if (c->flags & PT_CF_CLOSED) return;
  if ((m & (PT_R_OUT | PT_R_ERR | PT_R_HUP)) && (c->flags & PT_CF_WR_PENDING)) {
    if (write_now(c) < 0) return;
    closing_step(c);
    if (c->flags & PT_CF_CLOSED) return;
  }
  if ((m & (PT_R_OUT | PT_R_ERR | PT_R_HUP)) && c->spj_out &&
      c->spj_out->wait_out) {
    spj_step(l, c->spj_out);
    if (c->flags & PT_CF_CLOSED) return;
  }
  if (m & PT_R_ERR) {
    close_conn(c, sock_error(c->fd), 1);
  } else if (m & PT_R_HUP) {
    /* Both directions down. A unix peer's close reports HUP while our
     * receive queue may still hold data: keep reading until EOF; a paused
     * conn leaves the poller (HUP cannot be masked) until consumed. */
    if (c->flags & (PT_CF_RD_EOF | PT_CF_CLOSING))
      close_conn(c, 0, 1);
    else if (!l->ur &&
             ((c->flags & PT_CF_RD_PAUSED) || (c->spj_in && c->spj_in->wait_out)))
      be_forget(l, c); /* one-shot polls (io_uring) do not spin */
  }
}

static void run_timers(pt_loop *l) {
  l->now = mono_ms();
  while (l->nheap) {
    uint32_t s = l->heap[0];
    pt_timer *t = &l->tm[s];
    if (t->deadline > l->now) break;
    uint64_t id = MKID(t->gen, s);
    int kind = t->kind;
    pt_conn *c = t->conn;
    heap_remove(l, 0);
    tslot_free(l, s);
    switch (kind) {
      case TK_USER:
        l->st.timers_active--;
        l->st.timers_fired++;
        push_ev(l, PT_EV_TIMER, 0, id, 0, NULL);
        break;
      case TK_CONNECT:
        c->timer = 0;
        if (c->flags & PT_CF_CONNECTING) connect_done(c, ETIMEDOUT);
        break;
      case TK_CLOSE:
        c->timer = 0;
        close_conn(c, ETIMEDOUT, 1);
        break;
      case TK_LISTEN:
        c->timer = 0;
        c->flags &= ~PT_CF_LISTEN_OFF;
        rearm(c);
        break;
    }
  }
}

static int handle_ready(pt_loop *l, int n) {
  for (int i = 0; i < n; i++) {
    if (l->rd[i].p == l)
      handle_wake(l);
    else
      handle_conn(l, l->rd[i].p, l->rd[i].m);
  }
  run_timers(l);
  return n;
}

int pt_loop_poll(pt_loop *l, pt_event *out, int max, int timeout_ms) {
  if (max <= 0 || !out) {
    errno = EINVAL;
    return -1;
  }
  pt_loop_flush(l);
  if (l->qhead < l->qlen) {
    int k = deliver(l, out, max);
    if (k) {
      l->busy = 1;
      return k;
    }
  }
  recycle(l, 0); /* batch boundary: nothing queued, nothing dirty */
  run_timers(l);
  /* io_uring submits and waits in one call: no zero-timeout round first */
  int spin = l->busy && !l->o.no_spin && !l->ur;
  int t = (l->qlen || spin || timeout_ms == 0) ? 0
                                                : wait_timeout(l, timeout_ms);
  if (be_round(l, t, max) < 0) return -1;
  if (!l->qlen && t == 0 && spin && timeout_ms != 0) {
    t = wait_timeout(l, timeout_ms);
    if (be_round(l, t, max) < 0) return -1;
  }
  int k = deliver(l, out, max);
  l->busy = k > 0;
  return k;
}

void pt_loop_stats_get(const pt_loop *l, pt_loop_stats *out) { *out = l->st; }

/* ---- loops --------------------------------------------------------------- */

pt_loop *pt_loop_new(pt_pool *pool, const pt_loop_opts *opts) {
  pt_loop *l = calloc(1, sizeof *l);
  if (!l) return NULL;
  l->epfd = l->wakefd = l->spare_fd = -1;
  l->cfree = l->tfree = NO_SLOT;
  if (opts) l->o = *opts;
  if (!l->o.in_cap) l->o.in_cap = 8u << 20;
  if (!l->o.out_cap) l->o.out_cap = 64u << 20;
  if (l->o.close_timeout_ms <= 0) l->o.close_timeout_ms = 5000;
  if (l->o.max_events <= 0) l->o.max_events = 256;
  const char *env = getenv("PETREL_NO_SENDFILE");
  if (env && *env && strcmp(env, "0") != 0) l->o.zc_off |= PT_ZC_NO_SENDFILE;
  env = getenv("PETREL_NO_SPLICE");
  if (env && *env && strcmp(env, "0") != 0) l->o.zc_off |= PT_ZC_NO_SPLICE;
  if (!pool) {
    pool = pt_pool_new(0);
    if (!pool) {
      free(l);
      return NULL;
    }
    l->own_pool = 1;
  }
  l->pool = pool;
  pt_buf_init(&l->pool_pin, pool);
  l->now = mono_ms();
  l->pid = getpid();
  int be = l->o.backend;
  if (be == PT_BE_DEFAULT) {
    env = getenv("PETREL_BACKEND");
    be = !env || !*env || strcmp(env, "epoll") == 0 ? PT_BE_EPOLL
         : strcmp(env, "uring") == 0 || strcmp(env, "io_uring") == 0
             ? PT_BE_URING
         : strcmp(env, "auto") == 0 ? PT_BE_AUTO
                                    : -1;
    if (be < 0) {
      fail(l, EINVAL, "PETREL_BACKEND='%s' (epoll, uring or auto)", env);
      goto bad;
    }
  }
  env = getenv("PETREL_SQPOLL");
  if (env && *env && strcmp(env, "0") != 0) l->o.sqpoll = 1;
  l->epfd = -1;
  if (be == PT_BE_URING || be == PT_BE_AUTO) {
    if (u_init(l) == 0) {
      snprintf(l->be_note, sizeof l->be_note, "%s", l->ur->note);
    } else {
      int e = errno;
      u_free(l);
      if (be == PT_BE_URING) {
        errno = e;
        goto bad;
      }
      /* auto: epoll, and say why */
      snprintf(l->be_note, sizeof l->be_note, "%s", l->err);
    }
  }
  if (!l->ur && ep_init(l) != 0) goto bad;
  l->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (l->wakefd < 0) {
    fail(l, errno, "eventfd");
    goto bad;
  }
  if (be_add_wake(l) != 0) goto bad;
  l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  return l;
bad : {
  int e = errno;
  if (opts && opts->err && opts->errlen)
    snprintf(opts->err, opts->errlen, "%s", l->err);
  pt_loop_free(l);
  errno = e;
  return NULL;
}
}

void pt_loop_free(pt_loop *l) {
  if (!l) return;
  l->forked = l->pid != getpid();
  pt_loop_close_all(l);
  l->dirty = NULL;
  if (l->ur && !l->forked) u_drain(l); /* the kernel lets go of every conn */
  recycle(l, 1);
  be_free(l);
  if (l->wakefd >= 0) close(l->wakefd);
  if (l->spare_fd >= 0) close(l->spare_fd);
  free(l->cs);
  free(l->tm);
  free(l->heap);
  free(l->q);
  pt_buf_free(&l->pool_pin);
  if (l->own_pool) pt_pool_close(l->pool);
  free(l);
}
