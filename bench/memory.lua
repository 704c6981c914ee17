-- bench/memory.lua — memory per connection of a petrel RPC server.
--
-- For each runtime (Lua 5.4, LuaJIT) and back end (epoll, io_uring) a
-- petrel RPC server (bench/memory_server.lua, its own process on core 0)
-- is measured while a C client (bench/peers/mem_client.c, another process
-- on core 1) holds N connections (default 10,000):
--   empty    the server with only this driver's own connection
--   idle     N connections open, nothing sent
--   partial  each connection has sent 4 bytes of a frame (its length)
--   steady   each connection completes its call, then R rounds of one call
--            per connection; the pool's counters before and after the
--            rounds (after 3 warm-up rounds) show whether traffic made the
--            pool allocate (misses) or only reuse blocks (hits)
-- The server reports its own figures over RPC (Mem.stats): VmRSS from
-- /proc/self/status after a full garbage collection, and its buffer pool's
-- stats. Per connection = (figure - empty) / N, in KiB of 1024 bytes.
-- Targets: partial <= 2 KiB, idle <= 1.5 KiB per connection, no pool miss
-- in the steady rounds.
-- Run: make bench-memory (N=, ROUNDS=, RUNTIMES="lua5.4 luajit",
-- BACKENDS="epoll uring" to narrow it).
local root = (arg[0]:match("^(.*)/bench/[^/]*$") or ".")
package.path = root .. "/?.lua;" .. root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
local BUILD = os.getenv("PETREL_BUILD") or "build"
package.cpath = root .. "/" .. BUILD .. "/lua5.4/?.so;" .. package.cpath
local petrel = require "petrel"
local S = require "bench.memory_schema"

local N = tonumber(os.getenv("N") or "") or 10000
local ROUNDS = tonumber(os.getenv("ROUNDS") or "") or 20
local WARM = 3
local RUNTIMES = os.getenv("RUNTIMES") or "lua5.4 luajit"
local BACKENDS = os.getenv("BACKENDS") or "epoll uring"
local CLIENT = root .. "/" .. BUILD .. "/bench/mem_client"
local IDLE_TARGET, PARTIAL_TARGET = 1.5, 2.0

local function sh(cmd)
  local p = assert(io.popen(cmd))
  local s = p:read("a")
  p:close()
  return s
end

local hard = tonumber(sh("sh -c 'ulimit -Hn'"):match("%d+")) or 0
if hard < N + 64 then
  io.stderr:write(("bench-memory: the hard descriptor limit (%d) is below %d connections;"
    .. " run with N=%d or raise it\n"):format(hard, N, math.max(0, hard - 64)))
  os.exit(1)
end

local function wait_until(what, fn, ms)
  local loop = petrel.default_loop()
  local deadline = loop:now() + (ms or 60000)
  while loop:now() < deadline do
    local v = fn()
    if v then return v end
    petrel.sleep(50)
  end
  error("bench-memory: timed out waiting for " .. what)
end

-- One server + client pair; returns the figures.
local function measure(runtime, backend)
  local cmd = ("sh -c 'ulimit -n %d; PETREL_BACKEND=%s PETREL_BUILD=%s exec taskset -c 0 %s %s/bench/memory_server.lua 600'")
    :format(hard, backend, BUILD, runtime, root)
  local srv = assert(io.popen(cmd, "r"))
  local port = tonumber((srv:read("l") or ""):match("port (%d+)"))
  if not port then error("bench-memory: the server did not start: " .. cmd) end
  local api = petrel.client { service = S.Mem, port = port, timeout = 120000 }
  local function stats() return assert(api:stats()) end

  local fifo = os.tmpname()
  os.remove(fifo)
  assert(os.execute("mkfifo " .. fifo))
  local cli = assert(io.popen(("taskset -c 1 %s 127.0.0.1 %d %d < %s"):format(CLIENT, port, N, fifo), "r"))
  local ctl = assert(io.open(fifo, "w"))
  local function ask(line, expect)
    ctl:write(line, "\n")
    ctl:flush()
    local got = cli:read("l") or "(client gone)"
    if not got:match(expect) then error("bench-memory: client said: " .. got) end
    return got
  end

  local r = { runtime = runtime }
  local ok, err = pcall(function()
    r.empty = stats()
    r.backend = r.empty.backend
    ask("connect", "^connected")
    wait_until("connections", function() return stats().conns >= N + 1 end)
    r.idle = stats()
    local before = r.idle.bytes_in
    ask("partial", "^partial")
    wait_until("partial frames", function() return stats().bytes_in - before >= 4 * N end)
    -- once they all arrived, a round later (the server's loop has had its
    -- batch boundary, where reads left in mostly empty blocks are trimmed)
    r.partial = stats()
    ask("complete", "^replied")
    ask("calls " .. WARM, "^replied") -- warm-up rounds
    r.warm = stats()
    ask("calls " .. ROUNDS, "^replied")
    r.steady = stats()
    ask("close", "^closed")
  end)
  ctl:close()
  cli:close()
  os.remove(fifo)
  pcall(function() api:stop() end)
  petrel.close(api)
  srv:close()
  if not ok then error(err, 0) end
  return r
end

local function kib(bytes) return bytes / 1024 end

local rows = {}
for runtime in RUNTIMES:gmatch("%S+") do
  for backend in BACKENDS:gmatch("%S+") do
    io.stderr:write(("bench-memory: %s, %s ...\n"):format(runtime, backend))
    rows[#rows + 1] = measure(runtime, backend)
  end
end

print(("petrel memory per connection (%d connections; RSS of the server after a full GC,"
  .. " per connection above the empty server; %d steady rounds of one call per connection)")
  :format(N, ROUNDS))
print()
print("| runtime | back end | empty RSS | idle / conn | partial / conn | pool in use (partial) | classes in use (partial) | steady: pool hits | steady: pool misses |")
print("|---|---|---:|---:|---:|---:|---|---:|---:|")
local all_ok = true
for _, r in ipairs(rows) do
  local idle = (r.idle.rss_kb - r.empty.rss_kb) / N
  local part = (r.partial.rss_kb - r.empty.rss_kb) / N
  local misses = r.steady.misses - r.warm.misses
  local ok = idle <= IDLE_TARGET and part <= PARTIAL_TARGET and misses == 0
  all_ok = all_ok and ok
  print(("| %s | %s | %.1f MiB | %.2f KiB | %.2f KiB | %.0f KiB | %s | %d | %d |"):format(
    r.runtime == "luajit" and "LuaJIT" or "Lua 5.4", r.backend, r.empty.rss_kb / 1024,
    idle, part, kib(r.partial.pool_in_use), r.partial.classes,
    r.steady.hits - r.warm.hits, misses))
end
if os.getenv("VERBOSE") then
  for _, r in ipairs(rows) do
    print(r.runtime, r.backend, "misses by class, warm:", r.warm.misses_by_class)
    print(r.runtime, r.backend, "misses by class, after:", r.steady.misses_by_class)
  end
end
print()
print(("targets: idle <= %.1f KiB, partial frame <= %.1f KiB per connection, no pool miss in"
  .. " steady traffic: %s"):format(IDLE_TARGET, PARTIAL_TARGET, all_ok and "met" or "NOT met"))
