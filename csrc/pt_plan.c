/*
 * pt_plan.c — schema arena and plan finishing.
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

static int cmp_id(const void *a, const void *b) {
  const pt_field *x = a, *y = b;
  return (x->id > y->id) - (x->id < y->id);
}

static int finish_plan(pt_schema *s, pt_plan *p) {
  int n = p->nfields;
  /* The wire order is ascending field id, as Apache's generators write
   * (get_sorted_members); order[] keeps declaration order. Ids are
   * unique (checked below), so the sort needs no stability. */
  if (n > 1) qsort(p->fields, (size_t)n, sizeof *p->fields, cmp_id);
  p->nrequired = 0;
  p->nchecked = 0;
  for (int i = 0; i < n; i++) {
    const pt_field *f = &p->fields[i];
    p->order[f->index] = i;
    if (f->req == PT_REQ_REQUIRED) p->nrequired++;
    if (f->req == PT_REQ_REQUIRED || f->has_default) p->nchecked++;
  }
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

