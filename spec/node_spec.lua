-- The npm `thrift` package (Apache Thrift's Node.js library, pinned by
-- tools/npm-peers.sh) as a real peer: tools/node_thrift_peer.js, on code
-- Debian's thrift compiler generates from spec/thrift/thrift_test.thrift at
-- the start of this spec (removed at its end), against petrel's ThriftTest
-- server (examples/thrift_test_server.lua) and petrel's client
-- (examples/thrift_test_client.lua, and petrel.client in this process for
-- what that script cannot name: Compact inside THeader), for every
-- transport and protocol node's library offers: framed, buffered, THeader
-- (over its buffered transport) and THeader inside a frame; binary,
-- compact, JSON (not inside THeader: node has no JSON there); multiplexed.
-- Each side is a process bounded by timeout(1), killed by its PID, on
-- 127.0.0.1 with a port the kernel picks. A machine without node or the
-- pinned packages FAILS here (tools/deps.sh installs them).
local X = require "support.crosstest"

local BACKEND = os.getenv("PETREL_BACKEND") or "epoll"
-- what the servers name as their back end: the one BACKEND gives here
-- ("auto" in the URING=0 build's run: epoll)
local BACKEND_TEXT
do
  local l = assert(require("petrel.core").loop { backend = BACKEND })
  BACKEND_TEXT = l:backend():match("^%S+")
  l:free()
end
local NODE_CHECKS = 24 -- what tools/node_thrift_peer.js's client makes

-- The combinations: node's --transport, --protocol and --multiplexed, and
-- the same wire in Apache's cross-test names (row, transport) for petrel's
-- server and client scripts; in_process: petrel.client in this process
-- instead of the client script (which has no name for Compact in THeader).
-- node_server_bug: node's server gets it wrong (docs/interop.md).
local COMBOS = {
  { "framed", "binary", false, "binary", "framed" },
  { "buffered", "binary", false, "binary", "buffered" },
  { "framed", "compact", false, "compact", "framed" },
  { "buffered", "compact", false, "compact", "buffered" },
  { "framed", "json", false, "json", "framed" },
  { "buffered", "json", false, "json", "buffered" },
  { "framed-header", "binary", false, "header", "framed" },
  { "header", "binary", false, "header", "buffered", node_server_bug = true },
  { "framed-header", "compact", false, "header", "framed", in_process = true },
  { "header", "compact", false, "header", "buffered", in_process = true, node_server_bug = true },
  { "framed", "binary", true, "multi", "framed" },
  { "buffered", "compact", true, "multic", "buffered" },
  { "framed", "json", true, "multij", "framed" },
  { "framed-header", "binary", true, "multih", "framed" },
  { "framed-header", "compact", true, "multih", "framed", in_process = true },
  { "header", "binary", true, "multih", "buffered", node_server_bug = true },
}

-- petrel.client's transport for node's name of it
local PETREL_TRANSPORT = { framed = "framed", buffered = "buffered", header = "header",
  ["framed-header"] = "framed-header" }

local gen -- the generated JavaScript (a directory under build/npm)

local function node_args(c)
  return string.format("--transport %s --protocol %s%s --gen %s", c[1], c[2],
    c[3] and " --multiplexed" or "", X.quote(gen))
end

local function name(c)
  return string.format("%s/%s%s", c[1], c[2], c[3] and " multiplexed" or "")
end

-- node's server: { pid, out, port, line } (waits up to 60 s for its ready line)
local function node_server(c)
  local pid, out = X.bg("timeout 300 node tools/node_thrift_peer.js server --port 0 --lifetime 280 "
    .. node_args(c))
  local deadline = os.time() + 60
  while true do
    local text = X.read(out)
    local line = text:match("[^\n]*ready on [^\n]*")
    if line then return { pid = pid, out = out, port = tonumber(line:match(":(%d+) ")), line = line } end
    if not X.alive(pid) or os.time() > deadline then
      X.stop({ pid = pid, out = out })
      error("node's server did not start: " .. text, 0)
    end
    X.sleep(0.05)
  end
end

local function with_server(srv, fn)
  local ok, err = pcall(fn, srv)
  local log = X.stop(srv)
  if not ok then error(tostring(err) .. "\n-- server output:\n" .. log, 0) end
end

describe("npm thrift peer (" .. X.LUA .. ", " .. BACKEND .. ")", function()
  setup(function()
    local out, ok = X.run("tools/npm-peers.sh --check && node --version")
    assert(ok, "node or the npm thrift package (tools/npm-peers.sh, run by tools/deps.sh) "
      .. "is missing: " .. out)
    gen = "build/npm/gen-" .. X.LUA .. "-" .. BACKEND .. "-" .. os.time() .. "-" .. math.random(1e9)
    out, ok = X.run("mkdir -p " .. X.quote(gen) .. " && thrift --gen js:node -out " .. X.quote(gen)
      .. " spec/thrift/thrift_test.thrift")
    assert(ok, "thrift --gen js:node failed: " .. out)
  end)
  teardown(function()
    if gen then os.execute("rm -rf " .. X.quote(gen)) end
  end)

  describe("node's client, petrel's server", function()
    for _, c in ipairs(COMBOS) do
      it(name(c) .. ": every check passes", function()
        local srv = assert(X.petrel_server(c[4], c[5]))
        with_server(srv, function()
          assert.is_truthy(srv.line:find(", " .. BACKEND_TEXT, 1, true), srv.line)
          local out = X.run(string.format("timeout 200 node tools/node_thrift_peer.js client --port %d %s",
            srv.port, node_args(c)))
          local passed, total = out:match("node_thrift_peer: (%d+)/(%d+) passed")
          assert.equal(NODE_CHECKS, tonumber(total), out)
          assert.equal(NODE_CHECKS, tonumber(passed), out)
        end)
      end)
    end
  end)

  -- What node's THeader client puts on the wire, byte for byte, caught by a
  -- plain socket: without the peer's fix, no THeader at all (node's
  -- generated clients flush the transport, never THeaderProtocol, which
  -- writes the headers); with it, frames as Apache's HeaderFormat.md lays
  -- them out.
  describe("node's THeader client, the bytes of its first request", function()
    local function be(n, width)
      local t = {}
      for i = width, 1, -1 do t[i] = string.char(n % 256); n = math.floor(n / 256) end
      return table.concat(t)
    end
    local function vstr(s) return string.char(#s) .. s end -- short strings: one varint byte
    -- a THeader frame as node writes it: seq id 0, the peer's two info headers
    local function theader(proto_id, payload)
      local h = string.char(proto_id, 0, 1, 2) .. vstr("petrel-peer") .. vstr("node")
        .. vstr("clé") .. vstr("välue ✓")
      h = h .. string.rep("\0", (4 - #h % 4) % 4)
      local frame = "\15\255" .. "\0\0" .. be(0, 4) .. be(#h / 4, 2) .. h .. payload
      return be(#frame, 4) .. frame
    end
    local BINARY = "\128\1\0\1" .. be(8, 4) .. "testVoid" .. be(1, 4) .. "\0"
    local COMPACT = "\130\33\1\8testVoid\0"
    local MUX = "\128\1\0\1" .. be(19, 4) .. "ThriftTest:testVoid" .. be(1, 4) .. "\0"
    local function first_request(args, n)
      local socket = require "socket"
      local ls = assert(socket.bind("127.0.0.1", 0))
      local _, port = ls:getsockname()
      ls:settimeout(60)
      local pid, out = X.bg(string.format("timeout 60 node tools/node_thrift_peer.js client --port %d "
        .. "--timeout 5 %s testVoid", port, args))
      local s = ls:accept()
      ls:close()
      local data, err, partial
      if s then
        s:settimeout(20)
        data, err, partial = s:receive(n)
        s:close()
      end
      local log = X.stop({ pid = pid, out = out })
      assert(s, "node did not connect: " .. log)
      return data or partial or "", err
    end
    local function hex(s) return (s:gsub(".", function(ch) return string.format("%02x", ch:byte()) end)) end
    local CASES = {
      { "header/binary, the library as it is: unframed Binary", "--transport header --raw-header", BINARY },
      { "framed-header/binary, the library as it is: framed Binary",
        "--transport framed-header --raw-header", be(#BINARY, 4) .. BINARY },
      { "header/binary, headers written: THeader", "--transport header", theader(0, BINARY) },
      { "header/compact, headers written: THeader, protocol id 2",
        "--transport header --protocol compact", theader(2, COMPACT) },
      { "framed-header/binary, headers written: THeader in a frame", "--transport framed-header",
        be(#theader(0, BINARY), 4) .. theader(0, BINARY) },
      { "header/binary multiplexed, headers written", "--transport header --multiplexed",
        theader(0, MUX) },
    }
    for _, case in ipairs(CASES) do
      it(case[1], function()
        local got = first_request(case[2] .. " --gen " .. X.quote(gen), #case[3])
        assert.equal(hex(case[3]), hex(got))
      end)
    end
  end)

  -- Compact inside THeader through petrel.client (the cross-test client
  -- has no name for it): real values both ways on one connection.
  local function in_process(port, c)
    local petrel = require "petrel"
    local ns = assert(petrel.load("spec/thrift/thrift_test.thrift"))
    local o = { service = ns.ThriftTest, host = "127.0.0.1", port = port,
      transport = PETREL_TRANSPORT[c[1]], protocol = c[2], timeout = 20000, connect_timeout = 20000 }
    if c[3] then o.multiplexed = "ThriftTest" end
    local cl = petrel.client(o)
    local I64_MIN, I64_MAX
    if jit then
      I64_MIN = require("ffi").new("int64_t", -2 ^ 63)
      I64_MAX = -(I64_MIN + 1)
    else
      I64_MIN, I64_MAX = math.mininteger, math.maxinteger
    end
    local function same(want, got, err)
      assert.is_nil(err)
      assert.same(want, got)
    end
    local r, e = cl:testVoid()
    assert.is_nil(e); assert.is_true(r)
    for _, s in ipairs({ "", "ペトレル 😀 Ελληνικά", string.rep("x", 70000) }) do same(s, cl:testString(s)) end
    for _, v in ipairs({ I64_MAX, I64_MIN, -34359738368 }) do
      r, e = cl:testI64(v)
      assert.is_nil(e)
      assert.equal(tostring(v), tostring(r))
    end
    for _, v in ipairs({ -5.235098235, 1e300, 5e-324, -0.0, math.huge }) do same(v, cl:testDouble(v)) end
    local bytes = {}
    for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
    same(table.concat(bytes), cl:testBinary(table.concat(bytes)))
    same({ [1] = 2, [-1] = -2 }, cl:testMap({ [1] = 2, [-1] = -2 }))
    same({ ["ключ"] = "välue" }, cl:testStringMap({ ["ключ"] = "välue" }))
    same({ 1, 4, 9, -42 }, cl:testList({ 1, 4, 9, -42 }))
    r, e = cl:testSet({ 8, 1, 42 })
    assert.is_nil(e)
    table.sort(r)
    assert.same({ 1, 8, 42 }, r)
    same({ string_thing = "Zero ✓", byte_thing = 1, i32_thing = -3, i64_thing = -5 },
      cl:testStruct({ string_thing = "Zero ✓", byte_thing = 1, i32_thing = -3, i64_thing = -5 }))
    r, e = cl:testException("Xception")
    assert.is_nil(r)
    assert.equal("exception", e.kind)
    assert.equal("err1", e.name)
    assert.same({ errorCode = 1001, message = "Xception" }, e.value)
    r, e = cl:testException("TException")
    assert.is_nil(r)
    assert.equal("application", e.kind)
    same(true, cl:testOneway(1))
    same("after", cl:testString("after"))
    cl:close()
  end

  describe("petrel's client, node's server", function()
    for _, c in ipairs(COMBOS) do
      it(name(c) .. (c.node_server_bug and ": node's reply has no THeader (its bug), refused"
          or ": every check passes"), function()
        with_server(node_server(c), function(srv)
          if c.node_server_bug then
            -- node's THeader server over its buffered transport answers a
            -- THeader request in plain unframed Binary or Compact: it
            -- looks for a next request in its emptied buffer, which resets
            -- the connection's header state, before its asynchronous reply
            -- is written (docs/interop.md). petrel's client, like Apache
            -- Python's THeader client, refuses such a reply.
            local petrel = require "petrel"
            local ns = assert(petrel.load("spec/thrift/thrift_test.thrift"))
            local cl = petrel.client { service = ns.ThriftTest, host = "127.0.0.1", port = srv.port,
              transport = "header", protocol = c[2], multiplexed = c[3] and "ThriftTest" or nil,
              timeout = 20000, connect_timeout = 20000 }
            local r, e = cl:testVoid()
            cl:close()
            assert.is_nil(r)
            assert.matches("protocol error: header frame too large", tostring(e))
          elseif c.in_process then
            in_process(srv.port, c)
          else
            local out, passed, total, apassed, atotal = X.lua_client(srv, c[4], c[5], { timeout = 20 })
            assert.is_truthy(out:find(", " .. BACKEND_TEXT, 1, true), out)
            assert.equal(X.APACHE_CHECKS, atotal, out)
            assert.equal(atotal, apassed, out)
            assert.equal(X.LUA_CHECKS, total, out)
            assert.equal(total, passed, out)
          end
        end)
      end)
    end
  end)
end)
