/*
 * pt_http.c — HTTP/1.1 responses over http_parser (see pt_http.h).
 *
 * The parser's callbacks write into the pt_http_resp that owns it: header
 * bytes into one flat area (names and values may arrive split across
 * feeds; each part is appended, so a name or a value stays contiguous),
 * body bytes into the caller's pt_buf. on_message_complete pauses the
 * parser, which makes http_parser_execute return right after the last
 * byte of the response.
 */
#include "pt_http.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(PT_HAVE_HTTP_PARSER) && PT_HAVE_HTTP_PARSER

#include <http_parser.h>

typedef struct pt_http_hdr {
  uint32_t name_off, name_len, val_off, val_len;
} pt_http_hdr;

struct pt_http_resp {
  http_parser p;
  size_t max_header, max_body;
  pt_buf *body;            /* the caller's, during a feed */
  char *hbuf;              /* header bytes, max_header of them */
  size_t hlen;
  pt_http_hdr hdr[PT_HTTP_MAX_HEADERS];
  size_t nhdr;
  int in_value;            /* the last header callback was a value */
  int started, headers_done, done, failed, keep_alive;
  char err[160];
};

/* Record an error (fmt takes one unsigned long long); -1 for callbacks. */
static int fail(pt_http_resp *r, const char *fmt, unsigned long long v) {
  snprintf(r->err, sizeof r->err, fmt, v);
  r->failed = 1;
  return -1;
}

static int fail0(pt_http_resp *r, const char *msg) {
  snprintf(r->err, sizeof r->err, "%s", msg);
  r->failed = 1;
  return -1;
}

static pt_http_resp *self_of(http_parser *p) { return p->data; }

static int on_message_begin(http_parser *p) {
  self_of(p)->started = 1;
  return 0;
}

static int hdr_append(pt_http_resp *r, const char *at, size_t n) {
  if (n > r->max_header - r->hlen)
    return fail(r, "header section over %llu bytes",
                (unsigned long long)r->max_header);
  memcpy(r->hbuf + r->hlen, at, n);
  r->hlen += n;
  return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n) {
  pt_http_resp *r = self_of(p);
  if (r->nhdr == 0 || r->in_value) {
    if (r->nhdr == PT_HTTP_MAX_HEADERS)
      return fail(r, "more than %llu header fields", PT_HTTP_MAX_HEADERS);
    pt_http_hdr *h = &r->hdr[r->nhdr++];
    h->name_off = (uint32_t)r->hlen;
    h->name_len = 0;
    h->val_off = (uint32_t)r->hlen;
    h->val_len = 0;
    r->in_value = 0;
  }
  if (hdr_append(r, at, n)) return -1;
  r->hdr[r->nhdr - 1].name_len += (uint32_t)n;
  return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n) {
  pt_http_resp *r = self_of(p);
  if (r->nhdr == 0) return fail0(r, "header value without a name");
  pt_http_hdr *h = &r->hdr[r->nhdr - 1];
  if (!r->in_value) {
    h->val_off = (uint32_t)r->hlen;
    h->val_len = 0;
    r->in_value = 1;
  }
  if (hdr_append(r, at, n)) return -1;
  h->val_len += (uint32_t)n;
  return 0;
}

static int on_headers_complete(http_parser *p) {
  pt_http_resp *r = self_of(p);
  /* a declared length is checked before any body byte is stored */
  if (p->content_length != ULLONG_MAX && p->content_length > r->max_body)
    return fail(r, "Content-Length %llu over the body limit",
                (unsigned long long)p->content_length), 3;
  r->headers_done = 1;
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t n) {
  pt_http_resp *r = self_of(p);
  if (n > r->max_body || pt_buf_len(r->body) > r->max_body - n)
    return fail(r, "body over %llu bytes buffered",
                (unsigned long long)r->max_body);
  if (pt_buf_append(r->body, at, n))
    return fail0(r, "out of memory for the body");
  return 0;
}

static int on_message_complete(http_parser *p) {
  pt_http_resp *r = self_of(p);
  r->done = 1;
  r->keep_alive = http_should_keep_alive(p);
  http_parser_pause(p, 1);
  return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

int pt_http_available(void) { return 1; }

pt_http_resp *pt_http_new(size_t max_header, size_t max_body) {
  pt_http_resp *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->max_header = max_header ? max_header : 16384;
  if (r->max_header > UINT32_MAX / 2) r->max_header = UINT32_MAX / 2;
  r->max_body = max_body ? max_body : (size_t)64 << 20;
  r->hbuf = malloc(r->max_header);
  if (!r->hbuf) {
    free(r);
    errno = ENOMEM;
    return NULL;
  }
  pt_http_reset(r);
  return r;
}

void pt_http_free(pt_http_resp *r) {
  if (!r) return;
  free(r->hbuf);
  free(r);
}

void pt_http_reset(pt_http_resp *r) {
  http_parser_init(&r->p, HTTP_RESPONSE);
  r->p.data = r;
  r->body = NULL;
  r->hlen = r->nhdr = 0;
  r->in_value = r->started = r->headers_done = r->done = r->failed = 0;
  r->keep_alive = 0;
  r->err[0] = '\0';
}

/* The parser stopped on its own error (not one of our limits). */
static int parser_error(pt_http_resp *r) {
  enum http_errno e = HTTP_PARSER_ERRNO(&r->p);
  if (!r->failed) {
    snprintf(r->err, sizeof r->err, "malformed response: %s (%s)",
             http_errno_description(e), http_errno_name(e));
    r->failed = 1;
  }
  return PT_HTTP_ERROR;
}

int pt_http_feed(pt_http_resp *r, const char *p, size_t n, pt_buf *body,
                 size_t *used) {
  *used = 0;
  if (r->done || r->failed) {
    if (!r->failed)
      snprintf(r->err, sizeof r->err, "response already complete (reset first)");
    r->failed = 1;
    return PT_HTTP_ERROR;
  }
  if (n == 0) return PT_HTTP_MORE; /* 0 bytes would mean EOF to the parser */
  r->body = body;
  size_t k = http_parser_execute(&r->p, &settings, p, n);
  r->body = NULL;
  *used = k;
  if (r->done) return PT_HTTP_DONE; /* paused at the end of the response */
  if (r->failed || HTTP_PARSER_ERRNO(&r->p) != HPE_OK) return parser_error(r);
  if (r->p.upgrade) {
    snprintf(r->err, sizeof r->err, "protocol upgrade is not supported");
    r->failed = 1;
    return PT_HTTP_ERROR;
  }
  if (k != n) return parser_error(r);
  return PT_HTTP_MORE;
}

int pt_http_eof(pt_http_resp *r, pt_buf *body) {
  if (r->done) return PT_HTTP_DONE;
  if (r->failed) return PT_HTTP_ERROR;
  if (!r->started) {
    snprintf(r->err, sizeof r->err, "connection closed before a response");
    r->failed = 1;
    return PT_HTTP_ERROR;
  }
  r->body = body;
  http_parser_execute(&r->p, &settings, NULL, 0);
  r->body = NULL;
  if (r->done) return PT_HTTP_DONE;
  if (!r->failed)
    snprintf(r->err, sizeof r->err, "connection closed in the middle of a response");
  r->failed = 1;
  return PT_HTTP_ERROR;
}

int pt_http_status(const pt_http_resp *r) {
  return r->headers_done ? (int)r->p.status_code : 0;
}

int pt_http_headers_done(const pt_http_resp *r) { return r->headers_done; }

int pt_http_keep_alive(const pt_http_resp *r) { return r->done && r->keep_alive; }

size_t pt_http_nheaders(const pt_http_resp *r) { return r->nhdr; }

void pt_http_header(const pt_http_resp *r, size_t i, const char **name,
                    size_t *nlen, const char **value, size_t *vlen) {
  const pt_http_hdr *h = &r->hdr[i];
  *name = r->hbuf + h->name_off;
  *nlen = h->name_len;
  *value = r->hbuf + h->val_off;
  *vlen = h->val_len;
}

const char *pt_http_error(const pt_http_resp *r) { return r->err; }

#else /* built without http_parser */

int pt_http_available(void) { return 0; }

pt_http_resp *pt_http_new(size_t max_header, size_t max_body) {
  (void)max_header;
  (void)max_body;
  errno = ENOSYS;
  return NULL;
}

/* Unreachable without a parser object; defined so the binding links. */
void pt_http_free(pt_http_resp *r) { (void)r; }
void pt_http_reset(pt_http_resp *r) { (void)r; }
int pt_http_feed(pt_http_resp *r, const char *p, size_t n, pt_buf *body,
                 size_t *used) {
  (void)r, (void)p, (void)n, (void)body;
  *used = 0;
  return PT_HTTP_ERROR;
}
int pt_http_eof(pt_http_resp *r, pt_buf *body) {
  (void)r, (void)body;
  return PT_HTTP_ERROR;
}
int pt_http_status(const pt_http_resp *r) { return (void)r, 0; }
int pt_http_headers_done(const pt_http_resp *r) { return (void)r, 0; }
int pt_http_keep_alive(const pt_http_resp *r) { return (void)r, 0; }
size_t pt_http_nheaders(const pt_http_resp *r) { return (void)r, 0; }
void pt_http_header(const pt_http_resp *r, size_t i, const char **name,
                    size_t *nlen, const char **value, size_t *vlen) {
  (void)r, (void)i;
  *name = *value = "";
  *nlen = *vlen = 0;
}
const char *pt_http_error(const pt_http_resp *r) {
  (void)r;
  return "HTTP support not compiled in (build with libhttp-parser-dev)";
}

#endif
