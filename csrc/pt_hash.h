/*
 * pt_hash.h — a 32-bit hash for consistent hashing (the balancer's ring
 * points and per-call keys). No Lua in here.
 *
 * MurmurHash3 x86_32 (Austin Appleby's public-domain design): the same
 * value on every platform and runtime for the same bytes and seed, so two
 * clients build the same ring and map a key to the same instance.
 */
#ifndef PT_HASH_H
#define PT_HASH_H

#include <stddef.h>
#include <stdint.h>

uint32_t pt_hash32(const void *p, size_t n, uint32_t seed);

/* The decimal text of v into out (at least 21 bytes; not terminated):
 * its length. A key's ring text when the key is an integer. */
size_t pt_int_text(char *out, int64_t v);

/* A consistent-hashing ring: n points (32-bit hashes) in ascending order,
 * and for each of the 2^PT_RING_SLOT_BITS equal spans of the 32-bit space
 * the index of its first point at or past the span's start, so a lookup is
 * one table read and a short walk (points spread evenly: about n / 4096
 * steps), not a bisection. */
#define PT_RING_SLOT_BITS 12
typedef struct pt_ring {
  uint32_t n;
  uint32_t start[1u << PT_RING_SLOT_BITS];
  uint32_t pts[]; /* n points, ascending */
} pt_ring;

/* Bytes a ring of n points takes (for a caller that places it). */
size_t pt_ring_size(uint32_t n);

/* Fill r (pt_ring_size(n) bytes) from pts[0..n-1]: 0, or -1 when pts is
 * not in ascending order (equal points are fine). */
int pt_ring_init(pt_ring *r, const uint32_t *pts, uint32_t n);

/* Index (0-based) of the first point >= h; 0 when h is past the last
 * point (the ring wraps) or the ring is empty. */
uint32_t pt_ring_find(const pt_ring *r, uint32_t h);

#endif
