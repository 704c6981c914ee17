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

#endif
