-- The JSON protocol (Apache's TJSONProtocol) in the core, beyond what
-- spec/interop_spec.lua (every value both ways through Apache's Python
-- TJSONProtocol) and the cross tests check: the special doubles in every
-- spelling Apache's libraries write, bytes cut at every point, hostile
-- sizes and nesting refused with an error.
local petrel = require "petrel"

local S = assert(petrel.load([[
struct D { 1: double d }
struct L { 1: list<i32> l, 2: map<string, i64> m, 3: binary b }
struct N { 1: optional N n, 2: i32 x }
]], { text = true }))
local J = { protocol = "json" }

describe("JSON protocol", function()
  it("reads the special doubles as Apache's libraries write them", function()
    local cases = {
      { '"NaN"', "nan" }, { "nan", "nan" }, { '"Infinity"', math.huge }, { "inf", math.huge },
      { '"-Infinity"', -math.huge }, { "-inf", -math.huge }, { "1.5", 1.5 },
    }
    for _, c in ipairs(cases) do
      local v, err = S.D:decode('{"1":{"dbl":' .. c[1] .. '}}', 1, J)
      assert.is_table(v, c[1] .. ": " .. tostring(err))
      if c[2] == "nan" then
        assert.is_true(v.d ~= v.d, c[1])
      else
        assert.equal(c[2], v.d, c[1])
      end
    end
    -- and writes them as TJSONProtocol's specification says (quoted)
    assert.equal('{"1":{"dbl":"NaN"}}', S.D:encode({ d = 0 / 0 }, J))
    assert.equal('{"1":{"dbl":"-Infinity"}}', S.D:encode({ d = -math.huge }, J))
    -- words that are not numbers are refused, and quoted numbers (as Apache's
    -- Java reader refuses them outside map keys)
    for _, w in ipairs({ "nope", '"Inf"x', "in", "1e", '"abc"', '"2.5"' }) do
      assert.is_nil((S.D:decode('{"1":{"dbl":' .. w .. '}}', 1, J)), w)
    end
  end)

  it("refuses every truncation of a message with an error", function()
    local s = S.L:encode({ l = { 1, -2, 3 }, m = { a = 1, ["b\"\\/\n"] = -9 }, b = "\0\1\2\255" }, J)
    local back = assert(S.L:decode(s, 1, J))
    assert.same({ 1, -2, 3 }, back.l)
    assert.equal("\0\1\2\255", back.b)
    for k = 0, #s - 1 do
      local v, err = S.L:decode(s:sub(1, k), 1, J)
      assert.is_nil(v, "decoded a truncation at " .. k)
      assert.is_string(err)
    end
  end)

  it("refuses hostile sizes before allocating, and deep nesting", function()
    local v, err = S.L:decode('{"1":{"lst":["i32",2147483647,1,2]}}', 1, J)
    assert.is_nil(v)
    assert.is_string(err)
    v, err = S.L:decode('{"2":{"map":["str","i64",999999999,{"a":1}]}}', 1, J)
    assert.is_nil(v)
    assert.is_string(err)
    local deep = string.rep('{"1":{"rec":', 5000) .. '{}' .. string.rep("}}", 5000)
    v, err = S.N:decode(deep, 1, J)
    assert.is_nil(v)
    assert.matches("deep", err)
  end)
end)
