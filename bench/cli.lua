-- bench/cli.lua (make bench-cli): `petrel bench` (the core's load
-- generator, pt_bench.c on the petrel loop) beside bench/loadgen.c (the
-- plain epoll generator bench-rpc uses), against the same C floor server
-- (bench/peers/c_epoll_echo.c --thrift) in the same run: Echo.echo with the
-- 1 KB Request of bench/data/small.bin, identical request bytes. The
-- server is pinned to core 0 and started once per configuration; the
-- generators take turns on core 1 in interleaved rounds (each round
-- starts with another one; every run has the same duration and warm-up);
-- best of the rounds, with the spread (max - min) / max, and the median
-- of each generator's per-round ratio to loadgen.c (paired within a round:
-- both met the same machine state, so a busy spell moves both; with
-- spreads of 10-40% between rounds on this machine, this is the steadier
-- comparison). petrel bench runs
-- with its default --io auto: direct I/O on epoll (the loop watches, each
-- connection does its own recv and send), the loop's connections on
-- io_uring.
--
--   lua5.4 bench/cli.lua           (ROUNDS=7 DURATION=3 WARMUP=1 by default)
local ROUNDS = tonumber(os.getenv("ROUNDS") or 7)
local DURATION = tonumber(os.getenv("DURATION") or 3)
local WARMUP = tonumber(os.getenv("WARMUP") or 1)
local BUILD = os.getenv("PETREL_BUILD") or "build"
local BIN = BUILD .. "/bench"

package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = BUILD .. "/lua5.4/?.so;" .. package.cpath
local petrel = require "petrel"
local cjson = require "cjson"

local function sh(cmd)
  local p = io.popen(cmd)
  local out = p:read("a")
  local ok, _, code = p:close()
  return out, ok and 0 or code
end

os.execute("bench/peers/build_rpc.sh > /dev/null 2>&1")
for _, b in ipairs({ "loadgen", "c_epoll_echo" }) do
  local f = io.open(BIN .. "/" .. b)
  assert(f, BIN .. "/" .. b .. " is missing: bench/peers/build_rpc.sh builds it")
  f:close()
end
local uring_ok = petrel.loop { backend = "uring" } ~= nil

-- the request: Echo.echo(req = Request of small.bin), as JSON for petrel bench
local tmp = os.tmpname()
assert(os.execute(string.format("lua5.4 bin/petrel decode bench/workload.thrift Request "
  .. "bench/data/small.bin --compact > %s", tmp)))

local function free_port()
  local l = petrel.loop()
  local id = assert(l.c:listen("127.0.0.1", 0))
  local port = l.c:port(id)
  l:free()
  return port
end

local function start_server(port)
  local p = io.popen(string.format("taskset -c 0 %s/c_epoll_echo --port %d --thrift --duration 900 "
    .. "> /dev/null 2>&1 & echo $!", BIN, port))
  local pid = tonumber(p:read("l"))
  p:close()
  -- wait until it accepts
  local l = petrel.loop()
  for _ = 1, 200 do
    local id = l.c:connect("127.0.0.1", port, 1000)
    local up
    l:attach(id, { on_connected = function(_, _, err) up = err == 0 end })
    while up == nil do l:step(10) end
    l:close(id)
    if up then break end
    l:sleep(20)
  end
  l:free()
  return pid
end

-- The server's CPU time (user + system, in clock ticks) from /proc: how
-- busy the generator keeps it. Sampled while both kinds of generator are
-- measuring (from WARMUP + 0.4 s to 0.1 s before the window ends, counted
-- from the generator's start: petrel bench's Lua start-up, well under
-- 0.4 s, delays its window by that much).
local HZ = tonumber((sh("getconf CLK_TCK"))) or 100
local function ticks(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return nil end
  local st = f:read("a")
  f:close()
  local rest = st:match("%) (.*)$") -- after the command name
  local fields = {}
  for x in rest:gmatch("%S+") do fields[#fields + 1] = x end
  return tonumber(fields[12]) + tonumber(fields[13]) -- utime, stime (fields 14, 15)
end

-- Run a generator's command, sampling the server pid's CPU meanwhile: the
-- round's figures from its JSON report (cpu_key: where it puts its own CPU
-- share), and the server's busy share of the sample.
local function run_sampled(cmd, spid, cpu_key)
  local p = io.popen(cmd)
  local t_a, t_b = WARMUP + 0.4, WARMUP + DURATION - 0.1
  local l = petrel.default_loop() -- l:now() is in ms
  petrel.sleep(t_a * 1000)
  local c0, w0 = ticks(spid), l:now()
  petrel.sleep((t_b - t_a) * 1000)
  local c1, w1 = ticks(spid), l:now()
  local out = p:read("a")
  p:close()
  local r = cjson.decode(out)
  return { cps = r.calls_per_s, p50 = r.p50_us, p99 = r.p99_us, p999 = r.p999_us,
    errors = r.errors, cpu = r[cpu_key], bytes = r.request_bytes,
    server = c0 and c1 and w1 > w0 and (c1 - c0) / HZ / ((w1 - w0) / 1000) or 0 }
end

local function loadgen(port, conns, depth, spid)
  return run_sampled(string.format("taskset -c 1 %s/loadgen --port %d --conns %d "
    .. "--duration %g --warmup %g --mode %s --depth %d --thrift-call echo --args-struct "
    .. "bench/data/small.bin --json", BIN, port, conns, DURATION, WARMUP,
    depth > 1 and "pipeline" or "pingpong", depth), spid, "loadgen_cpu_pct")
end
-- "loadgen.c, again" is the noise control (an A/A pair): the same program
-- as the base, run once more every round; its per-round ratios to the base
-- are what this machine makes of two identical generators
local AGAIN = "bench/loadgen.c, again (noise control)"
local GENS = {
  { name = "bench/loadgen.c", run = loadgen },
  { name = AGAIN, run = loadgen },
  { name = "petrel bench (epoll, direct I/O)", backend = "epoll" },
  { name = "petrel bench (io_uring, loop I/O)", backend = "uring" },
}
for _, g in ipairs(GENS) do
  if g.backend then
    g.run = function(port, conns, depth, spid)
      return run_sampled(string.format("taskset -c 1 lua5.4 bin/petrel bench :%d "
        .. "bench/workload.thrift Echo.echo @%s -c %d --depth %d -d %g --warmup %g --backend %s "
        .. "--json", port, tmp, conns, depth, DURATION, WARMUP, g.backend), spid, "cpu_pct")
    end
  end
end
if not uring_ok then table.remove(GENS, 4) end

local function median(t) -- sorts t
  table.sort(t)
  local n = #t
  if n == 0 then return 0 end
  return n % 2 == 1 and t[(n + 1) / 2] or (t[n / 2] + t[n / 2 + 1]) / 2
end

local CONFIGS = { { 10, 1 }, { 100, 1 }, { 10, 16 } }
local rows = {}
for _, cfg in ipairs(CONFIGS) do
  local conns, depth = cfg[1], cfg[2]
  local port = free_port()
  local pid = start_server(port)
  local runs = {}
  for r = 1, ROUNDS do
    for gi = 1, #GENS do
      local g = GENS[(gi + r - 2) % #GENS + 1] -- each round starts with another generator
      local res = g.run(port, conns, depth, pid)
      res.round = r
      runs[g.name] = runs[g.name] or {}
      table.insert(runs[g.name], res)
      io.stderr:write(string.format("%-34s conns=%d depth=%d round %d: %.0f calls/s p50 %.0f us "
        .. "p99 %.0f us errors %d cpu %d%% server cpu %.0f%%\n", g.name, conns, depth, r, res.cps,
        res.p50, res.p99, res.errors, res.cpu, 100 * res.server))
    end
  end
  os.execute("kill " .. pid)
  -- per-round ratios to loadgen.c's run of the same round, and medians
  local base_of = {}
  for _, x in ipairs(runs["bench/loadgen.c"]) do base_of[x.round] = x.cps end
  for _, g in ipairs(GENS) do
    local rs = runs[g.name]
    local ratios, cpss, cpus, srv = {}, {}, {}, {}
    table.sort(rs, function(a, b) return a.round < b.round end)
    for _, x in ipairs(rs) do
      cpss[#cpss + 1] = x.cps
      if x.cps > 0 then cpus[#cpus + 1] = x.cpu / 100 * 1e6 / x.cps end
      srv[#srv + 1] = x.server
      if (base_of[x.round] or 0) > 0 then ratios[#ratios + 1] = x.cps / base_of[x.round] end
    end
    local rlist = {}
    for i, q in ipairs(ratios) do rlist[i] = string.format("%.2f", q) end
    table.sort(rs, function(a, b) return a.cps > b.cps end)
    local best, worst = rs[1], rs[#rs]
    rows[#rows + 1] = { conns = conns, depth = depth, name = g.name, best = best,
      median = median(cpss), med_vs = median(ratios), cpu_us = median(cpus),
      srv_med = median(srv), srv_min = srv[1] or 0, -- median sorted srv
      spread = best.cps > 0 and (best.cps - worst.cps) / best.cps or 0,
      ratios = table.concat(rlist, " ") }
  end
end
os.remove(tmp)

print(string.format("#### petrel bench and bench/loadgen.c on the C floor server (c_epoll_echo "
  .. "--thrift, core 0; generators on core 1; Echo.echo, 1005-byte requests; %g s + %g s warm-up, "
  .. "%d interleaved rounds; per-round ratios: to loadgen.c's run of the same round, in round "
  .. "order; loadgen.c, again: the same program run once more each round, the noise control)",
  DURATION, WARMUP, ROUNDS))
print()
print("| conns x depth | generator | best calls/s | median calls/s | spread | p50 µs | p99 µs | p99.9 µs | errors | CPU µs per call | server CPU (median, lowest) | best vs loadgen.c | per-round ratios to loadgen.c | median ratio |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
local base
for _, row in ipairs(rows) do
  if row.name == "bench/loadgen.c" then base = row.best.cps end
  local b = row.best
  print(string.format("| %d x %d | %s | %.0f | %.0f | %.0f%% | %.0f | %.0f | %.0f | %d | %.2f | %.0f%%, %.0f%% | %.2fx | %s | %.2fx |",
    row.conns, row.depth, row.name, b.cps, row.median, 100 * row.spread, b.p50, b.p99, b.p999,
    b.errors, row.cpu_us, 100 * row.srv_med, 100 * row.srv_min, base and base > 0 and b.cps / base or 0,
    row.ratios, row.med_vs))
end
