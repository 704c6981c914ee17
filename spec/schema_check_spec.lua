-- Schema builders check what the IDL loader checks: enum values are
-- integers, defaults fit their field types (at compile time, naming the
-- path), oneway functions return void and declare no throws.
local petrel = require "petrel"

local function compile_err(defs)
  local ok, err = pcall(petrel.schema, defs)
  assert.is_false(ok, "compiled")
  return tostring(err)
end

local function with_default(ty, v, extra)
  local defs = {
    S = petrel.struct { { 1, "x", ty, default = v } },
    Mode = petrel.enum { FAST = 1, SAFE = 2 },
    P = petrel.struct { { 1, "n", "i32" }, { 2, "s", "string", "optional" } },
  }
  for k, d in pairs(extra or {}) do defs[k] = d end
  return defs
end

describe("schema builders", function()
  it("refuse enum values that are not integers in the i32 range", function()
    for _, v in ipairs({ 1.5, "1", true, 2 ^ 31, -2 ^ 31 - 1 }) do
      local ok, err = pcall(petrel.enum, { FAST = v })
      assert.is_false(ok, tostring(v))
      assert.matches("petrel.enum: FAST: value must be an integer in the i32 range", tostring(err))
    end
    -- a hand-written definition table is checked when compiled
    local err = compile_err({ E = { kind = "enum", values = { A = 0.5 }, order = { "A" } } })
    assert.matches("E.A: value must be an integer in the i32 range, got 0.5", err)
    assert.equal(-2147483648, petrel.schema({ E = petrel.enum { LOW = -2147483648 } }).E.LOW)
  end)

  it("refuse defaults that do not fit the field's type, at compile time", function()
    local rows = {
      { "i32", "a", "S.x: default must be an i32, got string \"a\"" },
      { "i32", 1.5, "S.x: default must be an i32, got 1.5" },
      { "i8", 300, "S.x: default 300 is out of the i8 range" },
      { "i16", -40000, "S.x: default %-40000 is out of the i16 range" },
      { "bool", 1, "S.x: default must be a bool, got 1" },
      { "double", "1", "S.x: default must be a double, got string \"1\"" },
      { "string", 5, "S.x: default must be a string, got 5" },
      { "binary", {}, "S.x: default must be a binary, got table" },
      { "uuid", "nope", "S.x: default must be a uuid" },
      { "list<i32>", { 1, "a" }, "S.x%[2%]: default must be an i32, got string \"a\"" },
      { "list<i32>", 7, "S.x: default must be a list, got 7" },
      { "set<string>", { 1 }, "S.x%[1%]: default must be a string, got 1" },
      { "map<string,i32>", { a = "b" }, "S.x%[\"a\"%]: default must be an i32, got string \"b\"" },
      { "map<i32,i32>", { a = 1 }, "S.x: default map key must be an i32, got string \"a\"" },
      { "Mode", 7, "S.x: default 7 is not a value of enum Mode" },
      { "Mode", "SLOW", "S.x: default \"SLOW\" is not a name of enum Mode" },
      { "P", { n = "x" }, "S.x.n: default must be an i32, got string \"x\"" },
      { "P", { nope = 1 }, "S.x: default has no field 'nope' in P" },
      { "P", 3, "S.x: default must be a table %(struct P%), got 3" },
    }
    for _, row in ipairs(rows) do
      local err = compile_err(with_default(row[1], row[2]))
      assert.matches(row[3], err)
    end
  end)

  it("accept defaults of every kind that fit", function()
    local big = jit and loadstring("return 9007199254740993LL")() or 9007199254740993
    local rows = {
      { "i32", 7 }, { "i8", -128 }, { "i64", big }, { "double", 2 }, { "double", 0.5 },
      { "bool", false }, { "string", "s" }, { "binary", "\0" },
      { "uuid", "00112233-4455-6677-8899-aabbccddeeff" }, { "list<i64>", { 1, 2 } },
      { "set<i32>", { 1, 2 } }, { "set<i32>", { [3] = true } }, { "map<string,list<i32>>", { a = { 1 } } },
      { "Mode", 2 }, { "Mode", "SAFE" }, { "P", { n = 1, s = "x" } }, { "list<P>", { { n = 2 } } },
    }
    for _, row in ipairs(rows) do
      local T = petrel.schema(with_default(row[1], row[2]))
      local v = T.S:decode(T.S:encode({}))
      assert.is_not_nil(v.x, row[1])
    end
    -- an enum default given by name decodes as its value
    local T = petrel.schema(with_default("Mode", "SAFE"))
    assert.equal(2, T.S:decode(T.S:encode({})).x)
  end)

  it("refuse oneway functions with a result or throws", function()
    local ok, err = pcall(petrel.service, { fire = { oneway = true, result = "i32" } })
    assert.is_false(ok)
    assert.matches("petrel.service: oneway function fire must return void", tostring(err))
    ok, err = pcall(petrel.service, { fire = { oneway = true,
      throws = { { 1, "oops", "Oops" } } } })
    assert.is_false(ok)
    assert.matches("petrel.service: oneway function fire cannot declare throws", tostring(err))
    -- hand-written definition tables too, when compiled
    local e = compile_err({
      Oops = petrel.exception { { 1, "m", "string" } },
      Svc = { kind = "service", order = { "fire" }, functions = { fire = {
        oneway = true, args = {}, throws = { { id = 1, name = "oops", type = "Oops" } } } } },
    })
    assert.matches("Svc.fire: oneway functions cannot declare throws", e)
    assert.is_table(petrel.service { fire = { oneway = true, args = { { 1, "x", "i32" } } } })
  end)
end)
