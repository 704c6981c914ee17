-- The Compact protocol through the one walker: {protocol = "compact"} on
-- encode, decode, size and message envelopes, on Lua 5.4 and LuaJIT.
-- (Byte-for-byte agreement with Apache's Python library is in
-- interop_spec.lua.)
local petrel = require "petrel"
local core = require "petrel.core"
local W = require "bench.workload"

local is_jit = jit ~= nil
local C = { protocol = "compact" }
local slurp = require "support.slurp"

local function hex(s)
  return (s:gsub(".", function(ch) return ("%02x"):format(ch:byte()) end))
end
local function unhex(h)
  h = h:gsub("%s", "")
  return (h:gsub("..", function(x) return string.char(tonumber(x, 16)) end))
end

local function i64(s) -- exact 64-bit literal on both runtimes
  if is_jit then return loadstring("return " .. s .. "LL")() end
  return math.tointeger(load("return " .. s)())
end

local S = petrel.schema {
  V = petrel.struct {
    { 1, "a", "i32" }, { 2, "s", "string" }, { 5, "t", "bool" },
    { 20, "l", "list<i16>" }, { -3, "n", "i64" }, { 3, "m", "map<string,double>" },
  },
  B = petrel.struct { { 1, "x", "bool" }, { 2, "y", "bool" }, { 100, "z", "bool" },
    { -1, "w", "bool" }, { 4, "lb", "list<bool>" }, { 6, "sb", "set<bool>" } },
  N = petrel.struct { { 1, "v", "i64" }, { 2, "kids", "list<N>", "optional" } },
  K = petrel.struct { { 1, "d", "double" }, { 2, "u", "uuid" }, { 3, "y", "byte" },
    { 4, "h", "i16" }, { 5, "e", "E" }, { 6, "bin", "binary" } },
  E = petrel.enum { A = 1, B = -7 },
  L = petrel.struct { { 1, "l64", "list<i64>" }, { 2, "l32", "list<i32>" },
    { 3, "l16", "list<i16>" }, { 4, "ld", "list<double>" }, { 5, "l8", "list<i8>" },
    { 6, "ls", "list<string>" }, { 7, "ll", "list<list<i32>>" },
    { 8, "mm", "map<i32,map<string,i64>>" }, { 9, "st", "set<string>" } },
  Old = petrel.struct { { 1, "a", "i32" } },
}

-- hand-computed: fields in ascending id order (-3, 1, 2, 3, 5, 20), as
-- Apache's generators write them
local V_BIN = "0afffd0000000000000096" .. "080001ffffffff" .. "0b00020000000178" ..
  "0d00030b0400000001000000016b3fe0000000000000" .. "02000501" ..
  "0f00140600000002" .. "0001fffe" .. "00"
local V_CPT = "0605ac02" .. "4501" .. "180178" .. "1b0187016b000000000000e03f" .. "21" ..
  "f9240203" .. "00"
local V_VAL = { a = -1, s = "x", t = true, l = { 1, -2 }, n = 150, m = { k = 0.5 } }

describe("compact protocol", function()
  it("writes the hand-computed bytes: short and long field headers, a bool in the type nibble, containers", function()
    assert.equal(hex(unhex(V_CPT)), hex(S.V:encode(V_VAL, C)))
    assert.equal(hex(unhex(V_BIN)), hex(S.V:encode(V_VAL)))
    local v = assert(S.V:decode(unhex(V_CPT), 1, C))
    assert.same(V_VAL.l, { v.l[1], v.l[2] })
    assert.equal(150, v.n)
    assert.equal(0.5, v.m.k)
    assert.is_true(v.t)
    assert.equal(#unhex(V_CPT), S.V:size(V_VAL, C))
  end)

  it("round-trips every canonical message, and size agrees", function()
    for _, w in ipairs({ { "small", "Request" }, { "medium", "Request" }, { "large", "Request" },
      { "mytest", "MyTest" }, { "blob", "Blob" }, { "vectors", "Vectors" } }) do
      local bin = slurp("bench/data/" .. w[1] .. ".bin")
      local T = W[w[2]]
      local v = assert(T:decode(bin))
      local c = T:encode(v, C)
      assert.is_true(#c < #bin, w[1])
      assert.equal(#c, T:size(v, C))
      local back, nxt = T:decode(c, 1, C)
      assert.is_table(back, nxt)
      assert.equal(#c + 1, nxt)
      assert.is_true(T:encode(back) == bin, w[1] .. ": compact round trip changed the value")
      -- into a buffer (no-copy links for the blob), and decoding from it
      local b = petrel.buffer()
      T:encode(v, b, C)
      assert.equal(#c, #b)
      assert.is_true(tostring(b) == c)
      assert.is_table((T:decode(b, 1, C)))
    end
  end)

  it("carries bools in field headers, both values, all id forms, and as list and set elements", function()
    for _, v in ipairs({ { x = true, y = false, z = true, w = false, lb = { true, false, false }, sb = { true } },
      { x = false, y = true, z = false, w = true, lb = {}, sb = {} } }) do
      local c = S.B:encode(v, C)
      local d = assert(S.B:decode(c, 1, C))
      assert.equal(v.x, d.x)
      assert.equal(v.y, d.y)
      assert.equal(v.z, d.z)
      assert.equal(v.w, d.w)
      assert.equal(#v.lb, #d.lb)
      for i = 1, #v.lb do assert.equal(v.lb[i], d.lb[i]) end
    end
    local c = S.B:encode({ w = true, x = true, y = false, z = true }, C)
    -- -1 long form (0x01, zigzag(-1) = 1), then 1 long form (delta 2 from
    -- -1 is a short form: 0x21), 2 short (0x12), 100 long (0x01, zigzag 200)
    assert.equal("0101" .. "21" .. "12" .. "01c801" .. "00", hex(c))
    -- list<bool>: elements 1 (true) and 2 (false), as Apache writes them
    assert.equal("49210102" .. "00", hex(S.B:encode({ lb = { true, false } }, C)))
  end)

  it("writes doubles little-endian, uuids as 16 bytes, bytes, enums, zigzag i16", function()
    local v = { d = 1.0, u = "00112233-4455-6677-8899-aabbccddeeff", y = -2, h = -300,
      e = "B", bin = "\0\255" }
    local c = S.K:encode(v, C)
    assert.equal("17000000000000f03f" .. "1d00112233445566778899aabbccddeeff" ..
      "13fe" .. "14d704" .. "150d" .. "1802" .. "00ff" .. "00", hex(c))
    local d = assert(S.K:decode(c, 1, { protocol = "compact", enum_names = true }))
    assert.equal(1.0, d.d)
    assert.equal(v.u, d.u)
    assert.equal(-2, d.y)
    assert.equal(-300, d.h)
    assert.equal("B", d.e)
    assert.equal(v.bin, d.bin)
  end)

  it("uses the long list header from 15 elements and the one-byte empty map", function()
    local l = {}
    for i = 1, 15 do l[i] = i end
    local c = S.L:encode({ l32 = l, mm = {} }, C)
    assert.equal("29f50f", hex(c:sub(1, 3))) -- field 2, list of 15 i32: long form
    assert.equal("6b00" .. "00", hex(c:sub(-3))) -- field 8 (delta 6): empty map
  end)

  it("round-trips numeric lists as tables and typed arrays, SIMD and scalar alike", function()
    local v = { l64 = { 0, -1, 1, i64("9223372036854775807"), i64("-9223372036854775808"), 300 },
      l32 = { 2147483647, -2147483648, 0, -64, 63, 64 }, l16 = { 32767, -32768, 5 },
      ld = { 0.5, -0.0, 1e300 }, l8 = { -128, 127, 0 }, ls = { "a", "", "c" },
      ll = { { 1 }, {}, { -2, 3 } }, mm = { [1] = { x = 5 }, [-2] = {} }, st = { "q", "p" } }
    for _, big in ipairs({ false, true }) do
      if big then
        for k = 1, 2000 do
          v.l64[k] = (k * 7919) % 1000003 - 500000
          v.l32[k] = (k * 31) % 70000 - 35000
          v.l16[k] = (k * 17) % 60000 - 30000
          v.ld[k] = k / 7
        end
      end
      local outs = {}
      for _, scalar in ipairs({ true, false }) do
        petrel.simd(scalar)
        local c = S.L:encode(v, C)
        outs[#outs + 1] = c
        local d = assert(S.L:decode(c, 1, C))
        assert.equal(#v.l64, #d.l64)
        for i = 1, #v.l64 do assert.is_true(d.l64[i] == v.l64[i]) end
        for i = 1, #v.l32 do assert.equal(v.l32[i], d.l32[i]) end
        local t = assert(S.L:decode(c, 1, { protocol = "compact", typed = true }))
        assert.equal("i64", t.l64:kind())
        for i = 1, #v.l64 do assert.is_true(t.l64[i] == v.l64[i]) end
        for i = 1, #v.l16 do assert.equal(v.l16[i], t.l16[i]) end
        for i = 1, #v.ld do assert.equal(v.ld[i], t.ld[i]) end
        -- typed arrays encode to the same bytes
        assert.is_true(S.L:encode(t, C) == c)
      end
      petrel.simd(false)
      assert.is_true(outs[1] == outs[2], "SIMD and scalar bytes differ")
    end
  end)

  it("keeps unknown fields and re-emits them in either protocol", function()
    local full = { a = -1, s = "x", t = true, l = { 1, -2 }, n = 150, m = { k = 0.5 } }
    local c = S.V:encode(full, C)
    local old = assert(S.Old:decode(c, 1, { protocol = "compact", unknown = true }))
    assert.equal(-1, old.a)
    assert.is_string(old[petrel.unknown])
    -- the kept bytes are Binary whatever was read: Compact out, Binary out
    for _, proto in ipairs({ "compact", "binary" }) do
      local again = S.Old:encode(old, { protocol = proto })
      local back = assert(S.V:decode(again, 1, { protocol = proto }))
      assert.equal(150, back.n)
      assert.equal("x", back.s)
      assert.is_true(back.t)
      assert.equal(0.5, back.m.k)
    end
    -- binary in, compact out
    local oldb = assert(S.Old:decode(S.V:encode(full), 1, { unknown = true }))
    local back = assert(S.V:decode(S.Old:encode(oldb, C), 1, C))
    assert.equal(-2, back.l[2])
  end)

  it("returns nil, err with path and offset for every truncation", function()
    local c = W.Request:encode(W.Request:decode(slurp("bench/data/small.bin")), C)
    for cut = 0, #c - 1 do
      local v, err = W.Request:decode(c:sub(1, cut), 1, C)
      assert.is_nil(v)
      assert.matches("^Request.*at offset %d+$", err)
    end
  end)

  it("checks hostile sizes before allocating and caps nesting", function()
    local rows = {
      -- list<i64> claiming 2^31-1 elements in 3 bytes
      { S.L, "19f6ffffffff07" .. "010203", "2147483647 elements cannot fit in the 3 bytes left", "L.l64" },
      { S.L, "19f6ffffffff07" .. "010203", "2147483647 elements cannot fit", "L.l64", true },
      -- a string longer than what is left
      { S.L, "69" .. "18" .. "ff01" .. "61", "string length 255 exceeds the 1 bytes left", "L.ls[1]" },
      -- a varint of 11 bytes
      { S.V, "0605" .. ("80"):rep(10) .. "01", "bad i64 varint", "V.n" },
      -- a negative (too large) count
      { S.L, "8b" .. "ffffffff0f", "bad map header", "L.mm" },
      -- a map claiming more entries than bytes
      { S.L, "8b" .. "ffff03" .. "5b" .. "00", "65535 entries cannot fit in the 1 bytes left", "L.mm" },
      -- bad field type nibble
      { S.V, "1e", "bad field header", "V" },
      -- element type mismatch
      { S.L, "19" .. "25" .. "0203", "list element type i32, expected i64", "L.l64" },
    }
    for _, r in ipairs(rows) do
      local v, err = r[1]:decode(unhex(r[2]), 1, { protocol = "compact", typed = r[5] })
      assert.is_nil(v, r[3])
      assert.matches(r[4], err, 1, true)
      assert.matches(r[3], err, 1, true)
      assert.matches("at offset %d+$", err)
    end
    -- nesting: 100 levels of N.kids
    local deep = "19" .. "1c" .. ("29" .. "1c"):rep(99) .. ("00"):rep(101)
    local v, err = S.N:decode(unhex("1602" .. deep), 1, C)
    assert.is_nil(v)
    assert.matches("nesting deeper than 64", err)
  end)

  it("frames and reads message envelopes in Compact", function()
    local b = petrel.buffer()
    W.Request:encode_message(W.Request:decode(slurp("bench/data/small.bin")), b, "echo", 1, 7, true, "compact")
    local frame = assert(b:read_frame(1048576))
    assert.equal("82210704" .. hex("echo"), hex(frame:sub(1, 8)))
    local name, mtype, seqid, pos, proto = core.msg_header(frame)
    assert.same({ "echo", 1, 7, 9, "compact" }, { name, mtype, seqid, pos, proto })
    assert.is_table((W.Request:decode(frame, pos, C)))
    -- negative seqids and the oneway type
    W.Request:encode_message({}, b, "f", 4, -2, false, "compact")
    local s = tostring(b)
    assert.same({ "f", 4, -2, #s, "compact" }, { core.msg_header(s) })
    assert.same({ false, "bad compact protocol version" }, { core.msg_header("\130\34\0\0") })
    -- the scanner finds where unframed Compact messages end, in any pieces
    local sc = core.scanner(1048576)
    local inb = petrel.buffer()
    for i = 1, #s do
      inb:write(s:sub(i, i))
      local n, p = sc:feed(inb)
      if i < #s then assert.is_nil(n) else assert.same({ #s, "compact" }, { n, p }) end
    end
  end)

  it("is detected from a connection's first bytes, framed or not, and HTTP is named", function()
    local b = petrel.buffer()
    W.Request:encode_message({}, b, "echo", 1, 1, true, "compact")
    assert.same({ "framed", "compact" }, { core.detect(b) })
    b:clear()
    W.Request:encode_message({}, b, "echo", 1, 1, false, "compact")
    assert.same({ "buffered", "compact" }, { core.detect(b) })
    assert.same({ false, "an HTTP request", "http" }, { core.detect("GET / HTTP/1.1\r\n") })
    assert.same({ false, "a TLS handshake", "tls" }, { core.detect("\22\3\1\0\165\1") })
    assert.is_nil(core.detect("\0\0\0\4ec"))
  end)

  -- integer fields go through a branch-free reader while 16 bytes are
  -- left and the exact one on the last bytes: both give the same values
  -- and refuse the same bad varints
  it("reads and writes i16, i32 and i64 varints alike with and without bytes after them", function()
    local P = petrel.schema { P = petrel.struct { { 1, "h", "i16" }, { 2, "i", "i32" },
      { 3, "n", "i64" }, { 4, "pad", "string", "optional" } } }.P
    local pad = ("x"):rep(20)
    local rows = { -- h, its varint, i, its varint, n, its varint
      { 0, "00", 0, "00", "0", "00" },
      { 63, "7e", -64, "7f", "64", "8001" },
      { -65, "8101", 150, "ac02", "-1", "01" },
      { 32767, "feff03", 2147483647, "feffffff0f", "9223372036854775807", "feffffffffffffffff01" },
      { -32768, "ffff03", -2147483648, "ffffffff0f", "-9223372036854775808", "ffffffffffffffffff01" },
      { -1234, "a313", 170917498, "f4f9ffa201", "9007199254740993", "8280808080808020" },
    }
    local function str(x) return (tostring(x):gsub("LL$", "")) end
    for _, r in ipairs(rows) do
      local n = i64(r[5])
      for _, withpad in ipairs({ false, true }) do
        local v = { h = r[1], i = r[3], n = n, pad = withpad and pad or nil }
        local want = "14" .. r[2] .. "15" .. r[4] .. "16" .. r[6]
          .. (withpad and "1814" .. hex(pad) or "") .. "00"
        local got = P:encode(v, C)
        assert.equal(want, hex(got))
        local back = assert(P:decode(got, 1, C))
        assert.equal(r[1], back.h)
        assert.equal(r[3], back.i)
        assert.equal(str(n), str(back.n))
      end
    end
    local tail = "1814" .. hex(pad) .. "00"
    local bad = {
      { "14808004", "bad i16 varint" },       -- 32768: past i16
      { "14ffff7f", "bad i16 varint" },
      { "25ffffffff1f", "bad i32 varint" },   -- past 32 bits
      { "258080808080" .. "00", "bad i32 varint" }, -- 6 bytes
      { "36" .. ("ff"):rep(9) .. "02", "bad i64 varint" }, -- past 64 bits
      { "36" .. ("80"):rep(10) .. "01", "bad i64 varint" }, -- 11 bytes
    }
    for _, b in ipairs(bad) do
      for _, t in ipairs({ tail, "" }) do
        local v, err = P:decode(unhex(b[1] .. t), 1, C)
        assert.is_nil(v, b[1] .. t)
        assert.matches(b[2], err, 1, true)
      end
    end
    -- cut short with and without a pad in the buffer past the struct
    local whole = P:encode({ h = 1, i = 1, n = i64("-9223372036854775808") }, C)
    local v, err = P:decode(whole:sub(1, 8), 1, C)
    assert.is_nil(v)
    assert.matches("i64 varint cut short", err, 1, true)
  end)

  it("reads options from a plain table by its entries and from a table with a metatable through it", function()
    local want = hex(S.V:encode(V_VAL, C))
    local inherited = setmetatable({}, { __index = { protocol = "compact" } })
    assert.equal(want, hex(S.V:encode(V_VAL, inherited)))
    -- keys that are no option, and non-string keys, are left alone
    assert.equal(want, hex(S.V:encode(V_VAL, { protocol = "compact", [1] = "json", extra = true })))
    local v = assert(S.V:decode(unhex(V_CPT), 1, { protocol = "compact", typed = false, enum_names = 1 }))
    assert.equal(150, v.n)
    assert.same({ 1, -2 }, { v.l[1], v.l[2] })
    local t = assert(S.V:decode(unhex(V_CPT), 1, setmetatable({}, { __index = { protocol = "compact", typed = true } })))
    assert.equal("userdata", type(t.l)) -- typed = true through __index: a petrel.array
    assert.has_error(function() S.V:encode(V_VAL, { protocol = "compacty" }) end)
    assert.has_error(function() S.V:encode(V_VAL, { protocol = "compac" }) end)
    assert.has_error(function() S.V:decode(unhex(V_CPT), 1, { protocol = "compact", max_depth = 0 }) end)
    local d, err = S.N:decode(unhex("1602" .. "19" .. "1c" .. "1602" .. "00" .. "00"), 1,
      { max_depth = 2, protocol = "compact" })
    assert.is_nil(d)
    assert.matches("nesting deeper than 2", err, 1, true)
  end)
end)
