/*
 * pt_view.h — indexes over encoded Thrift values, for views that read a
 * message where it lies (no decode, no copy). No Lua here: the binding
 * (csrc/lua/lpt_view.c) keeps these indexes in per-message arenas and makes
 * Lua values of what they point at.
 *
 * Offsets count from the start of the message's bytes [base, base + len),
 * len < PT_VIEW_MAX. Every reader checks against len: nothing here looks
 * outside [base, base + len) or allocates.
 *
 * A struct level is scanned field by field on demand: pt_vs_find stops at
 * the field asked for (reading field 1 of a 6 MB message reads a few
 * bytes), and records every field it passes, so each field is found once
 * and every later lookup is O(1). A value is skipped (its end found) only
 * when the scan moves past it, or its end is told (pt_vs_set_end: a nested
 * view that indexed itself knows it). The first occurrence of a field id
 * counts (decode keeps the last; only broken or hostile writers repeat an
 * id).
 *
 * A list, set or map level: its header is read once (pt_vl_open);
 * elements of a fixed width are found by arithmetic, others through an
 * offsets array filled in one pass over that level (pt_vl_index) on the
 * first element access.
 *
 * Errors: -1, with pt_verr saying where (offset, element) and what.
 */
#ifndef PT_VIEW_H
#define PT_VIEW_H

#include <stddef.h>
#include <stdint.h>

#include "pt_plan.h"

#define PT_VIEW_MAX 0xfffffff0u /* messages are shorter than this */

typedef struct pt_verr {
  size_t off;      /* where the problem is */
  int64_t elem;    /* the element (0-based) it is in, -1 if none */
  int field;       /* the struct field slot it is in, -1 if none */
  char msg[160];
} pt_verr;

/* ---- struct levels ---------------------------------------------------- */

typedef struct pt_vslot {
  uint32_t off;   /* value start */
  uint32_t end;   /* value end, 0 until known */
  uint8_t found;  /* the field is on the wire */
  uint8_t boolv;  /* Compact bool field: its value (in the header) */
} pt_vslot;

typedef struct pt_vstruct {
  const pt_plan *plan;
  int proto;       /* PT_PROTO_* */
  int budget;      /* nesting levels a skipped value may take */
  uint32_t start;  /* first field header */
  uint32_t scan;   /* where the scan goes on */
  uint32_t end;    /* after the STOP byte; 0 until the scan got there */
  int32_t last;    /* Compact: the previous header's id */
  int32_t pending; /* slot whose value starts at scan, not yet skipped */
  pt_vslot slot[]; /* one per plan field (fields[] order) */
} pt_vstruct;

/* Bytes a pt_vstruct of plan p takes. */
size_t pt_vs_size(const pt_plan *p);
/* Start the index of the struct whose first field header is at start. */
void pt_vs_init(pt_vstruct *s, const pt_plan *p, int proto, uint32_t start,
                int budget);
/* Scan until field slot `want` is on record (want < 0: to the STOP).
 * Returns 1 found, 0 not on the wire (the scan reached the STOP), -1 on
 * malformed or cut short input (e says what; the index keeps what it had,
 * so asking again gives the same error). A field whose id the plan knows
 * but whose wire type differs is skipped, as decode skips it. */
int pt_vs_find(pt_vstruct *s, const unsigned char *base, size_t len,
               int want, pt_verr *e);
/* A nested value's end, learnt elsewhere (its own index): later scans
 * move past it without skipping it again. */
static inline void pt_vs_set_end(pt_vstruct *s, int slot, uint32_t end) {
  if (s->slot[slot].found && !s->slot[slot].end) s->slot[slot].end = end;
}

/* ---- list, set and map levels ------------------------------------------ */

typedef struct pt_vlist {
  int proto;
  uint8_t map;     /* a map: entries are key, value */
  uint8_t et, vt;  /* element (map: key) and map value wire types */
  uint8_t fixed;   /* every element (entry) has a fixed width: no index */
  uint32_t ew;     /* fixed width of an element (an entry) */
  uint32_t kw;     /* fixed maps: width of a key */
  uint32_t count;
  uint32_t body;   /* first element */
  uint32_t end;    /* after the last element; 0 until known */
} pt_vlist;

/* Read the header of the list / set (ttype LIST or SET: element type
 * want_et) or map (MAP: key want_et, value want_vt) value at off. Checks
 * what decode checks before any element: the header, the element types
 * (when there are elements), the count against the bytes left. */
int pt_vl_open(pt_vlist *l, int proto, const unsigned char *base, size_t len,
               uint32_t off, int ttype, int want_et, int want_vt,
               pt_verr *e);
/* Offsets an index of l takes (count + 1 for lists, 2 * count + 1 for
 * maps), 0 when the elements have a fixed width. */
static inline size_t pt_vl_noffs(const pt_vlist *l) {
  if (l->fixed) return 0;
  return l->map ? 2 * (size_t)l->count + 1 : (size_t)l->count + 1;
}
/* One pass over the elements: offs[k] (relative to body) of element k
 * (maps: key i at 2i, value at 2i + 1), and the end last; sets l->end.
 * budget: nesting levels each element may take. */
int pt_vl_index(pt_vlist *l, const unsigned char *base, size_t len,
                uint32_t *offs, int budget, pt_verr *e);
/* Fixed-width levels: the end (checked by pt_vl_open). */
static inline uint32_t pt_vl_fixed_end(const pt_vlist *l) {
  return l->body + l->count * l->ew;
}

/* Skip one value of wire type t at off (within len): its end, or 0 with
 * e filled. A Compact bool field value has no bytes: not for those. */
uint32_t pt_v_skip(int proto, const unsigned char *base, size_t len,
                   uint32_t off, int t, int budget, pt_verr *e);

/* ---- scalars ------------------------------------------------------------- */

/* A scalar read from the wire: integers (bool, i8, i16, i32, enum, i64)
 * in i, doubles in d, strings, binaries and UUIDs as the bytes p[0..n). */
typedef struct pt_vval {
  int64_t i;
  double d;
  const unsigned char *p;
  size_t n;
} pt_vval;

/* Read the scalar of kind `kind` (PT_K_*, not a struct or container) at
 * off, in protocol proto; every length is checked against len. A Compact
 * bool field's value lies in its header: not for those. 0, or -1 with e
 * saying what (e->off = off; e->field and e->elem are left as they are).
 * The views' C API and their LuaJIT FFI path both read through this, so
 * they give the same values and the same errors. */
int pt_v_scalar(int proto, const unsigned char *base, size_t len,
                uint32_t off, int kind, pt_vval *out, pt_verr *e);

#endif
