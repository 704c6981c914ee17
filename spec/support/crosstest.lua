-- The ThriftTest cross tests as processes: petrel's server and client
-- (examples/thrift_test_server.lua, examples/thrift_test_client.lua, run by
-- the interpreter running this code) against Apache Thrift's Python library
-- (tools/crossserver.py, tools/crossclient.py under /usr/bin/python3).
-- Used by spec/crosstest_spec.lua and tools/crossmatrix.lua; run from the
-- repository's root. Every process is bounded by timeout(1) and killed by
-- its PID; servers listen on 127.0.0.1 with a port the kernel picks (or a
-- unique unix socket) and say where in their ready line.
local M = {}

M.common = dofile("examples/thrift_test_common.lua")
M.LUA = jit and "luajit" or "lua5.4"
M.PY = "/usr/bin/python3"

-- What a full pass counts: Apache's TestClient.py makes 22 checks
-- (tools/crossclient.py the same 22); petrel's client makes those 22 and
-- 4 more (testInsanity, testStringMap, limits, empty containers).
M.APACHE_CHECKS = 22
M.LUA_CHECKS = 26

-- The protocol rows petrel passes today (see examples/thrift_test_common.lua)
function M.ready_protocols()
  local out = {}
  for _, p in ipairs(M.common.PROTOCOLS) do
    if p.ready then out[#out + 1] = p.name end
  end
  return out
end

function M.all_protocols()
  local out = {}
  for i, p in ipairs(M.common.PROTOCOLS) do out[i] = p.name end
  return out
end

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
M.quote = q

function M.read(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

function M.sleep(s) os.execute("sleep " .. s) end

-- Running (a zombie waiting for init to reap it counts as ended).
function M.alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if not f then return false end
  local stat = f:read("*l") or ""
  f:close()
  return stat:match("^%d+ %b() (%a)") ~= "Z"
end

-- Start a command in the background: pid, output file (stdout and stderr).
M.bg = require("support.proc").bg

-- Run a command to its end: its output (stdout and stderr), success.
function M.run(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1"))
  local out = p:read("*a")
  local ok = p:close()
  return out, ok == true or ok == 0
end

-- A server process: waits (up to `secs`) for its ready line.
-- Returns { pid =, out =, port =, unix =, line = } or nil, why.
local function start(cmd, secs)
  local pid, out = M.bg(cmd)
  local deadline = os.time() + (secs or 60)
  while true do
    local text = M.read(out)
    local line = text:match("[^\n]*ready on [^\n]*")
    if line then
      local port = tonumber(line:match("ready on [^ ]-:(%d+) "))
      local unix = line:match("ready on unix:(%S+)")
      return { pid = pid, out = out, port = port, unix = unix, line = line }
    end
    if not M.alive(pid) or os.time() > deadline then
      if M.alive(pid) then os.execute("kill " .. pid .. " 2>/dev/null") end
      os.remove(out)
      return nil, "the server did not start: " .. text
    end
    M.sleep(0.05)
  end
end

-- Stop a server (SIGTERM, then SIGKILL after `secs`); returns its output.
function M.stop(srv, secs)
  os.execute("kill " .. srv.pid .. " 2>/dev/null")
  local deadline = os.time() + (secs or 10)
  while M.alive(srv.pid) and os.time() <= deadline do M.sleep(0.05) end
  if M.alive(srv.pid) then os.execute("kill -9 " .. srv.pid .. " 2>/dev/null") end
  local text = M.read(srv.out)
  os.remove(srv.out)
  return text
end

local function endpoint(where)
  if where.unix then return "--domain-socket " .. q(where.unix) end
  return "--port " .. where.port
end

-- petrel's ThriftTest server. o: { unix = path, extra = "more options" }
function M.petrel_server(proto, transport, o)
  o = o or {}
  local where = o.unix and ("--domain-socket " .. q(o.unix)) or "--port 0"
  return start(string.format("timeout 300 %s examples/thrift_test_server.lua %s --protocol %s --transport %s %s",
    M.LUA, where, proto, transport, o.extra or ""))
end

-- Apache's Python ThriftTest server (tools/crossserver.py).
-- o: { strict = true (THeader-only header servers, multiplexed servers
-- without a default service), extra = "" }
function M.python_server(proto, transport, o)
  o = o or {}
  return start(string.format("timeout 300 %s tools/crossserver.py --port 0 --protocol %s --transport %s %s %s",
    M.PY, proto, transport, o.strict and "--strict" or "", o.extra or ""))
end

-- Apache-style client against `where` ({port =} or {unix =}): its output,
-- passed, total (nil when no summary line came).
-- o: { strict = true, timeout = secs per read, extra = "" }
function M.python_client(where, proto, transport, o)
  o = o or {}
  local out = M.run(string.format("timeout 300 %s tools/crossclient.py -q --host 127.0.0.1 %s --protocol %s --transport %s --timeout %s %s %s",
    M.PY, endpoint(where), proto, transport, o.timeout or 10, o.strict and "--strict" or "", o.extra or ""))
  local passed, total = out:match("crossclient: (%d+)/(%d+) passed")
  return out, tonumber(passed), tonumber(total)
end

-- petrel's client against `where`: output, passed, total, and of Apache's
-- checks: passed, total.
function M.lua_client(where, proto, transport, o)
  o = o or {}
  local out = M.run(string.format("timeout 300 %s examples/thrift_test_client.lua -q %s --protocol %s --transport %s --timeout %s %s",
    M.LUA, endpoint(where), proto, transport, o.timeout or 10, o.extra or ""))
  local passed, total, apassed, atotal =
    out:match("thrift_test_client: (%d+)/(%d+) passed %((%d+)/(%d+) of Apache's")
  return out, tonumber(passed), tonumber(total), tonumber(apassed), tonumber(atotal)
end

return M
