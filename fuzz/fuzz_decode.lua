-- The Lua side of fuzz_decode.c: schemas, options and the checks run on
-- every input (see the C file for what is checked). Also a script:
--   lua5.4 fuzz/fuzz_decode.lua seeds DIR [binary|compact]
-- writes encodings of random valid values of every type to DIR (the seed
-- corpus, with the workload messages), including a few hostile shapes.
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
local args = { ... }
local seeding = args[1] == "seeds"
if seeding then
  package.cpath = (os.getenv("PETREL_BUILD") or "build") .. "/lua5.4/?.so;" .. package.cpath
end

local petrel = require "petrel"
local core = require "petrel.core"
local W = require "bench.workload"

local wide = {}
for i = 1, 40 do wide[i] = { i, "f" .. i, i % 2 == 0 and "i32" or "string", "optional" } end

local defs = {
  E = petrel.enum { A = 1, B = 2, Z = -7 },
  In = petrel.struct { {1, "n", "i32"}, {2, "s", "string", "optional"} },
  N = petrel.struct { {1, "v", "i64"}, {2, "kids", "list<N>", "optional"},
    {3, "by", "map<string,N>", "optional"}, {4, "peer", "P", "optional"} },
  P = petrel.struct { {1, "node", "N", "optional"}, {2, "tag", "string"} },
  U = petrel.union { {1, "i", "i32"}, {2, "s", "string"}, {3, "in", "In"},
    {4, "us", "list<U>"} },
  X = petrel.exception { {1, "message", "string"}, {2, "code", "i32"} },
  All = petrel.struct { {1, "b", "bool"}, {2, "y", "byte"}, {3, "y8", "i8"},
    {4, "h", "i16"}, {5, "i", "i32"}, {6, "l", "i64"}, {7, "d", "double"},
    {8, "s", "string"}, {9, "bin", "binary"}, {10, "u", "uuid"}, {11, "e", "E"},
    {12, "in", "In"}, {13, "ls", "list<string>"}, {14, "st", "set<i64>"},
    {15, "m", "map<string,list<In>>"}, {16, "n", "N"}, {17, "un", "U"},
    {18, "r", "i32", "required"}, {19, "dv", "i16", default = 5},
    {20, "ld", "list<double>"}, {21, "x", "X"}, {-3, "neg", "i16", "optional"} },
  Lists = petrel.struct { {1, "b", "list<bool>"}, {2, "y", "list<i8>"},
    {3, "h", "list<i16>"}, {4, "i", "list<i32>"}, {5, "l", "list<i64>"},
    {6, "d", "list<double>"}, {7, "u", "list<uuid>"}, {8, "bin", "list<binary>"},
    {9, "e", "list<E>"}, {10, "ll", "list<list<i32>>"},
    {11, "lm", "list<map<string,i64>>"}, {12, "ls", "list<set<i16>>"},
    {13, "ty", "list<i64>", typed = true}, {14, "ts", "set<i32>", typed = true},
    {15, "t8", "list<i8>", typed = true}, {16, "td", "list<double>", typed = true},
    {17, "t16", "list<i16>", typed = true} },
  Sets = petrel.struct { {1, "s", "set<string>"}, {2, "u", "set<uuid>"},
    {3, "l", "set<i64>"}, {4, "ss", "set<set<i32>>"}, {5, "d", "set<double>"},
    {6, "b", "set<bool>"}, {7, "e", "set<E>"}, {8, "in", "set<In>"} },
  Maps = petrel.struct { {1, "ll", "map<i64,i64>"}, {2, "hd", "map<i16,double>"},
    {3, "by", "map<bool,i8>"}, {4, "ud", "map<uuid,double>"},
    {5, "es", "map<E,string>"}, {6, "is", "map<i32,In>"},
    {7, "mm", "map<string,map<string,In>>"}, {8, "sk", "map<In,i32>"},
    {9, "lk", "map<list<i32>,string>"}, {10, "ds", "map<double,set<string>>"},
    {11, "bb", "map<binary,bool>"} },
  Deep = petrel.struct { {1, "l5", "list<list<list<list<list<i32>>>>>"},
    {2, "mix", "map<string,list<map<string,set<string>>>>"} },
  Defaults = petrel.struct { {1, "a", "i32", default = 5},
    {2, "l", "list<i32>", default = {1, 2, 3}},
    {3, "m", "map<string,i32>", default = {x = 1}},
    {4, "s", "string", "required"}, {5, "e", "E", default = 2} },
  Wide = petrel.struct(wide),
  WL = petrel.struct { {1, "w", "list<Wide>"}, {2, "m", "map<i8,Wide>"} },
  Empty = petrel.struct {},
  One = petrel.struct { {1, "l", "list<i32>"} },
}
local A = petrel.schema(defs)

-- type, canonical output (no map keys in pairs order), container defaults
-- (decode adds those whatever max_depth says: re-encode with the default)
local types = { {W.Request, true}, {W.MyTest, true}, {W.Blob, true},
  {W.Vectors, true}, {W.Base, true}, {A.All, true}, {A.N, true}, {A.U, true},
  {A.X, true}, {A.Lists, true}, {A.Sets, true}, {A.Maps, false},
  {A.Deep, true}, {A.Defaults, true, true}, {A.WL, false}, {A.Empty, true},
  {A.One, true} }
local opts = { { typed = true }, { unknown = true }, { enum_names = true },
  { max_depth = 1 }, { max_depth = 2 }, { max_depth = 4 }, { max_depth = 8 },
  { typed = true, unknown = true, enum_names = true, max_depth = 200 },
  { unknown = true, max_depth = 3 } }

-- ---- seeds: random valid values from the type strings ----------------------

local function split2(s) -- "K,V" at the top level
  local depth = 0
  for i = 1, #s do
    local ch = s:sub(i, i)
    if ch == "<" then depth = depth + 1
    elseif ch == ">" then depth = depth - 1
    elseif ch == "," and depth == 0 then return s:sub(1, i - 1), s:sub(i + 1) end
  end
end

local rnd = math.random
local value
local function struct_value(name, depth)
  local v = {}
  for _, f in ipairs(defs[name].fields) do
    local req = f.required == "required"
    if req or (depth < 6 and rnd() < 0.7) or (depth >= 6 and not f.type:find("[<A-Z]")) then
      v[f.name] = value(f.type, depth + 1)
    end
  end
  if defs[name].kind == "union" then -- at most one field
    local k = next(v)
    v = k and { [k] = v[k] } or {}
  end
  return v
end
function value(t, depth)
  local inner = t:match("^%a+<(.*)>$")
  local n = depth < 6 and rnd(0, 4) or 0
  if t:find("^list<") or t:find("^set<") then
    local out = {}
    for i = 1, n do out[i] = value(inner, depth + 1) end
    return out
  elseif t:find("^map<") then
    local k, v = split2(inner)
    local out = {}
    for _ = 1, n do
      local key = value(k, depth + 1)
      if key == key then out[key] = value(v, depth + 1) end
    end
    return out
  elseif t == "bool" then return rnd() < 0.5
  elseif t == "byte" or t == "i8" then return rnd(-128, 127)
  elseif t == "i16" then return rnd(-32768, 32767)
  elseif t == "i32" then return rnd(-2 ^ 31, 2 ^ 31 - 1)
  elseif t == "i64" then return rnd(math.mininteger, math.maxinteger)
  elseif t == "double" then return (rnd() - 0.5) * 10 ^ rnd(-300, 300)
  elseif t == "string" or t == "binary" then
    return ("abcdefgh"):sub(1, rnd(0, 8)):rep(rnd(1, 3))
  elseif t == "uuid" then return ("%08x-0000-4000-8000-%012x"):format(rnd(0, 2 ^ 31), rnd(0, 2 ^ 40))
  elseif t == "E" then return ({ 1, 2, -7 })[rnd(1, 3)]
  end
  return struct_value(t, depth)
end

if seeding then
  local dir = assert(args[2], "usage: fuzz_decode.lua seeds DIR [binary|compact]")
  local so = { protocol = args[3] or "binary" }
  math.randomseed(12345)
  local n = 0
  local function put(s)
    n = n + 1
    local f = assert(io.open(("%s/seed-%03d.bin"):format(dir, n), "wb"))
    f:write(s)
    f:close()
  end
  for _, name in ipairs({ "All", "N", "P", "U", "X", "Lists", "Sets", "Maps", "Deep",
                         "Defaults", "WL", "One", "In", "Empty" }) do
    for _ = 1, 6 do put(A[name]:encode(struct_value(name, 0), so)) end
  end
  -- shapes that stress allocation: many tiny values, deep recursion
  local empties = {}
  for i = 1, 4000 do empties[i] = {} end
  put(A.WL:encode({ w = empties }, so))
  local chain = { v = 1 }
  for _ = 1, 30 do chain = { v = 2, kids = { chain } } end
  put(A.N:encode(chain, so))
  local lists = {}
  for i = 1, 3000 do lists[i] = {} end
  put(A.Lists:encode({ ll = lists, ls = lists }, so))
  for _, w in ipairs({ "small", "medium", "mytest", "vectors", "blob" }) do
    local f = io.open("bench/data/" .. w .. ".bin", "rb")
    if f then
      local T = ({ small = W.Request, medium = W.Request, mytest = W.MyTest,
        vectors = W.Vectors, blob = W.Blob })[w]
      put(T:encode(T:decode(f:read("*a")), so):sub(1, 65536))
      f:close()
    end
  end
  print(("fuzz_decode.lua: %d seeds in %s"):format(n, dir))
  return
end

-- ---- the checks ------------------------------------------------------------

local mem_mark, mem_growth, PER_BYTE, SLACK, MODE = ...
MODE = MODE or "binary"
local PROTO = MODE == "compact" and "compact" or "binary"

-- fuzz/fuzz_view.lua loads this file for its schemas
if MODE == "schemas" then return A, types, W end

local function fail(T, fmt, ...) error(T:name() .. ": " .. fmt:format(...), 0) end

-- o with the protocol of this run
local function with_proto(o, proto)
  local r = { protocol = proto }
  for k, v in pairs(o or {}) do r[k] = v end
  return r
end

local function check(T, canon, s, pos, o, cdefaults)
  o = with_proto(o, PROTO)
  mem_mark()
  local v, nxt = T:decode(s, pos, o)
  local grew = mem_growth()
  if grew > PER_BYTE * #s + SLACK then
    fail(T, "decoding %d bytes allocated %d", #s, grew)
  end
  if type(s) ~= "string" then s = tostring(s) end
  if v == nil then
    if type(nxt) ~= "string" then fail(T, "no error message") end
    local off = nxt:match(" at offset (%d+)$")
    if not off or tonumber(off) > #s or nxt:sub(1, #T:name()) ~= T:name() then
      fail(T, "bad error message %q", nxt)
    end
    return
  end
  if math.type(nxt) ~= "integer" or nxt <= pos or nxt > #s + 1 then
    fail(T, "bad next position %s", tostring(nxt))
  end
  local k = core.skip(s, pos, 12, 1000, PROTO)
  if k ~= nxt then fail(T, "decode ends at %d, skip at %s", nxt, tostring(k)) end
  if cdefaults and o.max_depth then
    o = { typed = o.typed, unknown = o.unknown, enum_names = o.enum_names, protocol = PROTO }
  end
  local ok, b1 = pcall(T.encode, T, v, nil, o)
  if not ok then
    if not b1:find("fields set, at most one allowed", 1, true) then
      fail(T, "decoded value does not encode: %s", b1)
    end
    return
  end
  local v2, n2 = T:decode(b1, 1, o)
  if not v2 then fail(T, "re-encoded value does not decode: %s", n2) end
  if n2 ~= #b1 + 1 then fail(T, "re-encoded value decodes short") end
  if canon and T:encode(v2, nil, o) ~= b1 then fail(T, "second encoding differs") end
end

-- ---- differential: Binary against Compact ------------------------------------

-- Deep equality of decoded values (NaN equals NaN; typed arrays and int64
-- cdata by value).
local function same(a, b, depth)
  if a == b then return true end
  if type(a) == "number" and type(b) == "number" then return a ~= a and b ~= b end
  if type(a) ~= "table" or type(b) ~= "table" or depth > 300 then return false end
  if getmetatable(a) ~= getmetatable(b) then return false end
  local used, na, nb = {}, 0, 0
  for k, v in pairs(a) do
    na = na + 1
    if type(k) ~= "table" then
      if not same(v, b[k], depth + 1) then return false end
    else -- struct / container keys: equal by value, each matched once
      local found = false
      for kb, vb in pairs(b) do
        if type(kb) == "table" and not used[kb] and same(k, kb, depth + 1) and
          same(v, vb, depth + 1) then
          used[kb], found = true, true
          break
        end
      end
      if not found then return false end
    end
  end
  for _ in pairs(b) do nb = nb + 1 end
  return na == nb
end

-- The input decoded in protocol `from`, made canonical (encoded and decoded
-- again), then encoded in both protocols: each decodes to the same value.
local function diff(T, s, from, o, canon)
  local ofrom = with_proto(o, from)
  local v = T:decode(s, 1, ofrom)
  if v == nil then return end
  local ok, b0 = pcall(T.encode, T, v, nil, ofrom)
  if not ok then return end -- a union with several fields: encode refuses
  local v1 = assert(T:decode(b0, 1, ofrom))
  local ob, oc = with_proto(o, "binary"), with_proto(o, "compact")
  local bb, bc = T:encode(v1, nil, ob), T:encode(v1, nil, oc)
  local vb, eb = T:decode(bb, 1, ob)
  local vc, ec = T:decode(bc, 1, oc)
  if not vb then fail(T, "binary re-decode fails: %s", eb) end
  if not vc then fail(T, "compact re-decode fails: %s", ec) end
  if not same(vb, vc, 0) then fail(T, "decode(Binary) and decode(Compact) differ (from %s)", from) end
  if T:size(v1, ob) ~= #bb or T:size(v1, oc) ~= #bc then fail(T, "size disagrees with encode") end
  -- Compact round trip is stable
  if canon and T:encode(vc, nil, oc) ~= bc then
    fail(T, "compact re-encoding differs")
  end
end

-- no unknown fields here: kept bytes are compared in the compact mode
local dopts = { {}, { typed = true }, { enum_names = true }, { int64_as_string = true },
  { typed = true, enum_names = true, int64_as_string = true } }

if MODE == "diff" then
  return function(s)
    local o = #s > 0 and dopts[s:byte(-1) % #dopts + 1] or {}
    for _, tc in ipairs(types) do
      local T, canon = tc[1], tc[2]
      diff(T, s, "binary", o, canon)
      diff(T, s, "compact", o, canon)
    end
  end
end

return function(s)
  local o = #s > 0 and opts[s:byte(-1) % #opts + 1] or nil
  for _, tc in ipairs(types) do
    local T, canon, cd = tc[1], tc[2], tc[3]
    check(T, canon, s, 1, nil, cd)
    check(T, canon, s, 1, o, cd)
    if #s > 2 then check(T, canon, s, 3, nil, cd) end
  end
  local b = petrel.buffer(s)
  check(A.All, true, b, 1, o)
  check(W.Request, true, b, 1, nil)
  for t = 0, 17 do
    local k = core.skip(s, 1, t, nil, PROTO)
    if k and (k < 1 or k > #s + 1) then error("skip out of the input") end
    core.skip(s, 1, t, 3, PROTO)
  end
end
