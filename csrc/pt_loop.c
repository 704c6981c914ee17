/*
 * pt_loop.c — loops and the round.
 *
 * Layout
 *   1. wake-ups (the user's, the resolver's) and timers, fired by kind
 *   2. acting on reports: input, EOF, failures, readiness for the loop's
 *      own steps (connect, file and splice jobs), sends that finished
 *   3. the round: pt_loop_poll = flush deferred sends, deliver what is
 *      queued, recycle at the batch boundary, fire due timers, then wait on
 *      the back end and act on its reports one kernel event at a time
 *   4. loops: choosing the back end (epoll, io_uring or auto, with the
 *      reason auto fell back), lifetime
 *
 * This file calls the others (pt_private.h lists them, in layers); none
 * of them calls it. The back end is reached only through its pt_be_ops.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "pt_loop.h"
#include "pt_private.h"

#define PT_REPS 64 /* reports asked of the back end at a time */

const char *pt_loop_error(const pt_loop *l) { return l->err; }
const char *pt_loop_backend(const pt_loop *l) { return l->bo->name; }
const char *pt_loop_backend_note(const pt_loop *l) { return l->be_note; }
pt_pool *pt_loop_pool(const pt_loop *l) { return l->pool; }
int64_t pt_loop_now(pt_loop *l) { return l->now = pt__mono_ms(); }

void pt_loop_stats_get(const pt_loop *l, pt_loop_stats *out) {
  *out = l->st;
  out->held = l->held;
  if (l->dns) pt_dns_counts(l->dns, &out->dns_lookups, &out->dns_cached);
}

/* ---- 1. wake-ups and timers ------------------------------------------------ */

/* The eventfd is read before the bits are taken: a wake-up asked after
 * that writes the eventfd again (pt__wake), so none is lost. */
static void handle_wake(pt_loop *l) {
  uint64_t v;
  while (read(l->wakefd, &v, sizeof v) < 0 && errno == EINTR) {
  }
  int bits = __atomic_exchange_n(&l->wake_bits, 0, __ATOMIC_SEQ_CST);
  l->st.wakeups++;
  if (bits & PT_WAKE_USER) pt__push(l, PT_EV_WAKE, 0, 0, 0, NULL);
  if ((bits & PT_WAKE_DNS) && l->dns) {
    pt_dns_answer a[16];
    int n;
    while ((n = pt_dns_done(l->dns, a, 16)) > 0)
      for (int i = 0; i < n; i++) pt__sock_resolved(l, &a[i]);
  }
}

static void run_timers(pt_loop *l) {
  uint64_t id;
  int kind;
  void *owner;
  l->now = pt__mono_ms();
  while (pt_timers_due(&l->timers, l->now, &id, &kind, &owner)) {
    pt_conn *c = owner;
    switch (kind) {
      case PT_TK_USER:
        l->st.timers_active--;
        l->st.timers_fired++;
        pt__push(l, PT_EV_TIMER, 0, id, 0, NULL);
        break;
      case PT_TK_CONNECT:
        c->timer = 0;
        pt__sock_connect_timeout(c);
        break;
      case PT_TK_CLOSE:
        c->timer = 0;
        pt__close(c, ETIMEDOUT, 1);
        break;
      case PT_TK_LISTEN:
        c->timer = 0;
        pt__sock_listen_resume(c);
        break;
    }
  }
}

/* ms until the next timer, bounded by timeout (-1: none) */
static int timer_wait(pt_loop *l, int timeout) {
  int64_t next = pt_timers_next(&l->timers);
  if (next == INT64_MAX) return timeout;
  int64_t d = next - pt__mono_ms();
  if (d < 0) d = 0;
  if (d > INT_MAX) d = INT_MAX;
  if (timeout < 0 || d < timeout) return (int)d;
  return timeout;
}

/* Timers: one-shot, user kind (the others are the loop's own). */
uint64_t pt_loop_timer(pt_loop *l, int64_t ms) {
  l->now = pt__mono_ms();
  uint64_t id = pt__timer_add(l, ms, PT_TK_USER, NULL);
  if (id)
    l->st.timers_active++;
  else
    pt__fail(l, ENOMEM, "timer");
  return id;
}

int pt_loop_cancel(pt_loop *l, uint64_t id) {
  if (pt_timers_kind(&l->timers, id) != PT_TK_USER) return -1;
  pt_timers_cancel(&l->timers, id);
  l->st.timers_active--;
  return 0;
}

/* ---- 2. acting on reports --------------------------------------------------- */

/* Readiness the loop asked for (PT_W_IN / PT_W_OUT): a connect's end, a
 * splice source, output the loop writes itself (file jobs), a splice
 * target. */
static void on_ready(pt_conn *c, uint32_t m) {
  if (c->kind == PT_KIND_WATCH) { /* the user's fd: tell the user */
    if (c->ready_fn)
      c->ready_fn(c, m);
    else
      pt__push(c->loop, PT_EV_READY, 0, c->id, m, c);
    return;
  }
  if (c->flags & PT_CF_CONNECTING) {
    pt__sock_connect_ready(c, m);
    return;
  }
  if ((m & (PT_R_IN | PT_R_HUP | PT_R_ERR)) && c->spj_in)
    pt__zc_ready(c, PT_R_IN);
  if (c->flags & PT_CF_CLOSED) return;
  if (!(m & (PT_R_OUT | PT_R_ERR | PT_R_HUP))) return;
  if ((c->flags & PT_CF_WR_PENDING) && !(c->flags & PT_CF_WR_BE)) {
    if (pt__write(c) < 0) return;
    pt__closing_step(c);
    if (c->flags & PT_CF_CLOSED) return;
  }
  pt__zc_ready(c, PT_R_OUT);
}

static void on_sent(pt_conn *c) {
  pt__sent(c);
  if (c->flags & PT_CF_CLOSED) return;
  pt__zc_sent(c);
  if (c->flags & PT_CF_CLOSED) return;
  pt__closing_step(c);
}

static void act(pt_loop *l, const pt_rep *r) {
  pt_conn *c = r->c;
  if (r->kind == PT_RP_WAKE) {
    handle_wake(l);
    return;
  }
  if (r->kind == PT_RP_ACCEPT) {
    pt__sock_accepted(l, c, (int)r->res);
    return;
  }
  if (c->flags & PT_CF_CLOSED) return; /* closed earlier in this batch */
  switch (r->kind) {
    case PT_RP_INPUT:
      if (c->spj_in)
        pt__zc_input(c);
      else
        pt__input(c, (size_t)r->res);
      break;
    case PT_RP_EOF:
      if (c->spj_in)
        pt__zc_eof(c);
      else if (!(c->flags & (PT_CF_RD_EOF | PT_CF_CLOSING)))
        pt__read_eof(c);
      break;
    case PT_RP_FAIL:
      pt__close(c, r->res < 0 ? pt__sock_error(c->fd) : (int)r->res, 1);
      break;
    case PT_RP_READY:
      on_ready(c, (uint32_t)r->res);
      break;
    case PT_RP_SENT:
      on_sent(c);
      break;
    case PT_RP_HUP:
      /* both directions down: a conn that saw EOF closes now */
      if (c->flags & (PT_CF_RD_EOF | PT_CF_CLOSING)) pt__close(c, 0, 1);
      break;
    case PT_RP_DGRAM:
    case PT_RP_DGCUT:
    case PT_RP_DGERR:
      pt__udp_report(c, r->kind, r->res);
      break;
  }
}

/* ---- 3. the round ------------------------------------------------------------ */

/* Wait up to timeout ms, act on what happened, fire due timers. -1 if the
 * back end failed. */
static int round_(pt_loop *l, int timeout) {
  int n = l->bo->wait(&l->be, timeout);
  if (n < 0) return -1;
  l->round++;
  pt_rep reps[PT_REPS];
  int k;
  while ((k = l->bo->next(&l->be, reps, PT_REPS)) > 0)
    for (int i = 0; i < k; i++) act(l, &reps[i]);
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
    int k = pt__deliver(l, out, max);
    if (k) {
      l->busy = 1;
      return k;
    }
  }
  pt__trim(l);       /* before recycling: the list may name closed conns */
  pt__recycle(l, 0); /* batch boundary: nothing queued, nothing dirty */
  pt__budget_check(l);
  run_timers(l);
  int spin = l->busy && !l->o.no_spin && l->bo->spin;
  int t = (l->qlen || spin || timeout_ms == 0)
              ? 0
              : timer_wait(l, timeout_ms);
  if (round_(l, t) < 0) return -1;
  if (!l->qlen && t == 0 && spin && timeout_ms != 0) {
    t = timer_wait(l, timeout_ms);
    if (round_(l, t) < 0) return -1;
  }
  int k = pt__deliver(l, out, max);
  l->busy = k > 0;
  return k;
}

/* ---- 4. loops -------------------------------------------------------------------- */

static int env_on(const char *name) {
  const char *v = getenv(name);
  return v && *v && strcmp(v, "0") != 0;
}

/* Start back end bo: 0, or -1 with l->err (its state freed). */
static int be_start(pt_loop *l, const pt_be_ops *bo) {
  l->bo = bo;
  if (bo->init(&l->be) == 0) return 0;
  int e = errno;
  bo->free(&l->be);
  l->be.state = NULL;
  l->bo = NULL;
  errno = e;
  return -1;
}

pt_loop *pt_loop_new(pt_pool *pool, const pt_loop_opts *opts) {
  pt_loop *l = calloc(1, sizeof *l);
  if (!l) return NULL;
  l->wakefd = l->spare_fd = -1;
  l->cfree = PT_NO_SLOT;
  pt_timers_init(&l->timers);
  if (opts) l->o = *opts;
  if (!l->o.in_cap) l->o.in_cap = 8u << 20;
  if (!l->o.out_cap) l->o.out_cap = 4u << 20;
  if (!l->o.budget) l->o.budget = 16u << 20;
  if (l->o.close_timeout_ms <= 0) l->o.close_timeout_ms = 5000;
  if (l->o.max_events <= 0) l->o.max_events = 256;
  if (env_on("PETREL_NO_SENDFILE")) l->o.zc_off |= PT_ZC_NO_SENDFILE;
  if (env_on("PETREL_NO_SPLICE")) l->o.zc_off |= PT_ZC_NO_SPLICE;
  if (env_on("PETREL_SQPOLL")) l->o.sqpoll = 1;
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
  l->now = pt__mono_ms();
  l->pid = getpid();
  l->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (l->wakefd < 0) {
    pt__fail(l, errno, "eventfd");
    goto bad;
  }
  l->be.o = &l->o;
  l->be.pool = pool;
  l->be.st = &l->st;
  l->be.loop = l;
  l->be.wakefd = l->wakefd;
  l->be.err = l->err;
  l->be.errlen = sizeof l->err;
  l->be.rd_limit = SIZE_MAX;
  int be = l->o.backend;
  if (be == PT_BE_DEFAULT) {
    const char *env = getenv("PETREL_BACKEND");
    be = !env || !*env || strcmp(env, "epoll") == 0 ? PT_BE_EPOLL
         : strcmp(env, "uring") == 0 || strcmp(env, "io_uring") == 0
             ? PT_BE_URING
         : strcmp(env, "auto") == 0 ? PT_BE_AUTO
                                    : -1;
    if (be < 0) {
      pt__fail(l, EINVAL, "PETREL_BACKEND='%s' (epoll, uring or auto)", env);
      goto bad;
    }
  }
  if (be == PT_BE_URING || be == PT_BE_AUTO) {
#ifdef PT_NO_URING
    pt__fail(l, 0, "io_uring was not compiled in");
    errno = ENOSYS;
    if (be == PT_BE_URING) goto bad;
    snprintf(l->be_note, sizeof l->be_note, "%s", l->err);
#else
    if (be_start(l, &pt_be_uring) == 0) {
      snprintf(l->be_note, sizeof l->be_note, "%s", l->bo->note(&l->be));
    } else if (be == PT_BE_URING) {
      goto bad;
    } else { /* auto: epoll, and say why */
      snprintf(l->be_note, sizeof l->be_note, "%s", l->err);
    }
#endif
  }
  if (!l->bo && be_start(l, &pt_be_epoll) != 0) goto bad;
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
  l->forked = l->be.forked = l->pid != getpid();
  pt_loop_close_all(l);
  l->dirty = NULL;
  /* the kernel lets go of every conn before their memory goes */
  if (l->bo && !l->forked) l->bo->drain(&l->be);
  pt__recycle(l, 1);
  if (l->bo) l->bo->free(&l->be);
  pt_dns_free(l->dns, l->forked); /* no wake-up after this */
  if (l->wakefd >= 0) close(l->wakefd);
  if (l->spare_fd >= 0) close(l->spare_fd);
  while (l->zc_npipes > 0) {
    l->zc_npipes--;
    close(l->zc_pipe[l->zc_npipes][0]);
    close(l->zc_pipe[l->zc_npipes][1]);
  }
  free(l->cs);
  pt_timers_free(&l->timers);
  free(l->q);
  pt_buf_free(&l->pool_pin);
  if (l->own_pool) pt_pool_close(l->pool);
  free(l);
}
