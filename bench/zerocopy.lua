-- bench/zerocopy.lua — zero-copy transfers (splice, sendfile) against
-- copying through user space: the core's own read/write fallback (the same
-- job with no_splice / no_sendfile) and a plain Lua copy loop through
-- petrel buffers. One process, one loop, 127.0.0.1 and unix sockets; the
-- receiving side discards. Times are CPU time (os.clock) per transfer,
-- best of several repetitions; ratio = copying time / zero-copy time.
-- Run: make bench-zerocopy, or
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH_5_4="build/lua5.4/?.so;;" lua5.4 bench/zerocopy.lua
local core = require "petrel.core"
local EV = core.loop_events
local clock = os.clock

local REPS = tonumber(os.getenv("REPS") or "") or 5
local SIZES = { 64 * 1024, 1024 * 1024, 16 * 1024 * 1024 }
local MAX = SIZES[#SIZES]

local path = os.tmpname()
do
  local f = assert(io.open(path, "wb"))
  local chunk = {}
  for i = 1, 4096 do chunk[i] = string.char((i * 131 + 7) % 256) end
  chunk = string.rep(table.concat(chunk), 256) -- 1 MiB
  for _ = 1, MAX / #chunk do f:write(chunk) end
  f:close()
end
local socks = {}

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

local function pair(loop, unix)
  local host, port = "127.0.0.1", 0
  if unix then
    host = "unix:" .. os.tmpname() .. ".sock"
    socks[#socks + 1] = host:sub(6)
  end
  local lid = assert(loop:listen(host, port))
  if not unix then port = loop:port(lid) end
  local cid = assert(loop:connect(host, port, 2000))
  local sid, up
  poll(loop, function(t, id)
    if t == EV.accepted then sid = id end
    if t == EV.connected and id == cid then up = true end
    return sid and up
  end)
  loop:close(lid)
  return cid, sid
end

-- One setup per (kind, method): a loop and its conns, reused by the reps.
-- Returns transfer(n) that moves n bytes and returns when all arrived.
local function setup(kind, method)
  -- fallback: only the measured job copies (the source feed of the
  -- socket-to-socket cases stays sendfile in every column)
  local opts
  if method == "fallback" then
    opts = kind == "file-to-tcp" and { no_sendfile = true } or { no_splice = true }
  end
  local loop = assert(core.loop(opts))
  local a1, b1 -- source pair (tcp), for socket-to-socket
  if kind ~= "file-to-tcp" then a1, b1 = pair(loop, false) end
  local a2, b2 = pair(loop, kind == "tcp-to-unix")
  local sink = loop:input(b2)
  local lua_copy = method == "lua copy"
  local f = lua_copy and kind == "file-to-tcp" and assert(io.open(path, "rb"))

  return function(n)
    local got, job_done = 0, lua_copy or kind == "file-to-tcp"
    if kind == "file-to-tcp" then
      if lua_copy then
        -- read the file in 64 KiB chunks into the output buffer
        f:seek("set", 0)
        local out, left = loop:output(a2), n
        while left > 0 do
          local s = f:read(left < 65536 and left or 65536)
          out:write(s)
          left = left - #s
          if #out >= 1 << 20 then loop:send(a2) end
        end
        loop:send(a2)
      else
        assert(loop:sendfile(a2, path, 0, n))
      end
    else
      -- the source side is fed by sendfile in every method
      assert(loop:sendfile(a1, path, 0, n))
      if not lua_copy then assert(loop:splice(b1, a2, n)) end
    end
    poll(loop, function(t, id)
      if t == EV.data then
        if id == b2 then
          got = got + #sink
          sink:clear()
          loop:consumed(b2)
        elseif lua_copy and id == b1 then
          loop:output(a2):append(loop:input(b1))
          loop:consumed(b1)
          loop:send(a2)
        end
      elseif t == EV.spliced then
        job_done = true
      end
      return got >= n and job_done
    end, function()
      return string.format("%s %s n=%d got=%d done=%s pend a1=%s a2=%s in b1=%s",
        kind, method, n, got, tostring(job_done), tostring(a1 and loop:pending(a1)),
        tostring(loop:pending(a2)), tostring(b1 and #loop:input(b1)))
    end)
    assert(got == n, "short transfer")
  end, loop
end

local function best(transfer, n)
  local inner = math.max(1, math.floor((8 << 20) / n))
  transfer(n) -- warm up
  local b = math.huge
  for _ = 1, REPS do
    local t0 = clock()
    for _ = 1, inner do transfer(n) end
    local dt = (clock() - t0) / inner
    if dt < b then b = dt end
  end
  return b
end

local function fmt_size(n)
  if n >= 1 << 20 then return (n >> 20) .. " MiB" end
  return (n >> 10) .. " KiB"
end

local function fmt_t(s)
  if s < 1e-3 then return string.format("%.1f µs", s * 1e6) end
  return string.format("%.2f ms", s * 1e3)
end

local function gbps(n, s) return string.format("%.2f", n / s / 1e9) end

print(string.format("petrel zero-copy transfers (%s, best of %d, CPU time per transfer)", _VERSION, REPS))
print()
print("| path | size | zero-copy | GB/s | core read/write fallback | GB/s | ratio | Lua buffer copy loop | GB/s | ratio |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for _, kind in ipairs { "tcp-to-unix", "tcp-to-tcp", "file-to-tcp" } do
  local zc_name = kind == "file-to-tcp" and "sendfile" or "splice"
  local tr = {}
  local loops = {}
  for _, m in ipairs { "zero-copy", "fallback", "lua copy" } do
    tr[m], loops[#loops + 1] = setup(kind, m)
  end
  for _, n in ipairs(SIZES) do
    local z = best(tr["zero-copy"], n)
    local fb = best(tr["fallback"], n)
    local lc = best(tr["lua copy"], n)
    print(string.format("| %s (%s) | %s | %s | %s | %s | %s | %.2fx | %s | %s | %.2fx |",
      kind, zc_name, fmt_size(n), fmt_t(z), gbps(n, z), fmt_t(fb), gbps(n, fb),
      fb / z, fmt_t(lc), gbps(n, lc), lc / z))
  end
  for _, l in ipairs(loops) do l:free() end
end
os.remove(path)
for _, p in ipairs(socks) do os.remove(p) end
