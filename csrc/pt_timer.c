/*
 * pt_timer.c — the timer heap (see pt_timer.h).
 *
 * Invariant: heap[0..nheap) holds the pending slots, each parent's
 * (deadline, seq) no later than its children's, and tm[s].pos is s's
 * index in heap.
 */
#include "pt_timer.h"

#include <stdlib.h>

#define TM_SLOT_BITS 24
#define TM_SLOT_MASK ((1u << TM_SLOT_BITS) - 1)
#define TM_GEN_MAX (1u << 29)
#define TM_NONE UINT32_MAX
#define TM_ID(gen, slot) (((uint64_t)(gen) << TM_SLOT_BITS) | (uint64_t)(slot))

void pt_timers_init(pt_timers *t) {
  t->tm = NULL;
  t->heap = NULL;
  t->n = t->cap = t->nheap = 0;
  t->free = TM_NONE;
  t->seq = 0;
}

void pt_timers_free(pt_timers *t) {
  free(t->tm);
  free(t->heap);
  pt_timers_init(t);
}

static inline int tless(const pt_timers *t, uint32_t a, uint32_t b) {
  const pt_tm *x = &t->tm[a], *y = &t->tm[b];
  return x->deadline < y->deadline ||
         (x->deadline == y->deadline && x->seq < y->seq);
}

static inline void hset(pt_timers *t, uint32_t i, uint32_t s) {
  t->heap[i] = s;
  t->tm[s].pos = (int32_t)i;
}

static void sift_up(pt_timers *t, uint32_t i) {
  uint32_t s = t->heap[i];
  while (i > 0) {
    uint32_t p = (i - 1) / 2;
    if (!tless(t, s, t->heap[p])) break;
    hset(t, i, t->heap[p]);
    i = p;
  }
  hset(t, i, s);
}

static void sift_down(pt_timers *t, uint32_t i) {
  uint32_t s = t->heap[i], n = t->nheap;
  for (;;) {
    uint32_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && tless(t, t->heap[c + 1], t->heap[c])) c++;
    if (!tless(t, t->heap[c], s)) break;
    hset(t, i, t->heap[c]);
    i = c;
  }
  hset(t, i, s);
}

static void heap_remove(pt_timers *t, uint32_t i) {
  uint32_t last = t->heap[--t->nheap];
  if (i < t->nheap) {
    hset(t, i, last);
    sift_down(t, i);
    sift_up(t, (uint32_t)t->tm[last].pos);
  }
}

static void slot_free(pt_timers *t, uint32_t s) {
  pt_tm *x = &t->tm[s];
  x->pos = -1;
  x->owner = NULL;
  if (++x->gen >= TM_GEN_MAX) x->gen = 1;
  x->next_free = t->free;
  t->free = s;
}

uint64_t pt_timers_add(pt_timers *t, int64_t deadline, int kind, void *owner) {
  uint32_t s;
  if (t->free == TM_NONE && t->n == t->cap) {
    uint32_t cap = t->cap ? t->cap * 2 : 64;
    if (cap > TM_SLOT_MASK + 1u) return 0;
    pt_tm *tm = realloc(t->tm, cap * sizeof *tm);
    if (!tm) return 0;
    t->tm = tm;
    uint32_t *h = realloc(t->heap, cap * sizeof *h);
    if (!h) return 0;
    t->heap = h;
    t->cap = cap;
  }
  if (t->free != TM_NONE) {
    s = t->free;
    t->free = t->tm[s].next_free;
  } else {
    s = t->n++;
    t->tm[s].gen = 1;
  }
  pt_tm *x = &t->tm[s];
  x->deadline = deadline;
  x->seq = ++t->seq;
  x->kind = kind;
  x->owner = owner;
  t->heap[t->nheap] = s;
  x->pos = (int32_t)t->nheap++;
  sift_up(t, (uint32_t)x->pos);
  return TM_ID(x->gen, s);
}

/* The pending slot of id, or TM_NONE. */
static uint32_t pending_slot(const pt_timers *t, uint64_t id) {
  uint32_t s = (uint32_t)(id & TM_SLOT_MASK);
  if (!id || s >= t->n) return TM_NONE;
  const pt_tm *x = &t->tm[s];
  if (x->pos < 0 || x->gen != (uint32_t)(id >> TM_SLOT_BITS)) return TM_NONE;
  return s;
}

int pt_timers_kind(const pt_timers *t, uint64_t id) {
  uint32_t s = pending_slot(t, id);
  return s == TM_NONE ? -1 : t->tm[s].kind;
}

int pt_timers_cancel(pt_timers *t, uint64_t id) {
  uint32_t s = pending_slot(t, id);
  if (s == TM_NONE) return -1;
  heap_remove(t, (uint32_t)t->tm[s].pos);
  slot_free(t, s);
  return 0;
}

int pt_timers_due(pt_timers *t, int64_t now, uint64_t *id, int *kind,
                  void **owner) {
  if (!t->nheap) return 0;
  uint32_t s = t->heap[0];
  pt_tm *x = &t->tm[s];
  if (x->deadline > now) return 0;
  *id = TM_ID(x->gen, s);
  *kind = x->kind;
  *owner = x->owner;
  heap_remove(t, 0);
  slot_free(t, s);
  return 1;
}

int64_t pt_timers_next(const pt_timers *t) {
  return t->nheap ? t->tm[t->heap[0]].deadline : INT64_MAX;
}
