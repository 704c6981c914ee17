/* fuzz_scan.c — libFuzzer harness for the incremental message scanner
 * (pt_scan_feed, Binary and Compact messages) and the wire skippers
 * (pt_skip_proto), make fuzz.
 *
 * Input: 4 control bytes (piece-size seed, max_bytes and max_depth
 * choices), then the bytes of the stream. Each input is scanned
 *   - in one piece, and
 *   - in pseudo-random pieces (empty ones included), each copied into a
 *     block of exactly its size and freed right after the call, so ASan
 *     sees any read past a piece or of an earlier piece;
 * and the two must agree on the outcome, the length and the error. A
 * reference built from pt_skip (envelope parsed here, body skipped with
 * depth PT_SCAN_MAXDEPTH + 1) must agree too: a complete message found by
 * one is found by the other with the same length; the scanner may refuse
 * only for its depth cap (then pt_skip at that depth refuses too) or for
 * max_bytes (then the message is longer). After a message the scanner
 * starts over on the rest and must match a fresh scanner. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../csrc/pt_scan.h"

#define CHECK(c)                                                        \
  do {                                                                  \
    if (!(c)) {                                                         \
      fprintf(stderr, "fuzz_scan: check failed at line %d: %s\n",       \
              __LINE__, #c);                                            \
      abort();                                                          \
    }                                                                   \
  } while (0)

typedef struct result {
  int r;
  uint64_t fed;
  const char *err;
} result;

static uint32_t rng;
static uint32_t next_rand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 17;
  rng ^= rng << 5;
  return rng;
}

/* Mostly tiny pieces (token boundaries everywhere), sometimes empty or
 * large ones. */
static size_t piece_size(size_t left) {
  uint32_t x = next_rand();
  size_t k;
  switch (x & 7) {
    case 0: k = 0; break;
    case 1:
    case 2: k = 1; break;
    case 3:
    case 4: k = 1 + (x >> 8) % 8; break;
    case 5: k = 1 + (x >> 8) % 64; break;
    default: k = 1 + (x >> 8) % 4096; break;
  }
  return k < left ? k : left;
}

static result scan_whole(const uint8_t *p, size_t n, uint64_t max, int depth) {
  pt_scan s;
  pt_scan_init(&s, max, depth);
  unsigned char *copy = malloc(n ? n : 1);
  CHECK(copy);
  memcpy(copy, p, n);
  size_t used = (size_t)-1;
  int r = pt_scan_feed(&s, copy, n, &used);
  free(copy);
  CHECK(used <= n);
  if (r == PT_SCAN_MORE) CHECK(used == n && s.fed == n);
  if (r == PT_SCAN_DONE) CHECK(used == s.fed && s.fed > 0);
  if (r == PT_SCAN_BAD) CHECK(s.err && s.fed <= n);
  /* a failed scanner stays failed and takes nothing */
  if (r == PT_SCAN_BAD) {
    size_t u = 1;
    CHECK(pt_scan_feed(&s, p, n, &u) == PT_SCAN_BAD && u == 0);
  }
  return (result){r, s.fed, s.err};
}

static result scan_pieces(const uint8_t *p, size_t n, uint64_t max,
                          int depth) {
  pt_scan s;
  pt_scan_init(&s, max, depth);
  size_t pos = 0;
  int r = PT_SCAN_MORE;
  do {
    size_t k = piece_size(n - pos);
    unsigned char *piece = malloc(k ? k : 1);
    CHECK(piece);
    memcpy(piece, p + pos, k);
    uint64_t before = s.fed;
    size_t used = (size_t)-1;
    r = pt_scan_feed(&s, piece, k, &used);
    free(piece);
    CHECK(used <= k);
    if (r == PT_SCAN_MORE) CHECK(used == k);
    if (r != PT_SCAN_BAD) CHECK(s.fed == before + used);
    pos += used;
  } while (r == PT_SCAN_MORE && pos < n);
  if (r == PT_SCAN_DONE) CHECK(pos == s.fed);
  return (result){r, s.fed, s.err};
}

/* Reference: the envelope read by pt_msg_parse (the one envelope reader,
 * unit-tested in spec/c/test_thrift.c), the body by pt_skip_proto in the
 * envelope's protocol. Returns the message length, 0 if there is no
 * complete, well-formed message (with the body nested at most
 * PT_SCAN_MAXDEPTH + 1 levels); *body gets the body offset and *proto its
 * protocol when the envelope is complete. */
static size_t reference(const uint8_t *p, size_t n, int depth, size_t *body,
                        int *proto) {
  *body = 0;
  pt_msg m;
  int at = pt_msg_parse(p, n, 0x7fffffffu, &m);
  if (at < 0) return 0;
  *body = (size_t)at;
  *proto = m.proto;
  size_t k = pt_skip_proto(m.proto, p + at, p + n, PT_T_STRUCT, depth);
  return k ? (size_t)at + k : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 4) return 0;
  rng = (uint32_t)data[0] << 8 | data[3] | 0x10000u;
  int depth = data[1] >> 1 ? 1 + (data[1] >> 1) % PT_SCAN_MAXDEPTH : 64;
  const uint8_t *p = data + 4;
  size_t n = size - 4;
  uint64_t max;
  switch (data[2] & 3) {
    case 0: max = n ? n : 1; break;
    case 1: max = UINT64_MAX; break;
    case 2: max = 1 + (data[2] >> 2) * (uint64_t)(n / 64 + 1); break;
    default: max = (uint64_t)1 << 31; break;
  }

  result a = scan_whole(p, n, max, depth);
  result b = scan_pieces(p, n, max, depth);
  CHECK(a.r == b.r);
  CHECK(a.fed == b.fed);
  if (a.r == PT_SCAN_BAD) CHECK(strcmp(a.err, b.err) == 0);

  size_t body;
  int proto = PT_PROTO_BINARY;
  size_t ref = reference(p, n, PT_SCAN_MAXDEPTH + 1, &body, &proto);
  if (a.r == PT_SCAN_DONE) {
    CHECK(a.fed <= max);
    CHECK(ref == a.fed);
  } else if (ref) {
    CHECK(a.r == PT_SCAN_BAD);
    if (strcmp(a.err, "nesting too deep") == 0)
      CHECK(pt_skip_proto(proto, p + body, p + n, PT_T_STRUCT, depth) == 0);
    else
      CHECK(strcmp(a.err, "message too large") == 0 && ref > max);
  }

  /* the next message: reset must be as good as a fresh scanner */
  if (a.r == PT_SCAN_DONE && a.fed < n) {
    pt_scan s;
    pt_scan_init(&s, max, depth);
    size_t used;
    CHECK(pt_scan_feed(&s, p, n, &used) == PT_SCAN_DONE && used == a.fed);
    pt_scan_reset(&s);
    int r = pt_scan_feed(&s, p + used, n - used, NULL);
    result c = scan_whole(p + used, n - used, max, depth);
    CHECK(r == c.r && s.fed == c.fed);
  }

  /* the skipper alone, every wire type, never past the input */
  unsigned char *copy = malloc(n ? n : 1);
  CHECK(copy);
  memcpy(copy, p, n);
  for (int t = 0; t <= 17; t++) {
    CHECK(pt_skip(copy, copy + n, t, depth) <= n);
    CHECK(pt_skip_proto(PT_PROTO_COMPACT, copy, copy + n, t, depth) <= n);
  }
  free(copy);
  return 0;
}
