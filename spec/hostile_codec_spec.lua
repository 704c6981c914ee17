-- Hostile input for the decoder: every length and count on the wire is
-- checked against the bytes present before anything is allocated, nesting
-- is capped, sizes do not overflow. Each row must give nil, err with the
-- field path and the byte offset, never raise, and allocate little: rows
-- that fail at a header at most 4 bytes per input byte (+16 KiB), the
-- others at most GROW bytes per input byte (+64 KiB), the cost of one Lua
-- table per wire value of a byte or more.
local petrel = require "petrel"
local core = require "petrel.core"

local GROW = 128

local function be32(n)
  local f = math.floor
  return string.char(f(n / 16777216) % 256, f(n / 65536) % 256, f(n / 256) % 256, n % 256)
end
local function fh(t, id) return string.char(t, math.floor(id / 256) % 256, id % 256) end
local function list(et, n) return string.char(et) .. be32(n) end
local function map(kt, vt, n) return string.char(kt, vt) .. be32(n) end

local wide = {}
for i = 1, 40 do wide[i] = { i, "f" .. i, i % 2 == 0 and "i32" or "string", "optional" } end

local S = petrel.schema {
  E = petrel.enum { A = 1 },
  In = petrel.struct { {1, "n", "i32", "required"}, {2, "s", "string", "optional"} },
  N = petrel.struct { {1, "v", "i64"}, {2, "kids", "list<N>", "optional"},
    {3, "by", "map<string,N>", "optional"} },
  Wide = petrel.struct(wide),
  H = petrel.struct {
    {1, "l64", "list<i64>"},
    {2, "lb", "list<bool>"},
    {3, "ls", "list<string>"},
    {4, "lst", "list<In>"},
    {5, "ll", "list<list<i32>>"},
    {6, "mll", "map<i64,i64>"},
    {7, "msi", "map<string,In>"},
    {8, "su", "set<uuid>"},
    {9, "s", "string"},
    {10, "bin", "binary"},
    {11, "u", "uuid"},
    {12, "t32", "list<i32>", typed = true},
    {13, "md", "map<double,bool>"},
    {14, "in", "In"},
    {15, "wl", "list<Wide>"},
    {16, "le", "list<E>"},
    {17, "mbb", "map<bool,bool>"},
    {18, "ms", "map<string,string>"},
    {19, "sd", "set<double>", typed = true},
  },
}
local H, N = S.H, S.N

-- bytes allocated by f() (collector stopped), what f returned
local function allocated(f)
  collectgarbage("collect")
  collectgarbage("stop")
  local before = collectgarbage("count")
  local r = table.pack(f())
  local grew = (collectgarbage("count") - before) * 1024
  collectgarbage("restart")
  return grew, table.unpack(r, 1, r.n)
end

local M = 2147483647
local nested = {}
for i = 1, 60 do nested[i] = fh(15, 2) .. list(12, 65536) end

-- { name, type, bytes, error text, path, offset [, opts] [, late = true] }
-- late: fails after decoding values, so it may allocate GROW per byte
local rows = {
  -- counts that cannot fit the bytes left
  { "list<i64> of 2^31-1 in 12 bytes", H, fh(15, 1) .. list(10, M) .. ("x"):rep(12),
    "2147483647 elements cannot fit in the 12 bytes left", "H.l64", 8 },
  { "the same as a typed array", H, fh(15, 1) .. list(10, M) .. ("x"):rep(12),
    "2147483647 elements cannot fit in the 12 bytes left", "H.l64", 8, { typed = true } },
  { "typed list<i32> field", H, fh(15, 12) .. list(8, M) .. ("x"):rep(7),
    "2147483647 elements cannot fit in the 7 bytes left", "H.t32", 8 },
  { "typed set<double> one element short", H, fh(14, 19) .. list(4, 3) .. ("x"):rep(23),
    "3 elements cannot fit in the 23 bytes left", "H.sd", 8 },
  { "list<i64> count whose n * 8 wraps 32 bits", H, fh(15, 1) .. list(10, 0x20000001) .. ("x"):rep(16),
    "536870913 elements cannot fit in the 16 bytes left", "H.l64", 8 },
  { "list<i64> one element short", H, fh(15, 1) .. list(10, 3) .. ("x"):rep(23),
    "3 elements cannot fit in the 23 bytes left", "H.l64", 8 },
  { "list<bool> one byte short", H, fh(15, 2) .. list(2, 101) .. ("\1"):rep(100),
    "101 elements cannot fit in the 100 bytes left", "H.lb", 8 },
  { "list<string>: 4 bytes each at least", H, fh(15, 3) .. list(11, 3) .. ("\0"):rep(11),
    "3 elements cannot fit in the 11 bytes left", "H.ls", 8 },
  { "list<struct> of 2^31-1", H, fh(15, 4) .. list(12, M) .. "\0\0\0",
    "2147483647 elements cannot fit in the 3 bytes left", "H.lst", 8 },
  { "inner list claims 2^31-1", H, fh(15, 5) .. list(15, 1) .. list(8, M) .. "\0",
    "2147483647 elements cannot fit in the 1 bytes left", "H.ll[1]", 13 },
  { "map<i64,i64> of 2^31-1", H, fh(13, 6) .. map(10, 10, M) .. ("x"):rep(40),
    "2147483647 entries cannot fit in the 40 bytes left", "H.mll", 9 },
  { "map<i64,i64> count whose n * 16 wraps 32 bits", H, fh(13, 6) .. map(10, 10, 0x10000001) .. ("x"):rep(32),
    "268435457 entries cannot fit in the 32 bytes left", "H.mll", 9 },
  { "map<string,In>: 5 bytes an entry at least", H, fh(13, 7) .. map(11, 12, 3) .. ("\0"):rep(14),
    "3 entries cannot fit in the 14 bytes left", "H.msi", 9 },
  { "map<string,string> of 2^31-1", H, fh(13, 18) .. map(11, 11, M),
    "2147483647 entries cannot fit in the 0 bytes left", "H.ms", 9 },
  { "set<uuid> count whose n * 16 is 2^32", H, fh(14, 8) .. list(16, 0x10000000) .. ("u"):rep(16),
    "268435456 elements cannot fit in the 16 bytes left", "H.su", 8 },
  { "set<uuid> element cut short", H, fh(14, 8) .. list(16, 1) .. ("u"):rep(10),
    "1 elements cannot fit in the 10 bytes left", "H.su", 8 },
  -- lengths
  { "string of 2^31-1 in 3 bytes", H, fh(11, 9) .. be32(M) .. "abc",
    "string length 2147483647 exceeds the 3 bytes left", "H.s", 3 },
  { "binary of 2^31-1", H, fh(11, 10) .. be32(M) .. ("\0"):rep(100),
    "string length 2147483647 exceeds the 100 bytes left", "H.bin", 3 },
  { "string of 2^31-2", H, fh(11, 9) .. be32(M - 1),
    "string length 2147483646 exceeds the 0 bytes left", "H.s", 3 },
  { "string one byte short", H, fh(11, 9) .. be32(5) .. "abcd",
    "string length 5 exceeds the 4 bytes left", "H.s", 3 },
  { "string length cut short", H, fh(11, 9) .. "\0\0",
    "need 4 bytes, 2 left", "H.s", 3 },
  { "list<string> element of 2^31-1", H, fh(15, 3) .. list(11, 1) .. be32(M) .. "abcd",
    "string length 2147483647 exceeds the 4 bytes left", "H.ls[1]", 8 },
  { "map key of 2^31-1", H, fh(13, 18) .. map(11, 11, 1) .. be32(M) .. "abcd",
    "string length 2147483647 exceeds the 4 bytes left", "H.ms<key #1>", 9 },
  { "negative string length -2^31", H, fh(11, 9) .. be32(0x80000000),
    "negative string length -2147483648", "H.s", 3 },
  { "negative string length -1", H, fh(11, 10) .. be32(0xffffffff) .. "xx",
    "negative string length -1", "H.bin", 3 },
  { "negative list count", H, fh(15, 1) .. list(10, 0xffffffff),
    "negative element count -1", "H.l64", 3 },
  { "negative typed list count", H, fh(15, 12) .. list(8, 0x80000000),
    "negative element count -2147483648", "H.t32", 3 },
  { "negative map count", H, fh(13, 6) .. map(10, 10, 0x80000000),
    "negative entry count -2147483648", "H.mll", 3 },
  { "uuid cut short", H, fh(16, 11) .. ("u"):rep(15),
    "need 16 bytes, 15 left", "H.u", 3 },
  { "list header cut short", H, fh(15, 1) .. "\10\0\0",
    "need 5 bytes, 3 left", "H.l64", 3 },
  { "map header cut short", H, fh(13, 6) .. "\10\10\0\0\0",
    "need 6 bytes, 5 left", "H.mll", 3 },
  { "field header cut short", H, "\8\0",
    "need 3 bytes, 2 left", "H", 0 },
  { "empty input", H, "", "need 1 bytes, 0 left", "H", 0 },
  -- types
  { "list element type mismatch", H, fh(15, 1) .. list(8, 1) .. be32(5) .. "\0",
    "list element type i32, expected i64", "H.l64", 3 },
  { "typed list element type mismatch", H, fh(15, 12) .. list(10, 1) .. ("\0"):rep(9),
    "list element type i64, expected i32", "H.t32", 3 },
  { "map types mismatch", H, fh(13, 6) .. map(8, 10, 1) .. ("\0"):rep(13),
    "map<i32,i64> on the wire, expected map<i64,i64>", "H.mll", 3 },
  { "NaN map key", H, fh(13, 13) .. map(4, 2, 1) .. "\127\248\0\0\0\0\0\0\1\0",
    "NaN map key", "H.md<key #1>", 17 },
  { "required field missing in a nested struct", H, fh(12, 14) .. "\0\0",
    "required field missing", "H.in.n", 4 },
  { "required field missing in a list element", H, fh(15, 4) .. list(12, 2) .. fh(8, 1) .. be32(1) .. "\0\0\0",
    "required field missing", "H.lst[2].n", 17 },
  { "unknown field type", H, fh(99, 77) .. "xxxx",
    "cannot skip field 77 of type invalid type", "H", 3 },
  { "unknown list field of 2^31-1", H, fh(15, 200) .. list(10, M) .. ("x"):rep(64),
    "cannot skip field 200 of type list", "H", 3 },
  { "unknown map field of 2^31-1 entries", H, fh(13, 201) .. map(11, 12, M) .. ("x"):rep(64),
    "cannot skip field 201 of type map", "H", 3 },
  { "unknown string field of 2^31-1", H, fh(11, 300) .. be32(M) .. "abc",
    "cannot skip field 300 of type string", "H", 3 },
  { "unknown field of a negative size", H, fh(11, -2 + 65536) .. be32(0xfffffff0),
    "cannot skip field -2 of type string", "H", 3 },
  { "unknown fields kept, then one cut short", H, fh(8, 400) .. be32(1) .. fh(11, 401) .. be32(9),
    "cannot skip field 401 of type string", "H", 10, { unknown = true } },
  { "known field of the wrong type, 2^31-1", H, fh(11, 1) .. be32(M),
    "cannot skip field 1 of type string", "H", 3 },
  -- nesting
  { "unknown struct nested 100000 deep", H, fh(12, 999):rep(100000),
    "cannot skip field 999 of type struct", "H", 3 },
  { "unknown list<list<...>> nested 100000 deep", H, fh(15, 998) .. list(15, 1):rep(100000),
    "cannot skip field 998 of type list", "H", 3 },
  { "recursive struct nested past 64", N, (fh(15, 2) .. list(12, 1)):rep(40),
    "nesting deeper than 64", "N" .. (".kids[1]"):rep(32), 256 },
  { "map<string,N> nested past max_depth 10", N, (fh(13, 3) .. map(11, 12, 1) .. be32(0)):rep(10),
    "nesting deeper than 10", "N" .. ('.by[""]'):rep(5), 65,
    { max_depth = 10 } },
  { "lists in lists past max_depth 2", H, fh(15, 5) .. list(15, 1) .. list(8, 0) .. "\0",
    "nesting deeper than 2", "H.ll[1]", 13, { max_depth = 2 } },
  { "a numeric list is a level too (as on encode)", H, fh(15, 1) .. list(10, 0) .. "\0",
    "nesting deeper than 1", "H.l64", 8, { max_depth = 1 } },
  { "and a typed one", H, fh(15, 12) .. list(8, 1) .. be32(7) .. "\0",
    "nesting deeper than 1", "H.t32", 8, { max_depth = 1, typed = true } },
  -- a claim that fits and fails late: what was built is bounded by the input
  { "lists each claiming the rest of the input", N, table.concat(nested) .. ("\255"):rep(65536),
    "nesting deeper than 64", "N" .. (".kids[1]"):rep(32), 256, late = true },
  { "65536 empty wide structs, cut short", H, fh(15, 15) .. list(12, 65536) .. ("\0"):rep(65536),
    "need 1 bytes, 0 left", "H.wl", 65544, late = true },
  { "map<bool,bool> of 32768 entries, then cut short", H, fh(13, 17) .. map(2, 2, 32768) .. ("\1"):rep(65536),
    "need 1 bytes, 0 left", "H.mbb", 65545, late = true },
  { "65536 empty list<list<i32>>, the last one claiming more", H,
    fh(15, 5) .. list(15, 65536) .. list(8, 0):rep(65535) .. list(8, 1),
    "1 elements cannot fit in the 0 bytes left", "H.ll[65536]", 327688, late = true },
}

if jit then
  -- LuaJIT tables hold 2^27 array and 2^26 hash slots: refused, not raised
  rows[#rows + 1] = { "list<bool> longer than a LuaJIT table", H,
    fh(15, 2) .. list(2, 2 ^ 27 + 1) .. ("\1"):rep(2 ^ 27 + 1) .. "\0",
    "134217729 elements are more than a Lua table holds", "H.lb", 8 }
  rows[#rows + 1] = { "map<bool,bool> larger than a LuaJIT table", H,
    fh(13, 17) .. map(2, 2, 2 ^ 26 + 1) .. ("\1"):rep(2 ^ 27 + 2) .. "\0",
    "67108865 entries are more than a Lua table holds", "H.mbb", 9 }
end

local function esc(s) return (s:gsub("%p", "%%%0")) end

describe("hostile input", function()
  for _, r in ipairs(rows) do
    local name, T, bytes, text, path, offset, opts = table.unpack(r, 1, 7)
    it(name, function()
      for _, input in ipairs({ bytes, petrel.buffer(bytes) }) do
        local grew, ok, v, err = allocated(function() return pcall(T.decode, T, input, 1, opts) end)
        assert.is_true(ok, v) -- never raises
        assert.is_nil(v)
        assert.is_string(err)
        assert.matches("^" .. esc(path) .. ": " .. esc(text) .. " at offset " .. offset .. "$", err)
        local limit = r.late and GROW * #bytes + 65536 or 4 * #bytes + 16384
        assert.is_true(grew <= limit, ("%s: %d bytes allocated for %d of input"):format(name, grew, #bytes))
      end
    end)
  end

  it("a deep path loses its middle in the message, never the offset", function()
    local bytes = (fh(15, 2) .. list(12, 1)):rep(90) .. "\99\0\1"
    local v, err = N:decode(bytes, 1, { max_depth = 200 })
    assert.is_nil(v)
    assert.matches("^N%.kids%[1%]%.kids.*%.%.%..*kids%[1%]: cannot skip field 1 of type invalid type at offset 723$", err)
    assert.is_true(#err < 400)
  end)

  it("what succeeds allocates a bounded multiple of the input", function()
    local cases = {
      { H, fh(15, 15) .. list(12, 65536) .. ("\0"):rep(65536) .. "\0" },
      { H, fh(15, 4) .. list(12, 8192) .. (fh(8, 1) .. be32(1) .. "\0"):rep(8192) .. "\0" },
      { H, fh(13, 17) .. map(2, 2, 32768) .. ("\1"):rep(65536) .. "\0" },
      { H, fh(15, 5) .. list(15, 65536) .. list(8, 0):rep(65536) .. "\0" },
      { N, (fh(15, 2) .. list(12, 1)):rep(31) .. ("\0"):rep(32) },
    }
    for i, c in ipairs(cases) do
      local grew, v = allocated(function() return c[1]:decode(c[2]) end)
      assert.is_table(v, "case " .. i)
      assert.is_true(grew <= GROW * #c[2] + 65536, ("case %d: %d bytes for %d"):format(i, grew, #c[2]))
    end
  end)

  it("core.skip bounds its recursion whatever max_depth it is given", function()
    local deep = fh(12, 1):rep(400000) .. ("\0"):rep(400001)
    assert.is_nil(core.skip(deep, 4, 12, 1e9))
    local ok = fh(12, 1):rep(500) .. ("\0"):rep(501)
    assert.equal(#ok + 1, core.skip(ok, 1, 12, 1e9))
    assert.is_nil(core.skip(ok, 1, 12, -5))
  end)
end)
