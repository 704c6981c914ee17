/*
 * c_uring_echo: a minimal single-threaded io_uring server for framed
 * messages (4-byte big-endian length prefix + body, as Thrift
 * TFramedTransport), the io_uring counterpart of c_epoll_echo.c: same
 * command line, same replies.
 *
 *   c_uring_echo [--host 127.0.0.1] --port P | --unix PATH
 *                [--thrift] [--duration SECONDS] [--sqpoll]
 *                [--bufs N] [--buf-size BYTES]
 *
 * Mode A (default): every complete frame is written back byte for byte.
 * Mode B (--thrift): every CALL frame gets a REPLY built exactly as
 *   c_epoll_echo does it (the args struct copied verbatim into result
 *   field 0; ONEWAY gets no reply; anything else closes the connection).
 *
 * io_uring use:
 *   - one ring; IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN when
 *     the kernel accepts them (falls back to fewer flags on EINVAL);
 *   - --sqpoll: IORING_SETUP_SQPOLL (sq_thread_idle 1000 ms), with
 *     IORING_SETUP_SQ_AFF pinning the SQ thread to the server's CPU when the
 *     process is pinned to exactly one CPU (taskset -c N); DEFER_TASKRUN
 *     is not allowed with SQPOLL, SINGLE_ISSUER is tried;
 *   - multishot accept on the listener;
 *   - multishot recv per connection with a provided buffer ring (group 0,
 *     --bufs buffers of --buf-size bytes, registered with
 *     io_uring_register_buf_ring: liburing 2.3 has no io_uring_setup_buf_ring).
 *     Complete frames are parsed straight out of the ring buffer; only a
 *     frame that spans buffers is copied into a per-connection buffer. Each
 *     buffer goes back to the ring as soon as its CQE is handled. If the
 *     ring runs dry the recv ends with -ENOBUFS and is re-armed.
 *   - replies are appended to a per-connection pending buffer; at most one
 *     io_uring_prep_send is in flight per connection (short sends are
 *     resubmitted), so replies stay in order;
 *   - one io_uring_enter per loop iteration (submit + wait, with a timeout
 *     for the duration limit); under --sqpoll submission needs no syscall,
 *     only waiting for completions when the CQ is empty does.
 * Unlike c_epoll_echo there is no read back-pressure (a multishot recv
 * keeps going): fine for loadgen, which bounds what is in flight.
 *
 * If io_uring (or a feature used here: buffer rings, multishot recv) is not
 * available the server prints "c_uring_echo: io_uring unavailable: ..." on
 * stderr and exits with status 2.
 *
 * --duration (default 600) bounds the lifetime; SIGTERM / SIGINT stop it.
 * Prints "listening ..." on stderr once it accepts connections.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "echo_common.h"

#define MAX_FRAME (512u * 1024u * 1024u)
#define BGID 0
#define SQ_ENTRIES 4096
#define CQ_ENTRIES 32768

enum { TAG_ACCEPT = 0, TAG_RECV = 1, TAG_SEND = 2, TAG_MASK = 3 };

typedef struct {
    int fd;
    int refs;    /* ops in flight: armed recv + send */
    int recv_on; /* multishot recv armed */
    int sending; /* a send of tx is in flight */
    int closing;
    buf_t in;  /* partial frame spanning ring buffers */
    buf_t out; /* replies not yet handed to a send */
    buf_t tx;  /* bytes of the send in flight */
} conn_t;

static struct io_uring ring;
static int lfd, thrift_mode;
static struct io_uring_buf_ring *br;
static uint8_t *bufs;
static unsigned nbufs = 4096, buf_size = 8192;
static volatile sig_atomic_t stop_requested;
static unsigned long n_enobufs, n_conns, n_loops, n_cqes;

static void on_stop(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void die(const char *m)
{
    fprintf(stderr, "c_uring_echo: %s: %s\n", m, strerror(errno));
    exit(1);
}

static void unavailable(const char *what, int err)
{
    fprintf(stderr, "c_uring_echo: io_uring unavailable: %s: %s\n", what, strerror(err));
    exit(2);
}

static void buf_append(buf_t *b, const uint8_t *p, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static struct io_uring_sqe *get_sqe(void)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    while (!sqe) {
        int r = io_uring_submit(&ring);
        if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
            errno = -r;
            die("io_uring_submit");
        }
        if (ring.flags & IORING_SETUP_SQPOLL)
            io_uring_sqring_wait(&ring);
        sqe = io_uring_get_sqe(&ring);
    }
    return sqe;
}

static void arm_accept(void)
{
    struct io_uring_sqe *sqe = get_sqe();
    io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, TAG_ACCEPT);
}

static void arm_recv(conn_t *c)
{
    struct io_uring_sqe *sqe = get_sqe();
    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | TAG_RECV);
    c->recv_on = 1;
    c->refs++;
}

static void submit_send(conn_t *c)
{
    struct io_uring_sqe *sqe = get_sqe();
    io_uring_prep_send(sqe, c->fd, c->tx.p + c->tx.off, c->tx.len - c->tx.off, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | TAG_SEND);
    c->sending = 1;
    c->refs++;
}

/* Start a send of everything pending if none is in flight. */
static void kick_send(conn_t *c)
{
    if (c->sending || c->closing || c->out.len == c->out.off)
        return;
    buf_t t = c->tx; /* tx is empty here: swap the buffers, no copy */
    c->tx = c->out;
    t.off = t.len = 0;
    c->out = t;
    submit_send(c);
}

static void conn_release(conn_t *c)
{
    if (!c->closing || c->refs)
        return;
    close(c->fd);
    free(c->in.p);
    free(c->out.p);
    free(c->tx.p);
    free(c);
}

/* Begin closing: shutdown() makes the armed recv end (res 0) and a send in
 * flight fail, after which the CQE handlers drop the last reference. */
static void conn_close(conn_t *c)
{
    if (!c->closing) {
        c->closing = 1;
        shutdown(c->fd, SHUT_RDWR);
    }
    conn_release(c);
}

/* Consume the complete frames at p[0..n); returns bytes consumed or -1. */
static long frames(conn_t *c, const uint8_t *p, size_t n)
{
    size_t used = 0;
    while (n - used >= 4) {
        uint32_t flen = rd_be32(p + used);
        if (flen > MAX_FRAME)
            return -1;
        size_t need = 4 + (size_t)flen;
        if (n - used < need)
            break;
        if (thrift_mode) {
            if (thrift_reply(&c->out, p + used, need) < 0)
                return -1;
        } else {
            buf_append(&c->out, p + used, need);
        }
        used += need;
    }
    return (long)used;
}

/* Data received into a ring buffer. Returns 0 ok, -1 close. */
static int on_data(conn_t *c, const uint8_t *p, size_t n)
{
    buf_t *in = &c->in;
    if (in->len > in->off) { /* a frame is already partly buffered */
        buf_append(in, p, n);
        long u = frames(c, in->p + in->off, in->len - in->off);
        if (u < 0)
            return -1;
        in->off += (size_t)u;
        if (in->off == in->len)
            in->off = in->len = 0;
    } else {
        long u = frames(c, p, n);
        if (u < 0)
            return -1;
        if ((size_t)u < n)
            buf_append(in, p + u, n - (size_t)u);
    }
    if (in->len - in->off >= 4) { /* reserve room for the whole pending frame */
        uint32_t flen = rd_be32(in->p + in->off);
        if (flen > MAX_FRAME)
            return -1;
        size_t need = 4 + (size_t)flen, avail = in->len - in->off;
        if (avail < need)
            buf_reserve(in, need - avail);
    }
    kick_send(c);
    return 0;
}

static void recycle_buf(unsigned bid)
{
    io_uring_buf_ring_add(br, bufs + (size_t)bid * buf_size, buf_size, (unsigned short)bid,
                          io_uring_buf_ring_mask(nbufs), 0);
    io_uring_buf_ring_advance(br, 1);
}

static void on_accept_cqe(struct io_uring_cqe *cqe)
{
    int fd = cqe->res;
    if (!(cqe->flags & IORING_CQE_F_MORE)) {
        if (fd == -EINVAL)
            unavailable("multishot accept", EINVAL);
        if (!stop_requested)
            arm_accept();
    }
    if (fd < 0) {
        if (fd != -ECONNABORTED && fd != -EINTR && fd != -EAGAIN)
            fprintf(stderr, "c_uring_echo: accept: %s\n", strerror(-fd));
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* fails on unix: fine */
    conn_t *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    c->fd = fd;
    n_conns++;
    arm_recv(c);
}

static void on_recv_cqe(conn_t *c, struct io_uring_cqe *cqe)
{
    int res = cqe->res;
    int more = (cqe->flags & IORING_CQE_F_MORE) != 0;
    if (!more) {
        c->recv_on = 0;
        c->refs--;
    }
    if (res > 0) {
        if (!(cqe->flags & IORING_CQE_F_BUFFER)) {
            fprintf(stderr, "c_uring_echo: recv completion without a buffer\n");
            exit(1);
        }
        unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        int rc = c->closing ? 0 : on_data(c, bufs + (size_t)bid * buf_size, (size_t)res);
        recycle_buf(bid);
        if (rc < 0) {
            conn_close(c);
            return;
        }
        if (!more && !c->closing)
            arm_recv(c);
    } else if (res == -ENOBUFS) {
        n_enobufs++;
        if (!c->recv_on && !c->closing)
            arm_recv(c);
    } else {
        if (res == -EINVAL && !more && n_conns == 1 && !c->closing)
            unavailable("multishot recv with a buffer ring", EINVAL);
        conn_close(c); /* EOF or error */
        return;
    }
    conn_release(c);
}

static void on_send_cqe(conn_t *c, struct io_uring_cqe *cqe)
{
    c->sending = 0;
    c->refs--;
    if (c->closing) {
        conn_release(c);
        return;
    }
    if (cqe->res <= 0) {
        if (cqe->res == -EINTR || cqe->res == -EAGAIN) {
            submit_send(c);
            return;
        }
        conn_close(c);
        return;
    }
    c->tx.off += (size_t)cqe->res;
    if (c->tx.off < c->tx.len) {
        submit_send(c); /* short send: the rest first, order is kept */
        return;
    }
    c->tx.off = c->tx.len = 0;
    kick_send(c);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void usage(void)
{
    fprintf(stderr, "usage: c_uring_echo [--host H] --port P | --unix PATH "
                    "[--thrift] [--duration SECONDS] [--sqpoll] [--bufs N (power of 2)] "
                    "[--buf-size BYTES]\n");
    exit(1);
}

static const char *flag_names(unsigned f, char *s, size_t n)
{
    snprintf(s, n, "%s%s%s%s%s", (f & IORING_SETUP_SQPOLL) ? " SQPOLL" : "",
             (f & IORING_SETUP_SQ_AFF) ? " SQ_AFF" : "",
             (f & IORING_SETUP_SINGLE_ISSUER) ? " SINGLE_ISSUER" : "",
             (f & IORING_SETUP_DEFER_TASKRUN) ? " DEFER_TASKRUN" : "",
             (f & ~(unsigned)IORING_SETUP_CQSIZE) ? "" : " (none)");
    return s;
}

/* Set up the ring, trying the wanted flags first and dropping optional ones
 * while the kernel answers EINVAL. Exits 2 if io_uring is not usable. */
static void setup_ring(int sqpoll)
{
    unsigned want[4];
    int nwant = 0, sq_cpu = -1;
    if (sqpoll) {
        cpu_set_t set;
        if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) == 1)
            for (int i = 0; i < CPU_SETSIZE; i++)
                if (CPU_ISSET(i, &set)) {
                    sq_cpu = i;
                    break;
                }
        unsigned aff = sq_cpu >= 0 ? IORING_SETUP_SQ_AFF : 0;
        want[nwant++] = IORING_SETUP_SQPOLL | aff | IORING_SETUP_SINGLE_ISSUER;
        want[nwant++] = IORING_SETUP_SQPOLL | aff;
        want[nwant++] = IORING_SETUP_SQPOLL;
    } else {
        want[nwant++] = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
        want[nwant++] = IORING_SETUP_SINGLE_ISSUER;
        want[nwant++] = 0;
    }
    int r = -EINVAL;
    unsigned got = 0;
    for (int i = 0; i < nwant; i++) {
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        p.flags = want[i] | IORING_SETUP_CQSIZE;
        p.cq_entries = CQ_ENTRIES;
        if (want[i] & IORING_SETUP_SQPOLL)
            p.sq_thread_idle = 1000;
        if (want[i] & IORING_SETUP_SQ_AFF)
            p.sq_thread_cpu = (unsigned)sq_cpu;
        r = io_uring_queue_init_params(SQ_ENTRIES, &ring, &p);
        if (r == 0) {
            got = p.flags;
            if (!(p.features & IORING_FEAT_EXT_ARG))
                fprintf(stderr, "c_uring_echo: note: no IORING_FEAT_EXT_ARG, waits with a "
                                "timeout cost an extra submission\n");
            break;
        }
        if (r != -EINVAL)
            break;
    }
    if (r < 0)
        unavailable("io_uring_queue_init", -r);
    char s[128];
    fprintf(stderr, "c_uring_echo: ring flags:%s", flag_names(got, s, sizeof s));
    if (got & IORING_SETUP_SQ_AFF)
        fprintf(stderr, " (SQ thread on cpu %d)", sq_cpu);
    fprintf(stderr, "\n");

    /* provided buffer ring, group BGID */
    size_t rsz = (size_t)nbufs * sizeof(struct io_uring_buf);
    void *rm = mmap(NULL, rsz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (rm == MAP_FAILED)
        die("mmap buffer ring");
    br = rm;
    io_uring_buf_ring_init(br);
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (uint64_t)(uintptr_t)br;
    reg.ring_entries = nbufs;
    reg.bgid = BGID;
    r = io_uring_register_buf_ring(&ring, &reg, 0);
    if (r < 0)
        unavailable("io_uring_register_buf_ring (provided buffer rings need Linux 5.19+)", -r);
    bufs = mmap(NULL, (size_t)nbufs * buf_size, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (bufs == MAP_FAILED)
        die("mmap buffers");
    for (unsigned i = 0; i < nbufs; i++)
        io_uring_buf_ring_add(br, bufs + (size_t)i * buf_size, buf_size, (unsigned short)i,
                              io_uring_buf_ring_mask(nbufs), (int)i);
    io_uring_buf_ring_advance(br, (int)nbufs);
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *upath = NULL;
    int port = 0, sqpoll = 0;
    double duration = 600;
    static const struct option lo[] = {
        {"host", required_argument, 0, 'h'},     {"port", required_argument, 0, 'p'},
        {"unix", required_argument, 0, 'u'},     {"thrift", no_argument, 0, 't'},
        {"duration", required_argument, 0, 'd'}, {"sqpoll", no_argument, 0, 's'},
        {"bufs", required_argument, 0, 'b'},     {"buf-size", required_argument, 0, 'z'},
        {0, 0, 0, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (o) {
        case 'h': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'u': upath = optarg; break;
        case 't': thrift_mode = 1; break;
        case 'd': duration = atof(optarg); break;
        case 's': sqpoll = 1; break;
        case 'b': nbufs = (unsigned)atoi(optarg); break;
        case 'z': buf_size = (unsigned)atoi(optarg); break;
        default: usage();
        }
    }
    if (optind != argc || (!upath && (port <= 0 || port > 65535)) || duration <= 0 ||
        nbufs < 1 || nbufs > 32768 || (nbufs & (nbufs - 1)) || buf_size < 64 ||
        buf_size > (1u << 30))
        usage();

    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_stop}; /* no SA_RESTART: io_uring_enter returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    alarm((unsigned)(duration + 0.999) + 2); /* backstop */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    setup_ring(sqpoll);

    if (upath) {
        struct sockaddr_un un = {.sun_family = AF_UNIX};
        if (strlen(upath) >= sizeof un.sun_path)
            usage();
        strcpy(un.sun_path, upath);
        unlink(upath);
        lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (lfd < 0 || bind(lfd, (struct sockaddr *)&un, sizeof un) < 0)
            die("bind");
    } else {
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        if (inet_pton(AF_INET, host, &sin.sin_addr) != 1) {
            fprintf(stderr, "c_uring_echo: --host must be an IPv4 address\n");
            return 1;
        }
        lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (lfd < 0 || bind(lfd, (struct sockaddr *)&sin, sizeof sin) < 0)
            die("bind");
    }
    if (listen(lfd, 65535) < 0)
        die("listen");
    arm_accept();
    if (upath)
        fprintf(stderr, "c_uring_echo: listening on %s (%s mode)\n", upath,
                thrift_mode ? "thrift" : "raw");
    else
        fprintf(stderr, "c_uring_echo: listening on %s:%d (%s mode)\n", host, port,
                thrift_mode ? "thrift" : "raw");

    uint64_t end = now_ms() + (uint64_t)(duration * 1000);
    while (!stop_requested) {
        uint64_t t = now_ms();
        if (t >= end)
            break;
        uint64_t left = end - t;
        if (left > 1000)
            left = 1000;
        struct __kernel_timespec ts = {.tv_sec = (long long)(left / 1000),
                                       .tv_nsec = (long long)(left % 1000) * 1000000};
        struct io_uring_cqe *cqe;
        int r = io_uring_submit_and_wait_timeout(&ring, &cqe, 1, &ts, NULL);
        if (r < 0 && r != -ETIME && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
            errno = -r;
            die("io_uring_submit_and_wait_timeout");
        }
        unsigned head, n = 0;
        io_uring_for_each_cqe(&ring, head, cqe)
        {
            uint64_t ud = io_uring_cqe_get_data64(cqe);
            conn_t *c = (conn_t *)(uintptr_t)(ud & ~(uint64_t)TAG_MASK);
            switch (ud & TAG_MASK) {
            case TAG_ACCEPT: on_accept_cqe(cqe); break;
            case TAG_RECV: on_recv_cqe(c, cqe); break;
            case TAG_SEND: on_send_cqe(c, cqe); break;
            }
            n++;
        }
        io_uring_cq_advance(&ring, n);
        n_loops++;
        n_cqes += n;
    }
    fprintf(stderr,
            "c_uring_echo: %s, exiting (%lu connections, %lu loop iterations, %lu CQEs, "
            "%lu recv re-arms on ENOBUFS)\n",
            stop_requested ? "stopped by signal" : "duration limit reached", n_conns, n_loops,
            n_cqes, n_enobufs);
    /* The ring holds references to the listener and the connections until
     * its (asynchronous) teardown: stop listening now (shutdown works on a
     * listening socket whatever holds it) and cancel everything, so that the
     * port is free by the time the process is gone. */
    shutdown(lfd, SHUT_RDWR);
    struct io_uring_sync_cancel_reg cr;
    memset(&cr, 0, sizeof cr);
    cr.flags = IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL;
    cr.timeout.tv_sec = 1;
    cr.timeout.tv_nsec = 0;
    io_uring_register_sync_cancel(&ring, &cr);
    io_uring_get_events(&ring);
    close(lfd);
    io_uring_queue_exit(&ring);
    if (upath)
        unlink(upath);
    return 0;
}
