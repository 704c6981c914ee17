-- petrel.cli.values: values of an IDL's types on the command line.
--
-- A converter walks the schema tables of a loaded IDL (ns._defs: the
-- normalized form of docs/schema.md) alongside a value:
--   conv:from(node, x, path)  JSON (as lua-cjson decodes it) -> the Lua
--                             value petrel's codec encodes
--   conv:json(node, v, opts)  a decoded Lua value -> JSON text
--   conv:mock(node)           a value built from defaults (petrel serve --mock)
-- and conv:type(tstr) / conv:struct(name) / conv:args(svc, fn) /
-- conv:result(svc, fn) give the nodes.
--
-- The JSON mapping (also in docs/cli.md):
--   bool, string, uuid   JSON boolean / string
--   byte..i32, double     numbers; doubles also "NaN", "Infinity", "-Infinity"
--   i64                   a number, written exactly however large (input:
--                         also a string of digits; numbers of 16 digits and
--                         more are read exactly, not through a double)
--   binary                base64 text
--   enum                  output: the name (the number when it has none);
--                         input: either
--   struct, union,        an object of field names, in declaration order;
--   exception             unset optional fields absent
--   list, set             arrays
--   map                   an object when keys are strings, numbers, bools
--                         or enums (keys as text); otherwise an array of
--                         [key, value] pairs (input takes both forms)
local schema = require "petrel.schema"
local core = require "petrel.core"
local util = require "petrel.cli.util"

local M = {}
local Conv = {}
Conv.__index = Conv

local BASE = schema.base_types
local INT = { i8 = { -128, 127 }, i16 = { -32768, 32767 }, i32 = { -2147483648, 2147483647 } }
local fmt = string.format
local mtype = math.type

-- ns: a namespace from petrel.load (or petrel.schema): its _defs
function M.new(ns)
  return setmetatable({ defs = ns._defs or (ns._idl and ns._idl.defs) or {}, memo = {} }, Conv)
end

-- ---- types ------------------------------------------------------------------

local function enum_node(name, d)
  local names = {}
  local order = d.order or {}
  for _, k in ipairs(order) do
    local v = d.values[k]
    if v ~= nil and names[v] == nil then names[v] = k end
  end
  for k, v in pairs(d.values) do
    if names[v] == nil or (not d.order and k < names[v]) then names[v] = k end
  end
  return { kind = "enum", name = name, values = d.values, names = names, order = order }
end

-- The node of type string t ("map<string,list<Item>>").
function Conv:type(t)
  local n = self.memo[t]
  if n then return n end
  local function conv(node, depth)
    if depth > 64 then error("typedef nesting too deep at " .. t, 0) end
    if node.container then
      if node.container == "map" then
        return { kind = "map", key = conv(node.args[1], depth + 1), val = conv(node.args[2], depth + 1) }
      end
      return { kind = node.container, elem = conv(node.args[1], depth + 1) }
    end
    local name = node.name
    if BASE[name] then return { kind = BASE[name] } end
    local d = self.defs[name]
    if not d then error("unknown type '" .. name .. "'", 0) end
    if d.kind == "typedef" then return conv(schema.parse_type(d.type, name), depth + 1) end
    if d.kind == "enum" then return enum_node(name, d) end
    if d.kind == "struct" or d.kind == "union" or d.kind == "exception" then
      return { kind = "struct", name = name, fields = d.fields or {}, def = d }
    end
    error("'" .. name .. "' is a " .. d.kind .. ", not a type", 0)
  end
  n = conv(schema.parse_type(t, t), 0)
  self.memo[t] = n
  return n
end

-- A struct, union or exception by name (or nil).
function Conv:struct(name)
  local d = self.defs[name]
  if not d or (d.kind ~= "struct" and d.kind ~= "union" and d.kind ~= "exception") then
    return nil
  end
  return self:type(name)
end

-- The schema entry of function fname of service sname (parents of an
-- `extends` chain included).
function Conv:fn_def(sname, fname)
  local seen = {}
  while sname and not seen[sname] do
    seen[sname] = true
    local d = self.defs[sname]
    if not d then return nil end
    local f = d.functions and d.functions[fname]
    if f then return f end
    sname = d.extends
  end
end

-- The arguments struct of a function, as a node.
function Conv:args(sname, fname)
  local f = assert(self:fn_def(sname, fname), "no function " .. fname)
  return { kind = "struct", name = sname .. "." .. fname .. "_args", fields = f.args or {} }
end

-- The result struct: success (id 0) and the declared exceptions.
function Conv:result(sname, fname)
  local f = assert(self:fn_def(sname, fname), "no function " .. fname)
  local fields = {}
  if f.result and f.result ~= "void" then
    fields[1] = { id = 0, name = "success", type = f.result, required = "optional" }
  end
  for _, t in ipairs(f.throws or {}) do
    fields[#fields + 1] = { id = t.id, name = t.name, type = t.type, required = "optional" }
  end
  return { kind = "struct", name = sname .. "." .. fname .. "_result", fields = fields }
end

-- ---- JSON -> Lua ------------------------------------------------------------------

local function show(x)
  if type(x) == "string" then return fmt("%q", x) end
  if type(x) == "table" then return "an " .. (#x > 0 and "array" or "object") end
  return tostring(x)
end

local function bad(path, want, x)
  util.usage("%s: %s expected, got %s", path, want, show(x))
end

-- An integral number, or a string of digits, as an integer (or a float
-- with an integral value on runtimes without integers); nil if not one.
local function integer(x)
  if type(x) == "number" then
    if x ~= x or x == math.huge or x == -math.huge or x ~= math.floor(x) then return nil end
    return mtype and (math.tointeger(x) or nil) or x
  end
  if type(x) == "string" and x:match("^%s*%-?%d+%s*$") then
    local v = tonumber(x)
    if mtype then return math.tointeger(v) end
    return v
  end
end

-- An i64 from a number or a string of digits, exactly: a Lua 5.4
-- integer, or on LuaJIT a number when it is exact and int64 cdata when not.
local I64_MAX = "9223372036854775807"
local function i64(x)
  if type(x) == "number" then
    local v = integer(x)
    if v and not mtype and math.abs(v) > 2 ^ 53 then return nil end -- lost already
    return v
  end
  if type(x) ~= "string" then return nil end
  local s = x:match("^%s*(%-?%d+)%s*$")
  if not s then return nil end
  local digits = s:gsub("^%-", ""):gsub("^0+(%d)", "%1")
  if #digits > 19 or (#digits == 19 and digits > I64_MAX and not (s:sub(1, 1) == "-" and digits == "9223372036854775808")) then
    return nil
  end
  if mtype then return math.tointeger(tonumber(s)) or (s:sub(1, 1) == "-" and math.mininteger) end
  local v = tonumber(s)
  if math.abs(v) < 2 ^ 53 then return v end
  local chunk = (loadstring or load)("return " .. s .. "LL")
  return chunk and chunk() or nil
end
M.i64 = i64

local SPECIAL = { NaN = 0 / 0, Infinity = math.huge, ["-Infinity"] = -math.huge }

local from

local function key_from(self, node, k, path)
  local kk = node.kind
  if kk == "string" or kk == "uuid" then return k end
  if kk == "binary" then
    local b, err = util.unbase64(k)
    if not b then util.usage("%s: map key: %s", path, err) end
    return b
  end
  if kk == "bool" then
    if k == "true" then return true elseif k == "false" then return false end
    bad(path .. " (key)", "true or false", k)
  end
  if kk == "double" then
    local v = SPECIAL[k] or tonumber(k)
    if not v then bad(path .. " (key)", "a number", k) end
    return v
  end
  return from(self, node, k, path .. " (key)")
end

function from(self, node, x, path)
  local cj = util.cjson()
  if x == nil or (cj and x == cj.null) then return nil end
  local k = node.kind
  if k == "bool" then
    if type(x) ~= "boolean" then bad(path, "true or false", x) end
    return x
  elseif INT[k] then
    local v = integer(x)
    if not v then bad(path, "an integer (" .. k .. ")", x) end
    if v < INT[k][1] or v > INT[k][2] then util.usage("%s: %s is out of the %s range", path, tostring(x), k) end
    return v
  elseif k == "i64" then
    local v = i64(x)
    if v == nil then bad(path, "an i64 (a number, or a string of digits)", x) end
    return v
  elseif k == "double" then
    if type(x) == "number" then return x end
    local v = type(x) == "string" and (SPECIAL[x] or tonumber(x))
    if not v then bad(path, "a number", x) end
    return v
  elseif k == "string" or k == "uuid" then
    if type(x) ~= "string" then bad(path, "a string", x) end
    return x
  elseif k == "binary" then
    if type(x) ~= "string" then bad(path, "base64 text (binary)", x) end
    local b, err = util.unbase64(x)
    if not b then util.usage("%s: %s", path, err) end
    return b
  elseif k == "enum" then
    if type(x) == "string" and node.values[x] ~= nil then return node.values[x] end
    local v = integer(x)
    if v and node.names[v] then return v end
    local names = {}
    for _, n in ipairs(node.order) do names[#names + 1] = n end
    bad(path, "a name or value of enum " .. node.name .. " (" .. table.concat(names, ", ") .. ")", x)
  elseif k == "struct" then
    if type(x) ~= "table" or (#x > 0) then bad(path, "an object (" .. node.name .. ")", x) end
    local byname = {}
    for _, f in ipairs(node.fields) do byname[f.name] = f end
    local out = {}
    for key, val in pairs(x) do
      local f = byname[key]
      if not f then
        local names = {}
        for _, g in ipairs(node.fields) do names[#names + 1] = g.name end
        util.usage("%s: %s has no field %q (fields: %s)", path, node.name, tostring(key),
          #names > 0 and table.concat(names, ", ") or "none")
      end
      out[key] = from(self, self:type(f.type), val, path .. "." .. key)
    end
    return out
  elseif k == "list" or k == "set" then
    if type(x) ~= "table" then bad(path, "an array (" .. k .. ")", x) end
    if next(x) ~= nil and #x == 0 then bad(path, "an array (" .. k .. ")", x) end
    local out = {}
    for i = 1, #x do out[i] = from(self, node.elem, x[i], path .. "[" .. i .. "]") end
    return setmetatable(out, k == "set" and core.set or core.list)
  elseif k == "map" then
    if type(x) ~= "table" then bad(path, "an object or an array of [key, value] pairs (map)", x) end
    local out = setmetatable({}, core.map)
    if #x > 0 then
      for i, pair in ipairs(x) do
        if type(pair) ~= "table" or #pair ~= 2 then
          bad(path .. "[" .. i .. "]", "a [key, value] pair", pair)
        end
        local key = from(self, node.key, pair[1], path .. "[" .. i .. "][1]")
        out[key] = from(self, node.val, pair[2], path .. "[" .. i .. "][2]")
      end
    else
      for key, val in pairs(x) do
        local kk = key_from(self, node.key, key, path)
        out[kk] = from(self, node.val, val, path .. "[" .. fmt("%q", key) .. "]")
      end
    end
    return out
  end
  error("cannot convert a value of kind " .. tostring(k), 0)
end

function Conv:from(node, x, path) return from(self, node, x, path or node.name or "value") end

-- JSON text -> a Lua value as lua-cjson decodes it, with integer literals
-- of 16 digits and more turned into strings first (a double cannot hold
-- them; i64 fields read the digits exactly).
function M.decode_json(text)
  local cj, why = util.cjson()
  if not cj then util.usage("%s; give the value as a Lua table literal instead", why) end
  if text:find("%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d") then
    local out, i, n = {}, 1, #text
    while i <= n do
      local j = text:find('["%-%d]', i)
      if not j then out[#out + 1] = text:sub(i); break end
      out[#out + 1] = text:sub(i, j - 1)
      if text:sub(j, j) == '"' then
        local e = j + 1
        while true do
          local q = text:find('["\\]', e)
          if not q then e = n; break end
          if text:sub(q, q) == "\\" then e = q + 2 else e = q; break end
        end
        out[#out + 1] = text:sub(j, e)
        i = e + 1
      else
        local tok = text:match("^%-?[%d%.eE+%-]*", j)
        local digits = tok:match("^%-?(%d+)$")
        if digits and #digits >= 16 then out[#out + 1] = '"' .. tok .. '"'
        else out[#out + 1] = tok end
        i = j + math.max(#tok, 1)
      end
    end
    text = table.concat(out)
  end
  local ok, v = pcall(cj.decode, text)
  if not ok then util.usage("not JSON: %s", tostring(v):gsub("^.-: ", "")) end
  return v
end

-- A value given on the command line: JSON, or a Lua table literal
-- (evaluated with no globals). lua = true: Lua only; json = true: JSON
-- only. Returns the value and "json" | "lua".
function M.parse_value(text, o)
  o = o or {}
  local trimmed = text:match("^%s*(.-)%s*$")
  local function lua_value()
    local chunk, err
    if setfenv then
      chunk, err = loadstring("return " .. trimmed, "=value")
      if chunk then setfenv(chunk, {}) end
    else
      chunk, err = load("return " .. trimmed, "=value", "t", {})
    end
    if not chunk then return nil, err end
    local ok, v = pcall(chunk)
    if not ok then return nil, v end
    return v
  end
  if o.lua then
    local v, err = lua_value()
    if v == nil and err then util.usage("not a Lua value: %s", err) end
    return v, "lua"
  end
  local cj = util.cjson()
  if cj and not o.force_lua then
    local ok = pcall(cj.decode, trimmed)
    if ok or o.json then return M.decode_json(trimmed), "json" end
  end
  local v, err = lua_value()
  if err then
    if not cj then
      util.usage("not a Lua value (%s), and JSON needs lua-cjson, which is not installed for %s",
        err, util.runtime)
    end
    util.usage("neither JSON nor a Lua value: %s", err)
  end
  return v, "lua"
end

-- ---- Lua -> JSON --------------------------------------------------------------------

local function num_text(x)
  if x ~= x then return '"NaN"' end
  if x == math.huge then return '"Infinity"' end
  if x == -math.huge then return '"-Infinity"' end
  if mtype and mtype(x) == "integer" then return fmt("%d", x) end
  if x == math.floor(x) and math.abs(x) < 2 ^ 63 then
    -- integral: no exponent, no ".0" noise for i64 values kept as doubles
    local s = fmt("%.17g", x)
    if not s:find("[eE]") then return s end
  end
  for p = 15, 17 do
    local s = fmt("%." .. p .. "g", x)
    if tonumber(s) == x then return s end
  end
  return fmt("%.17g", x)
end

local function int_text(x)
  if type(x) == "cdata" then return (tostring(x):gsub("U?LL$", "")) end
  if type(x) == "number" then return num_text(x) end
  return tostring(x)
end

local function jstring(s)
  local cj = util.cjson()
  return (cj.encode(s):gsub("\\/", "/"))
end

local json

-- join parts of an object or array: compact, one line when short, or one
-- entry per line
local function join(open, parts, close, ind, o)
  if #parts == 0 then return open .. close end
  if o.compact then return open .. table.concat(parts, ",") .. close end
  local one = open .. table.concat(parts, ", ") .. close
  if #one + #ind <= 80 and not one:find("\n") then return one end
  local pad = ind .. "  "
  return open .. "\n" .. pad .. table.concat(parts, ",\n" .. pad) .. "\n" .. ind .. close
end

local function key_text(node, k)
  local kk = node.kind
  if kk == "string" or kk == "uuid" then return k end
  if kk == "binary" then return util.base64(k) end
  if kk == "enum" then return node.names[k] or tostring(k) end
  if kk == "double" then return (num_text(k):gsub('"', "")) end
  if kk == "bool" then return tostring(k) end
  if INT[kk] or kk == "i64" then return int_text(k) end
  return nil
end

local SCALAR_KEY = { string = true, uuid = true, binary = true, enum = true, double = true,
  bool = true, i8 = true, i16 = true, i32 = true, i64 = true }

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then return ta < tb end
    if ta == "number" or ta == "string" or ta == "cdata" then return a < b end
    return tostring(a) < tostring(b)
  end)
  return keys
end

function json(self, node, v, ind, o)
  if v == nil then return "null" end
  local k = node.kind
  if k == "bool" then return tostring(v and true or false) end
  if INT[k] or k == "i64" then return int_text(v) end
  if k == "double" then return num_text(v) end
  if k == "string" or k == "uuid" then return jstring(v) end
  if k == "binary" then return '"' .. util.base64(v) .. '"' end
  if k == "enum" then
    local name = node.names[v]
    return name and jstring(name) or int_text(v)
  end
  local inner = ind .. "  "
  if k == "struct" then
    local parts = {}
    local known = {}
    for _, f in ipairs(node.fields) do
      known[f.name] = true
      local x = v[f.name]
      if x ~= nil then
        parts[#parts + 1] = jstring(f.name) .. (o.compact and ":" or ": ") ..
          json(self, self:type(f.type), x, inner, o)
      end
    end
    return join("{", parts, "}", ind, o)
  end
  if k == "list" or k == "set" then
    local parts = {}
    local n = type(v) == "userdata" and #v or #v
    if type(v) == "table" and n == 0 and next(v) ~= nil and k == "set" then
      -- a set in key form {[elem] = true}
      for _, e in ipairs(sorted_keys(v)) do parts[#parts + 1] = json(self, node.elem, e, inner, o) end
    else
      for i = 1, n do parts[#parts + 1] = json(self, node.elem, v[i], inner, o) end
    end
    return join("[", parts, "]", ind, o)
  end
  if k == "map" then
    local parts = {}
    local keys = sorted_keys(v)
    if SCALAR_KEY[node.key.kind] then
      for _, key in ipairs(keys) do
        parts[#parts + 1] = jstring(key_text(node.key, key)) .. (o.compact and ":" or ": ") ..
          json(self, node.val, v[key], inner, o)
      end
      return join("{", parts, "}", ind, o)
    end
    for _, key in ipairs(keys) do
      parts[#parts + 1] = join("[", { json(self, node.key, key, inner .. "  ", o),
        json(self, node.val, v[key], inner .. "  ", o) }, "]", inner, o)
    end
    return join("[", parts, "]", ind, o)
  end
  error("cannot show a value of kind " .. tostring(k), 0)
end

-- JSON text of v (a value of node's type). o.compact: one line.
function Conv:json(node, v, o)
  return json(self, node, v, "", o or {})
end

-- JSON text of any plain Lua value (idl dump, the schemaless walker):
-- tables with 1..n as arrays, others as objects with sorted keys.
function M.any_json(v, o, ind)
  o, ind = o or {}, ind or ""
  local t = type(v)
  if v == nil then return "null" end
  if t == "boolean" then return tostring(v) end
  if t == "number" then return num_text(v) end
  if t == "cdata" then return int_text(v) end
  if t == "string" then return jstring(v) end
  if t ~= "table" then return jstring(tostring(v)) end
  local inner = ind .. "  "
  local n = #v
  local parts = {}
  local count = 0
  for _ in pairs(v) do count = count + 1 end
  if count == n then -- arrays (an empty table too: the schema's lists)
    for i = 1, n do parts[i] = M.any_json(v[i], o, inner) end
    return join("[", parts, "]", ind, o)
  end
  for _, k in ipairs(sorted_keys(v)) do
    parts[#parts + 1] = jstring(tostring(k)) .. (o.compact and ":" or ": ") .. M.any_json(v[k], o, inner)
  end
  return join("{", parts, "}", ind, o)
end

-- ---- mock values ------------------------------------------------------------------------

-- A value of node's type from defaults: struct fields with a default get
-- it, required and default-requiredness fields get the zero of their type
-- (optional ones stay unset), containers are empty, enums take their first
-- value. Recursion stops at depth 8 (a recursive struct's field is left
-- out where it may be, else gets an empty struct).
function Conv:mock(node, depth)
  depth = depth or 0
  local k = node.kind
  if k == "bool" then return false end
  if INT[k] or k == "i64" then return 0 end
  if k == "double" then return 0.0 end
  if k == "string" or k == "binary" then return "" end
  if k == "uuid" then return "00000000-0000-0000-0000-000000000000" end
  if k == "enum" then
    local first = node.order[1]
    if first then return node.values[first] end
    local low
    for _, v in pairs(node.values) do if not low or v < low then low = v end end
    return low or 0
  end
  if k == "list" then return setmetatable({}, core.list) end
  if k == "set" then return setmetatable({}, core.set) end
  if k == "map" then return setmetatable({}, core.map) end
  if k == "struct" then
    local out = {}
    if node.def and node.def.kind == "union" then
      local f = node.fields[1]
      if f and depth < 8 then out[f.name] = self:mock(self:type(f.type), depth + 1) end
      return out
    end
    for _, f in ipairs(node.fields) do
      if f.default ~= nil then
        local d = f.default
        local ft = self:type(f.type)
        if ft.kind == "enum" and type(d) == "string" then d = ft.values[d] end
        out[f.name] = d
      elseif f.required ~= "optional" and depth < 8 then
        out[f.name] = self:mock(self:type(f.type), depth + 1)
      end
    end
    return out
  end
  return nil
end

return M
