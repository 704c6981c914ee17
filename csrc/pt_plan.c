/*
 * pt_plan.c — schema arena, plan finishing and the wire skipper.
 */
#include "pt_plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const pt_kind_names[PT_K_COUNT] = {
#define X(k, name, tt) name,
    PT_KINDS(X)
#undef X
};

const uint8_t pt_kind_ttype[PT_K_COUNT] = {
#define X(k, name, tt) tt,
    PT_KINDS(X)
#undef X
};

typedef struct arena_chunk {
  struct arena_chunk *next;
  size_t used, cap;
  _Alignas(16) unsigned char data[];
} arena_chunk;

struct pt_schema {
  int refs; /* atomic */
  int nplans;
  int finished;
  pt_plan *plans;
  arena_chunk *arena;
  char *blob;
  size_t blob_len;
  char err[160];
};

static void *arena_alloc(pt_schema *s, size_t n) {
  n = (n + 15) & ~(size_t)15;
  arena_chunk *c = s->arena;
  if (!c || c->cap - c->used < n) {
    size_t cap = n > 16384 ? n : 16384;
    c = malloc(sizeof *c + cap);
    if (!c) return NULL;
    c->next = s->arena;
    c->used = 0;
    c->cap = cap;
    s->arena = c;
  }
  void *p = c->data + c->used;
  c->used += n;
  memset(p, 0, n);
  return p;
}

static char *arena_strdup(pt_schema *s, const char *str) {
  size_t n = strlen(str) + 1;
  char *d = arena_alloc(s, n);
  if (d) memcpy(d, str, n);
  return d;
}

static int fail(pt_schema *s, const char *fmt, const char *a) {
  snprintf(s->err, sizeof s->err, fmt, a ? a : "");
  return -1;
}

pt_schema *pt_schema_new(int nplans) {
  if (nplans < 0) return NULL;
  pt_schema *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->refs = 1;
  s->nplans = nplans;
  s->plans = nplans ? arena_alloc(s, sizeof(pt_plan) * (size_t)nplans) : NULL;
  if (nplans && !s->plans) {
    free(s);
    return NULL;
  }
  for (int i = 0; i < nplans; i++) s->plans[i].index = i;
  return s;
}

pt_plan *pt_schema_plan(pt_schema *s, int i) {
  return (i >= 0 && i < s->nplans) ? &s->plans[i] : NULL;
}

int pt_schema_nplans(const pt_schema *s) { return s->nplans; }

const char *pt_schema_error(const pt_schema *s) { return s->err; }

int pt_schema_set_blob(pt_schema *s, const void *p, size_t n) {
  if (s->finished) return -1;
  s->blob = arena_alloc(s, n + 1);
  if (!s->blob) return fail(s, "out of memory", 0);
  memcpy(s->blob, p, n);
  s->blob_len = n;
  return 0;
}

const char *pt_schema_blob(const pt_schema *s, size_t *n) {
  *n = s->blob_len;
  return s->blob;
}

int pt_plan_init(pt_schema *s, int i, const char *name, int kind,
                 int nfields) {
  pt_plan *p = pt_schema_plan(s, i);
  if (!p || s->finished || nfields < 0 || nfields > 32767)
    return fail(s, "bad plan %s", name);
  p->name = arena_strdup(s, name);
  p->kind = kind;
  p->nfields = nfields;
  p->fields = arena_alloc(s, sizeof(pt_field) * (size_t)(nfields + 1));
  p->order = arena_alloc(s, sizeof(int32_t) * (size_t)(nfields + 1));
  if (!p->name || !p->fields || !p->order) return fail(s, "out of memory", 0);
  return 0;
}

pt_type *pt_type_new(pt_schema *s, int kind) {
  if (s->finished || kind < 0 || kind >= PT_K_COUNT) return NULL;
  pt_type *t = arena_alloc(s, sizeof *t);
  if (!t) return NULL;
  t->kind = (uint8_t)kind;
  t->ttype = pt_kind_ttype[kind];
  return t;
}

int pt_plan_set_field(pt_schema *s, int plan, int i, int id, const char *name,
                      int req, int has_default, const pt_type *type) {
  pt_plan *p = pt_schema_plan(s, plan);
  if (!p || s->finished || i < 0 || i >= p->nfields || !type ||
      id < -32768 || id > 32767)
    return fail(s, "bad field %s", name);
  pt_field *f = &p->fields[i];
  f->id = (int16_t)id;
  f->req = (uint8_t)req;
  f->has_default = (uint8_t)(has_default != 0);
  f->index = i;
  f->name = arena_strdup(s, name);
  f->type = type;
  return f->name ? 0 : fail(s, "out of memory", 0);
}

static int is_fixed(const pt_field *f) { return pt_kind_width(f->type->kind) > 0; }

static int finish_plan(pt_schema *s, pt_plan *p) {
  int n = p->nfields;
  /* Stable partition: fixed-size fields first, declaration order kept
   * within each group; order[] maps declaration order to the new slots. */
  pt_field *tmp = malloc(sizeof(pt_field) * (size_t)(n ? n : 1));
  if (!tmp) return fail(s, "out of memory", 0);
  int k = 0;
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < n; i++)
      if (is_fixed(&p->fields[i]) == (pass == 0)) tmp[k++] = p->fields[i];
  p->nfixed = 0;
  p->fixed_size = 0;
  p->nrequired = 0;
  p->nchecked = 0;
  for (int i = 0; i < n; i++) {
    p->fields[i] = tmp[i];
    p->order[tmp[i].index] = i;
    if (is_fixed(&tmp[i])) {
      p->nfixed++;
      if (tmp[i].req == PT_REQ_REQUIRED || tmp[i].has_default)
        p->fixed_size += 3 + pt_kind_width(tmp[i].type->kind);
    }
    if (tmp[i].req == PT_REQ_REQUIRED) p->nrequired++;
    if (tmp[i].req == PT_REQ_REQUIRED || tmp[i].has_default) p->nchecked++;
  }
  free(tmp);
  /* Dense id -> slot table. */
  int lo = 0, hi = -1;
  for (int i = 0; i < n; i++) {
    int id = p->fields[i].id;
    if (i == 0 || id < lo) lo = id;
    if (i == 0 || id > hi) hi = id;
  }
  if (n == 0) lo = 1, hi = 0;
  p->min_id = (int16_t)lo;
  p->max_id = (int16_t)hi;
  size_t span = (size_t)(hi - lo + 1);
  p->slot = arena_alloc(s, sizeof(int16_t) * (span ? span : 1));
  if (!p->slot) return fail(s, "out of memory", 0);
  for (size_t i = 0; i < span; i++) p->slot[i] = -1;
  for (int i = 0; i < n; i++) {
    int16_t *sl = &p->slot[p->fields[i].id - lo];
    if (*sl >= 0) return fail(s, "duplicate field id in %s", p->name);
    *sl = (int16_t)i;
  }
  return 0;
}

int pt_schema_finish(pt_schema *s) {
  if (s->finished) return 0;
  for (int i = 0; i < s->nplans; i++) {
    if (!s->plans[i].name) return fail(s, "plan %s was never defined", "");
    if (finish_plan(s, &s->plans[i]) != 0) return -1;
  }
  s->finished = 1;
  return 0;
}

void pt_schema_ref(pt_schema *s) { __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED); }

void pt_schema_unref(pt_schema *s) {
  if (!s || __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
  arena_chunk *c = s->arena;
  while (c) {
    arena_chunk *next = c->next;
    free(c);
    c = next;
  }
  free(s);
}

/* ---- skipping --------------------------------------------------------- */

static size_t skip_rec(const unsigned char *p, const unsigned char *end,
                       int t, int depth) {
  size_t avail = (size_t)(end - p);
  size_t w = pt_ttype_width(t);
  if (w) return avail >= w ? w : 0;
  if (depth <= 0) return 0;
  switch (t) {
    case PT_T_STRING: {
      if (avail < 4) return 0;
      int32_t n = (int32_t)pt_ld32(p);
      if (n < 0 || (size_t)n > avail - 4) return 0;
      return 4 + (size_t)n;
    }
    case PT_T_STRUCT: {
      const unsigned char *q = p;
      for (;;) {
        if (q >= end) return 0;
        int ft = *q++;
        if (ft == PT_T_STOP) return (size_t)(q - p);
        if (end - q < 2) return 0;
        q += 2;
        size_t k = skip_rec(q, end, ft, depth - 1);
        if (!k) return 0;
        q += k;
      }
    }
    case PT_T_MAP: {
      if (avail < 6) return 0;
      int kt = p[0], vt = p[1];
      int32_t n = (int32_t)pt_ld32(p + 2);
      if (n < 0) return 0;
      const unsigned char *q = p + 6;
      size_t kw = pt_ttype_width(kt), vw = pt_ttype_width(vt);
      if (kw && vw) {
        if ((size_t)n > (size_t)(end - q) / (kw + vw)) return 0;
        return 6 + (size_t)n * (kw + vw);
      }
      /* every entry takes at least one byte: bound the loop by the input */
      if ((size_t)n > (size_t)(end - q)) return 0;
      for (int32_t i = 0; i < n; i++) {
        size_t a = skip_rec(q, end, kt, depth - 1);
        if (!a) return 0;
        q += a;
        size_t b = skip_rec(q, end, vt, depth - 1);
        if (!b) return 0;
        q += b;
      }
      return (size_t)(q - p);
    }
    case PT_T_SET:
    case PT_T_LIST: {
      if (avail < 5) return 0;
      int et = p[0];
      int32_t n = (int32_t)pt_ld32(p + 1);
      if (n < 0) return 0;
      const unsigned char *q = p + 5;
      size_t ew = pt_ttype_width(et);
      if (ew) {
        if ((size_t)n > (size_t)(end - q) / ew) return 0;
        return 5 + (size_t)n * ew;
      }
      if ((size_t)n > (size_t)(end - q)) return 0;
      for (int32_t i = 0; i < n; i++) {
        size_t a = skip_rec(q, end, et, depth - 1);
        if (!a) return 0;
        q += a;
      }
      return (size_t)(q - p);
    }
    default:
      return 0;
  }
}

size_t pt_skip(const unsigned char *p, const unsigned char *end, int ttype,
               int max_depth) {
  if (p > end) return 0;
  return skip_rec(p, end, ttype, max_depth);
}

/* ---- incremental message scanner ---------------------------------------- */

enum {
  SC_ENV,     /* 4: strict version word, or a non-strict name length */
  SC_NAMELEN, /* 4: strict name length */
  SC_SEQID,   /* 4: strict seqid, then the body */
  SC_NSTAIL,  /* 5: non-strict type and seqid, then the body */
  SC_FTYPE,   /* 1: field type or STOP */
  SC_FID,     /* 2: field id, then a value of sc->ftype */
  SC_STRLEN,  /* 4: string length, then its bytes */
  SC_LISTHDR, /* 5: element type, count */
  SC_MAPHDR,  /* 6: key type, value type, count */
};
enum { SC_AFTER_VALUE, SC_AFTER_NAME_STRICT, SC_AFTER_NAME_NS };

void pt_scan_reset(pt_scan *s) {
  s->fed = 0;
  s->skip = 0;
  s->state = SC_ENV;
  s->want = 4;
  s->have = 0;
  s->after = SC_AFTER_VALUE;
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

static int sc_valid_type(int t) {
  return pt_ttype_width(t) || t == PT_T_STRING || t == PT_T_STRUCT ||
         t == PT_T_MAP || t == PT_T_SET || t == PT_T_LIST;
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
static int sc_token(pt_scan *s, int state, int want);

/* What follows a run of raw bytes. */
static int sc_after(pt_scan *s, int after) {
  switch (after) {
    case SC_AFTER_NAME_STRICT: return sc_token(s, SC_SEQID, 4);
    case SC_AFTER_NAME_NS: return sc_token(s, SC_NSTAIL, 5);
    default: return sc_next(s);
  }
}

/* Pass n raw bytes, then continue with `after`; refuses what cannot fit. */
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
  return PT_SCAN_MORE;
}

static int sc_begin(pt_scan *s, int t) {
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
    if (f->kind == PT_T_STRUCT) return sc_token(s, SC_FTYPE, 1);
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

/* The pending token is complete: act on it. */
static int sc_act(pt_scan *s) {
  const unsigned char *t = s->tok;
  uint32_t v;
  switch (s->state) {
    case SC_ENV:
      v = pt_ld32(t);
      if (v & 0x80000000u) {
        if ((v & 0xffff0000u) != 0x80010000u)
          return sc_bad(s, "bad protocol version");
        return sc_token(s, SC_NAMELEN, 4);
      }
      return sc_skip(s, v, SC_AFTER_NAME_NS);
    case SC_NAMELEN:
      v = pt_ld32(t);
      if (v > 0x7fffffffu) return sc_bad(s, "bad method name length");
      return sc_skip(s, v, SC_AFTER_NAME_STRICT);
    case SC_SEQID:
    case SC_NSTAIL: return sc_begin(s, PT_T_STRUCT);
    case SC_FTYPE:
      if (t[0] == PT_T_STOP) {
        s->sp--;
        return sc_next(s);
      }
      if (!sc_valid_type(t[0])) return sc_bad(s, "bad field type");
      s->ftype = t[0];
      return sc_token(s, SC_FID, 2);
    case SC_FID: return sc_begin(s, s->ftype);
    case SC_STRLEN:
      v = pt_ld32(t);
      if (v > 0x7fffffffu) return sc_bad(s, "negative length");
      return sc_skip(s, v, SC_AFTER_VALUE);
    case SC_LISTHDR: {
      int et = t[0];
      v = pt_ld32(t + 1);
      if (v > 0x7fffffffu) return sc_bad(s, "negative count");
      if (v == 0) return sc_next(s);
      if (!sc_valid_type(et)) return sc_bad(s, "bad element type");
      size_t w = pt_ttype_width(et);
      if (w) return sc_skip(s, (uint64_t)v * w, SC_AFTER_VALUE);
      /* every element takes at least one byte */
      if (s->fed + v > s->max_bytes) return sc_bad(s, "message too large");
      if (sc_push(s, PT_T_LIST, et, 0, v) == PT_SCAN_BAD) return PT_SCAN_BAD;
      return sc_next(s);
    }
    case SC_MAPHDR: {
      int kt = t[0], vt = t[1];
      v = pt_ld32(t + 2);
      if (v > 0x7fffffffu) return sc_bad(s, "negative count");
      if (v == 0) return sc_next(s);
      if (!sc_valid_type(kt) || !sc_valid_type(vt))
        return sc_bad(s, "bad map key or value type");
      size_t kw = pt_ttype_width(kt), vw = pt_ttype_width(vt);
      if (kw && vw) return sc_skip(s, (uint64_t)v * (kw + vw), SC_AFTER_VALUE);
      if (s->fed + 2 * (uint64_t)v > s->max_bytes)
        return sc_bad(s, "message too large");
      if (sc_push(s, PT_T_MAP, kt, vt, 2 * v) == PT_SCAN_BAD)
        return PT_SCAN_BAD;
      return sc_next(s);
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
