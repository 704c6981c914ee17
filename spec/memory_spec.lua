-- Memory per connection (issue 12): what a connection's buffers hold while
-- it waits, and that steady traffic reuses pool blocks instead of
-- allocating. Asserted through the pool's own counters, not timings or
-- RSS, on both back ends and both runtimes. Network only on 127.0.0.1;
-- every wait is bounded.
local petrel = require "petrel"
local core = require "petrel.core"
local EV = core.loop_events
local drive = require "support.drive"
local backends = require "support.backends"

local BIG_CLASS = 1024 -- no block this large may be held by a waiting conn

-- n client conns to a listener of loop; returns { {cid=, sid=} ... }.
local function conns(loop, n)
  local lid = assert(loop:listen("127.0.0.1", 0))
  local port = assert(loop:port(lid))
  local list, by_cid, accepted, connected = {}, {}, {}, 0
  for i = 1, n do
    local cid = assert(loop:connect("127.0.0.1", port, 5000))
    list[i] = { cid = cid }
    by_cid[cid] = list[i]
  end
  assert.is_true(drive(loop, function(t, id, err)
    if t == EV.accepted then accepted[#accepted + 1] = id end
    if t == EV.connected and by_cid[id] then
      assert.equal(0, err)
      connected = connected + 1
    end
    return #accepted == n and connected == n
  end, 20000), "connections")
  loop:close(lid)
  -- pair them by a first byte-free handshake: each client names itself
  local sid_of = {}
  for i, c in ipairs(list) do
    loop:output(c.cid):write(string.char(i % 256, math.floor(i / 256)))
    assert(loop:send(c.cid))
  end
  local want = {}
  for _, sid in ipairs(accepted) do want[sid] = true end
  local left = n
  assert.is_true(drive(loop, function(t, id)
    if t == EV.data and want[id] and #loop:input(id) >= 2 then
      local b = loop:input(id)
      local i = b:read_u8() + 256 * b:read_u8()
      sid_of[i] = id
      want[id] = nil
      left = left - 1
    end
    return left == 0
  end, 20000), "handshake")
  for i, c in ipairs(list) do c.sid = sid_of[i] end
  return list
end

-- Poll until the pool's bytes in use reach `bytes` or ms pass; the stats.
local function settle(loop, pool, bytes, ms)
  local st = pool:stats()
  local deadline = loop:now() + (ms or 5000)
  while st.bytes_in_use > bytes and loop:now() < deadline do
    assert(loop:poll(10))
    st = pool:stats()
  end
  return st
end

-- Run a petrel.loop until fn() is true or ms pass; fn()'s last value.
local function run_until(loop, fn, ms)
  local deadline = loop:now() + ms
  loop:run(function() return fn() or loop:now() > deadline end)
  return fn()
end

local function big_blocks(st)
  local k = 0
  for _, c in ipairs(st.classes) do
    if c.size >= BIG_CLASS then k = k + c.in_use end
  end
  return k
end

describe("memory per connection", function()
  local list, why = backends()
  for _, be in ipairs { "epoll", "io_uring" } do
    local b
    for _, x in ipairs(list) do if x.name == be then b = x end end
    local function loop_of()
      if not b then
        pending("SKIP: io_uring is not available here: " .. tostring(why))
        return
      end
      local pool = petrel.pool()
      local opts = { pool = pool }
      for k, v in pairs(b.opts) do opts[k] = v end
      return assert(core.loop(opts)), pool
    end

    it("keeps 4 bytes of a frame in a 128-byte block (" .. be .. ")", function()
      local loop, pool = loop_of()
      if not loop then return end
      local N = 40
      local cs = conns(loop, N)
      local waiting = {}
      for _, c in ipairs(cs) do
        waiting[c.sid] = true
        loop:output(c.cid):write("\0\0\0\42") -- a frame length, the rest to come
        assert(loop:send(c.cid))
      end
      local left = N
      assert.is_true(drive(loop, function(t, id)
        if t == EV.data and waiting[id] and #loop:input(id) == 4 then
          waiting[id] = nil
          left = left - 1
        end
        return left == 0
      end, 10000), "partial frames")
      local st = settle(loop, pool, N * 128)
      assert.equal(0, big_blocks(st))
      assert.equal(N * 128, st.bytes_in_use)
      -- epoll read them into 8 KiB blocks and moved them at the batch
      -- boundary; io_uring copied them from its ring into 128 B blocks
      assert.equal(be == "epoll" and 4 * N or 0, loop:stats().settled)
      -- the rest of the frame completes it, in order
      for _, c in ipairs(cs) do
        loop:output(c.cid):write(string.rep("x", 42))
        assert(loop:send(c.cid))
      end
      left = N
      for _, c in ipairs(cs) do waiting[c.sid] = true end
      assert.is_true(drive(loop, function(t, id)
        if t == EV.data and waiting[id] and #loop:input(id) == 46 then
          waiting[id] = nil
          left = left - 1
        end
        return left == 0
      end, 10000), "whole frames")
      for _, c in ipairs(cs) do
        local inb = loop:input(c.sid)
        assert.equal(42, inb:read_u32())
        assert.equal(string.rep("x", 42), inb:read())
      end
      loop:free()
    end)

    it("gives a 1000-byte partial frame a 1 KiB block, not the read's (" .. be .. ")", function()
      local loop, pool = loop_of()
      if not loop then return end
      local cs = conns(loop, 4)
      for _, c in ipairs(cs) do
        loop:output(c.cid):write(string.rep("p", 1000))
        assert(loop:send(c.cid))
      end
      local got = 0
      assert.is_true(drive(loop, function(t, id)
        if t == EV.data then got = got + 1 end
        for _, c in ipairs(cs) do
          if #loop:input(c.sid) < 1000 then return false end
        end
        return true
      end, 10000), "data")
      local st = settle(loop, pool, 4 * 1024)
      assert.equal(4 * 1024, st.bytes_in_use)
      for _, c in ipairs(st.classes) do
        if c.in_use > 0 then assert.equal(1024, c.size) end
      end
      loop:free()
    end)

    it("does not keep a waiting frame in the ring's buffers (" .. be .. ")", function()
      local loop, pool = loop_of()
      if not loop then return end
      local cs = conns(loop, 2)
      local part = string.rep("r", 20000) -- of a longer frame
      for _, c in ipairs(cs) do
        loop:output(c.cid):write(part)
        assert(loop:send(c.cid))
      end
      assert.is_true(drive(loop, function()
        for _, c in ipairs(cs) do
          if #loop:input(c.sid) < #part then return false end
        end
        return true
      end, 10000), "data")
      assert(loop:poll(0)) -- a batch boundary
      local st = loop:stats()
      if be == "io_uring" then
        if st.ring_linked == 0 then
          pending("SKIP: this ring copies every receive (no incremental buffers)")
          return
        end
        assert.is_true(st.settled > 0)
      end
      -- nothing linked stays in the inputs: the ring has its buffers back
      assert.equal(0, pool:stats().nocopy_blocks)
      for _, c in ipairs(cs) do assert.equal(part, loop:input(c.sid):read()) end
      loop:free()
    end)

    it("holds no block once input is consumed and output sent (" .. be .. ")", function()
      local loop, pool = loop_of()
      if not loop then return end
      local N = 20
      local cs = conns(loop, N)
      local by_sid, by_cid = {}, {}
      for _, c in ipairs(cs) do by_sid[c.sid] = c; by_cid[c.cid] = c end
      for _, c in ipairs(cs) do
        loop:output(c.cid):write(string.rep("q", 3000))
        assert(loop:send(c.cid))
      end
      local replies = 0
      assert.is_true(drive(loop, function(t, id)
        if t == EV.data and by_sid[id] and #loop:input(id) >= 3000 then
          local s = loop:input(id):read(3000)
          loop:output(id):write(s:upper())
          assert(loop:send(id))
        elseif t == EV.data and by_cid[id] and #loop:input(id) >= 3000 then
          assert.equal(string.rep("Q", 3000), loop:input(id):read(3000))
          replies = replies + 1
        end
        return replies == N
      end, 10000), "replies")
      local st = settle(loop, pool, 0)
      assert.equal(0, st.bytes_in_use)
      loop:free()
    end)

    it("serves steady traffic from the pool's free lists, no allocation (" .. be .. ")", function()
      local loop, pool = loop_of()
      if not loop then return end
      local N = 16
      local cs = conns(loop, N)
      local by_sid, by_cid = {}, {}
      for _, c in ipairs(cs) do by_sid[c.sid] = c; by_cid[c.cid] = c end
      local msg = string.rep("m", 1020)
      local function round()
        for _, c in ipairs(cs) do
          loop:output(c.cid):write_u32(#msg):write(msg)
          assert(loop:send(c.cid))
        end
        local replies = 0
        assert.is_true(drive(loop, function(t, id)
          if t == EV.data and by_sid[id] then
            local inb = loop:input(id)
            while #inb >= 4 + #msg do
              loop:output(id):write(inb:read(4 + #msg))
              assert(loop:send(id))
            end
          elseif t == EV.data and by_cid[id] then
            local inb = loop:input(id)
            while #inb >= 4 + #msg do
              inb:skip(4 + #msg)
              replies = replies + 1
            end
          end
          return replies == N
        end, 10000), "round")
      end
      for _ = 1, 3 do round() end -- warm-up: the free lists fill
      settle(loop, pool, 0)
      local before = pool:stats()
      for _ = 1, 40 do round() end
      local after = settle(loop, pool, 0)
      assert.equal(before.misses, after.misses)
      assert.is_true(after.hits - before.hits >= 40 * N)
      loop:free()
    end)

    it("keeps an RPC server's waiting connections small (" .. be .. ")", function()
      if not b then
        pending("SKIP: io_uring is not available here: " .. tostring(why))
        return
      end
      local S = petrel.schema {
        Echo = petrel.service { echo = { args = { {1, "s", "string"} }, result = "string" } },
      }
      local loop = assert(petrel.loop(b.opts))
      local server = assert(petrel.server { service = S.Echo, loop = loop, port = 0,
        handler = { echo = function(s) return s end } })
      local c = loop.c
      local N = 30
      local ids = {}
      for i = 1, N do ids[i] = assert(c:connect("127.0.0.1", server.port, 5000)) end
      assert.is_true(run_until(loop, function() return server:stats().open == N end, 10000))
      local base = petrel.pool_stats().bytes_in_use
      for _, id in ipairs(ids) do
        c:output(id):write("\0\0\0\80")
        assert(c:send(id))
      end
      assert.is_true(run_until(loop, function()
        return server:stats().loop.bytes_in >= 4 * N
      end, 10000))
      -- the clients' outputs went back as they drained
      local st
      run_until(loop, function()
        st = petrel.pool_stats()
        return st.bytes_in_use - base <= N * 128
      end, 5000)
      assert.is_true(st.bytes_in_use - base <= N * 128,
        ("pool in use grew by %d bytes"):format(st.bytes_in_use - base))
      for _, id in ipairs(ids) do c:close(id) end
      server:shutdown()
      loop:free()
    end)
  end
end)
