/*
 * loadgen: a small, single-threaded epoll load generator for framed RPC
 * servers (Thrift TFramedTransport: 4-byte big-endian length + body).
 *
 *   loadgen [--host 127.0.0.1] --port P | --unix PATH
 *           [--conns N] [--duration S] [--warmup S]
 *           [--mode pingpong|pipeline] [--depth D]
 *           ( --payload FILE | --echo-frame FILE [--wrap]
 *           | --thrift-call METHOD --args-struct FILE )
 *           [--json]
 *
 * Request sources (exactly one):
 *   --payload FILE      FILE is a complete framed request; each reply must be
 *                       one complete frame (4-byte BE length, then the body).
 *   --echo-frame FILE   FILE is a complete frame; each reply must be the very
 *                       same bytes.
 *   --wrap              with --payload/--echo-frame: FILE is only the body,
 *                       the 4-byte frame header is prepended.
 *   --thrift-call M --args-struct FILE
 *                       build a framed strict-binary CALL:
 *                         len | 0x80010001 | i32 len "M" | i32 seqid |
 *                         0x0C 0x0001 <FILE bytes> 0x00
 *                       (FILE is a full struct with its own STOP byte).
 *                       seqid increments per request per connection; each
 *                       reply must carry the oldest outstanding seqid of
 *                       that connection, the same method name and type
 *                       REPLY (2). EXCEPTION (3) counts as an error.
 *
 * All connections are established before the clock starts (failed connects
 * count as errors). Then --warmup seconds unmeasured, then --duration
 * seconds measured. pingpong keeps 1 request in flight per connection,
 * pipeline keeps --depth. Latency = reply complete - request queued, per
 * request, in a log-linear histogram (1 us resolution below 128 us, then
 * 64 sub-buckets per power of two, i.e. < 1.6 % relative error, to 10 s).
 *
 * Output: one line on stdout,
 *   conns=.. mode=.. depth=.. calls=.. secs=.. calls_per_s=.. p50_us=..
 *   p99_us=.. p999_us=.. max_us=.. mean_us=.. errors=.. connect_errors=..
 *   request_bytes=.. loadgen_cpu_pct=..
 * or one JSON object with --json (same keys). loadgen_cpu_pct is the
 * generator's own CPU use (user+sys) over the measured window: near 100
 * means the generator, not the server, may be the limit.
 * Diagnostics go to stderr.
 *
 * Exit status: 0 ok (even with errors counted), 1 usage / setup failure,
 * 2 no connection could be made (the summary line is still printed),
 * 3 hard time limit (duration + warmup + 5 s) hit.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
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
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_FRAME (512u * 1024u * 1024u)
#define CONNECT_TIMEOUT_NS (3ull * 1000000000ull)
#define HARD_SLACK_S 5

/* ---------------------------------------------------------------- utils */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint32_t rd_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static void wr_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void die(const char *msg)
{
    fprintf(stderr, "loadgen: %s\n", msg);
    exit(1);
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        die("out of memory");
    return q;
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "loadgen: cannot open %s: %s\n", path, strerror(errno));
        exit(1);
    }
    size_t cap = 65536, n = 0;
    uint8_t *b = xrealloc(NULL, cap);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            b = xrealloc(b, cap);
        }
        size_t r = fread(b + n, 1, cap - n, f);
        if (r == 0)
            break;
        n += r;
    }
    if (ferror(f)) {
        fprintf(stderr, "loadgen: read error on %s\n", path);
        exit(1);
    }
    fclose(f);
    *len = n;
    return b;
}

static void hard_limit(int sig)
{
    (void)sig;
    static const char m[] = "loadgen: hard time limit hit, exiting\n";
    ssize_t r = write(2, m, sizeof m - 1);
    (void)r;
    _exit(3);
}

/* ------------------------------------------------------------ histogram */

/* v < 128: bucket v. Otherwise with msb = floor(log2 v) >= 7 and
 * shift = msb - 6, (v >> shift) is in [64, 127]:
 * bucket 128 + (shift - 1) * 64 + ((v >> shift) - 64). */
#define HIST_MAX_US 10000000ull /* 10 s */
#define HIST_BUCKETS (128 + 64 * 20)

static uint64_t hist[HIST_BUCKETS];
static uint64_t hist_n, hist_max_us, hist_sum_us;

static int hist_index(uint64_t v)
{
    if (v < 128)
        return (int)v;
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - 6;
    return 128 + (shift - 1) * 64 + (int)((v >> shift) - 64);
}

static uint64_t hist_bucket_high(int i)
{
    if (i < 128)
        return (uint64_t)i;
    int shift = (i - 128) / 64 + 1;
    uint64_t sub = (uint64_t)((i - 128) % 64 + 64);
    return ((sub + 1) << shift) - 1;
}

static void hist_add(uint64_t us)
{
    if (us > hist_max_us)
        hist_max_us = us;
    hist_sum_us += us;
    hist_n++;
    hist[hist_index(us > HIST_MAX_US ? HIST_MAX_US : us)]++;
}

static uint64_t hist_pct(double q)
{
    if (!hist_n)
        return 0;
    uint64_t want = (uint64_t)(q * (double)hist_n + 0.999999);
    if (want < 1)
        want = 1;
    uint64_t acc = 0;
    for (int i = 0; i < HIST_BUCKETS; i++) {
        acc += hist[i];
        if (acc >= want) {
            uint64_t v = hist_bucket_high(i);
            return v > hist_max_us ? hist_max_us : v;
        }
    }
    return hist_max_us;
}

/* ------------------------------------------------------------ config */

enum { CHECK_FRAME, CHECK_ECHO, CHECK_THRIFT };

static const char *opt_host = "127.0.0.1";
static int opt_port = 0;
static const char *opt_unix = NULL;
static int opt_conns = 1;
static double opt_duration = 5, opt_warmup = 0;
static int opt_pipeline = 0, opt_depth = 1;
static int opt_json = 0, opt_wrap = 0;
static int check_mode = -1;

static uint8_t *req;       /* request template (complete frame) */
static size_t req_len;
static long seq_off = -1;  /* offset of seqid within req, thrift only */
static const char *method; /* thrift only */
static size_t method_len;

/* ------------------------------------------------------------ stats */

static uint64_t calls, errors, connect_errors;

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}
static int err_msgs;

static void note_error(int fd, const char *what)
{
    errors++;
    if (err_msgs < 5)
        fprintf(stderr, "loadgen: fd %d: %s\n", fd, what);
    else if (err_msgs == 5)
        fprintf(stderr, "loadgen: (further error messages suppressed)\n");
    err_msgs++;
}

/* ------------------------------------------------------------ conns */

typedef struct {
    uint8_t *p;
    size_t off, len, cap; /* valid bytes are p[off..len) */
} buf_t;

typedef struct {
    int fd;
    int alive;
    int want_out;
    buf_t in, out;
    uint64_t *sent; /* ring of send timestamps, size depth */
    int32_t *seqs;  /* ring of seqids, size depth */
    int head, count;
    int32_t next_seq;
} conn_t;

static int epfd;
static conn_t *conns;
static int live;
static uint64_t t_meas_start, t_end;

static void buf_reserve(buf_t *b, size_t extra)
{
    if (b->off && b->off == b->len)
        b->off = b->len = 0;
    if (b->len + extra <= b->cap)
        return;
    if (b->off) { /* compact first */
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->len + extra <= b->cap)
            return;
    }
    size_t nc = b->cap ? b->cap : 4096;
    while (nc < b->len + extra)
        nc *= 2;
    b->p = xrealloc(b->p, nc);
    b->cap = nc;
}

static void conn_close(conn_t *c)
{
    if (!c->alive)
        return;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->alive = 0;
    live--;
}

static void set_events(conn_t *c, int want_out)
{
    if (c->want_out == want_out)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = want_out;
}

static void queue_request(conn_t *c, uint64_t t)
{
    buf_reserve(&c->out, req_len);
    uint8_t *dst = c->out.p + c->out.len;
    memcpy(dst, req, req_len);
    int32_t seq = c->next_seq++;
    if (c->next_seq < 0) /* keep seqids positive */
        c->next_seq = 1;
    if (seq_off >= 0)
        wr_be32(dst + seq_off, (uint32_t)seq);
    c->out.len += req_len;
    int slot = (c->head + c->count) % opt_depth;
    c->sent[slot] = t;
    c->seqs[slot] = seq;
    c->count++;
}

static void flush(conn_t *c)
{
    while (c->out.len > c->out.off) {
        ssize_t w = write(c->fd, c->out.p + c->out.off, c->out.len - c->out.off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                set_events(c, 1);
                return;
            }
            note_error(c->fd, strerror(errno));
            conn_close(c);
            return;
        }
        c->out.off += (size_t)w;
    }
    c->out.off = c->out.len = 0;
    set_events(c, 0);
}

/* Validate one reply frame (p points at the 4-byte header, n = 4 + body).
 * Returns NULL if fine, else an error description (the frame boundary is
 * still known, so the connection goes on). */
static const char *check_reply(const uint8_t *p, size_t n, int32_t want_seq)
{
    if (check_mode == CHECK_FRAME)
        return NULL;
    if (check_mode == CHECK_ECHO) {
        if (n != req_len || memcmp(p, req, n) != 0)
            return "echo reply differs from the request";
        return NULL;
    }
    /* thrift */
    const uint8_t *b = p + 4, *e = p + n;
    if (e - b < 4)
        return "reply too short";
    uint32_t v = rd_be32(b);
    int type;
    uint32_t nlen;
    b += 4;
    if (v & 0x80000000u) {
        if ((v & 0xffff0000u) != 0x80010000u)
            return "bad protocol version in reply";
        type = (int)(v & 0xff);
        if (e - b < 4)
            return "reply too short";
        nlen = rd_be32(b);
        b += 4;
        if ((uint64_t)(e - b) < (uint64_t)nlen + 4)
            return "reply too short";
        if (nlen != method_len || memcmp(b, method, nlen) != 0)
            return "reply method name differs";
        b += nlen;
    } else { /* old non-strict: name, type byte, seqid */
        nlen = v;
        if ((uint64_t)(e - b) < (uint64_t)nlen + 5)
            return "reply too short";
        if (nlen != method_len || memcmp(b, method, nlen) != 0)
            return "reply method name differs";
        b += nlen;
        type = *b++;
    }
    int32_t seq = (int32_t)rd_be32(b);
    if (type == 3)
        return "EXCEPTION reply";
    if (type != 2)
        return "reply message type is not REPLY";
    if (seq != want_seq)
        return "reply seqid mismatch";
    return NULL;
}

static void on_readable(conn_t *c)
{
    buf_t *in = &c->in;
    buf_reserve(in, 65536);
    ssize_t r = read(c->fd, in->p + in->len, in->cap - in->len);
    if (r < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        note_error(c->fd, strerror(errno));
        conn_close(c);
        return;
    }
    if (r == 0) {
        note_error(c->fd, "connection closed by server");
        conn_close(c);
        return;
    }
    in->len += (size_t)r;
    uint64_t t = now_ns();
    int measuring = t >= t_meas_start && t < t_end;
    while (in->len - in->off >= 4) {
        const uint8_t *p = in->p + in->off;
        uint32_t flen = rd_be32(p);
        if (flen > MAX_FRAME) {
            note_error(c->fd, "reply frame length too large");
            conn_close(c);
            return;
        }
        size_t need = 4 + (size_t)flen;
        if (in->len - in->off < need) {
            buf_reserve(in, need - (in->len - in->off));
            break;
        }
        if (c->count == 0) {
            note_error(c->fd, "unsolicited reply");
            conn_close(c);
            return;
        }
        const char *err = check_reply(p, need, c->seqs[c->head]);
        uint64_t sent = c->sent[c->head];
        c->head = (c->head + 1) % opt_depth;
        c->count--;
        in->off += need;
        if (err) {
            note_error(c->fd, err);
        } else if (measuring) {
            calls++;
            hist_add((t - sent + 500) / 1000);
        }
        if (t < t_end)
            queue_request(c, t);
    }
    if (in->off == in->len)
        in->off = in->len = 0;
    flush(c);
}

/* ------------------------------------------------------------ connect */

static int make_socket(struct sockaddr_storage *sa, socklen_t *salen)
{
    int fd;
    if (opt_unix) {
        struct sockaddr_un *un = (struct sockaddr_un *)sa;
        memset(un, 0, sizeof *un);
        un->sun_family = AF_UNIX;
        if (strlen(opt_unix) >= sizeof un->sun_path)
            die("unix socket path too long");
        strcpy(un->sun_path, opt_unix);
        *salen = sizeof *un;
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    } else {
        fd = socket(sa->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    }
    return fd;
}

static void connect_all(struct sockaddr_storage *sa, socklen_t salen)
{
    uint64_t deadline = now_ns() + CONNECT_TIMEOUT_NS;
    int pending = 0;
    for (int i = 0; i < opt_conns; i++) {
        conn_t *c = &conns[i];
        c->fd = -1;
        c->next_seq = 1;
        c->sent = xrealloc(NULL, sizeof(uint64_t) * (size_t)opt_depth);
        c->seqs = xrealloc(NULL, sizeof(int32_t) * (size_t)opt_depth);
        socklen_t l = salen;
        int fd = make_socket(sa, &l);
        if (fd < 0) {
            connect_errors++;
            if (connect_errors <= 3)
                fprintf(stderr, "loadgen: socket: %s\n", strerror(errno));
            continue;
        }
        int rc;
        if (opt_unix) {
            /* unix-domain nonblocking connect fails with EAGAIN when the
             * backlog is full; connect blocking (bounded by the alarm). */
            rc = connect(fd, (struct sockaddr *)sa, l);
            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        } else {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
            rc = connect(fd, (struct sockaddr *)sa, l);
        }
        if (rc < 0 && errno != EINPROGRESS) {
            connect_errors++;
            if (connect_errors <= 3)
                fprintf(stderr, "loadgen: connect: %s\n", strerror(errno));
            close(fd);
            continue;
        }
        c->fd = fd;
        c->alive = 1;
        live++;
        struct epoll_event ev = {.events = rc < 0 ? EPOLLOUT : EPOLLIN, .data.ptr = c};
        if (rc < 0) {
            c->want_out = 2; /* connecting */
            pending++;
        }
        epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
    }
    struct epoll_event evs[256];
    while (pending > 0) {
        uint64_t t = now_ns();
        if (t >= deadline)
            break;
        int n = epoll_wait(epfd, evs, 256, (int)((deadline - t) / 1000000 + 1));
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (c->want_out != 2)
                continue;
            int err = 0;
            socklen_t el = sizeof err;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
            pending--;
            if (err) {
                connect_errors++;
                if (connect_errors <= 3)
                    fprintf(stderr, "loadgen: connect: %s\n", strerror(err));
                conn_close(c);
                continue;
            }
            c->want_out = 1; /* so set_events below really modifies */
            set_events(c, 0);
        }
    }
    for (int i = 0; i < opt_conns; i++) {
        if (conns[i].alive && conns[i].want_out == 2) {
            connect_errors++;
            conn_close(&conns[i]);
        }
    }
    if (connect_errors > 3)
        fprintf(stderr, "loadgen: %llu connects failed\n", (unsigned long long)connect_errors);
}

/* ------------------------------------------------------------ main */

static void usage(void)
{
    fprintf(stderr,
            "usage: loadgen [--host H] --port P | --unix PATH\n"
            "               [--conns N] [--duration S] [--warmup S]\n"
            "               [--mode pingpong|pipeline] [--depth D] [--json]\n"
            "               ( --payload FILE | --echo-frame FILE [--wrap]\n"
            "               | --thrift-call METHOD --args-struct FILE )\n");
    exit(1);
}

static void build_request(const char *payload, const char *echo, const char *args)
{
    if (method) {
        if (!args || payload || echo || opt_wrap)
            usage();
        size_t alen;
        uint8_t *a = read_file(args, &alen);
        method_len = strlen(method);
        size_t body = 4 + 4 + method_len + 4 + 3 + alen + 1;
        if (body > MAX_FRAME)
            die("request too large");
        req_len = 4 + body;
        req = xrealloc(NULL, req_len);
        uint8_t *p = req;
        wr_be32(p, (uint32_t)body);
        p += 4;
        wr_be32(p, 0x80010001u);
        p += 4;
        wr_be32(p, (uint32_t)method_len);
        p += 4;
        memcpy(p, method, method_len);
        p += method_len;
        seq_off = p - req;
        wr_be32(p, 0);
        p += 4;
        *p++ = 0x0C; /* T_STRUCT */
        *p++ = 0x00; /* field id 1 */
        *p++ = 0x01;
        memcpy(p, a, alen);
        p += alen;
        *p++ = 0x00; /* STOP of the args struct */
        free(a);
        check_mode = CHECK_THRIFT;
        return;
    }
    if (args || (!!payload + !!echo) != 1)
        usage();
    size_t n;
    uint8_t *f = read_file(payload ? payload : echo, &n);
    if (opt_wrap) {
        if (n > MAX_FRAME)
            die("payload too large");
        req_len = n + 4;
        req = xrealloc(NULL, req_len);
        wr_be32(req, (uint32_t)n);
        memcpy(req + 4, f, n);
        free(f);
    } else {
        if (n < 4 || rd_be32(f) != n - 4)
            die("payload file is not one complete frame (4-byte BE length + body); "
                "use --wrap to add the header");
        req = f;
        req_len = n;
    }
    check_mode = payload ? CHECK_FRAME : CHECK_ECHO;
}

int main(int argc, char **argv)
{
    const char *payload = NULL, *echo = NULL, *args = NULL;
    static const struct option lo[] = {
        {"host", required_argument, 0, 'h'},
        {"port", required_argument, 0, 'p'},
        {"unix", required_argument, 0, 'u'},
        {"conns", required_argument, 0, 'c'},
        {"duration", required_argument, 0, 'd'},
        {"warmup", required_argument, 0, 'w'},
        {"mode", required_argument, 0, 'm'},
        {"depth", required_argument, 0, 'D'},
        {"payload", required_argument, 0, 'P'},
        {"echo-frame", required_argument, 0, 'E'},
        {"wrap", no_argument, 0, 'W'},
        {"thrift-call", required_argument, 0, 'T'},
        {"args-struct", required_argument, 0, 'A'},
        {"json", no_argument, 0, 'j'},
        {"help", no_argument, 0, '?'},
        {0, 0, 0, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (o) {
        case 'h': opt_host = optarg; break;
        case 'p': opt_port = atoi(optarg); break;
        case 'u': opt_unix = optarg; break;
        case 'c': opt_conns = atoi(optarg); break;
        case 'd': opt_duration = atof(optarg); break;
        case 'w': opt_warmup = atof(optarg); break;
        case 'm':
            if (!strcmp(optarg, "pingpong"))
                opt_pipeline = 0;
            else if (!strcmp(optarg, "pipeline"))
                opt_pipeline = 1;
            else
                usage();
            break;
        case 'D': opt_depth = atoi(optarg); break;
        case 'P': payload = optarg; break;
        case 'E': echo = optarg; break;
        case 'W': opt_wrap = 1; break;
        case 'T': method = optarg; break;
        case 'A': args = optarg; break;
        case 'j': opt_json = 1; break;
        default: usage();
        }
    }
    if (optind != argc || (!opt_unix && (opt_port <= 0 || opt_port > 65535)))
        usage();
    if (opt_conns < 1 || opt_conns > 100000)
        die("--conns must be in 1..100000");
    if (opt_duration <= 0 || opt_duration > 3600 || opt_warmup < 0 || opt_warmup > 3600)
        die("--duration must be in (0, 3600], --warmup in [0, 3600]");
    if (!opt_pipeline)
        opt_depth = 1;
    if (opt_depth < 1 || opt_depth > 65536)
        die("--depth must be in 1..65536");
    build_request(payload, echo, args);

    /* hard bound, whatever happens */
    signal(SIGALRM, hard_limit);
    alarm((unsigned)(opt_duration + opt_warmup + 0.999) + HARD_SLACK_S);
    signal(SIGPIPE, SIG_IGN);

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    struct sockaddr_storage sa;
    socklen_t salen = 0;
    memset(&sa, 0, sizeof sa);
    if (!opt_unix) {
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
        char port[16];
        snprintf(port, sizeof port, "%d", opt_port);
        int rc = getaddrinfo(opt_host, port, &hints, &ai);
        if (rc)
            die(gai_strerror(rc));
        memcpy(&sa, ai->ai_addr, ai->ai_addrlen);
        salen = ai->ai_addrlen;
        freeaddrinfo(ai);
    }

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("epoll_create1 failed");
    conns = calloc((size_t)opt_conns, sizeof *conns);
    if (!conns)
        die("out of memory");
    connect_all(&sa, salen);
    errors += connect_errors;

    uint64_t t0 = now_ns();
    t_meas_start = t0 + (uint64_t)(opt_warmup * 1e9);
    t_end = t_meas_start + (uint64_t)(opt_duration * 1e9);
    for (int i = 0; i < opt_conns; i++) {
        conn_t *c = &conns[i];
        if (!c->alive)
            continue;
        for (int k = 0; k < opt_depth; k++)
            queue_request(c, t0);
        flush(c);
    }

    int maxev = opt_conns < 1024 ? opt_conns : 1024;
    struct epoll_event *evs = xrealloc(NULL, sizeof *evs * (size_t)maxev);
    uint64_t t;
    double cpu0 = opt_warmup > 0 ? -1 : cpu_seconds();
    while (live > 0 && (t = now_ns()) < t_end) {
        if (cpu0 < 0 && t >= t_meas_start)
            cpu0 = cpu_seconds();
        uint64_t next = t < t_meas_start ? t_meas_start : t_end;
        uint64_t ms = (next - t + 999999) / 1000000;
        if (ms > 100)
            ms = 100;
        int n = epoll_wait(epfd, evs, maxev, (int)ms);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait failed");
        }
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (c->alive && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                on_readable(c);
            if (c->alive && (evs[i].events & EPOLLOUT))
                flush(c);
        }
    }
    uint64_t t_stop = now_ns();
    if (t_stop > t_end)
        t_stop = t_end;
    double secs = t_stop > t_meas_start ? (double)(t_stop - t_meas_start) / 1e9 : 0;
    if (live == 0 && t_stop < t_end)
        fprintf(stderr, "loadgen: all connections gone, stopped early\n");

    double cpu_pct = cpu0 >= 0 && secs > 0 ? 100 * (cpu_seconds() - cpu0) / secs : 0;
    double cps = secs > 0 ? (double)calls / secs : 0;
    double mean = hist_n ? (double)hist_sum_us / (double)hist_n : 0;
    const char *mode = opt_pipeline ? "pipeline" : "pingpong";
    if (opt_json)
        printf("{\"conns\":%d,\"mode\":\"%s\",\"depth\":%d,\"calls\":%llu,\"secs\":%.3f,"
               "\"calls_per_s\":%.0f,\"p50_us\":%llu,\"p99_us\":%llu,\"p999_us\":%llu,"
               "\"max_us\":%llu,\"mean_us\":%.1f,\"errors\":%llu,\"connect_errors\":%llu,"
               "\"request_bytes\":%zu,\"loadgen_cpu_pct\":%.0f}\n",
               opt_conns, mode, opt_depth, (unsigned long long)calls, secs, cps,
               (unsigned long long)hist_pct(0.50), (unsigned long long)hist_pct(0.99),
               (unsigned long long)hist_pct(0.999), (unsigned long long)hist_max_us, mean,
               (unsigned long long)errors, (unsigned long long)connect_errors, req_len, cpu_pct);
    else
        printf("conns=%d mode=%s depth=%d calls=%llu secs=%.2f calls_per_s=%.0f p50_us=%llu "
               "p99_us=%llu p999_us=%llu max_us=%llu mean_us=%.1f errors=%llu "
               "connect_errors=%llu request_bytes=%zu loadgen_cpu_pct=%.0f\n",
               opt_conns, mode, opt_depth, (unsigned long long)calls, secs, cps,
               (unsigned long long)hist_pct(0.50), (unsigned long long)hist_pct(0.99),
               (unsigned long long)hist_pct(0.999), (unsigned long long)hist_max_us, mean,
               (unsigned long long)errors, (unsigned long long)connect_errors, req_len, cpu_pct);
    fflush(stdout);
    return connect_errors == (uint64_t)opt_conns ? 2 : 0;
}
