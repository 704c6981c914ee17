-- Interop with Apache Thrift's Python library (python3-thrift under
-- /usr/bin/python3, code from `thrift --gen py`) through tools/pyinterop.py:
-- values petrel encodes decode to equal values in Python, and bytes Python
-- encodes decode to equal values in petrel. Python's missing module is a
-- failure, not a skip.
local petrel = require "petrel"
local W = require "petrel.workload"
local canon = require "support.canon"
local cjson = require "cjson"

local WORKLOAD = "../shared/bench/workload.thrift"
local PY = "/usr/bin/python3 tools/pyinterop.py"

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function tohex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end
local function fromhex(h)
  return (h:gsub("..", function(x) return string.char(tonumber(x, 16)) end))
end

-- Run pyinterop in batch mode on a JSON text; returns the decoded array.
local function py(thrift, struct, mode, input, includes)
  local tmp = os.tmpname()
  local f = assert(io.open(tmp, "wb"))
  f:write(input)
  f:close()
  local env = includes and ("PETREL_THRIFT_INCLUDES=" .. table.concat(includes, ":") .. " ") or ""
  local p = assert(io.popen(string.format("%s%s --thrift %s --struct %s --%s --many < %s 2>&1",
    env, PY, thrift, struct, mode, tmp)))
  local out = p:read("*a")
  p:close()
  os.remove(tmp)
  local ok, arr = pcall(cjson.decode, out)
  assert(ok and type(arr) == "table", "pyinterop failed: " .. out:sub(1, 500))
  return arr
end

local function seeded(seed)
  return function(n)
    seed = (seed * 1103515245 + 12345) % 2147483648
    return math.floor(seed / 65536) % n
  end
end

-- Both directions for a list of values of one struct type.
local function check_both_ways(defs, ns, thrift, struct, values, includes)
  local T = ns[struct]
  -- petrel -> Python
  local hexes = {}
  for i, v in ipairs(values) do hexes[i] = '"' .. tohex(T:encode(v)) .. '"' end
  local decoded = py(thrift, struct, "decode", "[" .. table.concat(hexes, ",") .. "]", includes)
  assert.equal(#values, #decoded)
  for i, v in ipairs(values) do
    assert.is_nil(type(decoded[i]) == "table" and decoded[i]["$error"] or nil)
    local want = canon.normal(defs, struct, v)
    local got = canon.normal_py(defs, struct, decoded[i])
    assert.is_true(canon.equal(want, got), struct .. " value #" .. i .. " differs after Python decode")
  end
  -- Python -> petrel
  local jsons = {}
  for i, v in ipairs(values) do jsons[i] = canon.to_json(defs, struct, v) end
  local encoded = py(thrift, struct, "encode", "[" .. table.concat(jsons, ",") .. "]", includes)
  assert.equal(#values, #encoded)
  for i, v in ipairs(values) do
    assert.is_string(encoded[i], "Python could not encode " .. struct .. " #" .. i)
    local d, err = T:decode(fromhex(encoded[i]))
    assert.is_table(d, err)
    assert.is_true(canon.equal(canon.normal(defs, struct, v), canon.normal(defs, struct, d)),
      struct .. " value #" .. i .. " differs after petrel decode")
  end
end

describe("interop with Apache Thrift Python", function()
  it("has python3-thrift available", function()
    local p = io.popen("/usr/bin/python3 -c 'import thrift.protocol.fastbinary; print(\"ok\")' 2>&1")
    local out = p:read("*a")
    p:close()
    assert.equal("ok\n", out)
  end)

  it("decodes the canonical messages to the same values as Python", function()
    for _, w in ipairs({ { "small", "Request" }, { "medium", "Request" }, { "mytest", "MyTest" },
      { "blob", "Blob" } }) do
      local bytes = slurp("../shared/bench/data/" .. w[1] .. ".bin")
      local v = W[w[2]]:decode(bytes)
      local got = py(WORKLOAD, w[2], "decode", '["' .. tohex(bytes) .. '"]')
      assert.is_true(canon.equal(canon.normal(W._defs, w[2], v),
        canon.normal_py(W._defs, w[2], got[1])), w[1])
    end
  end)

  it("agrees both ways on random values of every workload struct", function()
    local rnd = seeded(2024)
    for _, struct in ipairs({ "Ano", "MyTest", "Base", "Item", "Request", "Blob", "Vectors" }) do
      local values = {}
      for i = 1, 25 do values[i] = canon.random(W._defs, struct, rnd) end
      check_both_ways(W._defs, W, WORKLOAD, struct, values)
    end
  end)

  -- IDL files loaded at run time: every struct of the file, both ways.
  local IDL_FILES = {
    { "spec/thrift/alltypes.thrift" },
    { WORKLOAD },
    { "spec/idl/main.thrift", { "spec/idl/incdir" } },
    { "spec/idl/common/shared.thrift" },
    { "spec/idl/common/base_types.thrift" },
    { "spec/idl/incdir/extra.thrift" },
    { "spec/idl/odd/oneline.thrift" },
    { "spec/idl/odd/crlf.thrift" },
    { "spec/idl/odd/tolerated.thrift" },
  }
  for _, f in ipairs(IDL_FILES) do
    it("agrees both ways on every struct of " .. f[1] .. " loaded with petrel.load", function()
      local ns, err = petrel.load(f[1], { include_dirs = f[2] })
      assert.is_table(ns, err)
      local defs = ns._idl.defs
      local structs = {}
      for name, d in pairs(defs) do
        -- Apache's Python generator leaves thrift_spec empty for structs
        -- with implicit (negative) field ids, so its accelerated codec
        -- cannot read or write them: those are checked by petrel's own
        -- round trips only.
        local negative = false
        for _, fd in ipairs(d.fields or {}) do negative = negative or fd.id < 0 end
        if not name:find(".", 1, true) and not negative and (d.kind == "struct"
          or d.kind == "union" or d.kind == "exception") then
          structs[#structs + 1] = name
        end
      end
      table.sort(structs)
      assert.is_true(#structs > 0)
      local rnd = seeded(#f[1])
      for _, struct in ipairs(structs) do
        local values = {}
        for i = 1, 12 do values[i] = canon.random(defs, struct, rnd) end
        check_both_ways(defs, ns, f[1], struct, values, f[2])
      end
    end)
  end
end)
