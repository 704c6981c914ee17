/*
 * pt_dns.h — host names resolved off the loop's thread, with a TTL cache.
 *
 * One resolver per loop: a thread, started by the first lookup
 * the cache cannot answer, runs getaddrinfo(3) for queued names one at a
 * time and calls notify(ctx) (from that thread) after each answer; the
 * loop then collects answers with pt_dns_done on its own thread. Answers,
 * good or bad, are cached for ttl_ms (failures for at most 5 s), so a
 * name costs one lookup per TTL however many connections use it.
 *
 * Nothing here knows the loop: tags are the caller's (conn ids). The
 * resolver outlives pt_dns_free only while its thread finishes a lookup in
 * progress (getaddrinfo cannot be interrupted); a freed resolver's answers
 * are dropped.
 */
#ifndef PT_DNS_H
#define PT_DNS_H

#include <stdint.h>
#include <sys/socket.h>

typedef struct pt_dns pt_dns;

typedef struct pt_dns_answer {
  uint64_t tag;
  int gai;                     /* 0, or a getaddrinfo EAI_* code */
  int sys;                     /* errno for EAI_SYSTEM */
  struct sockaddr_storage ss;  /* the first address, port 0 */
  socklen_t len;
} pt_dns_answer;

/* ttl_ms <= 0: 30000. delay_ms > 0: every lookup waits that long first
 * (tests: the loop goes on meanwhile). NULL on ENOMEM. */
pt_dns *pt_dns_new(void (*notify)(void *ctx), void *ctx, int ttl_ms,
                   int delay_ms);
/* forked: the thread belongs to the parent; leave everything as it is. */
void pt_dns_free(pt_dns *d, int forked);
/* Look name up for tag. 1: answered from the cache into *a (a->gai says
 * whether it resolved); 0: queued, pt_dns_done gives the answer later;
 * -1: could not queue (errno). */
int pt_dns_lookup(pt_dns *d, const char *name, uint64_t tag, pt_dns_answer *a);
/* Answers that arrived since the last call, up to max. */
int pt_dns_done(pt_dns *d, pt_dns_answer *out, int max);
/* Counters: lookups run by the thread, answers served from the cache. */
void pt_dns_counts(pt_dns *d, uint64_t *lookups, uint64_t *cached);

#endif
