/*
 * mem_client.c — the many-connection client of bench/memory.lua.
 *
 *   mem_client HOST PORT N
 *
 * Holds N connections to a petrel server of bench/memory_server.lua (its
 * Mem service, framed strict Binary) and obeys one command per line on
 * stdin, answering one line on stdout:
 *   connect        open the N connections        -> "connected N"
 *   partial        write the first 4 bytes (the frame length) of an echo
 *                  call on every connection        -> "partial N"
 *   complete       write the rest of that call, read every reply
 *                                                  -> "replied N"
 *   calls R        R rounds of one whole call per connection, every reply
 *                  read before the next round      -> "replied N*R"
 *   close          close them all                  -> "closed"
 * Failures print "error: ..." and exit 1. The soft descriptor limit is
 * raised to the hard one first.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct conn {
  int fd;
  size_t got;        /* bytes of the current reply read */
  size_t want;       /* its length with the prefix, once known */
  unsigned char hdr[4];
} conn;

static conn *cs;
static int n, ep;
static unsigned char call[64];
static size_t call_len;

static void die(const char *what) {
  printf("error: %s: %s\n", what, strerror(errno));
  fflush(stdout);
  exit(1);
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + t.tv_nsec / 1e9;
}

/* A framed strict-Binary call of Mem.echo with a 16-byte binary. */
static void build_call(void) {
  unsigned char b[64];
  size_t k = 4;
  static const unsigned char head[] = {0x80, 0x01, 0x00, 0x01, 0, 0, 0, 4,
                                       'e',  'c',  'h',  'o',  0, 0, 0, 1,
                                       0x0b, 0x00, 0x01, 0,    0, 0, 16};
  memcpy(b + k, head, sizeof head);
  k += sizeof head;
  memcpy(b + k, "0123456789abcdef", 16);
  k += 16;
  b[k++] = 0; /* stop */
  uint32_t len = htonl((uint32_t)(k - 4));
  memcpy(b, &len, 4);
  memcpy(call, b, k);
  call_len = k;
}

/* Write all of p on the blocking-enough socket (retries on EAGAIN). */
static void write_all(int fd, const unsigned char *p, size_t len) {
  while (len) {
    ssize_t r = send(fd, p, len, MSG_NOSIGNAL);
    if (r < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      die("send");
    }
    p += r;
    len -= (size_t)r;
  }
}

/* Wait (10 s at most) for connects in progress to finish; each one that
 * did is checked for an error and taken off the ready set. Returns how
 * many finished; dies on a failed connect or a timeout. */
static int connects_done(void) {
  struct epoll_event evs[256];
  int k = epoll_wait(ep, evs, 256, 10000);
  if (k <= 0) die("connect timed out");
  for (int j = 0; j < k; j++) {
    int e = 0;
    socklen_t el = sizeof e;
    conn *c = &cs[evs[j].data.u32];
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &el);
    if (e) {
      errno = e;
      die("connect");
    }
    struct epoll_event ev = {.events = 0, .data.u32 = evs[j].data.u32};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
  }
  return k;
}

static void do_connect(const char *host, int port) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host, &a.sin_addr) != 1) die("address");
  int pending = 0;
  for (int i = 0; i < n; i++) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    cs[i].fd = fd;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
      if (errno != EINPROGRESS) die("connect");
      struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (uint32_t)i};
      if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) die("epoll_ctl");
      pending++;
    } else {
      struct epoll_event ev = {.events = 0, .data.u32 = (uint32_t)i};
      if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) die("epoll_ctl");
    }
    /* do not outrun the server's backlog: let some complete */
    while (pending > 256) pending -= connects_done();
  }
  while (pending > 0) pending -= connects_done();
}

/* Read one reply on every conn (bounded in time). */
static void read_replies(void) {
  for (int i = 0; i < n; i++) {
    cs[i].got = 0;
    cs[i].want = 0;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, cs[i].fd, &ev) != 0) die("epoll_ctl");
  }
  int left = n;
  double end = now() + 60;
  unsigned char sink[4096];
  while (left > 0) {
    struct epoll_event evs[512];
    int k = epoll_wait(ep, evs, 512, 1000);
    if (k < 0 && errno != EINTR) die("epoll_wait");
    if (now() > end) {
      errno = ETIMEDOUT;
      die("replies");
    }
    for (int j = 0; j < k; j++) {
      conn *c = &cs[evs[j].data.u32];
      for (;;) {
        size_t ask;
        unsigned char *to;
        if (c->got < 4) {
          to = c->hdr + c->got;
          ask = 4 - c->got;
        } else {
          to = sink;
          ask = c->want - c->got;
          if (ask > sizeof sink) ask = sizeof sink;
        }
        ssize_t r = recv(c->fd, to, ask, 0);
        if (r < 0) {
          if (errno == EAGAIN || errno == EINTR) break;
          die("recv");
        }
        if (r == 0) {
          errno = ECONNRESET;
          die("server closed a connection");
        }
        c->got += (size_t)r;
        if (c->got == 4 && !c->want) {
          uint32_t len;
          memcpy(&len, c->hdr, 4);
          c->want = 4 + (size_t)ntohl(len);
        }
        if (c->want && c->got == c->want) {
          struct epoll_event ev = {.events = 0, .data.u32 = evs[j].data.u32};
          epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
          left--;
          break;
        }
      }
    }
  }
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: mem_client HOST PORT N\n");
    return 2;
  }
  n = atoi(argv[3]);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < (rlim_t)n + 16) {
      printf("error: descriptor limit %llu is below %d connections\n",
             (unsigned long long)rl.rlim_cur, n);
      return 1;
    }
  }
  cs = calloc((size_t)n, sizeof *cs);
  ep = epoll_create1(EPOLL_CLOEXEC);
  if (!cs || ep < 0) die("setup");
  build_call();
  char line[128];
  while (fgets(line, sizeof line, stdin)) {
    if (!strncmp(line, "connect", 7)) {
      do_connect(argv[1], atoi(argv[2]));
      printf("connected %d\n", n);
    } else if (!strncmp(line, "partial", 7)) {
      for (int i = 0; i < n; i++) write_all(cs[i].fd, call, 4);
      printf("partial %d\n", n);
    } else if (!strncmp(line, "complete", 8)) {
      for (int i = 0; i < n; i++) write_all(cs[i].fd, call + 4, call_len - 4);
      read_replies();
      printf("replied %d\n", n);
    } else if (!strncmp(line, "calls", 5)) {
      int rounds = atoi(line + 5);
      for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < n; i++) write_all(cs[i].fd, call, call_len);
        read_replies();
      }
      printf("replied %d\n", n * rounds);
    } else if (!strncmp(line, "close", 5)) {
      for (int i = 0; i < n; i++) close(cs[i].fd);
      printf("closed\n");
      fflush(stdout);
      return 0;
    } else {
      printf("error: unknown command\n");
    }
    fflush(stdout);
  }
  return 0;
}
