/* test_thrift.c — the core's protocol layer without Lua: the TType
 * table, Binary and Compact readers and writers, envelopes, transport
 * detection, skipping, transcoding, the scanner on both protocols, the
 * Compact numeric kernels (SIMD against scalar), writers over buffers;
 * and guard-page runs: every input placed so it ends just before a
 * PROT_NONE page, so any read past it faults. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ctest.h"
#include "pt_plan.h"
#include "pt_scan.h"
#include "pt_thrift.h"

/* ---- helpers ------------------------------------------------------------ */

static size_t unhex(const char *h, unsigned char *out) {
  size_t n = 0;
  while (h[0] && h[1]) {
    if (h[0] == ' ') {
      h++;
      continue;
    }
    unsigned v;
    sscanf(h, "%2x", &v);
    out[n++] = (unsigned char)v;
    h += 2;
  }
  return n;
}

/* A region whose end is the start of an unreadable page. */
typedef struct guard {
  unsigned char *map;
  size_t maplen;
  unsigned char *end; /* first byte of the PROT_NONE page */
} guard;

static guard guard_new(size_t n) {
  size_t ps = (size_t)sysconf(_SC_PAGESIZE);
  size_t pages = (n + ps - 1) / ps + 1;
  guard g;
  g.maplen = (pages + 1) * ps;
  g.map = mmap(NULL, g.maplen, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(g.map != MAP_FAILED);
  g.end = g.map + pages * ps;
  CHECK(mprotect(g.end, ps, PROT_NONE) == 0);
  return g;
}

/* Copy n bytes so they end at the guard page; returns where they start. */
static const unsigned char *guard_put(guard *g, const void *p, size_t n) {
  unsigned char *at = g->end - n;
  memcpy(at, p, n);
  return at;
}

static void guard_free(guard *g) { munmap(g->map, g->maplen); }

/* The struct used throughout, in both protocols (ids 1, 2, 5, 20, -3, 3:
 * short and long Compact headers, a bool field, a list, a map).
 *   1: i32 -1, 2: string "x", 5: bool true, 20: list<i16> [1, -2],
 *   -3: i64 150, 3: map<string,double> {"k": 0.5} */
static const char *BIN_HEX =
    "08 0001 ffffffff"
    "0b 0002 00000001 78"
    "02 0005 01"
    "0f 0014 06 00000002 0001 fffe"
    "0a fffd 0000000000000096"
    "0d 0003 0b 04 00000001 00000001 6b 3fe0000000000000"
    "00";
static const char *CPT_HEX =
    "15 01"
    "18 01 78"
    "31"
    "f9 24 02 03"
    "06 05 ac02"
    "6b 01 87 01 6b 000000000000e03f"
    "00";

static unsigned char bin_msg[256], cpt_msg[256];
static size_t bin_len, cpt_len;

static void load_vectors(void) {
  bin_len = unhex(BIN_HEX, bin_msg);
  cpt_len = unhex(CPT_HEX, cpt_msg);
}

/* ---- the TType table ---------------------------------------------------- */

static void test_ttype_table(void) {
  CHECK(strcmp(pt_ttype_name(PT_T_I64), "i64") == 0);
  CHECK(strcmp(pt_ttype_name(PT_T_UUID), "uuid") == 0);
  CHECK(strcmp(pt_ttype_name(5), "invalid type") == 0);
  CHECK(strcmp(pt_ttype_name(99), "invalid type") == 0);
  CHECK(pt_ttype_width(PT_T_DOUBLE) == 8 && pt_ttype_width(PT_T_STRING) == 0);
  CHECK(!pt_ttype_valid(PT_T_STOP) && !pt_ttype_valid(1) &&
        pt_ttype_valid(PT_T_LIST) && !pt_ttype_valid(17));
  /* every valid type maps to a Compact code and back */
  for (int t = 0; t < PT_T_LIMIT; t++) {
    if (!pt_ttype_valid(t)) continue;
    CHECK(pt_ctype_ttype[pt_ttypes[t].ctype] == t);
  }
  CHECK(pt_ctype_ttype[PT_CT_FALSE] == PT_T_BOOL);
  CHECK(pt_ctype_ttype[14] == 0 && pt_ctype_ttype[15] == 0);
  CHECK(pt_elem_width(PT_PROTO_COMPACT, PT_T_I64) == 0);
  CHECK(pt_elem_width(PT_PROTO_BINARY, PT_T_I64) == 8);
  CHECK(pt_elem_min(PT_PROTO_COMPACT, PT_T_LIST) == 1);
  CHECK(pt_elem_min(PT_PROTO_BINARY, PT_T_LIST) == 5);
  CHECK(strcmp(pt_proto_names[PT_PROTO_COMPACT], "compact") == 0);
}

/* ---- varints and zigzag ------------------------------------------------- */

static void test_varints(void) {
  static const uint64_t vals[] = {0, 1, 127, 128, 300, 16383, 16384,
                                  0xffffffffu, 0x100000000ull,
                                  0x7fffffffffffffffull, UINT64_MAX};
  for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
    unsigned char b[16];
    size_t n = (size_t)(pt_wr_varint64(b, vals[i]) - b);
    CHECK(n == pt_varint_size(vals[i]));
    uint64_t v = 0;
    CHECK(pt_rd_varint64(b, n, &v) == (int)n && v == vals[i]);
    for (size_t k = 0; k < n; k++) CHECK(pt_rd_varint64(b, k, &v) == PT_NEED);
    if (vals[i] <= 0xffffffffu) {
      uint32_t u = 0;
      CHECK(pt_rd_varint32(b, n, &u) == (int)n && u == vals[i]);
    } else {
      uint32_t u;
      CHECK(pt_rd_varint32(b, n, &u) == PT_BAD);
    }
  }
  unsigned char b[16];
  /* 50399 = df 89 03 (the spec's example) */
  CHECK(pt_wr_varint32(b, 50399) - b == 3 && b[0] == 0xdf && b[1] == 0x89 &&
        b[2] == 0x03);
  uint64_t v;
  memset(b, 0x80, sizeof b);
  CHECK(pt_rd_varint64(b, 11, &v) == PT_BAD); /* too long */
  b[9] = 0x02;
  CHECK(pt_rd_varint64(b, 10, &v) == PT_BAD); /* past 64 bits */
  b[9] = 0x01;
  CHECK(pt_rd_varint64(b, 10, &v) == 10 && v == 1ull << 63);
  uint32_t u;
  b[4] = 0x10;
  CHECK(pt_rd_varint32(b, 5, &u) == PT_BAD); /* past 32 bits */
  /* zigzag */
  CHECK(pt_zz32(0) == 0 && pt_zz32(-1) == 1 && pt_zz32(1) == 2 &&
        pt_zz32(INT32_MIN) == 0xffffffffu && pt_zz32(INT32_MAX) == 0xfffffffeu);
  CHECK(pt_zz64(INT64_MIN) == UINT64_MAX);
  for (int64_t x = -300; x <= 300; x++) {
    CHECK(pt_unzz64(pt_zz64(x)) == x);
    CHECK(pt_unzz32(pt_zz32((int32_t)x)) == (int32_t)x);
  }
  CHECK(pt_unzz64(pt_zz64(INT64_MAX)) == INT64_MAX);
}

/* ---- headers -------------------------------------------------------------- */

static void test_field_headers(void) {
  unsigned char b[8];
  int last = 0, tt, id, bv;
  /* short form: delta 1..15 above the last id */
  CHECK(pt_cpt_wr_field(b, PT_T_I32, 1, &last, 0) - b == 1 && b[0] == 0x15);
  CHECK(pt_cpt_wr_field(b, PT_T_BOOL, 16, &last, 1) - b == 1 && b[0] == 0xf1);
  CHECK(last == 16);
  /* long form: a backwards step, a jump over 15, negative ids */
  CHECK(pt_cpt_wr_field(b, PT_T_BOOL, 2, &last, 0) - b == 2 && b[0] == 0x02 &&
        b[1] == 0x04);
  CHECK(pt_cpt_wr_field(b, PT_T_STRING, 300, &last, 0) - b == 3);
  last = 7;
  int rl = 7;
  CHECK(pt_cpt_rd_field(b, 3, &rl, &tt, &id, &bv) == 3 && tt == PT_T_STRING &&
        id == 300 && rl == 300);
  CHECK(pt_cpt_rd_field(b, 2, &rl, &tt, &id, &bv) == PT_NEED);
  last = 0;
  size_t n = (size_t)(pt_cpt_wr_field(b, PT_T_I64, -32768, &last, 0) - b);
  rl = 0;
  CHECK(pt_cpt_rd_field(b, n, &rl, &tt, &id, &bv) == (int)n && id == -32768 &&
        tt == PT_T_I64);
  /* bools carry their value; a type nibble of 0 ends the struct */
  unsigned char t1[] = {0x11}, t2[] = {0x12}, stop[] = {0x10}, bad[] = {0x1e};
  rl = 0;
  CHECK(pt_cpt_rd_field(t1, 1, &rl, &tt, &id, &bv) == 1 && tt == PT_T_BOOL &&
        bv == 1 && id == 1);
  CHECK(pt_cpt_rd_field(t2, 1, &rl, &tt, &id, &bv) == 1 && bv == 0 && id == 2);
  CHECK(pt_cpt_rd_field(stop, 1, &rl, &tt, &id, &bv) == 1 && tt == PT_T_STOP);
  CHECK(pt_cpt_rd_field(bad, 1, &rl, &tt, &id, &bv) == PT_BAD);
  /* a delta past 32767 */
  rl = 32767;
  CHECK(pt_cpt_rd_field(t1, 1, &rl, &tt, &id, &bv) == PT_BAD);
  /* Binary */
  CHECK(pt_bin_wr_field(b, PT_T_I16, -2) - b == 3);
  CHECK(pt_bin_rd_field(b, 3, &tt, &id) == 3 && tt == PT_T_I16 && id == -2);
  CHECK(pt_bin_rd_field(b, 2, &tt, &id) == PT_NEED);
  unsigned char z = 0;
  CHECK(pt_bin_rd_field(&z, 1, &tt, &id) == 1 && tt == PT_T_STOP);
}

static void test_containers(void) {
  unsigned char b[16];
  int et, kt, vt;
  uint32_t n;
  /* list: short form up to 14, then 0xf? + varint */
  CHECK(pt_cpt_wr_list(b, PT_T_I32, 14) - b == 1 && b[0] == 0xe5);
  CHECK(pt_cpt_wr_list(b, PT_T_BOOL, 15) - b == 2 && b[0] == 0xf1 && b[1] == 15);
  CHECK(pt_cpt_rd_list(b, 2, &et, &n) == 2 && et == PT_T_BOOL && n == 15);
  CHECK(pt_cpt_rd_list(b, 1, &et, &n) == PT_NEED);
  size_t k = (size_t)(pt_cpt_wr_list(b, PT_T_STRUCT, 1000000) - b);
  CHECK(pt_cpt_rd_list(b, k, &et, &n) == (int)k && et == PT_T_STRUCT &&
        n == 1000000);
  unsigned char notype[] = {0x0e}, big[] = {0xf5, 0xff, 0xff, 0xff, 0xff, 0x0f};
  CHECK(pt_cpt_rd_list(notype, 1, &et, &n) == 1 && et == -1 && n == 0);
  CHECK(pt_cpt_rd_list(big, 6, &et, &n) == PT_BAD); /* above INT32_MAX */
  /* map: 0 alone when empty */
  CHECK(pt_cpt_wr_map(b, PT_T_STRING, PT_T_I64, 0) - b == 1 && b[0] == 0);
  CHECK(pt_cpt_rd_map(b, 1, &kt, &vt, &n) == 1 && n == 0 && kt == 0);
  CHECK(pt_cpt_wr_map(b, PT_T_STRING, PT_T_I64, 3) - b == 2 && b[1] == 0x86);
  CHECK(pt_cpt_rd_map(b, 2, &kt, &vt, &n) == 2 && kt == PT_T_STRING &&
        vt == PT_T_I64 && n == 3);
  CHECK(pt_cpt_rd_map(b, 1, &kt, &vt, &n) == PT_NEED);
  /* Binary */
  CHECK(pt_bin_wr_list(b, PT_T_I64, 7) - b == 5);
  CHECK(pt_bin_rd_list(b, 5, &et, &n) == 5 && et == PT_T_I64 && n == 7);
  CHECK(pt_bin_rd_list(b, 4, &et, &n) == PT_NEED);
  b[1] = 0x80;
  CHECK(pt_bin_rd_list(b, 5, &et, &n) == PT_BAD); /* negative count */
  CHECK(pt_bin_wr_map(b, PT_T_I32, PT_T_STRUCT, 2) - b == 6);
  CHECK(pt_bin_rd_map(b, 6, &kt, &vt, &n) == 6 && kt == PT_T_I32 &&
        vt == PT_T_STRUCT && n == 2);
  uint32_t len;
  unsigned char neg[] = {0xff, 0xff, 0xff, 0xff};
  CHECK(pt_bin_rd_len(neg, 4, &len) == PT_BAD);
  /* scalars */
  int16_t h;
  int32_t i;
  int64_t l;
  unsigned char s16[] = {0xfe, 0xff, 0x03}; /* 65534: zigzag 32767 */
  CHECK(pt_cpt_rd_i16(s16, 3, &h) == 3 && h == 32767);
  unsigned char o16[] = {0x80, 0x80, 0x04}; /* 65536: zigzag 32768 */
  CHECK(pt_cpt_rd_i16(o16, 3, &h) == PT_BAD);
  unsigned char m1[] = {0x01};
  CHECK(pt_cpt_rd_i32(m1, 1, &i) == 1 && i == -1);
  CHECK(pt_cpt_rd_i64(m1, 1, &l) == 1 && l == -1);
}

/* ---- envelopes -------------------------------------------------------------- */

static void test_envelopes(void) {
  unsigned char b[64];
  pt_msg m;
  /* Compact: 82, type 1 << 5 | version 1, seqid, name */
  size_t n = (size_t)(pt_msg_write(b, PT_PROTO_COMPACT, "ping", 4, 1, 1) - b);
  CHECK(n == 8 && b[0] == 0x82 && b[1] == 0x21 && b[2] == 1 && b[3] == 4 &&
        memcmp(b + 4, "ping", 4) == 0);
  CHECK(pt_msg_parse(b, n, 100, &m) == (int)n && m.proto == PT_PROTO_COMPACT &&
        m.mtype == 1 && m.seqid == 1 && m.name_len == 4 &&
        memcmp(m.name, "ping", 4) == 0);
  for (size_t k = 0; k < n; k++) CHECK(pt_msg_parse(b, k, 100, &m) == PT_NEED);
  /* negative seqids survive (varint of the unsigned value) */
  n = (size_t)(pt_msg_write(b, PT_PROTO_COMPACT, "x", 1, 4, -5) - b);
  CHECK(pt_msg_parse(b, n, 100, &m) == (int)n && m.seqid == -5 && m.mtype == 4);
  /* Binary strict */
  n = (size_t)(pt_msg_write(b, PT_PROTO_BINARY, "echo", 4, 2, 77) - b);
  CHECK(n == 16 && b[0] == 0x80 && b[1] == 0x01 && b[3] == 2);
  CHECK(pt_msg_parse(b, n, 100, &m) == 16 && m.strict && m.mtype == 2 &&
        m.seqid == 77 && m.head == 8);
  for (size_t k = 0; k < n; k++) CHECK(pt_msg_parse(b, k, 100, &m) == PT_NEED);
  /* Binary non-strict: name length, name, type, seqid */
  unsigned char ns[] = {0, 0, 0, 2, 'h', 'i', 3, 0, 0, 0, 9};
  CHECK(pt_msg_parse(ns, sizeof ns, 100, &m) == 11 && !m.strict &&
        m.mtype == 3 && m.seqid == 9);
  CHECK(pt_msg_head(ns, sizeof ns, 100, &m) == 4 && m.name_len == 2);
  CHECK(pt_msg_tail(ns + 6, 5, &m) == 5);
  /* errors, with a reason */
  unsigned char v2[] = {0x80, 0x02, 0, 1, 0, 0, 0, 0};
  CHECK(pt_msg_parse(v2, 8, 100, &m) == PT_BAD &&
        strcmp(m.why, "bad protocol version") == 0);
  unsigned char c2[] = {0x82, 0x22, 0, 0};
  CHECK(pt_msg_parse(c2, 4, 100, &m) == PT_BAD &&
        strcmp(m.why, "bad compact protocol version") == 0);
  unsigned char id[] = {0x83};
  CHECK(pt_msg_parse(id, 1, 100, &m) == PT_BAD &&
        strcmp(m.why, "bad protocol id") == 0);
  CHECK(pt_msg_parse(ns, sizeof ns, 1, &m) == PT_BAD &&
        strcmp(m.why, "bad method name length") == 0);
}

/* ---- transport detection --------------------------------------------------- */

/* A message: envelope (proto, strict), name, body; framed or not. */
static size_t make_message(unsigned char *out, int proto, int strict,
                           int framed, const char *name) {
  unsigned char *p = out + (framed ? 4 : 0);
  size_t nl = strlen(name);
  if (proto == PT_PROTO_BINARY && !strict) {
    pt_st32(p, (uint32_t)nl);
    memcpy(p + 4, name, nl);
    p[4 + nl] = 1;
    pt_st32(p + 5 + nl, 3);
    p += 9 + nl;
  } else {
    p = pt_msg_write(p, proto, name, (uint32_t)nl, 1, 3);
  }
  const unsigned char *body = proto == PT_PROTO_COMPACT ? cpt_msg : bin_msg;
  size_t blen = proto == PT_PROTO_COMPACT ? cpt_len : bin_len;
  memcpy(p, body, blen);
  p += blen;
  size_t n = (size_t)(p - out);
  if (framed) pt_st32(out, (uint32_t)(n - 4));
  return n;
}

/* Every prefix: "need more" until decided, then the right answer, and
 * the answer never changes with more bytes. */
static void detect_all_prefixes(const unsigned char *msg, size_t n, int wire,
                                int transport, int proto) {
  guard g = guard_new(n);
  int decided = 0;
  for (size_t k = 1; k <= n; k++) {
    const unsigned char *at = guard_put(&g, msg, k);
    pt_detect d;
    int r = pt_detect_wire(at, k, 1 << 20, 1024, &d);
    if (r == PT_NEED) {
      CHECK(!decided);
      continue;
    }
    CHECK(r == 1);
    decided = 1;
    CHECK(d.wire == wire);
    if (wire == PT_WIRE_THRIFT) CHECK(d.transport == transport && d.proto == proto);
  }
  CHECK(decided);
  guard_free(&g);
}

static void test_detect(void) {
  unsigned char msg[512];
  const char *names[] = {"echo", "", "a.very_long:MethodName.x"};
  for (int ni = 0; ni < 3; ni++) {
    for (int framed = 0; framed < 2; framed++) {
      int tr = framed ? PT_TR_FRAMED : PT_TR_UNFRAMED;
      size_t n = make_message(msg, PT_PROTO_BINARY, 1, framed, names[ni]);
      detect_all_prefixes(msg, n, PT_WIRE_THRIFT, tr, PT_PROTO_BINARY);
      n = make_message(msg, PT_PROTO_BINARY, 0, framed, names[ni]);
      detect_all_prefixes(msg, n, PT_WIRE_THRIFT, tr, PT_PROTO_BINARY);
      n = make_message(msg, PT_PROTO_COMPACT, 1, framed, names[ni]);
      detect_all_prefixes(msg, n, PT_WIRE_THRIFT, tr, PT_PROTO_COMPACT);
    }
  }
  /* the defect it fixes: an unframed non-strict message whose first read
   * holds 6 or more bytes but not the whole name is not taken as framed */
  size_t n = make_message(msg, PT_PROTO_BINARY, 0, 0, "getSomethingLong");
  pt_detect d;
  CHECK(pt_detect_wire(msg, 7, 1 << 20, 1024, &d) == PT_NEED);
  CHECK(pt_detect_wire(msg, n, 1 << 20, 1024, &d) == 1 &&
        d.transport == PT_TR_UNFRAMED && !d.strict);
  /* HTTP and TLS peers are named, not read as a frame of 1213486160 bytes */
  const char *http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  detect_all_prefixes((const unsigned char *)http, strlen(http), PT_WIRE_HTTP,
                      0, 0);
  const char *post = "POST /rpc HTTP/1.1\r\n";
  detect_all_prefixes((const unsigned char *)post, strlen(post), PT_WIRE_HTTP,
                      0, 0);
  CHECK(pt_detect_wire((const unsigned char *)http, 4, 1 << 20, 1024, &d) == 1 &&
        d.wire == PT_WIRE_HTTP && strcmp(d.what, "an HTTP request") == 0);
  unsigned char tls[] = {0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1};
  detect_all_prefixes(tls, sizeof tls, PT_WIRE_TLS, 0, 0);
  unsigned char junk[] = {0xff, 0xfe, 0x00, 0x01};
  CHECK(pt_detect_wire(junk, 4, 1 << 20, 1024, &d) == 1 &&
        d.wire == PT_WIRE_UNKNOWN);
  /* a frame above max_frame is not Thrift for this server */
  unsigned char huge[] = {0x7f, 0x00, 0x00, 0x00, 0x80, 0x01, 0x00, 0x01};
  CHECK(pt_detect_wire(huge, 8, 1 << 20, 1024, &d) == 1 &&
        d.wire == PT_WIRE_UNKNOWN);
}

/* ---- skip, transcode, scanner ------------------------------------------------ */

static void test_skip_transcode(void) {
  CHECK(pt_skip_proto(PT_PROTO_BINARY, bin_msg, bin_msg + bin_len,
                      PT_T_STRUCT, 10) == bin_len);
  CHECK(pt_skip_proto(PT_PROTO_COMPACT, cpt_msg, cpt_msg + cpt_len,
                      PT_T_STRUCT, 10) == cpt_len);
  CHECK(pt_skip_proto(PT_PROTO_COMPACT, cpt_msg, cpt_msg + cpt_len,
                      PT_T_STRUCT, 1) == 0); /* the list needs depth 2 */
  pt_pool *pool = pt_pool_new(0);
  pt_buf b;
  pt_buf_init(&b, pool);
  pt_wr wr;
  /* Binary -> Compact gives the hand-computed bytes */
  pt_wr_init_buf(&wr, &b, 0);
  CHECK(pt_transcode(PT_PROTO_BINARY, bin_msg, bin_len, PT_T_STRUCT,
                     PT_PROTO_COMPACT, &wr, 10) == (ptrdiff_t)bin_len);
  CHECK(pt_wr_flush(&wr) == 0);
  CHECK(pt_buf_len(&b) == cpt_len);
  CHECK(memcmp(pt_buf_peek(&b, cpt_len), cpt_msg, cpt_len) == 0);
  pt_buf_clear(&b);
  /* and back */
  pt_wr_init_buf(&wr, &b, 0);
  CHECK(pt_transcode(PT_PROTO_COMPACT, cpt_msg, cpt_len, PT_T_STRUCT,
                     PT_PROTO_BINARY, &wr, 10) == (ptrdiff_t)cpt_len);
  CHECK(pt_wr_flush(&wr) == 0);
  CHECK(pt_buf_len(&b) == bin_len &&
        memcmp(pt_buf_peek(&b, bin_len), bin_msg, bin_len) == 0);
  pt_buf_clear(&b);
  /* cut short: PT_NEED at every prefix; malformed: PT_BAD */
  for (size_t k = 0; k < cpt_len; k++) {
    pt_wr_init_count(&wr, &b, 0);
    CHECK(pt_transcode(PT_PROTO_COMPACT, cpt_msg, k, PT_T_STRUCT,
                       PT_PROTO_BINARY, &wr, 10) == PT_NEED);
    pt_wr_flush(&wr);
    pt_wr_init_count(&wr, &b, 0);
    CHECK(pt_transcode(PT_PROTO_BINARY, bin_msg, k < bin_len ? k : 0,
                       PT_T_STRUCT, PT_PROTO_COMPACT, &wr, 10) == PT_NEED);
    pt_wr_flush(&wr);
  }
  unsigned char badt[] = {0x1e};
  pt_wr_init_count(&wr, &b, 0);
  CHECK(pt_transcode(PT_PROTO_COMPACT, badt, 1, PT_T_STRUCT, PT_PROTO_BINARY,
                     &wr, 10) == PT_BAD);
  pt_wr_flush(&wr);
  CHECK(pt_buf_len(&b) == 0);
  pt_buf_free(&b);
  pt_pool_close(pool);
}

static int scan_all(const unsigned char *p, size_t n, uint64_t *fed,
                    size_t piece) {
  pt_scan s;
  pt_scan_init(&s, 1 << 20, 64);
  int r = PT_SCAN_MORE;
  for (size_t at = 0; at < n && r == PT_SCAN_MORE; at += piece) {
    size_t k = n - at < piece ? n - at : piece;
    r = pt_scan_feed(&s, p + at, k, NULL);
  }
  *fed = s.fed;
  return r;
}

static void test_scanner(void) {
  unsigned char msg[512];
  for (int proto = 0; proto < 2; proto++)
    for (int strict = 0; strict < 2; strict++) {
      if (proto == PT_PROTO_COMPACT && !strict) continue;
      size_t n = make_message(msg, proto, strict, 0, "echo");
      for (size_t piece = 1; piece <= n; piece++) {
        uint64_t fed;
        CHECK(scan_all(msg, n, &fed, piece) == PT_SCAN_DONE && fed == n);
      }
      /* every proper prefix is incomplete */
      for (size_t k = 0; k < n; k++) {
        uint64_t fed;
        CHECK(scan_all(msg, k, &fed, k ? k : 1) == PT_SCAN_MORE);
      }
    }
  /* Compact numeric lists pass as varint runs; overlong varints fail */
  unsigned char m[64];
  size_t n = (size_t)(pt_msg_write(m, PT_PROTO_COMPACT, "v", 1, 1, 1) - m);
  unsigned char body[] = {0x19, 0x36, 0x80, 0x01, 0x7f, 0x81, 0x80, 0x80,
                          0x01, 0x00};
  memcpy(m + n, body, sizeof body);
  uint64_t fed;
  CHECK(scan_all(m, n + sizeof body, &fed, 1) == PT_SCAN_DONE &&
        fed == n + sizeof body);
  unsigned char longv[] = {0x19, 0x15, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0x00};
  memcpy(m + n, longv, sizeof longv);
  pt_scan s;
  pt_scan_init(&s, 1 << 20, 64);
  CHECK(pt_scan_feed(&s, m, n + sizeof longv, NULL) == PT_SCAN_BAD &&
        strcmp(s.err, "bad varint") == 0);
  /* a bad Compact version is refused with its reason */
  unsigned char badv[] = {0x82, 0x22, 0x00, 0x00};
  pt_scan_init(&s, 1 << 20, 64);
  CHECK(pt_scan_feed(&s, badv, 4, NULL) == PT_SCAN_BAD &&
        strcmp(s.err, "bad compact protocol version") == 0);
}

/* ---- Compact numeric kernels ------------------------------------------------ */

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

/* a value of a random bit width, as the bench data has */
static int64_t rnd_value(int w) {
  int bits = (int)(rnd() % (uint64_t)(8 * w));
  uint64_t v = bits ? rnd() >> (64 - bits) : 0;
  if (rnd() & 1) v = ~v;
  if (w == 2) return (int16_t)v;
  if (w == 4) return (int32_t)v;
  return (int64_t)v;
}

static void test_zz_kernels(void) {
  static const int widths[] = {2, 4, 8};
  for (int wi = 0; wi < 3; wi++) {
    int w = widths[wi];
    for (int small = 0; small < 2; small++) {
      size_t n = 1000 + (size_t)wi * 37;
      unsigned char *src = malloc(n * 8), *a = malloc(n * 10), *b = malloc(n * 10);
      unsigned char *back = malloc(n * 8);
      for (size_t i = 0; i < n; i++) {
        int64_t v = small ? (int64_t)(rnd() % 127) - 63 : rnd_value(w);
        if (i < 4) v = i == 0 ? 0 : i == 1 ? -1 : i == 2 ? (w == 8 ? INT64_MIN : w == 4 ? INT32_MIN : INT16_MIN)
                                                        : (w == 8 ? INT64_MAX : w == 4 ? INT32_MAX : INT16_MAX);
        memcpy(src + i * (size_t)w, &v, (size_t)w);
      }
      pt_simd_force_scalar(1);
      size_t la = pt_zz_encode(a, src, n, w);
      pt_simd_force_scalar(0);
      size_t lb = pt_zz_encode(b, src, n, w);
      CHECK(la == lb && memcmp(a, b, la) == 0);
      /* in place: the values at the end of the room */
      size_t room = n * PT_ZZ_MAX(w);
      unsigned char *ip = malloc(room);
      memcpy(ip + room - n * (size_t)w, src, n * (size_t)w);
      CHECK(pt_zz_encode(ip, ip + room - n * (size_t)w, n, w) == la &&
            memcmp(ip, a, la) == 0);
      free(ip);
      for (int mode = 1; mode >= 0; mode--) {
        pt_simd_force_scalar(mode);
        size_t bad = 99;
        memset(back, 0, n * 8);
        CHECK(pt_zz_decode(back, a, la, n, w, &bad) == la);
        CHECK(memcmp(back, src, n * (size_t)w) == 0);
        /* cut short anywhere: 0, and which element */
        CHECK(pt_zz_decode(back, a, la - 1, n, w, &bad) == 0 && bad == n - 1);
      }
      pt_simd_force_scalar(0);
      free(src);
      free(a);
      free(b);
      free(back);
    }
  }
  /* malformed: an i16 out of range, an i32 varint of 6 bytes, 64 bits+ */
  unsigned char o16[40] = {0x80, 0x80, 0x04};
  unsigned char l32[40] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x01};
  unsigned char o64[40] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02};
  int64_t out[4];
  for (int mode = 0; mode < 2; mode++) {
    pt_simd_force_scalar(mode);
    size_t bad = 9;
    CHECK(pt_zz_decode(out, o16, sizeof o16, 1, 2, &bad) == 0 && bad == 0);
    CHECK(pt_zz_decode(out, l32, sizeof l32, 1, 4, &bad) == 0 && bad == 0);
    CHECK(pt_zz_decode(out, o64, sizeof o64, 1, 8, &bad) == 0 && bad == 0);
  }
  pt_simd_force_scalar(0);
}

/* ---- writers over buffers ------------------------------------------------------ */

static int released;
static void on_release(void *ctx, intptr_t tag) {
  (void)ctx;
  (void)tag;
  released++;
}

static void test_writers(void) {
  pt_pool *pool = pt_pool_new(0);
  pt_buf b;
  pt_buf_init(&b, pool);
  b.block_size = 128;
  pt_wr wr;
  pt_wr_init_buf(&wr, &b, 0);
  unsigned char expect[70000];
  size_t n = 0;
  for (int i = 0; i < 10000; i++) {
    CHECK(pt_wr_need(&wr, PT_MAX_VARINT) == 0);
    unsigned char *s = wr.w;
    wr.w = pt_wr_varint64(wr.w, (uint64_t)i * 2654435761u);
    memcpy(expect + n, s, (size_t)(wr.w - s));
    n += (size_t)(wr.w - s);
  }
  /* full regions are committed as it goes; the last one at the flush */
  CHECK(pt_buf_len(&b) < n && pt_wr_len(&wr) == n);
  static const char ext[] = "linked bytes";
  CHECK(pt_wr_link(&wr, ext, sizeof ext, on_release, NULL, 1) == 0);
  memcpy(expect + n, ext, sizeof ext);
  n += sizeof ext;
  CHECK(pt_wr_bytes(&wr, "tail", 4) == 0);
  memcpy(expect + n, "tail", 4);
  n += 4;
  CHECK(pt_wr_flush(&wr) == 0);
  CHECK(pt_buf_len(&b) == n && pt_wr_len(&wr) == n);
  CHECK(memcmp(pt_buf_peek(&b, n), expect, n) == 0);
  /* regions grow: far fewer nodes than 128-byte blocks would need */
  CHECK(pt_buf_nodes(&b) < 16);
  pt_buf_clear(&b);
  CHECK(released == 1);
  /* counting: the same length, nothing kept */
  pt_wr_init_count(&wr, &b, 0);
  for (int i = 0; i < 10000; i++) {
    CHECK(pt_wr_need(&wr, PT_MAX_VARINT) == 0);
    wr.w = pt_wr_varint64(wr.w, (uint64_t)i * 2654435761u);
  }
  CHECK(pt_wr_link(&wr, ext, sizeof ext, on_release, NULL, 2) == 0);
  CHECK(pt_wr_bytes(&wr, "tail", 4) == 0);
  CHECK(pt_wr_flush(&wr) == 0);
  CHECK(pt_wr_len(&wr) == n && pt_buf_len(&b) == 0 && released == 2);
  pt_buf_free(&b);
  pt_pool_close(pool);
}

/* ---- guard pages ------------------------------------------------------------ */

/* Every prefix of every input ends just before an unreadable page: the
 * skipper, the scanner, both protocols' readers (transcoding reads every
 * value), the envelope and the numeric kernels must stop at the end. */
static void test_guard_pages(void) {
  unsigned char msg[512];
  pt_pool *pool = pt_pool_new(0);
  pt_buf b;
  pt_buf_init(&b, pool);
  for (int proto = 0; proto < 2; proto++) {
    const unsigned char *body = proto ? cpt_msg : bin_msg;
    size_t blen = proto ? cpt_len : bin_len;
    guard g = guard_new(blen);
    for (size_t k = 0; k <= blen; k++) {
      const unsigned char *at = guard_put(&g, body, k);
      size_t sk = pt_skip_proto(proto, at, at + k, PT_T_STRUCT, 10);
      CHECK(sk == (k == blen ? blen : 0));
      for (int t = 0; t < PT_T_LIMIT; t++) pt_skip_proto(proto, at, at + k, t, 10);
      pt_wr wr;
      pt_wr_init_count(&wr, &b, 0);
      ptrdiff_t r = pt_transcode(proto, at, k, PT_T_STRUCT, !proto, &wr, 10);
      CHECK(k == blen ? r == (ptrdiff_t)blen : r == PT_NEED);
      pt_wr_flush(&wr);
    }
    guard_free(&g);
    for (int strict = 0; strict < 2; strict++) {
      if (proto && !strict) continue;
      size_t n = make_message(msg, proto, strict, 0, "echo");
      guard g2 = guard_new(n);
      for (size_t k = 0; k <= n; k++) {
        const unsigned char *at = guard_put(&g2, msg, k);
        pt_scan s;
        pt_scan_init(&s, 1 << 20, 64);
        int r = pt_scan_feed(&s, at, k, NULL);
        CHECK(k == n ? r == PT_SCAN_DONE : r == PT_SCAN_MORE);
        pt_msg m;
        pt_msg_parse(at, k, 100, &m);
        pt_detect d;
        pt_detect_wire(at, k, 1 << 20, 100, &d);
      }
      guard_free(&g2);
    }
  }
  /* the numeric kernels: n values whose bytes end at the guard */
  for (int mode = 0; mode < 2; mode++) {
    pt_simd_force_scalar(mode);
    int64_t vals[300], out[300];
    unsigned char enc[3000];
    for (int i = 0; i < 300; i++) vals[i] = rnd_value(8);
    size_t len = pt_zz_encode(enc, vals, 300, 8);
    guard g = guard_new(len);
    for (size_t k = len - 40; k <= len; k++) {
      const unsigned char *at = guard_put(&g, enc, k);
      size_t bad;
      size_t got = pt_zz_decode(out, at, k, 300, 8, &bad);
      CHECK(k == len ? got == len && memcmp(out, vals, sizeof vals) == 0
                     : got == 0);
    }
    guard_free(&g);
  }
  pt_simd_force_scalar(0);
  pt_buf_free(&b);
  pt_pool_close(pool);
}

int main(void) {
  load_vectors();
  TEST(test_ttype_table);
  TEST(test_varints);
  TEST(test_field_headers);
  TEST(test_containers);
  TEST(test_envelopes);
  TEST(test_detect);
  TEST(test_skip_transcode);
  TEST(test_scanner);
  TEST(test_zz_kernels);
  TEST(test_writers);
  TEST(test_guard_pages);
  return ct_report();
}
