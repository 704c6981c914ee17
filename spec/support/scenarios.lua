-- The cluster scenarios of issue 16, shared by spec/cluster_spec.lua (which
-- asserts on the figures) and bench/cluster.lua (which prints them):
-- server processes (bench/cluster_server.lua) on distinct 127.0.0.x
-- addresses registered in a real etcd, a client resolving them under
-- steady load, and things going wrong.
local petrel = require "petrel"
local etcdp = require "support.etcd"
local procs = require "support.cluster"

local M = {}

local NS = assert(petrel.load("spec/thrift/cluster.thrift"))
M.NS = NS

local SERVICE = "cluster"

-- setup{ loop =, backend = "epoll" | "uring", servers = 3, ttl = 3,
--   width = 16 } -> env (etcd, reg, servers by letter, client c, events)
function M.setup(o)
  local loop = o.loop
  local env = { loop = loop, backend = o.backend, ttl = o.ttl or 3, width = o.width or 16,
    servers = {}, events = {}, next_host = 2, deregister_wait = o.deregister_wait or 1000 }
  env.etcd = etcdp.start()
  env.reg = petrel.etcd { endpoints = { env.etcd.url }, loop = loop }
  local started = {}
  for _ = 1, o.servers or 3 do started[#started + 1] = M.start_server(env) end
  for _, s in ipairs(started) do s:ready(loop, 30000) end
  env.c = petrel.client { service = NS.Where, loop = loop, resolve = "etcd://" .. SERVICE,
    registry = env.reg, timeout = 5000, pool_size = env.width,
    on_event = function(kind, addr, info)
      env.events[#env.events + 1] = { kind = kind, addr = addr, info = info,
        at = petrel.clock() }
      if env.on_event then env.on_event(kind, addr, info) end
    end }
  -- every instance known before the scenarios start
  local deadline = loop:now() + 10000
  while loop:now() < deadline do
    local n = 0
    for _ in pairs(petrel.stats(env.c).instances) do n = n + 1 end
    if n == #started then break end
    loop:sleep(10)
  end
  return env
end

-- Start one more server (not waited for): its proc.
function M.start_server(env, extra)
  local host = "127.0.0." .. env.next_host
  env.next_host = env.next_host + 1
  local o = { service = SERVICE, ttl = env.ttl, backend = env.backend,
    deregister_wait = env.deregister_wait, taskset = env.taskset }
  for k, v in pairs(extra or {}) do o[k] = v end
  local s = procs.server(env.etcd.url, host, o)
  env.servers[#env.servers + 1] = s
  return s
end

function M.teardown(env)
  if env.load then env.load:stop(2000) end
  if env.c then petrel.close(env.c) end
  for _, s in ipairs(env.servers) do s:cleanup() end
  if env.reg then env.reg:close() end
  if env.etcd then env.etcd:cleanup() end
end

local function where_load(env)
  local c = env.c
  return procs.load(env.loop, env.width, function(i) return c:where(i) end)
end

local function inst_stats(env, addr)
  return petrel.stats(env.c).instances[addr]
end

-- SIGKILL one server under load (idempotent calls): { failed, calls,
-- retries, routed_after (attempts sent to the dead instance after its
-- first connection error), ejected (seen), detect_ms }
function M.kill(env, victim, ms)
  local loop = env.loop
  local load = where_load(env)
  env.load = load
  loop:sleep(ms or 1000)
  local eject_calls
  env.on_event = function(kind, addr)
    if kind == "ejected" and addr == victim.address and not eject_calls then
      eject_calls = inst_stats(env, addr).calls
    end
  end
  local retries0 = petrel.stats(env.c).retries
  local t0 = petrel.clock()
  victim:kill()
  victim:wait_gone(loop, 5000)
  local eject_at
  local deadline = loop:now() + 5000
  while not eject_calls and loop:now() < deadline do loop:sleep(5) end
  for _, e in ipairs(env.events) do
    if e.kind == "ejected" and e.addr == victim.address then eject_at = e.at end
  end
  loop:sleep(ms or 1000)
  load:stop()
  env.load, env.on_event = nil, nil
  local st = inst_stats(env, victim.address)
  return { failed = load.failed, calls = load.calls, errors = load.errors,
    retries = petrel.stats(env.c).retries - retries0,
    ejected = eject_calls ~= nil,
    routed_after = eject_calls and (st.calls - eject_calls) or nil,
    detect_ms = eject_at and (eject_at - t0) * 1000 or nil }
end

-- Two more servers under load: { failed, delays = { seconds from
-- registered to first call routed there, ... } }
function M.add_two(env, ms)
  local loop = env.loop
  local load = where_load(env)
  env.load = load
  loop:sleep(300)
  local a, b = M.start_server(env), M.start_server(env)
  a:ready(loop, 30000)
  b:ready(loop, 30000)
  local deadline = loop:now() + 5000
  local function first(s)
    local st = inst_stats(env, s.address)
    return st and st.first_call
  end
  while (not first(a) or not first(b)) and loop:now() < deadline do loop:sleep(5) end
  loop:sleep(ms or 500)
  load:stop()
  env.load = nil
  local delays = {}
  for _, s in ipairs({ a, b }) do
    local f = first(s)
    delays[#delays + 1] = f and (f - s.registered_at) or math.huge
  end
  return { failed = load.failed, errors = load.errors, calls = load.calls, delays = delays,
    added = { a, b }, got = { load.by[a.address] or 0, load.by[b.address] or 0 } }
end

-- A graceful removal (SIGTERM) under load of a method that is not
-- idempotent: { failed, calls, retries }
function M.graceful(env, victim, ms)
  local loop = env.loop
  local c = env.c
  local load = procs.load(loop, env.width, function(i) return c:bump(i) end)
  env.load = load
  loop:sleep(300)
  local retries0 = petrel.stats(env.c).retries
  victim:term()
  local gone = victim:wait_gone(loop, 15000)
  loop:sleep(ms or 300)
  load:stop()
  env.load = nil
  return { failed = load.failed, errors = load.errors, calls = load.calls, exited = gone,
    retries = petrel.stats(env.c).retries - retries0,
    removed = inst_stats(env, victim.address).active == false }
end

-- etcd stopped for `seconds` and started again, under load: { failed,
-- calls, min_slot (fewest successful calls in any 100 ms of the outage),
-- keys (live servers registered after), live (servers alive), recovered_ms
-- (from the restart until every live server's key is there and the
-- client watches again) }
function M.outage(env, seconds)
  local loop = env.loop
  local load = where_load(env)
  env.load = load
  loop:sleep(500)
  local a = load:since()
  env.etcd:stop()
  loop:sleep(seconds * 1000)
  local b = load:since()
  local t0 = petrel.clock()
  env.etcd:_launch() -- same ports, same data
  local live = 0
  for _, s in ipairs(env.servers) do if s:alive() then live = live + 1 end end
  local keys, recovered_ms = 0, nil
  local prefix = "kitex/registry-etcd/" .. SERVICE .. "/"
  local deadline = loop:now() + 15000
  while loop:now() < deadline do
    -- the live servers' entries (a killed one's may linger: etcd renews
    -- every lease when it starts)
    local kvs = env.reg:list(prefix)
    local have = {}
    for _, kv in ipairs(kvs or {}) do have[kv.key:sub(#prefix + 1)] = true end
    keys = 0
    for _, s in ipairs(env.servers) do
      if s:alive() and have[s.address] then keys = keys + 1 end
    end
    local rs = petrel.stats(env.c).resolver
    if keys >= live and rs.state == "watching" then
      recovered_ms = (petrel.clock() - t0) * 1000
      break
    end
    loop:sleep(50)
  end
  loop:sleep(500)
  load:stop()
  env.load = nil
  return { failed = load.failed, errors = load.errors, calls = load.calls,
    min_slot = load:min_slot(a + 0.1, b), outage_s = b - a, keys = keys, live = live,
    recovered_ms = recovered_ms }
end

-- Consistent hashing with two clients: { keys, same (keys both clients
-- sent to the same instance), moved (after a fourth instance), moved_frac,
-- to_new (moved keys that went to the new instance), instances }
function M.chash(env, nkeys)
  local loop = env.loop
  nkeys = nkeys or 1000
  local function mk()
    return petrel.client { service = NS.Where, loop = loop, resolve = "etcd://" .. SERVICE,
      registry = env.reg, balance = "chash", hash_key = function(_, n) return "key-" .. n end }
  end
  local c1, c2 = mk(), mk()
  -- both clients know exactly the live servers (a killed server's entry
  -- lingers until its lease expires: etcd renewed it when it restarted)
  local function settled()
    local want, n = {}, 0
    for _, s in ipairs(env.servers) do
      if s:alive() and s.address then want[s.address] = true; n = n + 1 end
    end
    for _, c in ipairs({ c1, c2 }) do
      local k = 0
      for addr, i in pairs(petrel.stats(c).instances) do
        if i.active then
          if not want[addr] then return false end
          k = k + 1
        end
      end
      if k ~= n then return false end
    end
    return true, n
  end
  local function wait_settled()
    local deadline = loop:now() + 15000
    while not settled() and loop:now() < deadline do loop:sleep(10) end
    return select(2, settled())
  end
  local live = wait_settled()
  local function map(c)
    local m, done = {}, 0
    local width = 8
    for w = 1, width do
      loop:spawn(function()
        for k = w, nkeys, width do m[k] = c:where(k) end
        done = done + 1
      end)
    end
    while done < width do loop:sleep(5) end
    return m
  end
  local m1, m2 = map(c1), map(c2)
  local same = 0
  for k = 1, nkeys do if m1[k] and m1[k] == m2[k] then same = same + 1 end end
  local s = M.start_server(env)
  s:ready(loop, 30000)
  local now_live = wait_settled()
  local n1, n2 = map(c1), map(c2)
  local moved, to_new, same_after = 0, 0, 0
  for k = 1, nkeys do
    if n1[k] ~= m1[k] then
      moved = moved + 1
      if n1[k] == s.address then to_new = to_new + 1 end
    end
    if n1[k] and n1[k] == n2[k] then same_after = same_after + 1 end
  end
  petrel.close(c1)
  petrel.close(c2)
  return { keys = nkeys, same = same, same_after = same_after, moved = moved,
    moved_frac = moved / nkeys, to_new = to_new, before = live, instances = now_live }
end

return M
