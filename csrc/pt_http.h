/*
 * pt_http.h — HTTP/1.1 response parsing for petrel's small HTTP client (the
 * etcd v3 JSON gateway), over Debian's http_parser (nodejs/http-parser
 * 2.9, libhttp-parser-dev). No Lua in here.
 *
 * One pt_http_resp parses the responses of one connection, one after the
 * other. Bytes are fed as they arrive, in pieces of any size; the body is
 * copied, de-chunked, into a pt_buf the caller passes with each feed, and
 * the parser stops at the end of each response, so bytes of a following
 * response stay with the caller (pt_http_reset, then feed them).
 *
 * Limits (hostile peers): the header section is kept up to max_header
 * bytes (names and values, at most PT_HTTP_MAX_HEADERS of them); a declared
 * Content-Length above max_body fails at once, before any body byte is
 * stored, and the body buffer may never hold more than max_body bytes (a
 * streaming caller drains it between feeds). Malformed input fails with a
 * message naming the parser's error.
 *
 * Built without http_parser (PT_HAVE_HTTP_PARSER undefined or 0), every
 * function is present but pt_http_new fails with errno ENOSYS and
 * pt_http_available() is 0.
 */
#ifndef PT_HTTP_H
#define PT_HTTP_H

#include <stddef.h>

#include "pt_buf.h"

typedef struct pt_http_resp pt_http_resp;

#define PT_HTTP_MORE 0   /* the response goes on: feed more bytes */
#define PT_HTTP_DONE 1   /* one response is complete */
#define PT_HTTP_ERROR -1 /* malformed or over a limit: pt_http_error */

#define PT_HTTP_MAX_HEADERS 64

/* 1 when built with http_parser. */
int pt_http_available(void);

/* A parser for responses (max_header 0: 16 KiB; max_body 0: 64 MiB).
 * NULL with errno ENOMEM, or ENOSYS when built without http_parser. */
pt_http_resp *pt_http_new(size_t max_header, size_t max_body);
void pt_http_free(pt_http_resp *r);

/* Forget the last response (status, headers, error): ready for the next
 * one on the same connection. */
void pt_http_reset(pt_http_resp *r);

/* Parse n bytes at p, appending body bytes to body. *used: bytes of p
 * that belong to this response (all of them unless DONE). Returns
 * PT_HTTP_MORE, PT_HTTP_DONE or PT_HTTP_ERROR. After DONE or ERROR, feed
 * fails until pt_http_reset. */
int pt_http_feed(pt_http_resp *r, const char *p, size_t n, pt_buf *body,
                 size_t *used);

/* The peer closed the connection: DONE when that ends the response (one
 * delimited by the close), else ERROR (cut short, or nothing received). */
int pt_http_eof(pt_http_resp *r, pt_buf *body);

/* Status code once the header section is complete, else 0. */
int pt_http_status(const pt_http_resp *r);
/* 1 once the header section is complete. */
int pt_http_headers_done(const pt_http_resp *r);
/* After DONE: may the connection carry another request? */
int pt_http_keep_alive(const pt_http_resp *r);
/* Headers of the current response, in arrival order. */
size_t pt_http_nheaders(const pt_http_resp *r);
void pt_http_header(const pt_http_resp *r, size_t i, const char **name,
                    size_t *nlen, const char **value, size_t *vlen);
/* Text of the last ERROR ("" if none). */
const char *pt_http_error(const pt_http_resp *r);

#endif
