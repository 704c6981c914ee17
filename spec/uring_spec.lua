-- The io_uring back end: choosing it, its fallback, and the paths only it
-- has (buffer ring modes, running dry, zero-copy sends, SQPOLL,
-- cancellation on close). The rest of the network specs run on it too
-- (tools/runtests.sh runs them again with PETREL_BACKEND=uring).
-- Network only on 127.0.0.1; every wait is bounded.
local core = require "petrel.core"
local petrel = require "petrel"
local EV = core.loop_events
local poll_until = require "support.drive"

local BUILD = os.getenv("PETREL_BUILD") or "build"
local RT = jit and "luajit" or "lua5.4"

local probe, why = core.loop { backend = "uring" }
if probe then probe:free() end
-- a build without liburing (make URING=0) has epoll only
local compiled = false
for _, b in ipairs(core.loop_backends) do compiled = compiled or b == "io_uring" end
local NOT_COMPILED = "io_uring was not compiled in"

local function pattern(n, seed)
  local t = {}
  for i = 1, 256 do t[i] = string.char((i * 131 + (seed or 7)) % 256) end
  local chunk = table.concat(t)
  return chunk:rep(math.ceil(n / 256)):sub(1, n)
end

-- nconns clients each send `size` bytes to an echo server on one loop;
-- true when every client got its own bytes back.
local function echo_many(loop, nconns, size)
  local lid = assert(loop:listen("127.0.0.1", 0))
  local port = loop:port(lid)
  local want, got, done = {}, {}, 0
  for i = 1, nconns do
    local id = assert(loop:connect("127.0.0.1", port, 2000))
    want[id] = pattern(size, i)
  end
  local ok = poll_until(loop, function(t, id, err, arg)
    if t == EV.connected then
      assert.equal(0, err)
      loop:output(id):write(want[id])
      loop:send(id)
    elseif t == EV.data and want[id] == nil then -- server side: echo
      loop:output(id):append(loop:input(id))
      loop:send_later(id)
    elseif t == EV.data then
      local input = loop:input(id)
      if #input >= size and not got[id] then
        got[id] = input:read()
        done = done + 1
      end
    end
    return done == nconns
  end, 20000)
  for id, w in pairs(want) do
    if got[id] ~= w then return false, "conn " .. id .. " got " .. #(got[id] or "") .. " bytes" end
  end
  return ok
end

describe("io_uring back end", function()
  it("is chosen per loop, and epoll stays available", function()
    local e = assert(core.loop { backend = "epoll" })
    assert.equal("epoll", (e:backend()))
    e:free()
    assert.has_error(function() core.loop { backend = "kqueue" } end)
    assert.equal("epoll", core.loop_backends[1])
    if not compiled then
      local u, err = core.loop { backend = "uring" }
      assert.is_nil(u)
      assert.equal(NOT_COMPILED, err)
      local a = assert(core.loop { backend = "auto" })
      assert.same({ "epoll", NOT_COMPILED }, { a:backend() })
      a:free()
      return
    end
    assert.not_equal(NOT_COMPILED, why)
    if not probe then
      pending("SKIP: io_uring is not available here: " .. tostring(why))
      return
    end
    local u = assert(core.loop { backend = "uring" })
    local name, note = u:backend()
    assert.equal("io_uring", name)
    assert.matches("buffer ring", note)
    u:free()
    local a = assert(core.loop { backend = "auto" })
    assert.equal("io_uring", (a:backend()))
    a:free()
  end)

  it("auto falls back to epoll and says why; uring fails clearly", function()
    local helper = BUILD .. "/tools/no_uring"
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(([[
      package.cpath = %q .. ";" .. package.cpath
      local core = require "petrel.core"
      local a = assert(core.loop { backend = "auto" })
      print("auto", a:backend())
      local u, err = core.loop { backend = "uring" }
      print("uring", tostring(u), err)
    ]]):format(BUILD .. "/" .. RT .. "/?.so"))
    f:close()
    local p = io.popen(helper .. " " .. RT .. " " .. script .. " 2>&1")
    local out = p:read("*a")
    p:close()
    os.remove(script)
    if out:match("no_uring: seccomp") then
      pending("SKIP: seccomp filters are refused here: " .. out)
      return
    end
    local reason = compiled and "io_uring unavailable: io_uring_setup: Operation not permitted"
      or NOT_COMPILED
    assert.matches("auto\tepoll\t" .. reason, out, 1, true)
    assert.matches("uring\tnil\t" .. reason, out, 1, true)
  end)

  if not probe then
    it("runs its own paths", function()
      pending("SKIP: io_uring is not available here: " .. tostring(why))
    end)
    return
  end

  it("echoes through an incremental and a classic buffer ring", function()
    for _, inc in ipairs { true, false } do
      local loop = assert(core.loop { backend = "uring", ring_incremental = inc })
      local _, note = loop:backend()
      if inc then assert.matches("incremental", note) else assert.is_nil(note:match("incremental")) end
      assert.is_true(echo_many(loop, 20, 200000))
      local st = loop:stats()
      assert.is_true(st.ring_cqes > 0 and st.ring_sqes > 0)
      loop:free()
    end
  end)

  it("keeps every byte in order when the buffer ring runs dry", function()
    local loop = assert(core.loop { backend = "uring", ring_bufs = 2, ring_buf_size = 512,
      ring_incremental = false })
    assert.is_true(echo_many(loop, 30, 64 * 1024))
    assert.is_true(loop:stats().ring_enobufs > 0)
    loop:free()
  end)

  it("sends large outputs with sendmsg_zc and keeps them intact", function()
    -- loopback copies anyway, so petrel sends plainly there unless forced
    local plain = assert(core.loop { backend = "uring", zc_min = 8192 })
    assert.is_true(echo_many(plain, 2, 256 * 1024))
    assert.equal(0, plain:stats().zc_sends)
    plain:free()
    local loop = assert(core.loop { backend = "uring", zc_min = 8192, zc_force = true })
    local _, note = loop:backend()
    if not note:match("sendmsg_zc") then
      loop:free()
      pending("SKIP: no sendmsg_zc in this kernel")
      return
    end
    assert.is_true(echo_many(loop, 4, 1024 * 1024))
    assert.is_true(loop:stats().zc_sends > 0)
    loop:free()
    local never = assert(core.loop { backend = "uring", zc_min = false, zc_force = true })
    assert.is_true(echo_many(never, 2, 256 * 1024))
    assert.equal(0, never:stats().zc_sends)
    never:free()
  end)

  it("serves RPC with SQPOLL", function()
    local loop = assert(petrel.loop { backend = "uring", sqpoll = true })
    local name, note = loop:backend()
    assert.equal("io_uring", name)
    assert.matches("SQPOLL", note)
    local S = assert(petrel.load("service K { i32 add(1: i32 a, 2: i32 b) }", { text = true }))
    local srv = assert(petrel.server { loop = loop, port = 0, service = S.K,
      handler = { add = function(a, b) return a + b end } })
    local c = petrel.client { loop = loop, service = S.K, port = srv.port }
    for i = 1, 50 do assert.equal(i + 1, c:add(i, 1)) end
    c:close()
    loop:free()
  end)

  it("links large receives without copying; the bytes outlive the loop", function()
    local loop = assert(core.loop { backend = "uring" })
    local lid = assert(loop:listen("127.0.0.1", 0))
    local cid = assert(loop:connect("127.0.0.1", loop:port(lid), 2000))
    local payload = pattern(1024 * 1024, 3)
    local sid, inb
    assert.is_true(poll_until(loop, function(t, id)
      if t == EV.accepted then sid = id end
      if t == EV.connected then
        loop:output(cid):write(payload)
        loop:send(cid)
      end
      if sid then inb = loop:input(sid) end
      return inb ~= nil and #inb >= #payload
    end))
    assert.is_true(loop:stats().ring_linked > 0)
    loop:free() -- the ring's memory stays while inb holds links into it
    collectgarbage("collect")
    assert.equal(payload, inb:peek(#payload))
    assert.equal(payload:sub(1, 100), inb:read(100))
    inb:clear()
    inb = nil
    collectgarbage("collect") -- the last link frees the memory
  end)

  it("cancels the requests of a closed conn and recycles it", function()
    local loop = assert(core.loop { backend = "uring" })
    -- fixed socket buffers (no autotuning): far less than 8 MiB fits in them
    local lid = assert(loop:listen("127.0.0.1", 0, { sndbuf = 65536 }))
    local cid = assert(loop:connect("127.0.0.1", loop:port(lid), 2000, { rcvbuf = 65536 }))
    local sid
    assert.is_true(poll_until(loop, function(t, id)
      if t == EV.accepted then sid = id end
      return sid ~= nil
    end))
    loop:caps(cid, 1, 0) -- the client stops reading: the server's send stalls
    loop:output(sid):write(pattern(8 * 1024 * 1024))
    -- pending, handed to the kernel (2: also over the 4 MiB default out_cap)
    assert.equal(2, loop:send(sid))
    poll_until(loop, function() end, 100)
    assert.is_true(loop:pending(sid) > 0)
    local before = loop:stats().recycled
    loop:close(sid) -- recv and send in flight: cancelled
    assert.is_true(poll_until(loop, function() return false end, 200) == false)
    assert.equal(before + 1, loop:stats().recycled)
    assert.equal(1, loop:stats().conns_open)
    loop:free() -- the client's recv is cancelled too; returns promptly
  end)
end)
