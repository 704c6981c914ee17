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
local C = { protocol = "compact" }

local function hex(s)
  return (s:gsub(".", function(ch) return ("%02x"):format(ch:byte()) end))
end

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

  describe("the Compact skipper (core.skip, unknown fields), twin of the Binary one", function()
    it("does not skip a string whose bytes are cut short", function()
      assert.is_nil(core.skip("\3ab", 1, T_STRING, nil, "compact"))
      assert.equal(5, core.skip("\3abc", 1, T_STRING, nil, "compact"))
      assert.equal(2, core.skip("\0", 1, T_STRING, nil, "compact"))
    end)

    it("bounds a list of doubles by their width", function()
      local list3 = "\55" -- three doubles (size nibble 3, type 7) need 24 bytes
      assert.is_nil(core.skip(list3 .. string.rep("\0", 23), 1, T_LIST, nil, "compact"))
      assert.equal(1 + 1 + 24, core.skip(list3 .. string.rep("\0", 24), 1, T_LIST, nil, "compact"))
    end)

    it("bounds a map of doubles to doubles by their widths", function()
      local map2 = "\2\119" -- two double -> double entries need 32 bytes
      assert.is_nil(core.skip(map2 .. string.rep("\0", 31), 1, T_MAP, nil, "compact"))
      assert.equal(1 + 2 + 32, core.skip(map2 .. string.rep("\0", 32), 1, T_MAP, nil, "compact"))
    end)

    it("keeps to max_depth: 4 levels pass, 5 are refused", function()
      local function nested(levels) -- field 1 (a struct) levels - 1 times
        return string.rep("\28", levels - 1) .. string.rep("\0", levels)
      end
      assert.equal(#nested(4) + 1, core.skip(nested(4), 1, T_STRUCT, 4, "compact"))
      assert.is_nil(core.skip(nested(5), 1, T_STRUCT, 4, "compact"))
    end)

    it("passes nothing after a bool field's header (its value is in the type nibble)", function()
      -- { 1: bool true, 2: i32 1 }
      assert.equal(5, core.skip("\17\21\2\0", 1, T_STRUCT, nil, "compact"))
      -- an older schema skips an unknown struct holding a bool field
      local T = petrel.schema {
        In = petrel.struct { { 1, "f", "bool" }, { 2, "g", "i32" } },
        New = petrel.struct { { 1, "inner", "In" }, { 2, "x", "i32" } },
        Old = petrel.struct { { 2, "x", "i32" } },
      }
      for _, f in ipairs({ true, false }) do
        local c = T.New:encode({ inner = { f = f, g = 7 }, x = 5 }, C)
        local old = assert(T.Old:decode(c, 1, C))
        assert.equal(5, old.x)
        local kept = assert(T.Old:decode(c, 1, { protocol = "compact", unknown = true }))
        local back = assert(T.New:decode(T.Old:encode(kept, C), 1, C))
        assert.equal(f, back.inner.f)
        assert.equal(7, back.inner.g)
      end
    end)
  end)

  describe("the Compact decoder", function()
    local T = petrel.schema {
      I = petrel.struct { { 1, "a", "i32" }, { 2, "n", "i64" }, { 3, "s", "string" } },
      L = petrel.struct { { 4, "ld", "list<double>" } },
      J = petrel.struct { { 1, "a", "i32" }, { 17, "b", "i32" }, { 33, "c", "bool" }, { 34, "d", "bool" } },
    }

    it("refuses a 32-bit varint longer than 5 bytes", function()
      -- i32 field 1: six bytes whose value would be 0
      local v, err = T.I:decode("\21\128\128\128\128\128\1\0", 1, C)
      assert.is_nil(v)
      assert.equal("I.a: bad i32 varint at offset 1", err)
      -- a string length of six bytes
      v, err = T.I:decode("\56\129\128\128\128\128\0a\0", 1, C)
      assert.is_nil(v)
      assert.equal("I.s: bad string length at offset 1", err)
    end)

    it("refuses an i64 varint with bits past 64", function()
      local v, err = T.I:decode("\38" .. ("\255"):rep(9) .. "\2\0", 1, C)
      assert.is_nil(v)
      assert.equal("I.n: bad i64 varint at offset 1", err)
      -- bit 63 alone is the smallest i64
      v = assert(T.I:decode("\38" .. ("\255"):rep(9) .. "\1\0", 1, C))
      assert.is_true(v.n == (jit and loadstring("return -9223372036854775807LL - 1")() or math.mininteger))
    end)

    it("checks a list of doubles against the bytes left by 8 per element", function()
      -- field 4, three doubles, 10 bytes: 24 are needed
      for _, typed in ipairs({ false, true }) do
        local v, err = T.L:decode("\73\55" .. ("\0"):rep(10), 1, { protocol = "compact", typed = typed })
        assert.is_nil(v)
        assert.equal("L.ld: 3 elements cannot fit in the 10 bytes left at offset 2", err)
      end
    end)

    it("writes a field-id step of 16 or more in the long form, as Apache does", function()
      -- 1: short (delta 1); 17: long (i32 type, zigzag 17 = 0x22); 33: long
      -- bool; 34: short bool (delta 1)
      local c = T.J:encode({ a = 1, b = 2, c = true, d = false }, C)
      assert.equal("1502" .. "052204" .. "0142" .. "12" .. "00", hex(c))
      local v = assert(T.J:decode(c, 1, C))
      assert.same({ 1, 2, true, false }, { v.a, v.b, v.c, v.d })
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

    it("refuses a Compact list of integers whose count passes max_bytes as soon as it reads the count", function()
      -- envelope (5 bytes), field 1 list (1), long list header of i64 (1),
      -- count 2^31 - 1 (5): each element takes a byte at least
      local msg = "\130\33\1\1m" .. "\25\246\255\255\255\255\7"
      local n, err = core.scanner(1000):feed(petrel.buffer(msg))
      assert.is_false(n)
      assert.equal("message too large at offset 12", err)
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

  describe("message envelopes", function()
    it("refuse a strict Binary envelope of another version", function()
      assert.same({ false, "bad protocol version" }, { core.msg_header("\128\2\0\1" .. be32(1) .. "m" .. be32(7)) })
      assert.same({ "m", 1, 7, 14, "binary" }, { core.msg_header("\128\1\0\1" .. be32(1) .. "m" .. be32(7)) })
    end)

    it("refuse a non-strict name longer than max_name at once, not waiting for it", function()
      assert.same({ false, "bad method name length" }, { core.msg_header(be32(100000) .. "xx", 1, 100) })
      assert.same({ false, "bad method name length" }, { core.msg_header(be32(101) .. "xx", 1, 100) })
      assert.is_nil(core.msg_header(be32(100) .. "xx", 1, 100))
    end)
  end)

  describe("transport detection (core.detect)", function()
    local function varint(n)
      local out = {}
      repeat
        local b = n % 128
        n = (n - b) / 128
        out[#out + 1] = string.char(n > 0 and b + 128 or b)
      until n == 0
      return table.concat(out)
    end
    local BIN_BODY, CPT_BODY = "\8\0\1\0\0\0\5\0", "\21\10\0"
    local function messages()
      local list = {}
      for _, name in ipairs({ "echo", "getSomethingLong", "" }) do
        local kinds = {
          { "strict", "binary", "\128\1\0\1" .. be32(#name) .. name .. be32(3) .. BIN_BODY },
          { "non-strict", "binary", be32(#name) .. name .. "\1" .. be32(3) .. BIN_BODY },
          { "compact", "compact", "\130\33" .. varint(3) .. varint(#name) .. name .. CPT_BODY },
        }
        for _, k in ipairs(kinds) do
          list[#list + 1] = { k[3], "buffered", k[2], k[1] .. " unframed " .. name }
          list[#list + 1] = { be32(#k[3]) .. k[3], "framed", k[2], k[1] .. " framed " .. name }
        end
      end
      return list
    end

    it("waits until the bytes tell, at every split point of strict, non-strict and compact messages", function()
      for _, m in ipairs(messages()) do
        local s, tr, proto, what = m[1], m[2], m[3], m[4]
        local decided = false
        for k = 1, #s do
          local r = { core.detect(s:sub(1, k)) }
          if r[1] == nil then
            assert.is_false(decided, what .. ": undecided again after " .. k .. " bytes")
          else
            decided = true
            assert.same({ tr, proto }, r, what .. " after " .. k .. " bytes")
          end
        end
        assert.is_true(decided, what .. ": not decided on the whole message")
      end
    end)

    it("takes an unframed strict call whose seqid starts with a byte 1..4 for what it is, not a 2 GiB frame", function()
      local s = "\128\1\0\1" .. be32(4) .. "echo" .. be32(16909060) .. BIN_BODY
      assert.same({ "buffered", "binary" }, { core.detect(s) })
      assert.same({ "buffered", "binary" }, { core.detect(s, 2 ^ 40) })
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

  describe("the RPC frame limits (server and client)", function()
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
      local st = { closed = false, data = "", id = id }
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
      local answered = #small.data
      -- over it, on the same connection (framing already detected, so
      -- read_frame's limit alone stands): closed, no reply, long before
      -- the idle timeout
      loop.c:output(small.id):write(echo_call(2000, 2))
      loop.c:send(small.id)
      assert.is_true(wait(function() return small.closed or #small.data > answered end, 10000),
        "the connection stayed open")
      assert.equal(answered, #small.data, "the frame over the limit was answered")
      assert.is_true(small.closed)
      -- over it as a connection's first frame (detection refuses it)
      local big = raw(srv.port, echo_call(2000, 3))
      assert.is_true(wait(function() return big.closed or big.data ~= "" end, 10000), "the connection stayed open")
      assert.equal("", big.data, "the frame over the limit was answered")
    end)

    it("a client with max_frame = 1000 refuses a 2,000-byte reply, and its next calls are served", function()
      local srv = assert(petrel.server { loop = loop, port = 0, service = CALC.Calc, logger = false,
        handler = { echo = function(it) if it.id == 2 then it.name = string.rep("n", 2000) end; return it end } })
      local c = petrel.client { loop = loop, service = CALC.Calc, port = srv.port, max_frame = 1000, timeout = 10000 }
      local r = assert(c:echo { id = 1, name = "small", nums = {} })
      assert.equal("small", r.name)
      local big, err = c:echo { id = 2, name = "x", nums = {} }
      assert.is_nil(big)
      assert.matches("frame", tostring(err))
      r = assert(c:echo { id = 3, name = "again", nums = {} })
      assert.equal("again", r.name)
      petrel.close(c)
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
