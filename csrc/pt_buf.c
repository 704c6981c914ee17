/*
 * pt_buf.c — size-class pools and the linked buffer. See pt_buf.h.
 */
#include "pt_buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define PT_NODE_IDLE_MAX 4096 /* spare node structs a pool keeps */

struct pt_pool {
  pt_block *free[PT_NCLASS];
  pt_class_stats cls[PT_NCLASS];
  size_t idle_bytes, idle_cap;
  size_t huge_blocks, huge_bytes;
  size_t ext_blocks, ext_bytes;
  size_t buffers;
  size_t retained_blocks, retained_bytes; /* pins (pt_block_pin) */
  size_t refs;   /* owner + buffers + live blocks */
  int closed;    /* owner has let go */
  pt_node *free_nodes;
  size_t nfree_nodes;
  pt_block *free_ext; /* spare headers for external blocks */
};

/* ---- pool ------------------------------------------------------------ */

pt_pool *pt_pool_new(size_t idle_cap) {
  pt_pool *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->idle_cap = idle_cap ? idle_cap : PT_IDLE_CAP_DEFAULT;
  for (int i = 0; i < PT_NCLASS; i++)
    p->cls[i].size = (size_t)1 << (i + PT_MIN_SHIFT);
  p->refs = 1;
  return p;
}

static void pool_destroy(pt_pool *p) {
  pt_pool_trim(p);
  while (p->free_nodes) {
    pt_node *n = p->free_nodes;
    p->free_nodes = n->next;
    free(n);
  }
  while (p->free_ext) {
    pt_block *b = p->free_ext;
    p->free_ext = b->next_free;
    free(b);
  }
  free(p);
}

static void pool_unref(pt_pool *p) {
  if (--p->refs == 0) pool_destroy(p);
}

void pt_pool_close(pt_pool *p) {
  if (!p || p->closed) return;
  p->closed = 1;
  pt_pool_trim(p);
  pool_unref(p);
}

void pt_pool_trim(pt_pool *p) {
  for (int i = 0; i < PT_NCLASS; i++) {
    while (p->free[i]) {
      pt_block *b = p->free[i];
      p->free[i] = b->next_free;
      p->cls[i].idle--;
      p->idle_bytes -= b->cap;
      free(b);
    }
  }
}

void pt_pool_set_idle_cap(pt_pool *p, size_t cap) {
  p->idle_cap = cap;
  /* Drop the largest idle blocks first until under the cap. */
  for (int i = PT_NCLASS - 1; i >= 0 && p->idle_bytes > p->idle_cap; i--) {
    while (p->free[i] && p->idle_bytes > p->idle_cap) {
      pt_block *b = p->free[i];
      p->free[i] = b->next_free;
      p->cls[i].idle--;
      p->idle_bytes -= b->cap;
      free(b);
    }
  }
}

void pt_pool_stats_get(const pt_pool *p, pt_pool_stats *o) {
  memset(o, 0, sizeof *o);
  memcpy(o->cls, p->cls, sizeof o->cls);
  for (int i = 0; i < PT_NCLASS; i++) {
    o->bytes_in_use += p->cls[i].in_use * p->cls[i].size;
    o->hits += p->cls[i].hits;
    o->misses += p->cls[i].misses;
  }
  o->bytes_in_use += p->huge_bytes;
  o->bytes_idle = p->idle_bytes;
  o->idle_cap = p->idle_cap;
  o->huge_blocks = p->huge_blocks;
  o->huge_bytes = p->huge_bytes;
  o->ext_blocks = p->ext_blocks;
  o->ext_bytes = p->ext_bytes;
  o->buffers = p->buffers;
  o->retained_blocks = p->retained_blocks;
  o->retained_bytes = p->retained_bytes;
}

static int size_class(size_t n) {
  if (n <= ((size_t)1 << PT_MIN_SHIFT)) return 0;
  int shift = 64 - __builtin_clzll((unsigned long long)(n - 1));
  return shift > PT_MAX_SHIFT ? PT_CLS_HUGE : shift - PT_MIN_SHIFT;
}

/* A block of at least n bytes with refs = 1 and fill = 0. */
static pt_block *block_get(pt_pool *p, size_t n) {
  int c = size_class(n);
  pt_block *b;
  if (c == PT_CLS_HUGE) {
    if (n > SIZE_MAX - sizeof *b) return NULL;
    b = malloc(sizeof *b + n);
    if (!b) return NULL;
    b->cap = n;
    p->huge_blocks++;
    p->huge_bytes += n;
  } else if ((b = p->free[c]) != NULL) {
    p->free[c] = b->next_free;
    p->cls[c].idle--;
    p->cls[c].hits++;
    p->idle_bytes -= b->cap;
  } else {
    size_t cap = p->cls[c].size;
    b = malloc(sizeof *b + cap);
    if (!b) return NULL;
    b->cap = cap;
    p->cls[c].misses++;
  }
  if (c != PT_CLS_HUGE) p->cls[c].in_use++;
  b->data = (char *)(b + 1);
  b->fill = 0;
  b->refs = 1;
  b->cls = c;
  b->pool = p;
  b->next_free = NULL;
  b->release = NULL;
  p->refs++;
  return b;
}

static void block_put(pt_block *b) {
  pt_pool *p = b->pool;
  if (b->cls == PT_CLS_EXT) {
    pt_release_fn fn = b->release;
    void *ctx = b->release_ctx;
    intptr_t tag = b->release_tag;
    p->ext_blocks--;
    p->ext_bytes -= b->cap;
    b->next_free = p->free_ext;
    p->free_ext = b;
    if (fn) fn(ctx, tag);
  } else if (b->cls == PT_CLS_HUGE) {
    p->huge_blocks--;
    p->huge_bytes -= b->cap;
    free(b);
  } else {
    p->cls[b->cls].in_use--;
    if (!p->closed && p->idle_bytes + b->cap <= p->idle_cap) {
      b->next_free = p->free[b->cls];
      p->free[b->cls] = b;
      p->cls[b->cls].idle++;
      p->idle_bytes += b->cap;
    } else {
      free(b);
    }
  }
  pool_unref(p);
}

static inline void block_unref(pt_block *b) {
  if (--b->refs == 0) block_put(b);
}

pt_block *pt_block_get(pt_pool *p, size_t n) { return block_get(p, n); }
void pt_block_release(pt_block *b) { block_unref(b); }

static pt_node *node_new(pt_pool *p, pt_block *blk, char *rd, char *wr) {
  pt_node *n = p->free_nodes;
  if (n) {
    p->free_nodes = n->next;
    p->nfree_nodes--;
  } else if (!(n = malloc(sizeof *n))) {
    return NULL;
  }
  n->next = NULL;
  n->blk = blk;
  n->rd = rd;
  n->wr = wr;
  return n;
}

/* Drop the node and its block reference; the node struct goes to pool p. */
static void node_free(pt_pool *p, pt_node *n) {
  block_unref(n->blk);
  if (p->nfree_nodes < PT_NODE_IDLE_MAX) {
    n->next = p->free_nodes;
    p->free_nodes = n;
    p->nfree_nodes++;
  } else {
    free(n);
  }
}

/* ---- buffer: bookkeeping -------------------------------------------- */

void pt_buf_init(pt_buf *b, pt_pool *p) {
  memset(b, 0, sizeof *b);
  b->pool = p;
  b->block_size = PT_BLOCK_DEFAULT;
  b->nocopy_min = PT_NOCOPY_DEFAULT;
  p->refs++;
  p->buffers++;
}

void pt_buf_clear(pt_buf *b) {
  pt_node *n = b->head;
  while (n) {
    pt_node *next = n->next;
    node_free(b->pool, n);
    n = next;
  }
  b->head = b->tail = NULL;
  b->len = 0;
  b->reserved = 0;
  b->resv_from = NULL;
}

void pt_buf_free(pt_buf *b) {
  if (!b->pool) return;
  pt_buf_clear(b);
  free(b->scratch);
  b->scratch = NULL;
  b->scratch_cap = 0;
  b->pool->buffers--;
  pool_unref(b->pool);
  b->pool = NULL;
}

size_t pt_buf_nodes(const pt_buf *b) {
  size_t k = 0;
  for (pt_node *n = b->head; n; n = n->next) k++;
  return k;
}

/* Append n (a chain ending at last) to b. An emptied sole node is dropped
 * first, so empty nodes only ever lead the chain or end a reservation. */
static void link_chain(pt_buf *b, pt_node *n, pt_node *last) {
  pt_node *t = b->tail;
  if (t && t == b->head && t->rd == t->wr && !b->resv_from) {
    node_free(b->pool, t);
    b->head = b->tail = t = NULL;
  }
  if (t)
    t->next = n;
  else
    b->head = n;
  b->tail = last;
}

static inline void link_node(pt_buf *b, pt_node *n) { link_chain(b, n, n); }

/* Free nodes the reader has emptied, keeping the tail (its block may take
 * more writes) and the start of an open reservation. */
static void release_consumed(pt_buf *b) {
  pt_node *n;
  while ((n = b->head) != NULL && n->rd == n->wr && n != b->tail &&
         n != b->resv_from) {
    b->head = n->next;
    node_free(b->pool, n);
  }
  n = b->tail;
  if (n && n == b->head && n->rd == n->wr && !b->resv_from) {
    pt_block *blk = n->blk;
    if (blk->cls != PT_CLS_EXT && blk->refs == 1 &&
        n->wr == blk->data + blk->fill) {
      /* Sole owner of an emptied tail block: rewind it for reuse. */
      n->rd = n->wr = blk->data;
      blk->fill = 0;
    } else {
      b->head = b->tail = NULL;
      node_free(b->pool, n);
    }
  }
}

/* Free space in the tail block this buffer may append into. */
static inline size_t tail_room(const pt_buf *b) {
  const pt_node *n = b->tail;
  if (!n) return 0;
  const pt_block *blk = n->blk;
  if (blk->cls == PT_CLS_EXT || n->wr != blk->data + blk->fill) return 0;
  return blk->cap - blk->fill;
}

/* Drop empty reserved nodes after the reservation start and forget it. */
static void resv_cancel(pt_buf *b) {
  if (!b->resv_from) return;
  pt_node *keep = b->resv_from;
  pt_node *n = keep->next;
  /* resv_from itself may be an empty fresh node: keep it only if it holds
   * data or is the only node. */
  while (n) {
    pt_node *next = n->next;
    node_free(b->pool, n);
    n = next;
  }
  keep->next = NULL;
  b->tail = keep;
  b->reserved = 0;
  b->resv_from = NULL;
  release_consumed(b);
}

static pt_node *append_block(pt_buf *b, size_t need) {
  size_t sz = need > b->block_size ? need : b->block_size;
  pt_block *blk = block_get(b->pool, sz);
  if (!blk) return NULL;
  pt_node *n = node_new(b->pool, blk, blk->data, blk->data);
  if (!n) {
    block_unref(blk);
    return NULL;
  }
  link_node(b, n);
  return n;
}

/* ---- buffer: writer --------------------------------------------------- */

PT_FFI int pt_buf_append(pt_buf *b, const void *src, size_t n) {
  const char *s = src;
  if (b->resv_from) resv_cancel(b);
  while (n) {
    size_t room = tail_room(b);
    if (!room) {
      if (!append_block(b, n)) {
        errno = ENOMEM;
        return -1;
      }
      room = tail_room(b);
    }
    size_t k = n < room ? n : room;
    pt_node *t = b->tail;
    memcpy(t->wr, s, k);
    t->wr += k;
    t->blk->fill += k;
    b->len += k;
    s += k;
    n -= k;
  }
  return 0;
}

char *pt_buf_reserve(pt_buf *b, size_t n) {
  if (b->resv_from) resv_cancel(b);
  if (tail_room(b) < (n ? n : 1) && !append_block(b, n)) {
    errno = ENOMEM;
    return NULL;
  }
  b->reserved = n;
  b->resv_from = b->tail;
  return b->tail->wr;
}

char *pt_buf_reserve_room(pt_buf *b, size_t n, size_t *room) {
  char *p = pt_buf_reserve(b, n);
  if (!p) return NULL;
  b->reserved = tail_room(b);
  *room = b->reserved;
  return p;
}

int pt_buf_commit(pt_buf *b, size_t k) {
  return pt_buf_commit_iov(b, k);
}

int pt_buf_link(pt_buf *b, const void *p, size_t n, pt_release_fn release,
                void *ctx, intptr_t tag) {
  pt_pool *pool = b->pool;
  if (b->resv_from) resv_cancel(b);
  if (n == 0) {
    if (release) release(ctx, tag);
    return 0;
  }
  pt_block *blk = pool->free_ext;
  if (blk)
    pool->free_ext = blk->next_free;
  else if (!(blk = malloc(sizeof *blk)))
    goto fail;
  blk->data = (char *)p;
  blk->cap = blk->fill = n;
  blk->refs = 1;
  blk->cls = PT_CLS_EXT;
  blk->pool = pool;
  blk->next_free = NULL;
  blk->release = release;
  blk->release_ctx = ctx;
  blk->release_tag = tag;
  pool->refs++;
  pool->ext_blocks++;
  pool->ext_bytes += n;
  pt_node *node = node_new(pool, blk, blk->data, blk->data + n);
  if (!node) {
    block_unref(blk); /* runs release */
    errno = ENOMEM;
    return -1;
  }
  link_node(b, node);
  b->len += n;
  return 0;
fail:
  if (release) release(ctx, tag);
  errno = ENOMEM;
  return -1;
}

void pt_buf_move(pt_buf *dst, pt_buf *src) {
  if (dst == src || !src->head) return;
  if (dst->resv_from) resv_cancel(dst);
  if (src->resv_from) resv_cancel(src);
  if (!src->head) return;
  link_chain(dst, src->head, src->tail);
  dst->len += src->len;
  src->head = src->tail = NULL;
  src->len = 0;
}

/* ---- buffer: reader --------------------------------------------------- */

int pt_buf_copy(const pt_buf *b, size_t off, size_t n, void *dst) {
  if (off > b->len || n > b->len - off) return -1;
  char *d = dst;
  for (const pt_node *nd = b->head; n; nd = nd->next) {
    size_t have = (size_t)(nd->wr - nd->rd);
    if (off >= have) {
      off -= have;
      continue;
    }
    size_t k = have - off < n ? have - off : n;
    memcpy(d, nd->rd + off, k);
    d += k;
    n -= k;
    off = 0;
  }
  return 0;
}

PT_FFI const char *pt_buf_peek(pt_buf *b, size_t n) {
  if (n > b->len) return NULL;
  pt_node *h = b->head;
  while (h && h->rd == h->wr) h = h->next;
  if (!h || (size_t)(h->wr - h->rd) >= n) return h ? h->rd : "";
  if (b->scratch_cap < n) {
    char *s = realloc(b->scratch, n);
    if (!s) {
      errno = ENOMEM;
      return NULL;
    }
    b->scratch = s;
    b->scratch_cap = n;
  }
  pt_buf_copy(b, 0, n, b->scratch);
  return b->scratch;
}

PT_FFI int pt_buf_skip(pt_buf *b, size_t n) {
  if (n > b->len) return -1;
  b->len -= n;
  for (pt_node *nd = b->head; n; nd = nd->next) {
    size_t have = (size_t)(nd->wr - nd->rd);
    size_t k = have < n ? have : n;
    nd->rd += k;
    n -= k;
  }
  release_consumed(b);
  /* A large scratch copy is not worth keeping once read. */
  if (b->scratch_cap > 65536) {
    free(b->scratch);
    b->scratch = NULL;
    b->scratch_cap = 0;
  }
  return 0;
}

int pt_buf_read(pt_buf *b, size_t n, void *dst) {
  if (pt_buf_copy(b, 0, n, dst) != 0) return -1;
  return pt_buf_skip(b, n);
}

int pt_buf_peek_be(const pt_buf *b, size_t off, int width, uint64_t *out) {
  unsigned char tmp[8];
  const unsigned char *p = NULL;
  if (off > b->len || (size_t)width > b->len - off) return -1;
  /* Fast path: the bytes lie inside one node. */
  size_t o = off;
  for (const pt_node *nd = b->head; nd; nd = nd->next) {
    size_t have = (size_t)(nd->wr - nd->rd);
    if (o < have) {
      if (have - o >= (size_t)width) p = (const unsigned char *)nd->rd + o;
      break;
    }
    o -= have;
  }
  if (!p) {
    pt_buf_copy(b, off, (size_t)width, tmp);
    p = tmp;
  }
  uint64_t v = 0;
  for (int i = 0; i < width; i++) v = (v << 8) | p[i];
  *out = v;
  return 0;
}

ptrdiff_t pt_buf_find(const pt_buf *b, size_t off, const void *delim,
                      size_t dlen) {
  const unsigned char *d = delim;
  if (dlen == 0) return off <= b->len ? (ptrdiff_t)off : -1;
  if (off > b->len || dlen > b->len - off) return -1;
  size_t base = 0; /* offset of the node's first byte */
  for (const pt_node *nd = b->head; nd; nd = nd->next) {
    size_t have = (size_t)(nd->wr - nd->rd);
    size_t start = off > base ? off - base : 0;
    while (start < have) {
      const unsigned char *hit = memchr(nd->rd + start, d[0], have - start);
      if (!hit) break;
      size_t pos = base + (size_t)(hit - (const unsigned char *)nd->rd);
      if (pos + dlen > b->len) return -1;
      size_t rest = have - (size_t)(hit - (const unsigned char *)nd->rd);
      if (rest >= dlen) {
        if (memcmp(hit, d, dlen) == 0) return (ptrdiff_t)pos;
      } else {
        /* The candidate runs into later nodes. */
        if (memcmp(hit, d, rest) == 0) {
          const pt_node *m = nd->next;
          size_t i = rest;
          int ok = 1;
          while (i < dlen && m) {
            size_t mh = (size_t)(m->wr - m->rd);
            size_t k = mh < dlen - i ? mh : dlen - i;
            if (memcmp(m->rd, d + i, k) != 0) {
              ok = 0;
              break;
            }
            i += k;
            m = m->next;
          }
          if (ok && i == dlen) return (ptrdiff_t)pos;
        }
      }
      start = (size_t)(hit - (const unsigned char *)nd->rd) + 1;
    }
    base += have;
  }
  return -1;
}

int pt_buf_slice(pt_buf *src, size_t n, pt_buf *dst) {
  if (n > src->len) return -1;
  if (dst->resv_from) resv_cancel(dst);
  if (n == 0) return 0;
  /* Build the shared chain aside, so a failure leaves both buffers as
   * they were. */
  pt_node *first = NULL, *last = NULL;
  size_t left = n;
  for (pt_node *nd = src->head; left; nd = nd->next) {
    size_t have = (size_t)(nd->wr - nd->rd);
    if (!have) continue;
    size_t k = have < left ? have : left;
    pt_node *c = node_new(dst->pool, nd->blk, nd->rd, nd->rd + k);
    if (!c) {
      while (first) {
        pt_node *next = first->next;
        node_free(dst->pool, first);
        first = next;
      }
      errno = ENOMEM;
      return -1;
    }
    nd->blk->refs++;
    if (last)
      last->next = c;
    else
      first = c;
    last = c;
    left -= k;
  }
  link_chain(dst, first, last);
  dst->len += n;
  return pt_buf_skip(src, n);
}

/* ---- buffer: iovecs for the poller ----------------------------------- */

int pt_buf_iov(const pt_buf *b, struct iovec *iov, int max, size_t maxbytes) {
  int k = 0;
  for (const pt_node *nd = b->head; nd && k < max && maxbytes; nd = nd->next) {
    size_t have = (size_t)(nd->wr - nd->rd);
    if (!have) continue;
    if (have > maxbytes) have = maxbytes;
    iov[k].iov_base = nd->rd;
    iov[k].iov_len = have;
    maxbytes -= have;
    k++;
  }
  return k;
}

int pt_buf_reserve_iov(pt_buf *b, size_t n, struct iovec *iov, int max) {
  if (max < 1) return -1;
  if (b->resv_from) resv_cancel(b);
  int k = 0;
  size_t got = 0;
  size_t room = tail_room(b);
  pt_node *first = NULL;
  if (room) {
    first = b->resv_from = b->tail; /* pins it against link_chain */
    iov[k].iov_base = first->wr;
    iov[k].iov_len = room;
    got = room;
    k++;
  }
  while (got < n && k < max) {
    size_t want = n - got;
    /* Fill whole blocks: round small remainders up to the block size. */
    pt_node *nd = append_block(b, want < b->block_size ? b->block_size : want);
    if (!nd) {
      b->reserved = got;
      b->resv_from = first;
      resv_cancel(b);
      errno = ENOMEM;
      return -1;
    }
    if (!first) first = b->resv_from = nd;
    iov[k].iov_base = nd->wr;
    iov[k].iov_len = nd->blk->cap;
    got += nd->blk->cap;
    k++;
  }
  b->reserved = got;
  b->resv_from = first;
  return k;
}

int pt_buf_commit_iov(pt_buf *b, size_t k) {
  if (!b->resv_from || k > b->reserved) return -1;
  for (pt_node *nd = b->resv_from; nd && k; nd = nd->next) {
    pt_block *blk = nd->blk;
    size_t room = blk->cap - blk->fill;
    size_t c = k < room ? k : room;
    nd->wr += c;
    blk->fill += c;
    b->len += c;
    k -= c;
  }
  /* Trim the fresh nodes nothing was written into. */
  pt_node *last = b->resv_from;
  while (last->next && last->next->wr != last->next->rd) last = last->next;
  pt_node *n = last->next;
  while (n) {
    pt_node *next = n->next;
    node_free(b->pool, n);
    n = next;
  }
  last->next = NULL;
  b->tail = last;
  b->reserved = 0;
  b->resv_from = NULL;
  release_consumed(b);
  return 0;
}

/* ---- pins: blocks kept alive outside buffers (views) ------------------ */

void pt_block_pin(pt_block *b) {
  b->refs++;
  b->pool->retained_blocks++;
  b->pool->retained_bytes += b->cap;
}

void pt_block_unpin(pt_block *b) {
  b->pool->retained_blocks--;
  b->pool->retained_bytes -= b->cap;
  block_unref(b);
}
