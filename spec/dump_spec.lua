-- petrel.dump (readable text of values) and petrel.hex (hex dumps).
local petrel = require "petrel"

local is_jit = jit ~= nil
local function i64(text) -- an i64 as the decoder gives it on this runtime
  if is_jit then return loadstring("return " .. text .. "LL")() end
  return math.tointeger(tonumber(text))
end

describe("petrel.dump", function()
  local dump = petrel.dump

  it("writes scalars as Lua literals", function()
    assert.equal("42", dump(42))
    assert.equal("-7", dump(-7))
    assert.equal("0.1", dump(0.1))
    assert.equal("-90.12418505942077", dump(-90.12418505942077))
    assert.equal(is_jit and "1" or "1.0", dump(1.0)) -- Lua 5.4 keeps float-ness visible
    assert.equal("nan", dump(0 / 0))
    assert.equal("inf", dump(math.huge))
    assert.equal("-inf", dump(-math.huge))
    assert.equal("true", dump(true))
    assert.equal("nil", dump(nil))
    assert.equal("<function>", dump(print))
  end)

  it("escapes strings, keeps valid UTF-8, cuts long ones", function()
    assert.equal([["a\x00b\n\t\r\"\\\x7f"]], dump('a\0b\n\t\r"\\\127'))
    assert.equal('"日本 é"', dump("日本 é"))
    -- invalid UTF-8 (a lone continuation byte, a cut sequence, an overlong form)
    assert.equal([["\x80 \xe6\x97 \xc0\xaf"]], dump("\128 \230\151 \192\175"))
    assert.equal([["\xc3\xa9"]], dump("é", { utf8 = false }))
    assert.equal([["abc"...(10 bytes)]], dump("abcdefghij", { bytes = 3 }))
  end)

  it("shows int64 values faithfully on each runtime", function()
    local T = petrel.schema { S = petrel.struct { {1, "v", "list<i64>"} } }
    local v = T.S:decode(T.S:encode { v = { i64("-9223372036854775808"), 5, i64("9007199254740993") } })
    if is_jit then
      assert.equal("{v = list{-9223372036854775808LL, 5, 9007199254740993LL}}", dump(v))
      assert.equal("18446744073709551615ULL", dump(loadstring("return 0xffffffffffffffffULL")()))
    else
      assert.equal("{v = list{-9223372036854775808, 5, 9007199254740993}}", dump(v))
    end
  end)

  it("names the container kinds the decoder marks, with sorted keys", function()
    local T = petrel.schema {
      S = petrel.struct {
        {1, "l", "list<i32>"}, {2, "s", "set<string>"}, {3, "m", "map<i32,string>"},
        {4, "name", "string"}, {5, "inner", "S", "optional"},
      },
    }
    local v = T.S:decode(T.S:encode {
      l = { 3, 1, 2 }, s = { "b", "a" }, m = { [2] = "two", [-10] = "minus ten", [1] = "one" },
      name = "x", inner = { l = {}, s = {}, m = {}, name = "" },
    })
    assert.equal('{inner = {l = list{}, m = map{}, name = "", s = set{}}, '
      .. 'l = list{3, 1, 2}, m = map{[-10] = "minus ten", [1] = "one", [2] = "two"}, '
      .. 'name = "x", s = set{"b", "a"}}', dump(v, { width = 1000 }))
    -- plain tables: the sequence first, then the other keys sorted
    -- (numbers, then strings, then booleans); odd names bracketed
    assert.equal('{1, 2, [2.5] = 0, [5] = 5, ["a b"] = 1, ["end"] = 2, x = 3, [true] = 4}',
      dump({ 1, 2, [5] = 5, [2.5] = 0, ["a b"] = 1, ["end"] = 2, x = 3, [true] = 4 }, { width = 1000 }))
    -- a map with keys 1..n is still shown with its keys
    assert.equal('map{[1] = "a", [2] = "b"}', dump(setmetatable({ "a", "b" }, petrel.map)))
  end)

  it("shows typed arrays, buffers, unknown fields and cycles", function()
    assert.equal('array("i64", {1, 2, 3})', dump(petrel.array("i64", { 1, 2, 3 })))
    assert.equal('array("double", {0.5})', dump(petrel.array("double", { 0.5 })))
    local b = petrel.buffer("hello")
    assert.equal("buffer(5 bytes)", dump(b))
    assert.equal(5, #b) -- nothing consumed
    local Old = petrel.schema { S = petrel.struct { {1, "a", "i32"} } }
    local New = petrel.schema { S = petrel.struct { {1, "a", "i32"}, {2, "b", "i16"} } }
    local v = Old.S:decode(New.S:encode { a = 1, b = 2 }, 1, { unknown = true })
    assert.equal([[{a = 1, [petrel.unknown] = "\x06\x00\x02\x00\x02"}]], dump(v))
    local t = { name = "loop" }
    t.self = t
    assert.equal('{name = "loop", self = <cycle>}', dump(t))
    local shared = { 1 }
    assert.equal("{a = {1}, b = {1}}", dump({ a = shared, b = shared })) -- shared is not a cycle
  end)

  it("keeps what fits on one line and breaks the rest, packing list elements", function()
    local v = { name = "a fairly long name", list = setmetatable({}, petrel.list) }
    for i = 1, 30 do v.list[i] = i * 1000 end
    assert.equal(table.concat({
      "{",
      "  list = list{",
      "    1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10000, 11000, 12000,",
      "    13000, 14000, 15000, 16000, 17000, 18000, 19000, 20000, 21000, 22000, 23000,",
      "    24000, 25000, 26000, 27000, 28000, 29000, 30000",
      "  },",
      '  name = "a fairly long name"',
      "}",
    }, "\n"), dump(v))
    assert.equal('{a = 1, b = "x"}', dump({ a = 1, b = "x" }))
    assert.equal('{\n    a = 1,\n    b = "x"\n}', dump({ a = 1, b = "x" }, { width = 5, indent = 4 }))
  end)

  it("limits depth and the entries shown per table", function()
    local deep = { a = { b = { c = { d = 1 } } } }
    assert.equal("{a = {b = { ...1 items }}}", dump(deep, { depth = 2 }))
    assert.equal("{ ...1 items }", dump(deep, { depth = 0 }))
    assert.equal("{}", dump({}, { depth = 0 }))
    local big = setmetatable({}, petrel.list)
    for i = 1, 100 do big[i] = i end
    assert.equal("list{1, 2, 3, ... 97 more}", dump(big, { items = 3 }))
    assert.equal('array("i32", {1, 2, ... 98 more})', dump(petrel.array("i32", big), { items = 2 }))
    assert.equal("{a = 1, ... 2 more}", dump({ a = 1, b = 2, c = 3 }, { items = 1 }))
  end)

  it("rejects bad options", function()
    assert.has_error(function() dump({}, { width = "wide" }) end,
      "petrel.dump: option width must be a non-negative number")
    assert.has_error(function() dump({}, { depth = -1 }) end)
    -- T:decode returns the value and the next position: dump(T:decode(s)) is a mistake
    assert.has_error(function() dump({}, 12) end, "petrel.dump: options table expected, got number"
      .. " (a call returning several values, like decode, goes in parentheses)")
  end)
end)

describe("petrel.hex", function()
  it("lays bytes out as hexdump -C does", function()
    assert.equal(
      "00000000  80 01 00 01 00 00 00 04  65 63 68 6f 00 00 00 07  |........echo....|\n"
      .. "00000010  0b 00                                             |..|",
      petrel.hex("\128\1\0\1\0\0\0\4echo\0\0\0\7\11\0"))
    assert.equal("", petrel.hex(""))
  end)

  it("reads a buffer without consuming it", function()
    local b = petrel.buffer("abc")
    b:write("def")
    assert.equal("00000000  61 62 63 64 65 66" .. string.rep(" ", 33) .. "|abcdef|", petrel.hex(b))
    assert.equal(6, #b)
  end)

  it("takes a width, an offset and a limit", function()
    assert.equal("00000010  41 42 43 44  |ABCD|\n00000014  45           |E|",
      petrel.hex("ABCDE", { width = 4, offset = 16 }))
    assert.equal("00000000  41 42  |AB|\n... 3 more bytes", petrel.hex("ABCDE", { width = 2, max = 2 }))
    local long = string.rep("x", 5000)
    local lines = {}
    for l in petrel.hex(long):gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal(4096 / 16 + 1, #lines) -- 4096 bytes by default
    assert.equal("... 904 more bytes", lines[#lines])
    local _, newlines = petrel.hex(long, { max = false }):gsub("\n", "")
    assert.equal(313, newlines + 1) -- all 5000 bytes, 16 a line
    assert.has_error(function() petrel.hex(42) end, "petrel.hex: string or buffer expected, got number")
    assert.has_error(function() petrel.hex("x", { width = 0 }) end)
  end)
end)
