/* fuzz_http.c — libFuzzer harness for HTTP/1.1 response parsing (pt_http
 * over http_parser), make fuzz FUZZ_TARGET=http.
 *
 * Input: 2 control bytes (piece-size seed, limits choice), then a stream
 * of responses. The stream is fed
 *   - in one piece, and
 *   - in pseudo-random pieces (empty ones included), each copied into a
 *     block of exactly its size and freed right after the call, so ASan
 *     sees any read past a piece or of an earlier piece;
 * after each complete response the parser is reset and fed the rest (as
 * pipelined responses are), and at the end of the input the stream is
 * closed (pt_http_eof). Both feedings must agree on every response's
 * outcome, status, body and length, and on the final error; bodies never
 * exceed the limit and consumed counts never exceed what was fed. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../csrc/pt_http.h"

#define CHECK(c)                                                        \
  do {                                                                  \
    if (!(c)) {                                                         \
      fprintf(stderr, "fuzz_http: check failed at line %d: %s\n",       \
              __LINE__, #c);                                            \
      abort();                                                          \
    }                                                                   \
  } while (0)

#define MAXR 16

typedef struct outcome {
  int n;                 /* responses completed */
  int status[MAXR];
  size_t body_len[MAXR], consumed[MAXR];
  uint32_t body_sum[MAXR];
  int final;             /* PT_HTTP_MORE / DONE (eof ended one) / ERROR */
  char err[200];
} outcome;

static uint32_t rng;
static uint32_t next_rand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 17;
  rng ^= rng << 5;
  return rng;
}

static size_t piece_size(size_t left) {
  uint32_t x = next_rand();
  size_t n = (x & 3) == 0 ? 0 : (x & 7) < 6 ? 1 + (x >> 8) % 8 : 1 + (x >> 8) % 512;
  return n > left ? left : n;
}

static uint32_t sum_buf(pt_buf *b) {
  uint32_t s = 0;
  size_t n = pt_buf_len(b);
  const unsigned char *p = (const unsigned char *)pt_buf_peek(b, n);
  for (size_t i = 0; p && i < n; i++) s = s * 31 + p[i];
  return s;
}

static void record(outcome *o, pt_http_resp *r, pt_buf *body, size_t consumed,
                   size_t max_body) {
  CHECK(pt_buf_len(body) <= max_body);
  if (o->n < MAXR) {
    o->status[o->n] = pt_http_status(r);
    o->body_len[o->n] = pt_buf_len(body);
    o->body_sum[o->n] = sum_buf(body);
    o->consumed[o->n] = consumed;
  }
  o->n++;
  pt_buf_clear(body);
  pt_http_reset(r);
}

/* Parse data in pieces (step 0: one piece). */
static void run(const uint8_t *data, size_t size, int pieces, size_t max_body,
                outcome *o) {
  memset(o, 0, sizeof *o);
  pt_pool *pool = pt_pool_new(0);
  pt_buf body;
  pt_buf_init(&body, pool);
  pt_http_resp *r = pt_http_new(512, max_body);
  CHECK(r != NULL);
  size_t off = 0, in_resp = 0;
  int st = PT_HTTP_MORE;
  while (off < size && o->n < 64) {
    size_t n = pieces ? piece_size(size - off) : size - off;
    char *copy = malloc(n ? n : 1);
    memcpy(copy, data + off, n);
    size_t used = 0;
    st = pt_http_feed(r, copy, n, &body, &used);
    free(copy);
    CHECK(used <= n);
    off += used;
    in_resp += used;
    if (st == PT_HTTP_ERROR) break;
    if (st == PT_HTTP_DONE) {
      record(o, r, &body, in_resp, max_body);
      in_resp = 0;
      st = PT_HTTP_MORE;
    } else {
      CHECK(used == n);
      CHECK(pt_buf_len(&body) <= max_body);
    }
  }
  if (st == PT_HTTP_MORE && off >= size) {
    st = pt_http_eof(r, &body);
    if (st == PT_HTTP_DONE) record(o, r, &body, in_resp, max_body);
  }
  o->final = st;
  snprintf(o->err, sizeof o->err, "%s", st == PT_HTTP_ERROR ? pt_http_error(r) : "");
  pt_http_free(r);
  pt_buf_free(&body);
  pt_pool_close(pool);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  static const size_t limits[4] = {16, 1000, 65536, 0};
  size_t max_body = limits[data[1] & 3];
  if (!max_body) max_body = (size_t)64 << 20;
  rng = 0x9e3779b9u ^ data[0];
  data += 2;
  size -= 2;
  outcome a, b;
  run(data, size, 0, max_body, &a);
  run(data, size, 1, max_body, &b);
  /* http_parser may stop at a different byte for an error, but the
   * responses before it and the outcome must be the same */
  CHECK(a.n == b.n);
  for (int i = 0; i < a.n && i < MAXR; i++) {
    CHECK(a.status[i] == b.status[i]);
    CHECK(a.body_len[i] == b.body_len[i]);
    CHECK(a.body_sum[i] == b.body_sum[i]);
    CHECK(a.consumed[i] == b.consumed[i]);
  }
  CHECK(a.final == b.final);
  return 0;
}
