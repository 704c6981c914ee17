/*
 * pt_sock.h — sockets (pt_sock.c): listen, connect, addresses. Part of
 * pt_loop.h; see it for the model.
 */
#ifndef PT_SOCK_H
#define PT_SOCK_H

#include "pt_types.h"

/* Addresses: "a.b.c.d", "::1" / "[::1]", "localhost" (= 127.0.0.1),
 * "unix:/path" or "unix:@abstract" (port ignored); pt_connect also takes
 * host names (resolved off the loop's thread, see pt_dns.h).
 * listen: host NULL, "" or "*" means 0.0.0.0; port 0 picks one (see
 * pt_conn_port); numeric only. A unix socket file is taken over only when
 * it is stale (connecting to it is refused): a live server's path fails
 * with EADDRINUSE ("address in use by a live server"), and a file that is
 * not a socket is never removed. The listener removes its file when it
 * closes. Errors name the phase and the address ("listen 127.0.0.1:80:
 * Address already in use"). */
pt_conn *pt_listen(pt_loop *l, const char *host, int port, int backlog,
                   const pt_sockopts *o);
/* Nonblocking connect; CONNECTED follows (also for immediate success or
 * failure). timeout_ms <= 0: no timeout (it covers resolving a name too).
 * NULL only for local failures (bad address, no fds). */
pt_conn *pt_connect(pt_loop *l, const char *host, int port, int timeout_ms,
                    const pt_sockopts *o);
/* Why a connect failed ("connect 127.0.0.1:9090: Connection refused",
 * "resolve nosuch.invalid: Name or service not known"), or NULL. Valid
 * while the conn is. */
const char *pt_conn_error(const pt_conn *c);

/* Local port (TCP), or -1. */
int pt_conn_port(const pt_conn *c);
/* "127.0.0.1:80", "[::1]:80", "unix:/path" of the peer (peer != 0) or the
 * local end into buf; -1 if closed. */
int pt_conn_addr(const pt_conn *c, int peer, char *buf, size_t n);

#endif
