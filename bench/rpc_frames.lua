-- bench/rpc_frames.lua — the Echo.echo requests of bench-rpc's header
-- rows, one file per wire, for build/bench/loadgen --payload (a complete
-- request whose first 4 bytes are its length; each reply one such frame):
--
--   lua5.4 bench/rpc_frames.lua ARGS_STRUCT OUTDIR
--
-- ARGS_STRUCT is loadgen's --args-struct file (a Request in Binary). Writes
-- OUTDIR/echo-binary.bin (framed strict Binary: the very bytes loadgen's
-- --thrift-call builds), echo-compact.bin (framed Compact),
-- echo-theader.bin (Apache THeader, Binary inside, one info header as
-- Apache's clients send), echo-ttheader.bin (Kitex TTHeader, Binary
-- inside, the integer entries a Kitex client sends: FromService,
-- FromMethod, ToService, ToMethod, MsgType, RPCTimeout, TransportType,
-- and a LogID). All by petrel's own writer.
local root = (arg[0]:match("^(.*)/bench/[^/]*$") or ".")
package.path = root .. "/?.lua;" .. root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
local build = os.getenv("PETREL_BUILD") or "build"
if build:sub(1, 1) ~= "/" then build = root .. "/" .. build end
package.cpath = build .. "/" .. (jit and "luajit" or "lua5.4") .. "/?.so;" .. package.cpath
local core = require "petrel.core"
local tm = require "petrel.transmeta"
local W = require "bench.workload"

local src, dir = arg[1], arg[2]
assert(src and dir, "usage: rpc_frames.lua ARGS_STRUCT OUTDIR")
local f = assert(io.open(src, "rb"))
local req = assert(W.Request:decode(f:read("*a")))
f:close()
local args = W.Echo.functions.echo.args
local value = { req = req }

local function write(name, framer, proto, headers)
  local b = core.buffer()
  args:encode_message(value, b, "echo", 1, 1, framer, proto, headers)
  local out = assert(io.open(dir .. "/echo-" .. name .. ".bin", "wb"))
  out:write(tostring(b))
  out:close()
end

write("binary", true)
write("compact", true, "compact")
write("theader", core.framer { transport = "header" }, "binary", { client = "loadgen" })
-- Kitex's client writes FromService, FromMethod, ToService, ToMethod and
-- MsgType with every call (its TTHeader meta handler), TransportType and
-- RPCTimeout when set; LogID as a traced deployment sends it
write("ttheader", core.framer { transport = "ttheader" }, "binary", {
  [tm.LOG_ID] = "20261206-0001-loadgen", [tm.FROM_SERVICE] = "bench.loadgen",
  [tm.FROM_METHOD] = "run", [tm.TO_SERVICE] = "bench.echo", [tm.TO_METHOD] = "echo",
  [tm.MSG_TYPE] = "1", [tm.RPC_TIMEOUT] = "5000", [tm.TRANSPORT_TYPE] = "framed",
})
