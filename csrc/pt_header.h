/*
 * pt_header.h — header transports in the core: Apache Thrift's THeader
 * (doc/specs/HeaderFormat.md: magic 0x0FFF, varint fields, key/value info
 * headers, transforms) and Kitex's TTHeader (magic 0x1000: u8 protocol id
 * and transforms, string key/value (0x01), integer key/value (0x10) and
 * ACL token (0x11) info blocks, padding), parsed and built; and the
 * framing of one connection's messages (framed, unframed, header frames,
 * a frame around a header frame, a frame inside a TTHeader). No Lua here.
 *
 * Both header formats share their first 14 bytes:
 *
 *   LENGTH (u32, the bytes after it) | MAGIC (u16) | FLAGS (u16) |
 *   SEQUENCE NUMBER (u32) | HEADER SIZE (u16, in 4-byte words) |
 *   header (HEADER SIZE * 4 bytes) | payload
 *
 * and differ in the header: THeader writes varints (protocol id, number
 * of transforms, their ids, then info blocks: type 1, a count, varint
 * length-prefixed keys and values; the first unknown type ends them, as
 * Apache's readers take it); TTHeader writes bytes and u16s (protocol id,
 * number of transforms, their ids as u8, then info blocks: 0 padding,
 * 0x01 u16 count of u16-length keys and values, 0x10 u16 count of u16 keys
 * and u16-length values, 0x11 one u16-length token; any other id is an
 * error, as Kitex reads it). The magic tells them apart; a frame is never
 * read as the other kind.
 *
 * Reader contract (pt_thrift.h's): PT_NEED for a proper prefix, PT_BAD
 * with a reason, or the bytes of the whole frame. Sizes the peer controls
 * are checked against max_frame and against each other as soon as their
 * bytes are there, before the rest arrives and before anything is
 * allocated: a hostile LENGTH or HEADER SIZE is refused from the first
 * 14 bytes.
 */
#ifndef PT_HEADER_H
#define PT_HEADER_H

#include <stddef.h>
#include <stdint.h>

#include "pt_thrift.h"

enum { PT_HDR_NONE = 0, PT_HDR_THEADER = 1, PT_HDR_TTHEADER = 2 };
#define PT_THEADER_MAGIC 0x0fff
#define PT_TTHEADER_MAGIC 0x1000
/* The most transforms one frame may name. */
#define PT_HDR_MAX_XFORMS 8
/* TTHeader's largest header, as Kitex bounds it. */
#define PT_TTHEADER_MAX_HEADER 65536

/* Info block ids. */
enum {
  PT_INFO_PADDING = 0x00,
  PT_INFO_KV = 0x01,    /* both: string keys and values */
  PT_INFO_INTKV = 0x10, /* TTHeader: u16 keys, string values */
  PT_INFO_ACL = 0x11    /* TTHeader: one token */
};
/* Kitex's integer key RPCTimeout (ms, a decimal string). */
#define PT_INFO_RPC_TIMEOUT 12
/* Transform ids (Apache's ZLIB; ZSTD is fbthrift's id, a petrel
 * extension here that both sides must enable). */
enum { PT_XF_ZLIB = 1, PT_XF_ZSTD = 5 };
/* Protocol ids in headers (THeader: 0 binary, 1 JSON as fbthrift, 2
 * compact; TTHeader: 0 binary, 2 compact). */
enum { PT_HPROTO_BINARY = 0, PT_HPROTO_JSON = 1, PT_HPROTO_COMPACT = 2 };

/* The PT_PROTO_* of a header's protocol id, -1 when petrel speaks none;
 * and back. */
int pt_hdr_proto(int kind, uint32_t id);
uint32_t pt_hdr_proto_id(int proto);

/* What one header frame says. Offsets are from the frame's first byte
 * (its LENGTH). */
typedef struct pt_hdr {
  int kind;                       /* PT_HDR_THEADER or PT_HDR_TTHEADER */
  uint16_t flags;
  uint32_t seqid;
  uint32_t proto_id;              /* as on the wire */
  int proto;                      /* PT_PROTO_*, -1 if petrel has none */
  int nxf;                        /* transforms, in the order applied */
  uint32_t xf[PT_HDR_MAX_XFORMS];
  uint32_t info_at, info_end;     /* the info blocks */
  uint32_t payload_at;
  uint32_t frame_len;             /* 4 + LENGTH */
  uint32_t nkv;                   /* key/value entries, both kinds */
  int acl;                        /* an ACL token is there */
  int tmo;                        /* a deadline entry: 0 none, 1 the
                                     string key, 2 TTHeader's integer key */
  uint32_t tmo_at, tmo_len;       /* its value (pt_hdr_timeout) */
  const char *why;                /* after PT_BAD */
} pt_hdr;

/* Parse the header frame at p (its LENGTH first), n bytes of it seen so
 * far. LENGTH must be at most max_frame. Returns its size (4 + LENGTH)
 * when all of it is there and valid, PT_NEED, or PT_BAD (h->why). */
int pt_hdr_parse(const unsigned char *p, size_t n, uint64_t max_frame,
                 pt_hdr *h);

/* One info entry. */
typedef struct pt_hdr_kv {
  int type;                 /* PT_INFO_KV, PT_INFO_INTKV or PT_INFO_ACL */
  uint16_t ikey;            /* PT_INFO_INTKV */
  const unsigned char *k;   /* PT_INFO_KV */
  uint32_t klen;
  const unsigned char *v;   /* the value (ACL: the token) */
  uint32_t vlen;
} pt_hdr_kv;

/* Walks a parsed frame's info entries in wire order. */
typedef struct pt_hdr_iter {
  uint32_t pos, left;
  int block;
} pt_hdr_iter;
static inline void pt_hdr_iter_init(const pt_hdr *h, pt_hdr_iter *it) {
  it->pos = h->info_at;
  it->left = 0;
  it->block = 0;
}
/* 1 and the next entry in kv, or 0 at the end. frame: the bytes
 * pt_hdr_parse accepted. */
int pt_hdr_next(const unsigned char *frame, const pt_hdr *h, pt_hdr_iter *it,
                pt_hdr_kv *kv);

/* Check n bytes at p as the info blocks of a header of this kind, as
 * pt_hdr_parse checks them inside a frame (p: what [info_at, info_end)
 * of a parsed frame held). Sets h as for a frame of n bytes starting at p
 * that is all info blocks (info_at 0, payload_at and frame_len n):
 * pt_hdr_next(p, h, ...) walks them. 0, or PT_BAD (h->why). */
int pt_hdr_info(int kind, const unsigned char *p, size_t n, pt_hdr *h);

/* The deadline entry of a parsed frame (noted while its info blocks were
 * checked: no second walk): TTHeader's RPCTimeout (integer key 12) or else
 * the string key "client_timeout" (fbthrift's; THeader's clients send
 * it), the last of each kind there. 1 and its value bytes, or 0 when the
 * frame has neither. */
int pt_hdr_timeout(const unsigned char *frame, const pt_hdr *h,
                   const unsigned char **v, uint32_t *vlen);

/* What to write in a header. THeader takes PT_INFO_KV entries only. */
typedef struct pt_hdr_out {
  int kind;
  uint16_t flags;
  uint32_t seqid;
  uint32_t proto_id;
  int nxf;
  uint32_t xf[PT_HDR_MAX_XFORMS];
  const pt_hdr_kv *kv;
  size_t nkv;
} pt_hdr_out;

/* The bytes from LENGTH to the payload (14 + the padded header), or 0
 * when they cannot be written (a value too long for TTHeader's u16
 * lengths, a header past its u16 size, an entry the kind cannot carry). */
size_t pt_hdr_size(const pt_hdr_out *o);
/* Write them at w (room: pt_hdr_size(o)), LENGTH as 0 until
 * pt_hdr_set_len. Returns the end. */
unsigned char *pt_hdr_write(unsigned char *w, const pt_hdr_out *o);
static inline void pt_hdr_set_len(unsigned char *frame, size_t total) {
  pt_st32(frame, (uint32_t)(total - 4));
}

/* ---- one connection's framing ------------------------------------------- */

typedef struct pt_framing {
  uint8_t unframed; /* no length: the scanner finds where messages end */
  uint8_t outer;    /* a 4-byte length around each message or header frame */
  uint8_t header;   /* PT_HDR_* */
  uint8_t inner;    /* TTHeader: the payload carries its own 4-byte length */
} pt_framing;

/* Where one message's payload is. */
typedef struct pt_frame {
  size_t payload_at, payload_len; /* from the first byte parsed */
  int inner;                      /* the payload had its own length */
  pt_hdr hdr;                     /* header frames */
  const char *why;                /* after PT_BAD */
} pt_frame;

/* One message under framing f (not unframed) at p, n bytes seen: its whole
 * size, PT_NEED, or PT_BAD (fr->why). Lengths are checked against
 * max_frame from their first 4 bytes, header sizes from the first 14 (18
 * inside a frame). A TTHeader payload whose first 4 bytes are its own
 * length, followed by an envelope, is taken as framed (Kitex's
 * TTHeaderFramed; fr->inner). */
int pt_frame_parse(const pt_framing *f, const unsigned char *p, size_t n,
                   uint64_t max_frame, pt_frame *fr);

/* Writing: pt_frame_open reserves and writes what comes before the
 * payload (lengths as placeholders, the header) into the writer's region
 * (room: pt_frame_room) and notes where; pt_frame_close patches the
 * lengths once payload bytes follow. The region's bytes must stay where
 * they are meanwhile (a pt_wr over a buffer commits them in place). */
typedef struct pt_frame_mark {
  unsigned char *outer, *hdr, *inner; /* length fields, NULL when none */
  size_t at;                          /* writer length at the start */
  size_t at_payload;                  /* ... and where the payload starts */
} pt_frame_mark;
size_t pt_frame_room(const pt_framing *f, const pt_hdr_out *h);
unsigned char *pt_frame_open(unsigned char *w, const pt_framing *f,
                             const pt_hdr_out *h, pt_frame_mark *m,
                             size_t at);
/* end: the writer's length after the payload. */
void pt_frame_close(const pt_frame_mark *m, size_t end);

#endif
