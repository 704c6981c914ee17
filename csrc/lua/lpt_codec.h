/*
 * lpt_codec.h — what the codec's binding files share: the schema and type
 * userdata (lpt_schema.c), the typed arrays (lpt_array.c), the table
 * walkers (lpt_codec.c) and the wire-level functions (lpt_wire.c).
 */
#ifndef LPT_CODEC_H
#define LPT_CODEC_H

#include "../pt_header.h"
#include "../pt_plan.h"
#include "../pt_scan.h"
#include "lpt.h"

#define LPT_SCHEMA_MT "petrel.schema"
#define LPT_TYPE_MT "petrel.type"
#define LPT_ARRAY_MT "petrel.array"
#define LPT_MAXDEPTH_DEFAULT 64
#define LPT_MAXDEPTH_LIMIT 200

/* A type's user value: the schema context table, these slots. */
#define CX_KEYS 1     /* field-name strings, by plan key_base + index + 1 */
#define CX_DEFAULTS 2 /* default values, same keys */
#define CX_ENUMS 3    /* { {value -> name}, {name -> value} } per enum */
#define CX_LIST_MT 4
#define CX_SET_MT 5
#define CX_MAP_MT 6
#define CX_ARRAY_MT 7

/* Key under which a decoded struct keeps the fields the schema does not
 * know ({unknown = true}), as Binary bytes whatever the protocol; encode
 * re-emits them in its protocol. */
extern const char lpt_unknown_key;

typedef struct lpt_Schema {
  pt_schema *s;
} lpt_Schema;

typedef struct lpt_Type {
  pt_schema *s;
  const pt_plan *plan;
} lpt_Type;

lpt_Type *lpt_checktype(lua_State *L, int idx);

/* ---- typed arrays (lpt_array.c) --------------------------------------- */

enum { AR_I8, AR_I16, AR_I32, AR_I64, AR_DOUBLE, AR_COUNT };
extern const char *const lpt_ar_names[AR_COUNT];
extern const uint8_t lpt_ar_width[AR_COUNT];

typedef struct lpt_Array {
  int32_t kind;
  int32_t pad_;
  size_t n;
  unsigned char *data;  /* inl below, or the block's */
  pt_block *blk;        /* large arrays: a block of the state's pool */
  unsigned char inl[];  /* 8-byte aligned, as Lua aligns userdata */
} lpt_Array;

/* Push a new array of n elements (uninitialized); mt: stack index of the
 * array metatable, or 0 to look it up. Raises on ENOMEM. */
lpt_Array *lpt_array_alloc(lua_State *L, int kind, size_t n, int mt);
/* The array kind holding values of type kind k (PT_K_*), -1 if none. */
int lpt_ar_kind_of(int k);

/* ---- the walkers, for message views (lpt_codec.c) --------------------- */

void lpt_push_uuid(lua_State *L, const unsigned char *u); /* 36-char text */
void lpt_push_copy(lua_State *L, int idx, int depth); /* deep copy */
/* Decode one value as T:decode would, from the context table at cx: a
 * struct (plan, t NULL or a struct type) or a container (t) at off in
 * [base, base + len), in protocol proto, nesting depth levels below a
 * message's root. Options: flags (1 enum_names, 2 int64_as_string, 4
 * typed, 8 unknown) and max_depth, then the decode options of the table
 * at opts (0: none; its protocol is overridden). prefix names the value in
 * messages. Pushes it and returns 0, or returns -1 with "path: problem at
 * offset N" in err (offsets from base). */
int lpt_decode_at(lua_State *L, int cx, const pt_plan *plan, const pt_type *t,
                  const char *prefix, int depth, const unsigned char *base,
                  size_t len, size_t off, int proto, int flags, int max_depth,
                  int opts, char *err, size_t errlen);
/* Write field `slot` of plan p (header, then the Lua value at vidx) in
 * protocol proto with wr (*last: Compact's previous field id). Raises
 * "Plan.field: problem" on a value that does not fit the field. */
void lpt_encode_field(lua_State *L, int cx, const pt_plan *p, int slot,
                      int vidx, pt_wr *wr, int proto, int *last);

/* ---- message views (lpt_view.c) ----------------------------------------- */

#define LPT_VIEW_MT "petrel.view"
#define LPT_VSRC_MT "petrel.message"
#define CX_VIEW 8 /* the context table's slot for the views' name index */

/* If the value at idx is a message view: write its bytes as a value of
 * struct plan p (t NULL) or of container type t in protocol proto with wr
 * (copied, or linked when at least link_min long; transcoded when the
 * view is in the other protocol) and return 1; 0 when it is no view; -1
 * with a message in err when it cannot be (expired, another type,
 * malformed bytes). */
int lpt_view_write(lua_State *L, int idx, const pt_plan *p, const pt_type *t,
                   pt_wr *wr, int proto, size_t link_min, char *err,
                   size_t errlen);
/* The bytes of a message source at idx (T:decode takes them), or NULL
 * when idx is no message source. */
const unsigned char *lpt_vsrc_bytes(lua_State *L, int idx, size_t *len);
/* Framers hand lazy servers their messages: lpt_msg_take(L, m, b, skip,
 * n, consume) makes message m (a stack index) hold bytes [skip, skip + n)
 * of b (pinned where they lie in one block, else copied once) and
 * consumes `consume` bytes of b; lpt_msg_hold(L, m) makes it hold the
 * string on top of the stack (popped). Both expire m's earlier views and
 * push m; a retained message raises. */
void lpt_msg_take(lua_State *L, int idx, pt_buf *b, size_t skip, size_t n,
                  size_t consume);
void lpt_msg_hold(lua_State *L, int idx);
void lpt_open_view(lua_State *L);

/* ---- framers (lpt_frame.c) --------------------------------------------- */

#define LPT_FRAMER_MT "petrel.framer"

/* One connection's framing: how its messages are read (fr:next) and
 * written (T:encode_message(..., fr, ...)). */
typedef struct lpt_Framer {
  pt_framing f;        /* decided, or to detect */
  int autodetect, decided;
  uint64_t max_frame;
  uint32_t max_name;
  uint32_t accept;     /* bit id: transform id accepted on input */
  /* writing */
  uint16_t flags;
  int nxf;
  uint32_t xf[PT_HDR_MAX_XFORMS]; /* applied in this order */
  int echo;            /* replies as the last frame read: flags,
                          transforms, a TTHeader's inner frame */
  char *acl;           /* TTHeader ACL token to send, or NULL */
  size_t acl_len;
  pt_scan *scan;       /* unframed input: made at its first message (1.6
                          KiB: connections that are framed do without) */
  int raw_info;        /* fr:next gives a header frame's info blocks as
                          their bytes (fr:info decodes them) */
} lpt_Framer;

lpt_Framer *lpt_testframer(lua_State *L, int idx);
const char *lpt_framing_name(const pt_framing *f);
/* The header of one message written through fr (see lpt_frame.c). */
void lpt_framer_header(lua_State *L, lpt_Framer *fr, int hidx, int32_t seqid,
                       int proto, pt_hdr_out *o, pt_hdr_kv *kv, size_t cap);

/* ---- opening ---------------------------------------------------------- */

/* each: stack = module, state, buffer metatable (lpt_open_* contract) */
void lpt_open_schema(lua_State *L);
void lpt_open_array(lua_State *L);
void lpt_open_wire(lua_State *L);
void lpt_open_frame(lua_State *L);

/* Contiguous input: a string or a buffer's readable bytes. */
const unsigned char *lpt_input_bytes(lua_State *L, int idx, size_t *len);
/* A protocol name at idx ("binary" default when nil). */
int lpt_checkproto(lua_State *L, int idx);

#endif
