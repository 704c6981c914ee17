/*
 * pt_udp.h — datagram sockets (pt_udp.c): UDP over IPv4 and IPv6, bound,
 * connected or both, on either back end. Part of pt_loop.h; see it for the
 * model.
 *
 * Receiving: the loop reads datagrams in batches (recvmmsg under epoll,
 * multishot recvmsg into a buffer ring under io_uring) into the socket's
 * queue and queues one DGRAM completion per datagram, in order: id = the
 * socket, arg = the bytes kept, err = 0, EMSGSIZE (the datagram was longer
 * than max_datagram and was cut there) or an errno the socket reported
 * instead of a datagram (ECONNREFUSED: a datagram we sent met a closed port;
 * arg 0, the socket stays open). pt_udp_recv takes them from the queue with
 * their sender's address. A socket whose queue holds its input cap (the
 * loop's in_cap) stops being read until pt_udp_recv made room: the kernel
 * keeps what arrives meanwhile in the socket's receive buffer (rcvbuf) and
 * drops what does not fit, counted (kernel_drops).
 *
 * Sending: pt_udp_send queues a datagram; the queue leaves in the flush at
 * the start of the next pt_loop_poll (or pt_loop_flush), all of the round's
 * datagrams in one sendmmsg per socket. A datagram the kernel refuses is
 * dropped and counted (send_errors, last_send_errno): a datagram has no
 * acknowledgement, so an accepted one may still be lost on the way.
 *
 * Closing: pt_conn_close(c, 1) sends what is queued first (bounded by the
 * close timeout), pt_conn_close(c, 0) drops it.
 */
#ifndef PT_UDP_H
#define PT_UDP_H

#include <sys/socket.h>

#include "pt_types.h"

typedef struct pt_udpopts {
  int rcvbuf;          /* SO_RCVBUF bytes (SO_RCVBUFFORCE where the kernel's
                          cap would cut it and we may); 0 system default */
  int sndbuf;          /* SO_SNDBUF bytes; 0 system default */
  size_t max_datagram; /* longest datagram kept whole (longer ones are cut
                          and reported); 0 or above PT_UDP_MAX: PT_UDP_MAX */
  int reuseport;       /* SO_REUSEPORT before bind */
} pt_udpopts;

#define PT_UDP_MAX 65536u /* every UDP datagram fits */

/* A datagram taken by pt_udp_recv. */
typedef struct pt_dgram {
  const char *data;            /* len bytes; NULL when err is a socket's */
  size_t len;                  /* bytes kept */
  size_t full;                 /* its length on the wire (> len: cut) */
  int err;                     /* 0, EMSGSIZE (cut), or the socket's errno
                                  instead of a datagram */
  const struct sockaddr *addr; /* the sender (alen bytes) */
  socklen_t alen;
} pt_dgram;

/* A datagram socket: bound to host:port when host is given (NULL: not
 * bound, or by connect), connected to peer:peer_port when peer is given
 * (NULL: not connected; datagrams then need an address). Numeric addresses
 * and "localhost"; "", "*" bind every IPv4 address, "::" every IPv6 one
 * (and IPv4 as mapped addresses). Neither: an unbound IPv4 socket for
 * sending (the kernel binds it at the first send). NULL with errno and
 * pt_loop_error ("udp 127.0.0.1:53: Address already in use"). */
pt_conn *pt_udp_open(pt_loop *l, const char *host, int port, const char *peer,
                     int peer_port, const pt_udpopts *o);

/* The next datagram of c (an error the socket reported comes first):
 * 1 with *d filled, 0 when none is queued (or c is not a datagram socket).
 * The bytes d points at stay valid until the next pt_udp_recv on c or until
 * c is recycled. Makes room: a socket paused on its input cap is read again
 * once its queue is under the cap. */
int pt_udp_recv(pt_conn *c, pt_dgram *d);

/* Put back what the last pt_udp_recv on c handed out (d): the next call
 * hands it out again. */
void pt_udp_unrecv(pt_conn *c, const pt_dgram *d);

/* Queue a datagram of n bytes to `to` (NULL: the connected peer) for the
 * next flush. 0, or -1 with errno: EPIPE (closed or closing), EMSGSIZE
 * (over 65507 bytes on IPv4, 65527 on IPv6), EDESTADDRREQ (no address and
 * not connected), EAFNOSUPPORT (an address of another family), ENOBUFS
 * (the queue is over the socket's out_cap: the datagram is dropped and
 * counted as send_full), ENOMEM. */
int pt_udp_send(pt_conn *c, const void *p, size_t n, const struct sockaddr *to,
                socklen_t tolen);
/* The same to a peer written as text ("127.0.0.1:53", "[::1]:53",
 * "localhost:53"); EINVAL when it is not such an address. The last text is
 * remembered per socket, so replying to one peer parses it once. */
int pt_udp_sendto(pt_conn *c, const void *p, size_t n, const char *peer);

/* "a.b.c.d:port" or "[v6]:port" into *ss: 0, or -1 (EINVAL). */
int pt_udp_addr(const char *text, struct sockaddr_storage *ss, socklen_t *len);
/* addr as text ("127.0.0.1:53", "[::1]:53"; IPv4-mapped IPv6 addresses as
 * IPv4) into buf; its length. */
size_t pt_udp_addr_text(const struct sockaddr *a, socklen_t alen, char *buf,
                        size_t n);
/* The same, remembered per socket: the text stays valid until the next call
 * for c with another address. */
const char *pt_udp_peer_text(pt_conn *c, const struct sockaddr *a,
                             socklen_t alen, size_t *tlen);

/* c's counters, with kernel_drops, rcvbuf and sndbuf read now. -1 if c is
 * not a datagram socket. */
int pt_udp_stats_get(pt_conn *c, pt_udp_stats *out);

#endif
