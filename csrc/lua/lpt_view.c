/*
 * lpt_view.c — message views: T:view(bytes) reads a Thrift message where
 * it lies, without decoding or copying it.
 *
 * Objects
 *   message (petrel.message userdata, lpt_VSrc): the bytes of one message
 *     (a Lua string it references, or a pool block it pins: pt_block_pin,
 *     counted in the pool's retained stats), the arena holding the index
 *     nodes of every view of those bytes, and a generation number.
 *   node (vnode, in the arena): one value of the message at one level: a
 *     struct (its pt_vstruct field index, pt_view.h), a list / set or a
 *     map (its header, the element offsets once needed, the key hash of a
 *     map). A node is made when its value is first reached and cached in
 *     its parent, so each level is indexed once however often it is read.
 *   view (petrel.view userdata, lpt_View): message, generation, node. The
 *     Lua value users hold; it keeps its message alive.
 *
 * Lifetime: a view reads its message's bytes only while its generation
 * equals the message's. Expiring a message (the server does it when a
 * handler returns, unless a view of it was retained; v:release() does it
 * at once) bumps the generation, drops the bytes (unpins the block,
 * forgets the string) and frees the nodes; views of it then raise "view
 * expired" before touching anything. Messages are recycled by the server
 * (take_frame), so the check is by generation, not by pointer.
 *
 * Errors: a view checks lazily what decode checks (lengths against the
 * bytes present, types, counts, nesting) as it reaches each value, and
 * raises "Path: problem at offset N" (the path names fields, elements and
 * map keys from the message's root).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../pt_view.h"
#include "lpt_codec.h"

#if LPT_LUAJIT
#define LPT_MAX_STRING 0x7fffff00 /* LJ_MAX_STR */
static void *newud(lua_State *L, size_t n, int nuv) {
  (void)nuv;
  return lua_newuserdata(L, n);
}
#else
#define newud(L, n, nuv) lua_newuserdatauv(L, (n), (nuv))
#endif

enum { VK_STRUCT, VK_LIST, VK_MAP };
/* node flags: the view's decode options */
enum { VF_ENUM_NAMES = 1, VF_I64STR = 2, VF_TYPED = 4, VF_UNKNOWN = 8 };

typedef struct vnode vnode;
typedef struct vhash vhash;
typedef struct vkey vkey;
typedef struct vkids vkids;

struct vnode {
  uint8_t kind;     /* VK_* */
  uint8_t proto;    /* PT_PROTO_* */
  uint8_t flags;    /* VF_* */
  uint8_t opened;   /* containers: l is read */
  uint16_t depth;   /* levels below the root */
  uint16_t max_depth;
  int32_t key;      /* in the parent: field slot, element or entry index */
  vnode *parent;    /* NULL at a root */
  const pt_plan *plan; /* structs */
  const pt_type *type; /* the value's type; NULL for a root struct */
  uint32_t off;     /* where the value starts */
  uint32_t end;     /* structs without an index: the end one skip found */
  pt_vstruct *s;    /* structs: the field index, on first access */
  pt_vlist l;       /* containers */
  uint32_t *offs;   /* containers of variable width: the element index */
  vnode **kids;     /* nested values' nodes, by slot / element / entry
                       (containers of up to KIDS_DENSE; else kh) */
  vkids *kh;        /* large containers: element / entry -> node */
  vhash *hash;      /* maps: key -> entry */
};

/* ---- messages: bytes, arena, generation -------------------------------- */

/* Arena blocks: a header, then the payload. */
typedef union vbig {
  union vbig *next;
  uint64_t align_;
} vbig;

#define VARENA_INLINE 512
#define VARENA_CHUNK 8192
#define VARENA_BIG 2048 /* allocations this big get a block of their own */

typedef struct vctx vctx;

typedef struct lpt_VSrc {
  uint64_t gen;               /* views of another generation are expired */
  const unsigned char *base;  /* the message's bytes */
  size_t len;
  pt_block *blk;              /* pinned block holding them, or NULL */
  lpt_State *S;
  vctx *vc;                   /* name index of the bound schema */
  const void *cx;             /* the bound schema context table */
  uint8_t managed;            /* made by core.message (a server's) */
  uint8_t retained;           /* a view asked to outlive the handler */
  uint8_t has_str;            /* base points into the string in uv 1 */
  size_t nnodes;              /* nodes made since the last reset */
  unsigned char *a_p;         /* bump region of the arena */
  size_t a_left;
  vbig *bigs;                 /* malloc'd arena blocks */
  uint64_t inl[VARENA_INLINE / 8]; /* the first nodes (8-aligned, as Lua aligns userdata) */
} lpt_VSrc;

typedef struct lpt_View {
  lpt_VSrc *src;
  uint64_t gen;
  vnode *node;
} lpt_View;

static const unsigned char empty_bytes[1] = {0};

static void arena_reset(lpt_VSrc *src) {
  vbig *b = src->bigs;
  while (b) {
    vbig *n = b->next;
    free(b);
    b = n;
  }
  src->bigs = NULL;
  src->a_p = (unsigned char *)src->inl;
  src->a_left = sizeof src->inl;
  src->nnodes = 0;
}

/* n bytes (aligned to 8) living until the message is reset; zeroed when
 * zero is set. NULL on ENOMEM (the FFI path falls back then). */
static void *varena_try(lpt_VSrc *src, size_t n, int zero) {
  n = (n + 7) & ~(size_t)7;
  if (n <= src->a_left) {
    void *p = src->a_p;
    src->a_p += n;
    src->a_left -= n;
    if (zero) memset(p, 0, n);
    return p;
  }
  size_t want = n >= VARENA_BIG ? n : VARENA_CHUNK;
  if (want > SIZE_MAX - sizeof(vbig)) return NULL;
  vbig *b = zero && n >= VARENA_BIG ? calloc(1, sizeof *b + want)
                                    : malloc(sizeof *b + want);
  if (!b) return NULL;
  b->next = src->bigs;
  src->bigs = b;
  unsigned char *p = (unsigned char *)(b + 1);
  if (n < VARENA_BIG) { /* a new chunk: the rest serves later requests */
    src->a_p = p + n;
    src->a_left = want - n;
    if (zero) memset(p, 0, n);
  }
  return p;
}

/* varena_try, raising on ENOMEM. */
static void *varena(lua_State *L, lpt_VSrc *src, size_t n, int zero) {
  void *p = varena_try(src, n, zero);
  if (!p) luaL_error(L, "out of memory");
  return p;
}

/* uservalues: Lua 5.4: a message has uv 1 = its string (or nil), uv 2 =
 * the schema context; a view has uv 1 = its message. LuaJIT: a message
 * and its views share one environment table {string, context, message}. */
static void push_msg_of(lua_State *L, int vidx) {
#if LPT_LUAJIT
  lua_getfenv(L, vidx);
  lua_rawgeti(L, -1, 3);
  lua_remove(L, -2);
#else
  lua_getiuservalue(L, vidx, 1);
#endif
}

static void push_msg_uv(lua_State *L, int sidx, int i) {
#if LPT_LUAJIT
  lua_getfenv(L, sidx);
  lua_rawgeti(L, -1, i);
  lua_remove(L, -2);
#else
  lua_getiuservalue(L, sidx, i);
#endif
}

/* pops the value on top into the message's uv i */
static void set_msg_uv(lua_State *L, int sidx, int i) {
#if LPT_LUAJIT
  lua_getfenv(L, sidx);
  lua_insert(L, -2);
  lua_rawseti(L, -2, i);
  lua_pop(L, 1);
#else
  lua_setiuservalue(L, sidx, i);
#endif
}

/* Drop the message's bytes (unpin the block, forget the string). */
static void msg_drop_bytes(lua_State *L, int sidx, lpt_VSrc *src) {
  if (src->blk) {
    pt_block_unpin(src->blk);
    src->blk = NULL;
  }
  if (src->has_str) {
    lua_pushnil(L);
    set_msg_uv(L, sidx, 1);
    src->has_str = 0;
  }
  src->base = empty_bytes;
  src->len = 0;
}

/* Every view of the message expires; its bytes and nodes go. */
static void msg_expire(lua_State *L, int sidx, lpt_VSrc *src) {
  src->gen++;
  src->retained = 0;
  msg_drop_bytes(L, sidx, src);
  arena_reset(src);
}

/* The message holds the string at vidx (referenced, not copied). */
static void msg_hold_str(lua_State *L, int sidx, lpt_VSrc *src, int vidx) {
  size_t n;
  const char *s = lua_tolstring(L, vidx, &n);
  if (n >= PT_VIEW_MAX) luaL_error(L, "petrel.view: message of %zu bytes is too large", n);
  lua_pushvalue(L, vidx);
  set_msg_uv(L, sidx, 1);
  src->has_str = 1;
  src->base = (const unsigned char *)s;
  src->len = n;
}

static lpt_VSrc *new_msg(lua_State *L, int managed) {
  lpt_VSrc *src = newud(L, sizeof *src, 2);
  memset(src, 0, offsetof(lpt_VSrc, inl));
  src->S = lpt_state(L);
  src->gen = 1;
  src->managed = (uint8_t)managed;
  src->base = empty_bytes;
  arena_reset(src);
  lua_rawgeti(L, LUA_REGISTRYINDEX, src->S->msg_mt_ref);
  lua_setmetatable(L, -2);
#if LPT_LUAJIT
  lua_createtable(L, 3, 0);
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, 3);
  lua_setfenv(L, -2);
#endif
  return src;
}

static int Lpt_msg_gc(lua_State *L) {
  lpt_VSrc *src = lua_touserdata(L, 1);
  if (src->blk) pt_block_unpin(src->blk);
  src->blk = NULL;
  vbig *b = src->bigs;
  while (b) {
    vbig *n = b->next;
    free(b);
    b = n;
  }
  src->bigs = NULL;
  return 0;
}

static lpt_VSrc *tomsg(lua_State *L, int idx) {
  return lpt_testudata(L, idx, LPT_VSRC_MT);
}

static lpt_VSrc *checkmsg(lua_State *L, int idx) {
  return lpt_checkudata(L, idx, LPT_VSRC_MT);
}

static void unpin_release(void *ctx, intptr_t tag) {
  (void)tag;
  pt_block_unpin(ctx);
}

/* The message now holds bytes [skip, skip + n) of buffer b: the block they
 * lie in is pinned, or (spanning blocks) they are copied once into a pool
 * block of their own. b is left as it is. */
static void msg_set_buf(lua_State *L, lpt_VSrc *src, pt_buf *b, size_t skip,
                        size_t n) {
  if (n >= PT_VIEW_MAX) luaL_error(L, "petrel.view: message of %zu bytes is too large", n);
  pt_node *nd = b->head;
  size_t o = skip;
  while (nd && o >= (size_t)(nd->wr - nd->rd)) {
    o -= (size_t)(nd->wr - nd->rd);
    nd = nd->next;
  }
  if (n == 0) {
    src->base = empty_bytes;
  } else if (nd && (size_t)(nd->wr - nd->rd) - o >= n) {
    pt_block_pin(nd->blk);
    src->blk = nd->blk;
    src->base = (const unsigned char *)nd->rd + o;
  } else {
    pt_block *blk = pt_block_get(b->pool, n);
    if (!blk) luaL_error(L, "out of memory");
    pt_buf_copy(b, skip, n, blk->data);
    blk->fill = n;
    pt_block_pin(blk);
    pt_block_release(blk);
    src->blk = blk;
    src->base = (const unsigned char *)blk->data;
  }
  src->len = n;
}

/* ---- the name index of a schema (per Lua state) ------------------------- */

typedef struct vkeys {
  int ready;
  const char **name; /* fields[] order: the interned key strings */
  size_t *nlen;
  uint16_t *hslot;   /* pointer hash -> slot + 1 (plans of many fields) */
  uint32_t hmask;
} vkeys;

struct vctx {
  int nplans;
  vkeys *pk;
};

static int Lpt_vctx_gc(lua_State *L) {
  vctx *vc = lua_touserdata(L, 1);
  if (vc->pk) {
    for (int i = 0; i < vc->nplans; i++) {
      free(vc->pk[i].name);
      free(vc->pk[i].nlen);
      free(vc->pk[i].hslot);
    }
    free(vc->pk);
    vc->pk = NULL;
  }
  return 0;
}

static inline uint32_t ptr_hash(const void *p) {
  uint64_t x = (uint64_t)(uintptr_t)p;
  x ^= x >> 29;
  x *= 0xbf58476d1ce4e5b9ull;
  return (uint32_t)(x >> 32);
}

/* The name index of plan p, from the context table at cx (built once). */
static vkeys *plan_keys(lua_State *L, vctx *vc, const pt_plan *p, int cx) {
  vkeys *k = &vc->pk[p->index];
  if (k->ready) return k;
  int n = p->nfields;
  k->name = calloc((size_t)n + 1, sizeof *k->name);
  k->nlen = calloc((size_t)n + 1, sizeof *k->nlen);
  if (!k->name || !k->nlen) luaL_error(L, "out of memory");
  lua_rawgeti(L, cx, CX_KEYS);
  for (int j = 0; j < n; j++) {
    lua_rawgeti(L, -1, p->key_base + p->fields[j].index + 1);
    k->name[j] = lua_tolstring(L, -1, &k->nlen[j]); /* kept by the table */
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  if (n > 8) {
    uint32_t sz = 16;
    while (sz < 2u * (uint32_t)n) sz <<= 1;
    k->hslot = calloc(sz, sizeof *k->hslot);
    if (!k->hslot) luaL_error(L, "out of memory");
    k->hmask = sz - 1;
    for (int j = 0; j < n; j++) {
      uint32_t h = ptr_hash(k->name[j]) & k->hmask;
      while (k->hslot[h]) h = (h + 1) & k->hmask;
      k->hslot[h] = (uint16_t)(j + 1);
    }
  }
  k->ready = 1;
  return k;
}

/* The fields[] slot named by the string s (len n), or -1. Field names
 * are compared by pointer (Lua interns short strings, LuaJIT all), then,
 * for strings Lua 5.4 does not intern, by content. */
static int find_slot(const vkeys *k, const pt_plan *p, const char *s,
                     size_t n) {
  int nf = p->nfields;
  if (k->hslot) {
    uint32_t h = ptr_hash(s) & k->hmask;
    for (uint32_t j; (j = k->hslot[h]) != 0; h = (h + 1) & k->hmask)
      if (k->name[j - 1] == s) return (int)j - 1;
  } else {
    for (int j = 0; j < nf; j++)
      if (k->name[j] == s) return j;
  }
#if !LPT_LUAJIT
  if (n > 40) /* LUAI_MAXSHORTLEN: longer strings are not interned */
    for (int j = 0; j < nf; j++)
      if (k->nlen[j] == n && memcmp(k->name[j], s, n) == 0) return j;
#else
  (void)n;
#endif
  return -1;
}

/* Bind the message to the schema context table at cx (T's); its name
 * index is made on first use. */
static void msg_bind(lua_State *L, int sidx, lpt_VSrc *src, int cx,
                     const lpt_Type *T) {
  const void *cp = lua_topointer(L, cx);
  if (src->cx == cp) return;
  if (src->cx && src->nnodes)
    luaL_error(L, "petrel.view: this message is viewed through another schema");
  lua_rawgeti(L, cx, CX_VIEW);
  vctx *vc = lua_touserdata(L, -1);
  if (!vc) {
    lua_pop(L, 1);
    vc = newud(L, sizeof *vc, 0);
    vc->nplans = pt_schema_nplans(T->s);
    vc->pk = calloc((size_t)vc->nplans, sizeof *vc->pk);
    if (!vc->pk) luaL_error(L, "out of memory");
    lua_newtable(L);
    lua_pushcfunction(L, Lpt_vctx_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_rawseti(L, cx, CX_VIEW);
  }
  lua_pop(L, 1);
  lua_pushvalue(L, cx);
  set_msg_uv(L, sidx, 2);
  src->vc = vc;
  src->cx = cp;
}

/* ---- views -------------------------------------------------------------- */

static lpt_View *toview(lua_State *L, int idx) {
  lpt_View *v = lua_touserdata(L, idx);
  if (!v || !lua_getmetatable(L, idx)) return NULL;
  const void *mt = lua_topointer(L, -1);
  lua_pop(L, 1);
  const lpt_State *S = lpt_state(L);
  return mt == S->view_mt || mt == S->view_mt2 ? v : NULL;
}

static lpt_View *checkview(lua_State *L, int idx) {
  lpt_View *v = toview(L, idx);
  if (!v)
    luaL_argerror(L, idx, lua_pushfstring(L, "petrel.view expected, got %s",
                                          luaL_typename(L, idx)));
  return v;
}

static inline void checklive(lua_State *L, lpt_View *v) {
  if (v->gen != v->src->gen) luaL_error(L, "view expired");
}

/* Which of the two view metatables views of nd get: 1 for nodes whose
 * v[k] gives views (lists and sets of nested values) or looks up keys
 * (maps), 0 for the others (structs, lists of scalars). They differ only on
 * LuaJIT, where lua/petrel/ffi.lua gives the first an FFI __index: reading
 * a scalar through it is compiled, while making a nested view needs the C
 * API, which costs more from within a Lua metamethod than as the
 * metamethod itself (measured: bench-view, docs). */
static int view_mt_of(const vnode *nd) {
  if (nd->kind == VK_MAP) return 1;
  if (nd->kind != VK_LIST) return 0;
  int k = nd->type->elem->kind;
  return k == PT_K_STRUCT || k == PT_K_LIST || k == PT_K_SET || k == PT_K_MAP;
}

/* A view of node nd of the message; from: an absolute stack index holding
 * that message (is_msg) or another view of it. */
static lpt_View *push_view(lua_State *L, int from, int is_msg, lpt_VSrc *src,
                           vnode *nd) {
  lpt_View *v = newud(L, sizeof *v, 1);
  v->src = src;
  v->gen = src->gen;
  v->node = nd;
  lua_rawgeti(L, LUA_REGISTRYINDEX, view_mt_of(nd) ? src->S->view_mt2_ref
                                                   : src->S->view_mt_ref);
  lua_setmetatable(L, -2);
#if LPT_LUAJIT
  (void)is_msg;
  lua_getfenv(L, from);
  lua_setfenv(L, -2);
#else
  if (is_msg)
    lua_pushvalue(L, from);
  else
    lua_getiuservalue(L, from, 1);
  lua_setiuservalue(L, -2, 1);
#endif
  return v;
}

/* push the schema context table of the view at vidx */
static void push_cx(lua_State *L, int vidx) {
  push_msg_of(L, vidx);
  push_msg_uv(L, -1, 2);
  lua_remove(L, -2);
}

/* ---- paths and errors ---------------------------------------------------- */

static void add_key_text(luaL_Buffer *b, const char *s, size_t n) {
  char tmp[8];
  luaL_addstring(b, "[\"");
  for (size_t k = 0; k < n && k < 40; k++) {
    unsigned char ch = (unsigned char)s[k];
    if (ch == '"' || ch == '\\') {
      luaL_addchar(b, '\\');
      luaL_addchar(b, (char)ch);
    } else if (ch < 0x20 || ch == 0x7f) {
      snprintf(tmp, sizeof tmp, "\\%d", ch);
      luaL_addstring(b, tmp);
    } else {
      luaL_addchar(b, (char)ch);
    }
  }
  luaL_addstring(b, n > 40 ? "...\"]" : "\"]");
}

static int read_key(const vnode *nd, const lpt_VSrc *src, uint32_t i,
                    vkey *k);

/* "[key]" of map entry i of nd, as decode names it; "<value #i>" when
 * the key is not a scalar. */
static void add_map_key(luaL_Buffer *b, const lpt_VSrc *src, const vnode *nd,
                        uint32_t i);

/* The path of the value at key of node nd (key < 0: nd itself). */
static void add_path(luaL_Buffer *b, const lpt_VSrc *src, const vnode *nd,
                     int64_t key) {
  const vnode *chain[LPT_MAXDEPTH_LIMIT + 2];
  int n = 0;
  for (const vnode *x = nd; x && n < LPT_MAXDEPTH_LIMIT + 2; x = x->parent)
    chain[n++] = x;
  char tmp[32];
  for (int i = n - 1; i >= -1; i--) {
    const vnode *x = i >= 0 ? chain[i] : NULL;
    const vnode *par = i >= 0 ? x->parent : nd;
    int64_t k = i >= 0 ? x->key : key;
    if (i == n - 1) { /* the root */
      luaL_addstring(b, x->plan ? x->plan->name : "?");
      continue;
    }
    if (k < 0) break;
    if (par->kind == VK_STRUCT) {
      luaL_addchar(b, '.');
      luaL_addstring(b, par->plan->fields[k].name);
    } else if (par->kind == VK_LIST) {
      snprintf(tmp, sizeof tmp, "[%lld]", (long long)k + 1);
      luaL_addstring(b, tmp);
    } else {
      add_map_key(b, src, par, (uint32_t)k);
    }
  }
}

/* Raise "path: msg at offset off"; key as in add_path. */
static int raise_at(lua_State *L, const lpt_VSrc *src, const vnode *nd,
                    int64_t key, const char *msg, size_t off) {
  luaL_Buffer b;
  char tail[64];
  luaL_buffinit(L, &b);
  add_path(&b, src, nd, key);
  luaL_addstring(&b, ": ");
  luaL_addstring(&b, msg);
  snprintf(tail, sizeof tail, " at offset %zu", off);
  luaL_addstring(&b, tail);
  luaL_pushresult(&b);
  return lua_error(L);
}

static int raise_verr(lua_State *L, const lpt_VSrc *src, const vnode *nd,
                      const pt_verr *e) {
  int64_t key = e->field >= 0 ? e->field : e->elem >= 0 ? e->elem : -1;
  return raise_at(L, src, nd, key, e->msg, e->off);
}

/* The same message as a string (for encode, which adds its own path). */
static void verr_text(lua_State *L, const lpt_VSrc *src, const vnode *nd,
                      const pt_verr *e, char *out, size_t outlen) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  add_path(&b, src, nd, e->field >= 0 ? e->field : e->elem);
  luaL_pushresult(&b);
  snprintf(out, outlen, "view %s: %s at offset %zu", lua_tostring(L, -1),
           e->msg, e->off);
  lua_pop(L, 1);
}

/* ---- levels --------------------------------------------------------------- */

static int budget(const vnode *nd) { return nd->max_depth - nd->depth; }

/* A nested value whose end became known tells its struct parent. */
static void tell_end(vnode *nd, uint32_t end) {
  vnode *p = nd->parent;
  if (p && p->kind == VK_STRUCT && p->s) pt_vs_set_end(p->s, nd->key, end);
}

/* The levels' steps come in two forms: *_e ones never raise (they give
 * -1 with e filled on bad bytes, -2 on ENOMEM; the LuaJIT FFI path uses
 * them and falls back to the C API on any failure), and raising ones
 * (the C API). A failed step leaves the node as it was but for what it
 * recorded, and taking it again gives the same error. */

static pt_vstruct *struct_ix_try(lpt_VSrc *src, vnode *nd) {
  if (!nd->s) {
    pt_vstruct *s = varena_try(src, pt_vs_size(nd->plan), 0);
    if (!s) return NULL;
    pt_vs_init(s, nd->plan, nd->proto, nd->off, budget(nd));
    nd->s = s;
  }
  return nd->s;
}

/* Find field slot of struct node nd: 1 on the wire, 0 not, -1 / -2. */
static int struct_find_e(lpt_VSrc *src, vnode *nd, int slot, pt_verr *e) {
  pt_vstruct *s = struct_ix_try(src, nd);
  if (!s) return -2;
  int r = pt_vs_find(s, src->base, src->len, slot, e);
  if (r < 0) return -1;
  if (s->end) tell_end(nd, s->end);
  return r;
}

/* struct_find_e, raising on bad bytes. */
static int struct_find(lua_State *L, lpt_VSrc *src, vnode *nd, int slot) {
  pt_verr e;
  int r = struct_find_e(src, nd, slot, &e);
  if (r == -2) luaL_error(L, "out of memory");
  if (r < 0) raise_verr(L, src, nd, &e);
  return r;
}

/* Read the header of container node nd (once): 0 or -1. */
static int list_open_e(lpt_VSrc *src, vnode *nd, pt_verr *e) {
  if (nd->opened) return 0;
  const pt_type *t = nd->type;
  if (pt_vl_open(&nd->l, nd->proto, src->base, src->len, nd->off, t->ttype,
                 t->elem->ttype, t->kind == PT_K_MAP ? t->val->ttype : 0, e))
    return -1;
  nd->opened = 1;
  if (nd->l.fixed) tell_end(nd, nd->l.end);
  return 0;
}

static void list_open(lua_State *L, lpt_VSrc *src, vnode *nd) {
  pt_verr e;
  if (list_open_e(src, nd, &e)) raise_verr(L, src, nd, &e);
}

/* Open container node nd and index its elements (once): 0, -1 or -2. */
static int list_index_e(lpt_VSrc *src, vnode *nd, pt_verr *e) {
  if (list_open_e(src, nd, e)) return -1;
  if (nd->l.fixed || nd->offs) return 0;
  uint32_t *o = varena_try(src, pt_vl_noffs(&nd->l) * sizeof *o, 0);
  if (!o) return -2;
  if (pt_vl_index(&nd->l, src->base, src->len, o, budget(nd), e)) return -1;
  nd->offs = o;
  tell_end(nd, nd->l.end);
  return 0;
}

static void list_index(lua_State *L, lpt_VSrc *src, vnode *nd) {
  pt_verr e;
  int r = list_index_e(src, nd, &e);
  if (r == -2) luaL_error(L, "out of memory");
  if (r) raise_verr(L, src, nd, &e);
}

static inline uint32_t elem_off(const vnode *nd, uint32_t i) {
  if (nd->l.fixed) return nd->l.body + i * nd->l.ew;
  return nd->l.body + nd->offs[nd->l.map ? 2 * (size_t)i : i];
}

static inline uint32_t mval_off(const vnode *nd, uint32_t i) {
  if (nd->l.fixed) return nd->l.body + i * nd->l.ew + nd->l.kw;
  return nd->l.body + nd->offs[2 * (size_t)i + 1];
}

/* The end of the node's value (a struct is scanned to its STOP, a
 * container indexed); 0 with the message in out (when out) or raises. */
static uint32_t node_end(lua_State *L, lpt_VSrc *src, vnode *nd, char *out,
                         size_t outlen) {
  pt_verr e;
  int r;
  if (nd->kind == VK_STRUCT) {
    if (nd->end) return nd->end;
    if (!nd->s) {
      /* no field read yet: one skip over the whole struct (its fields at
       * the budget the index would give them) rather than indexing every
       * field; bad bytes fall through to the scan, whose error names the
       * field and offset */
      uint32_t end = pt_v_skip(nd->proto, src->base, src->len, nd->off,
                               PT_T_STRUCT, budget(nd) + 1, &e);
      if (end) {
        nd->end = end;
        tell_end(nd, end);
        return end;
      }
    }
    r = struct_find_e(src, nd, -1, &e);
    if (r == -2) luaL_error(L, "out of memory");
    if (r < 0) goto fail;
    return nd->s->end;
  }
  r = list_index_e(src, nd, &e);
  if (r == -2) luaL_error(L, "out of memory");
  if (r) goto fail;
  tell_end(nd, nd->l.end);
  return nd->l.end;
fail:
  if (!out) raise_verr(L, src, nd, &e);
  verr_text(L, src, nd, &e, out, outlen);
  return 0;
}

/* ---- scalars --------------------------------------------------------------- */

/* Raise a scalar read error of the value at key in nd. */
static int scalar_fail(lua_State *L, const lpt_VSrc *src, const vnode *nd,
                       int64_t key, size_t off, const char *fmt, ...) {
  char msg[160];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return raise_at(L, src, nd, key, msg, off);
}

static void push_i64v(lua_State *L, int flags, int64_t v) {
  if ((flags & VF_I64STR) &&
      (v > 9007199254740992LL || v < -9007199254740992LL)) {
    char tmp[24];
    int k = snprintf(tmp, sizeof tmp, "%lld", (long long)v);
    lua_pushlstring(L, tmp, (size_t)k);
    return;
  }
  lpt_pushi64(L, v);
}

/* Push the scalar of type t at off (key: where it is in nd). cptbool: the
 * value of a Compact bool field (in its header), -1 otherwise. vidx: a
 * view of the message (for enum names). The value is read by pt_v_scalar,
 * as the LuaJIT FFI path reads it (lpt_vf_*). */
static void push_scalar(lua_State *L, int vidx, const lpt_VSrc *src,
                        const vnode *nd, int64_t key, const pt_type *t,
                        uint32_t off, int cptbool) {
  if (t->kind == PT_K_BOOL && cptbool >= 0) {
    lua_pushboolean(L, cptbool);
    return;
  }
  pt_vval x;
  pt_verr e;
  if (pt_v_scalar(nd->proto, src->base, src->len, off, t->kind, &x, &e))
    raise_at(L, src, nd, key, e.msg, e.off);
  switch (t->kind) {
    case PT_K_BOOL: lua_pushboolean(L, (int)x.i); return;
    case PT_K_I8:
    case PT_K_I16:
    case PT_K_I32: lua_pushinteger(L, (lua_Integer)x.i); return;
    case PT_K_ENUM:
      if (nd->flags & VF_ENUM_NAMES) {
        push_cx(L, vidx);
        lua_rawgeti(L, -1, CX_ENUMS);
        lua_rawgeti(L, -1, t->aux + 1);
        lua_rawgeti(L, -1, 1); /* value -> name */
        lua_rawgeti(L, -1, (int)x.i);
        if (!lua_isnil(L, -1)) {
          lua_replace(L, -5); /* over the context table */
          lua_pop(L, 3);
          return;
        }
        lua_pop(L, 5);
      }
      lua_pushinteger(L, (lua_Integer)x.i);
      return;
    case PT_K_I64: push_i64v(L, nd->flags, x.i); return;
    case PT_K_DOUBLE: lua_pushnumber(L, x.d); return;
    case PT_K_STRING:
    case PT_K_BINARY:
#if LPT_LUAJIT
      if (x.n > LPT_MAX_STRING)
        scalar_fail(L, src, nd, key, off,
                    "string length %d is more than a Lua string holds", (int)x.n);
#endif
      lua_pushlstring(L, (const char *)x.p, x.n);
      return;
    case PT_K_UUID: lpt_push_uuid(L, x.p); return;
  }
}

static inline int is_nested(const pt_type *t) {
  return t->kind == PT_K_STRUCT || t->kind == PT_K_LIST ||
         t->kind == PT_K_SET || t->kind == PT_K_MAP;
}

/* Nested nodes of a container of more than KIDS_DENSE elements are kept
 * in a hash (open addressing, grown at half full) rather than an array of
 * one pointer per element: reading 100 elements of a list of 26,000 then
 * touches a few KiB, not a fresh 200 KiB array. */
#define KIDS_DENSE 64

struct vkids {
  uint32_t mask, used;
  struct {
    uint32_t key;
    vnode *nd; /* NULL: empty */
  } e[];
};

static inline uint32_t kid_hash(uint32_t key) { return key * 0x9e3779b1u; }

static vnode *kids_get(const vnode *nd, uint32_t key, size_t nkids) {
  if (nkids <= KIDS_DENSE) return nd->kids ? nd->kids[key] : NULL;
  const vkids *h = nd->kh;
  if (!h) return NULL;
  for (uint32_t j = kid_hash(key) & h->mask;; j = (j + 1) & h->mask) {
    if (!h->e[j].nd) return NULL;
    if (h->e[j].key == key) return h->e[j].nd;
  }
}

static vkids *kids_new(lpt_VSrc *src, uint32_t cap) {
  vkids *h = varena_try(src, sizeof *h + (size_t)cap * sizeof h->e[0], 1);
  if (h) h->mask = cap - 1;
  return h;
}

/* Record node c at key (not there yet); 0, or -1 on ENOMEM. */
static int kids_put(lpt_VSrc *src, vnode *nd, uint32_t key, size_t nkids,
                    vnode *c) {
  if (nkids <= KIDS_DENSE) {
    if (!nd->kids && !(nd->kids = varena_try(src, nkids * sizeof *nd->kids, 1)))
      return -1;
    nd->kids[key] = c;
    return 0;
  }
  vkids *h = nd->kh;
  if (!h && !(h = nd->kh = kids_new(src, 64))) return -1;
  if (2 * (h->used + 1) > h->mask + 1) { /* grow: rehash into twice the size */
    vkids *g = kids_new(src, 2 * (h->mask + 1));
    if (!g) return -1;
    for (uint32_t i = 0; i <= h->mask; i++) {
      if (!h->e[i].nd) continue;
      uint32_t j = kid_hash(h->e[i].key) & g->mask;
      while (g->e[j].nd) j = (j + 1) & g->mask;
      g->e[j] = h->e[i];
    }
    g->used = h->used;
    h = nd->kh = g;
  }
  uint32_t j = kid_hash(key) & h->mask;
  while (h->e[j].nd) j = (j + 1) & h->mask;
  h->e[j].key = key;
  h->e[j].nd = c;
  h->used++;
  return 0;
}

/* The node of the nested value at key of nd (nkids: how many keys nd has),
 * made on first use. */
static vnode *child(lua_State *L, lpt_VSrc *src, vnode *nd, uint32_t key,
                    size_t nkids, const pt_type *t, uint32_t off) {
  vnode *c = kids_get(nd, key, nkids);
  if (c) return c;
  if (nd->depth + 1 >= nd->max_depth)
    scalar_fail(L, src, nd, key, off, "nesting deeper than %d", nd->max_depth);
  c = varena(L, src, sizeof *c, 1);
  c->kind = t->kind == PT_K_STRUCT ? VK_STRUCT
            : t->kind == PT_K_MAP  ? VK_MAP
                                   : VK_LIST;
  c->proto = nd->proto;
  c->flags = nd->flags;
  c->depth = (uint16_t)(nd->depth + 1);
  c->max_depth = nd->max_depth;
  c->key = (int32_t)key;
  c->parent = nd;
  c->plan = t->kind == PT_K_STRUCT ? t->plan : NULL;
  c->type = t;
  c->off = off;
  if (kids_put(src, nd, key, nkids, c)) luaL_error(L, "out of memory");
  src->nnodes++;
  return c;
}

/* Push the value of type t at off, key of node nd (a view for nested
 * values, the Lua value for scalars). vidx: the view of nd. */
static void push_value(lua_State *L, int vidx, lpt_View *v, vnode *nd,
                       uint32_t key, size_t nkids, const pt_type *t,
                       uint32_t off, int cptbool) {
  if (is_nested(t)) {
    vnode *c = child(L, v->src, nd, key, nkids, t, off);
    push_view(L, vidx, 0, v->src, c);
  } else {
    push_scalar(L, vidx, v->src, nd, key, t, off, cptbool);
  }
}

/* ---- struct fields --------------------------------------------------------- */

static void push_field(lua_State *L, int vidx, lpt_View *v, int slot) {
  vnode *nd = v->node;
  lpt_VSrc *src = v->src;
  const pt_plan *p = nd->plan;
  const pt_field *f = &p->fields[slot];
  if (!struct_find(L, src, nd, slot)) {
    if (f->has_default && f->req != PT_REQ_OPTIONAL) { /* as decode fills it */
      push_cx(L, vidx);
      lua_rawgeti(L, -1, CX_DEFAULTS);
      lua_rawgeti(L, -1, p->key_base + f->index + 1);
      lpt_push_copy(L, -1, 0);
      lua_replace(L, -4);
      lua_pop(L, 2);
    } else if (f->req == PT_REQ_REQUIRED) {
      raise_at(L, src, nd, slot, "required field missing", nd->s->end);
    } else {
      lua_pushnil(L);
    }
    return;
  }
  const pt_vslot *sl = &nd->s->slot[slot];
  int cb = nd->proto == PT_PROTO_COMPACT && f->type->kind == PT_K_BOOL
               ? sl->boolv
               : -1;
  push_value(L, vidx, v, nd, (uint32_t)slot, (size_t)p->nfields, f->type,
             sl->off, cb);
}

/* ---- map keys ---------------------------------------------------------------- */

enum { KY_NONE, KY_STR, KY_INT, KY_NUM };

struct vkey {
  int kind;             /* KY_* */
  const unsigned char *s;
  size_t n;
  int64_t i;
  double d;
};

static int key_kind(int k) {
  switch (k) {
    case PT_K_STRING:
    case PT_K_BINARY:
    case PT_K_UUID: return KY_STR;
    case PT_K_BOOL:
    case PT_K_I8:
    case PT_K_I16:
    case PT_K_I32:
    case PT_K_I64:
    case PT_K_ENUM: return KY_INT;
    case PT_K_DOUBLE: return KY_NUM;
    default: return KY_NONE;
  }
}

/* The key of entry i of map node nd, from the wire (its bytes were
 * checked by the index: reads cannot fail but for varints and lengths,
 * checked here too). 0 when unreadable or not a scalar. */
static int read_key(const vnode *nd, const lpt_VSrc *src, uint32_t i,
                    vkey *k) {
  const pt_type *kt = nd->type->elem;
  uint32_t off = elem_off(nd, i);
  const unsigned char *p = src->base + off;
  size_t left = off <= src->len ? src->len - off : 0;
  int cpt = nd->proto == PT_PROTO_COMPACT;
  k->kind = key_kind(kt->kind);
  switch (kt->kind) {
    case PT_K_STRING:
    case PT_K_BINARY: {
      uint32_t n;
      int r = cpt ? pt_cpt_rd_len(p, left, &n) : pt_bin_rd_len(p, left, &n);
      if (r < 0 || (size_t)n > left - (size_t)r) return 0;
      k->s = p + r;
      k->n = n;
      return 1;
    }
    case PT_K_UUID:
      if (left < 16) return 0;
      k->s = p;
      k->n = 16;
      return 1;
    case PT_K_BOOL:
      if (!left) return 0;
      k->i = cpt ? p[0] == PT_CT_TRUE : p[0] != 0;
      return 1;
    case PT_K_I8:
      if (!left) return 0;
      k->i = (int8_t)p[0];
      return 1;
    case PT_K_I16:
    case PT_K_I32:
    case PT_K_ENUM:
    case PT_K_I64: {
      int w = kt->kind == PT_K_I16 ? 2 : kt->kind == PT_K_I64 ? 8 : 4;
      if (!cpt) {
        if (left < (size_t)w) return 0;
        k->i = w == 2 ? (int16_t)pt_ld16(p)
               : w == 4 ? (int32_t)pt_ld32(p)
                        : (int64_t)pt_ld64(p);
        return 1;
      }
      int r;
      if (w == 8) {
        r = pt_cpt_rd_i64(p, left, &k->i);
      } else if (w == 4) {
        int32_t x = 0;
        r = pt_cpt_rd_i32(p, left, &x);
        k->i = x;
      } else {
        int16_t x = 0;
        r = pt_cpt_rd_i16(p, left, &x);
        k->i = x;
      }
      return r > 0;
    }
    case PT_K_DOUBLE: {
      if (left < 8) return 0;
      uint64_t u = cpt ? pt_ld64le(p) : pt_ld64(p);
      memcpy(&k->d, &u, 8);
      if (k->d == 0) k->d = 0; /* -0.0 and 0.0 are one key */
      return 1;
    }
  }
  return 0;
}

static void add_map_key(luaL_Buffer *b, const lpt_VSrc *src, const vnode *nd,
                        uint32_t i) {
  vkey k;
  char tmp[64];
  if (!nd->opened || (!nd->l.fixed && !nd->offs) || i >= nd->l.count ||
      !read_key(nd, src, i, &k)) {
    snprintf(tmp, sizeof tmp, "<value #%u>", i + 1);
    luaL_addstring(b, tmp);
    return;
  }
  int kk = nd->type->elem->kind;
  if (kk == PT_K_UUID) {
    static const char hx[] = "0123456789abcdef";
    char u[36];
    int m = 0;
    for (int j = 0; j < 16; j++) {
      if (j == 4 || j == 6 || j == 8 || j == 10) u[m++] = '-';
      u[m++] = hx[k.s[j] >> 4];
      u[m++] = hx[k.s[j] & 15];
    }
    add_key_text(b, u, 36);
  } else if (k.kind == KY_STR) {
    add_key_text(b, (const char *)k.s, k.n);
  } else if (kk == PT_K_BOOL) {
    luaL_addstring(b, k.i ? "[true]" : "[false]");
  } else if (k.kind == KY_INT) {
    snprintf(tmp, sizeof tmp, "[%lld]", (long long)k.i);
    luaL_addstring(b, tmp);
  } else {
    snprintf(tmp, sizeof tmp, "[%.17g]", k.d);
    luaL_addstring(b, tmp);
  }
}

static uint32_t key_hash(const vkey *k) {
  uint64_t h;
  if (k->kind == KY_STR) {
    h = 1469598103934665603ull;
    for (size_t j = 0; j < k->n; j++) h = (h ^ k->s[j]) * 1099511628211ull;
  } else if (k->kind == KY_INT) {
    h = (uint64_t)k->i * 0x9e3779b97f4a7c15ull;
  } else {
    uint64_t u;
    memcpy(&u, &k->d, 8);
    h = u * 0x9e3779b97f4a7c15ull;
  }
  return (uint32_t)(h ^ (h >> 32));
}

static int key_eq(const vkey *a, const vkey *b) {
  if (a->kind == KY_STR) return a->n == b->n && memcmp(a->s, b->s, a->n) == 0;
  if (a->kind == KY_INT) return a->i == b->i;
  return a->d == b->d;
}

struct vhash {
  uint32_t mask;
  uint64_t slot[]; /* hash << 32 | entry + 1; 0: empty */
};

/* The key index of map node nd (scalar keys): built once, in one pass;
 * a key that appears twice maps to its last entry, as decode keeps it. */
static vhash *map_hash(lua_State *L, lpt_VSrc *src, vnode *nd) {
  if (nd->hash) return nd->hash;
  list_index(L, src, nd);
  uint32_t n = nd->l.count, sz = 8;
  while (sz < 2 * (uint64_t)n) sz <<= 1;
  vhash *h = varena(L, src, sizeof *h + (size_t)sz * sizeof h->slot[0], 1);
  h->mask = sz - 1;
  for (uint32_t i = 0; i < n; i++) {
    vkey k, o;
    uint32_t off = elem_off(nd, i);
    if (!read_key(nd, src, i, &k))
      scalar_fail(L, src, nd, -1, off, "bad key of entry %u", i + 1);
    if (k.kind == KY_NUM && k.d != k.d)
      scalar_fail(L, src, nd, i, off, "NaN map key");
    uint32_t hv = key_hash(&k), j = hv & h->mask;
    for (;; j = (j + 1) & h->mask) {
      uint64_t e = h->slot[j];
      if (!e) {
        h->slot[j] = (uint64_t)hv << 32 | (i + 1);
        break;
      }
      if ((uint32_t)(e >> 32) == hv) {
        read_key(nd, src, (uint32_t)e - 1, &o);
        if (key_eq(&k, &o)) {
          h->slot[j] = (uint64_t)hv << 32 | (i + 1);
          break;
        }
      }
    }
  }
  nd->hash = h;
  return h;
}

/* The Lua value at idx as a key of map node nd; 0 when it cannot be one. */
static int lua_key(lua_State *L, int idx, int vidx, const vnode *nd, vkey *k,
                   unsigned char *uuid) {
  const pt_type *kt = nd->type->elem;
  k->kind = key_kind(kt->kind);
  int lt = lua_type(L, idx);
  switch (kt->kind) {
    case PT_K_STRING:
    case PT_K_BINARY:
      if (lt != LUA_TSTRING) return 0;
      k->s = (const unsigned char *)lua_tolstring(L, idx, &k->n);
      return 1;
    case PT_K_UUID: {
      if (lt != LUA_TSTRING) return 0;
      size_t n;
      const char *s = lua_tolstring(L, idx, &n);
      if (n == 16) {
        k->s = (const unsigned char *)s;
        k->n = 16;
        return 1;
      }
      if (n != 36) return 0;
      int m = 0;
      for (size_t j = 0; j < 36; j++) {
        if (j == 8 || j == 13 || j == 18 || j == 23) {
          if (s[j] != '-') return 0;
          continue;
        }
        int hi = s[j], lo = s[j + 1], a, b;
        a = hi >= '0' && hi <= '9' ? hi - '0' : (hi | 32) >= 'a' && (hi | 32) <= 'f' ? (hi | 32) - 'a' + 10 : -1;
        b = lo >= '0' && lo <= '9' ? lo - '0' : (lo | 32) >= 'a' && (lo | 32) <= 'f' ? (lo | 32) - 'a' + 10 : -1;
        if (a < 0 || b < 0) return 0;
        uuid[m++] = (unsigned char)(a << 4 | b);
        j++;
      }
      k->s = uuid;
      k->n = 16;
      return 1;
    }
    case PT_K_BOOL:
      if (lt != LUA_TBOOLEAN) return 0;
      k->i = lua_toboolean(L, idx);
      return 1;
    case PT_K_ENUM:
      if (lt == LUA_TSTRING) { /* a name (decode {enum_names = true}) */
        push_cx(L, vidx);
        lua_rawgeti(L, -1, CX_ENUMS);
        lua_rawgeti(L, -1, kt->aux + 1);
        lua_rawgeti(L, -1, 2); /* name -> value */
        lua_pushvalue(L, idx);
        lua_rawget(L, -2);
        int ok = lua_type(L, -1) == LUA_TNUMBER;
        k->i = ok ? (int64_t)lua_tointeger(L, -1) : 0;
        lua_pop(L, 5);
        return ok;
      }
      /* fall through */
    case PT_K_I8:
    case PT_K_I16:
    case PT_K_I32:
    case PT_K_I64:
      if (lpt_toi64(L, idx, &k->i)) return 1;
      if (lt == LUA_TSTRING && kt->kind == PT_K_I64) { /* int64_as_string */
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        char *end;
        if (n == 0 || n > 20) return 0;
        char tmp[24];
        memcpy(tmp, s, n);
        tmp[n] = 0;
        long long x = strtoll(tmp, &end, 10);
        if (*end || end == tmp) return 0;
        k->i = x;
        return 1;
      }
      return 0;
    case PT_K_DOUBLE:
      if (lt != LUA_TNUMBER) return 0;
      k->d = (double)lua_tonumber(L, idx);
      if (k->d == 0) k->d = 0;
      return k->d == k->d;
  }
  return 0;
}

/* The entry of map node nd whose key is the Lua value at idx, or -1. */
static int64_t map_find(lua_State *L, int idx, int vidx, lpt_VSrc *src,
                        vnode *nd) {
  list_open(L, src, nd);
  if (key_kind(nd->type->elem->kind) == KY_NONE) return -1;
  vkey k, o;
  unsigned char uuid[16];
  if (!lua_key(L, idx, vidx, nd, &k, uuid)) return -1;
  vhash *h = map_hash(L, src, nd);
  uint32_t hv = key_hash(&k);
  for (uint32_t j = hv & h->mask;; j = (j + 1) & h->mask) {
    uint64_t e = h->slot[j];
    if (!e) return -1;
    if ((uint32_t)(e >> 32) == hv) {
      read_key(nd, src, (uint32_t)e - 1, &o);
      if (key_eq(&k, &o)) return (int64_t)(uint32_t)e - 1;
    }
  }
}

/* Push the key of entry i (scalars as decode gives them; other keys
 * decoded into tables). */
static void push_map_key(lua_State *L, int vidx, lpt_View *v, vnode *nd,
                         uint32_t i) {
  const pt_type *kt = nd->type->elem;
  uint32_t off = elem_off(nd, i);
  if (!is_nested(kt)) {
    push_scalar(L, vidx, v->src, nd, i, kt, off, -1);
    return;
  }
  char err[400];
  push_cx(L, vidx);
  int cx = lua_gettop(L);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  add_path(&b, v->src, nd, -1);
  luaL_pushresult(&b);
  int r = lpt_decode_at(L, cx, kt->plan, kt, lua_tostring(L, -1),
                        nd->depth + 1, v->src->base, v->src->len, off,
                        nd->proto, nd->flags, nd->max_depth, 0, err,
                        sizeof err);
  if (r) {
    lua_pushstring(L, err);
    lua_error(L);
  }
  lua_replace(L, cx);
  lua_settop(L, cx);
}

/* ---- __index --------------------------------------------------------------- */

/* The element index (0-based) the Lua key at idx names in a list of n, or
 * -1. */
static int64_t list_key(lua_State *L, int idx, uint32_t n) {
  if (lua_type(L, idx) != LUA_TNUMBER) return -1;
#if LPT_LUAJIT
  lua_Number d = lua_tonumber(L, idx);
  if (!(d >= 1 && d <= (lua_Number)n) || d != floor(d)) return -1;
  return (int64_t)d - 1;
#else
  int ok;
  lua_Integer i = lua_tointegerx(L, idx, &ok);
  if (!ok || i < 1 || (uint64_t)i > n) return -1;
  return (int64_t)i - 1;
#endif
}

/* Push element i of list node nd. */
static void push_elem(lua_State *L, int vidx, lpt_View *v, vnode *nd,
                      uint32_t i) {
  const pt_type *et = nd->type->elem;
  if (!nd->l.fixed) list_index(L, v->src, nd);
  push_value(L, vidx, v, nd, i, nd->l.count, et, elem_off(nd, i), -1);
}

static void push_mval(lua_State *L, int vidx, lpt_View *v, vnode *nd,
                      uint32_t i) {
  push_value(L, vidx, v, nd, i, nd->l.count, nd->type->val, mval_off(nd, i),
             -1);
}

/* v[k]: a field (structs), an element (lists, sets: 1-based), the value
 * under a key (maps); else the method of that name, else nil. */
static int Lpt_view_index(lua_State *L) {
  lpt_View *v = checkview(L, 1);
  checklive(L, v);
  vnode *nd = v->node;
  lpt_VSrc *src = v->src;
  if (nd->kind == VK_STRUCT) {
    if (lua_type(L, 2) == LUA_TSTRING) {
      size_t n;
      const char *s = lua_tolstring(L, 2, &n);
      vkeys *k = &src->vc->pk[nd->plan->index];
      if (!k->ready) {
        push_cx(L, 1);
        plan_keys(L, src->vc, nd->plan, lua_gettop(L));
        lua_pop(L, 1);
      }
      int slot = find_slot(k, nd->plan, s, n);
      if (slot >= 0) {
        push_field(L, 1, v, slot);
        return 1;
      }
    }
  } else if (nd->kind == VK_LIST) {
    list_open(L, src, nd);
    int64_t i = list_key(L, 2, nd->l.count);
    if (i >= 0) {
      push_elem(L, 1, v, nd, (uint32_t)i);
      return 1;
    }
    if (lua_type(L, 2) == LUA_TNUMBER) {
      lua_pushnil(L);
      return 1;
    }
  } else {
    int64_t i = map_find(L, 2, 1, src, nd);
    if (i >= 0) {
      push_mval(L, 1, v, nd, (uint32_t)i);
      return 1;
    }
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(2)); /* the methods */
  return 1;
}

/* ---- the LuaJIT FFI path ----------------------------------------------------
 *
 * lua/petrel/ffi.lua replaces the views' __index and __len on LuaJIT with
 * Lua functions that call these through the FFI (compiled by the trace
 * compiler, where a C API metamethod stops it). They read what the C API
 * reads, through the same steps (struct_find_e, list_index_e, pt_v_scalar),
 * and never raise: whatever they do not finish (an expired view, bad
 * bytes, ENOMEM, a nested value, which needs a new userdata, a default to
 * copy, enum names, a UUID, an i64 beyond 2^53, a map) they leave to the
 * C API (VFR_FALLBACK), which then gives the value or the error itself.
 * v: the payload of a petrel.view userdata (the caller checks that). */

typedef struct lpt_vfout {
  double d;      /* VFR_NUM */
  const char *p; /* VFR_STR: the bytes, in the message */
  int32_t n;     /* (an int32, which LuaJIT reads as a number, not a boxed
                    64-bit cdata: cheaper where the caller is interpreted) */
} lpt_vfout;

enum {
  VFR_FALLBACK, /* ask the C API */
  VFR_NIL,
  VFR_NUM,
  VFR_FALSE,
  VFR_TRUE,
  VFR_STR,
  VFR_METHOD /* not a field or element: the method of that name, or nil */
};

#define VF_MAX_EXACT 9007199254740992LL /* 2^53 */

/* The scalar of type t at off of node nd, as push_scalar pushes it. */
static int vf_scalar(const lpt_VSrc *src, const vnode *nd, const pt_type *t,
                     uint32_t off, int cptbool, lpt_vfout *o) {
  if (t->kind == PT_K_BOOL && cptbool >= 0) return cptbool ? VFR_TRUE : VFR_FALSE;
  if (t->kind == PT_K_UUID || (t->kind == PT_K_ENUM && (nd->flags & VF_ENUM_NAMES)))
    return VFR_FALLBACK;
  pt_vval x;
  pt_verr e;
  if (pt_v_scalar(nd->proto, src->base, src->len, off, t->kind, &x, &e))
    return VFR_FALLBACK;
  switch (t->kind) {
    case PT_K_BOOL: return x.i ? VFR_TRUE : VFR_FALSE;
    case PT_K_I64:
      if (x.i > VF_MAX_EXACT || x.i < -VF_MAX_EXACT) return VFR_FALLBACK;
      /* fall through */
    case PT_K_I8:
    case PT_K_I16:
    case PT_K_I32:
    case PT_K_ENUM: o->d = (double)x.i; return VFR_NUM;
    case PT_K_DOUBLE: o->d = x.d; return VFR_NUM;
    case PT_K_STRING:
    case PT_K_BINARY:
#if LPT_LUAJIT
      if (x.n > LPT_MAX_STRING) return VFR_FALLBACK;
#endif
      if (x.n > INT32_MAX) return VFR_FALLBACK;
      o->p = (const char *)x.p;
      o->n = (int32_t)x.n;
      return VFR_STR;
  }
  return VFR_FALLBACK;
}

/* v[name] for a string key (s, n: the Lua string's bytes, as interned). */
PT_FFI int lpt_vf_field(lpt_View *v, const char *s, size_t n, lpt_vfout *o) {
  lpt_VSrc *src = v->src;
  vnode *nd = v->node;
  if (v->gen != src->gen) return VFR_FALLBACK;
  if (nd->kind == VK_LIST) return nd->opened ? VFR_METHOD : VFR_FALLBACK;
  if (nd->kind != VK_STRUCT) return VFR_FALLBACK;
  const pt_plan *p = nd->plan;
  const vkeys *k = &src->vc->pk[p->index];
  if (!k->ready) return VFR_FALLBACK;
  int slot = find_slot(k, p, s, n);
  if (slot < 0) return VFR_METHOD;
  pt_verr e;
  int r = struct_find_e(src, nd, slot, &e);
  if (r < 0) return VFR_FALLBACK;
  const pt_field *f = &p->fields[slot];
  if (!r)
    return (f->has_default && f->req != PT_REQ_OPTIONAL) || f->req == PT_REQ_REQUIRED
               ? VFR_FALLBACK
               : VFR_NIL;
  if (is_nested(f->type)) return VFR_FALLBACK;
  const pt_vslot *sl = &nd->s->slot[slot];
  int cb = nd->proto == PT_PROTO_COMPACT && f->type->kind == PT_K_BOOL ? sl->boolv : -1;
  return vf_scalar(src, nd, f->type, sl->off, cb, o);
}

/* v[i] for a number key (lists and sets). */
PT_FFI int lpt_vf_elem(lpt_View *v, double i, lpt_vfout *o) {
  lpt_VSrc *src = v->src;
  vnode *nd = v->node;
  if (v->gen != src->gen || nd->kind != VK_LIST) return VFR_FALLBACK;
  pt_verr e;
  if (list_open_e(src, nd, &e)) return VFR_FALLBACK;
  if (!(i >= 1 && i <= (double)nd->l.count) || i != floor(i)) return VFR_NIL;
  const pt_type *et = nd->type->elem;
  if (is_nested(et)) return VFR_FALLBACK;
  if (list_index_e(src, nd, &e)) return VFR_FALLBACK;
  return vf_scalar(src, nd, et, elem_off(nd, (uint32_t)i - 1), -1, o);
}

/* #v: the count (structs 0), or -1 for the C API (a double: LuaJIT reads
 * it as a number, where an int64 would be boxed). */
PT_FFI double lpt_vf_len(lpt_View *v) {
  vnode *nd = v->node;
  if (v->gen != v->src->gen) return -1;
  if (nd->kind == VK_STRUCT) return 0;
  pt_verr e;
  if (list_open_e(v->src, nd, &e)) return -1;
  return nd->l.count;
}

/* ---- length, iteration ------------------------------------------------------ */

/* #v: elements of a list or set, entries of a map; 0 for a struct (as
 * for a decoded struct's table). */
static int Lpt_view_len(lua_State *L) {
  lpt_View *v = checkview(L, 1);
  checklive(L, v);
  vnode *nd = v->node;
  if (nd->kind == VK_STRUCT) {
    lua_pushinteger(L, 0);
    return 1;
  }
  list_open(L, v->src, nd);
  lua_pushinteger(L, (lua_Integer)nd->l.count);
  return 1;
}

/* The iterator of v:pairs(): upvalue 2 counts. Structs: the fields decode
 * would set (on the wire, or with a default), in id order, as name,
 * value; lists and sets: index, element; maps: key, value in wire order
 * (a key repeated on the wire once, at its last entry). */
static int view_iter(lua_State *L) {
  lpt_View *v = checkview(L, 1);
  checklive(L, v);
  vnode *nd = v->node;
  lpt_VSrc *src = v->src;
  lua_Integer i = lua_tointeger(L, lua_upvalueindex(2));
  if (nd->kind == VK_STRUCT) {
    const pt_plan *p = nd->plan;
    struct_find(L, src, nd, -1);
    for (; i < p->nfields; i++) {
      const pt_field *f = &p->fields[i];
      if (nd->s->slot[i].found || f->req == PT_REQ_REQUIRED ||
          (f->has_default && f->req != PT_REQ_OPTIONAL))
        break;
    }
    if (i >= p->nfields) return 0;
    lua_pushinteger(L, i + 1);
    lua_replace(L, lua_upvalueindex(2));
    push_cx(L, 1);
    lua_rawgeti(L, -1, CX_KEYS);
    lua_rawgeti(L, -1, p->key_base + p->fields[i].index + 1);
    lua_replace(L, -3);
    lua_pop(L, 1);
    push_field(L, 1, v, (int)i);
    return 2;
  }
  list_index(L, src, nd);
  if (nd->kind == VK_LIST) {
    if (i >= nd->l.count) return 0;
    lua_pushinteger(L, i + 1);
    lua_replace(L, lua_upvalueindex(2));
    lua_pushinteger(L, i + 1);
    push_elem(L, 1, v, nd, (uint32_t)i);
    return 2;
  }
  int hashed = key_kind(nd->type->elem->kind) != KY_NONE;
  vhash *h = hashed ? map_hash(L, src, nd) : NULL;
  for (; i < nd->l.count; i++) {
    if (!h) break;
    vkey k, o; /* an entry whose key comes again later is not the one */
    read_key(nd, src, (uint32_t)i, &k);
    uint32_t hv = key_hash(&k), j = hv & h->mask;
    int64_t at = -1;
    for (;; j = (j + 1) & h->mask) {
      uint64_t e = h->slot[j];
      if (!e) break;
      if ((uint32_t)(e >> 32) == hv) {
        read_key(nd, src, (uint32_t)e - 1, &o);
        if (key_eq(&k, &o)) {
          at = (int64_t)(uint32_t)e - 1;
          break;
        }
      }
    }
    if (at == i) break;
  }
  if (i >= nd->l.count) return 0;
  lua_pushinteger(L, i + 1);
  lua_replace(L, lua_upvalueindex(2));
  push_map_key(L, 1, v, nd, (uint32_t)i);
  push_mval(L, 1, v, nd, (uint32_t)i);
  return 2;
}

/* v:pairs() -> iterator, v, nil (also __pairs on Lua 5.4; LuaJIT's pairs
 * does not look at __pairs) */
static int Lpt_view_pairs(lua_State *L) {
  lpt_View *v = checkview(L, 1);
  checklive(L, v);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushinteger(L, 0);
  lua_pushcclosure(L, view_iter, 2);
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  return 3;
}

/* v:ipairs() -> the elements of a list or set (a struct or a map: none,
 * as ipairs gives of their decoded tables) */
static int Lpt_view_ipairs(lua_State *L) {
  lpt_View *v = checkview(L, 1);
  checklive(L, v);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushinteger(L, v->node->kind == VK_LIST ? 0 : INT32_MAX);
  lua_pushcclosure(L, view_iter, 2);
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  return 3;
}

/* ---- names ---------------------------------------------------------------- */

static void add_type(luaL_Buffer *b, const pt_type *t, int depth) {
  if (depth > 16) {
    luaL_addstring(b, "...");
    return;
  }
  switch (t->kind) {
    case PT_K_STRUCT: luaL_addstring(b, t->plan->name); return;
    case PT_K_LIST:
    case PT_K_SET:
      luaL_addstring(b, pt_kind_names[t->kind]);
      luaL_addchar(b, '<');
      add_type(b, t->elem, depth + 1);
      luaL_addchar(b, '>');
      return;
    case PT_K_MAP:
      luaL_addstring(b, "map<");
      add_type(b, t->elem, depth + 1);
      luaL_addchar(b, ',');
      add_type(b, t->val, depth + 1);
      luaL_addchar(b, '>');
      return;
    default: luaL_addstring(b, pt_kind_names[t->kind]);
  }
}

static void push_type_name(lua_State *L, const vnode *nd) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  if (nd->type)
    add_type(&b, nd->type, 0);
  else
    luaL_addstring(&b, nd->plan->name);
  luaL_pushresult(&b);
}

/* v:type() -> "Request", "list<Item>", "map<string,string>" */
static int Lpt_view_type(lua_State *L) {
  lpt_View *v = checkview(L, 1);
  push_type_name(L, v->node);
  return 1;
}

/* tostring(v): petrel.view<Request> (petrel.dump(v) shows the values) */
static int Lpt_view_tostring(lua_State *L) {
  lpt_View *v = checkview(L, 1);
  lua_pushliteral(L, "petrel.view<");
  push_type_name(L, v->node);
  lua_pushstring(L, v->gen != v->src->gen ? ">, expired" : ">");
  lua_concat(L, 3);
  return 1;
}

/* v:protocol() -> "binary" | "compact" */
static int Lpt_view_protocol(lua_State *L) {
  lpt_View *v = checkview(L, 1);
  lua_pushstring(L, pt_proto_names[v->node->proto]);
  return 1;
}

/* v:expired() -> whether v can no longer be read (never raises) */
static int Lpt_view_expired(lua_State *L) {
  lpt_View *v = checkview(L, 1);
  lua_pushboolean(L, v->gen != v->src->gen);
  return 1;
}

/* petrel.view.is(x) -> whether x is a message view */
static int Lpt_view_is(lua_State *L) {
  lua_pushboolean(L, toview(L, 1) != NULL);
  return 1;
}

static int Lpt_view_newindex(lua_State *L) {
  return luaL_error(L, "petrel.view: views are read-only (v:with{...} makes a "
                       "new encoding with fields replaced)");
}

/* ---- methods ---------------------------------------------------------------- */

/* The slot of the field named by the string at idx in struct node nd, or
 * -1 (vidx: a view of the message). */
static int slot_of(lua_State *L, int vidx, lpt_VSrc *src, vnode *nd,
                   int idx) {
  if (lua_type(L, idx) != LUA_TSTRING) return -1;
  size_t n;
  const char *s = lua_tolstring(L, idx, &n);
  vkeys *k = &src->vc->pk[nd->plan->index];
  if (!k->ready) {
    push_cx(L, vidx);
    plan_keys(L, src->vc, nd->plan, lua_gettop(L));
    lua_pop(L, 1);
  }
  return find_slot(k, nd->plan, s, n);
}

/* v:has(key) -> whether the field is on the wire (structs), the key is
 * there (maps), the index is in range (lists) */
static int Lpt_view_has(lua_State *L) {
  lpt_View *v = checkview(L, 1);
  checklive(L, v);
  vnode *nd = v->node;
  lpt_VSrc *src = v->src;
  int r = 0;
  if (nd->kind == VK_STRUCT) {
    int slot = slot_of(L, 1, src, nd, 2);
    if (slot < 0)
      return luaL_argerror(L, 2, lua_pushfstring(L, "not a field of %s",
                                                 nd->plan->name));
    r = struct_find(L, src, nd, slot);
  } else if (nd->kind == VK_LIST) {
    list_open(L, src, nd);
    r = list_key(L, 2, nd->l.count) >= 0;
  } else {
    r = map_find(L, 2, 1, src, nd) >= 0;
  }
  lua_pushboolean(L, r);
  return 1;
}

/* v:decode([opts]) -> the value as T:decode gives it | nil, err. opts: as
 * decode's (the view's options by default; the protocol is the view's). */
static int Lpt_view_decode(lua_State *L) {
  lpt_View *v = checkview(L, 1);
  checklive(L, v);
  lua_settop(L, 2);
  int opts = 0;
  if (!lua_isnil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    opts = 2;
  }
  vnode *nd = v->node;
  lpt_VSrc *src = v->src;
  push_cx(L, 1);
  int cx = lua_gettop(L);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  add_path(&b, src, nd, -1);
  luaL_pushresult(&b);
  char err[400];
  if (lpt_decode_at(L, cx, nd->plan, nd->type, lua_tostring(L, -1), nd->depth,
                    src->base, src->len, nd->off, nd->proto, nd->flags,
                    nd->max_depth, opts, err, sizeof err)) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  return 1;
}

/* Link n bytes at p of the view's message into b, pinning them. */
static int link_bytes(lua_State *L, int vidx, lpt_VSrc *src, pt_buf *b,
                      const unsigned char *p, size_t n) {
  if (src->blk) {
    pt_block_pin(src->blk);
    return pt_buf_link(b, p, n, unpin_release, src->blk, 0);
  }
  if (src->has_str && n) {
    push_msg_of(L, vidx);
    push_msg_uv(L, -1, 1);
    intptr_t tag = lpt_anchor(L, -1);
    lua_pop(L, 2);
    return pt_buf_link(b, p, n, lpt_release_anchor, src->S, tag);
  }
  return pt_buf_append(b, p, n);
}

/* v:bytes([buf]) -> the encoding of the value (a string: the message's own
 * string when the view covers all of it, else one copy) | buf, with the
 * bytes appended without a copy (linked; they stay pinned until consumed) */
static int Lpt_view_bytes(lua_State *L) {
  lpt_View *v = checkview(L, 1);
  checklive(L, v);
  vnode *nd = v->node;
  lpt_VSrc *src = v->src;
  uint32_t end = node_end(L, src, nd, NULL, 0);
  size_t n = end - nd->off;
  const unsigned char *p = src->base + nd->off;
  if (!lua_isnoneornil(L, 2)) {
    pt_buf *b = lpt_checkbuf(L, 2);
    if (link_bytes(L, 1, src, b, p, n) != 0) return luaL_error(L, "out of memory");
    lua_settop(L, 2);
    return 1;
  }
  if (src->has_str && nd->off == 0 && n == src->len) {
    push_msg_of(L, 1);
    push_msg_uv(L, -1, 1);
    return 1;
  }
  lua_pushlstring(L, (const char *)p, n);
  return 1;
}

/* v:span() -> pos, next_pos: where the value lies in the message's bytes
 * (1-based, as decode's positions) */
static int Lpt_view_span(lua_State *L) {
  lpt_View *v = checkview(L, 1);
  checklive(L, v);
  uint32_t end = node_end(L, v->src, v->node, NULL, 0);
  lua_pushinteger(L, (lua_Integer)v->node->off + 1);
  lua_pushinteger(L, (lua_Integer)end + 1);
  return 2;
}

/* v:retain() -> v: the message outlives the handler it was given to (a
 * server's views expire when the handler returns). A pinned block much
 * larger than the message is traded for a copy of the message's bytes in
 * a block of their size, so a retained view keeps only what it reads. */
static int Lpt_view_retain(lua_State *L) {
  lpt_View *v = checkview(L, 1);
  checklive(L, v);
  lpt_VSrc *src = v->src;
  src->retained = 1;
  if (src->blk && src->len && src->blk->cap >= 2 * src->len) {
    pt_block *nb = pt_block_get(src->blk->pool, src->len);
    if (nb) {
      memcpy(nb->data, src->base, src->len);
      nb->fill = src->len;
      pt_block_pin(nb);
      pt_block_release(nb);
      pt_block_unpin(src->blk);
      src->blk = nb;
      src->base = (const unsigned char *)nb->data;
    }
  }
  lua_settop(L, 1);
  return 1;
}

/* v:release(): every view of v's message expires now and its bytes are
 * let go (unpinned) */
static int Lpt_view_release(lua_State *L) {
  lpt_View *v = checkview(L, 1);
  if (v->gen != v->src->gen) return 0;
  push_msg_of(L, 1);
  msg_expire(L, lua_gettop(L), v->src);
  return 0;
}

/* A new message holding the bytes of buffer b, viewed as struct plan p
 * (bound to the context table at cx); pushes the view. */
static void push_new_root(lua_State *L, lpt_VSrc *like, int cx, pt_buf *b,
                          const vnode *proto_of) {
  lpt_VSrc *src = new_msg(L, 0);
  int sidx = lua_gettop(L);
  msg_set_buf(L, src, b, 0, pt_buf_len(b));
  lua_pushvalue(L, cx);
  set_msg_uv(L, sidx, 2);
  src->vc = like->vc;
  src->cx = like->cx;
  vnode *nd = varena(L, src, sizeof *nd, 1);
  nd->kind = VK_STRUCT;
  nd->proto = proto_of->proto;
  nd->flags = proto_of->flags;
  nd->max_depth = proto_of->max_depth;
  nd->key = -1;
  nd->plan = proto_of->plan;
  src->nnodes++;
  push_view(L, sidx, 1, src, nd);
  lua_replace(L, sidx);
}

/* v:with{ field = value, ... } -> a view of a new encoding of v's struct
 * with those fields replaced (or added), made by splicing: the other
 * fields' bytes (unknown ones too) are copied as they are, the new values
 * encoded; values may be views. */
static int Lpt_view_with(lua_State *L) {
  lpt_View *v = checkview(L, 1);
  checklive(L, v);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  vnode *nd = v->node;
  lpt_VSrc *src = v->src;
  if (nd->kind != VK_STRUCT)
    return luaL_error(L, "petrel.view: with works on struct views, not %s",
                      pt_kind_names[nd->type->kind]);
  const pt_plan *p = nd->plan;
  unsigned char *repl = newud(L, (size_t)p->nfields + 1, 0); /* 3 */
  memset(repl, 0, (size_t)p->nfields + 1);
  lua_pushnil(L);
  while (lua_next(L, 2)) {
    lua_pop(L, 1);
    int slot = slot_of(L, 1, src, nd, -1);
    if (slot < 0) {
      if (lua_type(L, -1) == LUA_TSTRING)
        return luaL_error(L, "petrel.view: '%s' is not a field of %s",
                          lua_tostring(L, -1), p->name);
      return luaL_error(L, "petrel.view: a %s key is not a field of %s",
                        luaL_typename(L, -1), p->name);
    }
    repl[slot] = 1;
  }
  uint32_t end = node_end(L, src, nd, NULL, 0);
  push_cx(L, 1); /* 4 */
  int cx = lua_gettop(L);
  pt_buf *ob = lpt_newbuf(L, src->S->pool); /* 5: freed by the GC on a raise */
  pt_wr w;
  pt_wr_init_buf(&w, ob, (size_t)(end - nd->off) + 64);
  const int cpt = nd->proto == PT_PROTO_COMPACT;
  const unsigned char *base = src->base;
  uint32_t at = nd->off;
  int lastin = 0, lastout = 0, next = 0;
  for (;;) {
    int ft = 0, id = 0, bv = 0;
    int k = cpt ? pt_cpt_rd_field(base + at, end - at, &lastin, &ft, &id, &bv)
                : pt_bin_rd_field(base + at, end - at, &ft, &id);
    if (k < 0) return raise_at(L, src, nd, -1, "bad field header", at);
    if (ft == PT_T_STOP) break;
    for (; next < p->nfields && p->fields[next].id < id; next++)
      if (repl[next]) {
        lua_getfield(L, 2, p->fields[next].name);
        lpt_encode_field(L, cx, p, next, -1, &w, nd->proto, &lastout);
        lua_pop(L, 1);
      }
    uint32_t v0 = at + (uint32_t)k, v1 = v0;
    if (!(cpt && ft == PT_T_BOOL)) {
      pt_verr e;
      v1 = pt_v_skip(nd->proto, base, end, v0, ft, budget(nd), &e);
      if (!v1) return raise_verr(L, src, nd, &e);
    }
    int slot = pt_plan_slot(p, id);
    if (!(slot >= 0 && repl[slot])) { /* kept: copied as it is */
      if (!cpt) {
        if (pt_wr_bytes(&w, base + at, v1 - at)) return luaL_error(L, "out of memory");
      } else {
        if (pt_wr_need(&w, PT_MAX_FIELD)) return luaL_error(L, "out of memory");
        w.w = pt_cpt_wr_field(w.w, ft, id, &lastout, bv);
        if (pt_wr_bytes(&w, base + v0, v1 - v0)) return luaL_error(L, "out of memory");
      }
    }
    at = v1;
  }
  for (; next < p->nfields; next++)
    if (repl[next]) {
      lua_getfield(L, 2, p->fields[next].name);
      lpt_encode_field(L, cx, p, next, -1, &w, nd->proto, &lastout);
      lua_pop(L, 1);
    }
  if (pt_wr_need(&w, 1)) return luaL_error(L, "out of memory");
  *w.w++ = PT_T_STOP;
  if (pt_wr_flush(&w)) return luaL_error(L, "out of memory");
  push_new_root(L, src, cx, ob, nd);
  pt_buf_clear(ob);
  return 1;
}

/* ---- T:view ------------------------------------------------------------------ */

static void read_view_opts(lua_State *L, int idx, int *proto, int *flags,
                           int *max_depth) {
  if (lua_isnoneornil(L, idx)) return;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_getfield(L, idx, "protocol");
  if (!lua_isnil(L, -1)) *proto = lpt_checkproto(L, -1);
  lua_getfield(L, idx, "max_depth");
  if (!lua_isnil(L, -1))
    *max_depth = (int)lpt_checkint(L, -1, 1, LPT_MAXDEPTH_LIMIT);
  static const char *const names[] = {"enum_names", "int64_as_string",
                                      "typed", "unknown"};
  for (int i = 0; i < 4; i++) {
    lua_getfield(L, idx, names[i]);
    if (lua_toboolean(L, -1)) *flags |= 1 << i;
  }
  lua_pop(L, 6);
}

/* T:view(string | buffer | message [, pos [, opts]]) -> view | nil, err
 * opts: protocol, max_depth, enum_names, int64_as_string (what scalar
 * reads give), typed, unknown (what v:decode() gives by default). A
 * string is referenced, a buffer's readable bytes pinned where they lie
 * (copied once when they span blocks; the buffer is not consumed). */
static int Lpt_type_view(lua_State *L) {
  lpt_Type *T = lpt_checktype(L, 1);
  lua_settop(L, 4);
  int64_t pos = lua_isnil(L, 3) ? 1 : lpt_checkint(L, 3, 1, INT64_MAX);
  int proto = PT_PROTO_BINARY, flags = 0, max_depth = LPT_MAXDEPTH_DEFAULT;
  read_view_opts(L, 4, &proto, &flags, &max_depth);
  lpt_VSrc *src;
  int sidx;
  if (lua_type(L, 2) == LUA_TSTRING) {
    src = new_msg(L, 0);
    sidx = lua_gettop(L);
    msg_hold_str(L, sidx, src, 2);
  } else if ((src = tomsg(L, 2)) != NULL) {
    sidx = 2;
  } else {
    pt_buf *b = lpt_checkbuf(L, 2);
    src = new_msg(L, 0);
    sidx = lua_gettop(L);
    msg_set_buf(L, src, b, 0, pt_buf_len(b));
  }
  if ((uint64_t)pos > (uint64_t)src->len + 1) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: position %d is past the end", T->plan->name,
                    (int)pos);
    return 2;
  }
  lpt_getuv(L, 1);
  msg_bind(L, sidx, src, lua_gettop(L), T);
  lua_pop(L, 1);
  vnode *nd = varena(L, src, sizeof *nd, 1);
  nd->kind = VK_STRUCT;
  nd->proto = (uint8_t)proto;
  nd->flags = (uint8_t)flags;
  nd->max_depth = (uint16_t)max_depth;
  nd->key = -1;
  nd->plan = T->plan;
  nd->off = (uint32_t)(pos - 1);
  src->nnodes++;
  push_view(L, sidx, 1, src, nd);
  return 1;
}

/* ---- messages: what a server hands its handlers ---------------------------- */

/* core.message() -> an empty message (a server keeps a few and reuses
 * them: take_frame, take, expire) */
static int Lpt_message(lua_State *L) {
  new_msg(L, 1);
  return 1;
}

/* Take n bytes (after skip) of buffer b into message m, consuming the
 * first `consume` bytes of b (at least skip + n); m's views of before
 * expire. */
static void msg_take(lua_State *L, int sidx, lpt_VSrc *src, pt_buf *b,
                     size_t skip, size_t n, size_t consume) {
  if (src->retained)
    luaL_error(L, "petrel.view: a retained message cannot take new bytes");
  msg_expire(L, sidx, src);
  msg_set_buf(L, src, b, skip, n);
  pt_buf_skip(b, consume);
}

/* m:take(buf, n) -> m: the next n bytes of buf (consumed) */
static int Lpt_message_take(lua_State *L) {
  lpt_VSrc *src = checkmsg(L, 1);
  pt_buf *b = lpt_checkbuf(L, 2);
  size_t n = (size_t)lpt_checkint(L, 3, 0, INT64_MAX);
  if (n > pt_buf_len(b)) return luaL_argerror(L, 3, "more than the buffer holds");
  msg_take(L, 1, src, b, 0, n, n);
  lua_settop(L, 1);
  return 1;
}

/* For framers (lpt_frame.c): message at idx takes bytes [skip, skip + n)
 * of b, then the first `consume` bytes of b are consumed (consume >=
 * skip + n); pushes the message. */
void lpt_msg_take(lua_State *L, int idx, pt_buf *b, size_t skip, size_t n,
                  size_t consume) {
  idx = lua_absindex(L, idx);
  msg_take(L, idx, checkmsg(L, idx), b, skip, n, consume);
  lua_pushvalue(L, idx);
}

/* For framers: message at idx holds the string on top of the stack
 * (popped); pushes the message. */
void lpt_msg_hold(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  lpt_VSrc *src = checkmsg(L, idx);
  if (src->retained)
    luaL_error(L, "petrel.view: a retained message cannot take new bytes");
  msg_expire(L, idx, src);
  msg_hold_str(L, idx, src, -1);
  lua_pop(L, 1); /* the string: the message holds it */
  lua_pushvalue(L, idx);
}

/* core.take_frame(buf, max, m) -> m | nil (not all here yet) | false, err:
 * the next length-prefixed frame of buf into message m, as buf:read_frame
 * reads one into a string, but with no copy where it lies in one block */
static int Lpt_take_frame(lua_State *L) {
  pt_buf *b = lpt_checkbuf(L, 1);
  size_t max = (size_t)lpt_checkint(L, 2, 0, INT64_MAX);
  lpt_VSrc *src = checkmsg(L, 3);
  uint64_t len;
  if (pt_buf_peek_be(b, 0, 4, &len) != 0) return 0;
  if (len == 0 || len > max) {
    char msg[96];
    snprintf(msg, sizeof msg, "frame of %llu bytes (limit %llu)",
             (unsigned long long)len, (unsigned long long)max);
    lua_pushboolean(L, 0);
    lua_pushstring(L, msg);
    return 2;
  }
  if (pt_buf_len(b) - 4 < len) return 0;
  msg_take(L, 3, src, b, 4, (size_t)len, 4 + (size_t)len);
  lua_settop(L, 3);
  return 1;
}

/* m:header([max_name]) -> name, mtype, seqid, next_pos, protocol | nil |
 * false, err (core.msg_header over the message's bytes) */
static int Lpt_message_header(lua_State *L) {
  lpt_VSrc *src = checkmsg(L, 1);
  int64_t maxn = lua_isnoneornil(L, 2) ? 65536 : lpt_checkint(L, 2, 0, INT32_MAX);
  pt_msg m;
  int k = pt_msg_parse(src->base, src->len, (size_t)maxn, &m);
  if (k == PT_NEED) return 0;
  if (k == PT_BAD) {
    lua_pushboolean(L, 0);
    lua_pushstring(L, m.why ? m.why : "bad envelope");
    return 2;
  }
  lua_pushlstring(L, (const char *)m.name, m.name_len);
  lua_pushinteger(L, m.mtype);
  lua_pushinteger(L, m.seqid);
  lua_pushinteger(L, (lua_Integer)k + 1);
  lua_pushstring(L, pt_proto_names[m.proto]);
  return 5;
}

/* m:expire() -> true: its views expired, its bytes let go, m can take new
 * bytes | false: a view of it was retained (m must not be reused) */
static int Lpt_message_expire(lua_State *L) {
  lpt_VSrc *src = checkmsg(L, 1);
  if (src->retained) {
    lua_pushboolean(L, 0);
    return 1;
  }
  msg_expire(L, 1, src);
  lua_pushboolean(L, 1);
  return 1;
}

static int Lpt_message_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)checkmsg(L, 1)->len);
  return 1;
}

/* m:string() -> the message's bytes as a string (a copy) */
static int Lpt_message_string(lua_State *L) {
  lpt_VSrc *src = checkmsg(L, 1);
  lua_pushlstring(L, (const char *)src->base, src->len);
  return 1;
}

const unsigned char *lpt_vsrc_bytes(lua_State *L, int idx, size_t *len) {
  if (lua_type(L, idx) != LUA_TUSERDATA) return NULL;
  lpt_VSrc *src = tomsg(L, idx);
  if (!src) return NULL;
  *len = src->len;
  return src->base;
}

/* ---- views in encode ----------------------------------------------------------- */

/* Do two types encode alike? (the same compiled type, or one of the same
 * shape: field ids and wire types, element types) */
static int plan_like(const pt_plan *a, const pt_plan *b, int depth);
static int type_like(const pt_type *a, const pt_type *b, int depth) {
  if (a == b) return 1;
  if (a->ttype != b->ttype) return 0;
  if (depth > 16) return 1;
  switch (a->ttype) {
    case PT_T_STRUCT: return plan_like(a->plan, b->plan, depth + 1);
    case PT_T_LIST:
    case PT_T_SET: return type_like(a->elem, b->elem, depth + 1);
    case PT_T_MAP:
      return type_like(a->elem, b->elem, depth + 1) &&
             type_like(a->val, b->val, depth + 1);
    default: return 1;
  }
}

static int plan_like(const pt_plan *a, const pt_plan *b, int depth) {
  if (a == b) return 1;
  if (a->nfields != b->nfields) return 0;
  for (int i = 0; i < a->nfields; i++)
    if (a->fields[i].id != b->fields[i].id ||
        !type_like(a->fields[i].type, b->fields[i].type, depth))
      return 0;
  return 1;
}

int lpt_view_write(lua_State *L, int idx, const pt_plan *p, const pt_type *t,
                   pt_wr *wr, int proto, size_t link_min, char *err,
                   size_t errlen) {
  lpt_View *v = toview(L, idx);
  if (!v) return 0;
  idx = lua_absindex(L, idx);
  if (v->gen != v->src->gen) {
    snprintf(err, errlen, "view expired");
    return -1;
  }
  vnode *nd = v->node;
  lpt_VSrc *src = v->src;
  int ok = p ? nd->kind == VK_STRUCT && plan_like(nd->plan, p, 0)
             : nd->type && type_like(nd->type, t, 0);
  if (!ok) {
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    if (p) {
      luaL_addstring(&b, p->name);
    } else {
      add_type(&b, t, 0);
    }
    luaL_pushresult(&b);
    push_type_name(L, nd);
    snprintf(err, errlen, "a view of %s given for %s", lua_tostring(L, -1),
             lua_tostring(L, -2));
    lua_pop(L, 2);
    return -1;
  }
  uint32_t end = node_end(L, src, nd, err, errlen);
  if (!end) return -1;
  const unsigned char *bp = src->base + nd->off;
  size_t n = end - nd->off;
  if (nd->proto == proto) {
    int r;
    if (n >= link_min && !wr->count_only) {
      if (src->blk) {
        pt_block_pin(src->blk);
        r = pt_wr_link(wr, bp, n, unpin_release, src->blk, 0);
      } else if (src->has_str) {
        push_msg_of(L, idx);
        push_msg_uv(L, -1, 1);
        intptr_t tag = lpt_anchor(L, -1);
        lua_pop(L, 2);
        r = pt_wr_link(wr, bp, n, lpt_release_anchor, src->S, tag);
      } else {
        r = pt_wr_bytes(wr, bp, n);
      }
    } else {
      r = pt_wr_bytes(wr, bp, n);
    }
    if (r) luaL_error(L, "out of memory");
    return 1;
  }
  int tt = p ? PT_T_STRUCT : t->ttype;
  ptrdiff_t r = pt_transcode(nd->proto, bp, n, tt, proto, wr, budget(nd));
  if (r == PT_NOMEM) luaL_error(L, "out of memory");
  if (r < 0) {
    snprintf(err, errlen, "view of %s bytes cannot be transcoded to %s",
             pt_proto_names[nd->proto], pt_proto_names[proto]);
    return -1;
  }
  return 1;
}

/* ---- opening ---------------------------------------------------------------- */

static const luaL_Reg view_methods[] = {
    {"has", Lpt_view_has},         {"decode", Lpt_view_decode},
    {"bytes", Lpt_view_bytes},     {"with", Lpt_view_with},
    {"retain", Lpt_view_retain},   {"release", Lpt_view_release},
    {"pairs", Lpt_view_pairs},     {"ipairs", Lpt_view_ipairs},
    {"type", Lpt_view_type},       {"span", Lpt_view_span},
    {"protocol", Lpt_view_protocol}, {"expired", Lpt_view_expired},
    {"is", Lpt_view_is},           {NULL, NULL}};

static const luaL_Reg view_meta[] = {{"__len", Lpt_view_len},
                                     {"__tostring", Lpt_view_tostring},
                                     {"__newindex", Lpt_view_newindex},
#if !LPT_LUAJIT
                                     {"__pairs", Lpt_view_pairs},
#endif
                                     {NULL, NULL}};

static const luaL_Reg msg_methods[] = {{"take", Lpt_message_take},
                                       {"header", Lpt_message_header},
                                       {"expire", Lpt_message_expire},
                                       {"string", Lpt_message_string},
                                       {"len", Lpt_message_len},
                                       {NULL, NULL}};

static const luaL_Reg view_funcs[] = {{"message", Lpt_message},
                                      {"take_frame", Lpt_take_frame},
                                      {NULL, NULL}};

static const luaL_Reg type_view[] = {{"view", Lpt_type_view}, {NULL, NULL}};

/* stack: module, state, buffer metatable */
void lpt_open_view(lua_State *L) {
  int mod = lua_gettop(L) - 2;
  lpt_State *S = lua_touserdata(L, mod + 1);
  lua_newtable(L); /* the methods, also petrel.view */
  int methods = lua_gettop(L);
  lpt_setfuncs(L, methods, mod, view_methods);
  for (int twice = 0; twice < 2; twice++) {
    /* the second: an unnamed twin (views of nested lists and of maps) */
    if (!twice) {
      luaL_newmetatable(L, LPT_VIEW_MT);
    } else {
      lua_newtable(L);
    }
    int mt = lua_gettop(L);
    lua_pushvalue(L, mod + 1);
    lua_pushvalue(L, methods);
    lua_pushcclosure(L, Lpt_view_index, 2);
    lua_setfield(L, mt, "__index");
    lpt_setfuncs(L, mt, mod, view_meta);
    lua_pushliteral(L, "petrel.view");
    lua_setfield(L, mt, "__metatable");
    if (twice) {
      lua_pushvalue(L, mt);
      lua_setfield(L, LUA_REGISTRYINDEX, LPT_VIEW_MT "2");
    }
    lua_pushvalue(L, mt);
    if (!twice) {
      S->view_mt = lua_topointer(L, mt);
      S->view_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    } else {
      S->view_mt2 = lua_topointer(L, mt);
      S->view_mt2_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_pop(L, 1);
  }
  lua_setfield(L, mod, "view_methods");

  luaL_newmetatable(L, LPT_VSRC_MT);
  lua_pushvalue(L, -1);
  S->msg_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushcfunction(L, Lpt_msg_gc);
  lua_setfield(L, -2, "__gc");
  lua_newtable(L);
  lpt_setfuncs(L, -1, mod, msg_methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, Lpt_message_len);
  lua_setfield(L, -2, "__len");
  lua_pop(L, 1);
  lpt_setfuncs(L, mod, mod, view_funcs);

  luaL_getmetatable(L, LPT_TYPE_MT);
  lua_getfield(L, -1, "__index");
  lpt_setfuncs(L, -1, mod, type_view);
  lua_pop(L, 2);
}
