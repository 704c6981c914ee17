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

/* The varint at q with at least 16 readable bytes: 8-byte words, the
 * length from the first byte below 0x80, no loop over bytes. Returns its
 * length, 0 if malformed (more than 10 bytes, or past 64 bits). */
static inline int varint_word(const unsigned char *q, uint64_t *out) {
  uint64_t a;
  memcpy(&a, q, 8);
  uint64_t stop = ~a & 0x8080808080808080ull;
  if (stop) {
    int len = (__builtin_ctzll(stop) >> 3) + 1;
    uint64_t x = len == 8 ? a : a & ((1ull << (8 * len)) - 1);
    /* gather the 7-bit groups */
    x = (x & 0x007f007f007f007full) | ((x & 0x7f007f007f007f00ull) >> 1);
    x = (x & 0x00003fff00003fffull) | ((x & 0x3fff00003fff0000ull) >> 2);
    x = (x & 0x000000000fffffffull) | ((x & 0x0fffffff00000000ull) >> 4);
    *out = x;
    return len;
  }
  /* 9 or 10 bytes: the first 8 give 56 bits */
  uint64_t x = a;
  x = (x & 0x007f007f007f007full) | ((x & 0x7f007f007f007f00ull) >> 1);
  x = (x & 0x00003fff00003fffull) | ((x & 0x3fff00003fff0000ull) >> 2);
  x = (x & 0x000000000fffffffull) | ((x & 0x0fffffff00000000ull) >> 4);
  if (q[8] < 0x80) {
    *out = x | (uint64_t)q[8] << 56;
    return 9;
  }
  if (q[9] > 1) return 0;
  *out = x | (uint64_t)(q[8] & 0x7f) << 56 | (uint64_t)q[9] << 63;
  return 10;
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

__attribute__((target("avx2"))) static inline int all_small_avx2(
    const unsigned char *s) {
  __m256i b = _mm256_loadu_si256((const __m256i *)s);
  return _mm256_movemask_epi8(b) == 0;
}

/* AVX2: 32 values at a time while they all zigzag below 0x80 (one byte
 * each), else one value through the word-at-a-time writer. */
__attribute__((target("avx2"))) static size_t zz_encode_avx2(
    unsigned char *dst, const void *src, size_t n, int w) {
  const unsigned char *s = src;
  unsigned char *d = dst;
  size_t i = 0;
  while (i < n) {
    if (w == 8 && n - i >= 4) {
      __m256i v = _mm256_loadu_si256((const __m256i *)(s + 8 * i));
      __m256i zz = _mm256_xor_si256(
          _mm256_slli_epi64(v, 1),
          _mm256_cmpgt_epi64(_mm256_setzero_si256(), v));
      /* all four below 0x80: their low bytes are the varints */
      __m256i hi = _mm256_andnot_si256(_mm256_set1_epi64x(0x7f), zz);
      if (_mm256_testz_si256(hi, hi)) {
        uint64_t t[4];
        _mm256_storeu_si256((__m256i *)t, zz);
        /* src may overlap what is written: read before writing */
        d[0] = (unsigned char)t[0];
        d[1] = (unsigned char)t[1];
        d[2] = (unsigned char)t[2];
        d[3] = (unsigned char)t[3];
        d += 4;
        i += 4;
        continue;
      }
      uint64_t t[4];
      _mm256_storeu_si256((__m256i *)t, zz);
      for (int k = 0; k < 4; k++) d = pt_wr_varint64(d, t[k]);
      i += 4;
      continue;
    }
    if (w == 4 && n - i >= 8) {
      __m256i v = _mm256_loadu_si256((const __m256i *)(s + 4 * i));
      __m256i zz = _mm256_xor_si256(_mm256_slli_epi32(v, 1),
                                    _mm256_srai_epi32(v, 31));
      uint32_t t[8];
      _mm256_storeu_si256((__m256i *)t, zz);
      for (int k = 0; k < 8; k++) d = pt_wr_varint32(d, t[k]);
      i += 8;
      continue;
    }
    d = pt_wr_varint64(d, zz_of(s, i, w));
    i++;
  }
  return (size_t)(d - dst);
}

__attribute__((target("avx2"))) static size_t zz_decode_avx2(
    void *dst, const unsigned char *p, size_t avail, size_t n, int w,
    size_t *bad) {
  const unsigned char *q = p, *end = p + avail;
  size_t i = 0;
  while (i < n) {
    if (n - i >= 32 && end - q >= 32 && all_small_avx2(q)) {
      zz_bytes_avx2((unsigned char *)dst + (size_t)w * i, q, w);
      q += 32;
      i += 32;
      continue;
    }
    if (end - q >= 16) {
      uint64_t u;
      int k = varint_word(q, &u);
      if (!k || (w != 8 && k > 5) || !zz_store(dst, i, u, w)) {
        *bad = i;
        return 0;
      }
      q += k;
      i++;
      continue;
    }
    /* the last few bytes: the scalar reader, bounds checked */
    size_t b2 = 0;
    size_t k = zz_decode_scalar((unsigned char *)dst + (size_t)w * i, q,
                                (size_t)(end - q), n - i, w, &b2);
    if (!k) {
      *bad = i + b2;
      return 0;
    }
    q += k;
    i = n;
  }
  return (size_t)(q - p);
}
#endif

size_t pt_zz_encode(unsigned char *dst, const void *src, size_t n, int w) {
#if PT_HAVE_X86
  if (pt_simd_active()) return zz_encode_avx2(dst, src, n, w);
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
