/*
 * pt_dns.c — the resolver thread and its TTL cache (see pt_dns.h).
 *
 * Invariants
 *   - mu guards everything below it in struct pt_dns; notify runs under mu,
 *     so it never runs after pt_dns_free returned (closed is set under mu).
 *   - refs counts the owner (until pt_dns_free) and the thread (while it
 *     runs); the last one frees.
 *   - pt_dns_free joins an idle thread (it leaves at once), so nothing of it
 *     outlives the loop; a thread inside getaddrinfo is detached instead
 *     and frees the state when its lookup returns.
 */
#define _GNU_SOURCE
#include "pt_dns.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DNS_CACHE 64
#define DNS_NEG_TTL 5000

typedef struct dreq {
  struct dreq *next;
  uint64_t tag;
  char name[];
} dreq;

typedef struct centry {
  char *name; /* NULL: free slot */
  int64_t expires;
  int gai, sys;
  struct sockaddr_storage ss;
  socklen_t len;
} centry;

struct pt_dns {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int refs, closed, running;
  int busy;      /* the thread is in a lookup (mu not held) */
  pthread_t th;
  dreq *qhead, *qtail;
  pt_dns_answer *ans;
  int nans, acap;   /* acap >= nans + pending: answers always fit */
  int pending;      /* queued or being looked up */
  centry cache[DNS_CACHE];
  void (*notify)(void *);
  void *ctx;
  int ttl, delay;
  uint64_t lookups, cached;
};

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

pt_dns *pt_dns_new(void (*notify)(void *), void *ctx, int ttl_ms,
                   int delay_ms) {
  pt_dns *d = calloc(1, sizeof *d);
  if (!d) return NULL;
  pthread_mutex_init(&d->mu, NULL);
  pthread_cond_init(&d->cv, NULL);
  d->refs = 1;
  d->notify = notify;
  d->ctx = ctx;
  d->ttl = ttl_ms > 0 ? ttl_ms : 30000;
  d->delay = delay_ms;
  return d;
}

static void dns_destroy(pt_dns *d) {
  dreq *r;
  while ((r = d->qhead)) {
    d->qhead = r->next;
    free(r);
  }
  for (int i = 0; i < DNS_CACHE; i++) free(d->cache[i].name);
  free(d->ans);
  pthread_mutex_destroy(&d->mu);
  pthread_cond_destroy(&d->cv);
  free(d);
}

/* mu held: drop a reference, free on the last. 1 if freed. */
static int unref(pt_dns *d) {
  if (--d->refs > 0) return 0;
  pthread_mutex_unlock(&d->mu);
  dns_destroy(d);
  return 1;
}

void pt_dns_free(pt_dns *d, int forked) {
  if (!d || forked) return;
  pthread_mutex_lock(&d->mu);
  d->closed = 1;
  pthread_cond_signal(&d->cv);
  if (d->running && !d->busy) {
    pthread_mutex_unlock(&d->mu);
    pthread_join(d->th, NULL);
    pthread_mutex_lock(&d->mu);
  } else if (d->running) {
    pthread_detach(d->th);
  }
  if (!unref(d)) pthread_mutex_unlock(&d->mu);
}

/* mu held: a fresh cache entry for name, or NULL. */
static centry *cache_find(pt_dns *d, const char *name, int64_t now) {
  for (int i = 0; i < DNS_CACHE; i++) {
    centry *e = &d->cache[i];
    if (e->name && e->expires > now && strcmp(e->name, name) == 0) return e;
  }
  return NULL;
}

/* mu held: remember an answer (replacing the stalest entry when full).
 * Transient failures are not remembered. */
static void cache_put(pt_dns *d, const char *name, const pt_dns_answer *a,
                      int64_t now) {
  if (a->gai && a->gai != EAI_NONAME
#ifdef EAI_NODATA
      && a->gai != EAI_NODATA
#endif
  )
    return;
  centry *slot = NULL;
  for (int i = 0; i < DNS_CACHE; i++) {
    centry *e = &d->cache[i];
    if (e->name && strcmp(e->name, name) == 0) {
      slot = e;
      break;
    }
    if (!slot || !e->name || (slot->name && e->expires < slot->expires))
      slot = e;
  }
  char *copy = slot->name && strcmp(slot->name, name) == 0 ? slot->name
                                                            : strdup(name);
  if (!copy) return;
  if (copy != slot->name) free(slot->name);
  slot->name = copy;
  int ttl = a->gai ? (d->ttl < DNS_NEG_TTL ? d->ttl : DNS_NEG_TTL) : d->ttl;
  slot->expires = now + ttl;
  slot->gai = a->gai;
  slot->sys = a->sys;
  slot->ss = a->ss;
  slot->len = a->len;
}

static void fill_from(pt_dns_answer *a, const centry *e) {
  a->gai = e->gai;
  a->sys = e->sys;
  a->ss = e->ss;
  a->len = e->len;
}

static void resolve(const char *name, pt_dns_answer *a) {
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  a->gai = getaddrinfo(name, NULL, &hints, &res);
  a->sys = a->gai == EAI_SYSTEM ? errno : 0;
  if (a->gai == 0 && (!res || res->ai_addrlen > sizeof a->ss)) a->gai = EAI_FAIL;
  if (a->gai == 0) {
    memcpy(&a->ss, res->ai_addr, res->ai_addrlen);
    a->len = res->ai_addrlen;
  }
  if (res) freeaddrinfo(res);
}

/* mu held: room for one more answer than can arrive. 0, or -1 ENOMEM. */
static int reserve_answer(pt_dns *d) {
  if (d->nans + d->pending < d->acap) return 0;
  int cap = d->acap ? d->acap * 2 : 16;
  pt_dns_answer *n = realloc(d->ans, (size_t)cap * sizeof *n);
  if (!n) return -1;
  d->ans = n;
  d->acap = cap;
  return 0;
}

static void *dns_thread(void *arg) {
  pt_dns *d = arg;
  pthread_mutex_lock(&d->mu);
  for (;;) {
    while (!d->closed && !d->qhead) pthread_cond_wait(&d->cv, &d->mu);
    if (d->closed) break;
    dreq *r = d->qhead;
    d->qhead = r->next;
    if (!d->qhead) d->qtail = NULL;
    pt_dns_answer a;
    memset(&a, 0, sizeof a);
    a.tag = r->tag;
    centry *e = cache_find(d, r->name, now_ms());
    if (e) { /* an earlier request for the same name filled it */
      fill_from(&a, e);
      d->cached++;
    } else {
      d->lookups++;
      d->busy = 1;
      pthread_mutex_unlock(&d->mu);
      if (d->delay > 0) {
        struct timespec ts = {d->delay / 1000, (long)(d->delay % 1000) * 1000000};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
      }
      resolve(r->name, &a);
      pthread_mutex_lock(&d->mu);
      d->busy = 0;
      cache_put(d, r->name, &a, now_ms());
    }
    free(r);
    if (d->closed) break;
    d->pending--;
    d->ans[d->nans++] = a; /* reserved when it was queued */
    d->notify(d->ctx);
  }
  d->running = 0;
  if (!unref(d)) pthread_mutex_unlock(&d->mu);
  return NULL;
}

int pt_dns_lookup(pt_dns *d, const char *name, uint64_t tag, pt_dns_answer *a) {
  size_t n = strlen(name);
  pthread_mutex_lock(&d->mu);
  centry *e = cache_find(d, name, now_ms());
  if (e) {
    memset(a, 0, sizeof *a);
    a->tag = tag;
    fill_from(a, e);
    d->cached++;
    pthread_mutex_unlock(&d->mu);
    return 1;
  }
  dreq *r = malloc(sizeof *r + n + 1);
  if (!r || reserve_answer(d) != 0) {
    free(r);
    pthread_mutex_unlock(&d->mu);
    errno = ENOMEM;
    return -1;
  }
  r->next = NULL;
  r->tag = tag;
  memcpy(r->name, name, n + 1);
  if (!d->running) {
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setstacksize(&at, 256 * 1024);
    int rc = pthread_create(&d->th, &at, dns_thread, d);
    pthread_attr_destroy(&at);
    if (rc != 0) {
      pthread_mutex_unlock(&d->mu);
      free(r);
      errno = rc;
      return -1;
    }
    d->running = 1;
    d->refs++;
  }
  d->pending++;
  if (d->qtail)
    d->qtail->next = r;
  else
    d->qhead = r;
  d->qtail = r;
  pthread_cond_signal(&d->cv);
  pthread_mutex_unlock(&d->mu);
  return 0;
}

int pt_dns_done(pt_dns *d, pt_dns_answer *out, int max) {
  pthread_mutex_lock(&d->mu);
  int k = d->nans < max ? d->nans : max;
  memcpy(out, d->ans, (size_t)k * sizeof *out);
  memmove(d->ans, d->ans + k, (size_t)(d->nans - k) * sizeof *out);
  d->nans -= k;
  pthread_mutex_unlock(&d->mu);
  return k;
}

void pt_dns_counts(pt_dns *d, uint64_t *lookups, uint64_t *cached) {
  pthread_mutex_lock(&d->mu);
  *lookups = d->lookups;
  *cached = d->cached;
  pthread_mutex_unlock(&d->mu);
}
