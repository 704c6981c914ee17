/*
 * pt_types.h — the event loop's types: loops, conns, completions, options,
 * counters (pt_loop.h has the model and the functions). No Lua in here.
 */
#ifndef PT_TYPES_H
#define PT_TYPES_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pt_buf.h"

typedef struct pt_loop pt_loop;
typedef struct pt_conn pt_conn;

/* X(NAME, value, "lua name") */
#define PT_EVENT_TYPES(X)           \
  X(ACCEPTED, 1, "accepted")        \
  X(DATA, 2, "data")                \
  X(DRAINED, 3, "drained")          \
  X(CLOSED, 4, "closed")            \
  X(CONNECTED, 5, "connected")      \
  X(TIMER, 6, "timer")              \
  X(WAKE, 7, "wake")                \
  X(SPLICED, 8, "spliced")          \
  X(DGRAM, 9, "datagram")          \
  X(READY, 10, "ready")

enum pt_event_type {
#define PT_X(n, v, s) PT_EV_##n = v,
  PT_EVENT_TYPES(PT_X)
#undef PT_X
  PT_EV_MAX_
};

typedef struct pt_event {
  int32_t type;  /* PT_EV_* */
  int32_t err;   /* errno or 0 */
  uint64_t id;   /* conn id, or timer id for TIMER, 0 for WAKE */
  uint64_t arg;  /* DATA: bytes read; ACCEPTED: listener id; DGRAM: the
                    datagram's bytes kept; else 0 */
  pt_conn *conn; /* valid until the batch boundary; NULL for TIMER, WAKE,
                  SPLICED */
} pt_event;

enum { PT_KIND_LISTENER = 1, PT_KIND_STREAM = 2, PT_KIND_DGRAM = 3, PT_KIND_WATCH = 4 };

/* pt_loop_watch: what to watch, and the READY completion's arg (the same
 * bits as the back ends' readiness, pt_be.h) */
#define PT_WATCH_IN 1u
#define PT_WATCH_OUT 2u
#define PT_WATCH_ERR 4u
#define PT_WATCH_HUP 8u

/* conn->flags */
#define PT_CF_CONNECTING 0x001u /* async connect in progress */
#define PT_CF_RD_PAUSED 0x002u  /* input over in_cap: not reading */
#define PT_CF_RD_EOF 0x004u     /* peer finished sending */
#define PT_CF_WR_PENDING 0x008u /* output waits for writability */
#define PT_CF_DIRTY 0x010u      /* on the deferred-send list */
#define PT_CF_CLOSING 0x020u    /* close once output drained */
#define PT_CF_CLOSED 0x040u     /* fd closed; recycled at a batch boundary */
#define PT_CF_NOTIFIED 0x080u   /* CLOSED delivered (or user closed) */
#define PT_CF_USER_CLOSED 0x100u
#define PT_CF_UNIX 0x200u       /* unix-domain socket */
#define PT_CF_LISTEN_OFF 0x400u /* listener paused after EMFILE */

/* Socket options; a zeroed struct means defaults. */
typedef struct pt_sockopts {
  int nodelay;   /* TCP_NODELAY: 0 default (on), 1 on, -1 off */
  int keepalive; /* SO_KEEPALIVE: 1 on, else off */
  int sndbuf;    /* SO_SNDBUF bytes, 0 system default */
  int rcvbuf;    /* SO_RCVBUF bytes, 0 system default */
  int reuseport; /* listen: SO_REUSEPORT */
} pt_sockopts;

struct pt_conn {
  int fd;         /* -1 once closed (and while a name resolves) */
  int kind;       /* PT_KIND_* */
  uint32_t flags; /* PT_CF_* */
  uint64_t id;    /* never 0; unique among live conns and timers' owner */
  pt_buf *in;     /* &in_own, or caller storage (pt_conn_set_bufs) */
  pt_buf *out;
  size_t in_cap;  /* stop reading while in->len >= in_cap (0: no cap) */
  size_t out_cap; /* send reports PT_SEND_OVER beyond this; an accepted
                     conn stops being read meanwhile (0: no cap) */
  void *ud;       /* the user's */
  int ref;        /* the user's */
  /* private below: the loop's (pt_private.h) */
  pt_loop *loop;
  void *be;         /* the back end's own state (opaque) */
  uint32_t want;    /* interest the back end follows (pt_be.h) */
  int family;
  pt_conn *next_dirty, *next_dead, *next_trim;
  uint64_t timer;   /* internal timer (connect/close timeout, backoff) */
  char *unix_path;  /* listener: socket file to unlink on close */
  char *host;       /* connect: the host as given, for messages */
  char *errmsg;     /* why the connect failed (pt_conn_error) */
  int port;         /* connect: the port */
  pt_sockopts lopts; /* listener: options for accepted conns; a connect
                        waiting for a name: its own */
  pt_buf in_own, out_own;
  struct pt_fjob *fjob;   /* file ranges in the output (sendfile), FIFO */
  struct pt_spj *spj_in;  /* splice job reading this conn */
  struct pt_spj *spj_out; /* splice job writing this conn */
  uint64_t dq_round;      /* round and queue slot of this round's DATA */
  int dq;
  size_t held;            /* bytes counted in the loop's budget */
  struct pt_dgstate *dg;  /* datagram sockets: their state (pt_udp.c) */
  uint32_t watch;         /* PT_KIND_WATCH: PT_WATCH_IN / _OUT wanted */
  void (*ready_fn)(pt_conn *, uint32_t); /* PT_KIND_WATCH: pt_watch_set_fn */
};

/* A datagram socket's counters (pt_udp_stats_get). */
typedef struct pt_udp_stats {
  uint64_t dgrams_in, bytes_in; /* datagrams received (cut ones too) */
  uint64_t cut;          /* received longer than max_datagram: cut there */
  uint64_t errors_in;    /* errors the socket reported instead of data
                            (ECONNREFUSED after a peer's port closed...) */
  uint64_t dgrams_out, bytes_out; /* datagrams the kernel took */
  uint64_t send_errors;  /* datagrams the kernel refused (each dropped) */
  uint64_t send_full;    /* sends refused: the queue was over out_cap */
  uint64_t dropped;      /* received, dropped here: no memory for them */
  uint64_t kernel_drops; /* datagrams the kernel dropped on arrival (the
                            receive buffer was full: see rcvbuf); read
                            when asked (SO_MEMINFO) */
  uint64_t queued;       /* bytes of datagrams not yet taken (records) */
  int rcvbuf, sndbuf;    /* the socket's buffer sizes (the kernel's
                            accounting, about twice what was asked) */
  int last_send_errno;   /* of the last refused datagram */
} pt_udp_stats;

/* What a datagram socket's back end sees of it (c->dg; pt_be.h). */
typedef struct pt_dgstate {
  size_t max;       /* longest datagram kept whole */
  pt_udp_stats st;  /* the back end counts sends and receives here */
} pt_dgstate;

/* opts.backend */
enum {
  PT_BE_DEFAULT = 0, /* PETREL_BACKEND=epoll|uring|auto, else epoll */
  PT_BE_EPOLL = 1,
  PT_BE_URING = 2, /* io_uring or fail */
  PT_BE_AUTO = 3   /* io_uring where the kernel allows it, else epoll */
};

typedef struct pt_loop_opts {
  size_t in_cap;        /* default input cap per conn; 0: 8 MiB */
  size_t out_cap;       /* default output cap per conn; 0: 4 MiB */
  size_t budget;        /* input + unsent output of all conns before the
                           loop pushes back (see Backpressure); 0: 16 MiB,
                           SIZE_MAX: none */
  int dns_ttl_ms;       /* how long names stay resolved; 0: 30000 */
  int dns_delay_ms;     /* tests: each lookup waits this long first */
  int close_timeout_ms; /* graceful close limit; 0: 5000 */
  int max_events;       /* readiness events per wait; 0: 256 */
  int no_spin;          /* 1: never wait with timeout 0 first */
  /* Called when a conn is recycled (batch boundary, pt_loop_free), before
   * its memory goes. Caller-provided buffers (pt_conn_set_bufs) are not
   * touched by the core after this call. */
  void (*on_release)(void *ctx, pt_conn *c);
  void *ctx;
  /* PT_ZC_* bits: force the copying fallbacks (tests, benchmarks). The
   * environment adds PETREL_NO_SENDFILE=1 / PETREL_NO_SPLICE=1. */
  int zc_off;
  /* io_uring */
  int backend;         /* PT_BE_* */
  int sqpoll;          /* 1: IORING_SETUP_SQPOLL (PETREL_SQPOLL=1 also) */
  size_t zc_min;       /* sends of this many bytes use sendmsg_zc; 0: 64 KiB,
                          SIZE_MAX: never (PETREL_ZC_MIN overrides) */
  int zc_force;        /* 1: also on loopback, where the kernel copies */
  unsigned ring_bufs;  /* provided buffers; 0: by kernel features */
  unsigned ring_buf_size;
  int ring_noinc;      /* 1: no incremental buffer consumption */
  unsigned ring_dgram_bufs; /* datagram sockets' buffer ring: buffers of
                               64 KiB (mapped lazily), a power of 2; 0: 128 */
  /* pt_loop_new writes why it failed (or why "auto" fell back) here */
  char *err;
  size_t errlen;
} pt_loop_opts;

#define PT_ZC_NO_SENDFILE 1
#define PT_ZC_NO_SPLICE 2

typedef struct pt_loop_stats {
  uint64_t conns_open;     /* streams open now */
  uint64_t udp_open;       /* datagram sockets open now */
  uint64_t listeners_open;
  uint64_t accepted, connected, closed; /* closed: streams */
  uint64_t bytes_in, bytes_out;
  uint64_t readv_calls, writev_calls;
  uint64_t wait_zero, wait_block; /* poller waits with timeout 0 / blocking */
  uint64_t wakeups;        /* eventfd wake-ups processed */
  uint64_t timers_active, timers_fired;
  uint64_t events;         /* completions delivered */
  uint64_t rd_paused;      /* times reading stopped on in_cap */
  uint64_t wr_paused;      /* times reading stopped on out_cap */
  uint64_t budget_paused;  /* times reading stopped on the loop's budget */
  uint64_t held;           /* bytes the budget counts now */
  uint64_t dns_lookups;    /* names looked up by the resolver thread */
  uint64_t dns_cached;     /* names answered from its cache */
  uint64_t accept_dropped; /* connections dropped on EMFILE/ENFILE */
  uint64_t recycled;       /* conns freed at batch boundaries */
  uint64_t splice_pipes;   /* pipes made for splice jobs (emptied ones are
                              kept for the next job) */
  uint64_t settled;        /* input bytes left waiting in mostly empty read
                              blocks or ring buffers, moved at a batch
                              boundary to blocks sized to them */
  /* io_uring */
  uint64_t ring_sqes;      /* requests queued */
  uint64_t ring_cqes;      /* completions reaped */
  uint64_t ring_enters;    /* io_uring_enter calls made by the loop */
  uint64_t ring_enobufs;   /* recvs that found the buffer ring empty */
  uint64_t ring_linked;    /* receives linked into the input, not copied */
  uint64_t zc_sends;       /* sendmsg_zc requests */
  uint64_t zc_copied;      /* of which the kernel copied anyway */
  /* datagram sockets, all of the loop's (pt_udp_stats_get: one socket's) */
  uint64_t dgrams_in, dgrams_out, dgrams_cut, dgram_send_errors;
} pt_loop_stats;

/* Send results */
#define PT_SEND_DONE 0    /* everything written */
#define PT_SEND_PENDING 1 /* rest queued; DRAINED follows */
#define PT_SEND_OVER 2    /* queued, and output exceeds out_cap */

#endif
