/*
 * pt_timer.h — a timer heap: one-shot deadlines (ms, any clock the caller
 * uses) with a kind and an owner the caller gives meaning to. A binary
 * min-heap of slot indices over a slot array; ids are generation << 24 |
 * slot (below 2^53, so a double holds them), never 0, and a fired or
 * cancelled id is not reused until its slot's generation wrapped. Equal
 * deadlines fire in the order they were added. Nothing here knows the
 * loop: pt_loop.c fires its timers by kind (user timer, connect timeout,
 * close timeout, listen back-off).
 */
#ifndef PT_TIMER_H
#define PT_TIMER_H

#include <stdint.h>

typedef struct pt_tm {
  int64_t deadline;
  uint64_t seq;
  uint32_t gen;
  int32_t pos; /* heap index; -1 when the slot is free */
  uint32_t next_free;
  int kind;
  void *owner;
} pt_tm;

typedef struct pt_timers {
  pt_tm *tm;
  uint32_t n, cap, free;
  uint32_t *heap;
  uint32_t nheap;
  uint64_t seq;
} pt_timers;

void pt_timers_init(pt_timers *t);
void pt_timers_free(pt_timers *t);
/* A timer due at deadline; its id, or 0 on ENOMEM. */
uint64_t pt_timers_add(pt_timers *t, int64_t deadline, int kind, void *owner);
/* The kind of a pending timer, or -1 (unknown, fired, cancelled). */
int pt_timers_kind(const pt_timers *t, uint64_t id);
/* 0, or -1 when id is not pending. */
int pt_timers_cancel(pt_timers *t, uint64_t id);
/* The earliest timer due at now, taken off the heap: 1 with its id, kind
 * and owner, or 0. */
int pt_timers_due(pt_timers *t, int64_t now, uint64_t *id, int *kind,
                  void **owner);
/* The earliest deadline, or INT64_MAX when none is pending. */
int64_t pt_timers_next(const pt_timers *t);

#endif
