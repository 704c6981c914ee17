/*
 * pt_json.h — Apache Thrift's JSON protocol (TJSONProtocol, the one
 * `--protocol json` speaks) in the core: writers and readers of its
 * tokens and of the Thrift events the walkers drive (struct, field, list,
 * set and map begin / end), skipping, and the message envelope. No Lua
 * here.
 *
 * The wire format: a message is [1,"name",type,seqid,{struct}]; a struct
 * is an object of fields "id":{"type":value} (ids and map keys that are
 * numbers are quoted: JSON keys are strings); a list or set is
 * ["type",count,v1,v2,...]; a map ["ktype","vtype",count,{"k":v,...}].
 * Type names: tf i8 i16 i32 i64 dbl str rec map set lst uid. bool is 0 or
 * 1; binary is base64 (written with padding, read with or without);
 * doubles use 17 significant digits, and NaN / Infinity / -Infinity are
 * quoted strings, as Apache's C++ library writes them.
 *
 * Separators depend on where a token is: a context stack (Apache's
 * JSONListContext / JSONPairContext) says whether a ',' or ':' comes
 * first and whether a number must be quoted (an object key). Writers and
 * readers keep it in a pt_jctx that the caller owns.
 *
 * Reader contract (pt_thrift.h's): a reader looks at the n bytes at p and
 * returns the bytes it consumed, PT_BAD, or PT_NEED for a proper prefix;
 * it updates the context only when it succeeds, so a caller that gets
 * PT_NEED calls again on a longer input. Readers never look outside
 * [p, p + n). Whitespace between tokens is allowed (Apache's libraries
 * write none).
 *
 * Writer contract: writers append to a pt_wr (pt_thrift.h) and make their
 * own room; they return 0, or -1 when the writer could not grow.
 */
#ifndef PT_JSON_H
#define PT_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "pt_thrift.h"

/* Contexts: two per struct level (the struct's object and a field's
 * object), so this bounds nesting at about half of it. */
#define PT_JSON_MAXCTX 512

typedef struct pt_jctx {
  int top;                      /* the current context: st[top] */
  uint8_t st[PT_JSON_MAXCTX];   /* kind | PT_JC_FIRST | PT_JC_COLON */
} pt_jctx;

/* Start over (a message, or a struct decoded alone). */
static inline void pt_json_reset(pt_jctx *jc) {
  jc->top = 0;
  jc->st[0] = 0; /* the base context: no separators */
}

/* The type name of TType t ("i32"), NULL if it has none; and back (len
 * bytes at s): the TType, 0 if the name is no type. */
const char *pt_json_type_name(int t);
int pt_json_type_of(const unsigned char *s, size_t len);

/* ---- writers ---------------------------------------------------------- */

int pt_json_wr_int(pt_wr *wr, pt_jctx *jc, int64_t v);
int pt_json_wr_double(pt_wr *wr, pt_jctx *jc, double v);
int pt_json_wr_bool(pt_wr *wr, pt_jctx *jc, int v);
/* A string: '"' '\\' and control characters escaped, other bytes as
 * they are (UTF-8 passes through). */
int pt_json_wr_string(pt_wr *wr, pt_jctx *jc, const void *s, size_t n);
/* Bytes as a base64 string (binary fields). */
int pt_json_wr_base64(pt_wr *wr, pt_jctx *jc, const void *s, size_t n);

/* Thrift events. */
int pt_json_wr_struct_begin(pt_wr *wr, pt_jctx *jc);
int pt_json_wr_struct_end(pt_wr *wr, pt_jctx *jc);
int pt_json_wr_field_begin(pt_wr *wr, pt_jctx *jc, int id, int ttype);
int pt_json_wr_field_end(pt_wr *wr, pt_jctx *jc);
int pt_json_wr_list_begin(pt_wr *wr, pt_jctx *jc, int et, uint32_t n);
int pt_json_wr_list_end(pt_wr *wr, pt_jctx *jc);
int pt_json_wr_map_begin(pt_wr *wr, pt_jctx *jc, int kt, int vt, uint32_t n);
int pt_json_wr_map_end(pt_wr *wr, pt_jctx *jc);

/* The envelope before the struct, [1,"name",mtype,seqid, written without
 * a context (the struct then starts in a fresh one); and the ']' after
 * it. Room: PT_JSON_MAX_HEAD + 6 * nlen. Returns the end. */
#define PT_JSON_MAX_HEAD 40
unsigned char *pt_json_msg_write(unsigned char *w, const char *name,
                                 uint32_t nlen, int mtype, int32_t seqid);

/* ---- readers ---------------------------------------------------------- */

/* An integer (quoted where the context wants a key). */
int pt_json_rd_int(const unsigned char *p, size_t n, pt_jctx *jc,
                   int64_t *v);
/* A number, or "NaN" / "Infinity" / "-Infinity" (or a quoted number where
 * a key is). */
int pt_json_rd_double(const unsigned char *p, size_t n, pt_jctx *jc,
                      double *v);

/* A string token: where its raw text is (between the quotes, offsets from
 * p), and how long it is once unescaped. */
typedef struct pt_jstr {
  size_t at, raw;  /* the raw text: p + at, raw bytes */
  size_t len;      /* bytes after unescaping (<= raw) */
  int escaped;     /* raw text holds escapes (else it is the value) */
} pt_jstr;
int pt_json_rd_string(const unsigned char *p, size_t n, pt_jctx *jc,
                      pt_jstr *s);
/* Unescape a string's raw text (checked by pt_json_rd_string) into out
 * (room: s->len). Returns the bytes written. */
size_t pt_json_unescape(const unsigned char *raw, size_t n, unsigned char *out);
/* Decode base64 text (with or without padding) into out (room:
 * pt_json_b64_room(n)). Returns the bytes written, or PT_BAD. */
static inline size_t pt_json_b64_room(size_t n) { return n / 4 * 3 + 3; }
ptrdiff_t pt_json_b64_decode(const unsigned char *s, size_t n,
                             unsigned char *out);

/* Thrift events. A field header reads "id":{"type" and gives its TType
 * and id; at the '}' that closes the struct it gives *tt = 0 (STOP) and
 * takes the '}' (the struct's end). */
int pt_json_rd_struct_begin(const unsigned char *p, size_t n, pt_jctx *jc);
int pt_json_rd_field(const unsigned char *p, size_t n, pt_jctx *jc, int *tt,
                     int *id);
int pt_json_rd_field_end(const unsigned char *p, size_t n, pt_jctx *jc);
/* list / set header: element TType (0 for a name that is no type) and
 * count */
int pt_json_rd_list(const unsigned char *p, size_t n, pt_jctx *jc, int *et,
                    uint32_t *count);
int pt_json_rd_list_end(const unsigned char *p, size_t n, pt_jctx *jc);
int pt_json_rd_map(const unsigned char *p, size_t n, pt_jctx *jc, int *kt,
                   int *vt, uint32_t *count);
int pt_json_rd_map_end(const unsigned char *p, size_t n, pt_jctx *jc);

/* Skip one JSON value (any: string, number, literal, array, object) in
 * the context's position, at most max_depth arrays / objects deep.
 * Allocates nothing, recurses nowhere. */
int pt_json_skip(const unsigned char *p, size_t n, pt_jctx *jc,
                 int max_depth);

/* The envelope (pt_msg_head / pt_msg_tail call these for a message that
 * starts with '['): head = [1," ; the name follows, up to its closing
 * quote (a name with escapes is refused); tail = ",mtype,seqid, */
int pt_json_msg_head(const unsigned char *p, size_t n, size_t max_name,
                     pt_msg *m);
int pt_json_msg_tail(const unsigned char *p, size_t n, pt_msg *m);

#endif
