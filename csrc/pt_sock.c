/*
 * pt_sock.c — sockets: addresses, listen (unix paths taken over only when
 * stale), connect (host names through the resolver thread, pt_dns.c),
 * accept and its fd-exhaustion policy, socket options, addresses as text.
 *
 * Errors name the phase and the address: "listen 127.0.0.1:80: Address
 * already in use" (pt_loop_error), "connect 127.0.0.1:9090: Connection
 * refused" and "resolve nosuch.invalid: Name or service not known"
 * (pt_conn_error, for the CONNECTED completion that reported the errno).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "pt_private.h"
#include "pt_sock.h"

#define PT_LISTEN_BACKOFF_MS 100

/* ---- addresses ------------------------------------------------------------ */

/* host:port as a person writes it ("[::1]:80", "unix:/p") */
static void where(char *buf, size_t n, const char *host, int port) {
  if (!host || !*host) host = "*";
  if (strncmp(host, "unix:", 5) == 0)
    snprintf(buf, n, "%s", host);
  else if (strchr(host, ':') && host[0] != '[')
    snprintf(buf, n, "[%s]:%d", host, port);
  else
    snprintf(buf, n, "%s:%d", host, port);
}

static int looks_like_name(const char *h) {
  size_t n = strlen(h);
  if (n == 0 || n > 253) return 0;
  for (const char *p = h; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
          (*p >= '0' && *p <= '9') || *p == '.' || *p == '-' || *p == '_'))
      return 0;
  return 1;
}

/* Parse host/port: 0 with *ss filled, 1 when host is a name to resolve,
 * -1 with why filled. */
static int parse_addr(const char *host, int port, int passive,
                      struct sockaddr_storage *ss, socklen_t *len, char *why,
                      size_t wn) {
  memset(ss, 0, sizeof *ss);
  if (!host) host = "";
  if (strncmp(host, "unix:", 5) == 0) {
    const char *path = host + 5;
    struct sockaddr_un *su = (struct sockaddr_un *)ss;
    size_t n = strlen(path);
    if (n == 0) {
      snprintf(why, wn, "empty unix socket path");
      return -1;
    }
    if (n >= sizeof su->sun_path) {
      snprintf(why, wn, "unix socket path too long");
      return -1;
    }
    su->sun_family = AF_UNIX;
    memcpy(su->sun_path, path, n);
    if (path[0] == '@') su->sun_path[0] = '\0'; /* abstract namespace */
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n +
                       (path[0] == '@' ? 0 : 1));
    return 0;
  }
  if (port < 0 || port > 65535) {
    snprintf(why, wn, "port out of range");
    return -1;
  }
  char h[INET6_ADDRSTRLEN + 16];
  size_t hn = strlen(host);
  if (hn >= 256) {
    snprintf(why, wn, "address too long");
    return -1;
  }
  int bracket = hn >= 2 && host[0] == '[' && host[hn - 1] == ']';
  if (hn >= sizeof h + (bracket ? 2 : 0)) {
    if (!bracket && looks_like_name(host)) return 1;
    snprintf(why, wn, "not an address");
    return -1;
  }
  if (bracket) {
    memcpy(h, host + 1, hn - 2);
    h[hn - 2] = '\0';
  } else {
    memcpy(h, host, hn + 1);
  }
  if (!h[0] || strcmp(h, "*") == 0) {
    if (!passive) {
      snprintf(why, wn, "no address");
      return -1;
    }
    strcpy(h, "0.0.0.0");
  }
  if (strcmp(h, "localhost") == 0) strcpy(h, "127.0.0.1"); /* no resolver */
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  int r = getaddrinfo(h, NULL, &hints, &res);
  if (r != 0 || !res) {
    if (!bracket && looks_like_name(h)) return 1;
    snprintf(why, wn, "not an address (%s)", gai_strerror(r));
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

const char *pt_conn_error(const pt_conn *c) { return c->errmsg; }

static void set_errmsg(pt_conn *c, const char *phase, const char *what) {
  char w[300], msg[420];
  if (c->errmsg) return;
  if (strcmp(phase, "resolve") == 0)
    snprintf(w, sizeof w, "%s", c->host ? c->host : "?");
  else
    where(w, sizeof w, c->host, c->port);
  snprintf(msg, sizeof msg, "%s %s: %s", phase, w, what);
  c->errmsg = strdup(msg);
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

static int sock_error(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
  return err;
}

/* ---- listen ------------------------------------------------------------- */

/* A socket file at path: 1 a server answers there, 0 stale (refused),
 * -1 cannot tell (errno). */
static int unix_live(const struct sockaddr_storage *ss, socklen_t len) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int r = connect(fd, (const struct sockaddr *)ss, len);
  int e = r == 0 ? 0 : errno;
  close(fd);
  if (r == 0 || e == EAGAIN || e == EINPROGRESS) return 1;
  if (e == ECONNREFUSED) return 0;
  errno = e;
  return -1;
}

pt_conn *pt_listen(pt_loop *l, const char *host, int port, int backlog,
                   const pt_sockopts *o) {
  struct sockaddr_storage ss;
  socklen_t len;
  char w[300], why[160];
  where(w, sizeof w, host, port);
  int pr = parse_addr(host, port, 1, &ss, &len, why, sizeof why);
  if (pr != 0) {
    if (pr < 0)
      pt__fail(l, 0, "listen %s: %s", w, why);
    else
      pt__fail(l, 0, "listen %s: a host name (listen takes numeric addresses)", w);
    errno = EINVAL;
    return NULL;
  }
  int fam = ss.ss_family;
  const char *path = NULL;
  if (fam == AF_UNIX) {
    const struct sockaddr_un *su = (const void *)&ss;
    struct stat st;
    if (su->sun_path[0] && lstat(su->sun_path, &st) == 0 && S_ISSOCK(st.st_mode)) {
      /* take the path over only from a server that is gone */
      int live = unix_live(&ss, len);
      if (live == 1) {
        pt__fail(l, 0, "listen %s: address in use by a live server", w);
        errno = EADDRINUSE;
        return NULL;
      }
      if (live == 0) unlink(su->sun_path);
    }
  }
  int fd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    pt__fail(l, errno, "listen %s: socket", w);
    return NULL;
  }
  int one = 1;
  if (fam != AF_UNIX) {
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (o && o->reuseport &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
      pt__fail(l, errno, "listen %s: SO_REUSEPORT", w);
      goto bad;
    }
    if (o && o->rcvbuf > 0)
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &o->rcvbuf, sizeof o->rcvbuf);
  }
  if (bind(fd, (struct sockaddr *)&ss, len) != 0) {
    pt__fail(l, errno, "listen %s", w);
    goto bad; /* the path is not ours to unlink */
  }
  if (fam == AF_UNIX && ((struct sockaddr_un *)&ss)->sun_path[0])
    path = ((struct sockaddr_un *)&ss)->sun_path;
  if (listen(fd, backlog < 0 ? SOMAXCONN : backlog) != 0) {
    pt__fail(l, errno, "listen %s", w);
    goto bad;
  }
  pt_conn *c = pt__conn_new(l, fd, PT_KIND_LISTENER, fam);
  if (!c || (path && !(c->unix_path = strdup(path)))) {
    if (c) {
      c->flags |= PT_CF_USER_CLOSED;
      pt__close(c, 0, 0); /* closes fd */
      fd = -1;
    }
    pt__fail(l, ENOMEM, "listen %s", w);
    goto bad;
  }
  if (o) c->lopts = *o;
  if (pt__arm(c) != 0) {
    int e = errno;
    pt__fail(l, e, "listen %s", w);
    c->flags |= PT_CF_USER_CLOSED;
    pt__close(c, e, 0); /* unlinks the path */
    errno = e;
    return NULL;
  }
  return c;
bad : {
  int e = errno;
  if (fd >= 0) close(fd);
  if (path) unlink(path);
  errno = e;
  return NULL;
}
}

/* ---- accept ------------------------------------------------------------- */

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
  pt__rearm(lc);
  if (!lc->timer)
    lc->timer = pt__timer_add(l, PT_LISTEN_BACKOFF_MS, PT_TK_LISTEN, lc);
}

void pt__sock_accepted(pt_loop *l, pt_conn *lc, int fd) {
  if (lc->flags & PT_CF_CLOSED) {
    if (fd >= 0) close(fd);
    return;
  }
  if (fd < 0) {
    /* out of fds: drop a pending connection, so a level-triggered
     * listener does not spin; no spare: stop listening for a while */
    if (!drop_pending(l, lc)) listen_backoff(l, lc);
    return;
  }
  pt_conn *c = pt__conn_new(l, fd, PT_KIND_STREAM, lc->family);
  if (!c) {
    close(fd);
    l->st.accept_dropped++;
    return;
  }
  set_opts(fd, lc->family, &lc->lopts);
  c->flags |= PT_CF_OUT_PAUSE; /* a peer that never reads stops its calls */
  l->st.accepted++;
  pt__push(l, PT_EV_ACCEPTED, 0, c->id, lc->id, c);
  pt__rearm(c);
}

void pt__sock_listen_resume(pt_conn *c) {
  c->flags &= ~PT_CF_LISTEN_OFF;
  pt__rearm(c);
}

/* ---- connect ------------------------------------------------------------ */

static void connect_done(pt_conn *c, int err) {
  pt_loop *l = c->loop;
  if (c->timer) {
    pt_timers_cancel(&l->timers, c->timer);
    c->timer = 0;
  }
  c->flags &= ~PT_CF_RESOLVING;
  if (err) {
    set_errmsg(c, "connect", strerror(err));
    pt__push(l, PT_EV_CONNECTED, err, c->id, 0, c);
    pt__close(c, err, 0);
    return;
  }
  pt__push(l, PT_EV_CONNECTED, 0, c->id, 0, c);
  c->flags &= ~PT_CF_CONNECTING;
  l->st.connected++;
  /* interest changes from "writable" (connecting) to "readable" whether
   * or not queued output leaves at once */
  if (pt__has_out(c) && pt__write(c) < 0) return;
  pt__rearm(c);
}

/* The socket and its connect: -1 only when no socket could be made. */
static int start_connect(pt_conn *c, const struct sockaddr_storage *ss,
                         socklen_t len) {
  int fam = ss->ss_family;
  int fd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  set_opts(fd, fam, &c->lopts);
  c->fd = fd;
  c->family = fam;
  if (fam == AF_UNIX) c->flags |= PT_CF_UNIX;
  if (connect(fd, (const struct sockaddr *)ss, len) == 0)
    connect_done(c, 0);
  else if (errno == EINPROGRESS || errno == EINTR) /* EINTR: async */
    pt__rearm(c);
  else
    connect_done(c, errno);
  return 0;
}

static int gai_errno(const pt_dns_answer *a) {
  switch (a->gai) {
    case EAI_SYSTEM: return a->sys ? a->sys : EIO;
    case EAI_MEMORY: return ENOMEM;
    case EAI_AGAIN: return EAGAIN;
    default: return ENXIO;
  }
}

static void dns_notify(void *ctx) { pt__wake(ctx, PT_WAKE_DNS); }

/* c waited for its name: connect, or fail with what the resolver said. */
static void resolved(pt_conn *c, const pt_dns_answer *a) {
  if (a->gai) {
    set_errmsg(c, "resolve",
               a->gai == EAI_SYSTEM ? strerror(gai_errno(a)) : gai_strerror(a->gai));
    connect_done(c, gai_errno(a));
    return;
  }
  struct sockaddr_storage ss = a->ss;
  if (ss.ss_family == AF_INET)
    ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)c->port);
  else if (ss.ss_family == AF_INET6)
    ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)c->port);
  if (start_connect(c, &ss, a->len) != 0) connect_done(c, errno);
}

void pt__sock_resolved(pt_loop *l, const pt_dns_answer *a) {
  pt_conn *c = pt_loop_conn(l, a->tag);
  if (!c || (c->flags & PT_CF_CLOSED) || !(c->flags & PT_CF_RESOLVING)) return;
  c->flags &= ~PT_CF_RESOLVING;
  resolved(c, a);
}

pt_conn *pt_connect(pt_loop *l, const char *host, int port, int timeout_ms,
                    const pt_sockopts *o) {
  struct sockaddr_storage ss;
  socklen_t len;
  char w[300], why[160];
  if (!host) host = "";
  where(w, sizeof w, host, port);
  int pr = parse_addr(host, port, 0, &ss, &len, why, sizeof why);
  if (pr < 0) {
    pt__fail(l, 0, "connect %s: %s", w, why);
    errno = EINVAL;
    return NULL;
  }
  pt_conn *c = pt__conn_new(l, -1, PT_KIND_STREAM, AF_UNSPEC);
  if (!c || !(c->host = strdup(host))) {
    if (c) {
      c->flags |= PT_CF_USER_CLOSED;
      pt__close(c, 0, 0);
    }
    pt__fail(l, ENOMEM, "connect %s", w);
    return NULL;
  }
  c->flags |= PT_CF_CONNECTING;
  c->port = port;
  if (o) c->lopts = *o;
  l->now = pt__mono_ms();
  if (timeout_ms > 0)
    c->timer = pt__timer_add(l, timeout_ms, PT_TK_CONNECT, c);
  int e = 0;
  if (pr == 1) {
    pt_dns_answer a;
    if (!l->dns)
      l->dns = pt_dns_new(dns_notify, l, l->o.dns_ttl_ms, l->o.dns_delay_ms);
    int q = l->dns ? pt_dns_lookup(l->dns, host, c->id, &a) : -1;
    if (q == 0) {
      c->flags |= PT_CF_RESOLVING;
      return c;
    }
    if (q == 1) {
      resolved(c, &a);
      return c;
    }
    e = l->dns ? errno : ENOMEM;
    pt__fail(l, e, "resolve %s", host);
  } else if (start_connect(c, &ss, len) != 0) {
    e = errno;
    pt__fail(l, e, "connect %s: socket", w);
  }
  if (!e) return c;
  c->flags |= PT_CF_USER_CLOSED;
  pt__close(c, 0, 0);
  errno = e;
  return NULL;
}

void pt__sock_connect_ready(pt_conn *c, uint32_t m) {
  int err = sock_error(c->fd);
  if (!err && (m & (PT_R_ERR | PT_R_HUP))) err = ECONNREFUSED;
  if (err || (m & PT_R_OUT)) connect_done(c, err);
}

void pt__sock_connect_timeout(pt_conn *c) {
  if (!(c->flags & PT_CF_CONNECTING)) return;
  if (c->flags & PT_CF_RESOLVING)
    set_errmsg(c, "resolve", "timed out");
  connect_done(c, ETIMEDOUT);
}

int pt__sock_error(int fd) { return sock_error(fd); }

/* ---- for the datagram sockets (pt_udp.c) ------------------------------- */

int pt__sock_parse(const char *host, int port, int passive,
                   struct sockaddr_storage *ss, socklen_t *len, char *why,
                   size_t wn) {
  return parse_addr(host, port, passive, ss, len, why, wn);
}

void pt__sock_where(char *buf, size_t n, const char *host, int port) {
  where(buf, n, host, port);
}
