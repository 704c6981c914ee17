-- Regression tests named after what they reproduce: each one kills a
-- mutation of spec/mutations.txt that every other spec let through (make
-- mutate runs them against those mutations). Network only on 127.0.0.1;
-- every wait is bounded.
local petrel = require "petrel"
local core = require "petrel.core"
local W = require "bench.workload"
local slurp = require "support.slurp"

local is_jit = jit ~= nil
local function be32(n)
  local f = math.floor
  return string.char(f(n / 16777216) % 256, f(n / 65536) % 256, f(n / 256) % 256, n % 256)
end
local function strict(name, body, seqid)
  return "\128\1\0\1" .. be32(#name) .. name .. be32(seqid or 7) .. body
end

local T_STRING, T_STRUCT, T_MAP, T_LIST = 11, 12, 13, 15

-- steps loop until pred() or ms pass; pred()'s last answer
local function run_until(loop, pred, ms)
  local deadline = loop:now() + ms
  while not pred() and loop:now() < deadline do loop:step(20) end
  return pred()
end

describe("regressions", function()
  describe("the wire skipper (core.skip, unknown fields)", function()
    it("does not skip a string whose bytes are cut short (returned 8, past the end)", function()
      assert.is_nil(core.skip("\0\0\0\3ab", 1, T_STRING))
      assert.equal(8, core.skip("\0\0\0\3abc", 1, T_STRING))
      assert.equal(5, core.skip("\0\0\0\0", 1, T_STRING))
      -- a struct whose unknown string field ends early must not decode (the
      -- byte after a Lua string's end is a NUL, which reads as STOP)
      local S = petrel.schema { S = petrel.struct { {1, "a", "i32"} } }.S
      local v, err = S:decode("\11\0\2" .. "\0\0\0\3ab")
      assert.is_nil(v)
      assert.matches("cannot skip field 2 of type string", err)
    end)

    it("bounds a list of fixed-width elements by their width", function()
      local list3 = "\10" .. be32(3) -- three i64 elements need 24 bytes
      assert.is_nil(core.skip(list3 .. string.rep("\0", 23), 1, T_LIST))
      assert.equal(1 + 5 + 24, core.skip(list3 .. string.rep("\0", 24), 1, T_LIST))
      local S = petrel.schema { S = petrel.struct { {1, "a", "i32"} } }.S
      local v, err = S:decode("\15\0\9" .. list3 .. string.rep("\0", 16) .. "\0")
      assert.is_nil(v)
      assert.matches("cannot skip field 9 of type list", err)
    end)

    it("bounds a map of fixed-width keys and values by their widths", function()
      local map3 = "\8\8" .. be32(3) -- three i32 -> i32 entries need 24 bytes
      assert.is_nil(core.skip(map3 .. string.rep("\0", 23), 1, T_MAP))
      assert.equal(1 + 6 + 24, core.skip(map3 .. string.rep("\0", 24), 1, T_MAP))
    end)
  end)

  describe("the message scanner (unframed transport)", function()
    it("refuses a string that would pass max_bytes as soon as it reads its length", function()
      -- 20 bytes of envelope and field header, then a length of 90: 110 > 100
      local msg = strict("m", "\11\0\1" .. be32(90))
      local n, err = core.scanner(100):feed(petrel.buffer(msg))
      assert.is_false(n)
      assert.equal("message too large at offset 20", err)
      -- 80 fits: the scanner waits for the bytes
      assert.is_nil((core.scanner(100):feed(petrel.buffer(strict("m", "\11\0\1" .. be32(80))))))
    end)

    it("agrees with core.skip on max_depth: 4 levels pass, 5 are refused", function()
      local function nested(levels) -- a struct body with levels - 1 structs inside
        return string.rep("\12\0\1", levels - 1) .. string.rep("\0", levels)
      end
      local ok4 = strict("x", nested(4))
      assert.equal(#ok4, core.scanner(1024, 4):feed(petrel.buffer(ok4)))
      assert.equal(#nested(4) + 1, core.skip(nested(4), 1, T_STRUCT, 4))
      local n, err = core.scanner(1024, 4):feed(petrel.buffer(strict("x", nested(5))))
      assert.is_false(n)
      assert.matches("nesting too deep", err)
      assert.is_nil(core.skip(nested(5), 1, T_STRUCT, 4))
    end)
  end)

  describe("the decoder", function()
    it("refuses a map whose value type on the wire is not the schema's", function()
      local S = petrel.schema { S = petrel.struct { {1, "m", "map<string,i32>"} } }.S
      local wire = "\13\0\1" .. "\11\10" .. be32(1) .. be32(1) .. "k" .. string.rep("\0", 8) .. "\0"
      local v, err = S:decode(wire)
      assert.is_nil(v)
      assert.equal("S.m: map<string,i64> on the wire, expected map<string,i32> at offset 3", err)
    end)
  end)

  describe("the encoder", function()
    it("writes integer map keys in signed ascending order (negative keys first)", function()
      local T = petrel.schema {
        S = petrel.struct { {1, "m", "map<i32,string>"} },
        L = petrel.struct { {1, "m", "map<i64,bool>"} },
      }
      local bytes = T.S:encode { m = { [3] = "d", [-1] = "b", [0] = "c", [-5] = "a" } }
      local want = "\13\0\1\8\11" .. be32(4)
        .. "\255\255\255\251" .. be32(1) .. "a"
        .. "\255\255\255\255" .. be32(1) .. "b"
        .. "\0\0\0\0" .. be32(1) .. "c"
        .. "\0\0\0\3" .. be32(1) .. "d" .. "\0"
      assert.equal(petrel.hex(want), petrel.hex(bytes))
      -- i64 keys: the smallest first, the largest last
      local lo = is_jit and loadstring("return -9223372036854775807LL - 1")() or math.mininteger
      local hi = is_jit and loadstring("return 9223372036854775807LL")() or math.maxinteger
      -- (bytes 1-3 field header, 4-9 map header, then 8-byte key, 1-byte value)
      local b2 = T.L:encode { m = { [5] = true, [-2] = true } }
      assert.equal("\255\255\255\255\255\255\255\254", b2:sub(10, 17))
      assert.equal("\0\0\0\0\0\0\0\5", b2:sub(19, 26))
      if not is_jit then -- LuaJIT writes cdata keys in table order (not sorted)
        local b3 = T.L:encode { m = { [hi] = true, [lo] = true, [0] = false } }
        assert.equal("\128\0\0\0\0\0\0\0", b3:sub(10, 17))
        assert.equal("\127\255\255\255\255\255\255\255", b3:sub(28, 35))
      end
    end)

    it("links large strings into a buffer, and into a connection's output, without copying", function()
      local blob = W.Blob:decode(slurp("bench/data/blob.bin"))
      assert.equal(1048576, #blob.data)
      -- into a plain buffer: one no-copy node for the 1 MiB string
      local before = petrel.pool_stats()
      local b = petrel.buffer()
      W.Blob:encode(blob, b)
      local mid = petrel.pool_stats()
      assert.equal(before.nocopy_blocks + 1, mid.nocopy_blocks)
      assert.equal(before.nocopy_bytes + 1048576, mid.nocopy_bytes)
      assert.is_true(mid.bytes_in_use - before.bytes_in_use < 65536, "the blob was copied into pool blocks")
      assert.equal(#slurp("bench/data/blob.bin"), #b)
      b:clear()
      assert.equal(before.nocopy_blocks, petrel.pool_stats().nocopy_blocks)

      -- into the output of a TCP connection, framed as the RPC layer sends it
      local loop = assert(petrel.loop { backend = "epoll" })
      local lid = assert(loop.c:listen("127.0.0.1", 0))
      local cid = assert(loop.c:connect("127.0.0.1", loop.c:port(lid), 5000))
      local sid, got, connected = nil, {}, false
      loop:attach(lid, { on_accept = function(_, id) sid = id end })
      loop:attach(cid, { on_connected = function(_, _, err) connected = (err == 0) end })
      assert.is_true(run_until(loop, function() return sid ~= nil and connected end, 10000))
      loop:attach(sid, { on_data = function(_, id) got[#got + 1] = loop.c:input(id):read() end })
      local out = loop.c:output(cid)
      local args = W.Echo.functions.blob.args
      local n0 = petrel.pool_stats().nocopy_blocks
      args:encode_message({ req = blob }, out, "blob", 1, 9, true)
      assert.equal(n0 + 1, petrel.pool_stats().nocopy_blocks)
      assert.is_true(out:nodes() <= 3, "nodes: " .. out:nodes())
      local total = #out
      loop.c:send(cid)
      run_until(loop, function()
        local have = 0
        for _, part in ipairs(got) do have = have + #part end
        return have >= total
      end, 20000)
      local wire = table.concat(got)
      assert.equal(total, #wire)
      local frame = petrel.buffer(wire):read_frame(16 * 1048576)
      local _, _, seqid, pos = core.msg_header(frame)
      assert.equal(9, seqid)
      assert.is_true(args:decode(frame, pos).req.data == blob.data)
      -- sent: the link goes once the kernel has taken the bytes
      assert.is_true(run_until(loop, function() return petrel.pool_stats().nocopy_blocks == n0 end, 10000))
      loop:close(cid)
      loop:close(sid)
      loop:close(lid)
      loop:step(0)
      loop:free()
    end)
  end)

  describe("framing", function()
    it("read_frame takes a frame of exactly the limit and refuses one byte more", function()
      local b = petrel.buffer(be32(100) .. string.rep("x", 100))
      assert.equal(string.rep("x", 100), b:read_frame(100))
      b:write(be32(101) .. string.rep("y", 101))
      assert.same({ false, "frame of 101 bytes (limit 100)" }, { b:read_frame(100) })
    end)
  end)

  describe("buffers", function()
    it("a slice never appends over the bytes its source still holds", function()
      local b = petrel.buffer { block = 256 }
      b:write("hello world")
      local s = b:slice(5) -- shares the block: s holds "hello", b holds " world"
      s:write("XYZ")
      assert.equal(" world", tostring(b))
      assert.equal("helloXYZ", tostring(s))
      b:write("!") -- b's node ends at the block's fill mark: it may append
      assert.equal(" world!", tostring(b))
      assert.equal("helloXYZ", tostring(s))
    end)
  end)

  describe("the RPC server's frame limit", function()
    local CALC = assert(petrel.load("spec/thrift/calc.thrift"))
    local loop

    before_each(function() loop = assert(petrel.loop()) end)
    after_each(function()
      loop.c:close_all()
      loop:step(0)
      loop:free()
    end)

    -- a raw client: sends bytes, records what comes back and the close
    local function raw(port, bytes)
      local id = assert(loop.c:connect("127.0.0.1", port, 5000))
      local st = { closed = false, data = "" }
      loop:attach(id, {
        on_connected = function(_, _, err) if err ~= 0 then st.closed = true end end,
        on_data = function(_, cid) st.data = st.data .. loop.c:input(cid):read() end,
        on_closed = function() st.closed = true end,
      })
      loop.c:output(id):write(bytes)
      loop.c:send(id)
      return st
    end

    local function wait(pred, ms) return run_until(loop, pred, ms) end

    local function echo_call(name_len, seqid)
      local args = CALC.Calc.functions.echo.args:encode { it = { id = 1, name = string.rep("n", name_len), nums = {} } }
      local msg = strict("echo", args, seqid)
      return be32(#msg) .. msg
    end

    it("drops a 2,000-byte frame when max_frame is 1000, without answering", function()
      local srv = assert(petrel.server { loop = loop, port = 0, service = CALC.Calc, max_frame = 1000, logger = false,
        idle_timeout = 60000, handler = { echo = function(it) return it end } })
      -- within the limit: answered
      local small = raw(srv.port, echo_call(100, 1))
      assert.is_true(wait(function() return #small.data > 0 end, 10000))
      -- over it: closed, no reply (long before the idle timeout)
      local big = raw(srv.port, echo_call(2000, 2))
      assert.is_true(wait(function() return big.closed end, 10000), "the connection stayed open")
      assert.equal("", big.data)
    end)

    it("drops a frame header claiming 2 GiB at once, not at the idle timeout", function()
      local srv = assert(petrel.server { loop = loop, port = 0, service = CALC.Calc, logger = false,
        idle_timeout = 60000, handler = { echo = function(it) return it end } })
      local h = raw(srv.port, "\127\255\255\255" .. "\128\1\0\1")
      assert.is_true(wait(function() return h.closed end, 10000), "the connection stayed open")
      assert.equal("", h.data)
    end)
  end)
end)
