/*
 * be/pt_epoll.c — the epoll back end (pt_be.h): readiness-driven.
 *
 * Interest becomes one level-triggered registration per fd: EPOLLIN for
 * PT_W_ACCEPT / PT_W_RECV / PT_W_IN, EPOLLOUT for PT_W_OUT and while a send
 * waits for room. next() takes the events of the last epoll_wait one at a
 * time: a listener's become accept4 calls (at most PT_ACCEPT_BUDGET per
 * readiness), a stream's a readv into c->in when it wants PT_W_RECV
 * (adaptive size, at most PT_RD_ROUNDS calls; the loop trades a block a
 * read left mostly empty for a small one at the batch boundary if its
 * bytes still wait, pt_buf_settle), then PT_RP_READY for the
 * loop's own jobs, PT_RP_SENT when a held send may go on, and the socket's
 * error or hang-up last. A datagram socket's become recvmmsg calls into a
 * scratch area made at the first of them (PT_DG_BATCH slots of PT_DG_MAX
 * bytes, mapped lazily: pages are touched only as far as datagrams reach),
 * each datagram copied into the input as a record (pt_be_dgput), at most
 * EP_DG_BUDGET datagrams per readiness; their sends are sendmmsg
 * (pt_be_dgsend).
 *
 * Invariants
 *   - ec->armed is what the kernel has for the fd while ec->registered.
 *   - A conn that hung up and reads nothing is taken out of the epoll set
 *     (EPOLLHUP cannot be masked and would fire every round) until its
 *     interest asks for reading again.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../pt_be.h"

#define EP_IOV_MAX 1024
#define EP_RD_IOV 8
#define EP_RD_MIN 4096u
#define EP_RD_MAX (1u << 20)
#define EP_RD_ROUNDS 8       /* readv calls per readiness at most */
#define EP_ACCEPT_BUDGET 128 /* accepts per readiness at most */
#define EP_DG_BUDGET 512     /* datagrams per readiness at most */

typedef struct ep_conn {
  uint32_t armed;  /* events registered */
  int registered;
  int wpend;       /* send() left bytes: PT_RP_SENT on writability */
  int hup;         /* the peer hung up */
  size_t rd_hint;  /* adaptive read size */
} ep_conn;

/* recvmmsg's scratch for datagram sockets */
typedef struct ep_dg {
  struct mmsghdr mm[PT_DG_BATCH];
  struct iovec iov[PT_DG_BATCH];
  struct sockaddr_in6 from[PT_DG_BATCH];
  char *slots; /* PT_DG_BATCH x PT_DG_MAX bytes */
} ep_dg;

typedef struct ep_state {
  int epfd;
  struct epoll_event *eps;
  int cap;
  int n, i; /* events of the last wait, the next to turn into reports */
  int acc;  /* accepts (datagrams) made for event i; -1: its reads are done */
  ep_dg *dg; /* made for the first datagram socket */
  struct iovec iov[EP_IOV_MAX];
} ep_state;

static int ep_fail(pt_behost *h, int e, const char *what) {
  return pt_errf(h->err, h->errlen, e, "%s", what);
}

static int ep_init(pt_behost *h) {
  ep_state *s = calloc(1, sizeof *s);
  if (!s) return ep_fail(h, ENOMEM, "epoll");
  s->epfd = -1;
  h->state = s;
  s->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (s->epfd < 0) return ep_fail(h, errno, "epoll_create1");
  s->cap = h->o->max_events > 0 ? h->o->max_events : 256;
  s->eps = malloc((size_t)s->cap * sizeof *s->eps);
  if (!s->eps) return ep_fail(h, ENOMEM, "epoll");
  struct epoll_event ev;
  ev.events = EPOLLIN;
  ev.data.ptr = h; /* the host marks the wake fd */
  if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, h->wakefd, &ev) != 0)
    return ep_fail(h, errno, "epoll_ctl(eventfd)");
  return 0;
}

static void ep_free(pt_behost *h) {
  ep_state *s = h->state;
  if (!s) return;
  if (s->epfd >= 0) close(s->epfd);
  free(s->eps);
  if (s->dg) munmap(s->dg->slots, (size_t)PT_DG_BATCH * PT_DG_MAX);
  free(s->dg);
  free(s);
  h->state = NULL;
}

static void ep_drain(pt_behost *h) { (void)h; }

static const char *ep_note(pt_behost *h) {
  (void)h;
  return "";
}

static void ep_attach(pt_behost *h, pt_conn *c) {
  (void)h;
  ep_conn *ec = c->be;
  ec->rd_hint = PT_BLOCK_DEFAULT;
}

static int ep_arm(pt_behost *h, pt_conn *c) {
  ep_state *s = h->state;
  ep_conn *ec = c->be;
  uint32_t w = c->want;
  uint32_t events = (w & (PT_W_ACCEPT | PT_W_RECV | PT_W_IN) ? EPOLLIN : 0) |
                    (w & PT_W_OUT || ec->wpend ? EPOLLOUT : 0);
  if (ec->hup && !events) { /* out of the set until it reads again */
    if (ec->registered) epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    ec->registered = 0;
    ec->armed = 0;
    return 0;
  }
  if (ec->registered && ec->armed == events) return 0;
  struct epoll_event ev;
  ev.events = events;
  ev.data.ptr = c;
  if (epoll_ctl(s->epfd, ec->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd,
                &ev) != 0)
    return ep_fail(h, errno, "epoll_ctl");
  ec->registered = 1;
  ec->armed = events;
  return 0;
}

static void ep_forget(pt_behost *h, pt_conn *c) {
  ep_state *s = h->state;
  ep_conn *ec = c->be;
  if (ec->registered) epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
  ec->registered = 0;
  ec->armed = 0;
  ec->wpend = 0;
}

static int ep_busy(const pt_conn *c) {
  (void)c;
  return 0;
}

static void ep_release(pt_behost *h, pt_conn *c) {
  (void)h;
  (void)c;
}

static size_t ep_held(const pt_conn *c) {
  (void)c;
  return 0;
}

static int ep_send(pt_behost *h, pt_conn *c) {
  ep_state *s = h->state;
  ep_conn *ec = c->be;
  int r = c->kind == PT_KIND_DGRAM
              ? pt_be_dgsend(h, c)
              : pt_be_sendbuf(c->fd, c->out, SIZE_MAX, s->iov, EP_IOV_MAX,
                              h->st);
  if (r < 0) return -1;
  if (r == 0) return PT_SEND_DONE;
  ec->wpend = 1;
  if (ep_arm(h, c) != 0) return -1;
  return PT_SEND_PENDING;
}

static int ep_wait(pt_behost *h, int timeout) {
  ep_state *s = h->state;
  s->n = s->i = s->acc = 0;
  int n = epoll_wait(s->epfd, s->eps, s->cap, timeout);
  if (timeout == 0)
    h->st->wait_zero++;
  else
    h->st->wait_block++;
  if (n < 0) return errno == EINTR ? 0 : ep_fail(h, errno, "epoll_wait");
  s->n = n;
  return n;
}

static inline pt_rep rep(int kind, pt_conn *c, int64_t res) {
  pt_rep r = {kind, res, c};
  return r;
}

/* Accept on listener c: up to max reports; 0 once the event is done. */
static int ep_accept(pt_behost *h, ep_state *s, pt_conn *c, pt_rep *out,
                     int max) {
  (void)h;
  int k = 0;
  while (k < max && s->acc < EP_ACCEPT_BUDGET) {
    s->acc++;
    int fd = accept4(c->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      out[k++] = rep(PT_RP_ACCEPT, c, fd);
      continue;
    }
    int e = errno;
    if (e == EINTR || e == ECONNABORTED || e == EPROTO) continue;
    s->acc = EP_ACCEPT_BUDGET; /* this readiness is done */
    if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM)
      out[k++] = rep(PT_RP_ACCEPT, c, -e);
    /* EAGAIN: nothing pending; other errors: try on the next readiness */
  }
  return k;
}

/* Read what the socket has (bounded): INPUT, then EOF / FAIL. */
static int ep_read(pt_behost *h, pt_conn *c, pt_rep *out) {
  ep_conn *ec = c->be;
  pt_buf *in = c->in;
  size_t got = 0, room = pt_be_room(h, c);
  int err = 0, eof = 0, k = 0;
  for (int round = 0; round < EP_RD_ROUNDS && got < room; round++) {
    size_t want = ec->rd_hint;
    if (want > room - got) want = room - got;
    struct iovec iov[EP_RD_IOV];
    int n = pt_buf_reserve_iov(in, want, iov, EP_RD_IOV);
    if (n < 0) {
      err = ENOMEM;
      break;
    }
    size_t total = 0;
    for (int i = 0; i < n; i++) {
      if (total + iov[i].iov_len > want) {
        iov[i].iov_len = want - total;
        n = i + 1;
      }
      total += iov[i].iov_len;
    }
    ssize_t r = readv(c->fd, iov, n);
    h->st->readv_calls++;
    if (r > 0) {
      pt_buf_commit_iov(in, (size_t)r);
      got += (size_t)r;
      h->st->bytes_in += (uint64_t)r;
      if ((size_t)r == total) { /* more may wait: a larger read next */
        if (ec->rd_hint < EP_RD_MAX) ec->rd_hint *= 2;
        continue;
      }
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
  /* shrink by what the whole readiness brought, not by its last read: a
   * message one byte over the hint would otherwise swing the hint up and
   * down and arrive in two blocks every time */
  if (got && got < ec->rd_hint / 4 && ec->rd_hint > EP_RD_MIN)
    ec->rd_hint /= 2;
  if (got) out[k++] = rep(PT_RP_INPUT, c, (int64_t)got);
  if (err)
    out[k++] = rep(PT_RP_FAIL, c, err);
  else if (eof)
    out[k++] = rep(PT_RP_EOF, c, 0);
  return k;
}

/* One stream event: at most 5 reports. */
static int ep_stream(pt_behost *h, pt_conn *c, uint32_t e, pt_rep *out) {
  ep_conn *ec = c->be;
  uint32_t m = (e & EPOLLIN ? PT_R_IN : 0) | (e & EPOLLOUT ? PT_R_OUT : 0) |
               (e & EPOLLERR ? PT_R_ERR : 0) | (e & EPOLLHUP ? PT_R_HUP : 0);
  uint32_t w = c->want;
  int k = 0;
  if ((w & PT_W_RECV) && (m & (PT_R_IN | PT_R_HUP | PT_R_ERR))) {
    k = ep_read(h, c, out);
    if (k && out[k - 1].kind == PT_RP_FAIL) return k;
  }
  uint32_t ready = (w & PT_W_IN ? PT_R_IN : 0) | (w & PT_W_OUT ? PT_R_OUT : 0);
  if (m & (ready | PT_R_ERR | PT_R_HUP) && (w & (PT_W_IN | PT_W_OUT)))
    out[k++] = rep(PT_RP_READY, c, m);
  if (ec->wpend && (m & (PT_R_OUT | PT_R_ERR | PT_R_HUP))) {
    ec->wpend = 0; /* EPOLLOUT stays until the loop's next send or arm */
    out[k++] = rep(PT_RP_SENT, c, 0);
  }
  if (m & PT_R_ERR) {
    out[k++] = rep(PT_RP_FAIL, c, -1); /* -1: the socket's SO_ERROR */
  } else if (m & PT_R_HUP) {
    ec->hup = 1;
    if (!(w & (PT_W_RECV | PT_W_IN | PT_W_OUT)) && !ec->wpend) ep_arm(h, c);
    out[k++] = rep(PT_RP_HUP, c, 0);
  }
  return k;
}

static int ep_sockerr(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
  return err;
}

/* recvmmsg once into the scratch, then the datagrams into c->in: up to max
 * reports. Marks the event's reads done (s->acc = -1) when the socket is
 * empty, the budget is spent or the input has no room. */
static int ep_dgread(pt_behost *h, ep_state *s, pt_conn *c, pt_rep *out,
                     int max) {
  size_t room = pt_be_room(h, c);
  if (!room || max <= 0) {
    s->acc = -1;
    return 0;
  }
  if (!s->dg) {
    ep_dg *d = calloc(1, sizeof *d);
    void *m = d ? mmap(NULL, (size_t)PT_DG_BATCH * PT_DG_MAX,
                       PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
                : MAP_FAILED;
    if (m == MAP_FAILED) {
      free(d);
      s->acc = -1;
      out[0] = rep(PT_RP_FAIL, c, ENOMEM);
      return 1;
    }
    d->slots = m;
    for (int i = 0; i < PT_DG_BATCH; i++) {
      d->iov[i].iov_base = d->slots + (size_t)i * PT_DG_MAX;
      d->mm[i].msg_hdr.msg_name = &d->from[i];
      d->mm[i].msg_hdr.msg_iov = &d->iov[i];
      d->mm[i].msg_hdr.msg_iovlen = 1;
    }
    s->dg = d;
  }
  ep_dg *d = s->dg;
  size_t slot = c->dg->max < PT_DG_MAX ? c->dg->max : PT_DG_MAX;
  int n = max < PT_DG_BATCH ? max : PT_DG_BATCH;
  for (int i = 0; i < n; i++) { /* the rest was set when d was made */
    d->iov[i].iov_len = slot;
    d->mm[i].msg_hdr.msg_namelen = sizeof d->from[i];
  }
  int r;
  do {
    /* MSG_TRUNC: msg_len is the datagram's real length */
    r = recvmmsg(c->fd, d->mm, (unsigned)n, MSG_DONTWAIT | MSG_TRUNC, NULL);
    h->st->readv_calls++;
  } while (r < 0 && errno == EINTR);
  if (r < 0) {
    int e = errno;
    if (e == EAGAIN || e == EWOULDBLOCK) {
      s->acc = -1;
      return 0;
    }
    if (e == ENOMEM || e == ENOBUFS) { /* try on the next readiness */
      s->acc = -1;
      return 0;
    }
    s->acc++; /* counts toward the budget too */
    out[0] = rep(PT_RP_DGERR, c, e); /* ECONNREFUSED...: reading goes on */
    return 1;
  }
  int k = 0;
  size_t got = 0;
  for (int i = 0; i < r; i++) {
    size_t full = d->mm[i].msg_len;
    size_t kept = full < slot ? full : slot;
    socklen_t alen = d->mm[i].msg_hdr.msg_namelen;
    if (alen > sizeof d->from[i]) alen = sizeof d->from[i];
    if (pt_be_dgput(h, c, &d->from[i], alen, d->iov[i].iov_base, kept, full) != 0)
      continue; /* no memory: dropped and counted */
    got += kept;
    out[k++] = rep(full > kept ? PT_RP_DGCUT : PT_RP_DGRAM, c, (int64_t)kept);
  }
  s->acc += r;
  if (r < n || s->acc >= EP_DG_BUDGET || got >= room) s->acc = -1;
  return k;
}

/* One datagram socket's event: its reads (the event stays current while
 * they go on: *again), then a held send's writability and a socket error
 * no read took. */
static int ep_dgram(pt_behost *h, ep_state *s, pt_conn *c, uint32_t e,
                    pt_rep *out, int max, int *again) {
  ep_conn *ec = c->be;
  int k = 0;
  *again = 0;
  if ((c->want & PT_W_RECV) && (e & (EPOLLIN | EPOLLERR)) && s->acc >= 0) {
    k = ep_dgread(h, s, c, out, max - 2);
    if (s->acc >= 0) {
      *again = 1;
      return k;
    }
  }
  if (ec->wpend && (e & (EPOLLOUT | EPOLLERR))) {
    ec->wpend = 0;
    out[k++] = rep(PT_RP_SENT, c, 0);
  }
  if ((e & EPOLLERR) && !(c->want & PT_W_RECV)) {
    int err = ep_sockerr(c->fd); /* reading it clears it */
    if (err) out[k++] = rep(PT_RP_DGERR, c, err);
  }
  return k;
}

static int ep_next(pt_behost *h, pt_rep *out, int max) {
  ep_state *s = h->state;
  while (s->i < s->n) {
    struct epoll_event *ev = &s->eps[s->i];
    if (ev->data.ptr == h) {
      s->i++;
      out[0] = rep(PT_RP_WAKE, NULL, 0);
      return 1;
    }
    pt_conn *c = ev->data.ptr;
    int k = 0;
    if (c->flags & PT_CF_CLOSED) {
      /* closed earlier in this batch */
    } else if (c->kind == PT_KIND_LISTENER) {
      if (c->want & PT_W_ACCEPT) k = ep_accept(h, s, c, out, max);
      if (k) return k; /* the same event again: more to accept */
    } else if (c->kind == PT_KIND_DGRAM) {
      int again;
      k = ep_dgram(h, s, c, ev->events, out, max, &again);
      if (again) {
        if (k) return k;
        continue; /* the same event again: more to read */
      }
    } else {
      k = ep_stream(h, c, ev->events, out);
    }
    s->i++;
    s->acc = 0;
    if (k) return k;
  }
  return 0;
}

const pt_be_ops pt_be_epoll = {
    .name = "epoll",
    .conn_size = sizeof(ep_conn),
    .spin = 1,
    .init = ep_init,
    .free = ep_free,
    .drain = ep_drain,
    .note = ep_note,
    .attach = ep_attach,
    .arm = ep_arm,
    .forget = ep_forget,
    .busy = ep_busy,
    .release = ep_release,
    .send = ep_send,
    .held = ep_held,
    .wait = ep_wait,
    .next = ep_next,
};
