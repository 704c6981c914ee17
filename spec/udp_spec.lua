-- UDP: loop:udp sockets (cosocket style), Thrift services of oneway
-- methods over datagrams (petrel.server / petrel.client transport =
-- "udp"), and the Jaeger agent example fed by Apache Thrift's Python
-- library (tools/jaeger_send.py) and the npm jaeger-client
-- (tools/jaeger_node_send.js). The back end is PETREL_BACKEND's
-- (tools/runtests.sh runs this file on epoll and on io_uring). Only
-- 127.0.0.1 and ::1; every wait is bounded.
local petrel = require "petrel"
local proc = require "support.proc"
local bg, alive, read_file, run_cmd = proc.bg, proc.alive, proc.read_file, proc.run
local core = require "petrel.core"

local BUILD = os.getenv("PETREL_BUILD") or "build"
local RT = jit and "luajit" or "lua5.4"

-- an IPv6 loopback to bind to?
local function have_v6()
  local l = assert(petrel.loop())
  local u = l:udp { host = "::1", port = 0 }
  if u then u:close(false) end
  l:free()
  return u ~= nil
end

local run_until = require("support.net").run_until

-- 64-bit ids as 16 hex digits on both runtimes
local hex
if jit then
  local bit, ffi = require "bit", require "ffi"
  hex = function(v) return bit.tohex(ffi.cast("int64_t", v), 16) end
else
  hex = function(v) return string.format("%016x", v) end
end

describe("loop:udp", function()
  local loop
  before_each(function() loop = assert(petrel.loop()) end)
  after_each(function() loop:free() end)

  it("sends and receives datagrams with their peers, in the cosocket style", function()
    local srv = assert(loop:udp { port = 0 })
    assert.is_true(srv.port > 0)
    local cli = assert(loop:udp { connect = "127.0.0.1:" .. srv.port })
    local cli_addr = cli:address()
    assert.matches("^127%.0%.0%.1:%d+$", cli_addr)
    local got = {}
    loop:spawn(function()
      for i = 1, 3 do
        local data, peer = srv:recv(5000)
        got[i] = { data, peer }
        assert(srv:sendto("re:" .. data, peer))
      end
    end)
    local replies = {}
    loop:spawn(function()
      for _, m in ipairs { "a", "", string.rep("z", 1472) } do assert(cli:send(m)) end
      for i = 1, 3 do replies[i] = cli:recv(5000) end
    end)
    assert.is_true(run_until(loop, function() return #replies == 3 end))
    assert.same({ "a", (cli:address()) }, got[1])
    assert.equal("", got[2][1])
    assert.equal(1472, #got[3][1])
    assert.same({ "re:a", "re:", "re:" .. string.rep("z", 1472) }, replies)
    local st = srv:stats()
    assert.equal(3, st.dgrams_in)
    assert.equal(3, st.dgrams_out)
    assert.equal(1473 + 0, st.bytes_in)
    assert.equal(0, st.queued)
    local loc, peer = cli:address()
    assert.equal(cli_addr, loc)
    assert.equal("127.0.0.1:" .. srv.port, peer)
    assert.is_nil(select(2, srv:address())) -- not connected
    assert.equal(2, loop:stats().udp_open)
  end)

  it("speaks IPv6 (::1), and a dual-stack socket names IPv4 peers as IPv4", function()
    if not have_v6() then
      pending("SKIP: no IPv6 loopback (::1) here")
      return
    end
    local srv = assert(loop:udp { host = "::1", port = 0 })
    local cli = assert(loop:udp { connect = "[::1]:" .. srv.port })
    assert(cli:send("six"))
    local data, peer = srv:recv(5000)
    assert.equal("six", data)
    assert.equal(cli:address(), peer)
    assert.matches("^%[::1%]:%d+$", peer)
    local any = assert(loop:udp { host = "::", port = 0 })
    local v4 = assert(loop:udp { connect = { host = "127.0.0.1", port = any.port } })
    assert(v4:send("four"))
    data, peer = any:recv(5000)
    assert.equal("four", data)
    assert.equal(v4:address(), peer)
    assert(any:sendto("back", peer))
    assert.equal("back", v4:recv(5000))
    assert(any:sendto("also", "127.0.0.1", v4.port))
    assert.equal("also", v4:recv(5000))
  end)

  it("times out (per call or settimeout), and a script's recv runs the loop", function()
    local u = assert(loop:udp { port = 0, timeout = 30 })
    local t0 = core.clock()
    assert.same({ nil, "timeout" }, { u:recv() })
    assert.is_true(core.clock() - t0 >= 0.025)
    u:settimeout(nil)
    assert.same({ nil, "timeout" }, { u:recv(20) })
    -- outside any coroutine a send leaves at once and recv runs the loop
    local cli = assert(loop:udp { connect = "127.0.0.1:" .. u.port })
    assert(cli:send("now"))
    assert.equal("now", (u:recv(5000)))
  end)

  it("sends a round's datagrams in batches and keeps their order", function()
    local srv = assert(loop:udp { port = 0, rcvbuf = 4 * 1024 * 1024 })
    local cli = assert(loop:udp { connect = "127.0.0.1:" .. srv.port })
    local before = loop:stats()
    loop:spawn(function()
      for i = 1, 500 do assert(cli:send(string.format("%04d", i) .. string.rep("x", 100))) end
    end)
    local got = {}
    loop:spawn(function()
      for i = 1, 500 do got[i] = (srv:recv(5000) or "?"):sub(1, 4) end
    end)
    assert.is_true(run_until(loop, function() return #got == 500 end))
    for i = 1, 500 do assert.equal(string.format("%04d", i), got[i]) end
    local after = loop:stats()
    assert.equal(500, after.dgrams_out - before.dgrams_out)
    assert.is_true(after.writev_calls - before.writev_calls <= 8) -- 64 per sendmmsg
  end)

  it("reports a datagram cut at max_datagram, then goes on", function()
    local srv = assert(loop:udp { port = 0, max_datagram = 64 })
    local cli = assert(loop:udp { connect = "127.0.0.1:" .. srv.port })
    assert(cli:send(string.rep("a", 100)))
    assert(cli:send(string.rep("b", 64)))
    local data, err, peer = srv:recv(5000)
    assert.is_nil(data)
    assert.equal("datagram of 100 bytes cut at max_datagram (64)", err)
    assert.equal(cli:address(), peer)
    assert.equal(string.rep("b", 64), (srv:recv(5000)))
    assert.equal(1, srv:stats().cut)
  end)

  it("reports a closed port (ICMP) as an error of recv and stays open", function()
    local tmp = assert(loop:udp { port = 0 })
    local dead = tmp.port
    tmp:close(false)
    -- io_uring: the port goes once the receive's cancellation went through
    loop:step(0)
    loop:step(10)
    local u = assert(loop:udp { connect = "127.0.0.1:" .. dead })
    assert(u:send("anyone?"))
    assert.same({ nil, "Connection refused" }, { u:recv(5000) })
    assert.equal(1, u:stats().errors_in)
    assert(u:send("still open"))
  end)

  it("counts what the kernel drops when the receive buffer is full", function()
    local srv = assert(loop:udp { port = 0, rcvbuf = 4096 })
    local cli = assert(loop:udp { connect = "127.0.0.1:" .. srv.port })
    for _ = 1, 200 do assert(cli:send(string.rep("d", 1000))) end -- one sendmmsg, nobody reads
    local n = 0
    while srv:recv(300) do n = n + 1 end
    local st = srv:stats()
    assert.is_true(n > 0 and st.kernel_drops > 0)
    assert.equal(200, n + st.kernel_drops)
    assert.equal(200, cli:stats().dgrams_out)
  end)

  it("hands datagrams to a handler as they arrive", function()
    local seen = {}
    local srv = assert(loop:udp { port = 0, max_datagram = 10, handler = function(data, peer, u, from)
      seen[#seen + 1] = { data, peer, from }
      assert.is_table(u)
    end })
    local cli = assert(loop:udp { connect = "127.0.0.1:" .. srv.port })
    assert(cli:send("one"))
    assert(cli:send(string.rep("x", 11)))
    assert.is_true(run_until(loop, function() return #seen == 2 end))
    assert.same({ "one", (cli:address()) }, seen[1])
    assert.same({ nil, "datagram of 11 bytes cut at max_datagram (10)", (cli:address()) }, seen[2])
    -- a handler's error goes to loop.on_error and the next datagram comes
    local errs = {}
    loop.on_error = function(e) errs[#errs + 1] = tostring(e) end
    local n = 0
    local h2 = assert(loop:udp { port = 0, handler = function(data)
      n = n + 1
      if data == "bad" then error("handler blew up") end
    end })
    local c2 = assert(loop:udp { connect = "127.0.0.1:" .. h2.port })
    loop:spawn(function() c2:send("bad"); c2:send("good") end)
    assert.is_true(run_until(loop, function() return n == 2 end))
    assert.equal(1, #errs)
    assert.matches("handler blew up", errs[1])
  end)

  it("refuses bad sends with nil, err and closes cleanly", function()
    local u = assert(loop:udp { port = 0, out_cap = 1000 })
    assert.same({ nil, "no peer: the socket is not connected (sendto needs an address)" },
      { u:send("x") })
    assert.same({ nil, "bad address 'nowhere' (ip:port or [ipv6]:port)" }, { u:sendto("x", "nowhere") })
    assert.same({ nil, "address '[::1]:9' is IPv6 and the socket IPv4" }, { u:sendto("x", "::1", 9) })
    assert.same({ nil, "datagram of 65508 bytes is too long (at most 65507)" },
      { u:sendto(string.rep("x", 65508), "127.0.0.1:9") })
    loop:spawn(function()
      assert(u:sendto(string.rep("x", 900), "127.0.0.1:9"))
      assert.same({ nil, "send queue full (928 bytes queued, out_cap 1000)" },
        { u:sendto(string.rep("x", 900), "127.0.0.1:9") })
    end)
    assert.equal(1, u:stats().send_full)
    -- a datagram the kernel refuses (port 0) is dropped and counted; the
    -- next one of the same flush goes
    local to = assert(loop:udp { port = 0 })
    loop.c:flush() -- the 900 bytes queued above leave
    loop:spawn(function()
      assert(u:sendto("nowhere", "127.0.0.1:0"))
      assert(u:sendto("there", "127.0.0.1:" .. to.port))
    end)
    assert.equal("there", (to:recv(5000)))
    assert.equal(1, u:stats().send_errors)
    assert.equal("Invalid argument", u:stats().last_send_error)
    -- a buffer is sent by copy
    local b = petrel.buffer("from a buffer")
    local r = assert(loop:udp { port = 0 })
    assert(u:sendto(b, "127.0.0.1:" .. r.port))
    assert.equal(13, #b)
    assert.equal("from a buffer", (r:recv(5000)))
    -- close wakes a waiting recv
    local res
    loop:spawn(function() res = { r:recv(5000) } end)
    loop:step(0)
    r:close()
    assert.is_true(run_until(loop, function() return res ~= nil end, 2000))
    assert.same({ nil, "closed" }, res)
    assert.same({ nil, "closed" }, { r:recv(10) })
    assert.same({ nil, "closed" }, { r:send("x") })
  end)

  it("checks its options", function()
    local net = require "support.net"
    net.bad_options(function(o) return loop:udp(o) end, "loop:udp", {}, {
      { "prot", 1, "unknown option 'prot' %(did you mean 'port'%?%)" },
      { "port", 70000, "option 'port' must be a port number" },
      { "connect", "127.0.0.1", "option 'connect' must be \"host:port\"" },
      { "max_datagram", 65537, "an integer from 1 to 65536" },
      { "rcvbuf", 0, "an integer >= 1" },
      { "handler", true, "a function" },
    })
    assert.same({ nil, "udp nosuch.invalid:0: a host name (numeric addresses only)" },
      { loop:udp { host = "nosuch.invalid" } })
    local a = assert(loop:udp { port = 0 })
    local b, err = loop:udp { port = a.port }
    assert.is_nil(b)
    assert.equal("udp 127.0.0.1:" .. a.port .. ": Address already in use", err)
    assert.has_error(function() loop.c:input(a.id) end)
  end)
end)

-- ---- Thrift over UDP --------------------------------------------------------------

local SINK = assert(petrel.load([[
struct Item { 1: string name, 2: i64 n, 3: list<i32> vals }
service Sink {
  oneway void put(1: Item it, 2: i32 k),
  oneway void boom(),
  i32 ask(1: i32 x),
}
]], { text = true, name = "sink.thrift" }))

describe("petrel.server and petrel.client over udp", function()
  local loop
  before_each(function() loop = assert(petrel.loop()) end)
  after_each(function() loop:free() end)

  it("serves oneway calls sent by a udp client", function()
    local got = {}
    local srv = assert(petrel.server { loop = loop, service = SINK.Sink, transport = "udp",
      port = 0, handler = { put = function(it, k) got[#got + 1] = { it, k } end } })
    local c = petrel.client { loop = loop, service = SINK.Sink, transport = "udp",
      port = srv.port }
    for i = 1, 20 do assert(c:put({ name = "n" .. i, n = i, vals = { i, -i } }, i * 2)) end
    assert.is_true(run_until(loop, function() return #got == 20 end))
    for i = 1, 20 do
      assert.same({ { name = "n" .. i, n = i, vals = { i, -i } }, i * 2 }, {
        { name = got[i][1].name, n = got[i][1].n, vals = { got[i][1].vals[1], got[i][1].vals[2] } },
        got[i][2] })
    end
    local s = srv:stats()
    assert.equal(20, s.calls)
    assert.equal(20, s.datagrams)
    assert.equal(0, s.malformed)
    local cs = petrel.stats(c)
    assert.equal(20, cs.sent)
    assert.equal(20, cs.udp.dgrams_out)
    -- a call's datagram is ready to go when the call returns (a script)
    petrel.close(c)
  end)

  it("refuses what a datagram cannot carry, at creation", function()
    local net = require "support.net"
    local base = { loop = loop, service = SINK.Sink, transport = "udp", handler = { put = function() end } }
    net.bad_options(function(o) return petrel.server(o) end, "petrel.server", base, {
      { "handler", { ask = function() end }, 'Sink.ask is not oneway: over transport = "udp" a datagram carries no reply' },
      { "handler", {}, "no handler for a oneway method of Sink" },
      { "backlog", 10, "option 'backlog' does not apply to transport = \"udp\"" },
      { "max_frame", 10, "option 'max_frame' does not apply" },
      { "lazy", true, "option 'lazy' does not apply to transport = \"udp\"" },
      { "protocol", "json", "option 'protocol' must be one of" },
    })
    net.bad_options(function(o) return petrel.server(o) end, "petrel.server",
      { loop = loop, service = SINK.Sink, handler = {} }, {
        { "max_datagram", 100, "option 'max_datagram' is for transport = \"udp\"" },
        { "protocol", "binary", "option 'protocol' is for transport = \"udp\"" },
      })
    net.bad_options(function(o) return petrel.client(o) end, "petrel.client",
      { loop = loop, service = SINK.Sink, transport = "udp", port = 9 }, {
        { "pool_size", 2, "option 'pool_size' does not apply to transport = \"udp\"" },
        { "lazy", true, "option 'lazy' does not apply to transport = \"udp\"" },
        { "protocol", "xml", "option 'protocol' must be one of" },
      })
    local c = petrel.client { loop = loop, service = SINK.Sink, transport = "udp", port = 9 }
    assert.has_error(function() c:ask(1) end,
      'petrel.client: Sink.ask is not oneway: over transport = "udp" a call gets no reply')
    assert.has_error(function() c:put({ name = 1 }, 1) end)
    assert.has_error(function() petrel.configure(c, { timeout = 1 }) end)
    local ok, err = c:put({ name = string.rep("x", 70000) }, 1)
    assert.is_nil(ok)
    assert.matches("does not fit a datagram", err)
  end)

  it("counts and logs malformed datagrams (at most a line a second) and goes on", function()
    local lines, got = {}, 0
    local srv = assert(petrel.server { loop = loop, service = SINK.Sink, transport = "udp",
      port = 0, max_datagram = 200,
      logger = function(line, info) lines[#lines + 1] = { line, info.kind } end,
      handler = { put = function() got = got + 1 end, boom = function() error("kaboom") end } })
    local raw = assert(loop:udp { connect = "127.0.0.1:" .. srv.port })
    local function msg(name, mtype, body)
      local b = petrel.buffer()
      b:write_u32(0x80010000 + mtype):write_u32(#name):write(name):write_u32(7):write(body)
      return tostring(b)
    end
    local good = tostring(SINK.Sink.functions.put.args:encode_message(
      { it = { name = "ok" }, k = 1 }, petrel.buffer(), "put", 4, 1))
    local bad = {
      "garbage, not thrift",                       -- bad envelope
      "",                                          -- truncated envelope
      string.char(0x80, 1, 0, 4),                  -- truncated
      msg("nosuch", 4, "\0"),                      -- unknown method
      msg("ask", 1, "\0"),                         -- not oneway
      msg("put", 2, "\0"),                         -- a reply, not a call
      msg("put", 4, "\12\0\1\11"),                 -- cannot decode
      good .. "extra",                             -- bytes after the message
      string.rep("x", 300),                        -- cut at max_datagram
    }
    local t0 = loop:now()
    for _, d in ipairs(bad) do assert(raw:send(d)) end
    assert(raw:send(good))
    loop:spawn(function() raw:send(msg("boom", 4, "\0")) end)
    assert.is_true(run_until(loop, function() return got == 1 and srv.counters.errors >= 3 end))
    local took = loop:now() - t0
    local s = srv:stats()
    assert.equal(11, s.datagrams)
    assert.equal(7, s.malformed)
    assert.equal(3, s.errors) -- unknown method, not oneway, the handler's error
    assert.equal(2, s.calls)
    -- the first malformed datagram is logged, the rest of that second not
    -- (one line a second at most: a machine too busy to read the nine
    -- within a second may log one more per second it took); the
    -- handler's error always is, last
    local n = #lines
    assert.is_true(n >= 2 and n <= 2 + math.floor(took / 1000),
      n .. " lines in " .. took .. " ms")
    assert.matches("^Sink over udp: malformed datagram from 127%.0%.0%.1:%d+: bad envelope", lines[1][1])
    for i = 2, n - 1 do
      assert.matches("datagram from 127%.0%.0%.1:%d+: .* %(and %d+ more since the last line%)$", lines[i][1])
    end
    assert.matches("^Sink%.boom %(oneway%) from 127%.0%.0%.1:%d+: .*kaboom", lines[n][1])
    assert.equal("handler", lines[n][2])
  end)

  it("decodes emitBatch sent by Apache Thrift's Python library", function()
    local J = assert(petrel.load("examples/jaeger/agent.thrift"))
    local batches = {}
    local srv = assert(petrel.server { loop = loop, service = J.Agent, transport = "udp",
      port = 0, rcvbuf = 1048576, handler = { emitBatch = function(b) batches[#batches + 1] = b end } })
    local pid, out = bg("timeout 60 /usr/bin/python3 tools/jaeger_send.py --port " .. srv.port
      .. " --batches 3 --spans 4")
    local ok = run_until(loop, function() return #batches == 3 and not alive(pid) end, 30000)
    local text = read_file(out)
    os.remove(out)
    if alive(pid) then os.execute("kill " .. pid) end
    assert.is_true(ok, text)
    assert.matches("sent 3 batches", text)
    for b = 0, 2 do
      local batch = batches[b + 1]
      assert.equal("py-sender", batch.process.serviceName)
      assert.equal("localhost", batch.process.tags[1].vStr)
      assert.equal(4, #batch.spans)
      for i = 0, 3 do
        local s = batch.spans[i + 1]
        assert.equal(string.format("op-%d-%d", b, i), s.operationName)
        assert.equal("0123456789abcdef", hex(s.traceIdHigh))
        assert.equal(0x1000 + b, tonumber(s.traceIdLow))
        assert.equal(i == 3 and "fffffffffffffffe" or string.format("%016x", 0x100 * (b + 1) + i + 1),
          hex(s.spanId))
        assert.equal(1700000000000000 + i, tonumber(s.startTime))
        assert.equal(1000 + i, tonumber(s.duration))
        assert.equal(1, s.flags)
        local t = s.tags
        assert.same({ "http.method", 0, "GET" }, { t[1].key, t[1].vType, t[1].vStr })
        assert.same({ "retries", 3, 3 }, { t[2].key, t[2].vType, tonumber(t[2].vLong) })
        assert.same({ "error", 2, false }, { t[3].key, t[3].vType, t[3].vBool })
        assert.same({ "ratio", 1, 0.5 }, { t[4].key, t[4].vType, t[4].vDouble })
        assert.same({ "blob", 4, "\0\1" }, { t[5].key, t[5].vType, t[5].vBinary })
        assert.equal("checkpoint", s.logs[1].fields[1].vStr)
      end
    end
    assert.equal(0, srv:stats().malformed)
  end)
end)

describe("petrel.serve over udp", function()
  it("runs workers that share the port (SO_REUSEPORT) and stop on SIGTERM", function()
    -- a free port: bound, then let go
    local loop = assert(petrel.loop())
    local tmp = assert(loop:udp { port = 0 })
    local port = tmp.port
    tmp:close(false)
    loop:step(0)
    loop:step(10)
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(string.format([[
      package.path = %q
      package.cpath = %q
      local petrel = require "petrel"
      local core = require "petrel.core"
      local S = assert(petrel.load("service P { oneway void hit(1: i32 n) }", { text = true }))
      assert(petrel.serve { service = S.P, transport = "udp", port = %d, workers = 2,
        handler = { hit = function(n)
          io.write("worker ", core.getpid(), " hit ", n, "\n")
          io.stdout:flush()
        end } })
      print("exited cleanly")
    ]], package.path, package.cpath, port))
    f:close()
    local pid, out = bg("timeout 60 " .. RT .. " " .. script)
    local workers, hits = {}, 0
    local ok, err = pcall(function()
      local S = assert(petrel.load("service P { oneway void hit(1: i32 n) }", { text = true }))
      local deadline = loop:now() + 20000
      local i = 0
      -- each call from a fresh client (a new source port): the kernel
      -- spreads them over the workers' sockets
      while loop:now() < deadline do
        i = i + 1
        local c = petrel.client { loop = loop, service = S.P, transport = "udp", port = port }
        assert(c:hit(i))
        petrel.close(c)
        loop:sleep(20)
        workers, hits = {}, 0
        for w in read_file(out):gmatch("worker (%d+) hit %d+") do
          if not workers[w] then workers[w] = true; hits = hits + 1 end
        end
        if hits >= 2 then break end
      end
      assert.equal(2, hits)
      os.execute("kill -TERM " .. pid)
      assert.is_true(run_until(loop, function() return not alive(pid) end, 10000))
    end)
    if alive(pid) then os.execute("kill " .. pid) end
    loop:free()
    local text = read_file(out)
    os.remove(out)
    os.remove(script)
    assert.is_true(ok, tostring(err) .. "\n" .. text)
    assert.matches("exited cleanly", text)
  end)
end)

describe("udp services speak their socket's protocol", function()
  it("Compact: Apache's TCompactProtocol and petrel's client; Binary there is malformed", function()
    local loop = assert(petrel.loop())
    local J = assert(petrel.load("examples/jaeger/agent.thrift"))
    local batches, lines = {}, {}
    local srv = assert(petrel.server { loop = loop, service = J.Agent, transport = "udp",
      protocol = "compact", port = 0, logger = function(line) lines[#lines + 1] = line end,
      handler = { emitBatch = function(b) batches[#batches + 1] = b end } })
    local out, ok = run_cmd("timeout 60 /usr/bin/python3 tools/jaeger_send.py --protocol compact --port "
      .. srv.port .. " --batches 2 --spans 3 --service compact-py")
    assert.is_true(ok, out)
    assert.is_true(run_until(loop, function() return #batches == 2 end, 20000))
    assert.equal("compact-py", batches[1].process.serviceName)
    assert.equal("op-1-2", batches[2].spans[3].operationName)
    assert.equal("fffffffffffffffe", hex(batches[2].spans[3].spanId))
    local c = petrel.client { loop = loop, service = J.Agent, transport = "udp", port = srv.port,
      protocol = "compact" }
    assert(c:emitBatch { process = { serviceName = "compact-lua" }, spans = {} })
    assert.is_true(run_until(loop, function() return #batches == 3 end, 20000))
    assert.equal("compact-lua", batches[3].process.serviceName)
    -- a Binary message on the Compact socket
    local b = petrel.client { loop = loop, service = J.Agent, transport = "udp", port = srv.port }
    assert(b:emitBatch { process = { serviceName = "binary-lua" }, spans = {} })
    assert.is_true(run_until(loop, function() return srv:stats().malformed == 1 end, 20000))
    assert.equal(3, #batches)
    assert.matches("a binary message on a compact socket", lines[1])
    loop:free()
  end)
end)

-- ---- the example, fed by both senders --------------------------------------------

describe("examples/jaeger_agent.lua", function()
  -- Start the example on an ephemeral port, run send(port) (the senders;
  -- it raises on failure) and wait for every pattern of waits in its
  -- output, stop it: the example's output.
  local function with_agent(send, waits)
    local pid, out = bg(string.format("env LUA_PATH='lua/?.lua;lua/?/init.lua;;' %s='%s/%s/?.so;;' "
      .. "timeout 120 %s examples/jaeger_agent.lua 0", jit and "LUA_CPATH" or "LUA_CPATH_5_4",
      BUILD, RT, RT))
    local loop = assert(petrel.loop())
    local function wait_for(pat, ms)
      return run_until(loop, function() return read_file(out):find(pat) ~= nil end, ms)
    end
    local ok, err = pcall(function()
      assert.is_true(wait_for("listening on udp 127%.0%.0%.1:%d+ %(binary%)", 30000), read_file(out))
      send(assert(tonumber(read_file(out):match("listening on udp 127%.0%.0%.1:(%d+)"))))
      for _, pat in ipairs(waits) do assert.is_true(wait_for(pat, 30000), read_file(out)) end
    end)
    os.execute("kill -TERM " .. pid)
    run_until(loop, function() return not alive(pid) end, 10000)
    loop:free()
    local text = read_file(out)
    os.remove(out)
    assert.is_true(ok, tostring(err) .. "\n" .. text)
    return text
  end

  it("prints the spans of Apache's Python library", function()
    local text = with_agent(function(port)
      local py, py_ok = run_cmd("timeout 60 /usr/bin/python3 tools/jaeger_send.py --port " .. port
        .. " --batches 2 --spans 3 --service from-python")
      assert.is_true(py_ok, py)
    end, { "op=op%-1%-2 " })
    assert.matches("span svc=from%-python op=op%-0%-0 trace=0123456789abcdef:0000000000001000 "
      .. "id=0000000000000101 parent=0000000000000000 start=1700000000000000 dur=1000us flags=1 "
      .. "tags=http%.method=GET,retries=3,error=false,ratio=0%.5,blob=<2 bytes>\n", text)
    assert.matches("span svc=from%-python op=op%-1%-2 trace=0123456789abcdef:0000000000001001 "
      .. "id=fffffffffffffffe parent=0000000000000202 start=1700000000000002 dur=1002us", text)
    local n = 0
    for _ in text:gmatch("span svc=from%-python ") do n = n + 1 end
    assert.equal(6, n)
    assert.matches("done: 2 batches, 6 spans, 0 malformed datagrams", text)
  end)

  it("prints the spans of the npm jaeger-client", function()
    -- tools/deps.sh (make deps, make test) installs it into build/npm; a
    -- machine where npm's registry cannot be reached skips this LOUDLY
    local _, npm_ok = run_cmd("tools/npm-peers.sh --check")
    if not npm_ok then
      pending("SKIP: the npm peers (jaeger-client, thrift) are not installed in build/npm (tools/npm-peers.sh could not install them)")
      return
    end
    local text = with_agent(function(port)
      local js, js_ok = run_cmd("timeout 60 node tools/jaeger_node_send.js " .. port .. " 4 from-node")
      assert.is_true(js_ok, js)
      assert.matches("sent 4 spans", js)
    end, { "op=node%-op%-0 ", "op=node%-op%-1 ", "op=node%-op%-2 ", "op=node%-op%-3 " })
    -- four spans of one trace, three children of the root
    local root = text:match("span svc=from%-node op=node%-op%-0 trace=%x+:%x+ id=(%x+) parent=0000000000000000")
    assert.is_string(root, text)
    for i = 1, 3 do
      assert.matches("span svc=from%-node op=node%-op%-" .. i .. " trace=%x+:%x+ id=%x+ parent="
        .. root .. " start=%d+ dur=%d+us flags=1 tags=http%.method=POST,attempt=" .. i .. ",ok=true", text)
    end
    assert.matches("done: %d+ batches, 4 spans, 0 malformed datagrams", text)
  end)
end)
