/*
 * be/pt_uring.c — the io_uring back end (pt_be.h), over liburing.
 * Compiled only when liburing is there (make URING=1, the default where
 * its header is found); the loop then offers backend = "uring" / "auto".
 *
 * Requests (user_data = pointer | tag; conns and zc records are 16-aligned)
 *   U_ACCEPT  multishot accept on a listener
 *   U_RECV    multishot recv into the provided buffer ring (group 0). A
 *             small completion's bytes are copied to c->in; a large one
 *             (U_LINK_MIN) is linked into c->in without a copy while
 *             less than half the ring is out, and its buffer goes back to
 *             the ring once the kernel is done with it and every byte
 *             linked from it is consumed. With IOU_PBUF_RING_INC (Linux
 *             6.12) buffers are large and consumed piecewise by the kernel,
 *             so small messages of many conns share one buffer. Near the
 *             input cap (U_CAP_WINDOW) recvs are single-shot and ask for
 *             exactly the room left.
 *   U_SEND    sendmsg of uc->tx (the output moved there, no copy), one in
 *             flight per conn so bytes leave in order; short sends resume.
 *   U_ZC      the same with sendmsg_zc, for sends of at least zc_min bytes:
 *             the sent bytes stay pinned (a slice in the zc record) until
 *             the kernel's notification.
 *   U_POLL    one-shot poll for PT_W_IN / PT_W_OUT (connect, sendfile,
 *             splice: the loop does those steps itself).
 *   U_WAKE    multishot poll on the wake eventfd.
 *   U_CANCEL  cancel requests (their completions are ignored).
 *   U_DGRECV  datagram sockets: multishot recvmsg into a buffer ring of
 *             their own (group U_DG_BGID, made for the first of them,
 *             ring_dgram_bufs buffers each holding any UDP datagram with
 *             its sender, mapped lazily); each completion's datagram is
 *             copied into the input as a record and its buffer goes back
 *             at once. Sends are sendmmsg (pt_be_dgsend): no ring request.
 *   U_DGOUT   a datagram socket's poll for room after sendmmsg found it full.
 *
 * Invariants
 *   - uc->ops counts requests in flight naming the conn (u->nops all of
 *     them); ops.busy keeps a closed conn's memory while it is not 0.
 *   - forget cancels every request of the conn (by user_data) before its
 *     fd is closed; completions of closed conns only give back buffers.
 *   - A recv and a PT_W_IN poll are never both in flight for a conn, nor a
 *     send and a PT_W_OUT poll.
 *   - Requests follow c->want whenever the loop calls arm, and after the
 *     loop has acted on the reports of a completion that ended one (u->again).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../pt_be.h"

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

enum { U_ACCEPT = 1, U_RECV, U_SEND, U_ZC, U_POLL, U_WAKE, U_CANCEL,
       U_DGRECV, U_DGOUT };
#define U_TAGMASK 15u

/* uc->flags */
#define UF_ACCEPT 0x01u   /* multishot accept armed */
#define UF_RECV 0x02u     /* recv armed */
#define UF_SEND 0x04u     /* a send (U_SEND or U_ZC) in flight */
#define UF_POLL 0x08u     /* a poll in flight (mask in uc->poll) */
#define UF_RECV_CXL 0x10u /* recv cancel asked for */
#define UF_POLL_CXL 0x20u /* poll cancel asked for */
#define UF_ACC_CXL 0x40u  /* accept cancel asked for */
#define UF_SEND_CXL 0x80u /* send cancel asked for */
#define UF_RECV1 0x100u   /* the recv is single-shot (near the input cap) */
#define UF_NOZC 0x200u    /* plain sends only: the route copies anyway */
#define UF_ZCCHK 0x400u   /* the route was looked at */
#define UF_DGOUT 0x800u   /* a datagram socket waits for room (U_DGOUT) */

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
#define U_DG_BGID 1           /* the datagram sockets' buffer ring */
#define U_DG_NBUFS 128        /* its buffers by default */

/* Bytes the input may still take before its cap (SIZE_MAX: no cap). The
 * loop's budget (pt_be_room) is not asked here: multishot recvs stay on
 * (the loop pauses heavy conns instead), a single-shot one asks for no more
 * than the cap allows. */
static inline size_t u_cap_room(const pt_conn *c) {
  size_t have = pt_buf_len(c->in);
  if (!c->in_cap) return SIZE_MAX;
  return have < c->in_cap ? c->in_cap - have : 0;
}

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

/* per conn, behind c->be */
typedef struct ur_conn {
  uint32_t flags; /* UF_* */
  uint32_t ops;   /* requests in flight naming the conn */
  uint32_t poll;  /* mask of the poll in flight */
  pt_buf tx;      /* bytes handed to the send in flight */
  pt_usend *us;   /* its msghdr and iovecs */
} ur_conn;

struct pt_uring {
  struct io_uring ring;
  struct io_uring_buf_ring *br;
  unsigned char *bufs;
  unsigned nbufs, bsize;
  uint32_t *boff;  /* incremental mode: bytes of each buffer used so far */
  uint32_t *brefs; /* links into each buffer not yet consumed */
  uint8_t *bkern;  /* the kernel is filling the buffer */
  unsigned nout;   /* buffers out of the ring (filling or linked) */
  size_t nlinked;  /* links not yet consumed, all buffers */
  int dead;        /* the loop is gone; memory stays for the links */
  int inc;         /* IOU_PBUF_RING_INC */
  int zc;          /* sendmsg_zc usable */
  int defer;       /* DEFER_TASKRUN: completions need an enter */
  int sqpoll;
  size_t zc_min;
  unsigned zc_inflight; /* zc records waiting for their notification */
  uint64_t nops;        /* requests in flight naming conns */
  int wake_armed;
  int broken;           /* errno of a failed submission: the loop fails */
  pt_conn *again;       /* re-arm once the loop acted on its reports */
  char note[160];
  /* datagram sockets' buffer ring (made for the first of them) */
  struct io_uring_buf_ring *dbr;
  unsigned char *dbufs;
  unsigned dnbufs;
  unsigned dbsize;
  struct msghdr dg_tmpl; /* what multishot recvmsg fills: the sender */
};

static inline uint64_t u_ud(const void *p, unsigned tag) {
  return (uint64_t)(uintptr_t)p | tag;
}

static inline pt_rep rep(int kind, pt_conn *c, int64_t res) {
  pt_rep r = {kind, res, c};
  return r;
}

static struct io_uring_sqe *u_sqe(pt_behost *h) {
  struct pt_uring *u = h->state;
  struct io_uring *r = &u->ring;
  struct io_uring_sqe *sqe = io_uring_get_sqe(r);
  while (!sqe) { /* the ring is full: hand what is queued to the kernel */
    int n = io_uring_submit(r);
    h->st->ring_enters++;
    if (n < 0 && n != -EINTR && n != -EAGAIN && n != -EBUSY) {
      u->broken = -n;
      return NULL;
    }
    if (r->flags & IORING_SETUP_SQPOLL) io_uring_sqring_wait(r);
    sqe = io_uring_get_sqe(r);
  }
  h->st->ring_sqes++;
  return sqe;
}

static void u_cancel(pt_behost *h, uint64_t ud) {
  struct io_uring_sqe *sqe = u_sqe(h);
  if (!sqe) return;
  io_uring_prep_cancel64(sqe, ud, IORING_ASYNC_CANCEL_ALL);
  io_uring_sqe_set_data64(sqe, U_CANCEL);
}

/* ---- set-up ------------------------------------------------------------ */

static int u_note_fail(pt_behost *h, int e, const char *what) {
  return pt_errf(h->err, h->errlen, e, "io_uring unavailable: %s", what);
}

static int u_add_wake(pt_behost *h) {
  struct pt_uring *u = h->state;
  struct io_uring_sqe *sqe = u_sqe(h);
  if (!sqe) return pt_errf(h->err, h->errlen, EBUSY, "io_uring: no submission slot");
  io_uring_prep_poll_multishot(sqe, h->wakefd, POLLIN);
  io_uring_sqe_set_data64(sqe, U_WAKE);
  u->wake_armed = 1;
  return 0;
}

static int u_init(pt_behost *h) {
  const pt_loop_opts *o = h->o;
  struct pt_uring *u = calloc(1, sizeof *u);
  if (!u) return u_note_fail(h, ENOMEM, "state");
  u->ring.ring_fd = -1;
  h->state = u;
  /* flags, best first; fewer when the kernel says EINVAL */
  unsigned want[3];
  int nwant = 0;
  if (o->sqpoll) {
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
    return u_note_fail(h, -r, "io_uring_setup");
  }
  u->defer = (p.flags & IORING_SETUP_DEFER_TASKRUN) != 0;
  u->sqpoll = (p.flags & IORING_SETUP_SQPOLL) != 0;
  if (!(p.features & IORING_FEAT_EXT_ARG))
    return u_note_fail(h, ENOSYS, "IORING_FEAT_EXT_ARG (Linux 5.11+)");
  if (!(p.features & IORING_FEAT_NODROP))
    return u_note_fail(h, ENOSYS, "IORING_FEAT_NODROP (Linux 5.5+)");
  struct io_uring_probe *pr = io_uring_get_probe_ring(&u->ring);
  if (!pr) return u_note_fail(h, ENOSYS, "probe");
  /* multishot recv came with send_zc (Linux 6.0) */
  int ok = io_uring_opcode_supported(pr, IORING_OP_SEND_ZC) &&
           io_uring_opcode_supported(pr, IORING_OP_SENDMSG) &&
           io_uring_opcode_supported(pr, IORING_OP_ACCEPT) &&
           io_uring_opcode_supported(pr, IORING_OP_POLL_ADD) &&
           io_uring_opcode_supported(pr, IORING_OP_ASYNC_CANCEL);
  u->zc = io_uring_opcode_supported(pr, IORING_OP_SENDMSG_ZC);
  io_uring_free_probe(pr);
  if (!ok) return u_note_fail(h, ENOSYS, "multishot recv (Linux 6.0+)");
  /* provided buffer ring: incremental consumption where the kernel has it */
  for (int inc = !o->ring_noinc; inc >= 0; inc--) {
    unsigned n = o->ring_bufs ? o->ring_bufs : inc ? 64 : 1024;
    unsigned sz = o->ring_buf_size ? o->ring_buf_size
                  : inc            ? 64u << 10
                                   : 4096u;
    if (n & (n - 1) || n > 32768 || sz < 256)
      return u_note_fail(h, EINVAL, "ring_bufs (a power of 2 up to 32768)");
    size_t rsz = (size_t)n * sizeof(struct io_uring_buf);
    void *rm = mmap(NULL, rsz, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (rm == MAP_FAILED) return u_note_fail(h, errno, "mmap");
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
    if (!inc) return u_note_fail(h, -r, "provided buffer ring (Linux 5.19+)");
  }
  u->bufs = mmap(NULL, (size_t)u->nbufs * u->bsize, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (u->bufs == MAP_FAILED) {
    u->bufs = NULL;
    return u_note_fail(h, errno, "mmap");
  }
  u->boff = calloc(u->nbufs, sizeof *u->boff);
  u->brefs = calloc(u->nbufs, sizeof *u->brefs);
  u->bkern = calloc(u->nbufs, sizeof *u->bkern);
  if (!u->boff || !u->brefs || !u->bkern) return u_note_fail(h, ENOMEM, "state");
  for (unsigned i = 0; i < u->nbufs; i++)
    io_uring_buf_ring_add(u->br, u->bufs + (size_t)i * u->bsize, u->bsize,
                          (unsigned short)i, io_uring_buf_ring_mask(u->nbufs),
                          (int)i);
  io_uring_buf_ring_advance(u->br, (int)u->nbufs);
  u->zc_min = o->zc_min ? o->zc_min : 64u << 10;
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
  return u_add_wake(h);
}

static const char *u_note(pt_behost *h) {
  struct pt_uring *u = h->state;
  return u ? u->note : "";
}

static void u_memory_free(struct pt_uring *u) {
  if (u->br) munmap(u->br, (size_t)u->nbufs * sizeof(struct io_uring_buf));
  if (u->bufs) munmap(u->bufs, (size_t)u->nbufs * u->bsize);
  if (u->dbr) munmap(u->dbr, (size_t)u->dnbufs * sizeof(struct io_uring_buf));
  if (u->dbufs) munmap(u->dbufs, (size_t)u->dnbufs * u->dbsize);
  free(u->boff);
  free(u->brefs);
  free(u->bkern);
  free(u);
}

/* ---- requests ------------------------------------------------------------ */

static void u_arm_accept(pt_behost *h, pt_conn *c) {
  struct pt_uring *u = h->state;
  ur_conn *uc = c->be;
  struct io_uring_sqe *sqe = u_sqe(h);
  if (!sqe) return;
  io_uring_prep_multishot_accept(sqe, c->fd, NULL, NULL,
                                 SOCK_NONBLOCK | SOCK_CLOEXEC);
  io_uring_sqe_set_data64(sqe, u_ud(c, U_ACCEPT));
  uc->flags |= UF_ACCEPT;
  uc->ops++;
  u->nops++;
}

static void u_arm_recv(pt_behost *h, pt_conn *c, size_t room) {
  struct pt_uring *u = h->state;
  ur_conn *uc = c->be;
  struct io_uring_sqe *sqe = u_sqe(h);
  if (!sqe) return;
  if (room <= U_CAP_WINDOW) {
    io_uring_prep_recv(sqe, c->fd, NULL, (size_t)room, 0);
    uc->flags |= UF_RECV1;
  } else {
    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    uc->flags &= ~UF_RECV1;
  }
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = U_BGID;
  io_uring_sqe_set_data64(sqe, u_ud(c, U_RECV));
  uc->flags |= UF_RECV;
  uc->ops++;
  u->nops++;
}

static void u_arm_poll(pt_behost *h, pt_conn *c, uint32_t mask) {
  struct pt_uring *u = h->state;
  ur_conn *uc = c->be;
  struct io_uring_sqe *sqe = u_sqe(h);
  if (!sqe) return;
  io_uring_prep_poll_add(sqe, c->fd, mask);
  io_uring_sqe_set_data64(sqe, u_ud(c, U_POLL));
  uc->flags |= UF_POLL;
  uc->poll = mask;
  uc->ops++;
  u->nops++;
}

/* May a send of c use sendmsg_zc? Not where the kernel would copy anyway:
 * unix sockets (not supported) and loopback (always copied, and with tiny
 * socket buffers it stalls TCP there), unless opts.zc_force; later, not on
 * a conn whose zc sends the kernel reported as copied. */
static int u_zc_ok(pt_behost *h, pt_conn *c) {
  ur_conn *uc = c->be;
  if (uc->flags & UF_NOZC) return 0;
  if (!(uc->flags & UF_ZCCHK)) {
    uc->flags |= UF_ZCCHK;
    if (h->o->zc_force) return 1;
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
                (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr) &&
                 a->sin6_addr.s6_addr[12] == 127);
      }
    }
    if (local) uc->flags |= UF_NOZC;
  }
  return !(uc->flags & UF_NOZC);
}

/* Send what uc->tx holds (up to PT_UIOV nodes). 0, or -1 with errno. */
static int u_submit_tx(pt_behost *h, pt_conn *c) {
  struct pt_uring *u = h->state;
  ur_conn *uc = c->be;
  if (!uc->us && !(uc->us = calloc(1, sizeof *uc->us))) {
    errno = ENOMEM;
    return -1;
  }
  pt_usend *us = uc->us;
  int n = pt_buf_iov(&uc->tx, us->iov, PT_UIOV, SIZE_MAX);
  size_t total = 0;
  for (int i = 0; i < n; i++) total += us->iov[i].iov_len;
  memset(&us->msg, 0, sizeof us->msg);
  us->msg.msg_iov = us->iov;
  us->msg.msg_iovlen = (size_t)n;
  struct io_uring_sqe *sqe = u_sqe(h);
  if (!sqe) {
    errno = EBUSY;
    return -1;
  }
  if (u->zc && total >= u->zc_min && u_zc_ok(h, c)) {
    pt_uzc *z = calloc(1, sizeof *z);
    if (!z) {
      errno = ENOMEM;
      return -1;
    }
    z->c = c;
    z->cid = c->id;
    pt_buf_init(&z->hold, h->pool);
    io_uring_prep_sendmsg_zc(sqe, c->fd, &us->msg, MSG_NOSIGNAL);
    sqe->ioprio |= IORING_SEND_ZC_REPORT_USAGE;
    io_uring_sqe_set_data64(sqe, u_ud(z, U_ZC));
    us->zc = z;
    u->zc_inflight++;
    h->st->zc_sends++;
  } else {
    io_uring_prep_sendmsg(sqe, c->fd, &us->msg, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, u_ud(c, U_SEND));
    us->zc = NULL;
  }
  h->st->writev_calls++;
  uc->flags |= UF_SEND;
  uc->ops++;
  u->nops++;
  return 0;
}

/* ---- datagram sockets ------------------------------------------------------ */

/* Their buffer ring, made once: 0, or -1 with errno and h->err. */
static int u_dg_setup(pt_behost *h) {
  struct pt_uring *u = h->state;
  if (u->dbr) return 0;
  unsigned n = h->o->ring_dgram_bufs ? h->o->ring_dgram_bufs : U_DG_NBUFS;
  if (n & (n - 1) || n > 32768)
    return pt_errf(h->err, h->errlen, EINVAL,
                   "ring_dgram_bufs (a power of 2 up to 32768)");
  /* the completion's header, the sender, any UDP datagram */
  size_t bsize = sizeof(struct io_uring_recvmsg_out) +
                 sizeof(struct sockaddr_in6) + PT_DG_MAX;
  bsize = (bsize + 63) & ~(size_t)63;
  size_t rsz = (size_t)n * sizeof(struct io_uring_buf);
  void *rm = mmap(NULL, rsz, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (rm == MAP_FAILED) return pt_errf(h->err, h->errlen, errno, "mmap");
  void *bm = mmap(NULL, (size_t)n * bsize, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (bm == MAP_FAILED) {
    int e = errno;
    munmap(rm, rsz);
    return pt_errf(h->err, h->errlen, e, "mmap");
  }
  io_uring_buf_ring_init(rm);
  struct io_uring_buf_reg reg;
  memset(&reg, 0, sizeof reg);
  reg.ring_addr = (uint64_t)(uintptr_t)rm;
  reg.ring_entries = n;
  reg.bgid = U_DG_BGID;
  int r = io_uring_register_buf_ring(&u->ring, &reg, 0);
  if (r != 0) {
    munmap(rm, rsz);
    munmap(bm, (size_t)n * bsize);
    return pt_errf(h->err, h->errlen, -r, "io_uring: buffer ring for datagrams");
  }
  u->dbr = rm;
  u->dbufs = bm;
  u->dnbufs = n;
  u->dbsize = (unsigned)bsize;
  for (unsigned i = 0; i < n; i++)
    io_uring_buf_ring_add(u->dbr, u->dbufs + (size_t)i * bsize,
                          (unsigned)bsize, (unsigned short)i,
                          io_uring_buf_ring_mask(n), (int)i);
  io_uring_buf_ring_advance(u->dbr, (int)n);
  memset(&u->dg_tmpl, 0, sizeof u->dg_tmpl);
  u->dg_tmpl.msg_namelen = sizeof(struct sockaddr_in6);
  return 0;
}

static void u_dgbuf_put(struct pt_uring *u, unsigned bid) {
  if (u->dead) return;
  io_uring_buf_ring_add(u->dbr, u->dbufs + (size_t)bid * u->dbsize, u->dbsize,
                        (unsigned short)bid, io_uring_buf_ring_mask(u->dnbufs),
                        0);
  io_uring_buf_ring_advance(u->dbr, 1);
}

static int u_dg_arm(pt_behost *h, pt_conn *c) {
  struct pt_uring *u = h->state;
  ur_conn *uc = c->be;
  int want = (c->want & PT_W_RECV) != 0;
  if (want && !(uc->flags & UF_RECV)) {
    if (u_dg_setup(h) != 0) return -1;
    struct io_uring_sqe *sqe = u_sqe(h);
    if (!sqe) return 0;
    /* MSG_TRUNC: payloadlen is the datagram's real length */
    io_uring_prep_recvmsg_multishot(sqe, c->fd, &u->dg_tmpl, MSG_TRUNC);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = U_DG_BGID;
    io_uring_sqe_set_data64(sqe, u_ud(c, U_DGRECV));
    uc->flags |= UF_RECV;
    uc->ops++;
    u->nops++;
  }
  if (!want && (uc->flags & UF_RECV) && !(uc->flags & UF_RECV_CXL)) {
    u_cancel(h, u_ud(c, U_DGRECV));
    uc->flags |= UF_RECV_CXL;
  }
  return 0;
}

/* sendmmsg now; when the socket is full, a poll says when to go on. */
static int u_dg_send(pt_behost *h, pt_conn *c) {
  struct pt_uring *u = h->state;
  ur_conn *uc = c->be;
  if (uc->flags & UF_DGOUT) return PT_SEND_PENDING;
  int r = pt_be_dgsend(h, c);
  if (r <= 0) return r < 0 ? -1 : PT_SEND_DONE;
  struct io_uring_sqe *sqe = u_sqe(h);
  if (!sqe) {
    errno = EBUSY;
    return -1;
  }
  io_uring_prep_poll_add(sqe, c->fd, POLLOUT);
  io_uring_sqe_set_data64(sqe, u_ud(c, U_DGOUT));
  uc->flags |= UF_DGOUT;
  uc->ops++;
  u->nops++;
  return PT_SEND_PENDING;
}

/* The output moves to tx and leaves in one request (no copy). */
static int u_send(pt_behost *h, pt_conn *c) {
  ur_conn *uc = c->be;
  if (c->kind == PT_KIND_DGRAM) return u_dg_send(h, c);
  if (uc->flags & UF_SEND) return PT_SEND_PENDING;
  if (!pt_buf_len(c->out)) return PT_SEND_DONE;
  pt_buf_move(&uc->tx, c->out);
  if (u_submit_tx(h, c) != 0) return -1;
  return PT_SEND_PENDING;
}

/* Requests follow c->want. */
static int u_arm(pt_behost *h, pt_conn *c) {
  ur_conn *uc = c->be;
  uint32_t w = c->want, pmask = 0;
  if (c->flags & PT_CF_CLOSED) return 0;
  if (c->kind == PT_KIND_DGRAM) return u_dg_arm(h, c);
  if (c->kind == PT_KIND_LISTENER) {
    int want = (w & PT_W_ACCEPT) != 0;
    if (want && !(uc->flags & UF_ACCEPT)) u_arm_accept(h, c);
    if (!want && (uc->flags & UF_ACCEPT) && !(uc->flags & UF_ACC_CXL)) {
      u_cancel(h, u_ud(c, U_ACCEPT));
      uc->flags |= UF_ACC_CXL;
    }
    return 0;
  }
  size_t room = u_cap_room(c);
  int recv = (w & PT_W_RECV) && room > 0;
  if (recv && !(uc->flags & UF_RECV)) u_arm_recv(h, c, room);
  /* a multishot recv near the cap gives way to single-shot ones */
  if (recv && (uc->flags & UF_RECV) && !(uc->flags & UF_RECV1) &&
      room <= U_CAP_WINDOW)
    recv = 0;
  if (!recv && (uc->flags & UF_RECV) && !(uc->flags & UF_RECV_CXL)) {
    u_cancel(h, u_ud(c, U_RECV));
    uc->flags |= UF_RECV_CXL;
  }
  /* readiness only once no recv / send of ours is in flight */
  if ((w & PT_W_IN) && !(uc->flags & UF_RECV)) pmask |= POLLIN;
  if ((w & PT_W_OUT) && !(uc->flags & UF_SEND)) pmask |= POLLOUT;
  if (uc->flags & UF_POLL) {
    if (uc->poll != pmask && !(uc->flags & UF_POLL_CXL)) {
      u_cancel(h, u_ud(c, U_POLL));
      uc->flags |= UF_POLL_CXL;
    }
  } else if (pmask) {
    u_arm_poll(h, c, pmask);
  }
  return 0;
}

/* The conn is closing: cancel whatever it has in flight. */
static void u_forget(pt_behost *h, pt_conn *c) {
  ur_conn *uc = c->be;
  if (c->kind == PT_KIND_DGRAM) {
    if ((uc->flags & UF_RECV) && !(uc->flags & UF_RECV_CXL))
      u_cancel(h, u_ud(c, U_DGRECV));
    if (uc->flags & UF_DGOUT) u_cancel(h, u_ud(c, U_DGOUT));
    uc->flags |= UF_RECV_CXL;
    return;
  }
  if ((uc->flags & UF_ACCEPT) && !(uc->flags & UF_ACC_CXL))
    u_cancel(h, u_ud(c, U_ACCEPT));
  if ((uc->flags & UF_RECV) && !(uc->flags & UF_RECV_CXL))
    u_cancel(h, u_ud(c, U_RECV));
  if ((uc->flags & UF_POLL) && !(uc->flags & UF_POLL_CXL))
    u_cancel(h, u_ud(c, U_POLL));
  if ((uc->flags & UF_SEND) && !(uc->flags & UF_SEND_CXL)) {
    if (uc->us && uc->us->zc)
      u_cancel(h, u_ud(uc->us->zc, U_ZC));
    else
      u_cancel(h, u_ud(c, U_SEND));
    uc->flags |= UF_SEND_CXL;
  }
  uc->flags |= UF_ACC_CXL | UF_RECV_CXL | UF_POLL_CXL;
}

static void u_attach(pt_behost *h, pt_conn *c) {
  ur_conn *uc = c->be;
  pt_buf_init(&uc->tx, h->pool);
  pt_buf_set_lean(&uc->tx, PT_LEAN_EMPTY); /* nothing kept once sent */
}

static int u_busy(const pt_conn *c) {
  const ur_conn *uc = c->be;
  return uc->ops != 0;
}

static void u_release(pt_behost *h, pt_conn *c) {
  (void)h;
  ur_conn *uc = c->be;
  pt_buf_free(&uc->tx);
  free(uc->us);
  uc->us = NULL;
}

static size_t u_held(const pt_conn *c) {
  const ur_conn *uc = c->be;
  return pt_buf_len(&uc->tx);
}

/* ---- completions ------------------------------------------------------- */

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

/* A request of c ended (its last completion). */
static void u_done(struct pt_uring *u, pt_conn *c, uint32_t clear) {
  ur_conn *uc = c->be;
  uc->flags &= ~clear;
  uc->ops--;
  u->nops--;
  u->again = c;
}

static int u_on_accept(pt_behost *h, pt_conn *lc, struct io_uring_cqe *cqe,
                       pt_rep *out) {
  int fd = cqe->res;
  if (!(cqe->flags & IORING_CQE_F_MORE))
    u_done(h->state, lc, UF_ACCEPT | UF_ACC_CXL);
  if (lc->flags & PT_CF_CLOSED) {
    if (fd >= 0) close(fd);
    return 0;
  }
  if (fd >= 0 || fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS ||
      fd == -ENOMEM) {
    out[0] = rep(PT_RP_ACCEPT, lc, fd);
    return 1;
  }
  return 0;
}

static int u_on_recv(pt_behost *h, pt_conn *c, struct io_uring_cqe *cqe,
                     pt_rep *out) {
  struct pt_uring *u = h->state;
  ur_conn *uc = c->be;
  int more = (cqe->flags & IORING_CQE_F_MORE) != 0;
  int res = cqe->res;
  if (!more) u_done(u, c, UF_RECV | UF_RECV_CXL);
  if (res > 0 && (cqe->flags & IORING_CQE_F_BUFFER)) {
    unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
    if (bid >= u->nbufs) return 0; /* cannot happen */
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
        h->st->ring_linked++;
      } else {
        ok = pt_buf_append(c->in, p, (size_t)res) == 0;
      }
      if (ok) {
        h->st->bytes_in += (uint64_t)res;
        h->st->readv_calls++;
      }
    }
    if (u->inc && (cqe->flags & IORING_CQE_F_BUF_MORE)) {
      u->boff[bid] += (uint32_t)res;
    } else {
      u->bkern[bid] = 0;
      if (!u->brefs[bid]) u_buf_put(u, bid);
    }
    if (c->flags & PT_CF_CLOSED) return 0;
    if (!ok) {
      out[0] = rep(PT_RP_FAIL, c, ENOMEM);
      return 1;
    }
    /* near the cap: single-shot recvs from here (after the loop looked) */
    if (more && !(uc->flags & UF_RECV1) && u_cap_room(c) <= U_CAP_WINDOW)
      u->again = c;
    out[0] = rep(PT_RP_INPUT, c, res);
    return 1;
  }
  if (c->flags & PT_CF_CLOSED) return 0;
  if (res == 0) {
    out[0] = rep(PT_RP_EOF, c, 0);
    return 1;
  }
  if (res == -ENOBUFS) {
    /* the ring ran dry: the re-armed recv goes out after this batch has
     * given its buffers back */
    h->st->ring_enobufs++;
  } else if (res != -ECANCELED && res != -EINTR && res != -EAGAIN) {
    out[0] = rep(PT_RP_FAIL, c, -res);
    return 1;
  }
  return 0;
}

/* A send (plain or zc) of c completed with res. */
static int u_sent(pt_behost *h, pt_conn *c, int res, pt_buf *hold,
                  pt_rep *out) {
  ur_conn *uc = c->be;
  u_done(h->state, c, UF_SEND | UF_SEND_CXL);
  if (c->flags & PT_CF_CLOSED) return 0;
  if (res < 0) {
    if (res == -EINTR || res == -EAGAIN || res == -ENOBUFS) {
      if (u_submit_tx(h, c) == 0) return 0;
      res = -errno;
    }
    out[0] = rep(PT_RP_FAIL, c, res == -ECANCELED ? EPIPE : -res);
    return 1;
  }
  size_t n = (size_t)res;
  if (n > pt_buf_len(&uc->tx)) n = pt_buf_len(&uc->tx);
  if (hold)
    pt_buf_slice(&uc->tx, n, hold); /* pinned until the notification */
  else
    pt_buf_skip(&uc->tx, n);
  h->st->bytes_out += (uint64_t)n;
  if (pt_buf_len(&uc->tx)) { /* short send: the rest first */
    if (u_submit_tx(h, c) == 0) return 0;
    out[0] = rep(PT_RP_FAIL, c, errno);
    return 1;
  }
  out[0] = rep(PT_RP_SENT, c, 0);
  return 1;
}

static int u_on_zc(pt_behost *h, pt_uzc *z, struct io_uring_cqe *cqe,
                   pt_rep *out) {
  struct pt_uring *u = h->state;
  int k = 0;
  if (cqe->flags & IORING_CQE_F_NOTIF) {
    if ((uint32_t)cqe->res & IORING_NOTIF_USAGE_ZC_COPIED) {
      /* the route copies anyway (loopback, no NIC support): the pinning
       * and the notification are pure cost there, so stop asking */
      h->st->zc_copied++;
      pt_conn *c = pt_loop_conn(h->loop, z->cid);
      if (c) ((ur_conn *)c->be)->flags |= UF_NOZC;
    }
    pt_buf_free(&z->hold);
    free(z);
    u->zc_inflight--;
    return 0;
  }
  pt_conn *c = z->c;
  z->c = NULL;
  int notif = (cqe->flags & IORING_CQE_F_MORE) != 0;
  if (c) {
    ur_conn *uc = c->be;
    if (uc->us) uc->us->zc = NULL;
    if ((cqe->res == -EOPNOTSUPP || cqe->res == -EINVAL) &&
        !(c->flags & PT_CF_CLOSED)) {
      /* not for this socket: the same bytes again, copied */
      uc->flags |= UF_NOZC;
      u_done(u, c, UF_SEND | UF_SEND_CXL);
      if (u_submit_tx(h, c) != 0) out[k++] = rep(PT_RP_FAIL, c, errno);
    } else {
      k = u_sent(h, c, cqe->res, notif ? &z->hold : NULL, out);
    }
  }
  if (!notif) {
    pt_buf_free(&z->hold);
    free(z);
    u->zc_inflight--;
  }
  return k;
}

static int u_on_poll(pt_behost *h, pt_conn *c, struct io_uring_cqe *cqe,
                     pt_rep *out) {
  ur_conn *uc = c->be;
  uc->poll = 0;
  u_done(h->state, c, UF_POLL | UF_POLL_CXL);
  if (c->flags & PT_CF_CLOSED) return 0;
  int res = cqe->res, k = 0;
  if (res < 0) {
    if (res != -ECANCELED && res != -EINTR && res != -EAGAIN)
      out[k++] = rep(PT_RP_FAIL, c, -res);
    return k;
  }
  uint32_t m = (res & POLLIN ? PT_R_IN : 0) | (res & POLLOUT ? PT_R_OUT : 0) |
               (res & POLLERR ? PT_R_ERR : 0) | (res & POLLHUP ? PT_R_HUP : 0);
  out[k++] = rep(PT_RP_READY, c, m);
  if (m & PT_R_ERR)
    out[k++] = rep(PT_RP_FAIL, c, -1);
  else if (m & PT_R_HUP)
    out[k++] = rep(PT_RP_HUP, c, 0);
  return k;
}

/* A datagram, or how a datagram socket's receive ended. */
static int u_on_dgrecv(pt_behost *h, pt_conn *c, struct io_uring_cqe *cqe,
                       pt_rep *out) {
  struct pt_uring *u = h->state;
  int res = cqe->res;
  if (!(cqe->flags & IORING_CQE_F_MORE)) u_done(u, c, UF_RECV | UF_RECV_CXL);
  if (res >= 0 && (cqe->flags & IORING_CQE_F_BUFFER)) {
    unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
    if (bid >= u->dnbufs) return 0; /* cannot happen */
    unsigned char *buf = u->dbufs + (size_t)bid * u->dbsize;
    struct msghdr *t = &u->dg_tmpl;
    struct io_uring_recvmsg_out *o;
    int k = 0;
    if (!(c->flags & PT_CF_CLOSED) &&
        (o = io_uring_recvmsg_validate(buf, res, t)) != NULL) {
      socklen_t alen = o->namelen < t->msg_namelen ? o->namelen : t->msg_namelen;
      size_t have = io_uring_recvmsg_payload_length(o, res, t);
      size_t full = o->payloadlen > have ? o->payloadlen : have;
      size_t kept = have < c->dg->max ? have : c->dg->max;
      h->st->readv_calls++;
      if (pt_be_dgput(h, c, io_uring_recvmsg_name(o), alen,
                      io_uring_recvmsg_payload(o, t), kept, full) == 0)
        out[k++] = rep(full > kept ? PT_RP_DGCUT : PT_RP_DGRAM, c, (int64_t)kept);
    }
    u_dgbuf_put(u, bid);
    return k;
  }
  if (c->flags & PT_CF_CLOSED) return 0;
  if (res == -ENOBUFS) { /* the ring ran dry: re-armed at once (u->again) */
    h->st->ring_enobufs++;
    return 0;
  }
  if (res >= 0 || res == -ECANCELED || res == -EINTR || res == -EAGAIN)
    return 0;
  out[0] = rep(PT_RP_DGERR, c, -res); /* ECONNREFUSED...: re-armed */
  return 1;
}

static int u_on_dgout(pt_behost *h, pt_conn *c, struct io_uring_cqe *cqe,
                      pt_rep *out) {
  (void)cqe;
  u_done(h->state, c, UF_DGOUT);
  if (c->flags & PT_CF_CLOSED) return 0;
  out[0] = rep(PT_RP_SENT, c, 0); /* the next send says how it went */
  return 1;
}

static int u_dispatch(pt_behost *h, struct io_uring_cqe *cqe, pt_rep *out) {
  struct pt_uring *u = h->state;
  uint64_t ud = io_uring_cqe_get_data64(cqe);
  void *p = (void *)(uintptr_t)(ud & ~(uint64_t)U_TAGMASK);
  switch (ud & U_TAGMASK) {
    case U_ACCEPT: return u_on_accept(h, p, cqe, out);
    case U_RECV: return u_on_recv(h, p, cqe, out);
    case U_SEND: return u_sent(h, p, cqe->res, NULL, out);
    case U_ZC: return u_on_zc(h, p, cqe, out);
    case U_POLL: return u_on_poll(h, p, cqe, out);
    case U_DGRECV: return u_on_dgrecv(h, p, cqe, out);
    case U_DGOUT: return u_on_dgout(h, p, cqe, out);
    case U_WAKE:
      if (!(cqe->flags & IORING_CQE_F_MORE)) u->wake_armed = 0;
      if (cqe->res < 0) return 0;
      out[0] = rep(PT_RP_WAKE, NULL, 0);
      return 1;
    default: return 0; /* U_CANCEL */
  }
}

/* The next completion already in the queue, without entering the kernel. */
static struct io_uring_cqe *u_peek(struct io_uring *r) {
  struct io_uring_cqe *cqe = NULL;
  unsigned head;
  if (!io_uring_cq_ready(r)) return NULL;
  io_uring_for_each_cqe(r, head, cqe) { break; }
  return cqe;
}

static int u_next(pt_behost *h, pt_rep *out, int max) {
  struct pt_uring *u = h->state;
  struct io_uring *r = &u->ring;
  (void)max; /* a completion gives at most 2 reports */
  for (;;) {
    if (u->again) { /* the loop has acted on the last reports */
      pt_conn *c = u->again;
      u->again = NULL;
      u_arm(h, c);
    }
    struct io_uring_cqe *cqe = u_peek(r);
    if (!cqe) return 0;
    int k = u_dispatch(h, cqe, out);
    io_uring_cq_advance(r, 1);
    h->st->ring_cqes++;
    if (k) return k;
  }
}

/* Submit what is queued; wait up to timeout ms (< 0: no limit) unless
 * completions are there already. */
static int u_wait(pt_behost *h, int timeout) {
  struct pt_uring *u = h->state;
  struct io_uring *r = &u->ring;
  if (u->broken)
    return pt_errf(h->err, h->errlen, u->broken, "io_uring_submit");
  if (!u->wake_armed && u_add_wake(h) != 0) return -1;
  int rc;
  if (io_uring_cq_ready(r) || timeout == 0) {
    if (timeout == 0) h->st->wait_zero++;
    /* hand over the requests; under DEFER_TASKRUN this also runs the
     * kernel's completion work (an enter either way) */
    if (u->defer) {
      rc = io_uring_submit_and_get_events(r);
      h->st->ring_enters++;
    } else {
      if (io_uring_sq_ready(r) && !u->sqpoll) h->st->ring_enters++;
      rc = io_uring_submit(r);
    }
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
      return pt_errf(h->err, h->errlen, -rc, "io_uring_enter");
    return (int)io_uring_cq_ready(r);
  }
  h->st->wait_block++;
  struct io_uring_cqe *cqe;
  if (timeout > 0) {
    struct __kernel_timespec ts = {.tv_sec = timeout / 1000,
                                   .tv_nsec = (long long)(timeout % 1000) *
                                              1000000};
    rc = io_uring_submit_and_wait_timeout(r, &cqe, 1, &ts, NULL);
  } else {
    rc = io_uring_submit_and_wait(r, 1);
  }
  h->st->ring_enters++;
  if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
    return pt_errf(h->err, h->errlen, -rc, "io_uring_enter");
  return (int)io_uring_cq_ready(r);
}

static int64_t u_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Teardown: every conn is closed (requests cancelled); reap until nothing
 * names our memory any more, bounded in time. */
static void u_drain(pt_behost *h) {
  struct pt_uring *u = h->state;
  if (!u || u->ring.ring_fd < 0) return;
  struct io_uring *r = &u->ring;
  if (u->wake_armed) u_cancel(h, U_WAKE);
  int64_t end = u_ms() + 2000;
  pt_rep scratch[PT_REP_MIN];
  for (;;) {
    struct io_uring_cqe *cqe;
    while ((cqe = u_peek(r))) {
      u_dispatch(h, cqe, scratch); /* closed conns: nothing to report */
      io_uring_cq_advance(r, 1);
      h->st->ring_cqes++;
    }
    u->again = NULL;
    if ((!u->zc_inflight && !u->wake_armed && !u->nops) || u_ms() > end) break;
    struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 20000000};
    io_uring_submit_and_wait_timeout(r, &cqe, 1, &ts, NULL);
  }
}

static void u_free(pt_behost *h) {
  struct pt_uring *u = h->state;
  if (!u) return;
  if (u->ring.ring_fd >= 0) {
    if (!h->forked) u_drain(h);
    io_uring_queue_exit(&u->ring); /* in a forked child: unmaps, closes */
    u->ring.ring_fd = -1;
  }
  h->state = NULL;
  if (u->nlinked) { /* buffers that outlive the loop still point here */
    u->dead = 1;
    return;
  }
  u_memory_free(u);
}

const pt_be_ops pt_be_uring = {
    .name = "io_uring",
    .conn_size = sizeof(ur_conn),
    .spin = 0, /* submit and wait are one enter */
    .init = u_init,
    .free = u_free,
    .drain = u_drain,
    .note = u_note,
    .attach = u_attach,
    .arm = u_arm,
    .forget = u_forget,
    .busy = u_busy,
    .release = u_release,
    .send = u_send,
    .held = u_held,
    .wait = u_wait,
    .next = u_next,
};
