-- Message views (T:view): reading a message where it lies agrees with
-- T:decode on the canonical messages and on random values of every type,
-- in Binary and Compact; bad bytes give errors with a path and an offset;
-- views are written by encode as their bytes; with splices; lifetime
-- (expiry, retain, release, pins in the pool stats). On Lua 5.4 and
-- LuaJIT. The RPC side (lazy servers and clients) is in rpc_view_spec.lua.
local petrel = require "petrel"
local core = require "petrel.core"
local W = require "bench.workload"
local canon = require "support.canon"
local slurp = require "support.slurp"

local V = petrel.view
local is_jit = jit ~= nil
local C = { protocol = "compact" }
local DATA = "bench/data/"
local ARRAY_MT = getmetatable(petrel.array("i8", 0))

local wide = {}
for i = 1, 40 do wide[i] = { i, "f" .. i, i % 2 == 0 and "i32" or "string", "optional" } end
local A = petrel.schema {
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
    {20, "ld", "list<double>"}, {21, "x", "X"}, {-3, "neg", "i16", "optional"},
    {22, "t", "bool"} },
  Lists = petrel.struct { {1, "b", "list<bool>"}, {2, "y", "list<i8>"},
    {3, "h", "list<i16>"}, {4, "i", "list<i32>"}, {5, "l", "list<i64>"},
    {6, "d", "list<double>"}, {7, "u", "list<uuid>"}, {8, "bin", "list<binary>"},
    {9, "e", "list<E>"}, {10, "ll", "list<list<i32>>"},
    {11, "lm", "list<map<string,i64>>"}, {12, "ls", "list<set<i16>>"},
    {13, "ty", "list<i64>", typed = true}, {14, "ts", "set<i32>", typed = true} },
  Sets = petrel.struct { {1, "s", "set<string>"}, {2, "u", "set<uuid>"},
    {3, "l", "set<i64>"}, {4, "ss", "set<set<i32>>"}, {5, "d", "set<double>"},
    {6, "b", "set<bool>"}, {7, "e", "set<E>"}, {8, "in", "set<In>"} },
  Maps = petrel.struct { {1, "ll", "map<i64,i64>"}, {2, "hd", "map<i16,double>"},
    {3, "by", "map<bool,i8>"}, {4, "ud", "map<uuid,double>"},
    {5, "es", "map<E,string>"}, {6, "is", "map<i32,In>"},
    {7, "mm", "map<string,map<string,In>>"}, {8, "sk", "map<In,i32>"},
    {9, "lk", "map<list<i32>,string>"}, {10, "ds", "map<double,set<string>>"},
    {11, "bb", "map<binary,bool>"}, {12, "yy", "map<byte,i32>"} },
  Deep = petrel.struct { {1, "l5", "list<list<list<list<list<i32>>>>>"},
    {2, "mix", "map<string,list<map<string,set<string>>>>"} },
  Defaults = petrel.struct { {1, "a", "i32", default = 5},
    {2, "l", "list<i32>", default = {1, 2, 3}},
    {3, "m", "map<string,i32>", default = {x = 1}},
    {4, "s", "string", "required"}, {5, "e", "E", default = 2} },
  Wide = petrel.struct(wide),
  WL = petrel.struct { {1, "w", "list<Wide>"}, {2, "m", "map<i8,Wide>"} },
  Empty = petrel.struct {},
  -- fields named like view methods: data first, methods through petrel.view
  Shadow = petrel.struct { {1, "decode", "i32"}, {2, "bytes", "string"},
    {3, "has", "list<i32>"}, {4, "pairs", "bool"} },
}
local TYPES = { "All", "Lists", "Sets", "Maps", "Deep", "Defaults", "WL", "N",
  "U", "X", "Empty", "Shadow" }

-- ---- comparing -------------------------------------------------------------

-- A canonical text of a decoded value (keys sorted by their text; int64
-- cdata and numbers of one value alike; typed arrays as lists).
local function norm(v)
  local t = type(v)
  if t == "number" then
    if v ~= v then return "nan" end
    if v == math.floor(v) and math.abs(v) < 2 ^ 63 then return string.format("%d", v) end
    return string.format("%.17g", v)
  end
  if t == "cdata" then return (tostring(v):gsub("U?LL$", "")) end
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

local function same_scalar(a, b)
  return a == b or (type(a) == "number" and type(b) == "number" and a ~= a and b ~= b)
end

-- The entry of decoded map d whose key is k (keys compared by norm: int64
-- cdata keys are table keys by identity on LuaJIT).
local function map_get(d, k)
  if type(k) ~= "table" and type(k) ~= "cdata" then
    local x = d[k]
    if x ~= nil then return x end
  end
  local nk = norm(k)
  for dk, x in pairs(d) do
    if norm(dk) == nk then return x end
  end
end

local function count(t)
  local n = 0
  for k in pairs(t) do if k ~= petrel.unknown then n = n + 1 end end
  return n
end

-- Two reads of one value through a view: equal scalars, or views of the
-- same bytes.
local function shallow(a, b, where)
  if V.is(a) then
    assert(V.is(b) and V.type(a) == V.type(b), where)
    local p1, e1 = V.span(a)
    local p2, e2 = V.span(b)
    assert(p1 == p2 and e1 == e2, where)
  elseif type(a) == "table" then
    assert(norm(a) == norm(b), where)
  elseif not same_scalar(a, b) then
    error(where .. ": " .. tostring(a) .. " ~= " .. tostring(b))
  end
end

-- x, read through the view API (fields, elements, keys, pairs, #, has),
-- agrees with the decoded d; ns resolves struct names.
local function walk(ns, x, d, where, deep)
  if not V.is(x) then
    if type(x) == "table" then -- a default, copied as decode copies it
      assert(norm(x) == norm(d) and x ~= d, where)
    elseif not same_scalar(x, d) then
      error(where .. ": view gave " .. tostring(x) .. ", decode " .. tostring(d))
    end
    return
  end
  assert(d ~= nil, where .. ": view where decode has nothing")
  local ty = V.type(x)
  local kind = ty:match("^(%a+)<")
  if kind == "list" or kind == "set" then
    assert(#x == #d, where .. ": length")
    -- long numeric lists: every element by ipairs below, a sample by index
    local step = (#d > 2000 and not V.is(x[1])) and 97 or 1
    for i = 1, #d, step do walk(ns, x[i], d[i], where .. "[" .. i .. "]", deep) end
    if #d > 0 then walk(ns, x[#d], d[#d], where .. "[" .. #d .. "]", deep) end
    assert(x[#d + 1] == nil and x[0] == nil, where .. ": out of range")
    local n = 0
    for i, e in V.ipairs(x) do
      n = n + 1
      assert(i == n)
      if V.is(e) then
        shallow(e, x[i], where)
      elseif not same_scalar(e, d[i]) then
        error(where .. "[" .. i .. "]: ipairs gave " .. tostring(e))
      end
    end
    assert(n == #d, where .. ": ipairs count")
    if not is_jit then -- Lua 5.4: ipairs and # through the metamethods
      local m = 0
      for i in ipairs(x) do m = i end
      assert(m == #d)
    end
  elseif kind == "map" then
    local n = 0
    for k, e in V.pairs(x) do
      n = n + 1
      local dv = map_get(d, k)
      assert(dv ~= nil, where .. ": key " .. norm(k) .. " not in the decoded map")
      walk(ns, e, dv, where .. "[" .. norm(k) .. "]", deep)
      if type(k) ~= "table" then
        assert(V.has(x, k), where .. ": has " .. norm(k))
        shallow(x[k], e, where .. "[" .. norm(k) .. "]")
      end
    end
    assert(n == count(d), where .. ": map size")
    assert(#x == n)
  else
    local T = ns[ty]
    local got = {}
    for _, f in ipairs(T:fields()) do
      local ok, val = pcall(function() return x[f.name] end)
      if not ok then
        assert(f.required == "required" and d[f.name] == nil, where .. "." .. f.name .. ": " .. tostring(val))
      else
        walk(ns, val, d[f.name], where .. "." .. f.name, deep)
        got[f.name] = val
      end
    end
    local seen = 0
    for k, e in V.pairs(x) do
      seen = seen + 1
      shallow(e, got[k], where .. "." .. k)
    end
    assert(seen == count(d), where .. ": pairs gave " .. seen .. " fields, decode " .. count(d))
  end
  if deep then
    local got = assert(V.decode(x))
    assert(norm(got) == norm(d), where .. ": v:decode() differs")
  end
end

-- Every corner of the view read, errors collected (a raise must name a
-- path from the root and an offset inside the input).
local function touch(x, errs, budget, ns)
  budget.n = budget.n - 1
  if budget.n < 0 or not V.is(x) then return end
  local function try(f, ...)
    local ok, e = pcall(f, ...)
    if not ok then errs[#errs + 1] = tostring(e) end
    return ok, e
  end
  -- each field on its own: those before a cut or a bad byte still read
  local T = ns and ns[V.type(x)]
  if T then
    for _, f in ipairs(T:fields()) do try(function() touch(x[f.name], errs, budget, ns) end) end
  end
  local ty = V.type(x)
  if ty:find("^list<") or ty:find("^set<") then
    try(function() for i = 1, math.min(#x, 8) do touch(x[i], errs, budget, ns) end end)
  end
  try(function() return #x end)
  try(V.bytes, x)
  try(V.decode, x)
  try(V.span, x)
  try(function()
    for k, e in V.pairs(x) do
      touch(e, errs, budget, ns)
    end
  end)
  try(function() return x[1], x[2], x["s"], x[true] end)
end

local function check_errors(errs, root, len)
  for _, e in ipairs(errs) do
    if e ~= "view expired" then
      local off = e:match(" at offset (%d+)$")
      assert(off, "no offset in: " .. e)
      assert(tonumber(off) <= len, "offset past the input in: " .. e)
      assert(e:find("^" .. root), "no path from the root in: " .. e)
    end
  end
end

-- ---- the specs -------------------------------------------------------------

describe("message views", function()
  describe("agree with decode", function()
    for _, w in ipairs({ { "small", "Request" }, { "medium", "Request" }, { "large", "Request" },
      { "mytest", "MyTest" }, { "blob", "Blob" }, { "vectors", "Vectors" } }) do
      local name, tname = w[1], w[2]
      it("on the canonical " .. name .. " message, Binary and Compact", function()
        local T = W[tname]
        local bytes = slurp(DATA .. name .. ".bin")
        local big = #bytes > 100000
        local d = assert(T:decode(bytes))
        local v = T:view(bytes)
        walk(W, v, d, tname, not big)
        assert.equal(bytes, V.bytes(v))
        assert.equal(bytes, T:encode(v))
        local cb = T:encode(d, C)
        local cv = T:view(cb, 1, C)
        walk(W, cv, assert(T:decode(cb, 1, C)), tname, not big)
        assert.equal(cb, V.bytes(cv))
        -- the other protocol's view is transcoded by encode
        assert.equal(bytes, T:encode(cv))
        assert.equal(cb, T:encode(v, C))
        assert.equal("compact", V.protocol(cv))
      end)
    end

    it("on random values of every type, Binary and Compact", function()
      local seed = 7
      local function rnd(n)
        seed = (seed * 1103515245 + 12345) % 2147483648
        return math.floor(seed / 65536) % n
      end
      for _, name in ipairs(TYPES) do
        local T = A[name]
        for i = 1, 25 do
          local val = canon.random(A._defs, name, rnd)
          for _, o in ipairs({ {}, C }) do
            local bytes = T:encode(val, o)
            local d = assert(T:decode(bytes, 1, o))
            local v = T:view(bytes, 1, o)
            walk(A, v, d, name .. " #" .. i, true)
            assert.equal(bytes, V.bytes(v))
            assert.equal(bytes, T:encode(v, o))
          end
        end
      end
    end)

    it("with the decode options: enum names, int64 as text, defaults, positions", function()
      local val = { r = 1, e = 2, l = 9007199254740993, s = "x", st = { 1, 2 },
        m = { k = { { n = 1 } } } }
      if is_jit then val.l = loadstring("return 9007199254740993LL")() end
      local bytes = A.All:encode(val)
      for _, o in ipairs({ { enum_names = true }, { int64_as_string = true }, { typed = true },
        { unknown = true } }) do
        local d = assert(A.All:decode(bytes, 1, o))
        walk(A, A.All:view(bytes, 1, o), d, "All", true)
      end
      local v = A.All:view(bytes, 1, { enum_names = true, int64_as_string = true })
      assert.equal("B", v.e)
      assert.equal("9007199254740993", v.l)
      assert.is_true(V.has(v, "e"))
      assert.is_false(V.has(v, "neg"))
      -- absent fields with defaults read as decode fills them
      local lite = petrel.schema { D = petrel.struct { {4, "s", "string", "required"} } }
      local dv = A.Defaults:view(lite.D:encode { s = "x" })
      assert.is_false(V.has(dv, "a"))
      assert.equal(5, dv.a)
      assert.same({ 1, 2, 3 }, dv.l)
      assert.equal(2, dv.e)
      assert.equal("x", dv.s)
      walk(A, dv, A.Defaults:decode(lite.D:encode { s = "x" }), "Defaults", true)
      -- a view at a position, as decode reads at one
      local two = bytes .. bytes
      local v2 = A.All:view(two, #bytes + 1)
      assert.equal(1, v2.r)
      assert.same({ #bytes + 1, 2 * #bytes + 1 }, { V.span(v2) })
      local nv, err = A.All:view(two, 2 * #bytes + 2)
      assert.is_nil(nv)
      assert.matches("position .* is past the end", err)
    end)

    it("index each level once: a field found once is not looked for again", function()
      local bytes = slurp(DATA .. "medium.bin")
      local v = W.Request:view(bytes)
      local items = v.items
      assert.equal(85, #items)
      for _ = 1, 3 do assert.equal(items[85].title, v.items[85].title) end
      -- the same nested level is the same node: its index is shared
      assert.equal(V.span(items[3]), V.span(v.items[3]))
      -- reading field 1 of a cut message needs only its first bytes
      local cut = W.Request:view(bytes:sub(1, 20))
      assert.equal(W.Request:decode(bytes).user_id, cut.user_id)
      assert.error_matches(function() return cut.base end, "^Request%.query: .* at offset 14$")
    end)

    it("fields named like methods: data first, methods through petrel.view", function()
      local bytes = A.Shadow:encode { decode = 5, bytes = "b", has = { 1 }, pairs = true }
      local v = A.Shadow:view(bytes)
      assert.equal(5, v.decode)
      assert.equal("b", v.bytes)
      assert.equal(1, v.has[1])
      assert.is_true(v.pairs)
      assert.equal(5, V.decode(v).decode)
      assert.equal(bytes, V.bytes(v))
      assert.is_true(V.has(v, "pairs"))
      assert.equal(3, #v.has:decode() + 2) -- list views keep their methods
    end)

    if not is_jit then
      it("Lua 5.4: pairs, ipairs and # through the metamethods", function()
        local bytes = slurp(DATA .. "small.bin")
        local v = W.Request:view(bytes)
        local names = {}
        for k in pairs(v) do names[#names + 1] = k end
        assert.same({ "user_id", "query", "item_ids", "items", "attrs", "flags", "status",
          "shard", "priority", "base" }, names)
        local n = 0
        for i, x in ipairs(v.item_ids) do n = i; assert.equal(W.Request:decode(bytes).item_ids[i], x) end
        assert.equal(20, n)
        local m = 0
        for _ in pairs(v.attrs) do m = m + 1 end
        assert.equal(5, m)
      end)
    end
  end)

  describe("bad bytes", function()
    local function all_prefixes(ns, T, bytes, o, root)
      for n = 0, #bytes - 1 do
        local cut = bytes:sub(1, n)
        assert.is_nil(T:decode(cut, 1, o))
        local v = assert(T:view(cut, 1, o))
        local errs = {}
        touch(v, errs, { n = 400 }, ns)
        assert(#errs > 0, "prefix of " .. n .. " bytes read without an error")
        check_errors(errs, root, n)
      end
    end

    it("every truncation of a message raises with a path and an offset", function()
      local bytes = slurp(DATA .. "small.bin")
      all_prefixes(W, W.Request, bytes, nil, "Request")
      local d = W.Request:decode(bytes)
      all_prefixes(W, W.Request, W.Request:encode(d, C), C, "Request")
      local val = canon.random(A._defs, "All", function(n) return n > 3 and 3 or n - 1 end)
      all_prefixes(A, A.All, A.All:encode(val), nil, "All")
      all_prefixes(A, A.Maps, A.Maps:encode { sk = { [{ n = 1 }] = 2 }, ud = { ["0123456789abcdef"] = 1.5 } },
        nil, "Maps")
    end)

    it("random corruption never crashes and errors name path and offset", function()
      local seed = 11
      local function rnd(n)
        seed = (seed * 1103515245 + 12345) % 2147483648
        return math.floor(seed / 65536) % n
      end
      local cases = { { W.Request, slurp(DATA .. "small.bin"), {}, "Request", W } }
      local d = W.Request:decode(cases[1][2])
      cases[2] = { W.Request, W.Request:encode(d, C), C, "Request", W }
      for _, name in ipairs({ "All", "Maps", "Lists", "Deep" }) do
        local val = canon.random(A._defs, name, rnd)
        cases[#cases + 1] = { A[name], A[name]:encode(val), {}, name, A }
        cases[#cases + 1] = { A[name], A[name]:encode(val, C), C, name, A }
      end
      for _, cs in ipairs(cases) do
        local T, bytes, o, root, ns = cs[1], cs[2], cs[3], cs[4], cs[5]
        for _ = 1, 150 do
          local b = { bytes:byte(1, -1) }
          for _ = 1, 1 + rnd(3) do
            local at = 1 + rnd(#b)
            b[at] = rnd(4) == 0 and 0xff or rnd(256)
          end
          local s = string.char(table.unpack and table.unpack(b) or unpack(b))
          local errs = {}
          touch(assert(T:view(s, 1, o)), errs, { n = 300 }, ns)
          check_errors(errs, root, #s)
        end
      end
    end)

    it("hostile lengths, counts, types and nesting are caught where they are read", function()
      local T = petrel.schema {
        S = petrel.struct { {1, "s", "string"}, {2, "l", "list<i64>"}, {3, "in", "S", "optional"},
          {4, "m", "map<string,i32>"} },
      }
      -- a string claiming 2^31-1 bytes
      local v = T.S:view("\11\0\1\127\255\255\255xyz\0")
      assert.error_matches(function() return v.s end,
        "^S%.s: string length 2147483647 exceeds the 4 bytes left at offset 3$")
      -- a list claiming more elements than the bytes could hold
      v = T.S:view("\15\0\2\10\0\1\0\0" .. ("\0"):rep(8) .. "\0")
      assert.error_matches(function() return #v.l end,
        "^S%.l: 65536 elements cannot fit in the 9 bytes left at offset 8$")
      -- a list of the wrong element type
      v = T.S:view("\15\0\2\8\0\0\0\1\0\0\0\1\0")
      assert.error_matches(function() return v.l[1] end, "list element type i32, expected i64")
      -- a field of the wrong type is skipped, as decode skips it
      v = T.S:view("\8\0\1\0\0\0\5\0")
      assert.is_nil(v.s)
      -- nesting: a view is as deep as decode allows
      local deep = { s = "x" }
      for _ = 1, 70 do deep = { s = "x", ["in"] = deep } end
      local bytes = T.S:encode(deep, { max_depth = 100 })
      assert.is_nil(T.S:decode(bytes))
      local x = T.S:view(bytes)
      assert.error_matches(function()
        for _ = 1, 80 do x = x["in"] end
      end, "nesting deeper than 64")
      assert.equal("x", T.S:view(bytes, 1, { max_depth = 100 })["in"]["in"].s)
      -- a map of the wrong key type
      v = T.S:view("\13\0\4\8\8\0\0\0\1\0\0\0\1\0\0\0\2\0")
      assert.error_matches(function() return v.m.k end,
        "map<i32,i32> on the wire, expected map<string,i32>")
    end)

    it("a required field missing raises when it is read, as decode refuses the struct", function()
      local lite = petrel.schema { D = petrel.struct { {1, "a", "i32"} } }
      local bytes = lite.D:encode { a = 5 }
      assert.is_nil(A.Defaults:decode(bytes))
      local v = A.Defaults:view(bytes)
      assert.equal(5, v.a)
      assert.error_matches(function() return v.s end, "^Defaults%.s: required field missing at offset")
    end)
  end)

  describe("in encode", function()
    it("are written as their bytes, in tables, lists and maps", function()
      local bytes = slurp(DATA .. "medium.bin")
      local d = W.Request:decode(bytes)
      local v = W.Request:view(bytes)
      local echo = W.Echo.functions.echo
      assert.equal(echo.result:encode { success = d }, echo.result:encode { success = v })
      local mixed = { user_id = 5, items = { v.items[3], d.items[4], v.items[1] }, base = v.base,
        attrs = v.attrs }
      local want = { user_id = 5, items = { d.items[3], d.items[4], d.items[1] }, base = d.base,
        attrs = d.attrs }
      assert.equal(W.Request:encode(want), W.Request:encode(mixed))
      assert.equal(W.Request:encode(want, C), W.Request:encode(mixed, C))
      assert.equal(W.Request:size(want), W.Request:size(mixed))
      -- a view of another type is refused with the path
      assert.error_matches(function() W.Request:encode { base = v.items[1] } end,
        "Request.base: a view of Item given for Base")
      assert.error_matches(function() W.Request:encode { items = v.attrs } end,
        "a view of map<string,string> given for list<Item>")
    end)

    it("link their bytes into buffers (pinned, counted as retained) instead of copying", function()
      local blob = slurp(DATA .. "blob.bin")
      local v = W.Blob:view(blob)
      local b = petrel.buffer()
      local before = petrel.pool_stats().anchored
      W.Blob:encode(v, b)
      assert.equal(before + 1, petrel.pool_stats().anchored) -- the string is linked
      assert.equal(blob, b:read())
      assert.equal(before, petrel.pool_stats().anchored)
      -- over a buffer: the block is pinned
      local src = petrel.buffer()
      src:write(blob)
      src:write("") -- a copy in pool blocks, not a link
      local pinned0 = petrel.pool_stats().retained_bytes
      local bv = W.Blob:view(src)
      assert.is_true(petrel.pool_stats().retained_bytes > pinned0)
      local out = petrel.buffer()
      W.Blob:encode(bv, out)
      src:clear()
      assert.equal(blob, out:read())
      V.release(bv)
      collectgarbage()
      assert.equal(pinned0, petrel.pool_stats().retained_bytes)
    end)

    it("with: replaces and adds fields by splicing, Binary and Compact", function()
      local bytes = slurp(DATA .. "small.bin")
      local d = W.Request:decode(bytes)
      for _, o in ipairs({ {}, C }) do
        local b = W.Request:encode(d, o)
        local v = W.Request:view(b, 1, o)
        local n = V.with(v, { user_id = 42, query = "q", base = { LogID = "L" } })
        assert.equal(42, n.user_id)
        assert.equal("q", n.query)
        assert.equal("L", n.base.LogID)
        local want = W.Request:decode(b, 1, o)
        want.user_id, want.query, want.base = 42, "q", { LogID = "L" }
        assert.equal(W.Request:encode(want, o), V.bytes(n))
        -- a view as the new value, another struct's field added
        local m = V.with(n, { items = v.items, base = v.base })
        want.base = d.base
        assert.equal(W.Request:encode(want, o), V.bytes(m))
        -- the original is untouched
        assert.equal(b, V.bytes(v))
        assert.error_matches(function() V.with(v, { nope = 1 }) end, "'nope' is not a field of Request")
        assert.error_matches(function() V.with(v, { user_id = "x" }) end,
          "Request.user_id: i64 expected, got string")
        assert.error_matches(function() V.with(v.items, { x = 1 }) end, "with works on struct views")
      end
      -- a field added to a struct that did not have it, in id order
      local e = A.All:encode { r = 1, s = "x" }
      local n = V.with(A.All:view(e), { i = 7, neg = -1, ld = { 0.5 } })
      assert.equal(A.All:encode { r = 1, s = "x", i = 7, neg = -1, ld = { 0.5 } }, V.bytes(n))
      local ec = A.All:encode({ r = 1, s = "x", t = true }, C)
      local nc = V.with(A.All:view(ec, 1, C), { i = 7, b = false })
      assert.equal(A.All:encode({ r = 1, s = "x", i = 7, b = false, t = true }, C), V.bytes(nc))
    end)
  end)

  describe("lifetime", function()
    local function call_bytes(req)
      local b = petrel.buffer()
      W.Echo.functions.echo.args:encode_message({ req = req }, b, "echo", 1, 7, true)
      return b:read()
    end

    it("a message's views expire with it; an expired view raises and reads nothing", function()
      local d = W.Request:decode(slurp(DATA .. "small.bin"))
      local inb = petrel.buffer(call_bytes(d))
      local m = core.message()
      assert.equal(m, core.take_frame(inb, 1e6, m))
      assert.equal(0, #inb)
      local name, mtype, seqid, pos, proto = m:header()
      assert.same({ "echo", 1, 7, "binary" }, { name, mtype, seqid, proto })
      local args = W.Echo.functions.echo.args:view(m, pos)
      local req, items = args.req, args.req.items
      assert.equal(d.user_id, req.user_id)
      local pinned = petrel.pool_stats().retained_bytes
      assert.is_true(pinned > 0)
      assert.is_true(m:expire())
      assert.equal(pinned - 8192, petrel.pool_stats().retained_bytes)
      for _, f in ipairs({ function() return req.user_id end, function() return args.req end,
        function() return items[1] end, function() return #items end,
        function() return V.bytes(req) end, function() return V.decode(req) end,
        function() return W.Request:encode(req) end, function() return V.with(req, {}) end }) do
        assert.error_matches(f, "view expired")
      end
      assert.is_true(V.expired(req))
      assert.equal("petrel.view<Request>, expired", tostring(req))
      -- the message takes the next call; the old views stay expired
      inb:write(call_bytes(d))
      assert.equal(m, core.take_frame(inb, 1e6, m))
      assert.error_matches(function() return req.user_id end, "view expired")
      local again = W.Echo.functions.echo.args:view(m, (select(4, m:header())))
      assert.equal(d.query, again.req.query)
      assert.is_true(m:expire())
    end)

    it("retain keeps a message past expire (compacted to its own block); release ends it", function()
      local d = W.Request:decode(slurp(DATA .. "small.bin"))
      local inb = petrel.buffer(call_bytes(d))
      local m = core.message()
      core.take_frame(inb, 1e6, m)
      local req = W.Echo.functions.echo.args:view(m, (select(4, m:header()))).req
      local before = petrel.pool_stats().retained_bytes
      assert.equal(req, V.retain(req))
      -- the 8 KiB input block is traded for a block of the message's size
      assert.is_true(petrel.pool_stats().retained_bytes < before)
      inb:clear()
      assert.is_false(m:expire())
      collectgarbage()
      assert.equal(d.query, req.query)
      assert.equal(d.items[3].title, req.items[3].title)
      assert.equal(W.Request:encode(d), V.bytes(req))
      assert.error_matches(function() core.take_frame(petrel.buffer(call_bytes(d)), 1e6, m) end,
        "retained message cannot take")
      V.release(req)
      assert.error_matches(function() return req.query end, "view expired")
      collectgarbage()
      assert.equal(0, petrel.pool_stats().retained_bytes)
    end)

    it("views keep their bytes alive: strings and buffer blocks outlive their owners", function()
      local bytes = slurp(DATA .. "medium.bin")
      local d = W.Request:decode(bytes)
      local function make() return W.Request:view(bytes:sub(1)) end
      local v = make()
      collectgarbage()
      collectgarbage()
      assert.equal(d.items[85].title, v.items[85].title)
      local b = petrel.buffer()
      b:write(bytes:sub(1, 7000), bytes:sub(7001)) -- across nodes: copied once
      local bv = W.Request:view(b)
      local sv = W.Request:view(petrel.buffer(bytes:sub(1, 100)), 1)
      b:clear()
      b = nil
      collectgarbage()
      assert.equal(d.base.LogID, bv.base.LogID)
      assert.equal(d.user_id, sv.user_id)
      local items = v.items
      v = nil
      collectgarbage()
      assert.equal(d.items[1].title, items[1].title)
      bv, sv, items = nil, nil, nil
      collectgarbage()
      collectgarbage()
      assert.equal(0, petrel.pool_stats().retained_bytes)
    end)

    it("say what they are: type, tostring, dump, read-only", function()
      local v = W.Request:view(slurp(DATA .. "small.bin"))
      assert.equal("Request", V.type(v))
      assert.equal("list<Item>", V.type(v.items))
      assert.equal("map<string,string>", V.type(v.attrs))
      assert.equal("set<i32>", V.type(v.flags))
      assert.equal("petrel.view<list<Item>>", tostring(v.items))
      assert.equal("petrel.view", getmetatable(v))
      assert.matches('^view%(Request%){\n  user_id = %-7340032000123456789', V.tostring(v))
      assert.equal('view(list<i64>){ ...20 items }', petrel.dump(v.item_ids, { depth = 0 }))
      assert.error_matches(function() v.user_id = 1 end, "views are read%-only")
      assert.is_true(V.is(v))
      assert.is_false(V.is({}))
    end)
  end)
end)
