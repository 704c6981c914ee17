/*
 * pt_plan.h — compiled Thrift schemas: immutable field plans per struct,
 * and the numeric list kernels. The wire layer is pt_thrift.h. No Lua in
 * here.
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

#include "pt_thrift.h"

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
  pt_field *fields;      /* in ascending id order: the wire order, as
                            Apache's generators write (get_sorted_members) */
  int32_t *order;        /* fields[] indices in declaration order */
  int16_t min_id, max_id;
  int16_t *slot;         /* id - min_id -> fields[] index, -1: unknown */
  int nrequired;
  int nchecked;          /* fields that are required or have a default:
                            the decoder scans for missing ones only then */
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
/* Sorts fields by id, builds slot tables; then immutable. */
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

/* Fixed Binary width of a value of kind k, 0 if variable. */
static inline size_t pt_kind_width(int k) {
  return pt_ttype_width(pt_kind_ttype[k]);
}

#include "pt_scan.h"

/* ---- numeric kernels (AVX2 with a scalar twin) ------------------------ */

/* Copy n big-endian values of width w (2, 4, 8) from src into native dst
 * (or back: the swap is symmetric). */
void pt_bswap_copy(void *dst, const void *src, size_t n, int w);
/* 1 when the AVX2 path is in use (CPU has it and PETREL_SCALAR unset). */
int pt_simd_active(void);
/* Force the scalar path (tests compare both). */
void pt_simd_force_scalar(int on);

/* Compact numeric lists: n zigzag varints to and from native values of
 * width w (2, 4 or 8 bytes; i16, i32, i64).
 * pt_zz_encode writes them at dst, which has room for n * PT_ZZ_MAX(w)
 * bytes, and returns the bytes written. src may lie inside that room at
 * or after dst + n * (PT_ZZ_MAX(w) - w) (encoding in place: each value is
 * read before its bytes are written).
 * pt_zz_decode reads n varints from the avail bytes at p into dst and
 * returns the bytes read, or 0 when they are cut short or malformed (too
 * long, or a value outside the width); *bad then says which element
 * (n = 0 reads nothing: 0 too). */
#define PT_ZZ_MAX(w) ((w) == 8 ? 10 : (w) == 4 ? 5 : 3)
size_t pt_zz_encode(unsigned char *dst, const void *src, size_t n, int w);
size_t pt_zz_decode(void *dst, const unsigned char *p, size_t avail, size_t n,
                    int w, size_t *bad);

#endif
