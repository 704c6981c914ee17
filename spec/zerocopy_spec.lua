-- Zero-copy transfers: loop:sendfile / loop:splice (petrel.core.loop) and
-- the blocking-style helpers of petrel.loop, on Lua 5.4 and LuaJIT. Each
-- case also runs with the copying fallbacks forced (no_sendfile /
-- no_splice). Network only on 127.0.0.1 and unix sockets; waits bounded.
local core = require "petrel.core"
local ploop = require "petrel.loop"
local EV = core.loop_events

local poll_until = require "support.drive"
local function drive(loop, handler, ms) return poll_until(loop, handler, ms or 10000) end

local function pattern(n, seed)
  local chunk = {}
  for i = 1, 251 do chunk[i] = string.char((i * 131 + (seed or 7)) % 256) end
  chunk = table.concat(chunk)
  local t = {}
  for i = 1, math.ceil(n / #chunk) do t[i] = chunk end
  return table.concat(t):sub(1, n)
end

local tmpfiles = {}
local function tmpname()
  local p = os.tmpname()
  tmpfiles[#tmpfiles + 1] = p
  return p
end

local BIG = 3 * 1024 * 1024
local file_data = pattern(BIG, 11)
local file_path
local function big_file()
  if not file_path then
    file_path = tmpname()
    local f = assert(io.open(file_path, "wb"))
    f:write(file_data)
    f:close()
  end
  return file_path
end

-- A connected pair in one loop: client id, server id.
local function pair(loop, unix)
  local host, port = "127.0.0.1", 0
  if unix then host = "unix:" .. tmpname() .. ".sock" end
  local lid = assert(loop:listen(host, port))
  if not unix then port = assert(loop:port(lid)) end
  local cid = assert(loop:connect(host, port, 2000))
  local sid, connected
  assert(drive(loop, function(t, id, err)
    if t == EV.accepted then sid = id end
    if t == EV.connected and id == cid then
      assert.equal(0, err)
      connected = true
    end
    return sid and connected
  end, 5000))
  loop:close(lid)
  return cid, sid
end

-- Poll until `want` bytes arrived on rid; returns them (and the events seen)
local function receive(loop, rid, want, seen)
  local parts, have = {}, 0
  seen = seen or {}
  local ok = drive(loop, function(t, id, err, arg)
    seen[#seen + 1] = { t, id, err, arg }
    if t == EV.data and id == rid then
      local s = loop:input(rid):read()
      parts[#parts + 1] = s
      have = have + #s
    end
    return have >= want
  end, 20000)
  assert.is_true(ok, "timed out with " .. have .. " of " .. want)
  return table.concat(parts), seen
end

local function has_event(seen, ty, id)
  for _, e in ipairs(seen) do
    if e[1] == ty and e[2] == id then return e end
  end
end

local modes = {
  { name = "zero-copy", opts = nil },
  { name = "fallback", opts = { no_sendfile = true, no_splice = true } },
}

describe("zero-copy transfers", function()
  teardown(function()
    for _, p in ipairs(tmpfiles) do os.remove(p); os.remove(p .. ".sock") end
  end)

  it("names the spliced completion", function()
    assert.equal("spliced", EV[EV.spliced])
  end)

  for _, mode in ipairs(modes) do
    for _, unix in ipairs { false, true } do
      local where = (unix and "a unix socket" or "TCP") .. " (" .. mode.name .. ")"

      it("sends a 3 MiB file over " .. where, function()
        local loop = assert(core.loop(mode.opts))
        local cid, sid = pair(loop, unix)
        assert.is_true(loop:sendfile(cid, big_file()))
        local got, seen = receive(loop, sid, BIG)
        assert.equal(#file_data, #got)
        assert.is_true(got == file_data)
        if not has_event(seen, EV.drained, cid) then
          assert.is_true(drive(loop, function(t, id)
            return t == EV.drained and id == cid
          end, 5000))
        end
        assert.equal(0, loop:pending(cid))
        loop:free()
      end)

      it("sends a file range in order with queued output over " .. where, function()
        local loop = assert(core.loop(mode.opts))
        local cid, sid = pair(loop, unix)
        local off, len = 12345, 1000003
        loop:output(cid):write("HEAD")
        assert.is_true(loop:send(cid) >= 0)
        assert.is_true(loop:sendfile(cid, big_file(), off, len))
        loop:output(cid):write("TAIL")
        assert.is_true(loop:send(cid) >= 0)
        -- a second range queued behind
        assert.is_true(loop:sendfile(cid, big_file(), BIG - 10))
        local want = "HEAD" .. file_data:sub(off + 1, off + len) .. "TAIL" ..
                     file_data:sub(BIG - 9)
        local got = receive(loop, sid, #want)
        assert.equal(#want, #got)
        assert.is_true(got == want)
        loop:free()
      end)

      local to_kind = unix and "tcp -> unix" or "tcp -> tcp"
      it("splices 2 MiB " .. to_kind .. " with a length (" .. mode.name .. ")", function()
        local loop = assert(core.loop(mode.opts))
        local a1, b1 = pair(loop, false)
        local a2, b2 = pair(loop, unix)
        local n = 2 * 1024 * 1024
        local data = pattern(n, 3)
        -- some bytes already read by b1 go first
        loop:output(a1):write(data:sub(1, 1000))
        loop:send(a1)
        assert.is_true(drive(loop, function(t, id)
          return t == EV.data and id == b1
        end, 5000))
        loop:output(a1):write(data:sub(1001) .. "AFTER")
        loop:send(a1)
        assert.is_true(loop:splice(b1, a2, n))
        local got, seen = receive(loop, b2, n)
        assert.is_true(got == data)
        local ev = has_event(seen, EV.spliced, b1)
        if not ev then
          assert.is_true(drive(loop, function(t, id, err, arg)
            if t == EV.spliced and id == b1 then ev = { t, id, err, arg } return true end
          end, 5000))
        end
        assert.equal(0, ev[3])
        assert.equal(n, ev[4])
        -- b1 is back to ordinary reads: the bytes after the range arrive
        local rest = loop:input(b1):read()
        if #rest < 5 then rest = rest .. receive(loop, b1, 5 - #rest) end
        assert.equal("AFTER", rest)
        loop:free()
      end)

      it("splices " .. to_kind .. " until EOF (" .. mode.name .. ")", function()
        local loop = assert(core.loop(mode.opts))
        local a1, b1 = pair(loop, false)
        local a2, b2 = pair(loop, unix)
        local n = 2 * 1024 * 1024 + 17
        local data = pattern(n, 5)
        assert.is_true(loop:splice(b1, a2))
        assert.is_false(loop:splice(b1, a2) and true or false) -- EBUSY
        loop:output(a1):write(data)
        loop:send(a1)
        loop:close(a1, true)
        local got, seen = receive(loop, b2, n)
        assert.is_true(got == data)
        local spliced, closed = has_event(seen, EV.spliced, b1), has_event(seen, EV.closed, b1)
        if not (spliced and closed) then
          assert.is_true(drive(loop, function(t, id, err, arg)
            if t == EV.spliced and id == b1 then spliced = { t, id, err, arg } end
            if t == EV.closed and id == b1 then closed = { t, id, err } end
            return spliced and closed
          end, 5000))
        end
        assert.equal(0, spliced[3])
        assert.equal(n, spliced[4])
        assert.equal(0, closed[3])
        loop:free()
      end)
    end
  end

  it("reports misuse and failures", function()
    local loop = assert(core.loop())
    local cid, sid = pair(loop, false)
    local ok, err = loop:sendfile(cid, "/nonexistent/petrel")
    assert.is_nil(ok)
    assert.matches("No such file", err)
    ok, err = loop:sendfile(cid, big_file(), BIG + 1)
    assert.is_nil(ok)
    assert.matches("offset beyond", err)
    ok, err = loop:sendfile(cid, big_file(), 10, BIG)
    assert.is_nil(ok)
    assert.matches("range beyond", err)
    ok, err = loop:splice(cid, cid)
    assert.is_nil(ok)
    assert.is_string(err)
    assert.has_error(function() loop:sendfile(cid, {}) end)
    loop:close(sid)
    loop:close(cid)
    ok, err = loop:sendfile(cid, big_file())
    assert.is_nil(ok)
    assert.equal("connection closed", err)
    loop:free()
  end)

  it("sends ranges of an open Lua file, leaving it open and where it was", function()
    local loop = assert(core.loop())
    local cid, sid = pair(loop, false)
    local f = assert(io.open(big_file(), "rb"))
    assert.equal("", f:read(0))
    f:seek("set", 7)
    assert.is_true(loop:sendfile(cid, f, 100, 5000))
    assert.is_true(loop:sendfile(cid, f, 0, 10))
    local want = file_data:sub(101, 5100) .. file_data:sub(1, 10)
    local got = receive(loop, sid, #want)
    assert.is_true(got == want)
    assert.equal(7, f:seek()) -- the file's own position is not used
    assert.equal(file_data:sub(8, 9), f:read(2))
    f:close()
    -- a closed file is refused as misuse, like a table
    assert.has_error(function() loop:sendfile(cid, f) end)
    loop:free()
  end)

  it("keeps an emptied splice pipe for the next job", function()
    local loop = assert(core.loop())
    local a1, b1 = pair(loop, false)
    local a2, b2 = pair(loop, false)
    local function one(n, seed)
      local data = pattern(n, seed)
      loop:output(a1):write(data)
      loop:send(a1)
      assert.is_true(loop:splice(b1, a2, n))
      local got, seen = receive(loop, b2, n)
      assert.is_true(got == data)
      if not has_event(seen, EV.spliced, b1) then
        assert.is_true(drive(loop, function(t, id) return t == EV.spliced and id == b1 end, 5000))
      end
    end
    for i = 1, 6 do one(70000 + i, i) end
    assert.equal(1, loop:stats().splice_pipes)
    loop:free()
  end)

  it("ends a splice job when a side closes", function()
    local loop = assert(core.loop())
    local a1, b1 = pair(loop, false)
    local a2, b2 = pair(loop, false)
    assert.is_true(loop:splice(b1, a2))
    loop:close(a2) -- the target goes: the job ends with an error
    local ev
    assert.is_true(drive(loop, function(t, id, err, arg)
      if t == EV.spliced and id == b1 then ev = { err, arg } return true end
    end, 5000))
    assert.is_true(ev[1] ~= 0)
    -- b1 reads again
    loop:output(a1):write("x")
    loop:send(a1)
    assert.equal("x", (receive(loop, b1, 1)))
    loop:close(b2)
    loop:free()
  end)

  describe("petrel.loop helpers", function()
    for _, mode in ipairs(modes) do
      it("Loop:sendfile waits for the file (" .. mode.name .. ")", function()
        local L = assert(ploop.new(mode.opts))
        local cid, sid = pair(L.c, true)
        local parts, have = {}, 0
        local drained = 0
        L:attach(sid, { on_data = function(_, id)
          local s = L.c:input(id):read()
          parts[#parts + 1] = s
          have = have + #s
        end })
        -- an existing handler keeps its on_drained
        L:attach(cid, { on_drained = function() drained = drained + 1 end })
        assert.is_true(L:sendfile(cid, big_file(), nil, nil, 10000))
        -- from a coroutine, a range
        local res
        L:spawn(function()
          res = { L:sendfile(cid, big_file(), 100, 1000, 10000) }
        end)
        L:run(function() return res ~= nil and have >= BIG + 1000 end)
        assert.same({ true }, res)
        local got = table.concat(parts)
        assert.is_true(got == file_data .. file_data:sub(101, 1100))
        assert.equal(2, drained)
        L:free()
      end)

      it("Loop:splice and Loop:proxy move bytes (" .. mode.name .. ")", function()
        local L = assert(ploop.new(mode.opts))
        local a1, b1 = pair(L.c, false)
        local a2, b2 = pair(L.c, true)
        local n = 2 * 1024 * 1024
        local data = pattern(n, 9)
        local parts, have = {}, 0
        L:attach(b2, { on_data = function(_, id)
          local s = L.c:input(id):read()
          parts[#parts + 1] = s
          have = have + #s
        end })
        L.c:output(a1):write(data)
        L.c:send(a1)
        local moved, err
        L:spawn(function() moved, err = L:splice(b1, a2, n, 10000) end)
        L:run(function() return moved ~= nil or err ~= nil end)
        assert.is_nil(err)
        assert.equal(n, moved)
        L:run(function() return have >= n end)
        assert.is_true(table.concat(parts) == data)

        -- proxy b1 <-> a2: a1 talks to b2 and back, then a1 hangs up
        L:attach(b2, nil)
        local up, down, perr
        L:spawn(function() up, down, perr = L:proxy(b1, a2, 10000) end)
        local back, fwd = {}, {}
        L:attach(a1, { on_data = function(_, id) back[#back + 1] = L.c:input(id):read() end })
        L:attach(b2, { on_data = function(_, id)
          local s = L.c:input(id):read()
          fwd[#fwd + 1] = s
          L.c:output(id):write(s:upper())
          L.c:send(id)
        end })
        L.c:output(a1):write("ping")
        L.c:send(a1)
        L:run(function() return table.concat(back) == "PING" end)
        L:close(a1)
        L:run(function() return up ~= nil or perr ~= nil end)
        assert.is_nil(perr)
        assert.equal(4, up)
        assert.equal(4, down)
        assert.equal("ping", table.concat(fwd))
        assert.is_nil(L.c:pending(b1))
        L:free()
      end)
    end
  end)
end)
