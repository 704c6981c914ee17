/*
 * pt_buf.h — linked buffer over size-class block pools (Netpoll's LinkBuffer
 * in C). No Lua in here: the binding lives in csrc/lua/.
 *
 * Model
 *   pt_pool   owns idle blocks, one free list per power-of-two size class
 *             (PT_MIN_SHIFT..PT_MAX_SHIFT), and a cap on idle bytes. Blocks
 *             above the largest class bypass the pool. A pool belongs to an
 *             owner (an event loop, a Lua state); it is freed when the owner
 *             closed it and no buffer or block refers to it any more.
 *   pt_block  a reference-counted byte block: pooled, huge (malloc'd for one
 *             use) or external (bytes owned by someone else, e.g. a Lua
 *             string; a release callback runs when the last node lets go).
 *   pt_buf    a chain of nodes, each a window [rd, wr) onto a block. Slices
 *             share blocks; only the node whose wr is the block's fill mark
 *             may append into the block's free space.
 *
 * Contracts
 *   Functions returning int give 0 on success and -1 on failure (ENOMEM, or
 *   not enough readable bytes: the buffer is then unchanged). Nothing here
 *   is thread-safe: one owner, one thread.
 */
#ifndef PT_BUF_H
#define PT_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define PT_MIN_SHIFT 7  /* smallest class: 128 B */
#define PT_MAX_SHIFT 22 /* largest class: 4 MiB */
#define PT_NCLASS (PT_MAX_SHIFT - PT_MIN_SHIFT + 1)
#define PT_BLOCK_DEFAULT 8192u          /* block size for ordinary appends */
#define PT_IDLE_CAP_DEFAULT (32u << 20) /* idle bytes a pool keeps */
#define PT_NOCOPY_DEFAULT 4096u         /* link strings at least this long */

/* Exported for LuaJIT's FFI (lua/petrel/ffi.lua mirrors the layout of
 * pt_buf and these prototypes); everything else stays hidden. */
#define PT_FFI __attribute__((visibility("default")))

typedef struct pt_pool pt_pool;
typedef struct pt_block pt_block;
typedef struct pt_node pt_node;

/* Called when an external block's last reference goes; tag is the caller's. */
typedef void (*pt_release_fn)(void *ctx, intptr_t tag);

struct pt_block {
  char *data;
  size_t cap;
  size_t fill;    /* bytes of data written so far; appends go at data+fill */
  uint32_t refs;  /* nodes pointing here */
  int32_t cls;    /* size class index, or PT_CLS_HUGE / PT_CLS_EXT */
  pt_pool *pool;
  pt_block *next_free;
  pt_release_fn release; /* external blocks only */
  void *release_ctx;
  intptr_t release_tag;
};
#define PT_CLS_HUGE (-1)
#define PT_CLS_EXT (-2)

struct pt_node {
  pt_node *next;
  pt_block *blk;
  char *rd, *wr; /* readable window of blk */
};

typedef struct pt_buf {
  pt_pool *pool;
  pt_node *head, *tail;
  size_t len;        /* readable bytes */
  size_t block_size; /* allocation size for small appends */
  size_t nocopy_min; /* binding policy: strings this long are linked */
  size_t reserved;   /* bytes handed out by reserve, not yet committed */
  pt_node *resv_from; /* first node of the reservation */
  char *scratch;     /* contiguous copy for peeks that cross nodes */
  size_t scratch_cap;
} pt_buf;

typedef struct pt_class_stats {
  size_t size;      /* block size of the class */
  size_t in_use;    /* blocks handed out and not yet returned */
  size_t idle;      /* blocks on the free list */
  uint64_t hits;    /* gets served from the free list */
  uint64_t misses;  /* gets that had to allocate */
} pt_class_stats;

typedef struct pt_pool_stats {
  pt_class_stats cls[PT_NCLASS];
  size_t bytes_in_use, bytes_idle, idle_cap;
  uint64_t hits, misses;
  size_t huge_blocks, huge_bytes; /* blocks above the largest class */
  size_t ext_blocks, ext_bytes;   /* linked external bytes (no copy) */
  size_t buffers;                 /* buffers attached to the pool */
  size_t retained_blocks;         /* blocks pinned (pt_block_pin) and */
  size_t retained_bytes;          /* their capacity */
} pt_pool_stats;

/* Pools. idle_cap 0 means PT_IDLE_CAP_DEFAULT. */
pt_pool *pt_pool_new(size_t idle_cap);
void pt_pool_close(pt_pool *p); /* owner lets go; freed when unused */
void pt_pool_set_idle_cap(pt_pool *p, size_t cap); /* trims at once */
void pt_pool_trim(pt_pool *p); /* free every idle block */
void pt_pool_stats_get(const pt_pool *p, pt_pool_stats *out);

/* A block of at least n bytes for other owners than buffers (typed
 * arrays): from the pool's free list when it has one (no page faults, the
 * memory is warm), else malloc'd; release gives it back. NULL on ENOMEM. */
pt_block *pt_block_get(pt_pool *p, size_t n);
void pt_block_release(pt_block *b);
/* A pin is a block reference held outside any buffer (a message view
 * keeps the bytes it reads alive): it counts the block's capacity in the
 * pool's retained stats until pt_block_unpin drops it. Whoever rewinds or
 * reuses a block in place must see refs == 1 first (release_consumed
 * does), so pinned bytes never change. */
void pt_block_pin(pt_block *b);
void pt_block_unpin(pt_block *b);

/* Buffers. A pt_buf lives in caller memory; init attaches it to a pool. */
void pt_buf_init(pt_buf *b, pt_pool *p);
void pt_buf_free(pt_buf *b);  /* releases everything, detaches the pool */
void pt_buf_clear(pt_buf *b); /* releases every byte, stays usable */
static inline size_t pt_buf_len(const pt_buf *b) { return b->len; }
size_t pt_buf_nodes(const pt_buf *b);

/* Writer. Every write cancels an open reservation. */
PT_FFI int pt_buf_append(pt_buf *b, const void *src, size_t n);
/* Contiguous space for n bytes at the tail; valid until commit or the next
 * write. commit(k <= n) makes k of them readable. */
char *pt_buf_reserve(pt_buf *b, size_t n);
int pt_buf_commit(pt_buf *b, size_t k);
/* reserve at least n bytes and hand out all the contiguous room of the
 * block they are in (*room bytes); commit as for pt_buf_reserve */
char *pt_buf_reserve_room(pt_buf *b, size_t n, size_t *room);
/* Append n bytes at p without copying; release(ctx, tag) runs once the
 * bytes are consumed and no slice shares them (also when link fails). */
int pt_buf_link(pt_buf *b, const void *p, size_t n, pt_release_fn release,
                void *ctx, intptr_t tag);
/* Move every node of src to the end of dst; src is left empty. */
void pt_buf_move(pt_buf *dst, pt_buf *src);

/* Reader. Offsets count from the first readable byte. */
/* Pointer to n contiguous readable bytes, or NULL if fewer are present (or
 * ENOMEM). Points into the node when one node holds them, else into the
 * buffer's scratch copy. Valid until the next operation on b. */
PT_FFI const char *pt_buf_peek(pt_buf *b, size_t n);
/* Copy n bytes starting at off into dst; -1 if off+n > len. */
int pt_buf_copy(const pt_buf *b, size_t off, size_t n, void *dst);
PT_FFI int pt_buf_skip(pt_buf *b, size_t n);
int pt_buf_read(pt_buf *b, size_t n, void *dst); /* copy then skip */
/* Big-endian unsigned integer of width 1, 2, 4 or 8 at off. */
int pt_buf_peek_be(const pt_buf *b, size_t off, int width, uint64_t *out);
/* Offset of the first occurrence of delim at or after off, or -1. */
ptrdiff_t pt_buf_find(const pt_buf *b, size_t off, const void *delim,
                      size_t dlen);
/* Move the next n bytes into dst (initialized) sharing the blocks. */
int pt_buf_slice(pt_buf *src, size_t n, pt_buf *dst);

/* For the poller. */
/* Readable bytes as up to max iovecs (at most maxbytes); returns count. */
int pt_buf_iov(const pt_buf *b, struct iovec *iov, int max, size_t maxbytes);
/* Reserve at least n bytes of tail space as up to max iovecs (the tail's
 * free space first, then fresh blocks); returns count or -1. */
int pt_buf_reserve_iov(pt_buf *b, size_t n, struct iovec *iov, int max);
/* Commit k bytes written into the iovecs of the last reserve_iov, in order;
 * unused fresh blocks go back to the pool. */
int pt_buf_commit_iov(pt_buf *b, size_t k);

#endif
