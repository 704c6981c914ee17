-- The schema compiler and the Thrift Binary codec, on Lua 5.4 and LuaJIT.
local petrel = require "petrel"
local W = require "bench.workload"

local is_jit = jit ~= nil
local DATA = "bench/data/"

local slurp = require "support.slurp"

local function i64(s) -- exact 64-bit literal on both runtimes
  if is_jit then return loadstring("return " .. s .. "LL")() end
  return math.tointeger(load("return " .. s)())
end

local WORKLOADS = {
  { "small", "Request" }, { "medium", "Request" }, { "large", "Request" },
  { "mytest", "MyTest" }, { "blob", "Blob" }, { "vectors", "Vectors" },
}

-- a schema with every type and requiredness
local A = petrel.schema {
  Color = petrel.enum { RED = 1, GREEN = 2, BLUE = 7 },
  Inner = petrel.struct { {1, "n", "i32"}, {2, "s", "string", "optional"} },
  Node = petrel.struct {
    {1, "value", "i64"},
    {2, "children", "list<Node>", "optional"},
    {3, "peer", "Peer", "optional"},
  },
  Peer = petrel.struct { {1, "node", "Node", "optional"}, {2, "tag", "string"} },
  U = petrel.union { {1, "i", "i32"}, {2, "s", "string"}, {3, "inner", "Inner"} },
  Oops = petrel.exception { {1, "message", "string"}, {2, "code", "i32"} },
  Ints = petrel.typedef "list<i64>",
  All = petrel.struct {
    {1, "b", "bool"},
    {2, "y", "byte"},
    {3, "y8", "i8"},
    {4, "s16", "i16"},
    {5, "s32", "i32"},
    {6, "s64", "i64"},
    {7, "d", "double"},
    {8, "str", "string"},
    {9, "bin", "binary"},
    {10, "id", "uuid", "optional"},
    {11, "inner", "Inner"},
    {12, "color", "Color"},
    {13, "li", "Ints"},
    {14, "ls", "list<string>"},
    {15, "set32", "set<i32>"},
    {16, "mss", "map<string,string>"},
    {17, "mil", "map<i32,list<Inner>>"},
    {18, "nested", "map<string,list<set<i16>>>"},
    {19, "req", "string", "required"},
    {20, "opt", "i32", "optional"},
    {21, "dflt", "i32", default = 42},
    {22, "u", "U", "optional"},
    {23, "tree", "Node", "optional"},
    {24, "ld", "list<double>"},
    {-1, "neg", "i16", "optional"},
    {25, "colors", "list<Color>"},
    {26, "lb", "list<bool>"},
  },
}

local function sample()
  return {
    b = true, y = -128, y8 = 127, s16 = -32768, s32 = 2147483647,
    s64 = i64("-9223372036854775807") - 1, d = -1.5e300,
    str = "héllo", bin = "\0\1\2\255", id = "12345678-9abc-def0-1234-56789abcdef0",
    inner = { n = 1 }, color = 7, li = { 1, -1, i64("9007199254740993") },
    ls = { "a", "", "c" }, set32 = { 3, 1, 2 }, mss = { a = "1", b = "2" },
    mil = { [5] = { { n = 1, s = "x" }, { n = 2 } } },
    nested = { k = { { 1, 2 }, {} } }, req = "r", dflt = 42,
    u = { s = "only" },
    tree = { value = 1, children = { { value = 2 }, { value = 3, peer = { tag = "p", node = { value = 4 } } } } },
    ld = { 0.5, -0.0, 1e-300 }, neg = -5, colors = { 1, 2, 7 }, lb = { true, false },
  }
end

describe("codec", function()
  describe("canonical messages of bench/data", function()
    for _, w in ipairs(WORKLOADS) do
      local name, tname = w[1], w[2]
      it(name .. ".bin decodes and re-encodes byte-identically", function()
        local bytes = slurp(DATA .. name .. ".bin")
        local T = W[tname]
        local v, pos = T:decode(bytes)
        assert.is_table(v)
        assert.equal(#bytes + 1, pos)
        assert.is_true(T:encode(v) == bytes)
        assert.equal(#bytes, T:size(v))
        -- into a buffer, with large strings linked rather than copied
        local b = petrel.buffer()
        assert.equal(b, T:encode(v, b))
        assert.is_true(tostring(b) == bytes)
        -- from a buffer
        local v2, pos2 = T:decode(b)
        assert.equal(#bytes + 1, pos2)
        assert.is_true(T:encode(v2) == bytes)
        -- typed arrays for numeric lists
        local vt = T:decode(bytes, 1, { typed = true })
        assert.is_true(T:encode(vt) == bytes)
      end)
    end

    it("decodes small.bin to the documented values", function()
      local r = W.Request:decode(slurp(DATA .. "small.bin"))
      assert.equal(i64("-7340032000123456789"), r.user_id)
      assert.equal(20, #r.item_ids)
      assert.equal(3, #r.items)
      assert.equal(-1234, r.shard)
      assert.equal(-7, r.priority)
      assert.equal(1, r.status)
      assert.equal(4, #r.flags)
      assert.equal(petrel.list, getmetatable(r.item_ids))
      assert.equal(petrel.set, getmetatable(r.flags))
      assert.equal(petrel.map, getmetatable(r.attrs))
      local n = 0
      for _ in pairs(r.attrs) do n = n + 1 end
      assert.equal(5, n)
      local exact = 0
      for _, v in ipairs(r.item_ids) do
        if is_jit and type(v) == "cdata" then exact = exact + 1 end
      end
      if is_jit then assert.is_true(exact > 0) end
    end)
  end)

  describe("every type", function()
    it("round-trips a value using every type and requiredness", function()
      local v = sample()
      local bytes = A.All:encode(v)
      assert.equal(#bytes, A.All:size(v))
      local d = assert(A.All:decode(bytes))
      -- sets come back as arrays in wire order
      assert.same({ 3, 1, 2 }, { d.set32[1], d.set32[2], d.set32[3] })
      assert.equal(v.s64, d.s64)
      assert.equal(v.li[3], d.li[3])
      assert.equal("12345678-9abc-def0-1234-56789abcdef0", d.id)
      assert.equal(4, d.tree.children[2].peer.node.value)
      assert.equal(-5, d.neg)
      assert.is_nil(d.opt)
      assert.is_true(A.All:encode(d) == bytes)
      local function strip(t) -- compare as plain tables
        if type(t) ~= "table" then return t end
        local o = {}
        for k, x in pairs(t) do o[k] = strip(x) end
        return o
      end
      assert.same(strip(v), strip(d))
    end)

    it("fills defaults and checks required fields", function()
      local v = sample()
      v.dflt = nil
      local d = A.All:decode(A.All:encode(v))
      assert.equal(42, d.dflt) -- written as its default
      v.req = nil
      assert.has_error(function() A.All:encode(v) end, "All.req: required field missing")
      -- a message lacking a required field does not decode
      local bytes = A.Inner:encode({ n = 1 })
      local R = petrel.schema { R = petrel.struct { {1, "n", "i32"}, {2, "must", "string", "required"} } }
      local x, err = R.R:decode(bytes)
      assert.is_nil(x)
      assert.matches("R.must: required field missing", err, 1, true)
    end)

    it("accepts a uuid as 16 raw bytes and rejects malformed ones", function()
      local v = sample()
      v.id = string.rep("\171", 16)
      local d = A.All:decode(A.All:encode(v))
      assert.equal("abababab-abab-abab-abab-abababababab", d.id)
      v.id = "not-a-uuid"
      assert.has_error(function() A.All:encode(v) end)
    end)

    it("encodes sets given as {[v] = true} and maps in key order", function()
      local v = sample()
      v.set32 = { [9] = true }
      local d = A.All:decode(A.All:encode(v))
      assert.same({ 9 }, { d.set32[1] })
      local S = petrel.schema { M = petrel.struct { {1, "m", "map<string,i32>"}, {2, "n", "map<i64,bool>"} } }
      local a = S.M:encode({ m = { b = 2, a = 1, c = 3 }, n = { [3] = true, [-1] = false, [2] = true } })
      local b = S.M:encode({ m = { c = 3, b = 2, a = 1 }, n = { [2] = true, [3] = true, [-1] = false } })
      assert.equal(a, b)
      assert.truthy(a:find("a.*b.*c"))
    end)

    it("encodes enums from names and decodes names on request", function()
      local v = sample()
      v.color = "GREEN"
      v.colors = { "RED", 7 }
      local bytes = A.All:encode(v)
      local d = A.All:decode(bytes)
      assert.equal(2, d.color)
      local dn = A.All:decode(bytes, 1, { enum_names = true })
      assert.equal("GREEN", dn.color)
      assert.same({ "RED", "BLUE" }, { dn.colors[1], dn.colors[2] })
      v.color = "PURPLE"
      assert.has_error(function() A.All:encode(v) end, "All.color: unknown enum name 'PURPLE'")
    end)

    it("rejects a union with two fields set", function()
      assert.has_error(function() A.U:encode({ i = 1, s = "x" }) end)
      local d = A.U:decode(A.U:encode({ inner = { n = 3 } }))
      assert.equal(3, d.inner.n)
    end)

    it("skips unknown fields", function()
      local V2 = petrel.schema { I = petrel.struct {
        {1, "n", "i32"}, {5, "extra", "map<string,list<i32>>"}, {6, "more", "Inner2"} },
        Inner2 = petrel.struct { {1, "x", "double"} } }
      local bytes = V2.I:encode({ n = 7, extra = { a = { 1, 2 } }, more = { x = 1.5 } })
      local d, pos = A.Inner:decode(bytes)
      assert.same({ n = 7 }, d)
      assert.equal(#bytes + 1, pos)
    end)

    it("keeps unknown fields on request and re-emits them", function()
      local V2 = petrel.schema { I = petrel.struct {
        {1, "n", "i32"}, {5, "extra", "map<string,list<i32>>"}, {6, "more", "Inner2"} },
        Inner2 = petrel.struct { {1, "x", "double"} },
        Outer = petrel.struct { {1, "i", "I"}, {2, "tail", "string"} } }
      local V1 = petrel.schema { I = petrel.struct { {1, "n", "i32"} },
        Outer = petrel.struct { {1, "i", "I"} } }
      local bytes = V2.Outer:encode({ i = { n = 7, extra = { a = { 1, 2 } }, more = { x = 1.5 } }, tail = "t" })
      local d = V1.Outer:decode(bytes, 1, { unknown = true })
      assert.equal(7, d.i.n)
      assert.is_string(d.i[petrel.unknown])
      assert.is_string(d[petrel.unknown])
      d.i.n = 8
      local back = V2.Outer:decode(V1.Outer:encode(d))
      assert.equal(8, back.i.n)
      assert.equal(1.5, back.i.more.x)
      assert.same({ 1, 2 }, { back.i.extra.a[1], back.i.extra.a[2] })
      assert.equal("t", back.tail)
      -- without the option nothing is kept
      assert.is_nil(V1.Outer:decode(bytes)[petrel.unknown])
    end)

    it("decodes at a position and returns the next one", function()
      local one = A.Inner:encode({ n = 1 })
      local two = A.Inner:encode({ n = 2, s = "z" })
      local s = one .. two
      local a, p = A.Inner:decode(s)
      local b, q = A.Inner:decode(s, p)
      assert.equal(1, a.n)
      assert.equal(2, b.n)
      assert.equal(#s + 1, q)
      assert.is_nil((A.Inner:decode(s, #s + 5)))
    end)
  end)

  describe("errors", function()
    it("name the full path of a wrong Lua type", function()
      local r = W.Request:decode(slurp(DATA .. "small.bin"))
      r.items[3].title = 5
      assert.has_error(function() W.Request:encode(r) end,
        "Request.items[3].title: string expected, got number")
      r.items[3].title = "ok"
      r.item_ids[4] = "x"
      assert.has_error(function() W.Request:encode(r) end,
        "Request.item_ids[4]: i64 expected, got string")
      r.item_ids[4] = 1.5
      assert.has_error(function() W.Request:encode(r) end,
        "Request.item_ids[4]: i64 expected, got non-integral number")
      r.item_ids[4] = 1
      r.shard = 40000
      assert.has_error(function() W.Request:encode(r) end,
        "Request.shard: value 40000 out of range for i16")
      r.shard = 1
      r.attrs.k = {}
      assert.has_error(function() W.Request:encode(r) end)
      r.attrs.k = nil
      r.base = "x"
      assert.has_error(function() W.Request:encode(r) end,
        "Request.base: table expected for Base, got string")
      assert.has_error(function() W.Request:encode(5) end)
    end)

    it("in schemas name the path and the problem", function()
      local ok, err = pcall(petrel.schema, { MyTest = petrel.struct { {3, "Nums", "lst<i64>"} } })
      assert.is_false(ok)
      assert.matches("MyTest.Nums: unknown type 'lst<i64>'", err, 1, true)
      ok, err = pcall(petrel.schema, { S = petrel.struct { {1, "a", "i32"}, {1, "b", "i32"} } })
      assert.matches("S.b: duplicate field id 1", err, 1, true)
      ok, err = pcall(petrel.schema, { S = petrel.struct { {1, "a", "i32"}, {2, "a", "i32"} } })
      assert.matches("S.a: duplicate field name", err, 1, true)
      ok, err = pcall(petrel.schema, { S = petrel.struct { {1, "a", "map<i32>"} } })
      assert.matches("S.a: ',' expected", err, 1, true)
      ok, err = pcall(petrel.schema, { S = petrel.struct { {1, "a", "list<i32"} } })
      assert.matches("'>' expected", err, 1, true)
      ok, err = pcall(petrel.struct, { {1, "a"} })
      assert.matches("type must be a string", err, 1, true)
      ok, err = pcall(petrel.schema, { A = petrel.typedef "B", B = petrel.typedef "A",
        S = petrel.struct { {1, "x", "A"} } })
      assert.matches("typedef cycle", err, 1, true)
    end)

    it("return nil, err with path and offset for every truncation", function()
      local bytes = slurp(DATA .. "small.bin")
      for n = 0, #bytes - 1 do
        local v, err = W.Request:decode(bytes:sub(1, n))
        assert.is_nil(v)
        assert.is_string(err)
        assert.truthy(err:find("at offset %d+$"), err)
      end
      local _, err = W.Request:decode(bytes:sub(1, 30))
      assert.matches("^Request%.query: ", err)
    end)

    it("check hostile lengths before allocating", function()
      local function hdr(t, id) return string.char(t, math.floor(id / 256), id % 256) end
      local function be32(n) return string.char(math.floor(n / 16777216) % 256,
        math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256) end
      -- list<i64> claiming 2^31-1 elements
      local v, err = W.MyTest:decode(hdr(15, 3) .. string.char(10) .. be32(2147483647))
      assert.is_nil(v)
      assert.matches("cannot fit", err)
      -- string claiming 2 GiB
      v, err = W.Blob:decode(hdr(11, 1) .. be32(2147483647) .. "abc")
      assert.is_nil(v)
      assert.matches("exceeds", err)
      -- negative sizes
      v, err = W.Blob:decode(hdr(11, 1) .. be32(4294967295))
      assert.matches("negative string length", err)
      v, err = W.Request:decode(hdr(13, 5) .. string.char(11, 11) .. be32(4294967290))
      assert.matches("negative entry count", err)
      -- element type mismatch
      v, err = W.MyTest:decode(hdr(15, 3) .. string.char(8) .. be32(1) .. be32(5) .. "\0")
      assert.matches("list element type i32, expected i64", err)
      -- unknown field type cannot be skipped
      v, err = W.MyTest:decode(hdr(99, 77) .. "xxxx")
      assert.matches("cannot skip field 77", err)
    end)

    it("cap nesting depth (default 64, configurable)", function()
      local N = petrel.schema { N = petrel.struct { {1, "next", "N", "optional"} } }
      local function chain(n)
        local v = {}
        local cur = v
        for _ = 1, n do cur.next = {}; cur = cur.next end
        return v
      end
      local deep = chain(63)
      local bytes = N.N:encode(deep)
      assert.is_table((N.N:decode(bytes)))
      assert.has_error(function() N.N:encode(chain(64)) end)
      local v, err = N.N:decode(bytes, 1, { max_depth = 10 })
      assert.is_nil(v)
      assert.matches("nesting deeper than 10", err)
      -- hostile: a long run of nested struct headers for an unknown field
      local evil = string.rep(string.char(12, 0, 9), 10000)
      v, err = N.N:decode(evil)
      assert.is_nil(v)
      assert.is_string(err)
      -- self-referencing table: caught by the depth cap, not a stack overflow
      local loop = {}
      loop.next = loop
      assert.has_error(function() N.N:encode(loop) end)
    end)

    it("survive random corruption of every workload", function()
      local seed = 7
      local function rnd(n)
        seed = (seed * 1103515245 + 12345) % 2147483648
        return math.floor(seed / 65536) % n
      end
      for _, w in ipairs({ { "small", "Request" }, { "medium", "Request" } }) do
        local bytes = slurp(DATA .. w[1] .. ".bin")
        for _ = 1, 300 do
          local s = bytes
          for _ = 1, 1 + rnd(4) do
            local i = rnd(#s) + 1
            s = s:sub(1, i - 1) .. string.char(rnd(256)) .. s:sub(i + 1)
          end
          local ok, v, err = pcall(W[w[2]].decode, W[w[2]], s)
          assert.is_true(ok, v)
          if v == nil then assert.is_string(err) end
        end
      end
    end)
  end)

  describe("numeric lists", function()
    it("give the same bytes on the AVX2 and scalar paths", function()
      local bytes = slurp(DATA .. "vectors.bin")
      local mode = petrel.simd()
      local v1 = W.Vectors:decode(bytes)
      local t1 = W.Vectors:decode(bytes, 1, { typed = true })
      local e1 = W.Vectors:encode(v1)
      assert.equal("scalar", petrel.simd(true))
      local v2 = W.Vectors:decode(bytes)
      local t2 = W.Vectors:decode(bytes, 1, { typed = true })
      local e2 = W.Vectors:encode(v2)
      local e3 = W.Vectors:encode(t1)
      petrel.simd(false)
      assert.equal(mode, petrel.simd())
      assert.is_true(e1 == bytes and e2 == bytes and e3 == bytes)
      assert.is_true(t1.i64s == t2.i64s and t1.f64s == t2.f64s and t1.i32s == t2.i32s)
      for i = 1, #v1.i64s, 997 do assert.equal(v1.i64s[i], v2.i64s[i]) end
      -- odd lengths exercise the kernels' scalar tails
      for n = 0, 40 do
        local l = {}
        for i = 1, n do l[i] = i * 7919 - 100000 end
        local a = W.Vectors:encode({ i32s = l, i64s = l, f64s = l })
        petrel.simd(true)
        local b = W.Vectors:encode({ i32s = l, i64s = l, f64s = l })
        local tb = W.Vectors:decode(a, 1, { typed = true })
        petrel.simd(false)
        local ta = W.Vectors:decode(a, 1, { typed = true })
        assert.equal(a, b)
        assert.is_true(ta.i64s == tb.i64s)
      end
    end)

    it("decode into typed arrays and encode from them", function()
      local bytes = slurp(DATA .. "mytest.bin")
      local v = W.MyTest:decode(bytes, 1, { typed = true })
      local a = v.Nums
      assert.equal(131072, #a)
      assert.equal("i64", a:kind())
      local plain = W.MyTest:decode(bytes)
      assert.equal(plain.Nums[1], a[1])
      assert.equal(plain.Nums[131072], a[131072])
      assert.is_nil(a[131073])
      a[1] = 5
      assert.equal(5, a[1])
      assert.has_error(function() a[0] = 1 end)
      local arr = petrel.array("i32", { 1, -2, 3 })
      assert.equal(3, #arr)
      assert.same({ 1, -2, 3 }, arr:totable())
      local d = W.Vectors:decode(W.Vectors:encode({ i32s = arr, i64s = {}, f64s = petrel.array("double", 2) }))
      assert.same({ 1, -2, 3 }, { d.i32s[1], d.i32s[2], d.i32s[3] })
      assert.same({ 0, 0 }, { d.f64s[1], d.f64s[2] })
      assert.has_error(function() W.Vectors:encode({ i32s = petrel.array("i64", 1), i64s = {}, f64s = {} }) end)
      -- per-field opt-in
      local S = petrel.schema { S = petrel.struct { {1, "v", "list<i16>", typed = true} } }
      local sd = S.S:decode(S.S:encode({ v = { 1, 2, -3 } }))
      assert.equal("i16", sd.v:kind())
      assert.equal(-3, sd.v[3])
    end)
  end)

  describe("randomized round trips", function()
    it("random values of random schemas survive encode/decode", function()
      local seed = 99
      local function rnd(n)
        seed = (seed * 1103515245 + 12345) % 2147483648
        return math.floor(seed / 65536) % n
      end
      local scalars = { "bool", "byte", "i16", "i32", "i64", "double", "string", "binary" }
      local function rand_type(depth, nstructs)
        local r = rnd(10)
        if depth > 2 or r < 5 then
          if nstructs > 0 and rnd(4) == 0 then return "S" .. (rnd(nstructs) + 1) end
          return scalars[rnd(#scalars) + 1]
        elseif r < 7 then return "list<" .. rand_type(depth + 1, nstructs) .. ">"
        elseif r < 8 then return "set<" .. scalars[rnd(5) + 2] .. ">"
        else return "map<" .. (rnd(2) == 0 and "string" or "i32") .. "," .. rand_type(depth + 1, nstructs) .. ">" end
      end
      for round = 1, 25 do
        local defs, nstructs = {}, 1 + rnd(4)
        for s = 1, nstructs do
          local fields = {}
          for f = 1, 1 + rnd(8) do
            fields[f] = { f * 3 - rnd(2), "f" .. f, rand_type(0, s - 1),
              rnd(3) == 0 and "optional" or "default" }
          end
          defs["S" .. s] = petrel.struct(fields)
        end
        local T = petrel.schema(defs)
        local function rand_value(ty, depth)
          local inner = ty:match("^list<(.*)>$")
          if inner then
            local t = {}
            for i = 1, rnd(4) do t[i] = rand_value(inner, depth + 1) end
            return t
          end
          inner = ty:match("^set<(.*)>$")
          if inner then
            local t, seen = {}, {}
            for _ = 1, rnd(4) do
              local v = rand_value(inner, depth + 1)
              if not seen[v] then seen[v] = true; t[#t + 1] = v end
            end
            return t
          end
          local k, v = ty:match("^map<(%a+%d*),(.*)>$")
          if k then
            local t = {}
            for _ = 1, rnd(4) do t[rand_value(k, depth + 1)] = rand_value(v, depth + 1) end
            return t
          end
          if ty == "bool" then return rnd(2) == 1 end
          if ty == "byte" then return rnd(256) - 128 end
          if ty == "i16" then return rnd(65536) - 32768 end
          if ty == "i32" then return rnd(2147483647) - 1073741824 end
          if ty == "i64" then return i64(tostring(rnd(2147483647))) * 4294967296 + rnd(65536) end
          if ty == "double" then return (rnd(2000000) - 1000000) / 1024 end
          if ty == "string" or ty == "binary" then
            local t = {}
            for i = 1, rnd(20) do t[i] = string.char(rnd(256)) end
            return table.concat(t)
          end
          local st = defs[ty]
          local out = {}
          for _, f in ipairs(st.fields) do
            if (f.required ~= "optional" or rnd(2) == 0) and depth < 4 then
              out[f.name] = rand_value(f.type, depth + 1)
            end
          end
          return out
        end
        for _ = 1, 20 do
          local name = "S" .. (rnd(nstructs) + 1)
          -- every random value is valid for its schema: an encode error
          -- is a failure, never a value to skip
          local v = rand_value(name, 0)
          local bytes = T[name]:encode(v)
          assert.equal(#bytes, T[name]:size(v))
          local d = assert(T[name]:decode(bytes))
          assert.is_true(T[name]:encode(d) == bytes)
          local function cmp(a, b)
            if type(a) ~= "table" then return a == b end
            for k, x in pairs(a) do
              local found = b[k]
              if found == nil and type(k) ~= "table" then return false end
              if not cmp(x, found) then return false end
            end
            return true
          end
          assert.is_true(cmp(v, d), "round " .. round)
        end
      end
    end)
  end)

  describe("services", function()
    it("compile args and result structs per function", function()
      local S = W.Echo
      assert.equal("Echo", S.name)
      local echo = S.functions.echo
      assert.is_false(echo.oneway)
      local r = W.Request:decode(slurp(DATA .. "small.bin"))
      local args = echo.args:encode({ req = r })
      assert.equal(W.Request:encode(r), args:sub(4, -2))
      local res = echo.result:decode(echo.result:encode({ success = r }))
      assert.equal(r.query, res.success.query)
      assert.is_true(S.functions.fire.oneway)
      assert.is_nil(S.functions.fire.result)
    end)

    it("declare exceptions and inherit with extends", function()
      local T = petrel.schema {
        Oops = petrel.exception { {1, "msg", "string"} },
        Base = petrel.service { ping = { result = "i32" } },
        Svc = petrel.service { extends = "Base",
          get = { args = { {1, "k", "string"} }, result = "string", throws = { {1, "oops", "Oops"} } } },
      }
      local get = T.Svc.functions.get
      local r = get.result:decode(get.result:encode({ oops = { msg = "no" } }))
      assert.equal("no", r.oops.msg)
      assert.is_table(T.Svc.functions.ping)
      local ok, err = pcall(petrel.schema, { S = petrel.service { extends = "Nope" } })
      assert.is_false(ok)
      assert.matches("extends unknown service", err)
    end)
  end)
end)

describe("schemas shared across Lua states", function()
  it("adopt the same compiled plans in another state (a luv thread)", function()
    local uv = require "luv"
    local handle = petrel.export(W)
    assert.matches("^petrel%.schema:", handle)
    local bytes = slurp(DATA .. "small.bin")
    local out = os.tmpname()
    local th = uv.new_thread(function(h, b, path, cpath, outname)
      package.path, package.cpath = path, cpath
      local p = require "petrel"
      local ns = p.adopt(h)
      local v = assert(ns.Request:decode(b))
      local ok = ns.Request:encode(v) == b and ns.Status.PARTIAL == 1
        and ns.Echo.functions.echo.args ~= nil and v.base.LogID ~= nil
      local f = io.open(outname, "w")
      f:write(ok and "ok" or "bad")
      f:close()
    end, handle, bytes, package.path, package.cpath, out)
    th:join()
    assert.equal("ok", slurp(out))
    os.remove(out)
    assert.has_error(function() petrel.adopt("petrel.schema:nothing") end)
    assert.has_error(function() petrel.adopt({}) end)
  end)
end)

describe("petrel.load", function()
  it("loads workload.thrift and round-trips the canonical messages", function()
    local ns = assert(petrel.load("bench/workload.thrift"))
    for _, w in ipairs(WORKLOADS) do
      local bytes = slurp(DATA .. w[1] .. ".bin")
      local v = assert(ns[w[2]]:decode(bytes))
      assert.is_true(ns[w[2]]:encode(v) == bytes, w[1])
    end
    assert.equal(1, ns.Status.PARTIAL)
    assert.is_true(ns.Echo.functions.fire.oneway)
    assert.equal("struct", ns._idl.defs.Request.kind)
  end)

  it("loads IDL text and reports errors with file, line and column", function()
    local ns = assert(petrel.load("struct P { 1: i32 x, 2: list<string> tags }",
      { text = true, name = "inline.thrift" }))
    local v = ns.P:decode(ns.P:encode({ x = 3, tags = { "a" } }))
    assert.equal(3, v.x)
    local bad, err = petrel.load("struct P {\n  1: lst<i32> x\n}", { text = true, name = "bad.thrift" })
    assert.is_nil(bad)
    assert.matches("^bad%.thrift:2:%d+:", err)
    bad, err = petrel.load("/nonexistent/x.thrift")
    assert.is_nil(bad)
    assert.is_string(err)
  end)
end)

describe("message envelopes", function()
  local core = petrel.core
  it("encode_message writes a framed strict message that msg_header reads", function()
    local T = W.Echo.functions.echo.args
    local req = W.Request:decode(slurp(DATA .. "small.bin"))
    local b = petrel.buffer()
    T:encode_message({ req = req }, b, "echo", 1, 77, true)
    local len = b:peek_u32()
    assert.equal(#b - 4, len)
    local frame = b:read_frame(16777216)
    assert.equal(len, #frame)
    local name, mtype, seqid, pos = core.msg_header(frame)
    assert.same({ "echo", 1, 77 }, { name, mtype, seqid })
    local args = assert(T:decode(frame, pos))
    assert.equal(req.query, args.req.query)
    -- unframed, and with a blob linked rather than copied
    local nb = petrel.buffer({ nocopy = 1024 })
    local blob = W.Blob:decode(slurp(DATA .. "blob.bin"))
    W.Echo.functions.blob.args:encode_message({ req = blob }, nb, "blob", 1, -1, true)
    assert.equal(#nb - 4, nb:peek_u32())
    local f = nb:read_frame(16777216)
    local n2, t2, s2, p2 = core.msg_header(f)
    assert.same({ "blob", 1, -1 }, { n2, t2, s2 })
    assert.equal(blob.data, W.Echo.functions.blob.args:decode(f, p2).req.data)
    -- a failing encode leaves the buffer untouched
    local e = petrel.buffer("x")
    assert.has_error(function() T:encode_message({ req = { user_id = "no" } }, e, "echo", 1, 1, true) end)
    assert.equal("x", tostring(e))
  end)

  it("msg_header reads strict and non-strict envelopes, nil when short, false when bad", function()
    local strict = "\128\1\0\2" .. "\0\0\0\4ping" .. "\0\0\0\9" .. "rest"
    assert.same({ "ping", 2, 9, 17, "binary" }, { core.msg_header(strict) })
    local loose = "\0\0\0\4ping\1\0\0\0\5"
    assert.same({ "ping", 1, 5, 14, "binary" }, { core.msg_header(loose) })
    for n = 0, 15 do assert.is_nil((core.msg_header(strict:sub(1, n)))) end
    assert.same({ false, "bad protocol version" }, { core.msg_header("\128\2\0\1\0\0\0\0") })
    assert.same({ false, "bad method name length" }, { core.msg_header("\128\1\0\1\127\0\0\0") })
    assert.equal("ping", (core.msg_header("xx" .. strict, 3)))
  end)

  it("read_frame returns frames whole, nil until complete, false for bad lengths", function()
    local b = petrel.buffer()
    b:write("\0\0\0\5hel")
    assert.is_nil(b:read_frame(100))
    b:write("lo\0\0\0\1!")
    assert.equal("hello", b:read_frame(100))
    assert.equal("!", b:read_frame(100))
    assert.is_nil(b:read_frame(100))
    b:write("\0\0\0\0")
    assert.same({ false, "frame of 0 bytes (limit 100)" }, { b:read_frame(100) })
    b:clear():write("\127\255\255\255")
    local ok, err = b:read_frame(100)
    assert.is_false(ok)
    assert.matches("limit 100", err)
  end)
end)
