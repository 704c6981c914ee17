-- Schema-driven conversions for the interop specs: petrel values <->
-- the canonical JSON of tools/pyinterop.py, a comparable normal form, and
-- random values of any type. Works from normalized schema definitions
-- (docs/schema.md), so hand-written schemas and loaded IDL both work.
local schema = require "petrel.schema"

local M = {}
local is_jit = jit ~= nil

local parse_cache = {}
local function parse(tstr)
  local t = parse_cache[tstr]
  if not t then
    t = schema.parse_type(tstr, "canon")
    parse_cache[tstr] = t
  end
  return t
end

-- Resolve typedefs: returns the node and, for names, the definition.
local function resolve(defs, node)
  while node.name and defs[node.name] and defs[node.name].kind == "typedef" do
    node = parse(defs[node.name].type)
  end
  if node.name then
    local b = schema.base_types[node.name]
    if b then return { base = b } end
    local d = defs[node.name]
    if not d then error("canon: unknown type " .. node.name) end
    return { def = d }
  end
  return node
end

local function i64_text(v)
  if type(v) == "cdata" then return (tostring(v):gsub("U?LL$", "")) end
  if math.type and math.type(v) == "integer" then return string.format("%d", v) end
  return string.format("%.0f", v)
end

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- Text used only to order set elements and map keys the same way on both
-- sides; any injective, deterministic text will do.
local function ctext(x)
  local t = type(x)
  if t == "table" then
    local keys = {}
    for k in pairs(x) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local parts = {}
    for _, k in ipairs(keys) do parts[#parts + 1] = tostring(k) .. "=" .. ctext(x[k]) end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif t == "number" then
    return string.format("n%.17g", x)
  end
  return t:sub(1, 1) .. tostring(x)
end

local function sorted(arr, keyf)
  table.sort(arr, function(a, b) return ctext(keyf(a)) < ctext(keyf(b)) end)
  return arr
end

-- Normal form of a petrel value: i64 as decimal text, double as number,
-- binary as {hex=}, sets as sorted arrays, maps as sorted {k, v} pairs,
-- structs as tables of their set fields, enums as integers.
function M.normal(defs, tstr, v)
  local function conv(node, x)
    node = resolve(defs, node)
    if node.base then
      local b = node.base
      if b == "i64" then return i64_text(x) end
      if b == "binary" then return { hex = hex(x) } end
      if b == "double" then return tonumber(x) end
      if b == "i8" or b == "i16" or b == "i32" then return tonumber(x) end
      return x
    elseif node.def then
      local d = node.def
      if d.kind == "enum" then
        if type(x) == "string" then return d.values[x] end
        return tonumber(x)
      end
      local out = {}
      for _, f in ipairs(d.fields) do
        if x[f.name] ~= nil then out[f.name] = conv(parse(f.type), x[f.name]) end
      end
      return out
    elseif node.container == "list" then
      local out = {}
      for i = 1, #x do out[i] = conv(node.args[1], x[i]) end
      return out
    elseif node.container == "set" then
      local out = {}
      for i = 1, #x do out[i] = conv(node.args[1], x[i]) end
      return sorted(out, function(e) return e end)
    else
      local out = {}
      for k, val in pairs(x) do
        out[#out + 1] = { conv(node.args[1], k), conv(node.args[2], val) }
      end
      return sorted(out, function(e) return e[1] end)
    end
  end
  return conv(parse(tstr), v)
end

-- Normal form of pyinterop's canonical JSON (as decoded by lua-cjson).
function M.normal_py(defs, tstr, j)
  local function conv(node, x)
    node = resolve(defs, node)
    if node.base then
      local b = node.base
      if b == "i64" then return type(x) == "string" and x or string.format("%.0f", x) end
      if b == "double" then return tonumber(x) end
      if b == "binary" then return { hex = x.hex } end
      return x
    elseif node.def then
      local d = node.def
      if d.kind == "enum" then return x end
      local out = {}
      for _, f in ipairs(d.fields) do
        if x[f.name] ~= nil then out[f.name] = conv(parse(f.type), x[f.name]) end
      end
      return out
    elseif node.container == "list" or node.container == "set" then
      local out = {}
      for i = 1, #x do out[i] = conv(node.args[1], x[i]) end
      if node.container == "set" then sorted(out, function(e) return e end) end
      return out
    else
      local out = {}
      for i = 1, #x do
        out[i] = { conv(node.args[1], x[i][1]), conv(node.args[2], x[i][2]) }
      end
      return sorted(out, function(e) return e[1] end)
    end
  end
  return conv(parse(tstr), j)
end

-- Canonical JSON text (pyinterop --encode input) of a petrel value.
local function jstr(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    local m = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
    return m[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

function M.to_json(defs, tstr, v)
  local function conv(node, x)
    node = resolve(defs, node)
    if node.base then
      local b = node.base
      if b == "i64" then return jstr(i64_text(x)) end
      if b == "double" then return jstr(string.format("%.17g", x)) end
      if b == "binary" then return '{"hex":' .. jstr(hex(x)) .. "}" end
      if b == "string" then return jstr(x) end
      if b == "bool" then return x and "true" or "false" end
      return string.format("%d", x)
    elseif node.def then
      local d = node.def
      if d.kind == "enum" then
        return string.format("%d", type(x) == "string" and d.values[x] or x)
      end
      local parts = {}
      for _, f in ipairs(d.fields) do
        if x[f.name] ~= nil then
          parts[#parts + 1] = jstr(f.name) .. ":" .. conv(parse(f.type), x[f.name])
        end
      end
      return "{" .. table.concat(parts, ",") .. "}"
    elseif node.container == "list" or node.container == "set" then
      local parts = {}
      for i = 1, #x do parts[i] = conv(node.args[1], x[i]) end
      return "[" .. table.concat(parts, ",") .. "]"
    else
      local parts = {}
      for k, val in pairs(x) do
        parts[#parts + 1] = "[" .. conv(node.args[1], k) .. "," .. conv(node.args[2], val) .. "]"
      end
      return "[" .. table.concat(parts, ",") .. "]"
    end
  end
  return conv(parse(tstr), v)
end

-- Deep equality of two normal forms.
function M.equal(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then
    if type(a) == "number" and a ~= a then return b ~= b end
    return a == b
  end
  for k, x in pairs(a) do
    if not M.equal(x, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

-- A random value of type tstr (rnd(n) -> 0..n-1). Optional fields are set
-- about half the time; recursion stops at depth 4 by leaving optional
-- fields out.
function M.random(defs, tstr, rnd, depth)
  depth = depth or 0
  local function i64v()
    local hi, lo = rnd(2147483647) - 1073741823, rnd(65536) * 65536 + rnd(65536)
    if is_jit then
      return loadstring("return " .. hi .. "LL * 4294967296LL + " .. lo)()
    end
    return hi * 4294967296 + lo
  end
  local function gen(node, d)
    node = resolve(defs, node)
    if node.base then
      local b = node.base
      if b == "bool" then return rnd(2) == 1 end
      if b == "i8" then return rnd(256) - 128 end
      if b == "i16" then return rnd(65536) - 32768 end
      if b == "i32" then return rnd(2147483647) - 1073741824 end
      if b == "i64" then return i64v() end
      if b == "double" then return (rnd(2000001) - 1000000) / 64 end
      if b == "uuid" then
        local h = {}
        for i = 1, 32 do h[i] = string.format("%x", rnd(16)) end
        local s = table.concat(h)
        return s:sub(1, 8) .. "-" .. s:sub(9, 12) .. "-" .. s:sub(13, 16) .. "-"
          .. s:sub(17, 20) .. "-" .. s:sub(21)
      end
      local t = {}
      for i = 1, rnd(12) do
        t[i] = b == "binary" and string.char(rnd(256)) or string.char(32 + rnd(95))
      end
      if b == "string" and rnd(3) == 0 then t[#t + 1] = "é日本" end
      return table.concat(t)
    elseif node.def then
      local dd = node.def
      if dd.kind == "enum" then
        local names = {}
        for k in pairs(dd.values) do names[#names + 1] = k end
        table.sort(names)
        return dd.values[names[rnd(#names) + 1]]
      end
      local out = {}
      if dd.kind == "union" then
        local f = dd.fields[rnd(#dd.fields) + 1]
        if d < 4 or not f.type:find("^[%u]") then out[f.name] = gen(parse(f.type), d + 1) end
        return out
      end
      for _, f in ipairs(dd.fields) do
        local optional = f.required == "optional"
        -- fields with defaults are always set: petrel would write the
        -- default for a missing one, and the comparison would differ
        if f.required == "required" or (not optional and (d < 4 or f.default ~= nil))
          or (optional and d < 4 and rnd(2) == 0) then
          out[f.name] = gen(parse(f.type), d + 1)
        end
      end
      return out
    elseif node.container == "list" then
      local t = {}
      if d < 5 then for i = 1, rnd(4) do t[i] = gen(node.args[1], d + 1) end end
      return t
    elseif node.container == "set" then
      local t, seen = {}, {}
      if d < 5 then
        for _ = 1, rnd(4) do
          local x = gen(node.args[1], d + 1)
          local key = ctext(x)
          if not seen[key] then seen[key] = true; t[#t + 1] = x end
        end
      end
      return t
    else
      local t, seen = {}, {}
      if d < 5 then
        for _ = 1, rnd(4) do
          local k = gen(node.args[1], d + 1)
          local key = type(k) == "table" and ctext(k) or (type(k) == "cdata" and i64_text(k)) or k
          if type(k) ~= "table" and not seen[key] and k == k then
            seen[key] = true
            t[k] = gen(node.args[2], d + 1)
          end
        end
      end
      return t
    end
  end
  return gen(parse(tstr), depth)
end

return M
