-- A Jaeger agent in one page: receives the span batches Jaeger's clients
-- send (emitBatch, a oneway Thrift call in one UDP datagram: port 6832
-- Binary, 6831 Compact) and prints every span. The IDL is
-- examples/jaeger/agent.thrift (jaeger.thrift's shapes).
--
--   lua5.4 examples/jaeger_agent.lua [PORT [PROTOCOL [HOST]]]
--
-- PORT defaults to 6832 (0: the kernel picks; the first line says which),
-- PROTOCOL to binary, HOST to 127.0.0.1. Senders to try: tools/jaeger_send.py
-- (Apache Thrift's Python library) and tools/jaeger_node_send.js (the npm
-- jaeger-client). SIGINT or SIGTERM ends it with a summary line.
--
-- Output, one line per span (ids in hex, times in microseconds):
--   span svc=frontend op=GET /users trace=...:... id=... parent=...
--     start=... dur=...us flags=1 tags=http.method=GET,error=false
local petrel = require "petrel"

local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local port = tonumber(arg and arg[1]) or 6832
local protocol = arg and arg[2] or "binary"
local host = arg and arg[3] or "127.0.0.1"

local ns = assert(petrel.load(here .. "/jaeger/agent.thrift"))

-- 64-bit ids as 16 hex digits (LuaJIT: large ones arrive as int64 cdata)
local hex
if jit then
  local bit, ffi = require "bit", require "ffi"
  hex = function(v) return bit.tohex(ffi.cast("int64_t", v), 16) end
else
  hex = function(v) return string.format("%016x", v) end
end

local function int(v)
  if type(v) == "number" then return string.format("%d", v) end
  return (tostring(v):gsub("U?LL$", "")) -- LuaJIT's int64 cdata
end

local TAG = { [0] = "vStr", "vDouble", "vBool", "vLong", "vBinary" }

local function tags(list)
  local out = {}
  for i, t in ipairs(list or {}) do
    local v = t[TAG[t.vType] or "vStr"]
    if v == nil then
      v = "nil"
    elseif t.vType == 1 then
      v = string.format("%.17g", v) -- the same text on both runtimes
    elseif t.vType == 3 then
      v = int(v)
    elseif t.vType == 4 then
      v = "<" .. #v .. " bytes>"
    end
    out[i] = t.key .. "=" .. tostring(v)
  end
  return table.concat(out, ",")
end

local batches, spans = 0, 0

local function emitBatch(batch)
  batches = batches + 1
  local svc = batch.process.serviceName
  for _, s in ipairs(batch.spans) do
    spans = spans + 1
    io.write(string.format("span svc=%s op=%s trace=%s:%s id=%s parent=%s start=%s dur=%sus "
      .. "flags=%d tags=%s\n", svc, s.operationName, hex(s.traceIdHigh), hex(s.traceIdLow),
      hex(s.spanId), hex(s.parentSpanId), int(s.startTime), int(s.duration), s.flags,
      tags(s.tags)))
  end
  io.stdout:flush()
end

local server
local ok, err = petrel.serve {
  service = ns.Agent, transport = "udp", protocol = protocol, host = host, port = port,
  rcvbuf = 4 * 1024 * 1024,
  handler = { emitBatch = emitBatch },
  on_ready = function(srv)
    io.write(string.format("listening on udp %s:%d (%s)\n", host, srv.port, protocol))
    io.stdout:flush()
    server = srv
  end,
}
if not ok then
  io.stderr:write("jaeger_agent: ", tostring(err), "\n")
  os.exit(1)
end
local c = server.counters
io.write(string.format("done: %d batches, %d spans, %d malformed datagrams\n", batches, spans,
  c.malformed))
