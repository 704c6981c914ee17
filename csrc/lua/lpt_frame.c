/*
 * lpt_frame.c — framers: one connection's framing in Lua's hands, over
 * the core's detection (pt_detect.c), frame parser and header frames
 * (pt_header.c), transforms (pt_xform.c) and the unframed scanner
 * (pt_scan.c). A framer reads messages off a buffer (fr:next) and tells
 * T:encode_message how to frame what it writes (lpt_codec.c).
 *
 *   core.framer{ transport = "auto" | "framed" | "buffered" | "header" |
 *     "framed-header" | "ttheader" | "ttheader-framed", max_frame = n,
 *     max_name = n, accept = { "zlib", "zstd" } (transforms taken on
 *     input; default zlib), transforms = { "zlib" } (applied to what is
 *     written), flags = n, acl_token = s, echo = bool (write replies as
 *     the last frame read was: flags, transforms, a TTHeader's inner
 *     frame), raw_info = bool (fr:next gives a header frame's info blocks
 *     as their bytes, decoded when fr:info is asked: servers, whose
 *     handlers mostly never read them) } -> framer
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../pt_xform.h"
#include "lpt_codec.h"

#define LPT_DETECT_PEEK 70000 /* detection reads no further (a non-strict
                                 name of max_name, the 64 KiB default) */

static const struct {
  const char *name;
  pt_framing f;
} transports[] = {
    {"framed", {0, 1, PT_HDR_NONE, 0}},
    {"buffered", {1, 0, PT_HDR_NONE, 0}},
    {"header", {0, 0, PT_HDR_THEADER, 0}},
    {"framed-header", {0, 1, PT_HDR_THEADER, 0}},
    {"ttheader", {0, 0, PT_HDR_TTHEADER, 0}},
    {"ttheader-framed", {0, 0, PT_HDR_TTHEADER, 1}},
    {"framed-ttheader", {0, 1, PT_HDR_TTHEADER, 0}},
};
#define NTRANSPORTS (sizeof transports / sizeof *transports)

const char *lpt_framing_name(const pt_framing *f) {
  for (size_t i = 0; i < NTRANSPORTS; i++)
    if (memcmp(&transports[i].f, f, sizeof *f) == 0) return transports[i].name;
  return "?";
}

lpt_Framer *lpt_testframer(lua_State *L, int idx) {
  return lpt_testudata(L, idx, LPT_FRAMER_MT);
}

static lpt_Framer *checkframer(lua_State *L, int idx) {
  return lpt_checkudata(L, idx, LPT_FRAMER_MT);
}

/* A list of transform names at idx -> ids; raises for unknown names and
 * for names this build lacks. */
static int xform_list(lua_State *L, int idx, const char *opt, uint32_t *ids,
                      int cap) {
  luaL_checktype(L, idx, LUA_TTABLE);
  int n = (int)lua_rawlen(L, idx);
  if (n > cap) luaL_error(L, "core.framer: at most %d transforms in '%s'", cap, opt);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, i);
    const char *nm = lua_tostring(L, -1);
    uint32_t id = nm ? pt_xform_id(nm) : 0;
    if (!id)
      luaL_error(L, "core.framer: unknown transform %s in '%s' (zlib, zstd)",
                 nm ? nm : luaL_typename(L, -1), opt);
    if (!pt_xform_built(id))
      luaL_error(L, "core.framer: %s was not compiled in (build with libzstd-dev)", nm);
    ids[i - 1] = id;
    lua_pop(L, 1);
  }
  return n;
}

/* core.framer(opts) */
static int Lpt_framer(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lpt_Framer *fr = lua_newuserdata(L, sizeof *fr);
  memset(fr, 0, sizeof *fr);
  luaL_setmetatable(L, LPT_FRAMER_MT);
  fr->max_frame = 16 << 20;
  fr->max_name = 65536;
  fr->accept = 1u << PT_XF_ZLIB;
  lua_getfield(L, 1, "max_frame");
  if (!lua_isnil(L, -1)) fr->max_frame = (uint64_t)lpt_checkint(L, -1, 1, INT32_MAX);
  lua_getfield(L, 1, "max_name");
  if (!lua_isnil(L, -1)) fr->max_name = (uint32_t)lpt_checkint(L, -1, 0, INT32_MAX);
  lua_getfield(L, 1, "transport");
  const char *t = lua_isnil(L, -1) ? "auto" : luaL_checkstring(L, -1);
  if (strcmp(t, "auto") == 0) {
    fr->autodetect = 1;
  } else {
    size_t i = 0;
    while (i < NTRANSPORTS && strcmp(transports[i].name, t) != 0) i++;
    if (i == NTRANSPORTS) return luaL_error(L, "core.framer: unknown transport '%s'", t);
    fr->f = transports[i].f;
    fr->decided = 1;
  }
  lua_getfield(L, 1, "accept");
  if (!lua_isnil(L, -1)) {
    uint32_t ids[PT_HDR_MAX_XFORMS];
    int n = xform_list(L, lua_gettop(L), "accept", ids, PT_HDR_MAX_XFORMS);
    fr->accept = 0;
    for (int i = 0; i < n; i++) fr->accept |= 1u << ids[i];
  }
  lua_getfield(L, 1, "transforms");
  if (!lua_isnil(L, -1)) {
    fr->nxf = xform_list(L, lua_gettop(L), "transforms", fr->xf, PT_HDR_MAX_XFORMS);
    for (int i = 0; i < fr->nxf; i++) fr->accept |= 1u << fr->xf[i];
  }
  lua_getfield(L, 1, "flags");
  if (!lua_isnil(L, -1)) fr->flags = (uint16_t)lpt_checkint(L, -1, 0, 0xffff);
  lua_getfield(L, 1, "echo");
  fr->echo = lua_toboolean(L, -1);
  lua_getfield(L, 1, "raw_info");
  fr->raw_info = lua_toboolean(L, -1);
  lua_getfield(L, 1, "acl_token");
  if (!lua_isnil(L, -1)) {
    size_t n;
    const char *s = luaL_checklstring(L, -1, &n);
    if (n > 0xffff) return luaL_error(L, "core.framer: acl_token longer than 65535 bytes");
    fr->acl = malloc(n ? n : 1);
    if (!fr->acl) return luaL_error(L, "out of memory");
    memcpy(fr->acl, s, n);
    fr->acl_len = n;
  }
  lua_settop(L, 2);
  return 1;
}

static int Lpt_framer_gc(lua_State *L) {
  lpt_Framer *fr = checkframer(L, 1);
  free(fr->acl);
  fr->acl = NULL;
  free(fr->scan);
  fr->scan = NULL;
  return 0;
}

/* fr:transport() -> its name, nil while undecided */
static int Lpt_framer_transport(lua_State *L) {
  lpt_Framer *fr = checkframer(L, 1);
  if (!fr->decided) return 0;
  lua_pushstring(L, lpt_framing_name(&fr->f));
  return 1;
}

/* false, err [, seqid]: the one message is refused (when seqid is given,
 * its frame was consumed and the connection may go on) */
static int refuse(lua_State *L, const char *err, int with_seq, uint32_t seqid) {
  lua_pushboolean(L, 0);
  lua_pushstring(L, err);
  if (!with_seq) return 2;
  lua_pushinteger(L, (int32_t)seqid);
  return 3;
}

/* The info entries of a header frame: a table (string keys, integer keys
 * for TTHeader's integer entries), and the ACL token. */
static void push_info(lua_State *L, const unsigned char *frame,
                      const pt_hdr *h) {
  lua_createtable(L, 0, (int)(h->nkv < 64 ? h->nkv : 64));
  int t = lua_gettop(L);
  pt_hdr_iter it;
  pt_hdr_kv kv;
  pt_hdr_iter_init(h, &it);
  lua_pushnil(L); /* the token */
  while (pt_hdr_next(frame, h, &it, &kv)) {
    if (kv.type == PT_INFO_ACL) {
      lua_pushlstring(L, (const char *)kv.v, kv.vlen);
      lua_replace(L, t + 1);
      continue;
    }
    if (kv.type == PT_INFO_KV)
      lua_pushlstring(L, (const char *)kv.k, kv.klen);
    else
      lua_pushinteger(L, kv.ikey);
    lua_pushlstring(L, (const char *)kv.v, kv.vlen);
    lua_rawset(L, t);
  }
}

/* The value of a deadline entry: an integer when it is plain decimal
 * digits (as Kitex and fbthrift write it), else the string (Lua's
 * tonumber reads it as it can). */
static void push_timeout(lua_State *L, const unsigned char *v, uint32_t n) {
  if (n > 0 && n <= 15) {
    lua_Integer x = 0;
    uint32_t i = 0;
    while (i < n && v[i] >= '0' && v[i] <= '9') x = x * 10 + (v[i++] - '0');
    if (i == n) {
      lua_pushinteger(L, x);
      return;
    }
  }
  lua_pushlstring(L, (const char *)v, n);
}

/* fr:info(bytes) -> headers, acl_token: the info blocks a raw_info
 * framer's fr:next gave, decoded (as fr:next gives them without raw_info);
 * raises when they are not the info blocks of the framer's header kind. */
static int Lpt_framer_info(lua_State *L) {
  lpt_Framer *fr = checkframer(L, 1);
  size_t n;
  const unsigned char *p = (const unsigned char *)luaL_checklstring(L, 2, &n);
  if (!fr->decided || !fr->f.header)
    return luaL_error(L, "fr:info: the framer reads no header frames");
  pt_hdr h;
  if (pt_hdr_info(fr->f.header, p, n, &h) != 0)
    return luaL_error(L, "fr:info: %s", h.why ? h.why : "bad info blocks");
  lua_settop(L, 2);
  push_info(L, p, &h);
  return 2;
}

/* fr:next(buf [, m]) -> msg [, headers [, acl_token]] (the message consumed;
 *     with m, a message (core.message): m holding it, with no copy where
 *     a plain frame or unframed message lies in one block)
 *   | nil (more bytes needed)
 *   | false, err [, seqid] (seqid: that frame is refused and consumed;
 *     the connection can go on: an unknown transform, a protocol id petrel
 *     does not speak)
 * A raw_info framer gives msg [, info [, timeout]] instead: a header
 * frame's info blocks as their bytes (a string; nil when the frame has no
 * entries and no token; fr:info decodes them) and its deadline entry
 * (pt_hdr_timeout: an integer when plain digits, else the string; nil
 * when the frame has none): no table and no string per entry for the
 * calls whose handlers never read them.
 * The first call of an "auto" framer decides the transport from the
 * first bytes (pt_detect_wire). */
static int Lpt_framer_next(lua_State *L) {
  lpt_Framer *fr = checkframer(L, 1);
  pt_buf *b = lpt_checkbuf(L, 2);
  int m = lua_isnoneornil(L, 3) ? 0 : 3; /* checked where it is used */
  size_t len = pt_buf_len(b);
  if (!len) return 0;
  if (!fr->decided) {
    size_t k = len < LPT_DETECT_PEEK ? len : LPT_DETECT_PEEK;
    const unsigned char *p = (const unsigned char *)pt_buf_peek(b, k);
    if (!p) return luaL_error(L, "out of memory");
    pt_detect d;
    int r = pt_detect_wire(p, k, fr->max_frame, fr->max_name, &d);
    if (r == PT_NEED) {
      if (k < LPT_DETECT_PEEK) return 0;
      return refuse(L, "no Thrift message in the first 70000 bytes", 0, 0);
    }
    if (d.wire != PT_WIRE_THRIFT) {
      char msg[160];
      snprintf(msg, sizeof msg, "%s on a Thrift port (%s), not a Thrift message",
               d.what, d.wire == PT_WIRE_HTTP ? "http"
                       : d.wire == PT_WIRE_TLS ? "tls" : "unknown");
      return refuse(L, msg, 0, 0);
    }
    fr->f.unframed = d.transport == PT_TR_UNFRAMED && d.header == PT_HDR_NONE;
    fr->f.outer = d.transport == PT_TR_FRAMED;
    fr->f.header = (uint8_t)d.header;
    fr->f.inner = 0;
    fr->decided = 1;
  }
  if (fr->f.unframed) {
    if (!fr->scan) {
      fr->scan = malloc(sizeof *fr->scan);
      if (!fr->scan) return luaL_error(L, "out of memory");
      pt_scan_init(fr->scan, fr->max_frame, LPT_MAXDEPTH_DEFAULT);
    }
    pt_scan *s = fr->scan;
    if (len < s->fed) pt_scan_reset(s); /* consumed elsewhere */
    uint64_t off = 0;
    int r = s->err ? PT_SCAN_BAD : PT_SCAN_MORE;
    for (pt_node *n = b->head; n && r == PT_SCAN_MORE; n = n->next) {
      uint64_t nlen = (uint64_t)(n->wr - n->rd);
      if (off + nlen > s->fed) {
        size_t from = (size_t)(s->fed - off);
        r = pt_scan_feed(s, (const unsigned char *)n->rd + from,
                         (size_t)(nlen - from), NULL);
      }
      off += nlen;
    }
    if (r == PT_SCAN_MORE) return 0;
    if (r == PT_SCAN_BAD) {
      char msg[160];
      snprintf(msg, sizeof msg, "%s at offset %llu", s->err,
               (unsigned long long)s->fed);
      return refuse(L, msg, 0, 0);
    }
    size_t n = (size_t)s->fed;
    if (m) {
      lpt_msg_take(L, m, b, 0, n, n);
    } else {
      const char *p = pt_buf_peek(b, n);
      if (!p) return luaL_error(L, "out of memory");
      lua_pushlstring(L, p, n);
      pt_buf_skip(b, n);
    }
    pt_scan_reset(s);
    return 1;
  }
  /* framed: the first bytes are checked at once (lengths, magic, header
   * size), the whole frame once it is there */
  size_t k = len < 64 ? len : 64;
  uint64_t flen;
  /* all of a frame of a sane length there: parsed once, whole */
  if (len > 64 && pt_buf_peek_be(b, 0, 4, &flen) == 0 && flen <= fr->max_frame &&
      flen + 4 <= len)
    k = (size_t)flen + 4;
  const unsigned char *p = (const unsigned char *)pt_buf_peek(b, k);
  if (!p) return luaL_error(L, "out of memory");
  pt_frame pf;
  int r = pt_frame_parse(&fr->f, p, k, fr->max_frame, &pf);
  if (r == PT_NEED && k < len) {
    size_t total = 4 + (size_t)pt_ld32(p);
    if (len < total) return 0;
    p = (const unsigned char *)pt_buf_peek(b, total);
    if (!p) return luaL_error(L, "out of memory");
    r = pt_frame_parse(&fr->f, p, total, fr->max_frame, &pf);
  }
  if (r == PT_NEED) return 0;
  if (r == PT_BAD) {
    char msg[160];
    uint32_t l = pt_ld32(p);
    if (!fr->f.header && (l == 0 || l > fr->max_frame))
      snprintf(msg, sizeof msg, "frame of %lu bytes (limit %llu)", (unsigned long)l,
               (unsigned long long)fr->max_frame);
    else
      snprintf(msg, sizeof msg, "%s", pf.why ? pf.why : "bad frame");
    return refuse(L, msg, 0, 0);
  }
  size_t total = (size_t)r;
  const unsigned char *payload = p + pf.payload_at;
  size_t plen = pf.payload_len;
  if (!fr->f.header) {
    if (m) {
      lpt_msg_take(L, m, b, (size_t)pf.payload_at, plen, total);
      return 1;
    }
    lua_pushlstring(L, (const char *)payload, plen);
    pt_buf_skip(b, total);
    return 1;
  }
  /* a header frame: its protocol, its transforms, its info entries */
  const pt_hdr *h = &pf.hdr;
  const unsigned char *frame = p + (fr->f.outer ? 4 : 0);
  if (fr->echo) {
    fr->flags = h->flags;
    fr->nxf = 0;
    fr->f.inner = (uint8_t)pf.inner;
  }
  char msg[200];
  if (h->proto < 0) {
    snprintf(msg, sizeof msg, "protocol id %u of a %s frame is not one petrel speaks",
             (unsigned)h->proto_id, h->kind == PT_HDR_THEADER ? "THeader" : "TTHeader");
    pt_buf_skip(b, total);
    return refuse(L, msg, 1, h->seqid);
  }
  for (int i = 0; i < h->nxf; i++) {
    uint32_t id = h->xf[i];
    if (id >= 32 || !(fr->accept & (1u << id)) || !pt_xform_built(id)) {
      const char *nm = pt_xform_name(id);
      if (nm && !pt_xform_built(id))
        snprintf(msg, sizeof msg, "transform %s (%u) was not compiled in", nm, (unsigned)id);
      else if (nm)
        snprintf(msg, sizeof msg, "transform %s (%u) is not enabled here", nm, (unsigned)id);
      else
        snprintf(msg, sizeof msg, "unknown transform %u", (unsigned)id);
      pt_buf_skip(b, total);
      return refuse(L, msg, 1, h->seqid);
    }
  }
  unsigned char *owned = NULL;
  if (h->nxf) { /* undone in the reverse order */
    const unsigned char *cur = payload;
    size_t curn = plen;
    for (int i = h->nxf - 1; i >= 0; i--) {
      unsigned char *out;
      size_t outn;
      const char *why = "bad payload";
      if (pt_xform_undo(h->xf[i], cur, curn, fr->max_frame, &out, &outn, &why)) {
        free(owned);
        snprintf(msg, sizeof msg, "%s", why);
        pt_buf_skip(b, total);
        return refuse(L, msg, 1, h->seqid);
      }
      free(owned);
      owned = out;
      cur = out;
      curn = outn;
    }
    payload = cur;
    plen = curn;
    if (fr->echo) {
      fr->nxf = h->nxf;
      memcpy(fr->xf, h->xf, sizeof h->xf);
    }
  }
  lua_pushlstring(L, (const char *)payload, plen);
  free(owned);
  if (m) lpt_msg_hold(L, m);
  int nret = 1;
  if (fr->raw_info) {
    if (h->nkv || h->acl) {
      lua_pushlstring(L, (const char *)frame + h->info_at, h->info_end - h->info_at);
      nret = 2;
      const unsigned char *tv;
      uint32_t tl;
      if (h->nkv && pt_hdr_timeout(frame, h, &tv, &tl)) {
        push_timeout(L, tv, tl);
        nret = 3;
      }
    }
  } else if (h->nkv || h->acl) {
    push_info(L, frame, h);
    nret = 3;
  }
  pt_buf_skip(b, total);
  return nret;
}

/* The header one message is written with (lpt_codec.c's encode_message):
 * the framer's flags, transforms and token, seqid, the protocol, and the
 * entries of the table at hidx (0: none): string keys -> string entries,
 * integer keys -> TTHeader's integer entries. */
void lpt_framer_header(lua_State *L, lpt_Framer *fr, int hidx, int32_t seqid,
                       int proto, pt_hdr_out *o, pt_hdr_kv *kv, size_t cap) {
  o->kind = fr->f.header;
  o->flags = fr->flags;
  o->seqid = (uint32_t)seqid;
  o->proto_id = pt_hdr_proto_id(proto);
  o->nxf = fr->nxf;
  memcpy(o->xf, fr->xf, sizeof o->xf);
  o->kv = kv;
  o->nkv = 0;
  size_t n = 0;
  if (hidx) {
    lua_pushnil(L);
    while (lua_next(L, hidx)) {
      n++;
      lua_pop(L, 1);
    }
  }
  if (fr->acl) n++;
  if (n > cap) {
    kv = lua_newuserdata(L, n * sizeof *kv); /* stays on the stack */
    o->kv = kv;
  }
  size_t i = 0;
  if (hidx) {
    lua_pushnil(L);
    while (lua_next(L, hidx)) {
      pt_hdr_kv *e = &kv[i++];
      size_t vl;
      if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "header values must be strings (got %s)", luaL_typename(L, -1));
      e->v = (const unsigned char *)lua_tolstring(L, -1, &vl);
      e->vlen = (uint32_t)(vl > UINT32_MAX ? UINT32_MAX : vl);
      if (lua_type(L, -2) == LUA_TSTRING) {
        size_t kl;
        e->type = PT_INFO_KV;
        e->k = (const unsigned char *)lua_tolstring(L, -2, &kl);
        e->klen = (uint32_t)(kl > UINT32_MAX ? UINT32_MAX : kl);
        e->ikey = 0;
      } else {
        int64_t key;
        if (!lpt_toi64(L, -2, &key) || key < 0 || key > 0xffff)
          luaL_error(L, "header keys are strings or integers 0-65535 (TTHeader), got %s",
                     luaL_typename(L, -2));
        if (o->kind != PT_HDR_TTHEADER)
          luaL_error(L, "integer header key %d: only TTHeader carries integer keys",
                     (int)key);
        e->type = PT_INFO_INTKV;
        e->ikey = (uint16_t)key;
        e->k = NULL;
        e->klen = 0;
      }
      lua_pop(L, 1);
    }
  }
  if (fr->acl) {
    if (o->kind != PT_HDR_TTHEADER) luaL_error(L, "an ACL token needs TTHeader");
    pt_hdr_kv *e = &kv[i++];
    e->type = PT_INFO_ACL;
    e->k = NULL;
    e->klen = 0;
    e->ikey = 0;
    e->v = (const unsigned char *)fr->acl;
    e->vlen = (uint32_t)fr->acl_len;
  }
  o->nkv = i;
}

/* core.xforms() -> the transforms this build has: { "zlib", "zstd" } */
static int Lpt_xforms(lua_State *L) {
  lua_newtable(L);
  int n = 0;
  for (uint32_t id = 1; id < 32; id++) {
    const char *nm = pt_xform_name(id);
    if (nm && pt_xform_built(id)) {
      lua_pushstring(L, nm);
      lua_rawseti(L, -2, ++n);
    }
  }
  return 1;
}

static const luaL_Reg frame_funcs[] = {{"framer", Lpt_framer},
                                       {"xforms", Lpt_xforms},
                                       {NULL, NULL}};

/* stack: module, state, buffer metatable */
void lpt_open_frame(lua_State *L) {
  int mod = lua_gettop(L) - 2;
  luaL_newmetatable(L, LPT_FRAMER_MT);
  lua_newtable(L);
  static const luaL_Reg fm[] = {{"next", Lpt_framer_next},
                                {"info", Lpt_framer_info},
                                {"transport", Lpt_framer_transport},
                                {NULL, NULL}};
  lpt_setfuncs(L, -1, mod, fm);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, Lpt_framer_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  lpt_setfuncs(L, mod, mod, frame_funcs);
}
