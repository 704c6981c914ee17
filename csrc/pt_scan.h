/*
 * pt_scan.h — the incremental message scanner for unframed transports:
 * finds where one Thrift message ends while its bytes arrive in pieces.
 * No Lua in here.
 */
#ifndef PT_SCAN_H
#define PT_SCAN_H

#include <stddef.h>
#include <stdint.h>

#include "pt_thrift.h"

/* The envelope (Binary strict or not, or Compact: read with pt_msg_head /
 * pt_msg_tail) says the protocol of the body struct that follows. Every
 * byte is looked at once, whatever the size of the pieces, so a peer
 * dribbling a large message costs linear time; nothing is allocated.
 * Declared sizes are checked against max_bytes as soon as they are read. */
#define PT_SCAN_MAXDEPTH 128
enum { PT_SCAN_MORE = 0, PT_SCAN_DONE = 1, PT_SCAN_BAD = -1 };

typedef struct pt_scan_frame {
  uint8_t kind;  /* PT_T_STRUCT, PT_T_LIST (also sets) or PT_T_MAP */
  uint8_t et[2]; /* element type; map: key and value */
  uint32_t left; /* values still to come (maps: keys and values) */
  int32_t last;  /* Compact struct: the previous field id */
} pt_scan_frame;

typedef struct pt_scan {
  uint64_t fed;       /* bytes of the message looked at so far */
  uint64_t skip;      /* raw bytes to pass before the next token */
  uint64_t max_bytes; /* a message longer than this is refused */
  uint64_t vleft;     /* Compact: varints still to pass in a run */
  uint64_t vacc;      /* Compact: the varint being read */
  int max_depth;
  int state;          /* what the pending token is */
  int after;          /* what follows the current skip */
  int proto;          /* of the body: PT_PROTO_* (from the envelope) */
  uint8_t want, have; /* pending token: bytes needed / gathered */
  uint8_t vlen, vmax; /* Compact: bytes of the current varint, the most */
  uint8_t vuse;       /* Compact: what the varint being read is */
  uint8_t ftype;      /* field type between the type byte and the id */
  uint8_t tok[16];
  int sp;             /* frames on the stack */
  const char *err;    /* after PT_SCAN_BAD */
  pt_msg env;         /* the envelope, once read */
  pt_scan_frame st[PT_SCAN_MAXDEPTH];
} pt_scan;

/* max_depth is capped at PT_SCAN_MAXDEPTH. */
void pt_scan_init(pt_scan *s, uint64_t max_bytes, int max_depth);
/* Start over (the next message). */
void pt_scan_reset(pt_scan *s);
/* Look at the next n bytes of the message. Returns PT_SCAN_MORE (all n
 * used, the message goes on), PT_SCAN_DONE (the message ends after *used
 * of them; s->fed is its whole length, s->env its envelope) or
 * PT_SCAN_BAD (s->err says why; s->fed is where: just past the offending
 * token, or at its start when it would pass max_bytes). The answer,
 * s->fed and s->err do not depend on how the bytes were split into
 * pieces. */
int pt_scan_feed(pt_scan *s, const unsigned char *p, size_t n, size_t *used);

#endif
