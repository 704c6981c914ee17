/* udp_peer.c — the UDP bench's C side (make bench-udp; bench/udp.lua).
 *   udp_peer send PORT SECONDS SIZE   sendmmsg 64 datagrams of SIZE bytes at
 *                                     a time to 127.0.0.1:PORT for SECONDS;
 *                                     prints "sent N"
 *   udp_peer burst PORT COUNT SIZE    the same, COUNT datagrams
 *   udp_peer recv PORT RCVBUF         the minimal C receiver: a blocking
 *                                     recvmmsg (MSG_WAITFORONE) of up to 64
 *                                     datagrams at a time on a socket bound
 *                                     to 127.0.0.1:PORT (0: the kernel
 *                                     picks; "port P" is printed first);
 *                                     once no datagram came for 300 ms it
 *                                     prints "result RECEIVED COUNTED
 *                                     SECONDS CPU_SECONDS".
 * The receiver's timing rule is bench/udp.lua's for petrel too: the clock
 * runs from the end of the first batch to the end of the last; the rate
 * counts the datagrams of the batches after the first. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* secs > 0: for secs seconds; else count datagrams (a burst) */
static int do_send(int port, double secs, size_t size, unsigned long long count) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons((unsigned short)port);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    perror("udp_peer send");
    return 1;
  }
  char *buf = calloc(1, size ? size : 1);
  struct mmsghdr mm[BATCH];
  struct iovec iov[BATCH];
  memset(mm, 0, sizeof mm);
  for (int i = 0; i < BATCH; i++) {
    iov[i].iov_base = buf;
    iov[i].iov_len = size;
    mm[i].msg_hdr.msg_iov = &iov[i];
    mm[i].msg_hdr.msg_iovlen = 1;
  }
  unsigned long long sent = 0;
  double end = now() + secs;
  while (secs > 0 ? now() < end : sent < count) {
    unsigned n = BATCH;
    if (secs <= 0 && count - sent < n) n = (unsigned)(count - sent);
    int k = sendmmsg(fd, mm, n, 0);
    if (k > 0) sent += (unsigned)k;
  }
  printf("sent %llu\n", sent);
  return 0;
}

static int do_recv(int port, int rcvbuf) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a;
  socklen_t alen = sizeof a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons((unsigned short)port);
  if (rcvbuf > 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf);
  }
  if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    perror("udp_peer recv");
    return 1;
  }
  getsockname(fd, (struct sockaddr *)&a, &alen);
  printf("port %d\n", ntohs(a.sin_port));
  fflush(stdout);
  static char slots[BATCH][2048];
  struct mmsghdr mm[BATCH];
  struct iovec iov[BATCH];
  struct sockaddr_in from[BATCH];
  unsigned long long got = 0, first_batch = 0;
  double t0 = 0, t1 = 0, c0 = 0;
  struct timeval tv = {20, 0}; /* the first datagram; then 300 ms of quiet ends it */
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  for (;;) {
    for (int i = 0; i < BATCH; i++) {
      iov[i].iov_base = slots[i];
      iov[i].iov_len = sizeof slots[i];
      memset(&mm[i].msg_hdr, 0, sizeof mm[i].msg_hdr);
      mm[i].msg_hdr.msg_name = &from[i];
      mm[i].msg_hdr.msg_namelen = sizeof from[i];
      mm[i].msg_hdr.msg_iov = &iov[i];
      mm[i].msg_hdr.msg_iovlen = 1;
    }
    int k = recvmmsg(fd, mm, BATCH, MSG_WAITFORONE, NULL);
    if (k < 0 && errno == EINTR) continue; /* stopped and continued */
    if (k <= 0) break;                     /* the timeout: quiet */
    got += (unsigned)k;
    t1 = now();
    if (!t0) {
      t0 = t1;
      c0 = cpu();
      first_batch = got;
      tv.tv_sec = 0;
      tv.tv_usec = 300000;
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
  }
  double c1 = cpu();
  /* received, counted (after the first batch), seconds, cpu seconds */
  printf("result %llu %llu %.6f %.6f\n", got, got - first_batch, t1 - t0, c1 - c0);
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 5 && strcmp(argv[1], "send") == 0)
    return do_send(atoi(argv[2]), atof(argv[3]), (size_t)atoi(argv[4]), 0);
  if (argc >= 5 && strcmp(argv[1], "burst") == 0)
    return do_send(atoi(argv[2]), 0, (size_t)atoi(argv[4]), strtoull(argv[3], NULL, 10));
  if (argc >= 4 && strcmp(argv[1], "recv") == 0)
    return do_recv(atoi(argv[2]), atoi(argv[3]));
  fprintf(stderr, "usage: udp_peer send PORT SECONDS SIZE | burst PORT COUNT SIZE | "
                  "recv PORT RCVBUF\n");
  return 2;
}
