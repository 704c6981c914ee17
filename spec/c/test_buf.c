/* test_buf.c — the linked buffer and its pools, without Lua. */
#include <string.h>
#include <unistd.h>

#include "ctest.h"
#include "pt_buf.h"

static int released;
static intptr_t last_tag;
static void on_release(void *ctx, intptr_t tag) {
  (void)ctx;
  released++;
  last_tag = tag;
}

static void fill_pattern(char *p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++) p[i] = (char)((i * 31 + seed) & 0xff);
}

static void test_append_read(void) {
  pt_pool *p = pt_pool_new(0);
  pt_buf b;
  pt_buf_init(&b, p);
  char src[20000], dst[20000];
  fill_pattern(src, sizeof src, 7);
  for (size_t i = 0; i < sizeof src; i += 1000)
    CHECK(pt_buf_append(&b, src + i, 1000) == 0);
  CHECK(pt_buf_len(&b) == sizeof src);
  CHECK(pt_buf_nodes(&b) == 3); /* 8 KiB blocks */
  /* a peek that crosses nodes copies; one inside a node does not */
  const char *q = pt_buf_peek(&b, 10000);
  CHECK(q && memcmp(q, src, 10000) == 0);
  CHECK(b.scratch && q == b.scratch->data);
  q = pt_buf_peek(&b, 100);
  CHECK(q && q != b.scratch->data && memcmp(q, src, 100) == 0);
  CHECK(pt_buf_peek(&b, 20001) == NULL);
  CHECK(pt_buf_read(&b, 12345, dst) == 0 && memcmp(dst, src, 12345) == 0);
  CHECK(pt_buf_len(&b) == 20000 - 12345);
  CHECK(pt_buf_read(&b, 20000, dst) == -1); /* short: unchanged */
  CHECK(pt_buf_len(&b) == 20000 - 12345);
  CHECK(pt_buf_read(&b, 20000 - 12345, dst) == 0);
  CHECK(memcmp(dst, src + 12345, 20000 - 12345) == 0);
  CHECK(pt_buf_len(&b) == 0);
  pt_buf_free(&b);
  pt_pool_close(p);
}

static void test_ints_find(void) {
  pt_pool *p = pt_pool_new(0);
  pt_buf b;
  pt_buf_init(&b, p);
  b.block_size = 128;
  char filler[126];
  memset(filler, 'a', sizeof filler);
  pt_buf_append(&b, filler, sizeof filler);
  const unsigned char be[8] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08};
  pt_buf_append(&b, be, 8); /* crosses the 128-byte block edge */
  uint64_t v;
  CHECK(pt_buf_peek_be(&b, 126, 8, &v) == 0 && v == 0x0102030405060708ULL);
  CHECK(pt_buf_peek_be(&b, 126, 4, &v) == 0 && v == 0x01020304u);
  CHECK(pt_buf_peek_be(&b, 127, 2, &v) == 0 && v == 0x0203u);
  CHECK(pt_buf_peek_be(&b, 130, 8, &v) == -1);
  pt_buf_append(&b, "\r\nxyz", 5);
  CHECK(pt_buf_find(&b, 0, "\x07\x08\r\n", 4) == 132);
  CHECK(pt_buf_find(&b, 0, "\r\n", 2) == 134);
  CHECK(pt_buf_find(&b, 135, "\r\n", 2) == -1);
  CHECK(pt_buf_find(&b, 0, "aa\x01", 3) == 124);
  CHECK(pt_buf_find(&b, 0, "xyzw", 4) == -1);
  CHECK(pt_buf_find(&b, 0, "", 0) == 0);
  pt_buf_free(&b);
  pt_pool_close(p);
}

static void test_link_release(void) {
  pt_pool *p = pt_pool_new(0);
  pt_buf b, s;
  pt_buf_init(&b, p);
  pt_buf_init(&s, p);
  static char ext[100000];
  fill_pattern(ext, sizeof ext, 3);
  released = 0;
  pt_buf_append(&b, "hdr", 3);
  CHECK(pt_buf_link(&b, ext, sizeof ext, on_release, NULL, 42) == 0);
  pt_buf_append(&b, "tail", 4);
  CHECK(pt_buf_len(&b) == 3 + sizeof ext + 4);
  pt_pool_stats st;
  pt_pool_stats_get(p, &st);
  CHECK(st.ext_blocks == 1 && st.ext_bytes == sizeof ext);
  /* a slice shares the external block: consuming b does not release it */
  CHECK(pt_buf_skip(&b, 3) == 0);
  CHECK(pt_buf_slice(&b, 50000, &s) == 0);
  CHECK(pt_buf_skip(&b, 50000) == 0);
  CHECK(released == 0);
  char tmp[8];
  CHECK(pt_buf_read(&s, 8, tmp) == 0 && memcmp(tmp, ext, 8) == 0);
  pt_buf_clear(&s);
  CHECK(released == 1 && last_tag == 42);
  pt_pool_stats_get(p, &st);
  CHECK(st.ext_blocks == 0);
  CHECK(pt_buf_read(&b, 4, tmp) == 0 && memcmp(tmp, "tail", 4) == 0);
  CHECK(pt_buf_link(&b, ext, 0, on_release, NULL, 1) == 0 && released == 2);
  pt_buf_free(&b);
  pt_buf_free(&s);
  pt_pool_close(p);
}

static void test_reserve_commit(void) {
  pt_pool *p = pt_pool_new(0);
  pt_buf b;
  pt_buf_init(&b, p);
  char *w = pt_buf_reserve(&b, 100);
  CHECK(w != NULL);
  memcpy(w, "0123456789", 10);
  CHECK(pt_buf_commit(&b, 10) == 0 && pt_buf_len(&b) == 10);
  CHECK(pt_buf_commit(&b, 1) == -1); /* no reservation open */
  w = pt_buf_reserve(&b, 20000);      /* bigger than the tail's room */
  CHECK(w != NULL);
  memset(w, 'z', 20000);
  CHECK(pt_buf_commit(&b, 20001) == -1);
  CHECK(pt_buf_commit(&b, 20000) == 0 && pt_buf_len(&b) == 20010);
  char out[16];
  CHECK(pt_buf_copy(&b, 5, 10, out) == 0 && memcmp(out, "56789zzzzz", 10) == 0);
  /* a write cancels an open reservation */
  w = pt_buf_reserve(&b, 50);
  pt_buf_append(&b, "!", 1);
  CHECK(pt_buf_commit(&b, 1) == -1 && pt_buf_len(&b) == 20011);
  pt_buf_free(&b);
  pt_pool_close(p);
}

static void test_move_slice(void) {
  pt_pool *p = pt_pool_new(0), *q = pt_pool_new(0);
  pt_buf a, b, s;
  pt_buf_init(&a, p);
  pt_buf_init(&b, q); /* another pool: blocks go home on release */
  pt_buf_init(&s, p);
  char src[30000], dst[30000];
  fill_pattern(src, sizeof src, 9);
  pt_buf_append(&a, src, 10000);
  pt_buf_append(&b, src + 10000, 20000);
  pt_buf_move(&a, &b);
  CHECK(pt_buf_len(&a) == 30000 && pt_buf_len(&b) == 0);
  CHECK(pt_buf_slice(&a, 15000, &s) == 0);
  CHECK(pt_buf_len(&a) == 15000 && pt_buf_len(&s) == 15000);
  CHECK(pt_buf_read(&s, 15000, dst) == 0 && memcmp(dst, src, 15000) == 0);
  CHECK(pt_buf_read(&a, 15000, dst) == 0 &&
        memcmp(dst, src + 15000, 15000) == 0);
  CHECK(pt_buf_slice(&a, 1, &s) == -1);
  /* a slice ending at the fill mark may append; the source may not clobber */
  pt_buf_append(&a, "abcdef", 6);
  CHECK(pt_buf_slice(&a, 6, &s) == 0);
  pt_buf_append(&s, "XY", 2);
  pt_buf_append(&a, "QQ", 2);
  CHECK(pt_buf_read(&s, 8, dst) == 0 && memcmp(dst, "abcdefXY", 8) == 0);
  CHECK(pt_buf_read(&a, 2, dst) == 0 && memcmp(dst, "QQ", 2) == 0);
  pt_buf_free(&a);
  pt_buf_free(&b);
  pt_buf_free(&s);
  pt_pool_stats st;
  pt_pool_stats_get(q, &st);
  CHECK(st.bytes_in_use == 0);
  pt_pool_close(p);
  pt_pool_close(q);
}

static void test_iov(void) {
  pt_pool *p = pt_pool_new(0);
  pt_buf b, r;
  pt_buf_init(&b, p);
  pt_buf_init(&r, p);
  int fds[2];
  CHECK(pipe(fds) == 0);
  char src[40000], dst[40000];
  fill_pattern(src, sizeof src, 11);
  static char ext[5000];
  fill_pattern(ext, sizeof ext, 12);
  for (int i = 0; i < 20; i++) pt_buf_append(&b, src + i * 1000, 1000);
  pt_buf_link(&b, ext, sizeof ext, NULL, NULL, 0);
  for (int i = 20; i < 30; i++) pt_buf_append(&b, src + i * 1000, 1000);
  struct iovec iov[16];
  int k = pt_buf_iov(&b, iov, 16, SIZE_MAX);
  CHECK((size_t)k == pt_buf_nodes(&b) && k >= 5);
  ssize_t w = writev(fds[1], iov, k);
  CHECK(w == 35000);
  pt_buf_skip(&b, (size_t)w);
  CHECK(pt_buf_iov(&b, iov, 16, SIZE_MAX) == 0);
  CHECK(pt_buf_iov(&b, iov, 1, 100) == 0);
  /* read it back through reserved iovecs */
  size_t got = 0;
  while (got < 35000) {
    int n = pt_buf_reserve_iov(&r, 16384, iov, 16);
    CHECK(n >= 1);
    ssize_t rd = readv(fds[0], iov, n);
    CHECK(rd > 0);
    CHECK(pt_buf_commit_iov(&r, (size_t)rd) == 0);
    got += (size_t)rd;
  }
  CHECK(pt_buf_len(&r) == 35000);
  CHECK(pt_buf_read(&r, 20000, dst) == 0 && memcmp(dst, src, 20000) == 0);
  CHECK(pt_buf_read(&r, 5000, dst) == 0 && memcmp(dst, ext, 5000) == 0);
  CHECK(pt_buf_read(&r, 10000, dst) == 0 &&
        memcmp(dst, src + 20000, 10000) == 0);
  /* iovecs capped by bytes */
  for (int i = 0; i < 30; i++) pt_buf_append(&b, src + i * 1000, 1000);
  k = pt_buf_iov(&b, iov, 16, 9000);
  size_t tot = 0;
  for (int i = 0; i < k; i++) tot += iov[i].iov_len;
  CHECK(tot == 9000 && k == 2);
  close(fds[0]);
  close(fds[1]);
  pt_buf_free(&b);
  pt_buf_free(&r);
  pt_pool_close(p);
}

static void test_pool_steady(void) {
  pt_pool *p = pt_pool_new(0);
  pt_buf b;
  pt_buf_init(&b, p);
  char chunk[1000];
  fill_pattern(chunk, sizeof chunk, 1);
  pt_pool_stats st;
  uint64_t misses = 0;
  for (int round = 0; round < 50; round++) {
    for (int i = 0; i < 100; i++) pt_buf_append(&b, chunk, sizeof chunk);
    pt_buf_skip(&b, pt_buf_len(&b) - 500); /* keep a tail so blocks cycle */
    if (round == 10) {
      pt_pool_stats_get(p, &st);
      misses = st.misses;
    }
  }
  pt_pool_stats_get(p, &st);
  CHECK(misses > 0 && st.misses == misses);
  if (st.misses != misses)
    fprintf(stderr, "misses %llu -> %llu\n", (unsigned long long)misses,
            (unsigned long long)st.misses);
  CHECK(st.hits > 100);
  /* idle cap: excess goes back to the system */
  pt_buf_clear(&b);
  pt_pool_set_idle_cap(p, 16384);
  pt_pool_stats_get(p, &st);
  CHECK(st.bytes_idle <= 16384);
  /* blocks above the largest class bypass the pool */
  static char big[5 << 20];
  pt_buf_append(&b, big, sizeof big);
  pt_pool_stats_get(p, &st);
  CHECK(st.huge_blocks == 1 && st.huge_bytes == sizeof big);
  pt_buf_clear(&b);
  pt_pool_stats_get(p, &st);
  CHECK(st.huge_blocks == 0 && st.bytes_in_use == 0);
  /* the owner may close the pool while a buffer still uses it */
  pt_buf_append(&b, chunk, sizeof chunk);
  pt_pool_close(p);
  CHECK(pt_buf_len(&b) == 1000);
  pt_buf_free(&b);
}

/* Random operations checked against a flat model. */
static void test_random_model(void) {
  pt_pool *p = pt_pool_new(0);
  pt_buf b, other;
  pt_buf_init(&b, p);
  pt_buf_init(&other, p);
  b.block_size = 256;
  static char model[1 << 20];
  size_t mlen = 0;
  static char ext[1 << 16];
  fill_pattern(ext, sizeof ext, 5);
  unsigned long long x = 88172645463325252ULL;
#define RND() (x ^= x << 13, x ^= x >> 7, x ^= x << 17, x)
  char tmp[70000];
  int bad = 0;
  for (int it = 0; it < 20000 && !bad; it++) {
    int op = (int)(RND() % 8);
    size_t n = (size_t)(RND() % 3000);
    switch (op) {
      case 0: /* append */
        if (mlen + n > sizeof model) break;
        fill_pattern(tmp, n, (unsigned)it);
        pt_buf_append(&b, tmp, n);
        memcpy(model + mlen, tmp, n);
        mlen += n;
        break;
      case 1: { /* link */
        size_t off = (size_t)(RND() % (sizeof ext - n));
        if (mlen + n > sizeof model) break;
        pt_buf_link(&b, ext + off, n, NULL, NULL, 0);
        memcpy(model + mlen, ext + off, n);
        mlen += n;
        break;
      }
      case 2: /* read */
        if (n > mlen) n = mlen;
        if (pt_buf_read(&b, n, tmp) != 0 || memcmp(tmp, model, n) != 0) bad = 1;
        memmove(model, model + n, mlen - n);
        mlen -= n;
        break;
      case 3: { /* peek */
        if (n > mlen) n = mlen;
        const char *q = pt_buf_peek(&b, n);
        if (!q || memcmp(q, model, n) != 0) bad = 2;
        break;
      }
      case 4: /* slice then move back to the front? no: slice and compare */
        if (n > mlen) n = mlen;
        if (pt_buf_slice(&b, n, &other) != 0) bad = 3;
        if (pt_buf_read(&other, n, tmp) != 0 || memcmp(tmp, model, n)) bad = 4;
        memmove(model, model + n, mlen - n);
        mlen -= n;
        break;
      case 5: { /* reserve + partial commit */
        char *w = pt_buf_reserve(&b, n + 1);
        size_t k = n / 2;
        if (mlen + k > sizeof model) {
          pt_buf_commit(&b, 0);
          break;
        }
        fill_pattern(w, k, (unsigned)it * 7);
        pt_buf_commit(&b, k);
        memcpy(model + mlen, w, k);
        mlen += k;
        break;
      }
      case 6: /* skip */
        if (n > mlen) n = mlen;
        pt_buf_skip(&b, n);
        memmove(model, model + n, mlen - n);
        mlen -= n;
        break;
      case 7: { /* find a 3-byte needle taken from the model */
        if (mlen < 3) break;
        size_t at = (size_t)(RND() % (mlen - 2));
        ptrdiff_t f = pt_buf_find(&b, 0, model + at, 3);
        ptrdiff_t want = -1;
        for (size_t i = 0; i + 3 <= mlen; i++)
          if (memcmp(model + i, model + at, 3) == 0) {
            want = (ptrdiff_t)i;
            break;
          }
        if (f != want) bad = 5;
        break;
      }
    }
    if (pt_buf_len(&b) != mlen) bad = 6;
  }
  CHECK(bad == 0);
  if (bad) fprintf(stderr, "random model: failure kind %d\n", bad);
  pt_buf_free(&b);
  pt_buf_free(&other);
  pt_pool_stats st;
  pt_pool_stats_get(p, &st);
  CHECK(st.bytes_in_use == 0 && st.ext_blocks == 0);
  pt_pool_close(p);
}

/* Lean buffers (connection input and output) keep what their bytes need:
 * small appends take small classes, a mostly empty read block can be
 * traded for a small one, emptied blocks and peek copies go back at once.
 * An ordinary buffer keeps its emptied tail block for reuse. */
static void test_lean(void) {
  pt_pool *p = pt_pool_new(0);
  pt_pool_stats st;
  pt_buf b;
  pt_buf_init(&b, p);
  pt_buf_set_lean(&b, PT_LEAN_EMPTY | PT_LEAN_FIT);
  CHECK(pt_buf_append(&b, "abcd", 4) == 0);
  pt_pool_stats_get(p, &st);
  CHECK(st.cls[0].in_use == 1 && st.bytes_in_use == 128);
  /* growth by doubling what the buffer holds, up to block_size */
  char big[20000];
  fill_pattern(big, sizeof big, 5);
  CHECK(pt_buf_append(&b, big, 300) == 0); /* 124 fit, 176 more: 512 */
  pt_pool_stats_get(p, &st);
  CHECK(st.cls[0].in_use == 1 && st.cls[2].in_use == 1);
  CHECK(pt_buf_append(&b, big, 20000) == 0); /* the rest in one block */
  pt_pool_stats_get(p, &st);
  CHECK(st.cls[8].in_use == 1); /* 32 KiB */
  pt_buf_clear(&b);
  pt_pool_stats_get(p, &st);
  CHECK(st.bytes_in_use == 0);
  /* a read of 4 bytes into an 8 KiB reservation: shrunk, 128 bytes */
  struct iovec iov[4];
  int k = pt_buf_reserve_iov(&b, 8192, iov, 4);
  CHECK(k == 1 && iov[0].iov_len == 8192);
  memcpy(iov[0].iov_base, "wxyz", 4);
  CHECK(pt_buf_commit_iov(&b, 4) == 0);
  pt_pool_stats_get(p, &st);
  CHECK(st.bytes_in_use == 8192 && pt_buf_wasteful(&b));
  CHECK(pt_buf_settle(&b) == 4);
  pt_pool_stats_get(p, &st);
  CHECK(st.bytes_in_use == 128 && st.cls[6].idle == 1);
  CHECK(!pt_buf_wasteful(&b) && pt_buf_len(&b) == 4);
  /* the next read fills the small block's room first, then a fresh one
   * that is kept: 3000 bytes are more than a quarter of it */
  k = pt_buf_reserve_iov(&b, 8192, iov, 4);
  CHECK(k == 2 && iov[0].iov_len == 124);
  memcpy(iov[0].iov_base, big, 124);
  memcpy(iov[1].iov_base, big + 124, 3000 - 124);
  CHECK(pt_buf_commit_iov(&b, 3000) == 0);
  CHECK(!pt_buf_wasteful(&b) && pt_buf_settle(&b) == 0);
  pt_pool_stats_get(p, &st);
  CHECK(st.bytes_in_use == 128 + 8192);
  char out[3004];
  CHECK(pt_buf_len(&b) == 3004);
  /* a peek across the two nodes copies into a pool block ... */
  const char *q = pt_buf_peek(&b, 3004);
  CHECK(q && memcmp(q, "wxyz", 4) == 0 && memcmp(q + 4, big, 3000) == 0);
  pt_pool_stats_get(p, &st);
  CHECK(st.bytes_in_use == 128 + 8192 + 4096);
  /* ... which goes back with the emptied blocks once read */
  CHECK(pt_buf_read(&b, 3004, out) == 0 && memcmp(out + 4, big, 3000) == 0);
  pt_pool_stats_get(p, &st);
  CHECK(st.bytes_in_use == 0 && b.head == NULL);
  /* linked bytes move out of the external memory when settled */
  static char ext[20000];
  fill_pattern(ext, sizeof ext, 9);
  released = 0;
  CHECK(pt_buf_append(&b, "hd", 2) == 0);
  CHECK(pt_buf_link(&b, ext, 12000, on_release, NULL, 77) == 0);
  CHECK(pt_buf_wasteful(&b));
  CHECK(pt_buf_settle(&b) == 12000);
  CHECK(released == 1 && last_tag == 77);
  pt_pool_stats_get(p, &st);
  CHECK(st.ext_blocks == 0 && st.cls[7].in_use == 1); /* 16 KiB */
  const char *all = pt_buf_peek(&b, 12002);
  CHECK(all && memcmp(all, "hd", 2) == 0 && memcmp(all + 2, ext, 12000) == 0);
  pt_buf_clear(&b);
  /* an ordinary buffer rewinds its emptied tail and keeps it */
  pt_buf o;
  pt_buf_init(&o, p);
  CHECK(pt_buf_append(&o, "abcd", 4) == 0);
  CHECK(pt_buf_read(&o, 4, out) == 0);
  pt_pool_stats_get(p, &st);
  CHECK(st.cls[6].in_use == 1 && st.bytes_in_use == 8192);
  pt_buf_free(&o);
  pt_buf_free(&b);
  pt_pool_close(p);
}

int main(void) {
  TEST(test_append_read);
  TEST(test_ints_find);
  TEST(test_link_release);
  TEST(test_reserve_commit);
  TEST(test_move_slice);
  TEST(test_iov);
  TEST(test_pool_steady);
  TEST(test_random_model);
  TEST(test_lean);
  return ct_report();
}
