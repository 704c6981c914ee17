/*
 * pt_plan.h — compiled Thrift schemas: immutable field plans per struct,
 * wire-level helpers (big-endian, skipping unknown values) and the numeric
 * list kernels. No Lua in here.
 *
 * A pt_schema is an arena holding every plan and type descriptor of one
 * compiled schema. It is immutable once pt_schema_finish succeeds and is
 * reference-counted with atomic operations, so several Lua states (each
 * with its own interned field-name strings) may share one.
 */
#ifndef PT_PLAN_H
#define PT_PLAN_H

#include <stddef.h>
#include <stdint.h>

/* Thrift wire types (TType). */
#define PT_T_STOP 0
#define PT_T_BOOL 2
#define PT_T_BYTE 3
#define PT_T_DOUBLE 4
#define PT_T_I16 6
#define PT_T_I32 8
#define PT_T_I64 10
#define PT_T_STRING 11
#define PT_T_STRUCT 12
#define PT_T_MAP 13
#define PT_T_SET 14
#define PT_T_LIST 15
#define PT_T_UUID 16

/* Finer kinds than the wire type: what the Lua value looks like. */
#define PT_KINDS(X)                  \
  X(BOOL, "bool", PT_T_BOOL)         \
  X(I8, "i8", PT_T_BYTE)             \
  X(I16, "i16", PT_T_I16)            \
  X(I32, "i32", PT_T_I32)            \
  X(I64, "i64", PT_T_I64)            \
  X(DOUBLE, "double", PT_T_DOUBLE)   \
  X(STRING, "string", PT_T_STRING)   \
  X(BINARY, "binary", PT_T_STRING)   \
  X(UUID, "uuid", PT_T_UUID)         \
  X(ENUM, "enum", PT_T_I32)          \
  X(STRUCT, "struct", PT_T_STRUCT)   \
  X(LIST, "list", PT_T_LIST)         \
  X(SET, "set", PT_T_SET)            \
  X(MAP, "map", PT_T_MAP)

enum {
#define X(k, name, tt) PT_K_##k,
  PT_KINDS(X)
#undef X
  PT_K_COUNT
};

extern const char *const pt_kind_names[PT_K_COUNT];
extern const uint8_t pt_kind_ttype[PT_K_COUNT];

/* Requiredness. */
#define PT_REQ_DEFAULT 0
#define PT_REQ_REQUIRED 1
#define PT_REQ_OPTIONAL 2

/* Plan kinds. */
#define PT_PLAN_STRUCT 0
#define PT_PLAN_UNION 1
#define PT_PLAN_EXCEPTION 2

typedef struct pt_plan pt_plan;
typedef struct pt_type pt_type;

struct pt_type {
  uint8_t kind;   /* PT_K_* */
  uint8_t ttype;  /* wire type */
  uint8_t typed;  /* list/set of numbers: decode as a typed array */
  const pt_type *elem; /* list, set: element; map: key */
  const pt_type *val;  /* map: value */
  const pt_plan *plan; /* struct */
  int32_t aux;         /* enum: index of the enum (binding's table) */
};

typedef struct pt_field {
  int16_t id;
  uint8_t req;          /* PT_REQ_* */
  uint8_t has_default;
  int32_t index;        /* declaration index: key of the name in the binding */
  const char *name;
  const pt_type *type;
} pt_field;

struct pt_plan {
  const char *name;
  int kind;              /* PT_PLAN_* */
  int index;             /* in the schema */
  int nfields;
  pt_field *fields;      /* fixed-size fields first, then the rest */
  int32_t *order;        /* fields[] indices in declaration (wire) order */
  int16_t min_id, max_id;
  int16_t *slot;         /* id - min_id -> fields[] index, -1: unknown */
  int nrequired;
  int nchecked;          /* fields that are required or have a default:
                            the decoder scans for missing ones only then */
  size_t fixed_size;     /* encoded bytes of the fixed-size fields that are
                            always written (required or defaulted) */
  int nfixed;            /* fields[0..nfixed) are fixed-size */
  int32_t key_base;      /* binding's use: field f's name key is
                            key_base + f->index */
};

typedef struct pt_schema pt_schema;

/* Building. Names are copied into the arena. Return NULL/-1 on ENOMEM or
 * misuse (a message is kept: pt_schema_error). */
pt_schema *pt_schema_new(int nplans);
pt_plan *pt_schema_plan(pt_schema *s, int i);
int pt_schema_nplans(const pt_schema *s);
int pt_plan_init(pt_schema *s, int i, const char *name, int kind, int nfields);
pt_type *pt_type_new(pt_schema *s, int kind);
int pt_plan_set_field(pt_schema *s, int plan, int i, int id, const char *name,
                      int req, int has_default, const pt_type *type);
/* Sorts fields, builds slot tables and fixed sizes; then immutable. */
int pt_schema_finish(pt_schema *s);
const char *pt_schema_error(const pt_schema *s);
/* An opaque blob kept with the schema (the binding keeps what another Lua
 * state needs to adopt the schema: defaults, enums, names). */
int pt_schema_set_blob(pt_schema *s, const void *p, size_t n);
const char *pt_schema_blob(const pt_schema *s, size_t *n);
void pt_schema_ref(pt_schema *s);
void pt_schema_unref(pt_schema *s);

/* Field lookup by wire id: the fields[] index or -1. */
static inline int pt_plan_slot(const pt_plan *p, int id) {
  if (id < p->min_id || id > p->max_id) return -1;
  return p->slot[id - p->min_id];
}

/* Fixed encoded width of a value of kind k, 0 if variable. */
static inline size_t pt_kind_width(int k) {
  switch (k) {
    case PT_K_BOOL:
    case PT_K_I8: return 1;
    case PT_K_I16: return 2;
    case PT_K_I32:
    case PT_K_ENUM: return 4;
    case PT_K_I64:
    case PT_K_DOUBLE: return 8;
    case PT_K_UUID: return 16;
    default: return 0;
  }
}

static inline size_t pt_ttype_width(int t) {
  switch (t) {
    case PT_T_BOOL:
    case PT_T_BYTE: return 1;
    case PT_T_I16: return 2;
    case PT_T_I32: return 4;
    case PT_T_I64:
    case PT_T_DOUBLE: return 8;
    case PT_T_UUID: return 16;
    default: return 0;
  }
}

/* ---- wire helpers ---------------------------------------------------- */

static inline uint16_t pt_ld16(const unsigned char *p) {
  return (uint16_t)((p[0] << 8) | p[1]);
}
static inline uint32_t pt_ld32(const unsigned char *p) {
  uint32_t v;
  __builtin_memcpy(&v, p, 4);
  return __builtin_bswap32(v);
}
static inline uint64_t pt_ld64(const unsigned char *p) {
  uint64_t v;
  __builtin_memcpy(&v, p, 8);
  return __builtin_bswap64(v);
}
static inline void pt_st16(unsigned char *p, uint16_t v) {
  p[0] = (unsigned char)(v >> 8);
  p[1] = (unsigned char)v;
}
static inline void pt_st32(unsigned char *p, uint32_t v) {
  v = __builtin_bswap32(v);
  __builtin_memcpy(p, &v, 4);
}
static inline void pt_st64(unsigned char *p, uint64_t v) {
  v = __builtin_bswap64(v);
  __builtin_memcpy(p, &v, 8);
}

/* Skip one value of wire type ttype in [p, end). Returns the bytes it
 * occupies, 0 if it is cut short or malformed (bad type, negative size,
 * nesting deeper than max_depth). Checks every length against the bytes
 * present, allocates nothing; recurses up to max_depth deep, so callers
 * bound it. */
size_t pt_skip(const unsigned char *p, const unsigned char *end, int ttype,
               int max_depth);

/* ---- incremental message scanner (unframed transports) --------------- */

/* Finds where one Thrift Binary message (envelope, strict or not, then the
 * body struct) ends while its bytes arrive in pieces. Every byte is looked
 * at once, whatever the size of the pieces, so a peer dribbling a large
 * message costs linear time; nothing is allocated. Declared sizes are
 * checked against max_bytes as soon as they are read. */
#define PT_SCAN_MAXDEPTH 128
enum { PT_SCAN_MORE = 0, PT_SCAN_DONE = 1, PT_SCAN_BAD = -1 };

typedef struct pt_scan_frame {
  uint8_t kind;  /* PT_T_STRUCT, PT_T_LIST (also sets) or PT_T_MAP */
  uint8_t et[2]; /* element type; map: key and value */
  uint32_t left; /* values still to come (maps: keys and values) */
} pt_scan_frame;

typedef struct pt_scan {
  uint64_t fed;       /* bytes of the message looked at so far */
  uint64_t skip;      /* raw bytes to pass before the next token */
  uint64_t max_bytes; /* a message longer than this is refused */
  int max_depth;
  int state;          /* what the pending token is */
  int after;          /* what follows the current skip */
  uint8_t want, have; /* pending token: bytes needed / gathered */
  uint8_t tok[8];
  uint8_t ftype;      /* field type between the type byte and the id */
  int sp;             /* frames on the stack */
  const char *err;    /* after PT_SCAN_BAD */
  pt_scan_frame st[PT_SCAN_MAXDEPTH];
} pt_scan;

/* max_depth is capped at PT_SCAN_MAXDEPTH. */
void pt_scan_init(pt_scan *s, uint64_t max_bytes, int max_depth);
/* Start over (the next message). */
void pt_scan_reset(pt_scan *s);
/* Look at the next n bytes of the message. Returns PT_SCAN_MORE (all n
 * used, the message goes on), PT_SCAN_DONE (the message ends after *used
 * of them; s->fed is its whole length) or PT_SCAN_BAD (s->err says why;
 * s->fed is where: just past the offending token, or at its start when it
 * would pass max_bytes). The answer, s->fed and s->err do not depend on
 * how the bytes were split into pieces. */
int pt_scan_feed(pt_scan *s, const unsigned char *p, size_t n, size_t *used);

/* ---- numeric kernels (AVX2 with a scalar twin) ------------------------ */

/* Copy n big-endian values of width w (2, 4, 8) from src into native dst
 * (or back: the swap is symmetric). */
void pt_bswap_copy(void *dst, const void *src, size_t n, int w);
/* 1 when the AVX2 path is in use (CPU has it and PETREL_SCALAR unset). */
int pt_simd_active(void);
/* Force the scalar path (tests compare both). */
void pt_simd_force_scalar(int on);

#endif
