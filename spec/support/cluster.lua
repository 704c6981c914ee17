-- Server processes for the cluster scenarios (bench/cluster_server.lua)
-- and a steady load of calls, shared by spec/cluster_spec.lua,
-- spec/etcd_spec.lua and bench/cluster.lua.
local petrel = require "petrel"
local etcdp = require "support.etcd"

local M = {}

-- The interpreter running us, for child processes of the same runtime.
function M.lua() return jit and "luajit" or "lua5.4" end

local slurp = require "support.slurp"

local Proc = {}
Proc.__index = Proc

-- Start bench/cluster_server.lua: proc. o: service, ttl, weight, port,
-- workers, deregister_wait, name, registry ("0": none), backend (the
-- loop back end of the process), taskset (cpu list).
function M.server(etcd_url, host, o)
  o = o or {}
  local args = {}
  for _, k in ipairs({ "service", "ttl", "weight", "port", "workers", "deregister_wait", "name",
    "registry" }) do
    if o[k] ~= nil then args[#args + 1] = k .. "=" .. tostring(o[k]) end
  end
  local env = "PETREL_BUILD=" .. (os.getenv("PETREL_BUILD") or "build")
  if o.backend then env = env .. " PETREL_BACKEND=" .. o.backend end
  local cmd = string.format("env %s %s%s bench/cluster_server.lua %s %s %s", env,
    o.taskset and ("taskset -c " .. o.taskset .. " ") or "", M.lua(), etcd_url, host,
    table.concat(args, " "))
  local pid, out = etcdp.bg(cmd)
  return setmetatable({ pid = pid, out = out, host = host }, Proc)
end

-- (the shell may not have made the file yet)
function Proc:output()
  local ok, text = pcall(slurp, self.out)
  return ok and text or ""
end

-- Wait (running loop meanwhile) until the output matches pattern: its
-- captures | nil, err.
function Proc:wait_for(pattern, loop, ms)
  local deadline = loop:now() + (ms or 20000)
  while true do
    local text = self:output()
    local caps = { text:match(pattern) }
    if #caps > 0 then return table.unpack and table.unpack(caps) or unpack(caps) end
    if not etcdp.alive(self.pid) then
      return nil, "server " .. self.host .. " exited: " .. text
    end
    if loop:now() >= deadline then
      return nil, "server " .. self.host .. ": no '" .. pattern .. "' in " .. (ms or 20000)
        .. " ms: " .. text
    end
    loop:sleep(10)
  end
end

-- Wait for "ready PORT" (and "registered T" unless registry = "0"):
-- self (with port, address, registered_at) | error.
function Proc:ready(loop, ms, registered)
  local port, err = self:wait_for("ready (%d+)", loop, ms)
  assert(port, err)
  self.port = tonumber(port)
  self.address = self.host .. ":" .. self.port
  if registered ~= false then
    local t
    t, err = self:wait_for("registered ([%d.]+)", loop, ms)
    assert(t, err)
    self.registered_at = tonumber(t)
  end
  return self
end

function Proc:term() etcdp.signal(self.pid, "TERM") end
function Proc:kill() etcdp.signal(self.pid, "KILL") end
function Proc:alive() return etcdp.alive(self.pid) end

-- Wait (running loop) until the process is gone.
function Proc:wait_gone(loop, ms)
  local deadline = loop:now() + (ms or 10000)
  while etcdp.alive(self.pid) and loop:now() < deadline do loop:sleep(10) end
  return not etcdp.alive(self.pid)
end

function Proc:cleanup()
  if etcdp.alive(self.pid) then
    self:kill()
    etcdp.wait_gone(self.pid, 5000)
  end
  os.remove(self.out)
end

-- ---- steady load ----------------------------------------------------------------------

local Load = {}
Load.__index = Load

-- M.load(loop, width, call) -> load: `width` coroutines calling call(i)
-- (-> result | nil, err) back to back until load:stop(). Counts calls,
-- failures (with their errors) and successes per 100 ms slot, and where
-- the answers came from (call must return the instance's name).
function M.load(loop, width, call)
  local self = setmetatable({ loop = loop, width = width, calls = 0, ok = 0, failed = 0,
    errors = {}, by = {}, slots = {}, running = 0, t0 = petrel.clock() }, Load)
  for _ = 1, width do
    self.running = self.running + 1
    loop:spawn(function()
      local i = 0
      while not self.stopping do
        i = i + 1
        self.calls = self.calls + 1
        local r, err = call(i)
        local slot = math.floor((petrel.clock() - self.t0) * 10)
        if r ~= nil then
          self.ok = self.ok + 1
          self.slots[slot] = (self.slots[slot] or 0) + 1
          self.by[r] = (self.by[r] or 0) + 1
        else
          self.failed = self.failed + 1
          if #self.errors < 20 then self.errors[#self.errors + 1] = tostring(err) end
          if self.pause_on_error then loop:sleep(self.pause_on_error) end
        end
      end
      self.running = self.running - 1
    end)
  end
  return self
end

-- Stop and wait for the calls in flight (at most ms).
function Load:stop(ms)
  self.stopping = true
  local deadline = self.loop:now() + (ms or 10000)
  while self.running > 0 and self.loop:now() < deadline do self.loop:sleep(5) end
  return self.running == 0
end

-- Successful calls in each 100 ms slot between seconds a and b after the
-- start: the smallest slot count (0 means calls stopped for 100 ms).
function Load:min_slot(a, b)
  local lo
  for s = math.floor(a * 10), math.floor(b * 10) - 1 do
    local n = self.slots[s] or 0
    if not lo or n < lo then lo = n end
  end
  return lo or 0
end

function Load:since() return petrel.clock() - self.t0 end

return M
