-- A real etcd (Debian's etcd-server, /usr/bin/etcd) for the specs and
-- bench/cluster.lua: started on 127.0.0.1 with ports picked at run time
-- and a temporary data dir, stopped by PID, restartable on the same ports
-- and data (an outage). Also used for the server processes the cluster
-- scenarios start.
local petrel = require "petrel"
local net = require "support.net"

local M = {}

-- Is pid a live process (not gone, not a zombie nobody reaped yet)?
function M.alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if not f then return false end
  local s = f:read("*l") or ""
  f:close()
  local state = s:match("^%d+ %b() (%a)")
  return state ~= nil and state ~= "Z" and state ~= "X"
end

-- Start a shell command in the background: pid (of the command itself:
-- exec), output file.
M.bg = require("support.proc").bg

function M.signal(pid, sig)
  os.execute("kill -" .. (sig or "TERM") .. " " .. pid .. " 2>/dev/null")
end

-- Wait (really sleeping, no loop needed) until pid is gone, at most ms.
function M.wait_gone(pid, ms)
  local deadline = petrel.clock() + (ms or 10000) / 1000
  while M.alive(pid) and petrel.clock() < deadline do os.execute("sleep 0.02") end
  return not M.alive(pid)
end

function M.available()
  local f = io.open("/usr/bin/etcd", "r")
  if f then f:close(); return true end
  return os.execute("command -v etcd >/dev/null 2>&1") == true
end

-- For a spec file: true when etcd is here, else a LOUD pending (busted
-- counts it as skipped) under `name` and false.
function M.present(name)
  if M.available() then return true end
  describe(name, function()
    it("runs against a real etcd", function()
      pending("etcd is not installed (Debian: etcd-server; tools/deps.sh installs it)")
    end)
  end)
  return false
end

local Proc = {}
Proc.__index = Proc

local function free_port()
  local loop = assert(petrel.loop())
  local p = net.dead_port(loop)
  loop:free()
  return p
end

-- Ask etcd for /health until it says true (at most ms).
local function wait_healthy(url_host, port, ms)
  local loop = assert(petrel.loop())
  local http = require "petrel.http"
  local agent = http.agent(loop)
  local deadline = loop:now() + ms
  local ok = false
  while loop:now() < deadline do
    local status, body = agent:request(url_host, port, "GET", "/health", nil, nil, 1000)
    if status == 200 and body:find('"health":"true"', 1, true) then ok = true; break end
    loop:sleep(50)
  end
  agent:close()
  loop:free()
  return ok
end

-- start{ host = "127.0.0.1" } -> etcd process | error
function M.start(o)
  o = o or {}
  local self = setmetatable({ host = o.host or "127.0.0.1" }, Proc)
  self.dir = os.tmpname()
  os.remove(self.dir)
  assert(os.execute("mkdir -p " .. self.dir .. "/data"))
  self.client_port, self.peer_port = free_port(), free_port()
  while self.peer_port == self.client_port do self.peer_port = free_port() end
  self.url = "http://" .. self.host .. ":" .. self.client_port
  self.log = self.dir .. "/etcd.log"
  self:_launch()
  return self
end

function Proc:_launch()
  local peer = "http://" .. self.host .. ":" .. self.peer_port
  local cmd = table.concat({ "etcd", "--name", "petrel-spec",
    "--data-dir", self.dir .. "/data",
    "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
    "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
    "--initial-cluster", "petrel-spec=" .. peer,
    "--heartbeat-interval", "50", "--election-timeout", "500",
    "--logger", "zap", "--log-level", "error", "--log-outputs", "stderr" }, " ")
  self.pid = M.bg(cmd, self.log .. "." .. (self.launches or 0))
  self.launches = (self.launches or 0) + 1
  if not wait_healthy(self.host, self.client_port, 30000) then
    local f = io.open(self.log .. "." .. (self.launches - 1))
    local text = f and f:read("*a") or ""
    if f then f:close() end
    self:kill()
    error("etcd did not become healthy in 30 s on " .. self.url .. ": " .. text:sub(-2000))
  end
  self.running = true
end

-- SIGTERM (default) or the given signal, and wait until it is gone.
function Proc:stop(sig)
  if not self.pid then return end
  M.signal(self.pid, sig or "TERM")
  if not M.wait_gone(self.pid, 10000) then
    M.signal(self.pid, "KILL")
    M.wait_gone(self.pid, 5000)
  end
  self.running = false
end

function Proc:kill() self:stop("KILL") end

-- The same member again: same ports, same data dir.
function Proc:restart()
  if self.running then self:stop() end
  self:_launch()
end

-- Stop it and remove its files.
function Proc:cleanup()
  self:stop()
  if self.dir and self.dir:match("^/tmp/") then os.execute("rm -rf " .. self.dir) end
end

return M
