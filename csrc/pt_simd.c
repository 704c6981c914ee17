/*
 * pt_simd.c — byte-swapping copies for numeric lists: an AVX2 kernel and
 * its scalar twin, chosen at run time (CPU detection; PETREL_SCALAR=1 in
 * the environment forces the scalar path).
 */
#include <stdlib.h>
#include <string.h>

#include "pt_plan.h"
#include "pt_thrift.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PT_HAVE_X86 1
#else
#define PT_HAVE_X86 0
#endif

static void bswap_scalar(void *dst, const void *src, size_t n, int w) {
  unsigned char *d = dst;
  const unsigned char *s = src;
  switch (w) {
    case 2:
      for (size_t i = 0; i < n; i++) {
        uint16_t v;
        memcpy(&v, s + 2 * i, 2);
        v = __builtin_bswap16(v);
        memcpy(d + 2 * i, &v, 2);
      }
      break;
    case 4:
      for (size_t i = 0; i < n; i++) {
        uint32_t v;
        memcpy(&v, s + 4 * i, 4);
        v = __builtin_bswap32(v);
        memcpy(d + 4 * i, &v, 4);
      }
      break;
    default:
      for (size_t i = 0; i < n; i++) {
        uint64_t v;
        memcpy(&v, s + 8 * i, 8);
        v = __builtin_bswap64(v);
        memcpy(d + 8 * i, &v, 8);
      }
      break;
  }
}

#if PT_HAVE_X86
__attribute__((target("avx2"))) static void bswap_avx2(void *dst,
                                                        const void *src,
                                                        size_t n, int w) {
  unsigned char *d = dst;
  const unsigned char *s = src;
  size_t bytes = n * (size_t)w, i = 0;
  __m256i mask;
  if (w == 2)
    mask = _mm256_setr_epi8(1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15,
                            14, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12,
                            15, 14);
  else if (w == 4)
    mask = _mm256_setr_epi8(3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13,
                            12, 3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14,
                            13, 12);
  else
    mask = _mm256_setr_epi8(7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9,
                            8, 7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10,
                            9, 8);
  for (; i + 128 <= bytes; i += 128) {
    __m256i a = _mm256_loadu_si256((const __m256i *)(s + i));
    __m256i b = _mm256_loadu_si256((const __m256i *)(s + i + 32));
    __m256i c = _mm256_loadu_si256((const __m256i *)(s + i + 64));
    __m256i e = _mm256_loadu_si256((const __m256i *)(s + i + 96));
    _mm256_storeu_si256((__m256i *)(d + i), _mm256_shuffle_epi8(a, mask));
    _mm256_storeu_si256((__m256i *)(d + i + 32), _mm256_shuffle_epi8(b, mask));
    _mm256_storeu_si256((__m256i *)(d + i + 64), _mm256_shuffle_epi8(c, mask));
    _mm256_storeu_si256((__m256i *)(d + i + 96), _mm256_shuffle_epi8(e, mask));
  }
  for (; i + 32 <= bytes; i += 32) {
    __m256i a = _mm256_loadu_si256((const __m256i *)(s + i));
    _mm256_storeu_si256((__m256i *)(d + i), _mm256_shuffle_epi8(a, mask));
  }
  if (i < bytes) bswap_scalar(d + i, s + i, (bytes - i) / (size_t)w, w);
}
#endif

/* 0 unknown, 1 avx2, 2 scalar */
static int simd_mode;

static int detect(void) {
  const char *env = getenv("PETREL_SCALAR");
  if (env && *env && strcmp(env, "0") != 0) return 2;
#if PT_HAVE_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2")) return 1;
#endif
  return 2;
}

int pt_simd_active(void) {
  if (!simd_mode) simd_mode = detect();
  return simd_mode == 1;
}

void pt_simd_force_scalar(int on) { simd_mode = on ? 2 : detect(); }

void pt_bswap_copy(void *dst, const void *src, size_t n, int w) {
#if PT_HAVE_X86
  if (pt_simd_active() && n >= 8) {
    bswap_avx2(dst, src, n, w);
    return;
  }
#endif
  bswap_scalar(dst, src, n, w);
}

/* ---- Compact numeric lists: zigzag varints --------------------------- */

static inline uint64_t zz_of(const unsigned char *s, size_t i, int w) {
  if (w == 8) {
    int64_t v;
    memcpy(&v, s + 8 * i, 8);
    return pt_zz64(v);
  }
  if (w == 4) {
    int32_t v;
    memcpy(&v, s + 4 * i, 4);
    return pt_zz32(v);
  }
  int16_t v;
  memcpy(&v, s + 2 * i, 2);
  return pt_zz32(v);
}

static size_t zz_encode_scalar(unsigned char *dst, const void *src, size_t n,
                               int w) {
  unsigned char *d = dst;
  for (size_t i = 0; i < n; i++) d = pt_wr_varint64(d, zz_of(src, i, w));
  return (size_t)(d - dst);
}

/* Store decoded value u (zigzag) of element i at dst; 0 if out of range. */
static inline int zz_store(void *dst, size_t i, uint64_t u, int w) {
  unsigned char *d = dst;
  if (w == 8) {
    int64_t v = pt_unzz64(u);
    memcpy(d + 8 * i, &v, 8);
    return 1;
  }
  if (u > 0xffffffffu) return 0;
  int32_t v = pt_unzz32((uint32_t)u);
  if (w == 4) {
    memcpy(d + 4 * i, &v, 4);
    return 1;
  }
  if (v < INT16_MIN || v > INT16_MAX) return 0;
  int16_t h = (int16_t)v;
  memcpy(d + 2 * i, &h, 2);
  return 1;
}

static size_t zz_decode_scalar(void *dst, const unsigned char *p,
                               size_t avail, size_t n, int w, size_t *bad) {
  const unsigned char *q = p, *end = p + avail;
  for (size_t i = 0; i < n; i++) {
    uint64_t u;
    int k;
    if (w == 8) {
      k = pt_rd_varint64(q, (size_t)(end - q), &u);
    } else {
      uint32_t u32 = 0;
      k = pt_rd_varint32(q, (size_t)(end - q), &u32);
      u = u32;
    }
    if (k < 0 || !zz_store(dst, i, u, w)) {
      *bad = i;
      return 0;
    }
    q += k;
  }
  return (size_t)(q - p);
}

#define gather7 pt_gather7

/* The value of the varint of len bytes (1..10) at s, which has 16
 * readable bytes; no branch on the length. *bad gets a bit when a 10-byte
 * varint goes past 64 bits. */
static inline uint64_t varint_at(const unsigned char *s, unsigned len,
                                 unsigned *bad) {
  uint64_t a;
  memcpy(&a, s, 8);
  unsigned l8 = len < 8 ? len : 8;
  uint64_t x = gather7(a & (~0ull >> (64 - 8 * l8)));
  uint64_t b8 = s[8], b9 = s[9];
  x |= len > 8 ? (b8 & 0x7f) << 56 : 0;
  x |= len > 9 ? b9 << 63 : 0;
  *bad |= (unsigned)(len > 9) & (unsigned)(b9 > 1);
  return x;
}

#if PT_HAVE_X86
/* 32 one-byte varints at s (all below 0x80): zigzag-decode into dst. */
__attribute__((target("avx2"))) static void zz_bytes_avx2(void *dst,
                                                          const unsigned char *s,
                                                          int w) {
  unsigned char *d = dst;
  for (int g = 0; g < 32; g += 16) {
    __m128i x = _mm_loadu_si128((const __m128i *)(s + g));
    if (w == 2) {
      __m256i v = _mm256_cvtepu8_epi16(x);
      __m256i neg = _mm256_sub_epi16(_mm256_setzero_si256(),
                                     _mm256_and_si256(v, _mm256_set1_epi16(1)));
      v = _mm256_xor_si256(_mm256_srli_epi16(v, 1), neg);
      _mm256_storeu_si256((__m256i *)(d + 2 * g), v);
    } else if (w == 4) {
      for (int h = 0; h < 16; h += 8) {
        __m256i v = _mm256_cvtepu8_epi32(
            _mm_loadl_epi64((const __m128i *)(s + g + h)));
        __m256i neg = _mm256_sub_epi32(
            _mm256_setzero_si256(), _mm256_and_si256(v, _mm256_set1_epi32(1)));
        v = _mm256_xor_si256(_mm256_srli_epi32(v, 1), neg);
        _mm256_storeu_si256((__m256i *)(d + 4 * (g + h)), v);
      }
    } else {
      for (int h = 0; h < 16; h += 4) {
        int32_t four;
        memcpy(&four, s + g + h, 4);
        __m256i v = _mm256_cvtepu8_epi64(_mm_cvtsi32_si128(four));
        __m256i neg = _mm256_sub_epi64(
            _mm256_setzero_si256(), _mm256_and_si256(v, _mm256_set1_epi64x(1)));
        v = _mm256_xor_si256(_mm256_srli_epi64(v, 1), neg);
        _mm256_storeu_si256((__m256i *)(d + 8 * (g + h)), v);
      }
    }
  }
}

/* Fast encode: the zigzag in scalar (a vector store read back lane by
 * lane stalls store forwarding), each varint through the branch-free
 * writer while there is room to spare: 10 bytes per i64 (in place, a write
 * never reaches a value not yet read: see pt_zz_encode); i32 and i16
 * values stop 8 early and finish with the byte writer. */
static size_t zz_encode_fast(unsigned char *dst, const void *src, size_t n,
                             int w) {
  const unsigned char *s = src;
  unsigned char *d = dst;
  size_t i = 0;
  if (w == 8) {
    for (; i < n; i++) {
      int64_t v;
      memcpy(&v, s + 8 * i, 8);
      d = pt_wr_varint64_fast(d, pt_zz64(v));
    }
  } else if (w == 4) {
    for (; i + 8 <= n; i++) {
      int32_t v;
      memcpy(&v, s + 4 * i, 4);
      d = pt_wr_varint64_fast(d, pt_zz32(v));
    }
  }
  for (; i < n; i++) d = pt_wr_varint64(d, zz_of(s, i, w));
  return (size_t)(d - dst);
}

__attribute__((target("avx2"))) static inline uint32_t stops_avx2(
    const unsigned char *q) {
  __m256i b = _mm256_loadu_si256((const __m256i *)q);
  return ~(uint32_t)_mm256_movemask_epi8(b);
}

/* AVX2 decode: the ends of the varints of 32 bytes at a time come from
 * one movemask (bytes below 0x80); each varint is then read branch-free
 * from its start and length (loads independent of each other), and a
 * block of 32 one-byte varints is widened and unzigzagged in vectors.
 * Specialized per width (w is a constant in each inlined copy). */
__attribute__((target("avx2"), always_inline)) static inline size_t zz_decode_blocks(
    void *dst, const unsigned char *p, size_t avail, size_t n, const int w,
    size_t *done) {
  const unsigned char *q = p, *end = p + avail;
  const unsigned maxlen = w == 8 ? 10 : 5;
  size_t i = 0;
  unsigned badbits = 0;
  unsigned char *d = dst;
  while (end - q >= 48) {
    uint32_t t = stops_avx2(q);
    unsigned cnt = (unsigned)__builtin_popcount(t);
    if (!cnt || cnt > n - i) break; /* none (malformed) or the list's end */
    if (t == 0xffffffffu) {
      zz_bytes_avx2(d + (size_t)w * i, q, w);
      q += 32;
      i += 32;
      continue;
    }
    const unsigned char *s = q;
    for (unsigned k = 0; k < cnt; k++) {
      unsigned e = (unsigned)__builtin_ctz(t);
      const unsigned char *nx = q + e + 1;
      unsigned len = (unsigned)(nx - s);
      badbits |= len > maxlen;
      uint64_t u = varint_at(s, len, &badbits);
      if (w == 8) {
        int64_t v = pt_unzz64(u);
        memcpy(d + 8 * i, &v, 8);
      } else if (w == 4) {
        badbits |= (unsigned)(u >> 32 != 0);
        int32_t v = pt_unzz32((uint32_t)u);
        memcpy(d + 4 * i, &v, 4);
      } else {
        int32_t v = pt_unzz32((uint32_t)u);
        badbits |= (unsigned)(u >> 32 != 0) | (unsigned)(v < INT16_MIN || v > INT16_MAX);
        int16_t h = (int16_t)v;
        memcpy(d + 2 * i, &h, 2);
      }
      s = nx;
      t &= t - 1;
      i++;
    }
    if (badbits) { /* somewhere in this block: the scalar reader says where */
      i -= cnt;
      break;
    }
    q = s;
  }
  *done = i;
  return (size_t)(q - p);
}

__attribute__((target("avx2"))) static size_t zz_decode_avx2(
    void *dst, const unsigned char *p, size_t avail, size_t n, int w,
    size_t *bad) {
  size_t i = 0, used;
  if (w == 8)
    used = zz_decode_blocks(dst, p, avail, n, 8, &i);
  else if (w == 4)
    used = zz_decode_blocks(dst, p, avail, n, 4, &i);
  else
    used = zz_decode_blocks(dst, p, avail, n, 2, &i);
  const unsigned char *q = p + used;
  if (i < n) { /* the last bytes (or a malformed varint): bounds checked */
    size_t b2 = 0;
    size_t k = zz_decode_scalar((unsigned char *)dst + (size_t)w * i, q,
                                avail - used, n - i, w, &b2);
    if (!k) {
      *bad = i + b2;
      return 0;
    }
    q += k;
  }
  return (size_t)(q - p);
}
#endif

size_t pt_zz_encode(unsigned char *dst, const void *src, size_t n, int w) {
#if PT_HAVE_X86
  if (pt_simd_active()) return zz_encode_fast(dst, src, n, w);
#endif
  return zz_encode_scalar(dst, src, n, w);
}

size_t pt_zz_decode(void *dst, const unsigned char *p, size_t avail, size_t n,
                    int w, size_t *bad) {
#if PT_HAVE_X86
  if (pt_simd_active()) return zz_decode_avx2(dst, p, avail, n, w, bad);
#endif
  return zz_decode_scalar(dst, p, avail, n, w, bad);
}
