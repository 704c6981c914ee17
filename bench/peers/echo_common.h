/* echo_common.h — pieces shared by the C echo servers of the RPC bench
 * (c_epoll_echo.c, c_uring_echo.c): a growable byte buffer and the Thrift
 * reply built by copying a call (no decode). Header-only, static. */
#ifndef ECHO_COMMON_H
#define ECHO_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint8_t *p;
    size_t off, len, cap;
} buf_t;

static uint32_t rd_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

/* Room for extra more bytes at b->p + b->len (consumed bytes reclaimed). */
static void buf_reserve(buf_t *b, size_t extra)
{
    if (b->off && b->off == b->len)
        b->off = b->len = 0;
    if (b->len + extra <= b->cap)
        return;
    if (b->off) {
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->len + extra <= b->cap)
            return;
    }
    size_t nc = b->cap ? b->cap : 4096;
    while (nc < b->len + extra)
        nc *= 2;
    uint8_t *np = realloc(b->p, nc);
    if (!np) {
        fprintf(stderr, "echo server: out of memory\n");
        exit(1);
    }
    b->p = np;
    b->cap = nc;
}

/* Append the reply to the framed strict CALL f[0..n) to out: the reply has
 * exactly the request's shape and size (same header fields except the
 * type, and argument field 1 becomes result field 0). ONEWAY calls get
 * none. Returns 0, or -1 for a frame that is not such a call. */
static int thrift_reply(buf_t *out, const uint8_t *f, size_t n)
{
    const uint8_t *b = f + 4, *e = f + n;
    if (e - b < 12)
        return -1;
    uint32_t v = rd_be32(b);
    if ((v & 0xffff0000u) != 0x80010000u)
        return -1;
    int type = (int)(v & 0xff);
    uint32_t nlen = rd_be32(b + 4);
    if ((uint64_t)(e - b) < 12ull + nlen + 1)
        return -1;
    const uint8_t *args = b + 12 + nlen; /* args struct starts here */
    if (e[-1] != 0x00)                   /* args STOP */
        return -1;
    if (type == 4) /* ONEWAY: no reply */
        return 0;
    if (type != 1)
        return -1;
    buf_reserve(out, n);
    uint8_t *o = out->p + out->len;
    memcpy(o, f, n);
    o[4 + 3] = 2; /* REPLY */
    if (*args == 0x0C) {
        if (e - args < 4 || args[1] != 0x00 || args[2] != 0x01)
            return -1;
        o[(args - f) + 2] = 0x00; /* field id 1 -> 0 (success) */
    } else if (*args != 0x00) { /* not "no args" either */
        return -1;
    }
    out->len += n;
    return 0;
}

#endif
