-- bench/openresty.lua (make bench-openresty): petrel.resty inside nginx.
--
-- One nginx worker (Debian's nginx + lua-nginx-module, OpenResty's LuaJIT2)
-- pinned to core 0; wrk, redis-server and the Thrift upstreams pinned to
-- core 1. Locations, each one upstream call per HTTP request on a keepalive
-- pool of 64, reply body "ok":
--   /thrift_c       petrel.resty Echo.echo(small Request, 981 B) to the C
--                   Thrift echo server (bench/peers/c_epoll_echo --thrift);
--                   the reply decoded into tables, its user_id checked
--   /thrift_c_lazy  the same call on a client made with lazy = true: the
--                   reply's user_id read from a view of it
--   /thrift_petrel  the same call to a petrel server (Lua 5.4)
--   /redis          lua-resty-redis GET of a 981-byte value from redis-server
--   /redis_codec    /redis plus petrel's encode and decode of the Request
--                   (no Thrift I/O: the codec's share, for reading the table)
-- Rounds are interleaved (every location in turn) ROUNDS times
-- (default 3); the table gives every run, the best, the spread
-- ((max - min) / best) and the ratio of the best to redis's best.
-- Then the stall check: /thrift_c's latency alone, and again while another
-- wrk keeps SLOW_CONNS requests in /thrift_slow, whose upstream sleeps
-- 200 ms per call.
-- Env: ROUNDS, DURATION (s per run, default 5), CONNS (default 50),
--      SLOW_CONNS (default 50), PETREL_BUILD (default build).
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;./?.lua;" .. package.path
local build = os.getenv("PETREL_BUILD") or "build"
package.cpath = build .. "/lua5.4/?.so;" .. package.cpath
local petrel = require "petrel"
local N = require "support.nginx"

local ROUNDS = tonumber(os.getenv("ROUNDS")) or 3
local DURATION = tonumber(os.getenv("DURATION")) or 5
local CONNS = tonumber(os.getenv("CONNS")) or 50
local SLOW_CONNS = tonumber(os.getenv("SLOW_CONNS")) or 50
local ROOT = assert(io.popen("pwd")):read("*l")

local loop = assert(petrel.loop())
local tmp = N.tmpdir("bench-openresty")
local pids = {}


local function start(cmd, tag)
  local out = tmp .. "/" .. tag .. ".out"
  pids[#pids + 1] = N.bg(cmd, out)
  return out
end

local nginx
local function cleanup()
  if nginx then nginx:stop() end
  for _, pid in ipairs(pids) do os.execute("kill " .. pid .. " 2>/dev/null") end
  N.run_until(loop, function()
    for _, pid in ipairs(pids) do if N.alive(pid) then return false end end
    return true
  end, 10000)
  os.execute("rm -rf '" .. tmp .. "'")
end

local function fail(msg)
  io.stderr:write("bench-openresty: ", msg, "\n")
  if nginx then io.stderr:write(nginx:log(), "\n") end
  cleanup()
  os.exit(1)
end

local size = #N.read_file("bench/data/small.bin")
local cfg = { root = ROOT, c_echo = N.free_port(loop), redis = N.free_port(loop), size = size }
start(string.format("taskset -c 1 %s/bench/c_epoll_echo --port %d --thrift --duration 900",
  build, cfg.c_echo), "c_echo")
start(string.format("taskset -c 1 redis-server --port %d --bind 127.0.0.1 --save '' " ..
  "--appendonly no --protected-mode no --daemonize no", cfg.redis), "redis")
local up = start(string.format("env LUA_CPATH_5_4='%s/lua5.4/?.so;;' taskset -c 1 lua5.4 " ..
  "bench/openresty/upstream.lua 900", build), "petrel")
if not N.run_until(loop, function() return N.read_file(up):find("slow=%d+") ~= nil end, 20000) then
  fail("the petrel upstream did not start: " .. N.read_file(up))
end
cfg.petrel_echo = tonumber(N.read_file(up):match("echo=(%d+)"))
cfg.petrel_slow = tonumber(N.read_file(up):match("slow=(%d+)"))

local function literal(t)
  local parts = {}
  for k, v in pairs(t) do parts[#parts + 1] = string.format("[%q] = %q", k, v) end
  return "{ " .. table.concat(parts, ", ") .. " }"
end
N.write_file(tmp .. "/cfg.lua", "return " .. literal(cfg):gsub('"(%d+)"', "%1"))

local port = N.free_port(loop)
local ok, ngx_or_err = pcall(N.start, { loop = loop, port = port, taskset = 0, log_level = "error",
  lifetime = 3600,
  worker_connections = 8192, http = [[
  lua_package_path "${ROOT}/lua/?.lua;${ROOT}/lua/?/init.lua;${ROOT}/?.lua;${ROOT}/bench/?.lua;;";
  lua_package_cpath "${ROOT}/]] .. build .. [[/luajit/?.so;;";
  lua_socket_log_errors off;
  init_by_lua_block { require("openresty.app").init(dofile("]] .. tmp .. [[/cfg.lua")) }
  init_worker_by_lua_block { require("openresty.app").init_worker() }
  server {
    listen ${LISTEN} backlog=4096;
    keepalive_requests 1000000;
    location = /__ping { return 200 "pong"; }
    location = /thrift_c { content_by_lua_block { require("openresty.app").thrift_c() } }
    location = /thrift_c_lazy { content_by_lua_block { require("openresty.app").thrift_c_lazy() } }
    location = /thrift_petrel { content_by_lua_block { require("openresty.app").thrift_petrel() } }
    location = /thrift_slow { content_by_lua_block { require("openresty.app").thrift_slow() } }
    location = /blocking_slow { content_by_lua_block { require("openresty.app").blocking_slow() } }
    location = /redis { content_by_lua_block { require("openresty.app").redis() } }
    location = /redis_codec { content_by_lua_block { require("openresty.app").redis_codec() } }
    location = /setup { content_by_lua_block {
      local app = require("openresty.app")
      local ok, redis = pcall(require, "resty.redis")
      if not ok then redis = require "nginx.redis" end
      local red = redis:new()
      assert(red:connect("127.0.0.1", app.cfg.redis))
      local f = assert(io.open(app.cfg.root .. "/bench/data/small.bin", "rb"))
      assert(red:set("petrel:small", f:read("*a")))
      f:close()
      ngx.print("ok")
    } }
  }
]] })
if not ok then fail(tostring(ngx_or_err)) end
nginx = ngx_or_err

-- redis may take a moment to listen
if not N.run_until(loop, function()
  local st, _, body = nginx:request("GET", "/setup", nil, 5000)
  return st == 200 and body == "ok"
end, 20000) then
  fail("could not store the value in redis-server")
end
for _, path in ipairs({ "/thrift_c", "/thrift_c_lazy", "/thrift_petrel", "/redis", "/redis_codec", "/thrift_slow",
  "/blocking_slow" }) do
  local st, _, body = nginx:request("GET", path, nil, 10000)
  if st ~= 200 or body ~= "ok" then fail(path .. ": " .. tostring(st) .. " " .. tostring(body)) end
end

-- one wrk run: req/s, {p50, p90, p99} in ms, errors (non-2xx, socket errors)
local function to_ms(v, unit)
  v = tonumber(v)
  if unit == "us" then return v / 1000 elseif unit == "s" then return v * 1000 end
  return v
end
local function wrk(path, conns, secs)
  local cmd = string.format("taskset -c 1 wrk -t1 -c%d -d%ds --latency http://127.0.0.1:%d%s 2>&1",
    conns, secs, port, path)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  local rps = tonumber(out:match("Requests/sec:%s*([%d%.]+)"))
  if not rps then fail("wrk: " .. out) end
  local lat = {}
  for pct, v, unit in out:gmatch("\n%s*(%d+)%%%s+([%d%.]+)(%a+)") do lat[tonumber(pct)] = to_ms(v, unit) end
  local errs = tonumber(out:match("Non%-2xx or 3xx responses: (%d+)")) or 0
  for n in out:gmatch("Socket errors:[^\n]*") do
    for k in n:gmatch("(%d+)") do errs = errs + tonumber(k) end
  end
  local nreq = tonumber(out:match("(%d+) requests in")) or 0
  if nreq == 0 then lat = {} end
  return rps, lat, errs, nreq
end

-- CPU seconds the nginx worker has used (utime + stime)
local worker = nginx:workers()[1]
local TICK = tonumber(assert(io.popen("getconf CLK_TCK")):read("*l")) or 100
local function worker_cpu()
  local st = N.read_file("/proc/" .. worker .. "/stat"):match("%) (.*)")
  local f = {}
  for x in st:gmatch("%S+") do f[#f + 1] = x end
  return (tonumber(f[12]) + tonumber(f[13])) / TICK
end

-- warm-up: JIT traces, pools
for _, path in ipairs({ "/thrift_c", "/thrift_c_lazy", "/thrift_petrel", "/redis", "/redis_codec" }) do
  wrk(path, CONNS, 1)
end

local rows = {
  { path = "/thrift_c", what = "petrel.resty Echo.echo -> C Thrift echo (framed)" },
  { path = "/thrift_c_lazy", what = "the same, lazy = true: the reply read as a view" },
  { path = "/thrift_petrel", what = "petrel.resty Echo.echo -> petrel server, Lua 5.4 (framed)" },
  { path = "/redis", what = "lua-resty-redis GET (" .. size .. " B value) -> redis-server" },
  { path = "/redis_codec", what = "the redis GET + petrel encode and decode of the Request, no Thrift I/O" },
}
for _, r in ipairs(rows) do r.runs, r.errs, r.per_cpu = {}, 0, 0 end
for round = 1, ROUNDS do
  for _, r in ipairs(rows) do
    local c0 = worker_cpu()
    local rps, _, errs, nreq = wrk(r.path, CONNS, DURATION)
    local cpu = worker_cpu() - c0
    r.runs[round] = rps
    r.errs = r.errs + errs
    -- requests per CPU second of the worker: what one saturated worker
    -- does, much less sensitive to other load on the machine than req/s
    if cpu > 0 then r.per_cpu = math.max(r.per_cpu, nreq / cpu) end
  end
end
for _, r in ipairs(rows) do
  local best, worst = 0, math.huge
  for _, v in ipairs(r.runs) do best = math.max(best, v); worst = math.min(worst, v) end
  r.best, r.spread = best, (best - worst) / best
end
local by = {}
for _, r in ipairs(rows) do by[r.path] = r end
local redis_best, redis_cpu = by["/redis"].best, by["/redis"].per_cpu
-- /redis_codec is there to read the table by (the codec's share), not a peer

print(string.format("\n#### petrel.resty in nginx: one upstream call per HTTP request " ..
  "(1 nginx worker on core 0; wrk -t1 -c%d and the upstreams on core 1; %d s runs, %d interleaved rounds)\n",
  CONNS, DURATION, ROUNDS))
local hdr = "| location | upstream call |"
local sep = "|---|---|"
for i = 1, ROUNDS do hdr = hdr .. " run " .. i .. " |"; sep = sep .. "---:|" end
print(hdr .. " best req/s | spread | errors | vs redis | req per worker CPU s | vs redis |")
print(sep .. "---:|---:|---:|---:|---:|---:|")
for _, r in ipairs(rows) do
  local line = string.format("| `%s` | %s |", r.path, r.what)
  for _, v in ipairs(r.runs) do line = line .. string.format(" %.0f |", v) end
  print(line .. string.format(" %.0f | %.1f%% | %d | %.2fx | %.0f | %.2fx |", r.best, r.spread * 100, r.errs,
    r.best / redis_best, r.per_cpu, r.per_cpu / redis_cpu))
end
for _, path in ipairs({ "/thrift_c", "/thrift_c_lazy" }) do
  local r = by[path]
  local ratio = r.best / redis_best
  print(string.format("\n%s (C upstream) / redis: %.2fx in req/s (target >= 0.8x): %s; %.2fx in requests " ..
    "per worker CPU second", path, ratio, ratio >= 0.8 and "met" or "NOT MET", r.per_cpu / redis_cpu))
end

-- the stall check: rounds of (/thrift_c alone, /thrift_c while a second
-- wrk keeps SLOW_CONNS requests waiting on the 200 ms upstream), best of each
local QC = 10
local best = { alone = {}, busy = {}, blocking = {} }
local function keep(kind, rps, lat, errs)
  local b = best[kind]
  if not b.rps or rps > b.rps then b.rps, b.errs = rps, errs end
  for _, p in ipairs({ 50, 90, 99 }) do
    if lat[p] and lat[p] > 0 and (not b[p] or lat[p] < b[p]) then b[p] = lat[p] end
  end
end
local slow_rps, slow_lat = 0, {}
-- /thrift_c measured while a second wrk keeps SLOW_CONNS requests in path
local function with_slow(path, round)
  local slow_out = tmp .. "/slow-wrk-" .. path:sub(2) .. round .. ".out"
  local slow_pid = N.bg(string.format("taskset -c 1 wrk -t1 -c%d -d%ds --latency http://127.0.0.1:%d%s",
    SLOW_CONNS, DURATION + 3, port, path), slow_out)
  pids[#pids + 1] = slow_pid
  N.run_until(loop, function() return false end, 1500) -- the slow calls pile up first
  local rps, lat, errs = wrk("/thrift_c", QC, DURATION)
  N.run_until(loop, function() return not N.alive(slow_pid) end, (DURATION + 10) * 1000)
  return rps, lat, errs, N.read_file(slow_out)
end
for round = 1, ROUNDS do
  local rps, lat, errs = wrk("/thrift_c", QC, DURATION)
  keep("alone", rps, lat, errs)
  local sout
  rps, lat, errs, sout = with_slow("/thrift_slow", round)
  keep("busy", rps, lat, errs)
  local r = tonumber(sout:match("Requests/sec:%s*([%d%.]+)")) or 0
  if r > slow_rps then
    slow_rps, slow_lat = r, {}
    for pct, v, unit in sout:gmatch("\n%s*(%d+)%%%s+([%d%.]+)(%a+)") do slow_lat[tonumber(pct)] = to_ms(v, unit) end
  end
end
-- the contrast, once: the same slow calls through a blocking socket
do
  local rps, lat, errs = with_slow("/blocking_slow", 0)
  keep("blocking", rps, lat, errs)
end

print(string.format("\n#### No worker stall: /thrift_c (wrk -c%d) alone, and while %d requests wait in " ..
  "/thrift_slow (its upstream sleeps 200 ms per call); best of %d rounds\n", QC, SLOW_CONNS, ROUNDS))
print("| /thrift_c | req/s | p50 ms | p90 ms | p99 ms | errors (timeouts) |")
print("|---|---:|---:|---:|---:|---:|")
local labels = { alone = "alone", busy = "with /thrift_slow busy (petrel.resty)",
  blocking = "with /blocking_slow busy (LuaSocket, for contrast; one round)" }
for _, k in ipairs({ "alone", "busy", "blocking" }) do
  local b = best[k]
  local function ms(v) return v and (b.rps or 0) > 0 and string.format("%.2f", v) or "-" end
  print(string.format("| %s | %.0f | %s | %s | %s | %d |", labels[k], b.rps or 0, ms(b[50]), ms(b[90]),
    ms(b[99]), b.errs or 0))
end
print(string.format("\n/thrift_slow meanwhile: %.0f req/s, p50 %.1f ms, p99 %.1f ms (%d in flight / 0.2 s = %d req/s at most)",
  slow_rps, slow_lat[50] or 0, slow_lat[99] or 0, SLOW_CONNS, SLOW_CONNS * 5))
local stalled = (best.busy[50] or 1e9) >= 100
print(string.format("worker stall: %s (p50 %.2f ms with slow calls in flight, %.2f ms alone; the blocking " ..
  "client, whose worker waits out every 200 ms call: %.0f req/s)", stalled and "YES" or "none",
  best.busy[50] or 0, best.alone[50] or 0, best.blocking.rps or 0))

cleanup()
