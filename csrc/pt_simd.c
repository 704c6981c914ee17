/*
 * pt_simd.c — byte-swapping copies for numeric lists: an AVX2 kernel and
 * its scalar twin, chosen at run time (CPU detection; PETREL_SCALAR=1 in
 * the environment forces the scalar path).
 */
#include <stdlib.h>
#include <string.h>

#include "pt_plan.h"

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
