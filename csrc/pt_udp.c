/*
 * pt_udp.c — datagram sockets (pt_udp.h): open (bind, connect, buffer
 * sizes), receive (the back end's records and reports become DGRAM
 * completions; pt_udp_recv hands the records out), send (records queued on
 * the output, sent by the back end in the round's flush), counters,
 * addresses as text.
 *
 * Layout
 *   1. the socket's state and opening it
 *   2. receiving: reports in, records out
 *   3. sending
 *   4. addresses as text, counters
 *
 * Invariants
 *   - c->dg points at the pt_udp (its first member); conn_free frees it.
 *   - The input holds only records the back end wrote (pt_be_dgput), the
 *     output only records pt_udp_send wrote: nothing else writes them (the
 *     binding hands out no buffers of datagram sockets).
 *   - u->skip is the size of the record pt_udp_recv handed out last; it is
 *     still in the input (so its bytes stay valid) until the next call.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pt_conn.h"
#include "pt_private.h"
#include "pt_udp.h"

#define PT_UDP_TEXT 64 /* "[ffff:...:ffff]:65535" and some */

/* ---- 1. the socket -------------------------------------------------------- */

typedef struct pt_udp {
  pt_dgstate dg;  /* first: c->dg points here */
  int connected;
  int pend_err;   /* an error the socket reported, for pt_udp_recv */
  size_t skip;    /* the record handed out last (still in the input) */
  /* the last destination given as text, parsed */
  char to_text[PT_UDP_TEXT];
  struct sockaddr_storage to;
  socklen_t to_len;
  /* the last sender turned into text */
  unsigned char from[sizeof(struct sockaddr_in6)];
  socklen_t from_len;
  char from_text[PT_UDP_TEXT];
  size_t from_tlen;
} pt_udp;

static inline pt_udp *udp_of(const pt_conn *c) { return (pt_udp *)c->dg; }

/* SO_RCVBUF / SO_SNDBUF to v; where the kernel's cap (rmem_max, wmem_max)
 * cut it, the FORCE variant (allowed with CAP_NET_ADMIN; else the capped
 * size stays). */
static void set_bufsize(int fd, int opt, int force, int v) {
  int got = 0;
  socklen_t gl = sizeof got;
  setsockopt(fd, SOL_SOCKET, opt, &v, sizeof v);
  if (getsockopt(fd, SOL_SOCKET, opt, &got, &gl) == 0 && got < v)
    setsockopt(fd, SOL_SOCKET, force, &v, sizeof v);
}

/* host/port into *ss for phase what: 0, or -1 with l->err. */
static int udp_parse(pt_loop *l, const char *what, const char *host, int port,
                     int passive, struct sockaddr_storage *ss, socklen_t *len) {
  char w[300], why[160];
  pt__sock_where(w, sizeof w, host, port);
  int r = pt__sock_parse(host, port, passive, ss, len, why, sizeof why);
  if (r == 0 && ss->ss_family != AF_INET && ss->ss_family != AF_INET6) {
    r = -1;
    snprintf(why, sizeof why, "not an IP address");
  }
  if (r == 0) return 0;
  if (r == 1)
    pt__fail(l, 0, "%s %s: a host name (numeric addresses only)", what, w);
  else
    pt__fail(l, 0, "%s %s: %s", what, w, why);
  errno = EINVAL;
  return -1;
}

pt_conn *pt_udp_open(pt_loop *l, const char *host, int port, const char *peer,
                     int peer_port, const pt_udpopts *o) {
  struct sockaddr_storage la, pa;
  socklen_t llen = 0, plen = 0;
  char w[300];
  int fam = AF_INET;
  pt_udpopts def;
  if (!o) {
    memset(&def, 0, sizeof def);
    o = &def;
  }
  if (host) {
    if (udp_parse(l, "udp", host, port, 1, &la, &llen) != 0) return NULL;
    fam = la.ss_family;
  }
  if (peer) {
    if (udp_parse(l, "udp connect", peer, peer_port, 0, &pa, &plen) != 0)
      return NULL;
    if (!host) fam = pa.ss_family;
  }
  if (host)
    pt__sock_where(w, sizeof w, host, port);
  else
    snprintf(w, sizeof w, "(unbound)");
  int fd = socket(fam, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    pt__fail(l, errno, "udp %s: socket", w);
    return NULL;
  }
  int one = 1;
  if (o->reuseport &&
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
    pt__fail(l, errno, "udp %s: SO_REUSEPORT", w);
    goto bad;
  }
  if (o->rcvbuf > 0) set_bufsize(fd, SO_RCVBUF, SO_RCVBUFFORCE, o->rcvbuf);
  if (o->sndbuf > 0) set_bufsize(fd, SO_SNDBUF, SO_SNDBUFFORCE, o->sndbuf);
  if (host && bind(fd, (struct sockaddr *)&la, llen) != 0) {
    pt__fail(l, errno, "udp %s", w);
    goto bad;
  }
  if (peer && connect(fd, (struct sockaddr *)&pa, plen) != 0) {
    char pw[300];
    pt__sock_where(pw, sizeof pw, peer, peer_port);
    pt__fail(l, errno, "udp connect %s", pw);
    goto bad;
  }
  pt_udp *u = calloc(1, sizeof *u);
  pt_conn *c = u ? pt__conn_new(l, fd, PT_KIND_DGRAM, fam) : NULL;
  if (!c) {
    free(u);
    pt__fail(l, ENOMEM, "udp %s", w);
    goto bad;
  }
  c->dg = &u->dg;
  u->dg.max = o->max_datagram && o->max_datagram < PT_UDP_MAX ? o->max_datagram
                                                              : PT_UDP_MAX;
  u->connected = peer != NULL;
  if (pt__arm(c) != 0) {
    int e = errno;
    char why[256]; /* the back end wrote l->err */
    snprintf(why, sizeof why, "%s", l->err[0] ? l->err : strerror(e));
    pt__fail(l, 0, "udp %s: %s", w, why);
    c->flags |= PT_CF_USER_CLOSED;
    pt__close(c, e, 0); /* closes fd */
    errno = e;
    return NULL;
  }
  return c;
bad : {
  int e = errno;
  close(fd);
  errno = e;
  return NULL;
}
}

/* ---- 2. receiving ---------------------------------------------------------- */

void pt__udp_report(pt_conn *c, int kind, int64_t res) {
  pt_loop *l = c->loop;
  pt_udp *u = udp_of(c);
  if (kind == PT_RP_DGERR) {
    u->pend_err = (int)res;
    u->dg.st.errors_in++;
    pt__push(l, PT_EV_DGRAM, (int)res, c->id, 0, c);
    return;
  }
  pt__push(l, PT_EV_DGRAM, kind == PT_RP_DGCUT ? EMSGSIZE : 0, c->id,
           (uint64_t)res, c);
  pt__cap_check(c);
  pt__account(c);
}

int pt_udp_recv(pt_conn *c, pt_dgram *d) {
  if (c->kind != PT_KIND_DGRAM) return 0;
  pt_udp *u = udp_of(c);
  if (u->skip) {
    pt_buf_skip(c->in, u->skip);
    u->skip = 0;
    if ((c->flags & PT_CF_RD_PAUSED) || !pt_buf_len(c->in))
      pt_conn_consumed(c); /* room again: reading resumes */
  }
  memset(d, 0, sizeof *d);
  if (u->pend_err) {
    d->err = u->pend_err;
    u->pend_err = 0;
    return 1;
  }
  if (pt_buf_len(c->in) < sizeof(pt_dgrec)) return 0;
  pt_dgrec r;
  memcpy(&r, pt_buf_peek(c->in, sizeof r), sizeof r);
  size_t size = pt_dgrec_size(r.alen, r.len);
  const char *p = pt_buf_peek(c->in, size); /* one node: no copy */
  if (!p) return 0;                         /* cannot happen */
  d->addr = (const struct sockaddr *)(const void *)(p + sizeof r);
  d->alen = r.alen;
  d->data = p + sizeof r + r.alen;
  d->len = r.len;
  d->full = r.full;
  d->err = r.full > r.len ? EMSGSIZE : 0;
  u->skip = size;
  return 1;
}

void pt_udp_unrecv(pt_conn *c, const pt_dgram *d) {
  pt_udp *u = udp_of(c);
  if (d->data)
    u->skip = 0; /* the record is still at the front */
  else if (d->err)
    u->pend_err = d->err;
}

/* ---- 3. sending ------------------------------------------------------------ */

int pt_udp_send(pt_conn *c, const void *p, size_t n, const struct sockaddr *to,
                socklen_t tolen) {
  if (c->kind != PT_KIND_DGRAM) {
    errno = ENOTSOCK;
    return -1;
  }
  pt_udp *u = udp_of(c);
  if (c->flags & (PT_CF_CLOSED | PT_CF_CLOSING)) {
    errno = EPIPE;
    return -1;
  }
  if (n > (c->family == AF_INET6 ? 65527u : 65507u)) {
    errno = EMSGSIZE;
    return -1;
  }
  if (!to) {
    if (!u->connected) {
      errno = EDESTADDRREQ;
      return -1;
    }
    tolen = 0;
  } else if (to->sa_family == AF_INET && tolen >= sizeof(struct sockaddr_in)) {
    tolen = sizeof(struct sockaddr_in); /* an IPv6 socket takes them too */
  } else if (to->sa_family == AF_INET6 &&
             tolen >= sizeof(struct sockaddr_in6) && c->family == AF_INET6) {
    tolen = sizeof(struct sockaddr_in6);
  } else {
    errno = EAFNOSUPPORT;
    return -1;
  }
  if (c->out_cap && pt_buf_len(c->out) + n > c->out_cap) {
    u->dg.st.send_full++;
    errno = ENOBUFS;
    return -1;
  }
  size_t size = pt_dgrec_size(tolen, n);
  char *q = pt_buf_reserve(c->out, size);
  if (!q) {
    errno = ENOMEM;
    return -1;
  }
  pt_dgrec r;
  r.len = r.full = (uint32_t)n;
  r.alen = (uint16_t)tolen;
  r.pad = 0;
  memcpy(q, &r, sizeof r);
  if (tolen) memcpy(q + sizeof r, to, tolen);
  if (n) memcpy(q + sizeof r + tolen, p, n);
  memset(q + sizeof r + tolen + n, 0, size - sizeof r - tolen - n);
  pt_buf_commit(c->out, size);
  pt__dirty(c);
  pt__account(c);
  return 0;
}

int pt_udp_sendto(pt_conn *c, const void *p, size_t n, const char *peer) {
  if (c->kind != PT_KIND_DGRAM) {
    errno = ENOTSOCK;
    return -1;
  }
  pt_udp *u = udp_of(c);
  if (!u->to_len || strcmp(peer, u->to_text) != 0) {
    u->to_len = 0;
    if (pt_udp_addr(peer, &u->to, &u->to_len) != 0) return -1;
    size_t tl = strlen(peer);
    if (tl < sizeof u->to_text)
      memcpy(u->to_text, peer, tl + 1);
    else
      u->to_text[0] = '\0'; /* too long to remember: never matches */
  }
  return pt_udp_send(c, p, n, (struct sockaddr *)&u->to, u->to_len);
}

/* ---- 4. addresses, counters ------------------------------------------------- */

int pt_udp_addr(const char *text, struct sockaddr_storage *ss, socklen_t *len) {
  char host[INET6_ADDRSTRLEN + 1];
  const char *h = text, *he, *ps;
  if (text[0] == '[') {
    h = text + 1;
    he = strchr(h, ']');
    if (!he || he[1] != ':') goto bad;
    ps = he + 2;
  } else {
    he = strchr(text, ':');
    if (!he || strchr(he + 1, ':')) goto bad; /* v6 needs brackets */
    ps = he + 1;
  }
  size_t hn = (size_t)(he - h);
  if (hn == 0 || hn >= sizeof host) goto bad;
  memcpy(host, h, hn);
  host[hn] = '\0';
  unsigned port = 0;
  if (!*ps) goto bad;
  for (const char *q = ps; *q; q++) {
    if (*q < '0' || *q > '9') goto bad;
    port = port * 10 + (unsigned)(*q - '0');
    if (port > 65535) goto bad;
  }
  memset(ss, 0, sizeof *ss);
  if (strcmp(host, "localhost") == 0) strcpy(host, "127.0.0.1");
  struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
  if (text[0] != '[' && inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
    s4->sin_family = AF_INET;
    s4->sin_port = htons((uint16_t)port);
    *len = sizeof *s4;
    return 0;
  }
  if (text[0] == '[' && inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons((uint16_t)port);
    *len = sizeof *s6;
    return 0;
  }
bad:
  errno = EINVAL;
  return -1;
}

size_t pt_udp_addr_text(const struct sockaddr *a, socklen_t alen, char *buf,
                        size_t n) {
  char h[INET6_ADDRSTRLEN];
  int k = -1;
  if (a->sa_family == AF_INET && alen >= sizeof(struct sockaddr_in)) {
    const struct sockaddr_in *s = (const void *)a;
    inet_ntop(AF_INET, &s->sin_addr, h, sizeof h);
    k = snprintf(buf, n, "%s:%u", h, ntohs(s->sin_port));
  } else if (a->sa_family == AF_INET6 && alen >= sizeof(struct sockaddr_in6)) {
    const struct sockaddr_in6 *s = (const void *)a;
    if (IN6_IS_ADDR_V4MAPPED(&s->sin6_addr)) {
      inet_ntop(AF_INET, s->sin6_addr.s6_addr + 12, h, sizeof h);
      k = snprintf(buf, n, "%s:%u", h, ntohs(s->sin6_port));
    } else {
      inet_ntop(AF_INET6, &s->sin6_addr, h, sizeof h);
      k = snprintf(buf, n, "[%s]:%u", h, ntohs(s->sin6_port));
    }
  }
  if (k < 0) k = snprintf(buf, n, "?");
  return (size_t)k < n ? (size_t)k : n - 1;
}

const char *pt_udp_peer_text(pt_conn *c, const struct sockaddr *a,
                             socklen_t alen, size_t *tlen) {
  pt_udp *u = udp_of(c);
  if (c->kind != PT_KIND_DGRAM || alen > sizeof u->from) {
    static const char q[] = "?";
    *tlen = 1;
    return q;
  }
  if (alen != u->from_len || memcmp(a, u->from, alen) != 0) {
    u->from_tlen = pt_udp_addr_text(a, alen, u->from_text, sizeof u->from_text);
    memcpy(u->from, a, alen);
    u->from_len = alen;
  }
  *tlen = u->from_tlen;
  return u->from_text;
}

int pt_udp_stats_get(pt_conn *c, pt_udp_stats *out) {
  if (c->kind != PT_KIND_DGRAM) return -1;
  pt_udp_stats *st = &c->dg->st;
  if (c->fd >= 0) {
    uint32_t mi[SK_MEMINFO_VARS];
    socklen_t ml = sizeof mi;
    if (getsockopt(c->fd, SOL_SOCKET, SO_MEMINFO, mi, &ml) == 0 &&
        ml > SK_MEMINFO_DROPS * sizeof mi[0])
      st->kernel_drops = mi[SK_MEMINFO_DROPS];
    socklen_t il = sizeof st->rcvbuf;
    getsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &st->rcvbuf, &il);
    il = sizeof st->sndbuf;
    getsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &st->sndbuf, &il);
  }
  st->queued = pt_buf_len(c->in) - udp_of(c)->skip;
  *out = *st;
  return 0;
}
