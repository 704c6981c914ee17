-- Compact data written by Apache's Python library (tools/pyfixtures.py):
-- a Parquet-shaped file's FileMetaData footer and a Jaeger-shaped agent
-- datagram, decoded to the values Python wrote, and the two examples
-- (examples/parquet_footer.lua, examples/jaeger_batch.lua) run on them.
local petrel = require "petrel"
local canon = require "support.canon"
local cjson = require "cjson"

local LUA = jit and "luajit" or "lua5.4"
local ENV = 'LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH_5_4="' .. (os.getenv("PETREL_BUILD") or "build") ..
  '/lua5.4/?.so;;" LUA_CPATH="' .. (os.getenv("PETREL_BUILD") or "build") .. '/luajit/?.so;;" '

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("*a")
  local ok, _, code = p:close()
  return out, ok == true or code == 0
end

local function fixture(what)
  local path = os.tmpname()
  local out, ok = sh("timeout 60 /usr/bin/python3 tools/pyfixtures.py " .. what .. " " .. path)
  assert(ok, out)
  return path, cjson.decode(out)
end

describe("Compact files written by Apache's Python library", function()
  it("a Parquet footer decodes to what Python wrote, and the example reads it", function()
    local IDL = "spec/thrift/parquet_shaped.thrift"
    local ns = assert(petrel.load(IDL))
    local path, want = fixture("parquet")
    local f = assert(io.open(path, "rb"))
    local data = f:read("*a")
    f:close()
    assert.equal("PAR1", data:sub(-4))
    local b1, b2, b3, b4 = data:byte(-8, -5)
    local len = b1 + b2 * 256 + b3 * 65536 + b4 * 16777216
    local meta, nxt = ns.FileMetaData:decode(data, #data - 8 - len + 1, { protocol = "compact" })
    assert.is_table(meta, nxt)
    assert.equal(#data - 7, nxt)
    local defs = ns._idl.defs
    assert.is_true(canon.equal(canon.normal_py(defs, "FileMetaData", want),
      canon.normal(defs, "FileMetaData", meta)))
    -- petrel writes the same footer bytes
    assert.is_true(ns.FileMetaData:encode(meta, { protocol = "compact" }) ==
      data:sub(#data - 8 - len + 1, #data - 8))
    local out, ok = sh(ENV .. LUA .. " examples/parquet_footer.lua " .. IDL .. " " .. path)
    os.remove(path)
    assert.is_true(ok, out)
    assert.matches("version 2, 3 rows, 1 row groups, footer " .. len .. " bytes", out, 1, true)
    assert.matches("  name BYTE_ARRAY OPTIONAL UTF8", out, 1, true)
    assert.matches("  id: INT64 SNAPPY, 3 values, data page at 4", out, 1, true)
    assert.matches("key/value: writer = petrel tests", out, 1, true)
  end)

  it("a Jaeger emitBatch datagram decodes to the Batch Python sent, and the example reads it", function()
    local IDL = "spec/thrift/jaeger/agent.thrift"
    local ns = assert(petrel.load(IDL))
    local path, want = fixture("jaeger")
    local f = assert(io.open(path, "rb"))
    local dgram = f:read("*a")
    f:close()
    local name, mtype, seqid, pos, proto = petrel.core.msg_header(dgram)
    assert.same({ "emitBatch", 4, 0, "compact" }, { name, mtype, seqid, proto })
    local args = assert(ns.Agent.functions.emitBatch.args:decode(dgram, pos, { protocol = proto }))
    local defs = ns._idl.defs
    assert.is_true(canon.equal(canon.normal_py(defs, "jaeger.Batch", want),
      canon.normal(defs, "jaeger.Batch", args.batch)))
    -- the same datagram from petrel's client side
    local b = petrel.buffer()
    ns.Agent.functions.emitBatch.args:encode_message(args, b, "emitBatch", 4, 0, false, "compact")
    assert.is_true(tostring(b) == dgram)
    local out, ok = sh(ENV .. LUA .. " examples/jaeger_batch.lua " .. IDL .. " " .. path)
    os.remove(path)
    assert.is_true(ok, out)
    assert.matches("compact oneway call 'emitBatch' (type 4, seqid 0)", out, 1, true)
    assert.matches("service petrel-demo, 2 spans, seqNo 7", out, 1, true)
    assert.matches("span 1 (parent 0) GET /users: 1234 us [http.status_code=200, error=false, ratio=0.25]",
      out, 1, true)
    assert.matches("log at 1700000000000100: event=cache miss", out, 1, true)
  end)
end)
