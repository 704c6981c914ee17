-- petrel.options: option tables checked when a server or client is made,
-- so a typo or a bad value is an error naming the option at creation time,
-- not a failure deep inside the loop. A spec maps each known option to a
-- check; a check returns true, or the text of what it expected.
local M = {}

-- A value as messages show it: numbers and booleans as they are, strings
-- quoted after their type, other types by name.
local function show(v)
  local t = type(v)
  if t == "string" then return string.format("string %q", v) end
  if t == "number" or t == "boolean" or t == "nil" or t == "cdata" then return tostring(v) end
  return t
end
M.show = show

-- An integer-valued number (either runtime; floats with no fraction too).
local function integral(v)
  return type(v) == "number" and v == math.floor(v) and v - v == 0
end
M.integral = integral

-- ---- checks ------------------------------------------------------------------

-- milliseconds: a number >= 0
function M.ms(v)
  return (type(v) == "number" and v >= 0 and v - v == 0) or "a number of milliseconds >= 0"
end

-- an integer >= min
function M.int(min)
  local want = "an integer >= " .. min
  return function(v) return (integral(v) and v >= min) or want end
end

-- one of the given strings
function M.oneof(...)
  local ok, names = {}, {}
  for i, s in ipairs({ ... }) do ok[s] = true; names[i] = string.format("%q", s) end
  local want = "one of " .. table.concat(names, ", ")
  return function(v) return ok[v] == true or want end
end

function M.bool(v) return type(v) == "boolean" or "true or false" end
function M.string(v) return type(v) == "string" or "a string" end
function M.func(v) return type(v) == "function" or "a function" end
function M.table(v) return type(v) == "table" or "a table" end
function M.func_or_false(v) return type(v) == "function" or v == false or "a function or false" end
function M.port(v) return (integral(v) and v >= 0 and v <= 65535) or "a port number (0..65535)" end

-- a compiled service (ns.Name from petrel.schema or petrel.load)
function M.service(v)
  return (type(v) == "table" and type(v.functions) == "table" and type(v.name) == "string")
    or "a compiled service (ns.Name from petrel.schema or petrel.load)"
end

-- a service registry (petrel.etcd{...}, or any table with register /
-- resolver methods)
function M.registry(v)
  return (type(v) == "table" and type(v.register) == "function")
    or "a registry (petrel.etcd{ endpoints = {...} })"
end

-- a petrel loop
function M.loop(v)
  return (type(v) == "table" and type(v.c) == "userdata") or "a petrel loop (petrel.loop())"
end

-- ---- checking a table ----------------------------------------------------------

-- Edit distance of a and b, for "did you mean".
local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

-- check(who, spec, opts [, level]): raise "who: unknown option 'k' (did you
-- mean 'x'?)" or "who: option 'k' must be <what>, got <v>" for the first
-- problem (options in sorted order, so the message is stable).
function M.check(who, spec, opts, level)
  level = (level or 1) + 1
  if type(opts) ~= "table" then error(who .. ": options table expected", level) end
  local keys = {}
  for k in pairs(opts) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(keys) do
    local chk = spec[k]
    if not chk then
      local best, bd
      if type(k) == "string" then
        for name in pairs(spec) do
          local d = distance(k, name)
          if d <= 2 and (not bd or d < bd or d == bd and name < best) then best, bd = name, d end
        end
      end
      error(string.format("%s: unknown option '%s'%s", who, tostring(k),
        best and (" (did you mean '" .. best .. "'?)") or ""), level)
    end
    local ok = chk(opts[k])
    if ok ~= true then
      error(string.format("%s: option '%s' must be %s, got %s", who, k, ok, show(opts[k])), level)
    end
  end
end

return M
