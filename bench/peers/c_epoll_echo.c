/*
 * c_epoll_echo: the "floor" for bench/rpc: a minimal single-threaded,
 * level-triggered epoll server for framed messages (4-byte big-endian
 * length prefix + body, as Thrift TFramedTransport).
 *
 *   c_epoll_echo [--host 127.0.0.1] --port P | --unix PATH
 *                [--thrift] [--duration SECONDS]
 *
 * Mode A (default): every complete frame is written back byte for byte.
 * Mode B (--thrift): every frame must be a strict-binary Thrift CALL
 *   (or ONEWAY) whose args struct holds exactly one field, id 1 type
 *   STRUCT, as loadgen --thrift-call builds it:
 *     len | 0x8001000T | i32 n "name" | i32 seqid | 0C 0001 <struct> 00
 *   and the reply is a valid framed REPLY:
 *     len | 0x80010002 | i32 n "name" | i32 seqid | 0C 0000 <struct> 00
 *   i.e. result field 0 (success, STRUCT) holds the argument struct bytes
 *   copied verbatim (never decoded). ONEWAY calls get no reply. Anything
 *   else closes the connection.
 *
 * --duration (default 600) bounds the lifetime: the server exits by itself
 * after that many seconds so that it never outlives a benchmark.
 * Prints "listening ..." on stderr once it accepts connections.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "echo_common.h"

#define MAX_FRAME (512u * 1024u * 1024u)
#define READ_CHUNK 65536
#define OUT_HIGH_WATER (8u * 1024u * 1024u) /* stop reading above this */

typedef struct {
    int fd; /* -1 for the listener marker */
    uint32_t events;
    buf_t in, out;
} conn_t;

static int epfd, lfd;
static int thrift_mode;
static conn_t listener_marker = {.fd = -1};
static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void die(const char *m)
{
    fprintf(stderr, "c_epoll_echo: %s: %s\n", m, strerror(errno));
    exit(1);
}

static void conn_free(conn_t *c)
{
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->in.p);
    free(c->out.p);
    free(c);
}

static void set_events(conn_t *c, uint32_t ev)
{
    if (c->events == ev)
        return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &e);
    c->events = ev;
}

/* Returns 0 ok, -1 connection must be closed. */
static int flush(conn_t *c)
{
    while (c->out.len > c->out.off) {
        ssize_t w = write(c->fd, c->out.p + c->out.off, c->out.len - c->out.off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return -1;
        }
        c->out.off += (size_t)w;
    }
    size_t pending = c->out.len - c->out.off;
    if (!pending)
        c->out.off = c->out.len = 0;
    uint32_t ev = (pending ? EPOLLOUT : 0) | (pending < OUT_HIGH_WATER ? EPOLLIN : 0);
    set_events(c, ev);
    return 0;
}

/* Returns 0 ok, -1 close. */
static int on_readable(conn_t *c)
{
    buf_t *in = &c->in;
    buf_reserve(in, READ_CHUNK);
    ssize_t r = read(c->fd, in->p + in->len, in->cap - in->len);
    if (r < 0)
        return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -1;
    if (r == 0)
        return -1;
    in->len += (size_t)r;
    while (in->len - in->off >= 4) {
        const uint8_t *p = in->p + in->off;
        uint32_t flen = rd_be32(p);
        if (flen > MAX_FRAME)
            return -1;
        size_t need = 4 + (size_t)flen;
        size_t avail = in->len - in->off;
        if (avail < need) {
            buf_reserve(in, need - avail);
            break;
        }
        if (thrift_mode) {
            if (thrift_reply(&c->out, p, need) < 0)
                return -1;
        } else {
            buf_reserve(&c->out, need);
            memcpy(c->out.p + c->out.len, p, need);
            c->out.len += need;
        }
        in->off += need;
    }
    if (in->off == in->len)
        in->off = in->len = 0;
    return flush(c);
}

static void on_accept(void)
{
    for (int i = 0; i < 256; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
                errno == ECONNABORTED)
                return;
            if (errno == EMFILE || errno == ENFILE) {
                fprintf(stderr, "c_epoll_echo: accept: %s\n", strerror(errno));
                return;
            }
            die("accept");
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* fails on unix: fine */
        conn_t *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            return;
        }
        c->fd = fd;
        c->events = EPOLLIN;
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) < 0) {
            close(fd);
            free(c);
        }
    }
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void usage(void)
{
    fprintf(stderr, "usage: c_epoll_echo [--host H] --port P | --unix PATH "
                    "[--thrift] [--duration SECONDS]\n");
    exit(1);
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *upath = NULL;
    int port = 0;
    double duration = 600;
    static const struct option lo[] = {
        {"host", required_argument, 0, 'h'},   {"port", required_argument, 0, 'p'},
        {"unix", required_argument, 0, 'u'},   {"thrift", no_argument, 0, 't'},
        {"duration", required_argument, 0, 'd'}, {0, 0, 0, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (o) {
        case 'h': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'u': upath = optarg; break;
        case 't': thrift_mode = 1; break;
        case 'd': duration = atof(optarg); break;
        default: usage();
        }
    }
    if (optind != argc || (!upath && (port <= 0 || port > 65535)) || duration <= 0)
        usage();

    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_stop}; /* no SA_RESTART: epoll_wait returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    /* backstop in case the loop below is somehow stuck */
    alarm((unsigned)(duration + 0.999) + 2);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    if (upath) {
        struct sockaddr_un un = {.sun_family = AF_UNIX};
        if (strlen(upath) >= sizeof un.sun_path)
            usage();
        strcpy(un.sun_path, upath);
        unlink(upath);
        lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (lfd < 0 || bind(lfd, (struct sockaddr *)&un, sizeof un) < 0)
            die("bind");
    } else {
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        if (inet_pton(AF_INET, host, &sin.sin_addr) != 1) {
            fprintf(stderr, "c_epoll_echo: --host must be an IPv4 address\n");
            return 1;
        }
        lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int one = 1;
        setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (lfd < 0 || bind(lfd, (struct sockaddr *)&sin, sizeof sin) < 0)
            die("bind");
    }
    if (listen(lfd, 65535) < 0)
        die("listen");
    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event le = {.events = EPOLLIN, .data.ptr = &listener_marker};
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &le);
    if (upath)
        fprintf(stderr, "c_epoll_echo: listening on %s (%s mode)\n", upath,
                thrift_mode ? "thrift" : "raw");
    else
        fprintf(stderr, "c_epoll_echo: listening on %s:%d (%s mode)\n", host, port,
                thrift_mode ? "thrift" : "raw");

    uint64_t end = now_ms() + (uint64_t)(duration * 1000);
    struct epoll_event evs[512];
    while (!stop_requested) {
        uint64_t t = now_ms();
        if (t >= end)
            break;
        uint64_t left = end - t;
        int n = epoll_wait(epfd, evs, 512, left > 1000 ? 1000 : (int)left);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (c == &listener_marker) {
                on_accept();
                continue;
            }
            uint32_t ev = evs[i].events;
            int rc = 0;
            if (ev & EPOLLOUT)
                rc = flush(c);
            if (rc == 0 && (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) && (c->events & EPOLLIN))
                rc = on_readable(c);
            else if (rc == 0 && (ev & (EPOLLHUP | EPOLLERR)))
                rc = -1;
            if (rc < 0)
                conn_free(c);
        }
    }
    fprintf(stderr, "c_epoll_echo: %s, exiting\n",
            stop_requested ? "stopped by signal" : "duration limit reached");
    if (upath)
        unlink(upath);
    return 0;
}
