/*
 * pt_scan.c — the incremental message scanner (see pt_scan.h).
 *
 * Tokens are gathered into s->tok (fixed sizes for Binary, one byte at a
 * time for Compact's varints); runs of raw bytes (names, strings,
 * fixed-width lists) and runs of Compact varints (numeric lists) are
 * passed without gathering. The envelope is read with the shared
 * envelope reader (pt_msg_head / pt_msg_tail); the body in the protocol
 * the envelope names.
 */
#include "pt_scan.h"

#include <string.h>

enum {
  SC_HEAD,    /* envelope bytes before the name (pt_msg_head) */
  SC_TAIL,    /* envelope bytes after the name (pt_msg_tail) */
  SC_FTYPE,   /* Binary 1: field type or STOP */
  SC_FID,     /* Binary 2: field id, then a value of s->ftype */
  SC_STRLEN,  /* Binary 4: string length, then its bytes */
  SC_LISTHDR, /* Binary 5: element type, count */
  SC_MAPHDR,  /* Binary 6: key type, value type, count */
  SC_CFIELD,  /* Compact 1: field header */
  SC_CLIST,   /* Compact 1: list header (size nibble, element type) */
  SC_CMAPT,   /* Compact 1: map key and value types */
  SC_VARINT,  /* Compact 1 at a time: a varint whose value matters */
  SC_VRUN,    /* Compact: s->vleft varints to pass (not gathered) */
};
enum { SC_AFTER_VALUE, SC_AFTER_NAME };
/* what a gathered Compact varint is */
enum { V_FIELD_ID, V_STRLEN, V_LISTSIZE, V_MAPSIZE };

void pt_scan_reset(pt_scan *s) {
  s->fed = 0;
  s->skip = 0;
  s->vleft = 0;
  s->state = SC_HEAD;
  s->want = 4; /* the shortest head of every protocol */
  s->have = 0;
  s->after = SC_AFTER_VALUE;
  s->proto = PT_PROTO_BINARY;
  s->sp = 0;
  s->err = NULL;
}

void pt_scan_init(pt_scan *s, uint64_t max_bytes, int max_depth) {
  s->max_bytes = max_bytes;
  s->max_depth = max_depth < 1 ? 1
                 : max_depth > PT_SCAN_MAXDEPTH ? PT_SCAN_MAXDEPTH
                                                : max_depth;
  pt_scan_reset(s);
}

static int sc_bad(pt_scan *s, const char *why) {
  s->err = why;
  return PT_SCAN_BAD;
}

static int sc_token(pt_scan *s, int state, int want) {
  s->state = state;
  s->want = (uint8_t)want;
  s->have = 0;
  return PT_SCAN_MORE;
}

static int sc_next(pt_scan *s);

/* What follows a run of raw bytes. */
static int sc_after(pt_scan *s, int after) {
  if (after == SC_AFTER_NAME) {
    if (s->env.proto == PT_PROTO_COMPACT) {
      s->proto = PT_PROTO_COMPACT;
      if (s->sp >= s->max_depth) return sc_bad(s, "nesting too deep");
      s->st[s->sp++] = (pt_scan_frame){PT_T_STRUCT, {0, 0}, 0, 0};
      return sc_token(s, SC_CFIELD, 1);
    }
    return sc_token(s, SC_TAIL, s->env.strict ? 4 : 5);
  }
  return sc_next(s);
}

/* Pass n raw bytes, then continue with `after`; refuses what cannot fit.
 * (The running-total check: n alone, then fed + n, against max_bytes.) */
static int sc_skip(pt_scan *s, uint64_t n, int after) {
  if (n > s->max_bytes || s->fed + n > s->max_bytes)
    return sc_bad(s, "message too large");
  if (n == 0) return sc_after(s, after);
  s->skip = n;
  s->after = after;
  return PT_SCAN_MORE;
}

static int sc_push(pt_scan *s, int kind, int t0, int t1, uint32_t left) {
  if (s->sp >= s->max_depth) return sc_bad(s, "nesting too deep");
  pt_scan_frame *f = &s->st[s->sp++];
  f->kind = (uint8_t)kind;
  f->et[0] = (uint8_t)t0;
  f->et[1] = (uint8_t)t1;
  f->left = left;
  f->last = 0;
  return PT_SCAN_MORE;
}

/* Compact: pass n varints of at most max bytes each. */
static int sc_vrun(pt_scan *s, uint64_t n, int max) {
  if (s->fed + n > s->max_bytes) return sc_bad(s, "message too large");
  s->vleft = n;
  s->vlen = 0;
  s->vmax = (uint8_t)max;
  s->state = SC_VRUN;
  return PT_SCAN_MORE;
}

/* Compact: gather a varint (its value is needed). */
static int sc_varint(pt_scan *s, int use) {
  s->vacc = 0;
  s->vlen = 0;
  s->vuse = (uint8_t)use;
  return sc_token(s, SC_VARINT, 1);
}

static int sc_begin(pt_scan *s, int t) {
  if (s->proto == PT_PROTO_COMPACT) {
    size_t w = pt_elem_width(PT_PROTO_COMPACT, t);
    if (w) return sc_skip(s, w, SC_AFTER_VALUE);
    switch (t) {
      case PT_T_I16:
      case PT_T_I32: return sc_vrun(s, 1, 5);
      case PT_T_I64: return sc_vrun(s, 1, 10);
      case PT_T_STRING: return sc_varint(s, V_STRLEN);
      case PT_T_STRUCT:
        if (sc_push(s, PT_T_STRUCT, 0, 0, 0) == PT_SCAN_BAD)
          return PT_SCAN_BAD;
        return sc_token(s, SC_CFIELD, 1);
      case PT_T_LIST:
      case PT_T_SET: return sc_token(s, SC_CLIST, 1);
      case PT_T_MAP: return sc_varint(s, V_MAPSIZE);
      default: return sc_bad(s, "bad value type");
    }
  }
  size_t w = pt_ttype_width(t);
  if (w) return sc_skip(s, w, SC_AFTER_VALUE);
  switch (t) {
    case PT_T_STRING: return sc_token(s, SC_STRLEN, 4);
    case PT_T_STRUCT:
      if (sc_push(s, PT_T_STRUCT, 0, 0, 0) == PT_SCAN_BAD) return PT_SCAN_BAD;
      return sc_token(s, SC_FTYPE, 1);
    case PT_T_LIST:
    case PT_T_SET: return sc_token(s, SC_LISTHDR, 5);
    case PT_T_MAP: return sc_token(s, SC_MAPHDR, 6);
    default: return sc_bad(s, "bad value type");
  }
}

/* A value ended: the innermost open container says what comes next. */
static int sc_next(pt_scan *s) {
  while (s->sp > 0) {
    pt_scan_frame *f = &s->st[s->sp - 1];
    if (f->kind == PT_T_STRUCT)
      return s->proto == PT_PROTO_COMPACT ? sc_token(s, SC_CFIELD, 1)
                                          : sc_token(s, SC_FTYPE, 1);
    if (f->left == 0) {
      s->sp--;
      continue;
    }
    f->left--;
    /* maps alternate key, value: left is odd right after taking a key */
    int t = f->kind == PT_T_MAP ? f->et[f->left & 1 ? 0 : 1] : f->et[0];
    return sc_begin(s, t);
  }
  return PT_SCAN_DONE;
}

/* The elements of a list of n (both protocols). */
static int sc_list_body(pt_scan *s, int et, uint64_t n) {
  if (n == 0) return sc_next(s);
  if (!pt_ttype_valid(et)) return sc_bad(s, "bad element type");
  size_t w = pt_elem_width(s->proto, et);
  if (w) return sc_skip(s, n * w, SC_AFTER_VALUE);
  if (s->proto == PT_PROTO_COMPACT && (et == PT_T_I16 || et == PT_T_I32 ||
                                       et == PT_T_I64))
    return sc_vrun(s, n, et == PT_T_I64 ? 10 : 5);
  /* every element takes at least one byte */
  if (s->fed + n > s->max_bytes) return sc_bad(s, "message too large");
  if (sc_push(s, PT_T_LIST, et, 0, (uint32_t)n) == PT_SCAN_BAD)
    return PT_SCAN_BAD;
  return sc_next(s);
}

static int sc_map_body(pt_scan *s, int kt, int vt, uint64_t n) {
  if (n == 0) return sc_next(s);
  if (!pt_ttype_valid(kt) || !pt_ttype_valid(vt))
    return sc_bad(s, "bad map key or value type");
  size_t kw = pt_elem_width(s->proto, kt), vw = pt_elem_width(s->proto, vt);
  if (kw && vw) return sc_skip(s, n * (kw + vw), SC_AFTER_VALUE);
  if (s->fed + 2 * n > s->max_bytes) return sc_bad(s, "message too large");
  if (sc_push(s, PT_T_MAP, kt, vt, (uint32_t)(2 * n)) == PT_SCAN_BAD)
    return PT_SCAN_BAD;
  return sc_next(s);
}

/* A Compact varint whose value matters is complete. */
static int sc_varint_done(pt_scan *s) {
  uint64_t v = s->vacc;
  switch (s->vuse) {
    case V_FIELD_ID: { /* zigzag, within i16, as pt_cpt_rd_field takes it */
      int32_t id = pt_unzz32((uint32_t)v);
      if (v > 0xffffffffu || id < INT16_MIN || id > INT16_MAX)
        return sc_bad(s, "bad field header");
      s->st[s->sp - 1].last = id;
      if (s->ftype == PT_T_BOOL) return sc_next(s);
      return sc_begin(s, s->ftype);
    }
    case V_STRLEN:
      if (v > 0x7fffffffu) return sc_bad(s, "negative length");
      return sc_skip(s, v, SC_AFTER_VALUE);
    case V_LISTSIZE:
      if (v > 0x7fffffffu) return sc_bad(s, "negative count");
      return sc_list_body(s, s->ftype, v);
    default: /* V_MAPSIZE */
      if (v > 0x7fffffffu) return sc_bad(s, "negative count");
      if (v == 0) return sc_next(s);
      s->vacc = v;
      return sc_token(s, SC_CMAPT, 1);
  }
}

/* The pending token is complete: act on it. */
static int sc_act(pt_scan *s) {
  const unsigned char *t = s->tok;
  uint32_t v;
  switch (s->state) {
    case SC_HEAD: {
      int h = pt_msg_head(t, s->have, 0x7fffffffu, &s->env);
      if (h == PT_BAD) return sc_bad(s, s->env.why);
      if (h == PT_NEED) { /* Binary strict: 8 at once; Compact: by byte */
        s->want = (uint8_t)(t[0] == 0x80 ? 8 : s->have + 1);
        if (s->want > sizeof s->tok) return sc_bad(s, "bad envelope");
        return PT_SCAN_MORE;
      }
      return sc_skip(s, s->env.name_len, SC_AFTER_NAME);
    }
    case SC_TAIL:
      if (pt_msg_tail(t, s->have, &s->env) < 0) return sc_bad(s, "bad envelope");
      s->proto = PT_PROTO_BINARY;
      return sc_begin(s, PT_T_STRUCT);
    case SC_FTYPE:
      if (t[0] == PT_T_STOP) {
        s->sp--;
        return sc_next(s);
      }
      if (!pt_ttype_valid(t[0])) return sc_bad(s, "bad field type");
      s->ftype = t[0];
      return sc_token(s, SC_FID, 2);
    case SC_FID: return sc_begin(s, s->ftype);
    case SC_STRLEN:
      v = pt_ld32(t);
      if (v > 0x7fffffffu) return sc_bad(s, "negative length");
      return sc_skip(s, v, SC_AFTER_VALUE);
    case SC_LISTHDR:
      v = pt_ld32(t + 1);
      if (v > 0x7fffffffu) return sc_bad(s, "negative count");
      return sc_list_body(s, t[0], v);
    case SC_MAPHDR:
      v = pt_ld32(t + 2);
      if (v > 0x7fffffffu) return sc_bad(s, "negative count");
      return sc_map_body(s, t[0], t[1], v);
    case SC_CFIELD: {
      int ct = t[0] & 15;
      if (ct == PT_CT_STOP) {
        s->sp--;
        return sc_next(s);
      }
      int ft = pt_ctype_ttype[ct];
      if (!ft) return sc_bad(s, "bad field type");
      s->ftype = (uint8_t)ft;
      if (t[0] >> 4 == 0) return sc_varint(s, V_FIELD_ID); /* long form */
      pt_scan_frame *f = &s->st[s->sp - 1];
      f->last += t[0] >> 4;
      if (f->last > INT16_MAX) return sc_bad(s, "bad field header");
      if (ft == PT_T_BOOL) return sc_next(s); /* value in the header */
      return sc_begin(s, ft);
    }
    case SC_CLIST: {
      int et = pt_ctype_ttype[t[0] & 15];
      uint32_t n = t[0] >> 4;
      if (n == 15) {
        s->ftype = (uint8_t)et;
        return sc_varint(s, V_LISTSIZE);
      }
      return sc_list_body(s, et, n);
    }
    case SC_CMAPT:
      return sc_map_body(s, pt_ctype_ttype[t[0] >> 4],
                         pt_ctype_ttype[t[0] & 15], s->vacc);
    case SC_VARINT: {
      int b = t[0];
      if (s->vlen >= 5) return sc_bad(s, "bad varint");
      s->vacc |= (uint64_t)(b & 0x7f) << (7 * s->vlen);
      s->vlen++;
      if (b & 0x80) return sc_token(s, SC_VARINT, 1);
      if (s->vlen == 5 && b > 15) return sc_bad(s, "bad varint");
      return sc_varint_done(s);
    }
  }
  return sc_bad(s, "scanner state");
}

int pt_scan_feed(pt_scan *s, const unsigned char *p, size_t n, size_t *used) {
  size_t i = 0;
  int r = s->err ? PT_SCAN_BAD : PT_SCAN_MORE;
  while (r == PT_SCAN_MORE && i < n) {
    if (s->skip) {
      uint64_t k = s->skip < n - i ? s->skip : n - i;
      i += (size_t)k;
      s->fed += k;
      s->skip -= k;
      if (!s->skip) r = sc_after(s, s->after);
      continue;
    }
    if (s->state == SC_VRUN) {
      /* a varint ends at each byte below 0x80 */
      while (i < n && s->vleft) {
        if (s->fed + 1 > s->max_bytes) {
          r = sc_bad(s, "message too large");
          break;
        }
        unsigned char b = p[i++];
        s->fed++;
        if (++s->vlen > s->vmax) {
          r = sc_bad(s, "bad varint");
          break;
        }
        if (b < 0x80) {
          s->vleft--;
          s->vlen = 0;
        }
      }
      if (r == PT_SCAN_MORE && !s->vleft) r = sc_next(s);
      continue;
    }
    size_t k = (size_t)(s->want - s->have);
    /* judged on the whole token, so the answer and s->fed (the token's
     * offset) do not depend on where the pieces split it */
    if (s->fed + k > s->max_bytes) {
      r = sc_bad(s, "message too large");
      break;
    }
    if (k > n - i) k = n - i;
    memcpy(s->tok + s->have, p + i, k);
    s->have = (uint8_t)(s->have + k);
    i += k;
    s->fed += k;
    if (s->have == s->want) r = sc_act(s);
  }
  if (used) *used = i;
  return r;
}
