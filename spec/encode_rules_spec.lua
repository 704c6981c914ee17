-- What encode writes and refuses (issue 10's codec items), on Lua 5.4 and
-- LuaJIT: fields in ascending id order byte-identical with Apache's Python
-- library; sets in key form; LuaJIT int64 map keys; int64_as_string;
-- error messages that say what is wrong and where; strict encoding.
local petrel = require "petrel"

local is_jit = jit ~= nil
local PY = "/usr/bin/python3 tools/pyinterop.py"
local cjson = require "cjson"

local function hex(s)
  return (s:gsub(".", function(ch) return ("%02x"):format(ch:byte()) end))
end

local function i64(s) -- exact 64-bit literal on both runtimes
  if is_jit then return loadstring("return " .. s .. "LL")() end
  return math.tointeger(load("return " .. s)())
end

-- Python: build values with the generated classes, write them in both
-- protocols (pyinterop --construct).
local function python_bytes(thrift, items)
  local tmp = os.tmpname()
  local f = assert(io.open(tmp, "wb"))
  f:write(cjson.encode(items))
  f:close()
  local p = assert(io.popen(("%s --thrift %s --construct < %s 2>&1"):format(PY, thrift, tmp)))
  local out = p:read("*a")
  p:close()
  os.remove(tmp)
  local ok, arr = pcall(cjson.decode, out)
  assert(ok and type(arr) == "table", "pyinterop failed: " .. out:sub(1, 400))
  return arr
end

describe("encode", function()
  describe("field order", function()
    local ORDER = "spec/thrift/order.thrift"
    local ns = assert(petrel.load(ORDER))

    it("is ascending field id, byte-identical with Apache's Python library in both protocols", function()
      -- the same values for petrel (Lua) and Python (constructor args)
      local cases = {
        { "Decimal", { unscaled = "\1\2", scale = 3 } },
        { "KeyRange", { start_key = "a", end_key = "z", count = 7, start_token = "t",
          end_token = "u", row_filter = { "x", "y" } } },
        { "KeyRange", { count = 100, end_token = "only" } },
        { "NoteFilter", { order = 1, ascending = true, words = "w", notebookGuid = "g",
          tagGuids = { "t1" }, timeZone = "UTC", inactive = false, emphasized = "e",
          includeAllReadableNotebooks = true } },
        { "Mixed", { flag = true, nums = { 3, -4 }, first = "f", m = { a = 1, b = -2 },
          range = { count = 1, start_key = "k" }, old = -9, d = 2.5, s = { 1, 5, 9 },
          last_implicit = 42, dec = { unscaled = "\0", scale = -1 } } },
        { "Mixed", { first = "only negative ids", old = 1, last_implicit = -1 } },
        { "TDmlResult", { partition_row_counts = { p1 = 10, p2 = 20 }, num_row_errors = 0,
          rows_modified = { x = 1 } } },
      }
      local function to_args(name, v)
        local def = ns._idl.defs[name]
        local args = {}
        for _, f in ipairs(def.fields) do
          local x = v[f.name]
          if x ~= nil then
            if ns._idl.defs[f.type] and ns._idl.defs[f.type].kind == "struct" then
              x = { ["$struct"] = f.type, args = to_args(f.type, x) }
            elseif f.type == "binary" then
              x = { ["$bytes"] = hex(x) }
            elseif f.type:find("^map") then -- entries in petrel's (sorted) order
              local keys, pairs_ = {}, {}
              for k in pairs(x) do keys[#keys + 1] = k end
              table.sort(keys)
              for j, k in ipairs(keys) do pairs_[j] = { k, x[k] } end
              x = { ["$map"] = pairs_ }
            end
            args[f.name] = x
          end
        end
        return args
      end
      local items = {}
      for i, c in ipairs(cases) do items[i] = { struct = c[1], args = to_args(c[1], c[2]) } end
      local py = python_bytes(ORDER, items)
      assert.equal(#cases, #py)
      for i, c in ipairs(cases) do
        assert.is_nil(py[i]["$error"], py[i]["$error"])
        local T = ns[c[1]]
        assert.equal(py[i].binary, hex(T:encode(c[2])), c[1] .. " #" .. i .. " (binary)")
        assert.equal(py[i].compact, hex(T:encode(c[2], { protocol = "compact" })),
          c[1] .. " #" .. i .. " (compact)")
      end
    end)

    it("keeps declaration order for introspection", function()
      local names = {}
      for i, f in ipairs(ns.Mixed:fields()) do names[i] = f.name .. ":" .. f.id end
      assert.same({ "flag:20", "nums:2", "first:-1", "m:7", "range:1", "old:-2", "d:15",
        "s:16", "last_implicit:-3", "dec:12" }, names)
    end)
  end)

  describe("sets in key form", function()
    local S = petrel.schema {
      E = petrel.enum { A = 1, B = 2, C = 30 },
      In = petrel.struct { { 1, "n", "i32" } },
      Sets = petrel.struct {
        { 1, "b", "set<bool>" }, { 2, "y", "set<byte>" }, { 3, "h", "set<i16>" },
        { 4, "i", "set<i32>" }, { 5, "l", "set<i64>" }, { 6, "d", "set<double>" },
        { 7, "s", "set<string>" }, { 8, "bin", "set<binary>" }, { 9, "u", "set<uuid>" },
        { 10, "e", "set<E>" }, { 11, "st", "set<In>" },
      },
    }
    local U1, U2 = "00000000-0000-0000-0000-000000000002", "00000000-0000-0000-0000-000000000001"

    it("works for every element type, false is absent, output sorted as for maps", function()
      local keyform = {
        b = { [true] = true, [false] = true }, y = { [5] = true, [-3] = true, [9] = false },
        h = { [300] = true, [-300] = true }, i = { [1] = true, [8] = true, [4] = false },
        l = { [i64("4611686018427387904")] = true, [-1] = true },
        d = { [2.5] = true, [-1.5] = true, [0.25] = false },
        s = { zeta = true, alpha = true, gone = false }, bin = { ["\255"] = true, ["\0"] = true },
        u = { [U1] = true, [U2] = true }, e = { [30] = true, [1] = true },
        st = { [{ n = 1 }] = true },
      }
      local sequence = {
        b = { false, true }, y = { -3, 5 }, h = { -300, 300 }, i = { 1, 8 },
        l = { -1, i64("4611686018427387904") }, d = { -1.5, 2.5 }, s = { "alpha", "zeta" },
        bin = { "\0", "\255" }, u = { U2, U1 }, e = { 1, 30 }, st = { { n = 1 } },
      }
      for _, proto in ipairs({ "binary", "compact" }) do
        local o = { protocol = proto }
        assert.equal(hex(S.Sets:encode(sequence, o)), hex(S.Sets:encode(keyform, o)))
      end
      -- the same bytes on both runtimes
      assert.equal("0e00040800000002000000010000000800",
        hex(S.Sets:encode({ i = { [8] = true, [1] = true } })))
      -- enum names as keys
      assert.equal(hex(S.Sets:encode({ e = { 2 } })), hex(S.Sets:encode({ e = { B = true } })))
    end)

    it("refuses values that are not true or false, naming the key", function()
      local ok, err = pcall(S.Sets.encode, S.Sets, { i = { [3] = true, [4] = "yes" } })
      assert.is_false(ok)
      assert.matches('Sets.i[4]: set in key form: true or false expected, got string', err, 1, true)
    end)
  end)

  describe("map keys", function()
    local S = petrel.schema {
      M = petrel.struct { { 1, "m", "map<i64,string>" }, { 2, "mi", "map<string,i32>" } },
    }

    it("are sorted, cdata keys on LuaJIT too, and equal keys are refused", function()
      local big, small = i64("4611686018427387904"), i64("-4611686018427387904")
      local m = { [big] = "big", [5] = "five", [small] = "small" }
      local bytes = S.M:encode({ m = m })
      -- ascending: small, 5, big
      assert.equal("0d00010a0b00000003" .. "c000000000000000" .. "00000005" .. "736d616c6c" ..
        "0000000000000005" .. "00000004" .. "66697665" .. "4000000000000000" .. "00000003" ..
        "626967" .. "00", hex(bytes))
      if is_jit then
        local dup = { [i64("5")] = "a", [i64("5")] = "b" }
        local ok, err = pcall(S.M.encode, S.M, { m = dup })
        assert.is_false(ok)
        assert.matches("duplicate key", err)
      end
      -- a number and its decimal text are one key too
      local ok, err = pcall(S.M.encode, S.M, { m = { [7] = "a", ["7"] = "b" } })
      assert.is_false(ok)
      assert.matches("M.m%[\"?7\"?%]: duplicate key", err)
    end)

    it("can be looked up after decode with int64_as_string", function()
      local big = i64("4611686018427387904")
      local bytes = S.M:encode({ m = { [big] = "big", [3] = "three" } })
      local v = assert(S.M:decode(bytes, 1, { int64_as_string = true }))
      assert.equal("big", v.m["4611686018427387904"])
      assert.equal("three", v.m[3])
      -- and it re-encodes to the same bytes
      assert.equal(hex(bytes), hex(S.M:encode(v)))
      -- i64 values decode the same way
      local L = petrel.schema { L = petrel.struct { { 1, "l", "list<i64>" }, { 2, "x", "i64" } } }.L
      local d = assert(L:decode(L:encode({ l = { 1, big }, x = i64("-9007199254740993") }), 1,
        { int64_as_string = true }))
      assert.equal(1, d.l[1])
      assert.equal("4611686018427387904", d.l[2])
      assert.equal("-9007199254740993", d.x)
      assert.equal(hex(L:encode({ l = { 1, big }, x = i64("-9007199254740993") })), hex(L:encode(d)))
    end)
  end)

  describe("errors", function()
    local S = petrel.schema {
      In = petrel.struct { { 1, "n", "i32" } },
      S = petrel.struct { { 1, "m", "map<string,i32>" }, { 2, "x", "i64" },
        { 3, "mi", "map<i32,In>" }, { 4, "in", "In" } },
    }

    it("say out of range for an i64 beyond 2^63, non-integral for 1.5", function()
      local ok, err = pcall(S.S.encode, S.S, { x = 2 ^ 63 })
      assert.is_false(ok)
      assert.matches("S.x: value 9.2233720368547758e+18 out of range for i64", err, 1, true)
      ok, err = pcall(S.S.encode, S.S, { x = 1.5 })
      assert.matches("S.x: i64 expected, got non-integral number", err, 1, true)
      ok, err = pcall(S.S.encode, S.S, { x = "12x" })
      assert.matches("S.x: i64 expected, got string", err, 1, true)
    end)

    it("name the map key", function()
      local ok, err = pcall(S.S.encode, S.S, { m = { a = 1, b = "two" } })
      assert.is_false(ok)
      assert.matches('S.m["b"]: i32 expected, got string', err, 1, true)
      ok, err = pcall(S.S.encode, S.S, { mi = { [5] = { n = "x" } } })
      assert.matches("S.mi[5].n: i32 expected, got string", err, 1, true)
      -- and decode errors do too
      local bytes = S.S:encode({ mi = { [5] = { n = 1 } } })
      local v, derr = S.S:decode(bytes:sub(1, -4))
      assert.is_nil(v)
      assert.matches("S.mi[5].n: need 4 bytes", derr, 1, true)
    end)

    it("with strict = true, refuse keys that are not fields", function()
      assert.is_string(S.S:encode({ x = 1, typo = 2 })) -- ignored by default
      local ok, err = pcall(S.S.encode, S.S, { x = 1, typo = 2 }, nil, { strict = true })
      assert.is_false(ok)
      assert.matches("'typo' is not a field of S", err, 1, true)
      ok, err = pcall(S.S.encode, S.S, { ["in"] = { n = 1, nn = 2 } }, { strict = true })
      assert.matches("S.in: 'nn' is not a field of In", err, 1, true)
      ok, err = pcall(S.S.encode, S.S, { [1] = true }, { strict = true })
      assert.matches("a number key is not a field of S", err, 1, true)
      -- fields, defaults and kept unknown fields pass
      local v = assert(S.In:decode(S.S:encode({ x = 5 }), 1, { unknown = true }))
      assert.is_string(S.In:encode(v, { strict = true }))
      assert.is_string(S.S:encode({ x = 1, m = {} }, { strict = true, protocol = "compact" }))
    end)
  end)
end)
