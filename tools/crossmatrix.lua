-- tools/crossmatrix.lua: the whole ThriftTest cross-test matrix, by hand.
-- Every protocol of Apache's cross tests (supported by petrel or not) over
-- every transport, in three directions, with the results as a table:
--
--   server  petrel's server, Apache's Python test client (tools/crossclient.py,
--           Apache's pass criteria; --strict for the stricter ones)
--   client  petrel's client, Apache's Python test server (tools/crossserver.py
--           --strict: a header server refuses plain clients and a
--           multiplexed one has no default service, so that a client which
--           does not speak them cannot pass); "22/22" counts Apache's checks,
--           "+4/4" petrel's extra ones
--   self    petrel's client against petrel's server
--
--   lua5.4 tools/crossmatrix.lua [--protocol a,b] [--transport t]
--          [--direction server,client,self] [--strict] [--timeout S]
--
-- Run from the repository's root, after `make`; PETREL_BACKEND picks the back
-- end as everywhere. Rows marked * are the ones spec/crosstest_spec.lua runs
-- (ready in examples/thrift_test_common.lua). Exits 1 if a ready row fails.
package.path = "spec/?.lua;" .. package.path
local X = require "support.crosstest"
local common = X.common

local opts, pos = common.parse_args(arg, { protocol = "string", transport = "string",
  direction = "string", strict = "flag", timeout = "number" })
if not opts or #pos > 0 then
  io.stderr:write("crossmatrix: ", tostring(opts and ("unexpected " .. pos[1]) or pos), "\n")
  os.exit(2)
end
local function list(s, default)
  if not s then return default end
  local out = {}
  for w in s:gmatch("[^,%s]+") do out[#out + 1] = w end
  return out
end
local protocols = list(opts.protocol, X.all_protocols())
local transports = list(opts.transport, common.TRANSPORTS)
local directions = list(opts.direction, { "server", "client", "self" })
for _, p in ipairs(protocols) do
  if not common.protocol(p) then io.stderr:write("crossmatrix: unknown protocol ", p, "\n"); os.exit(2) end
end
local timeout = opts.timeout or 3

-- First failure line of a run, shortened.
local function first_fail(out)
  local l = out:match("FAIL [^\n]*") or out:match("[^\n]*rror[^\n]*") or ""
  return #l > 110 and (l:sub(1, 107) .. "...") or l
end

local RUN = {
  server = function(p, t)
    local srv, why = X.petrel_server(p, t)
    if not srv then return "no server", why end
    local out, passed, total = X.python_client(srv, p, t, { strict = opts.strict, timeout = timeout })
    X.stop(srv)
    if not total then return "no result", out end
    return string.format("%d/%d", passed, total), first_fail(out), passed == total
  end,
  client = function(p, t)
    local srv, why = X.python_server(p, t, { strict = true })
    if not srv then return "no server", why end
    local out, passed, total, ap, at = X.lua_client(srv, p, t, { timeout = timeout })
    X.stop(srv)
    if not total then return "no result", out end
    return string.format("%d/%d +%d/%d", ap, at, passed - ap, total - at), first_fail(out), passed == total
  end,
  self = function(p, t)
    local srv, why = X.petrel_server(p, t)
    if not srv then return "no server", why end
    local out, passed, total = X.lua_client(srv, p, t, { timeout = timeout })
    X.stop(srv)
    if not total then return "no result", out end
    return string.format("%d/%d", passed, total), first_fail(out), passed == total
  end,
}

print(string.format("ThriftTest cross tests: %s, back end %s%s", jit and jit.version or _VERSION,
  os.getenv("PETREL_BACKEND") or "epoll", opts.strict and ", strict Python client" or ""))
local header = string.format("%-9s %-9s", "protocol", "transport")
for _, d in ipairs(directions) do header = header .. string.format(" %-13s", d) end
print(header)
local notes, bad = {}, 0
for _, p in ipairs(protocols) do
  for _, t in ipairs(transports) do
    local row = string.format("%-9s %-9s", p .. (common.protocol(p).ready and "*" or ""), t)
    for _, d in ipairs(directions) do
      local res, why, ok = RUN[d](p, t)
      row = row .. string.format(" %-13s", res)
      if not ok then
        if common.protocol(p).ready then bad = bad + 1 end
        notes[#notes + 1] = string.format("  %s %s %s: %s", p, t, d, why or "")
      end
    end
    print(row)
    io.stdout:flush()
  end
end
print("* = ready: run by spec/crosstest_spec.lua. server = petrel server, Python client;" ..
  " client = petrel client, strict Python server (Apache's checks +petrel's extra ones);" ..
  " self = petrel client, petrel server (on a row petrel does not speak yet, its client" ..
  " and server both fall back to Binary, so a pass there proves nothing).")
if #notes > 0 then
  print("first failure of each failing run:")
  for _, n in ipairs(notes) do print(n) end
end
os.exit(bad == 0 and 0 or 1)
