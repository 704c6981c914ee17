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
