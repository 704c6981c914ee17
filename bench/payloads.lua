-- bench/payloads.lua OUTDIR: the 64 KiB messages of bench-uring.
--   OUTDIR/req64k.bin  a Request (workload.thrift) of about 64 KiB: the
--                      medium message's items repeated (Echo.echo rows)
--   OUTDIR/raw64k.bin  65536 bytes of it (raw frame echo rows)
local root = (arg[0]:match("^(.*)/bench/[^/]*$") or ".")
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/" .. (os.getenv("PETREL_BUILD") or "build") .. "/"
  .. (jit and "luajit" or "lua5.4") .. "/?.so;" .. package.cpath
local W = require "bench.workload"
local out = assert(arg[1], "usage: payloads.lua OUTDIR")
local f = assert(io.open(root .. "/bench/data/medium.bin", "rb"))
local req = assert(W.Request:decode(f:read("*a")))
f:close()
local base = req.items
local items = setmetatable({}, getmetatable(base))
while W.Request:size(req) < 65536 do
  for _, it in ipairs(base) do
    items[#items + 1] = it
    req.items = items
    if W.Request:size(req) >= 65536 then break end
  end
  req.items = items
end
local bytes = W.Request:encode(req)
local function put(name, s)
  local o = assert(io.open(out .. "/" .. name, "wb"))
  o:write(s)
  o:close()
end
put("req64k.bin", bytes)
put("raw64k.bin", bytes:sub(1, 65536))
io.stderr:write(("payloads: req64k.bin %d bytes, raw64k.bin 65536 bytes\n"):format(#bytes))
