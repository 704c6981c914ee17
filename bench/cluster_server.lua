-- A Where server (spec/thrift/cluster.thrift) that registers in etcd: the
-- server process of spec/cluster_spec.lua, spec/etcd_spec.lua and
-- bench/cluster.lua.
--
--   lua5.4 bench/cluster_server.lua ETCD_URL HOST [key=value ...]
--     service=echo ttl=10 weight=10 port=0 workers=1 deregister_wait=1000
--     name=<what where() answers; default HOST:PORT> registry=0 (no etcd)
--
-- Prints "ready PORT" once listening and "registered SECONDS" (petrel's
-- monotonic clock, comparable across processes) when the key is written;
-- serves until SIGTERM (graceful: leaves the registry, drains) or SIGKILL.
-- Runs from the repository root; PETREL_BUILD names the build (default
-- build).
local build = os.getenv("PETREL_BUILD") or "build"
local rt = jit and "luajit" or "lua5.4"
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = build .. "/" .. rt .. "/?.so;" .. package.cpath

local petrel = require "petrel"

local url, host = arg[1], arg[2]
if not url or not host then
  io.stderr:write("usage: cluster_server.lua ETCD_URL HOST [key=value ...]\n")
  os.exit(2)
end
local o = { service = "echo", ttl = "10", weight = "10", port = "0", workers = "1",
  deregister_wait = "1000", registry = "1" }
for i = 3, #arg do
  local k, v = arg[i]:match("^([%w_]+)=(.*)$")
  if not k then io.stderr:write("bad argument ", arg[i], "\n"); os.exit(2) end
  o[k] = v
end

local NS = assert(petrel.load("spec/thrift/cluster.thrift"))
local function out(...)
  io.stdout:write(...)
  io.stdout:write("\n")
  io.stdout:flush()
end

local reg = o.registry ~= "0" and petrel.etcd { endpoints = { url }, ttl = tonumber(o.ttl) } or nil
local name
local bumps = 0
local ok, err = petrel.serve {
  host = host, port = tonumber(o.port), service = NS.Where,
  -- registry trouble is worth a line; handler errors are the client's business
  logger = function(line, info)
    if info.kind == "registry" then io.stderr:write("cluster_server: ", line, "\n") end
  end,
  workers = tonumber(o.workers),
  registry = reg, service_name = reg and o.service or nil,
  weight = reg and tonumber(o.weight) or nil,
  deregister_wait = reg and tonumber(o.deregister_wait) or nil,
  handler = {
    where = function() return name end,
    bump = function(n) bumps = bumps + 1; return n + 1 end,
    slow = function(ms) petrel.sleep(ms); return name end,
  },
  on_ready = function(srv)
    name = o.name or (host .. ":" .. srv.port)
    out("ready ", srv.port)
    if srv.registration then
      srv.loop:spawn(function()
        local r, e = srv.registration:wait(30000)
        if r then out("registered ", string.format("%.6f", petrel.clock())) else out("error ", e) end
      end)
    end
  end,
}
if not ok then
  io.stderr:write("cluster_server: ", tostring(err), "\n")
  os.exit(1)
end
