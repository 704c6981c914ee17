-- The RPC client under failure: nothing leaks on any error path, a
-- multiplexed timeout ends only its own call, max_conns caps connections
-- with callers queued, transport errors name the peer and the phase, RPC
-- method names are never hidden by the client's own, options are checked.
-- Every test runs on each loop back end (epoll, io_uring where the kernel
-- allows it). Network only on 127.0.0.1 and unix sockets; every wait is
-- bounded and generous (the specs must pass on 2 busy cores).
local petrel = require "petrel"
local core = require "petrel.core"
local backends = require "support.backends"

local CALC = assert(petrel.load("spec/thrift/calc.thrift"))

local net = require "support.net"
local run_until, fd_count, dead_port = net.run_until, net.fd_count, net.dead_port

-- Run fn(i) for i = 1..n in coroutines of loop, at most `width` at once;
-- returns when all have finished (or after ms).
local function run_many(loop, n, width, fn, ms)
  local started, done = 0, 0
  local function worker()
    while started < n do
      started = started + 1
      fn(started)
      done = done + 1
    end
  end
  for _ = 1, math.min(width, n) do loop:spawn(worker) end
  assert.is_true(run_until(loop, function() return done == n end, ms or 60000),
    string.format("%d of %d finished", done, n))
end

-- A raw framed Thrift peer on loop: mode "silent" reads calls and never
-- answers; "halfclose" writes half a reply and closes; "garbage" replies
-- with a correct envelope and an undecodable body. st.open counts its
-- open connections.
local function raw_server(loop, mode)
  local lid = assert(loop.c:listen("127.0.0.1", 0))
  local st = { port = loop.c:port(lid), open = 0, accepted = 0 }
  local function reply(name, seqid, body)
    local b = petrel.buffer()
    b:write_u32(0x80010002):write_u32(#name):write(name):write_i32(seqid):write(body)
    local s = tostring(b)
    return string.char(0, 0, math.floor(#s / 256) % 256, #s % 256) .. s
  end
  loop:attach(lid, { on_accept = function(_, id)
    st.open, st.accepted = st.open + 1, st.accepted + 1
    local h = {}
    function h.on_closed() st.open = st.open - 1 end
    function h.on_data(_, cid)
      local inb = loop.c:input(cid)
      while #inb >= 4 do
        local len = inb:peek_u32(0)
        if #inb < 4 + len then break end
        local msg = inb:read(4 + len):sub(5)
        local name, _, seqid = core.msg_header(msg, 1)
        if mode == "halfclose" then
          local r = reply(name, seqid, "\8\0\0\0\0\0\42\0")
          loop.c:output(cid):write(r:sub(1, #r - 4))
          loop:close(cid, true)
          st.open = st.open - 1
          return
        elseif mode == "garbage" then
          -- a string field claiming 2 GiB in a complete frame
          loop.c:output(cid):write(reply(name, seqid, "\11\0\0\127\255\255\255\0"))
          loop.c:send(cid)
        end
      end
      loop.c:consumed(cid)
    end
    loop:attach(id, h)
  end })
  function st.close() loop:close(lid) end
  return st
end

-- A Calc server whose add waits while gate.open is false: srv, gate.
local function gated_server(loop)
  local gate = { open = false }
  local srv = assert(petrel.server { loop = loop, port = 0, service = CALC.Calc, logger = false,
    handler = { add = function(a, b)
      while not gate.open do loop:sleep(5) end
      return a + b
    end } })
  return srv, gate
end

local calc_handler = {
  add = function(a, b) return a + b end,
  echo = function(it) return it end,
  ping = function() end,
  note = function() end,
  fail = function(code) error(petrel.throw("oops", { message = "no", code = code })) end,
  many = function() return {} end,
  notes = function() return 0 end,
}

local list, why = backends()
for _, be in ipairs(list) do
describe("rpc client (" .. be.name .. ")", function()
  local loop
  before_each(function() loop = assert(petrel.loop(be.opts)) end)
  after_each(function() loop:free() end)

  it("leaks no fd, connection or memory over 1,000 failing calls of every kind", function()
    local srv = assert(petrel.server { loop = loop, port = 0, service = CALC.Calc,
      handler = calc_handler })
    local silent = raw_server(loop, "silent")
    local half = raw_server(loop, "halfclose")
    local garbage = raw_server(loop, "garbage")
    local refused = dead_port(loop)
    local good = petrel.client { loop = loop, service = CALC.Calc, port = srv.port }
    local kinds = {
      { "bad arguments", function(n)
        local c = petrel.client { loop = loop, service = CALC.Calc, port = srv.port }
        for _ = 1, n do
          local ok, err = pcall(c.add, c, "x", 1)
          assert.is_false(ok)
          assert.matches("a: i32 expected", tostring(err))
        end
        assert.equal(3, c:add(1, 2)) -- the pool still serves
        petrel.close(c)
      end },
      { "timeouts", function(n)
        local c = petrel.client { loop = loop, service = CALC.Calc, port = silent.port, timeout = 30 }
        run_many(loop, n, 50, function()
          local r, err = c:add(1, 2)
          assert.is_nil(r)
          assert.matches("timeout", err)
        end)
      end },
      { "refused connections", function(n)
        local c = petrel.client { loop = loop, service = CALC.Calc, port = refused }
        for _ = 1, n do
          local r, err = c:add(1, 2)
          assert.is_nil(r)
          assert.matches("refused", err)
        end
      end },
      { "connections closed mid-reply", function(n)
        local c = petrel.client { loop = loop, service = CALC.Calc, port = half.port }
        for _ = 1, n do
          local r, err = c:add(1, 2)
          assert.is_nil(r)
          assert.is_string(err)
        end
      end },
      { "undecodable replies", function(n)
        local c = petrel.client { loop = loop, service = CALC.Calc, port = garbage.port }
        for _ = 1, n do
          local r, err = c:add(1, 2)
          assert.is_nil(r)
          assert.equal("application", err.kind)
          assert.equal(7, err.type) -- PROTOCOL_ERROR
        end
        petrel.close(c)
      end },
      { "multiplexed timeouts", function(n)
        local c = petrel.client { loop = loop, service = CALC.Calc, port = silent.port,
          timeout = 30, multiplex = true }
        run_many(loop, n, 50, function()
          local r, err = c:add(1, 2)
          assert.is_nil(r)
          assert.matches("timeout", err)
        end)
        petrel.close(c)
      end },
    }
    local function settle()
      -- closes finish, collections run; the connections the servers count
      -- are the good client's pooled one at most
      run_until(loop, function()
        return srv:stats().open <= 1 and silent.open == 0 and half.open == 0 and garbage.open <= 1
      end, 5000)
      for _ = 1, 5 do loop:step(5) end
      collectgarbage("collect")
      collectgarbage("collect")
      return { fds = fd_count(), mem = collectgarbage("count"),
        pool = petrel.pool_stats().bytes_in_use, conns = loop:stats().conns_open,
        timers = loop:stats().timers_active, open = srv:stats().open }
    end
    for _, k in ipairs(kinds) do k[2](50) end -- warm up every path
    assert.equal(3, good:add(1, 2))
    local before = settle()
    for _, k in ipairs(kinds) do k[2](1000) end
    assert.equal(3, good:add(1, 2))
    local after = settle()
    if os.getenv("PETREL_SPEC_VERBOSE") then
      for _, key in ipairs({ "fds", "conns", "timers", "open", "mem", "pool" }) do
        io.stderr:write(string.format("%s: %s -> %s\n", key, before[key], after[key]))
      end
    end
    for _, key in ipairs({ "fds", "conns", "timers", "open" }) do
      assert.is_true(after[key] <= before[key] + 1,
        string.format("%s grew: %d -> %d", key, before[key], after[key]))
    end
    assert.is_true(silent.open == 0 and half.open == 0, "raw servers still hold connections")
    assert.is_true(after.mem <= before.mem * 1.25 + 512,
      string.format("Lua memory grew: %.0f KB -> %.0f KB", before.mem, after.mem))
    assert.is_true(after.pool <= before.pool + 256 * 1024,
      string.format("buffer pool grew: %d -> %d bytes", before.pool, after.pool))
  end)

  it("multiplex: a timed-out call ends only itself; its late reply is dropped by seqid", function()
    -- every call waits for the gate, which opens once the first has timed out
    local srv, gate = gated_server(loop)
    local c = petrel.client { loop = loop, service = CALC.Calc, port = srv.port,
      multiplex = true, timeout = 2000 }
    local res, errs = {}, {}
    loop:spawn(function() res[0], errs[0] = c:add(1000, 0) end)
    loop:sleep(1000) -- the others start half a timeout later
    -- with time enough to be answered once the gate opens (with the
    -- client's 2 s they had 1 s left then: tight on a busy machine)
    local long = petrel.with(c, { timeout = 15000 })
    for i = 1, 3 do loop:spawn(function() res[i], errs[i] = long:add(i, 100) end) end
    assert.is_true(run_until(loop, function() return errs[0] ~= nil end, 10000))
    assert.is_nil(res[0])
    assert.matches("timeout", errs[0])
    gate.open = true -- the late reply to call 0 arrives now, with the others'
    assert.is_true(run_until(loop, function()
      return res[1] ~= nil and res[2] ~= nil and res[3] ~= nil
    end, 10000),
      "others: " .. tostring(errs[1]) .. ", " .. tostring(errs[2]) .. ", " .. tostring(errs[3]))
    for i = 1, 3 do assert.equal(100 + i, res[i]) end
    assert.equal(7, c:add(3, 4)) -- same connection, still good
    assert.equal(1, srv:stats().connections)
    assert.equal(0, srv:stats().errors)
  end)

  it("multiplex: concurrent oneway calls all finish", function()
    local notes = 0
    local srv = assert(petrel.server { loop = loop, port = 0, service = CALC.Calc, logger = false,
      handler = { note = function() notes = notes + 1 end } })
    local c = petrel.client { loop = loop, service = CALC.Calc, port = srv.port, multiplex = true,
      timeout = 10000 }
    local ok, done, big = 0, 0, string.rep("x", 1000000) -- sends that wait for the socket
    for _ = 1, 20 do
      loop:spawn(function()
        if c:note(big) == true then ok = ok + 1 end
        done = done + 1
      end)
    end
    assert.is_true(run_until(loop, function() return done == 20 end, 20000))
    assert.equal(20, ok)
    assert.is_true(run_until(loop, function() return notes == 20 end, 10000))
    assert.equal(1, srv:stats().connections)
  end)

  it("max_conns: 200 concurrent calls share at most max_conns connections and all succeed", function()
    local srv = assert(petrel.server { loop = loop, port = 0, service = CALC.Calc, logger = false, handler = {
      add = function(a, b) loop:sleep(2); return a + b end } })
    local c = petrel.client { loop = loop, service = CALC.Calc, port = srv.port,
      max_conns = 4, timeout = 30000 }
    local res, peak, done = {}, 0, 0
    for i = 1, 200 do
      loop:spawn(function()
        res[i] = c:add(i, 1)
        done = done + 1
      end)
    end
    assert.is_true(run_until(loop, function()
      peak = math.max(peak, petrel.stats(c).open)
      return done == 200
    end, 30000), done .. " of 200 done")
    for i = 1, 200 do assert.equal(i + 1, res[i]) end
    assert.is_true(peak <= 4, "open connections peaked at " .. peak)
    assert.is_true(srv:stats().connections <= 4, srv:stats().connections .. " connections accepted")
    assert.equal(0, petrel.stats(c).waiting)
  end)

  it("max_conns: a full backlog fails at once, a queued call times out, a closed connection frees its slot", function()
    local srv, gate = gated_server(loop)
    local c = petrel.client { loop = loop, service = CALC.Calc, port = srv.port,
      max_conns = 1, backlog = 1, timeout = 5000 }
    local r = {}
    loop:spawn(function() r[1] = { c:add(1, 1) } end) -- holds the only connection
    assert.is_true(run_until(loop, function() return srv.inflight == 1 end, 5000))
    petrel.configure(c, { timeout = 400 }) -- for the calls from here on
    loop:spawn(function() r[2] = { c:add(2, 2) } end) -- queued
    local v, err = c:add(3, 3)                        -- backlog full
    assert.is_nil(v)
    assert.matches("too many waiting calls", err)
    assert.matches("127.0.0.1:" .. srv.port, err, 1, true)
    assert.is_true(run_until(loop, function() return r[2] ~= nil end, 5000))
    assert.is_nil(r[2][1])
    assert.equal("wait for a connection to 127.0.0.1:" .. srv.port
      .. ": timeout after 400 ms (max_conns 1)", r[2][2])
    assert.is_nil(r[1])
    gate.open = true
    assert.is_true(run_until(loop, function() return r[1] ~= nil end, 5000))
    assert.equal(2, r[1][1])
    -- a call times out: its connection closes, and the queued call gets the slot
    gate.open = false
    loop:spawn(function() r[3] = { c:add(5, 5) } end)   -- 400 ms
    assert.is_true(run_until(loop, function() return srv.inflight == 1 end, 5000))
    petrel.configure(c, { timeout = 10000 })
    loop:spawn(function() r[4] = { c:add(6, 6) } end)   -- queued, 10 s
    assert.is_true(run_until(loop, function() return r[3] ~= nil end, 5000))
    assert.matches("^read from 127.0.0.1:%d+: timeout after 400 ms$", r[3][2])
    gate.open = true
    assert.is_true(run_until(loop, function() return r[4] ~= nil end, 8000))
    assert.equal(12, r[4][1])
    assert.equal(1, petrel.stats(c).open)
    assert.equal(2, srv:stats().connections)
  end)

  it("max_conns: refused connects give their slot back", function()
    local c = petrel.client { loop = loop, service = CALC.Calc, port = dead_port(loop),
      max_conns = 2, timeout = 5000 }
    local errs, done = {}, 0
    for i = 1, 20 do
      loop:spawn(function()
        local _, e = c:add(i, i)
        errs[i] = e
        done = done + 1
      end)
    end
    assert.is_true(run_until(loop, function() return done == 20 end, 10000))
    for i = 1, 20 do assert.matches("refused", errs[i]) end
    assert.equal(0, petrel.stats(c).open)
  end)

  it("transport errors name the peer and the phase", function()
    local port = dead_port(loop)
    local c = petrel.client { loop = loop, service = CALC.Calc, port = port }
    local _, err = c:add(1, 2)
    assert.equal("connect 127.0.0.1:" .. port .. ": Connection refused", err)

    local silent = raw_server(loop, "silent")
    c = petrel.client { loop = loop, service = CALC.Calc, port = silent.port, timeout = 200 }
    _, err = c:add(1, 2)
    assert.equal("read from 127.0.0.1:" .. silent.port .. ": timeout after 200 ms", err)

    local half = raw_server(loop, "halfclose")
    c = petrel.client { loop = loop, service = CALC.Calc, port = half.port }
    _, err = c:add(1, 2)
    assert.matches("^read from 127%.0%.0%.1:" .. half.port .. ": ", err)
    assert.matches("closed", err)

    local path = os.tmpname()
    os.remove(path)
    c = petrel.client { loop = loop, service = CALC.Calc, unix = path }
    _, err = c:add(1, 2)
    assert.equal("connect unix:" .. path .. ": No such file or directory", err)
    local lid = assert(loop.c:listen("unix:" .. path))
    loop:attach(lid, { on_accept = function(_, id)
      loop:attach(id, { on_data = function(_, cid) loop.c:input(cid):clear() end })
    end })
    c = petrel.client { loop = loop, service = CALC.Calc, unix = path, timeout = 200 }
    _, err = c:add(1, 2)
    assert.equal("read from unix:" .. path .. ": timeout after 200 ms", err)
    loop:close(lid)
    os.remove(path)
  end)

  it("never hides RPC methods behind client fields or methods", function()
    -- every one of these is a valid IDL method name
    local names = { "close", "call", "timeout", "host", "port", "loop", "service",
      "idle", "seq", "transport", "pool_size", "multiplex", "stats", "configure" }
    local fns, handler = {}, {}
    for i, n in ipairs(names) do
      fns[n] = { args = { { 1, "x", "i32" } }, result = "i32" }
      handler[n] = function(x) return x * 100 + i end
    end
    local S = petrel.schema { Odd = petrel.service(fns) }
    local srv = assert(petrel.server { loop = loop, port = 0, service = S.Odd, handler = handler })
    local c = petrel.client { loop = loop, service = S.Odd, port = srv.port }
    for i, n in ipairs(names) do
      assert.equal(700 + i, c[n](c, 7), n)
    end
    assert.equal(701, petrel.call(c, "close", 7))
    petrel.close(c)                      -- the documented way when close is an RPC
    assert.equal(702, c:call(7))         -- still usable: a fresh connection
    petrel.close(c)
    -- where the service has no such function, c:close() and c:call() work
    local k = petrel.client { loop = loop, service = CALC.Calc, port = srv.port }
    assert.is_function(k.close)
    k:close()
    assert.is_function(k.call)
  end)

  it("says to use ':' when a method is called with '.'", function()
    local srv = assert(petrel.server { loop = loop, port = 0, service = CALC.Calc, handler = calc_handler })
    local c = petrel.client { loop = loop, service = CALC.Calc, port = srv.port }
    local ok, err = pcall(function() return c.add(1, 2) end)
    assert.is_false(ok)
    assert.matches("c:add%(...%)", tostring(err))
    assert.matches("':'", tostring(err))
    ok, err = pcall(function() return c.ping() end)
    assert.is_false(ok)
    assert.matches("':'", tostring(err))
    assert.equal(3, c:add(1, 2))
  end)

  it("void returns true, a false bool is false, nil; petrel.assert keeps both safe", function()
    local S = assert(petrel.load([[
      service B { bool yes(), bool no(), void nothing(), i32 boom() }
    ]], { text = true }))
    local srv = assert(petrel.server { loop = loop, port = 0, service = S.B, logger = false, handler = {
      yes = function() return true end,
      no = function() return false end,
      nothing = function() end,
      boom = function() error("kaput") end,
    } })
    local c = petrel.client { loop = loop, service = S.B, port = srv.port }
    assert.is_true(c:nothing())
    assert.is_true(c:yes())
    local v, err = c:no()
    assert.is_false(v)
    assert.is_nil(err)
    assert.is_false(petrel.assert(c:no()))
    assert.is_true(petrel.assert(c:yes()))
    assert.is_true(petrel.assert(c:nothing()))
    local ok, e = pcall(function() return petrel.assert(c:boom()) end)
    assert.is_false(ok)
    assert.matches("kaput", tostring(e))
    assert.matches("INTERNAL_ERROR", tostring(e))
  end)

  it("checks options at creation, naming the option", function()
    local base = { loop = loop, service = CALC.Calc, port = 9 }
    net.bad_options(petrel.client, "petrel.client", base, {
      { "transport", "bufered", "option 'transport'.*\"bufered\"" },
      { "timeout", "fast", "option 'timeout'.*\"fast\"" },
      { "timeout", -5, "option 'timeout'" },
      { "transprot", "framed", "unknown option 'transprot' %(did you mean 'transport'%?%)" },
      { "pool_size", 1.5, "option 'pool_size'" },
      { "max_conns", 0, "option 'max_conns'" },
      { "backlog", -1, "option 'backlog'" },
      { "multiplex", "yes", "option 'multiplex'" },
      { "port", "http", "option 'port'" },
      { "service", {}, "option 'service'" },
      { { loop = loop, service = CALC.Calc }, "'port' or 'unix' is required" },
    })
    local c = petrel.client(base)
    local ok, err = pcall(petrel.configure, c, { timeout = "soon" })
    assert.is_false(ok)
    assert.matches("option 'timeout'", tostring(err))
  end)
end)
end
if why then
  describe("rpc client (io_uring)", function()
    it("runs on io_uring", function() pending("SKIP: io_uring is not available here: " .. tostring(why)) end)
  end)
end
