-- petrel.etcd: an etcd v3 client over the JSON gateway (HTTP/1.1 on the
-- petrel loop, non-blocking), and on top of it a service registry:
-- servers register their address under a key bound to a lease they keep
-- alive; clients list a service's instances and watch them change.
--
--   local reg = petrel.etcd{ endpoints = { "http://127.0.0.1:2379", ... } }
--   reg:put(k, v [, lease]) / reg:get(k) / reg:list(prefix) / reg:delete(k)
--   reg:grant(ttl) / reg:keepalive(lease) / reg:revoke(lease)
--   reg:register{ service =, address =, weight =, tags = }   (servers)
--   reg:resolver(service)                                     (clients)
--
-- The registry layout is cloudwego's registry-etcd: key
-- "<prefix>/<service>/<host:port>" (prefix "kitex/registry-etcd"), value
-- {"network":"tcp","address":"host:port","weight":10,"tags":{...}}, so
-- petrel and Kitex services can find each other.
--
-- Several endpoints: a request goes to the endpoint that answered last;
-- when it cannot be reached (or says it is unavailable) the next one is
-- tried, in order, until one answers. etcd's gateway in 3.4 serves /v3/
-- (keys and values base64 in JSON, 64-bit integers as strings: lease ids
-- stay strings here).
local core = require "petrel.core"
local loopmod = require "petrel.loop"
local options = require "petrel.options"
local http = require "petrel.http"
local json = require "petrel.json"

local M = {}

local floor = math.floor

-- ---- base64 (RFC 4648, with padding) ---------------------------------------------

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local ENC, DEC = {}, {}
for i = 1, 64 do
  ENC[i - 1] = B64:sub(i, i)
  DEC[B64:byte(i)] = i - 1
end

local function b64encode(s)
  local out, n = {}, #s
  for i = 1, n, 3 do
    local a, b, c = s:byte(i, i + 2)
    local v = a * 65536 + (b or 0) * 256 + (c or 0)
    out[#out + 1] = ENC[floor(v / 262144)] .. ENC[floor(v / 4096) % 64]
      .. (b and ENC[floor(v / 64) % 64] or "=") .. (c and ENC[v % 64] or "=")
  end
  return table.concat(out)
end

-- b64decode(s) -> bytes | nil, err
local function b64decode(s)
  if #s % 4 ~= 0 then return nil, "base64 length is not a multiple of 4" end
  local out = {}
  for i = 1, #s, 4 do
    local a, b, c, d = s:byte(i, i + 3)
    local va, vb, vc, vd = DEC[a], DEC[b], DEC[c], DEC[d]
    local last = i + 3 == #s
    if not va or not vb or (not vc and not (last and c == 61 and d == 61))
      or (not vd and not (last and d == 61)) then
      return nil, "bad base64 at character " .. i
    end
    local v = va * 262144 + vb * 4096 + (vc or 0) * 64 + (vd or 0)
    if vd then
      out[#out + 1] = string.char(floor(v / 65536), floor(v / 256) % 256, v % 256)
    elseif vc then
      out[#out + 1] = string.char(floor(v / 65536), floor(v / 256) % 256)
    else
      out[#out + 1] = string.char(floor(v / 65536))
    end
  end
  return table.concat(out)
end
M._b64encode, M._b64decode = b64encode, b64decode

-- The key range of everything under prefix: range_end = prefix with its
-- last byte plus one (etcd's WithPrefix).
local function prefix_end(p)
  local i = #p
  while i > 0 and p:byte(i) == 255 do i = i - 1 end
  if i == 0 then return "\0" end
  return p:sub(1, i - 1) .. string.char(p:byte(i) + 1)
end
M._prefix_end = prefix_end

local function num(v)
  if v == nil or v == json.null then return 0 end
  return tonumber(v) or 0
end

-- A kv of a response, decoded: { key, value, lease, mod_revision,
-- create_revision, version } | nil, err
local function decode_kv(kv)
  local key, err = b64decode(kv.key or "")
  if not key then return nil, "key: " .. err end
  local value = ""
  if kv.value and kv.value ~= json.null then
    value, err = b64decode(kv.value)
    if not value then return nil, "value of " .. key .. ": " .. err end
  end
  return { key = key, value = value, lease = kv.lease, mod_revision = num(kv.mod_revision),
    create_revision = num(kv.create_revision), version = num(kv.version) }
end

-- ---- the client ----------------------------------------------------------------------

local Etcd = {}
Etcd.__index = Etcd
Etcd.__tostring = function(self) return "petrel.etcd(" .. table.concat(self.names, ", ") .. ")" end

local ETCD_OPTIONS = {
  endpoints = options.table, loop = options.loop, timeout = options.ms,
  prefix = options.string, ttl = options.int(1), max_body = options.int(1024),
}
M.ETCD_OPTIONS = ETCD_OPTIONS

-- petrel.etcd{ endpoints = { "http://127.0.0.1:2379", ... }, timeout = ms
--   (per request and endpoint, default 3000), prefix = registry key prefix
--   (default "kitex/registry-etcd"), ttl = lease seconds of registrations
--   (default 10), loop = the loop for requests made outside registrations
--   and resolvers (default: the default loop), max_body = bytes of one
--   response (default 64 MiB) } -> registry
function M.new(opts)
  options.check("petrel.etcd", ETCD_OPTIONS, opts, 2)
  if not http.available then
    error("petrel.etcd: HTTP support not compiled in (petrel was built without "
      .. "libhttp-parser-dev)", 2)
  end
  local eps = opts.endpoints
  if not eps or #eps == 0 then
    error("petrel.etcd: option 'endpoints' must list at least one endpoint "
      .. "(\"http://127.0.0.1:2379\")", 2)
  end
  local list, names = {}, {}
  for i, ep in ipairs(eps) do
    local host, port = http.parse_endpoint(ep)
    if not host then error("petrel.etcd: " .. port, 2) end
    list[i] = { host = host, port = port, name = host:find(":", 1, true)
      and ("[" .. host .. "]:" .. port) or (host .. ":" .. port) }
    names[i] = list[i].name
  end
  local prefix = (opts.prefix or "kitex/registry-etcd"):gsub("/+$", "")
  return setmetatable({
    eps = list, names = names, cur = 1,
    timeout = opts.timeout or 3000,
    prefix = prefix,
    ttl = opts.ttl or 10,
    loop_ = opts.loop,
    max_body = opts.max_body,
    agents = setmetatable({}, { __mode = "k" }),
    counters = { requests = 0, failovers = 0, errors = 0 },
  }, Etcd)
end

function M.is_registry(x) return getmetatable(x) == Etcd end

-- The loop plain requests run on.
function Etcd:loop()
  local l = self.loop_
  if not l then
    l = loopmod.default()
    self.loop_ = l
  end
  return l
end

function Etcd:_agent(loop)
  local a = self.agents[loop]
  if not a then
    a = http.agent(loop, { max_body = self.max_body })
    self.agents[loop] = a
  end
  return a
end

-- An error the gateway returned in a body: text, grpc code.
local function gateway_error(body)
  local t = json.decode(body or "")
  if type(t) == "table" then
    local e = t.error
    if type(e) == "table" then return tostring(e.message or e.error), num(e.grpc_code or e.code) end
    return tostring(t.message or t.error or body), num(t.code)
  end
  return tostring(body), 0
end

local UNAVAILABLE = 14

-- POST req (a table) to path on the first endpoint that answers:
-- decoded response | nil, err. timeout per endpoint.
function Etcd:_call(loop, path, req, timeout)
  timeout = timeout or self.timeout
  local body = json.encode(req)
  local agent = self:_agent(loop)
  local n, errs = #self.eps, nil
  self.counters.requests = self.counters.requests + 1
  for k = 0, n - 1 do
    local i = (self.cur - 1 + k) % n + 1
    local ep = self.eps[i]
    local status, rbody = agent:request(ep.host, ep.port, "POST", path, body, nil, timeout)
    local err
    if status == 200 then
      local t, jerr = json.decode(rbody)
      if type(t) ~= "table" then
        self.counters.errors = self.counters.errors + 1
        return nil, "etcd " .. ep.name .. " " .. path .. ": bad JSON: " .. tostring(jerr)
      end
      if i ~= self.cur then
        self.cur = i
        self.counters.failovers = self.counters.failovers + 1
      end
      return t
    elseif status then
      local msg, code = gateway_error(rbody)
      err = string.format("etcd %s %s: %s (HTTP %d%s)", ep.name, path, msg, status,
        code ~= 0 and (", code " .. code) or "")
      if status ~= 503 and code ~= UNAVAILABLE then
        self.counters.errors = self.counters.errors + 1
        return nil, err, code
      end
    else
      err = "etcd " .. ep.name .. ": " .. tostring(rbody)
    end
    errs = errs or {}
    errs[#errs + 1] = err
  end
  self.counters.errors = self.counters.errors + 1
  if n == 1 then return nil, errs[1] end
  return nil, "etcd: no endpoint answered (" .. table.concat(errs, "; ") .. ")"
end

-- ---- kv and leases ----------------------------------------------------------------

-- reg:put(key, value [, lease]) -> revision | nil, err
function Etcd:put(key, value, lease, loop)
  local r, err = self:_call(loop or self:loop(), "/v3/kv/put",
    { key = b64encode(key), value = b64encode(value), lease = lease })
  if not r then return nil, err end
  return num(r.header and r.header.revision)
end

-- reg:range(key [, range_end]) -> kvs, revision | nil, err
function Etcd:range(key, range_end, loop)
  local r, err = self:_call(loop or self:loop(), "/v3/kv/range",
    { key = b64encode(key), range_end = range_end and b64encode(range_end) or nil })
  if not r then return nil, err end
  local kvs = {}
  for i, kv in ipairs(type(r.kvs) == "table" and r.kvs or {}) do
    local d, derr = decode_kv(kv)
    if not d then return nil, "etcd range " .. key .. ": " .. derr end
    kvs[i] = d
  end
  return kvs, num(r.header and r.header.revision)
end

-- reg:get(key) -> value | false (no such key) | nil, err
function Etcd:get(key, loop)
  local kvs, err = self:range(key, nil, loop)
  if not kvs then return nil, err end
  if #kvs == 0 then return false end
  return kvs[1].value, kvs[1]
end

-- reg:list(prefix) -> kvs (sorted by key), revision | nil, err
function Etcd:list(prefix, loop)
  return self:range(prefix, prefix_end(prefix), loop)
end

-- reg:delete(key [, prefix = false]) -> number deleted | nil, err
function Etcd:delete(key, is_prefix, loop, timeout)
  local r, err = self:_call(loop or self:loop(), "/v3/kv/deleterange",
    { key = b64encode(key), range_end = is_prefix and b64encode(prefix_end(key)) or nil },
    timeout)
  if not r then return nil, err end
  return num(r.deleted)
end

-- reg:grant(ttl_seconds) -> lease id (a string), ttl | nil, err
function Etcd:grant(ttl, loop, timeout)
  local r, err = self:_call(loop or self:loop(), "/v3/lease/grant", { TTL = ttl }, timeout)
  if not r then return nil, err end
  if r.error and r.error ~= "" then return nil, "etcd lease grant: " .. tostring(r.error) end
  if not r.ID then return nil, "etcd lease grant: no lease in the answer" end
  return tostring(r.ID), num(r.TTL)
end

-- reg:keepalive(lease) -> remaining ttl (0: the lease is gone) | nil, err
function Etcd:keepalive(lease, loop, timeout)
  local r, err = self:_call(loop or self:loop(), "/v3/lease/keepalive", { ID = lease }, timeout)
  if not r then return nil, err end
  if type(r.error) == "table" then return nil, "etcd lease keepalive: " .. gateway_error(json.encode(r)) end
  local res = type(r.result) == "table" and r.result or r
  return num(res.TTL)
end

-- reg:revoke(lease) -> true | nil, err (a lease already gone counts as revoked)
function Etcd:revoke(lease, loop, timeout)
  local r, err, code = self:_call(loop or self:loop(), "/v3/lease/revoke", { ID = lease }, timeout)
  if not r and code ~= 5 then return nil, err end -- 5: NotFound
  return true
end

-- ---- watches --------------------------------------------------------------------------

-- Open a watch on [key, range_end) from start_revision on the endpoint
-- that answered last (failing over like requests): stream | nil, err.
-- on_batch(events, revision) gets each response's events ({ type = "PUT" |
-- "DELETE", kv = decoded kv }); on_end(err) once when the stream ends
-- (canceled or compacted: err says so; the caller re-lists).
function Etcd:_watch(loop, key, range_end, start_revision, on_batch, on_end)
  local body = json.encode { create_request = { key = b64encode(key),
    range_end = range_end and b64encode(range_end) or nil,
    start_revision = start_revision and tostring(start_revision) or nil,
    progress_notify = true } }
  local agent = self:_agent(loop)
  local n, errs = #self.eps, {}
  local ended = false
  local function finish(err)
    if ended then return end
    ended = true
    on_end(err)
  end
  local stream
  local function on_data(buf)
    while not ended do
      local _, e = buf:find("\n")
      if not e then
        if #buf > 0 and #buf >= (self.max_body or 64 * 1024 * 1024) then
          finish("watch: a line over the body limit")
        end
        return
      end
      local line = buf:read(e)
      local t, jerr = json.decode(line)
      if type(t) ~= "table" then return finish("watch: bad JSON: " .. tostring(jerr)) end
      if t.error then return finish("watch: " .. (gateway_error(line))) end
      local res = t.result
      if type(res) == "table" then
        if res.canceled or num(res.compact_revision) > 0 then
          return finish("watch canceled" .. (num(res.compact_revision) > 0
            and (": compacted at revision " .. num(res.compact_revision)) or "")
            .. (res.cancel_reason and (" (" .. tostring(res.cancel_reason) .. ")") or ""))
        end
        local evs = {}
        for _, ev in ipairs(type(res.events) == "table" and res.events or {}) do
          local kv, kerr = decode_kv(type(ev.kv) == "table" and ev.kv or {})
          if not kv then return finish("watch: " .. kerr) end
          evs[#evs + 1] = { type = ev.type == "DELETE" and "DELETE" or "PUT", kv = kv }
        end
        local rev = num(res.header and res.header.revision)
        if #evs > 0 or rev > 0 then on_batch(evs, rev) end
      end
    end
  end
  for k = 0, n - 1 do
    local i = (self.cur - 1 + k) % n + 1
    local ep = self.eps[i]
    local err, status
    stream, err, status = agent:stream(ep.host, ep.port, "POST", "/v3/watch", body,
      { data = on_data, done = function(e) finish(e or "watch: the stream ended") end },
      self.timeout)
    if stream then
      self.cur = i
      return stream
    end
    if status then
      local msg, code = gateway_error(err)
      err = string.format("etcd %s watch: %s (HTTP %d)", ep.name, msg, status)
      if status ~= 503 and code ~= UNAVAILABLE then return nil, err end
    else
      err = "etcd " .. ep.name .. ": " .. tostring(err)
    end
    errs[#errs + 1] = err
  end
  if n == 1 then return nil, errs[1] end
  return nil, "etcd: no endpoint answered (" .. table.concat(errs, "; ") .. ")"
end

-- ---- registry entries ------------------------------------------------------------------

-- "host:port" | "[v6]:port" -> host, port | nil
local function split_address(a)
  local host, port = a:match("^%[([^%]]+)%]:(%d+)$")
  if not host then host, port = a:match("^([^:]+):(%d+)$") end
  port = tonumber(port)
  if host and port and port >= 0 and port <= 65535 then return host, port end
end
M.split_address = split_address

-- The instance a registry value describes: { key, address, host, port |
-- unix, weight, tags } | nil, err
local function instance_of(key, value)
  local t, err = json.decode(value)
  if type(t) ~= "table" then return nil, "not a JSON object: " .. tostring(err) end
  local addr = t.address
  if type(addr) ~= "string" then return nil, "no address" end
  local inst = { key = key, address = addr, network = t.network or "tcp" }
  if inst.network == "unix" then
    inst.unix = addr
  else
    inst.host, inst.port = split_address(addr)
    if not inst.host then return nil, "bad address '" .. addr .. "'" end
  end
  local w = tonumber(t.weight)
  inst.weight = (w and w > 0) and floor(w) or 10 -- registry-etcd's default
  inst.tags = type(t.tags) == "table" and t.tags or {}
  return inst
end
M.instance_of = instance_of

function Etcd:service_prefix(service)
  return self.prefix .. "/" .. service .. "/"
end

-- ---- background tasks -------------------------------------------------------------------

-- Registrations and resolvers run in a loop coroutine of their own: a nap
-- that deregister / close cut short (self.wake), and callers waiting for
-- the first success (self.waiters).
local function nap(self, ms)
  local w = self.loop:waiter()
  self.wake = w
  self.loop:await(w, ms)
  self.wake = nil
end

local function release(self, ...)
  local ws = self.waiters
  self.waiters = {}
  for _, w in ipairs(ws) do w:done(...) end
end

-- Wait until released (at most ms): true | nil, "timeout" | nil, err.
local function wait_released(self, ms)
  local w = self.loop:waiter()
  self.waiters[#self.waiters + 1] = w
  return self.loop:await(w, ms)
end

-- ---- registrations (servers) -------------------------------------------------------------

local Registration = {}
Registration.__index = Registration

-- reg:register{ service = "echo", address = "127.0.0.1:9000" (or unix =
--   "/path"), weight = 10, tags = { k = "v" }, ttl = seconds, loop = }
-- -> registration. Runs in the background on the loop: grants a lease,
-- puts the key, keeps the lease alive every ttl/3 s; if etcd cannot be
-- reached it keeps trying (the entry stays until its lease expires), and
-- if the lease is gone (expired meanwhile) it registers again.
-- registration:wait([ms]) -> true | nil, err: until the key is written.
-- registration:deregister([ms]) -> true | nil, err: stop and revoke the
-- lease (which deletes the key). registration.registered tells the state.
function Etcd:register(o)
  if type(o) ~= "table" then error("registry:register: options table expected", 2) end
  if type(o.service) ~= "string" or o.service == "" then
    error("registry:register: 'service' (a name) is required", 2)
  end
  if type(o.address) ~= "string" and type(o.unix) ~= "string" then
    error("registry:register: 'address' (\"host:port\") or 'unix' is required", 2)
  end
  local address, network = o.address, "tcp"
  if o.unix then address, network = o.unix, "unix" end
  local loop = o.loop or self:loop()
  local ttl = o.ttl or self.ttl
  local r = setmetatable({
    etcd = self, loop = loop, ttl = ttl, service = o.service, address = address,
    key = self:service_prefix(o.service) .. address,
    value = json.encode { network = network, address = address, weight = o.weight or 10,
      tags = o.tags or {} },
    registered = false, waiters = {}, counters = { registrations = 0, keepalives = 0,
      failures = 0 },
  }, Registration)
  loop:spawn(Registration._run, r)
  return r
end

function Registration:_set(ok, err)
  self.registered = ok
  if err then self.last_error = err end
  if ok then
    self.registered_at = core.clock()
    release(self, true)
  end
end

function Registration:_run()
  local etcd, loop = self.etcd, self.loop
  local period = floor(self.ttl * 1000 / 3)
  local retry = math.min(500, period)
  while not self.stopped do
    if not self.lease then
      local lease, err = etcd:grant(self.ttl, loop, period)
      if self.stopped then
        if lease then etcd:revoke(lease, loop, period) end
        break
      end
      if lease then
        self.lease = lease
        local rev
        rev, err = etcd:put(self.key, self.value, lease, loop)
        if self.stopped then break end
        if rev then
          self.counters.registrations = self.counters.registrations + 1
          self:_set(true)
        else
          self.lease = nil -- a fresh lease next time (this one expires)
        end
      end
      if err then
        self.counters.failures = self.counters.failures + 1
        self:_set(false, err)
        nap(self, retry)
      end
    else
      nap(self, period)
      if self.stopped then break end
      local left, err = etcd:keepalive(self.lease, loop, period)
      if self.stopped then break end
      if left and left > 0 then
        self.counters.keepalives = self.counters.keepalives + 1
        if not self.registered then self:_set(true) end
      elseif left then
        -- expired (etcd was away longer than the ttl): register again
        self.lease = nil
        self:_set(false, "lease expired")
      else
        self.counters.failures = self.counters.failures + 1
        self.last_error = err
        -- try again soon: the entry lives until the lease expires
        while not self.stopped do
          nap(self, retry)
          if self.stopped then break end
          left, err = etcd:keepalive(self.lease, loop, period)
          if left then break end
          self.last_error = err
        end
        if left == 0 then
          self.lease = nil
          self:_set(false, "lease expired")
        end
      end
    end
  end
end

function Registration:wait(ms)
  if self.registered then return true end
  local ok, err = wait_released(self, ms)
  if not ok then
    return nil, "registering " .. self.key .. ": " .. (err == "timeout"
      and ("not done after " .. ms .. " ms" .. (self.last_error and (" (" .. self.last_error .. ")") or ""))
      or tostring(err))
  end
  return true
end

function Registration:deregister(ms)
  if self.stopped then return true end
  self.stopped = true
  if self.wake then self.wake:done(true) end
  local lease = self.lease
  self.lease, self.registered = nil, false
  if not lease then return true end
  local etcd, loop = self.etcd, self.loop
  local deadline = loop:now() + (ms or 3000)
  local ok, err
  -- until the entry is gone or ms pass: revoke the lease, or else delete
  -- the key itself (clients must stop calling before the server drains)
  while true do
    local left = math.max(1, deadline - loop:now())
    ok, err = etcd:revoke(lease, loop, left)
    if not ok and etcd:delete(self.key, false, loop, math.max(1, deadline - loop:now())) then
      ok = true
    end
    if ok or loop:now() >= deadline then break end
    loop:sleep(math.min(100, math.max(1, deadline - loop:now())))
  end
  -- a server leaving keeps no idle connection to etcd open (its loop
  -- waits for open connections before it exits)
  etcd:_agent(loop):close()
  if not ok then
    -- the entry disappears when its lease expires
    return nil, err
  end
  return true
end

-- ---- resolvers (clients) ----------------------------------------------------------------

local Resolver = {}
Resolver.__index = Resolver

-- reg:resolver(service [, { loop = }]) -> resolver. In the background:
-- lists the service's instances, then watches them; on any failure it
-- keeps the last known list and tries again (list, then watch) with a
-- growing pause (50 ms up to 1 s). resolver.list is the current array of
-- instances (sorted by address), resolver:subscribe(fn) calls fn(resolver)
-- after each change, resolver:wait([ms]) waits for the first list.
function Etcd:resolver(service, o)
  o = o or {}
  local loop = o.loop or self:loop()
  local r = setmetatable({
    etcd = self, loop = loop, service = service, prefix = self:service_prefix(service),
    by_key = {}, list = {}, subs = {}, waiters = {}, state = "starting", revision = 0,
    counters = { lists = 0, watches = 0, events = 0, failures = 0, bad_values = 0 },
  }, Resolver)
  loop:spawn(Resolver._run, r)
  return r
end

function Resolver:_notify()
  local list = {}
  for _, inst in pairs(self.by_key) do list[#list + 1] = inst end
  table.sort(list, function(a, b) return a.address < b.address end)
  self.list = list
  for _, fn in ipairs(self.subs) do fn(self) end
end

function Resolver:_put(key, value)
  local inst, err = instance_of(key, value)
  if not inst then
    self.counters.bad_values = self.counters.bad_values + 1
    self.last_error = "registry value of " .. key .. ": " .. err
    self.by_key[key] = nil
    return
  end
  self.by_key[key] = inst
end

function Resolver:_full(kvs)
  local seen = {}
  for _, kv in ipairs(kvs) do
    seen[kv.key] = true
    local old = self.by_key[kv.key]
    if not old or old.value ~= kv.value then
      self:_put(kv.key, kv.value)
      if self.by_key[kv.key] then self.by_key[kv.key].value = kv.value end
    end
  end
  for k in pairs(self.by_key) do
    if not seen[k] then self.by_key[k] = nil end
  end
  self:_notify()
end

function Resolver:_run()
  local etcd, loop = self.etcd, self.loop
  local pause = 50
  while not self.closed do
    local kvs, rev = etcd:list(self.prefix, loop)
    if self.closed then break end
    if not kvs then
      self.counters.failures = self.counters.failures + 1
      self.last_error, self.state = rev, "retrying"
      nap(self, pause)
      pause = math.min(pause * 2, 1000)
    else
      self.counters.lists = self.counters.lists + 1
      self.revision = rev
      self:_full(kvs)
      if not self.ready then
        self.ready = true
        release(self, true)
      end
      local done = loop:waiter()
      local stream, err = etcd:_watch(loop, self.prefix, prefix_end(self.prefix), rev + 1,
        function(events, revision)
          for _, ev in ipairs(events) do
            self.counters.events = self.counters.events + 1
            if ev.type == "DELETE" then
              self.by_key[ev.kv.key] = nil
            else
              self:_put(ev.kv.key, ev.kv.value)
              if self.by_key[ev.kv.key] then self.by_key[ev.kv.key].value = ev.kv.value end
            end
          end
          if revision > self.revision then self.revision = revision end
          if #events > 0 then self:_notify() end
        end,
        function(e) done:done(e) end)
      if self.closed then
        if stream then stream:close() end
        break
      end
      if stream then
        self.counters.watches = self.counters.watches + 1
        self.stream, self.state, pause = stream, "watching", 50
        self.watch_done = done
        err = loop:await(done)
        self.stream, self.watch_done = nil, nil
        stream:close()
      end
      if not self.closed then
        self.counters.failures = self.counters.failures + 1
        self.last_error, self.state = err, "retrying"
        nap(self, pause)
        pause = math.min(pause * 2, 1000)
      end
    end
  end
  self.state = "closed"
end

function Resolver:subscribe(fn)
  self.subs[#self.subs + 1] = fn
  return fn
end

function Resolver:unsubscribe(fn)
  for i = #self.subs, 1, -1 do
    if self.subs[i] == fn then table.remove(self.subs, i) end
  end
end

function Resolver:wait(ms)
  if self.ready then return true end
  local ok, err = wait_released(self, ms)
  if not ok then
    return nil, "resolve " .. self.service .. ": " .. (err == "timeout"
      and ("no answer after " .. tostring(ms) .. " ms") or tostring(err))
      .. (self.last_error and (" (" .. self.last_error .. ")") or "")
  end
  return true
end

function Resolver:close()
  if self.closed then return end
  self.closed = true
  if self.wake then self.wake:done(true) end
  if self.watch_done then self.watch_done:done("closed") end
  release(self, nil, "resolver closed")
end

function Resolver:stats()
  local s = { state = self.state, revision = self.revision, instances = #self.list,
    last_error = self.last_error }
  for k, v in pairs(self.counters) do s[k] = v end
  return s
end

function Etcd:stats()
  local s = { endpoint = self.names[self.cur] }
  for k, v in pairs(self.counters) do s[k] = v end
  return s
end

-- Close the idle HTTP connections of every loop.
function Etcd:close()
  for _, a in pairs(self.agents) do a:close() end
end

return M
