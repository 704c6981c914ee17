/* test_http.c — HTTP/1.1 responses through pt_http (http_parser), and the
 * ring hash and the chash ring's lookup, without Lua. */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ctest.h"
#include "pt_hash.h"
#include "pt_http.h"

static void test_hash(void) {
  /* MurmurHash3 x86_32 reference values */
  CHECK(pt_hash32("", 0, 0) == 0);
  CHECK(pt_hash32("", 0, 1) == 0x514e28b7u);
  CHECK(pt_hash32("hello", 5, 0) == 0x248bfa47u);
  CHECK(pt_hash32("Hello, world!", 13, 1234) == 0xfaf6cdb3u);
  CHECK(pt_hash32("abc", 3, 0) == 0xb3dd93fau);
}

/* pt_int_text: decimal digits, the extremes included */
static void test_int_text(void) {
  char t[24];
  size_t n = pt_int_text(t, 0);
  CHECK(n == 1 && memcmp(t, "0", 1) == 0);
  n = pt_int_text(t, -42);
  CHECK(n == 3 && memcmp(t, "-42", 3) == 0);
  n = pt_int_text(t, INT64_MAX);
  CHECK(n == 19 && memcmp(t, "9223372036854775807", 19) == 0);
  n = pt_int_text(t, INT64_MIN);
  CHECK(n == 20 && memcmp(t, "-9223372036854775808", 20) == 0);
}

/* pt_ring_find against a linear search, on rings of random points with
 * ties and points at both ends of the space; unsorted points refused */
static void test_ring(void) {
  static const uint32_t sizes[] = {0, 1, 2, 7, 120, 5000};
  uint32_t seed = 12345;
  for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
    uint32_t n = sizes[si];
    uint32_t *pts = malloc((n ? n : 1) * sizeof *pts);
    for (uint32_t i = 0; i < n; i++) {
      seed = seed * 1103515245u + 12345u;
      pts[i] = seed ^ (seed << 13);
    }
    if (n > 3) pts[1] = pts[0], pts[2] = 0, pts[3] = UINT32_MAX;
    /* insertion sort (small enough) */
    for (uint32_t i = 1; i < n; i++)
      for (uint32_t j = i; j > 0 && pts[j - 1] > pts[j]; j--) {
        uint32_t x = pts[j];
        pts[j] = pts[j - 1];
        pts[j - 1] = x;
      }
    pt_ring *r = malloc(pt_ring_size(n));
    CHECK(pt_ring_init(r, pts, n) == 0);
    for (int k = 0; k < 20000; k++) {
      seed = seed * 1103515245u + 12345u;
      uint32_t h = k < 4 ? (uint32_t[]){0, 1, UINT32_MAX, UINT32_MAX - 1}[k] : seed ^ (seed >> 7);
      if (n && k >= 4 && k < 4 + (int)n) h = pts[k - 4]; /* exactly on a point */
      uint32_t want = 0;
      for (uint32_t i = 0; i < n; i++)
        if (pts[i] >= h) { want = i; break; }
      if (pt_ring_find(r, h) != want) {
        CHECK(pt_ring_find(r, h) == want);
        break;
      }
    }
    free(r);
    free(pts);
  }
  uint32_t bad[] = {9, 5};
  pt_ring *r = malloc(pt_ring_size(2));
  CHECK(pt_ring_init(r, bad, 2) == -1);
  free(r);
}

#if defined(PT_HAVE_HTTP_PARSER) && PT_HAVE_HTTP_PARSER

static pt_pool *pool;

static int body_is(pt_buf *b, const char *s) {
  size_t n = strlen(s);
  if (pt_buf_len(b) != n) return 0;
  const char *p = pt_buf_peek(b, n);
  return n == 0 || (p && memcmp(p, s, n) == 0);
}

static const char *header(pt_http_resp *r, const char *want) {
  static char out[256];
  for (size_t i = 0; i < pt_http_nheaders(r); i++) {
    const char *n, *v;
    size_t nl, vl;
    pt_http_header(r, i, &n, &nl, &v, &vl);
    if (nl == strlen(want) && strncasecmp(n, want, nl) == 0 && vl < sizeof out) {
      memcpy(out, v, vl);
      out[vl] = '\0';
      return out;
    }
  }
  return NULL;
}

/* Feed s in pieces of `step` bytes; returns the final status and the bytes
 * consumed in *used. */
static int feed_steps(pt_http_resp *r, const char *s, size_t n, size_t step,
                      pt_buf *body, size_t *used) {
  size_t off = 0;
  int st = PT_HTTP_MORE;
  while (off < n && st == PT_HTTP_MORE) {
    size_t k = n - off < step ? n - off : step, u;
    st = pt_http_feed(r, s + off, k, body, &u);
    off += u;
  }
  *used = off;
  return st;
}

static const char RESP_CL[] =
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    "X-Split: a\r\nContent-Length: 13\r\n\r\n{\"health\":1}\n";

static void test_content_length(void) {
  size_t steps[] = {sizeof RESP_CL, 1, 3, 7};
  for (size_t k = 0; k < sizeof steps / sizeof *steps; k++) {
    pt_http_resp *r = pt_http_new(0, 0);
    pt_buf body;
    pt_buf_init(&body, pool);
    size_t used;
    int st = feed_steps(r, RESP_CL, sizeof RESP_CL - 1, steps[k], &body, &used);
    CHECK(st == PT_HTTP_DONE);
    CHECK(used == sizeof RESP_CL - 1);
    CHECK(pt_http_status(r) == 200);
    CHECK(pt_http_keep_alive(r) == 1);
    CHECK(body_is(&body, "{\"health\":1}\n"));
    const char *ct = header(r, "content-type");
    CHECK(ct && strcmp(ct, "application/json") == 0);
    const char *xs = header(r, "x-split");
    CHECK(xs && strcmp(xs, "a") == 0);
    pt_buf_free(&body);
    pt_http_free(r);
  }
}

static const char RESP_CHUNKED[] =
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    "6\r\n{\"a\":1\r\n2\r\n}\n\r\n"
    "9\r\n{\"b\":22}\n\r\n"
    "0\r\n\r\n";

static void test_chunked(void) {
  for (size_t step = 1; step <= sizeof RESP_CHUNKED; step += 5) {
    pt_http_resp *r = pt_http_new(0, 0);
    pt_buf body;
    pt_buf_init(&body, pool);
    size_t used;
    int st = feed_steps(r, RESP_CHUNKED, sizeof RESP_CHUNKED - 1, step, &body, &used);
    CHECK(st == PT_HTTP_DONE);
    CHECK(used == sizeof RESP_CHUNKED - 1);
    CHECK(body_is(&body, "{\"a\":1}\n{\"b\":22}\n"));
    pt_buf_free(&body);
    pt_http_free(r);
  }
}

/* Two responses in one read: the first stops at its last byte. */
static void test_pipelined(void) {
  char two[512];
  size_t n1 = sizeof RESP_CL - 1, n2 = sizeof RESP_CHUNKED - 1;
  memcpy(two, RESP_CL, n1);
  memcpy(two + n1, RESP_CHUNKED, n2);
  pt_http_resp *r = pt_http_new(0, 0);
  pt_buf body;
  pt_buf_init(&body, pool);
  size_t used;
  CHECK(pt_http_feed(r, two, n1 + n2, &body, &used) == PT_HTTP_DONE);
  CHECK(used == n1);
  CHECK(body_is(&body, "{\"health\":1}\n"));
  /* feeding again without a reset is misuse */
  size_t u2;
  CHECK(pt_http_feed(r, two + used, n2, &body, &u2) == PT_HTTP_ERROR);
  pt_http_reset(r);
  pt_buf_clear(&body);
  CHECK(pt_http_status(r) == 0 && pt_http_nheaders(r) == 0);
  CHECK(pt_http_feed(r, two + used, n2, &body, &u2) == PT_HTTP_DONE);
  CHECK(u2 == n2);
  CHECK(body_is(&body, "{\"a\":1}\n{\"b\":22}\n"));
  pt_buf_free(&body);
  pt_http_free(r);
}

/* A body that ends with the connection. */
static void test_eof_delimited(void) {
  static const char s[] = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end";
  pt_http_resp *r = pt_http_new(0, 0);
  pt_buf body;
  pt_buf_init(&body, pool);
  size_t used;
  CHECK(pt_http_feed(r, s, sizeof s - 1, &body, &used) == PT_HTTP_MORE);
  CHECK(pt_http_eof(r, &body) == PT_HTTP_DONE);
  CHECK(pt_http_keep_alive(r) == 0);
  CHECK(body_is(&body, "until the end"));
  pt_buf_free(&body);
  pt_http_free(r);
}

static int fails_with(const char *s, size_t n, size_t max_header, size_t max_body,
                      const char *want) {
  pt_http_resp *r = pt_http_new(max_header, max_body);
  pt_buf body;
  pt_buf_init(&body, pool);
  size_t used;
  int st = feed_steps(r, s, n, 5, &body, &used);
  int ok = st == PT_HTTP_ERROR && strstr(pt_http_error(r), want) != NULL;
  if (!ok) fprintf(stderr, "  got %d '%s', wanted '%s'\n", st, pt_http_error(r), want);
  pt_buf_free(&body);
  pt_http_free(r);
  return ok;
}

static void test_hostile(void) {
#define S(x) x, sizeof x - 1
  CHECK(fails_with(S("SSH-2.0-OpenSSH\r\n\r\n"), 0, 0, "malformed response"));
  CHECK(fails_with(S("HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n"), 0, 1000,
                   "Content-Length 99999999999 over the body limit"));
  {
    /* chunks adding up past max_body */
    char s[4096];
    int n = snprintf(s, sizeof s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 10; i++) n += snprintf(s + n, sizeof s - (size_t)n, "8\r\n01234567\r\n");
    CHECK(fails_with(s, (size_t)n, 0, 40, "body over 40 bytes buffered"));
  }
  CHECK(fails_with(S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "ffffffffffffffffff\r\n"), 0, 0, "malformed response"));
  {
    char s[8192];
    int n = snprintf(s, sizeof s, "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < 40; i++) n += snprintf(s + n, sizeof s - (size_t)n, "X-Long-%02d: %060d\r\n", i, i);
    CHECK(fails_with(s, (size_t)n, 1024, 0, "header section over 1024 bytes"));
    n = snprintf(s, sizeof s, "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < 70; i++) n += snprintf(s + n, sizeof s - (size_t)n, "X%d: v\r\n", i);
    CHECK(fails_with(s, (size_t)n, 0, 0, "more than 64 header fields"));
  }
  /* cut short */
  pt_http_resp *r = pt_http_new(0, 0);
  pt_buf body;
  pt_buf_init(&body, pool);
  size_t used;
  CHECK(pt_http_eof(r, &body) == PT_HTTP_ERROR);
  CHECK(strstr(pt_http_error(r), "before a response") != NULL);
  pt_http_reset(r);
  CHECK(pt_http_feed(r, RESP_CL, sizeof RESP_CL - 5, &body, &used) == PT_HTTP_MORE);
  CHECK(pt_http_status(r) == 200);
  CHECK(pt_http_eof(r, &body) == PT_HTTP_ERROR);
  CHECK(strstr(pt_http_error(r), "middle of a response") != NULL);
  pt_buf_free(&body);
  pt_http_free(r);
#undef S
}

/* Every prefix of a response placed at the very end of a page followed by
 * an unreadable page: any read past the input faults. */
static void test_page_end(void) {
  long pg = sysconf(_SC_PAGESIZE);
  char *m = mmap(NULL, (size_t)pg * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(m != MAP_FAILED);
  if (m == MAP_FAILED) return;
  CHECK(mprotect(m + pg, (size_t)pg, PROT_NONE) == 0);
  const char *srcs[] = {RESP_CL, RESP_CHUNKED};
  for (int k = 0; k < 2; k++) {
    size_t n = strlen(srcs[k]);
    for (size_t len = 1; len <= n; len++) {
      char *at = m + pg - len;
      memcpy(at, srcs[k], len);
      pt_http_resp *r = pt_http_new(0, 0);
      pt_buf body;
      pt_buf_init(&body, pool);
      size_t used;
      int st = pt_http_feed(r, at, len, &body, &used);
      CHECK(st == (len == n ? PT_HTTP_DONE : PT_HTTP_MORE));
      pt_buf_free(&body);
      pt_http_free(r);
    }
  }
  munmap(m, (size_t)pg * 2);
}

int main(void) {
  pool = pt_pool_new(0);
  TEST(test_hash);
  TEST(test_int_text);
  TEST(test_ring);
  CHECK(pt_http_available() == 1);
  TEST(test_content_length);
  TEST(test_chunked);
  TEST(test_pipelined);
  TEST(test_eof_delimited);
  TEST(test_hostile);
  TEST(test_page_end);
  pt_pool_close(pool);
  return ct_report();
}

#else

int main(void) {
  TEST(test_hash);
  TEST(test_int_text);
  TEST(test_ring);
  CHECK(pt_http_available() == 0);
  errno = 0;
  CHECK(pt_http_new(0, 0) == NULL && errno == ENOSYS);
  return ct_report();
}

#endif
