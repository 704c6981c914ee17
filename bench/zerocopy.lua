-- bench/zerocopy.lua — zero-copy transfers (splice, sendfile) against
-- copying through user space, measured on the relay alone.
--
-- This process is the relay: one petrel loop that moves n bytes from a
-- source to a sink. The source (an endless byte stream over TCP) and the
-- sink (reads and discards, over TCP or a unix socket) are separate
-- processes (bench/peers/zc_peer.py, pinned to PEER_CPU, default 1), so the
-- time counted is the relay's CPU time (user + system, os.clock) per
-- transfer, best of REPS: what the relay spends moving the bytes.
--   zero-copy  loop.c:splice (socket -> pipe -> socket) / loop.c:sendfile
--   fallback   the same jobs with no_splice / no_sendfile: the core's
--              read/write copies through a 64 KiB buffer
--   Lua copy   reading into petrel buffers and writing them out (file:
--              io.read chunks into the output)
-- ratio = copying time / zero-copy time.
-- Run: make bench-zerocopy (relay pinned to core 0), or
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH_5_4="build/lua5.4/?.so;;" \
--     taskset -c 0 lua5.4 bench/zerocopy.lua
local core = require "petrel.core"
local EV = core.loop_events
local clock = os.clock

local REPS = tonumber(os.getenv("REPS") or "") or 9
local PEER_CPU = os.getenv("PEER_CPU") or "1"
local PY = "/usr/bin/python3"
local SIZES = { 64 * 1024, 1024 * 1024, 16 * 1024 * 1024 }
local MAX = SIZES[#SIZES]
local KB, MB = 1024, 1024 * 1024

local path = os.tmpname()
do
  local f = assert(io.open(path, "wb"))
  local chunk = {}
  for i = 1, 4096 do chunk[i] = string.char((i * 131 + 7) % 256) end
  chunk = string.rep(table.concat(chunk), 256) -- 1 MiB
  for _ = 1, MAX / #chunk do f:write(chunk) end
  f:close()
end
local socks, pids = {}, {}

local function spawn(args)
  local p = assert(io.popen(("taskset -c %s %s bench/peers/zc_peer.py %s >/dev/null 2>&1 & echo $!")
    :format(PEER_CPU, PY, args)))
  local pid = tonumber(p:read("*l"))
  p:close()
  pids[#pids + 1] = pid
  return pid
end

local function poll(loop, handler, dbg)
  local deadline = loop:now() + 30000
  while loop:now() < deadline do
    local n, ty, id, er, arg = assert(loop:poll(100))
    local stop = false
    for i = 1, n do
      if handler(ty[i], id[i], er[i], arg[i]) then stop = true end
    end
    if stop then return end
  end
  error("bench: transfer timed out" .. (dbg and (" " .. dbg()) or ""))
end

-- Listen, start a peer that connects, return the accepted conn.
local function peer_conn(loop, unix, args_fn)
  local host, port = "127.0.0.1", 0
  if unix then
    host = "unix:" .. os.tmpname() .. ".sock"
    socks[#socks + 1] = host:sub(6)
  end
  -- large socket buffers (both methods alike): fewer rounds per transfer
  local lid = assert(loop:listen(host, port, { sndbuf = 4 * MB, rcvbuf = 4 * MB }))
  if not unix then port = loop:port(lid) end
  spawn(args_fn(unix and host:sub(6) or port))
  local id
  poll(loop, function(t, i)
    if t == EV.accepted then id = i end
    return id ~= nil
  end)
  loop:close(lid)
  return id
end

-- One setup per (kind, method): a loop and its conns, reused by the reps.
-- Returns transfer(n), which returns once the relay has handed n bytes on.
local function setup(kind, method)
  local opts
  if method == "fallback" then
    opts = kind == "file-to-tcp" and { no_sendfile = true } or { no_splice = true }
  end
  local loop = assert(core.loop(opts))
  local from
  if kind ~= "file-to-tcp" then
    from = peer_conn(loop, false, function(port) return "source 127.0.0.1 " .. port end)
  end
  local to = peer_conn(loop, kind == "tcp-to-unix", function(where)
    if kind == "tcp-to-unix" then return "sink unix " .. where end
    return "sink tcp 127.0.0.1 " .. where
  end)
  local lua_copy = method == "Lua copy"
  -- splice jobs read the source themselves: between them, the conn reads
  -- (into user space) no more than a byte
  if from and not lua_copy then loop:caps(from, 1, 0) end
  local f = lua_copy and kind == "file-to-tcp" and assert(io.open(path, "rb"))
  local out = loop:output(to)

  return function(n)
    local done
    if kind == "file-to-tcp" then
      if lua_copy then
        f:seek("set", 0)
        local left = n
        while left > 0 do
          local s = f:read(left < 65536 and left or 65536)
          out:write(s)
          left = left - #s
          if #out >= MB then loop:send(to) end
        end
        done = loop:send(to) == 0
      else
        assert(loop:sendfile(to, path, 0, n))
      end
    elseif not lua_copy then
      assert(loop:splice(from, to, n))
    end
    local left = n
    local function move() -- Lua copy: what the source sent, up to n
      local inb = loop:input(from)
      local k = math.min(#inb, left)
      if k > 0 then
        out:append(inb:slice(k))
        left = left - k
        loop:consumed(from)
        if loop:send(to) == 0 and left == 0 then done = true end
      end
    end
    if lua_copy and from then move() end
    if done then return end
    poll(loop, function(t, id)
      if t == EV.spliced then
        done = true
      elseif t == EV.drained and id == to then
        done = left == 0 or kind == "file-to-tcp"
      elseif t == EV.data and id == from and lua_copy then
        move()
      elseif t == EV.closed then
        error("bench: a peer went away")
      end
      return done
    end, function()
      return ("%s %s n=%d left=%d pending=%s"):format(kind, method, n, left,
        tostring(loop:pending(to)))
    end)
  end, loop
end

-- The methods are timed in interleaved rounds (best round each), so
-- bursts of noise on these shared cores hit all of them alike.
local function best_all(transfers, n)
  local inner = math.max(1, math.floor((8 * MB) / n))
  local b = {}
  for i, t in ipairs(transfers) do
    t(n) -- warm up
    b[i] = math.huge
  end
  for _ = 1, REPS do
    for i, t in ipairs(transfers) do
      local t0 = clock()
      for _ = 1, inner do t(n) end
      local dt = (clock() - t0) / inner
      if dt < b[i] then b[i] = dt end
    end
  end
  return table.unpack(b)
end

local function fmt_size(n)
  if n >= MB then return (n // MB) .. " MiB" end
  return (n // KB) .. " KiB"
end

local function fmt_t(s)
  if s < 1e-3 then return string.format("%.1f µs", s * 1e6) end
  return string.format("%.2f ms", s * 1e3)
end

local function gbps(n, s) return string.format("%.2f", n / s / 1e9) end

print(string.format("petrel zero-copy transfers (%s, relay CPU time per transfer, best of %d interleaved rounds;"
  .. " source and sink in another process on core %s)", _VERSION, REPS, PEER_CPU))
print()
print("| path | size | zero-copy | GB/s | core read/write fallback | GB/s | ratio | Lua buffer copy loop | GB/s | ratio |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
local ok, err = pcall(function()
  for _, kind in ipairs { "tcp-to-unix", "tcp-to-tcp", "file-to-tcp" } do
    local zc_name = kind == "file-to-tcp" and "sendfile" or "splice"
    local tr, loops = {}, {}
    for _, m in ipairs { "zero-copy", "fallback", "Lua copy" } do
      tr[m], loops[#loops + 1] = setup(kind, m)
    end
    for _, n in ipairs(SIZES) do
      local z, fb, lc = best_all({ tr["zero-copy"], tr["fallback"], tr["Lua copy"] }, n)
      print(string.format("| %s (%s) | %s | %s | %s | %s | %s | %.2fx | %s | %s | %.2fx |",
        kind, zc_name, fmt_size(n), fmt_t(z), gbps(n, z), fmt_t(fb), gbps(n, fb),
        fb / z, fmt_t(lc), gbps(n, lc), lc / z))
    end
    for _, l in ipairs(loops) do l:free() end
  end
end)
for _, pid in ipairs(pids) do os.execute("kill " .. pid .. " 2>/dev/null") end
os.remove(path)
for _, p in ipairs(socks) do os.remove(p) end
if not ok then error(err, 0) end
