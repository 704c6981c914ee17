/*
 * pt_hist.c — the log-linear histogram of pt_hist.h.
 *
 * Buckets: values below 2 * SUB are their own bucket. Above, a value with
 * its highest set bit at msb >= SUB_BITS + 1 is shifted right by
 * s = msb - SUB_BITS, which leaves a number in [SUB, 2 * SUB): its octave
 * (s) and its sub-bucket (that number - SUB) name the bucket.
 */
#include <string.h>

#include "pt_hist.h"

void pt_hist_init(pt_hist *h) {
  memset(h, 0, sizeof *h);
  h->min = UINT64_MAX;
}

int pt_hist_index(uint64_t v) { return pt_hist_index_(v); }

uint64_t pt_hist_low(int i) {
  if (i < (int)(2 * PT_HIST_SUB)) return (uint64_t)i;
  int k = i - (int)(2 * PT_HIST_SUB);
  int s = k / (int)PT_HIST_SUB + 1;
  uint64_t sub = (uint64_t)(k % (int)PT_HIST_SUB) + PT_HIST_SUB;
  return sub << s;
}

uint64_t pt_hist_high(int i) {
  if (i < (int)(2 * PT_HIST_SUB)) return (uint64_t)i;
  int k = i - (int)(2 * PT_HIST_SUB);
  int s = k / (int)PT_HIST_SUB + 1;
  uint64_t sub = (uint64_t)(k % (int)PT_HIST_SUB) + PT_HIST_SUB;
  return ((sub + 1) << s) - 1;
}

void pt_hist_merge(pt_hist *dst, const pt_hist *src) {
  if (!src->n) return;
  dst->n += src->n;
  dst->sum += src->sum;
  if (src->min < dst->min) dst->min = src->min;
  if (src->max > dst->max) dst->max = src->max;
  for (int i = 0; i < PT_HIST_BUCKETS; i++) dst->b[i] += src->b[i];
}

uint64_t pt_hist_quantile(const pt_hist *h, double q) {
  if (!h->n) return 0;
  if (q <= 0) return h->min;
  if (q >= 1) return h->max;
  double want_d = q * (double)h->n;
  uint64_t want = (uint64_t)want_d;
  if ((double)want < want_d) want++;
  if (want < 1) want = 1;
  uint64_t acc = 0;
  for (int i = 0; i < PT_HIST_BUCKETS; i++) {
    acc += h->b[i];
    if (acc >= want) {
      uint64_t v = pt_hist_high(i);
      if (v > h->max) v = h->max;
      if (v < h->min) v = h->min;
      return v;
    }
  }
  return h->max;
}
