-- petrel.cluster: a client over many instances of a service —
-- petrel.client{ resolve = "etcd://echo", registry = reg } or
-- petrel.client{ instances = { "127.0.0.1:9000", ... } }.
--
-- Each instance gets its own petrel.client state (its connection pool:
-- pool_size / max_conns / backlog per address); a balancer picks the
-- instance of each call (petrel.balance); failures are retried where that
-- is safe, within a retry budget and the call's deadline; each instance
-- has a circuit breaker (petrel.breaker), and an instance whose connection
-- fails is ejected at once and re-admitted when a TCP connect to it works
-- again (probed in the background, never with a user's call).
--
-- Retry safety: a call is retried on another instance when not a byte of
-- it was sent (the connect failed, or the connection was gone before the
-- write), and otherwise only when its method is idempotent: listed in the
-- `idempotent` option or annotated (idempotent = "true") in the IDL.
-- Thrift errors (declared exceptions, TApplicationException) are answers
-- and are returned as they are.
local core = require "petrel.core"
local client = require "petrel.client"
local loopmod = require "petrel.loop"
local options = require "petrel.options"
local balance = require "petrel.balance"
local breaker = require "petrel.breaker"

local Client = client._Client
local encode = Client._encode
local clock = core.clock
local rotate, CLOSED, HALF = breaker.rotate, breaker.CLOSED, breaker.HALF
local floor = math.floor

local M = {}

-- ---- options ---------------------------------------------------------------------

local function idempotent_check(v)
  return v == true or type(v) == "table" or "true (every method) or a list of method names"
end

-- A table option's own keys: true, or what was expected (for the
-- message "option 'retry' must be <that>, got table").
local function sub_check(spec, v, what)
  if type(v) ~= "table" then return what end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local chk = spec[k]
    if not chk then
      local names = {}
      for n in pairs(spec) do names[#names + 1] = n end
      table.sort(names)
      return string.format("a table of %s (unknown key '%s')", table.concat(names, ", "), k)
    end
    local ok = chk(v[k])
    if ok ~= true then
      return string.format("a table whose '%s' is %s (it is %s)", k, ok, options.show(v[k]))
    end
  end
  return true
end

local function ratio(x)
  return (type(x) == "number" and x >= 0 and x <= 1) or "a ratio between 0 and 1"
end

local RETRY = { max = options.int(0), budget = ratio, min_per_sec = options.int(0),
  backoff = options.ms, backoff_max = options.ms }
local function retry_check(v)
  if v == false then return true end
  return sub_check(RETRY, v, "false or a table { max =, budget =, backoff = ... }")
end

local BREAKER = { window = options.ms, buckets = options.int(1), min_calls = options.int(1),
  error_rate = function(x)
    return (type(x) == "number" and x > 0 and x <= 1) or "a ratio in (0, 1]" end,
  consecutive = options.int(1), cooldown = options.ms, max_cooldown = options.ms,
  probes = options.int(1) }
local function breaker_check(v)
  if v == false then return true end
  return sub_check(BREAKER, v, "false or a table { error_rate =, window = ... }")
end

local CLUSTER_ONLY = {
  resolve = function(v)
    return (type(v) == "string" and v:match("^etcd://[^/]+$") ~= nil)
      or "\"etcd://<service name>\""
  end,
  registry = options.registry,
  instances = options.table,
  balance = options.oneof("wrr", "p2c", "chash"),
  hash_key = options.func,
  vnodes = options.int(1),
  bounded_load = function(v) return (type(v) == "number" and v > 1) or "a number > 1" end,
  idempotent = idempotent_check,
  retry = retry_check,
  breaker = breaker_check,
  eject_time = options.ms, eject_max = options.ms,
  on_event = options.func,
}
M.CLUSTER_ONLY = CLUSTER_ONLY

local OPTIONS = {}
for k, v in pairs(client.CLIENT_OPTIONS) do OPTIONS[k] = v end
OPTIONS.host, OPTIONS.port, OPTIONS.unix = nil, nil, nil -- the instances say where
for k, v in pairs(CLUSTER_ONLY) do OPTIONS[k] = v end

-- Options each instance's own client gets.
local PER_INSTANCE = { "service", "loop", "transport", "timeout", "connect_timeout", "pool_size",
  "keepalive_timeout", "multiplex", "max_frame", "max_conns", "backlog", "nodelay", "keepalive",
  "sndbuf", "rcvbuf" }

-- ---- instances -------------------------------------------------------------------

-- Latency: the last NLAT samples (µs) of each instance, a ring; stats
-- sorts them for p50 / p99 (recent, not since the start).
local NLAT = 1024

local function inst_new(self, spec)
  local o = {}
  for _, k in ipairs(PER_INSTANCE) do o[k] = self.opts[k] end
  o.loop = self.loop
  if spec.unix then o.unix = spec.unix else o.host, o.port = spec.host, spec.port end
  local proxy = client.client(o)
  local inst = {
    address = spec.address, host = spec.host, port = spec.port, unix = spec.unix,
    weight = spec.weight or 10, tags = spec.tags or {},
    st = client._state(proxy), proxy = proxy,
    inflight = 0, ok = true, active = true, ejected = false,
    calls = 0, errors = 0, timeouts = 0, conn_errors = 0, retried = 0, ejections = 0,
    lat_sum = 0, lat_max = 0, lat = {}, lat_at = 0, probing = 0,
    breaker = self.breaker_opts and breaker.new(self.breaker_opts) or nil,
  }
  return inst
end

-- p50 and p99 (ms) of an instance's recent latencies.
local function percentiles(inst)
  local t = {}
  for i, v in pairs(inst.lat) do t[i] = v end
  local n = #t
  if n == 0 then return nil end
  table.sort(t)
  local function at(q) return t[math.max(1, math.ceil(q * n))] / 1000 end
  return at(0.5), at(0.99)
end

-- ---- the cluster client's state ---------------------------------------------------

local Cluster = {}
Cluster.__index = Cluster
Cluster.cluster = true

function Cluster:_event(kind, inst, info)
  local f = self.on_event
  if f then
    local ok, err = pcall(f, kind, inst and inst.address, info)
    if not ok then io.stderr:write("petrel: on_event failed: ", tostring(err), "\n") end
  end
end

-- inst.ok from its state (the balancers read it).
local function refresh(inst)
  local b = inst.breaker
  local ok = inst.active and not inst.ejected
  if ok and b then
    local st = b.state
    if st == breaker.OPEN then
      ok = false
    elseif st == breaker.HALF then
      ok = b.half_inflight < b.probes
    end
  end
  inst.ok = ok
end

-- A new list of instances (from the resolver or the static option).
function Cluster:_set_instances(specs)
  local by_addr, list = {}, {}
  for _, spec in ipairs(specs) do
    if not by_addr[spec.address] then
      local inst = self.by_addr[spec.address]
      if inst then
        inst.weight, inst.tags = spec.weight or 10, spec.tags or {}
      else
        inst = inst_new(self, spec)
        self.known[#self.known + 1] = inst
        self:_event("added", inst, spec)
      end
      by_addr[spec.address] = inst
      list[#list + 1] = inst
    end
  end
  for addr, inst in pairs(self.by_addr) do
    if not by_addr[addr] then
      inst.active = false
      refresh(inst)
      inst.removed_at = clock()
      inst.st:close() -- idle connections now; busy ones after their call
      self:_event("removed", inst)
    end
  end
  -- removed instances are remembered (stats) up to a bound
  if #self.known > 256 then
    local keep = {}
    for _, inst in ipairs(self.known) do
      if inst.active or #keep < 128 then keep[#keep + 1] = inst end
    end
    self.known = keep
  end
  table.sort(list, function(a, b) return a.address < b.address end)
  self.by_addr, self.list = by_addr, list
  self.lb:update(list)
  self.updates = self.updates + 1
  if not self.ready then
    self.ready = true
    local ws = self.ready_waiters
    self.ready_waiters = {}
    for _, w in ipairs(ws) do w:done(true) end
  end
end

-- Wait for the first list of instances (bounded by the deadline).
function Cluster:_await_ready(deadline)
  if self.ready then return true end
  local w = self.loop:waiter()
  self.ready_waiters[#self.ready_waiters + 1] = w
  local ok = self.loop:await(w, deadline and math.max(0, deadline - self.loop:now()) or nil)
  if ok then return true end
  local why = self.resolver and self.resolver.last_error
  return nil, string.format("resolve %s: no instance known%s", self.peer,
    why and (" (" .. tostring(why) .. ")") or "")
end

-- Eject inst after a connection failure; a background probe re-admits it.
function Cluster:_eject(inst, err)
  if inst.ejected or not inst.active then return end
  inst.ejected = true
  inst.ejections = inst.ejections + 1
  refresh(inst)
  inst.st:close()
  local wait = inst.eject_wait and math.min(inst.eject_wait * 2, self.eject_max) or self.eject_time
  inst.eject_wait = wait
  self:_event("ejected", inst, err)
  self.loop:spawn(Cluster._probe, self, inst)
end

-- Can we connect to inst? (a TCP connect, closed at once)
local function tcp_probe(loop, inst, timeout)
  local id
  if inst.unix then
    id = loop.c:connect("unix:" .. inst.unix, nil, timeout)
  else
    id = loop.c:connect(inst.host, inst.port, timeout)
  end
  if not id then return false end
  local w = loop:waiter()
  loop:attach(id, { on_connected = function(_, _, err) w:done(err == 0) end,
    on_closed = function() w:done(false) end })
  local ok = loop:await(w, timeout + 100)
  loop:close(id)
  return ok == true
end

function Cluster:_probe(inst)
  local loop = self.loop
  while inst.ejected and inst.active and not self.closed do
    loop:sleep(inst.eject_wait)
    if not inst.active or self.closed then return end
    if tcp_probe(loop, inst, self.connect_timeout) then
      inst.ejected = false
      if inst.breaker then inst.breaker:half_open() end -- a few calls first
      refresh(inst)
      self:_event("readmitted", inst)
      return
    end
    inst.eject_wait = math.min(inst.eject_wait * 2, self.eject_max)
  end
end

-- A failed attempt's error: "timeout", "conn" (the connection failed:
-- eject) or "other" (a protocol error, a local wait for a connection).
local function classify(err)
  if err:find(": timeout after ", 1, true) then
    if err:find("^wait for a connection") then return "local" end
    return "timeout"
  end
  if err:find("^connect ") or err:find("connection closed", 1, true)
    or err:find("reset by peer", 1, true) or err:find("Broken pipe", 1, true)
    or err:find("refused", 1, true) then
    return "conn"
  end
  if err:find("^wait for a connection") then return "local" end
  return "other"
end
M._classify = classify

-- Breaker bookkeeping after an attempt on inst.
local function breaker_record(self, inst, ok, now, half)
  local b = inst.breaker
  if not b then return end
  local before = b.state
  local st, cooldown = b:record(ok, now, half)
  if st ~= before or half then refresh(inst) end
  if cooldown then
    self:_event("breaker_open", inst, cooldown)
    -- half-open once the cooldown is over
    self.loop:after(floor(cooldown * 1000), function()
      if b.state == breaker.OPEN and clock() >= b.open_until - 0.001 then
        b:half_open()
        refresh(inst)
        self:_event("breaker_half_open", inst)
      end
    end)
  elseif st == breaker.CLOSED and before ~= breaker.CLOSED then
    inst.eject_wait = nil -- healthy again: the next ejection starts short
    self:_event("breaker_closed", inst)
  end
end

-- Every instance is down: try one anyway (a last chance beats failing).
local function pick_any(self, key, tried)
  local inst = self.lb:pick(key, tried, true)
  if inst then self.panics = self.panics + 1 end
  return inst
end

local function no_instance(self, name)
  self.nerrors = self.nerrors + 1
  return nil, string.format("call %s.%s: no instance of %s", self.service.name, name, self.peer)
end

-- One call with its retries. Each attempt is encoded by the chosen
-- instance's client (its seqids, its reused message buffer). Called as a
-- tail call (Cluster:call, View:call), so the encoder's errors for bad
-- arguments point at the caller's line, as a single client's do.
local function run(self, fn, name, key, timeout, ...)
  local loop = self.loop
  if self.closed then
    encode(self, fn, name, ...):clear() -- bad arguments raise all the same
    return nil, "call " .. self.service.name .. "." .. name .. ": client closed"
  end
  local start = clock()
  -- loop:now() counts ms of the same clock (CLOCK_MONOTONIC)
  local deadline = timeout > 0 and floor(start * 1000) + timeout or nil
  self.ncalls = self.ncalls + 1
  local budget = self.budget
  if budget then -- budget:deposit(start), inline
    local w = budget.win
    if start >= w.next_t then rotate(w, start) end
    w.calls[w.cur] = w.calls[w.cur] + 1
  end
  if not self.ready then
    -- bad arguments raise now, not after the wait
    local m = encode(self, fn, name, ...)
    m:clear()
    self.wbuf = m
    local ok, err = self:_await_ready(deadline)
    if not ok then
      self.nerrors = self.nerrors + 1
      return nil, err
    end
  end
  local lb, tried, attempt, last_err = self.lb, nil, 1, nil
  -- the first attempt's instance and encoding (outside the loop: LuaJIT
  -- does not compile `...` in a loop; retries are the loop's rare path)
  local inst = lb:pick(key, nil) or pick_any(self, key, nil)
  if not inst then return no_instance(self, name) end
  local msg, seqid = encode(inst.st, fn, name, ...)
  while true do
    local st = inst.st
    local b = inst.breaker
    local half = b and b.state == HALF
    if half then
      b:start()
      refresh(inst)
    end
    inst.inflight = inst.inflight + 1
    inst.calls = inst.calls + 1
    local t0 = attempt == 1 and start or clock()
    if not inst.first_call then inst.first_call = t0 end
    local res, err, stale, unsent = st:_send(fn, name, seqid, msg, deadline)
    local t1 = clock()
    inst.inflight = inst.inflight - 1
    local us = (t1 - t0) * 1e6
    inst.lat_sum = inst.lat_sum + us
    if us > inst.lat_max then inst.lat_max = us end
    local li = inst.lat_at % NLAT + 1
    inst.lat_at = li
    inst.lat[li] = us
    if res ~= nil or type(err) == "table" then
      -- an answer (a result or a Thrift error): the instance works
      if b then
        if b.state == CLOSED then -- b:record(true, t1), inline
          b.run = 0
          local w = b.win
          if t1 >= w.next_t then rotate(w, t1) end
          w.calls[w.cur] = w.calls[w.cur] + 1
        else
          breaker_record(self, inst, true, t1, half)
        end
      end
      return res, err
    end
    inst.errors = inst.errors + 1
    last_err = err
    local kind = classify(err)
    -- a pooled connection found dead before the write (closed while idle,
    -- its close not seen yet) says nothing about the instance
    if kind == "conn" and stale and unsent then kind = "local" end
    if kind == "conn" then
      inst.conn_errors = inst.conn_errors + 1
      self:_eject(inst, err)
    elseif kind == "timeout" then
      inst.timeouts = inst.timeouts + 1
    end
    if b and kind ~= "local" then breaker_record(self, inst, false, t1, half) end
    -- retry?
    local retry = self.retry
    if not retry or attempt > retry.max then break end
    if deadline and loop:now() >= deadline then break end
    if not (unsent or self.idempotent[name]) then break end
    if fn.oneway and not unsent then break end
    if budget and not budget:try(t1) then break end
    self.nretries = self.nretries + 1
    inst.retried = inst.retried + 1
    tried = tried or {}
    tried[#tried + 1] = inst
    self:_event("retry", inst, err)
    -- the first retry of an unsent call goes at once (elsewhere); later
    -- ones back off, within the deadline
    if attempt > 1 or not unsent then
      local pause = retry.backoff * 2 ^ (attempt - 1)
      if pause > retry.backoff_max then pause = retry.backoff_max end
      if deadline then pause = math.min(pause, deadline - loop:now()) end
      if pause > 0 then loop:sleep(pause) end
    end
    attempt = attempt + 1
    inst = lb:pick(key, tried) or pick_any(self, key, tried)
    if not inst then return no_instance(self, name) end
    msg, seqid = encode(inst.st, fn, name, ...)
  end
  self.nerrors = self.nerrors + 1
  return nil, last_err
end
Cluster._run = run

function Cluster:call(fn, name, ...)
  local hk = self.hash_key
  if hk then return run(self, fn, name, hk(name, ...), self.timeout, ...) end
  return run(self, fn, name, nil, self.timeout, ...)
end

-- petrel.close(c): stop resolving, close every connection (busy ones
-- when their call ends); later calls fail.
function Cluster:close()
  self.closed = true
  if self.resolver then
    if self.sub then self.resolver:unsubscribe(self.sub) end
    if self.own_resolver then self.resolver:close() end
  end
  for _, inst in ipairs(self.known) do
    inst.active = false
    refresh(inst)
    inst.st:close()
  end
  local ws = self.ready_waiters
  self.ready_waiters = {}
  for _, w in ipairs(ws) do w:done(nil) end
end

function Cluster:stats()
  local now = clock()
  local s = { service = self.service.name, peer = self.peer, balance = self.lb.kind,
    calls = self.ncalls, errors = self.nerrors, retries = self.nretries, panics = self.panics,
    updates = self.updates, instances = {}, inflight = 0 }
  if self.budget then s.budget = self.budget:stats(now) end
  if self.resolver then s.resolver = self.resolver:stats() end
  for _, inst in ipairs(self.known) do
    local ok_calls = inst.calls
    local cs = client.stats(inst.proxy)
    local p50, p99 = percentiles(inst)
    s.instances[inst.address] = {
      address = inst.address, weight = inst.weight, tags = inst.tags, active = inst.active,
      ejected = inst.ejected, ok = inst.ok, calls = inst.calls, errors = inst.errors,
      timeouts = inst.timeouts, conn_errors = inst.conn_errors, retried = inst.retried,
      ejections = inst.ejections, inflight = inst.inflight, first_call = inst.first_call,
      breaker = inst.breaker and inst.breaker:stats(now) or nil,
      latency = ok_calls > 0 and { avg_ms = inst.lat_sum / ok_calls / 1000,
        max_ms = inst.lat_max / 1000, p50_ms = p50, p99_ms = p99 } or nil,
      open = cs.open, idle = cs.idle,
    }
    if inst.active then s.inflight = s.inflight + inst.inflight end
  end
  return s
end

-- petrel.configure on a cluster client: the per-instance options go to
-- every instance's client (and to those added later).
function Cluster:configure(opts, level)
  local MUTABLE = { timeout = options.ms, connect_timeout = options.ms,
    pool_size = options.int(0), keepalive_timeout = options.ms, max_conns = options.int(1),
    backlog = options.int(0) }
  options.check("petrel.configure", MUTABLE, opts, (level or 1) + 1)
  for k, v in pairs(opts) do
    self.opts[k] = v
    if k == "timeout" then self.timeout = v end
    if k == "connect_timeout" then self.connect_timeout = v end
  end
  for _, inst in ipairs(self.known) do client.configure(inst.proxy, opts) end
end

-- ---- per-call options (petrel.with) -----------------------------------------------------

local View = {}
View.__index = function(v, k)
  local f = View[k]
  if f ~= nil then return f end
  return rawget(v, "base")[k]
end

function View:call(fn, name, ...)
  local base = self.base
  local key = self.key
  if key == nil and base.hash_key then key = base.hash_key(name, ...) end
  return run(base, fn, name, key, self.timeout or base.timeout, ...)
end

function View:stats() return self.base:stats() end
function View:close() return self.base:close() end
function View:configure(opts, level) return self.base:configure(opts, (level or 1) + 1) end

-- petrel.with(c, { key = k, timeout = ms }) -> a client making c's calls
-- with that hash key (balance = "chash") and deadline.
function M.with(proxy, o)
  if not client.is_client(proxy) or not client._state(proxy).cluster then
    error("petrel.with: a client made with 'resolve' or 'instances' expected", 2)
  end
  if type(o) ~= "table" then error("petrel.with: options table expected", 2) end
  options.check("petrel.with", { key = function(v)
    return (type(v) == "string" or type(v) == "number") or "a string or a number" end,
    timeout = options.ms }, o, 2)
  local st = client._state(proxy)
  if st.base then st = st.base end
  return client._proxy(setmetatable({ base = st, key = o.key, timeout = o.timeout,
    cluster = true }, View))
end

-- ---- construction -----------------------------------------------------------------------

-- A static instance: "host:port", "unix:/path" or { host =, port =,
-- weight =, tags = } | { unix = } -> spec | nil, err
local function static_spec(x)
  if type(x) == "string" then
    if x:find("^unix:") then return { address = x, unix = x:sub(6) } end
    local host, port = require("petrel.etcd").split_address(x)
    if not host then return nil, "'" .. x .. "' is not host:port" end
    return { address = x, host = host, port = port }
  elseif type(x) == "table" then
    local w = x.weight
    if w ~= nil and not (options.integral(w) and w >= 1) then
      return nil, "weight must be an integer >= 1"
    end
    if x.unix then return { address = "unix:" .. x.unix, unix = x.unix, weight = w, tags = x.tags } end
    if type(x.port) ~= "number" then return nil, "a table instance needs port (or unix)" end
    local host = x.host or "127.0.0.1"
    local addr = host:find(":", 1, true) and ("[" .. host .. "]:" .. x.port) or (host .. ":" .. x.port)
    return { address = addr, host = host, port = x.port, weight = w, tags = x.tags }
  end
  return nil, "an instance is \"host:port\" or a table, got " .. type(x)
end

function M.client(opts, level)
  level = (level or 1) + 1
  options.check("petrel.client", OPTIONS, opts, level)
  if not opts.service then
    error("petrel.client: option 'service' (a compiled service) is required", level)
  end
  if (opts.resolve ~= nil) == (opts.instances ~= nil) then
    error("petrel.client: give 'resolve' (with 'registry') or 'instances', not both", level)
  end
  if opts.resolve and not opts.registry then
    error("petrel.client: 'resolve' needs 'registry' (petrel.etcd{ endpoints = {...} })", level)
  end
  local svc = opts.service
  -- idempotent methods: the IDL's (idempotent = "true") and the option
  local idem = {}
  for fname, fn in pairs(svc.functions) do
    local a = fn.annotations
    if a and (a.idempotent == "true" or a.idempotent == true) then idem[fname] = true end
  end
  local io_ = opts.idempotent
  if io_ == true then
    for fname in pairs(svc.functions) do idem[fname] = true end
  elseif type(io_) == "table" then
    for k, v in pairs(io_) do
      local fname = type(k) == "number" and v or k
      if not svc.functions[fname] then
        error(string.format("petrel.client: option 'idempotent' names '%s', which service %s "
          .. "does not have", tostring(fname), svc.name), level)
      end
      if type(k) == "number" or v then idem[fname] = true end
    end
  end
  local r = opts.retry
  local retry
  if r ~= false then
    r = r or {}
    retry = { max = r.max or 2, backoff = r.backoff or 10, backoff_max = r.backoff_max or 200 }
  end
  local br = opts.breaker
  local breaker_opts
  if br ~= false then
    br = br or {}
    breaker_opts = { window = (br.window or 10000) / 1000, buckets = br.buckets,
      min_calls = br.min_calls, error_rate = br.error_rate, consecutive = br.consecutive,
      cooldown = (br.cooldown or 1000) / 1000, max_cooldown = (br.max_cooldown or 30000) / 1000,
      probes = br.probes }
  end
  local loop = opts.loop or loopmod.default()
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  local self = setmetatable({
    service = svc, opts = o, loop = loop,
    peer = opts.resolve or "static instances",
    timeout = opts.timeout or 5000,
    connect_timeout = opts.connect_timeout or 3000,
    framed = (opts.transport or "framed") == "framed",
    lb = balance.new(opts.balance or "wrr", { vnodes = opts.vnodes,
      bounded_load = opts.bounded_load }),
    hash_key = opts.hash_key,
    idempotent = idem,
    retry = retry,
    budget = retry and breaker.budget { ratio = r.budget or 0.1,
      min_per_sec = r.min_per_sec or 10 } or nil,
    breaker_opts = breaker_opts,
    eject_time = opts.eject_time or 200,
    eject_max = opts.eject_max or 5000,
    on_event = opts.on_event,
    by_addr = {}, list = {}, known = {}, ready = false, ready_waiters = {},
    ncalls = 0, nerrors = 0, nretries = 0, panics = 0, updates = 0,
    seq = 0, args = {},
  }, Cluster)
  if opts.instances then
    local specs = {}
    for i, x in ipairs(opts.instances) do
      local spec, err = static_spec(x)
      if not spec then error("petrel.client: instances[" .. i .. "]: " .. err, level) end
      specs[#specs + 1] = spec
    end
    if #specs == 0 then error("petrel.client: option 'instances' lists no instance", level) end
    self:_set_instances(specs)
  else
    local name = opts.resolve:match("^etcd://(.+)$")
    local reg = opts.registry
    self.resolver = reg:resolver(name, { loop = loop })
    self.own_resolver = true
    self.sub = self.resolver:subscribe(function(res) self:_set_instances(res.list) end)
  end
  return client._proxy(self)
end

return M
