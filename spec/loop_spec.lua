-- petrel.core.loop: the event loop binding, on Lua 5.4 and LuaJIT.
-- Network only on 127.0.0.1 and unix sockets; every wait is bounded.
local core = require "petrel.core"
local EV = core.loop_events

local poll_until = require "support.drive"
local function drive(loop, handler, ms) return poll_until(loop, handler, ms or 5000) end

-- io.open cannot open a socket file (ENXIO): renaming it onto itself
-- tells whether it is there
local function exists(path) return os.rename(path, path) ~= nil end

local function pattern(n)
  local t, chunk = {}, {}
  for i = 1, 256 do chunk[i] = string.char((i * 131 + 7) % 256) end
  chunk = table.concat(chunk)
  for i = 1, math.ceil(n / 256) do t[i] = chunk end
  return table.concat(t):sub(1, n)
end

-- An echo server and a client in one loop; returns what came back.
local function echo(loop, host, port, payload, deferred, lid)
  lid = lid or assert(loop:listen(host, port))
  if not host:match("^unix:") then port = assert(loop:port(lid)) end
  local cid = assert(loop:connect(host, port, 2000))
  local sid, got
  local ok = drive(loop, function(t, id, err, arg)
    if t == EV.accepted then
      assert.equal(lid, arg)
      sid = id
    elseif t == EV.connected then
      assert.equal(cid, id)
      assert.equal(0, err)
      loop:output(cid):write(payload)
      assert.is_true(loop:send(cid) >= 0)
    elseif t == EV.data and id == sid then
      loop:output(sid):append(loop:input(sid))
      if deferred then loop:send_later(sid) else loop:send(sid) end
    elseif t == EV.data and id == cid then
      local input = loop:input(cid)
      if #input >= #payload then
        got = input:read()
        return true
      end
    end
  end, 10000)
  assert.is_true(ok)
  return got, lid, cid, sid
end

describe("petrel.core.loop", function()
  it("names its completion types", function()
    for _, name in ipairs { "accepted", "data", "drained", "closed",
                            "connected", "timer", "wake" } do
      assert.is_number(EV[name])
      assert.equal(name, EV[EV[name]])
    end
    assert.is_string(core.strerror(111))
  end)

  it("echoes over TCP through one loop", function()
    local loop = core.loop()
    local got, lid, cid, sid = echo(loop, "127.0.0.1", 0, "hello")
    assert.equal("hello", got)
    local port = loop:port(lid)
    local peer, localaddr = loop:info(cid)
    assert.equal("127.0.0.1:" .. port, peer)
    assert.matches("^127%.0%.0%.1:%d+$", localaddr)
    local speer, slocal = loop:info(sid)
    assert.equal(localaddr, speer)
    assert.equal(peer, slocal)
    local st = loop:stats()
    assert.equal(1, st.accepted)
    assert.equal(1, st.connected)
    assert.equal(2, st.conns_open)
    assert.equal(1, st.listeners_open)
    assert.equal(10, st.bytes_in)
    assert.equal(10, st.bytes_out)
    assert.is_true(st.readv_calls > 0 and st.writev_calls > 0)
    assert.is_true(st.wait_zero + st.wait_block > 0)
    loop:free()
  end)

  it("echoes 1 MiB, also with deferred sends", function()
    local payload = pattern(1024 * 1024)
    for _, deferred in ipairs { false, true } do
      local loop = core.loop { pool = core.pool() }
      local got = echo(loop, "127.0.0.1", 0, payload, deferred)
      assert.equal(#payload, #got)
      assert.is_true(got == payload)
      loop:free()
    end
  end)

  it("echoes over a unix socket", function()
    local path = os.tmpname()
    os.remove(path)
    local loop = core.loop()
    local got = echo(loop, "unix:" .. path, nil, pattern(100000))
    assert.is_true(got == pattern(100000))
    loop:close_all()
    loop:poll(0)
    assert.is_false(exists(path)) -- the listener removed its file
    loop:free()
  end)

  it("reports a refused connect as CONNECTED with an errno", function()
    local loop = core.loop()
    local lid = loop:listen("127.0.0.1", 0)
    local port = loop:port(lid)
    assert.is_true(loop:close(lid))
    assert.is_false(loop:close(lid))
    local cid = assert(loop:connect("127.0.0.1", port, 1000))
    local err
    assert.is_true(drive(loop, function(t, id, e)
      if t == EV.connected and id == cid then err = e; return true end
    end))
    assert.is_true(err > 0)
    assert.matches("refused", core.strerror(err))
    -- the conn's error names the phase and the peer
    assert.equal("connect 127.0.0.1:" .. port .. ": " .. core.strerror(err), loop:error(cid))
    -- malformed addresses fail at once, naming the address
    local id, msg = loop:connect("bad host!", 80)
    assert.is_nil(id)
    assert.matches("^connect bad host!:80: not an address", msg)
    assert.is_nil((loop:listen("unix:")))
    loop:free()
  end)

  it("names the phase and the address when listen fails", function()
    local loop = core.loop()
    local lid = assert(loop:listen("127.0.0.1", 0))
    local port = loop:port(lid)
    local id, msg = loop:listen("127.0.0.1", port)
    assert.is_nil(id)
    assert.equal("listen 127.0.0.1:" .. port .. ": Address already in use", msg)
    id, msg = loop:listen("no.such.host.invalid", 80)
    assert.is_nil(id)
    assert.equal("listen no.such.host.invalid:80: a host name (listen takes numeric addresses)", msg)
    loop:free()
  end)

  -- issue 10, defect 3: a second server on a unix path took the live
  -- server's socket over
  it("refuses a unix path a live server answers on, takes over a stale one", function()
    local path = os.tmpname()
    os.remove(path)
    local loop = core.loop()
    local lid = assert(loop:listen("unix:" .. path))
    local id, msg = loop:listen("unix:" .. path)
    assert.is_nil(id)
    assert.equal("listen unix:" .. path .. ": address in use by a live server", msg)
    -- the first server still answers on its path
    assert.is_true(echo(loop, "unix:" .. path, nil, "still mine", false, lid) == "still mine")
    assert.is_true(exists(path))
    loop:free()
    assert.is_false(exists(path)) -- removed by its listener
    -- a server that died without cleaning up leaves a stale socket file
    local pid = assert(core.fork())
    if pid == 0 then
      local l = core.loop()
      l:listen("unix:" .. path)
      core._exit(0)
    end
    assert.equal(pid, (core.wait(pid)))
    assert.is_true(exists(path))
    loop = core.loop()
    assert.is_true(echo(loop, "unix:" .. path, nil, "taken over") == "taken over")
    loop:free()
    assert.is_false(exists(path))
    -- a file that is not a socket is never removed
    local f = assert(io.open(path, "w"))
    f:write("precious")
    f:close()
    loop = core.loop()
    id, msg = loop:listen("unix:" .. path)
    assert.is_nil(id)
    assert.equal("listen unix:" .. path .. ": Address already in use", msg)
    loop:free()
    f = assert(io.open(path, "r"))
    assert.equal("precious", f:read("*a"))
    f:close()
    os.remove(path)
  end)

  it("resolves host names off the loop's thread, with a cache", function()
    -- each lookup is slowed down (2 s, far longer than a busy machine
    -- keeps the loop from running): timers keep firing meanwhile
    local loop = core.loop { dns_delay = 2000 }
    local lid = assert(loop:listen("127.0.0.1", 0))
    local port = loop:port(lid)
    -- where "localhost" is ::1 first, the same port on ::1 answers too
    local lid6 = loop:listen("::1", port)
    local t0 = loop:now()
    local tid = loop:timer(20)
    -- "LOCALHOST" goes to the resolver ("localhost" is 127.0.0.1 at once)
    local cid = assert(loop:connect("LOCALHOST", port, 10000))
    local fired, err
    assert.is_true(drive(loop, function(t, id, e)
      if t == EV.timer and id == tid then fired = loop:now() - t0 end
      if t == EV.connected and id == cid then err = e; return true end
    end, 15000))
    assert.equal(0, err)
    -- (fired before the lookup could have ended)
    assert.is_true(fired ~= nil and fired < 1900, "the timer waited for the lookup: " .. tostring(fired))
    assert.is_true(loop:now() - t0 >= 1990)
    local st = loop:stats()
    assert.equal(1, st.dns_lookups)
    assert.equal(0, st.dns_cached)
    -- the second connect is answered from the cache, without the delay
    t0 = loop:now()
    cid = assert(loop:connect("LOCALHOST", port, 10000))
    assert.is_true(drive(loop, function(t, id, e)
      if t == EV.connected and id == cid then err = e; return true end
    end, 15000))
    assert.equal(0, err)
    assert.is_true(loop:now() - t0 < 1000) -- no 2 s lookup
    st = loop:stats()
    assert.equal(1, st.dns_lookups)
    assert.equal(1, st.dns_cached)
    if lid6 then loop:close(lid6) end
    loop:free()
  end)

  it("reports a name that does not resolve with the phase", function()
    local loop = core.loop()
    local cid = assert(loop:connect("nosuch.invalid", 80, 30000))
    local err
    assert.is_true(drive(loop, function(t, id, e)
      if t == EV.connected and id == cid then err = e; return true end
    end, 35000))
    assert.is_true(err > 0)
    assert.matches("^resolve nosuch%.invalid: %a", loop:error(cid))
    loop:free()
  end)

  it("fires timers in deadline order and cancels them", function()
    local loop = core.loop()
    local t0 = loop:now()
    local a = loop:timer(40)
    local b = loop:timer(10)
    local c = loop:timer(25)
    local d = loop:timer(10)
    local x = loop:timer(15)
    assert.is_true(loop:cancel(x))
    assert.is_false(loop:cancel(x))
    local order = {}
    assert.is_true(drive(loop, function(t, id)
      if t == EV.timer then order[#order + 1] = id end
      return #order == 4
    end, 2000))
    assert.same({ b, d, c, a }, order)
    assert.is_true(loop:now() - t0 >= 39)
    assert.is_false(loop:cancel(a))
    local st = loop:stats()
    assert.equal(4, st.timers_fired)
    assert.equal(0, st.timers_active)
    loop:free()
  end)

  it("wakes up, coalesced", function()
    local loop = core.loop()
    loop:wake(); loop:wake(); loop:wake()
    local n, ty = loop:poll(1000)
    assert.equal(1, n)
    assert.equal(EV.wake, ty[1])
    assert.equal(0, (loop:poll(10)))
    assert.equal(1, loop:stats().wakeups)
    loop:free()
  end)

  it("reuses the completion arrays and honours max", function()
    local loop = core.loop()
    for i = 1, 5 do loop:timer(0) end
    local n, ty1 = loop:poll(100, 2)
    assert.equal(2, n)
    local n2, ty2 = loop:poll(100, 10)
    assert.equal(3, n2)
    assert.equal(ty1, ty2) -- the same table every call
    assert.has_error(function() loop:poll(0, 0) end)
    loop:free()
  end)

  it("delivers CLOSED on peer close and recycles at the next poll", function()
    local loop = core.loop()
    local _, _, cid, sid = echo(loop, "127.0.0.1", 0, "x")
    local sin = loop:input(sid)
    assert.is_true(loop:close(cid))
    local err
    assert.is_true(drive(loop, function(t, id, e)
      if t == EV.closed and id == sid then err = e; return true end
    end))
    assert.equal(0, err) -- orderly EOF
    loop:poll(0) -- batch boundary: both are recycled
    local b, msg = loop:input(sid)
    assert.is_nil(b)
    assert.matches("closed", msg)
    assert.is_nil((loop:send(sid)))
    assert.is_false(loop:close(sid))
    -- the buffer the script kept is still a working buffer
    sin:write("still here")
    assert.equal("still here", sin:read())
    local st = loop:stats()
    assert.equal(0, st.conns_open)
    assert.equal(2, st.closed)
    assert.equal(2, st.recycled)
    loop:free()
  end)

  it("stops reading at the input cap until consumed", function()
    local loop = core.loop { in_cap = 32768 }
    local lid = loop:listen("127.0.0.1", 0)
    local cid = loop:connect("127.0.0.1", loop:port(lid), 1000, { sndbuf = 4096 })
    local sid, sent
    local total = 512 * 1024
    -- until the server side stops reading (a fixed 300 ms of polling was
    -- too short on a busy machine), then a while longer: it stays stopped
    assert.is_true(drive(loop, function(t, id)
      if t == EV.accepted then sid = id end
      if t == EV.connected then
        loop:output(cid):write(pattern(total))
        sent = loop:send(cid)
      end
      return sid ~= nil and sent ~= nil and loop:stats().rd_paused > 0
    end, 10000), "reading never paused at the input cap")
    drive(loop, function() end, 100)
    assert.equal(1, sent) -- pending
    local input = loop:input(sid)
    assert.equal(32768, #input)
    assert.equal(1, loop:stats().rd_paused)
    local got, have, drained = { input:read() }, 32768, false
    loop:consumed(sid)
    assert.is_true(drive(loop, function(t, id, _, arg)
      if t == EV.drained and id == cid then drained = true end
      if t == EV.data and id == sid then
        have = have + arg
        got[#got + 1] = input:read()
        loop:consumed(sid)
      end
      return drained and have == total
    end, 10000))
    assert.is_true(table.concat(got) == pattern(total))
    loop:free()
  end)

  it("closes gracefully after the output drained", function()
    local loop = core.loop()
    local lid = loop:listen("127.0.0.1", 0)
    local cid = loop:connect("127.0.0.1", loop:port(lid), 1000)
    local payload = pattern(300000)
    local got, err = {}, nil
    assert.is_true(drive(loop, function(t, id, e)
      if t == EV.accepted then
        loop:output(id):write(payload)
        loop:close(id, true)
      elseif t == EV.data and id == cid then
        got[#got + 1] = loop:input(cid):read()
      elseif t == EV.closed and id == cid then
        err = e
        return true
      end
    end))
    assert.equal(0, err)
    assert.is_true(table.concat(got) == payload)
    loop:free()
  end)

  it("raises on misuse and after free", function()
    local loop = core.loop()
    assert.has_error(function() loop:input("x") end)
    assert.has_error(function() loop:timer(-1) end)
    assert.has_error(function() loop:listen("127.0.0.1", 70000) end)
    assert.has_error(function() core.loop { in_cap = "big" } end)
    local lid = loop:listen("127.0.0.1", 0)
    assert.has_error(function() loop:input(lid) end) -- a listener
    local b, msg = loop:output(12345)
    assert.is_nil(b)
    assert.is_string(msg)
    loop:free()
    loop:free() -- idempotent
    assert.has_error(function() loop:poll(0) end)
  end)

  it("survives garbage collection with live connections", function()
    for _ = 1, 3 do
      local loop = core.loop()
      local _, _, cid, sid = echo(loop, "127.0.0.1", 0, "gc")
      local keep = loop:input(sid)
      loop:output(cid):write("pending")
      loop = nil
      collectgarbage()
      collectgarbage()
      keep:write("ok")
      assert.equal("ok", keep:read())
    end
  end)
end)
