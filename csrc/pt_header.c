/*
 * pt_header.c — THeader and TTHeader frames, and one connection's framing
 * (see pt_header.h).
 */
#include "pt_header.h"

#include <string.h>

int pt_hdr_proto(int kind, uint32_t id) {
  switch (id) {
    case PT_HPROTO_BINARY: return PT_PROTO_BINARY;
    case PT_HPROTO_COMPACT: return PT_PROTO_COMPACT;
    case PT_HPROTO_JSON: return kind == PT_HDR_THEADER ? PT_PROTO_JSON : -1;
    default: return -1;
  }
}

uint32_t pt_hdr_proto_id(int proto) {
  return proto == PT_PROTO_COMPACT ? PT_HPROTO_COMPACT
         : proto == PT_PROTO_JSON  ? PT_HPROTO_JSON
                                   : PT_HPROTO_BINARY;
}

static int bad(pt_hdr *h, const char *why) {
  h->why = why;
  return PT_BAD;
}

/* A varint inside the header region [*pos, end). */
static int hv(const unsigned char *p, uint32_t *pos, uint32_t end,
              uint32_t *v) {
  int k = pt_rd_varint32(p + *pos, end - *pos, v);
  if (k < 0) return PT_BAD;
  *pos += (uint32_t)k;
  return 0;
}

/* The deadline entries (pt_hdr_timeout): the key "client_timeout", and
 * noting one (rank 2: TTHeader's integer RPCTimeout, which wins over the
 * string key; the last of a rank wins, as a table filled in wire order
 * keeps it). */
static int is_client_timeout(const unsigned char *k, uint32_t n) {
  return n == 14 && memcmp(k, "client_timeout", 14) == 0;
}
static void note_timeout(pt_hdr *h, int rank, uint32_t at, uint32_t len) {
  if (rank < h->tmo) return;
  h->tmo = rank;
  h->tmo_at = at;
  h->tmo_len = len;
}

/* THeader's info blocks in [pos, end): until the region ends or a type
 * that is not key/value (padding is zeros: it ends them too). */
static int theader_info(const unsigned char *p, uint32_t pos, uint32_t end,
                        pt_hdr *h) {
  uint32_t v;
  while (pos < end) {
    uint32_t at = pos, type, count;
    if (hv(p, &pos, end, &type) || type != PT_INFO_KV) {
      pos = at;
      break;
    }
    if (hv(p, &pos, end, &count)) return bad(h, "THeader info cut short");
    /* an entry takes 2 bytes at least: bound the loop by the region */
    if (count > (end - pos) / 2) return bad(h, "THeader info count too large");
    for (uint32_t i = 0; i < count; i++) {
      int tmo = 0;
      for (int kv = 0; kv < 2; kv++) {
        if (hv(p, &pos, end, &v)) return bad(h, "THeader info cut short");
        if (v > end - pos) return bad(h, "THeader info string too long");
        if (kv == 0)
          tmo = is_client_timeout(p + pos, v);
        else if (tmo)
          note_timeout(h, 1, pos, v);
        pos += v;
      }
    }
    h->nkv += count;
  }
  h->info_end = pos;
  return 0;
}

static int parse_theader(const unsigned char *p, uint32_t pos, uint32_t end,
                         pt_hdr *h) {
  uint32_t v, n;
  if (hv(p, &pos, end, &h->proto_id)) return bad(h, "THeader protocol id cut short");
  if (hv(p, &pos, end, &n)) return bad(h, "THeader transforms cut short");
  if (n > PT_HDR_MAX_XFORMS) return bad(h, "too many transforms");
  for (uint32_t i = 0; i < n; i++) {
    if (hv(p, &pos, end, &v)) return bad(h, "THeader transforms cut short");
    h->xf[h->nxf++] = v;
  }
  h->info_at = pos;
  return theader_info(p, pos, end, h);
}

/* TTHeader's info blocks in [pos, end): padding, string and integer
 * key/value blocks, the ACL token; any other id is an error. */
static int ttheader_info(const unsigned char *p, uint32_t pos, uint32_t end,
                         pt_hdr *h) {
  while (pos < end) {
    int id = p[pos++];
    if (id == PT_INFO_PADDING) continue;
    if (id == PT_INFO_ACL) {
      if (end - pos < 2) return bad(h, "TTHeader ACL token cut short");
      uint32_t len = pt_ld16(p + pos);
      pos += 2;
      if (len > end - pos) return bad(h, "TTHeader ACL token cut short");
      pos += len;
      h->acl = 1;
      continue;
    }
    if (id != PT_INFO_KV && id != PT_INFO_INTKV)
      return bad(h, "TTHeader info block of an unknown type");
    if (end - pos < 2) return bad(h, "TTHeader info cut short");
    uint32_t count = pt_ld16(p + pos);
    pos += 2;
    for (uint32_t i = 0; i < count; i++) {
      /* key: a u16 (int keys) or a u16-length string */
      if (end - pos < 2) return bad(h, "TTHeader info cut short");
      int tmo = 0;
      if (id == PT_INFO_KV) {
        uint32_t kl = pt_ld16(p + pos);
        pos += 2;
        if (kl > end - pos) return bad(h, "TTHeader info cut short");
        if (is_client_timeout(p + pos, kl)) tmo = 1;
        pos += kl;
      } else {
        if (pt_ld16(p + pos) == PT_INFO_RPC_TIMEOUT) tmo = 2;
        pos += 2;
      }
      if (end - pos < 2) return bad(h, "TTHeader info cut short");
      uint32_t vl = pt_ld16(p + pos);
      pos += 2;
      if (vl > end - pos) return bad(h, "TTHeader info cut short");
      if (tmo) note_timeout(h, tmo, pos, vl);
      pos += vl;
    }
    h->nkv += count;
  }
  h->info_end = end;
  return 0;
}

static int parse_ttheader(const unsigned char *p, uint32_t pos, uint32_t end,
                          pt_hdr *h) {
  h->proto_id = p[pos];
  uint32_t n = p[pos + 1];
  pos += 2;
  if (n > PT_HDR_MAX_XFORMS) return bad(h, "too many transforms");
  if (n > end - pos) return bad(h, "TTHeader transforms cut short");
  for (uint32_t i = 0; i < n; i++) h->xf[h->nxf++] = p[pos++];
  h->info_at = pos;
  return ttheader_info(p, pos, end, h);
}

int pt_hdr_parse(const unsigned char *p, size_t n, uint64_t max_frame,
                 pt_hdr *h) {
  h->why = NULL;
  h->nxf = 0;
  h->nkv = 0;
  h->acl = 0;
  h->tmo = 0;
  if (n < 4) return PT_NEED;
  uint32_t len = pt_ld32(p);
  if (len > max_frame || len > INT32_MAX) return bad(h, "header frame too large");
  if (len < 10) return bad(h, "header frame too short");
  if (n < 6) return PT_NEED;
  uint16_t magic = pt_ld16(p + 4);
  h->kind = magic == PT_THEADER_MAGIC    ? PT_HDR_THEADER
            : magic == PT_TTHEADER_MAGIC ? PT_HDR_TTHEADER
                                         : PT_HDR_NONE;
  if (!h->kind) return bad(h, "not a header frame (bad magic)");
  if (n < 14) return PT_NEED;
  h->flags = pt_ld16(p + 6);
  h->seqid = pt_ld32(p + 8);
  uint32_t hsize = (uint32_t)pt_ld16(p + 12) * 4;
  if (hsize > len - 10) return bad(h, "header size larger than the frame");
  if (h->kind == PT_HDR_TTHEADER && (hsize < 2 || hsize > PT_TTHEADER_MAX_HEADER))
    return bad(h, "bad TTHeader header size");
  if (h->kind == PT_HDR_THEADER && hsize < 2)
    return bad(h, "bad THeader header size");
  if (n < (size_t)len + 4) return PT_NEED;
  uint32_t end = 14 + hsize;
  int r = h->kind == PT_HDR_THEADER ? parse_theader(p, 14, end, h)
                                    : parse_ttheader(p, 14, end, h);
  if (r) return r;
  h->proto = pt_hdr_proto(h->kind, h->proto_id);
  h->payload_at = end;
  h->frame_len = len + 4;
  return (int)h->frame_len;
}

int pt_hdr_info(int kind, const unsigned char *p, size_t n, pt_hdr *h) {
  memset(h, 0, sizeof *h);
  h->kind = kind;
  h->proto = -1;
  h->payload_at = h->frame_len = (uint32_t)n; /* a frame of its blocks alone */
  if (n > PT_TTHEADER_MAX_HEADER * 4) return bad(h, "info blocks too long");
  if (kind == PT_HDR_THEADER) {
    if (theader_info(p, 0, (uint32_t)n, h)) return PT_BAD;
    if (h->info_end != n) return bad(h, "THeader info followed by other bytes");
    return 0;
  }
  if (kind == PT_HDR_TTHEADER) return ttheader_info(p, 0, (uint32_t)n, h) ? PT_BAD : 0;
  return bad(h, "not a header kind");
}

int pt_hdr_timeout(const unsigned char *frame, const pt_hdr *h,
                   const unsigned char **v, uint32_t *vlen) {
  if (!h->tmo) return 0;
  *v = frame + h->tmo_at;
  *vlen = h->tmo_len;
  return 1;
}

int pt_hdr_next(const unsigned char *p, const pt_hdr *h, pt_hdr_iter *it,
                pt_hdr_kv *kv) {
  uint32_t pos = it->pos, v = 0;
  while (!it->left) { /* the next block with entries */
    if (pos >= h->info_end) return 0;
    if (h->kind == PT_HDR_THEADER) {
      pos += (uint32_t)pt_rd_varint32(p + pos, h->info_end - pos, &v); /* type 1 */
      pos += (uint32_t)pt_rd_varint32(p + pos, h->info_end - pos, &v);
      it->block = PT_INFO_KV;
      it->left = v;
      continue;
    }
    int id = p[pos++];
    if (id == PT_INFO_PADDING) continue;
    if (id == PT_INFO_ACL) {
      kv->type = PT_INFO_ACL;
      kv->vlen = pt_ld16(p + pos);
      kv->v = p + pos + 2;
      kv->k = NULL;
      kv->klen = 0;
      kv->ikey = 0;
      it->pos = pos + 2 + kv->vlen;
      return 1;
    }
    it->block = id;
    it->left = pt_ld16(p + pos);
    pos += 2;
  }
  kv->type = it->block;
  kv->ikey = 0;
  kv->k = NULL;
  kv->klen = 0;
  if (h->kind == PT_HDR_THEADER) {
    pos += (uint32_t)pt_rd_varint32(p + pos, h->info_end - pos, &v);
    kv->k = p + pos;
    kv->klen = v;
    pos += v;
    pos += (uint32_t)pt_rd_varint32(p + pos, h->info_end - pos, &v);
    kv->v = p + pos;
    kv->vlen = v;
    pos += v;
  } else {
    if (it->block == PT_INFO_KV) {
      kv->klen = pt_ld16(p + pos);
      kv->k = p + pos + 2;
      pos += 2 + kv->klen;
    } else {
      kv->ikey = pt_ld16(p + pos);
      pos += 2;
    }
    kv->vlen = pt_ld16(p + pos);
    kv->v = p + pos + 2;
    pos += 2 + kv->vlen;
  }
  it->left--;
  it->pos = pos;
  return 1;
}

/* ---- writing ------------------------------------------------------------ */

/* The header region without padding; 0 when it cannot be written. */
static size_t region_size(const pt_hdr_out *o) {
  size_t s = 0, nkv = 0, nint = 0;
  if (o->nxf < 0 || o->nxf > PT_HDR_MAX_XFORMS) return 0;
  if (o->kind == PT_HDR_THEADER) {
    s += pt_varint_size(o->proto_id) + pt_varint_size((uint64_t)o->nxf);
    for (int i = 0; i < o->nxf; i++) s += pt_varint_size(o->xf[i]);
    for (size_t i = 0; i < o->nkv; i++) {
      const pt_hdr_kv *kv = &o->kv[i];
      if (kv->type != PT_INFO_KV) return 0;
      s += pt_varint_size(kv->klen) + kv->klen + pt_varint_size(kv->vlen) +
           kv->vlen;
      nkv++;
    }
    if (nkv) s += 1 + pt_varint_size(nkv);
    return s;
  }
  if (o->kind != PT_HDR_TTHEADER || o->proto_id > 255) return 0;
  s = 2 + (size_t)o->nxf;
  for (int i = 0; i < o->nxf; i++)
    if (o->xf[i] > 255) return 0;
  for (size_t i = 0; i < o->nkv; i++) {
    const pt_hdr_kv *kv = &o->kv[i];
    if (kv->vlen > 0xffff) return 0;
    if (kv->type == PT_INFO_KV) {
      if (kv->klen > 0xffff) return 0;
      s += 4 + kv->klen + kv->vlen;
      nkv++;
    } else if (kv->type == PT_INFO_INTKV) {
      s += 4 + kv->vlen;
      nint++;
    } else if (kv->type == PT_INFO_ACL) {
      s += 3 + kv->vlen;
    } else {
      return 0;
    }
  }
  if (nkv > 0xffff || nint > 0xffff) return 0;
  if (nkv) s += 3;
  if (nint) s += 3;
  return s;
}

size_t pt_hdr_size(const pt_hdr_out *o) {
  size_t r = region_size(o);
  if (!r) return 0;
  size_t padded = (r + 3) & ~(size_t)3;
  if (padded / 4 > 0xffff) return 0;
  if (o->kind == PT_HDR_TTHEADER && padded > PT_TTHEADER_MAX_HEADER) return 0;
  return 14 + padded;
}

unsigned char *pt_hdr_write(unsigned char *w, const pt_hdr_out *o) {
  size_t r = region_size(o);
  size_t padded = (r + 3) & ~(size_t)3;
  unsigned char *start = w;
  pt_st32(w, 0);
  pt_st16(w + 4, o->kind == PT_HDR_THEADER ? PT_THEADER_MAGIC : PT_TTHEADER_MAGIC);
  pt_st16(w + 6, o->flags);
  pt_st32(w + 8, o->seqid);
  pt_st16(w + 12, (uint16_t)(padded / 4));
  w += 14;
  size_t nkv = 0, nint = 0;
  for (size_t i = 0; i < o->nkv; i++) {
    if (o->kv[i].type == PT_INFO_KV) nkv++;
    if (o->kv[i].type == PT_INFO_INTKV) nint++;
  }
  if (o->kind == PT_HDR_THEADER) {
    w = pt_wr_varint32(w, o->proto_id);
    w = pt_wr_varint32(w, (uint32_t)o->nxf);
    for (int i = 0; i < o->nxf; i++) w = pt_wr_varint32(w, o->xf[i]);
    if (nkv) {
      w = pt_wr_varint32(w, PT_INFO_KV);
      w = pt_wr_varint32(w, (uint32_t)nkv);
      for (size_t i = 0; i < o->nkv; i++) {
        const pt_hdr_kv *kv = &o->kv[i];
        w = pt_wr_varint32(w, kv->klen);
        memcpy(w, kv->k, kv->klen);
        w += kv->klen;
        w = pt_wr_varint32(w, kv->vlen);
        memcpy(w, kv->v, kv->vlen);
        w += kv->vlen;
      }
    }
  } else {
    *w++ = (unsigned char)o->proto_id;
    *w++ = (unsigned char)o->nxf;
    for (int i = 0; i < o->nxf; i++) *w++ = (unsigned char)o->xf[i];
    /* string entries, then integer ones (Kitex's order), then the token */
    for (int pass = 0; pass < 3; pass++) {
      int type = pass == 0 ? PT_INFO_KV : pass == 1 ? PT_INFO_INTKV : PT_INFO_ACL;
      size_t cnt = pass == 0 ? nkv : nint;
      if (pass < 2 && cnt) {
        *w++ = (unsigned char)type;
        pt_st16(w, (uint16_t)cnt);
        w += 2;
      }
      for (size_t i = 0; i < o->nkv; i++) {
        const pt_hdr_kv *kv = &o->kv[i];
        if (kv->type != type) continue;
        if (type == PT_INFO_ACL) {
          *w++ = PT_INFO_ACL;
        } else if (type == PT_INFO_KV) {
          pt_st16(w, (uint16_t)kv->klen);
          memcpy(w + 2, kv->k, kv->klen);
          w += 2 + kv->klen;
        } else {
          pt_st16(w, kv->ikey);
          w += 2;
        }
        pt_st16(w, (uint16_t)kv->vlen);
        memcpy(w + 2, kv->v, kv->vlen);
        w += 2 + kv->vlen;
      }
    }
  }
  while ((size_t)(w - start) < 14 + padded) *w++ = 0; /* padding */
  return w;
}

/* ---- framing ------------------------------------------------------------- */

/* Does an envelope start at p (n bytes)? Its first byte tells. */
static int looks_like_envelope(const unsigned char *p, size_t n) {
  if (n < 2) return 0;
  return (p[0] == 0x80 && p[1] == 0x01) || (p[0] == 0x82 && (p[1] & 0x1f) == 1) ||
         (p[0] == '[' && p[1] == '1');
}

int pt_frame_parse(const pt_framing *f, const unsigned char *p, size_t n,
                   uint64_t max_frame, pt_frame *fr) {
  fr->why = NULL;
  fr->inner = 0;
  size_t off = 0;
  uint32_t outer = 0;
  if (f->outer) {
    if (n < 4) return PT_NEED;
    outer = pt_ld32(p);
    if (outer == 0 || outer > max_frame || outer > INT32_MAX) {
      fr->why = "frame length out of range";
      return PT_BAD;
    }
    off = 4;
    if (!f->header) {
      if (n < (size_t)outer + 4) return PT_NEED;
      fr->payload_at = 4;
      fr->payload_len = outer;
      return (int)(outer + 4);
    }
  }
  if (n - off >= 4 && f->outer && pt_ld32(p + off) != outer - 4) {
    fr->why = "the frame and its header frame disagree on the length";
    return PT_BAD;
  }
  int k = pt_hdr_parse(p + off, n - off, max_frame, &fr->hdr);
  if (k == PT_BAD) {
    fr->why = fr->hdr.why;
    return PT_BAD;
  }
  if (n - off >= 6 && fr->hdr.kind != f->header) {
    fr->why = f->header == PT_HDR_THEADER ? "a TTHeader frame on a THeader connection"
                                          : "a THeader frame on a TTHeader connection";
    return PT_BAD;
  }
  if (k == PT_NEED) return PT_NEED;
  const pt_hdr *h = &fr->hdr;
  fr->payload_at = off + h->payload_at;
  fr->payload_len = h->frame_len - h->payload_at;
  if (h->kind == PT_HDR_TTHEADER && fr->payload_len >= 8) {
    const unsigned char *q = p + fr->payload_at;
    if (pt_ld32(q) == fr->payload_len - 4 &&
        looks_like_envelope(q + 4, fr->payload_len - 4)) {
      fr->inner = 1;
      fr->payload_at += 4;
      fr->payload_len -= 4;
    }
  }
  return (int)(off + h->frame_len);
}

size_t pt_frame_room(const pt_framing *f, const pt_hdr_out *h) {
  size_t r = f->outer ? 4 : 0;
  if (f->header) {
    size_t s = pt_hdr_size(h);
    if (!s) return 0;
    r += s;
    if (f->inner) r += 4;
  }
  return r;
}

unsigned char *pt_frame_open(unsigned char *w, const pt_framing *f,
                             const pt_hdr_out *h, pt_frame_mark *m,
                             size_t at) {
  unsigned char *w0 = w;
  m->at = at;
  m->outer = m->hdr = m->inner = NULL;
  if (f->outer) {
    m->outer = w;
    w += 4;
  }
  if (f->header) {
    m->hdr = w;
    w = pt_hdr_write(w, h);
    if (f->inner) {
      m->inner = w;
      w += 4;
    }
  }
  m->at_payload = at + (size_t)(w - w0);
  return w;
}

void pt_frame_close(const pt_frame_mark *m, size_t end) {
  size_t total = end - m->at;
  if (m->outer) pt_st32(m->outer, (uint32_t)(total - 4));
  if (m->hdr) pt_hdr_set_len(m->hdr, total - (m->outer ? 4 : 0));
  if (m->inner) pt_st32(m->inner, (uint32_t)(end - m->at_payload));
}
