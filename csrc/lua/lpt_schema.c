/*
 * lpt_schema.c — compiled schemas in Lua: core.compile builds the C plans
 * (pt_plan.h) from the tables petrel.schema makes; petrel.type userdata
 * per struct; export / adopt share one compiled schema between Lua states.
 */
#include <stdio.h>
#include <string.h>

#include "lpt_codec.h"

lpt_Type *lpt_checktype(lua_State *L, int idx) {
  return lpt_checkudata(L, idx, LPT_TYPE_MT);
}

static int Lpt_type_name(lua_State *L) {
  lua_pushstring(L, lpt_checktype(L, 1)->plan->name);
  return 1;
}

static int Lpt_type_tostring(lua_State *L) {
  lpt_Type *T = lpt_checktype(L, 1);
  lua_pushfstring(L, "petrel.type<%s>", T->plan->name);
  return 1;
}

static int Lpt_type_gc(lua_State *L) {
  lpt_Type *T = lpt_checkudata(L, 1, LPT_TYPE_MT);
  pt_schema_unref(T->s);
  T->s = NULL;
  return 0;
}

/* T:fields() -> array of {id=, name=, type=, required=} (introspection) */
static int Lpt_type_fields(lua_State *L) {
  lpt_Type *T = lpt_checktype(L, 1);
  const pt_plan *p = T->plan;
  lua_createtable(L, p->nfields, 0);
  for (int k = 0; k < p->nfields; k++) {
    const pt_field *f = &p->fields[p->order[k]];
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, f->id);
    lua_setfield(L, -2, "id");
    lua_pushstring(L, f->name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, pt_kind_names[f->type->kind]);
    lua_setfield(L, -2, "kind");
    lua_pushstring(L, f->req == PT_REQ_REQUIRED   ? "required"
                      : f->req == PT_REQ_OPTIONAL ? "optional"
                                                  : "default");
    lua_setfield(L, -2, "required");
    lua_rawseti(L, -2, k + 1);
  }
  return 1;
}

static int kind_by_name(const char *s) {
  for (int k = 0; k < PT_K_COUNT; k++)
    if (strcmp(s, pt_kind_names[k]) == 0) return k;
  if (strcmp(s, "byte") == 0) return PT_K_I8;
  return -1;
}

/* Build a pt_type from a type description table at idx. */
static const pt_type *build_type(lua_State *L, pt_schema *s, int idx,
                                 int nplans, int depth) {
  idx = lua_absindex(L, idx);
  if (depth > 100) luaL_error(L, "type nesting too deep");
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_getfield(L, idx, "kind");
  const char *ks = lua_tostring(L, -1);
  int k = ks ? kind_by_name(ks) : -1;
  lua_pop(L, 1);
  if (k < 0) luaL_error(L, "unknown type kind '%s'", ks ? ks : "?");
  pt_type *t = pt_type_new(s, k);
  if (!t) luaL_error(L, "out of memory");
  switch (k) {
    case PT_K_LIST:
    case PT_K_SET:
      lua_getfield(L, idx, "elem");
      t->elem = build_type(L, s, -1, nplans, depth + 1);
      lua_pop(L, 1);
      lua_getfield(L, idx, "typed");
      t->typed = (uint8_t)lua_toboolean(L, -1);
      lua_pop(L, 1);
      break;
    case PT_K_MAP:
      lua_getfield(L, idx, "key");
      t->elem = build_type(L, s, -1, nplans, depth + 1);
      lua_pop(L, 1);
      lua_getfield(L, idx, "val");
      t->val = build_type(L, s, -1, nplans, depth + 1);
      lua_pop(L, 1);
      break;
    case PT_K_STRUCT: {
      lua_getfield(L, idx, "plan");
      int pi = (int)luaL_checkinteger(L, -1);
      lua_pop(L, 1);
      if (pi < 1 || pi > nplans) luaL_error(L, "bad plan index %d", pi);
      t->plan = pt_schema_plan(s, pi - 1);
      break;
    }
    case PT_K_ENUM:
      lua_getfield(L, idx, "enum");
      t->aux = (int32_t)luaL_checkinteger(L, -1) - 1;
      lua_pop(L, 1);
      break;
  }
  return t;
}

static int Lpt_schema_gc(lua_State *L) {
  lpt_Schema *S = lpt_checkudata(L, 1, LPT_SCHEMA_MT);
  pt_schema_unref(S->s);
  S->s = NULL;
  return 0;
}

/* core.compile(desc) -> { [i] = petrel.type } for desc.plans[i].
 * desc = { plans = { {name=, kind=0|1|2, fields = { {id=, name=, req=,
 *          type=<type desc>, default=<value>|nil} } } },
 *          enums = { { names = {[v]=name}, values = {[name]=v} } } }
 * type desc: {kind="i64"} {kind="list", elem=, typed=} {kind="map", key=,
 *   val=} {kind="struct", plan=i} {kind="enum", enum=i}. */
/* Push {[i] = petrel.type} for every plan of the finished schema s, with
 * one shared context table: field-name keys (from the plans), the defaults
 * table at didx and the enums table at eidx. */
static void push_types(lua_State *L, pt_schema *s, int didx, int eidx) {
  int nplans = pt_schema_nplans(s);
  lua_createtable(L, 7, 0);
  int cx = lua_gettop(L);
  lua_newtable(L);
  for (int i = 0; i < nplans; i++) {
    const pt_plan *p = pt_schema_plan(s, i);
    for (int j = 0; j < p->nfields; j++) {
      const pt_field *f = &p->fields[j];
      lua_pushstring(L, f->name);
      lua_rawseti(L, -2, p->key_base + f->index + 1);
    }
  }
  lua_rawseti(L, cx, CX_KEYS);
  lua_pushvalue(L, didx);
  lua_rawseti(L, cx, CX_DEFAULTS);
  lua_pushvalue(L, eidx);
  lua_rawseti(L, cx, CX_ENUMS);
  static const char *const mts[] = {"petrel.list", "petrel.set", "petrel.map"};
  for (int i = 0; i < 3; i++) {
    luaL_getmetatable(L, mts[i]);
    lua_rawseti(L, cx, CX_LIST_MT + i);
  }
  luaL_getmetatable(L, LPT_ARRAY_MT);
  lua_rawseti(L, cx, CX_ARRAY_MT);
  lua_createtable(L, nplans, 0);
  for (int i = 0; i < nplans; i++) {
    lpt_Type *T = lua_newuserdata(L, sizeof *T);
    T->s = s;
    T->plan = pt_schema_plan(s, i);
    pt_schema_ref(s);
    luaL_setmetatable(L, LPT_TYPE_MT);
    lua_pushvalue(L, cx);
    lpt_setuv(L, -2);
    lua_rawseti(L, -2, i + 1);
  }
  lua_remove(L, cx);
}

static int Lpt_compile(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "plans");
  int plans = lua_gettop(L);
  luaL_checktype(L, plans, LUA_TTABLE);
  int nplans = (int)lua_rawlen(L, plans);
  /* the builder's reference lives in a userdata, so errors cannot leak it */
  lpt_Schema *SU = lua_newuserdata(L, sizeof *SU);
  SU->s = NULL;
  luaL_setmetatable(L, LPT_SCHEMA_MT);
  pt_schema *s = SU->s = pt_schema_new(nplans);
  if (!s) return luaL_error(L, "out of memory");
  lua_newtable(L); /* defaults */
  int defaults = lua_gettop(L);
  int key = 0;
  for (int i = 0; i < nplans; i++) {
    lua_rawgeti(L, plans, i + 1);
    int pd = lua_gettop(L);
    lua_getfield(L, pd, "name");
    const char *name = luaL_checkstring(L, -1);
    lua_getfield(L, pd, "kind");
    int kind = (int)luaL_optinteger(L, -1, 0);
    lua_getfield(L, pd, "fields");
    int fl = lua_gettop(L);
    luaL_checktype(L, fl, LUA_TTABLE);
    int nf = (int)lua_rawlen(L, fl);
    if (pt_plan_init(s, i, name, kind, nf) != 0)
      return luaL_error(L, "%s", pt_schema_error(s));
    pt_schema_plan(s, i)->key_base = key;
    for (int j = 0; j < nf; j++) {
      lua_rawgeti(L, fl, j + 1);
      int fd = lua_gettop(L);
      lua_getfield(L, fd, "id");
      int id = (int)luaL_checkinteger(L, -1);
      lua_getfield(L, fd, "name");
      const char *fname = luaL_checkstring(L, -1);
      lua_getfield(L, fd, "req");
      int req = (int)luaL_optinteger(L, -1, 0);
      lua_getfield(L, fd, "type");
      const pt_type *ft = build_type(L, s, -1, nplans, 0);
      lua_getfield(L, fd, "default");
      int has_def = !lua_isnil(L, -1);
      if (has_def) {
        lua_pushvalue(L, -1);
        lua_rawseti(L, defaults, key + j + 1);
      }
      if (pt_plan_set_field(s, i, j, id, fname, req, has_def, ft) != 0)
        return luaL_error(L, "%s", pt_schema_error(s));
      lua_settop(L, fd - 1);
    }
    key += nf;
    lua_settop(L, pd - 1);
  }
  lua_getfield(L, 1, "meta");
  if (lua_type(L, -1) == LUA_TSTRING) {
    size_t n;
    const char *m = lua_tolstring(L, -1, &n);
    if (pt_schema_set_blob(s, m, n) != 0) return luaL_error(L, "out of memory");
  }
  lua_pop(L, 1);
  if (pt_schema_finish(s) != 0) return luaL_error(L, "%s", pt_schema_error(s));
  lua_getfield(L, 1, "enums");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
  }
  push_types(L, s, defaults, lua_gettop(L));
  return 1;
}

/* core.export(type) -> handle (light userdata) holding one reference to
 * the type's compiled schema, for core.adopt in another Lua state. */
static int Lpt_export(lua_State *L) {
  lpt_Type *T = lpt_checktype(L, 1);
  pt_schema_ref(T->s);
  /* a string passes through any thread or state library */
  lua_pushfstring(L, "petrel.schema:%p", (void *)T->s);
  return 1;
}

static pt_schema *handle_arg(lua_State *L, int idx) {
  void *p = NULL;
  const char *h = luaL_checkstring(L, idx);
  if (strncmp(h, "petrel.schema:", 14) != 0 || sscanf(h + 14, "%p", &p) != 1 ||
      !p)
    luaL_argerror(L, idx, "not a petrel.export handle");
  return p;
}

/* core.adopt_meta(handle) -> the meta string kept by compile */
static int Lpt_adopt_meta(lua_State *L) {
  pt_schema *s = handle_arg(L, 1);
  size_t n;
  const char *m = pt_schema_blob(s, &n);
  lua_pushlstring(L, m ? m : "", n);
  return 1;
}

/* core.adopt(handle, defaults, enums) -> types; consumes the handle's
 * reference (the handle must not be used again). */
static int Lpt_adopt(lua_State *L) {
  pt_schema *s = handle_arg(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TTABLE);
  /* hold the handle's reference in a userdata until the types own theirs */
  lpt_Schema *SU = lua_newuserdata(L, sizeof *SU);
  SU->s = s;
  luaL_setmetatable(L, LPT_SCHEMA_MT);
  push_types(L, s, 2, 3);
  return 1;
}

static const luaL_Reg type_methods[] = {
    {"name", Lpt_type_name}, {"fields", Lpt_type_fields}, {NULL, NULL}};

static const luaL_Reg schema_funcs[] = {{"compile", Lpt_compile},
                                        {"export", Lpt_export},
                                        {"adopt", Lpt_adopt},
                                        {"adopt_meta", Lpt_adopt_meta},
                                        {NULL, NULL}};

/* stack: module, state, buffer metatable. Makes the type metatable; its
 * __index table gets the walkers' methods from lpt_open_codec. */
void lpt_open_schema(lua_State *L) {
  int mod = lua_gettop(L) - 2;
  if (luaL_newmetatable(L, LPT_SCHEMA_MT)) {
    lua_pushcfunction(L, Lpt_schema_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);

  luaL_newmetatable(L, LPT_TYPE_MT);
  lua_newtable(L);
  lpt_setfuncs(L, -1, mod, type_methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, Lpt_type_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, Lpt_type_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);

  /* container metatables: marks only (petrel.list / set / map) */
  static const char *const mts[] = {"petrel.list", "petrel.set", "petrel.map"};
  for (int i = 0; i < 3; i++) {
    luaL_newmetatable(L, mts[i]);
    lua_pushstring(L, mts[i]);
    lua_setfield(L, -2, "__name");
    lua_setfield(L, mod, mts[i] + 7); /* module.list / .set / .map */
  }
  lpt_setfuncs(L, mod, mod, schema_funcs);
}
