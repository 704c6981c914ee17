/*
 * be/pt_uring.c — the io_uring back end of pt_loop (liburing). Included by
 * pt_loop.c, which it shares its statics with (redis ae_*.c style); not a
 * translation unit of its own.
 *
 * Requests (user_data = pointer | tag; conns and zc records are 16-aligned)
 *   U_ACCEPT  multishot accept on a listener
 *   U_RECV    multishot recv into the provided buffer ring (group 0). A
 *             small completion's bytes are copied to conn->in; a large one
 *             (U_LINK_MIN) is linked into conn->in without a copy while
 *             less than half the ring is out, and its buffer goes back to
 *             the ring once the kernel is done with it and every byte
 *             linked from it is consumed. With IOU_PBUF_RING_INC (Linux
 *             6.12) buffers are large and consumed piecewise by the kernel,
 *             so small messages of many conns share one buffer.
 *   U_SEND    sendmsg of conn->tx (the output moved there, no copy), one in
 *             flight per conn so bytes leave in order; short sends resume.
 *   U_ZC      the same with sendmsg_zc, for sends of at least zc_min bytes:
 *             the sent bytes stay pinned (a slice in the zc record) until
 *             the kernel's notification.
 *   U_POLL    one-shot poll for the readiness-driven jobs: connect,
 *             sendfile, splice (their steps are the epoll ones).
 *   U_WAKE    multishot poll on the wake eventfd.
 *   U_CANCEL  cancel requests (their completions are ignored).
 *
 * Invariants
 *   - conn->uops counts requests in flight naming the conn; a closed conn
 *     is freed only when it is 0 (recycle() leaves it on the dead list).
 *   - close_conn cancels every request of the conn (by user_data) before
 *     the fd is closed; completions of closed conns only give back ring
 *     buffers.
 *   - recv is never armed while a splice job reads the socket; a splice
 *     waits for the recv's last completion before its first read.
 */

#include <liburing.h>
#include <poll.h>
#include <sys/mman.h>

#ifndef IORING_CQE_F_BUF_MORE
#define IORING_CQE_F_BUF_MORE (1U << 4)
#endif
#ifndef IOU_PBUF_RING_INC
#define IOU_PBUF_RING_INC 2
#endif
#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE (1U << 3)
#endif
#ifndef IORING_NOTIF_USAGE_ZC_COPIED
#define IORING_NOTIF_USAGE_ZC_COPIED (1U << 31)
#endif

enum { U_ACCEPT = 1, U_RECV, U_SEND, U_ZC, U_POLL, U_WAKE, U_CANCEL };
#define U_TAGMASK 15u

/* conn->uflags */
#define UF_ACCEPT 0x01u   /* multishot accept armed */
#define UF_RECV 0x02u     /* multishot recv armed */
#define UF_SEND 0x04u     /* a send (U_SEND or U_ZC) in flight */
#define UF_POLL 0x08u     /* a poll in flight (mask in conn->upoll) */
#define UF_RECV_CXL 0x10u /* recv cancel asked for */
#define UF_POLL_CXL 0x20u /* poll cancel asked for */
#define UF_ACC_CXL 0x40u  /* accept cancel asked for */
#define UF_SEND_CXL 0x80u /* send cancel asked for */
#define UF_RECV1 0x100u   /* the recv is single-shot (near the input cap) */
#define UF_NOZC 0x200u    /* plain sends only: the route copies anyway */
#define UF_ZCCHK 0x400u   /* the route was looked at */

/* Within this many bytes of a conn's input cap, recvs are single-shot and
 * ask for exactly the room left, so reading stops at the cap as it does
 * under epoll (a multishot recv may deliver what was in flight before its
 * cancellation). */
#define U_CAP_WINDOW (1u << 20)

#define PT_UIOV 64 /* iovecs per send */
#define U_SQ_ENTRIES 1024
#define U_CQ_ENTRIES 16384
#define U_BGID 0
#define U_LINK_MIN (8u << 10) /* recvs this large are linked, not copied */

/* A zero-copy send: the bytes the kernel may still read until its
 * notification. */
typedef struct pt_uzc {
  _Alignas(16) pt_conn *c; /* NULL once the first completion came */
  uint64_t cid;            /* the conn, for the notification */
  pt_buf hold;
} pt_uzc;

typedef struct pt_usend {
  struct msghdr msg;
  struct iovec iov[PT_UIOV];
  pt_uzc *zc; /* the zero-copy send in flight, if it is one */
} pt_usend;

struct pt_uring {
  struct io_uring ring;
  struct io_uring_buf_ring *br;
  unsigned char *bufs;
  unsigned nbufs, bsize;
  uint32_t *boff; /* incremental mode: bytes of each buffer used so far */
  uint32_t *brefs; /* links into each buffer not yet consumed */
  uint8_t *bkern;  /* the kernel is filling the buffer */
  unsigned nout;   /* buffers out of the ring (filling or linked) */
  size_t nlinked;  /* links not yet consumed, all buffers */
  int dead;        /* the loop is gone; memory stays for the links */
  int inc;        /* IOU_PBUF_RING_INC */
  int zc;         /* sendmsg_zc usable */
  int defer;      /* DEFER_TASKRUN: completions need an enter */
  int sqpoll;
  size_t zc_min;
  unsigned zc_inflight; /* zc records waiting for their notification */
  int wake_armed;
  int broken;           /* errno of a failed submission: the loop fails */
  uint64_t round;
  char note[160];
};

static inline uint64_t u_ud(const void *p, unsigned tag) {
  return (uint64_t)(uintptr_t)p | tag;
}

static struct io_uring_sqe *u_sqe(pt_loop *l) {
  struct io_uring *r = &l->ur->ring;
  struct io_uring_sqe *sqe = io_uring_get_sqe(r);
  while (!sqe) { /* the ring is full: hand what is queued to the kernel */
    int n = io_uring_submit(r);
    l->st.ring_enters++;
    if (n < 0 && n != -EINTR && n != -EAGAIN && n != -EBUSY) {
      l->ur->broken = -n;
      return NULL;
    }
    if (r->flags & IORING_SETUP_SQPOLL) io_uring_sqring_wait(r);
    sqe = io_uring_get_sqe(r);
  }
  l->st.ring_sqes++;
  return sqe;
}

static void u_cancel(pt_loop *l, uint64_t ud) {
  struct io_uring_sqe *sqe = u_sqe(l);
  if (!sqe) return;
  io_uring_prep_cancel64(sqe, ud, IORING_ASYNC_CANCEL_ALL);
  io_uring_sqe_set_data64(sqe, U_CANCEL);
}

/* ---- set-up ------------------------------------------------------------ */

static int u_note_fail(pt_loop *l, int e, const char *what) {
  snprintf(l->err, sizeof l->err, "io_uring unavailable: %s: %s", what,
           strerror(e));
  errno = e;
  return -1;
}

static void u_free(pt_loop *l);

static int u_init(pt_loop *l) {
  struct pt_uring *u = calloc(1, sizeof *u);
  if (!u) return u_note_fail(l, ENOMEM, "state");
  u->ring.ring_fd = -1;
  l->ur = u;
  /* flags, best first; fewer when the kernel says EINVAL */
  unsigned want[3];
  int nwant = 0;
  if (l->o.sqpoll) {
    want[nwant++] = IORING_SETUP_SQPOLL | IORING_SETUP_SINGLE_ISSUER;
    want[nwant++] = IORING_SETUP_SQPOLL;
  } else {
    want[nwant++] = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    want[nwant++] = IORING_SETUP_SINGLE_ISSUER;
    want[nwant++] = 0;
  }
  int r = -EINVAL;
  struct io_uring_params p;
  for (int i = 0; i < nwant; i++) {
    memset(&p, 0, sizeof p);
    p.flags = want[i] | IORING_SETUP_CQSIZE;
    p.cq_entries = U_CQ_ENTRIES;
    if (want[i] & IORING_SETUP_SQPOLL) p.sq_thread_idle = 50;
    r = io_uring_queue_init_params(U_SQ_ENTRIES, &u->ring, &p);
    if (r == 0 || r != -EINVAL) break;
  }
  if (r < 0) {
    u->ring.ring_fd = -1;
    return u_note_fail(l, -r, "io_uring_setup");
  }
  u->defer = (p.flags & IORING_SETUP_DEFER_TASKRUN) != 0;
  u->sqpoll = (p.flags & IORING_SETUP_SQPOLL) != 0;
  if (!(p.features & IORING_FEAT_EXT_ARG))
    return u_note_fail(l, ENOSYS, "IORING_FEAT_EXT_ARG (Linux 5.11+)");
  if (!(p.features & IORING_FEAT_NODROP))
    return u_note_fail(l, ENOSYS, "IORING_FEAT_NODROP (Linux 5.5+)");
  struct io_uring_probe *pr = io_uring_get_probe_ring(&u->ring);
  if (!pr) return u_note_fail(l, ENOSYS, "probe");
  /* multishot recv came with send_zc (Linux 6.0) */
  int ok = io_uring_opcode_supported(pr, IORING_OP_SEND_ZC) &&
           io_uring_opcode_supported(pr, IORING_OP_SENDMSG) &&
           io_uring_opcode_supported(pr, IORING_OP_ACCEPT) &&
           io_uring_opcode_supported(pr, IORING_OP_POLL_ADD) &&
           io_uring_opcode_supported(pr, IORING_OP_ASYNC_CANCEL);
  u->zc = io_uring_opcode_supported(pr, IORING_OP_SENDMSG_ZC);
  io_uring_free_probe(pr);
  if (!ok) return u_note_fail(l, ENOSYS, "multishot recv (Linux 6.0+)");
  /* provided buffer ring: incremental consumption where the kernel has it */
  for (int inc = !l->o.ring_noinc; inc >= 0; inc--) {
    unsigned n = l->o.ring_bufs ? l->o.ring_bufs : inc ? 64 : 1024;
    unsigned sz = l->o.ring_buf_size ? l->o.ring_buf_size
                  : inc               ? 64u << 10
                                      : 4096u;
    if (n & (n - 1) || n > 32768 || sz < 256)
      return u_note_fail(l, EINVAL, "ring_bufs (a power of 2 up to 32768)");
    size_t rsz = (size_t)n * sizeof(struct io_uring_buf);
    void *rm = mmap(NULL, rsz, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (rm == MAP_FAILED) return u_note_fail(l, errno, "mmap");
    u->br = rm;
    io_uring_buf_ring_init(u->br);
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (uint64_t)(uintptr_t)u->br;
    reg.ring_entries = n;
    reg.bgid = U_BGID;
    reg.pad = inc ? IOU_PBUF_RING_INC : 0; /* "flags" in newer headers */
    r = io_uring_register_buf_ring(&u->ring, &reg, 0);
    if (r == 0) {
      u->inc = inc;
      u->nbufs = n;
      u->bsize = sz;
      break;
    }
    munmap(u->br, rsz);
    u->br = NULL;
    if (!inc) return u_note_fail(l, -r, "provided buffer ring (Linux 5.19+)");
  }
  u->bufs = mmap(NULL, (size_t)u->nbufs * u->bsize, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (u->bufs == MAP_FAILED) {
    u->bufs = NULL;
    return u_note_fail(l, errno, "mmap");
  }
  u->boff = calloc(u->nbufs, sizeof *u->boff);
  u->brefs = calloc(u->nbufs, sizeof *u->brefs);
  u->bkern = calloc(u->nbufs, sizeof *u->bkern);
  if (!u->boff || !u->brefs || !u->bkern) return u_note_fail(l, ENOMEM, "state");
  for (unsigned i = 0; i < u->nbufs; i++)
    io_uring_buf_ring_add(u->br, u->bufs + (size_t)i * u->bsize, u->bsize,
                          (unsigned short)i, io_uring_buf_ring_mask(u->nbufs),
                          (int)i);
  io_uring_buf_ring_advance(u->br, (int)u->nbufs);
  u->zc_min = l->o.zc_min ? l->o.zc_min : 64u << 10;
  const char *env = getenv("PETREL_ZC_MIN");
  if (env && *env) u->zc_min = (size_t)strtoull(env, NULL, 10);
  if (!u->zc_min) u->zc_min = SIZE_MAX;
  snprintf(u->note, sizeof u->note, "%s%s%s, %u x %u B buffer ring%s%s",
           u->sqpoll ? "SQPOLL" : "",
           p.flags & IORING_SETUP_SINGLE_ISSUER
               ? (u->sqpoll ? " SINGLE_ISSUER" : "SINGLE_ISSUER")
               : "",
           u->defer ? " DEFER_TASKRUN" : "", u->nbufs, u->bsize,
           u->inc ? " (incremental)" : "", u->zc ? ", sendmsg_zc" : "");
  return 0;
}

/* Every request is cancelled and reaped before the memory goes. */
static void u_drain(pt_loop *l);

static void u_memory_free(struct pt_uring *u) {
  if (u->br) munmap(u->br, (size_t)u->nbufs * sizeof(struct io_uring_buf));
  if (u->bufs) munmap(u->bufs, (size_t)u->nbufs * u->bsize);
  free(u->boff);
  free(u->brefs);
  free(u->bkern);
  free(u);
}

static void u_free(pt_loop *l) {
  struct pt_uring *u = l->ur;
  if (!u) return;
  if (u->ring.ring_fd >= 0) {
    if (!l->forked) u_drain(l);
    io_uring_queue_exit(&u->ring); /* in a forked child: unmaps, closes */
    u->ring.ring_fd = -1;
  }
  l->ur = NULL;
  if (u->nlinked) { /* buffers that outlive the loop still point here */
    u->dead = 1;
    return;
  }
  u_memory_free(u);
}

static int u_add_wake(pt_loop *l) {
  struct io_uring_sqe *sqe = u_sqe(l);
  if (!sqe) return fail(l, EBUSY, "io_uring: no submission slot");
  io_uring_prep_poll_multishot(sqe, l->wakefd, POLLIN);
  io_uring_sqe_set_data64(sqe, U_WAKE);
  l->ur->wake_armed = 1;
  return 0;
}

/* ---- requests ------------------------------------------------------------ */

static void u_arm_accept(pt_loop *l, pt_conn *c) {
  struct io_uring_sqe *sqe = u_sqe(l);
  if (!sqe) return;
  io_uring_prep_multishot_accept(sqe, c->fd, NULL, NULL,
                                 SOCK_NONBLOCK | SOCK_CLOEXEC);
  io_uring_sqe_set_data64(sqe, u_ud(c, U_ACCEPT));
  c->uflags |= UF_ACCEPT;
  c->uops++;
}

/* Bytes the input may still take before its cap (SIZE_MAX: no cap). */
static inline size_t u_room(const pt_conn *c) {
  size_t have = pt_buf_len(c->in);
  if (!c->in_cap) return SIZE_MAX;
  return have < c->in_cap ? c->in_cap - have : 0;
}

static void u_arm_recv(pt_loop *l, pt_conn *c) {
  size_t room = u_room(c);
  struct io_uring_sqe *sqe = u_sqe(l);
  if (!sqe) return;
  if (room <= U_CAP_WINDOW) {
    io_uring_prep_recv(sqe, c->fd, NULL, (size_t)room, 0);
    c->uflags |= UF_RECV1;
  } else {
    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    c->uflags &= ~UF_RECV1;
  }
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = U_BGID;
  io_uring_sqe_set_data64(sqe, u_ud(c, U_RECV));
  c->uflags |= UF_RECV;
  c->uops++;
}

static void u_arm_poll(pt_loop *l, pt_conn *c, uint32_t mask) {
  struct io_uring_sqe *sqe = u_sqe(l);
  if (!sqe) return;
  io_uring_prep_poll_add(sqe, c->fd, mask);
  io_uring_sqe_set_data64(sqe, u_ud(c, U_POLL));
  c->uflags |= UF_POLL;
  c->upoll = mask;
  c->uops++;
}

/* May a send of c use sendmsg_zc? Not where the kernel would copy anyway:
 * unix sockets (not supported) and loopback (always copied, and with tiny
 * socket buffers it stalls TCP there), unless opts.zc_force; later, not on
 * a conn whose zc sends the kernel reported as copied. */
static int u_zc_ok(pt_loop *l, pt_conn *c) {
  if (c->uflags & UF_NOZC) return 0;
  if (!(c->uflags & UF_ZCCHK)) {
    c->uflags |= UF_ZCCHK;
    if (l->o.zc_force) return 1;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int local = c->family == AF_UNIX;
    if (!local && getpeername(c->fd, (struct sockaddr *)&ss, &len) == 0) {
      if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)&ss;
        local = (ntohl(a->sin_addr.s_addr) >> 24) == 127;
      } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const void *)&ss;
        local = IN6_IS_ADDR_LOOPBACK(&a->sin6_addr) ||
                (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr) && a->sin6_addr.s6_addr[12] == 127);
      }
    }
    if (local) c->uflags |= UF_NOZC;
  }
  return !(c->uflags & UF_NOZC);
}

/* Send what conn->tx holds (up to PT_UIOV nodes). */
static int u_submit_tx(pt_loop *l, pt_conn *c) {
  struct pt_uring *u = l->ur;
  if (!c->us && !(c->us = calloc(1, sizeof *c->us))) {
    errno = ENOMEM;
    return -1;
  }
  int n = pt_buf_iov(&c->tx, c->us->iov, PT_UIOV, SIZE_MAX);
  size_t total = 0;
  for (int i = 0; i < n; i++) total += c->us->iov[i].iov_len;
  memset(&c->us->msg, 0, sizeof c->us->msg);
  c->us->msg.msg_iov = c->us->iov;
  c->us->msg.msg_iovlen = (size_t)n;
  struct io_uring_sqe *sqe = u_sqe(l);
  if (!sqe) {
    errno = EBUSY;
    return -1;
  }
  if (u->zc && total >= u->zc_min && u_zc_ok(l, c)) {
    pt_uzc *z = calloc(1, sizeof *z);
    if (!z) {
      errno = ENOMEM;
      return -1;
    }
    z->c = c;
    z->cid = c->id;
    pt_buf_init(&z->hold, l->pool);
    io_uring_prep_sendmsg_zc(sqe, c->fd, &c->us->msg, MSG_NOSIGNAL);
    sqe->ioprio |= IORING_SEND_ZC_REPORT_USAGE;
    io_uring_sqe_set_data64(sqe, u_ud(z, U_ZC));
    c->us->zc = z;
    u->zc_inflight++;
    l->st.zc_sends++;
  } else {
    io_uring_prep_sendmsg(sqe, c->fd, &c->us->msg, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, u_ud(c, U_SEND));
    c->us->zc = NULL;
  }
  l->st.writev_calls++;
  c->uflags |= UF_SEND;
  c->uops++;
  return 0;
}

/* write_now for conns on the completion path: move the output to tx and
 * send it. PT_SEND_PENDING while bytes are in flight, PT_SEND_DONE when
 * nothing is left, -1 (conn closed, errno) if the request cannot be made. */
static int u_write(pt_conn *c) {
  pt_loop *l = c->loop;
  if (c->uflags & UF_SEND) return PT_SEND_PENDING;
  if (pt_buf_len(c->out)) {
    pt_buf_move(&c->tx, c->out);
    if (u_submit_tx(l, c) != 0) {
      int e = errno;
      close_conn(c, e, 1);
      errno = e;
      return -1;
    }
    c->flags |= PT_CF_WR_PENDING;
    return PT_SEND_PENDING;
  }
  return out_drained(c);
}

/* Requests follow the flags (rearm() under io_uring). */
static void u_rearm(pt_conn *c) {
  pt_loop *l = c->loop;
  if (c->flags & PT_CF_CLOSED) return;
  uint32_t pmask = 0;
  if (c->kind == PT_KIND_LISTENER) {
    int want = !(c->flags & PT_CF_LISTEN_OFF);
    if (want && !(c->uflags & UF_ACCEPT)) u_arm_accept(l, c);
    if (!want && (c->uflags & UF_ACCEPT) && !(c->uflags & UF_ACC_CXL)) {
      u_cancel(l, u_ud(c, U_ACCEPT));
      c->uflags |= UF_ACC_CXL;
    }
    return;
  }
  if (c->flags & PT_CF_CONNECTING) {
    pmask = POLLOUT;
  } else {
    int recv = !c->spj_in &&
               !(c->flags & (PT_CF_RD_PAUSED | PT_CF_RD_EOF | PT_CF_CLOSING));
    if (recv && u_room(c) == 0) { /* the cap shrank below what is held */
      c->flags |= PT_CF_RD_PAUSED;
      l->st.rd_paused++;
      recv = 0;
    }
    if (recv && !(c->uflags & UF_RECV)) u_arm_recv(l, c);
    /* a multishot recv near the cap gives way to single-shot ones */
    if (recv && (c->uflags & UF_RECV) && !(c->uflags & UF_RECV1) &&
        u_room(c) <= U_CAP_WINDOW)
      recv = 0;
    if (!recv && (c->uflags & UF_RECV) && !(c->uflags & UF_RECV_CXL)) {
      u_cancel(l, u_ud(c, U_RECV));
      c->uflags |= UF_RECV_CXL;
    }
    /* a splice source reads by readiness once the recv is gone */
    if (c->spj_in && !c->spj_in->wait_out && !(c->uflags & UF_RECV) &&
        !(c->flags & (PT_CF_RD_EOF | PT_CF_CLOSING)))
      pmask |= POLLIN;
    if (!(c->uflags & UF_SEND) &&
        ((c->flags & PT_CF_WR_PENDING) || (c->spj_out && c->spj_out->wait_out)))
      pmask |= POLLOUT;
  }
  if (c->uflags & UF_POLL) {
    if (c->upoll != pmask && !(c->uflags & UF_POLL_CXL)) {
      u_cancel(l, u_ud(c, U_POLL));
      c->uflags |= UF_POLL_CXL;
    }
  } else if (pmask) {
    u_arm_poll(l, c, pmask);
  }
}

/* The conn is closing: cancel whatever it has in flight. */
static void u_forget(pt_loop *l, pt_conn *c) {
  if ((c->uflags & UF_ACCEPT) && !(c->uflags & UF_ACC_CXL))
    u_cancel(l, u_ud(c, U_ACCEPT));
  if ((c->uflags & UF_RECV) && !(c->uflags & UF_RECV_CXL))
    u_cancel(l, u_ud(c, U_RECV));
  if ((c->uflags & UF_POLL) && !(c->uflags & UF_POLL_CXL))
    u_cancel(l, u_ud(c, U_POLL));
  if ((c->uflags & UF_SEND) && !(c->uflags & UF_SEND_CXL)) {
    if (c->us && c->us->zc)
      u_cancel(l, u_ud(c->us->zc, U_ZC));
    else
      u_cancel(l, u_ud(c, U_SEND));
    c->uflags |= UF_SEND_CXL;
  }
  c->uflags |= UF_ACC_CXL | UF_RECV_CXL | UF_POLL_CXL;
}

/* ---- completions ------------------------------------------------------- */

/* DATA for c in this round: one completion per conn and round. */
static void u_push_data(pt_loop *l, pt_conn *c, size_t n) {
  struct pt_uring *u = l->ur;
  if (c->dq_round == u->round && c->dq >= l->qhead && c->dq < l->qlen) {
    pt_event *e = &l->q[c->dq];
    if (e->type == PT_EV_DATA && e->conn == c) {
      e->arg += n;
      return;
    }
  }
  push_ev(l, PT_EV_DATA, 0, c->id, n, c);
  c->dq_round = u->round;
  c->dq = l->qlen - 1;
}

/* The buffer goes back to the ring (the kernel is done, no link left). */
static void u_buf_put(struct pt_uring *u, unsigned bid) {
  u->boff[bid] = 0;
  u->nout--;
  if (u->dead) return;
  io_uring_buf_ring_add(u->br, u->bufs + (size_t)bid * u->bsize, u->bsize,
                        (unsigned short)bid, io_uring_buf_ring_mask(u->nbufs),
                        0);
  io_uring_buf_ring_advance(u->br, 1);
}

/* A pt_release_fn: bytes linked from buffer tag were consumed. May run
 * after the loop is gone (a buffer the script kept); the last one frees
 * the memory then. */
static void u_buf_release(void *ctx, intptr_t tag) {
  struct pt_uring *u = ctx;
  unsigned bid = (unsigned)tag;
  u->nlinked--;
  if (--u->brefs[bid] == 0 && !u->bkern[bid]) u_buf_put(u, bid);
  if (u->dead && u->nlinked == 0) u_memory_free(u);
}

static void u_on_accept(pt_loop *l, pt_conn *lc, struct io_uring_cqe *cqe) {
  int more = (cqe->flags & IORING_CQE_F_MORE) != 0;
  int fd = cqe->res;
  if (!more) {
    lc->uflags &= ~(UF_ACCEPT | UF_ACC_CXL);
    lc->uops--;
  }
  if (lc->flags & PT_CF_CLOSED) {
    if (fd >= 0) close(fd);
    return;
  }
  if (fd >= 0) {
    accepted(l, lc, fd, lc->family);
  } else if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS ||
             fd == -ENOMEM) {
    /* out of fds: drop one pending connection, then pause accepting */
    drop_pending(l, lc);
    listen_backoff(l, lc);
  }
  if (!more) rearm(lc);
}

static void u_on_recv(pt_loop *l, pt_conn *c, struct io_uring_cqe *cqe) {
  struct pt_uring *u = l->ur;
  int more = (cqe->flags & IORING_CQE_F_MORE) != 0;
  int res = cqe->res;
  if (!more) {
    c->uflags &= ~(UF_RECV | UF_RECV_CXL);
    c->uops--;
  }
  if (res > 0 && (cqe->flags & IORING_CQE_F_BUFFER)) {
    unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
    if (bid >= u->nbufs) return; /* cannot happen */
    const unsigned char *p = u->bufs + (size_t)bid * u->bsize +
                             (u->inc ? u->boff[bid] : 0);
    if (!u->bkern[bid]) { /* the kernel took it from the ring */
      u->bkern[bid] = 1;
      u->nout++;
    }
    int ok = 1;
    if (!(c->flags & PT_CF_CLOSED)) {
      if ((unsigned)res >= U_LINK_MIN && u->nout * 2 <= u->nbufs) {
        u->brefs[bid]++;
        u->nlinked++;
        ok = pt_buf_link(c->in, p, (size_t)res, u_buf_release, u, bid) == 0;
        l->st.ring_linked++;
      } else {
        ok = pt_buf_append(c->in, p, (size_t)res) == 0;
      }
      if (ok) {
        l->st.bytes_in += (uint64_t)res;
        l->st.readv_calls++;
        u_push_data(l, c, (size_t)res);
      }
    }
    if (u->inc && (cqe->flags & IORING_CQE_F_BUF_MORE)) {
      u->boff[bid] += (uint32_t)res;
    } else {
      u->bkern[bid] = 0;
      if (!u->brefs[bid]) u_buf_put(u, bid);
    }
    if (c->flags & PT_CF_CLOSED) return;
    if (!ok) {
      close_conn(c, ENOMEM, 1);
      return;
    }
    if (c->in_cap && pt_buf_len(c->in) >= c->in_cap &&
        !(c->flags & PT_CF_RD_PAUSED)) {
      c->flags |= PT_CF_RD_PAUSED;
      l->st.rd_paused++;
      rearm(c); /* cancels the recv */
    } else if (more && !(c->uflags & UF_RECV1) && u_room(c) <= U_CAP_WINDOW) {
      rearm(c); /* near the cap: single-shot recvs from here */
    }
  } else if (c->flags & PT_CF_CLOSED) {
    return;
  } else if (res == 0) {
    if (!(c->flags & (PT_CF_RD_EOF | PT_CF_CLOSING))) read_eof(l, c);
  } else if (res == -ENOBUFS) {
    /* the ring ran dry: the re-armed recv goes out after this batch has
     * given its buffers back */
    l->st.ring_enobufs++;
  } else if (res != -ECANCELED && res != -EINTR && res != -EAGAIN) {
    close_conn(c, -res, 1);
    return;
  }
  if (!more) {
    if (c->spj_in && c->spj_in->wait_recv) {
      /* the recv is gone: the splice job may read the socket now */
      spj_recv_done(l, c->spj_in);
      return;
    }
    rearm(c);
  }
}

/* A send (plain or zc) of c completed with res. */
static void u_sent(pt_loop *l, pt_conn *c, int res, pt_buf *hold) {
  c->uflags &= ~(UF_SEND | UF_SEND_CXL);
  c->uops--;
  if (c->flags & PT_CF_CLOSED) return;
  if (res < 0) {
    if (res == -EINTR || res == -EAGAIN || res == -ENOBUFS) {
      if (u_submit_tx(l, c) != 0) close_conn(c, errno, 1);
      return;
    }
    close_conn(c, res == -ECANCELED ? EPIPE : -res, 1);
    return;
  }
  size_t n = (size_t)res;
  if (n > pt_buf_len(&c->tx)) n = pt_buf_len(&c->tx);
  if (hold)
    pt_buf_slice(&c->tx, n, hold); /* pinned until the notification */
  else
    pt_buf_skip(&c->tx, n);
  l->st.bytes_out += (uint64_t)n;
  if (pt_buf_len(&c->tx)) { /* short send: the rest first */
    if (u_submit_tx(l, c) != 0) close_conn(c, errno, 1);
    return;
  }
  /* tx is empty: more output, a file job, or drained */
  if (write_now(c) < 0) return;
  if (c->spj_out && c->spj_out->wait_out) {
    spj_step(l, c->spj_out);
    if (c->flags & PT_CF_CLOSED) return;
  }
  closing_step(c);
  if (!(c->flags & PT_CF_CLOSED)) rearm(c);
}

static void u_on_zc(pt_loop *l, pt_uzc *z, struct io_uring_cqe *cqe) {
  struct pt_uring *u = l->ur;
  if (cqe->flags & IORING_CQE_F_NOTIF) {
    if ((uint32_t)cqe->res & IORING_NOTIF_USAGE_ZC_COPIED) {
      /* the route copies anyway (loopback, no NIC support): the pinning
       * and the notification are pure cost there, so stop asking */
      l->st.zc_copied++;
      pt_conn *c = pt_loop_conn(l, z->cid);
      if (c) c->uflags |= UF_NOZC;
    }
    pt_buf_free(&z->hold);
    free(z);
    u->zc_inflight--;
    return;
  }
  pt_conn *c = z->c;
  z->c = NULL;
  if (c && c->us) c->us->zc = NULL;
  int notif = (cqe->flags & IORING_CQE_F_MORE) != 0;
  if (c) {
    if ((cqe->res == -EOPNOTSUPP || cqe->res == -EINVAL) &&
        !(c->flags & PT_CF_CLOSED)) {
      /* not for this socket: the same bytes again, copied */
      c->uflags |= UF_NOZC;
      c->uflags &= ~(UF_SEND | UF_SEND_CXL);
      c->uops--;
      if (u_submit_tx(l, c) != 0) close_conn(c, errno, 1);
    } else {
      u_sent(l, c, cqe->res, notif ? &z->hold : NULL);
    }
  }
  if (!notif) {
    pt_buf_free(&z->hold);
    free(z);
    u->zc_inflight--;
  }
}

static void u_on_poll(pt_loop *l, pt_conn *c, struct io_uring_cqe *cqe) {
  c->uflags &= ~(UF_POLL | UF_POLL_CXL);
  c->upoll = 0;
  c->uops--;
  if (c->flags & PT_CF_CLOSED) return;
  int res = cqe->res;
  if (res < 0) {
    if (res != -ECANCELED && res != -EINTR && res != -EAGAIN) {
      close_conn(c, -res, 1);
      return;
    }
  } else {
    uint32_t m = 0;
    if (res & POLLIN) m |= PT_R_IN;
    if (res & POLLOUT) m |= PT_R_OUT;
    if (res & POLLERR) m |= PT_R_ERR;
    if (res & POLLHUP) m |= PT_R_HUP;
    handle_conn(l, c, m);
    if (c->flags & PT_CF_CLOSED) return;
  }
  rearm(c);
}

static void u_on_wake(pt_loop *l, struct io_uring_cqe *cqe) {
  if (!(cqe->flags & IORING_CQE_F_MORE)) l->ur->wake_armed = 0;
  if (cqe->res >= 0) handle_wake(l);
}

static void u_dispatch(pt_loop *l, struct io_uring_cqe *cqe) {
  uint64_t ud = io_uring_cqe_get_data64(cqe);
  void *p = (void *)(uintptr_t)(ud & ~(uint64_t)U_TAGMASK);
  switch (ud & U_TAGMASK) {
    case U_ACCEPT: u_on_accept(l, p, cqe); break;
    case U_RECV: u_on_recv(l, p, cqe); break;
    case U_SEND: u_sent(l, p, cqe->res, NULL); break;
    case U_ZC: u_on_zc(l, p, cqe); break;
    case U_POLL: u_on_poll(l, p, cqe); break;
    case U_WAKE: u_on_wake(l, cqe); break;
    default: break; /* U_CANCEL */
  }
}

/* Reap what the completion queue holds; returns the count. */
static int u_reap(pt_loop *l) {
  struct io_uring *r = &l->ur->ring;
  struct io_uring_cqe *cqe;
  unsigned head, n = 0;
  io_uring_for_each_cqe(r, head, cqe) {
    u_dispatch(l, cqe);
    n++;
  }
  io_uring_cq_advance(r, n);
  l->st.ring_cqes += n;
  return (int)n;
}

/* One round: submit what is queued, wait up to timeout ms (<0: no limit)
 * for completions, dispatch them. Returns completions reaped, -1 if the
 * ring failed. */
static int u_wait(pt_loop *l, int timeout) {
  struct pt_uring *u = l->ur;
  struct io_uring *r = &u->ring;
  u->round++;
  if (u->broken) return fail(l, u->broken, "io_uring_submit");
  if (!u->wake_armed && u_add_wake(l) != 0) return -1;
  int n = u_reap(l); /* completions already there cost no system call */
  int rc;
  if (n > 0 || timeout == 0) {
    if (timeout == 0) l->st.wait_zero++;
    /* hand over the requests; under DEFER_TASKRUN this also runs the
     * kernel's completion work (an enter either way) */
    if (u->defer) {
      rc = io_uring_submit_and_get_events(r);
      l->st.ring_enters++;
    } else {
      if (io_uring_sq_ready(r) && !u->sqpoll) l->st.ring_enters++;
      rc = io_uring_submit(r);
    }
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
      return fail(l, -rc, "io_uring_enter");
    return n + u_reap(l);
  }
  l->st.wait_block++;
  struct io_uring_cqe *cqe;
  if (timeout > 0) {
    struct __kernel_timespec ts = {.tv_sec = timeout / 1000,
                                   .tv_nsec = (long long)(timeout % 1000) *
                                              1000000};
    rc = io_uring_submit_and_wait_timeout(r, &cqe, 1, &ts, NULL);
  } else {
    rc = io_uring_submit_and_wait(r, 1);
  }
  l->st.ring_enters++;
  if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
    return fail(l, -rc, "io_uring_enter");
  return u_reap(l);
}

/* Teardown: every conn is closed (requests cancelled); reap until nothing
 * names our memory any more, bounded in time. */
static void u_drain(pt_loop *l) {
  struct pt_uring *u = l->ur;
  struct io_uring *r = &u->ring;
  if (u->wake_armed) u_cancel(l, U_WAKE);
  int64_t end = mono_ms() + 2000;
  for (;;) {
    int busy = u->zc_inflight > 0 || u->wake_armed;
    for (pt_conn *c = l->dead; c && !busy; c = c->next_dead)
      if (c->uops) busy = 1;
    if (!busy || mono_ms() > end) break;
    struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 20000000};
    struct io_uring_cqe *cqe;
    io_uring_submit_and_wait_timeout(r, &cqe, 1, &ts, NULL);
    u_reap(l);
  }
}
