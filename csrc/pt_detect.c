/*
 * pt_detect.c — what a peer speaks, from a connection's first bytes.
 *
 * Each candidate is a probe over the bytes seen so far that answers OUT
 * (cannot be this), NEED (could be, more bytes will tell) or MATCH (is
 * this, and says what). The answer is decided only when no probe still
 * needs bytes: a guess is never made on a prefix that a longer input
 * could turn into something else. Thrift probes read the envelope with
 * the one envelope reader (pt_msg_head / pt_msg_tail). A transport or
 * protocol to come (THeader 0x0FFF, Kitex TTHeader 0x1000, JSON) is one
 * more probe in the table at the end.
 */
#include <string.h>

#include "pt_thrift.h"

enum { P_OUT, P_NEED, P_MATCH };

typedef struct probe_ctx {
  uint64_t max_frame;
  size_t max_name;
} probe_ctx;

typedef int (*probe_fn)(const unsigned char *p, size_t n,
                        const probe_ctx *cx, pt_detect *d);

/* A byte a method name may hold: no control characters; UTF-8
 * continuation bytes only after another non-ASCII byte. */
static int name_byte_ok(const unsigned char *name, size_t i) {
  unsigned c = name[i];
  if (c < 0x20 || c == 0x7f) return 0;
  if (c >= 0x80 && c < 0xc0) return i > 0 && name[i - 1] >= 0x80;
  return 1;
}

/* An envelope (any protocol) at p, within limit bytes (the frame, or no
 * limit). Strict envelopes (Binary with a version word, Compact) are
 * known by their head; a non-strict one needs its name (plausible
 * characters) and its type byte (1..4). */
static int envelope_probe(const unsigned char *p, size_t n, size_t limit,
                          const probe_ctx *cx, pt_detect *d) {
  pt_msg m;
  size_t seen = n < limit ? n : limit;
  int h = pt_msg_head(p, seen, cx->max_name, &m);
  if (h == PT_BAD) return P_OUT;
  if (h == PT_NEED) return seen < limit ? P_NEED : P_OUT;
  d->proto = m.proto;
  d->strict = m.strict;
  if (m.strict) return m.mtype >= 1 && m.mtype <= 4 ? P_MATCH : P_OUT;
  size_t end = (size_t)h + m.name_len; /* where the type byte is */
  if (end >= limit) return P_OUT;
  for (size_t i = (size_t)h; i < end && i < seen; i++)
    if (!name_byte_ok(p + h, i - (size_t)h)) return P_OUT;
  if (seen <= end) return P_NEED;
  return p[end] >= 1 && p[end] <= 4 ? P_MATCH : P_OUT;
}

static int probe_unframed(const unsigned char *p, size_t n,
                          const probe_ctx *cx, pt_detect *d) {
  d->wire = PT_WIRE_THRIFT;
  d->transport = PT_TR_UNFRAMED;
  return envelope_probe(p, n, SIZE_MAX, cx, d);
}

/* A 4-byte big-endian frame length (at least the smallest message, at
 * most max_frame), then an envelope inside it. */
static int probe_framed(const unsigned char *p, size_t n,
                        const probe_ctx *cx, pt_detect *d) {
  d->wire = PT_WIRE_THRIFT;
  d->transport = PT_TR_FRAMED;
  if (n < 4) return P_NEED;
  uint32_t len = pt_ld32(p);
  if (len < 5 || len > cx->max_frame || len > INT32_MAX) return P_OUT;
  return envelope_probe(p + 4, n - 4, len, cx, d);
}

/* An HTTP/1 request line or the HTTP/2 preface. */
static int probe_http(const unsigned char *p, size_t n,
                      const probe_ctx *cx, pt_detect *d) {
  static const char *const methods[] = {
      "GET ", "POST ", "PUT ", "HEAD ", "DELETE ", "OPTIONS ", "PATCH ",
      "CONNECT ", "TRACE ", "PRI * HTTP/2"};
  (void)cx;
  int need = 0;
  for (size_t i = 0; i < sizeof methods / sizeof *methods; i++) {
    size_t k = strlen(methods[i]);
    size_t c = n < k ? n : k;
    if (memcmp(p, methods[i], c) != 0) continue;
    if (c == k) {
      d->wire = PT_WIRE_HTTP;
      d->what = "an HTTP request";
      return P_MATCH;
    }
    need = 1;
  }
  return need ? P_NEED : P_OUT;
}

/* A TLS record carrying a handshake (ClientHello): 0x16 0x03 0x00..04. */
static int probe_tls(const unsigned char *p, size_t n,
                     const probe_ctx *cx, pt_detect *d) {
  (void)cx;
  if (p[0] != 0x16) return P_OUT;
  if (n < 3) return P_NEED;
  if (p[1] != 0x03 || p[2] > 0x04) return P_OUT;
  d->wire = PT_WIRE_TLS;
  d->what = "a TLS handshake";
  return P_MATCH;
}

/* In order of preference when several match. */
static const struct {
  probe_fn fn;
} probes[] = {{probe_framed}, {probe_unframed}, {probe_http}, {probe_tls}};
#define NPROBES (sizeof probes / sizeof *probes)

static const char *thrift_what(const pt_detect *d) {
  static const char *const w[2][2] = {
      {"unframed binary", "unframed compact"},
      {"framed binary", "framed compact"}};
  return w[d->transport == PT_TR_FRAMED][d->proto == PT_PROTO_COMPACT];
}

int pt_detect_wire(const unsigned char *p, size_t n, uint64_t max_frame,
                   size_t max_name, pt_detect *d) {
  if (!n) return PT_NEED;
  probe_ctx cx = {max_frame, max_name};
  pt_detect found[NPROBES];
  int pick = -1, waiting = 0;
  for (size_t i = 0; i < NPROBES; i++) {
    memset(&found[i], 0, sizeof found[i]);
    int r = probes[i].fn(p, n, &cx, &found[i]);
    if (r == P_NEED) waiting = 1;
    if (r == P_MATCH && pick < 0) pick = (int)i;
  }
  if (waiting) return PT_NEED;
  if (pick < 0) {
    memset(d, 0, sizeof *d);
    d->wire = PT_WIRE_UNKNOWN;
    d->what = "not a Thrift message";
    return 1;
  }
  *d = found[pick];
  if (d->wire == PT_WIRE_THRIFT) d->what = thrift_what(d);
  return 1;
}
