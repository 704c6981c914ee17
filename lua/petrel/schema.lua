-- petrel.schema: Lua-table schemas, validated here and compiled into C
-- field plans (petrel.core.compile). The normalized format is documented
-- in docs/schema.md; the IDL loader produces the same tables.
local core = require "petrel.core"
local options = require "petrel.options"

local M = {}

local BASE = {
  bool = "bool", byte = "i8", i8 = "i8", i16 = "i16", i32 = "i32",
  i64 = "i64", double = "double", string = "string", binary = "binary",
  uuid = "uuid",
}
M.base_types = BASE

local REQ = { default = 0, required = 1, optional = 2 }
local PLAN_KIND = { struct = 0, union = 1, exception = 2 }

-- Schema errors carry their own path ("MyTest.Nums: ..."), no position.
local function errorf(_, fmt, ...)
  error(string.format(fmt, ...), 0)
end

local show, integral = options.show, options.integral

local INT_RANGE = {
  i8 = { -128, 127 }, i16 = { -32768, 32767 }, i32 = { -2147483648, 2147483647 },
}

-- The value of enum entry `name`, checked: an integer in the i32 range.
local function enum_value(where, name, v)
  if not integral(v) or v < INT_RANGE.i32[1] or v > INT_RANGE.i32[2] then
    errorf(3, "%s%s: value must be an integer in the i32 range, got %s", where, name, show(v))
  end
  return v
end

-- ---- builders (shorthand -> normalized) --------------------------------

local function norm_field(f, where)
  if type(f) ~= "table" then
    errorf(3, "%s: field must be a table, got %s", where, type(f))
  end
  local id = f.id or f[1]
  local name = f.name or f[2]
  local ty = f.type or f[3]
  local req = f.required or f[4] or "default"
  if req == true then req = "required" end
  if f.optional == true then req = "optional" end
  if type(name) ~= "string" or not name:match("^[%a_][%w_]*$") then
    errorf(3, "%s: field name must be an identifier, got %s", where, tostring(name))
  end
  where = where .. "." .. name
  if math.type then
    if math.type(id) ~= "integer" then id = nil end
  elseif type(id) ~= "number" or id ~= math.floor(id) then
    id = nil
  end
  if not id or id < -32768 or id > 32767 then
    errorf(3, "%s: field id must be an integer in -32768..32767, got %s", where,
      tostring(f.id or f[1]))
  end
  if type(ty) ~= "string" then
    errorf(3, "%s: type must be a string, got %s", where, type(ty))
  end
  if not REQ[req] then
    errorf(3, "%s: requiredness must be required, optional or default, got %s",
      where, tostring(req))
  end
  return {
    id = id, name = name, type = ty, required = req, default = f.default,
    typed = f.typed, annotations = f.annotations, doc = f.doc,
  }
end

local function struct_builder(kind)
  return function(fields)
    if type(fields) ~= "table" then
      errorf(2, "petrel.%s: table of fields expected", kind)
    end
    local out = { kind = kind, fields = {}, annotations = fields.annotations,
      doc = fields.doc }
    local src = fields.fields or fields
    for i, f in ipairs(src) do
      out.fields[i] = norm_field(f, kind .. " field #" .. i)
    end
    return out
  end
end

M.struct = struct_builder("struct")
M.union = struct_builder("union")
M.exception = struct_builder("exception")

function M.enum(values)
  if type(values) ~= "table" then errorf(2, "petrel.enum: table expected") end
  local vals, order = {}, {}
  local src = values.values or values
  for k, v in pairs(src) do
    if type(k) == "string" then
      vals[k] = enum_value("petrel.enum: ", k, v)
      order[#order + 1] = k
    end
  end
  table.sort(order, function(a, b)
    if vals[a] ~= vals[b] then return vals[a] < vals[b] end
    return a < b
  end)
  return { kind = "enum", values = vals, order = values.order or order,
    annotations = values.annotations, doc = values.doc }
end

function M.typedef(ty)
  if type(ty) ~= "string" then errorf(2, "petrel.typedef: type string expected") end
  return { kind = "typedef", type = ty }
end

function M.const(ty, value)
  return { kind = "const", type = ty, value = value }
end

function M.service(t)
  if type(t) ~= "table" then errorf(2, "petrel.service: table expected") end
  local out = { kind = "service", extends = t.extends, functions = {}, order = {},
    annotations = t.annotations, doc = t.doc }
  local names = {}
  local src = t.functions or t
  for name, fn in pairs(src) do
    if type(name) == "string" and name ~= "extends" and name ~= "annotations"
      and name ~= "doc" and name ~= "kind" and name ~= "order" then
      names[#names + 1] = name
      if type(fn) ~= "table" then
        errorf(2, "petrel.service: function %s must be a table", name)
      end
      local f = { args = {}, throws = {}, result = fn.result or "void",
        oneway = fn.oneway and true or false, annotations = fn.annotations,
        doc = fn.doc }
      if f.oneway and f.result ~= "void" then
        errorf(2, "petrel.service: oneway function %s must return void", name)
      end
      if f.oneway and fn.throws and #fn.throws > 0 then
        errorf(2, "petrel.service: oneway function %s cannot declare throws", name)
      end
      for i, a in ipairs(fn.args or {}) do
        f.args[i] = norm_field(a, "service function " .. name .. " arg #" .. i)
      end
      for i, a in ipairs(fn.throws or {}) do
        f.throws[i] = norm_field(a, "service function " .. name .. " throws #" .. i)
      end
      out.functions[name] = f
    end
  end
  table.sort(names)
  out.order = t.order or names
  return out
end

-- ---- type strings --------------------------------------------------------

-- Parse "map<string,list<Item>>" into {name=} / {container=, args={...}}.
local function parse_type(s, where)
  local pos = 1
  local function skipws() pos = s:find("[^%s]", pos) or #s + 1 end
  local function fail(msg)
    errorf(5, "%s: %s in type '%s'", where, msg, s)
  end
  local parse
  function parse()
    skipws()
    local a, b = s:find("^[%a_][%w_%.]*", pos)
    if not a then fail("type name expected at position " .. pos) end
    local name = s:sub(a, b)
    pos = b + 1
    skipws()
    if name == "list" or name == "set" or name == "map" then
      if s:sub(pos, pos) ~= "<" then fail("'<' expected after " .. name) end
      pos = pos + 1
      local args = { parse() }
      skipws()
      if name == "map" then
        if s:sub(pos, pos) ~= "," then fail("',' expected in map<K,V>") end
        pos = pos + 1
        args[2] = parse()
        skipws()
      end
      if s:sub(pos, pos) ~= ">" then fail("'>' expected") end
      pos = pos + 1
      return { container = name, args = args }
    end
    if s:sub(pos, pos) == "<" then errorf(5, "%s: unknown type '%s'", where, s) end
    return { name = name }
  end
  local t = parse()
  skipws()
  if pos <= #s then fail("unexpected '" .. s:sub(pos) .. "'") end
  return t
end

M.parse_type = parse_type

-- ---- sharing across Lua states ---------------------------------------------

-- Lua source for a plain value (tables, strings, numbers, booleans, int64
-- cdata on LuaJIT); used to carry defaults, enums and names to another state.
local function serialize(v, out)
  local t = type(v)
  if t == "table" then
    out[#out + 1] = "{"
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b)
      if type(a) == type(b) and type(a) ~= "cdata" then return a < b end
      return type(a) < type(b)
    end)
    for _, k in ipairs(keys) do
      out[#out + 1] = "["
      serialize(k, out)
      out[#out + 1] = "]="
      serialize(v[k], out)
      out[#out + 1] = ","
    end
    out[#out + 1] = "}"
  elseif t == "string" then
    out[#out + 1] = string.format("%q", v)
  elseif t == "number" then
    if math.type and math.type(v) == "integer" then
      out[#out + 1] = string.format("%d", v)
    elseif v ~= v then
      out[#out + 1] = "(0/0)"
    elseif v == math.huge or v == -math.huge then
      out[#out + 1] = v > 0 and "math.huge" or "-math.huge"
    else
      out[#out + 1] = string.format("%.17g", v)
    end
  elseif t == "boolean" or t == "nil" then
    out[#out + 1] = tostring(v)
  elseif t == "cdata" then
    out[#out + 1] = tostring(v) -- 123LL / 123ULL: LuaJIT source
  else
    error("cannot carry a " .. t .. " value to another state", 0)
  end
  return out
end

-- ---- compile ---------------------------------------------------------------

-- petrel.schema(defs) -> namespace of compiled types, enums, consts, services.
function M.compile(defs, opts)
  if type(defs) ~= "table" then errorf(2, "petrel.schema: table expected") end
  opts = opts or {}
  local plans, plan_index = {}, {}
  local enums, enum_index = {}, {}
  local names = {}
  for name in pairs(defs) do
    if type(name) ~= "string" then
      errorf(2, "petrel.schema: definition names must be strings")
    end
    names[#names + 1] = name
  end
  table.sort(names)
  for _, name in ipairs(names) do
    local d = defs[name]
    if type(d) ~= "table" or type(d.kind) ~= "string" then
      errorf(2, "%s: not a definition (use petrel.struct, petrel.enum, ...)", name)
    end
    if PLAN_KIND[d.kind] then
      plans[#plans + 1] = { name = name, def = d }
      plan_index[name] = #plans
    elseif d.kind == "enum" then
      for k, v in pairs(d.values) do enum_value(name .. ".", k, v) end
      local names_by_value = {}
      for k, v in pairs(d.values) do
        if names_by_value[v] == nil then names_by_value[v] = k end
      end
      for _, k in ipairs(d.order or {}) do -- first declared name wins
        local v = d.values[k]
        if v ~= nil and names_by_value[v] ~= k then
          local first = true
          for _, k2 in ipairs(d.order) do
            if d.values[k2] == v then first = (k2 == k); break end
          end
          if first then names_by_value[v] = k end
        end
      end
      enums[#enums + 1] = { names_by_value, d.values }
      enum_index[name] = #enums
    elseif d.kind ~= "typedef" and d.kind ~= "const" and d.kind ~= "service" then
      errorf(2, "%s: unknown definition kind '%s'", name, d.kind)
    end
  end

  -- resolve a type string to a C type description (memoized: the C side
  -- builds a fresh pt_type per use, so sharing descriptions is safe)
  local resolving = {}
  local memo = {}
  local resolve_uncached
  local function resolve(tstr, where, field)
    if field and field.typed then return resolve_uncached(tstr, where, field) end
    local r = memo[tstr]
    if not r then
      r = resolve_uncached(tstr, where, field)
      memo[tstr] = r
    end
    return r
  end
  function resolve_uncached(tstr, where, field)
    local function conv(node)
      if node.container then
        if node.container == "map" then
          return { kind = "map", key = conv(node.args[1]), val = conv(node.args[2]) }
        end
        return { kind = node.container, elem = conv(node.args[1]),
          typed = field and field.typed or nil }
      end
      local n = node.name
      if BASE[n] then return { kind = BASE[n] } end
      if plan_index[n] then return { kind = "struct", plan = plan_index[n] } end
      if enum_index[n] then return { kind = "enum", enum = enum_index[n] } end
      local d = defs[n]
      if d and d.kind == "typedef" then
        if resolving[n] then errorf(6, "%s: typedef cycle through '%s'", where, n) end
        resolving[n] = true
        local r = conv(parse_type(d.type, n))
        resolving[n] = nil
        return r
      end
      errorf(6, "%s: unknown type '%s'", where, tstr)
    end
    return conv(parse_type(tstr, where))
  end

  local function compile_fields(fields, where, out)
    local ids, fnames = {}, {}
    for i, f in ipairs(fields) do
      local fw = where .. "." .. f.name
      if ids[f.id] then
        errorf(4, "%s: duplicate field id %d (also %s)", fw, f.id, ids[f.id])
      end
      if fnames[f.name] then errorf(4, "%s: duplicate field name", fw) end
      ids[f.id], fnames[f.name] = f.name, true
      out[i] = { id = f.id, name = f.name, req = REQ[f.required or "default"],
        type = resolve(f.type, fw, f), default = f.default }
    end
    return out
  end

  for _, p in ipairs(plans) do
    p.desc = { name = p.name, kind = PLAN_KIND[p.def.kind],
      fields = compile_fields(p.def.fields or {}, p.name, {}) }
  end

  -- services: one args and one result struct per function
  local services = {}
  local function add_plan(name, kind, fields)
    plans[#plans + 1] = { name = name, desc = { name = name, kind = kind, fields = fields } }
    plan_index[name] = #plans
    return #plans
  end
  for _, name in ipairs(names) do
    local d = defs[name]
    if d.kind == "service" then
      local svc = { name = name, functions = {}, order = {}, extends = d.extends }
      services[name] = svc
      for _, fname in ipairs(d.order or {}) do
        local fn = d.functions[fname]
        if not fn then errorf(2, "%s: order names unknown function %s", name, fname) end
        local where = name .. "." .. fname
        local entry = { name = fname, oneway = fn.oneway and true or false,
          result_type = fn.result or "void", throws = {}, annotations = fn.annotations }
        entry.args_plan = add_plan(where .. "_args", 0,
          compile_fields(fn.args or {}, where .. "_args", {}))
        if not entry.oneway then
          local rf = {}
          if entry.result_type ~= "void" then
            rf[1] = { id = 0, name = "success", req = 2,
              type = resolve(entry.result_type, where .. " result") }
          end
          local ids = {}
          for _, e in ipairs(fn.throws or {}) do
            local ew = where .. " throws " .. e.name
            local td = resolve(e.type, ew)
            if td.kind ~= "struct" or defs[e.type] and defs[e.type].kind ~= "exception" then
              errorf(2, "%s: '%s' is not an exception", ew, e.type)
            end
            if ids[e.id] or e.id == 0 then errorf(2, "%s: duplicate or zero id %d", ew, e.id) end
            ids[e.id] = true
            rf[#rf + 1] = { id = e.id, name = e.name, req = 2, type = td }
            entry.throws[#entry.throws + 1] = { id = e.id, name = e.name, type = e.type }
          end
          entry.result_plan = add_plan(where .. "_result", 0, rf)
        elseif fn.result and fn.result ~= "void" then
          errorf(2, "%s: oneway functions return void", where)
        elseif fn.throws and #fn.throws > 0 then
          errorf(2, "%s: oneway functions cannot declare throws", where)
        end
        svc.functions[fname] = entry
        svc.order[#svc.order + 1] = fname
      end
    end
  end
  -- defaults must fit their fields' types (as the IDL loader checks its
  -- constants); enum names become values
  local enum_name = {}
  for n, i in pairs(enum_index) do enum_name[i] = n end
  local plan_name = {}
  for n, i in pairs(plan_index) do plan_name[i] = n end
  local check_default
  function check_default(td, v, path, role)
    local k = td.kind
    local function bad(what)
      errorf(0, "%s: %s must be %s, got %s", path, role, what, show(v))
    end
    if INT_RANGE[k] then
      if not integral(v) then bad("an " .. k) end
      if v < INT_RANGE[k][1] or v > INT_RANGE[k][2] then
        errorf(0, "%s: %s %s is out of the %s range", path, role, show(v), k)
      end
    elseif k == "i64" then
      if type(v) ~= "cdata" and (not integral(v) or v < -2 ^ 63 or v >= 2 ^ 63) then
        bad("an i64")
      end
    elseif k == "double" then
      if type(v) ~= "number" then bad("a double") end
    elseif k == "bool" then
      if type(v) ~= "boolean" then bad("a bool") end
    elseif k == "string" or k == "binary" then
      if type(v) ~= "string" then bad("a " .. k) end
    elseif k == "uuid" then
      if type(v) ~= "string" or not (#v == 16 or v:match(
        "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$")) then
        bad("a uuid (36-character text or 16 bytes)")
      end
    elseif k == "enum" then
      local e, ename = enums[td.enum], enum_name[td.enum]
      if type(v) == "string" then
        if e[2][v] == nil then
          errorf(0, "%s: %s %q is not a name of enum %s", path, role, v, ename)
        end
        return e[2][v]
      end
      if not integral(v) then bad("a value of enum " .. ename) end
      if e[1][v] == nil then
        errorf(0, "%s: %s %s is not a value of enum %s", path, role, show(v), ename)
      end
    elseif k == "struct" then
      local sname = plan_name[td.plan]
      if type(v) ~= "table" then bad("a table (struct " .. sname .. ")") end
      local byname = {}
      for _, f in ipairs(plans[td.plan].desc.fields) do byname[f.name] = f end
      local out = {}
      for key, x in pairs(v) do
        local f = byname[key]
        if not f then
          errorf(0, "%s: %s has no field '%s' in %s", path, role, tostring(key), sname)
        end
        out[key] = check_default(f.type, x, path .. "." .. key, role)
      end
      return setmetatable(out, getmetatable(v))
    elseif k == "list" or k == "set" then
      if type(v) == "userdata" then return v end -- a typed array
      if type(v) ~= "table" then bad("a " .. k) end
      local out = {}
      if k == "set" and #v == 0 and next(v) ~= nil then -- {[elem] = true}
        for key, flag in pairs(v) do
          if type(flag) ~= "boolean" then
            errorf(0, "%s: %s set in key form must map elements to true, got %s",
              path, role, show(flag))
          end
          local ks = type(key) == "string" and string.format("%q", key) or tostring(key)
          if flag then out[#out + 1] = check_default(td.elem, key, path .. "[" .. ks .. "]", role) end
        end
      else
        for i = 1, #v do out[i] = check_default(td.elem, v[i], path .. "[" .. i .. "]", role) end
      end
      return setmetatable(out, getmetatable(v))
    elseif k == "map" then
      if type(v) ~= "table" then bad("a map") end
      local out = {}
      for key, x in pairs(v) do
        local kk = check_default(td.key, key, path, role .. " map key")
        local ks = type(key) == "string" and string.format("%q", key) or tostring(key)
        out[kk] = check_default(td.val, x, path .. "[" .. ks .. "]", role)
      end
      return setmetatable(out, getmetatable(v))
    end
    return v
  end
  for i, p in ipairs(plans) do
    for _, f in ipairs(p.desc.fields) do
      if f.default ~= nil then
        f.default = check_default(f.type, f.default, plan_name[i] .. "." .. f.name, "default")
      end
    end
  end

  -- extends: inherit parent functions (parents first, child overrides)
  local function inherit(svc, seen)
    if not svc.extends or svc.inherited then return end
    local parent = services[svc.extends]
    if not parent then errorf(4, "%s: extends unknown service '%s'", svc.name, svc.extends) end
    if seen[parent] then errorf(4, "%s: service extends cycle", svc.name) end
    seen[parent] = true
    inherit(parent, seen)
    for _, fname in ipairs(parent.order) do
      if not svc.functions[fname] then
        svc.functions[fname] = parent.functions[fname]
        table.insert(svc.order, fname)
      end
    end
    svc.inherited = true
  end
  for _, svc in pairs(services) do inherit(svc, { [svc] = true }) end

  local descs = {}
  for i, p in ipairs(plans) do descs[i] = p.desc end

  -- what another state needs to adopt the compiled plans (see M.adopt)
  local meta = { defaults = {}, enums = enums, names = {}, enum_values = {},
    consts = {}, services = {} }
  local key = 0
  for i, p in ipairs(plans) do
    for j, f in ipairs(p.desc.fields) do
      if f.default ~= nil then meta.defaults[key + j] = f.default end
    end
    key = key + #p.desc.fields
    if p.def then meta.names[i] = p.name end
  end
  for name in pairs(enum_index) do meta.enum_values[name] = defs[name].values end
  for _, name in ipairs(names) do
    if defs[name].kind == "const" then meta.consts[name] = defs[name].value end
  end
  for name, svc in pairs(services) do
    local fns = {}
    for fname, fn in pairs(svc.functions) do
      fns[fname] = { name = fn.name, oneway = fn.oneway, result_type = fn.result_type,
        throws = fn.throws, args_plan = fn.args_plan, result_plan = fn.result_plan,
        annotations = fn.annotations }
    end
    meta.services[name] = { name = name, order = svc.order, extends = svc.extends,
      functions = fns }
  end
  local ok, src = pcall(function() return table.concat(serialize(meta, { "return " })) end)
  local types = core.compile({ plans = descs, enums = enums, meta = ok and src or nil })
  local ns = M.namespace(types, meta)
  ns._defs = defs
  return ns
end

-- The namespace users see: types by name, enums as name -> value tables,
-- consts as values, services with their compiled args/result types.
function M.namespace(types, meta)
  local ns = { _services = {} }
  for i, name in pairs(meta.names) do ns[name] = types[i] end
  for name, values in pairs(meta.enum_values) do
    local e = {}
    for k, v in pairs(values) do e[k] = v end
    ns[name] = e
  end
  for name, v in pairs(meta.consts) do ns[name] = v end
  for name, svc in pairs(meta.services) do
    for _, fn in pairs(svc.functions) do
      fn.args = types[fn.args_plan]
      fn.result = fn.result_plan and types[fn.result_plan] or nil
    end
    ns[name] = svc
    ns._services[name] = svc
  end
  local any = types[1]
  ns._export = any and function() return core.export(any) end
  return ns
end

-- petrel.export(ns) -> handle: a string naming one reference to the
-- compiled plans, to be passed to another Lua state of the same process
-- (a thread library's argument, a channel...), which calls
-- petrel.adopt(handle) exactly once. The handle is a raw address: never
-- forge one, never adopt one twice, never send it to another process.
function M.export(ns)
  if type(ns) ~= "table" or not ns._export then
    error("petrel.export: a compiled schema namespace with at least one struct expected", 2)
  end
  return ns._export()
end

-- petrel.adopt(handle) -> namespace over the same immutable C plans.
function M.adopt(handle)
  if type(handle) ~= "string" then error("petrel.adopt: handle expected", 2) end
  local src = core.adopt_meta(handle)
  local load_ = loadstring or load
  local chunk = src ~= "" and load_(src)
  if not chunk then error("petrel.adopt: this schema cannot be adopted (values not portable)", 2) end
  local meta = chunk()
  local types = core.adopt(handle, meta.defaults, meta.enums)
  return M.namespace(types, meta)
end

return M
