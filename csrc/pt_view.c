/*
 * pt_view.c — struct, list and map indexes over encoded Thrift values
 * (see pt_view.h). Everything is bounded by the message's length; values
 * are skipped with pt_thrift's skippers, which check every length against
 * the bytes present.
 */
#include "pt_view.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int verr(pt_verr *e, size_t off, const char *fmt, ...) {
  va_list ap;
  e->off = off;
  va_start(ap, fmt);
  vsnprintf(e->msg, sizeof e->msg, fmt, ap);
  va_end(ap);
  return -1;
}

uint32_t pt_v_skip(int proto, const unsigned char *base, size_t len,
                   uint32_t off, int t, int budget, pt_verr *e) {
  size_t k = off <= len ? pt_skip_proto(proto, base + off, base + len, t,
                                        budget)
                        : 0;
  if (!k) {
    verr(e, off, "%s value is cut short or malformed", pt_ttype_name(t));
    return 0;
  }
  return off + (uint32_t)k;
}

/* ---- struct levels ---------------------------------------------------- */

size_t pt_vs_size(const pt_plan *p) {
  return sizeof(pt_vstruct) + (size_t)p->nfields * sizeof(pt_vslot);
}

void pt_vs_init(pt_vstruct *s, const pt_plan *p, int proto, uint32_t start,
                int budget) {
  memset(s, 0, pt_vs_size(p));
  s->plan = p;
  s->proto = proto;
  s->budget = budget;
  s->start = s->scan = start;
  s->pending = -1;
}

/* Move the scan past the value of the pending slot. */
static int vs_unpend(pt_vstruct *s, const unsigned char *base, size_t len,
                     pt_verr *e) {
  pt_vslot *sl = &s->slot[s->pending];
  if (!sl->end) {
    const pt_field *f = &s->plan->fields[s->pending];
    uint32_t end = pt_v_skip(s->proto, base, len, sl->off, f->type->ttype,
                             s->budget, e);
    if (!end) {
      e->field = s->pending;
      return -1;
    }
    sl->end = end;
  }
  s->scan = sl->end;
  s->pending = -1;
  return 0;
}

int pt_vs_find(pt_vstruct *s, const unsigned char *base, size_t len,
               int want, pt_verr *e) {
  const pt_plan *p = s->plan;
  const int cpt = s->proto == PT_PROTO_COMPACT;
  e->elem = -1;
  e->field = -1;
  if (want >= 0 && s->slot[want].found) return 1;
  if (s->end) return 0;
  if (s->pending >= 0 && vs_unpend(s, base, len, e)) return -1;
  for (;;) {
    uint32_t at = s->scan;
    if (at > len) return verr(e, at, "field header past the end");
    const unsigned char *q = base + at;
    size_t n = len - at;
    int ft = 0, id = 0, bv = 0, last = s->last;
    int k = cpt ? pt_cpt_rd_field(q, n, &last, &ft, &id, &bv)
                : pt_bin_rd_field(q, n, &ft, &id);
    if (k == PT_NEED)
      return verr(e, at, "field header cut short (%zu bytes left)", n);
    if (k < 0) return verr(e, at, "bad field header");
    /* s->last (Compact's previous id) moves with s->scan only: a field
     * that cannot be skipped leaves both, so asking again reads the same
     * header and gives the same error */
    uint32_t v = at + (uint32_t)k;
    if (ft == PT_T_STOP) {
      s->end = v;
      s->scan = v;
      s->last = last;
      return 0;
    }
    int slot = pt_plan_slot(p, id);
    int ours = slot >= 0 && p->fields[slot].type->ttype == ft &&
               !s->slot[slot].found;
    if (cpt && ft == PT_T_BOOL) { /* the value is in the header */
      if (ours) {
        s->slot[slot] = (pt_vslot){v, v, 1, (uint8_t)bv};
      }
      s->scan = v;
      s->last = last;
      if (ours && slot == want) return 1;
      continue;
    }
    if (ours) {
      s->slot[slot].off = v;
      s->slot[slot].end = 0;
      s->slot[slot].found = 1;
      s->slot[slot].boolv = 0;
      s->scan = v;
      s->last = last;
      s->pending = slot;
      if (slot == want) return 1;
      if (vs_unpend(s, base, len, e)) return -1;
      continue;
    }
    /* an unknown field, a type we do not expect, or a repeated id */
    uint32_t end = pt_v_skip(s->proto, base, len, v, ft, s->budget, e);
    if (!end) {
      snprintf(e->msg, sizeof e->msg, "cannot skip field %d of type %s", id,
               pt_ttype_name(ft));
      return -1;
    }
    s->scan = end;
    s->last = last;
  }
}

/* ---- list, set and map levels ------------------------------------------ */

int pt_vl_open(pt_vlist *l, int proto, const unsigned char *base, size_t len,
               uint32_t off, int ttype, int want_et, int want_vt,
               pt_verr *e) {
  const int cpt = proto == PT_PROTO_COMPACT;
  memset(l, 0, sizeof *l);
  l->proto = proto;
  e->elem = -1;
  e->field = -1;
  if (off > len) return verr(e, off, "value past the end");
  const unsigned char *q = base + off;
  size_t n = len - off;
  int et = 0, vt = 0, k;
  uint32_t count = 0;
  const char *kind = ttype == PT_T_SET ? "set" : "list";
  if (ttype == PT_T_MAP) {
    l->map = 1;
    k = cpt ? pt_cpt_rd_map(q, n, &et, &vt, &count)
            : pt_bin_rd_map(q, n, &et, &vt, &count);
    if (k == PT_NEED)
      return cpt ? verr(e, off, "map header cut short (%zu bytes left)", n)
                 : verr(e, off, "need 6 bytes, %zu left", n);
    if (k < 0)
      return cpt ? verr(e, off, "bad map header")
                 : verr(e, off, "negative entry count %d",
                        (int)(int32_t)pt_ld32(q + 2));
    if (count > 0 && (et != want_et || vt != want_vt))
      return verr(e, off, "map<%s,%s> on the wire, expected map<%s,%s>",
                  pt_ttype_name(et), pt_ttype_name(vt),
                  pt_ttype_name(want_et), pt_ttype_name(want_vt));
  } else {
    k = cpt ? pt_cpt_rd_list(q, n, &et, &count)
            : pt_bin_rd_list(q, n, &et, &count);
    if (k == PT_NEED)
      return cpt ? verr(e, off, "list header cut short (%zu bytes left)", n)
                 : verr(e, off, "need 5 bytes, %zu left", n);
    if (k < 0)
      return cpt ? verr(e, off, "bad list header")
                 : verr(e, off, "negative element count %d",
                        (int)(int32_t)pt_ld32(q + 1));
    if (count > 0 && et != want_et)
      return verr(e, off, "%s element type %s, expected %s", kind,
                  pt_ttype_name(et), pt_ttype_name(want_et));
  }
  l->et = (uint8_t)want_et;
  l->vt = (uint8_t)want_vt;
  l->count = count;
  l->body = off + (uint32_t)k;
  size_t left = len - l->body;
  size_t mw = pt_elem_min(proto, want_et);
  if (l->map) mw += pt_elem_min(proto, want_vt);
  if (count > left / mw)
    return verr(e, l->body, l->map ? "%d entries cannot fit in the %zu bytes left"
                                   : "%d elements cannot fit in the %zu bytes left",
                (int)count, left);
  size_t kw = pt_elem_width(proto, want_et);
  size_t vw = l->map ? pt_elem_width(proto, want_vt) : 0;
  if (count == 0 || (kw && (!l->map || vw))) {
    l->fixed = 1;
    l->kw = (uint32_t)kw;
    l->ew = (uint32_t)(kw + vw);
    /* the bytes are there: count * ew <= left (checked just above, the
     * minimum of a fixed type being its width) */
    l->end = l->body + count * l->ew;
  }
  return 0;
}

int pt_vl_index(pt_vlist *l, const unsigned char *base, size_t len,
                uint32_t *offs, int budget, pt_verr *e) {
  uint32_t at = l->body;
  size_t k = 0;
  e->field = -1;
  for (uint32_t i = 0; i < l->count; i++) {
    e->elem = i;
    offs[k++] = at - l->body;
    uint32_t nx = pt_v_skip(l->proto, base, len, at, l->et, budget, e);
    if (!nx) return -1;
    at = nx;
    if (l->map) {
      offs[k++] = at - l->body;
      nx = pt_v_skip(l->proto, base, len, at, l->vt, budget, e);
      if (!nx) return -1;
      at = nx;
    }
  }
  e->elem = -1;
  offs[k] = at - l->body;
  l->end = at;
  return 0;
}

/* ---- scalars ------------------------------------------------------------- */

/* An integer of width w (2, 4 or 8) at off. */
static int v_int(int proto, const unsigned char *p, size_t left, uint32_t off,
                 int w, int64_t *v, pt_verr *e) {
  if (proto != PT_PROTO_COMPACT) {
    if (left < (size_t)w)
      return verr(e, off, "need %d bytes, %zu left", w, left);
    *v = w == 2 ? (int16_t)pt_ld16(p)
         : w == 4 ? (int32_t)pt_ld32(p)
                  : (int64_t)pt_ld64(p);
    return 0;
  }
  int k;
  if (w == 8) {
    k = pt_cpt_rd_i64(p, left, v);
  } else if (w == 4) {
    int32_t x = 0;
    k = pt_cpt_rd_i32(p, left, &x);
    *v = x;
  } else {
    int16_t x = 0;
    k = pt_cpt_rd_i16(p, left, &x);
    *v = x;
  }
  const char *what = w == 8 ? "i64 varint" : w == 4 ? "i32 varint" : "i16 varint";
  if (k == PT_NEED)
    return verr(e, off, "%s cut short (%zu bytes left)", what, left);
  if (k < 0) return verr(e, off, "bad %s", what);
  return 0;
}

int pt_v_scalar(int proto, const unsigned char *base, size_t len,
                uint32_t off, int kind, pt_vval *out, pt_verr *e) {
  const unsigned char *p = base + (off <= len ? off : len);
  size_t left = off <= len ? len - off : 0;
  const int cpt = proto == PT_PROTO_COMPACT;
  switch (kind) {
    case PT_K_BOOL:
      if (!left) return verr(e, off, "need 1 bytes, 0 left");
      out->i = cpt ? p[0] == PT_CT_TRUE : p[0] != 0;
      return 0;
    case PT_K_I8:
      if (!left) return verr(e, off, "need 1 bytes, 0 left");
      out->i = (int8_t)p[0];
      return 0;
    case PT_K_I16: return v_int(proto, p, left, off, 2, &out->i, e);
    case PT_K_I32:
    case PT_K_ENUM: return v_int(proto, p, left, off, 4, &out->i, e);
    case PT_K_I64: return v_int(proto, p, left, off, 8, &out->i, e);
    case PT_K_DOUBLE: {
      if (left < 8) return verr(e, off, "need 8 bytes, %zu left", left);
      uint64_t u = cpt ? pt_ld64le(p) : pt_ld64(p);
      memcpy(&out->d, &u, 8);
      return 0;
    }
    case PT_K_STRING:
    case PT_K_BINARY: {
      uint32_t n = 0;
      int k = cpt ? pt_cpt_rd_len(p, left, &n) : pt_bin_rd_len(p, left, &n);
      if (k == PT_NEED)
        return cpt ? verr(e, off, "string length cut short (%zu bytes left)", left)
                   : verr(e, off, "need 4 bytes, %zu left", left);
      if (k < 0)
        return cpt ? verr(e, off, "bad string length")
                   : verr(e, off, "negative string length %d",
                          (int)(int32_t)pt_ld32(p));
      if ((size_t)n > left - (size_t)k)
        return verr(e, off, "string length %d exceeds the %zu bytes left",
                    (int)n, left - (size_t)k);
      out->p = p + k;
      out->n = n;
      return 0;
    }
    case PT_K_UUID:
      if (left < 16) return verr(e, off, "need 16 bytes, %zu left", left);
      out->p = p;
      out->n = 16;
      return 0;
  }
  return verr(e, off, "bad type");
}
