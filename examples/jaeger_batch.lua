-- examples/jaeger_batch.lua — decode what a Jaeger client sends its agent
-- (UDP port 6831): one datagram holds one oneway Agent.emitBatch call in
-- Thrift Compact. The schema is Jaeger's agent.thrift (with the
-- jaeger.thrift it includes), loaded at run time.
--
--   lua5.4 examples/jaeger_batch.lua path/to/agent.thrift datagram.bin
--
-- (The specs run it with Jaeger-shaped IDL written for petrel's tests,
-- spec/thrift/jaeger/, on a datagram written by Apache's Python library:
-- tools/pyfixtures.py.)
local petrel = require "petrel"

local idl_path, file = arg[1], arg[2]
if not (idl_path and file) then
  io.stderr:write("usage: jaeger_batch.lua agent.thrift DATAGRAM\n")
  os.exit(2)
end

local ns = assert(petrel.load(idl_path))
local f = assert(io.open(file, "rb"))
local dgram = f:read("*a")
f:close()

-- the envelope: its first byte says the protocol (0x82: Compact)
local name, mtype, seqid, pos, proto = petrel.core.msg_header(dgram)
assert(name, "not a Thrift message: " .. tostring(mtype))
print(("%s %s call '%s' (type %d, seqid %d)"):format(proto, mtype == 4 and "oneway" or "",
  name, mtype, seqid))
local fn = assert(ns.Agent.functions[name], "Agent has no function " .. name)
local args = assert(fn.args:decode(dgram, pos, { protocol = proto, enum_names = true }))
local batch = args.batch

local function s(v) -- an integer on both runtimes (LuaJIT: number or int64 cdata)
  if type(v) == "number" and v == math.floor(v) then return ("%.0f"):format(v) end
  return (tostring(v):gsub("U?LL$", ""))
end
local function tagtext(t)
  local v = t.vStr or t.vDouble or t.vLong or t.vBinary and ("<" .. #t.vBinary .. " bytes>")
  if t.vBool ~= nil then v = t.vBool end
  return t.key .. "=" .. s(v)
end

print(("service %s, %d spans%s"):format(batch.process.serviceName, #batch.spans,
  batch.seqNo and (", seqNo " .. s(batch.seqNo)) or ""))
for _, sp in ipairs(batch.spans) do
  local tags = {}
  for _, t in ipairs(sp.tags or {}) do tags[#tags + 1] = tagtext(t) end
  print(("  span %s (parent %s) %s: %s us [%s]"):format(s(sp.spanId), s(sp.parentSpanId),
    sp.operationName, s(sp.duration), table.concat(tags, ", ")))
  for _, log in ipairs(sp.logs or {}) do
    local fields = {}
    for _, t in ipairs(log.fields) do fields[#fields + 1] = tagtext(t) end
    print(("    log at %s: %s"):format(s(log.timestamp), table.concat(fields, ", ")))
  end
end
