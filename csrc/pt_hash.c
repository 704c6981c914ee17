/* pt_hash.c — MurmurHash3 x86_32 and the consistent-hashing ring (see
 * pt_hash.h). */
#include "pt_hash.h"


static inline uint32_t rotl32(uint32_t x, int r) {
  return (x << r) | (x >> (32 - r));
}

static inline uint32_t mix_k(uint32_t k) {
  k *= 0xcc9e2d51u;
  k = rotl32(k, 15);
  return k * 0x1b873593u;
}

uint32_t pt_hash32(const void *p, size_t n, uint32_t seed) {
  const unsigned char *s = p;
  uint32_t h = seed;
  size_t blocks = n / 4;
  for (size_t i = 0; i < blocks; i++) {
    /* little-endian block whatever the host's order */
    uint32_t k = (uint32_t)s[4 * i] | (uint32_t)s[4 * i + 1] << 8 |
                 (uint32_t)s[4 * i + 2] << 16 | (uint32_t)s[4 * i + 3] << 24;
    h ^= mix_k(k);
    h = rotl32(h, 13);
    h = h * 5 + 0xe6546b64u;
  }
  const unsigned char *t = s + 4 * blocks;
  uint32_t k = 0;
  switch (n & 3) {
    case 3: k ^= (uint32_t)t[2] << 16; /* fall through */
    case 2: k ^= (uint32_t)t[1] << 8;  /* fall through */
    case 1:
      k ^= t[0];
      h ^= mix_k(k);
  }
  h ^= (uint32_t)n;
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

size_t pt_int_text(char *out, int64_t v) {
  char tmp[20];
  size_t n = 0, len = 0;
  /* the magnitude as unsigned: INT64_MIN has no positive twin */
  uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
  do {
    tmp[n++] = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  if (v < 0) out[len++] = '-';
  while (n) out[len++] = tmp[--n];
  return len;
}

size_t pt_ring_size(uint32_t n) {
  return sizeof(pt_ring) + (size_t)n * sizeof(uint32_t);
}

int pt_ring_init(pt_ring *r, const uint32_t *pts, uint32_t n) {
  for (uint32_t i = 1; i < n; i++)
    if (pts[i] < pts[i - 1]) return -1;
  r->n = n;
  for (uint32_t i = 0; i < n; i++) r->pts[i] = pts[i];
  uint32_t j = 0;
  for (uint32_t slot = 0; slot < (1u << PT_RING_SLOT_BITS); slot++) {
    uint32_t lo = slot << (32 - PT_RING_SLOT_BITS);
    while (j < n && pts[j] < lo) j++;
    r->start[slot] = j;
  }
  return 0;
}

uint32_t pt_ring_find(const pt_ring *r, uint32_t h) {
  uint32_t i = r->start[h >> (32 - PT_RING_SLOT_BITS)], n = r->n;
  while (i < n && r->pts[i] < h) i++;
  return i < n ? i : 0;
}
