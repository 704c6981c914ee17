/*
 * pt_hist.h — a latency histogram in the manner of HdrHistogram: log-
 * linear buckets (128 per power of two, so any recorded value is known to
 * within 1/128 = 0.8% of itself), exact below 256, fixed memory, O(1)
 * record. Values are unsigned integers in the caller's unit (pt_bench
 * records nanoseconds); values from 2^44 up (4.9 hours in ns) count in the
 * last bucket. No Lua, no allocation.
 */
#ifndef PT_HIST_H
#define PT_HIST_H

#include <stdint.h>

#define PT_HIST_SUB_BITS 7
#define PT_HIST_SUB (1u << PT_HIST_SUB_BITS)   /* sub-buckets per octave */
#define PT_HIST_TOP_BITS 44                    /* values below 2^44 */
#define PT_HIST_BUCKETS \
  ((int)(2 * PT_HIST_SUB + (PT_HIST_TOP_BITS - PT_HIST_SUB_BITS - 1) * PT_HIST_SUB))

typedef struct pt_hist {
  uint64_t n;         /* values recorded */
  uint64_t min, max;  /* exact (min is UINT64_MAX while n == 0) */
  double sum;         /* for the mean */
  uint64_t b[PT_HIST_BUCKETS];
} pt_hist;

void pt_hist_init(pt_hist *h);
/* Record v: O(1), inline (a load generator records every call). */
static inline void pt_hist_add(pt_hist *h, uint64_t v);
/* Record v c times (c >= 1). */
static inline void pt_hist_add_n(pt_hist *h, uint64_t v, uint64_t c);
/* dst += src */
void pt_hist_merge(pt_hist *dst, const pt_hist *src);
/* The value at quantile q (0..1): the highest value of the bucket holding
 * the ceil(q * n)-th smallest value, clamped to [min, max]; q = 1 gives
 * max, q = 0 min. 0 when nothing was recorded. */
uint64_t pt_hist_quantile(const pt_hist *h, double q);
/* The bucket of v, and the lowest and highest value of bucket i. */
int pt_hist_index(uint64_t v);
uint64_t pt_hist_low(int i);
uint64_t pt_hist_high(int i);

static inline int pt_hist_index_(uint64_t v) {
  if (v < 2 * PT_HIST_SUB) return (int)v;
  if (v >> PT_HIST_TOP_BITS) v = ((uint64_t)1 << PT_HIST_TOP_BITS) - 1;
  int msb = 63 - __builtin_clzll(v);
  int s = msb - PT_HIST_SUB_BITS;
  return (int)(2 * PT_HIST_SUB + (unsigned)(s - 1) * PT_HIST_SUB +
               (unsigned)((v >> s) - PT_HIST_SUB));
}

static inline void pt_hist_add(pt_hist *h, uint64_t v) {
  h->n++;
  h->sum += (double)v;
  if (v < h->min) h->min = v;
  if (v > h->max) h->max = v;
  h->b[pt_hist_index_(v)]++;
}

static inline void pt_hist_add_n(pt_hist *h, uint64_t v, uint64_t c) {
  h->n += c;
  h->sum += (double)v * (double)c;
  if (v < h->min) h->min = v;
  if (v > h->max) h->max = v;
  h->b[pt_hist_index_(v)] += c;
}

#endif
