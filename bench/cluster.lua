-- make bench-cluster: issue 16's figures.
--
-- 1. Overhead of discovery and balancing at steady state: one server
--    process (bench/cluster_server.lua, core 0) registered in etcd; this
--    process (core 1) drives it with WIDTH calls in flight, through a
--    client pinned to its address and through clients that resolve it in
--    etcd and balance (wrr, p2c, chash) — the same server and the same
--    calls, so the difference is the cluster layer's own cost. Rounds are
--    interleaved; best of ROUNDS and the spread are printed.
-- 2. The cluster layer's own CPU per call, without I/O: the instances'
--    send replaced by a stub that answers at once, so what is timed is
--    encoding plus (for the cluster clients) picking, bookkeeping and
--    stats; steady on a busy machine, unlike calls/s.
-- 3. The scenarios of spec/cluster_spec.lua with their figures: SIGKILL
--    under load, two servers added, a 10 s etcd outage, a graceful
--    removal, consistent hashing across clients.
--
-- The machine may be shared: the per-round ratio (each client against the
-- pinned one of the same round) and the client's CPU time per call
-- (os.clock, this process alone) are steadier than calls/s.
--
-- Environment: ROUNDS (default 15), SECONDS per round (default 1), WIDTH
-- (default 32), SCENARIOS=0 skips part 3, OUTAGE seconds (default 10).
local build = os.getenv("PETREL_BUILD") or "build"
local rt = jit and "luajit" or "lua5.4"
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
package.cpath = build .. "/" .. rt .. "/?.so;" .. package.cpath

local petrel = require "petrel"
local etcdp = require "support.etcd"
local procs = require "support.cluster"
local S = require "support.scenarios"

local ROUNDS = tonumber(os.getenv("ROUNDS")) or 15
local SECONDS = tonumber(os.getenv("SECONDS")) or 1
local WIDTH = tonumber(os.getenv("WIDTH")) or 32
local OUTAGE = tonumber(os.getenv("OUTAGE")) or 10

if not etcdp.available() then
  print("bench-cluster: etcd is not installed (Debian: etcd-server)")
  os.exit(1)
end

local loop = assert(petrel.loop())
local NS = S.NS

-- calls/s of client c over `seconds`, WIDTH calls in flight
local function rate(c, seconds)
  local stop, calls, failed, running = false, 0, 0, WIDTH
  -- warm-up: connections open, JIT traces made
  for _ = 1, WIDTH do
    loop:spawn(function()
      local i = 0
      while not stop do
        i = i + 1
        if c:where(i) then calls = calls + 1 else failed = failed + 1 end
      end
      running = running - 1
    end)
  end
  loop:sleep(300)
  local c0, t0, cpu0 = calls, petrel.clock(), os.clock()
  loop:sleep(seconds * 1000)
  local c1, t1, cpu1 = calls, petrel.clock(), os.clock()
  stop = true
  while running > 0 do loop:sleep(5) end
  return (c1 - c0) / (t1 - t0), failed, (cpu1 - cpu0) / (c1 - c0) * 1e6
end

local function overhead()
  local proc = etcdp.start()
  local reg = petrel.etcd { endpoints = { proc.url }, loop = loop }
  local env = { etcd = proc, servers = {}, next_host = 2, ttl = 10, width = WIDTH }
  local srv = procs.server(proc.url, "127.0.0.2", { service = "bench", ttl = 10, taskset = "0" })
  srv:ready(loop, 30000)
  env.servers[1] = srv
  local clients = {
    { "pinned (host, port)", petrel.client { service = NS.Where, loop = loop, host = srv.host,
      port = srv.port, pool_size = WIDTH } },
  }
  for _, kind in ipairs({ "wrr", "p2c", "chash" }) do
    clients[#clients + 1] = { "etcd + " .. kind, petrel.client { service = NS.Where,
      loop = loop, resolve = "etcd://bench", registry = reg, balance = kind, pool_size = WIDTH,
      hash_key = kind == "chash" and function(_, n) return n end or nil } }
  end
  local best, all, cpu = {}, {}, {}
  for r = 1, ROUNDS do
    -- each round starts with another client, so none is always first
    for k = 0, #clients - 1 do
      local i = (r - 1 + k) % #clients + 1
      local row = clients[i]
      local v, failed, us = rate(row[2], SECONDS)
      if os.getenv("VERBOSE") then
        io.stderr:write(string.format("round %d %-22s %8.0f calls/s %6.1f us/call\n", r, row[1], v,
          us))
      end
      if failed > 0 then print(row[1] .. ": " .. failed .. " failed calls") end
      all[i] = all[i] or {}
      all[i][r] = v
      if not best[i] or v > best[i] then best[i] = v end
      if not cpu[i] or us < cpu[i] then cpu[i] = us end
    end
  end
  print(string.format("\n### Discovery + balancing overhead (%s, %d in flight, best of %d x %g s, "
    .. "server on core 0, client on core 1)\n", jit and jit.version or _VERSION, WIDTH, ROUNDS,
    SECONDS))
  print("| client | calls/s best | min | max | best vs pinned | per-round ratio: median "
    .. "(min-max) | client CPU µs/call (best) | vs pinned |")
  print("|---|---:|---:|---:|---:|---:|---:|---:|")
  for i, row in ipairs(clients) do
    local lo, hi = math.huge, 0
    for _, v in ipairs(all[i]) do lo = math.min(lo, v); hi = math.max(hi, v) end
    local qs = {}
    for r = 1, ROUNDS do qs[r] = all[i][r] / all[1][r] end
    table.sort(qs)
    local med = qs[math.floor((#qs + 1) / 2)]
    print(string.format("| %s | %.0f | %.0f | %.0f | %.3f | %.3f (%.3f-%.3f) | %.1f | %.3f |",
      row[1], best[i], lo, hi, best[i] / best[1], med, qs[1], qs[#qs], cpu[i], cpu[i] / cpu[1]))
  end
  for _, row in ipairs(clients) do petrel.close(row[2]) end
  reg:close()
  srv:cleanup()
  proc:cleanup()
end

local function layer_cost()
  local client = require "petrel.client"
  local Client = client._Client
  local send = Client._send
  Client._send = function(self, _, _, _, msg)
    msg:clear()
    if not self.wbuf then self.wbuf = msg end
    return "127.0.0.2:1"
  end
  local three = { "127.0.0.2:1", "127.0.0.3:1", "127.0.0.4:1" }
  local rows = { { "pinned (host, port)", petrel.client { service = NS.Where, loop = loop,
    host = "127.0.0.2", port = 1 } } }
  for _, kind in ipairs({ "wrr", "p2c", "chash" }) do
    rows[#rows + 1] = { kind .. " over 3 instances", petrel.client { service = NS.Where, loop = loop,
      instances = three, balance = kind,
      hash_key = kind == "chash" and function(_, n) return n end or nil } }
  end
  local N, best = 200000, {}
  for _ = 1, 5 do
    for i, row in ipairs(rows) do
      local c = row[2]
      for k = 1, 2000 do c:where(k) end
      local t0 = os.clock()
      for k = 1, N do c:where(k) end
      local us = (os.clock() - t0) / N * 1e6
      if not best[i] or us < best[i] then best[i] = us end
    end
  end
  Client._send = send
  print(string.format("\n### The cluster layer's own cost per call (%s, no I/O: send stubbed, "
    .. "best of 5 x %d calls)\n", jit and jit.version or _VERSION, N))
  print("| client | µs per call | added by the cluster layer |")
  print("|---|---:|---:|")
  for i, row in ipairs(rows) do
    print(string.format("| %s | %.3f | %s |", row[1], best[i],
      i == 1 and "" or string.format("%.3f µs", best[i] - best[1])))
  end
end

local function scenarios()
  local env = S.setup { loop = loop, servers = 3, ttl = 3, width = 16 }
  local ok, err = pcall(function()
    print("\n### Scenarios (3 server processes on 127.0.0.2-4, etcd on 127.0.0.1, 16 calls in "
      .. "flight)\n")
    print("| scenario | figures |")
    print("|---|---|")
    local f = S.kill(env, env.servers[2], 1000)
    if f.failed > 0 then io.stderr:write("kill errors:\n  ", table.concat(f.errors, "\n  "), "\n") end
    print(string.format("| SIGKILL one server (idempotent calls) | %d calls, %d failed, %d retried, "
      .. "ejected %.1f ms after the kill, %d calls routed to it after its first connection error |",
      f.calls, f.failed, f.retries, f.detect_ms or -1, f.routed_after or -1))
    f = S.add_two(env, 500)
    print(string.format("| two servers added | first call %.0f ms and %.0f ms after registering; "
      .. "%d calls, %d failed |", f.delays[1] * 1000, f.delays[2] * 1000, f.calls, f.failed))
    f = S.outage(env, OUTAGE)
    print(string.format("| etcd stopped %.1f s, restarted | %d calls, %d failed, fewest successful "
      .. "calls in any 100 ms of the outage: %d; registry whole again %.0f ms after the restart "
      .. "(%d of %d live servers) |", f.outage_s, f.calls, f.failed, f.min_slot,
      f.recovered_ms or -1, f.keys, f.live))
    f = S.graceful(env, env.servers[1], 300)
    print(string.format("| graceful removal (SIGTERM), calls not idempotent | %d calls, %d failed, "
      .. "%d retried (nothing sent) |", f.calls, f.failed, f.retries))
    if f.failed > 0 then io.stderr:write("graceful removal errors:\n  ", table.concat(f.errors, "\n  "), "\n") end
    f = S.chash(env, 1000)
    print(string.format("| consistent hashing, 2 clients, %d keys | same instance from both: %d "
      .. "(%d after the change); a 4th instance moved %.1f%% of the keys (bound 30%%), %d of %d "
      .. "to the new one |", f.keys, f.same, f.same_after, f.moved_frac * 100, f.to_new, f.moved))
  end)
  S.teardown(env)
  if not ok then error(err, 0) end
end

overhead()
layer_cost()
if os.getenv("SCENARIOS") ~= "0" then scenarios() end
loop:free()
