-- The Lua side of fuzz_decode.c in mode "view" (make fuzz FUZZ_TARGET=view):
-- every input is viewed as struct types of fuzz/fuzz_decode.lua's schemas
-- (four per protocol, picked by a generator seeded from the input), in
-- Binary and in Compact, with a decode option set picked by the
-- input's last byte, and read along random paths (fields, elements, map
-- entries, #, has, pairs, ipairs, bytes, decode, with, encode of the view)
-- chosen by a generator seeded from the input.
--
-- Checked: nothing crashes or trips a sanitizer; every raise names the
-- path from the root type and an offset inside the input. Where T:decode
-- accepts the input, no read raises, v:decode() equals the decoded value,
-- v:bytes() is the decoded span, encode of the view in the same protocol
-- gives those bytes and in the other protocol bytes that decode to the same
-- value (or raises "cannot be transcoded": see check). Where T:decode refuses it, v:decode() refuses it too. Views of a
-- buffer and of a message read the same; after release / expire every view
-- kept raises "view expired". Memory stays within twice the bound
-- fuzz_decode.c sets per input byte (a view's index and one v:decode()).
local mem_mark, mem_growth, PER_BYTE, SLACK = ...
local A, types = loadfile("fuzz/fuzz_decode.lua")(nil, nil, nil, nil, "schemas")
local petrel = require "petrel"
local core = require "petrel.core"
local V = petrel.view
local ARRAY_MT = getmetatable(petrel.array("i8", 0))

local ns = {} -- type name -> type, for struct views met on the way
for _, tc in ipairs(types) do ns[tc[1]:name()] = tc[1] end
for _, n in ipairs({ "All", "N", "P", "U", "X", "In", "Lists", "Sets", "Maps", "Deep",
  "Defaults", "Wide", "WL", "Empty", "One" }) do ns[n] = A[n] end

local opts = { {}, { enum_names = true }, { int64_as_string = true }, { max_depth = 3 },
  { typed = true, unknown = true }, { max_depth = 1 } }

-- canonical text of a decoded value (keys sorted; typed arrays as lists)
local function norm(v)
  local t = type(v)
  if t == "number" then
    if v ~= v then return "nan" end
    if math.type(v) == "integer" then return string.format("%d", v) end
    return string.format("%.17g", v)
  end
  if t == "string" then return string.format("%q", v) end
  if t == "userdata" and getmetatable(v) == ARRAY_MT then
    local p = {}
    for i = 1, #v do p[i] = norm(v[i]) end
    return "[" .. table.concat(p, ",") .. "]"
  end
  if t ~= "table" then return tostring(v) end
  local mt = getmetatable(v)
  if mt == petrel.list or mt == petrel.set then
    local p = {}
    for i = 1, #v do p[i] = norm(v[i]) end
    return "[" .. table.concat(p, ",") .. "]"
  end
  local p = {}
  for k, x in pairs(v) do
    if k ~= petrel.unknown then p[#p + 1] = norm(k) .. "=" .. norm(x) end
  end
  table.sort(p)
  return "{" .. table.concat(p, ",") .. "}"
end

local function fail(T, proto, fmt, ...)
  error(("%s (%s): "):format(T:name(), proto) .. fmt:format(...), 0)
end

-- the generator: xorshift64 seeded from the input
local state = 1
local function seed(s)
  local h = 0x9e3779b97f4a7c15 ~ #s
  for i = 1, math.min(#s, 256) do h = (h ~ s:byte(i)) * 0x100000001b3 end
  state = h ~= 0 and h or 1
end
local function rnd(n) -- 1..n
  local x = state
  x = x ~ (x << 13)
  x = x ~ (x >> 7)
  x = x ~ (x << 17)
  state = x
  return (x >> 1) % n + 1
end

-- One random path from root, at most `steps` reads; views met are kept in
-- keep (to check expiry), raises in errs.
local function walk(root, steps, errs, keep)
  local cur = root
  local function try(f, ...)
    local ok, r = pcall(f, ...)
    if not ok then errs[#errs + 1] = tostring(r) return nil end
    return r
  end
  for _ = 1, steps do
    if not V.is(cur) then cur = root end
    keep[#keep + 1] = cur
    local ty = V.type(cur)
    local kind = ty:match("^(%a+)<")
    local a = rnd(16)
    local nxt
    if a == 1 then try(V.bytes, cur)
    elseif a == 2 then
      try(function()
        local x, e = V.decode(cur)
        if x == nil then error(e, 0) end
      end)
    elseif a == 3 then try(V.span, cur)
    elseif a == 4 then try(function() return #cur end)
    elseif a == 5 then
      try(function() for _, e in V.pairs(cur) do nxt = e end end)
    elseif a == 6 and kind ~= "map" and kind then
      try(function() for _, e in V.ipairs(cur) do nxt = e end end)
    elseif a == 7 and not kind then try(V.with, cur, {})
    elseif a == 8 then cur = root
    elseif kind == "list" or kind == "set" then
      local n = try(function() return #cur end)
      if n then nxt = try(function() return cur[rnd(n + 2) - 1] end) end
    elseif kind == "map" then
      local want, i = rnd(4), 0
      try(function()
        for k, e in V.pairs(cur) do
          i = i + 1
          if i == want then
            nxt = e
            if type(k) ~= "table" and not V.is(k) then
              V.has(cur, k)
              nxt = cur[k]
            end
            break
          end
        end
      end)
    else
      local T = ns[ty]
      if T then
        local fs = T:fields()
        local f = fs[rnd(#fs + 1)]
        if f then
          if rnd(4) == 1 then try(V.has, cur, f.name) end
          nxt = try(function() return cur[f.name] end)
        end
      end
    end
    if nxt ~= nil then cur = nxt end
  end
end

local function check_errors(T, proto, errs, len)
  for _, e in ipairs(errs) do
    local off = e:match(" at offset (%d+)$")
    if not off or tonumber(off) > len then fail(T, proto, "no offset in the input: %s", e) end
    if e:sub(1, #T:name()) ~= T:name() then fail(T, proto, "no path from the root: %s", e) end
  end
end

local function check_expired(T, proto, keep, what)
  for _, x in ipairs(keep) do
    local ok, e = pcall(function() return #x end)
    if ok or not tostring(e):find("view expired", 1, true) then
      fail(T, proto, "a view read after %s: %s", what, tostring(e))
    end
    ok, e = pcall(V.bytes, x)
    if ok or not tostring(e):find("view expired", 1, true) then
      fail(T, proto, "bytes read after %s", what)
    end
  end
end

local function check(T, s, proto, o)
  local vo = { protocol = proto }
  for k, x in pairs(o) do vo[k] = x end
  local d, nxt = T:decode(s, 1, vo)
  mem_mark() -- the view, its reads and one v:decode()
  local v = assert(T:view(s, 1, vo))
  local errs, keep = {}, {}
  for _ = 1, 4 do walk(v, 12, errs, keep) end
  local ok, vd, verr = pcall(V.decode, v)
  if not ok then errs[#errs + 1] = tostring(vd)
  elseif vd == nil then errs[#errs + 1] = tostring(verr) end
  ok = ok and vd ~= nil
  if mem_growth() > 2 * PER_BYTE * #s + 4 * SLACK then -- garbage of the walk included
    fail(T, proto, "viewing %d bytes allocated %d", #s, mem_growth())
  end
  check_errors(T, proto, errs, #s)
  if d ~= nil then
    if #errs > 0 then fail(T, proto, "decode accepts, a view read raised: %s", errs[1]) end
    if norm(vd) ~= norm(d) then fail(T, proto, "v:decode() differs from decode") end
    local span = s:sub(1, nxt - 1)
    if V.bytes(v) ~= span then fail(T, proto, "v:bytes() is not the decoded span") end
    if T:encode(v, nil, vo) ~= span then fail(T, proto, "encode of the view differs") end
    local other = { protocol = proto == "binary" and "compact" or "binary" }
    for k, x in pairs(o) do other[k] = x end
    local ok2, tb = pcall(T.encode, T, v, nil, other)
    if ok2 then
      local d2, e2 = T:decode(tb, 1, other)
      if not d2 then fail(T, proto, "transcoded view does not decode: %s", e2) end
      if norm(d2) ~= norm(d) then fail(T, proto, "transcoded view decodes differently") end
    elseif not tostring(tb):find("cannot be transcoded", 1, true) then
      -- (the transcoder is stricter than decode's skipper about fields
      -- decode skips: an out-of-range i16 varint, field id 0; a clear
      -- error, not a wrong encoding)
      fail(T, proto, "a view that decodes does not transcode: %s", tb)
    end
  elseif ok then
    fail(T, proto, "decode refuses, v:decode() accepts")
  end
  return d
end

return function(s)
  seed(s)
  local o = #s > 0 and opts[s:byte(-1) % #opts + 1] or {}
  for _, proto in ipairs({ "binary", "compact" }) do
    -- four of the types per input and protocol (picked by the generator):
    -- more inputs a second than viewing each as every type
    for _ = 1, 4 do check(types[rnd(#types)][1], s, proto, o) end
    -- views of a buffer (block pinned) and of a message, then their end
    local T = types[rnd(#types)][1]
    local vo = { protocol = proto }
    local b = petrel.buffer(s)
    local bv = assert(T:view(b, 1, vo))
    local errs, keep = {}, {}
    walk(bv, 16, errs, keep)
    check_errors(T, proto, errs, #s)
    b:clear()
    V.release(bv)
    check_expired(T, proto, keep, "release")
    local m = core.message()
    m:take(petrel.buffer(s), #s)
    local mv = assert(T:view(m, 1, vo))
    errs, keep = {}, {}
    walk(mv, 16, errs, keep)
    check_errors(T, proto, errs, #s)
    m:expire()
    check_expired(T, proto, keep, "expire")
  end
end
