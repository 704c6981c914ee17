/*
 * pt_conn.c — a connection's life: ids, the completion queue, interest,
 * input, output, close, the memory budget and deferred sends; the pt_conn_*
 * functions of pt_loop.h other than sockets (pt_sock.c) and zero-copy jobs
 * (pt_zc.c).
 *
 * Layout
 *   1. completions, ids, wake-ups
 *   2. conns: made, attached to the back end, recycled
 *   3. interest: the flags -> c->want -> the back end
 *   4. the budget: input + unsent output, per conn and per loop
 *   5. input
 *   6. output: the writer (bytes, then the file ranges sendfile queued),
 *      sends, deferred sends
 *   7. close
 *
 * Invariants
 *   - A conn's memory is freed only by pt__recycle, which the round runs at
 *     the start of pt_loop_poll right after the deferred-send flush (so the
 *     dirty list is empty) and only when no completion is queued (so no
 *     queued or delivered event names a freed conn); pt_loop_free is the
 *     other place. A conn the back end still has requests for waits.
 *   - pt__close is idempotent; the back end forgets the conn before its fd
 *     is closed, so the back end never sees a closed fd.
 *   - c->want is what the back end was last told (pt__rearm).
 *   - l->held is the sum of c->held over all conns.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pt_conn.h"
#include "pt_private.h"

#define PT_IOV_MAX ((int)(sizeof ((pt_loop *)0)->iov / sizeof(struct iovec)))
#define PT_SENDFILE_MAX 0x7ffff000u
#define PT_HEAVY (256u << 10)   /* unsent output that makes a conn heavy */
#define PT_TRICKLE (256u << 10) /* reads per event near or over budget */

/* ---- 1. completions, ids, wake-ups ------------------------------------- */

int pt__push(pt_loop *l, int type, int err, uint64_t id, uint64_t arg,
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
      if (!q) return -1; /* dropped: out of memory */
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
  return 0;
}

int pt__deliver(pt_loop *l, pt_event *out, int max) {
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

static int slot_alloc(pt_loop *l, pt_conn *c) {
  uint32_t s;
  if (l->cfree != PT_NO_SLOT) {
    s = l->cfree;
    l->cfree = l->cs[s].next_free;
  } else {
    if (l->ncs == l->cscap) {
      uint32_t cap = l->cscap ? l->cscap * 2 : 64;
      if (cap > PT_SLOT_MASK + 1u) cap = PT_SLOT_MASK + 1u;
      if (cap == l->cscap) return -1;
      pt_cslot *cs = realloc(l->cs, cap * sizeof *cs);
      if (!cs) return -1;
      l->cs = cs;
      l->cscap = cap;
    }
    s = l->ncs++;
    l->cs[s].gen = 1;
  }
  l->cs[s].c = c;
  c->id = PT_MKID(l->cs[s].gen, s);
  return 0;
}

static void slot_free(pt_loop *l, uint64_t id) {
  uint32_t s = (uint32_t)(id & PT_SLOT_MASK);
  pt_cslot *sl = &l->cs[s];
  sl->c = NULL;
  if (++sl->gen >= PT_GEN_MAX) sl->gen = 1;
  sl->next_free = l->cfree;
  l->cfree = s;
}

pt_conn *pt_loop_conn(pt_loop *l, uint64_t id) {
  uint32_t s = (uint32_t)(id & PT_SLOT_MASK);
  if (s >= l->ncs || l->cs[s].gen != (uint32_t)(id >> PT_SLOT_BITS))
    return NULL;
  return l->cs[s].c;
}

/* The fetch_or makes one eventfd write per wake-up however many ask; the
 * round reads the eventfd before it takes the bits, so none is lost. */
void pt__wake(pt_loop *l, int bit) {
  if (__atomic_fetch_or(&l->wake_bits, bit, __ATOMIC_SEQ_CST) == 0) {
    uint64_t one = 1;
    while (write(l->wakefd, &one, sizeof one) < 0 && errno == EINTR) {
    }
  }
}

void pt_loop_wake(pt_loop *l) { pt__wake(l, PT_WAKE_USER); }

/* ---- 2. conns ------------------------------------------------------------ */

pt_conn *pt__conn_new(pt_loop *l, int fd, int kind, int family) {
  size_t base = (sizeof(pt_conn) + 15) & ~(size_t)15;
  pt_conn *c = calloc(1, base + l->bo->conn_size);
  if (!c) return NULL;
  if (slot_alloc(l, c) != 0) {
    free(c);
    return NULL;
  }
  c->fd = fd;
  c->kind = kind;
  c->family = family;
  c->loop = l;
  if (l->bo->conn_size) c->be = (char *)c + base;
  if (family == AF_UNIX) c->flags |= PT_CF_UNIX;
  pt_buf_init(&c->in_own, l->pool);
  pt_buf_init(&c->out_own, l->pool);
  /* many conns mostly wait: their buffers keep only what their bytes need */
  pt_buf_set_lean(&c->in_own, PT_LEAN_IN);
  pt_buf_set_lean(&c->out_own, PT_LEAN_OUT);
  c->in = &c->in_own;
  c->out = &c->out_own;
  c->in_cap = l->o.in_cap;
  c->out_cap = l->o.out_cap;
  l->bo->attach(&l->be, c);
  if (kind == PT_KIND_LISTENER)
    l->st.listeners_open++;
  else if (kind == PT_KIND_DGRAM)
    l->st.udp_open++;
  else if (kind == PT_KIND_STREAM)
    l->st.conns_open++;
  return c;
}

static void conn_free(pt_loop *l, pt_conn *c) {
  if (l->o.on_release) l->o.on_release(l->o.ctx, c);
  slot_free(l, c->id);
  l->bo->release(&l->be, c);
  pt_buf_free(&c->in_own);
  pt_buf_free(&c->out_own);
  free(c->host);
  free(c->errmsg);
  free(c->dg); /* a datagram socket's state (pt_udp.c) */
  free(c);
  l->st.recycled++;
}

void pt__recycle(pt_loop *l, int force) {
  pt_conn **pp = &l->dead, *c;
  while ((c = *pp)) {
    if (!force && l->bo->busy(c)) {
      pp = &c->next_dead;
      continue;
    }
    *pp = c->next_dead;
    conn_free(l, c);
  }
}

/* ---- 3. interest --------------------------------------------------------- */

static uint32_t want_of(const pt_conn *c) {
  uint32_t f = c->flags, w = 0;
  if (c->kind == PT_KIND_LISTENER)
    return (f & PT_CF_LISTEN_OFF) ? 0 : PT_W_ACCEPT;
  if (c->kind == PT_KIND_WATCH) /* readiness only (pt_watch.c) */
    return (c->watch & PT_WATCH_IN ? PT_W_IN : 0) |
           (c->watch & PT_WATCH_OUT ? PT_W_OUT : 0);
  if (f & PT_CF_CONNECTING) return PT_W_OUT;
  if (c->spj_in) {
    /* a splice source is read by its job, not into c->in */
    if (!c->spj_in->wait_out && !(f & (PT_CF_RD_EOF | PT_CF_CLOSING)))
      w |= PT_W_IN;
  } else if (!(f & (PT_CF_RD_PAUSED | PT_CF_RD_EOF | PT_CF_CLOSING |
                    PT_CF_RD_OVER | PT_CF_RD_BUDGET))) {
    w |= PT_W_RECV;
  }
  if (((f & PT_CF_WR_PENDING) && !(f & PT_CF_WR_BE)) ||
      (c->spj_out && c->spj_out->wait_out))
    w |= PT_W_OUT;
  return w;
}

int pt__arm(pt_conn *c) {
  pt_loop *l = c->loop;
  if (c->kind != PT_KIND_LISTENER && !c->spj_in && c->in_cap &&
      !(c->flags & PT_CF_RD_PAUSED) && pt_buf_len(c->in) >= c->in_cap) {
    c->flags |= PT_CF_RD_PAUSED; /* the cap shrank below what is held */
    l->st.rd_paused++;
  }
  c->want = want_of(c);
  if (c->fd < 0) return 0; /* a name still resolving */
  return l->bo->arm(&l->be, c);
}

void pt__rearm(pt_conn *c) {
  if (c->flags & PT_CF_CLOSED) return;
  if (pt__arm(c) != 0) pt__close(c, errno, 1);
}

/* ---- 4. the budget ------------------------------------------------------- */

static inline size_t unsent(const pt_conn *c) {
  return pt_buf_len(c->out) + c->loop->bo->held(c);
}

static inline size_t budget_low(const pt_loop *l) {
  return l->o.budget / 4 * 3;
}

static void budget_pause(pt_conn *c) {
  if ((c->flags & (PT_CF_OUT_PAUSE | PT_CF_RD_BUDGET | PT_CF_CLOSED)) !=
          PT_CF_OUT_PAUSE ||
      unsent(c) < PT_HEAVY)
    return;
  c->flags |= PT_CF_RD_BUDGET;
  c->loop->st.budget_paused++;
  pt__rearm(c);
}

/* Count every conn again (drops what went stale: input the user read
 * without pt_conn_consumed). */
static void budget_recount(pt_loop *l) {
  size_t sum = 0;
  for (uint32_t s = 0; s < l->ncs; s++) {
    pt_conn *c = l->cs[s].c;
    if (!c) continue;
    c->held = c->kind != PT_KIND_LISTENER && !(c->flags & PT_CF_CLOSED)
                  ? pt_buf_len(c->in) + unsent(c)
                  : 0;
    sum += c->held;
  }
  l->held = sum;
}

/* What one read may take: the budget's room, a trickle at least. */
static inline void budget_limit(pt_loop *l) {
  size_t room = l->held < l->o.budget ? l->o.budget - l->held : 0;
  l->be.rd_limit = room > PT_TRICKLE ? room : PT_TRICKLE;
}

static void budget_enter(pt_loop *l) {
  budget_recount(l);
  budget_limit(l);
  if (l->held <= l->o.budget) return;
  l->over = 1;
  for (uint32_t s = 0; s < l->ncs; s++)
    if (l->cs[s].c) budget_pause(l->cs[s].c);
}

static void budget_leave(pt_loop *l) {
  l->over = 0;
  for (uint32_t s = 0; s < l->ncs; s++) {
    pt_conn *c = l->cs[s].c;
    if (c && (c->flags & PT_CF_RD_BUDGET)) {
      c->flags &= ~PT_CF_RD_BUDGET;
      pt__rearm(c);
    }
  }
}

void pt__account(pt_conn *c) {
  pt_loop *l = c->loop;
  if (c->kind == PT_KIND_LISTENER) return;
  int live = !(c->flags & PT_CF_CLOSED);
  size_t u = live ? unsent(c) : 0;
  size_t now = live ? pt_buf_len(c->in) + u : 0;
  l->held += now - c->held;
  c->held = now;
  budget_limit(l);
  if (live && (c->flags & PT_CF_OUT_PAUSE) && c->out_cap) {
    if (!(c->flags & PT_CF_RD_OVER) && u > c->out_cap) {
      c->flags |= PT_CF_RD_OVER;
      l->st.wr_paused++;
      pt__rearm(c);
    } else if ((c->flags & PT_CF_RD_OVER) && u <= c->out_cap / 4) {
      c->flags &= ~PT_CF_RD_OVER;
      pt__rearm(c);
    }
  }
  if (!l->over) {
    if (l->held > l->o.budget) budget_enter(l);
  } else if (l->held < budget_low(l)) {
    budget_leave(l);
  } else if (live && (c->flags & PT_CF_RD_BUDGET) && u < PT_HEAVY / 4) {
    /* its output drained: what keeps the loop over budget is not this
     * conn's (input that cannot go before more arrives, for one) */
    c->flags &= ~PT_CF_RD_BUDGET;
    pt__rearm(c);
  } else if (live) {
    budget_pause(c);
  }
}

/* The round, while over budget: count afresh, maybe leave. */
void pt__budget_check(pt_loop *l) {
  if (!l->over) return;
  budget_recount(l);
  budget_limit(l);
  if (l->held < budget_low(l)) budget_leave(l);
}

/* ---- 5. input ------------------------------------------------------------ */

void pt__input(pt_conn *c, size_t n) {
  pt_loop *l = c->loop;
  if (c->flags & PT_CF_CLOSED) return;
  /* one DATA per conn and round: later bytes of the round join it */
  if (c->dq_round == l->round && c->dq >= l->qhead && c->dq < l->qlen &&
      l->q[c->dq].type == PT_EV_DATA && l->q[c->dq].conn == c) {
    l->q[c->dq].arg += n;
  } else if (pt__push(l, PT_EV_DATA, 0, c->id, n, c) == 0) {
    c->dq_round = l->round;
    c->dq = l->qlen - 1;
  }
  /* a read that left its block mostly empty, or bytes linked from a ring
   * buffer, are settled at the batch boundary if still waiting then */
  if (!(c->flags & PT_CF_TRIM) && pt_buf_wasteful(c->in)) {
    c->flags |= PT_CF_TRIM;
    c->next_trim = l->trim;
    l->trim = c;
  }
  pt__cap_check(c);
  pt__account(c);
}

void pt__cap_check(pt_conn *c) {
  if (c->in_cap && pt_buf_len(c->in) >= c->in_cap &&
      !(c->flags & PT_CF_RD_PAUSED)) {
    c->flags |= PT_CF_RD_PAUSED;
    c->loop->st.rd_paused++;
    pt__rearm(c);
  }
}

/* Half-close: stop reading, flush the replies of this batch at the start
 * of the next round, then close. */
void pt__read_eof(pt_conn *c) {
  pt__push(c->loop, PT_EV_CLOSED, 0, c->id, 0, c);
  c->flags |= PT_CF_RD_EOF | PT_CF_CLOSING | PT_CF_NOTIFIED;
  pt__dirty(c);
  pt__rearm(c);
}

void pt__trim(pt_loop *l) {
  pt_conn *c;
  while ((c = l->trim)) {
    l->trim = c->next_trim;
    c->next_trim = NULL;
    c->flags &= ~PT_CF_TRIM;
    if (!(c->flags & PT_CF_CLOSED)) l->st.settled += pt_buf_settle(c->in);
  }
}

void pt_conn_consumed(pt_conn *c) {
  if ((c->flags & PT_CF_RD_PAUSED) &&
      (!c->in_cap || pt_buf_len(c->in) < c->in_cap)) {
    c->flags &= ~PT_CF_RD_PAUSED;
    pt__rearm(c);
  }
  pt__account(c);
}

void pt_conn_set_caps(pt_conn *c, size_t in_cap, size_t out_cap) {
  c->in_cap = in_cap;
  c->out_cap = out_cap;
  pt_conn_consumed(c);
}

void pt_conn_set_bufs(pt_conn *c, pt_buf *in, pt_buf *out) {
  if (in && in != c->in) {
    pt_buf_move(in, c->in);
    pt_buf_set_lean(in, PT_LEAN_IN);
    c->in = in;
  }
  if (out && out != c->out) {
    pt_buf_move(out, c->out);
    pt_buf_set_lean(out, PT_LEAN_OUT);
    c->out = out;
  }
}

/* ---- 6. output ------------------------------------------------------------ */

/* sendmsg up to limit bytes of the output: 0 all (of the limit) written,
 * 1 socket full, -1 error (errno). */
static int write_bytes(pt_loop *l, pt_conn *c, size_t limit) {
  return pt_be_sendbuf(c->fd, c->out, limit, l->iov, PT_IOV_MAX, &l->st);
}

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

/* Write a file range: 0 done, 1 socket full, -1 error (errno). sendfile(2),
 * or pread/read + send in PT_ZC_CHUNK steps where sendfile says EINVAL or
 * ENOSYS (or the loop forces copies). */
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
      int r = write_bytes(l, c, j->pre);
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
  return write_bytes(l, c, SIZE_MAX);
}

/* Everything queued is written: writability interest goes, DRAINED if a
 * send said pending. PT_SEND_DONE. */
static int out_drained(pt_conn *c) {
  if (c->flags & PT_CF_WR_PENDING) {
    c->flags &= ~(PT_CF_WR_PENDING | PT_CF_WR_BE);
    pt__rearm(c);
  }
  if ((c->flags & PT_CF_WANT_DRAINED) && !(c->flags & PT_CF_CLOSING)) {
    c->flags &= ~PT_CF_WANT_DRAINED;
    pt__push(c->loop, PT_EV_DRAINED, 0, c->id, 0, c);
  }
  return PT_SEND_DONE;
}

/* Plain output goes through the back end; with file or splice jobs the
 * loop writes itself, in order, on writability (PT_W_OUT). */
int pt__write(pt_conn *c) {
  pt_loop *l = c->loop;
  int r;
  if (c->fjob || c->spj_out) {
    r = out_step(l, c);
    if (r == 1) {
      pt__account(c);
      c->flags |= PT_CF_WR_PENDING;
      if (!(c->want & PT_W_OUT)) pt__rearm(c); /* writability, now */
      return PT_SEND_PENDING;
    }
  } else if (c->flags & PT_CF_WR_BE) {
    return PT_SEND_PENDING; /* PT_RP_SENT comes first */
  } else {
    r = l->bo->send(&l->be, c);
    if (r == PT_SEND_PENDING) {
      c->flags |= PT_CF_WR_PENDING | PT_CF_WR_BE;
      if (c->want & PT_W_OUT) pt__rearm(c); /* the back end reports now */
      pt__account(c);
      return PT_SEND_PENDING;
    }
  }
  if (r < 0) {
    int e = errno;
    pt__close(c, e, 1);
    errno = e;
    return -1;
  }
  pt__account(c);
  return out_drained(c);
}

void pt__sent(pt_conn *c) {
  c->flags &= ~PT_CF_WR_BE;
  if (pt__has_out(c))
    pt__write(c);
  else
    out_drained(c);
  if (!(c->flags & PT_CF_CLOSED)) pt__account(c);
}

static inline int over_cap(const pt_conn *c) {
  return c->out_cap && unsent(c) > c->out_cap;
}

int pt_conn_send(pt_conn *c) {
  if (c->kind != PT_KIND_STREAM || (c->flags & PT_CF_CLOSED)) {
    errno = c->kind != PT_KIND_STREAM ? ENOTCONN : EPIPE;
    return -1;
  }
  if (c->flags & (PT_CF_CONNECTING | PT_CF_WR_PENDING)) {
    if (pt_buf_len(c->out)) c->flags |= PT_CF_WANT_DRAINED;
    pt__account(c);
    return over_cap(c) ? PT_SEND_OVER : PT_SEND_PENDING;
  }
  if (!pt__has_out(c)) return PT_SEND_DONE;
  int r = pt__write(c);
  if (r == PT_SEND_PENDING) {
    c->flags |= PT_CF_WANT_DRAINED;
    if (over_cap(c)) return PT_SEND_OVER;
  }
  return r;
}

void pt__dirty(pt_conn *c) {
  if (!(c->flags & PT_CF_DIRTY)) {
    pt_loop *l = c->loop;
    c->flags |= PT_CF_DIRTY;
    c->next_dirty = l->dirty;
    l->dirty = c;
  }
}

int pt_conn_send_later(pt_conn *c) {
  if (c->kind != PT_KIND_STREAM || (c->flags & PT_CF_CLOSED)) {
    errno = c->kind != PT_KIND_STREAM ? ENOTCONN : EPIPE;
    return -1;
  }
  pt__dirty(c);
  pt__account(c);
  if (over_cap(c)) {
    c->flags |= PT_CF_WANT_DRAINED;
    return PT_SEND_OVER;
  }
  return PT_SEND_DONE;
}

void pt_loop_flush(pt_loop *l) {
  pt_conn *c;
  while ((c = l->dirty)) {
    l->dirty = c->next_dirty;
    c->next_dirty = NULL;
    c->flags &= ~PT_CF_DIRTY;
    if (c->flags & PT_CF_CLOSED) continue;
    if (!(c->flags & (PT_CF_CONNECTING | PT_CF_WR_PENDING)) && pt__has_out(c)) {
      if (pt__write(c) < 0) continue;
    }
    pt__closing_step(c);
  }
}

/* ---- 7. close -------------------------------------------------------------- */

/* Output drained or not, a closing conn either closes now or waits for
 * writability, bounded by the close timeout. */
void pt__closing_step(pt_conn *c) {
  pt_loop *l = c->loop;
  if ((c->flags & PT_CF_CLOSED) || !(c->flags & PT_CF_CLOSING)) return;
  if (!pt__has_out(c) && !(c->flags & PT_CF_WR_PENDING)) {
    pt__close(c, 0, 1);
    return;
  }
  if (!c->timer) {
    l->now = pt__mono_ms();
    c->timer = pt__timer_add(l, l->o.close_timeout_ms, PT_TK_CLOSE, c);
  }
}

void pt__spj_free(pt_spj *j) {
  pt_loop *l = j->from->loop;
  if (j->p[0] >= 0 && !j->staged && l->zc_npipes < PT_ZC_PIPES &&
      !l->forked) {
    l->zc_pipe[l->zc_npipes][0] = j->p[0];
    l->zc_pipe[l->zc_npipes][1] = j->p[1];
    l->zc_npipes++;
    j->p[0] = j->p[1] = -1;
  }
  if (j->p[0] >= 0) close(j->p[0]);
  if (j->p[1] >= 0) close(j->p[1]);
  free(j->buf);
  free(j);
}

/* End the job: SPLICED, detach, the conns go back to their own I/O. */
void pt__spj_end(pt_loop *l, pt_spj *j, int err) {
  pt_conn *from = j->from, *to = j->to;
  from->spj_in = NULL;
  to->spj_out = NULL;
  /* conn NULL: delivered even when the user closed a side (waiters) */
  pt__push(l, PT_EV_SPLICED, err, from->id, j->moved, NULL);
  pt__spj_free(j);
  pt__rearm(from); /* no-ops on closed conns */
  pt__rearm(to);
}

void pt__close(pt_conn *c, int err, int notify) {
  pt_loop *l = c->loop;
  if (c->flags & PT_CF_CLOSED) return;
  if (c->timer) {
    pt_timers_cancel(&l->timers, c->timer);
    c->timer = 0;
  }
  if (notify && !(c->flags & PT_CF_NOTIFIED))
    pt__push(l, PT_EV_CLOSED, err, c->id, 0, c);
  c->flags |= PT_CF_CLOSED | PT_CF_NOTIFIED;
  c->flags &= ~(PT_CF_CONNECTING | PT_CF_WR_PENDING | PT_CF_WR_BE |
                PT_CF_CLOSING | PT_CF_WANT_DRAINED | PT_CF_RESOLVING);
  /* a forked child's copy must not touch what it shares with the parent
   * (epoll interest, ring requests, the socket file) */
  if (!l->forked) l->bo->forget(&l->be, c);
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  if (c->unix_path) {
    if (!l->forked) unlink(c->unix_path);
    free(c->unix_path);
    c->unix_path = NULL;
  }
  fjobs_free(c);
  if (c->spj_in) pt__spj_end(l, c->spj_in, err ? err : EPIPE);
  if (c->spj_out) pt__spj_end(l, c->spj_out, err ? err : EPIPE);
  if (c->kind == PT_KIND_LISTENER) {
    l->st.listeners_open--;
  } else if (c->kind == PT_KIND_DGRAM) {
    l->st.udp_open--;
  } else if (c->kind == PT_KIND_STREAM) {
    l->st.conns_open--;
    l->st.closed++;
  }
  pt__account(c);
  c->next_dead = l->dead;
  l->dead = c;
}

void pt_conn_close(pt_conn *c, int flush) {
  if (c->flags & PT_CF_CLOSED) return;
  c->flags |= PT_CF_USER_CLOSED | PT_CF_NOTIFIED;
  if (!flush || c->kind == PT_KIND_LISTENER || (c->flags & PT_CF_CONNECTING)) {
    pt__close(c, 0, 0);
    return;
  }
  c->flags |= PT_CF_CLOSING;
  if (pt__has_out(c) && !(c->flags & PT_CF_WR_PENDING) && pt__write(c) < 0)
    return;
  pt__rearm(c); /* stop reading */
  pt__closing_step(c);
}

void pt_loop_close_all(pt_loop *l) {
  for (uint32_t s = 0; s < l->ncs; s++) {
    pt_conn *c = l->cs[s].c;
    if (c && !(c->flags & PT_CF_CLOSED)) {
      c->flags |= PT_CF_USER_CLOSED;
      pt__close(c, 0, 0);
    }
  }
}
