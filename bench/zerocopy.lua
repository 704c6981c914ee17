-- bench/zerocopy.lua — zero-copy transfers (splice, sendfile) against
-- copying through user space, measured on the relay alone.
--
-- This process is the relay: one petrel loop that moves n bytes from a
-- source to a sink. The source (an endless byte stream over TCP) and the
-- sink (reads and discards, over TCP or a unix socket) are separate
-- processes (bench/peers/zc_peer.py) on the other core (PEER_CPU, default
-- 1), so the relay's CPU time (user + system, os.clock, i.e.
-- CLOCK_PROCESS_CPUTIME_ID) counts none of their work.
--   zero-copy  loop.c:splice (socket -> pipe -> socket) / loop.c:sendfile
--   fallback   the same jobs with no_splice / no_sendfile: the core's
--              read/write copies through a 64 KiB buffer
--   Lua copy   reading into petrel buffers and writing them out (file:
--              io.read chunks into the output)
-- ratio = copying time / zero-copy time.
--
-- Timing, every method the same way: a round is 8 MiB of transfers (one
-- transfer when larger), timed as a whole; the methods take turns round
-- by round (ROUNDS each, default 15), so bursts of other load on this
-- shared machine hit all of them alike; a method's figure in a run is its
-- best round. RUNS (default 5) independent runs (fresh loops, peers and
-- connections each): the table gives the median over the runs and the
-- ratio's range over them, and says in how many runs the target held.
--
-- What the relay is charged for besides its own work: on loopback the
-- sender of a segment also runs the receiver's TCP input and pays for
-- waking it, and in this VM a wake-up across cores costs the waker about
-- 8 µs (an IPI to a halted vCPU). A sink that slept after every read and
-- got its core at once (an idle machine; here: a real-time sink) was woken
-- several times per MiB: a 1 MiB sendfile, 40 µs of the relay's own work,
-- cost it 360-420 µs (median) and copying 420 µs, which made the ratio
-- swing between 0.3x and 4.5x from run to run. So the sink asks to be woken once 256 KiB are waiting
-- (SO_RCVLOWAT) and the source has a 4 MiB send buffer (zc_peer.py); the
-- relay's conns have 4 MiB socket buffers, the same for every method.
-- PEER_PREFIX (e.g. "chrt -f 50") runs the peers under a command: a
-- real-time sink never waits for its core, as on an idle machine.
-- Run: make bench-zerocopy (relay pinned to core 0), or
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH_5_4="build/lua5.4/?.so;;" \
--     taskset -c 0 lua5.4 bench/zerocopy.lua
local core = require "petrel.core"
local EV = core.loop_events
local clock = os.clock

local KB, MB = 1024, 1024 * 1024
local RUNS = tonumber(os.getenv("RUNS") or "") or 5
local ROUNDS = tonumber(os.getenv("ROUNDS") or "") or 15 -- per method, size and run
local PY = "/usr/bin/python3"
local SIZES = { 64 * KB, MB, 16 * MB }
local MAX = SIZES[#SIZES]
local KINDS = { "tcp-to-unix", "tcp-to-tcp", "file-to-tcp" }
local METHODS = { "zero-copy", "fallback", "Lua copy" }

local PEER_CPU = os.getenv("PEER_CPU") or "1"
local PEER_PREFIX = os.getenv("PEER_PREFIX") or ""

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
  local p = assert(io.popen(("taskset -c %s %s %s bench/peers/zc_peer.py %s >/dev/null 2>&1 & echo $!")
    :format(PEER_CPU, PEER_PREFIX, PY, args)))
  local pid = tonumber(p:read("*l"))
  p:close()
  pids[#pids + 1] = pid
  return pid
end

local function kill_peers()
  for _, pid in ipairs(pids) do os.execute("kill " .. pid .. " 2>/dev/null") end
  pids = {}
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
  -- large socket buffers (every method alike): fewer rounds per transfer
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

-- One setup per (kind, method): a loop and its conns, reused by the
-- transfers of a run. Returns transfer(n), which returns once the relay
-- has handed n bytes on, and the loop.
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
  -- the file stays open: no path lookup per transfer, for every method
  local f = kind == "file-to-tcp" and assert(io.open(path, "rb"))
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
        assert(loop:sendfile(to, f, 0, n))
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
  end, loop, f
end

local STAT
local function median(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  local k = #s
  if k % 2 == 1 then return s[(k + 1) // 2] end
  return (s[k // 2] + s[k // 2 + 1]) / 2
end

STAT = os.getenv("STAT") == "median" and median or function(t) return math.min(table.unpack(t)) end

-- One run of one kind: fresh setups; per size, ROUNDS timed rounds per
-- method (a round: transfers of 8 MiB in all, or one when larger), the
-- methods taking turns round by round. Returns [size][method] = the
-- best round's time per transfer (STAT=median: the median round's), in s.
local function run_kind(kind)
  local tr, loops, files = {}, {}, {}
  for i, m in ipairs(METHODS) do tr[i], loops[i], files[i] = setup(kind, m) end
  local res = {}
  for _, n in ipairs(SIZES) do
    local inner = math.max(1, (8 * MB) // n)
    local samples = {}
    for i, t in ipairs(tr) do
      t(n) -- warm up
      samples[i] = {}
    end
    for _ = 1, ROUNDS do
      for i, t in ipairs(tr) do
        local t0 = clock()
        for _ = 1, inner do t(n) end
        samples[i][#samples[i] + 1] = (clock() - t0) / inner
      end
    end
    res[n] = {}
    for i = 1, #METHODS do res[n][i] = STAT(samples[i]) end
  end
  for i, l in ipairs(loops) do
    l:free()
    if files[i] then files[i]:close() end
  end
  kill_peers()
  return res
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

local function range(t)
  local lo, hi = math.huge, -math.huge
  for _, v in ipairs(t) do
    if v < lo then lo = v end
    if v > hi then hi = v end
  end
  return string.format("%.2f-%.2f", lo, hi)
end

local ok, err = pcall(function()
  -- runs[r][kind][size][method]
  local runs = {}
  for r = 1, RUNS do
    runs[r] = {}
    for _, kind in ipairs(KINDS) do runs[r][kind] = run_kind(kind) end
    io.stderr:write(("zerocopy: run %d of %d done\n"):format(r, RUNS))
  end
  print(string.format("petrel zero-copy transfers (%s, relay CPU time per transfer: %s of %d"
    .. " rounds per method, methods taking turns; median of %d runs, ratio range over the runs;"
    .. " source and sink in other processes on core %s)", _VERSION, os.getenv("STAT") == "median" and "median" or "best", ROUNDS, RUNS, PEER_CPU))
  print()
  print("| path | size | zero-copy | GB/s | core read/write fallback | GB/s | ratio | range | Lua buffer copy loop | GB/s | ratio | range |")
  print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
  local verdict = {}
  for _, kind in ipairs(KINDS) do
    local zc_name = kind == "file-to-tcp" and "sendfile" or "splice"
    for _, n in ipairs(SIZES) do
      local t, rf, rl = { {}, {}, {} }, {}, {}
      for r = 1, RUNS do
        local m = runs[r][kind][n]
        for i = 1, 3 do t[i][r] = m[i] end
        rf[r] = m[2] / m[1]
        rl[r] = m[3] / m[1]
      end
      local z, fb, lc = median(t[1]), median(t[2]), median(t[3])
      print(string.format("| %s (%s) | %s | %s | %s | %s | %s | %.2fx | %s | %s | %s | %.2fx | %s |",
        kind, zc_name, fmt_size(n), fmt_t(z), gbps(n, z), fmt_t(fb), gbps(n, fb),
        median(rf), range(rf), fmt_t(lc), gbps(n, lc), median(rl), range(rl)))
      if n >= MB and kind ~= "tcp-to-unix" then
        local met = 0
        for _, v in ipairs(rf) do if v >= 2 then met = met + 1 end end
        verdict[#verdict + 1] = string.format("%s %s: %d of %d runs", kind, fmt_size(n), met, RUNS)
      end
    end
  end
  print()
  print("target: zero-copy at least 2x the core's copying fallback at 1 and 16 MiB (file-to-tcp, tcp-to-tcp): "
    .. table.concat(verdict, "; "))
end)
kill_peers()
os.remove(path)
for _, p in ipairs(socks) do os.remove(p) end
if not ok then error(err, 0) end
